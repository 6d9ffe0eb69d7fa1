#define _POSIX_C_SOURCE 200809L
/* Agreement with lme4 on the reference battery (data/reference/lmm/, made
 * by data/reference/lmm_reference.R with lme4 1.1-31 at tight tolerances).
 *
 * Tolerances (the acceptance criteria of issue 2):
 *   optimized criterion, logLik, AIC, BIC   relative 1e-6
 *   theta, beta, SE(beta), sigma            relative 1e-4 (absolute 1e-4
 *                                           floor in theta's own units for
 *                                           entries at or near zero)
 *   fixed-effect correlations, variances    relative 1e-4 / absolute 1e-4
 *   criterion at fixed theta (devfun)       relative 1e-9 (no optimizer)
 *   conditional modes and SDs               relative 1e-4 of the term's scale
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mlmx.h"
#include "refutil.h"

#define REFDIR MLMX_SOURCE_DIR "/data/reference/lmm/"

static int data_path(const char *file, char *out, size_t cap)
{
    /* every data set, InstEval included, is bundled in data/ */
    snprintf(out, cap, "%s/data/%s", MLMX_SOURCE_DIR, file);
    return access(out, R_OK) == 0 ? 0 : -1;
}

/* The fixtures drop spaces inside names (tokens are space-separated). */
static const char *nospace(const char *in, char *buf, size_t cap)
{
    size_t w = 0;
    for (const char *c = in; *c && w + 1 < cap; c++)
        if (*c != ' ')
            buf[w++] = *c;
    buf[w] = '\0';
    return buf;
}

typedef struct loaded {
    ref_file ref;
    mlmx_data *data;
    mlmx_model *model;
    mlmx_fit *fit;
} loaded;

static void load_case(const char *name, loaded *L, int fit, mlmx_optimizer opt)
{
    char path[1024];
    memset(L, 0, sizeof *L);
    snprintf(path, sizeof path, REFDIR "%s.ref", name);
    cr_assert_eq(ref_load(path, &L->ref), 0, "cannot read fixture %s", path);
    const ref_line *dl = ref_get(&L->ref, "data");
    const ref_line *fl = ref_get(&L->ref, "formula");
    cr_assert(dl && fl, "fixture %s lacks data or formula", name);
    cr_assert_eq(data_path(dl->rest, path, sizeof path), 0,
                 "data file %s is missing from data/", dl->rest);
    cr_assert_eq(mlmx_data_read_csv(path, &L->data), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(L->data, fl->rest, &L->model), MLMX_OK, "%s",
                 mlmx_last_error());
    if (fit) {
        mlmx_fit_options o;
        mlmx_fit_options_default(&o);
        o.method = strcmp(ref_get(&L->ref, "method")->rest, "ML") == 0 ? MLMX_ML : MLMX_REML;
        o.optimizer = opt;
        cr_assert_eq(mlmx_fit_lmm(L->model, &o, &L->fit), MLMX_OK, "%s", mlmx_last_error());
    }
}

static void unload(loaded *L)
{
    mlmx_fit_free(L->fit);
    mlmx_model_free(L->model);
    mlmx_data_free(L->data);
    ref_free(&L->ref);
}

