/* GPU parity of the nested LMM batch engine: the device rows
 * (kernels/lmm_nest_batch.cu, both mappings: one replicate per warp and
 * one per thread, each forced on a model it would not pick by size too)
 * against the CPU rows of the same engine (the same inline math on the
 * host) for the same replicates: criterion and sigma to 1e-6 relative,
 * and theta, beta, SE to 1e-6 where no variance parameter is within 1e-2
 * of its bound (there the criterion is flat and the last-bit differences
 * of the device's FMAs and libm move the stopping point; see
 * tests/test_lmm_nest_batch.c), identical status. Skipped, not passed,
 * without CUDA or a device. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mlmx.h"
#include "replicate/batch.h"
#include "replicate/lmm_nest_engine.h"
#include "replicate/replicate.h"

#ifdef MLMX_HAVE_CUDA
static int near(double a, double b, double rel)
{
    return fabs(a - b) <= rel * (fabs(b) > 1e-8 ? fabs(b) : 1e-8);
}

static void alloc_job(mlmx_batch_job *J, const mlmx_problem *P, size_t n, uint64_t *reps)
{
    memset(J, 0, sizeof *J);
    J->seed = 4242;
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

static int near_bound(const mlmx_problem *P, const double *theta)
{
    for (int t = 0; t < P->ntheta; t++)
        if (P->md->theta_lower[t] == 0.0 && theta[t] < 1e-2)
            return 1;
    return 0;
}

/* Rows of G against C; the count that differ. */
static size_t compare_rows(const mlmx_problem *P, const mlmx_batch_job *C,
                           const mlmx_batch_job *G, const char *what)
{
    const size_t nt = (size_t)P->ntheta, p = (size_t)P->p;
    size_t bad = 0;
    for (size_t i = 0; i < C->count; i++) {
        cr_expect_eq(G->status[i], C->status[i], "%s row %zu status", what, i);
        if (C->status[i] != 1)
            continue;
        int ok = near(G->crit[i], C->crit[i], 1e-6) && near(G->sigma[i], C->sigma[i], 1e-6);
        if (!near_bound(P, C->theta + i * nt) && !near_bound(P, G->theta + i * nt)) {
            for (size_t t = 0; t < nt; t++)
                ok = ok && near(G->theta[i * nt + t], C->theta[i * nt + t], 1e-6);
            for (size_t k = 0; k < p; k++)
                ok = ok && near(G->beta[i * p + k], C->beta[i * p + k], 1e-6) &&
                     near(G->se[i * p + k], C->se[i * p + k], 1e-6);
        }
        if (!ok && bad++ < 5)
            cr_expect(0, "%s row %zu: GPU crit %.12g CPU %.12g", what, i, G->crit[i], C->crit[i]);
    }
    return bad;
}
#endif

static void parity(const char *csv, const char *formula, mlmx_method method, size_t n,
                   int other_mapping)
{
#ifndef MLMX_HAVE_CUDA
    (void)csv, (void)formula, (void)method, (void)n, (void)other_mapping;
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
    cr_assert_str_eq(E->name, "lmm-nest");
    cr_assert_not_null(E->gpu_rows);
    uint64_t *reps = malloc(n * sizeof *reps);
    for (size_t i = 0; i < n; i++)
        reps[i] = 7 * i + 3;
    mlmx_batch_job C, G;
    alloc_job(&C, P, n, reps);
    alloc_job(&G, P, n, reps);
    cr_assert_eq(mlmx_batch_run_cpu(E, &C, 2, &e), MLMX_OK);
    const int auto_map = mlmx_nb_engine_auto_mapping(mlmx_nb_engine_model(E));
    for (int pass = 0; pass < (other_mapping ? 2 : 1); pass++) {
        const int map = pass == 0 ? auto_map : 3 - auto_map; /* thread <-> warp */
        mlmx_nb_engine_set_mapping(E, map);
        for (size_t i = 0; i < n; i++)
            G.crit[i] = G.sigma[i] = NAN; /* poisoned: every row must be written */
        cr_assert_eq(E->gpu_rows(E->impl, &G, &e), MLMX_OK, "%s (%s)", e.msg, desc);
        const char *what = map == MLMX_NB_MAP_WARP ? "warp mapping" : "thread mapping";
        size_t bad = compare_rows(P, &C, &G, what);
        cr_expect_eq(bad, 0u, "%s, %s: %zu of %zu rows differ beyond 1e-6", formula, what, bad, n);
    }
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

Test(cuda_lmm_nest_batch, classroom_reml, .timeout = 300) { parity(MLMX_SOURCE_DIR "/data/classroom.csv", "mathgain ~ mathkind + (1|schoolid/classid)", MLMX_REML, 2048, 1); }
Test(cuda_lmm_nest_batch, classroom_ml, .timeout = 300) { parity(MLMX_SOURCE_DIR "/data/classroom.csv", "mathgain ~ mathkind + (1|schoolid/classid)", MLMX_ML, 512, 0); }
Test(cuda_lmm_nest_batch, pastes_reml, .timeout = 300) { parity(MLMX_SOURCE_DIR "/data/pastes.csv", "strength ~ 1 + (1|batch/cask)", MLMX_REML, 2048, 1); }
Test(cuda_lmm_nest_batch, nested4_slope, .timeout = 300) { parity(MLMX_SOURCE_DIR "/data/sim_nested4.csv", "y ~ ses + female + (1|district) + (1 + ses|district:school) + (1|district:school:class)", MLMX_REML, 256, 1); }
