/* dead_letter_kafka.c - the dead-letter sink that produces to a Kafka topic
 * (see dead_letter.h).
 *
 * put hands the record to librdkafka's queue (no syscall of ours per
 * record; a full queue is drained by polling, never dropped).  sync flushes
 * and counts delivery reports: the position is the number of dead letters
 * the brokers acknowledged, and a single failed delivery fails sync, so a
 * checkpoint never moves past a dead letter that could be lost.  The
 * producer is idempotent, so its own retries neither duplicate nor reorder.
 *
 * What a topic cannot do is forget: after a crash, the dead letters
 * produced after the last checkpoint are produced again by the replay.  So
 * every message names its record -- key "source@offset", the same bytes
 * each time -- and a consumer that must see each record once drops repeats
 * of (key, value); docs/DEAD_LETTERS.md says so.  (Transactions would
 * narrow the window but not close it, and the embedded mock broker does not
 * implement them.) */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source/kafka_source.h"
#include "streamlr/dead_letter.h"

/* Room left in message.max.bytes for the record batch's own framing. */
#define FRAMING 512
#define RESUME_TIMEOUT_MS 10000

typedef struct kafka_sink {
    slr_dead_letter_sink base;
    char *topic;
    rd_kafka_t *rk;
    size_t max_bytes;   /* message.max.bytes */
    slr_buf value, key; /* reused for every record */
    uint64_t base_position; /* acknowledged before this run (resume) */
    uint64_t acked, failed; /* delivery reports of this run */
    char first_failure[256];
    void (*log)(void *ctx, const char *msg);
    void *log_ctx;
} kafka_sink;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kafka_sink *k = opaque;
    if (!m->err) {
        k->acked++;
        return;
    }
    if (k->failed++ == 0)
        snprintf(k->first_failure, sizeof k->first_failure, "%s", rd_kafka_err2str(m->err));
}

static void on_error(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    (void)rk;
    kafka_sink *k = opaque;
    char msg[600];
    snprintf(msg, sizeof msg, "kafka: dead-letter topic %s: %s (%s)", k->topic, reason,
             rd_kafka_err2name((rd_kafka_resp_err_t)code));
    if (k->log)
        k->log(k->log_ctx, msg);
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    kafka_sink *k = rd_kafka_opaque(rk);
    /* -X is shared with the consumer: its properties are expected here */
    if (!k || !k->log || !strcmp(fac, "CONFWARN"))
        return;
    char msg[600];
    (void)level;
    snprintf(msg, sizeof msg, "kafka: dead-letter producer: %s: %s", fac, buf);
    k->log(k->log_ctx, msg);
}

/* Delivery failed for good, or the client did: the sink cannot go on. */
static slr_status check_failed(kafka_sink *k, slr_error *err)
{
    char fatal[256];
    if (rd_kafka_fatal_error(k->rk, fatal, sizeof fatal))
        return slr_error_set(err, SLR_ERR_KAFKA, "the dead-letter producer for topic %s failed: %s",
                             k->topic, fatal);
    if (k->failed)
        return slr_error_set(err, SLR_ERR_KAFKA,
                             "%" PRIu64 " dead letter(s) could not be delivered to topic %s (%s); "
                             "check the brokers, or raise message.timeout.ms with -X",
                             k->failed, k->topic, k->first_failure);
    return SLR_OK;
}

/* The JSON line without its newline, data cut to what message.max.bytes
 * allows beside the key and headers. */
static slr_status build_value(kafka_sink *k, const slr_dead_letter *dl, size_t others,
                              slr_error *err)
{
    slr_buf_reset(&k->value);
    slr_status st = slr_dead_letter_to_json(&k->value, dl, err);
    if (st != SLR_OK)
        return st;
    size_t budget = k->max_bytes > others + FRAMING ? k->max_bytes - others - FRAMING : 0;
    if (k->value.len - 1 > budget) {
        size_t b64 = (dl->len + 2) / 3 * 4, fixed = k->value.len - b64 + 32; /* + ",truncated" */
        if (fixed >= budget)
            return slr_error_set(err, SLR_ERR_ARG,
                                 "a dead letter's description alone exceeds message.max.bytes=%zu "
                                 "of topic %s", k->max_bytes, k->topic);
        slr_dead_letter cut = *dl;
        cut.len = (budget - fixed) / 4 * 3;
        cut.truncated = true;
        slr_buf_reset(&k->value);
        if ((st = slr_dead_letter_to_json(&k->value, &cut, err)) != SLR_OK)
            return st;
    }
    k->value.len--; /* the newline */
    return SLR_OK;
}