static void check_case(const char *name, mlmx_optimizer opt)
{
    loaded L;
    load_case(name, &L, 1, opt);
    const ref_file *r = &L.ref;
    const mlmx_model *m = L.model;
    const mlmx_fit *f = L.fit;

    cr_expect(mlmx_fit_converged(f), "%s: not converged: %s", name, mlmx_fit_message(f));
    cr_expect_eq((double)mlmx_model_nobs(m), ref_num(r, "nobs", 0), "%s: nobs", name);
    double crit = ref_num(r, "criterion", 0);
    cr_expect(close_rel(mlmx_fit_criterion(f), crit, 1e-6, 1e-300),
              "%s: criterion %.12g vs lme4 %.12g", name, mlmx_fit_criterion(f), crit);
    cr_expect(close_rel(mlmx_fit_loglik(f), ref_num(r, "loglik", 0), 1e-6, 1e-300),
              "%s: logLik %.12g vs %.12g", name, mlmx_fit_loglik(f), ref_num(r, "loglik", 0));
    cr_expect(close_rel(mlmx_fit_aic(f), ref_num(r, "aic", 0), 1e-6, 1e-300), "%s: AIC", name);
    cr_expect(close_rel(mlmx_fit_bic(f), ref_num(r, "bic", 0), 1e-6, 1e-300), "%s: BIC", name);
    cr_expect_eq(mlmx_fit_df(f), (int)ref_num(r, "df", 0), "%s: df", name);
    cr_expect(close_rel(mlmx_fit_sigma(f), ref_num(r, "sigma", 0), 1e-4, 1e-300),
              "%s: sigma %.10g vs %.10g", name, mlmx_fit_sigma(f), ref_num(r, "sigma", 0));
    cr_expect_eq(mlmx_fit_singular(f), (int)ref_num(r, "singular", 0), "%s: singular", name);

    const ref_line *tn = ref_get(r, "theta_names");
    const ref_line *th = ref_get(r, "theta");
    cr_assert_eq(mlmx_model_ntheta(m), th->ntok, "%s: ntheta %d vs %d", name,
                 mlmx_model_ntheta(m), th->ntok);
    for (int t = 0; t < th->ntok; t++) {
        char nb[512];
        cr_expect_str_eq(nospace(mlmx_model_theta_name(m, t), nb, sizeof nb), tn->tok[t],
                         "%s: theta name %d", name, t);
        double ref = strtod(th->tok[t], NULL);
        cr_expect(close_rel(mlmx_fit_theta(f)[t], ref, 1e-4, 1.0), "%s: theta[%d] %.8g vs %.8g",
                  name, t, mlmx_fit_theta(f)[t], ref);
    }
    const ref_line *fn = ref_get(r, "fixef_names");
    const ref_line *be = ref_get(r, "beta");
    const ref_line *se = ref_get(r, "se");
    cr_assert_eq(mlmx_model_nfixef(m), fn->ntok, "%s: p", name);
    for (int j = 0; j < fn->ntok; j++) {
        char nm[512];
        cr_expect_str_eq(nospace(mlmx_model_fixef_name(m, j), nm, sizeof nm), fn->tok[j],
                         "%s: fixef name %d", name, j);
        double rb = strtod(be->tok[j], NULL), rs = strtod(se->tok[j], NULL);
        /* a coefficient's tolerance is scaled by its SE where it is near 0 */
        cr_expect(close_rel(mlmx_fit_beta(f)[j], rb, 1e-4, rs), "%s: beta[%s] %.10g vs %.10g",
                  name, fn->tok[j], mlmx_fit_beta(f)[j], rb);
        cr_expect(close_rel(mlmx_fit_se(f)[j], rs, 1e-4, 1e-300), "%s: se[%s] %.10g vs %.10g",
                  name, fn->tok[j], mlmx_fit_se(f)[j], rs);
    }
    /* correlation of fixed effects */
    int p = fn->ntok;
    const double *V = mlmx_fit_vcov(f);
    for (int a = 0; a < p; a++) {
        const ref_line *row = ref_get_nth(r, "fixcor", a);
        cr_assert(row, "%s: fixcor row %d", name, a);
        for (int c = 0; c < p; c++) {
            double mine = V[a + c * p] / sqrt(V[a + a * p] * V[c + c * p]);
            cr_expect(fabs(mine - strtod(row->tok[c], NULL)) < 1e-4, "%s: fixcor[%d,%d]", name,
                      a, c);
        }
    }
    /* variance components: vc lines in lme4's order, Residual last */
    int row = 0;
    for (int k = 0; k < mlmx_model_nterms(m); k++) {
        int q = mlmx_model_term_q(m, k);
        double cov[256];
        cr_assert_eq(mlmx_fit_term_covariance(f, k, cov), MLMX_OK);
        for (int a = 0; a < q; a++, row++) {
            const ref_line *vc = ref_get_nth(r, "vc", row);
            cr_assert(vc && vc->ntok >= 4, "%s: vc row %d", name, row);
            char b1[512], b2[512];
            cr_expect_str_eq(nospace(mlmx_model_term_name(m, k), b1, sizeof b1), vc->tok[0],
                             "%s: vc group", name);
            cr_expect_str_eq(nospace(mlmx_model_term_column(m, k, a), b2, sizeof b2), vc->tok[1],
                             "%s: vc name", name);
            double rv = strtod(vc->tok[2], NULL);
            cr_expect(close_rel(cov[a + a * q], rv, 2e-4, 1e-4 * mlmx_fit_sigma(f)),
                      "%s: variance %s %s %.8g vs %.8g", name, vc->tok[0], vc->tok[1],
                      cov[a + a * q], rv);
        }
    }
    const ref_line *res = ref_get_nth(r, "vc", row);
    cr_assert(res && strcmp(res->tok[0], "Residual") == 0, "%s: Residual row", name);
    unload(&L);
}

