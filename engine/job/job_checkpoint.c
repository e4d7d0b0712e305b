/* job_checkpoint.c - a job's checkpoints: when one is due, taking one
 * (in place, or from a fork()ed child that is reaped later and given up
 * when children cost more than they save), the dead letters made durable
 * first, and the run's end (final checkpoint and model). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job.h"

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
    slr_status st = slr_job_flush_junk(job, err);
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
