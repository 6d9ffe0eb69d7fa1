/* Saved models: mlmx_fit_save writes a fit to HDF5 (docs/model-file.md),
 * mlmx_model_file_read reads it back. The file is written to a temporary
 * name and renamed; numeric datasets carry HDF5's Fletcher-32 checksum and
 * the metadata its own (libver 1.10 format), so a damaged file is refused. */
#define _POSIX_C_SOURCE 200809L
#include "output/modelfile.h"

#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_internal.h"
#include "data/h5common.h"
#include "lmm/fit.h"
#include "model/eval.h"
#include "util/sha256.h"
#include "util/strbuf.h"

static const char *nz(const char *s) { return s ? s : ""; }

static void close_id(hid_t *id, herr_t (*fn)(hid_t))
{
    if (*id >= 0)
        fn(*id);
    *id = -1;
}

/* A fixed-length string type of size bytes (with the terminating NUL).
 * Strings are stored fixed-length or as NUL-separated bytes, never as
 * variable-length strings: those live in HDF5's global heap, which has no
 * checksum and which libhdf5 reads without bounds checks (a damaged file
 * crashes it). */
static hid_t str_type(size_t size)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, size ? size : 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0))
        close_id(&t, H5Tclose);
    return t;
}

/* Dataset element types: numbers, ints, bytes. */
enum { K_DBL = 0, K_INT = 1, K_U8 = 2 };
static hid_t ftype_of(int kind)
{
    return kind == K_DBL ? H5T_IEEE_F64LE : kind == K_INT ? H5T_STD_I32LE : H5T_STD_U8LE;
}
static hid_t mtype_of(int kind)
{
    return kind == K_DBL ? H5T_NATIVE_DOUBLE : kind == K_INT ? H5T_NATIVE_INT : H5T_NATIVE_UCHAR;
}
static size_t size_of(int kind)
{
    return kind == K_DBL ? sizeof(double) : kind == K_INT ? sizeof(int) : 1;
}

/* ---- writing ----------------------------------------------------------- */

/* Writing state: ok turns 0 at the first failure, what names the object. */
typedef struct wr {
    int ok;
    const char *what;
} wr;

static void w_attr_str(wr *w, hid_t obj, const char *name, const char *val)
{
    if (!w->ok)
        return;
    const char *v = nz(val);
    hid_t t = str_type(strlen(v) + 1), sp = H5Screate(H5S_SCALAR), a = -1;
    if (t >= 0 && sp >= 0)
        a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, t, v) < 0) {
        w->ok = 0;
        w->what = name;
    }
    close_id(&a, H5Aclose);
    close_id(&sp, H5Sclose);
    close_id(&t, H5Tclose);
}

static void w_attr_num(wr *w, hid_t obj, const char *name, int is_int, double v)
{
    if (!w->ok)
        return;
    hid_t sp = H5Screate(H5S_SCALAR), a = -1;
    int iv = (int)v;
    if (sp >= 0)
        a = H5Acreate2(obj, name, is_int ? H5T_STD_I32LE : H5T_IEEE_F64LE, sp, H5P_DEFAULT,
                       H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, is_int ? H5T_NATIVE_INT : H5T_NATIVE_DOUBLE,
                          is_int ? (const void *)&iv : (const void *)&v) < 0) {
        w->ok = 0;
        w->what = name;
    }
    close_id(&a, H5Aclose);
    close_id(&sp, H5Sclose);
}

/* A numeric dataset of rank 1 (d0) or 2 (d0 x d1), chunked whole with a
 * Fletcher-32 checksum when non-empty. */
