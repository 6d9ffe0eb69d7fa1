#include "util/error.h"
#include <stdarg.h>
#include <stdio.h>

mlmx_status mlmx_err_set(mlmx_error *e, mlmx_status code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

void mlmx_err_clear(mlmx_error *e)
{
    if (e) {
        e->code = MLMX_OK;
        e->msg[0] = '\0';
    }
}
