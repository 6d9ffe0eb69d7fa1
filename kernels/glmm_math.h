/* Per-observation family math for generalized linear mixed models: the
 * log-likelihood contribution of one response at linear predictor eta and
 * its first two derivatives in eta, written once and compiled both as C for
 * the CPU backend and as CUDA device code, like cluster_math.h, so the CPU
 * tests exercise the very arithmetic the kernels run.
 *
 * Every log-likelihood is computed from eta directly through log-scale
 * forms (log1p/expm1/erfc), never as log(mu) of a clamped mean, so it stays
 * finite and accurate in the tails (|eta| = 40 and beyond) where R's glm
 * clamping would otherwise leave a flat, wrong likelihood. The means
 * returned (mlmx_gm_linkinv, the mu field) are clamped exactly as R's
 * make.link()/binomial() do, because lme4 evaluates its PIRLS deviance on
 * those clamped means and we want to reproduce it.
 *
 * No allocation and no library calls beyond <math.h> (lgamma, erf, erfc,
 * log1p, expm1 exist as CUDA device functions too). */
#ifndef MLMX_GLMM_MATH_H
#define MLMX_GLMM_MATH_H

#include <float.h>
#include <math.h>

/* The same definition as in cluster_math.h (an identical redefinition is
 * allowed, the guard only spares the duplicate). */
#ifndef MLMX_HD
#if defined(__CUDACC__)
#define MLMX_HD static __host__ __device__ __forceinline__
#else
#define MLMX_HD static inline
#endif
#endif

/* The links are the public API's (mlmx_link in include/mlmx.h, values 0..3). */
#include "mlmx.h"
enum { MLMX_FAM_BINOMIAL = 0, MLMX_FAM_POISSON = 1, MLMX_FAM_NEGBIN = 2, MLMX_FAM_ORDINAL = 3 };

/* The result for one observation at linear predictor eta. ll, d1, d2 and
 * fi are multiplied by the prior weight. */
typedef struct mlmx_gm_obs {
    double ll; /* log-likelihood contribution, normalizing constants included */
    double d1; /* d ll / d eta */
    double d2; /* -d^2 ll / d eta^2, the observed information (>= 0 for every
                  family and link here, all log-concave in eta, up to
                  rounding; callers should not rely on it in general) */
    double fi; /* expected (Fisher) information with respect to eta */
    double mu; /* mean as R's linkinv gives it (clamped); ordinal: eta */
} mlmx_gm_obs;

/* R's constants: DBL_EPSILON clamps, the logit thresholds of
 * src/library/stats/src/family.c, -qnorm(DBL_EPSILON) for the probit. */
#define MLMX_GM_EPS DBL_EPSILON
#define MLMX_GM_LOGIT_THRESH 30.0
#define MLMX_GM_PROBIT_THRESH 8.125890664701906 /* Rscript -e 'sprintf("%.17g", -qnorm(.Machine$double.eps))' */
#define MLMX_GM_LN2 0.693147180559945309417232121458176568
#define MLMX_GM_SQRT1_2 0.707106781186547524400844362104849039
#define MLMX_GM_LOG_SQRT_2PI 0.918938533204672741780329736405617640 /* log(2 pi)/2 */
#define MLMX_GM_INV_SQRT_2PI 0.398942280401432677939946059934381868
/* INFINITY and NAN are float constants; spell them as doubles. */
#define MLMX_GM_INF ((double)INFINITY)
#define MLMX_GM_NAN ((double)NAN)

/* ------------------------------------------------------------------ scalar helpers */

MLMX_HD double mlmx_gm_fmax(double a, double b) { return a > b ? a : b; }
MLMX_HD double mlmx_gm_fmin(double a, double b) { return a < b ? a : b; }

