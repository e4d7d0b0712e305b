/* example.c - building a hashed sparse example (see include/streamlr/example.h).
 *
 * Hashing is XXH3-64 from libxxhash: the namespace name hashes to a seed, the
 * feature name hashes under that seed.  The full 64-bit hashes are kept until
 * slr_example_finish() so that -q interactions hash the pair of hashes rather
 * than re-hashing strings; indices are the low `bits` bits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
/* XXH3 inlined: names are short (a few to a few dozen bytes), where a call
 * through the shared library costs as much as the hash.  Same values. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "quadratic.h"
#include "streamlr/example.h"

void slr_hashing_init(slr_hashing *h, unsigned bits)
{
    memset(h, 0, sizeof *h);
    h->bits = bits;
}

slr_status slr_hashing_add_quadratic(slr_hashing *h, const char *pair, slr_error *err)
{
    if (!pair || strlen(pair) != 2 || pair[0] <= ' ' || pair[1] <= ' ' || pair[0] == 127 ||
        pair[1] == 127)
        return slr_error_set(err, SLR_ERR_ARG,
                             "-q takes two namespace letters, e.g. -q ab (got \"%s\")",
                             pair ? pair : "");
    if (h->n_quadratic >= SLR_MAX_QUADRATIC)
        return slr_error_set(err, SLR_ERR_ARG, "at most %d -q pairs are supported",
                             SLR_MAX_QUADRATIC);
    for (unsigned i = 0; i < h->n_quadratic; i++)
        if (h->quadratic[i][0] == pair[0] && h->quadratic[i][1] == pair[1])
            return SLR_OK; /* a repeated -q would only double-count features */
    h->quadratic[h->n_quadratic][0] = pair[0];
    h->quadratic[h->n_quadratic][1] = pair[1];
    h->n_quadratic++;
    return SLR_OK;
}

slr_status slr_hashing_add_cubic(slr_hashing *h, const char *triple, slr_error *err)
{
    if (!triple || strlen(triple) != 3 || triple[0] <= ' ' || triple[1] <= ' ' ||
        triple[2] <= ' ' || triple[0] == 127 || triple[1] == 127 || triple[2] == 127)
        return slr_error_set(err, SLR_ERR_ARG,
                             "--cubic takes three namespace letters, e.g. --cubic abc (got \"%s\")",
                             triple ? triple : "");
    if (h->n_cubic >= SLR_MAX_CUBIC)
        return slr_error_set(err, SLR_ERR_ARG, "at most %d --cubic triples are supported",
                             SLR_MAX_CUBIC);
    for (unsigned i = 0; i < h->n_cubic; i++)
        if (!memcmp(h->cubic[i], triple, 3))
            return SLR_OK; /* a repeated --cubic would only double-count features */
    memcpy(h->cubic[h->n_cubic++], triple, 3);
    return SLR_OK;
}

void slr_example_init(slr_example *ex, const slr_hashing *hashing)
{
    memset(ex, 0, sizeof *ex);
    ex->hashing = hashing;
    ex->max_features = SLR_DEFAULT_MAX_FEATURES;
    slr_example_reset(ex);
}

void slr_example_free(slr_example *ex)
{
    free(ex->features);
    free(ex->hashes);
    free(ex->spans);
    memset(ex, 0, sizeof *ex);
}

void slr_example_reset(slr_example *ex)
{
    ex->label = 0;
    ex->has_label = false;
    ex->weight = 1.0;
    ex->n_features = 0;
    ex->n_spans = 0;
    ex->ns_chosen = false;
    ex->ns_open = false;
    ex->bad_reason = SLR_BAD_DECODE;
}

/* Bad input: record why, for counting and dead letters. */
static slr_status reject(slr_example *ex, slr_bad_reason why)
{
    ex->bad_reason = why;
    return SLR_ERR_BAD_INPUT;
}

slr_status slr_example_set_label(slr_example *ex, double raw, slr_error *err)
{
    if (raw == 1.0)
        ex->label = 1.0;
    else if (raw == 0.0 || raw == -1.0)
        ex->label = 0.0;
    else
        return slr_error_set(err, reject(ex, SLR_BAD_LABEL), "label %g is not one of 0, 1, -1, +1", raw);
    ex->has_label = true;
    return SLR_OK;
}

slr_status slr_example_set_weight(slr_example *ex, double weight, slr_error *err)
{
    if (!(weight > 0.0) || !isfinite(weight) || weight > SLR_MAX_ABS_VALUE)
        return slr_error_set(err, reject(ex, SLR_BAD_WEIGHT),
                             "importance weight %g must be > 0 and at most %g", weight, SLR_MAX_ABS_VALUE);
    ex->weight = weight;
    return SLR_OK;
}

