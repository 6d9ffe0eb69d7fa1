// Nested GLMM replicate fits on the GPU (two nested scalar random
// intercepts, binomial logit or Poisson log, Laplace or nested adaptive
// quadrature): one replicate per thread block. The block's threads share
// each criterion evaluation: the hospitals (phase 1), then the (node,
// doctor) items of the quadrature (phase 2), then the hospitals again
// (phase 3), with a __syncthreads between phases; the value and gradient
// are summed by a tree reduction in shared memory. The BFGS state
// (kernels/qn.h) lives in shared memory and thread 0 steps it; a block
// whose replicate is done leaves, and its SM takes the next. All the math
// is kernels/glmm_nest_batch.h, the code the CPU engine runs. Three
// layers: the kernel, a launcher on a stream, and the validated
// extern "C" entry. One replicate per block needs no work queue (as the
// warp engines have): a block that finishes frees its SM for the next
// block of the grid. Device memory through batch_alloc.cuh.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

extern "C" {
#include "cuda_entry.h"
#include "glmm_nest_batch_cuda.h"
}
#include "batch_alloc.cuh"
#include "batch_upload.cuh"
#include "glmm_nest_batch.h"

#define GN_THREADS 256 /* threads per block (a power of two: the reduction halves it); 256
                        * rather than 128 so that a single fit, one block, has more
                        * threads for its (node, doctor) items */

/* Doubles of shared memory one block uses: the optimizer's state, its
 * store (8 np + np^2), a point xs, the SE Hessian (np^2), the SEs, the
 * gradient being reduced (np), the reduction rows (GN_THREADS x (np + 1)),
 * two scalars (the criterion, the constants), and the active flags. */
static __host__ __device__ int gn_qs_doubles(void)
{
    return (int)((sizeof(mlmx_qn_state) + sizeof(double) - 1) / sizeof(double));
}

static __host__ __device__ int gn_block_doubles(int np)
{
    return gn_qs_doubles() + 8 * np + np * np + np + np * np + np + np + GN_THREADS * (np + 1) +
           2 + (np + 1) / 2;
}

/* The block's shared memory, carved from the dynamic array. */
typedef struct gn_smem {
    mlmx_qn_state *q;
    double *store, *xs, *H, *se, *g, *red, *sc;
    int *active;
} gn_smem;

static __device__ gn_smem gn_carve(double *base, int np)
{
    gn_smem m;
    m.q = (mlmx_qn_state *)base;
    m.store = base + gn_qs_doubles();
    m.xs = m.store + 8 * np + np * np;
    m.H = m.xs + np;
    m.se = m.H + np * np;
    m.g = m.se + np;
    m.red = m.g + np;
    m.sc = m.red + GN_THREADS * (np + 1);
    m.active = (int *)(m.sc + 2);
    return m;
}

/* The criterion (without constants) at x, on every thread; its gradient
 * into m->g (shared). The phases of mlmx_gn_eval over the block. */
static __device__ double gn_block_eval(const mlmx_gn_shared *S, const mlmx_gn_rep *R,
                                       const double *x, const gn_smem *m)
{
    const int tid = threadIdx.x, np = S->np;
    double gl[MLMX_GN_NPMAX], f = 0.0;
    for (int j = 0; j < np; j++)
        gl[j] = 0.0;
    mlmx_gn_fill_eta(S, R, x, tid, GN_THREADS);
    __syncthreads();
    if (S->nagq <= 1) {
        for (int h = tid; h < S->ntop; h += GN_THREADS)
            f += mlmx_gn_laplace_top(S, R, h, x, gl);
    } else {
        for (int h = tid; h < S->ntop; h += GN_THREADS)
            mlmx_gn_agq_prep(S, R, h, x);
        __syncthreads();
        const int items = S->nagq * S->nfine;
        for (int i = tid; i < items; i += GN_THREADS)
            mlmx_gn_agq_item(S, R, i, x);
        __syncthreads();
        for (int h = tid; h < S->ntop; h += GN_THREADS)
            f += mlmx_gn_agq_top(S, R, h, gl);
    }
    double *row = m->red + (size_t)tid * (np + 1);
    row[0] = f;
    for (int j = 0; j < np; j++)
        row[1 + j] = gl[j];
    __syncthreads();
    for (int half = GN_THREADS / 2; half > 0; half >>= 1) {
        if (tid < half) {
            const double *o = m->red + (size_t)(tid + half) * (np + 1);
            for (int j = 0; j <= np; j++)
                row[j] += o[j];
        }
        __syncthreads();
    }
    if (tid == 0)
        for (int j = 0; j < np; j++)
            m->g[j] = m->red[1 + j];
    const double tot = m->red[0];
    __syncthreads(); /* m->red is rewritten by the next evaluation */
    return tot;
}

