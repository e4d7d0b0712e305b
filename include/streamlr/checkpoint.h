/* checkpoint.h - the durable state of a job: model plus where its input stands.
 *
 * A checkpoint holds everything needed to continue exactly: the learner
 * (hyperparameters, hashing, step counter, every nonzero weight with its
 * per-weight state, the lazy-penalty state), the progressive metrics, and the
 * source position that state reflects (file + byte offset + records
 * consumed, or Kafka offsets).  Model files (-f/-i) are checkpoints too.
 *
 * On disk: the 8-byte magic "STREAMLR", a msgpack map, and an XXH3-64
 * checksum of everything before it (8 bytes, big-endian).  Writes are atomic:
 * a temporary file created O_EXCL|O_NOFOLLOW with mode 0600, fsync, rename,
 * fsync of the directory.  docs/CHECKPOINT.md has the layout. */
#ifndef STREAMLR_CHECKPOINT_H
#define STREAMLR_CHECKPOINT_H

#include "streamlr/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamlr/error.h"
#include "streamlr/learner.h"
#include "streamlr/sync_topic.h"
#include "streamlr/metrics.h"
#include "streamlr/names.h"
#include "streamlr/position.h"

SLR_BEGIN_DECLS

#define SLR_CHECKPOINT_FORMAT_VERSION 2
#define SLR_CHECKPOINT_KEEP_DEFAULT 3

/* Where the dead-letter sink stood when the checkpoint was taken: a
 * resumed run forgets what the sink received after it (dead_letter.h). */
typedef struct slr_dead_letter_mark {
    char *kind; /* "file", "kafka"; NULL when the run had no sink */
    char *name; /* the file's path, or the topic */
    uint64_t position;
} slr_dead_letter_mark;

/* Where a member of a group sharing a model (--sync-topic) stood: the
 * learner is theta_round, the group's model after rounds 0..round-1, and
 * the member reads the sync topic on from `position`.  The positions table
 * holds round*S per source partition (the start of the next round). */
typedef struct slr_sync_mark {
    char *topic;      /* the sync topic; NULL when the job shares no model */
    int64_t slice;    /* S (--sync-every): offsets per partition and round */
    uint64_t round;   /* the next round to learn */
    int64_t position; /* the sync topic offset after the last round merged */
    unsigned char *ledger; /* the source ranges in the model (slr_sync_ledger_encode) */
    size_t ledger_len;
} slr_sync_mark;

/* Everything in a checkpoint besides the learner.  Strings and the window,
 * histogram and names objects are owned (slr_job_state_free frees them). */
typedef struct slr_job_state {
    slr_source_kind source;
    char *format; /* input format name */
    char **files; /* replay: the input files, in order */
    uint32_t n_files;
    slr_file_position file;
    slr_kafka_offset *kafka;
    uint32_t n_kafka;
    slr_metrics metrics;
    slr_dead_letter_mark dead_letter;
    slr_auc_window *window;       /* sliding-window metrics; NULL = none kept */
    slr_auc_histogram *histogram; /* cumulative AUC; NULL = none kept */
    slr_names *names;             /* --keep-names; NULL = none kept */
    uint64_t sequence; /* checkpoint number within its directory */
    double created;    /* unix time of writing */
    slr_sync_mark sync; /* absent (topic NULL) in checkpoints of jobs sharing no model */
} slr_job_state;

void slr_job_state_init(slr_job_state *st);
void slr_job_state_free(slr_job_state *st);
/* A deep copy into dst (initialised or freed before) of the position,
 * offsets, totals and sequence -- not of the window, histogram and names,
 * which stay NULL in dst; on failure dst holds a partial copy to free. */
slr_status slr_job_state_copy(slr_job_state *dst, const slr_job_state *src, slr_error *err);
slr_status slr_job_state_set_files(slr_job_state *st, const char *const *files, uint32_t n,
                                   slr_error *err);
/* Set the sync mark (copies topic and ledger). */
slr_status slr_job_state_set_sync(slr_job_state *st, const char *topic, int64_t slice,
                                  uint64_t round, int64_t position, const unsigned char *ledger,
                                  size_t ledger_len, slr_error *err);
/* Set (or add) the next offset of one topic-partition. */
slr_status slr_job_state_set_kafka_offset(slr_job_state *st, const char *topic, int32_t partition,
                                          int64_t offset, slr_error *err);
/* The stored offset for topic-partition, or -1 if the state has never seen it. */
int64_t slr_job_state_kafka_offset(const slr_job_state *st, const char *topic, int32_t partition);

/* Write a checkpoint atomically to `path`. */
slr_status slr_checkpoint_write(const char *path, const slr_learner *l, const slr_job_state *st,
                                slr_error *err);

/* Read and verify a checkpoint; on success *out is a new learner and st (which
 * must be initialised) is filled. */
slr_status slr_checkpoint_read(const char *path, slr_learner **out, slr_job_state *st,
                               slr_error *err);
/* The same for a checkpoint held in memory (data[0, len), the whole file);
 * name is used in messages. */
slr_status slr_checkpoint_decode(const char *data, size_t len, const char *name,
                                 slr_learner **out, slr_job_state *st, slr_error *err);

/* ------------------------------------------------------------ directories */

/* Messages about checkpoints that were skipped (corrupt, unreadable). */
typedef void (*slr_warn_fn)(void *ctx, const char *msg);

