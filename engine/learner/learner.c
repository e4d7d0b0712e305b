/* learner.c - logistic SGD with lazy L2 decay and truncated-gradient L1,
 * and FTRL-Proximal (learn_ftrl: no catch-up, its weights are a function of
 * each coordinate's own state).
 *
 * One step of learning (slr_learner_learn) reads top to bottom:
 *   1. bring each touched weight up to step t-1 (lazy catch-up, penalty.c)
 *      and compute the margin z = w . x;
 *   2. p = sigma(z), g = h (p - y);
 *   3. gradient step on each touched weight (and the bias);
 *   4. penalty of step t on each touched weight (never the bias).
 * Untouched weights are not visited: their penalty is owed, and paid in
 * closed form at step 1 of the next example that touches them.  With
 * cfg.eager, step 4 instead visits every weight, which is the definition the
 * lazy path must reproduce (tests/check_learner.c compares the two). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "learner_impl.h"
#include "learner_io.h"
#include "update.h"

/* Tables of at least this size are mapped directly, 2 MiB-aligned, and
 * offered to transparent huge pages: an example touches ~40 random slots, and
 * with 4 KiB pages nearly every one of them is also a TLB miss. */
#define HUGE_TABLE_BYTES (UINT64_C(2) << 20)

static void *table_alloc(uint64_t n, size_t size, size_t *mapped)
{
    size_t bytes = (size_t)n * size;
    *mapped = 0;
    if (bytes < HUGE_TABLE_BYTES)
        return calloc(n, size); /* zero pages are mapped lazily either way */
    size_t len = (bytes + HUGE_TABLE_BYTES - 1) / HUGE_TABLE_BYTES * HUGE_TABLE_BYTES;
    size_t span = len + HUGE_TABLE_BYTES;
    char *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    /* keep the 2 MiB-aligned part, return the rest */
    uintptr_t start = ((uintptr_t)p + HUGE_TABLE_BYTES - 1) & ~(uintptr_t)(HUGE_TABLE_BYTES - 1);
    char *aligned = (char *)start;
    if (aligned > p)
        munmap(p, (size_t)(aligned - p));
    if (p + span > aligned + len)
        munmap(aligned + len, (size_t)(p + span - (aligned + len)));
#ifdef MADV_HUGEPAGE
    madvise(aligned, len, MADV_HUGEPAGE); /* advice only: 4 KiB pages work too */
#endif
    *mapped = len;
    return aligned;
}

static slr_rates_fn *pick_adagrad_rates(void);

#define PREFAULT_STEP_BYTES (8u << 20)

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels say EINVAL and nothing happens */
#endif

static void prefault_table(void *table, size_t mapped)
{
    /* in steps: a step holds the process's memory map lock, and every mmap
     * of another thread (librdkafka's fetch buffers) waits for it */
    for (size_t at = 0; at < mapped; at += PREFAULT_STEP_BYTES) {
        size_t n = mapped - at < PREFAULT_STEP_BYTES ? mapped - at : PREFAULT_STEP_BYTES;
        if (madvise((char *)table + at, n, MADV_POPULATE_WRITE) != 0)
            break; /* not supported here: the learner's first touches zero the pages */
    }
}

void slr_learner_prefault(slr_learner *l)
{
    prefault_table(l->slots, l->slots_mapped);
    if (l->stamps) /* the penalty's stamps are touched as randomly as the slots */
        prefault_table(l->stamps, l->stamps_mapped);
}

static void table_free(void *t, size_t mapped)
{
    if (mapped)
        munmap(t, mapped);
    else
        free(t);
}

const char *slr_schedule_name(slr_schedule s)
{
    switch (s) {
    case SLR_SCHEDULE_CONSTANT: return "constant";
    case SLR_SCHEDULE_INVPOW: return "invpow";
    case SLR_SCHEDULE_ADAGRAD: return "adagrad";
    }
    return "unknown";
}

slr_status slr_schedule_parse(const char *name, slr_schedule *out, slr_error *err)
{
    for (int s = SLR_SCHEDULE_CONSTANT; s <= SLR_SCHEDULE_ADAGRAD; s++)
        if (strcmp(name, slr_schedule_name((slr_schedule)s)) == 0) {
            *out = (slr_schedule)s;
            return SLR_OK;
        }
    return slr_error_set(err, SLR_ERR_ARG,
                         "unknown schedule \"%s\" (use constant, invpow or adagrad)", name);
}

const char *slr_optimizer_name(slr_optimizer o)
{
    return o == SLR_OPTIMIZER_FTRL ? "ftrl" : o == SLR_OPTIMIZER_SGD ? "sgd" : "unknown";
}

slr_status slr_optimizer_parse(const char *name, slr_optimizer *out, slr_error *err)
{
    for (int o = SLR_OPTIMIZER_SGD; o <= SLR_OPTIMIZER_FTRL; o++)
        if (strcmp(name, slr_optimizer_name((slr_optimizer)o)) == 0) {
            *out = (slr_optimizer)o;
            return SLR_OK;
        }
    return slr_error_set(err, SLR_ERR_ARG, "unknown optimizer \"%s\" (use sgd or ftrl)", name);
}

void slr_learner_config_defaults(slr_learner_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    slr_hashing_init(&cfg->hashing, SLR_BITS_DEFAULT);
    cfg->schedule = SLR_SCHEDULE_ADAGRAD;
    cfg->eta = 0.1;
    cfg->power_t = 0.5;
    cfg->initial_t = 1.0;
    cfg->adagrad_delta = 1.0;
    cfg->l1 = 0.0;
    cfg->l2 = 0.0;
    cfg->tg_period = 1;
    cfg->tg_threshold = INFINITY;
    cfg->eager = false;
    cfg->optimizer = SLR_OPTIMIZER_SGD;
    cfg->ftrl_alpha = SLR_FTRL_ALPHA_DEFAULT;
    cfg->ftrl_beta = SLR_FTRL_BETA_DEFAULT;
    cfg->decay = 1.0;
}

/* FTRL's own checks: its rates, and the SGD settings that mean nothing to it
 * (a truncation period or band, --eager: its L1 is exact and lazy by
 * construction). */
