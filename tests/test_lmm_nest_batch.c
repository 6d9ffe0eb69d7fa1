/* The nested LMM batch engine (kernels/lmm_nest_batch.h run on the CPU,
 * the math the GPU kernel runs) against the general core, on classroom
 * (students in classes in schools; and with sex within class, 3 factors),
 * pastes (casks within batches) and sim_nested4 (classes in schools in
 * districts, with a random slope at the school level):
 *   - its simulated response is mlmx_workspace_simulate's to the last bit,
 *     and the per-top-cluster simulation the GPU lanes run (draws found by
 *     seeking) gives the same effects and Z^T y to the last bit;
 *   - its dual-number gradient matches 4-point central differences of its
 *     criterion (1e-6 relative + 1e-6; plain differences at h = 1e-5 are
 *     too noisy: r^2 = y'y - ... cancels about 4 digits on these data), and
 *     its criterion the core's (mlmx_lmm_criterion_at, 1e-10 relative);
 *   - its refits equal workspace refits of the same replicates: criterion
 *     to 1e-7 relative everywhere; theta to 1e-4 relative (+1e-4
 *     absolute), beta and its SE to 1e-5 relative, sigma to 1e-5, where no
 *     variance parameter of either fit is within 1e-2 of its bound. Near
 *     the bound the criterion is flat in that parameter: both optimizers
 *     stop where its change is below rounding (the workspaces' elimination
 *     is noisier, their line search wanders on, and at the bound they add
 *     a BOBYQA polish the engine does not), so theta is set there only to
 *     about the square root of the noise;
 *   - the warp kernel's arithmetic, emulated here lane by lane (each of 32
 *     lanes its own top clusters, then the sums and the BFGS steps), fits
 *     as the CPU rows do (1e-8: only the order of the sums differs);
 *   - 1 and 2 threads give identical bits;
 *   - crossed and other uncovered models are refused with the reason. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lmm_nest_batch.h"
#include "mlmx.h"
#include "replicate/batch.h"
#include "batchrows.h"
#include "replicate/lmm_nest_engine.h"
#include "replicate/replicate.h"

#define CLASSROOM MLMX_SOURCE_DIR "/data/classroom.csv"
#define PASTES MLMX_SOURCE_DIR "/data/pastes.csv"
#define NESTED4 MLMX_SOURCE_DIR "/data/sim_nested4.csv"
#define CLASS2 "mathgain ~ mathkind + (1|schoolid/classid)"
#define CLASS3 "mathgain ~ mathkind + ses + (1|schoolid) + (1|schoolid:classid) + (1|schoolid:classid:sex)"
#define PASTE "strength ~ 1 + (1|batch/cask)"
#define N4ML "y ~ ses + (1|district/school/class)"
#define N4SLOPE "y ~ ses + female + (1|district) + (1 + ses|district:school) + (1|district:school:class)"

typedef struct setup {
    mlmx_data *d;
    mlmx_model *m;
    mlmx_fit *f;
    mlmx_problem *P;
    mlmx_batch_engine *E;
    const mlmx_nb_model *M;
} setup;

static void open_model(setup *s, const char *csv, const char *formula, mlmx_method method)
{
    memset(s, 0, sizeof *s);
    cr_assert_eq(mlmx_data_read_csv(csv, &s->d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(s->d, formula, &s->m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    o.method = method;
    cr_assert_eq(mlmx_fit_lmm(s->m, &o, &s->f), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_problem_create(s->f, &s->P), MLMX_OK, "%s", mlmx_last_error());
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_batch_engine_create(s->P, &s->E, &e), MLMX_OK, "%s", e.msg);
    cr_assert_str_eq(s->E->name, "lmm-nest");
    s->M = mlmx_nb_engine_model(s->E);
    cr_assert_not_null(s->M);
}

static void close_model(setup *s)
{
    mlmx_batch_engine_free(s->E);
    mlmx_problem_free(s->P);
    mlmx_fit_free(s->f);
    mlmx_model_free(s->m);
    mlmx_data_free(s->d);
}

static void rows_alloc(rows *r, const mlmx_problem *P, size_t count, uint64_t seed)
{
    rows_alloc_keys(r, P, count, seed, 5, 2);
}

static int near(double a, double b, double rel, double abs_tol)
{
    return fabs(a - b) <= rel * fabs(b) + abs_tol;
}

/* ------------------------------------------------------------ simulation */

