/* penalty.c - lazy catch-up of L2 decay and truncated-gradient L1.
 *
 * Both functions compute what slr_penalty_step() applied once per step over
 * (t0, t1] would give, without looping over the steps.  They rely on three
 * facts (docs/LEARNING.md has the derivation):
 *  1. Decays compose: (1-a_s) multiply, i.e. their logs add.
 *  2. Between truncations a weight only decays, and once |w| <= theta it stays
 *     inside the band (decay and truncation only shrink |w|), so there is a
 *     single first in-band truncation step s1 and no exit.
 *  3. From s1 on, |w| follows x <- r x - alpha (clipped at 0, absorbing), a
 *     linear recurrence with a geometric-series closed form.
 * Short gaps are replayed step by step instead: that is exactly the eager
 * arithmetic and cheaper than the transcendental functions. */
#include <math.h>
#include <stdlib.h>

#include "penalty.h"

/* Gaps up to this many steps are replayed literally. */
#define SLR_CATCHUP_REPLAY_MAX 8

static double replay(const slr_penalty *pen, double w, double eta, uint64_t t0, uint64_t t1)
{
    for (uint64_t t = t0 + 1; t <= t1; t++)
        w = slr_penalty_step(pen, w, eta, t);
    return w;
}

/* Smallest n >= 1 with x (1-a)^n <= theta, for x > theta and log1p(-a) = ell < 0.
 * The logarithm gives the answer up to rounding; the two loops make it agree
 * with the decay factor exp(ell n) that the caller then applies. */
static uint64_t steps_to_enter_band(double x, double theta, double ell)
{
    double nf = ceil(log(theta / x) / ell);
    if (!(nf < 9.0e18))
        return UINT64_MAX;
    uint64_t n = nf < 1.0 ? 1 : (uint64_t)nf;
    while (n > 1 && x * exp(ell * (double)(n - 1)) <= theta)
        n--;
    while (x * exp(ell * (double)n) > theta)
        n++;
    return n;
}

/* log(1 - a) for 0 <= a < 1.  The decay of one step is usually tiny
 * (a = eta l2 ~ 1e-8), where five terms of the series are exact to rounding
 * (the next one is below 2^-72 a) and much cheaper than log1p. */
static inline double log1m(double a)
{
    if (a < 0x1p-12)
        return -a * (1.0 + a * (0.5 + a * (1.0 / 3.0 + a * (0.25 + a * 0.2))));
    return log1p(-a);
}

/* e^y - 1, by its Taylor series when |y| < 2^-10 (the next term is below
 * 2^-62 |y|): long gaps of a tiny decay land here. */
static inline double expm1_fast(double y)
{
    if (fabs(y) < 0x1p-10)
        return y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0 +
                                                          y * (1.0 / 120.0 + y * (1.0 / 720.0))))));
    return expm1(y);
}

/* The common case: a truncation every step (K = 1) and no band (theta = inf),
 * or no L1 at all.  Each step maps x = |w| to max(0, r x - alpha) with
 * r = 1 - a, so x_n = r^n x - alpha (1 - r^n) / a (clipped at 0 at the end:
 * the unclipped sequence decreases and 0 is absorbing).  With
 * E = r^n - 1 = expm1(n log(1 - a)) that is x + E (x + alpha / a): one log
 * and one exp instead of the general path's five. */
static double catchup_soft_threshold(const slr_penalty *pen, double w, double eta, uint64_t n)
{
    const double a = slr_penalty_decay(pen, eta);
    if (a >= 1.0)
        return 0.0;
    const double alpha = eta * pen->l1;
    double x = fabs(w);
    if (a == 0.0) {
        x -= (double)n * alpha;
    } else {
        const double E = expm1_fast((double)n * log1m(a));
        x += E * (x + alpha / a);
    }
    return x > 0.0 ? copysign(x, w) : 0.0;
}

