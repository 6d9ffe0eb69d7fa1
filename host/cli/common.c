/* What the subcommands share: the clock for progress lines, and the
 * options that name a model and how to fit it (mlmx fit and mlmx boot
 * take them alike, with the same messages). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
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

void mlmx_cli_progress_init(mlmx_cli_progress *p, const char *cmd, const char *noun, int on)
{
    p->cmd = cmd;
    p->noun = noun;
    p->start = mlmx_cli_now();
    p->last = 0.0;
    p->on = on;
    p->shown = 0;
}

void mlmx_cli_progress_show(void *ctx, uint64_t done, uint64_t total)
{
    mlmx_cli_progress *p = ctx;
    double t = mlmx_cli_now();
    if (!p->on || (t - p->last < 0.2 && done < total))
        return;
    p->last = t;
    p->shown = 1;
    double el = t - p->start, rate = el > 0 ? (double)done / el : 0.0;
    double left = rate > 0 ? (double)(total - done) / rate : 0.0;
    fprintf(stderr, "\rmlmx %s: %llu/%llu %s, %.0f/s, %.0f s left   ", p->cmd,
            (unsigned long long)done, (unsigned long long)total, p->noun, rate, left);
    fflush(stderr);
}

void mlmx_cli_progress_end(mlmx_cli_progress *p)
{
    if (p->shown)
        fputs("\r\033[K", stderr);
}

void mlmx_cli_model_init(mlmx_cli_model *mo) { memset(mo, 0, sizeof *mo); }

int mlmx_cli_model_option(mlmx_cli_model *mo, const char *cmd, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (strcmp(a, "--reml") == 0) {
        mo->reml = 1;
        return 1;
    }
    if (strcmp(a, "--ml") == 0) {
        mo->ml = 1;
        return 1;
    }
    static const char *const names[] = {"--data",  "--formula", "--group",   "--family",
                                        "--link",  "--nagq",    "--weights", "--optimizer",
                                        "--model", "--correlation", "--variance"};
    const char **slots[] = {&mo->data, &mo->formula, &mo->group,   &mo->family,
                            &mo->link, &mo->nagq,    &mo->weights, &mo->optimizer,
                            &mo->model_file, &mo->correlation, &mo->variance};
    const char **t = NULL;
    for (int k = 0; k < 11; k++)
        if (strcmp(a, names[k]) == 0)
            t = slots[k];
    if (!t)
        return 0;
    return mlmx_cli_take_value(cmd, argc, argv, i, t) ? 2 : 1;
}

int mlmx_cli_take_value(const char *cmd, int argc, char **argv, int *i, const char **target)
{
    const char *a = argv[*i];
    if (*i + 1 >= argc) {
        fprintf(stderr, "mlmx %s: option '%s' needs a value\n", cmd, a);
        return 2;
    }
    if (*target) {
        fprintf(stderr, "mlmx %s: option '%s' is given twice ('%s' and '%s')\n", cmd, a, *target,
                argv[*i + 1]);
        return 2;
    }
    *target = argv[++*i];
    return 0;
}

/* A whole number option value in lo..hi; a usage error (2) names what is
 * wrong: not a number (also trailing junk), or out of range. */
int mlmx_cli_int_option(const char *cmd, const char *opt, const char *val, long lo, long hi,
                        const char *what, int *out)
{
    const char *q = val;
    if (*q == '+' || *q == '-')
        q++;
    int digits = *q != '\0';
    for (const char *c = q; *c; c++)
        digits = digits && *c >= '0' && *c <= '9';
    if (!digits) {
        char *end = NULL;
        double v = strtod(val, &end);
        int number = end != val && *end == '\0';
        fprintf(stderr, "mlmx %s: %s '%s' is not %s: %s\n", cmd, opt, val,
                number && isfinite(v) && v != floor(v) ? "a whole number" : "a number", what);
        return 2;
    }
    char *end = NULL;
    long k = strtol(val, &end, 10); /* saturates at LONG_MIN/MAX: out of range */
    if (k < lo || k > hi) {
        fprintf(stderr, "mlmx %s: %s '%s' is out of range: %s\n", cmd, opt, val, what);
        return 2;
    }
    *out = (int)k;
    return 0;
}

static int pick(const char *cmd, const char *what, const char *v, const char *const *names,
                int n, const char *list)
{
    for (int k = 0; k < n; k++)
        if (strcmp(v, names[k]) == 0)
            return k;
    fprintf(stderr, "mlmx %s: unknown %s '%s' (%s)\n", cmd, what, v, list);
    return -1;
}

