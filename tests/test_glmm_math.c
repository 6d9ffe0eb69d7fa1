/* The per-observation GLMM family math (kernels/glmm_math.h) and the
 * Gauss-Hermite rule (host/glmm/ghq.c).
 *
 * Expected constants come from R 4.2.2 (the command that printed each is in
 * the comment beside it; printed with sprintf("%.17g", ...)) or, for the
 * quadrature, from closed forms, statmod::gauss.quad.prob and 60-digit
 * mpmath computations (python3 with mpmath 1.3.0; the script is quoted).
 * Derivatives are checked against Richardson-extrapolated central finite
 * differences of ll (and of d1), expected information against its closed
 * form and against E[d2] under the model.
 *
 * Tolerances: |got - want| <= rel |want| + abs, stated at each check. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "glmm/ghq.h"
#include "glmm_math.h"

static int near(double got, double want, double rel, double abs_tol)
{
    if (got == want) /* also equal infinities */
        return 1;
    return fabs(got - want) <= rel * fabs(want) + abs_tol;
}

#define NLINK 4
static const char *const link_name[NLINK] = {"logit", "probit", "cloglog", "log"};

/* ------------------------------------------------------------------ a family case */

typedef struct fcase {
    int fam, link;
    double y, n; /* binomial: y of n; negbin: n is the size */
    double wt;
    int K;            /* ordinal */
    const double *c;  /* ordinal thresholds */
} fcase;

static mlmx_gm_obs eval_case(const fcase *f, double eta)
{
    switch (f->fam) {
    case MLMX_FAM_BINOMIAL:
        return mlmx_gm_binomial(f->link, f->y, f->n, f->wt, eta);
    case MLMX_FAM_POISSON:
        return mlmx_gm_poisson(f->y, f->wt, eta);
    case MLMX_FAM_NEGBIN:
        return mlmx_gm_negbin(f->y, f->n, f->wt, eta);
    default:
        return mlmx_gm_ordinal(f->link, (int)f->y, f->K, f->c, f->wt, eta);
    }
}

static double ll_at(const fcase *f, double eta) { return eval_case(f, eta).ll; }
static double d1_at(const fcase *f, double eta) { return eval_case(f, eta).d1; }

/* Central differences with one Richardson step: error O(h^4). */
static double fd_first(double (*g)(const fcase *, double), const fcase *f, double x, double h)
{
    double dh = (g(f, x + h) - g(f, x - h)) / (2.0 * h);
    double dh2 = (g(f, x + 0.5 * h) - g(f, x - 0.5 * h)) / h;
    return (4.0 * dh2 - dh) / 3.0;
}

static double fd_second(double (*g)(const fcase *, double), const fcase *f, double x, double h)
{
    double g0 = g(f, x);
    double dh = (g(f, x + h) - 2.0 * g0 + g(f, x - h)) / (h * h);
    double hh = 0.5 * h;
    double dh2 = (g(f, x + hh) - 2.0 * g0 + g(f, x - hh)) / (hh * hh);
    return (4.0 * dh2 - dh) / 3.0;
}

/* d1 vs FD(ll) and d2 vs -FD2(ll), rel 1e-6 (abs 1e-8: values crossing 0);
 * d2 vs -FD(d1), rel 1e-6 (abs 1e-10). Steps 1e-3 (first) and 2e-2
 * (second difference), shrunk near the binomial log link's pole at 0. */
static void check_derivs(const fcase *f, double eta, const char *what)
{
    mlmx_gm_obs o = eval_case(f, eta);
    cr_expect(isfinite(o.ll) && isfinite(o.d1) && isfinite(o.d2) && isfinite(o.fi),
              "%s eta=%g: non-finite result", what, eta);
    double sc = f->fam == MLMX_FAM_BINOMIAL && f->link == MLMX_LINK_LOG ? fmin(1.0, -eta) : 1.0;
    double g1 = fd_first(ll_at, f, eta, 1e-3 * sc);
    double g2 = -fd_second(ll_at, f, eta, 2e-2 * sc);
    double g2b = -fd_first(d1_at, f, eta, 1e-3 * sc);
    cr_expect(near(o.d1, g1, 1e-6, 1e-8), "%s eta=%g: d1 %.15g vs FD %.15g", what, eta, o.d1, g1);
    cr_expect(near(o.d2, g2, 1e-6, 1e-8), "%s eta=%g: d2 %.15g vs FD2 %.15g", what, eta, o.d2, g2);
    cr_expect(near(o.d2, g2b, 1e-6, 1e-10), "%s eta=%g: d2 %.15g vs FD(d1) %.15g", what, eta,
              o.d2, g2b);
}

/* ------------------------------------------------------------------ links */

/* eta <- c(-40,-31,-29.5,-8.5,-3,-0.5,0,0.7,2,8.5,29.5,31,40) */
static const double link_eta[13] = {-40, -31, -29.5, -8.5, -3, -0.5, 0, 0.7, 2, 8.5, 29.5, 31, 40};

/* Rscript -e 'eta <- c(-40,-31,-29.5,-8.5,-3,-0.5,0,0.7,2,8.5,29.5,31,40);
 *   for (l in c("logit","probit","cloglog","log"))
 *     cat(sprintf("%.17g", make.link(l)$linkinv(eta)), sep=", ")' */
static const double r_linkinv[NLINK][13] = {
    {2.2204460492503126e-16, 2.2204460492503126e-16, 1.5428112031916497e-13,
     0.0002034269780552065, 0.047425873177566788, 0.37754066879814546, 0.5,
     0.66818777216816616, 0.88079707797788243, 0.9997965730219448, 0.99999999999984568,
     0.99999999999999978, 0.99999999999999978},
    {2.2204460492503284e-16, 2.2204460492503284e-16, 2.2204460492503284e-16,
     2.2204460492503284e-16, 0.0013498980316300946, 0.30853753872598694, 0.5,
     0.75803634777692697, 0.97724986805182079, 0.99999999999999978, 0.99999999999999978,
     0.99999999999999978, 0.99999999999999978},
    {2.2204460492503131e-16, 3.4424771084699174e-14, 1.5428112031917688e-13,
     0.00020344767072588945, 0.048568007099546597, 0.45476078810739495, 0.63212055882855767,
     0.86651320334191617, 0.99938202101066886, 0.99999999999999978, 0.99999999999999978,
     0.99999999999999978, 0.99999999999999978},
    {2.2204460492503131e-16, 3.4424771084699768e-14, 1.5428112031918877e-13,
     0.00020346836901064417, 0.049787068367863944, 0.60653065971263342, 1, 2.0137527074704766,
     7.3890560989306504, 4914.7688402991344, 6481674477934.3203, 29048849665247.426,
     2.3538526683702e+17}};

/* the same with make.link(l)$mu.eta(eta) */
static const double r_mu_eta[NLINK][13] = {
    {2.2204460492503131e-16, 2.2204460492503131e-16, 1.5428112031914116e-13,
     0.00020338559551980582, 0.045176659730912144, 0.23500371220159449, 0.25,
     0.22171287329310907, 0.10499358540350652, 0.00020338559551980585, 1.5428112031914119e-13,
     2.2204460492503131e-16, 2.2204460492503131e-16},
    {2.2204460492503131e-16, 2.2204460492503131e-16, 2.2204460492503131e-16,
     2.2204460492503131e-16, 0.0044318484119380075, 0.35206532676429952, 0.3989422804014327,
     0.31225393336676127, 0.053990966513188063, 2.2204460492503131e-16, 2.2204460492503131e-16,
     2.2204460492503131e-16, 2.2204460492503131e-16},
    {2.2204460492503131e-16, 3.4424771084698581e-14, 1.5428112031916497e-13,
     0.00020342697384490255, 0.047369009677907921, 0.33070429889041808, 0.36787944117144233,
     0.26880939818177735, 0.0045662814201279153, 2.2204460492503131e-16, 2.2204460492503131e-16,
     2.2204460492503131e-16, 2.2204460492503131e-16},
    {2.2204460492503131e-16, 3.4424771084699768e-14, 1.5428112031918877e-13,
     0.00020346836901064417, 0.049787068367863944, 0.60653065971263342, 1, 2.0137527074704766,
     7.3890560989306504, 4914.7688402991344, 6481674477934.3203, 29048849665247.426,
     2.3538526683702e+17}};

Test(glmm_math, linkinv_and_mu_eta_match_r_including_the_clamps)
{
    /* rel 1e-14: the clamps and formulas mirror R's operation by operation;
     * the probit goes through erfc where R has Cody's pnorm (last bits). */
    for (int l = 0; l < NLINK; l++)
        for (int i = 0; i < 13; i++) {
            double mu = mlmx_gm_linkinv(l, link_eta[i]);
            double me = mlmx_gm_mu_eta(l, link_eta[i]);
            cr_expect(near(mu, r_linkinv[l][i], 1e-14, 0), "%s linkinv(%g) %.17g vs R %.17g",
                      link_name[l], link_eta[i], mu, r_linkinv[l][i]);
            cr_expect(near(me, r_mu_eta[l][i], 1e-14, 0), "%s mu_eta(%g) %.17g vs R %.17g",
                      link_name[l], link_eta[i], me, r_mu_eta[l][i]);
        }
}

