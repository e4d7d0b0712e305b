/* predict_kafka.c - scoring a topic into another one (see predict.h,
 * docs/KAFKA.md "Scoring a topic").
 *
 * The consumer is the training job's (kafka_source.c): it decides which
 * messages are new and where partitions start.  Each message is scored
 * whole and its predictions are produced asynchronously; what may be
 * committed is decided by the producer's delivery reports:
 *
 * - every output message (and every end-of-partition move) takes the next
 *   slot of a ring, in consumption order, remembering the input offset that
 *   becomes committable once it is acknowledged;
 * - delivery reports mark slots (they may come back out of order across
 *   output partitions); the oldest slots are retired while they are
 *   acknowledged, moving that partition's committable offset in `acked`;
 * - `acked` is committed every commit interval, on revocation and at the
 *   end -- never the consumer's own position, which runs ahead of it.
 *
 * Unlike training, where the checkpoint says where a partition starts, the
 * group's committed offset is the truth here: the source is given an empty
 * state, so every assignment starts at the committed offset.  A revocation
 * commits what is acknowledged and then forgets `acked` (and any slot still
 * outstanding from before it): a partition that comes back later may have
 * been scored further by another member, and a stale offset of ours must
 * never be committed over its progress.
 *
 * So an input offset is committed only when the predictions of it and of
 * everything before it in its partition are on the broker: at-least-once.
 * A failed delivery stops the ring at that slot and the job with an error;
 * a restart re-scores from there.  A full ring (too many unacknowledged
 * outputs) waits for deliveries instead of consuming further.
 *
 * Scoring itself is file scoring's (predict_files.c): a consumed batch is
 * taken a chunk of messages at a time; stage 1 decodes and hashes every
 * record of the chunk into a pool of job items (slr_job_read, the same
 * decoders and fast paths), stage 2 scores each message's items, looking a
 * few items ahead to prefetch their weights, and produces its output.
 * Nothing is allocated per message on our side once the pool has grown;
 * the input's headers are handed over to the output, not copied.  The
 * model changes only at model_switch_point, between chunks (so between
 * messages) and when the input is idle: a --follow model read on the
 * follower's thread is taken there by swapping a pointer, and any other
 * source of a newer model belongs there too. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "ring.h"
#include "source/kafka_source.h"
#include "streamlr/checkpoint.h"
#include "streamlr/example.h"
#include "streamlr/learner.h"
#include "streamlr/predict.h"

#define BATCH_MAX 100000
#define POLL_MS 100            /* a consume call's wait: bounds reaction to a stop */
#define RING_SIZE (1u << 16)   /* unacknowledged outputs at most (a power of two) */
#define BAD_SHOWN 100          /* bad records logged one by one; the rest are counted */
#define COMMIT_WAIT_SECONDS 5.0

enum { SLOT_IN_FLIGHT, SLOT_DONE, SLOT_FAILED };

typedef struct slot {
    uint32_t topic;    /* index into in->topics */
    int32_t partition;
    int64_t next;      /* the input offset committable once this is acknowledged */
    uint8_t state;
} slot;

/* An item's record within its message's payload. */
typedef struct record_span {
    size_t at, len;
} record_span;

typedef struct predict_run {
    const slr_predict_options *opt;
    const slr_kafka_options *in;
    slr_kafka_source *src;
    rd_kafka_t *producer;
    rd_kafka_topic_t *out_rkt;

    slr_learner *model;       /* -i */
    slr_follower *follower;   /* --follow, --follow-topic */
    slr_learner *scorer;      /* whichever of the two scores */
    const char *model_name;   /* basename of its file (or the sync topic position), for
                                 the streamlr.model header */
    ssize_t model_name_len;
    slr_job_reader reader;    /* stage 1: file scoring's decoders */
    slr_job_item *items;      /* the records of the messages being scored, in order */
    record_span *spans;       /* where each item's record lies in its message */
    size_t n_items, items_cap;
    struct batch_entry *entries; /* per consumed message: what to do with it */
    slr_buf out;              /* one output message's value */
    slr_auc_histogram *hist;

    slot *ring;
    uint64_t head, tail;      /* slots [head, tail) are not retired */
    slr_job_state acked;      /* committable input offsets */
    uint64_t forget_before;   /* slots below this were taken before a revocation */
    slr_job_state src_state;  /* the source's: empty, so partitions start at the committed
                                 offset; it counts offsets lost to retention */
    bool acked_moved;         /* since the last commit */
    bool delivery_failed;
    char failure[SLR_ERROR_MSG_MAX]; /* the first failed delivery (or fatal producer error) */
    bool outage_said;

    slr_predict_result *res;
    uint32_t last_topic;      /* lookup cache for topic_index */
} predict_run;

