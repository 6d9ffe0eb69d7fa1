/* Bootstrap replicate fits per second of the lmm-nest batch engine on a
 * 3-level LMM, in one run: the engine's CPU rows on 1 and 2 threads, the
 * workspace refits it replaces (mlmx_workspace_simulate + fit, the path
 * the runner took for nested models before) on 1 and 2 threads, and the
 * device when there is one (both mappings; "gpu: no device" otherwise).
 * Replicates are parametric bootstrap draws from the REML fit of the data.
 * Each CPU rate is given per wall second and per CPU second (the process's
 * CPU time over the run): on a machine shared with other work the second
 * is the steadier one. Run with OPENBLAS_NUM_THREADS=1 (as bench/run_*.sh
 * do): the workspaces' LAPACK calls otherwise start OpenBLAS threads that
 * fight the workers for the cores.
 *   usage: bench_lmm_nest [CSV FORMULA [REPS_CPU [REPS_WS [REPS_GPU]]]]
 *   default: data/classroom.csv "mathgain ~ mathkind + (1|schoolid/classid)"
 *            2000 200 100000 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "mlmx.h"
#include "replicate/batch.h"
#include "replicate/lmm_nest_engine.h"
#include "replicate/replicate.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A timing: fits per wall second and per CPU second. */
typedef struct rate {
    double wall, cpu;
} rate;

static rate rate_of(size_t m, double t0, double c0)
{
    return (rate){(double)m / (now() - t0), (double)m / (cpu_now() - c0)};
}

static void machine(void)
{
    struct utsname u;
    if (uname(&u) == 0)
        printf("machine: %s %s %s\n", u.sysname, u.release, u.machine);
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512], model[256] = "unknown";
    int ncpu = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0 && ncpu++ == 0) {
            char *c = strchr(line, ':');
            snprintf(model, sizeof model, "%s", c ? c + 2 : "?");
            model[strcspn(model, "\n")] = 0;
        }
    if (f)
        fclose(f);
    printf("cpu: %s (%d logical)\n", model, ncpu);
}

/* A job of m rows (replicates 0..m-1, seed 7), SEs included as boot asks. */
typedef struct job {
    mlmx_batch_job J;
    uint64_t *reps;
} job;

static int job_alloc(job *j, const mlmx_problem *P, size_t m)
{
    memset(j, 0, sizeof *j);
    j->reps = malloc(m * sizeof *j->reps);
    for (size_t i = 0; j->reps && i < m; i++)
        j->reps[i] = i;
    j->J = (mlmx_batch_job){7u,
                            j->reps,
                            m,
                            malloc(m * (size_t)P->ntheta * sizeof(double)),
                            malloc(m * (size_t)P->p * sizeof(double)),
                            malloc(m * (size_t)P->p * sizeof(double)),
                            malloc(m * sizeof(double)),
                            malloc(m * sizeof(double)),
                            malloc(m * sizeof(int)),
                            malloc(m),
                            malloc(m),
                            malloc(m)};
    const mlmx_batch_job *J = &j->J;
    return j->reps && J->theta && J->beta && J->se && J->sigma && J->crit && J->nev && J->conv &&
           J->sing && J->status;
}

static void job_free(job *j)
{
    free(j->reps);
    free(j->J.theta);
    free(j->J.beta);
    free(j->J.se);
    free(j->J.sigma);
    free(j->J.crit);
    free(j->J.nev);
    free(j->J.conv);
    free(j->J.sing);
    free(j->J.status);
}

static void summary(const char *what, const mlmx_batch_job *J)
{
    size_t ok = 0, conv = 0, sing = 0;
    double ev = 0.0;
    for (size_t i = 0; i < J->count; i++) {
        ok += J->status[i] == 1;
        conv += J->conv[i] == 1;
        sing += J->sing[i] == 1;
        ev += J->nev[i];
    }
    printf("%s: %zu fits, %zu done, %zu converged, %zu singular, %.1f evaluations/fit\n", what,
           J->count, ok, conv, sing, ev / (double)J->count);
}

typedef struct ws_range {
    const mlmx_problem *P;
    size_t i0, i1;
    int failed;
} ws_range;

static void *ws_main(void *arg)
{
    ws_range *r = arg;
    mlmx_workspace *W = NULL;
    r->failed = mlmx_workspace_create(r->P, &W) != MLMX_OK;
    for (size_t i = r->i0; i < r->i1 && !r->failed; i++)
        r->failed = mlmx_workspace_simulate(W, 7u, i, NULL) || mlmx_workspace_fit(W, 1);
    mlmx_workspace_free(W);
    return NULL;
}

/* Workspace refits per second of replicates 0..m-1 on `threads` threads,
 * one workspace each (as the runner does for uncovered models). */
static rate workspace_rate(const mlmx_problem *P, size_t m, int threads)
{
    pthread_t tid[2];
    ws_range rg[2];
    threads = threads > 2 ? 2 : threads < 1 ? 1 : threads;
    const double t0 = now(), c0 = cpu_now();
    for (int t = 0; t < threads; t++) {
        rg[t] = (ws_range){P, m * (size_t)t / (size_t)threads, m * (size_t)(t + 1) / (size_t)threads,
                           0};
        if (pthread_create(&tid[t], NULL, ws_main, &rg[t]) != 0)
            ws_main(&rg[t]), tid[t] = 0;
    }
    int failed = 0;
    for (int t = 0; t < threads; t++) {
        if (tid[t])
            pthread_join(tid[t], NULL);
        failed |= rg[t].failed;
    }
    rate r = rate_of(m, t0, c0);
    if (failed)
        r.wall = r.cpu = NAN;
    return r;
}

