/* The glmm-crossed batch engine (kernels/glmm_crossed_batch.h,
 * host/replicate/glmm_crossed_batch.c) against the workspace refit
 * (mlmx_workspace_simulate + mlmx_workspace_fit, host/glmm/refit.c) and the
 * workspace's own criterion code (host/glmm/glmm.c Laplace, grad.c).
 * Tolerances:
 *   - the simulated response: bitwise the workspace's;
 *   - the criterion at fixed points against mlmx_glmm_laplace_grad on the
 *     same response: 1e-9 relative; the gradient 1e-6 relative to its
 *     norm (both converge their modes to ~1e-10, not to the last bit);
 *   - the gradient against central differences of the engine's own
 *     criterion: 1e-5 relative (+1e-5);
 *   - replicate refits (keys 3 i + 1), where both converged: criterion
 *     1e-7 relative; where neither is singular too, theta and beta 1e-5
 *     (1 + |value|) (the same BFGS on gradients equal to ~1e-8), SEs of
 *     beta 1e-4 relative (forward differences of the gradient, the same
 *     steps);
 *   - the same rows, bit for bit, from 1 and 2 threads.
 * Data: lme4's VerbAgg (316 subjects x 24 items, 7584 binary responses:
 * the subjects-by-items design of power studies of experiments) and
 * grouseticks with three crossed/nested terms (403 x 118 x 63 levels). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "batchrows.h"
#include "glmmproblem.h"
#include "glmm/glmm.h"
#include "mlmx.h"
#include "replicate/glmm_crossed_batch_engine.h"
#include "replicate/replicate.h"

#define SEED 20261202u

#define VERB MLMX_SOURCE_DIR "/data/verbagg.csv"
#define VERB_F "r2 ~ Anger + Gender + btype + situ + (1|id) + (1|item)"
#define GROUSE MLMX_SOURCE_DIR "/data/grouseticks.csv"
#define GROUSE_F "TICKS ~ factor(YEAR) + HEIGHT + (1|BROOD) + (1|INDEX) + (1|LOCATION)"

typedef struct fixture {
    glmm_problem g;
    mlmx_problem *P;
    mlmx_batch_engine E;
    const mlmx_gc_shared *S;
} fixture;

static void setup(fixture *x, const char *csv, const char *formula, mlmx_family fam)
{
    memset(x, 0, sizeof *x);
    glmm_problem_open(&x->g, csv, formula, fam, 1);
    x->P = x->g.P;
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_eq(mlmx_gc_engine_init(x->P, &x->E, &err), MLMX_OK, "%s", err.msg);
    cr_assert_str_eq(x->E.name, "glmm-crossed");
    x->S = mlmx_gc_engine_shared(&x->E);
    cr_assert_not_null(x->S);
}

static void teardown(fixture *x)
{
    if (x->E.free)
        x->E.free(x->E.impl);
    glmm_problem_close(&x->g);
}

#define close_to glmm_close_to

static double *rep_alloc(const mlmx_gc_shared *S, mlmx_gc_rep *R)
{
    double *mem = calloc(mlmx_gc_rep_doubles(S), sizeof *mem);
    cr_assert_not_null(mem);
    mlmx_gc_rep_bind(S, mem, R);
    return mem;
}

static int verbose(void) { return getenv("MLMX_GC_VERBOSE") != NULL; }

/* ------------------------------------------------------------ the criterion */

/* At three points, the engine's criterion and gradient against the
 * workspace's Laplace code on the same simulated response (both from
 * zero modes). */
