/* Replicate results (bootstrap, simulation) in an HDF5 file: layout in
 * docs/replicates-hdf5.md, API in repstore.h. This file holds the store
 * handle: creating the layout, opening for resuming, writing and reading
 * rows, status, flush, "complete" and close; repstore_merge.c reads a
 * file's meta and merges shards (private declarations shared through
 * repstore_internal.h). Only these, host/data/hdf5_table.c and
 * host/data/h5common.c include <hdf5.h>; the build gives HDF5's include
 * path to those files alone.
 *
 * Robustness against interruption: every dataset's space is allocated and
 * filled when the file is created, and the file is flushed before create
 * returns, so no HDF5 metadata changes afterwards (bar the in-place
 * "complete" attribute) and a killed process cannot leave a broken file.
 * The raw-data chunk cache and the sieve buffer are switched off, so each
 * write reaches the operating system when the call returns, in call order:
 * a replicate's group rows and scalars go first and its status last, so a
 * nonzero status on disk implies the rest of the row is there too (after a
 * process kill; after a power loss only what an fsync covered is safe). */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "output/repstore_internal.h"

/* ---- access property lists --------------------------------------------- */

/* File access: strong close, no sieve buffer (writes go straight to the
 * file), locking that tolerates file systems without it. */
static hid_t make_fapl(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) {
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
        H5Pset_sieve_buf_size(fapl, 0);
#if (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7) || \
    H5_VERSION_GE(1, 12, 1)
        H5Pset_file_locking(fapl, 1, 1);
#endif
    }
    H5Eclear2(H5E_DEFAULT);
    return fapl;
}

/* Dataset access: no raw-data chunk cache (see the top of the file). */
static hid_t make_dapl(void)
{
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (dapl >= 0 && H5Pset_chunk_cache(dapl, 0, 0, 1.0) < 0)
        close_id(&dapl, H5Pclose);
    return dapl;
}

/* ---- attributes -------------------------------------------------------- */

static herr_t put_str_attr(hid_t obj, const char *name, const char *val)
{
    hid_t t = vstr_type(), sp = H5Screate(H5S_SCALAR), a = -1;
    herr_t rc = -1;
    if (t >= 0 && sp >= 0)
        a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        const char *v = nz(val);
        rc = H5Awrite(a, t, &v);
    }
    close_id(&a, H5Aclose);
    close_id(&sp, H5Sclose);
    close_id(&t, H5Tclose);
    return rc;
}

static herr_t put_num_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v)
{
    hid_t sp = H5Screate(H5S_SCALAR), a = -1;
    herr_t rc = -1;
    if (sp >= 0)
        a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0)
        rc = H5Awrite(a, mtype, v);
    close_id(&a, H5Aclose);
    close_id(&sp, H5Sclose);
    return rc;
}

/* 1-D array of strings as an attribute (a null dataspace when n == 0). */
static herr_t put_strs_attr(hid_t obj, const char *name, hsize_t n, const char *const *v)
{
    hid_t t = vstr_type(), sp = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_NULL), a = -1;
    herr_t rc = -1;
    if (t >= 0 && sp >= 0)
        a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0)
        rc = n ? H5Awrite(a, t, v) : 0;
    close_id(&a, H5Aclose);
    close_id(&sp, H5Sclose);
    close_id(&t, H5Tclose);
    return rc;
}

/* ---- datasets ---------------------------------------------------------- */

/* A dataset of rank 1 (nrow) or 2 (nrow x ncol), chunked when non-empty,
 * allocated and filled with *fill at creation. */
static hid_t make_dset(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank,
                       hsize_t nrow, hsize_t ncol, const void *fill, hid_t dapl)
{
    hsize_t dims[2] = {nrow, ncol}, chunk[2];
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), d = -1;
    int ok = sp >= 0 && dcpl >= 0;
    if (ok && nrow > 0 && (rank == 1 || ncol > 0)) {
        if (rank == 1) {
            chunk[0] = nrow < 65536 ? nrow : 65536;
        } else {
            /* at most 16384 columns (128 KiB) by about 128 KiB per chunk */
            chunk[1] = ncol < 16384 ? ncol : 16384;
            hsize_t rows = 16384 / chunk[1];
            if (rows < 1)
                rows = 1;
            if (rows > 1024)
                rows = 1024;
            chunk[0] = rows < nrow ? rows : nrow;
        }
        ok = H5Pset_chunk(dcpl, rank, chunk) >= 0;
    }
    if (ok)
        ok = H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) >= 0 &&
             H5Pset_fill_time(dcpl, H5D_FILL_TIME_ALLOC) >= 0 &&
             (!fill || H5Pset_fill_value(dcpl, mtype, fill) >= 0);
    if (ok)
        d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, dapl);
    close_id(&dcpl, H5Pclose);
    close_id(&sp, H5Sclose);
    return d;
}