void slr_predict_options_init(slr_predict_options *o)
{
    memset(o, 0, sizeof *o);
    o->format = SLR_FORMAT_MSGPACK;
}

static void say(predict_run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(predict_run *run, const char *fmt, ...)
{
    if (!run->opt->log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    run->opt->log(run->opt->log_ctx, msg);
}

/* One -X list serves both clients; each says the other's properties are
 * ignored, which is expected here. */
static bool shared_config_warning(const char *msg)
{
    return strstr(msg, "will be ignored by this") != NULL;
}

static void source_log(void *ctx, const char *msg)
{
    predict_run *run = ctx;
    if (!shared_config_warning(msg))
        say(run, "%s", msg);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ------------------------------------------------------------ the ring */

static uint32_t topic_index(predict_run *run, const char *topic)
{
    if (!strcmp(run->in->topics[run->last_topic], topic))
        return run->last_topic;
    for (uint32_t t = 0; t < run->in->n_topics; t++)
        if (!strcmp(run->in->topics[t], topic))
            return run->last_topic = t;
    return 0; /* cannot happen: the source consumes only these topics */
}

/* Retire the oldest slots while they are acknowledged. */
static void retire(predict_run *run)
{
    while (run->head < run->tail) {
        slot *s = &run->ring[run->head & (RING_SIZE - 1)];
        if (s->state != SLOT_DONE)
            break; /* in flight, or failed: nothing after it may be committed */
        slr_error err;
        if (run->head >= run->forget_before) {
            if (slr_job_state_set_kafka_offset(&run->acked, run->in->topics[s->topic],
                                               s->partition, s->next, &err) != SLR_OK) {
                say(run, "cannot record an acknowledged offset: %s", err.msg);
                break;
            }
            run->acked_moved = true;
        }
        run->head++;
    }
}

static void serve_producer(predict_run *run, int timeout_ms)
{
    rd_kafka_poll(run->producer, timeout_ms); /* delivery reports, logs, errors */
    retire(run);
}

/* A slot for the next output (or move); waits for deliveries while the
 * ring is full.  NULL when waiting cannot help (a delivery failed). */
static slot *take_slot(predict_run *run, const slr_kafka_partition *p)
{
    while (run->tail - run->head == RING_SIZE) {
        if (run->delivery_failed)
            return NULL;
        serve_producer(run, POLL_MS);
    }
    slot *s = &run->ring[run->tail & (RING_SIZE - 1)];
    s->topic = topic_index(run, p->topic);
    s->partition = p->partition;
    s->next = p->next;
    s->state = SLOT_IN_FLIGHT;
    return s;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    predict_run *run = opaque;
    uint64_t seq = (uint64_t)(uintptr_t)m->_private;
    slot *s = &run->ring[seq & (RING_SIZE - 1)];
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        s->state = SLOT_DONE;
        run->res->delivered++;
        return;
    }
    s->state = SLOT_FAILED;
    if (!run->delivery_failed)
        snprintf(run->failure, sizeof run->failure,
                 "delivering predictions to %s failed: %s (the input offsets from there on "
                 "are not committed; a restart scores them again)",
                 run->opt->output_topic, rd_kafka_err2str(m->err));
    run->delivery_failed = true;
}

static void on_producer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    predict_run *run = opaque;
    char buf[400];
    switch (slr_kafka_error_classify(rk, err, buf, sizeof buf)) {
    case SLR_KAFKA_ERROR_FATAL:
        if (!run->delivery_failed)
            snprintf(run->failure, sizeof run->failure, "the Kafka producer failed: %s", buf);
        run->delivery_failed = true;
        break;
    case SLR_KAFKA_ERROR_OUTAGE:
        if (!run->outage_said)
            say(run, "kafka producer: all brokers are down (%s); predictions wait in memory, "
                     "offsets are not committed past them", reason);
        run->outage_said = true;
        break;
    case SLR_KAFKA_ERROR_QUIET: break;
    case SLR_KAFKA_ERROR_REPORT: say(run, "kafka producer: %s", reason); break;
    }
}

static void on_producer_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)level;
    predict_run *run = rd_kafka_opaque(rk);
    if (run && !shared_config_warning(buf))
        say(run, "kafka producer: %s: %s", fac, buf);
}

