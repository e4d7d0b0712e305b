/* raw_example.c - the raw example's storage (include/streamlr/raw_example.h):
 * a growable array of feature views, reused from one record to the next. */
#include <stdlib.h>
#include <string.h>

#include "streamlr/raw_example.h"

void slr_raw_example_init(slr_raw_example *raw)
{
    memset(raw, 0, sizeof *raw);
    slr_raw_example_reset(raw);
}

void slr_raw_example_free(slr_raw_example *raw)
{
    free(raw->features);
    memset(raw, 0, sizeof *raw);
}

void slr_raw_example_reset(slr_raw_example *raw)
{
    raw->label = 0;
    raw->has_label = false;
    raw->weight = 1.0;
    raw->has_weight = false;
    raw->tag = NULL;
    raw->tag_len = 0;
    raw->n_features = 0;
}

slr_status slr_raw_example_grow(slr_raw_example *raw, uint32_t extra, slr_error *err)
{
    if (extra > UINT32_MAX - raw->n_features)
        return slr_error_set(err, SLR_ERR_BAD_INPUT, "too many features in one record");
    uint32_t need = raw->n_features + extra;
    if (need <= raw->cap_features)
        return SLR_OK;
    uint64_t cap = raw->cap_features ? raw->cap_features : 64;
    while (cap < need)
        cap *= 2;
    if (cap > UINT32_MAX)
        cap = UINT32_MAX;
    slr_raw_feature *f = realloc(raw->features, (size_t)cap * sizeof *f);
    if (!f)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for %llu raw features",
                             (unsigned long long)cap);
    raw->features = f;
    raw->cap_features = (uint32_t)cap;
    return SLR_OK;
}

slr_status slr_raw_example_push(slr_raw_example *raw, const slr_raw_feature *f, slr_error *err)
{
    if (raw->n_features == raw->cap_features) {
        slr_status st = slr_raw_example_grow(raw, 1, err);
        if (st != SLR_OK)
            return st;
    }
    raw->features[raw->n_features++] = *f;
    return SLR_OK;
}

bool slr_raw_feature_same_namespace(const slr_raw_feature *a, const slr_raw_feature *b)
{
    if (!a->name || !b->name || a->ns_len != b->ns_len)
        return false;
    if (a->ns == b->ns || a->ns_len == 0)
        return true;
    if (a->ns_len <= 8) { /* short names: no call */
        for (uint32_t i = 0; i < a->ns_len; i++)
            if (a->ns[i] != b->ns[i])
                return false;
        return true;
    }
    return !memcmp(a->ns, b->ns, a->ns_len);
}
