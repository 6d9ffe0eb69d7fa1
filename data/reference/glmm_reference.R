## glmm_reference.R -- lme4 / ordinal / glmmTMB reference fixtures for mlmx's
## GLMM code, plus brute-force quadrature values that no package computes.
##
## Run from the repository root:
##
##   OPENBLAS_NUM_THREADS=1 Rscript data/reference/glmm_reference.R data
##
## The committed fixtures were made with address-space randomization off,
##
##   OPENBLAS_NUM_THREADS=1 setarch -R Rscript data/reference/glmm_reference.R data
##
## which makes the output bit-reproducible on one machine.  Without it only
## grouseticks_pois moves between runs (by ~3e-5 relative in theta/beta and ~1%
## in its finite-difference SEs): its objective is nearly flat (HEIGHT is not
## centred) and the OpenBLAS rounding depends on where R's vectors land in
## memory.  elapsed_default_s lines always change.
##
## Argument 1: directory holding the CSVs (default "data"): cbpp.csv,
## grouseticks.csv, verbagg.csv, wine.csv, salamanders.csv, hdp.csv, flay.csv.
## A case whose CSV is missing is skipped with a message.
##
## Needs (Debian bookworm): r-base-core, r-cran-lme4, r-cran-ordinal, r-cran-numderiv,
## r-cran-glmmtmb.  Written against R 4.2.2, lme4 1.1-31, ordinal 2022.11-16,
## glmmTMB 1.1.5.  Takes about six minutes on one core (numDeriv Hessians).
##
## Output, in data/reference/glmm/:
##   <case>.ref                 one per fitted case (format: data/reference/README.md,
##                              section "GLMM fixtures")
##   <case>_devfun.csv          lme4's deviance function at three parameter
##                              vectors, for every lme4 case except hdp3_laplace
##   hdp_sub_nested_bruteforce.ref, flay_sub_nested_bruteforce.ref,
##   hdp_sub_onelevel_bruteforce.ref
##                              nested / one-level non-adaptive Gauss-Hermite
##                              marginal log-likelihoods at fixed parameters
##
## Every model is fitted with the package's default control and again with
## tight optimizer tolerances; the fit with the higher log-likelihood is
## written.  The package's own log-likelihood depends on inner tolerances
## (lme4's PIRLS tolPwrss, clmm's gradTol), so the fits are compared by an
## exact criterion evaluated at their estimates: for lme4 exact_devfun(), for
## clmm this script's marg_single().  For lme4 cases the optimum of the exact
## criterion is also written (exact_opt_* keys).  stdout shows, per case, the
## log-likelihoods, the largest relative difference in the estimates and the
## checks described in the README.
##
## All log-likelihoods written as `loglik` are FULL log-likelihoods:
## sum_i log p(y_i | ...) including binomial coefficients / log(y!) terms,
## integrated over the random effects.  lme4's nAGQ > 1 binomial fits print a
## value relative to the saturated model instead; the conversion is explained
## and checked below (sat_const()).

invisible(Sys.setlocale("LC_COLLATE", "C"))   # mlmx sorts factor levels in byte order

suppressPackageStartupMessages({
  library(lme4)
  library(ordinal)
  library(glmmTMB)
})

args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args) >= 1) args[1] else "data"
out_dir <- file.path("data", "reference", "glmm")
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)
if (Sys.getenv("OPENBLAS_NUM_THREADS") != "1")
  message("warning: OPENBLAS_NUM_THREADS is not 1; results may differ in the last digits")

g17 <- function(x) sprintf("%.17g", x)
nospace <- function(x) gsub(" ", "", x, fixed = TRUE)   # tokens are space-separated

read_data <- function(file) {
  path <- file.path(data_dir, file)
  if (!file.exists(path)) return(NULL)
  ## strings -> factors with byte-sorted levels; numeric columns stay numeric
  read.csv(path, stringsAsFactors = TRUE)
}

maxrel <- function(a, b) {
  if (!length(a)) return(0)
  max(abs(a - b) / pmax(abs(b), 1e-8))
}

## Evaluate expr, collecting warnings and messages; returns value, msgs, elapsed s.
quietly <- function(expr) {
  msgs <- character()
  t0 <- proc.time()[["elapsed"]]
  val <- withCallingHandlers(expr,
    warning = function(w) { msgs <<- c(msgs, paste("warning:", conditionMessage(w)))
                            invokeRestart("muffleWarning") },
    message = function(m) { msgs <<- c(msgs, paste("message:", conditionMessage(m)))
                            invokeRestart("muffleMessage") })
  el <- proc.time()[["elapsed"]] - t0
  ## ordinal repeats its inner-loop warnings with "at iteration N": count them
  msgs <- gsub("[[:space:]]+", " ", gsub("at iteration [0-9]+", "", msgs))
  tab <- table(msgs)
  msgs <- if (length(tab)) paste0(names(tab), ifelse(tab > 1, sprintf(" (x%d)", tab), "")) else character()
  list(value = val, msgs = msgs, elapsed = el)
}

logsumexp <- function(x) { m <- max(x); if (!is.finite(m)) return(m); m + log(sum(exp(x - m))) }

###########################################################################
## Gauss-Hermite rule for the standard normal density:
##   integral phi(z) f(z) dz ~= sum_k w_k f(z_k),  sum w_k = 1.
## Golub-Welsch start, then Newton on the orthonormal Hermite recurrence;
## weights are Christoffel numbers 1 / sum_{k<n} p_k(z)^2 (accurate to a few
## ulps even for n = 300).
gh_prob <- function(n) {
  if (n == 1) return(list(z = 0, w = 1))
  J <- matrix(0, n, n)
  off <- sqrt(seq_len(n - 1))
  J[cbind(1:(n - 1), 2:n)] <- off
  J[cbind(2:n, 1:(n - 1))] <- off
  z <- sort(eigen(J, symmetric = TRUE, only.values = TRUE)$values)
  rec <- function(z) {  # p_{n-1}, p_n and log sum_{k<n} p_k^2 (rescaled: no overflow)
    pm1 <- rep(0, length(z)); p <- rep(1, length(z)); s <- p^2
    lsc <- rep(0, length(z))           # the true p_k are p * exp(lsc)
    for (k in 0:(n - 1)) {
      pn <- (z * p - sqrt(k) * pm1) / sqrt(k + 1)
      pm1 <- p; p <- pn
      if (k < n - 1) s <- s + p^2
      big <- abs(p) > 1e100
      if (any(big)) {
        p[big] <- p[big] * 1e-100; pm1[big] <- pm1[big] * 1e-100
        s[big] <- s[big] * 1e-200; lsc[big] <- lsc[big] + 100 * log(10)
      }
    }
    list(pnm1 = pm1, pn = p, logs = log(s) + 2 * lsc)
  }
  for (it in 1:20) {
    r <- rec(z)
    dz <- r$pn / (sqrt(n) * r$pnm1)
    z <- z - dz
    if (max(abs(dz)) < 1e-15 * max(1, max(abs(z)))) break
  }
  z <- (z - rev(z)) / 2              # exact symmetry
  w <- exp(-rec(z)$logs)
  w <- (w + rev(w)) / 2
  list(z = z, w = w / sum(w))
}

###########################################################################
## Conditional log densities log p(y | eta) and their first two derivatives
## in eta (observed: d2; expected/Fisher: d2f).  eta may be a matrix whose
## rows correspond to the observations (y, n recycled down the columns).
log1pexp <- function(x) ifelse(x > 0, x + log1p(exp(-x)), log1p(exp(x)))

