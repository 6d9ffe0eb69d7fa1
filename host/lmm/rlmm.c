/* Generalized cross-products for residual structures (see rlmm.h). */
#include "lmm/rlmm.h"

#include "cluster_math.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { PATH_AR1, PATH_CS, PATH_IDENT, PATH_DIAG, PATH_TRIDIAG, PATH_PAIRS, PATH_GROUPS };

/* Most precomputed sets before the per-group path is used instead (ar1,
 * cs, ident; position pairs of the time patterns). */
#define MLMX_RLMM_MAX_SETS 25
#define MLMX_RLMM_MAX_PAIR_SETS 256
#define MLMX_RLMM_MAX_BYTES ((size_t)1 << 30)

struct mlmx_rlmm {
    const mlmx_lmm_stats *s;
    const mlmx_resid *r;
    int path;
    int nsets;
    mlmx_lmm_vals *sets;
    int nkeys;          /* ar1: distinct gaps; cs: distinct group sizes */
    double *key;        /* the gap d or the size n */
    double *key_count;  /* ar1: pairs with that gap; cs: groups of that size */
    size_t *opos;       /* n: position of observation i in s->obs_order */
    int maxlag;
    double *acf;        /* arma: maxlag + 1 */
    double *nat;        /* npar natural parameters */
    double *Rg;         /* max_gsize^2 */
    int *ridx;          /* max_gsize * nnz_row */
    double *rval;
    double *wdiag;      /* n: 1/sd^2 (power without correlation) */
    double *sdg;        /* max_gsize: one group's SDs */
    double *Pg;         /* max_gsize^2: R_g^{-1} */
    /* position pairs: the distinct time patterns (a group's size and times
     * relative to its first), their groups and the first set of each */
    int npat;
    int *pat_n, *pat_count, *pat_base, *pat_of; /* npat (pat_of: ngroups) */
    double **pat_t;     /* npat arrays of pat_n times */
    double *coef;       /* nsets: the combination's coefficients */
    const double *y;    /* the response (the model's, or a replicate's) */
};

const char *mlmx_rlmm_path(const mlmx_rlmm *rl)
{
    return rl->path == PATH_GROUPS    ? "per group"
           : rl->path == PATH_TRIDIAG ? "per group, tridiagonal"
           : rl->path == PATH_PAIRS   ? "precomputed position pairs"
           : rl->path == PATH_DIAG    ? "per observation"
                                      : "precomputed";
}

void mlmx_rlmm_free(mlmx_rlmm *rl)
{
    if (!rl)
        return;
    for (int k = 0; k < rl->nsets; k++)
        mlmx_lmm_vals_release(&rl->sets[k]);
    free(rl->sets);
    free(rl->key);
    free(rl->key_count);
    free(rl->opos);
    free(rl->acf);
    free(rl->nat);
    free(rl->Rg);
    free(rl->ridx);
    free(rl->rval);
    free(rl->wdiag);
    free(rl->sdg);
    free(rl->Pg);
    for (int k = 0; rl->pat_t && k < rl->npat; k++)
        free(rl->pat_t[k]);
    free(rl->pat_t);
    free(rl->pat_n);
    free(rl->pat_count);
    free(rl->pat_base);
    free(rl->pat_of);
    free(rl->coef);
    free(rl);
}

static void vals_zero(const mlmx_lmm_stats *s, mlmx_lmm_vals *v)
{
    memset(v->A11, 0, (size_t)s->nblk * (size_t)s->q1 * (size_t)s->q1 * sizeof *v->A11);
    memset(v->B, 0, (s->nrows ? s->nrows : 1) * (size_t)s->q1 * sizeof *v->B);
    memset(v->ARR, 0, (size_t)s->m * (size_t)s->m * sizeof *v->ARR);
    v->yty = 0.0;
}

/* v += sum over a, b of P[a + b ng] x_a x_b^T for the ng observations
 * obs[0..ng) of one first-term level (lower triangles; B rows of the
 * level). Each observation's entries are gathered once. */
