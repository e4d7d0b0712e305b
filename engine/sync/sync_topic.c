/* sync_topic.c - the Kafka transport of a group's shared model
 * (sync_topic.h, docs/SYNC_PROTOCOL.md): publishing per-slice deltas with an
 * idempotent producer (or, as defence in depth, a transactional one that
 * sends the slices' source offsets with them), and reading the sync
 * topic's partition 0 back, committed records only, as complete rounds in
 * order.
 *
 * The reader keeps the records of rounds not yet handed back (normally the
 * current round and, from members already past it, none: a member learns
 * round r+1 only from theta_{r+1}); duplicates are told apart by the
 * slice they name, so that every reader drops the same ones. */
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "util/clock.h"
#include "source/kafka_source.h"
#include "streamlr/sync_topic.h"
#include "sync_impl.h"

#define SYNC_PARTITION 0
#define WARM_MS 5000 /* the publisher's first look at its topic */

slr_status slr_sync_slice_name(char *buf, size_t n, const char *source_topic, int32_t partition,
                               slr_error *err)
{
    if (!source_topic || !*source_topic || partition < 0)
        return slr_error_set(err, SLR_ERR_ARG, "a slice needs a source topic and a partition >= 0");
    int len = snprintf(buf, n, "%s/%06d", source_topic, (int)partition);
    if (len < 0 || (size_t)len >= n || len > SLR_SYNC_MAX_MEMBER_ID)
        return slr_error_set(err, SLR_ERR_ARG,
                             "source topic \"%s\" is too long for a sync member name (%d bytes)",
                             source_topic, SLR_SYNC_MAX_MEMBER_ID);
    return SLR_OK;
}

static slr_status check_config(const slr_sync_topic_config *c, slr_error *err)
{
    if (!c->brokers || !*c->brokers || !c->topic || !*c->topic)
        return slr_error_set(err, SLR_ERR_ARG, "a sync topic needs --brokers and --sync-topic");
    if (!c->source_topic || !*c->source_topic || c->source_partitions < 1 || c->slice < 1)
        return slr_error_set(err, SLR_ERR_ARG,
                             "a sync topic needs the source topic, its partition count (>= 1) and "
                             "the slice size (--sync-every >= 1)");
    if (strcmp(c->topic, c->source_topic) == 0)
        return slr_error_set(err, SLR_ERR_ARG, "the sync topic cannot be the data topic \"%s\"",
                             c->topic);
    char name[SLR_SYNC_MAX_MEMBER_ID + 1];
    return slr_sync_slice_name(name, sizeof name, c->source_topic, c->source_partitions - 1, err);
}

/* librdkafka's log lines: the library prints nothing; what matters to a
 * caller comes back as an error (a delta not acknowledged, a missing topic,
 * a round not complete in time), naming the cause. */
static void drop_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk, (void)level, (void)fac, (void)buf;
}

/* A librdkafka configuration: brokers, no logging on the terminal, then the
 * user's settings (which may override ours). */
static slr_status make_conf(rd_kafka_conf_t **out, const slr_sync_topic_config *c,
                            const char *const *ours, slr_error *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    slr_status st = slr_kafka_conf_set(conf, "bootstrap.servers", c->brokers, err);
    rd_kafka_conf_set_log_cb(conf, drop_log);
    for (size_t i = 0; ours[i] && st == SLR_OK; i++)
        st = slr_kafka_conf_set_property(conf, ours[i], err);
    for (size_t i = 0; i < c->n_properties && st == SLR_OK; i++)
        st = slr_kafka_conf_set_property(conf, c->properties[i], err);
    if (st != SLR_OK) {
        rd_kafka_conf_destroy(conf);
        return st;
    }
    *out = conf;
    return SLR_OK;
}

/* Whether d is one slice of cfg's source topic, named as such. */
static slr_status check_slice(const slr_sync_topic_config *c, const slr_sync_delta *d,
                              slr_error *err)
{
    if (d->n_ranges != 1)
        return slr_error_set(err, SLR_ERR_CORRUPT, "a delta of \"%s\" has %zu source ranges, not 1",
                             d->member, d->n_ranges);
    const slr_sync_range *g = &d->ranges[0];
    if (strcmp(g->topic, c->source_topic) != 0 || g->partition < 0 ||
        g->partition >= c->source_partitions)
        return slr_error_set(err, SLR_ERR_CORRUPT,
                             "a delta for %s[%d], which is not a partition of %s[0..%d)", g->topic,
                             (int)g->partition, c->source_topic, (int)c->source_partitions);
    char name[SLR_SYNC_MAX_MEMBER_ID + 1];
    slr_status st = slr_sync_slice_name(name, sizeof name, g->topic, g->partition, err);
    if (st != SLR_OK)
        return st;
    if (strcmp(name, d->member) != 0)
        return slr_error_set(err, SLR_ERR_CORRUPT, "a delta for %s[%d] is named \"%s\", not \"%s\"",
                             g->topic, (int)g->partition, d->member, name);
    if (d->round > (uint64_t)(INT64_MAX / c->slice) - 1 ||
        g->from != (int64_t)d->round * c->slice || g->to < g->from || g->to - g->from > c->slice)
        return slr_error_set(err, SLR_ERR_CORRUPT,
                             "\"%s\" round %llu covers offsets [%lld, %lld), not a slice of "
                             "[%lld, %lld) (is every member using the same --sync-every?)",
                             d->member, (unsigned long long)d->round, (long long)g->from,
                             (long long)g->to, (long long)((int64_t)d->round * c->slice),
                             (long long)((int64_t)d->round * c->slice + c->slice));
    return SLR_OK;
}

/* ---------------------------------------------------------------- publish */

/* One record as published: kept while its transaction is open, so that an
 * aborted transaction can be published again as it was. */
typedef struct record {
    char key[SLR_SYNC_MAX_MEMBER_ID + 16];
    unsigned char *value;
    size_t len;
    char version[8], round[24];
    const char *mark_name; /* the third header: the slice, or a snapshot's chunk mark */
    char mark[64];
} record;

/* Aborts in a row before a commit gives up: an abortable error is
 * transient (a broker lost the producer's state, the group moved on while
 * the offsets were sent); one that keeps coming is not. */
#define TXN_ATTEMPTS 5
#define TXN_INIT_MS 60000

struct slr_sync_publisher {
    slr_sync_topic_config cfg;
    char *txn_id; /* transactional.id (owned); NULL: idempotent only */
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt; /* held so that the topic's metadata, fetched at the start, stays */
    unsigned long long failed;
    char last_error[256];
    uint64_t deltas, bytes; /* queued: records, and their keys' and values' bytes */
    /* transactions: the open one's records and source offsets (the end of
     * each delta's slice per source partition, -1: none) */
    bool in_txn;
    record *held;
    size_t n_held, cap_held;
    int64_t *offsets;
    uint64_t committed, aborted;
    slr_status dead; /* a fatal transactional error: nothing more is published */
    char dead_msg[SLR_ERROR_MSG_MAX];
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    slr_sync_publisher *p = opaque;
    /* a transaction's failed records fail its commit (and an abort purges
     * records on purpose): counted there, not here */
    if (m->err && !p->txn_id) {
        p->failed++;
        snprintf(p->last_error, sizeof p->last_error, "%s", rd_kafka_err2str(m->err));
    }
}

/* A transactional error that ends the publisher: the message every later
 * call repeats.  A fenced producer means another process took this one's
 * transactional.id over: this process is a zombie. */
static slr_status txn_fatal(slr_sync_publisher *p, const char *step, const rd_kafka_error_t *e,
                            slr_error *err)
{
    rd_kafka_resp_err_t code = rd_kafka_error_code(e);
    if (code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
        code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH)
        snprintf(p->dead_msg, sizeof p->dead_msg,
                 "sync topic %s: this member's transactional producer (transactional.id \"%s\") "
                 "was fenced while %s: another process started with the same "
                 "transactional.id (this member restarted elsewhere?), so this one is a zombie: "
                 "it stops learning and writes no final checkpoint or model; the process that "
                 "fenced it carries on",
                 p->cfg.topic, p->txn_id, step);
    else
        snprintf(p->dead_msg, sizeof p->dead_msg,
                 "sync topic %s: transactions failed for good while %s (transactional.id "
                 "\"%s\"): %s; learning stops rather than going on with a model the group does "
                 "not share",
                 p->cfg.topic, step, p->txn_id, rd_kafka_error_string(e));
    p->dead = SLR_ERR_KAFKA;
    return slr_error_set(err, SLR_ERR_KAFKA, "%s", p->dead_msg);
}