static void check_simulation(const char *csv, const char *formula)
{
    setup s;
    open_model(&s, csv, formula, MLMX_REML);
    const mlmx_nb_model *M = s.M;
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(s.P, &W), MLMX_OK);
    const size_t n = (size_t)M->n, nu = (size_t)M->nu;
    double *y1 = malloc(n * sizeof *y1), *y2 = malloc(n * sizeof *y2);
    double *b = malloc(2 * nu * sizeof *b), *zy = malloc(2 * nu * sizeof *zy);
    double xty[MLMX_NB_PMAX], xty2[MLMX_NB_PMAX], yty, yty2;
    for (uint64_t r = 0; r < 12; r++) {
        const uint64_t rep = r * 1000003u + 7;
        cr_assert_eq(mlmx_workspace_simulate(W, 99, rep, y1), MLMX_OK);
        mlmx_nb_simulate(M, 99, rep, b, zy, 1, xty, &yty, y2);
        for (size_t i = 0; i < n; i++)
            cr_assert(y1[i] == y2[i], "%s: replicate %d obs %zu: %.17g vs %.17g", formula, (int)r,
                      i, y1[i], y2[i]);
        double yy = 0.0;
        for (size_t i = 0; i < n; i++)
            yy += y1[i] * y1[i];
        cr_expect(near(yty, yy, 1e-13, 0), "y'y %.17g vs %.17g", yty, yy);
        /* the GPU lanes' way: top cluster by top cluster, seeking */
        for (int j = 0; j < M->p; j++)
            xty2[j] = 0.0;
        yty2 = 0.0;
        int ok = 1;
        for (int h = 0; h < M->ntop; h++)
            ok &= mlmx_nb_simulate_top(M, 99, rep, h, b + nu, zy + nu, 1, xty2, &yty2);
        cr_expect(ok, "a draw took more than one block");
        cr_expect(memcmp(b, b + nu, nu * sizeof *b) == 0, "%s: effects differ", formula);
        cr_expect(memcmp(zy, zy + nu, nu * sizeof *zy) == 0, "%s: Z'y differs", formula);
        for (int j = 0; j < M->p; j++)
            cr_expect(near(xty2[j], xty[j], 1e-12, 1e-12), "X'y %d", j);
        cr_expect(near(yty2, yty, 1e-13, 0));
    }
    free(y1);
    free(y2);
    free(b);
    free(zy);
    mlmx_workspace_free(W);
    close_model(&s);
}

Test(lmm_nest_batch, simulation_classroom) { check_simulation(CLASSROOM, CLASS2); }
Test(lmm_nest_batch, simulation_nested4_slope) { check_simulation(NESTED4, N4SLOPE); }
Test(lmm_nest_batch, simulation_classroom3) { check_simulation(CLASSROOM, CLASS3); }

/* ------------------------------------------------------------ criterion */

/* Z^T y, X^T y, y^T y of the model's own response. */
static void model_stats(const setup *s, double *zy, double *xty, double *yty)
{
    const mlmx_nb_model *M = s->M;
    for (int u = 0; u < M->nu; u++)
        zy[u] = 0.0;
    for (int j = 0; j < M->p; j++)
        xty[j] = 0.0;
    *yty = 0.0;
    for (int i = 0; i < M->n; i++)
        mlmx_nb_obs_acc(M, i, s->P->md->y[i], zy, 1, xty, yty);
}

/* Central differences of the criterion against the dual-number gradient,
 * on the optimizer's scale, at points around the estimates; and the
 * criterion against the core's at the fit's theta. */
