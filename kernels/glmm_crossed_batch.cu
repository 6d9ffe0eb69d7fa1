// Crossed GLMM replicate fits on the GPU (2-8 scalar random-effect terms,
// binomial logit or Poisson log, Laplace): one replicate per thread, each
// running mlmx_gc_fit_one (kernels/glmm_crossed_batch.h), the very
// function the CPU engine runs, on its own scratch in global memory. This
// is the simplest mapping and a correct one; the warp mapping (first-term
// levels over the lanes, the Schur downdate and the dense Cholesky over
// the lanes) is not written yet (docs/gpu.md, "Missing"). Three layers:
// the kernel, a launcher, and the validated extern "C" entry. Device
// memory through batch_alloc.cuh.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

extern "C" {
#include "cuda_entry.h"
#include "glmm_crossed_batch_cuda.h"
}
#include "batch_alloc.cuh"
#include "batch_upload.cuh"
#include "glmm_crossed_batch.h"

#define GC_THREADS 64 /* threads (replicates) per block */

/* Doubles of one replicate's scratch: the replicate's arrays, the
 * optimizer's, the optimum x (np) and the SEs (p). */
static __host__ __device__ size_t gc_per(const mlmx_gc_shared *S)
{
    return mlmx_gc_rep_doubles(S) + mlmx_gc_opt_doubles(S) + (size_t)S->np + (size_t)S->p;
}

__global__ void __launch_bounds__(GC_THREADS)
    mlmx_gc_kernel(mlmx_gc_shared S, uint64_t seed, const uint64_t *__restrict__ reps,
                   size_t count, double *scratch, int *iscr, int want_se, mlmx_gc_cuda_out o)
{
    const size_t r = (size_t)blockIdx.x * GC_THREADS + threadIdx.x;
    if (r >= count)
        return;
    const int K = S.K, p = S.p, np = S.np;
    double *base = scratch + r * gc_per(&S);
    mlmx_gc_rep R;
    mlmx_gc_rep_bind(&S, base, &R);
    double *opt = base + mlmx_gc_rep_doubles(&S);
    double *x = opt + mlmx_gc_opt_doubles(&S), *se = x + np;
    mlmx_gc_result res;
    mlmx_gc_fit_one(&S, &R, seed, reps[r], opt, iscr + r * (size_t)np, x, want_se ? se : NULL,
                    &res);
    const int ok = res.status == 1;
    for (int t = 0; t < K; t++)
        o.theta[r * K + t] = ok ? x[t] : NAN;
    for (int j = 0; j < p; j++) {
        o.beta[r * p + j] = ok ? x[K + j] : NAN;
        if (want_se)
            o.se[r * p + j] = ok ? se[j] : NAN;
    }
    o.crit[r] = res.crit;
    o.nev[r] = res.nev;
    o.conv[r] = (signed char)res.conv;
    o.sing[r] = (signed char)res.sing;
    o.status[r] = (signed char)res.status;
}

/* Replicate r's response into y (row r, model order). mlmx_gc_simulate
 * touches only R.y and R.u, so the scratch holds just those: y (n), then
 * u (n0 + m). */
__global__ void __launch_bounds__(GC_THREADS)
    mlmx_gc_sim_kernel(mlmx_gc_shared S, uint64_t seed, const uint64_t *__restrict__ reps,
                       size_t count, double *scratch, double *y)
{
    const size_t r = (size_t)blockIdx.x * GC_THREADS + threadIdx.x;
    if (r >= count)
        return;
    const size_t n = (size_t)S.n;
    mlmx_gc_rep R;
    R.y = scratch + r * (n + (size_t)S.n0 + (size_t)S.m);
    R.u = R.y + n;
    R.ef = R.st = R.gr = R.dd = R.bv = R.cv = R.sl = R.si = R.sw = NULL;
    mlmx_gc_simulate(&S, seed, reps[r], &R);
    for (size_t i = 0; i < n; i++)
        y[r * n + i] = R.y[S.pos[i]];
}

static cudaError_t launch_gc(const mlmx_gc_shared *S, uint64_t seed, const uint64_t *dreps,
                             size_t count, double *dscr, int *discr, int want_se,
                             const mlmx_gc_cuda_out *o)
{
    const unsigned blocks = (unsigned)((count + GC_THREADS - 1) / GC_THREADS);
    mlmx_gc_kernel<<<blocks, GC_THREADS>>>(*S, seed, dreps, count, dscr, discr, want_se, *o);
    return cudaGetLastError();
}

#define CK MLMX_CUDA_CK

/* Device copies of the structure's arrays in one int and one double block
 * (mlmx_gc_fixed_bytes less the local memory); Sd gets the device
 * pointers. */
