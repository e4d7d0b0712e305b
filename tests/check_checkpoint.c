/* check_checkpoint.c - checkpoints round-trip exactly, detect damage, fall
 * back to an older one, rotate, and make a learner resume bit-identically. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "learner/learner_impl.h"
#include "streamlr/checkpoint.h"
#include "testutil.h"

static void random_example(test_rng *r, slr_example *ex, unsigned bits)
{
    slr_example_reset(ex);
    int nf = 1 + (int)test_rng_below(r, 10);
    for (int k = 0; k < nf; k++) {
        uint64_t j = (uint64_t)floor(pow((double)(1u << bits), test_rng_unif(r))) - 1;
        slr_example_add_hashed(ex, j, test_rng_unif(r) < 0.5 ? 1.0 : test_rng_normal(r), NULL);
    }
    slr_example_finish(ex, NULL);
    ex->label = test_rng_unif(r) < 0.3;
    ex->has_label = true;
}

static slr_learner *make_learner(slr_schedule sched, double l1, double l2, unsigned bits)
{
    slr_learner_config cfg;
    slr_learner_config_defaults(&cfg);
    slr_hashing_init(&cfg.hashing, bits);
    slr_hashing_add_quadratic(&cfg.hashing, "ab", NULL);
    cfg.schedule = sched;
    cfg.eta = 0.3;
    cfg.l1 = l1;
    cfg.l2 = l2;
    cfg.tg_period = 3;
    cfg.tg_threshold = 0.7;
    slr_learner *l;
    ck_assert_int_eq(slr_learner_create(&l, &cfg, NULL), SLR_OK);
    return l;
}

static void train(slr_learner *l, test_rng *r, int steps)
{
    slr_example ex;
    slr_example_init(&ex, &slr_learner_config_of(l)->hashing);
    for (int i = 0; i < steps; i++) {
        random_example(r, &ex, slr_learner_config_of(l)->hashing.bits);
        slr_learner_learn(l, &ex, NULL);
    }
    slr_example_free(&ex);
}

/* Bitwise equality of the complete learner state. */
static void assert_same_state(const slr_learner *a, const slr_learner *b)
{
    ck_assert_uint_eq(a->n_slots, b->n_slots);
    ck_assert_uint_eq(a->step, b->step);
    ck_assert_uint_eq(a->epoch, b->epoch);
    ck_assert(!memcmp(&a->cfg, &b->cfg, sizeof a->cfg));
    for (uint64_t j = 0; j <= a->n_slots; j++) {
        const slr_slot *x = &a->slots[j], *y = &b->slots[j];
        ck_assert_msg(!memcmp(&x->w, &y->w, 8) && !memcmp(&x->g2, &y->g2, 8),
                      "slot %llu differs", (unsigned long long)j);
        ck_assert_int_eq(!a->stamps, !b->stamps);
        if (a->stamps && (x->w != 0.0 || x->g2 != 0.0)) /* the bias too: --decay stamps it */
            ck_assert_uint_eq(a->stamps[j], b->stamps[j]);
    }
    ck_assert_int_eq(a->use_history, b->use_history);
    if (a->use_history) {
        ck_assert_uint_eq(a->hist.base, b->hist.base);
        ck_assert_uint_eq(a->hist.len, b->hist.len);
        ck_assert(!memcmp(a->hist.log_p, b->hist.log_p, a->hist.len * 8));
        ck_assert(!memcmp(a->hist.c, b->hist.c, a->hist.len * 8));
    }
}

static const slr_schedule schedules[] = {SLR_SCHEDULE_CONSTANT, SLR_SCHEDULE_INVPOW,
                                         SLR_SCHEDULE_ADAGRAD};

/* FTRL-Proximal with L1 and L2 (its own z and n in the slots), or AdaGrad
 * without a penalty; either forgetting with --decay D (1: not). */
