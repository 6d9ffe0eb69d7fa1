/* The GLMM engine's vector path ("glmm-vec": one random-effect term with
 * q = 2..3 correlated columns, Laplace; kernels/glmm_batch_vec.h) against
 * the workspace refit (mlmx_workspace_simulate + mlmx_workspace_fit), on
 * hdp's remission ~ IL6 + CRP + LengthofStay + (1 + LengthofStay | HID)
 * (binomial, 8,525 observations in 35 hospitals), salamanders' count ~
 * spp + mined + (1 + DOY | site) (Poisson and NB2, 644 observations in 23
 * sites) and wine's rating ~ temp + contact + (1 + contact | judge)
 * (ordinal, 9 judges):
 *   - the simulated response is bitwise the workspace's;
 *   - the criterion and its gradient at fixed points (q = 2 and 3) against
 *     the workspace's own mlmx_glmm_laplace_grad (binomial, Poisson) or
 *     mlmx_glmm_laplace (NB2): 1e-9 relative, and 1e-6 of the gradient's
 *     largest entry (the two PIRLS stop at different points);
 *   - the gradient against central differences: 1e-5 (every family,
 *     q = 2 and 3);
 *   - refits: binomial and Poisson criterion 1e-7 relative, theta and beta
 *     1e-4 (1 + |value|), SEs 1e-3 relative; NB2 and ordinal (the workspace
 *     steps BFGS on differences and polishes with BOBYQA) criterion 1e-7,
 *     beta and the extra parameters 1e-5, theta 1e-4, SEs 5e-4; on
 *     replicates neither side finds singular and whose workspace BFGS
 *     converged (MLMX_GB_VERBOSE=1 prints the largest differences seen);
 *     on the others the criterion to 1e-6 relative;
 *   - the replicate runner (what mlmx boot runs) takes the engine, and its
 *     report parameters equal the workspace refits' to the bounds above;
 *   - 1 and 2 threads give the same rows bit for bit; the models it does
 *     not cover are refused with a reason. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glmmfit.h"
#include "mlmx.h"
#include "replicate/glmm_batch_engine.h"
#include "replicate/replicate.h"
#include "replicate/runner.h"

#define NREP 12
#define SEED 20261202u

#define HDP MLMX_SOURCE_DIR "/data/hdp.csv"
#define HDP_F "remission ~ IL6 + CRP + LengthofStay + (1 + LengthofStay | HID)"
#define HDP_F3 "remission ~ IL6 + CRP + LengthofStay + (1 + LengthofStay + IL6 | HID)"
#define SALA MLMX_SOURCE_DIR "/data/salamanders.csv"
#define SALA_F "count ~ spp + mined + (1 + DOY | site)"
#define SALA_F3 "count ~ spp + mined + (1 + DOY + Wtemp | site)"
#define WINE MLMX_SOURCE_DIR "/data/wine.csv"
#define WINE_F "rating ~ temp + contact + (1 + temp | judge)"

typedef struct fixture {
    glmmfit g;
    mlmx_problem *P; /* g.P, or the problem at the lifted truth */
    mlmx_problem *lifted;
    mlmx_batch_engine E;
    const mlmx_gb_shared *S;
} fixture;

/* The problem at the fit's estimates; with `lift`, at the estimates with
 * every diagonal entry of T raised to at least `lift` (an interior truth,
 * as a power study's design: a fit with a correlation of +-1 has a
 * diagonal entry at its bound 0, where the criterion is flat in it). */
