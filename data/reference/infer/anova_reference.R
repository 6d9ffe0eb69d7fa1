## anova_reference.R -- reference values for mlmx's model comparison
## (issue 9 §2 and §6): lme4's anova() between nested models, lmerTest's
## ranova() and the likelihood-ratio test of an LMM against the linear
## model without random effects.
##
##   OPENBLAS_NUM_THREADS=1 Rscript data/reference/infer/anova_reference.R
##
## Needs (Debian bookworm): r-cran-lme4 (1.1-31), r-cran-lmertest (3.1-3).
## Every model is fitted with tight optimizer tolerances and its theta is
## written, so a test can evaluate mlmx at exactly these parameters (two
## converged optimizers differ by ~1e-6 in theta). Writes
## data/reference/infer/anova_<case>.ref:
##   data FILE, nmodels K
##   formula<i> F          model i (1-based, in the order given to anova())
##   theta<i> ...          its ML theta (anova refits REML fits by ML)
##   row m<i> npar AIC BIC logLik deviance Chisq Df Pr   anova(m1, ..., mK),
##                         rows ordered by npar as lme4 orders them; NA in
##                         the first row
##   chibar m<i> P         0.5 * pchisq(Chisq, 1, lower = FALSE) for a row
##                         that adds one variance component and nothing else
##                         (vc_rows below: the chi-bar-square mixture
##                         0.5 chi2_0 + 0.5 chi2_1)
## and ranova_<case>.ref:
##   formula F, method REML|ML, theta ...   the full model (lmerTest::lmer)
##   row npar logLik AIC LRT Df Pr NAME     ranova(fit), NAME the row name
##                                          ("<none>", "Days in (Days | Subject)")
##   reduced<i> F / rtheta<i> ...           each reduced model's formula and
##                                          theta (none for a linear model)
##   lm_loglik L                            logLik(lm(fixed part), REML = method)
## and drop1_<case>.ref (lme4's drop1(fit, test = "Chisq"), ML/Laplace fits
## with tight tolerances; glmer with tolPwrss = 1e-12, see docs/glmm.md "How
## close to R": lme4's default Laplace deviance comes from a stale factor):
##   formula F, family NAME, loglik L      the full model
##   row npar AIC LRT Pr NAME               npar is drop1's (the Df dropped),
##                                          NA in the "<none>" row
invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages({library(lme4); library(lmerTest)})
out_dir <- file.path("data", "reference", "infer")
g17 <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(ftol_abs = 1e-14, xtol_abs = 1e-12, ftol_rel = 1e-15,
                                    xtol_rel = 1e-12, maxeval = 1e5))
pkg <- paste("package lme4", packageVersion("lme4"), "lmerTest", packageVersion("lmerTest"))

anova_case <- function(name, file, forms, vc_rows = character()) {
  d <- read.csv(file.path("data", file), stringsAsFactors = TRUE)
  fits <- lapply(forms, function(f) lme4::lmer(as.formula(f), d, REML = FALSE, control = tight))
  names(fits) <- paste0("m", seq_along(fits))
  a <- do.call(anova, c(unname(fits[1]), unname(fits[-1]), list(model.names = names(fits))))
  lines <- c(paste("case", name), paste("data", file), pkg, paste("nmodels", length(forms)),
             paste("nobs", nrow(d)))
  for (i in seq_along(forms))
    lines <- c(lines, paste0("formula", i, " ", forms[[i]]),
               paste0("theta", i, " ", paste(g17(getME(fits[[i]], "theta")), collapse = " ")))
  for (i in seq_len(nrow(a)))
    lines <- c(lines, paste("row", rownames(a)[i], paste(g17(unlist(a[i, ])), collapse = " ")))
  for (i in seq_len(nrow(a)))
    if (rownames(a)[i] %in% vc_rows)
      lines <- c(lines, paste("chibar", rownames(a)[i],
                              g17(0.5 * pchisq(a$Chisq[i], 1, lower.tail = FALSE))))
  writeLines(lines, file.path(out_dir, paste0("anova_", name, ".ref")))
  print(a)
}

