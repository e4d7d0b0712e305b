/* cli.c - see cli.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_options.h"

bool cli_double(const char *cmd, const char *flag, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno == ERANGE || isnan(v)) {
        fprintf(stderr, "streamlr %s: %s expects a number, got \"%s\"\n", cmd, flag, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_u64(const char *cmd, const char *flag, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno == ERANGE || s[0] == '-') {
        fprintf(stderr, "streamlr %s: %s expects a non-negative integer, got \"%s\"\n", cmd, flag, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_u32(const char *cmd, const char *flag, const char *s, uint32_t *out)
{
    uint64_t v;
    if (!cli_u64(cmd, flag, s, &v))
        return false;
    if (v > UINT32_MAX) {
        fprintf(stderr, "streamlr %s: %s value %s is too large\n", cmd, flag, s);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

slr_stop_flag cli_stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    cli_stop_requested = 1;
}

void cli_catch_signals(int a, int b, void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(a, &sa, NULL);
    sigaction(b, &sa, NULL);
}

void cli_catch_stop_signals(void) { cli_catch_signals(SIGINT, SIGTERM, on_stop_signal); }

void cli_log(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "streamlr: %s\n", msg);
}

const char cli_learner_help[] =
    "Learning (names follow Vowpal Wabbit where the meaning is the same):\n"
    "  -b, --bits BITS          hash features into 2^BITS weights (1..32, default 24)\n"
    "  -q, --quadratic AB       add interactions of namespaces starting with A and B\n"
    "                           (repeatable; -q aa takes each pair within a once;\n"
    "                           : is any namespace, -q :: every pair, as in VW)\n"
    "  -l, --learning-rate ETA  base learning rate eta_0 (default 0.1)\n"
    "      --schedule S         constant | invpow | adagrad (default adagrad)\n"
    "                           invpow: eta_t = eta_0 (t0/(t0+t-1))^p; adagrad: per weight\n"
    "                           eta_0 / sqrt(delta + sum of squared gradients)\n"
    "      --power-t P          p for invpow (default 0.5); under adagrad only 0.5\n"
    "                           (what adagrad does) is accepted\n"
    "      --initial-t T0       t0 for invpow (default 1; refused under adagrad)\n"
    "      --adagrad-delta D    delta for adagrad (default 1)\n"
    "      --l1 L1              truncated-gradient L1 gravity lambda_1 (default 0)\n"
    "      --l2 L2              L2 decay lambda_2 (default 0)\n"
    "      --tg-period K        apply the L1 truncation every K steps (default 1)\n"
    "      --tg-threshold T     truncate only weights with |w| <= T (default inf:\n"
    "                           plain soft thresholding)\n"
    "      --eager              apply the penalty to every weight at every step (the\n"
    "                           slow reference the lazy update must equal; use small -b)\n"
    "      --optimizer O        sgd (the schedules above, default) | ftrl: FTRL-Proximal\n"
    "                           (McMahan et al. 2013), per weight z and n, --l1 and\n"
    "                           --l2 as its lambda_1 and lambda_2 (exact L1: sparse\n"
    "                           models), the bias unregularised; -l, --schedule and\n"
    "                           the truncation flags do not apply\n"
    "      --ftrl-alpha A       FTRL's learning rate alpha (default 0.5, VW's)\n"
    "      --ftrl-beta B        FTRL's beta (default 1, VW's)\n"
    "      --decay D            forget: every step multiplies each weight's adagrad sum\n"
    "                           (FTRL: z and n) by D, so a long-running job keeps\n"
    "                           adapting; memory ~1/(1-D) examples (default 1: none;\n"
    "                           SGD: adagrad without --l1/--l2)\n"
    "  VW's spellings --bit_precision, --learning_rate, --power_t, --initial_t,\n"
    "  --ftrl (= --optimizer ftrl), --ftrl_alpha, --ftrl_beta, --final_regressor,\n"
    "  --initial_regressor and --testonly work too.\n";

int cli_learner_option(const char *cmd, int opt, const char *arg, slr_learner_config *cfg,
                       uint32_t *set)
{
    uint32_t u;
    slr_error err;
    switch (opt) {
    case 'b':
        if (!cli_u32(cmd, "-b", arg, &u))
            return -1;
        cfg->hashing.bits = u;
        *set |= SLR_SET_BITS;
        return 1;
    case 'q':
        if (slr_hashing_add_quadratic(&cfg->hashing, arg, &err) != SLR_OK) {
            fprintf(stderr, "streamlr %s: %s\n", cmd, err.msg);
            return -1;
        }
        *set |= SLR_SET_QUADRATIC;
        return 1;
    case 'l':
        *set |= SLR_SET_ETA;
        return cli_double(cmd, "-l", arg, &cfg->eta) ? 1 : -1;
    case OPT_SCHEDULE:
        if (slr_schedule_parse(arg, &cfg->schedule, &err) != SLR_OK) {
            fprintf(stderr, "streamlr %s: %s\n", cmd, err.msg);
            return -1;
        }
        *set |= SLR_SET_SCHEDULE;
        return 1;
    case OPT_POWER_T:
        *set |= SLR_SET_POWER_T;
        return cli_double(cmd, "--power-t", arg, &cfg->power_t) ? 1 : -1;
    case OPT_INITIAL_T:
        *set |= SLR_SET_INITIAL_T;
        return cli_double(cmd, "--initial-t", arg, &cfg->initial_t) ? 1 : -1;
    case OPT_ADAGRAD_DELTA:
        *set |= SLR_SET_ADAGRAD_DELTA;
        return cli_double(cmd, "--adagrad-delta", arg, &cfg->adagrad_delta) ? 1 : -1;
    case OPT_L1:
        *set |= SLR_SET_L1;
        return cli_double(cmd, "--l1", arg, &cfg->l1) ? 1 : -1;
    case OPT_L2:
        *set |= SLR_SET_L2;
        return cli_double(cmd, "--l2", arg, &cfg->l2) ? 1 : -1;
    case OPT_TG_PERIOD:
        *set |= SLR_SET_TG_PERIOD;
        return cli_u32(cmd, "--tg-period", arg, &cfg->tg_period) ? 1 : -1;
    case OPT_TG_THRESHOLD:
        *set |= SLR_SET_TG_THRESHOLD;
        return cli_double(cmd, "--tg-threshold", arg, &cfg->tg_threshold) ? 1 : -1;
    case OPT_EAGER:
        cfg->eager = true;
        *set |= SLR_SET_EAGER;
        return 1;
    case OPT_OPTIMIZER:
        if (slr_optimizer_parse(arg, &cfg->optimizer, &err) != SLR_OK) {
            fprintf(stderr, "streamlr %s: %s\n", cmd, err.msg);
            return -1;
        }
        *set |= SLR_SET_OPTIMIZER;
        return 1;
    case OPT_FTRL:
        cfg->optimizer = SLR_OPTIMIZER_FTRL;
        *set |= SLR_SET_OPTIMIZER;
        return 1;
    case OPT_FTRL_ALPHA:
        *set |= SLR_SET_FTRL_ALPHA;
        return cli_double(cmd, "--ftrl-alpha", arg, &cfg->ftrl_alpha) ? 1 : -1;
    case OPT_FTRL_BETA:
        *set |= SLR_SET_FTRL_BETA;
        return cli_double(cmd, "--ftrl-beta", arg, &cfg->ftrl_beta) ? 1 : -1;
    case OPT_DECAY:
        *set |= SLR_SET_DECAY;
        return cli_double(cmd, "--decay", arg, &cfg->decay) ? 1 : -1;
    }
    return 0;
}

int cli_vw_logistic_option(const char *cmd, int opt, const char *arg)
{
    if (opt != OPT_LOSS_FUNCTION && opt != OPT_LINK)
        return 0;
    if (!strcmp(arg, "logistic"))
        return 1;
    if (opt == OPT_LOSS_FUNCTION)
        fprintf(stderr, "streamlr %s: --loss_function %s is not supported: streamlr learns "
                        "logistic regression (--loss_function logistic) only\n", cmd, arg);
    else
        fprintf(stderr, "streamlr %s: --link %s is not supported: predictions are always "
                        "probabilities (VW's --link logistic)\n", cmd, arg);
    return -1;
}

void cli_see_help(const char *cmd)
{
    fprintf(stderr, "streamlr %s: see `streamlr %s --help`\n", cmd, cmd);
}

/* VW flags streamlr has no equivalent for, and what comes closest.  Without
 * this a pasted VW command line fails on "unknown option" and the user has
 * to guess whether anything here does the same job. */
