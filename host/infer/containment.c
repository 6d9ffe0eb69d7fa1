/* nlme's denominator degrees of freedom for the fixed effects (Pinheiro &
 * Bates 2000, section 2.4.2; the "inner-outer" or containment rule): with
 * nested grouping levels 1 (outermost) .. Q and N observations, level s
 * has ngrps_s - ngrps_{s-1} degrees of freedom and the residual stratum
 * N - ngrps_Q. A column of X belongs to the stratum just inside the
 * innermost level within whose groups it varies (the residual stratum when
 * it varies within the innermost groups; level 1 when it is constant
 * within the outermost ones); each stratum loses one df per column (per
 * term's column for the terms' df) it holds, the outermost one more for
 * the intercept; a column's df is its stratum's, the intercept's the
 * largest. nlme prints these in summary(lme) and anova(lme); they apply to
 * the residual structures of host/resid as they are (they depend on the
 * design only). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "lmm/fit.h"

/* The distinct grouping factors of m's terms, outermost (fewest levels)
 * first: their term indices in lev[0..*nq). 0, or -1 when they are not a
 * nested chain (crossed factors). */
static int nested_levels(const mlmx_model *m, int *lev, int *nq, int *bad)
{
    int q = 0;
    for (int k = 0; k < m->K; k++) {
        int seen = 0;
        for (int j = 0; j < q; j++)
            seen |= strcmp(m->re[lev[j]].group, m->re[k].group) == 0;
        if (!seen)
            lev[q++] = k;
    }
    for (int a = 1; a < q; a++) /* insertion sort by levels, ascending */
        for (int b = a; b > 0 && m->re[lev[b]].nlevels < m->re[lev[b - 1]].nlevels; b--) {
            int t = lev[b];
            lev[b] = lev[b - 1];
            lev[b - 1] = t;
        }
    *nq = q;
    /* each inner level inside one outer level */
    for (int s = 1; s < q; s++) {
        const mlmx_reterm_info *in = &m->re[lev[s]], *out = &m->re[lev[s - 1]];
        int *parent = malloc((size_t)in->nlevels * sizeof *parent);
        if (!parent)
            return -2;
        for (int l = 0; l < in->nlevels; l++)
            parent[l] = -1;
        int ok = 1;
        for (size_t i = 0; i < m->n && ok; i++) {
            int *p = &parent[in->codes[i]];
            if (*p < 0)
                *p = out->codes[i];
            ok = *p == out->codes[i];
        }
        free(parent);
        if (!ok) {
            *bad = s;
            return -1;
        }
    }
    return 0;
}

/* 1 when x varies within some group of the factor with these codes. */
static int varies_within(const double *x, const int *codes, int nlevels, size_t n, double *first,
                         char *have)
{
    memset(have, 0, (size_t)nlevels);
    for (size_t i = 0; i < n; i++) {
        const int g = codes[i];
        if (!have[g]) {
            have[g] = 1;
            first[g] = x[i];
        } else if (x[i] != first[g]) {
            return 1;
        }
    }
    return 0;
}

static int constant(const double *x, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (fabs(x[0] == 0.0 ? x[i] : x[i] / x[0] - 1.0) >= 1.4901161193847656e-08)
            return 0;
    return 1;
}

/* The strata's initial df and the column strata; s in 0..nq (nq: residual). */
static mlmx_status strata(const mlmx_model *m, const int *lev, int nq, double *df0, int *strat,
                          int *isconst)
{
    int maxl = 1;
    for (int s = 0; s < nq; s++) {
        const int ng = m->re[lev[s]].nlevels, prev = s ? m->re[lev[s - 1]].nlevels : 0;
        df0[s] = ng - prev;
        maxl = ng > maxl ? ng : maxl;
    }
    df0[nq] = (double)m->n - (nq ? m->re[lev[nq - 1]].nlevels : 0);
    double *first = malloc((size_t)maxl * sizeof *first);
    char *have = malloc((size_t)maxl);
    if (!first || !have) {
        free(first);
        free(have);
        return MLMX_ERR_NOMEM;
    }
    for (int j = 0; j < m->p; j++) {
        const double *x = m->X + (size_t)j * m->n;
        isconst[j] = constant(x, m->n);
        strat[j] = 0;
        for (int s = nq - 1; s >= 0 && !isconst[j]; s--)
            if (varies_within(x, m->re[lev[s]].codes, m->re[lev[s]].nlevels, m->n, first,
                              have)) {
                strat[j] = s + 1;
                break;
            }
    }
    free(first);
    free(have);
    return MLMX_OK;
}

