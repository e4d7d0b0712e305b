/* cmd_predict.c - `streamlr predict`: score examples with a trained model.
 *
 * One probability per example, in input order; a record that cannot be
 * decoded gets "nan" so that line i of the output still answers example i.
 * With labelled input it also reports the test log loss and AUC.
 *
 * With --follow DIR it is a scoring job beside a training job: it scores
 * with the newest checkpoint in DIR and switches when a newer one appears
 * (looked for every --follow-interval seconds and read on a thread of its
 * own, so scoring never waits for a load),
 * so `tail -F events | streamlr predict --follow ckpt -p - -` serves the
 * freshest model.  Predictions are flushed whenever the input runs dry.
 * The file job is slr_predict_files (predict.h); this file parses and
 * presents.
 *
 * With --follow-topic T (and --brokers) it scores with the model a group
 * shares through its sync topic T (docs/SYNC_PROTOCOL.md): the newest
 * snapshot and every round completed after it, merged on the follower's
 * thread and switched to between records or messages.
 *
 * With --brokers/--topic it is a stream job (slr_predict_kafka, predict.h):
 * messages in, one message of predictions out per message, offsets
 * committed once the predictions are acknowledged. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli_options.h"
#include "commands.h"
#include "kafka_input.h"
#include "streamlr/checkpoint.h"
#include "streamlr/dead_letter.h"
#include "streamlr/decode.h"
#include "streamlr/learner.h"
#include "streamlr/metrics.h"
#include "streamlr/predict.h"
#include "streamlr/source.h"

enum {
    OPT_OUTPUT_TOPIC = OPT_FIRST_COMMAND_SPECIFIC,
    OPT_OUTPUT_PARTITION,
    OPT_COMMIT_INTERVAL,
    OPT_FOLLOW_TOPIC,
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: streamlr predict -i MODEL|--follow DIR --data FILE|- [--format F]\n"
            "                        [-p PREDICTIONS]\n"
            "       streamlr predict --follow-topic T --brokers HOST:PORT[,..] --data FILE|-\n"
            "                        [-p PREDICTIONS]\n"
            "       streamlr predict -i MODEL|--follow DIR|--follow-topic T --brokers\n"
            "                        HOST:PORT[,..] --topic T --group G --output-topic OUT\n"
            "                        [-X key=value]... [options]\n"
            "\n"
            "Score examples with a model written by train -f (or a checkpoint): from files,\n"
            "or as a stream job from Kafka topics to another topic.\n"
            "\n"
            "  -i, --initial-model MODEL  the model\n"
            "      --follow DIR         instead of -i: score with the newest checkpoint in\n"
            "                           DIR (a train --checkpoint-dir) and switch to each\n"
            "                           newer one as training writes it\n"
            "      --follow-topic T     instead of -i: score with the model a group shares\n"
            "                           through its sync topic T (train --sync-topic) on\n"
            "                           --brokers: its newest snapshot, then every round\n"
            "                           completed after it, applied between messages;\n"
            "                           each output's streamlr.model header says which:\n"
            "                           sync:T@ROUND/OFFSET (docs/SYNC_PROTOCOL.md)\n"
            "      --follow-interval S  look for a newer checkpoint every S seconds (default\n"
            "                           1); it is read on a thread of its own, so scoring\n"
            "                           does not wait for it (--follow-topic: rounds are\n"
            "                           looked for, merged and copied there too)\n"
            "  -d, --data FILE          input, - for stdin; repeatable (bare FILE too)\n"
            "      --format F           msgpack | vw | libsvm | criteo (default: from the\n"
            "                           extension, else vw); --from F is the same\n"
            "  -p, --predictions FILE   write P(y=1|x) per example, one per line, in input\n"
            "                           order (- for stdout), then the example's tag if it\n"
            "                           has one, as VW does (0.55 tag1); a bad record gets\n"
            "                           \"nan\"\n"
            "      --strict             stop at the first bad record\n"
            "      --threads N          2: decode and hash on a second thread while the\n"
            "                           first scores; 1: one thread (default: scoring is\n"
            "                           cheap beside decoding, so a second thread pays\n"
            "                           only on an idle core; BENCHMARKS.md; --follow\n"
            "                           scores on one).  Same output\n"
            "      --quiet              no summary\n"
            "  -t, --testonly           accepted (VW's -t): predict never learns\n"
            "      --loss_function logistic, --link logistic  accepted (VW's; what predict\n"
            "                           does); any other value is refused\n"
            "  -h, --help               this text\n"
            "\n"
            "Kafka (scoring a topic; docs/KAFKA.md):\n"
            "      --brokers LIST       bootstrap servers, HOST:PORT[,HOST:PORT..]\n"
            "      --topic T[,T2..]     topics of examples to score (repeatable); format as\n"
            "                           train --brokers reads it (default msgpack)\n"
            "      --group G            consumer group (partitions shared, offsets committed)\n"
            "      --output-topic OUT   one message per input message: same key and headers\n"
            "                           plus streamlr.source (topic[partition]@offset) and\n"
            "                           streamlr.model (the model's file name, or its sync\n"
            "                           topic position); value: one\n"
            "                           line per example as -p writes them, with the tag\n"
            "                           (\"nan\" for a bad record)\n"
            "      --output-partition key|same  key: the producer's partitioner on the key\n"
            "                           (default); same: the input partition's number\n"
            "  -X key=value             any librdkafka property (repeatable), for both the\n"
            "                           consumer and the producer\n"
            "      --kafka-config FILE  librdkafka properties file (key=value lines)\n"
            "      --partitions all|N,..  consume these partitions directly, no rebalancing\n"
            "      --exit-at-end        stop once every assigned partition is consumed\n"
            "      --commit-interval S  commit acknowledged offsets every S seconds (default 1)\n"
            "      --dead-letter FILE   append bad records there as JSON lines\n"
            "                           (docs/DEAD_LETTERS.md)\n"
            "  Delivery is at-least-once: an input offset is committed only after the\n"
            "  predictions made from it are acknowledged by the broker, so a restart may\n"
            "  score some messages again, never skips one.  SIGINT/SIGTERM: stop consuming,\n"
            "  wait for outstanding deliveries (bounded), commit, leave the group, exit 0.\n"
            "\n"
            "With labelled input the summary (stderr) gives the test log loss and AUC.\n"
            "Exit status: 0 done (or stopped on request), 1 the job failed, 2 usage error.\n");
}

static void model_opened(const slr_follower *f)
{
    fprintf(stderr, "streamlr predict: scoring with %s (%llu examples learned)\n",
            slr_follower_path(f), (unsigned long long)slr_follower_state(f)->metrics.examples);
}

/* The stream job: options checked by the caller. */
static int predict_kafka(cli_kafka_input *kin, slr_predict_options *po, const char *dead_letter,
                         bool quiet)
{
    slr_error err;
    slr_dead_letter_sink *dl = NULL;
    if (dead_letter && slr_dead_letter_file_open(&dl, dead_letter, &err) != SLR_OK) {
        fprintf(stderr, "streamlr predict: %s\n", err.msg);
        return 1;
    }
    po->dead_letters = dl;
    po->producer_config = (const char *const *)kin->conf.kv; /* -X serves both clients */
    po->n_producer_config = kin->conf.n;
    po->stop = &cli_stop_requested;
    po->log = cli_log;
    cli_catch_stop_signals();
    slr_predict_result res;
    slr_status st = slr_predict_kafka(po, &kin->k, &res, &err);
    if (dl)
        dl->close(dl);
    if (st != SLR_OK)
        fprintf(stderr, "streamlr predict: %s\n", err.msg);
    if (quiet)
        return st == SLR_OK ? 0 : 1;
    const slr_metrics *m = &res.metrics;
    fprintf(stderr, "messages = %llu, examples = %llu (labelled %llu, unlabelled %llu), bad "
                    "records = %llu",
            (unsigned long long)res.messages, (unsigned long long)res.examples,
            (unsigned long long)m->examples, (unsigned long long)m->unlabelled,
            (unsigned long long)res.bad);
    if (dead_letter)
        fprintf(stderr, " (dead letters %llu)", (unsigned long long)res.dead_lettered);
    fprintf(stderr, "\npredictions delivered = %llu messages, undelivered = %llu\n",
            (unsigned long long)res.delivered, (unsigned long long)res.undelivered);
    if (m->lost)
        fprintf(stderr, "LOST (deleted by retention before they were scored) = %llu messages\n",
                (unsigned long long)m->lost);
    if (po->follow_dir || po->follow_topic)
        fprintf(stderr, "model switches = %llu, last model %s\n",
                (unsigned long long)res.model_switches, res.model_path);
    if (m->examples) {
        fprintf(stderr, "test logloss = %.6f\n", slr_metrics_logloss(m));
        fprintf(stderr, "test AUC = %.6f (histogram, within %.2g of the exact AUC)\n", res.auc,
                res.auc_error_bound);
        fprintf(stderr, "mean prediction = %.4f, positive rate = %.4f\n",
                m->predicted / m->weight, m->positives / m->weight);
    }
    return st == SLR_OK ? 0 : 1;
}

