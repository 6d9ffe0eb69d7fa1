/* The variance decomposition (mlmx_fit_r2, mlmx_fit_icc_term) against
 * performance::r2_nakagawa, performance::icc (also by group) and Stata's
 * cumulative ICC definition, on fixtures written by
 * data/reference/infer/variance_reference.R from tight lme4 fits:
 * random slopes (sleepstudy), 2 and 3 nested levels (classroom,
 * sim_nested4), crossed factors (Penicillin, a zero fixed-effect variance),
 * logit and probit binomial GLMMs (hdp, cbpp).
 * Tolerances, relative (absolute floor 1e-9 for values near 0):
 *   LMMs 1e-6 (issue 9), mlmx evaluated at lme4's theta (one evaluation
 *   there; beta and sigma profiled as lme4 does), so that the formulas are
 *   compared at one set of parameters: the criterion is so flat that two
 *   converged optimizers give thetas ~2e-6 apart (classroom: REML
 *   criteria equal to 1e-12), which moves an ICC by ~3e-6;
 *   GLMMs 5e-5, each side at its own optimum over (theta, beta): lme4's
 *   tight fit is within ~2e-6 of the exact optimum, mlmx's GLMM optimizer
 *   stops within ~1e-5 of it in theta (cbpp probit: 0.3379951 against
 *   0.3379918; data/reference/glmm/cbpp_probit_laplace.ref), which moves
 *   the ICC by ~2e-5. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mlmx.h"
#include "lmm/fit.h"
#include "model/model.h"
#include "refutil.h"
#include "fitref.h"

#define REFDIR MLMX_SOURCE_DIR "/data/reference/infer/"

static mlmx_link link_of(const ref_file *r)
{
    const ref_line *l = ref_get(r, "link");
    if (!l)
        return MLMX_LINK_DEFAULT;
    return strcmp(l->rest, "probit") == 0    ? MLMX_LINK_PROBIT
           : strcmp(l->rest, "cloglog") == 0 ? MLMX_LINK_CLOGLOG
                                             : MLMX_LINK_LOGIT;
}

static void nospace(const char *s, char *out, size_t len)
{
    size_t w = 0;
    for (; *s && w + 1 < len; s++)
        if (*s != ' ')
            out[w++] = *s;
    out[w] = '\0';
}

#define EXPECT_CLOSE(got, want, what)                                                      \
    cr_expect(close_rel((got), (want), tol, 1e-9), "%s: %s = %.12g, reference %.12g", name, \
              (what), (got), (want))

/* R2, the ICCs and the per-level table of fit f against the fixture r. */
static void check_values(const ref_file *rr, const mlmx_fit *f, const char *name, double tol)
{
    const ref_file r = *rr;
    mlmx_r2 v;
    cr_assert_eq(mlmx_fit_r2(f, &v), MLMX_OK, "%s", mlmx_last_error());
    EXPECT_CLOSE(v.var_fixed, ref_num(&r, "var_fixed", 0), "var_fixed");
    EXPECT_CLOSE(v.var_random, ref_num(&r, "var_random", 0), "var_random");
    EXPECT_CLOSE(v.var_residual, ref_num(&r, "var_residual", 0), "var_residual");
    EXPECT_CLOSE(v.r2_marginal, ref_num(&r, "r2_marginal", 0), "r2_marginal");
    EXPECT_CLOSE(v.r2_conditional, ref_num(&r, "r2_conditional", 0), "r2_conditional");
    EXPECT_CLOSE(v.icc_adjusted, ref_num(&r, "icc_adjusted", 0), "icc_adjusted");
    EXPECT_CLOSE(v.icc_conditional, ref_num(&r, "icc_conditional", 0), "icc_conditional");
    /* every grouping factor with a random intercept, matched by lme4's label */
    const mlmx_model *mi = (const mlmx_model *)mlmx_fit_model(f);
    int matched = 0;
    for (const ref_line *l; (l = ref_get_nth(&r, "icc_group", matched)) != NULL; matched++) {
        cr_assert_eq(l->ntok, 5);
        int k = -1;
        for (int j = 0; j < mi->K && k < 0; j++) {
            char g[256];
            nospace(mi->re[j].group, g, sizeof g);
            if (strcmp(g, l->tok[0]) == 0)
                k = j;
        }
        cr_assert(k >= 0, "%s: no term grouped by %s", name, l->tok[0]);
        mlmx_icc ic;
        cr_assert_eq(mlmx_fit_icc_term(f, k, &ic), MLMX_OK, "%s", mlmx_last_error());
        EXPECT_CLOSE(ic.icc, strtod(l->tok[1], NULL), l->tok[0]);
        EXPECT_CLOSE(ic.icc_cumulative, strtod(l->tok[2], NULL), "cumulative ICC");
        EXPECT_CLOSE(ic.mean_size, strtod(l->tok[3], NULL), "mean cluster size");
        EXPECT_CLOSE(ic.design_effect, strtod(l->tok[4], NULL), "design effect");
    }
    cr_expect(matched >= 1, "%s: the fixture has no icc_group line", name);
}

