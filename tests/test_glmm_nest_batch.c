/* The glmm-nest batch engine (kernels/glmm_nest_batch.h,
 * host/replicate/glmm_nest_batch.c) against the workspace refit
 * (mlmx_workspace_simulate + mlmx_workspace_fit, host/glmm/refit.c) and
 * against the workspace's own criterion code (host/glmm/glmm.c Laplace,
 * host/glmm/agq.c nested quadrature and its gradient). Tolerances:
 *   - the simulated response: bitwise the workspace's;
 *   - the criterion and its gradient at fixed points, against
 *     mlmx_glmm_laplace_grad / mlmx_glmm_agq_grad on the same response:
 *     1e-9 relative (the value) and 1e-6 relative to the gradient's norm
 *     (both converge their modes to ~1e-10, not to the last bit);
 *   - replicate refits, on replicates where both converged: criterion 1e-8
 *     relative; where neither is singular too, theta and beta 1e-5 (1 + |value|)
 *     (both run the same BFGS on gradients equal to ~1e-8, so they stop at
 *     points within its tolerances of each other), SEs of beta 1e-4
 *     relative (forward differences of the gradient, the same steps);
 *   - the Laplace gradient against central differences of the criterion:
 *     1e-5 relative (+1e-5); the quadrature gradient holds the top rule's
 *     centre and scale fixed, as agq.c's does, so it is only close to the
 *     differences (1e-4 relative to the gradient's norm; measured: 2e-6);
 *   - the binomial probit and cloglog (Laplace): the criterion against
 *     mlmx_glmm_laplace 1e-9, the gradient against central differences
 *     1e-5 of its largest entry; refits (TOL_LINK): criterion 1e-8 and
 *     never above the workspace's (1e-10), theta and beta 5e-4, SEs 2e-3
 *     (the workspace refits these links by difference BFGS and BOBYQA);
 *   - the device simulation's per-thread function against the
 *     workspace's draws: bitwise;
 *   - the same rows, bit for bit, from 1 and 2 threads.
 * Data: data/hdp_hid123.csv (hdp rows with HID <= 3: 681 observations,
 * 36 doctors in 3 hospitals), data/hdp.csv for one replicate of the full
 * model, and lme4's grouseticks with BROOD nested in LOCATION. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "glmm/glmm.h"
#include "glmmfit.h"
#include "mlmx.h"
#include "replicate/glmm_nest_batch_engine.h"
#include "replicate/replicate.h"

#define NREP 12
#define SEED 20261202u

#define HDP3 MLMX_SOURCE_DIR "/data/hdp_hid123.csv"
#define HDP MLMX_SOURCE_DIR "/data/hdp.csv"
#define HDP_F "remission ~ IL6 + CRP + LengthofStay + (1|HID/DID)"
#define GROUSE MLMX_SOURCE_DIR "/data/grouseticks.csv"
#define GROUSE_F "TICKS ~ factor(YEAR) + (1|LOCATION/BROOD)"

typedef struct fixture {
    mlmx_data *d;
    mlmx_model *m;
    mlmx_fit *f;
    mlmx_problem *P;
    mlmx_batch_engine E;
    const mlmx_gn_shared *S;
} fixture;

static void setup_link(fixture *x, const char *csv, const char *formula, mlmx_family fam,
                       mlmx_link link, int nagq)
{
    memset(x, 0, sizeof *x);
    glmmfit g;
    glmmfit_open_link(&g, csv, formula, fam, nagq, link, NULL);
    x->d = g.d;
    x->m = g.m;
    x->f = g.f;
    x->P = g.P;
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_eq(mlmx_gn_engine_init(x->P, &x->E, &err), MLMX_OK, "%s", err.msg);
    cr_assert_str_eq(x->E.name, "glmm-nest");
    x->S = mlmx_gn_engine_shared(&x->E);
    cr_assert_not_null(x->S);
}

static void setup(fixture *x, const char *csv, const char *formula, mlmx_family fam, int nagq)
{
    setup_link(x, csv, formula, fam, MLMX_LINK_DEFAULT, nagq);
}

static void teardown(fixture *x)
{
    if (x->E.free)
        x->E.free(x->E.impl);
    mlmx_problem_free(x->P);
    mlmx_fit_free(x->f);
    mlmx_model_free(x->m);
    mlmx_data_free(x->d);
}

/* A replicate's scratch (freed by the caller). */
static double *rep_alloc(const mlmx_gn_shared *S, mlmx_gn_rep *R)
{
    double *mem = calloc(mlmx_gn_rep_doubles(S), sizeof *mem);
    cr_assert_not_null(mem);
    mlmx_gn_rep_bind(S, mem, R);
    return mem;
}

