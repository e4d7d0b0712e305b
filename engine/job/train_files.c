/* train_files.c - replaying an event log from files.
 *
 * Two stages (job.h) joined by a ring (ring.h).  The producer takes the
 * window of unread bytes, decodes and hashes the record at its front into
 * the next item, drops the bytes it used and notes the position after them.
 * The consumer takes the items in order, learns them, and checkpoints when
 * due -- the position stored is the one after the last item learned, so a
 * resumed replay applies every record exactly once.
 *
 * With opt->threads >= 2 the producer runs on a thread of its own and the
 * ring is deep; otherwise the consumer runs it inline to keep a few records
 * decoded ahead.  Either way the consumer looks a few items ahead to prefetch
 * the weights they touch, so their memory latency overlaps the learning of
 * the current one.  Stage 2 sees the same items in the same order in both
 * modes, so results, checkpoints and their positions are identical.
 *
 * A pipe or FIFO may have no input for a while.  Neither stage then sleeps
 * in read(): the producer waits in short polls (and notices a cancel), the
 * consumer waits for items in short waits, keeping the metrics fresh
 * (slr_job_idle) and noticing a stop request.
 *
 * With --passes N the producer reopens the files at the end of each pass
 * but the last, and marks every holdout_period-th example of each pass as
 * held out (VW's holdout): stage 2 scores those and never learns them. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "job.h"
#include "learner/learner_impl.h"
#include "ring.h"
#include "streamlr/source.h"
#include "streamlr/train.h"

#define IDLE_POLL_MS 200  /* how long either stage waits for input at a time */
#define RING_THREADED 256 /* items in flight between the threads */
#define RING_INLINE 8     /* records decoded ahead on one thread */

typedef struct producer {
    slr_file_source *src;
    const slr_train_options *opt;
    uint32_t pass, passes;   /* the pass being read (from 1) and how many */
    uint32_t holdout_period; /* 0: nothing held out */
    uint64_t in_pass;        /* examples read in this pass */
    slr_job_reader reader;
    slr_ring *ring;
    bool text;
    bool done; /* the END item is in the ring */
} producer;

/* Fill `it` with the next record, or with the END marker (end of input, or
 * a read error in it->status / it->reason).  False, with nothing consumed,
 * when the input has no bytes to read yet (a pipe): the caller waits and
 * calls again. */
static bool produce(producer *pr, slr_job_item *it)
{
    slr_file_source *src = pr->src;
    slr_status st = SLR_OK;
next_pass:
    switch (slr_job_read_file(&pr->reader, src, pr->text, it, &st)) {
    case SLR_JOB_FILE_NEED_INPUT:
        return false;
    case SLR_JOB_FILE_ITEM:
        slr_file_source_position(src, &it->after);
        it->pass = pr->pass;
        it->holdout = it->kind == SLR_ITEM_EXAMPLE && pr->holdout_period &&
                      ++pr->in_pass % pr->holdout_period == 0;
        return true;
    case SLR_JOB_FILE_END:
        break;
    }
    if (st == SLR_OK && pr->pass < pr->passes) {
        slr_file_source_close(pr->src);
        pr->src = NULL;
        st = slr_file_source_open(&pr->src, pr->opt->files, pr->opt->n_files, pr->text,
                                  &it->reason);
        if (st == SLR_OK) {
            src = pr->src;
            pr->pass++;
            pr->in_pass = 0;
            goto next_pass;
        }
    }
    it->kind = SLR_ITEM_END;
    it->status = st;
    if (src)
        slr_file_source_position(src, &it->after);
    return true;
}

/* Produce one item into the ring (the producer thread: waiting for input in
 * short polls until cancelled). */
static void produce_into_ring(producer *pr)
{
    slr_job_item *it = slr_ring_claim(pr->ring);
    while (it && !produce(pr, it)) {
        slr_file_source_wait(pr->src, IDLE_POLL_MS);
        if (slr_ring_cancelled(pr->ring))
            it = NULL;
    }
    if (!it) {
        pr->done = true; /* cancelled */
        return;
    }
    pr->done = it->kind == SLR_ITEM_END;
    slr_ring_publish(pr->ring);
}

/* Decode ahead on the learning thread while the ring has room and the input
 * has bytes; true if it is waiting for input with nothing decoded. */
