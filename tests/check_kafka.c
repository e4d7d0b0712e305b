/* check_kafka.c - the Kafka consumer against the embedded broker (librdkafka's
 * mock cluster in this process, loopback only): every message applied
 * exactly once over several partitions, across a rebalance between two
 * consumers of one group, and across a broker outage; offsets deleted by
 * retention reported and counted; text payloads; settings that would break
 * the design refused.
 *
 * Exactly-once is observed directly: the applied hook records every
 * (partition, offset) the model took in, so a message applied twice or never
 * shows as a count other than one.  Consumers run in threads so that the
 * test can produce, stop brokers and add a second consumer meanwhile.  The
 * SIGKILL/SIGTERM tests of the command line are in check_kafka_kill.c. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "job/job.h"
#include "kafka_testutil.h"
#include "source/kafka_source.h"
#include "source/kafka_stats.h"
#include "streamlr/checkpoint.h"
#include "streamlr/kafka.h"
#include "streamlr/train.h"

#define MAX_PARTS 8
#define MAX_OFFSETS (1u << 17)

/* ------------------------------------------------------------ a consumer in a thread */

typedef struct audit {
    uint8_t *count[MAX_PARTS]; /* times each offset was applied */
    int64_t last[MAX_PARTS];   /* to check order within a partition */
    int64_t first[MAX_PARTS];
    bool out_of_order, out_of_range;
    atomic_ullong applied;
} audit;

typedef struct consumer {
    slr_train_options opt;
    slr_kafka_options k;
    const char *topics[1];
    const char *config[8];
    char dir[4096];
    slr_stop_flag stop;
    audit audit;
    pthread_mutex_t log_mu;
    char log[1 << 22];
    size_t log_len;
    slr_train_result res;
    slr_error err;
    slr_status st;
    pthread_t thread;
    atomic_int done;
} consumer;

static consumer *live[4]; /* the test's consumers, for failure reports */

static void on_applied(void *ctx, const char *topic, int32_t p, int64_t offset)
{
    (void)topic;
    audit *a = ctx;
    if (p < 0 || p >= MAX_PARTS || offset < 0 || offset >= (int64_t)MAX_OFFSETS) {
        a->out_of_range = true;
        return;
    }
    if (a->count[p][offset] < 255)
        a->count[p][offset]++;
    if (offset <= a->last[p])
        a->out_of_order = true;
    if (a->first[p] < 0)
        a->first[p] = offset;
    a->last[p] = offset;
    atomic_fetch_add(&a->applied, 1);
}

static void on_log(void *ctx, const char *msg)
{
    consumer *c = ctx;
    pthread_mutex_lock(&c->log_mu);
    int n = snprintf(c->log + c->log_len, sizeof c->log - c->log_len, "%s\n", msg);
    if (n > 0 && c->log_len + (size_t)n < sizeof c->log)
        c->log_len += (size_t)n;
    pthread_mutex_unlock(&c->log_mu);
}

static bool log_has(consumer *c, const char *what)
{
    pthread_mutex_lock(&c->log_mu);
    bool found = strstr(c->log, what) != NULL;
    pthread_mutex_unlock(&c->log_mu);
    return found;
}

static consumer *consumer_new(test_cluster *cl, const char *topic, const char *group,
                              const char *tmp, const char *name)
{
    consumer *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    pthread_mutex_init(&c->log_mu, NULL);
    for (int p = 0; p < MAX_PARTS; p++) {
        c->audit.count[p] = calloc(MAX_OFFSETS, 1);
        c->audit.last[p] = c->audit.first[p] = -1;
    }
    snprintf(c->dir, sizeof c->dir, "%s/%s", tmp, name);
    slr_train_options_init(&c->opt);
    slr_hashing_init(&c->opt.learner.hashing, 18);
    c->opt.format = SLR_FORMAT_MSGPACK;
    c->opt.checkpoint_dir = c->dir;
    c->opt.checkpoint_every_examples = 500;
    c->opt.log = on_log;
    c->opt.log_ctx = c;
    c->opt.stop = &c->stop;
    c->opt.threads = 2; /* as the command line: decoding on a thread of its own */
    slr_kafka_options_init(&c->k);
    c->topics[0] = topic;
    const char *config[] = {TEST_KAFKA_CONFIG};
    for (size_t i = 0; i < sizeof config / sizeof config[0]; i++)
        c->config[c->k.n_config++] = config[i];
    static char debug[128]; /* KAFKA_DEBUG=cgrp,fetch: librdkafka debug lines into the log */
    if (getenv("KAFKA_DEBUG")) {
        snprintf(debug, sizeof debug, "debug=%s", getenv("KAFKA_DEBUG"));
        c->config[c->k.n_config++] = debug;
    }
    c->k.brokers = cl->bootstraps;
    c->k.topics = c->topics;
    c->k.n_topics = 1;
    c->k.group = group;
    c->k.config = c->config;
    c->k.applied = on_applied;
    c->k.applied_ctx = &c->audit;
    for (int i = 0; i < 4; i++)
        if (!live[i]) {
            live[i] = c;
            break;
        }
    return c;
}

static void consumer_free(consumer *c)
{
    if (getenv("KAFKA_LOGS")) /* KAFKA_LOGS=1: every consumer's log on stderr */
        fprintf(stderr, "---- %s:\n%s----\n", c->dir, c->log);
    for (int i = 0; i < 4; i++)
        if (live[i] == c)
            live[i] = NULL;
    for (int p = 0; p < MAX_PARTS; p++)
        free(c->audit.count[p]);
    pthread_mutex_destroy(&c->log_mu);
    free(c);
}

