/* train_kafka.c - learning from Kafka topics (see kafka.h, docs/KAFKA.md).
 *
 * The loop reads top to bottom like librdkafka's examples/consumer.c: take
 * a batch, hand each message to the source, which says whether it is to be
 * applied; apply it whole (every example it holds); checkpoint when due --
 * always between messages, so a checkpoint never holds half a message --
 * and commit the offsets the checkpoint holds once it is durable (a
 * checkpoint written by a child process becomes durable later: the commit
 * then happens in on_durable, with the offsets that checkpoint holds).  When
 * partitions are taken away (rebalance, leaving) the source calls
 * release(), which checkpoints first, so the next owner starts exactly
 * where this model stopped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "source/kafka_source.h"
#include "streamlr/kafka.h"

#define DEFAULT_BATCH 1000
#define BATCH_MAX 100000
#define POLL_MS 100 /* how long a consume call may wait: bounds reaction to a stop */
#define COMMIT_WAIT_SECONDS 5.0

typedef struct kafka_run {
    slr_job job;
    slr_kafka_source *src;
    const slr_kafka_options *k;
    bool checkpoint_failed; /* the last checkpoint attempt failed: do not commit */
    bool done;              /* finished or failed: leaving must not checkpoint again (after a
                               failure the model may hold part of a message) */
    slr_status fatal;       /* a checkpoint could not be taken safely (dead letters not
                               durable): the job must stop; fatal_err says why */
    slr_error fatal_err;
    /* the caller's own checkpoint_done, called after ours */
    void (*user_done)(void *ctx, const char *path, const slr_job_state *st);
    void *user_done_ctx;
} kafka_run;

void slr_kafka_options_init(slr_kafka_options *k)
{
    memset(k, 0, sizeof *k);
    k->batch = DEFAULT_BATCH;
}

static void log_hook(void *ctx, const char *msg)
{
    kafka_run *run = ctx;
    slr_job_log(&run->job, "%s", msg);
}

/* A checkpoint is durable: now, and only now, its offsets may be committed. */
static void on_durable(void *ctx, const char *path, const slr_job_state *st)
{
    kafka_run *run = ctx;
    if (run->src)
        slr_kafka_source_commit_state(run->src, st, 0);
    if (run->user_done)
        run->user_done(run->user_done_ctx, path, st);
}

/* Positions into the job state, then a checkpoint (committed by on_durable
 * when it is durable).  With `wait`, a checkpoint written in the background
 * is waited for.  True if a durable checkpoint holds the positions the
 * source holds now, so that they may be committed. */
static bool checkpoint(kafka_run *run, bool wait)
{
    slr_job *job = &run->job;
    slr_error err;
    if (slr_kafka_source_note_positions(run->src, &err) != SLR_OK) {
        slr_job_log(job, "checkpoint skipped: %s", err.msg);
        return false;
    }
    if (!job->opt->checkpoint_dir)
        return true; /* nothing durable to wait for: see docs/KAFKA.md */
    if (job->records_this_run == job->records_at_checkpoint &&
        job->moves == job->moves_at_checkpoint && job->last_checkpoint[0] && !job->writer)
        return !run->checkpoint_failed; /* nothing new since the last one */
    /* a failed write is logged and retried at the next period; an error
     * means the dead letters could not be made durable: stop */
    uint64_t written = job->checkpoints_written;
    slr_status st = slr_job_checkpoint(job, &run->fatal_err);
    if (st != SLR_OK && run->fatal == SLR_OK)
        run->fatal = st;
    if (job->writer) { /* being written by a child process */
        if (!wait)
            return false;
        slr_job_checkpoint_poll(job, true, NULL);
    }
    run->checkpoint_failed = job->checkpoints_written == written;
    return !run->checkpoint_failed;
}

/* The source is about to give partitions away. */
static bool release_hook(void *ctx)
{
    kafka_run *run = ctx;
    return run->done ? false : checkpoint(run, true);
}

/* Apply every example in one message, then move the partition past it. */
static slr_status apply_message(kafka_run *run, slr_kafka_partition *p,
                                const rd_kafka_message_t *m, slr_error *err)
{
    const char *buf = m->payload ? (const char *)m->payload : "";
    size_t len = m->len;
    slr_where where = {p->name, 0, (uint64_t)m->offset, true};
    while (len > 0) {
        size_t used = 0;
        slr_apply_result r;
        slr_status st = slr_job_apply(&run->job, buf, len, true, &where, &used, &r, err);
        if (st != SLR_OK)
            return st;
        if (r == SLR_APPLY_NEED_MORE || used == 0 || used > len)
            break; /* cannot happen with at_end; never loop on it */
        buf += used;
        len -= used;
    }
    slr_kafka_source_applied(p, m->offset);
    if (run->k->applied)
        run->k->applied(run->k->applied_ctx, p->topic, p->partition, m->offset);
    return SLR_OK;
}

/* Per-partition lag, in the table style; the status line (a terminal) shows
 * the total itself (job.source.consumer_lag). */
static void print_lag(kafka_run *run)
{
    char line[1024];
    FILE *out = run->job.opt->progress;
    if (slr_kafka_source_lag(run->src, line, sizeof line) && out &&
        run->job.opt->progress_style == SLR_PROGRESS_TABLE) {
        fprintf(out, "kafka: %s; %llu examples learned\n", line,
                (unsigned long long)run->job.state.metrics.examples);
        fflush(out);
    }
}

