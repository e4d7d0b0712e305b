/* check_train.c - replaying files end to end: a replay stopped after any
 * checkpoint and resumed ends bit-identical to an uninterrupted one; bad
 * records are reported with file:line, counted and skipped (or stop the job
 * under --strict); a resume that does not fit its checkpoint is refused. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "job/job.h"
#include "streamlr/checkpoint.h"
#include "streamlr/source.h"
#include "streamlr/train.h"
#include "testutil.h"

static char *tmp;
static char *files[3];
static const int LINES_PER_FILE = 1500;
#define BAD_LINE_FILE 1  /* which file gets bad lines */
#define BAD_LINE_NO 700  /* ...at this line number */

/* VW text with three namespaces, a long tail of feature names, importance
 * weights and tags, labels from a hidden model; a few bad lines. */
static void write_inputs(void)
{
    test_rng r = {.s = 12345};
    for (int f = 0; f < 3; f++) {
        files[f] = malloc(4200);
        snprintf(files[f], 4200, "%s/part%d.vw", tmp, f);
        FILE *out = fopen(files[f], "w");
        ck_assert_ptr_nonnull(out);
        for (int line = 1; line <= LINES_PER_FILE; line++) {
            if (f == BAD_LINE_FILE && (line == BAD_LINE_NO || line == BAD_LINE_NO + 3)) {
                fputs(line == BAD_LINE_NO ? "2 |u user_1\n" : "1 |u user_1:notanumber\n", out);
                continue;
            }
            if (line % 97 == 0) {
                fputs("\n", out); /* blank lines are skipped, not bad */
                continue;
            }
            int user = (int)floor(pow(5000.0, test_rng_unif(&r)));
            int item = (int)floor(pow(300.0, test_rng_unif(&r)));
            double price = test_rng_unif(&r) * 3;
            double z = -1.0 + (user % 7 == 0 ? 1.5 : 0) + (item % 5 == 0 ? -1 : 0.5) + 0.3 * price;
            int y = test_rng_unif(&r) < 1.0 / (1.0 + exp(-z)) ? 1 : -1;
            double w = line % 10 == 0 ? 2.0 : 1.0;
            fprintf(out, "%d %g 'ex%d|user u%d |item i%d cat%d |ctx price:%.4f hour_%d\n", y, w, line,
                    user, item, item % 13, price, line % 24);
        }
        fclose(out);
    }
}

static void setup(void)
{
    tmp = test_mkdtemp("train");
    write_inputs();
}

static void teardown(void)
{
    test_rmtree(tmp);
    free(tmp);
    for (int f = 0; f < 3; f++)
        free(files[f]);
}

typedef struct log_capture {
    int n;
    char text[16384];
    slr_stop_flag *stop_on_bad;
} log_capture;

static void capture(void *ctx, const char *msg)
{
    log_capture *c = ctx;
    c->n++;
    size_t used = strlen(c->text);
    snprintf(c->text + used, sizeof c->text - used, "%s\n", msg);
    if (c->stop_on_bad && strstr(msg, "skipped"))
        *c->stop_on_bad = 1;
}

static void base_options(slr_train_options *opt, const char *ckdir, log_capture *log)
{
    slr_train_options_init(opt);
    slr_hashing_init(&opt->learner.hashing, 16);
    slr_hashing_add_quadratic(&opt->learner.hashing, "ui", NULL);
    opt->learner.l1 = 1e-5;
    opt->learner.l2 = 1e-5;
    opt->format = SLR_FORMAT_VW;
    opt->files = (const char *const *)files;
    opt->n_files = 3;
    opt->checkpoint_dir = ckdir;
    opt->checkpoint_every_examples = 400;
    opt->checkpoint_keep = 1000;
    opt->log = capture;
    opt->log_ctx = log;
    opt->auc_window = 300; /* wraps many times over the 4.5k examples */
}

/* weights of a model as exported: (index, exact bits) in index order */
typedef struct export {
    uint64_t n;
    uint64_t idx[1 << 17];
    double w[1 << 17];
} export;

static int collect(void *ctx, uint64_t index, double w)
{
    export *e = ctx;
    e->idx[e->n] = index;
    e->w[e->n] = w;
    e->n++;
    return 0;
}

