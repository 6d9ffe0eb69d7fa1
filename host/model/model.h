/* The model: an immutable specification (formula + the data it selected),
 * its response, fixed-effect matrix and random-effect terms. Built once,
 * shared by every estimator. Knows nothing of the fitting algorithms. */
#ifndef MLMX_MODEL_H
#define MLMX_MODEL_H
#include <stddef.h>
#include "data/frame.h"
#include "formula/formula.h"

/* One random-effects term after expansion and ordering (decreasing number
 * of levels, as lme4 orders them). */
typedef struct mlmx_reterm_info {
    char *group;       /* label as lme4 prints it: "Subject", "cask:batch" */
    char *vcname;      /* name in the variance table: the group, or "Subject.1" for a
                          second term on the same factor (lme4's VarCorr) */
    int nlevels;
    char **levels;     /* level labels */
    int *codes;        /* n level codes of the model rows */
    int *level_count;  /* observations per level */
    int q;             /* columns of the term */
    char **colnames;   /* "(Intercept)", "Days" */
    double *z;         /* n*q, row-major: the term's model-matrix row per observation */
    int theta_offset;  /* where the term's q(q+1)/2 theta entries start */
    int formula_index; /* the term's place among the formula's bars (before ordering) */
    int cov;           /* covariance structure: MLMX_COV_US (0, lme4's) or kernels/
                          covstruct.h's MLMX_COV_CS, _AR1, _TOEP */
    int psi_offset;    /* where the term's optimizer parameters start in psi */
    int npsi;          /* and how many: q(q+1)/2 (us), q+1 (cs), 2 (ar1), 2q-1 (toep) */
} mlmx_reterm_info;

/* The recipe: how each variable of the fixed part and of the random-effect
 * terms' left sides was coded when the model was built, so that model-matrix
 * rows can be rebuilt for new data (prediction). One entry per distinct
 * deparsed variable, in the order first met. */
typedef struct mlmx_recipe_var {
    char *name;        /* deparsed variable: "Days", "factor(x)", "I(week > 2)" */
    int is_factor;     /* 1: coded by its levels (contrasts or indicators); 0: numeric */
    int nlevels;
    char **levels;     /* level labels in coding order (factors) */
} mlmx_recipe_var;

typedef struct mlmx_recipe {
    int nvars;
    mlmx_recipe_var *vars;
} mlmx_recipe;

/* One term of the fixed part as R's terms() sees it, for the tests of
 * terms (Type III F tests: host/infer/anova3.c). */
typedef struct mlmx_fixterm {
    char *label;       /* R's term label: "Time:factor(Diet)" */
    int nvars;
    char **vars;       /* its variables, deparsed */
    int *nlevels;      /* levels of each factor variable; 0 for a numeric one */
    int *coded_from;   /* per factor: 1 when coded by contrasts (level 0 the
                          reference, no column), 0 when by indicators */
} mlmx_fixterm;

enum { MLMX_RESP_NUMERIC = 0, MLMX_RESP_FACTOR = 1, MLMX_RESP_CBIND = 2 };

typedef struct mlmx_model {
    char *formula;
    char *source;
    size_t n;          /* observations used */
    size_t n_dropped;  /* rows dropped for missing values */
    size_t *rows;      /* n: row index in the data set of each observation */
    double *y;         /* n: the response; for a factor response its 0-based level
                          codes, for cbind(s, f) the successes s */
    int resp_kind;     /* MLMX_RESP_NUMERIC, MLMX_RESP_FACTOR or MLMX_RESP_CBIND */
    char **resp_levels;/* factor response: level labels (nresp_levels) */
    int nresp_levels;
    double *ntrials;   /* cbind(s, f): s + f per observation; NULL otherwise */
    double *offset;    /* offset(...) per observation; NULL when the formula has none */
    double *weights;   /* prior weights per observation; NULL when none were given */
    int p;             /* fixed-effect columns kept */
    double *X;         /* n*p column-major */
    char **fixef_names;
    int nfixterms;     /* terms of the fixed part (not the intercept), R's order */
    mlmx_fixterm *fixterms;
    int **fixef_cell;  /* p: [0] the column's term (-1: the intercept), [1 + a]
                          the level of the term's variable a (-1: numeric) */
    char **dropped_fixef; /* names of rank-deficient columns dropped */
    int n_dropped_fixef;
    char *response_name;
    int K;             /* random-effect terms */
    mlmx_reterm_info *re;
    int ntheta;
    double *theta_lower; /* 0 for diagonal entries, -HUGE_VAL otherwise */
    char **theta_names;  /* lme4 style "Subject.(Intercept)", "Subject.Days.(Intercept)" */
    /* The optimizer's covariance parameters psi (host/model/covstruct.c):
     * theta itself (psi = theta) unless a term has a structured covariance;
     * theta is always T's entries, computed from psi. nstructured is 0 and
     * the psi arrays NULL for models built without mlmx_model_build. */
    int nstructured;     /* terms with a structure (cov != MLMX_COV_US) */
    int npsi;
    double *psi_lower, *psi_upper, *psi_start;
    char **psi_names;    /* "Subject.sd", "Subject.rho" (us entries: theta's names) */
    char **messages;   /* informational notes (rows dropped, columns dropped) */
    int nmessages;
    mlmx_recipe recipe;/* how X's and the terms' variables were coded */
    struct mlmx_resid *resid; /* residual structure (host/resid), NULL: iid */
} mlmx_model;

