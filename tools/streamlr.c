/* streamlr.c - the command-line entry point: dispatch to a subcommand. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "commands.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"train", slr_cmd_train, "learn from files or a Kafka topic, with checkpoints"},
    {"predict", slr_cmd_predict, "score examples with a model; logloss and AUC if labelled"},
    {"inspect", slr_cmd_inspect, "show a model's settings, progress and top weights"},
    {"export", slr_cmd_export, "print every nonzero weight (text or JSON, with names if kept)"},
    {"convert", slr_cmd_convert, "re-encode examples between input formats"},
    {"produce", slr_cmd_produce, "send examples from files to a Kafka topic"},
    {"broker", slr_cmd_broker, "run an embedded Kafka broker (tests, quickstart; not production)"},
    {"plot", slr_cmd_plot, "draw learning curves (PNG or SVG) from train --metrics output"},
    {"synth", slr_cmd_synth, "write a deterministic synthetic CTR stream (for benchmarks)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: streamlr <command> [options]   (streamlr <command> --help for details)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("streamlr %s\n", PACKAGE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "streamlr: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