static export *export_model(const char *path)
{
    slr_learner *l;
    slr_job_state st;
    slr_job_state_init(&st);
    slr_error err;
    ck_assert_msg(slr_checkpoint_read(path, &l, &st, &err) == SLR_OK, "%s", err.msg);
    export *e = calloc(1, sizeof *e);
    slr_learner_foreach_weight(l, collect, e);
    slr_learner_destroy(l);
    slr_job_state_free(&st);
    return e;
}

static void assert_same_export(const export *a, const export *b, const char *what)
{
    ck_assert_msg(a->n == b->n, "%s: %llu vs %llu nonzero weights", what,
                  (unsigned long long)a->n, (unsigned long long)b->n);
    ck_assert_msg(a->n > 100, "%s: too few weights (%llu) for a meaningful test", what,
                  (unsigned long long)a->n);
    for (uint64_t i = 0; i < a->n; i++)
        ck_assert_msg(a->idx[i] == b->idx[i] && !memcmp(&a->w[i], &b->w[i], 8),
                      "%s: weight %llu differs (%.17g vs %.17g)", what,
                      (unsigned long long)a->idx[i], a->w[i], b->w[i]);
}

static uint64_t list_checkpoints(const char *dir, char names[][64], int max)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < max)
        if (!strncmp(de->d_name, "ckpt-", 5))
            snprintf(names[n++], 64, "%.63s", de->d_name); /* ckpt-<20 digits>.slr */
    closedir(d);
    qsort(names, (size_t)n, 64, (int (*)(const void *, const void *))strcmp);
    return (uint64_t)n;
}

static void copy_file(const char *from, const char *to)
{
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    ck_assert_int_eq(system(cmd), 0);
}

/* The ways to run a replay: decoding on the learning thread or a second
 * one, checkpoints written in place or by a child process. */
static const struct {
    uint32_t threads;
    bool fork;
} modes[] = {{1, false}, {2, false}, {2, true}, {1, true}};

START_TEST(resume_after_any_checkpoint_is_bit_identical)
{
    char full_dir[4200], full_model[4200];
    snprintf(full_dir, sizeof full_dir, "%s/full", tmp);
    snprintf(full_model, sizeof full_model, "%s/full.model", tmp);
    log_capture log = {0};
    slr_train_options opt;
    base_options(&opt, full_dir, &log);
    opt.model_out = full_model;
    opt.threads = modes[_i].threads;
    opt.checkpoint_fork = modes[_i].fork;
    slr_train_result full;
    slr_error err;
    ck_assert_msg(slr_train_files(&opt, &full, &err) == SLR_OK, "%s", err.msg);
    ck_assert_uint_eq(full.metrics.bad, 2);
    ck_assert_uint_gt(full.checkpoints, 8);
    export *want = export_model(full_model);

    char names[64][64];
    uint64_t n = list_checkpoints(full_dir, names, 64);
    ck_assert_uint_gt(n, 8);
    /* resume from every intermediate checkpoint (the last one is the end) */
    for (uint64_t k = 0; k + 1 < n; k++) {
        char dir[4200], from[4300], to[4300], model[4200];
        snprintf(dir, sizeof dir, "%s/resume%llu", tmp, (unsigned long long)k);
        mkdir(dir, 0700);
        snprintf(from, sizeof from, "%s/%s", full_dir, names[k]);
        snprintf(to, sizeof to, "%s/%s", dir, names[k]);
        copy_file(from, to);
        snprintf(model, sizeof model, "%s/resume%llu.model", tmp, (unsigned long long)k);
        log_capture rlog = {0};
        base_options(&opt, dir, &rlog);
        opt.model_out = model;
        opt.resume = true;
        opt.threads = modes[_i].threads;
        opt.checkpoint_fork = modes[_i].fork;
        slr_train_result res;
        ck_assert_msg(slr_train_files(&opt, &res, &err) == SLR_OK, "%s", err.msg);
        ck_assert_ptr_nonnull(strstr(rlog.text, "resuming from"));
        /* the same examples were learned, none twice: identical progressive metrics */
        ck_assert_uint_eq(res.metrics.examples, full.metrics.examples);
        ck_assert(res.metrics.loss == full.metrics.loss);
        /* ...including the window (the last 300 examples, some learned before
         * the checkpoint) and the cumulative AUC histogram */
        ck_assert_uint_eq(res.report.window.examples, 300);
        ck_assert(res.report.window.auc == full.report.window.auc);
        ck_assert(res.report.window.loss == full.report.window.loss);
        ck_assert(res.report.auc == full.report.auc);
        ck_assert(res.report.auc_error_bound == full.report.auc_error_bound);
        ck_assert_uint_eq(res.metrics.bad, full.metrics.bad);
        ck_assert_uint_lt(res.examples, full.examples);
        export *got = export_model(model);
        assert_same_export(want, got, names[k]);
        free(got);
    }
    free(want);
}
END_TEST