static void check_gradient(const char *csv, const char *formula, mlmx_method method)
{
    setup s;
    open_model(&s, csv, formula, method);
    const mlmx_nb_model *M = s.M;
    double *b = malloc((size_t)M->nu * sizeof *b), *zy = malloc((size_t)M->nu * sizeof *zy);
    double xty[MLMX_NB_PMAX], yty;
    mlmx_nb_simulate(M, 5, 11, b, zy, 1, xty, &yty, NULL);
    mlmx_nb_scratch *w = malloc(sizeof *w);
    double x[MLMX_NB_NTMAX], g[MLMX_NB_NTMAX], gd[MLMX_NB_NTMAX], xp[MLMX_NB_NTMAX];
    for (int pt = 0; pt < 3; pt++) {
        for (int t = 0; t < M->nt; t++)
            x[t] = M->x0[t] + 0.2 * (pt - 1) * (t % 2 ? -1 : 1) + (M->logp[t] ? 0.0 : 0.05 * pt);
        double f = mlmx_nb_objective(M, x, g, zy, 1, xty, yty, w);
        cr_assert(isfinite(f));
        for (int t = 0; t < M->nt; t++) {
            const double h = 1e-3;
            double fv[4];
            for (int j = 0; j < 4; j++) { /* x - 2h, x - h, x + h, x + 2h */
                memcpy(xp, x, sizeof xp);
                xp[t] = x[t] + h * (j < 2 ? j - 2 : j - 1);
                fv[j] = mlmx_nb_objective(M, xp, gd, zy, 1, xty, yty, w);
            }
            double fd = (8.0 * (fv[2] - fv[1]) - (fv[3] - fv[0])) / (12.0 * h);
            cr_expect(near(g[t], fd, 1e-6, 1e-6), "%s: d/dx%d dual %.10g, differences %.10g",
                      formula, t, g[t], fd);
        }
    }
    /* the value is the core's on the model's data */
    double cm;
    cr_assert_eq(mlmx_lmm_criterion_at(s.m, method, s.P->theta, &cm), MLMX_OK);
    model_stats(&s, zy, xty, &yty);
    mlmx_nb_part(M, s.P->theta, 0, zy, 1, 0, 1, w);
    double cb = mlmx_nb_finish(M, 0, xty, yty, w);
    cr_expect(near(cb, cm, 1e-10, 0), "%s: criterion %.14g, core %.14g", formula, cb, cm);
    /* and with derivatives the value does not move a bit */
    mlmx_nb_part(M, s.P->theta, M->nt, zy, 1, 0, 1, w);
    cr_expect(mlmx_nb_finish(M, M->nt, xty, yty, w) == cb);
    free(w);
    free(b);
    free(zy);
    close_model(&s);
}

Test(lmm_nest_batch, gradient_classroom_reml) { check_gradient(CLASSROOM, CLASS2, MLMX_REML); }
Test(lmm_nest_batch, gradient_classroom_ml) { check_gradient(CLASSROOM, CLASS2, MLMX_ML); }
Test(lmm_nest_batch, gradient_classroom3) { check_gradient(CLASSROOM, CLASS3, MLMX_REML); }
Test(lmm_nest_batch, gradient_pastes) { check_gradient(PASTES, PASTE, MLMX_REML); }
Test(lmm_nest_batch, gradient_nested4_ml) { check_gradient(NESTED4, N4ML, MLMX_ML); }
Test(lmm_nest_batch, gradient_nested4_slope) { check_gradient(NESTED4, N4SLOPE, MLMX_REML); }

/* ------------------------------------------------------------ refits */

/* A variance parameter of the row (nt values) within 1e-2 of its bound. */
static int near_bound(const mlmx_problem *P, const double *theta)
{
    for (int t = 0; t < P->ntheta; t++)
        if (P->md->theta_lower[t] == 0.0 && theta[t] < 1e-2)
            return 1;
    return 0;
}

/* Engine rows against workspace refits of the same replicates; at least
 * min_compared of them away from the bounds. */
