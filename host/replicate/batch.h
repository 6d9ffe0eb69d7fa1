/* The batch replicate engine: many replicates of one prepared problem
 * simulated and fitted together by the per-replicate math of kernels/
 * (kernels/lmm_batch.h, kernels/lmm_nest_batch.h, kernels/glmm_batch.h,
 * kernels/glmm_nest_batch.h), run on CPU threads or on a CUDA device: the
 * very same inline functions on both (GUIDE §8).
 *
 * An engine covers the models whose whole fit is one small state per
 * replicate: LMMs with one random-effect term (q <= MLMX_LB_QMAX, p <=
 * MLMX_LB_PMAX), LMMs with 2 or 3 nested terms (kernels/lmm_nest_batch.h),
 * LMMs with 2-8 terms, crossed or not, whose non-first terms, X and y form
 * a dense block (any size whose replicate scratch is at most 256 MiB:
 * kernels/lmm_dense_batch.h; past 64 columns the CPU runs use workspaces,
 * see cpu_slower),
 * GLMMs with one scalar random intercept (binomial logit, probit,
 * cloglog, Poisson log, NB2 log, cumulative logit, probit, cloglog;
 * Laplace or adaptive quadrature), GLMMs with one vector term of 2 or 3
 * correlated columns, (1 + x|g) (the same families and links but the
 * binomial probit and cloglog, Laplace; the glmm-1ri engine's vector
 * path, reported as "glmm-vec", kernels/glmm_batch_vec.h), GLMMs with two
 * nested scalar random intercepts, (1|top/fine) (binomial logit, Poisson
 * log: Laplace or nested adaptive quadrature; binomial probit, cloglog:
 * Laplace), and GLMMs with 2-8 scalar terms, crossed or nested, whose
 * non-first terms have at most 256 levels in all (binomial logit, Poisson
 * log; Laplace; kernels/glmm_crossed_batch.h). Every other model is
 * refitted through workspaces (problem.c), on the CPU.
 *
 * Replicate r's draws are keyed as mlmx_workspace_simulate keys them, so a
 * replicate gives the same response through an engine and a workspace. */
#ifndef MLMX_BATCH_H
#define MLMX_BATCH_H
#include <stddef.h>
#include <stdint.h>

#include "qn.h"
#include "replicate/replicate.h"

/* One request: fit replicates reps[0..count) and write row i for reps[i].
 * theta (count*ntheta), beta (count*p), se (count*p, may be NULL), sigma
 * (count: the residual SD of an LMM, NaN for a GLMM), crit (the refit's
 * criterion), nev (criterion evaluations), conv, sing, and status (1 done,
 * 2 failed: its other outputs are NaN). */
typedef struct mlmx_batch_job {
    uint64_t seed;
    const uint64_t *reps;
    size_t count;
    double *theta, *beta, *se, *sigma, *crit;
    int *nev;
    signed char *conv, *sing, *status;
} mlmx_batch_job;

typedef struct mlmx_batch_engine {
    const char *name;  /* "lmm-1term", "lmm-nest", "lmm-crossed", "glmm-1ri", "glmm-vec"
                        * (glmm-1ri's engine on a vector term), "glmm-nest",
                        * "glmm-crossed" */
    void *impl;
    /* Rows [i0, i1) of J on the calling CPU thread; threads call it on
     * disjoint ranges at once. Allocates nothing. */
    void (*cpu_rows)(const void *impl, const mlmx_batch_job *J, size_t i0, size_t i1);
    /* All of J on the current CUDA device (the chunk is already sized to
     * fit its memory); MLMX_ERR_UNSUPPORTED in a build without CUDA or
     * without a device, another status (with a message naming the CUDA
     * call) when the device fails. NULL: the engine has no device path. */
    mlmx_status (*gpu_rows)(void *impl, const mlmx_batch_job *J, mlmx_error *err);
    /* Simulated responses only, on the current CUDA device: y (count*n,
     * row i for reps[i], model observation order, the values
     * mlmx_workspace_simulate gives). Sizes its own device buffers from
     * count. NULL: the engine has no device simulation. Errors as
     * gpu_rows. */
    mlmx_status (*gpu_sim)(void *impl, uint64_t seed, const uint64_t *reps, size_t count,
                           double *y, mlmx_error *err);
    /* Device memory the engine needs: fixed bytes (the structure) and
     * bytes per replicate in flight. */
    size_t gpu_fixed_bytes, gpu_rep_bytes;
    void (*free)(void *impl);
    /* Where the following jobs write the family's extra parameters (an
     * ordinal model's thresholds, NB2's size; natural scale): extra has
     * row i (nextra values) for J->reps[i], for every job until set again
     * (NULL: not written). Not called while a job runs. NULL: the engine's
     * models have no extra parameters. */
    void (*set_extra_out)(void *impl, double *extra);
    /* 1 when the engine's CPU rows are measured slower than workspace
     * refits for this model (lmm-crossed with a dense block of over
     * MLMX_LD_CPU_MAX_M columns: docs/performance.md). The runner's CPU
     * runs (--device cpu, or auto resolving to the CPU) then refit through
     * workspaces; device runs still use the engine, and cpu_rows still
     * works (the tests call it). 0 (the default) otherwise. */
    int cpu_slower;
} mlmx_batch_engine;

/* The engine that covers P, created from P (which must outlive it).
 * MLMX_ERR_UNSUPPORTED when none does, with the reason in err (the caller
 * then uses workspaces). */
