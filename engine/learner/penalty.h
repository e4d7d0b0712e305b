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