/* SEs of beta at the optimum q->x (forward differences of the gradient,
 * as the CPU engine), into m->se. */
static __device__ void gn_block_se(const mlmx_gn_shared *S, const mlmx_gn_rep *R, int sing,
                                   const gn_smem *m)
{
    const int tid = threadIdx.x, np = S->np;
    const mlmx_qn_state *q = m->q;
    int idx[MLMX_GN_NPMAX];
    const int nf = mlmx_gn_se_index(S, sing, idx);
    for (int a = 0; a < nf; a++) {
        const double h = mlmx_gn_fd_step(S, q->x, idx[a]);
        if (tid == 0) {
            for (int j = 0; j < np; j++)
                m->xs[j] = q->x[j];
            m->xs[idx[a]] += h;
        }
        __syncthreads();
        gn_block_eval(S, R, m->xs, m);
        if (tid == 0)
            for (int b = 0; b < nf; b++)
                m->H[b + a * nf] = (m->g[idx[b]] - q->g[idx[b]]) / h;
        __syncthreads();
    }
    if (tid == 0)
        mlmx_gb_se_finish(nf, S->p, m->H, m->se);
    __syncthreads();
}

static __device__ void gn_put_row(const mlmx_gn_shared *S, const mlmx_qn_state *q, size_t r,
                                  int ok, int sing, double cst, int want_se, const double *se,
                                  const mlmx_gn_cuda_out *o)
{
    const int p = S->p;
    for (int t = 0; t < 2; t++)
        o->theta[r * 2 + t] = ok ? q->x[t] : NAN;
    for (int j = 0; j < p; j++) {
        o->beta[r * p + j] = ok ? q->x[2 + j] : NAN;
        if (want_se)
            o->se[r * p + j] = ok ? se[j] : NAN;
    }
    o->crit[r] = ok ? q->fx : NAN;
    o->nev[r] = isfinite(cst) ? q->n_evals : 0;
    o->conv[r] = (signed char)(ok && q->converged);
    o->sing[r] = (signed char)sing;
    o->status[r] = (signed char)(ok ? 1 : 2);
}

