/* The glmm-1ri engine's device rows against its CPU rows (the same inline
 * math of kernels/glmm_batch.h, compiled by nvcc), for scalar terms and
 * for vector terms (the engine's "glmm-vec" path, kernels/glmm_batch_vec.h:
 * hdp's (1 + LengthofStay | HID), salamanders' (1 + DOY | site) Poisson,
 * grouseticks' (1 + cHEIGHT | BROOD) NB2, wine's (1 + temp | judge)): criterion to 1e-5
 * relative, theta, beta and the extra parameters (ordinal thresholds, NB2
 * size) to 1e-5 relative (+1e-6 absolute, and only for non-singular fits,
 * where theta is determined), SEs to 1e-4 relative, the same status,
 * convergence and singular flags; the device's simulated responses
 * (gpu_sim) equal the CPU's. Skipped without CUDA or without a device.
 * Data: lme4's cbpp and grouseticks (cbpp also with the probit and
 * cloglog links), ordinal's wine (logit, probit, cloglog), glmmTMB's
 * salamanders (data/). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "glmmfit.h"
#include "mlmx.h"
#include "replicate/glmm_batch_engine.h"
#include "replicate/replicate.h"
#ifdef MLMX_HAVE_CUDA
#include "cuda_entry.h"
#endif

#define NREP 96

typedef struct rows {
    uint64_t reps[NREP];
    double th[NREP * MLMX_GB_THMAX], be[NREP * MLMX_GB_PMAX], se[NREP * MLMX_GB_PMAX], sg[NREP], cr[NREP];
    double ex[NREP * MLMX_GB_EMAX];
    int nev[NREP];
    signed char cv[NREP], sn[NREP], st[NREP];
} rows;

static mlmx_batch_job job_of(rows *r)
{
    for (int i = 0; i < NREP; i++)
        r->reps[i] = (uint64_t)(1000 + 7 * i);
    mlmx_batch_job J = {99u,   r->reps, NREP,  r->th,  r->be, r->se,
                        r->sg, r->cr,   r->nev, r->cv, r->sn, r->st};
    return J;
}

/* The device's draws (gpu_sim, model order) against the CPU's
 * (mlmx_gb_simulate, grouped order). Discrete draws may differ where a
 * uniform falls within an ulp of a boundary (docs/gpu.md): at most one in
 * 10^4 is allowed to. */
static void sim_parity(const mlmx_batch_engine *E, const mlmx_gb_shared *S)
{
    enum { NS = 64 };
    uint64_t reps[NS];
    for (int i = 0; i < NS; i++)
        reps[i] = (uint64_t)(31 * i + 2);
    const size_t n = (size_t)S->n;
    double *yg = malloc(NS * n * sizeof *yg), *yc = malloc(n * sizeof *yc);
    double *u = malloc((size_t)S->nclu * (size_t)S->q * sizeof *u);
    cr_assert(yg && yc && u);
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_not_null(E->gpu_sim);
    cr_assert_eq(E->gpu_sim(E->impl, 5u, reps, NS, yg, &err), MLMX_OK, "%s", err.msg);
    size_t differ = 0;
    for (int r = 0; r < NS; r++) {
        mlmx_gb_rep R = {yc, u, 1, 1};
        mlmx_gb_simulate(S, 5u, reps[r], &R);
        for (size_t i = 0; i < n; i++)
            differ += yg[(size_t)r * n + i] != yc[S->pos[i]];
    }
    cr_expect_leq(differ * 10000, NS * n, "%zu of %zu draws differ", differ, NS * n);
    free(yg);
    free(yc);
    free(u);
}

