/* kafka_stats.h - reading librdkafka's statistics JSON.
 *
 * librdkafka reports per-partition offsets (log end, last stable, lag) as a
 * JSON document every statistics.interval.ms.  We need a handful of integers
 * from it: this parses the document (jansson) and calls back for each
 * integer field of topics.<T>.partitions.<P>, in the document's order. */
#ifndef STREAMLR_KAFKA_STATS_H
#define STREAMLR_KAFKA_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* topic is not NUL-terminated (topic_len bytes); field is. */
typedef void (*slr_kafka_stats_fn)(void *ctx, const char *topic, size_t topic_len,
                                   int32_t partition, const char *field, int64_t value);

/* Walk json[0, len); false (and no callback) if it is not well-formed JSON. */
bool slr_kafka_stats_walk(const char *json, size_t len, slr_kafka_stats_fn fn, void *ctx);

#endif
