/* progress.h - what `streamlr train` shows while it runs: the status line
 * on a terminal, VW's table otherwise, and the summary at the end.  The
 * library reports numbers (slr_progress_fn, train.h); this draws them. */
#ifndef STREAMLR_TOOLS_PROGRESS_H
#define STREAMLR_TOOLS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "streamlr/train.h"

typedef struct progress_drawer {
    FILE *out;
    bool line_shown;        /* a status line is on the terminal */
    double line_time;       /* when it was drawn, for the recent rate */
    uint64_t line_examples; /* examples this run at that time */
} progress_drawer;

void progress_init(progress_drawer *d, FILE *out);

/* slr_train_options.progress, with the drawer as its context. */
void progress_draw(void *ctx, const slr_progress *p);

/* slr_train_options.log, with the drawer as its context: the message goes
 * where the status line was (the line is redrawn at the next tick). */
void progress_log(void *ctx, const char *msg);

#endif
