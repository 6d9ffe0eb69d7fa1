/* The one-term LMM batch engine (kernels/lmm_batch.h run on the CPU, the
 * math the GPU kernel runs) against the general core:
 *   - its simulated response is mlmx_workspace_simulate's, to the last bit;
 *   - its analytic gradient matches central differences of its criterion
 *     (1e-5 relative), and its criterion the core's (1e-10 relative);
 *   - its refits equal workspace refits of the same replicates: criterion
 *     to 1e-7 relative, theta 2e-3 relative (+1e-4 absolute), beta and its
 *     SE to 1e-5 relative (+1e-7) on non-singular replicates;
 *   - thread count does not change a bit of the results;
 *   - models it does not cover are refused with the reason; and the
 *     device chunk planner's arithmetic. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lmm_batch.h"
#include "mlmx.h"
#include "replicate/batch.h"
#include "batchrows.h"

typedef struct setup {
    mlmx_data *d;
    mlmx_model *m;
    mlmx_fit *f;
    mlmx_problem *P;
    mlmx_batch_engine *E;
} setup;

static void open_model(setup *s, const char *csv, const char *formula, mlmx_method method)
{
    memset(s, 0, sizeof *s);
    cr_assert_eq(mlmx_data_read_csv(csv, &s->d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(s->d, formula, &s->m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.method = method;
    cr_assert_eq(mlmx_fit_lmm(s->m, &o, &s->f), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_problem_create(s->f, &s->P), MLMX_OK, "%s", mlmx_last_error());
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_batch_engine_create(s->P, &s->E, &e), MLMX_OK, "%s", e.msg);
    cr_assert_str_eq(s->E->name, "lmm-1term");
}

static void close_model(setup *s)
{
    mlmx_batch_engine_free(s->E);
    mlmx_problem_free(s->P);
    mlmx_fit_free(s->f);
    mlmx_model_free(s->m);
    mlmx_data_free(s->d);
}

static void rows_alloc(rows *r, const mlmx_problem *P, size_t count, uint64_t seed)
{
    rows_alloc_keys(r, P, count, seed, 3, 1);
}

static int near(double a, double b, double rel, double abs_tol)
{
    return fabs(a - b) <= rel * fabs(b) + abs_tol;
}

/* The engine's statistics for replicate rep, and its response. */
static void engine_stats(const setup *s, uint64_t seed, uint64_t rep, double *z, double *xty,
                         double *yty, double *y)
{
    const mlmx_lb_model *M = s->E->impl; /* the model is the impl's first member */
    double *b = malloc((size_t)M->nblk * M->q * sizeof *b);
    mlmx_lb_simulate(M, seed, rep, b, z, 1, xty, yty, y);
    free(b);
}

Test(lmm_batch, simulation_is_the_workspace_simulation)
{
    setup s;
    open_model(&s, MLMX_SOURCE_DIR "/data/sleepstudy.csv", "Reaction ~ Days + (Days|Subject)",
               MLMX_REML);
    const mlmx_lb_model *M = s.E->impl;
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(s.P, &W), MLMX_OK);
    double *y1 = malloc((size_t)M->n * sizeof *y1), *y2 = malloc((size_t)M->n * sizeof *y2);
    double *z = malloc((size_t)M->nblk * M->q * sizeof *z), xty[MLMX_LB_PMAX], yty;
    for (uint64_t r = 0; r < 20; r++) {
        cr_assert_eq(mlmx_workspace_simulate(W, 77, r * 1000003u, y1), MLMX_OK);
        engine_stats(&s, 77, r * 1000003u, z, xty, &yty, y2);
        for (int i = 0; i < M->n; i++)
            cr_assert(y1[i] == y2[i], "replicate %d obs %d: %.17g vs %.17g", (int)r, i, y1[i],
                      y2[i]);
        double yy = 0.0;
        for (int i = 0; i < M->n; i++)
            yy += y1[i] * y1[i];
        cr_expect(near(yty, yy, 1e-13, 0), "y'y %.17g vs %.17g", yty, yy);
    }
    free(y1);
    free(y2);
    free(z);
    mlmx_workspace_free(W);
    close_model(&s);
}

/* Central differences of the criterion against the analytic gradient, on
 * the optimizer's scale, at a few points around the estimates. */
