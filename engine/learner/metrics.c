/* metrics.c - progressive log loss and an exact AUC (see metrics.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "streamlr/metrics.h"

void slr_metrics_init(slr_metrics *m) { memset(m, 0, sizeof *m); }

double slr_metrics_logloss(const slr_metrics *m)
{
    return m->weight > 0 ? m->loss / m->weight : 0.0;
}

typedef struct scored {
    double p, y, w;
} scored;

static int by_score(const void *a, const void *b)
{
    double x = ((const scored *)a)->p, y = ((const scored *)b)->p;
    return (x > y) - (x < y);
}

double slr_auc(double *p, double *y, double *w, uint64_t n)
{
    scored *s = malloc((n ? n : 1) * sizeof *s);
    if (!s)
        return NAN;
    for (uint64_t i = 0; i < n; i++)
        s[i] = (scored){p[i], y[i], w ? w[i] : 1.0};
    qsort(s, n, sizeof *s, by_score);
    /* Walk groups of tied scores in increasing order: each positive in a group
     * beats every negative below it and ties half of those in its group. */
    double neg_below = 0, pos_total = 0, neg_total = 0, area = 0;
    for (uint64_t i = 0; i < n;) {
        uint64_t j = i;
        double pos = 0, neg = 0;
        while (j < n && s[j].p == s[i].p) {
            if (s[j].y > 0.5)
                pos += s[j].w;
            else
                neg += s[j].w;
            j++;
        }
        area += pos * (neg_below + 0.5 * neg);
        neg_below += neg;
        pos_total += pos;
        neg_total += neg;
        i = j;
    }
    free(s);
    if (pos_total <= 0 || neg_total <= 0)
        return NAN;
    return area / (pos_total * neg_total);
}
