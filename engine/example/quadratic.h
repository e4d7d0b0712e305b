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

/* Does -q `ab` cross span sa with span sb (spans of ex, in that order)? */
static inline bool slr_quadratic_crosses(const slr_example *ex, unsigned char a, unsigned char b,
                                         uint32_t sa, uint32_t sb)
{
    unsigned char la = ex->spans[sa].letter, lb = ex->spans[sb].letter;
    if (!slr_ns_matches(a, la) || !slr_ns_matches(b, lb))
        return false;
    /* the mirror pair (sb, sa) is crossed too: keep one of the two */
    return !(sb < sa && slr_ns_matches(a, lb) && slr_ns_matches(b, la));
}

#endif