static void pair_fill(const mlmx_rlmm *rl, mlmx_lmm_vals *v, const size_t *obs, int ng,
                      const double *P)
{
    const mlmx_lmm_stats *s = rl->s;
    const mlmx_model *md = s->model;
    const int q1 = s->q1, nz = s->nnz_row;
    const size_t m = (size_t)s->m;
    const int lev = md->re[0].codes[obs[0]];
    double *A = v->A11 + (size_t)lev * (size_t)q1 * (size_t)q1;
    const size_t r0 = s->row_ptr[lev];
    for (int a = 0; a < ng; a++)
        mlmx_lmm_obs_entries(s, obs[a], rl->y, rl->ridx + (size_t)a * nz,
                             rl->rval + (size_t)a * nz);
    for (int b = 0; b < ng; b++) {
        const double *z1b = md->re[0].z + obs[b] * (size_t)q1;
        const int *rb = rl->ridx + (size_t)b * nz;
        const double *vb = rl->rval + (size_t)b * nz;
        for (int a = 0; a < ng; a++) {
            const double pab = P[a + b * ng];
            if (pab == 0.0)
                continue;
            const double *z1a = md->re[0].z + obs[a] * (size_t)q1;
            const int *ra = rl->ridx + (size_t)a * nz;
            const double *va = rl->rval + (size_t)a * nz;
            const int *bpa = s->obs_bpos + rl->opos[obs[a]] * (size_t)nz;
            for (int c = 0; c < q1; c++)
                for (int d = c; d < q1; d++)
                    A[d + c * q1] += pab * z1a[d] * z1b[c];
            for (int e = 0; e < nz; e++) {
                const double we = pab * va[e];
                double *brow = v->B + (r0 + (size_t)bpa[e]) * (size_t)q1;
                for (int c = 0; c < q1; c++)
                    brow[c] += we * z1b[c];
                double *arow = v->ARR + (size_t)ra[e];
                for (int f = 0; f < nz && rb[f] <= ra[e]; f++)
                    arow[(size_t)rb[f] * m] += we * vb[f];
            }
        }
    }
}

static void finish_vals(const mlmx_lmm_stats *s, mlmx_lmm_vals *v)
{
    const size_t m = (size_t)s->m;
    v->yty = v->ARR[(m - 1) + (m - 1) * m];
}

/* v = sum_k c[k] sets[k] */
static void lincomb(const mlmx_rlmm *rl, const double *c, mlmx_lmm_vals *v)
{
    const mlmx_lmm_stats *s = rl->s;
    const size_t na = (size_t)s->nblk * (size_t)s->q1 * (size_t)s->q1;
    const size_t nb = s->nrows * (size_t)s->q1, mm = (size_t)s->m * (size_t)s->m;
    vals_zero(s, v);
    for (int k = 0; k < rl->nsets; k++) {
        const mlmx_lmm_vals *u = &rl->sets[k];
        const double ck = c[k];
        if (ck == 0.0)
            continue;
        for (size_t i = 0; i < na; i++)
            v->A11[i] += ck * u->A11[i];
        for (size_t i = 0; i < nb; i++)
            v->B[i] += ck * u->B[i];
        for (size_t i = 0; i < mm; i++)
            v->ARR[i] += ck * u->ARR[i];
    }
    finish_vals(s, v);
}

static int key_index(mlmx_rlmm *rl, double key, int maxkeys)
{
    for (int k = 0; k < rl->nkeys; k++)
        if (rl->key[k] == key)
            return k;
    if (rl->nkeys >= maxkeys)
        return -1;
    rl->key[rl->nkeys] = key;
    rl->key_count[rl->nkeys] = 0.0;
    return rl->nkeys++;
}

/* The distinct ar1 gaps or cs group sizes; 0 when there are too many for
 * precomputed sets (the per-group path is used). */
static int find_keys(mlmx_rlmm *rl, int maxkeys)
{
    const mlmx_resid *r = rl->r;
    for (int g = 0; g < r->ngroups; g++) {
        const size_t o0 = r->gstart[g], o1 = r->gstart[g + 1];
        if (r->corr == MLMX_CORR_CS) {
            int k = key_index(rl, (double)(o1 - o0), maxkeys);
            if (k < 0)
                return 0;
            rl->key_count[k] += 1.0;
            continue;
        }
        for (size_t o = o0 + 1; o < o1; o++) {
            int k = key_index(rl, r->gtime[o] - r->gtime[o - 1], maxkeys);
            if (k < 0)
                return 0;
            rl->key_count[k] += 1.0;
        }
    }
    return 1;
}

