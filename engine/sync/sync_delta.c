/* sync_delta.c - the delta record a group member publishes (sync.h), as
 * msgpack, and the configuration fingerprint it carries.
 *
 * A record is one msgpack array, positional so that a reader checks every
 * field's type and count without a schema:
 *   ["streamlr-delta", 3, member, generation, round, examples, fingerprint,
 *    [[topic, partition, from, to], ...], [bias_w, bias_g2], n, planes]
 * with planes the n entries (sync.h) as five byte planes, each
 * [raw length, bin]: the indices as varint gaps (the first index, then
 * j - previous j - 1: LEB128, minimal), then the low and the high bytes of
 * the dw bfloat16s, then those of the dg bfloat16s.  Split so, the high
 * bytes (sign and exponent) of a plane are alike and the gaps small, and
 * zstd, which compresses each plane alone, halves them where it would
 * barely touch the interleaved entries (docs/SYNC_PROTOCOL.md).  A bin as
 * long as its raw length is the plane itself; a shorter one is one zstd
 * frame of it, at most MAX_RATIO times shorter, so that a record makes a
 * reader allocate at most MAX_RATIO times its own size.  A future version
 * changes the second field; a reader refuses a version it does not know
 * rather than guess. */
#include <float.h>
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

#include "streamlr/sync.h"
#include "sync_impl.h"
#include "util/le.h"
#include "util/msgpack_obj.h"
#include "util/msgpack_scan.h"

#define MAGIC "streamlr-delta"
#define N_FIELDS 11
#define N_PLANES 5
/* how much shorter than its plane a compressed bin may be (a writer keeps
 * a plane that compresses better raw: only long runs of one byte do) */
#define MAX_RATIO 64
/* zstd's level: 1 is the fastest and, on these planes, no larger than 3
 * (4.00 bytes an entry against 4.05 on tools/bench sync's stream) */
#define ZSTD_LEVEL 1

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

static size_t put_varint(unsigned char *p, uint32_t v)
{
    size_t n = 0;
    for (; v >= 0x80; v >>= 7)
        p[n++] = (unsigned char)(v | 0x80);
    p[n++] = (unsigned char)v;
    return n;
}

/* The five planes of d's entries into one buffer of 5 * n + 4 * n bytes at
 * most; *len[i] their lengths.  SLR_ERR_ARG if the entries are not in
 * strictly increasing index or hold a non-finite value (a delta no member
 * makes: nothing is written that a reader would refuse). */
static slr_status split_planes(const slr_sync_delta *d, unsigned char *buf, unsigned char *plane[N_PLANES],
                               size_t len[N_PLANES], slr_error *err)
{
    const size_t n = d->n_entries;
    plane[0] = buf;
    for (int i = 1; i < N_PLANES; i++)
        plane[i] = buf + 5 * n + (size_t)(i - 1) * n;
    size_t g = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *e = d->entries + i * SLR_SYNC_ENTRY;
        uint32_t j = slr_le_get_u32(e), prev = i ? slr_le_get_u32(e - SLR_SYNC_ENTRY) : 0;
        if (i > 0 && j <= prev)
            return slr_error_set(err, SLR_ERR_ARG,
                                 "sync delta: entry %zu (coordinate %u) is not after the one before",
                                 i, j);
        uint16_t dw = slr_le_get_u16(e + 4), dg = slr_le_get_u16(e + 6);
        if (slr_sync_bf16_bad(dw) || slr_sync_bf16_bad(dg))
            return slr_error_set(err, SLR_ERR_ARG,
                                 "sync delta: coordinate %u holds a non-finite value", j);
        g += put_varint(plane[0] + g, i ? j - prev - 1 : j);
        plane[1][i] = (unsigned char)dw;
        plane[2][i] = (unsigned char)(dw >> 8);
        plane[3][i] = (unsigned char)dg;
        plane[4][i] = (unsigned char)(dg >> 8);
    }
    len[0] = g;
    for (int i = 1; i < N_PLANES; i++)
        len[i] = n;
    return SLR_OK;
}

