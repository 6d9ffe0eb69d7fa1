/* mlmx anova (lme4's anova() between models) and mlmx ranova (lmerTest's
 * ranova()): thin clients of mlmx_anova_create and mlmx_ranova_create. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mlmx.h"

#define MAX_MODELS 64

static const char *usage_anova =
    "usage: mlmx anova --data FILE --formula 'A' --formula 'B' [--formula 'C' ...] [options]\n"
    "       mlmx anova --drop1 --data FILE --formula 'A' [options]\n"
    "\n"
    "Fit each model to the same data and compare them by likelihood-ratio tests, as\n"
    "lme4's anova(m1, m2, ...) prints them: npar, AIC, BIC, logLik, deviance, and\n"
    "against the model before (models ordered by npar) Chisq, Df and Pr(>Chisq).\n"
    "REML fits are refitted by maximum likelihood, as lme4 does. Where a model adds\n"
    "one variance component and nothing else, the chi-bar-square p-value (half the\n"
    "chi2(1) p-value) is printed too.\n"
    "\n"
    "  --data FILE        CSV file (header row), or HDF5 file (.h5, .hdf5)\n"
    "  --group NAME       HDF5 group holding the table's columns (default /)\n"
    "  --formula F        an lme4 formula; give it once per model (2 to 64 models)\n"
    "  --reml, --ml       how the LMMs are fitted before the comparison (REML, the\n"
    "                     default, is refitted by ML with a message)\n"
    "  --family NAME      gaussian (default), binomial, poisson, negbin or ordinal\n"
    "  --link NAME, --nagq K, --weights COLUMN, --optimizer NAME   as mlmx fit\n"
    "  --correlation S, --variance S   a residual structure (as mlmx fit) for the\n"
    "                     model of the --formula before it, e.g. --formula 'A'\n"
    "                     --formula 'A' --correlation 'ar1()' (nlme's anova(m1, m2))\n"
    "  --json PATH        write the table as JSON\n"
    "  -h, --help         show this help\n"
    "\n"
    "  --drop1            one --formula: drop each fixed-effect term in turn and test\n"
    "                     it by the likelihood ratio, as lme4's drop1(fit, test =\n"
    "                     \"Chisq\") (an LMM is fitted by ML)\n"
    "\n"
    "Models must use the same rows of the data and the same response (an error\n"
    "otherwise); models that are not nested give a warning, as R.\n"
    "\n"
    "Exit status: 0 on success, 1 when the data, a formula or a fit fail, 2 on usage errors.\n";

static const char *usage_ranova =
    "usage: mlmx ranova --data FILE --formula 'FORMULA' [--reml|--ml] [--json PATH]\n"
    "\n"
    "lmerTest's ranova(): reduce each random-effect term of a linear mixed model in\n"
    "turn ((1 + x | g) -> (1 | g); (1 | g) removed), refit with the same method,\n"
    "and test each reduced model against the full one: npar, logLik, AIC, LRT, Df,\n"
    "Pr(>Chisq). A model with no random term left is the linear model.\n"
    "\n"
    "  --data FILE, --group NAME, --formula F, --reml, --ml, --optimizer NAME  as mlmx fit\n"
    "  --json PATH        write the table as JSON\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0 on success, 1 when the data, formula or a fit fail, 2 on usage errors.\n";

/* Print the table (and the warnings on standard error), write the JSON. */
static int report(const mlmx_anova *a, const char *cmd, const char *data, const char *json)
{
    char *text = NULL;
    if (mlmx_anova_summary(a, data, &text) != MLMX_OK)
        return mlmx_cli_fail();
    fputs(text, stdout);
    mlmx_string_free(text);
    for (int i = 0; i < mlmx_anova_nwarnings(a); i++)
        fprintf(stderr, "mlmx %s: warning: %s\n", cmd, mlmx_anova_warning(a, i));
    if (json && mlmx_anova_write_json(a, json) != MLMX_OK)
        return mlmx_cli_fail();
    return 0;
}

/* Residual structures per model: --correlation and --variance after a
 * --formula belong to that model (anova). */
