/* Generalized linear mixed models: the conditional modes by penalized
 * iteratively reweighted least squares (PIRLS) and the Laplace and
 * adaptive Gauss-Hermite approximations of the deviance (GUIDE §2).
 *
 * PIRLS reuses the LMM core unchanged: each iteration refills the
 * sufficient statistics of the LMM structure with the working weights and
 * working response ([Z X z]^T W [Z X z]) and factors them through the same
 * backend, so nested and crossed designs, vector-valued terms and the
 * per-level batches work as they do for linear models. */
#ifndef MLMX_GLMM_H
#define MLMX_GLMM_H
#include "lmm/lmm.h"
#include "mlmx.h"

/* Most correlated random effects in one term for the product-rule
 * quadrature (K^q nodes per cluster). */
#define MLMX_AGQ_QMAX 3

struct mlmx_nest;

/* The Laplace gradient's buffers (host/glmm/grad.c), sized once. */
struct mlmx_glmm_gw {
    double *rhs, *deta, *hh, *Va, *Cj, *AV;
    size_t *AI;
};

typedef struct mlmx_glmm {
    const mlmx_model *md;
    mlmx_family family;
    mlmx_link link;
    size_t n;
    double *yv;          /* successes / counts */
    double *ntr;         /* binomial trials (1 for 0/1 data) */
    double *pw;          /* prior weights multiplying each log-likelihood term, or NULL */
    const mlmx_backend *be;
    int shared_stats;    /* su and sx belong to someone else (a prepared problem) */
    mlmx_lmm_stats *su;  /* [Z z]: modes with beta fixed (nagq >= 1) */
    mlmx_lmm_work *wu;
    mlmx_lmm_stats *sx;  /* [Z X z]: modes and beta together (nagq = 0) */
    mlmx_lmm_work *wx;
    size_t nu;           /* spherical random effects: first term, then the rest */
    size_t nu1;          /* of which the first term's (nblk * q1) */
    int qmax;
    double *tm;          /* K templates, qmax*qmax each */
    double *u, *unew, *utry;
    double *beta;        /* p: current beta (updated by the nagq = 0 PIRLS) */
    double *betanew, *betatry;
    double *etaf;        /* offset + X beta */
    double *zb;          /* Z Lambda u */
    double *eta, *wt, *wz;
    double *llc;         /* per-observation constant of the log-likelihood
                            (log binomial coefficient, -log y!) */
    double *d1, *fi;     /* d ll / d eta and the information at the last pen_dev point */
    /* Ordinal and negative binomial fits use the observed information
     * (-d2 ll / d eta2) in PIRLS and the Laplace determinant, as ordinal::clmm
     * and glmmTMB do; binomial and Poisson the expected one, as glmer. */
    int ncat;            /* ordinal: categories (observed, in order) */
    char **cat_labels;   /* their labels */
    double *thr;         /* ordinal: ncat - 1 increasing thresholds */
    double *ord_cache;   /* ordinal logit: thresholds last seen, then per category
                            log(1 - e^-(c_y - c_{y-1})) and 1 / (e^(c_y - c_{y-1}) - 1) */
    int int_col;         /* ordinal: X's intercept column, held at 0 (-1: none) */
    double nb_size;      /* negative binomial: the NB2 size (dispersion) */
    struct mlmx_nest *nest; /* nested quadrature's structure, built on first use */
    struct mlmx_glmm_gw *gw; /* the Laplace gradient's buffers, allocated on first use */
    double *bl;          /* Lambda u per level: nu */
    int pirls_iter;      /* iterations of the last PIRLS */
    double pirls_beta_tol; /* relative change that ends the nAGQ = 0 PIRLS (1e-12; looser
                              where it only gives a starting point) */
    long pirls_total;    /* all Laplace PIRLS iterations so far */
} mlmx_glmm;

/* Check the response against the family (MLMX_ERR_DATA naming the row)
 * and build the structures. Allocates; free with mlmx_glmm_free. */
mlmx_status mlmx_glmm_create(const mlmx_model *md, mlmx_family fam, mlmx_link link,
                             const mlmx_backend *be, mlmx_glmm **out, mlmx_error *err);
/* The same on structures built once (mlmx_glmm_build_stats) and shared,
 * read-only, by several GLMM objects (one per thread); they must outlive g. */
mlmx_status mlmx_glmm_create_shared(const mlmx_model *md, mlmx_family fam, mlmx_link link,
                                    const mlmx_backend *be, mlmx_lmm_stats *su,
                                    mlmx_lmm_stats *sx, mlmx_glmm **out, mlmx_error *err);
