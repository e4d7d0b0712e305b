/* position.h - where a source stands: the next record of a file replay, the
 * next offset of each Kafka topic-partition.
 *
 * The sources (source.h, the Kafka consumer) produce and seek to these;
 * checkpoints (checkpoint.h) store them so that a resumed run continues at
 * the record after the last one the model learned. */
#ifndef STREAMLR_POSITION_H
#define STREAMLR_POSITION_H

#include <stdint.h>

#include "streamlr/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum slr_source_kind {
    SLR_SOURCE_NONE = 0, /* a model written without a source (e.g. by the API) */
    SLR_SOURCE_FILES = 1,
    SLR_SOURCE_KAFKA = 2,
} slr_source_kind;

/* Replay position in a list of input files: the next record to apply. */
typedef struct slr_file_position {
    uint32_t file_index; /* index into the file list */
    uint64_t offset;     /* byte offset of the next record in that file */
    uint64_t line;       /* its 1-based line number (text formats) */
    uint64_t records;    /* records consumed over all files (learned, bad or skipped) */
} slr_file_position;

/* Next offset to apply for one topic-partition. */
typedef struct slr_kafka_offset {
    char *topic;
    int32_t partition;
    int64_t offset;
} slr_kafka_offset;

/* A table of n next offsets (topics owned, freed by slr_kafka_offsets_free):
 * the stored offset of topic-partition, or -1 if the table has none. */
int64_t slr_kafka_offsets_get(const slr_kafka_offset *tab, uint32_t n, const char *topic,
                              int32_t partition);
/* Set (or add) the next offset of one topic-partition. */
slr_status slr_kafka_offsets_set(slr_kafka_offset **tab, uint32_t *n, const char *topic,
                                 int32_t partition, int64_t offset, slr_error *err);
void slr_kafka_offsets_free(slr_kafka_offset *tab, uint32_t n);

#ifdef __cplusplus
}
#endif
#endif
