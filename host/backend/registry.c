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
           be->dense_chol;
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
