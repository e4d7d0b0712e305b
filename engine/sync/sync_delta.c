/* sync_delta.c - the delta record a group member publishes (sync.h), as
 * msgpack, and the configuration fingerprint it carries.
 *
 * A record is one msgpack array, positional so that a reader checks every
 * field's type and count without a schema:
 *   ["streamlr-delta", 2, member, generation, round, examples, fingerprint,
 *    [[topic, partition, from, to], ...], [bias_w, bias_g2], entries]
 * with entries a bin of n * 20 bytes (sync.h).  A future version changes the
 * second field; a reader refuses a version it does not know rather than
 * guess. */
#include <float.h>
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "streamlr/sync.h"
#include "sync_impl.h"
#include "util/le.h"
#include "util/msgpack_obj.h"
#include "util/msgpack_scan.h"

#define MAGIC "streamlr-delta"
#define N_FIELDS 10

void slr_sync_delta_clear(slr_sync_delta *d)
{
    for (size_t i = 0; i < d->n_ranges; i++)
        free(d->ranges[i].topic);
    free(d->ranges);
    free(d->entries);
    memset(d, 0, sizeof *d);
}

uint64_t slr_sync_fingerprint(const slr_learner_config *cfg)
{
    /* a fixed little-endian layout, not the struct's bytes (padding, ABI) */
    unsigned char b[4 + 4 + 2 * SLR_MAX_QUADRATIC + 4 + 8 * 8 + 4 + 1];
    unsigned char *p = b;
    memset(b, 0, sizeof b);
    slr_le_put_u32(p, cfg->hashing.bits), p += 4;
    slr_le_put_u32(p, cfg->hashing.n_quadratic), p += 4;
    for (unsigned i = 0; i < cfg->hashing.n_quadratic && i < SLR_MAX_QUADRATIC; i++)
        memcpy(p + 2 * i, cfg->hashing.quadratic[i], 2);
    p += 2 * SLR_MAX_QUADRATIC;
    slr_le_put_u32(p, (uint32_t)cfg->schedule), p += 4;
    const double v[] = {cfg->eta, cfg->power_t, cfg->initial_t, cfg->adagrad_delta,
                        cfg->l1, cfg->l2, cfg->tg_threshold, 0.0};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        slr_le_put_f64(p, v[i]), p += 8;
    slr_le_put_u32(p, cfg->tg_period), p += 4;
    *p = cfg->eager;
    return XXH3_64bits(b, sizeof b);
}

slr_status slr_sync_delta_encode(const slr_sync_delta *d, unsigned char **out, size_t *out_len,
                                 slr_error *err)
{
    *out = NULL;
    *out_len = 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, N_FIELDS);
    slr_mp_pack_str(&pk, MAGIC);
    msgpack_pack_uint32(&pk, SLR_SYNC_FORMAT_VERSION);
    slr_mp_pack_str(&pk, d->member);
    msgpack_pack_uint64(&pk, d->generation);
    msgpack_pack_uint64(&pk, d->round);
    msgpack_pack_uint64(&pk, d->examples);
    msgpack_pack_uint64(&pk, d->fingerprint);
    msgpack_pack_array(&pk, d->n_ranges);
    for (size_t i = 0; i < d->n_ranges; i++) {
        msgpack_pack_array(&pk, 4);
        slr_mp_pack_str(&pk, d->ranges[i].topic);
        msgpack_pack_int32(&pk, d->ranges[i].partition);
        msgpack_pack_int64(&pk, d->ranges[i].from);
        msgpack_pack_int64(&pk, d->ranges[i].to);
    }
    msgpack_pack_array(&pk, 2);
    msgpack_pack_double(&pk, d->bias_w);
    msgpack_pack_double(&pk, d->bias_g2);
    msgpack_pack_bin(&pk, d->n_entries * SLR_SYNC_ENTRY);
    msgpack_pack_bin_body(&pk, d->entries, d->n_entries * SLR_SYNC_ENTRY);
    return slr_sync_take(&sb, out, out_len, "a delta", err);
}

static slr_status bad(slr_error *err, const char *what)
{
    return slr_error_set(err, SLR_ERR_CORRUPT, "sync delta: %s", what);
}

static bool get_u64(const msgpack_object *o, uint64_t *v)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *v = o->via.u64;
    return true;
}