slr_status slr_sync_publisher_create(slr_sync_publisher **out, const slr_sync_topic_config *cfg,
                                     slr_error *err)
{
    *out = NULL;
    slr_status st = check_config(cfg, err);
    if (st != SLR_OK)
        return st;
    slr_sync_publisher *p = calloc(1, sizeof *p);
    if (!p)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    p->cfg = *cfg;
    p->cfg.properties = NULL; /* only used here, at creation */
    p->cfg.n_properties = 0;
    p->cfg.transactional_id = NULL;
    /* the user's -X transactional.id names the producer, given transactions */
    const char *txn_id = cfg->transactional_id;
    for (size_t i = 0; i < cfg->n_properties; i++)
        if (!strncmp(cfg->properties[i], "transactional.id=", 17)) {
            if (!txn_id) {
                free(p);
                return slr_error_set(err, SLR_ERR_ARG,
                                     "sync topic %s: transactional.id is set (-X) but "
                                     "transactions are off: add --sync-transactions on, or "
                                     "drop it",
                                     cfg->topic);
            }
            txn_id = cfg->properties[i] + 17;
        }
    if (txn_id && (!(p->txn_id = strdup(txn_id)) ||
         !(p->offsets = malloc((size_t)cfg->source_partitions * sizeof *p->offsets)))) {
        slr_sync_publisher_destroy(p);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    }
    for (int32_t i = 0; p->offsets && i < cfg->source_partitions; i++)
        p->offsets[i] = -1;
    /* idempotence: a retried send is written once, in order, so the topic's
     * order (which decides which of two deltas of a slice wins) is the
     * order the member published in */
    static const char *const ours[] = {"enable.idempotence=true", "acks=all", "linger.ms=5",
                                       NULL};
    rd_kafka_conf_t *conf;
    if ((st = make_conf(&conf, cfg, ours, err)) != SLR_OK) {
        slr_sync_publisher_destroy(p);
        return st;
    }
    if (p->txn_id &&
        (st = slr_kafka_conf_set(conf, "transactional.id", p->txn_id, err)) != SLR_OK) {
        rd_kafka_conf_destroy(conf);
        slr_sync_publisher_destroy(p);
        return st;
    }
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    char errstr[512];
    if (!(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr))) {
        rd_kafka_conf_destroy(conf);
        slr_sync_publisher_destroy(p);
        return slr_error_set(err, SLR_ERR_KAFKA, "sync topic producer: %s", errstr);
    }
    if (p->txn_id) {
        /* fences any earlier producer of this transactional.id and aborts
         * the transaction it left open (readers wait behind it) */
        rd_kafka_error_t *e = rd_kafka_init_transactions(p->rk, TXN_INIT_MS);
        if (e) {
            st = slr_error_set(err, SLR_ERR_KAFKA,
                               "sync topic %s: starting transactions (transactional.id \"%s\"): "
                               "%s (the cluster needs a transaction coordinator -- on a single "
                               "broker transaction.state.log.replication.factor=1 and "
                               "transaction.state.log.min.isr=1 -- and Write on the "
                               "transactional id; or --sync-transactions off)",
                               cfg->topic, p->txn_id, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            slr_sync_publisher_destroy(p);
            return st;
        }
    }
    /* The topic's partition now, not at the first delta: a producer looks up
     * a topic it has not produced to at its next metadata scan, up to a
     * second later, and the group's first round waited for it (BENCHMARKS.md,
     * tools/bench sync-member).  Best effort: a cluster that cannot answer
     * yet leaves the first delta to wait as before. */
    const struct rd_kafka_metadata *md;
    if ((p->rkt = rd_kafka_topic_new(p->rk, cfg->topic, NULL)) &&
        rd_kafka_metadata(p->rk, 0, p->rkt, &md, WARM_MS) == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);
    *out = p;
    return SLR_OK;
}

static void held_clear(slr_sync_publisher *p)
{
    for (size_t i = 0; i < p->n_held; i++)
        free(p->held[i].value);
    p->n_held = 0;
    for (int32_t i = 0; p->offsets && i < p->cfg.source_partitions; i++)
        p->offsets[i] = -1;
}

void slr_sync_publisher_destroy(slr_sync_publisher *p)
{
    if (!p)
        return;
    if (p->rk) {
        if (p->in_txn && !p->dead) { /* never committed: readers must not wait for it */
            rd_kafka_error_t *e = rd_kafka_abort_transaction(p->rk, 5000);
            if (e)
                rd_kafka_error_destroy(e);
        }
        rd_kafka_flush(p->rk, 5000);
        if (p->rkt)
            rd_kafka_topic_destroy(p->rkt);
        rd_kafka_destroy(p->rk);
    }
    held_clear(p);
    free(p->held);
    free(p->offsets);
    free(p->txn_id);
    free(p);
}

/* Queue r's record.  Without transactions its value goes to librdkafka
 * (freed there, also on failure); with them it is copied, the publisher
 * keeping r for a transaction published again. */
static slr_status produce(slr_sync_publisher *p, record *r, slr_error *err)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(p->cfg.topic), RD_KAFKA_V_PARTITION(SYNC_PARTITION),
            RD_KAFKA_V_KEY(r->key, strlen(r->key)), RD_KAFKA_V_VALUE(r->value, r->len),
            RD_KAFKA_V_HEADER(SLR_SYNC_HEADER_VERSION, r->version, -1),
            RD_KAFKA_V_HEADER(SLR_SYNC_HEADER_ROUND, r->round, -1),
            RD_KAFKA_V_HEADER(r->mark_name, r->mark, -1),
            RD_KAFKA_V_MSGFLAGS(p->txn_id ? RD_KAFKA_MSG_F_COPY : RD_KAFKA_MSG_F_FREE),
            RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return SLR_OK;
        if (p->txn_id && e == RD_KAFKA_RESP_ERR__STATE)
            return SLR_OK; /* the transaction failed (abortable): its commit fails, aborts it
                              and publishes r again with the others it holds */
        if (p->txn_id && e == RD_KAFKA_RESP_ERR__FATAL) { /* fenced, above all */
            char why[256];
            rd_kafka_error_t *f = rd_kafka_error_new(rd_kafka_fatal_error(p->rk, why, sizeof why),
                                                     "%s", why);
            slr_status st = txn_fatal(p, "publishing a record", f, err);
            rd_kafka_error_destroy(f);
            return st;
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (!p->txn_id)
                free(r->value);
            return slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s: %s", p->cfg.topic,
                                 rd_kafka_err2str(e));
        }
        rd_kafka_poll(p->rk, 50);
    }
}

/* Publish r: as it is, or inside the open transaction (begun if none is),
 * keeping it.  r's value is taken over. */
static slr_status publish_record(slr_sync_publisher *p, record *r, slr_error *err)
{
    if (!p->txn_id)
        return produce(p, r, err);
    if (p->dead) {
        free(r->value);
        return slr_error_set(err, p->dead, "%s", p->dead_msg);
    }
    if (p->n_held == p->cap_held) {
        size_t cap = p->cap_held ? 2 * p->cap_held : 16;
        record *h = realloc(p->held, cap * sizeof *h);
        if (!h) {
            free(r->value);
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
        }
        p->held = h;
        p->cap_held = cap;
    }
    p->held[p->n_held++] = *r;
    if (!p->in_txn) {
        rd_kafka_error_t *e = rd_kafka_begin_transaction(p->rk);
        if (e) {
            slr_status st = txn_fatal(p, "beginning a transaction", e, err);
            rd_kafka_error_destroy(e);
            return st;
        }
        p->in_txn = true;
    }
    return produce(p, &p->held[p->n_held - 1], err);
}