static slr_status validate_ftrl(const slr_learner_config *cfg, slr_error *err)
{
    if (!(cfg->ftrl_alpha > 0) || !isfinite(cfg->ftrl_alpha))
        return slr_error_set(err, SLR_ERR_ARG, "--ftrl_alpha %g must be finite and > 0",
                             cfg->ftrl_alpha);
    if (!(cfg->ftrl_beta >= 0) || !isfinite(cfg->ftrl_beta))
        return slr_error_set(err, SLR_ERR_ARG, "--ftrl_beta %g must be finite and >= 0",
                             cfg->ftrl_beta);
    if (cfg->tg_period != 1 || cfg->tg_threshold != INFINITY)
        return slr_error_set(err, SLR_ERR_ARG,
                             "--tg-period and --tg-threshold belong to truncated gradient (SGD); "
                             "FTRL's L1 is exact at every step");
    if (cfg->eager)
        return slr_error_set(err, SLR_ERR_ARG,
                             "--eager has no meaning with FTRL: a weight is computed from its own "
                             "z and n, so there is no lazy penalty to check");
    return SLR_OK;
}

slr_status slr_learner_config_validate(const slr_learner_config *cfg, slr_error *err)
{
    if (cfg->hashing.bits < SLR_BITS_MIN || cfg->hashing.bits > SLR_BITS_MAX)
        return slr_error_set(err, SLR_ERR_ARG, "-b %u is out of range (%d..%d)", cfg->hashing.bits,
                             SLR_BITS_MIN, SLR_BITS_MAX);
    if (!(cfg->eta > 0) || !isfinite(cfg->eta))
        return slr_error_set(err, SLR_ERR_ARG, "learning rate -l %g must be finite and > 0", cfg->eta);
    if (cfg->schedule > SLR_SCHEDULE_ADAGRAD)
        return slr_error_set(err, SLR_ERR_ARG, "unknown schedule %d", (int)cfg->schedule);
    if (cfg->optimizer > SLR_OPTIMIZER_FTRL)
        return slr_error_set(err, SLR_ERR_ARG, "unknown optimizer %d", (int)cfg->optimizer);
    if (!(cfg->power_t >= 0) || !isfinite(cfg->power_t))
        return slr_error_set(err, SLR_ERR_ARG, "--power-t %g must be finite and >= 0", cfg->power_t);
    if (!(cfg->initial_t > 0) || !isfinite(cfg->initial_t))
        return slr_error_set(err, SLR_ERR_ARG, "--initial-t %g must be finite and > 0", cfg->initial_t);
    if (!(cfg->adagrad_delta > 0) || !isfinite(cfg->adagrad_delta))
        return slr_error_set(err, SLR_ERR_ARG, "--adagrad-delta %g must be finite and > 0",
                             cfg->adagrad_delta);
    if (!(cfg->l1 >= 0) || !isfinite(cfg->l1))
        return slr_error_set(err, SLR_ERR_ARG, "--l1 %g must be finite and >= 0", cfg->l1);
    if (!(cfg->l2 >= 0) || !isfinite(cfg->l2))
        return slr_error_set(err, SLR_ERR_ARG, "--l2 %g must be finite and >= 0", cfg->l2);
    if (cfg->tg_period < 1)
        return slr_error_set(err, SLR_ERR_ARG, "--tg-period must be >= 1");
    if (!(cfg->tg_threshold > 0))
        return slr_error_set(err, SLR_ERR_ARG, "--tg-threshold %g must be > 0 (inf for none)",
                             cfg->tg_threshold);
    if (!(cfg->decay > 0.0 && cfg->decay <= 1.0))
        return slr_error_set(err, SLR_ERR_ARG, "--decay %g must be in (0, 1] (1: no forgetting)",
                             cfg->decay);
    if (cfg->optimizer == SLR_OPTIMIZER_FTRL)
        return validate_ftrl(cfg, err);
    if (cfg->decay < 1.0 && cfg->schedule != SLR_SCHEDULE_ADAGRAD)
        return slr_error_set(err, SLR_ERR_ARG,
                             "--decay forgets AdaGrad's sum of g^2 (or FTRL's z and n); --schedule "
                             "%s keeps none: use --schedule adagrad or --optimizer ftrl",
                             slr_schedule_name(cfg->schedule));
    /* SGD's lazy penalty pays a gap at the rate the coordinate had when last
     * touched; a decaying Sum g^2 raises that rate during the gap. */
    if (cfg->decay < 1.0 && (cfg->l1 > 0 || cfg->l2 > 0))
        return slr_error_set(err, SLR_ERR_ARG,
                             "--decay with --l1/--l2 needs --optimizer ftrl (SGD's lazy penalty "
                             "assumes a rate that does not change while a weight is untouched, "
                             "and a decaying sum of g^2 changes it)");
    /* With a global rate eta_t <= eta, eta l2 >= 1 would zero or sign-flip every
     * weight each step; that is never what anyone wants, so say so up front. */
    if (cfg->schedule != SLR_SCHEDULE_ADAGRAD && cfg->eta * cfg->l2 >= 1.0)
        return slr_error_set(err, SLR_ERR_ARG,
                             "-l %g with --l2 %g multiplies every weight by 1 - %g <= 0 each step; "
                             "lower one of them",
                             cfg->eta, cfg->l2, cfg->eta * cfg->l2);
    return SLR_OK;
}

size_t slr_learner_history_capacity(uint64_t n_slots)
{
    /* A full sync costs one pass over the table; doing it every n_slots/16
     * steps keeps that under 16 slot visits per example, and the history
     * (16 bytes a step) at 1 byte per slot. */
    uint64_t cap = n_slots / 16;
    if (cap < 4096)
        cap = 4096;
    if (cap > (UINT64_C(1) << 24))
        cap = UINT64_C(1) << 24;
    return (size_t)cap;
}