static bool get_num(const msgpack_object *o, double *v)
{
    if (o->type != MSGPACK_OBJECT_FLOAT64 && o->type != MSGPACK_OBJECT_FLOAT32)
        return false;
    *v = o->via.f64;
    return true;
}

static slr_status decode_ranges(const msgpack_object *o, slr_sync_delta *d, slr_error *err)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return bad(err, "ranges are not an array");
    if (o->via.array.size == 0)
        return SLR_OK;
    d->ranges = calloc(o->via.array.size, sizeof *d->ranges);
    if (!d->ranges)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory decoding a delta");
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *r = &o->via.array.ptr[i];
        int64_t part, from, to;
        if (r->type != MSGPACK_OBJECT_ARRAY || r->via.array.size != 4 ||
            r->via.array.ptr[0].type != MSGPACK_OBJECT_STR || r->via.array.ptr[0].via.str.size == 0 ||
            memchr(r->via.array.ptr[0].via.str.ptr, 0, r->via.array.ptr[0].via.str.size) ||
            !slr_mp_int(&r->via.array.ptr[1], &part) || !slr_mp_int(&r->via.array.ptr[2], &from) ||
            !slr_mp_int(&r->via.array.ptr[3], &to))
            return bad(err, "a range is not [topic, partition, from, to]");
        if (part < 0 || part > INT32_MAX || from < 0 || to < from)
            return bad(err, "a range has a negative partition or offset, or ends before it starts");
        d->ranges[i].topic = slr_mp_strdup(&r->via.array.ptr[0]);
        d->n_ranges = i + 1; /* so that clear() frees what is there */
        if (!d->ranges[i].topic)
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory decoding a delta");
        d->ranges[i].partition = (int32_t)part;
        d->ranges[i].from = from;
        d->ranges[i].to = to;
    }
    return SLR_OK;
}

/* Entries: whole, in strictly increasing index, with values a learner can
 * hold (the learner checks the index against its size when merging). */
static slr_status check_entries(const unsigned char *e, size_t n, slr_error *err)
{
    for (size_t i = 0; i < n; i++, e += SLR_SYNC_ENTRY) {
        uint32_t j = slr_le_get_u32(e);
        double w = slr_le_get_f64(e + 4);
        double g2 = slr_le_get_f64(e + 12);
        if (i > 0 && j <= slr_le_get_u32(e - SLR_SYNC_ENTRY))
            return slr_error_set(err, SLR_ERR_CORRUPT,
                                 "sync delta: entry %zu (coordinate %u) is not after the one before",
                                 i, j);
        if (!(fabs(w) <= SLR_MAX_ABS_WEIGHT) || !isfinite(g2))
            return slr_error_set(err, SLR_ERR_CORRUPT,
                                 "sync delta: coordinate %u holds a non-finite value", j);
    }
    return SLR_OK;
}

