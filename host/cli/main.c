/* The mlmx command: a thin client of the public API in include/mlmx.h. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "mlmx.h"

static const char *usage_main =
    "usage: mlmx <command> [options]\n"
    "\n"
    "Fit multilevel (mixed-effects) models, with lme4's formula syntax and numbers.\n"
    "\n"
    "commands:\n"
    "  fit        fit a linear or generalized linear mixed model and print its summary\n"
    "  boot       parametric bootstrap: simulate, refit, intervals (mlmx boot --help)\n"
    "  merge      join the shard files of one bootstrap run (mlmx merge --help)\n"
    "\n"
    "options:\n"
    "  -h, --help     show this help (mlmx fit --help for the fit options)\n"
    "  -V, --version  show the version\n"
    "\n"
    "example:\n"
    "  mlmx fit --data data/sleepstudy.csv --formula 'Reaction ~ Days + (Days | Subject)'\n";

static const char *usage_fit =
    "usage: mlmx fit --data FILE --formula 'FORMULA' [options]\n"
    "\n"
    "Fit a linear mixed model by REML (default) or maximum likelihood, or with\n"
    "--family a generalized linear mixed model by the Laplace approximation or\n"
    "adaptive quadrature, and print the summary as lme4's summary() does.\n"
    "\n"
    "  --data FILE        CSV file (header row), or HDF5 file (.h5, .hdf5)\n"
    "  --group NAME       HDF5 group holding the table's columns (default /)\n"
    "  --formula F        lme4 formula, e.g. 'y ~ x + (1 + x | g)'\n"
    "  --reml             restricted maximum likelihood (default)\n"
    "  --ml               maximum likelihood\n"
    "  --json PATH        write the results as JSON\n"
    "  --ranef PATH       write conditional modes and SDs as CSV\n"
    "  --ranef-plot PATH  draw the conditional modes as a caterpillar plot (SVG)\n"
    "  --optimizer NAME   auto (default), bobyqa (lme4's) or bfgs (analytic gradient)\n"
    "  --family NAME      gaussian (default), binomial, poisson, negbin (NB2) or\n"
    "                     ordinal (cumulative link)\n"
    "  --link NAME        binomial, ordinal: logit (default), probit, cloglog;\n"
    "                     poisson, negbin: log\n"
    "  --nagq K           GLMM: 1 = Laplace (default), 0 = beta by PIRLS (glmer's\n"
    "                     nAGQ = 0; binomial, poisson), 2..100 = adaptive\n"
    "                     Gauss-Hermite points per level (one scalar term, scalar\n"
    "                     terms nested in each other, or one term with up to 3\n"
    "                     correlated effects)\n"
    "  --weights COLUMN   GLMM prior weights (binomial: the trials, with the\n"
    "                     response a proportion, as glmer's weights=)\n"
    "  --quiet            print neither the summary nor progress (warnings then go\n"
    "                     to standard error)\n"
    "  -h, --help         show this help\n"
    "\n"
    "Limits: a random-effect term has at most 16 columns (e.g. (1 + x1 + ... + x15 | g));\n"
    "the crossed (non-nested) part of the model at most 16,000 dense columns.\n"
    "\n"
    "Exit status: 0 on success, 1 when the data, formula or fit fail, 2 on usage errors.\n";

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

static int fail(void)
{
    fprintf(stderr, "mlmx: error: %s\n", mlmx_last_error());
    return 1;
}

/* A whole number option value in lo..hi; a usage error (2) names what is
 * wrong: not a number (also trailing junk), or out of range. */
static int int_option(const char *opt, const char *val, long lo, long hi, const char *what,
                      int *out)
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
        fprintf(stderr, "mlmx fit: %s '%s' is not %s: %s\n", opt, val,
                number && isfinite(v) && v != floor(v) ? "a whole number" : "a number", what);
        return 2;
    }
    char *end = NULL;
    long k = strtol(val, &end, 10); /* saturates at LONG_MIN/MAX: out of range */
    if (k < lo || k > hi) {
        fprintf(stderr, "mlmx fit: %s '%s' is out of range: %s\n", opt, val, what);
        return 2;
    }
    *out = (int)k;
    return 0;
}

/* A progress line on a terminal, at most five times a second, for fits
 * that take long enough to wonder about. */
typedef struct progress_state {
    double start, last;
    int shown;
} progress_state;

