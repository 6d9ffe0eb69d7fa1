/* The only place that knows which backends exist: the table below. A
 * backend is offered when it was compiled in, every slot is filled and its
 * availability check (device, driver) passes. */
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"

typedef struct backend_entry {
    const char *name;
    const mlmx_backend *(*get)(void);      /* NULL: not compiled in */
    const char *(*unavailable)(void);      /* NULL: always available */
    const char *missing;                   /* why get is NULL in this build */
} backend_entry;

static const backend_entry backends[] = {
    {"cpu", mlmx_backend_cpu, NULL, NULL},
#ifdef MLMX_HAVE_CUDA
    {"cuda", mlmx_backend_cuda, mlmx_backend_cuda_unavailable, NULL},
#else
    {"cuda", NULL, NULL,
     "mlmx was built without CUDA (configure with -DMLMX_CUDA=ON and a CUDA toolkit)"},
#endif
};
#define NBACKENDS ((int)(sizeof backends / sizeof backends[0]))

static const backend_entry *find(const char *name)
{
    if (!name || !name[0])
        name = "cpu";
    for (int i = 0; i < NBACKENDS; i++)
        if (strcmp(backends[i].name, name) == 0)
            return &backends[i];
    return NULL;
}

static int all_slots(const mlmx_backend *be)
{
    return be && be->name && be->cluster_factor && be->schur_downdate && be->stage_chol &&
           be->dense_chol && be->dense_inverse;
}

const char *mlmx_backend_unavailable_reason(const char *name)
{
    static _Thread_local char why[200];
    const backend_entry *e = find(name);
    if (!e) {
        snprintf(why, sizeof why, "unknown backend '%s' (known: cpu, cuda)", name);
        return why;
    }
    if (!e->get)
        return e->missing;
    if (!all_slots(e->get())) {
        snprintf(why, sizeof why, "backend '%s' does not fill every slot", e->name);
        return why;
    }
    return e->unavailable ? e->unavailable() : NULL;
}

const mlmx_backend *mlmx_backend_get(const char *name)
{
    const backend_entry *e = find(name);
    if (!e || mlmx_backend_unavailable_reason(e->name))
        return NULL;
    return e->get();
}

int mlmx_backend_count(void) { return NBACKENDS; }

const char *mlmx_backend_name(int i) { return i >= 0 && i < NBACKENDS ? backends[i].name : NULL; }

static void gpu_where(char *where, size_t wlen)
{
    char d[200];
    if (mlmx_device_describe(d, sizeof d) != MLMX_OK)
        snprintf(d, sizeof d, "CUDA device");
    snprintf(where, wlen, "gpu: %s (cuda backend)", d);
}

mlmx_status mlmx_backend_for_device(mlmx_device device, const char *name, int dense_cols,
                                    const mlmx_backend **out, char *where, size_t wlen,
                                    char *note, size_t nlen, mlmx_error *err)
{
    *out = NULL;
    note[0] = '\0';
    snprintf(where, wlen, "cpu");
    const int named = name && name[0];
    if (device == MLMX_DEVICE_CPU || (device == MLMX_DEVICE_AUTO && named)) {
        if (!(*out = mlmx_backend_get(name)))
            return mlmx_err_set(err, MLMX_ERR_ARG, "backend '%s' unavailable: %s", name,
                                mlmx_backend_unavailable_reason(name));
        if (strcmp((*out)->name, "cuda") == 0)
            gpu_where(where, wlen);
        return MLMX_OK;
    }
    const char *why = mlmx_backend_unavailable_reason("cuda");
    if (device == MLMX_DEVICE_GPU) {
        if (named && strcmp(name, "cuda") != 0)
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "device gpu with backend '%s': the GPU's backend is cuda", name);
        if (why)
            return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "--device gpu: %s", why);
        *out = mlmx_backend_get("cuda");
        gpu_where(where, wlen);
        return MLMX_OK;
    }
    if (device != MLMX_DEVICE_AUTO)
        return mlmx_err_set(err, MLMX_ERR_ARG, "unknown device %d", (int)device);
    if (!why && dense_cols >= MLMX_DEVICE_DENSE_MIN) {
        *out = mlmx_backend_get("cuda");
        gpu_where(where, wlen);
        return MLMX_OK;
    }
    if (why)
        snprintf(note, nlen, "device auto: running on the CPU: %s", why);
    else if (dense_cols < 0)
        snprintf(note, nlen,
                 "device auto: running on the CPU: a GLMM's per-observation work runs on the "
                 "CPU (--device gpu moves its factorizations to the GPU)");
    else
        snprintf(note, nlen,
                 "device auto: running on the CPU: the model's crossed dense block has %d "
                 "columns (the GPU is chosen from %d)",
                 dense_cols, MLMX_DEVICE_DENSE_MIN);
    *out = mlmx_backend_cpu();
    return MLMX_OK;
}
