/* Wald-test power replicates through the replicate runner: the same
 * simulate-and-refit rows mlmx boot uses (a batch engine on the GPU or on
 * CPU threads, workspaces for the models no engine covers), tested row by
 * row. Replicate r's outcome depends on (seed, r) alone, whatever the block
 * size or device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "power/power.h"
#include "replicate/runner.h"

typedef struct wald_rows {
    mlmx_runner_rows r;
    uint64_t *reps;
} wald_rows;

static void rows_free(wald_rows *w)
{
    free(w->reps);
    free(w->r.params);
    free(w->r.beta);
    free(w->r.se);
    free(w->r.crit);
    free(w->r.nev);
    free(w->r.conv);
    free(w->r.sing);
    free(w->r.status);
}

static mlmx_status rows_alloc(wald_rows *w, size_t n, int nparams, int p, mlmx_error *err)
{
    const size_t np = (size_t)(nparams > 0 ? nparams : 1), pp = (size_t)(p > 0 ? p : 1);
    w->reps = malloc(n * sizeof *w->reps);
    w->r.params = malloc(n * np * sizeof *w->r.params);
    w->r.beta = malloc(n * pp * sizeof *w->r.beta);
    w->r.se = malloc(n * pp * sizeof *w->r.se);
    w->r.crit = malloc(n * sizeof *w->r.crit);
    w->r.nev = malloc(n * sizeof *w->r.nev);
    w->r.conv = malloc(n);
    w->r.sing = malloc(n);
    w->r.status = malloc(n);
    if (!w->reps || !w->r.params || !w->r.beta || !w->r.se || !w->r.crit || !w->r.nev ||
        !w->r.conv || !w->r.sing || !w->r.status)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory for %zu replicate rows", n);
    return MLMX_OK;
}

/* Row a's outcome, as the workspace loop of power_run.c decides it. */
static unsigned char outcome(const wald_rows *w, size_t a, int p, int jterm, double crit)
{
    if (w->r.status[a] != 1)
        return F_FAILED;
    const double z = w->r.beta[a * (size_t)p + (size_t)jterm] / w->r.se[a * (size_t)p + (size_t)jterm];
    if (!isfinite(z))
        return F_FAILED;
    unsigned char f = fabs(z) > crit ? F_REJECT : 0;
    if (w->r.sing[a])
        f |= F_SINGULAR;
    if (!w->r.conv[a])
        f |= F_NONCONV;
    return f;
}

static void record_device(const pw_study *S, const mlmx_runner *R)
{
    mlmx_power_result *res = S->res;
    if (!res)
        return;
    snprintf(res->device, sizeof res->device, "%s", mlmx_runner_device(R));
    /* keep the first note of the run: a later point's choice is the same */
    if (!res->note[0])
        snprintf(res->note, sizeof res->note, "%s", mlmx_runner_note(R));
    const size_t peak = mlmx_runner_peak_device_bytes(R);
    if (peak > res->peak_dev)
        res->peak_dev = peak;
}

mlmx_status mlmx_pw_run_wald(const pw_study *S, const mlmx_problem *P, int jterm, double crit,
                             long nsim, int point, int npoints, unsigned char *flags,
                             mlmx_error *err)
{
    const mlmx_power_options *o = S->o;
    mlmx_runner *R = NULL;
    mlmx_status st = mlmx_runner_create(P, o->device, S->threads, (uint64_t)nsim, &R, err);
    if (st)
        return st;
    const int p = P->p;
    const size_t block = mlmx_runner_block(R);
    wald_rows w = {0};
    st = rows_alloc(&w, block, P->nparams, p, err);
    for (long done = 0; !st && done < nsim;) {
        const size_t cnt = (size_t)(nsim - done) < block ? (size_t)(nsim - done) : block;
        for (size_t a = 0; a < cnt; a++)
            w.reps[a] = (uint64_t)done + a;
        if ((st = mlmx_runner_run(R, S->seed, w.reps, cnt, &w.r, err)))
            break;
        for (size_t a = 0; a < cnt; a++)
            flags[done + (long)a] = outcome(&w, a, p, jterm, crit);
        done += (long)cnt;
        if (o->progress)
            o->progress(o->progress_ctx, point, npoints, done, nsim);
    }
    record_device(S, R);
    rows_free(&w);
    mlmx_runner_free(R);
    return st;
}
