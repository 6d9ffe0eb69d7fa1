/* The lmm-crossed batch engine (kernels/lmm_dense_batch.h run on the CPU,
 * the math the GPU kernel runs) against the general core, on Penicillin
 * (crossed), sim_crossed (a correlated first term crossed with teachers;
 * dense blocks of 45, 85, 194 and 345 columns), Pastes and Oats (nested) and
 * veneer (a vector second term):
 *   - its simulated response is mlmx_workspace_simulate's, to the last bit;
 *   - its criterion at a fixed theta is mlmx_lmm_criterion_at's (1e-10
 *     relative), REML and ML;
 *   - its dual-number gradient matches fourth-order central differences
 *     of its own criterion (1e-6 relative + 1e-6 absolute, step 1e-3 on
 *     the optimizer's scale), and the core's analytic gradient (1e-7);
 *   - its refits equal workspace refits of the same replicates: criterion
 *     to 1e-7 relative on every replicate; on non-singular ones theta to
 *     1e-4 relative (+1e-5 absolute), beta to 1e-5 relative (+1e-7 (1 +
 *     |beta|)), the SEs to 1e-4 relative;
 *   - one and two threads give the same bits;
 *   - a model whose replicate scratch would pass MLMX_LD_SCRATCH_MAX is
 *     refused with the reason (its size named). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lmm_dense_batch.h"
#include "mlmx.h"
#include "replicate/batch.h"
#include "batchrows.h"
#include "replicate/lmm_dense_engine.h"
#include "replicate/replicate.h"

#define PEN MLMX_SOURCE_DIR "/data/penicillin.csv"
#define PENF "diameter ~ 1 + (1|plate) + (1|sample)"
#define SIMC MLMX_SOURCE_DIR "/data/sim_crossed.csv"
#define SIMCF "score ~ time * grp + (1 + time|student) + (1|teacher)"
/* dense blocks past the old 48-column limit: 85 columns (40 teachers x
 * (1 + time), 4 fixed effects, y; its fit is singular, so it is checked at
 * fixed points only), 194 ((time||student): a second
 * 150-level student term, 40 teachers, 3 fixed effects, y) */
#define SIMC85F "score ~ time * grp + (1 + time|student) + (time|teacher)"
#define SIMC194F "score ~ time + grp + (time||student) + (1|teacher)"
/* 345 columns: the 671 student:teacher pairs are the first term; students
 * (1 + time: 300), teachers (40), 4 fixed effects and y the dense block */
#define SIMC345F "score ~ time * grp + (1 + time|student) + (1|teacher) + (1|student:teacher)"
#define PAS MLMX_SOURCE_DIR "/data/pastes.csv"
#define PASF "strength ~ 1 + (1|batch/cask)"
#define VEN MLMX_SOURCE_DIR "/data/veneer.csv"
#define VENF "gcf ~ time*(base_gcf + cda + age) + (time|patient) + (1|patient:tooth)"

