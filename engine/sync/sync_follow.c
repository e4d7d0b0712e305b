/* sync_follow.c - a model that follows a group's sync topic, for a scorer
 * (sync_topic.h; `streamlr predict --follow-topic`): the newest complete
 * snapshot, then every complete round after it, applied when the caller asks
 * (between messages, never in the middle of one).
 *
 * Two learners: theta, the group's model exactly as every reader merges it
 * (lazy penalties owed and all, since later merges depend on those bits),
 * and the scorer, a copy of theta with every owed penalty paid (scoring
 * reads weights as they are), rebuilt when a refresh moved theta.  A
 * caller that scores on another thread than it refreshes on takes each
 * scorer over (slr_sync_follower_take_learner): the next one is a new
 * copy, so the one being scored with is never written to.
 *
 * Why a whole copy rather than a scoring table patched on the coordinates
 * a round changed: with L1 or L2 every nonzero coordinate owes a penalty
 * that grows with the global step, so after any round every nonzero
 * weight scores differently, touched or not; a patched table would sweep
 * them all anyway (and, being swapped while scored with, would need a
 * second one kept two rounds behind).  Only an unregularised model would
 * gain.  The copy's cost (a -b 24 table: a few hundred ms) is paid on the
 * follower's thread (slr_follower_start), not the scorer's. */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/clock.h"
#include "learner/learner_io.h"
#include "streamlr/sync_topic.h"
#include "sync_impl.h"

struct slr_sync_follower {
    char *topic;
    slr_sync_reader *rd;
    slr_learner *theta, *scorer;
    slr_sync_ledger *ledger;
    double next_seek; /* a lost reader found no snapshot: when to read the topic again */
    uint64_t snapshots; /* loaded: at the start, and each time retention lost the reader */
    bool dirty;         /* theta moved since the scorer was built (or the build failed) */
    char name[SLR_SYNC_MAX_MEMBER_ID + 64];
};

/* A lost reader with no snapshot to go on from reads the whole topic for
 * one at most this often, not at every refresh. */
#define SEEK_RETRY_SECONDS 10.0

void slr_sync_follower_close(slr_sync_follower *f)
{
    if (!f)
        return;
    slr_sync_reader_destroy(f->rd);
    slr_learner_destroy(f->theta);
    slr_learner_destroy(f->scorer);
    slr_sync_ledger_destroy(f->ledger);
    free(f->topic);
    free(f);
}

/* The scorer: theta through its own checkpoint codec (a copy with every
 * bit of state), then its owed penalties paid. */
static slr_status rebuild_scorer(slr_sync_follower *f, slr_error *err)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    slr_learner_pack(&pk, f->theta);
    if (!sb.data)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory copying the model");
    msgpack_zone zone;
    msgpack_object obj;
    slr_learner *copy = NULL;
    slr_status st = slr_sync_unpack(sb.data, sb.size, &zone, &obj, "followed model", err);
    if (st == SLR_OK)
        st = slr_learner_unpack(&obj, "followed model", &copy, err);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
    if (st != SLR_OK)
        return st;
    slr_learner_sync(copy);
    slr_learner_destroy(f->scorer);
    f->scorer = copy;
    f->dirty = false;
    snprintf(f->name, sizeof f->name, "sync:%s@%llu/%lld", f->topic,
             (unsigned long long)slr_sync_reader_round(f->rd),
             (long long)slr_sync_reader_position(f->rd));
    return SLR_OK;
}

/* Take the snapshot's model and ledger over. */
static void take_snapshot(slr_sync_follower *f, slr_sync_snapshot *s)
{
    slr_learner_destroy(f->theta);
    slr_sync_ledger_destroy(f->ledger);
    f->theta = s->learner;
    f->ledger = s->ledger;
    f->snapshots++;
    s->learner = NULL;
    s->ledger = NULL;
    slr_sync_snapshot_clear(s);
}

