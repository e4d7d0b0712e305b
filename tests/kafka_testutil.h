/* kafka_testutil.h - what the Kafka suites share: an embedded broker (the
 * librdkafka mock cluster, in the test process, on loopback), a producer,
 * deterministic example messages, unique names, and bounded waiting.
 *
 * Every wait is on a condition with a generous deadline, never a bare sleep:
 * the suites run on loaded 2-core machines.  The mock's known pitfalls are
 * built in: fetch.wait.max.ms=10 (idle fetches otherwise wait the full
 * time), session.timeout.ms=6000 (lower never assigns). */
#ifndef STREAMLR_KAFKA_TESTUTIL_H
#define STREAMLR_KAFKA_TESTUTIL_H

#include <check.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "streamlr/checkpoint.h"
#include "streamlr/decode.h"
#include "streamlr/encode.h"
#include "testutil.h"

/* librdkafka properties every test consumer uses with the mock */
#define TEST_KAFKA_CONFIG "fetch.wait.max.ms=10", "session.timeout.ms=6000", \
                          "reconnect.backoff.max.ms=500"

static inline double test_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void test_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A name no other test (or earlier run) uses: topics and groups must not
 * carry state between tests. */
static inline void test_unique(char *buf, size_t n, const char *what)
{
    static unsigned counter;
    snprintf(buf, n, "%s-%ld-%u-%ld", what, (long)getpid(), counter++, (long)time(NULL));
}

typedef struct test_cluster {
    rd_kafka_t *mock_rk; /* the handle the mock cluster hangs off */
    rd_kafka_mock_cluster_t *mc;
    char bootstraps[256];
    rd_kafka_t *producer;
    unsigned long long delivered, failed;
} test_cluster;

static inline void test_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    test_cluster *c = opaque;
    if (m->err)
        c->failed++;
    else
        c->delivered++;
}

static inline void test_cluster_start(test_cluster *c, int brokers)
{
    memset(c, 0, sizeof *c);
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    c->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    ck_assert_msg(c->mock_rk != NULL, "%s", errstr);
    c->mc = rd_kafka_mock_cluster_new(c->mock_rk, brokers);
    ck_assert_ptr_nonnull(c->mc);
    snprintf(c->bootstraps, sizeof c->bootstraps, "%s", rd_kafka_mock_cluster_bootstraps(c->mc));

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", c->bootstraps, NULL, 0);
    rd_kafka_conf_set(conf, "linger.ms", "5", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    rd_kafka_conf_set(conf, "reconnect.backoff.max.ms", "500", NULL, 0);
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_dr_msg_cb(conf, test_on_delivery);
    c->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    ck_assert_msg(c->producer != NULL, "%s", errstr);
}

static inline void test_cluster_stop(test_cluster *c)
{
    rd_kafka_flush(c->producer, 5000);
    rd_kafka_destroy(c->producer);
    rd_kafka_mock_cluster_destroy(c->mc);
    rd_kafka_destroy(c->mock_rk);
}

static inline void test_topic(test_cluster *c, const char *topic, int partitions)
{
    ck_assert_int_eq(rd_kafka_mock_topic_create(c->mc, topic, partitions, 1), 0);
}

static inline void test_produce(test_cluster *c, const char *topic, int32_t partition,
                                const void *buf, size_t len)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            c->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_VALUE((void *)buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        ck_assert_int_eq(e, RD_KAFKA_RESP_ERR__QUEUE_FULL);
        rd_kafka_poll(c->producer, 10);
    }
}

/* Wait until everything produced so far is delivered (bounded). */
static inline void test_flush(test_cluster *c)
{
    double until = test_now() + 60;
    while (rd_kafka_outq_len(c->producer) > 0 && test_now() < until)
        rd_kafka_flush(c->producer, 200);
    ck_assert_int_eq(rd_kafka_outq_len(c->producer), 0);
    ck_assert_uint_eq(c->failed, 0);
}

