/* The replicate runner (runner.h): device choice, the GPU's chunks, the
 * CPU engine's threads, and the workspace threads for the models no batch
 * engine covers. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicate/batch.h"
#include "replicate/runner.h"
#ifdef MLMX_HAVE_CUDA
#include "cuda_entry.h"
#include "lmm_batch_cuda.h"
#endif

#define CPU_BLOCK 1024
/* the GPU's chunk is at most this many replicates (progress and file
 * writes come at least this often) and uses at most this share of the
 * device's free memory */
#define GPU_CHUNK_CAP ((size_t)1 << 20)
#define GPU_MEM_FRACTION 0.8

typedef struct wjob {
    const mlmx_problem *P;
    uint64_t seed;
    const uint64_t *reps;
    size_t count, next, chunk;
    const mlmx_runner_rows *out;
    pthread_mutex_t lock;
} wjob;

typedef struct wworker {
    wjob *J;
    mlmx_workspace *W;
} wworker;

struct mlmx_runner {
    const mlmx_problem *P;
    int nth, on_gpu, auto_mode;
    mlmx_batch_engine *E;
    mlmx_workspace **W;
    wworker *wk;
    pthread_t *tid;
    size_t block;
    mlmx_batch_job J; /* row buffers of one block */
    double *se_buf;   /* J.se points here when the caller wants SEs */
    double *extra;    /* the engine's extra parameters (P->nextra a row), or NULL */
    char device[256], note[768];
};

void mlmx_runner_free(mlmx_runner *R)
{
    if (!R)
        return;
    mlmx_batch_engine_free(R->E);
    for (int t = 0; R->W && t < R->nth; t++)
        mlmx_workspace_free(R->W[t]);
    free(R->W);
    free(R->wk);
    free(R->tid);
    free(R->J.theta);
    free(R->J.beta);
    free(R->se_buf);
    free(R->J.sigma);
    free(R->J.crit);
    free(R->J.nev);
    free(R->J.conv);
    free(R->J.sing);
    free(R->J.status);
    free(R->extra);
    free(R);
}

static mlmx_status job_alloc(mlmx_runner *R, mlmx_error *err)
{
    const size_t n = R->block, nt = (size_t)R->P->ntheta + 1, p = (size_t)R->P->p + 1;
    mlmx_batch_job *J = &R->J;
    J->theta = malloc(n * nt * sizeof *J->theta);
    J->beta = malloc(n * p * sizeof *J->beta);
    R->se_buf = malloc(n * p * sizeof *R->se_buf);
    J->sigma = malloc(n * sizeof *J->sigma);
    J->crit = malloc(n * sizeof *J->crit);
    J->nev = malloc(n * sizeof *J->nev);
    J->conv = malloc(n);
    J->sing = malloc(n);
    J->status = malloc(n);
    if (!J->theta || !J->beta || !R->se_buf || !J->sigma || !J->crit || !J->nev || !J->conv ||
        !J->sing || !J->status)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory for %zu replicate rows", n);
    /* a GLMM's thresholds or size, for the report parameters */
    if (R->E->set_extra_out && R->P->glmm && R->P->nextra > 0) {
        if (!(R->extra = malloc(n * (size_t)R->P->nextra * sizeof *R->extra)))
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory for %zu replicate rows", n);
        R->E->set_extra_out(R->E->impl, R->extra);
    }
    return MLMX_OK;
}

/* The GPU's block from its free memory; 0 with *why when it cannot run. */
static size_t gpu_block(const mlmx_batch_engine *E, uint64_t total, char *why, size_t len)
{
#ifdef MLMX_HAVE_CUDA
    size_t fr = 0, tot = 0;
    if (mlmx_cuda_describe(why, len) != MLMX_OK)
        return 0;
    if (mlmx_cuda_mem_info(&fr, &tot, why, len) != MLMX_OK)
        return 0;
    size_t n = mlmx_batch_plan_chunk(fr, E->gpu_fixed_bytes, E->gpu_rep_bytes, (size_t)total,
                                     GPU_MEM_FRACTION, 128, GPU_CHUNK_CAP);
    if (n == 0)
        snprintf(why, len,
                 "the GPU has too little free memory (%.1f MiB free; the model needs %.1f MiB "
                 "plus %zu bytes a replicate)",
                 (double)fr / 1048576.0, (double)E->gpu_fixed_bytes / 1048576.0,
                 E->gpu_rep_bytes);
    return n;
#else
    (void)E;
    (void)total;
    snprintf(why, len, "this mlmx was built without CUDA (MLMX_CUDA=OFF or no toolkit)");
    return 0;
#endif
}