/* ------------------------------------------------------------ the criterion */

/* The engine's gradient at xv (ge) against central differences of its
 * criterion (step 1e-4 relative; the modes converge to ~1e-10): 1e-5 of
 * the gradient's largest entry. xv is restored. */
static void gradient_vs_differences(const mlmx_gn_shared *S, const mlmx_gn_rep *R, double *xv,
                                    const double *ge, int pt)
{
    double gd[MLMX_GN_NPMAX], gn = 0.0;
    for (int j = 0; j < S->np; j++)
        gn = fmax(gn, fabs(ge[j]));
    for (int j = 0; j < S->np; j++) {
        const double h = 1e-4 * fmax(fabs(xv[j]), 0.1), keep = xv[j];
        xv[j] = keep + h;
        const double fp = mlmx_gn_eval(S, R, xv, gd);
        xv[j] = keep - h;
        const double fm = mlmx_gn_eval(S, R, xv, gd);
        xv[j] = keep;
        const double fd = (fp - fm) / (2.0 * h);
        cr_expect(fabs(ge[j] - fd) <= 1e-5 * gn + 1e-6,
                  "link %d point %d d/dx%d: analytic %.10g, differences %.10g", S->link, pt, j,
                  ge[j], fd);
    }
}

/* At a few points, the engine's criterion and gradient against the
 * workspace's criterion code on the same (simulated) response. The
 * binomial probit and cloglog (Laplace) have no workspace gradient
 * (mlmx_glmm_laplace gives the criterion): their gradient is checked
 * against central differences (gradient_vs_differences). */
static void criterion_check_link(const char *csv, const char *formula, mlmx_family fam,
                                 mlmx_link link, int nagq)
{
    fixture x;
    setup_link(&x, csv, formula, fam, link, nagq);
    const int canon = link == MLMX_LINK_DEFAULT;
    const mlmx_gn_shared *S = x.S;
    const int n = S->n, np = S->np;
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(x.P, &W), MLMX_OK, "%s", mlmx_last_error());
    double *y = malloc((size_t)n * sizeof *y);
    mlmx_gn_rep R;
    double *mem = rep_alloc(S, &R);
    cr_assert_eq(mlmx_workspace_simulate(W, SEED, 5, y), MLMX_OK);
    const double cst = mlmx_gn_simulate(S, SEED, 5, &R);
    cr_assert(isfinite(cst));
    mlmx_glmm *g = glmm_on_response_link(x.m, fam, link, y);
    mlmx_error e;
    mlmx_err_clear(&e);
    for (int pt = 0; pt < 3; pt++) {
        double xv[MLMX_GN_NPMAX], ge[MLMX_GN_NPMAX], gw[MLMX_GN_NPMAX], dw = NAN;
        for (int j = 0; j < np; j++)
            xv[j] = S->x0[j] * (pt == 0 ? 1.0 : pt == 1 ? 0.8 : 1.3) + (j == pt ? 0.1 : 0.0);
        const double de = mlmx_gn_eval(S, &R, xv, ge) - 2.0 * cst;
        memset(g->u, 0, g->nu * sizeof *g->u);
        if (!canon)
            cr_assert_eq(mlmx_glmm_laplace(g, xv, xv + 2, &dw, &e), MLMX_OK, "%s", e.msg);
        else if (nagq > 1)
            cr_assert_eq(mlmx_glmm_agq_grad(g, xv, xv + 2, nagq, &dw, gw, &e), MLMX_OK, "%s",
                         e.msg);
        else
            cr_assert_eq(mlmx_glmm_laplace_grad(g, xv, xv + 2, &dw, gw, &e), MLMX_OK, "%s",
                         e.msg);
        if (getenv("MLMX_GN_VERBOSE"))
            fprintf(stderr, "nagq %d pt %d: %.12f %.12f  g0 %.10g %.10g g1 %.10g %.10g g2 %.10g %.10g\n", nagq, pt, de, dw, ge[0], gw[0], ge[1], gw[1], ge[2], gw[2]);
        char what[300];
        snprintf(what, sizeof what, "%s nagq %d", formula, nagq);
        /* probit, cloglog: the workspace has no analytic gradient */
        expect_like_workspace(de, dw, np, ge, canon ? gw : NULL, what, pt);
        if (!canon)
            gradient_vs_differences(S, &R, xv, ge, pt);
    }
    mlmx_glmm_free(g);
    free(mem);
    free(y);
    mlmx_workspace_free(W);
    teardown(&x);
}