static slr_learner *make_other_learner(bool ftrl, double decay, unsigned bits)
{
    slr_learner_config cfg;
    slr_learner_config_defaults(&cfg);
    slr_hashing_init(&cfg.hashing, bits);
    slr_hashing_add_quadratic(&cfg.hashing, "ab", NULL);
    cfg.decay = decay;
    if (ftrl) {
        cfg.optimizer = SLR_OPTIMIZER_FTRL;
        cfg.ftrl_alpha = 0.1;
        cfg.ftrl_beta = 0.5;
        cfg.l1 = 0.5;
        cfg.l2 = 1e-2;
    }
    slr_learner *l;
    ck_assert_int_eq(slr_learner_create(&l, &cfg, NULL), SLR_OK);
    return l;
}

/* Save mid-stream, load, continue both: the two learners stay identical
 * (each schedule, FTRL, and --decay under FTRL and AdaGrad). */
START_TEST(resume_is_bit_identical)
{
    char *dir = test_mkdtemp("ckpt");
    char path[4200];
    snprintf(path, sizeof path, "%s/model.slr", dir);
    slr_learner *a = _i < 3    ? make_learner(schedules[_i], 1e-3, 1e-3, 10)
                     : _i == 3 ? make_other_learner(true, 1.0, 10)
                               : make_other_learner(_i == 4, 0.999, 10);
    test_rng r = {.s = 77};
    train(a, &r, 5000); /* past one history rebase under invpow */

    slr_job_state st;
    slr_job_state_init(&st);
    const char *files[] = {"a.vw", "b.vw"};
    ck_assert_int_eq(slr_job_state_set_files(&st, files, 2, NULL), SLR_OK);
    st.file = (slr_file_position){1, 12345, 678, 9000};
    st.metrics.examples = 5000;
    st.metrics.loss = 1234.5678901234567;
    st.format = strdup("vw");
    slr_error err;
    ck_assert_int_eq(slr_checkpoint_write(path, a, &st, &err), SLR_OK);

    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);

    slr_learner *b;
    slr_job_state st2;
    slr_job_state_init(&st2);
    ck_assert_msg(slr_checkpoint_read(path, &b, &st2, &err) == SLR_OK, "%s", err.msg);
    assert_same_state(a, b);
    ck_assert_uint_eq(st2.n_files, 2);
    ck_assert_str_eq(st2.files[1], "b.vw");
    ck_assert_str_eq(st2.format, "vw");
    ck_assert_int_eq(st2.source, SLR_SOURCE_FILES);
    ck_assert_uint_eq(st2.file.offset, 12345);
    ck_assert_uint_eq(st2.file.line, 678);
    ck_assert_uint_eq(st2.file.records, 9000);
    ck_assert(st2.metrics.loss == st.metrics.loss);

    test_rng r2 = r;
    train(a, &r, 3000);
    train(b, &r2, 3000);
    assert_same_state(a, b);
    slr_learner_sync(a);
    slr_learner_sync(b);
    assert_same_state(a, b);

    slr_learner_destroy(a);
    slr_learner_destroy(b);
    slr_job_state_free(&st);
    slr_job_state_free(&st2);
    test_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(kafka_offsets_round_trip)
{
    char *dir = test_mkdtemp("ckpt");
    char path[4200];
    snprintf(path, sizeof path, "%s/k.slr", dir);
    slr_learner *a = make_learner(SLR_SCHEDULE_ADAGRAD, 0, 0, 6);
    slr_job_state st, st2;
    slr_job_state_init(&st);
    slr_job_state_init(&st2);
    ck_assert_int_eq(slr_job_state_set_kafka_offset(&st, "clicks", 0, 42, NULL), SLR_OK);
    ck_assert_int_eq(slr_job_state_set_kafka_offset(&st, "clicks", 3, 7, NULL), SLR_OK);
    ck_assert_int_eq(slr_job_state_set_kafka_offset(&st, "clicks", 0, 43, NULL), SLR_OK);
    st.format = strdup("msgpack");
    ck_assert_int_eq(slr_checkpoint_write(path, a, &st, NULL), SLR_OK);
    slr_learner *b;
    ck_assert_int_eq(slr_checkpoint_read(path, &b, &st2, NULL), SLR_OK);
    ck_assert_int_eq(st2.source, SLR_SOURCE_KAFKA);
    ck_assert_uint_eq(st2.n_kafka, 2);
    ck_assert_int_eq(slr_job_state_kafka_offset(&st2, "clicks", 0), 43);
    ck_assert_int_eq(slr_job_state_kafka_offset(&st2, "clicks", 3), 7);
    ck_assert_int_eq(slr_job_state_kafka_offset(&st2, "clicks", 1), -1);
    slr_learner_destroy(a);
    slr_learner_destroy(b);
    slr_job_state_free(&st);
    slr_job_state_free(&st2);
    test_rmtree(dir);
    free(dir);
}
END_TEST

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(*len);
    ck_assert_uint_eq(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

static void write_all(const char *path, const char *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

/* Any single bit flip or truncation is caught by the checksum. */
START_TEST(damage_is_detected)
{
    char *dir = test_mkdtemp("ckpt");
    char path[4200], bad[4200];
    snprintf(path, sizeof path, "%s/m.slr", dir);
    snprintf(bad, sizeof bad, "%s/bad.slr", dir);
    slr_learner *a = make_learner(SLR_SCHEDULE_INVPOW, 1e-3, 1e-3, 8);
    test_rng r = {.s = 3};
    train(a, &r, 500);
    slr_job_state st;
    slr_job_state_init(&st);
    st.format = strdup("vw");
    ck_assert_int_eq(slr_checkpoint_write(path, a, &st, NULL), SLR_OK);
    size_t len;
    char *good = read_all(path, &len);
    char *copy = malloc(len);
    for (int trial = 0; trial < 300; trial++) {
        memcpy(copy, good, len);
        size_t n = len;
        if (trial % 3 == 0)
            n = test_rng_below(&r, len); /* truncated */
        else
            copy[test_rng_below(&r, len)] ^= (char)(1u << test_rng_below(&r, 8));
        write_all(bad, copy, n);
        slr_learner *b = NULL;
        slr_job_state st2;
        slr_job_state_init(&st2);
        slr_error err;
        slr_status rc = slr_checkpoint_read(bad, &b, &st2, &err);
        ck_assert_msg(rc == SLR_ERR_CORRUPT, "trial %d: damage not detected (%d)", trial, rc);
        ck_assert_ptr_null(b);
        ck_assert_ptr_nonnull(strstr(err.msg, "bad.slr"));
        slr_job_state_free(&st2);
    }
    free(copy);
    free(good);
    slr_learner_destroy(a);
    slr_job_state_free(&st);
    test_rmtree(dir);
    free(dir);
}
END_TEST

/* A checkpoint with a valid checksum but a state the learner cannot use
 * (what a buggy or hostile writer could produce) is corrupt, not loaded. */
START_TEST(implausible_values_are_corrupt)
{
    char *dir = test_mkdtemp("ckpt");
    char path[4200];
    snprintf(path, sizeof path, "%s/m.slr", dir);
    for (int what = 0; what < 6; what++) {
        slr_learner *a = make_learner(SLR_SCHEDULE_INVPOW, 1e-3, 1e-3, 6);
        test_rng r = {.s = 11};
        train(a, &r, 50);
        slr_job_state st;
        slr_job_state_init(&st);
        st.format = strdup("vw");
        uint64_t j = 0;
        while (a->slots[j].w == 0.0)
            j++;
        switch (what) {
        case 0: a->slots[j].w = 2 * SLR_MAX_ABS_WEIGHT; break;
        case 1: a->slots[j].w = NAN; break;
        case 2: a->slots[a->n_slots].w = -INFINITY; break; /* the bias */
        case 3: st.metrics.loss = NAN; break;
        case 4: st.metrics.weight = -1; break;
        case 5: a->hist.c[a->hist.len - 1] = a->hist.c[a->hist.len - 2] - 1; break; /* not a running sum */
        }
        ck_assert_int_eq(slr_checkpoint_write(path, a, &st, NULL), SLR_OK);
        slr_learner *b = NULL;
        slr_job_state st2;
        slr_job_state_init(&st2);
        slr_error err;
        ck_assert_msg(slr_checkpoint_read(path, &b, &st2, &err) == SLR_ERR_CORRUPT, "case %d loaded", what);
        ck_assert_ptr_null(b);
        slr_learner_destroy(a);
        slr_job_state_free(&st);
    }
    test_rmtree(dir);
    free(dir);
}
END_TEST

typedef struct warnings {
    int n;
    char last[1024];
} warnings;

static void collect_warning(void *ctx, const char *msg)
{
    warnings *w = ctx;
    w->n++;
    snprintf(w->last, sizeof w->last, "%s", msg);
}

static int count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += !strncmp(de->d_name, prefix, strlen(prefix));
    closedir(d);
    return n;
}

START_TEST(directory_rotates_and_falls_back)
{
    char *dir = test_mkdtemp("ckptdir");
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/checkpoints", dir); /* created on first save */
    slr_learner *a = make_learner(SLR_SCHEDULE_ADAGRAD, 1e-4, 1e-4, 8);
    test_rng r = {.s = 11};
    slr_job_state st;
    slr_job_state_init(&st);
    st.format = strdup("vw");
    char written[4096];
    uint64_t steps_at[6];
    char stale[4300], other[4300];
    snprintf(stale, sizeof stale, "%s/.ckpt-00000000000000000003.slr.tmp.4242.17", sub);
    snprintf(other, sizeof other, "%s/.keep-me", sub);
    for (int i = 0; i < 6; i++) {
        train(a, &r, 100);
        steps_at[i] = slr_learner_steps(a);
        if (i == 3) /* what a writer killed mid-write leaves */
            write_all(stale, "half a checkpoint", 17);
        ck_assert_int_eq(slr_checkpoint_dir_save(sub, a, &st, 3, written, NULL), SLR_OK);
        ck_assert_uint_eq(st.sequence, (uint64_t)i + 1);
    }
    ck_assert_int_eq(count_files(sub, "ckpt-"), 3);
    ck_assert_int_eq(count_files(sub, "."), 2); /* only . and ..: no temp file left */


    /* newest intact: loaded, no warning */
    slr_learner *b;
    slr_job_state st2;
    slr_job_state_init(&st2);
    warnings w = {0};
    char loaded[4096];
    ck_assert_int_eq(slr_checkpoint_dir_load(sub, &b, &st2, loaded, collect_warning, &w, NULL),
                     SLR_OK);
    ck_assert_int_eq(w.n, 0);
    ck_assert_str_eq(loaded, written);
    ck_assert_uint_eq(slr_learner_steps(b), steps_at[5]);
    slr_learner_destroy(b);

    /* newest damaged: fall back to the previous one, with a warning */
    size_t len;
    char *buf = read_all(written, &len);
    write_all(written, buf, len / 2);
    free(buf);
    ck_assert_int_eq(slr_checkpoint_dir_load(sub, &b, &st2, loaded, collect_warning, &w, NULL),
                     SLR_OK);
    ck_assert_int_eq(w.n, 1);
    ck_assert_ptr_nonnull(strstr(w.last, "falling back"));
    ck_assert_uint_eq(slr_learner_steps(b), steps_at[4]);
    ck_assert_uint_eq(st2.sequence, 5);
    slr_learner_destroy(b);

    /* the next save continues the numbering past the damaged one */
    ck_assert_int_eq(slr_checkpoint_dir_save(sub, a, &st2, 3, written, NULL), SLR_OK);
    ck_assert_uint_eq(st2.sequence, 7);

    /* all damaged: a clear error, nothing deleted */
    DIR *d = opendir(sub);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "ckpt-", 5))
            continue;
        char p[8400];
        snprintf(p, sizeof p, "%s/%s", sub, de->d_name);
        write_all(p, "STREAMLR", 8);
    }
    closedir(d);
    slr_error err;
    w.n = 0;
    ck_assert_int_eq(slr_checkpoint_dir_load(sub, &b, &st2, loaded, collect_warning, &w, &err),
                     SLR_ERR_CORRUPT);
    ck_assert_int_eq(w.n, 3);
    ck_assert_ptr_nonnull(strstr(err.msg, "none of the 3 checkpoints"));
    ck_assert_int_eq(count_files(sub, "ckpt-"), 3);

    /* an empty directory is "not found", not an error */
    char empty[4200];
    snprintf(empty, sizeof empty, "%s/empty", dir);
    mkdir(empty, 0700);
    ck_assert_int_eq(slr_checkpoint_dir_load(empty, &b, &st2, NULL, NULL, NULL, NULL),
                     SLR_ERR_NOT_FOUND);

    write_all(other, "", 0); /* a hidden file that is not ours: left alone */
    ck_assert_int_eq(slr_checkpoint_dir_save(sub, a, &st, 3, written, NULL), SLR_OK);
    ck_assert_int_eq(count_files(sub, ".keep-me"), 1);

    slr_learner_destroy(a);
    slr_job_state_free(&st);
    slr_job_state_free(&st2);
    test_rmtree(dir);
    free(dir);
}
END_TEST

