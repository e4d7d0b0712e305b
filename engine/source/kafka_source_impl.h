/* kafka_source_impl.h - what the files of the Kafka source share behind
 * kafka_source.h: the consumer's state, its partition table
 * (kafka_partitions.c) and its configuration (kafka_conf.c). */
#ifndef STREAMLR_KAFKA_SOURCE_IMPL_H
#define STREAMLR_KAFKA_SOURCE_IMPL_H

#include "kafka_source.h"

typedef enum reset_policy { RESET_EARLIEST, RESET_LATEST, RESET_ERROR } reset_policy;

struct slr_kafka_source {
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue; /* the consumer queue: messages, events, callbacks */
    slr_kafka_hooks hooks;
    slr_kafka_positions pos; /* the caller's offsets table and lost count */
    reset_policy policy;
    bool assign_mode;        /* static assignment, no group rebalancing */
    bool cooperative;        /* the group uses the cooperative rebalance protocol */
    bool uncommitted;        /* positions moved since the last commit */
    bool stats_fresh;
    bool outage;             /* all brokers reported down */
    unsigned long long commits_failing; /* failed commits since the last success */
    /* the offsets of the last commit the broker refused (say, during a
     * rebalance), made again at retry_at unless a newer commit or a
     * rebalance supersedes them: otherwise a job with nothing new to commit
     * would leave the group behind for good */
    rd_kafka_topic_partition_list_t *refused;
    double retry_at;
    bool commit_skip_said;   /* "not committed during the outage" was logged */
    char *failure;           /* why the job cannot go on, if it cannot */

    bool joined;             /* the group has given this member an assignment (maybe empty) */
    double group_check_at;   /* a member without partitions asks the group's progress then */
    bool idle_said;          /* why such a member waits was logged */

    slr_kafka_partition **parts; /* the current assignment */
    size_t n_parts, cap_parts;
    slr_kafka_partition *last;   /* lookup cache: messages come in runs */
};

/* The consumer's configuration from k (properties, forced settings, the
 * user's -X in order); the user's auto.offset.reset goes to *policy, not to
 * librdkafka (see kafka_source.c).  The callbacks are the consumer's to set. */
slr_status slr_kafka_consumer_conf(const slr_kafka_source_config *k, bool want_stats,
                                   reset_policy *policy, rd_kafka_conf_t **out, slr_error *err);

/* The partition table (the current assignment), in kafka_partitions.c. */
slr_kafka_partition *slr_kafka_partition_find(slr_kafka_source *src, const rd_kafka_message_t *m);
slr_kafka_partition *slr_kafka_partition_add(slr_kafka_source *src, const char *topic,
                                             int32_t partition, int64_t next);
void slr_kafka_partition_remove(slr_kafka_source *src, const char *topic, int32_t partition);
void slr_kafka_partitions_clear(slr_kafka_source *src);

#endif