static mlmx_status alloc_sets(mlmx_rlmm *rl, int nsets)
{
    const mlmx_lmm_stats *s = rl->s;
    rl->sets = calloc((size_t)nsets, sizeof *rl->sets);
    if (!rl->sets)
        return MLMX_ERR_NOMEM;
    for (int k = 0; k < nsets; k++) {
        if (mlmx_lmm_vals_init(s, &rl->sets[k], NULL) != MLMX_OK)
            return MLMX_ERR_NOMEM;
        rl->nsets = k + 1;
    }
    return MLMX_OK;
}

/* ar1's sets: [0] each group's first row; per gap k: [1+3k] the rows
 * that follow a gap k, [2+3k] the rows before one, [3+3k] the pairs. */
static void fill_ar1_sets(mlmx_rlmm *rl)
{
    const mlmx_resid *r = rl->r;
    static const double one = 1.0, lag[4] = {0.0, 1.0, 1.0, 0.0};
    for (int g = 0; g < r->ngroups; g++) {
        const size_t o0 = r->gstart[g], o1 = r->gstart[g + 1];
        pair_fill(rl, &rl->sets[0], r->gobs + o0, 1, &one);
        for (size_t o = o0 + 1; o < o1; o++) {
            int k = key_index(rl, r->gtime[o] - r->gtime[o - 1], rl->nkeys);
            pair_fill(rl, &rl->sets[1 + 3 * k], r->gobs + o, 1, &one);
            pair_fill(rl, &rl->sets[2 + 3 * k], r->gobs + o - 1, 1, &one);
            pair_fill(rl, &rl->sets[3 + 3 * k], r->gobs + o - 1, 2, lag);
        }
    }
}

/* cs's sets: [0] the ordinary statistics (copied by the caller), [1+k] sum over groups of size
 * key[k] of (sum of rows)(sum of rows)^T. */
static void fill_cs_sets(mlmx_rlmm *rl)
{
    const mlmx_resid *r = rl->r;
    double *ones = rl->Rg;
    for (int a = 0; a < r->max_gsize * r->max_gsize; a++)
        ones[a] = 1.0;
    for (int g = 0; g < r->ngroups; g++) {
        const size_t o0 = r->gstart[g];
        const int ng = (int)(r->gstart[g + 1] - o0);
        int k = key_index(rl, (double)ng, rl->nkeys);
        pair_fill(rl, &rl->sets[1 + k], r->gobs + o0, ng, ones);
    }
}

static mlmx_status fill_ident_sets(mlmx_rlmm *rl)
{
    const mlmx_resid *r = rl->r;
    const size_t n = rl->s->model->n;
    double *w = malloc((n ? n : 1) * sizeof *w);
    if (!w)
        return MLMX_ERR_NOMEM;
    for (int k = 0; k < r->nstrata; k++) {
        for (size_t i = 0; i < n; i++)
            w[i] = r->stratum[i] == k;
        mlmx_lmm_vals_fill(rl->s, &rl->sets[k], w, rl->y);
    }
    free(w);
    return MLMX_OK;
}

/* Position pairs: for each time pattern p and positions a <= b, the set
 * sum over p's groups of x_a x_a^T (a = b) or x_a x_b^T + x_b x_a^T, in
 * the order (0,0), (1,0), (1,1), (2,0), ... from pat_base[p]. */
static void fill_pair_sets(mlmx_rlmm *rl)
{
    const mlmx_resid *r = rl->r;
    static const double one = 1.0, lag[4] = {0.0, 1.0, 1.0, 0.0};
    for (int g = 0; g < r->ngroups; g++) {
        const size_t *obs = r->gobs + r->gstart[g];
        const int ng = (int)(r->gstart[g + 1] - r->gstart[g]);
        int k = rl->pat_base[rl->pat_of[g]];
        for (int a = 0; a < ng; a++)
            for (int b = 0; b <= a; b++, k++) {
                if (a == b) {
                    pair_fill(rl, &rl->sets[k], obs + a, 1, &one);
                } else {
                    const size_t two[2] = {obs[b], obs[a]};
                    pair_fill(rl, &rl->sets[k], two, 2, lag);
                }
            }
    }
}