static void w_nums(wr *w, hid_t loc, const char *name, int kind, hsize_t d0, hsize_t d1,
                   const void *buf)
{
    if (!w->ok)
        return;
    hsize_t dims[2] = {d0, d1};
    int rank = d1 ? 2 : 1;
    hid_t sp = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE), d = -1;
    if (sp >= 0 && dcpl >= 0 && d0 > 0 && (H5Pset_chunk(dcpl, rank, dims) < 0 ||
                                           H5Pset_fletcher32(dcpl) < 0))
        close_id(&dcpl, H5Pclose);
    if (sp >= 0 && dcpl >= 0)
        d = H5Dcreate2(loc, name, ftype_of(kind), sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d < 0 ||
        (d0 > 0 && H5Dwrite(d, mtype_of(kind), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)) {
        w->ok = 0;
        w->what = name;
    }
    close_id(&d, H5Dclose);
    close_id(&dcpl, H5Pclose);
    close_id(&sp, H5Sclose);
}

/* n strings as one byte dataset, each with its terminating NUL (checksummed
 * like the numbers). */
static void w_strs(wr *w, hid_t loc, const char *name, char *const *v, hsize_t n)
{
    if (!w->ok)
        return;
    size_t len = 0;
    for (hsize_t i = 0; i < n; i++)
        len += strlen(v[i]) + 1;
    char *buf = malloc(len ? len : 1);
    if (!buf) {
        w->ok = 0;
        w->what = "out of memory";
        return;
    }
    for (hsize_t i = 0, at = 0; i < n; i++) {
        size_t l = strlen(v[i]) + 1;
        memcpy(buf + at, v[i], l);
        at += l;
    }
    w_nums(w, loc, name, K_U8, (hsize_t)len, 0, buf);
    free(buf);
}

static hid_t w_group(wr *w, hid_t loc, const char *name)
{
    hid_t g = w->ok ? H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    if (w->ok && g < 0) {
        w->ok = 0;
        w->what = name;
    }
    return g;
}

/* The recipe as four flat datasets (names, is_factor, nlevels, levels). */
static void w_recipe(wr *w, hid_t file, const mlmx_recipe *rc)
{
    hid_t g = w_group(w, file, "recipe");
    int nv = rc->nvars, total = 0;
    for (int v = 0; v < nv; v++)
        total += rc->vars[v].nlevels;
    char **names = calloc((size_t)nv + 1, sizeof *names);
    char **levels = calloc((size_t)total + 1, sizeof *levels);
    int *isf = calloc((size_t)nv + 1, sizeof *isf), *nl = calloc((size_t)nv + 1, sizeof *nl);
    if (!names || !levels || !isf || !nl) {
        w->ok = 0;
        w->what = "recipe (out of memory)";
    } else {
        for (int v = 0, at = 0; v < nv; v++) {
            names[v] = rc->vars[v].name;
            isf[v] = rc->vars[v].is_factor;
            nl[v] = rc->vars[v].nlevels;
            for (int l = 0; l < nl[v]; l++)
                levels[at++] = rc->vars[v].levels[l];
        }
        w_strs(w, g, "names", names, (hsize_t)nv);
        w_nums(w, g, "is_factor", 1, (hsize_t)nv, 0, isf);
        w_nums(w, g, "nlevels", 1, (hsize_t)nv, 0, nl);
        w_strs(w, g, "levels", levels, (hsize_t)total);
    }
    free(names);
    free(levels);
    free(isf);
    free(nl);
    close_id(&g, H5Gclose);
}

static void w_terms(wr *w, hid_t file, const mlmx_fit *f)
{
    const mlmx_model *m = mlmx_fit_model(f);
    hid_t g = w_group(w, file, "ranef");
    w_attr_num(w, g, "K", 1, m->K);
    for (int k = 0; k < m->K && w->ok; k++) {
        const mlmx_reterm_info *r = &m->re[k];
        char name[32];
        snprintf(name, sizeof name, "term%d", k);
        hid_t t = w_group(w, g, name);
        w_attr_str(w, t, "group", r->group);
        w_attr_str(w, t, "name", r->vcname);
        w_attr_num(w, t, "formula_index", 1, r->formula_index);
        w_strs(w, t, "colnames", r->colnames, (hsize_t)r->q);
        w_strs(w, t, "levels", r->levels, (hsize_t)r->nlevels);
        w_nums(w, t, "modes", 0, (hsize_t)r->nlevels, (hsize_t)r->q, f->ranef[k]);
        if (f->have_condsd)
            w_nums(w, t, "condsd", 0, (hsize_t)r->nlevels, (hsize_t)r->q, f->condsd[k]);
        close_id(&t, H5Gclose);
    }
    close_id(&g, H5Gclose);
}