static void *consumer_main(void *arg)
{
    consumer *c = arg;
    c->st = slr_train_kafka(&c->opt, &c->k, &c->res, &c->err);
    atomic_store(&c->done, 1);
    return NULL;
}

static void consumer_start(consumer *c)
{
    ck_assert_int_eq(pthread_create(&c->thread, NULL, consumer_main, c), 0);
}

/* On failure every consumer's log goes to stderr (Check's messages are short). */

static void fail_with_log(consumer *c, const char *what)
{
    for (int i = 0; i < 4; i++) {
        consumer *l = live[i];
        if (!l)
            continue;
        pthread_mutex_lock(&l->log_mu);
        fprintf(stderr, "---- %s (applied %llu; per partition first..last:", l->dir,
                (unsigned long long)atomic_load(&l->audit.applied));
        for (int p = 0; p < MAX_PARTS; p++)
            if (l->audit.first[p] >= 0)
                fprintf(stderr, " [%d] %lld..%lld", p, (long long)l->audit.first[p],
                        (long long)l->audit.last[p]);
        fprintf(stderr, "):\n%s----\n", l->log);
        pthread_mutex_unlock(&l->log_mu);
    }
    ck_abort_msg("%s: %s (the consumers' logs are on stderr)", c->dir, what);
}

/* Stop (unless it is to end by itself) and wait, bounded; the job must succeed. */
static void consumer_finish(consumer *c, bool ask_to_stop, double seconds)
{
    if (ask_to_stop)
        c->stop = 1;
    double until = test_now() + seconds;
    while (!atomic_load(&c->done) && test_now() < until)
        test_sleep_ms(20);
    if (!atomic_load(&c->done)) {
        c->stop = 1; /* let the thread end before the test fails */
        for (int i = 0; i < 1500 && !atomic_load(&c->done); i++)
            test_sleep_ms(20);
        fail_with_log(c, "the consumer did not finish in time");
    }
    pthread_join(c->thread, NULL);
    if (c->st != SLR_OK) {
        fprintf(stderr, "consumer failed: %s\n", c->err.msg);
        fail_with_log(c, "the consumer failed");
    }
}

/* Wait until cond(c, arg) holds, or fail after `seconds`. */
#define WAIT_FOR(cond, seconds, what, c)                                                   \
    do {                                                                                   \
        double until_ = test_now() + (seconds);                                            \
        while (!(cond) && test_now() < until_)                                             \
            test_sleep_ms(20);                                                             \
        if (!(cond))                                                                       \
            fail_with_log(c, "timed out waiting for " what);                               \
    } while (0)

/* Every offset below end[p] applied exactly once over the given consumers,
 * nothing else applied, and in order within each consumer. */
static void assert_exactly_once(consumer **cs, int n, int parts, const int64_t *end)
{
    for (int i = 0; i < n; i++) {
        ck_assert_msg(!cs[i]->audit.out_of_range, "consumer %d applied an unexpected offset", i);
        ck_assert_msg(!cs[i]->audit.out_of_order, "consumer %d applied a partition out of order",
                      i);
    }
    for (int p = 0; p < parts; p++)
        for (int64_t o = 0; o < (int64_t)MAX_OFFSETS; o++) {
            unsigned times = 0;
            for (int i = 0; i < n; i++)
                times += cs[i]->audit.count[p][o];
            if (times != (o < end[p] ? 1u : 0u)) {
                char what[128];
                snprintf(what, sizeof what, "partition %d offset %lld (end %lld) applied %u times",
                         p, (long long)o, (long long)end[p], times);
                fail_with_log(cs[0], what);
            }
        }
}

static char *tmp;
static test_cluster cluster;

/* A fresh topic and group name for a test. */
static void names(char *topic, char *group, const char *what)
{
    char g[64];
    test_unique(topic, 128, what);
    snprintf(g, sizeof g, "%s-g", what);
    test_unique(group, 128, g);
}

static void setup(void)
{
    tmp = test_mkdtemp("kafka");
    test_cluster_start(&cluster, 1);
}

static void teardown(void)
{
    test_cluster_stop(&cluster);
    test_rmtree(tmp);
    free(tmp);
}

/* ------------------------------------------------------------ tests */

/* Four partitions, some messages holding three examples: with --exit-at-end
 * the consumer (a group member) applies every message once, the final
 * checkpoint and the group's committed offsets are the end offsets, and the
 * example count is what was produced. */
/* _i + 1 threads: decoding on the learning thread, then on its own */
START_TEST(test_multi_partition_exactly_once)
{
    char topic[128], group[128];
    names(topic, group, _i ? "multi2" : "multi1");
    const int parts = 4, messages = 6000;
    test_topic(&cluster, topic, parts);
    test_rng r = {.s = 42};
    slr_buf b;
    slr_buf_init(&b);
    int64_t end[MAX_PARTS] = {0};
    unsigned long long examples = 0;
    for (int i = 0; i < messages; i++) {
        slr_buf_reset(&b);
        int in_message = i % 5 == 0 ? 3 : 1;
        for (int e = 0; e < in_message; e++)
            test_example(&b, &r, examples++, 0);
        test_produce(&cluster, topic, i % parts, b.data, b.len);
        end[i % parts]++;
    }
    slr_buf_free(&b);
    test_flush(&cluster);

    consumer *c = consumer_new(&cluster, topic, group, tmp, "multi");
    c->opt.threads = (uint32_t)_i + 1;
    c->k.exit_at_end = true;
    consumer_start(c);
    consumer_finish(c, false, 90);

    assert_exactly_once(&c, 1, parts, end);
    ck_assert_uint_eq(atomic_load(&c->audit.applied), messages);
    ck_assert_uint_eq(c->res.metrics.examples, examples);
    for (int p = 0; p < parts; p++) {
        ck_assert_int_eq(test_checkpoint_offset(c->dir, topic, p, NULL), end[p]);
        ck_assert_int_eq(test_committed(&cluster, group, topic, p), end[p]);
    }
    consumer_free(c);
}
END_TEST

