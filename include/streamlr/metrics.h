/* metrics.h - honest online metrics: progressive validation.
 *
 * Every example is scored before the learner sees its label, so the running
 * log loss is an out-of-sample estimate (Blum, Kalai & Langford 1999), the
 * number VW prints as "average loss".  The totals are part of a checkpoint, so
 * a resumed run reports the same numbers an uninterrupted one would. */
#ifndef STREAMLR_METRICS_H
#define STREAMLR_METRICS_H

#include <stdint.h>

#include "streamlr/bad_reason.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slr_metrics {
    uint64_t examples;   /* labelled examples learned from */
    double weight;       /* sum of importance weights h */
    double loss;         /* sum of h * log loss */
    double positives;    /* sum of h * y */
    double predicted;    /* sum of h * p */
    uint64_t features;   /* features seen (incl. -q, excl. bias) */
    uint64_t bad;        /* records rejected as bad input */
    uint64_t unlabelled; /* examples without a label (skipped by train) */
    uint64_t rejected[SLR_BAD_REASON_COUNT]; /* bad and unlabelled records, by reason */
} slr_metrics;

void slr_metrics_init(slr_metrics *m);

static inline void slr_metrics_add(slr_metrics *m, double p, double loss, double y, double h,
                                   uint32_t n_features)
{
    m->examples++;
    m->weight += h;
    m->loss += h * loss;
    m->positives += h * y;
    m->predicted += h * p;
    m->features += n_features;
}

/* Weighted mean log loss so far (0 if nothing was seen). */
double slr_metrics_logloss(const slr_metrics *m);

/* AUC of (p, y) pairs: the probability that a random positive scores above a
 * random negative, ties counting half; weights are importance weights (NULL
 * = all 1).  O(n log n), allocates a copy.  NaN if one class is missing. */
double slr_auc(double *p, double *y, double *w, uint64_t n);

#ifdef __cplusplus
}
#endif
#endif