/* --decay's D^k of short gaps (decay_factor), for l->cfg.decay */
static void fill_decay_table(slr_learner *l)
{
    for (int k = 0; k < SLR_DECAY_TABLE; k++) {
        l->decay_pow[k] = pow(l->cfg.decay, (double)k);
        l->decay_pow_hi[k] = pow(l->cfg.decay, (double)k * SLR_DECAY_TABLE);
    }
}

/* SGD's penalty; FTRL has none to pay (its L1 and L2 are in the weight's
 * formula), so every catch-up is a no-op for it. */
static slr_penalty penalty_of(const slr_learner_config *cfg)
{
    if (cfg->optimizer == SLR_OPTIMIZER_FTRL)
        return (slr_penalty){.l1 = 0.0, .l2 = 0.0, .period = 1, .threshold = INFINITY};
    return (slr_penalty){.l1 = cfg->l1, .l2 = cfg->l2, .period = cfg->tg_period,
                         .threshold = cfg->tg_threshold};
}

/* A lazy penalty or decay needs a stamp per slot (learner_impl.h); a
 * learner that gets one (created with it, or reconfigured to it) gets them
 * here, zero: every slot caught up to the epoch. */
static slr_status alloc_stamps(slr_learner *l, const slr_learner_config *cfg, slr_error *err)
{
    const bool penalty = cfg->optimizer == SLR_OPTIMIZER_SGD && (cfg->l1 > 0 || cfg->l2 > 0);
    if (l->stamps || cfg->eager || !(penalty || cfg->decay < 1.0))
        return SLR_OK;
    l->stamps = table_alloc(l->n_slots + 1, sizeof(uint32_t), &l->stamps_mapped);
    if (!l->stamps)
        return slr_error_set(err, SLR_ERR_NOMEM,
                             "cannot allocate the penalty's step stamps of 2^%u weights "
                             "(%llu MiB); lower -b",
                             cfg->hashing.bits,
                             (unsigned long long)(((l->n_slots + 1) * sizeof(uint32_t)) >> 20));
    return SLR_OK;
}

slr_status slr_learner_create(slr_learner **out, const slr_learner_config *cfg, slr_error *err)
{
    *out = NULL;
    slr_status st = slr_learner_config_validate(cfg, err);
    if (st != SLR_OK)
        return st;
    slr_learner *l = calloc(1, sizeof *l);
    if (!l)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    l->cfg = *cfg;
    l->pen = penalty_of(cfg);
    fill_decay_table(l);
    l->n_slots = UINT64_C(1) << cfg->hashing.bits;
    l->mask = slr_hashing_mask(&cfg->hashing);
    l->rates = pick_adagrad_rates();
    l->catchup = slr_penalty_catchup_soft_many();
    l->step_soft = slr_update_soft_many();
    l->slots = table_alloc(l->n_slots + 1, sizeof(slr_slot), &l->slots_mapped);
    if (!l->slots) {
        unsigned long long mib = ((l->n_slots + 1) * sizeof(slr_slot)) >> 20;
        free(l);
        return slr_error_set(err, SLR_ERR_NOMEM,
                             "cannot allocate 2^%u weight slots (%llu MiB); lower -b",
                             cfg->hashing.bits, mib);
    }
    if ((st = alloc_stamps(l, cfg, err)) != SLR_OK) {
        slr_learner_destroy(l);
        return st;
    }
    l->use_history = !cfg->eager && cfg->optimizer == SLR_OPTIMIZER_SGD &&
                     cfg->schedule == SLR_SCHEDULE_INVPOW && slr_penalty_active(&l->pen);
    if (l->use_history) {
        l->hist.cap = slr_learner_history_capacity(l->n_slots);
        l->hist.log_p = malloc(l->hist.cap * sizeof(double));
        l->hist.c = malloc(l->hist.cap * sizeof(double));
        if (!l->hist.log_p || !l->hist.c) {
            slr_learner_destroy(l);
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for the penalty history");
        }
        slr_penalty_history_rebase(&l->hist, 0);
    }
    *out = l;
    return SLR_OK;
}

void slr_learner_destroy(slr_learner *l)
{
    if (!l)
        return;
    table_free(l->slots, l->slots_mapped);
    if (l->stamps)
        table_free(l->stamps, l->stamps_mapped);
    free(l->changed);
    free(l->hist.log_p);
    free(l->hist.c);
    free(l);
}

const slr_learner_config *slr_learner_config_of(const slr_learner *l) { return &l->cfg; }

slr_status slr_learner_reconfigure(slr_learner *l, const slr_learner_config *cfg, slr_error *err)
{
    slr_status st = slr_learner_config_validate(cfg, err);
    if (st != SLR_OK)
        return st;
    if (cfg->hashing.bits != l->cfg.hashing.bits ||
        cfg->hashing.n_quadratic != l->cfg.hashing.n_quadratic ||
        memcmp(cfg->hashing.quadratic, l->cfg.hashing.quadratic, sizeof cfg->hashing.quadratic) ||
        cfg->hashing.n_cubic != l->cfg.hashing.n_cubic ||
        memcmp(cfg->hashing.cubic, l->cfg.hashing.cubic, sizeof cfg->hashing.cubic) ||
        memcmp(cfg->hashing.ignored, l->cfg.hashing.ignored, sizeof cfg->hashing.ignored) ||
        memcmp(cfg->hashing.ignored_linear, l->cfg.hashing.ignored_linear,
               sizeof cfg->hashing.ignored_linear) ||
        cfg->noconstant != l->cfg.noconstant || cfg->optimizer != l->cfg.optimizer ||
        cfg->schedule != l->cfg.schedule || cfg->eager != l->cfg.eager)
        return slr_error_set(err, SLR_ERR_ARG,
                             "hashing (-b, -q, --cubic, --ignore), --noconstant, --optimizer, "
                             "--schedule and --eager are fixed for a trained model");
    slr_learner_rebase(l); /* settle the penalty owed under the old settings */
    if ((st = alloc_stamps(l, cfg, err)) != SLR_OK)
        return st;
    bool use_history = !cfg->eager && cfg->optimizer == SLR_OPTIMIZER_SGD &&
                       cfg->schedule == SLR_SCHEDULE_INVPOW && (cfg->l1 > 0 || cfg->l2 > 0);
    if (use_history) {
        /* kept while unused: a history that was switched off (L1 and L2 at 0)
         * and back on reuses its arrays, whose size depends only on -b */
        l->hist.cap = slr_learner_history_capacity(l->n_slots);
        if (!l->hist.log_p)
            l->hist.log_p = malloc(l->hist.cap * sizeof(double));
        if (!l->hist.c)
            l->hist.c = malloc(l->hist.cap * sizeof(double));
        if (!l->hist.log_p || !l->hist.c)
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for the penalty history");
    }
    l->cfg = *cfg;
    l->pen = penalty_of(cfg);
    fill_decay_table(l);
    l->use_history = use_history;
    if (use_history)
        slr_penalty_history_rebase(&l->hist, l->step);
    return SLR_OK;
}
uint64_t slr_learner_steps(const slr_learner *l) { return l->step; }
uint64_t slr_learner_bias_index(const slr_learner *l) { return l->n_slots; }