static void w_body(wr *w, hid_t file, const mlmx_fit *f, const char *data_path, const char *sha,
                   int version)
{
    const mlmx_model *m = mlmx_fit_model(f);
    int glmm = f->family != MLMX_FAMILY_GAUSSIAN;
    w_attr_str(w, file, "format", "mlmx-model");
    w_attr_num(w, file, "format_version", 1, version);
    w_attr_str(w, file, "mlmx_version", MLMX_VERSION_STRING);
    w_attr_str(w, file, "formula", m->formula);
    w_attr_str(w, file, "response", m->response_name);
    w_attr_str(w, file, "weights", m->weights ? "(prior weights)" : "");
    w_attr_str(w, file, "family", mlmx_family_name(f->family));
    w_attr_str(w, file, "link", glmm ? mlmx_link_name(f->link) : "identity");
    w_attr_str(w, file, "method", glmm ? "Laplace/AGQ" : f->method == MLMX_ML ? "ML" : "REML");
    w_attr_num(w, file, "nagq", 1, glmm ? f->nagq : 0);
    w_attr_str(w, file, "data_file", data_path);
    w_attr_str(w, file, "data_sha256", sha);
    w_attr_num(w, file, "nobs", 0, (double)m->n);
    w_attr_num(w, file, "sigma", 0, f->sigma);
    w_attr_num(w, file, "nb_size", 0, f->family == MLMX_FAMILY_NEGBIN ? f->nb_size : NAN);
    w_attr_num(w, file, "criterion", 0, f->criterion);
    hid_t g = w_group(w, file, "fixef");
    w_strs(w, g, "names", m->fixef_names, (hsize_t)m->p);
    w_nums(w, g, "beta", 0, (hsize_t)m->p, 0, f->beta);
    w_nums(w, g, "vcov", 0, (hsize_t)m->p, (hsize_t)(m->p ? m->p : 0), f->vcov);
    close_id(&g, H5Gclose);
    g = w_group(w, file, "theta");
    w_strs(w, g, "names", m->theta_names, (hsize_t)m->ntheta);
    w_nums(w, g, "values", 0, (hsize_t)m->ntheta, 0, f->theta);
    close_id(&g, H5Gclose);
    g = w_group(w, file, "thresholds");
    w_strs(w, g, "names", f->thr_names, (hsize_t)f->nthr);
    w_nums(w, g, "values", 0, (hsize_t)f->nthr, 0, f->thr);
    close_id(&g, H5Gclose);
    w_recipe(w, file, &m->recipe);
    w_terms(w, file, f);
}

mlmx_status mlmx_fit_save(const mlmx_fit *f, const char *path, const char *data_path)
{
    return mlmx_model_file_write(f, path, data_path, MLMX_MODEL_FILE_FORMAT);
}