slr_status slr_sync_publish(slr_sync_publisher *p, const slr_sync_delta *d, slr_error *err)
{
    slr_status st = check_slice(&p->cfg, d, err);
    if (st != SLR_OK) {
        slr_error_prefix(err, "not published: ");
        if (err)
            err->code = SLR_ERR_ARG;
        return SLR_ERR_ARG;
    }
    record r = {.mark_name = SLR_SYNC_HEADER_SLICE};
    if ((st = slr_sync_delta_encode(d, &r.value, &r.len, err)) != SLR_OK)
        return st;
    snprintf(r.key, sizeof r.key, "%s", d->member);
    snprintf(r.version, sizeof r.version, "%d", SLR_SYNC_FORMAT_VERSION);
    snprintf(r.round, sizeof r.round, "%llu", (unsigned long long)d->round);
    snprintf(r.mark, sizeof r.mark, "%lld-%lld", (long long)d->ranges[0].from,
             (long long)d->ranges[0].to);
    size_t len = r.len;
    if ((st = publish_record(p, &r, err)) != SLR_OK)
        return st;
    p->deltas++;
    p->bytes += len + strlen(d->member);
    if (p->offsets) /* its slice is consumed once the transaction commits */
        p->offsets[d->ranges[0].partition] = d->ranges[0].to;
    return SLR_OK;
}

int slr_sync_publisher_pending(const slr_sync_publisher *p)
{
    return p->failed ? -1 : rd_kafka_outq_len(p->rk);
}

void slr_sync_publisher_counts(const slr_sync_publisher *p, uint64_t *deltas, uint64_t *bytes)
{
    *deltas = p->deltas;
    *bytes = p->bytes;
}

void slr_sync_publisher_transactions(const slr_sync_publisher *p, uint64_t *committed,
                                     uint64_t *aborted)
{
    *committed = p->committed;
    *aborted = p->aborted;
}

static slr_status flush_plain(slr_sync_publisher *p, int timeout_ms, slr_error *err)
{
    rd_kafka_flush(p->rk, timeout_ms);
    if (p->failed)
        return slr_error_set(err, SLR_ERR_KAFKA,
                             "sync topic %s: %llu delta(s) not written (%s); learning stops "
                             "rather than going on with a model the group does not share",
                             p->cfg.topic, p->failed, p->last_error);
    int left = rd_kafka_outq_len(p->rk);
    if (left > 0)
        return slr_error_set(err, SLR_ERR_KAFKA,
                             "sync topic %s: %d record(s) not acknowledged within %d ms (is the "
                             "cluster reachable?)",
                             p->cfg.topic, left, timeout_ms);
    return SLR_OK;
}

/* The open transaction's source offsets for gm's group. */
static rd_kafka_error_t *send_offsets(slr_sync_publisher *p,
                                      const rd_kafka_consumer_group_metadata_t *gm, int ms)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    for (int32_t i = 0; i < p->cfg.source_partitions; i++)
        if (p->offsets[i] >= 0)
            rd_kafka_topic_partition_list_add(l, p->cfg.source_topic, i)->offset = p->offsets[i];
    rd_kafka_error_t *e = l->cnt ? rd_kafka_send_offsets_to_transaction(p->rk, l, gm, ms) : NULL;
    rd_kafka_topic_partition_list_destroy(l);
    return e;
}

/* The group refused the offsets: its generation moved past the one they
 * were sent with (a rebalance, or this member is a zombie). */
static bool group_refused(rd_kafka_resp_err_t code)
{
    return code == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
           code == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID ||
           code == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
           code == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID;
}

/* Commit the open transaction: its records (published again after an
 * abort), then its offsets (if gm), then EndTxn. */
static slr_status txn_commit(slr_sync_publisher *p, const rd_kafka_consumer_group_metadata_t *gm,
                             int timeout_ms, slr_error *err)
{
    double until = slr_monotonic_seconds() + timeout_ms / 1000.0;
    unsigned aborts = 0;
    char last[256] = "";
    for (;;) {
        int left = (int)((until - slr_monotonic_seconds()) * 1000);
        if (left <= 0)
            return slr_error_set(err, SLR_ERR_KAFKA,
                                 "sync topic %s: a transaction not committed within %d ms%s%s "
                                 "(is the cluster reachable?)",
                                 p->cfg.topic, timeout_ms, *last ? ": " : "", last);
        const char *step = "publishing a transaction again";
        rd_kafka_error_t *e = NULL;
        if (!p->in_txn) { /* after an abort: the same records in a new one */
            if (!(e = rd_kafka_begin_transaction(p->rk))) {
                p->in_txn = true;
                for (size_t i = 0; i < p->n_held; i++) {
                    slr_status st = produce(p, &p->held[i], err);
                    if (st != SLR_OK)
                        return st;
                }
            }
        }
        if (!e && gm) {
            step = "sending the source offsets to a transaction";
            e = send_offsets(p, gm, left);
        }
        if (!e) {
            step = "committing a transaction";
            e = rd_kafka_commit_transaction(p->rk, left);
        }
        if (!e) {
            p->in_txn = false;
            p->committed++;
            held_clear(p);
            return SLR_OK;
        }
        slr_status st = SLR_OK;
        snprintf(last, sizeof last, "%s: %s", step, rd_kafka_error_string(e));
        if (rd_kafka_error_is_fatal(e)) {
            st = txn_fatal(p, step, e, err);
        } else if (rd_kafka_error_txn_requires_abort(e)) {
            /* the group's generation moved on while the offsets were
             * sent: the deltas go again without them (they are safe by
             * construction); the member's next durable checkpoint commits
             * its offsets, as without transactions */
            if (group_refused(rd_kafka_error_code(e)))
                gm = NULL;
            rd_kafka_error_t *a = rd_kafka_abort_transaction(p->rk, left);
            if (a && rd_kafka_error_is_fatal(a))
                st = txn_fatal(p, "aborting a transaction", a, err);
            else if (a)
                st = slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s: aborting a transaction "
                                   "after %s: %s", p->cfg.topic, last, rd_kafka_error_string(a));
            else {
                p->in_txn = false;
                p->aborted++;
                if (++aborts >= TXN_ATTEMPTS)
                    st = slr_error_set(err, SLR_ERR_KAFKA,
                                       "sync topic %s: a transaction aborted %u times in a row "
                                       "(last %s); learning stops rather than going on with a "
                                       "model the group does not share",
                                       p->cfg.topic, aborts, last);
            }
            if (a)
                rd_kafka_error_destroy(a);
        } else if (!rd_kafka_error_is_retriable(e)) {
            st = slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s: %s", p->cfg.topic, last);
        } else { /* retriable: the same call again, in the same transaction */
            rd_kafka_poll(p->rk, 100);
        }
        rd_kafka_error_destroy(e);
        if (st != SLR_OK)
            return st;
    }
}