slr_status slr_train_kafka(const slr_train_options *opt_in, const slr_kafka_options *k,
                           slr_train_result *res, slr_error *err)
{
    kafka_run run = {.k = k};
    slr_train_options opt = *opt_in;
    rd_kafka_message_t **msgs = NULL;
    bool stopped = false;
    slr_status st;

    if (opt.n_files)
        return slr_error_set(err, SLR_ERR_ARG, "a Kafka job takes no input files");
    /* a consumer restarted with the same command line must continue */
    opt.resume = opt.checkpoint_dir != NULL;
    size_t batch = k->batch ? k->batch : DEFAULT_BATCH;
    if (batch > BATCH_MAX)
        batch = BATCH_MAX;
    run.user_done = opt.checkpoint_done;
    run.user_done_ctx = opt.checkpoint_done_ctx;
    opt.checkpoint_done = on_durable;
    opt.checkpoint_done_ctx = &run;
    if ((st = slr_job_open(&run.job, &opt, err)) != SLR_OK)
        goto out;
    if (run.job.state.source == SLR_SOURCE_FILES) {
        st = slr_error_set(err, SLR_ERR_MISMATCH,
                           "the checkpoints in %s were taken replaying files; give a Kafka job "
                           "its own --checkpoint-dir",
                           opt.checkpoint_dir);
        goto out;
    }
    run.job.state.source = SLR_SOURCE_KAFKA;
    if (!opt.checkpoint_dir)
        slr_job_log(&run.job, "no --checkpoint-dir: the model is not durable while running, and "
                              "offsets are committed only when the job ends");
    if (!(msgs = malloc(batch * sizeof *msgs))) {
        st = slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
        goto out;
    }
    slr_kafka_hooks hooks = {&run, log_hook, release_hook};
    /* statistics (for the lag) when anything shows it */
    bool want_stats = opt.progress || opt.metrics_out || opt.metrics_port >= 0;
    if ((st = slr_kafka_source_open(&run.src, k, want_stats, &run.job.state, &hooks, err)) !=
        SLR_OK)
        goto out;
    if ((st = slr_job_start(&run.job, err)) != SLR_OK)
        goto out;
    run.job.source.retention_lost = run.job.state.metrics.lost;

    while (!stopped) {
        if (slr_job_should_stop(&run.job) || (k->exit_at_end && slr_kafka_source_at_end(run.src)))
            break;
        size_t n = slr_kafka_source_consume(run.src, msgs, batch, POLL_MS);
        for (size_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            slr_kafka_partition *p;
            if (!stopped && slr_job_should_stop(&run.job))
                stopped = true; /* the rest of the batch stays unapplied */
            switch (stopped ? SLR_KAFKA_SKIP : slr_kafka_source_take(run.src, m, &p, err)) {
            case SLR_KAFKA_APPLY:
                if (run.job.records_this_run == 0 && run.job.waiting_seconds == 0)
                    run.job.waiting_seconds = slr_monotonic_seconds() - run.job.started;
                st = apply_message(&run, p, m, err);
                break;
            case SLR_KAFKA_MOVED:
                run.job.moves++;
                break;
            case SLR_KAFKA_FAILED:
                st = SLR_ERR_KAFKA;
                break;
            case SLR_KAFKA_SKIP:
                break;
            }
            rd_kafka_message_destroy(m);
            if (st != SLR_OK) {
                for (size_t j = i + 1; j < n; j++)
                    rd_kafka_message_destroy(msgs[j]);
                goto out;
            }
            if (!stopped && slr_job_checkpoint_due(&run.job))
                checkpoint(&run, false); /* on_durable commits */
            if (run.fatal != SLR_OK) {
                for (size_t j = i + 1; j < n; j++)
                    rd_kafka_message_destroy(msgs[j]);
                st = slr_error_set(err, run.fatal, "%s", run.fatal_err.msg);
                goto out;
            }
        }
        if (slr_kafka_source_failed(run.src, err)) {
            st = SLR_ERR_KAFKA;
            goto out;
        }
        if (!stopped && slr_job_checkpoint_due_now(&run.job))
            checkpoint(&run, false); /* on_durable commits */
        if (run.job.writer)
            slr_job_checkpoint_poll(&run.job, false, NULL); /* durable yet? then commit */
        if (run.fatal != SLR_OK) {
            st = slr_error_set(err, run.fatal, "%s", run.fatal_err.msg);
            goto out;
        }
        run.job.source.consumer_lag = slr_kafka_source_total_lag(run.src);
        run.job.source.retention_lost = run.job.state.metrics.lost;
        if (n == 0)
            slr_job_idle(&run.job); /* keeps the progress line and metrics fresh */
        print_lag(&run);
    }
    stopped = opt.stop && *opt.stop; /* not when --examples or the end was reached */

    /* final checkpoint and model, then commit what they hold, then leave */
    if ((st = slr_kafka_source_note_positions(run.src, err)) != SLR_OK)
        goto out;
    st = slr_job_finish(&run.job, stopped, res, err);
    if (st == SLR_OK)
        slr_kafka_source_commit(run.src, COMMIT_WAIT_SECONDS);
out:
    run.done = true; /* the final checkpoint and commit are behind us (or must not happen) */
    slr_kafka_source_close(run.src, k->close_timeout_seconds > 0 ? k->close_timeout_seconds : 10.0);
    free(msgs);
    slr_job_close(&run.job);
    return st;
}
