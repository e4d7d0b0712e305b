/* predict_files.c - scoring files with a fixed model (streamlr predict -i).
 *
 * The same two stages as training (train_files.c, job.h): stage 1 decodes
 * and hashes a record into a ring item with the fast decoders
 * (slr_job_read: slr_decoder_next_example, the compact shortcut), stage 2
 * scores the items in input order, looking a few items ahead to prefetch the
 * weights they touch.  With threads >= 2 stage 1 runs on a thread of its
 * own; otherwise it runs inline a few records ahead.  Both modes see the
 * same items in the same order, so the output is the same.
 *
 * A threaded scorer waiting for items is woken per batch of them (ring.h,
 * slr_ring_set_wake_batch), not per item.
 *
 * With a follower (--follow) the newest checkpoint is looked for and loaded
 * on the follower's own thread (slr_follower_start); the scorer switches to
 * it between records, on one thread, checking every
 * follow_interval_seconds and whenever the input is idle.
 *
 * Predictions are gathered into a buffer and written in large blocks, and
 * the buffer is handed out whenever the input runs dry (a pipe), so a
 * reader downstream is never kept waiting for a block that will not fill.
 * Line i answers record i: a bad record gets "nan". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "ring.h"
#include "streamlr/predict.h"
#include "streamlr/source.h"

#define IDLE_POLL_MS 200  /* how long either stage waits for input at a time */
#define RING_THREADED 256 /* items in flight between the threads */
#define RING_INLINE 8     /* records decoded ahead on one thread */
#define OUT_BLOCK (64u << 10) /* predictions written at once */
/* Scoring an item costs a fraction of decoding it, so a threaded scorer
 * mostly waits; woken per item it would spend more on waking than on
 * scoring.  It is woken per this many items instead. */
#define WAKE_BATCH 64

typedef struct reader {
    slr_file_source *src;
    slr_job_reader rd;
    slr_ring *ring;
    bool text;
    bool done; /* the END item is in the ring */
} reader;

/* Fill `it` with the next record or the END marker; false, with nothing
 * consumed, when the input has no bytes yet (a pipe). */
static bool read_item(reader *r, slr_job_item *it)
{
    slr_status st;
    switch (slr_job_read_file(&r->rd, r->src, r->text, it, &st)) {
    case SLR_JOB_FILE_NEED_INPUT:
        return false;
    case SLR_JOB_FILE_ITEM:
        return true;
    case SLR_JOB_FILE_END:
        break;
    }
    it->kind = SLR_ITEM_END;
    it->status = st;
    return true;
}

static void *reader_thread(void *arg)
{
    reader *r = arg;
    while (!r->done) {
        slr_job_item *it = slr_ring_claim(r->ring);
        while (it && !read_item(r, it)) {
            slr_ring_flush(r->ring); /* the scorer is not to wait for a batch now */
            slr_file_source_wait(r->src, IDLE_POLL_MS);
            if (slr_ring_cancelled(r->ring))
                it = NULL;
        }
        if (!it)
            return NULL; /* cancelled */
        r->done = it->kind == SLR_ITEM_END;
        slr_ring_publish(r->ring);
    }
    slr_ring_flush(r->ring);
    return NULL;
}

/* Decode ahead on the scoring thread; true if it is waiting for input with
 * nothing decoded. */
static bool read_inline(reader *r)
{
    while (!r->done && slr_ring_has_room(r->ring)) {
        slr_job_item *it = slr_ring_claim(r->ring);
        if (!read_item(r, it))
            return slr_ring_peek(r->ring, 0) == NULL;
        r->done = it->kind == SLR_ITEM_END;
        slr_ring_publish(r->ring);
    }
    return false;
}

typedef struct scorer {
    const slr_predict_files_options *opt;
    slr_predict_files_result *res;
    slr_learner *model;  /* opt->model, or the follower's newest */
    uint64_t scored;     /* records, for the --follow clock */
    double next_follow;  /* monotonic time to look for a newer model */
    bool follow_due;     /* look once the ring is empty */
    slr_buf out;
    double *p, *y, *w; /* labelled examples, for the exact AUC */
    uint64_t n, cap;
} scorer;

