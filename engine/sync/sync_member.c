/* sync_member.c - one member of a group that shares a model (sync.h).
 *
 * A member holds two learners: `shared`, theta_r exactly as every reader of
 * the group holds it, and `local`, which starts each round equal to it and
 * learns the member's own examples (and is what the member predicts with).
 * `shared` is the member's own (slr_sync_member_create: it merges the
 * rounds itself), or borrowed (slr_sync_member_create_on: a process that
 * learns several partitions keeps one theta_r and merges once, then lets
 * each partition's member follow it).
 * At the round's end the member's delta is read off `local` with nothing
 * done per example but the learner's change tracking (a bit per coordinate)
 * and a sampled touch count (for the dense flag): the coordinates it
 * changed, their end state against the start state in `shared`, which
 * learning never writes.  The price is memory: a second weight table. */
#include <stdlib.h>
#include <string.h>

#include "learner/learner_io.h"
#include "streamlr/sync.h"
#include "sync_impl.h"
#include "util/le.h"

struct slr_sync_member {
    slr_learner *shared, *local;
    slr_sync_ledger *ledger;
    uint32_t *counts; /* touches per coordinate in this round, reset at its end */
    char id[SLR_SYNC_MAX_MEMBER_ID + 1];
    uint64_t generation, round, examples, fingerprint;
    bool ended;
    bool borrowed; /* shared belongs to the caller, who merges the rounds */
    slr_sync_pool *pool; /* local and counts are the pool's, held for a slice (else NULL) */
    uint32_t *idx; /* scratch for the round's coordinates */
    unsigned char *rec, *start; /* their records in local, and in shared */
    size_t cap;
};

static void give_back(slr_sync_member *m);

void slr_sync_member_destroy(slr_sync_member *m)
{
    if (!m)
        return;
    if (!m->borrowed)
        slr_learner_destroy(m->shared);
    if (m->pool) {
        give_back(m); /* a slice given up: its table serves the next */
    } else {
        slr_learner_destroy(m->local);
        free(m->counts);
    }
    slr_sync_ledger_destroy(m->ledger);
    free(m->idx);
    free(m->rec);
    free(m->start);
    free(m);
}

static slr_status check_config(const slr_learner_config *cfg, const char *member_id,
                               slr_error *err)
{
    if (cfg->optimizer == SLR_OPTIMIZER_FTRL || cfg->decay < 1.0)
        return slr_error_set(err, SLR_ERR_ARG,
                             "a shared model (--sync-topic) does not support --optimizer ftrl or "
                             "--decay yet: the merge is built on AdaGrad's undecayed Sum g^2");
    if (cfg->schedule != SLR_SCHEDULE_ADAGRAD || cfg->eager)
        return slr_error_set(err, SLR_ERR_ARG,
                             "a shared model (--sync-topic) needs --schedule adagrad without --eager: "
                             "the merge is built on AdaGrad's per-coordinate Sum g^2");
    size_t idlen = member_id ? strlen(member_id) : 0;
    if (idlen == 0 || idlen > SLR_SYNC_MAX_MEMBER_ID)
        return slr_error_set(err, SLR_ERR_ARG, "a member id must have 1..%d bytes",
                             SLR_SYNC_MAX_MEMBER_ID);
    return SLR_OK;
}

/* A member with no learner yet, after the checks every member passes. */
static slr_status member_new(slr_sync_member **out, const slr_learner_config *cfg,
                             const char *member_id, uint64_t generation, slr_error *err)
{
    *out = NULL;
    slr_status st = check_config(cfg, member_id, err);
    if (st != SLR_OK)
        return st;
    slr_sync_member *m = calloc(1, sizeof *m);
    if (!m)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    memcpy(m->id, member_id, strlen(member_id) + 1);
    m->generation = generation;
    m->fingerprint = slr_sync_fingerprint(cfg);
    *out = m;
    return SLR_OK;
}

