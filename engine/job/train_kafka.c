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
 * where this model stopped.  Each step of a turn is a function of its own
 * (leaving, consume, apply_batch with checkpoint_if_due between messages,
 * end_batch, checkpoint_if_due_now, report), so that a new step -- a sync
 * with other consumers when due, say -- is one more line in the loop.
 *
 * With opt->threads >= 2 the decoding runs a batch ahead on a thread of its
 * own, as in file replay (train_files.c): the learning thread hands it each
 * batch it consumed, the decoder fills a ring (ring.h) with the examples of
 * every message that has data, each message closed by an END item, and the
 * learning thread goes through the batch exactly as the one-thread loop
 * does -- the source's verdict on each message, in order, then the message's
 * items learned (or dropped, for a message not to apply).  So positions,
 * checkpoints and commits are the same in both modes; only the decoding has
 * moved.  librdkafka is only ever called on the learning thread, with the
 * ring empty, so rebalance callbacks never meet a half-decoded batch. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "ring.h"
#include "source/kafka_source.h"
#include "streamlr/kafka.h"

#define DEFAULT_BATCH 1000
#define BATCH_MAX 100000
#define POLL_MS 100 /* how long a consume call may wait: bounds reaction to a stop */
#define COMMIT_WAIT_SECONDS 5.0
#define RING_ITEMS 1024 /* decoded examples (and END items) in flight */

/* The decoding stage on its own thread. */
typedef struct decoder {
    slr_job_reader reader;
    slr_ring ring;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    rd_kafka_message_t **msgs; /* the batch to decode (under lock) */
    size_t n;
    bool given; /* a batch is waiting to be decoded (under lock) */
    bool quit;  /* (under lock) */
} decoder;

typedef struct kafka_run {
    slr_job job;
    slr_kafka_source *src;
    const slr_kafka_options *k;
    bool checkpoint_failed; /* the last checkpoint attempt failed: do not commit */
    bool done;              /* finished or failed: leaving must not checkpoint again (after a
                               failure the model may hold part of a message) */
    bool finished;          /* the final checkpoint and model are written: the positions
                               may be committed when leaving (again, if the broker refused
                               the last commit during a rebalance) */
    slr_status fatal;       /* a checkpoint could not be taken safely (dead letters not
                               durable): the job must stop; fatal_err says why */
    slr_error fatal_err;
    /* the caller's own checkpoint_done, called after ours */
    void (*user_done)(void *ctx, const char *path, const slr_job_state *st);
    void *user_done_ctx;
    decoder *dec; /* NULL: decoding on the learning thread */
} kafka_run;

void slr_kafka_options_init(slr_kafka_options *k)
{
    memset(k, 0, sizeof *k);
    k->batch = DEFAULT_BATCH;
    k->sync_every = SLR_SYNC_EVERY_DEFAULT;
    k->sync_snapshot_every = SLR_SYNC_SNAPSHOT_EVERY_DEFAULT;
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
    if (slr_job_checkpoint_held(job))
        return false; /* a wrong format is still likely: commit nothing yet */
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
    return run->done ? run->finished : checkpoint(run, true);
}

/* Does the decoder decode m?  Every message with data, whatever the source
 * will say of it: the verdict is the learning thread's, in order. */
