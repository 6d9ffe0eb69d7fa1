/* Storage of bootstrap / simulation replicate results in an HDF5 file
 * (layout: docs/replicates-hdf5.md). Plain C: only the implementation
 * (repstore.c, repstore_merge.c and their private repstore_internal.h)
 * includes <hdf5.h>.
 *
 * A run of nsim replicates may be split into slices [rep_begin, rep_end)
 * written to separate files (shards) and merged afterwards; a single-file
 * run is the slice [0, nsim). Every replicate has one row per group (e.g.
 * "beta", "theta") and a few scalars; its "status" is 0 until it has been
 * computed (1 = done, 2 = failed), which is what resuming relies on.
 *
 * Replicate indices are absolute (0 .. nsim-1) everywhere in this API.
 * Every function returns an mlmx_status and fills err (may be NULL) on
 * failure; messages name the file. The module never prints: HDF5's
 * automatic error printing is switched off for the duration of each call.
 * Calls are serialised by the process-wide HDF5 lock shared with the table
 * reader (host/data/h5common.h; Debian's libhdf5 is not thread-safe); a
 * store handle must not be used by two threads at once. */
#ifndef MLMX_OUTPUT_REPSTORE_H
#define MLMX_OUTPUT_REPSTORE_H
#include <stddef.h>

#include "mlmx.h"
#include "util/error.h"

typedef struct mlmx_repstore mlmx_repstore;

/* A group of columns stored as one 2-D dataset (rows = replicates).
 * name: non-empty, no '/', not "." and unique within the file.
 * ncol >= 0; colnames: ncol non-NULL strings (may be NULL when ncol == 0). */
typedef struct mlmx_repstore_group {
    const char *name;
    int ncol;
    const char *const *colnames;
} mlmx_repstore_group;

typedef struct mlmx_repstore_meta {
    /* Descriptive strings; NULL is stored as "" (mlmx_version: NULL is
     * stored as this library's version). */
    const char *formula, *family, *method, *data_file, *data_sha256, *mlmx_version;
    unsigned long long seed, nsim;         /* total replicates of the whole run */
    unsigned long long rep_begin, rep_end; /* the slice this file holds: [begin, end) */
    const char *model_key; /* identifies the model (formula+family+method+data hash+options) */
} mlmx_repstore_meta;

/* Create (truncate) path and write the layout: file attributes from meta,
 * "complete" = 0, one NaN-filled float64 2-D dataset per group, the column
 * names, and the per-replicate datasets (status all 0). Space is allocated
 * at creation and the file is flushed before this returns, so it is a valid
 * HDF5 file from then on, even if the process dies later.
 * Needs 0 <= rep_begin < rep_end <= nsim. On failure no file is left. */
mlmx_status mlmx_repstore_create(const char *path, const mlmx_repstore_meta *meta, int ngroups,
                                 const mlmx_repstore_group *groups, mlmx_repstore **out,
                                 mlmx_error *err);

/* Open an existing file for resuming (read-write). Checks that seed, nsim,
 * rep_begin, rep_end, model_key and the groups (names, ncol, column names)
 * match meta/groups; a mismatch is MLMX_ERR_ARG naming the field and both
 * values. A missing file is MLMX_ERR_IO, a file that is not an mlmx
 * replicate file MLMX_ERR_PARSE. The other meta strings are not checked. */
mlmx_status mlmx_repstore_open(const char *path, const mlmx_repstore_meta *meta, int ngroups,
                               const mlmx_repstore_group *groups, mlmx_repstore **out,
                               mlmx_error *err);

/* Write replicate r (absolute, in [rep_begin, rep_end)): values[g] holds
 * groups[g].ncol doubles; converged and singular are stored as 0/1; status
 * must be 0, 1 or 2. The group rows are written first and the status last. */
mlmx_status mlmx_repstore_write(mlmx_repstore *s, unsigned long long r,
                                const double *const *values, double criterion, int converged,
                                int singular, int n_evals, int status, mlmx_error *err);

/* Write replicates [r0, r0 + count): values[g] holds count * ncol doubles,
 * row-major (replicate by replicate). Any of the scalar arrays may be NULL:
 * that dataset is then left as it is. status entries must be 0, 1 or 2.
 * count == 0 is a no-op. */
mlmx_status mlmx_repstore_write_block(mlmx_repstore *s, unsigned long long r0, size_t count,
                                      const double *const *values, const double *criterion,
                                      const signed char *converged, const signed char *singular,
                                      const int *n_evals, const signed char *status,
                                      mlmx_error *err);

/* Status of every replicate of the slice: done[r - rep_begin] receives the
 * stored status (0 = not yet computed, 1 = done, 2 = failed), so a nonzero
 * entry means "done". done has rep_end - rep_begin entries. */
mlmx_status mlmx_repstore_status(mlmx_repstore *s, signed char *done, mlmx_error *err);

/* Read replicates [r0, r0 + count) back. values may be NULL, and any
 * values[g] or scalar array may be NULL, to skip that dataset. */
mlmx_status mlmx_repstore_read_block(mlmx_repstore *s, unsigned long long r0, size_t count,
                                     double *const *values, double *criterion,
                                     signed char *converged, signed char *singular, int *n_evals,
                                     signed char *status, mlmx_error *err);

/* The slice of an open store, and its groups' column counts. */
unsigned long long mlmx_repstore_rep_begin(const mlmx_repstore *s);
unsigned long long mlmx_repstore_rep_end(const mlmx_repstore *s);

/* Flush everything to disk (H5Fflush), so that an interrupted run leaves a
 * valid file holding every replicate written before the flush. */
mlmx_status mlmx_repstore_flush(mlmx_repstore *s, mlmx_error *err);

/* Set the "complete" file attribute (1 when every replicate of the slice
 * has status != 0; the caller decides). */
mlmx_status mlmx_repstore_set_complete(mlmx_repstore *s, int complete, mlmx_error *err);

/* Flush, close and free; NULL is accepted. The handle is freed even when
 * closing fails. */
mlmx_status mlmx_repstore_close(mlmx_repstore *s, mlmx_error *err);

/* Read the meta and the groups of an existing file (read-only). Strings
 * and the groups array are malloc'd; free them with mlmx_repstore_meta_free.
 * ngroups and groups_out may be NULL when the groups are not wanted.
 * On failure nothing is left allocated and *meta_out is zeroed. */
mlmx_status mlmx_repstore_read_meta(const char *path, mlmx_repstore_meta *meta_out,
                                    int *ngroups, mlmx_repstore_group **groups_out,
                                    mlmx_error *err);
/* Frees what mlmx_repstore_read_meta allocated (meta and/or groups may be
 * NULL) and zeroes *meta. */
void mlmx_repstore_meta_free(mlmx_repstore_meta *meta, int ngroups, mlmx_repstore_group *groups);

/* Merge shard files (each a slice of the same run) into one file holding
 * replicates [0, nsim). The shards must have the same model_key, seed, nsim
 * and groups, must not overlap, must together cover [0, nsim), and every
 * replicate in them must have status != 0; otherwise MLMX_ERR_ARG naming
 * the offending file, the overlap or the gap. The merged datasets are
 * bit-identical to those a single run writes; its descriptive meta comes
 * from the shard holding replicate 0 and "complete" is 1. The output is
 * written to a temporary file in the same directory and renamed into place,
 * so on failure no output file is left (an existing one is untouched). */
mlmx_status mlmx_repstore_merge(const char *const *inputs, int ninputs, const char *output,
                                mlmx_error *err);

#endif
