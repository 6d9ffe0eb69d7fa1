/* mlmx power with residual structures (the scenario's "residual" key,
 * docs/scenarios.md; issue 10): an AR(1) residual correlation on a
 * simulated longitudinal design, 40 subjects x 6 times,
 * y ~ time + trt + (1 | subject), random-intercept SD 0.5, sigma 1,
 * Phi 0.6, a Wald z test of the between-subject effect trt.
 *
 * No R fixture (simr has no residual structures, and none is needed): these
 * are self-consistency checks against computations made here,
 * independently of the power engine:
 *   - with trt = 0 the rejection rate is alpha within binomial error;
 *   - with trt = 0.6 the simulated power agrees with the power of the GLS
 *     estimator at the true parameters, computed here from the design by
 *     6 x 6 matrix algebra (V_i = tau^2 J + sigma^2 R(Phi));
 *   - the same scenario without the residual key (iid residuals, the same
 *     marginal SD) agrees with the GLS power at Phi = 0 and is clearly
 *     higher: ignoring a positive correlation overstates the power for a
 *     between-subject effect (the variance of a subject's mean is
 *     tau^2 + sigma^2 mean(R), 0.718 against 0.417);
 *   - replaying the replicates with the public API (mlmx_model_set_residual,
 *     mlmx_problem_create_at_resid, workspaces) on the same design and seed
 *     gives the same rejections, and the refitted Phi average near 0.6;
 *   - an LRT (ML fits of both models, the null model with the structure
 *     too) on the same simulated data sets agrees with the Wald test;
 *   - a pilot fit's estimates are the truth, and residual.parameters
 *     override them;
 * then each bad input of the new key gives an error naming it. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/frame.h"
#include "mlmx.h"
#include "power/power.h"
#include "power/scenario.h"

#define NSIM 200
#define SEED 20261203
#define TAU 0.5
#define SIGMA 1.0
#define PHI 0.6
#define NTIME 6

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mlmx-pwresid-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(power_resid, .init = setup, .fini = teardown);

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp, "%s", path);
    fputs(text, fp);
    fclose(fp);
}

/* The test's scenario in tmpdir/name: trt's value, the "residual" entry
 * (with its trailing comma; "" for none), the test and extra top-level
 * keys (with a trailing comma, or ""). */
static void scenario(char *path, size_t cap, const char *name, double trt, const char *resid,
                     const char *test, const char *extra)
{
    char text[4096];
    snprintf(text, sizeof text,
             "{\n"
             "  \"formula\": \"y ~ time + trt + (1 | subject)\",\n"
             "  \"design\": {\n"
             "    \"levels\": [{\"name\": \"subject\", \"units\": 40},\n"
             "               {\"name\": \"visit\", \"units\": %d}],\n"
             "    \"covariates\": [\n"
             "      {\"name\": \"trt\", \"level\": \"subject\", \"binary\": {\"p\": 0.5}},\n"
             "      {\"name\": \"time\", \"level\": \"visit\", \"sequence\": {\"start\": 0}}]\n"
             "  },\n"
             "  \"fixed\": {\"(Intercept)\": 10, \"time\": 0.1, \"trt\": %.17g},\n"
             "  \"random\": [{\"group\": \"subject\", \"sd\": {\"(Intercept)\": %.17g}}],\n"
             "  \"sigma\": %.17g,\n"
             "  %s\n"
             "  %s\n"
             "  \"test\": %s,\n"
             "  \"nsim\": %d,\n"
             "  \"seed\": %d\n"
             "}\n",
             NTIME, trt, TAU, SIGMA, resid, extra, test, NSIM, SEED);
    snprintf(path, cap, "%s/%s", tmpdir, name);
    write_text(path, text);
}

#define AR1 "\"residual\": {\"correlation\": \"ar1(~ time | subject)\", \"parameters\": {\"Phi\": 0.6}},"
#define WALD "{\"type\": \"wald_z\", \"term\": \"trt\"}"

static mlmx_power_result *run(const char *path)
{
    mlmx_power_options o;
    mlmx_power_options_default(&o);
    o.threads = 2;
    mlmx_power_result *r = NULL;
    cr_assert_eq(mlmx_power_run(path, &o, &r), MLMX_OK, "%s: %s", path, mlmx_last_error());
    return r;
}

