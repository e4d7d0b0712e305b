/* cli.h - small helpers shared by the subcommands: strict number parsing
 * (a typo in a flag must be an error, not a silent 0) and printing. */
#ifndef STREAMLR_TOOLS_CLI_H
#define STREAMLR_TOOLS_CLI_H

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>

#include "streamlr/learner.h"
#include "streamlr/train.h"

/* Parse the whole string or print "streamlr <cmd>: <flag> ..." and fail. */
bool cli_double(const char *cmd, const char *flag, const char *s, double *out);
bool cli_u64(const char *cmd, const char *flag, const char *s, uint64_t *out);
bool cli_u32(const char *cmd, const char *flag, const char *s, uint32_t *out);

/* getopt_long for the subcommands (argv[0] is the command's name).  On its
 * first call (optind == 1) it checks the whole command line: a long option
 * must be spelled in full (getopt_long would quietly expand --lea into
 * --learning-rate, and VW's --progress into --progress-style), a VW flag that
 * streamlr lacks gets one line naming the closest flag, and a missing value
 * is named.  Any such error is printed as one line plus "see `streamlr CMD
 * --help`" and '?' is returned, so the caller just exits with status 2. */
int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts);
/* "streamlr CMD: see `streamlr CMD --help`" on stderr. */
void cli_see_help(const char *cmd);

/* SIGINT and SIGTERM set cli_stop_requested (a signal handler can reach
 * nothing else); long-running commands check it between units of work. */
extern slr_stop_flag cli_stop_requested;
void cli_catch_stop_signals(void);
/* handler for signals a and b (sigaction, no SA_RESTART) */
void cli_catch_signals(int a, int b, void (*handler)(int));

/* stderr logger for slr_train_options.log: "streamlr: <msg>" */
void cli_log(void *ctx, const char *msg);

/* The learning flags shared by train (and documented once): returns 1 if
 * `opt` was one of them and was handled, 0 if not, -1 on a bad value. */
int cli_learner_option(const char *cmd, int opt, const char *arg, slr_learner_config *cfg,
                       uint32_t *set);
extern const char cli_learner_help[];

/* VW's --loss_function and --link (CLI_VW_LOGISTIC_LONG_OPTIONS): 1 if opt
 * was one of them with the value logistic, -1 (said) for any other value, 0
 * if opt is another option. */
int cli_vw_logistic_option(const char *cmd, int opt, const char *arg);

/* Write every nonzero weight of the model at `path` to out, as `streamlr
 * export` does (text, or json with the names it kept).  0 on success, -1 if
 * the model could not be read (said as "streamlr <cmd>: ..."), 1 if writing
 * failed. */
int cli_export_model(const char *cmd, const char *path, FILE *out, bool json);

#endif
