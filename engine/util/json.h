/* json.h - the JSON conventions every streamlr writer shares, on top of
 * jansson (which does the parsing, escaping and number formatting).
 *
 * Input bytes (feature names, quoted input in messages, paths) need not be
 * UTF-8, but a JSON text must be.  The one rule, used by the metrics lines,
 * dead letters and `streamlr export`: valid UTF-8 passes through unchanged;
 * every byte that does not start a valid UTF-8 sequence (stray continuation
 * bytes, overlong forms, surrogates, code points above U+10FFFF, a sequence
 * cut short) becomes U+FFFD, the Unicode replacement character - what
 * Python's errors="replace" and browsers do.  Where the exact bytes matter
 * they are carried separately (a dead letter's base64 "data"). */
#ifndef STREAMLR_UTIL_JSON_H
#define STREAMLR_UTIL_JSON_H

#include <jansson.h>
#include <stddef.h>

/* A new JSON string from s[0, n) by the rule above; NULL only when out of
 * memory.  NUL bytes are kept (written as \u0000). */
json_t *slr_json_text(const char *s, size_t n);

/* A new JSON number; null for NaN and infinities, which JSON cannot hold. */
json_t *slr_json_number(double v);

/* The flags of every line streamlr writes: compact, keys in insertion
 * order, doubles with 17 significant digits (they round-trip). */
#define SLR_JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17))

#endif