static void criterion_check(const char *csv, const char *formula, mlmx_family fam, int nagq)
{
    criterion_check_link(csv, formula, fam, MLMX_LINK_DEFAULT, nagq);
}

Test(glmm_nest_batch, hdp_laplace_criterion_equals_workspace, .timeout = 120)
{
    criterion_check(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, 1);
}

Test(glmm_nest_batch, hdp_agq_criterion_equals_workspace, .timeout = 120)
{
    criterion_check(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, 5);
    criterion_check(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, 25);
}

/* GUIDE §7's hdp model, ten fixed effects (more than glmm-1ri takes). */
Test(glmm_nest_batch, ten_fixed_effects_criterion_equals_workspace, .timeout = 120)
{
    const char *f = "remission ~ Age + LengthofStay + FamilyHx + IL6 + CRP + CancerStage + "
                    "Experience + (1|DID) + (1|HID)";
    criterion_check(HDP3, f, MLMX_FAMILY_BINOMIAL, 1);
    criterion_check(HDP3, f, MLMX_FAMILY_BINOMIAL, 5);
}

/* Scalar terms that are not intercepts: z0, z1 enter every formula. */
Test(glmm_nest_batch, slope_terms_criterion_equals_workspace, .timeout = 120)
{
    const char *f = "remission ~ IL6 + CRP + LengthofStay + (0 + CRP|HID) + (0 + IL6|DID)";
    criterion_check(HDP3, f, MLMX_FAMILY_BINOMIAL, 1);
    criterion_check(HDP3, f, MLMX_FAMILY_BINOMIAL, 7);
}

Test(glmm_nest_batch, grouseticks_criterion_equals_workspace, .timeout = 120)
{
    criterion_check(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 1);
    criterion_check(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 9);
}

/* The binomial probit and cloglog (Laplace): criterion 1e-9 against
 * mlmx_glmm_laplace at three points, gradient against differences. */
Test(glmm_nest_batch, probit_cloglog_criterion_equals_workspace, .timeout = 120)
{
    criterion_check_link(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_PROBIT, 1);
    criterion_check_link(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_CLOGLOG, 1);
}

/* ------------------------------------------------------------ refits */

typedef struct rows {
    uint64_t reps[NREP];
    double th[NREP * 2], be[NREP * MLMX_GN_PMAX], se[NREP * MLMX_GN_PMAX], sg[NREP], cr[NREP];
    int nev[NREP];
    signed char cv[NREP], sn[NREP], st[NREP];
} rows;

static mlmx_batch_job job_of(rows *r, int nrep)
{
    for (int i = 0; i < nrep; i++)
        r->reps[i] = (uint64_t)i;
    mlmx_batch_job J = {SEED,  r->reps, (size_t)nrep, r->th, r->be, r->se,
                        r->sg, r->cr,   r->nev,       r->cv, r->sn, r->st};
    return J;
}

/* Engine rows for replicates 0..nrep-1 against workspace refits. */
/* Agreement asked of a refit: the criterion (relative), theta and beta
 * (relative + the same absolute), the SEs (relative). */
typedef struct tols {
    double crit, est, se;
} tols;

static const tols TOL_CANON = {1e-8, 1e-5, 1e-4};