/* Read or write rows [off, off + count) of a rank-1 or rank-2 dataset. */
static herr_t rows_io(hid_t d, int rank, hsize_t ncol, hsize_t off, hsize_t count, hid_t mtype,
                      void *buf, int write)
{
    if (count == 0 || (rank == 2 && ncol == 0))
        return 0;
    hsize_t start[2] = {off, 0}, cnt[2] = {count, ncol};
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(rank, cnt, NULL);
    herr_t rc = -1;
    if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0)
        rc = write ? H5Dwrite(d, mtype, ms, fs, H5P_DEFAULT, buf)
                   : H5Dread(d, mtype, ms, fs, H5P_DEFAULT, buf);
    close_id(&ms, H5Sclose);
    close_id(&fs, H5Sclose);
    return rc;
}

/* 1 when d has the given rank and dimensions. */
static int dims_are(hid_t d, int rank, hsize_t nrow, hsize_t ncol)
{
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == rank &&
             H5Sget_simple_extent_dims(sp, dims, NULL) == rank && dims[0] == nrow &&
             (rank == 1 || dims[1] == ncol);
    close_id(&sp, H5Sclose);
    return ok;
}

/* ---- the store --------------------------------------------------------- */

static const char *const scalar_names[5] = {"criterion", "converged", "singular",
                                            "n_evaluations", "status"};

static hid_t *scalar_slot(mlmx_repstore *s, int k)
{
    switch (k) {
    case 0: return &s->crit;
    case 1: return &s->conv;
    case 2: return &s->sing;
    case 3: return &s->neval;
    default: return &s->stat;
    }
}

static mlmx_repstore *store_new(const char *path, int ngroups)
{
    mlmx_repstore *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->file = s->dapl = s->crit = s->conv = s->sing = s->neval = s->stat = -1;
    s->ngroups = ngroups;
    s->path = dup_str(path);
    s->ncol = calloc(ngroups > 0 ? (size_t)ngroups : 1, sizeof *s->ncol);
    s->gset = malloc((ngroups > 0 ? (size_t)ngroups : 1) * sizeof *s->gset);
    if (!s->path || !s->ncol || !s->gset) {
        free(s->path);
        free(s->ncol);
        free(s->gset);
        free(s);
        return NULL;
    }
    for (int g = 0; g < ngroups; g++)
        s->gset[g] = -1;
    return s;
}

/* Close every id and free; returns -1 if closing the file failed. */
int rs_store_free(mlmx_repstore *s)
{
    if (!s)
        return 0;
    for (int g = 0; g < s->ngroups; g++)
        close_id(&s->gset[g], H5Dclose);
    for (int k = 0; k < 5; k++)
        close_id(scalar_slot(s, k), H5Dclose);
    close_id(&s->dapl, H5Pclose);
    int rc = 0;
    if (s->file >= 0 && H5Fclose(s->file) < 0)
        rc = -1;
    s->file = -1;
    free(s->path);
    free(s->ncol);
    free(s->gset);
    free(s);
    return rc;
}

static mlmx_status check_groups(const char *path, int ngroups, const mlmx_repstore_group *groups,
                                mlmx_error *err)
{
    if (ngroups < 0 || (ngroups > 0 && !groups))
        return mlmx_err_set(err, MLMX_ERR_ARG, "%s: invalid group list (%d groups)", path,
                            ngroups);
    for (int g = 0; g < ngroups; g++) {
        const char *nm = groups[g].name;
        if (!nm || !nm[0] || strchr(nm, '/') || strcmp(nm, ".") == 0)
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "%s: group %d has an invalid name '%s' (non-empty, no '/')",
                                path, g, nz(nm));
        for (int h = 0; h < g; h++)
            if (strcmp(groups[h].name, nm) == 0)
                return mlmx_err_set(err, MLMX_ERR_ARG, "%s: group name '%s' appears twice",
                                    path, nm);
        if (groups[g].ncol < 0 || (groups[g].ncol > 0 && !groups[g].colnames))
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "%s: group '%s' has %d columns but no column names", path, nm,
                                groups[g].ncol);
        for (int j = 0; j < groups[g].ncol; j++)
            if (!groups[g].colnames[j])
                return mlmx_err_set(err, MLMX_ERR_ARG,
                                    "%s: group '%s': column name %d is NULL", path, nm, j);
    }
    return MLMX_OK;
}

