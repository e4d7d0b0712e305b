/* check_sync_topic.c - the sync topic (sync_topic.h) against the embedded
 * broker: groups of "processes" (threads, each with its own producer,
 * reader and data consumer) learn one model from an 8-partition topic
 * through per-slice deltas.  Every example must reach the model exactly once
 * (ledger coverage, group step count), and the model must be bit-identical
 * whatever the assignment of partitions to processes and across a crash
 * and restart of a process mid-round. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_testutil.h"
#include "learner/learner_io.h"
#include "streamlr/learner.h"
#include "streamlr/sync.h"
#include "streamlr/sync_topic.h"
#include "util/le.h"

#define BITS 12
#include "sync_testutil.h"
#define PARTS 8
#define SLICE 40
#define MAX_PROCS 8
#define WAIT_MS 60000

/* messages in partition p: ends at different rounds, some on a slice
 * boundary (an empty last slice), most in the middle of one */
static int64_t part_size(int p) { return p == 3 ? 4 * SLICE : 120 + 23 * p; }

static slr_learner_config test_config(void)
{
    slr_learner_config c;
    slr_learner_config_defaults(&c);
    slr_hashing_init(&c.hashing, BITS);
    c.eta = 0.5;
    c.l1 = 1e-4;
    c.l2 = 1e-3;
    return c;
}

/* The example a message's bytes stand for: drawn from a seed of the bytes. */
static void message_example(slr_example *ex, const void *buf, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ ((const unsigned char *)buf)[i]) * 1099511628211ull;
    test_rng r = {.s = h | 1};
    sync_test_example(ex, &r);
}

/* ------------------------------------------------------------- a process */

typedef struct proc {
    const char *bootstraps, *data_topic, *sync_topic;
    int parts[PARTS], n_parts;
    int64_t crash_after; /* in this round, stop after publishing one slice (-1: never) */
    /* results */
    unsigned char *model;
    size_t model_len;
    uint64_t rounds, steps;
    int64_t covered[PARTS][2]; /* the ledger's one range per partition, [from, to) */
    int ranges[PARTS];         /* how many ranges the ledger holds per partition */
    uint64_t identical, different, late;
    uint64_t replayed; /* rounds applied at start-up from the sync topic */
    char error[SLR_ERROR_MSG_MAX + 64];
} proc;

static slr_sync_topic_config sync_config(const proc *pr)
{
    return (slr_sync_topic_config){.brokers = pr->bootstraps, .topic = pr->sync_topic,
                                   .source_topic = pr->data_topic, .source_partitions = PARTS,
                                   .slice = SLICE};
}

#define FAIL_IF(cond, ...)                                                                  \
    do {                                                                                    \
        if (cond) {                                                                         \
            snprintf(pr->error, sizeof pr->error, __VA_ARGS__);                             \
            goto done;                                                                      \
        }                                                                                   \
    } while (0)

/* Learn slice [from, to) of partition p into m. */
static int learn_slice(rd_kafka_topic_t *rkt, int p, int64_t from, int64_t to,
                       slr_sync_member *m, slr_example *ex)
{
    for (int64_t o = from; o < to;) {
        rd_kafka_message_t *msg = rd_kafka_consume(rkt, p, 1000);
        if (!msg)
            continue;
        if (msg->err) {
            rd_kafka_message_destroy(msg);
            continue;
        }
        if (msg->offset != o) {
            rd_kafka_message_destroy(msg);
            return -1;
        }
        message_example(ex, msg->payload, msg->len);
        double loss;
        slr_sync_member_learn(m, ex, &loss);
        rd_kafka_message_destroy(msg);
        o++;
    }
    return 0;
}

