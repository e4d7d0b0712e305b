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
    /* VW's flags with VW's meaning (docs/VW.md) */
    OPT_PASSES,
    OPT_HOLDOUT_OFF,
    OPT_HOLDOUT_PERIOD,
    OPT_SAVE_RESUME,
    OPT_RANDOM_SEED,
    OPT_INTERACTIONS,
    OPT_READABLE_MODEL,
    OPT_INVERT_HASH,
    OPT_IGNORE,
    OPT_KEEP,
    OPT_NOCONSTANT,
    OPT_CUBIC,
    OPT_IGNORE_LINEAR,
    OPT_AUDIT,
    OPT_START_OVER,
    OPT_SYNC_TOPIC,
    OPT_SYNC_EVERY,
    OPT_SYNC_SNAPSHOT_EVERY,
    OPT_SYNC_TRANSACTIONS,
};

#define HOLDOUT_PERIOD_DEFAULT 10 /* VW's */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: streamlr train --data FILE|- [--data FILE]... [--format F] [options]\n"
            "       streamlr train --brokers HOST:PORT[,..] --topic T[,T2..] --group G\n"
            "                      [-X key=value]... [--kafka-config FILE] [--exit-at-end]\n"
            "                      [--sync-topic T [--sync-every N]] [options]\n"
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
            "                           vw; msgpack for Kafka); see docs/FORMAT.md; --from F\n"
            "                           is the same (convert's spelling)\n"
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
            "      --sync-topic T       the group holds ONE model: members learn their\n"
            "                           partitions in rounds and merge every partition's\n"
            "                           change through topic T (one partition, created\n"
            "                           beforehand); bit-for-bit the same model whoever\n"
            "                           learned what, across crashes and rebalances\n"
            "                           (docs/SYNC_PROTOCOL.md).  Needs one --topic,\n"
            "                           --schedule adagrad, one thread\n"
            "      --sync-every N       a round is N offsets of every partition (default\n"
            "                           1000); a round waits for every partition's N\n"
            "                           messages (--exit-at-end: or its end)\n"
            "      --sync-snapshot-every R  the holder of partition 0 writes the whole\n"
            "                           model to the sync topic every R rounds (default\n"
            "                           100, 0: never) and at round 0; new members and\n"
            "                           predict --follow-topic start from the newest, so\n"
            "                           the topic may be given a retention\n"
            "      --sync-transactions on|off  publish each round's deltas in a Kafka\n"
            "                           transaction with the offsets they consumed, so a\n"
            "                           real cluster hides aborted ones and fences zombie\n"
            "                           members (default off: exactly-once does not need\n"
            "                           it; the cluster must support transactions)\n"
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
            "                           trailing s (default 60s when --checkpoint-dir is set);\n"
            "                           0: no periodic checkpoints, only the final one (at\n"
            "                           the end of input, or on SIGINT/SIGTERM)\n"
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
            "                           order (- for stdout), then the example's tag if it\n"
            "                           has one, as VW does (0.55 tag1); unlabelled examples\n"
            "                           are scored too, a bad record gets \"nan\"; --resume\n"
            "                           appends\n"
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
            "Vowpal Wabbit's flags, with VW's meaning (docs/VW.md maps every VW flag):\n"
            "      --passes N           read the files N times (default 1; files only, no\n"
            "                           --checkpoint-dir)\n"
            "      --holdout_period N   with --passes: hold out one example in N of every\n"
            "                           pass (default 10): scored, never learned; the summary\n"
            "                           gives their loss in the last pass (\"h\")\n"
            "      --holdout_off        hold nothing out\n"
            "  -c, --cache              accepted (also -k, --kill_cache): no cache file is\n"
            "                           needed, each pass reads the input again\n"
            "      --loss_function L    logistic only (what streamlr learns); --link\n"
            "                           logistic likewise (predictions are probabilities)\n"
            "      --cubic ABC          add the interactions of three namespaces (each\n"
            "                           unordered triple of features once; : is any\n"
            "                           namespace); --interactions AB|ABC is -q or --cubic\n"
            "      --ignore ABC         drop the namespaces starting with A, B or C (' ' is\n"
            "                           the default namespace); --keep ABC drops all others.\n"
            "                           Stored in the model, so predict drops them too\n"
            "      --ignore_linear ABC  keep those namespaces only in -q/--cubic interactions\n"
            "      --noconstant         no bias term (stored in the model)\n"
            "  -P, --progress N|F       table rows every N examples, or at 1, F, F^2, ...\n"
            "                           for a factor F with a point (default 2.0)\n"
            "      --readable_model FILE  write the weights as streamlr export does\n"
            "      --invert_hash FILE   the same with feature names (implies --keep-names;\n"
            "                           the JSON of streamlr export --format json)\n"
            "  -a, --audit              print each example's prediction, then every feature\n"
            "                           as name:index:value:weight (before the update) to\n"
            "                           stdout; implies --keep-names\n"
            "      --save_resume        accepted: always on (a model holds the whole state)\n"
            "      --random_seed N      accepted: nothing here is random\n"
            "  Any other VW flag is refused with the closest streamlr option.\n"
            "\n"
            "Output:\n"
            "      --progress-style S   line: one status line redrawn in place; table: VW's\n"
            "                           table, a row at examples 1, 2, 4, ...  (default: line\n"
            "                           when stderr is a terminal, else table)\n"
            "      --quiet              no progress, summary, format told or \"model written\n"
            "                           to\" note (warnings and errors still show)\n"
            "  -h, --help               this text\n"
            "\n"
            "SIGINT/SIGTERM stop after the example (Kafka: the message) in hand, write a final\n"
            "checkpoint, commit its offsets and leave the consumer group.\n"
            "Exit status: 0 done (or stopped on request), 1 the job failed, 2 usage error.\n",
            cli_learner_help);
}

