/* sync_topic.c - the Kafka transport of a group's shared model
 * (sync_topic.h, docs/SYNC_PROTOCOL.md): publishing per-slice deltas with an
 * idempotent producer, and reading the sync topic's partition 0 back as
 * complete rounds in order.
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

struct slr_sync_publisher {
    slr_sync_topic_config cfg;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt; /* held so that the topic's metadata, fetched at the start, stays */
    unsigned long long failed;
    char last_error[256];
    uint64_t deltas, bytes; /* queued: records, and their keys' and values' bytes */
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    slr_sync_publisher *p = opaque;
    if (m->err) {
        p->failed++;
        snprintf(p->last_error, sizeof p->last_error, "%s", rd_kafka_err2str(m->err));
    }
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
    /* idempotence: a retried send is written once, in order, so the topic's
     * order (which decides which of two deltas of a slice wins) is the
     * order the member published in */
    static const char *const ours[] = {"enable.idempotence=true", "acks=all", "linger.ms=5",
                                       NULL};
    rd_kafka_conf_t *conf;
    if ((st = make_conf(&conf, cfg, ours, err)) != SLR_OK) {
        free(p);
        return st;
    }
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    char errstr[512];
    if (!(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr))) {
        rd_kafka_conf_destroy(conf);
        free(p);
        return slr_error_set(err, SLR_ERR_KAFKA, "sync topic producer: %s", errstr);
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

void slr_sync_publisher_destroy(slr_sync_publisher *p)
{
    if (!p)
        return;
    rd_kafka_flush(p->rk, 5000);
    if (p->rkt)
        rd_kafka_topic_destroy(p->rkt);
    rd_kafka_destroy(p->rk);
    free(p);
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
    unsigned char *buf;
    size_t len;
    if ((st = slr_sync_delta_encode(d, &buf, &len, err)) != SLR_OK)
        return st;
    char version[8], round[24], slice[64];
    snprintf(version, sizeof version, "%d", SLR_SYNC_FORMAT_VERSION);
    snprintf(round, sizeof round, "%llu", (unsigned long long)d->round);
    snprintf(slice, sizeof slice, "%lld-%lld", (long long)d->ranges[0].from,
             (long long)d->ranges[0].to);
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(p->cfg.topic), RD_KAFKA_V_PARTITION(SYNC_PARTITION),
            RD_KAFKA_V_KEY(d->member, strlen(d->member)), RD_KAFKA_V_VALUE(buf, len),
            RD_KAFKA_V_HEADER(SLR_SYNC_HEADER_VERSION, version, -1),
            RD_KAFKA_V_HEADER(SLR_SYNC_HEADER_ROUND, round, -1),
            RD_KAFKA_V_HEADER(SLR_SYNC_HEADER_SLICE, slice, -1),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            p->deltas++;
            p->bytes += len + strlen(d->member);
            return SLR_OK;
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            free(buf);
            return slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s: %s", p->cfg.topic,
                                 rd_kafka_err2str(e));
        }
        rd_kafka_poll(p->rk, 50);
    }
}

void slr_sync_publisher_counts(const slr_sync_publisher *p, uint64_t *deltas, uint64_t *bytes)
{
    *deltas = p->deltas;
    *bytes = p->bytes;
}

slr_status slr_sync_publisher_flush(slr_sync_publisher *p, int timeout_ms, slr_error *err)
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
    char key[SLR_SYNC_MAX_MEMBER_ID + 16], version[8], rnd[24];
    snprintf(key, sizeof key, "%s/snapshot", p->cfg.source_topic);
    snprintf(version, sizeof version, "%d", SLR_SYNC_SNAPSHOT_VERSION);
    snprintf(rnd, sizeof rnd, "%llu", (unsigned long long)round);
    for (uint32_t i = 0; i < count && st == SLR_OK; i++) {
        c.index = i;
        c.data = body + (size_t)i * per;
        c.len = i + 1 < count ? per : len - (size_t)i * per;
        unsigned char *buf;
        size_t blen;
        if ((st = slr_sync_chunk_encode(&c, &buf, &blen, err)) != SLR_OK)
            break;
        char mark[64];
        snprintf(mark, sizeof mark, "%016llx %u/%u", (unsigned long long)c.id, i, c.count);
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                p->rk, RD_KAFKA_V_TOPIC(p->cfg.topic), RD_KAFKA_V_PARTITION(SYNC_PARTITION),
                RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(buf, blen),
                RD_KAFKA_V_HEADER(SLR_SYNC_HEADER_VERSION, version, -1),
                RD_KAFKA_V_HEADER(SLR_SYNC_HEADER_ROUND, rnd, -1),
                RD_KAFKA_V_HEADER(SLR_SYNC_HEADER_SNAPSHOT, mark, -1),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                free(buf);
                st = slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s: snapshot chunk %u/%u: %s",
                                   p->cfg.topic, i, c.count, rd_kafka_err2str(e));
                break;
            }
            rd_kafka_poll(p->rk, 50);
        }
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
};

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
                           "every member reads alike",
                           topic, md->topics[0].partition_cnt);
    rd_kafka_metadata_destroy(md);
    return st;
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
    if (st == SLR_OK && (st = slr_kafka_conf_set(*conf, "auto.offset.reset", "error", err)) != SLR_OK)
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

/* Poll once for up to ms; a record is taken in, a transient error (broker
 * down, a leader moving) only waits: the caller's timeout decides. */
static slr_status poll_once(slr_sync_reader *r, int ms, slr_error *err)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, ms);
    if (!m)
        return SLR_OK;
    slr_status st = SLR_OK;
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

slr_status slr_sync_reader_catch_up(slr_sync_reader *r, int timeout_ms, bool *caught_up,
                                    slr_error *err)
{
    *caught_up = false;
    if (r->lost)
        return lost_error(r, err);
    double until = slr_monotonic_seconds() + timeout_ms / 1000.0;
    if (r->read_to >= r->high) { /* the mark passed: where is the topic now? */
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
    while (r->read_to < r->high && !round_ready(r, &ended) && slr_monotonic_seconds() < until) {
        slr_status st = poll_once(r, 50, err);
        if (st != SLR_OK)
            return st;
    }
    *caught_up = r->read_to >= r->high;
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
        if (!m)
            continue;
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
        if (!m)
            continue;
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
