/* quadratic.h - which pairs of namespace spans a -q pair crosses, shared by
 * the hashing (example.c) and the name recording (names.c) so that both
 * walk the pairs in the same order.
 *
 * A -q letter matches the namespaces starting with it; ':' (VW's wildcard)
 * matches every namespace, so -q :: crosses every pair of namespaces.  Each
 * unordered pair of spans is taken once when the pattern would also match it
 * the other way round (-q aa, -q ::), as VW does without
 * --leave_duplicate_interactions, and a span is never crossed with its own
 * feature (no x*x). */
#ifndef STREAMLR_EXAMPLE_QUADRATIC_H
#define STREAMLR_EXAMPLE_QUADRATIC_H

#include <stdbool.h>

#include "streamlr/example.h"

#define SLR_NS_WILDCARD ':'

static inline bool slr_ns_matches(unsigned char pattern, unsigned char letter)
{
    return pattern == SLR_NS_WILDCARD || pattern == letter;
}

/* Does -q `ab` cross span sa with span sb (spans of ex, in that order)?
 * The callers have checked that a matches span sa (once per span, not per
 * pair: this is on the hot path). */
static inline bool slr_quadratic_crosses(const slr_example *ex, unsigned char a, unsigned char b,
                                         uint32_t sa, uint32_t sb)
{
    unsigned char la = ex->spans[sa].letter, lb = ex->spans[sb].letter;
    if (!slr_ns_matches(b, lb))
        return false;
    /* the mirror pair (sb, sa) is crossed too: keep one of the two */
    return !(sb < sa && slr_ns_matches(a, lb) && slr_ns_matches(b, la));
}

/* Does --cubic `t` cross spans (sa, sb, sc)?  Orderings the pattern would
 * also match are taken once (non-decreasing span numbers among letters that
 * can swap); within one span the callers take features in increasing order,
 * so a triple of features is never taken twice nor a feature twice. */
static inline bool slr_cubic_crosses(const slr_example *ex, const char t[3], uint32_t sa,
                                     uint32_t sb, uint32_t sc)
{
    const unsigned char a = (unsigned char)t[0], b = (unsigned char)t[1], c = (unsigned char)t[2];
    const unsigned char la = ex->spans[sa].letter, lb = ex->spans[sb].letter,
                        lc = ex->spans[sc].letter;
    if (!slr_ns_matches(a, la) || !slr_ns_matches(b, lb) || !slr_ns_matches(c, lc))
        return false;
    if (sb < sa && slr_ns_matches(a, lb) && slr_ns_matches(b, la))
        return false;
    if (sc < sb && slr_ns_matches(b, lc) && slr_ns_matches(c, lb))
        return false;
    if (sc < sa && slr_ns_matches(a, lc) && slr_ns_matches(c, la))
        return false;
    return true;
}

/* Visit every feature triple (i, j, k) of --cubic `t` in one order, the one
 * slr_example_finish() appends them in (names.c records their names in the
 * same walk); stops at the first visit that does not return SLR_OK. */
typedef slr_status (*slr_triple_visit)(void *ctx, uint32_t i, uint32_t j, uint32_t k);
static inline slr_status slr_cubic_walk(const slr_example *ex, const char t[3],
                                        slr_triple_visit visit, void *ctx)
{
    const uint32_t n = ex->n_spans;
    for (uint32_t sa = 0; sa < n; sa++) {
        if (!slr_ns_matches((unsigned char)t[0], ex->spans[sa].letter))
            continue;
        for (uint32_t sb = 0; sb < n; sb++) {
            if (!slr_ns_matches((unsigned char)t[1], ex->spans[sb].letter))
                continue;
            for (uint32_t sc = 0; sc < n; sc++) {
                if (!slr_cubic_crosses(ex, t, sa, sb, sc))
                    continue;
                slr_namespace_span A = ex->spans[sa], B = ex->spans[sb], C = ex->spans[sc];
                for (uint32_t i = A.begin; i < A.end; i++)
                    for (uint32_t j = sb == sa ? i + 1 : B.begin; j < B.end; j++)
                        for (uint32_t k = sc == sb ? j + 1 : sc == sa ? i + 1 : C.begin;
                             k < C.end; k++) {
                            slr_status st = visit(ctx, i, j, k);
                            if (st != SLR_OK)
                                return st;
                        }
            }
        }
    }
    return SLR_OK;
}

#endif