fam_binomial <- function(link) {
  switch(link,
    logit = list(
      logp = function(eta, y, n) lchoose(n, y) + y * eta - n * log1pexp(eta),
      d1   = function(eta, y, n) y - n * plogis(eta),
      d2   = function(eta, y, n) { p <- plogis(eta); -n * p * (1 - p) },
      d2f  = function(eta, y, n) { p <- plogis(eta); -n * p * (1 - p) }),
    probit = {
      r <- function(eta) {
        ld <- dnorm(eta, log = TRUE)
        list(r1 = exp(ld - pnorm(eta, log.p = TRUE)),
             r0 = exp(ld - pnorm(eta, lower.tail = FALSE, log.p = TRUE)))
      }
      list(
        logp = function(eta, y, n) lchoose(n, y) + y * pnorm(eta, log.p = TRUE) +
          (n - y) * pnorm(eta, lower.tail = FALSE, log.p = TRUE),
        d1 = function(eta, y, n) { q <- r(eta); y * q$r1 - (n - y) * q$r0 },
        d2 = function(eta, y, n) { q <- r(eta); d1 <- y * q$r1 - (n - y) * q$r0
                                   -eta * d1 - (y * q$r1^2 + (n - y) * q$r0^2) },
        d2f = function(eta, y, n) { q <- r(eta); -n * q$r1 * q$r0 })
    },
    cloglog = {
      r <- function(eta) {
        ee <- exp(eta)
        logmu <- log(-expm1(-ee))
        list(ee = ee, r1 = exp(eta - ee - logmu), r0 = ee)
      }
      list(
        logp = function(eta, y, n) { ee <- exp(eta)
                                     lchoose(n, y) + y * log(-expm1(-ee)) - (n - y) * ee },
        d1 = function(eta, y, n) { q <- r(eta); y * q$r1 - (n - y) * q$r0 },
        d2 = function(eta, y, n) { q <- r(eta); d1 <- y * q$r1 - (n - y) * q$r0
                                   (1 - q$ee) * d1 - (y * q$r1^2 + (n - y) * q$r0^2) },
        d2f = function(eta, y, n) { q <- r(eta); -n * q$r1 * q$r0 })
    })
}

fam_poisson <- list(
  logp = function(eta, y, n) y * eta - exp(eta) - lgamma(y + 1),
  d1   = function(eta, y, n) y - exp(eta),
  d2   = function(eta, y, n) -exp(eta) + 0 * y,
  d2f  = function(eta, y, n) -exp(eta) + 0 * y)

fam_nb2 <- function(size) list(
  logp = function(eta, y, n) {
    mu <- exp(eta)
    lgamma(y + size) - lgamma(size) - lgamma(y + 1) +
      size * (log(size) - log(size + mu)) + y * (eta - log(size + mu))
  },
  d1  = function(eta, y, n) { mu <- exp(eta); y - (y + size) * mu / (mu + size) },
  d2  = function(eta, y, n) { mu <- exp(eta); -(y + size) * mu * size / (mu + size)^2 },
  d2f = function(eta, y, n) { mu <- exp(eta); -mu * size / (mu + size) + 0 * y })

## Cumulative link: P(Y <= k) = F(alpha_k - eta); y is the category index 1..K.
fam_ordinal <- function(alpha, link) {
  Fl <- switch(link, logit = function(x, lower = TRUE) plogis(x, lower.tail = lower, log.p = TRUE),
                     probit = function(x, lower = TRUE) pnorm(x, lower.tail = lower, log.p = TRUE))
  f  <- switch(link, logit = function(x) { p <- plogis(x); p * (1 - p) }, probit = dnorm)
  fp <- switch(link, logit = function(x) { p <- plogis(x); p * (1 - p) * (1 - 2 * p) },
                     probit = function(x) -x * dnorm(x))
  th <- c(-Inf, alpha, Inf)
  ab <- function(eta, y) list(a = th[y + 1] - eta, b = th[y] - eta)
  logp <- function(eta, y, n) {
    q <- ab(eta, y); a <- q$a; b <- q$b
    out <- a                          # same shape as eta
    up <- is.infinite(a)              # top category: 1 - F(b)
    lo <- is.infinite(b)              # bottom category: F(a)
    mid <- !up & !lo
    out[up] <- Fl(b[up], lower = FALSE)
    out[lo] <- Fl(a[lo])
    pos <- mid & b > 0                # both in the upper tail
    neg <- mid & !(b > 0)
    out[pos] <- Fl(b[pos], FALSE) + log1p(-exp(Fl(a[pos], FALSE) - Fl(b[pos], FALSE)))
    out[neg] <- Fl(a[neg]) + log1p(-exp(Fl(b[neg]) - Fl(a[neg])))
    out
  }
  fz <- function(x) ifelse(is.infinite(x), 0, f(x))
  fpz <- function(x) ifelse(is.infinite(x), 0, fp(x))
  list(logp = logp,
       d1 = function(eta, y, n) { q <- ab(eta, y)
         -(fz(q$a) - fz(q$b)) / exp(logp(eta, y, n)) },
       d2 = function(eta, y, n) { q <- ab(eta, y); p <- exp(logp(eta, y, n))
         d1 <- -(fz(q$a) - fz(q$b)) / p
         (fpz(q$a) - fpz(q$b)) / p - d1^2 })
}

###########################################################################
## Marginal log-likelihood of a single scalar random intercept model, per
## cluster:  log integral phi(u) prod_i p(y_i | eta0_i + sd * u) du.
##   method "agq":       K-point adaptive Gauss-Hermite about the mode u^,
##                       scale 1/sqrt(-g''(u^)) (hess = "observed") or from
##                       the expected information (hess = "fisher", as lme4's
##                       PIRLS weights); K = 1 is the Laplace approximation.
##   method "integrate": stats::integrate() on (-Inf, u^] and [u^, Inf),
##                       rel.tol 1e-12 (the brute force).
marg_single <- function(fam, eta0, y, n, grp, sd, K = 1, hess = "observed",
                        method = "agq") {
  grp <- droplevels(factor(grp))
  gi <- as.integer(grp); J <- nlevels(grp)
  rs <- function(x) rowsum(x, gi, reorder = TRUE)        # per-cluster sums
  if (sd == 0) return(setNames(drop(rs(fam$logp(eta0, y, n))), levels(grp)))
  gfun <- function(u) drop(rs(fam$logp(eta0 + sd * u[gi], y, n))) + dnorm(u, log = TRUE)
  ## Newton for the conditional modes of all clusters at once, step halving per cluster
  u <- rep(0, J); gu <- gfun(u)
  for (it in 1:200) {
    E <- eta0 + sd * u[gi]
    g1 <- sd * drop(rs(fam$d1(E, y, n))) - u
    g2 <- sd^2 * drop(rs(fam$d2(E, y, n))) - 1
    step <- -g1 / g2
    for (h in 1:60) {
      gn <- gfun(u + step)
      bad <- gn < gu - 1e-13 * abs(gu) & abs(step) > 1e-14
      if (!any(bad)) break
      step[bad] <- step[bad] / 2
    }
    u <- u + step; gu <- gfun(u)
    if (max(abs(step) / (1 + abs(u))) < 1e-12) break
  }
  if (method == "integrate") {
    out <- vapply(seq_len(J), function(j) {
      ii <- which(gi == j); e <- eta0[ii]; yy <- y[ii]; nn <- n[ii]
      g <- function(v) colSums(matrix(fam$logp(outer(e, sd * v, "+"), yy, nn),
                                      nrow = length(ii))) + dnorm(v, log = TRUE)
      f <- function(v) exp(g(v) - gu[j])
      I1 <- integrate(f, -Inf, u[j], rel.tol = 1e-12, subdivisions = 2000L)$value
      I2 <- integrate(f, u[j], Inf, rel.tol = 1e-12, subdivisions = 2000L)$value
      gu[j] + log(I1 + I2)
    }, numeric(1))
    return(setNames(out, levels(grp)))
  }
  d2fun <- if (hess == "fisher") fam$d2f else fam$d2
  H <- 1 - sd^2 * drop(rs(d2fun(eta0 + sd * u[gi], y, n)))
  s <- 1 / sqrt(H)
  gh <- gh_prob(K)
  V <- u + outer(s, gh$z)                                 # J x K nodes
  G <- rs(fam$logp(eta0 + sd * V[gi, , drop = FALSE], y, n)) + dnorm(V, log = TRUE)
  B <- G + rep(log(gh$w) + gh$z^2 / 2, each = J)
  mx <- apply(B, 1, max)
  setNames(log(s) + 0.5 * log(2 * pi) + mx + log(rowSums(exp(B - mx))), levels(grp))
}

