/* decode_criteo.c - Criteo Display Advertising Challenge TSV.
 *
 * 40 tab-separated columns: label (0/1), I1..I13 (integer counts, may be
 * empty, I2 may be negative), C1..C26 (categorical, 8 hex digits, may be
 * empty).  Criteo's test.txt has no label column, hence 39 columns means
 * unlabelled.  Empty fields are missing values and produce no feature.
 *
 * Integer column k is feature "k" of namespace "I" with value
 * slr_criteo_numeric_transform(v).  Categorical column k is the field text in
 * a namespace of its own, the single letter 'a' + k - 1, so that VW-style
 * -q ab crosses C1 with C2.  Names are static strings or views: nothing is
 * formatted or copied per field. */
#include <math.h>
#include <string.h>

#include "decode/decode_impl.h"
#include "decode/number.h"

#define CRITEO_COLUMNS 40
#define CRITEO_INTEGERS 13
#define CRITEO_CATEGORIES 26

static const char integer_ns[] = "I";
static const char *const integer_names[CRITEO_INTEGERS] = {
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13",
};
static const char category_ns[CRITEO_CATEGORIES + 1] = "abcdefghijklmnopqrstuvwxyz";

double slr_criteo_numeric_transform(double v)
{
    /* log1p keeps small counts distinguishable (0, 1, 2 -> 0, 0.69, 1.10)
     * while squashing the heavy tail (10^6 -> 13.8). */
    return v >= 0 ? log1p(v) : -log1p(-v);
}

/* The next tab-separated field starting at *p; *p moves past the tab. */
static inline size_t next_field(const char **p, const char *end, const char **field)
{
    const char *tab = memchr(*p, '\t', (size_t)(end - *p));
    const char *stop = tab ? tab : end;
    *field = *p;
    size_t n = (size_t)(stop - *p);
    *p = tab ? tab + 1 : end;
    return n;
}

slr_decode_result slr_decode_criteo_line(const slr_decoder *d, const char *s, size_t n,
                                         slr_raw_example *raw, slr_error *err)
{
    const char *end = s + n;
    size_t columns = 1;
    for (const char *t = s; (t = memchr(t, '\t', (size_t)(end - t))) != NULL; t++)
        columns++;
    if (columns != CRITEO_COLUMNS && columns != CRITEO_COLUMNS - 1)
        return slr_decode_bad(err, "expected %d tab-separated columns, got %zu "
                                   "(39 columns are read as unlabelled)",
                              CRITEO_COLUMNS, columns);

    const char *p = s, *f;
    size_t len;
    if (columns == CRITEO_COLUMNS) {
        len = next_field(&p, end, &f);
        if (!slr_parse_double(f, len, d->c_locale, &raw->label))
            return slr_decode_bad(err, "label \"%.*s\" is not a number", SLR_QUOTE(f, len));
        raw->has_label = true;
    }
    for (int k = 0; k < CRITEO_INTEGERS; k++) {
        if ((len = next_field(&p, end, &f)) == 0)
            continue;
        int64_t v;
        if (!slr_parse_i64(f, len, &v))
            return slr_decode_bad(err, "I%d = \"%.*s\" is not an integer", k + 1, SLR_QUOTE(f, len));
        if (slr_raw_add(raw, integer_ns, 1, integer_names[k], k < 9 ? 1 : 2, 0,
                        slr_criteo_numeric_transform((double)v), err) != SLR_OK)
            return SLR_DECODE_BAD;
    }
    for (int k = 0; k < CRITEO_CATEGORIES; k++) {
        if ((len = next_field(&p, end, &f)) == 0)
            continue;
        if (slr_raw_add(raw, &category_ns[k], 1, f, len, 0, 1.0, err) != SLR_OK)
            return SLR_DECODE_BAD;
    }
    return SLR_DECODE_EXAMPLE;
}