double slr_sigmoid(double z)
{
    if (z >= 0)
        return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

/* log(1 + e^x) without overflow */
static double softplus(double x)
{
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

double slr_logloss_margin(double z, double y)
{
    return y > 0.5 ? softplus(-z) : softplus(z);
}

/* eta_t of a global schedule for step t (1-based); AdaGrad's is per slot. */
static double global_rate(const slr_learner *l, uint64_t t)
{
    if (l->cfg.schedule == SLR_SCHEDULE_INVPOW)
        return l->cfg.eta *
               pow(l->cfg.initial_t / (l->cfg.initial_t + (double)(t - 1)), l->cfg.power_t);
    return l->cfg.eta;
}

static inline double slot_rate(const slr_learner *l, const slr_slot *s, double eta_t)
{
    if (l->cfg.schedule == SLR_SCHEDULE_ADAGRAD)
        return l->cfg.eta / sqrt(l->cfg.adagrad_delta + s->g2);
    return eta_t;
}

/* Does this learner pay its penalty lazily?  (Then l->stamps exists.) */
static inline bool lazy_penalty(const slr_learner *l)
{
    return !l->cfg.eager && slr_penalty_active(&l->pen);
}

/* Value of slot j brought up to step `to` (>= its stamp), for a lazy penalty. */
static inline double caught_up(const slr_learner *l, uint64_t j, uint64_t to)
{
    const slr_slot *s = &l->slots[j];
    uint64_t from = l->epoch + l->stamps[j];
    if (s->w == 0.0 || from >= to)
        return s->w;
    if (l->use_history)
        return slr_penalty_catchup_history(&l->pen, &l->hist, s->w, from, to);
    return slr_penalty_catchup_const(&l->pen, s->w, slot_rate(l, s, l->cfg.eta), from, to);
}

static inline void catch_up(slr_learner *l, uint64_t j, uint64_t to)
{
    if (l->epoch + l->stamps[j] < to) {
        l->slots[j].w = caught_up(l, j, to);
        l->stamps[j] = (uint32_t)(to - l->epoch);
    }
}

/* Does this learner forget lazily (--decay, not --eager)?  (Then l->stamps
 * exists.) */
static inline bool lazy_decay(const slr_learner *l)
{
    return l->cfg.decay < 1.0 && !l->cfg.eager;
}

/* D^k (--decay) */
static inline double decay_factor(const slr_learner *l, uint64_t k)
{
    if (k < SLR_DECAY_TABLE)
        return l->decay_pow[k];
    if (k < SLR_DECAY_TABLE * SLR_DECAY_TABLE)
        return l->decay_pow[k % SLR_DECAY_TABLE] * l->decay_pow_hi[k / SLR_DECAY_TABLE];
    return pow(l->cfg.decay, (double)k);
}

/* Multiply slot j's accumulators by f: AdaGrad's Sum g^2, FTRL's z and n. */
static inline void scale_accumulators(slr_learner *l, uint64_t j, double f)
{
    slr_slot *s = &l->slots[j];
    if (l->cfg.optimizer == SLR_OPTIMIZER_FTRL)
        s->z *= f;
    s->g2 *= f; /* = n under FTRL */
}

/* Slot j's accumulators brought to the end of step `to`: the decays of the
 * steps since its stamp, D^k at once (the eager loop multiplies by D k
 * times: the same to k roundings). */
static inline void decay_to(slr_learner *l, uint64_t j, uint64_t to)
{
    const uint64_t at = l->epoch + l->stamps[j];
    if (at < to) {
        scale_accumulators(l, j, decay_factor(l, to - at));
        l->stamps[j] = (uint32_t)(to - l->epoch);
    }
}

/* The decay of step t (stamp_t) on a slot touched by it and brought to t-1
 * (decay_to); once per step, however often the example repeats it. */
static inline void decay_step(slr_learner *l, uint64_t j, uint32_t stamp_t)
{
    if (l->stamps[j] != stamp_t) {
        scale_accumulators(l, j, l->cfg.decay);
        l->stamps[j] = stamp_t;
    }
}

/* Before step t of a decaying learner: every slot of the example (and the
 * bias) brought to the end of t - 1. */
static void decay_begin(slr_learner *l, const slr_feature *f, uint32_t n, uint64_t t)
{
    for (uint32_t i = 0; i < n; i++)
        decay_to(l, f[i].index, t - 1);
    if (!l->cfg.noconstant)
        decay_to(l, l->n_slots, t - 1);
}

/* After step t's updates: its decay, on the slots the example touched (the
 * rest owe it, lazily), or on every slot with --eager. */
static void decay_end(slr_learner *l, const slr_feature *f, uint32_t n, uint64_t t)
{
    if (l->cfg.eager) {
        for (uint64_t j = 0; j <= l->n_slots; j++)
            scale_accumulators(l, j, l->cfg.decay);
        return;
    }
    const uint32_t stamp_t = (uint32_t)(t - l->epoch);
    for (uint32_t i = 0; i < n; i++)
        decay_step(l, f[i].index, stamp_t);
    if (!l->cfg.noconstant)
        decay_step(l, l->n_slots, stamp_t);
}

void slr_learner_sync(slr_learner *l)
{
    if (!lazy_penalty(l))
        return;
    for (uint64_t j = 0; j < l->n_slots; j++)
        catch_up(l, j, l->step);
}

void slr_learner_rebase(slr_learner *l)
{
    slr_learner_sync(l);
    if (lazy_decay(l))
        for (uint64_t j = 0; j <= l->n_slots; j++)
            decay_to(l, j, l->step);
    if (l->stamps)
        memset(l->stamps, 0, (size_t)(l->n_slots + 1) * sizeof *l->stamps);
    l->epoch = l->step;
    if (l->use_history)
        slr_penalty_history_rebase(&l->hist, l->step);
}

/* Before step t: keep stamps and history within range, record eta_t. */
static void begin_step(slr_learner *l, uint64_t t, double eta_t)
{
    if (l->cfg.eager)
        return;
    bool stamps_full = t - l->epoch >= UINT32_MAX;
    /* also start afresh before P underflows or the truncation sums overflow
     * (an absurd rate times l1): the catch-up subtracts them */
    bool history_full = l->use_history && (l->hist.len >= l->hist.cap ||
                                           l->hist.log_p[l->hist.len - 1] < -300.0 ||
                                           !(l->hist.c[l->hist.len - 1] <= 1e300));
    if (stamps_full || history_full)
        slr_learner_rebase(l);
    if (l->use_history)
        slr_penalty_history_push(&l->hist, &l->pen, eta_t);
}

/* The numeric guard (docs/LEARNING.md, "Numeric guards"): a step that
 * would carry |w| past SLR_MAX_ABS_WEIGHT stops at the bound (and AdaGrad's
 * accumulator saturates, slr_adagrad_add).  A zero gradient changes nothing
 * (and must not meet an infinite rate: Inf * 0).  The eager reference runs
 * this same function, so lazy == eager holds. */
static inline void gradient_step(const slr_learner *l, slr_slot *s, double g_j, double eta_t)
{
    if (g_j == 0.0)
        return;
    if (l->cfg.schedule == SLR_SCHEDULE_ADAGRAD)
        s->g2 = slr_adagrad_add(s->g2, g_j);
    s->w = slr_gradient_step(s->w, slot_rate(l, s, eta_t), g_j);
}

/* p = sigma(z) and, if wanted, the log loss of label y, sharing one exp:
 * the same arithmetic as slr_sigmoid and slr_logloss_margin. */
static inline double predict_and_loss(double z, double y, double *loss)
{
    const double e = exp(z >= 0 ? -z : z); /* e^-|z| */
    const double p = z >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    if (loss) {
        const double base = log1p(e); /* softplus(u) = max(u, 0) + log1p(e^-|u|) */
        *loss = y > 0.5 ? (z < 0 ? -z + base : base) : (z > 0 ? z + base : base);
    }
    return p;
}

/* bias + w . x for weights already brought up to date.  Four partial
 * sums, so the additions do not form one long chain of dependent
 * instructions; every path (learn, predict) sums in this same order. */
static inline double margin_of(const slr_slot *slots, const slr_slot *bias, const slr_feature *f,
                               uint32_t n)
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += slots[f[i].index].w * (double)f[i].value;
        s1 += slots[f[i + 1].index].w * (double)f[i + 1].value;
        s2 += slots[f[i + 2].index].w * (double)f[i + 2].value;
        s3 += slots[f[i + 3].index].w * (double)f[i + 3].value;
    }
    for (; i < n; i++)
        s0 += slots[f[i].index].w * (double)f[i].value;
    return bias->w + ((s0 + s1) + (s2 + s3));
}

