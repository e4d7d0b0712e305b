/* kafka_source.c - the librdkafka consumer behind slr_train_kafka (see
 * kafka_source.h for the contract, docs/KAFKA.md for the semantics).
 *
 * Why it is shaped this way:
 * - The checkpoint, not Kafka, says where each partition stands.  Every
 *   assignment (group rebalance or static) carries explicit offsets for the
 *   partitions the checkpoints have seen; the others start at
 *   RD_KAFKA_OFFSET_STORED, i.e. the group's committed offset.
 * - librdkafka is configured with auto.offset.reset=error so that it never
 *   moves a position on its own.  Its reset event tells us either that a
 *   partition has no committed offset (we then apply the user's
 *   auto.offset.reset) or that our offset is gone from the broker (data
 *   deleted by retention: we count and report what was skipped).
 * - A partition's position only moves forward through messages we applied,
 *   so a message below it is one we already have (a refetch after a
 *   reassignment) and is dropped, and a message of a partition we no longer
 *   own (revoked while it sat in a batch) is dropped too: its new owner
 *   starts from what we committed on revocation.
 * - All callbacks are served on the caller's thread (log.queue, main queue
 *   forwarded to the consumer queue), so nothing here needs a lock. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/clock.h"
#include "kafka_source_impl.h"
#include "kafka_stats.h"

#define METADATA_TIMEOUT_MS 10000
#define COMMITTED_TIMEOUT_MS 10000
#define LAG_LINE_MAX_PARTITIONS 8
#define COMMIT_RETRY_SECONDS 1.0 /* a refused commit is made again this much later */

/* ------------------------------------------------------------ helpers */

static void forget_refused(slr_kafka_source *src)
{
    if (src->refused)
        rd_kafka_topic_partition_list_destroy(src->refused);
    src->refused = NULL;
}

static void say(slr_kafka_source *src, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(slr_kafka_source *src, const char *fmt, ...)
{
    if (!src->hooks.log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    src->hooks.log(src->hooks.ctx, msg);
}

static int64_t policy_offset(const slr_kafka_source *src)
{
    return src->policy == RESET_LATEST ? RD_KAFKA_OFFSET_END : RD_KAFKA_OFFSET_BEGINNING;
}

static const char *policy_name(const slr_kafka_source *src)
{
    return src->policy == RESET_LATEST ? "latest" : src->policy == RESET_ERROR ? "error" : "earliest";
}

/* Where each partition of a new assignment starts: the positions table's offset
 * (the checkpoint, or what this run has applied); for partitions it has
 * never seen, the group's committed offset, else auto.offset.reset.  We ask
 * for committed offsets ourselves rather than leave it to librdkafka: 2.0
 * loses the "no committed offset" event of a group member's partition,
 * which would leave it silently idle.  False (err set) if the job cannot
 * start some partition. */
static bool start_offsets(slr_kafka_source *src, rd_kafka_topic_partition_list_t *parts,
                          slr_error *err)
{
    rd_kafka_topic_partition_list_t *unseen = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        tp->offset = slr_kafka_offsets_get(*src->pos.offsets, *src->pos.n, tp->topic, tp->partition);
        if (tp->offset < 0)
            rd_kafka_topic_partition_list_add(unseen, tp->topic, tp->partition);
        else
            /* the run that wrote the checkpoint may have died before it
             * committed: commit it again, even if nothing more is applied */
            src->uncommitted = true;
    }
    bool ok = true;
    rd_kafka_resp_err_t re = unseen->cnt ? rd_kafka_committed(src->rk, unseen, COMMITTED_TIMEOUT_MS)
                                         : RD_KAFKA_RESP_ERR_NO_ERROR;
    if (re) {
        slr_error_set(err, SLR_ERR_KAFKA, "fetching the group's committed offsets: %s",
                      rd_kafka_err2str(re));
        ok = false;
    }
    for (int i = 0; ok && i < unseen->cnt; i++) {
        const rd_kafka_topic_partition_t *c = &unseen->elems[i];
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(parts, c->topic, c->partition);
        if (c->err || c->offset >= 0) {
            tp->offset = c->offset;
        } else if (src->policy == RESET_ERROR) {
            slr_error_set(err, SLR_ERR_KAFKA,
                          "%s[%d] has no checkpoint position and no committed offset, and "
                          "auto.offset.reset=error",
                          c->topic, (int)c->partition);
            ok = false;
        } else {
            tp->offset = policy_offset(src);
        }
        if (c->err) {
            slr_error_set(err, SLR_ERR_KAFKA, "committed offset of %s[%d]: %s", c->topic,
                          (int)c->partition, rd_kafka_err2str(c->err));
            ok = false;
        }
    }
    rd_kafka_topic_partition_list_destroy(unseen);
    return ok;
}

/* "assigned clicks[0]@1200 (checkpoint), clicks[1] (earliest)" or
 * "releasing clicks[0]@1500": where each partition starts or stops. */
static void describe_assignment(slr_kafka_source *src, bool releasing,
                                const rd_kafka_topic_partition_list_t *parts)
{
    char buf[800];
    size_t used = 0;
    int shown = 0;
    for (int i = 0; i < parts->cnt && used < sizeof buf - 64; i++, shown++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int64_t at = tp->offset;
        const char *from = NULL;
        if (releasing) {
            at = -1;
            for (size_t k = 0; k < src->n_parts; k++)
                if (src->parts[k]->partition == tp->partition &&
                    !strcmp(src->parts[k]->topic, tp->topic))
                    at = src->parts[k]->next;
        } else {
            from = slr_kafka_offsets_get(*src->pos.offsets, *src->pos.n, tp->topic, tp->partition) >= 0
                       ? "checkpoint"
                   : at >= 0                         ? "committed"
                   : at == RD_KAFKA_OFFSET_END       ? "latest"
                   : at == RD_KAFKA_OFFSET_BEGINNING ? "earliest"
                                                     : NULL;
        }
        used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s[%d]", i ? ", " : "",
                                 tp->topic, (int)tp->partition);
        if (at >= 0)
            used += (size_t)snprintf(buf + used, sizeof buf - used, "@%lld", (long long)at);
        if (from)
            used += (size_t)snprintf(buf + used, sizeof buf - used, " (%s)", from);
    }
    if (shown < parts->cnt)
        snprintf(buf + used, sizeof buf - used, ", ... (%d partitions)", parts->cnt);
    say(src, "kafka: %s %s", releasing ? "releasing" : "assigned",
        parts->cnt ? buf : "no partitions");
}

