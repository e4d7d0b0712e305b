/* bench_topic_times.c - the timestamps of a topic's messages, for tools/bench
 * follow-stall's Kafka run: prints "TIMESTAMP_MS PARTITION OFFSET" for
 * every message of every partition of TOPIC, from its start to its end as
 * of now.  A scorer's output messages are stamped when it produces them
 * (CreateTime), so the gaps between them are the gaps in its scoring.
 * Built by `make`, not installed.
 *
 *   bench-topic-times BROKERS TOPIC */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "bench-topic-times: %s: %s\n", what, why);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return fail("usage", "bench-topic-times BROKERS TOPIC");
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "group.id", "bench-topic-times", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof errstr))
        return fail("configuration", errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk)
        return fail("consumer", errstr);
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, argv[2], NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    if (e || md->topic_cnt != 1 || md->topics[0].err)
        return fail(argv[2], rd_kafka_err2str(e ? e : md->topics[0].err));
    int parts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    int waiting = 0;
    for (int p = 0; p < parts; p++) {
        int64_t lo, hi;
        if ((e = rd_kafka_query_watermark_offsets(rk, argv[2], p, &lo, &hi, 10000)))
            return fail("watermarks", rd_kafka_err2str(e));
        if (hi > lo) {
            rd_kafka_topic_partition_list_add(l, argv[2], p)->offset = lo;
            waiting++;
        }
    }
    if ((e = rd_kafka_assign(rk, l)))
        return fail("assign", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
    for (int idle = 0; waiting > 0 && idle < 100;) { /* at most 10 s without a message */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            idle++;
            continue;
        }
        idle = 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            waiting--;
        else if (!m->err)
            printf("%lld %d %lld\n", (long long)rd_kafka_message_timestamp(m, NULL),
                   (int)m->partition, (long long)m->offset);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return waiting > 0 ? fail(argv[2], "not read to its end within 10 s of silence") : 0;
}
