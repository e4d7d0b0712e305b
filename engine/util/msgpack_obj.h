/* msgpack_obj.h - typed look-ups in an unpacked msgpack map, for the
 * readers of self-describing maps (the checkpoint and the learner's section
 * of it).  Each answers false / NULL for a missing key or a wrong type, so a
 * reader can name the field in its error. */
#ifndef STREAMLR_UTIL_MSGPACK_OBJ_H
#define STREAMLR_UTIL_MSGPACK_OBJ_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline const msgpack_object *slr_mp_field(const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == n &&
            !memcmp(kv->key.via.str.ptr, key, n))
            return &kv->val;
    }
    return NULL;
}

static inline bool slr_mp_get_uint(const msgpack_object *map, const char *key, uint64_t *out)
{
    const msgpack_object *o = slr_mp_field(map, key);
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *out = o->via.u64;
    return true;
}

static inline bool slr_mp_int(const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        *out = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = o->via.i64;
    else
        return false;
    return true;
}

/* a float, or a non-negative integer (msgpack writers may shorten 2.0 to 2) */
static inline bool slr_mp_get_double(const msgpack_object *map, const char *key, double *out)
{
    const msgpack_object *o = slr_mp_field(map, key);
    if (!o)
        return false;
    if (o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32)
        *out = o->via.f64;
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        *out = (double)o->via.u64;
    else
        return false;
    return true;
}

/* A NUL-terminated copy of a string object (free() it), or NULL. */
static inline char *slr_mp_strdup(const msgpack_object *o)
{
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return NULL;
    char *s = malloc(o->via.str.size + 1);
    if (s) {
        memcpy(s, o->via.str.ptr, o->via.str.size);
        s[o->via.str.size] = '\0';
    }
    return s;
}

/* A str object from a C string (NULL packs as ""). */
static inline void slr_mp_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s ? s : "", n);
}

#endif
