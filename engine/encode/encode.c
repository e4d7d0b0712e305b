/* encode.c - msgpack output and the slr_encode_raw dispatch (see encode.h).
 *
 * msgpack-c's packer writes through a callback into the slr_buf.  The
 * callback cannot return our error, so it records the failure and the
 * encoder rolls the buffer back to where the record started: a caller never
 * sees half a record.  The compact form's bins are written straight into
 * the buffer after their header, because their bytes (little-endian, packed)
 * are not laid out like any array we hold. */
#include <float.h>
#include <math.h>
#include <msgpack.h>
#include <string.h>

#include "encode/encode_impl.h"

typedef struct sink {
    slr_buf *buf;
    bool failed;
} sink;

static int sink_write(void *data, const char *p, size_t n)
{
    sink *s = data;
    if (slr_buf_append(s->buf, p, n, NULL) != SLR_OK) {
        s->failed = true;
        return -1;
    }
    return 0;
}

static bool exact_float32(double v)
{
    return fabs(v) <= FLT_MAX && (double)(float)v == v;
}

/* The smallest msgpack type that holds v exactly. */
static void pack_number(msgpack_packer *pk, double v)
{
    if (v == trunc(v) && fabs(v) < 9007199254740992.0) { /* 2^53: the cast is exact */
        if (v >= 0)
            msgpack_pack_uint64(pk, (uint64_t)v);
        else
            msgpack_pack_int64(pk, (int64_t)v);
    } else if (exact_float32(v)) {
        msgpack_pack_float(pk, (float)v);
    } else {
        msgpack_pack_double(pk, v);
    }
}

static void pack_str(msgpack_packer *pk, const char *p, size_t n)
{
    msgpack_pack_str_with_body(pk, p, n);
}

static inline void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Write a bin header for n 32-bit words and return where the words go. */
static unsigned char *bin_words(msgpack_packer *pk, sink *s, uint32_t n)
{
    size_t bytes = (size_t)n * 4;
    msgpack_pack_bin(pk, bytes);
    if (s->failed || slr_buf_reserve(s->buf, bytes, NULL) != SLR_OK) {
        s->failed = true;
        return NULL;
    }
    unsigned char *dst = (unsigned char *)s->buf->data + s->buf->len;
    s->buf->len += bytes;
    return dst;
}

/* Largest count whose bin of 4-byte words still fits msgpack's 32-bit length. */
#define MAX_BIN_WORDS (UINT32_MAX / 4)

static slr_status finish(sink *s, size_t start, slr_error *err)
{
    if (!s->failed)
        return SLR_OK;
    s->buf->len = start;
    return slr_error_set(err, SLR_ERR_NOMEM, "out of memory encoding an example");
}

/* ------------------------------------------------------------- raw examples */

static bool all_compact(const slr_raw_example *raw, bool *all_ones)
{
    *all_ones = true;
    if (raw->n_features == 0 || raw->n_features > MAX_BIN_WORDS)
        return false;
    for (uint32_t i = 0; i < raw->n_features; i++) {
        const slr_raw_feature *f = &raw->features[i];
        if (f->name || f->id > UINT32_MAX || !exact_float32(f->value))
            return false;
        *all_ones &= f->value == 1.0;
    }
    return true;
}

/* The ids and values bins; `keyed` precedes each with its map-form key. */
static void pack_compact_raw(msgpack_packer *pk, sink *s, const slr_raw_example *raw, bool all_ones,
                             bool keyed)
{
    uint32_t n = raw->n_features;
    if (keyed)
        pack_str(pk, "ids", 3);
    unsigned char *ids = bin_words(pk, s, n);
    for (uint32_t i = 0; ids && i < n; i++)
        put_le32(ids + 4 * (size_t)i, (uint32_t)raw->features[i].id);
    if (keyed)
        pack_str(pk, "values", 6);
    if (all_ones) {
        msgpack_pack_nil(pk);
        return;
    }
    unsigned char *vals = bin_words(pk, s, n);
    for (uint32_t i = 0; vals && i < n; i++)
        put_le32(vals + 4 * (size_t)i, float_bits((float)raw->features[i].value));
}