/* A stop request (SIGTERM in the CLI) mid-file: final checkpoint, then resume. */
START_TEST(stop_and_resume_mid_file)
{
    char dir[4200], model_a[4200], model_b[4200];
    snprintf(dir, sizeof dir, "%s/stop", tmp);
    snprintf(model_a, sizeof model_a, "%s/a.model", tmp);
    snprintf(model_b, sizeof model_b, "%s/b.model", tmp);
    slr_stop_flag stop = 0;
    log_capture log = {.stop_on_bad = &stop};
    slr_train_options opt;
    base_options(&opt, dir, &log);
    opt.checkpoint_every_examples = 0; /* only the final checkpoint */
    opt.stop = &stop;
    opt.threads = 2; /* the decoder runs ahead; the stop still lands after the bad line */
    slr_train_result res;
    slr_error err;
    ck_assert_msg(slr_train_files(&opt, &res, &err) == SLR_OK, "%s", err.msg);
    ck_assert(res.stopped);
    ck_assert_uint_eq(res.checkpoints, 1);
    /* stopped right after the first bad line, in the middle of file 2 */
    ck_assert_ptr_nonnull(strstr(log.text, "part1.vw:700: "));

    log_capture log2 = {0};
    base_options(&opt, dir, &log2);
    opt.resume = true;
    opt.model_out = model_b;
    ck_assert_msg(slr_train_files(&opt, &res, &err) == SLR_OK, "%s", err.msg);
    ck_assert_ptr_nonnull(strstr(log2.text, "continuing"));
    ck_assert_uint_eq(res.metrics.bad, 2); /* one before the stop, one after */

    char dir2[4200];
    snprintf(dir2, sizeof dir2, "%s/nostop", tmp);
    log_capture log3 = {0};
    base_options(&opt, dir2, &log3);
    opt.model_out = model_a;
    ck_assert_msg(slr_train_files(&opt, &res, &err) == SLR_OK, "%s", err.msg);
    export *a = export_model(model_a), *b = export_model(model_b);
    assert_same_export(a, b, "stop/resume");
    free(a);
    free(b);
}
END_TEST

START_TEST(bad_records_reported_counted_skipped)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/bad", tmp);
    log_capture log = {0};
    slr_train_options opt;
    base_options(&opt, dir, &log);
    slr_train_result res;
    slr_error err;
    ck_assert_int_eq(slr_train_files(&opt, &res, &err), SLR_OK);
    ck_assert_uint_eq(res.metrics.bad, 2);
    ck_assert_ptr_nonnull(strstr(log.text, "part1.vw:700: "));
    ck_assert_ptr_nonnull(strstr(log.text, "part1.vw:703: "));
    /* every other non-blank line was learned */
    int blank = 3 * (LINES_PER_FILE / 97);
    ck_assert_uint_eq(res.metrics.examples, (uint64_t)(3 * LINES_PER_FILE - blank - 2));
    ck_assert_uint_eq(res.records, (uint64_t)(3 * LINES_PER_FILE));

    /* --strict: stop at the first one, with the position */
    char dir2[4200];
    snprintf(dir2, sizeof dir2, "%s/strict", tmp);
    log_capture log2 = {0};
    base_options(&opt, dir2, &log2);
    opt.strict = true;
    ck_assert_int_eq(slr_train_files(&opt, &res, &err), SLR_ERR_BAD_INPUT);
    ck_assert_ptr_nonnull(strstr(err.msg, "part1.vw:700: "));
    ck_assert_ptr_nonnull(strstr(err.msg, "--strict"));
}
END_TEST