/* Change tracking (learner_io.h): the coordinates of an example and the
 * bias join the set. */
static void note_changed(slr_learner *l, const slr_feature *f, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        l->changed[f[i].index >> 6] |= UINT64_C(1) << (f[i].index & 63);
    l->changed[l->n_slots >> 6] |= UINT64_C(1) << (l->n_slots & 63);
}

/* The reference path: every schedule, eager or lazy, penalty history. */
static double learn_general(slr_learner *l, const slr_example *ex, double *loss)
{
    const uint64_t t = l->step + 1;
    const double eta_t = global_rate(l, t);
    const slr_feature *f = ex->features;
    const uint32_t n = ex->n_features;
    slr_slot *slots = l->slots, *bias = &l->slots[l->n_slots];
    const bool lazy = lazy_penalty(l);

    begin_step(l, t, eta_t);
    if (lazy_decay(l))
        decay_begin(l, f, n, t);

    /* 1. margin with every touched weight owed nothing up to t-1 */
    if (lazy)
        for (uint32_t i = 0; i < n; i++)
            catch_up(l, f[i].index, t - 1);
    const double z = margin_of(slots, bias, f, n);

    /* 2. prediction and loss gradient */
    const double p = predict_and_loss(z, ex->label, loss);
    const double g = ex->weight * (p - ex->label);

    /* 3. gradient step */
    for (uint32_t i = 0; i < n; i++)
        gradient_step(l, &slots[f[i].index], g * (double)f[i].value, eta_t);
    if (!l->cfg.noconstant)
        gradient_step(l, bias, g, eta_t);

    /* 4. penalty of step t (the bias is never regularised) */
    if (l->cfg.eager) {
        if (slr_penalty_active(&l->pen))
            for (uint64_t j = 0; j < l->n_slots; j++)
                slots[j].w = slr_penalty_step(&l->pen, slots[j].w, slot_rate(l, &slots[j], eta_t), t);
    } else if (lazy) {
        const uint32_t stamp_t = (uint32_t)(t - l->epoch);
        for (uint32_t i = 0; i < n; i++) {
            slr_slot *s = &slots[f[i].index];
            if (l->stamps[f[i].index] != stamp_t) { /* a repeated index is penalised once */
                s->w = slr_penalty_step(&l->pen, s->w, slot_rate(l, s, eta_t), t);
                l->stamps[f[i].index] = stamp_t;
            }
        }
    }
    if (l->cfg.decay < 1.0)
        decay_end(l, f, n, t);
    if (l->changed)
        note_changed(l, f, n);
    l->step = t;
    return p;
}