Test(glmm_math, linkfun_matches_r)
{
    /* Rscript -e 'mu <- c(1e-12, 0.001, 0.2, 0.5, 0.73, 0.999);
     *   for (l in c("logit","probit","cloglog")) cat(sprintf("%.17g", make.link(l)$linkfun(mu)), sep=", ")' */
    static const double mu[6] = {1e-12, 0.001, 0.2, 0.5, 0.73, 0.999};
    static const double want[3][6] = {
        {-27.631021115927549, -6.9067547786485539, -1.3862943611198906, 0, 0.99462257514406194,
         6.906754778648553},
        {-7.0344838253011321, -3.0902323061678132, -0.84162123357291418, 0, 0.61281299101662701,
         3.0902323061678132},
        /* R's log(-log(1 - mu)) loses mu = 1e-12 to the rounding of 1 - mu
         * (-27.631043...); ours uses log1p, so that entry is
         * Rscript -e 'sprintf("%.17g", log(-log1p(-1e-12)))' */
        {-27.63102111592805, -6.9072550705237159, -1.4999399867595158, -0.36651292058166435,
         0.26951809162840878, 1.9326447339160653}};
    for (int l = 0; l < 3; l++)
        for (int i = 0; i < 6; i++) {
            double e = mlmx_gm_linkfun(l, mu[i]);
            /* rel 1e-13, abs 1e-15 for the 0 at mu = 0.5 */
            cr_expect(near(e, want[l][i], 1e-13, 1e-15), "%s linkfun(%g) %.17g vs R %.17g",
                      link_name[l], mu[i], e, want[l][i]);
        }
    /* Rscript -e 'cat(sprintf("%.17g", log(c(1e-12, 0.2, 3, 1e5))), sep=", ")' */
    static const double lmu[4] = {1e-12, 0.2, 3, 1e5};
    static const double lwant[4] = {-27.631021115928547, -1.6094379124341003, 1.0986122886681098,
                                    11.512925464970229};
    for (int i = 0; i < 4; i++)
        cr_expect(near(mlmx_gm_linkfun(MLMX_LINK_LOG, lmu[i]), lwant[i], 1e-15, 0));
}

Test(glmm_math, linkfun_inverts_linkinv)
{
    /* Away from the clamps g(g^{-1}(eta)) = eta: rel 1e-12 (abs 1e-13 at 0);
     * the probit quantile (AS 241) is checked over both of its outer
     * branches this way too. The cloglog stops at 1.5: beyond, mu is so
     * close to 1 that its own rounding moves eta by more than 1e-12. */
    for (int l = 0; l < NLINK; l++)
        for (double eta = -7.5; eta <= (l == MLMX_LINK_CLOGLOG ? 1.5 : 3.0); eta += 0.25) {
            double back = mlmx_gm_linkfun(l, mlmx_gm_linkinv(l, eta));
            cr_expect(near(back, eta, 1e-12, 1e-13), "%s eta=%g back %.17g", link_name[l], eta,
                      back);
        }
    /* Rscript -e 'cat(sprintf("%.17g", qnorm(c(1e-300, 1e-20, 0.02, 0.5, 0.93, 1-1e-10))), sep=", ")' */
    static const double p[6] = {1e-300, 1e-20, 0.02, 0.5, 0.93, 1 - 1e-10};
    static const double q[6] = {-37.047096299361201, -9.2623400897984052, -2.0537489106318225, 0,
                                1.4757910281791708, 6.3613408896974208};
    for (int i = 0; i < 6; i++)
        cr_expect(near(mlmx_gm_qnorm(p[i]), q[i], 1e-14, 0), "qnorm(%g) %.17g vs %.17g", p[i],
                  mlmx_gm_qnorm(p[i]), q[i]);
    cr_expect(isinf(mlmx_gm_qnorm(0.0)) && mlmx_gm_qnorm(0.0) < 0);
    cr_expect(isinf(mlmx_gm_qnorm(1.0)) && mlmx_gm_qnorm(1.0) > 0);
    cr_expect(isnan(mlmx_gm_qnorm(-0.1)) && isnan(mlmx_gm_qnorm(1.5)));
}

/* ------------------------------------------------------------------ log Phi */

Test(glmm_math, log_pnorm_matches_r_down_to_the_far_tail)
{
    /* Rscript -e 'x <- c(-1000,-100,-40,-36,-35.5,-35,-30,-8,-1,0,0.5,3,9,40);
     *   cat(sprintf("%.17g", pnorm(x, log.p=TRUE)), sep=", ")'
     * rel 1e-13 across the erfc / asymptotic-series switch at -35. */
    static const double x[14] = {-1000, -100, -40, -36, -35.5, -35, -30, -8, -1, 0, 0.5, 3, 9, 40};
    static const double want[14] = {-500007.82669481216, -5005.5242086942053, -804.6084420137538,
                                    -652.50322759379844, -634.61426315508834, -616.97510126192253,
                                    -454.32124395634321, -35.013437159914552, -1.8410216450092636,
                                    -0.69314718055994529, -0.36894641528865652,
                                    -0.0013508099647481938, -1.1285884059538408e-19, -0.0};
    for (int i = 0; i < 14; i++) {
        double v = mlmx_gm_log_pnorm(x[i]);
        cr_expect(near(v, want[i], 1e-13, 1e-300), "log Phi(%g) %.17g vs R %.17g", x[i], v,
                  want[i]);
    }
    /* continuity at the switch: both forms at -35 agree to rel 1e-14 */
    double r = 1.0 / (35.0 * 35.0), term = 1.0, s = 0.0;
    for (int k = 1; k <= 12; k++) {
        term *= -(2.0 * k - 1.0) * r;
        s += term;
    }
    double series = mlmx_gm_log_dnorm(-35.0) - log(35.0) + log1p(s);
    cr_expect(near(series, mlmx_gm_log_pnorm(-35.0), 1e-14, 0), "series %.17g erfc %.17g", series,
              mlmx_gm_log_pnorm(-35.0));
}

/* ------------------------------------------------------------------ binomial */

/* y <- c(3,0,1,7,12,5); n <- c(10,1,1,7,20,9); eta <- c(0.3,-2,1.5,2.2,-0.4,-1.3)
 * (the log link, which needs mu < 1: etalog <- c(-1.2,-2,-0.3,-0.05,-0.4,-1.3)) */
static const double bin_y[6] = {3, 0, 1, 7, 12, 5}, bin_n[6] = {10, 1, 1, 7, 20, 9};
static const double bin_eta[6] = {0.3, -2, 1.5, 2.2, -0.4, -1.3};
static const double bin_etalog[6] = {-1.2, -2, -0.3, -0.05, -0.4, -1.3};

Test(glmm_math, binomial_loglik_matches_dbinom)
{
    /* Rscript -e 'cat(sprintf("%.17g", dbinom(y, n, plogis(eta), log=TRUE)), sep=", ")'
     * then pnorm(eta), -expm1(-exp(eta)) and exp(etalog) for the other links.
     * rel 1e-12 (R's dbinom uses the saddle-point form, we lgamma). */
    static const double want[NLINK][6] = {
        {-2.8560607019032256, -0.12692801104297252, -0.20141327798275241, -0.73558323838087181,
         -3.3165059856527046, -3.8327941775454519},
        {-3.3914584691653533, -0.023012909328963493, -0.069143455612234006, -0.098007040315691948,
         -4.4212204897507803, -7.2464816970313537},
        {-5.5619049957113091, -0.13533528323661267, -0.01137877984508325,
         -0.00084257897035586898, -2.2168523858148292, -3.4197106517349072},
        {-1.3211851822409917, -0.14541345786885906, -0.29999999999999999, -0.34999999999999998,
         -1.9332643903650764, -2.9364580236741435}};
    for (int l = 0; l < NLINK; l++)
        for (int i = 0; i < 6; i++) {
            double eta = l == MLMX_LINK_LOG ? bin_etalog[i] : bin_eta[i];
            mlmx_gm_obs o = mlmx_gm_binomial(l, bin_y[i], bin_n[i], 1.0, eta);
            cr_expect(near(o.ll, want[l][i], 1e-12, 0), "%s y=%g n=%g eta=%g: ll %.17g vs R %.17g",
                      link_name[l], bin_y[i], bin_n[i], eta, o.ll, want[l][i]);
            /* the prior weight multiplies everything */
            mlmx_gm_obs w = mlmx_gm_binomial(l, bin_y[i], bin_n[i], 2.5, eta);
            cr_expect(near(w.ll, 2.5 * o.ll, 1e-15, 0) && near(w.d1, 2.5 * o.d1, 1e-15, 0) &&
                      near(w.d2, 2.5 * o.d2, 1e-15, 0) && near(w.fi, 2.5 * o.fi, 1e-15, 0));
            /* mu is R's (clamped) linkinv */
            cr_expect(o.mu == mlmx_gm_linkinv(l, eta));
        }
}

/* Unclamped mean mu, 1 - mu (each from its own side, no cancellation) and
 * d mu/d eta, written the plain way, for the closed-form Fisher
 * information n mu'^2 / (mu (1 - mu)). */
static void plain_mu(int link, double eta, double *mu, double *omu, double *me)
{
    switch (link) {
    case MLMX_LINK_LOGIT:
        *mu = 1.0 / (1.0 + exp(-eta));
        *omu = 1.0 / (1.0 + exp(eta));
        *me = *mu * *omu;
        break;
    case MLMX_LINK_PROBIT:
        *mu = 0.5 * erfc(-eta / sqrt(2.0));
        *omu = 0.5 * erfc(eta / sqrt(2.0));
        *me = exp(-0.5 * eta * eta) / sqrt(2.0 * 3.14159265358979323846);
        break;
    case MLMX_LINK_CLOGLOG:
        *mu = -expm1(-exp(eta));
        *omu = exp(-exp(eta));
        *me = exp(eta - exp(eta));
        break;
    default:
        *mu = exp(eta);
        *omu = -expm1(eta);
        *me = *mu;
        break;
    }
}