static void refit_check_lt(const char *csv, const char *formula, mlmx_family fam, mlmx_link link,
                           int nagq, int nrep, const tols *tl)
{
    cr_assert(nrep >= 1 && nrep <= NREP);
    fixture x;
    setup_link(&x, csv, formula, fam, link, nagq);
    double dev[3] = {0}; /* largest differences: criterion, estimates, SEs */
    const mlmx_gn_shared *S = x.S;
    const int p = S->p, n = S->n;
    rows *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    mlmx_batch_job J = job_of(r, nrep);
    x.E.cpu_rows(x.E.impl, &J, 0, (size_t)nrep);
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(x.P, &W), MLMX_OK, "%s", mlmx_last_error());
    double *y = malloc((size_t)n * sizeof *y);
    mlmx_gn_rep R;
    double *mem = rep_alloc(S, &R);
    int compared = 0;
    for (int i = 0; i < nrep; i++) {
        cr_assert_eq(mlmx_workspace_simulate(W, SEED, (uint64_t)i, y), MLMX_OK);
        cr_assert(isfinite(mlmx_gn_simulate(S, SEED, (uint64_t)i, &R)));
        for (int k = 0; k < n; k++)
            cr_assert_eq(y[k], R.y[S->pos[k]], "rep %d obs %d: workspace %g, engine %g", i, k,
                         y[k], R.y[S->pos[k]]);
        cr_assert_eq(mlmx_workspace_fit(W, 1), MLMX_OK, "%s", mlmx_last_error());
        cr_assert_eq(r->st[i], 1, "rep %d failed", i);
        cr_expect(isnan(r->sg[i]));
        const int wsing = mlmx_workspace_singular(W), wconv = mlmx_workspace_converged(W);
        cr_expect_eq(r->sn[i], wsing, "rep %d singular: engine %d, workspace %d", i, r->sn[i],
                     wsing);
        if (getenv("MLMX_GN_VERBOSE"))
            fprintf(stderr, "rep %d: crit %.12f %.12f th %.8f %.8f / %.8f %.8f nev %d %d conv %d %d\n",
                    i, r->cr[i], mlmx_workspace_criterion(W), r->th[2 * i],
                    mlmx_workspace_theta(W)[0], r->th[2 * i + 1], mlmx_workspace_theta(W)[1],
                    r->nev[i], mlmx_workspace_n_evaluations(W), r->cv[i], wconv);
        if (!r->cv[i] || !wconv)
            continue;
        /* at a variance bound the criterion is still determined */
        const double wc = mlmx_workspace_criterion(W);
        cr_expect(close_to(r->cr[i], wc, tl->crit, 0.0), "rep %d criterion %.12g vs %.12g", i,
                  r->cr[i], wc);
        dev[0] = fmax(dev[0], fabs(r->cr[i] - wc) / fabs(wc));
        /* the engine's optimum is no worse than the workspace's */
        cr_expect(r->cr[i] <= wc + 1e-10 * fabs(wc), "rep %d criterion %.12g above %.12g", i,
                  r->cr[i], wc);
        if (r->sn[i] || wsing)
            continue;
        compared++;
        for (int t = 0; t < 2; t++) {
            const double wt = mlmx_workspace_theta(W)[t];
            dev[1] = fmax(dev[1], fabs(r->th[2 * i + t] - wt) / (1.0 + fabs(wt)));
            cr_expect(close_to(r->th[2 * i + t], wt, tl->est, tl->est),
                      "rep %d theta %d %.8g vs %.8g", i, t, r->th[2 * i + t], wt);
        }
        for (int j = 0; j < p; j++) {
            const double wb = mlmx_workspace_beta(W)[j], ws = mlmx_workspace_se(W)[j];
            dev[1] = fmax(dev[1], fabs(r->be[i * p + j] - wb) / (1.0 + fabs(wb)));
            dev[2] = fmax(dev[2], fabs(r->se[i * p + j] - ws) / ws);
            cr_expect(close_to(r->be[i * p + j], wb, tl->est, tl->est),
                      "rep %d beta %d %.8g vs %.8g", i, j, r->be[i * p + j], wb);
            cr_expect(close_to(r->se[i * p + j], ws, tl->se, 1e-7), "rep %d se %d %.8g vs %.8g",
                      i, j, r->se[i * p + j], ws);
        }
    }
    if (getenv("MLMX_GN_VERBOSE"))
        fprintf(stderr,
                "%s link %d nagq %d: %d of %d compared; largest differences: criterion %.1e, "
                "estimates %.1e, se %.1e\n",
                formula, (int)link, nagq, compared, nrep, dev[0], dev[1], dev[2]);
    cr_expect_geq(compared, nrep / 2, "only %d of %d replicates compared", compared, nrep);
    free(mem);
    free(y);
    free(r);
    mlmx_workspace_free(W);
    teardown(&x);
}

