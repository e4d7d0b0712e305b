/* job_open.c - setting a job up and tearing it down: the options, the
 * checks made before the first example (outputs writable, a resumed run
 * continuing the same work with the same learner settings, dead letters
 * picked up where they stopped), the learner loaded or created. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "checkpoint/checkpoint_impl.h"

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
    if ((set & SLR_SET_OPTIMIZER) && want->optimizer != have->optimizer)
        return "--optimizer";
    if ((set & SLR_SET_FTRL_ALPHA) && want->ftrl_alpha != have->ftrl_alpha)
        return "--ftrl-alpha";
    if ((set & SLR_SET_FTRL_BETA) && want->ftrl_beta != have->ftrl_beta)
        return "--ftrl-beta";
    if ((set & SLR_SET_DECAY) && want->decay != have->decay)
        return "--decay";
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
/* SGD's flags given to FTRL, or FTRL's to SGD: they would be ignored. */
static slr_status check_optimizer_flags(uint32_t set, slr_optimizer optimizer, slr_error *err)
{
    static const struct {
        uint32_t bit;
        const char *flag;
    } sgd_only[] = {{SLR_SET_ETA, "-l"},
                    {SLR_SET_SCHEDULE, "--schedule"},
                    {SLR_SET_POWER_T, "--power-t"},
                    {SLR_SET_INITIAL_T, "--initial-t"},
                    {SLR_SET_ADAGRAD_DELTA, "--adagrad-delta"},
                    {SLR_SET_TG_PERIOD, "--tg-period"},
                    {SLR_SET_TG_THRESHOLD, "--tg-threshold"},
                    {SLR_SET_EAGER, "--eager"}};
    if (optimizer == SLR_OPTIMIZER_FTRL) {
        for (size_t i = 0; i < sizeof sgd_only / sizeof sgd_only[0]; i++)
            if (set & sgd_only[i].bit)
                return slr_error_set(err, SLR_ERR_ARG,
                                     "%s has no effect with --optimizer ftrl (FTRL's rate is "
                                     "--ftrl-alpha A and --ftrl-beta B; its L1 is exact)",
                                     sgd_only[i].flag);
    } else if (set & (SLR_SET_FTRL_ALPHA | SLR_SET_FTRL_BETA)) {
        return slr_error_set(err, SLR_ERR_ARG,
                             "--ftrl-alpha and --ftrl-beta need --optimizer ftrl (or VW's --ftrl)");
    }
    return SLR_OK;
}

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
                                               SLR_SET_SCHEDULE | SLR_SET_EAGER |
                                               SLR_SET_OPTIMIZER));
        if (fixed)
            return slr_error_set(err, SLR_ERR_MISMATCH,
                                 "%s differs from the model %s; hashing, optimizer, schedule and "
                                 "--eager are fixed by the model",
                                 fixed, opt->model_in);
        if ((st = check_optimizer_flags(set, cfg.optimizer, err)) != SLR_OK ||
            (st = check_schedule_flags(opt, cfg.schedule, err)) != SLR_OK)
            return st;
        if (set & SLR_SET_ETA) cfg.eta = want->eta;
        if (set & SLR_SET_POWER_T) cfg.power_t = want->power_t;
        if (set & SLR_SET_INITIAL_T) cfg.initial_t = want->initial_t;
        if (set & SLR_SET_ADAGRAD_DELTA) cfg.adagrad_delta = want->adagrad_delta;
        if (set & SLR_SET_L1) cfg.l1 = want->l1;
        if (set & SLR_SET_L2) cfg.l2 = want->l2;
        if (set & SLR_SET_TG_PERIOD) cfg.tg_period = want->tg_period;
        if (set & SLR_SET_TG_THRESHOLD) cfg.tg_threshold = want->tg_threshold;
        if (set & SLR_SET_FTRL_ALPHA) cfg.ftrl_alpha = want->ftrl_alpha;
        if (set & SLR_SET_FTRL_BETA) cfg.ftrl_beta = want->ftrl_beta;
        if (set & SLR_SET_DECAY) cfg.decay = want->decay;
        return slr_learner_reconfigure(job->learner, &cfg, err);
    }
    if ((st = check_optimizer_flags(opt->learner_set, opt->learner.optimizer, err)) != SLR_OK ||
        (st = check_schedule_flags(opt, opt->learner.schedule, err)) != SLR_OK)
        return st;
    return slr_learner_create(&job->learner, &opt->learner, err);
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
    slr_job_item_init(&job->item, job->learner, opt->max_features);
    free(job->state.format);
    job->state.format = strdup(slr_format_name(opt->format));
    if (!job->state.format)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    job->examples_at_checkpoint = job->state.metrics.examples;
    job->at_last_row = job->state.metrics;
    job->next_progress = opt->progress_add ? opt->progress_add : 1;
    while (job->next_progress <= job->state.metrics.examples)
        slr_job_advance_progress(job);
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
