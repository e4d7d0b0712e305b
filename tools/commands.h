/* commands.h - the streamlr subcommands.  Each takes the arguments after its
 * name (argv[0] is the subcommand name), prints its own --help, and returns
 * the process exit code: 0 success, 1 failure of the job, 2 usage error. */
#ifndef STREAMLR_TOOLS_COMMANDS_H
#define STREAMLR_TOOLS_COMMANDS_H

int slr_cmd_train(int argc, char **argv);
int slr_cmd_predict(int argc, char **argv);
int slr_cmd_inspect(int argc, char **argv);
int slr_cmd_export(int argc, char **argv);
int slr_cmd_convert(int argc, char **argv);
int slr_cmd_broker(int argc, char **argv);
int slr_cmd_produce(int argc, char **argv);
int slr_cmd_plot(int argc, char **argv);
int slr_cmd_synth(int argc, char **argv);

#endif