static slr_status kafka_put(slr_dead_letter_sink *s, const slr_dead_letter *dl, slr_error *err)
{
    kafka_sink *k = (kafka_sink *)s;
    slr_status st = check_failed(k, err);
    if (st != SLR_OK)
        return st;
    const char *reason = slr_bad_reason_name(dl->reason), *source = dl->source ? dl->source : "";
    char offset[24];
    snprintf(offset, sizeof offset, "%" PRIu64, dl->offset);
    slr_buf_reset(&k->key);
    if ((st = slr_buf_append(&k->key, source, strlen(source), err)) != SLR_OK ||
        (st = slr_buf_append(&k->key, "@", 1, err)) != SLR_OK ||
        (st = slr_buf_append(&k->key, offset, strlen(offset), err)) != SLR_OK)
        return st;
    size_t others = 2 * k->key.len + strlen(reason) + 64; /* key, headers with their names */
    if ((st = build_value(k, dl, others, err)) != SLR_OK)
        return st;
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            k->rk, RD_KAFKA_V_TOPIC(k->topic), RD_KAFKA_V_KEY(k->key.data, k->key.len),
            RD_KAFKA_V_VALUE(k->value.data, k->value.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADER("reason", reason, -1), RD_KAFKA_V_HEADER("source", source, -1),
            RD_KAFKA_V_HEADER("offset", offset, -1), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return slr_error_set(err, SLR_ERR_KAFKA, "producing a dead letter to topic %s: %s",
                                 k->topic, rd_kafka_err2str(e));
        /* the brokers are behind: wait for room, unless deliveries fail */
        rd_kafka_poll(k->rk, 100);
        if ((st = check_failed(k, err)) != SLR_OK)
            return st;
    }
    rd_kafka_poll(k->rk, 0); /* delivery reports so far */
    return SLR_OK;
}

static slr_status kafka_sync(slr_dead_letter_sink *s, uint64_t *position, slr_error *err)
{
    kafka_sink *k = (kafka_sink *)s;
    /* every message ends delivered or failed within message.timeout.ms */
    while (rd_kafka_outq_len(k->rk) > 0 && !rd_kafka_fatal_error(k->rk, NULL, 0))
        rd_kafka_flush(k->rk, 1000);
    rd_kafka_poll(k->rk, 0);
    slr_status st = check_failed(k, err);
    if (st != SLR_OK)
        return st;
    *position = k->base_position + k->acked;
    return SLR_OK;
}

/* Messages in the topic ever (the sum of its high watermarks): fewer than
 * the checkpoint counts means the topic was deleted or replaced. */