/* ------------------------------------------------------------ (re)assignment */

/* The offset to hand librdkafka for p in a (re)assignment. */
static int64_t assign_offset(const slr_kafka_source *src, const slr_kafka_partition *p)
{
    if (p->reset_from >= 0 && p->next == p->reset_from)
        return policy_offset(src); /* reset pending: do not ask for the lost offset again */
    return p->next >= 0 ? p->next : RD_KAFKA_OFFSET_STORED;
}

/* Under the cooperative protocol?  Known from the first rebalance on; asking
 * librdkafka is a round trip to its main thread, so it is asked there only. */
static bool cooperative(const slr_kafka_source *src)
{
    return src->cooperative;
}

/* Restart fetching p at `offset` (a logical offset).  librdkafka stops a
 * partition after a reset error and refuses to seek it, so it is assigned
 * anew: incrementally, p alone, under the cooperative protocol and with a
 * static assignment (no group protocol: librdkafka allows both kinds of
 * call then, and re-assigning the whole set for each of several partitions
 * reset in quick succession made librdkafka 2.0.2 abort); under an eager
 * group protocol by re-assigning the whole set at the current positions. */
static void reposition(slr_kafka_source *src, slr_kafka_partition *p, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)src->n_parts);
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t re = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (cooperative(src) || src->assign_mode) {
        rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
        e = rd_kafka_incremental_unassign(src->rk, l);
        if (!e) {
            l->elems[0].offset = offset;
            e = rd_kafka_incremental_assign(src->rk, l);
        }
    } else {
        for (size_t i = 0; i < src->n_parts; i++) {
            slr_kafka_partition *q = src->parts[i];
            rd_kafka_topic_partition_list_add(l, q->topic, q->partition)->offset =
                q == p ? offset : assign_offset(src, q);
        }
        re = rd_kafka_assign(src->rk, l);
    }
    if (e || re)
        say(src, "kafka: %s: cannot restart fetching: %s", p->name,
            e ? rd_kafka_error_string(e) : rd_kafka_err2str(re));
    if (e)
        rd_kafka_error_destroy(e);
    rd_kafka_topic_partition_list_destroy(l);
}

/* ------------------------------------------------------------ callbacks */

