/* cmd_predict.c - `streamlr predict`: score examples with a trained model.
 *
 * One probability per example, in input order; a record that cannot be
 * decoded gets "nan" so that line i of the output still answers example i.
 * With labelled input it also reports the test log loss and AUC.
 *
 * With --follow DIR it is a scoring job beside a training job: it scores
 * with the newest checkpoint in DIR and switches when a newer one appears
 * (looking every --follow-interval seconds, and whenever the input is idle),
 * so `tail -F events | streamlr predict --follow ckpt -p - -` serves the
 * freshest model.  Predictions are flushed whenever the input runs dry. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli_options.h"
#include "commands.h"
#include "streamlr/checkpoint.h"
#include "streamlr/decode.h"
#include "streamlr/learner.h"
#include "streamlr/metrics.h"
#include "streamlr/source.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: streamlr predict -i MODEL|--follow DIR --data FILE|- [--format F]\n"
            "                        [-p PREDICTIONS]\n"
            "\n"
            "Score examples with a model written by train -f (or a checkpoint).\n"
            "\n"
            "  -i, --initial-model MODEL  the model\n"
            "      --follow DIR         instead of -i: score with the newest checkpoint in\n"
            "                           DIR (a train --checkpoint-dir) and switch to each\n"
            "                           newer one as training writes it\n"
            "      --follow-interval S  look for a newer checkpoint every S seconds (default\n"
            "                           1; also whenever the input is idle)\n"
            "  -d, --data FILE          input, - for stdin; repeatable (bare FILE too)\n"
            "      --format F           msgpack | vw | libsvm | criteo (default: from the\n"
            "                           extension, else vw)\n"
            "  -p, --predictions FILE   write P(y=1|x) per example, one per line, in input\n"
            "                           order (- for stdout); a bad record gets \"nan\"\n"
            "      --strict             stop at the first bad record\n"
            "      --quiet              no summary\n"
            "  -h, --help               this text\n"
            "\n"
            "With labelled input the summary (stderr) gives the test log loss and AUC.\n");
}

typedef struct scores {
    double *p, *y, *w;
    uint64_t n, cap;
} scores;

static bool scores_push(scores *s, double p, double y, double w)
{
    if (s->n == s->cap) {
        uint64_t cap = s->cap ? s->cap * 2 : 4096;
        double *np = realloc(s->p, cap * sizeof *np);
        if (np)
            s->p = np;
        double *ny = realloc(s->y, cap * sizeof *ny);
        if (ny)
            s->y = ny;
        double *nw = realloc(s->w, cap * sizeof *nw);
        if (nw)
            s->w = nw;
        if (!np || !ny || !nw)
            return false;
        s->cap = cap;
    }
    s->p[s->n] = p;
    s->y[s->n] = y;
    s->w[s->n] = w;
    s->n++;
    return true;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void model_switched(const slr_follower *f, uint64_t switches)
{
    const slr_job_state *st = slr_follower_state(f);
    fprintf(stderr, "streamlr predict: %s %s (%llu examples learned)\n",
            switches ? "now scoring with" : "scoring with", slr_follower_path(f),
            (unsigned long long)st->metrics.examples);
}

/* Switch to a newer checkpoint if there is one; the example is rebuilt on
 * the new model's hashing (the old one is gone with the old learner). */
static bool follow(slr_follower *f, slr_example *ex, uint64_t *switches)
{
    if (!slr_follower_refresh(f))
        return false;
    slr_example_free(ex);
    slr_example_init(ex, &slr_learner_config_of(slr_follower_learner(f))->hashing);
    model_switched(f, ++*switches);
    return true;
}

