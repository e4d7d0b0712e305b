/* metrics.h - honest online metrics: progressive validation.
 *
 * Every example is scored before the learner sees its label, so the running
 * log loss is an out-of-sample estimate (Blum, Kalai & Langford 1999), the
 * number VW prints as "average loss".  Three accumulators, all part of a
 * checkpoint so that a resumed run reports the same numbers an uninterrupted
 * one would:
 *
 *   slr_metrics        running totals (loss, weight, calibration, counts);
 *   slr_auc_window     the last N (p, y, weight, loss) tuples, for an AUC,
 *                      log loss and calibration that are exact over exactly
 *                      those N examples (recomputed on demand, O(N log N));
 *   slr_auc_histogram  the cumulative AUC over every example, from a
 *                      histogram of scores with a data-dependent error bound.
 *
 * Adding an example costs O(1) in each.  A report (slr_metrics_report) is a
 * plain snapshot of everything a progress line, a JSON line or a Prometheus
 * scrape shows; the formatters below print it without touching the live
 * accumulators, so a snapshot can be handed to another thread. */
#ifndef STREAMLR_METRICS_H
#define STREAMLR_METRICS_H

#include "streamlr/export.h"
#include <stddef.h>
#include <stdint.h>

#include "streamlr/bad_reason.h"
#include "streamlr/error.h"

SLR_BEGIN_DECLS

