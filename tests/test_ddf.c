/* Satterthwaite's degrees of freedom and the t-tests of the fixed effects
 * (mlmx_fit_coef_tests) against lmerTest 3.1-3's summary(fit, ddf =
 * "Satterthwaite"), on fixtures written by
 * data/reference/infer/ddf_reference.R: sleepstudy (REML, ML, and an
 * unbalanced subset), classroom (crossed school and class intercepts), hsb
 * (correlated slope, interactions), BodyWeight (a 3-level factor).
 * mlmx is evaluated at lmerTest's theta (one evaluation there), so that
 * the comparison is of the df computation, not of two optimizers' last
 * digits. Tolerance: 1e-4 relative on df and p (issue 9); lmerTest's
 * derivatives are numerical (numDeriv, Richardson), mlmx's Hessian is the
 * central difference of the analytic gradient: measured differences are
 * printed by the test on failure. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mlmx.h"
#include "refutil.h"
#include "fitref.h"

#define REFDIR MLMX_SOURCE_DIR "/data/reference/infer/"

/* Drop Days >= 7 for the first six subjects and Days == 0 for the next
 * three (sorted by id), as ddf_reference.R's sleep_unbal does. */
static const char *unbalanced_csv(void)
{
    static char path[256];
    snprintf(path, sizeof path, "/tmp/mlmx_test_ddf_%d.csv", (int)getpid());
    FILE *in = fopen(MLMX_SOURCE_DIR "/data/sleepstudy.csv", "r");
    FILE *out = fopen(path, "w");
    cr_assert(in && out);
    char line[256];
    int ids[64], nid = 0;
    cr_assert(fgets(line, sizeof line, in));
    fputs(line, out);
    /* columns: Reaction,Days,Subject */
    long pos = ftell(in);
    while (fgets(line, sizeof line, in)) {
        int id = atoi(strrchr(line, ',') + 1), seen = 0;
        for (int i = 0; i < nid; i++)
            seen |= ids[i] == id;
        if (!seen && nid < 64)
            ids[nid++] = id;
    }
    for (int i = 0; i < nid; i++)
        for (int j = i + 1; j < nid; j++)
            if (ids[j] < ids[i]) {
                int t = ids[i];
                ids[i] = ids[j];
                ids[j] = t;
            }
    fseek(in, pos, SEEK_SET);
    while (fgets(line, sizeof line, in)) {
        char *c1 = strchr(line, ',');
        int days = atoi(c1 + 1), id = atoi(strrchr(line, ',') + 1), rank = 0;
        while (rank < nid && ids[rank] != id)
            rank++;
        if ((rank < 6 && days >= 7) || (rank >= 6 && rank < 9 && days == 0))
            continue;
        fputs(line, out);
    }
    fclose(in);
    fclose(out);
    return path;
}

/* lmerTest's anova(fit, type = 3[, ddf = "Kenward-Roger"]): Sum Sq, Mean
 * Sq and F to 1e-6 (they depend on the hypotheses and the covariance
 * only), NumDF exactly, DenDF and p to 1e-4 (Satterthwaite: numerical
 * derivatives in lmerTest) or 1e-6 (Kenward-Roger: algebra on both sides). */