typedef struct pacer {
    test_cluster *cl;
    const char *topic;
    int parts;
    atomic_int stop, paused, idle; /* idle: saw paused, not producing */
    int64_t end[MAX_PARTS];
    unsigned long long sent;
} pacer;

/* Produce about 2000 messages a second until told to stop. */
static void *pace(void *arg)
{
    pacer *pc = arg;
    test_rng r = {.s = 7};
    slr_buf b;
    slr_buf_init(&b);
    while (!atomic_load(&pc->stop)) {
        if (atomic_load(&pc->paused)) {
            atomic_store(&pc->idle, 1);
            test_sleep_ms(10);
            continue;
        }
        atomic_store(&pc->idle, 0);
        for (int i = 0; i < 20; i++) {
            slr_buf_reset(&b);
            test_example(&b, &r, pc->sent, 0);
            int p = (int)(pc->sent++ % (unsigned)pc->parts);
            test_produce(pc->cl, pc->topic, p, b.data, b.len);
            pc->end[p]++;
        }
        rd_kafka_poll(pc->cl->producer, 0);
        test_sleep_ms(10);
    }
    slr_buf_free(&b);
    return NULL;
}

/* A second member joins the group: partitions move from A to B and no
 * message is applied twice or skipped across the handover (A's last offset
 * on a moved partition is right before B's first); messages flow before and
 * after.  The handover happens while A is caught up: the mock broker, unlike
 * Kafka, refuses a commit once another member has asked to rejoin, so A's
 * commit on revocation can be refused on a loaded machine, and B would then
 * start from A's previous commit (docs/KAFKA.md) -- here that is the same
 * offset. */
/* The per-partition lag the job reports, as the CLI prints it. */
static void lag_to_file(void *ctx, const slr_progress *p)
{
    if (p->event == SLR_PROGRESS_KAFKA)
        fprintf(ctx, "kafka: %s; %llu examples learned\n", p->kafka_lag,
                (unsigned long long)p->totals->examples);
}

START_TEST(test_rebalance_two_consumers)
{
    char topic[128], group[128];
    names(topic, group, "rebal");
    const int parts = 4;
    test_topic(&cluster, topic, parts);
    pacer pc = {.cl = &cluster, .topic = topic, .parts = parts};
    pthread_t producer;
    ck_assert_int_eq(pthread_create(&producer, NULL, pace, &pc), 0);

    consumer *a = consumer_new(&cluster, topic, group, tmp, "a");
    consumer *b = consumer_new(&cluster, topic, group, tmp, "b");
    /* checkpoints (and commits) by time only, so none is due while A idles */
    a->opt.checkpoint_every_examples = b->opt.checkpoint_every_examples = 0;
    a->opt.checkpoint_every_seconds = b->opt.checkpoint_every_seconds = 0.5;
    char progress_path[4200];
    snprintf(progress_path, sizeof progress_path, "%s/progress-a.txt", tmp);
    FILE *progress = fopen(progress_path, "w+");
    ck_assert_ptr_nonnull(progress);
    a->opt.progress = lag_to_file;
    a->opt.progress_ctx = progress;
    a->config[a->k.n_config++] = "statistics.interval.ms=200";
    consumer_start(a);
    WAIT_FOR(atomic_load(&a->audit.applied) >= 500, 60, "A to consume", a);

    atomic_store(&pc.paused, 1);
    WAIT_FOR(atomic_load(&pc.idle), 30, "the producer to pause", a);
    test_flush(&cluster);
    bool committed = false;
    for (double until = test_now() + 60; !committed && test_now() < until; test_sleep_ms(100)) {
        committed = atomic_load(&a->audit.applied) == pc.sent;
        for (int p = 0; committed && p < parts; p++)
            committed = test_committed(&cluster, group, topic, p) == pc.end[p];
    }
    if (!committed)
        fail_with_log(a, "A to apply and commit everything before B joins");

    consumer_start(b);
    WAIT_FOR(log_has(b, topic), 90, "B to get partitions", b); /* "assigned <topic>[..." */
    atomic_store(&pc.paused, 0);
    WAIT_FOR(atomic_load(&b->audit.applied) >= 200, 60, "B to consume", b);
    unsigned long long a_then = atomic_load(&a->audit.applied);
    WAIT_FOR(atomic_load(&a->audit.applied) >= a_then + 200, 60, "A to go on after the rebalance",
             a);
    atomic_store(&pc.stop, 1);
    pthread_join(producer, NULL);
    test_flush(&cluster);
    WAIT_FOR(atomic_load(&a->audit.applied) + atomic_load(&b->audit.applied) >= pc.sent, 60,
             "A and B to apply everything produced", a);
    test_sleep_ms(500); /* a duplicate, if any, shows up as more than sent */
    consumer_finish(b, true, 60);
    consumer_finish(a, true, 60);

    fflush(progress);
    rewind(progress);
    char line[4096];
    bool lag = false;
    while (fgets(line, sizeof line, progress))
        lag = lag || (strstr(line, "kafka: lag") && strstr(line, "[0]"));
    fclose(progress);
    if (!lag)
        fail_with_log(a, "no per-partition lag line in A's progress output");

    consumer *both[2] = {a, b};
    assert_exactly_once(both, 2, parts, pc.end);
    int moved = 0;
    for (int p = 0; p < parts; p++) {
        if (a->audit.first[p] < 0 || b->audit.first[p] < 0)
            continue;
        moved++;
        ck_assert_msg(a->audit.last[p] + 1 == b->audit.first[p],
                      "partition %d: A stopped at %lld, B started at %lld", p,
                      (long long)a->audit.last[p], (long long)b->audit.first[p]);
    }
    ck_assert_msg(moved > 0, "no partition moved from A to B while messages flowed");
    if (!log_has(a, "releasing"))
        fail_with_log(a, "A never released partitions");
    /* B started each partition it took over at the offset A committed when
     * releasing it, so that commit landed (the final commits are checked in
     * the single-consumer tests: here the mock rejects a commit while the
     * group rebalances after the first member leaves, where Kafka accepts it) */
    consumer_free(a);
    consumer_free(b);
}
END_TEST