/* Each stratum loses `weight[j]` df per non-constant column j, the first
 * one more for an intercept (or, without one, the others gain one); out[j]
 * = the column's stratum's df, constant columns the largest. */
static void assign_df(int p, int nq, const double *df0, const int *strat, const int *isconst,
                      const double *weight, double *out)
{
    double df[64 + 1];
    int any_const = 0;
    memcpy(df, df0, (size_t)(nq + 1) * sizeof *df);
    for (int j = 0; j < p; j++) {
        if (isconst[j])
            any_const = 1;
        else
            df[strat[j]] -= weight[j];
    }
    if (any_const)
        df[0] -= 1.0;
    else
        for (int s = 1; s <= nq; s++)
            df[s] += 1.0;
    double mx = df[0];
    for (int s = 1; s <= nq; s++)
        mx = fmax(mx, df[s]);
    for (int j = 0; j < p; j++)
        out[j] = isconst[j] ? mx : df[strat[j]];
}

mlmx_status mlmx_containment_df(const mlmx_model *m, double *coef_df, double *term_df,
                                mlmx_error *err)
{
    int lev[64], nq = 0, bad = 1;
    if (m->K > 64)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "too many grouping factors");
    int rc = nested_levels(m, lev, &nq, &bad);
    if (rc == -2)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    if (rc < 0)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                            "containment (nlme's) df need nested grouping factors; '%s' and "
                            "'%s' are crossed",
                            m->re[lev[bad - 1]].group, m->re[lev[bad]].group);
    const int p = m->p;
    double *df0 = malloc((size_t)(nq + 1) * sizeof *df0), *w = malloc((size_t)(p + 1) * sizeof *w);
    int *strat = malloc((size_t)(p + 1) * sizeof *strat), *isc = malloc((size_t)(p + 1) * sizeof *isc);
    mlmx_status st = df0 && w && strat && isc ? strata(m, lev, nq, df0, strat, isc) : MLMX_ERR_NOMEM;
    if (!st && coef_df) {
        for (int j = 0; j < p; j++)
            w[j] = 1.0;
        assign_df(p, nq, df0, strat, isc, w, coef_df);
    }
    if (!st && term_df) {
        /* a term is in the outermost-inner stratum of its columns and loses
         * df for all of them: the columns of a term stand in for it */
        const int nt = m->nfixterms;
        int *tstrat = calloc((size_t)nt + 1, sizeof *tstrat);
        int *tconst = malloc(((size_t)nt + 1) * sizeof *tconst);
        double *tw = calloc((size_t)nt + 1, sizeof *tw), *tdf = malloc(((size_t)nt + 1) * sizeof *tdf);
        if (!tstrat || !tconst || !tw || !tdf) {
            st = MLMX_ERR_NOMEM;
        } else {
            for (int t = 0; t < nt; t++)
                tconst[t] = 1;
            for (int j = 0; j < p; j++) {
                const int t = m->fixef_cell[j][0];
                if (t < 0)
                    continue;
                tw[t] += 1.0;
                if (!isc[j])
                    tconst[t] = 0;
                if (strat[j] > tstrat[t])
                    tstrat[t] = strat[j];
            }
            /* the intercept, a constant column of its own */
            int has_int = 0;
            for (int j = 0; j < p; j++)
                has_int |= m->fixef_cell[j][0] < 0 && isc[j];
            tconst[nt] = 1;
            tw[nt] = 1.0;
            assign_df(has_int ? nt + 1 : nt, nq, df0, tstrat, tconst, tw, tdf);
            memcpy(term_df, tdf, (size_t)nt * sizeof *term_df);
        }
        free(tstrat), free(tconst), free(tw), free(tdf);
    }
    free(df0), free(w), free(strat), free(isc);
    if (st)
        return mlmx_err_set(err, st, "out of memory");
    return MLMX_OK;
}