static void release(slr_kafka_source *src, bool lost)
{
    bool durable = src->hooks.release ? src->hooks.release(src->hooks.ctx) : true;
    if (lost)
        say(src, "kafka: partitions lost (the group moved on without us, e.g. after a session "
                 "timeout); their positions are in the checkpoint but are not committed");
    else if (durable)
        slr_kafka_source_commit(src, 5.0);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    slr_kafka_source *src = opaque;
    src->cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    /* a partition given away may come back with another member's progress
     * committed meanwhile: never commit old offsets over it */
    forget_refused(src);
    bool coop = cooperative(src);
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t re = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (!coop)
            slr_kafka_partitions_clear(src);
        slr_error serr;
        if (!start_offsets(src, parts, &serr)) {
            /* the job stops (fatal below); consume nothing meanwhile */
            if (!src->failure)
                src->failure = strdup(serr.msg);
            return;
        }
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &parts->elems[i];
            if (!slr_kafka_partition_add(src, tp->topic, tp->partition, tp->offset >= 0 ? tp->offset : -1))
                say(src, "kafka: out of memory tracking %s[%d]", tp->topic, (int)tp->partition);
        }
        describe_assignment(src, false, parts);
        src->joined = true;
        if (coop)
            e = rd_kafka_incremental_assign(rk, parts);
        else
            re = rd_kafka_assign(rk, parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        describe_assignment(src, true, parts);
        release(src, rd_kafka_assignment_lost(rk));
        if (coop) {
            for (int i = 0; i < parts->cnt; i++)
                slr_kafka_partition_remove(src, parts->elems[i].topic, parts->elems[i].partition);
            e = rd_kafka_incremental_unassign(rk, parts);
        } else {
            slr_kafka_partitions_clear(src);
            re = rd_kafka_assign(rk, NULL);
        }
    } else {
        say(src, "kafka: rebalance failed: %s; dropping the assignment", rd_kafka_err2str(err));
        slr_kafka_partitions_clear(src);
        re = rd_kafka_assign(rk, NULL);
    }
    if (e || re)
        say(src, "kafka: updating the assignment failed: %s",
            e ? rd_kafka_error_string(e) : rd_kafka_err2str(re));
    if (e)
        rd_kafka_error_destroy(e);
    /* no rd_kafka_yield() here: in librdkafka 2.0 a yield inside
     * rd_kafka_consume_batch_queue() drops the message it has just dequeued
     * (and leaks it, which then hangs rd_kafka_destroy) */
}

static void on_stats_field(void *ctx, const char *topic, size_t topic_len, int32_t partition,
                           const char *field, int64_t value)
{
    slr_kafka_source *src = ctx;
    /* ls_offset (last stable) is the end a read_committed consumer can reach;
     * it comes after hi_offset in the document, so it wins when present */
    if (strcmp(field, "hi_offset") && strcmp(field, "ls_offset"))
        return;
    for (size_t i = 0; i < src->n_parts; i++) {
        slr_kafka_partition *p = src->parts[i];
        if (p->partition == partition && strlen(p->topic) == topic_len &&
            !memcmp(p->topic, topic, topic_len) && value >= 0)
            p->end = value;
    }
}

static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    slr_kafka_source *src = opaque;
    while (len && json[len - 1] == '\0')
        len--;
    if (slr_kafka_stats_walk(json, len, on_stats_field, src))
        src->stats_fresh = true;
    return 0; /* librdkafka frees json */
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    slr_kafka_source *src = opaque;
    char buf[512], msg[600];
    switch (slr_kafka_error_classify(rk, err, buf, sizeof buf)) {
    case SLR_KAFKA_ERROR_FATAL:
        snprintf(msg, sizeof msg, "the Kafka client failed: %s", buf);
        if (!src->failure)
            src->failure = strdup(msg);
        break;
    case SLR_KAFKA_ERROR_OUTAGE:
        if (!src->outage)
            say(src, "kafka: all brokers are down (%s); keeping the model and its positions, "
                     "reconnecting", reason);
        src->outage = true;
        break;
    case SLR_KAFKA_ERROR_QUIET: break;
    case SLR_KAFKA_ERROR_REPORT: say(src, "kafka: %s", reason); break;
    }
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    slr_kafka_source *src = rd_kafka_opaque(rk);
    (void)level;
    if (src)
        say(src, "kafka: %s: %s", fac, buf);
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    slr_kafka_source *src = opaque;
    for (int i = 0; !err && offsets && i < offsets->cnt; i++)
        err = offsets->elems[i].err; /* a partition can fail alone */
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        src->uncommitted = true;
        if (offsets) {
            forget_refused(src);
            src->refused = rd_kafka_topic_partition_list_copy(offsets);
            for (int i = 0; src->refused && i < src->refused->cnt; i++)
                src->refused->elems[i].err = RD_KAFKA_RESP_ERR_NO_ERROR;
            src->retry_at = slr_monotonic_seconds() + COMMIT_RETRY_SECONDS;
        }
        if (src->commits_failing++ == 0) /* once per run of failures */
            say(src, "kafka: committing offsets failed: %s (the checkpoint holds the "
                     "positions; committing again in %.0f s)", rd_kafka_err2str(err),
                COMMIT_RETRY_SECONDS);
    } else if (!err) {
        forget_refused(src);
    }
    if (!err && src->commits_failing) {
        src->outage = false;
        say(src, "kafka: committing offsets works again (%llu commits had failed)",
            src->commits_failing);
        src->commits_failing = 0;
    }
}