static void check_refits(const char *csv, const char *formula, mlmx_method method, size_t count,
                         int min_compared)
{
    setup s;
    open_model(&s, csv, formula, method);
    rows r;
    rows_alloc(&r, s.P, count, 2025);
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_batch_run_cpu(s.E, &r.J, 2, &e), MLMX_OK, "%s", e.msg);
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(s.P, &W), MLMX_OK);
    const int nt = s.P->ntheta, p = s.P->p;
    int compared = 0;
    for (size_t i = 0; i < count; i++) {
        cr_assert_eq(mlmx_workspace_simulate(W, 2025, r.reps[i], NULL), MLMX_OK);
        cr_assert_eq(mlmx_workspace_fit(W, 1), MLMX_OK, "%s", mlmx_last_error());
        cr_assert_eq(r.J.status[i], 1, "%s: replicate %zu failed in the engine", formula, i);
        double cw = mlmx_workspace_criterion(W), cb = r.J.crit[i];
        cr_expect(near(cb, cw, 1e-7, 1e-7), "%s rep %zu: criterion %.12g vs workspace %.12g",
                  formula, i, cb, cw);
        const double *tw = mlmx_workspace_theta(W), *bw = mlmx_workspace_beta(W),
                     *sw = mlmx_workspace_se(W);
        if (near_bound(s.P, r.J.theta + i * nt) || near_bound(s.P, tw))
            continue;
        compared++;
        for (int t = 0; t < nt; t++)
            cr_expect(near(r.J.theta[i * nt + t], tw[t], 1e-4, 1e-4),
                      "%s rep %zu theta%d %.10g vs %.10g", formula, i, t, r.J.theta[i * nt + t],
                      tw[t]);
        for (int k = 0; k < p; k++) {
            cr_expect(near(r.J.beta[i * p + k], bw[k], 1e-5, 1e-8 * (1 + fabs(bw[k]))),
                      "%s rep %zu beta%d %.12g vs %.12g", formula, i, k, r.J.beta[i * p + k],
                      bw[k]);
            cr_expect(near(r.J.se[i * p + k], sw[k], 1e-5, 1e-9), "%s rep %zu se%d %.12g vs %.12g",
                      formula, i, k, r.J.se[i * p + k], sw[k]);
        }
        cr_expect(near(r.J.sigma[i], mlmx_workspace_params(W)[s.P->nparams - 1], 1e-5, 0),
                  "%s rep %zu sigma", formula, i);
        cr_expect(r.J.conv[i] == 1, "%s rep %zu not converged", formula, i);
    }
    cr_expect_geq(compared, min_compared, "%s: %d replicates away from the bounds, %d wanted",
                  formula, compared, min_compared);
    mlmx_workspace_free(W);
    rows_free(&r);
    close_model(&s);
}

Test(lmm_nest_batch, refits_classroom_reml, .timeout = 120) { check_refits(CLASSROOM, CLASS2, MLMX_REML, 40, 36); }
Test(lmm_nest_batch, refits_classroom_ml, .timeout = 120) { check_refits(CLASSROOM, CLASS2, MLMX_ML, 30, 27); }
/* the data's own fit is singular (sex within class: variance 0), and so are
 * most replicates: the criterion is what is compared */
Test(lmm_nest_batch, refits_classroom3, .timeout = 120) { check_refits(CLASSROOM, CLASS3, MLMX_REML, 20, 0); }
Test(lmm_nest_batch, refits_pastes_reml, .timeout = 120) { check_refits(PASTES, PASTE, MLMX_REML, 60, 35); }
Test(lmm_nest_batch, refits_pastes_ml, .timeout = 120) { check_refits(PASTES, PASTE, MLMX_ML, 40, 18); }
Test(lmm_nest_batch, refits_nested4_ml, .timeout = 120) { check_refits(NESTED4, N4ML, MLMX_ML, 30, 20); }
Test(lmm_nest_batch, refits_nested4_slope, .timeout = 120) { check_refits(NESTED4, N4SLOPE, MLMX_REML, 20, 12); }

/* ------------------------------------------------------------ lanes */

/* The warp kernel's evaluation (kernels/lmm_nest_batch.cu, nb_warp_eval)
 * with its 32 lanes run one after another: each lane's share of the top
 * clusters in its own scratch, the shares summed, finished on "lane 0". */
static double lanes_eval(const mlmx_nb_model *M, const double *x, int nd, const double *zy,
                         const double *xty, double yty, mlmx_nb_scratch *lanes)
{
    const int len = mlmx_nb_acc_len(M, nd);
    for (int l = 0; l < 32; l++) {
        mlmx_nb_theta(M, x, lanes[l].th);
        mlmx_nb_part(M, lanes[l].th, nd, zy, 1, l, 32, &lanes[l]);
    }
    for (int e = 0; e < len; e++)
        for (int l = 1; l < 32; l++)
            lanes[0].acc[e] += lanes[l].acc[e];
    return mlmx_nb_finish(M, nd, xty, yty, &lanes[0]);
}

