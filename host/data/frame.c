/* The in-memory data frame: named numeric and factor columns of equal
 * length. Readers (CSV, HDF5) and the public API build frames only through
 * these functions, so the invariants (unique non-empty names, codes in
 * range, levels byte-sorted and distinct) are enforced in one place. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/frame.h"
#include "util/strbuf.h"

int mlmx_name_control_char(const char *name)
{
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return *p;
    return -1;
}

int mlmx_frame_find(const mlmx_data *d, const char *name)
{
    if (!d || !name)
        return -1;
    for (int j = 0; j < d->ncol; j++)
        if (strcmp(d->cols[j].name, name) == 0)
            return j;
    return -1;
}

mlmx_status mlmx_frame_new(size_t nrow, const char *source, mlmx_data **out, mlmx_error *err)
{
    if (!out)
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL output pointer");
    *out = NULL;
    mlmx_data *d = calloc(1, sizeof *d);
    if (!d)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory creating a data set");
    d->source = mlmx_strdup(source ? source : "");
    if (!d->source) {
        free(d);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory creating a data set");
    }
    d->nrow = nrow;
    *out = d;
    return MLMX_OK;
}

static void column_free(mlmx_column *c)
{
    free(c->name);
    free(c->num);
    free(c->codes);
    if (c->levels)
        for (int k = 0; k < c->nlevels; k++)
            free(c->levels[k]);
    free(c->levels);
}

void mlmx_frame_free(mlmx_data *d)
{
    if (!d)
        return;
    for (int j = 0; j < d->ncol; j++)
        column_free(&d->cols[j]);
    free(d->cols);
    free(d->source);
    free(d);
}

/* Checks the name and reserves a slot; the caller fills it and bumps ncol
 * only once everything else has succeeded, so a failure leaves d intact. */
static mlmx_status reserve_column(mlmx_data *d, const char *name, mlmx_error *err)
{
    if (!name || !name[0])
        return mlmx_err_set(err, MLMX_ERR_ARG, "column name must be a non-empty string");
    int bad = mlmx_name_control_char(name);
    if (bad >= 0)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "a column name contains the control character 0x%02X", bad);
    if (mlmx_frame_find(d, name) >= 0)
        return mlmx_err_set(err, MLMX_ERR_ARG, "column name '%s' is already used", name);
    if (d->ncol == INT_MAX)
        return mlmx_err_set(err, MLMX_ERR_DATA, "too many columns");
    if (d->ncol == d->cap) {
        int cap = d->cap < 8 ? 8 : (d->cap > INT_MAX / 2 ? INT_MAX : d->cap * 2);
        mlmx_column *c = realloc(d->cols, (size_t)cap * sizeof *c);
        if (!c)
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory adding column '%s'", name);
        d->cols = c;
        d->cap = cap;
    }
    return MLMX_OK;
}

mlmx_status mlmx_frame_add_numeric_owned(mlmx_data *d, const char *name, double *num,
                                         mlmx_error *err)
{
    mlmx_status st;
    if (!d) {
        free(num);
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL data set");
    }
    if (!num && d->nrow > 0) {
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL values for column '%s'",
                            name ? name : "");
    }
    if ((st = reserve_column(d, name, err)) != MLMX_OK) {
        free(num);
        return st;
    }
    char *nm = mlmx_strdup(name);
    if (!nm) {
        free(num);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory adding column '%s'", name);
    }
    mlmx_column *c = &d->cols[d->ncol];
    memset(c, 0, sizeof *c);
    c->name = nm;
    c->type = MLMX_COL_NUMERIC;
    c->num = num;
    d->ncol++;
    return MLMX_OK;
}

/* ---- factor construction ------------------------------------------------
 * Distinct strings are found with an open-addressing hash table (linear
 * time in the number of rows), then only the distinct values are sorted.
 * Sorting all rows instead would cost n log n string compares per column,
 * which dominates reading a large file such as InstEval. */

typedef struct level_set {
    const char **str;   /* distinct strings in order of first appearance */
    size_t n, cap;
    size_t *slot;       /* hash slots: index+1 into str, 0 = empty */
    uint64_t *hash;     /* hash of str[i], to skip most strcmp calls */
    size_t nslot;       /* power of two */
} level_set;

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h;
}

static int level_set_rehash(level_set *ls, size_t nslot)
{
    size_t *slot = calloc(nslot, sizeof *slot);
    if (!slot)
        return -1;
    for (size_t i = 0; i < ls->n; i++) {
        size_t k = (size_t)ls->hash[i] & (nslot - 1);
        while (slot[k])
            k = (k + 1) & (nslot - 1);
        slot[k] = i + 1;
    }
    free(ls->slot);
    ls->slot = slot;
    ls->nslot = nslot;
    return 0;
}

