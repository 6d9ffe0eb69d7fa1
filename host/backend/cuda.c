/* CUDA backend: every slot is a validated entry point of
 * kernels/backend_cuda.cu (declared in plain C in kernels/backend_cuda.h).
 * Compiled only in builds with MLMX_HAVE_CUDA; host/backend/registry.c
 * decides whether it is offered (a device present, a recent driver). */
#include <stdio.h>

#include "backend/backend.h"
#include "backend_cuda.h"

static const mlmx_backend cuda_backend = {
    "cuda",
    mlmx_cuda_cluster_factor,
    mlmx_cuda_schur_downdate,
    mlmx_cuda_stage_chol,
    mlmx_cuda_dense_chol,
    mlmx_cuda_dense_inverse,
};

const mlmx_backend *mlmx_backend_cuda(void) { return &cuda_backend; }

const char *mlmx_backend_cuda_unavailable(void)
{
    static _Thread_local char why[160];
    int driver = 0, runtime = 0;
    mlmx_cuda_versions(&driver, &runtime);
    if (driver == 0) {
        snprintf(why, sizeof why, "no CUDA driver installed (libcuda not found; runtime %d.%d)",
                 runtime / 1000, runtime % 1000 / 10);
        return why;
    }
    /* within a major version the driver may be older than the runtime
     * (minor version compatibility); across majors it cannot */
    if (driver / 1000 < runtime / 1000) {
        snprintf(why, sizeof why,
                 "CUDA driver too old: driver supports CUDA %d.%d, the runtime needs %d.%d",
                 driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
        return why;
    }
    if (mlmx_cuda_device_count() <= 0) {
        snprintf(why, sizeof why, "no CUDA device (driver %d.%d, runtime %d.%d)", driver / 1000,
                 driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
        return why;
    }
    return NULL;
}