static void check_anova(const ref_file *r, const mlmx_fit *f, const char *name, const char *key,
                        mlmx_ddf_method ddf)
{
    const int nt = mlmx_fit_nterms(f);
    mlmx_ftest tab[64];
    cr_assert(nt <= 64);
    cr_assert_eq(mlmx_fit_anova_type3(f, ddf, tab), MLMX_OK, "%s: %s", name, mlmx_last_error());
    const double tol = ddf == MLMX_DDF_KENWARD_ROGER ? 1e-6 : 1e-4;
    int n = 0;
    for (const ref_line *l; (l = ref_get_nth(r, key, n)) != NULL; n++) {
        cr_assert_eq(l->ntok, 7);
        int t = 0;
        while (t < nt && strcmp(mlmx_fit_term_label(f, t), l->tok[0]) != 0)
            t++;
        cr_assert(t < nt, "%s: term %s not in the model", name, l->tok[0]);
        const double want[6] = {strtod(l->tok[1], NULL), strtod(l->tok[2], NULL),
                                strtod(l->tok[3], NULL), strtod(l->tok[4], NULL),
                                strtod(l->tok[5], NULL), strtod(l->tok[6], NULL)};
        const double got[6] = {tab[t].sum_sq, tab[t].mean_sq, tab[t].num_df,
                               tab[t].den_df, tab[t].f,       tab[t].p};
        const char *col[6] = {"Sum Sq", "Mean Sq", "NumDF", "DenDF", "F", "p"};
        for (int c = 0; c < 6; c++) {
            const double tl = c == 3 || c == 5 ? tol : c == 2 ? 0.0 : 1e-6;
            cr_expect(close_rel(got[c], want[c], tl, 1e-300), "%s %s %s %s: %.10g vs %.10g (rel %.2g)",
                      name, key, l->tok[0], col[c], got[c], want[c], fabs(got[c] / want[c] - 1));
        }
    }
    cr_expect_eq(n, nt, "%s: %d %s rows in the fixture, %d terms", name, n, key, nt);
}

/* summary(fit, ddf = "Kenward-Roger") and pbkrtest::vcovAdj: the same
 * algebra on both sides (pbkrtest in n x n matrices, mlmx in the q x q
 * space of the random effects): 1e-8 on the adjusted covariance and the
 * SEs, 1e-6 on df and p. */
static void check_kr(const ref_file *r, const mlmx_fit *f, const char *name)
{
    const int p = mlmx_model_nfixef(mlmx_fit_model(f));
    double se[64], df[64], t[64], pv[64], V[64 * 64];
    cr_assert(p <= 64);
    cr_assert_eq(mlmx_fit_coef_tests_ddf(f, MLMX_DDF_KENWARD_ROGER, se, df, t, pv), MLMX_OK,
                 "%s: %s", name, mlmx_last_error());
    cr_assert_eq(mlmx_fit_vcov_kr(f, V), MLMX_OK, "%s", mlmx_last_error());
    const ref_line *vl = ref_get(r, "vcov_kr");
    cr_assert(vl && vl->ntok == p * p);
    double vmax = 0.0;
    for (int a = 0; a < p * p; a++)
        vmax = fmax(vmax, fabs(strtod(vl->tok[a], NULL)));
    for (int a = 0; a < p * p; a++)
        cr_expect(fabs(V[a] - strtod(vl->tok[a], NULL)) <= 1e-8 * vmax,
                  "%s vcov_kr[%d]: %.12g vs %s", name, a, V[a], vl->tok[a]);
    int n = 0;
    for (const ref_line *l; (l = ref_get_nth(r, "coef_kr", n)) != NULL; n++) {
        cr_assert(n < p && l->ntok == 6);
        const double want[4] = {strtod(l->tok[2], NULL), strtod(l->tok[3], NULL),
                                strtod(l->tok[4], NULL), strtod(l->tok[5], NULL)};
        const double got[4] = {se[n], df[n], t[n], pv[n]};
        const char *col[4] = {"se", "df", "t", "p"};
        for (int c = 0; c < 4; c++)
            cr_expect(close_rel(got[c], want[c], c == 0 || c == 2 ? 1e-8 : 1e-6, 1e-300),
                      "%s KR %s %s: %.12g vs %.12g (rel %.2g)", name, l->tok[0], col[c], got[c],
                      want[c], fabs(got[c] / want[c] - 1));
    }
    cr_expect_eq(n, p);
}

/* sleepstudy with g2 = Subject mod 3, as ddf_reference.R's derive. */
static const char *g2_csv(void)
{
    static char path[256];
    snprintf(path, sizeof path, "/tmp/mlmx_test_ddf_g2_%d.csv", (int)getpid());
    FILE *in = fopen(MLMX_SOURCE_DIR "/data/sleepstudy.csv", "r");
    FILE *out = fopen(path, "w");
    cr_assert(in && out);
    char line[256];
    cr_assert(fgets(line, sizeof line, in));
    line[strcspn(line, "\r\n")] = '\0';
    fprintf(out, "%s,g2\n", line);
    while (fgets(line, sizeof line, in)) {
        line[strcspn(line, "\r\n")] = '\0';
        fprintf(out, "%s,%d\n", line, atoi(strrchr(line, ',') + 1) % 3);
    }
    fclose(in);
    fclose(out);
    return path;
}