START_TEST(resume_refuses_what_does_not_fit)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/fit", tmp);
    log_capture log = {0};
    slr_train_options opt;
    base_options(&opt, dir, &log);
    slr_train_result res;
    slr_error err;
    ck_assert_int_eq(slr_train_files(&opt, &res, &err), SLR_OK);

    base_options(&opt, dir, &log);
    opt.resume = true;
    opt.learner.l1 = 0.5;
    opt.learner_set = SLR_SET_L1;
    ck_assert_int_eq(slr_train_files(&opt, &res, &err), SLR_ERR_MISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "--l1"));

    base_options(&opt, dir, &log);
    opt.resume = true;
    opt.n_files = 2;
    ck_assert_int_eq(slr_train_files(&opt, &res, &err), SLR_ERR_MISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "--data"));

    base_options(&opt, dir, &log);
    opt.resume = true;
    opt.format = SLR_FORMAT_LIBSVM;
    ck_assert_int_eq(slr_train_files(&opt, &res, &err), SLR_ERR_MISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "--format"));
}
END_TEST

/* The newest checkpoint is damaged: resume falls back and still ends identical. */
START_TEST(resume_falls_back_past_a_damaged_checkpoint)
{
    char dir[4200], model_a[4200], model_b[4200];
    snprintf(dir, sizeof dir, "%s/dmg", tmp);
    snprintf(model_a, sizeof model_a, "%s/dmg-a.model", tmp);
    snprintf(model_b, sizeof model_b, "%s/dmg-b.model", tmp);
    slr_stop_flag stop = 0;
    log_capture log = {.stop_on_bad = &stop};
    slr_train_options opt;
    base_options(&opt, dir, &log);
    opt.stop = &stop;
    opt.checkpoint_keep = 3;
    slr_train_result res;
    slr_error err;
    ck_assert_int_eq(slr_train_files(&opt, &res, &err), SLR_OK);
    ck_assert(res.stopped);
    /* truncate the newest (the stop checkpoint) */
    ck_assert_int_eq(truncate(res.checkpoint, 100), 0);

    log_capture log2 = {0};
    base_options(&opt, dir, &log2);
    opt.resume = true;
    opt.model_out = model_b;
    ck_assert_int_eq(slr_train_files(&opt, &res, &err), SLR_OK);
    ck_assert_ptr_nonnull(strstr(log2.text, "falling back"));

    char dir2[4200];
    snprintf(dir2, sizeof dir2, "%s/dmg-ref", tmp);
    log_capture log3 = {0};
    base_options(&opt, dir2, &log3);
    opt.model_out = model_a;
    ck_assert_int_eq(slr_train_files(&opt, &res, &err), SLR_OK);
    export *a = export_model(model_a), *b = export_model(model_b);
    assert_same_export(a, b, "fallback");
    free(a);
    free(b);
}
END_TEST

/* ------------------------------------------------ pipeline and fork modes */

/* The reference: slr_job_apply record by record on one thread -- the loop
 * train_files.c ran before decoding moved ahead of learning -- with
 * checkpoints written in place. */
static slr_status train_by_apply(const slr_train_options *opt, slr_train_result *res, slr_error *err)
{
    slr_job job;
    slr_file_source *src = NULL;
    slr_status st = slr_job_open(&job, opt, err);
    if (st == SLR_OK)
        st = slr_job_state_set_files(&job.state, opt->files, opt->n_files, err);
    if (st == SLR_OK)
        st = slr_file_source_open(&src, opt->files, opt->n_files, true, err);
    while (st == SLR_OK && !slr_file_source_done(src)) {
        const char *buf;
        size_t len, used = 0;
        bool at_end;
        slr_file_source_window(src, &buf, &len, &at_end);
        if (len == 0) {
            if (!at_end)
                st = slr_file_source_fill(src, err);
            else if (!slr_file_source_next_file(src, err, &st) && st == SLR_OK)
                break;
            continue;
        }
        slr_file_position pos;
        slr_file_source_position(src, &pos);
        slr_where where = {slr_file_source_path(src), pos.line, pos.offset, false};
        slr_apply_result r;
        st = slr_job_apply(&job, buf, len, at_end, &where, &used, &r, err);
        if (st != SLR_OK)
            break;
        if (r == SLR_APPLY_NEED_MORE) {
            st = slr_file_source_fill(src, err);
            continue;
        }
        slr_file_source_consume(src, used);
        uint64_t records = job.state.file.records;
        slr_file_source_position(src, &job.state.file);
        job.state.file.records = records;
        if (slr_job_checkpoint_due(&job))
            slr_job_checkpoint(&job, NULL);
    }
    if (st == SLR_OK) {
        uint64_t records = job.state.file.records;
        slr_file_source_position(src, &job.state.file);
        job.state.file.records = records;
        st = slr_job_finish(&job, false, res, err);
    }
    slr_file_source_close(src);
    slr_job_close(&job);
    return st;
}

