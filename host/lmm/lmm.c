/* Sufficient statistics and the profiled LMM criterion.
 *
 * The augmented system [Z X y]^T [Z X y] is split into the first (largest)
 * term's block-diagonal part, a batch of small per-level blocks, and a
 * dense block for everything else (other terms, X, y). At each theta the
 * backend factors the per-level blocks, downdates the dense block by their
 * Schur complements, and factors it. Nothing here is O(n). */
#include "lmm/lmm.h"
#include "covstruct.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_math.h"

/* The dense block is m*m doubles twice (statistics and workspace): beyond
 * this the sparse factorization (not yet built) is needed. */
#define MLMX_DENSE_MAX 16000

void mlmx_lmm_stats_free(mlmx_lmm_stats *s)
{
    if (!s)
        return;
    free(s->term_off);
    mlmx_lmm_vals_release(&s->base);
    free(s->row_ptr);
    free(s->row_col);
    free(s->obs_bpos);
    free(s->grp);
    free(s->obs_order);
    free(s->obs_start);
    free(s->col_term);
    free(s->col_comp);
    free(s->term_q);
    for (int k = 0; k < s->nchain; k++) {
        free(s->stage_ptr[k]);
        free(s->stage_col[k]);
    }
    free(s->stage_ptr);
    free(s->stage_col);
    free(s->stages);
    free(s);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Is every level of term a inside a single level of term b? */
static int nested_in(const mlmx_model *md, int a, int b)
{
    const mlmx_reterm_info *ta = &md->re[a], *tb = &md->re[b];
    int *parent = malloc((size_t)ta->nlevels * sizeof *parent);
    if (!parent)
        return 0;
    for (int l = 0; l < ta->nlevels; l++)
        parent[l] = -1;
    int ok = 1;
    for (size_t i = 0; i < md->n && ok; i++) {
        int la = ta->codes[i], lb = tb->codes[i];
        if (parent[la] < 0)
            parent[la] = lb;
        else if (parent[la] != lb)
            ok = 0;
    }
    free(parent);
    return ok;
}

/* The nested chain: for each stage term k, the later columns each of its
 * levels touches (coarser terms' levels of its observations, X, y). Fill
 * from finer stages stays inside these sets because the terms are nested. */
static int build_chain(const mlmx_model *md, mlmx_lmm_stats *s)
{
    const int K = md->K, p = s->p;
    int nchain = 0;
    while (nchain + 1 < K && nested_in(md, nchain, nchain + 1))
        nchain++;
    s->nchain = nchain;
    s->chain_end = nchain ? s->term_off[nchain] + md->re[nchain].nlevels * md->re[nchain].q : 0;
    if (!nchain)
        return 0;
    s->stages = calloc((size_t)nchain, sizeof *s->stages);
    s->stage_ptr = calloc((size_t)nchain, sizeof *s->stage_ptr);
    s->stage_col = calloc((size_t)nchain, sizeof *s->stage_col);
    int *mark = malloc((size_t)s->m * sizeof *mark);
    int *cols = malloc((size_t)s->m * sizeof *cols);
    size_t *start = NULL, *order = NULL;
    int rc = -1;
    if (!s->stages || !s->stage_ptr || !s->stage_col || !mark || !cols)
        goto done;
    for (int k = 1; k <= nchain; k++) {
        const mlmx_reterm_info *t = &md->re[k];
        int nl = t->nlevels;
        free(start);
        free(order);
        start = calloc((size_t)nl + 1, sizeof *start);
        order = malloc((md->n ? md->n : 1) * sizeof *order);
        size_t *ptr = calloc((size_t)nl + 1, sizeof *ptr);
        s->stage_ptr[k - 1] = ptr;
        if (!start || !order || !ptr)
            goto done;
        for (size_t i = 0; i < md->n; i++)
            start[t->codes[i] + 1]++;
        for (int l = 0; l < nl; l++)
            start[l + 1] += start[l];
        for (size_t i = 0; i < md->n; i++)
            order[start[t->codes[i]]++] = i;
        for (int l = nl; l > 0; l--)
            start[l] = start[l - 1];
        start[0] = 0;
        for (int c = 0; c < s->m; c++)
            mark[c] = -1;
        /* two passes: count, then fill */
        int *colv = NULL;
        for (int pass = 0; pass < 2; pass++) {
            size_t total = 0;
            for (int l = 0; l < nl; l++) {
                int nc = 0;
                for (size_t o = start[l]; o < start[l + 1]; o++) {
                    size_t i = order[o];
                    for (int j = k + 1; j < K; j++) {
                        int c0 = s->term_off[j] + md->re[j].codes[i] * md->re[j].q;
                        for (int c = 0; c < md->re[j].q; c++)
                            if (mark[c0 + c] != l + pass * nl) {
                                mark[c0 + c] = l + pass * nl;
                                cols[nc++] = c0 + c;
                            }
                    }
                }
                qsort(cols, (size_t)nc, sizeof *cols, cmp_int);
                for (int c = 0; c < p + 1; c++)
                    cols[nc++] = s->m_re + c;
                if (pass == 1)
                    memcpy(colv + total, cols, (size_t)nc * sizeof *cols);
                total += (size_t)nc;
                ptr[l + 1] = total;
                if ((size_t)nc > s->maxcols)
                    s->maxcols = (size_t)nc;
            }
            if (pass == 0) {
                colv = malloc((total ? total : 1) * sizeof *colv);
                s->stage_col[k - 1] = colv;
                if (!colv)
                    goto done;
            }
        }
        mlmx_block_stage *st = &s->stages[k - 1];
        st->nblk = nl;
        st->q = t->q;
        st->c0 = s->term_off[k];
        st->col_ptr = ptr;
        st->col = colv;
    }
    rc = 0;
done:
    free(mark);
    free(cols);
    free(start);
    free(order);
    return rc;
}

int mlmx_lmm_obs_entries(const mlmx_lmm_stats *s, size_t i, const double *z, int *ridx,
                         double *rval)
{
    const mlmx_model *md = s->model;
    const size_t n = md->n;
    int nz = 0;
    for (int k = 1; k < md->K; k++) {
        int c0 = s->term_off[k] + md->re[k].codes[i] * md->re[k].q;
        for (int c = 0; c < md->re[k].q; c++) {
            ridx[nz] = c0 + c;
            rval[nz++] = md->re[k].z[i * (size_t)md->re[k].q + (size_t)c];
        }
    }
    for (int c = 0; c < s->p; c++) {
        ridx[nz] = s->m_re + c;
        rval[nz++] = md->X[(size_t)c * n + i];
    }
    ridx[nz] = s->m - 1;
    rval[nz++] = z[i];
    return nz;
}

void mlmx_lmm_vals_fill(const mlmx_lmm_stats *s, mlmx_lmm_vals *v, const double *w,
                        const double *z)
{
    const mlmx_model *md = s->model;
    const size_t n = md->n, m = (size_t)s->m;
    const int p = s->p, q1 = s->q1, nnz_row = s->nnz_row;
    const mlmx_reterm_info *t1 = &md->re[0];
    if (!z)
        z = md->y;
    memset(v->A11, 0, (size_t)s->nblk * (size_t)q1 * (size_t)q1 * sizeof *v->A11);
    memset(v->B, 0, (s->nrows ? s->nrows : 1) * (size_t)q1 * sizeof *v->B);
    memset(v->ARR, 0, m * m * sizeof *v->ARR);
    v->yty = 0.0;
    int *ridx = v->ridx;
    double *rval = v->rval;
    for (int j = 0; j < s->nblk; j++) {
        size_t r0 = s->row_ptr[j];
        double *A = v->A11 + (size_t)j * (size_t)q1 * (size_t)q1;
        for (size_t o = s->obs_start[j]; o < s->obs_start[j + 1]; o++) {
            size_t i = s->obs_order[o];
            const int *bp = s->obs_bpos + o * (size_t)nnz_row;
            double wi = w ? w[i] : 1.0;
            const double *z1 = t1->z + i * (size_t)q1;
            const int nz = mlmx_lmm_obs_entries(s, i, z, ridx, rval);
            const int nzr = nz - p - 1; /* entries in random-effect columns */
            for (int b = 0; b < q1; b++)
                for (int a = b; a < q1; a++)
                    A[a + b * q1] += wi * z1[a] * z1[b];
            /* ridx increases (terms by offset, then X, then the response), so
             * the lower triangle is f <= e. The block among X and the response
             * is the same dense cross-product for every observation: it is
             * summed column by column below, not scattered here. */
            for (int e = 0; e < nz; e++) {
                double *brow = v->B + (r0 + (size_t)bp[e]) * (size_t)q1;
                double we = wi * rval[e];
                for (int a = 0; a < q1; a++)
                    brow[a] += we * z1[a];
                double *arow = v->ARR + (size_t)ridx[e];
                int fend = e < nzr ? e : nzr - 1;
                for (int f = 0; f <= fend; f++)
                    arow[(size_t)ridx[f] * m] += we * rval[f];
            }
        }
    }
    /* [X z]^T W [X z], column by column (contiguous, vectorizable) */
    for (int b = 0; b <= p; b++) {
        const double *xb = b < p ? md->X + (size_t)b * n : z;
        for (int a = b; a <= p; a++) {
            const double *xa = a < p ? md->X + (size_t)a * n : z;
            /* four partial sums: the additions do not wait on each other */
            double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
            size_t i = 0;
            if (w) {
                for (; i + 4 <= n; i += 4) {
                    s0 += w[i] * xa[i] * xb[i];
                    s1 += w[i + 1] * xa[i + 1] * xb[i + 1];
                    s2 += w[i + 2] * xa[i + 2] * xb[i + 2];
                    s3 += w[i + 3] * xa[i + 3] * xb[i + 3];
                }
                for (; i < n; i++)
                    s0 += w[i] * xa[i] * xb[i];
            } else {
                for (; i + 4 <= n; i += 4) {
                    s0 += xa[i] * xb[i];
                    s1 += xa[i + 1] * xb[i + 1];
                    s2 += xa[i + 2] * xb[i + 2];
                    s3 += xa[i + 3] * xb[i + 3];
                }
                for (; i < n; i++)
                    s0 += xa[i] * xb[i];
            }
            v->ARR[(size_t)(s->m_re + a) + (size_t)(s->m_re + b) * m] = (s0 + s1) + (s2 + s3);
        }
    }
    v->yty = v->ARR[(m - 1) + (m - 1) * m];
}

/* Four partial sums: the additions do not wait on each other. */
static double dot(const double *a, const double *b, size_t n)
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

void mlmx_lmm_vals_set_response(const mlmx_lmm_stats *s, mlmx_lmm_vals *v, const double *y)
{
    const mlmx_model *md = s->model;
    const size_t n = md->n, m = (size_t)s->m;
    const int K = md->K, p = s->p, q1 = s->q1;
    const mlmx_reterm_info *t1 = &md->re[0];
    double *yrow = v->ARR + (m - 1); /* row m-1: entry c at yrow[c*m] */
    for (size_t c = 0; c < m; c++)
        yrow[c * m] = 0.0;
    for (int j = 0; j < s->nblk; j++) {
        /* the response is the last of each level's rows of B */
        double *brow = v->B + (s->row_ptr[j + 1] - 1) * (size_t)q1;
        for (int a = 0; a < q1; a++)
            brow[a] = 0.0;
        for (size_t o = s->obs_start[j]; o < s->obs_start[j + 1]; o++) {
            size_t i = s->obs_order[o];
            const double yi = y[i], *z1 = t1->z + i * (size_t)q1;
            for (int a = 0; a < q1; a++)
                brow[a] += yi * z1[a];
            for (int k = 1; k < K; k++) {
                const int q = md->re[k].q;
                const size_t c0 = (size_t)s->term_off[k] + (size_t)md->re[k].codes[i] * (size_t)q;
                const double *zk = md->re[k].z + i * (size_t)q;
                for (int c = 0; c < q; c++)
                    yrow[(c0 + (size_t)c) * m] += yi * zk[c];
            }
        }
    }
    for (int c = 0; c < p; c++)
        yrow[(size_t)(s->m_re + c) * m] = dot(md->X + (size_t)c * n, y, n);
    v->yty = dot(y, y, n);
    yrow[(m - 1) * m] = v->yty;
}

void mlmx_lmm_vals_release(mlmx_lmm_vals *v)
{
    if (!v)
        return;
    free(v->A11);
    free(v->B);
    free(v->ARR);
    free(v->ridx);
    free(v->rval);
    memset(v, 0, sizeof *v);
}

mlmx_status mlmx_lmm_vals_init(const mlmx_lmm_stats *s, mlmx_lmm_vals *v, const mlmx_lmm_vals *src)
{
    memset(v, 0, sizeof *v);
    size_t na = (size_t)s->nblk * (size_t)s->q1 * (size_t)s->q1;
    size_t nb = (s->nrows ? s->nrows : 1) * (size_t)s->q1;
    size_t mm = (size_t)s->m * (size_t)s->m;
    size_t nz = s->nnz_row > 0 ? (size_t)s->nnz_row : 1;
    v->A11 = calloc(na ? na : 1, sizeof *v->A11);
    v->B = calloc(nb, sizeof *v->B);
    v->ARR = calloc(mm, sizeof *v->ARR);
    v->ridx = malloc(nz * sizeof *v->ridx);
    v->rval = malloc(nz * sizeof *v->rval);
    if (!v->A11 || !v->B || !v->ARR || !v->ridx || !v->rval) {
        mlmx_lmm_vals_release(v);
        return MLMX_ERR_NOMEM;
    }
    if (src) {
        memcpy(v->A11, src->A11, na * sizeof *v->A11);
        memcpy(v->B, src->B, nb * sizeof *v->B);
        memcpy(v->ARR, src->ARR, mm * sizeof *v->ARR);
        v->yty = src->yty;
    }
    return MLMX_OK;
}

/* Runs of consecutive first-term levels whose rows have the same columns.
 * Kept only when some run is long enough (4+ levels of 4+ columns) for a
 * rank-k BLAS update to beat level-by-level scatter. */
static int find_groups(mlmx_lmm_stats *s)
{
    s->ngrp = 0;
    s->grp = NULL;
    s->gwork_len = 0;
    if (s->nblk < 4)
        return 0;
    int *grp = malloc(((size_t)s->nblk + 1) * sizeof *grp);
    if (!grp)
        return -1;
    int ng = 0, useful = 0;
    size_t need = 0;
    grp[0] = 0;
    for (int j = 1; j <= s->nblk; j++) {
        int same = 0;
        if (j < s->nblk) {
            size_t a0 = s->row_ptr[grp[ng]], a1 = s->row_ptr[grp[ng] + 1];
            size_t b0 = s->row_ptr[j], b1 = s->row_ptr[j + 1];
            same = a1 - a0 == b1 - b0 &&
                   memcmp(s->row_col + a0, s->row_col + b0, (a1 - a0) * sizeof *s->row_col) == 0;
        }
        if (!same) {
            int nlev = j - grp[ng];
            size_t nc = s->row_ptr[grp[ng] + 1] - s->row_ptr[grp[ng]];
            if (nlev >= 4 && nc >= 4) {
                useful = 1;
                size_t len = nc * (size_t)nlev * (size_t)s->q1 + nc * nc;
                if (len > need)
                    need = len;
            }
            grp[++ng] = j;
        }
    }
    if (!useful) {
        free(grp);
        return 0;
    }
    s->ngrp = ng;
    s->grp = grp;
    s->gwork_len = need;
    return 0;
}

mlmx_status mlmx_lmm_stats_build_ex(const mlmx_model *md, int use_x, mlmx_lmm_stats **out,
                                    mlmx_error *err)
{
    *out = NULL;
    if (md->K < 1)
        return mlmx_err_set(err, MLMX_ERR_MODEL,
                            "the formula has no random-effect terms such as (1|group); "
                            "a mixed model needs at least one");
    const size_t n = md->n;
    mlmx_lmm_stats *s = calloc(1, sizeof *s);
    if (!s)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    s->model = md;
    s->p = use_x ? md->p : 0;
    const int K = md->K, p = s->p;
    const mlmx_reterm_info *t1 = &md->re[0];
    s->q1 = t1->q;
    s->nblk = t1->nlevels;
    s->term_off = calloc((size_t)K, sizeof *s->term_off);
    s->term_q = calloc((size_t)K, sizeof *s->term_q);
    if (!s->term_off || !s->term_q)
        goto nomem;
    int off = 0;
    for (int k = 0; k < K; k++) {
        s->term_q[k] = md->re[k].q;
        if (k >= 1) {
            s->term_off[k] = off;
            off += md->re[k].nlevels * md->re[k].q;
        }
    }
    s->m_re = off;
    s->m = off + p + 1;
    if (s->m > MLMX_DENSE_MAX) {
        mlmx_lmm_stats_free(s);
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                            "the non-nested part of the model has %d columns; the dense "
                            "factorization is limited to %d (sparse factorization not yet "
                            "available)",
                            off + p + 1, MLMX_DENSE_MAX);
    }
    const size_t m = (size_t)s->m;
    s->col_term = malloc(m * sizeof *s->col_term);
    s->col_comp = malloc(m * sizeof *s->col_comp);
    s->row_ptr = calloc((size_t)s->nblk + 1, sizeof *s->row_ptr);
    if (!s->col_term || !s->col_comp || !s->row_ptr)
        goto nomem;
    for (size_t c = 0; c < m; c++) {
        s->col_term[c] = -1;
        s->col_comp[c] = 0;
    }
    for (int k = 1; k < K; k++)
        for (int c = 0; c < md->re[k].nlevels * md->re[k].q; c++) {
            s->col_term[s->term_off[k] + c] = k;
            s->col_comp[s->term_off[k] + c] = c % md->re[k].q;
        }

    /* Observations grouped by first-term level (counting sort). */
    size_t *start = calloc((size_t)s->nblk + 1, sizeof *start);
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    int *mark = malloc(m * sizeof *mark);
    int *cols = malloc(m * sizeof *cols);
    int *pos = malloc(m * sizeof *pos);
    /* nnz of one dense row: other terms' components, X, y */
    int nnz_row = p + 1;
    for (int k = 1; k < K; k++)
        nnz_row += md->re[k].q;
    if (!start || !order || !mark || !cols || !pos) {
        free(start);
        free(order);
        free(mark);
        free(cols);
        free(pos);
        goto nomem;
    }
    for (size_t i = 0; i < n; i++)
        start[t1->codes[i] + 1]++;
    for (int j = 0; j < s->nblk; j++)
        start[j + 1] += start[j];
    {
        size_t *fill = malloc(((size_t)s->nblk + 1) * sizeof *fill);
        if (!fill) {
            free(start);
            free(order);
            free(mark);
            free(cols);
            free(pos);
            goto nomem;
        }
        memcpy(fill, start, ((size_t)s->nblk + 1) * sizeof *fill);
        for (size_t i = 0; i < n; i++)
            order[fill[t1->codes[i]]++] = i;
        free(fill);
    }
    for (size_t c = 0; c < m; c++)
        mark[c] = -1;

    /* First pass: the columns each level touches, to size B. */
    size_t total = 0;
    for (int j = 0; j < s->nblk; j++) {
        int nc = 0;
        for (size_t o = start[j]; o < start[j + 1]; o++) {
            size_t i = order[o];
            for (int k = 1; k < K; k++) {
                int c0 = s->term_off[k] + md->re[k].codes[i] * md->re[k].q;
                for (int c = 0; c < md->re[k].q; c++)
                    if (mark[c0 + c] != j) {
                        mark[c0 + c] = j;
                        nc++;
                    }
            }
        }
        total += (size_t)nc + (size_t)p + 1;
        s->row_ptr[j + 1] = total;
    }
    s->nrows = total;
    s->row_col = malloc((total ? total : 1) * sizeof *s->row_col);
    s->nnz_row = nnz_row;
    s->obs_bpos = malloc((n ? n : 1) * (size_t)nnz_row * sizeof *s->obs_bpos);
    if (!s->row_col || !s->obs_bpos) {
        free(start);
        free(order);
        free(mark);
        free(cols);
        free(pos);
        goto nomem;
    }
    for (size_t c = 0; c < m; c++)
        mark[c] = -1;

    for (int j = 0; j < s->nblk; j++) {
        int nc = 0;
        for (size_t o = start[j]; o < start[j + 1]; o++) {
            size_t i = order[o];
            for (int k = 1; k < K; k++) {
                int c0 = s->term_off[k] + md->re[k].codes[i] * md->re[k].q;
                for (int c = 0; c < md->re[k].q; c++)
                    if (mark[c0 + c] != j) {
                        mark[c0 + c] = j;
                        cols[nc++] = c0 + c;
                    }
            }
        }
        qsort(cols, (size_t)nc, sizeof *cols, cmp_int);
        for (int c = 0; c < p + 1; c++)
            cols[nc + c] = s->m_re + c;
        int ncol = nc + p + 1;
        size_t r0 = s->row_ptr[j];
        for (int a = 0; a < ncol; a++) {
            s->row_col[r0 + (size_t)a] = cols[a];
            pos[cols[a]] = a;
        }
        /* each observation's entries, in row order: B rows of its level */
        for (size_t o = start[j]; o < start[j + 1]; o++) {
            size_t i = order[o];
            int *bp = s->obs_bpos + o * (size_t)nnz_row;
            int nz = 0;
            for (int k = 1; k < K; k++) {
                int c0 = s->term_off[k] + md->re[k].codes[i] * md->re[k].q;
                for (int c = 0; c < md->re[k].q; c++)
                    bp[nz++] = pos[c0 + c];
            }
            for (int c = 0; c < p + 1; c++)
                bp[nz++] = pos[s->m_re + c];
        }
    }
    s->obs_order = order;
    s->obs_start = start;
    order = NULL;
    start = NULL;
    free(start);
    free(order);
    free(mark);
    free(cols);
    free(pos);
    if (mlmx_lmm_vals_init(s, &s->base, NULL) != MLMX_OK)
        goto nomem;
    mlmx_lmm_vals_fill(s, &s->base, NULL, NULL);
    if (build_chain(md, s) != 0)
        goto nomem;
    if (find_groups(s) != 0)
        goto nomem;
    *out = s;
    return MLMX_OK;
nomem:
    mlmx_lmm_stats_free(s);
    return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory building the sufficient statistics");
}