Test(glmm_math, binomial_derivatives_and_information)
{
    static const double ys[4] = {0, 1, 3, 10}, ns[4] = {1, 1, 10, 10};
    static const double etas[7] = {-4.5, -2.2, -0.7, 0.0, 0.9, 2.6, 5.0};
    static const double etas_log[6] = {-4.5, -2.2, -0.7, -0.2, -0.08, -0.05};
    char what[96];
    for (int l = 0; l < NLINK; l++) {
        const double *eg = l == MLMX_LINK_LOG ? etas_log : etas;
        int ne = l == MLMX_LINK_LOG ? 6 : 7;
        for (int c = 0; c < 4; c++)
            for (int e = 0; e < ne; e++) {
                fcase f = {MLMX_FAM_BINOMIAL, l, ys[c], ns[c], 1.7, 0, NULL};
                snprintf(what, sizeof what, "binomial %s y=%g n=%g", link_name[l], ys[c], ns[c]);
                check_derivs(&f, eg[e], what);
                /* fi = wt n mu'^2/(mu(1-mu)): rel 1e-12 */
                double mu, omu, me;
                plain_mu(l, eg[e], &mu, &omu, &me);
                double fi = 1.7 * ns[c] * me * me / (mu * omu);
                mlmx_gm_obs o = eval_case(&f, eg[e]);
                cr_expect(near(o.fi, fi, 1e-12, 0), "%s eta=%g: fi %.17g vs %.17g", what, eg[e],
                          o.fi, fi);
            }
        /* E[d1] = 0 and E[d2] = fi under y ~ Bin(10, mu) (the probabilities
         * exp(ll) are themselves checked against dbinom above): rel 1e-11. */
        for (int e = 0; e < ne; e++) {
            double s1 = 0, s2 = 0, sp = 0;
            for (int y = 0; y <= 10; y++) {
                mlmx_gm_obs o = mlmx_gm_binomial(l, y, 10, 1.0, eg[e]);
                double p = exp(o.ll);
                sp += p;
                s1 += p * o.d1;
                s2 += p * o.d2;
            }
            double fi = mlmx_gm_binomial(l, 0, 10, 1.0, eg[e]).fi;
            cr_expect(near(sp, 1.0, 1e-13, 0), "%s eta=%g: sum of probabilities %.17g",
                      link_name[l], eg[e], sp);
            cr_expect(fabs(s1) <= 1e-11 * (1.0 + fi), "%s eta=%g: E d1 = %g", link_name[l], eg[e],
                      s1);
            cr_expect(near(s2, fi, 1e-11, 1e-300), "%s eta=%g: E d2 %.17g vs fi %.17g",
                      link_name[l], eg[e], s2, fi);
        }
    }
}

Test(glmm_math, binomial_tails_stay_finite_and_exact)
{
    /* 0/1 data at eta = -40, -30, 30, 40: ll is log F(eta) for y = 1 and
     * log F(-eta) for y = 0, to rel 1e-10 (abs 1e-300 for R's -0 where the
     * value underflows):
     * Rscript -e 'te <- c(-40,-30,30,40); cat(sprintf("%.17g", plogis(te, log.p=TRUE)), sep=", ")'
     * and plogis(-te, log.p=TRUE); pnorm(te, log.p=TRUE), pnorm(-te, log.p=TRUE);
     * cloglog: log(-expm1(-exp(te))) and -exp(te). */
    static const double te[4] = {-40, -30, 30, 40};
    static const double want1[3][4] = {
        {-40, -30.000000000000092, -9.3576229688397368e-14, -4.2483542552915889e-18},
        {-804.6084420137538, -454.32124395634321, -4.9067139271481872e-198, -0.0},
        {-40, -30.000000000000046, 0, 0}};
    static const double want0[3][4] = {
        {-4.2483542552915889e-18, -9.3576229688397368e-14, -30.000000000000092, -40},
        {-0.0, -4.9067139271481872e-198, -454.32124395634321, -804.6084420137538},
        {-4.2483542552915889e-18, -9.3576229688401748e-14, -10686474581524.463,
         -2.3538526683702e+17}};
    for (int l = 0; l < 3; l++)
        for (int i = 0; i < 4; i++) {
            mlmx_gm_obs o1 = mlmx_gm_binomial(l, 1, 1, 1.0, te[i]);
            mlmx_gm_obs o0 = mlmx_gm_binomial(l, 0, 1, 1.0, te[i]);
            cr_expect(near(o1.ll, want1[l][i], 1e-10, 1e-300), "%s y=1 eta=%g: ll %.17g vs R %.17g",
                      link_name[l], te[i], o1.ll, want1[l][i]);
            cr_expect(near(o0.ll, want0[l][i], 1e-10, 1e-300), "%s y=0 eta=%g: ll %.17g vs R %.17g",
                      link_name[l], te[i], o0.ll, want0[l][i]);
            cr_expect(isfinite(o1.d1) && isfinite(o1.d2) && isfinite(o1.fi) && isfinite(o0.d1) &&
                          isfinite(o0.d2) && isfinite(o0.fi),
                      "%s eta=%g: non-finite derivative", link_name[l], te[i]);
            /* the score points toward the data, the information is >= 0 */
            cr_expect(o1.d1 >= 0 && o0.d1 <= 0 && o1.fi >= 0 && o0.d2 >= 0 && o1.d2 >= 0,
                      "%s eta=%g: signs", link_name[l], te[i]);
        }
    /* The score where the observation is unlikely, against R:
     * logit y=1 at -40: 1 - plogis(-40) = 1 - 4.2e-18 -> 1; y=0 at 40: -1.
     * probit y=1 at -40: the Mills ratio
     * Rscript -e 'sprintf("%.17g", exp(dnorm(-40, log=TRUE) - pnorm(-40, log.p=TRUE)))'
     * cloglog y=0 at 40: -exp(40). rel 1e-10. */
    cr_expect(near(mlmx_gm_binomial(MLMX_LINK_LOGIT, 1, 1, 1, -40).d1, 1.0, 1e-15, 0));
    cr_expect(near(mlmx_gm_binomial(MLMX_LINK_LOGIT, 0, 1, 1, 40).d1, -1.0, 1e-15, 0));
    double mills = 40.024968847206338;
    cr_expect(near(mlmx_gm_binomial(MLMX_LINK_PROBIT, 1, 1, 1, -40).d1, mills, 1e-10, 0),
              "probit d1 %.17g", mlmx_gm_binomial(MLMX_LINK_PROBIT, 1, 1, 1, -40).d1);
    cr_expect(near(mlmx_gm_binomial(MLMX_LINK_PROBIT, 0, 1, 1, 40).d1, -mills, 1e-10, 0));
    cr_expect(near(mlmx_gm_binomial(MLMX_LINK_CLOGLOG, 0, 1, 1, 40).d1, -2.3538526683702e+17,
                   1e-14, 0));
    /* d2 in the tails against FD of d1 (the second difference of ll would
     * drown in rounding there): rel 1e-6 */
    for (int l = 0; l < 3; l++)
        for (int i = 0; i < 4; i++)
            for (int y = 0; y <= 1; y++) {
                fcase f = {MLMX_FAM_BINOMIAL, l, y, 1, 1.0, 0, NULL};
                double d2 = eval_case(&f, te[i]).d2;
                double g = -fd_first(d1_at, &f, te[i], 1e-3);
                cr_expect(near(d2, g, 1e-6, 1e-12), "%s y=%d eta=%g: d2 %.17g vs FD(d1) %.17g",
                          link_name[l], y, te[i], d2, g);
            }
    /* no clamping artifact: ll keeps moving past |eta| = 30 where R's mu
     * is flat (logit y=1: ll(-31) - ll(-30) ~ -1) */
    double step = mlmx_gm_binomial(MLMX_LINK_LOGIT, 1, 1, 1, -31).ll -
                  mlmx_gm_binomial(MLMX_LINK_LOGIT, 1, 1, 1, -30).ll;
    cr_expect(near(step, -1.0, 1e-12, 0), "step %.17g", step);
}

/* ------------------------------------------------------------------ counts */

Test(glmm_math, poisson_matches_dpois_and_its_derivatives)
{
    /* Rscript -e 'cat(sprintf("%.17g", dpois(c(0,3,17,1,250), exp(c(0.5,1.2,2.9,-3,5.5)), log=TRUE)), sep=", ")'
     * rel 1e-12 */
    static const double y[5] = {0, 3, 17, 1, 250}, eta[5] = {0.5, 1.2, 2.9, -3, 5.5};
    static const double want[5] = {-1.6487212707001282, -1.5118763919646023, -2.3792188195799513,
                                   -3.0497870683678636, -3.7371640550733431};
    for (int i = 0; i < 5; i++) {
        mlmx_gm_obs o = mlmx_gm_poisson(y[i], 1.0, eta[i]);
        cr_expect(near(o.ll, want[i], 1e-12, 0), "y=%g eta=%g: ll %.17g vs R %.17g", y[i], eta[i],
                  o.ll, want[i]);
        cr_expect(o.mu == mlmx_gm_linkinv(MLMX_LINK_LOG, eta[i]));
    }
    static const double etas[7] = {-4.5, -2.2, -0.7, 0.0, 0.9, 2.6, 5.0};
    static const double ys[3] = {0, 3, 17};
    char what[64];
    for (int c = 0; c < 3; c++)
        for (int e = 0; e < 7; e++) {
            fcase f = {MLMX_FAM_POISSON, MLMX_LINK_LOG, ys[c], 0, 0.8, 0, NULL};
            snprintf(what, sizeof what, "poisson y=%g", ys[c]);
            check_derivs(&f, etas[e], what);
            /* fi = wt mu: rel 1e-15 */
            cr_expect(near(eval_case(&f, etas[e]).fi, 0.8 * exp(etas[e]), 1e-15, 0));
        }
    /* eta = -40 and 40: finite */
    mlmx_gm_obs lo = mlmx_gm_poisson(2, 1, -40), hi = mlmx_gm_poisson(0, 1, 40);
    cr_expect(isfinite(lo.ll) && isfinite(hi.ll) && near(hi.ll, -exp(40.0), 1e-15, 0));
    cr_expect(near(lo.ll, -80.0 - exp(-40.0) - log(2.0), 1e-15, 0));
}