static void check_devfun(const char *name)
{
    loaded L;
    load_case(name, &L, 0, MLMX_OPTIM_AUTO);
    int reml = strcmp(ref_get(&L.ref, "method")->rest, "REML") == 0;
    char path[1024];
    snprintf(path, sizeof path, REFDIR "%s_devfun.csv", name);
    FILE *fp = fopen(path, "r");
    cr_assert(fp, "cannot open %s", path);
    char line[4096];
    cr_assert(fgets(line, sizeof line, fp));
    int nt = mlmx_model_ntheta(L.model), rows = 0;
    while (fgets(line, sizeof line, fp)) {
        double v[32];
        int nv = 0;
        char *save = NULL;
        for (char *t = strtok_r(line, ",\n", &save); t && nv < 32; t = strtok_r(NULL, ",\n", &save))
            v[nv++] = strtod(t, NULL);
        cr_assert_eq(nv, nt + 1, "%s: devfun row width", name);
        double mine;
        cr_assert_eq(mlmx_lmm_criterion_at(L.model, reml ? MLMX_REML : MLMX_ML, v, &mine),
                     MLMX_OK, "%s", mlmx_last_error());
        cr_expect(close_rel(mine, v[nt], 1e-9, 1e-300), "%s: criterion at row %d: %.15g vs %.15g",
                  name, rows, mine, v[nt]);
        rows++;
    }
    fclose(fp);
    cr_expect_geq(rows, 3);
    unload(&L);
}

static void check_ranef(const char *name)
{
    loaded L;
    load_case(name, &L, 1, MLMX_OPTIM_AUTO);
    const mlmx_model *m = L.model;
    char path[1024];
    snprintf(path, sizeof path, REFDIR "%s_ranef.csv", name);
    FILE *fp = fopen(path, "r");
    cr_assert(fp, "cannot open %s", path);
    char line[4096];
    cr_assert(fgets(line, sizeof line, fp));
    int rows = 0;
    while (fgets(line, sizeof line, fp)) {
        char *tok[5];
        int nt = 0;
        char *save = NULL;
        for (char *t = strtok_r(line, ",\n", &save); t && nt < 5; t = strtok_r(NULL, ",\n", &save))
            tok[nt++] = t;
        cr_assert_eq(nt, 5);
        int found = 0;
        for (int k = 0; k < mlmx_model_nterms(m) && !found; k++) {
            if (strcmp(mlmx_model_term_group(m, k), tok[0]) != 0)
                continue;
            for (int c = 0; c < mlmx_model_term_q(m, k) && !found; c++) {
                if (strcmp(mlmx_model_term_column(m, k, c), tok[2]) != 0)
                    continue;
                for (int l = 0; l < mlmx_model_term_nlevels(m, k); l++) {
                    if (strcmp(mlmx_model_term_level(m, k, l), tok[1]) != 0)
                        continue;
                    int q = mlmx_model_term_q(m, k);
                    double mode = mlmx_fit_ranef(L.fit, k)[l * q + c];
                    double sd = mlmx_fit_ranef_condsd(L.fit, k)[l * q + c];
                    double rm = strtod(tok[3], NULL), rs = strtod(tok[4], NULL);
                    cr_expect(close_rel(mode, rm, 1e-4, rs), "%s: mode %s/%s/%s %.8g vs %.8g",
                              name, tok[0], tok[1], tok[2], mode, rm);
                    cr_expect(close_rel(sd, rs, 1e-4, 1e-300), "%s: condsd %s/%s/%s %.8g vs %.8g",
                              name, tok[0], tok[1], tok[2], sd, rs);
                    found = 1;
                    break;
                }
            }
        }
        cr_expect(found, "%s: no random effect %s/%s/%s", name, tok[0], tok[1], tok[2]);
        rows++;
    }
    fclose(fp);
    cr_expect_gt(rows, 0);
    unload(&L);
}