/* The groups' distinct time patterns (size and times relative to the
 * first); 0 when there are too many position pairs for precomputed sets. */
static int find_patterns(mlmx_rlmm *rl, int maxsets)
{
    const mlmx_resid *r = rl->r;
    const int ng = r->ngroups;
    rl->pat_of = malloc((size_t)(ng ? ng : 1) * sizeof *rl->pat_of);
    rl->pat_n = malloc((size_t)(ng ? ng : 1) * sizeof *rl->pat_n);
    rl->pat_count = calloc((size_t)(ng ? ng : 1), sizeof *rl->pat_count);
    rl->pat_base = malloc((size_t)(ng ? ng : 1) * sizeof *rl->pat_base);
    rl->pat_t = calloc((size_t)(ng ? ng : 1), sizeof *rl->pat_t);
    if (!rl->pat_of || !rl->pat_n || !rl->pat_count || !rl->pat_base || !rl->pat_t)
        return -1;
    int sets = 0;
    for (int g = 0; g < ng; g++) {
        const size_t o0 = r->gstart[g];
        const int n = (int)(r->gstart[g + 1] - o0);
        int p = 0;
        for (; p < rl->npat; p++) {
            int same = rl->pat_n[p] == n;
            for (int j = 0; same && j < n; j++)
                same = rl->pat_t[p][j] == r->gtime[o0 + (size_t)j] - r->gtime[o0];
            if (same)
                break;
        }
        if (p == rl->npat) {
            sets += n * (n + 1) / 2;
            if (sets > maxsets)
                return 0;
            rl->pat_t[p] = malloc((size_t)n * sizeof **rl->pat_t);
            if (!rl->pat_t[p])
                return -1;
            for (int j = 0; j < n; j++)
                rl->pat_t[p][j] = r->gtime[o0 + (size_t)j] - r->gtime[o0];
            rl->pat_n[p] = n;
            rl->pat_base[p] = sets - n * (n + 1) / 2;
            rl->npat++;
        }
        rl->pat_of[g] = p;
        rl->pat_count[p]++;
    }
    return sets;
}

/* The precomputed sets for the current response (allocated). */
static mlmx_status fill_sets(mlmx_rlmm *rl)
{
    for (int k = 0; k < rl->nsets; k++)
        vals_zero(rl->s, &rl->sets[k]);
    switch (rl->path) {
    case PATH_AR1:
        fill_ar1_sets(rl);
        return MLMX_OK;
    case PATH_CS:
        /* [0]: the ordinary statistics, unit weights */
        mlmx_lmm_vals_fill(rl->s, &rl->sets[0], NULL, rl->y);
        fill_cs_sets(rl);
        return MLMX_OK;
    case PATH_PAIRS:
        fill_pair_sets(rl);
        return MLMX_OK;
    default:
        return fill_ident_sets(rl);
    }
}

mlmx_status mlmx_rlmm_set_response(mlmx_rlmm *rl, const double *y, mlmx_error *err)
{
    rl->y = y;
    if (rl->nsets > 0 && fill_sets(rl) != MLMX_OK)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    return MLMX_OK;
}

/* Every correlation group inside one level of the first (innermost)
 * grouping factor: the pairs then stay in that level's blocks. */