static slr_status alloc_counts(slr_sync_member *m, slr_error *err)
{
    m->counts = calloc(slr_learner_bias_index(m->shared), sizeof *m->counts);
    if (!m->counts)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for the touch counts; lower -b");
    return SLR_OK;
}

slr_status slr_sync_member_create(slr_sync_member **out, const slr_learner_config *cfg,
                                  const char *member_id, uint64_t generation, slr_error *err)
{
    *out = NULL;
    slr_sync_member *m;
    slr_status st = member_new(&m, cfg, member_id, generation, err);
    if (st != SLR_OK)
        return st;
    if ((st = slr_learner_create(&m->shared, cfg, err)) != SLR_OK ||
        (st = slr_learner_create(&m->local, cfg, err)) != SLR_OK ||
        (st = slr_learner_track_changes(m->local, true, err)) != SLR_OK ||
        (st = slr_sync_ledger_create(&m->ledger, err)) != SLR_OK ||
        (st = alloc_counts(m, err)) != SLR_OK) {
        slr_sync_member_destroy(m);
        return st;
    }
    *out = m;
    return SLR_OK;
}

static slr_status reset_local(slr_sync_member *m, slr_error *err);

slr_status slr_sync_member_create_on(slr_sync_member **out, const slr_learner *shared,
                                     const char *member_id, uint64_t generation, uint64_t round,
                                     slr_error *err)
{
    *out = NULL;
    slr_sync_member *m;
    slr_status st = member_new(&m, slr_learner_config_of(shared), member_id, generation, err);
    if (st != SLR_OK)
        return st;
    m->shared = (slr_learner *)shared; /* never written: the caller merges */
    m->borrowed = true;
    m->round = round;
    if ((st = alloc_counts(m, err)) != SLR_OK || (st = reset_local(m, err)) != SLR_OK) {
        slr_sync_member_destroy(m);
        return st;
    }
    slr_learner_mark(m->local);
    *out = m;
    return SLR_OK;
}

slr_learner *slr_sync_member_learner(slr_sync_member *m) { return m->local; }
const slr_learner *slr_sync_member_shared(const slr_sync_member *m) { return m->shared; }
uint64_t slr_sync_member_round(const slr_sync_member *m) { return m->round; }
const slr_sync_ledger *slr_sync_member_ledger(const slr_sync_member *m) { return m->ledger; }

/* Touches are counted in one example of every COUNT_STRIDE: the counts
 * only decide whether a coordinate was in at least SLR_SYNC_DENSE of the
 * round's examples, which a sample tells as well, and a count per feature
 * is a random access into 4 bytes per coordinate that costs as much as the
 * learning step's own (tools/bench stages, BENCH_STAGES_SYNC). */
#define COUNT_STRIDE 16

double slr_sync_member_learn(slr_sync_member *m, const slr_example *ex, double *loss)
{
    double p = slr_learner_learn(m->local, ex, loss);
    if (m->examples++ % COUNT_STRIDE == 0) {
        const slr_feature *f = ex->features;
        for (uint32_t i = 0; i < ex->n_features; i++)
            m->counts[f[i].index]++;
    }
    return p;
}

static slr_status reserve(slr_sync_member *m, size_t n, slr_error *err)
{
    if (n <= m->cap)
        return SLR_OK;
    size_t cap = m->cap ? m->cap : 1024;
    while (cap < n)
        cap *= 2;
    uint32_t *idx = realloc(m->idx, cap * sizeof *idx);
    if (idx)
        m->idx = idx;
    unsigned char *rec = realloc(m->rec, cap * SLR_STATE_RECORD);
    if (rec)
        m->rec = rec;
    unsigned char *start = realloc(m->start, cap * SLR_STATE_RECORD);
    if (start)
        m->start = start;
    if (!idx || !rec || !start)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for a round's coordinates");
    m->cap = cap;
    return SLR_OK;
}