static void *run_proc(void *arg)
{
    proc *pr = arg;
    slr_learner_config cfg = test_config();
    slr_sync_topic_config sc = sync_config(pr);
    slr_sync_member *m[PARTS] = {0};
    slr_sync_publisher *pub = NULL;
    slr_sync_reader *rd = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    slr_error err;
    char errstr[512];
    bool started[PARTS] = {false};
    for (int i = 0; i < pr->n_parts; i++) {
        char name[SLR_SYNC_MAX_MEMBER_ID + 1];
        FAIL_IF(slr_sync_slice_name(name, sizeof name, pr->data_topic, pr->parts[i], &err) ||
                    slr_sync_member_create(&m[i], &cfg, name, 1, &err),
                "%s", err.msg);
    }
    FAIL_IF(slr_sync_publisher_create(&pub, &sc, &err) || slr_sync_reader_create(&rd, &sc, 0, 0, &err),
            "%s", err.msg);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", pr->bootstraps, NULL, 0);
    rd_kafka_conf_set(conf, "group.id", "sync-topic-data", NULL, 0);
    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    FAIL_IF(!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr)), "%s", errstr);
    rkt = rd_kafka_topic_new(rk, pr->data_topic, NULL);

    /* bootstrap: the rounds already complete on the sync topic, learning nothing */
    bool caught_up = false, complete, ended = false;
    const slr_sync_delta *ds;
    size_t k;
    for (;;) {
        FAIL_IF(slr_sync_reader_catch_up(rd, WAIT_MS, &caught_up, &err) ||
                    slr_sync_reader_next(rd, 0, &complete, &ds, &k, &ended, &err),
                "%s", err.msg);
        if (!complete || ended) {
            FAIL_IF(!complete && !caught_up, "no catching up with the sync topic");
            break;
        }
        for (int i = 0; i < pr->n_parts; i++) {
            slr_sync_delta own;
            FAIL_IF(slr_sync_member_end_round(m[i], NULL, 0, &own, &err) ||
                        slr_sync_member_apply(m[i], ds, k, SLR_SYNC_RELAXD, NULL, &err),
                    "bootstrap: %s", err.msg);
            slr_sync_delta_clear(&own);
        }
        pr->replayed++;
    }
    while (!ended) {
        uint64_t r = slr_sync_reader_round(rd);
        int64_t from = (int64_t)r * SLICE;
        for (int i = 0; i < pr->n_parts; i++) {
            int p = pr->parts[i];
            slr_sync_delta d;
            if (from > part_size(p) || (from == part_size(p) && from % SLICE != 0)) {
                /* its input ended in an earlier round: nothing to publish */
                FAIL_IF(slr_sync_member_end_round(m[i], NULL, 0, &d, &err), "%s", err.msg);
                slr_sync_delta_clear(&d);
                continue;
            }
            int64_t to = from + SLICE < part_size(p) ? from + SLICE : part_size(p);
            if (!started[i]) { /* slices follow each other: start once, where this process joins */
                FAIL_IF(rd_kafka_consume_start(rkt, p, from) != 0, "consume_start: %s",
                        rd_kafka_err2str(rd_kafka_last_error()));
                started[i] = true;
            }
            FAIL_IF(learn_slice(rkt, p, from, to, m[i], &ex) != 0,
                    "partition %d: offsets out of order", p);
            slr_sync_range g = {(char *)pr->data_topic, p, from, to};
            FAIL_IF(slr_sync_member_end_round(m[i], &g, 1, &d, &err) ||
                        slr_sync_publish(pub, &d, &err),
                    "%s", err.msg);
            slr_sync_delta_clear(&d);
            if ((int64_t)r == pr->crash_after) {
                /* a crash mid-round: one slice is on the topic, the rest and the model are lost */
                FAIL_IF(slr_sync_publisher_flush(pub, WAIT_MS, &err), "%s", err.msg);
                goto done;
            }
        }
        FAIL_IF(slr_sync_publisher_flush(pub, WAIT_MS, &err), "%s", err.msg);
        FAIL_IF(slr_sync_reader_next(rd, WAIT_MS, &complete, &ds, &k, &ended, &err), "%s", err.msg);
        FAIL_IF(!complete, "round %llu never completed", (unsigned long long)r);
        if (ended)
            break;
        for (int i = 0; i < pr->n_parts; i++)
            FAIL_IF(slr_sync_member_apply(m[i], ds, k, SLR_SYNC_RELAXD, NULL, &err),
                    "round %llu: %s", (unsigned long long)r, err.msg);
    }
    /* every process holds the same model in each of its members; read one */
    const slr_sync_member *m0 = m[0];
    pr->model = model_bytes((slr_learner *)slr_sync_member_shared(m0), &pr->model_len);
    pr->rounds = slr_sync_member_round(m0);
    pr->steps = slr_learner_steps(slr_sync_member_shared(m0));
    for (int p = 0; p < PARTS; p++)
        pr->ranges[p] = (int)slr_sync_ledger_ranges(slr_sync_member_ledger(m0), pr->data_topic, p,
                                                    &pr->covered[p], 1);
    for (int i = 1; i < pr->n_parts; i++) {
        size_t len;
        unsigned char *b = model_bytes((slr_learner *)slr_sync_member_shared(m[i]), &len);
        FAIL_IF(len != pr->model_len || memcmp(b, pr->model, len) != 0,
                "members of one process differ");
        free(b);
    }
    slr_sync_reader_repeats(rd, &pr->identical, &pr->different, &pr->late);