mlmx_status mlmx_lmm_stats_build(const mlmx_model *md, mlmx_lmm_stats **out, mlmx_error *err)
{
    *out = NULL;
    if (md->resp_kind != MLMX_RESP_NUMERIC)
        return mlmx_err_set(err, MLMX_ERR_DATA,
                            "response '%s' is not numeric (it is %s); a linear mixed model needs "
                            "a numeric response (for a binary, count or ordinal outcome choose a "
                            "family)",
                            md->response_name,
                            md->resp_kind == MLMX_RESP_FACTOR ? "a factor" : "a cbind() of counts");
    if (md->offset)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                            "offset() is not supported for linear mixed models; subtract it from "
                            "the response");
    if (md->weights)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                            "prior weights are not supported for linear mixed models yet (only "
                            "with --family)");
    const size_t n = md->n;
    for (int k = 0; k < md->K; k++) {
        const mlmx_reterm_info *r = &md->re[k];
        if ((size_t)r->nlevels >= n)
            return mlmx_err_set(err, MLMX_ERR_MODEL,
                                "grouping factor '%s' has %d levels for %zu observations; a "
                                "linear mixed model needs fewer levels than observations",
                                r->group, r->nlevels, n);
        /* lme4's check; a structured covariance has fewer parameters than
         * T and stays identifiable (glmmTMB fits ar1(0 + factor(t) | id)) */
        if (r->cov == MLMX_COV_US && (size_t)r->nlevels * (size_t)r->q >= n)
            return mlmx_err_set(err, MLMX_ERR_MODEL,
                                "term for '%s' has %zu random effects for %zu observations; the "
                                "random-effect and residual variances are not identifiable",
                                r->group, (size_t)r->nlevels * (size_t)r->q, n);
    }
    return mlmx_lmm_stats_build_ex(md, 1, out, err);
}

