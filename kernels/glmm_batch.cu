// GLMM replicate fits on the GPU (one scalar random-effect term, or one
// vector term of q <= MLMX_GB_QMAX columns by Laplace; binomial logit,
// probit or cloglog, Poisson log, NB2 log or cumulative logit, probit or
// cloglog, Laplace or adaptive quadrature): one replicate per warp, its
// clusters spread over the 32 lanes, the criterion and gradient summed by
// warp shuffles, the BFGS state (kernels/qn.h) in shared memory
// stepped by lane 0. All the math is kernels/glmm_batch.h, the code the CPU
// engine runs. Three layers: the kernel, a launcher on a stream, and the
// validated extern "C" entry.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

extern "C" {
#include "cuda_entry.h"
#include "glmm_batch_cuda.h"
}
#include "batch_alloc.cuh"
#include "batch_upload.cuh"
#include "glmm_batch.h"

#define GB_WARPS 4 /* warps (replicates) per block */
#define GB_FULL 0xffffffffu

/* Doubles of shared memory one warp uses: the optimizer's state, its store
 * (8 np + np^2), a point, the SE Hessian (np^2), the SEs and the active
 * flags. */
static __host__ __device__ int gb_qs_doubles(void)
{
    return (int)((sizeof(mlmx_qn_state) + sizeof(double) - 1) / sizeof(double));
}

static __host__ __device__ int gb_warp_doubles(int np)
{
    return gb_qs_doubles() + 8 * np + np * np + np + np * np + np + (np + 1) / 2;
}

static __device__ double gb_warp_sum(double v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(GB_FULL, v, o);
    return v;
}

/* The criterion (without constants) and gradient at x, on every lane.
 * Inlined, so that the kernel's constant family reaches the math. */
static __device__ __forceinline__ double gb_warp_eval(const mlmx_gb_shared *S, const mlmx_gb_rep *R,
                                      const double *x, double *g, int lane)
{
    double f = gb_warp_sum(mlmx_gb_eval_part(S, R, x, g, lane, 32));
    for (int j = 0; j < S->np; j++)
        g[j] = gb_warp_sum(g[j]);
    return f;
}

/* SEs of beta at the optimum q->x (forward differences of the gradient,
 * as the CPU engine). */
static __device__ __forceinline__ void gb_warp_se(const mlmx_gb_shared *S, const mlmx_gb_rep *R,
                                  const mlmx_qn_state *q, int sing, double *xs, double *H,
                                  double *se, int lane)
{
    int idx[MLMX_GB_NPMAX];
    double g[MLMX_GB_NPMAX];
    const int nf = mlmx_gb_se_index(S, sing, idx), np = S->np;
    for (int a = 0; a < nf; a++) {
        const double h = mlmx_gb_fd_step(S, q->x, idx[a]);
        if (lane == 0) {
            for (int j = 0; j < np; j++)
                xs[j] = q->x[j];
            xs[idx[a]] += h;
        }
        __syncwarp();
        gb_warp_eval(S, R, xs, g, lane);
        __syncwarp();
        if (lane == 0)
            for (int b = 0; b < nf; b++)
                H[b + a * nf] = (g[idx[b]] - q->g[idx[b]]) / h;
    }
    if (lane == 0)
        mlmx_gb_se_finish(nf, S->p, H, se);
    __syncwarp();
}

// One BFGS run of the warp from q's start (lane 0 steps q, every lane
// evaluates), the theta entries of mask `held` held at their bound
// (mlmx_gb_hold).
static __device__ __forceinline__ void gb_warp_bfgs(const mlmx_gb_shared *S, const mlmx_gb_rep *R,
                                                    mlmx_qn_state *q, double cst, int held,
                                                    int lane)
{
    double g[MLMX_GB_NPMAX];
    while (mlmx_qn_want(q)) {
        const double f = gb_warp_eval(S, R, mlmx_qn_point(q), g, lane) - 2.0 * cst;
        __syncwarp();
        if (lane == 0) {
            double *qg = mlmx_qn_grad(q);
            for (int j = 0; j < S->np; j++)
                qg[j] = g[j];
            mlmx_gb_hold(held, S->nth, qg);
            mlmx_qn_told(q, f);
        }
        __syncwarp();
    }
}