/* The device rows with the given mapping: fits per second, or a line
 * saying why not; 0 when there is no device. */
static int gpu_rate(mlmx_batch_engine *E, const mlmx_problem *P, size_t m, int mapping,
                     const mlmx_batch_job *C, double r2)
{
    job g;
    if (!job_alloc(&g, P, m)) {
        printf("gpu: out of host memory\n");
        job_free(&g);
        return 1;
    }
    mlmx_nb_engine_set_mapping(E, mapping);
    const char *map = mapping == MLMX_NB_MAP_WARP ? "warp" : "thread";
    mlmx_error err;
    mlmx_err_clear(&err);
    g.J.count = 256; /* warm-up: context, module load, buffers */
    mlmx_status st = E->gpu_rows(E->impl, &g.J, &err);
    if (st == MLMX_ERR_UNSUPPORTED) {
        printf("gpu: skipped, no device (%s)\n", err.msg);
    } else if (st) {
        printf("gpu (%s per replicate): failed: %s\n", map, err.msg);
    } else {
        g.J.count = m;
        const double t0 = now();
        st = E->gpu_rows(E->impl, &g.J, &err);
        const double rg = (double)m / (now() - t0);
        if (st) {
            printf("gpu (%s per replicate): failed: %s\n", map, err.msg);
        } else {
            char what[64];
            snprintf(what, sizeof what, "gpu, one replicate per %s", map);
            summary(what, &g.J);
            size_t same = 0, k = C->count < m ? C->count : m;
            for (size_t i = 0; i < k; i++)
                same += fabs(g.J.crit[i] - C->crit[i]) <= 1e-6 * fabs(C->crit[i]);
            printf("gpu (%s per replicate): %.0f fits/s (x%.1f two CPU threads); %zu of %zu "
                   "criteria match the CPU's to 1e-6\n",
                   map, rg, rg / r2, same, k);
        }
    }
    job_free(&g);
    return st != MLMX_ERR_UNSUPPORTED;
}

int main(int argc, char **argv)
{
    const char *csv = argc > 1 ? argv[1] : "data/classroom.csv";
    const char *formula = argc > 2 ? argv[2] : "mathgain ~ mathkind + (1|schoolid/classid)";
    const size_t ncpu = argc > 3 ? (size_t)atol(argv[3]) : 2000;
    const size_t nws = argc > 4 ? (size_t)atol(argv[4]) : 200;
    const size_t ngpu = argc > 5 ? (size_t)atol(argv[5]) : 100000;
    machine();
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    mlmx_problem *P = NULL;
    if (mlmx_data_read_csv(csv, &d) || mlmx_model_create(d, formula, &m) ||
        mlmx_fit_lmm(m, NULL, &f) || mlmx_problem_create(f, &P)) {
        fprintf(stderr, "bench_lmm_nest: %s\n", mlmx_last_error());
        return 1;
    }
    mlmx_batch_engine *E = NULL;
    mlmx_error err;
    mlmx_err_clear(&err);
    if (mlmx_batch_engine_create(P, &E, &err) || strcmp(E->name, "lmm-nest") != 0) {
        fprintf(stderr, "bench_lmm_nest: not an lmm-nest model: %s\n", E ? E->name : err.msg);
        return 1;
    }
    const mlmx_nb_model *M = mlmx_nb_engine_model(E);
    printf("model: %s on %s (REML), n = %d, p = %d, %d factors, %d top clusters, %d theta\n",
           formula, csv, M->n, M->p, M->K, M->ntop, M->nt);
    job c;
    if (!job_alloc(&c, P, ncpu)) {
        fprintf(stderr, "bench_lmm_nest: out of memory\n");
        return 1;
    }
    if (!getenv("OPENBLAS_NUM_THREADS"))
        printf("note: OPENBLAS_NUM_THREADS is not set; the workspace rates on 2 threads suffer\n");
    rate r[2];
    for (int th = 1; th <= 2; th++) {
        const double t0 = now(), c0 = cpu_now();
        mlmx_batch_run_cpu(E, &c.J, th, &err);
        r[th - 1] = rate_of(ncpu, t0, c0);
    }
    summary("cpu engine", &c.J);
    const rate w[2] = {workspace_rate(P, nws, 1), workspace_rate(P, nws, 2)};
    for (int th = 1; th <= 2; th++)
        printf("cpu %d thread%s: engine %.0f fits/s, workspaces %.0f (x%.1f); per CPU second "
               "engine %.0f, workspaces %.0f (x%.1f)\n",
               th, th > 1 ? "s" : "", r[th - 1].wall, w[th - 1].wall,
               r[th - 1].wall / w[th - 1].wall, r[th - 1].cpu, w[th - 1].cpu,
               r[th - 1].cpu / w[th - 1].cpu);
    const double r2 = r[1].wall;
    if (!E->gpu_rows) {
        printf("gpu: skipped, built without CUDA\n");
    } else {
        if (gpu_rate(E, P, ngpu, MLMX_NB_MAP_WARP, &c.J, r2))
            gpu_rate(E, P, ngpu, MLMX_NB_MAP_THREAD, &c.J, r2);
    }
    job_free(&c);
    mlmx_batch_engine_free(E);
    mlmx_problem_free(P);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    return 0;
}