void mlmx_lmm_work_free(mlmx_lmm_work *w)
{
    if (!w)
        return;
    mlmx_lmm_vals_release(&w->v);
    free(w->tmats);
    free(w->tptr);
    free(w->L11);
    free(w->L21);
    free(w->S);
    free(w->wv);
    free(w->u1);
    free(w->Sinv);
    free(w->scratch);
    free(w->gwork);
    free(w);
}

static int qmax_of(const mlmx_lmm_stats *s)
{
    int qm = 1;
    for (int k = 0; k < s->model->K; k++)
        if (s->term_q[k] > qm)
            qm = s->term_q[k];
    return qm;
}

mlmx_status mlmx_lmm_work_alloc(const mlmx_lmm_stats *s, mlmx_lmm_work **out, mlmx_error *err)
{
    *out = NULL;
    mlmx_lmm_work *w = calloc(1, sizeof *w);
    if (!w)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    int K = s->model->K, qm = qmax_of(s);
    w->tmats = calloc((size_t)K * (size_t)qm * (size_t)qm, sizeof *w->tmats);
    w->tptr = calloc((size_t)K, sizeof *w->tptr);
    w->L11 = calloc((size_t)s->nblk * (size_t)s->q1 * (size_t)s->q1, sizeof *w->L11);
    w->L21 = calloc((s->nrows ? s->nrows : 1) * (size_t)s->q1, sizeof *w->L21);
    w->S = calloc((size_t)s->m * (size_t)s->m, sizeof *w->S);
    w->wv = calloc((size_t)s->m, sizeof *w->wv);
    w->u1 = calloc((size_t)s->nblk * (size_t)s->q1, sizeof *w->u1);
    /* Sinv is allocated on first use (mlmx_lmm_inverse_buffer) */
    w->scratch = malloc((s->maxcols ? s->maxcols : 1) * (size_t)qm * sizeof *w->scratch);
    if (s->ngrp > 0) {
        w->gwork = malloc(s->gwork_len * sizeof *w->gwork);
        if (!w->gwork) {
            mlmx_lmm_work_free(w);
            return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory allocating the workspace");
        }
    }
    if (!w->tmats || !w->tptr || !w->L11 || !w->L21 || !w->S || !w->wv || !w->u1 ||
        !w->scratch || mlmx_lmm_vals_init(s, &w->v, &s->base) != MLMX_OK) {
        mlmx_lmm_work_free(w);
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory allocating the workspace");
    }
    w->qmax = qm;
    for (int k = 0; k < K; k++)
        w->tptr[k] = w->tmats + (size_t)k * (size_t)qm * (size_t)qm;
    *out = w;
    return MLMX_OK;
}

