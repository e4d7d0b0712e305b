/* sync_merge.c - theta_r + round r's deltas -> theta_{r+1} (sync.h), the
 * "relaxd" rule chosen in simulation (tools/syncsim.py, docs/SCALING.md).
 *
 * Per coordinate j in the union of the round's entries, in increasing j, the
 * members that touched it in member-id order:
 *   G0, base = Sum g^2 and weight of theta_r, the weight caught up to T_r;
 *   dw_k = w_k - base decayed over the member's own n_k steps (what its
 *          gradient steps added: the member paid that decay itself locally),
 *   dG_k = g2_k - G0;
 *          both as the member's record carries them (bfloat16, sync.h):
 *          the member measured them against the same start (slr_sync_start),
 *          so w_k = start + dw_k is what it learned up to that rounding;
 *   one member:       theta = its w_k, penalty paid up to T_r + n_k (its own
 *                     learning, as one learner would have done it);
 *   all dense:        theta = base + sum n_k dw_k / sum n_k;
 *   otherwise:        theta = base + sum_k ft (dG_k / sG) dw_k / f_k, with
 *                     f = -expm1(-2 eta (sqrt(delta + G0 + dG) - sqrt(delta + G0)))
 *                     the fraction of the way to a coordinate's optimum that
 *                     AdaGrad's steps make for evidence dG (f_k a member's,
 *                     ft the round's total sG = sum dG_k);
 *   Sum g^2 = G0 + sG.
 * Past RELAXD_FLAT_MAX deltas that learned something, relaxd counts the
 * round's common error once (docs/SCALING.md, "More than 8 deltas a round"):
 *   error = sum_k (bias_k - bias) / sum_k E(bias's dG_k), E the relaxation
 *           2 eta (sqrt(delta + G0 + dG) - sqrt(delta + G0));
 *   c_k = E(dG_k) error, j's share of the correction every delta made;
 *   dense also needs dG_k >= DENSE_EVIDENCE times the delta's bias's dG;
 *   otherwise theta = base + sum n_k c_k / N + relax over dw_k - c_k, N the
 *   round's examples, a lone member included.
 * The shared step then moves on by N = sum n_k: every coordinate owes the
 * round's penalty on the merged rate, paid lazily when next read, once for
 * the group.  Everything is a function of theta_r and the records, evaluated
 * in a fixed order in double precision: every reader gets the same bits. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "learner/learner_io.h"
#include "streamlr/sync.h"
#include "sync_impl.h"
#include "util/le.h"

/* Up to this many deltas a round, relaxd is the plain rule, as simulated
 * and measured first; past it, the common error is separated (merge_one). */
#define RELAXD_FLAT_MAX 8
#define DENSE_EVIDENCE 0.5

/* One member's view of coordinate j in the round. */
typedef struct contrib {
    double dw;    /* its end weight - its start (slr_sync_start) */
    double dG;    /* its end Sum g^2 - G0 (>= 0) */
    bool dense;
    uint64_t n;   /* its examples */
    double bias_dG; /* its delta's bias's gain of Sum g^2 */
} contrib;

double slr_sync_start(const slr_learner *theta, double w, double g2, uint64_t paid, uint64_t n)
{
    const slr_learner_config *cfg = slr_learner_config_of(theta);
    if (!(cfg->l1 > 0.0) && !(cfg->l2 > 0.0))
        return w; /* no penalty: what slr_learner_penalized returns, without its rate */
    const uint64_t T = slr_learner_steps(theta);
    if (w != 0.0 && paid < T) /* what slr_learner_catch_up makes of it */
        w = slr_learner_penalized(theta, w, g2, paid, T);
    return slr_learner_penalized(theta, w, g2, T, T + n);
}

static double progress(double eta, double delta, double G0, double dG)
{
    return -expm1(-2.0 * eta * (sqrt(delta + G0 + dG) - sqrt(delta + G0)));
}

/* AdaGrad's relaxation 2 eta (sqrt(delta + G0 + dG) - sqrt(delta + G0)),
 * written without the difference of two close roots. */
static double relaxation(double eta, double delta, double G0, double dG)
{
    return 2.0 * eta * dG / (sqrt(delta + G0 + dG) + sqrt(delta + G0));
}

static double clamp_w(double w)
{
    return w > SLR_MAX_ABS_WEIGHT ? SLR_MAX_ABS_WEIGHT : w < -SLR_MAX_ABS_WEIGHT ? -SLR_MAX_ABS_WEIGHT : w;
}

static double to_g2(double g)
{
    return g < DBL_MAX ? g : DBL_MAX; /* the learner's own saturation */
}

