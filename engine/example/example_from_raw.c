/* example_from_raw.c - hash a decoded raw example into an slr_example.
 *
 * This is the one place where input text becomes weight indices, so every
 * format hashes the same (namespace, name) to the same index, and the checks
 * on labels, weights and values (example.c) apply to all formats alike.
 * Namespaces arrive as runs; the namespace seed is recomputed only where a
 * run starts, found by slr_raw_feature_same_namespace (pointer and length
 * first, so views of the same bytes cost no memcmp), and taken from a table
 * for the empty and one-byte names when the caller has one.
 *
 * slr_decoder_next_example, decoding and hashing in one call, lives here
 * too: it is the example layer's use of a decoder (decode/ knows nothing of
 * hashed examples), with the compact msgpack form read from the decoder's
 * views straight into the example. */
#include <endian.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "decode/decode_compact.h"
#include "streamlr/example.h"

/* Name the feature that failed, so a user can find it in the input. */
static slr_status feature_error(slr_status st, slr_error *err, const slr_raw_feature *f)
{
    if (!err)
        return st;
    if (!f->name)
        return slr_error_prefix(err, "pre-hashed feature %llu", (unsigned long long)f->id);
    int ns_len = f->ns_len > 64 ? 64 : (int)f->ns_len;
    int name_len = f->name_len > 64 ? 64 : (int)f->name_len;
    return slr_error_prefix(err, "feature \"%.*s\" in namespace \"%.*s\"", name_len, f->name, ns_len,
                            f->ns ? f->ns : "");
}

slr_status slr_example_from_raw(slr_example *ex, const slr_raw_example *raw, slr_error *err)
{
    return slr_example_from_raw_seeded(ex, raw, NULL, err);
}

slr_status slr_example_from_raw_seeded(slr_example *ex, const slr_raw_example *raw,
                                       const slr_namespace_seeds *seeds, slr_error *err)
{
    slr_status st;
    slr_example_reset(ex);
    if (raw->has_label && (st = slr_example_set_label(ex, raw->label, err)) != SLR_OK)
        return st;
    if (raw->has_weight && (st = slr_example_set_weight(ex, raw->weight, err)) != SLR_OK)
        return st;

    const slr_raw_feature *prev_named = NULL;
    for (uint32_t i = 0; i < raw->n_features; i++) {
        const slr_raw_feature *f = &raw->features[i];
        if (!f->name) {
            st = slr_example_add_hashed(ex, f->id, f->value, err);
        } else {
            if (!prev_named || !slr_raw_feature_same_namespace(prev_named, f)) {
                const char *ns = f->ns ? f->ns : "";
                if (seeds && f->ns_len <= 1)
                    slr_example_begin_namespace_seeded(
                        ex, ns, f->ns_len, f->ns_len ? seeds->letter[(unsigned char)ns[0]] : seeds->empty);
                else
                    slr_example_begin_namespace(ex, ns, f->ns_len);
            }
            prev_named = f;
            st = slr_example_add(ex, f->name, f->name_len, f->value, err);
        }
        if (st != SLR_OK)
            return feature_error(st, err, f);
    }
    return slr_example_finish(ex, err);
}

/* What slr_example_from_raw does with the raw example the general path
 * would build from the same record: label, weight, then
 * slr_example_add_hashed per feature.  False (ex unspecified) for anything
 * that path would reject, which then says why. */
static bool example_from_compact(slr_example *ex, const slr_raw_compact *c)
{
    slr_example_reset(ex);
    if (c->has_label && slr_example_set_label(ex, c->label, NULL) != SLR_OK)
        return false;
    if (c->has_weight && slr_example_set_weight(ex, c->weight, NULL) != SLR_OK)
        return false;
    const uint32_t n = c->n, mask = slr_hashing_mask(ex->hashing);
    if (slr_example_reserve(ex, n, NULL) != SLR_OK)
        return false;
    /* locals: the stores below may not alias them, so they stay in registers */
    const unsigned char *ids = c->ids, *values = c->values;
    uint64_t *hashes = ex->hashes;
    slr_feature *features = ex->features;
    const uint32_t max_features = ex->max_features;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        float v = 1.0f;
        if (values) {
            uint32_t bits;
            memcpy(&bits, values + 4 * (size_t)i, 4);
            bits = le32toh(bits);
            memcpy(&v, &bits, sizeof v);
        }
        if (!(fabs((double)v) <= SLR_MAX_ABS_VALUE) || k >= max_features)
            return false; /* NaN, Inf, too large, too many: the general path says why */
        if (v == 0.0f)
            continue; /* contributes nothing, as in slr_example_add_hashed */
        uint32_t id;
        memcpy(&id, ids + 4 * (size_t)i, 4);
        id = le32toh(id);
        hashes[k] = id;
        features[k++] = (slr_feature){.index = id & mask, .value = v};
    }
    ex->n_features = k;
    ex->ns_open = false;
    return slr_example_finish(ex, NULL) == SLR_OK;
}

/* The seeds of the short namespace names, the same for every decoder. */
static slr_namespace_seeds short_seeds;
static pthread_once_t short_seeds_once = PTHREAD_ONCE_INIT;
static void init_short_seeds(void) { slr_namespace_seeds_init(&short_seeds); }

slr_decode_result slr_decoder_next_example(slr_decoder *d, const char *buf, size_t len, bool at_end,
                                           size_t *consumed, slr_raw_example *raw,
                                           slr_example *ex, slr_error *err)
{
    slr_raw_compact c;
    if (slr_decoder_take_compact(d, buf, len, consumed, &c) && example_from_compact(ex, &c))
        return SLR_DECODE_EXAMPLE;
    pthread_once(&short_seeds_once, init_short_seeds);
    slr_decode_result r = slr_decoder_next(d, buf, len, at_end, consumed, raw, err);
    if (r == SLR_DECODE_EXAMPLE &&
        slr_example_from_raw_seeded(ex, raw, &short_seeds, err) != SLR_OK) {
        slr_decoder_note_bad(d, ex->bad_reason); /* the example's reason, for slr_decoder_last_bad */
        return SLR_DECODE_BAD;
    }
    return r;
}
