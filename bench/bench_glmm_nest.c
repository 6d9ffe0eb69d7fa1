/* The glmm-nest batch engine on the hdp model of GUIDE §7: 8525 patients,
 * 407 doctors in 35 hospitals, remission ~ IL6 + CRP + LengthofStay +
 * (1|HID/DID), nested adaptive quadrature with 25 x 25 points. Prints, in
 * one run:
 *   - the single fit (mlmx_fit_glmm, the problem's estimates);
 *   - one replicate refit by the engine on one CPU thread, and by a
 *     workspace (mlmx_workspace_simulate + mlmx_workspace_fit);
 *   - bootstrap rates: the engine's CPU rows on 1 and 2 threads and the
 *     workspaces on 1 thread, over the same replicates, and how many
 *     criteria agree to 1e-8;
 *   - on a device: one replicate (latency) and REPS_GPU replicates;
 *     "gpu: skipped" otherwise.
 *   usage: bench_glmm_nest [REPS_CPU [REPS_GPU [NAGQ [CSV [FORMULA [FAMILY]]]]]]
 *          (defaults 20 1000 25 data/hdp.csv, the formula above, binomial;
 *          FAMILY poisson for a Poisson model; MLMX_BENCH_LINK=probit or
 *          cloglog: that binomial link). The engine is the one the
 *          registry picks, so other GLMM engines (glmm-crossed) run too.
 * SEs are not computed (as mlmx boot without --se). */
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
#include "replicate/replicate.h"

#define SEED 7u

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
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            ncpu++;
            char *c = strchr(line, ':');
            if (c && ncpu == 1) {
                snprintf(model, sizeof model, "%s", c + 2);
                model[strcspn(model, "\n")] = 0;
            }
        }
    }
    if (f)
        fclose(f);
    printf("cpu: %s (%d logical)\n", model, ncpu);
    f = fopen("/proc/loadavg", "r");
    if (f && fgets(line, sizeof line, f))
        printf("load average at start: %s", line);
    if (f)
        fclose(f);
}

typedef struct outs {
    uint64_t *reps;
    double *th, *be, *sg, *cr;
    int *nev;
    signed char *cv, *sn, *st;
    mlmx_batch_job J;
} outs;

static int outs_alloc(outs *o, size_t m, int nt, int p)
{
    memset(o, 0, sizeof *o);
    o->reps = malloc(m * sizeof *o->reps);
    o->th = malloc((size_t)nt * m * sizeof(double));
    o->be = malloc(m * (size_t)p * sizeof(double));
    o->sg = malloc(m * sizeof(double));
    o->cr = malloc(m * sizeof(double));
    o->nev = malloc(m * sizeof(int));
    o->cv = malloc(m);
    o->sn = malloc(m);
    o->st = malloc(m);
    for (size_t i = 0; o->reps && i < m; i++)
        o->reps[i] = i;
    mlmx_batch_job J = {SEED, o->reps, m, o->th, o->be, NULL, o->sg, o->cr, o->nev, o->cv, o->sn,
                        o->st};
    o->J = J;
    return o->reps && o->th && o->be && o->sg && o->cr && o->nev && o->cv && o->sn && o->st;
}

