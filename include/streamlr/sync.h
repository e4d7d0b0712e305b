/* sync.h - one model across a group of learners (issue 13): the engine core,
 * with no transport.  Members learn in bulk-synchronous rounds: every member
 * starts round r from the same shared model theta_r, learns its own examples,
 * publishes a delta (what it changed), and every reader merges the round's
 * deltas, in member-id order, into theta_{r+1} by the same deterministic
 * function (the "relaxd" rule of the simulation, docs/SCALING.md).
 *
 * Four pieces:
 *  - slr_sync_member: a member's two learners (the shared theta_r, and the
 *    one it learns and predicts with) and its round's touch counts; members
 *    on one theta_r may share work tables (slr_sync_pool);
 *  - slr_sync_delta: the record a member publishes, with its msgpack codec;
 *  - slr_sync_merge: theta_r + the round's deltas -> theta_{r+1};
 *  - slr_sync_ledger: the source offset ranges already in a model, so that a
 *    delta seen twice (a restarted member re-learning a range, a redelivery)
 *    is applied at most once.
 * The shared model's step counter is the group's: the sum of every member's
 * examples, so the lazy L1/L2 penalty is paid once per group step, by the
 * merge, never once per member.  Supported: the AdaGrad schedule (the
 * merge's rule is built on AdaGrad's per-coordinate Sum g^2), not --eager. */
#ifndef STREAMLR_SYNC_H
#define STREAMLR_SYNC_H

#include "streamlr/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamlr/error.h"
#include "streamlr/example.h"
#include "streamlr/learner.h"

SLR_BEGIN_DECLS

/* 3: entries are bfloat16 increments, sent as compressed planes (2: end
 * states as f64, 20 bytes an entry); a reader refuses any other version */
#define SLR_SYNC_FORMAT_VERSION 3
/* bytes of one entry of a delta in memory: u32 j, u16 dw, u16 dg (below) */
#define SLR_SYNC_ENTRY 8
/* A coordinate counts as dense in a member's round when it was touched by at
 * least this fraction of the member's examples (the simulation's phi;
 * counted on one example in 16). */
#define SLR_SYNC_DENSE 0.05
#define SLR_SYNC_MAX_MEMBER_ID 255

/* Offsets [from, to) of one source topic-partition. */
typedef struct slr_sync_range {
    char *topic; /* owned by whatever holds the range */
    int32_t partition;
    int64_t from, to;
} slr_sync_range;

/* One member's round.  Each entry is what the member's own examples did to
 * a coordinate they touched, relative to theta_r, which every reader of
 * round r holds bit for bit (BSP): little-endian u32 j (< 2^bits), then two
 * bfloat16s (the top half of an IEEE f32, rounded to nearest even) as
 * little-endian u16: dw, the member's end weight minus theta_r's weight
 * decayed over the member's own steps (its penalty paid up to its last
 * step of the round), and dg, the Sum g^2 it added, whose sign bit says
 * "dense".  Every reader decodes w_k = start + dw and g2_k = G0 + dg in
 * double; only the round's increments are rounded, never the model's Sum
 * g^2 (docs/SYNC_PROTOCOL.md).  Entries are in increasing j. */
typedef struct slr_sync_delta {
    char member[SLR_SYNC_MAX_MEMBER_ID + 1];
    uint64_t generation;  /* the consumer group's generation the member learned in (fencing) */
    uint64_t round;       /* r: the model it started from is theta_r */
    uint64_t examples;    /* n_k: examples learned in the round */
    uint64_t fingerprint; /* slr_sync_fingerprint of the member's learner configuration */
    slr_sync_range *ranges;
    size_t n_ranges;
    double bias_w; /* the bias (index 2^bits, which may not fit in a u32) */
    double bias_g2;
    unsigned char *entries; /* n_entries * SLR_SYNC_ENTRY bytes */
    size_t n_entries;
} slr_sync_delta;

/* Free what a delta owns (ranges, their topics, entries) and zero it. */
void slr_sync_delta_clear(slr_sync_delta *d);

/* A hash of everything in a learner configuration that must agree across a
 * group (hashing, schedule, rates, penalties): members whose fingerprints
 * differ cannot share a model. */
uint64_t slr_sync_fingerprint(const slr_learner_config *cfg);

/* The record as msgpack, into *out / *out_len (malloc'ed; free() it). */
slr_status slr_sync_delta_encode(const slr_sync_delta *d, unsigned char **out, size_t *out_len,
                                 slr_error *err);
/* Read and check a record: SLR_ERR_CORRUPT with what is wrong for anything
 * that is not a well-formed delta of SLR_SYNC_FORMAT_VERSION (never reads out of bounds).  On
 * success *d owns its parts (slr_sync_delta_clear). */
slr_status slr_sync_delta_decode(const void *buf, size_t len, slr_sync_delta *d, slr_error *err);

/* ----------------------------------------------------------------- ledger */