/* The broker goes down while the consumer is caught up and messages keep
 * being produced; when it comes back nothing is lost or applied twice. */
START_TEST(test_broker_down_and_up)
{
    char topic[128], group[128];
    names(topic, group, "outage");
    const int parts = 2, half = 2000;
    test_topic(&cluster, topic, parts);
    test_rng r = {.s = 99};
    slr_buf b;
    slr_buf_init(&b);
    int64_t end[MAX_PARTS] = {0};
    for (int i = 0; i < half; i++) {
        slr_buf_reset(&b);
        test_example(&b, &r, (unsigned long long)i, 0);
        test_produce(&cluster, topic, i % parts, b.data, b.len);
        end[i % parts]++;
    }
    test_flush(&cluster);
    consumer *c = consumer_new(&cluster, topic, group, tmp, "outage");
    consumer_start(c);
    WAIT_FOR(atomic_load(&c->audit.applied) == (unsigned long long)half, 60, "the first half", c);

    ck_assert_int_eq(rd_kafka_mock_broker_set_down(cluster.mc, 1), 0);
    for (int i = half; i < 2 * half; i++) {
        slr_buf_reset(&b);
        test_example(&b, &r, (unsigned long long)i, 0);
        test_produce(&cluster, topic, i % parts, b.data, b.len);
        end[i % parts]++;
    }
    WAIT_FOR(log_has(c, "all brokers are down"), 60, "the consumer to notice the outage", c);
    ck_assert_int_eq(rd_kafka_mock_broker_set_up(cluster.mc, 1), 0);
    test_flush(&cluster);
    WAIT_FOR(atomic_load(&c->audit.applied) == 2ull * half, 90, "everything after the outage", c);
    consumer_finish(c, true, 60);
    slr_buf_free(&b);

    assert_exactly_once(&c, 1, parts, end);
    for (int p = 0; p < parts; p++)
        ck_assert_int_eq(test_checkpoint_offset(c->dir, topic, p, NULL), end[p]);
    ck_assert_uint_eq(c->res.metrics.examples, 2ull * half);
    consumer_free(c);
}
END_TEST

/* Messages the broker deleted (the mock keeps ~5 MiB a partition) before a
 * resumed consumer got to them: the loss is counted exactly, reported with
 * the partition, and kept in the checkpoint -- never skipped silently. */
START_TEST(test_retention_loss_reported)
{
    char topic[128], group[128];
    names(topic, group, "retention");
    test_topic(&cluster, topic, 1);
    test_rng r = {.s = 5};
    slr_buf b;
    slr_buf_init(&b);
    const int first = 1000, more = 40000; /* 40000 x ~220 B: past the mock's cap */
    for (int i = 0; i < first + more; i++) {
        if (i == first) { /* consume the first part, then bury the rest of it */
            test_flush(&cluster);
            consumer *c1 = consumer_new(&cluster, topic, group, tmp, "ret");
            c1->k.assign = true;
            c1->k.exit_at_end = true;
            consumer_start(c1);
            consumer_finish(c1, false, 60);
            ck_assert_uint_eq(c1->res.metrics.examples, (unsigned)first);
            ck_assert_uint_eq(c1->res.metrics.lost, 0);
            consumer_free(c1);
        }
        slr_buf_reset(&b);
        test_example(&b, &r, (unsigned long long)i, 180);
        test_produce(&cluster, topic, 0, b.data, b.len);
    }
    slr_buf_free(&b);
    test_flush(&cluster);
    int64_t lo, hi;
    test_watermarks(&cluster, topic, 0, &lo, &hi);
    ck_assert_int_eq(hi, first + more);
    ck_assert_msg(lo > first, "the broker kept everything (log start %lld); produce more",
                  (long long)lo);

    consumer *c = consumer_new(&cluster, topic, group, tmp, "ret");
    c->k.assign = true;
    c->k.exit_at_end = true;
    consumer_start(c);
    consumer_finish(c, false, 60);
    ck_assert_uint_eq(c->res.metrics.lost, (uint64_t)(lo - first));
    ck_assert_uint_eq(c->res.examples, (uint64_t)(hi - lo));
    ck_assert_uint_eq(c->res.metrics.examples, (uint64_t)(first + hi - lo));
    char expect[256];
    snprintf(expect, sizeof expect, "%s[0]: LOST %lld messages", topic, (long long)(lo - first));
    if (!log_has(c, expect))
        fail_with_log(c, "an expected report is missing from the log");
    slr_metrics m;
    ck_assert_int_eq(test_checkpoint_offset(c->dir, topic, 0, &m), hi);
    ck_assert_uint_eq(m.lost, (uint64_t)(lo - first));
    consumer_free(c);
}
END_TEST

