/* json.c - text to JSON strings by the one UTF-8 rule (see json.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

/* Length of the valid UTF-8 sequence at s[0, n), 0 if none starts there
 * (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 && s[0] < 0xf0 ? 3
               : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) || /* overlong, surrogate */
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
        return 0;
    return len;
}

json_t *slr_json_text(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) { /* the common case: already valid, no copy */
        size_t k = utf8_len(p + i, n - i);
        if (!k)
            break;
        i += k;
    }
    if (i == n)
        return json_stringn_nocheck(s, n);
    /* U+FFFD is 3 bytes, so the text grows at most threefold */
    if (n > ((size_t)-1) / 3)
        return NULL;
    char *fixed = malloc(3 * n);
    if (!fixed)
        return NULL;
    memcpy(fixed, s, i);
    size_t o = i;
    while (i < n) {
        size_t k = utf8_len(p + i, n - i);
        if (k) {
            memcpy(fixed + o, p + i, k);
            o += k;
            i += k;
        } else {
            memcpy(fixed + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    json_t *j = json_stringn_nocheck(fixed, o);
    free(fixed);
    return j;
}

json_t *slr_json_number(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}
