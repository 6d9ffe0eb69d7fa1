/* Private to host/output/repstore.c and repstore_merge.c: the store
 * handle, small helpers and the internal entry points they share. The rs_*
 * functions expect the caller to hold the HDF5 lock with automatic error
 * printing off (mlmx_h5_enter, data/h5common.h); the public functions in
 * repstore.h take it. Includes <hdf5.h>: only those two files may include
 * this header. */
#ifndef MLMX_OUTPUT_REPSTORE_INTERNAL_H
#define MLMX_OUTPUT_REPSTORE_INTERNAL_H
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "data/h5common.h"
#include "output/repstore.h"

#define RS_FORMAT "mlmx-replicates"
#define RS_FORMAT_VERSION 1

struct mlmx_repstore {
    char *path;
    hid_t file, dapl;
    unsigned long long begin, end;
    int ngroups;
    int *ncol;
    hid_t *gset;                          /* values/<name>, one per group */
    hid_t crit, conv, sing, neval, stat;  /* per-replicate 1-D datasets */
};

/* ---- small helpers ----------------------------------------------------- */

static inline void close_id(hid_t *id, herr_t (*fn)(hid_t))
{
    if (*id >= 0)
        fn(*id);
    *id = -1;
}

static inline const char *nz(const char *s) { return s ? s : ""; }

static inline char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p)
        memcpy(p, s, n + 1);
    return p;
}

static inline char *join2(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *p = malloc(na + nb + 2);
    if (p)
        snprintf(p, na + nb + 2, "%s/%s", a, b);
    return p;
}

static inline hid_t vstr_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0))
        close_id(&t, H5Tclose);
    return t;
}

/* ---- repstore.c -------------------------------------------------------- */

/* Create the file (flags: H5F_ACC_TRUNC or H5F_ACC_EXCL) and its layout.
 * Arguments already checked. On failure the file is removed. */
mlmx_status rs_create(const char *path, unsigned flags, const mlmx_repstore_meta *m, int ngroups,
                      const mlmx_repstore_group *groups, mlmx_repstore **out, mlmx_error *err);

/* Open an existing replicate file (flags H5F_ACC_RDONLY or H5F_ACC_RDWR),
 * returning the store and the file's own meta and groups (malloc'd; free
 * with mlmx_repstore_meta_free). */
mlmx_status rs_open(const char *path, unsigned flags, mlmx_repstore **out,
                    mlmx_repstore_meta *fm, int *fng, mlmx_repstore_group **fg, mlmx_error *err);

/* Rows of replicates [r0, r0 + count) (absolute indices, inside the
 * store's slice); NULL arrays are skipped. */
mlmx_status rs_write_block(mlmx_repstore *s, unsigned long long r0, size_t count,
                           const double *const *values, const double *criterion,
                           const signed char *converged, const signed char *singular,
                           const int *n_evals, const signed char *status, mlmx_error *err);
mlmx_status rs_read_block(mlmx_repstore *s, unsigned long long r0, size_t count,
                          double *const *values, double *criterion, signed char *converged,
                          signed char *singular, int *n_evals, signed char *status,
                          mlmx_error *err);

mlmx_status rs_set_complete(mlmx_repstore *s, int complete, mlmx_error *err);

/* Flush (when open for writing), close and free. */
mlmx_status rs_close(mlmx_repstore *s, mlmx_error *err);

/* Close every id and free, without flushing; NULL is accepted. Returns -1
 * if closing the file failed. */
int rs_store_free(mlmx_repstore *s);

/* Compare the file's meta and groups with the run's; MLMX_ERR_ARG naming
 * the first mismatch. who: how to name the other side ("this run", a file).
 * check_slice: compare rep_begin and rep_end too. */
mlmx_status rs_compare_run(const char *path, const mlmx_repstore_meta *fm, int fng,
                           const mlmx_repstore_group *fg, const mlmx_repstore_meta *m, int ng,
                           const mlmx_repstore_group *g, const char *who, int check_slice,
                           mlmx_error *err);

/* ---- repstore_merge.c -------------------------------------------------- */

/* Read the file's meta and groups (strings malloc'd) from an open file. */
mlmx_status rs_read_file_meta(const char *path, hid_t file, mlmx_repstore_meta *m, int *ngroups,
                              mlmx_repstore_group **groups, mlmx_error *err);

#endif
