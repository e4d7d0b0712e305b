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

void cli_catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void cli_log(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "streamlr: %s\n", msg);
}

const char cli_learner_help[] =
    "Learning (names follow Vowpal Wabbit where the meaning is the same):\n"
    "  -b, --bits BITS          hash features into 2^BITS weights (1..32, default 24)\n"
    "  -q, --quadratic AB       add interactions of namespaces starting with A and B\n"
    "                           (repeatable; -q aa takes each pair within a once)\n"
    "  -l, --learning-rate ETA  base learning rate eta_0 (default 0.1)\n"
    "      --schedule S         constant | invpow | adagrad (default adagrad)\n"
    "                           invpow: eta_t = eta_0 (t0/(t0+t-1))^p; adagrad: per weight\n"
    "                           eta_0 / sqrt(delta + sum of squared gradients)\n"
    "      --power-t P          p for invpow (default 0.5)\n"
    "      --initial-t T0       t0 for invpow (default 1)\n"
    "      --adagrad-delta D    delta for adagrad (default 1)\n"
    "      --l1 L1              truncated-gradient L1 gravity lambda_1 (default 0)\n"
    "      --l2 L2              L2 decay lambda_2 (default 0)\n"
    "      --tg-period K        apply the L1 truncation every K steps (default 1)\n"
    "      --tg-threshold T     truncate only weights with |w| <= T (default inf:\n"
    "                           plain soft thresholding)\n"
    "      --eager              apply the penalty to every weight at every step (the\n"
    "                           slow reference the lazy update must equal; use small -b)\n"
    "  VW's spellings --bit_precision, --learning_rate, --power_t, --initial_t,\n"
    "  --final_regressor, --initial_regressor and --testonly work too.\n";

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
    }
    return 0;
}
