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
 * The common case (truncation every step, no band, or no L1 at all) has a
 * one-line closed form, inline in penalty.h because the learner calls it
 * for every feature.  In the general case short gaps are replayed step by
 * step instead: that is exactly the eager arithmetic and cheaper than the
 * transcendental functions. */
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

/* Smallest n >= 1 with x (1-a)^n <= theta, for x > theta and log1p(-a) = ell < 0,
 * or UINT64_MAX if there is none below 9e18.  The predicate x e^{ell n} <= theta
 * is monotone in n, so the logarithm's estimate is only a starting point: a
 * gallop and a bisection around it settle on the exact n for the decay
 * factor exp(ell n) that the caller then applies, in a few dozen evaluations
 * even where rounding makes the estimate poor (a subnormal theta, an ell of
 * 1e-15: fuzz_checkpoint_body found the former fix-up loop taking minutes). */
static inline bool in_band(double x, double theta, double ell, uint64_t n)
{
    return x * exp(ell * (double)n) <= theta;
}

static uint64_t steps_to_enter_band(double x, double theta, double ell)
{
    const uint64_t never = UINT64_C(9000000000000000000);
    double nf = ceil(log(theta / x) / ell);
    if (!(nf < 9.0e18))
        return UINT64_MAX;
    uint64_t guess = nf < 1.0 ? 1 : (uint64_t)nf;
    uint64_t lo, hi; /* the answer is in (lo, hi]: lo == 0 or not in band at lo; in band at hi */
    if (in_band(x, theta, ell, guess)) {
        hi = guess;
        for (uint64_t step = 1;; step *= 2) {
            if (hi <= step) {
                lo = 0;
                break;
            }
            if (!in_band(x, theta, ell, hi - step)) {
                lo = hi - step;
                break;
            }
            hi -= step;
        }
    } else {
        lo = guess;
        for (uint64_t step = 1;; step *= 2) {
            if (step >= never || lo >= never - step)
                return UINT64_MAX;
            if (in_band(x, theta, ell, lo + step)) {
                hi = lo + step;
                break;
            }
            lo += step;
        }
    }
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (in_band(x, theta, ell, mid))
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}

