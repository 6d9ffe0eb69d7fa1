/* The glmm-nest engine's device rows against its CPU rows (the same inline
 * math of kernels/glmm_nest_batch.h, compiled by nvcc): criterion to 1e-6
 * relative, theta and beta to 1e-5 relative (+1e-6 absolute, and only for
 * non-singular fits, where theta is determined), SEs to 1e-4 relative,
 * the same status and singular flags, convergence flags on at least 90%
 * of the rows alike (a last-bit difference can end a line search one step
 * apart); the device simulation (gpu_sim) draws the CPU's responses.
 * Skipped without CUDA or without a device. Data: the hdp subset
 * (HID <= 3) and lme4's grouseticks with BROOD nested in LOCATION. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "glmmfit.h"
#include "mlmx.h"
#include "replicate/glmm_nest_batch_engine.h"
#include "replicate/replicate.h"
#ifdef MLMX_HAVE_CUDA
#include "cuda_entry.h"
#endif

#define NREP 32 /* small enough for compute-sanitizer runs */

typedef struct rows {
    uint64_t reps[NREP];
    double th[NREP * 2], be[NREP * MLMX_GN_PMAX], se[NREP * MLMX_GN_PMAX], sg[NREP], cr[NREP];
    int nev[NREP];
    signed char cv[NREP], sn[NREP], st[NREP];
} rows;

static mlmx_batch_job job_of(rows *r)
{
    for (int i = 0; i < NREP; i++)
        r->reps[i] = (uint64_t)(1000 + 7 * i);
    mlmx_batch_job J = {99u,   r->reps, NREP,   r->th,  r->be, r->se,
                        r->sg, r->cr,   r->nev, r->cv, r->sn, r->st};
    return J;
}

/* x fitted (family fam, link, nagq) and the engine E on its problem. */
static void open_engine(glmmfit *x, mlmx_batch_engine *E, const char *csv, const char *formula,
                        mlmx_family fam, mlmx_link link, int nagq)
{
    glmmfit_open_link(x, csv, formula, fam, nagq, link, NULL);
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_eq(mlmx_gn_engine_init(x->P, E, &err), MLMX_OK, "%s", err.msg);
}

static void parity_link(const char *csv, const char *formula, mlmx_family fam, mlmx_link link,
                        int nagq)
{
    glmmfit x;
    mlmx_batch_engine E;
    open_engine(&x, &E, csv, formula, fam, link, nagq);
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_not_null(E.gpu_rows);
    const int p = mlmx_gn_engine_shared(&E)->p;
    rows *c = calloc(1, sizeof *c), *g = calloc(1, sizeof *g);
    cr_assert(c && g);
    mlmx_batch_job Jc = job_of(c), Jg = job_of(g);
    E.cpu_rows(E.impl, &Jc, 0, NREP);
    cr_assert_eq(E.gpu_rows(E.impl, &Jg, &err), MLMX_OK, "%s", err.msg);
    int conv_same = 0;
    for (int i = 0; i < NREP; i++) {
        cr_expect_eq(g->st[i], c->st[i], "rep %d status", i);
        cr_expect_eq(g->sn[i], c->sn[i], "rep %d singular", i);
        conv_same += g->cv[i] == c->cv[i];
        if (c->st[i] != 1)
            continue;
        cr_expect(close_to(g->cr[i], c->cr[i], 1e-6, 0.0), "rep %d crit %.12g vs %.12g", i,
                  g->cr[i], c->cr[i]);
        if (c->sn[i])
            continue;
        for (int t = 0; t < 2; t++)
            cr_expect(close_to(g->th[2 * i + t], c->th[2 * i + t], 1e-5, 1e-6),
                      "rep %d theta %d %.10g vs %.10g", i, t, g->th[2 * i + t], c->th[2 * i + t]);
        for (int j = 0; j < p; j++) {
            cr_expect(close_to(g->be[i * p + j], c->be[i * p + j], 1e-5, 1e-6),
                      "rep %d beta %d %.10g vs %.10g", i, j, g->be[i * p + j], c->be[i * p + j]);
            cr_expect(close_to(g->se[i * p + j], c->se[i * p + j], 1e-4, 1e-7),
                      "rep %d se %d %.10g vs %.10g", i, j, g->se[i * p + j], c->se[i * p + j]);
        }
    }
    cr_expect_geq(conv_same, NREP * 9 / 10, "convergence flags agree on %d of %d rows", conv_same,
                  NREP);
    free(c);
    free(g);
    E.free(E.impl);
    glmmfit_close(&x);
}

