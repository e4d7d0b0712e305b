/* check_learner.c - the learner's math: lazy penalty == eager penalty,
 * the gradient against finite differences, L1 sparsity, numeric stability. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "learner/learner_impl.h"
#include "learner/penalty.h"
#include "streamlr/learner.h"
#include "testutil.h"

/* Lazy and eager must agree to 1e-9 relative; near zero (cancellation in the
 * closed forms, or one path clipping to 0 while the other keeps 1e-17) an
 * absolute 1e-12 on weights of order 0.01-1 is the meaningful bound. */
#define REL_TOL 1e-9
#define ABS_TOL 1e-12

/* ------------------------------------------------------------ catch-up units */

static double replay_steps(const slr_penalty *pen, double w, const double *eta, uint64_t t0,
                           uint64_t t1)
{
    for (uint64_t t = t0 + 1; t <= t1; t++)
        w = slr_penalty_step(pen, w, eta[t], t);
    return w;
}

/* The closed form over (t0, t0 + gap] against the step-by-step value. */
static void check_catchup(const slr_penalty *pen, double w, double eta, uint64_t t0, uint64_t gap,
                          double want, int trial)
{
    double got = slr_penalty_catchup_const(pen, w, eta, t0, t0 + gap);
    ck_assert_msg(test_close(got, want, REL_TOL, ABS_TOL),
                  "trial %d: w=%.17g eta=%g l1=%g l2=%g K=%u thr=%g t0=%llu gap=%llu: "
                  "closed form %.17g, steps %.17g",
                  trial, w, eta, pen->l1, pen->l2, pen->period, pen->threshold,
                  (unsigned long long)t0, (unsigned long long)gap, got, want);
}

START_TEST(catchup_const_matches_steps)
{
    test_rng r = {.s = 42 + (uint64_t)_i};
    enum { MAXT = 6000 };
    static double eta[MAXT + 1];
    int zeros = 0, band_crossings = 0, n = 0;
    for (int trial = 0; trial < 4000; trial++) {
        slr_penalty pen = {
            .l1 = test_rng_unif(&r) < 0.2 ? 0.0 : 1e-4 * test_rng_unif(&r),
            .l2 = test_rng_unif(&r) < 0.2 ? 0.0 : 0.02 * test_rng_unif(&r),
            .period = test_rng_unif(&r) < 0.5 ? 1 : 1 + (uint32_t)test_rng_below(&r, 9),
            .threshold = test_rng_unif(&r) < 0.5 ? INFINITY : 0.05 + test_rng_unif(&r),
        };
        if (!slr_penalty_active(&pen))
            pen.l2 = 0.01;
        double e = 0.01 + test_rng_unif(&r);
        double w = (test_rng_unif(&r) - 0.5) * 4.0;
        uint64_t t0 = test_rng_below(&r, 100);
        uint64_t gap = test_rng_unif(&r) < 0.3 ? test_rng_below(&r, 12) : test_rng_below(&r, MAXT - 100);
        for (uint64_t t = 0; t <= t0 + gap; t++)
            eta[t] = e;
        double want = replay_steps(&pen, w, eta, t0, t0 + gap);
        check_catchup(&pen, w, e, t0, gap, want, trial);
        zeros += want == 0.0;
        band_crossings += fabs(w) > pen.threshold && fabs(want) < pen.threshold && pen.l2 > 0;
        n++;
    }
    /* the random cases must reach the interesting branches */
    ck_assert_int_gt(zeros, 100);
    ck_assert_int_gt(band_crossings, 20);
}
END_TEST

/* The regime of real training: a tiny decay per step (eta l2 ~ 1e-9 .. 1e-5),
 * a small gravity, and gaps of up to a million steps -- where the catch-up
 * takes its series shortcuts for log(1 - a) and e^y - 1. */
