/* Replicate fits per second of the glmm-1ri batch engine (GUIDE §7: binary
 * GLMM, one random intercept, 25-point AGQ, 100 clusters x 10 obs, one
 * covariate): CPU rows on 1 and 2 threads, and the device when there is
 * one. Data are simulated here (Philox, kernels/random.h): x ~ N(0,1),
 * eta = -0.5 + x + b_g, b_g ~ N(0,1), y ~ Bernoulli(plogis(eta)); the model
 * is fitted once (nAGQ = 25) and its estimates are the replicates' truth.
 * MODEL picks another model fitted to a data file instead: "wine"
 * (ordinal rating ~ temp + contact + (1|judge), data/wine.csv) or
 * "salamanders" (NB2 count ~ spp * mined + (1|site), data/salamanders.csv),
 * "cbpp" (binomial, data/cbpp.csv; "-probit" or "-cloglog" after "wine"
 * or "cbpp" picks that link) or "hdp" (binomial remission ~ IL6 + CRP +
 * LengthofStay + (1 + LengthofStay | HID), data/hdp.csv: the engine's
 * vector path, "glmm-vec", Laplace only, so NAGQ 1).
 *   usage: bench_glmm_batch [REPS_CPU [REPS_GPU [NAGQ [MODEL]]]]
 *          (2000 20000 25 binary); run from the source directory for MODEL */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "mlmx.h"
#include "random.h"
#include "replicate/batch.h"
#include "replicate/glmm_batch_engine.h"
#include "replicate/replicate.h"

#define NCLU 100
#define NPER 10

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
    char line[512];
    int ncpu = 0;
    char model[256] = "unknown";
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
}

static mlmx_data *simulate_data(void)
{
    const size_t n = (size_t)NCLU * NPER;
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    char **g = malloc(n * sizeof *g);
    mlmx_data *d = NULL;
    mlmx_rng r;
    mlmx_rng_init(&r, 12345u, 0, 0);
    for (int c = 0; c < NCLU && x && y && g; c++) {
        const double b = mlmx_rng_normal(&r);
        for (int k = 0; k < NPER; k++) {
            const size_t i = (size_t)c * NPER + (size_t)k;
            x[i] = mlmx_rng_normal(&r);
            const double eta = -0.5 + x[i] + b;
            y[i] = mlmx_rng_uniform(&r) < 1.0 / (1.0 + exp(-eta)) ? 1.0 : 0.0;
            g[i] = malloc(8);
            if (g[i])
                snprintf(g[i], 8, "c%03d", c);
        }
    }
    if (x && y && g && mlmx_data_create(n, &d) == MLMX_OK &&
        (mlmx_data_add_numeric(d, "y", y, NULL) || mlmx_data_add_numeric(d, "x", x, NULL) ||
         mlmx_data_add_strings(d, "g", (const char *const *)g))) {
        mlmx_data_free(d);
        d = NULL;
    }
    for (size_t i = 0; g && i < n; i++)
        free(g[i]);
    free(g);
    free(x);
    free(y);
    return d;
}

typedef struct outs {
    uint64_t *reps;
    double *th, *be, *se, *sg, *cr;
    int *nev;
    signed char *cv, *sn, *st;
} outs;