/* [raw length, bin]: the plane compressed if that pays within MAX_RATIO
 * (scratch holds ZSTD_compressBound(len); were zstd to fail, say short of
 * memory, the plane goes raw: a reader takes either) */
static void pack_plane(msgpack_packer *pk, ZSTD_CCtx *cx, const unsigned char *p, size_t len,
                       unsigned char *scratch, size_t cap)
{
    size_t z = len && cx ? ZSTD_compressCCtx(cx, scratch, cap, p, len, ZSTD_LEVEL) : 0;
    bool packed = len && !ZSTD_isError(z) && z < len && len <= MAX_RATIO * z;
    msgpack_pack_array(pk, 2);
    msgpack_pack_uint64(pk, len);
    msgpack_pack_bin(pk, packed ? z : len);
    msgpack_pack_bin_body(pk, packed ? scratch : p, packed ? z : len);
}

slr_status slr_sync_delta_encode(const slr_sync_delta *d, unsigned char **out, size_t *out_len,
                                 slr_error *err)
{
    *out = NULL;
    *out_len = 0;
    const size_t n = d->n_entries;
    unsigned char *planes = malloc(9 * n + 1), *scratch = malloc(ZSTD_compressBound(5 * n) + 1);
    unsigned char *plane[N_PLANES];
    size_t len[N_PLANES];
    if (!planes || !scratch) {
        free(planes);
        free(scratch);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory encoding a delta");
    }
    slr_status st = split_planes(d, planes, plane, len, err);
    if (st != SLR_OK) {
        free(planes);
        free(scratch);
        return st;
    }
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
    msgpack_pack_uint64(&pk, n);
    msgpack_pack_array(&pk, N_PLANES);
    ZSTD_CCtx *cx = ZSTD_createCCtx(); /* one for the five planes */
    for (int i = 0; i < N_PLANES; i++)
        pack_plane(&pk, cx, plane[i], len[i], scratch, ZSTD_compressBound(5 * n) + 1);
    ZSTD_freeCCtx(cx);
    free(planes);
    free(scratch);
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

/* Plane i of a record, raw (*owned NULL: it points into the record) or
 * decompressed into *owned; its raw length must be `want` (for the gaps:
 * between n and 5 n, returned in *len). */
static slr_status get_plane(const msgpack_object *o, int i, size_t n, const unsigned char **p,
                            size_t *len, unsigned char **owned, slr_error *err)
{
    *owned = NULL;
    uint64_t raw;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 2 ||
        o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        o->via.array.ptr[1].type != MSGPACK_OBJECT_BIN)
        return slr_error_set(err, SLR_ERR_CORRUPT, "sync delta: plane %d is not [length, bin]", i);
    raw = o->via.array.ptr[0].via.u64;
    const unsigned char *b = (const unsigned char *)o->via.array.ptr[1].via.bin.ptr;
    const size_t blen = o->via.array.ptr[1].via.bin.size;
    if (i == 0 ? raw < n || raw > 5 * (uint64_t)n : raw != n)
        return slr_error_set(err, SLR_ERR_CORRUPT,
                             "sync delta: plane %d holds %llu bytes, not what %zu entries take", i,
                             (unsigned long long)raw, n);
    *len = (size_t)raw;
    if (blen == raw) {
        *p = b;
        return SLR_OK;
    }
    if (blen > raw || raw > (uint64_t)MAX_RATIO * blen ||
        ZSTD_getFrameContentSize(b, blen) != raw || ZSTD_findFrameCompressedSize(b, blen) != blen)
        return slr_error_set(err, SLR_ERR_CORRUPT,
                             "sync delta: plane %d is neither its %llu bytes nor one zstd frame of them",
                             i, (unsigned long long)raw);
    if (!(*owned = malloc(raw)))
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory decoding a delta");
    size_t got = ZSTD_decompress(*owned, raw, b, blen);
    if (ZSTD_isError(got) || got != raw)
        return slr_error_set(err, SLR_ERR_CORRUPT, "sync delta: plane %d does not decompress: %s", i,
                             ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
    *p = *owned;
    return SLR_OK;
}

/* n entries from the planes: gaps that are minimal varints, exactly
 * filling their plane, with indices below 2^32; finite values. */
static slr_status join_planes(const unsigned char *const p[N_PLANES], size_t gaps_len, size_t n,
                              unsigned char *e, slr_error *err)
{
    size_t at = 0;
    uint64_t next = 0; /* the least index the entry may have */
    for (size_t i = 0; i < n; i++, e += SLR_SYNC_ENTRY) {
        uint64_t gap = 0;
        for (unsigned shift = 0;; shift += 7) {
            if (at == gaps_len || shift > 28)
                return slr_error_set(err, SLR_ERR_CORRUPT,
                                     "sync delta: entry %zu's index gap is cut short or too long", i);
            unsigned char c = p[0][at++];
            gap |= (uint64_t)(c & 0x7f) << shift;
            if (!(c & 0x80)) {
                if (c == 0 && shift > 0)
                    return slr_error_set(err, SLR_ERR_CORRUPT,
                                         "sync delta: entry %zu's index gap is not minimal", i);
                break;
            }
        }
        uint64_t j = next + gap;
        if (j > UINT32_MAX)
            return slr_error_set(err, SLR_ERR_CORRUPT,
                                 "sync delta: entry %zu's index is beyond 2^32", i);
        uint16_t dw = (uint16_t)(p[1][i] | p[2][i] << 8), dg = (uint16_t)(p[3][i] | p[4][i] << 8);
        if (slr_sync_bf16_bad(dw) || slr_sync_bf16_bad(dg))
            return slr_error_set(err, SLR_ERR_CORRUPT,
                                 "sync delta: coordinate %llu holds a non-finite value",
                                 (unsigned long long)j);
        slr_le_put_u32(e, (uint32_t)j);
        slr_le_put_u16(e + 4, dw);
        slr_le_put_u16(e + 6, dg);
        next = j + 1;
    }
    if (at != gaps_len)
        return slr_error_set(err, SLR_ERR_CORRUPT,
                             "sync delta: the index gaps go on past %zu entries", n);
    return SLR_OK;
}

static slr_status decode_entries(const msgpack_object *count, const msgpack_object *planes,
                                 slr_sync_delta *d, slr_error *err)
{
    if (count->type != MSGPACK_OBJECT_POSITIVE_INTEGER || count->via.u64 > UINT32_MAX + 1ull ||
        planes->type != MSGPACK_OBJECT_ARRAY || planes->via.array.size != N_PLANES)
        return bad(err, "the entries are not a count and five planes");
    const size_t n = (size_t)count->via.u64;
    const unsigned char *p[N_PLANES];
    unsigned char *owned[N_PLANES] = {0};
    size_t gaps_len = 0, len;
    slr_status st = SLR_OK;
    for (int i = 0; i < N_PLANES && st == SLR_OK; i++)
        st = get_plane(&planes->via.array.ptr[i], i, n, &p[i], i ? &len : &gaps_len, &owned[i], err);
    if (st == SLR_OK && n && !(d->entries = malloc(n * SLR_SYNC_ENTRY)))
        st = slr_error_set(err, SLR_ERR_NOMEM, "out of memory decoding a delta");
    if (st == SLR_OK && (st = join_planes(p, gaps_len, n, d->entries, err)) == SLR_OK)
        d->n_entries = n;
    for (int i = 0; i < N_PLANES; i++)
        free(owned[i]);
    return st;
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
        return bad(err, "wrong number of fields for version 3");
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
    if ((st = decode_entries(&f[9], &f[10], d, err)) != SLR_OK)
        return st;
    if (d->examples == 0 && (d->n_entries || d->bias_g2 != 0.0))
        return bad(err, "entries without examples");
    return SLR_OK;
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