slr_status slr_sync_publisher_commit(slr_sync_publisher *p, const void *group, size_t group_len,
                                     int timeout_ms, slr_error *err)
{
    if (!p->txn_id)
        return flush_plain(p, timeout_ms, err);
    if (p->dead)
        return slr_error_set(err, p->dead, "%s", p->dead_msg);
    if (!p->in_txn && !p->n_held)
        return SLR_OK;
    rd_kafka_consumer_group_metadata_t *gm = NULL;
    if (group) {
        rd_kafka_error_t *e = rd_kafka_consumer_group_metadata_read(&gm, group, group_len);
        if (e) {
            slr_status st = slr_error_set(err, SLR_ERR_ARG, "a consumer group's metadata: %s",
                                          rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return st;
        }
    }
    slr_status st = txn_commit(p, gm, timeout_ms, err);
    if (gm)
        rd_kafka_consumer_group_metadata_destroy(gm);
    return st;
}

slr_status slr_sync_publisher_flush(slr_sync_publisher *p, int timeout_ms, slr_error *err)
{
    return slr_sync_publisher_commit(p, NULL, 0, timeout_ms, err);
}

/* An id no other snapshot shares (two writers of one round, one restarted,
 * must not mix their chunks): the clock, the process, a counter. */
static uint64_t snapshot_id(const slr_sync_publisher *p)
{
    static unsigned long counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t v[5] = {(uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec, (uint64_t)getpid(),
                     (uint64_t)(uintptr_t)p, __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED)};
    return XXH3_64bits(v, sizeof v);
}

/* What a chunk's record holds besides its bytes: key, headers, the chunk's
 * msgpack fields, Kafka's record framing (generously). */
#define CHUNK_OVERHEAD 1024

slr_status slr_sync_publish_snapshot(slr_sync_publisher *p, const slr_learner *theta, uint64_t round,
                                     const slr_sync_ledger *ledger, int64_t position,
                                     size_t max_record, slr_error *err)
{
    if (max_record == 0)
        max_record = SLR_SYNC_SNAPSHOT_CHUNK;
    if (max_record < 4 * CHUNK_OVERHEAD)
        return slr_error_set(err, SLR_ERR_ARG, "a snapshot's records need at least %d bytes",
                             4 * CHUNK_OVERHEAD);
    slr_sync_snapshot s = {.round = round, .position = position,
                           .source_partitions = p->cfg.source_partitions, .slice = p->cfg.slice,
                           .learner = (slr_learner *)theta, .ledger = (slr_sync_ledger *)ledger};
    snprintf(s.source_topic, sizeof s.source_topic, "%s", p->cfg.source_topic);
    unsigned char *body;
    size_t len;
    slr_status st = slr_sync_snapshot_encode(&s, &body, &len, err);
    if (st != SLR_OK)
        return st;
    const size_t per = max_record - CHUNK_OVERHEAD;
    const size_t count = len / per + (len % per != 0);
    if (count > UINT32_MAX) {
        free(body);
        return slr_error_set(err, SLR_ERR_ARG, "a snapshot of %zu bytes in records of %zu", len,
                             max_record);
    }
    slr_sync_chunk c = {.id = snapshot_id(p), .round = round, .position = position,
                        .count = (uint32_t)count, .total = len,
                        .hash = slr_sync_body_hash(body, len)};
    for (uint32_t i = 0; i < count && st == SLR_OK; i++) {
        c.index = i;
        c.data = body + (size_t)i * per;
        c.len = i + 1 < count ? per : len - (size_t)i * per;
        record r = {.mark_name = SLR_SYNC_HEADER_SNAPSHOT};
        if ((st = slr_sync_chunk_encode(&c, &r.value, &r.len, err)) != SLR_OK)
            break;
        snprintf(r.key, sizeof r.key, "%s/snapshot", p->cfg.source_topic);
        snprintf(r.version, sizeof r.version, "%d", SLR_SYNC_SNAPSHOT_VERSION);
        snprintf(r.round, sizeof r.round, "%llu", (unsigned long long)round);
        snprintf(r.mark, sizeof r.mark, "%016llx %u/%u", (unsigned long long)c.id, i, c.count);
        if ((st = publish_record(p, &r, err)) != SLR_OK)
            slr_error_prefix(err, "snapshot chunk %u/%u: ", i, c.count);
    }
    free(body);
    return st;
}

/* Whether a record is a snapshot's chunk (its header says so). */
static bool is_snapshot(const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t n;
    return rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
           rd_kafka_header_get_last(h, SLR_SYNC_HEADER_SNAPSHOT, &v, &n) ==
               RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* ------------------------------------------------------------------- read */

typedef struct pending {
    slr_sync_delta d;
    unsigned char *raw; /* the record's value, to tell identical repeats */
    size_t len;
    int64_t offset;
} pending;

struct slr_sync_reader {
    slr_sync_topic_config cfg;
    char *topic, *source_topic; /* owned copies of cfg's strings */
    rd_kafka_t *rk;
    uint64_t round;
    int64_t position; /* after the record that completed the last round handed back */
    int64_t read_to;  /* after the last record read */
    int64_t high;     /* the topic's high watermark when last asked */
    uint64_t *ended;  /* per source partition: the round its input ended in, or UINT64_MAX */
    pending *pend;
    size_t n_pend, cap_pend;
    slr_sync_delta *out; /* the round handed back */
    size_t n_out;
    uint64_t identical, different, late;
    bool lost; /* the next record fell off the topic's retention */
    /* a record that is no delta of this group: the reader stops at it and
     * says so again on every call (the consumer has moved past it, and its
     * position must not count it as read: that would skip it in silence) */
    bool bad;
    char bad_msg[SLR_ERROR_MSG_MAX];
    /* reachability: a reader waiting for a round cannot tell a quiet topic
     * from one it cannot reach (librdkafka retries in silence, and a
     * partition without a leader raises no error at all), so after
     * PROBE_QUIET_SECONDS without a record it asks for the watermarks */
    double heard;          /* when a record or a probe last got through */
    double probe_at;       /* when to probe next */
    double unreachable_since; /* 0: reachable */
    char unreachable[256]; /* why not: the last error */
};

#define PROBE_QUIET_SECONDS 2.0 /* no record for that long: ask the broker */
#define PROBE_MS 500            /* how long a probe may wait for the answer */

static void pending_free(pending *e)
{
    slr_sync_delta_clear(&e->d);
    free(e->raw);
}

static void clear_out(slr_sync_reader *r)
{
    for (size_t i = 0; i < r->n_out; i++)
        slr_sync_delta_clear(&r->out[i]);
    r->n_out = 0;
}

void slr_sync_reader_destroy(slr_sync_reader *r)
{
    if (!r)
        return;
    if (r->rk) {
        rd_kafka_consumer_close(r->rk);
        rd_kafka_destroy(r->rk);
    }
    for (size_t i = 0; i < r->n_pend; i++)
        pending_free(&r->pend[i]);
    clear_out(r);
    free(r->pend);
    free(r->out);
    free(r->ended);
    free(r->topic);
    free(r->source_topic);
    free(r);
}

/* The sync topic exists and has one partition (its order is the group's):
 * checked before anything is learned, since an assigned consumer would wait
 * for a missing topic in silence. */
static slr_status check_topic(rd_kafka_t *rk, const char *topic, slr_error *err)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt)
        return slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s: %s", topic,
                             rd_kafka_err2str(rd_kafka_last_error()));
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 30000);
    rd_kafka_topic_destroy(rkt);
    if (e)
        return slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s: metadata: %s", topic,
                             rd_kafka_err2str(e));
    slr_status st = SLR_OK;
    if (md->topic_cnt != 1 || md->topics[0].err)
        st = slr_error_set(err, SLR_ERR_KAFKA,
                           "sync topic %s: %s (create it with one partition before the group "
                           "starts)",
                           topic, md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "not found");
    else if (md->topics[0].partition_cnt != 1)
        st = slr_error_set(err, SLR_ERR_ARG,
                           "sync topic %s has %d partitions; it needs exactly one, whose order "
                           "every member reads alike (was it created by first use, with the "
                           "broker's default? create it with --partitions 1 before the group "
                           "starts)",
                           topic, md->topics[0].partition_cnt);
    rd_kafka_metadata_destroy(md);
    return st;
}

/* Readers see committed records only, whatever the caller's -X says:
 * deltas of a transaction a member aborted (docs/SYNC_PROTOCOL.md,
 * "Transactions") stay out of view on a real cluster.  Without
 * transactions every record is committed as soon as it is written. */
static slr_status read_committed(rd_kafka_conf_t *conf, slr_error *err)
{
    return slr_kafka_conf_set(conf, "isolation.level", "read_committed", err);
}

/* How far rk has read partition 0 of topic, read_to being after the last
 * record it returned: its position can be further, past transaction
 * markers and aborted records, which take offsets but are never
 * returned -- a reader that waited for read_to alone to reach the high
 * watermark would wait forever behind a commit marker. */
static int64_t read_up_to(rd_kafka_t *rk, const char *topic, int64_t read_to)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_t *t = rd_kafka_topic_partition_list_add(l, topic, SYNC_PARTITION);
    int64_t at = read_to;
    if (rd_kafka_position(rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR && !t->err && t->offset > at)
        at = t->offset;
    rd_kafka_topic_partition_list_destroy(l);
    return at;
}

/* A consumer of the sync topic without a group: positions are the caller's
 * (its checkpoint's), never committed; a position retention dropped is an
 * error (auto.offset.reset=error, whatever the caller's properties say),
 * not a silent jump to the end. */
static slr_status reader_conf(rd_kafka_conf_t **conf, const slr_sync_topic_config *cfg,
                              slr_error *err)
{
    static const char *const ours[] = {"group.id=streamlr-sync-reader", "enable.auto.commit=false",
                                       "allow.auto.create.topics=false",
                                       "enable.partition.eof=false", "fetch.wait.max.ms=50",
                                       NULL};
    slr_status st = make_conf(conf, cfg, ours, err);
    /* after the caller's properties: a consumer's auto.offset.reset shared
     * through -X must not make a lost reader jump silently */
    if (st == SLR_OK)
        st = slr_kafka_conf_set(*conf, "auto.offset.reset", "error", err);
    if (st == SLR_OK)
        st = read_committed(*conf, err);
    if (st != SLR_OK)
        rd_kafka_conf_destroy(*conf);
    return st;
}

