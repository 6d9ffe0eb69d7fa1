/* The glmm-1ri batch engine's CPU rows against the workspace refit
 * (mlmx_workspace_simulate + mlmx_workspace_fit), replicate by replicate:
 *   - the simulated response is bitwise the workspace's;
 *   - binomial and Poisson: the criterion agrees to 1e-6 relative, theta
 *     and beta to 1e-4 (1 + |value|), the beta SEs to 1e-3 relative (both
 *     sides take forward differences of the analytic gradient with the
 *     same steps);
 *   - ordinal (cumulative logit) and NB2: criterion 1e-7 relative, beta,
 *     thresholds and size 1e-5 (1 + |value|), theta 1e-4, SEs 5e-4
 *     relative (TOL_FAM; MLMX_GB_VERBOSE=1 prints the largest differences
 *     seen, ~1e-6 and below); the cumulative probit and cloglog too;
 *   - binomial probit and cloglog: TOL_LINK (beta 5e-5), under quadrature
 *     with these links TOL_LINK_AGQ (theta 5e-4, beta and thresholds 2e-4:
 *     the workspace's quadrature gradient is inexact there);
 *   - every family and link: the engine's criterion at the workspace's
 *     optimum equals the workspace's criterion to 1e-10 relative
 *     (TOL_SAME; seen: 1.7e-12 and below), and the engine's optimum is no
 *     higher than the workspace's (to 1e-10)
 * on converged, non-singular replicates where the workspace's BFGS
 * converged too (it polishes others with BOBYQA, which the engine does
 * not). Also the analytic gradient against central differences, 1 and 2
 * threads bit for bit, and the models the engine refuses. Data: lme4's
 * cbpp, grouseticks and VerbAgg, ordinal's wine, glmmTMB's salamanders
 * (data/), and the design of data/scenarios/ordinal_power.json. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glmmfit.h"
#include "mlmx.h"
#include "random.h"
#include "replicate/glmm_batch_engine.h"
#include "replicate/replicate.h"
#include "simulate.h"

#define NREP 20
#define SEED 20240611u

typedef glmmfit fixture;

static void setup_link(fixture *x, const char *csv, const char *formula, mlmx_family fam,
                       mlmx_link link, int nagq)
{
    glmmfit_open_link(x, csv, formula, fam, nagq, link, NULL);
}

static void setup(fixture *x, const char *csv, const char *formula, mlmx_family fam, int nagq)
{
    setup_link(x, csv, formula, fam, MLMX_LINK_DEFAULT, nagq);
}

static void teardown(fixture *x) { glmmfit_close(x); }

/* Agreement asked of one comparison: relative (+ the same absolute) for
 * theta, beta and the extra parameters (thresholds, size); relative for
 * the criterion and the SEs. */
typedef struct tols {
    double crit, theta, beta, extra, se;
} tols;

static const tols TOL_CANON = {1e-6, 1e-4, 1e-4, 0.0, 1e-3};
/* The ordinal and NB2 refits: the workspace steps BFGS on central
 * differences and polishes with BOBYQA, the engine follows its analytic
 * gradient; both reach the optimum, to these bounds. The SEs come from
 * different difference Hessians (the workspace's central differences of
 * deviances, the engine's forward differences of its gradient). */
static const tols TOL_FAM = {1e-7, 1e-4, 1e-5, 1e-5, 5e-4};
/* The binomial probit and cloglog: the workspace refits them as the
 * ordinal and NB2 models, and stops up to ~1e-8 relative above the
 * engine's optimum (which the criterion at the workspace's point, equal to
 * TOL_SAME, shows is the workspace's optimizer, not the definition); the
 * flat direction leaves beta ~1e-5 apart. Under quadrature the
 * workspace's gradient for these links leaves out the motion of the
 * rule's centre and scale (agq.c), and its BFGS stops ~1e-6 above:
 * TOL_LINK_AGQ. */