static void setup_lift_link(fixture *x, const char *csv, const char *formula, mlmx_family fam,
                            mlmx_link link, double lift)
{
    memset(x, 0, sizeof *x);
    mlmx_fit_options o;
    glmmfit_open_link(&x->g, csv, formula, fam, 1, link, &o);
    x->P = x->g.P;
    if (lift > 0.0) {
        double th[3], size = mlmx_fit_dispersion(x->g.f);
        cr_assert_eq(mlmx_model_ntheta(x->g.m), 3);
        memcpy(th, mlmx_fit_theta(x->g.f), sizeof th);
        th[0] = fmax(th[0], lift); /* q = 2: diagonal entries 0 and 2 */
        th[2] = fmax(th[2], lift);
        const double *extra = fam == MLMX_FAMILY_NEGBIN    ? &size
                              : fam == MLMX_FAMILY_ORDINAL ? mlmx_fit_thresholds(x->g.f)
                                                           : NULL;
        cr_assert_eq(mlmx_problem_create_at(x->g.m, &o, th, mlmx_fit_beta(x->g.f), extra, 1.0,
                                            &x->lifted),
                     MLMX_OK, "%s", mlmx_last_error());
        x->P = x->lifted;
    }
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_eq(mlmx_gb_engine_init(x->P, &x->E, &err), MLMX_OK, "%s", err.msg);
    cr_assert_str_eq(x->E.name, "glmm-vec");
    x->S = mlmx_gb_engine_shared(&x->E);
    cr_assert_not_null(x->S);
    cr_assert(x->S->q >= 2 && x->S->nth == x->S->q * (x->S->q + 1) / 2);
}

static void setup_lift(fixture *x, const char *csv, const char *formula, mlmx_family fam,
                       double lift)
{
    setup_lift_link(x, csv, formula, fam, MLMX_LINK_DEFAULT, lift);
}

static void setup(fixture *x, const char *csv, const char *formula, mlmx_family fam)
{
    setup_lift(x, csv, formula, fam, 0.0);
}

static void teardown(fixture *x)
{
    if (x->E.free)
        x->E.free(x->E.impl);
    mlmx_problem_free(x->lifted);
    glmmfit_close(&x->g);
}

/* A replicate's scratch: y (n) and the modes (nclu q), zeroed. */
static double *rep_alloc(const mlmx_gb_shared *S, mlmx_gb_rep *R)
{
    double *mem = calloc((size_t)S->n + (size_t)S->nclu * (size_t)S->q, sizeof *mem);
    cr_assert_not_null(mem);
    R->y = mem;
    R->u = mem + S->n;
    R->ys = R->us = 1;
    return mem;
}

/* A point away from the start: x0 scaled, theta's diagonal kept positive. */
static void test_point(const mlmx_gb_shared *S, int pt, double *xv)
{
    for (int j = 0; j < S->np; j++)
        xv[j] = S->x0[j] * (pt == 0 ? 1.0 : pt == 1 ? 0.8 : 1.3) + (j == pt ? 0.05 : 0.0);
}

/* ------------------------------------------------------------ the criterion */

/* At three points, the engine's criterion and gradient against the
 * workspace's Laplace code (glmm.c, grad.c) on the same simulated response. */
static void criterion_check(const char *csv, const char *formula, mlmx_family fam, double lift)
{
    fixture x;
    setup_lift(&x, csv, formula, fam, lift);
    const mlmx_gb_shared *S = x.S;
    const int n = S->n, np = S->np, nth = S->nth;
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(x.P, &W), MLMX_OK, "%s", mlmx_last_error());
    double *y = malloc((size_t)n * sizeof *y);
    mlmx_gb_rep R;
    double *mem = rep_alloc(S, &R);
    cr_assert_eq(mlmx_workspace_simulate(W, SEED, 5, y), MLMX_OK);
    const double cst = mlmx_gb_simulate(S, SEED, 5, &R);
    cr_assert(isfinite(cst));
    for (int i = 0; i < n; i++)
        cr_assert_eq(y[i], R.y[S->pos[i]], "obs %d: workspace %g, engine %g", i, y[i],
                     R.y[S->pos[i]]);
    mlmx_glmm *g = glmm_on_response(x.g.m, fam, y);
    mlmx_error e;
    mlmx_err_clear(&e);
    const int grad = mlmx_glmm_has_grad(g);
    for (int pt = 0; pt < 3; pt++) {
        double xv[MLMX_GB_NPMAX], ge[MLMX_GB_NPMAX], gw[MLMX_GB_NPMAX], dw = NAN;
        test_point(S, pt, xv);
        const double de = mlmx_gb_eval_part(S, &R, xv, ge, 0, 1) - 2.0 * cst;
        memset(g->u, 0, g->nu * sizeof *g->u);
        if (fam == MLMX_FAMILY_NEGBIN)
            g->nb_size = exp(xv[np - 1]);
        if (grad)
            cr_assert_eq(mlmx_glmm_laplace_grad(g, xv, xv + nth, &dw, gw, &e), MLMX_OK, "%s",
                         e.msg);
        else
            cr_assert_eq(mlmx_glmm_laplace(g, xv, xv + nth, &dw, &e), MLMX_OK, "%s", e.msg);
        expect_like_workspace(de, dw, np, ge, grad ? gw : NULL, formula, pt);
    }
    mlmx_glmm_free(g);
    free(mem);
    free(y);
    mlmx_workspace_free(W);
    teardown(&x);
}