typedef struct setup {
    mlmx_data *d;
    mlmx_model *m;
    mlmx_fit *f;
    mlmx_problem *P;
    mlmx_batch_engine *E;
    const mlmx_ld_model *M;
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
    /* the engine itself, whichever the registry would choose (lmm-nest
     * takes the nested models first) */
    s->E = calloc(1, sizeof *s->E);
    cr_assert_not_null(s->E);
    cr_assert_eq(mlmx_ld_engine_init(s->P, s->E, &e), MLMX_OK, "%s", e.msg);
    cr_assert_str_eq(s->E->name, "lmm-crossed");
    s->M = mlmx_ld_engine_model(s->E);
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

static int near(double a, double b, double rel, double abs_tol)
{
    return fabs(a - b) <= rel * fabs(b) + abs_tol;
}

/* Scratch for one replicate on one lane: b, resp, scr. */
typedef struct rep_buf {
    double *b, *resp, *scr;
} rep_buf;

static void rep_alloc(rep_buf *r, const mlmx_ld_model *M)
{
    r->b = malloc((size_t)M->nu * sizeof(double));
    r->resp = malloc(mlmx_ld_resp_len(M) * sizeof(double));
    r->scr = malloc(mlmx_ld_scratch_len(M, 1) * sizeof(double));
    cr_assert(r->b && r->resp && r->scr);
}

static void rep_free(rep_buf *r)
{
    free(r->b);
    free(r->resp);
    free(r->scr);
}

/* ------------------------------------------------------------ simulation */

static void check_simulation(const char *csv, const char *formula)
{
    setup s;
    open_model(&s, csv, formula, MLMX_REML);
    const mlmx_ld_model *M = s.M;
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(s.P, &W), MLMX_OK);
    double *y1 = malloc((size_t)M->n * sizeof *y1), *y2 = malloc((size_t)M->n * sizeof *y2);
    rep_buf r;
    rep_alloc(&r, M);
    for (uint64_t k = 0; k < 12; k++) {
        const uint64_t rep = k * 1000003u + 5;
        cr_assert_eq(mlmx_workspace_simulate(W, 77, rep, y1), MLMX_OK);
        mlmx_ld_simulate(M, 77, rep, r.b, r.resp, y2);
        for (int i = 0; i < M->n; i++)
            cr_assert(y1[i] == y2[i], "%s replicate %d obs %d: %.17g vs %.17g", formula, (int)k,
                      i, y1[i], y2[i]);
        double yy = 0.0;
        for (int i = 0; i < M->n; i++)
            yy += y1[i] * y1[i];
        const double yty = r.resp[mlmx_ld_resp_len(M) - 1];
        cr_expect(near(yty, yy, 1e-13, 0), "y'y %.17g vs %.17g", yty, yy);
    }
    rep_free(&r);
    free(y1);
    free(y2);
    mlmx_workspace_free(W);
    close_model(&s);
}

Test(lmm_dense_batch, simulation_penicillin) { check_simulation(PEN, PENF); }
Test(lmm_dense_batch, simulation_sim_crossed) { check_simulation(SIMC, SIMCF); }
Test(lmm_dense_batch, simulation_pastes) { check_simulation(PAS, PASF); }
Test(lmm_dense_batch, simulation_veneer) { check_simulation(VEN, VENF); }

/* ------------------------------------------------------------ criterion */

/* The model's own response statistics. */
static void own_stats(const setup *s, double *resp)
{
    mlmx_ld_resp_zero(s->M, resp);
    for (size_t i = 0; i < s->m->n; i++)
        mlmx_ld_accumulate(s->M, i, s->m->y[i], resp);
}

/* The engine's criterion against the core's at the fit's theta and at two
 * points around it; and the dual-number value equals the value-only one
 * bit for bit. */
static void check_criterion(const char *csv, const char *formula, mlmx_method method)
{
    setup s;
    open_model(&s, csv, formula, method);
    const mlmx_ld_model *M = s.M;
    rep_buf r;
    rep_alloc(&r, M);
    own_stats(&s, r.resp);
    double th[MLMX_LD_NTMAX], dth[MLMX_LD_NTMAX];
    for (int pt = 0; pt < 3; pt++) {
        for (int t = 0; t < M->nt; t++)
            th[t] = s.P->theta[t] * (1.0 + 0.2 * (pt - 1) * (t % 2 ? -1 : 1)) +
                    (pt == 2 && !M->logp[t] ? 0.05 : 0.0);
        double cm;
        cr_assert_eq(mlmx_lmm_criterion_at(s.m, method, th, &cm), MLMX_OK, "%s",
                     mlmx_last_error());
        const double cb = mlmx_ld_eval(M, th, 1, r.resp, r.scr, 0, 1, NULL);
        cr_expect(near(cb, cm, 1e-10, 0), "%s point %d: criterion %.14g, core %.14g", formula, pt,
                  cb, cm);
        const double cd = mlmx_ld_eval(M, th, 1 + M->nt, r.resp, r.scr, 0, 1, dth);
        cr_expect(cd == cb, "%s: the dual evaluation's value %.17g differs from %.17g", formula,
                  cd, cb);
    }
    rep_free(&r);
    close_model(&s);
}