/* ------------------------------------------------------------ open */

/* Every partition of topic into l, as the cluster's metadata lists them. */
static slr_status list_partitions(slr_kafka_source *src, const char *topic,
                                  rd_kafka_topic_partition_list_t *l, slr_error *err)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(src->rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t re = rkt ? rd_kafka_metadata(src->rk, 0, rkt, &md, METADATA_TIMEOUT_MS)
                                 : rd_kafka_last_error();
    if (!re && (md->topic_cnt != 1 || md->topics[0].err))
        re = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    slr_status st = SLR_OK;
    if (re)
        st = slr_error_set(err, SLR_ERR_KAFKA, "listing the partitions of topic %s: %s", topic,
                           rd_kafka_err2str(re));
    else
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
            rd_kafka_topic_partition_list_add(l, topic, md->topics[0].partitions[i].id);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    return st;
}

slr_status slr_kafka_source_partition_count(slr_kafka_source *src, const char *topic, int32_t *n,
                                            slr_error *err)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    slr_status st = list_partitions(src, topic, l, err);
    *n = l->cnt;
    rd_kafka_topic_partition_list_destroy(l);
    return st;
}

/* Static assignment: the given partitions (or all) of every topic. */
static slr_status assign_static(slr_kafka_source *src, const slr_kafka_source_config *k, slr_error *err)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    slr_status st = SLR_OK;
    for (uint32_t t = 0; st == SLR_OK && t < k->n_topics; t++) {
        const char *topic = k->topics[t];
        if (k->n_partitions) {
            for (uint32_t i = 0; i < k->n_partitions; i++)
                rd_kafka_topic_partition_list_add(l, topic, k->partitions[i]);
            continue;
        }
        st = list_partitions(src, topic, l, err);
    }
    if (st == SLR_OK && !start_offsets(src, l, err))
        st = err ? err->code : SLR_ERR_KAFKA;
    for (int i = 0; st == SLR_OK && i < l->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &l->elems[i];
        if (!slr_kafka_partition_add(src, tp->topic, tp->partition, tp->offset >= 0 ? tp->offset : -1))
            st = slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    }
    if (st == SLR_OK) {
        describe_assignment(src, false, l);
        rd_kafka_resp_err_t re = rd_kafka_assign(src->rk, l);
        if (re)
            st = slr_error_set(err, SLR_ERR_KAFKA, "assigning partitions: %s", rd_kafka_err2str(re));
    }
    rd_kafka_topic_partition_list_destroy(l);
    return st;
}

static slr_status subscribe(slr_kafka_source *src, const slr_kafka_source_config *k, slr_error *err)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)k->n_topics);
    for (uint32_t t = 0; t < k->n_topics; t++)
        rd_kafka_topic_partition_list_add(l, k->topics[t], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t re = rd_kafka_subscribe(src->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (re)
        return slr_error_set(err, SLR_ERR_KAFKA, "subscribing: %s", rd_kafka_err2str(re));
    return SLR_OK;
}

slr_status slr_kafka_source_start(slr_kafka_source **out, const slr_kafka_source_config *k,
                                  bool want_stats, const slr_kafka_positions *pos,
                                  const slr_kafka_hooks *hooks, slr_error *err)
{
    *out = NULL;
    if (!k->n_topics)
        return slr_error_set(err, SLR_ERR_ARG, "no Kafka topic given (--topic)");
    slr_kafka_source *src = calloc(1, sizeof *src);
    if (!src)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    src->hooks = *hooks;
    src->pos = *pos;
    src->policy = RESET_EARLIEST;
    src->assign_mode = k->assign;
    rd_kafka_conf_t *conf;
    slr_status st = slr_kafka_consumer_conf(k, want_stats, &src->policy, &conf, err);
    if (st != SLR_OK) {
        free(src);
        return st;
    }
    rd_kafka_conf_set_opaque(conf, src);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
    char errstr[512];
    src->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!src->rk) {
        rd_kafka_conf_destroy(conf);
        free(src);
        return slr_error_set(err, SLR_ERR_KAFKA, "creating the Kafka consumer: %s", errstr);
    }
    rd_kafka_set_log_queue(src->rk, NULL); /* logs -> main queue -> consumer queue */
    rd_kafka_poll_set_consumer(src->rk);
    src->queue = rd_kafka_queue_get_consumer(src->rk);
    st = k->assign ? assign_static(src, k, err) : subscribe(src, k, err);
    if (st != SLR_OK) {
        slr_kafka_source_close(src, 1.0);
        return st;
    }
    *out = src;
    return SLR_OK;
}

/* ------------------------------------------------------------ consuming */

