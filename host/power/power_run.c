/* Power analysis by simulation: the designs (the scenario's, or a pilot's
 * data extended along a grouping factor, as simr's extend()), the
 * simulate-refit-test loop over threads, and mlmx_power_run. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_internal.h"
#include "data/frame.h"
#include "power/power.h"
#include "util/strbuf.h"


static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The message of the last failing public call, as an internal error. */
static mlmx_status from_api(mlmx_status st, mlmx_error *err)
{
    return mlmx_err_set(err, st, "%s", mlmx_last_error());
}

static mlmx_status nomem(mlmx_error *err)
{
    return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
}

/* ------------------------------------------------------------ designs */

/* The design's placeholder response, before the model is built: category
 * codes 0..K-1 in turn for an ordinal model (the model takes its number of
 * categories from the data), 0 and 1 in turn otherwise. The simulations
 * replace it. */
static void fill_response(mlmx_data *d, const pw_study *S)
{
    int j = mlmx_frame_find(d, S->sc->response);
    if (j < 0 || d->cols[j].type != MLMX_COL_NUMERIC)
        return;
    const size_t K = S->sc->family == MLMX_FAMILY_ORDINAL ? (size_t)S->tr.nthr + 1 : 2;
    for (size_t i = 0; i < d->nrow; i++)
        d->cols[j].num[i] = (double)(i % K);
}

/* Per-row unit index of the pilot's group column (sorted levels or sorted
 * distinct values), -1 for a missing value; returns the number of units. */
static long group_units(const mlmx_column *c, size_t n, long *unit, double **vals)
{
    *vals = NULL;
    if (c->type == MLMX_COL_FACTOR) {
        for (size_t i = 0; i < n; i++)
            unit[i] = c->codes[i];
        return c->nlevels;
    }
    double *v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return -1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(c->num[i]))
            v[m++] = c->num[i];
    for (size_t i = 1; i < m; i++) { /* insertion sort: pilots are small */
        double x = v[i];
        size_t k = i;
        while (k > 0 && v[k - 1] > x) {
            v[k] = v[k - 1];
            k--;
        }
        v[k] = x;
    }
    size_t u = 0;
    for (size_t i = 0; i < m; i++)
        if (u == 0 || v[i] != v[u - 1])
            v[u++] = v[i];
    for (size_t i = 0; i < n; i++) {
        unit[i] = -1;
        if (isnan(c->num[i]))
            continue;
        size_t lo = 0, hi = u;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (v[mid] < c->num[i])
                lo = mid + 1;
            else
                hi = mid;
        }
        unit[i] = (long)lo;
    }
    *vals = v;
    return (long)u;
}

/* Copy column c of src for the rows in rows[0..n) into dst. The group
 * column (mode 1) gets new unit labels: new unit j copies unit j mod G,
 * and the copies beyond the first G are labelled "<label>.<copy>"
 * (factors) or numbered on from the largest value (numeric). A grouping
 * factor nested in the group (mode 2) is relabelled "<label>.<copy>" in
 * the copies, so that each copy has units of its own. */
static mlmx_status copy_column(mlmx_data *dst, const mlmx_column *c, const size_t *rows,
                               const long *newunit, size_t n, int mode, long G,
                               const double *gvals, mlmx_error *err)
{
    if (c->type == MLMX_COL_NUMERIC && mode != 2) {
        double *x = malloc((n ? n : 1) * sizeof *x);
        if (!x)
            return nomem(err);
        for (size_t i = 0; i < n; i++) {
            x[i] = c->num[rows[i]];
            if (mode == 1 && newunit[i] >= G)
                x[i] = gvals[G - 1] + (double)(newunit[i] - G + 1);
        }
        return mlmx_frame_add_numeric_owned(dst, c->name, x, err);
    }
    const char **s = calloc(n ? n : 1, sizeof *s);
    char **own = mode ? calloc(n ? n : 1, sizeof *own) : NULL;
    mlmx_status st = MLMX_OK;
    if (!s || (mode && !own))
        st = nomem(err);
    for (size_t i = 0; i < n && !st; i++) {
        const size_t k = rows[i];
        const long copy = newunit[i] / G;
        int made = 0;
        if (c->type == MLMX_COL_NUMERIC) { /* mode 2: a numeric grouping factor */
            if (isnan(c->num[k]))
                continue;
            own[i] = copy ? mlmx_asprintf("%.15g.%ld", c->num[k], copy + 1)
                          : mlmx_asprintf("%.15g", c->num[k]);
            made = 1;
        } else if (c->codes[k] >= 0) {
            s[i] = c->levels[c->codes[k]];
            if (mode && copy) {
                own[i] = mlmx_asprintf("%s.%ld", s[i], copy + 1);
                made = 1;
            }
        }
        if (made && !(s[i] = own[i]))
            st = nomem(err);
    }
    if (!st)
        st = mlmx_frame_add_factor_strings(dst, c->name, s, err);
    for (size_t i = 0; own && i < n; i++)
        free(own[i]);
    free(own);
    free(s);
    return st;
}