static const struct vw_flag {
    const char *name, *closest;
} vw_unsupported[] = {
    {"adaptive", "--schedule adagrad (the default)"},
    {"normalized", "--schedule adagrad (not normalized; scale features yourself)"},
    {"invariant", "--schedule adagrad"},
    {"sgd", "--schedule constant or --schedule invpow"},
    {"decay_learning_rate", "--schedule invpow --power-t P --initial-t T0"},
    {"pistol", "--schedule adagrad"},
    {"coin", "--schedule adagrad"},
    {"bfgs", "--schedule adagrad (online only)"},
    {"conjugate_gradient", "--schedule adagrad (online only)"},
    {"hash", "none: every feature name is hashed (xxh3); pre-hashed ids come from LIBSVM or msgpack input"},
    {"oaa", "none: binary logistic regression only; train one model per class"},
    {"ect", "none: binary logistic regression only; train one model per class"},
    {"csoaa", "none: binary logistic regression only"},
    {"csoaa_ldf", "none: binary logistic regression only"},
    {"cb", "none: binary logistic regression only"},
    {"cb_explore", "none: binary logistic regression only"},
    {"cb_adf", "none: binary logistic regression only"},
    {"cb_explore_adf", "none: binary logistic regression only"},
    {"nn", "none: a linear model (use -q for pairwise interactions)"},
    {"lrq", "-q AB (explicit pairwise interactions)"},
    {"lrqfa", "-q AB (explicit pairwise interactions)"},
    {"ngram", "none: write the n-grams as features"},
    {"skips", "none: write the n-grams as features"},
    {"daemon", "streamlr predict --brokers ... --output-topic OUT (a Kafka scoring job)"},
    {"port", "streamlr predict --brokers ... --output-topic OUT (a Kafka scoring job)"},
    {"cache_file", "-c (accepted; not needed: passes re-read the input)"},
    {"raw_predictions", "-p (writes probabilities)"},
    {"binary", "-p (writes probabilities; threshold them at 0.5)"},
    {"min_prediction", "none: -p writes probabilities in (0,1)"},
    {"max_prediction", "none: -p writes probabilities in (0,1)"},
    {"holdout_after", "--holdout_period N"},
    {"early_terminate", "none: --passes N runs N passes"},
    {"constant", "none: the bias starts at 0"},
    {"initial_weight", "none: weights start at 0"},
    {"feature_mask", "none"},
    {"sort_features", "none"},
    {"compressed", "none: decompress into stdin (zcat FILE | streamlr train -d -)"},
    {"json", "--format msgpack (docs/FORMAT.md)"},
    {"dsjson", "--format msgpack (docs/FORMAT.md)"},
    {"total", "none: each Kafka group member trains its own model (docs/KAFKA.md)"},
    {"span_server", "none: each Kafka group member trains its own model (docs/KAFKA.md)"},
    {"node", "none: each Kafka group member trains its own model (docs/KAFKA.md)"},
    {"unique_id", "none: each Kafka group member trains its own model (docs/KAFKA.md)"},
    {"classweight", "importance weights in the data (VW's \"label weight\" header)"},
    {"permutations", "-q AB and -q BA"},
    {"leave_duplicate_interactions", "-q AB and -q BA"},
    {"redefine", "none"},
    {"output_feature_regularizer_binary", "-f FILE (a checkpoint holds the whole state)"},
    {"output_feature_regularizer_text", "streamlr export MODEL"},
    {"hessian_on", "none"},
    {"version", "streamlr --version"},
    {"hash_seed", "none: the hashing is fixed (xxh3 of the name seeded by its namespace)"},
    {"bootstrap", "none: one online model"},
    {"active", "none: every labelled example is learned"},
    {"lda", "none: a linear model"},
    {"rank", "-q AB (explicit pairwise interactions)"},
    {"new_mf", "-q AB (explicit pairwise interactions)"},
    {"boosting", "none: one linear model"},
    {"autolink", "-q AB or --cubic ABC for nonlinear terms"},
    {"stage_poly", "-q AB or --cubic ABC for nonlinear terms"},
    {"search", "none: binary logistic regression only"},
    {"log_multi", "none: binary logistic regression only; train one model per class"},
    {"multilabel_oaa", "none: binary logistic regression only; train one model per label"},
    {"named_labels", "none: labels are 1 (positive) and 0 or -1 (negative)"},
    {"quantile_tau", "none: --loss_function logistic only"},
    {"num_children", "streamlr predict --brokers ... --output-topic OUT (a Kafka scoring job)"},
    {"pid_file", "streamlr predict --brokers ... --output-topic OUT (a Kafka scoring job)"},
    {"l1_state", "none: the truncation is lazy and exact (docs/LEARNING.md)"},
    {"l2_state", "none: the L2 decay is lazy and exact (docs/LEARNING.md)"},
};