/* The design the power run simulates on (the scenario's, seed SEED). */
static mlmx_data *design(const char *path)
{
    mlmx_error e;
    mlmx_err_clear(&e);
    mlmx_scenario *sc = NULL;
    cr_assert_eq(mlmx_scenario_read(path, &sc, &e), MLMX_OK, "%s", e.msg);
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_scenario_design(sc, -1, sc->seed, &d, &e), MLMX_OK, "%s", e.msg);
    mlmx_scenario_free(sc);
    return d;
}

static const double *column(const mlmx_data *d, const char *name)
{
    int j = mlmx_frame_find(d, name);
    cr_assert(j >= 0 && d->cols[j].type == MLMX_COL_NUMERIC, "no numeric column %s", name);
    return d->cols[j].num;
}

/* Solve A x = b in place (n x n, column-major; Gaussian elimination with
 * partial pivoting; A is overwritten). */
static void solve(int n, double *A, double *b)
{
    for (int k = 0; k < n; k++) {
        int piv = k;
        for (int i = k + 1; i < n; i++)
            if (fabs(A[i + k * n]) > fabs(A[piv + k * n]))
                piv = i;
        for (int j = 0; j < n; j++) {
            double t = A[k + j * n];
            A[k + j * n] = A[piv + j * n];
            A[piv + j * n] = t;
        }
        double t = b[k];
        b[k] = b[piv];
        b[piv] = t;
        for (int i = k + 1; i < n; i++) {
            const double f = A[i + k * n] / A[k + k * n];
            for (int j = k; j < n; j++)
                A[i + j * n] -= f * A[k + j * n];
            b[i] -= f * b[k];
        }
    }
    for (int k = n - 1; k >= 0; k--) {
        for (int j = k + 1; j < n; j++)
            b[k] -= A[k + j * n] * b[j];
        b[k] /= A[k + k * n];
    }
}

/* The power of the two-sided Wald z test of trt (true value beta) at
 * level 0.05 for the GLS estimator at the true parameters:
 * Var(beta_hat) = (sum_i X_i' V_i^-1 X_i)^-1, V_i = tau^2 J + sigma^2 R_i,
 * R_i[s, t] = phi^|time_s - time_t|, over the design's subjects (rows in
 * subject order, NTIME each). */
static double gls_power(const mlmx_data *d, double phi, double beta)
{
    const double *time = column(d, "time"), *trt = column(d, "trt");
    cr_assert_eq(d->nrow % NTIME, 0);
    double info[9] = {0};
    for (size_t s = 0; s < d->nrow; s += NTIME) {
        double X[NTIME * 3];
        for (int a = 0; a < NTIME; a++) {
            X[a] = 1.0;
            X[a + NTIME] = time[s + (size_t)a];
            X[a + 2 * NTIME] = trt[s + (size_t)a];
        }
        for (int c = 0; c < 3; c++) { /* info += X' V^-1 X, a column at a time */
            double V[NTIME * NTIME], v[NTIME];
            for (int a = 0; a < NTIME; a++) {
                for (int b = 0; b < NTIME; b++)
                    V[a + b * NTIME] =
                        TAU * TAU + SIGMA * SIGMA * pow(phi, fabs(time[s + (size_t)a] -
                                                                  time[s + (size_t)b]));
                v[a] = X[a + c * NTIME];
            }
            solve(NTIME, V, v);
            for (int r = 0; r < 3; r++)
                for (int a = 0; a < NTIME; a++)
                    info[r + c * 3] += X[a + r * NTIME] * v[a];
        }
    }
    double e2[3] = {0, 0, 1}; /* Var(beta_hat)[2, 2] = e2' info^-1 e2 */
    solve(3, info, e2);
    const double se = sqrt(e2[2]), z = mlmx_pw_qnorm(0.975);
    const double ncp = fabs(beta) / se;
    return 0.5 * erfc((z - ncp) / sqrt(2.0)) + 0.5 * erfc((z + ncp) / sqrt(2.0));
}