/* Examples with more features than this take the general path (the fast one
 * keeps per-feature values in stack arrays). */
#define FAST_MAX_FEATURES 512 /* a multiple of 8: see pad_for_vectors */

/* rate[i] = eta / sqrt(delta + g2[i]): AdaGrad's rates for a whole example
 * at once, so that the square roots and divisions -- the costliest
 * arithmetic of an update -- run several to an instruction.  Every variant
 * computes the same correctly rounded IEEE results. */
static inline void adagrad_rates_scalar(const double *g2, double *rate, uint32_t n, double eta,
                                        double delta)
{
    for (uint32_t i = 0; i < n; i++)
        rate[i] = eta / sqrt(delta + g2[i]);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* The vector versions round n up to whole vectors: callers leave room in
 * both arrays (FAST_MAX_FEATURES is a multiple of 8) and zero the padding of
 * g2; the extra rates are never read. */
__attribute__((target("avx"))) static void adagrad_rates_avx(const double *g2, double *rate,
                                                              uint32_t n, double eta, double delta)
{
    const __m256d e = _mm256_set1_pd(eta), d = _mm256_set1_pd(delta);
    for (uint32_t i = 0; i < n; i += 4) {
        __m256d x = _mm256_add_pd(d, _mm256_loadu_pd(g2 + i));
        _mm256_storeu_pd(rate + i, _mm256_div_pd(e, _mm256_sqrt_pd(x)));
    }
}

static void adagrad_rates_sse2(const double *g2, double *rate, uint32_t n, double eta, double delta)
{
    const __m128d e = _mm_set1_pd(eta), d = _mm_set1_pd(delta);
    for (uint32_t i = 0; i < n; i += 2) {
        __m128d x = _mm_add_pd(d, _mm_loadu_pd(g2 + i));
        _mm_storeu_pd(rate + i, _mm_div_pd(e, _mm_sqrt_pd(x)));
    }
}

static slr_rates_fn *pick_adagrad_rates(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") ? adagrad_rates_avx : adagrad_rates_sse2;
}
#else
static slr_rates_fn *pick_adagrad_rates(void) { return adagrad_rates_scalar; }
#endif

/* Zero g2[n .. n rounded up to 8): the vector rates read whole vectors. */
static inline void pad_for_vectors(double *g2, uint32_t n)
{
    for (uint32_t i = n; i & 7; i++)
        g2[i] = 0.0;
}

/* Does index f[i] occur again after position i? (Only asked about examples
 * known to repeat an index, which are rare.) */
static bool occurs_later(const slr_feature *f, uint32_t i, uint32_t n)
{
    for (uint32_t j = i + 1; j < n; j++)
        if (f[j].index == f[i].index)
            return true;
    return false;
}

/* The same arithmetic as learn_general, in the same order per weight, for
 * the lazy schedules whose rate is constant over a gap (constant, AdaGrad)
 * and for invpow without a penalty.  It works in passes over the example, so
 * that the independent per-feature work of a pass overlaps in the CPU and the
 * costly parts run in vector instructions:
 *   1. list the weights that owe a penalty (gap > 0, w != 0) with their
 *      gaps; their rates; their catch-up; the margin;
 *   2. prediction;
 *   3. Sigma g^2 updates in feature order (a repeated index accumulates
 *      exactly as in learn_general); the new rates; the gradient step and
 *      the penalty of step t.
 * Stamps are set to t in pass 1 -- nothing reads them before the step ends
 * -- which also finds repeated indices: a slot already stamped t was met
 * earlier in this example.  Such an example takes separate gradient and
 * penalty passes, the penalty once per slot at its last occurrence, whose
 * rate is the final one. */
static double learn_fast(slr_learner *l, const slr_example *ex, double *loss)
{
    const uint64_t t = l->step + 1;
    const bool adagrad = l->cfg.schedule == SLR_SCHEDULE_ADAGRAD;
    const slr_penalty pen = l->pen; /* a local copy: no aliasing with the slots */
    const bool lazy = slr_penalty_active(&pen), soft = slr_penalty_is_soft(&pen);
    const double eta = l->cfg.eta, delta = l->cfg.adagrad_delta;
    const double eta_t = global_rate(l, t);
    const slr_feature *f = ex->features;
    const uint32_t n = ex->n_features;
    slr_slot *slots = l->slots, *bias = &l->slots[l->n_slots];
    double rate[FAST_MAX_FEATURES], w[FAST_MAX_FEATURES], g_x[FAST_MAX_FEATURES];
    double g2[FAST_MAX_FEATURES];
    uint32_t gap[FAST_MAX_FEATURES], owing[FAST_MAX_FEATURES];
    bool repeats = false;

    begin_step(l, t, eta_t);
    const uint32_t stamp_t = (uint32_t)(t - l->epoch), stamp_prev = stamp_t - 1;

    /* 1. catch up to t-1, then the margin */
    if (lazy) {
        uint32_t *stamps = l->stamps;
        uint32_t m = 0;
        for (uint32_t i = 0; i < n; i++) {
            slr_slot *s = &slots[f[i].index];
            const uint32_t stamp = stamps[f[i].index];
            if (stamp == stamp_t) {
                repeats = true;
                continue;
            }
            stamps[f[i].index] = stamp_t;
            /* written always, kept if owing: no branch to mispredict */
            owing[m] = f[i].index;
            gap[m] = stamp_prev - stamp;
            w[m] = s->w;
            g2[m] = s->g2;
            m += stamp != stamp_prev && w[m] != 0.0;
        }
        if (adagrad) {
            pad_for_vectors(g2, m);
            l->rates(g2, rate, m, eta, delta);
        } else
            for (uint32_t k = 0; k < m; k++)
                rate[k] = eta;
        if (soft) {
            l->catchup(&pen, w, rate, gap, m);
        } else {
            for (uint32_t k = 0; k < m; k++)
                w[k] = slr_penalty_catchup_const(&pen, w[k], rate[k], t - 1 - gap[k], t - 1);
        }
        for (uint32_t k = 0; k < m; k++)
            slots[owing[k]].w = w[k];
    }
    const double z = margin_of(slots, bias, f, n);

    /* 2. prediction and loss gradient */
    const double p = predict_and_loss(z, ex->label, loss);
    const double g = ex->weight * (p - ex->label);

    /* 3. gradient step and the penalty of step t */
    if (adagrad) {
        for (uint32_t i = 0; i < n; i++) {
            slr_slot *s = &slots[f[i].index];
            s->g2 = slr_adagrad_add(s->g2, g * (double)f[i].value);
            g2[i] = s->g2;
        }
        pad_for_vectors(g2, n);
        l->rates(g2, rate, n, eta, delta);
    } else {
        for (uint32_t i = 0; i < n; i++)
            rate[i] = eta_t;
    }
    if (!l->cfg.noconstant)
        gradient_step(l, bias, g, eta_t);
    if (lazy && soft && !repeats) { /* gather, step in vectors, scatter */
        for (uint32_t i = 0; i < n; i++) {
            w[i] = slots[f[i].index].w;
            g_x[i] = g * (double)f[i].value;
        }
        l->step_soft(&pen, w, rate, g_x, n, t);
        for (uint32_t i = 0; i < n; i++)
            slots[f[i].index].w = w[i];
    } else {
        for (uint32_t i = 0; i < n; i++) {
            slr_slot *s = &slots[f[i].index];
            s->w = slr_gradient_step(s->w, rate[i], g * (double)f[i].value);
        }
        if (lazy)
            for (uint32_t i = 0; i < n; i++) {
                if (repeats && occurs_later(f, i, n))
                    continue;
                slr_slot *s = &slots[f[i].index];
                s->w = slr_penalty_step(&pen, s->w, rate[i], t);
            }
    }
    if (l->changed)
        note_changed(l, f, n);
    l->step = t;
    return p;
}

/* FTRL's weight of slot j from its (z, n) as of now (with --decay, the
 * decays owed since its stamp included); the bias is not regularised. */
static inline double ftrl_weight_of(const slr_learner *l, uint64_t j)
{
    const slr_slot *s = &l->slots[j];
    const bool bias = j == l->n_slots;
    double f = 1.0;
    if (l->stamps) {
        const uint64_t at = l->epoch + l->stamps[j];
        f = at < l->step ? decay_factor(l, l->step - at) : 1.0;
    }
    return slr_ftrl_weight(f * s->z, f * s->n, l->cfg.ftrl_alpha, l->cfg.ftrl_beta,
                           bias ? 0.0 : l->cfg.l1, bias ? 0.0 : l->cfg.l2);
}

/* margin_of for FTRL, whose weights are computed: the same order of sums. */
static double ftrl_margin(const slr_learner *l, const slr_feature *f, uint32_t n)
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += ftrl_weight_of(l, f[i].index) * (double)f[i].value;
        s1 += ftrl_weight_of(l, f[i + 1].index) * (double)f[i + 1].value;
        s2 += ftrl_weight_of(l, f[i + 2].index) * (double)f[i + 2].value;
        s3 += ftrl_weight_of(l, f[i + 3].index) * (double)f[i + 3].value;
    }
    for (; i < n; i++)
        s0 += ftrl_weight_of(l, f[i].index) * (double)f[i].value;
    return ftrl_weight_of(l, l->n_slots) + ((s0 + s1) + (s2 + s3));
}

