/* kafka.h - training from Kafka topics, with exactly-once model state.
 *
 * slr_train_kafka() is a long-running librdkafka consumer that feeds every
 * message through the same pipeline as a file replay (train.h).  The
 * checkpoint is the source of truth: it stores, per topic-partition, the
 * offset of the next message to apply, in the same atomic write as the
 * model.  On every assignment each partition is positioned at that offset
 * (falling back to the group's committed offset, then to auto.offset.reset,
 * only for partitions the checkpoints have never seen); offsets are
 * committed to Kafka only after the checkpoint holding them is durable, so
 * lag tools see progress, but they are never what the model trusts.  A
 * message is applied whole or not at all, so the model reflects each
 * message exactly once across crashes, restarts, rebalances and broker
 * outages.  Offsets deleted by retention before they were consumed are
 * counted (slr_metrics.lost) and reported, never skipped silently.
 *
 * Each consumer in a group trains its own model on the partitions it is
 * assigned, unless the options name a sync topic: then the group holds one
 * model (docs/SYNC_PROTOCOL.md).  docs/KAFKA.md has the whole story. */
#ifndef STREAMLR_KAFKA_H
#define STREAMLR_KAFKA_H

#include "streamlr/export.h"
#include <stdbool.h>
#include <stdint.h>

#include "streamlr/error.h"
#include "streamlr/train.h"

SLR_BEGIN_DECLS

/* Called after each message has been applied to the model, in the order
 * applied (for auditing and tests). */
typedef void (*slr_kafka_applied_fn)(void *ctx, const char *topic, int32_t partition,
                                     int64_t offset);

typedef struct slr_kafka_options {
    const char *brokers;            /* bootstrap.servers; NULL: from config */
    const char *const *topics;      /* at least one */
    uint32_t n_topics;
    const char *group;              /* group.id (required: offsets are committed to it) */
    const char *const *config;      /* librdkafka properties "key=value", applied in order */
    uint32_t n_config;

    /* Static assignment instead of group rebalancing: consume these
     * partitions of every topic (all of them when n_partitions is 0). */
    bool assign;
    const int32_t *partitions;
    uint32_t n_partitions;

    bool exit_at_end;   /* stop once every assigned partition has reached its end */
    uint32_t batch;     /* messages per consume call; 0 = default (1000) */
    double close_timeout_seconds; /* bound on leaving the group at the end; 0 = 10 */

    slr_kafka_applied_fn applied; /* optional */
    void *applied_ctx;

    /* One model shared by the group (docs/SYNC_PROTOCOL.md): members learn
     * their partitions in rounds of sync_every offsets per partition and
     * merge every partition's delta through this topic (one partition).
     * NULL: each member trains its own model.  (Added last; the struct
     * carries no size, so a program built against an older kafka.h must be
     * rebuilt, as for any field added here.) */
    const char *sync_topic;
    int64_t sync_every; /* S; 0 = default (SLR_SYNC_EVERY_DEFAULT) */
    /* A snapshot of the model (sync_topic.h) every this many rounds, written
     * by the member holding partition 0 (and theta_0 by whoever starts on
     * an empty topic): what a new member or a scorer starts from, so the
     * topic can be given a retention.  0: none. */
    uint64_t sync_snapshot_every;
    /* Publish each round's deltas in a Kafka transaction with the source
     * offsets they consumed (docs/SYNC_PROTOCOL.md, "Transactions"):
     * defence in depth on a real cluster, not needed for exactly-once. */
    bool sync_transactions;
} slr_kafka_options;

#define SLR_SYNC_EVERY_DEFAULT 1000
#define SLR_SYNC_SNAPSHOT_EVERY_DEFAULT 100

void slr_kafka_options_init(slr_kafka_options *k);

/* Consume and learn until *opt->stop is set, opt->max_examples are learned,
 * or (exit_at_end) the assigned partitions are consumed; then write the
 * final checkpoint and model, commit, and leave the group.  opt->files must
 * be empty; opt->format is the payload format (msgpack: a message may hold
 * several examples; text formats: one record per line).  A Kafka job always
 * continues from the newest checkpoint in opt->checkpoint_dir when there is
 * one (opt->resume is implied).  Returns SLR_ERR_ARG for bad settings
 * (including librdkafka properties), SLR_ERR_KAFKA when the client fails
 * fatally. */
slr_status slr_train_kafka(const slr_train_options *opt, const slr_kafka_options *kopt,
                           slr_train_result *res, slr_error *err);

SLR_END_DECLS
#endif
