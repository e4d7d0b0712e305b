/* learner_impl.h - the learner's state, private to engine/learner (its
 * (de)serialisation is learner_io.c; everyone else uses
 * include/streamlr/learner.h and learner_io.h). */
#ifndef STREAMLR_LEARNER_IMPL_H
#define STREAMLR_LEARNER_IMPL_H

#include "streamlr/learner.h"
#include "penalty.h"
#include "update.h"

/* One weight and its accumulator, 16 bytes so that four share a cache line
 * and one lookup brings what an update without a penalty needs.  Sum g^2 is
 * a double: a float32 sum of 10^7 increments of ~0.1 is already 1% low
 * (docs/LEARNING.md, "What is stored per weight"). */
typedef struct slr_slot {
    union {
        double w; /* SGD: w_j as of step epoch + its stamp */
        double z; /* FTRL: z_j (the weight is computed from z and n) */
    };
    union {
        double g2; /* SGD: AdaGrad's sum of squared gradients */
        double n;  /* FTRL: n_j, the same sum */
    };
} slr_slot;

#define SLR_DECAY_TABLE 256

/* rate[i] = eta / sqrt(delta + g2[i]) for i < n */
typedef void slr_rates_fn(const double *g2, double *rate, uint32_t n, double eta, double delta);

struct slr_learner {
    slr_learner_config cfg;
    slr_penalty pen;
    slr_slot *slots;  /* n_slots hashed weights, then the bias */
    size_t slots_mapped; /* bytes mmap'ed for slots, 0 if calloc'ed */
    /* per slot (the bias included), the last step whose penalty its w
     * includes -- or, with --decay, whose decay its accumulators include --
     * relative to epoch: only a lazy penalty or decay needs it, so it is
     * allocated only then (NULL otherwise; 4 bytes a slot, 64 MiB at -b 24) */
    uint32_t *stamps;
    size_t stamps_mapped;
    uint64_t n_slots; /* 2^bits */
    uint32_t mask;
    uint64_t step;  /* t: examples learned so far */
    uint64_t epoch; /* stamps count from here; moved forward by a full sync */
    bool use_history; /* global varying rate with a penalty: catch up via hist */
    slr_rates_fn *rates; /* AdaGrad's rates of an example, in the widest vectors the CPU has */
    slr_catchup_many_fn *catchup; /* soft catch-up of an example, likewise */
    slr_step_fn *step_soft;       /* gradient step + soft penalty of an example, likewise */
    slr_penalty_history hist;
    uint64_t *changed; /* with change tracking: a bit per coordinate (learner_io.h), else NULL */
    /* --decay: D^k for k < 2^16 as decay_pow[k & 255] * decay_pow_hi[k >> 8]
     * (D^(256 m)), each entry pow()'s: one product instead of a pow() per
     * touched coordinate (within an ulp or two of pow(D, k); the eager loop's
     * k multiplications round differently anyway) */
    double decay_pow[SLR_DECAY_TABLE], decay_pow_hi[SLR_DECAY_TABLE];
};

/* Rebase every stamp onto the current step (catching every weight up); runs
 * when stamps would overflow or the history fills.  Deterministic in t, so an
 * interrupted and an uninterrupted run do it at the same steps. */
void slr_learner_rebase(slr_learner *l);

size_t slr_learner_history_capacity(uint64_t n_slots);

/* Have the kernel map (and zero) the whole weight table now.  A fresh table
 * is zeroed page by page as examples first touch it, which on a virtual
 * machine can cost the learning thread a second for 2^24 slots; a training
 * job calls this from a helper thread so another core pays instead.  No
 * user-space access, so it may run concurrently with learning. */
void slr_learner_prefault(slr_learner *l);

#endif