typedef struct slr_metrics {
    uint64_t examples;   /* labelled examples learned from */
    double weight;       /* sum of importance weights h */
    double loss;         /* sum of h * log loss */
    double positives;    /* sum of h * y */
    double predicted;    /* sum of h * p */
    uint64_t features;   /* features seen (incl. -q, excl. bias) */
    uint64_t bad;        /* records rejected as bad input */
    uint64_t unlabelled; /* examples without a label (skipped by train) */
    uint64_t lost;       /* Kafka offsets skipped because the broker had deleted them
                            (retention) before they were consumed: data loss */
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

/* ------------------------------------------------------------ sliding window */

#define SLR_AUC_WINDOW_DEFAULT 10000
#define SLR_AUC_WINDOW_MAX (1u << 26)

/* One scored example as the window keeps it. */
typedef struct slr_scored {
    double p;      /* prediction made before learning */
    double weight; /* importance weight h */
    double loss;   /* log loss of p */
    double y;      /* label, 0 or 1 */
} slr_scored;

/* A ring of the last `capacity` scored examples, with the scratch space to
 * sort them allocated up front, so neither adding nor reporting allocates. */
typedef struct slr_auc_window {
    slr_scored *ring;
    slr_scored *scratch;
    uint32_t capacity, size, next; /* next: slot the next example goes to */
} slr_auc_window;

slr_status slr_auc_window_create(slr_auc_window **out, uint32_t capacity, slr_error *err);
void slr_auc_window_destroy(slr_auc_window *w);

static inline void slr_auc_window_add(slr_auc_window *w, double p, double y, double weight,
                                      double loss)
{
    w->ring[w->next] = (slr_scored){p, weight, loss, y};
    if (++w->next == w->capacity)
        w->next = 0;
    if (w->size < w->capacity)
        w->size++;
}

/* The i-th oldest example in the window, 0 <= i < size. */
const slr_scored *slr_auc_window_at(const slr_auc_window *w, uint32_t i);

/* Copy the newest min(src->size, dst->capacity) examples of src into dst
 * (emptied first): how a resumed job with another --auc-window keeps what
 * it can. */
void slr_auc_window_copy_tail(slr_auc_window *dst, const slr_auc_window *src);

typedef struct slr_window_stats {
    uint64_t examples; /* in the window: min(N, examples seen) */
    double weight, loss, positives, predicted; /* weighted sums over the window */
    double auc;        /* exact AUC over the window; NaN if a class is missing */
} slr_window_stats;

/* Statistics of the examples now in the window.  Sorts a copy: O(N log N). */
void slr_auc_window_stats(slr_auc_window *w, slr_window_stats *out);

/* ------------------------------------------------------------ cumulative AUC */

/* Scores are binned by their distance to the nearer end of [0, 1], on a log
 * scale: q = min(p, 1 - p) (exact in binary64 for p > 1/2) falls into one
 * bin per binary exponent in [2^-32, 2^-1] times 2^8 slices of the mantissa,
 * i.e. bins 0.39% wide relative to q (about 0.004 to 0.008 in logit), mirrored
 * for p > 1/2; q < 2^-32 shares one end bin.  The mapping is monotone in p,
 * so the histogram AUC equals the exact AUC except that a positive and a
 * negative in the same bin count as a tie (1/2).  Hence
 *     |AUC_histogram - AUC_exact| <= 1/2 sum_b P_b N_b / (P N)
 * (P_b, N_b: positive and negative weight in bin b), a bound computed from
 * the data and reported beside the AUC; it is 0 when no bin holds both. */
#define SLR_AUC_HISTOGRAM_HALF (1 + 31 * 256 + 1) /* bins for q in [0, 1/2] */
#define SLR_AUC_HISTOGRAM_BINS (2 * SLR_AUC_HISTOGRAM_HALF)
#define SLR_AUC_HISTOGRAM_SCHEME "q-log2-m8-e32" /* names the binning in checkpoints */

typedef struct slr_auc_histogram {
    double *pos; /* SLR_AUC_HISTOGRAM_BINS weights of positives */
    double *neg; /* ...and of negatives */
} slr_auc_histogram;

slr_status slr_auc_histogram_create(slr_auc_histogram **out, slr_error *err);
void slr_auc_histogram_destroy(slr_auc_histogram *h);
uint32_t slr_auc_histogram_bin(double p);

static inline void slr_auc_histogram_add(slr_auc_histogram *h, double p, double y, double weight)
{
    uint32_t b = slr_auc_histogram_bin(p);
    if (y > 0.5)
        h->pos[b] += weight;
    else
        h->neg[b] += weight;
}

/* The histogram AUC (NaN if a class is missing) and its error bound. */
void slr_auc_histogram_auc(const slr_auc_histogram *h, double *auc, double *error_bound);

/* ------------------------------------------------------------ source counters */

/* What a streaming source knows and the learner does not.  The job copies it
 * into every report; a source updates it from its own thread (the Kafka
 * consumer from its statistics callback, which runs inside its poll). */
typedef struct slr_source_stats {
    int64_t consumer_lag;    /* messages between the consumed position and the high
                                watermark, summed over assigned partitions; -1 unknown */
    uint64_t retention_lost; /* messages deleted by retention before they were consumed */
    uint64_t dead_lettered;  /* records sent to the dead-letter sink */
} slr_source_stats;

void slr_source_stats_init(slr_source_stats *s);

/* ------------------------------------------------------------ reports */

/* Everything a progress display, a JSON line or a Prometheus scrape shows,
 * taken at one instant.  Plain data: copy it freely. */
typedef struct slr_metrics_report {
    double unix_time;           /* when taken */
    double run_seconds;         /* since this run started */
    double start_unix_time;     /* when this run started */
    uint64_t records_this_run;  /* records consumed (learned, bad or skipped) */
    uint64_t examples_this_run; /* examples learned */
    double examples_per_second; /* this run, excluding time spent writing checkpoints */
    slr_metrics totals;         /* progressive totals, including resumed history */
    slr_window_stats window;    /* over the last window_capacity examples */
    uint32_t window_capacity;   /* --auc-window; 0 if no window is kept */
    double auc;                 /* cumulative (histogram) AUC, NaN if none */
    double auc_error_bound;     /* |auc - exact cumulative AUC| <= this */
    slr_source_stats source;
    uint64_t checkpoints_this_run;
    double last_checkpoint_unix_time; /* 0 if none this run */
    int final;                        /* the last report of the run */
} slr_metrics_report;

/* Derived values (NaN where undefined). */
double slr_report_logloss(const slr_metrics_report *r);
double slr_report_mean_prediction(const slr_metrics_report *r);
double slr_report_positive_rate(const slr_metrics_report *r);
double slr_report_window_logloss(const slr_metrics_report *r);
double slr_report_window_mean_prediction(const slr_metrics_report *r);
double slr_report_window_positive_rate(const slr_metrics_report *r);

/* One JSON object on one line, ending in '\n' (NaN and unknown values are
 * null).  snprintf semantics: returns the length it needed. */
size_t slr_report_json(const slr_metrics_report *r, char *buf, size_t size);

/* The Prometheus text exposition format (version 0.0.4), metric names
 * prefixed "streamlr_".  snprintf semantics. */
size_t slr_report_prometheus(const slr_metrics_report *r, char *buf, size_t size);

SLR_END_DECLS
#endif