done:
    if (rkt) {
        for (int i = 0; i < pr->n_parts; i++)
            if (started[i])
                rd_kafka_consume_stop(rkt, pr->parts[i]);
        rd_kafka_topic_destroy(rkt);
    }
    if (rk)
        rd_kafka_destroy(rk);
    slr_sync_reader_destroy(rd);
    slr_sync_publisher_destroy(pub);
    for (int i = 0; i < pr->n_parts; i++)
        slr_sync_member_destroy(m[i]);
    slr_example_free(&ex);
    return NULL;
}

/* ------------------------------------------------------------ the group */

typedef struct group_run {
    char data_topic[128], sync_topic[128];
    proc procs[MAX_PROCS];
    bool restarted[MAX_PROCS];
    int n;
} group_run;

static void run_group(test_cluster *c, group_run *g)
{
    pthread_t t[MAX_PROCS];
    for (int i = 0; i < g->n; i++) {
        g->procs[i].bootstraps = c->bootstraps;
        g->procs[i].data_topic = g->data_topic;
        g->procs[i].sync_topic = g->sync_topic;
        ck_assert_int_eq(pthread_create(&t[i], NULL, run_proc, &g->procs[i]), 0);
    }
    /* a crashed process is restarted from nothing while the others wait for it */
    for (int i = 0; i < g->n; i++)
        if (g->procs[i].crash_after >= 0) {
            pthread_join(t[i], NULL);
            proc *pr = &g->procs[i];
            ck_assert_msg(!pr->error[0], "process %d before its crash: %s", i, pr->error);
            ck_assert_ptr_null(pr->model);
            pr->crash_after = -1;
            g->restarted[i] = true;
            ck_assert_int_eq(pthread_create(&t[i], NULL, run_proc, pr), 0);
        }
    for (int i = 0; i < g->n; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(!g->procs[i].error[0], "process %d: %s", i, g->procs[i].error);
    }
}

static void proc_free(proc *pr) { free(pr->model); }

static const char *g_data_topic;
static test_cluster g_cluster;
static char g_data[128];
static int64_t g_total;
static const char *g_python;

static void setup_data(test_cluster *c)
{
    test_cluster_start(c, 1);
    test_unique(g_data, sizeof g_data, "clicks");
    test_topic(c, g_data, PARTS);
    g_total = 0;
    for (int p = 0; p < PARTS; p++)
        for (int64_t o = 0; o < part_size(p); o++, g_total++) {
            char v[32];
            int n = snprintf(v, sizeof v, "p%d o%lld", p, (long long)o);
            test_produce(c, g_data, p, v, (size_t)n);
        }
    test_flush(c);
    g_data_topic = g_data;
}

/* A group run over a fresh sync topic; processes own partitions by owner[p]. */
static void group_init(group_run *g, const int *owner, int n)
{
    memset(g, 0, sizeof *g);
    snprintf(g->data_topic, sizeof g->data_topic, "%s", g_data_topic);
    test_unique(g->sync_topic, sizeof g->sync_topic, "model");
    test_topic(&g_cluster, g->sync_topic, 1);
    g->n = n;
    for (int i = 0; i < n; i++)
        g->procs[i].crash_after = -1;
    for (int p = 0; p < PARTS; p++) {
        proc *pr = &g->procs[owner[p]];
        pr->parts[pr->n_parts++] = p;
    }
}

