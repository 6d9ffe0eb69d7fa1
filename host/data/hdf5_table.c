/* HDF5 table reader: a group holding one 1-D dataset per column. With
 * host/data/h5common.c and host/output/repstore*.c, one of the few
 * translation units that include <hdf5.h>, so the rest of the library
 * builds without HDF5 headers. Layout and rules: docs/data.md. */
#define _POSIX_C_SOURCE 200809L /* fstat */

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5.h>

#include "data/frame.h"
#include "data/h5common.h"

typedef struct h5_ctx {
    const char *path;
    const char *group;
    mlmx_error *err;
    mlmx_data *d;       /* created at the first dataset, when nrow is known */
    char *first;        /* path of the first dataset, for length mismatches */
} h5_ctx;

/* ---- helpers ------------------------------------------------------------ */

static char *join_path(const char *group, const char *name)
{
    size_t g = strlen(group), n = strlen(name);
    int slash = g > 0 && group[g - 1] == '/';
    char *p = malloc(g + n + 2);
    if (p)
        snprintf(p, g + n + 2, "%s%s%s", group, slash ? "" : "/", name);
    return p;
}

static const char *class_name(H5T_class_t c)
{
    switch (c) {
    case H5T_TIME: return "time";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum (h5py stores booleans this way)";
    case H5T_VLEN: return "variable-length sequence";
    case H5T_ARRAY: return "array";
    default: return "unknown";
    }
}

static void close_id(hid_t *id, herr_t (*fn)(hid_t))
{
    if (*id >= 0)
        fn(*id);
    *id = H5I_INVALID_HID;
}

/* ---- one column ---------------------------------------------------------- */

static mlmx_status read_numeric(h5_ctx *c, hid_t ds, const char *dpath, size_t n)
{
    mlmx_h5_detail dt;
    if (n > SIZE_MAX / sizeof(double))
        return mlmx_err_set(c->err, MLMX_ERR_NOMEM, "%s: dataset '%s' is too large", c->path,
                            dpath);
    double *x = malloc((n ? n : 1) * sizeof *x);
    if (!x)
        return mlmx_err_set(c->err, MLMX_ERR_NOMEM, "%s: out of memory reading dataset '%s'",
                            c->path, dpath);
    /* HDF5 converts any integer or float type to double on the way in. */
    if (H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0) {
        free(x);
        return mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s: cannot read dataset '%s': %s", c->path,
                            dpath, mlmx_h5_reason(&dt));
    }
    for (size_t i = 0; i < n; i++) {
        if (isinf(x[i])) {
            mlmx_status st = mlmx_err_set(
                c->err, MLMX_ERR_DATA,
                "%s: dataset '%s' element %zu (0-based) is %s; infinite values are not allowed "
                "(NaN marks a missing value)",
                c->path, dpath, i, x[i] > 0 ? "Inf" : "-Inf");
            free(x);
            return st;
        }
    }
    const char *slash = strrchr(dpath, '/');
    return mlmx_frame_add_numeric_owned(c->d, slash ? slash + 1 : dpath, x, c->err);
}

static mlmx_status read_strings(h5_ctx *c, hid_t ds, hid_t ftype, hid_t space, const char *dpath,
                                size_t n)
{
    mlmx_h5_detail dt;
    const char *name = strrchr(dpath, '/');
    name = name ? name + 1 : dpath;
    mlmx_status st = MLMX_OK;
    hid_t mtype = H5Tcopy(H5T_C_S1);
    const char **ptr = NULL;
    char *fixed = NULL;
    char **vl = NULL;
    int vl_read = 0;
    htri_t is_vl = H5Tis_variable_str(ftype);
    size_t fsize = H5Tget_size(ftype);
    H5T_cset_t cset = H5Tget_cset(ftype);

    if (mtype < 0 || is_vl < 0 || fsize == 0 || cset < 0) {
        st = mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s: cannot inspect string dataset '%s': %s",
                          c->path, dpath, mlmx_h5_reason(&dt));
        goto done;
    }
    /* The memory type keeps the file's character set: HDF5 refuses to
     * convert between ASCII and UTF-8 strings. */
    if (H5Tset_cset(mtype, cset) < 0)
        goto inspect_fail;
    if (n > SIZE_MAX / sizeof *ptr || (!is_vl && n > SIZE_MAX / (fsize + 1)))
        goto nomem;
    ptr = malloc((n ? n : 1) * sizeof *ptr);
    if (!ptr)
        goto nomem;
    if (is_vl) {
        if (H5Tset_size(mtype, H5T_VARIABLE) < 0)
            goto inspect_fail;
        vl = calloc(n ? n : 1, sizeof *vl);
        if (!vl)
            goto nomem;
        if (H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, vl) < 0)
            goto read_fail;
        vl_read = 1;
        for (size_t i = 0; i < n; i++)
            ptr[i] = (vl[i] && vl[i][0]) ? vl[i] : NULL;
    } else {
        /* One byte more than the file type, null-terminated: HDF5 strips
         * space padding and terminates each string during conversion. */
        if (H5Tset_size(mtype, fsize + 1) < 0 || H5Tset_strpad(mtype, H5T_STR_NULLTERM) < 0)
            goto inspect_fail;
        fixed = malloc((n ? n : 1) * (fsize + 1));
        if (!fixed)
            goto nomem;
        if (H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, fixed) < 0)
            goto read_fail;
        for (size_t i = 0; i < n; i++) {
            char *s = fixed + i * (fsize + 1);
            s[fsize] = '\0';
            ptr[i] = s[0] ? s : NULL;
        }
    }
    st = mlmx_frame_add_factor_strings(c->d, name, ptr, c->err);
    goto done;

