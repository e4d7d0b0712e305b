/* penalty.h - the regularisation math of the learner, in one place.
 *
 * One step of penalty at step t on a weight w with learning rate eta
 * (decay first, then truncation; this order is the definition the lazy
 * catch-up reproduces):
 *
 *   w <- (1 - a) w                      a = min(eta l2, 1)         (L2 decay)
 *   if t mod K == 0:  w <- T1(w, K eta l1, theta)                  (Langford et al. 2009)
 *   T1(v, alpha, theta) = max(0, v - alpha)  if 0 <= v <= theta
 *                         min(0, v + alpha)  if -theta <= v <= 0
 *                         v                   otherwise
 *
 * The catch-up functions apply the steps (t0, t1] of penalty to a weight that
 * received no gradient in between, in time independent of t1 - t0:
 *  - slr_penalty_catchup_const: the rate is constant over the gap (constant
 *    schedule; AdaGrad, whose per-coordinate rate only changes when touched).
 *  - slr_penalty_catchup_history: a global rate eta_t that varies with t
 *    (invpow); uses running sums kept per step in slr_penalty_history.
 * docs/LEARNING.md derives both. */
#ifndef STREAMLR_PENALTY_H
#define STREAMLR_PENALTY_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct slr_penalty {
    double l1, l2;
    uint32_t period;  /* K >= 1 */
    double threshold; /* theta > 0, INFINITY for plain soft thresholding */
} slr_penalty;

static inline bool slr_penalty_active(const slr_penalty *pen)
{
    return pen->l1 > 0 || pen->l2 > 0;
}

/* L2 decay fraction of one step at rate eta.  Clamped at 1 so that a huge
 * per-coordinate rate zeroes the weight instead of flipping its sign. */
static inline double slr_penalty_decay(const slr_penalty *pen, double eta)
{
    if (pen->l2 == 0.0)
        return 0.0; /* not eta * 0, which is NaN for an infinite rate */
    double a = eta * pen->l2;
    return a < 1.0 ? a : 1.0;
}

/* T1 of the truncated-gradient paper. */
static inline double slr_truncate(double v, double alpha, double theta)
{
    if (v >= 0)
        return v <= theta ? (v > alpha ? v - alpha : 0.0) : v;
    return -v <= theta ? (-v > alpha ? v + alpha : 0.0) : v;
}

/* One step t of penalty at rate eta: the eager definition. */
static inline double slr_penalty_step(const slr_penalty *pen, double w, double eta, uint64_t t)
{
    w *= 1.0 - slr_penalty_decay(pen, eta);
    if (pen->l1 > 0 && t % pen->period == 0)
        w = slr_truncate(w, (double)pen->period * eta * pen->l1, pen->threshold);
    return w;
}

/* Where the series of slr_log1m and slr_expm1 take over from log1p and
 * expm1: below these, the first omitted term is under 2^-60 of the result.
 * The vector catch-up (penalty.c) tests its lanes against the same bounds. */
#define SLR_LOG1M_SERIES_MAX 0x1p-12
#define SLR_EXPM1_SERIES_MAX 0x1p-10

/* log(1 - a) for 0 <= a < 1.  The decay of one step is usually tiny
 * (a = eta l2 ~ 1e-8), where five terms of the series are exact to rounding
 * (the next one is below 2^-72 a) and much cheaper than log1p. */
static inline double slr_log1m(double a)
{
    if (a < SLR_LOG1M_SERIES_MAX)
        return -a * (1.0 + a * (0.5 + a * (1.0 / 3.0 + a * (0.25 + a * 0.2))));
    return log1p(-a);
}

/* e^y - 1, by its Taylor series when |y| < 2^-10 (the next term is below
 * 2^-62 |y|): long gaps of a tiny decay land here. */
static inline double slr_expm1(double y)
{
    if (fabs(y) < SLR_EXPM1_SERIES_MAX)
        return y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0 +
                                                          y * (1.0 / 120.0 + y * (1.0 / 720.0))))));
    return expm1(y);
}

/* The common case: truncation at every step (K = 1) with no band
 * (theta = inf), or no L1 at all. */
static inline bool slr_penalty_is_soft(const slr_penalty *pen)
{
    return pen->l1 <= 0.0 || (pen->period == 1 && pen->threshold == INFINITY);
}

/* n >= 0 steps at constant rate eta of a soft penalty.  Each step maps
 * x = |w| to max(0, r x - alpha) with r = 1 - a, so
 *   x_n = r^n x - alpha (1 - r^n) / a
 * (clipped at 0 at the end: the unclipped sequence decreases and 0 is
 * absorbing).  With E = r^n - 1 = expm1(n log(1 - a)) and alpha / a =
 * l1 / l2 that is x + E (x + l1 / l2): one log and one exp, no branch on
 * the gap, and exactly w for n = 0. */
static inline double slr_penalty_catchup_soft(const slr_penalty *pen, double w, double eta,
                                              uint64_t n)
{
    const double a = slr_penalty_decay(pen, eta);
    double x = fabs(w);
    if (a == 0.0) {
        x -= (double)n * (eta * pen->l1);
    } else if (a < 1.0) {
        const double E = slr_expm1((double)n * slr_log1m(a));
        x += E * (x + pen->l1 / pen->l2);
    } else if (n > 0) {
        return 0.0; /* the first decay step zeroes it */
    }
    return x > 0.0 ? copysign(x, w) : 0.0;
}

/* w[k] <- slr_penalty_catchup_soft(pen, w[k], rate[k], gap[k]) for k < m:
 * the catch-up of a whole example at once.  Implementations give identical
 * results (the same IEEE operations in the same order); the vector one does
 * four weights per instruction where the CPU has AVX and every lane is in
 * the range of the series, and the scalar code for the rest. */
typedef void slr_catchup_many_fn(const slr_penalty *pen, double *w, const double *rate,
                                 const uint32_t *gap, uint32_t m);
/* The fastest implementation this CPU runs. */
slr_catchup_many_fn *slr_penalty_catchup_soft_many(void);

/* Steps (t0, t1] at constant rate eta. */
double slr_penalty_catchup_const(const slr_penalty *pen, double w, double eta, uint64_t t0,
                                 uint64_t t1);

/* Per-step running sums for a global, varying rate.  Entry i describes step
 * base + i:
 *   log_p[i] = sum over steps s in (base, base+i] of log(1 - a_s)
 *   c[i]     = sum over truncation steps s in (base, base+i] of K eta_s l1 / P_s
 * with P_s = exp(log_p[s - base]).  In units of u = w / P the decay is free
 * and each truncation subtracts c_s, so a gap costs two lookups (and a binary
 * search when a finite theta is crossed). */
typedef struct slr_penalty_history {
    uint64_t base;
    size_t len, cap;
    double *log_p;
    double *c;
} slr_penalty_history;

/* Record step base+len at rate eta (steps must be appended in order). */
void slr_penalty_history_push(slr_penalty_history *h, const slr_penalty *pen, double eta);
/* Forget everything; the next push describes step base+1. */
void slr_penalty_history_rebase(slr_penalty_history *h, uint64_t base);

/* Steps (t0, t1] with base <= t0 <= t1 <= base + len - 1. */
double slr_penalty_catchup_history(const slr_penalty *pen, const slr_penalty_history *h, double w,
                                   uint64_t t0, uint64_t t1);

#endif
