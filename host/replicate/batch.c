/* The batch engines' registry, the CPU driver (threads over contiguous
 * row ranges) and the device chunk planner. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim.h"
#include "replicate/batch.h"

typedef mlmx_status (*engine_init)(const mlmx_problem *, mlmx_batch_engine *, mlmx_error *);

mlmx_status mlmx_batch_engine_create(const mlmx_problem *P, mlmx_batch_engine **out,
                                     mlmx_error *err)
{
    /* the specialised nested engine before the general crossed one */
    static const engine_init inits[] = {mlmx_lb_engine_init, mlmx_nb_engine_init,
                                        mlmx_ld_engine_init, mlmx_gb_engine_init,
                                        mlmx_gn_engine_init, mlmx_gc_engine_init};
    enum { NINIT = (int)(sizeof inits / sizeof inits[0]) };
    *out = NULL;
    if (!P)
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_batch_engine_create: NULL problem");
    if (P->md->resid || P->md->nstructured)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                            "no batch engine covers a residual correlation or variance "
                            "structure, or a structured random-effect covariance, yet (the CPU "
                            "workspaces do)");
    mlmx_batch_engine *E = calloc(1, sizeof *E);
    if (!E)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    /* every engine's reason, in order, for the message when none covers P */
    char why[1024] = "";
    size_t len = 0;
    for (int k = 0; k < NINIT; k++) {
        mlmx_error e;
        mlmx_err_clear(&e);
        mlmx_status st = inits[k](P, E, &e);
        if (st == MLMX_OK) {
            *out = E;
            return MLMX_OK;
        }
        if (st != MLMX_ERR_UNSUPPORTED) {
            free(E);
            return mlmx_err_set(err, st, "%s", e.msg);
        }
        if (len < sizeof why) {
            int w = snprintf(why + len, sizeof why - len, "%s%s", k ? "; " : "", e.msg);
            len += w > 0 ? (size_t)w : 0;
        }
        memset(E, 0, sizeof *E);
    }
    free(E);
    return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "no batch engine covers this model (%s)", why);
}

void mlmx_batch_engine_free(mlmx_batch_engine *E)
{
    if (!E)
        return;
    if (E->free)
        E->free(E->impl);
    free(E);
}

typedef struct span {
    const mlmx_batch_engine *E;
    const mlmx_batch_job *J;
    size_t i0, i1;
} span;

static void *span_main(void *arg)
{
    span *s = arg;
    s->E->cpu_rows(s->E->impl, s->J, s->i0, s->i1);
    return NULL;
}