static void refit_check(const char *csv, const char *formula, mlmx_family fam, int nagq,
                        int nrep)
{
    refit_check_lt(csv, formula, fam, MLMX_LINK_DEFAULT, nagq, nrep, &TOL_CANON);
}

/* The probit and cloglog: the workspace steps BFGS on differences and
 * polishes with BOBYQA, the engine follows its analytic gradient; the
 * criteria agree to ~1e-9 (seen: 7.4e-10, the engine's never higher) but
 * the optimum is flat: estimates differ up to 2.4e-4 (1 + |value|) and
 * the SEs (different difference Hessians) up to 9e-4. */
static const tols TOL_LINK = {1e-8, 5e-4, 2e-3};

Test(glmm_nest_batch, hdp_probit_cloglog_refits_equal_workspace, .timeout = 300)
{
    refit_check_lt(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_PROBIT, 1, NREP, &TOL_LINK);
    refit_check_lt(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_CLOGLOG, 1, NREP, &TOL_LINK);
}

Test(glmm_nest_batch, hdp_laplace_refits_equal_workspace, .timeout = 300)
{
    refit_check(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, 1, NREP);
}

Test(glmm_nest_batch, hdp_agq25_refits_equal_workspace, .timeout = 300)
{
    refit_check(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, 25, NREP);
}

Test(glmm_nest_batch, grouseticks_poisson_refits_equal_workspace, .timeout = 300)
{
    refit_check(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 1, NREP);
    refit_check(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 7, NREP);
}

/* The device simulation's per-thread function (mlmx_gn_sim_one, what
 * kernels/glmm_nest_batch.cu's simulation kernel runs) gives bitwise the
 * responses of mlmx_workspace_simulate, for 40 keys of each model. */
static void sim_one_check(const char *csv, const char *formula, mlmx_family fam)
{
    fixture x;
    setup(&x, csv, formula, fam, 1);
    const mlmx_gn_shared *S = x.S;
    const int n = S->n;
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(x.P, &W), MLMX_OK, "%s", mlmx_last_error());
    double *y = malloc((size_t)n * sizeof *y), *base = malloc(mlmx_gn_sim_doubles(S) * sizeof *base);
    cr_assert(y && base);
    double nonzero = 0.0;
    for (uint64_t r = 0; r < 40; r++) {
        const uint64_t key = 977 * r + 3;
        cr_assert_eq(mlmx_workspace_simulate(W, SEED, key, y), MLMX_OK);
        cr_assert(isfinite(mlmx_gn_sim_one(S, SEED, key, base)));
        for (int k = 0; k < n; k++) {
            cr_assert_eq(y[k], base[S->pos[k]], "key %llu obs %d: workspace %g, engine %g",
                         (unsigned long long)key, k, y[k], base[S->pos[k]]);
            nonzero += y[k];
        }
    }
    cr_expect_gt(nonzero, 0.0, "every response drawn was 0");
    free(y);
    free(base);
    mlmx_workspace_free(W);
    teardown(&x);
}

Test(glmm_nest_batch, device_simulation_function_equals_workspace, .timeout = 120)
{
    sim_one_check(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL);
    sim_one_check(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON);
    sim_one_check(HDP3, "cbind(ntumors, 9 - ntumors) ~ IL6 + Age + (1|HID/DID)",
                  MLMX_FAMILY_BINOMIAL);
}

/* Successes out of trials (cbind), the response glmm-1ri takes too: a
 * binomial count per doctor and hospital made from the hdp subset. */
