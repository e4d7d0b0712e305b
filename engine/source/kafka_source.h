/* kafka_source.h - the librdkafka consumer behind slr_train_kafka (kafka.h).
 *
 * The source owns the client and everything Kafka-specific: configuration,
 * where each partition starts (checkpoint, else committed offset, else
 * auto.offset.reset), rebalances, offset resets, end-of-partition, commits,
 * lag.  It hands the training loop messages in the order librdkafka
 * delivers them and decides for each one whether it is to be applied; the
 * loop decodes and learns, then tells the source it was applied.  Positions
 * ("next offset to apply") live here and are copied into the positions table just
 * before a checkpoint, so a checkpoint and the commit after it carry the
 * same offsets.  The source knows only its own types: what to consume
 * (slr_kafka_source_config) and where positions go (slr_kafka_positions);
 * the jobs translate their options and state (job.h, kafka_job.c).
 *
 * Everything runs on the caller's thread: librdkafka's callbacks (rebalance,
 * statistics, errors, logs, commit results) are served from inside
 * slr_kafka_source_consume(). */
#ifndef STREAMLR_KAFKA_SOURCE_H
#define STREAMLR_KAFKA_SOURCE_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamlr/error.h"
#include "streamlr/position.h"

typedef struct slr_kafka_partition {
    char *topic;
    int32_t partition;
    char *name;                  /* "topic[partition]", for positions in reports */
    const rd_kafka_topic_t *rkt; /* matched from the first message; NULL until then */
    int64_t next;                /* next offset to apply; -1 while unknown */
    int64_t reset_from;          /* >= 0: the broker no longer had this offset; the next
                                    offset seen tells how many were lost */
    int64_t end;                 /* log end offset from the latest statistics; -1 unknown */
    bool at_end;                 /* reached the end, nothing applied since */
} slr_kafka_partition;

typedef struct slr_kafka_hooks {
    void *ctx;
    void (*log)(void *ctx, const char *msg);
    /* Partitions are about to be released (rebalance, or leaving): make what
     * has been learned durable.  Returns true if their positions may now be
     * committed. */
    bool (*release)(void *ctx);
} slr_kafka_hooks;

typedef struct slr_kafka_source slr_kafka_source;

/* What to consume and how to reach it (the job's slr_kafka_options). */
typedef struct slr_kafka_source_config {
    const char *brokers;       /* bootstrap.servers; NULL: from config */
    const char *group;         /* group.id */
    const char *const *topics; /* at least one */
    uint32_t n_topics;
    const char *const *config; /* librdkafka properties "key=value", applied in order */
    uint32_t n_config;
    bool assign;               /* static assignment instead of group rebalancing: */
    const int32_t *partitions; /* these partitions of every topic (all when none) */
    uint32_t n_partitions;
} slr_kafka_source_config;

/* Where positions live, owned by the caller and outliving the source: the
 * table of next offsets (position.h) partitions start from and receive
 * (note_positions), and the count of offsets lost to retention. */
typedef struct slr_kafka_positions {
    slr_kafka_offset **offsets;
    uint32_t *n;
    uint64_t *lost;
} slr_kafka_positions;

/* rd_kafka_conf_set with its complaint as an slr_error (also for the
 * producers: dead_letter_kafka.c, predict_kafka.c). */
slr_status slr_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                              slr_error *err);

/* Split a user's "key=value" (-X, --kafka-config) into key (a buffer of
 * key_size bytes) and *value (pointing into kv). */
slr_status slr_kafka_property_split(const char *kv, char *key, size_t key_size, const char **value,
                                    slr_error *err);

/* slr_kafka_conf_set of one "key=value". */
slr_status slr_kafka_conf_set_property(rd_kafka_conf_t *conf, const char *kv, slr_error *err);

/* Create the consumer, subscribe (or assign), with positions taken from
 * pos (the loaded checkpoint's), which receives positions (note_positions)
 * and lost-offset counts.  want_stats: turn on librdkafka statistics for
 * the lag report unless the configuration sets statistics.interval.ms
 * itself.  (The jobs call it as slr_kafka_source_open, job.h.) */
slr_status slr_kafka_source_start(slr_kafka_source **out, const slr_kafka_source_config *k,
                                  bool want_stats, const slr_kafka_positions *pos,
                                  const slr_kafka_hooks *hooks, slr_error *err);

/* Up to max messages and events, in delivery order (0 after timeout_ms
 * without any).  Each must be passed to slr_kafka_source_take() in order
 * and destroyed with rd_kafka_message_destroy(). */
size_t slr_kafka_source_consume(slr_kafka_source *src, rd_kafka_message_t **msgs, size_t max,
                                int timeout_ms);