/* The pilot's rows for `units` units of its group column: unit j is a copy
 * of unit j mod G, rows in unit order (fewer than G units: the first
 * ones). */
static mlmx_status extend_pilot(const pw_study *S, long units, mlmx_data **out, mlmx_error *err)
{
    const mlmx_data *d = S->pilot;
    const mlmx_column *gc = &d->cols[S->pilot_col];
    const size_t n = d->nrow;
    long *unit = malloc((n ? n : 1) * sizeof *unit);
    size_t *count = NULL, *rows = NULL;
    long *newunit = NULL;
    double *gvals = NULL;
    mlmx_data *nd = NULL;
    mlmx_status st = MLMX_OK;
    long G = unit ? group_units(gc, n, unit, &gvals) : -1;
    if (G < 0) {
        st = nomem(err);
        goto out;
    }
    count = calloc((size_t)G + 1, sizeof *count);
    size_t total = 0;
    if (!count) {
        st = nomem(err);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (unit[i] >= 0)
            count[unit[i]]++;
    for (long j = 0; j < units; j++)
        total += count[j % G];
    rows = malloc((total ? total : 1) * sizeof *rows);
    newunit = malloc((total ? total : 1) * sizeof *newunit);
    if (!rows || !newunit) {
        st = nomem(err);
        goto out;
    }
    size_t r = 0;
    for (long j = 0; j < units; j++)
        for (size_t i = 0; i < n; i++)
            if (unit[i] == j % G) {
                rows[r] = i;
                newunit[r++] = j;
            }
    if ((st = mlmx_frame_new(total, d->source, &nd, err)))
        goto out;
    for (int c = 0; c < d->ncol && !st; c++)
        st = copy_column(nd, &d->cols[c], rows, newunit, total,
                         c == S->pilot_col ? 1 : S->nested[c] ? 2 : 0, G, gvals, err);
out:
    free(unit);
    free(count);
    free(rows);
    free(newunit);
    free(gvals);
    if (st) {
        mlmx_frame_free(nd);
        return st;
    }
    *out = nd;
    return MLMX_OK;
}

/* The data of design point cp (-1: the base design) with `units` units of
 * the pilot's group (pilot designs; < 0: as many as the pilot has). *use
 * is the data; *own what the caller frees (NULL: the pilot itself). */
static mlmx_status design_data(const pw_study *S, int cp, long units, mlmx_data **own,
                               const mlmx_data **use, mlmx_error *err)
{
    *own = NULL;
    *use = NULL;
    mlmx_status st = MLMX_OK;
    if (S->sc->has_design) {
        if (!(st = mlmx_scenario_design(S->sc, cp, S->seed, own, err)))
            fill_response(*own, S);
    } else if (S->pilot_col < 0) {
        *use = S->pilot;
        return MLMX_OK;
    } else {
        st = extend_pilot(S, units < 0 ? S->pilot_groups : units, own, err);
    }
    *use = *own;
    return st;
}

/* ------------------------------------------------------------ the pilot */

/* 1 when column name is one of the parts of the grouping label "a:b". */
static int in_label(const char *label, const char *name)
{
    const size_t n = strlen(name);
    for (const char *p = label; p;) {
        const char *q = strchr(p, ':');
        const size_t l = q ? (size_t)(q - p) : strlen(p);
        if (l == n && strncmp(p, name, n) == 0)
            return 1;
        p = q ? q + 1 : NULL;
    }
    return 0;
}

/* Flag the formula's grouping factors whose every level lies within one
 * unit of the extended group (unit: per row); the copies relabel them. */
static mlmx_status find_nested(pw_study *S, const mlmx_data *d, const mlmx_model *m,
                               const long *unit, mlmx_error *err)
{
    const size_t n = d->nrow;
    if (!(S->nested = calloc((size_t)d->ncol + 1, 1)))
        return nomem(err);
    long *key = malloc((n ? n : 1) * sizeof *key);
    if (!key)
        return nomem(err);
    for (int c = 0; c < d->ncol; c++) {
        int grouping = 0;
        for (int k = 0; k < mlmx_model_nterms(m) && !grouping; k++)
            grouping = in_label(mlmx_model_term_group(m, k), d->cols[c].name);
        if (!grouping || c == S->pilot_col)
            continue;
        double *vals = NULL;
        long L = group_units(&d->cols[c], n, key, &vals);
        free(vals);
        long *first = L > 0 ? malloc((size_t)L * sizeof *first) : NULL;
        if (L < 0 || (L > 0 && !first)) {
            free(key);
            return nomem(err);
        }
        for (long l = 0; l < L; l++)
            first[l] = -1;
        int nested = L > 0;
        for (size_t i = 0; i < n && nested; i++) {
            if (unit[i] < 0 || key[i] < 0)
                continue;
            if (first[key[i]] < 0)
                first[key[i]] = unit[i];
            else
                nested = first[key[i]] == unit[i];
        }
        free(first);
        S->nested[c] = (unsigned char)nested;
    }
    free(key);
    return MLMX_OK;
}

static mlmx_status load_pilot(pw_study *S, mlmx_error *err)
{
    const mlmx_scenario *sc = S->sc;
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    /* a saved model: its data file unchanged (SHA-256), its estimates */
    mlmx_status st = sc->model ? mlmx_model_file_check_data(sc->model, sc->pilot_data) : MLMX_OK;
    if (st)
        return mlmx_err_set(err, st, "%s: pilot model '%s': %s", sc->source, sc->pilot_model,
                            mlmx_last_error());
    if ((st = mlmx_csv_read(sc->pilot_data, &d, err)))
        return st;
    if ((st = mlmx_model_create(d, sc->formula, &m))) {
        st = mlmx_err_set(err, st, "%s: pilot: %s", sc->source, mlmx_last_error());
        goto out;
    }
    if ((st = mlmx_pw_set_residual(sc, m, d, "pilot: ", err)))
        goto out;
    mlmx_fit_options o = S->fopt;
    st = sc->model                          ? mlmx_model_file_fit(m, sc->model, &o, &f)
         : sc->family == MLMX_FAMILY_GAUSSIAN ? mlmx_fit_lmm(m, &o, &f)
                                              : mlmx_fit_glmm(m, &o, &f);
    if (st) {
        st = mlmx_err_set(err, st, "%s: pilot fit: %s", sc->source, mlmx_last_error());
        goto out;
    }
    if ((st = mlmx_pw_truth_from_fit(&S->tr, f, err)))
        goto out;
    const char *grp = sc->pilot_group ? sc->pilot_group : sc->curve_level;
    if (!sc->has_design && grp) {
        int isgroup = 0;
        for (int k = 0; k < mlmx_model_nterms(m); k++)
            isgroup = isgroup || strcmp(mlmx_model_term_group(m, k), grp) == 0;
        S->pilot_col = mlmx_frame_find(d, grp);
        if (!isgroup || S->pilot_col < 0) {
            st = mlmx_err_set(err, MLMX_ERR_ARG,
                              "%s: %s '%s' is not a grouping factor of the formula with a column "
                              "in %s",
                              sc->source, sc->pilot_group ? "pilot.extend.group" : "curve.level",
                              grp, sc->pilot_data);
            goto out;
        }
        long *unit = malloc((d->nrow ? d->nrow : 1) * sizeof *unit);
        double *vals = NULL;
        S->pilot_groups = unit ? group_units(&d->cols[S->pilot_col], d->nrow, unit, &vals) : -1;
        free(vals);
        if (S->pilot_groups > 0 && (st = find_nested(S, d, m, unit, err))) {
            free(unit);
            goto out;
        }
        free(unit);
        if (S->pilot_groups < 1) {
            st = S->pilot_groups < 0 ? nomem(err)
                                     : mlmx_err_set(err, MLMX_ERR_DATA,
                                                    "%s: pilot: the column '%s' has no values",
                                                    sc->source, grp);
            goto out;
        }
    }
    if (!sc->has_design) {
        S->pilot = d;
        d = NULL;
    }
out:
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    return st;
}


/* ------------------------------------------------------------ the replicates */

typedef struct pw_job {
    const pw_study *S;
    const mlmx_problem *P, *P0; /* P0: the LRT's null model, or NULL */
    int jterm;                  /* Wald tests: the tested coefficient */
    int want_se;
    double crit;
    unsigned char *flags;       /* per replicate index */
    long nsim, next, done;
    int point, npoints;
    pthread_mutex_t lock;
} pw_job;

typedef struct pw_worker {
    pw_job *J;
    mlmx_workspace *W, *W0;
    double *y;                  /* LRT: the simulated response, for the null model */
} pw_worker;

/* Replicate r: simulate from (seed, r), refit, test. Its outcome depends
 * on (seed, r) alone: every refit starts from the problem's parameters. */
static unsigned char one_replicate(const pw_job *J, pw_worker *k, long r)
{
    if (mlmx_workspace_simulate(k->W, J->S->seed, (uint64_t)r, k->W0 ? k->y : NULL) ||
        mlmx_workspace_fit(k->W, J->want_se))
        return F_FAILED;
    unsigned char f = 0;
    if (k->W0) {
        if (mlmx_workspace_set_response(k->W0, k->y) || mlmx_workspace_fit(k->W0, 0))
            return F_FAILED;
        const double lr = mlmx_workspace_criterion(k->W0) - mlmx_workspace_criterion(k->W);
        if (!isfinite(lr))
            return F_FAILED;
        if (lr > J->crit)
            f |= F_REJECT;
        if (!mlmx_workspace_converged(k->W0))
            f |= F_NONCONV;
    } else {
        const double z = mlmx_workspace_beta(k->W)[J->jterm] / mlmx_workspace_se(k->W)[J->jterm];
        if (!isfinite(z))
            return F_FAILED;
        if (fabs(z) > J->crit)
            f |= F_REJECT;
    }
    if (mlmx_workspace_singular(k->W))
        f |= F_SINGULAR;
    if (!mlmx_workspace_converged(k->W))
        f |= F_NONCONV;
    return f;
}

static void *worker_main(void *arg)
{
    pw_worker *k = arg;
    pw_job *J = k->J;
    const mlmx_power_options *o = J->S->o;
    for (;;) {
        pthread_mutex_lock(&J->lock);
        long r = J->next < J->nsim ? J->next++ : -1;
        pthread_mutex_unlock(&J->lock);
        if (r < 0)
            break;
        J->flags[r] = one_replicate(J, k, r);
        pthread_mutex_lock(&J->lock);
        J->done++;
        if (o->progress)
            o->progress(o->progress_ctx, J->point, J->npoints, J->done, J->nsim);
        pthread_mutex_unlock(&J->lock);
    }
    return NULL;
}

/* One workspace (two for an LRT) per thread; the calling thread is one of
 * them. */
static mlmx_status run_replicates(pw_job *J, int nth, mlmx_error *err)
{
    pw_worker *wk = calloc((size_t)nth, sizeof *wk);
    pthread_t *tid = calloc((size_t)nth, sizeof *tid);
    const size_t n = mlmx_model_nobs(mlmx_problem_model(J->P));
    mlmx_status st = wk && tid ? MLMX_OK : nomem(err);
    for (int t = 0; t < nth && !st; t++) {
        wk[t].J = J;
        if ((st = mlmx_workspace_create(J->P, &wk[t].W)) ||
            (J->P0 && (st = mlmx_workspace_create(J->P0, &wk[t].W0))))
            st = from_api(st, err);
        else if (J->P0 && !(wk[t].y = malloc((n ? n : 1) * sizeof *wk[t].y)))
            st = nomem(err);
    }
    if (!st) {
        pthread_mutex_init(&J->lock, NULL);
        int started = 1;
        for (int t = 1; t < nth; t++, started++)
            if (pthread_create(&tid[t], NULL, worker_main, &wk[t]) != 0)
                break; /* the threads that did start take its share */
        worker_main(&wk[0]);
        for (int t = 1; t < started; t++)
            pthread_join(tid[t], NULL);
        pthread_mutex_destroy(&J->lock);
    }
    for (int t = 0; wk && t < nth; t++) {
        mlmx_workspace_free(wk[t].W);
        mlmx_workspace_free(wk[t].W0);
        free(wk[t].y);
    }
    free(wk);
    free(tid);
    return st;
}

/* An LRT refits the null model to each simulated response: CPU workspaces
 * only. */
static mlmx_status run_lrt(pw_job *J, mlmx_error *err)
{
    const pw_study *S = J->S;
    const char *why = "an LRT refits two models to each simulated response, which runs on CPU "
                      "workspaces";
    if (S->o->device == MLMX_DEVICE_GPU)
        return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED, "--device gpu: %s", why);
    mlmx_power_result *res = S->res;
    if (res) {
        snprintf(res->device, sizeof res->device, "cpu: workspaces, %d thread%s", S->threads,
                 S->threads == 1 ? "" : "s");
        if (S->o->device == MLMX_DEVICE_AUTO && !res->note[0])
            snprintf(res->note, sizeof res->note, "device auto: running on the CPU: %s", why);
    }
    return run_replicates(J, S->threads, err);
}