static mlmx_status check_meta(const char *path, const mlmx_repstore_meta *m, mlmx_error *err)
{
    if (!m)
        return mlmx_err_set(err, MLMX_ERR_ARG, "%s: no replicate-file metadata given", path);
    if (m->rep_begin >= m->rep_end || m->rep_end > m->nsim)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "%s: invalid replicate slice [%llu, %llu) of %llu replicates "
                            "(need begin < end <= nsim)",
                            path, m->rep_begin, m->rep_end, m->nsim);
    return MLMX_OK;
}

/* Create the file (flags: H5F_ACC_TRUNC or H5F_ACC_EXCL) and its layout.
 * Arguments already checked. On failure the file is removed. */
mlmx_status rs_create(const char *path, unsigned flags, const mlmx_repstore_meta *m,
                      int ngroups, const mlmx_repstore_group *groups,
                      mlmx_repstore **out, mlmx_error *err)
{
    mlmx_h5_detail dt;
    *out = NULL;
    mlmx_repstore *s = store_new(path, ngroups);
    if (!s)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", path);
    s->begin = m->rep_begin;
    s->end = m->rep_end;
    hsize_t nrow = (hsize_t)(m->rep_end - m->rep_begin);

    hid_t fapl = make_fapl();
    s->file = H5Fcreate(path, flags, H5P_DEFAULT, fapl >= 0 ? fapl : H5P_DEFAULT);
    close_id(&fapl, H5Pclose);
    if (s->file < 0) {
        mlmx_status st = mlmx_err_set(err, MLMX_ERR_IO, "cannot create '%s': %s", path,
                                      mlmx_h5_reason(&dt));
        rs_store_free(s);
        return st;
    }
    s->dapl = make_dapl();

    const char *what = "the file attributes";
    hid_t vals = -1, cols = -1, t = -1, d = -1;
    const char **names = NULL;
    mlmx_status st = MLMX_OK;
    int ok = s->dapl >= 0;

    int version = RS_FORMAT_VERSION, complete = 0;
    unsigned long long u[4] = {m->seed, m->nsim, m->rep_begin, m->rep_end};
    static const char *const u_names[4] = {"seed", "nsim", "rep_begin", "rep_end"};
    const char *s_val[8] = {RS_FORMAT, m->formula, m->family, m->method, m->data_file,
                            m->data_sha256, m->mlmx_version ? m->mlmx_version : MLMX_VERSION_STRING,
                            m->model_key};
    static const char *const s_names[8] = {"mlmx_format", "formula", "family", "method",
                                           "data_file", "data_sha256", "mlmx_version",
                                           "model_key"};
    for (int i = 0; ok && i < 8; i++)
        ok = put_str_attr(s->file, s_names[i], s_val[i]) >= 0;
    if (ok)
        ok = put_num_attr(s->file, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT, &version) >= 0;
    for (int i = 0; ok && i < 4; i++)
        ok = put_num_attr(s->file, u_names[i], H5T_STD_U64LE, H5T_NATIVE_ULLONG, &u[i]) >= 0;
    if (ok)
        ok = put_num_attr(s->file, "complete", H5T_STD_I32LE, H5T_NATIVE_INT, &complete) >= 0;
    if (ok) {
        names = malloc((ngroups > 0 ? (size_t)ngroups : 1) * sizeof *names);
        if (!names) {
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        for (int g = 0; g < ngroups; g++)
            names[g] = groups[g].name;
        ok = put_strs_attr(s->file, "groups", (hsize_t)ngroups, names) >= 0;
    }

    /* groups of columns */
    if (ok) {
        what = "the groups 'values' and 'colnames'";
        vals = H5Gcreate2(s->file, "values", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        cols = H5Gcreate2(s->file, "colnames", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        t = vstr_type();
        ok = vals >= 0 && cols >= 0 && t >= 0;
    }
    const double nan = NAN;
    for (int g = 0; ok && g < ngroups; g++) {
        what = groups[g].name;
        s->ncol[g] = groups[g].ncol;
        hsize_t nc = (hsize_t)groups[g].ncol;
        s->gset[g] = make_dset(vals, groups[g].name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, nrow,
                               nc, &nan, s->dapl);
        ok = s->gset[g] >= 0;
        if (ok) {
            hid_t sp = H5Screate_simple(1, &nc, NULL);
            d = sp >= 0 ? H5Dcreate2(cols, groups[g].name, t, sp, H5P_DEFAULT, H5P_DEFAULT,
                                     H5P_DEFAULT)
                        : -1;
            ok = d >= 0 && (nc == 0 || H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                                groups[g].colnames) >= 0);
            close_id(&d, H5Dclose);
            close_id(&sp, H5Sclose);
        }
    }

    /* per-replicate datasets */
    const signed char zero8 = 0;
    const int zero32 = 0;
    for (int k = 0; ok && k < 5; k++) {
        what = scalar_names[k];
        hid_t ft = k == 0 ? H5T_IEEE_F64LE : k == 3 ? H5T_STD_I32LE : H5T_STD_I8LE;
        hid_t mt = k == 0 ? H5T_NATIVE_DOUBLE : k == 3 ? H5T_NATIVE_INT : H5T_NATIVE_SCHAR;
        const void *fill = k == 0 ? (const void *)&nan : k == 3 ? (const void *)&zero32
                                                                : (const void *)&zero8;
        *scalar_slot(s, k) = make_dset(s->file, scalar_names[k], ft, mt, 1, nrow, 0, fill,
                                       s->dapl);
        ok = *scalar_slot(s, k) >= 0;
    }
    if (ok) {
        /* the absolute replicate index of each row */
        what = "replicate";
        d = make_dset(s->file, "replicate", H5T_STD_U64LE, H5T_NATIVE_ULLONG, 1, nrow, 0, NULL,
                      s->dapl);
        ok = d >= 0;
        hsize_t blk = nrow < 65536 ? nrow : 65536;
        unsigned long long *idx = ok ? malloc((size_t)blk * sizeof *idx) : NULL;
        if (ok && !idx) {
            close_id(&d, H5Dclose);
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        for (hsize_t r0 = 0; ok && r0 < nrow; r0 += blk) {
            hsize_t n = nrow - r0 < blk ? nrow - r0 : blk;
            for (hsize_t i = 0; i < n; i++)
                idx[i] = m->rep_begin + r0 + i;
            ok = rows_io(d, 1, 0, r0, n, H5T_NATIVE_ULLONG, idx, 1) >= 0;
        }
        free(idx);
        close_id(&d, H5Dclose);
    }
    if (ok) {
        what = "the file (flush)";
        ok = H5Fflush(s->file, H5F_SCOPE_GLOBAL) >= 0;
    }
    if (!ok)
        st = mlmx_err_set(err, MLMX_ERR_IO, "%s: cannot write %s: %s", path, what,
                          mlmx_h5_reason(&dt));
fail:
    free(names);
    close_id(&t, H5Tclose);
    close_id(&vals, H5Gclose);
    close_id(&cols, H5Gclose);
    if (st != MLMX_OK) {
        rs_store_free(s);
        unlink(path);
        H5Eclear2(H5E_DEFAULT);
        return st;
    }
    *out = s;
    return MLMX_OK;
}
/* Open an existing replicate file (flags H5F_ACC_RDONLY or H5F_ACC_RDWR),
 * returning the store and the file's own meta and groups. */
mlmx_status rs_open(const char *path, unsigned flags, mlmx_repstore **out,
                    mlmx_repstore_meta *fm, int *fng, mlmx_repstore_group **fg,
                    mlmx_error *err)
{
    mlmx_h5_detail dt;
    *out = NULL;
    memset(fm, 0, sizeof *fm);
    *fng = 0;
    *fg = NULL;
    /* the usual wording for a missing or unreadable file */
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return mlmx_err_set(err, MLMX_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    int is_dir = fstat(fileno(fp), &sb) == 0 && S_ISDIR(sb.st_mode);
    fclose(fp);
    if (is_dir)
        return mlmx_err_set(err, MLMX_ERR_IO, "cannot open '%s': %s", path, strerror(EISDIR));
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return mlmx_err_set(err, MLMX_ERR_PARSE, "%s: not an HDF5 file", path);
    }
    hid_t fapl = make_fapl();
    hid_t f = H5Fopen(path, flags, fapl >= 0 ? fapl : H5P_DEFAULT);
    close_id(&fapl, H5Pclose);
    if (f < 0)
        return mlmx_err_set(err, MLMX_ERR_IO, "cannot open '%s': %s", path, mlmx_h5_reason(&dt));
    mlmx_status st = rs_read_file_meta(path, f, fm, fng, fg, err);
    if (st != MLMX_OK) {
        H5Fclose(f);
        return st;
    }
    mlmx_repstore *s = store_new(path, *fng);
    if (!s) {
        H5Fclose(f);
        mlmx_repstore_meta_free(fm, *fng, *fg);
        *fng = 0;
        *fg = NULL;
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", path);
    }
    s->file = f;
    s->begin = fm->rep_begin;
    s->end = fm->rep_end;
    hsize_t nrow = (hsize_t)(s->end - s->begin);
    s->dapl = make_dapl();
    if (s->dapl < 0)
        st = mlmx_err_set(err, MLMX_ERR_IO, "%s: %s", path, mlmx_h5_reason(&dt));
    for (int g = 0; st == MLMX_OK && g < *fng; g++) {
        s->ncol[g] = (*fg)[g].ncol;
        char *dp = join2("values", (*fg)[g].name);
        if (!dp) {
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        s->gset[g] = H5Dopen2(f, dp, s->dapl);
        if (s->gset[g] < 0 || !dims_are(s->gset[g], 2, nrow, (hsize_t)s->ncol[g]))
            st = mlmx_err_set(err, MLMX_ERR_PARSE,
                              "%s: dataset '%s' is missing or not %llu x %d (replicates x "
                              "columns)",
                              path, dp, (unsigned long long)nrow, s->ncol[g]);
        free(dp);
    }
    for (int k = 0; st == MLMX_OK && k < 5; k++) {
        hid_t *d = scalar_slot(s, k);
        *d = H5Dopen2(f, scalar_names[k], s->dapl);
        if (*d < 0 || !dims_are(*d, 1, nrow, 0))
            st = mlmx_err_set(err, MLMX_ERR_PARSE,
                              "%s: dataset '%s' is missing or does not have %llu rows", path,
                              scalar_names[k], (unsigned long long)nrow);
    }
    H5Eclear2(H5E_DEFAULT);
    if (st != MLMX_OK) {
        rs_store_free(s);
        mlmx_repstore_meta_free(fm, *fng, *fg);
        *fng = 0;
        *fg = NULL;
        return st;
    }
    *out = s;
    return MLMX_OK;
}

/* Rows of replicates [r0, r0 + count) inside the store's slice? */
static mlmx_status check_range(const mlmx_repstore *s, unsigned long long r0, size_t count,
                               mlmx_error *err)
{
    if (r0 < s->begin || r0 > s->end || (unsigned long long)count > s->end - r0)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "%s: replicates [%llu, %llu) are outside this file's slice "
                            "[%llu, %llu)",
                            s->path, r0, r0 + (unsigned long long)count, s->begin, s->end);
    return MLMX_OK;
}

mlmx_status rs_write_block(mlmx_repstore *s, unsigned long long r0, size_t count,
                           const double *const *values, const double *criterion,
                           const signed char *converged, const signed char *singular,
                           const int *n_evals, const signed char *status, mlmx_error *err)
{
    mlmx_h5_detail dt;
    mlmx_status st = check_range(s, r0, count, err);
    if (st != MLMX_OK || count == 0)
        return st;
    for (int g = 0; g < s->ngroups; g++)
        if (s->ncol[g] > 0 && (!values || !values[g]))
            return mlmx_err_set(err, MLMX_ERR_ARG, "%s: no values given for group %d", s->path,
                                g);
    if (status)
        for (size_t i = 0; i < count; i++)
            if (status[i] < 0 || status[i] > 2)
                return mlmx_err_set(err, MLMX_ERR_ARG,
                                    "%s: replicate %llu: status %d is not 0, 1 or 2", s->path,
                                    r0 + (unsigned long long)i, (int)status[i]);
    hsize_t off = (hsize_t)(r0 - s->begin), n = (hsize_t)count;
    /* group rows and scalars first, the status last */
    for (int g = 0; g < s->ngroups; g++)
        if (rows_io(s->gset[g], 2, (hsize_t)s->ncol[g], off, n, H5T_NATIVE_DOUBLE,
                    (void *)(uintptr_t)values[g], 1) < 0)
            return mlmx_err_set(err, MLMX_ERR_IO, "%s: cannot write replicates [%llu, %llu): %s",
                                s->path, r0, r0 + (unsigned long long)count, mlmx_h5_reason(&dt));
    const void *sc[5] = {criterion, converged, singular, n_evals, status};
    const hid_t mt[5] = {H5T_NATIVE_DOUBLE, H5T_NATIVE_SCHAR, H5T_NATIVE_SCHAR, H5T_NATIVE_INT,
                         H5T_NATIVE_SCHAR};
    for (int k = 0; k < 5; k++)
        if (sc[k] && rows_io(*scalar_slot(s, k), 1, 0, off, n, mt[k],
                             (void *)(uintptr_t)sc[k], 1) < 0)
            return mlmx_err_set(err, MLMX_ERR_IO,
                                "%s: cannot write '%s' of replicates [%llu, %llu): %s", s->path,
                                scalar_names[k], r0, r0 + (unsigned long long)count,
                                mlmx_h5_reason(&dt));
    return MLMX_OK;
}

mlmx_status rs_read_block(mlmx_repstore *s, unsigned long long r0, size_t count,
                          double *const *values, double *criterion,
                          signed char *converged, signed char *singular, int *n_evals,
                          signed char *status, mlmx_error *err)
{
    mlmx_h5_detail dt;
    mlmx_status st = check_range(s, r0, count, err);
    if (st != MLMX_OK || count == 0)
        return st;
    hsize_t off = (hsize_t)(r0 - s->begin), n = (hsize_t)count;
    for (int g = 0; values && g < s->ngroups; g++)
        if (values[g] && rows_io(s->gset[g], 2, (hsize_t)s->ncol[g], off, n, H5T_NATIVE_DOUBLE,
                                 values[g], 0) < 0)
            return mlmx_err_set(err, MLMX_ERR_IO, "%s: cannot read replicates [%llu, %llu): %s",
                                s->path, r0, r0 + (unsigned long long)count, mlmx_h5_reason(&dt));
    void *sc[5] = {criterion, converged, singular, n_evals, status};
    const hid_t mt[5] = {H5T_NATIVE_DOUBLE, H5T_NATIVE_SCHAR, H5T_NATIVE_SCHAR, H5T_NATIVE_INT,
                         H5T_NATIVE_SCHAR};
    for (int k = 0; k < 5; k++)
        if (sc[k] && rows_io(*scalar_slot(s, k), 1, 0, off, n, mt[k], sc[k], 0) < 0)
            return mlmx_err_set(err, MLMX_ERR_IO,
                                "%s: cannot read '%s' of replicates [%llu, %llu): %s", s->path,
                                scalar_names[k], r0, r0 + (unsigned long long)count,
                                mlmx_h5_reason(&dt));
    return MLMX_OK;
}

mlmx_status rs_close(mlmx_repstore *s, mlmx_error *err)
{
    mlmx_h5_detail dt;
    if (!s)
        return MLMX_OK;
    mlmx_status st = MLMX_OK;
    unsigned intent = 0;
    if (s->file >= 0 && H5Fget_intent(s->file, &intent) >= 0 && (intent & H5F_ACC_RDWR) &&
        H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0)
        st = mlmx_err_set(err, MLMX_ERR_IO, "%s: cannot flush: %s", s->path, mlmx_h5_reason(&dt));
    char *path = dup_str(s->path);
    if (rs_store_free(s) < 0 && st == MLMX_OK)
        st = mlmx_err_set(err, MLMX_ERR_IO, "%s: cannot close: %s", path ? path : "(file)",
                          mlmx_h5_reason(&dt));
    free(path);
    return st;
}

/* ---- public API -------------------------------------------------------- */

mlmx_status mlmx_repstore_create(const char *path, const mlmx_repstore_meta *meta, int ngroups,
                                 const mlmx_repstore_group *groups, mlmx_repstore **out,
                                 mlmx_error *err)
{
    if (!path || !out)
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL argument to the replicate store");
    *out = NULL;
    mlmx_status st = check_meta(path, meta, err);
    if (st == MLMX_OK)
        st = check_groups(path, ngroups, groups, err);
    if (st != MLMX_OK)
        return st;
    mlmx_h5_saved q;
    mlmx_h5_enter(&q);
    st = rs_create(path, H5F_ACC_TRUNC, meta, ngroups, groups, out, err);
    mlmx_h5_leave(&q);
    return st;
}

/* Compare the file's meta and groups with the run's; MLMX_ERR_ARG naming
 * the first mismatch. who: how to name the other side ("this run", a file). */
mlmx_status rs_compare_run(const char *path, const mlmx_repstore_meta *fm, int fng,
                           const mlmx_repstore_group *fg, const mlmx_repstore_meta *m,
                           int ng, const mlmx_repstore_group *g, const char *who,
                           int check_slice, mlmx_error *err)
{
    if (strcmp(nz(fm->model_key), nz(m->model_key)) != 0)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "%s: model_key mismatch: the file has '%s', %s '%s' (a different "
                            "model, data or options)",
                            path, nz(fm->model_key), who, nz(m->model_key));
    if (fm->seed != m->seed)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "%s: seed mismatch: the file has %llu, %s %llu", path, fm->seed, who,
                            m->seed);
    if (fm->nsim != m->nsim)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "%s: nsim mismatch: the file has %llu replicates, %s %llu", path,
                            fm->nsim, who, m->nsim);
    if (check_slice && (fm->rep_begin != m->rep_begin || fm->rep_end != m->rep_end))
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "%s: replicate range mismatch: the file holds [%llu, %llu), %s "
                            "[%llu, %llu)",
                            path, fm->rep_begin, fm->rep_end, who, m->rep_begin, m->rep_end);
    if (fng != ng)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "%s: groups mismatch: the file has %d groups, %s %d", path, fng, who,
                            ng);
    for (int k = 0; k < ng; k++) {
        if (strcmp(fg[k].name, g[k].name) != 0 || fg[k].ncol != g[k].ncol)
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "%s: groups mismatch: group %d is '%s' with %d columns in the "
                                "file, '%s' with %d columns in %s",
                                path, k, fg[k].name, fg[k].ncol, g[k].name, g[k].ncol,
                                who);
        for (int j = 0; j < g[k].ncol; j++)
            if (strcmp(fg[k].colnames[j], g[k].colnames[j]) != 0)
                return mlmx_err_set(err, MLMX_ERR_ARG,
                                    "%s: groups mismatch: column %d of group '%s' is '%s' in the "
                                    "file, '%s' in %s",
                                    path, j, g[k].name, fg[k].colnames[j], g[k].colnames[j], who);
    }
    return MLMX_OK;
}