/* log(1 + e^x) without overflow for large x or loss for very negative x. */
MLMX_HD double mlmx_gm_log1pexp(double x)
{
    return x > 0.0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

/* log(1 - e^x) for x <= 0 (Maechler's log1mexp: expm1 near 0, log1p far). */
MLMX_HD double mlmx_gm_log1mexp(double x)
{
    return x > -MLMX_GM_LN2 ? log(-expm1(x)) : log1p(-exp(x));
}

/* Logistic distribution function, accurate in relative terms on both sides. */
MLMX_HD double mlmx_gm_plogis(double x)
{
    if (x >= 0.0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* log F(x) for the logistic: -log(1 + e^-x). */
MLMX_HD double mlmx_gm_log_plogis(double x) { return -mlmx_gm_log1pexp(-x); }

/* Standard normal distribution function through erfc, which keeps relative
 * accuracy in the lower tail (1 - erf would cancel). */
MLMX_HD double mlmx_gm_pnorm(double x) { return 0.5 * erfc(-x * MLMX_GM_SQRT1_2); }

MLMX_HD double mlmx_gm_log_dnorm(double x) { return -0.5 * x * x - MLMX_GM_LOG_SQRT_2PI; }

/* The asymptotic (Mills ratio) series for x <= -15:
 *   Phi(x) = phi(x)/(-x) * (1 + s),  s = -1/x^2 + 3/x^4 - 15/x^6 + ...,
 * twelve terms; the first omitted one, 25!!/x^26, is < 2e-18 at x = -15. */
MLMX_HD double mlmx_gm_mills_series(double x)
{
    double r = 1.0 / (x * x), term = 1.0, s = 0.0;
    for (int k = 1; k <= 12; k++) {
        term *= -(2.0 * k - 1.0) * r;
        s += term;
    }
    return s;
}

/* log Phi(x). Upper half: log1p of the small upper tail. Down to -35 the
 * erfc form is accurate (erfc(24.7) ~ 1e-268 is still a normal number; the
 * argument's rounding costs ~x^2 eps relative in Phi, i.e. ~eps relative in
 * log Phi). Below, before erfc nears underflow, the asymptotic series. */
MLMX_HD double mlmx_gm_log_pnorm(double x)
{
    if (x > 0.0)
        return log1p(-0.5 * erfc(x * MLMX_GM_SQRT1_2));
    if (x >= -35.0)
        return log(0.5 * erfc(-x * MLMX_GM_SQRT1_2));
    return mlmx_gm_log_dnorm(x) - log(-x) + log1p(mlmx_gm_mills_series(x));
}

/* The inverse Mills ratio r = phi(x)/Phi(x) (the probit score), and in *rpx
 * r + x, which the probit information r (r + x) needs: for x -> -inf,
 * r ~ -x and r + x ~ -1/x, so the plain sum cancels. Below -15 both come
 * from the series without any cancellation, r = -x/(1+s) and
 * r + x = x s/(1+s); above, r is the exp of a log difference (error
 * ~eps x^2/2 relative) and r + x loses at most a further factor x^2, which
 * keeps ~1e-12 relative at x = -15. */
MLMX_HD double mlmx_gm_pnorm_ratio(double x, double *rpx)
{
    if (x < -15.0) {
        double s = mlmx_gm_mills_series(x);
        *rpx = x * s / (1.0 + s);
        return -x / (1.0 + s);
    }
    double r = exp(mlmx_gm_log_dnorm(x) - mlmx_gm_log_pnorm(x));
    *rpx = r + x;
    return r;
}

/* Standard normal quantile: Wichura's AS 241 (PPND16), the algorithm of R's
 * qnorm, accurate to about 1e-16 relative. Only the probit linkfun uses it. */
MLMX_HD double mlmx_gm_qnorm(double p)
{
    if (!(p > 0.0))
        return p == 0.0 ? -MLMX_GM_INF : MLMX_GM_NAN;
    if (!(p < 1.0))
        return p == 1.0 ? MLMX_GM_INF : MLMX_GM_NAN;
    double q = p - 0.5, r, val;
    if (fabs(q) <= 0.425) {
        r = 0.180625 - q * q;
        return q *
               (((((((r * 2509.0809287301226727 + 33430.575583588128105) * r +
                     67265.770927008700853) * r + 45921.953931549871457) * r +
                   13731.693765509461125) * r + 1971.5909503065514427) * r +
                 133.14166789178437745) * r + 3.387132872796366608) /
               (((((((r * 5226.495278852854561 + 28729.085735721942674) * r +
                     39307.89580009271061) * r + 21213.794301586595867) * r +
                   5394.1960214247511077) * r + 687.1870074920579083) * r +
                 42.313330701600911252) * r + 1.0);
    }
    r = sqrt(-log(q < 0.0 ? p : 1.0 - p));
    if (r <= 5.0) {
        r -= 1.6;
        val = (((((((r * 7.7454501427834140764e-4 + 0.0227238449892691845833) * r +
                    0.24178072517745061177) * r + 1.27045825245236838258) * r +
                  3.64784832476320460504) * r + 5.7694972214606914055) * r +
                4.6303378461565452959) * r + 1.42343711074968357734) /
              (((((((r * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * r +
                    0.0151986665636164571966) * r + 0.14810397642748007459) * r +
                  0.68976733498510000455) * r + 1.6763848301838038494) * r +
                2.05319162663775882187) * r + 1.0);
    } else {
        r -= 5.0;
        val = (((((((r * 2.01033439929228813265e-7 + 2.71155556874348757815e-5) * r +
                    0.0012426609473880784386) * r + 0.026532189526576123093) * r +
                  0.29656057182850489123) * r + 1.7848265399172913358) * r +
                5.4637849111641143699) * r + 6.6579046435011037772) /
              (((((((r * 2.04426310338993978564e-15 + 1.4215117583164458887e-7) * r +
                    1.8463183175100546818e-5) * r + 7.868691311456132591e-4) * r +
                  0.0148753612908506148525) * r + 0.13692988092273580531) * r +
                0.59983220655588793769) * r + 1.0);
    }
    return q < 0.0 ? -val : val;
}

/* For the complementary log-log: with t = e^x, F(x) = 1 - exp(-t) and
 * log F(x) = log(-expm1(-t)); for t below 1e-5 the series
 * log((1 - e^-t)/t) = -t/2 + t^2/24 - ... (next term t^4/2880 < 1e-23)
 * keeps it finite after t underflows (x < -745). */
MLMX_HD double mlmx_gm_log_pcloglog(double x)
{
    double t = exp(x);
    if (t < 1e-5)
        return x - 0.5 * t + t * t / 24.0;
    return log(-expm1(-t));
}

/* g(t) = t/expm1(t) (the cloglog score ratio f/F at e^x = t) and, in *gt1,
 * g + t - 1 (its information factor, g' = -g (g + t - 1)/t). For small t the
 * sum cancels; its series t/2 + t^2/12 - t^4/720 + t^6/30240 - t^8/1209600
 * (from the Bernoulli numbers of t/(e^t - 1)) is exact to ~1e-22 below 0.1.
 * g is 1 once t underflows (0/0 otherwise) and 0 once expm1(t) overflows. */
MLMX_HD double mlmx_gm_cll_ratio(double t, double *gt1)
{
    double g = t < 1e-300 ? 1.0 : t / expm1(t);
    if (t < 0.1) {
        double t2 = t * t;
        *gt1 = t * (0.5 + t * (1.0 / 12.0 +
                               t2 * (-1.0 / 720.0 + t2 * (1.0 / 30240.0 - t2 / 1209600.0))));
    } else {
        *gt1 = g + t - 1.0;
    }
    return g;
}

/* ------------------------------------------------------------------ links */

/* mu = g^{-1}(eta), clamped as R's make.link does: logit as the C code
 * logit_linkinv (eta beyond +-30 maps to eps/(1+eps), 1/(1+eps)), probit
 * with eta clamped to +-(-qnorm(eps)), cloglog and log with mu clamped to
 * [eps, 1-eps] and [eps, inf). */
MLMX_HD double mlmx_gm_linkinv(int link, double eta)
{
    switch (link) {
    case MLMX_LINK_LOGIT: {
        double t = eta < -MLMX_GM_LOGIT_THRESH ? MLMX_GM_EPS
                   : eta > MLMX_GM_LOGIT_THRESH ? 1.0 / MLMX_GM_EPS
                                                : exp(eta);
        return t / (1.0 + t);
    }
    case MLMX_LINK_PROBIT:
        return mlmx_gm_pnorm(mlmx_gm_fmin(mlmx_gm_fmax(eta, -MLMX_GM_PROBIT_THRESH),
                                          MLMX_GM_PROBIT_THRESH));
    case MLMX_LINK_CLOGLOG:
        return mlmx_gm_fmax(mlmx_gm_fmin(-expm1(-exp(eta)), 1.0 - MLMX_GM_EPS), MLMX_GM_EPS);
    case MLMX_LINK_LOG:
        return mlmx_gm_fmax(exp(eta), MLMX_GM_EPS);
    default:
        return MLMX_GM_NAN;
    }
}

/* d mu / d eta, with R's floors (eps) so PIRLS weights never vanish. */
MLMX_HD double mlmx_gm_mu_eta(int link, double eta)
{
    switch (link) {
    case MLMX_LINK_LOGIT: {
        double opexp = 1.0 + exp(eta);
        return (eta > MLMX_GM_LOGIT_THRESH || eta < -MLMX_GM_LOGIT_THRESH)
                   ? MLMX_GM_EPS
                   : exp(eta) / (opexp * opexp);
    }
    case MLMX_LINK_PROBIT:
        return mlmx_gm_fmax(MLMX_GM_INV_SQRT_2PI * exp(-0.5 * eta * eta), MLMX_GM_EPS);
    case MLMX_LINK_CLOGLOG: {
        double e = mlmx_gm_fmin(eta, 700.0);
        return mlmx_gm_fmax(exp(e) * exp(-exp(e)), MLMX_GM_EPS);
    }
    case MLMX_LINK_LOG:
        return mlmx_gm_fmax(exp(eta), MLMX_GM_EPS);
    default:
        return MLMX_GM_NAN;
    }
}

/* eta = g(mu). cloglog uses log1p(-mu) where R writes log(1 - mu): the same
 * value, without losing small mu. */
MLMX_HD double mlmx_gm_linkfun(int link, double mu)
{
    switch (link) {
    case MLMX_LINK_LOGIT:
        return log(mu / (1.0 - mu));
    case MLMX_LINK_PROBIT:
        return mlmx_gm_qnorm(mu);
    case MLMX_LINK_CLOGLOG:
        return log(-log1p(-mu));
    case MLMX_LINK_LOG:
        return log(mu);
    default:
        return MLMX_GM_NAN;
    }
}

/* ------------------------------------------------------------------ binomial */

/* Binomial: y successes out of n trials (n > 0; n = 1 for 0/1 data), prior
 * weight wt multiplying ll, d1, d2, fi. Non-integer y, n are accepted (the
 * binomial coefficient comes from lgamma).
 *
 * With lp = log mu, lq = log(1 - mu) computed from eta directly,
 *   ll = lchoose(n, y) + y lp + (n - y) lq,
 *   d1 = y r1 - (n - y) r0,        r1 = mu'/mu, r0 = mu'/(1 - mu),
 *   d2 = y s1 + (n - y) s0,        s1 = -r1', s0 = r0',
 *   fi = n r1 r0                   (= n mu'^2 / (mu (1 - mu))),
 * and each link supplies r1, r0, s1, s0 in a form without cancellation.
 * The log link needs eta < 0 (mu < 1); at eta >= 0 ll is -inf or NaN. */
/* The link's pieces of the binomial at eta (see above): lp = log mu,
 * lq = log(1 - mu), r1, r0, s1, s0 (NaN for a link the binomial does not
 * take). Also the glmm-1ri engine's probit and cloglog observations
 * (kernels/glmm_batch_fam.h). */
typedef struct mlmx_gm_bparts {
    double lp, lq, r1, r0, s1, s0;
} mlmx_gm_bparts;

MLMX_HD mlmx_gm_bparts mlmx_gm_binomial_parts(int link, double eta)
{
    double lp, lq, r1, r0, s1, s0;
    switch (link) {
    case MLMX_LINK_LOGIT: {
        /* r1 = 1 - mu, r0 = mu, s1 = s0 = mu (1 - mu): both factors taken
         * from plogis on their own side so neither is 1 - (something ~ 1). */
        double p = mlmx_gm_plogis(eta), q = mlmx_gm_plogis(-eta);
        lp = mlmx_gm_log_plogis(eta);
        lq = mlmx_gm_log_plogis(-eta);
        r1 = q;
        r0 = p;
        s1 = s0 = p * q;
        break;
    }
    case MLMX_LINK_PROBIT: {
        /* r1 = phi/Phi(eta), r0 = phi/Phi(-eta) (phi is even); s1 =
         * r1 (r1 + eta), s0 = r0 (r0 - eta), each sum from the ratio helper
         * without cancellation, so the information stays accurate at
         * |eta| = 40 where phi and Phi underflow separately. */
        double r1px, r0px;
        lp = mlmx_gm_log_pnorm(eta);
        lq = mlmx_gm_log_pnorm(-eta);
        r1 = mlmx_gm_pnorm_ratio(eta, &r1px);
        r0 = mlmx_gm_pnorm_ratio(-eta, &r0px);
        s1 = r1 * r1px;
        s0 = r0 * r0px;
        break;
    }
    case MLMX_LINK_CLOGLOG: {
        /* t = e^eta, mu = 1 - exp(-t): r1 = g(t) = t/expm1(t), r0 = t,
         * s1 = g (g + t - 1), s0 = t. */
        double t = exp(eta), gt1;
        double g = mlmx_gm_cll_ratio(t, &gt1);
        lp = mlmx_gm_log_pcloglog(eta);
        lq = -t;
        r1 = g;
        r0 = t;
        s1 = g > 0.0 ? g * gt1 : 0.0; /* g = 0 once expm1(t) overflows */
        s0 = t;
        break;
    }
    case MLMX_LINK_LOG: {
        /* mu = e^eta: r1 = 1, r0 = 1/expm1(-eta), s1 = 0, s0 = r0 + r0^2. */
        lp = eta;
        lq = mlmx_gm_log1mexp(eta);
        r1 = 1.0;
        r0 = 1.0 / expm1(-eta);
        s1 = 0.0;
        s0 = r0 + r0 * r0;
        break;
    }
    default:
        lp = lq = r1 = r0 = s1 = s0 = MLMX_GM_NAN;
        break;
    }
    const mlmx_gm_bparts b = {lp, lq, r1, r0, s1, s0};
    return b;
}

MLMX_HD mlmx_gm_obs mlmx_gm_binomial(int link, double y, double n, double wt, double eta)
{
    double ny = n - y;
    const mlmx_gm_bparts b = mlmx_gm_binomial_parts(link, eta);
    const double lp = b.lp, lq = b.lq, r1 = b.r1, r0 = b.r0, s1 = b.s1, s0 = b.s0;
    /* 0 * log 0 = 0: skip the term of an empty side. */
    double ll = lgamma(n + 1.0) - lgamma(y + 1.0) - lgamma(ny + 1.0);
    double d1 = 0.0, d2 = 0.0;
    if (y != 0.0) {
        ll += y * lp;
        d1 += y * r1;
        d2 += y * s1;
    }
    if (ny != 0.0) {
        ll += ny * lq;
        d1 -= ny * r0;
        d2 += ny * s0;
    }
    mlmx_gm_obs o;
    o.ll = wt * ll;
    o.d1 = wt * d1;
    o.d2 = wt * d2;
    o.fi = wt * n * r1 * r0;
    o.mu = mlmx_gm_linkinv(link, eta);
    return o;
}

/* ------------------------------------------------------------------ counts */

/* Poisson with log link (eta includes any offset):
 * ll = y eta - e^eta - lgamma(y + 1); d1 = y - mu; d2 = fi = mu. */
MLMX_HD mlmx_gm_obs mlmx_gm_poisson(double y, double wt, double eta)
{
    double mu = exp(eta);
    double ll = -mu - lgamma(y + 1.0);
    if (y != 0.0)
        ll += y * eta;
    mlmx_gm_obs o;
    o.ll = wt * ll;
    o.d1 = wt * (y - mu);
    o.d2 = wt * mu;
    o.fi = wt * mu;
    o.mu = mlmx_gm_linkinv(MLMX_LINK_LOG, eta);
    return o;
}

/* lgamma(y + s) - lgamma(s) for y >= 0, s > 0. For large s the two lgammas
 * are ~ s log s and their difference loses ~eps s log s absolutely (1e-6 at
 * s = 1e9, where glmmTMB's size drifts on near-Poisson data). Beyond 1e4
 * use Stirling, lgamma(x) = (x - 1/2) log x - x + log(2 pi)/2 + delta(x),
 * in difference form
 *   (s - 1/2) log1p(y/s) + y log(s + y) - y + delta(s + y) - delta(s),
 * delta(x) = 1/(12x) - 1/(360x^3) + ..., whose next term is < 1e-23 there. */
MLMX_HD double mlmx_gm_lgamma_ratio(double y, double s)
{
    if (s <= 1e4)
        return lgamma(y + s) - lgamma(s);
    double x = s + y;
    double dx = (1.0 - 1.0 / (30.0 * x * x)) / (12.0 * x);
    double ds = (1.0 - 1.0 / (30.0 * s * s)) / (12.0 * s);
    return (s - 0.5) * log1p(y / s) + y * log(x) - y + (dx - ds);
}

/* Negative binomial NB2 (glmmTMB's nbinom2), log link, Var = mu + mu^2/size.
 * With ls = log(size), p = mu/(size + mu) = plogis(eta - ls) and
 * q = size/(size + mu) = plogis(ls - eta), both accurate on either side:
 *   ll = lgamma(y + size) - lgamma(size) - lgamma(y + 1)
 *        + size log q + y log p         (the lgamma difference stable for
 *                                          large size, mlmx_gm_lgamma_ratio),
 *   d1 = y q - size p            (= size (y - mu)/(size + mu)),
 *   d2 = (y + size) p q,
 *   fi = size p                  (= mu^2 / (mu + mu^2/size)).
 * log q = -log1pexp(eta - ls) keeps size log q ~ -mu accurate when
 * mu << size (the Poisson limit) instead of log(1 - tiny). */
MLMX_HD mlmx_gm_obs mlmx_gm_negbin(double y, double size, double wt, double eta)
{
    double ls = log(size);
    double p = mlmx_gm_plogis(eta - ls), q = mlmx_gm_plogis(ls - eta);
    double ll = mlmx_gm_lgamma_ratio(y, size) - lgamma(y + 1.0) -
                size * mlmx_gm_log1pexp(eta - ls);
    if (y != 0.0)
        ll -= y * mlmx_gm_log1pexp(ls - eta);
    mlmx_gm_obs o;
    o.ll = wt * ll;
    o.d1 = wt * (y * q - size * p);
    o.d2 = wt * (y + size) * p * q;
    o.fi = wt * size * p;
    o.mu = mlmx_gm_linkinv(MLMX_LINK_LOG, eta);
    return o;
}

/* ------------------------------------------------------------------ ordinal */

/* One category y of the cumulative link model, P = F(b) - F(a) with
 * b = c_y - eta (absent, +inf, for the last category) and a = c_{y-1} - eta
 * (absent, -inf, for the first). With ra = f(a)/P, rb = f(b)/P (0 for an
 * absent end):
 *   d ll/d c_{y-1} = -ra,  d ll/d c_y = rb,  d1 = d ll/d eta = ra - rb,
 *   d2 = d1^2 - (f'(b) - f'(a))/P.
 * Every link gets forms in which neither log P nor d2 cancels in the tails:
 *   logit:   P = F(b) F(-a) (1 - e^{a-b}); ra = F(a)/(F(b)(1 - e^{a-b})),
 *            rb = F(-b)/(F(-a)(1 - e^{a-b})); and since f = F(1 - F),
 *            d1 = F(a) - F(-b), d2 = f(a) + f(b) exactly.
 *   probit:  both ends below 0: P = Phi(b)(1 - rho), rho = Phi(a)/Phi(b),
 *            so rb = r(b)/(1 - rho) and rb + b = (r(b) + b - b rho)/(1 - rho)
 *            with r the inverse Mills ratio; both above 0: the mirror image
 *            in upper tails; straddling 0: P through erf (two terms that
 *            add), where d2 = d1^2 + b rb - a ra has only positive terms.
 *            d2 is written rb (rb + b) + ra (ra - a) - 2 ra rb.
 *   cloglog: S(x) = exp(-e^x); P = S(a) (1 - e^{-D}), D = e^b - e^a
 *            = e^a expm1(b - a); ra = e^a / (1 - e^{-D}),
 *            rb = e^b e^{-D}/(1 - e^{-D}), and with g = D/expm1(D),
 *            d1 = e^a - g, d2 = e^a + g (g + D - 1); the first category is
 *            the binomial cloglog (g, g (g + t - 1) at t = e^b), the last
 *            d1 = d2 = e^a.
 * (b - a is taken as c_y - c_{y-1}, exact in the thresholds, not as a
 * difference of two shifted values.) */
typedef struct mlmx_gm_ocat {
    double lp, ra, rb, d1, d2;
} mlmx_gm_ocat;

MLMX_HD mlmx_gm_ocat mlmx_gm_ord_cat(int link, int y, int K, const double *c, double eta)
{
    mlmx_gm_ocat r;
    int lo = y > 0, hi = y < K - 1;
    double a = lo ? c[y - 1] - eta : 0.0, b = hi ? c[y] - eta : 0.0;
    r.lp = r.ra = r.rb = r.d1 = r.d2 = 0.0;
    if (!lo && !hi) /* K = 1: the only category is certain */
        return r;
    switch (link) {
    case MLMX_LINK_LOGIT: {
        if (lo && hi) {
            double l1m = mlmx_gm_log1mexp(c[y - 1] - c[y]); /* log(1 - e^{a-b}) */
            r.lp = mlmx_gm_log_plogis(b) + mlmx_gm_log_plogis(-a) + l1m;
            r.ra = exp(mlmx_gm_log_plogis(a) - mlmx_gm_log_plogis(b) - l1m);
            r.rb = exp(mlmx_gm_log_plogis(-b) - mlmx_gm_log_plogis(-a) - l1m);
        } else if (hi) {
            r.lp = mlmx_gm_log_plogis(b);
            r.rb = mlmx_gm_plogis(-b);
        } else {
            r.lp = mlmx_gm_log_plogis(-a);
            r.ra = mlmx_gm_plogis(a);
        }
        double Fa = 0.0, Fmb = 0.0, fa = 0.0, fb = 0.0;
        if (lo) {
            Fa = mlmx_gm_plogis(a);
            fa = Fa * mlmx_gm_plogis(-a);
        }
        if (hi) {
            Fmb = mlmx_gm_plogis(-b);
            fb = Fmb * mlmx_gm_plogis(b);
        }
        r.d1 = Fa - Fmb;
        r.d2 = fa + fb;
        return r;
    }
    case MLMX_LINK_PROBIT: {
        double rbb, raa; /* rb + b, ra - a */
        if (hi && !lo) {
            r.lp = mlmx_gm_log_pnorm(b);
            r.rb = mlmx_gm_pnorm_ratio(b, &rbb);
            raa = 0.0;
        } else if (lo && !hi) {
            r.lp = mlmx_gm_log_pnorm(-a);
            r.ra = mlmx_gm_pnorm_ratio(-a, &raa); /* phi(a)/Phi(-a), ra - a */
            rbb = 0.0;
        } else if (b <= 0.0) {
            double lb = mlmx_gm_log_pnorm(b), lr = mlmx_gm_log_pnorm(a) - lb;
            double om = -expm1(lr), rho = exp(lr), rpx;
            r.lp = lb + mlmx_gm_log1mexp(lr);
            r.rb = mlmx_gm_pnorm_ratio(b, &rpx) / om;
            rbb = (rpx - b * rho) / om;
            r.ra = exp(mlmx_gm_log_dnorm(a) - r.lp);
            raa = r.ra - a;
        } else if (a >= 0.0) {
            double la = mlmx_gm_log_pnorm(-a), lr = mlmx_gm_log_pnorm(-b) - la;
            double om = -expm1(lr), sig = exp(lr), rpx;
            r.lp = la + mlmx_gm_log1mexp(lr);
            r.ra = mlmx_gm_pnorm_ratio(-a, &rpx) / om;
            raa = (rpx + a * sig) / om;
            r.rb = exp(mlmx_gm_log_dnorm(b) - r.lp);
            rbb = r.rb + b;
        } else {
            r.lp = log(0.5 * (erf(b * MLMX_GM_SQRT1_2) + erf(-a * MLMX_GM_SQRT1_2)));
            r.ra = exp(mlmx_gm_log_dnorm(a) - r.lp);
            r.rb = exp(mlmx_gm_log_dnorm(b) - r.lp);
            raa = r.ra - a;
            rbb = r.rb + b;
        }
        r.d1 = r.ra - r.rb;
        r.d2 = r.rb * rbb + r.ra * raa - 2.0 * r.ra * r.rb;
        return r;
    }
    case MLMX_LINK_CLOGLOG: {
        if (hi && !lo) {
            double t = exp(b), gt1;
            double g = mlmx_gm_cll_ratio(t, &gt1);
            r.lp = mlmx_gm_log_pcloglog(b);
            r.rb = g;
            r.d1 = -g;
            r.d2 = g > 0.0 ? g * gt1 : 0.0;
        } else if (lo && !hi) {
            double ea = exp(a);
            r.lp = -ea;
            r.ra = ea;
            r.d1 = ea;
            r.d2 = ea;
        } else {
            double ea = exp(a), D = ea * expm1(c[y] - c[y - 1]), gD1;
            double L = mlmx_gm_log1mexp(-D); /* log(1 - e^{-D}) */
            double g = mlmx_gm_cll_ratio(D, &gD1);
            r.lp = -ea + L;
            r.ra = exp(a - L);
            r.rb = exp(b - D - L);
            r.d1 = ea - g;
            r.d2 = ea + (g > 0.0 ? g * gD1 : 0.0);
        }
        return r;
    }
    default:
        r.lp = r.ra = r.rb = r.d1 = r.d2 = MLMX_GM_NAN;
        return r;
    }
}

/* Ordinal cumulative link (logit, probit; cloglog also works), categories
 * k = 0..K-1 (y is the 0-based category), thresholds c[0..K-2] strictly
 * increasing, P(Y <= k) = F(c_k - eta). ll, d1, d2 as above; fi is the
 * multinomial's expected information sum_k P_k d1_k^2 (one pass over the K
 * categories; P_k = 0 terms skipped, their d1 may be infinite).
 * y outside 0..K-1 gives NaN. */
MLMX_HD mlmx_gm_obs mlmx_gm_ordinal(int link, int y, int K, const double *c, double wt,
                                    double eta)
{
    mlmx_gm_obs o;
    o.mu = eta;
    if (y < 0 || y >= K) {
        o.ll = o.d1 = o.d2 = o.fi = MLMX_GM_NAN;
        return o;
    }
    mlmx_gm_ocat r = mlmx_gm_ord_cat(link, y, K, c, eta);
    double fi = 0.0;
    for (int k = 0; k < K; k++) {
        mlmx_gm_ocat rk = mlmx_gm_ord_cat(link, k, K, c, eta);
        if (rk.lp > -MLMX_GM_INF)
            fi += exp(rk.lp) * rk.d1 * rk.d1;
    }
    o.ll = wt * r.lp;
    o.d1 = wt * r.d1;
    o.d2 = wt * r.d2;
    o.fi = wt * fi;
    return o;
}

/* d ll / d c_{y-1} and d ll / d c_y (0 where that threshold does not
 * exist), per unit prior weight: the caller multiplies by wt. */
MLMX_HD void mlmx_gm_ordinal_dc(int link, int y, int K, const double *c, double eta,
                                double *dlo, double *dhi)
{
    if (y < 0 || y >= K) {
        *dlo = *dhi = MLMX_GM_NAN;
        return;
    }
    mlmx_gm_ocat r = mlmx_gm_ord_cat(link, y, K, c, eta);
    *dlo = -r.ra;
    *dhi = r.rb;
}

/* ------------------------------------------------------------------ deviance */

/* Binomial deviance residual on the count scale: mu is the expected count
 * n p (not the probability),
 *   2 wt (y log(y/mu) + (n-y) log((n-y)/(n-mu))),   0 log 0 = 0,
 * which equals R's binomial()$dev.resids(y/n, mu/n, wt*n) (the proportion
 * scale lme4 works on, with the trials as weights). */
MLMX_HD double mlmx_gm_devres_binomial(double y, double n, double wt, double mu)
{
    double ny = n - y, r = 0.0;
    if (y != 0.0)
        r += y * log(y / mu);
    if (ny != 0.0)
        r += ny * log(ny / (n - mu));
    return 2.0 * wt * r;
}

/* Poisson deviance residual, as R's poisson()$dev.resids:
 * 2 wt (y log(y/mu) - (y - mu)), and 2 wt mu at y = 0. */
MLMX_HD double mlmx_gm_devres_poisson(double y, double wt, double mu)
{
    double r = y > 0.0 ? wt * (y * log(y / mu) - (y - mu)) : mu * wt;
    return 2.0 * r;
}

/* NB2 deviance residual (glmmTMB's nbinom2 with size k):
 * 2 (y log(y/mu) - (y + k) log((y + k)/(mu + k))). */
MLMX_HD double mlmx_gm_devres_negbin(double y, double k, double mu)
{
    return 2.0 * ((y > 0 ? y * log(y / mu) : 0.0) - (y + k) * log((y + k) / (mu + k)));
}

/* d ll / d size of the NB2 log-likelihood at mean mu for an integer count
 * y: psi(y + k) - psi(k) (= sum_{j < y} 1/(k + j)) + log(k/(k + mu)) + 1 -
 * (k + y)/(k + mu). */
MLMX_HD double mlmx_gm_negbin_dsize(double y, double k, double mu)
{
    double dig = 0.0;
    for (int j = 0; j < (int)y; j++)
        dig += 1.0 / (k + j);
    return dig + log(k / (k + mu)) + 1.0 - (k + y) / (k + mu);
}

/* ------------------------------------------------------------------ log-sum-exp */

/* Running log(sum(exp(x_i))): m is the running maximum (start -INFINITY), s
 * the sum of exp(x_i - m) (start 0); the result is m + log(s) (-inf when
 * nothing finite was added). One pass, no overflow or underflow of the
 * leading terms. -inf terms add nothing (and would make -inf - -inf); an
 * x equal to m adds exactly 1 (so +inf twice stays +inf); NaN propagates. */
MLMX_HD void mlmx_gm_lse_add(double *m, double *s, double x)
{
    if (x == -MLMX_GM_INF)
        return;
    if (x <= *m) {
        *s += x == *m ? 1.0 : exp(x - *m);
    } else {
        *s = *s * exp(*m - x) + 1.0;
        *m = x;
    }
}

/* ------------------------------------------------------------------ */
/* Closed forms of the canonical links for the fused loops (PIRLS, the   */
/* quadratures, the gradients): one exp and at most one log per           */
/* observation. The general functions above stay the reference; these   */
/* are the same mathematics, arranged for speed.                          */
/* ------------------------------------------------------------------ */

/* The logistic mean at eta through e = exp(-|eta|) in (0, 1] and 1 + e,
 * which the callers reuse. */
MLMX_HD double mlmx_gm_logit_mu(double eta, double *e, double *ope)
{
    double ee = exp(-fabs(eta)), o = 1.0 + ee;
    *e = ee;
    *ope = o;
    return eta >= 0 ? 1.0 / o : ee / o;
}

/* log(1 + e) for e in (0, 1]: log(1 + e) is within an ulp of 1 in absolute
 * terms above 1e-4 (what a sum of log-likelihoods needs), and the series
 * below; glibc's log1p costs twice log in the quadrature's inner loop. */
MLMX_HD double mlmx_gm_log1p_unit(double e, double ope)
{
    return e > 1e-4 ? log(ope) : e * (1.0 - e * (0.5 - e * (1.0 / 3.0)));
}

/* Binomial logit: log-likelihood (with the constant llc = log choose(n,
 * y)), d ll / d eta and the information, y successes of nt. */
MLMX_HD double mlmx_gm_logit_fast(double y, double nt, double llc, double eta, double *d1,
                                  double *fi)
{
    double e, ope;
    double mu = mlmx_gm_logit_mu(eta, &e, &ope);
    *d1 = y - nt * mu;
    *fi = nt * mu * (1.0 - mu);
    return y * eta - nt * ((eta > 0.0 ? eta : 0.0) + mlmx_gm_log1p_unit(e, ope)) + llc;
}

/* Poisson log link: log-likelihood (llc = -log y!), d ll / d eta and the
 * information. */
MLMX_HD double mlmx_gm_poisson_fast(double y, double llc, double eta, double *d1, double *fi)
{
    double mu = exp(eta);
    *d1 = y - mu;
    *fi = mu;
    return y * eta - mu + llc;
}

/* d W / d eta of the canonical links' working weight W (nt trials; the
 * Poisson weight is mu itself). */
MLMX_HD double mlmx_gm_wprime(int poisson, double nt, double eta)
{
    if (poisson)
        return exp(eta);
    double e = exp(-fabs(eta));
    double mu = eta >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    return nt * mu * (1.0 - mu) * (1.0 - 2.0 * mu);
}

/* Cumulative logit, one observation of category y (0..K-1) at eta, with
 * thresholds c. With A = c_{y-1} - eta and B = c_y - eta,
 *   log P = -log1pexp(-B) - log1pexp(A) + log(1 - e^(A-B)),
 * whose last term depends on the thresholds only (lc[y]); each
 * log1pexp(x) is max(x, 0) + log(1 + e^-|x|), and the caller multiplies the
 * (1 + e^-|x|) factors (both in (1, 2]) into *prod and takes one log per
 * cluster; the return value is the rest. Also d ll/d eta = F(A) + F(B) - 1,
 * -d2 ll/d eta2 = F'(A) + F'(B), and d ll/d c_{y-1} = -F(A) - r_y,
 * d ll/d c_y = 1 - F(B) + r_y with r_y = 1/(e^(c_y - c_{y-1}) - 1). */
MLMX_HD double mlmx_gm_ord_logit_obs(const double *c, int K, const double *lc, const double *rr,
                                     int y, double eta, double *prod, double *d1, double *d2,
                                     double *dlo, double *dhi)
{
    double lin = 0.0, fa = 0.0, fb = 1.0, va = 0.0, vb = 0.0;
    if (y > 0) { /* A term: -log1pexp(A) */
        double A = c[y - 1] - eta, e = exp(-fabs(A)), ope = 1.0 + e;
        lin -= A > 0.0 ? A : 0.0;
        *prod *= ope;
        fa = A >= 0 ? 1.0 / ope : e / ope;
        va = fa * (1.0 - fa);
    }
    if (y < K - 1) { /* B term: -log1pexp(-B) */
        double B = c[y] - eta, e = exp(-fabs(B)), ope = 1.0 + e;
        lin -= B < 0.0 ? -B : 0.0;
        *prod *= ope;
        fb = B >= 0 ? 1.0 / ope : e / ope;
        vb = fb * (1.0 - fb);
    }
    double r = 0.0;
    if (y > 0 && y < K - 1) {
        lin += lc[y];
        r = rr[y];
    }
    *d1 = fa + fb - 1.0;
    *d2 = va + vb;
    *dlo = y > 0 ? -fa - r : 0.0;
    *dhi = y < K - 1 ? 1.0 - fb + r : 0.0;
    return lin;
}

#endif