/* What checkpoint_done saw: the file must already be complete and say what
 * the callback was told. */
typedef struct durable_log {
    int n;
    uint64_t last_sequence;
    bool ok;
} durable_log;

static void on_durable(void *ctx, const char *path, const slr_job_state *st)
{
    durable_log *d = ctx;
    slr_learner *l;
    slr_job_state back;
    slr_job_state_init(&back);
    bool ok = slr_checkpoint_read(path, &l, &back, NULL) == SLR_OK;
    if (ok) {
        ok = back.sequence == st->sequence && back.file.offset == st->file.offset &&
             back.file.records == st->file.records && back.metrics.examples == st->metrics.examples &&
             st->sequence > d->last_sequence;
        slr_learner_destroy(l);
    }
    slr_job_state_free(&back);
    d->ok = d->ok && ok;
    d->last_sequence = st->sequence;
    d->n++;
}

/* Every checkpoint of two runs holds the same thing: position, metrics
 * (bit for bit) and weights; only the time of writing may differ. */
static void assert_same_checkpoints(const char *dir_a, const char *dir_b, const char *what)
{
    char na[64][64], nb[64][64];
    uint64_t n = list_checkpoints(dir_a, na, 64);
    ck_assert_msg(n == list_checkpoints(dir_b, nb, 64), "%s: checkpoint counts differ", what);
    ck_assert_msg(n > 8, "%s: only %llu checkpoints", what, (unsigned long long)n);
    for (uint64_t k = 0; k < n; k++) {
        ck_assert_str_eq(na[k], nb[k]);
        char pa[4300], pb[4300];
        snprintf(pa, sizeof pa, "%s/%s", dir_a, na[k]);
        snprintf(pb, sizeof pb, "%s/%s", dir_b, nb[k]);
        slr_learner *la, *lb;
        slr_job_state sa, sb;
        slr_job_state_init(&sa);
        slr_job_state_init(&sb);
        ck_assert_int_eq(slr_checkpoint_read(pa, &la, &sa, NULL), SLR_OK);
        ck_assert_int_eq(slr_checkpoint_read(pb, &lb, &sb, NULL), SLR_OK);
        ck_assert_msg(sa.sequence == sb.sequence && sa.file.file_index == sb.file.file_index &&
                          sa.file.offset == sb.file.offset && sa.file.line == sb.file.line &&
                          sa.file.records == sb.file.records,
                      "%s: %s records another position", what, na[k]);
        ck_assert_msg(sa.metrics.examples == sb.metrics.examples && sa.metrics.bad == sb.metrics.bad &&
                          !memcmp(&sa.metrics.loss, &sb.metrics.loss, 8) &&
                          !memcmp(&sa.metrics.predicted, &sb.metrics.predicted, 8),
                      "%s: %s records other metrics", what, na[k]);
        ck_assert_uint_eq(slr_learner_steps(la), slr_learner_steps(lb));
        slr_learner_destroy(la);
        slr_learner_destroy(lb);
        slr_job_state_free(&sa);
        slr_job_state_free(&sb);
        export *a = export_model(pa), *b = export_model(pb);
        assert_same_export(a, b, na[k]);
        free(a);
        free(b);
    }
}

static bool has_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    bool found = false;
    struct dirent *de;
    while ((de = readdir(d)))
        found |= strstr(de->d_name, ".tmp.") != NULL;
    closedir(d);
    return found;
}

/* Decoding on a second thread and checkpoints written by a child process
 * change nothing: the same model, the same checkpoints at the same
 * positions, as slr_job_apply record by record; and each checkpoint is
 * complete on disk when checkpoint_done announces it. */