static const tols TOL_LINK = {1e-7, 1e-4, 5e-5, 1e-5, 5e-4};
static const tols TOL_LINK_AGQ = {1e-7, 5e-4, 2e-4, 2e-4, 5e-4};

/* The engine's criterion and the workspace's at the same point agree to
 * this (relative): the same definition, the modes converged to ~1e-10. */
#define TOL_SAME 1e-10

/* The engine's criterion (mlmx_gb_eval_part, cst: the constants) at the
 * workspace's optimum, mapped back to x = [theta; beta; extra] (thresholds
 * as c_1, log differences; the size as its log), for response R. */
static double crit_at_workspace(const mlmx_gb_shared *S, const mlmx_workspace *W, int npar,
                                const mlmx_gb_rep *R, double cst)
{
    double x[MLMX_GB_NPMAX], g[MLMX_GB_NPMAX];
    x[0] = mlmx_workspace_theta(W)[0];
    for (int j = 0, k = 1; j < S->pout; j++)
        if (j != S->int_col)
            x[k++] = mlmx_workspace_beta(W)[j];
    const double *ex = mlmx_workspace_params(W) + npar - S->ne;
    double *xe = x + 1 + S->p;
    for (int k = 0; k < S->ne; k++)
        xe[k] = S->fam == MLMX_FAM_NEGBIN ? log(ex[0]) : k == 0 ? ex[0] : log(ex[k] - ex[k - 1]);
    for (int c = 0; c < S->nclu; c++)
        R->u[c * R->us] = 0.0;
    return mlmx_gb_eval_part(S, R, x, g, 0, 1) - 2.0 * cst;
}

/* Engine rows for replicates 0..nrep-1 (nrep <= NREP) of problem P
 * against workspaces: responses bitwise, estimates to t. */