/* ------------------------------------------------------------ committing */

/* Commit what the acknowledged outputs cover (dead letters made durable
 * first: a committed offset must not outrun a bad record's letter). */
static void commit_acked(predict_run *run, double wait_seconds)
{
    if (!run->acked_moved)
        return;
    slr_dead_letter_sink *dl = run->opt->dead_letters;
    if (dl) {
        uint64_t pos;
        slr_error err;
        if (dl->sync(dl, &pos, &err) != SLR_OK) {
            say(run, "dead letters not durable (%s): offsets not committed", err.msg);
            return;
        }
    }
    run->acked_moved = false;
    slr_kafka_source_commit_state(run->src, &run->acked, wait_seconds);
}

/* Wait (bounded) until every output produced so far is acknowledged or
 * has failed. */
static void drain(predict_run *run, double seconds)
{
    double until = slr_monotonic_seconds() + seconds;
    while (run->head < run->tail && !run->delivery_failed && slr_monotonic_seconds() < until)
        serve_producer(run, POLL_MS);
    serve_producer(run, 0);
}

/* Partitions are about to be taken away: what has been produced for them
 * is delivered and committed first, so the next owner re-scores little. */
static bool release_hook(void *ctx)
{
    predict_run *run = ctx;
    double t = run->in->close_timeout_seconds > 0 ? run->in->close_timeout_seconds : 10.0;
    drain(run, t);
    commit_acked(run, COMMIT_WAIT_SECONDS);
    slr_job_state_free(&run->acked);
    slr_job_state_init(&run->acked);
    run->acked_moved = false;
    run->forget_before = run->tail;
    return false; /* the source's own positions run ahead of what is acknowledged */
}

/* ------------------------------------------------------------ scoring */

static void bad_record(predict_run *run, const slr_kafka_partition *p,
                       const rd_kafka_message_t *m, const char *data, size_t len,
                       slr_bad_reason why, bool truncated, const slr_error *reason)
{
    slr_predict_result *res = run->res;
    if (res->bad < BAD_SHOWN)
        say(run, "%s@%lld: %s", p->name, (long long)m->offset, reason->msg);
    else if (res->bad == BAD_SHOWN)
        say(run, "more bad records: counted, not shown");
    res->bad++;
    slr_dead_letter_sink *dl = run->opt->dead_letters;
    if (!dl)
        return;
    slr_dead_letter d = {why, reason->msg, p->name, (uint64_t)m->offset, 0, true,
                         slr_format_name(run->opt->format), data, len, truncated};
    slr_error err;
    if (dl->put(dl, &d, &err) == SLR_OK)
        res->dead_lettered++;
    else
        say(run, "dead letter for %s@%lld not written: %s", p->name, (long long)m->offset,
            err.msg);
}

/* The item pool holds at least n items, made on the scorer's hashing. */
static slr_status reserve_items(predict_run *run, size_t n, slr_error *err)
{
    if (n <= run->items_cap)
        return SLR_OK;
    size_t cap = run->items_cap ? run->items_cap * 2 : 64;
    while (cap < n)
        cap *= 2;
    slr_job_item *items = realloc(run->items, cap * sizeof *items);
    if (items)
        run->items = items;
    record_span *spans = items ? realloc(run->spans, cap * sizeof *spans) : NULL;
    if (!spans)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for a message's examples");
    run->spans = spans;
    for (size_t i = run->items_cap; i < cap; i++)
        slr_job_item_init(&items[i], run->scorer, 0);
    run->items_cap = cap;
    return SLR_OK;
}