static slr_status reserve_features(slr_example *ex, uint32_t need, slr_error *err)
{
    if (need <= ex->cap_features)
        return SLR_OK;
    uint32_t cap = ex->cap_features ? ex->cap_features : 64;
    while (cap < need)
        cap *= 2;
    slr_feature *f = realloc(ex->features, (size_t)cap * sizeof *f);
    if (!f)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for %u features", cap);
    ex->features = f;
    uint64_t *h = realloc(ex->hashes, (size_t)cap * sizeof *h);
    if (!h)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for %u features", cap);
    ex->hashes = h;
    ex->cap_features = cap;
    return SLR_OK;
}

slr_status slr_example_reserve(slr_example *ex, uint32_t extra, slr_error *err)
{
    if (extra > UINT32_MAX - ex->n_features)
        return slr_error_set(err, SLR_ERR_BAD_INPUT, "too many features in one example");
    return reserve_features(ex, ex->n_features + extra, err);
}

static slr_status open_span(slr_example *ex, unsigned char letter, slr_error *err)
{
    if (ex->n_spans == ex->cap_spans) {
        uint32_t cap = ex->cap_spans ? ex->cap_spans * 2 : 16;
        slr_namespace_span *s = realloc(ex->spans, (size_t)cap * sizeof *s);
        if (!s)
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for namespaces");
        ex->spans = s;
        ex->cap_spans = cap;
    }
    ex->spans[ex->n_spans++] =
        (slr_namespace_span){.letter = letter, .begin = ex->n_features, .end = ex->n_features};
    return SLR_OK;
}

void slr_example_begin_namespace(slr_example *ex, const char *ns, size_t len)
{
    slr_example_begin_namespace_seeded(ex, ns, len, XXH3_64bits(ns, len));
}

void slr_example_begin_namespace_seeded(slr_example *ex, const char *ns, size_t len, uint64_t seed)
{
    ex->ns_seed = seed;
    ex->ns_letter = len ? (unsigned char)ns[0] : ' ';
    ex->ns_ignored = ex->hashing->any_ignored && slr_hashing_ignores(ex->hashing, ex->ns_letter);
    ex->ns_chosen = true;
    ex->ns_open = false; /* its span opens with its first feature */
}

void slr_namespace_seeds_init(slr_namespace_seeds *s)
{
    s->empty = XXH3_64bits("", 0);
    for (int c = 0; c < 256; c++) {
        char name = (char)c;
        s->letter[c] = XXH3_64bits(&name, 1);
    }
}

static slr_status value_error(slr_example *ex, double value, slr_error *err)
{
    if (!isfinite(value))
        return slr_error_set(err, reject(ex, SLR_BAD_VALUE), "feature value is %s",
                             isnan(value) ? "NaN" : "infinite");
    if (fabs(value) > SLR_MAX_ABS_VALUE)
        return slr_error_set(err, reject(ex, SLR_BAD_VALUE), "feature value %g is beyond the bound |v| <= %g",
                             value, SLR_MAX_ABS_VALUE);
    return slr_error_set(err, reject(ex, SLR_BAD_TOO_MANY_FEATURES),
                         "example has more than %u features (raise --max-features if this is intended)",
                         ex->max_features);
}

/* A finite value within bounds, and room under --max-features (the common
 * case is two comparisons; NaN fails the first). */
static inline slr_status check_value(slr_example *ex, double value, slr_error *err)
{
    if (fabs(value) <= SLR_MAX_ABS_VALUE && ex->n_features < ex->max_features)
        return SLR_OK;
    return value_error(ex, value, err);
}

static inline slr_status room_for_one(slr_example *ex, slr_error *err)
{
    return ex->n_features < ex->cap_features ? SLR_OK : reserve_features(ex, ex->n_features + 1, err);
}

static inline void push_feature(slr_example *ex, uint64_t hash, double value)
{
    uint32_t i = ex->n_features++;
    ex->hashes[i] = hash;
    ex->features[i].index = (uint32_t)hash & slr_hashing_mask(ex->hashing);
    ex->features[i].value = (float)value;
}

slr_status slr_example_add(slr_example *ex, const char *name, size_t len, double value, slr_error *err)
{
    if (!ex->ns_chosen)
        slr_example_begin_namespace(ex, "", 0);
    if (ex->ns_ignored)
        return SLR_OK; /* --ignore: as if the namespace were not in the input */
    slr_status st = check_value(ex, value, err);
    if (st != SLR_OK)
        return st;
    if (value == 0.0)
        return SLR_OK; /* a zero feature contributes nothing to prediction or update */
    if (!ex->ns_open) {
        if ((st = open_span(ex, ex->ns_letter, err)) != SLR_OK)
            return st;
        ex->ns_open = true;
    }
    if ((st = room_for_one(ex, err)) != SLR_OK)
        return st;
    push_feature(ex, XXH3_64bits_withSeed(name, len, ex->ns_seed), value);
    ex->spans[ex->n_spans - 1].end = ex->n_features;
    return SLR_OK;
}

