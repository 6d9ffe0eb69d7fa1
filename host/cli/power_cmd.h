/* mlmx power (host/cli/power_cmd.c). */
#ifndef MLMX_CLI_POWER_CMD_H
#define MLMX_CLI_POWER_CMD_H

/* Run `mlmx power` with the arguments after the command name; returns the
 * exit status (0, 1 for failures, 2 for usage errors). */
int mlmx_cmd_power(int argc, char **argv);

#endif
