/* cmd_inspect.c - `streamlr inspect MODEL`: what a model or checkpoint holds:
 * settings, progress, input position, sparsity and the largest weights; and
 * `streamlr inspect --brokers B --sync-topic T`: where a group sharing a
 * model through a sync topic is (docs/SYNC_PROTOCOL.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli_options.h"
#include "commands.h"
#include "kafka_conf.h"
#include "streamlr/checkpoint.h"
#include "streamlr/sync_topic.h"

#define MAX_NAMES_SHOWN 4 /* per weight; the rest are counted */

typedef struct top_weights {
    uint64_t *index;
    double *w;
    unsigned n, k;
    uint64_t nnz;
} top_weights;

/* keep the k largest |w| in a small sorted array (k is tiny) */
static int collect(void *ctx, uint64_t index, double w)
{
    top_weights *t = ctx;
    t->nnz++;
    if (t->k == 0)
        return 0;
    if (t->n == t->k && fabs(w) <= fabs(t->w[t->n - 1]))
        return 0;
    unsigned i = t->n < t->k ? t->n++ : t->n - 1;
    while (i > 0 && fabs(t->w[i - 1]) < fabs(w)) {
        t->w[i] = t->w[i - 1];
        t->index[i] = t->index[i - 1];
        i--;
    }
    t->w[i] = w;
    t->index[i] = index;
    return 0;
}

/* The names that hash to `index` (several if they collide), in first-seen
 * order.  A linear scan per weight shown: inspect shows few. */
static void print_names(const slr_names *names, uint32_t index)
{
    unsigned shown = 0, more = 0;
    for (uint64_t i = 0; i < slr_names_count(names); i++) {
        slr_name_ref r = slr_names_at(names, i);
        if (r.index != index)
            continue;
        if (shown < MAX_NAMES_SHOWN)
            printf("%s%.*s", shown++ ? ", " : "  ", (int)r.len, r.name);
        else
            more++;
    }
    if (more)
        printf(" (+%u more)", more);
}

/* A sync topic: the group's round and position, each partition's reach. */
/* A group member's checkpoint: where it stands in the group's rounds and
 * the source ranges its model holds (the ledger), per partition. */
static void print_sync(const slr_job_state *st)
{
    const slr_sync_mark *y = &st->sync;
    printf("sync             --sync-topic %s --sync-every %lld: model after %llu rounds, read on "
           "at offset %lld\n",
           y->topic, (long long)y->slice, (unsigned long long)y->round, (long long)y->position);
    slr_sync_ledger *g;
    slr_error err;
    if (slr_sync_ledger_decode(y->ledger, y->ledger_len, &g, &err) != SLR_OK) {
        printf("merged           ? (%s)\n", err.msg);
        return;
    }
    printf("merged          ");
    for (uint32_t i = 0; i < st->n_kafka; i++) {
        int64_t r[4][2];
        size_t n = slr_sync_ledger_ranges(g, st->kafka[i].topic, st->kafka[i].partition, r, 4);
        printf("%s %s[%d]", i ? "," : "", st->kafka[i].topic, st->kafka[i].partition);
        if (!n)
            printf(" nothing");
        for (size_t j = 0; j < n && j < 4; j++)
            printf(" [%lld, %lld)", (long long)r[j][0], (long long)r[j][1]);
        if (n > 4)
            printf(" ... (%zu ranges)", n);
    }
    printf("\n");
    slr_sync_ledger_destroy(g);
}

