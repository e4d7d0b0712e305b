/* job.c - the per-record pipeline shared by every source (see job.h). */
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "job.h"
#include "checkpoint/checkpoint_impl.h"
#include "learner/learner_impl.h"
#include "streamlr/predict.h"

/* Bad records beyond this many are counted but not printed one by one. */
#define BAD_REPORT_LIMIT 100

double slr_monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void slr_job_log(slr_job *job, const char *fmt, ...)
{
    if (!job->opt->log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    job->opt->log(job->opt->log_ctx, msg);
}

bool slr_job_start_thread(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    bool ok = pthread_create(thread, NULL, fn, arg) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ok;
}

void *slr_job_prefault_thread(void *learner)
{
    slr_learner_prefault(learner);
    return NULL;
}

static void warn_cb(void *ctx, const char *msg) { slr_job_log(ctx, "%s", msg); }

void slr_train_options_init(slr_train_options *opt)
{
    memset(opt, 0, sizeof *opt);
    slr_learner_config_defaults(&opt->learner);
    opt->format = SLR_FORMAT_VW;
    opt->checkpoint_keep = SLR_CHECKPOINT_KEEP_DEFAULT;
    opt->auc_window = SLR_AUC_WINDOW_DEFAULT;
    opt->metrics_port = -1;
    opt->size = sizeof *opt;
}

slr_status slr_train_options_resolve(const slr_train_options *in, slr_train_options *out,
                                     slr_error *err)
{
    if (in->size < offsetof(slr_train_options, learner) || in->size > sizeof *in)
        return slr_error_set(err, SLR_ERR_ARG,
                             "slr_train_options.size is %zu, not between %zu and %zu: set the "
                             "options up with slr_train_options_init()",
                             in->size, offsetof(slr_train_options, learner), sizeof *in);
    slr_train_options_init(out);
    memcpy(out, in, in->size);
    out->size = sizeof *out;
    return SLR_OK;
}

/* ------------------------------------------------------------ setup */

/* The first explicitly given setting on which `want` and `have` differ. */
static const char *config_mismatch(const slr_learner_config *want, const slr_learner_config *have,
                                   uint32_t set)
{
    if ((set & SLR_SET_BITS) && want->hashing.bits != have->hashing.bits)
        return "-b";
    if ((set & SLR_SET_QUADRATIC) &&
        (want->hashing.n_quadratic != have->hashing.n_quadratic ||
         memcmp(want->hashing.quadratic, have->hashing.quadratic, 2 * want->hashing.n_quadratic)))
        return "-q";
    if ((set & SLR_SET_CUBIC) &&
        (want->hashing.n_cubic != have->hashing.n_cubic ||
         memcmp(want->hashing.cubic, have->hashing.cubic, 3 * want->hashing.n_cubic)))
        return "--cubic";
    if ((set & SLR_SET_NOCONSTANT) && want->noconstant != have->noconstant)
        return "--noconstant";
    if ((set & SLR_SET_IGNORE) &&
        (memcmp(want->hashing.ignored, have->hashing.ignored, sizeof want->hashing.ignored) ||
         memcmp(want->hashing.ignored_linear, have->hashing.ignored_linear,
                sizeof want->hashing.ignored_linear)))
        return "--ignore/--keep/--ignore_linear";
    if ((set & SLR_SET_SCHEDULE) && want->schedule != have->schedule)
        return "--schedule";
    if ((set & SLR_SET_ETA) && want->eta != have->eta)
        return "-l";
    if ((set & SLR_SET_POWER_T) && want->power_t != have->power_t)
        return "--power-t";
    if ((set & SLR_SET_INITIAL_T) && want->initial_t != have->initial_t)
        return "--initial-t";
    if ((set & SLR_SET_ADAGRAD_DELTA) && want->adagrad_delta != have->adagrad_delta)
        return "--adagrad-delta";
    if ((set & SLR_SET_L1) && want->l1 != have->l1)
        return "--l1";
    if ((set & SLR_SET_L2) && want->l2 != have->l2)
        return "--l2";
    if ((set & SLR_SET_TG_PERIOD) && want->tg_period != have->tg_period)
        return "--tg-period";
    if ((set & SLR_SET_TG_THRESHOLD) && want->tg_threshold != have->tg_threshold)
        return "--tg-threshold";
    if ((set & SLR_SET_EAGER) && want->eager != have->eager)
        return "--eager";
    return NULL;
}

/* The event log grew: "train on day 1, then continue with day 2".  A
 * checkpoint taken at the very end of the old list points past its last
 * file; the first new file starts at its beginning. */
static slr_status append_files(slr_job *job, slr_error *err)
{
    slr_job_state *st = &job->state;
    const slr_train_options *opt = job->opt;
    uint32_t old = st->n_files;
    if (st->file.file_index >= old) {
        st->file.file_index = old;
        st->file.offset = 0;
        st->file.line = 1;
    }
    slr_job_log(job, "the --data list goes on after the checkpoint's %u file(s) with %u more, "
                     "from %s", old, opt->n_files - old, opt->files[old]);
    return slr_job_state_set_files(st, opt->files, opt->n_files, err);
}

static slr_status check_resumable(slr_job *job, slr_error *err)
{
    const slr_train_options *opt = job->opt;
    const char *flag = config_mismatch(&opt->learner, slr_learner_config_of(job->learner),
                                       opt->learner_set);
    if (flag)
        return slr_error_set(err, SLR_ERR_MISMATCH,
                             "%s differs from the checkpoint in %s; a resumed run continues with "
                             "the checkpoint's settings (drop %s, or start a new run)",
                             flag, opt->checkpoint_dir, flag);
    const slr_job_state *st = &job->state;
    if (opt->format_auto && st->format) /* the checkpoint's format goes on (the source sets it) */
        job->checkpoint_format_known =
            slr_format_parse(st->format, &job->checkpoint_format, NULL) == SLR_OK;
    else if (st->format && strcmp(st->format, slr_format_name(opt->format)))
        return slr_error_set(err, SLR_ERR_MISMATCH,
                             "the checkpoint in %s was taken reading --format %s, not %s",
                             opt->checkpoint_dir, st->format, slr_format_name(opt->format));
    if (opt->n_files) { /* replay: the same files in the same order, perhaps more after them */
        if (st->source != SLR_SOURCE_FILES)
            return slr_error_set(err, SLR_ERR_MISMATCH,
                                 "the checkpoint in %s was not taken replaying files",
                                 opt->checkpoint_dir);
        bool same = st->n_files <= opt->n_files;
        for (uint32_t i = 0; same && i < st->n_files; i++)
            same = !strcmp(st->files[i], opt->files[i]);
        if (!same)
            return slr_error_set(err, SLR_ERR_MISMATCH,
                                 "the checkpoint in %s was taken replaying %u file(s) starting "
                                 "with %s; pass the same --data list to resume it (more files "
                                 "may follow it)",
                                 opt->checkpoint_dir, st->n_files,
                                 st->n_files ? st->files[0] : "(none)");
        if (opt->n_files > st->n_files)
            return append_files(job, err);
    }
    return SLR_OK;
}

/* The checkpoint says how far the dead-letter sink had got; what it received
 * after that belongs to records the replay is about to apply again. */
static slr_status resume_dead_letters(slr_job *job, slr_error *err)
{
    slr_dead_letter_sink *sink = job->opt->dead_letter;
    const slr_dead_letter_mark *mark = &job->state.dead_letter;
    if (!sink) {
        if (mark->kind)
            slr_job_log(job, "the checkpoint's run kept dead letters in %s; this run has no "
                             "--dead-letter, so rejected records are only counted", mark->name);
        return SLR_OK;
    }
    if (!mark->kind || strcmp(mark->kind, sink->kind) || strcmp(mark->name, sink->name)) {
        if (mark->kind)
            slr_job_log(job, "dead letters now go to %s (the checkpoint's run kept them in %s)",
                        sink->name, mark->name);
        return SLR_OK;
    }
    uint64_t dropped = 0;
    slr_status st = sink->resume(sink, mark->position, &dropped, err);
    if (st == SLR_OK && dropped)
        slr_job_log(job, "%s: dropped the dead letters written after the checkpoint (%llu bytes); "
                         "the replay writes them again", sink->name, (unsigned long long)dropped);
    if (st == SLR_OK && sink->at_least_once)
        slr_job_log(job, "%s: the checkpoint counts %llu dead letters delivered; any sent after "
                         "it stay, and the replay sends them again with the same keys "
                         "(docs/DEAD_LETTERS.md)", sink->name, (unsigned long long)mark->position);
    return st;
}

/* --power-t and --initial-t shape the invpow schedule only.  Under adagrad
 * the per-weight rate is eta / sqrt(delta + sum g^2) -- VW's --adaptive with
 * its default power_t 0.5 -- so a VW user's --power_t 0.5 means exactly that,
 * and any other value (or --initial_t) would be accepted and ignored: refuse
 * it and say what to use instead. */
static slr_status check_schedule_flags(const slr_train_options *opt, slr_schedule schedule,
                                       slr_error *err)
{
    uint32_t set = opt->learner_set;
    if (schedule == SLR_SCHEDULE_INVPOW)
        return SLR_OK;
    const char *name = schedule == SLR_SCHEDULE_ADAGRAD ? "adagrad" : "constant";
    if ((set & SLR_SET_POWER_T) &&
        !(schedule == SLR_SCHEDULE_ADAGRAD && opt->learner.power_t == 0.5))
        return slr_error_set(err, SLR_ERR_ARG,
                             "--power-t %g has no effect under --schedule %s%s; for a global rate "
                             "eta (t0/(t0+t))^p use --schedule invpow --power-t P [--initial-t T0]",
                             opt->learner.power_t, name,
                             schedule == SLR_SCHEDULE_ADAGRAD
                                 ? " (eta/sqrt(delta + sum g^2): VW's --adaptive, whose power_t "
                                   "is 0.5)"
                                 : "");
    if (set & SLR_SET_INITIAL_T)
        return slr_error_set(err, SLR_ERR_ARG,
                             "--initial-t has no effect under --schedule %s; use --schedule invpow "
                             "--initial-t T0 [--power-t P]%s",
                             name,
                             schedule == SLR_SCHEDULE_ADAGRAD
                                 ? ", or --adagrad-delta D to damp adagrad's first steps"
                                 : "");
    return SLR_OK;
}

static slr_status open_learner(slr_job *job, slr_error *err)
{
    const slr_train_options *opt = job->opt;
    slr_status st;
    if (opt->resume) {
        if (!opt->checkpoint_dir)
            return slr_error_set(err, SLR_ERR_ARG, "--resume needs --checkpoint-dir");
        st = slr_checkpoint_dir_load(opt->checkpoint_dir, &job->learner, &job->state,
                                     job->last_checkpoint, warn_cb, job, err);
        if (st == SLR_OK) {
            slr_job_log(job, "resuming from %s (%llu examples learned)%s", job->last_checkpoint,
                        (unsigned long long)slr_learner_steps(job->learner),
                        opt->model_in ? "; -i applies only to a directory without checkpoints"
                                      : "");
            if ((st = check_resumable(job, err)) != SLR_OK)
                return st;
            return resume_dead_letters(job, err);
        }
        if (st != SLR_ERR_NOT_FOUND)
            return st;
        slr_job_log(job, "no checkpoint in %s yet; starting from %s", opt->checkpoint_dir,
                    opt->model_in ? opt->model_in : "scratch");
    }
    if (opt->model_in) {
        slr_job_state model_state;
        slr_job_state_init(&model_state);
        st = slr_checkpoint_read(opt->model_in, &job->learner, &model_state, err);
        job->state.names = model_state.names; /* names belong to the weights */
        model_state.names = NULL;
        slr_job_state_free(&model_state); /* a new run: fresh metrics and position */
        if (st != SLR_OK)
            return st;
        slr_learner_config cfg = *slr_learner_config_of(job->learner);
        const slr_learner_config *want = &opt->learner;
        uint32_t set = opt->learner_set;
        const char *fixed =
            config_mismatch(want, &cfg, set & (SLR_SET_BITS | SLR_SET_QUADRATIC | SLR_SET_IGNORE |
                                               SLR_SET_NOCONSTANT | SLR_SET_CUBIC |
                                               SLR_SET_SCHEDULE | SLR_SET_EAGER));
        if (fixed)
            return slr_error_set(err, SLR_ERR_MISMATCH,
                                 "%s differs from the model %s; hashing, schedule and --eager are "
                                 "fixed by the model",
                                 fixed, opt->model_in);
        if ((st = check_schedule_flags(opt, cfg.schedule, err)) != SLR_OK)
            return st;
        if (set & SLR_SET_ETA) cfg.eta = want->eta;
        if (set & SLR_SET_POWER_T) cfg.power_t = want->power_t;
        if (set & SLR_SET_INITIAL_T) cfg.initial_t = want->initial_t;
        if (set & SLR_SET_ADAGRAD_DELTA) cfg.adagrad_delta = want->adagrad_delta;
        if (set & SLR_SET_L1) cfg.l1 = want->l1;
        if (set & SLR_SET_L2) cfg.l2 = want->l2;
        if (set & SLR_SET_TG_PERIOD) cfg.tg_period = want->tg_period;
        if (set & SLR_SET_TG_THRESHOLD) cfg.tg_threshold = want->tg_threshold;
        return slr_learner_reconfigure(job->learner, &cfg, err);
    }
    if ((st = check_schedule_flags(opt, opt->learner.schedule, err)) != SLR_OK)
        return st;
    return slr_learner_create(&job->learner, &opt->learner, err);
}

slr_status slr_job_reader_init(slr_job_reader *r, const slr_train_options *opt, slr_error *err)
{
    slr_raw_example_init(&r->raw);
    r->keep_names = opt->keep_names;
    r->keep_bytes = opt->dead_letter != NULL;
    r->keep_tag = opt->predictions != NULL || opt->audit != NULL;
    slr_status st = slr_decoder_create(&r->decoder, opt->format, err);
    if (st != SLR_OK)
        return st;
    slr_decoder_set_max_record(r->decoder, opt->max_record ? opt->max_record : SLR_DEFAULT_MAX_RECORD);
    slr_decoder_set_keep_raw(r->decoder, r->keep_names);
    return SLR_OK;
}

void slr_job_reader_free(slr_job_reader *r)
{
    slr_decoder_destroy(r->decoder);
    slr_raw_example_free(&r->raw);
    memset(r, 0, sizeof *r);
}

void slr_job_item_init(slr_job_item *it, const slr_job *job)
{
    memset(it, 0, sizeof *it);
    slr_example_init(&it->ex, &slr_learner_config_of(job->learner)->hashing);
    if (job->opt->max_features)
        it->ex.max_features = job->opt->max_features;
}

void slr_job_item_free(slr_job_item *it)
{
    slr_example_free(&it->ex);
    slr_buf_free(&it->bytes);
    slr_buf_free(&it->tag);
    slr_raw_example_free(&it->raw);
    free(it->names);
    memset(it, 0, sizeof *it);
}

/* raw into the item with its names copied, so it outlives the read buffer */
static bool keep_raw(slr_job_item *it, const slr_raw_example *raw)
{
    size_t bytes = 0;
    for (uint32_t i = 0; i < raw->n_features; i++)
        bytes += raw->features[i].name ? (size_t)raw->features[i].ns_len + raw->features[i].name_len : 0;
    if (bytes > it->names_cap) {
        char *p = realloc(it->names, bytes);
        if (!p)
            return false;
        it->names = p;
        it->names_cap = bytes;
    }
    slr_raw_example_reset(&it->raw);
    char *w = it->names;
    for (uint32_t i = 0; i < raw->n_features; i++) {
        slr_raw_feature f = raw->features[i];
        if (f.name) {
            memcpy(w, f.ns ? f.ns : "", f.ns_len);
            f.ns = w;
            w += f.ns_len;
            memcpy(w, f.name, f.name_len);
            f.name = w;
            w += f.name_len;
        }
        if (slr_raw_example_push(&it->raw, &f, NULL) != SLR_OK)
            return false;
    }
    return true;
}

/* The example count of the next progress row: VW's --progress, additive
 * (every N examples) or multiplicative (1, 2, 4, ... by default). */
static void advance_progress(slr_job *job)
{
    const slr_train_options *opt = job->opt;
    double f = opt->progress_factor > 1 ? opt->progress_factor : 2;
    uint64_t next = opt->progress_add ? job->next_progress + opt->progress_add
                                      : (uint64_t)ceil((double)job->next_progress * f);
    job->next_progress = next > job->next_progress ? next : job->next_progress + 1;
}

/* What would otherwise surface only after the work is done: a model or a
 * checkpoint that cannot be written, or a checkpoint directory that holds
 * another run's work which this run would prune. */
static slr_status check_outputs(const slr_train_options *opt, slr_error *err)
{
    slr_status st;
    if (opt->model_out && (st = slr_checkpoint_path_check(opt->model_out, "the model (-f)", err)) != SLR_OK)
        return st;
    if (!opt->checkpoint_dir)
        return SLR_OK;
    if ((st = slr_checkpoint_dir_check(opt->checkpoint_dir, err)) != SLR_OK)
        return st;
    uint64_t newest;
    if (opt->resume || opt->start_over ||
        slr_checkpoint_dir_newest(opt->checkpoint_dir, &newest, NULL) != SLR_OK)
        return SLR_OK;
    return slr_error_set(err, SLR_ERR_MISMATCH,
                         "%s holds checkpoints of an earlier run (the newest is #%llu); add "
                         "--resume to continue it, or --start-over to start a new run there "
                         "(the old checkpoints are pruned as the new run writes its own)",
                         opt->checkpoint_dir, (unsigned long long)newest);
}

slr_status slr_job_open(slr_job *job, const slr_train_options *opt, slr_error *err)
{
    memset(job, 0, sizeof *job);
    job->opt = opt;
    slr_job_state_init(&job->state);
    job->started = job->time_at_checkpoint = slr_monotonic_seconds();
    slr_status st = check_outputs(opt, err);
    if (st != SLR_OK)
        return st;
    if ((st = slr_job_reader_init(&job->reader, opt, err)) != SLR_OK)
        return st;
    if ((st = open_learner(job, err)) != SLR_OK)
        return st;
    slr_job_item_init(&job->item, job);
    free(job->state.format);
    job->state.format = strdup(slr_format_name(opt->format));
    if (!job->state.format)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    job->examples_at_checkpoint = job->state.metrics.examples;
    job->at_last_row = job->state.metrics;
    job->next_progress = opt->progress_add ? opt->progress_add : 1;
    while (job->next_progress <= job->state.metrics.examples)
        advance_progress(job);
    return slr_job_report_open(job, err);
}

void slr_job_close(slr_job *job)
{
    slr_job_checkpoint_poll(job, true, NULL); /* a valid checkpoint of an earlier position */
    free(job->junk.source);
    slr_buf_free(&job->junk.data);
    slr_buf_free(&job->bad_sample);
    slr_job_report_close(job);
    slr_learner_destroy(job->learner);
    slr_job_reader_free(&job->reader);
    slr_job_item_free(&job->item);
    slr_buf_free(&job->prediction);
    slr_job_state_free(&job->state);
    memset(job, 0, sizeof *job);
}

/* ------------------------------------------------------------ records */

static void format_where(char *buf, size_t size, const slr_where *w)
{
    if (w->is_message)
        snprintf(buf, size, "%s@%llu", w->name, (unsigned long long)w->offset);
    else if (w->line)
        snprintf(buf, size, "%s:%llu", w->name, (unsigned long long)w->line);
    else
        snprintf(buf, size, "%s@%llu", w->name, (unsigned long long)w->offset);
}

/* A record that cannot be learned from: count it by reason, report it, and
 * hand its exact bytes to the dead-letter sink.  Unlabelled examples are not
 * bad input, but training cannot use them either, so they are kept too. */
static slr_status reject_record(slr_job *job, const slr_where *where, slr_bad_reason why,
                                const char *msg, const char *data, size_t len, bool truncated,
                                slr_error *err)
{
    char at[1024];
    format_where(at, sizeof at, where);
    job->state.metrics.rejected[why]++;
    if (why == SLR_BAD_UNLABELLED) {
        if (job->state.metrics.unlabelled++ == 0)
            slr_job_log(job, "%s: example has no label; training skips unlabelled examples "
                             "(counted as unlabelled)", at);
    } else {
        job->state.metrics.bad++;
        if (job->opt->strict)
            return slr_error_set(err, SLR_ERR_BAD_INPUT, "%s: %s (stopping: --strict)", at, msg);
        if (job->bad_reported < BAD_REPORT_LIMIT)
            slr_job_log(job, "%s: %s; skipped", at, msg);
        else if (job->bad_reported == BAD_REPORT_LIMIT)
            slr_job_log(job, "more than %d bad records; counting the rest without printing them",
                        BAD_REPORT_LIMIT);
        job->bad_reported++;
    }
    slr_dead_letter_sink *sink = job->opt->dead_letter;
    if (!sink)
        return SLR_OK;
    slr_dead_letter dl = {.reason = why, .error = msg, .source = where->name,
                          .offset = where->offset, .line = where->line,
                          .is_message = where->is_message,
                          .format = slr_format_name(job->opt->format), .data = data, .len = len,
                          .truncated = truncated};
    slr_error e;
    slr_status st = sink->put(sink, &dl, &e);
    if (st != SLR_OK)
        return slr_error_set(err, st, "%s: cannot keep this record as a dead letter (%s); stopping, "
                             "since it could be neither learned nor kept", at, e.msg);
    job->dead_letters++;
    job->source.dead_lettered++;
    return SLR_OK;
}

static slr_status flush_junk(slr_job *job, slr_error *err)
{
    slr_junk_span *j = &job->junk;
    if (!j->active)
        return SLR_OK;
    j->active = false;
    char msg[SLR_ERROR_MSG_MAX + 64];
    if (j->data.len > 1)
        snprintf(msg, sizeof msg, "%s (%zu bytes skipped in all)", j->error, j->data.len);
    else
        snprintf(msg, sizeof msg, "%s", j->error);
    slr_where w = {j->source, 0, j->offset, j->is_message};
    slr_status st = reject_record(job, &w, j->reason, msg, j->data.data, j->data.len, false, err);
    free(j->source);
    j->source = NULL;
    slr_buf_reset(&j->data);
    return st;
}

/* Bytes the decoder skipped to resynchronise: extend the current span if
 * they follow it, else start a new one (after reporting the old). */
static slr_status add_junk(slr_job *job, const slr_where *where, slr_bad_reason why,
                           const char *msg, const char *buf, size_t n, slr_error *err)
{
    slr_junk_span *j = &job->junk;
    if (job->opt->strict)
        return reject_record(job, where, why, msg, buf, n, false, err);
    size_t limit = job->opt->max_record ? job->opt->max_record : SLR_DEFAULT_MAX_RECORD;
    /* in a file the next junk byte is at the next offset; in a Kafka message
     * every byte has the message's offset, and the message is the unit */
    bool adjacent = where->is_message ? j->offset == where->offset
                                      : j->offset + j->data.len == where->offset;
    bool continues = j->active && adjacent && j->is_message == where->is_message &&
                     !strcmp(j->source, where->name) && j->data.len + n <= limit;
    slr_status st;
    if (!continues) {
        if ((st = flush_junk(job, err)) != SLR_OK)
            return st;
        if (!(j->source = strdup(where->name)))
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
        j->active = true;
        j->offset = where->offset;
        j->is_message = where->is_message;
        j->reason = why;
        snprintf(j->error, sizeof j->error, "%s", msg);
    }
    return slr_buf_append(&j->data, buf, n, err);
}

/* ------------------------------------------------------------ a wrong format */

/* The first records of a run in the wrong format are all bad (or nearly):
 * stop after this many all bad, or when more than 90% of this many are. */
#define PROBE_ALL_BAD 1000
#define PROBE_MOSTLY_BAD 10000

slr_status slr_job_set_format(slr_job *job, slr_error *err)
{
    slr_job_reader_free(&job->reader);
    slr_status st = slr_job_reader_init(&job->reader, job->opt, err);
    if (st != SLR_OK)
        return st;
    free(job->state.format);
    if (!(job->state.format = strdup(slr_format_name(job->opt->format))))
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    return SLR_OK;
}

bool slr_job_checkpoint_held(const slr_job *job)
{
    return !job->format_settled && 2 * job->probe_bad > job->probe_records;
}

/* Keep the first bad records' bytes (a few KiB, messages one per line) to
 * tell what the input is. */
static void sample_bad(slr_job *job, const slr_job_item *it)
{
    slr_buf *b = &job->bad_sample;
    if (b->len >= 4096)
        return;
    if (b->len && it->where.is_message && job->sample_offset != it->where.offset)
        slr_buf_append(b, "\n", 1, NULL);
    job->sample_offset = it->where.offset;
    size_t n = it->bytes.len < 4096 ? it->bytes.len : 4096;
    slr_buf_append(b, it->bytes.data, n, NULL);
}

/* The run's only checkpoint is slr_job_start's, of a run now refused for its
 * input: it would make a rerun with the right format look like a resume. */
static void drop_start_checkpoint(slr_job *job)
{
    slr_job_checkpoint_poll(job, true, NULL);
    if (job->wrote_start_checkpoint && job->checkpoints_written == 1 && job->last_checkpoint[0])
        unlink(job->last_checkpoint);
}

static slr_status wrong_format(slr_job *job, const slr_where *where, slr_error *err)
{
    const char *reading = slr_format_name(job->opt->format);
    char counted[128];
    if (job->probe_bad == job->probe_records)
        snprintf(counted, sizeof counted, "the first %llu records", (unsigned long long)job->probe_records);
    else
        snprintf(counted, sizeof counted, "%llu of the first %llu records",
                 (unsigned long long)job->probe_bad, (unsigned long long)job->probe_records);
    slr_format likely;
    char hint[160];
    if (slr_format_detect(job->bad_sample.data, job->bad_sample.len, &likely) &&
        likely != job->opt->format)
        snprintf(hint, sizeof hint, "the input looks like %s: give --format %s",
                 slr_format_name(likely), slr_format_name(likely));
    else
        snprintf(hint, sizeof hint, "is it %s? give the right --format",
                 reading);
    drop_start_checkpoint(job);
    return slr_error_set(err, SLR_ERR_BAD_INPUT,
                         "%s of %s are bad reading --format %s; %s (stopped before any "
                         "checkpoint, commit or model)",
                         counted, where->name, reading, hint);
}

/* Watch the run's first records for a wrong format (skips are not records
 * of any format). */
static slr_status probe_format(slr_job *job, const slr_job_item *it, slr_error *err)
{
    job->probe_records++;
    if (it->kind == SLR_ITEM_BAD) {
        job->probe_bad++;
        sample_bad(job, it);
    }
    uint64_t good = job->probe_records - job->probe_bad;
    if ((job->probe_records == PROBE_ALL_BAD && good == 0) ||
        (job->probe_records == PROBE_MOSTLY_BAD && 10 * job->probe_bad > 9 * PROBE_MOSTLY_BAD))
        return wrong_format(job, &it->where, err);
    if (10 * good >= PROBE_MOSTLY_BAD || job->probe_records >= PROBE_MOSTLY_BAD) {
        job->format_settled = true; /* no verdict is possible any more */
        slr_buf_free(&job->bad_sample);
    }
    return SLR_OK;
}

/* -p: one line per example or bad record, so line i answers record i; the
 * example's tag after the probability, as VW writes it */
static void write_prediction(slr_job *job, double p, const slr_job_item *it)
{
    slr_buf_reset(&job->prediction);
    const slr_buf *tag = it->kind == SLR_ITEM_EXAMPLE ? &it->tag : NULL;
    if (slr_prediction_line(&job->prediction, p, tag ? tag->data : NULL, tag ? tag->len : 0,
                            NULL) == SLR_OK)
        fwrite(job->prediction.data, 1, job->prediction.len, job->opt->predictions);
    else
        fputs("nan\n", job->opt->predictions); /* out of memory: keep line i for record i */
}

bool slr_job_read(slr_job_reader *r, const char *buf, size_t len, bool at_end,
                  const slr_where *where, size_t *consumed, slr_job_item *it)
{
    r->raw.tag = NULL; /* the compact msgpack form has no tag and leaves raw as it was */
    r->raw.tag_len = 0;
    slr_decode_result d = slr_decoder_next_example(r->decoder, buf, len, at_end, consumed,
                                                   &r->raw, &it->ex, &it->reason);
    if (d == SLR_DECODE_NEED_MORE)
        return false;
    it->where = *where;
    it->kind = d == SLR_DECODE_EXAMPLE ? SLR_ITEM_EXAMPLE
               : d == SLR_DECODE_SKIP  ? SLR_ITEM_SKIP
                                       : SLR_ITEM_BAD;
    slr_buf_reset(&it->bytes);
    if (it->kind == SLR_ITEM_BAD) {
        it->why = slr_decoder_last_bad(r->decoder, &it->resync, &it->truncated);
        /* the bytes go to the dead letter, or at least count in a junk span */
        if (slr_buf_append(&it->bytes, buf, *consumed, NULL) != SLR_OK)
            slr_error_set(&it->reason, SLR_ERR_NOMEM, "out of memory keeping a bad record");
    } else if (it->kind == SLR_ITEM_EXAMPLE) {
        slr_buf_reset(&it->tag);
        if ((r->keep_names && !keep_raw(it, &r->raw)) ||
            (r->keep_tag && r->raw.tag &&
             slr_buf_append(&it->tag, r->raw.tag, r->raw.tag_len, NULL) != SLR_OK) ||
            (r->keep_bytes && !it->ex.has_label &&
             slr_buf_append(&it->bytes, buf, *consumed, NULL) != SLR_OK)) {
            it->kind = SLR_ITEM_BAD;
            slr_error_set(&it->reason, SLR_ERR_NOMEM, "out of memory keeping a record");
        }
    }
    return true;
}

/* --audit, as VW prints it: the prediction (and tag), then a tab before each
 * feature as name:index:value:weight, the weights before this update. */
static void audit(slr_job *job, const slr_job_item *it)
{
    const slr_example *ex = &it->ex;
    FILE *out = job->opt->audit;
    fprintf(out, "%.6f", slr_learner_predict(job->learner, ex));
    if (it->tag.len)
        fprintf(out, " %.*s", (int)it->tag.len, it->tag.data);
    fputc('\n', out);
    for (uint32_t i = 0; i < ex->n_features; i++) {
        const slr_feature *f = &ex->features[i];
        slr_name_ref name;
        if (f->value == 0.0f)
            continue; /* --ignore_linear: not in the linear part */
        if (job->state.names && slr_names_lookup(job->state.names, ex->hashes[i], &name))
            fprintf(out, "\t%.*s", (int)name.len, name.name);
        else
            fprintf(out, "\t?");
        fprintf(out, ":%u:%.9g:%.9g", f->index, (double)f->value,
                slr_learner_weight(job->learner, f->index));
    }
    if (!slr_learner_config_of(job->learner)->noconstant) {
        uint64_t b = slr_learner_bias_index(job->learner);
        fprintf(out, "\t%s:%llu:1:%.9g", SLR_BIAS_NAME, (unsigned long long)b,
                slr_learner_weight(job->learner, b));
    }
    fputc('\n', out);
}

/* A held-out example (--passes): scored and counted apart, never learned,
 * so the last pass's holdout loss is an honest estimate even after the
 * learned examples have been seen many times. */
static slr_status holdout(slr_job *job, const slr_job_item *it, slr_apply_result *result)
{
    const slr_example *ex = &it->ex;
    double z = slr_learner_margin(job->learner, ex);
    if (it->pass != job->holdout_pass) {
        job->holdout_pass = it->pass;
        job->holdout_examples = 0;
        job->holdout_weight = job->holdout_loss = 0;
    }
    job->holdout_examples++;
    job->holdout_weight += ex->weight;
    job->holdout_loss += ex->weight * slr_logloss_margin(z, ex->label);
    if (job->opt->predictions)
        write_prediction(job, slr_sigmoid(z), it);
    *result = SLR_APPLY_SKIPPED;
    return SLR_OK;
}

slr_status slr_job_learn(slr_job *job, const slr_job_item *it, slr_apply_result *result,
                         slr_error *err)
{
    job->records_this_run++;
    job->state.file.records++;
    if ((job->records_this_run & 1023) == 0) /* reading the clock is cheap, not free */
        slr_job_tick(job);
    slr_status st;
    if (!job->format_settled && it->kind != SLR_ITEM_SKIP &&
        (st = probe_format(job, it, err)) != SLR_OK) {
        *result = SLR_APPLY_BAD;
        return st;
    }
    if (it->kind == SLR_ITEM_BAD) {
        *result = SLR_APPLY_BAD;
        if (it->reason.code == SLR_ERR_NOMEM)
            return slr_error_set(err, SLR_ERR_NOMEM, "%s", it->reason.msg);
        if (job->opt->predictions)
            write_prediction(job, NAN, it);
        if (it->resync)
            return add_junk(job, &it->where, it->why, it->reason.msg, it->bytes.data,
                            it->bytes.len, err);
        if ((st = flush_junk(job, err)) != SLR_OK)
            return st;
        return reject_record(job, &it->where, it->why, it->reason.msg, it->bytes.data,
                             it->bytes.len, it->truncated, err);
    }
    if ((st = flush_junk(job, err)) != SLR_OK) /* it came before this record */
        return st;
    if (it->kind == SLR_ITEM_SKIP) {
        *result = SLR_APPLY_SKIPPED;
        return SLR_OK;
    }
    const slr_example *ex = &it->ex;
    if (!ex->has_label) {
        if (job->opt->predictions)
            write_prediction(job, slr_learner_predict(job->learner, ex), it);
        *result = SLR_APPLY_SKIPPED;
        return reject_record(job, &it->where, SLR_BAD_UNLABELLED, "example has no label",
                             it->bytes.data, it->bytes.len, false, err);
    }
    if (it->holdout)
        return holdout(job, it, result);
    if (job->opt->keep_names)
        slr_names_record(job->state.names, &it->raw, ex);
    if (job->opt->audit)
        audit(job, it);
    double loss, p;
    if (job->opt->test_only) {
        double z = slr_learner_margin(job->learner, ex);
        p = slr_sigmoid(z);
        loss = slr_logloss_margin(z, ex->label);
    } else {
        p = slr_learner_learn(job->learner, ex, &loss);
    }
    slr_job_observe(job, ex, p, loss);
    if (job->opt->predictions)
        write_prediction(job, p, it);
    job->examples_this_run++;
    if (job->opt->progress && job->opt->progress_style == SLR_PROGRESS_TABLE &&
        job->state.metrics.examples >= job->next_progress) {
        slr_job_progress_row(job, ex, p);
        while (job->next_progress <= job->state.metrics.examples)
            advance_progress(job);
    }
    *result = SLR_APPLY_LEARNED;
    return SLR_OK;
}

slr_status slr_job_apply(slr_job *job, const char *buf, size_t len, bool at_end,
                         const slr_where *where, size_t *consumed, slr_apply_result *result,
                         slr_error *err)
{
    if (!slr_job_read(&job->reader, buf, len, at_end, where, consumed, &job->item)) {
        *result = SLR_APPLY_NEED_MORE;
        return SLR_OK;
    }
    return slr_job_learn(job, &job->item, result, err);
}

/* ------------------------------------------------------------ checkpoints */

bool slr_job_should_stop(const slr_job *job)
{
    const slr_train_options *opt = job->opt;
    return (opt->stop && *opt->stop) ||
           (opt->max_examples && job->examples_this_run >= opt->max_examples);
}

bool slr_job_checkpoint_due(slr_job *job)
{
    const slr_train_options *opt = job->opt;
    if (!opt->checkpoint_dir || slr_job_checkpoint_held(job))
        return false;
    if (opt->checkpoint_every_examples &&
        job->state.metrics.examples - job->examples_at_checkpoint >= opt->checkpoint_every_examples)
        return true;
    /* reading the clock is cheap (vDSO) but not free: look every 1024 records */
    if (opt->checkpoint_every_seconds > 0 && job->records_this_run - job->records_at_clock >= 1024) {
        job->records_at_clock = job->records_this_run;
        return slr_monotonic_seconds() - job->time_at_checkpoint >= opt->checkpoint_every_seconds;
    }
    return false;
}

bool slr_job_checkpoint_due_now(slr_job *job)
{
    const slr_train_options *opt = job->opt;
    if (!opt->checkpoint_dir || slr_job_checkpoint_held(job) ||
        (job->records_this_run == job->records_at_checkpoint &&
         job->moves == job->moves_at_checkpoint))
        return false;
    if (slr_job_checkpoint_due(job))
        return true;
    job->records_at_clock = job->records_this_run;
    return opt->checkpoint_every_seconds > 0 &&
           slr_monotonic_seconds() - job->time_at_checkpoint >= opt->checkpoint_every_seconds;
}

/* A checkpoint taken when `records` records had been applied is durable. */
static void checkpoint_durable(slr_job *job, const char *path, const slr_job_state *st,
                               uint64_t records, uint64_t moves)
{
    job->records_at_checkpoint = records; /* saved: finish need not write again */
    job->moves_at_checkpoint = moves;
    job->checkpoints_written++;
    job->last_checkpoint_unix = (double)time(NULL);
    snprintf(job->last_checkpoint, sizeof job->last_checkpoint, "%s", path);
    if (job->opt->checkpoint_done)
        job->opt->checkpoint_done(job->opt->checkpoint_done_ctx, path, st);
}

static void checkpoint_failed(slr_job *job, const slr_error *e)
{
    slr_job_log(job, "checkpoint failed: %s; training goes on and retries at the next period",
                e->msg);
}

/* Reap the background writer (waiting for it if `wait`); `recorded` is the
 * state it wrote, handed to checkpoint_done when it is durable. */
static slr_status reap_writer(slr_job *job, bool wait, const slr_job_state *recorded, slr_error *err)
{
    bool done;
    char path[PATH_MAX];
    slr_error e;
    uint64_t seq = slr_checkpoint_child_sequence(job->writer);
    slr_status st = slr_checkpoint_child_wait(job->writer, wait, &done, path, &e);
    if (!done)
        return SLR_OK;
    job->writer = NULL;
    if (st == SLR_OK) {
        checkpoint_durable(job, path, recorded, job->writer_records, job->writer_moves);
    } else {
        checkpoint_failed(job, &e);
        if (job->state.sequence == seq) /* as a failed synchronous save leaves it */
            job->state.sequence = job->writer_prev_sequence;
        if (err)
            *err = e;
    }
    return st;
}

slr_status slr_job_checkpoint_poll(slr_job *job, bool wait, slr_error *err)
{
    if (!job->writer)
        return SLR_OK;
    slr_status st = reap_writer(job, wait, &job->writer_state, err);
    if (!job->writer)
        slr_job_state_free(&job->writer_state);
    return st;
}

/* Make every dead letter so far durable and note where the sink stands: the
 * checkpoint about to be written must not move past a record whose dead
 * letter could still be lost. */
static slr_status sync_dead_letters(slr_job *job, slr_error *err)
{
    slr_status st = flush_junk(job, err);
    slr_dead_letter_sink *sink = job->opt->dead_letter;
    if (st != SLR_OK || !sink)
        return st;
    uint64_t position;
    slr_error e;
    if ((st = sink->sync(sink, &position, &e)) != SLR_OK)
        return slr_error_set(err, st, "%s; stopping without a further checkpoint, so that a resumed "
                             "run reapplies the records since the last one", e.msg);
    slr_dead_letter_mark *mark = &job->state.dead_letter;
    if (!mark->kind || strcmp(mark->kind, sink->kind) || strcmp(mark->name, sink->name)) {
        free(mark->kind);
        free(mark->name);
        mark->kind = strdup(sink->kind);
        mark->name = strdup(sink->name);
        if (!mark->kind || !mark->name)
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    }
    mark->position = position;
    return SLR_OK;
}

/* Take a checkpoint, in a child process if `background` allows.  A failure
 * is logged and returned. */
static slr_status take_checkpoint(slr_job *job, bool background, slr_error *err)
{
    const slr_train_options *opt = job->opt;
    slr_error e;
    /* a checkpoint still being written is finished first, so that every
     * checkpoint is taken where it falls due, whatever the disk's speed */
    slr_job_checkpoint_poll(job, false, NULL);
    if (!job->writer) {
        job->fork_overruns = 0;
    } else {
        double due = slr_monotonic_seconds();
        slr_job_checkpoint_poll(job, true, NULL);
        double waited = slr_monotonic_seconds() - due, ran = due - job->writer_forked_at;
        /* A child exists so that learning need not wait for the write.  When
         * learning waited for it longer than it learned beside it, twice in
         * a row (checkpoints due every few milliseconds of a big table: a
         * small run; once could be a rebalance's checkpoint right after a
         * periodic one), the fork buys nothing and its copy-on-write costs
         * more than writing in place: write in place from now on. */
        job->fork_overruns = waited > ran ? job->fork_overruns + 1 : 0;
        if (background && !job->fork_given_up && job->fork_overruns >= 2) {
            job->fork_given_up = true;
            slr_job_log(job, "checkpoints fall due faster than a child process writes them "
                             "(learning waited %.0f ms for one after %.0f ms beside it); writing "
                             "them in place from now on, which costs less in all",
                        waited * 1e3, ran * 1e3);
        }
    }
    background = background && !job->fork_given_up;
    /* the next periodic attempt is a period away, whatever this one does */
    job->examples_at_checkpoint = job->state.metrics.examples;
    job->time_at_checkpoint = slr_monotonic_seconds();
    slr_status st = SLR_OK;
    if (background) {
        uint64_t prev = job->state.sequence;
        st = slr_checkpoint_dir_fork(opt->checkpoint_dir, job->learner, &job->state,
                                     opt->checkpoint_keep, &job->writer, &e);
        if (st == SLR_OK) {
            job->writer_forked_at = slr_monotonic_seconds();
            job->writer_prev_sequence = prev;
            job->writer_records = job->records_this_run;
            job->writer_moves = job->moves;
            /* checkpoint_done will want the state the child records; without
             * the memory to copy it, wait now, while job->state still is it */
            if (slr_job_state_copy(&job->writer_state, &job->state, NULL) != SLR_OK) {
                slr_job_state_free(&job->writer_state);
                if ((st = reap_writer(job, true, &job->state, &e)) != SLR_OK && err)
                    *err = e;
            }
            return st;
        }
        slr_job_log(job, "%s; writing the checkpoint on the learning thread instead", e.msg);
    }
    char path[PATH_MAX];
    st = slr_checkpoint_dir_save(opt->checkpoint_dir, job->learner, &job->state,
                                 opt->checkpoint_keep, path, &e);
    if (st == SLR_OK) {
        checkpoint_durable(job, path, &job->state, job->records_this_run, job->moves);
    } else {
        checkpoint_failed(job, &e);
        if (err)
            *err = e;
    }
    return st;
}

slr_status slr_job_start(slr_job *job, slr_error *err)
{
    if (!job->opt->dead_letter || !job->opt->checkpoint_dir || job->last_checkpoint[0])
        return SLR_OK;
    job->wrote_start_checkpoint = true;
    return slr_job_checkpoint(job, err);
}

slr_status slr_job_checkpoint(slr_job *job, slr_error *err)
{
    slr_status st = sync_dead_letters(job, err);
    if (st != SLR_OK)
        return st;
    const double t0 = slr_monotonic_seconds();
    slr_error werr;
    take_checkpoint(job, job->opt->checkpoint_fork, &werr); /* logged; the next period retries */
    const double pause = slr_monotonic_seconds() - t0;
    job->checkpoint_seconds += pause;
    job->pauses++;
    job->pause_total += pause;
    if (pause > job->pause_max)
        job->pause_max = pause;
    return SLR_OK;
}

slr_status slr_job_finish(slr_job *job, bool stopped, slr_train_result *res, slr_error *err)
{
    const slr_train_options *opt = job->opt;
    slr_status st = sync_dead_letters(job, err);
    slr_job_checkpoint_poll(job, true, NULL); /* a failure is logged; the final one retries */
    if (st == SLR_OK && opt->checkpoint_dir &&
        (job->records_this_run != job->records_at_checkpoint ||
         job->moves != job->moves_at_checkpoint || job->last_checkpoint[0] == '\0')) {
        double t0 = slr_monotonic_seconds();
        st = take_checkpoint(job, false, err); /* in place: durable before we return */
        job->checkpoint_seconds += slr_monotonic_seconds() - t0;
    }
    if (st == SLR_OK && opt->model_out) {
        double t0 = slr_monotonic_seconds();
        job->state.created = (double)time(NULL);
        st = slr_checkpoint_write(opt->model_out, job->learner, &job->state, err);
        job->checkpoint_seconds += slr_monotonic_seconds() - t0;
        if (st == SLR_OK && opt->progress) /* a note of the summary: --quiet drops both */
            slr_job_log(job, "model written to %s", opt->model_out);
    }
    double secs = slr_monotonic_seconds() - job->started;
    const slr_metrics *m = &job->state.metrics;
    slr_metrics_report report;
    slr_job_report_finish(job, &report);
    if (opt->progress) {
        slr_train_summary sum = {
            .stopped = stopped,
            .examples_this_run = job->examples_this_run,
            .seconds = secs,
            .checkpoint_seconds = job->checkpoint_seconds,
            .waiting_seconds = job->waiting_seconds,
            .dead_letters = job->dead_letters,
            .dead_letter_sink = opt->dead_letter ? opt->dead_letter->name : NULL,
            .pauses = job->pauses,
            .pause_max = job->pause_max,
            .pause_total = job->pause_total,
            .checkpoint_fork = opt->checkpoint_fork,
            .fork_given_up = job->fork_given_up,
            .checkpoint = job->last_checkpoint,
        };
        slr_progress p = {.event = SLR_PROGRESS_SUMMARY, .report = &report, .summary = &sum};
        opt->progress(opt->progress_ctx, &p);
    }
    if (res) {
        res->metrics = *m;
        res->records = job->records_this_run;
        res->examples = job->examples_this_run;
        res->seconds = secs;
        res->stopped = stopped;
        res->checkpoints = job->checkpoints_written;
        res->pause_max = job->pause_max;
        res->pause_mean = job->pauses ? job->pause_total / (double)job->pauses : 0.0;
        res->dead_letters = job->dead_letters;
        snprintf(res->checkpoint, sizeof res->checkpoint, "%s", job->last_checkpoint);
        res->report = report;
        res->format = opt->format;
    }
    return st;
}