double slr_penalty_catchup_const(const slr_penalty *pen, double w, double eta, uint64_t t0,
                                 uint64_t t1)
{
    if (w == 0.0 || t1 <= t0 || !slr_penalty_active(pen))
        return w;
    if (t1 - t0 <= SLR_CATCHUP_REPLAY_MAX)
        return replay(pen, w, eta, t0, t1);
    if (pen->l1 <= 0.0 || (pen->period == 1 && pen->threshold == INFINITY))
        return catchup_soft_threshold(pen, w, eta, t1 - t0);

    const double a = slr_penalty_decay(pen, eta);
    if (a >= 1.0)
        return 0.0; /* the first decay step already zeroed it */
    const double ell = log1p(-a); /* log of the per-step decay factor, <= 0 */
    const double sign = w < 0 ? -1.0 : 1.0;
    double x = fabs(w);

    const uint64_t K = pen->period;
    uint64_t s1 = (t0 / K + 1) * K; /* first truncation step after t0 */
    if (x > pen->threshold) {
        if (a == 0.0)
            return w; /* no decay: it never enters the band */
        uint64_t n = steps_to_enter_band(x, pen->threshold, ell);
        if (n > t1 - t0)
            return w * exp(ell * (double)(t1 - t0));
        uint64_t enter = t0 + n;
        if (enter > s1)
            s1 = (enter + K - 1) / K * K;
    }
    if (s1 > t1)
        return w * exp(ell * (double)(t1 - t0));

    /* decay up to s1, then the first truncation */
    const double alpha = (double)K * eta * pen->l1;
    x = x * exp(ell * (double)(s1 - t0)) - alpha;
    if (x <= 0.0)
        return 0.0;

    /* M more truncations, K steps apart: x <- r x - alpha with r = (1-a)^K,
     * so x_M = r^M x - alpha (1 - r^M) / (1 - r); zero is absorbing and the
     * unclipped sequence is decreasing, so clipping the end result suffices. */
    const uint64_t M = (t1 - s1) / K;
    if (M > 0) {
        if (a == 0.0) {
            x -= (double)M * alpha;
        } else {
            const double q = ell * (double)K;
            x = x * exp(q * (double)M) - alpha * (expm1(q * (double)M) / expm1(q));
        }
        if (x <= 0.0)
            return 0.0;
    }
    const uint64_t last = s1 + M * K;
    return sign * x * exp(ell * (double)(t1 - last));
}

void slr_penalty_history_rebase(slr_penalty_history *h, uint64_t base)
{
    h->base = base;
    h->len = 1;
    h->log_p[0] = 0.0;
    h->c[0] = 0.0;
}

void slr_penalty_history_push(slr_penalty_history *h, const slr_penalty *pen, double eta)
{
    size_t i = h->len;
    uint64_t t = h->base + i;
    double log_p = h->log_p[i - 1] + log1p(-slr_penalty_decay(pen, eta));
    double c = h->c[i - 1];
    if (pen->l1 > 0.0 && t % pen->period == 0)
        c += (double)pen->period * eta * pen->l1 / exp(log_p);
    h->log_p[i] = log_p;
    h->c[i] = c;
    h->len = i + 1;
}

double slr_penalty_catchup_history(const slr_penalty *pen, const slr_penalty_history *h, double w,
                                   uint64_t t0, uint64_t t1)
{
    if (w == 0.0 || t1 <= t0 || !slr_penalty_active(pen))
        return w;
    const double *L = h->log_p; /* indexed by step - base */
    const uint64_t b = h->base;
    const double L0 = L[t0 - b], L1 = L[t1 - b];
    const double sign = w < 0 ? -1.0 : 1.0;
    const double x = fabs(w);

    if (pen->l1 <= 0.0)
        return w * exp(L1 - L0);

    const uint64_t K = pen->period;
    uint64_t s1 = (t0 / K + 1) * K;
    if (s1 > t1)
        return w * exp(L1 - L0);
    if (x > pen->threshold) {
        if (pen->l2 <= 0.0)
            return w;
        /* first truncation step s = s1 + k K with x P_s / P_t0 <= theta;
         * P is non-increasing, so the predicate is monotone in k */
        uint64_t lo = 0, hi = (t1 - s1) / K + 1;
        if (!(x * exp(L[s1 + (hi - 1) * K - b] - L0) <= pen->threshold))
            return w * exp(L1 - L0);
        while (lo < hi) {
            uint64_t mid = lo + (hi - lo) / 2;
            if (x * exp(L[s1 + mid * K - b] - L0) <= pen->threshold)
                hi = mid;
            else
                lo = mid + 1;
        }
        s1 += lo * K;
    }
    /* In units of P_t0: each truncation at s subtracts K eta_s l1 P_t0 / P_s,
     * and their sum over [s1, t1] is P_t0 (c[t1] - c[s1 - 1]). */
    double y = x - exp(L0) * (h->c[t1 - b] - h->c[s1 - 1 - b]);
    if (y <= 0.0)
        return 0.0;
    return sign * y * exp(L1 - L0);
}