static void show_progress(void *ctx, int n, double best)
{
    progress_state *p = ctx;
    double t = mlmx_cli_now();
    if (t - p->start < 0.5 || t - p->last < 0.2)
        return;
    p->last = t;
    p->shown = 1;
    fprintf(stderr, "\rmlmx: fitting: %d evaluations, criterion %.6f, %.1f s ", n, best,
            t - p->start);
    fflush(stderr);
}

static int cmd_fit(int argc, char **argv)
{
    const char *data = NULL, *formula = NULL, *json = NULL, *ranef = NULL, *group = NULL;
    const char *plot = NULL, *optimizer = NULL, *family = NULL, *link = NULL, *nagq = NULL;
    const char *weights = NULL;
    int quiet = 0, reml = 0, ml = 0;
    mlmx_fit_options opt;
    mlmx_fit_options_default(&opt);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **target = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_fit, stdout);
            return 0;
        } else if (strcmp(a, "--reml") == 0) {
            opt.method = MLMX_REML;
            reml = 1;
        } else if (strcmp(a, "--ml") == 0) {
            opt.method = MLMX_ML;
            ml = 1;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = 1;
        } else if (strcmp(a, "--data") == 0) {
            target = &data;
        } else if (strcmp(a, "--formula") == 0) {
            target = &formula;
        } else if (strcmp(a, "--json") == 0) {
            target = &json;
        } else if (strcmp(a, "--ranef") == 0) {
            target = &ranef;
        } else if (strcmp(a, "--optimizer") == 0) {
            target = &optimizer;
        } else if (strcmp(a, "--ranef-plot") == 0) {
            target = &plot;
        } else if (strcmp(a, "--group") == 0) {
            target = &group;
        } else if (strcmp(a, "--family") == 0) {
            target = &family;
        } else if (strcmp(a, "--link") == 0) {
            target = &link;
        } else if (strcmp(a, "--nagq") == 0) {
            target = &nagq;
        } else if (strcmp(a, "--weights") == 0) {
            target = &weights;
        } else {
            fprintf(stderr, "mlmx fit: unknown option '%s' (see mlmx fit --help)\n", a);
            return 2;
        }
        if (target) {
            if (i + 1 >= argc) {
                fprintf(stderr, "mlmx fit: option '%s' needs a value\n", a);
                return 2;
            }
            if (*target) {
                fprintf(stderr, "mlmx fit: option '%s' is given twice ('%s' and '%s')\n", a,
                        *target, argv[i + 1]);
                return 2;
            }
            *target = argv[++i];
        }
    }
    if (optimizer) {
        if (strcmp(optimizer, "auto") == 0)
            opt.optimizer = MLMX_OPTIM_AUTO;
        else if (strcmp(optimizer, "bobyqa") == 0)
            opt.optimizer = MLMX_OPTIM_BOBYQA;
        else if (strcmp(optimizer, "bfgs") == 0)
            opt.optimizer = MLMX_OPTIM_QUASI_NEWTON;
        else {
            fprintf(stderr, "mlmx fit: unknown optimizer '%s' (auto, bobyqa or bfgs)\n", optimizer);
            return 2;
        }
    }
    if (family) {
        static const char *const fams[] = {"gaussian", "binomial", "poisson", "negbin",
                                           "ordinal"};
        int k = -1;
        for (int j = 0; j < 5; j++)
            if (strcmp(family, fams[j]) == 0)
                k = j;
        if (k < 0) {
            fprintf(stderr,
                    "mlmx fit: unknown family '%s' (gaussian, binomial, poisson, negbin, "
                    "ordinal)\n",
                    family);
            return 2;
        }
        opt.family = (mlmx_family)k;
    }
    if (link) {
        static const char *const links[] = {"logit", "probit", "cloglog", "log"};
        int k = -1;
        for (int j = 0; j < 4; j++)
            if (strcmp(link, links[j]) == 0)
                k = j;
        if (k < 0) {
            fprintf(stderr, "mlmx fit: unknown link '%s' (logit, probit, cloglog, log)\n", link);
            return 2;
        }
        opt.link = (mlmx_link)k;
    }
    if (reml && ml) {
        fprintf(stderr, "mlmx fit: --reml and --ml conflict: give one of them\n");
        return 2;
    }
    if (nagq && int_option("--nagq", nagq, 0, 100,
                           "0, 1 (Laplace) or 2..100 quadrature points", &opt.nagq))
        return 2;
    if ((link || nagq) && opt.family == MLMX_FAMILY_GAUSSIAN) {
        fprintf(stderr, "mlmx fit: --link and --nagq need a --family other than gaussian\n");
        return 2;
    }
    if (reml && opt.family != MLMX_FAMILY_GAUSSIAN) {
        fprintf(stderr, "mlmx fit: --reml is for linear mixed models; a --family model is "
                        "fitted by maximum likelihood\n");
        return 2;
    }
    if (!data || !formula) {
        fprintf(stderr, "mlmx fit: --data and --formula are required (see mlmx fit --help)\n");
        return 2;
    }
    mlmx_data *d = NULL;
    mlmx_status st;
    if (has_suffix(data, ".h5") || has_suffix(data, ".hdf5"))
        st = mlmx_data_read_hdf5(data, group, &d);
    else
        st = mlmx_data_read_csv(data, &d);
    if (st)
        return fail();
    if (weights) {
        int found = 0;
        for (int j = 0; j < mlmx_data_ncol(d) && !found; j++)
            found = strcmp(mlmx_data_column_name(d, j), weights) == 0;
        if (!found) {
            fprintf(stderr, "mlmx: error: --weights: no column '%s' in %s\n", weights, data);
            mlmx_data_free(d);
            return 1;
        }
    }
    mlmx_model *m = NULL;
    st = mlmx_model_create_weighted(d, formula, weights, &m);
    mlmx_data_free(d);
    if (st)
        return fail();
    if (!quiet)
        for (int i = 0; i < mlmx_model_nmessages(m); i++)
            fprintf(stderr, "mlmx: note: %s\n", mlmx_model_message(m, i));
    mlmx_fit *f = NULL;
    /* conditional SDs cost an inverse of the random-effect system: only
     * when an output shows them */
    opt.conditional_variances = ranef != NULL || plot != NULL;
    progress_state prog = {mlmx_cli_now(), 0.0, 0};
    if (!quiet && isatty(STDERR_FILENO)) {
        opt.progress = show_progress;
        opt.progress_ctx = &prog;
    }
    st = opt.family == MLMX_FAMILY_GAUSSIAN ? mlmx_fit_lmm(m, &opt, &f)
                                            : mlmx_fit_glmm(m, &opt, &f);
    if (prog.shown)
        fputs("\r\033[K", stderr); /* clear the progress line */
    if (st) {
        mlmx_model_free(m);
        return fail();
    }
    int rc = 0;
    if (!quiet) {
        char *text = NULL;
        if (mlmx_fit_summary(f, &text) == MLMX_OK) {
            fputs(text, stdout);
            mlmx_string_free(text);
        } else {
            rc = fail();
        }
    }
    /* all outputs or none: a later failure removes the files written before it */
    const char *written[3];
    int nw = 0;
    if (!rc && json)
        rc = mlmx_fit_write_json(f, json) != MLMX_OK ? fail() : (written[nw++] = json, 0);
    if (!rc && ranef)
        rc = mlmx_fit_write_ranef(f, ranef) != MLMX_OK ? fail() : (written[nw++] = ranef, 0);
    if (!rc && plot)
        rc = mlmx_fit_write_ranef_plot(f, plot) != MLMX_OK ? fail() : (written[nw++] = plot, 0);
    if (rc)
        for (int i = 0; i < nw; i++)
            remove(written[i]);
    /* The summary carries the warnings; standard error only when --quiet
     * hides it, so each is printed once. */
    if (!rc && quiet && !mlmx_fit_converged(f))
        fprintf(stderr, "mlmx: warning: the optimizer did not converge: %s\n",
                mlmx_fit_message(f));
    if (!rc && quiet && mlmx_fit_warning(f)[0])
        fprintf(stderr, "mlmx: warning: %s\n", mlmx_fit_warning(f));
    mlmx_fit_free(f);
    mlmx_model_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("mlmx %s\n", mlmx_version());
        return 0;
    }
    if (strcmp(cmd, "fit") == 0)
        return cmd_fit(argc - 2, argv + 2);
    if (strcmp(cmd, "boot") == 0)
        return mlmx_cmd_boot(argc - 2, argv + 2);
    if (strcmp(cmd, "merge") == 0)
        return mlmx_cmd_merge(argc - 2, argv + 2);
    fprintf(stderr, "mlmx: unknown command '%s' (see mlmx --help)\n", cmd);
    return 2;
}