static void compare_problem(const mlmx_problem *P, const char *label, int nrep, const tols *t)
{
    cr_assert(nrep >= 1 && nrep <= NREP);
    mlmx_batch_engine E;
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_eq(mlmx_gb_engine_init(P, &E, &err), MLMX_OK, "%s", err.msg);
    cr_assert_str_eq(E.name, "glmm-1ri");
    const mlmx_gb_shared *S = mlmx_gb_engine_shared(&E);
    cr_assert_not_null(S);
    const int p = S->pout, n = S->n, ne = S->ne, npar = mlmx_problem_nparams(P);
    uint64_t reps[NREP];
    double th[NREP], be[NREP * MLMX_GB_PMAX], se[NREP * MLMX_GB_PMAX], sg[NREP], cr[NREP];
    double ex[NREP * MLMX_GB_EMAX];
    int nev[NREP];
    signed char cv[NREP], sn[NREP], stt[NREP];
    for (int r = 0; r < nrep; r++)
        reps[r] = (uint64_t)r;
    mlmx_batch_job J = {SEED, reps, (size_t)nrep, th, be, se, sg, cr, nev, cv, sn, stt};
    cr_assert_eq(E.set_extra_out != NULL, ne > 0);
    if (E.set_extra_out)
        E.set_extra_out(E.impl, ex);
    E.cpu_rows(E.impl, &J, 0, (size_t)nrep);

    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(P, &W), MLMX_OK, "%s", mlmx_last_error());
    double *y = malloc((size_t)n * sizeof *y), *yb = malloc((size_t)n * sizeof *yb);
    double *ub = malloc((size_t)S->nclu * sizeof *ub);
    cr_assert(y && yb && ub);
    int compared = 0;
    double dev[6] = {0}; /* largest differences: crit, theta, beta, extra, se, crit at ws */
    for (int r = 0; r < nrep; r++) {
        cr_assert_eq(mlmx_workspace_simulate(W, SEED, (uint64_t)r, y), MLMX_OK);
        mlmx_gb_rep R = {yb, ub, 1, 1};
        const double cst = mlmx_gb_simulate(S, SEED, (uint64_t)r, &R);
        cr_assert(isfinite(cst));
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
        cr_expect(close_to(cr[r], wc, t->crit, 0.0), "%s rep %d criterion %.12g vs %.12g", label,
                  r, cr[r], wc);
        const double wt = mlmx_workspace_theta(W)[0];
        dev[0] = fmax(dev[0], fabs(cr[r] - wc) / fabs(wc));
        const double at = crit_at_workspace(S, W, npar, &R, cst);
        dev[5] = fmax(dev[5], fabs(at - wc) / fabs(wc));
        cr_expect(close_to(at, wc, TOL_SAME, 0.0),
                  "%s rep %d criterion at the workspace's optimum %.15g vs %.15g", label, r, at,
                  wc);
        /* the engine's optimum is no worse than the workspace's */
        cr_expect(cr[r] <= wc + TOL_SAME * fabs(wc), "%s rep %d criterion %.15g above %.15g",
                  label, r, cr[r], wc);
        dev[1] = fmax(dev[1], fabs(th[r] - wt) / (1.0 + fabs(wt)));
        cr_expect(close_to(th[r], wt, t->theta, t->theta), "%s rep %d theta %.8g vs %.8g", label,
                  r, th[r], wt);
        for (int j = 0; j < p; j++) {
            const double wb = mlmx_workspace_beta(W)[j], ws = mlmx_workspace_se(W)[j];
            const double eb = be[r * p + j], es = se[r * p + j];
            dev[2] = fmax(dev[2], fabs(eb - wb) / (1.0 + fabs(wb)));
            if (!isnan(ws))
                dev[4] = fmax(dev[4], fabs(es - ws) / ws);
            cr_expect(close_to(eb, wb, t->beta, t->beta), "%s rep %d beta %d %.8g vs %.8g",
                      label, r, j, eb, wb);
            if (isnan(ws)) /* an ordinal model's intercept */
                cr_expect(isnan(es) && eb == 0.0, "%s rep %d beta %d: se %g", label, r, j, es);
            else
                cr_expect(close_to(es, ws, t->se, 1e-6), "%s rep %d se %d %.8g vs %.8g", label,
                          r, j, es, ws);
        }
        /* the extra parameters end the report parameters */
        const double *wx = mlmx_workspace_params(W) + npar - ne;
        for (int k = 0; k < ne; k++)
            dev[3] = fmax(dev[3], fabs(ex[r * ne + k] - wx[k]) / (1.0 + fabs(wx[k])));
        for (int k = 0; k < ne; k++)
            cr_expect(close_to(ex[r * ne + k], wx[k], t->extra, t->extra),
                      "%s rep %d extra %d %.10g vs %.10g", label, r, k, ex[r * ne + k], wx[k]);
    }
    if (getenv("MLMX_GB_VERBOSE"))
        fprintf(stderr,
                "%s: %d of %d compared; largest differences: criterion %.1e, theta %.1e, "
                "beta %.1e, extra %.1e, se %.1e; criterion at the workspace's optimum %.1e\n",
                label, compared, nrep, dev[0], dev[1], dev[2], dev[3], dev[4], dev[5]);
    cr_expect_geq(compared, nrep / 2, "%s: only %d of %d replicates compared", label, compared,
                  nrep);
    free(y);
    free(yb);
    free(ub);
    mlmx_workspace_free(W);
    E.free(E.impl);
}

/* Engine rows for replicates 0..nrep-1 (nrep <= NREP) against workspaces. */
static void compare_lt(const char *csv, const char *formula, mlmx_family fam, mlmx_link link,
                       int nagq, int nrep, const tols *t)
{
    fixture x;
    setup_link(&x, csv, formula, fam, link, nagq);
    char label[256];
    snprintf(label, sizeof label, "%s link %d nagq %d", formula, (int)link, nagq);
    compare_problem(x.P, label, nrep, t);
    teardown(&x);
}

static void compare_t(const char *csv, const char *formula, mlmx_family fam, int nagq, int nrep,
                      const tols *t)
{
    compare_lt(csv, formula, fam, MLMX_LINK_DEFAULT, nagq, nrep, t);
}