/* A model of formula on d with the truth mapped onto it, prepared. */
static mlmx_status build_problem(const pw_study *S, const mlmx_data *d, const char *formula,
                                 const mlmx_fit_options *fo, int check, mlmx_model **m,
                                 mlmx_problem **P, mlmx_error *err)
{
    mlmx_status st = mlmx_model_create(d, formula, m);
    if (st)
        return mlmx_err_set(err, st, "%s: %s", S->sc->source, mlmx_last_error());
    if ((st = mlmx_pw_set_residual(S->sc, *m, d, NULL, err)))
        return st;
    const int nt = mlmx_model_ntheta(*m), p = mlmx_model_nfixef(*m);
    const int nr = mlmx_model_nresid_par(*m);
    double *theta = malloc((size_t)(nt ? nt : 1) * sizeof *theta);
    double *beta = malloc((size_t)(p ? p : 1) * sizeof *beta);
    double *extra = malloc((size_t)(S->tr.nthr + 1) * sizeof *extra);
    double *resid = malloc((size_t)(nr ? nr : 1) * sizeof *resid);
    double sigma = 1.0;
    if (!theta || !beta || !extra || !resid)
        st = nomem(err);
    if (!st)
        st = mlmx_pw_map_params(S, *m, check, theta, beta, &sigma, extra, err);
    if (!st && S->sc->has_resid)
        st = mlmx_pw_map_resid(S, *m, check, resid, err);
    if (!st) {
        const int glmm_extra = fo->family == MLMX_FAMILY_ORDINAL || fo->family == MLMX_FAMILY_NEGBIN;
        if (S->sc->has_resid)
            st = mlmx_problem_create_at_resid(*m, fo, theta, beta, resid, sigma, P);
        else
            st = mlmx_problem_create_at(*m, fo, theta, beta, glmm_extra ? extra : NULL, sigma, P);
        if (st && S->sc->has_resid)
            st = mlmx_pw_resid_error(S->sc, st, 1, NULL, mlmx_last_error(), err);
        else if (st)
            st = mlmx_err_set(err, st, "%s: %s", S->sc->source, mlmx_last_error());
    }
    free(theta);
    free(beta);
    free(extra);
    free(resid);
    return st;
}

