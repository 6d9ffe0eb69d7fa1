# Reference fits for residual correlation and variance structures (issue 10),
# by nlme's lme. Writes resid_reference.json beside this script:
#   cd data/reference/resid && Rscript resid_reference.R
# Each case: logLik, fixed effects, sigma, random-effect SDs (and the
# correlation of a two-column term), the correlation parameters (natural
# scale), the variance-function parameters (natural scale), and nlme's
# tests: summary()'s t table (DF, t, p: the containment df) and
# anova(type = "marginal") (numDF, denDF, F, p per term, the intercept
# left out), and intervals(fit) (nlme's approximate intervals: lower and
# upper bounds of the fixed effects, the first term's SDs (and correlation),
# the correlation and variance parameters, sigma; null where nlme cannot
# compute them), and ACF(fit) (nlme's empirical autocorrelation of the
# Pearson residuals within the innermost groups: ACF and n.used at the
# default lags). apVar's Hessian (fdHess) uses .relStep = 1e-4: its default
# step (about 6e-6) turns the log-likelihood's optimizer-level noise into
# interval bounds off by 1e-3 (Orthodont's Phi: -0.28025 against -0.27823).
suppressPackageStartupMessages({ library(nlme); library(jsonlite) })
ctrl <- lmeControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-10,
                   msTol = 1e-12, niterEM = 100, opt = "nlminb", .relStep = 1e-4)
orth <- read.csv("../../orthodont.csv", stringsAsFactors = TRUE)
bw <- read.csv("../../bodyweight.csv")
bw$Diet <- factor(bw$Diet); bw$Rat <- factor(bw$Rat)
cls <- na.omit(read.csv("../../classroom.csv")[, c("mathgain", "mathkind", "ses", "yearstea",
                                                  "housepov", "classid", "schoolid")])
cls$classid <- factor(cls$classid); cls$schoolid <- factor(cls$schoolid)

one <- function(fit) {
  V <- as.matrix(pdMatrix(fit$modelStruct$reStruct)[[1]]) * fit$sigma^2
  cs <- fit$modelStruct$corStruct
  vf <- fit$modelStruct$varStruct
  tt <- summary(fit)$tTable
  av <- anova(fit, type = "marginal")[-1, ]
  iv <- tryCatch(intervals(fit), error = function(e) NULL)
  ivl <- if (is.null(iv)) NULL else {
    re <- iv$reStruct[[length(iv$reStruct)]]
    list(fixed_lower = as.numeric(iv$fixed[, "lower"]), fixed_upper = as.numeric(iv$fixed[, "upper"]),
         re_lower = as.numeric(re[, "lower"]), re_upper = as.numeric(re[, "upper"]),
         corr_lower = if (is.null(iv$corStruct)) NULL else as.numeric(iv$corStruct[, "lower"]),
         corr_upper = if (is.null(iv$corStruct)) NULL else as.numeric(iv$corStruct[, "upper"]),
         var_lower = if (is.null(iv$varStruct)) NULL else as.numeric(iv$varStruct[, "lower"]),
         var_upper = if (is.null(iv$varStruct)) NULL else as.numeric(iv$varStruct[, "upper"]),
         sigma_lower = as.numeric(iv$sigma["lower"]), sigma_upper = as.numeric(iv$sigma["upper"]))
  }
  ac <- ACF(fit)
  list(loglik = as.numeric(logLik(fit)), df = attr(logLik(fit), "df"), intervals = ivl,
       acf = as.numeric(ac$ACF), acf_n = as.numeric(attr(ac, "n.used")),
       t_df = as.numeric(tt[, "DF"]), t_value = as.numeric(tt[, "t-value"]),
       t_p = as.numeric(tt[, "p-value"]),
       anova = list(term = rownames(av), num_df = as.numeric(av$numDF),
                    den_df = as.numeric(av$denDF), F = as.numeric(av[["F-value"]]),
                    p = as.numeric(av[["p-value"]])),
       fixef = as.list(fixef(fit)), sigma = fit$sigma,
       re_sd = sqrt(diag(V)),
       re_cor = if (ncol(V) > 1) V[2, 1] / sqrt(V[1, 1] * V[2, 2]) else NULL,
       corr = if (is.null(cs)) NULL else as.numeric(coef(cs, unconstrained = FALSE)),
       varpar = if (is.null(vf)) NULL else as.list(coef(vf, unconstrained = FALSE,
                                                        allCoef = TRUE)))
}
cases <- list()
for (m in c("REML", "ML"))
  cases[[paste0("orthodont_ar1_", m)]] <- one(lme(distance ~ age + Sex, random = ~ 1 | Subject,
    correlation = corAR1(), data = orth, method = m, control = ctrl))
cases$bodyweight_ar1_REML <- one(lme(weight ~ Time * Diet, random = ~ Time | Rat,
  correlation = corAR1(), data = bw, control = ctrl))
cases$bodyweight_ar1time_REML <- one(lme(weight ~ Time * Diet, random = ~ Time | Rat,
  correlation = corAR1(form = ~ Time | Rat), data = bw, control = ctrl))
cases$bodyweight_car1_REML <- one(lme(weight ~ Time * Diet, random = ~ Time | Rat,
  correlation = corCAR1(form = ~ Time | Rat), data = bw, control = ctrl))
cases$bodyweight_arma20_ML <- one(lme(weight ~ Time * Diet, random = ~ Time | Rat,
  correlation = corARMA(p = 2, q = 0), data = bw, method = "ML", control = ctrl))
cases$orthodont_arma11_REML <- one(lme(distance ~ age + Sex, random = ~ 1 | Subject,
  correlation = corARMA(p = 1, q = 1), data = orth, control = ctrl))
cases$classroom_cs_REML <- one(lme(mathgain ~ mathkind + ses, random = ~ 1 | schoolid,
  correlation = corCompSymm(form = ~ 1 | schoolid/classid), data = cls, control = ctrl))
# no residual structure: nlme's containment df on three nested levels
# (school-, class- and pupil-level covariates)
cases$classroom_nested_REML <- one(lme(mathgain ~ mathkind + ses + yearstea + housepov,
  random = ~ 1 | schoolid/classid, data = cls, control = ctrl))
cases$orthodont_ident_REML <- one(lme(distance ~ age + Sex, random = ~ 1 | Subject,
  weights = varIdent(form = ~ 1 | Sex), data = orth, control = ctrl))
cases$orthodont_power_ML <- one(lme(distance ~ age + Sex, random = ~ 1 | Subject,
  weights = varPower(form = ~ age), data = orth, method = "ML", control = ctrl))
cases$orthodont_ar1_ident_REML <- one(lme(distance ~ age + Sex, random = ~ 1 | Subject,
  correlation = corAR1(), weights = varIdent(form = ~ 1 | Sex), data = orth, control = ctrl))
writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
           "resid_reference.json")
