/* Power analysis by simulation: the engine behind mlmx_power_run.
 *
 * The truth (fixed effects by coefficient name, each grouping factor's SDs
 * and correlations by column name, sigma, thresholds or size, a residual
 * structure's parameters by name: power_resid.c) comes from the scenario,
 * or from a pilot fit overridden by the scenario. Each design
 * point gets its data (the scenario's design, or the pilot's rows extended
 * along a grouping factor), its model, the truth mapped onto that model's
 * parameters (theta = chol(Sigma_k) / sigma per term, lme4's order) and a
 * prepared problem; replicate r is simulated from the key (seed, r),
 * refitted and tested, on one workspace per thread. Each replicate's
 * outcome is stored at its index and counted afterwards, so the counts do
 * not depend on the number of threads or their timing. Output is in
 * power_out.c; nothing here prints. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "data/frame.h"
#include "cluster_math.h"
#include "power/power.h"
#include "util/strbuf.h"

static mlmx_status nomem(mlmx_error *err)
{
    return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
}

/* ------------------------------------------------------------ the truth */

void mlmx_pw_truth_free(pw_truth *t)
{
    for (int i = 0; i < t->nfix; i++)
        free(t->fix_names[i]);
    free(t->fix_names);
    free(t->fix);
    free(t->fix_sc);
    for (int g = 0; g < t->ngroups; g++) {
        pw_group *G = &t->groups[g];
        for (int c = 0; c < G->ncol; c++)
            free(G->cols[c]);
        free(G->cols);
        free(G->sd);
        free(G->cor);
        free(G->group);
    }
    free(t->groups);
    free(t->thr);
    mlmx_pw_resid_free(t);
    memset(t, 0, sizeof *t);
}

static int set_fixed(pw_truth *t, const char *name, double v, int from_sc)
{
    for (int i = 0; i < t->nfix; i++)
        if (strcmp(t->fix_names[i], name) == 0) {
            t->fix[i] = v;
            t->fix_sc[i] = (unsigned char)(t->fix_sc[i] | from_sc);
            return 0;
        }
    size_t n = (size_t)t->nfix + 1;
    char **nm = realloc(t->fix_names, n * sizeof *nm);
    if (nm)
        t->fix_names = nm;
    double *fx = realloc(t->fix, n * sizeof *fx);
    if (fx)
        t->fix = fx;
    unsigned char *fs = realloc(t->fix_sc, n);
    if (fs)
        t->fix_sc = fs;
    if (!nm || !fx || !fs || !(nm[t->nfix] = mlmx_strdup(name)))
        return -1;
    fx[t->nfix] = v;
    fs[t->nfix] = (unsigned char)from_sc;
    t->nfix++;
    return 0;
}

static int group_index(const pw_truth *t, const char *name)
{
    for (int g = 0; g < t->ngroups; g++)
        if (strcmp(t->groups[g].group, name) == 0)
            return g;
    return -1;
}

static pw_group *find_group(pw_truth *t, const char *name)
{
    int g = group_index(t, name);
    return g < 0 ? NULL : &t->groups[g];
}

static pw_group *add_group(pw_truth *t, const char *name)
{
    pw_group *ng = realloc(t->groups, ((size_t)t->ngroups + 1) * sizeof *ng);
    if (!ng)
        return NULL;
    t->groups = ng;
    pw_group *G = &ng[t->ngroups];
    memset(G, 0, sizeof *G);
    if (!(G->group = mlmx_strdup(name)))
        return NULL;
    t->ngroups++;
    return G;
}

/* Index of column name in G, added (SD NaN, uncorrelated) when absent;
 * -1 when out of memory. */
static int group_col(pw_group *G, const char *name)
{
    for (int c = 0; c < G->ncol; c++)
        if (strcmp(G->cols[c], name) == 0)
            return c;
    if (G->ncol == G->cap) {
        int cap = G->cap ? 2 * G->cap : 4;
        char **cols = realloc(G->cols, (size_t)cap * sizeof *cols);
        if (cols)
            G->cols = cols;
        double *sd = realloc(G->sd, (size_t)cap * sizeof *sd);
        if (sd)
            G->sd = sd;
        double *cor = calloc((size_t)cap * (size_t)cap, sizeof *cor);
        if (!cols || !sd || !cor) {
            free(cor);
            return -1;
        }
        for (int b = 0; b < G->ncol; b++)
            for (int a = 0; a < G->ncol; a++)
                cor[a + b * cap] = G->cor[a + b * G->cap];
        free(G->cor);
        G->cor = cor;
        G->cap = cap;
    }
    int c = G->ncol;
    if (!(G->cols[c] = mlmx_strdup(name)))
        return -1;
    G->sd[c] = NAN;
    G->cor[c + c * G->cap] = 1.0;
    G->ncol++;
    return c;
}