/* The test's critical value at a design point of nobs observations and p
 * coefficients (df: the LRT's). */
static double critical_value(const mlmx_scenario *sc, size_t nobs, int p, int df)
{
    switch (sc->test) {
    case MLMX_SC_WALD_Z: return mlmx_pw_qnorm(1.0 - 0.5 * sc->alpha);
    case MLMX_SC_WALD_T: return mlmx_pw_qt(1.0 - 0.5 * sc->alpha, (double)nobs - (double)p);
    case MLMX_SC_LRT: return mlmx_pw_qchisq(1.0 - sc->alpha, (double)df);
    }
    return NAN;
}

static void count_point(const pw_job *J, double conf, mlmx_power_point *pt)
{
    pt->nsim = J->nsim;
    pt->n_ok = pt->n_rejected = pt->n_failed = pt->n_singular = pt->n_nonconverged = 0;
    for (long r = 0; r < J->nsim; r++) {
        const unsigned char f = J->flags[r];
        if (f & F_FAILED) {
            pt->n_failed++;
            continue;
        }
        pt->n_ok++;
        pt->n_rejected += (f & F_REJECT) != 0;
        pt->n_singular += (f & F_SINGULAR) != 0;
        pt->n_nonconverged += (f & F_NONCONV) != 0;
    }
    pt->power = pt->n_ok ? (double)pt->n_rejected / (double)pt->n_ok : NAN;
    mlmx_pw_clopper_pearson(pt->n_rejected, pt->n_ok, conf, &pt->ci_lower, &pt->ci_upper);
}