static void criterion_check(const char *csv, const char *formula, mlmx_family fam)
{
    fixture x;
    setup(&x, csv, formula, fam);
    const mlmx_gc_shared *S = x.S;
    const int n = S->n, np = S->np, K = S->K;
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(x.P, &W), MLMX_OK, "%s", mlmx_last_error());
    double *y = malloc((size_t)n * sizeof *y);
    mlmx_gc_rep R;
    double *mem = rep_alloc(S, &R);
    cr_assert_eq(mlmx_workspace_simulate(W, SEED, 5, y), MLMX_OK);
    const double cst = mlmx_gc_simulate(S, SEED, 5, &R);
    cr_assert(isfinite(cst));
    for (int i = 0; i < n; i++)
        cr_assert_eq(y[i], R.y[S->pos[i]], "obs %d: workspace %g, engine %g", i, y[i],
                     R.y[S->pos[i]]);
    mlmx_glmm *g = NULL;
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_glmm_create(x.g.m, fam, MLMX_LINK_DEFAULT, mlmx_backend_cpu(), &g, &e),
                 MLMX_OK, "%s", e.msg);
    cr_assert_eq(mlmx_glmm_set_response(g, y, &e), MLMX_OK, "%s", e.msg);
    for (int pt = 0; pt < 3; pt++) {
        double xv[MLMX_GC_NPMAX], ge[MLMX_GC_NPMAX], gw[MLMX_GC_NPMAX], dw = NAN;
        for (int j = 0; j < np; j++)
            xv[j] = S->x0[j] * (pt == 0 ? 1.0 : pt == 1 ? 0.8 : 1.3) + (j == pt ? 0.1 : 0.0);
        for (int j = 0; j < S->n0 + S->m; j++)
            R.u[j] = 0.0;
        const double de = mlmx_gc_eval(S, &R, xv, ge) - 2.0 * cst;
        memset(g->u, 0, g->nu * sizeof *g->u);
        cr_assert_eq(mlmx_glmm_laplace_grad(g, xv, xv + K, &dw, gw, &e), MLMX_OK, "%s", e.msg);
        if (verbose())
            fprintf(stderr, "%s pt %d: %.12f %.12f (rel %.2g)\n", formula, pt, de, dw,
                    fabs(de - dw) / fabs(dw));
        cr_expect(close_to(de, dw, 1e-9, 0.0), "%s point %d: engine %.12f, workspace %.12f",
                  formula, pt, de, dw);
        double gn = 0.0, worst = 0.0;
        for (int j = 0; j < np; j++)
            gn = fmax(gn, fabs(gw[j]));
        for (int j = 0; j < np; j++) {
            worst = fmax(worst, fabs(ge[j] - gw[j]) / gn);
            cr_expect(fabs(ge[j] - gw[j]) <= 1e-6 * gn + 1e-8,
                      "%s point %d d/dx%d: engine %.10g, workspace %.10g", formula, pt, j, ge[j],
                      gw[j]);
        }
        if (verbose())
            fprintf(stderr, "  gradient: max difference / norm %.2g\n", worst);
    }
    mlmx_glmm_free(g);
    free(mem);
    free(y);
    mlmx_workspace_free(W);
    teardown(&x);
}

Test(glmm_crossed_batch, verbagg_criterion_equals_workspace, .timeout = 120)
{
    criterion_check(VERB, VERB_F, MLMX_FAMILY_BINOMIAL);
}

Test(glmm_crossed_batch, grouseticks_criterion_equals_workspace, .timeout = 120)
{
    criterion_check(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON);
}

/* Scalar terms that are not intercepts, and a nested pair. */
Test(glmm_crossed_batch, slope_and_nested_terms_criterion_equals_workspace, .timeout = 120)
{
    criterion_check(VERB, "r2 ~ Anger + situ + (0 + Anger|id) + (1|item)",
                    MLMX_FAMILY_BINOMIAL);
    criterion_check(GROUSE, "TICKS ~ factor(YEAR) + (1|LOCATION/BROOD)", MLMX_FAMILY_POISSON);
}

/* ------------------------------------------------------------ gradient */

/* The analytic gradient against central differences of the criterion at
 * a point away from the optimum (step 5e-4 relative; warm-started modes
 * converged to ~1e-10). */
static void gradient_check(const char *csv, const char *formula, mlmx_family fam)
{
    fixture x;
    setup(&x, csv, formula, fam);
    const mlmx_gc_shared *S = x.S;
    mlmx_gc_rep R;
    double *mem = rep_alloc(S, &R);
    cr_assert(isfinite(mlmx_gc_simulate(S, SEED, 3, &R)));
    double xv[MLMX_GC_NPMAX] = {0}, g[MLMX_GC_NPMAX], gd[MLMX_GC_NPMAX];
    for (int j = 0; j < S->np; j++)
        xv[j] = S->x0[j] * 1.1 + 0.05;
    mlmx_gc_eval(S, &R, xv, g);
    for (int j = 0; j < S->np; j++) {
        const double h = 5e-4 * fmax(fabs(xv[j]), 0.1), keep = xv[j];
        xv[j] = keep + h;
        const double fp = mlmx_gc_eval(S, &R, xv, gd);
        xv[j] = keep - h;
        const double fm = mlmx_gc_eval(S, &R, xv, gd);
        xv[j] = keep;
        const double fd = (fp - fm) / (2.0 * h);
        if (verbose())
            fprintf(stderr, "d/dx%d: analytic %.10g, differences %.10g\n", j, g[j], fd);
        cr_expect(close_to(g[j], fd, 1e-5, 1e-5), "%s d/dx%d: analytic %.10g, differences %.10g",
                  formula, j, g[j], fd);
    }
    free(mem);
    teardown(&x);
}