Test(glmm_math, negbin_matches_dnbinom_and_its_derivatives)
{
    /* Rscript -e 'cat(sprintf("%.17g", dnbinom(c(0,2,9,40,1), size=c(0.7,3.2,50,1.5,0.3),
     *   mu=exp(c(0.5,1.2,2.0,3.0,-2)), log=TRUE)), sep=", ")'   rel 1e-12 */
    static const double y[5] = {0, 2, 9, 40, 1}, size[5] = {0.7, 3.2, 50, 1.5, 0.3};
    static const double eta[5] = {0.5, 1.2, 2.0, 3.0, -2};
    static const double want[5] = {-0.84738218870846049, -1.7222692593934348, -2.2514936036347346,
                                   -4.9062581681624424, -2.4840342332878587};
    for (int i = 0; i < 5; i++) {
        mlmx_gm_obs o = mlmx_gm_negbin(y[i], size[i], 1.0, eta[i]);
        cr_expect(near(o.ll, want[i], 1e-12, 0), "y=%g size=%g eta=%g: ll %.17g vs R %.17g", y[i],
                  size[i], eta[i], o.ll, want[i]);
    }
    static const double etas[7] = {-4.5, -2.2, -0.7, 0.0, 0.9, 2.6, 5.0};
    char what[64];
    for (int i = 0; i < 5; i++)
        for (int e = 0; e < 7; e++) {
            fcase f = {MLMX_FAM_NEGBIN, MLMX_LINK_LOG, y[i], size[i], 1.3, 0, NULL};
            snprintf(what, sizeof what, "negbin y=%g size=%g", y[i], size[i]);
            check_derivs(&f, etas[e], what);
            /* fi = wt mu^2/(mu + mu^2/size): rel 1e-13 */
            double mu = exp(etas[e]);
            double fi = 1.3 * mu * mu / (mu + mu * mu / size[i]);
            cr_expect(near(eval_case(&f, etas[e]).fi, fi, 1e-13, 0), "%s eta=%g: fi", what,
                      etas[e]);
        }
    /* E[d2] = fi under y ~ NB(size, mu), summed until the tail is < 1e-17:
     * rel 1e-10 */
    for (int e = 0; e < 7; e += 2) {
        double s2 = 0, sp = 0;
        for (int k = 0; k < 20000; k++) {
            mlmx_gm_obs o = mlmx_gm_negbin(k, 2.3, 1.0, etas[e]);
            double p = exp(o.ll);
            sp += p;
            s2 += p * o.d2;
            if (k > 10 && p < 1e-19)
                break;
        }
        double fi = mlmx_gm_negbin(0, 2.3, 1.0, etas[e]).fi;
        cr_expect(near(sp, 1.0, 1e-12, 0) && near(s2, fi, 1e-10, 0),
                  "eta=%g: sum p %.17g, E d2 %.17g vs fi %.17g", etas[e], sp, s2, fi);
    }
    /* Large sizes (the Poisson limit), where lgamma(y + size) - lgamma(size)
     * would cancel. R's dnbinom is itself only good to ~3e-12 here
     * (Rscript -e 'dnbinom(c(4,4,250,0), size=c(1e6,1e12,3e5,1e8), mu=exp(c(1.1,1.1,5.5,2)), log=TRUE)'
     * gives -1.7822213584448223, -1.7822198543003958, -3.7375336276986171,
     * -7.3890558259399137), so the reference is 50-digit mpmath at the same
     * double mu:
     *   mu = mp.mpf(math.exp(e)); mp.loggamma(y+s) - mp.loggamma(s) - mp.loggamma(y+1)
     *        + s*mp.log(s/(s+mu)) + y*mp.log(mu/(s+mu))
     * rel 1e-12: at y = 250 terms of ~3000 cancel down to -3.7, and the
     * lgamma form (no saddle point) keeps ~1e-13 of it; rel 3e-12 to R. */
    static const double by[4] = {4, 4, 250, 0}, bs[4] = {1e6, 1e12, 3e5, 1e8};
    static const double be[4] = {1.1, 1.1, 5.5, 2};
    static const double bw[4] = {-1.7822213584497122297, -1.7822198542958827953,
                                 -3.737533627698604631, -7.3890558259399136888};
    static const double br[4] = {-1.7822213584448223, -1.7822198543003958, -3.7375336276986171,
                                 -7.3890558259399137};
    for (int i = 0; i < 4; i++) {
        double v = mlmx_gm_negbin(by[i], bs[i], 1.0, be[i]).ll;
        cr_expect(near(v, bw[i], 1e-12, 0), "size=%g: ll %.17g vs %.17g", bs[i], v, bw[i]);
        cr_expect(near(v, br[i], 3e-12, 0), "size=%g: ll %.17g vs R %.17g", bs[i], v, br[i]);
    }
    /* ... and the Poisson ll itself at size 1e15 (difference O(y^2/size)):
     * rel 1e-12 */
    cr_expect(near(mlmx_gm_negbin(4, 1e15, 1, 1.1).ll, mlmx_gm_poisson(4, 1, 1.1).ll, 1e-12, 0));
    /* both lgamma-difference branches agree at the 1e4 switch: rel 1e-14 */
    for (double yy = 0; yy < 300; yy += 37) {
        double a = mlmx_gm_lgamma_ratio(yy, 1e4), b = mlmx_gm_lgamma_ratio(yy, 1e4 * (1 + 1e-15));
        double c = lgamma(yy + 1e4) - lgamma(1e4);
        cr_expect(near(a, c, 1e-14, 1e-14) && near(b, c, 1e-13, 1e-13), "y=%g: %.17g %.17g %.17g",
                  yy, a, b, c);
    }
    mlmx_gm_obs t = mlmx_gm_negbin(0, 1.5, 1, 40), u = mlmx_gm_negbin(3, 1.5, 1, -40);
    cr_expect(isfinite(t.ll) && isfinite(t.d1) && isfinite(t.d2) && isfinite(u.ll) &&
              isfinite(u.d1) && isfinite(u.d2));
}

/* ------------------------------------------------------------------ ordinal */

static const double ord_c[3] = {-1.2, 0.3, 1.9};

/* CDFs written plainly, for the closed-form checks at moderate values. */
static double plain_F(int link, double x)
{
    if (isinf(x))
        return x > 0 ? 1.0 : 0.0;
    switch (link) {
    case MLMX_LINK_LOGIT:
        return 1.0 / (1.0 + exp(-x));
    case MLMX_LINK_PROBIT:
        return 0.5 * erfc(-x / sqrt(2.0));
    default:
        return -expm1(-exp(x));
    }
}

/* upper tail 1 - F(x), from its own side */
static double plain_S(int link, double x)
{
    if (isinf(x))
        return x > 0 ? 0.0 : 1.0;
    switch (link) {
    case MLMX_LINK_LOGIT:
        return 1.0 / (1.0 + exp(x));
    case MLMX_LINK_PROBIT:
        return 0.5 * erfc(x / sqrt(2.0));
    default:
        return exp(-exp(x));
    }
}

static double plain_f(int link, double x)
{
    if (isinf(x))
        return 0.0;
    switch (link) {
    case MLMX_LINK_LOGIT: {
        double F = 1.0 / (1.0 + exp(-x));
        return F * (1.0 - F);
    }
    case MLMX_LINK_PROBIT:
        return exp(-0.5 * x * x) / sqrt(2.0 * 3.14159265358979323846);
    default:
        return exp(x - exp(x));
    }
}

Test(glmm_math, ordinal_loglik_matches_r)
{
    /* P = F(b) - F(a), a = cc[k]-e, b = cc[k+1]-e, taken as S(a) - S(b) with
     * the upper tails S when a > 0 (R's 1 - F there would cancel):
     * Rscript -e 'cc <- c(-Inf,-1.2,0.3,1.9,Inf); F <- plogis;
     *   S <- function(x) plogis(x, lower.tail=FALSE); v <- c();
     *   for (e in c(-1.5,0.4,2.6)) for (k in 1:4) { a <- cc[k]-e; b <- cc[k+1]-e;
     *   v <- c(v, if (a > 0) log(S(a) - S(b)) else log(F(b) - F(a))) };
     *   cat(sprintf("%.17g", v), sep=", ")'
     * and with pnorm (S: lower.tail=FALSE), function(x) -expm1(-exp(x))
     * (S: function(x) exp(-exp(x))). rel 1e-12 */
    static const double oe[3] = {-1.5, 0.4, 2.6};
    static const double want[3][12] = {
        {-0.55435524446852702, -1.2598153139200552, -2.2113230941921374, -3.4328284704248651,
         -1.7839007408883387, -1.180779859887364, -1.071326951297521, -1.7014132779827524,
         -3.822124216454879, -2.6701521399782964, -1.4242485267246188, -0.40318604888545784},
        {-0.48141016158848116, -1.0608592134163806, -3.3355953368125935, -7.9956375437766534,
         -2.9040780103022463, -0.90294796623791751, -0.74861626351762289, -2.7059444008238898,
         -9.5340221415325708, -4.5420299565907873, -1.4643011265250665, -0.27702394227713112},
        {-0.3001283618204445, -1.3589976393084278, -6.0496474644540692, -29.964100047397011,
         -1.6992504103881718, -0.885344966486318, -0.93319944361282348, -4.4816890703380645,
         -3.8111645338719842, -2.6135445065034162, -1.2174028549016813, -0.49658530379140953}};
    for (int l = 0; l < 3; l++)
        for (int e = 0; e < 3; e++)
            for (int k = 0; k < 4; k++) {
                mlmx_gm_obs o = mlmx_gm_ordinal(l, k, 4, ord_c, 1.0, oe[e]);
                cr_expect(near(o.ll, want[l][4 * e + k], 1e-12, 0),
                          "%s y=%d eta=%g: ll %.17g vs R %.17g", link_name[l], k, oe[e], o.ll,
                          want[l][4 * e + k]);
                cr_expect(o.mu == oe[e]);
            }
    /* K = 1: the single category has probability 1 */
    mlmx_gm_obs one = mlmx_gm_ordinal(MLMX_LINK_LOGIT, 0, 1, NULL, 1.0, 0.7);
    cr_expect(one.ll == 0.0 && one.d1 == 0.0 && one.d2 == 0.0 && one.fi == 0.0);
    /* a category outside 0..K-1 is NaN, not a silent number */
    cr_expect(isnan(mlmx_gm_ordinal(MLMX_LINK_LOGIT, 4, 4, ord_c, 1.0, 0.0).ll));
    cr_expect(isnan(mlmx_gm_ordinal(MLMX_LINK_LOGIT, -1, 4, ord_c, 1.0, 0.0).ll));
}

