/* example.h - one labelled example as the learner sees it: hashed sparse features.
 *
 * Decoders fill an slr_example through the builder calls below; hashing happens
 * here, once per feature, so nothing downstream hashes again.  A feature is
 * (namespace, name, value); its index is XXH3-64(name, seed = XXH3-64(namespace))
 * masked to `bits`.  Quadratic interactions (-q AB) are expanded in
 * slr_example_finish() from the stored 64-bit hashes.
 *
 * An slr_example owns growable arrays that are reused from one example to the
 * next, so steady-state decoding does not allocate. */
#ifndef STREAMLR_EXAMPLE_H
#define STREAMLR_EXAMPLE_H

#include "streamlr/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamlr/bad_reason.h"
#include "streamlr/decode.h"
#include "streamlr/error.h"
#include "streamlr/raw_example.h"

SLR_BEGIN_DECLS

#define SLR_BITS_MIN 1
#define SLR_BITS_MAX 32
#define SLR_BITS_DEFAULT 24
#define SLR_MAX_QUADRATIC 64
#define SLR_MAX_CUBIC 16
/* Feature values (after any decoder transform) must satisfy |v| <= this;
 * larger values are rejected as bad input (they only ever come from broken
 * producers, and they make the logistic update numerically meaningless). */
#define SLR_MAX_ABS_VALUE 1e12
#define SLR_DEFAULT_MAX_FEATURES 65536

/* How feature names become weight indices.  Part of the model: a model can
 * only score examples hashed the same way, so checkpoints store it. */
typedef struct slr_hashing {
    unsigned bits;                            /* index = hash & ((1 << bits) - 1) */
    unsigned n_quadratic;                     /* number of -q pairs */
    char quadratic[SLR_MAX_QUADRATIC][2];     /* namespace first letters, VW style */
    unsigned n_cubic;                         /* number of --cubic triples */
    char cubic[SLR_MAX_CUBIC][3];             /* the same, three namespaces */
    uint8_t ignored[32]; /* bit c: features of namespaces starting with byte c are
                            dropped (VW's --ignore / --keep); the default namespace
                            is ' ' */
    uint8_t ignored_linear[32]; /* bit c: ... only from the linear part; they still
                                   take part in -q / --cubic (VW's --ignore_linear) */
    bool any_ignored;           /* a bit of ignored is set (slr_hashing_ignore) */
    bool any_ignored_linear;    /* a bit of ignored_linear is set (slr_hashing_ignore_linear) */
} slr_hashing;

void slr_hashing_init(slr_hashing *h, unsigned bits);
/* Add a -q pair given as a 2-character string ("ab"; ':' is VW's wildcard,
 * any namespace: "::" crosses every pair of namespaces). */
slr_status slr_hashing_add_quadratic(slr_hashing *h, const char *pair, slr_error *err);
/* VW's --cubic ABC: the interactions of three namespaces (':' as above). */
slr_status slr_hashing_add_cubic(slr_hashing *h, const char *triple, slr_error *err);
/* Bitmaps of namespace first letters (slr_hashing.ignored, .ignored_linear) */
static inline void slr_letter_set(uint8_t set[32], unsigned char letter, bool on)
{
    if (on)
        set[letter >> 3] |= (uint8_t)(1u << (letter & 7));
    else
        set[letter >> 3] &= (uint8_t)~(1u << (letter & 7));
}
static inline bool slr_letter_in(const uint8_t set[32], unsigned char letter)
{
    return (set[letter >> 3] >> (letter & 7)) & 1;
}
static inline bool slr_letters_any(const uint8_t set[32])
{
    for (int i = 0; i < 32; i++)
        if (set[i])
            return true;
    return false;
}
/* VW's --ignore: drop the features of namespaces starting with `letter`
 * (ignored = false takes them again, for --keep). */
static inline void slr_hashing_ignore(slr_hashing *h, unsigned char letter, bool ignored)
{
    slr_letter_set(h->ignored, letter, ignored);
    h->any_ignored = slr_letters_any(h->ignored);
}
static inline bool slr_hashing_ignores(const slr_hashing *h, unsigned char letter)
{
    return slr_letter_in(h->ignored, letter);
}
static inline bool slr_hashing_ignores_any(const slr_hashing *h)
{
    return h->any_ignored;
}
/* VW's --ignore_linear: the namespace's features only in interactions */
static inline void slr_hashing_ignore_linear(slr_hashing *h, unsigned char letter, bool on)
{
    slr_letter_set(h->ignored_linear, letter, on);
    h->any_ignored_linear = slr_letters_any(h->ignored_linear);
}

static inline uint32_t slr_hashing_mask(const slr_hashing *h)
{
    return h->bits >= 32 ? UINT32_MAX : ((UINT32_C(1) << h->bits) - 1);
}