typedef struct {
    const char *corr[MAX_MODELS], *var[MAX_MODELS];
} per_model;

/* --correlation or --variance of the model before it: 1 taken, 0 not one
 * of them, 2 usage error. */
static int per_model_option(const char *cmd, int argc, char **argv, int *i, per_model *pm, int nf)
{
    const char *a = argv[*i];
    int is_corr = strcmp(a, "--correlation") == 0;
    if (!pm || (!is_corr && strcmp(a, "--variance") != 0))
        return 0;
    if (nf == 0) {
        fprintf(stderr, "mlmx %s: %s belongs to the model of the --formula before it; give the "
                        "--formula first\n", cmd, a);
        return 2;
    }
    return mlmx_cli_take_value(cmd, argc, argv, i,
                               is_corr ? &pm->corr[nf - 1] : &pm->var[nf - 1]) ? 2 : 1;
}

/* Parse the options: the formulas into forms (anova) or the model's;
 * --drop1 (anova only) into *drop1; per-model residual structures (anova)
 * into pm. */
static int parse(const char *cmd, int argc, char **argv, mlmx_cli_model *mo, const char **forms,
                 int *nf, const char **json, int *drop1, const char *usage, per_model *pm)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int pr = per_model_option(cmd, argc, argv, &i, pm, nf ? *nf : 0);
        if (pr == 2)
            return 2;
        if (pr == 1)
            continue;
        if (drop1 && strcmp(a, "--drop1") == 0) {
            *drop1 = 1;
            continue;
        }
        if (forms && strcmp(a, "--formula") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "mlmx %s: option '--formula' needs a value\n", cmd);
                return 2;
            }
            if (*nf >= MAX_MODELS) {
                fprintf(stderr, "mlmx %s: at most %d formulas\n", cmd, MAX_MODELS);
                return 2;
            }
            forms[(*nf)++] = argv[++i];
            continue;
        }
        int r = mlmx_cli_model_option(mo, cmd, argc, argv, &i);
        if (r == 1)
            continue;
        if (r == 2)
            return 2;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return -1;
        } else if (strcmp(a, "--json") == 0) {
            if (mlmx_cli_take_value(cmd, argc, argv, &i, json))
                return 2;
        } else {
            fprintf(stderr, "mlmx %s: unknown option '%s' (see mlmx %s --help)\n", cmd, a, cmd);
            return 2;
        }
    }
    if (forms && *drop1) {
        if (*nf != 1) {
            fprintf(stderr, "mlmx %s: --drop1 takes one --formula\n", cmd);
            return 2;
        }
        mo->formula = forms[0];
        if (pm) {
            mo->correlation = pm->corr[0];
            mo->variance = pm->var[0];
        }
    } else if (forms) {
        if (*nf < 2) {
            fprintf(stderr, "mlmx %s: give at least two models (--formula 'A' --formula 'B')\n",
                    cmd);
            return 2;
        }
        mo->formula = forms[0];
        mo->correlation = pm->corr[0];
        mo->variance = pm->var[0];
    }
    return 0;
}

/* mlmx anova --drop1: the single fit and its term deletions. */
static int cmd_drop1(mlmx_cli_model *mo, mlmx_fit_options *opt, const char *json)
{
    if (opt->family == MLMX_FAMILY_GAUSSIAN) {
        if (mo->reml) {
            fprintf(stderr, "mlmx anova: --drop1 compares ML fits: --reml cannot be used\n");
            return 2;
        }
        if (!mo->ml)
            fputs("mlmx anova: note: --drop1 fits the linear mixed model by ML\n", stderr);
        opt->method = MLMX_ML;
    }
    opt->conditional_variances = 0;
    mlmx_fit *f = NULL;
    mlmx_anova *a = NULL;
    int rc = 0;
    if (mlmx_cli_model_build(mo, 0) || mlmx_cli_model_fit(mo, opt, &f))
        rc = 1;
    if (!rc && mlmx_drop1_create(mo->d, f, opt, &a) != MLMX_OK)
        rc = mlmx_cli_fail();
    if (!rc)
        rc = report(a, "anova", NULL, json);
    mlmx_anova_free(a);
    mlmx_cli_model_free(mo, f);
    return rc;
}