static bool produce_inline(producer *pr)
{
    while (!pr->done && slr_ring_has_room(pr->ring)) {
        slr_job_item *it = slr_ring_claim(pr->ring);
        if (!produce(pr, it))
            return slr_ring_peek(pr->ring, 0) == NULL;
        pr->done = it->kind == SLR_ITEM_END;
        slr_ring_publish(pr->ring);
    }
    return false;
}

static void *producer_thread(void *arg)
{
    producer *pr = arg;
    while (!pr->done)
        produce_into_ring(pr);
    return NULL;
}


/* The position after an item, keeping the records count stage 2 keeps. */
static void set_position(slr_job *job, const slr_file_position *after)
{
    job->state.file.file_index = after->file_index;
    job->state.file.offset = after->offset;
    job->state.file.line = after->line;
}

/* Stage 2 until the END item, a stop request or an error.  `inline_pr` is
 * the producer when it runs on this thread. */
static slr_status consume(slr_job *job, slr_ring *ring, producer *inline_pr, bool *stopped,
                          slr_error *err)
{
    const slr_train_options *opt = job->opt;
    for (;;) {
        if (slr_job_should_stop(job)) {
            *stopped = opt->stop && *opt->stop; /* not when --examples was reached */
            return SLR_OK;
        }
        slr_job_item *it;
        if (inline_pr) {
            if (produce_inline(inline_pr)) { /* no input yet */
                if (!slr_file_source_wait(inline_pr->src, IDLE_POLL_MS))
                    slr_job_idle(job);
                continue;
            }
            it = slr_ring_take(ring);
        } else if (!(it = slr_ring_take_within(ring, IDLE_POLL_MS))) {
            slr_job_idle(job);
            continue;
        }
        if (it->kind == SLR_ITEM_END) {
            set_position(job, &it->after);
            if (it->status != SLR_OK && err)
                *err = it->reason;
            return it->status;
        }
        slr_ring_prefetch_ahead(ring, job->learner);
        slr_apply_result r;
        slr_status st = slr_job_learn(job, it, &r, err);
        set_position(job, &it->after);
        slr_ring_release(ring);
        if (st != SLR_OK)
            return st;
        if (slr_job_checkpoint_due(job)) {
            /* a failed write is logged and retried next period; an error
             * here means the dead letters could not be made durable */
            if ((st = slr_job_checkpoint(job, err)) != SLR_OK)
                return st;
        } else if (job->writer && (job->records_this_run & 1023) == 0)
            slr_job_checkpoint_poll(job, false, NULL); /* one waitpid per 1024 records */
    }
}

/* --passes: the input must be there to read again, and a checkpoint could
 * not say which pass it was taken in. */
static slr_status check_passes(const slr_train_options *opt, slr_error *err)
{
    if (opt->passes <= 1)
        return SLR_OK;
    if (opt->checkpoint_dir || opt->resume)
        return slr_error_set(err, SLR_ERR_ARG, "--passes replays the files from the start and "
                             "takes no --checkpoint-dir (a checkpoint records one position in "
                             "one pass); write the model with -f");
    for (uint32_t i = 0; i < opt->n_files; i++)
        if (!strcmp(opt->files[i], "-"))
            return slr_error_set(err, SLR_ERR_ARG, "--passes reads the input again; stdin (-) "
                                 "can be read only once: give a file");
    return SLR_OK;
}

#define DETECT_BYTES (64u << 10) /* what format detection looks at */

/* --format not given: a resumed run reads on in its checkpoint's format;
 * otherwise the first bytes of the first file tell (read into the source's
 * window, so a pipe loses nothing); opt->format when they do not. */
static slr_status choose_format(slr_job *job, slr_train_options *opt, slr_file_source *src,
                                slr_error *err)
{
    const char *why = "the checkpoint's";
    char because[1024];
    bool told = true;
    if (job->checkpoint_format_known) {
        opt->format = job->checkpoint_format;
    } else {
        const char *buf;
        size_t len;
        bool at_end;
        slr_status st;
        for (;;) {
            slr_file_source_window(src, &buf, &len, &at_end);
            if (len >= DETECT_BYTES || at_end || (opt->stop && *opt->stop))
                break;
            if (!slr_file_source_wait(src, IDLE_POLL_MS))
                continue;
            if ((st = slr_file_source_fill(src, err)) != SLR_OK)
                return st;
        }
        slr_format f;
        if (slr_format_detect(buf, len, &f)) {
            opt->format = f;
            snprintf(because, sizeof because, "detected from the content of %s",
                     slr_file_source_path(src));
        } else {
            snprintf(because, sizeof because, "%s does not tell%s; give --format to choose",
                     slr_file_source_path(src), len ? "" : ": it is empty");
            told = false;
        }
        why = because;
    }
    /* what was told is news only to a caller that follows progress (not to
     * --quiet); a guess is a warning */
    if (!told || opt->progress)
        slr_job_log(job, "reading --format %s (%s)", slr_format_name(opt->format), why);
    return slr_job_set_format(job, err);
}