slr_status slr_example_add_hashed(slr_example *ex, uint64_t id, double value, slr_error *err)
{
    slr_status st = check_value(ex, value, err);
    if (st != SLR_OK)
        return st;
    if (value == 0.0)
        return SLR_OK;
    if ((st = room_for_one(ex, err)) != SLR_OK)
        return st;
    ex->ns_open = false; /* pre-hashed features sit outside every namespace span */
    push_feature(ex, id, value);
    return SLR_OK;
}

/* The pair hash is XXH3 of b's 64-bit hash (little-endian bytes) seeded with
 * a's, so "ab" and "ba" differ and the result does not depend on the host. */
static uint64_t pair_hash(uint64_t ha, uint64_t hb)
{
    unsigned char bytes[8];
    for (int k = 0; k < 8; k++)
        bytes[k] = (unsigned char)(hb >> (8 * k));
    return XXH3_64bits_withSeed(bytes, sizeof bytes, ha);
}

static slr_status add_crossed(slr_example *ex, uint64_t hash, double v, const char *flag,
                              slr_error *err)
{
    if (ex->n_features >= ex->max_features)
        return slr_error_set(err, reject(ex, SLR_BAD_TOO_MANY_FEATURES),
                             "example has more than %u features after %s expansion "
                             "(raise --max-features if this is intended)",
                             ex->max_features, flag);
    slr_status st = reserve_features(ex, ex->n_features + 1, err);
    if (st != SLR_OK)
        return st;
    push_feature(ex, hash, v);
    return SLR_OK;
}

static slr_status add_pair(slr_example *ex, uint32_t i, uint32_t j, slr_error *err)
{
    double v = (double)ex->features[i].value * (double)ex->features[j].value;
    return add_crossed(ex, pair_hash(ex->hashes[i], ex->hashes[j]), v, "-q", err);
}

/* a*b*c hashes as the pair (a*b, c) */
static slr_status add_triple(slr_example *ex, uint32_t i, uint32_t j, uint32_t k, slr_error *err)
{
    double v = (double)ex->features[i].value * (double)ex->features[j].value *
               (double)ex->features[k].value;
    return add_crossed(ex, pair_hash(pair_hash(ex->hashes[i], ex->hashes[j]), ex->hashes[k]), v,
                       "--cubic", err);
}

/* --ignore_linear: now that the interactions are made, the namespace's own
 * features leave the linear part.  Their value becomes 0 rather than the
 * arrays being compacted, so positions stay as names.c expects them; a zero
 * feature moves neither its weight nor its adagrad sum. */
static void drop_linear(slr_example *ex)
{
    for (uint32_t s = 0; s < ex->n_spans; s++)
        if (slr_letter_in(ex->hashing->ignored_linear, ex->spans[s].letter))
            for (uint32_t i = ex->spans[s].begin; i < ex->spans[s].end; i++)
                ex->features[i].value = 0.0f;
}

typedef struct triple_ctx {
    slr_example *ex;
    slr_error *err;
} triple_ctx;

static slr_status append_triple(void *ctx, uint32_t i, uint32_t j, uint32_t k)
{
    triple_ctx *c = ctx;
    return add_triple(c->ex, i, j, k, c->err);
}

slr_status slr_example_finish(slr_example *ex, slr_error *err)
{
    const slr_hashing *h = ex->hashing;
    for (unsigned q = 0; q < h->n_quadratic; q++) {
        unsigned char a = (unsigned char)h->quadratic[q][0], b = (unsigned char)h->quadratic[q][1];
        /* without a wildcard, a letter comparison says it (the hot path) */
        const bool a_any = a == SLR_NS_WILDCARD, plain = !a_any && b != SLR_NS_WILDCARD;
        for (uint32_t sa = 0; sa < ex->n_spans; sa++) {
            if (!a_any && ex->spans[sa].letter != a)
                continue; /* one test per span, not per pair */
            for (uint32_t sb = 0; sb < ex->n_spans; sb++) {
                if (plain ? ex->spans[sb].letter != b || (a == b && sb < sa)
                          : !slr_quadratic_crosses(ex, a, b, sa, sb))
                    continue;
                slr_namespace_span A = ex->spans[sa], B = ex->spans[sb];
                for (uint32_t i = A.begin; i < A.end; i++) {
                    uint32_t j0 = sa == sb ? i + 1 : B.begin;
                    for (uint32_t j = j0; j < B.end; j++) {
                        slr_status st = add_pair(ex, i, j, err);
                        if (st != SLR_OK)
                            return st;
                    }
                }
            }
        }
    }
    /* --cubic, after the -q pairs (quadratic.h says which triples) */
    triple_ctx tc = {ex, err};
    for (unsigned c = 0; c < h->n_cubic; c++) {
        slr_status st = slr_cubic_walk(ex, h->cubic[c], append_triple, &tc);
        if (st != SLR_OK)
            return st;
    }
    if (h->any_ignored_linear)
        drop_linear(ex);
    return SLR_OK;
}