START_TEST(catchup_const_small_rates_long_gaps)
{
    test_rng r = {.s = 77 + (uint64_t)_i};
    int zeros = 0, long_gaps = 0, shrunk = 0;
    for (int trial = 0; trial < 120; trial++) {
        slr_penalty pen = {
            .l1 = test_rng_unif(&r) < 0.25 ? 0.0 : pow(10.0, -8.0 + 3.0 * test_rng_unif(&r)),
            .l2 = test_rng_unif(&r) < 0.25 ? 0.0 : pow(10.0, -8.0 + 3.0 * test_rng_unif(&r)),
            .period = trial % 5 == 0 ? 3 : 1,
            .threshold = trial % 7 == 0 ? 0.5 : INFINITY,
        };
        if (!slr_penalty_active(&pen))
            pen.l2 = 1e-7;
        double eta = pow(10.0, -3.0 + 2.7 * test_rng_unif(&r));
        double w = (test_rng_unif(&r) < 0.5 ? -1.0 : 1.0) * pow(10.0, -4.5 + 4.5 * test_rng_unif(&r));
        uint64_t t0 = test_rng_below(&r, 1000);
        uint64_t gap = (uint64_t)pow(10.0, 6.0 * test_rng_unif(&r));
        double want = w;
        for (uint64_t t = t0 + 1; t <= t0 + gap; t++)
            want = slr_penalty_step(&pen, want, eta, t);
        check_catchup(&pen, w, eta, t0, gap, want, trial);
        zeros += want == 0.0;
        long_gaps += gap > 10000;
        shrunk += want != 0.0 && fabs(want) < 0.999 * fabs(w);
    }
    ck_assert_int_gt(zeros, 5);
    ck_assert_int_gt(long_gaps, 20);
    ck_assert_int_gt(shrunk, 10);
}
END_TEST

START_TEST(catchup_history_matches_steps)
{
    test_rng r = {.s = 7 + (uint64_t)_i};
    enum { T = 5000 };
    static double eta[T + 1];
    slr_penalty_history h = {.cap = T + 1};
    h.log_p = malloc((T + 1) * sizeof(double));
    h.c = malloc((T + 1) * sizeof(double));
    int zeros = 0, crossings = 0;
    for (int config = 0; config < 40; config++) {
        slr_penalty pen = {
            .l1 = config % 3 == 1 ? 0.0 : 2e-3 * test_rng_unif(&r),
            .l2 = config % 3 == 2 ? 0.0 : 0.02 * test_rng_unif(&r),
            .period = config % 2 ? 1 : 1 + (uint32_t)test_rng_below(&r, 7),
            .threshold = config % 4 < 2 ? INFINITY : 0.1 + test_rng_unif(&r),
        };
        double eta0 = 0.2 + test_rng_unif(&r), p = 0.5 * test_rng_unif(&r) + 0.25;
        uint64_t base = test_rng_below(&r, 50);
        slr_penalty_history_rebase(&h, base);
        for (uint64_t t = base + 1; t <= base + T; t++) {
            eta[t - base] = eta0 * pow(1.0 / (1.0 + (double)(t - 1)), p);
            slr_penalty_history_push(&h, &pen, eta[t - base]);
        }
        for (int trial = 0; trial < 200; trial++) {
            uint64_t t0 = base + test_rng_below(&r, T);
            uint64_t t1 = t0 + test_rng_below(&r, base + T - t0 + 1);
            double w = (test_rng_unif(&r) - 0.5) * 4.0;
            double want = w;
            for (uint64_t t = t0 + 1; t <= t1; t++)
                want = slr_penalty_step(&pen, want, eta[t - base], t);
            double got = slr_penalty_catchup_history(&pen, &h, w, t0, t1);
            ck_assert_msg(test_close(got, want, REL_TOL, ABS_TOL),
                          "config %d trial %d: w=%.17g l1=%g l2=%g K=%u thr=%g (%llu,%llu]: "
                          "history %.17g, steps %.17g",
                          config, trial, w, pen.l1, pen.l2, pen.period, pen.threshold,
                          (unsigned long long)t0, (unsigned long long)t1, got, want);
            zeros += want == 0.0;
            crossings += fabs(w) > pen.threshold && fabs(want) < pen.threshold && pen.l2 > 0;
        }
    }
    ck_assert_int_gt(zeros, 100);
    ck_assert_int_gt(crossings, 10);
    free(h.log_p);
    free(h.c);
}
END_TEST

