/* cmd_train.c - `streamlr train`: replay files (or, with --brokers, consume
 * Kafka) into the learner, with progress and checkpoints. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "progress.h"
#include "cli_options.h"
#include "commands.h"
#include "kafka_input.h"
#include "streamlr/kafka.h"
#include "streamlr/train.h"

enum {
    OPT_EXAMPLES = OPT_FIRST_COMMAND_SPECIFIC,
    OPT_DEAD_LETTER_TOPIC,
    OPT_START_OVER,
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: streamlr train --data FILE|- [--data FILE]... [--format F] [options]\n"
            "       streamlr train --brokers HOST:PORT[,..] --topic T[,T2..] --group G\n"
            "                      [-X key=value]... [--kafka-config FILE] [--exit-at-end] [options]\n"
            "\n"
            "Learn a logistic regression model online, one example at a time: each example is\n"
            "scored before it is learned from, so the average loss printed is an honest\n"
            "out-of-sample estimate (progressive validation).\n"
            "\n"
            "Input from files (an event log to replay):\n"
            "  -d, --data FILE          input file, - for stdin; repeatable, read in order\n"
            "                           (bare FILE arguments are taken as --data too)\n"
            "      --format F           msgpack | vw | libsvm | criteo (default: told from\n"
            "                           the first bytes, else from the file extension, else\n"
            "                           vw; msgpack for Kafka); see docs/FORMAT.md\n"
            "      --strict             stop at the first bad record instead of skipping it\n"
            "      --dead-letter FILE   append every record that cannot be learned from (bad\n"
            "                           or unlabelled) to FILE as a JSON line with its exact\n"
            "                           bytes, position and reason (docs/DEAD_LETTERS.md)\n"
            "      --dead-letter-topic T  produce them to Kafka topic T instead (--brokers,\n"
            "                           -X, --kafka-config as for the consumer; also when\n"
            "                           training from files): at least once, keyed by the\n"
            "                           record's position \"source@offset\"\n"
            "      --max-features N     reject examples with more than N features after -q\n"
            "                           (default 65536)\n"
            "      --max-record BYTES   reject records longer than this (default 16 MiB)\n"
            "      --threads N          2: decode and hash on a second thread while the\n"
            "                           first learns; 1: one thread (default 2 when the\n"
            "                           machine has 2 or more cores).  Same results; 1 can\n"
            "                           be faster when other work holds the second core\n"
            "      --examples N         stop after N examples learned in this run\n"
            "\n"
            "Input from Kafka (a long-running consumer; docs/KAFKA.md):\n"
            "      --brokers LIST       bootstrap servers, HOST:PORT[,HOST:PORT..]\n"
            "      --topic T[,T2..]     topics to consume (repeatable)\n"
            "      --group G            consumer group: partitions are shared among its\n"
            "                           members (each trains its own model on its own\n"
            "                           partitions) and offsets are committed to it\n"
            "  -X key=value             any librdkafka property (repeatable), as in kcat:\n"
            "                           -X security.protocol=ssl, -X fetch.wait.max.ms=10\n"
            "      --kafka-config FILE  librdkafka properties file (key=value lines)\n"
            "      --partitions all|N,..  consume these partitions of each topic directly,\n"
            "                           without group rebalancing (offsets are still\n"
            "                           committed to --group)\n"
            "      --exit-at-end        stop once every assigned partition is consumed to its\n"
            "                           end (replays, tests, benchmarks); a member given no\n"
            "                           partition stops once the group has committed all\n"
            "                           of them to their end\n"
            "  Payloads are msgpack examples (several may share one message) or, with\n"
            "  --format vw|libsvm|criteo, text lines.  The checkpoint holds each partition's\n"
            "  next offset and is what a restart trusts; offsets are committed to Kafka after\n"
            "  each checkpoint is durable.  With --checkpoint-dir a Kafka job always continues\n"
            "  from its newest checkpoint (--resume is implied).  Partitions the checkpoints\n"
            "  never saw start at the group's committed offset, else at auto.offset.reset\n"
            "  (default earliest).  Offsets deleted by retention before they were consumed\n"
            "  are reported and counted.  The lag per partition is printed every\n"
            "  statistics.interval.ms (default 5000) in the table progress style; the\n"
            "  status line and the metrics carry the total (consumer_lag).\n"
            "\n"
            "%s"
            "\n"
            "Models and checkpoints:\n"
            "  -i, --initial-model FILE start from this model (rates and penalties given\n"
            "                           on the command line replace the model's)\n"
            "  -f, --final-model FILE   write the final model here\n"
            "      --checkpoint-dir DIR write checkpoints here (model + input position)\n"
            "      --checkpoint-every N|Ns  every N examples, or every N seconds with a\n"
            "                           trailing s (default 60s when --checkpoint-dir is set)\n"
            "      --checkpoint-keep N  keep the newest N checkpoints (default 3)\n"
            "      --checkpoint-mode M  fork: a child process writes each periodic checkpoint\n"
            "                           from a copy-on-write snapshot, so learning pauses\n"
            "                           only for the fork (default); sync: written in place\n"
            "      --resume             continue from the newest valid checkpoint in\n"
            "                           --checkpoint-dir (if there is none: from -i, else\n"
            "                           fresh); without it a replay starts a new run and\n"
            "                           refuses a directory holding checkpoints\n"
            "      --start-over         start a new run in a --checkpoint-dir that holds an\n"
            "                           earlier run's checkpoints (they are replaced)\n"
            "\n"
            "Scoring (as in VW):\n"
            "  -p, --predictions FILE   write each example's progressive prediction (made\n"
            "                           before learning from it), one per line in input\n"
            "                           order (- for stdout); unlabelled examples are scored\n"
            "                           too, a bad record gets \"nan\"; --resume appends\n"
            "  -t, --testonly           score and report but learn nothing (with -i MODEL)\n"
            "\n"
            "Metrics:\n"
            "      --auc-window N       window of the \"last N\" metrics: exact AUC, log loss\n"
            "                           and calibration over the last N examples (default\n"
            "                           10000); the cumulative AUC covers every example\n"
            "      --metrics FILE       append a JSON line with every metric each\n"
            "                           --metrics-interval and at the end (replaced unless\n"
            "                           --resume); streamlr plot draws it\n"
            "      --metrics-interval S seconds between JSON lines (default 10)\n"
            "      --metrics-port N     serve the metrics for Prometheus at\n"
            "                           http://127.0.0.1:N/metrics (0: any free port, logged)\n"
            "      --metrics-bind ADDR  listen on ADDR instead of 127.0.0.1 (e.g. 0.0.0.0)\n"
            "      --keep-names         record feature names for inspect and export (VW's\n"
            "                           --invert_hash); stored in the model\n"
            "      --keep-names-max N   keep at most N names (default 1000000; about\n"
            "                           32 bytes + the name each)\n"
            "\n"
            "Output:\n"
            "      --progress-style S   line: one status line redrawn in place; table: VW's\n"
            "                           table, a row at examples 1, 2, 4, ...  (default: line\n"
            "                           when stderr is a terminal, else table)\n"
            "      --quiet              no progress or summary\n"
            "  -h, --help               this text\n"
            "\n"
            "SIGINT/SIGTERM stop after the example (Kafka: the message) in hand, write a final\n"
            "checkpoint, commit its offsets and leave the consumer group.\n"
            "Exit status: 0 done (or stopped on request), 1 the job failed, 2 usage error.\n",
            cli_learner_help);
}

static bool parse_every(const char *s, slr_train_options *opt)
{
    size_t n = strlen(s);
    if (n > 1 && s[n - 1] == 's') {
        char *num = strndup(s, n - 1);
        double secs;
        bool ok = num && cli_double("train", "--checkpoint-every", num, &secs) && secs > 0;
        free(num);
        if (!ok)
            return false;
        opt->checkpoint_every_seconds = secs;
        return true;
    }
    return cli_u64("train", "--checkpoint-every", s, &opt->checkpoint_every_examples);
}

int slr_cmd_train(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_LEARNER_LONG_OPTIONS,
        {"data", required_argument, 0, 'd'},
        {"format", required_argument, 0, OPT_FORMAT},
        {"initial-model", required_argument, 0, 'i'},
        {"final-model", required_argument, 0, 'f'},
        {"checkpoint-dir", required_argument, 0, OPT_CHECKPOINT_DIR},
        {"checkpoint-every", required_argument, 0, OPT_CHECKPOINT_EVERY},
        {"checkpoint-keep", required_argument, 0, OPT_CHECKPOINT_KEEP},
        {"checkpoint-mode", required_argument, 0, OPT_CHECKPOINT_MODE},
        {"resume", no_argument, 0, OPT_RESUME},
        {"start-over", no_argument, 0, OPT_START_OVER},
        {"strict", no_argument, 0, OPT_STRICT},
        {"dead-letter", required_argument, 0, OPT_DEAD_LETTER},
        {"dead-letter-topic", required_argument, 0, OPT_DEAD_LETTER_TOPIC},
        {"max-features", required_argument, 0, OPT_MAX_FEATURES},
        {"max-record", required_argument, 0, OPT_MAX_RECORD},
        {"examples", required_argument, 0, OPT_EXAMPLES},
        CLI_KAFKA_LONG_OPTIONS,
        {"quiet", no_argument, 0, OPT_QUIET},
        {"threads", required_argument, 0, OPT_THREADS},
        {"predictions", required_argument, 0, 'p'},
        {"final_regressor", required_argument, 0, 'f'},
        {"initial_regressor", required_argument, 0, 'i'},
        {"testonly", no_argument, 0, 't'},
        {"auc-window", required_argument, 0, OPT_AUC_WINDOW},
        {"metrics", required_argument, 0, OPT_METRICS},
        {"metrics-interval", required_argument, 0, OPT_METRICS_INTERVAL},
        {"metrics-port", required_argument, 0, OPT_METRICS_PORT},
        {"metrics-bind", required_argument, 0, OPT_METRICS_BIND},
        {"progress-style", required_argument, 0, OPT_PROGRESS_STYLE},
        {"keep-names", no_argument, 0, OPT_KEEP_NAMES},
        {"keep-names-max", required_argument, 0, OPT_KEEP_NAMES_MAX},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    slr_train_options opt;
    slr_train_options_init(&opt);
    cli_kafka_input kin;
    cli_kafka_input_init(&kin);
    slr_kafka_options *kafka = &kin.k;
    opt.threads = sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? 2 : 1;
    opt.checkpoint_fork = true;
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    uint32_t n_files = 0;
    bool format_given = false, quiet = false, every_given = false;
    const char *pred_path = NULL, *metrics_path = NULL, *style = "auto";
    FILE *pred = NULL, *metrics = NULL;
    const char *dead_letter_path = NULL, *dead_letter_topic = NULL;
    slr_dead_letter_sink *dead_letter = NULL;
    int rc = 2;
    uint64_t u64;
    slr_error err;

    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "b:q:l:d:i:f:p:tX:h", longopts, NULL)) != -1) {
        int handled = cli_learner_option("train", c, optarg, &opt.learner, &opt.learner_set);
        if (handled < 0)
            goto done;
        if (handled)
            continue;
        if ((handled = cli_kafka_option("train", c, optarg, &kin)) < 0)
            goto done;
        if (handled)
            continue;
        switch (c) {
        case 'd': files[n_files++] = optarg; break;
        case OPT_FORMAT:
            if (slr_format_parse(optarg, &opt.format, &err) != SLR_OK) {
                fprintf(stderr, "streamlr train: %s\n", err.msg);
                goto done;
            }
            format_given = true;
            break;
        case 'i': opt.model_in = optarg; break;
        case 'f': opt.model_out = optarg; break;
        case OPT_CHECKPOINT_DIR: opt.checkpoint_dir = optarg; break;
        case OPT_CHECKPOINT_EVERY:
            if (!parse_every(optarg, &opt))
                goto done;
            every_given = true;
            break;
        case OPT_CHECKPOINT_KEEP:
            if (!cli_u64("train", "--checkpoint-keep", optarg, &u64) || u64 < 1 || u64 > 1000) {
                fprintf(stderr, "streamlr train: --checkpoint-keep must be 1..1000\n");
                goto done;
            }
            opt.checkpoint_keep = (unsigned)u64;
            break;
        case OPT_CHECKPOINT_MODE:
            if (strcmp(optarg, "fork") && strcmp(optarg, "sync")) {
                fprintf(stderr, "streamlr train: --checkpoint-mode takes fork or sync\n");
                goto done;
            }
            opt.checkpoint_fork = !strcmp(optarg, "fork");
            break;
        case OPT_RESUME: opt.resume = true; break;
        case OPT_START_OVER: opt.start_over = true; break;
        case OPT_STRICT: opt.strict = true; break;
        case OPT_DEAD_LETTER: dead_letter_path = optarg; break;
        case OPT_DEAD_LETTER_TOPIC: dead_letter_topic = optarg; break;
        case OPT_MAX_FEATURES:
            if (!cli_u32("train", "--max-features", optarg, &opt.max_features))
                goto done;
            break;
        case OPT_MAX_RECORD:
            if (!cli_u64("train", "--max-record", optarg, &u64) || u64 < 16) {
                fprintf(stderr, "streamlr train: --max-record must be at least 16 bytes\n");
                goto done;
            }
            opt.max_record = (size_t)u64;
            break;
        case OPT_EXAMPLES:
            if (!cli_u64("train", "--examples", optarg, &opt.max_examples) || !opt.max_examples) {
                fprintf(stderr, "streamlr train: --examples must be at least 1\n");
                goto done;
            }
            break;
        case OPT_QUIET: quiet = true; break;
        case OPT_THREADS:
            if (!cli_u32("train", "--threads", optarg, &opt.threads) || opt.threads < 1 ||
                opt.threads > 2) {
                fprintf(stderr, "streamlr train: --threads takes 1 or 2\n");
                goto done;
            }
            break;
        case 'p': pred_path = optarg; break;
        case 't': opt.test_only = true; break;
        case OPT_AUC_WINDOW:
            if (!cli_u32("train", "--auc-window", optarg, &opt.auc_window) ||
                opt.auc_window < 1 || opt.auc_window > SLR_AUC_WINDOW_MAX) {
                fprintf(stderr, "streamlr train: --auc-window must be 1..%u\n",
                        SLR_AUC_WINDOW_MAX);
                goto done;
            }
            break;
        case OPT_METRICS: metrics_path = optarg; break;
        case OPT_METRICS_INTERVAL:
            if (!cli_double("train", "--metrics-interval", optarg, &opt.metrics_interval) ||
                !(opt.metrics_interval >= 0.01)) {
                fprintf(stderr, "streamlr train: --metrics-interval must be at least 0.01 s\n");
                goto done;
            }
            break;
        case OPT_METRICS_PORT:
            if (!cli_u64("train", "--metrics-port", optarg, &u64) || u64 > 65535) {
                fprintf(stderr, "streamlr train: --metrics-port must be 0..65535\n");
                goto done;
            }
            opt.metrics_port = (int)u64;
            break;
        case OPT_METRICS_BIND: opt.metrics_bind = optarg; break;
        case OPT_PROGRESS_STYLE:
            if (strcmp(optarg, "line") && strcmp(optarg, "table") && strcmp(optarg, "auto")) {
                fprintf(stderr, "streamlr train: --progress-style is line, table or auto\n");
                goto done;
            }
            style = optarg;
            break;
        case OPT_KEEP_NAMES: opt.keep_names = true; break;
        case OPT_KEEP_NAMES_MAX:
            if (!cli_u64("train", "--keep-names-max", optarg, &opt.keep_names_max) ||
                opt.keep_names_max < 1 || opt.keep_names_max > UINT32_MAX / 4) {
                fprintf(stderr, "streamlr train: --keep-names-max must be 1..%u\n",
                        UINT32_MAX / 4);
                goto done;
            }
            opt.keep_names = true;
            break;
        case 'h': usage(stdout); rc = 0; goto done;
        default: usage(stderr); goto done;
        }
    }
    for (int i = optind; i < argc; i++)
        files[n_files++] = argv[i];
    /* with files, --brokers and -X serve the dead-letter topic alone */
    bool from_kafka = kin.n_topics || (kafka->brokers && !(n_files && dead_letter_topic));
    if (from_kafka && n_files) {
        fprintf(stderr, "streamlr train: give either --data files or --brokers/--topic, not both\n");
        goto done;
    }
    if (from_kafka && (!kin.n_topics || !kafka->group)) {
        fprintf(stderr, "streamlr train: a Kafka job needs --topic and --group (and --brokers, "
                        "unless bootstrap.servers is in --kafka-config)\n");
        goto done;
    }
    if (!from_kafka && kin.flag && !(dead_letter_topic && !kafka->group && !kafka->assign &&
                                     !kafka->exit_at_end)) {
        fprintf(stderr, "streamlr train: --group, -X, --kafka-config, --partitions and "
                        "--exit-at-end apply to Kafka input (--brokers, --topic); with files, "
                        "--brokers, -X and --kafka-config serve --dead-letter-topic\n");
        goto done;
    }
    if (!from_kafka && n_files == 0) {
        fprintf(stderr, "streamlr train: no input; give --data FILE (or - for stdin), or "
                        "--brokers/--topic/--group\n");
        goto done;
    }
    /* not given: the content decides (the library logs which); the name's
     * extension, else VW or Kafka's msgpack, when it does not tell */
    opt.format_auto = !format_given;
    if (!format_given)
        opt.format = from_kafka                              ? SLR_FORMAT_MSGPACK
                     : slr_format_guess(files[0], &opt.format) ? opt.format
                                                               : SLR_FORMAT_VW;
    if (opt.checkpoint_dir && !every_given)
        opt.checkpoint_every_seconds = 60;
    if (from_kafka && opt.start_over) {
        fprintf(stderr, "streamlr train: a Kafka job always continues its checkpoints (its "
                        "offsets are in them); for a new run give a new --checkpoint-dir\n");
        goto done;
    }
    if (from_kafka && opt.checkpoint_dir)
        opt.resume = true; /* a Kafka job always continues its checkpoints (docs/KAFKA.md) */
    if ((every_given || opt.resume || opt.start_over) && !opt.checkpoint_dir) {
        fprintf(stderr, "streamlr train: --checkpoint-every, --resume and --start-over need "
                        "--checkpoint-dir\n");
        goto done;
    }
    if (opt.resume && opt.start_over) {
        fprintf(stderr, "streamlr train: --resume continues the checkpoints, --start-over "
                        "replaces them; choose one\n");
        goto done;
    }
    if (dead_letter_path && dead_letter_topic) {
        fprintf(stderr, "streamlr train: --dead-letter and --dead-letter-topic: choose one sink\n");
        goto done;
    }
    if ((dead_letter_path || dead_letter_topic) && opt.strict) {
        fprintf(stderr, "streamlr train: --strict stops at the first bad record, --dead-letter(-topic) "
                        "keeps bad records and goes on; choose one\n");
        goto done;
    }
    if (opt.test_only && (opt.checkpoint_dir || !opt.model_in)) {
        fprintf(stderr, "streamlr train: -t learns nothing, so it takes -i MODEL and no "
                        "--checkpoint-dir\n");
        goto done;
    }
    if (slr_learner_config_validate(&opt.learner, &err) != SLR_OK) {
        fprintf(stderr, "streamlr train: %s\n", err.msg);
        goto done;
    }
    if (dead_letter_topic) {
        slr_dead_letter_kafka_options dk = {.topic = dead_letter_topic, .brokers = kafka->brokers,
                                            .config = (const char *const *)kin.conf.kv,
                                            .n_config = kin.conf.n, .log = cli_log};
        if (slr_dead_letter_kafka_open(&dead_letter, &dk, &err) != SLR_OK) {
            fprintf(stderr, "streamlr train: %s\n", err.msg);
            rc = 1;
            goto done;
        }
        opt.dead_letter = dead_letter;
    } else if (dead_letter_path) {
        if (slr_dead_letter_file_open(&dead_letter, dead_letter_path, &err) != SLR_OK) {
            fprintf(stderr, "streamlr train: %s\n", err.msg);
            rc = 1;
            goto done;
        }
        opt.dead_letter = dead_letter;
    }
    /* a resumed job continues its files; a fresh one starts them over */
    if (pred_path) {
        pred = strcmp(pred_path, "-") ? fopen(pred_path, opt.resume ? "a" : "w") : stdout;
        if (!pred) {
            perror(pred_path);
            goto done;
        }
        opt.predictions = pred;
    }
    if (metrics_path) {
        metrics = fopen(metrics_path, opt.resume ? "a" : "w");
        if (!metrics) {
            perror(metrics_path);
            goto done;
        }
        opt.metrics_out = metrics;
    }
    opt.files = files;
    opt.n_files = n_files;
    progress_drawer drawer;
    progress_init(&drawer, stderr);
    opt.progress = quiet ? NULL : progress_draw;
    opt.progress_ctx = &drawer;
    if (!strcmp(style, "line") || (!strcmp(style, "auto") && isatty(STDERR_FILENO)))
        opt.progress_style = SLR_PROGRESS_LINE;
    opt.log = progress_log;
    opt.log_ctx = &drawer;
    opt.stop = &cli_stop_requested;

    cli_catch_stop_signals();

    slr_train_result res;
    slr_status st = from_kafka ? slr_train_kafka(&opt, kafka, &res, &err)
                               : slr_train_files(&opt, &res, &err);
    if (st != SLR_OK) {
        fprintf(stderr, "streamlr train: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    rc = 0;
done:
    if (dead_letter)
        dead_letter->close(dead_letter);
    if (pred && pred != stdout && fclose(pred) != 0) {
        perror(pred_path);
        rc = 1;
    }
    if (pred == stdout && fflush(stdout) != 0)
        rc = 1;
    if (metrics && fclose(metrics) != 0) {
        perror(metrics_path);
        rc = 1;
    }
    free(files);
    cli_kafka_input_free(&kin);
    return rc;
}
