/* number.h - exact, locale-independent number parsing for the text decoders. */
#ifndef STREAMLR_DECODE_NUMBER_H
#define STREAMLR_DECODE_NUMBER_H

#include <locale.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest decimal number accepted, in characters (the strtod fallback needs a
 * NUL-terminated copy on the stack). */
#define SLR_NUMBER_MAX_CHARS 511

/* Parse s[0, n) as a decimal number: [+-] digits [. digits] [(e|E) [+-] digits]
 * (either side of the point may be empty, not both).  The result is the
 * correctly rounded double, as strtod gives in the C locale; a value too large
 * for a double is +-Inf, which slr_example_from_raw rejects (as a bad value,
 * label or weight: the numeric checks live in one place, example.c).  "nan", "inf", hex floats,
 * surrounding spaces and numbers longer than SLR_NUMBER_MAX_CHARS are not
 * numbers here.  c_locale is a C-locale handle for the slow path. */
bool slr_parse_double(const char *s, size_t n, locale_t c_locale, double *out);

/* Decimal digits only, no sign, no overflow. */
bool slr_parse_u64(const char *s, size_t n, uint64_t *out);

/* [+-] decimal digits, within int64. */
bool slr_parse_i64(const char *s, size_t n, int64_t *out);

#endif