static slr_status flush_out(scorer *s, bool to_reader, slr_error *err)
{
    FILE *f = s->opt->predictions;
    if (!f)
        return SLR_OK;
    if (s->out.len && fwrite(s->out.data, 1, s->out.len, f) != s->out.len)
        return slr_error_set(err, SLR_ERR_IO, "cannot write the predictions");
    slr_buf_reset(&s->out);
    if (to_reader && fflush(f) != 0)
        return slr_error_set(err, SLR_ERR_IO, "cannot write the predictions");
    return SLR_OK;
}

static slr_status keep_score(scorer *s, double p, double y, double w, slr_error *err)
{
    if (s->n == s->cap) {
        uint64_t cap = s->cap ? s->cap * 2 : 4096;
        double *a[3] = {s->p, s->y, s->w};
        for (int i = 0; i < 3; i++) {
            double *g = realloc(a[i], cap * sizeof *g);
            if (!g)
                return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for the AUC");
            a[i] = g;
        }
        s->p = a[0], s->y = a[1], s->w = a[2];
        s->cap = cap;
    }
    s->p[s->n] = p, s->y[s->n] = y, s->w[s->n] = w;
    s->n++;
    return SLR_OK;
}

static slr_status bad_record(scorer *s, const slr_job_item *it, slr_error *err)
{
    const slr_predict_files_options *o = s->opt;
    char msg[SLR_ERROR_MSG_MAX + 4200];
    if (it->where.line)
        snprintf(msg, sizeof msg, "%s:%llu: %s", it->where.name,
                 (unsigned long long)it->where.line, it->reason.msg);
    else
        snprintf(msg, sizeof msg, "%s@%llu: %s", it->where.name,
                 (unsigned long long)it->where.offset, it->reason.msg);
    s->res->bad++;
    if (o->strict)
        return slr_error_set(err, SLR_ERR_BAD_INPUT, "%s", msg);
    if (o->log)
        o->log(o->log_ctx, msg);
    if (o->predictions)
        return slr_buf_append(&s->out, "nan\n", 4, err);
    return SLR_OK;
}

static slr_status score(scorer *s, const slr_job_item *it, slr_error *err)
{
    const slr_example *ex = &it->ex;
    double z = slr_learner_margin(s->model, ex), p = slr_sigmoid(z);
    slr_status st = SLR_OK;
    if (s->opt->predictions &&
        (st = slr_prediction_line(&s->out, p, it->tag.data, it->tag.len, err)) != SLR_OK)
        return st;
    if (!ex->has_label) {
        s->res->unlabelled++;
        return SLR_OK;
    }
    slr_metrics_add(&s->res->metrics, p, slr_logloss_margin(z, ex->label), ex->label,
                    ex->weight, ex->n_features);
    return s->opt->auc ? keep_score(s, p, ex->label, ex->weight, err) : SLR_OK;
}

/* --follow: switch to a newer checkpoint if there is one.  The ring must be
 * empty: its items hash with the old model's hashing, which goes with it, so
 * they are made again for the new one. */
static void follow(scorer *s, slr_ring *ring)
{
    const slr_predict_files_options *o = s->opt;
    s->follow_due = false;
    s->next_follow = slr_monotonic_seconds() + o->follow_interval_seconds;
    if (!slr_follower_refresh(o->follow))
        return;
    s->model = slr_follower_learner(o->follow);
    for (uint64_t i = 0; i <= ring->mask; i++) {
        slr_job_item_free(&ring->items[i]);
        slr_job_item_init(&ring->items[i], s->model, 0);
    }
    s->res->model_switches++;
    if (o->log) {
        char msg[4200];
        snprintf(msg, sizeof msg, "now scoring with %s (%llu examples learned)",
                 slr_follower_path(o->follow),
                 (unsigned long long)slr_follower_state(o->follow)->metrics.examples);
        o->log(o->log_ctx, msg);
    }
}