/* Write the next checkpoint in `dir` (created if missing, mode 0700) as
 * ckpt-<sequence>.slr and remove all but the newest `keep`.  st->sequence is
 * set to the number used.  `written` (if non-NULL, PATH_MAX bytes) receives
 * the path. */
slr_status slr_checkpoint_dir_save(const char *dir, const slr_learner *l, slr_job_state *st,
                                   unsigned keep, char *written, slr_error *err);

/* The same save written by a fork()ed child from a copy-on-write snapshot
 * of this process, so that the caller can go on (learning) at once: it pays
 * for the fork, and later for the pages it writes to while the child runs.
 * The child only writes, fsyncs, renames, fsyncs the directory and _exits
 * -- no allocator, no lock -- so it is safe in a process with other threads
 * (librdkafka's).  The checkpoint is durable only once
 * slr_checkpoint_child_wait() reports success: until then do not act on it
 * (e.g. commit Kafka offsets).  st->sequence is the one the child writes.
 * On an error (fork failed, ...) nothing is running and st is as before;
 * the caller may then save synchronously. */
typedef struct slr_checkpoint_child slr_checkpoint_child;
slr_status slr_checkpoint_dir_fork(const char *dir, const slr_learner *l, slr_job_state *st,
                                   unsigned keep, slr_checkpoint_child **out, slr_error *err);

/* Has the child finished?  With `block`, wait until it has.  When *done:
 * the result is the child's (SLR_OK: durable; `written`, if non-NULL and
 * PATH_MAX bytes, gets the path; older checkpoints beyond `keep` are
 * removed) and c is freed.  While not done, returns SLR_OK. */
slr_status slr_checkpoint_child_wait(slr_checkpoint_child *c, bool block, bool *done,
                                     char *written, slr_error *err);
/* The sequence number the child is writing. */
uint64_t slr_checkpoint_child_sequence(const slr_checkpoint_child *c);

/* Load the newest valid checkpoint in `dir`, falling back to older ones when
 * the newest is corrupt (each skip is reported through warn).  Returns
 * SLR_ERR_NOT_FOUND if the directory holds no checkpoint, SLR_ERR_CORRUPT if
 * none is valid. */
slr_status slr_checkpoint_dir_load(const char *dir, slr_learner **out, slr_job_state *st,
                                   char *loaded, slr_warn_fn warn, void *warn_ctx,
                                   slr_error *err);

/* The sequence number of the newest checkpoint file in `dir` (without
 * reading it); SLR_ERR_NOT_FOUND if there is none. */
slr_status slr_checkpoint_dir_newest(const char *dir, uint64_t *sequence, slr_error *err);

/* ------------------------------------------------------------ following */

/* The newest model in a checkpoint directory that a training job keeps
 * writing, for scoring with `predict --follow DIR`: open loads the newest
 * valid checkpoint; refresh switches to a newer one when there is one.  The
 * learner is synced (every owed penalty settled) so scoring only reads it. */
typedef struct slr_follower slr_follower;

slr_status slr_follower_open(slr_follower **out, const char *dir, slr_warn_fn warn,
                             void *warn_ctx, slr_error *err);
void slr_follower_close(slr_follower *f);
slr_learner *slr_follower_learner(const slr_follower *f);
/* Path and job state of the checkpoint in use. */
const char *slr_follower_path(const slr_follower *f);
const slr_job_state *slr_follower_state(const slr_follower *f);

/* Switch to a newer model if there is one: returns true, and the previous
 * learner (and anything pointing into it, such as an slr_example's hashing)
 * is gone.  Without a loader thread it looks in the directory and loads a
 * newer checkpoint in place, which takes as long as reading it (a tenth of
 * a second or more for a -b 24 model).  With one (slr_follower_start) it
 * never waits: it takes the model the thread has loaded, if any (a pointer
 * swap), and the thread frees the previous one.  A newer checkpoint that
 * fails to load is reported through warn once and the current model is
 * kept. */
bool slr_follower_refresh(slr_follower *f);

/* The same over a group's sync topic (`predict --follow-topic`,
 * slr_sync_follower of sync_topic.h): open loads the newest snapshot and
 * the rounds after it (within timeout_ms); refresh applies the rounds
 * completed since (with the thread: swaps in the model the thread has
 * merged and copied; without: merges and copies in place, reading for
 * ~100 ms and then copying the whole model).  A broken topic is reported
 * through warn, once per cause, and the model kept.  The path is
 * "sync:<topic>@<round>/<offset>", the state's sequence the round, its
 * examples the group's step. */
slr_status slr_follower_open_topic(slr_follower **out, const slr_sync_topic_config *cfg,
                                   int timeout_ms, slr_warn_fn warn, void *warn_ctx,
                                   slr_error *err);
/* What scored a message, for a header or a log line: the checkpoint's file
 * name, or the sync topic position (the path). */
const char *slr_follower_name(const slr_follower *f);

/* Look for newer checkpoints (or a sync topic's rounds) every
 * interval_seconds (0 = 1) on a thread of the follower's own, and load
 * (merge) and sync them there, so that switching (slr_follower_refresh)
 * never holds scoring up.  warn may then be called from that thread.
 * Calling it again does nothing; slr_follower_close stops the thread. */
slr_status slr_follower_start(slr_follower *f, double interval_seconds, slr_error *err);

SLR_END_DECLS
#endif