// NC: 0 for the canonical links (the link then made a constant the
// compiler folds, so the probit/cloglog code drops out), 1 for the
// binomial probit and cloglog.
template <int NC>
__global__ void __launch_bounds__(GN_THREADS)
    mlmx_gn_kernel(mlmx_gn_shared S, uint64_t seed, const uint64_t *__restrict__ reps,
                   size_t count, double *scratch, size_t rep_doubles, int want_se,
                   mlmx_gn_cuda_out o)
{
    extern __shared__ double gn_sh[];
    if (!NC)
        S.link = S.poisson ? MLMX_LINK_LOG : MLMX_LINK_LOGIT;
    const int tid = threadIdx.x, np = S.np;
    const size_t r = blockIdx.x;
    if (r >= count)
        return; /* the whole block: every thread has the same r */
    const gn_smem m = gn_carve(gn_sh, np);
    mlmx_qn_state *q = m.q;
    mlmx_gn_rep R;
    mlmx_gn_rep_bind(&S, scratch + r * rep_doubles, &R);
    if (tid == 0) {
        m.sc[1] = mlmx_gn_simulate(&S, seed, reps[r], &R);
        mlmx_qn_bind(q, np, m.store, m.active);
        if (isfinite(m.sc[1]))
            mlmx_qn_begin(q, S.x0, S.lb, NULL, &S.cfg, S.hinv0);
    }
    __syncthreads();
    const double cst = m.sc[1];
    /* q->phase is read by every thread, written by thread 0 between two
     * barriers; one restart as the CPU engine (mlmx_gn_restart_due) */
    int nev0 = 0;
    for (int run = 0; run < 2; run++) {
        while (isfinite(cst) && mlmx_qn_want(q)) {
            const double f = gn_block_eval(&S, &R, mlmx_qn_point(q), &m) - 2.0 * cst;
            if (tid == 0) {
                double *qg = mlmx_qn_grad(q);
                for (int j = 0; j < np; j++)
                    qg[j] = m.g[j];
                mlmx_qn_told(q, f);
            }
            __syncthreads();
        }
        if (run == 1 || !isfinite(cst) || !mlmx_gn_restart_due(q, S.lb))
            break; /* every thread reads the same q */
        __syncthreads();
        if (tid == 0) {
            nev0 = q->n_evals;
            /* m.H: the upper bounds until the SEs */
            mlmx_gn_restart_point(q, S.lb, m.xs, m.H);
            mlmx_qn_begin(q, m.xs, S.lb, m.H, &S.cfg, NULL);
        }
        __syncthreads();
    }
    if (tid == 0)
        q->n_evals += nev0;
    __syncthreads();
    const int ok = isfinite(cst) && !q->failed && isfinite(q->fx);
    const int sing = ok && mlmx_gn_singular(q->x);
    if (ok && want_se)
        gn_block_se(&S, &R, sing, &m);
    if (tid == 0)
        gn_put_row(&S, q, r, ok, sing, cst, want_se, m.se, &o);
}

/* Responses only, one replicate per thread: replicate r's draws into
 * scratch + r * per, y first, in grouped order (the host puts them in model
 * order). */
__global__ void mlmx_gn_sim_kernel(mlmx_gn_shared S, uint64_t seed,
                                   const uint64_t *__restrict__ reps, size_t count,
                                   double *scratch, size_t per)
{
    const size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= count)
        return;
    mlmx_gn_sim_one(&S, seed, reps[r], scratch + r * per);
}

static cudaError_t launch_gn(const mlmx_gn_shared *S, uint64_t seed, const uint64_t *dreps,
                             size_t count, double *dscr, int want_se, const mlmx_gn_cuda_out *o,
                             cudaStream_t stream)
{
    const size_t shmem = (size_t)gn_block_doubles(S->np) * sizeof(double);
    if (mlmx_gn_noncanon(S))
        mlmx_gn_kernel<1><<<(unsigned)count, GN_THREADS, shmem, stream>>>(
            *S, seed, dreps, count, dscr, mlmx_gn_rep_doubles(S), want_se, *o);
    else
        mlmx_gn_kernel<0><<<(unsigned)count, GN_THREADS, shmem, stream>>>(
            *S, seed, dreps, count, dscr, mlmx_gn_rep_doubles(S), want_se, *o);
    return cudaGetLastError();
}

#define CK MLMX_CUDA_CK

/* Device copies of the structure's arrays in one int and one double block
 * (mlmx_gn_fixed_bytes); Sd gets the device pointers. */