Test(glmm_math, ordinal_derivatives_information_and_threshold_scores)
{
    static const double etas[8] = {-4.0, -2.2, -1.2, -0.3, 0.6, 1.9, 3.1, 5.0};
    static const double c2[1] = {0.5};
    char what[96];
    for (int l = 0; l < 3; l++)
        for (int K = 2; K <= 4; K += 2) {
            const double *c = K == 4 ? ord_c : c2;
            for (int e = 0; e < 8; e++) {
                double eta = etas[e];
                double fi_plain = 0, s1 = 0, s2 = 0;
                for (int y = 0; y < K; y++) {
                    fcase f = {MLMX_FAM_ORDINAL, l, y, 0, 2.0, K, c};
                    snprintf(what, sizeof what, "ordinal %s K=%d y=%d", link_name[l], K, y);
                    check_derivs(&f, eta, what);
                    mlmx_gm_obs o = eval_case(&f, eta);
                    /* thresholds: dlo, dhi vs FD of ll in c_{y-1}, c_y
                     * (per unit weight): rel 1e-6, abs 1e-10 */
                    double dlo, dhi;
                    mlmx_gm_ordinal_dc(l, y, K, c, eta, &dlo, &dhi);
                    double cc[3];
                    for (int j = 0; j < K - 1; j++)
                        cc[j] = c[j];
                    for (int side = 0; side < 2; side++) {
                        int j = side == 0 ? y - 1 : y;
                        double got = side == 0 ? dlo : dhi;
                        if (j < 0 || j > K - 2) {
                            cr_expect(got == 0.0, "%s: absent threshold has score %g", what, got);
                            continue;
                        }
                        double h = 1e-4, v[4];
                        static const double off[4] = {1.0, -1.0, 0.5, -0.5};
                        for (int t = 0; t < 4; t++) {
                            cc[j] = c[j] + off[t] * h;
                            v[t] = mlmx_gm_ordinal(l, y, K, cc, 1.0, eta).ll;
                        }
                        cc[j] = c[j];
                        double g = (4.0 * (v[2] - v[3]) / h - (v[0] - v[1]) / (2.0 * h)) / 3.0;
                        cr_expect(near(got, g, 1e-6, 1e-10), "%s eta=%g: d/dc_%d %.15g vs FD %.15g",
                                  what, eta, j, got, g);
                    }
                    /* shifting eta is shifting every threshold back */
                    cr_expect(near(o.d1, -2.0 * (dlo + dhi), 1e-12, 1e-15),
                              "%s eta=%g: d1 %.17g vs -(dlo+dhi) %.17g", what, eta, o.d1,
                              -2.0 * (dlo + dhi));
                    /* the plain multinomial information and the expectations */
                    double b = y < K - 1 ? c[y] - eta : INFINITY;
                    double a = y > 0 ? c[y - 1] - eta : -INFINITY;
                    double P = a > 0 ? plain_S(l, a) - plain_S(l, b)
                                     : plain_F(l, b) - plain_F(l, a);
                    double dP = -(plain_f(l, b) - plain_f(l, a));
                    fi_plain += dP * dP / P;
                    cr_expect(near(exp(o.ll / 2.0), P, 1e-12, 0), "%s eta=%g: P", what, eta);
                    s1 += P * o.d1;
                    s2 += P * o.d2;
                }
                mlmx_gm_obs o = mlmx_gm_ordinal(l, 0, K, c, 2.0, eta);
                /* fi = wt sum_k P_k'^2/P_k: rel 1e-10; E d1 = 0; E d2 = fi */
                cr_expect(near(o.fi, 2.0 * fi_plain, 1e-10, 0),
                          "%s K=%d eta=%g: fi %.17g vs %.17g", link_name[l], K, eta, o.fi,
                          2.0 * fi_plain);
                cr_expect(fabs(s1) <= 1e-11 * (1.0 + o.fi), "%s K=%d eta=%g: E d1 %g",
                          link_name[l], K, eta, s1);
                cr_expect(near(s2, o.fi, 1e-10, 1e-300), "%s K=%d eta=%g: E d2 %.17g vs fi %.17g",
                          link_name[l], K, eta, s2, o.fi);
            }
        }
}

Test(glmm_math, ordinal_tails)
{
    /* eta = -40 and 40, categories 0, 1, 3 of c = (-1.2, 0.3, 1.9): one
     * side of each interval is in a far tail (both for category 1), where
     * F(b) - F(a) cancels or underflows. Computed in R on the log scale:
     * Rscript -e 'LF <- function(x) plogis(x, log.p=TRUE); v <- c(); for (e in c(-40,40)) {
     *   a <- -1.2-e; b <- 0.3-e; v <- c(v, LF(-1.2-e), if (b <= 0) LF(b) + log(-expm1(LF(a)-LF(b)))
     *   else LF(-a) + log(-expm1(LF(-b)-LF(-a))), LF(-(1.9-e))) }; cat(sprintf("%.17g", v), sep=", ")'
     * and with LF <- function(x) pnorm(x, log.p=TRUE). rel 1e-10, abs 1e-300. */
    static const int ys[3] = {0, 1, 3};
    static const double te[2] = {-40, 40};
    static const double want[2][6] = {
        {-1.4105032856773469e-17, -39.052482458925454, -41.899999999999999, -41.200000000000003,
         -39.952482458925459, -2.8404048104287478e-17},
        {-0.0, -757.29802193796183, -882.45979315387331, -853.35796504685152, -792.64592319915027,
         -6.4058970629709335e-318}};
    for (int l = 0; l < 2; l++)
        for (int e = 0; e < 2; e++)
            for (int i = 0; i < 3; i++) {
                mlmx_gm_obs o = mlmx_gm_ordinal(l, ys[i], 4, ord_c, 1.0, te[e]);
                double w = want[l][3 * e + i];
                cr_expect(near(o.ll, w, 1e-10, 1e-300), "%s y=%d eta=%g: ll %.17g vs R %.17g",
                          link_name[l], ys[i], te[e], o.ll, w);
                double dlo, dhi;
                mlmx_gm_ordinal_dc(l, ys[i], 4, ord_c, te[e], &dlo, &dhi);
                cr_expect(isfinite(o.d1) && isfinite(o.d2) && isfinite(o.fi) && isfinite(dlo) &&
                              isfinite(dhi) && o.d2 >= 0.0 && o.fi >= 0.0,
                          "%s y=%d eta=%g: d1 %g d2 %g fi %g", link_name[l], ys[i], te[e], o.d1,
                          o.d2, o.fi);
                /* d2 vs FD of d1 there too: rel 1e-6 */
                fcase f = {MLMX_FAM_ORDINAL, l, ys[i], 0, 1.0, 4, ord_c};
                double g = -fd_first(d1_at, &f, te[e], 1e-3);
                cr_expect(near(o.d2, g, 1e-6, 1e-12), "%s y=%d eta=%g: d2 %.17g vs FD(d1) %.17g",
                          link_name[l], ys[i], te[e], o.d2, g);
            }
    /* Close thresholds straddling 0 (probit goes through erf, logit the
     * product form): P = F(h) - F(-h), h = 1e-6, where the plain difference
     * of two values near 1/2 keeps only ~10 digits. Exact values: logit
     * tanh(h/2) = 5e-7 (1 - h^2/12 + ...), probit erf(h/sqrt 2) =
     * 2 h dnorm(0) (1 - h^2/6 + ...); the h^2 terms are below 1e-12. rel 1e-9. */
    static const double cn[2] = {-1e-6, 1e-6};
    double pl = exp(mlmx_gm_ordinal(MLMX_LINK_LOGIT, 1, 3, cn, 1.0, 0.0).ll);
    double pp = exp(mlmx_gm_ordinal(MLMX_LINK_PROBIT, 1, 3, cn, 1.0, 0.0).ll);
    cr_expect(near(pl, 5e-7, 1e-9, 0), "logit P %.17g", pl);
    cr_expect(near(pp, 2e-6 * 0.3989422804014327, 1e-9, 0), "probit P %.17g", pp);
}