/* Every example in the model exactly once: the ledger holds [0, size) of
 * every partition as one range, and the group's step count is their sum. */
static void assert_exactly_once(const proc *pr)
{
    for (int p = 0; p < PARTS; p++) {
        ck_assert_int_eq(pr->ranges[p], 1);
        ck_assert_int_eq(pr->covered[p][0], 0);
        ck_assert_int_eq(pr->covered[p][1], part_size(p));
    }
    ck_assert_uint_eq(pr->steps, (uint64_t)g_total);
    /* rounds: the longest partition's slices plus its partial last one */
    int64_t longest = 0;
    for (int p = 0; p < PARTS; p++)
        longest = part_size(p) > longest ? part_size(p) : longest;
    ck_assert_uint_eq(pr->rounds, (uint64_t)(longest / SLICE + 1));
}

static void assert_same(const proc *a, const proc *b, const char *what)
{
    ck_assert_uint_eq(a->model_len, b->model_len);
    size_t at = 0;
    while (at < a->model_len && a->model[at] == b->model[at])
        at++;
    ck_assert_msg(at == a->model_len, "%s: models differ at coordinate %zu", what, at / 12);
}

/* slr_sync_topic_inspect on a finished group's sync topic: every slice of
 * every partition, every round complete, the input ended, the repeats. */
static void assert_inspect(const group_run *g, uint64_t identical)
{
    slr_sync_topic_config sc = {.brokers = g_cluster.bootstraps, .topic = g->sync_topic};
    slr_sync_topic_info info;
    slr_error err;
    ck_assert_msg(slr_sync_topic_inspect(&sc, WAIT_MS, &info, &err) == SLR_OK, "%s", err.msg);
    ck_assert_str_eq(info.source_topic, g->data_topic);
    ck_assert_int_eq(info.source_partitions, PARTS);
    ck_assert_int_eq(info.slice, SLICE);
    ck_assert_uint_eq(info.first_round, 0);
    ck_assert_uint_eq(info.rounds, g->procs[0].rounds);
    ck_assert(info.ended);
    ck_assert_int_eq(info.position, info.high);
    uint64_t records = 0;
    for (int p = 0; p < PARTS; p++) {
        ck_assert_int_eq(info.reach[p], part_size(p));
        ck_assert_uint_eq(info.deltas[p], (uint64_t)(part_size(p) / SLICE + 1) + (p == 5 ? identical : 0));
        ck_assert(info.part_ended[p]);
        records += info.deltas[p];
    }
    ck_assert_int_eq(info.high - info.low, (int64_t)records);
    ck_assert_uint_eq(info.identical + info.late, identical);
    ck_assert_uint_eq(info.different, 0);
    slr_sync_topic_info_free(&info);
}

/* `streamlr inspect --sync-topic` prints it: the rounds line, the repeat,
 * and one row per partition. */
static void assert_inspect_cli(const group_run *g)
{
    const char *bin = getenv("STREAMLR");
    char cmd[1024], out[8192] = "";
    snprintf(cmd, sizeof cmd, "timeout 120 %s inspect --brokers %s --sync-topic %s 2>&1",
             bin ? bin : "../tools/streamlr", g_cluster.bootstraps, g->sync_topic);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    ck_assert_int_eq(pclose(f), 0);
    printf("%s", out);
    char want[256];
    snprintf(want, sizeof want, "source           %s, %d partitions, slices of %d offsets",
             g->data_topic, PARTS, SLICE);
    ck_assert_msg(strstr(out, want), "no \"%s\" in:\n%s", want, out);
    snprintf(want, sizeof want, "rounds           %llu complete (rounds 0..%llu), every partition's "
             "input ended", (unsigned long long)g->procs[0].rounds,
             (unsigned long long)g->procs[0].rounds - 1);
    ck_assert_msg(strstr(out, want), "no \"%s\" in:\n%s", want, out);
    ck_assert_msg(strstr(out, "repeats          1 identical, 0 different, 0 late"), "%s", out);
    for (int p = 0; p < PARTS; p++) {
        snprintf(want, sizeof want, "\n%9d  %6d  %10lld  ended\n", p,
                 (int)(part_size(p) / SLICE + 1) + (p == 5), (long long)part_size(p));
        ck_assert_msg(strstr(out, want), "no \"%s\" in:\n%s", want, out);
    }
}