mlmx_status mlmx_model_file_write(const mlmx_fit *f, const char *path, const char *data_path,
                                  int version)
{
    mlmx_api_clear();
    if (!f || !path || !path[0])
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_fit_save: a fit and a path are needed");
    if (f->model->resid)
        return mlmx_api_failf(MLMX_ERR_UNSUPPORTED,
                              "mlmx_fit_save: a model with a residual correlation or variance "
                              "structure cannot be saved yet");
    if (mlmx_api_require_unstructured(f->model, "saving a fit (--save)"))
        return MLMX_ERR_UNSUPPORTED;
    char *sha = NULL;
    if (data_path && data_path[0] && !(sha = mlmx_file_sha256(data_path)))
        return mlmx_api_failf(MLMX_ERR_IO, "cannot read data file '%s' to hash it", data_path);
    char *tmp = mlmx_asprintf("%s.tmp.%ld", path, (long)getpid());
    if (!tmp) {
        free(sha);
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    }
    mlmx_h5_saved q;
    mlmx_h5_detail dt;
    mlmx_h5_enter(&q);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0)
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST);
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl >= 0 ? fapl : H5P_DEFAULT);
    close_id(&fapl, H5Pclose);
    mlmx_status st = MLMX_OK;
    if (file < 0) {
        st = mlmx_api_failf(MLMX_ERR_IO, "cannot create '%s': %s", tmp, mlmx_h5_reason(&dt));
    } else {
        wr w = {1, ""};
        w_body(&w, file, f, data_path, sha, version);
        if (H5Fclose(file) < 0 && w.ok) {
            w.ok = 0;
            w.what = "closing the file";
        }
        if (!w.ok)
            st = mlmx_api_failf(MLMX_ERR_IO, "cannot write model file '%s' (%s): %s", path,
                                w.what, mlmx_h5_reason(&dt));
        else if (rename(tmp, path) != 0)
            st = mlmx_api_failf(MLMX_ERR_IO, "cannot write model file '%s' (rename failed)",
                                path);
        if (st)
            remove(tmp);
    }
    mlmx_h5_leave(&q);
    free(tmp);
    free(sha);
    return st;
}

/* ---- reading ----------------------------------------------------------- */

/* Reading state: the first failure's status and message stay. */
typedef struct rd {
    const char *path;
    char where[64]; /* the group being read ("" for the root), for messages */
    mlmx_error err;
} rd;

static void rd_at(rd *r, const char *group) { snprintf(r->where, sizeof r->where, "%s", group); }

static int rd_fail(rd *r, const char *what, const char *name)
{
    if (!r->err.code) {
        mlmx_h5_detail dt;
        mlmx_err_set(&r->err, MLMX_ERR_PARSE, "model file '%s': %s '%s/%s' (%s)", r->path,
                     what, r->where, name, mlmx_h5_reason(&dt));
    }
    return 0;
}

static char *r_attr_str(rd *r, hid_t obj, const char *name)
{
    if (r->err.code)
        return NULL;
    hid_t a = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : -1;
    hid_t ft = a >= 0 ? H5Aget_type(a) : -1, t = -1;
    size_t size = ft >= 0 ? H5Tget_size(ft) : 0;
    char *out = NULL;
    if (a < 0 || ft < 0 || H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) != 0 ||
        size == 0 || size > (1u << 20) || (t = str_type(size)) < 0) {
        rd_fail(r, "missing or unreadable attribute", name);
    } else if (!(out = calloc(size + 1, 1))) {
        mlmx_err_set(&r->err, MLMX_ERR_NOMEM, "out of memory");
    } else if (H5Aread(a, t, out) < 0) {
        rd_fail(r, "cannot read attribute", name);
        free(out);
        out = NULL;
    }
    close_id(&t, H5Tclose);
    close_id(&ft, H5Tclose);
    close_id(&a, H5Aclose);
    return out;
}

static double r_attr_num(rd *r, hid_t obj, const char *name)
{
    double v = NAN;
    if (r->err.code)
        return v;
    hid_t a = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : -1;
    if (a < 0 || H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0)
        rd_fail(r, "missing or unreadable attribute", name);
    close_id(&a, H5Aclose);
    return v;
}

/* A dataset of `kind` elements, malloc'd, with *n its size: exactly *n
 * values when want is set (an error otherwise). */