Test(glmm_vec_batch, hdp_criterion_equals_workspace, .timeout = 120)
{
    criterion_check(HDP, HDP_F, MLMX_FAMILY_BINOMIAL, 0.0);
    criterion_check(HDP, HDP_F3, MLMX_FAMILY_BINOMIAL, 0.0);
}

Test(glmm_vec_batch, salamanders_criterion_equals_workspace, .timeout = 120)
{
    criterion_check(SALA, SALA_F, MLMX_FAMILY_POISSON, 0.0);
    criterion_check(SALA, SALA_F3, MLMX_FAMILY_POISSON, 0.0);
    criterion_check(SALA, SALA_F, MLMX_FAMILY_NEGBIN, 0.1);
}

/* The analytic gradient against fourth-order central differences of the
 * criterion (NB2's theta derivative has a third derivative large enough
 * to leave second-order differences 1e-4 off at this step). The step is
 * 5e-4 relative, as test_glmm_batch.c's (the modes are converged to
 * ~1e-10, noise that smaller steps would amplify). */
static double fd_at(const mlmx_gb_shared *S, const mlmx_gb_rep *R, double *xv, int j, double h)
{
    double gd[MLMX_GB_NPMAX];
    const double keep = xv[j];
    xv[j] = keep + h;
    const double fp = mlmx_gb_eval_part(S, R, xv, gd, 0, 1);
    xv[j] = keep - h;
    const double fm = mlmx_gb_eval_part(S, R, xv, gd, 0, 1);
    xv[j] = keep;
    return fp - fm;
}

static void gradient_check_link(const char *csv, const char *formula, mlmx_family fam,
                                mlmx_link link, double lift)
{
    fixture x;
    setup_lift_link(&x, csv, formula, fam, link, lift);
    const mlmx_gb_shared *S = x.S;
    mlmx_gb_rep R;
    double *mem = rep_alloc(S, &R);
    cr_assert(isfinite(mlmx_gb_simulate(S, SEED, 3, &R)));
    double xv[MLMX_GB_NPMAX], g[MLMX_GB_NPMAX];
    test_point(S, 2, xv);
    mlmx_gb_eval_part(S, &R, xv, g, 0, 1);
    for (int j = 0; j < S->np; j++) {
        const double h = 5e-4 * fmax(fabs(xv[j]), 0.1);
        const double fd = (8.0 * fd_at(S, &R, xv, j, h) - fd_at(S, &R, xv, j, 2.0 * h)) / (12.0 * h);
        cr_expect(close_to(g[j], fd, 1e-5, 1e-5), "%s d/dx%d: analytic %.10g, differences %.10g",
                  formula, j, g[j], fd);
    }
    free(mem);
    teardown(&x);
}

static void gradient_check(const char *csv, const char *formula, mlmx_family fam, double lift)
{
    gradient_check_link(csv, formula, fam, MLMX_LINK_DEFAULT, lift);
}