static mlmx_status check_nesting(const mlmx_rlmm *rl, mlmx_error *err)
{
    const mlmx_resid *r = rl->r;
    const mlmx_model *md = rl->s->model;
    const mlmx_reterm_info *t1 = &md->re[0];
    for (int g = 0; g < r->ngroups; g++) {
        const size_t o0 = r->gstart[g];
        const size_t i0 = r->gobs[o0];
        for (size_t o = o0 + 1; o < r->gstart[g + 1]; o++) {
            size_t i = r->gobs[o];
            if (t1->codes[i] != t1->codes[i0])
                return mlmx_err_set(err, MLMX_ERR_MODEL,
                                    "--correlation '%s': data rows %zu and %zu are in one "
                                    "correlation group but in different levels ('%s', '%s') of "
                                    "'%s', the model's innermost grouping factor; the "
                                    "correlation's groups must be nested in it (as in nlme)",
                                    r->corr_text, md->rows[i0] + 1, md->rows[i] + 1,
                                    t1->levels[t1->codes[i0]], t1->levels[t1->codes[i]],
                                    t1->group);
        }
    }
    return MLMX_OK;
}

static mlmx_status choose_path(mlmx_rlmm *rl)
{
    const mlmx_resid *r = rl->r;
    const mlmx_lmm_stats *s = rl->s;
    const size_t per_set = ((size_t)s->nblk * (size_t)s->q1 * (size_t)s->q1 +
                            s->nrows * (size_t)s->q1 + (size_t)s->m * (size_t)s->m) *
                           sizeof(double);
    /* AR(1) in any time is Markov: R_g^{-1} is tridiagonal, and stays so
     * under a variance function (D^{-1} C^{-1} D^{-1}) */
    rl->path = r->corr == MLMX_CORR_AR1 || r->corr == MLMX_CORR_CAR1 ? PATH_TRIDIAG : PATH_GROUPS;
    if (r->corr == MLMX_CORR_NONE)
        rl->path = r->var == MLMX_VAR_IDENT ? PATH_IDENT : PATH_DIAG;
    else if (r->var == MLMX_VAR_NONE &&
             (r->corr == MLMX_CORR_AR1 || r->corr == MLMX_CORR_CS)) {
        int maxkeys = r->corr == MLMX_CORR_AR1 ? (MLMX_RLMM_MAX_SETS - 1) / 3
                                               : MLMX_RLMM_MAX_SETS - 1;
        rl->key = malloc((size_t)maxkeys * sizeof *rl->key);
        rl->key_count = malloc((size_t)maxkeys * sizeof *rl->key_count);
        if (!rl->key || !rl->key_count)
            return MLMX_ERR_NOMEM;
        int sets = 0;
        if (find_keys(rl, maxkeys))
            sets = r->corr == MLMX_CORR_AR1 ? 1 + 3 * rl->nkeys : 1 + rl->nkeys;
        if (sets > 0 && (size_t)sets * per_set <= MLMX_RLMM_MAX_BYTES)
            rl->path = r->corr == MLMX_CORR_AR1 ? PATH_AR1 : PATH_CS;
    }
    if (r->corr == MLMX_CORR_ARMA && r->var == MLMX_VAR_NONE) {
        /* balanced designs: few time patterns, each position pair a set */
        const int sets = find_patterns(rl, MLMX_RLMM_MAX_PAIR_SETS);
        if (sets < 0)
            return MLMX_ERR_NOMEM;
        if (sets > 0 && (size_t)sets * per_set <= MLMX_RLMM_MAX_BYTES) {
            rl->path = PATH_PAIRS;
            rl->nkeys = sets; /* the number of sets to allocate */
        }
    }
    if (rl->path == PATH_IDENT && (r->nstrata > MLMX_RLMM_MAX_SETS ||
                                   (size_t)r->nstrata * per_set > MLMX_RLMM_MAX_BYTES))
        rl->path = PATH_DIAG;
    return MLMX_OK;
}