static bool decoded(const rd_kafka_message_t *m)
{
    return m->err == RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* The records of one message into the ring, then its END item.  False once
 * the ring is cancelled. */
static bool decode_message(decoder *d, const rd_kafka_message_t *m)
{
    const char *buf = m->payload ? (const char *)m->payload : "";
    size_t len = m->len;
    /* where.name is filled in by the learning thread, which owns the partitions */
    slr_where where = {NULL, 0, (uint64_t)m->offset, true};
    slr_job_item *it;
    while (len > 0) {
        if (!(it = slr_ring_claim(&d->ring)))
            return false;
        size_t used = 0;
        if (!slr_job_read(&d->reader, buf, len, true, &where, &used, it) || used == 0 ||
            used > len)
            break; /* cannot happen with at_end; never loop on it */
        slr_ring_publish(&d->ring);
        buf += used;
        len -= used;
    }
    if (!(it = slr_ring_claim(&d->ring)))
        return false;
    it->kind = SLR_ITEM_END;
    slr_ring_publish(&d->ring);
    return true;
}

static void *decoder_thread(void *arg)
{
    decoder *d = arg;
    for (;;) {
        pthread_mutex_lock(&d->lock);
        while (!d->given && !d->quit)
            pthread_cond_wait(&d->wake, &d->lock);
        bool quit = d->quit;
        d->given = false;
        rd_kafka_message_t **msgs = d->msgs;
        size_t n = d->n;
        pthread_mutex_unlock(&d->lock);
        if (quit)
            return NULL;
        for (size_t i = 0; i < n; i++)
            if (decoded(msgs[i]) && !decode_message(d, msgs[i]))
                return NULL; /* cancelled */
        /* one more END: the batch is behind us, its messages may go */
        slr_job_item *it = slr_ring_claim(&d->ring);
        if (!it)
            return NULL;
        it->kind = SLR_ITEM_END;
        slr_ring_publish(&d->ring);
    }
}

static slr_status decoder_start(kafka_run *run, decoder *d, slr_error *err)
{
    memset(d, 0, sizeof *d);
    slr_status st = slr_job_reader_init(&d->reader, run->job.opt, err);
    if (st != SLR_OK)
        return st;
    if ((st = slr_ring_init(&d->ring, RING_ITEMS, run->job.learner, run->job.opt->max_features,
                            true, err)) != SLR_OK) {
        slr_job_reader_free(&d->reader);
        return st;
    }
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wake, NULL);
    d->running = slr_job_start_thread(&d->thread, decoder_thread, d);
    if (!d->running) {
        slr_job_log(&run->job, "cannot start the decoding thread; decoding on the learning thread");
        slr_ring_free(&d->ring);
        slr_job_reader_free(&d->reader);
        pthread_cond_destroy(&d->wake);
        pthread_mutex_destroy(&d->lock);
        return SLR_OK;
    }
    run->dec = d;
    return SLR_OK;
}

/* Hand the decoder a batch (the ring is empty: the last one was gone through). */
static void decoder_give(decoder *d, rd_kafka_message_t **msgs, size_t n)
{
    pthread_mutex_lock(&d->lock);
    d->msgs = msgs;
    d->n = n;
    d->given = true;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
}

/* Stop the decoder, wherever it is in its batch; afterwards the batch's
 * messages may be destroyed. */
static void decoder_stop(kafka_run *run)
{
    decoder *d = run->dec;
    if (!d)
        return;
    run->dec = NULL;
    pthread_mutex_lock(&d->lock);
    d->quit = true;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
    slr_ring_cancel(&d->ring);
    pthread_join(d->thread, NULL);
    slr_ring_free(&d->ring);
    slr_job_reader_free(&d->reader);
    pthread_cond_destroy(&d->wake);
    pthread_mutex_destroy(&d->lock);
}

static void destroy_batch(rd_kafka_message_t **msgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rd_kafka_message_destroy(msgs[i]);
}

/* The END item after a batch: the decoder is done with its messages. */
static void batch_done(kafka_run *run, size_t n)
{
    if (run->dec && n) {
        slr_ring_take(&run->dec->ring);
        slr_ring_release(&run->dec->ring);
    }
}

/* Drop the decoded items of a message that is not applied. */
static void drop_message(kafka_run *run, const rd_kafka_message_t *m)
{
    if (!run->dec || !decoded(m))
        return;
    for (slr_job_item *it = slr_ring_take(&run->dec->ring); it->kind != SLR_ITEM_END;
         it = slr_ring_take(&run->dec->ring))
        slr_ring_release(&run->dec->ring);
    slr_ring_release(&run->dec->ring);
}

/* Learn a message's examples from the ring, up to its END item. */
static slr_status learn_decoded(kafka_run *run, slr_kafka_partition *p, slr_error *err)
{
    slr_ring *ring = &run->dec->ring;
    slr_status st = SLR_OK;
    for (slr_job_item *it = slr_ring_take(ring); it->kind != SLR_ITEM_END;
         it = slr_ring_take(ring)) {
        if (st == SLR_OK) { /* after an error the rest is only taken off the ring */
            slr_apply_result r;
            it->where.name = p->name;
            slr_ring_prefetch_ahead(ring, run->job.learner);
            st = slr_job_learn(&run->job, it, &r, err);
        }
        slr_ring_release(ring);
    }
    slr_ring_release(ring);
    return st;
}

/* Apply every example in one message, then move the partition past it. */
static slr_status apply_message(kafka_run *run, slr_kafka_partition *p,
                                const rd_kafka_message_t *m, slr_error *err)
{
    if (run->dec) {
        slr_status st = learn_decoded(run, p, err);
        if (st != SLR_OK)
            return st;
    } else {
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
    }
    slr_kafka_source_applied(p, m->offset);
    if (run->k->applied)
        run->k->applied(run->k->applied_ctx, p->topic, p->partition, m->offset);
    return SLR_OK;
}