START_TEST(three_members_one_model)
{
    make_theta();
    setup_data(&g_cluster);
    /* 3 processes, partitions round-robin */
    static const int rr[PARTS] = {0, 1, 2, 0, 1, 2, 0, 1};
    group_run a;
    group_init(&a, rr, 3);
    run_group(&g_cluster, &a);
    for (int i = 0; i < a.n; i++) {
        assert_exactly_once(&a.procs[i]);
        assert_same(&a.procs[0], &a.procs[i], "processes of one group");
        ck_assert_uint_eq(a.procs[i].different, 0);
    }
    /* the model learned something: not the zero model a broken merge keeps */
    int nonzero = 0;
    for (size_t j = 0; j + 12 <= a.procs[0].model_len - 8; j += 12)
        nonzero += slr_le_get_f64(a.procs[0].model + j) != 0;
    ck_assert_int_gt(nonzero, 100);

    /* the same data, one process holding everything: the same bits */
    static const int one[PARTS] = {0};
    group_run b;
    group_init(&b, one, 1);
    run_group(&g_cluster, &b);
    assert_exactly_once(&b.procs[0]);
    assert_same(&a.procs[0], &b.procs[0], "3 processes against 1");

    /* another split, and a process that crashes in round 2 after publishing
     * one of its three slices, restarted from nothing: it bootstraps from
     * the sync topic, re-learns round 2, and its repeat is dropped */
    static const int split[PARTS] = {0, 0, 0, 0, 0, 1, 1, 1};
    group_run c;
    group_init(&c, split, 2);
    c.procs[1].crash_after = 2;
    run_group(&g_cluster, &c);
    ck_assert(c.restarted[1]);
    /* rounds 0 and 1 were complete at its restart, round 2 could not be */
    ck_assert_uint_eq(c.procs[1].replayed, 2);
    ck_assert_uint_eq(c.procs[0].replayed, 0);
    const proc *restarted = &c.procs[1];
    assert_exactly_once(restarted);
    assert_exactly_once(&c.procs[0]);
    assert_same(&a.procs[0], restarted, "a restarted process against the reference");
    assert_same(&a.procs[0], &c.procs[0], "a survivor against the reference");
    /* its first slice of round 2 came twice, before the round was complete
     * (the restarted process publishes it before its other slices): every
     * reader dropped the second copy, bytes identical */
    for (int i = 0; i < 2; i++) {
        ck_assert_uint_eq(c.procs[i].identical, 1);
        ck_assert_uint_eq(c.procs[i].late + c.procs[i].different, 0);
    }

    /* what inspect reads off the sync topics */
    assert_inspect(&a, 0);
    assert_inspect(&c, 1);
    assert_inspect_cli(&c);

    for (int i = 0; i < a.n; i++)
        proc_free(&a.procs[i]);
    proc_free(&b.procs[0]);
    proc_free(&c.procs[0]);
    proc_free(&c.procs[1]);
    test_cluster_stop(&g_cluster);
}
END_TEST

/* An embedded broker with a fresh one-partition sync topic, and the config
 * of a group over `parts` partitions of "clicks". */
static slr_sync_topic_config lone_sync_topic(test_cluster *c, char *sync, size_t n, int parts)
{
    test_cluster_start(c, 1);
    test_unique(sync, n, "model");
    test_topic(c, sync, 1);
    return (slr_sync_topic_config){.brokers = c->bootstraps, .topic = sync,
                                   .source_topic = "clicks", .source_partitions = parts,
                                   .slice = SLICE};
}

/* A record that is not one of the group's slices stops a reader (it never
 * feeds a model), and a publisher refuses to write one. */