Test(glmm_crossed_batch, gradient_matches_differences, .timeout = 120)
{
    gradient_check(VERB, VERB_F, MLMX_FAMILY_BINOMIAL);
    gradient_check(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON);
}

/* ------------------------------------------------------------ refits */

/* Engine rows for replicates 3 i + 1 against workspace refits. */
static void refit_check(const char *csv, const char *formula, mlmx_family fam, int nrep)
{
    fixture x;
    setup(&x, csv, formula, fam);
    const mlmx_gc_shared *S = x.S;
    const int p = S->p, K = S->K;
    rows r;
    rows_alloc_keys(&r, x.P, (size_t)nrep, SEED, 3, 1);
    const mlmx_batch_job *J = &r.J;
    x.E.cpu_rows(x.E.impl, J, 0, (size_t)nrep);
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(x.P, &W), MLMX_OK, "%s", mlmx_last_error());
    int compared = 0;
    double worst_c = 0.0, worst_x = 0.0;
    for (int i = 0; i < nrep; i++) {
        cr_assert_eq(mlmx_workspace_simulate(W, SEED, r.reps[i], NULL), MLMX_OK);
        cr_assert_eq(mlmx_workspace_fit(W, 1), MLMX_OK, "%s", mlmx_last_error());
        cr_assert_eq(J->status[i], 1, "rep %d failed", i);
        cr_expect(isnan(J->sigma[i]));
        const int wsing = mlmx_workspace_singular(W), wconv = mlmx_workspace_converged(W);
        cr_expect_eq(J->sing[i], wsing, "rep %d singular: engine %d, workspace %d", i,
                     J->sing[i], wsing);
        const double wc = mlmx_workspace_criterion(W);
        if (verbose())
            fprintf(stderr, "rep %d: crit %.12f %.12f th0 %.8f %.8f nev %d %d conv %d %d\n", i,
                    J->crit[i], wc, J->theta[i * K], mlmx_workspace_theta(W)[0], J->nev[i],
                    mlmx_workspace_n_evaluations(W), J->conv[i], wconv);
        if (!J->conv[i] || !wconv)
            continue;
        worst_c = fmax(worst_c, fabs(J->crit[i] - wc) / fabs(wc));
        cr_expect(close_to(J->crit[i], wc, 1e-7, 0.0), "rep %d criterion %.12g vs %.12g", i,
                  J->crit[i], wc);
        if (J->sing[i] || wsing)
            continue;
        compared++;
        for (int t = 0; t < K; t++) {
            const double wt = mlmx_workspace_theta(W)[t], et = J->theta[i * K + t];
            worst_x = fmax(worst_x, fabs(et - wt) / (1.0 + fabs(wt)));
            cr_expect(close_to(et, wt, 1e-5, 1e-5), "rep %d theta %d %.8g vs %.8g", i, t, et, wt);
        }
        for (int j = 0; j < p; j++) {
            const double wb = mlmx_workspace_beta(W)[j], ws = mlmx_workspace_se(W)[j];
            const double eb = J->beta[i * p + j], es = J->se[i * p + j];
            worst_x = fmax(worst_x, fabs(eb - wb) / (1.0 + fabs(wb)));
            cr_expect(close_to(eb, wb, 1e-5, 1e-5), "rep %d beta %d %.8g vs %.8g", i, j, eb, wb);
            cr_expect(close_to(es, ws, 1e-4, 1e-7), "rep %d se %d %.8g vs %.8g", i, j, es, ws);
        }
    }
    if (verbose())
        fprintf(stderr, "%s: %d of %d compared; criterion %.2g, estimates %.2g\n", formula,
                compared, nrep, worst_c, worst_x);
    cr_expect_geq(compared, nrep / 2, "only %d of %d replicates compared", compared, nrep);
    rows_free(&r);
    mlmx_workspace_free(W);
    teardown(&x);
}