/* ---- rejection rates -------------------------------------------------------- */

/* trt = 0: the rejection rate is alpha up to binomial error. alpha must lie
 * in the 99.9% Clopper-Pearson interval of the rejections (a 0.1% chance
 * of a false alarm for an exact test); the Wald z test with estimated
 * variance parameters is slightly liberal at 40 subjects, well inside it. */
Test(power_resid, null_rate_is_alpha)
{
    char sc[300];
    scenario(sc, sizeof sc, "null.json", 0.0, AR1, WALD, "");
    mlmx_power_result *r = run(sc);
    const mlmx_power_point *b = mlmx_power_base(r);
    double lo, hi;
    mlmx_pw_clopper_pearson(b->n_rejected, b->n_ok, 0.999, &lo, &hi);
    cr_log_info("null: %ld of %ld rejected (%.4f), 99.9%% CP [%.4f, %.4f], %ld failed, %ld "
                "singular, %.2f s",
                b->n_rejected, b->n_ok, b->power, lo, hi, b->n_failed, b->n_singular,
                b->seconds);
    cr_expect_eq(b->n_failed, 0);
    cr_expect(lo <= 0.05 && 0.05 <= hi, "rejection rate %.4f: alpha outside [%.4f, %.4f]",
              b->power, lo, hi);
    mlmx_power_result_free(r);
}

/* trt = 0.6: the simulated power p against the GLS power p0 at the true
 * parameters: |p - p0| <= 3.29 sqrt(p0 (1 - p0) / n) + 0.03 (99.9% binomial
 * error, plus 0.03 for the estimated variance parameters that the GLS
 * power takes as known; measured gaps are about 0.01). Without the
 * residual key the truth has iid residuals: the same check at Phi = 0, and
 * that power is higher by more than 0.1 (the GLS powers differ by about
 * 0.25, the binomial SD of the difference is about 0.045). */
Test(power_resid, power_matches_gls_and_iid_is_higher)
{
    char sc[300], sc0[300];
    scenario(sc, sizeof sc, "ar1.json", 0.6, AR1, WALD, "");
    scenario(sc0, sizeof sc0, "iid.json", 0.6, "", WALD, "");
    mlmx_data *d = design(sc);
    const double g1 = gls_power(d, PHI, 0.6), g0 = gls_power(d, 0.0, 0.6);
    mlmx_data_free(d);
    mlmx_power_result *r1 = run(sc), *r0 = run(sc0);
    const mlmx_power_point *b1 = mlmx_power_base(r1), *b0 = mlmx_power_base(r0);
    const double t1 = 3.29 * sqrt(g1 * (1 - g1) / (double)b1->n_ok) + 0.03;
    const double t0 = 3.29 * sqrt(g0 * (1 - g0) / (double)b0->n_ok) + 0.03;
    cr_log_info("AR(1): power %.4f (%ld fits, %ld singular), GLS %.4f, tolerance %.4f; iid: "
                "power %.4f, GLS %.4f, tolerance %.4f",
                b1->power, b1->n_ok, b1->n_singular, g1, t1, b0->power, g0, t0);
    cr_expect_leq(fabs(b1->power - g1), t1, "AR(1): power %.4f, GLS %.4f", b1->power, g1);
    cr_expect_leq(fabs(b0->power - g0), t0, "iid: power %.4f, GLS %.4f", b0->power, g0);
    cr_expect_gt(g0 - g1, 0.15, "GLS powers %.4f (iid) and %.4f (AR(1))", g0, g1);
    cr_expect_gt(b0->power - b1->power, 0.1, "iid %.4f, AR(1) %.4f", b0->power, b1->power);
    cr_expect_eq(r1->nresid, 1);
    cr_expect_str_eq(r1->correlation, "ar1(~ time | subject)");
    cr_expect_eq(r0->nresid, 0);
    cr_expect_null(r0->correlation);
    mlmx_power_result_free(r1);
    mlmx_power_result_free(r0);
}

/* ---- the replicates, replayed ----------------------------------------------- */

