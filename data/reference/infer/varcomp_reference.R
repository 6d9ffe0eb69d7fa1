## varcomp_reference.R -- reference values for the standard errors and
## Wald intervals of an LMM's variance components (issue 9 §6, as Stata's
## mixed prints them) and of its ICCs (§4, Stata's estat icc).
##
##   OPENBLAS_NUM_THREADS=1 Rscript data/reference/infer/varcomp_reference.R
##
## Needs (Debian bookworm): r-cran-lme4, r-cran-lmertest (3.1-3; its
## vcov_varpar is 2 H^-1, H the numerical Hessian of the (RE)ML deviance in
## (theta, sigma)), r-cran-numderiv. The SEs are the delta method on that
## covariance, with numDeriv's Jacobian of the map from (theta, sigma) to
## the reported quantity. Intervals, as Stata: a standard deviation or
## variance on the log scale (exp(log x +- z se / x)), a correlation on
## Fisher's z (tanh(atanh r +- z se / (1 - r^2))), a covariance plainly
## (x +- z se), an ICC on the logit scale (plogis(qlogis(x) +- z se /
## (x (1 - x)))); z = qnorm(0.975). Each model is fitted with tight
## tolerances; theta is written so that a test evaluates mlmx there.
## Writes data/reference/infer/varcomp_<case>.ref:
##   theta, sigma                            the fit
##   sd TERM A B est se lower upper          A == B: sd(A); A > B: corr(A, B)
##   var TERM A B est se lower upper         variance / covariance scale
##   icc TERM est se lower upper             cumulative ICC of TERM's level
## with A, B 0-based columns of the term and TERM its index in lme4's order
## (the residual: TERM -1, A = B = 0).
invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(numDeriv)})
out_dir <- file.path("data", "reference", "infer")
g17 <- function(x) sprintf("%.17g", x)
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(ftol_abs = 1e-14, xtol_abs = 1e-12, ftol_rel = 1e-15,
                                    xtol_rel = 1e-12, maxeval = 1e5))
cases <- list(
  list(name = "sleepstudy", data = "sleepstudy.csv", REML = TRUE,
       formula = "Reaction ~ Days + (Days|Subject)", icc = integer()),
  list(name = "sleepstudy_ml", data = "sleepstudy.csv", REML = FALSE,
       formula = "Reaction ~ Days + (Days|Subject)", icc = integer()),
  list(name = "penicillin", data = "penicillin.csv", REML = TRUE,
       formula = "diameter ~ 1 + (1|plate) + (1|sample)", icc = c(0L, 1L)),
  ## nested: ICC of classid:schoolid is cumulative (school + class)
  list(name = "classroom_nested", data = "classroom.csv", REML = TRUE,
       formula = "mathgain ~ mathkind + ses + (1|schoolid/classid)", icc = c(0L, 1L))
)
z <- qnorm(0.975)
## the reported quantities at varpar = (theta, sigma)
report <- function(vp, q, scale) {
  nt <- length(vp) - 1; sg <- vp[nt + 1]; out <- numeric(); o <- 0
  for (k in seq_along(q)) {
    n <- q[k] * (q[k] + 1) / 2; th <- vp[o + seq_len(n)]; o <- o + n
    T <- matrix(0, q[k], q[k]); T[lower.tri(T, diag = TRUE)] <- th
    S <- sg^2 * T %*% t(T)
    for (b in seq_len(q[k])) for (a in b:q[k]) {
      out <- c(out, if (scale == "var") S[a, b] else if (a == b) sqrt(S[a, a])
               else S[a, b] / sqrt(S[a, a] * S[b, b]))
    }
  }
  c(out, if (scale == "var") sg^2 else sg)
}
ci <- function(x, se, kind) switch(kind,
  log = exp(log(x) + c(-1, 1) * z * se / x),
  fisher = tanh(atanh(x) + c(-1, 1) * z * se / (1 - x^2)),
  plain = x + c(-1, 1) * z * se,
  logit = plogis(qlogis(x) + c(-1, 1) * z * se / (x * (1 - x))))
for (cs in cases) {
  d <- read.csv(file.path("data", cs$data), stringsAsFactors = TRUE)
  fit <- lmerTest::lmer(as.formula(cs$formula), d, REML = cs$REML, control = tight)
  A <- fit@vcov_varpar
  vp <- c(getME(fit, "theta"), sigma(fit))
  q <- vapply(getME(fit, "cnms"), length, 1L)
  lines <- c(paste("case", cs$name), paste("data", cs$data), paste("formula", cs$formula),
             paste("method", if (cs$REML) "REML" else "ML"),
             paste("package lme4", packageVersion("lme4"), "lmerTest", packageVersion("lmerTest"),
                   "numDeriv", packageVersion("numDeriv")),
             paste("theta", paste(g17(getME(fit, "theta")), collapse = " ")),
             paste("sigma", g17(sigma(fit))))
  for (scale in c("sd", "var")) {
    est <- report(vp, q, scale)
    J <- jacobian(function(v) report(v, q, scale), vp)
    se <- sqrt(diag(J %*% A %*% t(J)))
    i <- 0
    for (k in seq_along(q)) for (b in seq_len(q[k])) for (a in b:q[k]) {
      i <- i + 1
      kind <- if (a == b) "log" else if (scale == "sd") "fisher" else "plain"
      lines <- c(lines, paste(scale, k - 1, a - 1, b - 1,
                              paste(g17(c(est[i], se[i], ci(est[i], se[i], kind))), collapse = " ")))
    }
    i <- i + 1
    lines <- c(lines, paste(scale, -1, 0, 0,
                            paste(g17(c(est[i], se[i], ci(est[i], se[i], "log"))), collapse = " ")))
  }
  ## cumulative ICC: the intercept variances of the term and of the terms
  ## its factor is nested in, over their sum plus sigma^2
  for (k in cs$icc) {
    icc_fun <- function(v) {
      s <- report(v, q, "var"); nt <- length(s)
      num <- if (grepl(":", names(q)[k + 1])) sum(s[-nt]) else s[k + 1]
      num / sum(s)
    }
    x <- icc_fun(vp); g <- jacobian(icc_fun, vp); se <- sqrt(drop(g %*% A %*% t(g)))
    lines <- c(lines, paste("icc", k, paste(g17(c(x, se, ci(x, se, "logit"))), collapse = " ")))
  }
  writeLines(lines, file.path(out_dir, paste0("varcomp_", cs$name, ".ref")))
  cat(cs$name, "done\n")
}
