/* Internal error reporting: every fallible internal function takes an
 * mlmx_error* and returns an mlmx_status; the message is copied into the
 * public handle's buffer by the API layer. The library never prints. */
#ifndef MLMX_UTIL_ERROR_H
#define MLMX_UTIL_ERROR_H
#include "mlmx.h"

#define MLMX_ERRMSG_MAX 1024

typedef struct mlmx_error {
    mlmx_status code;
    char msg[MLMX_ERRMSG_MAX];
} mlmx_error;

/* Set code and a printf-style message; returns code. e may be NULL. */
mlmx_status mlmx_err_set(mlmx_error *e, mlmx_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void mlmx_err_clear(mlmx_error *e);

#endif
