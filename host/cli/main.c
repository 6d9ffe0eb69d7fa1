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
#include "power_cmd.h"

static const char *usage_main =
    "usage: mlmx <command> [options]\n"
    "\n"
    "Fit multilevel (mixed-effects) models, with lme4's formula syntax and numbers.\n"
    "\n"
    "commands:\n"
    "  fit        fit a linear or generalized linear mixed model and print its summary\n"
    "  anova      compare nested models by likelihood-ratio tests (mlmx anova --help)\n"
    "  ranova     test each random-effect term by dropping it (mlmx ranova --help)\n"
    "  boot       parametric bootstrap: simulate, refit, intervals (mlmx boot --help)\n"
    "  merge      join the shard files of one bootstrap run (mlmx merge --help)\n"
    "  power      power analysis by simulation from a scenario file (mlmx power --help)\n"
    "  simulate   draw responses from a fitted model (mlmx simulate --help)\n"
    "  predict    predict from a saved model (fit --save) for new data (mlmx predict --help)\n"
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
    "  --acf              print the within-group autocorrelation of the Pearson\n"
    "                     residuals (nlme's ACF) with the fitted correlation\n"
    "  --acf-plot PATH    draw it (.svg, .png, .pdf)\n"
    "  --save FILE.h5     save the model (formula, coding, estimates, modes) for\n"
    "                     mlmx predict (docs/model-file.md)\n"
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
    "  --correlation S    LMM residual correlation within groups, as nlme's lme:\n"
    "                     ar1() (row order), ar1(~ time | group), car1(~ time |\n"
    "                     group), cs(~ 1 | group), arma(p, q[, ~ time | group])\n"
    "                     (docs/longitudinal.md)\n"
    "  --variance S       LMM residual variance function: ident(~ 1 | stratum)\n"
    "                     (an SD per stratum) or power(~ v) (SD |v|^power)\n"
    ;
/* the options' second half (a C string literal is at most 4095 bytes) */
static const char *usage_fit2 =
    "  --device D         cpu (default), gpu or auto: where the criterion's\n"
    "                     factorizations run (the CUDA backend); auto takes the\n"
    "                     GPU for an LMM with a crossed dense block of 300+\n"
    "                     columns (docs/gpu.md); the choice is in the summary and\n"
    "                     the JSON\n"
    "  --ddf METHOD       LMM t and F tests: satterthwaite (default; lmerTest's\n"
    "                     summary), kenward-roger (pbkrtest's; REML fits),\n"
    "                     containment (nlme's inner-outer df; the default with\n"
    "                     --correlation or --variance) or none\n"
    "                     (lme4's summary: no df or p-values)\n"
    "  --anova            print the Type III F tests of the fixed-effect terms\n"
    "                     under the summary (lmerTest's anova(fit)), by --ddf\n"
    "  --re-se SCALE      LMM: standard errors and 95% Wald intervals of the\n"
    "                     variance components under the summary, as Stata's mixed\n"
    "                     (SCALE sd: SDs and correlations; var: variances and\n"
    "                     covariances); always in the JSON (re_se)\n"
    "  --r2               print the variance decomposition under the summary:\n"
    "                     Nakagawa-Schielzeth marginal and conditional R2 and the\n"
    "                     ICC (docs/inference.md; always in the JSON)\n"
    "  --icc              print the ICC of each level (cumulative for nested\n"
    "                     levels, as Stata's estat icc) and the design effect\n"
    "  --confint M        confidence intervals under the summary, as lme4's\n"
    "                     confint(fit, method = M): profile (profile likelihood;\n"
    "                     linear models on the ML refit), wald (fixed effects)\n"
    "                     or boot (percentile, 500 parametric bootstrap\n"
    "                     replicates, seed 1); nlme: nlme's intervals(fit),\n"
    "                     with the residual structure's parameters; in the\n"
    "                     JSON as \"confint\"\n"
    "  --level X          confidence level of --confint (default 0.95)\n"
    "  --profile-plot PATH  with --confint profile: zeta against each parameter\n"
    "                     (SVG, PNG or PDF by the extension)\n"
    "  --quiet            print neither the summary nor progress (warnings then go\n"
    "                     to standard error)\n"
    "  -h, --help         show this help\n"
    "\n"
    "Limits: a random-effect term has at most 16 columns (e.g. (1 + x1 + ... + x15 | g));\n"
    "the crossed (non-nested) part of the model at most 16,000 dense columns.\n"
    "\n"
    "Exit status: 0 on success, 1 when the data, formula or fit fail, 2 on usage errors.\n";

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

