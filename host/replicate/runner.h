/* The replicate runner: one interface over the three ways replicates of a
 * prepared problem are simulated and refitted, chosen once per run:
 *   - a batch engine on the GPU (replicate/batch.h, kernels/lmm_batch.cu);
 *   - the same batch engine on CPU threads;
 *   - workspaces on CPU threads (every model; problem.c).
 * Device choice (mlmx_device):
 *   cpu   the batch engine when one covers the model, else workspaces;
 *   gpu   the engine's device path; an error when the model is not covered,
 *         the build has no CUDA, there is no device, or the device fails;
 *   auto  the GPU when the engine has a device path, a device is present and
 *         the run has at least MLMX_RUNNER_AUTO_MIN replicates (below that,
 *         upload and launch cost more than they save); else the CPU. A
 *         device failure mid-run moves the rest of the run to the CPU (the
 *         failed block is redone there; finished blocks are kept), with a
 *         note saying why.
 * Results are identical whichever thread count runs them; the GPU's agree
 * with the CPU engine's to rounding (docs/gpu.md). */
#ifndef MLMX_RUNNER_H
#define MLMX_RUNNER_H
#include <stddef.h>
#include <stdint.h>

#include "replicate/replicate.h"

#define MLMX_RUNNER_AUTO_MIN 1000

typedef struct mlmx_runner mlmx_runner;

/* Rows for count replicates: params (count*nparams, report order), beta
 * and se (count*p each; NULL when not wanted), crit, nev, conv, sing and
 * status (1 done, 2 failed: NaN estimates). */
typedef struct mlmx_runner_rows {
    double *params, *beta, *se, *crit;
    int *nev;
    signed char *conv, *sing, *status;
} mlmx_runner_rows;

/* A runner for P (which must outlive it) with `threads` CPU threads, for a
 * run of `total` replicates. Errors: MLMX_ERR_UNSUPPORTED for --device gpu
 * where the GPU cannot be used (the message says why), MLMX_ERR_NOMEM. */
mlmx_status mlmx_runner_create(const mlmx_problem *P, mlmx_device dev, int threads,
                               uint64_t total, mlmx_runner **out, mlmx_error *err);
void mlmx_runner_free(mlmx_runner *R);

/* Replicates per block: what one call should be given so that progress,
 * interruption and file writes come often enough (the GPU's chunk from
 * the device's free memory, 1024 on the CPU). */
size_t mlmx_runner_block(const mlmx_runner *R);

/* Simulate (seed, reps[i]) and fit, for i < count (count <= the block
 * size), writing row i of out. Failed replicates are rows, not errors; an
 * error means the device failed under --device gpu (rows not written). */
mlmx_status mlmx_runner_run(mlmx_runner *R, uint64_t seed, const uint64_t *reps, size_t count,
                            const mlmx_runner_rows *out, mlmx_error *err);

/* Where the replicates ran, in words ("gpu: NVIDIA H200 ...", "cpu: batch
 * engine lmm-1term, 2 threads", "cpu: workspaces, 2 threads"). */
const char *mlmx_runner_device(const mlmx_runner *R);
/* Why the choice differs from what was asked ("" when it does not). */
const char *mlmx_runner_note(const mlmx_runner *R);
/* 1 when the GPU runs the replicates now. */
int mlmx_runner_on_gpu(const mlmx_runner *R);
/* Peak device memory of this process's batch engines (0 without a GPU). */
size_t mlmx_runner_peak_device_bytes(const mlmx_runner *R);

/* For tests of the device paths on a machine without a device: from the
 * next block on, R's blocks go through gpu_rows as if the engine's device
 * path ran them (the device string becomes "gpu: test device, batch engine
 * NAME"). auto_mode 1: a failure moves the rest of the run to the CPU, as
 * under --device auto; 0: a failure is the run's error, as under --device
 * gpu. MLMX_ERR_UNSUPPORTED when R runs workspaces (no engine). */
struct mlmx_batch_job;
typedef mlmx_status (*mlmx_runner_gpu_rows)(void *impl, const struct mlmx_batch_job *J,
                                             mlmx_error *err);
mlmx_status mlmx_runner_test_device(mlmx_runner *R, mlmx_runner_gpu_rows gpu_rows, int auto_mode);

#endif