static void *r_data(rd *r, hid_t loc, const char *name, int kind, size_t *n, int want)
{
    if (r->err.code)
        return NULL;
    hid_t d = H5Lexists(loc, name, H5P_DEFAULT) > 0 ? H5Dopen2(loc, name, H5P_DEFAULT) : -1;
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    void *buf = NULL;
    if (d < 0 || sp < 0 || np < 0) {
        rd_fail(r, "missing or unreadable dataset", name);
    } else if (want && (size_t)np != *n) {
        mlmx_err_set(&r->err, MLMX_ERR_PARSE, "model file '%s': dataset '%s/%s' has %lld "
                     "values, not %zu", r->path, r->where, name, (long long)np, *n);
    } else if (!(buf = malloc(((size_t)np ? (size_t)np : 1) * size_of(kind)))) {
        mlmx_err_set(&r->err, MLMX_ERR_NOMEM, "out of memory");
    } else if (np > 0 && H5Dread(d, mtype_of(kind), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        rd_fail(r, "cannot read dataset (damaged file?)", name);
    }
    close_id(&sp, H5Sclose);
    close_id(&d, H5Dclose);
    if (r->err.code) {
        free(buf);
        return NULL;
    }
    *n = (size_t)np;
    return buf;
}

static void *r_nums(rd *r, hid_t loc, const char *name, int kind, size_t n)
{
    return r_data(r, loc, name, kind, &n, 1);
}

/* The number of values of a dataset (0 after an error). */
static size_t r_count(rd *r, hid_t loc, const char *name)
{
    size_t n = 0;
    free(r_data(r, loc, name, K_DBL, &n, 0));
    return n;
}

/* Exactly n NUL-terminated strings (w_strs), as a malloc'd array of
 * malloc'd strings. */
static char **r_strs(rd *r, hid_t loc, const char *name, size_t n)
{
    size_t len = 0;
    char *buf = r_data(r, loc, name, K_U8, &len, 0);
    char **out = buf ? calloc(n ? n : 1, sizeof *out) : NULL;
    if (buf && !out)
        mlmx_err_set(&r->err, MLMX_ERR_NOMEM, "out of memory");
    size_t k = 0, at = 0;
    while (out && !r->err.code && at < len) {
        const char *e = memchr(buf + at, '\0', len - at);
        if (!e || k == n)
            break;
        if (!(out[k++] = mlmx_strdup(buf + at)))
            mlmx_err_set(&r->err, MLMX_ERR_NOMEM, "out of memory");
        at = (size_t)(e - buf) + 1;
    }
    if (out && !r->err.code && (k != n || at != len))
        mlmx_err_set(&r->err, MLMX_ERR_PARSE, "model file '%s': dataset '%s/%s' does not hold "
                     "%zu strings", r->path, r->where, name, n);
    free(buf);
    if (r->err.code && out) {
        mlmx_levels_free(out, (int)n);
        out = NULL;
    }
    return out;
}

static hid_t r_group(rd *r, hid_t loc, const char *name)
{
    if (r->err.code)
        return -1;
    hid_t g = H5Lexists(loc, name, H5P_DEFAULT) > 0 ? H5Gopen2(loc, name, H5P_DEFAULT) : -1;
    if (g < 0)
        rd_fail(r, "missing or unreadable group", name);
    return g;
}

static void r_recipe(rd *r, hid_t file, mlmx_recipe *rc)
{
    hid_t g = r_group(r, file, "recipe");
    rd_at(r, "/recipe");
    int nv = (int)r_count(r, g, "is_factor");
    char **names = r_strs(r, g, "names", (size_t)nv);
    int *isf = r_nums(r, g, "is_factor", 1, (size_t)nv);
    int *nl = r_nums(r, g, "nlevels", 1, (size_t)nv);
    size_t total = 0;
    for (int v = 0; !r->err.code && v < nv; v++)
        total += nl[v] > 0 ? (size_t)nl[v] : 0;
    char **levels = r_strs(r, g, "levels", total);
    for (int v = 0, at = 0; !r->err.code && v < nv; v++) {
        mlmx_recipe_record(rc, names[v], isf[v], levels + at, isf[v] ? nl[v] : 0, &r->err);
        at += nl[v] > 0 ? nl[v] : 0;
    }
    mlmx_levels_free(names, nv);
    mlmx_levels_free(levels, (int)total);
    free(isf);
    free(nl);
    close_id(&g, H5Gclose);
}

static void r_terms(rd *r, hid_t file, mlmx_model_file *m)
{
    hid_t g = r_group(r, file, "ranef");
    rd_at(r, "/ranef");
    double K = g >= 0 ? r_attr_num(r, g, "K") : 0;
    if (!r->err.code && !(K >= 0 && K <= 1000))
        mlmx_err_set(&r->err, MLMX_ERR_PARSE, "model file '%s': bad term count", r->path);
    if (!r->err.code && K > 0 && !(m->terms = calloc((size_t)K, sizeof *m->terms)))
        mlmx_err_set(&r->err, MLMX_ERR_NOMEM, "out of memory");
    for (int k = 0; !r->err.code && k < (int)K; k++) {
        mlmx_mf_term *t = &m->terms[k];
        m->K = k + 1;
        char name[32];
        snprintf(name, sizeof name, "term%d", k);
        hid_t tg = r_group(r, g, name);
        snprintf(r->where, sizeof r->where, "/ranef/term%d", k);
        t->group = r_attr_str(r, tg, "group");
        t->name = r_attr_str(r, tg, "name");
        t->formula_index = (int)r_attr_num(r, tg, "formula_index");
        hid_t d = tg >= 0 && H5Lexists(tg, "modes", H5P_DEFAULT) > 0
                      ? H5Dopen2(tg, "modes", H5P_DEFAULT) : -1;
        hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
        hsize_t dims[2] = {0, 0};
        if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 2 ||
            H5Sget_simple_extent_dims(sp, dims, NULL) != 2)
            rd_fail(r, "missing or malformed dataset", "modes");
        close_id(&sp, H5Sclose);
        close_id(&d, H5Dclose);
        t->nlevels = (int)dims[0];
        t->q = (int)dims[1];
        t->colnames = r_strs(r, tg, "colnames", (size_t)t->q);
        t->levels = r_strs(r, tg, "levels", (size_t)t->nlevels);
        t->modes = r_nums(r, tg, "modes", 0, dims[0] * dims[1]);
        if (tg >= 0 && H5Lexists(tg, "condsd", H5P_DEFAULT) > 0)
            t->condsd = r_nums(r, tg, "condsd", 0, dims[0] * dims[1]);
        close_id(&tg, H5Gclose);
    }
    close_id(&g, H5Gclose);
}

