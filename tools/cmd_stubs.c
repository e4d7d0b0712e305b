/* cmd_stubs.c - placeholders for the subcommands not written yet, so that
 * tools/streamlr links while `convert` is the only real one.  Delete this
 * file (and its line in Makefile.am) when the real ones land. */
#include <stdio.h>

#include "commands.h"

static int not_yet(const char *name)
{
    fprintf(stderr, "streamlr %s: not yet implemented\n", name);
    return 1;
}

int slr_cmd_train(int argc, char **argv) { return not_yet("train"); }
int slr_cmd_predict(int argc, char **argv) { return not_yet("predict"); }
int slr_cmd_inspect(int argc, char **argv) { return not_yet("inspect"); }
int slr_cmd_export(int argc, char **argv) { return not_yet("export"); }
