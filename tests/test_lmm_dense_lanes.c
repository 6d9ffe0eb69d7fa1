/* The warp and block forms of kernels/lmm_dense_batch.h, without a
 * device: the nlanes lanes (32: a warp; 128 and 256: the block mapping)
 * run as nlanes threads, the barrier is a pthread barrier and the lane sum
 * a sum through memory (MLMX_LD_HOST_SYNC / MLMX_LD_HOST_SUM). This checks
 * the partition of the work the CUDA kernel's warp and block mappings use
 * (levels over lanes, the downdate's row pairs dealt out level by level,
 * the Cholesky's trailing updates dealt out round-robin, the optimizer
 * stepped by lane 0 and read by all) against the one-lane CPU path, on
 * Penicillin (fewer levels than lanes), sim_crossed (150 levels in 5
 * rounds, 45 dense columns, q1 = 2; and 85 and 194 dense columns with
 * (time|teacher) and (time||student)) and veneer (a vector second term):
 *   - every lane returns the same criterion and gradient, equal to the
 *     one-lane values to 1e-12 relative (only the order of the levels'
 *     log-determinant sum differs);
 *   - multi-lane refits equal one-lane refits: criterion 1e-10 relative;
 *     on the same optimizer path (as many evaluations) theta and SE to
 *     1e-8, beta to 1e-10; when a last-bit difference flipped a stopping
 *     test, to the workspace-parity bounds (theta 1e-4, beta 1e-5, SE
 *     1e-4). */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define LANES_MAX 256
static pthread_barrier_t g_bar;
static int g_nlanes;
static _Thread_local int g_lane;
static double g_slot[LANES_MAX];

static void host_sync(void) { pthread_barrier_wait(&g_bar); }

/* The lanes' sum in lane order, on every lane. */
static double host_sum(double v)
{
    g_slot[g_lane] = v;
    pthread_barrier_wait(&g_bar);
    double s = 0.0;
    for (int l = 0; l < g_nlanes; l++)
        s += g_slot[l];
    pthread_barrier_wait(&g_bar);
    return s;
}

#define MLMX_LD_HOST_SYNC() host_sync()
#define MLMX_LD_HOST_SUM(v) host_sum(v)
#include "lmm_dense_batch.h"
#include "mlmx.h"
#include "replicate/batch.h"
#include "replicate/lmm_dense_engine.h"

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
    s->M = mlmx_ld_engine_model(s->E);
    cr_assert_not_null(s->M, "%s: engine %s", formula, s->E->name);
}

static void close_model(setup *s)
{
    mlmx_batch_engine_free(s->E);
    mlmx_problem_free(s->P);
    mlmx_fit_free(s->f);
    mlmx_model_free(s->m);
    mlmx_data_free(s->d);
}

static int near(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b) + 1e-300; }

/* One fit's outputs (one row; the models here have at most PMAX fixed
 * effects). */
#define PMAX 16
typedef struct row {
    double theta[MLMX_LD_NTMAX], beta[PMAX], se[PMAX], sigma, crit;
    int nev;
    signed char conv, sing, status;
} row;

static mlmx_ld_out row_out(row *r)
{
    mlmx_ld_out o = {r->theta, r->beta, r->se,  &r->sigma, &r->crit,
                     &r->nev,  &r->conv, &r->sing, &r->status};
    return o;
}

/* What every lane thread runs: an evaluation (x != NULL) or a fit. */
typedef struct lane_job {
    const mlmx_ld_model *M;
    const double *resp, *x;
    double *scr, *qstore;
    mlmx_qn_state *q;
    int *qact;
    mlmx_ld_out o;
    int lane;
    double f, g[MLMX_LD_NTMAX];
} lane_job;

static void *lane_main(void *arg)
{
    lane_job *j = arg;
    g_lane = j->lane;
    if (j->x)
        j->f = mlmx_ld_objective(j->M, j->x, j->g, j->resp, j->scr, j->lane, g_nlanes);
    else
        mlmx_ld_fit(j->M, j->resp, j->scr, j->q, j->qstore, j->qact, j->lane, g_nlanes, &j->o,
                    0);
    return NULL;
}

