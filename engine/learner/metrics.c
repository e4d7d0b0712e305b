/* metrics.c - progressive totals, the exact AUC over a sliding window and
 * the cumulative histogram AUC (see metrics.h for the definitions and the
 * error bound). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "streamlr/metrics.h"

void slr_metrics_init(slr_metrics *m) { memset(m, 0, sizeof *m); }

double slr_metrics_logloss(const slr_metrics *m)
{
    return m->weight > 0 ? m->loss / m->weight : 0.0;
}

static int by_score(const void *a, const void *b)
{
    double x = ((const slr_scored *)a)->p, y = ((const slr_scored *)b)->p;
    return (x > y) - (x < y);
}

/* AUC of scored examples sorted by p: walk groups of tied scores in
 * increasing order; each positive in a group beats every negative below it
 * and ties half of those in its group. */
static double auc_of_sorted(const slr_scored *s, uint64_t n)
{
    double neg_below = 0, pos_total = 0, neg_total = 0, area = 0;
    for (uint64_t i = 0; i < n;) {
        uint64_t j = i;
        double pos = 0, neg = 0;
        while (j < n && s[j].p == s[i].p) {
            if (s[j].y > 0.5)
                pos += s[j].weight;
            else
                neg += s[j].weight;
            j++;
        }
        area += pos * (neg_below + 0.5 * neg);
        neg_below += neg;
        pos_total += pos;
        neg_total += neg;
        i = j;
    }
    if (pos_total <= 0 || neg_total <= 0)
        return NAN;
    return area / (pos_total * neg_total);
}

double slr_auc(double *p, double *y, double *w, uint64_t n)
{
    slr_scored *s = malloc((n ? n : 1) * sizeof *s);
    if (!s)
        return NAN;
    for (uint64_t i = 0; i < n; i++)
        s[i] = (slr_scored){p[i], w ? w[i] : 1.0, 0.0, y[i]};
    qsort(s, n, sizeof *s, by_score);
    double auc = auc_of_sorted(s, n);
    free(s);
    return auc;
}

/* ------------------------------------------------------------ sliding window */

slr_status slr_auc_window_create(slr_auc_window **out, uint32_t capacity, slr_error *err)
{
    *out = NULL;
    if (capacity < 1 || capacity > SLR_AUC_WINDOW_MAX)
        return slr_error_set(err, SLR_ERR_ARG, "the AUC window must hold 1 to %u examples (got %u)",
                             SLR_AUC_WINDOW_MAX, capacity);
    slr_auc_window *w = calloc(1, sizeof *w);
    if (w) {
        w->ring = malloc((size_t)capacity * sizeof *w->ring);
        w->scratch = malloc((size_t)capacity * sizeof *w->scratch);
    }
    if (!w || !w->ring || !w->scratch) {
        slr_auc_window_destroy(w);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for an AUC window of %u examples",
                             capacity);
    }
    w->capacity = capacity;
    *out = w;
    return SLR_OK;
}

void slr_auc_window_destroy(slr_auc_window *w)
{
    if (!w)
        return;
    free(w->ring);
    free(w->scratch);
    free(w);
}

const slr_scored *slr_auc_window_at(const slr_auc_window *w, uint32_t i)
{
    /* the oldest entry sits at `next` once the ring is full, at 0 before */
    uint64_t first = w->size == w->capacity ? w->next : 0;
    return &w->ring[(first + i) % w->capacity];
}

void slr_auc_window_copy_tail(slr_auc_window *dst, const slr_auc_window *src)
{
    dst->size = dst->next = 0;
    uint32_t keep = src->size < dst->capacity ? src->size : dst->capacity;
    for (uint32_t i = src->size - keep; i < src->size; i++) {
        const slr_scored *s = slr_auc_window_at(src, i);
        slr_auc_window_add(dst, s->p, s->y, s->weight, s->loss);
    }
}

void slr_auc_window_stats(slr_auc_window *w, slr_window_stats *out)
{
    memset(out, 0, sizeof *out);
    out->examples = w->size;
    /* oldest first, so the sums do not depend on where the ring wraps (a
     * resumed job refills it from slot 0 and must report the same numbers) */
    uint32_t first = w->size == w->capacity ? w->next : 0;
    memcpy(w->scratch, w->ring + first, (size_t)(w->size - first) * sizeof *w->ring);
    memcpy(w->scratch + (w->size - first), w->ring, (size_t)first * sizeof *w->ring);
    for (uint32_t i = 0; i < w->size; i++) {
        const slr_scored *s = &w->scratch[i];
        out->weight += s->weight;
        out->loss += s->weight * s->loss;
        out->positives += s->weight * s->y;
        out->predicted += s->weight * s->p;
    }
    qsort(w->scratch, w->size, sizeof *w->scratch, by_score);
    out->auc = auc_of_sorted(w->scratch, w->size);
}

/* ------------------------------------------------------------ cumulative AUC */

slr_status slr_auc_histogram_create(slr_auc_histogram **out, slr_error *err)
{
    slr_auc_histogram *h = calloc(1, sizeof *h);
    if (h) {
        h->pos = calloc(SLR_AUC_HISTOGRAM_BINS, sizeof *h->pos);
        h->neg = calloc(SLR_AUC_HISTOGRAM_BINS, sizeof *h->neg);
    }
    if (!h || !h->pos || !h->neg) {
        slr_auc_histogram_destroy(h);
        *out = NULL;
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for the AUC histogram");
    }
    *out = h;
    return SLR_OK;
}

void slr_auc_histogram_destroy(slr_auc_histogram *h)
{
    if (!h)
        return;
    free(h->pos);
    free(h->neg);
    free(h);
}

/* Key of q in [0, 1/2]: 0 below 2^-32, else 1 + 256 * (binary exponent + 32)
 * + the top 8 mantissa bits, read straight from the binary64 encoding (the
 * order of positive doubles is the order of their bit patterns). */
static uint32_t half_key(double q)
{
    uint64_t bits;
    memcpy(&bits, &q, sizeof bits);
    uint32_t biased = (uint32_t)(bits >> 52); /* q >= 0: no sign bit */
    if (!(q >= 0x1p-32))                      /* also NaN */
        return 0;
    return 1 + (biased - (1023 - 32)) * 256 + (uint32_t)((bits >> 44) & 0xff);
}

uint32_t slr_auc_histogram_bin(double p)
{
    if (p > 0.5) /* 1 - p is exact here (Sterbenz) */
        return SLR_AUC_HISTOGRAM_BINS - 1 - half_key(1.0 - p);
    return half_key(p);
}

void slr_auc_histogram_auc(const slr_auc_histogram *h, double *auc, double *error_bound)
{
    double neg_below = 0, pos_total = 0, area = 0, same_bin = 0;
    for (uint32_t b = 0; b < SLR_AUC_HISTOGRAM_BINS; b++) {
        double pos = h->pos[b], neg = h->neg[b];
        area += pos * (neg_below + 0.5 * neg);
        same_bin += pos * neg;
        neg_below += neg;
        pos_total += pos;
    }
    if (pos_total <= 0 || neg_below <= 0) {
        *auc = *error_bound = NAN;
        return;
    }
    *auc = area / (pos_total * neg_below);
    *error_bound = 0.5 * same_bin / (pos_total * neg_below);
}

void slr_source_stats_init(slr_source_stats *s)
{
    memset(s, 0, sizeof *s);
    s->consumer_lag = -1;
}