static slr_status topic_size(kafka_sink *k, uint64_t *size, slr_error *err)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(k->rk, k->topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = t ? rd_kafka_metadata(k->rk, 0, t, &md, RESUME_TIMEOUT_MS)
                              : rd_kafka_last_error();
    if (!e && (md->topic_cnt != 1 || md->topics[0].err))
        e = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    *size = 0;
    for (int p = 0; !e && p < md->topics[0].partition_cnt; p++) {
        int64_t lo, hi;
        e = rd_kafka_query_watermark_offsets(k->rk, k->topic, md->topics[0].partitions[p].id, &lo,
                                             &hi, RESUME_TIMEOUT_MS);
        if (!e)
            *size += (uint64_t)hi;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    if (t)
        rd_kafka_topic_destroy(t);
    if (e)
        return slr_error_set(err, SLR_ERR_KAFKA,
                             "cannot read the size of dead-letter topic %s to resume: %s", k->topic,
                             rd_kafka_err2str(e));
    return SLR_OK;
}

static slr_status kafka_resume(slr_dead_letter_sink *s, uint64_t position, uint64_t *dropped,
                               slr_error *err)
{
    kafka_sink *k = (kafka_sink *)s;
    if (dropped)
        *dropped = 0; /* nothing can be taken back: at_least_once */
    uint64_t size = 0;
    slr_status st = position ? topic_size(k, &size, err) : SLR_OK;
    if (st != SLR_OK)
        return st;
    if (size < position)
        return slr_error_set(err, SLR_ERR_MISMATCH,
                             "dead-letter topic %s holds %" PRIu64 " messages, but the checkpoint "
                             "counts %" PRIu64 " delivered: it was deleted or replaced since; "
                             "give a new --dead-letter-topic",
                             k->topic, size, position);
    k->base_position = position;
    k->acked = 0;
    return SLR_OK;
}

static void kafka_close(slr_dead_letter_sink *s)
{
    kafka_sink *k = (kafka_sink *)s;
    if (!k)
        return;
    if (k->rk) {
        /* not synced means not counted: a resumed run produces them again */
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(k->rk, 0);
        rd_kafka_destroy(k->rk);
    }
    slr_buf_free(&k->value);
    slr_buf_free(&k->key);
    free(k->topic);
    free(k);
}

static slr_status build_conf(kafka_sink *k, const slr_dead_letter_kafka_options *o,
                             rd_kafka_conf_t *conf, slr_error *err)
{
    slr_status st = slr_kafka_conf_set(conf, "client.id", "streamlr-dead-letters", err);
    /* a failed delivery stops the job: give up within a minute, not five */
    if (st == SLR_OK)
        st = slr_kafka_conf_set(conf, "message.timeout.ms", "60000", err);
    if (st == SLR_OK && o->brokers)
        st = slr_kafka_conf_set(conf, "bootstrap.servers", o->brokers, err);
    for (uint32_t i = 0; st == SLR_OK && i < o->n_config; i++)
        st = slr_kafka_conf_set_property(conf, o->config[i], err);
    /* retries neither duplicate nor reorder; acks=all */
    if (st == SLR_OK)
        st = slr_kafka_conf_set(conf, "enable.idempotence", "true", err);
    /* logs are served by our polls, on the thread that puts, not librdkafka's */
    if (st == SLR_OK)
        st = slr_kafka_conf_set(conf, "log.queue", "true", err);
    char buf[512];
    size_t n = sizeof buf;
    if (st == SLR_OK &&
        (rd_kafka_conf_get(conf, "bootstrap.servers", buf, &n) != RD_KAFKA_CONF_OK || !*buf))
        st = slr_error_set(err, SLR_ERR_ARG, "no Kafka brokers for the dead-letter topic: give "
                                             "--brokers HOST:PORT (or bootstrap.servers)");
    n = sizeof buf;
    if (st == SLR_OK) {
        rd_kafka_conf_get(conf, "message.max.bytes", buf, &n);
        k->max_bytes = (size_t)strtoull(buf, NULL, 10);
    }
    return st;
}

slr_status slr_dead_letter_kafka_open(slr_dead_letter_sink **out,
                                      const slr_dead_letter_kafka_options *o, slr_error *err)
{
    *out = NULL;
    if (!o->topic || !*o->topic)
        return slr_error_set(err, SLR_ERR_ARG, "the dead-letter topic needs a name");
    kafka_sink *k = calloc(1, sizeof *k);
    if (!k || !(k->topic = strdup(o->topic))) {
        free(k);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    }
    slr_buf_init(&k->value);
    slr_buf_init(&k->key);
    k->log = o->log;
    k->log_ctx = o->log_ctx;
    k->base = (slr_dead_letter_sink){.kind = "kafka", .name = k->topic, .put = kafka_put,
                                     .sync = kafka_sync, .resume = kafka_resume,
                                     .close = kafka_close, .at_least_once = true};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    slr_status st = build_conf(k, o, conf, err);
    if (st != SLR_OK) {
        rd_kafka_conf_destroy(conf);
        kafka_close(&k->base);
        return st;
    }
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    char errstr[512];
    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!k->rk) {
        rd_kafka_conf_destroy(conf);
        kafka_close(&k->base);
        return slr_error_set(err, SLR_ERR_KAFKA, "cannot create the dead-letter producer: %s",
                             errstr);
    }
    rd_kafka_set_log_queue(k->rk, NULL);
    *out = &k->base;
    return SLR_OK;
}
