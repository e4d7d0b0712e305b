/* bad_reason.c - names of the reasons a record is rejected (see bad_reason.h).
 * The names are part of the dead-letter format and of checkpoints: never
 * rename one, only add. */
#include <string.h>

#include "streamlr/bad_reason.h"

static const char *const names[SLR_BAD_REASON_COUNT] = {
    [SLR_BAD_DECODE] = "decode",
    [SLR_BAD_JUNK] = "junk",
    [SLR_BAD_TOO_LARGE] = "too_large",
    [SLR_BAD_LABEL] = "label",
    [SLR_BAD_WEIGHT] = "weight",
    [SLR_BAD_VALUE] = "value",
    [SLR_BAD_TOO_MANY_FEATURES] = "too_many_features",
    [SLR_BAD_UNLABELLED] = "unlabelled",
};

const char *slr_bad_reason_name(slr_bad_reason r)
{
    return (unsigned)r < SLR_BAD_REASON_COUNT ? names[r] : "unknown";
}

slr_bad_reason slr_bad_reason_from_name(const char *name, unsigned long len)
{
    for (int r = 0; r < SLR_BAD_REASON_COUNT; r++)
        if (strlen(names[r]) == len && !memcmp(names[r], name, len))
            return (slr_bad_reason)r;
    return SLR_BAD_REASON_COUNT;
}