mlmx_status mlmx_rlmm_prepare(const mlmx_lmm_stats *s, const mlmx_resid *r, mlmx_rlmm **out,
                              mlmx_error *err)
{
    *out = NULL;
    const mlmx_model *md = s->model;
    const size_t n = md->n;
    mlmx_rlmm *rl = calloc(1, sizeof *rl);
    if (!rl)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    rl->s = s;
    rl->r = r;
    rl->y = md->y;
    mlmx_status st = MLMX_OK;
    if (r->corr != MLMX_CORR_NONE)
        st = check_nesting(rl, err);
    int gmax = r->max_gsize > 1 ? r->max_gsize : 1;
    rl->opos = malloc((n ? n : 1) * sizeof *rl->opos);
    rl->nat = malloc((size_t)(r->npar ? r->npar : 1) * sizeof *rl->nat);
    rl->Rg = malloc((size_t)gmax * (size_t)gmax * sizeof *rl->Rg);
    rl->ridx = malloc((size_t)gmax * (size_t)s->nnz_row * sizeof *rl->ridx);
    rl->rval = malloc((size_t)gmax * (size_t)s->nnz_row * sizeof *rl->rval);
    rl->sdg = malloc((size_t)gmax * sizeof *rl->sdg);
    rl->Pg = malloc((size_t)gmax * (size_t)gmax * sizeof *rl->Pg);
    if (!st && (!rl->opos || !rl->nat || !rl->Rg || !rl->ridx || !rl->rval || !rl->sdg ||
                !rl->Pg))
        st = MLMX_ERR_NOMEM;
    if (!st) {
        for (size_t o = 0; o < n; o++)
            rl->opos[s->obs_order[o]] = o;
        if (r->corr == MLMX_CORR_ARMA) {
            for (int g = 0; g < r->ngroups; g++) {
                double span = r->gtime[r->gstart[g + 1] - 1] - r->gtime[r->gstart[g]];
                if (span > rl->maxlag)
                    rl->maxlag = (int)span;
            }
            rl->acf = malloc(((size_t)rl->maxlag + 1) * sizeof *rl->acf);
            if (!rl->acf)
                st = MLMX_ERR_NOMEM;
        }
    }
    if (!st)
        st = choose_path(rl);
    if (!st && rl->path == PATH_DIAG) {
        rl->wdiag = malloc((n ? n : 1) * sizeof *rl->wdiag);
        if (!rl->wdiag)
            st = MLMX_ERR_NOMEM;
    }
    if (!st && (rl->path == PATH_AR1 || rl->path == PATH_CS || rl->path == PATH_IDENT ||
                rl->path == PATH_PAIRS)) {
        st = alloc_sets(rl, rl->path == PATH_AR1     ? 1 + 3 * rl->nkeys
                            : rl->path == PATH_CS    ? 1 + rl->nkeys
                            : rl->path == PATH_PAIRS ? rl->nkeys
                                                     : r->nstrata);
        if (!st && rl->path == PATH_PAIRS &&
            !(rl->coef = malloc((size_t)rl->nsets * sizeof *rl->coef)))
            st = MLMX_ERR_NOMEM;
        if (!st && rl->path == PATH_IDENT) {
            rl->key_count = calloc((size_t)r->nstrata, sizeof *rl->key_count);
            if (!rl->key_count)
                st = MLMX_ERR_NOMEM;
            for (size_t i = 0; !st && i < n; i++)
                rl->key_count[r->stratum[i]] += 1.0;
        }
        if (!st)
            st = fill_sets(rl);
    }
    if (st) {
        if (st == MLMX_ERR_NOMEM)
            mlmx_err_set(err, st, "out of memory preparing the residual structure");
        mlmx_rlmm_free(rl);
        return st;
    }
    *out = rl;
    return MLMX_OK;
}

/* The tridiagonal path (ar1, car1, with any variance function): R_g^{-1}
 * = D^{-1} C^{-1} D^{-1}, C^{-1} = sum_j w_j w_j^T with w_1 = e_1, w_j =
 * (e_j - phi_j e_{j-1}) / sqrt(1 - phi_j^2), phi_j = phi^(t_j - t_{j-1});
 * log|R_g| = sum_j log(1 - phi_j^2) + 2 sum log sd. O(n) per evaluation. */