static void check_case(const char *name)
{
    char path[1024];
    ref_file r;
    snprintf(path, sizeof path, REFDIR "ddf_%s.ref", name);
    cr_assert_eq(ref_load(path, &r), 0, "cannot read %s", path);
    const int unbal = ref_get(&r, "subset") != NULL || ref_get(&r, "derive") != NULL;
    if (ref_get(&r, "derive"))
        snprintf(path, sizeof path, "%s", g2_csv());
    else if (unbal)
        snprintf(path, sizeof path, "%s", unbalanced_csv());
    else
        snprintf(path, sizeof path, "%s/data/%s", MLMX_SOURCE_DIR, ref_get(&r, "data")->rest);
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = ref_fit_lmm_at_theta(&r, path, &d, &m);
    if (unbal)
        remove(path);
    cr_assert_eq((double)mlmx_model_nobs(m), ref_num(&r, "nobs", 0));
    const int p = mlmx_model_nfixef(m);
    double df[64], t[64], pv[64];
    cr_assert(p <= 64);
    cr_assert_eq(mlmx_fit_coef_tests(f, df, t, pv), MLMX_OK, "%s", mlmx_last_error());
    int n = 0;
    for (const ref_line *l; (l = ref_get_nth(&r, "coef", n)) != NULL; n++) {
        cr_assert_eq(l->ntok, 6);
        cr_assert(n < p);
        const double se = strtod(l->tok[2], NULL), rdf = strtod(l->tok[3], NULL);
        const double rt = strtod(l->tok[4], NULL), rp = strtod(l->tok[5], NULL);
        cr_expect(close_rel(mlmx_fit_se(f)[n], se, 1e-7, 0), "%s %s: se %.10g vs %.10g", name,
                  l->tok[0], mlmx_fit_se(f)[n], se);
        cr_expect(close_rel(t[n], rt, 1e-7, 0), "%s %s: t %.10g vs %.10g", name, l->tok[0], t[n],
                  rt);
        cr_expect(close_rel(df[n], rdf, 1e-4, 0), "%s %s: df %.10g vs %.10g (rel %.2g)", name,
                  l->tok[0], df[n], rdf, fabs(df[n] / rdf - 1));
        cr_expect(close_rel(pv[n], rp, 1e-4, 1e-300), "%s %s: p %.10g vs %.10g (rel %.2g)", name,
                  l->tok[0], pv[n], rp, fabs(pv[n] / rp - 1));
    }
    cr_expect_eq(n, p, "%s: %d coefficients in the fixture, %d in the model", name, n, p);
    check_anova(&r, f, name, "anova3", MLMX_DDF_SATTERTHWAITE);
    if (ref_get(&r, "coef_kr")) {
        check_kr(&r, f, name);
        check_anova(&r, f, name, "anova3_kr", MLMX_DDF_KENWARD_ROGER);
    }
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    ref_free(&r);
}

Test(ddf, sleepstudy) { check_case("sleepstudy"); }
Test(ddf, sleepstudy_ml) { check_case("sleepstudy_ml"); }
Test(ddf, sleepstudy_unbalanced) { check_case("sleepstudy_unbalanced"); }
Test(ddf, classroom) { check_case("classroom"); }
Test(ddf, hsb, .timeout = 60) { check_case("hsb"); }
Test(ddf, bodyweight) { check_case("bodyweight"); }
Test(ddf, penicillin) { check_case("penicillin"); }
/* singular fits: the Hessian by second differences of the deviance
 * through the boundary, as lmerTest's numDeriv */
Test(ddf, dyestuff2_singular) { check_case("dyestuff2_singular"); }
Test(ddf, sleepstudy_g2_singular) { check_case("sleepstudy_g2_singular"); }