int mlmx_cmd_anova(int argc, char **argv)
{
    mlmx_cli_model mo;
    mlmx_cli_model_init(&mo);
    const char *forms[MAX_MODELS], *json = NULL;
    int nf = 0, drop1 = 0;
    per_model pm;
    memset(&pm, 0, sizeof pm);
    int rc = parse("anova", argc, argv, &mo, forms, &nf, &json, &drop1, usage_anova, &pm);
    if (rc)
        return rc < 0 ? 0 : rc;
    mlmx_fit_options opt;
    if ((rc = mlmx_cli_model_options(&mo, "anova", &opt)) != 0)
        return rc;
    if (drop1)
        return cmd_drop1(&mo, &opt, json);
    opt.conditional_variances = 0;
    mlmx_model *models[MAX_MODELS] = {0};
    mlmx_fit *fits[MAX_MODELS] = {0};
    mlmx_anova *a = NULL;
    if (mlmx_cli_model_build(&mo, 0))
        rc = 1;
    for (int i = 0; i < nf && !rc; i++) {
        if (i == 0)
            models[0] = mo.m;
        else if (mlmx_model_create_weighted(mo.d, forms[i], mo.weights, &models[i]) != MLMX_OK)
            rc = mlmx_cli_fail();
        else if ((pm.corr[i] || pm.var[i]) &&
                 mlmx_model_set_residual(models[i], mo.d, pm.corr[i], pm.var[i]) != MLMX_OK)
            rc = mlmx_cli_fail();
        if (!rc) {
            mlmx_status st = opt.family == MLMX_FAMILY_GAUSSIAN
                                 ? mlmx_fit_lmm(models[i], &opt, &fits[i])
                                 : mlmx_fit_glmm(models[i], &opt, &fits[i]);
            if (st)
                rc = mlmx_cli_fail();
            else if (!mlmx_fit_converged(fits[i]))
                fprintf(stderr, "mlmx anova: warning: model %d did not converge: %s\n", i + 1,
                        mlmx_fit_message(fits[i]));
        }
    }
    if (!rc && mlmx_anova_create((const mlmx_fit *const *)fits, nf, &a) != MLMX_OK)
        rc = mlmx_cli_fail();
    if (!rc && mlmx_anova_refitted(a) > 0)
        fputs("refitting model(s) with ML (instead of REML)\n", stderr);
    if (!rc)
        rc = report(a, "anova", mo.data, json);
    mlmx_anova_free(a);
    for (int i = nf - 1; i >= 0; i--) {
        mlmx_fit_free(fits[i]);
        if (i > 0)
            mlmx_model_free(models[i]);
    }
    mlmx_cli_model_free(&mo, NULL);
    return rc;
}

int mlmx_cmd_ranova(int argc, char **argv)
{
    mlmx_cli_model mo;
    mlmx_cli_model_init(&mo);
    const char *json = NULL;
    int rc = parse("ranova", argc, argv, &mo, NULL, NULL, &json, NULL, usage_ranova, NULL);
    if (rc)
        return rc < 0 ? 0 : rc;
    mlmx_fit_options opt;
    if ((rc = mlmx_cli_model_options(&mo, "ranova", &opt)) != 0)
        return rc;
    if (opt.family != MLMX_FAMILY_GAUSSIAN) {
        fprintf(stderr, "mlmx ranova: ranova is for linear mixed models (no --family)\n");
        return 2;
    }
    opt.conditional_variances = 0;
    mlmx_fit *f = NULL;
    mlmx_anova *a = NULL;
    if (mlmx_cli_model_build(&mo, 0) || mlmx_cli_model_fit(&mo, &opt, &f))
        rc = 1;
    if (!rc && mlmx_ranova_create(mo.d, f, &opt, &a) != MLMX_OK)
        rc = mlmx_cli_fail();
    if (!rc)
        rc = report(a, "ranova", NULL, json);
    mlmx_anova_free(a);
    mlmx_cli_model_free(&mo, f);
    return rc;
}