/* Every case with the default (AUTO) choice, and with each optimizer forced,
 * so both paths are held to the same tolerances. */
/* (the timeout is a generous bound for InstEval under the sanitizers) */
#define REFERENCE_CASE(name)                                                                   \
    Test(lmm_reference, name, .timeout = 120) { check_case(#name, MLMX_OPTIM_AUTO); }          \
    Test(lmm_reference_bobyqa, name, .timeout = 120) { check_case(#name, MLMX_OPTIM_BOBYQA); } \
    Test(lmm_reference_qnewton, name, .timeout = 120)                                          \
    {                                                                                          \
        check_case(#name, MLMX_OPTIM_QUASI_NEWTON);                                            \
    }

REFERENCE_CASE(sleepstudy_reml)
REFERENCE_CASE(sleepstudy_ml)
REFERENCE_CASE(sleepstudy_uncor)
REFERENCE_CASE(sleepstudy_diag)
REFERENCE_CASE(penicillin)
REFERENCE_CASE(pastes)
REFERENCE_CASE(dyestuff_reml)
REFERENCE_CASE(dyestuff_ml)
REFERENCE_CASE(dyestuff2_reml)
REFERENCE_CASE(hsb)
REFERENCE_CASE(classroom_ml)
REFERENCE_CASE(veneer_ml)
REFERENCE_CASE(orthodont_reml)
REFERENCE_CASE(oats_reml)
REFERENCE_CASE(cake_reml)
REFERENCE_CASE(bodyweight_reml)
REFERENCE_CASE(sleepstudy_factor_ml)
REFERENCE_CASE(sleepstudy_rankdef)
REFERENCE_CASE(classroom_na_reml)
REFERENCE_CASE(orthodont_noint_ml)
REFERENCE_CASE(oats_factor_ml)
REFERENCE_CASE(oats_varietyre_reml)
REFERENCE_CASE(classroom3_reml)
REFERENCE_CASE(sim_nested4_reml)
REFERENCE_CASE(sim_nested4_ml)
REFERENCE_CASE(sim_crossed_reml)
REFERENCE_CASE(sim_crossed_diag_ml)
REFERENCE_CASE(insteval_reml)

Test(lmm_devfun, sleepstudy_reml) { check_devfun("sleepstudy_reml"); }
Test(lmm_devfun, penicillin) { check_devfun("penicillin"); }

Test(lmm_ranef, sleepstudy_reml) { check_ranef("sleepstudy_reml"); }
Test(lmm_ranef, penicillin) { check_ranef("penicillin"); }
Test(lmm_ranef, pastes) { check_ranef("pastes"); }

Test(lmm_fitted, sleepstudy_reml)
{
    loaded L;
    load_case("sleepstudy_reml", &L, 1, MLMX_OPTIM_AUTO);
    FILE *fp = fopen(REFDIR "sleepstudy_reml_fitted.csv", "r");
    cr_assert(fp);
    char line[256];
    cr_assert(fgets(line, sizeof line, fp));
    size_t i = 0;
    const double *fit = mlmx_fit_fitted(L.fit), *res = mlmx_fit_residuals(L.fit);
    while (fgets(line, sizeof line, fp)) {
        double a, b;
        cr_assert_eq(sscanf(line, "%lf,%lf", &a, &b), 2);
        cr_assert_lt(i, mlmx_model_nobs(L.model));
        cr_expect(fabs(fit[i] - a) < 1e-4 * fabs(a), "fitted[%zu] %.8g vs %.8g", i, fit[i], a);
        cr_expect(fabs(res[i] - b) < 1e-4 * 25.6, "resid[%zu] %.8g vs %.8g", i, res[i], b);
        i++;
    }
    fclose(fp);
    cr_expect_eq(i, mlmx_model_nobs(L.model));
    unload(&L);
}
