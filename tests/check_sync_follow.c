/* check_sync_follow.c - snapshots of a group's shared model on the sync
 * topic (sync_topic.h) against the embedded broker: a reader that starts
 * from the newest complete snapshot holds the model bit for bit as one that
 * replayed every round; a snapshot torn by a writer killed mid-way is
 * ignored; a reader whose position fell off the topic's retention goes on
 * from a snapshot after it.  The group is simulated in this process: one
 * slr_sync_member per source partition, learning synthetic examples drawn
 * from (partition, offset), publishing per-slice deltas and applying the
 * rounds the sync topic hands back, as engine/job/train_sync.c does.
 * A scorer following the sync topic (predict --follow-topic) scores with the
 * model of the round it names, compared with predict -i of that round's
 * model written as a checkpoint. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "kafka_testutil.h"
#include "learner/learner_io.h"
#include "streamlr/checkpoint.h"
#include "streamlr/learner.h"
#include "streamlr/predict.h"
#include "streamlr/sync.h"
#include "streamlr/sync_topic.h"
#include "util/le.h"

#define BITS 12
#include "sync_testutil.h"
#define PARTS 2
#define SLICE 30
#define WAIT_MS 60000

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

static const char *streamlr_bin(void)
{
    const char *b = getenv("STREAMLR");
    return b && *b ? b : "tools/streamlr";
}

/* ------------------------------------------------------- a simulated group */

typedef struct group {
    slr_sync_topic_config sc;
    slr_sync_member *m[PARTS];
    slr_sync_publisher *pub;
    slr_sync_reader *rd;
    slr_learner_config cfg; /* ex points at its hashing */
    slr_example ex;
} group;

static void group_open(group *g, const slr_sync_topic_config *sc)
{
    memset(g, 0, sizeof *g);
    g->sc = *sc;
    g->cfg = test_config();
    const slr_learner_config cfg = g->cfg;
    slr_error err;
    for (int p = 0; p < PARTS; p++) {
        char name[SLR_SYNC_MAX_MEMBER_ID + 1];
        ck_assert_int_eq(slr_sync_slice_name(name, sizeof name, sc->source_topic, p, &err), SLR_OK);
        ck_assert_msg(slr_sync_member_create(&g->m[p], &cfg, name, 1, &err) == SLR_OK, "%s", err.msg);
    }
    ck_assert_msg(slr_sync_publisher_create(&g->pub, sc, &err) == SLR_OK, "%s", err.msg);
    ck_assert_msg(slr_sync_reader_create(&g->rd, sc, 0, 0, &err) == SLR_OK, "%s", err.msg);
    slr_example_init(&g->ex, &g->cfg.hashing);
}

static void group_close(group *g)
{
    for (int p = 0; p < PARTS; p++)
        slr_sync_member_destroy(g->m[p]);
    slr_sync_publisher_destroy(g->pub);
    slr_sync_reader_destroy(g->rd);
    slr_example_free(&g->ex);
}

/* One round: every partition learns its slice from theta_r and publishes
 * its delta; the round comes back from the sync topic and is applied. */
static void group_round(group *g)
{
    slr_error err;
    uint64_t r = slr_sync_reader_round(g->rd);
    for (int p = 0; p < PARTS; p++) {
        int64_t from = (int64_t)r * SLICE;
        for (int64_t o = from; o < from + SLICE; o++) {
            test_rng rng = {.s = (uint64_t)(p * 1000003 + o + 1)};
            sync_test_example(&g->ex, &rng);
            slr_sync_member_learn(g->m[p], &g->ex, NULL);
        }
        slr_sync_range rg = {(char *)g->sc.source_topic, p, from, from + SLICE};
        slr_sync_delta d;
        ck_assert_int_eq(slr_sync_member_end_round(g->m[p], &rg, 1, &d, &err), SLR_OK);
        ck_assert_msg(slr_sync_publish(g->pub, &d, &err) == SLR_OK, "%s", err.msg);
        slr_sync_delta_clear(&d);
    }
    ck_assert_msg(slr_sync_publisher_flush(g->pub, WAIT_MS, &err) == SLR_OK, "%s", err.msg);
    bool complete, ended;
    const slr_sync_delta *ds;
    size_t k;
    ck_assert_msg(slr_sync_reader_next(g->rd, WAIT_MS, &complete, &ds, &k, &ended, &err) == SLR_OK,
                  "%s", err.msg);
    ck_assert(complete && !ended);
    ck_assert_uint_eq(k, PARTS);
    for (int p = 0; p < PARTS; p++)
        ck_assert_msg(slr_sync_member_apply(g->m[p], ds, k, SLR_SYNC_RELAXD, NULL, &err) == SLR_OK,
                      "%s", err.msg);
}

/* A snapshot of the group's theta_r now, as the members' loop writes it. */
static void group_snapshot(group *g, size_t max_record, bool read_on)
{
    slr_error err;
    const slr_sync_member *m = g->m[0];
    ck_assert_msg(slr_sync_publish_snapshot(g->pub, slr_sync_member_shared(m),
                                            slr_sync_member_round(m), slr_sync_member_ledger(m),
                                            slr_sync_reader_position(g->rd), max_record,
                                            &err) == SLR_OK,
                  "%s", err.msg);
    ck_assert_msg(slr_sync_publisher_flush(g->pub, WAIT_MS, &err) == SLR_OK, "%s", err.msg);
    if (!read_on)
        return;
    /* the members read on (and over it) as it is written */
    bool caught_up;
    ck_assert_msg(slr_sync_reader_catch_up(g->rd, WAIT_MS, &caught_up, &err) == SLR_OK, "%s",
                  err.msg);
    ck_assert(caught_up);
}

static unsigned char *group_model(group *g, size_t *len)
{
    return model_bytes((slr_learner *)slr_sync_member_shared(g->m[0]), len);
}