double *mlmx_lmm_inverse_buffer(const mlmx_lmm_stats *s, mlmx_lmm_work *w)
{
    if (!w->Sinv) {
        size_t mp = (size_t)s->m - 1;
        w->Sinv = malloc((mp > 0 ? mp * mp : 1) * sizeof *w->Sinv);
    }
    return w->Sinv;
}

double mlmx_lmm_criterion(const mlmx_lmm_stats *s, const mlmx_lmm_work *w, int reml)
{
    const double n = (double)s->model->n;
    const double two_pi = 6.283185307179586476925286766559;
    if (reml) {
        double nmp = n - (double)s->model->p;
        return w->logdet_z + w->logdet_x + nmp * (1.0 + log(two_pi * w->r2 / nmp));
    }
    return w->logdet_z + n * (1.0 + log(two_pi * w->r2 / n));
}

/* S = Lambda_R^T ARR Lambda_R + I on the random-effect columns (lower
 * triangle). Lambda_R is block diagonal: each level of a term k >= 1 is a
 * q_k x q_k block T_k; X and y columns are untouched. */
/* One entry (a >= b) of Lambda_R^T ARR Lambda_R. Lambda_R is block
 * diagonal: each level of a term k >= 1 is a q_k x q_k block T_k; X and y
 * columns are untouched. */