inspect_fail:
    st = mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s: cannot inspect string dataset '%s': %s",
                      c->path, dpath, mlmx_h5_reason(&dt));
    goto done;
read_fail:
    st = mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s: cannot read dataset '%s': %s", c->path, dpath,
                      mlmx_h5_reason(&dt));
    goto done;
nomem:
    st = mlmx_err_set(c->err, MLMX_ERR_NOMEM, "%s: out of memory reading dataset '%s'", c->path,
                      dpath);
done:
    if (vl_read) {
#if H5_VERSION_GE(1, 12, 0)
        H5Treclaim(mtype, space, H5P_DEFAULT, vl);
#else
        H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, vl);
#endif
    }
    free(vl);
    free(fixed);
    free(ptr);
    close_id(&mtype, H5Tclose);
    return st;
}

static mlmx_status read_column(h5_ctx *c, hid_t ds, const char *dpath)
{
    mlmx_h5_detail dt;
    mlmx_status st = MLMX_OK;
    hid_t space = H5Dget_space(ds);
    hid_t ftype = H5Dget_type(ds);
    if (space < 0 || ftype < 0) {
        st = mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s: cannot inspect dataset '%s': %s", c->path,
                          dpath, mlmx_h5_reason(&dt));
        goto done;
    }
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank != 1 || H5Sget_simple_extent_type(space) != H5S_SIMPLE) {
        st = mlmx_err_set(c->err, MLMX_ERR_PARSE,
                          "%s: dataset '%s' is not 1-D (rank %d); store each column as a 1-D "
                          "dataset",
                          c->path, dpath, rank < 0 ? 0 : rank);
        goto done;
    }
    hsize_t dim = 0;
    H5Sget_simple_extent_dims(space, &dim, NULL);
    if (dim > (hsize_t)SIZE_MAX) {
        st = mlmx_err_set(c->err, MLMX_ERR_NOMEM, "%s: dataset '%s' is too large", c->path,
                          dpath);
        goto done;
    }
    size_t n = (size_t)dim;
    if (!c->d) {
        if ((st = mlmx_frame_new(n, c->path, &c->d, c->err)) != MLMX_OK)
            goto done;
        if (!(c->first = malloc(strlen(dpath) + 1))) {
            st = mlmx_err_set(c->err, MLMX_ERR_NOMEM, "%s: out of memory", c->path);
            goto done;
        }
        memcpy(c->first, dpath, strlen(dpath) + 1);
    } else if (n != c->d->nrow) {
        st = mlmx_err_set(c->err, MLMX_ERR_PARSE,
                          "%s: dataset '%s' has %zu rows but '%s' has %zu; all columns must "
                          "have the same length",
                          c->path, dpath, n, c->first, c->d->nrow);
        goto done;
    }
    H5T_class_t cls = H5Tget_class(ftype);
    if (cls == H5T_INTEGER || cls == H5T_FLOAT)
        st = read_numeric(c, ds, dpath, n);
    else if (cls == H5T_STRING)
        st = read_strings(c, ds, ftype, space, dpath, n);
    else
        st = mlmx_err_set(c->err, MLMX_ERR_PARSE,
                          "%s: dataset '%s' has an unsupported type (%s); columns must be "
                          "integer, float or string datasets",
                          c->path, dpath, class_name(cls));
done:
    close_id(&ftype, H5Tclose);
    close_id(&space, H5Sclose);
    return st;
}

/* ---- the group ----------------------------------------------------------- */

