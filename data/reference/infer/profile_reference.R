## profile_reference.R -- reference values for mlmx's confidence intervals
## (issue 9 §1): lme4's confint(fit, method = "profile") and
## confint(fit, method = "Wald").
##
##   OPENBLAS_NUM_THREADS=1 Rscript data/reference/infer/profile_reference.R
##
## Needs (Debian bookworm): r-cran-lme4. The LMMs are fitted with lme4's
## defaults (the profile is lme4's, as a user gets it); cbpp with BOBYQA at
## tight tolerances and a tight PIRLS (tolPwrss), as glmm_reference.R's
## tight fits: glmer's default (BOBYQA then Nelder-Mead) stops where its
## Hessian's SEs are 0.5% from the optimum's. Writes
## data/reference/infer/profile_<case>.ref:
##   case, data, formula, family, method, nagq      the model
##   theta, beta, sigma                the fit (sigma: LMMs)
##   profile NAME lower upper          confint(fit, method = "profile"), level 0.95
##   wald NAME lower upper             confint(fit, method = "Wald") (NA: variance
##                                     parameters, as lme4 prints them)
##   seconds S                         elapsed time of the profile confint
invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages(library(lme4))
out_dir <- file.path("data", "reference", "infer")
g17 <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))
cases <- list(
  list(name = "sleepstudy", data = "sleepstudy.csv", family = "gaussian", REML = TRUE,
       formula = "Reaction ~ Days + (Days|Subject)"),
  list(name = "sleepstudy_ml", data = "sleepstudy.csv", family = "gaussian", REML = FALSE,
       formula = "Reaction ~ Days + (Days|Subject)"),
  list(name = "penicillin", data = "penicillin.csv", family = "gaussian", REML = TRUE,
       formula = "diameter ~ 1 + (1|plate) + (1|sample)"),
  ## a singular fit: the batch variance is 0
  list(name = "dyestuff2", data = "dyestuff2.csv", family = "gaussian", REML = TRUE,
       formula = "Yield ~ 1 + (1|Batch)"),
  list(name = "cbpp", data = "cbpp.csv", family = "binomial", REML = FALSE,
       formula = "cbind(incidence, size - incidence) ~ factor(period) + (1|herd)"),
  ## adaptive quadrature, 10 points
  list(name = "cbpp_agq10", data = "cbpp.csv", family = "binomial", REML = FALSE, nAGQ = 10,
       formula = "cbind(incidence, size - incidence) ~ factor(period) + (1|herd)")
)
for (cs in cases) {
  d <- read.csv(file.path("data", cs$data), stringsAsFactors = TRUE)
  fit <- if (cs$family == "gaussian") {
    lmer(as.formula(cs$formula), d, REML = cs$REML)
  } else {
    glmer(as.formula(cs$formula), d, family = cs$family,
          nAGQ = if (is.null(cs$nAGQ)) 1L else cs$nAGQ,
          control = glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12,
                                 optCtrl = list(rhoend = 1e-10, maxfun = 1e5)))
  }
  t0 <- proc.time()[["elapsed"]]
  cp <- suppressWarnings(suppressMessages(confint(fit, method = "profile")))
  secs <- proc.time()[["elapsed"]] - t0
  cw <- confint(fit, method = "Wald")
  lines <- c(paste("case", cs$name), paste("data", cs$data), paste("formula", cs$formula),
             paste("family", cs$family),
             paste("method", if (!is.null(cs$nAGQ)) "AGQ" else if (cs$family != "gaussian") "Laplace" else if (cs$REML) "REML" else "ML"),
             paste("nagq", if (is.null(cs$nAGQ)) 1L else cs$nAGQ),
             paste("nobs", nrow(d)), paste("package lme4", packageVersion("lme4")),
             paste("theta", paste(g17(getME(fit, "theta")), collapse = " ")),
             paste("beta", paste(g17(fixef(fit)), collapse = " ")))
  if (cs$family == "gaussian") lines <- c(lines, paste("sigma", g17(sigma(fit))))
  for (i in seq_len(nrow(cp)))
    lines <- c(lines, paste("profile", rownames(cp)[i], g17(cp[i, 1]), g17(cp[i, 2])))
  for (i in seq_len(nrow(cw)))
    lines <- c(lines, paste("wald", rownames(cw)[i], g17(cw[i, 1]), g17(cw[i, 2])))
  lines <- c(lines, paste("seconds", sprintf("%.3f", secs)))
  writeLines(lines, file.path(out_dir, paste0("profile_", cs$name, ".ref")))
  cat(cs$name, ": profile", sprintf("%.2f", secs), "s\n")
}