/* The Wald test's coefficient in m, or an error listing m's. */
static mlmx_status find_term(const pw_study *S, const mlmx_model *m, int *j, mlmx_error *err)
{
    for (*j = 0; *j < mlmx_model_nfixef(m); (*j)++)
        if (strcmp(mlmx_model_fixef_name(m, *j), S->sc->test_term) == 0)
            return MLMX_OK;
    mlmx_strbuf b = {0};
    for (int k = 0; k < mlmx_model_nfixef(m); k++)
        mlmx_sb_printf(&b, "%s%s", k ? ", " : "", mlmx_model_fixef_name(m, k));
    mlmx_status st = mlmx_err_set(err, MLMX_ERR_ARG,
                                  "%s: test.term '%s' is not a coefficient of the model "
                                  "(coefficients: %s)",
                                  S->sc->source, S->sc->test_term, b.s ? b.s : "none");
    mlmx_sb_free(&b);
    return st;
}

static mlmx_status run_point(const pw_study *S, int cp, long units, int point, int npoints,
                             mlmx_power_point *pt, int *df, mlmx_error *err)
{
    const double t0 = now_s();
    const mlmx_scenario *sc = S->sc;
    mlmx_data *own = NULL;
    const mlmx_data *d = NULL;
    mlmx_model *m = NULL, *m0 = NULL;
    mlmx_problem *P = NULL, *P0 = NULL;
    pw_job J;
    memset(&J, 0, sizeof J);
    mlmx_status st = design_data(S, cp, units, &own, &d, err);
    if (!st)
        st = build_problem(S, d, sc->formula, &S->fopt, 1, &m, &P, err);
    if (!st && sc->test == MLMX_SC_LRT) {
        if (!(st = build_problem(S, d, S->reduced, &S->fopt, 0, &m0, &P0, err))) {
            *df = mlmx_model_nfixef(m) - mlmx_model_nfixef(m0);
            if (*df < 1)
                st = mlmx_err_set(err, MLMX_ERR_ARG,
                                  "%s: test.drop: the null model '%s' has as many coefficients "
                                  "as the model",
                                  sc->source, S->reduced);
        }
    } else if (!st) {
        st = find_term(S, m, &J.jterm, err);
    }
    mlmx_data_free(own);
    if (!st) {
        pt->units = units;
        pt->nobs = (long)mlmx_model_nobs(m);
        pt->critical_value = critical_value(sc, mlmx_model_nobs(m), mlmx_model_nfixef(m), *df);
        J.S = S;
        J.P = P;
        J.P0 = P0;
        J.want_se = sc->test != MLMX_SC_LRT;
        J.crit = pt->critical_value;
        J.nsim = S->nsim;
        J.point = point;
        J.npoints = npoints;
        if (!(J.flags = calloc((size_t)S->nsim, 1)))
            st = nomem(err);
        if (!isfinite(J.crit))
            st = mlmx_err_set(err, MLMX_ERR_ARG,
                              "%s: no critical value for this test (%ld observations)",
                              sc->source, pt->nobs);
    }
    if (!st && !P0)
        st = mlmx_pw_run_wald(S, P, J.jterm, J.crit, J.nsim, point, npoints, J.flags, err);
    else if (!st)
        st = run_lrt(&J, err);
    if (!st)
        count_point(&J, S->conf, pt);
    free(J.flags);
    mlmx_problem_free(P);
    mlmx_problem_free(P0);
    mlmx_model_free(m);
    mlmx_model_free(m0);
    pt->seconds = now_s() - t0;
    return st;
}

