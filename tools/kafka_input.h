/* kafka_input.h - the consumer flags train and predict share (--brokers,
 * --topic, --group, -X, --kafka-config, --partitions, --exit-at-end), parsed
 * in one place into slr_kafka_options. */
#ifndef STREAMLR_TOOLS_KAFKA_INPUT_H
#define STREAMLR_TOOLS_KAFKA_INPUT_H

#include <stdbool.h>
#include <stdint.h>

#include "cli_options.h"
#include "kafka_conf.h"
#include "streamlr/kafka.h"

#define CLI_KAFKA_LONG_OPTIONS                                                  \
    {"brokers", required_argument, 0, OPT_BROKERS},                             \
        {"topic", required_argument, 0, OPT_TOPIC},                             \
        {"group", required_argument, 0, OPT_GROUP},                             \
        {"kafka-config", required_argument, 0, OPT_KAFKA_CONFIG},               \
        {"partitions", required_argument, 0, OPT_PARTITIONS},                   \
        {"exit-at-end", no_argument, 0, OPT_EXIT_AT_END}

typedef struct cli_kafka_input {
    slr_kafka_options k; /* topics, config and partitions point into the fields below */
    cli_kafka_conf conf;
    char **topics;
    uint32_t n_topics;
    int32_t *partitions;
    bool flag;           /* a consumer-only flag (not --brokers or --topic) was given */
} cli_kafka_input;

void cli_kafka_input_init(cli_kafka_input *in);
/* 1 if opt (a getopt code; -X is 'X') was a Kafka flag and was handled, 0 if
 * not, -1 on a bad value (reported as "streamlr <cmd>: ..."). */
int cli_kafka_option(const char *cmd, int opt, const char *arg, cli_kafka_input *in);
/* --brokers or --topic was given. */
bool cli_kafka_input_given(const cli_kafka_input *in);
void cli_kafka_input_free(cli_kafka_input *in);

#endif
