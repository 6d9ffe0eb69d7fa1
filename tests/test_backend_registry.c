/* The backend registry (host/backend/registry.c), on any machine: "cpu" is
 * always there with every slot filled, unknown names give NULL with a
 * reason, and "cuda" is offered exactly when its reason is NULL; in builds
 * without CUDA, or without a device or driver, it gives NULL and says why. */
#include <criterion/criterion.h>
#include <string.h>

#include "backend/backend.h"

static void expect_all_slots(const mlmx_backend *be)
{
    cr_assert_not_null(be);
    cr_expect_not_null(be->name);
    cr_expect_not_null(be->cluster_factor);
    cr_expect_not_null(be->schur_downdate);
    cr_expect_not_null(be->stage_chol);
    cr_expect_not_null(be->dense_chol);
}

Test(backend_registry, cpu_always_present)
{
    const mlmx_backend *be = mlmx_backend_get("cpu");
    expect_all_slots(be);
    cr_expect_str_eq(be->name, "cpu");
    cr_expect_eq(be, mlmx_backend_cpu());
    cr_expect_eq(mlmx_backend_get(NULL), be, "NULL means the default, cpu");
    cr_expect_eq(mlmx_backend_get(""), be, "\"\" means the default, cpu");
    cr_expect_null(mlmx_backend_unavailable_reason("cpu"));
    cr_expect_null(mlmx_backend_unavailable_reason(NULL));
}

Test(backend_registry, unknown_names)
{
    const char *names[] = {"gpu", "CPU", "cuda ", "opencl", "cpux"};
    for (int i = 0; i < 5; i++) {
        cr_expect_null(mlmx_backend_get(names[i]), "'%s' must not resolve", names[i]);
        const char *why = mlmx_backend_unavailable_reason(names[i]);
        cr_assert_not_null(why);
        cr_expect(strstr(why, "unknown backend") != NULL, "reason for '%s': %s", names[i], why);
        cr_expect(strstr(why, names[i]) != NULL, "the reason names '%s': %s", names[i], why);
    }
}

Test(backend_registry, names_listed)
{
    int n = mlmx_backend_count(), cpu = 0, cuda = 0;
    cr_assert_geq(n, 2);
    for (int i = 0; i < n; i++) {
        cr_assert_not_null(mlmx_backend_name(i));
        cpu += strcmp(mlmx_backend_name(i), "cpu") == 0;
        cuda += strcmp(mlmx_backend_name(i), "cuda") == 0;
    }
    cr_expect_eq(cpu, 1);
    cr_expect_eq(cuda, 1);
    cr_expect_null(mlmx_backend_name(-1));
    cr_expect_null(mlmx_backend_name(n));
}

/* "cuda" resolves exactly when no reason is given; a resolved one fills
 * every slot. Here (no GPU, or a CPU-only build) it must be NULL with a
 * reason that says which. */
Test(backend_registry, cuda_offered_only_when_usable)
{
    const mlmx_backend *be = mlmx_backend_get("cuda");
    const char *why = mlmx_backend_unavailable_reason("cuda");
    if (be) {
        cr_expect_null(why);
        expect_all_slots(be);
        cr_expect_str_eq(be->name, "cuda");
        return;
    }
    cr_assert_not_null(why, "cuda is unavailable, so there must be a reason");
    cr_log_info("cuda unavailable: %s", why);
#ifndef MLMX_HAVE_CUDA
    cr_expect(strstr(why, "built without CUDA") != NULL, "%s", why);
#else
    cr_expect(strstr(why, "no CUDA device") || strstr(why, "no CUDA driver") ||
                  strstr(why, "driver too old"),
              "%s", why);
#endif
}

/* The single fit's device choice (mlmx_backend_for_device). */
Test(backend_registry, device_choice_for_fits)
{
    const mlmx_backend *be = NULL;
    char where[256], note[320];
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_backend_for_device(MLMX_DEVICE_CPU, NULL, 5000, &be, where, sizeof where,
                                         note, sizeof note, &e),
                 MLMX_OK);
    cr_expect_eq(be, mlmx_backend_cpu());
    cr_expect_str_eq(where, "cpu");
    cr_expect_str_eq(note, "");
    /* a named backend that does not exist is an argument error */
    cr_expect_eq(mlmx_backend_for_device(MLMX_DEVICE_CPU, "tpu", 0, &be, where, sizeof where,
                                         note, sizeof note, &e),
                 MLMX_ERR_ARG);
    cr_expect(strstr(e.msg, "tpu") != NULL, "%s", e.msg);
    /* gpu with another backend named is a contradiction */
    cr_expect_eq(mlmx_backend_for_device(MLMX_DEVICE_GPU, "cpu", 0, &be, where, sizeof where,
                                         note, sizeof note, &e),
                 MLMX_ERR_ARG);
    cr_expect(strstr(e.msg, "cuda") != NULL, "%s", e.msg);
    cr_expect_eq(mlmx_backend_for_device((mlmx_device)9, NULL, 0, &be, where, sizeof where, note,
                                         sizeof note, &e),
                 MLMX_ERR_ARG);
    const char *why = mlmx_backend_unavailable_reason("cuda");
    mlmx_status st = mlmx_backend_for_device(MLMX_DEVICE_GPU, NULL, 0, &be, where, sizeof where,
                                             note, sizeof note, &e);
    if (why) {
        cr_expect_eq(st, MLMX_ERR_UNSUPPORTED);
        cr_expect(strstr(e.msg, "--device gpu: ") != NULL && strstr(e.msg, why) != NULL, "%s",
                  e.msg);
        /* auto falls back with the reason, whatever the size */
        cr_assert_eq(mlmx_backend_for_device(MLMX_DEVICE_AUTO, NULL, 5000, &be, where,
                                             sizeof where, note, sizeof note, &e),
                     MLMX_OK);
        cr_expect_eq(be, mlmx_backend_cpu());
        cr_expect_str_eq(where, "cpu");
        cr_expect(strstr(note, why) != NULL, "%s", note);
    } else {
        cr_expect_eq(st, MLMX_OK);
        cr_expect_str_eq(be->name, "cuda");
        cr_expect(strncmp(where, "gpu: ", 5) == 0, "%s", where);
        /* auto: the GPU from MLMX_DEVICE_DENSE_MIN dense columns */
        cr_assert_eq(mlmx_backend_for_device(MLMX_DEVICE_AUTO, NULL, MLMX_DEVICE_DENSE_MIN, &be,
                                             where, sizeof where, note, sizeof note, &e),
                     MLMX_OK);
        cr_expect_str_eq(be->name, "cuda");
        cr_assert_eq(mlmx_backend_for_device(MLMX_DEVICE_AUTO, NULL, MLMX_DEVICE_DENSE_MIN - 1,
                                             &be, where, sizeof where, note, sizeof note, &e),
                     MLMX_OK);
        cr_expect_eq(be, mlmx_backend_cpu());
        cr_expect(strstr(note, "crossed dense block") != NULL, "%s", note);
    }
    /* auto for a GLMM (no dense size) stays on the CPU and says why */
    cr_assert_eq(mlmx_backend_for_device(MLMX_DEVICE_AUTO, NULL, -1, &be, where, sizeof where,
                                         note, sizeof note, &e),
                 MLMX_OK);
    cr_expect_eq(be, mlmx_backend_cpu());
    cr_expect(strstr(note, "device auto: running on the CPU: ") != NULL, "%s", note);
}