/* Stage 1 for one message: every record of it decoded and hashed into the
 * next items of the pool (the decoders and items file scoring uses). */
static slr_status read_message(predict_run *run, const rd_kafka_message_t *m,
                               const slr_kafka_partition *p, slr_error *err)
{
    const char *buf = m->payload;
    size_t len = buf ? m->len : 0;
    slr_where where = {p->name, 0, (uint64_t)m->offset, true};
    while (len > 0) {
        slr_status st = reserve_items(run, run->n_items + 1, err);
        if (st != SLR_OK)
            return st;
        size_t used = 0;
        slr_job_item *it = &run->items[run->n_items];
        if (!slr_job_read(&run->reader, buf, len, true, &where, &used, it) || used == 0 ||
            used > len)
            break; /* cannot happen with at_end; never loop on it */
        run->spans[run->n_items++] = (record_span){(size_t)(buf - (const char *)m->payload), used};
        buf += used;
        len -= used;
    }
    return SLR_OK;
}

static void score_item(predict_run *run, const slr_job_item *it, slr_error *err, slr_status *st)
{
    slr_predict_result *res = run->res;
    const slr_example *ex = &it->ex;
    double z = slr_learner_margin(run->scorer, ex), pr = slr_sigmoid(z);
    *st = slr_prediction_line(&run->out, pr, it->tag.data, it->tag.len, err);
    res->examples++;
    if (ex->has_label) {
        slr_metrics_add(&res->metrics, pr, slr_logloss_margin(z, ex->label), ex->label,
                        ex->weight, ex->n_features);
        slr_auc_histogram_add(run->hist, pr, ex->label, ex->weight);
    } else {
        res->metrics.unlabelled++;
    }
}

/* Stage 2 for one message: its items [first, end) into run->out, a
 * prediction line per example, "nan\n" per bad record (a run of bytes
 * skipped to find the next msgpack object is one), prefetching the items
 * after them. */
static slr_status score_message(predict_run *run, const slr_kafka_partition *p,
                                const rd_kafka_message_t *m, size_t first, size_t end,
                                slr_error *err)
{
    const char *payload = m->payload;
    const slr_job_item *junk = NULL; /* the first item of the current run of skipped bytes */
    size_t junk_at = 0, junk_len = 0;
    slr_status st = SLR_OK;
    slr_buf_reset(&run->out);
    for (size_t i = first; i < end && st == SLR_OK; i++) {
        const slr_job_item *it = &run->items[i];
        const record_span *at = &run->spans[i];
        slr_job_prefetch(run->scorer,
                         i + SLR_PREFETCH_FEATURES < run->n_items
                             ? &run->items[i + SLR_PREFETCH_FEATURES] : NULL,
                         i + SLR_PREFETCH_WEIGHTS < run->n_items
                             ? &run->items[i + SLR_PREFETCH_WEIGHTS] : NULL);
        bool skipped = it->kind == SLR_ITEM_BAD && it->resync;
        if (junk && !skipped) {
            bad_record(run, p, m, payload + junk_at, junk_len, SLR_BAD_JUNK, false,
                       &junk->reason);
            junk = NULL;
        }
        if (skipped) {
            if (!junk) {
                junk = it;
                junk_at = at->at;
                junk_len = 0;
                st = slr_buf_append(&run->out, "nan\n", 4, err);
            }
            junk_len += at->len;
        } else if (it->kind == SLR_ITEM_BAD) {
            bad_record(run, p, m, payload + at->at, at->len, it->why, it->truncated, &it->reason);
            st = slr_buf_append(&run->out, "nan\n", 4, err);
        } else if (it->kind == SLR_ITEM_EXAMPLE) {
            score_item(run, it, err, &st);
        }
    }
    if (junk)
        bad_record(run, p, m, payload + junk_at, junk_len, SLR_BAD_JUNK, false, &junk->reason);
    return st;
}

/* Produce run->out for input message m of partition p, taking slot s. */
/* "topic[partition]@offset" into buf (of at least 600 bytes), without
 * printf's cost per message; returns its length. */