/* Returns the first-appearance id of s, adding it if new; -1 on no memory. */
static long long level_set_id(level_set *ls, const char *s)
{
    uint64_t h = str_hash(s);
    size_t k = (size_t)h & (ls->nslot - 1);
    while (ls->slot[k]) {
        size_t i = ls->slot[k] - 1;
        if (ls->hash[i] == h && strcmp(ls->str[i], s) == 0)
            return (long long)i;
        k = (k + 1) & (ls->nslot - 1);
    }
    if (ls->n == ls->cap) {
        size_t cap = ls->cap ? ls->cap * 2 : 16;
        const char **str = realloc(ls->str, cap * sizeof *str);
        if (!str)
            return -1;
        ls->str = str;
        uint64_t *hash = realloc(ls->hash, cap * sizeof *hash);
        if (!hash)
            return -1;
        ls->hash = hash;
        ls->cap = cap;
    }
    size_t i = ls->n++;
    ls->str[i] = s;
    ls->hash[i] = h;
    ls->slot[k] = i + 1;
    /* Keep the load factor at or below 1/2 so probe chains stay short. */
    if (ls->n * 2 > ls->nslot &&
        (ls->nslot > SIZE_MAX / 4 || level_set_rehash(ls, ls->nslot * 2) != 0))
        return -1;
    return (long long)i;
}

/* A (string, id) pair so qsort needs no global state (readers may run on
 * several threads at once). */
typedef struct level_ref {
    const char *s;
    size_t id;
} level_ref;

static int cmp_level_ref(const void *a, const void *b)
{
    return strcmp(((const level_ref *)a)->s, ((const level_ref *)b)->s);
}

mlmx_status mlmx_frame_add_factor_strings(mlmx_data *d, const char *name,
                                          const char *const *s, mlmx_error *err)
{
    mlmx_status st;
    if (!d)
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL data set");
    if (!s && d->nrow > 0)
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL strings for column '%s'",
                            name ? name : "");
    if ((st = reserve_column(d, name, err)) != MLMX_OK)
        return st;

    size_t n = d->nrow;
    int *codes = malloc((n ? n : 1) * sizeof *codes);
    level_set ls = {0};
    level_ref *order = NULL;
    size_t *rank = NULL;
    char **levels = NULL;
    char *nm = NULL;
    size_t nlev = 0;
    st = MLMX_ERR_NOMEM;
    if (!codes || level_set_rehash(&ls, 64) != 0)
        goto fail;

    for (size_t r = 0; r < n; r++) {
        if (!s[r]) {
            codes[r] = -1;
            continue;
        }
        long long id = level_set_id(&ls, s[r]);
        if (id < 0)
            goto fail;
        if (id >= INT_MAX) {
            st = mlmx_err_set(err, MLMX_ERR_DATA, "column '%s' has more than %d distinct values",
                              name, INT_MAX - 1);
            goto fail_set;
        }
        codes[r] = (int)id;
    }

    nlev = ls.n;
    order = malloc((nlev ? nlev : 1) * sizeof *order);
    rank = malloc((nlev ? nlev : 1) * sizeof *rank);
    levels = calloc(nlev ? nlev : 1, sizeof *levels);
    if (!order || !rank || !levels)
        goto fail;
    for (size_t i = 0; i < nlev; i++) {
        order[i].s = ls.str[i];
        order[i].id = i;
    }
    /* strcmp compares as unsigned char: byte order, i.e. R's sort() under
     * LC_COLLATE=C, independent of the caller's locale. */
    qsort(order, nlev, sizeof *order, cmp_level_ref);
    for (size_t i = 0; i < nlev; i++) {
        rank[order[i].id] = i;
        if (!(levels[i] = mlmx_strdup(order[i].s)))
            goto fail;
    }
    for (size_t r = 0; r < n; r++)
        if (codes[r] >= 0)
            codes[r] = (int)rank[codes[r]];
    if (!(nm = mlmx_strdup(name)))
        goto fail;

    mlmx_column *c = &d->cols[d->ncol];
    memset(c, 0, sizeof *c);
    c->name = nm;
    c->type = MLMX_COL_FACTOR;
    c->codes = codes;
    c->levels = levels;
    c->nlevels = (int)nlev;
    d->ncol++;
    free(order);
    free(rank);
    free(ls.str);
    free(ls.hash);
    free(ls.slot);
    return MLMX_OK;

fail:
    st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory adding column '%s'", name);
fail_set:
    free(codes);
    if (levels)
        for (size_t i = 0; i < nlev; i++)
            free(levels[i]);
    free(levels);
    free(order);
    free(rank);
    free(nm);
    free(ls.str);
    free(ls.hash);
    free(ls.slot);
    return st;
}
