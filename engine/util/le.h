/* le.h - fixed-width little-endian fields of the on-disk records (weights,
 * metrics windows, names), through <endian.h>. */
#ifndef STREAMLR_UTIL_LE_H
#define STREAMLR_UTIL_LE_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline void slr_le_put_u16(unsigned char *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, 2);
}
static inline uint16_t slr_le_get_u16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return le16toh(v);
}
static inline void slr_le_put_u32(unsigned char *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}
static inline uint32_t slr_le_get_u32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}
static inline void slr_le_put_u64(unsigned char *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}
static inline uint64_t slr_le_get_u64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}
static inline void slr_le_put_f64(unsigned char *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    slr_le_put_u64(p, v);
}
static inline double slr_le_get_f64(const unsigned char *p)
{
    double d;
    uint64_t v = slr_le_get_u64(p);
    memcpy(&d, &v, 8);
    return d;
}
static inline void slr_le_put_f32(unsigned char *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    slr_le_put_u32(p, v);
}
static inline float slr_le_get_f32(const unsigned char *p)
{
    float f;
    uint32_t v = slr_le_get_u32(p);
    memcpy(&f, &v, 4);
    return f;
}

#endif