static void compare_n(const char *csv, const char *formula, mlmx_family fam, int nagq, int nrep)
{
    compare_t(csv, formula, fam, nagq, nrep, &TOL_CANON);
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

#define WINE MLMX_SOURCE_DIR "/data/wine.csv"
#define WINE_F "rating ~ temp + contact + (1 | judge)"
#define SALA MLMX_SOURCE_DIR "/data/salamanders.csv"
#define SALA_F "count ~ spp * mined + (1 | site)"

/* ordinal::clmm's wine model: 5 categories, 4 thresholds, 9 judges. */
Test(glmm_batch, wine_ordinal_laplace_equals_workspace, .timeout = 180)
{
    compare_t(WINE, WINE_F, MLMX_FAMILY_ORDINAL, 1, NREP, &TOL_FAM);
}

Test(glmm_batch, wine_ordinal_agq9_equals_workspace, .timeout = 180)
{
    compare_t(WINE, WINE_F, MLMX_FAMILY_ORDINAL, 9, 10, &TOL_FAM);
}

/* glmmTMB's nbinom2 salamanders model: 14 fixed effects, 23 sites. */
Test(glmm_batch, salamanders_nb2_laplace_equals_workspace, .timeout = 300)
{
    compare_t(SALA, SALA_F, MLMX_FAMILY_NEGBIN, 1, 8, &TOL_FAM);
}

Test(glmm_batch, salamanders_nb2_agq7_equals_workspace, .timeout = 300)
{
    compare_t(SALA, SALA_F, MLMX_FAMILY_NEGBIN, 7, 4, &TOL_FAM);
}

/* The data of data/scenarios/ordinal_power.json's design (30 groups of
 * 10, x ~ N(0, 1)) with a response drawn from its truth, and the problem
 * at that truth (theta 0.8, slope 0.3, thresholds -1, 0, 1.2): what mlmx
 * power refits 1,000 times. */
static void ordinal_power_problem(fixture *x)
{
    enum { G = 30, M = 10, N = G * M };
    static const double thr[3] = {-1.0, 0.0, 1.2};
    double xv[N], yv[N];
    char names[N][8];
    const char *gp[N];
    mlmx_rng r;
    mlmx_rng_init(&r, 77u, 0, 0);
    for (int g = 0; g < G; g++) {
        const double b = 0.8 * mlmx_rng_normal(&r);
        for (int k = 0; k < M; k++) {
            const int i = g * M + k;
            xv[i] = mlmx_rng_normal(&r);
            yv[i] = mlmx_sim_response(4, MLMX_LINK_LOGIT, 0.3 * xv[i] + b, 1.0, 1.0, 0.0, 4, thr,
                                      &r);
            snprintf(names[i], sizeof names[i], "g%02d", g);
            gp[i] = names[i];
        }
    }
    memset(x, 0, sizeof *x);
    cr_assert_eq(mlmx_data_create(N, &x->d), MLMX_OK);
    cr_assert_eq(mlmx_data_add_numeric(x->d, "y", yv, NULL), MLMX_OK);
    cr_assert_eq(mlmx_data_add_numeric(x->d, "x", xv, NULL), MLMX_OK);
    cr_assert_eq(mlmx_data_add_strings(x->d, "g", gp), MLMX_OK);
    cr_assert_eq(mlmx_model_create(x->d, "y ~ x + (1 | g)", &x->m), MLMX_OK, "%s",
                 mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = MLMX_FAMILY_ORDINAL;
    const double theta = 0.8, beta[2] = {0.0, 0.3};
    cr_assert_eq(mlmx_problem_create_at(x->m, &o, &theta, beta, thr, 1.0, &x->P), MLMX_OK, "%s",
                 mlmx_last_error());
}

Test(glmm_batch, ordinal_power_model_equals_workspace, .timeout = 180)
{
    fixture x;
    ordinal_power_problem(&x);
    compare_problem(x.P, "ordinal_power", NREP, &TOL_FAM);
    teardown(&x);
}

/* The same rows from 1 and 2 threads, bit for bit (each replicate's fit
 * depends on its key only). */
static void threads_identical(const mlmx_problem *P, int nrep)
{
    mlmx_batch_engine E;
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_eq(mlmx_gb_engine_init(P, &E, &err), MLMX_OK, "%s", err.msg);
    const mlmx_gb_shared *S = mlmx_gb_engine_shared(&E);
    const size_t m = (size_t)nrep, p = (size_t)S->pout, ne = (size_t)(S->ne ? S->ne : 1);
    double *buf[2];
    for (int t = 0; t < 2; t++) {
        /* theta, crit, sigma (m each), beta, se (m p each), extra (m ne) */
        buf[t] = calloc(m * (3 + 2 * p + ne), sizeof(double));
        cr_assert_not_null(buf[t]);
    }
    uint64_t *reps = malloc(m * sizeof *reps);
    int *nev = malloc(2 * m * sizeof *nev);
    signed char *fl = malloc(6 * m);
    cr_assert(reps && nev && fl);
    for (size_t i = 0; i < m; i++)
        reps[i] = 5 * i + 1;
    for (int t = 0; t < 2; t++) {
        double *b = buf[t];
        mlmx_batch_job J = {SEED,         reps,         m,         b,         b + 3 * m,
                            b + 3 * m + m * p,          b + 2 * m, b + m,     nev + t * m,
                            fl + 3 * t * m, fl + 3 * t * m + m,    fl + 3 * t * m + 2 * m};
        if (E.set_extra_out)
            E.set_extra_out(E.impl, b + 3 * m + 2 * m * p);
        cr_assert_eq(mlmx_batch_run_cpu(&E, &J, t + 1, &err), MLMX_OK, "%s", err.msg);
    }
    cr_expect(memcmp(buf[0], buf[1], m * (3 + 2 * p + ne) * sizeof(double)) == 0,
              "1 and 2 threads differ");
    cr_expect(memcmp(nev, nev + m, m * sizeof *nev) == 0 && memcmp(fl, fl + 3 * m, 3 * m) == 0);
    for (size_t i = 0; i < m; i++)
        cr_expect_eq(fl[2 * m + i], 1, "rep %zu failed", i);
    free(buf[0]);
    free(buf[1]);
    free(reps);
    free(nev);
    free(fl);
    E.free(E.impl);
}

Test(glmm_batch, one_and_two_threads_identical, .timeout = 180)
{
    fixture x;
    setup(&x, WINE, WINE_F, MLMX_FAMILY_ORDINAL, 1);
    threads_identical(x.P, 12);
    teardown(&x);
    setup(&x, SALA, SALA_F, MLMX_FAMILY_NEGBIN, 1);
    threads_identical(x.P, 6);
    teardown(&x);
}

/* The analytic gradient (Laplace and quadrature) against central
 * differences of the criterion, at a point away from the optimum. The
 * step is 5e-4 relative: each cluster's mode is converged to ~1e-10, which
 * moves the Laplace value by ~1e-10 per cluster, noise that smaller steps
 * would amplify past the tolerance. */
static void gradient_check_link(const char *csv, const char *formula, mlmx_family fam,
                                mlmx_link link, int nagq)
{
    fixture x;
    setup_link(&x, csv, formula, fam, link, nagq);
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
        cr_expect(close_to(g[j], fd, 1e-5, 1e-5),
                  "link %d nagq %d d/dx%d: analytic %.10g, differences %.10g", (int)link, nagq, j,
                  g[j], fd);
    }
    free(y);
    free(u);
    E.free(E.impl);
    teardown(&x);
}

static void gradient_check(const char *csv, const char *formula, mlmx_family fam, int nagq)
{
    gradient_check_link(csv, formula, fam, MLMX_LINK_DEFAULT, nagq);
}

Test(glmm_batch, gradient_matches_differences, .timeout = 60)
{
    gradient_check(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, 1);
    gradient_check(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, 25);
    gradient_check(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 1);
    gradient_check(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 7);
}

/* The thresholds' and the log-size's derivatives too. */
Test(glmm_batch, ordinal_nb2_gradient_matches_differences, .timeout = 120)
{
    gradient_check(WINE, WINE_F, MLMX_FAMILY_ORDINAL, 1);
    gradient_check(WINE, WINE_F, MLMX_FAMILY_ORDINAL, 11);
    gradient_check(SALA, SALA_F, MLMX_FAMILY_NEGBIN, 1);
    gradient_check(SALA, SALA_F, MLMX_FAMILY_NEGBIN, 5);
}

/* The binomial probit and cloglog (Fisher information in the criterion,
 * the mode moving with the observed one) and the cumulative probit and
 * cloglog (their thresholds' second and third derivatives). */
Test(glmm_batch, link_gradient_matches_differences, .timeout = 120)
{
    const mlmx_link L[2] = {MLMX_LINK_PROBIT, MLMX_LINK_CLOGLOG};
    for (int l = 0; l < 2; l++) {
        gradient_check_link(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, L[l], 1);
        gradient_check_link(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, L[l], 9);
        gradient_check_link(WINE, WINE_F, MLMX_FAMILY_ORDINAL, L[l], 1);
        gradient_check_link(WINE, WINE_F, MLMX_FAMILY_ORDINAL, L[l], 7);
    }
}

/* The non-canonical links: the workspace refits them as the ordinal and
 * NB2 models (BFGS on differences, a BOBYQA polish): TOL_FAM for the
 * cumulative links, TOL_LINK for the binomial, TOL_LINK_AGQ under
 * quadrature. */
Test(glmm_batch, cbpp_probit_cloglog_equal_workspace, .timeout = 180)
{
    compare_lt(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_PROBIT, 1, NREP, &TOL_LINK);
    compare_lt(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_CLOGLOG, 1, NREP, &TOL_LINK);
    compare_lt(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_PROBIT, 9, 8, &TOL_LINK_AGQ);
}

Test(glmm_batch, wine_probit_cloglog_equal_workspace, .timeout = 240)
{
    compare_lt(WINE, WINE_F, MLMX_FAMILY_ORDINAL, MLMX_LINK_PROBIT, 1, NREP, &TOL_FAM);
    compare_lt(WINE, WINE_F, MLMX_FAMILY_ORDINAL, MLMX_LINK_CLOGLOG, 1, NREP, &TOL_FAM);
    compare_lt(WINE, WINE_F, MLMX_FAMILY_ORDINAL, MLMX_LINK_CLOGLOG, 7, 8, &TOL_LINK_AGQ);
}

static void refused_opt(const char *csv, const char *formula, mlmx_family fam, mlmx_link link,
                        mlmx_optimizer opt, const char *why)
{
    fixture x;
    memset(&x, 0, sizeof x);
    cr_assert_eq(mlmx_data_read_csv(csv, &x.d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(x.d, formula, &x.m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = fam;
    o.link = link;
    o.optimizer = opt;
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

static void refused(const char *csv, const char *formula, mlmx_family fam, mlmx_link link,
                    const char *why)
{
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    refused_opt(csv, formula, fam, link, o.optimizer, why);
}

Test(glmm_batch, uncovered_models_are_refused_with_a_reason, .timeout = 120)
{
    refused(GROUSE, "TICKS ~ factor(YEAR) + (1 | BROOD) + (1 | LOCATION)", MLMX_FAMILY_POISSON,
            MLMX_LINK_DEFAULT, "more than one random-effect term");
    refused(MLMX_SOURCE_DIR "/data/sleepstudy.csv", "Reaction ~ Days + (1 | Subject)",
            MLMX_FAMILY_GAUSSIAN, MLMX_LINK_DEFAULT, "linear mixed model");
    mlmx_error err;
    mlmx_err_clear(&err);
    mlmx_batch_engine E;
    cr_expect_eq(mlmx_gb_engine_init(NULL, &E, &err), MLMX_ERR_ARG);
}