/* The warp kernel's fit of one replicate, lanes emulated. */
static void lanes_fit(const mlmx_nb_model *M, uint64_t seed, uint64_t rep, double *b, double *zy,
                      mlmx_nb_scratch *lanes, const mlmx_nb_out *o, size_t i)
{
    double xty[MLMX_NB_PMAX] = {0}, yty = 0.0;
    int ok = 1;
    for (int l = 0; l < 32; l++)
        for (int h = l; h < M->ntop; h += 32)
            ok &= mlmx_nb_simulate_top(M, seed, rep, h, b, zy, 1, xty, &yty);
    cr_assert(ok);
    mlmx_qn_state q;
    double store[8 * MLMX_NB_NTMAX + MLMX_NB_NTMAX * MLMX_NB_NTMAX];
    int active[MLMX_NB_NTMAX];
    mlmx_qn_bind(&q, M->nt, store, active);
    mlmx_qn_begin(&q, M->x0, M->xlo, 0, &M->cfg, M->hinv0);
    while (mlmx_qn_want(&q)) {
        const double f = lanes_eval(M, mlmx_qn_point(&q), M->nt, zy, xty, yty, lanes);
        double *g = mlmx_qn_grad(&q);
        if (isfinite(f))
            for (int t = 0; t < M->nt; t++)
                g[t] = lanes[0].g[t] * (M->logp[t] ? lanes[0].th[t] : 1.0);
        mlmx_qn_told(&q, f);
    }
    const double f = lanes_eval(M, q.x, 0, zy, xty, yty, lanes);
    mlmx_nb_write_row(M, q.failed ? NAN : f, q.n_evals, q.converged, &lanes[0], o, i);
}

Test(lmm_nest_batch, warp_lanes_fit_as_the_cpu_rows, .timeout = 120)
{
    setup s;
    open_model(&s, CLASSROOM, CLASS2, MLMX_REML);
    const mlmx_nb_model *M = s.M;
    const size_t n = 12, nt = (size_t)M->nt, p = (size_t)M->p;
    rows a, b;
    rows_alloc(&a, s.P, n, 31);
    rows_alloc(&b, s.P, n, 31);
    mlmx_error e;
    cr_assert_eq(mlmx_batch_run_cpu(s.E, &a.J, 1, &e), MLMX_OK);
    mlmx_nb_scratch *lanes = malloc(32 * sizeof *lanes);
    double *buf = malloc(2 * (size_t)M->nu * sizeof *buf);
    const mlmx_nb_out o = {b.J.theta, b.J.beta, b.J.se,   b.J.sigma, b.J.crit,
                           b.J.nev,   b.J.conv, b.J.sing, b.J.status};
    for (size_t i = 0; i < n; i++)
        lanes_fit(M, 31, b.reps[i], buf, buf + M->nu, lanes, &o, i);
    for (size_t i = 0; i < n; i++) {
        cr_expect_eq(b.J.status[i], 1);
        cr_expect(near(b.J.crit[i], a.J.crit[i], 1e-12, 0), "row %zu crit %.15g vs %.15g", i,
                  b.J.crit[i], a.J.crit[i]);
        for (size_t t = 0; t < nt; t++)
            cr_expect(near(b.J.theta[i * nt + t], a.J.theta[i * nt + t], 1e-8, 0),
                      "row %zu theta%zu", i, t);
        for (size_t k = 0; k < p; k++)
            cr_expect(near(b.J.beta[i * p + k], a.J.beta[i * p + k], 1e-8, 0) &&
                          near(b.J.se[i * p + k], a.J.se[i * p + k], 1e-8, 0),
                      "row %zu beta/se %zu", i, k);
    }
    free(buf);
    free(lanes);
    rows_free(&a);
    rows_free(&b);
    close_model(&s);
}

