/* The glmm-crossed engine's device rows against its CPU rows (both run
 * mlmx_gc_fit_one of kernels/glmm_crossed_batch.h, compiled by nvcc for
 * the device): criterion to 1e-6 relative, theta and beta to 1e-5
 * relative (+1e-6, non-singular fits only), SEs to 1e-4 relative, the
 * same status and singular flags, convergence flags alike on at least 90%
 * of the rows (a last-bit difference can end a line search one step
 * apart); the device's simulated responses (gpu_sim) equal the CPU's but
 * for at most one draw in 10^4 (a uniform within an ulp of a boundary,
 * docs/gpu.md). Skipped without CUDA or without a device. Data: VerbAgg
 * (subjects x items) and grouseticks with three terms. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batchrows.h"
#include "glmmproblem.h"
#include "mlmx.h"
#include "replicate/glmm_crossed_batch_engine.h"
#include "replicate/replicate.h"
#ifdef MLMX_HAVE_CUDA
#include "cuda_entry.h"
#endif

#define NREP 24 /* small enough for compute-sanitizer runs */

#define close_to glmm_close_to

static void sim_parity(const mlmx_batch_engine *E, const mlmx_gc_shared *S)
{
    enum { NS = 48 };
    uint64_t reps[NS];
    for (int i = 0; i < NS; i++)
        reps[i] = (uint64_t)(31 * i + 2);
    const size_t n = (size_t)S->n;
    double *yg = malloc(NS * n * sizeof *yg), *mem = calloc(mlmx_gc_rep_doubles(S), sizeof *mem);
    cr_assert(yg && mem);
    mlmx_gc_rep R;
    mlmx_gc_rep_bind(S, mem, &R);
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_not_null(E->gpu_sim);
    cr_assert_eq(E->gpu_sim(E->impl, 5u, reps, NS, yg, &err), MLMX_OK, "%s", err.msg);
    size_t differ = 0;
    for (int r = 0; r < NS; r++) {
        mlmx_gc_simulate(S, 5u, reps[r], &R);
        for (size_t i = 0; i < n; i++)
            differ += yg[(size_t)r * n + i] != R.y[S->pos[i]];
    }
    cr_expect_leq(differ * 10000, NS * n, "%zu of %zu draws differ", differ, NS * n);
    free(yg);
    free(mem);
}

static void parity(const char *csv, const char *formula, mlmx_family fam)
{
    glmm_problem gp;
    glmm_problem_open(&gp, csv, formula, fam, 1);
    mlmx_problem *P = gp.P;
    mlmx_batch_engine E;
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_eq(mlmx_gc_engine_init(P, &E, &err), MLMX_OK, "%s", err.msg);
    cr_assert_not_null(E.gpu_rows);
    const int p = mlmx_gc_engine_shared(&E)->p, K = mlmx_gc_engine_shared(&E)->K;
    rows c, g;
    rows_alloc_keys(&c, P, NREP, 99u, 7, 1000);
    rows_alloc_keys(&g, P, NREP, 99u, 7, 1000);
    E.cpu_rows(E.impl, &c.J, 0, NREP);
    cr_assert_eq(E.gpu_rows(E.impl, &g.J, &err), MLMX_OK, "%s", err.msg);
    int conv_same = 0;
    for (int i = 0; i < NREP; i++) {
        cr_expect_eq(g.J.status[i], c.J.status[i], "rep %d status", i);
        cr_expect_eq(g.J.sing[i], c.J.sing[i], "rep %d singular", i);
        conv_same += g.J.conv[i] == c.J.conv[i];
        if (c.J.status[i] != 1)
            continue;
        cr_expect(close_to(g.J.crit[i], c.J.crit[i], 1e-6, 0.0), "rep %d crit %.12g vs %.12g", i,
                  g.J.crit[i], c.J.crit[i]);
        if (c.J.sing[i])
            continue;
        for (int t = 0; t < K; t++) {
            const double gt = g.J.theta[i * K + t], ct = c.J.theta[i * K + t];
            cr_expect(close_to(gt, ct, 1e-5, 1e-6), "rep %d theta %d %.10g vs %.10g", i, t, gt,
                      ct);
        }
        for (int j = 0; j < p; j++) {
            const double gb = g.J.beta[i * p + j], cb = c.J.beta[i * p + j];
            const double gs = g.J.se[i * p + j], cs = c.J.se[i * p + j];
            cr_expect(close_to(gb, cb, 1e-5, 1e-6), "rep %d beta %d %.10g vs %.10g", i, j, gb, cb);
            cr_expect(close_to(gs, cs, 1e-4, 1e-7), "rep %d se %d %.10g vs %.10g", i, j, gs, cs);
        }
    }
    cr_expect_geq(conv_same, NREP * 9 / 10, "convergence flags agree on %d of %d rows", conv_same,
                  NREP);
    sim_parity(&E, mlmx_gc_engine_shared(&E));
    rows_free(&c);
    rows_free(&g);
    E.free(E.impl);
    glmm_problem_close(&gp);
}

static void need_device(void)
{
#ifndef MLMX_HAVE_CUDA
    cr_skip_test("built without CUDA (MLMX_CUDA=OFF or no toolkit)");
#else
    if (mlmx_cuda_device_count() == 0)
        cr_skip_test("no CUDA device on this machine");
#endif
}

Test(cuda_glmm_crossed_batch, verbagg_gpu_equals_cpu, .timeout = 300)
{
    need_device();
    parity(MLMX_SOURCE_DIR "/data/verbagg.csv",
           "r2 ~ Anger + Gender + btype + situ + (1|id) + (1|item)", MLMX_FAMILY_BINOMIAL);
}

Test(cuda_glmm_crossed_batch, grouseticks_gpu_equals_cpu, .timeout = 300)
{
    need_device();
    parity(MLMX_SOURCE_DIR "/data/grouseticks.csv",
           "TICKS ~ factor(YEAR) + HEIGHT + (1|BROOD) + (1|INDEX) + (1|LOCATION)",
           MLMX_FAMILY_POISSON);
}