static int inspect_sync_topic(const char *brokers, const char *topic, const cli_kafka_conf *kc)
{
    slr_sync_topic_config sc = {.brokers = brokers, .topic = topic,
                                .properties = (const char *const *)kc->kv, .n_properties = kc->n};
    slr_sync_topic_info info;
    slr_error err;
    if (slr_sync_topic_inspect(&sc, 60000, &info, &err) != SLR_OK) {
        fprintf(stderr, "streamlr inspect: %s\n", err.msg);
        return 1;
    }
    printf("sync topic       %s (offsets %lld..%lld)\n", topic, (long long)info.low,
           (long long)info.high);
    if (info.snapshot)
        printf("snapshot         round %llu at offset %llu, %llu bytes (the newest complete one; "
               "%llu snapshot records in all)\n",
               (unsigned long long)info.snapshot_round, (unsigned long long)info.snapshot_offset,
               (unsigned long long)info.snapshot_bytes, (unsigned long long)info.snapshot_records);
    else
        printf("snapshot         none complete (%llu snapshot records): a scorer cannot follow "
               "this topic yet\n",
               (unsigned long long)info.snapshot_records);
    if (!info.source_topic[0]) {
        printf("rounds           none yet: the topic holds no delta\n");
        slr_sync_topic_info_free(&info);
        return 0;
    }
    printf("source           %s, %d partitions, slices of %lld offsets\n",
           info.source_topic, (int)info.source_partitions, (long long)info.slice);
    printf("rounds           %llu complete (rounds %llu..%llu)%s\n", (unsigned long long)info.rounds,
           (unsigned long long)info.first_round,
           (unsigned long long)(info.first_round + info.rounds) - (info.rounds ? 1 : 0),
           info.ended ? ", every partition's input ended" : "");
    printf("model position   offset %lld (after the record that completed the last round)\n",
           (long long)info.position);
    printf("repeats          %llu identical, %llu different, %llu late\n",
           (unsigned long long)info.identical, (unsigned long long)info.different,
           (unsigned long long)info.late);
    printf("partition  deltas  learned to  state\n");
    for (int32_t p = 0; p < info.source_partitions; p++)
        printf("%9d  %6llu  %10lld  %s\n", (int)p, (unsigned long long)info.deltas[p],
               (long long)(info.reach[p] < 0 ? 0 : info.reach[p]),
               info.part_ended[p] ? "ended" : info.deltas[p] ? "learning" : "no delta yet");
    slr_sync_topic_info_free(&info);
    return 0;
}

#define INSPECT_USAGE "usage: streamlr inspect [--top N] MODEL\n" \
                      "       streamlr inspect --brokers B --sync-topic T [-X key=value]...\n"