double slr_penalty_catchup_const(const slr_penalty *pen, double w, double eta, uint64_t t0,
                                 uint64_t t1)
{
    if (w == 0.0 || t1 <= t0 || !slr_penalty_active(pen))
        return w;
    if (slr_penalty_is_soft(pen))
        return slr_penalty_catchup_soft(pen, w, eta, t1 - t0);
    if (t1 - t0 <= SLR_CATCHUP_REPLAY_MAX)
        return replay(pen, w, eta, t0, t1);

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

static void catchup_soft_scalar(const slr_penalty *pen, double *w, const double *rate,
                                const uint32_t *gap, uint32_t m)
{
    for (uint32_t k = 0; k < m; k++)
        w[k] = slr_penalty_catchup_soft(pen, w[k], rate[k], gap[k]);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* slr_penalty_catchup_soft on four lanes, operation for operation, for the
 * lanes where both series apply (0 < a < SLR_LOG1M_SERIES_MAX,
 * |y| < SLR_EXPM1_SERIES_MAX) and the gap fits an int32; a group of four with
 * any other lane goes to the scalar code. */
__attribute__((target("avx"))) static void catchup_soft_avx(const slr_penalty *pen, double *w,
                                                             const double *rate,
                                                             const uint32_t *gap, uint32_t m)
{
    if (!(pen->l2 > 0.0)) { /* a = 0: the scalar code's subtraction of n alpha */
        catchup_soft_scalar(pen, w, rate, gap, m);
        return;
    }
    const __m256d l2 = _mm256_set1_pd(pen->l2), ratio = _mm256_set1_pd(pen->l1 / pen->l2);
    const __m256d zero = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0);
    const __m256d sign = _mm256_set1_pd(-0.0);
    const __m256d a_max = _mm256_set1_pd(SLR_LOG1M_SERIES_MAX),
                  y_max = _mm256_set1_pd(SLR_EXPM1_SERIES_MAX);
    const __m256d l_2 = _mm256_set1_pd(0.5), l_3 = _mm256_set1_pd(1.0 / 3.0),
                  l_4 = _mm256_set1_pd(0.25), l_5 = _mm256_set1_pd(0.2);
    const __m256d e_2 = _mm256_set1_pd(0.5), e_3 = _mm256_set1_pd(1.0 / 6.0),
                  e_4 = _mm256_set1_pd(1.0 / 24.0), e_5 = _mm256_set1_pd(1.0 / 120.0),
                  e_6 = _mm256_set1_pd(1.0 / 720.0);
    uint32_t k = 0;
    for (; k + 4 <= m; k += 4) {
        __m128i g = _mm_loadu_si128((const __m128i *)(const void *)(gap + k));
        __m256d a = _mm256_min_pd(_mm256_mul_pd(_mm256_loadu_pd(rate + k), l2), one);
        __m256d in = _mm256_and_pd(_mm256_cmp_pd(a, zero, _CMP_GT_OQ),
                                   _mm256_cmp_pd(a, a_max, _CMP_LT_OQ));
        if (_mm256_movemask_pd(in) != 0xF || _mm_movemask_ps(_mm_castsi128_ps(g)) != 0) {
            catchup_soft_scalar(pen, w + k, rate + k, gap + k, 4);
            continue;
        }
        /* slr_log1m: -a (1 + a (1/2 + a (1/3 + a (1/4 + a/5)))) */
        __m256d p = _mm256_add_pd(l_4, _mm256_mul_pd(a, l_5));
        p = _mm256_add_pd(l_3, _mm256_mul_pd(a, p));
        p = _mm256_add_pd(l_2, _mm256_mul_pd(a, p));
        p = _mm256_add_pd(one, _mm256_mul_pd(a, p));
        __m256d ell = _mm256_mul_pd(_mm256_xor_pd(a, sign), p);
        __m256d y = _mm256_mul_pd(_mm256_cvtepi32_pd(g), ell);
        if (_mm256_movemask_pd(_mm256_cmp_pd(_mm256_andnot_pd(sign, y), y_max, _CMP_LT_OQ)) != 0xF) {
            catchup_soft_scalar(pen, w + k, rate + k, gap + k, 4);
            continue;
        }
        /* slr_expm1: y (1 + y (1/2 + y (1/6 + y (1/24 + y (1/120 + y/720))))) */
        __m256d q = _mm256_add_pd(e_5, _mm256_mul_pd(y, e_6));
        q = _mm256_add_pd(e_4, _mm256_mul_pd(y, q));
        q = _mm256_add_pd(e_3, _mm256_mul_pd(y, q));
        q = _mm256_add_pd(e_2, _mm256_mul_pd(y, q));
        q = _mm256_add_pd(one, _mm256_mul_pd(y, q));
        __m256d E = _mm256_mul_pd(y, q);
        __m256d wk = _mm256_loadu_pd(w + k);
        __m256d x = _mm256_andnot_pd(sign, wk);
        x = _mm256_add_pd(x, _mm256_mul_pd(E, _mm256_add_pd(x, ratio)));
        /* x > 0 ? copysign(x, w) : +0 */
        __m256d signed_x = _mm256_or_pd(x, _mm256_and_pd(sign, wk));
        _mm256_storeu_pd(w + k, _mm256_and_pd(_mm256_cmp_pd(x, zero, _CMP_GT_OQ), signed_x));
    }
    catchup_soft_scalar(pen, w + k, rate + k, gap + k, m - k);
}

slr_catchup_many_fn *slr_penalty_catchup_soft_many(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") ? catchup_soft_avx : catchup_soft_scalar;
}
#else
slr_catchup_many_fn *slr_penalty_catchup_soft_many(void) { return catchup_soft_scalar; }
#endif

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
