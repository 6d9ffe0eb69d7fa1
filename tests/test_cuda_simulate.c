/* Simulation on the GPU (mlmx_simulate_run, device gpu: a batch engine's
 * simulation kernel) against the CPU workspace's draws of the same keys:
 * issue 8's parity of simulated responses, to 1e-12 relative (the GPU may
 * contract multiply-adds and round exp/log differently in the last bit:
 * docs/gpu.md). Skipped, never passed, without a device. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mlmx.h"

Test(cuda_simulate, lmm_responses_match_the_cpu)
{
    char why[512];
    if (mlmx_device_describe(why, sizeof why) != MLMX_OK)
        cr_skip_test("no usable CUDA device: %s", why);
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/sleepstudy.csv", &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, "Reaction ~ Days + (Days | Subject)", &m), MLMX_OK);
    cr_assert_eq(mlmx_fit_lmm(m, NULL, &f), MLMX_OK, "%s", mlmx_last_error());
    char path[] = "/tmp/mlmx-cuda-sim-XXXXXX.csv";
    int fd = mkstemps(path, 4);
    cr_assert(fd >= 0);
    close(fd);
    const uint64_t nsim = 2000;
    const size_t n = 180;
    mlmx_simulate_options o;
    mlmx_simulate_options_default(&o);
    o.nsim = nsim;
    o.seed = 11;
    o.device = MLMX_DEVICE_GPU;
    o.out_path = path;
    mlmx_simulate *s = NULL;
    cr_assert_eq(mlmx_simulate_run(f, &o, &s), MLMX_OK, "%s", mlmx_last_error());
    cr_expect(strncmp(mlmx_simulate_device(s), "gpu: ", 5) == 0, "%s", mlmx_simulate_device(s));
    mlmx_simulate_free(s);
    double *all = malloc(nsim * n * sizeof *all);
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp);
    char *line = NULL;
    size_t cap = 0;
    cr_assert(getline(&line, &cap, fp) > 0);
    for (size_t i = 0; i < n; i++) {
        cr_assert(getline(&line, &cap, fp) > 0);
        char *p = strchr(line, ','), *end;
        for (uint64_t r = 0; r < nsim; r++, p = end)
            all[r * n + i] = strtod(p + 1, &end);
    }
    free(line);
    fclose(fp);
    remove(path);
    mlmx_problem *P = NULL;
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_problem_create(f, &P), MLMX_OK);
    cr_assert_eq(mlmx_workspace_create(P, &W), MLMX_OK);
    double *y = malloc(n * sizeof *y), worst = 0.0;
    for (uint64_t r = 0; r < nsim; r++) {
        cr_assert_eq(mlmx_workspace_simulate(W, 11, r, y), MLMX_OK);
        for (size_t i = 0; i < n; i++) {
            double rel = fabs(all[r * n + i] - y[i]) / fmax(fabs(y[i]), 1e-300);
            worst = fmax(worst, rel);
        }
    }
    cr_expect(worst <= 1e-12, "worst relative difference %.3g", worst);
    cr_log_info("GPU against CPU simulated responses: worst relative difference %.3g", worst);
    free(y);
    free(all);
    mlmx_workspace_free(W);
    mlmx_problem_free(P);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}