static char *read_text(const char *path)
{
    size_t n;
    char *data = read_all(path, &n), *text = malloc(n + 1);
    memcpy(text, data, n);
    text[n] = '\0';
    free(data);
    return text;
}

static atomic_int thread_warnings; /* the follower's thread warns */

static void count_warning(void *ctx, const char *msg)
{
    (void)ctx;
    (void)msg;
    atomic_fetch_add(&thread_warnings, 1);
}

static double score_of(slr_learner *l, test_rng *r)
{
    slr_example ex;
    slr_example_init(&ex, &slr_learner_config_of(l)->hashing);
    random_example(r, &ex, slr_learner_config_of(l)->hashing.bits);
    double p = slr_learner_predict(l, &ex);
    slr_example_free(&ex);
    return p;
}

/* A follower with its loader thread (predict --follow): a newer checkpoint
 * is read on the thread but never put in use behind the scorer's back --
 * the model stays the same object until slr_follower_refresh, which then
 * switches to exactly that checkpoint; a damaged newer one is reported
 * (from the thread) and the model in use kept. */
/* The highest nice of this process's threads other than the caller: 19
 * as soon as one has it (the loader sets its own as it starts; until then
 * it has the caller's, e.g. 10 under `nice`), else the highest seen within
 * 5 s. */