###########################################################################
## lme4's nAGQ > 1 scale.  lme4's C++ glmerAGQ accumulates the
## family's deviance residuals, sum devResid(y, mu), where the Laplace code
## uses the family's aic() = -2 sum log p(y | mu).  The difference,
##   aic(mu) - sum devResid(mu) = -2 sum log p(y | mu = y)
## (the saturated model's log-likelihood, binomial coefficients included),
## does not depend on mu, so
##   full loglik = lme4-printed loglik + sat,   sat = sum log p(y | mu = y).
sat_const <- function(fit) {
  r <- fit@resp
  via_resp <- -0.5 * (r$aic() - sum(r$devResid()))
  fam <- family(fit)$family
  direct <- if (fam == "binomial") {
    n <- r$weights; k <- round(r$y * n)
    sum(dbinom(k, n, r$y, log = TRUE))
  } else if (fam == "poisson") {
    sum(dpois(r$y, r$y, log = TRUE))
  } else NA_real_
  c(via_resp = via_resp, direct = direct)
}

###########################################################################
## Cases

## Tight fits also tighten PIRLS (tolPwrss, default 1e-7): with the default,
## PIRLS stops early and lme4's Laplace value is off by up to ~0.04 in the
## log-likelihood (hdp2), which is noise the optimizer then has to fight.
tight_pwrss <- 1e-12
tight_bobyqa <- glmerControl(optimizer = "bobyqa", tolPwrss = tight_pwrss,
                             optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
tight_nlopt  <- glmerControl(optimizer = "nloptwrap", tolPwrss = tight_pwrss,
                             optCtrl = list(xtol_rel = 1e-12, xtol_abs = 1e-12,
                                            ftol_rel = 1e-14, ftol_abs = 1e-14,
                                            maxeval = 1e5))
tight_clmm <- clmm.control(gradTol = 1e-10, maxIter = 500, rel.tol = 1e-13,
                           x.tol = 1e-12, eval.max = 1e4, iter.max = 1e4)
tight_tmb <- glmmTMBControl(optCtrl = list(rel.tol = 1e-14, x.tol = 1e-12,
                                           iter.max = 1e4, eval.max = 1e4))

cbpp_f <- "cbind(incidence, size - incidence) ~ factor(period) + (1|herd)"
hdp2_f <- "remission ~ IL6 + CRP + CancerStage + LengthofStay + Experience + (1|DID)"
wine_f <- "rating ~ temp + contact + (1|judge)"
sal_f  <- "count ~ spp * mined + (1|site)"

cases <- list(
  list(name = "cbpp_laplace", data = "cbpp.csv", pkg = "lme4", family = "binomial",
       link = "logit", nagq = 1, formula = cbpp_f, group = "herd"),
  list(name = "cbpp_agq25", data = "cbpp.csv", pkg = "lme4", family = "binomial",
       link = "logit", nagq = 25, formula = cbpp_f, group = "herd", brute = TRUE),
  list(name = "cbpp_agq0", data = "cbpp.csv", pkg = "lme4", family = "binomial",
       link = "logit", nagq = 0, formula = cbpp_f, group = "herd"),
  list(name = "cbpp_probit_laplace", data = "cbpp.csv", pkg = "lme4", family = "binomial",
       link = "probit", nagq = 1, formula = cbpp_f, group = "herd"),
  list(name = "cbpp_cloglog_laplace", data = "cbpp.csv", pkg = "lme4", family = "binomial",
       link = "cloglog", nagq = 1, formula = cbpp_f, group = "herd"),
  list(name = "grouseticks_pois", data = "grouseticks.csv", pkg = "lme4", family = "poisson",
       link = "log", nagq = 1,
       formula = "TICKS ~ factor(YEAR) + HEIGHT + (1|BROOD) + (1|INDEX) + (1|LOCATION)"),
  list(name = "verbagg_laplace", data = "verbagg.csv", pkg = "lme4", family = "binomial",
       link = "logit", nagq = 1,
       formula = "r2 ~ Anger + Gender + btype + situ + (1|id) + (1|item)"),
  list(name = "hdp2_laplace", data = "hdp.csv", pkg = "lme4", family = "binomial",
       link = "logit", nagq = 1, formula = hdp2_f, group = "DID"),
  list(name = "hdp2_agq10", data = "hdp.csv", pkg = "lme4", family = "binomial",
       link = "logit", nagq = 10, formula = hdp2_f, group = "DID", brute = TRUE),
  list(name = "hdp3_laplace", data = "hdp.csv", pkg = "lme4", family = "binomial",
       link = "logit", nagq = 1, slow = TRUE,
       formula = paste("remission ~ Age + LengthofStay + FamilyHx + IL6 + CRP",
                       "+ CancerStage + Experience + (1|DID) + (1|HID)")),
  list(name = "wine_laplace", data = "wine.csv", pkg = "ordinal", family = "ordinal",
       link = "logit", nagq = 1, formula = wine_f, group = "judge"),
  list(name = "wine_agq10", data = "wine.csv", pkg = "ordinal", family = "ordinal",
       link = "logit", nagq = 10, formula = wine_f, group = "judge"),
  list(name = "wine_probit_laplace", data = "wine.csv", pkg = "ordinal", family = "ordinal",
       link = "probit", nagq = 1, formula = wine_f, group = "judge"),
  list(name = "salamanders_nb2", data = "salamanders.csv", pkg = "glmmTMB", family = "negbin",
       link = "log", nagq = 1, formula = sal_f, group = "site"),
  list(name = "salamanders_pois", data = "salamanders.csv", pkg = "lme4", family = "poisson",
       link = "log", nagq = 1, formula = sal_f, group = "site")
)

r_family <- function(cs) switch(cs$family,
  binomial = binomial(link = cs$link), poisson = poisson(link = cs$link))

## ---- fitting -----------------------------------------------------------

fit_lme4 <- function(cs, dat, control, start = NULL) {
  form <- as.formula(cs$formula)
  if (is.null(control))
    glmer(form, data = dat, family = r_family(cs), nAGQ = cs$nagq, start = start)
  else
    glmer(form, data = dat, family = r_family(cs), nAGQ = cs$nagq, control = control,
          start = start)
}

fit_clmm <- function(cs, dat, control) {
  clmm(as.formula(cs$formula), data = dat, link = cs$link, nAGQ = cs$nagq,
       control = control)
}

fit_tmb <- function(cs, dat, control) {
  glmmTMB(as.formula(cs$formula), data = dat, family = nbinom2(link = cs$link),
          control = control)
}

## ---- a uniform summary of one fit ---------------------------------------

summ_lme4 <- function(cs, fit) {
  ll_pr <- as.numeric(logLik(fit))
  sat <- if (cs$nagq > 1) sat_const(fit) else c(via_resp = 0, direct = 0)
  sat["used"] <- if (is.na(sat[["direct"]])) sat[["via_resp"]] else sat[["direct"]]
  th <- getME(fit, "theta")
  be <- fixef(fit)
  vc <- as.data.frame(VarCorr(fit))
  ng <- ngrps(fit)
  se_rx <- suppressWarnings(sqrt(diag(as.matrix(vcov(fit, use.hessian = FALSE)))))
  list(loglik = ll_pr + sat[["used"]], loglik_printed = ll_pr, sat = sat,
       df = attr(logLik(fit), "df"), nobs = nobs(fit),
       theta = th, theta_names = nospace(names(th)),
       beta = be, fixef_names = nospace(names(be)),
       se = sqrt(diag(as.matrix(vcov(fit)))), se_rx = se_rx,
       ngroups = paste0(names(ng), "=", ng),
       vc = data.frame(grp = nospace(vc$grp), name = nospace(vc$var1),
                       var = vc$vcov, sd = vc$sdcor)[is.na(vc$var2), ],
       singular = as.integer(isSingular(fit)),
       est = c(th, be))
}

summ_clmm <- function(cs, fit) {
  ll <- as.numeric(logLik(fit))
  st <- vapply(fit$ST, function(m) m[1, 1], numeric(1))
  V <- vcov(fit)
  se <- sqrt(diag(V))
  ng <- fit$dims$nlev.re
  list(loglik = ll, df = attr(logLik(fit), "df"), nobs = nobs(fit),
       theta = st, theta_names = paste0(names(fit$ST), ".(Intercept)"),
       beta = fit$beta, fixef_names = nospace(names(fit$beta)),
       se = se[names(fit$beta)],
       thresholds = fit$alpha, threshold_names = names(fit$alpha),
       threshold_se = se[names(fit$alpha)],
       ngroups = paste0(names(ng), "=", ng),
       vc = data.frame(grp = names(fit$ST), name = "(Intercept)", var = st^2, sd = st),
       singular = as.integer(any(st < 1e-4)),
       est = c(st, fit$beta, fit$alpha))
}

summ_tmb <- function(cs, fit) {
  ll <- as.numeric(logLik(fit))
  be <- fixef(fit)$cond
  sdv <- attr(VarCorr(fit)$cond[[1]], "stddev")
  grp <- names(VarCorr(fit)$cond)
  sdr <- summary(fit$sdr)
  ng <- vapply(fit$modelInfo$reTrms$cond$flist, nlevels, numeric(1))
  list(loglik = ll, df = attr(logLik(fit), "df"), nobs = nobs(fit),
       theta = unname(sdv), theta_names = paste0(grp, ".", names(sdv)),
       beta = be, fixef_names = nospace(names(be)),
       se = sqrt(diag(vcov(fit)$cond)),
       ngroups = paste0(names(ng), "=", ng),
       vc = data.frame(grp = grp, name = names(sdv), var = unname(sdv)^2, sd = unname(sdv)),
       dispersion = sigma(fit), dispersion_log = unname(fit$fit$par["betad"]),
       dispersion_log_se = unname(sdr[rownames(sdr) == "betad", "Std. Error"]),
       singular = as.integer(any(sdv < 1e-4)),
       est = c(sdv, be, sigma(fit)))
}

## ---- this script's own evaluation of the package's approximation -----------

recompute <- function(cs, dat, s, K = cs$nagq, hess = NULL, method = "agq") {
  if (is.null(cs$group)) return(NA_real_)
  form <- lme4::nobars(as.formula(cs$formula))
  g <- dat[[cs$group]]
  if (cs$family == "ordinal") {
    X <- model.matrix(form, dat)[, -1, drop = FALSE]   # clmm: no intercept column
    y <- as.integer(dat[[all.vars(form)[1]]])
    fam <- fam_ordinal(s$thresholds, cs$link)
    n <- rep(1, length(y))
  } else {
    mf <- model.frame(form, dat)
    X <- model.matrix(form, mf)
    resp <- model.response(mf)
    if (is.matrix(resp)) { y <- resp[, 1]; n <- resp[, 1] + resp[, 2] }
    else if (is.factor(resp)) { y <- as.numeric(resp != levels(resp)[1]); n <- rep(1, length(y)) }
    else { y <- resp; n <- rep(1, length(y)) }
    fam <- switch(cs$family, binomial = fam_binomial(cs$link), poisson = fam_poisson,
                  negbin = fam_nb2(s$dispersion))
  }
  stopifnot(identical(colnames(X), names(s$beta)) || cs$family == "ordinal")
  eta0 <- drop(X %*% s$beta)
  if (is.null(hess))   # lme4 uses expected (PIRLS) weights; clmm and TMB the observed Hessian
    hess <- if (cs$pkg == "lme4") "fisher" else "observed"
  sum(marg_single(fam, eta0, y, n, g, s$theta[1], K = max(K, 1), hess = hess,
                  method = method))
}

## ---- the "exact" lme4 criterion --------------------------------------------
## lme4's Laplace deviance is ldL2 + sqrL + aic(mu), but ldL2 comes from the
## Cholesky factor built with the PIRLS weights of the PREVIOUS iterate (the
## last PIRLS step updates u and mu, not L), and PIRLS stops when the relative
## change in the penalized deviance is below tolPwrss (1e-7 by default).  Both
## make the value differ from the Laplace approximation at the exact
## conditional mode.  The exact version used here: lme4's own deviance
## function with tolPwrss 1e-12, then L refactored at the final weights.
## (For nAGQ > 1, the exact criterion is marg_single() with K nodes centred at
## the exact mode, scaled with the expected information as lme4 does.)
## Returns a function of lme4's parameter vector (theta for nAGQ = 0, else
## c(theta, beta)) giving -2 * full log-likelihood.
exact_devfun <- function(cs, dat, xnames) {
  if (cs$nagq > 1)
    return(function(pars) -2 * recompute(cs, dat, list(theta = pars[1],
                                                      beta = setNames(pars[-1], xnames))))
  dfun <- suppressWarnings(suppressMessages(
    glmer(as.formula(cs$formula), data = dat, family = r_family(cs), nAGQ = cs$nagq,
          devFunOnly = TRUE, control = glmerControl(tolPwrss = tight_pwrss))))
  rho <- environment(dfun)
  function(pars) {
    dfun(pars)
    rho$pp$updateXwts(rho$resp$sqrtXwt)
    rho$pp$updateDecomp()
    rho$pp$ldL2() + rho$pp$sqrL(1) + rho$resp$aic()
  }
}

## Optimum of the exact criterion (minqa::bobyqa, started at an lme4 fit).
exact_optimum <- function(f, fit, nagq) {
  th <- getME(fit, "theta"); lo <- getME(fit, "lower")
  start <- if (nagq == 0) th else c(th, fixef(fit))
  lower <- if (nagq == 0) lo else c(lo, rep(-Inf, length(fixef(fit))))
  start <- pmax(start, lower)
  t0 <- proc.time()[["elapsed"]]
  o <- minqa::bobyqa(start, f, lower = lower,
                     control = list(rhobeg = 2e-3, rhoend = 1e-10, maxfun = 2e4))
  o2 <- minqa::bobyqa(o$par, f, lower = lower,   # restart with a fresh quadratic model
                      control = list(rhobeg = 1e-4, rhoend = 1e-11, maxfun = 2e4))
  fe <- o$feval + o2$feval
  if (o2$fval < o$fval) o <- o2
  list(par = o$par, dev = o$fval, feval = fe, secs = proc.time()[["elapsed"]] - t0)
}

## ---- writer ------------------------------------------------------------

write_ref <- function(cs, s, extra) {
  lines <- character()
  add <- function(key, ...) lines <<- c(lines, paste(c(key, ...), collapse = " "))
  add("case", cs$name)
  add("data", cs$data)
  add("formula", cs$formula)
  if (!is.null(cs$response_note)) add("response", cs$response_note)
  add("family", cs$family)
  add("link", cs$link)
  add("nagq", cs$nagq)
  add("package", cs$pkg)
  add("pkg_version", as.character(packageVersion(cs$pkg)))
  add("loglik", g17(s$loglik))
  if (!is.null(s$loglik_printed)) add("loglik_lme4_printed", g17(s$loglik_printed))
  add("deviance", g17(-2 * s$loglik))
  add("df", g17(s$df))
  add("aic", g17(-2 * s$loglik + 2 * s$df))
  add("bic", g17(-2 * s$loglik + log(s$nobs) * s$df))
  add("nobs", g17(s$nobs))
  add("theta", g17(s$theta))
  add("theta_names", s$theta_names)
  add("fixef_names", s$fixef_names)
  add("beta", g17(s$beta))
  add("se", g17(s$se))
  if (!is.null(s$se_rx)) add("se_rx", g17(s$se_rx))
  if (!is.null(s$thresholds)) {
    add("threshold_names", s$threshold_names)
    add("thresholds", g17(s$thresholds))
    add("threshold_se", g17(s$threshold_se))
  }
  if (!is.null(s$dispersion)) {
    add("dispersion", g17(s$dispersion))
    add("dispersion_log", g17(s$dispersion_log))
    add("dispersion_log_se", g17(s$dispersion_log_se))
  }
  add("ngroups", s$ngroups)
  for (i in seq_len(nrow(s$vc)))
    add("vc", s$vc$grp[i], s$vc$name[i], g17(s$vc$var[i]), g17(s$vc$sd[i]))
  add("singular", s$singular)
  for (k in names(extra)) add(k, extra[[k]])
  writeLines(lines, file.path(out_dir, paste0(cs$name, ".ref")))
}

write_csv_plain <- function(df, file) {
  num <- vapply(df, is.numeric, logical(1))
  df[num] <- lapply(df[num], g17)
  write.table(df, file.path(out_dir, file), sep = ",", quote = FALSE,
              row.names = FALSE, col.names = TRUE)
}

## ---- lme4 deviance function ----------------------------------------------
## Three parameter vectors: the written estimates and two perturbed points
## (theta * 1.2 + 0.05 with beta + se/2; theta * 0.7 with beta -/+ se/2 alternating).
## Columns (all -2 * log-likelihood):
##   deviance              lme4's devfun with tolPwrss 1e-12, full scale
##   deviance_lme4         the same on lme4's own scale (differs for nAGQ > 1)
##   deviance_exact        exact_devfun(): Laplace/AGQ at the exact mode
##   deviance_default_tol  lme4's devfun with the default tolPwrss 1e-7, full scale
## For nAGQ = 0 the argument is theta only; pirls_beta* is the beta that
## PIRLS found jointly with u (an output, not an input).

write_devfun <- function(cs, dat, s, ef) {
  form <- as.formula(cs$formula)
  mk <- function(ctl) suppressWarnings(suppressMessages(
    glmer(form, data = dat, family = r_family(cs), nAGQ = cs$nagq, devFunOnly = TRUE,
          control = ctl)))
  d_tight <- mk(glmerControl(tolPwrss = tight_pwrss))
  d_def <- mk(glmerControl())
  th <- unname(s$theta); be <- unname(s$beta)
  nt <- length(th); p <- length(be)
  shift <- if (cs$nagq > 1) -2 * s$sat[["used"]] else 0
  tn <- paste0("theta", seq_len(nt))
  if (cs$nagq == 0) {
    pts <- list(th, th * 1.2 + 0.05, th * 0.7)
    m <- t(vapply(pts, function(q) {
      v <- d_tight(q)
      pb <- environment(d_tight)$pp$beta(1)
      c(q, pb, v, v, ef(q), d_def(q))
    }, numeric(nt + p + 4)))
    bn <- paste0("pirls_beta", seq_len(p))
    ## check: the exact Laplace criterion at (theta, pirls_beta) is the same number
    cs1 <- cs; cs1$nagq <- 1
    ef1 <- exact_devfun(cs1, dat, names(s$beta))
    chk <- vapply(seq_len(nrow(m)), function(i) ef1(m[i, 1:(nt + p)]), numeric(1))
    cat(sprintf("    nAGQ=0 exact devfun(theta) vs exact Laplace devfun(theta, pirls_beta): max |diff| %.3g\n",
                max(abs(chk - m[, nt + p + 3]))))
  } else {
    alt <- rep(c(1, -1), length.out = p)
    se <- unname(s$se)                  # beta moved by half a standard error
    pts <- list(c(th, be), c(th * 1.2 + 0.05, be + 0.5 * se), c(th * 0.7, be - 0.5 * se * alt))
    m <- t(vapply(pts, function(q) {
      v <- d_tight(q)
      c(q, v + shift, v, ef(q), d_def(q) + shift)
    }, numeric(nt + p + 4)))
    bn <- paste0("beta", seq_len(p))
  }
  df <- as.data.frame(m)
  names(df) <- c(tn, bn, "deviance", "deviance_lme4", "deviance_exact", "deviance_default_tol")
  for (i in seq_len(nrow(df)))
    cat(sprintf("    devfun row %d: tight %.12f  exact %.12f  default-tol %.12f\n", i,
                df$deviance[i], df$deviance_exact[i], df$deviance_default_tol[i]))
  write_csv_plain(df, paste0(cs$name, "_devfun.csv"))
}

###########################################################################
## Part 1: the fitted cases

cat(sprintf("R %s, lme4 %s, ordinal %s, glmmTMB %s\n", getRversion(),
            packageVersion("lme4"), packageVersion("ordinal"), packageVersion("glmmTMB")))
cat("Per case: the log-likelihood of the default and the tight fits (full scale),\n",
    "the largest relative difference in the estimates, and which fit is written.\n",
    "For lme4 the fits are compared by the exact criterion (exact_devfun) at their\n",
    "estimates; for clmm by this script's exact-mode Laplace/AGQ.\n", sep = "")
summary_rows <- list()

for (cs in cases) {
  dat <- read_data(cs$data)
  if (is.null(dat)) { cat(sprintf("%s: %s not found, skipped\n", cs$name, cs$data)); next }
  cat(sprintf("\n== %s  [%s, %s/%s, nAGQ=%d]  %s\n", cs$name, cs$pkg, cs$family,
              cs$link, cs$nagq, cs$formula))
  if (cs$family == "ordinal") {
    ## ordered response: the numeric 1..5 column becomes an ordered factor
    ## in numeric order (what mlmx does with a numeric response)
    dat$rating <- factor(dat$rating, levels = sort(unique(dat$rating)), ordered = TRUE)
    cs$response_note <- "rating converted before the fit: factor(rating, ordered = TRUE), categories 1<2<3<4<5"
  }
  extra <- list()
  ef <- NULL
  if (cs$pkg == "lme4") {
    d0 <- quietly(fit_lme4(cs, dat, NULL))
    st <- if (isTRUE(cs$slow))   # start the tight fits at the default's estimates
      list(theta = getME(d0$value, "theta"), fixef = fixef(d0$value)) else NULL
    t1 <- quietly(fit_lme4(cs, dat, tight_bobyqa, st))
    t2 <- quietly(fit_lme4(cs, dat, tight_nlopt, st))
    fits <- list(default = d0, tight_bobyqa = t1, tight_nloptwrap = t2)
    summ <- lapply(fits, function(f) summ_lme4(cs, f$value))
    xnames <- names(fixef(d0$value))
    ef <- exact_devfun(cs, dat, xnames)
    pars_of <- function(s) if (cs$nagq == 0) unname(s$theta) else unname(c(s$theta, s$beta))
    crit <- vapply(summ, function(s) -ef(pars_of(s)) / 2, numeric(1))
    for (k in names(fits))
      cat(sprintf("    %-16s lme4 loglik %.12f   exact criterion %.12f   (feval %s)\n", k,
                  summ[[k]]$loglik, crit[[k]], fits[[k]]$value@optinfo$feval))
  } else if (cs$pkg == "ordinal") {
    d0 <- quietly(fit_clmm(cs, dat, clmm.control()))
    t1 <- quietly(fit_clmm(cs, dat, tight_clmm))
    fits <- list(default = d0, tight_nlminb = t1)
    summ <- lapply(fits, function(f) summ_clmm(cs, f$value))
    ## clmm's own value depends on its inner (mode-finding) tolerance, so the
    ## fits are compared with this script's exact-mode evaluation
    crit <- vapply(summ, function(s) recompute(cs, dat, s), numeric(1))
    for (k in names(fits))
      cat(sprintf("    %-16s clmm loglik %.12f   exact-mode %s %.12f\n", k, summ[[k]]$loglik,
                  if (cs$nagq > 1) sprintf("AGQ%d", cs$nagq) else "Laplace", crit[[k]]))
  } else {
    d0 <- quietly(fit_tmb(cs, dat, glmmTMBControl()))
    t1 <- quietly(fit_tmb(cs, dat, tight_tmb))
    fits <- list(default = d0, tight_nlminb = t1)
    summ <- lapply(fits, function(f) summ_tmb(cs, f$value))
    crit <- vapply(summ, `[[`, numeric(1), "loglik")
    for (k in names(fits))
      cat(sprintf("    %-16s glmmTMB loglik %.12f\n", k, crit[[k]]))
  }
  tight_names <- setdiff(names(fits), "default")
  best_tight <- tight_names[which.max(crit[tight_names])]
  keep <- if (crit[["default"]] > crit[[best_tight]]) "default" else best_tight
  s <- summ[[keep]]
  drel <- maxrel(summ[["default"]]$est, summ[[best_tight]]$est)
  cat(sprintf("    default - tight(%s): loglik %.3g (package's own values %.3g), max rel est diff %.3g; written: %s\n",
              best_tight, crit[["default"]] - crit[[best_tight]],
              summ[["default"]]$loglik - summ[[best_tight]]$loglik, drel, keep))
  cat(sprintf("    default fit %.2f s\n", d0$elapsed))
  for (k in names(fits)) for (m in fits[[k]]$msgs) cat(sprintf("    [%s] %s\n", k, m))

  extra$fit_written <- keep
  extra$loglik_default <- g17(summ[["default"]]$loglik)
  extra$maxrel_est_default_vs_tight <- g17(drel)
  extra$elapsed_default_s <- sprintf("%.3f", d0$elapsed)
  extra$default_fit_warnings <- length(d0$msgs)

  if (cs$pkg == "lme4") {
    extra$loglik_exact <- g17(crit[[keep]])
    eo <- exact_optimum(ef, fits[[keep]]$value, cs$nagq)
    if (cs$nagq == 0) {
      ef(eo$par)
      eb <- environment(ef)$rho$pp$beta(1)
      et <- eo$par
    } else { et <- eo$par[seq_along(s$theta)]; eb <- eo$par[-seq_along(s$theta)] }
    erel <- maxrel(c(s$theta, s$beta), c(et, eb))
    cat(sprintf("    exact optimum: loglik %.12f (written fit %.3g lower), max rel est diff %.3g, %d evals, %.1f s\n",
                -eo$dev / 2, -eo$dev / 2 - crit[[keep]], erel, eo$feval, eo$secs))
    extra$exact_opt_loglik <- g17(-eo$dev / 2)
    extra$exact_opt_theta <- g17(et)
    extra$exact_opt_beta <- g17(eb)
    extra$exact_opt_maxrel <- g17(erel)
    ## SEs of beta from the Hessian of the exact criterion at its optimum,
    ## by numDeriv's Richardson extrapolation (theta held fixed when a
    ## variance is at its bound, as lme4 does).  lme4's own SEs come from a
    ## fixed-step central difference of its stale-factor deviance; for
    ## badly scaled covariates (grouseticks' HEIGHT) they move by ~1%.
    if (cs$nagq >= 1) {
      nt <- length(et)
      free <- if (any(et[getME(fits[[keep]]$value, "lower") == 0] < 1e-4))
                (nt + 1):length(eo$par) else seq_along(eo$par)
      fh <- function(v) { p <- eo$par; p[free] <- v; ef(p) }
      H <- numDeriv::hessian(fh, eo$par[free])
      V <- solve(H / 2)
      se_ex <- sqrt(diag(V))[(length(free) - length(eb) + 1):length(free)]
      cat(sprintf("    SEs at the exact optimum (numDeriv): max rel diff from written %.3g\n",
                  maxrel(s$se, se_ex)))
      extra$exact_opt_se <- g17(se_ex)
    }
  }

  ## the package's approximation recomputed independently (single-RE cases)
  if (!is.null(cs$group)) {
    rc <- recompute(cs, dat, s)
    extra$loglik_recomputed <- g17(rc)
    ## clmm and glmmTMB: SEs from the Hessian of this exact criterion
    ## (numDeriv, Richardson) at the written estimates, over (sd, beta,
    ## thresholds | log size).  clmm's own SEs depend on its optimizer (the
    ## nlminb fit's are ~0.7% larger than the default ucminf fit's).
    if (cs$pkg != "lme4") {
      nb <- length(s$beta)
      pk <- c(s$theta[1], s$beta,
              if (!is.null(s$thresholds)) s$thresholds,
              if (!is.null(s$dispersion)) log(s$dispersion))
      fpk <- function(v) {
        s2 <- s
        s2$theta[1] <- v[1]
        s2$beta[] <- v[1 + seq_len(nb)]
        if (!is.null(s$thresholds)) s2$thresholds[] <- v[1 + nb + seq_along(s$thresholds)]
        if (!is.null(s$dispersion)) s2$dispersion <- exp(v[length(v)])
        -2 * recompute(cs, dat, s2)
      }
      V <- solve(numDeriv::hessian(fpk, pk) / 2)
      sev <- sqrt(diag(V))
      extra$exact_opt_se <- g17(sev[1 + seq_len(nb)])
      if (!is.null(s$thresholds))
        extra$exact_opt_threshold_se <- g17(sev[1 + nb + seq_along(s$thresholds)])
      cat(sprintf("    SEs from the exact criterion (numDeriv): max rel diff from the package's %.3g\n",
                  maxrel(s$se, sev[1 + seq_len(nb)])))
    }
    cat(sprintf("    recomputed (%s, %s info): %.12f  (loglik - recomputed = %.3g)\n",
                if (cs$nagq > 1) sprintf("AGQ%d", cs$nagq) else "Laplace",
                if (cs$pkg == "lme4") "expected" else "observed", rc, s$loglik - rc))
    if (cs$pkg == "lme4" && cs$link %in% c("probit", "cloglog")) {
      rco <- recompute(cs, dat, s, hess = "observed")
      extra$loglik_laplace_observed_info <- g17(rco)
      cat(sprintf("    Laplace with the observed instead of the expected information: %.12f\n", rco))
    }
  }
  if (isTRUE(cs$brute)) {
    bf <- recompute(cs, dat, s, method = "integrate")
    gh200 <- recompute(cs, dat, s, K = 200, hess = "observed")
    extra$loglik_bruteforce <- g17(bf)
    extra$saturated_loglik <- g17(s$sat[["used"]])
    cat(sprintf("    brute force integrate(): %.12f  AGQ200: %.12f  loglik - brute = %.3g, recomputed AGQ%d - brute = %.3g\n",
                bf, gh200, s$loglik - bf, cs$nagq, rc - bf))
    cat(sprintf("    scale: lme4 prints %.12f; saturated loglik %.15f (aic - sum devResid: %.15f)\n",
                s$loglik_printed, s$sat[["direct"]], s$sat[["via_resp"]]))
    ## convergence of K-point AGQ (exact mode, expected-information scale) to the brute force
    Ks <- c(1, 5, 10, 15, 20, 25, 30, 40, 60, 100)
    conv <- vapply(Ks, function(K) recompute(cs, dat, s, K = K), numeric(1))
    cat(sprintf("    AGQ at the estimates: %s\n", paste(sprintf("K=%d %.10f", Ks, conv), collapse = ", ")))
    extra$agq_convergence <- paste(sprintf("%d:%s", Ks, g17(conv)), collapse = " ")
    d25 <- suppressWarnings(suppressMessages(glmer(as.formula(cs$formula), data = dat,
      family = r_family(cs), nAGQ = 25, devFunOnly = TRUE,
      control = glmerControl(tolPwrss = tight_pwrss))))
    ll25 <- -d25(unname(c(s$theta, s$beta))) / 2 + s$sat[["used"]]
    extra$loglik_lme4_agq25_at_estimates <- g17(ll25)
    cat(sprintf("    lme4 nAGQ=25 devfun at these estimates (full scale): %.12f (AGQ25 here: %.12f)\n",
                ll25, conv[Ks == 25]))
  }
  write_ref(cs, s, extra)
  if (cs$pkg == "lme4" && !isTRUE(cs$slow)) write_devfun(cs, dat, s, ef)
  summary_rows[[cs$name]] <- data.frame(case = cs$name, loglik = s$loglik,
    dll = crit[["default"]] - crit[[best_tight]], drel = drel, kept = keep,
    secs = d0$elapsed,
    exact = if (is.null(extra$exact_opt_loglik)) NA else as.numeric(extra$exact_opt_loglik))
}

cat("\nSummary: loglik written (full scale); dll = default - best tight (criterion as above);\n",
    "drel = max rel difference of the estimates; exact optimum loglik (lme4 cases)\n", sep = "")
sr <- do.call(rbind, summary_rows)
for (i in seq_len(nrow(sr)))
  cat(sprintf("  %-22s %20.12f  dll %10.3g  drel %9.3g  %-16s %7.2f s  exact %s\n", sr$case[i],
              sr$loglik[i], sr$dll[i], sr$drel[i], sr$kept[i], sr$secs[i],
              if (is.na(sr$exact[i])) "-" else sprintf("%.12f", sr$exact[i])))

###########################################################################
## Part 3: nested random intercepts by non-adaptive Gauss-Hermite
##
## For top-level cluster h:
##   L_h = int phi(v) prod_{d in h} [ int phi(u) prod_{i in d} p(y_i | x_i b + s_top v + s_mid u) du ] dv
## with the same N-node rule for both integrals, accumulated in logs.

nested_gh <- function(fam, eta0, y, n, top, mid, sd_top, sd_mid, N) {
  gh <- gh_prob(N); z <- gh$z; lw <- log(gh$w)
  lw <- ifelse(is.finite(lw), lw, -1e300)
  tops <- split(seq_along(y), top, drop = TRUE)
  vapply(tops, function(ih) {
    Lk <- rep(0, N)                    # sum over mid clusters of log inner integral at v_k
    if (sd_mid == 0) {
      for (i in ih) Lk <- Lk + fam$logp(eta0[i] + sd_top * z, y[i], n[i])
    } else {
      shift <- outer(sd_top * z, sd_mid * z, "+")     # [k, m]
      for (im in split(ih, mid[ih], drop = TRUE)) {
        A <- matrix(0, N, N)
        for (i in im) A <- A + fam$logp(eta0[i] + shift, y[i], n[i])
        B <- A + rep(lw, each = N)                    # + log w_m on column m
        mx <- apply(B, 1, max)
        Lk <- Lk + mx + log(rowSums(exp(B - mx)))
      }
    }
    logsumexp(lw + Lk)
  }, numeric(1))
}

## Adaptive check: outer integral by integrate(), inner by 40-point AGQ.
nested_adaptive <- function(fam, eta0, y, n, top, mid, sd_top, sd_mid) {
  tops <- split(seq_along(y), top, drop = TRUE)
  vapply(tops, function(ih) {
    h <- function(v) vapply(v, function(vv)
      sum(marg_single(fam, eta0[ih] + sd_top * vv, y[ih], n[ih], mid[ih], sd_mid, K = 40)) +
        dnorm(vv, log = TRUE), numeric(1))
    o <- optimize(function(v) -h(v), c(-8, 8), tol = 1e-10)
    c0 <- -o$objective
    f <- function(v) exp(h(v) - c0)
    I <- integrate(f, -Inf, o$minimum, rel.tol = 1e-11)$value +
      integrate(f, o$minimum, Inf, rel.tol = 1e-11)$value
    c0 + log(I)
  }, numeric(1))
}

write_bf <- function(file, head, per_n, Ns, cl_ids, extra = list()) {
  lines <- character()
  add <- function(key, ...) lines <<- c(lines, paste(c(key, ...), collapse = " "))
  for (k in names(head)) add(k, head[[k]])
  Nbest <- max(Ns)
  add("nodes", Nbest)
  add("loglik", g17(sum(per_n[[as.character(Nbest)]])))
  for (N in Ns) add(paste0("loglik_n", N), g17(sum(per_n[[as.character(N)]])))
  for (j in seq_along(cl_ids))
    add("loglik_cluster", cl_ids[j], g17(per_n[[as.character(Nbest)]][j]))
  for (k in names(extra)) add(k, extra[[k]])
  writeLines(lines, file.path(out_dir, file))
}

Ns <- c(100, 150, 200, 300)
## sanity check of the rule against lme4's GHrule and the normal moments
chk <- gh_prob(20); ref <- GHrule(20, asMatrix = FALSE)
cat(sprintf("\nGH rule check: 20 nodes vs lme4::GHrule max |dz| %.2g, |dw| %.2g; N=300: sum w - 1 = %.2g, E z^2 - 1 = %.2g, E z^4 - 3 = %.2g\n",
            max(abs(chk$z - ref$z)), max(abs(chk$w - ref$w)),
            sum(gh_prob(300)$w) - 1, sum(gh_prob(300)$w * gh_prob(300)$z^2) - 1,
            sum(gh_prob(300)$w * gh_prob(300)$z^4) - 3))

hdp <- read_data("hdp.csv")
if (!is.null(hdp)) {
  sub <- hdp[hdp$HID %in% 1:3, ]
  X <- model.matrix(~ IL6 + CRP + LengthofStay, sub)
  beta <- c(-1.5, -0.06, -0.02, -0.15)
  eta0 <- drop(X %*% beta)
  y <- sub$remission; n <- rep(1, nrow(sub))
  fam <- fam_binomial("logit")
  cat(sprintf("\n== hdp_sub nested brute force: %d rows, %d doctors, hospitals 1,2,3\n",
              nrow(sub), length(unique(sub$DID))))
  per_n <- list()
  for (N in Ns) {
    t0 <- proc.time()[["elapsed"]]
    per_n[[as.character(N)]] <- nested_gh(fam, eta0, y, n, sub$HID, sub$DID, 0.6, 1.2, N)
    cat(sprintf("    N=%3d  loglik %.15f  per hospital %s  (%.1f s)\n", N,
                sum(per_n[[as.character(N)]]),
                paste(sprintf("%.15f", per_n[[as.character(N)]]), collapse = " "),
                proc.time()[["elapsed"]] - t0))
  }
  ad <- nested_adaptive(fam, eta0, y, n, sub$HID, sub$DID, 0.6, 1.2)
  cat(sprintf("    adaptive check (integrate outer, AGQ40 inner): %.15f  (N=300 - adaptive = %.3g)\n",
              sum(ad), sum(per_n[["300"]]) - sum(ad)))
  write_bf("hdp_sub_nested_bruteforce.ref",
           list(case = "hdp_sub_nested_bruteforce", data = "hdp.csv", subset = "HID<=3 (HID in 1,2,3; 681 rows)",
                formula = "remission ~ IL6 + CRP + LengthofStay + (1|HID) + (1|DID)",
                family = "binomial", link = "logit",
                fixef_names = "(Intercept) IL6 CRP LengthofStay",
                beta = g17(beta), sd_names = "HID DID", sds = g17(c(0.6, 1.2))),
           per_n, Ns, names(per_n[[1]]),
           list(loglik_adaptive_check = g17(sum(ad))))

  ## one level (sd_DID = 0): compare with lme4's nAGQ=25 deviance function
  cat("== hdp_sub one level (1|HID), sd 0.6\n")
  per1 <- list()
  for (N in Ns) {
    per1[[as.character(N)]] <- nested_gh(fam, eta0, y, n, sub$HID, sub$DID, 0.6, 0, N)
    cat(sprintf("    N=%3d  loglik %.15f\n", N, sum(per1[[as.character(N)]])))
  }
  sub$HIDf <- sub$HID
  fo <- remission ~ IL6 + CRP + LengthofStay + (1|HID)
  dq25 <- glmer(fo, data = sub, family = binomial, nAGQ = 25, devFunOnly = TRUE)
  dlap <- glmer(fo, data = sub, family = binomial, nAGQ = 1, devFunOnly = TRUE)
  ll25 <- -dq25(c(0.6, beta)) / 2    # Bernoulli data: saturated loglik = 0, no shift
  lllap <- -dlap(c(0.6, beta)) / 2
  int1 <- sum(marg_single(fam, eta0, y, n, sub$HID, 0.6, method = "integrate"))
  cat(sprintf("    glmer nAGQ=25 devfun: %.15f (N=300 - glmer = %.3g); Laplace devfun %.15f; integrate() %.15f\n",
              ll25, sum(per1[["300"]]) - ll25, lllap, int1))
  write_bf("hdp_sub_onelevel_bruteforce.ref",
           list(case = "hdp_sub_onelevel_bruteforce", data = "hdp.csv", subset = "HID<=3 (HID in 1,2,3; 681 rows)",
                formula = "remission ~ IL6 + CRP + LengthofStay + (1|HID)",
                family = "binomial", link = "logit",
                fixef_names = "(Intercept) IL6 CRP LengthofStay",
                beta = g17(beta), sd_names = "HID", sds = g17(0.6)),
           per1, Ns, names(per1[[1]]),
           list(loglik_glmer_agq25 = g17(ll25), loglik_glmer_laplace = g17(lllap),
                loglik_integrate = g17(int1)))
}

fl <- read_data("flay.csv")
if (!is.null(fl)) {
  schools <- unique(fl$school)[1:4]          # the first four schools in file order
  sub <- fl[fl$school %in% schools, ]
  cats <- sort(unique(sub$post))
  y <- match(sub$post, cats)
  alpha <- c(-2.1, -0.5, 0.9, 2.1, 3.7)[seq_len(length(cats) - 1)]
  stopifnot(length(alpha) == length(cats) - 1)
  b <- c(pre = 0.35, resist = 1.25, tele = -0.6)
  eta0 <- drop(as.matrix(sub[, names(b)]) %*% b)
  fam <- fam_ordinal(alpha, "logit")
  n <- rep(1, nrow(sub))
  cat(sprintf("\n== flay_sub nested ordinal brute force: schools %s, %d rows, %d classes, categories %s\n",
              paste(schools, collapse = ","), nrow(sub), length(unique(sub$class)),
              paste(cats, collapse = ",")))
  per_n <- list()
  for (N in Ns) {
    per_n[[as.character(N)]] <- nested_gh(fam, eta0, y, n, sub$school, sub$class, 0.3, 0.4, N)
    cat(sprintf("    N=%3d  loglik %.15f  per school %s\n", N, sum(per_n[[as.character(N)]]),
                paste(sprintf("%.15f", per_n[[as.character(N)]]), collapse = " ")))
  }
  ad <- nested_adaptive(fam, eta0, y, n, sub$school, sub$class, 0.3, 0.4)
  cat(sprintf("    adaptive check: %.15f  (N=300 - adaptive = %.3g)\n",
              sum(ad), sum(per_n[["300"]]) - sum(ad)))
  ## clusters in split() order = sorted school id
  write_bf("flay_sub_nested_bruteforce.ref",
           list(case = "flay_sub_nested_bruteforce", data = "flay.csv",
                subset = sprintf("school in %s (the first four schools in file order; %d rows)",
                                 paste(schools, collapse = ","), nrow(sub)),
                formula = "post ~ pre + resist + tele + (1|school) + (1|class)",
                family = "ordinal", link = "logit",
                categories = paste(cats, collapse = " "),
                fixef_names = "pre resist tele", beta = g17(b),
                threshold_names = paste(paste0(cats[-length(cats)], "|", cats[-1]), collapse = " "),
                thresholds = g17(alpha),
                sd_names = "school class", sds = g17(c(0.3, 0.4))),
           per_n, Ns, names(per_n[[1]]),
           list(loglik_adaptive_check = g17(sum(ad))))
}

cat("\ndone\n")
