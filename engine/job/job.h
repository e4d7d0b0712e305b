/* job.h - the per-record pipeline shared by every training source.
 *
 * A source (files, Kafka) hands records to slr_job_apply(); the job decodes,
 * hashes, learns, keeps the progressive metrics, reports bad input with its
 * position and hands it to the dead-letter sink, reports progress, and
 * decides when a checkpoint is due.  The source owns the notion of position
 * and passes it in (slr_where), so the same code serves "file.vw:1234" and
 * "clicks[3]@98765".
 *
 * slr_job_apply() is two stages that can run on two threads:
 *   1. slr_job_read(): decode and hash one record into an slr_job_item, which
 *      owns everything (no views into the read buffer);
 *   2. slr_job_learn(): everything else, in record order -- counting, bad
 *      record reports and dead letters, learning, metrics, progress.
 * Stage 2 alone touches the learner and the job state, so running stage 1
 * ahead (on another thread, ring.h) changes no result: the learner applies
 * the same examples in the same order. */
#ifndef STREAMLR_JOB_H
#define STREAMLR_JOB_H

#include <pthread.h>
#include <stdbool.h>

#include "util/clock.h"
#include "streamlr/checkpoint.h"
#include "streamlr/decode.h"
#include "streamlr/metrics_server.h"
#include "streamlr/source.h"
#include "streamlr/train.h"

typedef struct slr_where {
    const char *name; /* file path, or topic[partition] */
    uint64_t line;    /* 0 when not meaningful */
    uint64_t offset;  /* byte offset (files) or message offset (Kafka) */
    bool is_message;  /* offset is a Kafka message offset */
} slr_where;

/* A run of msgpack bytes skipped to resynchronise, gathered into one dead
 * letter instead of one per byte (cut at checkpoints and at the record
 * limit). */
typedef struct slr_junk_span {
    bool active;
    char *source;
    uint64_t offset;
    bool is_message;
    slr_bad_reason reason;
    char error[SLR_ERROR_MSG_MAX];
    slr_buf data;
} slr_junk_span;

/* Stage 1's own state: a decoder and its raw example.  One per thread that
 * decodes. */
typedef struct slr_job_reader {
    slr_decoder *decoder;
    slr_raw_example raw;
    bool keep_names; /* copy the raw example into each item (--keep-names) */
    bool keep_bytes; /* ... and an unlabelled record's bytes (a dead-letter sink) */
    bool keep_tag;   /* copy the example's tag into each item (-p writes it) */
} slr_job_reader;

typedef enum slr_item_kind {
    SLR_ITEM_EXAMPLE, /* ex holds a hashed example (labelled or not) */
    SLR_ITEM_SKIP,    /* a blank or comment line */
    SLR_ITEM_BAD,     /* reason says why */
    SLR_ITEM_END,     /* no more records (a source's marker; see train_files.c) */
} slr_item_kind;

/* One record between the stages. */
typedef struct slr_job_item {
    slr_item_kind kind;
    slr_example ex;
    slr_where where;         /* the record's position, for messages; where.name
                              * must outlive the item */
    slr_file_position after; /* file replay: the source position after the record */
    slr_error reason;        /* BAD: why; END: the source's error, if any */
    slr_status status;       /* END: SLR_OK at the end of input, else an error */
    slr_bad_reason why;      /* BAD: slr_decoder_last_bad's reason, resync and */
    bool resync, truncated;  /* truncated flags */
    slr_buf bytes;           /* BAD (and unlabelled, with keep_bytes): the record's
                              * bytes, for the dead letter */
    slr_buf tag;             /* EXAMPLE, with keep_tag: the example's tag (len 0: none) */
    bool holdout;            /* EXAMPLE: score it, learn nothing (passes > 1, train_files.c) */
    uint32_t pass;           /* file replay: which pass over the input, from 1 */
    /* --keep-names: the raw example, its names copied into `names` (stage 2
     * records them; stage 1 may already be reading far ahead) */
    slr_raw_example raw;
    char *names;
    size_t names_cap;
} slr_job_item;

struct slr_sync_member;

