/* msgpack_scan.h - find where a msgpack object ends, without allocating.
 *
 * msgpack_unpack() reserves zone memory for every element a container
 * header promises before it has seen the elements (5 bytes can promise 4
 * billion), and it advances its offset even when it fails.  So whoever
 * unpacks untrusted bytes -- the example decoder, the checkpoint loader --
 * first scans them here: the scan says whether the bytes hold one complete
 * object, how long it is, and how much zone memory unpacking it will take,
 * which is then bounded by the input's length. */
#ifndef STREAMLR_MSGPACK_SCAN_H
#define STREAMLR_MSGPACK_SCAN_H

#include <stddef.h>
#include <stdint.h>

/* The n-byte big-endian number at p (msgpack's lengths and numbers). */
static inline uint64_t be_read(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

typedef enum slr_msgpack_scan_result {
    SLR_MSGPACK_COMPLETE,   /* *size bytes hold one object */
    SLR_MSGPACK_INCOMPLETE, /* the object continues past len */
    SLR_MSGPACK_INVALID,    /* a byte that msgpack never uses (0xc1) */
} slr_msgpack_scan_result;

/* Scan the object at b[0, len).  On COMPLETE, *size is its length and
 * *zone_need an upper bound on the zone bytes msgpack_unpack() takes for it
 * (at most a small multiple of *size). */
slr_msgpack_scan_result slr_msgpack_scan(const unsigned char *b, size_t len, size_t *size,
                                         size_t *zone_need);

#endif