typedef struct merged {
    double w;
    double g2;
    uint64_t paid_to; /* absolute step the weight's penalty is paid up to */
} merged;

/* relax: each change extrapolated to where its own evidence leads (dw_k over
 * the fraction f_k of the way it made), those targets weighted by evidence,
 * the whole covered at the pace the round's evidence gives (f_t): the sum
 * where every delta made little progress, the evidence-weighted mean where
 * each converged.  A plain sum without evidence. */
static double relax(const slr_learner_config *cfg, double G0, const double *dw, const double *dG,
                    double sG, size_t m)
{
    double dth = 0.0;
    if (!(sG > 0.0)) {
        for (size_t i = 0; i < m; i++)
            dth += dw[i];
        return dth;
    }
    const double ft = progress(cfg->eta, cfg->adagrad_delta, G0, sG);
    for (size_t i = 0; i < m; i++) {
        if (!(dG[i] > 0.0))
            continue;
        double fk = progress(cfg->eta, cfg->adagrad_delta, G0, dG[i]);
        if (fk > 0.0)
            dth += ft * (dG[i] / sG) * (dw[i] / fk);
    }
    return dth;
}

/* The round as a whole, for merge_one. */
typedef struct round_info {
    size_t k;          /* deltas */
    size_t learned;    /* deltas with examples */
    uint64_t examples; /* their sum */
    bool common;       /* relaxd past RELAXD_FLAT_MAX deltas: the common error once */
    double error;      /* the common error: the bias's moves over its relaxations */
} round_info;

/* The merged state of one coordinate from c[0..m) (m >= 1). */
static merged merge_one(const slr_learner *shared, bool is_bias, double base, double G0,
                        const contrib *c, size_t m, const round_info *ri, uint64_t T,
                        slr_sync_rule rule)
{
    const slr_learner_config *cfg = slr_learner_config_of(shared);
    if (m == 1 && (rule == SLR_SYNC_RELAXD || rule == SLR_SYNC_RELAXD_FLAT) && !ri->common) {
        /* the member started from base and paid its decay on its own clock */
        double start = is_bias ? base : slr_sync_start(shared, base, G0, T, c[0].n);
        return (merged){clamp_w(start + c[0].dw), to_g2(G0 + c[0].dG), T + c[0].n};
    }
    double dw[m], dG[m], sG = 0.0;
    bool all_dense = true;
    for (size_t i = 0; i < m; i++) {
        /* the start is folded into the record's dw (slr_sync_start): the
         * merge's rules need only the increments */
        dw[i] = c[i].dw;
        dG[i] = c[i].dG;
        sG += dG[i];
        /* past RELAXD_FLAT_MAX deltas a dense coordinate also gathered, in every
         * delta, at least half the evidence of the bias, which every example
         * has: the share of examples it was in, for a 0/1 feature */
        all_dense = all_dense && c[i].dense &&
                    (!ri->common || is_bias || dG[i] >= DENSE_EVIDENCE * c[i].bias_dG);
    }
    double dth = 0.0;
    if (rule == SLR_SYNC_SUM || rule == SLR_SYNC_MEAN) {
        for (size_t i = 0; i < m; i++)
            dth += dw[i];
        if (rule == SLR_SYNC_MEAN)
            dth /= (double)ri->k;
    } else if (all_dense && m > 1) {
        double num = 0.0, den = 0.0;
        for (size_t i = 0; i < m; i++) {
            num += (double)c[i].n * dw[i];
            den += (double)c[i].n;
        }
        dth = num / den;
    } else {
        if (ri->common) {
            /* Every delta started from the same theta_r and corrected the same
             * common error (the margin's offset, which the bias measures) within
             * the round; coordinate j took the share c_k = E_jk * error of it,
             * its relaxation E_jk being how much of any error on its examples
             * it absorbs.  One learner would have taken that share once, not
             * once per delta: it counts once, as the mean over the round's
             * examples, and only the coordinate's own evidence dw_k - c_k goes
             * to relax. */
            double once = 0.0;
            for (size_t i = 0; i < m; i++) {
                double ck = relaxation(cfg->eta, cfg->adagrad_delta, G0, dG[i]) * ri->error;
                dw[i] -= ck;
                once += (double)c[i].n * ck;
            }
            dth = once / (double)ri->examples;
        }
        dth += relax(cfg, G0, dw, dG, sG, m);
    }
    return (merged){clamp_w(base + dth), to_g2((double)G0 + sG), T};
}

static int member_cmp(const char *a, const char *b) { return strcmp(a, b); }

