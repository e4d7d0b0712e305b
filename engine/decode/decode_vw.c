/* decode_vw.c - Vowpal Wabbit text lines, so that VW users' files work as they are.
 *
 *   [label [importance [base]]] ['tag]|ns[:scale] name[:value] ... |ns2 ...
 *
 * The part before the first '|' is the header.  Its last token is the tag
 * when it starts with ' (which is stripped) or touches the '|' -- VW's own
 * rule, so "1 2|a x" has tag "2" in both programs.  Every other header token
 * must be a number: label, importance weight, and VW's base (parsed, then
 * ignored: it only matters for residual regression).  A non-numeric label is
 * bad input rather than a silent tag, so a typo cannot turn labelled data
 * into unlabelled data.
 *
 * "|ns" opens namespace ns; "| " (bar then space or end) the default
 * namespace (empty name); "|ns:2.5" multiplies the namespace's values.  A
 * feature is name or name:value (split at the first ':'); VW's string values
 * (name:text) are rejected, because silently hashing them differently from
 * VW would make the same file mean different things. */
#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "decode/decode_impl.h"
#include "decode/number.h"

static const char default_ns[] = "";

/* The end of the token at p -- the first blank (space, tab) or '|' -- and
 * its first ':' (*colon stays NULL if none).  Sixteen bytes at a time where
 * the line has them: this scan is most of the time VW parsing takes. */
static inline const char *token_end(const char *p, const char *end, const char **colon)
{
    *colon = NULL;
#if defined(__SSE2__)
    const __m128i sp = _mm_set1_epi8(' '), tab = _mm_set1_epi8('\t'), bar = _mm_set1_epi8('|'),
                  col = _mm_set1_epi8(':');
    for (; end - p >= 16; p += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned stop = (unsigned)_mm_movemask_epi8(
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, sp), _mm_cmpeq_epi8(v, tab)),
                         _mm_cmpeq_epi8(v, bar)));
        unsigned colons = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, col));
        if (stop)
            colons &= (1u << __builtin_ctz(stop)) - 1; /* only those inside the token */
        if (colons && !*colon)
            *colon = p + __builtin_ctz(colons);
        if (stop)
            return p + __builtin_ctz(stop);
    }
#endif
    for (; p < end && !slr_is_blank(*p) && *p != '|'; p++)
        if (*p == ':' && !*colon)
            *colon = p;
    return p;
}

typedef struct token {
    const char *p;
    size_t n;
} token;

#define MAX_HEADER_TOKENS 4 /* label, importance, base, tag */

static slr_decode_result parse_header(const slr_decoder *d, const char *s, const char *head_end,
                                      bool has_bar, slr_raw_example *raw, slr_error *err)
{
    static const char *const what[3] = {"label", "importance weight", "base"};
    token tok[MAX_HEADER_TOKENS];
    int ntok = 0;
    for (const char *p = s;;) {
        while (p < head_end && slr_is_blank(*p))
            p++;
        if (p == head_end)
            break;
        const char *q = p;
        while (q < head_end && !slr_is_blank(*q))
            q++;
        if (ntok == MAX_HEADER_TOKENS)
            return slr_decode_bad(err, "too many fields before the first |: expected "
                                       "[label [importance [base]]] ['tag]");
        tok[ntok++] = (token){p, (size_t)(q - p)};
        p = q;
    }
    if (ntok > 0) {
        token *last = &tok[ntok - 1];
        bool quoted = last->p[0] == '\'';
        if (quoted || (has_bar && last->p + last->n == head_end)) {
            raw->tag = quoted ? last->p + 1 : last->p;
            raw->tag_len = (uint32_t)(quoted ? last->n - 1 : last->n);
            ntok--;
        }
    }
    if (ntok > 3)
        return slr_decode_bad(err, "too many numbers before the first |: expected "
                                   "[label [importance [base]]] ['tag]");
    for (int i = 0; i < ntok; i++) {
        double v;
        if (!slr_parse_double(tok[i].p, tok[i].n, d->c_locale, &v))
            return slr_decode_bad(err, "%s \"%.*s\" is not a number%s", what[i],
                                  SLR_QUOTE(tok[i].p, tok[i].n),
                                  i == ntok - 1 ? " (a tag must start with ' or touch the |)" : "");
        if (i == 0) {
            raw->label = v;
            raw->has_label = true;
        } else if (i == 1) {
            raw->weight = v;
            raw->has_weight = true;
        }
    }
    return SLR_DECODE_EXAMPLE;
}

slr_decode_result slr_decode_vw_line(const slr_decoder *d, const char *s, size_t n,
                                     slr_raw_example *raw, slr_error *err)
{
    const char *end = s + n;
    const char *bar = memchr(s, '|', n);
    slr_decode_result r = parse_header(d, s, bar ? bar : end, bar != NULL, raw, err);
    if (r != SLR_DECODE_EXAMPLE || !bar)
        return r;

    const char *p = bar;
    while (p < end) { /* *p == '|' */
        const char *ns = ++p, *colon;
        p = token_end(p, end, &colon);
        size_t ns_len = colon ? (size_t)(colon - ns) : (size_t)(p - ns);
        double scale = 1.0;
        if (colon && !slr_parse_double(colon + 1, (size_t)(p - colon - 1), d->c_locale, &scale))
            return slr_decode_bad(err, "namespace \"%.*s\" has scale \"%.*s\", which is not a number",
                                  SLR_QUOTE(ns, ns_len), SLR_QUOTE(colon + 1, (size_t)(p - colon - 1)));
        if (ns_len == 0)
            ns = default_ns;

        for (;;) {
            while (p < end && slr_is_blank(*p))
                p++;
            if (p == end || *p == '|')
                break;
            /* one pass finds both the token's end and its first ':' */
            const char *f = p, *fc;
            p = token_end(p, end, &fc);
            size_t name_len = fc ? (size_t)(fc - f) : (size_t)(p - f);
            double v = 1.0;
            if (fc && (!slr_parse_double(fc + 1, (size_t)(p - fc - 1), d->c_locale, &v)))
                return slr_decode_bad(err,
                                      "feature \"%.*s\" in namespace \"%.*s\" has value \"%.*s\", "
                                      "which is not a number",
                                      SLR_QUOTE(f, name_len), SLR_QUOTE(ns, ns_len),
                                      SLR_QUOTE(fc + 1, (size_t)(p - fc - 1)));
            if (slr_raw_add(raw, ns, ns_len, f, name_len, 0, v * scale, err) != SLR_OK)
                return SLR_DECODE_BAD;
        }
    }
    return SLR_DECODE_EXAMPLE;
}