/* The power run's replicates replayed through the public API: the design
 * (its response filled as the engine fills it), ar1(~ time | subject) set on
 * the model, the problem at the truth (theta = tau / sigma), replicate r
 * simulated from (seed, r) and refitted by REML on a workspace. The
 * rejections must be the power run's exactly (the same draws, the same
 * refits). The refitted Phi averages within 0.05 of 0.6: its Monte Carlo
 * SE over 200 replicates is under 0.01, and
 * REML's small-sample bias for Phi with a random intercept beside it at 6
 * times per subject is about -0.01 (measured: mean 0.588, SD 0.091, so a
 * Monte Carlo SE of 0.0064). */
Test(power_resid, replay_gives_the_same_rejections_and_phi)
{
    char sc[300];
    scenario(sc, sizeof sc, "replay.json", 0.3, AR1, WALD, "");
    mlmx_power_result *r = run(sc);
    mlmx_data *d = design(sc);
    const int jy = mlmx_frame_find(d, "y");
    cr_assert_geq(jy, 0);
    double *y = d->cols[jy].num;
    for (size_t i = 0; i < d->nrow; i++)
        y[i] = (double)(i % 2);
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, "y ~ time + trt + (1 | subject)", &m), MLMX_OK, "%s",
                 mlmx_last_error());
    cr_assert_eq(mlmx_model_set_residual(m, d, "ar1(~ time | subject)", NULL), MLMX_OK, "%s",
                 mlmx_last_error());
    cr_assert_eq(mlmx_model_nresid_par(m), 1);
    cr_assert_str_eq(mlmx_model_resid_par_name(m, 0), "Phi");
    mlmx_fit_options fo;
    mlmx_fit_options_default(&fo);
    const double theta = TAU / SIGMA, beta[3] = {10, 0.1, 0.3}, phi = PHI;
    mlmx_problem *P = NULL;
    cr_assert_eq(mlmx_problem_create_at_resid(m, &fo, &theta, beta, &phi, SIGMA, &P), MLMX_OK,
                 "%s", mlmx_last_error());
    int jphi = -1;
    for (int j = 0; j < mlmx_problem_nparams(P); j++)
        if (strcmp(mlmx_problem_param_name(P, j), "corr_Phi") == 0)
            jphi = j;
    cr_assert_geq(jphi, 0, "no corr_Phi among the problem's parameters");
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_workspace_create(P, &W), MLMX_OK, "%s", mlmx_last_error());
    const double crit = mlmx_pw_qnorm(0.975);
    long rejected = 0, ok = 0;
    double sum = 0.0, sum2 = 0.0;
    for (long rep = 0; rep < NSIM; rep++) {
        cr_assert_eq(mlmx_workspace_simulate(W, SEED, (uint64_t)rep, NULL), MLMX_OK);
        if (mlmx_workspace_fit(W, 1) != MLMX_OK)
            continue;
        const double z = mlmx_workspace_beta(W)[2] / mlmx_workspace_se(W)[2];
        if (!isfinite(z))
            continue;
        ok++;
        rejected += fabs(z) > crit;
        const double p = mlmx_workspace_params(W)[jphi];
        sum += p;
        sum2 += p * p;
    }
    const double mean = sum / (double)ok, sd = sqrt((sum2 - (double)ok * mean * mean) / (ok - 1.0));
    const mlmx_power_point *b = mlmx_power_base(r);
    cr_log_info("replay: %ld of %ld rejected (power run: %ld of %ld); refitted Phi mean %.4f, "
                "SD %.4f, Monte Carlo SE %.4f",
                rejected, ok, b->n_rejected, b->n_ok, mean, sd, sd / sqrt((double)ok));
    cr_expect_eq(ok, b->n_ok);
    cr_expect_eq(rejected, b->n_rejected);
    cr_expect_leq(fabs(mean - PHI), 0.05, "mean refitted Phi %.4f", mean);
    mlmx_workspace_free(W);
    mlmx_problem_free(P);
    mlmx_model_free(m);
    mlmx_data_free(d);
    mlmx_power_result_free(r);
}

/* An LRT dropping trt: both models ML fits with the AR(1) structure (the
 * null model's too), on the same simulated data sets as the Wald test
 * (replicate r is drawn from (seed, r) whatever the test). The two tests
 * are asymptotically equivalent, so they disagree only on data sets near
 * the boundary: the counts differ by at most 5% of the replicates (measured:
 * 73 and 73 of 200). */
