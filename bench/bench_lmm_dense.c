/* Bootstrap replicate fits per second of the lmm-crossed batch engine
 * (kernels/lmm_dense_batch.h) against workspace refits of the same
 * replicates (mlmx_workspace_simulate + mlmx_workspace_fit, the path the
 * runner took for these models before), in the same run: CPU rows on 1
 * and 2 threads, and the device when there is one (otherwise a skip line).
 * The model is fitted once by REML; its estimates are the replicates'
 * truth (a parametric bootstrap, as mlmx boot runs it). Each CPU rate is
 * the best of three interleaved rounds (the machine may be shared); the
 * workspaces refit a quarter as many replicates. Set
 * OPENBLAS_NUM_THREADS=1 (the workspaces call LAPACK).
 *   usage: bench_lmm_dense [REPS_CPU [REPS_GPU [CASE]]]   (4000 100000 penicillin)
 *   CASE: penicillin  diameter ~ 1 + (1|plate) + (1|sample)
 *         pastes      strength ~ 1 + (1|batch/cask)
 *         sim_crossed score ~ time * grp + (1 + time|student) + (1|teacher)
 *         sc194       score ~ time + grp + (time||student) + (1|teacher)
 *         sc345       score ~ time * grp + (1 + time|student) + (1|teacher)
 *                             + (1|student:teacher)
 *         synth:L     y ~ x + (1|s) + (1|item), simulated in memory: 600
 *                     s levels with 10 observations each on items drawn
 *                     from L (a dense block of L + 3 columns)
 * Run from the source tree (reads data/<case>.csv). */
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
#include "replicate/lmm_dense_engine.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
            snprintf(model, sizeof model, "%s", c ? c + 2 : "unknown");
            model[strcspn(model, "\n")] = 0;
        }
    if (f)
        fclose(f);
    f = fopen("/proc/loadavg", "r");
    char load[64] = "?";
    if (f && fgets(load, sizeof load, f))
        load[strcspn(load, "\n")] = 0;
    if (f)
        fclose(f);
    printf("cpu: %s (%d logical); load average %s\n", model, ncpu, load);
}

typedef struct outs {
    uint64_t *reps;
    double *th, *be, *se, *sg, *cr;
    int *nev;
    signed char *cv, *sn, *st;
} outs;

static int outs_alloc(outs *o, size_t m, int nt, int p)
{
    o->reps = malloc(m * sizeof *o->reps);
    o->th = malloc(m * (size_t)nt * sizeof(double));
    o->be = malloc(m * (size_t)p * sizeof(double));
    o->se = malloc(m * (size_t)p * sizeof(double));
    o->sg = malloc(m * sizeof(double));
    o->cr = malloc(m * sizeof(double));
    o->nev = malloc(m * sizeof(int));
    o->cv = malloc(m);
    o->sn = malloc(m);
    o->st = malloc(m);
    for (size_t i = 0; o->reps && i < m; i++)
        o->reps[i] = i;
    return o->reps && o->th && o->be && o->se && o->sg && o->cr && o->nev && o->cv && o->sn &&
           o->st;
}

static void outs_free(outs *o)
{
    free(o->reps);
    free(o->th);
    free(o->be);
    free(o->se);
    free(o->sg);
    free(o->cr);
    free(o->nev);
    free(o->cv);
    free(o->sn);
    free(o->st);
}

static mlmx_batch_job job(const outs *o, size_t count)
{
    mlmx_batch_job J = {7u, o->reps, count, o->th, o->be, o->se, o->sg, o->cr, o->nev, o->cv,
                        o->sn, o->st};
    return J;
}

/* Fits per second of J on `threads` CPU threads. */
static double cpu_rate(const mlmx_batch_engine *E, const mlmx_batch_job *J, int threads)
{
    mlmx_error e;
    const double t0 = now();
    if (mlmx_batch_run_cpu(E, J, threads, &e))
        return NAN;
    return (double)J->count / (now() - t0);
}

/* The same replicates refitted through workspaces, one per thread. */
typedef struct wrange {
    const mlmx_problem *P;
    size_t i0, i1;
    int failed;
} wrange;

static void *ws_main(void *arg)
{
    wrange *w = arg;
    mlmx_workspace *W = NULL;
    w->failed = mlmx_workspace_create(w->P, &W) != MLMX_OK;
    for (size_t i = w->i0; i < w->i1 && !w->failed; i++)
        w->failed = mlmx_workspace_simulate(W, 7u, i, NULL) || mlmx_workspace_fit(W, 1);
    mlmx_workspace_free(W);
    return NULL;
}