/* --ddf's value, checked against the fit it will be used on: 0 or 2. */
static int ddf_option(const char *val, const mlmx_fit_options *opt, int *ddf)
{
    *ddf = mlmx_ddf_method_parse(val);
    if (*ddf < 0) {
        fprintf(stderr, "mlmx fit: --ddf takes satterthwaite, kenward-roger, containment or none, "
                        "not '%s'\n",
                val);
        return 2;
    }
    if (opt->family != MLMX_FAMILY_GAUSSIAN) {
        fputs("mlmx fit: --ddf is for linear mixed models (a GLMM has Wald z tests)\n", stderr);
        return 2;
    }
    if (*ddf == MLMX_DDF_KENWARD_ROGER && opt->method != MLMX_REML) {
        fputs("mlmx fit: --ddf kenward-roger needs a REML fit (as lmerTest and pbkrtest); "
              "drop --ml\n",
              stderr);
        return 2;
    }
    return 0;
}

/* --confint, --level and --profile-plot. */
typedef struct ci_request {
    int on;
    mlmx_confint_method method;
    double level;
} ci_request;

static int confint_options(const char *method, const char *level, const char *plot,
                           ci_request *ci)
{
    ci->on = method != NULL;
    ci->method = MLMX_CONFINT_PROFILE;
    ci->level = 0.95;
    if (method && strcmp(method, "profile") != 0) {
        if (strcmp(method, "wald") == 0)
            ci->method = MLMX_CONFINT_WALD;
        else if (strcmp(method, "boot") == 0)
            ci->method = MLMX_CONFINT_BOOT;
        else if (strcmp(method, "nlme") == 0)
            ci->method = MLMX_CONFINT_NLME;
        else {
            fprintf(stderr,
                    "mlmx fit: --confint must be profile, wald, boot or nlme (not '%s')\n",
                    method);
            return 2;
        }
    }
    if (level) {
        char *end = NULL;
        ci->level = strtod(level, &end);
        if (!method || end == level || *end || !(ci->level > 0.0 && ci->level < 1.0)) {
            fprintf(stderr, method ? "mlmx fit: --level must be a number between 0 and 1 (not "
                                     "'%s')\n"
                                   : "mlmx fit: --level '%s' needs --confint\n",
                    level);
            return 2;
        }
    }
    if (plot && (!method || ci->method != MLMX_CONFINT_PROFILE)) {
        fputs("mlmx fit: --profile-plot needs --confint profile\n", stderr);
        return 2;
    }
    return 0;
}

/* --re-se's value: 0 (sd) or 1 (var) in *scale; 0, or 2 on a usage error. */
static int re_se_option(const char *val, const mlmx_fit_options *opt, int *scale)
{
    *scale = strcmp(val, "sd") == 0 ? 0 : strcmp(val, "var") == 0 ? 1 : -1;
    if (*scale < 0) {
        fprintf(stderr, "mlmx fit: --re-se takes sd or var, not '%s'\n", val);
        return 2;
    }
    if (opt->family != MLMX_FAMILY_GAUSSIAN) {
        fputs("mlmx fit: --re-se is for linear mixed models\n", stderr);
        return 2;
    }
    return 0;
}

/* The summary (with lmerTest's columns by ddf) and the tables asked for. */
static int print_fit(const mlmx_fit *f, int ddf, int show, int anova, int vc_scale, int acf)
{
    char *text = NULL;
    if (mlmx_fit_summary_ddf(f, (mlmx_ddf_method)ddf, &text) != MLMX_OK)
        return mlmx_cli_fail();
    fputs(text, stdout);
    mlmx_string_free(text);
    /* Stata's footer for LMMs (a GLMM's summary has its own) */
    if (mlmx_fit_family(f) == MLMX_FAMILY_GAUSSIAN && mlmx_fit_lrt_linear_text(f, &text) == MLMX_OK) {
        fputs(text, stdout);
        mlmx_string_free(text);
    }
    if (anova && mlmx_fit_family(f) != MLMX_FAMILY_GAUSSIAN) {
        fputs("\nType III F tests are for linear mixed models: a GLMM has the Wald z tests "
              "above\n",
              stdout);
    } else if (anova) {
        if (mlmx_fit_anova_text(f, (mlmx_ddf_method)ddf, &text) != MLMX_OK)
            return mlmx_cli_fail();
        fputs(text, stdout);
        mlmx_string_free(text);
    }
    if (vc_scale >= 0) {
        /* a singular fit has none: say why and go on */
        if (mlmx_fit_varcomp_text(f, vc_scale, &text) == MLMX_OK) {
            fputs(text, stdout);
            mlmx_string_free(text);
        } else {
            printf("\nRandom-effects parameters: %s\n", mlmx_last_error());
        }
    }
    if (show) {
        if (mlmx_fit_variance_summary(f, show, &text) != MLMX_OK)
            return mlmx_cli_fail();
        fputs(text, stdout);
        mlmx_string_free(text);
    }
    if (acf) {
        if (mlmx_fit_acf_text(f, &text) != MLMX_OK)
            return mlmx_cli_fail();
        fputs(text, stdout);
        mlmx_string_free(text);
    }
    return 0;
}

