/* learner.h - per-example logistic regression over hashed features: SGD
 * (below) or FTRL-Proximal (SLR_OPTIMIZER_FTRL, McMahan et al. 2013).
 *
 * For example x with label y in {0,1} and importance weight h, at step t:
 *   p = sigma(w . x),  g = h (p - y)                (gradient of the log loss)
 *   w_j <- w_j - eta_{t,j} g x_j                     for every j with x_j != 0
 *   then, for every j except the bias (touched or not):
 *   w_j <- (1 - eta_{t,j} l2) w_j                    (L2 decay)
 *   w_j <- T1(w_j, K eta_{t,j} l1, theta)            every K-th step (truncated gradient L1)
 * The penalty is applied lazily: an untouched weight catches up in closed form
 * when next touched, giving the same w as the eager loop above (which
 * `eager` runs literally, for verification).  docs/LEARNING.md derives it.
 *
 * FTRL-Proximal keeps per coordinate z and n (the sum of g^2) and computes
 * the weight from them, so L1 and L2 need no catch-up:
 *   w_j = 0                                           if |z_j| <= l1
 *         -(z_j - sgn(z_j) l1) / ((beta + sqrt(n_j)) / alpha + l2)   otherwise
 *   then, with g_j = g x_j:  sigma = (sqrt(n_j + g_j^2) - sqrt(n_j)) / alpha,
 *   z_j += g_j - sigma w_j,  n_j += g_j^2.
 * The bias has l1 = l2 = 0. */
#ifndef STREAMLR_LEARNER_H
#define STREAMLR_LEARNER_H

#include "streamlr/export.h"
#include <stdbool.h>
#include <stdint.h>

#include "streamlr/error.h"
#include "streamlr/example.h"

SLR_BEGIN_DECLS

/* Every weight stays within |w| <= SLR_MAX_ABS_WEIGHT: a gradient step that
 * would go further stops there.  With feature values bounded by
 * SLR_MAX_ABS_VALUE (their -q products by its square) and at most 2^32
 * features, this keeps every margin, prediction and loss finite whatever the
 * learning rate; a model that reaches it has diverged anyway.  A checkpoint
 * holding a larger weight is corrupt. */
#define SLR_MAX_ABS_WEIGHT 1e200

typedef enum slr_schedule {
    SLR_SCHEDULE_CONSTANT = 0, /* eta_t = eta */
    SLR_SCHEDULE_INVPOW = 1,   /* eta_t = eta (t0 / (t0 + t))^p, t = examples seen before */
    SLR_SCHEDULE_ADAGRAD = 2,  /* eta_{t,j} = eta / sqrt(delta + sum of g_j^2) */
} slr_schedule;

const char *slr_schedule_name(slr_schedule s);
slr_status slr_schedule_parse(const char *name, slr_schedule *out, slr_error *err);

typedef enum slr_optimizer {
    SLR_OPTIMIZER_SGD = 0,  /* the schedules and truncated-gradient L1 above */
    SLR_OPTIMIZER_FTRL = 1, /* FTRL-Proximal: ftrl_alpha, ftrl_beta, l1, l2 */
} slr_optimizer;

const char *slr_optimizer_name(slr_optimizer o);
slr_status slr_optimizer_parse(const char *name, slr_optimizer *out, slr_error *err);

/* FTRL-Proximal's defaults, VW's (--ftrl_alpha, --ftrl_beta) since VW 9.9.0
 * (its PR #4607, 2023; 0.005 and 0.1 before), so that --ftrl learns what
 * VW 9.11's --ftrl learns (docs/VW.md) */
#define SLR_FTRL_ALPHA_DEFAULT 0.5
#define SLR_FTRL_BETA_DEFAULT 1.0

