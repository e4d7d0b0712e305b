/* kafka_job.c - the Kafka source seen from the jobs: their options
 * (kafka.h) and job state (checkpoint.h) translated into the source's own
 * types, so that the source layer knows nothing of the layers above it;
 * and the input format told by the first messages, for both Kafka
 * training loops (train_kafka.c, train_sync.c). */
#include <librdkafka/rdkafka.h>

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

#define DETECT_BYTES (64u << 10) /* what format detection looks at */

/* --format not given: the first messages with data tell (opt->format when
 * they do not), before anything is decoded in the format assumed so far.
 * Messages are joined one per line, as text records seldom end in '\n'. */
slr_status slr_kafka_job_detect_format(slr_job *job, slr_train_options *opt,
                                       rd_kafka_message_t **msgs, size_t n, bool *chosen,
                                       slr_error *err)
{
    slr_buf sample = {0};
    const char *from = NULL;
    for (size_t i = 0; i < n && sample.len < DETECT_BYTES; i++) {
        const rd_kafka_message_t *m = msgs[i];
        if (m->err || !m->len)
            continue;
        if (!from)
            from = rd_kafka_topic_name(m->rkt);
        if ((sample.len && slr_buf_append(&sample, "\n", 1, err) != SLR_OK) ||
            slr_buf_append(&sample, m->payload, m->len, err) != SLR_OK) {
            slr_buf_free(&sample);
            return SLR_ERR_NOMEM;
        }
    }
    if (!from)
        return SLR_OK; /* no data yet */
    *chosen = true;
    slr_format f;
    bool told = slr_format_detect(sample.data, sample.len, &f);
    slr_buf_free(&sample);
    if (told)
        opt->format = f;
    if (!told || opt->progress) /* as for files: news to --quiet only when a guess */
        slr_job_log(job, "reading --format %s (%s the first messages of %s)",
                    slr_format_name(opt->format), told ? "detected from" : "not told by", from);
    return slr_job_set_format(job, err);
}