START_TEST(foreign_records_refused)
{
    test_cluster c;
    char sync[128];
    slr_sync_topic_config sc = lone_sync_topic(&c, sync, sizeof sync, PARTS);
    slr_error err;
    slr_sync_publisher *pub;
    ck_assert_int_eq(slr_sync_publisher_create(&pub, &sc, &err), SLR_OK);
    /* a delta of a slice that does not start on a slice boundary */
    slr_learner_config cfg = test_config();
    slr_sync_delta d = {.round = 1, .examples = 0, .fingerprint = slr_sync_fingerprint(&cfg)};
    slr_sync_range g = {"clicks", 2, 41, 80};
    d.ranges = &g;
    d.n_ranges = 1;
    ck_assert_int_eq(slr_sync_slice_name(d.member, sizeof d.member, "clicks", 2, &err), SLR_OK);
    ck_assert_str_eq(d.member, "clicks/000002");
    ck_assert_int_eq(slr_sync_publish(pub, &d, &err), SLR_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "not a slice"), "%s", err.msg);
    /* a partition the source does not have */
    g = (slr_sync_range){"clicks", PARTS, 40, 80};
    ck_assert_int_eq(slr_sync_publish(pub, &d, &err), SLR_ERR_ARG);
    /* well-formed, but named after another partition */
    g = (slr_sync_range){"clicks", 3, 40, 80};
    ck_assert_int_eq(slr_sync_publish(pub, &d, &err), SLR_ERR_ARG);
    slr_sync_publisher_destroy(pub);

    /* garbage on the topic: the reader names its offset */
    test_produce(&c, sync, 0, "not a delta", 11);
    test_flush(&c);
    slr_sync_reader *rd;
    ck_assert_int_eq(slr_sync_reader_create(&rd, &sc, 0, 0, &err), SLR_OK);
    bool complete, ended;
    const slr_sync_delta *ds;
    size_t k;
    ck_assert_int_eq(slr_sync_reader_next(rd, WAIT_MS, &complete, &ds, &k, &ended, &err),
                     SLR_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "offset 0"), "%s", err.msg);
    ck_assert(!complete);
    slr_sync_reader_destroy(rd);

    /* a sync topic nobody created: refused before anything is learned, not
     * a silent wait (a real broker says it is unknown; the embedded one
     * creates it with 4 partitions, which the partition check refuses) */
    char missing[128];
    test_unique(missing, sizeof missing, "nosuch");
    sc.topic = missing;
    slr_status st = slr_sync_reader_create(&rd, &sc, 0, 0, &err);
    ck_assert_msg(st == SLR_ERR_KAFKA || st == SLR_ERR_ARG, "%d: %s", st, err.msg);
    ck_assert_msg(strstr(err.msg, "create it with one partition") || strstr(err.msg, "needs exactly one"),
                  "%s", err.msg);
    /* one of several partitions, whose order no two readers could agree on */
    test_unique(missing, sizeof missing, "three");
    test_topic(&c, missing, 3);
    ck_assert_int_eq(slr_sync_reader_create(&rd, &sc, 0, 0, &err), SLR_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "has 3 partitions"), "%s", err.msg);
    test_cluster_stop(&c);
}
END_TEST

/* The python interpreter that has kafka-python, or NULL (the test is then
 * skipped, as the suite's python tests skip without python3). */
static const char *python_with_kafka(void)
{
    static const char *const cands[] = {"python3", "/usr/bin/python3"};
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "%s -c 'import kafka' >/dev/null 2>&1", cands[i]);
        if (system(cmd) == 0)
            return cands[i];
    }
    return NULL;
}