slr_status slr_train_files(const slr_train_options *opt_in, slr_train_result *res, slr_error *err)
{
    slr_train_options opt_full;
    slr_status st = slr_train_options_resolve(opt_in, &opt_full, err);
    if (st != SLR_OK)
        return st;
    const slr_train_options *opt = &opt_full;
    st = check_passes(opt, err);
    if (st != SLR_OK)
        return st;
    slr_job job;
    producer pr = {0};
    slr_ring ring = {0};
    pthread_t thread, prefaulter;
    bool threaded = false, stopped = false;
    st = slr_job_open(&job, opt, err);
    if (st != SLR_OK)
        goto out;
    if (job.state.source == SLR_SOURCE_NONE)
        st = slr_job_state_set_files(&job.state, opt->files, opt->n_files, err);
    if (st != SLR_OK)
        goto out;
    pr.text = slr_format_is_text(opt->format) || opt->format_auto;
    pr.opt = opt;
    pr.pass = 1;
    pr.passes = opt->passes > 1 ? opt->passes : 1;
    pr.holdout_period = pr.passes > 1 ? opt->holdout_period : 0;
    st = slr_file_source_open(&pr.src, opt->files, opt->n_files, pr.text, err);
    if (st != SLR_OK)
        goto out;
    if (opt->format_auto) {
        if ((st = choose_format(&job, &opt_full, pr.src, err)) != SLR_OK)
            goto out;
        pr.text = slr_format_is_text(opt->format);
        slr_file_source_count_lines(pr.src, pr.text);
    }
    if (job.state.file.file_index > 0 || job.state.file.offset > 0) {
        if ((st = slr_file_source_seek(pr.src, &job.state.file, err)) != SLR_OK)
            goto out;
        slr_job_log(&job, "continuing %s at byte %llu (line %llu)", slr_file_source_path(pr.src),
                    (unsigned long long)job.state.file.offset,
                    (unsigned long long)job.state.file.line);
    }
    slr_file_position at;
    slr_file_source_position(pr.src, &at);
    set_position(&job, &at);
    if ((st = slr_job_start(&job, err)) != SLR_OK) /* a first checkpoint, with a dead-letter sink */
        goto out;
    if ((st = slr_job_reader_init(&pr.reader, opt, err)) != SLR_OK)
        goto out;
    threaded = opt->threads >= 2;
    if ((st = slr_ring_init(&ring, threaded ? RING_THREADED : RING_INLINE, job.learner,
                            opt->max_features, threaded, err)) != SLR_OK)
        goto out;
    pr.ring = &ring;
    if (threaded && !(threaded = slr_job_start_thread(&thread, producer_thread, &pr)))
        slr_job_log(&job, "cannot start the decoding thread; decoding on the learning thread");
    /* with a second core, zero the weight table there rather than page by
     * page under the learner */
    bool prefaulting = threaded && slr_job_start_thread(&prefaulter, slr_job_prefault_thread, job.learner);

    st = consume(&job, &ring, threaded ? NULL : &pr, &stopped, err);
    if (threaded) {
        slr_ring_cancel(&ring);
        pthread_join(thread, NULL);
    }
    if (prefaulting)
        pthread_join(prefaulter, NULL);
    if (st == SLR_OK)
        st = slr_job_finish(&job, stopped, res, err);
    if (st == SLR_OK) {
        res->holdout_examples = job.holdout_examples;
        res->holdout_weight = job.holdout_weight;
        res->holdout_loss = job.holdout_weight > 0 ? job.holdout_loss / job.holdout_weight : 0;
    }
out:
    slr_ring_free(&ring);
    slr_job_reader_free(&pr.reader);
    slr_file_source_close(pr.src);
    slr_job_close(&job);
    return st;
}