/* The pilot fit's estimates as the truth: beta by name, each term's
 * covariance (absolute: sigma^2 T T') as SDs and correlations. */
mlmx_status mlmx_pw_truth_from_fit(pw_truth *t, const mlmx_fit *f, mlmx_error *err)
{
    const mlmx_model *m = mlmx_fit_model(f);
    const int gauss = mlmx_fit_family(f) == MLMX_FAMILY_GAUSSIAN;
    const double *beta = mlmx_fit_beta(f), *theta = mlmx_fit_theta(f);
    for (int j = 0; j < mlmx_model_nfixef(m); j++)
        if (set_fixed(t, mlmx_model_fixef_name(m, j), beta[j], 0))
            return nomem(err);
    const double s = gauss ? mlmx_fit_sigma(f) : 1.0;
    int off = 0;
    for (int k = 0; k < mlmx_model_nterms(m); k++) {
        const int q = mlmx_model_term_q(m, k);
        double T[256] = {0}, V[256];
        for (int c = 0; c < q; c++)
            for (int r = c; r < q; r++)
                T[r + c * q] = theta[off++];
        for (int a = 0; a < q; a++)
            for (int b = 0; b < q; b++) {
                double v = 0.0;
                for (int c = 0; c < q; c++)
                    v += T[a + c * q] * T[b + c * q];
                V[a + b * q] = s * s * v;
            }
        const char *gname = mlmx_model_term_group(m, k);
        pw_group *G = find_group(t, gname);
        if (!G && !(G = add_group(t, gname)))
            return nomem(err);
        int idx[16];
        for (int a = 0; a < q; a++) {
            if ((idx[a] = group_col(G, mlmx_model_term_column(m, k, a))) < 0)
                return nomem(err);
            G->sd[idx[a]] = sqrt(V[a + a * q]);
        }
        for (int a = 0; a < q; a++)
            for (int b = 0; b < q; b++) {
                double den = sqrt(V[a + a * q] * V[b + b * q]);
                if (a != b)
                    G->cor[idx[a] + idx[b] * G->cap] = den > 0.0 ? V[a + b * q] / den : 0.0;
            }
    }
    t->sigma = gauss ? mlmx_fit_sigma(f) : NAN;
    t->nthr = mlmx_fit_nthresholds(f);
    if (t->nthr > 0) {
        if (!(t->thr = malloc((size_t)t->nthr * sizeof *t->thr)))
            return nomem(err);
        memcpy(t->thr, mlmx_fit_thresholds(f), (size_t)t->nthr * sizeof *t->thr);
    }
    t->size = mlmx_fit_dispersion(f);
    return mlmx_pw_resid_from_fit(t, f, err);
}

/* The scenario's values over the pilot's (or alone): fixed effects by
 * name; per group the SDs given and the correlations given (a pair the
 * file leaves out, stored as 0, keeps the pilot's value); sigma,
 * thresholds, size. */
mlmx_status mlmx_pw_truth_overlay(pw_truth *t, const mlmx_scenario *sc, int pilot,
                                  mlmx_error *err)
{
    for (int i = 0; i < sc->nfixed; i++)
        if (set_fixed(t, sc->fixed[i].name, sc->fixed[i].value, 1))
            return nomem(err);
    for (int r = 0; r < sc->nrandom; r++) {
        const mlmx_sc_random *R = &sc->random[r];
        pw_group *G = find_group(t, R->group);
        if (!G && !(G = add_group(t, R->group)))
            return nomem(err);
        G->from_scenario = 1;
        int idx[64];
        if (R->ncol > 64)
            return mlmx_err_set(err, MLMX_ERR_ARG, "%s: random[%d]: more than 64 columns",
                                sc->source, r);
        for (int a = 0; a < R->ncol; a++) {
            if ((idx[a] = group_col(G, R->cols[a])) < 0)
                return nomem(err);
            if (isfinite(R->sd[a]))
                G->sd[idx[a]] = R->sd[a];
        }
        for (int a = 0; a < R->ncol; a++)
            for (int b = 0; b < R->ncol; b++) {
                double v = R->cor[a + b * R->ncol];
                if (a != b && (v != 0.0 || !pilot))
                    G->cor[idx[a] + idx[b] * G->cap] = v;
            }
    }
    if (isfinite(sc->sigma))
        t->sigma = sc->sigma;
    if (sc->nthresholds > 0) {
        if (pilot && t->nthr > 0 && t->nthr != sc->nthresholds)
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "%s: thresholds: %d given, but the pilot's response has %d "
                                "categories (%d thresholds)",
                                sc->source, sc->nthresholds, t->nthr + 1, t->nthr);
        free(t->thr);
        if (!(t->thr = malloc((size_t)sc->nthresholds * sizeof *t->thr)))
            return nomem(err);
        memcpy(t->thr, sc->thresholds, (size_t)sc->nthresholds * sizeof *t->thr);
        t->nthr = sc->nthresholds;
    }
    if (isfinite(sc->nb_size))
        t->size = sc->nb_size;
    return mlmx_pw_resid_overlay(t, sc, err);
}