static slr_status copy_ranges(slr_sync_delta *d, const slr_sync_range *r, size_t n,
                              slr_error *err)
{
    if (n == 0)
        return SLR_OK;
    d->ranges = calloc(n, sizeof *d->ranges);
    if (!d->ranges)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!r[i].topic || !*r[i].topic || r[i].partition < 0 || r[i].from < 0 || r[i].to < r[i].from)
            return slr_error_set(err, SLR_ERR_ARG, "range %zu is not a topic, partition >= 0 and "
                                                   "0 <= from <= to", i);
        d->ranges[i] = r[i];
        d->ranges[i].topic = strdup(r[i].topic);
        d->n_ranges = i + 1;
        if (!d->ranges[i].topic)
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    }
    return SLR_OK;
}

slr_status slr_sync_member_end_round(slr_sync_member *m, const slr_sync_range *ranges, size_t n,
                                     slr_sync_delta *d, slr_error *err)
{
    memset(d, 0, sizeof *d);
    if (m->ended)
        return slr_error_set(err, SLR_ERR_ARG, "round %llu has ended already: apply it first",
                             (unsigned long long)m->round);
    slr_status began = slr_sync_member_begin(m, err); /* a pooled member's empty slice */
    if (began != SLR_OK)
        return began;
    const uint64_t bias = slr_learner_bias_index(m->local);
    size_t k = 0;
    slr_status st;
    for (uint64_t j = slr_learner_changed_next(m->local, 0); j < bias;
         j = slr_learner_changed_next(m->local, j + 1)) {
        if ((st = reserve(m, k + 1, err)) != SLR_OK)
            return st;
        m->idx[k++] = (uint32_t)j;
    }
    /* the weights as of the member's last step: what its own learning made of them */
    slr_learner_catch_up(m->local, m->idx, k);
    slr_learner_state_export(m->local, m->idx, k, m->rec);
    slr_learner_state_export(m->shared, m->idx, k, m->start);
    if (k && !(d->entries = malloc(k * SLR_SYNC_ENTRY)))
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for a delta");
    const uint64_t sampled = (m->examples + COUNT_STRIDE - 1) / COUNT_STRIDE;
    const double dense_min = SLR_SYNC_DENSE * (double)sampled;
    const uint64_t epoch = slr_learner_epoch(m->shared);
    for (size_t i = 0; i < k; i++) {
        /* the increments against theta_r, which the merge reads back as
         * start + dw with the start it computes the same way */
        const unsigned char *r = m->rec + i * SLR_STATE_RECORD;
        const unsigned char *s = m->start + i * SLR_STATE_RECORD;
        double g0 = slr_le_get_f64(s + SLR_STATE_G2);
        double start = slr_sync_start(m->shared, slr_le_get_f64(s + SLR_STATE_W), g0,
                                      epoch + slr_le_get_u32(s + SLR_STATE_STAMP), m->examples);
        double gain = slr_le_get_f64(r + SLR_STATE_G2) - g0; /* >= 0: local started at g0 */
        uint16_t dg = slr_sync_bf16(gain > 0.0 ? gain : 0.0);
        unsigned char *e = d->entries + i * SLR_SYNC_ENTRY;
        slr_le_put_u32(e, m->idx[i]);
        slr_le_put_u16(e + 4, slr_sync_bf16(slr_le_get_f64(r + SLR_STATE_W) - start));
        slr_le_put_u16(e + 6, (double)m->counts[m->idx[i]] >= dense_min ? dg | 0x8000u : dg);
        m->counts[m->idx[i]] = 0;
    }
    d->n_entries = k;
    memcpy(d->member, m->id, sizeof d->member);
    d->generation = m->generation;
    d->round = m->round;
    d->examples = m->examples;
    d->fingerprint = m->fingerprint;
    /* a round with no example (a partition's empty last slice) says nothing of
     * the bias, whose end state would otherwise carry theta_r's Sum g^2: the
     * codec reads "entries without examples" as a malformed record */
    if (m->examples > 0)
        slr_learner_bias_get(m->local, &d->bias_w, &d->bias_g2);
    if ((st = copy_ranges(d, ranges, n, err)) != SLR_OK) {
        slr_sync_delta_clear(d);
        return st;
    }
    m->ended = true;
    return SLR_OK;
}