/* Run g_nlanes lanes on shared scratch; jobs[0..g_nlanes) get each lane's
 * results. */
static void run_lanes(const mlmx_ld_model *M, const double *resp, const double *x, row *out,
                      lane_job *jobs)
{
    const int nl = g_nlanes;
    double *scr = malloc(mlmx_ld_scratch_len(M, nl) * sizeof *scr);
    double *qstore = malloc((size_t)(8 * M->nt + M->nt * M->nt) * sizeof *qstore);
    int *qact = malloc((size_t)M->nt * sizeof *qact);
    mlmx_qn_state q;
    pthread_t tid[LANES_MAX];
    cr_assert(scr && qstore && qact);
    cr_assert_eq(pthread_barrier_init(&g_bar, NULL, nl), 0);
    for (int l = 0; l < nl; l++) {
        jobs[l] = (lane_job){M, resp, x, scr, qstore, &q, qact, row_out(out), l, 0.0, {0}};
        cr_assert_eq(pthread_create(&tid[l], NULL, lane_main, &jobs[l]), 0);
    }
    for (int l = 0; l < nl; l++)
        pthread_join(tid[l], NULL);
    pthread_barrier_destroy(&g_bar);
    free(scr);
    free(qstore);
    free(qact);
}

/* Lane counts checked by each model, and the most lanes a whole refit is
 * run with (a refit through host threads and barriers is slow; larger
 * counts check one evaluation). */
static const int k_lanes[] = {32, 128, 256};

/* One evaluation and (nl <= fit_lanes) one refit with nl lanes against the
 * one-lane values f1, g1 and r1. */
static void check_nlanes(const mlmx_ld_model *M, const char *formula, int rep, int nl,
                         const double *resp, const double *x, double f1, const double *g1,
                         const row *r1, int fit, lane_job *jobs)
{
    const int nt = M->nt, p = M->p;
    row rl;
    g_nlanes = nl;
    run_lanes(M, resp, x, &rl, jobs);
    for (int l = 0; l < nl; l++) {
        cr_expect(jobs[l].f == jobs[0].f, "%d lanes: lane %d criterion %.17g vs lane 0 %.17g",
                  nl, l, jobs[l].f, jobs[0].f);
        for (int t = 0; t < nt; t++)
            cr_expect(jobs[l].g[t] == jobs[0].g[t], "%d lanes: lane %d gradient %d differs", nl,
                      l, t);
    }
    cr_expect(near(jobs[0].f, f1, 1e-12), "%s: %d lanes %.17g, one lane %.17g", formula, nl,
              jobs[0].f, f1);
    for (int t = 0; t < nt; t++)
        cr_expect(near(jobs[0].g[t], g1[t], 1e-10), "%s: gradient %d: %d lanes %.15g, one lane "
                  "%.15g", formula, t, nl, jobs[0].g[t], g1[t]);
    if (!fit)
        return;
    run_lanes(M, resp, NULL, &rl, jobs);
    cr_expect_eq(rl.status, 1);
    cr_log_info("%s rep %d: evaluations %d (%d lanes) %d (one)", formula, rep, rl.nev, nl,
                r1->nev);
    cr_expect(near(rl.crit, r1->crit, 1e-10), "%s rep %d, %d lanes: criterion %.15g vs %.15g",
              formula, rep, nl, rl.crit, r1->crit);
    /* the same path (as many evaluations): the same point to rounding;
     * otherwise a stopping test flipped on a last-bit difference, and the
     * two points agree as refits of one replicate do */
    const int same = rl.nev == r1->nev;
    const double tt = same ? 1e-8 : 1e-4, tb = same ? 1e-10 : 1e-5, ts = same ? 1e-8 : 1e-4;
    for (int t = 0; t < nt && !r1->sing; t++)
        cr_expect(near(rl.theta[t], r1->theta[t], tt), "%s rep %d, %d lanes: theta%d %.12g vs "
                  "%.12g", formula, rep, nl, t, rl.theta[t], r1->theta[t]);
    for (int k = 0; k < p; k++) {
        cr_expect(near(rl.beta[k], r1->beta[k], tb), "%s rep %d, %d lanes: beta%d %.15g vs "
                  "%.15g", formula, rep, nl, k, rl.beta[k], r1->beta[k]);
        cr_expect(near(rl.se[k], r1->se[k], ts), "%s rep %d, %d lanes: se%d", formula, rep, nl,
                  k);
    }
}

