/* encode_vw.c - raw examples as Vowpal Wabbit text (see encode.h).
 *
 *   label [weight] ['tag]|ns name[:value] ... |ns2 ...
 *
 * Numbers are written in the shortest form that reads back to the same
 * double, so vw -> vw and vw -> msgpack -> vw keep every value exactly.
 * snprintf and strtod follow the caller's LC_NUMERIC; both are used in the
 * same locale for the round-trip check and the radix is then rewritten to
 * '.', so output never depends on setlocale().  VW has no escaping, so bytes
 * that would split a token are replaced by '_' (documented as lossy).
 *
 * The line's size is bounded up front and reserved once, so the writer
 * below needs no error handling per token. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encode/encode_impl.h"

#define NUM_MAX 32 /* "-1.2345678901234567e-308" is 24 bytes */

static size_t format_u64(char *out, uint64_t u)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    for (size_t k = 0; k < n; k++)
        out[k] = tmp[n - 1 - k];
    return n;
}

static size_t format_int(char *out, int64_t v)
{
    if (v >= 0)
        return format_u64(out, (uint64_t)v);
    out[0] = '-';
    return 1 + format_u64(out + 1, (uint64_t)0 - (uint64_t)v);
}

/* Shortest %.Ng that reads back to v (N found by bisection; 17 always does). */
static size_t format_double(char *out, double v)
{
    if (v == trunc(v) && fabs(v) < 1e15)
        return format_int(out, (int64_t)v);
    char tmp[48];
    int lo = 1, hi = 17;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        snprintf(tmp, sizeof tmp, "%.*g", mid, v);
        if (strtod(tmp, NULL) == v)
            hi = mid;
        else
            lo = mid + 1;
    }
    int n = snprintf(tmp, sizeof tmp, "%.*g", lo, v);
    size_t k = 0;
    bool in_radix = false;
    for (int i = 0; i < n; i++) {
        char c = tmp[i];
        if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e') {
            out[k++] = c;
            in_radix = false;
        } else if (!in_radix) { /* the locale's decimal point, however many bytes */
            out[k++] = '.';
            in_radix = true;
        }
    }
    return k;
}

static char *put_clean(char *w, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        *w++ = (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ':' || c == '|') ? '_' : c;
    }
    return w;
}

static char *put_feature(char *w, const slr_raw_feature *f)
{
    if (f->name)
        w = put_clean(w, f->name, f->name_len);
    else
        w += format_u64(w, f->id); /* lossy: read back, it is a name */
    /* An empty name alone would vanish between the spaces, so it keeps ":1". */
    if (f->value != 1.0 || (f->name && f->name_len == 0)) {
        *w++ = ':';
        w += format_double(w, f->value);
    }
    return w;
}

/* Two features share a "|ns" section: same namespace, or both pre-hashed
 * (which go to the default namespace). */
static bool same_section(const slr_raw_feature *a, const slr_raw_feature *b)
{
    if (!a->name || !b->name)
        return !a->name && !b->name;
    return slr_raw_feature_same_namespace(a, b);
}

static slr_status check_finite(double v, const char *what, const slr_raw_feature *f, slr_error *err)
{
    if (isfinite(v))
        return SLR_OK;
    if (!f)
        return slr_error_set(err, SLR_ERR_BAD_INPUT, "cannot write a %s of %g as vw text", what, v);
    if (!f->name)
        return slr_error_set(err, SLR_ERR_BAD_INPUT, "cannot write pre-hashed feature %llu = %g as vw text",
                             (unsigned long long)f->id, v);
    return slr_error_set(err, SLR_ERR_BAD_INPUT, "cannot write feature \"%.*s\" = %g as vw text",
                         (int)(f->name_len > 64 ? 64 : f->name_len), f->name, v);
}

slr_status slr_encode_vw(slr_buf *out, const slr_raw_example *raw, slr_error *err)
{
    slr_status st;
    if ((raw->has_label && (st = check_finite(raw->label, "label", NULL, err)) != SLR_OK) ||
        (raw->has_weight && (st = check_finite(raw->weight, "weight", NULL, err)) != SLR_OK))
        return st;
    size_t bound = 2 * (NUM_MAX + 1) + (raw->tag ? raw->tag_len + 2 : 0) + 3;
    for (uint32_t i = 0; i < raw->n_features; i++) {
        const slr_raw_feature *f = &raw->features[i];
        if ((st = check_finite(f->value, "feature value", f, err)) != SLR_OK)
            return st;
        /* " |ns" + " name:value" at most */
        bound += 2 + (f->name ? (size_t)f->ns_len + f->name_len : NUM_MAX) + 2 + NUM_MAX;
    }
    if ((st = slr_buf_reserve(out, bound, err)) != SLR_OK)
        return st;

    char *line = out->data + out->len, *w = line;
    if (raw->has_label) {
        w += format_double(w, raw->label);
        if (raw->has_weight) { /* without a label, VW would read the weight as one */
            *w++ = ' ';
            w += format_double(w, raw->weight);
        }
    }
    if (raw->tag) {
        if (w != line)
            *w++ = ' ';
        *w++ = '\'';
        w = put_clean(w, raw->tag, raw->tag_len);
    }
    /* The tag must touch the first '|'; anything else needs a space before it. */
    bool touch = raw->tag != NULL;
    const slr_raw_feature *f = raw->features;
    for (uint32_t i = 0; i < raw->n_features; i++) {
        if (i == 0 || !same_section(&f[i - 1], &f[i])) {
            if (w != line && !touch)
                *w++ = ' ';
            touch = false;
            *w++ = '|';
            if (f[i].name)
                w = put_clean(w, f[i].ns, f[i].ns_len);
        }
        *w++ = ' ';
        w = put_feature(w, &f[i]);
    }
    if (raw->n_features == 0) { /* the '|' makes it a record rather than a blank line */
        if (w != line && !touch)
            *w++ = ' ';
        *w++ = '|';
    }
    *w++ = '\n';
    out->len += (size_t)(w - line);
    return SLR_OK;
}