int slr_cmd_predict(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"initial-model", required_argument, 0, 'i'},
        {"initial_regressor", required_argument, 0, 'i'},
        {"data", required_argument, 0, 'd'},
        {"format", required_argument, 0, OPT_FORMAT},
        {"predictions", required_argument, 0, 'p'},
        {"strict", no_argument, 0, OPT_STRICT},
        {"quiet", no_argument, 0, OPT_QUIET},
        {"follow", required_argument, 0, OPT_FOLLOW},
        {"follow-interval", required_argument, 0, OPT_FOLLOW_INTERVAL},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    uint32_t n_files = 0;
    const char *model = NULL, *pred_path = NULL, *follow_dir = NULL;
    double follow_interval = 1.0, next_follow = 0;
    slr_follower *follower = NULL;
    uint64_t switches = 0;
    slr_format format = SLR_FORMAT_VW;
    bool format_given = false, strict = false, quiet = false;
    slr_error err;
    int rc = 2;
    slr_learner *l = NULL;
    slr_job_state st;
    slr_job_state_init(&st);
    slr_decoder *dec = NULL;
    slr_file_source *src = NULL;
    slr_raw_example raw;
    slr_raw_example_init(&raw);
    slr_example ex;
    bool ex_ready = false;
    FILE *pred = NULL;
    scores sc = {0};
    slr_metrics m;
    slr_metrics_init(&m);
    uint64_t bad = 0, unlabelled = 0;

    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "i:d:p:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'i': model = optarg; break;
        case 'd': files[n_files++] = optarg; break;
        case 'p': pred_path = optarg; break;
        case OPT_FORMAT:
            if (slr_format_parse(optarg, &format, &err) != SLR_OK) {
                fprintf(stderr, "streamlr predict: %s\n", err.msg);
                goto done;
            }
            format_given = true;
            break;
        case OPT_STRICT: strict = true; break;
        case OPT_QUIET: quiet = true; break;
        case OPT_FOLLOW: follow_dir = optarg; break;
        case OPT_FOLLOW_INTERVAL:
            if (!cli_double("predict", "--follow-interval", optarg, &follow_interval) ||
                !(follow_interval > 0)) {
                fprintf(stderr, "streamlr predict: --follow-interval must be > 0 seconds\n");
                goto done;
            }
            break;
        case 'h': usage(stdout); rc = 0; goto done;
        default: usage(stderr); goto done;
        }
    }
    for (int i = optind; i < argc; i++)
        files[n_files++] = argv[i];
    if (!model == !follow_dir || n_files == 0) {
        fprintf(stderr, "streamlr predict: need -i MODEL or --follow DIR (one of them), and "
                        "--data FILE\n");
        goto done;
    }
    if (!format_given && !slr_format_guess(files[0], &format))
        format = SLR_FORMAT_VW;

    rc = 1;
    if (follow_dir) {
        if (slr_follower_open(&follower, follow_dir, cli_log, NULL, &err) != SLR_OK) {
            fprintf(stderr, "streamlr predict: %s\n", err.msg);
            goto done;
        }
        model_switched(follower, 0);
    } else {
        if (slr_checkpoint_read(model, &l, &st, &err) != SLR_OK) {
            fprintf(stderr, "streamlr predict: %s\n", err.msg);
            goto done;
        }
        slr_learner_sync(l); /* settle every owed penalty once; scoring then only reads */
    }
    slr_learner *scorer = follower ? slr_follower_learner(follower) : l;
    slr_example_init(&ex, &slr_learner_config_of(scorer)->hashing);
    ex_ready = true;
    if (slr_decoder_create(&dec, format, &err) != SLR_OK ||
        slr_file_source_open(&src, files, n_files, slr_format_is_text(format), &err) != SLR_OK) {
        fprintf(stderr, "streamlr predict: %s\n", err.msg);
        goto done;
    }
    if (pred_path) {
        pred = strcmp(pred_path, "-") ? fopen(pred_path, "w") : stdout;
        if (!pred) {
            perror(pred_path);
            goto done;
        }
    }

    uint64_t records = 0;
    while (!slr_file_source_done(src)) {
        const char *buf;
        size_t len, used = 0;
        bool at_end;
        slr_status sst;
        if (follower && (records++ & 255) == 0 && now_seconds() >= next_follow) {
            next_follow = now_seconds() + follow_interval;
            if (follow(follower, &ex, &switches))
                scorer = slr_follower_learner(follower);
        }
        slr_file_source_window(src, &buf, &len, &at_end);
        if (len == 0) {
            if (!at_end) {
                /* the input is idle (a pipe): hand out what we have, look for a newer model */
                while (!slr_file_source_wait(src, 200)) {
                    if (pred)
                        fflush(pred);
                    if (follower && follow(follower, &ex, &switches))
                        scorer = slr_follower_learner(follower);
                }
                if (slr_file_source_fill(src, &err) != SLR_OK)
                    goto io_error;
            } else if (!slr_file_source_next_file(src, &err, &sst) && sst != SLR_OK) {
                goto io_error;
            }
            continue;
        }
        slr_decode_result r = slr_decoder_next(dec, buf, len, at_end, &used, &raw, &err);
        if (r == SLR_DECODE_NEED_MORE) {
            if (slr_file_source_fill(src, &err) != SLR_OK)
                goto io_error;
            continue;
        }
        if (r == SLR_DECODE_EXAMPLE && slr_example_from_raw(&ex, &raw, &err) != SLR_OK)
            r = SLR_DECODE_BAD;
        if (r == SLR_DECODE_BAD) {
            slr_file_position pos;
            slr_file_source_position(src, &pos);
            if (slr_format_is_text(format))
                fprintf(stderr, "streamlr predict: %s:%llu: %s\n", slr_file_source_path(src),
                        (unsigned long long)pos.line, err.msg);
            else
                fprintf(stderr, "streamlr predict: %s@%llu: %s\n", slr_file_source_path(src),
                        (unsigned long long)pos.offset, err.msg);
            bad++;
            if (strict)
                goto done;
            if (pred)
                fputs("nan\n", pred);
        } else if (r == SLR_DECODE_EXAMPLE) {
            double z = slr_learner_margin(scorer, &ex), p = slr_sigmoid(z);
            if (pred)
                fprintf(pred, "%.9g\n", p);
            if (ex.has_label) {
                double loss = slr_logloss_margin(z, ex.label);
                slr_metrics_add(&m, p, loss, ex.label, ex.weight, ex.n_features);
                if (!scores_push(&sc, p, ex.label, ex.weight)) {
                    fprintf(stderr, "streamlr predict: out of memory for AUC\n");
                    goto done;
                }
            } else {
                unlabelled++;
            }
        }
        slr_file_source_consume(src, used);
    }
    if (pred && pred != stdout && fclose(pred) != 0) {
        pred = NULL;
        perror(pred_path);
        goto done;
    }
    if (pred == stdout)
        fflush(stdout);
    pred = NULL;
    if (!quiet && follower)
        fprintf(stderr, "model switches = %llu, last model %s\n", (unsigned long long)switches,
                slr_follower_path(follower));
    if (!quiet) {
        fprintf(stderr, "examples = %llu (labelled %llu, unlabelled %llu), bad records = %llu\n",
                (unsigned long long)(m.examples + unlabelled), (unsigned long long)m.examples,
                (unsigned long long)unlabelled, (unsigned long long)bad);
        if (m.examples) {
            fprintf(stderr, "test logloss = %.6f\n", slr_metrics_logloss(&m));
            fprintf(stderr, "test AUC = %.6f\n", slr_auc(sc.p, sc.y, sc.w, sc.n));
            fprintf(stderr, "mean prediction = %.4f, positive rate = %.4f\n",
                    m.predicted / m.weight, m.positives / m.weight);
        }
    }
    rc = 0;
    goto done;
io_error:
    fprintf(stderr, "streamlr predict: %s\n", err.msg);
done:
    if (pred && pred != stdout)
        fclose(pred);
    free(sc.p);
    free(sc.y);
    free(sc.w);
    if (ex_ready)
        slr_example_free(&ex);
    slr_raw_example_free(&raw);
    slr_file_source_close(src);
    slr_decoder_destroy(dec);
    slr_learner_destroy(l);
    slr_follower_close(follower);
    slr_job_state_free(&st);
    free(files);
    return rc;
}