static void check_lanes(const char *csv, const char *formula, mlmx_method method, int nrep,
                        int fit_lanes)
{
    setup s;
    open_model(&s, csv, formula, method);
    const mlmx_ld_model *M = s.M;
    const int nt = M->nt;
    cr_assert_leq(M->p, PMAX);
    double *b = malloc((size_t)M->nu * sizeof *b);
    double *resp = malloc(mlmx_ld_resp_len(M) * sizeof *resp);
    double *scr1 = malloc(mlmx_ld_scratch_len(M, 1) * sizeof *scr1);
    double *qs1 = malloc((size_t)(8 * nt + nt * nt) * sizeof *qs1);
    int qa1[MLMX_LD_NTMAX];
    lane_job *jobs = malloc(LANES_MAX * sizeof *jobs);
    cr_assert(b && resp && scr1 && qs1 && jobs);
    for (int rep = 0; rep < nrep; rep++) {
        mlmx_ld_simulate(M, 99, (uint64_t)rep, b, resp, NULL);
        /* one evaluation with its gradient, away from the start */
        double x[MLMX_LD_NTMAX], g1[MLMX_LD_NTMAX];
        for (int t = 0; t < nt; t++)
            x[t] = M->x0[t] + 0.1 * (t % 2 ? -1 : 1);
        const double f1 = mlmx_ld_objective(M, x, g1, resp, scr1, 0, 1);
        cr_assert(isfinite(f1));
        row r1;
        mlmx_qn_state q1;
        const mlmx_ld_out o1 = row_out(&r1);
        mlmx_ld_fit(M, resp, scr1, &q1, qs1, qa1, 0, 1, &o1, 0);
        cr_assert_eq(r1.status, 1);
        for (size_t k = 0; k < sizeof k_lanes / sizeof k_lanes[0]; k++)
            check_nlanes(M, formula, rep, k_lanes[k], resp, x, f1, g1, &r1,
                         k_lanes[k] <= fit_lanes, jobs);
    }
    free(b);
    free(resp);
    free(scr1);
    free(qs1);
    free(jobs);
    close_model(&s);
}

Test(lmm_dense_lanes, penicillin_reml, .timeout = 120)
{
    check_lanes(MLMX_SOURCE_DIR "/data/penicillin.csv", "diameter ~ 1 + (1|plate) + (1|sample)",
                MLMX_REML, 3, 256);
}

Test(lmm_dense_lanes, sim_crossed_reml, .timeout = 240)
{
    check_lanes(MLMX_SOURCE_DIR "/data/sim_crossed.csv",
                "score ~ time * grp + (1 + time|student) + (1|teacher)", MLMX_REML, 1, 128);
}

Test(lmm_dense_lanes, veneer_ml, .timeout = 240)
{
    check_lanes(MLMX_SOURCE_DIR "/data/veneer.csv",
                "gcf ~ time*(base_gcf + cda + age) + (time|patient) + (1|patient:tooth)", MLMX_ML,
                1, 32);
}

/* dense blocks past the old 48-column limit: 85 columns (a correlated
 * teacher term) and 194 ((time||student): two 150-level terms) */
Test(lmm_dense_lanes, sim_crossed_85_reml, .timeout = 300)
{
    check_lanes(MLMX_SOURCE_DIR "/data/sim_crossed.csv",
                "score ~ time * grp + (1 + time|student) + (time|teacher)", MLMX_REML, 1, 128);
}

Test(lmm_dense_lanes, sim_crossed_194_ml, .timeout = 300)
{
    check_lanes(MLMX_SOURCE_DIR "/data/sim_crossed.csv",
                "score ~ time + grp + (time||student) + (1|teacher)", MLMX_ML, 1, 0);
}