Test(glmm_math, far_tail_derivatives_against_high_precision)
{
    /* ll, d1, d2 where the observation is very unlikely (|eta| = 40, 60,
     * and a binomial probit at -1000), against 120-digit mpmath: ll written
     * on the side where it does not cancel, derivatives by mp.diff, at the
     * same double inputs (python3, mpmath 1.3.0, mp.mp.dps = 120):
     *   F = {'logit': lambda x: 1/(1+mp.exp(-x)), 'probit': mp.ncdf,
     *        'cloglog': lambda x: -mp.expm1(-mp.exp(x))}, S(x) = 1 - F(x) likewise;
     *   ordinal: log(F(b) - F(a)) if b <= 0 else log(S(a) - S(b)) (log1p(-S(b)),
     *   log1p(-F(a)) for the end categories); binomial probit y = 1: log(ncdf(eta));
     *   then ll, mp.diff(f, eta), -mp.diff(f, eta, 2)
     * c = (-1.2, 0.3, 1.9), K = 4. rel 1e-12 (the probit information at -10
     * is the least accurate, ~5e-13: the log-difference Mills ratio). */
    static const struct {
        int ord, link, y;
        double eta, ll, d1, d2;
    } cases[] = {
        {0, MLMX_LINK_PROBIT, 1, -10, -53.231285150512471, 10.098093233962512, 0.99055462217434374},
        {0, MLMX_LINK_PROBIT, 1, -20, -203.91715537109726, 20.049753068527851, 0.99753673838494784},
        {0, MLMX_LINK_PROBIT, 1, -40, -804.60844201375379, 40.024968847207264, 0.99937733162140861},
        {0, MLMX_LINK_PROBIT, 1, -1000, -500007.82669481218, 1000.000999998, 0.99999900000599995},
        {1, MLMX_LINK_LOGIT, 0, -60, -2.9072639567353428e-26, -2.9072639567353428e-26, 2.9072639567353428e-26},
        {1, MLMX_LINK_LOGIT, 1, -60, -59.052482458925454, 1.0, 3.5559622289954577e-26},
        {1, MLMX_LINK_LOGIT, 2, -60, -60.525517013241198, 1.0, 7.7966819465858101e-27},
        {1, MLMX_LINK_LOGIT, 3, -60, -61.9, 1.0, 1.3096992239846616e-27},
        {1, MLMX_LINK_LOGIT, 0, -40, -1.4105032856773427e-17, -1.4105032856773427e-17, 1.4105032856773426e-17},
        {1, MLMX_LINK_LOGIT, 1, -40, -39.052482458925454, 0.99999999999999998, 1.7252291097004146e-17},
        {1, MLMX_LINK_LOGIT, 2, -40, -40.525517013241198, 1.0, 3.7826787201632886e-18},
        {1, MLMX_LINK_LOGIT, 3, -40, -41.9, 1.0, 6.3542047993256904e-19},
        {1, MLMX_LINK_LOGIT, 0, 40, -41.2, -1.0, 1.2795797118464004e-18},
        {1, MLMX_LINK_LOGIT, 1, 40, -39.952482458925454, -0.99999999999999999, 7.0142581210547433e-18},
        {1, MLMX_LINK_LOGIT, 2, 40, -38.325517013241198, -0.99999999999999997, 3.4138726513495858e-17},
        {1, MLMX_LINK_LOGIT, 3, 40, -2.8404048104287516e-17, 2.8404048104287516e-17, 2.8404048104287515e-17},
        {1, MLMX_LINK_PROBIT, 1, -60, -1733.7133694106089, 58.816996979117084, 0.99971126938364322},
        {1, MLMX_LINK_PROBIT, 2, -60, -1823.0635454687982, 60.316574638697146, 0.99972543208586468},
        {1, MLMX_LINK_PROBIT, 3, -60, -1920.8497195297245, 61.916146667302709, 0.99973942090266133},
        {1, MLMX_LINK_PROBIT, 1, -40, -757.29802193796187, 38.825739068958193, 0.99933837524872626},
        {1, MLMX_LINK_PROBIT, 2, -40, -816.66090478664081, 40.324783432139105, 0.99938653371452442},
        {1, MLMX_LINK_PROBIT, 3, -40, -882.4597931538733, 41.923839236890041, 0.99943233490823141},
        {1, MLMX_LINK_PROBIT, 0, 40, -853.35796504685138, -41.224243330357288, 0.99941294978706161},
        {1, MLMX_LINK_PROBIT, 1, 40, -792.64592319915017, -39.725157054000346, 0.99936792117972151},
        {1, MLMX_LINK_PROBIT, 2, 40, -730.36484052319185, -38.12621068086955, 0.99931394092148768},
        {1, MLMX_LINK_CLOGLOG, 1, -60, -3.4396601577344601e+25, 3.4396601577344601e+25, 3.4396601577344601e+25},
        {1, MLMX_LINK_CLOGLOG, 2, -60, -1.5415487334595833e+26, 1.5415487334595833e+26, 1.5415487334595833e+26},
        {1, MLMX_LINK_CLOGLOG, 3, -60, -7.635340860610538e+26, 7.635340860610538e+26, 7.635340860610538e+26},
        {1, MLMX_LINK_CLOGLOG, 1, -40, -70896679940719637.0, 70896679940719637.0, 70896679940719637.0},
        {1, MLMX_LINK_CLOGLOG, 2, -40, -3.177368756135791e+17, 3.177368756135791e+17, 3.177368756135791e+17},
        {1, MLMX_LINK_CLOGLOG, 3, -40, -1.5737610473400546e+18, 1.5737610473400546e+18, 1.5737610473400546e+18},
        {1, MLMX_LINK_CLOGLOG, 0, 40, -41.2, -1.0, 6.3978985592320022e-19},
        {1, MLMX_LINK_CLOGLOG, 1, 40, -39.952482458925454, -1.0, 3.5071290605273717e-18},
        {1, MLMX_LINK_CLOGLOG, 2, 40, -38.325517013241198, -0.99999999999999998, 1.706936325674793e-17},
        {1, MLMX_LINK_CLOGLOG, 3, 40, -2.8404048104287517e-17, 2.8404048104287517e-17, 2.8404048104287517e-17},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mlmx_gm_obs o = cases[i].ord ? mlmx_gm_ordinal(cases[i].link, cases[i].y, 4, ord_c, 1.0,
                                                       cases[i].eta)
                                     : mlmx_gm_binomial(cases[i].link, cases[i].y, 1, 1.0,
                                                        cases[i].eta);
        cr_expect(near(o.ll, cases[i].ll, 1e-12, 1e-300) && near(o.d1, cases[i].d1, 1e-12, 1e-300) &&
                      near(o.d2, cases[i].d2, 1e-12, 1e-300),
                  "%s %s y=%d eta=%g: ll %.17g d1 %.17g d2 %.17g vs %.17g %.17g %.17g",
                  cases[i].ord ? "ordinal" : "binomial", link_name[cases[i].link], cases[i].y,
                  cases[i].eta, o.ll, o.d1, o.d2, cases[i].ll, cases[i].d1, cases[i].d2);
        if (cases[i].ord) {
            /* the threshold scores stay finite and add up to -d1 */
            double dlo, dhi;
            mlmx_gm_ordinal_dc(cases[i].link, cases[i].y, 4, ord_c, cases[i].eta, &dlo, &dhi);
            cr_expect(near(-(dlo + dhi), o.d1, 1e-12, 1e-300), "%s y=%d eta=%g: dlo %g dhi %g",
                      link_name[cases[i].link], cases[i].y, cases[i].eta, dlo, dhi);
        }
    }
}

/* ------------------------------------------------------------------ deviance */

Test(glmm_math, deviance_residuals_match_r)
{
    /* Rscript -e 'y <- c(3,0,1,7,12,0.5); n <- c(10,1,1,7,20,2); p <- c(0.25,0.3,0.9,0.6,0.55,0.1);
     *   wt <- c(1,2.5,1,0.7,1,3); cat(sprintf("%.17g", binomial()$dev.resids(y/n, p, wt*n)), sep=", ")'
     * Our mu is the expected count n p. rel 1e-13. */
    static const double y[6] = {3, 0, 1, 7, 12, 0.5}, n[6] = {10, 1, 1, 7, 20, 2};
    static const double p[6] = {0.25, 0.3, 0.9, 0.6, 0.55, 0.1}, wt[6] = {1, 2.5, 1, 0.7, 1, 3};
    static const double want[6] = {0.12802913994640577, 1.783374719693662, 0.2107210313156527,
                                   5.0060911129067085, 0.20374447724898048, 1.107978184476873};
    for (int i = 0; i < 6; i++) {
        double d = mlmx_gm_devres_binomial(y[i], n[i], wt[i], n[i] * p[i]);
        cr_expect(near(d, want[i], 1e-13, 0), "binomial %d: %.17g vs R %.17g", i, d, want[i]);
    }
    /* Rscript -e 'cat(sprintf("%.17g", poisson()$dev.resids(c(0,3,17,1,250,2.5),
     *   c(0.4,1.2,20.5,0.01,241,2.5), c(1,2,0.5,1,1,1.3))), sep=", ")'   rel 1e-13 */
    static const double py[6] = {0, 3, 17, 1, 250, 2.5}, pm[6] = {0.4, 1.2, 20.5, 0.01, 241, 2.5};
    static const double pw[6] = {1, 2, 0.5, 1, 1, 1.3};
    static const double pwant[6] = {0.80000000000000004, 3.7954887824898611, 0.31740378450151008,
                                    7.2303403719761832, 0.3319921857957624, 0};
    for (int i = 0; i < 6; i++) {
        double d = mlmx_gm_devres_poisson(py[i], pw[i], pm[i]);
        cr_expect(near(d, pwant[i], 1e-13, 0), "poisson %d: %.17g vs R %.17g", i, d, pwant[i]);
    }
    /* the deviance residual is -2 (ll - ll_saturated) */
    for (int i = 0; i < 5; i++) {
        double eta = log(p[i] / (1.0 - p[i]));
        double ll = mlmx_gm_binomial(MLMX_LINK_LOGIT, y[i], n[i], wt[i], eta).ll;
        double sat = y[i] > 0 && y[i] < n[i]
                         ? log(y[i] / n[i] / (1.0 - y[i] / n[i]))
                         : (y[i] > 0 ? 800.0 : -800.0);
        double llsat = mlmx_gm_binomial(MLMX_LINK_LOGIT, y[i], n[i], wt[i], sat).ll;
        cr_expect(near(mlmx_gm_devres_binomial(y[i], n[i], wt[i], n[i] * p[i]), -2 * (ll - llsat),
                       1e-12, 1e-14));
    }
}

/* ------------------------------------------------------------------ log-sum-exp */

Test(glmm_math, log_sum_exp_accumulator)
{
    /* values 10^(-300 + 10 j), j = 0..30, i.e. 1e-300 .. 1: the direct sum
     * (no underflow in double) against the accumulator, in both orders:
     * rel 1e-15 on the log */
    double direct = 0.0;
    for (int j = 0; j <= 30; j++)
        direct += pow(10.0, -300.0 + 10.0 * j);
    double want = log(direct);
    for (int order = 0; order < 2; order++) {
        double m = -INFINITY, s = 0.0;
        for (int jj = 0; jj <= 30; jj++) {
            int j = order ? 30 - jj : jj;
            mlmx_gm_lse_add(&m, &s, (-300.0 + 10.0 * j) * log(10.0));
        }
        cr_expect(near(m + log(s), want, 1e-15, 1e-15), "order %d: %.17g vs %.17g", order,
                  m + log(s), want);
    }
    /* terms far below the double range: log(e^-1000 + e^-1001 + e^-1002) */
    double m = -INFINITY, s = 0.0;
    mlmx_gm_lse_add(&m, &s, -1001.0);
    mlmx_gm_lse_add(&m, &s, -1000.0);
    mlmx_gm_lse_add(&m, &s, -1002.0);
    double w2 = -1000.0 + log(1.0 + exp(-1.0) + exp(-2.0));
    cr_expect(near(m + log(s), w2, 1e-15, 0), "%.17g vs %.17g", m + log(s), w2);
    /* ... and far above: 1000 and 1000 give 1000 + log 2 */
    m = -INFINITY;
    s = 0.0;
    mlmx_gm_lse_add(&m, &s, 1000.0);
    mlmx_gm_lse_add(&m, &s, 1000.0);
    cr_expect(near(m + log(s), 1000.0 + log(2.0), 1e-15, 0));
    /* nothing (or only -inf) added: -inf; -inf terms are ignored */
    m = -INFINITY;
    s = 0.0;
    cr_expect(isinf(m + log(s)) && m + log(s) < 0);
    mlmx_gm_lse_add(&m, &s, -INFINITY);
    cr_expect(isinf(m + log(s)) && m + log(s) < 0);
    mlmx_gm_lse_add(&m, &s, 0.5);
    mlmx_gm_lse_add(&m, &s, -INFINITY);
    cr_expect(near(m + log(s), 0.5, 1e-16, 0));
    /* NaN propagates */
    mlmx_gm_lse_add(&m, &s, NAN);
    cr_expect(isnan(m + log(s)));
}

