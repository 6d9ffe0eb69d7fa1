/* Replicate files (repstore.h): reading a file's meta and groups
 * (mlmx_repstore_read_meta, and rs_read_file_meta for opening a store),
 * freeing them, and merging shards into one file. The store handle itself
 * is in repstore.c; the two share repstore_internal.h. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "output/repstore_internal.h"

/* Merge copies at most this many doubles per block (8 MiB). */
#define RS_MERGE_BLOCK_DOUBLES ((size_t)1 << 20)

static void free_const(const void *p) { free((void *)(uintptr_t)p); }

/* ---- string attributes ------------------------------------------------- */

/* Strings of an attribute (is_attr) or a dataset: variable- or fixed-length,
 * scalar or 1-D (h5py and rhdf5 may write either). Returns 0, -1 when the
 * object does not hold strings, -2 on allocation failure. */
static int read_strs(hid_t obj, int is_attr, char ***out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    int rc = -1;
    hid_t ft = is_attr ? H5Aget_type(obj) : H5Dget_type(obj);
    hid_t sp = is_attr ? H5Aget_space(obj) : H5Dget_space(obj);
    hid_t mt = -1;
    char **v = NULL, *fixed = NULL;
    size_t n = 0;
    if (ft < 0 || sp < 0 || H5Tget_class(ft) != H5T_STRING)
        goto done;
    H5S_class_t sc = H5Sget_simple_extent_type(sp);
    if (sc == H5S_NULL) {
        rc = 0;
        goto done;
    }
    if (sc != H5S_SCALAR && !(sc == H5S_SIMPLE && H5Sget_simple_extent_ndims(sp) == 1))
        goto done;
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    if (np < 0)
        goto done;
    n = (size_t)np;
    if (n == 0) {
        rc = 0;
        goto done;
    }
    v = calloc(n, sizeof *v);
    if (!v) {
        rc = -2;
        goto done;
    }
    htri_t var = H5Tis_variable_str(ft);
    if (var > 0) {
        mt = vstr_type();
        char **raw = calloc(n, sizeof *raw);
        if (!raw) {
            rc = -2;
            goto done;
        }
        herr_t r = mt < 0 ? -1
                   : is_attr ? H5Aread(obj, mt, raw)
                             : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
        if (r >= 0) {
            rc = 0;
            for (size_t i = 0; i < n; i++)
                if (!(v[i] = dup_str(nz(raw[i]))))
                    rc = -2;
        }
        for (size_t i = 0; i < n; i++)
            if (raw[i])
                H5free_memory(raw[i]);
        free(raw);
    } else if (var == 0) {
        size_t w = H5Tget_size(ft);
        mt = H5Tcopy(H5T_C_S1);
        fixed = calloc(n, w + 1);
        if (!fixed) {
            rc = -2;
            goto done;
        }
        if (mt < 0 || H5Tset_size(mt, w + 1) < 0 || H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0)
            goto done;
        herr_t r = is_attr ? H5Aread(obj, mt, fixed)
                           : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, fixed);
        if (r >= 0) {
            rc = 0;
            for (size_t i = 0; i < n; i++)
                if (!(v[i] = dup_str(fixed + i * (w + 1))))
                    rc = -2;
        }
    }
done:
    if (rc == 0) {
        *out = v;
        *nout = n;
    } else if (v) {
        for (size_t i = 0; i < n; i++)
            free(v[i]);
        free(v);
    }
    free(fixed);
    close_id(&mt, H5Tclose);
    close_id(&sp, H5Sclose);
    close_id(&ft, H5Tclose);
    H5Eclear2(H5E_DEFAULT);
    return rc;
}

static void free_strs(char **v, size_t n)
{
    if (v)
        for (size_t i = 0; i < n; i++)
            free(v[i]);
    free(v);
}

/* One string attribute (scalar, or a 1-element array). */
static mlmx_status get_str_attr(const char *path, hid_t obj, const char *name, char **out,
                                mlmx_error *err)
{
    *out = NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) {
        H5Eclear2(H5E_DEFAULT);
        return mlmx_err_set(err, MLMX_ERR_PARSE, "%s: the file attribute '%s' is missing", path,
                            name);
    }
    char **v = NULL;
    size_t n = 0;
    int rc = read_strs(a, 1, &v, &n);
    close_id(&a, H5Aclose);
    if (rc == -2)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", path);
    if (rc < 0 || n != 1) {
        free_strs(v, n);
        return mlmx_err_set(err, MLMX_ERR_PARSE, "%s: the file attribute '%s' is not a string",
                            path, name);
    }
    *out = v[0];
    free(v);
    return MLMX_OK;
}