/* Decide where the run goes; fills R->on_gpu, R->block, R->device, R->note. */
static mlmx_status choose(mlmx_runner *R, mlmx_device dev, uint64_t total, const char *eng_why,
                          mlmx_error *err)
{
    char why[512] = "";
    size_t gb = 0;
    if (dev != MLMX_DEVICE_CPU) {
        if (!R->E)
            snprintf(why, sizeof why, "%.500s", eng_why);
        else if (!R->E->gpu_rows)
            snprintf(why, sizeof why, "the %s engine has no device path in this build",
                     R->E->name);
        else if (dev == MLMX_DEVICE_AUTO && total < MLMX_RUNNER_AUTO_MIN)
            snprintf(why, sizeof why, "%llu replicates are too few to gain from the GPU (auto "
                     "uses it from %d)", (unsigned long long)total, MLMX_RUNNER_AUTO_MIN);
        else
            gb = gpu_block(R->E, total, why, sizeof why);
    }
    if (gb > 0) {
        R->on_gpu = 1;
        R->block = gb;
#ifdef MLMX_HAVE_CUDA
        char desc[200] = "";
        mlmx_cuda_describe(desc, sizeof desc);
        snprintf(R->device, sizeof R->device, "gpu: %s, batch engine %s, %zu replicates a chunk",
                 desc, R->E->name, gb);
#endif
        return MLMX_OK;
    }
    if (dev == MLMX_DEVICE_GPU)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "--device gpu: %.600s", why);
    if (dev == MLMX_DEVICE_AUTO)
        snprintf(R->note, sizeof R->note, "device auto: running on the CPU: %.600s", why);
    R->block = CPU_BLOCK;
    if (R->E && R->E->cpu_slower) { /* workspaces refit this model faster on the CPU */
        snprintf(R->device, sizeof R->device, "cpu: workspaces, %d thread%s (faster on the CPU "
                 "than the %s engine for this model)", R->nth, R->nth == 1 ? "" : "s",
                 R->E->name);
        mlmx_batch_engine_free(R->E);
        R->E = NULL;
        return MLMX_OK;
    }
    if (R->E)
        snprintf(R->device, sizeof R->device, "cpu: batch engine %s, %d thread%s", R->E->name,
                 R->nth, R->nth == 1 ? "" : "s");
    else
        snprintf(R->device, sizeof R->device, "cpu: workspaces, %d thread%s", R->nth,
                 R->nth == 1 ? "" : "s");
    return MLMX_OK;
}

mlmx_status mlmx_runner_create(const mlmx_problem *P, mlmx_device dev, int threads,
                               uint64_t total, mlmx_runner **out, mlmx_error *err)
{
    *out = NULL;
    mlmx_runner *R = calloc(1, sizeof *R);
    if (!R)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    R->P = P;
    R->nth = threads > 0 ? (threads < 1024 ? threads : 1024) : 1;
    R->auto_mode = dev == MLMX_DEVICE_AUTO;
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_status st = mlmx_batch_engine_create(P, &R->E, &e);
    if (st && st != MLMX_ERR_UNSUPPORTED) {
        mlmx_runner_free(R);
        return mlmx_err_set(err, st, "%s", e.msg);
    }
    st = choose(R, dev, total, e.msg, err);
    if (!st && R->E)
        st = job_alloc(R, err);
    if (!st && !R->E) {
        R->W = calloc((size_t)R->nth, sizeof *R->W);
        R->wk = calloc((size_t)R->nth, sizeof *R->wk);
        R->tid = calloc((size_t)R->nth, sizeof *R->tid);
        if (!R->W || !R->wk || !R->tid)
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
        for (int t = 0; !st && t < R->nth; t++)
            if (mlmx_workspace_create(P, &R->W[t]) != MLMX_OK)
                st = mlmx_err_set(err, MLMX_ERR_NOMEM, "%s", mlmx_last_error());
    }
    if (st) {
        mlmx_runner_free(R);
        return st;
    }
    *out = R;
    return MLMX_OK;
}