static slr_status decode_fields(const msgpack_object *a, slr_sync_delta *d, slr_error *err)
{
    if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size < 2)
        return bad(err, "not a streamlr delta record (expected a msgpack array)");
    const msgpack_object *f = a->via.array.ptr;
    if (f[0].type != MSGPACK_OBJECT_STR || f[0].via.str.size != strlen(MAGIC) ||
        memcmp(f[0].via.str.ptr, MAGIC, strlen(MAGIC)) != 0)
        return bad(err, "not a streamlr delta record (no \"" MAGIC "\" tag)");
    uint64_t version;
    if (!get_u64(&f[1], &version))
        return bad(err, "the format version is not an unsigned integer");
    if (version != SLR_SYNC_FORMAT_VERSION)
        return slr_error_set(err, SLR_ERR_CORRUPT,
                             "sync delta: format version %llu, this streamlr reads version %d "
                             "(upgrade it, or keep the group on one version)",
                             (unsigned long long)version, SLR_SYNC_FORMAT_VERSION);
    if (a->via.array.size != N_FIELDS)
        return bad(err, "wrong number of fields for version 2");
    if (f[2].type != MSGPACK_OBJECT_STR || f[2].via.str.size == 0 ||
        f[2].via.str.size > SLR_SYNC_MAX_MEMBER_ID || memchr(f[2].via.str.ptr, 0, f[2].via.str.size))
        return bad(err, "the member id is not a string of 1..255 bytes without NUL");
    memcpy(d->member, f[2].via.str.ptr, f[2].via.str.size);
    d->member[f[2].via.str.size] = '\0';
    if (!get_u64(&f[3], &d->generation) || !get_u64(&f[4], &d->round) ||
        !get_u64(&f[5], &d->examples) || !get_u64(&f[6], &d->fingerprint))
        return bad(err, "generation, round, examples or fingerprint is not an unsigned integer");
    slr_status st = decode_ranges(&f[7], d, err);
    if (st != SLR_OK)
        return st;
    double bw, bg;
    if (f[8].type != MSGPACK_OBJECT_ARRAY || f[8].via.array.size != 2 ||
        !get_num(&f[8].via.array.ptr[0], &bw) || !get_num(&f[8].via.array.ptr[1], &bg))
        return bad(err, "the bias is not [w, g2]");
    if (!(fabs(bw) <= SLR_MAX_ABS_WEIGHT) || !(bg >= 0) || !(bg <= DBL_MAX))
        return bad(err, "the bias holds a non-finite or negative value");
    d->bias_w = bw;
    d->bias_g2 = bg;
    if (f[9].type != MSGPACK_OBJECT_BIN || f[9].via.bin.size % SLR_SYNC_ENTRY)
        return bad(err, "the entries are not a bin of whole 20-byte entries");
    d->n_entries = f[9].via.bin.size / SLR_SYNC_ENTRY;
    if (d->n_entries) {
        d->entries = malloc(f[9].via.bin.size);
        if (!d->entries)
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory decoding a delta");
        memcpy(d->entries, f[9].via.bin.ptr, f[9].via.bin.size);
    }
    if (d->examples == 0 && (d->n_entries || d->bias_g2 != 0.0))
        return bad(err, "entries without examples");
    return check_entries(d->entries, d->n_entries, err);
}

slr_status slr_sync_take(msgpack_sbuffer *sb, unsigned char **out, size_t *out_len,
                         const char *what, slr_error *err)
{
    if (!sb->data) {
        msgpack_sbuffer_destroy(sb);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory encoding %s", what);
    }
    *out = (unsigned char *)sb->data;
    *out_len = sb->size;
    return SLR_OK;
}

slr_status slr_sync_unpack(const void *buf, size_t len, msgpack_zone *zone, msgpack_object *obj,
                           const char *what, slr_error *err)
{
    msgpack_zone_init(zone, 0); /* so that destroying it is always right */
    size_t size = 0, need = 0;
    switch (slr_msgpack_scan(buf, len, &size, &need)) {
    case SLR_MSGPACK_INCOMPLETE:
        return slr_error_set(err, SLR_ERR_CORRUPT, "%s: truncated record", what);
    case SLR_MSGPACK_INVALID:
        return slr_error_set(err, SLR_ERR_CORRUPT, "%s: not msgpack", what);
    case SLR_MSGPACK_COMPLETE: break;
    }
    if (size != len)
        return slr_error_set(err, SLR_ERR_CORRUPT, "%s: bytes after the record", what);
    msgpack_zone_destroy(zone);
    if (!msgpack_zone_init(zone, need + 256)) {
        msgpack_zone_init(zone, 0);
        return slr_error_set(err, SLR_ERR_NOMEM, "%s: out of memory (%zu bytes)", what, need);
    }
    size_t off = 0;
    if (msgpack_unpack(buf, len, &off, zone, obj) != MSGPACK_UNPACK_SUCCESS || off != len)
        return slr_error_set(err, SLR_ERR_CORRUPT, "%s: not one msgpack value", what);
    return SLR_OK;
}

slr_status slr_sync_delta_decode(const void *buf, size_t len, slr_sync_delta *d, slr_error *err)
{
    memset(d, 0, sizeof *d);
    msgpack_zone zone;
    msgpack_object obj;
    slr_status st = slr_sync_unpack(buf, len, &zone, &obj, "sync delta", err);
    if (st == SLR_OK)
        st = decode_fields(&obj, d, err);
    msgpack_zone_destroy(&zone);
    if (st != SLR_OK)
        slr_sync_delta_clear(d);
    return st;
}