static int loader_nice(void)
{
    int best = 0;
    for (int tries = 0; tries < 500 && best < 19; tries++) {
        DIR *d = opendir("/proc/self/task");
        if (!d)
            return 0;
        struct dirent *e;
        char me[32];
        snprintf(me, sizeof me, "%ld", (long)syscall(SYS_gettid));
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.' || !strcmp(e->d_name, me))
                continue;
            char path[300], buf[1024];
            snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
            FILE *f = fopen(path, "r");
            if (!f)
                continue;
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[n] = '\0';
            /* after "(comm)": state is field 3, nice field 19 */
            const char *p = strrchr(buf, ')');
            int field = 2, nice = 0;
            for (; p && *p && field < 19; p++)
                if (*p == ' ')
                    field++;
            if (p && sscanf(p, "%d", &nice) == 1 && nice > best)
                best = nice;
        }
        closedir(d);
        if (best < 19)
            usleep(10000);
    }
    return best;
}

START_TEST(follower_switches_only_on_refresh)
{
    char *dir = test_mkdtemp("follow");
    char sub[4200], written[4096], second[4096];
    snprintf(sub, sizeof sub, "%s/ckpt", dir);
    slr_learner *a = make_learner(SLR_SCHEDULE_ADAGRAD, 0, 0, 10);
    test_rng r = {.s = 5};
    slr_job_state st;
    slr_job_state_init(&st);
    st.format = strdup("vw");
    train(a, &r, 300);
    ck_assert_int_eq(slr_checkpoint_dir_save(sub, a, &st, 10, written, NULL), SLR_OK);
    slr_follower *f;
    slr_error err;
    ck_assert_int_eq(slr_follower_open(&f, sub, count_warning, NULL, &err), SLR_OK);
    slr_learner *first = slr_follower_learner(f);
    ck_assert_int_eq(slr_follower_start(f, 0.01, &err), SLR_OK);
    ck_assert_int_eq(slr_follower_start(f, 0.01, &err), SLR_OK); /* again: nothing */
    ck_assert(!slr_follower_refresh(f));
    ck_assert_int_eq(loader_nice(), 19); /* background work, last in line for a core */

    train(a, &r, 300); /* checkpoint 2, scoring differently */
    ck_assert_int_eq(slr_checkpoint_dir_save(sub, a, &st, 10, second, NULL), SLR_OK);
    slr_learner *want;
    slr_job_state wst;
    slr_job_state_init(&wst);
    ck_assert_int_eq(slr_checkpoint_read(second, &want, &wst, NULL), SLR_OK);
    test_rng q = {.s = 9}, q2 = {.s = 9};
    ck_assert(score_of(first, &q) != score_of(want, &q2));

    bool switched = false;
    for (int i = 0; i < 1000 && !switched; i++) { /* at most 10 s */
        ck_assert_ptr_eq(slr_follower_learner(f), first);
        ck_assert_uint_eq(slr_follower_state(f)->sequence, 1);
        ck_assert_str_eq(slr_follower_path(f), written);
        if (!(switched = slr_follower_refresh(f)))
            usleep(10000);
    }
    ck_assert_msg(switched, "checkpoint 2 not taken within 10 s");
    ck_assert_uint_eq(slr_follower_state(f)->sequence, 2);
    ck_assert_str_eq(slr_follower_path(f), second);
    for (int i = 0; i < 20; i++) { /* bit for bit checkpoint 2's scores */
        test_rng x = {.s = 100 + (uint64_t)i}, y = x;
        double got = score_of(slr_follower_learner(f), &x), expected = score_of(want, &y);
        ck_assert(!memcmp(&got, &expected, sizeof got));
    }
    ck_assert(!slr_follower_refresh(f)); /* nothing newer */

    /* a damaged checkpoint 3: warned about once, never switched to */
    char third[4300];
    snprintf(third, sizeof third, "%s/ckpt-%020d.slr", sub, 3);
    write_all(third, "not a checkpoint", 16);
    slr_learner *kept = slr_follower_learner(f);
    for (int i = 0; i < 500 && atomic_load(&thread_warnings) == 0; i++)
        usleep(10000);
    ck_assert_int_eq(atomic_load(&thread_warnings), 1);
    ck_assert(!slr_follower_refresh(f));
    ck_assert_ptr_eq(slr_follower_learner(f), kept);
    ck_assert_uint_eq(slr_follower_state(f)->sequence, 2);

    slr_follower_close(f);
    slr_learner_destroy(want);
    slr_job_state_free(&wst);
    slr_learner_destroy(a);
    slr_job_state_free(&st);
    test_rmtree(dir);
    free(dir);
}
END_TEST

