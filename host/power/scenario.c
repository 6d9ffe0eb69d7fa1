/* Power-analysis scenario files: JSON read with jansson, validated into a
 * plain struct, and the design generator. docs/scenarios.md describes the
 * format. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "data/frame.h"
#include "formula/formula.h"
#include "power/scenario.h"
#include "random.h"
#include "util/strbuf.h"

/* The design is drawn with this replicate index, reserved for it. */
#define DESIGN_REPLICATE 0xFFFFFFFFu
/* Streams of the drawn level sizes: SIZE_STREAM + level index. */
#define SIZE_STREAM 0x10000u
/* Largest design (rows), and largest units / nsim values accepted. */
#define MAX_ROWS ((size_t)INT32_MAX)
#define MAX_COUNT 1000000000L

/* ------------------------------------------------------------ errors */

typedef struct pctx {
    const char *src;
    mlmx_error *err;
    const char *model;   /* --model (replaces pilot.model), or NULL */
} pctx;

static mlmx_status failv(pctx *c, mlmx_status code, const char *fmt, va_list ap)
{
    char buf[900];
    vsnprintf(buf, sizeof buf, fmt, ap);
    /* one line: newlines and tabs become spaces */
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    return mlmx_err_set(c->err, code, "%s: %s", c->src, buf);
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static mlmx_status fail(pctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mlmx_status st = failv(c, MLMX_ERR_PARSE, fmt, ap);
    va_end(ap);
    return st;
}

static mlmx_status nomem(pctx *c)
{
    return mlmx_err_set(c->err, MLMX_ERR_NOMEM, "%s: out of memory", c->src);
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    default: return "null";
    }
}

/* "design" + "levels" -> "design.levels"; "" + "nsim" -> "nsim" */
/* Paths are for messages: a long one is cut short (the return value is
 * checked only to say so to the compiler). */
static void path_key(char *buf, size_t n, const char *base, const char *key)
{
    int r = base && base[0] ? snprintf(buf, n, "%s.%s", base, key) : snprintf(buf, n, "%s", key);
    if (r < 0)
        buf[0] = '\0';
}

static void path_index(char *buf, size_t n, const char *base, size_t i)
{
    if (snprintf(buf, n, "%s[%zu]", base, i) < 0)
        buf[0] = '\0';
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return 99;
    size_t d[41][41];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

/* Every key of obj must be in known (NULL-terminated). */
static mlmx_status check_keys(pctx *c, json_t *obj, const char *path, const char *const *known)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (ok)
            continue;
        mlmx_strbuf b = {0};
        const char *best = NULL;
        size_t bestd = 3;
        for (int i = 0; known[i]; i++) {
            mlmx_sb_printf(&b, "%s%s", i ? ", " : "", known[i]);
            size_t dd = edit_distance(key, known[i]);
            if (dd < bestd || (dd == bestd && !best && strcasecmp(key, known[i]) == 0)) {
                bestd = dd;
                best = known[i];
            }
        }
        for (int i = 0; known[i] && !best; i++)
            if (strcasecmp(key, known[i]) == 0)
                best = known[i];
        char hint[128] = "";
        if (best)
            snprintf(hint, sizeof hint, "did you mean '%s'? ", best);
        mlmx_status st = fail(c, "unknown key '%s' %s%s (%sknown keys: %s)", key,
                              path && path[0] ? "in " : "at the top level", path ? path : "", hint,
                              b.s ? b.s : "");
        mlmx_sb_free(&b);
        return st;
    }
    return MLMX_OK;
}

mlmx_status mlmx_sc_check_keys(const char *src, json_t *obj, const char *path,
                               const char *const *known, mlmx_error *err)
{
    pctx c = {src, err, NULL};
    return check_keys(&c, obj, path, known);
}

static mlmx_status want_type(pctx *c, json_t *v, const char *path, int ok, const char *what)
{
    if (ok)
        return MLMX_OK;
    return fail(c, "%s must be %s (got %s)", path, what, type_name(v));
}

/* A string member: *out is a malloc'd copy, or NULL when absent and not
 * required. */
static mlmx_status get_string(pctx *c, json_t *obj, const char *key, const char *base,
                              int required, char **out)
{
    char path[256];
    path_key(path, sizeof path, base, key);
    *out = NULL;
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required)
            return fail(c, "%s is missing", path);
        return MLMX_OK;
    }
    mlmx_status st = want_type(c, v, path, json_is_string(v), "a string");
    if (st)
        return st;
    const char *s = json_string_value(v);
    if (!s[0])
        return fail(c, "%s must not be empty", path);
    if (strlen(s) != json_string_length(v))
        return fail(c, "%s contains a NUL character", path);
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return fail(c, "%s contains a control character", path);
    *out = mlmx_strdup(s);
    return *out ? MLMX_OK : nomem(c);
}

static mlmx_status num_value(pctx *c, json_t *v, const char *path, double *out)
{
    mlmx_status st = want_type(c, v, path, json_is_number(v), "a number");
    if (st)
        return st;
    *out = json_number_value(v);
    if (!isfinite(*out))
        return fail(c, "%s must be finite", path);
    return MLMX_OK;
}

/* A number member; *present says whether it was there (NULL: required). */
static mlmx_status get_number(pctx *c, json_t *obj, const char *key, const char *base,
                              int *present, double *out)
{
    char path[256];
    path_key(path, sizeof path, base, key);
    json_t *v = json_object_get(obj, key);
    if (present)
        *present = v != NULL;
    if (!v)
        return present ? MLMX_OK : fail(c, "%s is missing", path);
    return num_value(c, v, path, out);
}

static mlmx_status long_value(pctx *c, json_t *v, const char *path, long lo, long *out)
{
    double x;
    mlmx_status st = num_value(c, v, path, &x);
    if (st)
        return st;
    if (x != floor(x))
        return fail(c, "%s must be a whole number (got %g)", path, x);
    if (x < (double)lo)
        return fail(c, "%s must be at least %ld (got %.0f)", path, lo, x);
    if (x > (double)MAX_COUNT)
        return fail(c, "%s must be at most %ld (got %.0f)", path, MAX_COUNT, x);
    *out = (long)x;
    return MLMX_OK;
}

static int name_ok(const char *s)
{
    /* names become column names and formula symbols */
    for (const char *p = s; *p; p++)
        if (*p == ':' || *p == '`' || *p == '"')
            return 0;
    return s[0] != '\0';
}

/* ------------------------------------------------------------ tables of names */