static double dense_entry(const mlmx_lmm_stats *s, const mlmx_lmm_work *w, size_t a, size_t b)
{
    const size_t m = (size_t)s->m;
    const double *A = w->v.ARR;
    int kb = s->col_term[b], ka = s->col_term[a];
    int qb = kb < 0 ? 1 : s->term_q[kb], qa = ka < 0 ? 1 : s->term_q[ka];
    int cb = s->col_comp[b], ca = s->col_comp[a];
    size_t b0 = b - (size_t)cb, a0 = a - (size_t)ca; /* first columns of the blocks */
    double sum = 0.0;
    for (int i = ca; i < qa; i++) {
        double lai = ka < 0 ? 1.0 : w->tptr[ka][i + ca * qa];
        size_t ai = a0 + (size_t)i;
        for (int j = cb; j < qb; j++) {
            double lbj = kb < 0 ? 1.0 : w->tptr[kb][j + cb * qb];
            size_t bj = b0 + (size_t)j;
            double aij = ai >= bj ? A[ai + bj * m] : A[bj + ai * m];
            sum += lai * aij * lbj;
        }
    }
    return sum;
}

/* S = Lambda_R^T ARR Lambda_R + I on the random-effect columns (lower
 * triangle). Columns of the nested stages are written only where their
 * structure has entries: everywhere else S keeps the zeros it was
 * allocated with, which the stage factorization never overwrites. */