/* ------------------------------------------------------------ the study */

void mlmx_power_options_default(mlmx_power_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->threads = 1;
    o->conf_level = 0.95;
}

/* The null model of an LRT: the formula with the dropped terms removed
 * ("y ~ x + z + (1 | g) - x"), as R's update(f, . ~ . - x). */
static char *reduced_formula(const mlmx_scenario *sc)
{
    mlmx_strbuf b = {0};
    mlmx_sb_puts(&b, sc->formula);
    for (int i = 0; i < sc->ndrop; i++)
        mlmx_sb_printf(&b, " - %s", sc->drop[i]);
    if (b.oom) {
        mlmx_sb_free(&b);
        return NULL;
    }
    return b.s;
}

static mlmx_status study_init(pw_study *S, const mlmx_scenario *sc, const mlmx_power_options *o,
                              mlmx_error *err)
{
    S->sc = sc;
    S->o = o;
    S->pilot_col = -1;
    S->tr.sigma = NAN;
    S->tr.size = NAN;
    S->seed = o->seed_given ? o->seed : sc->seed;
    S->nsim = o->nsim > 0 ? o->nsim : sc->nsim;
    S->threads = o->threads;
    S->conf = o->conf_level;
    mlmx_fit_options_default(&S->fopt);
    S->fopt.family = sc->family;
    S->fopt.link = sc->link;
    S->fopt.method = sc->family == MLMX_FAMILY_GAUSSIAN ? sc->method : MLMX_ML;
    S->fopt.conditional_variances = 0;
    mlmx_status st;
    if (!sc->has_design && sc->curve_level && sc->pilot_group &&
        strcmp(sc->curve_level, sc->pilot_group) != 0)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "%s: curve.level '%s' must be the pilot's extended group '%s'",
                            sc->source, sc->curve_level, sc->pilot_group);
    if (sc->pilot_data && (st = load_pilot(S, err)))
        return st;
    if ((st = mlmx_pw_truth_overlay(&S->tr, sc, sc->pilot_data != NULL, err)))
        return st;
    if (sc->test == MLMX_SC_LRT) {
        /* both models by maximum likelihood, as anova() refits them */
        S->fopt.method = MLMX_ML;
        if (!(S->reduced = reduced_formula(sc)))
            return nomem(err);
    }
    return MLMX_OK;
}