static int enum_of(const char *name, const char *(*fn)(int), int lo, int hi)
{
    for (int v = lo; v <= hi; v++)
        if (strcmp(fn(v), name) == 0)
            return v;
    return lo - 1;
}
static const char *fam_name(int v) { return mlmx_family_name((mlmx_family)v); }
static const char *lnk_name(int v) { return mlmx_link_name((mlmx_link)v); }

static void r_body(rd *r, hid_t file, mlmx_model_file *m)
{
    m->formula = r_attr_str(r, file, "formula");
    m->response = r_attr_str(r, file, "response");
    m->weights = r_attr_str(r, file, "weights");
    m->data_file = r_attr_str(r, file, "data_file");
    m->data_sha256 = r_attr_str(r, file, "data_sha256");
    char *fam = r_attr_str(r, file, "family"), *lnk = r_attr_str(r, file, "link");
    char *meth = r_attr_str(r, file, "method");
    if (!r->err.code) {
        int fv = enum_of(fam, fam_name, MLMX_FAMILY_GAUSSIAN, MLMX_FAMILY_ORDINAL);
        int lv = strcmp(lnk, "identity") == 0 ? MLMX_LINK_DEFAULT
                                               : enum_of(lnk, lnk_name, MLMX_LINK_LOGIT,
                                                         MLMX_LINK_LOG);
        if (fv < MLMX_FAMILY_GAUSSIAN || lv < MLMX_LINK_DEFAULT)
            mlmx_err_set(&r->err, MLMX_ERR_PARSE, "model file '%s': unknown family '%s' or "
                         "link '%s'", r->path, fam, lnk);
        m->family = (mlmx_family)fv;
        m->link = (mlmx_link)lv;
        m->method = strcmp(meth, "ML") == 0 ? MLMX_ML : MLMX_REML;
    }
    free(fam);
    free(lnk);
    free(meth);
    m->nagq = (int)r_attr_num(r, file, "nagq");
    m->nobs = r_attr_num(r, file, "nobs");
    m->sigma = r_attr_num(r, file, "sigma");
    m->nb_size = r_attr_num(r, file, "nb_size");
    m->criterion = r_attr_num(r, file, "criterion");
    size_t n = 0;
    hid_t g = r_group(r, file, "fixef");
    rd_at(r, "/fixef");
    m->beta = r_data(r, g, "beta", K_DBL, &n, 0);
    m->p = (int)n;
    m->fixef_names = r_strs(r, g, "names", n);
    m->vcov = r_nums(r, g, "vcov", K_DBL, n * n);
    close_id(&g, H5Gclose);
    rd_at(r, "");
    g = r_group(r, file, "theta");
    rd_at(r, "/theta");
    n = 0;
    m->theta = r_data(r, g, "values", K_DBL, &n, 0);
    m->ntheta = (int)n;
    m->theta_names = r_strs(r, g, "names", n);
    close_id(&g, H5Gclose);
    rd_at(r, "");
    g = r_group(r, file, "thresholds");
    rd_at(r, "/thresholds");
    n = 0;
    m->thr = r_data(r, g, "values", K_DBL, &n, 0);
    m->nthr = (int)n;
    m->thr_names = r_strs(r, g, "names", n);
    close_id(&g, H5Gclose);
    rd_at(r, "");
    r_recipe(r, file, &m->recipe);
    rd_at(r, "");
    r_terms(r, file, m);
}