// Replicate reps[r] by the warp, start to finish; row r of o. Inlined, so
// that the kernel's constant family reaches the math.
static __device__ __forceinline__ void gb_warp_replicate(const mlmx_gb_shared &S, uint64_t seed,
                                                         const uint64_t *__restrict__ reps,
                                                         size_t r, double *ybuf, double *ubuf,
                                                         int want_se, const mlmx_gb_cuda_out &o,
                                                         int lane, int w)
{
    extern __shared__ double gb_smem[];
    const int np = S.np;
    double *base = gb_smem + (size_t)w * (size_t)gb_warp_doubles(np);
    mlmx_qn_state *q = (mlmx_qn_state *)base;
    double *store = base + gb_qs_doubles(), *xs = store + 8 * np + np * np, *H = xs + np;
    double *se = H + np * np;
    int *active = (int *)(se + np);
    mlmx_gb_rep R;
    R.y = ybuf + r * (size_t)S.n;
    R.u = ubuf + r * (size_t)S.nclu * (size_t)S.q;
    R.ys = 1;
    R.us = 1;
    double cst = 0.0;
    if (lane == 0) {
        cst = mlmx_gb_simulate(&S, seed, reps[r], &R);
        mlmx_qn_bind(q, np, store, active);
        if (isfinite(cst))
            mlmx_qn_begin(q, S.x0, S.lb, NULL, &S.cfg, S.hinv0);
    }
    cst = __shfl_sync(GB_FULL, cst, 0);
    __syncwarp();
    if (isfinite(cst)) {
        gb_warp_bfgs(&S, &R, q, cst, 0, lane);
        /* a vector term's singular ordinal or NB2 fit: the restart with
         * the singular entries held (mlmx_gb_polish_point), as the CPU;
         * the test is a constant in the other instantiations, which then
         * carry no second copy of the loop */
        if (S.q > 1 && S.ne > 0) {
            int held = 0, ev = 0;
            if (lane == 0 && !q->failed && isfinite(q->fx)) {
                held = mlmx_gb_polish_point(&S, q->x, xs);
                ev = q->n_evals;
                if (held)
                    mlmx_qn_begin(q, xs, S.lb, NULL, &S.cfg, S.hinv0);
            }
            held = __shfl_sync(GB_FULL, held, 0);
            __syncwarp();
            if (held) {
                gb_warp_bfgs(&S, &R, q, cst, held, lane);
                if (lane == 0)
                    q->n_evals += ev;
                __syncwarp();
            }
        }
    }
    const int ok = isfinite(cst) && !q->failed && isfinite(q->fx);
    const int sing = ok && mlmx_gb_singular(&S, q->x);
    if (ok && want_se)
        gb_warp_se(&S, &R, q, sing, xs, H, se, lane);
    if (lane != 0)
        return;
    const size_t po = (size_t)S.pout;
    if (ok) {
        mlmx_gb_unpack(&S, q->x, want_se ? se : NULL, o.theta + r * (size_t)S.nth, o.beta + r * po,
                       want_se ? o.se + r * po : NULL, o.extra ? o.extra + r * (size_t)S.ne : NULL);
    } else {
        for (int t = 0; t < S.nth; t++)
            o.theta[r * (size_t)S.nth + (size_t)t] = NAN;
        for (size_t j = 0; j < po; j++) {
            o.beta[r * po + j] = NAN;
            if (want_se)
                o.se[r * po + j] = NAN;
        }
        for (int e = 0; o.extra && e < S.ne; e++)
            o.extra[r * (size_t)S.ne + (size_t)e] = NAN;
    }
    o.crit[r] = ok ? q->fx : NAN;
    o.nev[r] = isfinite(cst) ? q->n_evals : 0;
    o.conv[r] = (signed char)(ok && q->converged);
    o.sing[r] = (signed char)sing;
    o.status[r] = (signed char)(ok ? 1 : 2);
}