typedef enum slr_kafka_take {
    SLR_KAFKA_APPLY,   /* a message to apply; *p is its partition */
    SLR_KAFKA_SKIP,    /* nothing to do (already applied, not ours any more, an event) */
    SLR_KAFKA_MOVED,   /* an event moved a position without a message (end of partition
                          seen first, retention loss measured): checkpoint it */
    SLR_KAFKA_FAILED,  /* the job cannot go on; err says why */
} slr_kafka_take;

slr_kafka_take slr_kafka_source_take(slr_kafka_source *src, const rd_kafka_message_t *m,
                                     slr_kafka_partition **p, slr_error *err);

/* The message at offset of p has been applied. */
static inline void slr_kafka_source_applied(slr_kafka_partition *p, int64_t offset)
{
    p->next = offset + 1;
    p->at_end = false;
}

/* Copy the assigned partitions' positions into the positions table. */
slr_status slr_kafka_source_note_positions(slr_kafka_source *src, slr_error *err);

/* Commit the n offsets of tab (a durable checkpoint's, or what a scoring
 * job's outputs acknowledge), for the partitions still assigned; waiting as
 * slr_kafka_source_commit does.  For checkpoints written in the background,
 * which become durable after the source has moved on, and for offsets that
 * trail the source's positions. */
void slr_kafka_source_commit_offsets(slr_kafka_source *src, const slr_kafka_offset *tab,
                                     uint32_t n, double wait_seconds);

/* Commit the assigned partitions' positions (call right after the checkpoint
 * holding them is durable).  wait_seconds > 0 waits that long at most for
 * the broker's answer; 0 commits asynchronously.  Failures are logged; the
 * next commit carries the positions again. */
void slr_kafka_source_commit(slr_kafka_source *src, double wait_seconds);

/* For a loop that reads its partitions in slices (train_sync.c): */
/* the partitions of the topic (from the cluster's metadata); */
slr_status slr_kafka_source_partition_count(slr_kafka_source *src, const char *topic, int32_t *n,
                                            slr_error *err);
/* the current assignment (valid until the next consume call); */
size_t slr_kafka_source_assignment(slr_kafka_source *src, slr_kafka_partition *const **parts);
/* stop (or restart) fetching p, e.g. once it was read past its slice; */
void slr_kafka_source_pause(slr_kafka_source *src, slr_kafka_partition *p, bool pause);
/* fetch p again from its position p->next (set by the caller), resumed:
 * what was fetched beyond it is dropped. */
void slr_kafka_source_seek(slr_kafka_source *src, slr_kafka_partition *p);

/* The group's metadata as the consumer knows it now (group, generation,
 * member id), serialised (rd_kafka_consumer_group_metadata_write; release
 * *buf with rd_kafka_mem_free(NULL, *buf)), for offsets sent to a
 * producer's transaction. */
slr_status slr_kafka_source_group_metadata(slr_kafka_source *src, void **buf, size_t *len,
                                           slr_error *err);

/* The last commit was refused (e.g. during a rebalance) or failed. */
bool slr_kafka_source_commit_refused(const slr_kafka_source *src);

/* Every assigned partition (at least one) has reached its end. */
bool slr_kafka_source_at_end(const slr_kafka_source *src);
/* A group member with no partition (more members than partitions): has the
 * group committed every partition of the subscribed topics to its end?
 * The first call logs why such a member waits; the broker is asked at most
 * once a second (bounded waits).  False for a member with partitions. */
bool slr_kafka_source_group_at_end(slr_kafka_source *src);

/* The job cannot go on (a fatal client error, e.g. authentication, or a
 * partition that cannot be started): fills err. */
bool slr_kafka_source_failed(const slr_kafka_source *src, slr_error *err);

/* Messages not yet applied, summed over the assigned partitions whose end
 * offset the statistics have given; -1 if none has. */
int64_t slr_kafka_source_total_lag(const slr_kafka_source *src);

/* If statistics arrived since the last call: a one-line lag report
 * ("lag clicks[0] 12, clicks[1] 0 (total 12)") into buf. */
bool slr_kafka_source_lag(slr_kafka_source *src, char *buf, size_t size);

typedef enum slr_kafka_error_kind {
    SLR_KAFKA_ERROR_FATAL,  /* the client cannot go on; *fatal says why */
    SLR_KAFKA_ERROR_OUTAGE, /* every broker is down (the client reconnects) */
    SLR_KAFKA_ERROR_QUIET,  /* a connection failure, also reported as a log line */
    SLR_KAFKA_ERROR_REPORT, /* anything else: worth a log line */
} slr_kafka_error_kind;

/* What an error callback's err means to a job (consumer or producer). */
slr_kafka_error_kind slr_kafka_error_classify(rd_kafka_t *rk, int err, char *fatal, size_t size);

/* Leave the group (revocation runs the release hook) within timeout_seconds,
 * then free everything.  NULL is a no-op. */
void slr_kafka_source_close(slr_kafka_source *src, double timeout_seconds);

#endif