static mlmx_status set_tridiag(mlmx_rlmm *rl, mlmx_lmm_vals *v, double *logdet, mlmx_error *err)
{
    const mlmx_resid *r = rl->r;
    const double phi = rl->nat[0];
    vals_zero(rl->s, v);
    double ld = 0.0;
    for (int g = 0; g < r->ngroups; g++) {
        const size_t o0 = r->gstart[g];
        const size_t *obs = r->gobs + o0;
        const int ng = (int)(r->gstart[g + 1] - o0);
        double *P = rl->Rg;
        memset(P, 0, (size_t)ng * (size_t)ng * sizeof *P);
        P[0] = 1.0;
        for (int j = 1; j < ng; j++) {
            const double pj = pow(phi, r->gtime[o0 + (size_t)j] - r->gtime[o0 + (size_t)j - 1]);
            const double den = 1.0 - pj * pj;
            if (!(den > 0.0))
                return mlmx_err_set(err, MLMX_ERR_NUMERIC, "AR(1) correlation of 1");
            ld += log(den);
            P[j + j * ng] += 1.0 / den;
            P[(j - 1) + (j - 1) * ng] += pj * pj / den;
            P[j + (j - 1) * ng] = P[(j - 1) + j * ng] = -pj / den;
        }
        if (r->var != MLMX_VAR_NONE) {
            double *sd = rl->sdg;
            for (int a = 0; a < ng; a++) {
                sd[a] = mlmx_resid_sd(r, rl->nat, obs[a]);
                ld += 2.0 * log(sd[a]);
            }
            for (int a = 0; a < ng; a++)
                for (int b = a > 0 ? a - 1 : 0; b <= a + 1 && b < ng; b++)
                    P[a + b * ng] /= sd[a] * sd[b];
        }
        pair_fill(rl, v, obs, ng, P);
    }
    finish_vals(rl->s, v);
    *logdet = ld;
    return MLMX_OK;
}

/* Position pairs (arma on few time patterns): per pattern, C_p^{-1} gives
 * the coefficients of its pair sets; log|R| = sum_p count_p log|C_p|. */
static mlmx_status set_pairs(mlmx_rlmm *rl, mlmx_lmm_vals *v, double *logdet, mlmx_error *err)
{
    double ld = 0.0;
    for (int p = 0; p < rl->npat; p++) {
        const int n = rl->pat_n[p];
        const double *t = rl->pat_t[p];
        double *C = rl->Rg, *P = rl->Pg;
        for (int b = 0; b < n; b++)
            for (int a = 0; a < n; a++)
                C[a + b * n] = rl->acf[(size_t)fabs(t[a] - t[b])];
        if (mlmx_cm_chol(n, C) != 0)
            return mlmx_err_set(err, MLMX_ERR_NUMERIC,
                                "the residual correlation matrix is not positive definite at "
                                "these parameters");
        ld += 2.0 * rl->pat_count[p] * mlmx_cm_logdiag(n, C);
        for (int b = 0; b < n; b++) {
            double *col = P + (size_t)b * (size_t)n;
            for (int a = 0; a < n; a++)
                col[a] = a == b;
            mlmx_cm_trsv_lower(n, C, col);
            mlmx_cm_trsv_lower_t(n, C, col);
        }
        int k = rl->pat_base[p];
        for (int a = 0; a < n; a++)
            for (int b = 0; b <= a; b++)
                rl->coef[k++] = P[a + b * n];
    }
    lincomb(rl, rl->coef, v);
    *logdet = ld;
    return MLMX_OK;
}

/* The per-group path: v = sum_g X_g^T R_g^{-1} X_g, log|R| = sum log|R_g|. */
static mlmx_status set_groups(mlmx_rlmm *rl, mlmx_lmm_vals *v, double *logdet, mlmx_error *err)
{
    const mlmx_resid *r = rl->r;
    vals_zero(rl->s, v);
    double ld = 0.0;
    for (int g = 0; g < r->ngroups; g++) {
        const size_t o0 = r->gstart[g];
        const int ng = (int)(r->gstart[g + 1] - o0);
        /* small groups: the kernels' Cholesky, then R_g^{-1} column by
         * column (a LAPACK call costs more than the work at this size) */
        double *R = rl->Rg, *P = rl->Pg;
        mlmx_resid_group_matrix(r, rl->nat, rl->acf, g, R);
        if (mlmx_cm_chol(ng, R) != 0)
            return mlmx_err_set(err, MLMX_ERR_NUMERIC,
                                "the residual correlation matrix of a group is not positive "
                                "definite at these parameters");
        ld += 2.0 * mlmx_cm_logdiag(ng, R);
        for (int b = 0; b < ng; b++) {
            double *col = P + (size_t)b * (size_t)ng;
            for (int a = 0; a < ng; a++)
                col[a] = a == b;
            mlmx_cm_trsv_lower(ng, R, col);
            mlmx_cm_trsv_lower_t(ng, R, col);
        }
        pair_fill(rl, v, r->gobs + o0, ng, P);
    }
    finish_vals(rl->s, v);
    *logdet = ld;
    return MLMX_OK;
}