/* A consumer from conf (taken, also on failure). */
static slr_status new_consumer(rd_kafka_t **rk, rd_kafka_conf_t *conf, slr_error *err)
{
    char errstr[512];
    if (!(*rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr))) {
        rd_kafka_conf_destroy(conf);
        return slr_error_set(err, SLR_ERR_KAFKA, "sync topic reader: %s", errstr);
    }
    rd_kafka_poll_set_consumer(*rk);
    return SLR_OK;
}

static slr_status assign_at(rd_kafka_t *rk, const char *topic, int64_t from, slr_error *err)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, SYNC_PARTITION)->offset = from;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        return slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s: %s", topic, rd_kafka_err2str(e));
    return SLR_OK;
}

slr_status slr_sync_reader_create(slr_sync_reader **out, const slr_sync_topic_config *cfg,
                                  int64_t from, uint64_t round, slr_error *err)
{
    *out = NULL;
    slr_status st = check_config(cfg, err);
    if (st != SLR_OK)
        return st;
    if (from < 0)
        return slr_error_set(err, SLR_ERR_ARG, "a sync topic position must be >= 0");
    slr_sync_reader *r = calloc(1, sizeof *r);
    if (!r)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    r->cfg = *cfg;
    r->cfg.properties = NULL; /* only used here, at creation */
    r->cfg.n_properties = 0;
    r->topic = strdup(cfg->topic);
    r->source_topic = strdup(cfg->source_topic);
    r->ended = malloc((size_t)cfg->source_partitions * sizeof *r->ended);
    r->out = calloc((size_t)cfg->source_partitions, sizeof *r->out);
    if (!r->topic || !r->source_topic || !r->ended || !r->out) {
        slr_sync_reader_destroy(r);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    }
    r->cfg.topic = r->topic;
    r->cfg.source_topic = r->source_topic;
    for (int32_t p = 0; p < cfg->source_partitions; p++)
        r->ended[p] = UINT64_MAX;
    r->round = round;
    r->position = r->read_to = from;
    r->heard = r->probe_at = slr_monotonic_seconds();
    /* no group: the position is the caller's (its checkpoint's), never committed */
    rd_kafka_conf_t *conf;
    if ((st = reader_conf(&conf, cfg, err)) != SLR_OK) {
        slr_sync_reader_destroy(r);
        return st;
    }
    char errstr[512];
    if (!(r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr))) {
        rd_kafka_conf_destroy(conf);
        slr_sync_reader_destroy(r);
        return slr_error_set(err, SLR_ERR_KAFKA, "sync topic reader: %s", errstr);
    }
    rd_kafka_poll_set_consumer(r->rk);
    if ((st = check_topic(r->rk, cfg->topic, err)) != SLR_OK) {
        slr_sync_reader_destroy(r);
        return st;
    }
    if ((st = assign_at(r->rk, cfg->topic, from, err)) != SLR_OK) {
        slr_sync_reader_destroy(r);
        return st;
    }
    *out = r;
    return SLR_OK;
}

slr_status slr_sync_reader_set_ended(slr_sync_reader *r, int32_t partition, uint64_t round,
                                     slr_error *err)
{
    if (partition < 0 || partition >= r->cfg.source_partitions)
        return slr_error_set(err, SLR_ERR_ARG, "partition %d is not one of the source's %d",
                             (int)partition, (int)r->cfg.source_partitions);
    r->ended[partition] = round;
    return SLR_OK;
}

/* Take one record of the sync topic in. */
static slr_status ingest(slr_sync_reader *r, const rd_kafka_message_t *m, slr_error *err)
{
    if (m->offset < r->read_to) /* fetched before a reassignment: already taken in */
        return SLR_OK;
    if (is_snapshot(m)) { /* full state, for readers that start: this one is past it */
        r->read_to = m->offset + 1;
        return SLR_OK;
    }
    pending e = {.offset = m->offset};
    slr_status st = slr_sync_delta_decode(m->payload, m->len, &e.d, err);
    if (st == SLR_OK)
        st = check_slice(&r->cfg, &e.d, err);
    if (st == SLR_OK && e.d.round > r->ended[e.d.ranges[0].partition])
        st = slr_error_set(err, SLR_ERR_CORRUPT,
                           "\"%s\" has a delta for round %llu, after its input ended in round %llu",
                           e.d.member, (unsigned long long)e.d.round,
                           (unsigned long long)r->ended[e.d.ranges[0].partition]);
    if (st != SLR_OK) {
        slr_sync_delta_clear(&e.d);
        slr_error_prefix(err, "sync topic %s offset %lld: ", r->topic, (long long)m->offset);
        r->bad = true;
        snprintf(r->bad_msg, sizeof r->bad_msg, "%s", err->msg);
        return SLR_ERR_CORRUPT;
    }
    r->read_to = m->offset + 1;
    if (e.d.round < r->round) {
        r->late++;
        slr_sync_delta_clear(&e.d);
        return SLR_OK;
    }
    for (size_t i = 0; i < r->n_pend; i++)
        if (r->pend[i].d.round == e.d.round &&
            r->pend[i].d.ranges[0].partition == e.d.ranges[0].partition) {
            bool same = r->pend[i].len == m->len && memcmp(r->pend[i].raw, m->payload, m->len) == 0;
            if (same)
                r->identical++;
            else
                r->different++;
            slr_sync_delta_clear(&e.d);
            return SLR_OK;
        }
    if (r->n_pend == r->cap_pend) {
        size_t cap = r->cap_pend ? 2 * r->cap_pend : 16;
        pending *np = realloc(r->pend, cap * sizeof *np);
        if (!np) {
            slr_sync_delta_clear(&e.d);
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for the sync topic's records");
        }
        r->pend = np;
        r->cap_pend = cap;
    }
    if (m->len && !(e.raw = malloc(m->len))) {
        slr_sync_delta_clear(&e.d);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for the sync topic's records");
    }
    if (m->len)
        memcpy(e.raw, m->payload, m->len);
    e.len = m->len;
    r->pend[r->n_pend++] = e;
    return SLR_OK;
}

static slr_status lost_error(const slr_sync_reader *r, slr_error *err)
{
    return slr_error_set(err, SLR_ERR_KAFKA,
                         "sync topic %s: offset %lld is no longer on the topic: its retention "
                         "dropped records this reader had not read (give the topic a longer "
                         "retention; a member restarted without its checkpoint starts from the "
                         "newest snapshot)",
                         r->topic, (long long)r->read_to);
}

static void heard(slr_sync_reader *r, double now)
{
    r->heard = now;
    r->unreachable_since = 0;
    r->unreachable[0] = '\0';
}

static void not_heard(slr_sync_reader *r, double now, const char *why)
{
    if (!r->unreachable_since)
        r->unreachable_since = now;
    snprintf(r->unreachable, sizeof r->unreachable, "%s", why);
}

/* Quiet for a while: does the cluster still say who leads the topic?
 * (At most once per PROBE_QUIET_SECONDS, and only while no record comes:
 * a group that waits on the barrier pays a metadata request every two
 * seconds.  Metadata, not the watermarks: librdkafka 2.0's watermark query
 * waits for the leader past its timeout, so it would hang the caller for
 * the whole outage.) */
static void probe_now(slr_sync_reader *r)
{
    double now;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(r->rk, r->topic, NULL);
    rd_kafka_resp_err_t e = rkt ? rd_kafka_metadata(r->rk, 0, rkt, &md, PROBE_MS)
                                : rd_kafka_last_error();
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (!e && (md->topic_cnt != 1 || md->topics[0].err))
        e = md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    else if (!e && (md->topics[0].partition_cnt < 1 || md->topics[0].partitions[0].err ||
                    md->topics[0].partitions[0].leader < 0))
        e = md->topics[0].partition_cnt && md->topics[0].partitions[0].err
                ? md->topics[0].partitions[0].err
                : RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
    if (md)
        rd_kafka_metadata_destroy(md);
    now = slr_monotonic_seconds();
    r->probe_at = now + PROBE_QUIET_SECONDS;
    if (e)
        not_heard(r, now, rd_kafka_err2str(e));
    else
        heard(r, now);
}

static void probe(slr_sync_reader *r)
{
    double now = slr_monotonic_seconds();
    if (now >= r->probe_at && now - r->heard >= PROBE_QUIET_SECONDS)
        probe_now(r);
}