/* VW's --ignore abc / --keep abc: each byte is a namespace's first letter */
static void add_letters(bool set[256], const char *letters)
{
    for (const unsigned char *p = (const unsigned char *)letters; *p; p++)
        set[*p] = true;
}

/* --keep drops every namespace it does not name; --ignore drops those it does */
static void apply_ignore(const bool ignore[256], const bool keep[256], bool keep_given,
                         slr_train_options *opt)
{
    bool any = keep_given;
    for (int c = 0; c < 256; c++) {
        bool drop = (keep_given && !keep[c]) || ignore[c];
        slr_hashing_ignore(&opt->learner.hashing, (unsigned char)c, drop);
        any |= drop;
    }
    if (any)
        opt->learner_set |= SLR_SET_IGNORE;
}

/* --readable_model / --invert_hash: the weights as `streamlr export` writes
 * them (with the names, for --invert_hash). */
static bool write_text_model(const char *model, const char *path, bool json)
{
    FILE *out = fopen(path, "w");
    if (!out) {
        perror(path);
        return false;
    }
    int failed = cli_export_model("train", model, out, json);
    if (fclose(out) != 0 || failed > 0) {
        fprintf(stderr, "streamlr train: writing %s failed\n", path);
        return false;
    }
    return failed == 0;
}

/* VW's --progress: an integer adds (a row every N examples), a number with
 * a point multiplies (rows at 1, F, F^2, ...). */
static bool parse_progress(const char *s, slr_train_options *opt)
{
    if (strchr(s, '.') || strchr(s, 'e')) {
        if (!cli_double("train", "--progress", s, &opt->progress_factor) ||
            !(opt->progress_factor > 1)) {
            fprintf(stderr, "streamlr train: --progress %s: a factor must be more than 1\n", s);
            return false;
        }
        return true;
    }
    if (!cli_u64("train", "--progress", s, &opt->progress_add) || !opt->progress_add) {
        fprintf(stderr, "streamlr train: --progress %s: give N >= 1 (a row every N examples) "
                        "or a factor F > 1 with a point (rows at 1, F, F^2, ...)\n", s);
        return false;
    }
    return true;
}

static bool parse_every(const char *s, slr_train_options *opt)
{
    size_t n = strlen(s);
    if (n > 1 && s[n - 1] == 's') {
        char *num = strndup(s, n - 1);
        double secs;
        bool ok = num && cli_double("train", "--checkpoint-every", num, &secs);
        free(num);
        if (!ok)
            return false;
        if (!(secs > 0)) {
            fprintf(stderr, "streamlr train: --checkpoint-every %s: the period must be more than 0 "
                            "seconds (--checkpoint-every 0: no periodic checkpoints, only the "
                            "final one)\n", s);
            return false;
        }
        opt->checkpoint_every_seconds = secs;
        return true;
    }
    return cli_u64("train", "--checkpoint-every", s, &opt->checkpoint_every_examples);
}