typedef struct slr_sync_ledger slr_sync_ledger;

slr_status slr_sync_ledger_create(slr_sync_ledger **out, slr_error *err);
void slr_sync_ledger_destroy(slr_sync_ledger *g);

typedef enum slr_sync_seen {
    SLR_SYNC_NEW,     /* none of the ranges is in the ledger */
    SLR_SYNC_REPEAT,  /* all of them are: apply nothing */
    SLR_SYNC_OVERLAP, /* some are, or partly: the delta cannot be applied at most once */
} slr_sync_seen;

/* Whether ranges[0..n) are already reflected.  Empty ranges [x, x) count as
 * nothing; a delta with no non-empty range is SLR_SYNC_NEW. */
slr_sync_seen slr_sync_ledger_check(const slr_sync_ledger *g, const slr_sync_range *ranges,
                                    size_t n);
/* Record the ranges as applied (adjacent ranges are joined).  Refused,
 * changing nothing, if any overlaps what is already there. */
slr_status slr_sync_ledger_add(slr_sync_ledger *g, const slr_sync_range *ranges, size_t n,
                               slr_error *err);
/* The applied ranges of topic-partition (topic, partition), in order:
 * copies up to max of them to out and returns how many there are. */
size_t slr_sync_ledger_ranges(const slr_sync_ledger *g, const char *topic, int32_t partition,
                              int64_t (*out)[2], size_t max);
/* As msgpack (for a checkpoint): an array of [topic, partition, [from, to, ...]]. */
slr_status slr_sync_ledger_encode(const slr_sync_ledger *g, unsigned char **out, size_t *out_len,
                                  slr_error *err);
slr_status slr_sync_ledger_decode(const void *buf, size_t len, slr_sync_ledger **out,
                                  slr_error *err);

/* ------------------------------------------------------------------ merge */

typedef enum slr_sync_rule {
    SLR_SYNC_RELAXD = 0, /* the rule (docs/SCALING.md) */
    SLR_SYNC_SUM = 1,    /* plain sum of the changes: for comparison (diverges with many members) */
    SLR_SYNC_MEAN = 2,   /* plain mean: for comparison (iterative parameter mixing) */
    SLR_SYNC_RELAXD_FLAT = 3, /* relaxd without the common error's correction at any size:
                                 for comparison (overshoots past ~8 deltas a round) */
} slr_sync_rule;

/* theta_{r+1} from theta_r (the learner `shared`, whose step is T_r) and the
 * deltas of round r, in strictly increasing member id.  Sum g^2 of a
 * coordinate becomes G0 + sum of the members' gains; the weight follows
 * `rule`; the shared step moves on by the sum of the members' examples, so a
 * coordinate's penalty is owed once per group step.  Every delta is checked
 * (fingerprint, round = `round`, indices, values) before anything changes:
 * a refused round leaves `shared` as it was.  Same inputs, same bits.  The
 * coordinates changed are listed (increasing; the bias, which changes
 * whenever a member learned anything, is not listed) in *changed /
 * *n_changed if changed is non-NULL (malloc'ed; free() it). */
slr_status slr_sync_merge(slr_learner *shared, uint64_t round, const slr_sync_delta *deltas,
                          size_t k, slr_sync_rule rule, uint32_t **changed, size_t *n_changed,
                          slr_error *err);

/* theta_r -> theta_{r+1} for a reader that holds a model and its ledger (a
 * scorer, a member): deltas whose ranges the ledger already holds are
 * skipped as repeats (counted in *skipped if non-NULL), the rest merged
 * (slr_sync_merge, whose *changed this passes on) and their ranges recorded.
 * A delta that partly overlaps the ledger, or two claiming the same
 * offsets, are refused (SLR_ERR_MISMATCH) with nothing changed. */
slr_status slr_sync_apply_round(slr_learner *theta, slr_sync_ledger *ledger, uint64_t round,
                                const slr_sync_delta *deltas, size_t k, slr_sync_rule rule,
                                size_t *skipped, uint32_t **changed, size_t *n_changed,
                                slr_error *err);

/* ----------------------------------------------------------------- member */

typedef struct slr_sync_member slr_sync_member;

/* A member with a fresh model (round 0, step 0).  cfg must use AdaGrad. */
slr_status slr_sync_member_create(slr_sync_member **out, const slr_learner_config *cfg,
                                  const char *member_id, uint64_t generation, slr_error *err);
void slr_sync_member_destroy(slr_sync_member *m);

/* Start over from theta_round (a snapshot's model and ledger, both taken
 * over by the member on success): the member's round is `round`, open.
 * SLR_ERR_MISMATCH if theta was learned with other settings. */
slr_status slr_sync_member_load(slr_sync_member *m, slr_learner *theta, slr_sync_ledger *ledger,
                                uint64_t round, slr_error *err);