/* ------------------------------------------------------------------ Gauss-Hermite */

Test(ghq, rejects_k_out_of_range)
{
    double z[MLMX_GHQ_MAX + 1], w[MLMX_GHQ_MAX + 1], lw[MLMX_GHQ_MAX + 1];
    cr_expect_eq(mlmx_ghq_rule(0, z, w, lw), -1);
    cr_expect_eq(mlmx_ghq_rule(-3, z, w, lw), -1);
    cr_expect_eq(mlmx_ghq_rule(MLMX_GHQ_MAX + 1, z, w, lw), -1);
    cr_expect_eq(mlmx_ghq_rule(5, NULL, w, lw), -1);
    cr_expect_eq(MLMX_GHQ_MAX, 200);
    /* w and logw are optional */
    cr_expect_eq(mlmx_ghq_rule(7, z, NULL, NULL), 0);
}

Test(ghq, small_rules_in_closed_form)
{
    double z[5], w[5], lw[5];
    /* k = 1: the point mass at 0 */
    cr_assert_eq(mlmx_ghq_rule(1, z, w, lw), 0);
    cr_expect(z[0] == 0.0 && w[0] == 1.0 && lw[0] == 0.0);
    /* k = 2: +-1, 1/2 each (roots of He_2 = x^2 - 1); rel 1e-15 */
    cr_assert_eq(mlmx_ghq_rule(2, z, w, lw), 0);
    cr_expect(near(z[0], -1.0, 1e-15, 0) && near(z[1], 1.0, 1e-15, 0));
    cr_expect(near(w[0], 0.5, 1e-15, 0) && near(w[1], 0.5, 1e-15, 0));
    /* k = 3: 0, +-sqrt(3); 2/3, 1/6, 1/6 (He_3 = x^3 - 3x) */
    cr_assert_eq(mlmx_ghq_rule(3, z, w, lw), 0);
    cr_expect(near(z[0], -sqrt(3.0), 1e-15, 0) && z[1] == 0.0 && near(z[2], sqrt(3.0), 1e-15, 0));
    cr_expect(near(w[0], 1.0 / 6.0, 1e-15, 0) && near(w[1], 2.0 / 3.0, 1e-15, 0) &&
              near(w[2], 1.0 / 6.0, 1e-15, 0));
    /* k = 5: He_5 = x^5 - 10x^3 + 15x, roots 0 and x^2 = 5 -+ sqrt(10);
     * w = k!/(k^2 He_4(x)^2) with He_4 = x^4 - 6x^2 + 3: 8/15 at 0 and
     * 4.8/(224 -+ 64 sqrt(10)). rel 1e-14. */
    cr_assert_eq(mlmx_ghq_rule(5, z, w, lw), 0);
    double s10 = sqrt(10.0);
    double zin = sqrt(5.0 - s10), zout = sqrt(5.0 + s10);
    double win = 4.8 / (224.0 - 64.0 * s10), wout = 4.8 / (224.0 + 64.0 * s10);
    const double zw[5] = {-zout, -zin, 0.0, zin, zout}, ww[5] = {wout, win, 8.0 / 15.0, win, wout};
    for (int i = 0; i < 5; i++) {
        cr_expect(near(z[i], zw[i], 1e-14, 0), "k=5 z[%d] %.17g vs %.17g", i, z[i], zw[i]);
        cr_expect(near(w[i], ww[i], 1e-14, 0), "k=5 w[%d] %.17g vs %.17g", i, w[i], ww[i]);
    }
    /* and statmod's: Rscript -e 'q <- statmod::gauss.quad.prob(5, "normal");
     *   cat(sprintf("%.17g", c(q$nodes, q$weights)), sep=", ")'  (eigenvector
     * weights: rel 1e-14; nodes abs 1e-15 for its 3.4e-16 "zero") */
    static const double smz[5] = {-2.8569700138728056, -1.3556261799742657, 3.3977603750172839e-16,
                                  1.3556261799742664, 2.8569700138728056};
    static const double smw[5] = {0.011257411327720721, 0.22207592200561277, 0.53333333333333321,
                                  0.2220759220056126, 0.011257411327720674};
    for (int i = 0; i < 5; i++)
        cr_expect(near(z[i], smz[i], 1e-15, 1e-15) && near(w[i], smw[i], 1e-14, 0),
                  "k=5 vs statmod at %d", i);
}

Test(ghq, twenty_points_against_mpmath_and_statmod)
{
    /* 60-digit reference: Newton on He_20 from statmod's nodes, weights
     * 20!/(20^2 He_19(z)^2) (python3, mpmath.mp.dps = 60):
     *   def he(k, x): p0, p1 = 0, 1; for n in range(k): p0, p1 = p1, x*p1 - n*p0; return p1, p0
     * the negative half; rel 1e-14 nodes, 1e-13 weights */
    static const double mz[10] = {-7.6190485416797583, -6.5105901570136545, -5.5787388058932012,
                                  -4.7345813340460553, -3.9439673506573163, -3.1890148165533894,
                                  -2.4586636111723678, -1.7452473208141267, -1.042945348802751,
                                  -0.34696415708135593};
    static const double mw[10] = {1.257800672437927e-13, 2.4820623623151786e-10,
                                  6.1274902599829475e-8, 4.4021210902308528e-6,
                                  0.00012882627996192945, 0.0018301031310804928,
                                  0.013997837447101003, 0.061506372063976907,
                                  0.16173933398399996, 0.26079306344955486};
    /* Rscript -e 'q <- statmod::gauss.quad.prob(20, "normal"); cat(sprintf("%.17g", q$weights[1:10]), sep=", ")'
     * (eigenvector weights, so only ~1e-15 absolute: rel 1e-12 here) */
    static const double smw[10] = {1.2578006724378765e-13, 2.4820623623151512e-10,
                                   6.1274902599829147e-08, 4.4021210902308722e-06,
                                   0.00012882627996192914, 0.0018301031310804939,
                                   0.013997837447101015, 0.061506372063976932,
                                   0.16173933398399995, 0.26079306344955455};
    double z[20], w[20], lw[20];
    cr_assert_eq(mlmx_ghq_rule(20, z, w, lw), 0);
    for (int i = 0; i < 10; i++) {
        cr_expect(near(z[i], mz[i], 1e-14, 0), "z[%d] %.17g vs %.17g", i, z[i], mz[i]);
        cr_expect(near(w[i], mw[i], 1e-13, 0), "w[%d] %.17g vs %.17g", i, w[i], mw[i]);
        cr_expect(near(w[i], smw[i], 1e-12, 0), "w[%d] %.17g vs statmod %.17g", i, w[i], smw[i]);
    }
}

Test(ghq, weights_sum_to_one_symmetric_ascending)
{
    double z[MLMX_GHQ_MAX], w[MLMX_GHQ_MAX], lw[MLMX_GHQ_MAX];
    for (int k = 1; k <= MLMX_GHQ_MAX; k++) {
        cr_assert_eq(mlmx_ghq_rule(k, z, w, lw), 0, "k=%d", k);
        double s = 0.0;
        for (int i = 0; i < k; i++)
            s += w[i];
        /* 1e-14 absolute */
        cr_expect(fabs(s - 1.0) <= 1e-14, "k=%d: sum w - 1 = %g", k, s - 1.0);
        for (int i = 0; i < k; i++) {
            cr_expect(z[k - 1 - i] == -z[i] && w[k - 1 - i] == w[i] && lw[k - 1 - i] == lw[i],
                      "k=%d: asymmetric at %d", k, i);
            if (i > 0)
                cr_expect(z[i] > z[i - 1], "k=%d: not ascending at %d", k, i);
            cr_expect(w[i] > 0.0 && isfinite(lw[i]));
            /* logw is log w where w is a normal number: rel 1e-15 */
            if (w[i] > 1e-300)
                cr_expect(near(exp(lw[i]), w[i], 1e-15, 0) && near(lw[i], log(w[i]), 1e-15, 0),
                          "k=%d i=%d: logw %.17g vs log w %.17g", k, i, lw[i], log(w[i]));
        }
        if (k % 2 == 1)
            cr_expect(z[k / 2] == 0.0 && !signbit(z[k / 2]));
    }
}

Test(ghq, exact_for_moments_up_to_degree_2k_minus_1)
{
    double z[20], w[20];
    for (int k = 1; k <= 20; k++) {
        cr_assert_eq(mlmx_ghq_rule(k, z, w, NULL), 0);
        double dfact = 1.0; /* (j-1)!! for even j */
        for (int j = 0; j <= 2 * k - 1; j++) {
            if (j >= 2 && j % 2 == 0)
                dfact *= (double)(j - 1);
            double s = 0.0, sabs = 0.0;
            for (int i = 0; i < k; i++) {
                double t = w[i] * pow(z[i], (double)j);
                s += t;
                sabs += fabs(t);
            }
            if (j % 2 == 0) /* E z^j = (j-1)!!: rel 1e-12 */
                cr_expect(near(s, dfact, 1e-12, 0), "k=%d: E z^%d = %.17g vs %.17g", k, j, s, dfact);
            else /* odd: 0 up to rounding of the terms, 1e-14 of sum |terms| */
                cr_expect(fabs(s) <= 1e-14 * sabs, "k=%d: E z^%d = %g", k, j, s);
        }
    }
}