/* A GLMM is refused with the reason. */
Test(ddf, refusals)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    double df[4], t[4], p[4];
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/cbpp.csv", &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, "cbind(incidence, size - incidence) ~ factor(period) + (1|herd)", &m),
                 MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = MLMX_FAMILY_BINOMIAL;
    cr_assert_eq(mlmx_fit_glmm(m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    cr_expect_eq(mlmx_fit_coef_tests(f, df, t, p), MLMX_ERR_UNSUPPORTED);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}


/* mlmx fit --ddf kenward-roger --anova --json: the summary's columns, the
 * Type III table and the JSON keys, against the fixture's numbers. */
Test(ddf, cli_kenward_roger_anova)
{
    char dir[] = "/tmp/mlmx_ddf_cli_XXXXXX", cmd[2048], out[300], json[300];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(out, sizeof out, "%s/out.txt", dir);
    snprintf(json, sizeof json, "%s/fit.json", dir);
    snprintf(cmd, sizeof cmd,
             "'%s' fit --data '%s/data/bodyweight.csv' --formula 'weight ~ Time * factor(Diet) + "
             "(Time|Rat)' --ddf kenward-roger --anova --json '%s' > '%s'",
             MLMX_CLI_PATH, MLMX_SOURCE_DIR, json, out);
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mlmx fit failed");
    char *sum = ref_slurp(out), *j = ref_slurp(json);
    cr_assert(sum && j);
    const char *must[] = {"Linear mixed model fit by REML. t-tests use Kenward-Roger's method",
                          "Estimate Std. Error     df t value Pr(>|t|)",
                          "Type III Analysis of Variance Table with Kenward-Roger's method",
                          "Time:factor(Diet)", "Signif. codes", NULL};
    for (int i = 0; must[i]; i++)
        cr_expect(strstr(sum, must[i]) != NULL, "output lacks '%s':\n%s", must[i], sum);
    const char *keys[] = {"\"coef_tests\": {\"method\": \"kenward-roger\"",
                          "\"anova\": {\"type\": 3, \"method\": \"kenward-roger\"",
                          "{\"term\": \"factor(Diet)\"", NULL};
    for (int i = 0; keys[i]; i++)
        cr_expect(strstr(j, keys[i]) != NULL, "JSON lacks %s", keys[i]);
    /* the F of factor(Diet) (the optimizer's own estimates: 1e-4) */
    const char *fd = strstr(j, "{\"term\": \"factor(Diet)\"");
    cr_assert_not_null(fd);
    const char *fv = strstr(fd, "\"F\": ");
    cr_assert_not_null(fv);
    ref_file r;
    cr_assert_eq(ref_load(REFDIR "ddf_bodyweight.ref", &r), 0);
    const ref_line *l = ref_get_nth(&r, "anova3_kr", 1);
    cr_assert(l && strcmp(l->tok[0], "factor(Diet)") == 0);
    cr_expect(close_rel(strtod(fv + 5, NULL), strtod(l->tok[5], NULL), 1e-4, 0), "F %s vs %s",
              fv + 5, l->tok[5]);
    ref_free(&r);
    free(sum);
    free(j);
    remove(out);
    remove(json);
    rmdir(dir);
}

/* --ddf's usage errors: an unknown method, Kenward-Roger on an ML fit,
 * --ddf on a GLMM (exit 2, the reason on standard error). */
Test(ddf, cli_usage_errors)
{
    const char *cases[][2] = {
        {"--ddf foo", "satterthwaite, kenward-roger, containment or none"},
        {"--ml --ddf kenward-roger", "needs a REML fit"},
        {"--family poisson --ddf satterthwaite", "for linear mixed models"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cmd[1024], err[64];
        snprintf(err, sizeof err, "/tmp/mlmx_ddf_err_%d.txt", (int)getpid());
        snprintf(cmd, sizeof cmd,
                 "'%s' fit --data '%s/data/sleepstudy.csv' --formula 'Reaction ~ Days + "
                 "(1|Subject)' %s > /dev/null 2> '%s'",
                 MLMX_CLI_PATH, MLMX_SOURCE_DIR, cases[i][0], err);
        int st = system(cmd);
        cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s: exit %d", cases[i][0],
                  WEXITSTATUS(st));
        char *e = ref_slurp(err);
        cr_expect(e && strstr(e, cases[i][1]), "%s: stderr '%s'", cases[i][0], e ? e : "");
        free(e);
        remove(err);
    }
}
