/* The glmm-1ri batch engine's CPU rows against the workspace refit
 * (mlmx_workspace_simulate + mlmx_workspace_fit), replicate by replicate:
 *   - the simulated response is bitwise the workspace's;
 *   - the criterion agrees to 1e-6 relative, theta and beta to
 *     1e-4 (1 + |value|), the beta SEs to 1e-3 relative (both sides take
 *     forward differences of the analytic gradient with the same steps)
 * on converged, non-singular replicates where the workspace's BFGS
 * converged too (it polishes others with BOBYQA, which the engine does
 * not). Also the analytic gradient against central differences, and the
 * models the engine refuses. Data: lme4's cbpp and grouseticks (data/). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlmx.h"
#include "replicate/glmm_batch_engine.h"
#include "replicate/replicate.h"

#define NREP 20
#define SEED 20240611u

typedef struct fixture {
    mlmx_data *d;
    mlmx_model *m;
    mlmx_fit *f;
    mlmx_problem *P;
} fixture;

static void setup(fixture *x, const char *csv, const char *formula, mlmx_family fam, int nagq)
{
    memset(x, 0, sizeof *x);
    cr_assert_eq(mlmx_data_read_csv(csv, &x->d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(x->d, formula, &x->m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = fam;
    o.nagq = nagq;
    cr_assert_eq(mlmx_fit_glmm(x->m, &o, &x->f), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_problem_create(x->f, &x->P), MLMX_OK, "%s", mlmx_last_error());
}

static void teardown(fixture *x)
{
    mlmx_problem_free(x->P);
    mlmx_fit_free(x->f);
    mlmx_model_free(x->m);
    mlmx_data_free(x->d);
}

static int close_to(double a, double b, double rel, double abs_tol)
{
    return fabs(a - b) <= rel * fabs(b) + abs_tol;
}

/* Engine rows for replicates 0..nrep-1 (nrep <= NREP) against workspaces. */
static void compare_n(const char *csv, const char *formula, mlmx_family fam, int nagq, int nrep)
{
    cr_assert(nrep >= 1 && nrep <= NREP);
    fixture x;
    setup(&x, csv, formula, fam, nagq);
    mlmx_batch_engine E;
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_eq(mlmx_gb_engine_init(x.P, &E, &err), MLMX_OK, "%s", err.msg);
    cr_assert_str_eq(E.name, "glmm-1ri");
    const mlmx_gb_shared *S = mlmx_gb_engine_shared(&E);
    cr_assert_not_null(S);
    const int p = S->p, n = S->n;
    uint64_t reps[NREP];
    double th[NREP], be[NREP * MLMX_GB_PMAX], se[NREP * MLMX_GB_PMAX], sg[NREP], cr[NREP];
    int nev[NREP];
    signed char cv[NREP], sn[NREP], stt[NREP];
    for (int r = 0; r < nrep; r++)
        reps[r] = (uint64_t)r;
    mlmx_batch_job J = {SEED, reps, (size_t)nrep, th, be, se, sg, cr, nev, cv, sn, stt};
    E.cpu_rows(E.impl, &J, 0, (size_t)nrep);

    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(x.P, &W), MLMX_OK, "%s", mlmx_last_error());
    double *y = malloc((size_t)n * sizeof *y), *yb = malloc((size_t)n * sizeof *yb);
    double *ub = malloc((size_t)S->nclu * sizeof *ub);
    cr_assert(y && yb && ub);
    int compared = 0;
    for (int r = 0; r < nrep; r++) {
        cr_assert_eq(mlmx_workspace_simulate(W, SEED, (uint64_t)r, y), MLMX_OK);
        mlmx_gb_rep R = {yb, ub, 1, 1};
        cr_assert(isfinite(mlmx_gb_simulate(S, SEED, (uint64_t)r, &R)));
        for (int i = 0; i < n; i++)
            cr_assert_eq(y[i], yb[S->pos[i]], "rep %d obs %d: workspace %g, engine %g", r, i,
                         y[i], yb[S->pos[i]]);
        cr_assert_eq(mlmx_workspace_fit(W, 1), MLMX_OK, "%s", mlmx_last_error());
        cr_assert_eq(stt[r], 1, "rep %d failed", r);
        cr_expect(isnan(sg[r]));
        const int wconv = mlmx_workspace_converged(W);
        if (!cv[r] || sn[r] || mlmx_workspace_singular(W) || !wconv)
            continue;
        compared++;
        const double wc = mlmx_workspace_criterion(W);
        cr_expect(close_to(cr[r], wc, 1e-6, 0.0), "rep %d criterion %.12g vs %.12g", r, cr[r], wc);
        const double wt = mlmx_workspace_theta(W)[0];
        cr_expect(close_to(th[r], wt, 1e-4, 1e-4), "rep %d theta %.8g vs %.8g", r, th[r], wt);
        for (int j = 0; j < p; j++) {
            const double wb = mlmx_workspace_beta(W)[j], ws = mlmx_workspace_se(W)[j];
            cr_expect(close_to(be[r * p + j], wb, 1e-4, 1e-4), "rep %d beta %d %.8g vs %.8g", r,
                      j, be[r * p + j], wb);
            cr_expect(close_to(se[r * p + j], ws, 1e-3, 1e-6), "rep %d se %d %.8g vs %.8g", r,
                      j, se[r * p + j], ws);
        }
    }
    if (getenv("MLMX_GB_VERBOSE"))
        fprintf(stderr, "%s nagq %d: %d of %d compared\n", formula, nagq, compared, nrep);
    cr_expect_geq(compared, nrep / 2, "only %d of %d replicates compared", compared, nrep);
    free(y);
    free(yb);
    free(ub);
    mlmx_workspace_free(W);
    E.free(E.impl);
    teardown(&x);
}