/* --format not given: the first messages with data tell (kafka_job.c); the
 * decoder, idle (it has not been given a batch yet), reads in that format. */
static slr_status detect_format(kafka_run *run, slr_train_options *opt, rd_kafka_message_t **msgs,
                                size_t n, bool *chosen, slr_error *err)
{
    slr_status st = slr_kafka_job_detect_format(&run->job, opt, msgs, n, chosen, err);
    if (st == SLR_OK && *chosen && run->dec) {
        slr_job_reader_free(&run->dec->reader);
        st = slr_job_reader_init(&run->dec->reader, opt, err);
    }
    return st;
}

/* Per-partition lag, in the table style; the status line (a terminal) shows
 * the total itself (job.source.consumer_lag). */
static void print_lag(kafka_run *run)
{
    char line[1024];
    const slr_train_options *opt = run->job.opt;
    if (slr_kafka_source_lag(run->src, line, sizeof line) && opt->progress &&
        opt->progress_style == SLR_PROGRESS_TABLE) {
        slr_progress p = {.event = SLR_PROGRESS_KAFKA, .totals = &run->job.state.metrics,
                          .kafka_lag = line};
        opt->progress(opt->progress_ctx, &p);
    }
}

/* The steps of one turn of the consumer loop, in the order it takes them. */

/* Time to leave the loop: asked to stop, or --exit-at-end and nothing is
 * left to read. */
static bool leaving(kafka_run *run)
{
    return slr_job_should_stop(&run->job) ||
           (run->k->exit_at_end && (slr_kafka_source_at_end(run->src) ||
                                    slr_kafka_source_group_at_end(run->src)));
}

/* Consume: a batch of up to `batch` messages (*n = 0 when none came in
 * POLL_MS), the format told by its first messages if not chosen yet, and the
 * batch handed to the decoder.  On an error the batch is left to end_batch. */
static slr_status consume(kafka_run *run, slr_train_options *opt, rd_kafka_message_t **msgs,
                          size_t batch, bool *format_chosen, size_t *n, slr_error *err)
{
    *n = slr_kafka_source_consume(run->src, msgs, batch, POLL_MS);
    if (!*format_chosen && *n) {
        slr_status st = detect_format(run, opt, msgs, *n, format_chosen, err);
        if (st != SLR_OK)
            return st;
    }
    if (run->dec && *n)
        decoder_give(run->dec, msgs, *n);
    return SLR_OK;
}

/* The error a checkpoint attempt left (dead letters not durable), if any. */
static slr_status fatal_status(kafka_run *run, slr_error *err)
{
    if (run->fatal == SLR_OK)
        return SLR_OK;
    return slr_error_set(err, run->fatal, "%s", run->fatal_err.msg);
}

/* Checkpoint if due by the count or the clock, between two messages
 * (on_durable commits).  Not once stopped: the final one follows. */
static slr_status checkpoint_if_due(kafka_run *run, bool stopped, slr_error *err)
{
    if (!stopped && slr_job_checkpoint_due(&run->job))
        checkpoint(run, false);
    return fatal_status(run, err);
}

/* Apply one message as the source says: apply it whole, count a move of a
 * partition, or skip it. */
static slr_status apply_one(kafka_run *run, rd_kafka_message_t *m, bool stopped, slr_error *err)
{
    slr_kafka_partition *p;
    slr_kafka_take take = stopped ? SLR_KAFKA_SKIP : slr_kafka_source_take(run->src, m, &p, err);
    if (take != SLR_KAFKA_APPLY)
        drop_message(run, m);
    switch (take) {
    case SLR_KAFKA_APPLY:
        if (run->job.records_this_run == 0 && run->job.waiting_seconds == 0)
            run->job.waiting_seconds = slr_monotonic_seconds() - run->job.started;
        return apply_message(run, p, m, err);
    case SLR_KAFKA_MOVED:
        run->job.moves++;
        return SLR_OK;
    case SLR_KAFKA_FAILED:
        return SLR_ERR_KAFKA;
    case SLR_KAFKA_SKIP:
        break;
    }
    return SLR_OK;
}

/* Apply: each message of the batch in order, checkpointing if due after
 * each.  Once a stop is asked for, the rest of the batch stays unapplied. */
static slr_status apply_batch(kafka_run *run, rd_kafka_message_t **msgs, size_t n, bool *stopped,
                              slr_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!*stopped && slr_job_should_stop(&run->job))
            *stopped = true;
        slr_status st = apply_one(run, msgs[i], *stopped, err);
        if (st == SLR_OK)
            st = checkpoint_if_due(run, *stopped, err);
        if (st != SLR_OK)
            return st;
    }
    return SLR_OK;
}

