## snijders_reference.R -- reference values for Snijders & Bosker's
## proportional reduction in the prediction error at level 1 and level 2
## (Snijders & Bosker 2012, Multilevel Analysis, 2nd ed., section 7.1),
## computed from their definition on tight lme4 fits:
##   R2_1 = 1 - (sigma2_F + tau2_F) / (sigma2_0 + tau2_0)
##   R2_2 = 1 - (sigma2_F / n + tau2_F) / (sigma2_0 / n + tau2_0)
## F the fitted model, 0 the empty model y ~ 1 + (1 | g) by the same
## method, tau2 the random-intercept variance, n the harmonic mean of the
## group sizes (the "representative group size" of an unbalanced design).
##
##   OPENBLAS_NUM_THREADS=1 Rscript data/reference/infer/snijders_reference.R
##
## Writes data/reference/infer/snijders_<case>.ref: theta (the model's),
## theta0 (the empty model's), n_harmonic, r2_level1, r2_level2.
invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages(library(lme4))
out_dir <- file.path("data", "reference", "infer")
g17 <- function(x) sprintf("%.17g", x)
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(ftol_abs = 1e-14, xtol_abs = 1e-12, ftol_rel = 1e-15,
                                    xtol_rel = 1e-12, maxeval = 1e5))
cases <- list(
  list(name = "sleepstudy", data = "sleepstudy.csv", REML = TRUE, group = "Subject",
       formula = "Reaction ~ Days + (1|Subject)", null = "Reaction ~ 1 + (1|Subject)"),
  list(name = "hsb_ml", data = "hsb.csv", REML = FALSE, group = "school",
       formula = "mathach ~ ses + meanses + (1|school)", null = "mathach ~ 1 + (1|school)")
)
for (cs in cases) {
  d <- read.csv(file.path("data", cs$data), stringsAsFactors = TRUE)
  fF <- lmer(as.formula(cs$formula), d, REML = cs$REML, control = tight)
  f0 <- lmer(as.formula(cs$null), d, REML = cs$REML, control = tight)
  vF <- as.data.frame(VarCorr(fF)); v0 <- as.data.frame(VarCorr(f0))
  tauF <- vF$vcov[vF$grp == cs$group & vF$var1 == "(Intercept)" & is.na(vF$var2)]
  tau0 <- v0$vcov[v0$grp == cs$group]
  s2F <- sigma(fF)^2; s20 <- sigma(f0)^2
  sizes <- table(d[[cs$group]])
  nh <- length(sizes) / sum(1 / sizes)
  r1 <- 1 - (s2F + tauF) / (s20 + tau0)
  r2 <- 1 - (s2F / nh + tauF) / (s20 / nh + tau0)
  lines <- c(paste("case", cs$name), paste("data", cs$data), paste("formula", cs$formula),
             paste("null", cs$null), paste("method", if (cs$REML) "REML" else "ML"),
             paste("package lme4", packageVersion("lme4")),
             paste("theta", paste(g17(getME(fF, "theta")), collapse = " ")),
             paste("theta0", paste(g17(getME(f0, "theta")), collapse = " ")),
             paste("n_harmonic", g17(nh)), paste("r2_level1", g17(r1)),
             paste("r2_level2", g17(r2)))
  writeLines(lines, file.path(out_dir, paste0("snijders_", cs$name, ".ref")))
  cat(cs$name, "done\n")
}