/* ------------------------------------------------ whole learner: lazy == eager */

/* A random sparse stream over 2^bits slots: a few frequent features and a
 * long tail, so gaps range from 0 to thousands of steps. */
static void random_example(test_rng *r, slr_example *ex, unsigned bits, const double *theta_star)
{
    slr_example_reset(ex);
    uint64_t d = UINT64_C(1) << bits;
    int nf = 1 + (int)test_rng_below(r, 8);
    double z = -0.5;
    for (int k = 0; k < nf; k++) {
        /* log-uniform index: low indices frequent, high ones rare */
        uint64_t j = (uint64_t)floor(pow((double)d, test_rng_unif(r))) - 1;
        if (j >= d)
            j = d - 1;
        double v = test_rng_unif(r) < 0.5 ? 1.0 : test_rng_normal(r);
        ck_assert_int_eq(slr_example_add_hashed(ex, j, v, NULL), SLR_OK);
        z += theta_star[j] * v;
    }
    ck_assert_int_eq(slr_example_finish(ex, NULL), SLR_OK);
    ex->label = test_rng_unif(r) < slr_sigmoid(z) ? 1.0 : 0.0;
    ex->has_label = true;
    ex->weight = test_rng_unif(r) < 0.7 ? 1.0 : 0.5 + 1.5 * test_rng_unif(r);
}

typedef struct lazy_case {
    slr_schedule schedule;
    int reg; /* 1 = L1, 2 = L2, 3 = both */
    uint32_t period;
    double threshold;
} lazy_case;

static lazy_case lazy_cases[36];
static int n_lazy_cases;

static void build_lazy_cases(void)
{
    const slr_schedule sched[] = {SLR_SCHEDULE_CONSTANT, SLR_SCHEDULE_INVPOW, SLR_SCHEDULE_ADAGRAD};
    const uint32_t periods[] = {1, 5};
    const double thresholds[] = {INFINITY, 0.25};
    n_lazy_cases = 0;
    for (int s = 0; s < 3; s++)
        for (int reg = 1; reg <= 3; reg++)
            for (int k = 0; k < 2; k++)
                for (int th = 0; th < 2; th++)
                    lazy_cases[n_lazy_cases++] = (lazy_case){sched[s], reg, periods[k], thresholds[th]};
}

