/* kafka_job.c - the Kafka source seen from the jobs: their options
 * (kafka.h) and job state (checkpoint.h) translated into the source's own
 * types, so that the source layer knows nothing of the layers above it. */
#include "job.h"
#include "source/kafka_source.h"
#include "streamlr/kafka.h"

slr_status slr_kafka_source_open(slr_kafka_source **out, const slr_kafka_options *k,
                                 bool want_stats, slr_job_state *state,
                                 const slr_kafka_hooks *hooks, slr_error *err)
{
    slr_kafka_source_config c = {
        .brokers = k->brokers,
        .group = k->group,
        .topics = k->topics,
        .n_topics = k->n_topics,
        .config = k->config,
        .n_config = k->n_config,
        .assign = k->assign,
        .partitions = k->partitions,
        .n_partitions = k->n_partitions,
    };
    slr_kafka_positions pos = {&state->kafka, &state->n_kafka, &state->metrics.lost};
    return slr_kafka_source_start(out, &c, want_stats, &pos, hooks, err);
}

void slr_kafka_source_commit_state(slr_kafka_source *src, const slr_job_state *st,
                                   double wait_seconds)
{
    slr_kafka_source_commit_offsets(src, st->kafka, st->n_kafka, wait_seconds);
}