/* Build a model from a formula and data. The response is numeric, a
 * factor (codes in y, for a binomial or ordinal GLMM) or cbind(s, f);
 * rows with a missing value in any model variable are dropped (noted in
 * messages). Allocates; free with mlmx_model_destroy. */
mlmx_status mlmx_model_build(const mlmx_data *d, const char *formula, const char *weights,
                             mlmx_model **out,
                             mlmx_error *err);
void mlmx_model_destroy(mlmx_model *m);
/* Append msg (allocated; owned by m from here, freed on failure) to the
 * model's notes. */
mlmx_status mlmx_model_add_message(mlmx_model *m, char *msg, mlmx_error *err);

/* The empty model y ~ 1 + (1 | g) of m's response on its rows, g term k's
 * grouping factor (host/model/empty.c): for a numeric response without
 * weights or offset (MLMX_ERR_UNSUPPORTED otherwise). Allocates; free with
 * mlmx_model_destroy. */
mlmx_status mlmx_model_empty(const mlmx_model *m, int k, mlmx_model **out, mlmx_error *err);

/* Covariance structures (host/model/covstruct.c). */
/* The structures' parameters psi: per term its kind (from the formula's
 * cs(), ar1(), toep()), offsets, bounds, start values and names. Errors:
 * MLMX_ERR_MODEL for a structure on a term with one column. */
mlmx_status mlmx_model_psi_layout(mlmx_model *m, const mlmx_formula *f, mlmx_error *err);
/* Covariance parameters the optimizer sees: npsi when a term is
 * structured, ntheta otherwise. */
int mlmx_model_ncov(const mlmx_model *m);
/* theta from psi (ntheta from npsi). Returns 0, or -1 where a structure's
 * correlation matrix is not positive semi-definite. Allocates nothing. */
int mlmx_model_psi_to_theta(const mlmx_model *m, const double *psi, double *theta);
/* psi from theta (T's entries), for parameters given as covariances (a
 * power scenario's SDs and correlations): MLMX_ERR_ARG naming the term
 * when a structured term's covariance is not of its structure (to 1e-8
 * relative). */
mlmx_status mlmx_model_theta_to_psi(const mlmx_model *m, const double *theta, double *psi,
                                    mlmx_error *err);
/* gpsi = J^T gtheta, the gradient over psi from that over theta (chain
 * rule, J = d theta / d psi). Returns 0, or -1 where a structure's J is
 * not defined (a correlation at its bound). */
int mlmx_model_grad_psi(const mlmx_model *m, const double *psi, const double *gtheta,
                        double *gpsi);
/* Term k's correlations from psi: the common correlation (cs), rho (ar1)
 * or the lag correlations rho_1..rho_q-1 (toep) into rho (q - 1 at most);
 * returns how many (0 for an unstructured term). */
int mlmx_model_term_rho(const mlmx_model *m, int k, const double *psi, double *rho);
/* The structure's name ("us", "cs", "ar1", "toep"). */
const char *mlmx_cov_kind_name(int kind);
/* MLMX_ERR_UNSUPPORTED naming the first structured term and `feature`
 * when m has one; MLMX_OK otherwise. */
mlmx_status mlmx_model_require_unstructured(const mlmx_model *m, const char *feature,
                                            mlmx_error *err);

/* Recipes (host/model/recipe.c). */
void mlmx_recipe_clear(mlmx_recipe *rc);
/* Add variable `name` (copied with its levels) unless it is there already. */
mlmx_status mlmx_recipe_record(mlmx_recipe *rc, const char *name, int is_factor,
                               char *const *levels, int nlevels, mlmx_error *err);
/* Recode an evaluated variable of new data by the recipe: its type must be
 * the recorded one (MLMX_ERR_DATA naming the variable otherwise), and each
 * factor code is mapped to the recorded level of the same label; a label the
 * recipe lacks is MLMX_ERR_DATA naming the variable, the data row (rows[i] +
 * 1) and the level. *levels is replaced by a copy of the recorded levels. */
mlmx_status mlmx_recipe_apply(const mlmx_recipe *rc, const char *name, int is_factor,
                              char ***levels, int *nlevels, int *codes, const size_t *rows,
                              size_t n, mlmx_error *err);

/* The model-matrix columns `names` (ncol of them, as the model named them) of
 * the term list tl for every row of new data d, coded by the recipe rc:
 * out receives nrow * ncol values, column-major. A missing value in a
 * variable gives NaN in the columns it enters. Errors: the variables' (an
 * unknown column, a type or level the recipe lacks); MLMX_ERR_MODEL when a
 * named column is not built (a model file that does not match its formula). */
mlmx_status mlmx_model_columns_for(const mlmx_termlist *tl, const mlmx_data *d,
                                   const mlmx_recipe *rc, char *const *names, int ncol,
                                   double *out, mlmx_error *err);

#endif