static cudaError_t gn_upload(const mlmx_gn_shared *S, mlmx_gn_shared *Sd, int **di, double **dd,
                             size_t *bi, size_t *bd)
{
    const size_t n = (size_t)S->n, nf = (size_t)S->nfine, nt = (size_t)S->ntop;
    const size_t p = (size_t)S->p, np = (size_t)S->np, K = (size_t)S->nagq;
    *bi = (nt + 1 + nf + 1 + 2 * nf + 2 * n) * sizeof(int);
    *bd = (n * p + 3 * n + 2 * K + 2 * p + 2 * np + np * np) * sizeof(double);
    cudaError_t e = mlmx_cuda_batch_alloc((void **)di, *bi);
    if (e == cudaSuccess)
        e = mlmx_cuda_batch_alloc((void **)dd, *bd);
    if (e != cudaSuccess)
        return e;
    *Sd = *S;
    const mlmx_cuda_part parts[] = {
        {S->ts, (nt + 1) * sizeof(int), 1, (const void **)&Sd->ts},
        {S->ds, (nf + 1) * sizeof(int), 1, (const void **)&Sd->ds},
        {S->dtop, nf * sizeof(int), 1, (const void **)&Sd->dtop},
        {S->dmap, nf * sizeof(int), 1, (const void **)&Sd->dmap},
        {S->doc, n * sizeof(int), 1, (const void **)&Sd->doc},
        {S->pos, n * sizeof(int), 1, (const void **)&Sd->pos},
        {S->X, n * p * sizeof(double), 0, (const void **)&Sd->X},
        {S->z0, n * sizeof(double), 0, (const void **)&Sd->z0},
        {S->z1, n * sizeof(double), 0, (const void **)&Sd->z1},
        {S->nt, n * sizeof(double), 0, (const void **)&Sd->nt},
        {S->gz, K * sizeof(double), 0, (const void **)&Sd->gz},
        {S->glw, K * sizeof(double), 0, (const void **)&Sd->glw},
        {S->beta_sim, p * sizeof(double), 0, (const void **)&Sd->beta_sim},
        {S->xmax, p * sizeof(double), 0, (const void **)&Sd->xmax},
        {S->x0, np * sizeof(double), 0, (const void **)&Sd->x0},
        {S->lb, np * sizeof(double), 0, (const void **)&Sd->lb},
        {S->hinv0, np * np * sizeof(double), 0, (const void **)&Sd->hinv0},
    };
    return mlmx_cuda_upload_parts(parts, sizeof parts / sizeof parts[0], *di, *dd);
}

/* Validated arguments, or a message. */
static int gn_args_ok(const mlmx_gn_shared *S, const uint64_t *reps, const mlmx_gn_cuda_out *o)
{
    return S && reps && o && o->theta && o->beta && o->crit && o->nev && o->conv && o->sing &&
           o->status && S->np == S->p + 2 && S->p >= 0 && S->p <= MLMX_GN_PMAX && S->n > 0 &&
           S->nfine > 0 && S->ntop > 0 && S->nagq >= 1 && S->itf >= 0 && S->itf < 2 &&
           S->itc >= 0 && S->itc < 2 && S->itf != S->itc;
}

/* 1 when an entry ends before any device work, with its status in *st:
 * no replicates (MLMX_OK) or no device (MLMX_ERR_UNSUPPORTED). */
static int gn_nothing_to_run(size_t count, mlmx_status *st, char *msg, size_t msglen)
{
    *st = MLMX_OK;
    if (count == 0)
        return 1;
    if (mlmx_cuda_device_count() == 0) {
        snprintf(msg, msglen, "no CUDA device");
        *st = MLMX_ERR_UNSUPPORTED;
        return 1;
    }
    return 0;
}