Test(glmm_vec_batch, gradient_matches_differences, .timeout = 120)
{
    gradient_check(HDP, HDP_F, MLMX_FAMILY_BINOMIAL, 0.0);
    gradient_check(HDP, HDP_F3, MLMX_FAMILY_BINOMIAL, 0.0);
    gradient_check(SALA, SALA_F, MLMX_FAMILY_POISSON, 0.0);
    gradient_check(SALA, SALA_F3, MLMX_FAMILY_POISSON, 0.0);
    gradient_check(SALA, SALA_F, MLMX_FAMILY_NEGBIN, 0.1);
    gradient_check(WINE, WINE_F, MLMX_FAMILY_ORDINAL, 0.0);
}

/* ------------------------------------------------------------ refits */

typedef struct tols {
    double crit, theta, beta, extra, se;
} tols;

static const tols TOL_CANON = {1e-7, 1e-4, 1e-4, 0.0, 1e-3};
static const tols TOL_FAM = {1e-7, 1e-4, 1e-5, 1e-5, 5e-4};
/* wine's ordinal replicates (72 ratings, 9 judges) have a flat criterion:
 * the workspace's difference BFGS and BOBYQA stop ~4e-5 away from the
 * engine's optimum, whose criterion is the lower one */
static const tols TOL_ORD = {1e-7, 1e-4, 1e-4, 1e-4, 5e-4};
/* singular fits, both sides: the engine holds the entries at 0 where the
 * workspace's BOBYQA leaves them at ~1e-5; no SEs (the Hessians differ in
 * the held entries) */
static const tols TOL_SING = {1e-8, 1e-3, 1e-3, 1e-3, -1.0};

/* One engine row against the workspace's refit of the same replicate;
 * dev: the largest differences (criterion, theta, beta, extra, se). */
static void compare_row(const fixture *x, const mlmx_workspace *W, const char *label, int r,
                        const mlmx_batch_job *J, const double *ex, const tols *t, double *dev)
{
    const mlmx_gb_shared *S = x->S;
    const int p = S->pout, nth = S->nth, ne = S->ne, npar = mlmx_problem_nparams(x->P);
    const double wc = mlmx_workspace_criterion(W), ec = J->crit[r];
    dev[0] = fmax(dev[0], fabs(ec - wc) / fabs(wc));
    cr_expect(close_to(ec, wc, t->crit, 0.0), "%s rep %d criterion %.12g vs %.12g", label, r, ec,
              wc);
    for (int k = 0; k < nth; k++) {
        const double et = J->theta[r * nth + k], wt = mlmx_workspace_theta(W)[k];
        dev[1] = fmax(dev[1], fabs(et - wt) / (1.0 + fabs(wt)));
        cr_expect(close_to(et, wt, t->theta, t->theta), "%s rep %d theta %d %.8g vs %.8g", label,
                  r, k, et, wt);
    }
    for (int j = 0; j < p; j++) {
        const double wb = mlmx_workspace_beta(W)[j], ws = mlmx_workspace_se(W)[j];
        const double eb = J->beta[r * p + j], es = J->se[r * p + j];
        dev[2] = fmax(dev[2], fabs(eb - wb) / (1.0 + fabs(wb)));
        cr_expect(close_to(eb, wb, t->beta, t->beta), "%s rep %d beta %d %.8g vs %.8g", label, r,
                  j, eb, wb);
        if (isnan(ws)) { /* an ordinal model's intercept */
            cr_expect(isnan(es) && eb == 0.0, "%s rep %d beta %d: se %g", label, r, j, es);
            continue;
        }
        if (t->se < 0.0)
            continue;
        dev[4] = fmax(dev[4], fabs(es - ws) / ws);
        cr_expect(close_to(es, ws, t->se, 1e-6), "%s rep %d se %d %.8g vs %.8g", label, r, j, es,
                  ws);
    }
    const double *wx = mlmx_workspace_params(W) + npar - ne;
    for (int k = 0; k < ne; k++) {
        dev[3] = fmax(dev[3], fabs(ex[r * ne + k] - wx[k]) / (1.0 + fabs(wx[k])));
        cr_expect(close_to(ex[r * ne + k], wx[k], t->extra, t->extra),
                  "%s rep %d extra %d %.10g vs %.10g", label, r, k, ex[r * ne + k], wx[k]);
    }
}

