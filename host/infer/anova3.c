/* The hypotheses of Type III F tests, as lmerTest 3.1 builds them
 * (get_contrasts_type3, after SAS's Type III and the "containment" rule):
 *
 * 1. rdX is the over-parameterised design: the intercept and, for each
 *    term, one column per cell of its factors (every level, no reference)
 *    times its numeric variables. Each cell column is X c for one c (X has
 *    full rank and treatment coding spans the cells); the rows c^T form L.
 * 2. For each term, from the highest order down: when other terms contain
 *    it (their variables are a strict superset and they have the same
 *    numeric variables), L's columns of the term are replaced by their
 *    least-squares residuals on the columns of those terms.
 * 3. The rows of L whose cells are columns of X form a p x p matrix; the
 *    hypothesis of a term is its columns of that matrix, as rows.
 * R finds c by a pseudo-inverse (ginv(X) rdX); here c comes from the
 * coding itself: a reference level's indicator is the margin's column
 * minus the other levels' columns. With at most one term, lmerTest uses
 * the Type I (sequential) hypotheses instead: the term's rows of the unit
 * upper-triangular factor of X^T X. */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"

/* Cells of the over-parameterised design. */
typedef struct cells {
    const mlmx_model *m;
    int ncell, *start;  /* first cell of each term (the intercept is cell 0 when present) */
    int icpt;           /* the intercept's column in X, or -1 */
    double *L;          /* ncell x p, column-major: row = the cell's c */
    int bad;            /* a cell is not in the span of X's columns as coded */
} cells;

/* Mixed-radix cell index of the levels lev[] (numerics -1) within term t. */
static int cell_index(const mlmx_fixterm *ft, const int *lev)
{
    int idx = 0, mul = 1;
    for (int a = 0; a < ft->nvars; a++)
        if (ft->nlevels[a] > 0) {
            idx += lev[a] * mul;
            mul *= ft->nlevels[a];
        }
    return idx;
}

static int ncells_of(const mlmx_fixterm *ft)
{
    int n = 1;
    for (int a = 0; a < ft->nvars; a++)
        if (ft->nlevels[a] > 0)
            n *= ft->nlevels[a];
    return n;
}

/* The term of X whose variables are the set {vars[a] : keep[a]} of term
 * t's (-2: none; -1: the empty set, the intercept). */
static int term_with(const mlmx_model *m, int t, const int *keep)
{
    const mlmx_fixterm *ft = &m->fixterms[t];
    int nk = 0;
    for (int a = 0; a < ft->nvars; a++)
        nk += keep[a];
    if (nk == 0)
        return -1;
    for (int u = 0; u < m->nfixterms; u++) {
        const mlmx_fixterm *fu = &m->fixterms[u];
        if (fu->nvars != nk)
            continue;
        int all = 1;
        for (int a = 0; a < ft->nvars && all; a++) {
            if (!keep[a])
                continue;
            int found = 0;
            for (int b = 0; b < fu->nvars; b++)
                found |= strcmp(ft->vars[a], fu->vars[b]) == 0;
            all = found;
        }
        if (all)
            return u;
    }
    return -2;
}

/* X's column of term u at the levels of term t's variables (kept ones). */
static int column_of(const mlmx_model *m, int t, int u, const int *keep, const int *lev)
{
    const mlmx_fixterm *ft = &m->fixterms[t], *fu = &m->fixterms[u];
    for (int j = 0; j < m->p; j++) {
        const int *c = m->fixef_cell[j];
        if (c[0] != u)
            continue;
        int match = 1;
        for (int b = 0; b < fu->nvars && match; b++)
            for (int a = 0; a < ft->nvars; a++)
                if (keep[a] && strcmp(ft->vars[a], fu->vars[b]) == 0)
                    match = c[1 + b] == lev[a];
        if (match)
            return j;
    }
    return -1;
}

/* Add w times the expansion of cell (term t, variables keep, levels lev)
 * in X's columns to row `row` of C->L. */