/* The file's identity: an mlmx model file of a format this build reads. */
static void r_header(rd *r, hid_t file, mlmx_model_file *m)
{
    char *fmt = r_attr_str(r, file, "format");
    if (!fmt && r->err.code != MLMX_ERR_NOMEM)
        mlmx_err_set(&r->err, MLMX_ERR_PARSE,
                     "'%s' is not an mlmx model file (no 'format' attribute)", r->path);
    else if (fmt && strcmp(fmt, "mlmx-model") != 0)
        mlmx_err_set(&r->err, MLMX_ERR_PARSE, "'%s' is not an mlmx model file (format '%s')",
                     r->path, fmt);
    free(fmt);
    if (r->err.code)
        return;
    double v = r_attr_num(r, file, "format_version");
    m->mlmx_version = r_attr_str(r, file, "mlmx_version");
    if (!r->err.code && v != MLMX_MODEL_FILE_FORMAT)
        mlmx_err_set(&r->err, MLMX_ERR_UNSUPPORTED,
                     "model file '%s' has format version %g (written by mlmx %s); this build "
                     "(mlmx %s) reads format version %d",
                     r->path, v, m->mlmx_version, MLMX_VERSION_STRING, MLMX_MODEL_FILE_FORMAT);
    m->format_version = (int)v;
}