/* ------------------------------------------------------------ workspaces */

static void ws_one(const wjob *J, mlmx_workspace *W, size_t i)
{
    const mlmx_runner_rows *o = J->out;
    const int np = J->P->nparams, p = J->P->p;
    double *v = o->params + i * (size_t)np;
    const int want_se = o->se != NULL;
    if (mlmx_workspace_simulate(W, J->seed, J->reps[i], NULL) != MLMX_OK ||
        mlmx_workspace_fit(W, want_se) != MLMX_OK) {
        for (int j = 0; j < np; j++)
            v[j] = NAN;
        for (int k = 0; k < p; k++) {
            if (o->beta)
                o->beta[i * (size_t)p + (size_t)k] = NAN;
            if (o->se)
                o->se[i * (size_t)p + (size_t)k] = NAN;
        }
        o->crit[i] = NAN;
        o->conv[i] = o->sing[i] = 0;
        o->nev[i] = 0;
        o->status[i] = 2;
        return;
    }
    memcpy(v, mlmx_workspace_params(W), (size_t)np * sizeof *v);
    if (o->beta)
        memcpy(o->beta + i * (size_t)p, mlmx_workspace_beta(W), (size_t)p * sizeof(double));
    if (o->se)
        memcpy(o->se + i * (size_t)p, mlmx_workspace_se(W), (size_t)p * sizeof(double));
    o->crit[i] = mlmx_workspace_criterion(W);
    o->conv[i] = (signed char)mlmx_workspace_converged(W);
    o->sing[i] = (signed char)mlmx_workspace_singular(W);
    o->nev[i] = mlmx_workspace_n_evaluations(W);
    o->status[i] = 1;
}

static void *ws_main(void *arg)
{
    wworker *w = arg;
    wjob *J = w->J;
    for (;;) {
        pthread_mutex_lock(&J->lock);
        size_t k = J->next;
        J->next += J->chunk;
        pthread_mutex_unlock(&J->lock);
        if (k >= J->count)
            break;
        size_t kend = k + J->chunk < J->count ? k + J->chunk : J->count;
        for (; k < kend; k++)
            ws_one(J, w->W, k);
    }
    return NULL;
}

static void run_workspaces(mlmx_runner *R, uint64_t seed, const uint64_t *reps, size_t count,
                           const mlmx_runner_rows *out)
{
    wjob J = {R->P, seed, reps, count, 0, 1, out, PTHREAD_MUTEX_INITIALIZER};
    /* chunks of up to 8 (fewer locks), but small enough that every thread
     * gets work when a block is short and refits are slow */
    J.chunk = count / (4 * (size_t)R->nth);
    J.chunk = J.chunk < 1 ? 1 : J.chunk > 8 ? 8 : J.chunk;
    const int nth = R->nth;
    wworker *wk = R->wk;
    pthread_t *tid = R->tid;
    for (int t = 0; t < nth; t++) {
        wk[t].J = &J;
        wk[t].W = R->W[t];
    }
    for (int t = 1; t < nth; t++)
        if (pthread_create(&tid[t], NULL, ws_main, &wk[t]) != 0)
            wk[t].J = NULL;
    ws_main(&wk[0]);
    for (int t = 1; t < nth; t++)
        if (wk[t].J)
            pthread_join(tid[t], NULL);
        else /* no thread: its share runs here */
            ws_main(&wk[0]);
    pthread_mutex_destroy(&J.lock);
}

/* ------------------------------------------------------------- engines */