static size_t source_of(char *buf, const slr_kafka_partition *p, int64_t offset)
{
    size_t n = strnlen(p->name, 512);
    memcpy(buf, p->name, n);
    buf[n++] = '@';
    char digits[24];
    size_t k = 0;
    uint64_t v = offset < 0 ? 0 : (uint64_t)offset; /* a consumed message's offset is >= 0 */
    do
        digits[k++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (k)
        buf[n++] = digits[--k];
    return n;
}

static slr_status produce(predict_run *run, const slr_kafka_partition *p,
                          rd_kafka_message_t *m, slr_error *err)
{
    slot *s = take_slot(run, p);
    if (!s)
        return slr_error_set(err, SLR_ERR_KAFKA, "%s", run->failure);
    /* the input's headers are taken over, not copied: m is destroyed next */
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_detach_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR || !h)
        h = rd_kafka_headers_new(2);
    char where[600];
    rd_kafka_header_add(h, "streamlr.source", 15, where, (ssize_t)source_of(where, p, m->offset));
    rd_kafka_header_add(h, "streamlr.model", 14, run->model_name, run->model_name_len);
    int32_t part = run->opt->output_partition == SLR_OUTPUT_SAME ? p->partition
                                                                 : RD_KAFKA_PARTITION_UA;
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            run->producer, RD_KAFKA_V_RKT(run->out_rkt), RD_KAFKA_V_PARTITION(part),
            RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(run->out.data, run->out.len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_OPAQUE((void *)(uintptr_t)run->tail), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            break; /* the headers are the producer's now */
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || run->delivery_failed) {
            rd_kafka_headers_destroy(h);
            if (run->delivery_failed)
                return slr_error_set(err, SLR_ERR_KAFKA, "%s", run->failure);
            if (part != RD_KAFKA_PARTITION_UA)
                return slr_error_set(err, SLR_ERR_KAFKA,
                                     "producing the predictions of %s to partition %d of %s: "
                                     "%s (--output-partition same needs as many partitions)",
                                     p->name, (int)part, run->opt->output_topic,
                                     rd_kafka_err2str(e));
            return slr_error_set(err, SLR_ERR_KAFKA, "producing the predictions of %s to %s: %s",
                                 p->name, run->opt->output_topic, rd_kafka_err2str(e));
        }
        serve_producer(run, POLL_MS); /* deliveries free room in the queue */
    }
    run->tail++;
    run->res->messages++;
    return SLR_OK;
}

/* A position moved without a message (end of partition): committable once
 * everything before it is. */
static void moved(predict_run *run, const slr_kafka_partition *p)
{
    slot *s = take_slot(run, p);
    if (s) {
        s->state = SLOT_DONE;
        run->tail++;
    }
}

static void set_model_name(predict_run *run, const char *name)
{
    run->model_name = name;
    run->model_name_len = (ssize_t)strlen(run->model_name);
}

/* The one place where the scoring model may change: between messages, with
 * no item decoded (items hash with the model's hashing, which goes with
 * it).  --follow: the follower's thread has read a newer checkpoint; taking
 * it is a pointer swap, and the old model is freed on that thread. */
static void model_switch_point(predict_run *run)
{
    if (!run->follower || !slr_follower_refresh(run->follower))
        return;
    run->scorer = slr_follower_learner(run->follower);
    for (size_t i = 0; i < run->items_cap; i++) { /* remade on the new model's hashing */
        slr_job_item_free(&run->items[i]);
        slr_job_item_init(&run->items[i], run->scorer, 0);
    }
    set_model_name(run, slr_follower_name(run->follower));
    run->res->model_switches++;
    say(run, "now scoring with %s (%llu examples learned)", slr_follower_path(run->follower),
        (unsigned long long)slr_follower_state(run->follower)->metrics.examples);
}

/* Records decoded ahead of scoring: enough to prefetch for (a few items
 * ahead), few enough for the items to stay in cache -- file scoring decodes
 * 8 ahead (RING_INLINE). */
#define CHUNK_ITEMS 16

/* A consumed message, between the stages. */
typedef struct batch_entry {
    slr_kafka_take act;
    slr_kafka_partition *p;
    size_t first, end; /* APPLY: its items */
} batch_entry;

