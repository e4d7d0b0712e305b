/* fuzz_sync.c - the sync delta and ledger readers (sync.h) on arbitrary bytes.
 *
 * fuzz_sync decodes the input as a delta record; whatever the decoder
 * accepts is encoded again (the two must give the same bytes back through
 * a second decode) and merged into a small model, after setting its
 * fingerprint and round to the model's so that the merge goes past those
 * checks: the merge must refuse it cleanly or leave every weight finite.
 * fuzz_sync_ledger decodes the input as a ledger; an accepted ledger must
 * encode and decode to the same bytes. */
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "streamlr/sync.h"
#include "streamlr/sync_topic.h"

int fuzz_sync(const uint8_t *data, size_t size)
{
    slr_sync_delta d;
    slr_error err;
    if (slr_sync_delta_decode(data, size, &d, &err) != SLR_OK)
        return 0;
    unsigned char *a, *b;
    size_t la, lb;
    FUZZ_CHECK(slr_sync_delta_encode(&d, &a, &la, &err) == SLR_OK, "%s", err.msg);
    slr_sync_delta again;
    FUZZ_CHECK(slr_sync_delta_decode(a, la, &again, &err) == SLR_OK, "re-read: %s", err.msg);
    FUZZ_CHECK(slr_sync_delta_encode(&again, &b, &lb, &err) == SLR_OK, "%s", err.msg);
    FUZZ_CHECK(la == lb && memcmp(a, b, la) == 0, "encode(decode(encode(x))) differs");
    free(a);
    free(b);
    slr_sync_delta_clear(&again);

    slr_learner_config cfg;
    slr_learner_config_defaults(&cfg);
    slr_hashing_init(&cfg.hashing, 12);
    cfg.l1 = 1e-6;
    cfg.l2 = 1e-6;
    slr_learner *l;
    FUZZ_CHECK(slr_learner_create(&l, &cfg, &err) == SLR_OK, "%s", err.msg);
    d.fingerprint = slr_sync_fingerprint(&cfg);
    d.round = 0;
    if (slr_sync_merge(l, 0, &d, 1, SLR_SYNC_RELAXD, NULL, NULL, &err) == SLR_OK) {
        slr_learner_sync(l);
        for (uint64_t j = 0; j <= slr_learner_bias_index(l); j++)
            FUZZ_CHECK(isfinite(slr_learner_weight(l, j)), "weight %llu", (unsigned long long)j);
        FUZZ_CHECK(slr_learner_steps(l) == d.examples, "step %llu after %llu examples",
                   (unsigned long long)slr_learner_steps(l), (unsigned long long)d.examples);
    }
    slr_learner_destroy(l);
    slr_sync_delta_clear(&d);
    return 0;
}

int fuzz_sync_ledger(const uint8_t *data, size_t size)
{
    slr_sync_ledger *g, *h;
    slr_error err;
    if (slr_sync_ledger_decode(data, size, &g, &err) != SLR_OK)
        return 0;
    unsigned char *a, *b;
    size_t la, lb;
    FUZZ_CHECK(slr_sync_ledger_encode(g, &a, &la, &err) == SLR_OK, "%s", err.msg);
    FUZZ_CHECK(slr_sync_ledger_decode(a, la, &h, &err) == SLR_OK, "re-read: %s", err.msg);
    FUZZ_CHECK(slr_sync_ledger_encode(h, &b, &lb, &err) == SLR_OK, "%s", err.msg);
    FUZZ_CHECK(la == lb && memcmp(a, b, la) == 0, "encode(decode(encode(x))) differs");
    free(a);
    free(b);
    slr_sync_ledger_destroy(g);
    slr_sync_ledger_destroy(h);
    return 0;
}

/* fuzz_sync_snapshot decodes the input as a snapshot body (sync_topic.h); an
 * accepted one must encode to bytes that decode and encode identically. */
int fuzz_sync_snapshot(const uint8_t *data, size_t size)
{
    slr_sync_snapshot s, again;
    slr_error err;
    if (slr_sync_snapshot_decode(data, size, &s, &err) != SLR_OK)
        return 0;
    unsigned char *a, *b;
    size_t la, lb;
    FUZZ_CHECK(slr_sync_snapshot_encode(&s, &a, &la, &err) == SLR_OK, "%s", err.msg);
    FUZZ_CHECK(slr_sync_snapshot_decode(a, la, &again, &err) == SLR_OK, "re-read: %s", err.msg);
    FUZZ_CHECK(slr_sync_snapshot_encode(&again, &b, &lb, &err) == SLR_OK, "%s", err.msg);
    FUZZ_CHECK(la == lb && memcmp(a, b, la) == 0, "encode(decode(encode(x))) differs");
    free(a);
    free(b);
    slr_sync_snapshot_clear(&again);
    slr_sync_snapshot_clear(&s);
    return 0;
}