/* A commit the broker refuses is made again: the consumer below has
 * nothing more to checkpoint once it has reached the end, so without a
 * retry the group would stay behind its checkpoint for as long as it runs. */
START_TEST(test_refused_commit_retried)
{
    char topic[128], group[128];
    names(topic, group, "refused");
    test_topic(&cluster, topic, 1);
    test_rng r = {.s = 8};
    slr_buf b;
    slr_buf_init(&b);
    for (int i = 0; i < 300; i++) {
        slr_buf_reset(&b);
        test_example(&b, &r, (unsigned long long)i, 0);
        test_produce(&cluster, topic, 0, b.data, b.len);
    }
    slr_buf_free(&b);
    test_flush(&cluster);
    consumer *c = consumer_new(&cluster, topic, group, tmp, "refused");
    c->k.assign = true;
    c->opt.checkpoint_every_examples = 300; /* one checkpoint, one commit: refused */
    rd_kafka_mock_push_request_errors(cluster.mc, 8 /* OffsetCommit */, 1,
                                      RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS);
    consumer_start(c);
    WAIT_FOR(log_has(c, "committing offsets failed"), 60, "the refused commit", c);
    WAIT_FOR(test_committed(&cluster, group, topic, 0) == 300, 30, "the commit made again", c);
    consumer_finish(c, true, 60);
    ck_assert_uint_eq(c->res.metrics.examples, 300);
    consumer_free(c);
}
END_TEST

/* Retention losses on several partitions of a statically assigned
 * consumer at once: each partition is restarted at its retained offset on
 * its own (restarting the whole assignment for each one, several times in
 * quick succession, made librdkafka 2.0.2 abort on an assertion). */
START_TEST(test_retention_loss_many_partitions)
{
    enum { PARTS = 4, FIRST = 500, MORE = 30000 }; /* 30000 x ~220 B: past the cap */
    char topic[128], group[128];
    names(topic, group, "retention-many");
    test_topic(&cluster, topic, PARTS);
    test_rng r = {.s = 6};
    slr_buf b;
    slr_buf_init(&b);
    for (int i = 0; i < FIRST + MORE; i++) {
        if (i == FIRST) {
            test_flush(&cluster);
            consumer *c1 = consumer_new(&cluster, topic, group, tmp, "retm");
            c1->k.assign = true;
            c1->k.exit_at_end = true;
            consumer_start(c1);
            consumer_finish(c1, false, 60);
            ck_assert_uint_eq(c1->res.metrics.examples, (unsigned)(PARTS * FIRST));
            consumer_free(c1);
        }
        for (int32_t part = 0; part < PARTS; part++) {
            slr_buf_reset(&b);
            test_example(&b, &r, (unsigned long long)i, 180);
            test_produce(&cluster, topic, part, b.data, b.len);
        }
    }
    slr_buf_free(&b);
    test_flush(&cluster);
    uint64_t lost = 0, kept = 0;
    for (int32_t part = 0; part < PARTS; part++) {
        int64_t lo, hi;
        test_watermarks(&cluster, topic, part, &lo, &hi);
        ck_assert_int_eq(hi, FIRST + MORE);
        ck_assert_msg(lo > FIRST, "partition %d kept everything; produce more", (int)part);
        lost += (uint64_t)(lo - FIRST);
        kept += (uint64_t)(hi - lo);
    }
    consumer *c = consumer_new(&cluster, topic, group, tmp, "retm");
    c->k.assign = true;
    c->k.exit_at_end = true;
    consumer_start(c);
    consumer_finish(c, false, 60);
    ck_assert_uint_eq(c->res.metrics.lost, lost);
    ck_assert_uint_eq(c->res.examples, kept);
    for (int32_t part = 0; part < PARTS; part++)
        ck_assert_int_eq(test_checkpoint_offset(c->dir, topic, part, NULL), FIRST + MORE);
    consumer_free(c);
}
END_TEST

/* --format vw: one text line a message, bad lines reported at
 * topic[partition]@offset and counted. */
START_TEST(test_text_payloads)
{
    char topic[128], group[128];
    names(topic, group, "text");
    test_topic(&cluster, topic, 1);
    for (int i = 0; i < 300; i++) {
        char line[128];
        int n = i == 123 ? snprintf(line, sizeof line, "2 |u bad_label")
                         : snprintf(line, sizeof line, "%d |u u%d |i i%d", i % 3 ? -1 : 1, i % 17,
                                    i % 5);
        test_produce(&cluster, topic, 0, line, (size_t)n);
    }
    test_flush(&cluster);
    consumer *c = consumer_new(&cluster, topic, group, tmp, "text");
    c->opt.format = SLR_FORMAT_VW;
    /* also: a raised message.max.bytes; streamlr's fetch.max.bytes default
     * (1 MiB) must follow it, librdkafka refuses a smaller one */
    c->config[c->k.n_config++] = "message.max.bytes=4000000";
    c->k.assign = true;
    c->k.exit_at_end = true;
    consumer_start(c);
    consumer_finish(c, false, 60);
    ck_assert_uint_eq(c->res.metrics.examples, 299);
    ck_assert_uint_eq(c->res.metrics.bad, 1);
    char expect[256];
    snprintf(expect, sizeof expect, "%s[0]@123:", topic);
    if (!log_has(c, expect))
        fail_with_log(c, "an expected report is missing from the log");
    ck_assert_int_eq(test_checkpoint_offset(c->dir, topic, 0, NULL), 300);
    consumer_free(c);
}
END_TEST

