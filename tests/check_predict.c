/* check_predict.c - slr_prediction_line writes exactly what "%.9g" (then the
 * tag) writes, for every kind of double: it formats the fixed-point range
 * itself (prediction_line.c), so it is checked against snprintf on the
 * values a sigmoid gives, on values next to powers of ten, on values next to
 * ties at the ninth digit, and on those outside its range. */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamlr/predict.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static double uniform(void) { return (double)(next_u64() >> 11) * 0x1.0p-53; }

static int mismatches;

/* the line for p, with and without a tag, against snprintf */
static void check_one(double p)
{
    slr_buf b;
    slr_buf_init(&b);
    char want[64];
    snprintf(want, sizeof want, "%.9g\n", p);
    ck_assert(slr_prediction_line(&b, p, NULL, 0, NULL) == SLR_OK);
    if (b.len != strlen(want) || memcmp(b.data, want, b.len) != 0) {
        if (mismatches++ < 10)
            fprintf(stderr, "%.17g: wrote %.*s, %%.9g is %s", p, (int)b.len, b.data, want);
    }
    slr_buf_reset(&b);
    snprintf(want, sizeof want, "%.9g a_b\n", p);
    ck_assert(slr_prediction_line(&b, p, "a b", 3, NULL) == SLR_OK);
    if (b.len != strlen(want) || memcmp(b.data, want, b.len) != 0)
        mismatches++;
    slr_buf_free(&b);
}

START_TEST(same_bytes_as_printf)
{
    mismatches = 0;
    static const double special[] = {0.0, -0.0, 1.0, 1e-4, 1e-5, 0.5, 0.1, 0.01, 0.001,
                                     0.9999999995, 0.99999999949999, 0.999999999500001,
                                     1e-300, 5e-324, 2.0, -0.5, INFINITY, NAN};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++)
        check_one(special[i]);
    for (int i = 0; i < 1000000; i++) /* what a model writes: sigmoids of margins */
        check_one(1.0 / (1.0 + exp(-(uniform() - 0.5) * 40)));
    for (int i = 0; i < 300000; i++) /* uniform, and log-uniform over [1e-6, 1] */
        check_one(uniform()), check_one(pow(10, -6 * uniform()));
    for (int k = 0; k <= 5; k++) { /* around each power of ten */
        double t = pow(10, -k);
        double p = t;
        for (int j = 0; j < 2000; j++, p = nextafter(p, 0))
            check_one(p);
        p = t;
        for (int j = 0; j < 2000; j++, p = nextafter(p, 2))
            check_one(p);
    }
    for (int i = 0; i < 200000; i++) { /* near ties: nine digits and a half, +- a few ulps */
        int e = 1 + (int)(next_u64() % 4);
        double base = (double)(100000000 + next_u64() % 900000000) + 0.5;
        double p = base / pow(10, 8 + e);
        for (int j = 0; j < 3; j++, p = nextafter(p, 0))
            check_one(p);
        check_one(nextafter(base / pow(10, 8 + e), 1));
    }
    ck_assert_int_eq(mismatches, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("predict");
    TCase *tc = tcase_create("prediction_line");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, same_bytes_as_printf);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
