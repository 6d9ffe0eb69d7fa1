/* How much a lockstep batch would idle: every replicate of a warp steps
 * together, so a warp runs as many criterion evaluations as its slowest
 * replicate. From the evaluation counts of N replicate refits (the CPU
 * batch engine, which runs the GPU's arithmetic), this prints the mean
 * count, the mean over groups of W consecutive replicates of the group's
 * largest count, and their ratio: the share of a one-replicate-per-thread
 * warp's work that is useful (1 = no idling). docs/gpu.md explains why the
 * engines keep each replicate's optimizer loop inside one launch.
 *   usage: bench_lockstep [N]   (default 32768; run from the repository
 *   root, or set MLMX_DATA_DIR to the data directory) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlmx.h"
#include "replicate/batch.h"
#include "replicate/replicate.h"

static int report(const char *label, const char *file, const char *formula, mlmx_family fam,
                  int nagq, size_t N)
{
    char path[512];
    const char *dir = getenv("MLMX_DATA_DIR");
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "data", file);
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    mlmx_problem *P = NULL;
    mlmx_batch_engine *E = NULL;
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.family = fam;
    o.nagq = nagq;
    mlmx_error e;
    mlmx_err_clear(&e);
    if (mlmx_data_read_csv(path, &d) || mlmx_model_create(d, formula, &m) ||
        (fam == MLMX_FAMILY_GAUSSIAN ? mlmx_fit_lmm(m, &o, &f) : mlmx_fit_glmm(m, &o, &f)) ||
        mlmx_problem_create(f, &P) || mlmx_batch_engine_create(P, &E, &e)) {
        fprintf(stderr, "%s: %s %s\n", label, mlmx_last_error(), e.msg);
        return 1;
    }
    const size_t nt = (size_t)P->ntheta, p = (size_t)P->p;
    uint64_t *reps = malloc(N * sizeof *reps);
    double *buf = malloc(N * (nt + 2 * p + 2) * sizeof *buf);
    int *nev = malloc(N * sizeof *nev);
    signed char *flags = malloc(3 * N);
    for (size_t i = 0; i < N; i++)
        reps[i] = i;
    mlmx_batch_job J = {1, reps, N, buf, buf + N * nt, NULL, buf + N * (nt + p),
                        buf + N * (nt + p + 1), nev, flags, flags + N, flags + 2 * N};
    if (mlmx_batch_run_cpu(E, &J, 2, &e) != MLMX_OK) {
        fprintf(stderr, "%s: %s\n", label, e.msg);
        return 1;
    }
    double mean = 0.0;
    for (size_t i = 0; i < N; i++)
        mean += nev[i];
    mean /= (double)N;
    printf("%-34s %-10s %7.1f", label, E->name, mean);
    const int widths[] = {32, 128};
    for (int k = 0; k < 2; k++) {
        const size_t W = (size_t)widths[k];
        double gmax = 0.0;
        size_t ng = 0;
        for (size_t g0 = 0; g0 + W <= N; g0 += W, ng++) {
            int mx = 0;
            for (size_t i = g0; i < g0 + W; i++)
                mx = nev[i] > mx ? nev[i] : mx;
            gmax += mx;
        }
        gmax /= (double)(ng ? ng : 1);
        printf("  %7.1f %5.2f", gmax, mean / gmax);
    }
    printf("\n");
    free(reps);
    free(buf);
    free(nev);
    free(flags);
    mlmx_batch_engine_free(E);
    mlmx_problem_free(P);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    return 0;
}

int main(int argc, char **argv)
{
    const size_t N = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 32768;
    printf("criterion evaluations per replicate refit, %zu replicates (CPU batch engine)\n", N);
    printf("%-34s %-10s %7s  %7s %5s  %7s %5s\n", "model", "engine", "mean", "max/32", "eff",
           "max/128", "eff");
    int rc = 0;
    rc |= report("sleepstudy (Days|Subject) REML", "sleepstudy.csv",
                 "Reaction ~ Days + (Days | Subject)", MLMX_FAMILY_GAUSSIAN, 1, N);
    rc |= report("dyestuff (1|Batch) REML", "dyestuff.csv", "Yield ~ 1 + (1 | Batch)",
                 MLMX_FAMILY_GAUSSIAN, 1, N);
    rc |= report("cbpp Laplace", "cbpp.csv",
                 "cbind(incidence, size - incidence) ~ period + (1 | herd)", MLMX_FAMILY_BINOMIAL,
                 1, N / 4);
    rc |= report("cbpp AGQ 25", "cbpp.csv",
                 "cbind(incidence, size - incidence) ~ period + (1 | herd)", MLMX_FAMILY_BINOMIAL,
                 25, N / 4);
    printf("eff = mean / (mean of the group maximum): the useful share of a warp (32) or of a\n"
           "128-replicate block stepping in lockstep\n");
    return rc;
}