static int find_name(char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

static void list_names(mlmx_strbuf *b, char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        mlmx_sb_printf(b, "%s%s", i ? ", " : "", names[i]);
    if (n == 0)
        mlmx_sb_puts(b, "none");
}

/* What the formula says, for the cross-checks. */
typedef struct fgroup {
    char *label;
    int ncol;
    char **cols;
    int *term;   /* which random-effect term of the formula each column is in */
    int known;   /* 0 when a column name depends on data (factor() in the term) */
} fgroup;

typedef struct finfo {
    int nfix;
    char **fix;      /* coefficient names (numeric covariates) */
    int fix_known;
    int nterms;
    char **terms;    /* fixed-effect term labels, for LRT drops */
    int ngroups;
    fgroup *groups;
    int nvars;
    const char **vars; /* pointers into the formula */
} finfo;

static void finfo_free(finfo *fi)
{
    for (int i = 0; i < fi->nfix; i++)
        free(fi->fix[i]);
    free(fi->fix);
    for (int i = 0; i < fi->nterms; i++)
        free(fi->terms[i]);
    free(fi->terms);
    for (int g = 0; g < fi->ngroups; g++) {
        free(fi->groups[g].label);
        for (int i = 0; i < fi->groups[g].ncol; i++)
            free(fi->groups[g].cols[i]);
        free(fi->groups[g].cols);
        free(fi->groups[g].term);
    }
    free(fi->groups);
    free(fi->vars);
    memset(fi, 0, sizeof *fi);
}

static int has_factor_call(const mlmx_expr *e)
{
    if (!e)
        return 0;
    if (e->kind == MLMX_EX_CALL && e->name &&
        (strcmp(e->name, "factor") == 0 || strcmp(e->name, "as.factor") == 0 ||
         strcmp(e->name, "ordered") == 0))
        return 1;
    for (int i = 0; i < e->nargs; i++)
        if (has_factor_call(e->args[i]))
            return 1;
    return 0;
}

/* "x:log(z)" for a term; NULL on OOM. *factor set when a name depends on data. */
static char *term_label(const mlmx_term *t, int *factor)
{
    mlmx_strbuf b = {0};
    for (int a = 0; a < t->nvars; a++) {
        char *d = mlmx_expr_deparse(t->vars[a]);
        if (!d) {
            mlmx_sb_free(&b);
            return NULL;
        }
        mlmx_sb_printf(&b, "%s%s", a ? ":" : "", d);
        free(d);
        if (has_factor_call(t->vars[a]))
            *factor = 1;
    }
    if (b.oom || !b.s) {
        mlmx_sb_free(&b);
        return NULL;
    }
    return b.s;
}

static int push_name(char ***arr, int *n, char *s)
{
    if (!s)
        return -1;
    char **p = realloc(*arr, (size_t)(*n + 1) * sizeof *p);
    if (!p) {
        free(s);
        return -1;
    }
    p[(*n)++] = s;
    *arr = p;
    return 0;
}

static mlmx_status formula_info(pctx *c, const mlmx_formula *f, finfo *fi)
{
    memset(fi, 0, sizeof *fi);
    fi->fix_known = 1;
    if (f->fixed.intercept && push_name(&fi->fix, &fi->nfix, mlmx_strdup("(Intercept)")))
        return nomem(c);
    for (int t = 0; t < f->fixed.nterms; t++) {
        int factor = 0;
        char *l = term_label(&f->fixed.terms[t], &factor);
        if (!l)
            return nomem(c);
        char *l2 = mlmx_strdup(l);
        if (push_name(&fi->fix, &fi->nfix, l) || push_name(&fi->terms, &fi->nterms, l2))
            return nomem(c);
        if (factor)
            fi->fix_known = 0;
    }
    for (int k = 0; k < f->nre; k++) {
        const mlmx_reterm *r = &f->re[k];
        int g;
        for (g = 0; g < fi->ngroups; g++)
            if (strcmp(fi->groups[g].label, r->label) == 0)
                break;
        if (g == fi->ngroups) {
            fgroup *p = realloc(fi->groups, (size_t)(fi->ngroups + 1) * sizeof *p);
            if (!p)
                return nomem(c);
            fi->groups = p;
            memset(&p[g], 0, sizeof p[g]);
            p[g].known = 1;
            fi->ngroups++;
            if (!(p[g].label = mlmx_strdup(r->label)))
                return nomem(c);
        }
        fgroup *gr = &fi->groups[g];
        int ncol = (r->lhs.intercept ? 1 : 0) + r->lhs.nterms;
        int *tp = realloc(gr->term, (size_t)(gr->ncol + ncol) * sizeof *tp);
        if (!tp)
            return nomem(c);
        gr->term = tp;
        if (r->lhs.intercept) {
            tp[gr->ncol] = k;
            if (push_name(&gr->cols, &gr->ncol, mlmx_strdup("(Intercept)")))
                return nomem(c);
        }
        for (int t = 0; t < r->lhs.nterms; t++) {
            int factor = 0;
            char *l = term_label(&r->lhs.terms[t], &factor);
            tp[gr->ncol] = k;
            if (push_name(&gr->cols, &gr->ncol, l))
                return nomem(c);
            if (factor)
                gr->known = 0;
        }
    }
    int nv = 0;
    const char **vars = NULL;
    if (mlmx_formula_variables(f, &vars, &nv, c->err))
        return c->err ? c->err->code : MLMX_ERR_NOMEM;
    fi->vars = vars;
    fi->nvars = nv;
    return MLMX_OK;
}

/* ------------------------------------------------------------ sections */

static const char *const top_keys[] = {"formula", "family", "link",  "method", "design",
                                       "fixed",   "random", "sigma", "thresholds", "size",
                                       "test",    "alpha",  "nsim",  "seed",   "curve",
                                       "pilot",   "residual", NULL};

static mlmx_status parse_family(pctx *c, json_t *root, mlmx_scenario *sc)
{
    char *fam = NULL, *link = NULL, *method = NULL;
    mlmx_status st = get_string(c, root, "family", "", 0, &fam);
    if (!st)
        st = get_string(c, root, "link", "", 0, &link);
    if (!st)
        st = get_string(c, root, "method", "", 0, &method);
    if (st)
        goto out;
    static const char *const fams[] = {"gaussian", "binomial", "poisson", "negbin", "ordinal"};
    sc->family = MLMX_FAMILY_GAUSSIAN;
    if (fam) {
        int i;
        for (i = 0; i < 5; i++)
            if (strcmp(fam, fams[i]) == 0)
                break;
        if (i == 5) {
            st = fail(c, "family '%s' is not known (gaussian, binomial, poisson, negbin, ordinal)",
                      fam);
            goto out;
        }
        sc->family = (mlmx_family)i;
    }
    sc->link = MLMX_LINK_DEFAULT;
    if (link) {
        static const char *const links[] = {"logit", "probit", "cloglog", "log"};
        int i;
        for (i = 0; i < 4; i++)
            if (strcmp(link, links[i]) == 0)
                break;
        int ok;
        switch (sc->family) {
        case MLMX_FAMILY_GAUSSIAN: ok = strcmp(link, "identity") == 0; i = -1; break;
        case MLMX_FAMILY_BINOMIAL:
        case MLMX_FAMILY_ORDINAL: ok = i >= 0 && i <= 2; break;
        default: ok = i == 3; break;
        }
        if (!ok) {
            static const char *const allowed[] = {"identity", "logit, probit or cloglog",
                                                  "log", "log", "logit, probit or cloglog"};
            st = fail(c, "link '%s' does not go with family %s (links: %s)", link,
                      fams[sc->family], allowed[sc->family]);
            goto out;
        }
        sc->link = i >= 0 ? (mlmx_link)i : MLMX_LINK_DEFAULT;
    }
    sc->method = sc->family == MLMX_FAMILY_GAUSSIAN ? MLMX_REML : MLMX_ML;
    if (method) {
        if (sc->family != MLMX_FAMILY_GAUSSIAN) {
            st = fail(c, "method applies to gaussian models only (family is %s, fitted by "
                         "maximum likelihood)",
                      fams[sc->family]);
            goto out;
        }
        if (strcasecmp(method, "REML") == 0)
            sc->method = MLMX_REML;
        else if (strcasecmp(method, "ML") == 0)
            sc->method = MLMX_ML;
        else {
            st = fail(c, "method '%s' is not known (REML or ML)", method);
            goto out;
        }
    }
out:
    free(fam);
    free(link);
    free(method);
    return st;
}

static int level_index(const mlmx_scenario *sc, const char *name)
{
    for (int k = 0; k < sc->nlevels; k++)
        if (strcmp(sc->levels[k].name, name) == 0)
            return k;
    return -1;
}

static mlmx_status parse_size(pctx *c, json_t *v, const char *path, int first, mlmx_sc_level *lv,
                              int have_units)
{
    if (json_is_string(v)) {
        if (strcmp(json_string_value(v), "fixed") != 0)
            return fail(c, "%s must be \"fixed\", {\"poisson\": mean} or {\"uniform\": [min, max]} "
                           "(got \"%s\")",
                        path, json_string_value(v));
        if (!have_units)
            return fail(c, "%s is \"fixed\" but the level has no units", path);
        return MLMX_OK;
    }
    mlmx_status st = want_type(c, v, path, json_is_object(v),
                               "\"fixed\", {\"poisson\": mean} or {\"uniform\": [min, max]}");
    if (st)
        return st;
    static const char *const keys[] = {"poisson", "uniform", NULL};
    if ((st = check_keys(c, v, path, keys)))
        return st;
    if (json_object_size(v) != 1)
        return fail(c, "%s must hold one of poisson or uniform", path);
    if (first)
        return fail(c, "%s: the first level's units are a total and cannot be drawn", path);
    if (have_units)
        return fail(c, "%s: give either units (a fixed number) or a drawn size, not both",
                    path);
    char p2[256];
    json_t *w = json_object_get(v, "poisson");
    if (w) {
        path_key(p2, sizeof p2, path, "poisson");
        if ((st = num_value(c, w, p2, &lv->size_mean)))
            return st;
        if (!(lv->size_mean > 0.0) || lv->size_mean > (double)MAX_COUNT)
            return fail(c, "%s must be positive (got %g)", p2, lv->size_mean);
        lv->size = MLMX_SC_SIZE_POISSON;
        return MLMX_OK;
    }
    w = json_object_get(v, "uniform");
    path_key(p2, sizeof p2, path, "uniform");
    if (!json_is_array(w) || json_array_size(w) != 2)
        return fail(c, "%s must be [min, max] (got %s)", p2,
                    json_is_array(w) ? "an array of another length" : type_name(w));
    char p3[256];
    path_index(p3, sizeof p3, p2, 0);
    if ((st = long_value(c, json_array_get(w, 0), p3, 1, &lv->size_min)))
        return st;
    path_index(p3, sizeof p3, p2, 1);
    if ((st = long_value(c, json_array_get(w, 1), p3, 1, &lv->size_max)))
        return st;
    if (lv->size_max < lv->size_min)
        return fail(c, "%s: max %ld is below min %ld", p2, lv->size_max, lv->size_min);
    lv->size = MLMX_SC_SIZE_UNIFORM;
    return MLMX_OK;
}

/* design.covariates: name, level and one distribution each. */
static mlmx_status parse_covariates(pctx *c, json_t *d, mlmx_scenario *sc)
{
    mlmx_status st;
    json_t *cv = json_object_get(d, "covariates");
    if (!cv)
        return MLMX_OK;
    if ((st = want_type(c, cv, "design.covariates", json_is_array(cv), "an array")))
        return st;
    size_t nc = json_array_size(cv);
    if (nc > 1000)
        return fail(c, "design.covariates has %zu entries (at most 1000)", nc);
    sc->covs = calloc(nc ? nc : 1, sizeof *sc->covs);
    if (!sc->covs)
        return nomem(c);
    static const char *const ckeys[] = {"name", "level", "normal", "binary", "uniform", "sequence",
                                        NULL};
    for (size_t i = 0; i < nc; i++) {
        char path[256], p2[256];
        path_index(path, sizeof path, "design.covariates", i);
        json_t *o = json_array_get(cv, i);
        if ((st = want_type(c, o, path, json_is_object(o), "an object")) ||
            (st = check_keys(c, o, path, ckeys)))
            return st;
        mlmx_sc_covariate *C = &sc->covs[i];
        sc->ncov = (int)i + 1;
        char *lev = NULL;
        if ((st = get_string(c, o, "name", path, 1, &C->name)) ||
            (st = get_string(c, o, "level", path, 1, &lev)))
            return st;
        path_key(p2, sizeof p2, path, "name");
        if (!name_ok(C->name)) {
            free(lev);
            return fail(c, "%s '%s' may not contain ':', '`' or '\"'", p2, C->name);
        }
        if (level_index(sc, C->name) >= 0) {
            free(lev);
            return fail(c, "%s '%s' is already the name of a level", p2, C->name);
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(sc->covs[j].name, C->name) == 0) {
                free(lev);
                return fail(c, "%s: covariate '%s' is given twice", p2, C->name);
            }
        C->level = level_index(sc, lev);
        if (C->level < 0) {
            mlmx_strbuf b = {0};
            for (int k = 0; k < sc->nlevels; k++)
                mlmx_sb_printf(&b, "%s%s", k ? ", " : "", sc->levels[k].name);
            path_key(p2, sizeof p2, path, "level");
            st = fail(c, "%s '%s' is not a level of the design (levels: %s)", p2, lev,
                      b.s ? b.s : "");
            mlmx_sb_free(&b);
            free(lev);
            return st;
        }
        free(lev);
        static const char *const dists[] = {"normal", "binary", "uniform", "sequence"};
        int found = -1, count = 0;
        for (int k = 0; k < 4; k++)
            if (json_object_get(o, dists[k])) {
                found = k;
                count++;
            }
        if (count != 1)
            return fail(c, "%s needs exactly one distribution: normal, binary, uniform or sequence",
                        path);
        C->dist = (mlmx_sc_dist)found;
        path_key(p2, sizeof p2, path, dists[found]);
        json_t *p = json_object_get(o, dists[found]);
        if ((st = want_type(c, p, p2, json_is_object(p), "an object")))
            return st;
        static const char *const nk[] = {"mean", "sd", NULL}, *const bk[] = {"p", NULL},
                                 *const uk[] = {"min", "max", NULL},
                                 *const sk[] = {"start", "step", NULL};
        const char *const *kk = found == 0 ? nk : found == 1 ? bk : found == 2 ? uk : sk;
        if ((st = check_keys(c, p, p2, kk)))
            return st;
        char p3[256];
        switch (C->dist) {
        case MLMX_SC_NORMAL: {
            int has_mean = 0, has_sd = 0;
            C->a = 0.0;
            C->b = 1.0;
            if ((st = get_number(c, p, "mean", p2, &has_mean, &C->a)) ||
                (st = get_number(c, p, "sd", p2, &has_sd, &C->b)))
                return st;
            path_key(p3, sizeof p3, p2, "sd");
            if (C->b < 0.0)
                return fail(c, "%s is negative (%g): a negative SD for covariate '%s'", p3, C->b,
                            C->name);
            break;
        }
        case MLMX_SC_BINARY:
            if ((st = get_number(c, p, "p", p2, NULL, &C->a)))
                return st;
            path_key(p3, sizeof p3, p2, "p");
            if (!(C->a >= 0.0 && C->a <= 1.0))
                return fail(c, "%s must be in [0, 1] (got %g)", p3, C->a);
            break;
        case MLMX_SC_UNIFORM:
            if ((st = get_number(c, p, "min", p2, NULL, &C->a)) ||
                (st = get_number(c, p, "max", p2, NULL, &C->b)))
                return st;
            if (!(C->b >= C->a))
                return fail(c, "%s: max %g is below min %g", p2, C->b, C->a);
            break;
        case MLMX_SC_SEQUENCE: {
            int h1 = 0, h2 = 0;
            C->a = 0.0;
            C->b = 1.0;
            if ((st = get_number(c, p, "start", p2, &h1, &C->a)) ||
                (st = get_number(c, p, "step", p2, &h2, &C->b)))
                return st;
            break;
        }
        }
    }
    return MLMX_OK;
}

static mlmx_status parse_design(pctx *c, json_t *d, mlmx_scenario *sc)
{
    mlmx_status st = want_type(c, d, "design", json_is_object(d), "an object");
    if (st)
        return st;
    static const char *const keys[] = {"levels", "covariates", NULL};
    if ((st = check_keys(c, d, "design", keys)))
        return st;
    json_t *lv = json_object_get(d, "levels");
    if (!lv)
        return fail(c, "design.levels is missing");
    if ((st = want_type(c, lv, "design.levels", json_is_array(lv), "an array")))
        return st;
    size_t nl = json_array_size(lv);
    if (nl == 0)
        return fail(c, "design.levels is empty: give at least one level");
    if (nl > 16)
        return fail(c, "design.levels has %zu levels (at most 16)", nl);
    sc->levels = calloc(nl, sizeof *sc->levels);
    if (!sc->levels)
        return nomem(c);
    static const char *const lkeys[] = {"name", "units", "size", NULL};
    for (size_t k = 0; k < nl; k++) {
        char path[256], p2[256];
        path_index(path, sizeof path, "design.levels", k);
        json_t *o = json_array_get(lv, k);
        if ((st = want_type(c, o, path, json_is_object(o), "an object")) ||
            (st = check_keys(c, o, path, lkeys)))
            return st;
        mlmx_sc_level *L = &sc->levels[k];
        sc->nlevels = (int)k + 1;
        if ((st = get_string(c, o, "name", path, 1, &L->name)))
            return st;
        path_key(p2, sizeof p2, path, "name");
        if (!name_ok(L->name))
            return fail(c, "%s '%s' may not contain ':', '`' or '\"'", p2, L->name);
        if (level_index(sc, L->name) < (int)k)
            return fail(c, "%s: level '%s' is given twice", p2, L->name);
        json_t *u = json_object_get(o, "units");
        L->size = MLMX_SC_SIZE_FIXED;
        if (u) {
            path_key(p2, sizeof p2, path, "units");
            double x;
            if ((st = num_value(c, u, p2, &x)))
                return st;
            if (x < 1.0)
                return fail(c, "%s must be at least 1 (got %g; level '%s' would have no units)",
                            p2, x, L->name);
            if ((st = long_value(c, u, p2, 1, &L->units)))
                return st;
        }
        json_t *s = json_object_get(o, "size");
        if (s) {
            path_key(p2, sizeof p2, path, "size");
            if ((st = parse_size(c, s, p2, k == 0, L, u != NULL)))
                return st;
        } else if (!u) {
            return fail(c, "%s needs units (or a drawn size)", path);
        }
    }
    return parse_covariates(c, d, sc);
}

static mlmx_status parse_fixed(pctx *c, json_t *v, mlmx_scenario *sc)
{
    mlmx_status st = want_type(c, v, "fixed", json_is_object(v), "an object");
    if (st)
        return st;
    size_t n = json_object_size(v);
    sc->fixed = calloc(n ? n : 1, sizeof *sc->fixed);
    if (!sc->fixed)
        return nomem(c);
    sc->has_fixed = 1;
    const char *key;
    json_t *x;
    json_object_foreach(v, key, x)
    {
        char path[256];
        path_key(path, sizeof path, "fixed", key);
        mlmx_sc_coef *cf = &sc->fixed[sc->nfixed];
        if ((st = num_value(c, x, path, &cf->value)))
            return st;
        if (!(cf->name = mlmx_strdup(key)))
            return nomem(c);
        sc->nfixed++;
    }
    return MLMX_OK;
}

/* Split "a:b" into two of the candidate names (column names may hold ':'
 * themselves, as interactions do). Returns 0 and the indexes, or -1. */
static int split_pair(const char *key, char *const *cand, int n, int *i, int *j)
{
    size_t len = strlen(key);
    for (size_t p = 1; p + 1 < len; p++) {
        if (key[p] != ':')
            continue;
        for (int a = 0; a < n; a++) {
            if (strlen(cand[a]) != p || strncmp(cand[a], key, p) != 0)
                continue;
            int b = find_name(cand, n, key + p + 1);
            if (b >= 0) {
                *i = a;
                *j = b;
                return 0;
            }
        }
    }
    return -1;
}

/* Cholesky of a correlation matrix with a small tolerance: 1 if positive
 * semi-definite. */
static int psd(const double *R, int n)
{
    double *L = calloc((size_t)n * (size_t)n, sizeof *L);
    if (!L)
        return 1; /* cannot check; the fit will */
    int ok = 1;
    for (int j = 0; j < n && ok; j++) {
        double d = R[j + j * n];
        for (int k = 0; k < j; k++)
            d -= L[j + k * n] * L[j + k * n];
        if (d < -1e-10)
            ok = 0;
        double s = d > 1e-12 ? sqrt(d) : 0.0;
        L[j + j * n] = s;
        for (int i = j + 1; i < n; i++) {
            double v = R[i + j * n];
            for (int k = 0; k < j; k++)
                v -= L[i + k * n] * L[j + k * n];
            if (s > 0.0)
                L[i + j * n] = v / s;
            else if (fabs(v) > 1e-8)
                ok = 0; /* a zero pivot with a non-zero column */
        }
    }
    free(L);
    return ok;
}

/* The SDs (or variances) of one random entry: per column of the formula's
 * terms for its group; without them (a pilot override) the formula's
 * columns with NaN SDs. */
static mlmx_status parse_sd(pctx *c, json_t *o, const char *path, mlmx_sc_random *R,
                            const fgroup *fg, int need_all)
{
    char p2[256], p3[512];
    mlmx_status st;
    json_t *sd = json_object_get(o, "sd"), *var = json_object_get(o, "var");
    if (sd && var)
        return fail(c, "%s: give sd or var, not both", path);
    json_t *sv = sd ? sd : var;
    const char *sk = sd ? "sd" : "var";
    R->given_var = var != NULL;
    if (!sv && need_all)
        return fail(c, "%s needs sd (standard deviations) or var (variances)", path);
    if (sv) {
        path_key(p2, sizeof p2, path, sk);
        if ((st = want_type(c, sv, p2, json_is_object(sv), "an object")))
            return st;
        size_t nc = json_object_size(sv);
        if (nc == 0)
            return fail(c, "%s is empty", p2);
        R->cols = calloc(nc, sizeof *R->cols);
        R->sd = calloc(nc, sizeof *R->sd);
        if (!R->cols || !R->sd)
            return nomem(c);
        const char *key;
        json_t *x;
        json_object_foreach(sv, key, x)
        {
            path_key(p3, sizeof p3, p2, key);
            double val;
            if ((st = num_value(c, x, p3, &val)))
                return st;
            if (val < 0.0)
                return fail(c, "%s is negative (%g): a negative %s for column '%s' of group '%s'",
                            p3, val, var ? "variance" : "SD", key, R->group);
            if (fg->known && find_name(fg->cols, fg->ncol, key) < 0) {
                mlmx_strbuf b = {0};
                list_names(&b, fg->cols, fg->ncol);
                st = fail(c, "%s: '%s' is not a column of the formula's terms for group '%s' "
                             "(columns: %s)",
                          p2, key, R->group, b.s ? b.s : "");
                mlmx_sb_free(&b);
                return st;
            }
            if (!(R->cols[R->ncol] = mlmx_strdup(key)))
                return nomem(c);
            R->sd[R->ncol++] = var ? sqrt(val) : val;
        }
        if (need_all && fg->known)
            for (int k = 0; k < fg->ncol; k++)
                if (find_name(R->cols, R->ncol, fg->cols[k]) < 0)
                    return fail(c, "%s: no %s for column '%s' of group '%s'", p2,
                                var ? "variance" : "SD", fg->cols[k], R->group);
    } else {
        /* only correlations (a pilot override): the formula's columns */
        R->cols = calloc((size_t)fg->ncol, sizeof *R->cols);
        R->sd = calloc((size_t)fg->ncol, sizeof *R->sd);
        if (!R->cols || !R->sd)
            return nomem(c);
        for (int k = 0; k < fg->ncol; k++) {
            if (!(R->cols[k] = mlmx_strdup(fg->cols[k])))
                return nomem(c);
            R->sd[k] = NAN;
            R->ncol++;
        }
    }
    return MLMX_OK;
}

/* The correlations of one random entry ("a:b": value), checked to form a
 * correlation matrix; the identity when none are given. */
static mlmx_status parse_cor(pctx *c, json_t *o, const char *path, mlmx_sc_random *R,
                             const fgroup *fg)
{
    char p2[256], p3[512];
    mlmx_status st = MLMX_OK;
    int q = R->ncol;
    R->cor = calloc((size_t)q * (size_t)q + 1, sizeof *R->cor);
    if (!R->cor)
        return nomem(c);
    for (int k = 0; k < q; k++)
        R->cor[k + k * q] = 1.0;
    json_t *cor = json_object_get(o, "cor");
    if (!cor)
        return MLMX_OK;
    path_key(p2, sizeof p2, path, "cor");
    if ((st = want_type(c, cor, p2, json_is_object(cor), "an object")))
        return st;
    unsigned char *seen = calloc((size_t)q * (size_t)q + 1, 1);
    if (!seen)
        return nomem(c);
    const char *key;
    json_t *x;
    json_object_foreach(cor, key, x)
    {
        path_key(p3, sizeof p3, p2, key);
        int i, j;
        double val;
        if ((st = num_value(c, x, p3, &val)))
            break;
        if (split_pair(key, R->cols, q, &i, &j) != 0) {
            mlmx_strbuf b = {0};
            list_names(&b, R->cols, q);
            st = fail(c, "%s: '%s' is not two columns of group '%s' joined by ':' (columns: "
                         "%s)",
                      p2, key, R->group, b.s ? b.s : "");
            mlmx_sb_free(&b);
            break;
        }
        if (i == j) {
            st = fail(c, "%s: a column's correlation with itself is 1", p3);
            break;
        }
        if (seen[i + j * q]) {
            st = fail(c, "%s: the correlation of '%s' and '%s' is given twice", p2,
                      R->cols[i], R->cols[j]);
            break;
        }
        if (!(val >= -1.0 && val <= 1.0)) {
            st = fail(c, "%s must be in [-1, 1] (got %g)", p3, val);
            break;
        }
        if (fg->known) {
            int fi_i = find_name(fg->cols, fg->ncol, R->cols[i]),
                fi_j = find_name(fg->cols, fg->ncol, R->cols[j]);
            if (fi_i >= 0 && fi_j >= 0 && fg->term[fi_i] != fg->term[fi_j]) {
                st = fail(c, "%s: '%s' and '%s' are in separate terms of the formula for "
                             "group '%s', which makes them uncorrelated",
                          p3, R->cols[i], R->cols[j], R->group);
                break;
            }
        }
        seen[i + j * q] = seen[j + i * q] = 1;
        R->cor[i + j * q] = R->cor[j + i * q] = val;
    }
    free(seen);
    if (st)
        return st;
    if (!psd(R->cor, q))
        return fail(c, "%s: these correlations do not form a valid correlation matrix (it "
                       "is not positive semi-definite)",
                    p2);
    return MLMX_OK;
}

static mlmx_status parse_random(pctx *c, json_t *v, mlmx_scenario *sc, const finfo *fi,
                                int need_all)
{
    mlmx_status st = want_type(c, v, "random", json_is_array(v), "an array");
    if (st)
        return st;
    size_t n = json_array_size(v);
    sc->random = calloc(n ? n : 1, sizeof *sc->random);
    if (!sc->random)
        return nomem(c);
    sc->has_random = 1;
    static const char *const keys[] = {"group", "sd", "var", "cor", NULL};
    for (size_t r = 0; r < n; r++) {
        char path[256];
        path_index(path, sizeof path, "random", r);
        json_t *o = json_array_get(v, r);
        if ((st = want_type(c, o, path, json_is_object(o), "an object")) ||
            (st = check_keys(c, o, path, keys)))
            return st;
        mlmx_sc_random *R = &sc->random[r];
        sc->nrandom = (int)r + 1;
        if ((st = get_string(c, o, "group", path, 1, &R->group)))
            return st;
        for (size_t q = 0; q < r; q++)
            if (strcmp(sc->random[q].group, R->group) == 0)
                return fail(c, "%s.group: group '%s' is given twice (random[%zu])", path,
                            R->group, q);
        /* the formula's terms for this group */
        const fgroup *fg = NULL;
        for (int g = 0; g < fi->ngroups; g++)
            if (strcmp(fi->groups[g].label, R->group) == 0)
                fg = &fi->groups[g];
        if (!fg) {
            mlmx_strbuf b = {0};
            for (int g = 0; g < fi->ngroups; g++)
                mlmx_sb_printf(&b, "%s%s", g ? ", " : "", fi->groups[g].label);
            st = fail(c, "%s.group '%s' is not a grouping factor of the formula (groups: %s)", path,
                      R->group, b.s ? b.s : "none");
            mlmx_sb_free(&b);
            return st;
        }
        if ((st = parse_sd(c, o, path, R, fg, need_all)) ||
            (st = parse_cor(c, o, path, R, fg)))
            return st;
    }
    if (need_all)
        for (int g = 0; g < fi->ngroups; g++) {
            int found = 0;
            for (int r = 0; r < sc->nrandom && !found; r++)
                found = strcmp(sc->random[r].group, fi->groups[g].label) == 0;
            if (!found)
                return fail(c, "random: no entry for the formula's group '%s'",
                            fi->groups[g].label);
        }
    return MLMX_OK;
}

static mlmx_status parse_test(pctx *c, json_t *v, mlmx_scenario *sc, const finfo *fi)
{
    mlmx_status st = want_type(c, v, "test", json_is_object(v), "an object");
    if (st)
        return st;
    static const char *const keys[] = {"type", "term", "drop", NULL};
    if ((st = check_keys(c, v, "test", keys)))
        return st;
    char *type = NULL;
    if ((st = get_string(c, v, "type", "test", 1, &type)))
        return st;
    if (strcmp(type, "wald_z") == 0)
        sc->test = MLMX_SC_WALD_Z;
    else if (strcmp(type, "wald_t") == 0)
        sc->test = MLMX_SC_WALD_T;
    else if (strcmp(type, "lrt") == 0)
        sc->test = MLMX_SC_LRT;
    else {
        st = fail(c, "test.type '%s' is not known (wald_z, wald_t or lrt)", type);
        free(type);
        return st;
    }
    free(type);
    if ((st = get_string(c, v, "term", "test", 0, &sc->test_term)))
        return st;
    json_t *drop = json_object_get(v, "drop");
    if (sc->test != MLMX_SC_LRT) {
        if (drop)
            return fail(c, "test.drop applies to lrt only; a Wald test takes test.term");
        if (!sc->test_term)
            return fail(c, "test.term is missing: the coefficient the %s test is about",
                        mlmx_sc_test_name(sc->test));
        if (sc->test == MLMX_SC_WALD_T && sc->family != MLMX_FAMILY_GAUSSIAN)
            return fail(c, "test.type wald_t applies to gaussian models only (use wald_z or lrt)");
        if (fi->fix_known && find_name(fi->fix, fi->nfix, sc->test_term) < 0) {
            mlmx_strbuf b = {0};
            list_names(&b, fi->fix, fi->nfix);
            st = fail(c, "test.term '%s' is not a coefficient of the formula (coefficients: %s)",
                      sc->test_term, b.s ? b.s : "");
            mlmx_sb_free(&b);
            return st;
        }
        if (sc->family == MLMX_FAMILY_ORDINAL && strcmp(sc->test_term, "(Intercept)") == 0)
            return fail(c, "test.term: an ordinal model has thresholds, not an intercept");
        return MLMX_OK;
    }
    /* LRT: drop = [terms], or term as a one-term shorthand */
    if (drop && sc->test_term)
        return fail(c, "test: give drop or term, not both");
    if (sc->test_term) {
        sc->drop = calloc(1, sizeof *sc->drop);
        if (!sc->drop || !(sc->drop[0] = mlmx_strdup(sc->test_term)))
            return nomem(c);
        sc->ndrop = 1;
    } else {
        if (!drop)
            return fail(c, "test.drop is missing: the fixed-effect terms the null model leaves "
                           "out");
        if ((st = want_type(c, drop, "test.drop", json_is_array(drop), "an array")))
            return st;
        size_t n = json_array_size(drop);
        if (n == 0)
            return fail(c, "test.drop is empty");
        sc->drop = calloc(n, sizeof *sc->drop);
        if (!sc->drop)
            return nomem(c);
        for (size_t i = 0; i < n; i++) {
            char path[64];
            path_index(path, sizeof path, "test.drop", i);
            json_t *s = json_array_get(drop, i);
            if ((st = want_type(c, s, path, json_is_string(s) && json_string_value(s)[0],
                                "a non-empty string")))
                return st;
            if (!(sc->drop[i] = mlmx_strdup(json_string_value(s))))
                return nomem(c);
            sc->ndrop = (int)i + 1;
        }
    }
    for (int i = 0; i < sc->ndrop; i++) {
        if (fi->fix_known && find_name(fi->terms, fi->nterms, sc->drop[i]) < 0) {
            mlmx_strbuf b = {0};
            list_names(&b, fi->terms, fi->nterms);
            st = fail(c, "test.drop: '%s' is not a fixed-effect term of the formula (terms: %s)",
                      sc->drop[i], b.s ? b.s : "");
            mlmx_sb_free(&b);
            return st;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(sc->drop[i], sc->drop[j]) == 0)
                return fail(c, "test.drop: '%s' is given twice", sc->drop[i]);
    }
    return MLMX_OK;
}

static mlmx_status parse_curve(pctx *c, json_t *v, mlmx_scenario *sc)
{
    mlmx_status st = want_type(c, v, "curve", json_is_object(v), "an object");
    if (st)
        return st;
    static const char *const keys[] = {"level", "units", NULL};
    if ((st = check_keys(c, v, "curve", keys)))
        return st;
    if ((st = get_string(c, v, "level", "curve", 1, &sc->curve_level)))
        return st;
    json_t *u = json_object_get(v, "units");
    if (!u)
        return fail(c, "curve.units is missing");
    if ((st = want_type(c, u, "curve.units", json_is_array(u), "an array")))
        return st;
    size_t n = json_array_size(u);
    if (n == 0)
        return fail(c, "curve.units is empty");
    if (n > 10000)
        return fail(c, "curve.units has %zu points (at most 10000)", n);
    sc->curve_units = calloc(n, sizeof *sc->curve_units);
    if (!sc->curve_units)
        return nomem(c);
    sc->curve_index = -1;
    if (sc->has_design) {
        sc->curve_index = level_index(sc, sc->curve_level);
        if (sc->curve_index < 0) {
            mlmx_strbuf b = {0};
            for (int k = 0; k < sc->nlevels; k++)
                mlmx_sb_printf(&b, "%s%s", k ? ", " : "", sc->levels[k].name);
            st = fail(c, "curve.level '%s' is not a level of the design (levels: %s)",
                      sc->curve_level, b.s ? b.s : "");
            mlmx_sb_free(&b);
            return st;
        }
        if (sc->levels[sc->curve_index].size != MLMX_SC_SIZE_FIXED)
            return fail(c, "curve.level '%s' has a drawn size; a power curve varies fixed units",
                        sc->curve_level);
    }
    for (size_t i = 0; i < n; i++) {
        char path[64];
        path_index(path, sizeof path, "curve.units", i);
        json_t *x = json_array_get(u, i);
        double d;
        if ((st = num_value(c, x, path, &d)))
            return st;
        if (d < 1.0)
            return fail(c, "%s must be at least 1 (got %g; level '%s' would have no units)", path,
                        d, sc->curve_level);
        if ((st = long_value(c, x, path, 1, &sc->curve_units[i])))
            return st;
        sc->ncurve = (int)i + 1;
    }
    return MLMX_OK;
}

static mlmx_status parse_pilot(pctx *c, json_t *v, mlmx_scenario *sc)
{
    mlmx_status st = want_type(c, v, "pilot", json_is_object(v), "an object");
    if (st)
        return st;
    static const char *const keys[] = {"data", "model", "extend", NULL};
    if ((st = check_keys(c, v, "pilot", keys)))
        return st;
    if ((st = get_string(c, v, "model", "pilot", 0, &sc->pilot_model)))
        return st;
    const int model = c->model || sc->pilot_model;  /* the data may come from it */
    if ((st = get_string(c, v, "data", "pilot", !model, &sc->pilot_data)))
        return st;
    json_t *e = json_object_get(v, "extend");
    if (!e)
        return MLMX_OK;
    if ((st = want_type(c, e, "pilot.extend", json_is_object(e), "an object")))
        return st;
    static const char *const ekeys[] = {"group", "units", NULL};
    if ((st = check_keys(c, e, "pilot.extend", ekeys)))
        return st;
    if ((st = get_string(c, e, "group", "pilot.extend", 1, &sc->pilot_group)))
        return st;
    json_t *u = json_object_get(e, "units");
    if (!u)
        return fail(c, "pilot.extend.units is missing");
    double d;
    if ((st = num_value(c, u, "pilot.extend.units", &d)))
        return st;
    if (d < 1.0)
        return fail(c, "pilot.extend.units must be at least 1 (got %g; group '%s' would have no "
                       "units)",
                    d, sc->pilot_group);
    return long_value(c, u, "pilot.extend.units", 1, &sc->pilot_units);
}

/* ------------------------------------------------------------ the whole file */

static mlmx_status parse_formula(pctx *c, json_t *root, mlmx_scenario *sc, mlmx_formula **f)
{
    /* a saved model gives the formula (and must agree with one given) */
    const char *model = c->model ? c->model : sc->pilot_model;
    mlmx_status st = get_string(c, root, "formula", "", !model, &sc->formula);
    if (!st && model) {
        char *given = sc->formula, *file_model = sc->pilot_model;
        sc->formula = sc->pilot_model = NULL;
        st = mlmx_sc_take_model(sc, model, given, c->err);
        free(given);
        free(file_model);
    }
    if (st)
        return st;
    mlmx_error fe = {0};
    if (mlmx_formula_parse(sc->formula, f, &fe) != MLMX_OK) {
        /* first line of "formula: <what> at position P:\n  text\n  caret" */
        char line[600];
        if (snprintf(line, sizeof line, "%s", fe.msg) < 0)
            line[0] = '\0';
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        size_t l = strlen(line);
        if (l > 0 && line[l - 1] == ':')
            line[l - 1] = '\0';
        return mlmx_err_set(c->err, fe.code, "%s: %s in '%s'", c->src, line, sc->formula);
    }
    const mlmx_expr *r = (*f)->response;
    if (!r)
        return fail(c, "formula '%s' has no response (left of '~')", sc->formula);
    if (r->kind != MLMX_EX_SYMBOL)
        return fail(c, "formula '%s': the response must be a plain column name to be "
                       "simulated",
                    sc->formula);
    sc->response = mlmx_strdup(r->name);
    return sc->response ? MLMX_OK : nomem(c);
}

static mlmx_status cross_checks(pctx *c, mlmx_scenario *sc, const finfo *fi)
{
    mlmx_status st = MLMX_OK;
    int pilot = sc->pilot_data != NULL;
    /* fixed effects against the formula's coefficients */
    if (sc->has_fixed && fi->fix_known) {
        for (int i = 0; i < sc->nfixed; i++) {
            const char *nm = sc->fixed[i].name;
            if (sc->family == MLMX_FAMILY_ORDINAL && strcmp(nm, "(Intercept)") == 0)
                return fail(c, "fixed.(Intercept): an ordinal model has thresholds, not an "
                               "intercept");
            if (find_name(fi->fix, fi->nfix, nm) < 0) {
                mlmx_strbuf b = {0};
                list_names(&b, fi->fix, fi->nfix);
                st = fail(c, "fixed: '%s' is not a coefficient of the formula (coefficients: %s)",
                          nm, b.s ? b.s : "");
                mlmx_sb_free(&b);
                return st;
            }
        }
        if (!pilot)
            for (int k = 0; k < fi->nfix; k++) {
                if (sc->family == MLMX_FAMILY_ORDINAL && strcmp(fi->fix[k], "(Intercept)") == 0)
                    continue;
                int found = 0;
                for (int i = 0; i < sc->nfixed && !found; i++)
                    found = strcmp(sc->fixed[i].name, fi->fix[k]) == 0;
                if (!found)
                    return fail(c, "fixed: no value for the coefficient '%s'", fi->fix[k]);
            }
    }
    if (!sc->has_design)
        return MLMX_OK;
    /* every variable of the formula is in the design */
    for (int i = 0; i < fi->nvars; i++) {
        const char *v = fi->vars[i];
        if (strcmp(v, sc->response) == 0)
            continue;
        int k = level_index(sc, v);
        if (k >= 0) {
            sc->levels[k].in_formula = 1;
            continue;
        }
        int found = 0;
        for (int j = 0; j < sc->ncov && !found; j++)
            found = strcmp(sc->covs[j].name, v) == 0;
        if (!found)
            return fail(c, "formula: '%s' is neither a covariate nor a level of the design", v);
    }
    for (int j = 0; j < sc->ncov; j++)
        if (strcmp(sc->covs[j].name, sc->response) == 0)
            return fail(c, "design.covariates: '%s' is the formula's response", sc->response);
    if (level_index(sc, sc->response) >= 0)
        return fail(c, "design.levels: '%s' is the formula's response", sc->response);
    return MLMX_OK;
}

/* The family's own parameters: sigma (gaussian), size (negbin),
 * thresholds (ordinal); each refused for the other families and required
 * without a pilot. */
static mlmx_status parse_family_params(pctx *c, json_t *root, mlmx_scenario *sc, int pilot)
{
    mlmx_status st;
    json_t *v;
    const char *famname = mlmx_family_name(sc->family);
    sc->sigma = NAN;
    sc->nb_size = NAN;
    if ((v = json_object_get(root, "sigma"))) {
        if (sc->family != MLMX_FAMILY_GAUSSIAN) {
            return fail(c, "sigma applies to gaussian models only (family is %s)", famname);
        }
        if ((st = num_value(c, v, "sigma", &sc->sigma)))
            return st;
        if (!(sc->sigma > 0.0)) {
            return fail(c, "sigma must be positive (got %g)", sc->sigma);
        }
    } else if (sc->family == MLMX_FAMILY_GAUSSIAN && !pilot) {
        return fail(c, "sigma is missing (the residual SD of a gaussian model)");
    }
    if ((v = json_object_get(root, "size"))) {
        if (sc->family != MLMX_FAMILY_NEGBIN) {
            return fail(c, "size applies to negbin models only (family is %s)", famname);
        }
        if ((st = num_value(c, v, "size", &sc->nb_size)))
            return st;
        if (!(sc->nb_size > 0.0)) {
            return fail(c, "size must be positive (got %g)", sc->nb_size);
        }
    } else if (sc->family == MLMX_FAMILY_NEGBIN && !pilot) {
        return fail(c, "size is missing (the negative binomial size of a negbin model)");
    }
    if ((v = json_object_get(root, "thresholds"))) {
        if (sc->family != MLMX_FAMILY_ORDINAL) {
            return fail(c, "thresholds apply to ordinal models only (family is %s)", famname);
        }
        if ((st = want_type(c, v, "thresholds", json_is_array(v), "an array")))
            return st;
        size_t n = json_array_size(v);
        if (n == 0 || n > 100) {
            return fail(c, "thresholds must hold 1 to 100 values (got %zu)", n);
        }
        sc->thresholds = calloc(n, sizeof *sc->thresholds);
        if (!sc->thresholds) {
            return nomem(c);
        }
        for (size_t i = 0; i < n; i++) {
            char path[64];
            path_index(path, sizeof path, "thresholds", i);
            if ((st = num_value(c, json_array_get(v, i), path, &sc->thresholds[i])))
                return st;
            sc->nthresholds = (int)i + 1;
            if (i > 0 && !(sc->thresholds[i] > sc->thresholds[i - 1])) {
                return fail(c, "thresholds must increase: thresholds[%zu] = %g is not above "
                             "thresholds[%zu] = %g",
                          i, sc->thresholds[i], i - 1, sc->thresholds[i - 1]);
            }
        }
    } else if (sc->family == MLMX_FAMILY_ORDINAL && !pilot) {
        return fail(c, "thresholds are missing (the cut points of an ordinal model)");
    }
    return MLMX_OK;
}

static mlmx_status parse_root(pctx *c, json_t *root, mlmx_scenario *sc)
{
    mlmx_status st = want_type(c, root, "the file", json_is_object(root), "a JSON object");
    if (st)
        return st;
    if ((st = check_keys(c, root, "", top_keys)))
        return st;
    mlmx_formula *f = NULL;
    finfo fi;
    memset(&fi, 0, sizeof fi);
    json_t *v;
    if ((v = json_object_get(root, "pilot")) && (st = parse_pilot(c, v, sc)))
        goto out;
    if ((st = parse_formula(c, root, sc, &f)) || (st = formula_info(c, f, &fi)) ||
        (st = parse_family(c, root, sc)))
        goto out;
    if (sc->model && sc->family != MLMX_FAMILY_GAUSSIAN) {
        st = fail(c, "family '%s' with a saved model: power from a saved model takes linear "
                     "mixed models (family gaussian) only",
                  mlmx_family_name(sc->family));
        goto out;
    }
    int pilot = sc->pilot_data != NULL;
    v = json_object_get(root, "design");
    if (v) {
        sc->has_design = 1;
        if ((st = parse_design(c, v, sc)))
            goto out;
        if (sc->pilot_group) {
            st = fail(c, "pilot.extend applies to the pilot's data; with a design, the design "
                         "gives the units");
            goto out;
        }
    } else if (!pilot) {
        st = fail(c, "design is missing (give a design, or a pilot to take it from)");
        goto out;
    }
    if ((v = json_object_get(root, "fixed"))) {
        if ((st = parse_fixed(c, v, sc)))
            goto out;
    } else if (!pilot) {
        st = fail(c, "fixed is missing (the fixed-effect coefficients)");
        goto out;
    }
    if ((v = json_object_get(root, "random"))) {
        if ((st = parse_random(c, v, sc, &fi, !pilot)))
            goto out;
    } else if (!pilot && fi.ngroups > 0) {
        st = fail(c, "random is missing (the formula has random effects for '%s')",
                  fi.groups[0].label);
        goto out;
    }
    if ((st = parse_family_params(c, root, sc, pilot)))
        goto out;
    if ((v = json_object_get(root, "residual")) && (st = mlmx_sc_parse_residual(sc, v, c->err)))
        goto out;
    /* test and simulation settings */
    if (!(v = json_object_get(root, "test"))) {
        st = fail(c, "test is missing (e.g. {\"type\": \"wald_z\", \"term\": \"x\"})");
        goto out;
    }
    if ((st = parse_test(c, v, sc, &fi)))
        goto out;
    sc->alpha = 0.05;
    int present = 0;
    if ((st = get_number(c, root, "alpha", "", &present, &sc->alpha)))
        goto out;
    if (!(sc->alpha > 0.0 && sc->alpha < 1.0)) {
        st = fail(c, "alpha must be in (0, 1) (got %g)", sc->alpha);
        goto out;
    }
    sc->nsim = 1000;
    if ((v = json_object_get(root, "nsim"))) {
        double d;
        if ((st = num_value(c, v, "nsim", &d)))
            goto out;
        if (!(d > 0.0)) {
            st = fail(c, "nsim must be positive (got %g)", d);
            goto out;
        }
        if ((st = long_value(c, v, "nsim", 1, &sc->nsim)))
            goto out;
    }
    sc->seed = 1;
    if ((v = json_object_get(root, "seed"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            st = fail(c, "seed must be a whole number of 0 or more (got %s)",
                      json_is_integer(v) ? "a negative number" : type_name(v));
            goto out;
        }
        sc->seed = (uint64_t)json_integer_value(v);
    }
    sc->curve_index = -1;
    if ((v = json_object_get(root, "curve")) && (st = parse_curve(c, v, sc)))
        goto out;
    st = cross_checks(c, sc, &fi);
out:
    finfo_free(&fi);
    mlmx_formula_free(f);
    return st;
}

const char *mlmx_sc_test_name(mlmx_sc_test t)
{
    switch (t) {
    case MLMX_SC_WALD_Z: return "wald_z";
    case MLMX_SC_WALD_T: return "wald_t";
    case MLMX_SC_LRT: return "lrt";
    }
    return "?";
}

void mlmx_scenario_free(mlmx_scenario *sc)
{
    if (!sc)
        return;
    free(sc->source);
    free(sc->formula);
    free(sc->response);
    for (int k = 0; k < sc->nlevels; k++)
        free(sc->levels[k].name);
    free(sc->levels);
    for (int i = 0; i < sc->ncov; i++)
        free(sc->covs[i].name);
    free(sc->covs);
    for (int i = 0; i < sc->nfixed; i++)
        free(sc->fixed[i].name);
    free(sc->fixed);
    for (int r = 0; r < sc->nrandom; r++) {
        mlmx_sc_random *R = &sc->random[r];
        free(R->group);
        for (int k = 0; k < R->ncol; k++)
            free(R->cols[k]);
        free(R->cols);
        free(R->sd);
        free(R->cor);
    }
    free(sc->random);
    free(sc->thresholds);
    mlmx_sc_free_residual(sc);
    free(sc->test_term);
    for (int i = 0; i < sc->ndrop; i++)
        free(sc->drop[i]);
    free(sc->drop);
    free(sc->curve_level);
    free(sc->curve_units);
    free(sc->pilot_data);
    free(sc->pilot_group);
    free(sc->pilot_model);
    mlmx_model_file_free(sc->model);
    free(sc);
}

mlmx_status mlmx_scenario_parse(const char *text, size_t len, const char *source,
                                mlmx_scenario **out, mlmx_error *err)
{
    return mlmx_scenario_parse_model(text, len, source, NULL, out, err);
}

mlmx_status mlmx_scenario_parse_model(const char *text, size_t len, const char *source,
                                      const char *model_path, mlmx_scenario **out,
                                      mlmx_error *err)
{
    if (!out)
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_scenario_parse: NULL output");
    *out = NULL;
    if (!text)
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_scenario_parse: NULL text");
    pctx c = {source ? source : "scenario", err, model_path};
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        char what[JSON_ERROR_TEXT_LENGTH + 1];
        snprintf(what, sizeof what, "%s", je.text);
        for (char *p = what; *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = ' ';
        if (je.line > 0)
            return mlmx_err_set(err, MLMX_ERR_PARSE, "%s:%d:%d: %s", c.src, je.line, je.column,
                                what);
        return mlmx_err_set(err, MLMX_ERR_PARSE, "%s: %s", c.src, what);
    }
    mlmx_scenario *sc = calloc(1, sizeof *sc);
    mlmx_status st;
    if (!sc || !(sc->source = mlmx_strdup(c.src))) {
        st = nomem(&c);
    } else {
        sc->curve_index = -1;
        st = parse_root(&c, root, sc);
    }
    json_decref(root);
    if (st) {
        mlmx_scenario_free(sc);
        return st;
    }
    *out = sc;
    return MLMX_OK;
}

mlmx_status mlmx_scenario_read(const char *path, mlmx_scenario **out, mlmx_error *err)
{
    return mlmx_scenario_read_model(path, NULL, out, err);
}

mlmx_status mlmx_scenario_read_model(const char *path, const char *model_path,
                                     mlmx_scenario **out, mlmx_error *err)
{
    if (!out || !path)
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_scenario_read: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return mlmx_err_set(err, MLMX_ERR_IO, "cannot open scenario '%s': %s", path,
                            strerror(errno));
    mlmx_strbuf b = {0};
    char chunk[8192];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) {
        mlmx_sb_putn(&b, chunk, r);
        if (b.len > ((size_t)64 << 20)) {
            fclose(f);
            mlmx_sb_free(&b);
            return mlmx_err_set(err, MLMX_ERR_PARSE, "%s: larger than 64 MB; not a scenario",
                                path);
        }
    }
    int bad = ferror(f);
    int e = errno;
    fclose(f);
    if (bad) {
        mlmx_sb_free(&b);
        return mlmx_err_set(err, MLMX_ERR_IO, "cannot read scenario '%s': %s", path, strerror(e));
    }
    if (b.oom) {
        mlmx_sb_free(&b);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "%s: out of memory", path);
    }
    mlmx_status st = mlmx_scenario_parse_model(b.s ? b.s : "", b.len, path, model_path, out, err);
    mlmx_sb_free(&b);
    return st;
}