START_TEST(lazy_equals_eager)
{
    const lazy_case c = lazy_cases[_i];
    const unsigned bits = 7;
    const int steps = 5000; /* > the history capacity (4096): forces a rebase under invpow */
    slr_learner_config cfg;
    slr_learner_config_defaults(&cfg);
    slr_hashing_init(&cfg.hashing, bits);
    cfg.schedule = c.schedule;
    cfg.eta = c.schedule == SLR_SCHEDULE_ADAGRAD ? 0.3 : 0.2;
    cfg.power_t = 0.5;
    cfg.l1 = (c.reg & 1) ? 2e-4 : 0.0;
    cfg.l2 = (c.reg & 2) ? 5e-3 : 0.0;
    cfg.tg_period = c.period;
    cfg.tg_threshold = c.threshold;

    slr_learner *lazy = NULL, *eager = NULL;
    slr_error err;
    ck_assert_int_eq(slr_learner_create(&lazy, &cfg, &err), SLR_OK);
    cfg.eager = true;
    ck_assert_int_eq(slr_learner_create(&eager, &cfg, &err), SLR_OK);

    test_rng r = {.s = 1000 + (uint64_t)_i};
    double theta_star[1 << 7];
    for (int j = 0; j < (1 << bits); j++)
        theta_star[j] = test_rng_unif(&r) < 0.3 ? 2.0 * test_rng_normal(&r) : 0.0;

    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    int compared = 0, zero_both = 0, nonzero = 0;
    for (int t = 1; t <= steps; t++) {
        random_example(&r, &ex, bits, theta_star);
        double ll_lazy, ll_eager;
        double p_lazy = slr_learner_learn(lazy, &ex, &ll_lazy);
        double p_eager = slr_learner_learn(eager, &ex, &ll_eager);
        ck_assert_msg(test_close(p_lazy, p_eager, REL_TOL, ABS_TOL), "step %d: p %.17g vs %.17g", t,
                      p_lazy, p_eager);
        if (t % 250 == 0 || t == steps) {
            for (uint64_t j = 0; j <= slr_learner_bias_index(lazy); j++) {
                double a = slr_learner_weight(lazy, j), b = slr_learner_weight(eager, j);
                ck_assert_msg(test_close(a, b, REL_TOL, ABS_TOL),
                              "%s reg=%d K=%u thr=%g step %d weight %llu: lazy %.17g eager %.17g",
                              slr_schedule_name(c.schedule), c.reg, c.period, c.threshold, t,
                              (unsigned long long)j, a, b);
                compared++;
                zero_both += a == 0.0 && b == 0.0;
                nonzero += b != 0.0;
            }
        }
    }
    ck_assert_int_gt(nonzero, compared / 10);
    if (c.reg & 1) /* truncation must actually have zeroed weights */
        ck_assert_int_gt(zero_both, 0);
    /* after a full sync the stored values are the caught-up ones */
    slr_learner_sync(lazy);
    for (uint64_t j = 0; j <= slr_learner_bias_index(lazy); j++)
        ck_assert(test_close(lazy->slots[j].w, eager->slots[j].w, REL_TOL, ABS_TOL));
    if (c.schedule == SLR_SCHEDULE_INVPOW)
        ck_assert_uint_gt(lazy->epoch, 0); /* the rebase ran */
    slr_example_free(&ex);
    slr_learner_destroy(lazy);
    slr_learner_destroy(eager);
}
END_TEST

/* ------------------------------------------------------------ gradient */

static double loss_at(const double *theta, const double *x, int d, double y)
{
    double z = 0;
    for (int j = 0; j < d; j++)
        z += theta[j] * x[j];
    return slr_logloss_margin(z, y);
}

START_TEST(gradient_matches_finite_differences)
{
    test_rng r = {.s = 99};
    enum { D = 12 };
    for (int trial = 0; trial < 200; trial++) {
        double theta[D], x[D], y = test_rng_unif(&r) < 0.5 ? 0.0 : 1.0;
        for (int j = 0; j < D; j++) {
            theta[j] = test_rng_normal(&r);
            x[j] = test_rng_unif(&r) < 0.5 ? 0.0 : test_rng_normal(&r);
        }
        double z = 0;
        for (int j = 0; j < D; j++)
            z += theta[j] * x[j];
        for (int j = 0; j < D; j++) {
            const double h = 1e-6;
            double save = theta[j];
            theta[j] = save + h;
            double up = loss_at(theta, x, D, y);
            theta[j] = save - h;
            double down = loss_at(theta, x, D, y);
            theta[j] = save;
            double fd = (up - down) / (2 * h);
            double analytic = (slr_sigmoid(z) - y) * x[j];
            ck_assert_msg(fabs(fd - analytic) <= 1e-6 * fmax(1.0, fabs(analytic)),
                          "trial %d j %d: fd %.12g analytic %.12g", trial, j, fd, analytic);
        }
    }
}
END_TEST

