## predict_reference.R -- reference values for mlmx's prediction from a saved
## model (issue 9 §5): lme4's predict(fit, newdata) with re.form = NA and
## re.form = NULL, allow.new.levels = TRUE, on the link and response scales,
## and the standard error of the fixed-effect part sqrt(diag(X V X^T)).
##
##   OPENBLAS_NUM_THREADS=1 Rscript data/reference/infer/predict_reference.R
##
## Needs (Debian bookworm): r-cran-lme4. Each model is fitted with tight
## optimizer tolerances. Writes, for each case, the new data
## data/reference/infer/predict_<case>_newdata.csv (seen and unseen levels
## of the grouping factors, and for sleepstudy a row with a missing Days)
## and data/reference/infer/predict_<case>.ref:
##   theta, beta, vcov (column-major)      the fit
##   ranef TERM LEVEL b1 ... bq            ranef(fit), every level of each term
##   pred_none v1 ... vn                   predict(fit, nd, re.form = NA)
##   pred_all v1 ... vn                    predict(fit, nd, re.form = NULL,
##                                         allow.new.levels = TRUE)
##   resp_none, resp_all                   the same with type = "response" (GLMMs)
##   se_link v1 ... vn                     sqrt(diag(X V X^T)), X = the new rows'
##                                         fixed-effect model matrix
##   n_new N                               rows with an unseen grouping level
## NA marks a missing prediction (na.action = na.pass, lme4's default).
invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages(library(lme4))
out_dir <- file.path("data", "reference", "infer")
g17 <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))
tight_lmer <- lmerControl(optimizer = "nloptwrap",
                          optCtrl = list(ftol_abs = 1e-14, xtol_abs = 1e-12, ftol_rel = 1e-15,
                                         xtol_rel = 1e-12, maxeval = 1e5))
tight_glmer <- glmerControl(optimizer = "nloptwrap",
                            optCtrl = list(ftol_abs = 1e-14, xtol_abs = 1e-12, ftol_rel = 1e-15,
                                           xtol_rel = 1e-12, maxeval = 1e5))
cases <- list(
  list(name = "sleepstudy", data = "sleepstudy.csv", family = "gaussian",
       formula = "Reaction ~ Days + (Days|Subject)",
       newdata = data.frame(Days = c(0, 2.5, 9, 4, NA, 7),
                            Subject = c("308", "309", "372", "999", "308", "new"))),
  ## a 3-level factor with an interaction (contrasts), and an interaction
  ## grouping factor with unseen combinations
  list(name = "oats", data = "oats.csv", family = "gaussian",
       formula = "yield ~ nitro * Variety + (1|Block) + (1|Block:Variety)",
       newdata = data.frame(nitro = c(0, 0.2, 0.6, 0.4, 0.3, 0.1),
                            Variety = c("Victory", "Marvellous", "Golden Rain", "Victory",
                                        "Marvellous", "Golden Rain"),
                            Block = c("I", "III", "VI", "VII", "II", "VIII"))),
  list(name = "cbpp", data = "cbpp.csv", family = "binomial",
       formula = "cbind(incidence, size - incidence) ~ factor(period) + (1|herd)",
       newdata = data.frame(period = c(1, 2, 3, 4, 1, 4), herd = c(1, 5, 15, 16, 3, 20)))
)
for (cs in cases) {
  d <- read.csv(file.path("data", cs$data), stringsAsFactors = TRUE)
  if (cs$name == "cbpp") d$herd <- factor(d$herd)
  nd <- cs$newdata
  nd_file <- sprintf("predict_%s_newdata.csv", cs$name)
  write.csv(nd, file.path(out_dir, nd_file), row.names = FALSE, na = "NA")
  ## R's factors for predict: the new data's columns as the fit's types
  for (v in names(nd)) if (is.factor(d[[v]])) nd[[v]] <- as.character(nd[[v]])
  if (cs$family == "gaussian") {
    fit <- lmer(as.formula(cs$formula), d, REML = TRUE, control = tight_lmer)
  } else {
    fit <- glmer(as.formula(cs$formula), d, family = binomial, control = tight_glmer)
  }
  lines <- c(paste("case", cs$name), paste("data", cs$data), paste("formula", cs$formula),
             paste("family", cs$family), paste("method", if (cs$family == "gaussian") "REML"
                                                        else "Laplace"),
             paste("newdata", nd_file), paste("nrow", nrow(nd)),
             paste("package lme4", packageVersion("lme4")),
             paste("theta", paste(g17(getME(fit, "theta")), collapse = " ")),
             paste("beta", paste(g17(fixef(fit)), collapse = " ")),
             paste("vcov", paste(g17(as.vector(as.matrix(vcov(fit)))), collapse = " ")))
  re <- ranef(fit)
  for (g in names(re))
    for (l in rownames(re[[g]]))
      lines <- c(lines, paste("ranef", g, l, paste(g17(unlist(re[[g]][l, ])), collapse = " ")))
  p_none <- predict(fit, nd, re.form = NA)
  p_all <- predict(fit, nd, re.form = NULL, allow.new.levels = TRUE)
  lines <- c(lines, paste("pred_none", paste(g17(p_none), collapse = " ")),
             paste("pred_all", paste(g17(p_all), collapse = " ")))
  if (cs$family != "gaussian")
    lines <- c(lines,
               paste("resp_none", paste(g17(predict(fit, nd, re.form = NA, type = "response")),
                                        collapse = " ")),
               paste("resp_all", paste(g17(predict(fit, nd, re.form = NULL, type = "response",
                                                   allow.new.levels = TRUE)), collapse = " ")))
  ## the fixed-effect rows of the new data, coded as the fit's
  tt <- delete.response(terms(fit, fixed.only = TRUE))
  mf <- model.frame(tt, nd, na.action = na.pass, xlev = lapply(d[sapply(d, is.factor)], levels))
  X <- model.matrix(tt, mf, contrasts.arg = attr(getME(fit, "X"), "contrasts"))
  V <- as.matrix(vcov(fit))
  lines <- c(lines, paste("se_link", paste(g17(sqrt(rowSums((X %*% V) * X))), collapse = " ")))
  ## rows with a grouping level the fit did not see
  isnew <- rep(FALSE, nrow(nd))
  for (g in names(re)) {
    parts <- strsplit(g, ":", fixed = TRUE)[[1]]
    lab <- do.call(paste, c(lapply(parts, function(v) as.character(nd[[v]])), sep = ":"))
    isnew <- isnew | !(lab %in% rownames(re[[g]]))
  }
  lines <- c(lines, paste("n_new", sum(isnew)))
  writeLines(lines, file.path(out_dir, sprintf("predict_%s.ref", cs$name)))
}