Test(lmm_dense_batch, criterion_penicillin_reml) { check_criterion(PEN, PENF, MLMX_REML); }
Test(lmm_dense_batch, criterion_penicillin_ml) { check_criterion(PEN, PENF, MLMX_ML); }
Test(lmm_dense_batch, criterion_sim_crossed_reml) { check_criterion(SIMC, SIMCF, MLMX_REML); }
Test(lmm_dense_batch, criterion_sim_crossed_ml) { check_criterion(SIMC, SIMCF, MLMX_ML); }
Test(lmm_dense_batch, criterion_pastes_reml) { check_criterion(PAS, PASF, MLMX_REML); }
Test(lmm_dense_batch, criterion_veneer_ml) { check_criterion(VEN, VENF, MLMX_ML); }
Test(lmm_dense_batch, criterion_sim_crossed_85_reml) { check_criterion(SIMC, SIMC85F, MLMX_REML); }
Test(lmm_dense_batch, criterion_sim_crossed_194_ml) { check_criterion(SIMC, SIMC194F, MLMX_ML); }

/* ------------------------------------------------------------ gradient */

/* Central differences of the criterion against the dual-number gradient,
 * on the optimizer's scale, at points around the start, for a simulated
 * replicate. */
static void check_gradient(const char *csv, const char *formula, mlmx_method method)
{
    setup s;
    open_model(&s, csv, formula, method);
    const mlmx_ld_model *M = s.M;
    rep_buf r;
    rep_alloc(&r, M);
    mlmx_ld_simulate(M, 5, 11, r.b, r.resp, NULL);
    /* the same replicate in a workspace: the core's analytic gradient
     * (host/lmm/grad.c), an independent derivation */
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(s.P, &W), MLMX_OK);
    cr_assert_eq(mlmx_workspace_simulate(W, 5, 11, NULL), MLMX_OK);
    double x[MLMX_LD_NTMAX], g[MLMX_LD_NTMAX], gd[MLMX_LD_NTMAX], xp[MLMX_LD_NTMAX];
    for (int pt = 0; pt < 3; pt++) {
        for (int t = 0; t < M->nt; t++)
            x[t] = M->x0[t] + 0.15 * (pt - 1) * (t % 2 ? -1 : 1);
        const double f = mlmx_ld_objective(M, x, g, r.resp, r.scr, 0, 1);
        cr_assert(isfinite(f), "%s: criterion not finite at point %d", formula, pt);
        const double fw = mlmx_lmm_obj_log(M->nt, x, gd, &W->obj);
        cr_expect(near(f, fw, 1e-10, 0), "%s point %d: criterion %.14g, workspace %.14g", formula,
                  pt, f, fw);
        for (int t = 0; t < M->nt; t++)
            cr_expect(near(g[t], gd[t], 1e-7, 1e-7),
                      "%s point %d: d/dx%d dual %.12g, the core's analytic %.12g", formula, pt, t,
                      g[t], gd[t]);
        for (int t = 0; t < M->nt; t++) {
            /* Richardson's fourth-order differences: the criterion is a
             * difference of large sums (its rounding is ~1e-13 relative on
             * sim_crossed), so the step must stay large */
            const double h = 1e-3;
            double fs[4];
            for (int k = 0; k < 4; k++) {
                memcpy(xp, x, sizeof xp);
                xp[t] = x[t] + (k < 2 ? 1.0 : 2.0) * (k % 2 ? -h : h);
                fs[k] = mlmx_ld_objective(M, xp, gd, r.resp, r.scr, 0, 1);
            }
            const double fd = (8.0 * (fs[0] - fs[1]) - (fs[2] - fs[3])) / (12.0 * h);
            cr_expect(near(g[t], fd, 1e-6, 1e-6), "%s point %d: d/dx%d dual %.12g, differences %.12g",
                      formula, pt, t, g[t], fd);
        }
    }
    mlmx_workspace_free(W);
    rep_free(&r);
    close_model(&s);
}