Test(glmm_nest_batch, binomial_trials_refits_equal_workspace, .timeout = 300)
{
    refit_check(HDP3, "cbind(ntumors, 9 - ntumors) ~ IL6 + Age + (1|HID/DID)",
                MLMX_FAMILY_BINOMIAL, 9, 8);
}

/* One replicate of the full hdp model (8525 observations, 407 doctors in
 * 35 hospitals) at 25 x 25 points. */
Test(glmm_nest_batch, hdp_full_agq25_refit_equals_workspace, .timeout = 600)
{
    refit_check(HDP, HDP_F, MLMX_FAMILY_BINOMIAL, 25, 1);
}

/* ------------------------------------------------------------ gradient */

/* The analytic gradient against central differences of the criterion at a
 * point away from the optimum (step 5e-4 relative: the modes are
 * converged to ~1e-10, noise that smaller steps would amplify). The
 * quadrature's gradient leaves out the motion of the top rule's centre and
 * scale (agq.c's definition, which the engine must follow), so there the
 * bound is relative to the gradient's norm. */
static void gradient_check(const char *csv, const char *formula, mlmx_family fam, int nagq,
                           double rel_norm)
{
    fixture x;
    setup(&x, csv, formula, fam, nagq);
    const mlmx_gn_shared *S = x.S;
    mlmx_gn_rep R;
    double *mem = rep_alloc(S, &R);
    cr_assert(isfinite(mlmx_gn_simulate(S, SEED, 3, &R)));
    double xv[MLMX_GN_NPMAX] = {0}, g[MLMX_GN_NPMAX], gd[MLMX_GN_NPMAX], fd[MLMX_GN_NPMAX];
    for (int j = 0; j < S->np; j++)
        xv[j] = S->x0[j] * 1.1 + 0.05;
    mlmx_gn_eval(S, &R, xv, g);
    double gn = 0.0;
    for (int j = 0; j < S->np; j++) {
        const double h = 5e-4 * fmax(fabs(xv[j]), 0.1), keep = xv[j];
        xv[j] = keep + h;
        const double fp = mlmx_gn_eval(S, &R, xv, gd);
        xv[j] = keep - h;
        const double fm = mlmx_gn_eval(S, &R, xv, gd);
        xv[j] = keep;
        fd[j] = (fp - fm) / (2.0 * h);
        gn = fmax(gn, fabs(fd[j]));
    }
    for (int j = 0; j < S->np; j++) {
        if (getenv("MLMX_GN_VERBOSE"))
            fprintf(stderr, "nagq %d d/dx%d: analytic %.10g, differences %.10g (rel to norm %.2g)\n",
                    nagq, j, g[j], fd[j], fabs(g[j] - fd[j]) / gn);
        cr_expect(close_to(g[j], fd[j], 1e-5, 1e-5) || fabs(g[j] - fd[j]) <= rel_norm * gn,
                  "%s nagq %d d/dx%d: analytic %.10g, differences %.10g", formula, nagq, j, g[j],
                  fd[j]);
    }
    free(mem);
    teardown(&x);
}

Test(glmm_nest_batch, laplace_gradient_matches_differences, .timeout = 120)
{
    gradient_check(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, 1, 0.0);
    gradient_check(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 1, 0.0);
}

Test(glmm_nest_batch, agq_gradient_is_close_to_differences, .timeout = 120)
{
    gradient_check(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, 25, 1e-4);
    gradient_check(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 9, 1e-4);
}

/* ------------------------------------------------------------ threads */

