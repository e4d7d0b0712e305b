/* prediction_line.c - one prediction line, "%.9g" of p then the tag, as -p,
 * the file scorer and the Kafka scorer write it.
 *
 * snprintf's "%.9g" was a fifth of the instructions of scoring the compact
 * form (callgrind), so the common case -- a probability in [1e-4, 1], whose
 * %g form is fixed-point -- is formatted here, with the same bytes: the nine
 * significant digits come from p scaled by a power of ten (exact in a
 * double), rounded to nearest.  The scaled value is within half an ulp
 * (< 1e-7) of the exact one, so its rounding is the exact rounding unless it
 * lies within 1e-6 of a half; that case, and every other (exponent form,
 * NaN, a rounding that carries into a tenth digit), goes to snprintf. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "streamlr/predict.h"

/* "%.9g" of p if it is in the fixed-point range we handle; 0 otherwise. */
static size_t format_g9(char *w, double p)
{
    static const double scale[5] = {1e8, 1e9, 1e10, 1e11, 1e12}; /* by -exponent */
    static const double floor10[5] = {1, 1e-1, 1e-2, 1e-3, 1e-4};
    if (!(p >= 1e-4 && p <= 1.0))
        return 0;
    int k = 0; /* p in [10^-k, 10^-k+1): the decimal exponent is -k */
    while (k < 4 && p < floor10[k])
        k++;
    double v = p * scale[k], r = floor(v), frac = v - r;
    if (fabs(frac - 0.5) < 1e-6)
        return 0; /* too near a tie to trust the scaled value */
    uint64_t n = (uint64_t)r + (frac > 0.5);
    if (n < 100000000u || n > 999999999u)
        return 0; /* the exponent guess was off by one, or rounding carried */
    char d[9];
    for (int i = 8; i >= 0; i--, n /= 10)
        d[i] = (char)('0' + n % 10);
    int last = 8; /* %g drops trailing zeros of the fraction */
    while (last > 0 && d[last] == '0')
        last--;
    char *s = w;
    if (k == 0) { /* 1 <= p: p is 1 and d is "100000000" */
        *s++ = d[0];
        if (last > 0) {
            *s++ = '.';
            memcpy(s, d + 1, (size_t)last);
            s += last;
        }
    } else {
        *s++ = '0';
        *s++ = '.';
        for (int i = 1; i < k; i++)
            *s++ = '0';
        memcpy(s, d, (size_t)last + 1);
        s += last + 1;
    }
    return (size_t)(s - w);
}

slr_status slr_prediction_line(slr_buf *out, double p, const char *tag, size_t tag_len,
                               slr_error *err)
{
    size_t tag_room = tag ? tag_len + 1 : 0;
    slr_status st = slr_buf_reserve(out, 32 + tag_room + 1, err);
    if (st != SLR_OK)
        return st;
    char *w = out->data + out->len;
    size_t n = format_g9(w, p);
    w += n ? n : (size_t)snprintf(w, 32, "%.9g", p);
    if (tag && tag_len) {
        *w++ = ' ';
        for (size_t i = 0; i < tag_len; i++) {
            char c = tag[i];
            *w++ = c == ' ' || c == '\t' || c == '\n' || c == '\r' ? '_' : c;
        }
    }
    *w++ = '\n';
    out->len = (size_t)(w - out->data);
    return SLR_OK;
}