typedef struct slr_job {
    const slr_train_options *opt;
    slr_learner *learner;
    /* A group sharing a model (train_sync.c): while set, examples are
     * learned through this member (which counts what they touch for its
     * delta) and `learner` is its learner, not the job's model. */
    struct slr_sync_member *sync;
    slr_job_state state; /* metrics, position, checkpoint sequence */
    slr_job_reader reader; /* stage 1 for slr_job_apply */
    slr_job_item item;
    slr_buf prediction;    /* -p: the line being written */
    uint32_t holdout_pass;         /* the pass the holdout sums below are of */
    uint64_t holdout_examples;
    double holdout_weight, holdout_loss;

    double started;                /* monotonic seconds */
    uint64_t examples_this_run;
    uint64_t records_this_run;
    uint64_t next_progress;        /* print a progress row at this example count */
    slr_metrics at_last_row;       /* for the "since last" column */
    uint64_t examples_at_checkpoint; /* at the last attempt: the period counts from here */
    uint64_t records_at_checkpoint;  /* at the last checkpoint actually written */
    uint64_t records_at_clock;     /* records_this_run when the clock was last read */
    uint64_t moves;                /* times the source position changed without a record
                                      (Kafka: a partition's end or a reset) ... */
    uint64_t moves_at_checkpoint;  /* ... as of the last durable checkpoint */
    double time_at_checkpoint;
    uint64_t checkpoints_written;
    double waiting_seconds;        /* time before the first record (a source that waits for
                                      data: joining a consumer group); not in the rate */
    double checkpoint_seconds;     /* time learning was paused for checkpoints and models */
    uint64_t pauses;               /* periodic checkpoints taken ... */
    double pause_total, pause_max; /* ... and how long each held learning up (seconds) */
    slr_checkpoint_child *writer;  /* a checkpoint being written by a child process */
    slr_job_state writer_state;    /* the state it records */
    uint64_t writer_prev_sequence;
    uint64_t writer_records;       /* records_this_run when it was taken */
    uint64_t writer_moves;         /* moves when it was taken */
    double writer_forked_at;       /* monotonic time of its fork */
    unsigned fork_overruns;        /* checkpoints in a row that found the last child running */
    bool fork_given_up;            /* children could not keep up: writing in place (job_checkpoint.c) */
    uint64_t bad_reported;
    slr_junk_span junk;
    uint64_t dead_letters;         /* given to the sink in this run */
    char last_checkpoint[4096];

    /* reporting (report.c) */
    slr_source_stats source;    /* a streaming source fills this in */
    slr_metrics_server *server; /* --metrics-port */
    double started_unix;
    double last_checkpoint_unix;
    double next_line, next_json, next_publish; /* monotonic due times */
    bool metrics_failed;        /* writing the metrics file failed (reported once) */
    uint64_t published_at;      /* examples + 1 at the last publish */
    uint64_t window_at;         /* examples when window_stats was computed (+1; 0 = never) */
    slr_window_stats window_stats;
    double window_time, window_cost; /* when window_stats was computed, and its cost */

    /* input in the wrong format (job_reject.c): the first records of the run are
     * watched until they can no longer make a wrong format likely */
    uint64_t probe_records, probe_bad; /* records (not blank lines) and bad ones so far */
    bool format_settled;               /* the watch is over */
    slr_buf bad_sample;                /* the first bad records' bytes, to name the format */
    uint64_t sample_offset;            /* where the last bytes in bad_sample came from */
    bool wrote_start_checkpoint;       /* slr_job_start wrote this run's first checkpoint */
    bool checkpoint_format_known;      /* resumed: the checkpoint's format, for format_auto */
    slr_format checkpoint_format;
} slr_job;

/* Build the learner (fresh, -i or --resume) and the decoding pipeline.  On
 * --resume, state receives the checkpoint's position for the source to seek;
 * with both --resume and -i, -i is the start only when the directory holds
 * no checkpoint yet. */
/* The caller's options (of in->size bytes, perhaps an older and shorter
 * struct) as this library's struct, defaults for what the caller lacks. */
slr_status slr_train_options_resolve(const slr_train_options *in, slr_train_options *out,
                                     slr_error *err);
slr_status slr_job_open(slr_job *job, const slr_train_options *opt, slr_error *err);
void slr_job_close(slr_job *job);

/* Call once the source has put its starting position into job->state,
 * before the first record.  With a dead-letter sink and a checkpoint
 * directory, a job that did not resume from a checkpoint writes one now:
 * the sink's starting position must be durable before the first dead
 * letter, or a crash before the first periodic checkpoint would leave
 * letters that a restart from scratch writes again. */
slr_status slr_job_start(slr_job *job, slr_error *err);

typedef enum slr_apply_result {
    SLR_APPLY_LEARNED,   /* one example learned */
    SLR_APPLY_SKIPPED,   /* blank line, comment, or unlabelled example */
    SLR_APPLY_BAD,       /* reported and counted; go on (unless strict) */
    SLR_APPLY_NEED_MORE, /* the record continues past the buffer */
} slr_apply_result;