START_TEST(pipeline_and_fork_match_the_reference)
{
    char ref_dir[4200], ref_model[4200], dir[4200], model[4200];
    snprintf(ref_dir, sizeof ref_dir, "%s/ref", tmp);
    snprintf(ref_model, sizeof ref_model, "%s/ref.model", tmp);
    snprintf(dir, sizeof dir, "%s/mode%d", tmp, _i);
    snprintf(model, sizeof model, "%s/mode%d.model", tmp, _i);
    log_capture log = {0}, rlog = {0};
    slr_train_options opt;
    slr_train_result ref, res;
    slr_error err;
    base_options(&opt, ref_dir, &rlog);
    opt.model_out = ref_model;
    ck_assert_msg(train_by_apply(&opt, &ref, &err) == SLR_OK, "%s", err.msg);

    base_options(&opt, dir, &log);
    opt.model_out = model;
    opt.threads = modes[_i].threads;
    opt.checkpoint_fork = modes[_i].fork;
    durable_log d = {.ok = true};
    opt.checkpoint_done = on_durable;
    opt.checkpoint_done_ctx = &d;
    ck_assert_msg(slr_train_files(&opt, &res, &err) == SLR_OK, "%s", err.msg);

    ck_assert_uint_eq(res.metrics.examples, ref.metrics.examples);
    ck_assert(!memcmp(&res.metrics.loss, &ref.metrics.loss, 8));
    ck_assert_uint_eq(res.metrics.bad, ref.metrics.bad);
    ck_assert_uint_eq(res.checkpoints, ref.checkpoints);
    ck_assert_int_eq(d.n, (int)res.checkpoints);
    ck_assert_msg(d.ok, "a checkpoint was announced before it was complete, or out of order");
    ck_assert_msg(res.pause_max > 0.0, "no checkpoint pause was measured");
    ck_assert(!has_temp_files(dir));
    assert_same_checkpoints(ref_dir, dir, "mode");
    export *a = export_model(ref_model), *b = export_model(model);
    assert_same_export(a, b, "final model");
    free(a);
    free(b);
}
END_TEST

/* A checkpoint write that fails (here: the file size limit, as a full disk
 * would) leaves the previous checkpoint intact and no temporary file; the
 * job reports it, keeps training and retries at the next period, and once
 * the disk has room again the checkpoints resume and the model is the one
 * an undisturbed run ends with. */
typedef struct full_disk {
    log_capture log;
    const char *dir;
    int failures;
    uint64_t newest_examples; /* in the newest valid checkpoint at the last failure */
} full_disk;

static void on_full_disk(void *ctx, const char *msg)
{
    full_disk *f = ctx;
    capture(&f->log, msg);
    if (!strstr(msg, "checkpoint failed"))
        return;
    f->failures++;
    ck_assert_ptr_nonnull(strstr(msg, "File too large"));
    ck_assert_ptr_nonnull(strstr(msg, "retries at the next period"));
    slr_learner *l;
    slr_job_state st;
    slr_job_state_init(&st);
    slr_error err;
    ck_assert_msg(slr_checkpoint_dir_load(f->dir, &l, &st, NULL, NULL, NULL, &err) == SLR_OK,
                  "after a failed write: %s", err.msg);
    ck_assert_uint_ge(st.metrics.examples, f->newest_examples); /* never goes back */
    f->newest_examples = st.metrics.examples;
    slr_learner_destroy(l);
    slr_job_state_free(&st);
    DIR *d = opendir(f->dir);
    struct dirent *de;
    while ((de = readdir(d)))
        ck_assert_msg(strstr(de->d_name, ".tmp.") == NULL, "temporary file %s left", de->d_name);
    closedir(d);
    if (f->failures == 3) { /* the disk has room again */
        struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
        ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &unlimited), 0);
    }
}

START_TEST(failed_checkpoint_writes_are_retried)
{
    char dir[4200], ref_dir[4200], model[4200], ref_model[4200];
    snprintf(dir, sizeof dir, "%s/full", tmp);
    snprintf(ref_dir, sizeof ref_dir, "%s/roomy", tmp);
    snprintf(model, sizeof model, "%s/full.model", tmp);
    snprintf(ref_model, sizeof ref_model, "%s/roomy.model", tmp);
    slr_train_options opt;
    slr_train_result res, ref;
    slr_error err;
    log_capture ref_log = {0};
    base_options(&opt, ref_dir, &ref_log);
    opt.model_out = ref_model;
    ck_assert_msg(slr_train_files(&opt, &ref, &err) == SLR_OK, "%s", err.msg);

    /* early checkpoints fit in 40 kB, later ones (more weights) do not */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {40000, RLIM_INFINITY};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    full_disk f = {.dir = dir};
    base_options(&opt, dir, NULL);
    opt.log = on_full_disk;
    opt.log_ctx = &f;
    opt.model_out = model;
    ck_assert_msg(slr_train_files(&opt, &res, &err) == SLR_OK, "%s", err.msg);
    ck_assert_int_eq(f.failures, 3);
    ck_assert_uint_gt(f.newest_examples, 0);                  /* some fitted before */
    ck_assert_uint_eq(res.checkpoints + 3, ref.checkpoints);  /* the rest were written */
    ck_assert_uint_eq(res.metrics.examples, ref.metrics.examples);
    export *a = export_model(model), *b = export_model(ref_model);
    assert_same_export(a, b, "after failed checkpoint writes");
    free(a);
    free(b);
}
END_TEST

