/* The only place that knows which backends exist. */
#include <string.h>
#include "backend/backend.h"

const mlmx_backend *mlmx_backend_get(const char *name)
{
    if (!name || !name[0] || strcmp(name, "cpu") == 0)
        return mlmx_backend_cpu();
    return NULL;
}