/* The consumed messages, in order, in chunks: stage 1 decodes the records
 * of as many messages as make CHUNK_ITEMS into the item pool, stage 2
 * scores each message's items and produces its output (or moves its
 * partition's committable offset).  The model may change only at a chunk's
 * start.  *stopped: the stop flag was seen; the messages from there on are
 * neither scored nor committed. */
static slr_status score_batch(predict_run *run, rd_kafka_message_t **msgs, size_t n,
                              bool *stopped, slr_error *err)
{
    const slr_predict_options *opt = run->opt;
    slr_status st = SLR_OK;
    for (size_t i = 0; i < n && st == SLR_OK && !*stopped;) {
        model_switch_point(run);
        run->n_items = 0;
        size_t j = i;
        slr_status st1 = SLR_OK;
        for (; j < n && run->n_items < CHUNK_ITEMS; j++) {
            batch_entry *e = &run->entries[j];
            rd_kafka_message_t *m = msgs[j];
            if (opt->stop && *opt->stop) {
                *stopped = true;
                break;
            }
            e->act = slr_kafka_source_take(run->src, m, &e->p, err);
            e->first = run->n_items;
            if (e->act == SLR_KAFKA_FAILED)
                st1 = SLR_ERR_KAFKA;
            else if (e->act == SLR_KAFKA_APPLY && (st1 = read_message(run, m, e->p, err)) == SLR_OK)
                slr_kafka_source_applied(e->p, m->offset);
            if (st1 != SLR_OK)
                break;
            e->end = run->n_items;
        }
        for (size_t k = i; k < j && st == SLR_OK; k++) {
            batch_entry *e = &run->entries[k];
            if (e->act == SLR_KAFKA_APPLY) {
                st = score_message(run, e->p, msgs[k], e->first, e->end, err);
                if (st == SLR_OK)
                    st = produce(run, e->p, msgs[k], err);
            } else if (e->act == SLR_KAFKA_MOVED) {
                moved(run, e->p);
            }
        }
        if (st == SLR_OK)
            st = st1;
        i = j;
    }
    return st;
}

/* ------------------------------------------------------------ setup */

static slr_status open_producer(predict_run *run, slr_error *err)
{
    const slr_predict_options *opt = run->opt;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* idempotence: retries neither reorder nor duplicate a partition's outputs */
    const char *defaults[] = {"client.id=streamlr-predict", "enable.idempotence=true",
                              "linger.ms=5"};
    slr_status st = SLR_OK;
    for (size_t i = 0; st == SLR_OK && i < sizeof defaults / sizeof defaults[0]; i++)
        st = slr_kafka_conf_set_property(conf, defaults[i], err);
    if (st == SLR_OK && run->in->brokers)
        st = slr_kafka_conf_set(conf, "bootstrap.servers", run->in->brokers, err);
    for (uint32_t i = 0; st == SLR_OK && i < opt->n_producer_config; i++)
        st = slr_kafka_conf_set_property(conf, opt->producer_config[i], err);
    if (st == SLR_OK)
        st = slr_kafka_conf_set(conf, "log.queue", "true", err); /* logs are served on our thread */
    if (st != SLR_OK) {
        rd_kafka_conf_destroy(conf);
        return st;
    }
    rd_kafka_conf_set_opaque(conf, run);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_producer_error);
    rd_kafka_conf_set_log_cb(conf, on_producer_log);
    char errstr[512];
    if (!(run->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr))) {
        rd_kafka_conf_destroy(conf);
        return slr_error_set(err, SLR_ERR_KAFKA, "creating the Kafka producer: %s", errstr);
    }
    rd_kafka_set_log_queue(run->producer, NULL); /* logs -> main queue -> rd_kafka_poll */
    if (!(run->out_rkt = rd_kafka_topic_new(run->producer, opt->output_topic, NULL)))
        return slr_error_set(err, SLR_ERR_KAFKA, "output topic %s: %s", opt->output_topic,
                             rd_kafka_err2str(rd_kafka_last_error()));
    /* a misspelt output topic fails now, not after message.timeout.ms */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t re = rd_kafka_metadata(run->producer, 0, run->out_rkt, &md, 10000);
    if (!re && (md->topic_cnt != 1 || md->topics[0].err))
        re = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    if (!re && opt->output_partition == SLR_OUTPUT_SAME)
        say(run, "output topic %s has %d partitions; each input partition's predictions go to "
                 "the partition of the same number",
            opt->output_topic, md->topics[0].partition_cnt);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (re)
        return slr_error_set(err, SLR_ERR_KAFKA, "output topic %s: %s", opt->output_topic,
                             rd_kafka_err2str(re));
    return SLR_OK;
}