Test(ghq, large_rules_integrate_smooth_functions)
{
    /* E exp(z/2) = exp(1/8) (rel 1e-14), and E plogis(1 + 2z):
     * Rscript -e 'sprintf("%.17g", integrate(function(z) dnorm(z)*plogis(1+2*z), -Inf, Inf,
     *   rel.tol=1e-13, abs.tol=0)$value)'  ->  0.64772643852586875 (abs.error 3.7e-14);
     * mpmath's quad at 60 digits gives 0.6477264385258686850773737.
     * plogis(1 + 2z) has poles at Im z = +-pi/2, so Gauss-Hermite converges
     * like exp(-c sqrt(k)): the exact 50-point rule is itself 1.2e-10 off
     * the integral (100: 2.4e-14). So the rule is checked two ways: against
     * the exact k-point sums (50-digit mpmath: eigsy of the Jacobi matrix,
     * Newton on He_k, weights k!/(k^2 He_{k-1}^2); python3 /tmp script:
     *   for x in ev: ... s += w/(1+mp.exp(-(1+2*x)))) to 1e-14, and against
     * the integral to 1e-10 for k = 100, 200 (5e-10 for k = 50). */
    static const double rule_sum[3] = {0.64772643840779223675, 0.64772643852584454152,
                                       0.64772643852586868481};
    static const double int_tol[3] = {5e-10, 1e-10, 1e-10};
    static const int ks[3] = {50, 100, 200};
    double z[MLMX_GHQ_MAX], w[MLMX_GHQ_MAX], lw[MLMX_GHQ_MAX];
    for (int t = 0; t < 3; t++) {
        int k = ks[t];
        cr_assert_eq(mlmx_ghq_rule(k, z, w, lw), 0);
        double e = 0.0, p = 0.0;
        for (int i = 0; i < k; i++) {
            e += w[i] * exp(0.5 * z[i]);
            p += w[i] / (1.0 + exp(-(1.0 + 2.0 * z[i])));
        }
        cr_expect(near(e, exp(0.125), 1e-14, 0), "k=%d: E exp(z/2) %.17g", k, e);
        cr_expect(fabs(p - rule_sum[t]) <= 1e-14, "k=%d: rule sum %.17g vs mpmath %.17g", k, p,
                  rule_sum[t]);
        cr_expect(fabs(p - 0.64772643852586875) <= int_tol[t], "k=%d: E plogis(1+2z) %.17g", k,
                  p);
    }
}

Test(ghq, tiny_weights_keep_relative_accuracy)
{
    /* The outermost log-weights against the 60-digit mpmath rule (same
     * script as above, Newton from our nodes): abs 1e-12 on the log, i.e.
     * rel 1e-12 on weights of 1e-78 .. 1e-163. */
    double z[MLMX_GHQ_MAX], lw[MLMX_GHQ_MAX];
    cr_assert_eq(mlmx_ghq_rule(100, z, NULL, lw), 0);
    cr_expect(near(z[0], -18.959636217387706, 1e-15, 0) && near(z[1], -18.135591526882358, 1e-15, 0));
    cr_expect(near(lw[0], -180.70026843787904, 0, 1e-12), "k=100 lw[0] %.17g", lw[0]);
    cr_expect(near(lw[1], -165.67900708051133, 0, 1e-12), "k=100 lw[1] %.17g", lw[1]);
    cr_assert_eq(mlmx_ghq_rule(200, z, NULL, lw), 0);
    cr_expect(near(z[0], -27.349827752266122, 1e-15, 0) && near(z[1], -26.619594778852663, 1e-15, 0));
    cr_expect(near(lw[0], -375.09214010203726, 0, 1e-12), "k=200 lw[0] %.17g", lw[0]);
    cr_expect(near(lw[1], -355.65309131246871, 0, 1e-12), "k=200 lw[1] %.17g", lw[1]);
    cr_expect(near(z[99], -0.1109336043783837, 1e-14, 0) &&
              near(lw[99], -2.4307627855250156, 1e-14, 0));
    /* High even moments, dominated by the outer nodes, on the log scale:
     * log sum w z^2m vs log (2m-1)!! = lgamma(2m+1) - m log 2 - lgamma(m+1),
     * exact for 2m <= 2k-1; z^398 overflows, so through mlmx_gm_lse_add.
     * abs 1e-11 on the log (rel 1e-11 on moments up to ~1e430). */
    static const int ks[3] = {50, 100, 200};
    for (int t = 0; t < 3; t++) {
        int k = ks[t];
        cr_assert_eq(mlmx_ghq_rule(k, z, NULL, lw), 0);
        for (int m = 1; 2 * m <= 2 * k - 1; m += (m < 10 ? 1 : 7)) {
            double mx = -INFINITY, sc = 0.0;
            for (int i = 0; i < k; i++)
                if (z[i] != 0.0)
                    mlmx_gm_lse_add(&mx, &sc, lw[i] + 2.0 * m * log(fabs(z[i])));
            double got = mx + log(sc);
            double want = lgamma(2.0 * m + 1.0) - m * log(2.0) - lgamma(m + 1.0);
            cr_expect(near(got, want, 0, 1e-11), "k=%d: log E z^%d = %.17g vs %.17g", k, 2 * m, got,
                      want);
        }
    }
}

/* The closed forms of the fused loops (mlmx_gm_logit_fast,
 * mlmx_gm_poisson_fast, mlmx_gm_wprime, mlmx_gm_ord_logit_obs) against the
 * general functions, over eta in [-40, 40]: log-likelihood to 1e-12
 * relative (abs 1e-12), derivatives to 1e-12 (the logit's where R's mean
 * clamping does not apply); W' against central
 * differences of the information (1e-6 relative). */
Test(glmm_math, closed_forms_match_general_functions)
{
    for (double eta = -40.0; eta <= 40.0; eta += 0.37) {
        const double y = 3.0, nt = 10.0, llc = lgamma(nt + 1.0) - lgamma(y + 1.0) - lgamma(nt - y + 1.0);
        double d1, fi;
        double ll = mlmx_gm_logit_fast(y, nt, llc, eta, &d1, &fi);
        mlmx_gm_obs o = mlmx_gm_binomial(MLMX_LINK_LOGIT, y, nt, 1.0, eta);
        cr_expect(near(ll, o.ll, 1e-12, 1e-12), "logit ll at %g: %.17g vs %.17g", eta, ll, o.ll);
        /* the general function clamps the mean as R's binomial() does
         * (|eta| > ~15 hits the eps floor); the closed form does not */
        if (fabs(eta) < 15.0)
            cr_expect(near(d1, o.d1, 1e-12, 1e-12) && near(fi, o.fi, 1e-9, 1e-300),
                      "logit d1/fi at %g", eta);
        ll = mlmx_gm_poisson_fast(y, -lgamma(y + 1.0), eta / 4.0, &d1, &fi);
        o = mlmx_gm_poisson(y, 1.0, eta / 4.0);
        cr_expect(near(ll, o.ll, 1e-12, 1e-12), "poisson ll at %g", eta / 4.0);
        cr_expect(near(d1, o.d1, 1e-12, 1e-12) && near(fi, o.fi, 1e-12, 1e-300));
        if (fabs(eta) < 20.0) {
            const double h = 1e-5;
            double fp, fm, dd;
            mlmx_gm_logit_fast(y, nt, 0.0, eta + h, &dd, &fp);
            mlmx_gm_logit_fast(y, nt, 0.0, eta - h, &dd, &fm);
            cr_expect(near(mlmx_gm_wprime(0, nt, eta), (fp - fm) / (2 * h), 1e-6, 1e-9),
                      "wprime at %g", eta);
        }
        /* cumulative logit: the closed form plus log(prod) is log P(y) */
        const double c[3] = {-1.0, 0.0, 1.2};
        double lc[4] = {0}, rr[4] = {0};
        for (int k = 1; k < 3; k++) {
            lc[k] = log(-expm1(-(c[k] - c[k - 1])));
            rr[k] = 1.0 / expm1(c[k] - c[k - 1]);
        }
        for (int cat = 0; cat < 4; cat++) {
            double prod = 1.0, d2, dlo, dhi;
            double lin = mlmx_gm_ord_logit_obs(c, 4, lc, rr, cat, eta / 4.0, &prod, &d1, &d2, &dlo,
                                               &dhi);
            mlmx_gm_obs g = mlmx_gm_ordinal(MLMX_LINK_LOGIT, cat, 4, c, 1.0, eta / 4.0);
            cr_expect(near(lin - log(prod), g.ll, 1e-10, 1e-12), "ordinal ll cat %d at %g: %.17g vs %.17g",
                      cat, eta / 4.0, lin - log(prod), g.ll);
            cr_expect(near(d1, g.d1, 1e-10, 1e-12) && near(d2, g.d2, 1e-9, 1e-12),
                      "ordinal d1/d2 cat %d at %g", cat, eta / 4.0);
        }
    }
}

/* NB2: the deviance residual is twice the log-likelihood gap to the
 * saturated mean (mu = y), and d ll / d size agrees with central
 * differences of mlmx_gm_negbin's log-likelihood (1e-6 relative). */
Test(glmm_math, negbin_devres_and_dsize)
{
    const double ys[4] = {0, 1, 4, 17}, ks[3] = {0.7, 2.0, 15.0};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 3; b++)
            for (double eta = -1.0; eta <= 3.0; eta += 0.5) {
                double y = ys[a], k = ks[b], mu = exp(eta);
                double sat = y > 0 ? mlmx_gm_negbin(y, k, 1.0, log(y)).ll : 0.0;
                double d = mlmx_gm_devres_negbin(y, k, mu);
                double want = 2.0 * (sat - mlmx_gm_negbin(y, k, 1.0, eta).ll);
                cr_expect(near(d, want, 1e-9, 1e-10), "devres y %g k %g eta %g: %.15g vs %.15g",
                          y, k, eta, d, want);
                double h = 1e-6 * k;
                double fd = (mlmx_gm_negbin(y, k + h, 1.0, eta).ll -
                             mlmx_gm_negbin(y, k - h, 1.0, eta).ll) / (2.0 * h);
                cr_expect(near(mlmx_gm_negbin_dsize(y, k, mu), fd, 1e-6, 1e-8),
                          "dsize y %g k %g eta %g: %.12g vs %.12g", y, k, eta,
                          mlmx_gm_negbin_dsize(y, k, mu), fd);
            }
}