static mlmx_status get_ull_attr(const char *path, hid_t obj, const char *name,
                                unsigned long long *out, mlmx_error *err)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) {
        H5Eclear2(H5E_DEFAULT);
        return mlmx_err_set(err, MLMX_ERR_PARSE, "%s: the file attribute '%s' is missing", path,
                            name);
    }
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    int ok = ft >= 0 && sp >= 0 && H5Tget_class(ft) == H5T_INTEGER &&
             H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, H5T_NATIVE_ULLONG, out) >= 0;
    close_id(&sp, H5Sclose);
    close_id(&ft, H5Tclose);
    close_id(&a, H5Aclose);
    H5Eclear2(H5E_DEFAULT);
    if (!ok)
        return mlmx_err_set(err, MLMX_ERR_PARSE,
                            "%s: the file attribute '%s' is not a non-negative integer", path,
                            name);
    return MLMX_OK;
}

/* ---- meta -------------------------------------------------------------- */

/* Read the file's meta and groups (strings malloc'd) from an open file. */
mlmx_status rs_read_file_meta(const char *path, hid_t file, mlmx_repstore_meta *m,
                              int *ngroups, mlmx_repstore_group **groups, mlmx_error *err)
{
    memset(m, 0, sizeof *m);
    *ngroups = 0;
    *groups = NULL;
    char *fmt = NULL;
    if (H5Aexists(file, "mlmx_format") <= 0 ||
        get_str_attr(path, file, "mlmx_format", &fmt, NULL) != MLMX_OK ||
        strcmp(fmt, RS_FORMAT) != 0) {
        free(fmt);
        H5Eclear2(H5E_DEFAULT);
        return mlmx_err_set(err, MLMX_ERR_PARSE,
                            "%s: not an mlmx replicate file (no attribute mlmx_format = '%s')",
                            path, RS_FORMAT);
    }
    free(fmt);
    unsigned long long ver = 0;
    mlmx_status st = get_ull_attr(path, file, "format_version", &ver, err);
    if (st != MLMX_OK)
        return st;
    if (ver > RS_FORMAT_VERSION)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                            "%s: replicate file format version %llu is newer than this "
                            "library's (%d)",
                            path, ver, RS_FORMAT_VERSION);

    char *sv[7] = {NULL};
    static const char *const s_names[7] = {"formula", "family", "method", "data_file",
                                           "data_sha256", "mlmx_version", "model_key"};
    for (int i = 0; st == MLMX_OK && i < 7; i++)
        st = get_str_attr(path, file, s_names[i], &sv[i], err);
    if (st == MLMX_OK)
        st = get_ull_attr(path, file, "seed", &m->seed, err);
    if (st == MLMX_OK)
        st = get_ull_attr(path, file, "nsim", &m->nsim, err);
    if (st == MLMX_OK)
        st = get_ull_attr(path, file, "rep_begin", &m->rep_begin, err);
    if (st == MLMX_OK)
        st = get_ull_attr(path, file, "rep_end", &m->rep_end, err);
    if (st == MLMX_OK && (m->rep_begin >= m->rep_end || m->rep_end > m->nsim))
        st = mlmx_err_set(err, MLMX_ERR_PARSE,
                          "%s: invalid replicate slice [%llu, %llu) of %llu in the file", path,
                          m->rep_begin, m->rep_end, m->nsim);
    m->formula = sv[0];
    m->family = sv[1];
    m->method = sv[2];
    m->data_file = sv[3];
    m->data_sha256 = sv[4];
    m->mlmx_version = sv[5];
    m->model_key = sv[6];
    if (st != MLMX_OK) {
        mlmx_repstore_meta_free(m, 0, NULL);
        return st;
    }

    /* groups: names from the "groups" attribute, columns from colnames/ */
    char **gn = NULL;
    size_t ng = 0;
    hid_t a = H5Aopen(file, "groups", H5P_DEFAULT);
    int rc = a >= 0 ? read_strs(a, 1, &gn, &ng) : -1;
    close_id(&a, H5Aclose);
    H5Eclear2(H5E_DEFAULT);
    if (rc == -2)
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", path);
    else if (rc < 0 || ng > INT32_MAX)
        st = mlmx_err_set(err, MLMX_ERR_PARSE,
                          "%s: the file attribute 'groups' is missing or not a list of strings",
                          path);
    mlmx_repstore_group *gs = NULL;
    if (st == MLMX_OK && ng > 0) {
        gs = calloc(ng, sizeof *gs);
        if (!gs)
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t g = 0; st == MLMX_OK && g < ng; g++) {
        gs[g].name = gn[g];
        gn[g] = NULL;
        char *dp = join2("colnames", gs[g].name);
        if (!dp) {
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        hid_t d = H5Dopen2(file, dp, H5P_DEFAULT);
        char **cn = NULL;
        size_t nc = 0;
        rc = d >= 0 ? read_strs(d, 0, &cn, &nc) : -1;
        close_id(&d, H5Dclose);
        H5Eclear2(H5E_DEFAULT);
        if (rc == -2)
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", path);
        else if (rc < 0 || nc > INT32_MAX)
            st = mlmx_err_set(err, MLMX_ERR_PARSE,
                              "%s: dataset '%s' (the column names of group '%s') is missing or "
                              "not a list of strings",
                              path, dp, gs[g].name);
        free(dp);
        gs[g].ncol = (int)nc;
        gs[g].colnames = (const char *const *)cn;
    }
    free_strs(gn, ng);
    if (st != MLMX_OK) {
        mlmx_repstore_meta_free(m, (int)ng, gs);
        return st;
    }
    *ngroups = (int)ng;
    *groups = gs;
    return MLMX_OK;
}