Test(glmm_crossed_batch, verbagg_refits_equal_workspace, .timeout = 300)
{
    refit_check(VERB, VERB_F, MLMX_FAMILY_BINOMIAL, 8);
}

Test(glmm_crossed_batch, grouseticks_refits_equal_workspace, .timeout = 300)
{
    refit_check(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 8);
}

/* ------------------------------------------------------------ threads */

Test(glmm_crossed_batch, one_and_two_threads_give_identical_rows, .timeout = 300)
{
    fixture x;
    setup(&x, GROUSE, GROUSE_F, MLMX_FAMILY_POISSON);
    enum { N = 6 };
    rows a, b;
    rows_alloc_keys(&a, x.P, N, SEED, 7, 2);
    rows_alloc_keys(&b, x.P, N, SEED, 7, 2);
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_eq(mlmx_batch_run_cpu(&x.E, &a.J, 1, &err), MLMX_OK, "%s", err.msg);
    cr_assert_eq(mlmx_batch_run_cpu(&x.E, &b.J, 2, &err), MLMX_OK, "%s", err.msg);
    const size_t K = (size_t)x.S->K, p = (size_t)x.S->p;
    cr_expect(memcmp(a.J.theta, b.J.theta, N * K * sizeof(double)) == 0, "theta differs");
    cr_expect(memcmp(a.J.beta, b.J.beta, N * p * sizeof(double)) == 0, "beta differs");
    cr_expect(memcmp(a.J.se, b.J.se, N * p * sizeof(double)) == 0, "se differs");
    cr_expect(memcmp(a.J.crit, b.J.crit, N * sizeof(double)) == 0, "criterion differs");
    cr_expect(memcmp(a.J.nev, b.J.nev, N * sizeof(int)) == 0, "evaluations differ");
    cr_expect(memcmp(a.J.status, b.J.status, N) == 0 && memcmp(a.J.conv, b.J.conv, N) == 0 &&
                  memcmp(a.J.sing, b.J.sing, N) == 0,
              "flags differ");
    /* and the registry picks this engine for the model */
    mlmx_batch_engine *E = NULL;
    cr_assert_eq(mlmx_batch_engine_create(x.P, &E, &err), MLMX_OK, "%s", err.msg);
    cr_expect_str_eq(E->name, "glmm-crossed");
    cr_expect(E->gpu_rep_bytes >= mlmx_gc_rep_doubles(x.S) * sizeof(double));
    mlmx_batch_engine_free(E);
    rows_free(&a);
    rows_free(&b);
    teardown(&x);
}

/* ------------------------------------------------------------ refusals */

static void refused(const char *csv, const char *formula, mlmx_family fam, int nagq,
                    const char *why)
{
    glmm_problem g;
    glmm_problem_open(&g, csv, formula, fam, nagq);
    mlmx_batch_engine E;
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_expect_eq(mlmx_gc_engine_init(g.P, &E, &err), MLMX_ERR_UNSUPPORTED, "%s", formula);
    cr_expect(strstr(err.msg, why) != NULL, "message '%s' lacks '%s'", err.msg, why);
    cr_expect(strstr(err.msg, "glmm-crossed") != NULL, "message '%s' names no engine", err.msg);
    cr_expect_null(E.cpu_rows);
    glmm_problem_close(&g);
}

Test(glmm_crossed_batch, uncovered_models_are_refused_with_a_reason, .timeout = 300)
{
    refused(MLMX_SOURCE_DIR "/data/cbpp.csv",
            "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)",
            MLMX_FAMILY_BINOMIAL, 1, "1 random-effect terms");
    /* id:btype (948 levels) first, then 316 + 24 levels */
    refused(VERB, "r2 ~ Anger + (1|id) + (1|item) + (1|id:btype)", MLMX_FAMILY_BINOMIAL, 1,
            "340 levels in the terms after the first (at most 256)");
    refused(VERB, "r2 ~ Anger + situ + (1 + situ|id) + (1|item)", MLMX_FAMILY_BINOMIAL, 1,
            "more than one column");
    refused(MLMX_SOURCE_DIR "/data/sleepstudy.csv", "Reaction ~ Days + (1 | Subject)",
            MLMX_FAMILY_GAUSSIAN, 1, "linear mixed model");
    mlmx_error err;
    mlmx_err_clear(&err);
    mlmx_batch_engine E;
    cr_expect_eq(mlmx_gc_engine_init(NULL, &E, &err), MLMX_ERR_ARG);
}