static void parity_link(const char *csv, const char *formula, mlmx_family fam, mlmx_link link,
                        int nagq)
{
    glmmfit x;
    glmmfit_open_link(&x, csv, formula, fam, nagq, link, NULL);
    const mlmx_problem *P = x.P;
    mlmx_batch_engine E;
    mlmx_error err;
    mlmx_err_clear(&err);
    cr_assert_eq(mlmx_gb_engine_init(P, &E, &err), MLMX_OK, "%s", err.msg);
    cr_assert_not_null(E.gpu_rows);
    const mlmx_gb_shared *S = mlmx_gb_engine_shared(&E);
    const int p = S->pout, ne = S->ne, nth = S->nth;
    cr_assert_str_eq(E.name, S->q > 1 ? "glmm-vec" : "glmm-1ri");
    rows *c = calloc(1, sizeof *c), *g = calloc(1, sizeof *g);
    cr_assert(c && g);
    mlmx_batch_job Jc = job_of(c), Jg = job_of(g);
    if (E.set_extra_out)
        E.set_extra_out(E.impl, c->ex);
    E.cpu_rows(E.impl, &Jc, 0, NREP);
    if (E.set_extra_out)
        E.set_extra_out(E.impl, g->ex);
    cr_assert_eq(E.gpu_rows(E.impl, &Jg, &err), MLMX_OK, "%s", err.msg);
    for (int i = 0; i < NREP; i++) {
        cr_expect_eq(g->st[i], c->st[i], "rep %d status", i);
        cr_expect_eq(g->cv[i], c->cv[i], "rep %d converged", i);
        cr_expect_eq(g->sn[i], c->sn[i], "rep %d singular", i);
        if (c->st[i] != 1)
            continue;
        cr_expect(close_to(g->cr[i], c->cr[i], 1e-5, 0.0), "rep %d crit %.12g vs %.12g", i,
                  g->cr[i], c->cr[i]);
        if (c->sn[i])
            continue;
        for (int k = 0; k < nth; k++)
            cr_expect(close_to(g->th[i * nth + k], c->th[i * nth + k], 1e-5, 1e-6),
                      "rep %d theta %d %.10g vs %.10g", i, k, g->th[i * nth + k],
                      c->th[i * nth + k]);
        for (int j = 0; j < p; j++) {
            cr_expect(close_to(g->be[i * p + j], c->be[i * p + j], 1e-5, 1e-6),
                      "rep %d beta %d %.10g vs %.10g", i, j, g->be[i * p + j], c->be[i * p + j]);
            if (isnan(c->se[i * p + j])) /* an ordinal model's intercept */
                cr_expect(isnan(g->se[i * p + j]), "rep %d se %d", i, j);
            else
                cr_expect(close_to(g->se[i * p + j], c->se[i * p + j], 1e-4, 1e-7),
                          "rep %d se %d %.10g vs %.10g", i, j, g->se[i * p + j],
                          c->se[i * p + j]);
        }
        for (int k = 0; k < ne; k++)
            cr_expect(close_to(g->ex[i * ne + k], c->ex[i * ne + k], 1e-5, 1e-6),
                      "rep %d extra %d %.10g vs %.10g", i, k, g->ex[i * ne + k], c->ex[i * ne + k]);
    }
    sim_parity(&E, S);
    free(c);
    free(g);
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

static void parity(const char *csv, const char *formula, mlmx_family fam, int nagq)
{
    parity_link(csv, formula, fam, MLMX_LINK_DEFAULT, nagq);
}

#define CBPP MLMX_SOURCE_DIR "/data/cbpp.csv"
#define CBPP_F "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)"
#define GROUSE MLMX_SOURCE_DIR "/data/grouseticks.csv"
#define GROUSE_F "TICKS ~ factor(YEAR) + (1 | BROOD)"

Test(cuda_glmm_batch, cbpp_laplace_gpu_equals_cpu, .timeout = 120)
{
    need_device();
    parity(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, 1);
}

Test(cuda_glmm_batch, cbpp_agq25_gpu_equals_cpu, .timeout = 120)
{
    need_device();
    parity(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, 25);
}

Test(cuda_glmm_batch, grouseticks_poisson_gpu_equals_cpu, .timeout = 120)
{
    need_device();
    parity(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 1);
    parity(GROUSE, GROUSE_F, MLMX_FAMILY_POISSON, 9);
}

#define WINE MLMX_SOURCE_DIR "/data/wine.csv"
#define WINE_F "rating ~ temp + contact + (1 | judge)"
#define SALA MLMX_SOURCE_DIR "/data/salamanders.csv"
#define SALA_F "count ~ spp * mined + (1 | site)"

Test(cuda_glmm_batch, wine_ordinal_gpu_equals_cpu, .timeout = 120)
{
    need_device();
    parity(WINE, WINE_F, MLMX_FAMILY_ORDINAL, 1);
    parity(WINE, WINE_F, MLMX_FAMILY_ORDINAL, 9);
}

Test(cuda_glmm_batch, salamanders_nb2_gpu_equals_cpu, .timeout = 180)
{
    need_device();
    parity(SALA, SALA_F, MLMX_FAMILY_NEGBIN, 1);
    parity(SALA, SALA_F, MLMX_FAMILY_NEGBIN, 5);
}

/* The probit and cloglog kernels (the link read at run time). */
Test(cuda_glmm_batch, probit_cloglog_gpu_equal_cpu, .timeout = 240)
{
    need_device();
    parity_link(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_PROBIT, 1);
    parity_link(CBPP, CBPP_F, MLMX_FAMILY_BINOMIAL, MLMX_LINK_CLOGLOG, 9);
    parity_link(WINE, WINE_F, MLMX_FAMILY_ORDINAL, MLMX_LINK_PROBIT, 1);
    parity_link(WINE, WINE_F, MLMX_FAMILY_ORDINAL, MLMX_LINK_CLOGLOG, 7);
}

/* Vector terms (q = 2, Laplace): the kernels' vector instantiations (the
 * ordinal's probit too). */
Test(cuda_glmm_batch, vector_term_gpu_equals_cpu, .timeout = 600)
{
    need_device();
    parity(MLMX_SOURCE_DIR "/data/hdp.csv",
           "remission ~ IL6 + CRP + LengthofStay + (1 + LengthofStay | HID)",
           MLMX_FAMILY_BINOMIAL, 1);
    parity(SALA, "count ~ spp + mined + (1 + DOY | site)", MLMX_FAMILY_POISSON, 1);
    parity(GROUSE, "TICKS ~ factor(YEAR) + cHEIGHT + (1 + cHEIGHT | BROOD)", MLMX_FAMILY_NEGBIN,
           1);
    parity(WINE, "rating ~ temp + contact + (1 + temp | judge)", MLMX_FAMILY_ORDINAL, 1);
    parity_link(WINE, "rating ~ temp + contact + (1 + temp | judge)", MLMX_FAMILY_ORDINAL,
                MLMX_LINK_PROBIT, 1);
}