/* Apply records exported from `shared` to `l` (at the same step): stamps
 * are moved from shared's epoch to l's, paying the penalty up to l's epoch
 * where l counts from later (one of them rebased; rare: 2^32 steps). */
static slr_status apply_shared_records(slr_learner *l, const slr_learner *shared, unsigned char *rec,
                                       size_t n, slr_error *err)
{
    const uint64_t from = slr_learner_epoch(shared), to = slr_learner_epoch(l);
    if (from != to)
        for (size_t i = 0; i < n; i++) {
            unsigned char *r = rec + i * SLR_STATE_RECORD;
            uint64_t paid = from + slr_le_get_u32(r + SLR_STATE_STAMP);
            double g2 = slr_le_get_f64(r + SLR_STATE_G2);
            if (paid < to) {
                slr_le_put_f64(r + SLR_STATE_W,
                               slr_learner_penalized(l, slr_le_get_f64(r + SLR_STATE_W), g2, paid, to));
                paid = to;
            }
            slr_le_put_u32(r + SLR_STATE_STAMP, (uint32_t)(paid - to));
        }
    return slr_learner_state_apply(l, rec, n * SLR_STATE_RECORD, SLR_STATE_STAMPS_KEEP,
                                   "shared model", err);
}

/* A learner that is shared in full, at its step, tracking its changes. */
static slr_status copy_of(const slr_learner *shared, slr_learner **out, slr_error *err)
{
    slr_learner *l;
    slr_status st = slr_learner_create(&l, slr_learner_config_of(shared), err);
    if (st != SLR_OK)
        return st;
    if ((st = slr_learner_advance(l, slr_learner_steps(shared), err)) != SLR_OK ||
        (st = slr_learner_track_changes(l, true, err)) != SLR_OK) {
        slr_learner_destroy(l);
        return st;
    }
    const uint64_t bias = slr_learner_bias_index(shared);
    for (uint64_t j = slr_learner_state_next(shared, 0); j < bias;
         j = slr_learner_state_next(shared, j + 1)) {
        uint32_t jj = (uint32_t)j;
        unsigned char r[SLR_STATE_RECORD];
        slr_learner_state_export(shared, &jj, 1, r);
        if ((st = apply_shared_records(l, shared, r, 1, err)) != SLR_OK) {
            slr_learner_destroy(l);
            return st;
        }
    }
    double bw;
    double bg;
    slr_learner_bias_get(shared, &bw, &bg);
    if ((st = slr_learner_bias_set(l, bw, bg, "shared model", err)) != SLR_OK) {
        slr_learner_destroy(l);
        return st;
    }
    *out = l;
    return SLR_OK;
}

/* local <- shared in full: when local learned what the group did not take
 * (its own delta was a repeat) or counted past the group's step. */
static slr_status reset_local(slr_sync_member *m, slr_error *err)
{
    slr_learner *l;
    slr_status st = copy_of(m->shared, &l, err);
    if (st != SLR_OK)
        return st;
    slr_learner_destroy(m->local);
    m->local = l;
    return SLR_OK;
}

/* local <- shared on the coordinates the round changed, at the group's step */
static slr_status follow_shared(slr_sync_member *m, const uint32_t *idx, size_t n, bool own_kept,
                                slr_error *err)
{
    uint64_t ls = slr_learner_steps(m->local), gs = slr_learner_steps(m->shared);
    if ((!own_kept && m->examples > 0) || ls > gs)
        return reset_local(m, err); /* it learned what the group did not take */
    slr_status st = slr_learner_advance(m->local, gs - ls, err);
    if (st != SLR_OK)
        return st;
    if (slr_learner_epoch(m->local) != slr_learner_epoch(m->shared))
        return reset_local(m, err); /* one of them rebased: untouched stamps count from elsewhere */
    /* shared's own state at the same epoch: copied as it is, no records */
    slr_learner_copy_coords(m->local, m->shared, idx, n);
    double bw;
    double bg;
    slr_learner_bias_get(m->shared, &bw, &bg);
    return slr_learner_bias_set(m->local, bw, bg, "shared model", err);
}