/* Checkpoints and their temporary files are private (0600, whatever the
 * umask), the directory 0700, and a symlink planted at the temporary name or
 * at the target is never written through. */
START_TEST(files_are_private_and_never_follow_symlinks)
{
    umask(0); /* a 0666 create would show as 0666 */
    char *dir = test_mkdtemp("ckptsec");
    char path[4200], victim[4200], link[4300], sub[4200];
    snprintf(path, sizeof path, "%s/m.slr", dir);
    snprintf(victim, sizeof victim, "%s/victim", dir);
    write_all(victim, "precious\n", 9);
    slr_learner *a = make_learner(SLR_SCHEDULE_ADAGRAD, 0, 0, 6);
    test_rng r = {.s = 5};
    train(a, &r, 50);
    slr_job_state st;
    slr_job_state_init(&st);
    st.format = strdup("vw");

    /* the temporary name is .<name>.tmp.<pid>.<time + attempt>: plant symlinks
     * on every name the next few seconds can produce */
    long now = (long)time(NULL);
    for (long t = now - 1; t <= now + 6; t++) {
        snprintf(link, sizeof link, "%s/.m.slr.tmp.%ld.%ld", dir, (long)getpid(), t);
        ck_assert_int_eq(symlink(victim, link), 0);
    }
    slr_error err;
    ck_assert_msg(slr_checkpoint_write(path, a, &st, &err) == SLR_OK, "%s", err.msg);
    char *text = read_text(victim);
    ck_assert_str_eq(text, "precious\n");
    free(text);
    struct stat sb;
    ck_assert_int_eq(lstat(path, &sb), 0);
    ck_assert(S_ISREG(sb.st_mode));
    ck_assert_uint_eq(sb.st_mode & 07777, 0600);
    for (long t = now - 1; t <= now + 6; t++) { /* untouched, still links */
        snprintf(link, sizeof link, "%s/.m.slr.tmp.%ld.%ld", dir, (long)getpid(), t);
        ck_assert_int_eq(lstat(link, &sb), 0);
        ck_assert(S_ISLNK(sb.st_mode));
        unlink(link);
    }

    /* a symlink at the target is replaced, not followed */
    snprintf(link, sizeof link, "%s/linked.slr", dir);
    ck_assert_int_eq(symlink(victim, link), 0);
    ck_assert_int_eq(slr_checkpoint_write(link, a, &st, &err), SLR_OK);
    ck_assert_int_eq(lstat(link, &sb), 0);
    ck_assert(S_ISREG(sb.st_mode));
    text = read_text(victim);
    ck_assert_str_eq(text, "precious\n");
    free(text);

    /* a checkpoint directory is created 0700, its files 0600 */
    snprintf(sub, sizeof sub, "%s/ck", dir);
    ck_assert_int_eq(slr_checkpoint_dir_save(sub, a, &st, 3, path, &err), SLR_OK);
    ck_assert_int_eq(stat(sub, &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 07777, 0700);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 07777, 0600);

    slr_learner_destroy(a);
    slr_job_state_free(&st);
    test_rmtree(dir);
    free(dir);
}
END_TEST