/* Poll once for up to ms; a record is taken in, a transient error (broker
 * down, a leader moving) only waits: the caller's timeout decides. */
static slr_status poll_once(slr_sync_reader *r, int ms, slr_error *err)
{
    probe(r);
    rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, ms);
    if (!m)
        return SLR_OK;
    slr_status st = SLR_OK;
    if (!m->err)
        heard(r, slr_monotonic_seconds());
    else if (m->err == RD_KAFKA_RESP_ERR__TRANSPORT || m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        not_heard(r, slr_monotonic_seconds(), rd_kafka_message_errstr(m));
    if (!m->err)
        st = ingest(r, m, err);
    else if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
             m->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
             m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED || m->err == RD_KAFKA_RESP_ERR__FATAL)
        st = slr_error_set(err, SLR_ERR_KAFKA,
                           "sync topic %s: %s (create it with one partition before the group "
                           "starts; a position past its retention needs a snapshot)",
                           r->topic, rd_kafka_message_errstr(m));
    else if (m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE ||
             m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
        r->lost = true;
        st = lost_error(r, err);
    }
    rd_kafka_message_destroy(m);
    return st;
}


/* Whether every partition not ended before round r->round has its delta
 * read (at most one pending record per slice: counting them is enough);
 * *ended: no partition is left. */
static bool round_ready(const slr_sync_reader *r, bool *ended)
{
    size_t need = 0, have = 0;
    for (int32_t p = 0; p < r->cfg.source_partitions; p++)
        if (r->ended[p] >= r->round)
            need++;
    for (size_t i = 0; i < r->n_pend; i++)
        if (r->pend[i].d.round == r->round)
            have++;
    *ended = need == 0;
    return have >= need;
}

/* The reader has read up to the high watermark it last asked for (its
 * consumer's position counts: transaction markers take offsets no record
 * is returned for).  read_to itself only moves with records: a position
 * read just after a reassignment may still be the old one's. */
static bool reached(const slr_sync_reader *r)
{
    if (r->bad)
        return false;
    return r->read_to >= r->high || read_up_to(r->rk, r->topic, r->read_to) >= r->high;
}

slr_status slr_sync_reader_catch_up(slr_sync_reader *r, int timeout_ms, bool *caught_up,
                                    slr_error *err)
{
    *caught_up = false;
    if (r->lost)
        return lost_error(r, err);
    if (r->bad)
        return slr_error_set(err, SLR_ERR_CORRUPT, "%s", r->bad_msg);
    double until = slr_monotonic_seconds() + timeout_ms / 1000.0;
    if (reached(r)) { /* the mark passed: where is the topic now? */
        /* not if its leader is away: the query would wait for it past its
         * timeout; the caller sees *caught_up false and the reason
         * (slr_sync_reader_unreachable) */
        probe_now(r);
        if (r->unreachable_since)
            return SLR_OK;
        int64_t lo;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(r->rk, r->topic, SYNC_PARTITION,
                                                                 &lo, &r->high, timeout_ms);
        if (e)
            return slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s: %s", r->topic,
                                 rd_kafka_err2str(e));
    }
    bool ended;
    /* stop at a complete round: the caller takes it before more is read, so
     * that replaying a long topic holds about one round at a time */
    while (!reached(r) && !round_ready(r, &ended) && slr_monotonic_seconds() < until) {
        slr_status st = poll_once(r, 50, err);
        if (st != SLR_OK)
            return st;
    }
    *caught_up = reached(r);
    return SLR_OK;
}

static int by_member(const void *a, const void *b)
{
    return strcmp(((const slr_sync_delta *)a)->member, ((const slr_sync_delta *)b)->member);
}

/* Hand round r->round back if it is complete. */
static bool take_round(slr_sync_reader *r, bool *ended)
{
    if (!round_ready(r, ended))
        return false;
    clear_out(r);
    int64_t last = r->position - 1;
    size_t keep = 0;
    for (size_t i = 0; i < r->n_pend; i++) {
        pending *e = &r->pend[i];
        if (e->d.round != r->round) {
            r->pend[keep++] = *e;
            continue;
        }
        const slr_sync_range *g = &e->d.ranges[0];
        if (g->to - g->from < r->cfg.slice)
            r->ended[g->partition] = r->round;
        if (e->offset > last)
            last = e->offset;
        r->out[r->n_out++] = e->d;
        free(e->raw);
    }
    r->n_pend = keep;
    qsort(r->out, r->n_out, sizeof *r->out, by_member);
    r->position = last + 1;
    r->round++;
    return true;
}

slr_status slr_sync_reader_next(slr_sync_reader *r, int timeout_ms, bool *complete,
                                const slr_sync_delta **deltas, size_t *k, bool *ended,
                                slr_error *err)
{
    *complete = false;
    *deltas = NULL;
    *k = 0;
    if (r->lost)
        return lost_error(r, err);
    if (r->bad)
        return slr_error_set(err, SLR_ERR_CORRUPT, "%s", r->bad_msg);
    double until = slr_monotonic_seconds() + timeout_ms / 1000.0;
    for (;;) {
        if (take_round(r, ended)) {
            *complete = true;
            *deltas = r->out;
            *k = r->n_out;
            if (*ended)
                r->round--; /* nothing more will come: stay at the end */
            return SLR_OK;
        }
        double left = until - slr_monotonic_seconds();
        if (left <= 0)
            return SLR_OK;
        slr_status st = poll_once(r, left > 0.1 ? 100 : (int)(left * 1000) + 1, err);
        if (st != SLR_OK)
            return st;
    }
}

uint64_t slr_sync_reader_round(const slr_sync_reader *r) { return r->round; }
int64_t slr_sync_reader_position(const slr_sync_reader *r) { return r->position; }

void slr_sync_reader_repeats(const slr_sync_reader *r, uint64_t *identical, uint64_t *different,
                             uint64_t *late)
{
    *identical = r->identical;
    *different = r->different;
    *late = r->late;
}

/* --------------------------------------------------------------- snapshots */

/* A snapshot being read: its chunks so far, in order. */
typedef struct assembly {
    uint64_t id, round, total, hash;
    int64_t position, offset;
    uint32_t count, got;
    unsigned char *buf;
    size_t len;
} assembly;

/* Snapshots are written by one producer, chunk after chunk; other writers'
 * records (deltas, another member's snapshot) may come in between.  A few
 * at a time is plenty: an older one left incomplete is torn. */
#define MAX_ASSEMBLIES 4

typedef struct snap_scan {
    int64_t low;               /* a snapshot whose position is before it cannot be used */
    assembly open[MAX_ASSEMBLIES];
    assembly best;             /* the newest complete snapshot (buf NULL: none yet) */
} snap_scan;

static void scan_free(snap_scan *sc)
{
    for (size_t i = 0; i < MAX_ASSEMBLIES; i++)
        free(sc->open[i].buf);
    free(sc->best.buf);
    memset(sc, 0, sizeof *sc);
}

/* Take a chunk in; a snapshot complete, whole and usable becomes the best
 * if it is at least as new. */
static slr_status scan_chunk(snap_scan *sc, const rd_kafka_message_t *m, slr_error *err)
{
    slr_sync_chunk c;
    slr_status st = slr_sync_chunk_decode(m->payload, m->len, &c, err);
    if (st != SLR_OK)
        return st;
    assembly *a = NULL;
    for (size_t i = 0; i < MAX_ASSEMBLIES && !a; i++)
        if (sc->open[i].buf && sc->open[i].id == c.id)
            a = &sc->open[i];
    if (c.index == 0) {
        if (!a) { /* a free place, or the oldest one's: it is torn */
            a = &sc->open[0];
            for (size_t i = 0; i < MAX_ASSEMBLIES; i++) {
                if (!sc->open[i].buf) {
                    a = &sc->open[i];
                    break;
                }
                if (sc->open[i].offset < a->offset)
                    a = &sc->open[i];
            }
        }
        free(a->buf);
        *a = (assembly){.id = c.id, .round = c.round, .total = c.total, .hash = c.hash,
                        .position = c.position, .offset = m->offset, .count = c.count};
        /* grown as chunks come, not sized by what a record claims */
        if (!(a->buf = malloc(1))) {
            free((void *)c.data);
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for a snapshot");
        }
    } else if (!a || a->got != c.index || a->round != c.round || a->count != c.count ||
               a->total != c.total || a->hash != c.hash || a->position != c.position) {
        /* its first chunks are gone, or it is not one writer's in order: torn */
        if (a) {
            free(a->buf);
            memset(a, 0, sizeof *a);
        }
        free((void *)c.data);
        return SLR_OK;
    }
    if (c.len > a->total - a->len) {
        free((void *)c.data);
        free(a->buf);
        memset(a, 0, sizeof *a);
        return SLR_OK;
    }
    unsigned char *grown = realloc(a->buf, a->len + c.len + 1);
    if (!grown) {
        free((void *)c.data);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for a snapshot of %llu bytes",
                             (unsigned long long)c.total);
    }
    a->buf = grown;
    memcpy(a->buf + a->len, c.data, c.len);
    free((void *)c.data);
    a->len += c.len;
    if (++a->got < a->count)
        return SLR_OK;
    bool whole = a->len == a->total && slr_sync_body_hash(a->buf, a->len) == a->hash;
    bool usable = a->position >= sc->low && a->position <= a->offset;
    if (whole && usable && (!sc->best.buf || a->round >= sc->best.round)) {
        free(sc->best.buf);
        sc->best = *a;
    } else {
        free(a->buf);
    }
    memset(a, 0, sizeof *a);
    return SLR_OK;
}