/* ------------------------------------------------------------ the design */

long mlmx_scenario_units(const mlmx_scenario *sc, int level, int curve_point)
{
    if (!sc || level < 0 || level >= sc->nlevels)
        return 0;
    if (curve_point >= 0 && curve_point < sc->ncurve && level == sc->curve_index)
        return sc->curve_units[curve_point];
    return sc->levels[level].size == MLMX_SC_SIZE_FIXED ? sc->levels[level].units : 0;
}

static long draw_size(const mlmx_sc_level *L, mlmx_rng *r)
{
    if (L->size == MLMX_SC_SIZE_UNIFORM) {
        double span = (double)(L->size_max - L->size_min + 1);
        long k = L->size_min + (long)floor(mlmx_rng_uniform(r) * span);
        return k > L->size_max ? L->size_max : k;
    }
    for (int t = 0; t < 1000; t++) { /* Poisson, a 0 drawn again */
        double k = mlmx_rng_poisson(r, L->size_mean);
        if (k >= 1.0)
            return k > (double)MAX_COUNT ? MAX_COUNT : (long)k;
    }
    return 1;
}

/* The covariates of the design, one column each: drawn per unit of their
 * level (Philox stream = the covariate's index) and repeated down its rows. */
static mlmx_status add_covariates(const mlmx_scenario *sc, mlmx_data *d, const size_t *n,
                                  size_t *const *pos, size_t *const *rowunit, size_t nrow,
                                  uint64_t seed, mlmx_error *err)
{
    mlmx_status st = MLMX_OK;
    for (int i = 0; i < sc->ncov && !st; i++) {
        const mlmx_sc_covariate *C = &sc->covs[i];
        int k = C->level;
        double *val = malloc((n[k] ? n[k] : 1) * sizeof *val);
        double *col = malloc((nrow ? nrow : 1) * sizeof *col);
        if (!val || !col) {
            free(val);
            free(col);
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory building the design");
            break;
        }
        mlmx_rng rng;
        mlmx_rng_init(&rng, seed, DESIGN_REPLICATE, (uint32_t)i);
        for (size_t u = 0; u < n[k]; u++) {
            switch (C->dist) {
            case MLMX_SC_NORMAL: val[u] = C->a + C->b * mlmx_rng_normal(&rng); break;
            case MLMX_SC_BINARY: val[u] = mlmx_rng_uniform(&rng) < C->a ? 1.0 : 0.0; break;
            case MLMX_SC_UNIFORM: val[u] = C->a + (C->b - C->a) * mlmx_rng_uniform(&rng); break;
            case MLMX_SC_SEQUENCE: val[u] = C->a + C->b * (double)pos[k][u]; break;
            }
        }
        for (size_t r = 0; r < nrow; r++)
            col[r] = val[rowunit[k][r]];
        free(val);
        st = mlmx_frame_add_numeric_owned(d, C->name, col, err);
    }
    return st;
}

