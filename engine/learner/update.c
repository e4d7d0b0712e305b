/* update.c - the gradient step and penalty of a whole example's weights at
 * once, for the fast path under a soft penalty: update.h's soft form in a
 * loop, and four weights per instruction where the CPU has AVX. */
#include <math.h>

#include "update.h"

void slr_update_soft_scalar(const slr_penalty *pen, double *w, const double *rate,
                            const double *g_x, uint32_t n, uint64_t t)
{
    (void)t; /* a soft penalty truncates at every step, if at all */
    for (uint32_t i = 0; i < n; i++)
        w[i] = slr_update_weight_soft(pen, w[i], rate[i], g_x[i]);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* slr_update_weight_soft on four lanes: the same IEEE operations in the
 * same order (max_pd(x, 0) is x > 0 ? x : 0). */
__attribute__((target("avx"))) static void update_soft_avx(const slr_penalty *pen, double *w,
                                                            const double *rate, const double *g_x,
                                                            uint32_t n, uint64_t t)
{
    const __m256d l1 = _mm256_set1_pd(pen->l1), l2 = _mm256_set1_pd(pen->l2);
    const __m256d one = _mm256_set1_pd(1.0), zero = _mm256_setzero_pd(), sign = _mm256_set1_pd(-0.0);
    const __m256d bound = _mm256_set1_pd(SLR_MAX_ABS_WEIGHT), minus_bound = _mm256_set1_pd(-SLR_MAX_ABS_WEIGHT);
    const bool decay = pen->l2 != 0.0, truncate = pen->l1 > 0.0;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d r = _mm256_loadu_pd(rate + i), gx = _mm256_loadu_pd(g_x + i);
        /* slr_gradient_step: the clamped step, kept where the gradient is not zero */
        __m256d w0 = _mm256_loadu_pd(w + i);
        __m256d stepped = _mm256_sub_pd(w0, _mm256_mul_pd(r, gx));
        stepped = _mm256_min_pd(_mm256_max_pd(stepped, minus_bound), bound);
        __m256d v = _mm256_blendv_pd(w0, stepped, _mm256_cmp_pd(gx, zero, _CMP_NEQ_UQ));
        if (decay)
            v = _mm256_mul_pd(v, _mm256_sub_pd(one, _mm256_min_pd(_mm256_mul_pd(r, l2), one)));
        if (truncate) {
            __m256d x = _mm256_sub_pd(_mm256_andnot_pd(sign, v), _mm256_mul_pd(r, l1));
            x = _mm256_max_pd(x, zero); /* x > 0 ? x : 0 */
            v = _mm256_add_pd(_mm256_or_pd(x, _mm256_and_pd(sign, v)), zero);
        }
        _mm256_storeu_pd(w + i, v);
    }
    /* the tail inline, in this function's encoding: a call to SSE code from
     * here (GCC makes it a tail jump without vzeroupper) would leave the
     * upper halves dirty and slow every SSE instruction after it */
    (void)t;
    for (; i < n; i++)
        w[i] = slr_update_weight_soft(pen, w[i], rate[i], g_x[i]);
}

slr_step_fn *slr_update_soft_many(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") ? update_soft_avx : slr_update_soft_scalar;
}
#else
slr_step_fn *slr_update_soft_many(void) { return slr_update_soft_scalar; }
#endif