/* Round 0's delta of partition p of "clicks", learned from n examples. */
static void slice_delta(int p, int64_t n, slr_sync_delta *d)
{
    slr_learner_config cfg = test_config();
    slr_error err;
    char name[SLR_SYNC_MAX_MEMBER_ID + 1];
    slr_sync_member *m;
    ck_assert_int_eq(slr_sync_slice_name(name, sizeof name, "clicks", p, &err), SLR_OK);
    ck_assert_int_eq(slr_sync_member_create(&m, &cfg, name, 1, &err), SLR_OK);
    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    for (int64_t o = 0; o < n; o++) {
        test_rng r = {.s = (uint64_t)(p * 1000 + o + 1)};
        sync_test_example(&ex, &r);
        slr_sync_member_learn(m, &ex, NULL);
    }
    slr_sync_range g = {(char *)"clicks", p, 0, n};
    ck_assert_int_eq(slr_sync_member_end_round(m, &g, 1, d, &err), SLR_OK);
    slr_example_free(&ex);
    slr_sync_member_destroy(m);
}

/* kafka-python, which shares no code with librdkafka, reads the sync topic:
 * the records are well-formed Kafka records with the documented key and
 * headers, not an artefact of librdkafka talking to itself. */
START_TEST(python_client_reads)
{
    make_theta();
    test_cluster c;
    char sync[128];
    slr_sync_topic_config sc = lone_sync_topic(&c, sync, sizeof sync, 3);
    slr_error err;
    slr_sync_publisher *pub;
    ck_assert_int_eq(slr_sync_publisher_create(&pub, &sc, &err), SLR_OK);
    char *hex[3];
    for (int p = 0; p < 3; p++) {
        slr_sync_delta d;
        slice_delta(p, p == 2 ? 7 : SLICE, &d); /* partition 2 ends in round 0 */
        unsigned char *buf;
        size_t len;
        ck_assert_int_eq(slr_sync_delta_encode(&d, &buf, &len, &err), SLR_OK);
        hex[p] = malloc(2 * len + 1);
        for (size_t i = 0; i < len; i++)
            snprintf(hex[p] + 2 * i, 3, "%02x", buf[i]);
        free(buf);
        ck_assert_int_eq(slr_sync_publish(pub, &d, &err), SLR_OK);
        slr_sync_delta_clear(&d);
    }
    ck_assert_int_eq(slr_sync_publisher_flush(pub, WAIT_MS, &err), SLR_OK);
    slr_sync_publisher_destroy(pub);

    const char *top = getenv("abs_top_srcdir");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "timeout 120 %s %s/tests/sync_topic_read.py %s %s 3", g_python,
             top ? top : "..", c.bootstraps, sync);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    static char line[1 << 20], want[1 << 20];
    for (int p = 0; p < 3; p++) {
        ck_assert_msg(fgets(line, sizeof line, f) != NULL, "kafka-python printed %d records of 3", p);
        /* offset, key, round, version, slice, the value's bytes as we encoded them */
        snprintf(want, sizeof want, "%d clicks/%06d 0 %d 0-%d %s\n", p, p, SLR_SYNC_FORMAT_VERSION,
                 p == 2 ? 7 : SLICE, hex[p]);
        ck_assert_msg(strcmp(line, want) == 0, "kafka-python read\n  %.160s\nnot\n  %.160s", line,
                      want);
        free(hex[p]);
    }
    ck_assert_int_eq(pclose(f), 0);
    test_cluster_stop(&c);
}
END_TEST

/* The broker down mid-round: the publisher says the delta is not written
 * (the member pauses instead of learning on from a model the group does not
 * share), a reader waiting for the next round says the topic is unreachable
 * (and that it is not, once it is back), and once the broker is back the
 * same delta arrives, once. */