Test(power_resid, lrt_agrees_with_wald)
{
    char sw[300], sl[300];
    scenario(sw, sizeof sw, "wald.json", 0.4, AR1, WALD, "");
    scenario(sl, sizeof sl, "lrt.json", 0.4, AR1, "{\"type\": \"lrt\", \"drop\": [\"trt\"]}", "");
    mlmx_power_result *rw = run(sw), *rl = run(sl);
    const mlmx_power_point *bw = mlmx_power_base(rw), *bl = mlmx_power_base(rl);
    cr_log_info("Wald %.4f (%ld of %ld), LRT %.4f (%ld of %ld, %ld singular, %ld not converged)",
                bw->power, bw->n_rejected, bw->n_ok, bl->power, bl->n_rejected, bl->n_ok,
                bl->n_singular, bl->n_nonconverged);
    cr_expect_eq(bl->n_failed, 0);
    cr_expect_eq(rl->df, 1);
    cr_expect_str_eq(rl->reduced, "y ~ time + trt + (1 | subject) - trt");
    cr_expect_leq(labs(bl->n_rejected - bw->n_rejected), NSIM / 20, "LRT %ld, Wald %ld",
                  bl->n_rejected, bw->n_rejected);
    mlmx_power_result_free(rw);
    mlmx_power_result_free(rl);
}

/* ---- a pilot ---------------------------------------------------------------- */

/* A pilot data set: the design with a response simulated at the truth
 * (Phi 0.6, trt 0.3; replicate 7), written as CSV. */
static void write_pilot(const char *path)
{
    char sc[300];
    scenario(sc, sizeof sc, "pilot_src.json", 0.3, AR1, WALD, "");
    mlmx_data *d = design(sc);
    mlmx_model *m = NULL;
    cr_assert_eq(mlmx_model_create(d, "y ~ time + trt + (1 | subject)", &m), MLMX_OK);
    cr_assert_eq(mlmx_model_set_residual(m, d, "ar1(~ time | subject)", NULL), MLMX_OK);
    const double theta = TAU / SIGMA, beta[3] = {10, 0.1, 0.3}, phi = PHI;
    mlmx_problem *P = NULL;
    mlmx_workspace *W = NULL;
    cr_assert_eq(mlmx_problem_create_at_resid(m, NULL, &theta, beta, &phi, SIGMA, &P), MLMX_OK,
                 "%s", mlmx_last_error());
    cr_assert_eq(mlmx_workspace_create(P, &W), MLMX_OK);
    double *y = malloc(d->nrow * sizeof *y);
    cr_assert_eq(mlmx_workspace_simulate(W, SEED, 7, y), MLMX_OK);
    const int js = mlmx_frame_find(d, "subject");
    const double *time = column(d, "time"), *trt = column(d, "trt");
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fprintf(fp, "subject,time,trt,y\n");
    for (size_t i = 0; i < d->nrow; i++)
        fprintf(fp, "%s,%.17g,%.17g,%.17g\n", d->cols[js].levels[d->cols[js].codes[i]], time[i],
                trt[i], y[i]);
    fclose(fp);
    free(y);
    mlmx_workspace_free(W);
    mlmx_problem_free(P);
    mlmx_model_free(m);
    mlmx_data_free(d);
}