mlmx_status mlmx_repstore_open(const char *path, const mlmx_repstore_meta *meta, int ngroups,
                               const mlmx_repstore_group *groups, mlmx_repstore **out,
                               mlmx_error *err)
{
    if (!path || !out)
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL argument to the replicate store");
    *out = NULL;
    mlmx_status st = check_meta(path, meta, err);
    if (st == MLMX_OK)
        st = check_groups(path, ngroups, groups, err);
    if (st != MLMX_OK)
        return st;
    mlmx_h5_saved q;
    mlmx_h5_enter(&q);
    mlmx_repstore *s = NULL;
    mlmx_repstore_meta fm;
    int fng = 0;
    mlmx_repstore_group *fg = NULL;
    st = rs_open(path, H5F_ACC_RDWR, &s, &fm, &fng, &fg, err);
    if (st == MLMX_OK) {
        st = rs_compare_run(path, &fm, fng, fg, meta, ngroups, groups, "this run", 1, err);
        mlmx_repstore_meta_free(&fm, fng, fg);
        if (st != MLMX_OK) {
            rs_store_free(s);
            s = NULL;
        }
    }
    mlmx_h5_leave(&q);
    *out = s;
    return st;
}

mlmx_status mlmx_repstore_write(mlmx_repstore *s, unsigned long long r,
                                const double *const *values, double criterion, int converged,
                                int singular, int n_evals, int status, mlmx_error *err)
{
    if (!s)
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL replicate store");
    if (status < 0 || status > 2)
        return mlmx_err_set(err, MLMX_ERR_ARG, "%s: replicate %llu: status %d is not 0, 1 or 2",
                            s->path, r, status);
    signed char cv = converged != 0, sg = singular != 0, stt = (signed char)status;
    mlmx_h5_saved q;
    mlmx_h5_enter(&q);
    mlmx_status st = rs_write_block(s, r, 1, values, &criterion, &cv, &sg, &n_evals, &stt, err);
    mlmx_h5_leave(&q);
    return st;
}