mlmx_status mlmx_scenario_design(const mlmx_scenario *sc, int curve_point, uint64_t seed,
                                 mlmx_data **out, mlmx_error *err)
{
    if (!out)
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_scenario_design: NULL output");
    *out = NULL;
    if (!sc)
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_scenario_design: NULL scenario");
    if (!sc->has_design)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "%s: the scenario has no design (its data come from the pilot)",
                            sc->source);
    if (curve_point < -1 || curve_point >= sc->ncurve || (curve_point >= 0 && sc->curve_index < 0))
        return mlmx_err_set(err, MLMX_ERR_ARG, "%s: curve point %d does not exist (%d points)",
                            sc->source, curve_point, sc->ncurve);
    int L = sc->nlevels;
    mlmx_status st = MLMX_OK;
    size_t *n = calloc((size_t)L, sizeof *n);
    size_t **parent = calloc((size_t)L, sizeof *parent); /* unit -> unit of the level above */
    size_t **pos = calloc((size_t)L, sizeof *pos);       /* unit -> position within its parent */
    size_t **rowunit = calloc((size_t)L, sizeof *rowunit);
    char **labels = NULL;
    const char **rowlab = NULL;
    mlmx_data *d = NULL;
    if (!n || !parent || !pos || !rowunit) {
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory building the design");
        goto out;
    }
    for (int k = 0; k < L && !st; k++) {
        const mlmx_sc_level *lv = &sc->levels[k];
        long fixed = mlmx_scenario_units(sc, k, curve_point);
        size_t np = k == 0 ? 1 : n[k - 1];
        /* counts per parent first, to size the arrays */
        long *cnt = malloc(np * sizeof *cnt);
        if (!cnt) {
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory building the design");
            break;
        }
        mlmx_rng rng;
        mlmx_rng_init(&rng, seed, DESIGN_REPLICATE, SIZE_STREAM + (uint32_t)k);
        size_t total = 0;
        for (size_t p = 0; p < np; p++) {
            cnt[p] = lv->size == MLMX_SC_SIZE_FIXED || (k == sc->curve_index && curve_point >= 0)
                         ? fixed
                         : draw_size(lv, &rng);
            total += (size_t)cnt[p];
            if (total > MAX_ROWS)
                break;
        }
        if (total > MAX_ROWS) {
            free(cnt);
            st = mlmx_err_set(err, MLMX_ERR_ARG,
                              "%s: the design has more than %zu units at level '%s'", sc->source,
                              MAX_ROWS, lv->name);
            break;
        }
        n[k] = total;
        parent[k] = malloc((total ? total : 1) * sizeof **parent);
        pos[k] = malloc((total ? total : 1) * sizeof **pos);
        if (!parent[k] || !pos[k]) {
            free(cnt);
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory building the design");
            break;
        }
        size_t u = 0;
        for (size_t p = 0; p < np; p++)
            for (long j = 0; j < cnt[p]; j++, u++) {
                parent[k][u] = p;
                pos[k][u] = (size_t)j;
            }
        free(cnt);
    }
    if (st)
        goto out;
    size_t nrow = n[L - 1];
    for (int k = L - 1; k >= 0; k--) {
        rowunit[k] = malloc((nrow ? nrow : 1) * sizeof **rowunit);
        if (!rowunit[k]) {
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory building the design");
            goto out;
        }
        for (size_t r = 0; r < nrow; r++)
            rowunit[k][r] = k == L - 1 ? r : parent[k + 1][rowunit[k + 1][r]];
    }
    if ((st = mlmx_frame_new(nrow, sc->source, &d, err)))
        goto out;
    rowlab = malloc((nrow ? nrow : 1) * sizeof *rowlab);
    if (!rowlab) {
        st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory building the design");
        goto out;
    }
    for (int k = 0; k < L && !st; k++) {
        if (k == L - 1 && !sc->levels[k].in_formula)
            break;
        labels = calloc(n[k] ? n[k] : 1, sizeof *labels);
        if (!labels) {
            st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory building the design");
            break;
        }
        for (size_t u = 0; u < n[k] && !st; u++)
            if (!(labels[u] = mlmx_asprintf("%s%zu", sc->levels[k].name, u + 1)))
                st = mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory building the design");
        for (size_t r = 0; r < nrow && !st; r++)
            rowlab[r] = labels[rowunit[k][r]];
        if (!st)
            st = mlmx_frame_add_factor_strings(d, sc->levels[k].name, rowlab, err);
        for (size_t u = 0; u < n[k]; u++)
            free(labels[u]);
        free(labels);
        labels = NULL;
    }
    if (!st)
        st = add_covariates(sc, d, n, pos, rowunit, nrow, seed, err);
    if (!st) {
        double *y = calloc(nrow ? nrow : 1, sizeof *y);
        st = y ? mlmx_frame_add_numeric_owned(d, sc->response, y, err)
               : mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory building the design");
    }
out:
    for (int k = 0; k < L; k++) {
        if (parent)
            free(parent[k]);
        if (pos)
            free(pos[k]);
        if (rowunit)
            free(rowunit[k]);
    }
    free(parent);
    free(pos);
    free(rowunit);
    free(rowlab);
    free(n);
    if (st) {
        mlmx_frame_free(d);
        return st;
    }
    *out = d;
    return MLMX_OK;
}