/* VW lines read as msgpack (the format a Kafka job assumed before it told
 * formats apart): every byte is a bad record.  The job stops with an error
 * naming the format the messages look like, before any checkpoint or
 * commit, although checkpoints were due every 100 examples and 10 ms -- so
 * a rerun in the right format learns every message. */
static void produce_vw_lines(const char *topic, int n)
{
    for (int i = 0; i < n; i++) {
        char line[128];
        int len = snprintf(line, sizeof line, "%d |u u%d |i i%d", i % 3 ? -1 : 1, i % 17, i % 5);
        test_produce(&cluster, topic, 0, line, (size_t)len);
    }
    test_flush(&cluster);
}

/* A one-partition topic of n VW lines and a consumer of it reading VW. */
static consumer *vw_topic_consumer(const char *what, int n, char *topic, char *group)
{
    names(topic, group, what);
    test_topic(&cluster, topic, 1);
    produce_vw_lines(topic, n);
    consumer *c = consumer_new(&cluster, topic, group, tmp, what);
    c->opt.format = SLR_FORMAT_VW;
    return c;
}

START_TEST(test_wrong_format_stops_before_commit)
{
    char topic[128], group[128];
    consumer *c = vw_topic_consumer("wrongfmt", 1500, topic, group);
    c->opt.format = SLR_FORMAT_MSGPACK;
    c->opt.checkpoint_every_examples = 100;
    c->opt.checkpoint_every_seconds = 0.01;
    c->k.exit_at_end = true;
    consumer_start(c);
    for (double until = test_now() + 60; !atomic_load(&c->done) && test_now() < until;)
        test_sleep_ms(20);
    if (!atomic_load(&c->done)) {
        c->stop = 1;
        for (int i = 0; i < 1500 && !atomic_load(&c->done); i++)
            test_sleep_ms(20);
        fail_with_log(c, "the consumer did not stop");
    }
    pthread_join(c->thread, NULL);
    if (c->st != SLR_ERR_BAD_INPUT)
        fail_with_log(c, "VW lines read as msgpack were consumed without an error");
    ck_assert_msg(strstr(c->err.msg, "the input looks like vw: give --format vw"), "%s", c->err.msg);
    ck_assert_msg(test_committed(&cluster, group, topic, 0) < 0, "an offset was committed");
    uint64_t seq;
    ck_assert_int_eq(slr_checkpoint_dir_newest(c->dir, &seq, NULL), SLR_ERR_NOT_FOUND);
    consumer_free(c);

    /* the right format, same group and directory: every message is learned */
    c = consumer_new(&cluster, topic, group, tmp, "wrongfmt");
    c->opt.format = SLR_FORMAT_VW;
    c->k.exit_at_end = true;
    consumer_start(c);
    consumer_finish(c, false, 60);
    ck_assert_uint_eq(c->res.metrics.examples, 1500);
    ck_assert_int_eq(test_committed(&cluster, group, topic, 0), 1500);
    consumer_free(c);
}
END_TEST

/* No format given (format_auto): the first messages tell VW, and the
 * choice is logged and returned. */
/* A caller that follows progress is told the format (a quiet one is not). */
static void ignore_progress(void *ctx, const slr_progress *p)
{
    (void)ctx;
    (void)p;
}

START_TEST(test_format_detected)
{
    char topic[128], group[128];
    consumer *c = vw_topic_consumer("detect", 300, topic, group);
    c->opt.format = SLR_FORMAT_MSGPACK; /* the fallback */
    c->opt.format_auto = true;
    c->opt.progress = ignore_progress;
    c->k.exit_at_end = true;
    consumer_start(c);
    consumer_finish(c, false, 60);
    ck_assert_uint_eq(c->res.metrics.examples, 300);
    ck_assert_uint_eq(c->res.metrics.bad, 0);
    ck_assert_int_eq(c->res.format, SLR_FORMAT_VW);
    if (!log_has(c, "reading --format vw (detected from the first messages of"))
        fail_with_log(c, "the detected format is not logged");
    consumer_free(c);
}
END_TEST

/* --exit-at-end in a group with more members than partitions: a member the
 * group gives no partition ends once the group has committed every
 * partition to its end, saying why it waited.  (The sticky assignor keeps
 * the partition with the member that has it, so the newcomer has none.) */
START_TEST(test_exit_at_end_without_partitions)
{
    char topic[128], group[128];
    names(topic, group, "idle");
    test_topic(&cluster, topic, 1);
    produce_vw_lines(topic, 300);
    consumer *a = consumer_new(&cluster, topic, group, tmp, "idle-a");
    a->opt.format = SLR_FORMAT_VW;
    a->opt.checkpoint_every_examples = 50;
    a->config[a->k.n_config++] = "partition.assignment.strategy=cooperative-sticky";
    consumer_start(a); /* a long-running member: no --exit-at-end */
    WAIT_FOR(test_committed(&cluster, group, topic, 0) == 300, 30, "the first member's commit", a);

    consumer *b = consumer_new(&cluster, topic, group, tmp, "idle-b");
    b->opt.format = SLR_FORMAT_VW;
    b->config[b->k.n_config++] = "partition.assignment.strategy=cooperative-sticky";
    b->k.exit_at_end = true;
    consumer_start(b);
    consumer_finish(b, false, 40);
    ck_assert_uint_eq(b->res.metrics.examples, 0);
    if (!log_has(b, "no partition assigned to this member (the group has more members than "
                    "partitions)"))
        fail_with_log(b, "the idle member did not say why it waited");
    consumer_free(b);
    consumer_finish(a, true, 30);
    ck_assert_uint_eq(a->res.metrics.examples, 300);
    consumer_free(a);
}
END_TEST