Test(lmm_dense_batch, gradient_penicillin_reml) { check_gradient(PEN, PENF, MLMX_REML); }
Test(lmm_dense_batch, gradient_penicillin_ml) { check_gradient(PEN, PENF, MLMX_ML); }
Test(lmm_dense_batch, gradient_sim_crossed_reml) { check_gradient(SIMC, SIMCF, MLMX_REML); }
Test(lmm_dense_batch, gradient_pastes_ml) { check_gradient(PAS, PASF, MLMX_ML); }
Test(lmm_dense_batch, gradient_veneer_ml) { check_gradient(VEN, VENF, MLMX_ML); }
Test(lmm_dense_batch, gradient_sim_crossed_85_reml, .timeout = 120) { check_gradient(SIMC, SIMC85F, MLMX_REML); }
Test(lmm_dense_batch, gradient_sim_crossed_194_ml, .timeout = 120) { check_gradient(SIMC, SIMC194F, MLMX_ML); }

/* ------------------------------------------------------------ refits */

static void rows_alloc(rows *r, const mlmx_problem *P, size_t count, uint64_t seed)
{
    rows_alloc_keys(r, P, count, seed, 3, 1);
}

/* Engine rows against workspace refits of the same replicates. */
static void check_refits(const char *csv, const char *formula, mlmx_method method, size_t count)
{
    setup s;
    open_model(&s, csv, formula, method);
    rows r;
    rows_alloc(&r, s.P, count, 2024);
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_batch_run_cpu(s.E, &r.J, 2, &e), MLMX_OK, "%s", e.msg);
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(s.P, &W), MLMX_OK);
    const int nt = s.P->ntheta, p = s.P->p;
    int compared = 0;
    double worst_t = 0, worst_b = 0, worst_s = 0, worst_c = 0;
    for (size_t i = 0; i < count; i++) {
        cr_assert_eq(mlmx_workspace_simulate(W, 2024, r.reps[i], NULL), MLMX_OK);
        cr_assert_eq(mlmx_workspace_fit(W, 1), MLMX_OK, "%s", mlmx_last_error());
        cr_assert_eq(r.J.status[i], 1, "%s: replicate %zu failed in the engine", formula, i);
        const double cw = mlmx_workspace_criterion(W), cb = r.J.crit[i];
        worst_c = fmax(worst_c, fabs(cb - cw) / fabs(cw));
        cr_expect(near(cb, cw, 1e-7, 0), "%s rep %zu: criterion %.12g vs workspace %.12g",
                  formula, i, cb, cw);
        if (r.J.sing[i] || mlmx_workspace_singular(W))
            continue;
        compared++;
        const double *tw = mlmx_workspace_theta(W), *bw = mlmx_workspace_beta(W),
                     *sw = mlmx_workspace_se(W);
        for (int t = 0; t < nt; t++) {
            const double tb = r.J.theta[i * nt + t];
            worst_t = fmax(worst_t, fabs(tb - tw[t]) / (fabs(tw[t]) + 0.1));
            cr_expect(near(tb, tw[t], 1e-4, 1e-5), "%s rep %zu theta%d %.9g vs %.9g", formula, i,
                      t, tb, tw[t]);
        }
        for (int k = 0; k < p; k++) {
            const double bb = r.J.beta[i * p + k], sb = r.J.se[i * p + k];
            worst_b = fmax(worst_b, fabs(bb - bw[k]) / (fabs(bw[k]) + 1));
            worst_s = fmax(worst_s, fabs(sb - sw[k]) / fabs(sw[k]));
            cr_expect(near(bb, bw[k], 1e-5, 1e-7 * (1 + fabs(bw[k]))),
                      "%s rep %zu beta%d %.10g vs %.10g", formula, i, k, bb, bw[k]);
            cr_expect(near(sb, sw[k], 1e-4, 0), "%s rep %zu se%d %.10g vs %.10g", formula, i, k,
                      sb, sw[k]);
        }
        cr_expect(near(r.J.sigma[i], mlmx_workspace_params(W)[s.P->nparams - 1], 1e-4, 0),
                  "%s rep %zu sigma %.10g vs %.10g", formula, i, r.J.sigma[i],
                  mlmx_workspace_params(W)[s.P->nparams - 1]);
        cr_expect(r.J.conv[i] == 1, "%s rep %zu not converged", formula, i);
    }
    cr_log_info("%s: %d of %zu non-singular; worst relative criterion %.2g, theta %.2g, beta "
                "%.2g, se %.2g", formula, compared, count, worst_c, worst_t, worst_b, worst_s);
    cr_expect_gt(compared, (int)count / 2, "%s: too few non-singular replicates compared",
                 formula);
    mlmx_workspace_free(W);
    rows_free(&r);
    close_model(&s);
}