static void check_gradient(const char *csv, const char *formula, mlmx_method method)
{
    setup s;
    open_model(&s, csv, formula, method);
    const mlmx_lb_model *M = s.E->impl;
    double *z = malloc((size_t)M->nblk * M->q * sizeof *z), xty[MLMX_LB_PMAX], yty;
    engine_stats(&s, 5, 11, z, xty, &yty, NULL);
    mlmx_lb_scratch *w = malloc(sizeof *w);
    double x[MLMX_LB_NTMAX], g[MLMX_LB_NTMAX], gd[MLMX_LB_NTMAX], xp[MLMX_LB_NTMAX];
    for (int pt = 0; pt < 3; pt++) {
        for (int t = 0; t < M->nt; t++)
            x[t] = M->x0[t] + 0.15 * (pt - 1) * (t % 2 ? -1 : 1);
        double f = mlmx_lb_objective(M, x, g, z, 1, xty, yty, w);
        cr_assert(isfinite(f));
        for (int t = 0; t < M->nt; t++) {
            const double h = 1e-5;
            memcpy(xp, x, sizeof xp);
            xp[t] = x[t] + h;
            double fp = mlmx_lb_objective(M, xp, gd, z, 1, xty, yty, w);
            xp[t] = x[t] - h;
            double fm = mlmx_lb_objective(M, xp, gd, z, 1, xty, yty, w);
            double fd = (fp - fm) / (2 * h);
            cr_expect(near(g[t], fd, 1e-5, 1e-5), "%s: d/dx%d analytic %.10g, differences %.10g",
                      formula, t, g[t], fd);
        }
    }
    /* the criterion is the core's at the fit's theta on the model's data */
    double cm;
    cr_assert_eq(mlmx_lmm_criterion_at(s.m, method, s.P->theta, &cm), MLMX_OK);
    double zz[64], xx[MLMX_LB_PMAX], yy = 0.0;
    (void)zz;
    double *zm = calloc((size_t)M->nblk * M->q, sizeof *zm);
    for (int k = 0; k < M->p; k++)
        xx[k] = 0.0;
    const double *y = s.P->md->y;
    for (int i = 0; i < M->n; i++) {
        for (int c = 0; c < M->q; c++)
            zm[M->code[i] * M->q + c] += M->Z[(size_t)i * M->q + c] * y[i];
        for (int k = 0; k < M->p; k++)
            xx[k] += M->X[(size_t)k * M->n + i] * y[i];
        yy += y[i] * y[i];
    }
    double cb = mlmx_lb_crit(M, s.P->theta, zm, 1, xx, yy, w);
    cr_expect(near(cb, cm, 1e-10, 0), "%s: criterion %.12g, core %.12g", formula, cb, cm);
    free(zm);
    free(w);
    free(z);
    close_model(&s);
}

Test(lmm_batch, gradient_sleepstudy_reml) { check_gradient(MLMX_SOURCE_DIR "/data/sleepstudy.csv", "Reaction ~ Days + (Days|Subject)", MLMX_REML); }
Test(lmm_batch, gradient_sleepstudy_ml) { check_gradient(MLMX_SOURCE_DIR "/data/sleepstudy.csv", "Reaction ~ Days + (Days|Subject)", MLMX_ML); }
Test(lmm_batch, gradient_hsb_q3) { check_gradient(MLMX_SOURCE_DIR "/data/hsb.csv", "mathach ~ ses + sector + (ses + female|school)", MLMX_REML); }
Test(lmm_batch, gradient_dyestuff) { check_gradient(MLMX_SOURCE_DIR "/data/dyestuff.csv", "Yield ~ 1 + (1|Batch)", MLMX_ML); }

/* Engine rows against workspace refits of the same replicates. */
static void check_refits(const char *csv, const char *formula, mlmx_method method, size_t count)
{
    setup s;
    open_model(&s, csv, formula, method);
    rows r;
    rows_alloc(&r, s.P, count, 2024);
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_batch_run_cpu(s.E, &r.J, 2, &e), MLMX_OK, "%s", e.msg);
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(s.P, &W), MLMX_OK);
    const int nt = s.P->ntheta, p = s.P->p;
    int compared = 0;
    for (size_t i = 0; i < count; i++) {
        cr_assert_eq(mlmx_workspace_simulate(W, 2024, r.reps[i], NULL), MLMX_OK);
        cr_assert_eq(mlmx_workspace_fit(W, 1), MLMX_OK, "%s", mlmx_last_error());
        cr_assert_eq(r.J.status[i], 1, "%s: replicate %zu failed in the engine", formula, i);
        double cw = mlmx_workspace_criterion(W), cb = r.J.crit[i];
        /* both minimise the same criterion: neither may be worse by more than
         * the tolerance (a singular fit's flat direction aside) */
        cr_expect(near(cb, cw, 1e-7, 1e-7), "%s rep %zu: criterion %.12g vs workspace %.12g",
                  formula, i, cb, cw);
        if (r.J.sing[i] || mlmx_workspace_singular(W))
            continue;
        compared++;
        const double *tw = mlmx_workspace_theta(W), *bw = mlmx_workspace_beta(W),
                     *sw = mlmx_workspace_se(W);
        for (int t = 0; t < nt; t++)
            cr_expect(near(r.J.theta[i * nt + t], tw[t], 2e-3, 1e-4),
                      "%s rep %zu theta%d %.8g vs %.8g", formula, i, t, r.J.theta[i * nt + t],
                      tw[t]);
        for (int k = 0; k < p; k++) {
            cr_expect(near(r.J.beta[i * p + k], bw[k], 1e-5, 1e-7 * (1 + fabs(bw[k]))),
                      "%s rep %zu beta%d %.10g vs %.10g", formula, i, k, r.J.beta[i * p + k], bw[k]);
            cr_expect(near(r.J.se[i * p + k], sw[k], 1e-4, 1e-7),
                      "%s rep %zu se%d %.10g vs %.10g", formula, i, k, r.J.se[i * p + k], sw[k]);
        }
        cr_expect(r.J.conv[i] == 1, "%s rep %zu not converged", formula, i);
    }
    cr_expect_gt(compared, (int)count / 2, "%s: too few non-singular replicates compared",
                 formula);
    mlmx_workspace_free(W);
    rows_free(&r);
    close_model(&s);
}