mlmx_status mlmx_repstore_write_block(mlmx_repstore *s, unsigned long long r0, size_t count,
                                      const double *const *values, const double *criterion,
                                      const signed char *converged, const signed char *singular,
                                      const int *n_evals, const signed char *status,
                                      mlmx_error *err)
{
    if (!s)
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL replicate store");
    mlmx_h5_saved q;
    mlmx_h5_enter(&q);
    mlmx_status st = rs_write_block(s, r0, count, values, criterion, converged, singular,
                                    n_evals, status, err);
    mlmx_h5_leave(&q);
    return st;
}

mlmx_status mlmx_repstore_status(mlmx_repstore *s, signed char *done, mlmx_error *err)
{
    if (!s || !done)
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL argument to the replicate store");
    mlmx_h5_saved q;
    mlmx_h5_enter(&q);
    mlmx_status st = rs_read_block(s, s->begin, (size_t)(s->end - s->begin), NULL, NULL, NULL,
                                   NULL, NULL, done, err);
    mlmx_h5_leave(&q);
    return st;
}

mlmx_status mlmx_repstore_read_block(mlmx_repstore *s, unsigned long long r0, size_t count,
                                     double *const *values, double *criterion,
                                     signed char *converged, signed char *singular, int *n_evals,
                                     signed char *status, mlmx_error *err)
{
    if (!s)
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL replicate store");
    mlmx_h5_saved q;
    mlmx_h5_enter(&q);
    mlmx_status st = rs_read_block(s, r0, count, values, criterion, converged, singular,
                                   n_evals, status, err);
    mlmx_h5_leave(&q);
    return st;
}

