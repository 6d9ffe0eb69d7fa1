/* What every file that calls HDF5 shares (host/data/hdf5_table.c,
 * host/output/repstore.c, host/output/repstore_merge.c): one process-wide
 * lock, HDF5's automatic error printing switched off for the duration of a
 * call, and HDF5's error stack turned into one line for a message.
 *
 * Debian's serial libhdf5 is not built thread-safe: no two threads may be
 * inside it at once, whichever module they call it from, so there is one
 * lock for all of them. It is not recursive: a function that holds it must
 * not call another public function that takes it.
 *
 * Plain C: this header does not include <hdf5.h>. */
#ifndef MLMX_DATA_H5COMMON_H
#define MLMX_DATA_H5COMMON_H

/* The process-wide HDF5 lock. */
void mlmx_h5_lock(void);
void mlmx_h5_unlock(void);

/* The caller's automatic error printing (HDF5's H5E_auto2_t and its data),
 * saved by mlmx_h5_enter and restored by mlmx_h5_leave. */
typedef struct mlmx_h5_saved {
    void (*fn)(void);
    void *data;
} mlmx_h5_saved;

/* Take the lock, save the caller's automatic error printing and switch it
 * off (the library never prints). */
void mlmx_h5_enter(mlmx_h5_saved *q);
/* Clear HDF5's error stack, restore what mlmx_h5_enter saved and release
 * the lock. */
void mlmx_h5_leave(const mlmx_h5_saved *q);

/* The most specific entry of HDF5's error stack as one line. */
typedef struct mlmx_h5_detail {
    char text[256];
} mlmx_h5_detail;

/* Fills dt with the innermost description on HDF5's error stack, clears
 * the stack and returns dt->text, or "unknown HDF5 error" when the stack is
 * empty. Call with the lock held. */
const char *mlmx_h5_reason(mlmx_h5_detail *dt);

#endif