// A persistent kernel: each warp takes replicates from a queue (lane 0's
// atomicAdd on *next, broadcast) until none is left, so a warp whose
// replicate converged early takes the next one instead of holding its
// block's resources idle while the block's slowest warp finishes.
// One instantiation per family (FAM: MLMX_FAM_*), kind of term (VEC: 0
// scalar, 1 vector) and link (LINK: MLMX_LINK_*, or -1: the binomial's and
// the ordinal's probit and cloglog, read from the structure and passed to
// the math explicitly): the three are made compile-time constants in the
// kernel's copy of the structure, so each instantiation keeps only its own
// code (the binomial and Poisson kernels do not pay the ordinal and NB2
// paths' registers, the canonical links' not the probit/cloglog paths',
// the scalar kernels not the vector cluster's). The vector term takes no
// binomial probit or cloglog (the engine refuses them).
template <int FAM, int VEC, int LINK>
__global__ void __launch_bounds__(32 * GB_WARPS)
    mlmx_gb_kernel(mlmx_gb_shared Sp, uint64_t seed, const uint64_t *__restrict__ reps,
                   size_t count, double *ybuf, double *ubuf, int want_se, mlmx_gb_cuda_out o,
                   unsigned long long *next)
{
    mlmx_gb_shared S = Sp;
    S.fam = FAM;
    if (LINK >= 0)
        S.link = LINK;
    if (FAM == MLMX_FAM_BINOMIAL || FAM == MLMX_FAM_POISSON)
        S.ne = 0;
    if (!VEC) {
        S.q = 1;
        S.nth = 1;
    } else {
        /* q in {2, 3} visibly, so that the scalar cluster code folds away */
        S.q = S.q >= 3 ? 3 : 2;
        S.nth = S.q == 3 ? 6 : 3;
    }
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    for (;;) {
        unsigned long long r = 0;
        if (lane == 0)
            r = atomicAdd(next, 1ULL);
        r = __shfl_sync(GB_FULL, r, 0);
        if (r >= count)
            return; /* the whole warp: every lane has the same r */
        gb_warp_replicate(S, seed, reps, (size_t)r, ybuf, ubuf, want_se, o, lane, w);
        __syncwarp();
    }
}

template <int FAM, int VEC, int LINK>
static cudaError_t launch_fam(const mlmx_gb_shared *S, uint64_t seed, const uint64_t *dreps,
                             size_t count, double *dy, double *du, int want_se,
                             const mlmx_gb_cuda_out *o, unsigned long long *next,
                             cudaStream_t stream)
{
    const size_t shmem = (size_t)GB_WARPS * (size_t)gb_warp_doubles(S->np) * sizeof(double);
    if (shmem > 48 * 1024) {
        /* many parameters (np up to MLMX_GB_NPMAX): opt in to more than the
         * default 48 KiB of dynamic shared memory */
        cudaError_t e = cudaFuncSetAttribute(mlmx_gb_kernel<FAM, VEC, LINK>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)shmem);
        if (e != cudaSuccess)
            return e;
    }
    // as many blocks as the device holds at once (the warps then loop)
    int dev = 0, sms = 1, per_sm = 1;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess)
        e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mlmx_gb_kernel<FAM, VEC, LINK>,
                                                          32 * GB_WARPS, shmem);
    if (e == cudaSuccess)
        e = cudaMemsetAsync(next, 0, sizeof *next, stream);
    if (e != cudaSuccess)
        return e;
    size_t blocks = (count + GB_WARPS - 1) / GB_WARPS;
    const size_t resident = (size_t)(sms > 0 ? sms : 1) * (size_t)(per_sm > 0 ? per_sm : 1);
    if (blocks > resident)
        blocks = resident;
    mlmx_gb_kernel<FAM, VEC, LINK><<<(unsigned)blocks, 32 * GB_WARPS, shmem, stream>>>(
        *S, seed, dreps, count, dy, du, want_se, *o, next);
    return cudaGetLastError();
}