mlmx_status mlmx_model_file_read(const char *path, mlmx_model_file **out)
{
    mlmx_api_clear();
    if (!path || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_model_file_read: a path is needed");
    *out = NULL;
    if (access(path, R_OK) != 0)
        return mlmx_api_failf(MLMX_ERR_IO, "cannot read model file '%s'", path);
    mlmx_model_file *m = calloc(1, sizeof *m);
    if (!m)
        return mlmx_api_failf(MLMX_ERR_NOMEM, "out of memory");
    rd r = {path, "", {MLMX_OK, ""}};
    mlmx_h5_saved q;
    mlmx_h5_enter(&q);
    hid_t file = -1, fapl = H5Pcreate(H5P_FILE_ACCESS);
    mlmx_h5_detail dt;
    /* strong close: a read that failed half-way leaves no object open */
    if (fapl >= 0)
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    if (H5Fis_hdf5(path) <= 0)
        mlmx_err_set(&r.err, MLMX_ERR_PARSE, "'%s' is not an HDF5 file (or is damaged)", path);
    else if ((file = H5Fopen(path, H5F_ACC_RDONLY, fapl >= 0 ? fapl : H5P_DEFAULT)) < 0)
        mlmx_err_set(&r.err, MLMX_ERR_PARSE, "model file '%s': cannot open (damaged file?): %s",
                     path, mlmx_h5_reason(&dt));
    else {
        r_header(&r, file, m);
        if (!r.err.code)
            r_body(&r, file, m);
    }
    close_id(&file, H5Fclose);
    close_id(&fapl, H5Pclose);
    mlmx_h5_leave(&q);
    if (r.err.code) {
        mlmx_model_file_free(m);
        return mlmx_api_fail(&r.err);
    }
    *out = m;
    return MLMX_OK;
}

void mlmx_model_file_free(mlmx_model_file *m)
{
    if (!m)
        return;
    free(m->mlmx_version);
    free(m->formula);
    free(m->response);
    free(m->weights);
    free(m->data_file);
    free(m->data_sha256);
    mlmx_levels_free(m->fixef_names, m->p);
    free(m->beta);
    free(m->vcov);
    mlmx_levels_free(m->theta_names, m->ntheta);
    free(m->theta);
    mlmx_levels_free(m->thr_names, m->nthr);
    free(m->thr);
    for (int k = 0; k < m->K; k++) {
        mlmx_mf_term *t = &m->terms[k];
        free(t->group);
        free(t->name);
        mlmx_levels_free(t->colnames, t->q);
        mlmx_levels_free(t->levels, t->nlevels);
        free(t->modes);
        free(t->condsd);
    }
    free(m->terms);
    mlmx_recipe_clear(&m->recipe);
    free(m);
}

const char *mlmx_model_file_formula(const mlmx_model_file *m) { return m ? m->formula : NULL; }
const char *mlmx_model_file_version(const mlmx_model_file *m)
{
    return m ? m->mlmx_version : NULL;
}
const char *mlmx_model_file_data(const mlmx_model_file *m) { return m ? m->data_file : NULL; }
const char *mlmx_model_file_data_sha256(const mlmx_model_file *m)
{
    return m ? m->data_sha256 : NULL;
}
mlmx_family mlmx_model_file_family(const mlmx_model_file *m)
{
    return m ? m->family : MLMX_FAMILY_GAUSSIAN;
}

mlmx_status mlmx_model_file_check_data(const mlmx_model_file *m, const char *data_path)
{
    mlmx_api_clear();
    if (!m || !data_path)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_model_file_check_data: a model file and a "
                                            "data path are needed");
    if (!m->data_sha256[0])
        return mlmx_api_failf(MLMX_ERR_DATA, "the model file records no data file to check "
                                             "'%s' against", data_path);
    char *sha = mlmx_file_sha256(data_path);
    if (!sha)
        return mlmx_api_failf(MLMX_ERR_IO, "cannot read data file '%s'", data_path);
    int same = strcmp(sha, m->data_sha256) == 0;
    free(sha);
    if (!same)
        return mlmx_api_failf(MLMX_ERR_DATA,
                              "data file '%s' is not the one the model was fitted to (its "
                              "SHA-256 differs from that of '%s' recorded in the model file)",
                              data_path, m->data_file);
    return MLMX_OK;
}