static void build_dense(const mlmx_lmm_stats *s, const mlmx_lmm_work *w)
{
    const size_t m = (size_t)s->m;
    double *S = w->S;
    for (int k = 0; k < s->nchain; k++) {
        const mlmx_block_stage *st = &s->stages[k];
        for (int l = 0; l < st->nblk; l++) {
            size_t c = (size_t)st->c0 + (size_t)l * (size_t)st->q;
            for (int bq = 0; bq < st->q; bq++) {
                size_t b = c + (size_t)bq;
                for (int aq = bq; aq < st->q; aq++)
                    S[c + (size_t)aq + b * m] = dense_entry(s, w, c + (size_t)aq, b);
                for (size_t r = st->col_ptr[l]; r < st->col_ptr[l + 1]; r++)
                    S[(size_t)st->col[r] + b * m] = dense_entry(s, w, (size_t)st->col[r], b);
            }
        }
    }
    int all_scalar = 1;
    for (int k = 1; k < s->model->K; k++)
        if (s->term_q[k] != 1)
            all_scalar = 0;
    for (size_t b = (size_t)s->chain_end; b < m; b++) {
        double *sc = S + b * m;
        if (all_scalar) {
            /* lambda_c: theta of the column's term, 1 for X and y */
            const double *ac = w->v.ARR + b * m;
            int kb = s->col_term[b];
            double lb = kb < 0 ? 1.0 : w->tptr[kb][0];
            for (size_t a = b; a < m; a++) {
                int ka = s->col_term[a];
                sc[a] = (ka < 0 ? 1.0 : w->tptr[ka][0]) * ac[a] * lb;
            }
        } else {
            for (size_t a = b; a < m; a++)
                sc[a] = dense_entry(s, w, a, b);
        }
    }
    for (int c = 0; c < s->m_re; c++)
        S[(size_t)c + (size_t)c * m] += 1.0;
}