static slr_status check_round(const slr_learner *shared, uint64_t round, const slr_sync_delta *d,
                              size_t k, uint64_t *total, slr_error *err)
{
    const slr_learner_config *cfg = slr_learner_config_of(shared);
    if (cfg->schedule != SLR_SCHEDULE_ADAGRAD || cfg->eager || cfg->optimizer != SLR_OPTIMIZER_SGD ||
        cfg->decay < 1.0)
        return slr_error_set(err, SLR_ERR_ARG,
                             "a shared model needs --schedule adagrad without --eager (not FTRL, "
                             "no --decay)");
    const uint64_t fp = slr_sync_fingerprint(cfg);
    const uint64_t n_slots = slr_learner_bias_index(shared);
    *total = 0;
    for (size_t i = 0; i < k; i++) {
        if (i > 0 && member_cmp(d[i - 1].member, d[i].member) >= 0)
            return slr_error_set(err, SLR_ERR_ARG,
                                 "round %llu: deltas must come in increasing member id (\"%s\" after \"%s\")",
                                 (unsigned long long)round, d[i].member, d[i - 1].member);
        if (d[i].fingerprint != fp)
            return slr_error_set(err, SLR_ERR_MISMATCH,
                                 "member \"%s\" learns with other settings (-b, -q, rates, penalties) "
                                 "than this model: its deltas cannot be merged",
                                 d[i].member);
        if (d[i].round != round)
            return slr_error_set(err, SLR_ERR_ARG, "member \"%s\" sent a delta of round %llu to round %llu",
                                 d[i].member, (unsigned long long)d[i].round,
                                 (unsigned long long)round);
        if (d[i].examples > (UINT64_C(1) << 62) - slr_learner_steps(shared) - *total)
            return slr_error_set(err, SLR_ERR_CORRUPT, "member \"%s\": example count overflows",
                                 d[i].member);
        *total += d[i].examples;
        for (size_t e = 0; e < d[i].n_entries; e++) {
            const unsigned char *p = d[i].entries + e * SLR_SYNC_ENTRY;
            if ((uint64_t)slr_le_get_u32(p) >= n_slots)
                return slr_error_set(err, SLR_ERR_CORRUPT,
                                     "member \"%s\": coordinate %u is beyond this model's 2^%u",
                                     d[i].member, slr_le_get_u32(p), cfg->hashing.bits);
        }
    }
    return SLR_OK;
}

/* The union of the deltas' entry indices, increasing (each list is). */
static slr_status union_of(const slr_sync_delta *d, size_t k, uint32_t **out, size_t *n_out,
                           slr_error *err)
{
    size_t cap = 0;
    for (size_t i = 0; i < k; i++)
        cap += d[i].n_entries;
    uint32_t *u = malloc((cap ? cap : 1) * sizeof *u);
    size_t *cur = calloc(k ? k : 1, sizeof *cur);
    if (!u || !cur) {
        free(u);
        free(cur);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory merging a round");
    }
    size_t n = 0;
    for (;;) {
        uint64_t best = UINT64_MAX;
        for (size_t i = 0; i < k; i++)
            if (cur[i] < d[i].n_entries) {
                uint32_t j = slr_le_get_u32(d[i].entries + cur[i] * SLR_SYNC_ENTRY);
                if (j < best)
                    best = j;
            }
        if (best == UINT64_MAX)
            break;
        u[n++] = (uint32_t)best;
        for (size_t i = 0; i < k; i++)
            if (cur[i] < d[i].n_entries &&
                slr_le_get_u32(d[i].entries + cur[i] * SLR_SYNC_ENTRY) == best)
                cur[i]++;
    }
    free(cur);
    *out = u;
    *n_out = n;
    return SLR_OK;
}

static contrib entry_contrib(const unsigned char *p, uint64_t n)
{
    uint16_t g = slr_le_get_u16(p + 6);
    return (contrib){slr_sync_from_bf16(slr_le_get_u16(p + 4)),
                     slr_sync_from_bf16(g & 0x7fffu), (g & 0x8000u) != 0, n, 0.0};
}