template <int VEC>
static cudaError_t launch_term(const mlmx_gb_shared *S, uint64_t seed, const uint64_t *dreps,
                               size_t count, double *dy, double *du, int want_se,
                               const mlmx_gb_cuda_out *o, unsigned long long *next,
                               cudaStream_t stream)
{
    const int canon = S->link == MLMX_LINK_LOGIT;
    switch (S->fam) {
    case MLMX_FAM_POISSON:
        return launch_fam<MLMX_FAM_POISSON, VEC, MLMX_LINK_LOG>(S, seed, dreps, count, dy, du,
                                                                want_se, o, next, stream);
    case MLMX_FAM_NEGBIN:
        return launch_fam<MLMX_FAM_NEGBIN, VEC, MLMX_LINK_LOG>(S, seed, dreps, count, dy, du,
                                                               want_se, o, next, stream);
    case MLMX_FAM_ORDINAL:
        return canon ? launch_fam<MLMX_FAM_ORDINAL, VEC, MLMX_LINK_LOGIT>(
                           S, seed, dreps, count, dy, du, want_se, o, next, stream)
                     : launch_fam<MLMX_FAM_ORDINAL, VEC, -1>(S, seed, dreps, count, dy, du,
                                                             want_se, o, next, stream);
    default:
        /* a vector term: logit only (the engine's rule), so no vector
         * instantiation for the other links */
        return canon ? launch_fam<MLMX_FAM_BINOMIAL, VEC, MLMX_LINK_LOGIT>(
                           S, seed, dreps, count, dy, du, want_se, o, next, stream)
                     : launch_fam<MLMX_FAM_BINOMIAL, VEC, VEC ? MLMX_LINK_LOGIT : -1>(
                           S, seed, dreps, count, dy, du, want_se, o, next, stream);
    }
}

static cudaError_t launch_gb(const mlmx_gb_shared *S, uint64_t seed, const uint64_t *dreps,
                             size_t count, double *dy, double *du, int want_se,
                             const mlmx_gb_cuda_out *o, unsigned long long *next,
                             cudaStream_t stream)
{
    if (S->q > 1)
        return launch_term<1>(S, seed, dreps, count, dy, du, want_se, o, next, stream);
    return launch_term<0>(S, seed, dreps, count, dy, du, want_se, o, next, stream);
}

/* Responses only, one replicate per thread: replicate r's draws into
 * ybuf + r*n in grouped order (the host puts them in model order). */
__global__ void mlmx_gb_sim_kernel(mlmx_gb_shared S, uint64_t seed,
                                   const uint64_t *__restrict__ reps, size_t count, double *ybuf,
                                   double *ubuf)
{
    const size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= count)
        return;
    mlmx_gb_rep R;
    R.y = ybuf + r * (size_t)S.n;
    R.u = ubuf + r * (size_t)S.nclu * (size_t)S.q;
    R.ys = 1;
    R.us = 1;
    mlmx_gb_simulate(&S, seed, reps[r], &R);
}

#define CK MLMX_CUDA_CK

/* Device copies of the structure's arrays in one int and one double block
 * (mlmx_gb_struct_bytes's sizes, through the counted allocator); Sd gets
 * the device pointers. */