static double workspace_rate(const mlmx_problem *P, size_t m, int threads)
{
    pthread_t tid[2];
    wrange w[2];
    threads = threads > 2 ? 2 : threads < 1 ? 1 : threads;
    const double t0 = now();
    for (int t = 0; t < threads; t++) {
        w[t] = (wrange){P, m * (size_t)t / (size_t)threads, m * (size_t)(t + 1) / (size_t)threads,
                        0};
        if (pthread_create(&tid[t], NULL, ws_main, &w[t]) != 0) {
            ws_main(&w[t]);
            tid[t] = 0;
        }
    }
    for (int t = 0; t < threads; t++)
        if (tid[t])
            pthread_join(tid[t], NULL);
    const double dt = now() - t0;
    for (int t = 0; t < threads; t++)
        if (w[t].failed)
            return NAN;
    return (double)m / dt;
}

static void summary(const char *what, const outs *o, size_t m)
{
    size_t ok = 0, conv = 0, sing = 0;
    double ev = 0.0;
    for (size_t i = 0; i < m; i++) {
        ok += o->st[i] == 1;
        conv += o->cv[i] == 1;
        sing += o->sn[i] == 1;
        ev += o->nev[i];
    }
    printf("%s: %zu fits, %zu done, %zu converged, %zu singular, %.1f evaluations/fit\n", what, m,
           ok, conv, sing, ev / (double)m);
}

/* The GPU's rate on ngpu replicates (after a warm-up), compared with the
 * CPU rows oc (ncpu of them, the same keys). */
static void gpu_run(mlmx_batch_engine *E, const outs *oc, size_t ncpu, const outs *og,
                    size_t ngpu, double r1, double r2)
{
    mlmx_error err;
    if (!E->gpu_rows) {
        printf("gpu: skipped (built without CUDA)\n");
        return;
    }
    char desc[256];
    if (mlmx_device_describe(desc, sizeof desc) != MLMX_OK) {
        printf("gpu: skipped (%s)\n", desc);
        return;
    }
    mlmx_batch_job G = job(og, 64); /* warm-up: context, module load */
    mlmx_status st = E->gpu_rows(E->impl, &G, &err);
    if (st) {
        printf("gpu: failed: %s\n", err.msg);
        return;
    }
    G.count = ngpu;
    const double t0 = now();
    st = E->gpu_rows(E->impl, &G, &err);
    const double rg = (double)ngpu / (now() - t0);
    if (st) {
        printf("gpu: failed: %s\n", err.msg);
        return;
    }
    summary("gpu", og, ngpu);
    size_t same = 0, k = ncpu < ngpu ? ncpu : ngpu;
    for (size_t i = 0; i < k; i++)
        same += fabs(og->cr[i] - oc->cr[i]) <= 1e-6 * fabs(oc->cr[i]);
    printf("gpu (%s): %.0f fits/s (x%.1f one CPU thread, x%.1f two); %zu of %zu criteria match "
           "the CPU's to 1e-6\n", desc, rg, rg / r1, rg / r2, same, k);
}

/* The synth:L design: y = 3 + 0.5 x + u_s + v_item + e (SDs 1, 0.7, 1),
 * x ~ N(0, 1), from a fixed xorshift stream. NULL when out of memory. */
static uint64_t g_rng = 88172645463325252u;

static double unif(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return ((double)(g_rng >> 11) + 0.5) / 9007199254740992.0;
}

static double gauss(void) { return sqrt(-2.0 * log(unif())) * cos(6.283185307179586 * unif()); }

static mlmx_data *synth(int L)
{
    enum { NS = 600, PER = 10, N = NS * PER };
    double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    double *v = malloc((size_t)L * sizeof *v);
    char *names = malloc((size_t)N * 2 * 16);
    const char **sp = malloc(N * sizeof *sp), **ip = malloc(N * sizeof *ip);
    mlmx_data *d = NULL;
    if (x && y && v && names && sp && ip) {
        for (int k = 0; k < L; k++)
            v[k] = 0.7 * gauss();
        for (int s = 0; s < NS; s++) {
            const double u = gauss();
            for (int r = 0; r < PER; r++) {
                const int i = s * PER + r, it = (int)(unif() * L) % L;
                x[i] = gauss();
                y[i] = 3.0 + 0.5 * x[i] + u + v[it] + gauss();
                snprintf(names + (size_t)i * 32, 16, "s%d", s);
                snprintf(names + (size_t)i * 32 + 16, 16, "i%d", it);
                sp[i] = names + (size_t)i * 32;
                ip[i] = names + (size_t)i * 32 + 16;
            }
        }
        if (mlmx_data_create(N, &d) || mlmx_data_add_numeric(d, "y", y, NULL) ||
            mlmx_data_add_numeric(d, "x", x, NULL) || mlmx_data_add_strings(d, "s", sp) ||
            mlmx_data_add_strings(d, "item", ip)) {
            mlmx_data_free(d);
            d = NULL;
        }
    }
    free(x);
    free(y);
    free(v);
    free(names);
    free(sp);
    free(ip);
    return d;
}