Test(glmm_nest_batch, one_and_two_threads_give_identical_rows, .timeout = 300)
{
    fixture x;
    setup(&x, HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, 9);
    rows *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    cr_assert(a && b);
    mlmx_batch_job Ja = job_of(a, NREP), Jb = job_of(b, NREP);
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_eq(mlmx_batch_run_cpu(&x.E, &Ja, 1, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_batch_run_cpu(&x.E, &Jb, 2, &err), MLMX_OK, "%s", err.msg);
    const int p = x.S->p;
    cr_expect(memcmp(a->th, b->th, NREP * 2 * sizeof(double)) == 0, "theta differs");
    cr_expect(memcmp(a->be, b->be, (size_t)NREP * p * sizeof(double)) == 0, "beta differs");
    cr_expect(memcmp(a->se, b->se, (size_t)NREP * p * sizeof(double)) == 0, "se differs");
    cr_expect(memcmp(a->cr, b->cr, NREP * sizeof(double)) == 0, "criterion differs");
    cr_expect(memcmp(a->nev, b->nev, NREP * sizeof(int)) == 0, "evaluations differ");
    cr_expect(memcmp(a->st, b->st, NREP) == 0 && memcmp(a->cv, b->cv, NREP) == 0 &&
                  memcmp(a->sn, b->sn, NREP) == 0,
              "flags differ");
    /* and the registry picks this engine for the model */
    mlmx_batch_engine *E = NULL;
    cr_assert_eq(mlmx_batch_engine_create(x.P, &E, &err), MLMX_OK, "%s", err.msg);
    cr_expect_str_eq(E->name, "glmm-nest");
    mlmx_batch_engine_free(E);
    free(a);
    free(b);
    teardown(&x);
}

/* ------------------------------------------------------------ refusals */

static void refused(const char *csv, const char *formula, mlmx_family fam, mlmx_link link,
                    int nagq, const char *why)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    mlmx_problem *P = NULL;
    cr_assert_eq(mlmx_data_read_csv(csv, &d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(d, formula, &m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = fam;
    o.link = link;
    o.nagq = nagq;
    mlmx_status st = fam == MLMX_FAMILY_GAUSSIAN ? mlmx_fit_lmm(m, &o, &f)
                                                 : mlmx_fit_glmm(m, &o, &f);
    cr_assert_eq(st, MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_problem_create(f, &P), MLMX_OK, "%s", mlmx_last_error());
    mlmx_batch_engine E;
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_expect_eq(mlmx_gn_engine_init(P, &E, &err), MLMX_ERR_UNSUPPORTED, "%s", formula);
    cr_expect(strstr(err.msg, why) != NULL, "message '%s' lacks '%s'", err.msg, why);
    cr_expect(strstr(err.msg, "glmm-nest") != NULL, "message '%s' names no engine", err.msg);
    cr_expect_null(E.cpu_rows);
    mlmx_problem_free(P);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

Test(glmm_nest_batch, uncovered_models_are_refused_with_a_reason, .timeout = 300)
{
    refused(MLMX_SOURCE_DIR "/data/cbpp.csv",
            "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)",
            MLMX_FAMILY_BINOMIAL, MLMX_LINK_DEFAULT, 1, "1 random-effect terms");
    refused(GROUSE, "TICKS ~ factor(YEAR) + (1|INDEX) + (1|BROOD) + (1|LOCATION)",
            MLMX_FAMILY_POISSON, MLMX_LINK_DEFAULT, 1, "3 random-effect terms");
    refused(MLMX_SOURCE_DIR "/data/verbagg.csv", "r2 ~ Anger + Gender + (1 | id) + (1 | item)",
            MLMX_FAMILY_BINOMIAL, MLMX_LINK_DEFAULT, 1, "not nested");
    refused(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_PROBIT, 5,
            "probit or cloglog model by quadrature");
    refused(HDP3, "remission ~ IL6 + CRP + LengthofStay + (1 + IL6|HID) + (1|DID)",
            MLMX_FAMILY_BINOMIAL, MLMX_LINK_DEFAULT, 1, "more than one column");
    refused(HDP3,
            "remission ~ IL6 + CRP + LengthofStay + Age + WBC + RBC + BMI + Experience + "
            "lungcapacity + tumorsize + co2 + pain + wound + (1|HID/DID)",
            MLMX_FAMILY_BINOMIAL, MLMX_LINK_DEFAULT, 1, "14 fixed effects (at most 12)");
    refused(MLMX_SOURCE_DIR "/data/sleepstudy.csv", "Reaction ~ Days + (1 | Subject)",
            MLMX_FAMILY_GAUSSIAN, MLMX_LINK_DEFAULT, 1, "linear mixed model");
    mlmx_error err;
    mlmx_err_clear(&err);
    mlmx_batch_engine E;
    cr_expect_eq(mlmx_gn_engine_init(NULL, &E, &err), MLMX_ERR_ARG);
}
