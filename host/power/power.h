/* Power analysis by simulation (the public mlmx_power_* API): the engine
 * (power.c: truth from the scenario or a pilot fit, designs, the
 * simulate-refit-test loop over threads), the outputs (power_out.c) and
 * the distribution functions the tests and intervals need (power_math.c).
 * Nothing here prints. */
#ifndef MLMX_POWER_POWER_H
#define MLMX_POWER_POWER_H
#include <stdint.h>

#include "mlmx.h"
#include "power/scenario.h"
#include "util/error.h"

/* ---- distribution functions (power_math.c) ---- */

/* Regularized incomplete beta I_x(a, b), a, b > 0, x in [0, 1]: the
 * continued fraction of Numerical Recipes (modified Lentz), NaN outside. */
double mlmx_pw_pbeta(double x, double a, double b);
/* Its inverse in x (the beta quantile), by bisection to 1e-15. */
double mlmx_pw_qbeta(double p, double a, double b);
/* Regularized lower incomplete gamma P(a, x): series below a + 1, the
 * continued fraction above. */
double mlmx_pw_pgamma(double x, double a);
/* Quantiles: chi-square with df degrees of freedom, Student t with df
 * (df = inf: the normal), standard normal (AS 241). */
double mlmx_pw_qchisq(double p, double df);
double mlmx_pw_qt(double p, double df);
double mlmx_pw_qnorm(double p);
/* Clopper-Pearson interval for x successes of n at level conf:
 * [qbeta((1-conf)/2; x, n-x+1), qbeta((1+conf)/2; x+1, n-x)], 0 and 1 at
 * the ends; NaN when n = 0. */
void mlmx_pw_clopper_pearson(long x, long n, double conf, double *lo, double *hi);

/* ---- the result ---- */

struct mlmx_power_result {
    char *scenario;       /* the file as given */
    char *formula;        /* the simulated and fitted model */
    char *reduced;        /* LRT: the null model's formula; NULL otherwise */
    mlmx_family family;
    mlmx_link link;
    mlmx_method method;   /* of the Wald tests' fits (LRT: ML) */
    mlmx_sc_test test;
    char *term;           /* Wald: the coefficient; LRT: the dropped terms, ", "-joined */
    int df;               /* LRT: coefficients dropped; Wald t: 0 (per point, n - p) */
    double alpha, conf_level;
    uint64_t seed;
    long nsim;
    char *pilot;          /* the pilot's data file, or NULL */
    char *pilot_model;    /* the saved model that is the pilot, or NULL */
    char *curve_level;    /* NULL without a curve */
    /* the residual structure (power_resid.c): correlation and variance as
     * the scenario gives them (NULL: none), the true parameters by name */
    char *correlation, *variance;
    int nresid;
    char **resid_names;
    double *resid_values;
    mlmx_power_point base;
    int npoints;
    mlmx_power_point *points;
    double seconds;
    /* where the refits ran (mlmx_power_device) */
    char device[256], note[768];
    size_t peak_dev;
};

/* ---- the engine's state (power.c: the truth; power_run.c: the runs) ---- */

/* One grouping factor's random effects: SDs and correlations by column. */
typedef struct pw_group {
    char *group;
    int ncol, cap;
    char **cols;
    double *sd;  /* NaN: not given */
    double *cor; /* cap x cap, column-major */
    int from_scenario;
} pw_group;

typedef struct pw_truth {
    int nfix;
    char **fix_names;
    double *fix;
    unsigned char *fix_sc; /* given by the scenario (checked against the model) */
    int ngroups;
    pw_group *groups;
    double sigma;          /* NaN: not known */
    int nthr;
    double *thr;
    double size;           /* NaN: not known */
    int nres;              /* residual structure's parameters by name (power_resid.c) */
    char **res_names;
    double *res;
    unsigned char *res_sc; /* given by the scenario */
} pw_truth;

