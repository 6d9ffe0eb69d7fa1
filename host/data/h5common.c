/* The HDF5 lock, quiet error printing and error-stack reason shared by the
 * files that call HDF5 (h5common.h). */
#define _POSIX_C_SOURCE 200809L /* pthread */

#include <pthread.h>
#include <stdio.h>

#include <hdf5.h>

#include "data/h5common.h"

/* Debian's serial libhdf5 is not built thread-safe: one lock for every
 * module that enters it. */
static pthread_mutex_t h5_lock = PTHREAD_MUTEX_INITIALIZER;

void mlmx_h5_lock(void) { pthread_mutex_lock(&h5_lock); }

void mlmx_h5_unlock(void) { pthread_mutex_unlock(&h5_lock); }

void mlmx_h5_enter(mlmx_h5_saved *q)
{
    mlmx_h5_lock();
    H5E_auto2_t fn = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &fn, &q->data);
    /* stored as a generic function pointer so that h5common.h needs no
     * HDF5 types; converted back before HDF5 sees it */
    q->fn = (void (*)(void))fn;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void mlmx_h5_leave(const mlmx_h5_saved *q)
{
    H5Eclear2(H5E_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, (H5E_auto2_t)q->fn, q->data);
    mlmx_h5_unlock();
}

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    (void)n;
    mlmx_h5_detail *dt = data;
    /* Walking downward, the last entry is the innermost and most specific
     * ("can't open object", "required filter 'lzf' is not registered"). */
    if (e && e->desc && e->desc[0])
        snprintf(dt->text, sizeof dt->text, "%s", e->desc);
    return 0;
}

const char *mlmx_h5_reason(mlmx_h5_detail *dt)
{
    dt->text[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, dt);
    H5Eclear2(H5E_DEFAULT);
    return dt->text[0] ? dt->text : "unknown HDF5 error";
}
