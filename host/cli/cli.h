/* Shared pieces of the mlmx command's subcommands. */
#ifndef MLMX_CLI_H
#define MLMX_CLI_H
#include "mlmx.h"

/* Monotonic seconds, for progress lines. */
double mlmx_cli_now(void);

/* The options that name a model and how to fit it (as mlmx fit takes them). */
typedef struct mlmx_cli_model {
    const char *data, *formula, *group, *family, *link, *nagq, *weights, *optimizer;
    int reml, ml;
    mlmx_data *d;
    mlmx_model *m;
} mlmx_cli_model;

void mlmx_cli_model_init(mlmx_cli_model *mo);
/* Consume argv[*i] (and its value) when it is a model option: 1 consumed,
 * 0 not a model option, 2 usage error (printed, naming cmd). */
int mlmx_cli_model_option(mlmx_cli_model *mo, const char *cmd, int argc, char **argv, int *i);
/* Read the data, build the model and fit it: 0, 1 (error printed) or 2
 * (usage error printed). */
int mlmx_cli_model_fit(mlmx_cli_model *mo, const char *cmd, mlmx_fit **out);
void mlmx_cli_model_free(mlmx_cli_model *mo, mlmx_fit *f);

int mlmx_cmd_boot(int argc, char **argv);
int mlmx_cmd_merge(int argc, char **argv);
#endif