/* ------------------------------------------------------------ truth -> a model's parameters */

static void list_fixef(mlmx_strbuf *b, const mlmx_model *m, mlmx_family fam)
{
    int first = 1;
    for (int j = 0; j < mlmx_model_nfixef(m); j++) {
        const char *nm = mlmx_model_fixef_name(m, j);
        if (fam == MLMX_FAMILY_ORDINAL && strcmp(nm, "(Intercept)") == 0)
            continue;
        mlmx_sb_printf(b, "%s%s", first ? "" : ", ", nm);
        first = 0;
    }
}

static void list_groups(mlmx_strbuf *b, const mlmx_model *m)
{
    for (int k = 0; k < mlmx_model_nterms(m); k++) {
        int seen = 0;
        for (int j = 0; j < k && !seen; j++)
            seen = strcmp(mlmx_model_term_group(m, j), mlmx_model_term_group(m, k)) == 0;
        if (!seen)
            mlmx_sb_printf(b, "%s%s", b->len ? ", " : "", mlmx_model_term_group(m, k));
    }
}

/* beta by the model's coefficient names; check = 1 also refuses names the
 * scenario gives that the model does not have. */
static mlmx_status map_fixed(const pw_study *S, const mlmx_model *m, int check, double *beta,
                             mlmx_error *err)
{
    const pw_truth *t = &S->tr;
    const mlmx_family fam = S->sc->family;
    mlmx_status st = MLMX_OK;
    mlmx_strbuf b = {0};
    for (int i = 0; check && i < t->nfix && !st; i++) {
        if (!t->fix_sc[i])
            continue;
        int found = 0;
        for (int j = 0; j < mlmx_model_nfixef(m) && !found; j++)
            found = strcmp(mlmx_model_fixef_name(m, j), t->fix_names[i]) == 0;
        if (!found) {
            list_fixef(&b, m, fam);
            st = mlmx_err_set(err, MLMX_ERR_ARG,
                              "%s: fixed: '%s' is not a coefficient of the model (coefficients: "
                              "%s)",
                              S->sc->source, t->fix_names[i], b.s ? b.s : "none");
        }
    }
    for (int j = 0; j < mlmx_model_nfixef(m) && !st; j++) {
        const char *nm = mlmx_model_fixef_name(m, j);
        beta[j] = 0.0;
        if (fam == MLMX_FAMILY_ORDINAL && strcmp(nm, "(Intercept)") == 0)
            continue;
        int i = 0;
        while (i < t->nfix && strcmp(t->fix_names[i], nm) != 0)
            i++;
        if (i == t->nfix) {
            list_fixef(&b, m, fam);
            st = mlmx_err_set(err, MLMX_ERR_ARG,
                              "%s: fixed: no value for the coefficient '%s' (the model's "
                              "coefficients: %s)",
                              S->sc->source, nm, b.s ? b.s : "none");
        } else {
            beta[j] = t->fix[i];
        }
    }
    mlmx_sb_free(&b);
    return st;
}

