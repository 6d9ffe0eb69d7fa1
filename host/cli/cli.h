/* Shared pieces of the mlmx command's subcommands. */
#ifndef MLMX_CLI_H
#define MLMX_CLI_H
#include <stdint.h>

#include "mlmx.h"

/* Monotonic seconds, for progress lines. */
double mlmx_cli_now(void);

/* A progress line on standard error for runs over many items: at most five
 * times a second, "\rmlmx CMD: done/total NOUN, rate/s, seconds left", when
 * `on` (a terminal and not --quiet). mlmx_cli_progress_show has the
 * signature of the library's progress callbacks (ctx: the struct). */
typedef struct mlmx_cli_progress {
    const char *cmd, *noun;
    double start, last;
    int on, shown;
} mlmx_cli_progress;

void mlmx_cli_progress_init(mlmx_cli_progress *p, const char *cmd, const char *noun, int on);
void mlmx_cli_progress_show(void *ctx, uint64_t done, uint64_t total);
/* Erase the line if one was shown. */
void mlmx_cli_progress_end(mlmx_cli_progress *p);

/* The options that name a model and how to fit it (as mlmx fit takes them). */
typedef struct mlmx_cli_model {
    const char *data, *formula, *group, *family, *link, *nagq, *weights, *optimizer;
    const char *correlation, *variance; /* residual structures (LMMs) */
    const char *model_file; /* --model FILE.h5: formula, family and estimates saved by
                               mlmx fit --save; the data its recorded file unless --data */
    int reml, ml;
    mlmx_data *d;
    mlmx_model *m;
    mlmx_model_file *mf;
} mlmx_cli_model;

void mlmx_cli_model_init(mlmx_cli_model *mo);
/* Consume argv[*i] (and its value) when it is a model option: 1 consumed,
 * 0 not a model option, 2 usage error (printed, naming cmd). */
int mlmx_cli_model_option(mlmx_cli_model *mo, const char *cmd, int argc, char **argv, int *i);
/* Take argv[*i]'s value into *target: 0, or 2 (missing, or given twice). */
int mlmx_cli_take_value(const char *cmd, int argc, char **argv, int *i, const char **target);
/* A whole number in lo..hi: 0, or 2 naming what is wrong. */
int mlmx_cli_int_option(const char *cmd, const char *opt, const char *val, long lo, long hi,
                        const char *what, int *out);
/* The fit options from the model options, checked: 0 or 2 (printed). */
int mlmx_cli_model_options(const mlmx_cli_model *mo, const char *cmd, mlmx_fit_options *o);
/* Read the data and build the model (notes on stderr unless quiet): 0 or 1.
 * With --model: read the model file, take its data file unless --data was
 * given, check the data's SHA-256 against the recorded one, and build the
 * saved formula (mo->data and mo->formula then point at them). */
int mlmx_cli_model_build(mlmx_cli_model *mo, int quiet);
/* Fit the built model: 0 or 1 (error printed); with --model, the fit at the
 * saved estimates (mlmx_model_file_fit). */
int mlmx_cli_model_fit(mlmx_cli_model *mo, const mlmx_fit_options *o, mlmx_fit **out);
void mlmx_cli_model_free(mlmx_cli_model *mo, mlmx_fit *f);
/* --device's value (cpu, gpu, auto): 0, or 2 (printed, naming cmd). */
int mlmx_cli_device_option(const char *cmd, const char *val, mlmx_device *out);
/* Print the library's last error: returns 1. */
int mlmx_cli_fail(void);

int mlmx_cmd_boot(int argc, char **argv);
int mlmx_cmd_merge(int argc, char **argv);
int mlmx_cmd_simulate(int argc, char **argv);
int mlmx_cmd_predict(int argc, char **argv);
int mlmx_cmd_anova(int argc, char **argv);  /* anova_cmd.c */
int mlmx_cmd_ranova(int argc, char **argv);
#endif