/* The batch's messages go once the decoder, which reads ahead, is done with
 * them -- after an error, once it is stopped (it may still be reading). */
static void end_batch(kafka_run *run, rd_kafka_message_t **msgs, size_t n, slr_status st)
{
    if (st != SLR_OK)
        decoder_stop(run);
    else
        batch_done(run, n);
    destroy_batch(msgs, n);
}

/* The consumer failed for good (e.g. a fatal error from the group). */
static slr_status consumer_failed(kafka_run *run, slr_error *err)
{
    return slr_kafka_source_failed(run->src, err) ? SLR_ERR_KAFKA : SLR_OK;
}

/* After a batch: checkpoint if due by the clock alone (no message came), and
 * commit a background checkpoint that has become durable meanwhile. */
static slr_status checkpoint_if_due_now(kafka_run *run, bool stopped, slr_error *err)
{
    if (!stopped && slr_job_checkpoint_due_now(&run->job))
        checkpoint(run, false); /* on_durable commits */
    if (run->job.writer)
        slr_job_checkpoint_poll(&run->job, false, NULL); /* durable yet? then commit */
    return fatal_status(run, err);
}

/* Report: the lag for the status line and metrics, the idle tick that keeps
 * them fresh when nothing came, and the per-partition lag table. */
static void report(kafka_run *run, size_t n)
{
    run->job.source.consumer_lag = slr_kafka_source_total_lag(run->src);
    run->job.source.retention_lost = run->job.state.metrics.lost;
    if (n == 0)
        slr_job_idle(&run->job);
    print_lag(run);
}

slr_status slr_train_kafka(const slr_train_options *opt_in, const slr_kafka_options *k,
                           slr_train_result *res, slr_error *err)
{
    if (k->sync_topic)
        return slr_train_sync(opt_in, k, res, err);
    kafka_run run = {.k = k};
    decoder dec;
    pthread_t prefaulter;
    bool prefaulting = false;
    slr_train_options opt;
    rd_kafka_message_t **msgs = NULL;
    bool stopped = false;
    slr_status st = slr_train_options_resolve(opt_in, &opt, err);
    if (st != SLR_OK)
        return st;
    bool format_chosen = !opt.format_auto;

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
    if (!format_chosen && run.job.checkpoint_format_known) { /* a resumed job reads on as it did */
        opt.format = run.job.checkpoint_format;
        format_chosen = true;
        slr_job_log(&run.job, "reading --format %s (the checkpoint's)", slr_format_name(opt.format));
        if ((st = slr_job_set_format(&run.job, err)) != SLR_OK)
            goto out;
    }
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

    if (opt.threads >= 2) {
        if ((st = decoder_start(&run, &dec, err)) != SLR_OK)
            goto out;
        /* as in file replay: zero the weight table on the second core */
        prefaulting = run.dec && slr_job_start_thread(&prefaulter, slr_job_prefault_thread,
                                                      run.job.learner);
    }

    /* consume, apply, checkpoint if due, report: one batch a turn */
    while (!stopped && !leaving(&run)) {
        size_t n = 0;
        st = consume(&run, &opt, msgs, batch, &format_chosen, &n, err);
        if (st == SLR_OK)
            st = apply_batch(&run, msgs, n, &stopped, err);
        end_batch(&run, msgs, n, st);
        if (st == SLR_OK)
            st = consumer_failed(&run, err);
        if (st == SLR_OK)
            st = checkpoint_if_due_now(&run, stopped, err);
        if (st != SLR_OK)
            goto out;
        report(&run, n);
    }
    decoder_stop(&run);
    if (prefaulting)
        pthread_join(prefaulter, NULL);
    prefaulting = false;
    stopped = opt.stop && *opt.stop; /* not when --examples or the end was reached */

    /* final checkpoint and model, then commit what they hold, then leave */
    if ((st = slr_kafka_source_note_positions(run.src, err)) != SLR_OK)
        goto out;
    st = slr_job_finish(&run.job, stopped, res, err);
    run.finished = st == SLR_OK;
    if (st == SLR_OK)
        slr_kafka_source_commit(run.src, COMMIT_WAIT_SECONDS);
out:
    decoder_stop(&run);
    if (prefaulting)
        pthread_join(prefaulter, NULL);
    run.done = true; /* the final checkpoint and commit are behind us (or must not happen) */
    slr_kafka_source_close(run.src, k->close_timeout_seconds > 0 ? k->close_timeout_seconds : 10.0);
    free(msgs);
    slr_job_close(&run.job);
    return st;
}
