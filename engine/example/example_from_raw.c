/* example_from_raw.c - hash a decoded raw example into an slr_example.
 *
 * This is the one place where input text becomes weight indices, so every
 * format hashes the same (namespace, name) to the same index, and the checks
 * on labels, weights and values (example.c) apply to all formats alike.
 * Namespaces arrive as runs; the namespace seed is recomputed only where a
 * run starts, found by slr_raw_feature_same_namespace (pointer and length
 * first, so views of the same bytes cost no memcmp), and taken from a table
 * for the empty and one-byte names when the caller has one. */
#include "streamlr/decode.h"

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