/* Stage 2 until the END item or an error. */
static slr_status consume(scorer *s, slr_ring *ring, reader *inline_r, slr_error *err)
{
    slr_status st;
    for (;;) {
        slr_job_item *it;
        if (inline_r) {
            if (s->follow_due && !slr_ring_peek(ring, 0))
                follow(s, ring);
            /* a look for a newer model is due: score what is decoded first */
            if (!s->follow_due && read_inline(inline_r)) { /* no input yet */
                if ((st = flush_out(s, true, err)) != SLR_OK)
                    return st;
                if (s->opt->follow)
                    follow(s, ring); /* the ring is empty */
                slr_file_source_wait(inline_r->src, IDLE_POLL_MS);
                continue;
            }
            it = slr_ring_take(ring);
        } else if (!(it = slr_ring_take_within(ring, IDLE_POLL_MS))) {
            if ((st = flush_out(s, true, err)) != SLR_OK)
                return st;
            continue;
        }
        if (it->kind == SLR_ITEM_END) {
            if (it->status != SLR_OK)
                *err = it->reason;
            return it->status;
        }
        slr_ring_prefetch_ahead(ring, s->model);
        st = it->kind == SLR_ITEM_EXAMPLE ? score(s, it, err)
             : it->kind == SLR_ITEM_BAD   ? bad_record(s, it, err)
                                          : SLR_OK;
        slr_ring_release(ring);
        if (st != SLR_OK)
            return st;
        if (s->opt->follow && (s->scored++ & 255) == 0 &&
            slr_monotonic_seconds() >= s->next_follow)
            s->follow_due = true;
        if (s->out.len >= OUT_BLOCK && (st = flush_out(s, false, err)) != SLR_OK)
            return st;
    }
}

void slr_predict_files_options_init(slr_predict_files_options *o)
{
    memset(o, 0, sizeof *o);
    o->format = SLR_FORMAT_VW;
    o->threads = 1;
}

slr_status slr_predict_files(const slr_predict_files_options *opt, slr_predict_files_result *res,
                             slr_error *err)
{
    memset(res, 0, sizeof *res);
    slr_metrics_init(&res->metrics);
    res->auc = NAN;
    if (!opt->model == !opt->follow || !opt->files || opt->n_files == 0)
        return slr_error_set(err, SLR_ERR_ARG,
                             "slr_predict_files needs files and a model or a follower");
    /* Stage 1 is training's: its reader takes train options (format, tags);
     * the ring's items hash with the model's hashing. */
    slr_train_options topt;
    slr_train_options_init(&topt);
    topt.format = opt->format;
    topt.predictions = opt->predictions; /* keeps the tags */
    reader r = {0};
    slr_ring ring = {0};
    scorer s = {0};
    s.opt = opt;
    s.res = res;
    s.model = opt->model ? opt->model : slr_follower_learner(opt->follow);
    slr_buf_init(&s.out);
    pthread_t thread;
    bool threaded = false;
    slr_status st;
    if (opt->follow) {
        s.next_follow = slr_monotonic_seconds() + opt->follow_interval_seconds;
        s.follow_due = true; /* as soon as the first record is scored */
    }
    r.text = slr_format_is_text(opt->format);
    /* new checkpoints are read on the follower's thread: a switch is a swap */
    if ((opt->follow &&
         (st = slr_follower_start(opt->follow, opt->follow_interval_seconds, err)) != SLR_OK) ||
        (st = slr_job_reader_init(&r.rd, &topt, err)) != SLR_OK ||
        (st = slr_file_source_open(&r.src, opt->files, opt->n_files, r.text, err)) != SLR_OK ||
        (st = slr_buf_reserve(&s.out, OUT_BLOCK + 4096, err)) != SLR_OK)
        goto out;
    /* --follow switches models between records with nothing decoded ahead,
     * which the scoring thread can arrange only when it also decodes */
    bool want_thread = opt->threads >= 2 && !opt->follow;
    if ((st = slr_ring_init(&ring, want_thread ? RING_THREADED : RING_INLINE, s.model, 0,
                            want_thread, err)) != SLR_OK)
        goto out;
    r.ring = &ring;
    slr_ring_set_wake_batch(&ring, WAKE_BATCH);
    threaded = want_thread && slr_job_start_thread(&thread, reader_thread, &r);
    if (want_thread && !threaded && opt->log)
        opt->log(opt->log_ctx, "cannot start the decoding thread; decoding on the scoring thread");
    st = consume(&s, &ring, threaded ? NULL : &r, err);
    if (threaded) {
        slr_ring_cancel(&ring);
        pthread_join(thread, NULL);
    }
    slr_status fst = flush_out(&s, true, st == SLR_OK ? err : NULL);
    if (st == SLR_OK)
        st = fst;
    res->examples = res->metrics.examples + res->unlabelled;
    if (s.n)
        res->auc = slr_auc(s.p, s.y, s.w, s.n);
out:
    slr_ring_free(&ring);
    slr_job_reader_free(&r.rd);
    slr_file_source_close(r.src);
    slr_buf_free(&s.out);
    free(s.p);
    free(s.y);
    free(s.w);
    return st;
}