mlmx_status mlmx_lmm_eval(const mlmx_lmm_stats *s, const mlmx_backend *be, const double *theta,
                          int reml, mlmx_lmm_work *w, double *crit, mlmx_error *err)
{
    const mlmx_model *md = s->model;
    w->be = be;
    for (int k = 0; k < md->K; k++)
        mlmx_cm_theta_to_t(s->term_q[k], theta + md->re[k].theta_offset,
                           w->tmats + (size_t)k * (size_t)w->qmax * (size_t)w->qmax);
    mlmx_cluster_batch b = {s->nblk, s->q1,       s->m,    w->v.A11,   s->row_ptr,
                            s->row_col, w->v.B, s->col_term, s->col_comp, s->term_q,
                            s->ngrp,  s->grp,    w->gwork};
    double logdiag1 = 0.0;
    mlmx_status st = be->cluster_factor(&b, w->tptr, w->L11, w->L21, &logdiag1);
    if (st)
        return mlmx_err_set(err, st, "per-level factorization failed for '%s'", md->re[0].group);
    build_dense(s, w);
    st = be->schur_downdate(&b, w->L21, w->S);
    if (st)
        return mlmx_err_set(err, st, "Schur complement update failed");
    int fail = -1;
    for (int k = 0; k < s->nchain && !st; k++)
        st = be->stage_chol(&s->stages[k], s->m, w->S, w->scratch, &fail);
    if (!st) {
        size_t off = (size_t)s->chain_end;
        st = be->dense_chol(s->m - s->chain_end, w->S + off + off * (size_t)s->m, s->m, &fail);
        if (st)
            fail += s->chain_end;
        if (st && s->allow_zero_r && fail == s->m - 1) {
            st = MLMX_OK;
            w->S[(size_t)(s->m - 1) * ((size_t)s->m + 1)] = 0.0;
        }
    }
    if (st) {
        if (fail >= s->m_re && fail < s->m - 1)
            return mlmx_err_set(err, MLMX_ERR_NUMERIC,
                                "fixed-effect matrix is numerically rank deficient at column '%s'",
                                md->fixef_names[fail - s->m_re]);
        if (fail == s->m - 1)
            return mlmx_err_set(err, MLMX_ERR_NUMERIC,
                                "the model fits the response exactly (zero residual variance)");
        return mlmx_err_set(err, MLMX_ERR_NUMERIC,
                            "random-effect system is not positive definite (column %d)", fail);
    }
    const size_t m = (size_t)s->m;
    double ld = logdiag1, ldx = 0.0;
    for (size_t c = 0; c < (size_t)s->m_re; c++)
        ld += log(w->S[c + c * m]);
    for (size_t c = (size_t)s->m_re; c + 1 < m; c++)
        ldx += log(w->S[c + c * m]);
    double r = w->S[(m - 1) + (m - 1) * m];
    w->logdet_z = 2.0 * ld;
    w->logdet_x = 2.0 * ldx;
    w->r2 = r * r;
    *crit = mlmx_lmm_criterion(s, w, reml);
    return MLMX_OK;
}
