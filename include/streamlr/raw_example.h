/* raw_example.h - one record as written in the input, before hashing.
 *
 * The type every layer above the bytes shares: decoders (decode.h) produce
 * it, the example builder (example.h, slr_example_from_raw) hashes it for the
 * learner, encoders (encode.h) write it in another format.  Label, importance
 * weight, tag and (namespace, name, value) features are views into the
 * decoder's input buffer: nothing is copied or hashed here. */
#ifndef STREAMLR_RAW_EXAMPLE_H
#define STREAMLR_RAW_EXAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamlr/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One feature as written in the input. */
typedef struct slr_raw_feature {
    const char *ns; /* namespace; NULL for a pre-hashed id */
    uint32_t ns_len;
    const char *name; /* NULL for a pre-hashed id */
    uint32_t name_len;
    uint64_t id; /* pre-hashed id when name == NULL */
    double value;
} slr_raw_feature;

typedef struct slr_raw_example {
    double label; /* raw label as written; see slr_example_set_label */
    bool has_label;
    double weight;
    bool has_weight;
    const char *tag;
    uint32_t tag_len;
    slr_raw_feature *features;
    uint32_t n_features, cap_features;
} slr_raw_example;

void slr_raw_example_init(slr_raw_example *raw);
void slr_raw_example_free(slr_raw_example *raw);
void slr_raw_example_reset(slr_raw_example *raw);
slr_status slr_raw_example_push(slr_raw_example *raw, const slr_raw_feature *f, slr_error *err);
/* Make room for `extra` more features. */
slr_status slr_raw_example_grow(slr_raw_example *raw, uint32_t extra, slr_error *err);

/* True when a and b are both named features of the same namespace (same
 * bytes; NULL and "" both mean the default namespace).  Consumers use it to
 * find runs of one namespace without comparing strings at every feature. */
bool slr_raw_feature_same_namespace(const slr_raw_feature *a, const slr_raw_feature *b);

#ifdef __cplusplus
}
#endif
#endif