/* FTRL-Proximal (McMahan et al. 2013, Algorithm 1; learner.h): predict with
 * the weights of every coordinate's (z, n), then update each (z, n).  A
 * repeated index takes one update per occurrence, each with the weight of
 * the state the previous one left (as VW does), like SGD's one gradient
 * step per occurrence. */
static double learn_ftrl(slr_learner *l, const slr_example *ex, double *loss)
{
    const slr_feature *f = ex->features;
    const uint32_t n = ex->n_features;
    const double alpha = l->cfg.ftrl_alpha;
    const uint64_t t = l->step + 1;
    if (l->stamps) {
        if (t - l->epoch >= UINT32_MAX) /* stamps would overflow: count afresh */
            slr_learner_rebase(l);
        decay_begin(l, f, n, t);
    }
    double p, g;
    if (n <= FAST_MAX_FEATURES) {
        /* the weights of the margin, kept for the update: a square root and a
         * division per feature less.  A weight is a function of its slot's
         * (z, n), so it is reused exactly when they have not changed since
         * -- which an earlier occurrence of a repeated index does */
        double w[FAST_MAX_FEATURES], z0[FAST_MAX_FEATURES], n0[FAST_MAX_FEATURES];
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        for (uint32_t i = 0; i < n; i++) {
            const slr_slot *s = &l->slots[f[i].index];
            z0[i] = s->z;
            n0[i] = s->n;
            w[i] = ftrl_weight_of(l, f[i].index);
        }
        uint32_t i = 0; /* ftrl_margin's order of sums */
        for (; i + 4 <= n; i += 4) {
            s0 += w[i] * (double)f[i].value;
            s1 += w[i + 1] * (double)f[i + 1].value;
            s2 += w[i + 2] * (double)f[i + 2].value;
            s3 += w[i + 3] * (double)f[i + 3].value;
        }
        for (; i < n; i++)
            s0 += w[i] * (double)f[i].value;
        p = predict_and_loss(ftrl_weight_of(l, l->n_slots) + ((s0 + s1) + (s2 + s3)), ex->label,
                             loss);
        g = ex->weight * (p - ex->label);
        for (i = 0; i < n; i++) {
            slr_slot *s = &l->slots[f[i].index];
            const double wi = s->z == z0[i] && s->n == n0[i] ? w[i] : ftrl_weight_of(l, f[i].index);
            slr_ftrl_update(&s->z, &s->n, wi, g * (double)f[i].value, alpha);
        }
    } else {
        p = predict_and_loss(ftrl_margin(l, f, n), ex->label, loss);
        g = ex->weight * (p - ex->label);
        for (uint32_t i = 0; i < n; i++) {
            slr_slot *s = &l->slots[f[i].index];
            slr_ftrl_update(&s->z, &s->n, ftrl_weight_of(l, f[i].index), g * (double)f[i].value,
                            alpha);
        }
    }
    if (!l->cfg.noconstant) {
        slr_slot *s = &l->slots[l->n_slots];
        slr_ftrl_update(&s->z, &s->n, ftrl_weight_of(l, l->n_slots), g, alpha);
    }
    if (l->stamps)
        decay_end(l, f, n, t);
    if (l->changed)
        note_changed(l, f, n);
    l->step = t;
    return p;
}