static slr_status open_model(predict_run *run, slr_error *err)
{
    const slr_predict_options *opt = run->opt;
    if (opt->follow_dir || opt->follow_topic) {
        slr_sync_topic_config sc = {.brokers = run->in->brokers, .topic = opt->follow_topic,
                                    .properties = run->in->config,
                                    .n_properties = run->in->n_config};
        slr_status st =
            opt->follow_topic
                ? slr_follower_open_topic(&run->follower, &sc, 60000, opt->log, opt->log_ctx, err)
                : slr_follower_open(&run->follower, opt->follow_dir, opt->log, opt->log_ctx, err);
        if (st != SLR_OK)
            return st;
        run->scorer = slr_follower_learner(run->follower);
        set_model_name(run, slr_follower_name(run->follower));
        say(run, "scoring with %s (%llu examples learned)", slr_follower_path(run->follower),
            (unsigned long long)slr_follower_state(run->follower)->metrics.examples);
        /* newer checkpoints are read on the follower's thread, not between messages */
        st = slr_follower_start(run->follower, opt->follow_interval_seconds, err);
        if (st != SLR_OK)
            return st;
    } else {
        slr_job_state st;
        slr_job_state_init(&st);
        slr_status rc = slr_checkpoint_read(opt->model, &run->model, &st, err);
        slr_job_state_free(&st);
        if (rc != SLR_OK)
            return rc;
        slr_learner_sync(run->model); /* settle owed penalties once; scoring only reads */
        run->scorer = run->model;
        set_model_name(run, base_name(opt->model));
    }
    /* stage 1 is file scoring's: the reader takes train options (format, tags) */
    slr_train_options topt;
    slr_train_options_init(&topt);
    topt.format = opt->format;
    topt.predictions = stdout; /* keeps the tags; nothing is written to it */
    return slr_job_reader_init(&run->reader, &topt, err);
}

static slr_status check_options(const slr_predict_options *opt, const slr_kafka_options *in,
                                slr_error *err)
{
    if ((opt->model != NULL) + (opt->follow_dir != NULL) + (opt->follow_topic != NULL) != 1)
        return slr_error_set(err, SLR_ERR_ARG, "need a model (-i), a checkpoint directory to "
                                               "follow (--follow) or a sync topic to follow "
                                               "(--follow-topic), one of them");
    if (!opt->output_topic || !*opt->output_topic)
        return slr_error_set(err, SLR_ERR_ARG, "no output topic (--output-topic)");
    for (uint32_t t = 0; t < in->n_topics; t++)
        if (!strcmp(in->topics[t], opt->output_topic))
            return slr_error_set(err, SLR_ERR_ARG,
                                 "the output topic %s is also an input topic: predictions "
                                 "would be scored again, forever",
                                 opt->output_topic);
    return SLR_OK;
}

/* ------------------------------------------------------------ the job */