mlmx_status mlmx_batch_engine_create(const mlmx_problem *P, mlmx_batch_engine **out,
                                     mlmx_error *err);
void mlmx_batch_engine_free(mlmx_batch_engine *E);

/* The engines' constructors (lmm_batch.c, lmm_nest_batch.c, glmm_batch.c,
 * glmm_nest_batch.c): fill E for P or return MLMX_ERR_UNSUPPORTED with the
 * reason. */
mlmx_status mlmx_lb_engine_init(const mlmx_problem *P, mlmx_batch_engine *E, mlmx_error *err);
mlmx_status mlmx_nb_engine_init(const mlmx_problem *P, mlmx_batch_engine *E, mlmx_error *err);
mlmx_status mlmx_gb_engine_init(const mlmx_problem *P, mlmx_batch_engine *E, mlmx_error *err);
mlmx_status mlmx_gn_engine_init(const mlmx_problem *P, mlmx_batch_engine *E, mlmx_error *err);
/* lmm-crossed (lmm_dense_batch.c): K >= 2 terms, first term q1 <= 4, the
 * other terms with X and y a dense block whose replicate scratch is at
 * most MLMX_LD_SCRATCH_MAX bytes. */
mlmx_status mlmx_ld_engine_init(const mlmx_problem *P, mlmx_batch_engine *E, mlmx_error *err);
/* glmm-crossed (glmm_crossed_batch.c): GLMMs with 2-8 scalar terms,
 * crossed or nested, binomial logit or Poisson log, Laplace; the terms
 * after the first have at most MLMX_GC_MMAX (256) levels in all, K + p <=
 * 16. Registered after glmm-nest (which takes the two-term nested models);
 * its kernel runs one replicate per thread. */
mlmx_status mlmx_gc_engine_init(const mlmx_problem *P, mlmx_batch_engine *E, mlmx_error *err);

/* CPU scratch for engines whose cpu_rows needs heap memory: a caller
 * claims one of MLMX_BATCH_SLOTS slots (an atomic flag), whose memory
 * (ndoubles doubles and nints ints) is allocated the first time the slot is
 * claimed and kept until mlmx_batch_pool_free, so a steady stream of calls
 * allocates nothing. More concurrent callers than slots wait for a free
 * one. Initialise with mlmx_batch_pool_init (no allocation). */
#define MLMX_BATCH_SLOTS 64
typedef struct mlmx_batch_pool {
    size_t ndoubles, nints;
    _Atomic int busy[MLMX_BATCH_SLOTS];
    double *mem[MLMX_BATCH_SLOTS];
    int *imem[MLMX_BATCH_SLOTS];
} mlmx_batch_pool;

void mlmx_batch_pool_init(mlmx_batch_pool *pool, size_t ndoubles, size_t nints);
/* A free slot's index (its memory in pool->mem[i], pool->imem[i]), or -1
 * when its first allocation fails. Release it with mlmx_batch_pool_release. */
int mlmx_batch_pool_claim(mlmx_batch_pool *pool);
void mlmx_batch_pool_release(mlmx_batch_pool *pool, int slot);
void mlmx_batch_pool_free(mlmx_batch_pool *pool);

/* X^T X of the model's fixed effects (p*p, column-major, full), for the
 * LMM engines' shared structure. */
void mlmx_batch_xtx(const mlmx_model *md, double *XtX);

/* The GLMM engines' gpu_sim: sim (the engine's device entry, S its
 * structure) draws rows (count of n) in the engine's grouped order into y;
 * each row is then put back in model order (observation j at grouped
 * position pos[j]) through one row of scratch. Errors name the engine. */
typedef mlmx_status (*mlmx_batch_grouped_sim)(const void *S, uint64_t seed, const uint64_t *reps,
                                              size_t count, double *y, char *msg, size_t msglen);
mlmx_status mlmx_batch_sim_model_order(const char *engine, mlmx_batch_grouped_sim sim,
                                       const void *S, size_t n, const int *pos, uint64_t seed,
                                       const uint64_t *reps, size_t count, double *y,
                                       mlmx_error *err);

/* The GLMM engines' optimizer setup, the workspace refit's (refit.c): P's
 * start and lower bounds copied into x0 and lb (np each), its
 * inverse-Hessian seed into h0 (np * np; *hinv0 = h0, or NULL when P has
 * none), and the BFGS tolerances (defaults, max_evals from the fit
 * options) into cfg. */
void mlmx_batch_glmm_optim(const mlmx_problem *P, int np, double *x0, double *lb, double *h0,
                           const double **hinv0, mlmx_qn_cfg *cfg);

/* Run J on the CPU with `threads` threads (contiguous ranges). */
mlmx_status mlmx_batch_run_cpu(const mlmx_batch_engine *E, const mlmx_batch_job *J, int threads,
                               mlmx_error *err);

/* The chunk planner: how many replicates to put on the device at once,
 * given its free memory. Uses at most `fraction` (0 < fraction <= 1) of
 * free_bytes after the fixed part, rounds down to a multiple of `align`
 * (at least 1), never exceeds `total` or `cap` (0: no cap). 0 when not
 * even `align` replicates fit (the device has too little memory). */
size_t mlmx_batch_plan_chunk(size_t free_bytes, size_t fixed_bytes, size_t rep_bytes,
                             size_t total, double fraction, size_t align, size_t cap);

#endif