double slr_learner_learn(slr_learner *l, const slr_example *ex, double *loss)
{
    if (l->cfg.optimizer == SLR_OPTIMIZER_FTRL)
        return learn_ftrl(l, ex, loss);
    if (l->cfg.decay < 1.0 || l->cfg.eager || l->use_history || ex->n_features > FAST_MAX_FEATURES)
        return learn_general(l, ex, loss);
    return learn_fast(l, ex, loss);
}

void slr_learner_prefetch(const slr_learner *l, const slr_example *ex)
{
    const slr_slot *slots = l->slots;
    for (uint32_t i = 0; i < ex->n_features; i++)
        __builtin_prefetch(&slots[ex->features[i].index], 1, 3);
    if (l->stamps) /* a lazy penalty's stamps: another random access per coordinate */
        for (uint32_t i = 0; i < ex->n_features; i++)
            __builtin_prefetch(&l->stamps[ex->features[i].index], 1, 3);
    /* with change tracking, each coordinate's bit is another random access
     * (2 MiB of bits at -b 24, beyond L2): fetch it with the slot */
    if (l->changed)
        for (uint32_t i = 0; i < ex->n_features; i++)
            __builtin_prefetch(&l->changed[ex->features[i].index >> 6], 1, 3);
}

double slr_learner_predict(slr_learner *l, const slr_example *ex)
{
    return slr_sigmoid(slr_learner_margin(l, ex));
}

double slr_learner_margin(slr_learner *l, const slr_example *ex)
{
    if (l->cfg.optimizer == SLR_OPTIMIZER_FTRL)
        return ftrl_margin(l, ex->features, ex->n_features);
    if (lazy_penalty(l))
        for (uint32_t i = 0; i < ex->n_features; i++)
            catch_up(l, ex->features[i].index, l->step);
    return margin_of(l->slots, &l->slots[l->n_slots], ex->features, ex->n_features);
}

double slr_learner_weight(const slr_learner *l, uint64_t index)
{
    if (index > l->n_slots)
        return 0.0;
    if (l->cfg.optimizer == SLR_OPTIMIZER_FTRL)
        return ftrl_weight_of(l, index);
    if (index == l->n_slots || !lazy_penalty(l))
        return l->slots[index].w;
    return caught_up(l, index, l->step);
}

int slr_learner_foreach_weight(slr_learner *l, slr_weight_visitor visit, void *ctx)
{
    slr_learner_sync(l);
    const bool ftrl = l->cfg.optimizer == SLR_OPTIMIZER_FTRL;
    for (uint64_t j = 0; j <= l->n_slots; j++) {
        double w = ftrl ? ftrl_weight_of(l, j) : l->slots[j].w;
        if (w != 0.0) {
            int rc = visit(ctx, j, w);
            if (rc)
                return rc;
        }
    }
    return 0;
}

void slr_learner_catch_up(slr_learner *l, const uint32_t *idx, size_t n)
{
    if (!lazy_penalty(l))
        return;
    for (size_t i = 0; i < n; i++)
        if (idx[i] < l->n_slots) /* the bias owes nothing */
            catch_up(l, idx[i], l->step);
}

static size_t changed_words(const slr_learner *l) { return (size_t)(l->n_slots / 64 + 1); }

slr_status slr_learner_track_changes(slr_learner *l, bool on, slr_error *err)
{
    if (!on) {
        free(l->changed);
        l->changed = NULL;
    } else if (!l->changed && !(l->changed = calloc(changed_words(l), sizeof *l->changed))) {
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for change tracking (%zu bytes)",
                             changed_words(l) * sizeof *l->changed);
    }
    slr_learner_mark(l);
    return SLR_OK;
}

void slr_learner_mark(slr_learner *l)
{
    if (l->changed)
        memset(l->changed, 0, changed_words(l) * sizeof *l->changed);
}

uint64_t slr_learner_changed_next(const slr_learner *l, uint64_t from)
{
    const uint64_t end = l->n_slots + 1;
    if (!l->changed)
        return end;
    for (uint64_t j = from; j < end;) {
        uint64_t word = l->changed[j >> 6] >> (j & 63);
        if (word)
            return j + (uint64_t)__builtin_ctzll(word) < end ? j + (uint64_t)__builtin_ctzll(word)
                                                               : end;
        j = (j | 63) + 1;
    }
    return end;
}

slr_status slr_learner_advance(slr_learner *l, uint64_t n, slr_error *err)
{
    if (l->cfg.eager || l->use_history)
        return slr_error_set(err, SLR_ERR_ARG,
                             "a learner with %s cannot skip steps (use adagrad or constant)",
                             l->cfg.eager ? "--eager" : "invpow and a penalty");
    if (n > (UINT64_C(1) << 62) - l->step)
        return slr_error_set(err, SLR_ERR_ARG, "the step counter cannot move %llu steps on from %llu",
                             (unsigned long long)n, (unsigned long long)l->step);
    l->step += n;
    /* stamps are 32 bits from the epoch: past that, pay every weight's
     * penalty up to now (one closed-form gap each) and count from here */
    if (l->step - l->epoch >= UINT32_MAX)
        slr_learner_rebase(l);
    return SLR_OK;
}

double slr_learner_penalized(const slr_learner *l, double w, double g2, uint64_t t0, uint64_t t1)
{
    const slr_slot s = {.w = w, .g2 = g2};
    return slr_penalty_catchup_const(&l->pen, w, slot_rate(l, &s, l->cfg.eta), t0, t1);
}
