## ddf_reference.R -- reference values for mlmx's tests of fixed effects in
## LMMs (issue 9 §3): Satterthwaite t-tests and Type III F tests as
## lmerTest prints them, Kenward-Roger as pbkrtest computes them.
##
##   OPENBLAS_NUM_THREADS=1 Rscript data/reference/infer/ddf_reference.R
##
## Needs (Debian bookworm): r-cran-lme4, r-cran-lmertest (3.1-3),
## r-cran-pbkrtest (0.5.2). Each model is fitted with tight optimizer
## tolerances; its theta is written too, so a test can evaluate mlmx at
## exactly these parameters (the criterion is flat enough that two
## converged optimizers differ by ~1e-6 in theta). Writes
## data/reference/infer/ddf_<case>.ref:
##   theta, beta, sigma               the fit
##   coef NAME est se df t p          summary(fit, ddf = "Satterthwaite")
##   coef_kr NAME est se df t p       summary(fit, ddf = "Kenward-Roger")
##   anova3 TERM ss ms numdf dendf F p     anova(fit, type = 3) (Satterthwaite)
##   anova3_kr TERM ss ms numdf dendf F p  anova(fit, type = 3, ddf = "Kenward-Roger")
##   vcov_kr v11 v12 ...              pbkrtest::vcovAdj (column-major)
invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(pbkrtest)})
out_dir <- file.path("data", "reference", "infer")
g17 <- function(x) sprintf("%.17g", x)
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(ftol_abs = 1e-14, xtol_abs = 1e-12, ftol_rel = 1e-15,
                                    xtol_rel = 1e-12, maxeval = 1e5))
## a small unbalanced design for Kenward-Roger: sleepstudy with days 7-9
## dropped for the first six subjects and day 0 for three others
sleep_unbal <- function(d) {
  s <- sort(unique(d$Subject))
  d[!((d$Subject %in% s[1:6] & d$Days >= 7) | (d$Subject %in% s[7:9] & d$Days == 0)), ]
}
cases <- list(
  list(name = "sleepstudy", data = "sleepstudy.csv", REML = TRUE, kr = TRUE,
       formula = "Reaction ~ Days + (Days|Subject)"),
  list(name = "classroom", data = "classroom.csv", REML = TRUE, kr = FALSE,
       formula = "mathgain ~ mathkind + sex + minority + ses + (1|schoolid) + (1|classid)"),
  list(name = "hsb", data = "hsb.csv", REML = TRUE, kr = FALSE,
       formula = "mathach ~ meanses*cses + sector*cses + (1 + cses|school)"),
  ## a 3-level factor (and its interaction) for the Type III F tests
  list(name = "bodyweight", data = "bodyweight.csv", REML = TRUE, kr = TRUE,
       formula = "weight ~ Time * factor(Diet) + (Time|Rat)"),
  list(name = "penicillin", data = "penicillin.csv", REML = TRUE, kr = TRUE,
       formula = "diameter ~ 1 + (1|plate) + (1|sample)"),
  list(name = "sleepstudy_unbalanced", data = "sleepstudy.csv", REML = TRUE, kr = TRUE,
       subset = sleep_unbal, formula = "Reaction ~ Days + (Days|Subject)"),
  list(name = "sleepstudy_ml", data = "sleepstudy.csv", REML = FALSE, kr = FALSE,
       formula = "Reaction ~ Days + (Days|Subject)"),
  ## singular fits: lmerTest differentiates through the boundary
  list(name = "dyestuff2_singular", data = "dyestuff2.csv", REML = TRUE, kr = TRUE,
       formula = "Yield ~ 1 + (1|Batch)"),
  list(name = "sleepstudy_g2_singular", data = "sleepstudy.csv", REML = TRUE, kr = TRUE,
       derive = function(d) { d$g2 <- d$Subject %% 3; d },
       formula = "Reaction ~ Days + (1|Subject) + (1|g2)")
)
coef_lines <- function(key, tab) {
  vapply(seq_len(nrow(tab)), function(i)
    paste(key, gsub(" ", "", rownames(tab)[i]), paste(g17(tab[i, c(1, 2, 3, 4, 5)]),
          collapse = " ")), "")
}
anova_lines <- function(key, tab) {
  if (nrow(tab) == 0) return(character())
  vapply(seq_len(nrow(tab)), function(i)
    paste(key, gsub(" ", "", rownames(tab)[i]), paste(g17(unlist(tab[i, 1:6])), collapse = " ")),
    "")
}
for (cs in cases) {
  d <- read.csv(file.path("data", cs$data), stringsAsFactors = TRUE)
  if (!is.null(cs$subset)) d <- cs$subset(d)
  if (!is.null(cs$derive)) d <- cs$derive(d)
  fit <- lmerTest::lmer(as.formula(cs$formula), d, REML = cs$REML, control = tight)
  lines <- c(paste("case", cs$name), paste("data", cs$data), paste("formula", cs$formula),
             paste("method", if (cs$REML) "REML" else "ML"), paste("nobs", nrow(d)),
             paste("package lmerTest", packageVersion("lmerTest"), "pbkrtest",
                   packageVersion("pbkrtest"), "lme4", packageVersion("lme4")),
             paste("theta", paste(g17(getME(fit, "theta")), collapse = " ")),
             paste("beta", paste(g17(fixef(fit)), collapse = " ")),
             paste("sigma", g17(sigma(fit))))
  if (!is.null(cs$derive))
    lines <- c(lines, "derive g2 = Subject mod 3 (a grouping factor with 3 levels)")
  if (!is.null(cs$subset)) {
    s <- sort(unique(d$Subject))
    lines <- c(lines, "subset drop Days >= 7 for the first 6 subjects (sorted) and Days == 0 for the next 3")
  }
  lines <- c(lines, coef_lines("coef", summary(fit, ddf = "Satterthwaite")$coefficients))
  a3 <- anova(fit, type = 3)
  lines <- c(lines, anova_lines("anova3", a3))
  if (cs$kr) {
    lines <- c(lines, coef_lines("coef_kr", summary(fit, ddf = "Kenward-Roger")$coefficients))
    lines <- c(lines, anova_lines("anova3_kr", anova(fit, type = 3, ddf = "Kenward-Roger")))
    lines <- c(lines, paste("vcov_kr", paste(g17(as.matrix(vcovAdj(fit))), collapse = " ")))
  }
  writeLines(lines, file.path(out_dir, paste0("ddf_", cs$name, ".ref")))
  cat(cs$name, "done\n")
}