Test(lmm_dense_batch, refits_penicillin_reml, .timeout = 120) { check_refits(PEN, PENF, MLMX_REML, 40); }
Test(lmm_dense_batch, refits_penicillin_ml, .timeout = 120) { check_refits(PEN, PENF, MLMX_ML, 40); }
Test(lmm_dense_batch, refits_sim_crossed_reml, .timeout = 240) { check_refits(SIMC, SIMCF, MLMX_REML, 8); }
Test(lmm_dense_batch, refits_sim_crossed_ml, .timeout = 240) { check_refits(SIMC, SIMCF, MLMX_ML, 6); }
Test(lmm_dense_batch, refits_veneer_ml, .timeout = 240) { check_refits(VEN, VENF, MLMX_ML, 6); }
Test(lmm_dense_batch, refits_oats_reml, .timeout = 120) { check_refits(MLMX_SOURCE_DIR "/data/oats.csv", "yield ~ nitro + Variety + (1|Block/Variety)", MLMX_REML, 20); }
Test(lmm_dense_batch, refits_pastes_reml, .timeout = 120) { check_refits(PAS, PASF, MLMX_REML, 40); }
Test(lmm_dense_batch, refits_pastes_ml, .timeout = 120) { check_refits(PAS, PASF, MLMX_ML, 40); }
Test(lmm_dense_batch, refits_sim_crossed_194_ml, .timeout = 240) { check_refits(SIMC, SIMC194F, MLMX_ML, 6); }
Test(lmm_dense_batch, refits_sim_crossed_194_reml, .timeout = 240) { check_refits(SIMC, SIMC194F, MLMX_REML, 4); }
Test(lmm_dense_batch, refits_sim_crossed_345_reml, .timeout = 240) { check_refits(SIMC, SIMC345F, MLMX_REML, 3); }

Test(lmm_dense_batch, threads_do_not_change_results, .timeout = 60)
{
    setup s;
    open_model(&s, PEN, PENF, MLMX_REML);
    rows a, b;
    rows_alloc(&a, s.P, 37, 9);
    rows_alloc(&b, s.P, 37, 9);
    mlmx_error e;
    cr_assert_eq(mlmx_batch_run_cpu(s.E, &a.J, 1, &e), MLMX_OK);
    cr_assert_eq(mlmx_batch_run_cpu(s.E, &b.J, 2, &e), MLMX_OK);
    cr_expect(memcmp(a.J.theta, b.J.theta, 37 * 2 * sizeof(double)) == 0);
    cr_expect(memcmp(a.J.beta, b.J.beta, 37 * sizeof(double)) == 0);
    cr_expect(memcmp(a.J.se, b.J.se, 37 * sizeof(double)) == 0);
    cr_expect(memcmp(a.J.crit, b.J.crit, 37 * sizeof(double)) == 0);
    cr_expect(memcmp(a.J.nev, b.J.nev, 37 * sizeof(int)) == 0);
    rows_free(&a);
    rows_free(&b);
    close_model(&s);
}