/* A failed write leaves the previous checkpoint intact. */
START_TEST(failed_write_keeps_previous)
{
    /* root ignores directory permissions, so the failure is a parent that is a file */
    char *dir = test_mkdtemp("ckptfail");
    char path[4200];
    snprintf(path, sizeof path, "%s/m.slr", dir);
    slr_learner *a = make_learner(SLR_SCHEDULE_CONSTANT, 0, 1e-3, 6);
    slr_job_state st;
    slr_job_state_init(&st);
    st.format = strdup("vw");
    ck_assert_int_eq(slr_checkpoint_write(path, a, &st, NULL), SLR_OK);
    char notadir[4300];
    snprintf(notadir, sizeof notadir, "%s/m.slr/x.slr", dir);
    slr_error err;
    ck_assert_int_eq(slr_checkpoint_write(notadir, a, &st, &err), SLR_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "cannot create"));
    slr_learner *b;
    slr_job_state st2;
    slr_job_state_init(&st2);
    ck_assert_int_eq(slr_checkpoint_read(path, &b, &st2, NULL), SLR_OK);
    slr_learner_destroy(b);
    slr_learner_destroy(a);
    slr_job_state_free(&st);
    slr_job_state_free(&st2);
    test_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------ the bytes stay the same */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    ck_assert(b && fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Where the "writer" string's value starts (its fixstr header), and its size. */
static size_t writer_at(const char *b, size_t len, size_t *size)
{
    static const char key[] = "\xa6writer";
    for (size_t i = 0; i + sizeof key < len; i++)
        if (!memcmp(b + i, key, sizeof key - 1)) {
            size_t at = i + sizeof key - 1;
            ck_assert_int_eq((unsigned char)b[at] & 0xe0, 0xa0);
            *size = 1 + ((unsigned char)b[at] & 0x1f);
            return at;
        }
    ck_abort_msg("no writer field");
    return 0;
}

/* Read `path` and write it again to `out`: the same bytes but for the
 * writer's version string and so the checksum, or the byte that differs. */
static void rewrite_matches(const char *path, const char *out, const char *golden_path)
{
    slr_learner *l;
    slr_job_state st;
    slr_error err;
    slr_job_state_init(&st);
    ck_assert_msg(slr_checkpoint_read(path, &l, &st, &err) == SLR_OK, "%s", err.msg);
    ck_assert_int_eq(slr_checkpoint_write(out, l, &st, &err), SLR_OK);
    if (getenv("STREAMLR_WRITE_GOLDEN")) { /* to make a new format's files: see below */
        char cmd[9000];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", out, golden_path);
        ck_assert_int_eq(system(cmd), 0);
    }
    size_t la, lb, wa, wb;
    char *a = slurp(golden_path, &la), *b = slurp(out, &lb);
    size_t at = writer_at(a, la, &wa);
    ck_assert_uint_eq(writer_at(b, lb, &wb), at);
    ck_assert_uint_eq(la - wa, lb - wb);
    ck_assert_msg(!memcmp(a, b, at), "%s: bytes before the writer differ", golden_path);
    size_t tail = la - at - wa - 8; /* up to the checksum */
    for (size_t i = 0; i < tail; i++)
        ck_assert_msg(a[at + wa + i] == b[at + wb + i], "%s: byte %zu of the body differs",
                      golden_path, at + wa + i);
    free(a);
    free(b);
    slr_learner_destroy(l);
    slr_job_state_free(&st);
}

/* Checkpoints of format 1 written by main 1d4fe0e (an invpow learner with
 * L1, L2 and its penalty history; a constant-rate one with an AUC window and
 * histogram, kept names and a Kafka offset) and by d7ef2a6 (AdaGrad with L1
 * and L2, whose float Sum g^2 format 2 widened to a double), in
 * tests/data/checkpoint-v1-*.slr, and the format 2 files their loading
 * writes (tests/data/checkpoint-v2-*.slr, made by this test with
 * STREAMLR_WRITE_GOLDEN=1 when format 2 was introduced).  Format 1 still
 * loads and is written as format 2; format 2 read and written again gives
 * the same bytes -- but for the writer's version string and so the
 * checksum.  Any change to how the learner, the metrics or the job state are
 * laid out on disk fails here before it ships. */
static const char *const golden[] = {"invpow-history", "metrics-names-kafka", "adagrad-penalty"};

START_TEST(format_bytes_are_stable)
{
    const char *top = getenv("abs_top_srcdir");
    char v1[4096], v2[4096], *dir = test_mkdtemp("golden"), out[4096];
    snprintf(v1, sizeof v1, "%s/tests/data/checkpoint-v1-%s.slr", top ? top : "..", golden[_i]);
    snprintf(v2, sizeof v2, "%s/tests/data/checkpoint-v2-%s.slr", top ? top : "..", golden[_i]);
    snprintf(out, sizeof out, "%s/again.slr", dir);
    rewrite_matches(v1, out, v2);
    rewrite_matches(v2, out, v2);
    test_rmtree(dir);
    free(dir);
}
END_TEST

/* A format 1 AdaGrad checkpoint loads into the weights d7ef2a6 exported
 * from it (tests/data/checkpoint-v1-adagrad-penalty.export: `streamlr
 * export` of that build, every weight caught up through the float Sum g^2
 * of the time): the conversion of the records loses nothing. */
START_TEST(format_v1_loads_the_same_weights)
{
    const char *top = getenv("abs_top_srcdir");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/checkpoint-v1-adagrad-penalty.slr", top ? top : "..");
    slr_learner *l;
    slr_job_state st;
    slr_error err;
    slr_job_state_init(&st);
    ck_assert_msg(slr_checkpoint_read(path, &l, &st, &err) == SLR_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/tests/data/checkpoint-v1-adagrad-penalty.export",
             top ? top : "..");
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    unsigned long long j;
    char text[64];
    int n = 0;
    while (fscanf(f, "%llu %63s", &j, text) == 2) {
        double want = strtod(text, NULL);
        ck_assert_msg(slr_learner_weight(l, j) == want, "weight %llu: %.17g, exported %.17g", j,
                      slr_learner_weight(l, j), want);
        n++;
    }
    fclose(f);
    ck_assert_int_eq(n, 1025); /* every weight of -b 10 and the bias */
    slr_learner_destroy(l);
    slr_job_state_free(&st);
}
END_TEST

static Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, resume_is_bit_identical, 0, 6);
    tcase_add_test(tc, kafka_offsets_round_trip);
    tcase_add_test(tc, damage_is_detected);
    tcase_add_test(tc, implausible_values_are_corrupt);
    tcase_add_test(tc, directory_rotates_and_falls_back);
    tcase_add_test(tc, follower_switches_only_on_refresh);
    tcase_add_test(tc, failed_write_keeps_previous);
    tcase_add_test(tc, files_are_private_and_never_follow_symlinks);
    tcase_add_loop_test(tc, format_bytes_are_stable, 0, 3);
    tcase_add_test(tc, format_v1_loads_the_same_weights);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(checkpoint_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
