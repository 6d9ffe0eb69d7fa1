/* GPU parity of the lmm-crossed batch engine: the device rows
 * (kernels/lmm_dense_batch.cu) against the CPU rows of the same engine
 * (the same inline math on the host) for the same replicates, under the
 * three device mappings (one replicate per thread, per warp, per block of
 * 128 threads), on Penicillin, Pastes, sim_crossed (dense blocks of 45,
 * 194 and 345 columns) and veneer:
 *   - identical status;
 *   - criterion and sigma to 1e-6 relative;
 *   - theta, beta and SE to 1e-6 relative on rows where both took the same
 *     number of evaluations (nvcc's FMA contraction changes the last bits,
 *     which can flip a stopping test; such rows must agree as refits of one
 *     replicate do: theta 1e-4, beta 1e-5, SE 1e-4), and at least half the
 *     rows must be on the same path;
 *   - the device simulation (gpu_sim) gives the CPU's responses to 1e-12.
 * Skipped, not passed, without CUDA or a device. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lmm_dense_batch.h"
#include "mlmx.h"
#include "replicate/batch.h"
#include "replicate/lmm_dense_engine.h"

#ifdef MLMX_HAVE_CUDA
static int near(double a, double b, double rel)
{
    return fabs(a - b) <= rel * (fabs(b) > 1e-8 ? fabs(b) : 1e-8);
}

static void alloc_job(mlmx_batch_job *J, int ntheta, int p, size_t n, uint64_t *reps)
{
    memset(J, 0, sizeof *J);
    J->seed = 42;
    J->reps = reps;
    J->count = n;
    J->theta = calloc(n * (size_t)ntheta, sizeof(double));
    J->beta = calloc(n * (size_t)p, sizeof(double));
    J->se = calloc(n * (size_t)p, sizeof(double));
    J->sigma = calloc(n, sizeof(double));
    J->crit = calloc(n, sizeof(double));
    J->nev = calloc(n, sizeof(int));
    J->conv = calloc(n, 1);
    J->sing = calloc(n, 1);
    J->status = calloc(n, 1);
}

static void free_job(mlmx_batch_job *J)
{
    free(J->theta);
    free(J->beta);
    free(J->se);
    free(J->sigma);
    free(J->crit);
    free(J->nev);
    free(J->conv);
    free(J->sing);
    free(J->status);
}

/* Row i of G against row i of C; 0 when they differ beyond the bounds. */
static int row_ok(const mlmx_batch_job *G, const mlmx_batch_job *C, size_t i, size_t nt,
                  size_t p, int *same_path)
{
    *same_path = G->nev[i] == C->nev[i];
    const double tt = *same_path ? 1e-6 : 1e-4, tb = *same_path ? 1e-6 : 1e-5;
    const double ts = *same_path ? 1e-6 : 1e-4;
    int ok = near(G->crit[i], C->crit[i], 1e-6) && near(G->sigma[i], C->sigma[i], 1e-6);
    for (size_t t = 0; t < nt && !C->sing[i]; t++)
        ok = ok && near(G->theta[i * nt + t], C->theta[i * nt + t], tt);
    for (size_t k = 0; k < p; k++)
        ok = ok && near(G->beta[i * p + k], C->beta[i * p + k], tb) &&
             near(G->se[i * p + k], C->se[i * p + k], ts);
    return ok;
}

/* The device simulation against the CPU's, replicate by replicate. */
static void check_sim(mlmx_batch_engine *E, const uint64_t *reps, size_t n)
{
    const mlmx_ld_model *M = mlmx_ld_engine_model(E);
    cr_assert_not_null(E->gpu_sim);
    double *y = malloc(n * (size_t)M->n * sizeof *y), *yc = malloc((size_t)M->n * sizeof *yc);
    double *b = malloc((size_t)M->nu * sizeof *b);
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(E->gpu_sim(E->impl, 42, reps, n, y, &e), MLMX_OK, "%s", e.msg);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        mlmx_ld_simulate(M, 42, reps[i], b, NULL, yc);
        for (int k = 0; k < M->n; k++)
            bad += !(fabs(y[i * (size_t)M->n + (size_t)k] - yc[k]) <= 1e-12 * (1 + fabs(yc[k])));
    }
    cr_expect_eq(bad, 0u, "%zu simulated values differ from the CPU's beyond 1e-12", bad);
    free(y);
    free(yc);
    free(b);
}
#endif