/* Under the cooperative protocol librdkafka pauses and resumes the
 * partitions a member keeps, and a resumed partition restarts at the
 * "application position".  rd_kafka_consume_batch_queue() in librdkafka 2.0
 * advances that position for messages it then purges from the batch at the
 * pause, so the restart skips them (fixed in 2.1, librdkafka PR #4208).
 * One message per call keeps the position exact, so that protocol takes
 * messages one by one (still collected into a batch for the loop); eager
 * rebalances and static assignments restart every partition at an explicit
 * offset and use the batch call.
 *
 * The batch call never waits here: given a timeout it waits until `max`
 * messages are queued or the time is up, however many it already holds, so
 * a consumer fed in small bursts would sit on data it could be learning.
 * Only the first message is waited for. */
static void commit_list(slr_kafka_source *src, rd_kafka_topic_partition_list_t *l,
                        double wait_seconds);

/* Make the refused commit again, for the partitions still ours. */
static void retry_refused(slr_kafka_source *src)
{
    if (src->outage || slr_monotonic_seconds() < src->retry_at)
        return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(src->refused->cnt);
    for (int i = 0; i < src->refused->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &src->refused->elems[i];
        for (size_t k = 0; k < src->n_parts; k++)
            if (src->parts[k]->partition == tp->partition && !strcmp(src->parts[k]->topic, tp->topic))
                rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition)->offset = tp->offset;
    }
    forget_refused(src);
    if (l->cnt > 0)
        commit_list(src, l, 0); /* refused again: on_commit keeps it for the next retry */
    rd_kafka_topic_partition_list_destroy(l);
}

size_t slr_kafka_source_consume(slr_kafka_source *src, rd_kafka_message_t **msgs, size_t max,
                                int timeout_ms)
{
    if (src->refused)
        retry_refused(src);
    if (!cooperative(src)) {
        ssize_t got = rd_kafka_consume_batch_queue(src->queue, 0, msgs, max);
        if (got > 0)
            return (size_t)got;
    }
    size_t n = 0;
    rd_kafka_message_t *m = rd_kafka_consume_queue(src->queue, timeout_ms);
    while (m) {
        msgs[n++] = m;
        if (n == max)
            break;
        if (!cooperative(src)) { /* (a callback may just have told us which protocol) */
            ssize_t got = rd_kafka_consume_batch_queue(src->queue, 0, msgs + n, max - n);
            n += got > 0 ? (size_t)got : 0;
            break;
        }
        m = rd_kafka_consume_queue(src->queue, 0);
    }
    return n;
}

/* The broker told us where p's data starts again after a reset: count and
 * report what was skipped. */
static void reset_resolved(slr_kafka_source *src, slr_kafka_partition *p, int64_t now_at)
{
    int64_t from = p->reset_from;
    p->reset_from = -1;
    p->next = now_at;
    if (now_at > from) {
        uint64_t lost = (uint64_t)(now_at - from);
        *src->pos.lost += lost;
        say(src, "kafka: %s: LOST %llu messages (offsets %lld to %lld were deleted by the broker "
                 "before they were consumed, e.g. by retention); continuing at %lld",
            p->name, (unsigned long long)lost, (long long)from, (long long)now_at - 1,
            (long long)now_at);
    } else if (now_at < from) {
        say(src, "kafka: %s: the log now ends before our position %lld (topic recreated or "
                 "truncated?); continuing at %lld",
            p->name, (long long)from, (long long)now_at);
    }
}

static slr_kafka_take offset_reset(slr_kafka_source *src, const rd_kafka_message_t *m,
                                   slr_kafka_partition *p, slr_error *err)
{
    if (m->offset < 0) { /* no committed offset: the user's auto.offset.reset */
        if (src->policy == RESET_ERROR) {
            slr_error_set(err, SLR_ERR_KAFKA,
                          "%s has no checkpoint position and no committed offset, and "
                          "auto.offset.reset=error",
                          p->name);
            return SLR_KAFKA_FAILED;
        }
        say(src, "kafka: %s: no committed offset; starting at the %s offset (auto.offset.reset)",
            p->name, policy_name(src));
        reposition(src, p, policy_offset(src));
        return SLR_KAFKA_SKIP;
    }
    int64_t expected = p->next >= 0 ? p->next : m->offset;
    if (src->policy == RESET_ERROR) {
        slr_error_set(err, SLR_ERR_KAFKA,
                      "%s: offset %lld is no longer on the broker (deleted by retention?) and "
                      "auto.offset.reset=error; to go on and count the loss, drop that setting",
                      p->name, (long long)expected);
        return SLR_KAFKA_FAILED;
    }
    say(src, "kafka: %s: offset %lld is no longer on the broker (%s); skipping to the %s "
             "retained offset",
        p->name, (long long)expected, rd_kafka_message_errstr(m), policy_name(src));
    p->next = p->reset_from = expected;
    reposition(src, p, policy_offset(src));
    return SLR_KAFKA_SKIP;
}