/* One deterministic labelled example as msgpack, appended to out: users
 * and items drawn from long tails, a numeric feature, a label from a hidden
 * logistic model, and a tag "e<id>" padded with pad bytes (to size
 * messages).  Returns the bytes appended. */
static inline size_t test_example(slr_buf *out, test_rng *r, unsigned long long id, size_t pad)
{
    char user[32], item[32], cat[32], tag[600];
    int u = (int)floor(pow(5000.0, test_rng_unif(r)));
    int it = (int)floor(pow(300.0, test_rng_unif(r)));
    double price = 3 * test_rng_unif(r);
    double z = -1.0 + (u % 7 == 0 ? 1.5 : 0) + (it % 5 == 0 ? -1 : 0.5) + 0.3 * price;
    snprintf(user, sizeof user, "u%d", u);
    snprintf(item, sizeof item, "i%d", it);
    snprintf(cat, sizeof cat, "c%d", it % 13);
    if (pad > sizeof tag - 32)
        pad = sizeof tag - 32;
    int n = snprintf(tag, sizeof tag, "e%llu", id);
    memset(tag + n, '.', pad);
    tag[n + (int)pad] = '\0';
    slr_raw_feature f[4] = {
        {"u", 1, user, (uint32_t)strlen(user), 0, 1.0},
        {"i", 1, item, (uint32_t)strlen(item), 0, 1.0},
        {"i", 1, cat, (uint32_t)strlen(cat), 0, 1.0},
        {"x", 1, "price", 5, 0, price},
    };
    slr_raw_example raw;
    slr_raw_example_init(&raw);
    raw.label = test_rng_unif(r) < 1.0 / (1.0 + exp(-z)) ? 1 : 0;
    raw.has_label = true;
    raw.tag = tag;
    raw.tag_len = (uint32_t)strlen(tag);
    slr_error err;
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(slr_raw_example_push(&raw, &f[i], &err), SLR_OK);
    size_t before = out->len;
    ck_assert_int_eq(slr_encode_raw(out, SLR_FORMAT_MSGPACK, &raw, &err), SLR_OK);
    slr_raw_example_free(&raw);
    return out->len - before;
}

/* A consumer handle of `group` that never joins: for committed offsets and
 * watermarks. */
static inline rd_kafka_t *test_observer(test_cluster *c, const char *group)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", c->bootstraps, NULL, 0);
    rd_kafka_conf_set(conf, "group.id", group, NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    ck_assert_msg(rk != NULL, "%s", errstr);
    return rk;
}

static inline int64_t test_committed(test_cluster *c, const char *group, const char *topic,
                                     int32_t partition)
{
    rd_kafka_t *rk = test_observer(c, group);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition);
    ck_assert_int_eq(rd_kafka_committed(rk, l, 10000), 0);
    int64_t off = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return off;
}

static inline void test_watermarks(test_cluster *c, const char *topic, int32_t partition,
                                   int64_t *lo, int64_t *hi)
{
    rd_kafka_t *rk = test_observer(c, "watermarks");
    ck_assert_int_eq(rd_kafka_query_watermark_offsets(rk, topic, partition, lo, hi, 10000), 0);
    rd_kafka_destroy(rk);
}

/* The newest checkpoint in dir: its next offset for topic[p], and metrics. */
static inline int64_t test_checkpoint_offset(const char *dir, const char *topic, int32_t p,
                                             slr_metrics *metrics)
{
    slr_learner *l;
    slr_job_state st;
    slr_job_state_init(&st);
    slr_error err;
    ck_assert_msg(slr_checkpoint_dir_load(dir, &l, &st, NULL, NULL, NULL, &err) == SLR_OK, "%s",
                  err.msg);
    int64_t off = slr_job_state_kafka_offset(&st, topic, p);
    if (metrics)
        *metrics = st.metrics;
    slr_learner_destroy(l);
    slr_job_state_free(&st);
    return off;
}

#endif