typedef struct slr_learner_config {
    slr_hashing hashing;  /* bits (table size) and -q pairs */
    slr_schedule schedule;
    double eta;           /* eta_0, -l */
    double power_t;       /* p for invpow */
    double initial_t;     /* t0 for invpow */
    double adagrad_delta; /* delta for adagrad */
    double l1;            /* truncated-gradient gravity lambda_1 */
    double l2;            /* L2 decay lambda_2 */
    uint32_t tg_period;   /* K: truncate every K steps */
    double tg_threshold;  /* theta: truncate only |w| <= theta; INFINITY = soft threshold */
    bool eager;           /* dense reference update (slow; for verification) */
    bool noconstant;      /* VW's --noconstant: no bias term (it stays 0) */
    slr_optimizer optimizer;
    double ftrl_alpha;    /* FTRL's alpha (its learning rate) */
    double ftrl_beta;     /* FTRL's beta (>= 0: damps a coordinate's first steps) */
    /* D in (0, 1]: at the end of every step every coordinate's accumulators
     * (AdaGrad's Sum g^2; FTRL's z and n) are multiplied by D, so evidence
     * older than ~1/(1 - D) examples fades and rates stop going to zero
     * (drift).  1: none.  Applied lazily, D^k when a coordinate is next
     * read.  SGD: AdaGrad only, without --l1/--l2. */
    double decay;
} slr_learner_config;

void slr_learner_config_defaults(slr_learner_config *cfg);
slr_status slr_learner_config_validate(const slr_learner_config *cfg, slr_error *err);

typedef struct slr_learner slr_learner;

slr_status slr_learner_create(slr_learner **out, const slr_learner_config *cfg, slr_error *err);
void slr_learner_destroy(slr_learner *l);

const slr_learner_config *slr_learner_config_of(const slr_learner *l);

/* Change rates or penalties of a trained learner (e.g. -i model -l 0.1).  The
 * penalty owed so far is settled under the old settings first; the new ones
 * apply from the next step.  Hashing, schedule and eager cannot change. */
slr_status slr_learner_reconfigure(slr_learner *l, const slr_learner_config *cfg, slr_error *err);

/* Learn from one labelled example; returns the prediction P(y=1|x) made
 * before the update (progressive validation) and, if loss is non-NULL, the
 * example's log loss under that prediction. */
double slr_learner_learn(slr_learner *l, const slr_example *ex, double *loss);

/* Start fetching the weights ex touches into the cache.  A caller that has
 * the next example in hand calls this before learning the current one, so
 * the memory latency of the next example's ~40 random slots overlaps useful
 * work.  Changes nothing. */
void slr_learner_prefetch(const slr_learner *l, const slr_example *ex);

/* Score without learning.  Weights are brought up to date as they are read,
 * which changes no value the learner would compute later. */
double slr_learner_predict(slr_learner *l, const slr_example *ex);
/* The margin theta . x behind slr_learner_predict (for a loss without
 * round-tripping through the probability). */
double slr_learner_margin(slr_learner *l, const slr_example *ex);

/* Number of examples learned (the step counter t). */
uint64_t slr_learner_steps(const slr_learner *l);

/* Bring every weight up to the current step.  Needed only before reading all
 * weights (export, inspect); training does not call it. */
void slr_learner_sync(slr_learner *l);

/* Number of weight slots (2^bits) plus one for the bias; the bias is at
 * index slr_learner_bias_index() == 2^bits. */
uint64_t slr_learner_bias_index(const slr_learner *l);

/* Current value of weight `index` (0 .. 2^bits, the last being the bias).
 * Call slr_learner_sync() first when reading many. */
double slr_learner_weight(const slr_learner *l, uint64_t index);

/* Visit every nonzero weight in index order, bias last; stops early if the
 * visitor returns non-zero (and returns that value).  Syncs first. */
typedef int (*slr_weight_visitor)(void *ctx, uint64_t index, double weight);
int slr_learner_foreach_weight(slr_learner *l, slr_weight_visitor visit, void *ctx);

/* Numerically stable pieces, exposed for tests and tools. */
double slr_sigmoid(double z);
/* log loss of predicting margin z for label y in {0,1}: log(1 + e^{-z}) or log(1 + e^{z}) */
double slr_logloss_margin(double z, double y);

SLR_END_DECLS
#endif