/* The pilot fit's Phi, by the public API (the reference for the truth). */
static double pilot_phi(const char *csv)
{
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_data_read_csv(csv, &d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(d, "y ~ time + trt + (1 | subject)", &m), MLMX_OK);
    cr_assert_eq(mlmx_model_set_residual(m, d, "ar1(~ time | subject)", NULL), MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    cr_assert_eq(mlmx_fit_lmm(m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    const double phi = mlmx_fit_resid_par(f, 0);
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    return phi;
}

static void pilot_scenario(char *path, size_t cap, const char *name, const char *csv,
                           const char *params)
{
    char text[2048];
    snprintf(text, sizeof text,
             "{\"formula\": \"y ~ time + trt + (1 | subject)\",\n"
             " \"pilot\": {\"data\": \"%s\", \"extend\": {\"group\": \"subject\", \"units\": 60}},\n"
             " \"fixed\": {\"trt\": 0.5},\n"
             " \"residual\": {\"correlation\": \"ar1(~ time | subject)\"%s},\n"
             " \"test\": {\"type\": \"wald_z\", \"term\": \"trt\"}, \"nsim\": 50}\n",
             csv, params);
    snprintf(path, cap, "%s/%s", tmpdir, name);
    write_text(path, text);
}

/* With pilot.data the pilot is fitted with the structure and its Phi is the
 * truth (equal to a direct fit's to 1e-12: the same fit); a value in
 * residual.parameters overrides it. The extended design (60 subjects, the
 * copies relabelled) keeps the structure's groups apart. */
Test(power_resid, pilot_estimates_are_the_truth)
{
    char csv[300], s1[300], s2[300];
    snprintf(csv, sizeof csv, "%s/pilot.csv", tmpdir);
    write_pilot(csv);
    const double phi = pilot_phi(csv);
    pilot_scenario(s1, sizeof s1, "p1.json", csv, "");
    pilot_scenario(s2, sizeof s2, "p2.json", csv, ", \"parameters\": {\"Phi\": 0.3}");
    mlmx_power_result *r1 = run(s1), *r2 = run(s2);
    cr_log_info("pilot Phi %.6f; power %.3f (Phi from the pilot), %.3f (Phi 0.3), %ld obs", phi,
                mlmx_power_base(r1)->power, mlmx_power_base(r2)->power,
                mlmx_power_base(r1)->nobs);
    cr_assert_eq(r1->nresid, 1);
    cr_expect_str_eq(r1->resid_names[0], "Phi");
    cr_expect_float_eq(r1->resid_values[0], phi, 1e-12);
    cr_assert_eq(r2->nresid, 1);
    cr_expect_eq(r2->resid_values[0], 0.3);
    cr_expect_eq(mlmx_power_base(r1)->nobs, 60 * NTIME);
    cr_expect_eq(mlmx_power_base(r1)->n_failed, 0);
    cr_expect_eq(mlmx_power_base(r2)->n_failed, 0);
    mlmx_power_result_free(r1);
    mlmx_power_result_free(r2);
}

/* ---- bad input -------------------------------------------------------------- */

/* mlmx_power_run_model(path, model) on device dev must fail with status st
 * and a one-line message holding every needle. */
static void expect_fail_at(const char *path, const char *model, mlmx_device dev, mlmx_status st,
                           const char *const *needles)
{
    mlmx_power_options o;
    mlmx_power_options_default(&o);
    o.device = dev;
    mlmx_power_result *r = NULL;
    cr_expect_eq(mlmx_power_run_model(path, model, &o, &r), st, "status (message: %s)",
                 mlmx_last_error());
    cr_expect_null(r);
    const char *msg = mlmx_last_error();
    cr_expect_null(strchr(msg, '\n'), "not one line: %s", msg);
    for (int i = 0; needles[i]; i++)
        cr_expect(strstr(msg, needles[i]) != NULL, "message lacks '%s': %s", needles[i], msg);
    mlmx_power_result_free(r);
}

/* The test's scenario with the "residual" entry resid (and other keys
 * extra) must fail so. */
static void expect_fail(const char *resid, const char *extra, mlmx_status st,
                        const char *const *needles)
{
    char sc[300];
    scenario(sc, sizeof sc, "bad.json", 0.3, resid, WALD, extra);
    expect_fail_at(sc, NULL, MLMX_DEVICE_CPU, st, needles);
}

Test(power_resid, not_an_object)
{
    const char *n[] = {"bad.json", "residual must be an object", "a string", NULL};
    expect_fail("\"residual\": \"ar1()\",", "", MLMX_ERR_PARSE, n);
}

Test(power_resid, unknown_key)
{
    const char *n[] = {"bad.json", "unknown key 'corelation' in residual",
                       "did you mean 'correlation'", NULL};
    expect_fail("\"residual\": {\"corelation\": \"ar1()\"},", "", MLMX_ERR_PARSE, n);
}

Test(power_resid, no_structure)
{
    const char *n[] = {"bad.json", "residual needs \"correlation\"", NULL};
    expect_fail("\"residual\": {\"parameters\": {\"Phi\": 0.5}},", "", MLMX_ERR_PARSE, n);
}

Test(power_resid, wrong_types)
{
    const char *n1[] = {"residual.correlation must be a string", "a number", NULL};
    expect_fail("\"residual\": {\"correlation\": 1},", "", MLMX_ERR_PARSE, n1);
    const char *n2[] = {"residual.variance must not be empty", NULL};
    expect_fail("\"residual\": {\"variance\": \" \"},", "", MLMX_ERR_PARSE, n2);
    const char *n3[] = {"residual.parameters must be an object", "an array", NULL};
    expect_fail("\"residual\": {\"correlation\": \"ar1()\", \"parameters\": [0.5]},", "",
                MLMX_ERR_PARSE, n3);
    const char *n4[] = {"residual.parameters.Phi must be a number", "a string", NULL};
    expect_fail("\"residual\": {\"correlation\": \"ar1()\", \"parameters\": {\"Phi\": \"0.5\"}},",
                "", MLMX_ERR_PARSE, n4);
}

Test(power_resid, unknown_parameter)
{
    const char *n[] = {"bad.json", "residual.parameters", "'Rho' is not a parameter",
                       "ar1(~ time | subject)", "Phi", NULL};
    expect_fail("\"residual\": {\"correlation\": \"ar1(~ time | subject)\", \"parameters\": "
                "{\"Phi\": 0.5, \"Rho\": 0.2}},",
                "", MLMX_ERR_ARG, n);
}

Test(power_resid, missing_parameter)
{
    const char *n[] = {"bad.json", "residual.parameters", "no value for 'Phi'", NULL};
    expect_fail("\"residual\": {\"correlation\": \"ar1(~ time | subject)\"},", "", MLMX_ERR_ARG,
                n);
    /* ident's ratios are named by the strata: here trt's levels 0 and 1 */
    const char *n2[] = {"no value for '1'", "ident(~ 1 | trt)", NULL};
    expect_fail("\"residual\": {\"variance\": \"ident(~ 1 | trt)\"},", "", MLMX_ERR_ARG, n2);
}

Test(power_resid, parameter_out_of_range)
{
    const char *n[] = {"bad.json", "residual.parameters", "'Phi'", "1.5", NULL};
    expect_fail(
        "\"residual\": {\"correlation\": \"ar1(~ time | subject)\", \"parameters\": {\"Phi\": 1.5}},",
        "", MLMX_ERR_ARG, n);
    const char *n2[] = {"residual.parameters", "ratio must be positive", NULL};
    expect_fail("\"residual\": {\"variance\": \"ident(~ 1 | trt)\", \"parameters\": {\"1\": -2}},",
                "", MLMX_ERR_ARG, n2);
}

Test(power_resid, bad_specification)
{
    const char *n1[] = {"bad.json", "residual.correlation", "ar2", NULL};
    expect_fail("\"residual\": {\"correlation\": \"ar2(~ time | subject)\"},", "",
                MLMX_ERR_FORMULA, n1);
    const char *n2[] = {"bad.json", "residual.correlation", "'week'", NULL};
    expect_fail("\"residual\": {\"correlation\": \"ar1(~ week | subject)\"},", "", MLMX_ERR_DATA,
                n2);
    const char *n3[] = {"bad.json", "residual.variance", "'arm'", NULL};
    expect_fail("\"residual\": {\"variance\": \"ident(~ 1 | arm)\"},", "", MLMX_ERR_DATA, n3);
}

Test(power_resid, gaussian_only)
{
    char sc[300];
    snprintf(sc, sizeof sc, "%s/bin.json", tmpdir);
    write_text(sc, "{\"formula\": \"y ~ trt + (1 | subject)\", \"family\": \"binomial\",\n"
                   " \"design\": {\"levels\": [{\"name\": \"subject\", \"units\": 20},\n"
                   "   {\"name\": \"visit\", \"units\": 4}], \"covariates\": [\n"
                   "   {\"name\": \"trt\", \"level\": \"subject\", \"binary\": {\"p\": 0.5}}]},\n"
                   " \"fixed\": {\"(Intercept)\": 0, \"trt\": 1},\n"
                   " \"random\": [{\"group\": \"subject\", \"sd\": {\"(Intercept)\": 1}}],\n"
                   " \"residual\": {\"correlation\": \"ar1()\", \"parameters\": {\"Phi\": 0.5}},\n"
                   " \"test\": {\"type\": \"wald_z\", \"term\": \"trt\"}}\n");
    const char *n[] = {"bin.json", "residual", "gaussian models only", "binomial", NULL};
    expect_fail_at(sc, NULL, MLMX_DEVICE_CPU, MLMX_ERR_PARSE, n);
}

/* The GPU's batch engines do not cover residual structures: --device gpu
 * says so (auto and cpu run on CPU workspaces). */
Test(power_resid, device_gpu)
{
    char sc[300];
    scenario(sc, sizeof sc, "gpu.json", 0.3, AR1, WALD, "");
    const char *n[] = {"--device gpu", "residual", NULL};
    expect_fail_at(sc, NULL, MLMX_DEVICE_GPU, MLMX_ERR_UNSUPPORTED, n);
}

/* Power from a saved model (--model) does not take residual structures. */
Test(power_resid, saved_model_refused)
{
    char h5[300], sc[300];
    snprintf(h5, sizeof h5, "%s/sleep.h5", tmpdir);
    const char *data = MLMX_SOURCE_DIR "/data/sleepstudy.csv";
    mlmx_data *d = NULL;
    mlmx_model *m = NULL;
    mlmx_fit *f = NULL;
    cr_assert_eq(mlmx_data_read_csv(data, &d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_model_create(d, "Reaction ~ Days + (1 | Subject)", &m), MLMX_OK);
    mlmx_fit_options o;
    mlmx_fit_options_default(&o);
    cr_assert_eq(mlmx_fit_lmm(m, &o, &f), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_fit_save(f, h5, data), MLMX_OK, "%s", mlmx_last_error());
    mlmx_fit_free(f);
    mlmx_model_free(m);
    mlmx_data_free(d);
    snprintf(sc, sizeof sc, "%s/model.json", tmpdir);
    write_text(sc, "{\"residual\": {\"correlation\": \"ar1(~ Days | Subject)\"},\n"
                   " \"test\": {\"type\": \"wald_z\", \"term\": \"Days\"}, \"nsim\": 10}\n");
    const char *n[] = {"model.json", "residual", "saved model", "sleep.h5", NULL};
    expect_fail_at(sc, h5, MLMX_DEVICE_CPU, MLMX_ERR_PARSE, n);
}

/* Through the command: one line on stderr, exit status 1, no output file. */
Test(power_resid, command_line_error)
{
    char sc[300], jp[300], ep[300], cmd[2048];
    scenario(sc, sizeof sc, "cli.json", 0.3,
             "\"residual\": {\"correlation\": \"ar1(~ time | subject)\", \"parameters\": "
             "{\"Phi\": -1.5}},",
             WALD, "");
    snprintf(jp, sizeof jp, "%s/out.json", tmpdir);
    snprintf(ep, sizeof ep, "%s/stderr", tmpdir);
    snprintf(cmd, sizeof cmd, "timeout 120 '%s' power --scenario '%s' --json '%s' 2>'%s'",
             MLMX_CLI_PATH, sc, jp, ep);
    const int st = system(cmd);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1, "exit status %d", st);
    char err[2048] = "";
    FILE *fp = fopen(ep, "r");
    cr_assert_not_null(fp);
    const size_t n = fread(err, 1, sizeof err - 1, fp);
    fclose(fp);
    err[n] = '\0';
    const char *nl = strchr(err, '\n');
    cr_expect(nl && nl[1] == '\0', "not one line: %s", err);
    cr_expect(strstr(err, "residual.parameters") && strstr(err, "'Phi'"), "%s", err);
    cr_expect_eq(access(jp, F_OK), -1, "a JSON file was left behind");
}