static void expand(cells *C, int row, int t, int *keep, int *lev, double w, int depth)
{
    const mlmx_model *m = C->m;
    const mlmx_fixterm *ft = &m->fixterms[t];
    const int u = term_with(m, t, keep);
    if (u == -1) {
        if (C->icpt < 0)
            C->bad = 1;
        else
            C->L[row + (size_t)C->icpt * C->ncell] += w;
        return;
    }
    if (u == -2 || depth > 64) {
        C->bad = 1;
        return;
    }
    /* a factor coded by contrasts at its reference level: 1 - the others */
    const mlmx_fixterm *fu = &m->fixterms[u];
    for (int a = 0; a < ft->nvars; a++) {
        if (!keep[a] || ft->nlevels[a] == 0 || lev[a] != 0)
            continue;
        for (int b = 0; b < fu->nvars; b++)
            if (strcmp(fu->vars[b], ft->vars[a]) == 0 && fu->coded_from[b] == 1) {
                keep[a] = 0;
                expand(C, row, t, keep, lev, w, depth + 1);
                keep[a] = 1;
                for (int l = 1; l < ft->nlevels[a]; l++) {
                    lev[a] = l;
                    expand(C, row, t, keep, lev, -w, depth + 1);
                }
                lev[a] = 0;
                return;
            }
    }
    const int j = column_of(m, t, u, keep, lev);
    if (j < 0)
        C->bad = 1;
    else
        C->L[row + (size_t)j * C->ncell] += w;
}

/* Step 1: L's rows, one per cell. */
static mlmx_status build_cells(cells *C)
{
    const mlmx_model *m = C->m;
    const int T = m->nfixterms;
    C->icpt = -1;
    for (int j = 0; j < m->p; j++)
        if (m->fixef_cell[j][0] == -1)
            C->icpt = j;
    C->start = malloc((size_t)(T + 1) * sizeof *C->start);
    if (!C->start)
        return MLMX_ERR_NOMEM;
    int n = C->icpt >= 0;
    for (int t = 0; t < T; t++) {
        C->start[t] = n;
        n += ncells_of(&m->fixterms[t]);
    }
    C->start[T] = n;
    C->ncell = n;
    C->L = calloc((size_t)n * m->p, sizeof *C->L);
    int *keep = malloc(64 * sizeof *keep), *lev = malloc(64 * sizeof *lev);
    if (!C->L || !keep || !lev) {
        free(keep);
        free(lev);
        return MLMX_ERR_NOMEM;
    }
    if (C->icpt >= 0)
        C->L[0 + (size_t)C->icpt * n] = 1.0;
    for (int t = 0; t < T && !C->bad; t++) {
        const mlmx_fixterm *ft = &m->fixterms[t];
        if (ft->nvars > 64) {
            C->bad = 1;
            break;
        }
        for (int a = 0; a < ft->nvars; a++) {
            keep[a] = 1;
            lev[a] = ft->nlevels[a] > 0 ? 0 : -1;
        }
        for (int c = 0; c < ncells_of(ft); c++) {
            /* levels of cell c: first factor fastest */
            for (int a = 0, r = c; a < ft->nvars; a++)
                if (ft->nlevels[a] > 0) {
                    lev[a] = r % ft->nlevels[a];
                    r /= ft->nlevels[a];
                }
            expand(C, C->start[t] + cell_index(ft, lev), t, keep, lev, 1.0, 0);
        }
    }
    free(keep);
    free(lev);
    return MLMX_OK;
}

/* R's zapsmall(x, 7) over n values. */
static void zapsmall(double *x, size_t n)
{
    double mx = 0.0;
    for (size_t i = 0; i < n; i++)
        mx = fmax(mx, fabs(x[i]));
    if (!(mx > 0.0))
        return;
    int d = 7 - (int)ceil(log10(mx));
    if (d < 0)
        d = 0;
    const double sc = pow(10.0, d);
    for (size_t i = 0; i < n; i++)
        x[i] = round(x[i] * sc) / sc;
}

/* Does term a's variable set lie strictly inside term b's, with the same
 * numeric variables (lmerTest's term_contain)? */