mlmx_status mlmx_repstore_read_meta(const char *path, mlmx_repstore_meta *meta_out,
                                    int *ngroups, mlmx_repstore_group **groups_out,
                                    mlmx_error *err)
{
    if (meta_out)
        memset(meta_out, 0, sizeof *meta_out);
    if (ngroups)
        *ngroups = 0;
    if (groups_out)
        *groups_out = NULL;
    if (!path || !meta_out)
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL argument to the replicate store");
    mlmx_h5_saved q;
    mlmx_h5_enter(&q);
    mlmx_repstore *s = NULL;
    int fng = 0;
    mlmx_repstore_group *fg = NULL;
    mlmx_status st = rs_open(path, H5F_ACC_RDONLY, &s, meta_out, &fng, &fg, err);
    if (st == MLMX_OK) {
        rs_store_free(s);
        if (ngroups && groups_out) {
            *ngroups = fng;
            *groups_out = fg;
        } else {
            mlmx_repstore_meta_free(NULL, fng, fg);
        }
    }
    mlmx_h5_leave(&q);
    return st;
}

void mlmx_repstore_meta_free(mlmx_repstore_meta *meta, int ngroups, mlmx_repstore_group *groups)
{
    if (meta) {
        free_const(meta->formula);
        free_const(meta->family);
        free_const(meta->method);
        free_const(meta->data_file);
        free_const(meta->data_sha256);
        free_const(meta->mlmx_version);
        free_const(meta->model_key);
        memset(meta, 0, sizeof *meta);
    }
    if (groups) {
        for (int g = 0; g < ngroups; g++) {
            free_const(groups[g].name);
            if (groups[g].colnames)
                for (int j = 0; j < groups[g].ncol; j++)
                    free_const(groups[g].colnames[j]);
            free_const(groups[g].colnames);
        }
        free(groups);
    }
}

/* ---- merge ------------------------------------------------------------- */

typedef struct shard {
    const char *path;
    mlmx_repstore_meta m;
    int ng;
    mlmx_repstore_group *g;
} shard;

static int shard_cmp(const void *a, const void *b)
{
    const shard *x = *(const shard *const *)a, *y = *(const shard *const *)b;
    if (x->m.rep_begin != y->m.rep_begin)
        return x->m.rep_begin < y->m.rep_begin ? -1 : 1;
    return x->m.rep_end < y->m.rep_end ? -1 : x->m.rep_end > y->m.rep_end;
}