/* Engine rows for replicates 0..nrep-1 against workspace refits. */
static void refit_check_link(const char *csv, const char *formula, mlmx_family fam,
                             mlmx_link link, double lift, int nrep, const tols *t)
{
    fixture x;
    setup_lift_link(&x, csv, formula, fam, link, lift);
    const mlmx_gb_shared *S = x.S;
    const size_t m = (size_t)nrep, p = (size_t)S->pout, nth = (size_t)S->nth;
    uint64_t reps[NREP];
    double th[NREP * MLMX_GB_THMAX], be[NREP * MLMX_GB_PMAX], se[NREP * MLMX_GB_PMAX];
    double sg[NREP], cr[NREP], ex[NREP * MLMX_GB_EMAX];
    int nev[NREP];
    signed char cv[NREP], sn[NREP], stt[NREP];
    cr_assert(nrep >= 1 && nrep <= NREP && nth * m <= sizeof th / sizeof th[0] &&
              p <= MLMX_GB_PMAX);
    for (int r = 0; r < nrep; r++)
        reps[r] = (uint64_t)r;
    mlmx_batch_job J = {SEED, reps, m, th, be, se, sg, cr, nev, cv, sn, stt};
    if (x.E.set_extra_out)
        x.E.set_extra_out(x.E.impl, ex);
    x.E.cpu_rows(x.E.impl, &J, 0, m);
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(x.P, &W), MLMX_OK, "%s", mlmx_last_error());
    int compared = 0, nsing = 0;
    double dev[5] = {0}, sdev[5] = {0}, cdev = 0.0;
    for (int r = 0; r < nrep; r++) {
        cr_assert_eq(mlmx_workspace_simulate(W, SEED, (uint64_t)r, NULL), MLMX_OK);
        cr_assert_eq(mlmx_workspace_fit(W, 1), MLMX_OK, "%s", mlmx_last_error());
        cr_assert_eq(stt[r], 1, "rep %d failed", r);
        cr_expect(isnan(sg[r]));
        cr_expect_eq(sn[r], mlmx_workspace_singular(W), "%s rep %d: singular %d vs %d", formula,
                     r, sn[r], mlmx_workspace_singular(W));
        const double wc = mlmx_workspace_criterion(W);
        cdev = fmax(cdev, fabs(cr[r] - wc) / fabs(wc));
        cr_expect(close_to(cr[r], wc, 1e-7, 0.0), "%s rep %d criterion %.12g vs %.12g", formula,
                  r, cr[r], wc);
        if (!cv[r] || sn[r] != mlmx_workspace_singular(W) || !mlmx_workspace_converged(W))
            continue;
        if (sn[r]) {
            nsing++;
            compare_row(&x, W, formula, r, &J, ex, &TOL_SING, sdev);
            continue;
        }
        compared++;
        compare_row(&x, W, formula, r, &J, ex, t, dev);
    }
    if (getenv("MLMX_GB_VERBOSE"))
        fprintf(stderr,
                "%s: %d of %d compared; largest differences: criterion %.1e (all rows %.1e), "
                "theta %.1e, beta %.1e, extra %.1e, se %.1e; %d singular: theta %.1e, beta "
                "%.1e, extra %.1e\n",
                formula, compared, nrep, dev[0], cdev, dev[1], dev[2], dev[3], dev[4], nsing,
                sdev[1], sdev[2], sdev[3]);
    cr_expect_geq(compared + nsing, nrep / 2, "%s: only %d + %d of %d replicates compared",
                  formula, compared, nsing, nrep);
    cr_expect_geq(compared, 2, "%s: only %d non-singular replicates", formula, compared);
    mlmx_workspace_free(W);
    teardown(&x);
}

static void refit_check(const char *csv, const char *formula, mlmx_family fam, double lift,
                        int nrep, const tols *t)
{
    refit_check_link(csv, formula, fam, MLMX_LINK_DEFAULT, lift, nrep, t);
}