mlmx_status mlmx_rlmm_set(mlmx_rlmm *rl, const double *x, mlmx_lmm_vals *v, double *logdet_r,
                          mlmx_error *err)
{
    const mlmx_resid *r = rl->r;
    const mlmx_model *md = rl->s->model;
    double c[MLMX_RLMM_MAX_SETS];
    mlmx_resid_natural(r, x, rl->nat);
    const double *nat = rl->nat;
    double ld = 0.0;
    switch (rl->path) {
    case PATH_AR1:
        c[0] = 1.0;
        for (int k = 0; k < rl->nkeys; k++) {
            double phi = pow(nat[0], rl->key[k]), den = 1.0 - phi * phi;
            if (!(den > 0.0))
                return mlmx_err_set(err, MLMX_ERR_NUMERIC, "AR(1) correlation of 1");
            c[1 + 3 * k] = 1.0 / den;
            c[2 + 3 * k] = phi * phi / den;
            c[3 + 3 * k] = -phi / den;
            ld += rl->key_count[k] * log(den);
        }
        lincomb(rl, c, v);
        break;
    case PATH_CS: {
        const double rho = nat[0];
        c[0] = 1.0 / (1.0 - rho);
        for (int k = 0; k < rl->nkeys; k++) {
            double ng = rl->key[k], big = 1.0 + (ng - 1.0) * rho;
            if (!(big > 0.0) || !(rho < 1.0))
                return mlmx_err_set(err, MLMX_ERR_NUMERIC,
                                    "compound-symmetry correlation outside its range");
            c[1 + k] = -rho / ((1.0 - rho) * big);
            ld += rl->key_count[k] * ((ng - 1.0) * log(1.0 - rho) + log(big));
        }
        lincomb(rl, c, v);
        break;
    }
    case PATH_IDENT:
        for (int k = 0; k < r->nstrata; k++) {
            double d = k == 0 ? 1.0 : nat[r->ncorr + k - 1];
            c[k] = 1.0 / (d * d);
            ld += rl->key_count[k] * 2.0 * log(d);
        }
        lincomb(rl, c, v);
        break;
    case PATH_DIAG:
        for (size_t i = 0; i < md->n; i++) {
            double sd = mlmx_resid_sd(r, nat, i);
            rl->wdiag[i] = 1.0 / (sd * sd);
            ld += 2.0 * log(sd);
        }
        mlmx_lmm_vals_fill(rl->s, v, rl->wdiag, rl->y);
        break;
    case PATH_TRIDIAG: {
        mlmx_status st = set_tridiag(rl, v, &ld, err);
        if (st)
            return st;
        break;
    }
    case PATH_PAIRS: {
        mlmx_status st = MLMX_OK;
        if (!mlmx_resid_arma_acf(r->arma_p, r->arma_q, nat, nat + r->arma_p, rl->maxlag, rl->acf))
            st = mlmx_err_set(err, MLMX_ERR_NUMERIC, "ARMA autocorrelations undefined");
        if (!st)
            st = set_pairs(rl, v, &ld, err);
        if (st)
            return st;
        break;
    }
    default:
        if (r->corr == MLMX_CORR_ARMA &&
            !mlmx_resid_arma_acf(r->arma_p, r->arma_q, nat, nat + r->arma_p, rl->maxlag, rl->acf))
            return mlmx_err_set(err, MLMX_ERR_NUMERIC, "ARMA autocorrelations undefined");
        mlmx_status st = set_groups(rl, v, &ld, err);
        if (st)
            return st;
    }
    if (!isfinite(ld))
        return mlmx_err_set(err, MLMX_ERR_NUMERIC, "log|R| is not finite");
    *logdet_r = ld;
    return MLMX_OK;
}