/* The round is merged and local follows it: the next round begins. */
static void next_round(slr_sync_member *m)
{
    m->round++;
    m->examples = 0;
    m->ended = false;
    if (m->local)
        slr_learner_mark(m->local);
}

slr_status slr_sync_member_follow(slr_sync_member *m, const uint32_t *changed, size_t n_changed,
                                  bool own_merged, slr_error *err)
{
    if (!m->borrowed)
        return slr_error_set(err, SLR_ERR_ARG, "member \"%s\" merges its rounds itself "
                                               "(slr_sync_member_apply)", m->id);
    slr_status st;
    if (m->pool) { /* a table still held is a slice given up or not yet given back */
        give_back(m);
        next_round(m);
        return SLR_OK;
    }
    if (!m->ended && m->examples > 0) {
        /* learned part of a slice and never ended it (a partition taken
         * away mid-round): its touch counts go with it */
        memset(m->counts, 0, slr_learner_bias_index(m->shared) * sizeof *m->counts);
        st = reset_local(m, err);
    } else {
        st = follow_shared(m, changed, n_changed, own_merged, err);
    }
    if (st == SLR_OK)
        next_round(m);
    return st;
}

slr_status slr_sync_apply_round(slr_learner *theta, slr_sync_ledger *ledger, uint64_t round,
                                const slr_sync_delta *deltas, size_t k, slr_sync_rule rule,
                                size_t *skipped, uint32_t **changed, size_t *n_changed,
                                slr_error *err)
{
    if (skipped)
        *skipped = 0;
    if (changed) {
        *changed = NULL;
        *n_changed = 0;
    }
    slr_sync_delta *kept = malloc((k ? k : 1) * sizeof *kept);
    slr_sync_ledger *round_ranges = NULL;
    size_t nk = 0;
    slr_status st = slr_sync_ledger_create(&round_ranges, err);
    if (!kept && st == SLR_OK)
        st = slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < k && st == SLR_OK; i++) {
        const slr_sync_delta *d = &deltas[i];
        switch (slr_sync_ledger_check(ledger, d->ranges, d->n_ranges)) {
        case SLR_SYNC_REPEAT:
            if (skipped)
                (*skipped)++;
            continue;
        case SLR_SYNC_OVERLAP:
            st = slr_error_set(err, SLR_ERR_MISMATCH,
                               "member \"%s\" (generation %llu) sent offsets of which only some are "
                               "already in the model: it cannot be applied exactly once",
                               d->member, (unsigned long long)d->generation);
            continue;
        case SLR_SYNC_NEW: break;
        }
        /* two members of one round claiming the same offsets: one is a zombie */
        if ((st = slr_sync_ledger_add(round_ranges, d->ranges, d->n_ranges, err)) != SLR_OK) {
            slr_error_prefix(err, "member \"%s\" (generation %llu): ", d->member,
                             (unsigned long long)d->generation);
            st = SLR_ERR_MISMATCH;
            continue;
        }
        kept[nk++] = *d;
    }
    if (st == SLR_OK)
        st = slr_sync_merge(theta, round, kept, nk, rule, changed, n_changed, err);
    for (size_t i = 0; i < nk && st == SLR_OK; i++)
        st = slr_sync_ledger_add(ledger, kept[i].ranges, kept[i].n_ranges, err);
    free(kept);
    slr_sync_ledger_destroy(round_ranges);
    return st;
}