slr_kafka_take slr_kafka_source_take(slr_kafka_source *src, const rd_kafka_message_t *m,
                                     slr_kafka_partition **out, slr_error *err)
{
    slr_kafka_partition *p = m->rkt ? slr_kafka_partition_find(src, m) : NULL;
    *out = p;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR || m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (src->outage) {
            say(src, "kafka: brokers reachable again");
            src->outage = false;
        }
    }
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (!p)
            return SLR_KAFKA_SKIP; /* revoked while it sat in a batch; its new owner has it */
        if (p->reset_from >= 0)
            reset_resolved(src, p, m->offset);
        if (p->next >= 0 && m->offset < p->next)
            return SLR_KAFKA_SKIP; /* applied already (refetched after a reassignment) */
        src->uncommitted = true;
        return SLR_KAFKA_APPLY;
    }
    if (!p) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            say(src, "kafka: %s%s%s", m->rkt ? rd_kafka_topic_name(m->rkt) : "",
                m->rkt ? ": " : "", rd_kafka_message_errstr(m));
        return SLR_KAFKA_SKIP;
    }
    switch (m->err) {
    case RD_KAFKA_RESP_ERR__PARTITION_EOF: {
        /* m->offset is where fetching stands: everything before it has been
         * delivered (or was a transaction marker) */
        int64_t before = p->next;
        if (p->reset_from >= 0)
            reset_resolved(src, p, m->offset);
        else if (m->offset > p->next)
            p->next = m->offset;
        p->at_end = true;
        if (p->next == before)
            return SLR_KAFKA_SKIP;
        src->uncommitted = true;
        return SLR_KAFKA_MOVED;
    }
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
        return offset_reset(src, m, p, err);
    default:
        say(src, "kafka: %s: %s", p->name, rd_kafka_message_errstr(m));
        return SLR_KAFKA_SKIP;
    }
}

/* ------------------------------------------------------------ positions */

slr_status slr_kafka_source_note_positions(slr_kafka_source *src, slr_error *err)
{
    for (size_t i = 0; i < src->n_parts; i++) {
        const slr_kafka_partition *p = src->parts[i];
        if (p->next < 0)
            continue;
        slr_status st = slr_kafka_offsets_set(src->pos.offsets, src->pos.n, p->topic, p->partition,
                                              p->next, err);
        if (st != SLR_OK)
            return st;
    }
    return SLR_OK;
}

/* Commit l; wait_seconds > 0 waits that long at most for the broker's
 * answer, 0 leaves it to on_commit. */
static void commit_list(slr_kafka_source *src, rd_kafka_topic_partition_list_t *l,
                        double wait_seconds)
{
    forget_refused(src); /* l is newer */
    if (wait_seconds <= 0) { /* the result comes back through on_commit */
        rd_kafka_resp_err_t re = rd_kafka_commit(src->rk, l, 1);
        if (re)
            on_commit(src->rk, re, l, src);
        return;
    }
    /* a queue of our own, so that waiting is bounded and serves nothing else */
    rd_kafka_queue_t *q = rd_kafka_queue_new(src->rk);
    rd_kafka_resp_err_t re = rd_kafka_commit_queue(src->rk, l, q, NULL, NULL);
    if (!re) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, (int)(wait_seconds * 1000));
        if (!ev)
            re = RD_KAFKA_RESP_ERR__TIMED_OUT;
        else {
            re = rd_kafka_event_error(ev);
            const rd_kafka_topic_partition_list_t *r = rd_kafka_event_topic_partition_list(ev);
            for (int i = 0; !re && r && i < r->cnt; i++)
                re = r->elems[i].err; /* a partition can fail alone */
            rd_kafka_event_destroy(ev);
        }
    }
    on_commit(src->rk, re, l, src);
    rd_kafka_queue_destroy(q);
}

void slr_kafka_source_commit_offsets(slr_kafka_source *src, const slr_kafka_offset *tab,
                                     uint32_t n, double wait_seconds)
{
    if (src->outage)
        return; /* as slr_kafka_source_commit: the checkpoint holds the positions */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)src->n_parts);
    /* only partitions still ours: one given away was checkpointed and
     * committed further on when it was released */
    for (size_t i = 0; i < src->n_parts; i++) {
        const slr_kafka_partition *p = src->parts[i];
        int64_t off = slr_kafka_offsets_get(tab, n, p->topic, p->partition);
        if (off >= 0)
            rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = off;
    }
    if (l->cnt > 0)
        commit_list(src, l, wait_seconds);
    rd_kafka_topic_partition_list_destroy(l);
}

