/* decode_libsvm.c - LIBSVM / SVMlight lines: label idx:val idx:val ... [# comment]
 *
 * Indices are already feature numbers, so they become pre-hashed ids (masked
 * to the model's bits, never hashed): a LIBSVM file with indices below 2^bits
 * gets exactly one weight per column, as LIBLINEAR would.  SVMlight's qid:
 * tokens carry no feature and are skipped.  A line that starts with '#' is a
 * comment. */
#include <math.h>
#include <string.h>

#include "decode/decode_impl.h"
#include "decode/number.h"

slr_decode_result slr_decode_libsvm_line(const slr_decoder *d, const char *s, size_t n,
                                         slr_raw_example *raw, slr_error *err)
{
    const char *end = s + n, *p = s;
    while (p < end && slr_is_blank(*p))
        p++;
    if (p == end || *p == '#')
        return SLR_DECODE_SKIP;

    const char *q = p;
    while (q < end && !slr_is_blank(*q))
        q++;
    if (!slr_parse_double(p, (size_t)(q - p), d->c_locale, &raw->label))
        return slr_decode_bad(err, "label \"%.*s\" is not a number", SLR_QUOTE(p, (size_t)(q - p)));
    raw->has_label = true;

    for (p = q;;) {
        while (p < end && slr_is_blank(*p))
            p++;
        if (p == end || *p == '#')
            break;
        const char *tok = p, *colon = NULL;
        for (; p < end && !slr_is_blank(*p); p++)
            if (*p == ':' && !colon)
                colon = p;
        size_t len = (size_t)(p - tok);
        if (!colon)
            return slr_decode_bad(err, "feature \"%.*s\" has no value (LIBSVM features are index:value)",
                                  SLR_QUOTE(tok, len));
        size_t idx_len = (size_t)(colon - tok), val_len = (size_t)(p - colon - 1);
        if (idx_len == 3 && !memcmp(tok, "qid", 3))
            continue;
        uint64_t idx;
        if (!slr_parse_u64(tok, idx_len, &idx))
            return slr_decode_bad(err, "feature index \"%.*s\" is not a non-negative integer",
                                  SLR_QUOTE(tok, idx_len));
        double v;
        if (!slr_parse_double(colon + 1, val_len, d->c_locale, &v))
            return slr_decode_bad(err, "feature %.*s has value \"%.*s\", which is not a number",
                                  SLR_QUOTE(tok, idx_len), SLR_QUOTE(colon + 1, val_len));
        if (slr_raw_add(raw, NULL, 0, NULL, 0, idx, v, err) != SLR_OK)
            return SLR_DECODE_BAD;
    }
    return SLR_DECODE_EXAMPLE;
}