int slr_cmd_inspect(int argc, char **argv)
{
    enum { OPT_SYNC_TOPIC = OPT_FIRST_COMMAND_SPECIFIC };
    static const struct option longopts[] = {{"top", required_argument, 0, 't'},
                                             {"brokers", required_argument, 0, OPT_BROKERS},
                                             {"sync-topic", required_argument, 0, OPT_SYNC_TOPIC},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    uint32_t top = 20;
    const char *brokers = NULL, *sync_topic = NULL;
    cli_kafka_conf kc = {0};
    optind = 1;
    int c;
    while ((c = cli_getopt(argc, argv, "t:X:h", longopts)) != -1) {
        if (c == 't') {
            if (!cli_u32("inspect", "--top", optarg, &top) || top > 100000)
                return 2;
        } else if (c == OPT_BROKERS) {
            brokers = optarg;
        } else if (c == OPT_SYNC_TOPIC) {
            sync_topic = optarg;
        } else if (c == 'X') {
            if (!cli_kafka_conf_add(&kc, "inspect", optarg)) {
                cli_kafka_conf_free(&kc);
                return 2;
            }
        } else if (c == 'h') {
            printf(INSPECT_USAGE "\n"
                   "Show a model's (or checkpoint's) hyperparameters, examples seen, progressive\n"
                   "log loss, AUC and calibration, input position, number of nonzero weights\n"
                   "and the N largest (default 20), with their feature names if the model was\n"
                   "trained with --keep-names (\"ns^name\", \"ns^a*ns^b\" for a -q pair; all\n"
                   "names of an index when features collide).\n"
                   "With --sync-topic: what a group's sync topic holds (docs/SYNC_PROTOCOL.md):\n"
                   "its source topic and slice size, the rounds complete and the model's\n"
                   "position, repeated deltas, and per source partition how far it is learned.\n\n"
                   "  -t, --top N          show the N largest weights (0..100000)\n"
                   "      --brokers B      Kafka bootstrap servers (with --sync-topic)\n"
                   "      --sync-topic T   inspect the sync topic T instead of a model\n"
                   "  -X key=value         any librdkafka consumer property (repeatable)\n"
                   "  -h, --help           this text\n");
            cli_kafka_conf_free(&kc);
            return 0;
        } else {
            cli_kafka_conf_free(&kc);
            return 2; /* cli_getopt said what was wrong */
        }
    }
    if (sync_topic || brokers) {
        int rc = 2;
        if (!sync_topic || !brokers || optind != argc) {
            fprintf(stderr, "streamlr inspect: --sync-topic and --brokers go together, "
                            "without a MODEL\n" INSPECT_USAGE);
            cli_see_help("inspect");
        } else {
            rc = inspect_sync_topic(brokers, sync_topic, &kc);
        }
        cli_kafka_conf_free(&kc);
        return rc;
    }
    if (kc.n) {
        fprintf(stderr, "streamlr inspect: -X needs --sync-topic\n");
        cli_kafka_conf_free(&kc);
        return 2;
    }
    if (optind + 1 != argc) {
        fprintf(stderr, INSPECT_USAGE);
        cli_see_help("inspect");
        return 2;
    }
    const char *path = argv[optind];
    slr_learner *l;
    slr_job_state st;
    slr_error err;
    slr_job_state_init(&st);
    if (slr_checkpoint_read(path, &l, &st, &err) != SLR_OK) {
        fprintf(stderr, "streamlr inspect: %s\n", err.msg);
        return 1;
    }
    const slr_learner_config *cfg = slr_learner_config_of(l);
    const slr_metrics *m = &st.metrics;
    time_t when = (time_t)st.created;
    char date[64] = "?";
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&when));

    printf("model            %s (checkpoint #%llu, written %s)\n", path,
           (unsigned long long)st.sequence, date);
    printf("hashing          -b %u (%llu weights)", cfg->hashing.bits,
           (unsigned long long)slr_learner_bias_index(l));
    for (unsigned i = 0; i < cfg->hashing.n_quadratic; i++)
        printf(" -q %c%c", cfg->hashing.quadratic[i][0], cfg->hashing.quadratic[i][1]);
    for (unsigned i = 0; i < cfg->hashing.n_cubic; i++)
        printf(" --cubic %.3s", cfg->hashing.cubic[i]);
    if (slr_hashing_ignores_any(&cfg->hashing)) {
        /* the shorter of the two ways to say it */
        int n_ignored = 0;
        for (int b = 0; b < 256; b++)
            n_ignored += slr_hashing_ignores(&cfg->hashing, (unsigned char)b);
        bool keep = n_ignored > 128;
        printf(keep ? " --keep '" : " --ignore '");
        for (int b = 0; b < 256; b++)
            if (slr_hashing_ignores(&cfg->hashing, (unsigned char)b) != keep)
                printf(b > ' ' && b < 127 ? "%c" : "\\x%02x", b);
        printf("'");
    }
    if (cfg->hashing.any_ignored_linear) {
        printf(" --ignore_linear '");
        for (int b = 0; b < 256; b++)
            if (slr_letter_in(cfg->hashing.ignored_linear, (unsigned char)b))
                printf(b > ' ' && b < 127 ? "%c" : "\\x%02x", b);
        printf("'");
    }
    if (cfg->noconstant)
        printf(" --noconstant");
    if (cfg->optimizer == SLR_OPTIMIZER_FTRL) {
        printf("\noptimizer        ftrl, --ftrl-alpha %g --ftrl-beta %g", cfg->ftrl_alpha,
               cfg->ftrl_beta);
        printf("\npenalty          --l1 %g --l2 %g (FTRL-Proximal's lambda_1, lambda_2)\n", cfg->l1,
               cfg->l2);
    } else {
        printf("\nschedule         %s, -l %g", slr_schedule_name(cfg->schedule), cfg->eta);
        if (cfg->schedule == SLR_SCHEDULE_INVPOW)
            printf(", --power-t %g, --initial-t %g", cfg->power_t, cfg->initial_t);
        if (cfg->schedule == SLR_SCHEDULE_ADAGRAD)
            printf(", --adagrad-delta %g", cfg->adagrad_delta);
        printf("\npenalty          --l1 %g --l2 %g --tg-period %u --tg-threshold %g%s\n", cfg->l1,
               cfg->l2, cfg->tg_period, cfg->tg_threshold, cfg->eager ? " (eager)" : "");
    }
    if (cfg->decay < 1.0)
        printf("decay            --decay %g (memory ~%.0f examples)\n", cfg->decay,
               1.0 / (1.0 - cfg->decay));
    /* A run started from -i carries the model's updates but counts its
     * metrics afresh; say which number is which rather than mix them. */
    uint64_t steps = slr_learner_steps(l);
    if (st.sync.topic) /* a group's model: its metrics are what this member scored */
        printf("examples learned %llu by the group's model (all its members)\n"
               "metrics cover    %llu examples this member scored before learning "
               "(weighted %.6g, positives %.6g)\n",
               (unsigned long long)steps, (unsigned long long)m->examples, m->weight,
               m->positives);
    else if (steps == m->examples)
        printf("examples learned %llu (weighted %.6g, positives %.6g)\n",
               (unsigned long long)steps, m->weight, m->positives);
    else
        printf("examples learned %llu by these weights in all (with the -i model's)\n"
               "metrics cover    %llu examples since the run started from -i "
               "(weighted %.6g, positives %.6g)\n",
               (unsigned long long)steps, (unsigned long long)m->examples, m->weight,
               m->positives);
    printf("progressive loss %.6f", slr_metrics_logloss(m));
    if (m->weight > 0)
        printf(" (mean prediction %.4f vs positive rate %.4f)", m->predicted / m->weight,
               m->positives / m->weight);
    printf("\n");
    if (st.histogram) {
        double auc, bound;
        slr_auc_histogram_auc(st.histogram, &auc, &bound);
        if (isfinite(auc))
            printf("progressive AUC  %.6f (all examples, exact within %.2g)\n", auc, bound);
    }
    if (st.window && st.window->size) {
        slr_window_stats ws;
        slr_auc_window_stats(st.window, &ws);
        printf("last %-11llu AUC %.6f, loss %.6f, mean prediction %.4f vs positive rate %.4f\n",
               (unsigned long long)ws.examples, ws.auc, ws.weight > 0 ? ws.loss / ws.weight : 0.0,
               ws.weight > 0 ? ws.predicted / ws.weight : 0.0,
               ws.weight > 0 ? ws.positives / ws.weight : 0.0);
    }
    printf("bad records      %llu, unlabelled %llu\n", (unsigned long long)m->bad,
           (unsigned long long)m->unlabelled);
    printf("input            format %s", st.format && *st.format ? st.format : "?");
    if (st.source == SLR_SOURCE_FILES) {
        printf(", %u file(s)", st.n_files);
        if (st.file.file_index < st.n_files)
            printf(", next record at %s byte %llu (line %llu)", st.files[st.file.file_index],
                   (unsigned long long)st.file.offset, (unsigned long long)st.file.line);
        else
            printf(", all consumed");
        printf(", %llu records", (unsigned long long)st.file.records);
    }
    for (uint32_t i = 0; i < st.n_kafka; i++)
        printf("%s %s[%d] next offset %lld", i ? "," : ", kafka", st.kafka[i].topic,
               st.kafka[i].partition, (long long)st.kafka[i].offset);
    printf("\n");
    if (st.sync.topic)
        print_sync(&st);

    top_weights t = {calloc(top ? top : 1, sizeof(uint64_t)), calloc(top ? top : 1, sizeof(double)),
                     0, top, 0};
    slr_learner_foreach_weight(l, collect, &t);
    printf("nonzero weights  %llu of %llu (%.3g%%), bias %.6g\n", (unsigned long long)t.nnz,
           (unsigned long long)slr_learner_bias_index(l) + 1,
           100.0 * (double)t.nnz / (double)(slr_learner_bias_index(l) + 1),
           slr_learner_weight(l, slr_learner_bias_index(l)));
    if (st.names)
        printf("feature names    %llu kept (--keep-names, at most %llu; %llu occurrences not "
               "kept)\n",
               (unsigned long long)slr_names_count(st.names),
               (unsigned long long)slr_names_max(st.names),
               (unsigned long long)slr_names_dropped(st.names));
    if (t.n)
        printf("largest |weight|:\n");
    for (unsigned i = 0; i < t.n; i++) {
        printf("  %12llu %+.6g", (unsigned long long)t.index[i], t.w[i]);
        if (t.index[i] == slr_learner_bias_index(l))
            printf("  " SLR_BIAS_NAME " (bias)");
        else if (st.names)
            print_names(st.names, (uint32_t)t.index[i]);
        printf("\n");
    }
    free(t.index);
    free(t.w);
    slr_learner_destroy(l);
    slr_job_state_free(&st);
    return 0;
}