static int outs_alloc(outs *o, size_t m)
{
    o->reps = malloc(m * sizeof *o->reps);
    o->th = malloc(MLMX_GB_THMAX * m * sizeof(double));
    o->be = malloc(MLMX_GB_PMAX * m * sizeof(double));
    o->se = NULL;
    o->sg = malloc(m * sizeof(double));
    o->cr = malloc(m * sizeof(double));
    o->nev = malloc(m * sizeof(int));
    o->cv = malloc(m);
    o->sn = malloc(m);
    o->st = malloc(m);
    for (size_t i = 0; o->reps && i < m; i++)
        o->reps[i] = i;
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

typedef struct range {
    const mlmx_batch_engine *E;
    const mlmx_batch_job *J;
    size_t i0, i1;
} range;

static void *run_range(void *arg)
{
    range *r = arg;
    r->E->cpu_rows(r->E->impl, r->J, r->i0, r->i1);
    return NULL;
}

/* Fits per second of J on `threads` CPU threads (contiguous ranges). */
static double cpu_rate(const mlmx_batch_engine *E, const mlmx_batch_job *J, int threads)
{
    pthread_t tid[64];
    range rg[64];
    if (threads > 64)
        threads = 64;
    const double t0 = now();
    for (int t = 0; t < threads; t++) {
        rg[t] = (range){E, J, J->count * (size_t)t / (size_t)threads,
                        J->count * (size_t)(t + 1) / (size_t)threads};
        if (pthread_create(&tid[t], NULL, run_range, &rg[t]) != 0)
            run_range(&rg[t]), tid[t] = 0;
    }
    for (int t = 0; t < threads; t++)
        if (tid[t])
            pthread_join(tid[t], NULL);
    return (double)J->count / (now() - t0);
}

/* The same replicates refitted through a workspace (the engine's oracle). */
static double workspace_rate(const mlmx_problem *P, size_t m)
{
    mlmx_workspace *W = NULL;
    if (mlmx_workspace_create(P, &W))
        return NAN;
    const double t0 = now();
    for (size_t i = 0; i < m; i++)
        if (mlmx_workspace_simulate(W, 7u, i, NULL) || mlmx_workspace_fit(W, 0))
            break;
    const double r = (double)m / (now() - t0);
    mlmx_workspace_free(W);
    return r;
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

/* The model MODEL names: its data, formula and family. */
static mlmx_data *model_data(const char *model, const char **formula, mlmx_family *fam,
                             mlmx_link *link)
{
    mlmx_data *d = NULL;
    const char *csv = NULL;
    const char *dash = strchr(model, '-');
    const size_t len = dash ? (size_t)(dash - model) : strlen(model);
    *link = !dash                              ? MLMX_LINK_DEFAULT
            : strcmp(dash, "-probit") == 0     ? MLMX_LINK_PROBIT
                                               : MLMX_LINK_CLOGLOG;
    if (len == 4 && strncmp(model, "cbpp", 4) == 0) {
        csv = "data/cbpp.csv";
        *formula = "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)";
        *fam = MLMX_FAMILY_BINOMIAL;
    } else if (len == 4 && strncmp(model, "wine", 4) == 0) {
        csv = "data/wine.csv";
        *formula = "rating ~ temp + contact + (1 | judge)";
        *fam = MLMX_FAMILY_ORDINAL;
    } else if (strcmp(model, "hdp") == 0) {
        csv = "data/hdp.csv";
        *formula = "remission ~ IL6 + CRP + LengthofStay + (1 + LengthofStay | HID)";
        *fam = MLMX_FAMILY_BINOMIAL;
    } else if (strcmp(model, "salamanders") == 0) {
        csv = "data/salamanders.csv";
        *formula = "count ~ spp * mined + (1 | site)";
        *fam = MLMX_FAMILY_NEGBIN;
    } else {
        *formula = "y ~ x + (1 | g)";
        *fam = MLMX_FAMILY_BINOMIAL;
        return simulate_data();
    }
    return mlmx_data_read_csv(csv, &d) == MLMX_OK ? d : NULL;
}

int main(int argc, char **argv)
{
    const size_t ncpu = argc > 1 ? (size_t)atol(argv[1]) : 2000;
    const size_t ngpu = argc > 2 ? (size_t)atol(argv[2]) : 20000;
    const int nagq = argc > 3 ? atoi(argv[3]) : 25;
    const char *model = argc > 4 ? argv[4] : "binary";
    machine();
    const char *formula;
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    mlmx_data *d = model_data(model, &formula, &o.family, &o.link);
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    mlmx_problem *P = NULL;
    o.nagq = nagq;
    if (!d || mlmx_model_create(d, formula, &m) || mlmx_fit_glmm(m, &o, &f) ||
        mlmx_problem_create(f, &P)) {
        fprintf(stderr, "bench_glmm_batch: %s\n", mlmx_last_error());
        return 1;
    }
    mlmx_batch_engine E;
    mlmx_error err;
    mlmx_err_clear(&err);
    if (mlmx_gb_engine_init(P, &E, &err)) {
        fprintf(stderr, "bench_glmm_batch: %s\n", err.msg);
        return 1;
    }
    const mlmx_gb_shared *S = mlmx_gb_engine_shared(&E);
    if (strcmp(model, "binary") == 0)
        printf("model: binary y ~ x + (1|g), %d clusters x %d, nAGQ = %d; truth theta %.4f beta "
               "%.4f %.4f\n", NCLU, NPER, nagq, mlmx_fit_theta(f)[0], mlmx_fit_beta(f)[0],
               mlmx_fit_beta(f)[1]);
    else
        printf("model: %s %s, %d observations in %d clusters, %d optimizer parameters, nAGQ = "
               "%d; engine %s; truth theta[0] %.4f\n", model, formula, S->n, S->nclu, S->np,
               nagq, E.name, mlmx_fit_theta(f)[0]);
    outs oc, og;
    const size_t mmax = ncpu > ngpu ? ncpu : ngpu;
    double *extra = malloc(mmax * MLMX_GB_EMAX * sizeof *extra);
    if (!extra || !outs_alloc(&oc, mmax) || !outs_alloc(&og, mmax)) {
        fprintf(stderr, "bench_glmm_batch: out of memory\n");
        return 1;
    }
    if (E.set_extra_out)
        E.set_extra_out(E.impl, extra);
    mlmx_batch_job J = {7u, oc.reps, ncpu, oc.th, oc.be, NULL, oc.sg, oc.cr, oc.nev, oc.cv, oc.sn,
                        oc.st};
    const double r1 = cpu_rate(&E, &J, 1);
    summary("cpu", &oc, ncpu);
    const double r2 = cpu_rate(&E, &J, 2);
    const double rw = workspace_rate(P, ncpu / 10 > 0 ? ncpu / 10 : 1);
    printf("workspace refits (mlmx_workspace_simulate + fit, 1 thread): %.0f fits/s\n", rw);
    printf("cpu 1 thread: %.0f fits/s (x%.2f the workspace)\ncpu 2 threads: %.0f fits/s (x%.2f)\n",
           r1, r1 / rw, r2, r2 / r1);
    if (!E.gpu_rows) {
        printf("gpu: no device (built without CUDA)\n");
    } else {
        mlmx_batch_job G = {7u, og.reps, ngpu, og.th, og.be, NULL, og.sg, og.cr, og.nev, og.cv,
                            og.sn, og.st};
        G.count = 64; /* warm-up: context creation, module load */
        mlmx_status st = E.gpu_rows(E.impl, &G, &err);
        if (st == MLMX_ERR_UNSUPPORTED) {
            printf("gpu: no device (%s)\n", err.msg);
        } else if (st) {
            printf("gpu: failed: %s\n", err.msg);
        } else {
            G.count = ngpu;
            const double t0 = now();
            st = E.gpu_rows(E.impl, &G, &err);
            const double rg = (double)ngpu / (now() - t0);
            if (st) {
                printf("gpu: failed: %s\n", err.msg);
            } else {
                summary("gpu", &og, ngpu);
                size_t same = 0, k = ncpu < ngpu ? ncpu : ngpu;
                for (size_t i = 0; i < k; i++)
                    same += fabs(og.cr[i] - oc.cr[i]) <= 1e-6 * fabs(oc.cr[i]);
                printf("gpu: %.0f fits/s (x%.1f one CPU thread, x%.1f two); %zu of %zu criteria "
                       "match the CPU's to 1e-6\n",
                       rg, rg / r1, rg / r2, same, k);
            }
        }
    }
    outs_free(&oc);
    outs_free(&og);
    free(extra);
    E.free(E.impl);
    mlmx_problem_free(P);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    return 0;
}
