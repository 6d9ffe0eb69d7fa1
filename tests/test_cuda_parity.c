/* CUDA backend parity: the GPU's batched per-level factorization must
 * reproduce the CPU backend's (same inline math, kernels/cluster_math.h)
 * to 1e-12 relative. Skipped, never passed, in builds without CUDA or on
 * machines without a GPU. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmm/lmm.h"
#include "mlmx.h"
#ifdef MLMX_HAVE_CUDA
#include "cuda_entry.h"
#endif

Test(cuda_parity, cluster_chol_sleepstudy)
{
#ifndef MLMX_HAVE_CUDA
    cr_skip_test("built without CUDA (MLMX_CUDA=OFF or no toolkit)");
#else
    if (mlmx_cuda_device_count() == 0)
        cr_skip_test("no CUDA device on this machine");
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/sleepstudy.csv", &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, "Reaction ~ Days + (Days|Subject)", &m), MLMX_OK);
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_lmm_stats *s = NULL;
    mlmx_lmm_work *w = NULL;
    cr_assert_eq(mlmx_lmm_stats_build(m, &s, &e), MLMX_OK);
    cr_assert_eq(mlmx_lmm_work_alloc(s, &w, &e), MLMX_OK);
    const double theta[3] = {0.9, 0.05, 0.25};
    double crit;
    cr_assert_eq(mlmx_lmm_eval(s, mlmx_backend_cpu(), theta, 1, w, &crit, &e), MLMX_OK);
    int nb = s->nblk, q = s->q1;
    double *L = calloc((size_t)nb * q * q, sizeof *L), *ld = calloc((size_t)nb, sizeof *ld);
    char msg[256] = "";
    cr_assert_eq(mlmx_cuda_cluster_chol_host(nb, q, w->v.A11, w->tptr[0], L, ld, msg, sizeof msg),
                 MLMX_OK, "%s", msg);
    double sum = 0;
    for (int j = 0; j < nb; j++) {
        sum += ld[j];
        for (int k = 0; k < q * q; k++) {
            double a = L[(size_t)j * q * q + k], b = w->L11[(size_t)j * q * q + k];
            cr_expect(fabs(a - b) <= 1e-12 * (fabs(b) > 1 ? fabs(b) : 1), "L[%d][%d] %g vs %g", j,
                      k, a, b);
        }
    }
    cr_expect(isfinite(sum));
    free(L);
    free(ld);
    mlmx_lmm_work_free(w);
    mlmx_lmm_stats_free(s);
    mlmx_model_free(m);
    mlmx_data_free(d);
#endif
}
