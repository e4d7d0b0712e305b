/* bad_reason.h - why a record could not be learned from.
 *
 * A small fixed set, so that rejected records can be counted per reason (in
 * the metrics, the summary and the checkpoint) and dead-lettered with a
 * reason a program can dispatch on; the error message next to it says the
 * details.  The decoders decide the first three, slr_example_from_raw the
 * next four, the training job the last. */
#ifndef STREAMLR_BAD_REASON_H
#define STREAMLR_BAD_REASON_H

#include "streamlr/export.h"

SLR_BEGIN_DECLS

typedef enum slr_bad_reason {
    SLR_BAD_DECODE = 0,        /* "decode": not a well-formed record of the format */
    SLR_BAD_JUNK,              /* "junk": bytes skipped to find the next record (msgpack) */
    SLR_BAD_TOO_LARGE,         /* "too_large": longer than --max-record */
    SLR_BAD_LABEL,             /* "label": a label other than 0, 1, -1, +1 */
    SLR_BAD_WEIGHT,            /* "weight": importance weight not finite, > 0 and within the bound */
    SLR_BAD_VALUE,             /* "value": a feature value NaN, infinite or beyond the bound */
    SLR_BAD_TOO_MANY_FEATURES, /* "too_many_features": more than --max-features after -q */
    SLR_BAD_UNLABELLED,        /* "unlabelled": valid, but training needs a label */
    SLR_BAD_REASON_COUNT
} slr_bad_reason;

/* The reason's name as above; "unknown" for anything else. */
const char *slr_bad_reason_name(slr_bad_reason r);
/* The reason with that name; SLR_BAD_REASON_COUNT if there is none. */
slr_bad_reason slr_bad_reason_from_name(const char *name, unsigned long len);

SLR_END_DECLS
#endif