/* Read a shard's meta and check that every replicate in it is done. */
static mlmx_status load_shard(shard *sh, mlmx_error *err)
{
    mlmx_repstore *s = NULL;
    mlmx_status st = rs_open(sh->path, H5F_ACC_RDONLY, &s, &sh->m, &sh->ng, &sh->g, err);
    if (st != MLMX_OK)
        return st;
    size_t n = (size_t)(s->end - s->begin);
    signed char *done = malloc(n);
    if (!done)
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", sh->path);
    else
        st = rs_read_block(s, s->begin, n, NULL, NULL, NULL, NULL, NULL, done, err);
    if (st == MLMX_OK) {
        size_t missing = 0, first = 0;
        for (size_t i = 0; i < n; i++)
            if (done[i] == 0 && missing++ == 0)
                first = i;
        if (missing)
            st = mlmx_err_set(err, MLMX_ERR_ARG,
                              "%s: %zu of its replicates [%llu, %llu) are not computed yet "
                              "(the first is %llu); resume this shard before merging",
                              sh->path, missing, s->begin, s->end,
                              s->begin + (unsigned long long)first);
    }
    free(done);
    rs_store_free(s);
    return st;
}

/* A temporary name next to output that does not exist yet. */
static char *temp_name(const char *output, unsigned attempt)
{
    static unsigned counter;
    size_t n = strlen(output) + 64;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s.tmp-%ld-%u-%u", output, (long)getpid(), counter++, attempt);
    return p;
}

static mlmx_status merge_copy(shard **order, int n, mlmx_repstore *out, mlmx_error *err)
{
    const mlmx_repstore_group *g = order[0]->g;
    int ng = order[0]->ng;
    size_t width = 1;
    for (int k = 0; k < ng; k++)
        width += (size_t)g[k].ncol;
    size_t blk = RS_MERGE_BLOCK_DOUBLES / width;
    if (blk < 1)
        blk = 1;
    if (blk > 65536)
        blk = 65536;
    mlmx_status st = MLMX_OK;
    double **vals = calloc(ng > 0 ? (size_t)ng : 1, sizeof *vals);
    double *crit = malloc(blk * sizeof *crit);
    signed char *conv = malloc(blk), *sing = malloc(blk), *stat = malloc(blk);
    int *nev = malloc(blk * sizeof *nev);
    int ok = vals && crit && conv && sing && stat && nev;
    for (int k = 0; ok && k < ng; k++)
        ok = (vals[k] = malloc(blk * (size_t)(g[k].ncol > 0 ? g[k].ncol : 1) * sizeof(double))) !=
             NULL;
    if (!ok)
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "merging replicate files: out of memory");
    for (int i = 0; st == MLMX_OK && i < n; i++) {
        mlmx_repstore *s = NULL;
        mlmx_repstore_meta m;
        int sng = 0;
        mlmx_repstore_group *sg = NULL;
        st = rs_open(order[i]->path, H5F_ACC_RDONLY, &s, &m, &sng, &sg, err);
        if (st != MLMX_OK)
            break;
        mlmx_repstore_meta_free(&m, sng, sg);
        for (unsigned long long r = s->begin; st == MLMX_OK && r < s->end; r += blk) {
            size_t cnt = s->end - r < blk ? (size_t)(s->end - r) : blk;
            st = rs_read_block(s, r, cnt, vals, crit, conv, sing, nev, stat, err);
            if (st == MLMX_OK)
                st = rs_write_block(out, r, cnt, (const double *const *)vals, crit, conv, sing,
                                    nev, stat, err);
        }
        rs_store_free(s);
    }
    for (int k = 0; vals && k < ng; k++)
        free(vals[k]);
    free(vals);
    free(crit);
    free(conv);
    free(sing);
    free(stat);
    free(nev);
    return st;
}