/* A child that cannot write its checkpoint says why, leaves no temporary
 * file, and training goes on (here the final checkpoint, written in place,
 * fails the same way and ends the job). */
START_TEST(fork_writer_failure_is_reported)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/efbig", tmp);
    log_capture log = {0};
    slr_train_options opt;
    base_options(&opt, dir, &log);
    opt.threads = 2;
    opt.checkpoint_fork = true;
    /* files over 4 KiB fail with EFBIG, in this process and its children */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {4096, 4096};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    slr_train_result res;
    slr_error err;
    ck_assert_int_eq(slr_train_files(&opt, &res, &err), SLR_ERR_IO);
    ck_assert_msg(strstr(log.text, "checkpoint failed: writing") != NULL, "log: %s", log.text);
    ck_assert_msg(strstr(log.text, "too large") != NULL, "log: %s", log.text);
    ck_assert(!has_temp_files(dir));
    char names[64][64];
    ck_assert_uint_eq(list_checkpoints(dir, names, 64), 0);
}
END_TEST

/* A job stopped from another thread (what an embedder does; the CLI's
 * signal handler is the same store): the flag is a C11 atomic, so this is
 * no data race (the TSan build in .ci/run checks that).  The job waits on
 * an idle FIFO when the flag is set, so it must notice without input. */
typedef struct stopper {
    const char *fifo;
    slr_stop_flag *stop;
    int lines;
} stopper;

static void *stop_later(void *arg)
{
    stopper *s = arg;
    FILE *f = fopen(s->fifo, "w");
    if (!f)
        return NULL;
    for (int i = 0; i < s->lines; i++)
        fprintf(f, "%d |u u%d |i i%d\n", i % 3 ? -1 : 1, i % 97, i % 13);
    fflush(f);
    usleep(200 * 1000); /* the job learns those and waits for more */
    atomic_store(s->stop, 1);
    usleep(200 * 1000);
    fclose(f); /* (the job has stopped by now; EOF would end it too) */
    return NULL;
}

START_TEST(stop_from_another_thread)
{
    char fifo[4200];
    snprintf(fifo, sizeof fifo, "%s/in.fifo", tmp);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    slr_stop_flag stop = 0;
    stopper st = {fifo, &stop, 2000};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, stop_later, &st), 0);
    log_capture log = {0};
    slr_train_options opt;
    base_options(&opt, NULL, &log);
    const char *in[] = {fifo};
    opt.files = in;
    opt.n_files = 1;
    opt.threads = 2;
    opt.stop = &stop;
    slr_train_result res;
    slr_error err;
    ck_assert_msg(slr_train_files(&opt, &res, &err) == SLR_OK, "%s", err.msg);
    pthread_join(t, NULL);
    ck_assert(res.stopped);
    ck_assert_uint_eq(res.examples, 2000);
}
END_TEST

/* Options that survive additions: a caller compiled against an older,
 * shorter slr_train_options (simulated: its size ends before `log`) gets
 * the defaults for the fields it does not know, whatever bytes lie past
 * its struct; a struct never set up by slr_train_options_init is refused. */
START_TEST(options_from_an_older_caller)
{
    slr_train_options opt;
    base_options(&opt, NULL, NULL);
    ck_assert_uint_eq(opt.size, sizeof opt);
    opt.checkpoint_every_examples = 0;
    opt.size = offsetof(slr_train_options, log);
    /* past the caller's struct: garbage that would crash if it were used */
    opt.log = (slr_log_fn)(uintptr_t)1;
    opt.log_ctx = (void *)(uintptr_t)1;
    opt.stop = (slr_stop_flag *)(uintptr_t)1;
    slr_train_result res;
    slr_error err;
    ck_assert_msg(slr_train_files(&opt, &res, &err) == SLR_OK, "%s", err.msg);
    ck_assert_uint_eq(res.records, 3u * LINES_PER_FILE);
    ck_assert(!res.stopped);

    memset(&opt, 0, sizeof opt); /* not initialised */
    ck_assert_int_eq(slr_train_files(&opt, &res, &err), SLR_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "slr_train_options_init"));
}
END_TEST