/* Rounds from the reader applied to (theta, ledger) until none is complete
 * within a short wait; how many. */
static uint64_t follow_rounds(slr_sync_reader *rd, slr_learner *theta, slr_sync_ledger *ledger)
{
    uint64_t n = 0;
    slr_error err;
    for (;;) {
        bool caught_up, complete, ended;
        const slr_sync_delta *ds;
        size_t k;
        ck_assert_msg(slr_sync_reader_catch_up(rd, WAIT_MS, &caught_up, &err) == SLR_OK, "%s",
                      err.msg);
        ck_assert_msg(slr_sync_reader_next(rd, 0, &complete, &ds, &k, &ended, &err) == SLR_OK, "%s",
                      err.msg);
        if (!complete) {
            ck_assert(caught_up);
            return n;
        }
        uint64_t r = slr_sync_reader_round(rd) - 1;
        ck_assert_msg(slr_sync_apply_round(theta, ledger, r, ds, k, SLR_SYNC_RELAXD, NULL, NULL,
                                           NULL, &err) == SLR_OK,
                      "round %llu: %s", (unsigned long long)r, err.msg);
        n++;
    }
}

static void assert_same_model(slr_learner *l, const unsigned char *want, size_t want_len,
                              const char *what)
{
    size_t len;
    unsigned char *b = model_bytes(l, &len);
    ck_assert_uint_eq(len, want_len);
    size_t at = 0;
    while (at < len && b[at] == want[at])
        at++;
    ck_assert_msg(at == len, "%s: models differ at coordinate %zu", what, at / 12);
    free(b);
}

static int64_t reach(const slr_sync_ledger *g, int32_t p)
{
    int64_t r[8][2];
    size_t n = slr_sync_ledger_ranges(g, "clicks", p, r, 8);
    ck_assert_uint_le(n, 8);
    return n ? r[n - 1][1] : 0;
}

static slr_sync_topic_config fresh_sync_topic(test_cluster *c, char *sync, size_t n)
{
    test_unique(sync, n, "model");
    test_topic(c, sync, 1);
    return (slr_sync_topic_config){.brokers = c->bootstraps, .topic = sync,
                                   .source_topic = "clicks", .source_partitions = PARTS,
                                   .slice = SLICE};
}

/* The first n records of topic `from` (partition 0) produced again, headers
 * and all, onto `to`: a writer that died after n chunks. */
