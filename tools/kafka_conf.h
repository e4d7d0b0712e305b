/* kafka_conf.h - librdkafka properties from the command line, the way kcat
 * takes them: -X key=value (repeatable) and --kafka-config FILE (a
 * properties file: key=value lines, # or ! comments), applied in command-line
 * order so that a later setting wins.  Shared by train, predict and produce. */
#ifndef STREAMLR_TOOLS_KAFKA_CONF_H
#define STREAMLR_TOOLS_KAFKA_CONF_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct cli_kafka_conf {
    char **kv; /* "key=value" */
    uint32_t n, cap;
} cli_kafka_conf;

/* Each prints "streamlr <cmd>: ..." and returns false on a bad entry. */
bool cli_kafka_conf_add(cli_kafka_conf *c, const char *cmd, const char *kv);
bool cli_kafka_conf_file(cli_kafka_conf *c, const char *cmd, const char *path);
/* Set every property on conf (the producer; train hands the list to the library). */
bool cli_kafka_conf_apply(const cli_kafka_conf *c, const char *cmd, rd_kafka_conf_t *conf);
void cli_kafka_conf_free(cli_kafka_conf *c);

#endif
