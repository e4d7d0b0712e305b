/* check_names.c - --keep-names: every recorded name maps to the index the
 * learner used for it (base features and -q pairs, checked by hashing each
 * name again from scratch), collisions keep every name, the bound holds,
 * and names, the AUC window and histogram survive a checkpoint. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "streamlr/checkpoint.h"
#include "streamlr/decode.h"
#include "streamlr/names.h"
#include "testutil.h"

static const char *NS[] = {"user", "item", "ctx", ""};

/* A random VW-like raw example over a small vocabulary; names point into
 * the static text buffer. */
static char text[64][16];
static void random_raw(test_rng *r, slr_raw_example *raw)
{
    slr_raw_example_reset(raw);
    raw->label = test_rng_below(r, 2);
    raw->has_label = true;
    for (int ns = 0; ns < 4; ns++) {
        int k = 1 + (int)test_rng_below(r, 3);
        for (int i = 0; i < k; i++) {
            int v = (int)test_rng_below(r, 64);
            slr_raw_feature f = {NS[ns], (uint32_t)strlen(NS[ns]), text[v],
                                 (uint32_t)strlen(text[v]), 0,
                                 test_rng_below(r, 5) == 0 ? 0.0 : 1.0 + test_rng_below(r, 3)};
            ck_assert_int_eq(slr_raw_example_push(raw, &f, NULL), SLR_OK);
        }
        if (ns == 2) { /* a pre-hashed feature between namespaces: no name, no pairs */
            slr_raw_feature f = {NULL, 0, NULL, 0, test_rng_next(r), 1.0};
            ck_assert_int_eq(slr_raw_example_push(raw, &f, NULL), SLR_OK);
        }
    }
}

/* The index a name hashes to, from scratch: "ns^name" or "ns^a*ns^b". */
static uint32_t index_of_name(const slr_hashing *h, const char *name)
{
    slr_hashing one;
    slr_hashing_init(&one, h->bits);
    slr_example ex;
    const char *star = strchr(name, '*');
    char a[300], b[300];
    snprintf(a, sizeof a, "%.*s", star ? (int)(star - name) : (int)strlen(name), name);
    snprintf(b, sizeof b, "%s", star ? star + 1 : "");
    const char *parts[2] = {a, b};
    char pair[3] = {0};
    for (int k = 0; k < (star ? 2 : 1); k++) {
        const char *caret = strchr(parts[k], '^');
        pair[k] = caret ? parts[k][0] : ' ';
    }
    if (star)
        ck_assert_int_eq(slr_hashing_add_quadratic(&one, pair, NULL), SLR_OK);
    slr_example_init(&ex, &one);
    for (int k = 0; k < (star ? 2 : 1); k++) {
        const char *caret = strchr(parts[k], '^');
        const char *nm = caret ? caret + 1 : parts[k];
        slr_example_begin_namespace(&ex, caret ? parts[k] : "", caret ? (size_t)(caret - parts[k]) : 0);
        ck_assert_int_eq(slr_example_add(&ex, nm, strlen(nm), 1.0, NULL), SLR_OK);
    }
    ck_assert_int_eq(slr_example_finish(&ex, NULL), SLR_OK);
    ck_assert_uint_eq(ex.n_features, star ? 3 : 1);
    uint32_t idx = ex.features[ex.n_features - 1].index;
    slr_example_free(&ex);
    return idx;
}

START_TEST(recorded_names_match_the_learned_indices)
{
    for (int i = 0; i < 64; i++)
        snprintf(text[i], sizeof text[i], "f%d", i);
    slr_hashing h;
    slr_hashing_init(&h, 18);
    ck_assert_int_eq(slr_hashing_add_quadratic(&h, "ui", NULL), SLR_OK);
    ck_assert_int_eq(slr_hashing_add_quadratic(&h, "cc", NULL), SLR_OK);
    slr_names *names;
    ck_assert_int_eq(slr_names_create(&names, 100000, NULL), SLR_OK);
    slr_raw_example raw;
    slr_raw_example_init(&raw);
    slr_example ex;
    slr_example_init(&ex, &h);
    test_rng r = {.s = 5};
    uint64_t pairs_seen = 0;
    for (int n = 0; n < 300; n++) {
        random_raw(&r, &raw);
        ck_assert_int_eq(slr_example_from_raw(&ex, &raw, NULL), SLR_OK);
        slr_names_record(names, &raw, &ex);
    }
    ck_assert_uint_gt(slr_names_count(names), 200);
    for (uint64_t i = 0; i < slr_names_count(names); i++) {
        slr_name_ref ref = slr_names_at(names, i);
        char name[300];
        snprintf(name, sizeof name, "%.*s", (int)ref.len, ref.name);
        pairs_seen += strchr(name, '*') != NULL;
        ck_assert_msg(index_of_name(&h, name) == ref.index, "%s: recorded %u, hashes to %u", name,
                      ref.index, index_of_name(&h, name));
        /* pairs are only those -q asked for */
        if (strchr(name, '*'))
            ck_assert_msg(!strncmp(name, "user^", 5) || !strncmp(name, "ctx^", 4), "%s", name);
    }
    ck_assert_uint_gt(pairs_seen, 50);
    ck_assert_uint_eq(slr_names_dropped(names), 0);
    slr_example_free(&ex);
    slr_raw_example_free(&raw);
    slr_names_destroy(names);
}
END_TEST

