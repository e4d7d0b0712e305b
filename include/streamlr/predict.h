/* predict.h - scoring: files in order (slr_predict_files), and a stream job,
 * Kafka in, predictions to Kafka out (slr_predict_kafka).
 *
 * slr_predict_kafka() consumes messages of examples (the same payloads
 * `streamlr train --brokers` reads), scores every example with a model --
 * a fixed one, or the newest checkpoint of a training job's directory,
 * switched to between messages whenever a newer one appears -- and
 * produces one output message per input message, with the input's key and
 * headers: its value is one line per example in input order, the probability
 * and the example's tag as VW writes them (exactly what `streamlr predict -p`
 * prints, slr_prediction_line), "nan" for a bad record.
 *
 * Delivery is at-least-once on the output: an input offset is committed to
 * the consumer group only after the predictions made from it (and every
 * message before it in its partition) have been acknowledged by the broker,
 * so a crash or a failed delivery re-scores messages from the last commit,
 * never skips one.  docs/KAFKA.md ("Scoring a topic") has the whole story. */
#ifndef STREAMLR_PREDICT_H
#define STREAMLR_PREDICT_H

#include "streamlr/export.h"
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "streamlr/checkpoint.h"
#include "streamlr/dead_letter.h"
#include "streamlr/decode.h"
#include "streamlr/error.h"
#include "streamlr/kafka.h"
#include "streamlr/learner.h"
#include "streamlr/metrics.h"
#include "streamlr/train.h"

SLR_BEGIN_DECLS

typedef enum slr_output_partition {
    SLR_OUTPUT_BY_KEY,  /* the producer's partitioner on the key (a null key: any) */
    SLR_OUTPUT_SAME,    /* the input message's partition number */
} slr_output_partition;

typedef struct slr_predict_options {
    slr_format format;             /* payload format (msgpack: several examples per message
                                      allowed; text: one record per line) */
    const char *model;             /* a model or checkpoint file ... */
    const char *follow_dir;        /* ... or the newest checkpoint of this directory, and each
                                      newer one as it appears ... */
    const char *follow_topic;      /* ... or a group's sync topic (on the input's brokers):
                                      its newest snapshot and each round completed after it
                                      (exactly one of the three) */
    double follow_interval_seconds; /* how often to look for a newer checkpoint (read on
                                       a thread of its own); 0 = 1 */
    const char *output_topic;
    slr_output_partition output_partition;
    const char *const *producer_config; /* librdkafka properties "key=value" for the producer */
    uint32_t n_producer_config;
    double commit_interval_seconds; /* how often acknowledged offsets are committed; 0 = 1 */
    slr_dead_letter_sink *dead_letters; /* optional: bad records go here (the caller owns it) */
    slr_stop_flag *stop;           /* set (by another thread, a signal handler) to stop */
    slr_log_fn log;                /* warnings, bad records, model switches; NULL = silent.
                                      With follow_dir it is also called from the
                                      follower's loader thread (a checkpoint that does
                                      not load) */
    void *log_ctx;
} slr_predict_options;

void slr_predict_options_init(slr_predict_options *o);

typedef struct slr_predict_result {
    uint64_t messages;       /* input messages scored (one output message each) */
    uint64_t examples;       /* examples scored (labelled + unlabelled) */
    uint64_t bad;            /* records that could not be scored ("nan") */
    uint64_t dead_lettered;  /* of those, handed to the dead-letter sink */
    uint64_t delivered;      /* output messages acknowledged by the broker */
    uint64_t undelivered;    /* output messages that failed or were still unacknowledged at
                                the end (their input offsets were not committed) */
    uint64_t model_switches; /* --follow: newer checkpoints switched to; --follow-topic:
                                refreshes that moved the model */
    char model_path[4096];   /* the model scoring at the end */
    slr_metrics metrics;     /* labelled examples: test log loss, calibration */
    double auc, auc_error_bound; /* labelled examples: cumulative (histogram) AUC; NaN if
                                    a class is missing */
} slr_predict_result;

/* Score until *opt->stop is set or (in->exit_at_end) every assigned
 * partition has been consumed; then wait (bounded by
 * in->close_timeout_seconds) for outstanding deliveries, commit what they
 * acknowledge, and leave the group.  Input options (brokers, topics, group,
 * librdkafka properties, static partitions) are those of slr_train_kafka.
 * Returns SLR_ERR_ARG for bad settings, SLR_ERR_KAFKA when a client fails
 * or an output message cannot be delivered (the job then stops: committing
 * past it would lose predictions). */
slr_status slr_predict_kafka(const slr_predict_options *opt, const slr_kafka_options *in,
                             slr_predict_result *res, slr_error *err);

/* Scoring files with a fixed model, on the decoding paths training uses
 * (and, with threads >= 2, decoding on a second thread): one line per record
 * to `predictions`, in input order, as slr_prediction_line writes it, "nan"
 * for a bad record. */
typedef struct slr_predict_files_options {
    const char *const *files;  /* "-" is stdin */
    uint32_t n_files;
    slr_format format;
    slr_learner *model;        /* read only here; slr_learner_sync it first, so that
                                  scoring owes no penalty */
    slr_follower *follow;      /* instead of model: score with its learner, switching to
                                  each newer checkpoint (slr_follower_refresh) between
                                  records; on one thread.  Its loader thread is started
                                  (slr_follower_start) */
    double follow_interval_seconds; /* how often to look for a newer one; one that has
                                       been read is switched to within this time, and at
                                       once whenever the input is idle */
    FILE *predictions;         /* NULL: none (metrics only) */
    bool strict;               /* stop at the first bad record (SLR_ERR_BAD_INPUT) */
    uint32_t threads;          /* >= 2: decode on a thread of its own */
    bool auc;                  /* compute the exact AUC: 24 bytes kept per labelled example
                                  and a sort at the end (a fifth of the cost of scoring
                                  20k compact examples) */
    slr_log_fn log;            /* bad records ("file:line: why"), model switches; NULL =
                                  silent */
    void *log_ctx;
} slr_predict_files_options;

void slr_predict_files_options_init(slr_predict_files_options *o);

typedef struct slr_predict_files_result {
    uint64_t examples;   /* scored (labelled + unlabelled) */
    uint64_t unlabelled;
    uint64_t bad;        /* records that could not be scored */
    slr_metrics metrics; /* labelled examples: test log loss, calibration */
    double auc;          /* labelled examples, with opt->auc: the exact AUC; else NaN */
    uint64_t model_switches; /* with a follower: newer checkpoints switched to */
} slr_predict_files_result;

/* Score every record of the files; the predictions are flushed whenever the
 * input runs dry (a pipe) and at the end.  SLR_ERR_BAD_INPUT with --strict
 * at a bad record (err names it), SLR_ERR_IO when reading or writing fails. */
slr_status slr_predict_files(const slr_predict_files_options *opt, slr_predict_files_result *res,
                             slr_error *err);

/* One prediction line as -p and the scoring job write it, appended to out:
 * "%.9g" of p, then, as VW does ("0.55 tag1"), a space and the example's tag
 * if it has one, then "\n".  The tag is what joins a prediction back to its
 * request; whitespace in it is written as '_' so that a line stays one line. */
slr_status slr_prediction_line(slr_buf *out, double p, const char *tag, size_t tag_len,
                               slr_error *err);

SLR_END_DECLS
#endif
