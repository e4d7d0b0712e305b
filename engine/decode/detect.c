/* detect.c - telling the input formats apart from their first bytes.
 *
 * Reading input in the wrong format does not fail loudly: every record is
 * merely bad, and a job that counts bad records and goes on learns nothing.
 * The four formats are easy to tell apart, so when the user does not say,
 * the content decides:
 *   - msgpack: an example is a map or an array, whose first byte (0x80-0x9f,
 *     0xdc-0xdf) no text line starts with; other control bytes mean binary;
 *   - VW: a feature list always follows a '|';
 *   - Criteo TSV: tab-separated, 40 columns (at least 14 taken as Criteo);
 *   - LIBSVM: a label, then idx:value tokens only.
 * Each of the first lines votes; a format needs more than half the votes. */
#include <string.h>

#include "decode/decode_impl.h"

#define DETECT_LINES 64
#define CRITEO_MIN_TABS 13 /* label + 13 integer columns: Criteo's shape, not a stray tab */

static bool is_msgpack_container(unsigned char c)
{
    return (c >= 0x80 && c <= 0x9f) || (c >= 0xdc && c <= 0xdf);
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* "idx:value" (or SVMlight's qid:N) */
static bool libsvm_token(const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);
    if (!colon || colon == p || colon == p + n - 1)
        return false;
    if (!(colon - p == 3 && !memcmp(p, "qid", 3)))
        for (const char *q = p; q < colon; q++)
            if (!is_digit(*q))
                return false;
    for (const char *q = colon + 1; q < p + n; q++)
        if (!is_digit(*q) && !strchr("+-.eE", *q))
            return false;
    return true;
}

/* A label (a number) followed by idx:value tokens, at least one. */
static bool libsvm_line(const char *s, size_t n)
{
    const char *end = s + n, *p = s;
    unsigned tokens = 0;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *q = p;
        while (q < end && *q != ' ' && *q != '\t')
            q++;
        if (q == p)
            break;
        if (*p == '#')
            break; /* a trailing comment */
        if (tokens == 0) {
            for (const char *c = p; c < q; c++)
                if (!is_digit(*c) && !strchr("+-.eE", *c))
                    return false;
        } else if (!libsvm_token(p, (size_t)(q - p))) {
            return false;
        }
        tokens++;
        p = q;
    }
    return tokens >= 2;
}

bool slr_format_detect(const char *buf, size_t len, slr_format *out)
{
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\r'))
        i++;
    if (i == len)
        return false;
    if (is_msgpack_container((unsigned char)buf[i])) {
        *out = SLR_FORMAT_MSGPACK;
        return true;
    }
    unsigned votes[4] = {0}, lines = 0;
    const char *p = buf + i, *end = buf + len;
    while (p < end && lines < DETECT_LINES) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        size_t n = (size_t)(eol - p);
        if (n && p[n - 1] == '\r')
            n--;
        unsigned tabs = 0;
        bool binary = false;
        for (size_t k = 0; k < n; k++) {
            unsigned char c = (unsigned char)p[k];
            tabs += c == '\t';
            binary |= c < 0x20 && c != '\t';
        }
        if (binary) {
            *out = SLR_FORMAT_MSGPACK; /* no text format has control bytes in a line */
            return true;
        }
        if (n && p[0] != '#') {
            lines++;
            if (memchr(p, '|', n))
                votes[SLR_FORMAT_VW]++;
            else if (tabs >= CRITEO_MIN_TABS)
                votes[SLR_FORMAT_CRITEO]++;
            else if (libsvm_line(p, n))
                votes[SLR_FORMAT_LIBSVM]++;
        }
        if (!nl)
            break;
        p = nl + 1;
    }
    for (int f = SLR_FORMAT_VW; f <= SLR_FORMAT_CRITEO; f++)
        if (2 * votes[f] > lines) {
            *out = (slr_format)f;
            return true;
        }
    return false;
}