/* The intervals, printed under the summary (their notes to standard error
 * when --quiet hides it). */
static int confint_run(const mlmx_fit *f, const ci_request *ci, int quiet, mlmx_confint **out)
{
    mlmx_boot_options bo;
    mlmx_boot_options_default(&bo);
    bo.nsim = 500; /* lme4's confint(method = "boot") default */
    if (mlmx_fit_confint(f, ci->method, ci->level, &bo, out) != MLMX_OK)
        return mlmx_cli_fail();
    if (quiet) {
        for (int i = 0; i < mlmx_confint_nmessages(*out); i++)
            fprintf(stderr, "mlmx: note: %s\n", mlmx_confint_message(*out, i));
        return 0;
    }
    char *text = NULL;
    if (mlmx_confint_text(*out, &text) != MLMX_OK)
        return mlmx_cli_fail();
    fputs(text, stdout);
    mlmx_string_free(text);
    return 0;
}

static int cmd_fit(int argc, char **argv)
{
    mlmx_cli_model mo;
    mlmx_cli_model_init(&mo);
    const char *json = NULL, *ranef = NULL, *plot = NULL, *device = NULL, *ddf_name = NULL,
               *re_se = NULL, *save = NULL;
    const char *ci_method = NULL, *ci_level = NULL, *ci_plot = NULL, *acf_plot = NULL;
    int quiet = 0, show = 0, anova = 0, acf = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **target = NULL;
        int r = mlmx_cli_model_option(&mo, "fit", argc, argv, &i);
        if (r == 1)
            continue;
        if (r == 2)
            return 2;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_fit, stdout);
            fputs(usage_fit2, stdout);
            return 0;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = 1;
        } else if (strcmp(a, "--r2") == 0) {
            show |= MLMX_SHOW_R2;
        } else if (strcmp(a, "--icc") == 0) {
            show |= MLMX_SHOW_R2 | MLMX_SHOW_ICC;
        } else if (strcmp(a, "--anova") == 0) {
            anova = 1;
        } else if (strcmp(a, "--re-se") == 0) {
            target = &re_se;
        } else if (strcmp(a, "--ddf") == 0) {
            target = &ddf_name;
        } else if (strcmp(a, "--json") == 0) {
            target = &json;
        } else if (strcmp(a, "--ranef") == 0) {
            target = &ranef;
        } else if (strcmp(a, "--ranef-plot") == 0) {
            target = &plot;
        } else if (strcmp(a, "--acf") == 0) {
            acf = 1;
        } else if (strcmp(a, "--acf-plot") == 0) {
            target = &acf_plot;
        } else if (strcmp(a, "--save") == 0) {
            target = &save;
        } else if (strcmp(a, "--device") == 0) {
            target = &device;
        } else if (strcmp(a, "--confint") == 0) {
            target = &ci_method;
        } else if (strcmp(a, "--level") == 0) {
            target = &ci_level;
        } else if (strcmp(a, "--profile-plot") == 0) {
            target = &ci_plot;
        } else {
            fprintf(stderr, "mlmx fit: unknown option '%s' (see mlmx fit --help)\n", a);
            return 2;
        }
        if (target && mlmx_cli_take_value("fit", argc, argv, &i, target))
            return 2;
    }
    mlmx_fit_options opt;
    int urc = mlmx_cli_model_options(&mo, "fit", &opt);
    if (!urc && device)
        urc = mlmx_cli_device_option("fit", device, &opt.device);
    int ddf = MLMX_DDF_SATTERTHWAITE;
    if (!urc && ddf_name)
        urc = ddf_option(ddf_name, &opt, &ddf);
    if (!urc && (mo.correlation || mo.variance)) {
        /* lmerTest's df do not cover residual structures yet: nlme's do */
        if (ddf_name && ddf != MLMX_DDF_NONE && ddf != MLMX_DDF_CONTAINMENT) {
            fputs("mlmx fit: --ddf satterthwaite and kenward-roger are not available with "
                  "--correlation or --variance yet; use containment (nlme's, the default "
                  "there) or none\n",
                  stderr);
            urc = 2;
        }
        if (!ddf_name)
            ddf = MLMX_DDF_CONTAINMENT;
    }
    int vc_scale = -1;
    if (!urc && re_se)
        urc = re_se_option(re_se, &opt, &vc_scale);
    ci_request ci;
    if (!urc)
        urc = confint_options(ci_method, ci_level, ci_plot, &ci);
    if (urc)
        return urc;
    if (mlmx_cli_model_build(&mo, quiet)) {
        mlmx_cli_model_free(&mo, NULL);
        return 1;
    }
    mlmx_fit *f = NULL;
    /* conditional SDs cost an inverse of the random-effect system: only
     * when an output shows them */
    opt.conditional_variances = ranef != NULL || plot != NULL || save != NULL;
    progress_state prog = {mlmx_cli_now(), 0.0, 0};
    if (!quiet && isatty(STDERR_FILENO)) {
        opt.progress = show_progress;
        opt.progress_ctx = &prog;
    }
    int frc = mlmx_cli_model_fit(&mo, &opt, &f);
    if (prog.shown)
        fputs("\r\033[K", stderr); /* clear the progress line */
    if (frc) {
        mlmx_cli_model_free(&mo, NULL);
        return 1;
    }
    int rc = quiet ? 0 : print_fit(f, ddf, show, anova, vc_scale, acf);
    mlmx_confint *cint = NULL;
    if (!rc && ci.on)
        rc = confint_run(f, &ci, quiet, &cint);
    /* all outputs or none: a later failure removes the files written before it */
    const char *written[8];
    int nw = 0;
    if (!rc && json)
        rc = mlmx_fit_write_json_ex(f, (mlmx_ddf_method)ddf, cint, json) != MLMX_OK
                 ? mlmx_cli_fail()
                 : (written[nw++] = json, 0);
    if (!rc && ci_plot)
        rc = mlmx_confint_write_plot(cint, ci_plot) != MLMX_OK ? mlmx_cli_fail()
                                                                : (written[nw++] = ci_plot, 0);
    if (!rc && ranef)
        rc = mlmx_fit_write_ranef(f, ranef) != MLMX_OK ? mlmx_cli_fail() : (written[nw++] = ranef, 0);
    if (!rc && plot)
        rc = mlmx_fit_write_ranef_plot(f, plot) != MLMX_OK ? mlmx_cli_fail() : (written[nw++] = plot, 0);
    if (!rc && acf_plot)
        rc = mlmx_fit_write_acf_plot(f, acf_plot) != MLMX_OK ? mlmx_cli_fail()
                                                              : (written[nw++] = acf_plot, 0);
    if (!rc && save)
        rc = mlmx_fit_save(f, save, mo.data) != MLMX_OK ? mlmx_cli_fail() : (written[nw++] = save, 0);
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
    mlmx_confint_free(cint);
    mlmx_cli_model_free(&mo, f);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    /* OpenBLAS threads spin: with mlmx's own threads, or another busy
     * process, they cost far more than they give (include/mlmx.h) */
    if (!getenv("OPENBLAS_NUM_THREADS"))
        mlmx_set_blas_threads(1);
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
    if (strcmp(cmd, "anova") == 0)
        return mlmx_cmd_anova(argc - 2, argv + 2);
    if (strcmp(cmd, "ranova") == 0)
        return mlmx_cmd_ranova(argc - 2, argv + 2);
    if (strcmp(cmd, "boot") == 0)
        return mlmx_cmd_boot(argc - 2, argv + 2);
    if (strcmp(cmd, "merge") == 0)
        return mlmx_cmd_merge(argc - 2, argv + 2);
    if (strcmp(cmd, "power") == 0)
        return mlmx_cmd_power(argc - 2, argv + 2);
    if (strcmp(cmd, "simulate") == 0)
        return mlmx_cmd_simulate(argc - 2, argv + 2);
    if (strcmp(cmd, "predict") == 0)
        return mlmx_cmd_predict(argc - 2, argv + 2);
    fprintf(stderr, "mlmx: unknown command '%s' (see mlmx --help)\n", cmd);
    return 2;
}