/* The command line, parsed into this before anything is opened (as
 * cmd_convert.c does): parse_args reads argv, check_args refuses what does
 * not go together and settles the format, then the stream job
 * (predict_kafka) or the file job (predict_files) runs. */
typedef struct predict_args {
    const char **files;
    uint32_t n_files;
    const char *model, *pred_path, *follow_dir, *follow_topic;
    double follow_interval;
    uint32_t threads;
    bool threads_given;
    slr_format format;
    bool format_given, strict, quiet;
    bool stream;      /* checked: a Kafka job (--brokers or --topic) */
    cli_kafka_input kin;
    slr_predict_options po;
    const char *dead_letter;
    bool stream_flag; /* an option of the stream job only was given */
} predict_args;

static bool predict_args_init(predict_args *a, int argc)
{
    memset(a, 0, sizeof *a);
    a->follow_interval = 1.0;
    a->threads = 1;
    a->format = SLR_FORMAT_VW;
    cli_kafka_input_init(&a->kin);
    slr_predict_options_init(&a->po);
    a->files = calloc((size_t)argc + 1, sizeof *a->files);
    return a->files != NULL;
}

static void predict_args_free(predict_args *a)
{
    cli_kafka_input_free(&a->kin);
    free(a->files);
}

/* argv into a; -1 to go on, else the exit status */
static int parse_args(int argc, char **argv, predict_args *a)
{
    static const struct option longopts[] = {
        {"initial-model", required_argument, 0, 'i'},
        {"initial_regressor", required_argument, 0, 'i'},
        {"data", required_argument, 0, 'd'},
        {"format", required_argument, 0, OPT_FORMAT},
        {"from", required_argument, 0, OPT_FORMAT}, /* convert's spelling */
        {"predictions", required_argument, 0, 'p'},
        {"strict", no_argument, 0, OPT_STRICT},
        {"threads", required_argument, 0, OPT_THREADS},
        {"quiet", no_argument, 0, OPT_QUIET},
        {"follow", required_argument, 0, OPT_FOLLOW},
        {"follow-interval", required_argument, 0, OPT_FOLLOW_INTERVAL},
        {"follow-topic", required_argument, 0, OPT_FOLLOW_TOPIC},
        CLI_KAFKA_LONG_OPTIONS,
        {"output-topic", required_argument, 0, OPT_OUTPUT_TOPIC},
        {"output-partition", required_argument, 0, OPT_OUTPUT_PARTITION},
        {"commit-interval", required_argument, 0, OPT_COMMIT_INTERVAL},
        {"dead-letter", required_argument, 0, OPT_DEAD_LETTER},
        CLI_VW_LOGISTIC_LONG_OPTIONS,
        {"testonly", no_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    slr_error err;
    optind = 1;
    int c;
    while ((c = cli_getopt(argc, argv, "i:d:p:X:th", longopts)) != -1) {
        int handled = cli_kafka_option("predict", c, optarg, &a->kin);
        if (!handled)
            handled = cli_vw_logistic_option("predict", c, optarg);
        if (handled < 0)
            return 2;
        if (handled)
            continue;
        switch (c) {
        case OPT_OUTPUT_TOPIC: a->po.output_topic = optarg; a->stream_flag = true; break;
        case OPT_OUTPUT_PARTITION:
            if (strcmp(optarg, "key") && strcmp(optarg, "same")) {
                fprintf(stderr, "streamlr predict: --output-partition takes key or same\n");
                return 2;
            }
            a->po.output_partition = strcmp(optarg, "same") ? SLR_OUTPUT_BY_KEY : SLR_OUTPUT_SAME;
            a->stream_flag = true;
            break;
        case OPT_COMMIT_INTERVAL:
            if (!cli_double("predict", "--commit-interval", optarg,
                            &a->po.commit_interval_seconds) ||
                !(a->po.commit_interval_seconds > 0)) {
                fprintf(stderr, "streamlr predict: --commit-interval must be > 0 seconds\n");
                return 2;
            }
            a->stream_flag = true;
            break;
        case OPT_DEAD_LETTER: a->dead_letter = optarg; a->stream_flag = true; break;
        case 'i': a->model = optarg; break;
        case 'd': a->files[a->n_files++] = optarg; break;
        case 'p': a->pred_path = optarg; break;
        case OPT_FORMAT:
            if (slr_format_parse(optarg, &a->format, &err) != SLR_OK) {
                fprintf(stderr, "streamlr predict: %s\n", err.msg);
                return 2;
            }
            a->format_given = true;
            break;
        case OPT_STRICT: a->strict = true; break;
        case OPT_THREADS:
            if (!cli_u32("predict", "--threads", optarg, &a->threads) || a->threads < 1 ||
                a->threads > 2) {
                fprintf(stderr, "streamlr predict: --threads takes 1 or 2\n");
                return 2;
            }
            a->threads_given = true;
            break;
        case 't': break; /* VW's -t: predict never learns */
        case OPT_QUIET: a->quiet = true; break;
        case OPT_FOLLOW: a->follow_dir = optarg; break;
        case OPT_FOLLOW_TOPIC: a->follow_topic = optarg; break;
        case OPT_FOLLOW_INTERVAL:
            if (!cli_double("predict", "--follow-interval", optarg, &a->follow_interval) ||
                !(a->follow_interval > 0)) {
                fprintf(stderr, "streamlr predict: --follow-interval must be > 0 seconds\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: return 2; /* cli_getopt said what was wrong */
        }
    }
    for (int i = optind; i < argc; i++)
        a->files[a->n_files++] = argv[i];
    return -1;
}

/* -1 to go on, else the exit status.  Nothing is opened yet. */
static int check_args(predict_args *a)
{
    const int models = (a->model != NULL) + (a->follow_dir != NULL) + (a->follow_topic != NULL);
    /* --brokers alone with --follow-topic is where the sync topic is: files are scored */
    if (cli_kafka_input_given(&a->kin) && (a->kin.n_topics || !a->follow_topic)) {
        if (a->n_files || a->pred_path || a->strict || a->threads_given) {
            fprintf(stderr, "streamlr predict: a Kafka job takes no --data, -p, --strict or "
                            "--threads\n");
            return 2;
        }
        if (models != 1 || !a->kin.n_topics || !a->kin.k.group || !a->po.output_topic) {
            fprintf(stderr, "streamlr predict: a Kafka job needs one of -i MODEL, --follow DIR "
                            "or --follow-topic T, "
                            "--topic, --group and --output-topic (and --brokers, unless "
                            "bootstrap.servers is in --kafka-config)\n");
            return 2;
        }
        a->po.format = a->format_given ? a->format : SLR_FORMAT_MSGPACK;
        a->po.model = a->model;
        a->po.follow_dir = a->follow_dir;
        a->po.follow_topic = a->follow_topic;
        a->po.follow_interval_seconds = a->follow_interval;
        a->stream = true;
        return -1;
    }
    if (a->kin.flag || a->stream_flag) {
        fprintf(stderr, "streamlr predict: --group, -X, --kafka-config, --partitions, "
                        "--exit-at-end, --output-topic, --output-partition, --commit-interval "
                        "and --dead-letter apply to Kafka input (--brokers, --topic)\n");
        return 2;
    }
    if (models != 1 || a->n_files == 0) {
        fprintf(stderr, "streamlr predict: need -i MODEL, --follow DIR or --follow-topic T (one "
                        "of them), and --data FILE\n");
        return 2;
    }
    if (a->follow_topic && !a->kin.k.brokers) {
        fprintf(stderr, "streamlr predict: --follow-topic needs --brokers\n");
        return 2;
    }
    if (!a->format_given && !slr_format_guess(a->files[0], &a->format))
        a->format = SLR_FORMAT_VW;

    return -1;
}

static void log_bad(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "streamlr predict: %s\n", msg);
}

/* The summary of a file job, on stderr. */
static void summary(const slr_metrics *m, uint64_t unlabelled, uint64_t bad, double auc)
{
    fprintf(stderr, "examples = %llu (labelled %llu, unlabelled %llu), bad records = %llu\n",
            (unsigned long long)(m->examples + unlabelled), (unsigned long long)m->examples,
            (unsigned long long)unlabelled, (unsigned long long)bad);
    if (m->examples) {
        fprintf(stderr, "test logloss = %.6f\n", slr_metrics_logloss(m));
        fprintf(stderr, "test AUC = %.6f\n", auc);
        fprintf(stderr, "mean prediction = %.4f, positive rate = %.4f\n",
                m->predicted / m->weight, m->positives / m->weight);
    }
}

/* The file job (slr_predict_files). */
static int predict_files(const predict_args *a)
{
    slr_error err;
    slr_learner *l = NULL;
    slr_follower *follower = NULL;
    slr_job_state st;
    slr_job_state_init(&st);
    FILE *pred = NULL;
    int rc = 1;
    if (a->follow_dir || a->follow_topic) {
        slr_sync_topic_config sc = {.brokers = a->kin.k.brokers, .topic = a->follow_topic};
        if ((a->follow_topic
                 ? slr_follower_open_topic(&follower, &sc, 60000, cli_log, NULL, &err)
                 : slr_follower_open(&follower, a->follow_dir, cli_log, NULL, &err)) != SLR_OK) {
            fprintf(stderr, "streamlr predict: %s\n", err.msg);
            goto done;
        }
        model_opened(follower);
    } else if (slr_checkpoint_read(a->model, &l, &st, &err) != SLR_OK) {
        fprintf(stderr, "streamlr predict: %s\n", err.msg);
        goto done;
    } else {
        slr_learner_sync(l); /* settle every owed penalty once; scoring then only reads */
    }
    if (a->pred_path) {
        pred = strcmp(a->pred_path, "-") ? fopen(a->pred_path, "w") : stdout;
        if (!pred) {
            perror(a->pred_path);
            goto done;
        }
    }
    slr_predict_files_options o;
    slr_predict_files_options_init(&o);
    o.files = a->files;
    o.n_files = a->n_files;
    o.format = a->format;
    o.model = l;
    o.follow = follower;
    o.follow_interval_seconds = a->follow_interval;
    o.predictions = pred;
    o.strict = a->strict;
    o.threads = a->threads;
    o.auc = !a->quiet; /* only the summary shows it */
    o.log = log_bad;
    slr_predict_files_result res;
    if (slr_predict_files(&o, &res, &err) != SLR_OK) {
        fprintf(stderr, "streamlr predict: %s\n", err.msg);
        goto done;
    }
    if (pred && pred != stdout) {
        FILE *f = pred;
        pred = NULL;
        if (fclose(f) != 0) {
            perror(a->pred_path);
            goto done;
        }
    }
    if (!a->quiet && follower)
        fprintf(stderr, "model switches = %llu, last model %s\n",
                (unsigned long long)res.model_switches, slr_follower_path(follower));
    if (!a->quiet)
        summary(&res.metrics, res.unlabelled, res.bad, res.auc);
    rc = 0;
done:
    if (pred && pred != stdout)
        fclose(pred);
    slr_learner_destroy(l);
    slr_follower_close(follower);
    slr_job_state_free(&st);
    return rc;
}

int slr_cmd_predict(int argc, char **argv)
{
    predict_args a;
    int rc = predict_args_init(&a, argc) ? parse_args(argc, argv, &a) : 1;
    if (rc < 0)
        rc = check_args(&a);
    if (rc < 0)
        rc = a.stream ? predict_kafka(&a.kin, &a.po, a.dead_letter, a.quiet) : predict_files(&a);
    predict_args_free(&a);
    return rc;
}
