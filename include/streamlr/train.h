/* train.h - a training job: source -> decode -> example -> learner -> checkpoint.
 *
 * slr_train_files() replays files; the Kafka consumer (kafka.h) drives the
 * same per-record pipeline.  A job starts from scratch, from a model (-i), or
 * from the newest valid checkpoint in its directory (--resume), and writes
 * checkpoints every N examples and/or N seconds, plus a final one. */
#ifndef STREAMLR_TRAIN_H
#define STREAMLR_TRAIN_H

#include "streamlr/export.h"
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "streamlr/checkpoint.h"
#include "streamlr/dead_letter.h"
#include "streamlr/decode.h"
#include "streamlr/learner.h"
#include "streamlr/metrics.h"
#include "streamlr/names.h"

/* A job stops after the record in hand once its stop flag is nonzero.  It
 * is an atomic int, so that another thread (or a signal handler: a
 * lock-free atomic store is async-signal-safe) can set it while the job
 * reads it, without a data race. */
#ifdef __cplusplus
#include <atomic>
typedef std::atomic<int> slr_stop_flag; /* the same object as C11's atomic_int */
#else
#include <stdatomic.h>
typedef atomic_int slr_stop_flag;
#endif

SLR_BEGIN_DECLS

/* Which learner settings the user gave explicitly: a resumed job must agree
 * with its checkpoint on these, and -i applies them over the model's. */
enum {
    SLR_SET_BITS = 1u << 0,
    SLR_SET_QUADRATIC = 1u << 1,
    SLR_SET_SCHEDULE = 1u << 2,
    SLR_SET_ETA = 1u << 3,
    SLR_SET_POWER_T = 1u << 4,
    SLR_SET_INITIAL_T = 1u << 5,
    SLR_SET_ADAGRAD_DELTA = 1u << 6,
    SLR_SET_L1 = 1u << 7,
    SLR_SET_L2 = 1u << 8,
    SLR_SET_TG_PERIOD = 1u << 9,
    SLR_SET_TG_THRESHOLD = 1u << 10,
    SLR_SET_EAGER = 1u << 11,
    SLR_SET_IGNORE = 1u << 12, /* --ignore / --keep (hashing.ignored) */
    SLR_SET_NOCONSTANT = 1u << 13,
    SLR_SET_CUBIC = 1u << 14,
    SLR_SET_OPTIMIZER = 1u << 15,
    SLR_SET_FTRL_ALPHA = 1u << 16,
    SLR_SET_FTRL_BETA = 1u << 17,
    SLR_SET_DECAY = 1u << 18,
};

typedef void (*slr_log_fn)(void *ctx, const char *msg);
/* Called with each metrics report (every metrics_interval seconds and once
 * at the end, with r->final set), on the training thread. */
typedef void (*slr_report_fn)(void *ctx, const slr_metrics_report *r);

typedef enum slr_progress_style {
    SLR_PROGRESS_TABLE = 0, /* VW's table: a row at examples 1, 2, 4, 8, ...; for logs */
    SLR_PROGRESS_LINE = 1,  /* one status line redrawn in place (\r), for a terminal */
} slr_progress_style;

/* Progress is reported as numbers; drawing them (a status line, VW's
 * table, the summary) is the caller's business (tools/progress.c draws
 * them for the CLI).  Which events come depends on progress_style. */
typedef enum slr_progress_event {
    SLR_PROGRESS_STATUS,  /* LINE: every progress_seconds, and once at the end (report->final) */
    SLR_PROGRESS_ROW,     /* TABLE: at examples 1, 2, 4, 8, ... (VW's rows) */
    SLR_PROGRESS_KAFKA,   /* TABLE, Kafka: each partition's lag, as text */
    SLR_PROGRESS_SUMMARY, /* once, at the end of the job */
} slr_progress_event;

/* The numbers of the end-of-job summary. */
typedef struct slr_train_summary {
    bool stopped;                  /* ended by *stop rather than end of input */
    uint64_t examples_this_run;
    double seconds;                /* wall time of this run */
    double checkpoint_seconds;     /* of which writing checkpoints and models */
    double waiting_seconds;        /* of which waiting for the first record */
    uint64_t dead_letters;         /* given to the dead-letter sink this run */
    const char *dead_letter_sink;  /* its name; NULL without one */
    uint64_t pauses;               /* periodic checkpoints learning waited for */
    double pause_max, pause_total; /* seconds */
    bool checkpoint_fork;          /* periodic checkpoints written by a child process */
    const char *checkpoint;        /* newest checkpoint, "" if none */
    bool fork_given_up;            /* children could not keep up: the later periodic
                                      checkpoints were written in place */
} slr_train_summary;

typedef struct slr_progress {
    slr_progress_event event;
    const slr_metrics_report *report; /* STATUS, SUMMARY */
    /* ROW: VW's columns: the progressive loss overall and since the last row
     * (totals, at_last_row), and the example just learned */
    const slr_metrics *totals, *at_last_row;
    bool first_row; /* the first row of this run: time for the header */
    double label, prediction;
    uint32_t features; /* including the bias */
    const char *kafka_lag;             /* KAFKA: "topic[p] lag N ..." */
    const slr_train_summary *summary;  /* SUMMARY */
} slr_progress;

/* Called on the training thread; must not call back into the job. */
typedef void (*slr_progress_fn)(void *ctx, const slr_progress *p);

