/* Shared by the public entry points: record an internal error as the
 * thread's last error and return its code. */
#ifndef MLMX_API_INTERNAL_H
#define MLMX_API_INTERNAL_H
#include "util/error.h"

mlmx_status mlmx_api_fail(const mlmx_error *e);
/* Convenience: set and record a message directly. */
mlmx_status mlmx_api_failf(mlmx_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* MLMX_ERR_UNSUPPORTED, recorded, when model m has a structured
 * random-effect covariance (cs, ar1, toep) and `feature` cannot use one
 * yet; MLMX_OK otherwise. m is a const mlmx_model *. */
struct mlmx_model;
mlmx_status mlmx_api_require_unstructured(const struct mlmx_model *m, const char *feature);
/* Clear the thread's last error (called on entry to API functions). */
void mlmx_api_clear(void);
#endif