static void compare(const char *csv, const char *formula, mlmx_family fam, int nagq)
{
    compare_n(csv, formula, fam, nagq, NREP);
}

#define CBPP MLMX_SOURCE_DIR "/data/cbpp.csv"
#define CBPP_F "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)"
#define GROUSE MLMX_SOURCE_DIR "/data/grouseticks.csv"
#define GROUSE_F "TICKS ~ factor(YEAR) + (1 | BROOD)"

Test(glmm_batch, cbpp_laplace_equals_workspace, .timeout = 120)
{
    compare(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, 1);
}

Test(glmm_batch, cbpp_agq25_equals_workspace, .timeout = 120)
{
    compare(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, 25);
}

Test(glmm_batch, grouseticks_poisson_laplace_equals_workspace, .timeout = 120)
{
    compare(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 1);
}

Test(glmm_batch, grouseticks_poisson_agq9_equals_workspace, .timeout = 120)
{
    compare(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 9);
}

/* A 0/1 response given as a two-level factor (lme4's VerbAgg, 7584
 * observations in 316 clusters, five fixed effects). */
Test(glmm_batch, verbagg_binary_factor_response_equals_workspace, .timeout = 120)
{
    compare_n(MLMX_SOURCE_DIR "/data/verbagg.csv", "r2 ~ Anger + Gender + btype + situ + (1 | id)",
              MLMX_FAMILY_BINOMIAL, 1, 6);
    compare_n(MLMX_SOURCE_DIR "/data/verbagg.csv", "r2 ~ Anger + Gender + btype + situ + (1 | id)",
              MLMX_FAMILY_BINOMIAL, 15, 4);
}

/* The analytic gradient (Laplace and quadrature) against central
 * differences of the criterion, at a point away from the optimum. The
 * step is 5e-4 relative: each cluster's mode is converged to ~1e-10, which
 * moves the Laplace value by ~1e-10 per cluster, noise that smaller steps
 * would amplify past the tolerance. */