Test(lmm_nest_batch, threads_do_not_change_results, .timeout = 120)
{
    setup s;
    open_model(&s, CLASSROOM, CLASS2, MLMX_REML);
    const size_t n = 23, nt = (size_t)s.P->ntheta, p = (size_t)s.P->p;
    rows a, b;
    rows_alloc(&a, s.P, n, 9);
    rows_alloc(&b, s.P, n, 9);
    mlmx_error e;
    cr_assert_eq(mlmx_batch_run_cpu(s.E, &a.J, 1, &e), MLMX_OK);
    cr_assert_eq(mlmx_batch_run_cpu(s.E, &b.J, 2, &e), MLMX_OK);
    cr_expect(memcmp(a.J.theta, b.J.theta, n * nt * sizeof(double)) == 0);
    cr_expect(memcmp(a.J.beta, b.J.beta, n * p * sizeof(double)) == 0);
    cr_expect(memcmp(a.J.se, b.J.se, n * p * sizeof(double)) == 0);
    cr_expect(memcmp(a.J.crit, b.J.crit, n * sizeof(double)) == 0);
    cr_expect(memcmp(a.J.nev, b.J.nev, n * sizeof(int)) == 0);
    rows_free(&a);
    rows_free(&b);
    close_model(&s);
}

/* ------------------------------------------------------------ refusals */

static void expect_unsupported(const char *csv, const char *formula, const char *why)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    mlmx_problem *P = NULL;
    cr_assert_eq(mlmx_data_read_csv(csv, &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, formula, &m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    cr_assert_eq(mlmx_fit_lmm(m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_problem_create(f, &P), MLMX_OK);
    mlmx_batch_engine *E = (mlmx_batch_engine *)1;
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_expect_eq(mlmx_batch_engine_create(P, &E, &e), MLMX_ERR_UNSUPPORTED);
    cr_expect_null(E);
    cr_expect(strstr(e.msg, why) != NULL, "reason '%s' lacks '%s'", e.msg, why);
    mlmx_problem_free(P);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

/* The engine itself refuses (the registry then gives these small crossed
 * models to lmm-crossed). */
static void expect_refused(const char *csv, const char *formula, const char *why)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    mlmx_problem *P = NULL;
    cr_assert_eq(mlmx_data_read_csv(csv, &d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(d, formula, &m), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    cr_assert_eq(mlmx_fit_lmm(m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_problem_create(f, &P), MLMX_OK);
    mlmx_batch_engine E;
    memset(&E, 0, sizeof E);
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_expect_eq(mlmx_nb_engine_init(P, &E, &e), MLMX_ERR_UNSUPPORTED);
    cr_expect(strstr(e.msg, why) != NULL, "reason '%s' lacks '%s'", e.msg, why);
    mlmx_problem_free(P);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

Test(lmm_nest_batch, crossed_models_are_refused_with_the_reason, .timeout = 60)
{
    expect_refused(MLMX_SOURCE_DIR "/data/penicillin.csv",
                   "diameter ~ 1 + (1|plate) + (1|sample)",
                   "the nested LMM batch engine: the grouping factors 'plate' and 'sample' "
                   "are crossed, not nested");
    expect_refused(MLMX_SOURCE_DIR "/data/sim_crossed.csv",
                   "score ~ time + (1|student) + (1|teacher)", "are crossed, not nested");
    /* and no engine covers a crossed model with nine terms (lmm-crossed
     * takes at most 8) */
    expect_unsupported(MLMX_SOURCE_DIR "/data/penicillin.csv",
                       "diameter ~ 1 + (1|plate) + (1|sample) + (1|plate) + (1|sample) + "
                       "(1|plate) + (1|sample) + (1|plate) + (1|sample) + (1|plate)",
                       "more than 8 random-effect terms");
}

Test(lmm_nest_batch, other_models_are_refused_with_the_reason, .timeout = 60)
{
    /* the engine's own refusals (lmm-crossed, past the registry's nested
     * engine, covers both models) */
    /* a 3-column term */
    expect_refused(MLMX_SOURCE_DIR "/data/hsb.csv",
                       "mathach ~ ses + (ses + female|school) + (1|school:sector)",
                       "the nested LMM batch engine: a random-effect term with more than 2 "
                       "columns");
    /* 2 + 2 + 1 random-effect columns */
    expect_refused(NESTED4,
                       "y ~ ses + (1|district) + (1 + ses|district:school) + "
                       "(1 + ses|district:school:class)",
                       "more than 4 random-effect columns in all");
}