static const char *vw_closest(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof vw_unsupported / sizeof vw_unsupported[0]; i++)
        if (strlen(vw_unsupported[i].name) == len && !strncmp(vw_unsupported[i].name, name, len))
            return vw_unsupported[i].closest;
    return NULL;
}

/* One element of argv checked; returns how many elements it used (1 or 2),
 * or 0 after printing the error. */
static int check_one(const char *cmd, int argc, char **argv, int i, const char *shortopts,
                     const struct option *longopts)
{
    const char *a = argv[i];
    if (a[0] == '-' && a[1] == '-') {
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct option *o = longopts;
        while (o->name && !(strlen(o->name) == len && !strncmp(o->name, name, len)))
            o++;
        if (!o->name) {
            const char *closest = vw_closest(name, len);
            if (closest)
                fprintf(stderr, "streamlr %s: VW's --%.*s is not supported here; closest: %s\n",
                        cmd, (int)len, name, closest);
            else
                fprintf(stderr, "streamlr %s: unknown option --%.*s\n", cmd, (int)len, name);
            return 0;
        }
        if (o->has_arg == no_argument && eq) {
            fprintf(stderr, "streamlr %s: --%s takes no value\n", cmd, o->name);
            return 0;
        }
        if (o->has_arg == required_argument && !eq) {
            if (i + 1 >= argc) {
                fprintf(stderr, "streamlr %s: --%s needs a value\n", cmd, o->name);
                return 0;
            }
            return 2;
        }
        return 1;
    }
    /* a cluster of short options: -tq ab, -b24 */
    for (const char *p = a + 1; *p; p++) {
        const char *s = *p != ':' ? strchr(shortopts, *p) : NULL;
        if (!s) {
            fprintf(stderr, "streamlr %s: unknown option -%c\n", cmd, *p);
            return 0;
        }
        if (s[1] == ':') {
            if (p[1])
                return 1; /* the rest is the value */
            if (i + 1 >= argc) {
                fprintf(stderr, "streamlr %s: -%c needs a value\n", cmd, *p);
                return 0;
            }
            return 2;
        }
    }
    return 1;
}

static bool check_args(const char *cmd, int argc, char **argv, const char *shortopts,
                       const struct option *longopts)
{
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        if (!strcmp(a, "--"))
            break;
        if (a[0] != '-' || a[1] == '\0') { /* an operand, or - for stdin */
            i++;
            continue;
        }
        int used = check_one(cmd, argc, argv, i, shortopts, longopts);
        if (!used)
            return false;
        i += used;
    }
    return true;
}

int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts)
{
    const char *cmd = argv[0];
    if (optind <= 1 && !check_args(cmd, argc, argv, shortopts, longopts)) {
        cli_see_help(cmd);
        return '?';
    }
    opterr = 0; /* every error was found above, with a better message */
    int c = getopt_long(argc, argv, shortopts, longopts, NULL);
    if (c == '?' || c == ':') {
        fprintf(stderr, "streamlr %s: invalid option %s\n", cmd, argv[optind - 1]);
        cli_see_help(cmd);
        return '?';
    }
    return c;
}