/* The two structures a GLMM factors: [Z z] (modes with beta fixed) and
 * [Z X z] (nAGQ = 0). Allocates. */
mlmx_status mlmx_glmm_build_stats(const mlmx_model *md, mlmx_lmm_stats **su, mlmx_lmm_stats **sx,
                                  mlmx_error *err);
void mlmx_glmm_free(mlmx_glmm *g);
/* A new response (n values: successes with the model's trials, counts, or
 * ordinal category codes 0..ncat-1), checked against the family
 * (MLMX_ERR_DATA naming the row). Allocates nothing. */
mlmx_status mlmx_glmm_set_response(mlmx_glmm *g, const double *y, mlmx_error *err);

/* Laplace deviance (-2 log-likelihood) at (theta, beta), the conditional
 * modes found by PIRLS from the current g->u (warm start). On return g->u
 * holds the modes and g->wu the factor at them. */
mlmx_status mlmx_glmm_laplace(mlmx_glmm *g, const double *theta, const double *beta,
                              double *dev, mlmx_error *err);

/* lme4's nAGQ = 0 criterion at theta: beta and u together by PIRLS (from
 * the current g->beta, g->u); the deviance with log|L_theta|^2 of the
 * random effects only. Leaves beta in g->beta and the factor in g->wx. */
mlmx_status mlmx_glmm_pirls_beta(mlmx_glmm *g, const double *theta, double *dev,
                                 mlmx_error *err);

/* Adaptive Gauss-Hermite deviance with k points: one scalar random-effect
 * term. Runs the Laplace PIRLS first (for the modes and curvatures). */
mlmx_status mlmx_glmm_agq(mlmx_glmm *g, const double *theta, const double *beta, int k,
                          double *dev, mlmx_error *err);

/* Nested adaptive quadrature with k points per level: scalar terms, each
 * nested in the next (mlmx_glmm_nested_scalar). k = 1 is the Laplace
 * approximation. */
mlmx_status mlmx_glmm_agq_nested(mlmx_glmm *g, const double *theta, const double *beta, int k,
                                 double *dev, mlmx_error *err);
int mlmx_glmm_nested_scalar(const mlmx_glmm *g);
void mlmx_glmm_nest_free(struct mlmx_nest *N);
void mlmx_glmm_gw_free(struct mlmx_glmm_gw *b);

/* The analytic gradient of the Laplace deviance over [theta; beta]
 * (host/glmm/grad.c): for the canonical links (logit, Poisson log) and at
 * most 64 random-effect coordinates per observation (mlmx_glmm_has_grad).
 * Also returns the deviance. */
int mlmx_glmm_has_grad(const mlmx_glmm *g);
mlmx_status mlmx_glmm_laplace_grad(mlmx_glmm *g, const double *theta, const double *beta,
                                   double *dev, double *grad, mlmx_error *err);
/* Adaptive quadrature (one scalar term, or nested scalar terms) with its
 * gradient over [theta; beta; extra] (extra: ordinal thresholds c_k, or the
 * negative binomial size), the rule's centres and scales held fixed. */
mlmx_status mlmx_glmm_agq_grad(mlmx_glmm *g, const double *theta, const double *beta, int k,
                               double *dev, double *grad, mlmx_error *err);
/* Solve M x = b in place with the factor left by mlmx_glmm_laplace. */
void mlmx_glmm_solve(const mlmx_glmm *g, double *b);

/* The link function g(mu) of the fit's link. */
double mlmx_glmm_linkfun(const mlmx_glmm *g, double mu);

/* One observation's log-likelihood at eta, with d ll/d eta and the PIRLS
 * information, times its prior weight (shared by PIRLS and the quadratures). */
double mlmx_glmm_obs(const mlmx_glmm *g, size_t i, double eta, double *d1, double *fi);

/* Per-observation log-likelihood sum at linear predictors eta (n). */
double mlmx_glmm_loglik_eta(const mlmx_glmm *g, const double *eta);
/* The mean and the deviance and Pearson residuals at eta. */
void mlmx_glmm_residuals(const mlmx_glmm *g, const double *eta, double *mu, double *devres,
                         double *pearson);
/* Linear predictor for the spherical modes u at theta (templates from
 * theta) and beta: offset + X beta + Z Lambda u. */
void mlmx_glmm_eta(mlmx_glmm *g, const double *theta, const double *beta, const double *u,
                   double *eta);

#endif
