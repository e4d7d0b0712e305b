/* bench_kafka_floor.c - the least librdkafka itself costs to turn a topic
 * into another one message for message, for tools/bench kafka-floor: what
 * `streamlr predict --brokers ... --output-topic` pays per message before
 * any scoring, so whether its CPU per example can come within a given
 * factor of file scoring at all.  Built by `make`, not installed.
 *
 *   bench-kafka-floor BROKERS IN OUT GROUP [copy] [no-headers] [no-dr] [poll]
 *
 * Consumes every partition of IN (static assignment, from the group's
 * committed offsets or the start) with streamlr's consumer settings, and
 * for each message produces one message to OUT with the same key, the
 * input's headers handed over plus "streamlr.source" and "streamlr.model",
 * as predict does; the value is a 12-byte prediction line per message
 * ("copy": the input's value unchanged).  Offsets are committed, every
 * second and at the end, as far as the outputs are acknowledged (delivery
 * reports), as predict does.  Exits once every partition has reached its
 * end and every output is acknowledged; prints "messages N delivered D".
 *
 * The switches take work away, to see what each part costs:
 *   no-headers  no headers on the outputs (the input's are dropped)
 *   no-dr       no delivery report per message: the producer is flushed at
 *               the end and everything consumed committed then (not
 *               at-least-once if it dies: for measuring only)
 *   poll        rd_kafka_consumer_poll one message at a time instead of
 *               rd_kafka_consume_batch_queue
 * and KEY=VALUE sets a consumer property (e.g. fetch.max.bytes=52428800). */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 1000

static int n_parts;
static int64_t *acked;    /* per input partition: next offset whose output is acknowledged */
static long long delivered;

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "bench-kafka-floor: %s: %s\n", what, why);
    return 1;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* The opaque carries the input's partition and offset (what predict keeps
 * in its ring slot). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        fprintf(stderr, "bench-kafka-floor: delivery: %s\n", rd_kafka_err2str(m->err));
        exit(1);
    }
    uint64_t v = (uint64_t)(uintptr_t)m->_private;
    int p = (int)(v >> 48);
    int64_t next = (int64_t)(v & ((1ull << 48) - 1)) + 1;
    if (next > acked[p])
        acked[p] = next;
    delivered++;
}

static void commit(rd_kafka_t *consumer, const char *topic, const int64_t *next, int async)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n_parts);
    for (int p = 0; p < n_parts; p++)
        if (next[p] >= 0)
            rd_kafka_topic_partition_list_add(l, topic, p)->offset = next[p];
    if (l->cnt)
        rd_kafka_commit(consumer, l, async);
    rd_kafka_topic_partition_list_destroy(l);
}