slr_status slr_sync_merge(slr_learner *shared, uint64_t round, const slr_sync_delta *d, size_t k,
                          slr_sync_rule rule, uint32_t **changed, size_t *n_changed,
                          slr_error *err)
{
    if (changed) {
        *changed = NULL;
        *n_changed = 0;
    }
    uint64_t total = 0;
    slr_status st = check_round(shared, round, d, k, &total, err);
    if (st != SLR_OK)
        return st;
    uint32_t *u = NULL;
    size_t nu = 0;
    if ((st = union_of(d, k, &u, &nu, err)) != SLR_OK)
        return st;
    unsigned char *rec = malloc((nu ? nu : 1) * SLR_STATE_RECORD);
    merged *out = malloc((nu ? nu : 1) * sizeof *out);
    size_t *cur = calloc(k ? k : 1, sizeof *cur);
    contrib *c = malloc((k ? k : 1) * sizeof *c);
    if (!rec || !out || !cur || !c) {
        st = slr_error_set(err, SLR_ERR_NOMEM, "out of memory merging a round");
        goto done;
    }
    const uint64_t T = slr_learner_steps(shared);
    /* the round's common error, read off the bias (which pays no penalty) */
    double bw;
    double bg;
    slr_learner_bias_get(shared, &bw, &bg);
    const slr_learner_config *cfg = slr_learner_config_of(shared);
    round_info ri = {k, 0, total, false, 0.0};
    double moved = 0.0, relaxed = 0.0;
    for (size_t i = 0; i < k; i++)
        if (d[i].examples > 0) {
            ri.learned++;
            moved += d[i].bias_w - bw;
            relaxed += relaxation(cfg->eta, cfg->adagrad_delta, bg, d[i].bias_g2 - bg);
        }
    ri.common = rule == SLR_SYNC_RELAXD && ri.learned > RELAXD_FLAT_MAX;
    ri.error = relaxed > 0.0 ? moved / relaxed : 0.0;
    /* theta_r's values of the round's coordinates, their penalty paid to T_r
     * (the catch-up changes no value the model computes) */
    slr_learner_catch_up(shared, u, nu);
    slr_learner_state_export(shared, u, nu, rec);
    for (size_t x = 0; x < nu; x++) {
        const unsigned char *r = rec + x * SLR_STATE_RECORD;
        const double base = slr_le_get_f64(r + SLR_STATE_W);
        const double G0 = slr_le_get_f64(r + SLR_STATE_G2);
        size_t m = 0;
        for (size_t i = 0; i < k; i++) {
            const unsigned char *p = d[i].entries + cur[i] * SLR_SYNC_ENTRY;
            if (cur[i] < d[i].n_entries && slr_le_get_u32(p) == u[x]) {
                c[m] = entry_contrib(p, d[i].examples);
                c[m].bias_dG = d[i].bias_g2 - bg;
                m++;
                cur[i]++;
            }
        }
        out[x] = merge_one(shared, false, base, G0, c, m, &ri, T, rule);
    }
    /* the bias: in every delta that learned anything, always dense */
    size_t m = 0;
    for (size_t i = 0; i < k; i++)
        if (d[i].examples > 0) {
            c[m] = (contrib){d[i].bias_w - bw, d[i].bias_g2 - bg, true, d[i].examples,
                            d[i].bias_g2 - bg};
            if (c[m].dG < 0.0) {
                st = slr_error_set(err, SLR_ERR_MISMATCH,
                                   "member \"%s\": its bias has less evidence than round %llu's "
                                   "model: its delta did not start from it",
                                   d[i].member, (unsigned long long)round);
                goto done;
            }
            m++;
        }
    merged bias = m ? merge_one(shared, true, bw, bg, c, m, &ri, T, rule) : (merged){bw, bg, T};

    /* from here on nothing can be refused: move the clock, write the state */
    if ((st = slr_learner_advance(shared, total, err)) != SLR_OK)
        goto done;
    const uint64_t epoch = slr_learner_epoch(shared);
    for (size_t x = 0; x < nu; x++) {
        unsigned char *r = rec + x * SLR_STATE_RECORD;
        double w = out[x].w;
        uint64_t paid = out[x].paid_to;
        if (paid < epoch) { /* the advance rebased past it: pay up to the new epoch */
            w = slr_learner_penalized(shared, w, out[x].g2, paid, epoch);
            paid = epoch;
        }
        slr_le_put_f64(r + SLR_STATE_W, w);
        slr_le_put_f64(r + SLR_STATE_G2, out[x].g2);
        slr_le_put_u32(r + SLR_STATE_STAMP, (uint32_t)(paid - epoch));
    }
    if ((st = slr_learner_state_apply(shared, rec, nu * SLR_STATE_RECORD, SLR_STATE_STAMPS_KEEP,
                                      "merged round", err)) != SLR_OK)
        goto done;
    if ((st = slr_learner_bias_set(shared, bias.w, bias.g2, "merged round", err)) != SLR_OK)
        goto done;
    if (changed) {
        *changed = u;
        *n_changed = nu;
        u = NULL;
    }
done:
    free(u);
    free(rec);
    free(out);
    free(cur);
    free(c);
    return st;
}
