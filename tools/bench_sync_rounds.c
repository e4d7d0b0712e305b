/* bench_sync_rounds.c - a simulated group writing a sync topic, for tools/bench
 * follow-stall's topic run (predict --follow-topic while rounds arrive): one
 * member per source partition learns synthetic examples (features spread
 * over the whole 2^BITS table) and publishes its slice's delta, as
 * engine/job/train_sync.c does, so that the scorer has real rounds of a
 * -b BITS model to merge.  It writes a snapshot of theta_0 (a scorer starts
 * from one), prints "ready", then publishes one round per line read on
 * stdin and prints "round R" once the round is acknowledged.
 * Built by `make`, not installed.
 *
 *   bench-sync-rounds BROKERS SYNC_TOPIC BITS EXAMPLES_PER_PARTITION_AND_ROUND */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamlr.h"

#define PARTS 2
#define WAIT_MS 60000

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "bench-sync-rounds: %s: %s\n", what, why);
    return 1;
}

static uint64_t next(uint64_t *s) /* xorshift64*: reproducible, no libc state */
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

int main(int argc, char **argv)
{
    if (argc != 5)
        return fail("usage", "bench-sync-rounds BROKERS SYNC_TOPIC BITS EXAMPLES");
    unsigned bits = (unsigned)atoi(argv[3]);
    long per = atol(argv[4]);
    slr_learner_config cfg;
    slr_learner_config_defaults(&cfg);
    slr_hashing_init(&cfg.hashing, bits);
    cfg.l1 = 1e-7;
    cfg.l2 = 1e-6;
    slr_sync_topic_config sc = {.brokers = argv[1], .topic = argv[2], .source_topic = "clicks",
                                .source_partitions = PARTS, .slice = per};
    slr_error err;
    slr_sync_member *m[PARTS];
    slr_sync_publisher *pub;
    slr_sync_reader *rd;
    for (int p = 0; p < PARTS; p++) {
        char name[SLR_SYNC_MAX_MEMBER_ID + 1];
        if (slr_sync_slice_name(name, sizeof name, "clicks", p, &err) != SLR_OK ||
            slr_sync_member_create(&m[p], &cfg, name, 1, &err) != SLR_OK)
            return fail("member", err.msg);
    }
    if (slr_sync_publisher_create(&pub, &sc, &err) != SLR_OK ||
        slr_sync_reader_create(&rd, &sc, 0, 0, &err) != SLR_OK)
        return fail(argv[2], err.msg);
    if (slr_sync_publish_snapshot(pub, slr_sync_member_shared(m[0]), 0,
                                  slr_sync_member_ledger(m[0]), 0, 0, &err) != SLR_OK ||
        slr_sync_publisher_flush(pub, WAIT_MS, &err) != SLR_OK)
        return fail("snapshot", err.msg);
    printf("ready\n");
    fflush(stdout);
    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        uint64_t r = slr_sync_reader_round(rd);
        for (int p = 0; p < PARTS; p++) {
            int64_t from = (int64_t)r * per;
            for (int64_t o = from; o < from + per; o++) {
                uint64_t s = (uint64_t)(p * 1000003 + o + 1) * 0x9E3779B97F4A7C15ULL | 1;
                slr_example_reset(&ex);
                for (int k = 0; k < 20; k++)
                    slr_example_add_hashed(&ex, next(&s), 1.0, NULL);
                if (slr_example_finish(&ex, &err) != SLR_OK)
                    return fail("example", err.msg);
                ex.label = (next(&s) & 1) ? 1.0 : 0.0;
                ex.has_label = true;
                ex.weight = 1.0;
                slr_sync_member_learn(m[p], &ex, NULL);
            }
            slr_sync_range rg = {(char *)"clicks", p, from, from + per};
            slr_sync_delta d;
            if (slr_sync_member_end_round(m[p], &rg, 1, &d, &err) != SLR_OK ||
                slr_sync_publish(pub, &d, &err) != SLR_OK)
                return fail("delta", err.msg);
            slr_sync_delta_clear(&d);
        }
        if (slr_sync_publisher_flush(pub, WAIT_MS, &err) != SLR_OK)
            return fail("flush", err.msg);
        bool complete, ended;
        const slr_sync_delta *ds;
        size_t k;
        if (slr_sync_reader_next(rd, WAIT_MS, &complete, &ds, &k, &ended, &err) != SLR_OK)
            return fail("read", err.msg);
        if (!complete)
            return fail("read", "round not complete");
        for (int p = 0; p < PARTS; p++)
            if (slr_sync_member_apply(m[p], ds, k, SLR_SYNC_RELAXD, NULL, &err) != SLR_OK)
                return fail("apply", err.msg);
        printf("round %llu\n", (unsigned long long)r);
        fflush(stdout);
    }
    slr_example_free(&ex);
    for (int p = 0; p < PARTS; p++)
        slr_sync_member_destroy(m[p]);
    slr_sync_publisher_destroy(pub);
    slr_sync_reader_destroy(rd);
    return 0;
}