static mlmx_status rs_merge(const char *const *inputs, int ninputs, const char *output,
                            mlmx_error *err)
{
    shard *sh = calloc((size_t)ninputs, sizeof *sh);
    shard **order = calloc((size_t)ninputs, sizeof *order);
    mlmx_status st = MLMX_OK;
    char *tmp = NULL;
    mlmx_repstore *out = NULL;
    if (!sh || !order) {
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "merging replicate files: out of memory");
        goto done;
    }
    for (int i = 0; st == MLMX_OK && i < ninputs; i++) {
        sh[i].path = inputs[i];
        order[i] = &sh[i];
        st = load_shard(&sh[i], err);
    }
    /* same run */
    for (int i = 1; st == MLMX_OK && i < ninputs; i++) {
        char who[1024];
        snprintf(who, sizeof who, "%s has", inputs[0]);
        st = rs_compare_run(inputs[i], &sh[i].m, sh[i].ng, sh[i].g, &sh[0].m, sh[0].ng, sh[0].g,
                         who, 0, err);
    }
    if (st != MLMX_OK)
        goto done;
    /* the slices tile [0, nsim) */
    qsort(order, (size_t)ninputs, sizeof *order, shard_cmp);
    unsigned long long nsim = sh[0].m.nsim, at = 0;
    for (int i = 0; i < ninputs; i++) {
        const shard *x = order[i];
        if (x->m.rep_begin > at) {
            if (i == 0)
                st = mlmx_err_set(err, MLMX_ERR_ARG,
                                  "merging replicate files: replicates [0, %llu) are in no "
                                  "shard (the first, %s, starts at %llu)",
                                  x->m.rep_begin, x->path, x->m.rep_begin);
            else
                st = mlmx_err_set(err, MLMX_ERR_ARG,
                                  "merging replicate files: gap: replicates [%llu, %llu) are in "
                                  "no shard (between %s and %s)",
                                  at, x->m.rep_begin, order[i - 1]->path, x->path);
            goto done;
        }
        if (x->m.rep_begin < at) {
            unsigned long long e = x->m.rep_end < at ? x->m.rep_end : at;
            st = mlmx_err_set(err, MLMX_ERR_ARG,
                              "merging replicate files: overlap: %s and %s both hold "
                              "replicates [%llu, %llu)",
                              order[i - 1]->path, x->path, x->m.rep_begin, e);
            goto done;
        }
        at = x->m.rep_end;
    }
    if (at < nsim) {
        st = mlmx_err_set(err, MLMX_ERR_ARG,
                          "merging replicate files: replicates [%llu, %llu) are in no shard "
                          "(the last, %s, ends at %llu)",
                          at, nsim, order[ninputs - 1]->path, at);
        goto done;
    }

    /* write a temporary file next to output, then rename it into place */
    mlmx_repstore_meta m = order[0]->m;
    m.rep_begin = 0;
    m.rep_end = nsim;
    for (unsigned attempt = 0; attempt < 100; attempt++) {
        free(tmp);
        tmp = temp_name(output, attempt);
        if (!tmp) {
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "merging replicate files: out of memory");
            goto done;
        }
        if (access(tmp, F_OK) == 0)
            continue;
        st = rs_create(tmp, H5F_ACC_EXCL, &m, order[0]->ng, order[0]->g, &out, err);
        if (st == MLMX_OK || access(tmp, F_OK) != 0)
            break;
    }
    if (st != MLMX_OK) {
        free(tmp);
        tmp = NULL; /* rs_create removed its file */
        if (err) {
            char why[MLMX_ERRMSG_MAX];
            snprintf(why, sizeof why, "%s", err->msg);
            mlmx_err_set(err, st, "cannot write '%s': %s", output, why);
        }
        goto done;
    }
    st = merge_copy(order, ninputs, out, err);
    if (st == MLMX_OK)
        st = rs_set_complete(out, 1, err);
    if (st == MLMX_OK) {
        st = rs_close(out, err);
        out = NULL;
    }
    if (st == MLMX_OK && rename(tmp, output) != 0)
        st = mlmx_err_set(err, MLMX_ERR_IO, "cannot write '%s': %s", output, strerror(errno));
done:
    if (out)
        rs_store_free(out);
    if (tmp) {
        if (st != MLMX_OK)
            unlink(tmp);
        free(tmp);
    }
    for (int i = 0; sh && i < ninputs; i++)
        mlmx_repstore_meta_free(&sh[i].m, sh[i].ng, sh[i].g);
    free(sh);
    free(order);
    return st;
}

mlmx_status mlmx_repstore_merge(const char *const *inputs, int ninputs, const char *output,
                                mlmx_error *err)
{
    if (!inputs || ninputs < 1 || !output)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "merging replicate files: no input files or no output file given");
    for (int i = 0; i < ninputs; i++)
        if (!inputs[i])
            return mlmx_err_set(err, MLMX_ERR_ARG, "merging replicate files: input %d is NULL",
                                i);
    mlmx_h5_saved q;
    mlmx_h5_enter(&q);
    mlmx_status st = rs_merge(inputs, ninputs, output, err);
    mlmx_h5_leave(&q);
    return st;
}