static cudaError_t gb_upload(const mlmx_gb_shared *S, mlmx_gb_shared *Sd, int **di, double **dd,
                             size_t *bi, size_t *bd)
{
    const size_t n = (size_t)S->n, L = (size_t)S->nclu, p = (size_t)S->p, np = (size_t)S->np;
    const size_t K = (size_t)S->nagq, q = (size_t)S->q, ne = (size_t)S->ne;
    mlmx_gb_struct_bytes(S, bi, bd);
    cudaError_t e = mlmx_cuda_batch_alloc((void **)di, *bi);
    if (e == cudaSuccess)
        e = mlmx_cuda_batch_alloc((void **)dd, *bd);
    if (e != cudaSuccess)
        return e;
    *Sd = *S;
    const mlmx_cuda_part parts[] = {
        {S->cs, (L + 1) * sizeof(int), 1, (const void **)&Sd->cs},
        {S->clu, n * sizeof(int), 1, (const void **)&Sd->clu},
        {S->pos, n * sizeof(int), 1, (const void **)&Sd->pos},
        {S->X, n * p * sizeof(double), 0, (const void **)&Sd->X},
        {S->z, n * q * sizeof(double), 0, (const void **)&Sd->z},
        {S->nt, n * sizeof(double), 0, (const void **)&Sd->nt},
        {S->gz, K * sizeof(double), 0, (const void **)&Sd->gz},
        {S->glw, K * sizeof(double), 0, (const void **)&Sd->glw},
        {S->beta_sim, p * sizeof(double), 0, (const void **)&Sd->beta_sim},
        {S->xmax, p * sizeof(double), 0, (const void **)&Sd->xmax},
        {S->x0, np * sizeof(double), 0, (const void **)&Sd->x0},
        {S->lb, np * sizeof(double), 0, (const void **)&Sd->lb},
        {S->hinv0, np * np * sizeof(double), 0, (const void **)&Sd->hinv0},
        {S->extra_sim, ne * sizeof(double), 0, (const void **)&Sd->extra_sim},
        {S->tsim, q * q * sizeof(double), 0, (const void **)&Sd->tsim},
    };
    return mlmx_cuda_upload_parts(parts, sizeof parts / sizeof parts[0], *di, *dd);
}

/* Validated arguments of mlmx_cuda_gb_rows. */
static int gb_args_ok(const mlmx_gb_shared *S, const uint64_t *reps, const mlmx_gb_cuda_out *o)
{
    return S && reps && o && o->theta && o->beta && o->crit && o->nev && o->conv && o->sing &&
           o->status && S->q >= 1 && S->q <= MLMX_GB_QMAX && S->nth == S->q * (S->q + 1) / 2 &&
           S->np == S->nth + S->p + S->ne && S->p <= MLMX_GB_PMAX && S->ne <= MLMX_GB_EMAX &&
           S->pout >= S->p && S->n >= 0 && S->tsim;
}

extern "C" mlmx_status mlmx_cuda_gb_rows(const mlmx_gb_shared *S, uint64_t seed,
                                         const uint64_t *reps, size_t count,
                                         const mlmx_gb_cuda_out *o, char *msg, size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    int *di = NULL;
    double *dd = NULL;
    char *dbuf = NULL; /* scratch (y, u), output rows, keys, counts, flags */
    size_t bi = 0, bd = 0, bb = 0;
    unsigned long long *dnext = NULL;
    mlmx_gb_shared Sd;
    mlmx_gb_cuda_out od;
    if (!gb_args_ok(S, reps, o)) {
        snprintf(msg, msglen, "mlmx_cuda_gb_rows: bad arguments");
        return MLMX_ERR_ARG;
    }
    if (count == 0)
        return MLMX_OK;
    if (mlmx_cuda_device_count() == 0) {
        snprintf(msg, msglen, "no CUDA device");
        return MLMX_ERR_UNSUPPORTED;
    }
    const size_t n = (size_t)S->n, nu = (size_t)S->nclu * (size_t)S->q, p = (size_t)S->pout;
    const size_t nth = (size_t)S->nth, ne = o->extra ? (size_t)S->ne : 0;
    const size_t per = n + nu + nth + 1 + 2 * p + ne; /* doubles a replicate */
    if (count > SIZE_MAX / 2 / (per * sizeof(double) + 64)) {
        snprintf(msg, msglen, "mlmx_cuda_gb_rows: %zu replicates overflow the buffer size", count);
        return MLMX_ERR_ARG;
    }
    const int want_se = o->se != NULL;
    bb = count * per * sizeof(double) + count * (sizeof(uint64_t) + sizeof(int) + 3);
    double *dy = NULL, *du = NULL, *dout = NULL;
    uint64_t *dreps = NULL;
    int *dnev = NULL;
    CK(gb_upload(S, &Sd, &di, &dd, &bi, &bd));
    CK(mlmx_cuda_batch_alloc((void **)&dbuf, bb));
    CK(mlmx_cuda_batch_alloc((void **)&dnext, sizeof *dnext));
    dy = (double *)dbuf;
    du = dy + count * n;
    dout = du + count * nu;
    dreps = (uint64_t *)(dout + count * (nth + 1 + 2 * p + ne));
    dnev = (int *)(dreps + count);
    od.theta = dout;
    od.crit = dout + count * nth;
    od.beta = od.crit + count;
    od.se = want_se ? od.beta + count * p : NULL;
    od.extra = ne ? od.beta + 2 * count * p : NULL;
    od.nev = dnev;
    od.conv = (signed char *)(dnev + count);
    od.sing = od.conv + count;
    od.status = od.sing + count;
    CK(cudaMemcpy(dreps, reps, count * sizeof(uint64_t), cudaMemcpyHostToDevice));
    CK(launch_gb(&Sd, seed, dreps, count, dy, du, want_se, &od, dnext, 0));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(o->theta, od.theta, count * nth * sizeof(double), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->crit, od.crit, count * sizeof(double), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->beta, od.beta, count * p * sizeof(double), cudaMemcpyDeviceToHost));
    if (want_se)
        CK(cudaMemcpy(o->se, od.se, count * p * sizeof(double), cudaMemcpyDeviceToHost));
    if (ne)
        CK(cudaMemcpy(o->extra, od.extra, count * ne * sizeof(double), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->nev, dnev, count * sizeof(int), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->conv, od.conv, count, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->sing, od.sing, count, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o->status, od.status, count, cudaMemcpyDeviceToHost));
