/* kafka_conf.c - librdkafka configuration: the user's "key=value"
 * properties (-X, --kafka-config) for the consumer and the producers, and
 * the consumer's own configuration with the settings streamlr forces. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kafka_source_impl.h"

#define DEFAULT_STATS_MS "5000"

/* Properties streamlr sets itself: the exactly-once design depends on them. */
static const struct {
    const char *key, *value, *why;
} FORCED[] = {
    {"enable.auto.commit", "false", "streamlr commits offsets itself, after each durable checkpoint"},
    {"enable.auto.offset.store", "false", "streamlr tracks positions itself"},
    {"enable.partition.eof", "true", "streamlr needs end-of-partition events"},
    {"log.queue", "true", "streamlr serves librdkafka's logs on its own thread"},
};

slr_status slr_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                              slr_error *err)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
        return slr_error_set(err, SLR_ERR_ARG, "kafka property %s=%s: %s", key, value, errstr);
    return SLR_OK;
}

slr_status slr_kafka_property_split(const char *kv, char *key, size_t key_size, const char **value,
                                    slr_error *err)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return slr_error_set(err, SLR_ERR_ARG, "kafka property \"%s\": expected key=value", kv);
    size_t n = (size_t)(eq - kv);
    if (n >= key_size)
        return slr_error_set(err, SLR_ERR_ARG, "kafka property name too long: %.40s...", kv);
    memcpy(key, kv, n);
    key[n] = '\0';
    *value = eq + 1;
    return SLR_OK;
}

slr_status slr_kafka_conf_set_property(rd_kafka_conf_t *conf, const char *kv, slr_error *err)
{
    char key[256];
    const char *value;
    slr_status st = slr_kafka_property_split(kv, key, sizeof key, &value, err);
    return st == SLR_OK ? slr_kafka_conf_set(conf, key, value, err) : st;
}

static slr_status parse_policy(const char *v, reset_policy *out, slr_error *err)
{
    static const char *early[] = {"smallest", "earliest", "beginning"};
    static const char *late[] = {"largest", "latest", "end"};
    for (int i = 0; i < 3; i++) {
        if (!strcasecmp(v, early[i])) {
            *out = RESET_EARLIEST;
            return SLR_OK;
        }
        if (!strcasecmp(v, late[i])) {
            *out = RESET_LATEST;
            return SLR_OK;
        }
    }
    if (!strcasecmp(v, "error")) {
        *out = RESET_ERROR;
        return SLR_OK;
    }
    return slr_error_set(err, SLR_ERR_ARG,
                         "auto.offset.reset=%s: expected earliest, latest or error", v);
}

/* One "key=value" from the user (-X, --kafka-config). */
static slr_status apply_property(reset_policy *policy, rd_kafka_conf_t *conf, const char *kv,
                                 bool *stats_set, bool *fetch_set, slr_error *err)
{
    char key[256];
    const char *value;
    slr_status st = slr_kafka_property_split(kv, key, sizeof key, &value, err);
    if (st != SLR_OK)
        return st;
    for (size_t i = 0; i < sizeof FORCED / sizeof FORCED[0]; i++)
        if (!strcmp(key, FORCED[i].key)) {
            if (strcasecmp(value, FORCED[i].value))
                return slr_error_set(err, SLR_ERR_ARG, "kafka property %s cannot be changed: %s",
                                     key, FORCED[i].why);
            return SLR_OK;
        }
    if (!strcmp(key, "auto.offset.reset") || !strcmp(key, "topic.auto.offset.reset"))
        return parse_policy(value, policy, err);
    if (!strcmp(key, "statistics.interval.ms"))
        *stats_set = true;
    if (!strcmp(key, "fetch.max.bytes") || !strcmp(key, "max.partition.fetch.bytes"))
        *fetch_set = true;
    return slr_kafka_conf_set(conf, key, value, err);
}

/* Fetch responses of about 1 MiB (librdkafka: up to 50 MiB, 1 MiB per
 * partition): the fetch thread then reuses buffers that stay in cache
 * rather than faulting in fresh pages for every response, and still keeps
 * ahead of the learner (BENCHMARKS.md, Kafka).  A batch larger than the
 * limits is still fetched whole.  librdkafka refuses a fetch.max.bytes
 * below message.max.bytes, which a user may have raised. */
static slr_status small_fetches(rd_kafka_conf_t *conf, slr_error *err)
{
    char buf[32];
    size_t n = sizeof buf;
    long long fetch = 1048576;
    if (rd_kafka_conf_get(conf, "message.max.bytes", buf, &n) == RD_KAFKA_CONF_OK &&
        atoll(buf) > fetch)
        fetch = atoll(buf);
    snprintf(buf, sizeof buf, "%lld", fetch);
    slr_status st = slr_kafka_conf_set(conf, "fetch.max.bytes", buf, err);
    return st == SLR_OK ? slr_kafka_conf_set(conf, "max.partition.fetch.bytes", "262144", err)
                        : st;
}

slr_status slr_kafka_consumer_conf(const slr_kafka_source_config *k, bool want_stats,
                                   reset_policy *policy, rd_kafka_conf_t **out, slr_error *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    slr_status st = slr_kafka_conf_set(conf, "client.id", "streamlr", err);
    /* sticky: a partition stays with the member whose model has learned it;
     * cooperative: members keep consuming the partitions that do not move,
     * and revoke (checkpoint, commit) while the group is still stable */
    if (st == SLR_OK)
        st = slr_kafka_conf_set(conf, "partition.assignment.strategy", "cooperative-sticky", err);
    for (size_t i = 0; st == SLR_OK && i < sizeof FORCED / sizeof FORCED[0]; i++)
        st = slr_kafka_conf_set(conf, FORCED[i].key, FORCED[i].value, err);
    if (st == SLR_OK && k->brokers)
        st = slr_kafka_conf_set(conf, "bootstrap.servers", k->brokers, err);
    if (st == SLR_OK && k->group)
        st = slr_kafka_conf_set(conf, "group.id", k->group, err);
    bool stats_set = false, fetch_set = false;
    for (uint32_t i = 0; st == SLR_OK && i < k->n_config; i++)
        st = apply_property(policy, conf, k->config[i], &stats_set, &fetch_set, err);
    if (st == SLR_OK && !fetch_set)
        st = small_fetches(conf, err);
    if (st == SLR_OK && want_stats && !stats_set)
        st = slr_kafka_conf_set(conf, "statistics.interval.ms", DEFAULT_STATS_MS, err);
    /* librdkafka must never move a position by itself: see the top of the file */
    if (st == SLR_OK)
        st = slr_kafka_conf_set(conf, "auto.offset.reset", "error", err);
    char buf[512];
    size_t n = sizeof buf;
    if (st == SLR_OK && (rd_kafka_conf_get(conf, "group.id", buf, &n) != RD_KAFKA_CONF_OK || !*buf))
        st = slr_error_set(err, SLR_ERR_ARG,
                           "a Kafka job needs a consumer group (--group): offsets are committed "
                           "to it");
    n = sizeof buf;
    if (st == SLR_OK &&
        (rd_kafka_conf_get(conf, "bootstrap.servers", buf, &n) != RD_KAFKA_CONF_OK || !*buf))
        st = slr_error_set(err, SLR_ERR_ARG,
                           "no Kafka brokers: give --brokers HOST:PORT (or bootstrap.servers)");
    if (st != SLR_OK) {
        rd_kafka_conf_destroy(conf);
        return st;
    }
    *out = conf;
    return SLR_OK;
}
