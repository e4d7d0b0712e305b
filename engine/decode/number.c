/* number.c - exact decimal number parsing for the text decoders.
 *
 * Nearly every number in VW, LIBSVM and Criteo files is short ("1", "-1",
 * "0.25", "3.9656971e-02").  For those the exact fast path of Clinger (1990)
 * applies: when the decimal significand m fits in 53 bits and the power of ten
 * |e| <= 22, both m and 10^e are exact doubles, so the one IEEE multiplication
 * or division m * 10^e is correctly rounded, i.e. exactly what strtod returns.
 * Anything else (long significands, large exponents) is handed to strtod_l in
 * the C locale, after this file has checked the syntax itself so that strtod
 * never accepts hex floats, "inf" or "nan", and so that a program that called
 * setlocale() does not make "0.5" mean something else. */
#include <stdlib.h>
#include <string.h>

#include "decode/number.h"

static const double pow10_exact[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

#define MAX_SIGNIFICANT 19      /* digits that always fit in a uint64_t */
#define EXPONENT_CAP 100000     /* beyond this every double is 0 or Inf anyway */

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The usual short form, [+-]digits[.digits] with at most 19 digits in all
 * and at most 22 after the point, in one loop; false sends the caller to
 * the general parser. */
static inline bool parse_short(const char *s, size_t n, double *out)
{
    size_t i = 0;
    bool neg = false, dot = false;
    if (n && (s[0] == '+' || s[0] == '-'))
        neg = s[i++] == '-';
    if (n - i > 20)
        return false;
    uint64_t m = 0;
    int digits = 0, frac = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d < 10) {
            m = m * 10 + d;
            digits++;
            frac += dot;
        } else if (s[i] == '.' && !dot) {
            dot = true;
        } else {
            return false;
        }
    }
    if (digits == 0 || digits > MAX_SIGNIFICANT || m > (UINT64_C(1) << 53) || frac > 22)
        return false;
    double v = (double)m / pow10_exact[frac]; /* both exact: one correctly rounded division */
    *out = neg ? -v : v;
    return true;
}

bool slr_parse_double(const char *s, size_t n, locale_t c_locale, double *out)
{
    if (parse_short(s, n, out))
        return true;
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';

    uint64_t m = 0;
    int ndigits = 0;     /* significant digits held in m */
    long exp10 = 0;      /* value = m * 10^exp10, up to the dropped digits */
    bool inexact = false; /* a nonzero digit did not fit in m */
    bool any = false;
    for (; i < n && is_digit(s[i]); i++) {
        int d = s[i] - '0';
        any = true;
        if (m == 0 && d == 0)
            continue; /* leading zero */
        if (ndigits < MAX_SIGNIFICANT) {
            m = m * 10 + (uint64_t)d;
            ndigits++;
        } else {
            exp10++;
            inexact |= d != 0;
        }
    }
    if (i < n && s[i] == '.') {
        for (i++; i < n && is_digit(s[i]); i++) {
            int d = s[i] - '0';
            any = true;
            if (m == 0 && d == 0) {
                exp10--;
            } else if (ndigits < MAX_SIGNIFICANT) {
                m = m * 10 + (uint64_t)d;
                ndigits++;
                exp10--;
            } else {
                inexact |= d != 0;
            }
        }
    }
    if (!any)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = false;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        if (i >= n || !is_digit(s[i]))
            return false;
        long e = 0;
        for (; i < n && is_digit(s[i]); i++)
            if (e < EXPONENT_CAP)
                e = e * 10 + (s[i] - '0');
        exp10 += eneg ? -e : e;
    }
    if (i != n)
        return false;

    if (m == 0 && !inexact) {
        *out = neg ? -0.0 : 0.0;
        return true;
    }
    if (!inexact && m <= (UINT64_C(1) << 53) && exp10 >= -22 && exp10 <= 22) {
        double v = (double)m;
        v = exp10 < 0 ? v / pow10_exact[-exp10] : v * pow10_exact[exp10];
        *out = neg ? -v : v;
        return true;
    }

    if (n > SLR_NUMBER_MAX_CHARS)
        return false;
    char tmp[SLR_NUMBER_MAX_CHARS + 1];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    double v = strtod_l(tmp, &end, c_locale);
    if (end != tmp + n)
        return false;
    *out = v;
    return true;
}

bool slr_parse_u64(const char *s, size_t n, uint64_t *out)
{
    if (n == 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool slr_parse_i64(const char *s, size_t n, int64_t *out)
{
    bool neg = false;
    size_t i = 0;
    if (n > 0 && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        i = 1;
    }
    uint64_t mag;
    if (!slr_parse_u64(s + i, n - i, &mag))
        return false;
    if (neg) {
        if (mag > (uint64_t)INT64_MAX + 1)
            return false;
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)mag;
    }
    return true;
}