START_TEST(broker_down_pauses)
{
    make_theta();
    test_cluster c;
    char sync[128];
    slr_sync_topic_config sc = lone_sync_topic(&c, sync, sizeof sync, 1);
    slr_error err;
    slr_sync_publisher *pub;
    ck_assert_int_eq(slr_sync_publisher_create(&pub, &sc, &err), SLR_OK);
    slr_sync_delta d;
    slice_delta(0, SLICE, &d);
    /* a first record, so the producer's connection and idempotence are set up */
    ck_assert_int_eq(slr_sync_publish(pub, &d, &err), SLR_OK);
    ck_assert_int_eq(slr_sync_publisher_flush(pub, WAIT_MS, &err), SLR_OK);
    ck_assert_int_eq(slr_sync_publisher_pending(pub), 0);
    /* a reader that has round 0 and waits for round 1 */
    slr_sync_reader *waiting;
    bool complete, ended;
    const slr_sync_delta *ds;
    size_t k;
    ck_assert_int_eq(slr_sync_reader_create(&waiting, &sc, 0, 0, &err), SLR_OK);
    ck_assert_int_eq(slr_sync_reader_next(waiting, WAIT_MS, &complete, &ds, &k, &ended, &err),
                     SLR_OK);
    ck_assert(complete);
    ck_assert_ptr_null(slr_sync_reader_unreachable(waiting, NULL));

    ck_assert_int_eq(rd_kafka_mock_broker_set_down(c.mc, 1), 0);
    ck_assert_int_eq(slr_sync_publish(pub, &d, &err), SLR_OK);
    ck_assert_int_eq(slr_sync_publisher_flush(pub, 1500, &err), SLR_ERR_KAFKA);
    ck_assert_msg(strstr(err.msg, "not acknowledged"), "%s", err.msg);
    ck_assert_int_eq(slr_sync_publisher_pending(pub), 1); /* waiting, not failed */
    /* quiet for 2 s, the reader asks the cluster, which does not answer */
    double until = test_now() + 10;
    while (!slr_sync_reader_unreachable(waiting, NULL) && test_now() < until)
        ck_assert_int_eq(slr_sync_reader_next(waiting, 200, &complete, &ds, &k, &ended, &err),
                         SLR_OK);
    ck_assert(!complete);
    double secs = -1;
    const char *why = slr_sync_reader_unreachable(waiting, &secs);
    ck_assert_msg(why != NULL, "a reader waiting 10 s with the broker down does not say so");
    ck_assert(secs >= 0 && secs < 10);
    ck_assert_int_eq(rd_kafka_mock_broker_set_up(c.mc, 1), 0);
    ck_assert_msg(slr_sync_publisher_flush(pub, WAIT_MS, &err) == SLR_OK, "%s", err.msg);
    ck_assert_int_eq(slr_sync_publisher_pending(pub), 0);
    slr_sync_publisher_destroy(pub);
    until = test_now() + 10;
    while (slr_sync_reader_unreachable(waiting, NULL) && test_now() < until)
        ck_assert_int_eq(slr_sync_reader_next(waiting, 200, &complete, &ds, &k, &ended, &err),
                         SLR_OK);
    ck_assert_msg(!slr_sync_reader_unreachable(waiting, NULL),
                  "the broker is back and the reader still says the topic is unreachable");
    slr_sync_reader_destroy(waiting);

    /* two records (two publishes): the retry after the outage added none */
    int64_t lo, hi;
    test_watermarks(&c, sync, 0, &lo, &hi);
    ck_assert_int_eq(hi - lo, 2);
    slr_sync_reader *rd;
    ck_assert_int_eq(slr_sync_reader_create(&rd, &sc, 0, 0, &err), SLR_OK);
    ck_assert_int_eq(slr_sync_reader_next(rd, WAIT_MS, &complete, &ds, &k, &ended, &err), SLR_OK);
    ck_assert(complete && !ended);
    ck_assert_uint_eq(k, 1);
    bool caught_up;
    ck_assert_int_eq(slr_sync_reader_catch_up(rd, WAIT_MS, &caught_up, &err), SLR_OK);
    ck_assert(caught_up);
    uint64_t identical, different, late;
    slr_sync_reader_repeats(rd, &identical, &different, &late);
    ck_assert_uint_eq(identical + late, 1);
    ck_assert_uint_eq(different, 0);
    slr_sync_reader_destroy(rd);
    slr_sync_delta_clear(&d);
    test_cluster_stop(&c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sync_topic");
    TCase *tc = tcase_create("group");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, three_members_one_model);
    tcase_add_test(tc, foreign_records_refused);
    tcase_add_test(tc, broker_down_pauses);
    suite_add_tcase(s, tc);
    if ((g_python = python_with_kafka()))
        tcase_add_test(tc, python_client_reads);
    else
        printf("SKIP python_client_reads: no python3 with kafka-python (python3-kafka)\n");
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