/* The final commit of a group member that ends (--exit-at-end) refused by
 * the broker -- a rebalance in progress, as when another member joins just
 * then: leaving the group commits it again, or the partition's next owner
 * would learn every message once more.  No checkpoint directory, so the
 * final commit is the member's only one. */
START_TEST(test_final_commit_refused_made_when_leaving)
{
    char topic[128], group[128];
    consumer *c = vw_topic_consumer("leaving", 300, topic, group);
    c->opt.checkpoint_dir = NULL;
    c->k.exit_at_end = true;
    rd_kafka_mock_push_request_errors(cluster.mc, 8 /* OffsetCommit */, 1,
                                      RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS);
    consumer_start(c);
    consumer_finish(c, false, 60);
    ck_assert_uint_eq(c->res.metrics.examples, 300);
    if (!log_has(c, "committing offsets failed"))
        fail_with_log(c, "the final commit was not refused: the test proves nothing");
    ck_assert_int_eq(test_committed(&cluster, group, topic, 0), 300);
    consumer_free(c);
}
END_TEST

/* The source's guard on positions, fed messages directly: a message below a
 * partition's position is not applied again, a gap (compaction, transaction
 * markers) is accepted, a partition not assigned is ignored, and the end of
 * a partition moves the position there. */
START_TEST(test_take_guards_positions)
{
    char topic[128], group[128];
    names(topic, group, "guard");
    test_topic(&cluster, topic, 2);
    slr_job_state st;
    slr_job_state_init(&st);
    slr_error err;
    ck_assert_int_eq(slr_job_state_set_kafka_offset(&st, topic, 0, 5, &err), SLR_OK);
    ck_assert_int_eq(slr_job_state_set_kafka_offset(&st, topic, 1, 0, &err), SLR_OK);
    const char *topics[] = {topic}, *config[] = {TEST_KAFKA_CONFIG};
    const int32_t parts[] = {0, 1};
    slr_kafka_options k;
    slr_kafka_options_init(&k);
    k.brokers = cluster.bootstraps;
    k.topics = topics;
    k.n_topics = 1;
    k.group = group;
    k.config = config;
    k.n_config = sizeof config / sizeof config[0];
    k.assign = true;
    k.partitions = parts;
    k.n_partitions = 2;
    slr_kafka_hooks hooks = {NULL, NULL, NULL};
    slr_kafka_source *src;
    ck_assert_msg(slr_kafka_source_open(&src, &k, false, &st, &hooks, &err) == SLR_OK, "%s",
                  err.msg);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(cluster.producer, topic, NULL);
    rd_kafka_message_t m = {.rkt = rkt, .partition = 0, .offset = 5};
    slr_kafka_partition *p;
    ck_assert_int_eq(slr_kafka_source_take(src, &m, &p, &err), SLR_KAFKA_APPLY);
    ck_assert_int_eq(p->partition, 0);
    slr_kafka_source_applied(p, 5);
    ck_assert_int_eq(slr_kafka_source_take(src, &m, &p, &err), SLR_KAFKA_SKIP);
    m.offset = 3;
    ck_assert_int_eq(slr_kafka_source_take(src, &m, &p, &err), SLR_KAFKA_SKIP);
    m.offset = 8;
    ck_assert_int_eq(slr_kafka_source_take(src, &m, &p, &err), SLR_KAFKA_APPLY);
    slr_kafka_source_applied(p, 8);
    m.partition = 3; /* not assigned */
    ck_assert_int_eq(slr_kafka_source_take(src, &m, &p, &err), SLR_KAFKA_SKIP);
    ck_assert_ptr_null(p);
    m.err = RD_KAFKA_RESP_ERR__PARTITION_EOF;
    m.partition = 0;
    m.offset = 12; /* transaction markers after 8, say */
    ck_assert_int_eq(slr_kafka_source_take(src, &m, &p, &err), SLR_KAFKA_MOVED);
    ck_assert_int_eq(p->next, 12);
    ck_assert(!slr_kafka_source_at_end(src)); /* partition 1 has not reached its end */
    m.partition = 1;
    m.offset = 0;
    ck_assert_int_eq(slr_kafka_source_take(src, &m, &p, &err), SLR_KAFKA_SKIP);
    ck_assert(slr_kafka_source_at_end(src));
    ck_assert_int_eq(slr_kafka_source_note_positions(src, &err), SLR_OK);
    ck_assert_int_eq(slr_job_state_kafka_offset(&st, topic, 0), 12);
    ck_assert_int_eq(slr_job_state_kafka_offset(&st, topic, 1), 0);
    rd_kafka_topic_destroy(rkt);
    slr_kafka_source_close(src, 10);
    slr_job_state_free(&st);
}
END_TEST