void slr_kafka_source_commit(slr_kafka_source *src, double wait_seconds)
{
    if (!src->uncommitted)
        return;
    if (src->outage) {
        /* a commit nobody can take would sit in librdkafka until
         * socket.timeout.ms, and leaving (rd_kafka_destroy) waits for it */
        if (!src->commit_skip_said)
            say(src, "kafka: brokers unreachable: offsets not committed until they are back "
                     "(the checkpoint holds the positions)");
        src->commit_skip_said = true;
        return;
    }
    src->commit_skip_said = false;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)src->n_parts);
    for (size_t i = 0; i < src->n_parts; i++)
        if (src->parts[i]->next >= 0)
            rd_kafka_topic_partition_list_add(l, src->parts[i]->topic, src->parts[i]->partition)
                ->offset = src->parts[i]->next;
    src->uncommitted = false;
    if (l->cnt > 0)
        commit_list(src, l, wait_seconds);
    rd_kafka_topic_partition_list_destroy(l);
}

bool slr_kafka_source_commit_refused(const slr_kafka_source *src)
{
    return src->commits_failing > 0;
}

slr_status slr_kafka_source_group_metadata(slr_kafka_source *src, void **buf, size_t *len,
                                           slr_error *err)
{
    *buf = NULL;
    *len = 0;
    rd_kafka_consumer_group_metadata_t *gm = rd_kafka_consumer_group_metadata(src->rk);
    if (!gm)
        return slr_error_set(err, SLR_ERR_ARG, "the consumer has no group");
    rd_kafka_error_t *e = rd_kafka_consumer_group_metadata_write(gm, buf, len);
    rd_kafka_consumer_group_metadata_destroy(gm);
    if (!e)
        return SLR_OK;
    slr_status st = slr_error_set(err, SLR_ERR_KAFKA, "the consumer group's metadata: %s",
                                  rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return st;
}

size_t slr_kafka_source_assignment(slr_kafka_source *src, slr_kafka_partition *const **parts)
{
    *parts = src->parts;
    return src->n_parts;
}

void slr_kafka_source_pause(slr_kafka_source *src, slr_kafka_partition *p, bool pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
    rd_kafka_resp_err_t re = pause ? rd_kafka_pause_partitions(src->rk, l)
                                   : rd_kafka_resume_partitions(src->rk, l);
    if (re)
        say(src, "kafka: %s: cannot %s fetching: %s", p->name, pause ? "pause" : "resume",
            rd_kafka_err2str(re));
    rd_kafka_topic_partition_list_destroy(l);
}

#define SEEK_TIMEOUT_MS 10000

void slr_kafka_source_seek(slr_kafka_source *src, slr_kafka_partition *p)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = assign_offset(src, p);
    p->at_end = false;
    /* a seek drops what was fetched from the old position (librdkafka's
     * version barrier); a partition whose fetching has not started yet
     * cannot be sought: it is assigned anew at the position */
    rd_kafka_error_t *e = rd_kafka_seek_partitions(src->rk, l, SEEK_TIMEOUT_MS);
    if (e || l->elems[0].err) {
        if (e)
            rd_kafka_error_destroy(e);
        reposition(src, p, assign_offset(src, p));
    }
    rd_kafka_resp_err_t re = rd_kafka_resume_partitions(src->rk, l);
    if (re)
        say(src, "kafka: %s: cannot resume fetching: %s", p->name, rd_kafka_err2str(re));
    rd_kafka_topic_partition_list_destroy(l);
}

bool slr_kafka_source_at_end(const slr_kafka_source *src)
{
    if (src->n_parts == 0)
        return false;
    for (size_t i = 0; i < src->n_parts; i++)
        if (!src->parts[i]->at_end || src->parts[i]->reset_from >= 0)
            return false;
    return true;
}

#define GROUP_CHECK_SECONDS 1.0
#define GROUP_QUERY_MS 2000

/* The partitions of the subscribed topics into l; false if the broker
 * cannot say (or a topic is a pattern, whose partitions we cannot list). */