typedef struct slr_train_options {
    /* sizeof (slr_train_options) where the caller was compiled; set by
     * slr_train_options_init, which every caller must use.  New fields are
     * only ever appended, so a library newer than its caller reads the
     * fields the caller knows and gives the rest their defaults. */
    size_t size;
    slr_learner_config learner;
    uint32_t learner_set; /* SLR_SET_* bits */
    slr_format format;
    const char *const *files; /* replay input; "-" is stdin */
    uint32_t n_files;

    const char *model_in;  /* -i: start from this model */
    const char *model_out; /* -f: write the final model here */
    const char *checkpoint_dir;
    uint64_t checkpoint_every_examples; /* 0 = not by count */
    double checkpoint_every_seconds;    /* 0 = not by time */
    unsigned checkpoint_keep;           /* default 3 */
    bool checkpoint_fork; /* periodic checkpoints written by a fork()ed child from a
                           * copy-on-write snapshot, so learning pauses only for the
                           * fork; the final checkpoint and -f are written in place */
    /* Called on the job's thread when a checkpoint has become durable (file
     * and directory fsync'ed), with the state it records: act on a
     * checkpoint -- commit Kafka offsets -- from here, never earlier. */
    void (*checkpoint_done)(void *ctx, const char *path, const slr_job_state *st);
    void *checkpoint_done_ctx;
    bool resume;  /* continue from the newest checkpoint in checkpoint_dir, if any (then
                     model_in is ignored) */

    uint64_t max_examples; /* stop after this many examples learned in this run; 0 = all
                              (VW's --examples) */
    uint32_t threads; /* 2: decode and hash on a second thread while this one
                       * learns; 0 or 1: one thread.  Same results either way. */

    bool strict;           /* stop at the first bad record */
    slr_dead_letter_sink *dead_letter; /* keep rejected records here; NULL = count only */
    uint32_t max_features; /* per example, after -q; 0 = default */
    size_t max_record;     /* bytes; 0 = default */

    slr_progress_fn progress; /* progress and the summary as numbers; NULL = none */
    void *progress_ctx;
    slr_progress_style progress_style;
    double progress_seconds; /* LINE: redraw at most this often (default 0.5) */
    uint64_t progress_add;   /* TABLE: a row every this many examples (VW's --progress N) */
    double progress_factor;  /* TABLE: else at examples 1, f, f^2, ... (VW's --progress F;
                                0 = 2) */

    /* Online metrics (metrics.h) */
    uint32_t auc_window;     /* N of the sliding-window metrics (default 10000) */
    FILE *metrics_out;       /* JSON lines, one per metrics_interval and a final one */
    double metrics_interval; /* seconds (default 10) */
    int metrics_port;        /* serve Prometheus text on this port; -1 = no (default);
                                0 = any free port (logged) */
    const char *metrics_bind; /* address to bind; NULL = 127.0.0.1 */
    slr_report_fn report;     /* also hand each report to this callback */
    void *report_ctx;

    /* VW habits */
    FILE *predictions; /* -p: one prediction per example, in input order; a bad
                          record gets "nan"; unlabelled examples are scored too */
    bool test_only;    /* -t: score and report, learn nothing */
    uint32_t passes;   /* --passes: replay the files this many times (0 or 1: once);
                          files only, no checkpoint directory */
    uint32_t holdout_period; /* with passes > 1, the Nth, 2Nth, ... example of every pass
                                is held out: scored, never learned, its loss reported
                                (VW's holdout; 0 = --holdout_off) */
    bool keep_names;   /* --keep-names: record feature names (names.h) */
    FILE *audit;       /* VW's --audit: per example, its prediction and every feature's
                          name:index:value:weight before the update (needs keep_names) */
    uint64_t keep_names_max; /* bound on names kept (default SLR_NAMES_MAX_DEFAULT) */

    slr_log_fn log; /* warnings and bad-record reports; NULL = silent.  Notes that
                       are not warnings (the format told from the content) come
                       only when progress is set too */
    void *log_ctx;
    slr_stop_flag *stop; /* when set, stop after the record in hand; NULL = never */

    /* appended (see size) */
    bool format_auto; /* the user gave no format: tell it from the first bytes of input
                       * (slr_format_detect), `format` when they do not say; a resumed
                       * run keeps its checkpoint's.  The choice is logged and
                       * returned in slr_train_result.format. */
    bool start_over; /* without resume, a checkpoint_dir that holds checkpoints is
                      * refused (they are another run's work); this starts a new
                      * run there on purpose, its checkpoints replacing the old */
} slr_train_options;

/* Defaults for every field, and opt->size. */
void slr_train_options_init(slr_train_options *opt);

typedef struct slr_train_result {
    slr_metrics metrics;      /* progressive metrics, including resumed history */
    uint64_t records;         /* records consumed in this run */
    uint64_t examples;        /* examples learned in this run */
    double seconds;           /* wall time of this run */
    bool stopped;             /* ended by *stop rather than end of input */
    uint64_t checkpoints;     /* checkpoints written in this run */
    double pause_max;         /* longest time learning waited for a periodic checkpoint (s) */
    double pause_mean;        /* mean of those waits (s), 0 if none */
    uint64_t dead_letters;    /* records given to the dead-letter sink in this run */
    char checkpoint[4096];    /* newest checkpoint written or loaded, "" if none */
    slr_metrics_report report; /* the final metrics report */
    uint64_t holdout_examples; /* passes > 1: the held-out examples of the last pass ... */
    double holdout_weight;     /* ... their importance weight ... */
    double holdout_loss;       /* ... and their mean log loss (0 if none) */
    slr_format format;         /* the input format read (detected, with format_auto) */
} slr_train_result;

slr_status slr_train_files(const slr_train_options *opt, slr_train_result *res, slr_error *err);

SLR_END_DECLS
#endif