/* A member that learns from a shared model theta_r it does not own:
 * `shared` (at round `round`) belongs to the caller, who merges the rounds
 * into it (slr_sync_merge) and must keep it alive as long as the member;
 * the member keeps only its own learner (a copy of theta_r) and touch
 * counts.  A process learning several partitions so keeps one theta_r.
 * It has no ledger (the caller's) and slr_sync_member_apply refuses it. */
slr_status slr_sync_member_create_on(slr_sync_member **out, const slr_learner *shared,
                                     const char *member_id, uint64_t generation, uint64_t round,
                                     slr_error *err);

/* Work tables for members on one shared model, fewer than the members.  A
 * member made by slr_sync_member_create_on keeps a whole learner (a weight
 * table) for its slice, and every merged round must be copied into each of
 * them; a process holding P partitions then pays P tables and P copies of
 * every round.  Pooled members (slr_sync_member_create_pooled) take a
 * table from the pool when their slice's learning begins
 * (slr_sync_member_begin) and give it back once their delta is taken
 * (slr_sync_member_release) or their slice is given up: the pool reverts
 * the coordinates the slice changed to theta_r, so the next member starts
 * from theta_r as a fresh copy would, bit for bit.  A process whose
 * partitions' slices mostly come one after another so keeps a few tables
 * (3 for 8 partitions in tools/bench sync-member).
 * After merging a round into `shared`, the caller calls
 * slr_sync_member_follow for every member, then slr_sync_pool_follow. */
typedef struct slr_sync_pool slr_sync_pool;

slr_status slr_sync_pool_create(slr_sync_pool **out, const slr_learner *shared, slr_error *err);
/* After the pool's members (none may hold a table any more). */
void slr_sync_pool_destroy(slr_sync_pool *p);
/* The idle tables become the shared model again after a merge that changed
 * coordinates changed[0..n) (slr_sync_merge's list). */
slr_status slr_sync_pool_follow(slr_sync_pool *p, const uint32_t *changed, size_t n,
                                slr_error *err);
/* Tables made so far (what the pool costs in memory: one learner and a
 * touch count per coordinate each). */
size_t slr_sync_pool_tables(const slr_sync_pool *p);

/* A member on the pool's shared model (as slr_sync_member_create_on) that
 * holds a table only while it learns its slice. */
slr_status slr_sync_member_create_pooled(slr_sync_member **out, slr_sync_pool *pool,
                                         const char *member_id, uint64_t generation,
                                         uint64_t round, slr_error *err);
/* Before a pooled member's learner is used in a round: takes a table (a
 * no-op for a member that holds one, or is not pooled). */
slr_status slr_sync_member_begin(slr_sync_member *m, slr_error *err);
/* After slr_sync_member_end_round: a pooled member's table goes back to
 * the pool (a no-op for others). */
slr_status slr_sync_member_release(slr_sync_member *m, slr_error *err);

/* After the caller merged the round into the shared model: the member's
 * learner becomes theta_{r+1} and the next round begins.  changed[0..n) are
 * the coordinates the merge changed (slr_sync_merge's list); own_merged
 * says whether the member's own delta of the round (its slice, learned in
 * full and ended) was among the merged ones -- if not, what it learned is
 * thrown away (a full copy of the shared model).  A round the member did
 * not end is a slice given up (a partition taken away mid-round). */
slr_status slr_sync_member_follow(slr_sync_member *m, const uint32_t *changed, size_t n_changed,
                                  bool own_merged, slr_error *err);

/* Learn one example into the member's own learner (as slr_learner_learn)
 * and count the coordinates it touched for the round's dense flags. */
double slr_sync_member_learn(slr_sync_member *m, const slr_example *ex, double *loss);

/* The learner the member predicts with (theta_r plus its own round so far;
 * NULL for a pooled member that holds no table), and the shared model
 * theta_r. */
slr_learner *slr_sync_member_learner(slr_sync_member *m);
const slr_learner *slr_sync_member_shared(const slr_sync_member *m);
uint64_t slr_sync_member_round(const slr_sync_member *m);
const slr_sync_ledger *slr_sync_member_ledger(const slr_sync_member *m);

/* End the round: the member's delta for the source ranges[0..n) it learned
 * (copied).  The member keeps learning nothing until slr_sync_member_apply. */
slr_status slr_sync_member_end_round(slr_sync_member *m, const slr_sync_range *ranges, size_t n,
                                     slr_sync_delta *out, slr_error *err);

/* Apply round r's deltas (its own among them), in member-id order: deltas
 * whose ranges the ledger already holds are skipped as repeats (counted in
 * *skipped if non-NULL); the rest are merged into theta_r, their ranges
 * recorded, and the member's learner set to theta_{r+1}; the next round
 * begins.  A delta that partly overlaps applied ranges is refused. */
slr_status slr_sync_member_apply(slr_sync_member *m, const slr_sync_delta *deltas, size_t k,
                                 slr_sync_rule rule, size_t *skipped, slr_error *err);

SLR_END_DECLS
#endif
