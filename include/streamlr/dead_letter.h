/* dead_letter.h - records that cannot be learned from are kept, not dropped.
 *
 * A training job hands every record it cannot learn from to a dead-letter
 * sink, with its exact bytes, where it came from and why, so that it can be
 * inspected, fixed and replayed.  The sink is an interface so that a file
 * (slr_dead_letter_file_open, JSON lines) and a Kafka topic can serve alike.
 * The job drives it so that no record is lost or written twice across a
 * crash and --resume:
 *
 *   put     each rejected record, in input order (may buffer);
 *   sync    before every checkpoint: make everything put so far durable and
 *           report the sink's position, which the checkpoint stores -- so a
 *           checkpoint never moves past a record whose dead letter could
 *           still be lost;
 *   resume  on --resume, with the position the checkpoint stored: forget
 *           whatever was put after it (the replay puts those records again),
 *           or fail if the sink holds less than that.
 *
 * A failing put or sync stops the job (without a further checkpoint): the
 * record could be neither learned nor kept.  docs/DEAD_LETTERS.md has the
 * file format and the guarantees. */
#ifndef STREAMLR_DEAD_LETTER_H
#define STREAMLR_DEAD_LETTER_H

#include "streamlr/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamlr/bad_reason.h"
#include "streamlr/encode.h"
#include "streamlr/error.h"

SLR_BEGIN_DECLS

typedef struct slr_dead_letter {
    slr_bad_reason reason;
    const char *error;  /* the message, as logged */
    const char *source; /* file path, or topic[partition] */
    uint64_t offset;    /* byte offset in the file, or the message offset */
    uint64_t line;      /* line number in a text file; 0 if none */
    bool is_message;    /* offset is a Kafka message offset */
    const char *format; /* input format name */
    const char *data;   /* the record's exact bytes */
    size_t len;
    bool truncated;     /* data is only the start of the record (too_large) */
} slr_dead_letter;

typedef struct slr_dead_letter_sink slr_dead_letter_sink;
struct slr_dead_letter_sink {
    const char *kind; /* "file", "kafka": stored in the checkpoint with the position */
    const char *name; /* the file's path, or the topic */
    slr_status (*put)(slr_dead_letter_sink *s, const slr_dead_letter *dl, slr_error *err);
    slr_status (*sync)(slr_dead_letter_sink *s, uint64_t *position, slr_error *err);
    /* *dropped (may be NULL): how much was forgotten, in the sink's units */
    slr_status (*resume)(slr_dead_letter_sink *s, uint64_t position, uint64_t *dropped,
                         slr_error *err);
    void (*close)(slr_dead_letter_sink *s); /* frees; does not sync */
    /* resume cannot take back what was put after the position (a topic):
     * the replay puts those records again, so they arrive at least once */
    bool at_least_once;
};

/* Append one dead letter as a JSON line (the file sink's format; a Kafka
 * sink may use it as the message value). */
slr_status slr_dead_letter_to_json(slr_buf *out, const slr_dead_letter *dl, slr_error *err);

/* A sink appending JSON lines to `path` (created with mode 0600 if missing;
 * an existing file is appended to).  Its position is the file's length. */
slr_status slr_dead_letter_file_open(slr_dead_letter_sink **out, const char *path,
                                     slr_error *err);

/* A sink producing each dead letter to a Kafka topic (librdkafka's
 * idempotent producer): the value is the JSON line without its newline, the
 * key the record's position "source@offset", headers "reason", "source" and
 * "offset".  Its position is the number of dead letters whose delivery was
 * acknowledged; sync flushes and fails if any delivery failed.  Resume
 * checks that the topic holds at least that many messages, and cannot take
 * back later ones (at_least_once).  A dead letter longer than
 * message.max.bytes allows keeps only the start of its data (truncated). */
typedef struct slr_dead_letter_kafka_options {
    const char *topic;
    const char *brokers;        /* NULL: bootstrap.servers in config */
    const char *const *config;  /* "key=value" librdkafka properties, in order */
    uint32_t n_config;
    void (*log)(void *ctx, const char *msg); /* the client's errors; NULL = silent */
    void *log_ctx;
} slr_dead_letter_kafka_options;

slr_status slr_dead_letter_kafka_open(slr_dead_letter_sink **out,
                                      const slr_dead_letter_kafka_options *opt, slr_error *err);

SLR_END_DECLS
#endif