unsigned long long mlmx_repstore_rep_begin(const mlmx_repstore *s) { return s ? s->begin : 0; }
unsigned long long mlmx_repstore_rep_end(const mlmx_repstore *s) { return s ? s->end : 0; }

mlmx_status mlmx_repstore_flush(mlmx_repstore *s, mlmx_error *err)
{
    if (!s)
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL replicate store");
    mlmx_h5_detail dt;
    mlmx_h5_saved q;
    mlmx_h5_enter(&q);
    mlmx_status st = MLMX_OK;
    if (H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0)
        st = mlmx_err_set(err, MLMX_ERR_IO, "%s: cannot flush: %s", s->path, mlmx_h5_reason(&dt));
    mlmx_h5_leave(&q);
    return st;
}

mlmx_status rs_set_complete(mlmx_repstore *s, int complete, mlmx_error *err)
{
    mlmx_h5_detail dt;
    int v = complete != 0;
    hid_t a = H5Aopen(s->file, "complete", H5P_DEFAULT);
    herr_t rc = a >= 0 ? H5Awrite(a, H5T_NATIVE_INT, &v) : -1;
    close_id(&a, H5Aclose);
    if (rc < 0)
        return mlmx_err_set(err, MLMX_ERR_IO, "%s: cannot set the attribute 'complete': %s",
                            s->path, mlmx_h5_reason(&dt));
    return MLMX_OK;
}

mlmx_status mlmx_repstore_set_complete(mlmx_repstore *s, int complete, mlmx_error *err)
{
    if (!s)
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL replicate store");
    mlmx_h5_saved q;
    mlmx_h5_enter(&q);
    mlmx_status st = rs_set_complete(s, complete, err);
    mlmx_h5_leave(&q);
    return st;
}

mlmx_status mlmx_repstore_close(mlmx_repstore *s, mlmx_error *err)
{
    if (!s)
        return MLMX_OK;
    mlmx_h5_saved q;
    mlmx_h5_enter(&q);
    mlmx_status st = rs_close(s, err);
    mlmx_h5_leave(&q);
    return st;
}