static cudaError_t gc_upload(const mlmx_gc_shared *S, mlmx_gc_shared *Sd, int **di,
                             double **dd, size_t *bi, size_t *bd)
{
    const size_t n = (size_t)S->n, n0 = (size_t)S->n0, K = (size_t)S->K, p = (size_t)S->p;
    const size_t np = (size_t)S->np, nnz = (size_t)S->nnz;
    *bi = (2 * (n0 + 1) + nnz + 2 * n + 2 * n * (K - 1)) * sizeof(int);
    *bd = (n * (p + K + 1) + K + 2 * p + 2 * np + np * np) * sizeof(double);
    cudaError_t e = mlmx_cuda_batch_alloc((void **)di, *bi);
    if (e == cudaSuccess)
        e = mlmx_cuda_batch_alloc((void **)dd, *bd);
    if (e != cudaSuccess)
        return e;
    *Sd = *S;
    const mlmx_cuda_part parts[] = {
        {S->ls, (n0 + 1) * sizeof(int), 1, (const void **)&Sd->ls},
        {S->rp, (n0 + 1) * sizeof(int), 1, (const void **)&Sd->rp},
        {S->rc, nnz * sizeof(int), 1, (const void **)&Sd->rc},
        {S->lv, n * sizeof(int), 1, (const void **)&Sd->lv},
        {S->pos, n * sizeof(int), 1, (const void **)&Sd->pos},
        {S->col, n * (K - 1) * sizeof(int), 1, (const void **)&Sd->col},
        {S->bent, n * (K - 1) * sizeof(int), 1, (const void **)&Sd->bent},
        {S->X, n * p * sizeof(double), 0, (const void **)&Sd->X},
        {S->Z, n * K * sizeof(double), 0, (const void **)&Sd->Z},
        {S->nt, n * sizeof(double), 0, (const void **)&Sd->nt},
        {S->theta_sim, K * sizeof(double), 0, (const void **)&Sd->theta_sim},
        {S->beta_sim, p * sizeof(double), 0, (const void **)&Sd->beta_sim},
        {S->xmax, p * sizeof(double), 0, (const void **)&Sd->xmax},
        {S->x0, np * sizeof(double), 0, (const void **)&Sd->x0},
        {S->lb, np * sizeof(double), 0, (const void **)&Sd->lb},
        {S->hinv0, np * np * sizeof(double), 0, (const void **)&Sd->hinv0},
    };
    return mlmx_cuda_upload_parts(parts, sizeof parts / sizeof parts[0], *di, *dd);
}

static int gc_args_ok(const mlmx_gc_shared *S, const uint64_t *reps, const mlmx_gc_cuda_out *o)
{
    return S && reps && o && o->theta && o->beta && o->crit && o->nev && o->conv && o->sing &&
           o->status && S->K >= 2 && S->K <= MLMX_GC_KMAX && S->np == S->K + S->p &&
           S->p >= 0 && S->np <= MLMX_GC_NPMAX && S->n > 0 && S->n0 > 0 && S->m > 0 &&
           S->m <= MLMX_GC_MMAX;
}

/* The entries' common checks: the arguments (ok), the count, a device, the
 * buffer size (rep_bytes a replicate). -1: go on; else the status to
 * return (msg set; MLMX_OK for an empty batch). */
static int gc_entry_check(const char *who, int ok, size_t count, size_t rep_bytes, char *msg,
                          size_t msglen)
{
    if (!ok) {
        snprintf(msg, msglen, "%s: bad arguments", who);
        return MLMX_ERR_ARG;
    }
    if (count == 0)
        return MLMX_OK;
    if (mlmx_cuda_device_count() == 0) {
        snprintf(msg, msglen, "no CUDA device");
        return MLMX_ERR_UNSUPPORTED;
    }
    if (count > (size_t)INT32_MAX || count > SIZE_MAX / 2 / (rep_bytes + 64)) {
        snprintf(msg, msglen, "%s: %zu replicates overflow the buffer size", who, count);
        return MLMX_ERR_ARG;
    }
    return -1;
}