static bool subscribed_partitions(slr_kafka_source *src, rd_kafka_topic_partition_list_t *l)
{
    rd_kafka_topic_partition_list_t *sub = NULL;
    if (rd_kafka_subscription(src->rk, &sub) || !sub)
        return false;
    bool ok = sub->cnt > 0;
    for (int i = 0; ok && i < sub->cnt; i++) {
        const char *topic = sub->elems[i].topic;
        if (topic[0] == '^') {
            ok = false;
            break;
        }
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(src->rk, topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        ok = rkt && !rd_kafka_metadata(src->rk, 0, rkt, &md, GROUP_QUERY_MS) && md->topic_cnt == 1 &&
             !md->topics[0].err;
        for (int p = 0; ok && p < md->topics[0].partition_cnt; p++)
            rd_kafka_topic_partition_list_add(l, topic, md->topics[0].partitions[p].id);
        if (md)
            rd_kafka_metadata_destroy(md);
        if (rkt)
            rd_kafka_topic_destroy(rkt);
    }
    rd_kafka_topic_partition_list_destroy(sub);
    return ok && l->cnt > 0;
}

bool slr_kafka_source_group_at_end(slr_kafka_source *src)
{
    if (src->n_parts > 0 || src->assign_mode || !src->joined)
        return false; /* still joining: the assignment will say */
    double now = slr_monotonic_seconds();
    if (now < src->group_check_at)
        return false;
    src->group_check_at = now + GROUP_CHECK_SECONDS;
    if (!src->idle_said) {
        say(src, "kafka: no partition assigned to this member (the group has more members than "
                 "partitions); --exit-at-end ends it once the group has committed every "
                 "partition to its end");
        src->idle_said = true;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    bool at_end = subscribed_partitions(src, l) && !rd_kafka_committed(src->rk, l, GROUP_QUERY_MS);
    for (int i = 0; at_end && i < l->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &l->elems[i];
        int64_t lo, hi;
        at_end = !e->err && !rd_kafka_query_watermark_offsets(src->rk, e->topic, e->partition, &lo,
                                                             &hi, GROUP_QUERY_MS) &&
                 (e->offset >= 0 ? e->offset >= hi : lo == hi); /* never committed: empty */
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (at_end)
        say(src, "kafka: the group has committed every partition to its end; this member ends");
    return at_end;
}

bool slr_kafka_source_failed(const slr_kafka_source *src, slr_error *err)
{
    if (!src->failure)
        return false;
    slr_error_set(err, SLR_ERR_KAFKA, "%s", src->failure);
    return true;
}

static int64_t partition_lag(const slr_kafka_partition *p)
{
    if (p->end < 0 || p->next < 0)
        return -1;
    return p->end > p->next ? p->end - p->next : 0;
}

int64_t slr_kafka_source_total_lag(const slr_kafka_source *src)
{
    int64_t total = -1;
    for (size_t i = 0; i < src->n_parts; i++) {
        int64_t lag = partition_lag(src->parts[i]);
        if (lag >= 0)
            total = (total < 0 ? 0 : total) + lag;
    }
    return total;
}

bool slr_kafka_source_lag(slr_kafka_source *src, char *buf, size_t size)
{
    if (!src->stats_fresh || size == 0)
        return false;
    src->stats_fresh = false;
    if (src->n_parts == 0)
        return false; /* nothing assigned (yet): nothing to say */
    size_t used = (size_t)snprintf(buf, size, "lag");
    int64_t total = 0;
    size_t shown = 0;
    bool unknown = false;
    for (size_t i = 0; i < src->n_parts && used < size; i++) {
        const slr_kafka_partition *p = src->parts[i];
        int64_t lag = partition_lag(p);
        if (lag < 0) {
            unknown = true;
            continue;
        }
        total += lag;
        if (shown++ < LAG_LINE_MAX_PARTITIONS)
            used += (size_t)snprintf(buf + used, size - used, "%s %s %lld", shown > 1 ? "," : "",
                                     p->name, (long long)lag);
    }
    if (used < size)
        snprintf(buf + used, size - used, "%s(total %lld messages%s)", shown ? " " : " ",
                 (long long)total, unknown ? "; some partitions not started yet" : "");
    return true;
}

/* ------------------------------------------------------------ close */

void slr_kafka_source_close(slr_kafka_source *src, double timeout_seconds)
{
    if (!src)
        return;
    if (src->rk) {
        double deadline = slr_monotonic_seconds() + timeout_seconds;
        /* closing serves the revocation (release hook) on this thread, through
         * the consumer queue, within the time bound */
        rd_kafka_error_t *e = rd_kafka_consumer_close_queue(src->rk, src->queue);
        if (e) {
            say(src, "kafka: leaving the group: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        bool closed = false;
        for (;;) {
            if (rd_kafka_consumer_closed(src->rk)) {
                closed = true;
                break;
            }
            if (slr_monotonic_seconds() >= deadline)
                break;
            rd_kafka_message_t *msgs[64];
            size_t n = slr_kafka_source_consume(src, msgs, 64, 100);
            for (size_t i = 0; i < n; i++) /* we have stopped: nothing more is applied */
                rd_kafka_message_destroy(msgs[i]);
        }
        if (!closed)
            say(src, "kafka: leaving the group took longer than %.0f s; closing anyway (the group "
                     "notices after session.timeout.ms)", timeout_seconds);
        rd_kafka_queue_destroy(src->queue);
        rd_kafka_destroy_flags(src->rk, closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    }
    slr_kafka_partitions_clear(src);
    forget_refused(src);
    free(src->parts);
    free(src->failure);
    free(src);
}