ranova_case <- function(name, file, form, REML) {
  d <- read.csv(file.path("data", file), stringsAsFactors = TRUE)
  fit <- lmerTest::lmer(as.formula(form), d, REML = REML, control = tight)
  r <- ranova(fit)
  forms <- attr(r, "formulae")
  lines <- c(paste("case", name), paste("data", file), pkg, paste("formula", form),
             paste("method", if (REML) "REML" else "ML"), paste("nobs", nrow(d)),
             paste("theta", paste(g17(getME(fit, "theta")), collapse = " ")))
  for (i in seq_len(nrow(r)))
    lines <- c(lines, paste("row", paste(g17(unlist(r[i, ])), collapse = " "), rownames(r)[i]))
  for (i in seq_along(forms)) {
    fi <- paste(deparse(forms[[i]], width.cutoff = 500), collapse = "")
    lines <- c(lines, paste0("reduced", i, " ", fi))
    if (!is.null(lme4::findbars(forms[[i]]))) {
      rf <- lme4::lmer(forms[[i]], d, REML = REML, control = tight)
      lines <- c(lines, paste0("rtheta", i, " ", paste(g17(getME(rf, "theta")), collapse = " ")))
    }
  }
  lmf <- lm(lme4::nobars(as.formula(form)), d)
  lines <- c(lines, paste("lm_loglik", g17(as.numeric(logLik(lmf, REML = REML)))),
             paste("lm_df", attr(logLik(lmf), "df")))
  writeLines(lines, file.path(out_dir, paste0("ranova_", name, ".ref")))
  print(r)
}

drop1_case <- function(name, file, form, family = NULL) {
  d <- read.csv(file.path("data", file), stringsAsFactors = TRUE)
  fit <- if (is.null(family)) lme4::lmer(as.formula(form), d, REML = FALSE, control = tight) else
    lme4::glmer(as.formula(form), d, family = family,
                control = glmerControl(optimizer = "nloptwrap", optCtrl = tight$optCtrl,
                                       tolPwrss = 1e-12))
  a <- drop1(fit, test = "Chisq")
  lines <- c(paste("case", name), paste("data", file), pkg, paste("formula", form),
             paste("family", if (is.null(family)) "gaussian" else family),
             paste("loglik", g17(as.numeric(logLik(fit)))))
  for (i in seq_len(nrow(a)))
    lines <- c(lines, paste("row", paste(g17(unlist(a[i, ])), collapse = " "), rownames(a)[i]))
  writeLines(lines, file.path(out_dir, paste0("drop1_", name, ".ref")))
  print(a, digits = 10)
}

anova_case("sleepstudy", "sleepstudy.csv",
           list("Reaction ~ Days + (Days|Subject)", "Reaction ~ Days + (1|Subject)"))
anova_case("classroom", "classroom.csv",
           list("mathgain ~ mathkind + (1|schoolid)",
                "mathgain ~ mathkind + ses + (1|schoolid)",
                "mathgain ~ mathkind + ses + (1|schoolid/classid)"), vc_rows = "m3")
ranova_case("sleepstudy", "sleepstudy.csv", "Reaction ~ Days + (Days|Subject)", TRUE)
ranova_case("sleepstudy_ml", "sleepstudy.csv", "Reaction ~ Days + (Days|Subject)", FALSE)
ranova_case("sleepstudy_ri", "sleepstudy.csv", "Reaction ~ Days + (1|Subject)", TRUE)
ranova_case("classroom", "classroom.csv", "mathgain ~ mathkind + ses + (1|schoolid/classid)", TRUE)
drop1_case("cbpp", "cbpp.csv",
           "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)", "binomial")
drop1_case("sleepstudy_ml", "sleepstudy.csv", "Reaction ~ Days + (1|Subject)")