/* Decode and learn the record at the front of buf.  *consumed is set for
 * every result but NEED_MORE.  Returns an error only for --strict bad input
 * (SLR_ERR_BAD_INPUT) or resource failures.  The same as slr_job_read()
 * followed by slr_job_learn(). */
slr_status slr_job_apply(slr_job *job, const char *buf, size_t len, bool at_end,
                         const slr_where *where, size_t *consumed, slr_apply_result *result,
                         slr_error *err);

/* Stage 1.  A reader for the job's input format and limits. */
slr_status slr_job_reader_init(slr_job_reader *r, const slr_train_options *opt, slr_error *err);
void slr_job_reader_free(slr_job_reader *r);
/* Items hash with the model's hashing, so make them once the model is
 * known (for a training job, after slr_job_open); max_features 0 is the
 * default limit.  Taking the model, not a job, lets scoring make them too. */
void slr_job_item_init(slr_job_item *it, const slr_learner *model, uint32_t max_features);
void slr_job_item_free(slr_job_item *it);
/* Decode and hash the record at the front of buf into it (kind EXAMPLE,
 * SKIP or BAD; *consumed > 0).  Returns false, with nothing consumed, when
 * the record continues past len. */
bool slr_job_read(slr_job_reader *r, const char *buf, size_t len, bool at_end,
                  const slr_where *where, size_t *consumed, slr_job_item *it);

/* Stage 1 over files (training and scoring share it): the next record of
 * src into it, going on to the next file at each one's end.  NEED_INPUT:
 * nothing consumed, the input has no bytes yet (a pipe): wait and call
 * again.  END: end of input, or a read error (*st, it->reason). */
typedef enum { SLR_JOB_FILE_ITEM, SLR_JOB_FILE_NEED_INPUT, SLR_JOB_FILE_END } slr_job_file_read;
slr_job_file_read slr_job_read_file(slr_job_reader *r, slr_file_source *src, bool text,
                                    slr_job_item *it, slr_status *st);

/* opt->format changed after slr_job_open (format_auto: detected from the
 * first bytes, or the checkpoint's): rebuild the reader and record it. */
slr_status slr_job_set_format(slr_job *job, slr_error *err);

/* While the records so far are mostly bad and too few to tell a wrong
 * format, no checkpoint is taken and no offset committed: a run stopped
 * for its format must leave nothing a rerun with the right one would skip. */
bool slr_job_checkpoint_held(const slr_job *job);

/* ------------------------------------------------------------ rejects (job_reject.c) */

/* A record that cannot be learned from: counted by reason, reported, and
 * its bytes handed to the dead-letter sink.  An error only for --strict or
 * a dead letter that cannot be kept. */
slr_status slr_job_reject_record(slr_job *job, const slr_where *where, slr_bad_reason why,
                                 const char *msg, const char *data, size_t len, bool truncated,
                                 slr_error *err);
/* Bytes skipped to resynchronise, joined into the current junk span when
 * they follow it; slr_job_flush_junk rejects the span (as one record). */
slr_status slr_job_add_junk(slr_job *job, const slr_where *where, slr_bad_reason why,
                            const char *msg, const char *buf, size_t n, slr_error *err);
slr_status slr_job_flush_junk(slr_job *job, slr_error *err);
/* Count one of the run's first records toward a wrong-format verdict;
 * SLR_ERR_BAD_INPUT once the input is clearly in another format. */
slr_status slr_job_probe_format(slr_job *job, const slr_job_item *it, slr_error *err);

/* Stage 2: apply one item (EXAMPLE, SKIP or BAD) to the job, in record order. */
slr_status slr_job_learn(slr_job *job, const slr_job_item *it, slr_apply_result *result,
                         slr_error *err);

/* Should the source stop before the next record: *opt->stop was set, or
 * opt->max_examples have been learned in this run? */
bool slr_job_should_stop(const slr_job *job);

/* Is a periodic checkpoint due (by count, or by time -- the clock is read
 * every 1024 records)? */
bool slr_job_checkpoint_due(slr_job *job);
/* The same, reading the clock now: for sources that can sit idle between
 * records (Kafka).  False if nothing changed since the last checkpoint. */