/* The command line, parsed into this before anything is opened (as
 * cmd_convert.c does): parse_args reads argv, check_args derives the
 * defaults and refuses what does not go together, and only then does
 * run_train open the outputs and train. */
typedef struct train_args {
    slr_train_options opt;
    cli_kafka_input kin;
    const char **files; /* opt.files once checked */
    uint32_t n_files;
    bool from_kafka;
    bool format_given, quiet, every_given;
    bool threads_given, sync_every_given;
    const char *pred_path, *metrics_path, *style;
    const char *dead_letter_path, *dead_letter_topic;
    /* VW's flags */
    bool cache_flag, holdout_off, save_resume, random_seed, progress_given, keep_given;
    bool ignore[256], keep[256];
    const char *readable_model, *invert_hash;
} train_args;

static bool train_args_init(train_args *a, int argc)
{
    memset(a, 0, sizeof *a);
    slr_train_options_init(&a->opt);
    cli_kafka_input_init(&a->kin);
    a->opt.threads = sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? 2 : 1;
    a->opt.checkpoint_fork = true;
    a->style = "auto";
    a->files = calloc((size_t)argc + 1, sizeof *a->files);
    return a->files != NULL;
}

static void train_args_free(train_args *a)
{
    free(a->files);
    cli_kafka_input_free(&a->kin);
}