int main(int argc, char **argv)
{
    const size_t ncpu = argc > 1 ? (size_t)atol(argv[1]) : 4000;
    const size_t ngpu = argc > 2 ? (size_t)atol(argv[2]) : 100000;
    const char *cs = argc > 3 ? argv[3] : "penicillin";
    static const char *const cases[][3] = {
        {"penicillin", "data/penicillin.csv", "diameter ~ 1 + (1|plate) + (1|sample)"},
        {"pastes", "data/pastes.csv", "strength ~ 1 + (1|batch/cask)"},
        {"sim_crossed", "data/sim_crossed.csv",
         "score ~ time * grp + (1 + time|student) + (1|teacher)"},
        {"sc194", "data/sim_crossed.csv", "score ~ time + grp + (time||student) + (1|teacher)"},
        {"sc345", "data/sim_crossed.csv",
         "score ~ time * grp + (1 + time|student) + (1|teacher) + (1|student:teacher)"},
    };
    const char *csv = NULL, *formula = NULL;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        if (strcmp(cs, cases[k][0]) == 0) {
            csv = cases[k][1];
            formula = cases[k][2];
        }
    if (!formula && strncmp(cs, "synth:", 6) == 0 && atoi(cs + 6) >= 2 && atoi(cs + 6) <= 600)
        formula = "y ~ x + (1|s) + (1|item)";
    if (!formula) {
        fprintf(stderr, "bench_lmm_dense: unknown case '%s'\n", cs);
        return 2;
    }
    machine();
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    mlmx_problem *P = NULL;
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    if (!csv && !(d = synth(atoi(cs + 6)))) {
        fprintf(stderr, "bench_lmm_dense: out of memory\n");
        return 1;
    }
    if ((csv && mlmx_data_read_csv(csv, &d)) || mlmx_model_create(d, formula, &m) ||
        mlmx_fit_lmm(m, &o, &f) || mlmx_problem_create(f, &P)) {
        fprintf(stderr, "bench_lmm_dense: %s (run from the source tree)\n", mlmx_last_error());
        return 1;
    }
    /* the engine itself (the registry gives nested models to lmm-nest) */
    mlmx_batch_engine *E = calloc(1, sizeof *E);
    mlmx_error err;
    mlmx_err_clear(&err);
    if (!E || mlmx_ld_engine_init(P, E, &err)) {
        fprintf(stderr, "bench_lmm_dense: no lmm-crossed engine: %s\n", err.msg);
        return 1;
    }
    const mlmx_ld_model *M = mlmx_ld_engine_model(E);
    printf("model: %s, REML, n = %d, %d first-term levels, dense block %d columns, %d theta\n",
           formula, M->n, M->nblk, M->m, M->nt);
    outs oc, og;
    if (!outs_alloc(&oc, ncpu, M->nt, M->p) ||
        !outs_alloc(&og, ngpu > 64 ? ngpu : 64, M->nt, M->p)) {
        fprintf(stderr, "bench_lmm_dense: out of memory\n");
        return 1;
    }
    const char *ob = getenv("OPENBLAS_NUM_THREADS");
    if (!ob || strcmp(ob, "1") != 0)
        printf("note: OPENBLAS_NUM_THREADS is not 1: the workspaces' LAPACK calls may start "
               "threads of their own (bench/run_boot.sh sets it)\n");
    /* the best of three interleaved rounds: the machine may be shared */
    mlmx_batch_job J = job(&oc, ncpu);
    const size_t nw = ncpu / 4 > 0 ? ncpu / 4 : 1;
    double r1 = 0, r2 = 0, w1 = 0, w2 = 0;
    for (int round = 0; round < 3; round++) {
        r1 = fmax(r1, cpu_rate(E, &J, 1));
        r2 = fmax(r2, cpu_rate(E, &J, 2));
        w1 = fmax(w1, workspace_rate(P, nw, 1));
        w2 = fmax(w2, workspace_rate(P, nw, 2));
    }
    summary("cpu", &oc, ncpu);
    printf("best of 3 rounds:\n");
    printf("engine    cpu 1 thread: %8.0f fits/s   2 threads: %8.0f fits/s  (%zu replicates)\n",
           r1, r2, ncpu);
    printf("workspace cpu 1 thread: %8.0f fits/s   2 threads: %8.0f fits/s  (%zu replicates)\n",
           w1, w2, nw);
    printf("engine / workspace: x%.2f (1 thread), x%.2f (2 threads)\n", r1 / w1, r2 / w2);
    gpu_run(E, &oc, ncpu, &og, ngpu, r1, r2);
    outs_free(&oc);
    outs_free(&og);
    mlmx_batch_engine_free(E);
    mlmx_problem_free(P);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    return 0;
}