int mlmx_cli_model_options(const mlmx_cli_model *mo, const char *cmd, mlmx_fit_options *o)
{
    static const char *const fams[] = {"gaussian", "binomial", "poisson", "negbin", "ordinal"};
    static const char *const links[] = {"logit", "probit", "cloglog", "log"};
    static const char *const opts[] = {"auto", "bobyqa", "bfgs"};
    int k;
    mlmx_fit_options_default(o);
    if (mo->model_file && (mo->correlation || mo->variance)) {
        fprintf(stderr, "mlmx %s: --model: saved models with --correlation or --variance are "
                        "not supported yet\n", cmd);
        return 2;
    }
    if (mo->model_file && (mo->formula || mo->family || mo->link || mo->nagq || mo->weights ||
                           mo->reml || mo->ml)) {
        fprintf(stderr, "mlmx %s: --model gives the formula, family and method; drop "
                        "--formula, --family, --link, --nagq, --weights, --reml and --ml\n",
                cmd);
        return 2;
    }
    if (mo->model_file)
        return 0;
    if (mo->optimizer) {
        if ((k = pick(cmd, "optimizer", mo->optimizer, opts, 3, "auto, bobyqa or bfgs")) < 0)
            return 2;
        o->optimizer = (mlmx_optimizer)k;
    }
    if (mo->family) {
        if ((k = pick(cmd, "family", mo->family, fams, 5,
                      "gaussian, binomial, poisson, negbin, ordinal")) < 0)
            return 2;
        o->family = (mlmx_family)k;
    }
    if (mo->link) {
        if ((k = pick(cmd, "link", mo->link, links, 4, "logit, probit, cloglog, log")) < 0)
            return 2;
        o->link = (mlmx_link)k;
    }
    if (mo->reml && mo->ml) {
        fprintf(stderr, "mlmx %s: --reml and --ml conflict: give one of them\n", cmd);
        return 2;
    }
    o->method = mo->ml ? MLMX_ML : MLMX_REML;
    if (mo->nagq && mlmx_cli_int_option(cmd, "--nagq", mo->nagq, 0, 100,
                                        "0, 1 (Laplace) or 2..100 quadrature points", &o->nagq))
        return 2;
    if ((mo->link || mo->nagq) && o->family == MLMX_FAMILY_GAUSSIAN) {
        fprintf(stderr, "mlmx %s: --link and --nagq need a --family other than gaussian\n", cmd);
        return 2;
    }
    if (mo->reml && o->family != MLMX_FAMILY_GAUSSIAN) {
        fprintf(stderr, "mlmx %s: --reml is for linear mixed models; a --family model is "
                        "fitted by maximum likelihood\n", cmd);
        return 2;
    }
    if (!mo->data || !mo->formula) {
        fprintf(stderr, "mlmx %s: --data and --formula are required (see mlmx %s --help)\n", cmd,
                cmd);
        return 2;
    }
    return 0;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

int mlmx_cli_fail(void)
{
    fprintf(stderr, "mlmx: error: %s\n", mlmx_last_error());
    return 1;
}

/* --model: the saved model, its data file (unless --data) checked by its
 * SHA-256, and its formula. 0 or 1. */
static int model_from_file(mlmx_cli_model *mo)
{
    if (mlmx_model_file_read(mo->model_file, &mo->mf) != MLMX_OK)
        return mlmx_cli_fail();
    if (!mo->data) {
        mo->data = mlmx_model_file_data(mo->mf);
        if (!mo->data[0]) {
            fprintf(stderr, "mlmx: error: model file '%s' records no data file: give --data\n",
                    mo->model_file);
            return 1;
        }
    }
    if (mlmx_model_file_check_data(mo->mf, mo->data) != MLMX_OK)
        return mlmx_cli_fail();
    mo->formula = mlmx_model_file_formula(mo->mf);
    return 0;
}

int mlmx_cli_model_build(mlmx_cli_model *mo, int quiet)
{
    if (mo->model_file && model_from_file(mo))
        return 1;
    mlmx_status st = has_suffix(mo->data, ".h5") || has_suffix(mo->data, ".hdf5")
                         ? mlmx_data_read_hdf5(mo->data, mo->group, &mo->d)
                         : mlmx_data_read_csv(mo->data, &mo->d);
    if (st)
        return mlmx_cli_fail();
    if (mo->weights) {
        int found = 0;
        for (int j = 0; j < mlmx_data_ncol(mo->d) && !found; j++)
            found = strcmp(mlmx_data_column_name(mo->d, j), mo->weights) == 0;
        if (!found) {
            fprintf(stderr, "mlmx: error: --weights: no column '%s' in %s\n", mo->weights,
                    mo->data);
            return 1;
        }
    }
    if (mlmx_model_create_weighted(mo->d, mo->formula, mo->weights, &mo->m) != MLMX_OK)
        return mlmx_cli_fail();
    if ((mo->correlation || mo->variance) &&
        mlmx_model_set_residual(mo->m, mo->d, mo->correlation, mo->variance) != MLMX_OK)
        return mlmx_cli_fail();
    if (!quiet)
        for (int i = 0; i < mlmx_model_nmessages(mo->m); i++)
            fprintf(stderr, "mlmx: note: %s\n", mlmx_model_message(mo->m, i));
    return 0;
}

int mlmx_cli_model_fit(mlmx_cli_model *mo, const mlmx_fit_options *o, mlmx_fit **out)
{
    mlmx_status st = mo->mf                               ? mlmx_model_file_fit(mo->m, mo->mf, o, out)
                     : o->family == MLMX_FAMILY_GAUSSIAN ? mlmx_fit_lmm(mo->m, o, out)
                                                         : mlmx_fit_glmm(mo->m, o, out);
    return st ? mlmx_cli_fail() : 0;
}

void mlmx_cli_model_free(mlmx_cli_model *mo, mlmx_fit *f)
{
    mlmx_fit_free(f);
    mlmx_model_free(mo->m);
    mlmx_data_free(mo->d);
    mlmx_model_file_free(mo->mf);
    mo->m = NULL;
    mo->d = NULL;
    mo->mf = NULL;
}

int mlmx_cli_device_option(const char *cmd, const char *val, mlmx_device *out)
{
    if (strcmp(val, "cpu") == 0)
        *out = MLMX_DEVICE_CPU;
    else if (strcmp(val, "gpu") == 0)
        *out = MLMX_DEVICE_GPU;
    else if (strcmp(val, "auto") == 0)
        *out = MLMX_DEVICE_AUTO;
    else {
        fprintf(stderr, "mlmx %s: --device '%s' must be cpu, gpu or auto\n", cmd, val);
        return 2;
    }
    return 0;
}