static void study_free(pw_study *S)
{
    mlmx_pw_truth_free(&S->tr);
    mlmx_data_free(S->pilot);
    free(S->nested);
    free(S->reduced);
}

static mlmx_status result_init(mlmx_power_result *R, const pw_study *S, const char *path)
{
    const mlmx_scenario *sc = S->sc;
    R->scenario = mlmx_strdup(path);
    R->formula = mlmx_strdup(sc->formula);
    R->reduced = S->reduced ? mlmx_strdup(S->reduced) : NULL;
    R->pilot = sc->pilot_data ? mlmx_strdup(sc->pilot_data) : NULL;
    R->pilot_model = sc->pilot_model ? mlmx_strdup(sc->pilot_model) : NULL;
    R->curve_level = sc->ncurve > 0 ? mlmx_strdup(sc->curve_level) : NULL;
    R->family = sc->family;
    R->link = sc->link;
    R->method = S->fopt.method;
    R->test = sc->test;
    R->alpha = sc->alpha;
    R->conf_level = S->conf;
    R->seed = S->seed;
    R->nsim = S->nsim;
    mlmx_strbuf b = {0};
    if (sc->test == MLMX_SC_LRT)
        for (int i = 0; i < sc->ndrop; i++)
            mlmx_sb_printf(&b, "%s%s", i ? ", " : "", sc->drop[i]);
    else
        mlmx_sb_puts(&b, sc->test_term);
    R->term = b.oom ? NULL : b.s;
    R->npoints = sc->ncurve;
    R->points = calloc((size_t)(sc->ncurve ? sc->ncurve : 1), sizeof *R->points);
    if (!R->scenario || !R->formula || (S->reduced && !R->reduced) ||
        (sc->pilot_data && !R->pilot) || (sc->pilot_model && !R->pilot_model) || (sc->ncurve && !R->curve_level) || !R->term ||
        !R->points) {
        if (b.oom)
            mlmx_sb_free(&b);
        return MLMX_ERR_NOMEM;
    }
    return MLMX_OK;
}