/* Read [lo, hi) of the sync topic (rk assigned at lo) for snapshots. */
static slr_status scan_snapshots(rd_kafka_t *rk, const char *topic, int64_t lo, int64_t hi,
                                 double until, snap_scan *sc, slr_error *err)
{
    sc->low = lo;
    int64_t next = lo;
    while (next < hi) {
        if (slr_monotonic_seconds() > until)
            return slr_error_set(err, SLR_ERR_KAFKA,
                                 "sync topic %s: read up to offset %lld of %lld in the time given",
                                 topic, (long long)next, (long long)hi);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            next = read_up_to(rk, topic, next);
            continue;
        }
        slr_status st = SLR_OK;
        if (m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE ||
            m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET)
            st = slr_error_set(err, SLR_ERR_KAFKA,
                               "sync topic %s: its retention dropped offset %lld while it was "
                               "read; try again",
                               topic, (long long)next);
        else if (!m->err && m->offset >= next) {
            next = m->offset + 1;
            if (is_snapshot(m) && (st = scan_chunk(sc, m, err)) != SLR_OK)
                slr_error_prefix(err, "sync topic %s offset %lld: ", topic, (long long)m->offset);
        }
        rd_kafka_message_destroy(m);
        if (st != SLR_OK)
            return st;
    }
    return SLR_OK;
}

/* The newest complete snapshot of [lo, hi), read through rk, decoded into
 * *s (*found false if none). */
static slr_status newest_snapshot(rd_kafka_t *rk, const char *topic, int timeout_ms,
                                  slr_sync_snapshot *s, bool *found, slr_error *err)
{
    *found = false;
    double until = slr_monotonic_seconds() + timeout_ms / 1000.0;
    int64_t lo, hi;
    rd_kafka_resp_err_t e =
        rd_kafka_query_watermark_offsets(rk, topic, SYNC_PARTITION, &lo, &hi, timeout_ms);
    if (e)
        return slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s: %s", topic, rd_kafka_err2str(e));
    if (hi <= lo)
        return SLR_OK;
    snap_scan sc;
    memset(&sc, 0, sizeof sc);
    slr_status st = assign_at(rk, topic, lo, err);
    if (st == SLR_OK)
        st = scan_snapshots(rk, topic, lo, hi, until, &sc, err);
    if (st == SLR_OK && sc.best.buf) {
        slr_sync_snapshot got;
        if ((st = slr_sync_snapshot_decode(sc.best.buf, sc.best.len, &got, err)) != SLR_OK)
            slr_error_prefix(err, "sync topic %s offset %lld: ", topic, (long long)sc.best.offset);
        else if (got.round != sc.best.round || got.position != sc.best.position) {
            slr_sync_snapshot_clear(&got);
            st = slr_error_set(err, SLR_ERR_CORRUPT,
                               "sync topic %s offset %lld: a snapshot whose chunks name another "
                               "round or position than its body",
                               topic, (long long)sc.best.offset);
        } else {
            got.offset = sc.best.offset;
            got.id = sc.best.id;
            *s = got;
            *found = true;
        }
    }
    scan_free(&sc);
    return st;
}

slr_status slr_sync_snapshot_find(const slr_sync_topic_config *cfg, int timeout_ms,
                                  slr_sync_snapshot *s, bool *found, slr_error *err)
{
    *found = false;
    if (!cfg->brokers || !*cfg->brokers || !cfg->topic || !*cfg->topic)
        return slr_error_set(err, SLR_ERR_ARG, "a sync topic needs brokers and a topic");
    rd_kafka_conf_t *conf;
    slr_status st = reader_conf(&conf, cfg, err);
    if (st != SLR_OK)
        return st;
    rd_kafka_t *rk;
    if ((st = new_consumer(&rk, conf, err)) != SLR_OK)
        return st;
    if ((st = check_topic(rk, cfg->topic, err)) == SLR_OK)
        st = newest_snapshot(rk, cfg->topic, timeout_ms, s, found, err);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return st;
}

/* The reader goes on from snapshot s: its round, its position, and the
 * partitions whose input ended before its round (their ledger stops short
 * of round * S; the reader must not wait for them). */
static slr_status reader_restart(slr_sync_reader *r, const slr_sync_snapshot *s, slr_error *err)
{
    if (strcmp(s->source_topic, r->source_topic) != 0 ||
        s->source_partitions != r->cfg.source_partitions || s->slice != r->cfg.slice)
        return slr_error_set(err, SLR_ERR_MISMATCH,
                             "sync topic %s: its snapshot is of %s[0..%d) in slices of %lld, this "
                             "reader expects %s[0..%d) in slices of %lld",
                             r->topic, s->source_topic, (int)s->source_partitions,
                             (long long)s->slice, r->source_topic, (int)r->cfg.source_partitions,
                             (long long)r->cfg.slice);
    slr_status st = assign_at(r->rk, r->topic, s->position, err);
    if (st != SLR_OK)
        return st;
    for (size_t i = 0; i < r->n_pend; i++)
        pending_free(&r->pend[i]);
    r->n_pend = 0;
    clear_out(r);
    const int64_t reach = (int64_t)s->round * s->slice;
    for (int32_t p = 0; p < r->cfg.source_partitions; p++) {
        int64_t to = slr_sync_ledger_reach(s->ledger, s->source_topic, p);
        r->ended[p] = to < reach ? (uint64_t)(to / s->slice) : UINT64_MAX;
    }
    r->round = s->round;
    r->position = r->read_to = s->position;
    r->high = 0;
    r->lost = false;
    r->bad = false;
    return SLR_OK;
}

slr_status slr_sync_reader_create_at(slr_sync_reader **out, const slr_sync_topic_config *cfg,
                                     const slr_sync_snapshot *s, slr_error *err)
{
    slr_status st = slr_sync_reader_create(out, cfg, s->position, s->round, err);
    if (st == SLR_OK && (st = reader_restart(*out, s, err)) != SLR_OK) {
        slr_sync_reader_destroy(*out);
        *out = NULL;
    }
    return st;
}

slr_status slr_sync_reader_seek_snapshot(slr_sync_reader *r, int timeout_ms, slr_sync_snapshot *s,
                                         bool *loaded, slr_error *err)
{
    *loaded = false;
    bool found = false;
    slr_sync_snapshot got;
    slr_status st = newest_snapshot(r->rk, r->topic, timeout_ms, &got, &found, err);
    if (st == SLR_OK && found && (r->lost || got.round > r->round)) {
        if ((st = reader_restart(r, &got, err)) == SLR_OK) {
            *s = got;
            *loaded = true;
            return SLR_OK;
        }
    }
    if (found)
        slr_sync_snapshot_clear(&got);
    if (st != SLR_OK || r->lost) {
        slr_status st2 = assign_at(r->rk, r->topic, r->read_to, NULL);
        if (st == SLR_OK)
            st = r->lost ? slr_error_set(err, SLR_ERR_KAFKA,
                                         "sync topic %s: offset %lld is no longer on the topic "
                                         "and no complete snapshot is after it",
                                         r->topic, (long long)r->read_to)
                         : st2;
        return st;
    }
    return assign_at(r->rk, r->topic, r->read_to, err);
}