/* The scenario's groups and columns must be the model's. */
static mlmx_status check_random(const pw_study *S, const mlmx_model *m, mlmx_error *err)
{
    for (int g = 0; g < S->tr.ngroups; g++) {
        const pw_group *G = &S->tr.groups[g];
        if (!G->from_scenario)
            continue;
        int found = 0;
        for (int c = 0; c < G->ncol; c++) {
            int has = 0;
            for (int k = 0; k < mlmx_model_nterms(m); k++) {
                if (strcmp(mlmx_model_term_group(m, k), G->group) != 0)
                    continue;
                found = 1;
                for (int a = 0; a < mlmx_model_term_q(m, k); a++)
                    has = has || strcmp(mlmx_model_term_column(m, k, a), G->cols[c]) == 0;
            }
            if (!found)
                break;
            if (!has)
                return mlmx_err_set(err, MLMX_ERR_ARG,
                                    "%s: random: '%s' is not a column of the model's terms for "
                                    "group '%s'",
                                    S->sc->source, G->cols[c], G->group);
        }
        if (!found) {
            mlmx_strbuf b = {0};
            list_groups(&b, m);
            mlmx_status st = mlmx_err_set(err, MLMX_ERR_ARG,
                                          "%s: random: '%s' is not a grouping factor of the model "
                                          "(groups: %s)",
                                          S->sc->source, G->group, b.s ? b.s : "none");
            mlmx_sb_free(&b);
            return st;
        }
    }
    return MLMX_OK;
}

/* theta for the model: per term T = chol(Sigma) / s, its lower triangle
 * column-major (lme4's order), s = sigma for linear models, 1 otherwise. */
static mlmx_status map_theta(const pw_study *S, const mlmx_model *m, double s, double *theta,
                             mlmx_error *err)
{
    int off = 0;
    const char *src = S->sc->source;
    for (int k = 0; k < mlmx_model_nterms(m); k++) {
        const int q = mlmx_model_term_q(m, k);
        const char *gname = mlmx_model_term_group(m, k);
        const int gi = group_index(&S->tr, gname);
        const pw_group *G = gi < 0 ? NULL : &S->tr.groups[gi];
        if (!G)
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "%s: random: no entry for the model's group '%s'", src, gname);
        double A[256];
        int idx[16];
        for (int a = 0; a < q; a++) {
            const char *col = mlmx_model_term_column(m, k, a);
            idx[a] = -1;
            for (int c = 0; c < G->ncol && idx[a] < 0; c++)
                if (strcmp(G->cols[c], col) == 0)
                    idx[a] = c;
            if (idx[a] < 0 || !isfinite(G->sd[idx[a]]))
                return mlmx_err_set(err, MLMX_ERR_ARG,
                                    "%s: random: no SD for column '%s' of group '%s'", src, col,
                                    gname);
        }
        for (int a = 0; a < q; a++)
            for (int b = 0; b < q; b++)
                A[a + b * q] = G->sd[idx[a]] * G->sd[idx[b]] *
                               (a == b ? 1.0 : G->cor[idx[a] + idx[b] * G->cap]);
        if (mlmx_cm_chol_psd(q, A))
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "%s: random: the covariance matrix of group '%s' is not positive "
                                "semi-definite (check its correlations)",
                                src, gname);
        for (int c = 0; c < q; c++)
            for (int r = c; r < q; r++)
                theta[off++] = A[r + c * q] / s;
    }
    return MLMX_OK;
}

/* All of a model's parameters. extra: thresholds (ordinal) or size (negbin). */
mlmx_status mlmx_pw_map_params(const pw_study *S, const mlmx_model *m, int check, double *theta,
                               double *beta, double *sigma, double *extra, mlmx_error *err)
{
    const mlmx_scenario *sc = S->sc;
    const pw_truth *t = &S->tr;
    mlmx_status st;
    if (check && (st = check_random(S, m, err)))
        return st;
    if ((st = map_fixed(S, m, check, beta, err)))
        return st;
    *sigma = 1.0;
    if (sc->family == MLMX_FAMILY_GAUSSIAN) {
        if (!(t->sigma > 0.0))
            return mlmx_err_set(err, MLMX_ERR_ARG, "%s: sigma: no value for the residual SD",
                                sc->source);
        *sigma = t->sigma;
    } else if (sc->family == MLMX_FAMILY_ORDINAL) {
        if (t->nthr < 1)
            return mlmx_err_set(err, MLMX_ERR_ARG, "%s: thresholds: no values", sc->source);
        memcpy(extra, t->thr, (size_t)t->nthr * sizeof *extra);
    } else if (sc->family == MLMX_FAMILY_NEGBIN) {
        if (!(t->size > 0.0))
            return mlmx_err_set(err, MLMX_ERR_ARG, "%s: size: no value for the NB2 size",
                                sc->source);
        extra[0] = t->size;
    }
    return map_theta(S, m, *sigma, theta, err);
}

