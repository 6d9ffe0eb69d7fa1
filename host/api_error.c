#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <cblas.h>

#include "api_internal.h"
#include "model/model.h"

static _Thread_local char last_error[MLMX_ERRMSG_MAX];

const char *mlmx_last_error(void) { return last_error; }

const char *mlmx_version(void) { return MLMX_VERSION_STRING; }

void mlmx_set_blas_threads(int n) { openblas_set_num_threads(n >= 1 ? n : 1); }

const char *mlmx_status_name(mlmx_status s)
{
    switch (s) {
    case MLMX_OK: return "MLMX_OK";
    case MLMX_ERR_IO: return "MLMX_ERR_IO";
    case MLMX_ERR_PARSE: return "MLMX_ERR_PARSE";
    case MLMX_ERR_FORMULA: return "MLMX_ERR_FORMULA";
    case MLMX_ERR_DATA: return "MLMX_ERR_DATA";
    case MLMX_ERR_MODEL: return "MLMX_ERR_MODEL";
    case MLMX_ERR_NUMERIC: return "MLMX_ERR_NUMERIC";
    case MLMX_ERR_NOMEM: return "MLMX_ERR_NOMEM";
    case MLMX_ERR_ARG: return "MLMX_ERR_ARG";
    case MLMX_ERR_UNSUPPORTED: return "MLMX_ERR_UNSUPPORTED";
    }
    return "MLMX_ERR_UNKNOWN";
}

void mlmx_api_clear(void) { last_error[0] = '\0'; }

mlmx_status mlmx_api_fail(const mlmx_error *e)
{
    if (!e || e->code == MLMX_OK)
        return MLMX_OK;
    snprintf(last_error, sizeof last_error, "%s", e->msg[0] ? e->msg : mlmx_status_name(e->code));
    return e->code;
}

mlmx_status mlmx_api_failf(mlmx_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

mlmx_status mlmx_api_require_unstructured(const struct mlmx_model *m, const char *feature)
{
    mlmx_error e;
    mlmx_err_clear(&e);
    if (m && mlmx_model_require_unstructured(m, feature, &e) != MLMX_OK)
        return mlmx_api_fail(&e);
    return MLMX_OK;
}