START_TEST(collisions_and_the_bound)
{
    for (int i = 0; i < 64; i++)
        snprintf(text[i], sizeof text[i], "w%d", i);
    slr_hashing h;
    slr_hashing_init(&h, 2); /* 4 weights: everything collides */
    slr_names *names;
    ck_assert_int_eq(slr_names_create(&names, 30, NULL), SLR_OK);
    slr_raw_example raw;
    slr_raw_example_init(&raw);
    slr_example ex;
    slr_example_init(&ex, &h);
    test_rng r = {.s = 9};
    for (int n = 0; n < 200; n++) {
        random_raw(&r, &raw);
        ck_assert_int_eq(slr_example_from_raw(&ex, &raw, NULL), SLR_OK);
        slr_names_record(names, &raw, &ex);
    }
    ck_assert_uint_eq(slr_names_count(names), 30);
    ck_assert_uint_gt(slr_names_dropped(names), 0);
    uint64_t n;
    slr_name_ref *refs = slr_names_by_index(names, &n);
    ck_assert_uint_eq(n, 30);
    int shared = 0;
    for (uint64_t i = 1; i < n; i++) {
        ck_assert_uint_le(refs[i - 1].index, refs[i].index);
        shared += refs[i - 1].index == refs[i].index;
    }
    ck_assert_int_gt(shared, 20); /* 30 names on 4 indices */
    free(refs);
    slr_example_free(&ex);
    slr_raw_example_free(&raw);
    slr_names_destroy(names);
}
END_TEST

START_TEST(names_window_and_histogram_survive_a_checkpoint)
{
    char *dir = test_mkdtemp("names");
    char path[4200];
    snprintf(path, sizeof path, "%s/m.slr", dir);
    slr_learner_config cfg;
    slr_learner_config_defaults(&cfg);
    slr_hashing_init(&cfg.hashing, 10);
    slr_learner *l;
    ck_assert_int_eq(slr_learner_create(&l, &cfg, NULL), SLR_OK);
    slr_job_state st;
    slr_job_state_init(&st);
    ck_assert_int_eq(slr_names_create(&st.names, 500, NULL), SLR_OK);
    ck_assert_int_eq(slr_auc_window_create(&st.window, 64, NULL), SLR_OK);
    ck_assert_int_eq(slr_auc_histogram_create(&st.histogram, NULL), SLR_OK);
    test_rng r = {.s = 3};
    char name[600];
    for (int i = 0; i < 300; i++) {
        int len = snprintf(name, sizeof name, "ns^feature \"%d\"\t\xc3\xa9", i);
        slr_names_add(st.names, test_rng_next(&r), (uint32_t)test_rng_below(&r, 1024), name,
                      (size_t)len);
        double p = test_rng_unif(&r), y = (double)test_rng_below(&r, 2);
        slr_auc_window_add(st.window, p, y, 1.5, 0.25);
        slr_auc_histogram_add(st.histogram, p, y, 1.5);
    }
    memset(name, 'x', sizeof name); /* longer than SLR_NAME_MAX: cut */
    slr_names_add(st.names, 1, 7, name, sizeof name);
    slr_names_set_dropped(st.names, 17);
    slr_error err;
    ck_assert_msg(slr_checkpoint_write(path, l, &st, &err) == SLR_OK, "%s", err.msg);

    slr_learner *l2;
    slr_job_state back;
    slr_job_state_init(&back);
    ck_assert_msg(slr_checkpoint_read(path, &l2, &back, &err) == SLR_OK, "%s", err.msg);
    ck_assert_ptr_nonnull(back.names);
    ck_assert_uint_eq(slr_names_count(back.names), 301);
    ck_assert_uint_eq(slr_names_dropped(back.names), 17);
    ck_assert_uint_eq(slr_names_max(back.names), 500);
    for (uint64_t i = 0; i < 301; i++) {
        slr_name_ref a = slr_names_at(st.names, i), b = slr_names_at(back.names, i);
        ck_assert(a.key == b.key && a.index == b.index && a.len == b.len);
        ck_assert(!memcmp(a.name, b.name, a.len));
    }
    ck_assert_uint_eq(slr_names_at(back.names, 300).len, SLR_NAME_MAX);
    ck_assert_uint_eq(back.window->capacity, 64);
    ck_assert_uint_eq(back.window->size, 64);
    slr_window_stats a, b;
    slr_auc_window_stats(st.window, &a);
    slr_auc_window_stats(back.window, &b);
    ck_assert(a.auc == b.auc && a.loss == b.loss && a.weight == b.weight);
    double auc_a, auc_b, bound_a, bound_b;
    slr_auc_histogram_auc(st.histogram, &auc_a, &bound_a);
    slr_auc_histogram_auc(back.histogram, &auc_b, &bound_b);
    ck_assert(auc_a == auc_b && bound_a == bound_b);
    ck_assert(!memcmp(st.histogram->pos, back.histogram->pos,
                      SLR_AUC_HISTOGRAM_BINS * sizeof(double)));

    /* a model without them reads back without them */
    slr_job_state bare;
    slr_job_state_init(&bare);
    ck_assert_int_eq(slr_checkpoint_write(path, l, &bare, &err), SLR_OK);
    slr_learner_destroy(l2);
    ck_assert_int_eq(slr_checkpoint_read(path, &l2, &back, &err), SLR_OK);
    ck_assert_ptr_null(back.names);
    ck_assert_ptr_null(back.window);
    ck_assert_ptr_null(back.histogram);

    slr_learner_destroy(l);
    slr_learner_destroy(l2);
    slr_job_state_free(&st);
    slr_job_state_free(&back);
    test_rmtree(dir);
    free(dir);
}
END_TEST

static Suite *names_suite(void)
{
    Suite *s = suite_create("names");
    TCase *tc = tcase_create("names");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, recorded_names_match_the_learned_indices);
    tcase_add_test(tc, collisions_and_the_bound);
    tcase_add_test(tc, names_window_and_histogram_survive_a_checkpoint);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(names_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