/* ------------------------------------------------------------ refusals */

Test(lmm_dense_batch, too_large_a_dense_block_is_refused, .timeout = 60)
{
    /* the size rule on dimensions alone (no data set here is that large):
     * 6,000 dense columns with 3 theta need ~550 MiB a replicate */
    mlmx_ld_model M;
    memset(&M, 0, sizeof M);
    M.m = 6000;
    M.m_re = 5990;
    M.p = 9;
    M.nt = 3;
    M.q1 = 1;
    M.maxrows = 40;
    M.ntm = 3;
    char buf[256];
    const char *why = mlmx_ld_size_refusal(&M, buf, sizeof buf);
    cr_assert_not_null(why);
    cr_expect(strstr(why, "a dense block of 6000 columns") != NULL, "%s", why);
    cr_expect(strstr(why, "at most 256 MiB") != NULL, "%s", why);
    /* InstEval's 1,159 columns (3 theta) fit */
    M.m = 1159;
    M.m_re = 1156;
    M.p = 2;
    cr_expect_null(mlmx_ld_size_refusal(&M, buf, sizeof buf));
}

/* The registry's choice: crossed models to lmm-crossed, nested ones to the
 * specialised lmm-nest, which comes first. */
static void expect_engine(const char *csv, const char *formula, const char *name,
                          int cpu_slower)
{
    setup s;
    memset(&s, 0, sizeof s);
    cr_assert_eq(mlmx_data_read_csv(csv, &s.d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(s.d, formula, &s.m), MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    cr_assert_eq(mlmx_fit_lmm(s.m, &o, &s.f), MLMX_OK);
    cr_assert_eq(mlmx_problem_create(s.f, &s.P), MLMX_OK);
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_assert_eq(mlmx_batch_engine_create(s.P, &s.E, &e), MLMX_OK, "%s", e.msg);
    cr_expect_str_eq(s.E->name, name, "%s", formula);
    cr_expect_eq(s.E->cpu_slower, cpu_slower, "%s: cpu_slower", formula);
    close_model(&s);
}

Test(lmm_dense_batch, the_registry_picks_it_for_crossed_models, .timeout = 60)
{
    expect_engine(PEN, PENF, "lmm-crossed", 0);
    expect_engine(SIMC, SIMCF, "lmm-crossed", 0);
    expect_engine(PAS, PASF, "lmm-nest", 0);
    /* past MLMX_LD_CPU_MAX_M columns: the engine, flagged slower on the CPU */
    expect_engine(SIMC, SIMC194F, "lmm-crossed", 1);
}

Test(lmm_dense_batch, one_term_models_stay_with_lmm_1term)
{
    setup s;
    memset(&s, 0, sizeof s);
    cr_assert_eq(mlmx_data_read_csv(MLMX_SOURCE_DIR "/data/sleepstudy.csv", &s.d), MLMX_OK);
    cr_assert_eq(mlmx_model_create(s.d, "Reaction ~ Days + (Days|Subject)", &s.m), MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    cr_assert_eq(mlmx_fit_lmm(s.m, &o, &s.f), MLMX_OK);
    cr_assert_eq(mlmx_problem_create(s.f, &s.P), MLMX_OK);
    mlmx_batch_engine E;
    mlmx_error e;
    mlmx_err_clear(&e);
    cr_expect_eq(mlmx_ld_engine_init(s.P, &E, &e), MLMX_ERR_UNSUPPORTED);
    cr_expect(strstr(e.msg, "fewer than two random-effect terms") != NULL, "%s", e.msg);
    cr_assert_eq(mlmx_batch_engine_create(s.P, &s.E, &e), MLMX_OK);
    cr_expect_str_eq(s.E->name, "lmm-1term");
    cr_expect_null(mlmx_ld_engine_model(s.E));
    close_model(&s);
}