slr_status slr_sync_member_apply(slr_sync_member *m, const slr_sync_delta *deltas, size_t k,
                                 slr_sync_rule rule, size_t *skipped, slr_error *err)
{
    if (skipped)
        *skipped = 0;
    if (m->borrowed)
        return slr_error_set(err, SLR_ERR_ARG, "member \"%s\" learns from a model its owner "
                                               "merges (slr_sync_member_follow)", m->id);
    if (!m->ended)
        return slr_error_set(err, SLR_ERR_ARG, "round %llu is still open: end it first",
                             (unsigned long long)m->round);
    /* whether the group takes the member's own delta (not a repeat) */
    bool own_kept = false;
    for (size_t i = 0; i < k; i++)
        if (strcmp(deltas[i].member, m->id) == 0 &&
            slr_sync_ledger_check(m->ledger, deltas[i].ranges, deltas[i].n_ranges) == SLR_SYNC_NEW)
            own_kept = true;
    uint32_t *changed = NULL;
    size_t n_changed = 0;
    slr_status st = slr_sync_apply_round(m->shared, m->ledger, m->round, deltas, k, rule, skipped,
                                         &changed, &n_changed, err);
    if (st == SLR_OK)
        st = follow_shared(m, changed, n_changed, own_kept, err);
    if (st == SLR_OK)
        next_round(m);
    free(changed);
    return st;
}

slr_status slr_sync_member_load(slr_sync_member *m, slr_learner *theta, slr_sync_ledger *ledger,
                                uint64_t round, slr_error *err)
{
    if (slr_sync_fingerprint(slr_learner_config_of(theta)) != m->fingerprint)
        return slr_error_set(err, SLR_ERR_MISMATCH,
                             "the snapshot's model was learned with other settings (-b, -q, rates, "
                             "penalties) than this member's");
    if (m->borrowed)
        return slr_error_set(err, SLR_ERR_ARG, "member \"%s\" learns from a model its owner "
                                               "loads and merges", m->id);
    slr_learner *old_shared = m->shared;
    m->shared = theta;
    slr_status st = reset_local(m, err);
    if (st != SLR_OK) {
        m->shared = old_shared;
        return st;
    }
    slr_learner_destroy(old_shared);
    slr_sync_ledger_destroy(m->ledger);
    m->ledger = ledger;
    m->round = round;
    m->examples = 0;
    m->ended = false;
    memset(m->counts, 0, sizeof *m->counts * (size_t)slr_learner_bias_index(theta));
    slr_learner_mark(m->local);
    return SLR_OK;
}

/* ------------------------------------------------------------ pooled members */

typedef struct table {
    slr_learner *l;
    uint32_t *counts;
} table;

struct slr_sync_pool {
    const slr_learner *shared;
    table *idle; /* each equal to shared, at its step, marked, counts all zero */
    size_t n_idle, cap_idle, made;
    uint32_t *idx; /* scratch: a returned table's changed coordinates */
    size_t cap;
};

slr_status slr_sync_pool_create(slr_sync_pool **out, const slr_learner *shared, slr_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    (*out)->shared = shared;
    return SLR_OK;
}

static void table_free(table *t)
{
    slr_learner_destroy(t->l);
    free(t->counts);
}

void slr_sync_pool_destroy(slr_sync_pool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_idle; i++)
        table_free(&p->idle[i]);
    free(p->idle);
    free(p->idx);
    free(p);
}

size_t slr_sync_pool_tables(const slr_sync_pool *p) { return p->made; }

/* Keep t idle (it is shared's copy), or free it if there is no room. */
static void keep_idle(slr_sync_pool *p, table t)
{
    if (p->n_idle == p->cap_idle) {
        size_t cap = p->cap_idle ? 2 * p->cap_idle : 4;
        table *n = realloc(p->idle, cap * sizeof *n);
        if (!n) {
            table_free(&t); /* the next member makes a new one */
            return;
        }
        p->idle = n;
        p->cap_idle = cap;
    }
    p->idle[p->n_idle++] = t;
}