static void parity(const char *csv, const char *formula, mlmx_method method, size_t n,
                   int mapping)
{
#ifndef MLMX_HAVE_CUDA
    (void)csv, (void)formula, (void)method, (void)n, (void)mapping;
    cr_skip_test("built without CUDA (MLMX_CUDA=OFF or no toolkit)");
#else
    char desc[256];
    if (mlmx_device_describe(desc, sizeof desc) != MLMX_OK)
        cr_skip_test("no usable CUDA device: %s", desc);
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    mlmx_problem *P = NULL;
    cr_assert_eq(mlmx_data_read_csv(csv, &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, formula, &m), MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.method = method;
    cr_assert_eq(mlmx_fit_lmm(m, &o, &f), MLMX_OK);
    cr_assert_eq(mlmx_problem_create(f, &P), MLMX_OK);
    mlmx_batch_engine *E = calloc(1, sizeof *E); /* the engine, not the registry's choice */
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_not_null(E);
    cr_assert_eq(mlmx_ld_engine_init(P, E, &e), MLMX_OK, "%s", e.msg);
    cr_assert_not_null(E->gpu_rows);
    mlmx_ld_engine_set_mapping(E, mapping);
    uint64_t *reps = malloc(n * sizeof *reps);
    for (size_t i = 0; i < n; i++)
        reps[i] = 7 * i + 3;
    const int nt = mlmx_ld_engine_model(E)->nt;
    const int p = mlmx_ld_engine_model(E)->p;
    mlmx_batch_job C, G;
    alloc_job(&C, nt, p, n, reps);
    alloc_job(&G, nt, p, n, reps);
    for (size_t i = 0; i < n; i++)
        G.crit[i] = G.sigma[i] = NAN; /* poisoned: every row must be written */
    cr_assert_eq(mlmx_batch_run_cpu(E, &C, 2, &e), MLMX_OK);
    cr_assert_eq(E->gpu_rows(E->impl, &G, &e), MLMX_OK, "%s (%s)", e.msg, desc);
    size_t bad = 0, same = 0;
    for (size_t i = 0; i < n; i++) {
        cr_expect_eq(G.status[i], C.status[i], "row %zu status", i);
        if (C.status[i] != 1)
            continue;
        int sp;
        const int ok = row_ok(&G, &C, i, (size_t)nt, (size_t)p, &sp);
        same += (size_t)sp;
        if (!ok && bad++ < 5)
            cr_expect(0, "%s row %zu: GPU crit %.12g CPU %.12g, evaluations %d vs %d", formula, i,
                      G.crit[i], C.crit[i], G.nev[i], C.nev[i]);
    }
    cr_expect_eq(bad, 0u, "%zu of %zu rows differ beyond the bounds", bad, n);
    cr_expect_geq(2 * same, n, "only %zu of %zu rows on the CPU's optimizer path", same, n);
    check_sim(E, reps, n < 64 ? n : 64);
    free_job(&C);
    free_job(&G);
    free(reps);
    mlmx_batch_engine_free(E);
    mlmx_problem_free(P);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
#endif
}

#define PEN MLMX_SOURCE_DIR "/data/penicillin.csv"
#define PENF "diameter ~ 1 + (1|plate) + (1|sample)"
#define SIMC MLMX_SOURCE_DIR "/data/sim_crossed.csv"
#define SIMCF "score ~ time * grp + (1 + time|student) + (1|teacher)"

Test(cuda_lmm_dense_batch, penicillin_reml_thread, .timeout = 120) { parity(PEN, PENF, MLMX_REML, 2048, 1); }
Test(cuda_lmm_dense_batch, penicillin_reml_warp, .timeout = 120) { parity(PEN, PENF, MLMX_REML, 2048, 2); }
Test(cuda_lmm_dense_batch, penicillin_ml_auto, .timeout = 120) { parity(PEN, PENF, MLMX_ML, 1024, 0); }
Test(cuda_lmm_dense_batch, pastes_reml_auto, .timeout = 120) { parity(MLMX_SOURCE_DIR "/data/pastes.csv", "strength ~ 1 + (1|batch/cask)", MLMX_REML, 1024, 0); }
Test(cuda_lmm_dense_batch, sim_crossed_reml_warp, .timeout = 240) { parity(SIMC, SIMCF, MLMX_REML, 128, 2); }
Test(cuda_lmm_dense_batch, sim_crossed_ml_thread, .timeout = 240) { parity(SIMC, SIMCF, MLMX_ML, 64, 1); }
/* the block mapping: forced on small models, chosen by size on large ones */
Test(cuda_lmm_dense_batch, penicillin_reml_block, .timeout = 120) { parity(PEN, PENF, MLMX_REML, 1024, 3); }
Test(cuda_lmm_dense_batch, sim_crossed_reml_block, .timeout = 240) { parity(SIMC, SIMCF, MLMX_REML, 128, 3); }
Test(cuda_lmm_dense_batch, sim_crossed_194_ml_auto, .timeout = 240) { parity(SIMC, "score ~ time + grp + (time||student) + (1|teacher)", MLMX_ML, 128, 0); }
Test(cuda_lmm_dense_batch, sim_crossed_194_reml_warp, .timeout = 240) { parity(SIMC, "score ~ time + grp + (time||student) + (1|teacher)", MLMX_REML, 64, 2); }
Test(cuda_lmm_dense_batch, sim_crossed_345_reml_block, .timeout = 300) { parity(SIMC, "score ~ time * grp + (1 + time|student) + (1|teacher) + (1|student:teacher)", MLMX_REML, 16, 3); }
Test(cuda_lmm_dense_batch, veneer_ml_auto, .timeout = 240) { parity(MLMX_SOURCE_DIR "/data/veneer.csv", "gcf ~ time*(base_gcf + cda + age) + (time|patient) + (1|patient:tooth)", MLMX_ML, 128, 0); }
