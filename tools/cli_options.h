/* cli_options.h - long-option codes shared by the subcommands, so that the
 * learning flags are parsed in one place (cli.c) for every command. */
#ifndef STREAMLR_TOOLS_CLI_OPTIONS_H
#define STREAMLR_TOOLS_CLI_OPTIONS_H

#include <getopt.h>

enum {
    OPT_SCHEDULE = 1000,
    OPT_POWER_T,
    OPT_INITIAL_T,
    OPT_ADAGRAD_DELTA,
    OPT_L1,
    OPT_L2,
    OPT_TG_PERIOD,
    OPT_TG_THRESHOLD,
    OPT_EAGER,
    OPT_OPTIMIZER,
    OPT_FTRL,
    OPT_FTRL_ALPHA,
    OPT_FTRL_BETA,
    OPT_DECAY,
    OPT_FORMAT,
    OPT_CHECKPOINT_DIR,
    OPT_CHECKPOINT_EVERY,
    OPT_CHECKPOINT_KEEP,
    OPT_RESUME,
    OPT_STRICT,
    OPT_DEAD_LETTER,
    OPT_MAX_FEATURES,
    OPT_MAX_RECORD,
    OPT_QUIET,
    OPT_THREADS,
    OPT_CHECKPOINT_MODE,
    OPT_HELP,
    OPT_AUC_WINDOW,
    OPT_METRICS,
    OPT_METRICS_INTERVAL,
    OPT_METRICS_PORT,
    OPT_METRICS_BIND,
    OPT_PROGRESS_STYLE,
    OPT_KEEP_NAMES,
    OPT_KEEP_NAMES_MAX,
    OPT_FOLLOW,
    OPT_FOLLOW_INTERVAL,
    OPT_BROKERS, /* the Kafka consumer flags (kafka_conf.h) */
    OPT_TOPIC,
    OPT_GROUP,
    OPT_KAFKA_CONFIG,
    OPT_EXIT_AT_END,
    OPT_PARTITIONS,
    OPT_LOSS_FUNCTION, /* VW's, as train and predict accept them */
    OPT_LINK,
    OPT_FIRST_COMMAND_SPECIFIC = 2000,
};

#define CLI_LEARNER_LONG_OPTIONS                                                \
    {"bits", required_argument, 0, 'b'}, {"quadratic", required_argument, 0, 'q'}, \
        {"learning-rate", required_argument, 0, 'l'},                           \
        {"schedule", required_argument, 0, OPT_SCHEDULE},                       \
        {"power-t", required_argument, 0, OPT_POWER_T},                         \
        {"initial-t", required_argument, 0, OPT_INITIAL_T},                     \
        {"adagrad-delta", required_argument, 0, OPT_ADAGRAD_DELTA},             \
        {"l1", required_argument, 0, OPT_L1}, {"l2", required_argument, 0, OPT_L2}, \
        {"tg-period", required_argument, 0, OPT_TG_PERIOD},                     \
        {"tg-threshold", required_argument, 0, OPT_TG_THRESHOLD},               \
        {"eager", no_argument, 0, OPT_EAGER},                                   \
        {"optimizer", required_argument, 0, OPT_OPTIMIZER},                     \
        {"ftrl-alpha", required_argument, 0, OPT_FTRL_ALPHA},                   \
        {"ftrl-beta", required_argument, 0, OPT_FTRL_BETA},                     \
        {"decay", required_argument, 0, OPT_DECAY},                             \
        /* VW's spellings of the same flags */                                  \
        {"ftrl", no_argument, 0, OPT_FTRL},                                     \
        {"ftrl_alpha", required_argument, 0, OPT_FTRL_ALPHA},                   \
        {"ftrl_beta", required_argument, 0, OPT_FTRL_BETA},                     \
        {"bit_precision", required_argument, 0, 'b'},                           \
        {"learning_rate", required_argument, 0, 'l'},                           \
        {"power_t", required_argument, 0, OPT_POWER_T},                         \
        {"initial_t", required_argument, 0, OPT_INITIAL_T}

/* VW's --loss_function logistic and --link logistic: what streamlr does */
#define CLI_VW_LOGISTIC_LONG_OPTIONS                                            \
    {"loss_function", required_argument, 0, OPT_LOSS_FUNCTION},                 \
        {"link", required_argument, 0, OPT_LINK}

#endif