static void parity(const char *csv, const char *formula, mlmx_family fam, int nagq)
{
    parity_link(csv, formula, fam, MLMX_LINK_DEFAULT, nagq);
}

/* The device's draws (gpu_sim, model order) against the CPU's
 * (mlmx_gn_sim_one, grouped order; the CPU engine's test shows those are
 * the workspace's). A discrete draw may differ where a uniform falls
 * within an ulp of a boundary (docs/gpu.md): at most one in 10^4. */
static void sim_parity(const char *csv, const char *formula, mlmx_family fam)
{
    enum { NS = 300 }; /* more than one block of the simulation kernel */
    glmmfit x;
    mlmx_batch_engine E;
    open_engine(&x, &E, csv, formula, fam, MLMX_LINK_DEFAULT, 1);
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_not_null(E.gpu_sim);
    const mlmx_gn_shared *S = mlmx_gn_engine_shared(&E);
    const size_t n = (size_t)S->n;
    uint64_t reps[NS];
    for (int i = 0; i < NS; i++)
        reps[i] = (uint64_t)(31 * i + 2);
    double *yg = malloc(NS * n * sizeof *yg), *base = malloc(mlmx_gn_sim_doubles(S) * sizeof *base);
    cr_assert(yg && base);
    cr_assert_eq(E.gpu_sim(E.impl, 5u, reps, NS, yg, &err), MLMX_OK, "%s", err.msg);
    size_t differ = 0;
    for (int r = 0; r < NS; r++) {
        mlmx_gn_sim_one(S, 5u, reps[r], base);
        for (size_t i = 0; i < n; i++)
            differ += yg[(size_t)r * n + i] != base[S->pos[i]];
    }
    cr_expect_leq(differ * 10000, NS * n, "%zu of %zu draws differ", differ, NS * n);
    free(yg);
    free(base);
    E.free(E.impl);
    glmmfit_close(&x);
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

#define HDP3 MLMX_SOURCE_DIR "/data/hdp_hid123.csv"
#define HDP_F "remission ~ IL6 + CRP + LengthofStay + (1|HID/DID)"
#define GROUSE MLMX_SOURCE_DIR "/data/grouseticks.csv"
#define GROUSE_F "TICKS ~ factor(YEAR) + (1|LOCATION/BROOD)"

Test(cuda_glmm_nest_batch, hdp_laplace_gpu_equals_cpu, .timeout = 300)
{
    need_device();
    parity(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, 1);
}

Test(cuda_glmm_nest_batch, hdp_agq25_gpu_equals_cpu, .timeout = 300)
{
    need_device();
    parity(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, 25);
}

Test(cuda_glmm_nest_batch, grouseticks_poisson_gpu_equals_cpu, .timeout = 300)
{
    need_device();
    parity(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 1);
    parity(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 9);
}

Test(cuda_glmm_nest_batch, simulated_responses_equal_cpu, .timeout = 300)
{
    need_device();
    sim_parity(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL);
    sim_parity(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON);
}

/* The binomial probit and cloglog (Laplace), with the restart of
 * mlmx_gn_restart_due on singular replicates. */
Test(cuda_glmm_nest_batch, hdp_probit_cloglog_gpu_equal_cpu, .timeout = 300)
{
    need_device();
    parity_link(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_PROBIT, 1);
    parity_link(HDP3, HDP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_CLOGLOG, 1);
}