Test(glmm_vec_batch, hdp_binomial_refits_equal_workspace, .timeout = 300)
{
    refit_check(HDP, HDP_F, MLMX_FAMILY_BINOMIAL, 0.0, 8, &TOL_CANON);
}

Test(glmm_vec_batch, salamanders_poisson_refits_equal_workspace, .timeout = 300)
{
    refit_check(SALA, SALA_F, MLMX_FAMILY_POISSON, 0.0, NREP, &TOL_CANON);
}

/* The NB2 fit has a correlation of -1: its refits start from a truth
 * with T's diagonal at least 0.2 (the engine refuses a start at the
 * bound, see below). */
Test(glmm_vec_batch, salamanders_nb2_refits_equal_workspace, .timeout = 600)
{
    refit_check(SALA, SALA_F, MLMX_FAMILY_NEGBIN, 0.2, 8, &TOL_FAM);
}

Test(glmm_vec_batch, wine_ordinal_refits_equal_workspace, .timeout = 600)
{
    refit_check(WINE, WINE_F, MLMX_FAMILY_ORDINAL, 0.0, NREP, &TOL_ORD);
}

/* The cumulative probit and cloglog take the vector path (their
 * information is the observed one, as the logit's): the gradient against
 * differences, refits against workspace refits. */
Test(glmm_vec_batch, wine_probit_cloglog_equal_workspace, .timeout = 600)
{
    gradient_check_link(WINE, WINE_F, MLMX_FAMILY_ORDINAL, MLMX_LINK_PROBIT, 0.0);
    gradient_check_link(WINE, WINE_F, MLMX_FAMILY_ORDINAL, MLMX_LINK_CLOGLOG, 0.0);
    refit_check_link(WINE, WINE_F, MLMX_FAMILY_ORDINAL, MLMX_LINK_PROBIT, 0.0, NREP, &TOL_ORD);
    refit_check_link(WINE, WINE_F, MLMX_FAMILY_ORDINAL, MLMX_LINK_CLOGLOG, 0.0, NREP, &TOL_ORD);
}

/* ------------------------------------------------------------ the runner */

/* What mlmx boot runs: the runner takes the engine, and its report
 * parameters (fixed effects, SDs, correlation) equal the workspace
 * refits' (the rows boot wrote before the engine covered the model). */
Test(glmm_vec_batch, runner_takes_the_engine_with_the_workspace_numbers, .timeout = 300)
{
    fixture x;
    setup(&x, HDP, HDP_F, MLMX_FAMILY_BINOMIAL);
    enum { NR = 4 };
    const int np = mlmx_problem_nparams(x.P);
    cr_assert_eq(np, 7); /* 4 fixed effects, 2 SDs, 1 correlation */
    mlmx_runner *Rn = NULL;
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_runner_create(x.P, MLMX_DEVICE_CPU, 2, NR, &Rn, &e), MLMX_OK, "%s", e.msg);
    cr_expect_str_eq(mlmx_runner_device(Rn), "cpu: batch engine glmm-vec, 2 threads");
    uint64_t reps[NR] = {7, 8, 9, 10};
    double params[NR * 7], crit[NR];
    int nev[NR];
    signed char conv[NR], sing[NR], status[NR];
    mlmx_runner_rows rows = {params, NULL, NULL, crit, nev, conv, sing, status};
    cr_assert_eq(mlmx_runner_run(Rn, 11, reps, NR, &rows, &e), MLMX_OK, "%s", e.msg);
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(x.P, &W), MLMX_OK, "%s", mlmx_last_error());
    for (int i = 0; i < NR; i++) {
        cr_assert_eq(mlmx_workspace_simulate(W, 11, reps[i], NULL), MLMX_OK);
        cr_assert_eq(mlmx_workspace_fit(W, 0), MLMX_OK, "%s", mlmx_last_error());
        cr_assert_eq(status[i], 1);
        const double *wp = mlmx_workspace_params(W);
        cr_expect(close_to(crit[i], mlmx_workspace_criterion(W), 1e-7, 0.0));
        for (int j = 0; j < np; j++)
            cr_expect(close_to(params[i * np + j], wp[j], 1e-4, 1e-4),
                      "rep %d param %d: runner %.8g, workspace %.8g", i, j, params[i * np + j],
                      wp[j]);
    }
    mlmx_workspace_free(W);
    mlmx_runner_free(Rn);
    teardown(&x);
}