static void outs_free(outs *o)
{
    free(o->reps);
    free(o->th);
    free(o->be);
    free(o->sg);
    free(o->cr);
    free(o->nev);
    free(o->cv);
    free(o->sn);
    free(o->st);
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

/* Workspace refits of replicates 0..m-1 on one thread; criteria into crit. */
static double workspace_rate(const mlmx_problem *P, size_t m, double *crit)
{
    mlmx_workspace *W = NULL;
    if (mlmx_workspace_create(P, &W))
        return NAN;
    const double t0 = now();
    for (size_t i = 0; i < m; i++) {
        crit[i] = NAN;
        if (mlmx_workspace_simulate(W, SEED, i, NULL) || mlmx_workspace_fit(W, 0))
            continue;
        crit[i] = mlmx_workspace_criterion(W);
    }
    const double r = (double)m / (now() - t0);
    mlmx_workspace_free(W);
    return r;
}

static double cpu_rate(const mlmx_batch_engine *E, mlmx_batch_job *J, size_t m, int threads)
{
    mlmx_error err;
    mlmx_err_clear(&err);
    J->count = m;
    const double t0 = now();
    if (mlmx_batch_run_cpu(E, J, threads, &err)) {
        printf("cpu: failed: %s\n", err.msg);
        return NAN;
    }
    return (double)m / (now() - t0);
}

static void gpu_part(mlmx_batch_engine *E, outs *og, size_t ngpu, const outs *oc, size_t ncpu,
                     double r2)
{
    mlmx_error err;
    mlmx_err_clear(&err);
    if (!E->gpu_rows) {
        printf("gpu: skipped (built without CUDA)\n");
        return;
    }
    og->J.count = 1; /* context creation, module load, then one replicate's latency */
    mlmx_status st = E->gpu_rows(E->impl, &og->J, &err);
    if (st == MLMX_ERR_UNSUPPORTED) {
        printf("gpu: skipped (%s)\n", err.msg);
        return;
    }
    double t0 = now();
    st = st ? st : E->gpu_rows(E->impl, &og->J, &err);
    const double t1 = now() - t0;
    if (st) {
        printf("gpu: failed: %s\n", err.msg);
        return;
    }
    printf("gpu: one replicate refit: %.3f s (%d evaluations)\n", t1, og->nev[0]);
    og->J.count = ngpu;
    t0 = now();
    st = E->gpu_rows(E->impl, &og->J, &err);
    const double tg = now() - t0;
    if (st) {
        printf("gpu: failed: %s\n", err.msg);
        return;
    }
    summary("gpu", og, ngpu);
    size_t same = 0, k = ncpu < ngpu ? ncpu : ngpu;
    for (size_t i = 0; i < k; i++)
        same += fabs(og->cr[i] - oc->cr[i]) <= 1e-6 * fabs(oc->cr[i]);
    printf("gpu: %zu replicates in %.2f s: %.1f fits/s (x%.1f two CPU threads); %zu of %zu "
           "criteria match the CPU's to 1e-6\n",
           ngpu, tg, (double)ngpu / tg, (double)ngpu / tg / r2, same, k);
}

int main(int argc, char **argv)
{
    const size_t ncpu = argc > 1 ? (size_t)atol(argv[1]) : 20;
    const size_t ngpu = argc > 2 ? (size_t)atol(argv[2]) : 1000;
    const int nagq = argc > 3 ? atoi(argv[3]) : 25;
    const char *csv = argc > 4 ? argv[4] : "data/hdp.csv";
    const char *formula =
        argc > 5 ? argv[5] : "remission ~ IL6 + CRP + LengthofStay + (1|HID/DID)";
    if (ncpu < 1 || ngpu < 1 || nagq < 1) {
        fprintf(stderr, "usage: bench_glmm_nest [REPS_CPU [REPS_GPU [NAGQ [CSV [FORMULA]]]]]\n");
        return 2;
    }
    machine();
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    mlmx_problem *P = NULL;
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = argc > 6 && strcmp(argv[6], "poisson") == 0 ? MLMX_FAMILY_POISSON
                                                            : MLMX_FAMILY_BINOMIAL;
    o.nagq = nagq;
    /* MLMX_BENCH_LINK=probit or cloglog: the binomial link (Laplace) */
    const char *lk = getenv("MLMX_BENCH_LINK");
    if (lk)
        o.link = strcmp(lk, "probit") == 0 ? MLMX_LINK_PROBIT : MLMX_LINK_CLOGLOG;
    if (mlmx_data_read_csv(csv, &d) || mlmx_model_create(d, formula, &m)) {
        fprintf(stderr, "bench_glmm_nest: %s\n", mlmx_last_error());
        return 1;
    }
    double t0 = now();
    if (mlmx_fit_glmm(m, &o, &f) || mlmx_problem_create(f, &P)) {
        fprintf(stderr, "bench_glmm_nest: %s\n", mlmx_last_error());
        return 1;
    }
    printf("model: %s (%s), nAGQ = %d; single fit + problem: %.3f s; theta[0] %.4f\n", formula,
           csv, nagq, now() - t0, mlmx_fit_theta(f)[0]);
    mlmx_batch_engine *E = NULL;
    mlmx_error err;
    mlmx_err_clear(&err);
    if (mlmx_batch_engine_create(P, &E, &err)) {
        fprintf(stderr, "bench_glmm_nest: %s\n", err.msg);
        return 1;
    }
    printf("engine: %s; device bytes %.1f MiB fixed + %.2f MiB a replicate\n", E->name,
           (double)E->gpu_fixed_bytes / 1048576.0, (double)E->gpu_rep_bytes / 1048576.0);
    outs oc, og;
    double *wcrit = malloc(ncpu * sizeof *wcrit);
    if (!wcrit || !outs_alloc(&oc, ncpu, P->ntheta, mlmx_model_nfixef(m)) ||
        !outs_alloc(&og, ngpu, P->ntheta, mlmx_model_nfixef(m))) {
        fprintf(stderr, "bench_glmm_nest: out of memory\n");
        return 1;
    }
    const double r1 = cpu_rate(E, &oc.J, 1, 1);
    printf("cpu: one replicate refit, 1 thread: %.3f s (%d evaluations)\n", 1.0 / r1, oc.nev[0]);
    const double rw = workspace_rate(P, ncpu, wcrit);
    const double re1 = cpu_rate(E, &oc.J, ncpu, 1);
    const double re2 = cpu_rate(E, &oc.J, ncpu, 2);
    summary("cpu", &oc, ncpu);
    size_t same = 0;
    for (size_t i = 0; i < ncpu; i++)
        same += fabs(oc.cr[i] - wcrit[i]) <= 1e-8 * fabs(wcrit[i]);
    printf("bootstrap of %zu replicates: workspaces 1 thread %.2f fits/s (%.3f s each); engine 1 "
           "thread %.2f fits/s (x%.2f), 2 threads %.2f fits/s (x%.2f); %zu of %zu criteria agree "
           "with the workspaces' to 1e-8\n",
           ncpu, rw, 1.0 / rw, re1, re1 / rw, re2, re2 / rw, same, ncpu);
    gpu_part(E, &og, ngpu, &oc, ncpu, re2);
    free(wcrit);
    outs_free(&oc);
    outs_free(&og);
    mlmx_batch_engine_free(E);
    mlmx_problem_free(P);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    return 0;
}