/* The learner's update is -eta times that gradient (constant rate, no penalty). */
START_TEST(learner_step_is_gradient_step)
{
    slr_learner_config cfg;
    slr_learner_config_defaults(&cfg);
    slr_hashing_init(&cfg.hashing, 10);
    cfg.schedule = SLR_SCHEDULE_CONSTANT;
    cfg.eta = 0.1;
    slr_learner *l;
    ck_assert_int_eq(slr_learner_create(&l, &cfg, NULL), SLR_OK);
    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    test_rng r = {.s = 5};
    for (int step = 0; step < 50; step++) {
        slr_example_reset(&ex);
        double xs[4];
        uint64_t idx[4] = {3, 17, 200 + (uint64_t)step, 999};
        for (int k = 0; k < 4; k++) {
            xs[k] = test_rng_normal(&r);
            slr_example_add_hashed(&ex, idx[k], xs[k], NULL);
        }
        slr_example_finish(&ex, NULL);
        ex.label = step % 3 == 0;
        ex.has_label = true;
        double before[4], bias0 = slr_learner_weight(l, slr_learner_bias_index(l)), z = bias0;
        for (int k = 0; k < 4; k++) {
            before[k] = slr_learner_weight(l, idx[k]);
            z += before[k] * (double)(float)xs[k];
        }
        double p = slr_learner_learn(l, &ex, NULL);
        ck_assert(fabs(p - slr_sigmoid(z)) < 1e-15);
        for (int k = 0; k < 4; k++) {
            double want = before[k] - cfg.eta * (p - ex.label) * (double)(float)xs[k];
            ck_assert(fabs(slr_learner_weight(l, idx[k]) - want) < 1e-15);
        }
        ck_assert(fabs(slr_learner_weight(l, slr_learner_bias_index(l)) -
                       (bias0 - cfg.eta * (p - ex.label))) < 1e-15);
    }
    slr_example_free(&ex);
    slr_learner_destroy(l);
}
END_TEST

/* ------------------------------------------------------------ sparsity */

/* Online L1 cannot keep a weight at zero at the very step a noisy gradient
 * kicks it, so the claim tested is the one truncated gradient makes: every
 * irrelevant weight left alone for a while is exactly 0, most of them are 0
 * at any moment, relevant ones survive with the right sign -- and without
 * L1 none of this happens. */
static void run_sparse_stream(double l1, int *irrelevant_zero, int *quiet_nonzero,
                              int *relevant_right, int *quiet_total)
{
    enum { RELEVANT = 10, IRRELEVANT = 190, D = RELEVANT + IRRELEVANT, STEPS = 40000, QUIET = 80 };
    test_rng r = {.s = 2024};
    double theta_star[D] = {0};
    for (int j = 0; j < RELEVANT; j++)
        theta_star[j] = (j % 2 ? 1.0 : -1.0) * (1.0 + test_rng_unif(&r));

    slr_learner_config cfg;
    slr_learner_config_defaults(&cfg);
    slr_hashing_init(&cfg.hashing, 10);
    cfg.schedule = SLR_SCHEDULE_ADAGRAD;
    cfg.eta = 0.2;
    cfg.l1 = l1;
    slr_learner *l;
    ck_assert_int_eq(slr_learner_create(&l, &cfg, NULL), SLR_OK);
    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    int last_touch[D] = {0};
    for (int step = 1; step <= STEPS; step++) {
        slr_example_reset(&ex);
        double z = 0;
        for (int j = 0; j < D; j++) {
            /* relevant features are common, irrelevant ones rare */
            if (test_rng_unif(&r) < (j < RELEVANT ? 0.5 : 0.02)) {
                double v = test_rng_unif(&r) < 0.5 ? 1.0 : -1.0;
                slr_example_add_hashed(&ex, (uint64_t)j, v, NULL);
                z += theta_star[j] * v;
                last_touch[j] = step;
            }
        }
        slr_example_finish(&ex, NULL);
        ex.label = test_rng_unif(&r) < slr_sigmoid(z);
        ex.has_label = true;
        slr_learner_learn(l, &ex, NULL);
    }
    *irrelevant_zero = *quiet_nonzero = *relevant_right = *quiet_total = 0;
    for (int j = 0; j < RELEVANT; j++)
        *relevant_right += slr_learner_weight(l, j) * theta_star[j] > 0;
    for (int j = RELEVANT; j < D; j++) {
        double w = slr_learner_weight(l, j);
        *irrelevant_zero += w == 0.0;
        if (STEPS - last_touch[j] >= QUIET) {
            (*quiet_total)++;
            *quiet_nonzero += w != 0.0;
        }
    }
    slr_example_free(&ex);
    slr_learner_destroy(l);
}