static mlmx_status read_group(h5_ctx *c, hid_t g)
{
    mlmx_h5_detail dt;
    /* Creation order when the group indexes it (h5py track_order=True,
     * H5Pset_link_creation_order with INDEXED): that is the order the
     * writer meant. Otherwise HDF5's name index, i.e. byte order. */
    H5_index_t idx = H5_INDEX_NAME;
    hid_t gcpl = H5Gget_create_plist(g);
    unsigned flags = 0;
    if (gcpl >= 0 && H5Pget_link_creation_order(gcpl, &flags) >= 0 &&
        (flags & H5P_CRT_ORDER_TRACKED) && (flags & H5P_CRT_ORDER_INDEXED))
        idx = H5_INDEX_CRT_ORDER;
    close_id(&gcpl, H5Pclose);
    H5Eclear2(H5E_DEFAULT);

    H5G_info_t info;
    if (H5Gget_info(g, &info) < 0)
        return mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s: cannot list group '%s': %s", c->path,
                            c->group, mlmx_h5_reason(&dt));
    for (hsize_t i = 0; i < info.nlinks; i++) {
        ssize_t len = H5Lget_name_by_idx(g, ".", idx, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
        if (len < 0)
            return mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s: cannot list group '%s': %s",
                                c->path, c->group, mlmx_h5_reason(&dt));
        char *name = malloc((size_t)len + 1);
        if (!name)
            return mlmx_err_set(c->err, MLMX_ERR_NOMEM, "%s: out of memory", c->path);
        H5Lget_name_by_idx(g, ".", idx, H5_ITER_INC, i, name, (size_t)len + 1, H5P_DEFAULT);
        int bad = mlmx_name_control_char(name);
        if (bad >= 0) {
            free(name);
            return mlmx_err_set(c->err, MLMX_ERR_PARSE,
                                "%s: the name of link %llu in group '%s' contains the control "
                                "character 0x%02X; column names must be printable",
                                c->path, (unsigned long long)i, c->group, bad);
        }
        char *dpath = join_path(c->group, name);
        if (!dpath) {
            free(name);
            return mlmx_err_set(c->err, MLMX_ERR_NOMEM, "%s: out of memory", c->path);
        }
        mlmx_status st = MLMX_OK;
        hid_t obj = H5Oopen(g, name, H5P_DEFAULT);
        if (obj < 0)
            st = mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s: cannot open '%s': %s", c->path, dpath,
                              mlmx_h5_reason(&dt));
        else if (H5Iget_type(obj) == H5I_DATASET)
            st = read_column(c, obj, dpath);
        /* Sub-groups and named types are not columns; skipping them lets a
         * file keep metadata next to the table. */
        close_id(&obj, H5Oclose);
        free(name);
        free(dpath);
        if (st != MLMX_OK)
            return st;
    }
    if (!c->d)
        return mlmx_err_set(c->err, MLMX_ERR_PARSE,
                            "%s: group '%s' holds no datasets (each column must be a 1-D "
                            "dataset)",
                            c->path, c->group);
    if (c->d->nrow == 0)
        return mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s: the datasets in group '%s' have no rows",
                            c->path, c->group);
    return MLMX_OK;
}

static mlmx_status read_file(h5_ctx *c)
{
    mlmx_h5_detail dt;
    mlmx_status st;
    htri_t is = H5Fis_hdf5(c->path);
    if (is <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s: not an HDF5 file", c->path);
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) {
        /* Strong close: closing the file also closes anything left open. */
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
#if (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7) || \
    H5_VERSION_GE(1, 12, 1)
        /* Reading must work on file systems without locking (NFS, Lustre). */
        H5Pset_file_locking(fapl, 1, 1);
#endif
    }
    hid_t f = H5Fopen(c->path, H5F_ACC_RDONLY, fapl >= 0 ? fapl : H5P_DEFAULT);
    close_id(&fapl, H5Pclose);
    if (f < 0)
        return mlmx_err_set(c->err, MLMX_ERR_IO, "cannot open '%s': %s", c->path,
                            mlmx_h5_reason(&dt));
    hid_t g = H5Gopen2(f, c->group, H5P_DEFAULT);
    if (g < 0) {
        H5Eclear2(H5E_DEFAULT);
        st = mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s: no group '%s' (missing, or not a group)",
                          c->path, c->group);
    } else {
        st = read_group(c, g);
    }
    close_id(&g, H5Gclose);
    close_id(&f, H5Fclose);
    return st;
}

mlmx_status mlmx_hdf5_read(const char *path, const char *group, mlmx_data **out,
                           mlmx_error *err)
{
    if (!path || !out)
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL argument to the HDF5 reader");
    *out = NULL;
    if (!group || !group[0])
        group = "/";

    /* HDF5 reports a missing file through its error stack without errno;
     * open it ourselves first for the usual "No such file" wording. */
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return mlmx_err_set(err, MLMX_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    int is_dir = fstat(fileno(fp), &sb) == 0 && S_ISDIR(sb.st_mode);
    fclose(fp);
    if (is_dir)
        return mlmx_err_set(err, MLMX_ERR_IO, "cannot open '%s': %s", path, strerror(EISDIR));

    /* The library never prints: silence HDF5's automatic error printing
     * for the duration of the call and restore the host's setting after
     * (mlmx_h5_enter also takes the process-wide HDF5 lock). */
    mlmx_h5_saved q;
    mlmx_h5_enter(&q);

    h5_ctx c = {path, group, err, NULL, NULL};
    mlmx_status st = read_file(&c);
    free(c.first);
    if (st != MLMX_OK) {
        mlmx_frame_free(c.d);
        c.d = NULL;
    }
    *out = c.d;

    mlmx_h5_leave(&q);
    return st;
}
