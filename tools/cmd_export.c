/* cmd_export.c - `streamlr export MODEL`: every nonzero weight, one per line,
 * "<index> <weight>", sorted by index, %.17g so the text round-trips to the
 * same double.  The bias is the last line, at index 2^bits.  Two models are
 * bit-identical exactly when their exports are equal. */
#include <stdio.h>
#include <string.h>

#include "cli_options.h"
#include "commands.h"
#include "streamlr/checkpoint.h"

static int print_weight(void *ctx, uint64_t index, double w)
{
    return fprintf(ctx, "%llu %.17g\n", (unsigned long long)index, w) < 0;
}

int slr_cmd_export(int argc, char **argv)
{
    static const struct option longopts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h') {
            printf("usage: streamlr export MODEL\n\n"
                   "Print every nonzero weight as \"<index> <weight>\" (%%.17g), sorted by index;\n"
                   "the bias comes last, at index 2^bits.  Owed lazy penalties are settled\n"
                   "first, so this is the model as the next prediction would use it.\n");
            return 0;
        }
        fprintf(stderr, "usage: streamlr export MODEL\n");
        return 2;
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: streamlr export MODEL\n");
        return 2;
    }
    slr_learner *l;
    slr_job_state st;
    slr_error err;
    slr_job_state_init(&st);
    if (slr_checkpoint_read(argv[optind], &l, &st, &err) != SLR_OK) {
        fprintf(stderr, "streamlr export: %s\n", err.msg);
        return 1;
    }
    static char buf[1 << 20];
    setvbuf(stdout, buf, _IOFBF, sizeof buf);
    int failed = slr_learner_foreach_weight(l, print_weight, stdout);
    if (fflush(stdout) != 0)
        failed = 1;
    slr_learner_destroy(l);
    slr_job_state_free(&st);
    if (failed) {
        fprintf(stderr, "streamlr export: writing to stdout failed\n");
        return 1;
    }
    return 0;
}