START_TEST(l1_zeroes_irrelevant_weights)
{
    int zero, quiet_nonzero, right, quiet;
    run_sparse_stream(0.03, &zero, &quiet_nonzero, &right, &quiet);
    ck_assert_int_eq(right, 10);
    ck_assert_int_gt(quiet, 15);
    ck_assert_int_eq(quiet_nonzero, 0);
    ck_assert_int_ge(zero, 190 * 3 / 4);

    run_sparse_stream(0.0, &zero, &quiet_nonzero, &right, &quiet);
    ck_assert_int_eq(right, 10);
    ck_assert_int_eq(zero, 0);
}
END_TEST

/* ------------------------------------------------------------ stability */

START_TEST(sigmoid_and_loss_are_stable)
{
    const double zs[] = {-1e308, -1000, -40, -1, 0, 1, 40, 1000, 1e308};
    for (size_t i = 0; i < sizeof zs / sizeof zs[0]; i++) {
        double p = slr_sigmoid(zs[i]);
        ck_assert(isfinite(p) && p >= 0 && p <= 1);
        for (int y = 0; y <= 1; y++) {
            double ll = slr_logloss_margin(zs[i], y);
            ck_assert(isfinite(ll) || fabs(zs[i]) > 1e300);
            ck_assert(ll >= 0);
        }
    }
    ck_assert(fabs(slr_logloss_margin(1000, 0) - 1000) < 1e-9);
    ck_assert(fabs(slr_logloss_margin(-1000, 1) - 1000) < 1e-9);
    ck_assert(fabs(slr_logloss_margin(0, 1) - log(2)) < 1e-15);
    ck_assert(slr_logloss_margin(1000, 1) < 1e-300);
}
END_TEST

START_TEST(config_rejects_nonsense)
{
    slr_learner_config cfg;
    slr_error err;
    slr_learner_config_defaults(&cfg);
    ck_assert_int_eq(slr_learner_config_validate(&cfg, &err), SLR_OK);
    cfg.hashing.bits = 0;
    ck_assert_int_eq(slr_learner_config_validate(&cfg, &err), SLR_ERR_ARG);
    slr_learner_config_defaults(&cfg);
    cfg.eta = NAN;
    ck_assert_int_eq(slr_learner_config_validate(&cfg, &err), SLR_ERR_ARG);
    slr_learner_config_defaults(&cfg);
    cfg.schedule = SLR_SCHEDULE_CONSTANT;
    cfg.l2 = 20.0; /* eta l2 = 2 */
    ck_assert_int_eq(slr_learner_config_validate(&cfg, &err), SLR_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "--l2"));
    slr_learner_config_defaults(&cfg);
    cfg.tg_period = 0;
    ck_assert_int_eq(slr_learner_config_validate(&cfg, &err), SLR_ERR_ARG);
}
END_TEST

static Suite *learner_suite(void)
{
    Suite *s = suite_create("learner");
    TCase *tc = tcase_create("penalty");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, catchup_const_matches_steps, 0, 3);
    tcase_add_loop_test(tc, catchup_const_small_rates_long_gaps, 0, 2);
    tcase_add_loop_test(tc, catchup_history_matches_steps, 0, 2);
    suite_add_tcase(s, tc);

    build_lazy_cases();
    tc = tcase_create("lazy_equals_eager");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, lazy_equals_eager, 0, n_lazy_cases);
    suite_add_tcase(s, tc);

    tc = tcase_create("math");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, gradient_matches_finite_differences);
    tcase_add_test(tc, learner_step_is_gradient_step);
    tcase_add_test(tc, l1_zeroes_irrelevant_weights);
    tcase_add_test(tc, sigmoid_and_loss_are_stable);
    tcase_add_test(tc, config_rejects_nonsense);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(learner_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