bool slr_sync_reader_lost(const slr_sync_reader *r) { return r->lost; }

const char *slr_sync_reader_unreachable(const slr_sync_reader *r, double *seconds)
{
    if (!r->unreachable_since)
        return NULL;
    if (seconds)
        *seconds = slr_monotonic_seconds() - r->unreachable_since;
    return r->unreachable;
}

/* ---------------------------------------------------------------- inspect */

void slr_sync_topic_info_free(slr_sync_topic_info *info)
{
    free(info->reach);
    free(info->deltas);
    free(info->part_ended);
    memset(info, 0, sizeof *info);
}

/* Room for partitions [0, n) in info's per-partition tables. */
static slr_status info_grow(slr_sync_topic_info *info, int32_t n, slr_error *err)
{
    if (n <= info->source_partitions)
        return SLR_OK;
    int64_t *reach = realloc(info->reach, (size_t)n * sizeof *reach);
    if (reach)
        info->reach = reach;
    uint64_t *deltas = realloc(info->deltas, (size_t)n * sizeof *deltas);
    if (deltas)
        info->deltas = deltas;
    bool *ended = realloc(info->part_ended, (size_t)n * sizeof *ended);
    if (ended)
        info->part_ended = ended;
    if (!reach || !deltas || !ended)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    for (int32_t p = info->source_partitions; p < n; p++) {
        info->reach[p] = -1;
        info->deltas[p] = 0;
        info->part_ended[p] = false;
    }
    info->source_partitions = n;
    return SLR_OK;
}

/* The first pass: the source topic, S, and each partition's reach. */
static slr_status scan_records(rd_kafka_t *rk, const char *topic, double until,
                               slr_sync_topic_info *info, slr_error *err)
{
    int64_t read_to = info->low, round0_longest = 0;
    bool any = false;
    slr_status st = SLR_OK;
    snap_scan sc;
    memset(&sc, 0, sizeof sc);
    sc.low = info->low;
    while (read_to < info->high && st == SLR_OK) {
        if (slr_monotonic_seconds() > until)
            return slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s: read up to offset %lld of %lld "
                                 "in the time given", topic, (long long)read_to, (long long)info->high);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            read_to = read_up_to(rk, topic, read_to);
            continue;
        }
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        read_to = m->offset + 1;
        if (is_snapshot(m)) {
            info->snapshot_records++;
            st = scan_chunk(&sc, m, err);
            if (st != SLR_OK)
                slr_error_prefix(err, "sync topic %s offset %lld: ", topic, (long long)m->offset);
            rd_kafka_message_destroy(m);
            continue;
        }
        slr_sync_delta d;
        if ((st = slr_sync_delta_decode(m->payload, m->len, &d, err)) != SLR_OK) {
            slr_error_prefix(err, "sync topic %s offset %lld: ", topic, (long long)m->offset);
            rd_kafka_message_destroy(m);
            return st;
        }
        rd_kafka_message_destroy(m);
        if (d.n_ranges != 1) {
            slr_sync_delta_clear(&d);
            return slr_error_set(err, SLR_ERR_CORRUPT, "sync topic %s offset %lld: %zu ranges, not "
                                 "one slice", topic, (long long)read_to - 1, d.n_ranges);
        }
        const slr_sync_range *g = &d.ranges[0];
        if (!any)
            snprintf(info->source_topic, sizeof info->source_topic, "%s", g->topic);
        if (!any || d.round < info->first_round)
            info->first_round = d.round;
        any = true;
        if (d.round > 0 && info->slice == 0)
            info->slice = g->from / (int64_t)d.round;
        if (d.round == 0 && g->to - g->from > round0_longest)
            round0_longest = g->to - g->from;
        if ((st = info_grow(info, g->partition + 1, err)) == SLR_OK) {
            info->deltas[g->partition]++;
            if (g->to > info->reach[g->partition])
                info->reach[g->partition] = g->to;
        }
        slr_sync_delta_clear(&d);
    }
    if (info->slice == 0)
        info->slice = round0_longest > 0 ? round0_longest : 1;
    if (sc.best.buf) {
        info->snapshot = true;
        info->snapshot_round = sc.best.round;
        info->snapshot_offset = sc.best.offset;
        info->snapshot_bytes = sc.best.len;
    }
    scan_free(&sc);
    return st;
}

slr_status slr_sync_topic_inspect(const slr_sync_topic_config *cfg, int timeout_ms,
                                  slr_sync_topic_info *info, slr_error *err)
{
    memset(info, 0, sizeof *info);
    if (!cfg->brokers || !*cfg->brokers || !cfg->topic || !*cfg->topic)
        return slr_error_set(err, SLR_ERR_ARG, "inspecting a sync topic needs --brokers and --sync-topic");
    double until = slr_monotonic_seconds() + timeout_ms / 1000.0;
    static const char *const ours[] = {"group.id=streamlr-sync-inspect", "enable.auto.commit=false",
                                       "allow.auto.create.topics=false", "fetch.wait.max.ms=50", NULL};
    rd_kafka_conf_t *conf;
    slr_status st = make_conf(&conf, cfg, ours, err);
    if (st == SLR_OK && (st = read_committed(conf, err)) != SLR_OK)
        rd_kafka_conf_destroy(conf);
    if (st != SLR_OK)
        return st;
    rd_kafka_t *rk;
    if ((st = new_consumer(&rk, conf, err)) != SLR_OK)
        return st;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    if ((st = check_topic(rk, cfg->topic, err)) == SLR_OK &&
        (e = rd_kafka_query_watermark_offsets(rk, cfg->topic, SYNC_PARTITION, &info->low,
                                              &info->high, timeout_ms)) != 0)
        st = slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s: %s", cfg->topic, rd_kafka_err2str(e));
    if (st == SLR_OK && info->high > info->low) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, cfg->topic, SYNC_PARTITION)->offset = info->low;
        if ((e = rd_kafka_assign(rk, l)) != 0)
            st = slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s: %s", cfg->topic,
                               rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(l);
        if (st == SLR_OK)
            st = scan_records(rk, cfg->topic, until, info, err);
    }
    /* the source's partition count, from the cluster if it knows the topic */
    if (st == SLR_OK && info->source_topic[0]) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, info->source_topic, NULL);
        if (rkt && rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms) == 0 && md->topic_cnt == 1 &&
            !md->topics[0].err)
            st = info_grow(info, md->topics[0].partition_cnt, err);
        if (md)
            rd_kafka_metadata_destroy(md);
        if (rkt)
            rd_kafka_topic_destroy(rkt);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    info->position = info->low;
    if (st != SLR_OK || !info->source_topic[0]) {
        if (st != SLR_OK)
            slr_sync_topic_info_free(info);
        return st;
    }
    /* the second pass: the rounds, as a member's reader sees them */
    slr_sync_topic_config rc = *cfg;
    rc.source_topic = info->source_topic;
    rc.source_partitions = info->source_partitions;
    rc.slice = info->slice;
    slr_sync_reader *r;
    if ((st = slr_sync_reader_create(&r, &rc, info->low, info->first_round, err)) != SLR_OK) {
        slr_sync_topic_info_free(info);
        return st;
    }
    bool caught_up = false, complete = true, ended = false;
    const slr_sync_delta *ds;
    size_t k;
    while (st == SLR_OK && !ended) {
        int left = (int)((until - slr_monotonic_seconds()) * 1000);
        if ((st = slr_sync_reader_catch_up(r, left > 0 ? left : 0, &caught_up, err)) != SLR_OK ||
            (st = slr_sync_reader_next(r, 0, &complete, &ds, &k, &ended, err)) != SLR_OK)
            break;
        if (complete && !ended)
            info->rounds++;
        else if (!complete && !caught_up)
            st = slr_error_set(err, SLR_ERR_KAFKA,
                               "sync topic %s: not read to its end in the time given", cfg->topic);
        else if (!complete)
            break;
    }
    if (st == SLR_OK) {
        info->ended = ended;
        info->position = slr_sync_reader_position(r);
        slr_sync_reader_repeats(r, &info->identical, &info->different, &info->late);
        for (int32_t p = 0; p < info->source_partitions; p++)
            info->part_ended[p] = r->ended[p] != UINT64_MAX;
    }
    slr_sync_reader_destroy(r);
    if (st != SLR_OK)
        slr_sync_topic_info_free(info);
    return st;
}
