/* update.h - one step of learning on one weight, written once.
 *
 * slr_update_weight() is the definition every path of the learner computes
 * for a touched weight w at step t: the gradient step of the log loss at
 * rate r (with the numeric guard of docs/LEARNING.md), then the penalty of
 * step t (penalty.h).  learn_general applies its two halves separately only
 * because --eager penalises untouched weights too and a repeated index takes
 * one gradient step per occurrence but one penalty per step.  The fast
 * path's kernels (slr_update_weight_soft and the vector one behind
 * slr_update_soft_many) are specialisations for a soft penalty;
 * tests/check_learner.c holds them to this definition bit for bit. */
#ifndef STREAMLR_UPDATE_H
#define STREAMLR_UPDATE_H

#include <float.h>
#include <math.h>
#include <stdint.h>

#include "streamlr/learner.h"
#include "penalty.h"

/* The weight after a gradient step g_j at rate r: nothing for a zero
 * gradient (an infinite rate must not meet it), and the result clamped to
 * |w| <= SLR_MAX_ABS_WEIGHT. */
static inline double slr_gradient_step(double w, double r, double g_j)
{
    if (g_j == 0.0)
        return w;
    double v = w - r * g_j;
    return v > SLR_MAX_ABS_WEIGHT ? SLR_MAX_ABS_WEIGHT : v < -SLR_MAX_ABS_WEIGHT ? -SLR_MAX_ABS_WEIGHT : v;
}

/* AdaGrad's accumulator after the gradient g_j: Sum g^2 + g_j^2, in double.
 * Every path of the learner adds through this one function, and
 * tests/check_learner.c holds it to a compensated sum over 10^8 additions.
 * A double sum of n increments of one sign is within n 2^-53 of the exact
 * one (1.1e-7 after 10^9, a bound; measured far below it), where a float32
 * sum of increments ~0.1 is 1% low after 10^7.  |g_j| <= 10^36 (the bounds
 * of docs/LEARNING.md), so reaching DBL_MAX would take 10^236 additions;
 * it saturates there anyway, for a checkpoint that holds a huge sum. */
static inline double slr_adagrad_add(double g2, double g_j)
{
    const double sum = g2 + g_j * g_j;
    return sum < DBL_MAX ? sum : DBL_MAX;
}

/* FTRL-Proximal's weight of a coordinate with state (z, n) (McMahan et al.
 * 2013, Algorithm 1): the closed-form minimiser of the linearised losses so
 * far plus the L1, L2 and proximal terms, so it needs no catch-up however
 * long the coordinate went untouched.  Clamped like every weight. */
static inline double slr_ftrl_weight(double z, double n, double alpha, double beta, double l1,
                                     double l2)
{
    if (fabs(z) <= l1)
        return 0.0;
    const double w = -(z - copysign(l1, z)) / ((beta + sqrt(n)) / alpha + l2);
    return w > SLR_MAX_ABS_WEIGHT ? SLR_MAX_ABS_WEIGHT : w < -SLR_MAX_ABS_WEIGHT ? -SLR_MAX_ABS_WEIGHT : w;
}

/* FTRL-Proximal's update of (z, n) for the gradient g_j of a coordinate
 * whose weight was w: sigma = (sqrt(n + g_j^2) - sqrt(n)) / alpha,
 * z += g_j - sigma w, n += g_j^2.  n is AdaGrad's accumulator (the same
 * double sum); z stays within the weights' bound, which only a diverged
 * model reaches. */
static inline void slr_ftrl_update(double *z, double *n, double w, double g_j, double alpha)
{
    if (g_j == 0.0)
        return;
    const double n1 = slr_adagrad_add(*n, g_j);
    const double z1 = *z + (g_j - (sqrt(n1) - sqrt(*n)) / alpha * w);
    *z = z1 > SLR_MAX_ABS_WEIGHT ? SLR_MAX_ABS_WEIGHT : z1 < -SLR_MAX_ABS_WEIGHT ? -SLR_MAX_ABS_WEIGHT : z1;
    *n = n1;
}

/* The definition: gradient step, then the penalty of step t, at rate r. */
static inline double slr_update_weight(const slr_penalty *pen, double w, double r, double g_j,
                                       uint64_t t)
{
    return slr_penalty_step(pen, slr_gradient_step(w, r, g_j), r, t);
}

/* slr_update_weight under a soft penalty (slr_penalty_is_soft), for the fast
 * path: truncation without a band is sign(v) max(0, |v| - r l1), computed
 * without a branch on the sign (+ 0.0 turns a -0 into the +0 slr_truncate
 * returns), and no decay factor when l2 = 0 (w * 1.0 == w).  The same bits
 * as the definition for every non-NaN input; tests/check_learner.c holds
 * it, and the vector kernel built the same way, to that. */
static inline double slr_update_weight_soft(const slr_penalty *pen, double w, double r, double g_j)
{
    double v = slr_gradient_step(w, r, g_j);
    if (pen->l2 != 0.0)
        v *= 1.0 - slr_penalty_decay(pen, r);
    if (pen->l1 > 0.0) {
        const double x = fabs(v) - r * pen->l1;
        v = copysign(x > 0.0 ? x : 0.0, v) + 0.0;
    }
    return v;
}

/* w[i] <- slr_update_weight(pen, w[i], rate[i], g_x[i], t) for i < n, under a
 * soft penalty (slr_penalty_is_soft: then t does not change the result). */
typedef void slr_step_fn(const slr_penalty *pen, double *w, const double *rate, const double *g_x,
                         uint32_t n, uint64_t t);
/* One weight at a time (slr_update_weight_soft). */
void slr_update_soft_scalar(const slr_penalty *pen, double *w, const double *rate,
                            const double *g_x, uint32_t n, uint64_t t);
/* The fastest implementation this CPU runs (the same results). */
slr_step_fn *slr_update_soft_many(void);

#endif