/* Progress reaches an embedder as numbers (the library draws nothing):
 * VW's rows at examples 1, 2, 4, ... in the table style, status reports
 * ending with a final one in the line style, and one summary that agrees
 * with the result. */
typedef struct progress_log {
    int rows, status, summaries, finals;
    uint64_t row_at[64];
    bool header_first;
    slr_train_summary summary;
    uint64_t summary_examples;
} progress_log;

static void on_progress(void *ctx, const slr_progress *p)
{
    progress_log *g = ctx;
    switch (p->event) {
    case SLR_PROGRESS_ROW:
        if (g->rows == 0)
            g->header_first = p->first_row;
        else
            ck_assert(!p->first_row);
        ck_assert_double_eq(p->prediction, p->prediction); /* not NaN */
        ck_assert_uint_ge(p->totals->examples, p->at_last_row->examples);
        if (g->rows < 64)
            g->row_at[g->rows] = p->totals->examples;
        g->rows++;
        break;
    case SLR_PROGRESS_STATUS:
        g->status++;
        g->finals += p->report->final;
        break;
    case SLR_PROGRESS_SUMMARY:
        g->summaries++;
        g->summary = *p->summary;
        g->summary.checkpoint = NULL; /* points into the job */
        g->summary.dead_letter_sink = NULL;
        g->summary_examples = p->report->totals.examples;
        break;
    case SLR_PROGRESS_KAFKA: ck_abort_msg("no Kafka here"); break;
    }
}

START_TEST(progress_as_numbers)
{
    for (int style = 0; style < 2; style++) {
        progress_log g = {0};
        log_capture log = {0};
        slr_train_options opt;
        base_options(&opt, NULL, &log);
        opt.progress = on_progress;
        opt.progress_ctx = &g;
        opt.progress_style = style ? SLR_PROGRESS_LINE : SLR_PROGRESS_TABLE;
        opt.progress_seconds = 1e-6; /* a status report at every tick */
        slr_train_result res;
        slr_error err;
        ck_assert_msg(slr_train_files(&opt, &res, &err) == SLR_OK, "%s", err.msg);
        ck_assert_int_eq(g.summaries, 1);
        ck_assert_uint_eq(g.summary.examples_this_run, res.examples);
        ck_assert_uint_eq(g.summary_examples, res.metrics.examples);
        ck_assert(!g.summary.stopped);
        ck_assert_double_eq(g.summary.seconds, res.seconds);
        if (style == 0) { /* 4455 examples: rows at 1, 2, 4, ..., 4096 */
            ck_assert_int_eq(g.rows, 13);
            ck_assert(g.header_first);
            for (int i = 0; i < g.rows; i++)
                ck_assert_uint_eq(g.row_at[i], 1ull << i);
            ck_assert_int_eq(g.status, 0);
        } else {
            ck_assert_int_eq(g.rows, 0);
            ck_assert_int_ge(g.status, 2); /* ticks every 1024 records, and the final one */
            ck_assert_int_eq(g.finals, 1);
        }
    }
}
END_TEST

static Suite *train_suite(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("replay");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, resume_after_any_checkpoint_is_bit_identical, 0,
                        (int)(sizeof modes / sizeof modes[0]));
    tcase_add_test(tc, stop_and_resume_mid_file);
    tcase_add_test(tc, bad_records_reported_counted_skipped);
    tcase_add_test(tc, resume_refuses_what_does_not_fit);
    tcase_add_test(tc, resume_falls_back_past_a_damaged_checkpoint);
    tcase_add_test(tc, failed_checkpoint_writes_are_retried);
    tcase_add_test(tc, stop_from_another_thread);
    tcase_add_test(tc, options_from_an_older_caller);
    tcase_add_test(tc, progress_as_numbers);
    suite_add_tcase(s, tc);

    tc = tcase_create("modes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, pipeline_and_fork_match_the_reference, 0,
                        (int)(sizeof modes / sizeof modes[0]));
    tcase_add_test(tc, fork_writer_failure_is_reported);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(train_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
