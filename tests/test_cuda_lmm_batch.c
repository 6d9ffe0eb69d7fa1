/* GPU parity of the one-term LMM batch engine: the device rows (one
 * replicate per thread, kernels/lmm_batch.cu) against the CPU rows of the
 * same engine (the same inline math on the host) for the same replicates:
 * estimates and criterion to 1e-6 relative (the LMM parity bound;
 * FMA contraction on the device makes the last bits differ), identical
 * status, and the simulated statistics through the estimates. Skipped, not
 * passed, without CUDA or a device. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mlmx.h"
#include "replicate/batch.h"

#ifdef MLMX_HAVE_CUDA
static int near(double a, double b, double rel)
{
    return fabs(a - b) <= rel * (fabs(b) > 1e-8 ? fabs(b) : 1e-8);
}

static void alloc_job(mlmx_batch_job *J, const mlmx_problem *P, size_t n, uint64_t *reps)
{
    memset(J, 0, sizeof *J);
    J->seed = 42;
    J->reps = reps;
    J->count = n;
    J->theta = calloc(n * (size_t)P->ntheta, sizeof(double));
    J->beta = calloc(n * (size_t)P->p, sizeof(double));
    J->se = calloc(n * (size_t)P->p, sizeof(double));
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
#endif

static void parity(const char *csv, const char *formula, mlmx_method method, size_t n)
{
#ifndef MLMX_HAVE_CUDA
    (void)csv, (void)formula, (void)method, (void)n;
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
    mlmx_batch_engine *E = NULL;
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_batch_engine_create(P, &E, &e), MLMX_OK, "%s", e.msg);
    cr_assert_not_null(E->gpu_rows);
    uint64_t *reps = malloc(n * sizeof *reps);
    for (size_t i = 0; i < n; i++)
        reps[i] = 7 * i + 3;
    mlmx_batch_job C, G;
    alloc_job(&C, P, n, reps);
    alloc_job(&G, P, n, reps);
    for (size_t i = 0; i < n; i++)
        G.crit[i] = G.sigma[i] = NAN; /* poisoned: every row must be written */
    cr_assert_eq(mlmx_batch_run_cpu(E, &C, 2, &e), MLMX_OK);
    cr_assert_eq(E->gpu_rows(E->impl, &G, &e), MLMX_OK, "%s (%s)", e.msg, desc);
    const size_t nt = (size_t)P->ntheta, p = (size_t)P->p;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        cr_expect_eq(G.status[i], C.status[i], "row %zu status", i);
        if (C.status[i] != 1)
            continue;
        int ok = near(G.crit[i], C.crit[i], 1e-6) && near(G.sigma[i], C.sigma[i], 1e-6);
        for (size_t t = 0; t < nt && !C.sing[i]; t++)
            ok = ok && near(G.theta[i * nt + t], C.theta[i * nt + t], 1e-6);
        for (size_t k = 0; k < p; k++)
            ok = ok && near(G.beta[i * p + k], C.beta[i * p + k], 1e-6) &&
                 near(G.se[i * p + k], C.se[i * p + k], 1e-6);
        if (!ok && bad++ < 5)
            cr_expect(0, "%s row %zu: GPU crit %.12g CPU %.12g", formula, i, G.crit[i], C.crit[i]);
    }
    cr_expect_eq(bad, 0u, "%zu of %zu rows differ beyond 1e-6", bad, n);
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

Test(cuda_lmm_batch, sleepstudy_reml, .timeout = 120) { parity(MLMX_SOURCE_DIR "/data/sleepstudy.csv", "Reaction ~ Days + (Days|Subject)", MLMX_REML, 4096); }
Test(cuda_lmm_batch, sleepstudy_ml, .timeout = 120) { parity(MLMX_SOURCE_DIR "/data/sleepstudy.csv", "Reaction ~ Days + (Days|Subject)", MLMX_ML, 2048); }
Test(cuda_lmm_batch, orthodont_intercept, .timeout = 120) { parity(MLMX_SOURCE_DIR "/data/orthodont.csv", "distance ~ age + Sex + (1|Subject)", MLMX_REML, 2048); }
Test(cuda_lmm_batch, hsb_q3, .timeout = 120) { parity(MLMX_SOURCE_DIR "/data/hsb.csv", "mathach ~ ses + sector + (ses + female|school)", MLMX_REML, 256); }