bool slr_job_checkpoint_due_now(slr_job *job);
/* Make the dead letters durable, then take a checkpoint of the current
 * learner and state (the caller has put the source position into
 * job->state).  With opt->checkpoint_fork a child
 * process writes it and this returns after the fork; it becomes durable
 * later (slr_job_checkpoint_poll), and opt->checkpoint_done is called then.
 * A previous checkpoint still being written is waited for first.
 * A failed checkpoint write is logged, leaves the previous checkpoint in
 * place and is retried at the next period: that returns SLR_OK.  An error
 * means the job must stop: the dead letters could not be made durable, so no
 * checkpoint may move past them. */
slr_status slr_job_checkpoint(slr_job *job, slr_error *err);

/* Reap a checkpoint written in the background once it is done (with
 * `wait`, wait for it): counts it, calls opt->checkpoint_done, or logs and
 * returns its failure.  Cheap when nothing is running; a source loop calls
 * it now and then (train_files.c: every 1024 records). */
slr_status slr_job_checkpoint_poll(slr_job *job, bool wait, slr_error *err);

/* ------------------------------------------------------------ checkpoints (job_checkpoint.c) */

/* Final checkpoint, -f model, summary; fills res. */
slr_status slr_job_finish(slr_job *job, bool stopped, slr_train_result *res, slr_error *err);

/* ------------------------------------------------------------ reporting (report.c) */

void slr_job_log(slr_job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Move job->next_progress to the example count of the next progress row. */
void slr_job_advance_progress(slr_job *job);

/* Score bookkeeping for one example: totals, window, histogram. */
static inline void slr_job_observe(slr_job *job, const slr_example *ex, double p, double loss)
{
    slr_metrics_add(&job->state.metrics, p, loss, ex->label, ex->weight, ex->n_features);
    slr_auc_window_add(job->state.window, p, ex->label, ex->weight, loss);
    slr_auc_histogram_add(job->state.histogram, p, ex->label, ex->weight);
}

/* Set up the window, histogram, names and metrics server (after the state
 * is loaded) and publish a first report. */
slr_status slr_job_report_open(slr_job *job, slr_error *err);
void slr_job_report_close(slr_job *job);

/* Time has passed: report progress, write a JSON line, publish to
 * the server, whichever is due.  The job calls it every 1024 records; a
 * source that can sit idle (Kafka) calls it when a poll returns nothing. */
void slr_job_tick(slr_job *job);

/* The source is waiting for input: like a tick, and publish to the server
 * now if anything changed, so a scrape of an idle job is not stale. */
void slr_job_idle(slr_job *job);

/* The metrics as of now. */
void slr_job_report(slr_job *job, bool final, slr_metrics_report *r);

/* VW's table row (table style) to the progress callback, when the example
 * count reaches the next power of 2. */
void slr_job_progress_row(slr_job *job, const slr_example *ex, double p);

/* The last report: final JSON line, publish, clear the progress line. */
void slr_job_report_finish(slr_job *job, slr_metrics_report *final_report);

/* Start a helper thread with every signal blocked, so that SIGINT and
 * SIGTERM reach the learning thread, which checks opt->stop. */
bool slr_job_start_thread(pthread_t *thread, void *(*fn)(void *), void *arg);
/* A helper thread's body: zero the learner's weight table (arg) on a second
 * core rather than page by page under the learner. */
void *slr_job_prefault_thread(void *learner);

/* The Kafka source (source/kafka_source.h) as the Kafka jobs open and
 * commit it: from the job's options, with positions in a job state (its
 * offsets table and metrics.lost; state must outlive the source), and
 * committing the offsets a job state holds (kafka_job.c). */
struct slr_kafka_source;
struct slr_kafka_hooks;
struct slr_kafka_options;
slr_status slr_kafka_source_open(struct slr_kafka_source **out, const struct slr_kafka_options *k,
                                 bool want_stats, slr_job_state *state,
                                 const struct slr_kafka_hooks *hooks, slr_error *err);
void slr_kafka_source_commit_state(struct slr_kafka_source *src, const slr_job_state *st,
                                   double wait_seconds);
/* --format not given (opt->format_auto): the first of msgs[0..n) with data
 * tell the format (opt->format stays when they do not), and the job reads
 * in it; *chosen once messages with data were seen. */
struct rd_kafka_message_s;
slr_status slr_kafka_job_detect_format(slr_job *job, slr_train_options *opt,
                                       struct rd_kafka_message_s **msgs, size_t n, bool *chosen,
                                       slr_error *err);
/* A Kafka training job whose options name a sync topic: one model shared
 * by the group (train_sync.c); slr_train_kafka hands over to it. */
slr_status slr_train_sync(const slr_train_options *opt, const struct slr_kafka_options *k,
                          slr_train_result *res, slr_error *err);

#endif