/* argv into a; -1 to go on, else the exit status */
static int parse_args(int argc, char **argv, train_args *a)
{
    static const struct option longopts[] = {
        CLI_LEARNER_LONG_OPTIONS,
        {"data", required_argument, 0, 'd'},
        {"format", required_argument, 0, OPT_FORMAT},
        {"from", required_argument, 0, OPT_FORMAT}, /* convert's spelling */
        {"initial-model", required_argument, 0, 'i'},
        {"final-model", required_argument, 0, 'f'},
        {"checkpoint-dir", required_argument, 0, OPT_CHECKPOINT_DIR},
        {"checkpoint-every", required_argument, 0, OPT_CHECKPOINT_EVERY},
        {"checkpoint-keep", required_argument, 0, OPT_CHECKPOINT_KEEP},
        {"checkpoint-mode", required_argument, 0, OPT_CHECKPOINT_MODE},
        {"resume", no_argument, 0, OPT_RESUME},
        {"start-over", no_argument, 0, OPT_START_OVER},
        {"sync-topic", required_argument, 0, OPT_SYNC_TOPIC},
        {"sync-every", required_argument, 0, OPT_SYNC_EVERY},
        {"sync-snapshot-every", required_argument, 0, OPT_SYNC_SNAPSHOT_EVERY},
        {"sync-transactions", required_argument, 0, OPT_SYNC_TRANSACTIONS},
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
        /* VW's flags (docs/VW.md) */
        {"passes", required_argument, 0, OPT_PASSES},
        {"cache", no_argument, 0, 'c'},
        {"kill_cache", no_argument, 0, 'k'},
        {"holdout_off", no_argument, 0, OPT_HOLDOUT_OFF},
        {"holdout_period", required_argument, 0, OPT_HOLDOUT_PERIOD},
        CLI_VW_LOGISTIC_LONG_OPTIONS,
        {"save_resume", no_argument, 0, OPT_SAVE_RESUME},
        {"random_seed", required_argument, 0, OPT_RANDOM_SEED},
        {"progress", required_argument, 0, 'P'},
        {"interactions", required_argument, 0, OPT_INTERACTIONS},
        {"cubic", required_argument, 0, OPT_CUBIC},
        {"readable_model", required_argument, 0, OPT_READABLE_MODEL},
        {"invert_hash", required_argument, 0, OPT_INVERT_HASH},
        {"ignore", required_argument, 0, OPT_IGNORE},
        {"keep", required_argument, 0, OPT_KEEP},
        {"noconstant", no_argument, 0, OPT_NOCONSTANT},
        {"ignore_linear", required_argument, 0, OPT_IGNORE_LINEAR},
        {"audit", no_argument, 0, 'a'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    uint64_t u64;
    slr_error err;
    optind = 1;
    int c;
    while ((c = cli_getopt(argc, argv, "b:q:l:d:i:f:p:tX:ckP:ah", longopts)) != -1) {
        int handled = cli_learner_option("train", c, optarg, &a->opt.learner, &a->opt.learner_set);
        if (handled < 0)
            return 2;
        if (handled)
            continue;
        if ((handled = cli_kafka_option("train", c, optarg, &a->kin)) < 0 ||
            (!handled && (handled = cli_vw_logistic_option("train", c, optarg)) < 0))
            return 2;
        if (handled)
            continue;
        switch (c) {
        case 'd': a->files[a->n_files++] = optarg; break;
        case OPT_FORMAT:
            if (slr_format_parse(optarg, &a->opt.format, &err) != SLR_OK) {
                fprintf(stderr, "streamlr train: %s\n", err.msg);
                return 2;
            }
            a->format_given = true;
            break;
        case 'i': a->opt.model_in = optarg; break;
        case 'f': a->opt.model_out = optarg; break;
        case OPT_CHECKPOINT_DIR: a->opt.checkpoint_dir = optarg; break;
        case OPT_CHECKPOINT_EVERY:
            if (!parse_every(optarg, &a->opt))
                return 2;
            a->every_given = true;
            break;
        case OPT_CHECKPOINT_KEEP:
            if (!cli_u64("train", "--checkpoint-keep", optarg, &u64) || u64 < 1 || u64 > 1000) {
                fprintf(stderr, "streamlr train: --checkpoint-keep must be 1..1000\n");
                return 2;
            }
            a->opt.checkpoint_keep = (unsigned)u64;
            break;
        case OPT_CHECKPOINT_MODE:
            if (strcmp(optarg, "fork") && strcmp(optarg, "sync")) {
                fprintf(stderr, "streamlr train: --checkpoint-mode takes fork or sync\n");
                return 2;
            }
            a->opt.checkpoint_fork = !strcmp(optarg, "fork");
            break;
        case OPT_RESUME: a->opt.resume = true; break;
        case OPT_START_OVER: a->opt.start_over = true; break;
        case OPT_SYNC_TOPIC:
            if (!*optarg) {
                fprintf(stderr, "streamlr train: --sync-topic needs a topic name\n");
                return 2;
            }
            a->kin.k.sync_topic = optarg;
            break;
        case OPT_SYNC_EVERY: {
            uint64_t v;
            size_t len = strlen(optarg);
            if (len && optarg[len - 1] == 's') {
                fprintf(stderr, "streamlr train: --sync-every counts offsets per partition, not "
                                "seconds: rounds are defined by the data so that the group's "
                                "model does not depend on timing; give N (a partition receiving "
                                "R messages/s merges every N/R seconds)\n");
                return 2;
            }
            if (!cli_u64("train", "--sync-every", optarg, &v) || v < 1 || v > INT32_MAX) {
                fprintf(stderr, "streamlr train: --sync-every takes a number of offsets >= 1\n");
                return 2;
            }
            a->kin.k.sync_every = (int64_t)v;
            a->sync_every_given = true;
            break;
        }
        case OPT_SYNC_SNAPSHOT_EVERY:
            if (!cli_u64("train", "--sync-snapshot-every", optarg, &a->kin.k.sync_snapshot_every))
                return 2;
            a->sync_every_given = true; /* needs --sync-topic too */
            break;
        case OPT_SYNC_TRANSACTIONS:
            if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
                fprintf(stderr, "streamlr train: --sync-transactions takes on or off\n");
                return 2;
            }
            a->kin.k.sync_transactions = !strcmp(optarg, "on");
            a->sync_every_given = true; /* needs --sync-topic too */
            break;
        case OPT_STRICT: a->opt.strict = true; break;
        case OPT_DEAD_LETTER: a->dead_letter_path = optarg; break;
        case OPT_DEAD_LETTER_TOPIC: a->dead_letter_topic = optarg; break;
        case OPT_MAX_FEATURES:
            if (!cli_u32("train", "--max-features", optarg, &a->opt.max_features))
                return 2;
            break;
        case OPT_MAX_RECORD:
            if (!cli_u64("train", "--max-record", optarg, &u64) || u64 < 16) {
                fprintf(stderr, "streamlr train: --max-record must be at least 16 bytes\n");
                return 2;
            }
            a->opt.max_record = (size_t)u64;
            break;
        case OPT_EXAMPLES:
            if (!cli_u64("train", "--examples", optarg, &a->opt.max_examples) ||
                !a->opt.max_examples) {
                fprintf(stderr, "streamlr train: --examples must be at least 1\n");
                return 2;
            }
            break;
        case OPT_QUIET: a->quiet = true; break;
        case OPT_THREADS:
            if (!cli_u32("train", "--threads", optarg, &a->opt.threads) || a->opt.threads < 1 ||
                a->opt.threads > 2) {
                fprintf(stderr, "streamlr train: --threads takes 1 or 2\n");
                return 2;
            }
            a->threads_given = true;
            break;
        case 'p': a->pred_path = optarg; break;
        case 't': a->opt.test_only = true; break;
        case OPT_AUC_WINDOW:
            if (!cli_u32("train", "--auc-window", optarg, &a->opt.auc_window) ||
                a->opt.auc_window < 1 || a->opt.auc_window > SLR_AUC_WINDOW_MAX) {
                fprintf(stderr, "streamlr train: --auc-window must be 1..%u\n",
                        SLR_AUC_WINDOW_MAX);
                return 2;
            }
            break;
        case OPT_METRICS: a->metrics_path = optarg; break;
        case OPT_METRICS_INTERVAL:
            if (!cli_double("train", "--metrics-interval", optarg, &a->opt.metrics_interval) ||
                !(a->opt.metrics_interval >= 0.01)) {
                fprintf(stderr, "streamlr train: --metrics-interval must be at least 0.01 s\n");
                return 2;
            }
            break;
        case OPT_METRICS_PORT:
            if (!cli_u64("train", "--metrics-port", optarg, &u64) || u64 > 65535) {
                fprintf(stderr, "streamlr train: --metrics-port must be 0..65535\n");
                return 2;
            }
            a->opt.metrics_port = (int)u64;
            break;
        case OPT_METRICS_BIND: a->opt.metrics_bind = optarg; break;
        case OPT_PROGRESS_STYLE:
            if (strcmp(optarg, "line") && strcmp(optarg, "table") && strcmp(optarg, "auto")) {
                fprintf(stderr, "streamlr train: --progress-style is line, table or auto\n");
                return 2;
            }
            a->style = optarg;
            break;
        case OPT_KEEP_NAMES: a->opt.keep_names = true; break;
        case OPT_KEEP_NAMES_MAX:
            if (!cli_u64("train", "--keep-names-max", optarg, &a->opt.keep_names_max) ||
                a->opt.keep_names_max < 1 || a->opt.keep_names_max > UINT32_MAX / 4) {
                fprintf(stderr, "streamlr train: --keep-names-max must be 1..%u\n",
                        UINT32_MAX / 4);
                return 2;
            }
            a->opt.keep_names = true;
            break;
        case OPT_PASSES:
            if (!cli_u32("train", "--passes", optarg, &a->opt.passes) || a->opt.passes < 1) {
                fprintf(stderr, "streamlr train: --passes must be at least 1\n");
                return 2;
            }
            break;
        case 'c': case 'k': a->cache_flag = true; break;
        case OPT_HOLDOUT_OFF: a->holdout_off = true; break;
        case OPT_HOLDOUT_PERIOD:
            if (!cli_u32("train", "--holdout_period", optarg, &a->opt.holdout_period) ||
                a->opt.holdout_period < 2) {
                fprintf(stderr, "streamlr train: --holdout_period must be at least 2 (to learn "
                                "from nothing, use -t)\n");
                return 2;
            }
            break;
        case OPT_SAVE_RESUME: a->save_resume = true; break;
        case OPT_RANDOM_SEED:
            if (!cli_u64("train", "--random_seed", optarg, &u64))
                return 2;
            a->random_seed = true;
            break;
        case 'P':
            if (!parse_progress(optarg, &a->opt))
                return 2;
            a->progress_given = true;
            break;
        case OPT_INTERACTIONS: /* VW's general form: pairs and triples here */
        case OPT_CUBIC:
            if (strlen(optarg) == 2 && c == OPT_INTERACTIONS) {
                if (cli_learner_option("train", 'q', optarg, &a->opt.learner,
                                       &a->opt.learner_set) < 0)
                    return 2;
                break;
            }
            if (strlen(optarg) != 3) {
                fprintf(stderr, "streamlr train: --%s %s: pairs (-q AB) and triples (--cubic "
                                "ABC) of namespaces are supported\n",
                        c == OPT_CUBIC ? "cubic" : "interactions", optarg);
                return 2;
            }
            if (slr_hashing_add_cubic(&a->opt.learner.hashing, optarg, &err) != SLR_OK) {
                fprintf(stderr, "streamlr train: %s\n", err.msg);
                return 2;
            }
            a->opt.learner_set |= SLR_SET_CUBIC;
            break;
        case OPT_IGNORE: add_letters(a->ignore, optarg); break;
        case 'a': /* the names come from --keep-names */
            a->opt.audit = stdout;
            a->opt.keep_names = true;
            break;
        case OPT_IGNORE_LINEAR:
            for (const unsigned char *p = (const unsigned char *)optarg; *p; p++)
                slr_hashing_ignore_linear(&a->opt.learner.hashing, *p, true);
            a->opt.learner_set |= SLR_SET_IGNORE;
            break;
        case OPT_NOCONSTANT:
            a->opt.learner.noconstant = true;
            a->opt.learner_set |= SLR_SET_NOCONSTANT;
            break;
        case OPT_KEEP: add_letters(a->keep, optarg); a->keep_given = true; break;
        case OPT_READABLE_MODEL: a->readable_model = optarg; break;
        case OPT_INVERT_HASH: a->invert_hash = optarg; a->opt.keep_names = true; break;
        case 'h': usage(stdout); return 0;
        default: return 2; /* cli_getopt said what was wrong */
        }
    }
    for (int i = optind; i < argc; i++)
        a->files[a->n_files++] = argv[i];
    return -1;
}

/* Defaults that depend on other flags, and combinations refused; -1 to go
 * on, else the exit status.  Nothing is opened yet. */
static int check_args(train_args *a)
{
    slr_error err;
    /* with files, --brokers and -X serve the dead-letter topic alone */
    a->from_kafka = a->kin.n_topics || (a->kin.k.brokers && !(a->n_files && a->dead_letter_topic));
    if (a->from_kafka && a->n_files) {
        fprintf(stderr, "streamlr train: give either --data files or --brokers/--topic, not both\n");
        return 2;
    }
    if (a->from_kafka && (!a->kin.n_topics || !a->kin.k.group)) {
        fprintf(stderr, "streamlr train: a Kafka job needs --topic and --group (and --brokers, "
                        "unless bootstrap.servers is in --kafka-config)\n");
        return 2;
    }
    const slr_kafka_options *k = &a->kin.k;
    if ((k->sync_topic || a->sync_every_given) && !a->from_kafka) {
        fprintf(stderr, "streamlr train: --sync-topic and --sync-every share a model across a "
                        "Kafka consumer group (--brokers, --topic, --group)\n");
        return 2;
    }
    if (a->sync_every_given && !k->sync_topic) {
        fprintf(stderr, "streamlr train: --sync-every, --sync-snapshot-every and "
                        "--sync-transactions need --sync-topic\n");
        return 2;
    }
    if (k->sync_topic && !a->threads_given)
        a->opt.threads = 1; /* a group's member decodes on its learning thread */
    if (!a->from_kafka && a->kin.flag &&
        !(a->dead_letter_topic && !k->group && !k->assign && !k->exit_at_end)) {
        fprintf(stderr, "streamlr train: --group, -X, --kafka-config, --partitions and "
                        "--exit-at-end apply to Kafka input (--brokers, --topic); with files, "
                        "--brokers, -X and --kafka-config serve --dead-letter-topic\n");
        return 2;
    }
    if (!a->from_kafka && a->n_files == 0) {
        fprintf(stderr, "streamlr train: no input; give --data FILE (or - for stdin), or "
                        "--brokers/--topic/--group\n");
        return 2;
    }
    apply_ignore(a->ignore, a->keep, a->keep_given, &a->opt);
    if (a->opt.passes > 1 && a->from_kafka) {
        fprintf(stderr, "streamlr train: --passes replays files; a Kafka topic is read once "
                        "(replay it with a new --group to read it again)\n");
        return 2;
    }
    if (a->opt.holdout_period && a->opt.passes <= 1) {
        fprintf(stderr, "streamlr train: --holdout_period applies with --passes N > 1 (VW holds "
                        "out examples only over several passes)\n");
        return 2;
    }
    if (a->opt.passes > 1 && !a->opt.holdout_period && !a->holdout_off)
        a->opt.holdout_period = HOLDOUT_PERIOD_DEFAULT;
    if (a->holdout_off)
        a->opt.holdout_period = 0;
    if (a->progress_given && !strcmp(a->style, "auto"))
        a->style = "table"; /* VW's --progress sets the rows of VW's table */
    /* not given: the content decides (the library logs which); the name's
     * extension, else VW or Kafka's msgpack, when it does not tell */
    a->opt.format_auto = !a->format_given;
    if (!a->format_given)
        a->opt.format = a->from_kafka                              ? SLR_FORMAT_MSGPACK
                     : slr_format_guess(a->files[0], &a->opt.format) ? a->opt.format
                                                               : SLR_FORMAT_VW;
    if (a->opt.checkpoint_dir && !a->every_given)
        a->opt.checkpoint_every_seconds = 60;
    if (a->from_kafka && a->opt.start_over) {
        fprintf(stderr, "streamlr train: a Kafka job always continues its checkpoints (its "
                        "offsets are in them); for a new run give a new --checkpoint-dir\n");
        return 2;
    }
    if (a->from_kafka && a->opt.checkpoint_dir)
        a->opt.resume = true; /* a Kafka job always continues its checkpoints (docs/KAFKA.md) */
    if ((a->every_given || a->opt.resume || a->opt.start_over) && !a->opt.checkpoint_dir) {
        fprintf(stderr, "streamlr train: --checkpoint-every, --resume and --start-over need "
                        "--checkpoint-dir\n");
        return 2;
    }
    if (a->opt.resume && a->opt.start_over) {
        fprintf(stderr, "streamlr train: --resume continues the checkpoints, --start-over "
                        "replaces them; choose one\n");
        return 2;
    }
    if (a->dead_letter_path && a->dead_letter_topic) {
        fprintf(stderr, "streamlr train: --dead-letter and --dead-letter-topic: choose one sink\n");
        return 2;
    }
    if ((a->dead_letter_path || a->dead_letter_topic) && a->opt.strict) {
        fprintf(stderr, "streamlr train: --strict stops at the first bad record, --dead-letter(-topic) "
                        "keeps bad records and goes on; choose one\n");
        return 2;
    }
    if (a->opt.test_only && (a->opt.checkpoint_dir || !a->opt.model_in)) {
        fprintf(stderr, "streamlr train: -t learns nothing, so it takes -i MODEL and no "
                        "--checkpoint-dir\n");
        return 2;
    }
    if (slr_learner_config_validate(&a->opt.learner, &err) != SLR_OK) {
        fprintf(stderr, "streamlr train: %s\n", err.msg);
        return 2;
    }
    a->opt.files = a->files;
    a->opt.n_files = a->n_files;
    return -1;
}

/* VW flags whose effect is void here are accepted, and said so. */
static void say_void_flags(const train_args *a)
{
    if (a->quiet)
    return;
    if (a->cache_flag)
        fprintf(stderr, "streamlr train: -c/-k: no cache file is made or needed here; each "
                        "pass reads the input again (VW's cache saves parsing time only)\n");
    if (a->save_resume)
        fprintf(stderr, "streamlr train: --save_resume is always on here: -f and checkpoints "
                        "hold the whole state (adagrad sums, penalty clocks, metrics)\n");
    if (a->random_seed)
        fprintf(stderr, "streamlr train: --random_seed: nothing here is random (weights start "
                        "at 0, the hashing is fixed), so every seed gives the same model\n");
}

static int run_train(train_args *a)
{
    FILE *pred = NULL, *metrics = NULL;
    slr_dead_letter_sink *dead_letter = NULL;
    char model_tmp[4096] = "";
    int rc = 2;
    slr_error err;
    say_void_flags(a);
    if ((a->readable_model || a->invert_hash) && !a->opt.model_out) {
        /* the text forms are written from the model file: make one for them */
        const char *dir = getenv("TMPDIR");
        snprintf(model_tmp, sizeof model_tmp, "%s/streamlr-model.XXXXXX",
                 dir && *dir ? dir : "/tmp");
        int fd = mkstemp(model_tmp);
        if (fd < 0) {
            perror(model_tmp);
            model_tmp[0] = '\0';
            rc = 1;
            goto done;
        }
        close(fd);
        a->opt.model_out = model_tmp;
    }
    if (a->dead_letter_topic) {
        slr_dead_letter_kafka_options dk = {.topic = a->dead_letter_topic,
                                            .brokers = a->kin.k.brokers,
                                            .config = (const char *const *)a->kin.conf.kv,
                                            .n_config = a->kin.conf.n, .log = cli_log};
        if (slr_dead_letter_kafka_open(&dead_letter, &dk, &err) != SLR_OK) {
            fprintf(stderr, "streamlr train: %s\n", err.msg);
            rc = 1;
            goto done;
        }
        a->opt.dead_letter = dead_letter;
    } else if (a->dead_letter_path) {
        if (slr_dead_letter_file_open(&dead_letter, a->dead_letter_path, &err) != SLR_OK) {
            fprintf(stderr, "streamlr train: %s\n", err.msg);
            rc = 1;
            goto done;
        }
        a->opt.dead_letter = dead_letter;
    }
    /* a resumed job continues its files; a fresh one starts them over */
    if (a->pred_path) {
        pred = strcmp(a->pred_path, "-") ? fopen(a->pred_path, a->opt.resume ? "a" : "w") : stdout;
        if (!pred) {
            perror(a->pred_path);
            goto done;
        }
        a->opt.predictions = pred;
    }
    if (a->metrics_path) {
        metrics = fopen(a->metrics_path, a->opt.resume ? "a" : "w");
        if (!metrics) {
            perror(a->metrics_path);
            goto done;
        }
        a->opt.metrics_out = metrics;
    }
    progress_drawer drawer;
    progress_init(&drawer, stderr);
    a->opt.progress = a->quiet ? NULL : progress_draw;
    a->opt.progress_ctx = &drawer;
    if (!strcmp(a->style, "line") || (!strcmp(a->style, "auto") && isatty(STDERR_FILENO)))
        a->opt.progress_style = SLR_PROGRESS_LINE;
    a->opt.log = progress_log;
    a->opt.log_ctx = &drawer;
    a->opt.stop = &cli_stop_requested;

    cli_catch_stop_signals();

    slr_train_result res;
    slr_status st = a->from_kafka ? slr_train_kafka(&a->opt, &a->kin.k, &res, &err)
                                  : slr_train_files(&a->opt, &res, &err);
    if (st != SLR_OK) {
        fprintf(stderr, "streamlr train: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    if (!a->quiet && res.holdout_examples)
        fprintf(stderr, "holdout loss = %.6f h (pass %u: %llu held-out examples, one in %u of "
                        "each pass, never learned)\n",
                res.holdout_loss, a->opt.passes, (unsigned long long)res.holdout_examples,
                a->opt.holdout_period);
    rc = 0;
    if ((a->readable_model && !write_text_model(a->opt.model_out, a->readable_model, false)) ||
        (a->invert_hash && !write_text_model(a->opt.model_out, a->invert_hash, true)))
        rc = 1;
done:
    if (model_tmp[0])
        unlink(model_tmp);
    if (dead_letter)
        dead_letter->close(dead_letter);
    if (pred && pred != stdout && fclose(pred) != 0) {
        perror(a->pred_path);
        rc = 1;
    }
    if (pred == stdout && fflush(stdout) != 0)
        rc = 1;
    if (metrics && fclose(metrics) != 0) {
        perror(a->metrics_path);
        rc = 1;
    }
    return rc;
}

int slr_cmd_train(int argc, char **argv)
{
    train_args a;
    int rc = train_args_init(&a, argc) ? parse_args(argc, argv, &a) : 1;
    if (rc < 0)
        rc = check_args(&a);
    if (rc < 0)
        rc = run_train(&a);
    train_args_free(&a);
    return rc;
}