/* Settings that would break exactly-once are refused before connecting. */
START_TEST(test_settings_refused)
{
    const char *cases[][2] = {
        {"enable.auto.commit=true", "enable.auto.commit"},
        {"enable.auto.offset.store=true", "enable.auto.offset.store"},
        {"auto.offset.reset=sometimes", "auto.offset.reset"},
        {"no.such.property=1", "no.such.property"},
        {"novalue", "key=value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        consumer *c = consumer_new(&cluster, "t", "g", tmp, "refused");
        c->config[c->k.n_config++] = cases[i][0];
        slr_train_result res;
        slr_error err;
        ck_assert_int_eq(slr_train_kafka(&c->opt, &c->k, &res, &err), SLR_ERR_ARG);
        ck_assert_msg(strstr(err.msg, cases[i][1]), "%s: %s", cases[i][0], err.msg);
        consumer_free(c);
    }
    consumer *c = consumer_new(&cluster, "t", NULL, tmp, "refused");
    slr_train_result res;
    slr_error err;
    ck_assert_int_eq(slr_train_kafka(&c->opt, &c->k, &res, &err), SLR_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "--group"), "%s", err.msg);
    consumer_free(c);
}
END_TEST

typedef struct seen {
    int n;
    char topic[64];
    int32_t partition[8];
    char field[8][32];
    int64_t value[8];
} seen;

static void on_stat(void *ctx, const char *topic, size_t topic_len, int32_t partition,
                    const char *field, int64_t value)
{
    seen *s = ctx;
    if (s->n == 8)
        return;
    snprintf(s->topic, sizeof s->topic, "%.*s", (int)topic_len, topic);
    s->partition[s->n] = partition;
    snprintf(s->field[s->n], sizeof s->field[0], "%s", field);
    s->value[s->n++] = value;
}

/* The statistics walker finds topics.T.partitions.P.field integers and
 * nothing else, and rejects malformed JSON. */
START_TEST(test_stats_walker)
{
    const char *json =
        "{\"name\":\"c\",\"ts\":1,\"brokers\":{\"b\":{\"toppars\":{\"t-0\":{\"partition\":0}}}},"
        "\"topics\":{\"clicks\":{\"topic\":\"clicks\",\"partitions\":{"
        "\"0\":{\"partition\":0,\"hi_offset\":120,\"ls_offset\":118,\"consumer_lag\":-1,"
        "\"x\":[1,2,{\"hi_offset\":5}],\"s\":\"a\\\"b\",\"f\":1.5},"
        "\"-1\":{\"hi_offset\":9}}}},\"cgrp\":{\"state\":\"up\",\"ok\":true,\"n\":null}}";
    seen s = {0};
    ck_assert(slr_kafka_stats_walk(json, strlen(json), on_stat, &s));
    ck_assert_int_eq(s.n, 4); /* partition, hi_offset, ls_offset, consumer_lag of [0] */
    ck_assert_str_eq(s.topic, "clicks");
    ck_assert_str_eq(s.field[1], "hi_offset");
    ck_assert_int_eq(s.value[1], 120);
    ck_assert_str_eq(s.field[2], "ls_offset");
    ck_assert_int_eq(s.value[2], 118);
    ck_assert_int_eq(s.value[3], -1);
    for (int i = 0; i < s.n; i++)
        ck_assert_int_eq(s.partition[i], 0);
    /* a document cut short or followed by junk is refused whole: no value
     * from it is taken (the last one, cut, could be a prefix of a number) */
    const char *bad[] = {"{\"a\":", "{\"a\" 1}", "[1,2", "{\"topics\":{}} x", "\"open",
                         "{\"topics\":{\"t\":{\"partitions\":{\"0\":{\"hi_offset\":12",
                         "{\"topics\":{\"t\":{\"partitions\":{\"0\":{\"hi_offset\":5}}}}} x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        seen t = {0};
        ck_assert_msg(!slr_kafka_stats_walk(bad[i], strlen(bad[i]), on_stat, &t), "%s", bad[i]);
        ck_assert_msg(t.n == 0, "%s: %d values taken", bad[i], t.n);
    }
    /* keys are compared decoded: an escaped topic name is the topic */
    const char *escaped = "{\"topics\":{\"cl\\u0069cks\":{\"partitions\":{\"3\":{\"ls_offset\":7}}}}}";
    seen e = {0};
    ck_assert(slr_kafka_stats_walk(escaped, strlen(escaped), on_stat, &e));
    ck_assert_int_eq(e.n, 1);
    ck_assert_str_eq(e.topic, "clicks");
    ck_assert_int_eq(e.partition[0], 3);
}
END_TEST

static Suite *kafka_suite(void)
{
    Suite *s = suite_create("kafka");
    TCase *tc = tcase_create("embedded broker");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    /* KAFKA_TEST=name runs one test (debugging) */
    const char *only = getenv("KAFKA_TEST");
#define ADD(t) if (!only || !strcmp(only, #t)) tcase_add_test(tc, t)
    ADD(test_stats_walker);
    ADD(test_settings_refused);
    ADD(test_take_guards_positions);
    ADD(test_text_payloads);
    ADD(test_wrong_format_stops_before_commit);
    ADD(test_format_detected);
    ADD(test_exit_at_end_without_partitions);
    ADD(test_final_commit_refused_made_when_leaving);
    ADD(test_retention_loss_reported);
    ADD(test_retention_loss_many_partitions);
    ADD(test_refused_commit_retried);
    if (!only || !strcmp(only, "test_multi_partition_exactly_once"))
        tcase_add_loop_test(tc, test_multi_partition_exactly_once, 0, 2);
    ADD(test_rebalance_two_consumers);
    ADD(test_broker_down_and_up);
#undef ADD
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(kafka_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