slr_status slr_predict_kafka(const slr_predict_options *opt, const slr_kafka_options *in,
                             slr_predict_result *res, slr_error *err)
{
    predict_run run = {.opt = opt, .in = in, .res = res};
    rd_kafka_message_t **msgs = NULL;
    memset(res, 0, sizeof *res);
    slr_metrics_init(&res->metrics);
    res->auc = res->auc_error_bound = NAN;
    slr_buf_init(&run.out);
    slr_job_state_init(&run.acked);
    slr_job_state_init(&run.src_state);
    double commit_every = opt->commit_interval_seconds > 0 ? opt->commit_interval_seconds : 1;
    double close_timeout = in->close_timeout_seconds > 0 ? in->close_timeout_seconds : 10;
    size_t batch = in->batch ? in->batch : 1000;
    if (batch > BATCH_MAX)
        batch = BATCH_MAX;

    slr_status st = check_options(opt, in, err);
    if (st == SLR_OK)
        st = open_model(&run, err);
    if (st == SLR_OK)
        st = slr_auc_histogram_create(&run.hist, err);
    if (st == SLR_OK && (!(run.ring = calloc(RING_SIZE, sizeof *run.ring)) ||
                         !(msgs = malloc(batch * sizeof *msgs)) ||
                         !(run.entries = malloc(batch * sizeof *run.entries))))
        st = slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    if (st == SLR_OK)
        st = open_producer(&run, err);
    slr_kafka_hooks hooks = {&run, source_log, release_hook};
    if (st == SLR_OK)
        st = slr_kafka_source_open(&run.src, in, false, &run.src_state, &hooks, err);
    if (st != SLR_OK)
        goto out;

    double next_commit = slr_monotonic_seconds() + commit_every;
    bool stopped = false;
    while (!stopped && st == SLR_OK) {
        if ((opt->stop && *opt->stop) ||
            (in->exit_at_end &&
             (slr_kafka_source_at_end(run.src) || slr_kafka_source_group_at_end(run.src))))
            break;
        size_t n = slr_kafka_source_consume(run.src, msgs, batch, POLL_MS);
        if (n == 0)
            model_switch_point(&run); /* idle: between messages too */
        st = score_batch(&run, msgs, n, &stopped, err);
        for (size_t i = 0; i < n; i++)
            rd_kafka_message_destroy(msgs[i]);
        serve_producer(&run, 0);
        if (st == SLR_OK && run.delivery_failed)
            st = slr_error_set(err, SLR_ERR_KAFKA, "%s", run.failure);
        if (st == SLR_OK && slr_kafka_source_failed(run.src, err))
            st = SLR_ERR_KAFKA;
        double now = slr_monotonic_seconds();
        if (now >= next_commit) {
            next_commit = now + commit_every;
            commit_acked(&run, 0);
        }
    }

    /* what was produced is delivered (bounded), committed as far as it is */
    drain(&run, close_timeout);
    if (st == SLR_OK && run.delivery_failed)
        st = slr_error_set(err, SLR_ERR_KAFKA, "%s", run.failure);
    commit_acked(&run, COMMIT_WAIT_SECONDS);
    if (run.head < run.tail && !run.delivery_failed)
        say(&run, "%llu predictions not acknowledged within %.0f s; their input offsets are not "
            "committed (a restart scores them again)",
            (unsigned long long)(run.tail - run.head), close_timeout);
out:
    if (run.src)
        slr_kafka_source_close(run.src, close_timeout); /* release_hook: drained already */
    run.src = NULL;
    for (uint64_t s = run.head; s < run.tail; s++)
        if (run.ring[s & (RING_SIZE - 1)].state != SLOT_DONE)
            res->undelivered++;
    res->metrics.lost = run.src_state.metrics.lost;
    if (run.hist)
        slr_auc_histogram_auc(run.hist, &res->auc, &res->auc_error_bound);
    if (run.follower)
        snprintf(res->model_path, sizeof res->model_path, "%s", slr_follower_path(run.follower));
    else if (opt->model)
        snprintf(res->model_path, sizeof res->model_path, "%s", opt->model);
    if (run.out_rkt)
        rd_kafka_topic_destroy(run.out_rkt);
    if (run.producer) { /* undelivered outputs are dropped (not committed), without waiting */
        rd_kafka_purge(run.producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_destroy(run.producer);
    }
    free(msgs);
    free(run.ring);
    slr_auc_histogram_destroy(run.hist);
    slr_buf_free(&run.out);
    for (size_t i = 0; i < run.items_cap; i++)
        slr_job_item_free(&run.items[i]);
    free(run.items);
    free(run.spans);
    free(run.entries);
    slr_job_reader_free(&run.reader);
    slr_learner_destroy(run.model);
    slr_follower_close(run.follower);
    slr_job_state_free(&run.acked);
    slr_job_state_free(&run.src_state);
    return st;
}