/* ------------------------------------------------------------ threads, refusals */

Test(glmm_vec_batch, one_and_two_threads_identical, .timeout = 300)
{
    fixture x;
    setup(&x, SALA, SALA_F, MLMX_FAMILY_POISSON);
    enum { M = 8 };
    const size_t p = (size_t)x.S->pout, nth = (size_t)x.S->nth, w = nth + 3 + 2 * p;
    uint64_t reps[M];
    for (size_t i = 0; i < M; i++)
        reps[i] = 3 * i + 2;
    double *buf[2];
    int nev[2][M];
    signed char fl[2][3 * M];
    mlmx_error err;
    mlmx_err_clear(&err);
    for (int t = 0; t < 2; t++) {
        /* theta (M nth), crit, sigma (M each), beta, se (M p each) */
        double *b = buf[t] = calloc(M * w, sizeof(double));
        cr_assert_not_null(b);
        mlmx_batch_job J = {SEED, reps, M, b, b + M * (nth + 2), b + M * (nth + 2 + p),
                            b + M * (nth + 1), b + M * nth, nev[t], fl[t], fl[t] + M,
                            fl[t] + 2 * M};
        cr_assert_eq(mlmx_batch_run_cpu(&x.E, &J, t + 1, &err), MLMX_OK, "%s", err.msg);
    }
    cr_expect(memcmp(buf[0], buf[1], M * w * sizeof(double)) == 0, "1 and 2 threads differ");
    cr_expect(memcmp(nev[0], nev[1], sizeof nev[0]) == 0 && memcmp(fl[0], fl[1], 3 * M) == 0);
    for (size_t i = 0; i < M; i++)
        cr_expect_eq(fl[0][2 * M + i], 1, "rep %zu failed", i);
    free(buf[0]);
    free(buf[1]);
    teardown(&x);
}

static void refused_link(const char *csv, const char *formula, mlmx_family fam, mlmx_link link,
                         int nagq, const char *why)
{
    glmmfit x;
    glmmfit_open_link(&x, csv, formula, fam, nagq, link, NULL);
    mlmx_batch_engine E;
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_expect_eq(mlmx_gb_engine_init(x.P, &E, &err), MLMX_ERR_UNSUPPORTED);
    cr_expect(strstr(err.msg, why) != NULL, "message '%s' lacks '%s'", err.msg, why);
    glmmfit_close(&x);
}

static void refused(const char *csv, const char *formula, mlmx_family fam, int nagq,
                    const char *why)
{
    refused_link(csv, formula, fam, MLMX_LINK_DEFAULT, nagq, why);
}

Test(glmm_vec_batch, uncovered_vector_models_are_refused_with_a_reason, .timeout = 300)
{
    /* the binomial probit and cloglog: the expected information in the
     * criterion (workspaces refit them) */
    refused_link(HDP, HDP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_PROBIT, 1,
                 "binomial probit or cloglog model with a vector");
    refused_link(HDP, HDP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_CLOGLOG, 1,
                 "binomial probit or cloglog model with a vector");
    refused(SALA, SALA_F, MLMX_FAMILY_POISSON, 3, "adaptive quadrature with a vector");
    /* the NB2 fit's correlation is -1: a start at the bound */
    refused(SALA, SALA_F, MLMX_FAMILY_NEGBIN, 1, "starts with a variance at its bound");
    refused(SALA, "count ~ mined + (1 + DOY + Wtemp + DOP | site)", MLMX_FAMILY_POISSON, 1,
            "4 columns (at most 3)");
    /* lme4's (x || g) is two scalar terms of one factor, not one term */
    refused(SALA, "count ~ spp + mined + (DOY || site)", MLMX_FAMILY_POISSON, 1,
            "more than one random-effect term");
}