done:
    mlmx_cuda_batch_free(di, bi);
    mlmx_cuda_batch_free(dd, bd);
    mlmx_cuda_batch_free(dbuf, bb);
    mlmx_cuda_batch_free(dnext, sizeof *dnext);
    return st;
}

extern "C" mlmx_status mlmx_cuda_gb_simulate(const mlmx_gb_shared *S, uint64_t seed,
                                             const uint64_t *reps, size_t count, double *y,
                                             char *msg, size_t msglen)
{
    mlmx_cuda_bind();
    mlmx_status st = MLMX_OK;
    int *di = NULL;
    double *dd = NULL, *dbuf = NULL;
    size_t bi = 0, bd = 0, bb = 0;
    mlmx_gb_shared Sd;
    if (!S || !reps || !y || S->n < 0 || S->q < 1 || S->q > MLMX_GB_QMAX || !S->tsim) {
        snprintf(msg, msglen, "mlmx_cuda_gb_simulate: bad arguments");
        return MLMX_ERR_ARG;
    }
    if (count == 0)
        return MLMX_OK;
    if (mlmx_cuda_device_count() == 0) {
        snprintf(msg, msglen, "no CUDA device");
        return MLMX_ERR_UNSUPPORTED;
    }
    const size_t n = (size_t)S->n, nu = (size_t)S->nclu * (size_t)S->q;
    if (count > SIZE_MAX / sizeof(double) / (n + nu + 2)) {
        snprintf(msg, msglen, "mlmx_cuda_gb_simulate: %zu replicates overflow the buffer size",
                 count);
        return MLMX_ERR_ARG;
    }
    /* y and u rows, then the keys */
    bb = count * (n + nu + 1) * sizeof(double);
    double *dy = NULL, *du = NULL;
    uint64_t *dreps = NULL;
    CK(gb_upload(S, &Sd, &di, &dd, &bi, &bd));
    CK(mlmx_cuda_batch_alloc((void **)&dbuf, bb));
    dy = dbuf;
    du = dy + count * n;
    dreps = (uint64_t *)(du + count * nu);
    CK(cudaMemcpy(dreps, reps, count * sizeof(uint64_t), cudaMemcpyHostToDevice));
    {
        const int threads = 128;
        const size_t blocks = (count + threads - 1) / threads;
        mlmx_gb_sim_kernel<<<(unsigned)blocks, threads>>>(Sd, seed, dreps, count, dy, du);
    }
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(y, dy, count * n * sizeof(double), cudaMemcpyDeviceToHost));
done:
    mlmx_cuda_batch_free(di, bi);
    mlmx_cuda_batch_free(dd, bd);
    mlmx_cuda_batch_free(dbuf, bb);
    return st;
}
