/* What the subcommands share: the clock for progress lines and the model
 * options of the replicate commands (mlmx boot). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

double mlmx_cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void mlmx_cli_model_init(mlmx_cli_model *mo) { memset(mo, 0, sizeof *mo); }

int mlmx_cli_model_option(mlmx_cli_model *mo, const char *cmd, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char **t = NULL;
    if (strcmp(a, "--reml") == 0) {
        mo->reml = 1;
        return 1;
    }
    if (strcmp(a, "--ml") == 0) {
        mo->ml = 1;
        return 1;
    }
    static const char *const names[] = {"--data",  "--formula", "--group",   "--family",
                                        "--link",  "--nagq",    "--weights", "--optimizer"};
    const char **slots[] = {&mo->data, &mo->formula, &mo->group,   &mo->family,
                            &mo->link, &mo->nagq,    &mo->weights, &mo->optimizer};
    for (int k = 0; k < 8; k++)
        if (strcmp(a, names[k]) == 0)
            t = slots[k];
    if (!t)
        return 0;
    if (*i + 1 >= argc || *t) {
        fprintf(stderr, "mlmx %s: option '%s' %s\n", cmd, a, *t ? "is given twice" : "needs a value");
        return 2;
    }
    *t = argv[++*i];
    return 1;
}

static int pick(const char *cmd, const char *what, const char *v, const char *const *opts, int n)
{
    for (int k = 0; k < n; k++)
        if (strcmp(v, opts[k]) == 0)
            return k;
    fprintf(stderr, "mlmx %s: unknown %s '%s'\n", cmd, what, v);
    return -1;
}

static int options(const mlmx_cli_model *mo, const char *cmd, mlmx_fit_options *o)
{
    mlmx_fit_options_default(o);
    if (mo->reml && mo->ml) {
        fprintf(stderr, "mlmx %s: --reml and --ml conflict: give one of them\n", cmd);
        return 2;
    }
    o->method = mo->ml ? MLMX_ML : MLMX_REML;
    static const char *const fams[] = {"gaussian", "binomial", "poisson", "negbin", "ordinal"};
    static const char *const links[] = {"logit", "probit", "cloglog", "log"};
    static const char *const opts[] = {"auto", "bobyqa", "bfgs"};
    int k;
    if (mo->family) {
        if ((k = pick(cmd, "family", mo->family, fams, 5)) < 0)
            return 2;
        o->family = (mlmx_family)k;
    }
    if (mo->link) {
        if ((k = pick(cmd, "link", mo->link, links, 4)) < 0)
            return 2;
        o->link = (mlmx_link)k;
    }
    if (mo->optimizer) {
        if ((k = pick(cmd, "optimizer", mo->optimizer, opts, 3)) < 0)
            return 2;
        o->optimizer = (mlmx_optimizer)k;
    }
    if (mo->nagq) {
        char *end;
        errno = 0;
        long v = strtol(mo->nagq, &end, 10);
        if (!*mo->nagq || *end || errno) {
            fprintf(stderr, "mlmx %s: --nagq '%s' is not a number\n", cmd, mo->nagq);
            return 2;
        }
        if (v < 0 || v > 100) {
            fprintf(stderr, "mlmx %s: --nagq %ld is out of range (0..100)\n", cmd, v);
            return 2;
        }
        o->nagq = (int)v;
    }
    if (!mo->data || !mo->formula) {
        fprintf(stderr, "mlmx %s: --data and --formula are required\n", cmd);
        return 2;
    }
    return 0;
}

int mlmx_cli_model_fit(mlmx_cli_model *mo, const char *cmd, mlmx_fit **out)
{
    *out = NULL;
    mlmx_fit_options o;
    int rc = options(mo, cmd, &o);
    if (rc)
        return rc;
    size_t n = strlen(mo->data);
    int h5 = (n > 3 && strcmp(mo->data + n - 3, ".h5") == 0) ||
             (n > 5 && strcmp(mo->data + n - 5, ".hdf5") == 0);
    mlmx_status st = h5 ? mlmx_data_read_hdf5(mo->data, mo->group, &mo->d)
                        : mlmx_data_read_csv(mo->data, &mo->d);
    if (!st && mo->weights) {
        int found = 0;
        for (int j = 0; j < mlmx_data_ncol(mo->d) && !found; j++)
            found = strcmp(mlmx_data_column_name(mo->d, j), mo->weights) == 0;
        if (!found) {
            fprintf(stderr, "mlmx: error: --weights: no column '%s' in %s\n", mo->weights, mo->data);
            return 1;
        }
    }
    if (!st)
        st = mlmx_model_create_weighted(mo->d, mo->formula, mo->weights, &mo->m);
    if (!st)
        st = o.family == MLMX_FAMILY_GAUSSIAN ? mlmx_fit_lmm(mo->m, &o, out)
                                              : mlmx_fit_glmm(mo->m, &o, out);
    if (st) {
        fprintf(stderr, "mlmx: error: %s\n", mlmx_last_error());
        return 1;
    }
    return 0;
}

void mlmx_cli_model_free(mlmx_cli_model *mo, mlmx_fit *f)
{
    mlmx_fit_free(f);
    mlmx_model_free(mo->m);
    mlmx_data_free(mo->d);
    mo->m = NULL;
    mo->d = NULL;
}