/* "topic[partition]@offset", without printf, as predict_kafka.c makes it */
static int put_number(char *buf, uint64_t v)
{
    char digits[24];
    int k = 0, n = 0;
    do
        digits[k++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (k)
        buf[n++] = digits[--k];
    return n;
}

static int source_of(char *buf, const char *topic, int32_t partition, int64_t offset)
{
    int n = (int)strnlen(topic, 500);
    memcpy(buf, topic, (size_t)n);
    buf[n++] = '[';
    n += put_number(buf + n, (uint64_t)partition);
    buf[n++] = ']';
    buf[n++] = '@';
    return n + put_number(buf + n, (uint64_t)offset);
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, k, v, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        fail(k, errstr);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return fail("usage", "bench-kafka-floor BROKERS IN OUT GROUP [copy] [no-headers] "
                             "[no-dr] [poll] [KEY=VALUE]...");
    const char *brokers = argv[1], *in = argv[2], *out = argv[3], *group = argv[4];
    int copy = 0, headers = 1, dr = 1, poll_one = 0;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "copy"))
            copy = 1;
        else if (!strcmp(argv[i], "no-headers"))
            headers = 0;
        else if (!strcmp(argv[i], "no-dr"))
            dr = 0;
        else if (!strcmp(argv[i], "poll"))
            poll_one = 1;
        else if (!strchr(argv[i], '='))
            return fail(argv[i], "expected copy, no-headers, no-dr, poll or KEY=VALUE");
    }
    char errstr[512];
    /* the consumer as streamlr configures it (kafka_conf.c) and as tools/bench
     * kafka-predict runs predict (-X fetch.wait.max.ms=10) */
    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    if (set(cc, "bootstrap.servers", brokers) || set(cc, "group.id", group) ||
        set(cc, "client.id", "streamlr") || set(cc, "enable.auto.commit", "false") ||
        set(cc, "enable.auto.offset.store", "false") || set(cc, "enable.partition.eof", "true") ||
        set(cc, "auto.offset.reset", "earliest") || set(cc, "fetch.max.bytes", "1048576") ||
        set(cc, "max.partition.fetch.bytes", "262144") || set(cc, "fetch.wait.max.ms", "10"))
        return 1;
    for (int i = 5; i < argc; i++) { /* key=value: a consumer property of one's own */
        char *eq = strchr(argv[i], '=');
        if (eq) {
            *eq = '\0';
            if (set(cc, argv[i], eq + 1))
                return 1;
        }
    }
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, errstr, sizeof errstr);
    if (!consumer)
        return fail("consumer", errstr);
    rd_kafka_poll_set_consumer(consumer);
    rd_kafka_queue_t *queue = rd_kafka_queue_get_consumer(consumer);

    /* the producer as predict_kafka.c configures it */
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    if (set(pc, "bootstrap.servers", brokers) || set(pc, "client.id", "streamlr-predict") ||
        set(pc, "enable.idempotence", "true") || set(pc, "linger.ms", "5"))
        return 1;
    if (dr)
        rd_kafka_conf_set_dr_msg_cb(pc, on_delivery);
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof errstr);
    if (!producer)
        return fail("producer", errstr);
    rd_kafka_topic_t *out_rkt = rd_kafka_topic_new(producer, out, NULL);

    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(consumer, in, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(consumer, 0, rkt, &md, 10000);
    if (e || md->topic_cnt != 1 || md->topics[0].err)
        return fail(in, rd_kafka_err2str(e ? e : md->topics[0].err));
    n_parts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    if (n_parts >= (1 << 15))
        return fail(in, "too many partitions");
    acked = malloc((size_t)n_parts * sizeof *acked);
    int64_t *consumed = malloc((size_t)n_parts * sizeof *consumed);
    char *at_end = calloc((size_t)n_parts, 1);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n_parts);
    for (int p = 0; p < n_parts; p++) {
        acked[p] = consumed[p] = -1;
        rd_kafka_topic_partition_list_add(l, in, p)->offset = RD_KAFKA_OFFSET_STORED;
    }
    if ((e = rd_kafka_assign(consumer, l)))
        return fail("assign", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);

    static const char line[] = "0.123456789\n";
    rd_kafka_message_t *msgs[BATCH];
    long long n = 0;
    int ended = 0;
    double next_commit = now() + 1;
    while (ended < n_parts) {
        ssize_t got;
        if (poll_one) {
            msgs[0] = rd_kafka_consumer_poll(consumer, 100);
            got = msgs[0] != NULL;
        } else {
            got = rd_kafka_consume_batch_queue(queue, 100, msgs, BATCH);
        }
        for (ssize_t i = 0; i < got; i++) {
            rd_kafka_message_t *m = msgs[i];
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                if (!at_end[m->partition]) {
                    at_end[m->partition] = 1;
                    ended++;
                }
            } else if (m->err) {
                return fail("consume", rd_kafka_message_errstr(m));
            } else {
                rd_kafka_headers_t *h = NULL;
                if (headers) {
                    char where[600];
                    int k = source_of(where, in, m->partition, m->offset);
                    if (rd_kafka_message_detach_headers(m, &h) || !h)
                        h = rd_kafka_headers_new(2);
                    rd_kafka_header_add(h, "streamlr.source", 15, where, k);
                    rd_kafka_header_add(h, "streamlr.model", 14, "model.slr", 9);
                }
                uint64_t v = ((uint64_t)m->partition << 48) | (uint64_t)m->offset;
                for (;;) {
                    e = rd_kafka_producev(
                        producer, RD_KAFKA_V_RKT(out_rkt), RD_KAFKA_V_KEY(m->key, m->key_len),
                        RD_KAFKA_V_VALUE(copy ? m->payload : (void *)line,
                                         copy ? m->len : sizeof line - 1),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                        RD_KAFKA_V_OPAQUE((void *)(uintptr_t)v), RD_KAFKA_V_END);
                    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        break;
                    rd_kafka_poll(producer, 100);
                }
                if (e)
                    return fail("produce", rd_kafka_err2str(e));
                consumed[m->partition] = m->offset + 1;
                n++;
            }
            rd_kafka_message_destroy(m);
        }
        rd_kafka_poll(producer, 0);
        if (dr && now() >= next_commit) {
            next_commit = now() + 1;
            commit(consumer, in, acked, 1);
        }
    }
    if (rd_kafka_flush(producer, 30000))
        return fail("flush", "outputs not acknowledged within 30 s");
    commit(consumer, in, dr ? acked : consumed, 0);
    printf("messages %lld delivered %lld\n", n, dr ? delivered : n);
    rd_kafka_queue_destroy(queue);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    rd_kafka_topic_destroy(out_rkt);
    rd_kafka_destroy(producer);
    free(acked);
    free(consumed);
    free(at_end);
    return 0;
}