typedef struct pw_study {
    const mlmx_scenario *sc;
    pw_truth tr;
    mlmx_data *pilot;      /* the pilot's data, when they are the design */
    int pilot_col;         /* column of the group to extend, or -1 */
    long pilot_groups;     /* groups of that column in the pilot */
    unsigned char *nested; /* per pilot column: a grouping factor of the formula nested in
                              the extended group, relabelled in each copy */
    char *reduced;         /* LRT: the null model's formula */
    mlmx_fit_options fopt; /* the tested model's fits */
    uint64_t seed;
    long nsim;
    int threads;
    double conf;
    const mlmx_power_options *o;
    mlmx_power_result *res; /* the device lines are recorded here */
} pw_study;

/* A replicate's outcome (power_run.c, power_rows.c). */
enum { F_FAILED = 1, F_REJECT = 2, F_SINGULAR = 4, F_NONCONV = 8 };

/* The replicates 0..nsim-1 of a Wald test on P through the replicate
 * runner (replicate/runner.h) on S->o->device: flags[r] gets replicate
 * r's outcome (|beta[jterm] / se[jterm]| > crit rejects); progress as
 * mlmx_power_options says, with (point, npoints); the device lines go to
 * S->res. Errors: --device gpu where the GPU cannot run P, a device
 * failure under gpu, out of memory. power_rows.c. */
mlmx_status mlmx_pw_run_wald(const pw_study *S, const mlmx_problem *P, int jterm, double crit,
                             long nsim, int point, int npoints, unsigned char *flags,
                             mlmx_error *err);

void mlmx_pw_truth_free(pw_truth *t);
/* The pilot fit's estimates as the truth. */
mlmx_status mlmx_pw_truth_from_fit(pw_truth *t, const mlmx_fit *f, mlmx_error *err);
/* The scenario's parameters over the truth (pilot = 1: over a pilot's). */
mlmx_status mlmx_pw_truth_overlay(pw_truth *t, const mlmx_scenario *sc, int pilot,
                                  mlmx_error *err);
/* The truth as model m's parameters: theta (ntheta), beta (p), sigma, extra
 * (thresholds or size). check = 1: also refuse scenario names (fixed
 * effects, groups, columns) that m does not have. */
mlmx_status mlmx_pw_map_params(const pw_study *S, const mlmx_model *m, int check, double *theta,
                               double *beta, double *sigma, double *extra, mlmx_error *err);

/* ---- residual structures (power_resid.c) ---- */

void mlmx_pw_resid_free(pw_truth *t);
/* A pilot fit's residual parameters into the truth, by name. */
mlmx_status mlmx_pw_resid_from_fit(pw_truth *t, const mlmx_fit *f, mlmx_error *err);
/* The scenario's residual.parameters over them. */
mlmx_status mlmx_pw_resid_overlay(pw_truth *t, const mlmx_scenario *sc, mlmx_error *err);
/* The scenario's structure on m (built from d); nothing without one. what:
 * a prefix for messages ("pilot: ") or NULL. */
mlmx_status mlmx_pw_set_residual(const mlmx_scenario *sc, mlmx_model *m, const mlmx_data *d,
                                 const char *what, mlmx_error *err);
/* A failure of the residual structure (st, the library's message msg) as
 * the scenario's key: "residual.correlation", "residual.variance",
 * "residual.parameters" (at_params and MLMX_ERR_ARG: the values when the
 * problem is made) or "residual"; what: a prefix ("pilot: ") or NULL. */
mlmx_status mlmx_pw_resid_error(const mlmx_scenario *sc, mlmx_status st, int at_params,
                                const char *what, const char *msg, mlmx_error *err);
/* The truth's residual parameters in m's order (mlmx_model_nresid_par
 * values into resid); check = 1: also refuse scenario names m lacks. */
mlmx_status mlmx_pw_map_resid(const pw_study *S, const mlmx_model *m, int check, double *resid,
                              mlmx_error *err);
/* The structure and its true parameters into the result (MLMX_ERR_NOMEM),
 * freed by mlmx_pw_resid_result_free; their lines in the text summary and
 * their keys in the JSON (nothing without a structure). */
mlmx_status mlmx_pw_resid_result(mlmx_power_result *R, const pw_study *S);
void mlmx_pw_resid_result_free(mlmx_power_result *R);
struct mlmx_strbuf;
void mlmx_pw_resid_text(struct mlmx_strbuf *b, const mlmx_power_result *R);
void mlmx_pw_resid_json(struct mlmx_strbuf *b, const mlmx_power_result *R);

#endif