static int contains(const mlmx_model *m, int a, int b)
{
    const mlmx_fixterm *A = &m->fixterms[a], *B = &m->fixterms[b];
    if (A->nvars >= B->nvars)
        return 0;
    int numA = 0, numB = 0;
    for (int i = 0; i < A->nvars; i++) {
        int found = 0;
        for (int j = 0; j < B->nvars; j++)
            found |= strcmp(A->vars[i], B->vars[j]) == 0;
        if (!found)
            return 0;
        numA += A->nlevels[i] == 0;
    }
    for (int j = 0; j < B->nvars; j++)
        numB += B->nlevels[j] == 0;
    return numA == numB; /* A's numerics are among B's: equal sets iff equal counts */
}

/* Step 2: residuals of term t's columns of L on its containers' columns. */
static mlmx_status orthogonalize(cells *C, int t)
{
    const mlmx_model *m = C->m;
    const int n = C->ncell, p = m->p;
    int nx = 0, ny = 0;
    for (int j = 0; j < p; j++) {
        const int u = m->fixef_cell[j][0];
        ny += u == t;
        nx += u >= 0 && u != t && contains(m, t, u);
    }
    if (nx == 0 || ny == 0)
        return MLMX_OK;
    double *Xr = malloc((size_t)n * nx * sizeof *Xr), *Y = malloc((size_t)n * ny * sizeof *Y);
    lapack_int *jpvt = calloc((size_t)nx, sizeof *jpvt), rank;
    if (!Xr || !Y || !jpvt) {
        free(Xr), free(Y), free(jpvt);
        return MLMX_ERR_NOMEM;
    }
    for (int j = 0, ix = 0, iy = 0; j < p; j++) {
        const int u = m->fixef_cell[j][0];
        if (u == t)
            memcpy(Y + (size_t)iy++ * n, C->L + (size_t)j * n, (size_t)n * sizeof *Y);
        else if (u >= 0 && contains(m, t, u))
            memcpy(Xr + (size_t)ix++ * n, C->L + (size_t)j * n, (size_t)n * sizeof *Xr);
    }
    double *Yc = malloc((size_t)n * ny * sizeof *Yc), *Xc = malloc((size_t)n * nx * sizeof *Xc);
    mlmx_status st = Yc && Xc ? MLMX_OK : MLMX_ERR_NOMEM;
    if (!st) {
        memcpy(Yc, Y, (size_t)n * ny * sizeof *Yc);
        memcpy(Xc, Xr, (size_t)n * nx * sizeof *Xc);
        /* lm.fit: least squares by a pivoting QR with tolerance 1e-7 */
        if (LAPACKE_dgelsy(LAPACK_COL_MAJOR, n, nx, ny, Xc, n, Yc, n, jpvt, 1e-7, &rank))
            st = MLMX_ERR_NUMERIC;
    }
    if (!st) {
        /* residual = Y - Xr beta (beta: Yc's first nx rows) */
        for (int c = 0; c < ny; c++)
            for (int i = 0; i < n; i++) {
                double fit = 0.0;
                for (int k = 0; k < nx; k++)
                    fit += Xr[i + (size_t)k * n] * Yc[k + (size_t)c * n];
                Y[i + (size_t)c * n] -= fit;
            }
        zapsmall(Y, (size_t)n * ny);
        for (int j = 0, iy = 0; j < p; j++)
            if (m->fixef_cell[j][0] == t)
                memcpy(C->L + (size_t)j * n, Y + (size_t)iy++ * n, (size_t)n * sizeof *Y);
    }
    free(Xr), free(Y), free(jpvt), free(Yc), free(Xc);
    return st;
}