slr_status slr_sync_follower_open(slr_sync_follower **out, const slr_sync_topic_config *cfg,
                                  int timeout_ms, slr_error *err)
{
    *out = NULL;
    slr_sync_snapshot s;
    bool found;
    slr_status st = slr_sync_snapshot_find(cfg, timeout_ms, &s, &found, err);
    if (st != SLR_OK)
        return st;
    if (!found)
        return slr_error_set(err, SLR_ERR_ARG,
                             "sync topic %s holds no complete snapshot: a scorer takes the model's "
                             "settings and the group's layout from one (the group writes one at "
                             "its start and every few rounds)",
                             cfg->topic);
    slr_sync_follower *f = calloc(1, sizeof *f);
    if (!f || !(f->topic = strdup(cfg->topic))) {
        free(f);
        slr_sync_snapshot_clear(&s);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    }
    /* the source layout is the snapshot's: a scorer needs none of the group's flags */
    slr_sync_topic_config rc = *cfg;
    rc.source_topic = s.source_topic;
    rc.source_partitions = s.source_partitions;
    rc.slice = s.slice;
    st = slr_sync_reader_create_at(&f->rd, &rc, &s, err);
    take_snapshot(f, &s);
    bool changed;
    /* a topic that does not answer (a probe timed out on a loaded machine,
     * a leader moving) is waited for, up to timeout_ms, as the snapshot was:
     * only what is still wrong then ends the open */
    const double until = slr_monotonic_seconds() + timeout_ms / 1000.0;
    while (st == SLR_OK) {
        double left = until - slr_monotonic_seconds();
        st = slr_sync_follower_refresh(f, left > 0 ? (int)(left * 1000) + 1 : 1, &changed, err);
        if (st == SLR_OK || !slr_sync_reader_unreachable(f->rd, NULL) ||
            slr_monotonic_seconds() >= until)
            break;
        st = SLR_OK;
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    }
    if (st == SLR_OK && !f->scorer)
        st = rebuild_scorer(f, err);
    if (st != SLR_OK) {
        slr_sync_follower_close(f);
        return st;
    }
    *out = f;
    return SLR_OK;
}

slr_status slr_sync_follower_refresh(slr_sync_follower *f, int budget_ms, bool *changed,
                                     slr_error *err)
{
    *changed = false;
    const double until = slr_monotonic_seconds() + budget_ms / 1000.0;
    slr_status st = SLR_OK;
    for (;;) {
        double left = until - slr_monotonic_seconds();
        bool caught_up, complete = false, ended = false, loaded;
        const slr_sync_delta *ds;
        size_t k;
        st = slr_sync_reader_catch_up(f->rd, left > 0 ? (int)(left * 1000) + 1 : 1, &caught_up, err);
        if (st == SLR_OK)
            st = slr_sync_reader_next(f->rd, 0, &complete, &ds, &k, &ended, err);
        if (st != SLR_OK && slr_sync_reader_lost(f->rd) && slr_monotonic_seconds() >= f->next_seek) {
            /* retention dropped the next round: the newest snapshot replaces theta */
            slr_sync_snapshot s;
            st = slr_sync_reader_seek_snapshot(f->rd, budget_ms > 1000 ? budget_ms : 1000, &s,
                                               &loaded, err);
            if (st == SLR_OK && loaded) {
                take_snapshot(f, &s);
                f->dirty = true;
                continue;
            }
            f->next_seek = slr_monotonic_seconds() + SEEK_RETRY_SECONDS;
        }
        if (st != SLR_OK || !complete || ended)
            break;
        uint64_t r = slr_sync_reader_round(f->rd) - 1;
        if ((st = slr_sync_apply_round(f->theta, f->ledger, r, ds, k, SLR_SYNC_RELAXD, NULL, NULL,
                                       NULL, err)) != SLR_OK) {
            slr_error_prefix(err, "sync topic %s round %llu: ", f->topic, (unsigned long long)r);
            break;
        }
        f->dirty = true;
        if (slr_monotonic_seconds() >= until)
            break;
    }
    /* a reader that cannot reach the topic only waits: say so, so that a
     * scorer says it scores with an older model, and why */
    double secs = 0;
    const char *why = st == SLR_OK ? slr_sync_reader_unreachable(f->rd, &secs) : NULL;
    if (why && secs >= 1)
        st = slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s unreachable for %.0f s (%s)",
                           f->topic, secs, why);
    else if (why)
        st = slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s unreachable (%s)", f->topic, why);
    /* theta stands at a complete round even after an error: score with it */
    if (f->dirty) {
        slr_error e2;
        if (rebuild_scorer(f, st == SLR_OK ? err : &e2) == SLR_OK)
            *changed = true;
        else if (st == SLR_OK)
            st = SLR_ERR_NOMEM; /* err says why; the next refresh tries again */
    }
    return st;
}

slr_learner *slr_sync_follower_learner(const slr_sync_follower *f) { return f->scorer; }
slr_learner *slr_sync_follower_take_learner(slr_sync_follower *f)
{
    slr_learner *l = f->scorer;
    f->scorer = NULL;
    return l;
}
uint64_t slr_sync_follower_round(const slr_sync_follower *f) { return slr_sync_reader_round(f->rd); }
int64_t slr_sync_follower_position(const slr_sync_follower *f)
{
    return slr_sync_reader_position(f->rd);
}
const char *slr_sync_follower_name(const slr_sync_follower *f) { return f->name; }
uint64_t slr_sync_follower_snapshots(const slr_sync_follower *f) { return f->snapshots; }