/* {ns: {name: value}, id: value, ...}, one entry per run, in input order. */
static void pack_features(msgpack_packer *pk, const slr_raw_example *raw)
{
    const slr_raw_feature *f = raw->features;
    uint32_t n = raw->n_features, entries = 0;
    for (uint32_t i = 0; i < n; i++)
        entries += i == 0 || !slr_raw_feature_same_namespace(&f[i - 1], &f[i]);
    msgpack_pack_map(pk, entries);
    for (uint32_t i = 0; i < n;) {
        if (!f[i].name) {
            msgpack_pack_uint64(pk, f[i].id);
            pack_number(pk, f[i].value);
            i++;
            continue;
        }
        uint32_t j = i + 1;
        while (j < n && slr_raw_feature_same_namespace(&f[i], &f[j]))
            j++;
        pack_str(pk, f[i].ns ? f[i].ns : "", f[i].ns_len);
        msgpack_pack_map(pk, j - i);
        for (; i < j; i++) {
            pack_str(pk, f[i].name, f[i].name_len);
            pack_number(pk, f[i].value);
        }
    }
}

static void pack_label(msgpack_packer *pk, const slr_raw_example *raw)
{
    if (raw->has_label)
        pack_number(pk, raw->label);
    else
        msgpack_pack_nil(pk);
}

static slr_status encode_msgpack(slr_buf *out, const slr_raw_example *raw, slr_error *err)
{
    sink s = {out, false};
    size_t start = out->len;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s, sink_write);
    bool all_ones, compact = all_compact(raw, &all_ones);

    if (raw->tag) { /* only the map form has room for a tag */
        msgpack_pack_map(&pk, 3 + raw->has_weight + compact);
        pack_str(&pk, "label", 5);
        pack_label(&pk, raw);
        if (raw->has_weight) {
            pack_str(&pk, "weight", 6);
            pack_number(&pk, raw->weight);
        }
        pack_str(&pk, "tag", 3);
        pack_str(&pk, raw->tag, raw->tag_len);
        if (compact) {
            pack_compact_raw(&pk, &s, raw, all_ones, true);
        } else {
            pack_str(&pk, "features", 8);
            pack_features(&pk, raw);
        }
    } else if (compact) {
        msgpack_pack_array(&pk, 4);
        pack_label(&pk, raw);
        if (raw->has_weight)
            pack_number(&pk, raw->weight);
        else
            msgpack_pack_nil(&pk);
        pack_compact_raw(&pk, &s, raw, all_ones, false);
    } else {
        msgpack_pack_array(&pk, raw->has_weight ? 3 : 2);
        pack_label(&pk, raw);
        if (raw->has_weight)
            pack_number(&pk, raw->weight);
        pack_features(&pk, raw);
    }
    return finish(&s, start, err);
}

slr_status slr_encode_raw(slr_buf *out, slr_format to, const slr_raw_example *raw, slr_error *err)
{
    switch (to) {
    case SLR_FORMAT_MSGPACK: return encode_msgpack(out, raw, err);
    case SLR_FORMAT_VW: return slr_encode_vw(out, raw, err);
    case SLR_FORMAT_LIBSVM:
    case SLR_FORMAT_CRITEO: break;
    }
    return slr_error_set(err, SLR_ERR_ARG,
                         "cannot write %s: streamlr writes msgpack or vw (libsvm and criteo are input only)",
                         slr_format_name(to));
}

/* ---------------------------------------------------------- hashed examples */

slr_status slr_encode_hashed(slr_buf *out, const slr_example *ex, slr_error *err)
{
    if (ex->n_features > MAX_BIN_WORDS)
        return slr_error_set(err, SLR_ERR_BAD_INPUT, "%u features are too many for one msgpack bin",
                             ex->n_features);
    sink s = {out, false};
    size_t start = out->len;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s, sink_write);

    msgpack_pack_array(&pk, 4);
    if (ex->has_label)
        msgpack_pack_uint8(&pk, ex->label == 1.0);
    else
        msgpack_pack_nil(&pk);
    if (ex->weight == 1.0)
        msgpack_pack_nil(&pk);
    else
        pack_number(&pk, ex->weight);

    uint32_t n = ex->n_features;
    bool all_ones = true;
    unsigned char *ids = bin_words(&pk, &s, n);
    for (uint32_t i = 0; ids && i < n; i++) {
        put_le32(ids + 4 * (size_t)i, ex->features[i].index);
        all_ones &= ex->features[i].value == 1.0f;
    }
    if (all_ones) {
        msgpack_pack_nil(&pk);
    } else {
        unsigned char *vals = bin_words(&pk, &s, n);
        for (uint32_t i = 0; vals && i < n; i++)
            put_le32(vals + 4 * (size_t)i, float_bits(ex->features[i].value));
    }
    return finish(&s, start, err);
}
