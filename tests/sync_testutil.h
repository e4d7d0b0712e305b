/* sync_testutil.h - what the shared-model suites (check_sync, check_sync_topic)
 * share: a synthetic stream over 2^BITS coordinates with a hidden true model,
 * and a learner's whole state as bytes, to compare models bit for bit.
 * Include after defining BITS. */
#ifndef STREAMLR_SYNC_TESTUTIL_H
#define STREAMLR_SYNC_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "learner/learner_io.h"
#include "streamlr/learner.h"
#include "testutil.h"
#include "util/le.h"

/* A true model over 2^BITS coordinates, fixed by the seed. */
static double theta_star[1u << BITS];

static inline void make_theta(void)
{
    test_rng r = {.s = 7};
    for (unsigned j = 0; j < (1u << BITS); j++)
        theta_star[j] = 0.8 * test_rng_normal(&r);
}

/* The example r draws: features log-uniform over the table (a few frequent,
 * i.e. dense, a long tail), a label from theta_star. */
static inline void sync_test_example(slr_example *ex, test_rng *r)
{
    slr_example_reset(ex);
    const double d = (double)(1u << BITS);
    int nf = 3 + (int)test_rng_below(r, 10);
    double z = -0.3;
    for (int k = 0; k < nf; k++) {
        uint64_t j = (uint64_t)floor(pow(d, test_rng_unif(r))) - 1;
        if (j >= (1u << BITS))
            j = (1u << BITS) - 1;
        ck_assert_int_eq(slr_example_add_hashed(ex, j, 1.0, NULL), SLR_OK);
        z += theta_star[j];
    }
    ck_assert_int_eq(slr_example_finish(ex, NULL), SLR_OK);
    ex->label = test_rng_unif(r) < slr_sigmoid(z) ? 1.0 : 0.0;
    ex->has_label = true;
    ex->weight = 1.0;
}

/* Every coordinate's (w, g2) and the bias, caught up, and the step: the
 * model as bytes (malloc'ed). */
static inline unsigned char *model_bytes(slr_learner *l, size_t *len)
{
    slr_learner_sync(l);
    uint64_t n = slr_learner_bias_index(l);
    *len = (size_t)n * 16 + 16 + 8;
    unsigned char *b = malloc(*len), *p = b;
    for (uint64_t j = 0; j <= n; j++, p += 16) {
        slr_le_put_f64(p, slr_learner_weight(l, j));
        double w;
        double g2;
        if (j < n) {
            uint32_t jj = (uint32_t)j;
            unsigned char rec[SLR_STATE_RECORD];
            slr_learner_state_export(l, &jj, 1, rec);
            g2 = slr_le_get_f64(rec + SLR_STATE_G2);
        } else {
            slr_learner_bias_get(l, &w, &g2);
        }
        slr_le_put_f64(p + 8, g2);
    }
    slr_le_put_u64(p, slr_learner_steps(l));
    return b;
}

#endif