extern "C" mlmx_status mlmx_cuda_gc_rows(const mlmx_gc_shared *S, uint64_t seed,
                                         const uint64_t *reps, size_t count,
                                         const mlmx_gc_cuda_out *o, char *msg, size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    int *di = NULL;
    double *dd = NULL;
    char *dbuf = NULL; /* scratch, output rows, keys, ints (active flags, counts), flags */
    size_t bi = 0, bd = 0, bb = 0;
    mlmx_gc_shared Sd;
    mlmx_gc_cuda_out od;
    const int chk = gc_entry_check("mlmx_cuda_gc_rows", gc_args_ok(S, reps, o), count,
                                   S ? mlmx_gc_rep_bytes(S) : 0, msg, msglen);
    if (chk >= 0)
        return (mlmx_status)chk;
    const size_t p = (size_t)S->p, K = (size_t)S->K, np = (size_t)S->np, per = gc_per(S);
    const int want_se = o->se != NULL;
    const size_t nscr = count * per, nout = count * (K + 1 + 2 * p);
    bb = (nscr + nout) * sizeof(double) + count * sizeof(uint64_t) +
         count * (np + 1) * sizeof(int) + count * 3;
    double *dscr = NULL, *dout = NULL;
    uint64_t *dreps = NULL;
    int *dint = NULL;
    CK(gc_upload(S, &Sd, &di, &dd, &bi, &bd));
    CK(mlmx_cuda_batch_alloc((void **)&dbuf, bb));
    dscr = (double *)dbuf;
    dout = dscr + nscr;
    dreps = (uint64_t *)(dout + nout);
    dint = (int *)(dreps + count); /* count * np active flags, then count evaluation counts */
    od.theta = dout;
    od.crit = dout + K * count;
    od.beta = od.crit + count;
    od.se = want_se ? od.beta + count * p : NULL;
    od.nev = dint + count * np;
    od.conv = (signed char *)(od.nev + count);
    od.sing = od.conv + count;
    od.status = od.sing + count;
    CK(cudaMemcpy(dreps, reps, count * sizeof(uint64_t), cudaMemcpyHostToDevice));
    CK(launch_gc(&Sd, seed, dreps, count, dscr, dint, want_se, &od));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(o->theta, od.theta, count * K * sizeof(double), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->crit, od.crit, count * sizeof(double), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->beta, od.beta, count * p * sizeof(double), cudaMemcpyDeviceToHost));
    if (want_se)
        CK(cudaMemcpy(o->se, od.se, count * p * sizeof(double), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->nev, od.nev, count * sizeof(int), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->conv, od.conv, count, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->sing, od.sing, count, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->status, od.status, count, cudaMemcpyDeviceToHost));
done:
    mlmx_cuda_batch_free(di, bi);
    mlmx_cuda_batch_free(dd, bd);
    mlmx_cuda_batch_free(dbuf, bb);
    return st;
}

extern "C" mlmx_status mlmx_cuda_gc_simulate(const mlmx_gc_shared *S, uint64_t seed,
                                             const uint64_t *reps, size_t count, double *y,
                                             char *msg, size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    int *di = NULL;
    double *dd = NULL;
    char *dbuf = NULL; /* scratch, responses, keys */
    size_t bi = 0, bd = 0, bb = 0;
    mlmx_gc_shared Sd;
    mlmx_gc_cuda_out none = {y, y, NULL, y, (int *)y, (signed char *)y, (signed char *)y,
                             (signed char *)y}; /* only for gc_args_ok */
    const int ok = y && gc_args_ok(S, reps, &none);
    const size_t per = ok ? 2 * (size_t)S->n + (size_t)S->n0 + (size_t)S->m : 0;
    const int chk = gc_entry_check("mlmx_cuda_gc_simulate", ok, count, per * sizeof(double), msg,
                                   msglen);
    if (chk >= 0)
        return (mlmx_status)chk;
    const size_t n = (size_t)S->n;
    /* scratch (n + n0 + m a replicate), responses (n a replicate), keys */
    bb = count * per * sizeof(double) + count * sizeof(uint64_t);
    double *dscr = NULL, *dy = NULL;
    uint64_t *dreps = NULL;
    CK(gc_upload(S, &Sd, &di, &dd, &bi, &bd));
    CK(mlmx_cuda_batch_alloc((void **)&dbuf, bb));
    dscr = (double *)dbuf;
    dy = dscr + count * (n + (size_t)S->n0 + (size_t)S->m);
    dreps = (uint64_t *)(dy + count * n);
    CK(cudaMemcpy(dreps, reps, count * sizeof(uint64_t), cudaMemcpyHostToDevice));
    mlmx_gc_sim_kernel<<<(unsigned)((count + GC_THREADS - 1) / GC_THREADS), GC_THREADS>>>(
        Sd, seed, dreps, count, dscr, dy);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(y, dy, count * n * sizeof(double), cudaMemcpyDeviceToHost));
done:
    mlmx_cuda_batch_free(di, bi);
    mlmx_cuda_batch_free(dd, bd);
    mlmx_cuda_batch_free(dbuf, bb);
    return st;
}
