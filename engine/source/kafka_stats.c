/* kafka_stats.c - the integers of librdkafka's statistics JSON that the
 * source needs (see kafka_stats.h), parsed by jansson.  The document comes
 * every statistics.interval.ms (seconds), not per message, so parsing all of
 * it into a tree costs nothing that matters. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kafka_stats.h"

/* A partition key: a decimal number >= 0 ("-1" is librdkafka's internal
 * unassigned partition). */
static bool partition_of(const char *key, int32_t *out)
{
    char *end;
    errno = 0;
    long p = strtol(key, &end, 10);
    if (!*key || *end || errno || p < 0 || p > INT32_MAX)
        return false;
    *out = (int32_t)p;
    return true;
}

/* topics.<T>.partitions.<P>.<field>, in the document's order (jansson keeps
 * it), integers only. */
static void walk_topics(json_t *topics, slr_kafka_stats_fn fn, void *ctx)
{
    const char *topic;
    json_t *t;
    json_object_foreach(topics, topic, t) {
        json_t *parts = json_object_get(t, "partitions");
        const char *pkey;
        json_t *part;
        json_object_foreach(parts, pkey, part) {
            int32_t partition;
            if (!json_is_object(part) || !partition_of(pkey, &partition))
                continue;
            const char *field;
            json_t *v;
            json_object_foreach(part, field, v)
                if (json_is_integer(v))
                    fn(ctx, topic, strlen(topic), partition, field, json_integer_value(v));
        }
    }
}

bool slr_kafka_stats_walk(const char *json, size_t len, slr_kafka_stats_fn fn, void *ctx)
{
    json_t *doc = json_loadb(json, len, JSON_ALLOW_NUL, NULL);
    if (!doc)
        return false;
    walk_topics(json_object_get(doc, "topics"), fn, ctx);
    json_decref(doc);
    return true;
}