mlmx_status mlmx_batch_run_cpu(const mlmx_batch_engine *E, const mlmx_batch_job *J, int threads,
                               mlmx_error *err)
{
    if (!E || !J || !E->cpu_rows)
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_batch_run_cpu: no engine or job");
    if (J->count == 0)
        return MLMX_OK;
    size_t nth = threads > 1 ? (size_t)threads : 1;
    if (nth > J->count)
        nth = J->count;
    span *sp = calloc(nth, sizeof *sp);
    pthread_t *tid = calloc(nth, sizeof *tid);
    int *started = calloc(nth, sizeof *started);
    if (!sp || !tid || !started) {
        free(sp);
        free(tid);
        free(started);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    for (size_t t = 0; t < nth; t++) {
        sp[t].E = E;
        sp[t].J = J;
        sp[t].i0 = J->count * t / nth;
        sp[t].i1 = J->count * (t + 1) / nth;
    }
    for (size_t t = 1; t < nth; t++)
        started[t] = pthread_create(&tid[t], NULL, span_main, &sp[t]) == 0;
    span_main(&sp[0]);
    for (size_t t = 1; t < nth; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else /* no thread: do its rows here */
            span_main(&sp[t]);
    }
    free(sp);
    free(tid);
    free(started);
    return MLMX_OK;
}

size_t mlmx_batch_plan_chunk(size_t free_bytes, size_t fixed_bytes, size_t rep_bytes,
                             size_t total, double fraction, size_t align, size_t cap)
{
    if (align < 1)
        align = 1;
    if (!(fraction > 0.0) || fraction > 1.0)
        fraction = 1.0;
    if (rep_bytes == 0)
        rep_bytes = 1;
    if (free_bytes <= fixed_bytes)
        return 0;
    double usable = (double)(free_bytes - fixed_bytes) * fraction;
    double fit = usable / (double)rep_bytes;
    size_t n = fit >= (double)SIZE_MAX ? SIZE_MAX : (size_t)fit;
    if (cap && n > cap)
        n = cap;
    if (total > 0 && n >= total)
        return total;
    if (n < align)
        return 0;
    return n / align * align;
}

void mlmx_batch_pool_init(mlmx_batch_pool *pool, size_t ndoubles, size_t nints)
{
    pool->ndoubles = ndoubles;
    pool->nints = nints;
    for (int s = 0; s < MLMX_BATCH_SLOTS; s++) {
        atomic_init(&pool->busy[s], 0);
        pool->mem[s] = NULL;
        pool->imem[s] = NULL;
    }
}

int mlmx_batch_pool_claim(mlmx_batch_pool *pool)
{
    for (;;) {
        for (int s = 0; s < MLMX_BATCH_SLOTS; s++)
            if (atomic_exchange(&pool->busy[s], 1) == 0) {
                if (!pool->mem[s]) {
                    pool->mem[s] = malloc((pool->ndoubles ? pool->ndoubles : 1) * sizeof(double));
                    pool->imem[s] = malloc((pool->nints ? pool->nints : 1) * sizeof(int));
                    if (!pool->mem[s] || !pool->imem[s]) {
                        free(pool->mem[s]);
                        free(pool->imem[s]);
                        pool->mem[s] = NULL;
                        pool->imem[s] = NULL;
                        atomic_store(&pool->busy[s], 0);
                        return -1;
                    }
                }
                return s;
            }
        sched_yield();
    }
}

void mlmx_batch_pool_release(mlmx_batch_pool *pool, int slot)
{
    if (slot >= 0 && slot < MLMX_BATCH_SLOTS)
        atomic_store(&pool->busy[slot], 0);
}

void mlmx_batch_pool_free(mlmx_batch_pool *pool)
{
    for (int s = 0; s < MLMX_BATCH_SLOTS; s++) {
        free(pool->mem[s]);
        free(pool->imem[s]);
        pool->mem[s] = NULL;
        pool->imem[s] = NULL;
    }
}

void mlmx_batch_xtx(const mlmx_model *md, double *XtX)
{
    const int p = md->p;
    const size_t n = md->n;
    for (int b = 0; b < p; b++)
        for (int a = 0; a < p; a++) {
            const double *xa = md->X + (size_t)a * n, *xb = md->X + (size_t)b * n;
            double s = 0.0;
            for (size_t i = 0; i < n; i++)
                s += xa[i] * xb[i];
            XtX[a + b * p] = s;
        }
}

mlmx_status mlmx_batch_sim_model_order(const char *engine, mlmx_batch_grouped_sim sim,
                                       const void *S, size_t n, const int *pos, uint64_t seed,
                                       const uint64_t *reps, size_t count, double *y,
                                       mlmx_error *err)
{
    char msg[MLMX_ERRMSG_MAX];
    msg[0] = 0;
    double *row = malloc((n ? n : 1) * sizeof *row);
    if (!row)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    mlmx_status st = sim(S, seed, reps, count, y, msg, sizeof msg);
    for (size_t r = 0; !st && r < count; r++) {
        double *yr = y + r * n;
        memcpy(row, yr, n * sizeof *row);
        for (size_t j = 0; j < n; j++)
            yr[j] = row[pos[j]];
    }
    free(row);
    if (st)
        return mlmx_err_set(err, st, "%s on the device: %s", engine, msg);
    return MLMX_OK;
}

void mlmx_batch_glmm_optim(const mlmx_problem *P, int np, double *x0, double *lb, double *h0,
                           const double **hinv0, mlmx_qn_cfg *cfg)
{
    memcpy(x0, P->gx0, (size_t)np * sizeof *x0);
    memcpy(lb, P->glb, (size_t)np * sizeof *lb);
    if (P->ghinv0)
        memcpy(h0, P->ghinv0, (size_t)np * np * sizeof *h0);
    *hinv0 = P->ghinv0 ? h0 : NULL;
    mlmx_optim_opts oo;
    mlmx_optim_opts_default(&oo);
    if (P->opt.max_evaluations > 0)
        oo.max_evals = P->opt.max_evaluations;
    mlmx_qn_cfg_from_opts(&oo, cfg);
}