Test(lmm_batch, refits_sleepstudy_reml, .timeout = 60) { check_refits(MLMX_SOURCE_DIR "/data/sleepstudy.csv", "Reaction ~ Days + (Days|Subject)", MLMX_REML, 60); }
Test(lmm_batch, refits_sleepstudy_ml, .timeout = 60) { check_refits(MLMX_SOURCE_DIR "/data/sleepstudy.csv", "Reaction ~ Days + (Days|Subject)", MLMX_ML, 40); }
Test(lmm_batch, refits_orthodont, .timeout = 60) { check_refits(MLMX_SOURCE_DIR "/data/orthodont.csv", "distance ~ age + Sex + (1|Subject)", MLMX_REML, 40); }
Test(lmm_batch, refits_hsb_q3, .timeout = 120) { check_refits(MLMX_SOURCE_DIR "/data/hsb.csv", "mathach ~ ses + sector + (ses + female|school)", MLMX_REML, 10); }

Test(lmm_batch, threads_do_not_change_results, .timeout = 60)
{
    setup s;
    open_model(&s, MLMX_SOURCE_DIR "/data/sleepstudy.csv", "Reaction ~ Days + (Days|Subject)",
               MLMX_REML);
    rows a, b;
    rows_alloc(&a, s.P, 37, 9);
    rows_alloc(&b, s.P, 37, 9);
    mlmx_error e;
    cr_assert_eq(mlmx_batch_run_cpu(s.E, &a.J, 1, &e), MLMX_OK);
    cr_assert_eq(mlmx_batch_run_cpu(s.E, &b.J, 3, &e), MLMX_OK);
    cr_expect(memcmp(a.J.theta, b.J.theta, 37 * 3 * sizeof(double)) == 0);
    cr_expect(memcmp(a.J.beta, b.J.beta, 37 * 2 * sizeof(double)) == 0);
    cr_expect(memcmp(a.J.crit, b.J.crit, 37 * sizeof(double)) == 0);
    rows_free(&a);
    rows_free(&b);
    close_model(&s);
}

static void expect_unsupported(const char *csv, const char *formula, const char *why)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    mlmx_problem *P = NULL;
    cr_assert_eq(mlmx_data_read_csv(csv, &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, formula, &m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    cr_assert_eq(mlmx_fit_lmm(m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_problem_create(f, &P), MLMX_OK);
    mlmx_batch_engine *E = (mlmx_batch_engine *)1;
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_expect_eq(mlmx_batch_engine_create(P, &E, &e), MLMX_ERR_UNSUPPORTED);
    cr_expect_null(E);
    cr_expect(strstr(e.msg, why) != NULL, "reason '%s' lacks '%s'", e.msg, why);
    mlmx_problem_free(P);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

Test(lmm_batch, crossed_model_is_refused_with_the_reason)
{
    /* a crossed model no engine covers (lmm-crossed: nine terms, at most
     * 8) */
    expect_unsupported(MLMX_SOURCE_DIR "/data/penicillin.csv",
                       "diameter ~ 1 + (1|plate) + (1|sample) + (1|plate) + (1|sample) + "
                       "(1|plate) + (1|sample) + (1|plate) + (1|sample) + (1|plate)",
                       "more than one random-effect term");
}

Test(lmm_batch, chunk_planner)
{
    const size_t MiB = 1u << 20;
    /* 1 GiB free, 16 MiB fixed, 1 KiB a replicate, 90%: 905,216 replicates,
     * rounded down to a multiple of 128 */
    size_t n = mlmx_batch_plan_chunk(1024 * MiB, 16 * MiB, 1024, 10000000, 0.9, 128, 0);
    cr_expect_eq(n, (size_t)((1008.0 * MiB * 0.9) / 1024) / 128 * 128);
    cr_expect_eq(n % 128, 0u);
    /* the whole run fits: all of it */
    cr_expect_eq(mlmx_batch_plan_chunk(1024 * MiB, 16 * MiB, 1024, 1000, 0.9, 128, 0), 1000u);
    /* a cap */
    cr_expect_eq(mlmx_batch_plan_chunk(1024 * MiB, 16 * MiB, 1024, 10000000, 0.9, 128, 4096),
                 4096u);
    /* too little memory: 0 (the caller reports it) */
    cr_expect_eq(mlmx_batch_plan_chunk(16 * MiB, 16 * MiB, 1024, 1000, 0.9, 128, 0), 0u);
    cr_expect_eq(mlmx_batch_plan_chunk(17 * MiB, 16 * MiB, 1 * MiB, 1000, 0.5, 128, 0), 0u);
    /* a bad fraction means all */
    cr_expect_eq(mlmx_batch_plan_chunk(2048, 0, 16, 1000, -1, 1, 0), 128u);
}