/* The engine's rows (theta, beta, sigma) as report parameters. */
static void engine_rows_out(const mlmx_runner *R, size_t count, const mlmx_runner_rows *o)
{
    const mlmx_problem *P = R->P;
    const mlmx_batch_job *J = &R->J;
    const size_t nt = (size_t)P->ntheta, p = (size_t)P->p, np = (size_t)P->nparams;
    for (size_t i = 0; i < count; i++) {
        double *v = o->params + i * np;
        if (J->status[i] == 1)
            mlmx_rep_params(P, J->theta + i * nt, J->beta + i * p, J->sigma[i],
                            R->extra ? R->extra + i * (size_t)P->nextra : NULL, NULL, v);
        else
            for (size_t j = 0; j < np; j++)
                v[j] = NAN;
        if (o->beta)
            memcpy(o->beta + i * p, J->beta + i * p, p * sizeof(double));
        if (o->se && J->se)
            memcpy(o->se + i * p, J->se + i * p, p * sizeof(double));
        o->crit[i] = J->crit[i];
        o->nev[i] = J->nev[i];
        o->conv[i] = J->conv[i];
        o->sing[i] = J->sing[i];
        o->status[i] = J->status[i];
    }
}

mlmx_status mlmx_runner_run(mlmx_runner *R, uint64_t seed, const uint64_t *reps, size_t count,
                            const mlmx_runner_rows *out, mlmx_error *err)
{
    if (count > R->block)
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_runner_run: %zu replicates, block is %zu",
                            count, R->block);
    if (!R->E) {
        run_workspaces(R, seed, reps, count, out);
        return MLMX_OK;
    }
    R->J.seed = seed;
    R->J.reps = reps;
    R->J.count = count;
    /* SEs only when asked for: a GLMM engine's cost a Hessian each */
    R->J.se = out->se ? R->se_buf : NULL;
    mlmx_status st = MLMX_OK;
    if (R->on_gpu) {
        mlmx_error e;
        mlmx_err_clear(&e);
        st = R->E->gpu_rows(R->E->impl, &R->J, &e);
        if (st && !R->auto_mode)
            return mlmx_err_set(err, st, "%s", e.msg);
        if (st) {
            /* auto: the rest of the run on the CPU, this block included */
            R->on_gpu = 0;
            snprintf(R->note, sizeof R->note,
                     "device auto: the GPU failed (%.600s); the rest of the run is on the CPU", e.msg);
            snprintf(R->device, sizeof R->device, "cpu: batch engine %s, %d thread%s (after a GPU "
                     "failure)", R->E->name, R->nth, R->nth == 1 ? "" : "s");
        }
    }
    if (!R->on_gpu) {
        st = mlmx_batch_run_cpu(R->E, &R->J, R->nth, err);
        if (st)
            return st;
    }
    engine_rows_out(R, count, out);
    return MLMX_OK;
}

size_t mlmx_runner_block(const mlmx_runner *R) { return R->block; }
const char *mlmx_runner_device(const mlmx_runner *R) { return R->device; }
const char *mlmx_runner_note(const mlmx_runner *R) { return R->note; }
int mlmx_runner_on_gpu(const mlmx_runner *R) { return R->on_gpu; }

size_t mlmx_runner_peak_device_bytes(const mlmx_runner *R)
{
    (void)R;
#ifdef MLMX_HAVE_CUDA
    return mlmx_cuda_peak_bytes();
#else
    return 0;
#endif
}

mlmx_status mlmx_runner_test_device(mlmx_runner *R, mlmx_runner_gpu_rows gpu_rows, int auto_mode)
{
    if (!R->E || !gpu_rows)
        return MLMX_ERR_UNSUPPORTED;
    R->E->gpu_rows = gpu_rows;
    R->on_gpu = 1;
    R->auto_mode = auto_mode != 0;
    R->note[0] = '\0';
    snprintf(R->device, sizeof R->device, "gpu: test device, batch engine %s", R->E->name);
    return MLMX_OK;
}

mlmx_status mlmx_device_describe(char *buf, size_t len)
{
    if (!buf || len == 0)
        return MLMX_ERR_ARG;
#ifdef MLMX_HAVE_CUDA
    return mlmx_cuda_describe(buf, len);
#else
    snprintf(buf, len, "this mlmx was built without CUDA (MLMX_CUDA=OFF or no toolkit)");
    return MLMX_ERR_UNSUPPORTED;
#endif
}

mlmx_status mlmx_device_select(int index)
{
    if (index < 0)
        return MLMX_ERR_ARG;
#ifdef MLMX_HAVE_CUDA
    return mlmx_cuda_select_device(index, NULL);
#else
    return MLMX_ERR_UNSUPPORTED;
#endif
}