extern "C" mlmx_status mlmx_cuda_gn_rows(const mlmx_gn_shared *S, uint64_t seed,
                                         const uint64_t *reps, size_t count,
                                         const mlmx_gn_cuda_out *o, char *msg, size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    int *di = NULL;
    double *dd = NULL;
    char *dbuf = NULL; /* keys, scratch, output rows, evaluation counts, flags */
    size_t bi = 0, bd = 0, bb = 0;
    mlmx_gn_shared Sd;
    mlmx_gn_cuda_out od;
    if (!gn_args_ok(S, reps, o)) {
        snprintf(msg, msglen, "mlmx_cuda_gn_rows: bad arguments");
        return MLMX_ERR_ARG;
    }
    if (gn_nothing_to_run(count, &st, msg, msglen))
        return st;
    const size_t p = (size_t)S->p, per = mlmx_gn_rep_doubles(S);
    if (count > (size_t)INT32_MAX || count > SIZE_MAX / 2 / (mlmx_gn_rep_bytes(S) + 64)) {
        snprintf(msg, msglen, "mlmx_cuda_gn_rows: %zu replicates overflow the buffer size", count);
        return MLMX_ERR_ARG;
    }
    const int want_se = o->se != NULL;
    /* one buffer: doubles first (8-byte aligned), then the keys, the
     * counts and the flags */
    const size_t nscr = count * per, nout = count * (3 + 2 * p);
    bb = (nscr + nout) * sizeof(double) + count * sizeof(uint64_t) + count * sizeof(int) +
         count * 3;
    double *dscr = NULL, *dout = NULL;
    uint64_t *dreps = NULL;
    int *dnev = NULL;
    CK(gn_upload(S, &Sd, &di, &dd, &bi, &bd));
    CK(mlmx_cuda_batch_alloc((void **)&dbuf, bb));
    dscr = (double *)dbuf;
    dout = dscr + nscr;
    dreps = (uint64_t *)(dout + nout);
    dnev = (int *)(dreps + count);
    od.theta = dout;
    od.crit = dout + 2 * count;
    od.beta = od.crit + count;
    od.se = want_se ? od.beta + count * p : NULL;
    od.nev = dnev;
    od.conv = (signed char *)(dnev + count);
    od.sing = od.conv + count;
    od.status = od.sing + count;
    CK(cudaMemcpy(dreps, reps, count * sizeof(uint64_t), cudaMemcpyHostToDevice));
    CK(launch_gn(&Sd, seed, dreps, count, dscr, want_se, &od, 0));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(o->theta, od.theta, count * 2 * sizeof(double), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->crit, od.crit, count * sizeof(double), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->beta, od.beta, count * p * sizeof(double), cudaMemcpyDeviceToHost));
    if (want_se)
        CK(cudaMemcpy(o->se, od.se, count * p * sizeof(double), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->nev, dnev, count * sizeof(int), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->conv, od.conv, count, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->sing, od.sing, count, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->status, od.status, count, cudaMemcpyDeviceToHost));
done:
    mlmx_cuda_batch_free(di, bi);
    mlmx_cuda_batch_free(dd, bd);
    mlmx_cuda_batch_free(dbuf, bb);
    return st;
}

extern "C" mlmx_status mlmx_cuda_gn_simulate(const mlmx_gn_shared *S, uint64_t seed,
                                             const uint64_t *reps, size_t count, double *y,
                                             char *msg, size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    int *di = NULL;
    double *dd = NULL;
    char *dbuf = NULL; /* scratch rows, then the keys */
    size_t bi = 0, bd = 0, bb = 0;
    mlmx_gn_shared Sd;
    if (!S || !reps || !y || S->n <= 0 || S->nfine <= 0 || S->ntop <= 0) {
        snprintf(msg, msglen, "mlmx_cuda_gn_simulate: bad arguments");
        return MLMX_ERR_ARG;
    }
    if (gn_nothing_to_run(count, &st, msg, msglen))
        return st;
    const size_t n = (size_t)S->n, per = mlmx_gn_sim_doubles(S);
    if (count > SIZE_MAX / 2 / sizeof(double) / (per + 1)) {
        snprintf(msg, msglen, "mlmx_cuda_gn_simulate: %zu replicates overflow the buffer size",
                 count);
        return MLMX_ERR_ARG;
    }
    bb = count * (per + 1) * sizeof(double);
    double *dscr = NULL;
    uint64_t *dreps = NULL;
    CK(gn_upload(S, &Sd, &di, &dd, &bi, &bd));
    CK(mlmx_cuda_batch_alloc((void **)&dbuf, bb));
    dscr = (double *)dbuf;
    dreps = (uint64_t *)(dscr + count * per);
    CK(cudaMemcpy(dreps, reps, count * sizeof(uint64_t), cudaMemcpyHostToDevice));
    {
        const int threads = 128;
        const size_t blocks = (count + threads - 1) / threads;
        mlmx_gn_sim_kernel<<<(unsigned)blocks, threads>>>(Sd, seed, dreps, count, dscr, per);
    }
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    /* row r's response is the first n of its per doubles */
    CK(cudaMemcpy2D(y, n * sizeof(double), dscr, per * sizeof(double), n * sizeof(double), count,
                    cudaMemcpyDeviceToHost));
done:
    mlmx_cuda_batch_free(di, bi);
    mlmx_cuda_batch_free(dd, bd);
    mlmx_cuda_batch_free(dbuf, bb);
    return st;
}