static void copy_records(test_cluster *c, const char *from, const char *to, int n)
{
    rd_kafka_t *rk = test_observer(c, "copy");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, from, 0)->offset = 0;
    ck_assert_int_eq(rd_kafka_assign(rk, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    double until = test_now() + 60;
    for (int got = 0; got < n;) {
        ck_assert(test_now() < until);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err) {
            rd_kafka_headers_t *h = NULL;
            ck_assert_int_eq(rd_kafka_message_detach_headers(m, &h), 0);
            ck_assert_int_eq(rd_kafka_producev(c->producer, RD_KAFKA_V_TOPIC(to),
                                               RD_KAFKA_V_PARTITION(0),
                                               RD_KAFKA_V_KEY(m->key, m->key_len),
                                               RD_KAFKA_V_VALUE(m->payload, m->len),
                                               RD_KAFKA_V_HEADERS(h),
                                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                               RD_KAFKA_V_END),
                             0);
            got++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    test_flush(c);
}

/* Every record of the sync topic: how many carry a snapshot header, and the
 * largest record (key + value + headers' names and values). */
static void scan_sizes(test_cluster *c, const char *topic, int *snapshots, size_t *largest)
{
    int64_t lo, hi;
    test_watermarks(c, topic, 0, &lo, &hi);
    rd_kafka_t *rk = test_observer(c, "sizes");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset = lo;
    ck_assert_int_eq(rd_kafka_assign(rk, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    *snapshots = 0;
    *largest = 0;
    double until = test_now() + 60;
    for (int64_t next = lo; next < hi;) {
        ck_assert(test_now() < until);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err) {
            next = m->offset + 1;
            size_t size = m->len + m->key_len;
            rd_kafka_headers_t *h = NULL;
            if (rd_kafka_message_headers(m, &h) == 0) {
                const char *name;
                const void *v;
                size_t vn;
                for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &v, &vn) == 0; i++) {
                    size += strlen(name) + vn;
                    *snapshots += strcmp(name, SLR_SYNC_HEADER_SNAPSHOT) == 0;
                }
            }
            if (size > *largest)
                *largest = size;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* ------------------------------------------------------------------- tests */

/* Six rounds; a complete snapshot of theta_2 in records of at most 4 KiB,
 * then, after round 3, a snapshot of theta_4 torn after two chunks (a
 * writer killed mid-snapshot).  A reader that starts from the sync topic:
 *  - finds theta_2 (not the torn theta_4: were it loaded, its round would
 *    be 4, and decoding its half body fails);
 *  - merges rounds 2..5 after it into exactly the group's theta_6, bytes
 *    compared with the members' own model (a snapshot losing a
 *    coordinate's state, its lazy-penalty stamp, the step or the ledger
 *    gives other bytes, or a refused merge);
 *  - and a reader replaying from offset 0 gets the same bytes, stepping
 *    over the snapshots' records (a reader taking a chunk for a delta
 *    stops with SLR_ERR_CORRUPT). */
START_TEST(bootstrap_from_snapshot)
{
    make_theta();
    test_cluster c;
    test_cluster_start(&c, 1);
    char sync[128], scratch[128];
    test_topic(&c, "clicks", PARTS); /* the source, for inspect's partition count */
    slr_sync_topic_config sc = fresh_sync_topic(&c, sync, sizeof sync);
    group g;
    group_open(&g, &sc);
    group_round(&g);
    group_round(&g);
    group_snapshot(&g, 4096, true);
    group_round(&g);
    group_round(&g);
    /* theta_4's snapshot written whole to a scratch topic; two of its chunks copied */
    slr_sync_topic_config scratch_sc = fresh_sync_topic(&c, scratch, sizeof scratch);
    slr_sync_publisher *spub;
    slr_error err;
    ck_assert_int_eq(slr_sync_publisher_create(&spub, &scratch_sc, &err), SLR_OK);
    const slr_sync_member *m0 = g.m[0];
    ck_assert_int_eq(slr_sync_publish_snapshot(spub, slr_sync_member_shared(m0), 4,
                                               slr_sync_member_ledger(m0),
                                               slr_sync_reader_position(g.rd), 4096, &err),
                     SLR_OK);
    ck_assert_int_eq(slr_sync_publisher_flush(spub, WAIT_MS, &err), SLR_OK);
    slr_sync_publisher_destroy(spub);
    copy_records(&c, scratch, sync, 2);
    group_round(&g);
    group_round(&g);
    size_t want_len;
    unsigned char *want = group_model(&g, &want_len);
    ck_assert_uint_eq(slr_sync_member_round(g.m[0]), 6);

    /* the snapshots kept to 4 KiB records, in several chunks */
    int snapshots;
    size_t largest;
    scan_sizes(&c, sync, &snapshots, &largest);
    ck_assert_int_gt(snapshots, 4);
    ck_assert_uint_le(largest, 4096);

    /* inspect sees the complete snapshot of round 2 among the records */
    slr_sync_topic_info info;
    slr_sync_topic_config ic = {.brokers = c.bootstraps, .topic = sync};
    ck_assert_msg(slr_sync_topic_inspect(&ic, WAIT_MS, &info, &err) == SLR_OK, "%s", err.msg);
    ck_assert(info.snapshot);
    ck_assert_uint_eq(info.snapshot_round, 2);
    ck_assert_int_eq(info.snapshot_offset, 2 * PARTS);
    ck_assert_int_eq(info.snapshot_records, snapshots);
    ck_assert_uint_eq(info.rounds, 6);
    ck_assert_uint_eq(info.different + info.late + info.identical, 0);
    slr_sync_topic_info_free(&info);
    char cmd[1024], out[4096] = "";
    snprintf(cmd, sizeof cmd, "timeout 120 %s inspect --brokers %s --sync-topic %s 2>&1",
             streamlr_bin(), c.bootstraps, sync);
    FILE *pf = popen(cmd, "r");
    ck_assert_ptr_nonnull(pf);
    out[fread(out, 1, sizeof out - 1, pf)] = '\0';
    ck_assert_int_eq(pclose(pf), 0);
    ck_assert_msg(strstr(out, "snapshot         round 2 at offset 4,"), "%s", out);

    slr_sync_snapshot s;
    bool found;
    ck_assert_msg(slr_sync_snapshot_find(&sc, WAIT_MS, &s, &found, &err) == SLR_OK, "%s", err.msg);
    ck_assert(found);
    ck_assert_uint_eq(s.round, 2);
    ck_assert_str_eq(s.source_topic, "clicks");
    ck_assert_int_eq(s.source_partitions, PARTS);
    ck_assert_int_eq(s.slice, SLICE);
    ck_assert_int_eq(s.position, 2 * PARTS); /* after round 1's last delta */
    ck_assert_int_eq(reach(s.ledger, 1), 2 * SLICE);
    slr_sync_reader *rd;
    ck_assert_msg(slr_sync_reader_create_at(&rd, &sc, &s, &err) == SLR_OK, "%s", err.msg);
    ck_assert_uint_eq(follow_rounds(rd, s.learner, s.ledger), 4);
    assert_same_model(s.learner, want, want_len, "snapshot of round 2 + rounds 2..5");
    ck_assert_int_eq(reach(s.ledger, 0), 6 * SLICE);
    slr_sync_reader_destroy(rd);
    slr_sync_snapshot_clear(&s);

    /* a reader at offset 0 seeks the snapshot itself; another replays all */
    ck_assert_int_eq(slr_sync_reader_create(&rd, &sc, 0, 0, &err), SLR_OK);
    bool loaded;
    ck_assert_msg(slr_sync_reader_seek_snapshot(rd, WAIT_MS, &s, &loaded, &err) == SLR_OK, "%s",
                  err.msg);
    ck_assert(loaded);
    ck_assert_uint_eq(slr_sync_reader_round(rd), 2);
    ck_assert_uint_eq(follow_rounds(rd, s.learner, s.ledger), 4);
    assert_same_model(s.learner, want, want_len, "seek_snapshot + rounds 2..5");
    slr_sync_reader_destroy(rd);
    slr_sync_snapshot_clear(&s);

    slr_learner_config cfg = test_config();
    slr_learner *theta;
    slr_sync_ledger *ledger;
    ck_assert_int_eq(slr_learner_create(&theta, &cfg, &err), SLR_OK);
    ck_assert_int_eq(slr_sync_ledger_create(&ledger, &err), SLR_OK);
    ck_assert_int_eq(slr_sync_reader_create(&rd, &sc, 0, 0, &err), SLR_OK);
    ck_assert_uint_eq(follow_rounds(rd, theta, ledger), 6);
    assert_same_model(theta, want, want_len, "replay from offset 0");
    slr_sync_reader_destroy(rd);
    slr_learner_destroy(theta);
    slr_sync_ledger_destroy(ledger);

    free(want);
    group_close(&g);
    test_cluster_stop(&c);
}
END_TEST

/* A member restarted from a snapshot (slr_sync_member_load) learns the next
 * round's delta bit for bit as the member that never stopped. */
START_TEST(member_loads_snapshot)
{
    make_theta();
    test_cluster c;
    test_cluster_start(&c, 1);
    char sync[128];
    slr_sync_topic_config sc = fresh_sync_topic(&c, sync, sizeof sync);
    group g;
    group_open(&g, &sc);
    group_round(&g);
    group_round(&g);
    group_snapshot(&g, 0, true);
    slr_sync_snapshot s;
    bool found;
    slr_error err;
    ck_assert_msg(slr_sync_snapshot_find(&sc, WAIT_MS, &s, &found, &err) == SLR_OK, "%s", err.msg);
    ck_assert(found);
    slr_learner_config cfg = test_config();
    slr_sync_member *fresh;
    ck_assert_int_eq(slr_sync_member_create(&fresh, &cfg, "clicks/000000", 1, &err), SLR_OK);
    ck_assert_msg(slr_sync_member_load(fresh, s.learner, s.ledger, s.round, &err) == SLR_OK, "%s",
                  err.msg);
    s.learner = NULL;
    s.ledger = NULL;
    /* both learn partition 0's slice of round 2 */
    slr_sync_delta d[2];
    slr_sync_member *both[2] = {g.m[0], fresh};
    for (int i = 0; i < 2; i++) {
        for (int64_t o = 2 * SLICE; o < 3 * SLICE; o++) {
            test_rng rng = {.s = (uint64_t)(o + 1)};
            sync_test_example(&g.ex, &rng);
            slr_sync_member_learn(both[i], &g.ex, NULL);
        }
        slr_sync_range rg = {(char *)"clicks", 0, 2 * SLICE, 3 * SLICE};
        ck_assert_int_eq(slr_sync_member_end_round(both[i], &rg, 1, &d[i], &err), SLR_OK);
    }
    unsigned char *a, *b;
    size_t la, lb;
    ck_assert_int_eq(slr_sync_delta_encode(&d[0], &a, &la, &err), SLR_OK);
    ck_assert_int_eq(slr_sync_delta_encode(&d[1], &b, &lb, &err), SLR_OK);
    ck_assert_int_gt(d[0].n_entries, 10);
    ck_assert(la == lb && memcmp(a, b, la) == 0);
    free(a);
    free(b);
    slr_sync_delta_clear(&d[0]);
    slr_sync_delta_clear(&d[1]);
    slr_sync_member_destroy(fresh);
    slr_sync_snapshot_clear(&s);
    group_close(&g);
    test_cluster_stop(&c);
}
END_TEST

/* A model of 2^17 coordinates, every one of them with state: a snapshot
 * of ~2.6 MiB. */
static slr_learner *big_model(void)
{
    slr_learner_config cfg = test_config();
    slr_hashing_init(&cfg.hashing, 17);
    slr_learner *l;
    slr_error err;
    ck_assert_int_eq(slr_learner_create(&l, &cfg, &err), SLR_OK);
    const size_t n = (size_t)1 << 17;
    unsigned char *rec = malloc(n * SLR_STATE_RECORD), *p = rec;
    for (size_t j = 0; j < n; j++, p += SLR_STATE_RECORD) {
        slr_le_put_u32(p, (uint32_t)j);
        slr_le_put_f64(p + SLR_STATE_W, 1e-3 * (double)(j % 1000 + 1));
        slr_le_put_f64(p + SLR_STATE_G2, 1.0);
        slr_le_put_u32(p + SLR_STATE_STAMP, 0);
    }
    ck_assert_int_eq(slr_learner_state_apply(l, rec, n * SLR_STATE_RECORD, SLR_STATE_STAMPS_KEEP,
                                             "test", &err),
                     SLR_OK);
    free(rec);
    return l;
}

/* Retention: rounds 0..2, then more than the embedded broker keeps of a
 * partition (~5 MiB: it drops the oldest batches; 10 MiB are written), then round 3, a snapshot
 * of theta_4 and rounds 4, 5.  A reader whose position (after round 1) the
 * broker dropped is lost (without auto.offset.reset=error librdkafka would
 * jump to the end and the reader wait forever for round 2), goes on from the
 * snapshot after it, and ends at the group's theta_6 bit for bit. */
START_TEST(retention_restarts_from_snapshot)
{
    make_theta();
    test_cluster c;
    test_cluster_start(&c, 1);
    char sync[128];
    slr_sync_topic_config sc = fresh_sync_topic(&c, sync, sizeof sync);
    group g;
    group_open(&g, &sc);
    group_snapshot(&g, 0, true); /* theta_0, for the scorer */
    group_round(&g);
    group_round(&g);
    const int64_t after_round1 = slr_sync_reader_position(g.rd);
    /* a scorer following the topic at theta_2, its client fetching little
     * ahead (so that what retention drops is not in its memory already) */
    static const char *const small_fetch[] = {"queued.max.messages.kbytes=1"};
    slr_sync_topic_config fc = {.brokers = c.bootstraps, .topic = sync,
                                .properties = small_fetch, .n_properties = 1};
    slr_sync_follower *fol;
    slr_error err;
    ck_assert_msg(slr_sync_follower_open(&fol, &fc, WAIT_MS, &err) == SLR_OK, "%s", err.msg);
    ck_assert_uint_eq(slr_sync_follower_round(fol), 2);
    ck_assert_uint_eq(slr_sync_follower_snapshots(fol), 1);
    group_round(&g);
    /* the filler: four snapshots of 2.6 MiB (of another model: readers
     * step over them, and their position is before what the broker keeps),
     * the members reading each before the next is written */
    int64_t lo, hi, before;
    test_watermarks(&c, sync, 0, &lo, &before);
    ck_assert_int_eq(lo, 0);
    slr_learner *big = big_model();
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(slr_sync_publish_snapshot(g.pub, big, 3, slr_sync_member_ledger(g.m[0]),
                                                slr_sync_reader_position(g.rd), 0, &err) == SLR_OK,
                      "%s", err.msg);
        ck_assert_int_eq(slr_sync_publisher_flush(g.pub, WAIT_MS, &err), SLR_OK);
        bool read_on;
        ck_assert_int_eq(slr_sync_reader_catch_up(g.rd, WAIT_MS, &read_on, &err), SLR_OK);
        ck_assert(read_on);
    }
    slr_learner_destroy(big);
    group_round(&g);
    group_snapshot(&g, 0, true); /* theta_4 */
    const int64_t snap4_position = slr_sync_reader_position(g.rd);
    group_round(&g);
    group_round(&g);
    size_t want_len;
    unsigned char *want = group_model(&g, &want_len);
    test_watermarks(&c, sync, 0, &lo, &hi);
    ck_assert_msg(lo > after_round1, "the broker kept everything (low watermark %lld)",
                  (long long)lo);
    ck_assert_int_le(lo, snap4_position);

    /* a member restarted from its checkpoint of theta_2 (position after round 1) */
    slr_sync_reader *rd;
    ck_assert_int_eq(slr_sync_reader_create(&rd, &sc, after_round1, 2, &err), SLR_OK);
    bool caught_up, complete, ended, loaded;
    const slr_sync_delta *ds;
    size_t k;
    slr_status st = slr_sync_reader_next(rd, WAIT_MS, &complete, &ds, &k, &ended, &err);
    ck_assert_int_eq(st, SLR_ERR_KAFKA);
    ck_assert(!complete);
    ck_assert_msg(strstr(err.msg, "no longer on the topic"), "%s", err.msg);
    ck_assert(slr_sync_reader_lost(rd));
    ck_assert_int_eq(slr_sync_reader_catch_up(rd, 100, &caught_up, &err), SLR_ERR_KAFKA);
    slr_sync_snapshot s;
    ck_assert_msg(slr_sync_reader_seek_snapshot(rd, WAIT_MS, &s, &loaded, &err) == SLR_OK, "%s",
                  err.msg);
    ck_assert(loaded);
    ck_assert(!slr_sync_reader_lost(rd));
    ck_assert_uint_eq(s.round, 4); /* the filler's snapshots start before the low watermark */
    ck_assert_uint_eq(follow_rounds(rd, s.learner, s.ledger), 2);
    assert_same_model(s.learner, want, want_len, "lost reader, snapshot of round 4 + rounds 4, 5");
    slr_sync_reader_destroy(rd);
    slr_sync_snapshot_clear(&s);

    /* the scorer, whose next round the broker dropped, goes on from the
     * snapshot of round 4 to theta_6: the group's model, owed penalties paid */
    bool changed;
    ck_assert_msg(slr_sync_follower_refresh(fol, WAIT_MS, &changed, &err) == SLR_OK, "%s", err.msg);
    ck_assert(changed);
    ck_assert_uint_eq(slr_sync_follower_round(fol), 6);
    ck_assert_uint_eq(slr_sync_follower_snapshots(fol), 2); /* it was lost, not merely behind */
    assert_same_model(slr_sync_follower_learner(fol), want, want_len, "scorer lost to retention");
    slr_sync_follower_close(fol);

    free(want);
    group_close(&g);
    test_cluster_stop(&c);
}
END_TEST

/* The body's codec: a snapshot reads back as the same model bytes; every
 * truncation, and a ledger past its round, is refused. */
START_TEST(snapshot_codec_refuses)
{
    make_theta();
    slr_learner_config cfg = test_config();
    slr_error err;
    slr_sync_snapshot s = {.round = 3, .position = 7, .slice = SLICE, .source_partitions = PARTS};
    snprintf(s.source_topic, sizeof s.source_topic, "clicks");
    ck_assert_int_eq(slr_learner_create(&s.learner, &cfg, &err), SLR_OK);
    ck_assert_int_eq(slr_sync_ledger_create(&s.ledger, &err), SLR_OK);
    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    for (int i = 0; i < 200; i++) {
        test_rng rng = {.s = (uint64_t)i + 1};
        sync_test_example(&ex, &rng);
        slr_learner_learn(s.learner, &ex, NULL);
    }
    slr_example_free(&ex);
    slr_sync_range rg = {(char *)"clicks", 1, 0, 3 * SLICE};
    ck_assert_int_eq(slr_sync_ledger_add(s.ledger, &rg, 1, &err), SLR_OK);
    unsigned char *body;
    size_t len;
    ck_assert_int_eq(slr_sync_snapshot_encode(&s, &body, &len, &err), SLR_OK);
    slr_sync_snapshot back;
    ck_assert_msg(slr_sync_snapshot_decode(body, len, &back, &err) == SLR_OK, "%s", err.msg);
    ck_assert_uint_eq(back.round, 3);
    ck_assert_int_eq(back.position, 7);
    size_t la, lb;
    unsigned char *a = model_bytes(s.learner, &la), *b = model_bytes(back.learner, &lb);
    ck_assert(la == lb && memcmp(a, b, la) == 0);
    free(a);
    free(b);
    slr_sync_snapshot_clear(&back);
    /* every truncation is refused */
    for (size_t cut = 0; cut < len; cut += 1 + cut / 8)
        ck_assert_int_eq(slr_sync_snapshot_decode(body, cut, &back, &err), SLR_ERR_CORRUPT);
    /* a ledger past the round */
    s.round = 2;
    unsigned char *body2;
    size_t len2;
    ck_assert_int_eq(slr_sync_snapshot_encode(&s, &body2, &len2, &err), SLR_OK);
    ck_assert_int_eq(slr_sync_snapshot_decode(body2, len2, &back, &err), SLR_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "after its round"), "%s", err.msg);
    free(body2);
    free(body);
    slr_sync_snapshot_clear(&s);
}
END_TEST

/* ------------------------------------------------- scoring, following it */

#define EX_PER_MSG 3
#define MAX_REQ 600

/* Example i of the requests, one VW line: features hashed all over the
 * 2^12 table, so that most scores depend on many learned weights. */
static int request_line(char *buf, size_t n, int i)
{
    test_rng r = {.s = (uint64_t)i * 7919 + 11};
    int len = snprintf(buf, n, "%d |f", test_rng_unif(&r) < 0.5 ? 1 : -1);
    for (int k = 0; k < 6; k++)
        len += snprintf(buf + len, n - (size_t)len, " x%d", (int)test_rng_below(&r, 3000));
    len += snprintf(buf + len, n - (size_t)len, "\n");
    return len;
}

typedef struct scorer_run {
    slr_predict_options po;
    slr_kafka_options in;
    const char *topics[1];
    slr_predict_result res;
    slr_error err;
    slr_status st;
    slr_stop_flag stop;
} scorer_run;

static void *run_scorer(void *arg)
{
    scorer_run *s = arg;
    s->st = slr_predict_kafka(&s->po, &s->in, &s->res, &s->err);
    return NULL;
}

typedef struct output {
    int64_t request;  /* the input offset */
    uint64_t round;   /* of the streamlr.model header */
    char value[512];
} output;

static void produce_request(test_cluster *c, const char *topic, int i)
{
    char msg[512];
    size_t len = 0;
    for (int e = 0; e < EX_PER_MSG; e++)
        len += (size_t)request_line(msg + len, sizeof msg - len, i * EX_PER_MSG + e);
    test_produce(c, topic, 0, msg, len);
    test_flush(c);
}

/* Outputs read so far from rk, up to *n; returns when `want` are there or
 * after ms. */
static void read_outputs(rd_kafka_t *rk, const char *sync, output *out, int *n, int want, int ms)
{
    double until = test_now() + ms / 1000.0;
    while (*n < want && test_now() < until) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
        if (!m)
            continue;
        if (!m->err) {
            ck_assert_int_lt(*n, MAX_REQ);
            output *o = &out[(*n)++];
            rd_kafka_headers_t *h = NULL;
            const void *v;
            size_t vn;
            ck_assert_int_eq(rd_kafka_message_headers(m, &h), 0);
            ck_assert_int_eq(rd_kafka_header_get_last(h, "streamlr.source", &v, &vn), 0);
            const char *at = memchr(v, '@', vn);
            ck_assert_ptr_nonnull(at);
            o->request = strtoll(at + 1, NULL, 10);
            ck_assert_int_eq(rd_kafka_header_get_last(h, "streamlr.model", &v, &vn), 0);
            char model[256], want_prefix[160];
            snprintf(model, sizeof model, "%.*s", (int)vn, (const char *)v);
            snprintf(want_prefix, sizeof want_prefix, "sync:%s@", sync);
            ck_assert_msg(strncmp(model, want_prefix, strlen(want_prefix)) == 0, "%s", model);
            o->round = strtoull(model + strlen(want_prefix), NULL, 10);
            ck_assert_uint_lt(m->len, sizeof o->value);
            memcpy(o->value, m->payload, m->len);
            o->value[m->len] = '\0';
        }
        rd_kafka_message_destroy(m);
    }
}

/* The group's theta_r as a checkpoint, and what `predict -i` says of every
 * request with it: lines[i] is request example i's line. */
static char **round_predictions(group *g, const char *dir, const char *requests, int n_examples)
{
    char ckpt[512], out[512], cmd[2048];
    uint64_t r = slr_sync_member_round(g->m[0]);
    snprintf(ckpt, sizeof ckpt, "%s/round%llu.ckpt", dir, (unsigned long long)r);
    snprintf(out, sizeof out, "%s/round%llu.pred", dir, (unsigned long long)r);
    slr_job_state js;
    slr_job_state_init(&js);
    slr_error err;
    ck_assert_msg(slr_checkpoint_write(ckpt, slr_sync_member_shared(g->m[0]), &js, &err) == SLR_OK,
                  "%s", err.msg);
    slr_job_state_free(&js);
    snprintf(cmd, sizeof cmd, "'%s' predict -i '%s' -d '%s' --format vw -p '%s' --quiet",
             streamlr_bin(), ckpt, requests, out);
    ck_assert_int_eq(system(cmd), 0);
    FILE *f = fopen(out, "r");
    ck_assert_ptr_nonnull(f);
    char **lines = calloc((size_t)n_examples, sizeof *lines);
    char line[256];
    for (int i = 0; i < n_examples; i++) {
        ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
        lines[i] = strdup(line);
    }
    fclose(f);
    return lines;
}

/* Warnings through slr_follower's warn: counted, the last kept. */
typedef struct warnings {
    pthread_mutex_t mu;
    int n;
    char last[SLR_ERROR_MSG_MAX + 512];
} warnings;

static void count_warning(void *ctx, const char *msg)
{
    warnings *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->n++;
    snprintf(w->last, sizeof w->last, "%s", msg);
    pthread_mutex_unlock(&w->mu);
}

static int warnings_seen(warnings *w)
{
    pthread_mutex_lock(&w->mu);
    int n = w->n;
    pthread_mutex_unlock(&w->mu);
    return n;
}

/* The follower's thread (slr_follower_start over a sync topic, as predict
 * --follow-topic runs it) reads and merges rounds and copies the scoring
 * model while the scorer goes on with the one it holds:
 *  - the model held is never written to while rounds arrive (its bytes stay
 *    those of the round it was stamped with: a merge into it, or a copy
 *    into it, shows), and it changes only at a refresh;
 *  - what a refresh swaps in is, bit for bit, what a follower opened afresh
 *    at that round scores with, and its name and sequence say that round;
 *  - a record that breaks the topic is said (on the thread) and the model
 *    kept: refresh swaps nothing in, the held bytes stay.  (The reader
 *    fails on such a record once, so this does not show that a lasting
 *    error is said only once.) */
START_TEST(follower_thread_swaps_between)
{
    make_theta();
    test_cluster c;
    test_cluster_start(&c, 1);
    char sync[128];
    slr_sync_topic_config sc = fresh_sync_topic(&c, sync, sizeof sync);
    group g;
    group_open(&g, &sc);
    group_snapshot(&g, 0, true);
    group_round(&g);
    group_round(&g);

    warnings w = {.n = 0};
    pthread_mutex_init(&w.mu, NULL);
    slr_error err;
    slr_follower *fo;
    slr_sync_topic_config fc = {.brokers = c.bootstraps, .topic = sync};
    ck_assert_msg(slr_follower_open_topic(&fo, &fc, WAIT_MS, count_warning, &w, &err) == SLR_OK,
                  "%s", err.msg);
    ck_assert_msg(slr_follower_start(fo, 0.02, &err) == SLR_OK, "%s", err.msg);
    ck_assert_uint_eq(slr_follower_state(fo)->sequence, 2);
    size_t held_len;
    unsigned char *held = model_bytes(slr_follower_learner(fo), &held_len);
    uint64_t at = 2;
    for (uint64_t want = 3; want <= 5; want++) {
        group_round(&g); /* theta_want on the topic */
        double until = test_now() + 60;
        while (at < want) {
            ck_assert_msg(test_now() < until, "round %llu never swapped in",
                          (unsigned long long)want);
            /* the thread works while the scorer holds its model */
            assert_same_model(slr_follower_learner(fo), held, held_len, "the model held");
            if (!slr_follower_refresh(fo)) {
                test_sleep_ms(5);
                continue;
            }
            at = slr_follower_state(fo)->sequence;
            ck_assert_uint_le(at, want);
            char name[256];
            snprintf(name, sizeof name, "sync:%s@%llu/", sync, (unsigned long long)at);
            ck_assert_msg(strncmp(slr_follower_name(fo), name, strlen(name)) == 0, "%s",
                          slr_follower_name(fo));
            free(held);
            held = model_bytes(slr_follower_learner(fo), &held_len);
        }
        /* a follower opened now, on the calling thread, scores with the same bits */
        slr_sync_follower *ref;
        ck_assert_msg(slr_sync_follower_open(&ref, &fc, WAIT_MS, &err) == SLR_OK, "%s", err.msg);
        ck_assert_uint_eq(slr_sync_follower_round(ref), want);
        ck_assert_str_eq(slr_sync_follower_name(ref), slr_follower_name(fo));
        assert_same_model(slr_sync_follower_learner(ref), held, held_len, "the model swapped in");
        slr_sync_follower_close(ref);
    }
    ck_assert_int_eq(warnings_seen(&w), 0);

    /* a record that is no delta: said once, the model kept */
    test_produce(&c, sync, 0, "not a delta", 11);
    test_flush(&c);
    double until = test_now() + 60;
    while (warnings_seen(&w) == 0) {
        ck_assert_msg(test_now() < until, "the broken topic was never reported");
        ck_assert(!slr_follower_refresh(fo));
        test_sleep_ms(10);
    }
    for (int k = 0; k < 20; k++) { /* the thread looks again and again */
        ck_assert(!slr_follower_refresh(fo));
        test_sleep_ms(10);
    }
    assert_same_model(slr_follower_learner(fo), held, held_len, "the model kept");
    ck_assert_uint_eq(slr_follower_state(fo)->sequence, 5);
    ck_assert_int_eq(warnings_seen(&w), 1);
    ck_assert_msg(strstr(w.last, "still scoring with sync:") != NULL, "%s", w.last);
    slr_follower_close(fo);
    free(held);
    pthread_mutex_destroy(&w.mu);
    group_close(&g);
    test_cluster_stop(&c);
}
END_TEST

/* A scorer follows the sync topic while the group learns: it starts with
 * theta_2 (a snapshot of theta_0, then rounds 0 and 1 applied before the
 * first message), and rounds 2 and 3 complete while it runs.  Every output
 * names the round that scored it (non-decreasing, all three seen), and its
 * lines are exactly what `predict -i` prints with that round's model
 * written as a checkpoint: a scorer that switched in the middle of a
 * message, stamped another round than it used, or merged differently from
 * the members fails the comparison.  Then `predict --follow-topic --data`
 * scores the file with theta_4, as predict -i of theta_4 does. */
START_TEST(scorer_follows_topic)
{
    make_theta();
    test_cluster c;
    test_cluster_start(&c, 1);
    char sync[128], requests[128], scores[128];
    slr_sync_topic_config sc = fresh_sync_topic(&c, sync, sizeof sync);
    test_unique(requests, sizeof requests, "requests");
    test_unique(scores, sizeof scores, "scores");
    test_topic(&c, requests, 1);
    test_topic(&c, scores, 1);
    char *dir = test_mkdtemp("sync-follow");
    /* every request example, in one file, for predict -i */
    const int n_examples = MAX_REQ * EX_PER_MSG;
    char path[512];
    snprintf(path, sizeof path, "%s/requests.vw", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < n_examples; i++) {
        char line[256];
        request_line(line, sizeof line, i);
        fputs(line, f);
    }
    fclose(f);

    group g;
    group_open(&g, &sc);
    group_snapshot(&g, 0, true); /* theta_0: the model's settings, for scorers */
    group_round(&g);
    group_round(&g);
    char **pred[5] = {0};
    pred[2] = round_predictions(&g, dir, path, n_examples);

    scorer_run s;
    memset(&s, 0, sizeof s);
    slr_predict_options_init(&s.po);
    s.po.format = SLR_FORMAT_VW;
    s.po.follow_topic = sync;
    s.po.follow_interval_seconds = 0.05;
    s.po.output_topic = scores;
    s.po.stop = &s.stop;
    slr_kafka_options_init(&s.in);
    s.in.brokers = c.bootstraps;
    s.topics[0] = requests;
    s.in.topics = s.topics;
    s.in.n_topics = 1;
    s.in.group = "scorer";
    static const char *const conf[] = {"fetch.wait.max.ms=10"};
    s.in.config = conf;
    s.in.n_config = 1;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, run_scorer, &s), 0);

    rd_kafka_t *rk = test_observer(&c, "scores-reader");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, scores, 0)->offset = 0;
    ck_assert_int_eq(rd_kafka_assign(rk, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    static output out[MAX_REQ];
    int n_out = 0, n_req = 0;
    for (; n_req < 20; n_req++)
        produce_request(&c, requests, n_req);
    read_outputs(rk, sync, out, &n_out, n_req, WAIT_MS);
    ck_assert_int_eq(n_out, n_req);
    for (uint64_t r = 3; r <= 4; r++) {
        group_round(&g);
        pred[r] = round_predictions(&g, dir, path, n_examples);
        /* requests one by one until one is scored with the new round */
        while (out[n_out - 1].round < r) {
            ck_assert_msg(n_req < MAX_REQ - 20, "round %llu never reached the scorer",
                          (unsigned long long)r);
            produce_request(&c, requests, n_req++);
            read_outputs(rk, sync, out, &n_out, n_req, WAIT_MS);
            ck_assert_int_eq(n_out, n_req);
            test_sleep_ms(20);
        }
        for (int k = 0; k < 10; k++)
            produce_request(&c, requests, n_req++);
        read_outputs(rk, sync, out, &n_out, n_req, WAIT_MS);
        ck_assert_int_eq(n_out, n_req);
    }
    s.stop = 1;
    pthread_join(t, NULL);
    ck_assert_msg(s.st == SLR_OK, "%s", s.err.msg);
    ck_assert_uint_ge(s.res.model_switches, 2);

    int seen[5] = {0};
    for (int i = 0; i < n_out; i++) {
        const output *o = &out[i];
        ck_assert_int_eq(o->request, i);
        ck_assert_uint_ge(o->round, 2);
        ck_assert_uint_le(o->round, 4);
        if (i > 0)
            ck_assert_uint_ge(o->round, out[i - 1].round);
        seen[o->round]++;
        char want[512] = "";
        for (int e = 0; e < EX_PER_MSG; e++)
            strcat(want, pred[o->round][i * EX_PER_MSG + e]);
        ck_assert_msg(strcmp(o->value, want) == 0, "request %d, round %llu:\n%sinstead of\n%s", i,
                      (unsigned long long)o->round, o->value, want);
    }
    ck_assert(seen[2] >= 20 && seen[3] >= 10 && seen[4] >= 10);
    /* the rounds' models score differently: the comparison above can fail */
    int differ = 0;
    for (int i = 0; i < n_examples; i++)
        differ += strcmp(pred[2][i], pred[3][i]) != 0 && strcmp(pred[3][i], pred[4][i]) != 0;
    ck_assert_int_gt(differ, n_examples / 2);

    /* files: predict --follow-topic --data, against predict -i of theta_4 */
    char cmd[2048], outp[512], errp[512];
    snprintf(outp, sizeof outp, "%s/follow.pred", dir);
    snprintf(errp, sizeof errp, "%s/follow.err", dir);
    snprintf(cmd, sizeof cmd,
             "timeout 120 '%s' predict --follow-topic %s --brokers %s -d '%s' --format vw -p '%s' "
             "2>'%s'",
             streamlr_bin(), sync, c.bootstraps, path, outp, errp);
    ck_assert_int_eq(system(cmd), 0);
    f = fopen(outp, "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    for (int i = 0; i < n_examples; i++) {
        ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
        ck_assert_str_eq(line, pred[4][i]);
    }
    fclose(f);
    f = fopen(errp, "r");
    size_t got = fread(cmd, 1, sizeof cmd - 1, f);
    cmd[got] = '\0';
    fclose(f);
    char want[256];
    snprintf(want, sizeof want, "scoring with sync:%s@4/", sync);
    ck_assert_msg(strstr(cmd, want), "no \"%s\" in:\n%s", want, cmd);

    /* a sync topic without a snapshot is refused before anything is scored
     * (the deltas do not say the model's settings) */
    char bare[128];
    fresh_sync_topic(&c, bare, sizeof bare);
    snprintf(cmd, sizeof cmd,
             "timeout 120 '%s' predict --follow-topic %s --brokers %s -d '%s' --format vw -p '%s' "
             "2>'%s'",
             streamlr_bin(), bare, c.bootstraps, path, outp, errp);
    int rc = system(cmd);
    ck_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
    f = fopen(errp, "r");
    got = fread(cmd, 1, sizeof cmd - 1, f);
    cmd[got] = '\0';
    fclose(f);
    ck_assert_msg(strstr(cmd, "holds no complete snapshot"), "%s", cmd);

    for (int r = 2; r <= 4; r++) {
        for (int i = 0; i < n_examples; i++)
            free(pred[r][i]);
        free(pred[r]);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    group_close(&g);
    test_rmtree(dir);
    free(dir);
    test_cluster_stop(&c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sync_follow");
    TCase *tc = tcase_create("snapshots");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, snapshot_codec_refuses);
    tcase_add_test(tc, bootstrap_from_snapshot);
    tcase_add_test(tc, member_loads_snapshot);
    tcase_add_test(tc, retention_restarts_from_snapshot);
    tcase_add_test(tc, scorer_follows_topic);
    tcase_add_test(tc, follower_thread_swaps_between);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