/* The base design, then each curve point; the base design's result is a
 * curve point's when it has the same units (the same data and draws). */
static mlmx_status run_all(const pw_study *S, mlmx_power_result *R, mlmx_error *err)
{
    const mlmx_scenario *sc = S->sc;
    long base_units = -1;
    if (sc->has_design && sc->curve_index >= 0)
        base_units = sc->levels[sc->curve_index].units;
    else if (!sc->has_design && S->pilot_col >= 0)
        base_units = sc->pilot_group ? sc->pilot_units : S->pilot_groups;
    int reuse = -1;
    for (int cp = 0; cp < sc->ncurve && reuse < 0; cp++)
        if (sc->curve_units[cp] == base_units)
            reuse = cp;
    const int npoints = sc->ncurve + (reuse < 0);
    int point = 0, df = 0;
    mlmx_status st = MLMX_OK;
    if (reuse < 0)
        st = run_point(S, -1, base_units, point++, npoints, &R->base, &df, err);
    for (int cp = 0; cp < sc->ncurve && !st; cp++)
        st = run_point(S, cp, sc->curve_units[cp], point++, npoints, &R->points[cp], &df, err);
    if (!st && reuse >= 0)
        R->base = R->points[reuse];
    R->df = df;
    return st;
}

mlmx_status mlmx_power_run(const char *scenario_path, const mlmx_power_options *o,
                           mlmx_power_result **out)
{
    return mlmx_power_run_model(scenario_path, NULL, o, out);
}

mlmx_status mlmx_power_run_model(const char *scenario_path, const char *model_path,
                                 const mlmx_power_options *o, mlmx_power_result **out)
{
    mlmx_api_clear();
    if (!scenario_path || !out)
        return mlmx_api_failf(MLMX_ERR_ARG, "mlmx_power_run: NULL argument");
    *out = NULL;
    mlmx_power_options def;
    if (!o) {
        mlmx_power_options_default(&def);
        o = &def;
    }
    if (o->nsim < 0)
        return mlmx_api_failf(MLMX_ERR_ARG, "nsim must be positive (got %ld)", o->nsim);
    if (o->device != MLMX_DEVICE_CPU && o->device != MLMX_DEVICE_GPU &&
        o->device != MLMX_DEVICE_AUTO)
        return mlmx_api_failf(MLMX_ERR_ARG, "unknown device %d", (int)o->device);
    if (o->threads < 1 || o->threads > 1024)
        return mlmx_api_failf(MLMX_ERR_ARG, "threads must be 1 to 1024 (got %d)", o->threads);
    if (!(o->conf_level > 0.0 && o->conf_level < 1.0))
        return mlmx_api_failf(MLMX_ERR_ARG, "the interval level must be in (0, 1) (got %g)",
                              o->conf_level);
    const double t0 = now_s();
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_scenario *sc = NULL;
    if (mlmx_scenario_read_model(scenario_path, model_path, &sc, &e) != MLMX_OK)
        return mlmx_api_fail(&e);
    pw_study S;
    memset(&S, 0, sizeof S);
    mlmx_power_result *R = calloc(1, sizeof *R);
    mlmx_status st = R ? study_init(&S, sc, o, &e) : nomem(&e);
    if (!st && (result_init(R, &S, scenario_path) != MLMX_OK || mlmx_pw_resid_result(R, &S)))
        st = nomem(&e);
    S.res = R;
    if (!st)
        st = run_all(&S, R, &e);
    study_free(&S);
    mlmx_scenario_free(sc);
    if (st) {
        mlmx_power_result_free(R);
        return mlmx_api_fail(&e);
    }
    R->seconds = now_s() - t0;
    *out = R;
    return MLMX_OK;
}
