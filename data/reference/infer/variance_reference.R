## variance_reference.R -- reference values for mlmx's variance
## decomposition (mlmx_fit_r2, mlmx_fit_icc_term; `mlmx fit --r2 --icc`).
##
##   OPENBLAS_NUM_THREADS=1 Rscript data/reference/infer/variance_reference.R
##
## Needs (Debian bookworm): r-base-core, r-cran-lme4, r-cran-performance
## (0.10.2, with r-cran-insight). Each model is fitted by lme4 with tight
## optimizer tolerances (the optimum mlmx reaches; lme4's defaults stop
## ~1e-6 short of it), then:
##   - performance::r2_nakagawa (marginal, conditional) and
##     insight::get_variance (var.fixed, var.random, var.residual), i.e.
##     Nakagawa & Schielzeth (2013) with Johnson's (2014) random-slope term;
##   - performance::icc (adjusted, conditional) and icc(by_group = TRUE);
##   - Stata's estat icc for nested random intercepts (the cumulative ICC of
##     a level: the intercept variances of that level and of every level it
##     is nested in, over their sum plus the residual variance), computed
##     here from lme4's VarCorr by that published definition, and Kish's
##     design effect 1 + (mean cluster size - 1) * cumulative ICC.
## Writes data/reference/infer/<case>.ref ("key v1 v2 ..." lines).
invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages({library(lme4); library(performance); library(insight)})
out_dir <- file.path("data", "reference", "infer")
g17 <- function(x) sprintf("%.17g", x)
tight_lmer <- lmerControl(optimizer = "nloptwrap",
                          optCtrl = list(ftol_abs = 1e-14, xtol_abs = 1e-12, ftol_rel = 1e-15,
                                         xtol_rel = 1e-12, maxeval = 1e5))
## tolPwrss: with the default (1e-7) PIRLS stops early and the Laplace
## criterion is noisy at the 1e-2 level on hdp (glmm_reference.R)
tight_glmer <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12,
                            optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

cases <- list(
  list(name = "sleepstudy_reml", data = "sleepstudy.csv", family = "gaussian",
       formula = "Reaction ~ Days + (Days|Subject)"),
  list(name = "classroom_nested_reml", data = "classroom.csv", family = "gaussian",
       formula = "mathgain ~ mathkind + ses + (1|schoolid/classid)"),
  list(name = "sim_nested4_ml", data = "sim_nested4.csv", family = "gaussian", REML = FALSE,
       formula = "y ~ ses + (1|district/school/class)"),
  list(name = "penicillin_reml", data = "penicillin.csv", family = "gaussian",
       formula = "diameter ~ 1 + (1|plate) + (1|sample)"),
  list(name = "hdp2_laplace", data = "hdp.csv", family = "binomial", link = "logit",
       formula = "remission ~ IL6 + CRP + CancerStage + LengthofStay + Experience + (1|DID)"),
  list(name = "cbpp_probit", data = "cbpp.csv", family = "binomial", link = "probit",
       formula = "cbind(incidence, size - incidence) ~ factor(period) + (1|herd)")
)

for (cs in cases) {
  d <- read.csv(file.path("data", cs$data), stringsAsFactors = TRUE)
  if (cs$family == "gaussian") {
    reml <- if (is.null(cs$REML)) TRUE else cs$REML
    fit <- lmer(as.formula(cs$formula), d, REML = reml, control = tight_lmer)
  } else {
    fit <- glmer(as.formula(cs$formula), d, family = binomial(link = cs$link),
                 control = tight_glmer)
  }
  v <- suppressWarnings(get_variance(fit))
  r2 <- suppressWarnings(r2_nakagawa(fit))
  ic <- suppressWarnings(icc(fit))
  ig <- suppressWarnings(icc(fit, by_group = TRUE))
  lines <- c(paste("case", cs$name), paste("data", cs$data), paste("formula", cs$formula),
             paste("family", cs$family), if (!is.null(cs$link)) paste("link", cs$link),
             paste("method", if (cs$family != "gaussian") "Laplace"
                   else if (isREML(fit)) "REML" else "ML"),
             paste("package performance", packageVersion("performance"),
                   "insight", packageVersion("insight"), "lme4", packageVersion("lme4")),
             paste("var_fixed", g17(v$var.fixed)), paste("var_random", g17(v$var.random)),
             paste("var_residual", g17(v$var.residual)),
             paste("r2_marginal", g17(r2$R2_marginal)),
             paste("r2_conditional", g17(r2$R2_conditional)),
             paste("icc_adjusted", g17(ic$ICC_adjusted)),
             paste("icc_conditional", g17(ic$ICC_conditional)),
             ## the estimates these are computed from (the test also evaluates
             ## mlmx's formulas at exactly these parameters)
             paste("theta", paste(g17(getME(fit, "theta")), collapse = " ")),
             paste("beta", paste(g17(fixef(fit)), collapse = " ")),
             paste("sigma", g17(sigma(fit))))
  ## by group (performance), then Stata's cumulative ICC and the design effect
  vc <- as.data.frame(VarCorr(fit))
  ri <- vc[vc$var1 == "(Intercept)" & is.na(vc$var2) & vc$grp != "Residual", ]
  ## the denominator of performance::icc(by_group = TRUE): var.random +
  ## var.residual (for random-intercept models, Stata's sum of the intercept
  ## variances plus the residual)
  total <- v$var.random + v$var.residual
  mf <- model.frame(fit)
  for (k in seq_len(nrow(ri))) {
    grp <- ri$grp[k]
    ## the grouping factor's levels per observation, and those of every other
    ## term's factor: a term is nested in another when each of its levels
    ## lies in one level of the other
    fk <- interaction(lapply(strsplit(gsub("[()]", "", grp), ":")[[1]], function(x) mf[[x]]), drop = TRUE)
    cum <- ri$vcov[k]
    for (j in seq_len(nrow(ri))) {
      if (j == k) next
      fj <- interaction(lapply(strsplit(gsub("[()]", "", ri$grp[j]), ":")[[1]], function(x) mf[[x]]), drop = TRUE)
      if (all(tapply(as.integer(fj), fk, function(z) length(unique(z))) == 1))
        cum <- cum + ri$vcov[j]
    }
    size <- nrow(mf) / nlevels(fk)
    perf <- ig$ICC[ig$Group == grp]
    lines <- c(lines, paste("icc_group", gsub(" ", "", grp), g17(perf), g17(cum / total),
                            g17(size), g17(1 + (size - 1) * cum / total)))
  }
  writeLines(lines, file.path(out_dir, paste0(cs$name, ".ref")))
  cat(cs$name, ": r2m", r2$R2_marginal, "r2c", r2$R2_conditional, "icc", ic$ICC_adjusted, "\n")
}