/* Step 3: each term's hypothesis rows from the rows of X's own cells. */
static mlmx_status term_rows(const cells *C, double ***Lout, int **rows)
{
    const mlmx_model *m = C->m;
    const int p = m->p, n = C->ncell, T = m->nfixterms;
    int *sel = malloc((size_t)p * sizeof *sel); /* L's row of X's column j */
    int lev[64];
    if (!sel)
        return MLMX_ERR_NOMEM;
    for (int j = 0; j < p; j++) {
        const int *c = m->fixef_cell[j];
        if (c[0] < 0) {
            sel[j] = 0;
            continue;
        }
        const mlmx_fixterm *ft = &m->fixterms[c[0]];
        for (int a = 0; a < ft->nvars; a++)
            lev[a] = c[1 + a];
        sel[j] = C->start[c[0]] + cell_index(ft, lev);
    }
    for (int t = 0; t < T; t++) {
        int nr = 0;
        double *Lt = calloc((size_t)p * (size_t)(p ? p : 1), sizeof *Lt);
        if (!Lt) {
            free(sel);
            return MLMX_ERR_NOMEM;
        }
        for (int c = 0; c < p; c++) {
            if (m->fixef_cell[c][0] != t)
                continue;
            double s = 0.0;
            for (int j = 0; j < p; j++) {
                Lt[(size_t)nr * p + j] = C->L[sel[j] + (size_t)c * n];
                s += fabs(Lt[(size_t)nr * p + j]);
            }
            nr += s > 1e-8;
        }
        (*Lout)[t] = Lt;
        (*rows)[t] = nr;
    }
    free(sel);
    return MLMX_OK;
}

/* Type I rows: the unit upper-triangular factor of X^T X (X^T X = R^T R,
 * row j of R / R_jj). */
static mlmx_status type1(const mlmx_model *m, double **Lout, int *rows)
{
    const int p = m->p;
    double *R = calloc((size_t)p * p, sizeof *R);
    if (!R)
        return MLMX_ERR_NOMEM;
    for (int j = 0; j < p; j++)
        for (int i = 0; i <= j; i++) {
            double s = 0.0;
            for (size_t o = 0; o < m->n; o++)
                s += m->X[o + (size_t)i * m->n] * m->X[o + (size_t)j * m->n];
            R[i + (size_t)j * p] = s;
        }
    if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', p, R, p)) {
        free(R);
        return MLMX_ERR_NUMERIC;
    }
    for (int t = 0; t < m->nfixterms; t++) {
        double *Lt = calloc((size_t)p * p, sizeof *Lt);
        int nr = 0;
        if (!Lt) {
            free(R);
            return MLMX_ERR_NOMEM;
        }
        for (int c = 0; c < p; c++) {
            if (m->fixef_cell[c][0] != t)
                continue;
            for (int j = c; j < p; j++)
                Lt[(size_t)nr * p + j] = R[c + (size_t)j * p] / R[c + (size_t)c * p];
            nr++;
        }
        Lout[t] = Lt;
        rows[t] = nr;
    }
    free(R);
    return MLMX_OK;
}

/* Terms in decreasing order of their number of variables (R's stable order()). */
static void term_order(const mlmx_model *m, int *ord)
{
    int n = 0;
    for (int k = 64; k >= 1; k--)
        for (int t = 0; t < m->nfixterms; t++)
            if (m->fixterms[t].nvars == k || (k == 64 && m->fixterms[t].nvars > 64))
                ord[n++] = t;
}

mlmx_status mlmx_type3_contrasts(const mlmx_model *m, double ***L, int **rows)
{
    const int T = m->nfixterms;
    *L = calloc((size_t)(T ? T : 1), sizeof **L);
    *rows = calloc((size_t)(T ? T : 1), sizeof **rows);
    if (!*L || !*rows)
        return MLMX_ERR_NOMEM;
    if (!m->fixef_cell)
        return MLMX_ERR_UNSUPPORTED;
    if (m->p <= 1 || T <= 1)
        return type1(m, *L, *rows);
    cells C = {m, 0, NULL, -1, NULL, 0};
    mlmx_status st = build_cells(&C);
    int *ord = malloc((size_t)T * sizeof *ord);
    if (!st && !ord)
        st = MLMX_ERR_NOMEM;
    if (!st && C.bad)
        st = MLMX_ERR_UNSUPPORTED;
    if (!st) {
        term_order(m, ord);
        for (int i = 0; i < T && !st; i++)
            st = orthogonalize(&C, ord[i]);
    }
    if (!st)
        st = term_rows(&C, L, rows);
    free(ord);
    free(C.start);
    free(C.L);
    return st;
}