static void check_case(const char *name)
{
    char path[1024];
    ref_file r;
    snprintf(path, sizeof path, REFDIR "%s.ref", name);
    cr_assert_eq(ref_load(path, &r), 0, "cannot read %s", path);
    snprintf(path, sizeof path, "%s/data/%s", MLMX_SOURCE_DIR, ref_get(&r, "data")->rest);
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_data_read_csv(path, &d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(d, ref_get(&r, "formula")->rest, &m), MLMX_OK, "%s",
                 mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    const int gauss = strcmp(ref_get(&r, "family")->rest, "gaussian") == 0;
    double theta[16];
    const ref_line *tl = ref_get(&r, "theta");
    cr_assert(tl && tl->ntok <= 16);
    for (int j = 0; j < tl->ntok; j++)
        theta[j] = strtod(tl->tok[j], NULL);
    if (gauss) {
        /* an LMM at lme4's theta exactly: one evaluation there, beta and
         * sigma profiled as lme4 profiles them */
        o.theta_start = theta;
        o.max_evaluations = 1;
        o.method = strcmp(ref_get(&r, "method")->rest, "ML") == 0 ? MLMX_ML : MLMX_REML;
        cr_assert_eq(mlmx_fit_lmm(m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    } else {
        o.family = MLMX_FAMILY_BINOMIAL;
        o.link = link_of(&r);
        cr_assert_eq(mlmx_fit_glmm(m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    }
    check_values(&r, f, name, gauss ? 1e-6 : 5e-5);
    if (!gauss) {
        /* The formulas at lme4's own estimates, to 1e-6 (issue 9): the
         * same fit with lme4's theta and beta in place of mlmx's. The
         * optimizers' optima differ by ~1e-5 in theta (on hdp mlmx's
         * deviance is the lower one by 2e-8; on cbpp probit lme4's by
         * 8e-10), which the 5e-5 above allows for. */
        const ref_line *bl = ref_get(&r, "beta");
        double beta[64];
        cr_assert(bl && bl->ntok <= 64 && bl->ntok == mlmx_model_nfixef(m));
        for (int j = 0; j < bl->ntok; j++)
            beta[j] = strtod(bl->tok[j], NULL);
        mlmx_fit g = *f;
        g.theta = theta;
        g.beta = beta;
        check_values(&r, &g, name, 1e-6);
    }
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    ref_free(&r);
}

Test(variance, sleepstudy_random_slope) { check_case("sleepstudy_reml"); }
Test(variance, classroom_two_nested_levels) { check_case("classroom_nested_reml"); }
Test(variance, sim_nested4_three_nested_levels) { check_case("sim_nested4_ml"); }
Test(variance, penicillin_crossed) { check_case("penicillin_reml"); }
Test(variance, hdp_logit, .timeout = 60) { check_case("hdp2_laplace"); }
Test(variance, cbpp_probit) { check_case("cbpp_probit"); }

/* A slope-only term has no ICC; a Poisson model is refused with the
 * reason, its fixed and random variances still given. */
Test(variance, no_intercept_and_counts)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/sleepstudy.csv", &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, "Reaction ~ Days + (1|Subject) + (0 + Days|Subject)", &m),
                 MLMX_OK);
    cr_assert_eq(mlmx_fit_lmm(m, NULL, &f), MLMX_OK, "%s", mlmx_last_error());
    mlmx_icc ic;
    const mlmx_model *mi = (const mlmx_model *)mlmx_fit_model(f);
    for (int k = 0; k < mi->K; k++) {
        cr_assert_eq(mlmx_fit_icc_term(f, k, &ic), MLMX_OK);
        const int has_int = strcmp(mi->re[k].colnames[0], "(Intercept)") == 0;
        cr_expect(has_int ? ic.icc > 0 && ic.icc < 1 : isnan(ic.icc), "term %d", k);
    }
    cr_expect_eq(mlmx_fit_icc_term(f, 2, &ic), MLMX_ERR_ARG);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);

    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/salamanders.csv", &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, "count ~ mined + (1|site)", &m), MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = MLMX_FAMILY_POISSON;
    cr_assert_eq(mlmx_fit_glmm(m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    mlmx_r2 v;
    cr_expect_eq(mlmx_fit_r2(f, &v), MLMX_ERR_UNSUPPORTED);
    cr_expect(strstr(mlmx_last_error(), "poisson") != NULL, "%s", mlmx_last_error());
    cr_expect(v.var_fixed > 0 && v.var_random > 0 && isnan(v.r2_marginal));
    cr_expect_eq(mlmx_fit_icc_term(f, 0, &ic), MLMX_ERR_UNSUPPORTED);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

/* The command: --icc prints the decomposition and the table under the
 * summary; the JSON has both without asking; a Poisson fit prints why
 * there is none and still succeeds. */
static char *run_out(const char *cmd, int *rc)
{
    static char buf[65536];
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = '\0';
    *rc = pclose(p);
    return buf;
}

Test(variance, command_line, .timeout = 60)
{
    int rc;
    char cmd[1024], json[128];
    snprintf(json, sizeof json, "/tmp/mlmx_test_variance_%d.json", (int)getpid());
    snprintf(cmd, sizeof cmd,
             MLMX_CLI_PATH " fit --data " MLMX_SOURCE_DIR "/data/classroom.csv --formula "
                           "'mathgain ~ mathkind + ses + (1|schoolid/classid)' --icc --json %s",
             json);
    const char *out = run_out(cmd, &rc);
    cr_expect_eq(rc, 0);
    cr_expect(strstr(out, " R2        marginal 0.2718, conditional 0.3998\n") != NULL, "%s", out);
    cr_expect(strstr(out, " schoolid           0.0897      0.0897      11.12          1.908      0.0282   0.0477   0.1624\n") !=
                  NULL,
              "%s", out);
    cr_expect(strstr(out, " classid:schoolid   0.0860      0.1757       3.81          1.494      0.0324   0.1208   0.2485\n") !=
                  NULL,
              "%s", out);
    FILE *fp = fopen(json, "r");
    cr_assert_not_null(fp);
    static char js[1 << 16];
    size_t n = fread(js, 1, sizeof js - 1, fp);
    js[n] = '\0';
    fclose(fp);
    remove(json);
    cr_expect(strstr(js, "\"variance_decomposition\": {\"var_fixed\": ") != NULL);
    cr_expect(strstr(js, "\"icc\": [\n    {\"group\": \"schoolid\", \"icc\": 0.0896") != NULL, "%s",
              js);
    /* without --r2/--icc the summary is lme4's alone */
    snprintf(cmd, sizeof cmd,
             MLMX_CLI_PATH " fit --data " MLMX_SOURCE_DIR "/data/dyestuff.csv --formula "
                           "'Yield ~ 1 + (1|Batch)'");
    cr_expect(strstr(run_out(cmd, &rc), "R2") == NULL);
    snprintf(cmd, sizeof cmd,
             MLMX_CLI_PATH " fit --data " MLMX_SOURCE_DIR "/data/salamanders.csv --formula "
                           "'count ~ mined + (1|site)' --family poisson --r2");
    out = run_out(cmd, &rc);
    cr_expect_eq(rc, 0);
    cr_expect(strstr(out, "R2 and ICC: R2 and ICC of a poisson model need") != NULL, "%s", out);
}

/* Snijders & Bosker's R² (mlmx_fit_r2_snijders_bosker) against their
 * definition on tight lme4 fits (data/reference/infer/
 * snijders_reference.R): the model at lme4's theta, the empty model
 * fitted by mlmx (both optimizers reach the same optimum of a one-theta
 * criterion to ~1e-7 in theta). Tolerance 1e-6 absolute (R² is a
 * proportion, and sleepstudy's level-2 R² is 0: Days varies only within
 * subjects); n_harmonic 1e-12 relative. */
static void check_sb(const char *name)
{
    char path[1024];
    ref_file r;
    snprintf(path, sizeof path, REFDIR "snijders_%s.ref", name);
    cr_assert_eq(ref_load(path, &r), 0, "cannot read %s", path);
    snprintf(path, sizeof path, "%s/data/%s", MLMX_SOURCE_DIR, ref_get(&r, "data")->rest);
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = ref_fit_lmm_at_theta(&r, path, &d, &m);
    mlmx_r2_sb sb;
    cr_assert_eq(mlmx_fit_r2_snijders_bosker(f, &sb), MLMX_OK, "%s", mlmx_last_error());
    const double r1 = ref_num(&r, "r2_level1", 0), r2 = ref_num(&r, "r2_level2", 0);
    cr_expect(close_rel(sb.level1, r1, 1e-6, 1.0), "%s level 1: %.12g vs %.12g", name, sb.level1, r1);
    cr_expect(close_rel(sb.level2, r2, 1e-6, 1.0), "%s level 2: %.12g vs %.12g", name, sb.level2, r2);
    cr_expect(close_rel(sb.n_harmonic, ref_num(&r, "n_harmonic", 0), 1e-12, 0), "n %.15g",
              sb.n_harmonic);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    ref_free(&r);
}

Test(variance, snijders_bosker_sleepstudy) { check_sb("sleepstudy"); }
Test(variance, snijders_bosker_hsb_ml) { check_sb("hsb_ml"); }

/* Several grouping factors and GLMMs are refused with the reason. */
Test(variance, snijders_bosker_refusals)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    mlmx_r2_sb sb;
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/penicillin.csv", &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, "diameter ~ 1 + (1|plate) + (1|sample)", &m), MLMX_OK);
    cr_assert_eq(mlmx_fit_lmm(m, NULL, &f), MLMX_OK);
    cr_expect_eq(mlmx_fit_r2_snijders_bosker(f, &sb), MLMX_ERR_UNSUPPORTED);
    cr_expect(strstr(mlmx_last_error(), "one grouping factor") != NULL, "%s", mlmx_last_error());
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}