slr_status slr_sync_pool_follow(slr_sync_pool *p, const uint32_t *changed, size_t n,
                                slr_error *err)
{
    const uint64_t gs = slr_learner_steps(p->shared);
    for (size_t i = 0; i < p->n_idle;) {
        table *t = &p->idle[i];
        uint64_t ls = slr_learner_steps(t->l);
        slr_status st = ls <= gs ? slr_learner_advance(t->l, gs - ls, err) : SLR_ERR_ARG;
        if (st != SLR_OK || slr_learner_epoch(t->l) != slr_learner_epoch(p->shared)) {
            /* rebased (or ahead): cheaper made again when needed than mended */
            table_free(t);
            p->idle[i] = p->idle[--p->n_idle];
            continue;
        }
        slr_learner_copy_coords(t->l, p->shared, changed, n);
        double bw;
        double bg;
        slr_learner_bias_get(p->shared, &bw, &bg);
        if ((st = slr_learner_bias_set(t->l, bw, bg, "shared model", err)) != SLR_OK)
            return st;
        i++;
    }
    return SLR_OK;
}

slr_status slr_sync_member_create_pooled(slr_sync_member **out, slr_sync_pool *pool,
                                         const char *member_id, uint64_t generation,
                                         uint64_t round, slr_error *err)
{
    *out = NULL;
    slr_sync_member *m;
    slr_status st = member_new(&m, slr_learner_config_of(pool->shared), member_id, generation, err);
    if (st != SLR_OK)
        return st;
    m->shared = (slr_learner *)pool->shared; /* never written: the caller merges */
    m->borrowed = true;
    m->pool = pool;
    m->round = round;
    *out = m;
    return SLR_OK;
}

slr_status slr_sync_member_begin(slr_sync_member *m, slr_error *err)
{
    if (!m->pool || m->local)
        return SLR_OK;
    slr_sync_pool *p = m->pool;
    table t = {0};
    if (p->n_idle) {
        t = p->idle[--p->n_idle];
    } else {
        slr_status st = copy_of(p->shared, &t.l, err);
        if (st != SLR_OK)
            return st;
        if (!(t.counts = calloc(slr_learner_bias_index(p->shared), sizeof *t.counts))) {
            slr_learner_destroy(t.l);
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for the touch counts; lower -b");
        }
        p->made++;
    }
    m->local = t.l;
    m->counts = t.counts;
    slr_learner_mark(m->local);
    return SLR_OK;
}

/* The member's table back to the pool as shared's copy: the coordinates
 * its slice changed (all it learned touched) reverted, their counts
 * zeroed; freed instead if reverting cannot be exact. */
static void give_back(slr_sync_member *m)
{
    slr_sync_pool *p = m->pool;
    table t = {m->local, m->counts};
    m->local = NULL;
    m->counts = NULL;
    if (!t.l)
        return;
    const uint64_t bias = slr_learner_bias_index(t.l);
    size_t k = 0;
    for (uint64_t j = slr_learner_changed_next(t.l, 0); j < bias;
         j = slr_learner_changed_next(t.l, j + 1)) {
        if (k == p->cap) {
            size_t cap = p->cap ? 2 * p->cap : 4096;
            uint32_t *n = realloc(p->idx, cap * sizeof *n);
            if (!n) {
                table_free(&t); /* the next member copies shared afresh */
                return;
            }
            p->idx = n;
            p->cap = cap;
        }
        p->idx[k++] = (uint32_t)j;
        t.counts[j] = 0;
    }
    if (!slr_learner_revert(t.l, p->shared, p->idx, k)) {
        table_free(&t);
        return;
    }
    slr_learner_mark(t.l);
    keep_idle(p, t);
}

slr_status slr_sync_member_release(slr_sync_member *m, slr_error *err)
{
    (void)err;
    if (m->pool && m->ended)
        give_back(m);
    return SLR_OK;
}