typedef struct slr_feature {
    uint32_t index;
    float value;
} slr_feature;

/* A run of base features that share a namespace; used only for -q. */
typedef struct slr_namespace_span {
    unsigned char letter; /* first byte of the namespace name, ' ' for the default */
    uint32_t begin, end;  /* [begin, end) into features / hashes */
} slr_namespace_span;

typedef struct slr_example {
    /* label in {0, 1}; has_label is false for unlabelled (scoring) input */
    double label;
    bool has_label;
    double weight; /* importance weight, > 0 */

    slr_feature *features; /* base features, then quadratic ones; bias not included */
    uint32_t n_features;
    uint32_t cap_features;
    uint32_t max_features; /* hard limit; more is bad input */

    /* builder state: 64-bit hashes of base features and their namespaces */
    uint64_t *hashes;
    slr_namespace_span *spans;
    uint32_t n_spans, cap_spans;
    uint64_t ns_seed;
    unsigned char ns_letter;
    bool ns_chosen; /* a namespace was begun for this example */
    bool ns_open;   /* ...and its span has been opened by a feature */
    bool ns_ignored; /* ...and it is one of hashing->ignored: its features are dropped */

    const slr_hashing *hashing;
    /* why the last call that returned SLR_ERR_BAD_INPUT rejected the example */
    slr_bad_reason bad_reason;
} slr_example;

void slr_example_init(slr_example *ex, const slr_hashing *hashing);
void slr_example_free(slr_example *ex);

/* Start a new example: no features, label unset, weight 1. */
void slr_example_reset(slr_example *ex);

/* Set the label from a raw value: accepts 0/1 and -1/+1 (VW and LIBSVM
 * conventions).  Anything else is bad input. */
slr_status slr_example_set_label(slr_example *ex, double raw_label, slr_error *err);
slr_status slr_example_set_weight(slr_example *ex, double weight, slr_error *err);

/* Open a namespace; following slr_example_add() calls hash under it.  An empty
 * name is the default namespace. */
void slr_example_begin_namespace(slr_example *ex, const char *ns, size_t len);

/* The same with the namespace's seed, XXH3-64 of its name, already known. */
void slr_example_begin_namespace_seeded(slr_example *ex, const char *ns, size_t len, uint64_t seed);

/* Seeds of the empty and the one-byte namespace names, computed once: a
 * decoder that opens many short namespaces per example (Criteo's 26, VW's
 * single letters) then hashes none of their names. */
typedef struct slr_namespace_seeds {
    uint64_t empty;
    uint64_t letter[256];
} slr_namespace_seeds;
void slr_namespace_seeds_init(slr_namespace_seeds *s);

/* Add a named feature in the current namespace (the default one if none is
 * open).  Rejects NaN/Inf and |value| > SLR_MAX_ABS_VALUE; value 0 is dropped. */
slr_status slr_example_add(slr_example *ex, const char *name, size_t len, double value,
                           slr_error *err);

/* Add a pre-hashed feature: the index is `id` masked to the model's bits.  Such
 * features belong to no namespace and take no part in -q. */
slr_status slr_example_add_hashed(slr_example *ex, uint64_t id, double value, slr_error *err);

/* Make room for `extra` more features, for a decoder that writes pre-hashed
 * features straight into features[] and hashes[] (see
 * slr_decoder_next_example); it must apply the checks of
 * slr_example_add_hashed itself. */
slr_status slr_example_reserve(slr_example *ex, uint32_t extra, slr_error *err);

/* Close the example: expand -q interactions.  Must be called before learning. */
slr_status slr_example_finish(slr_example *ex, slr_error *err);

/* Hash a raw example into ex (which is reset first).  Bad values, labels and
 * feature counts are reported here, as bad input. */
slr_status slr_example_from_raw(slr_example *ex, const slr_raw_example *raw, slr_error *err);
/* The same, taking the seeds of short namespace names from `seeds`. */
slr_status slr_example_from_raw_seeded(slr_example *ex, const slr_raw_example *raw,
                                       const slr_namespace_seeds *seeds, slr_error *err);

/* Decode the record at the front of buf and hash it into ex: the same
 * results as slr_decoder_next followed by slr_example_from_raw (BAD covers
 * both kinds of rejection), with a shortcut for the compact msgpack form,
 * which goes from the bytes to ex without raw features or msgpack objects.
 * raw is scratch space (unspecified afterwards, unless keep_raw is set).
 * After BAD, slr_decoder_last_bad gives the reason, the example's
 * (ex->bad_reason) when hashing rejected it. */
slr_decode_result slr_decoder_next_example(slr_decoder *d, const char *buf, size_t len, bool at_end,
                                           size_t *consumed, slr_raw_example *raw,
                                           slr_example *ex, slr_error *err);

SLR_END_DECLS
#endif