static void gradient_check(const char *csv, const char *formula, mlmx_family fam, int nagq)
{
    fixture x;
    setup(&x, csv, formula, fam, nagq);
    mlmx_batch_engine E;
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_eq(mlmx_gb_engine_init(x.P, &E, &err), MLMX_OK, "%s", err.msg);
    const mlmx_gb_shared *S = mlmx_gb_engine_shared(&E);
    double *y = malloc((size_t)S->n * sizeof *y), *u = calloc((size_t)S->nclu, sizeof *u);
    mlmx_gb_rep R = {y, u, 1, 1};
    cr_assert(isfinite(mlmx_gb_simulate(S, SEED, 3, &R)));
    double xv[MLMX_GB_NPMAX] = {0}, g[MLMX_GB_NPMAX], gd[MLMX_GB_NPMAX];
    for (int j = 0; j < S->np; j++)
        xv[j] = S->x0[j] * 1.1 + 0.05;
    mlmx_gb_eval_part(S, &R, xv, g, 0, 1);
    for (int j = 0; j < S->np; j++) {
        const double h = 5e-4 * fmax(fabs(xv[j]), 0.1), keep = xv[j];
        xv[j] = keep + h;
        const double fp = mlmx_gb_eval_part(S, &R, xv, gd, 0, 1);
        xv[j] = keep - h;
        const double fm = mlmx_gb_eval_part(S, &R, xv, gd, 0, 1);
        xv[j] = keep;
        const double fd = (fp - fm) / (2.0 * h);
        cr_expect(close_to(g[j], fd, 1e-5, 1e-5), "nagq %d d/dx%d: analytic %.10g, differences %.10g",
                  nagq, j, g[j], fd);
    }
    free(y);
    free(u);
    E.free(E.impl);
    teardown(&x);
}

Test(glmm_batch, gradient_matches_differences, .timeout = 60)
{
    gradient_check(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, 1);
    gradient_check(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, 25);
    gradient_check(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 1);
    gradient_check(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 7);
}

static void refused(const char *csv, const char *formula, mlmx_family fam, mlmx_link link,
                    const char *why)
{
    fixture x;
    memset(&x, 0, sizeof x);
    cr_assert_eq(mlmx_data_read_csv(csv, &x.d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(x.d, formula, &x.m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = fam;
    o.link = link;
    mlmx_status st = fam == MLMX_FAMILY_GAUSSIAN ? mlmx_fit_lmm(x.m, &o, &x.f)
                                                 : mlmx_fit_glmm(x.m, &o, &x.f);
    cr_assert_eq(st, MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_problem_create(x.f, &x.P), MLMX_OK, "%s", mlmx_last_error());
    mlmx_batch_engine E;
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_expect_eq(mlmx_gb_engine_init(x.P, &E, &err), MLMX_ERR_UNSUPPORTED);
    cr_expect(strstr(err.msg, why) != NULL, "message '%s' lacks '%s'", err.msg, why);
    cr_expect_null(E.cpu_rows);
    teardown(&x);
}

Test(glmm_batch, uncovered_models_are_refused_with_a_reason, .timeout = 120)
{
    refused(GROUSE, "TICKS ~ factor(YEAR) + (1 | BROOD) + (1 | LOCATION)", MLMX_FAMILY_POISSON,
            MLMX_LINK_DEFAULT, "more than one random-effect term");
    refused(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_PROBIT, "link other than logit");
    refused(MLMX_SOURCE_DIR "/data/sleepstudy.csv", "Reaction ~ Days + (1 | Subject)",
            MLMX_FAMILY_GAUSSIAN, MLMX_LINK_DEFAULT, "linear mixed model");
    mlmx_error err;
    mlmx_err_clear(&err);
    mlmx_batch_engine E;
    cr_expect_eq(mlmx_gb_engine_init(NULL, &E, &err), MLMX_ERR_ARG);
}
