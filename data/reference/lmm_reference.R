## lmm_reference.R -- lme4 reference fixtures for mlmx's LMM core.
##
## Run from the repository root:
##
##   OPENBLAS_NUM_THREADS=1 Rscript data/reference/lmm_reference.R data ../shared/data
##
## (OPENBLAS_NUM_THREADS=1 keeps the output bit-reproducible: with threaded
## OpenBLAS the InstEval fit moves by up to ~3e-7 relative in theta,
## because its criterion is flat to ~1e-10 there.  The committed fixtures were made
## single-threaded.)
##
## Argument 1: directory holding the small CSVs (default "data").
## Argument 2: directory holding insteval.csv (default "../shared/data");
##             the insteval_reml case is skipped with a message if absent.
##
## Needs (Debian bookworm): r-base-core, r-cran-lme4 (which pulls in
## r-cran-matrix, r-cran-minqa, r-cran-nloptr).  Written against R 4.2.2 and
## lme4 1.1-31.
##
## Output: data/reference/lmm/<case>.ref (one per case), plus
##   <case>_ranef.csv   for sleepstudy_reml, penicillin, pastes
##   <case>_devfun.csv  for sleepstudy_reml, penicillin
##   sleepstudy_reml_fitted.csv
## The fixture format is described in data/reference/README.md.
##
## Every model is fitted twice: with lmer()'s default control (what a user
## gets; its function-evaluation count is recorded as lme4_feval) and with
## tight optimizer tolerances (nloptwrap/BOBYQA with ftol/xtol 1e-14/1e-12,
## and minqa::bobyqa with rhoend 1e-12).  The tight fit with the lower
## criterion is written as the fixture.  stdout shows, per case, the criteria
## and the largest relative theta/beta differences between default and tight.

invisible(Sys.setlocale("LC_COLLATE", "C"))   # mlmx sorts factor levels in byte order

suppressPackageStartupMessages(library(lme4))

args <- commandArgs(trailingOnly = TRUE)
data_dir     <- if (length(args) >= 1) args[1] else "data"
insteval_dir <- if (length(args) >= 2) args[2] else "../shared/data"
out_dir <- file.path("data", "reference", "lmm")
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)
if (Sys.getenv("OPENBLAS_NUM_THREADS") != "1")
  message("warning: OPENBLAS_NUM_THREADS is not 1; the InstEval fixture ",
          "may differ from the committed one in the last ~7 digits")

g17 <- function(x) sprintf("%.17g", x)

read_data <- function(file, dir = data_dir) {
  path <- file.path(dir, file)
  if (!file.exists(path)) return(NULL)
  ## numeric ids (Subject, school, classid, ...) stay numeric; lme4 turns
  ## grouping variables into factors itself.
  read.csv(path, stringsAsFactors = TRUE)
}

cases <- list(
  list(name = "sleepstudy_reml",  data = "sleepstudy.csv", REML = TRUE,
       formula = "Reaction ~ Days + (Days|Subject)"),
  list(name = "sleepstudy_ml",    data = "sleepstudy.csv", REML = FALSE,
       formula = "Reaction ~ Days + (Days|Subject)"),
  list(name = "sleepstudy_uncor", data = "sleepstudy.csv", REML = TRUE,
       formula = "Reaction ~ Days + (1|Subject) + (0+Days|Subject)"),
  list(name = "sleepstudy_diag",  data = "sleepstudy.csv", REML = TRUE,
       formula = "Reaction ~ Days + (Days||Subject)"),
  list(name = "penicillin",       data = "penicillin.csv", REML = TRUE,
       formula = "diameter ~ 1 + (1|plate) + (1|sample)"),
  list(name = "pastes",           data = "pastes.csv", REML = TRUE,
       formula = "strength ~ 1 + (1|batch/cask)"),
  list(name = "dyestuff_reml",    data = "dyestuff.csv", REML = TRUE,
       formula = "Yield ~ 1 + (1|Batch)"),
  list(name = "dyestuff_ml",      data = "dyestuff.csv", REML = FALSE,
       formula = "Yield ~ 1 + (1|Batch)"),
  list(name = "dyestuff2_reml",   data = "dyestuff2.csv", REML = TRUE,
       formula = "Yield ~ 1 + (1|Batch)"),
  list(name = "hsb",              data = "hsb.csv", REML = TRUE,
       formula = "mathach ~ meanses*cses + sector*cses + (1 + cses|school)"),
  list(name = "classroom_ml",     data = "classroom.csv", REML = FALSE,
       formula = paste("mathgain ~ mathkind + sex + minority + ses + housepov",
                       "+ (1|schoolid) + (1|classid)")),
  list(name = "veneer_ml",        data = "veneer.csv", REML = FALSE,
       formula = paste("gcf ~ time*(base_gcf + cda + age)",
                       "+ (time|patient) + (1|patient:tooth)")),
  ## factors in the fixed part: treatment contrasts, names, interactions
  list(name = "orthodont_reml",   data = "orthodont.csv", REML = TRUE,
       formula = "distance ~ age * Sex + (age|Subject)"),
  list(name = "oats_reml",        data = "oats.csv", REML = TRUE,
       formula = "yield ~ nitro + Variety + (1|Block/Variety)"),
  list(name = "cake_reml",        data = "cake.csv", REML = TRUE,
       formula = "angle ~ recipe * temp + (1|recipe:replicate)"),
  list(name = "bodyweight_reml",  data = "bodyweight.csv", REML = TRUE,
       formula = "weight ~ Time * factor(Diet) + (Time|Rat)"),
  list(name = "sleepstudy_factor_ml", data = "sleepstudy.csv", REML = FALSE,
       formula = "Reaction ~ factor(Days) + (1|Subject)"),
  ## a collinear column: lme4 drops it with a message
  list(name = "sleepstudy_rankdef", data = "sleepstudy.csv", REML = TRUE,
       formula = "Reaction ~ Days + I(2*Days) + log(Days + 1) + (1|Subject)"),
  ## rows with a missing model variable are dropped (mathknow has 109 NAs)
  list(name = "classroom_na_reml", data = "classroom.csv", REML = TRUE,
       formula = "mathgain ~ mathkind + mathknow + (1|schoolid/classid)"),
  ## no intercept: a factor gets indicator coding; a slope-only random term
  list(name = "orthodont_noint_ml", data = "orthodont.csv", REML = FALSE,
       formula = "distance ~ 0 + Sex + age:Sex + (0 + age|Subject)"),
  ## factor x factor interaction, factor in the random part
  list(name = "oats_factor_ml",   data = "oats.csv", REML = FALSE,
       formula = "yield ~ Variety * factor(nitro) + (1|Block)"),
  list(name = "oats_varietyre_reml", data = "oats.csv", REML = TRUE,
       formula = "yield ~ nitro + (0 + Variety|Block)"),
  ## three nested factors (sex within class within school): a chain of
  ## two nested stages inside the dense block
  list(name = "classroom3_reml",  data = "classroom.csv", REML = TRUE,
       formula = paste("mathgain ~ mathkind + ses + (1|schoolid) + (1|schoolid:classid)",
                       "+ (1|schoolid:classid:sex)")),
  ## simulated designs (data/reference/simulate_designs.R)
  list(name = "sim_nested4_reml", data = "sim_nested4.csv", REML = TRUE,
       formula = paste("y ~ ses + female + (1|district) + (1 + ses|district:school)",
                       "+ (1|district:school:class)")),
  list(name = "sim_nested4_ml",   data = "sim_nested4.csv", REML = FALSE,
       formula = "y ~ ses + (1|district/school/class)"),
  list(name = "sim_crossed_reml", data = "sim_crossed.csv", REML = TRUE,
       formula = "score ~ time * grp + (1 + time|student) + (1|teacher)"),
  list(name = "sim_crossed_diag_ml", data = "sim_crossed.csv", REML = FALSE,
       formula = "score ~ time + grp + (time||student) + (1|teacher)"),
  list(name = "insteval_reml",    data = "insteval.csv", REML = TRUE,
       formula = "y ~ service + (1|s) + (1|d) + (1|dept:service)",
       dir = insteval_dir)
)

ranef_cases  <- c("sleepstudy_reml", "penicillin", "pastes")
devfun_cases <- list(
  sleepstudy_reml = list(c(0.5, 0.1, 0.3), c(2, -0.5, 0.1), c(0, 0, 0.5)),
  penicillin      = list(c(0.5, 0.1), c(2, 3), c(0, 1.5))
)

tight_nlopt <- lmerControl(optimizer = "nloptwrap",
                           optCtrl = list(ftol_abs = 1e-14, ftol_rel = 1e-14,
                                          xtol_abs = 1e-12, xtol_rel = 1e-12,
                                          maxeval = 1e5))
tight_bobyqa <- lmerControl(optimizer = "bobyqa",
                            optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

crit <- function(fit) if (isREML(fit)) REMLcrit(fit) else deviance(fit)

maxrel <- function(a, b) {
  d <- abs(a - b) / pmax(abs(b), 1e-8)
  if (length(d)) max(d) else 0
}

fit_quiet <- function(form, dat, REML, control) {
  msgs <- character()
  fit <- withCallingHandlers(
    lmer(form, data = dat, REML = REML, control = control),
    warning = function(w) { msgs <<- c(msgs, conditionMessage(w))
                            invokeRestart("muffleWarning") },
    message = function(m) { msgs <<- c(msgs, conditionMessage(m))
                            invokeRestart("muffleMessage") })
  list(fit = fit, msgs = msgs)
}

write_ref <- function(cs, fit, feval_default) {
  lines <- character()
  add <- function(key, ...) lines <<- c(lines, paste(c(key, ...), collapse = " "))
  ll <- logLik(fit)
  th <- getME(fit, "theta")
  be <- fixef(fit)
  add("case", cs$name)
  add("data", cs$data)
  add("formula", cs$formula)
  add("method", if (cs$REML) "REML" else "ML")
  add("criterion", g17(crit(fit)))
  add("loglik", g17(as.numeric(ll)))
  add("df", g17(attr(ll, "df")))
  add("aic", g17(AIC(fit)))
  add("bic", g17(BIC(fit)))
  add("nobs", g17(nobs(fit)))
  add("sigma", g17(sigma(fit)))
  add("theta", g17(th))
  add("theta_names", gsub(" ", "", names(th), fixed = TRUE))
  add("fixef_names", gsub(" ", "", names(be)))   # spaces dropped: tokens are space-separated
  add("beta", g17(be))
  add("se", g17(sqrt(diag(as.matrix(vcov(fit))))))
  add("singular", as.integer(isSingular(fit)))
  ng <- ngrps(fit)
  add("ngroups", paste0(names(ng), "=", ng))
  vc <- as.data.frame(VarCorr(fit))
  nospace <- function(x) gsub(" ", "", x, fixed = TRUE)   # tokens are space-separated
  vc$grp <- nospace(vc$grp); vc$var1 <- nospace(vc$var1); vc$var2 <- nospace(vc$var2)
  for (i in which(is.na(vc$var2)))
    add("vc", vc$grp[i], if (is.na(vc$var1[i])) "NA" else vc$var1[i],
        g17(vc$vcov[i]), g17(vc$sdcor[i]))
  for (i in which(!is.na(vc$var2)))
    add("cor", vc$grp[i], vc$var1[i], vc$var2[i], g17(vc$sdcor[i]))
  fc <- cov2cor(as.matrix(vcov(fit)))
  for (i in seq_len(nrow(fc))) add("fixcor", g17(fc[i, ]))
  add("resid_quantiles",
      g17(quantile(residuals(fit, type = "pearson", scaled = TRUE),
                   na.rm = TRUE)))
  add("lme4_feval", g17(feval_default))
  add("lme4_version", as.character(packageVersion("lme4")))
  writeLines(lines, file.path(out_dir, paste0(cs$name, ".ref")))
}

write_csv_plain <- function(df, file) {
  num <- vapply(df, is.numeric, logical(1))
  df[num] <- lapply(df[num], g17)
  write.table(df, file.path(out_dir, file), sep = ",", quote = FALSE,
              row.names = FALSE, col.names = TRUE)
}

cat(sprintf("lme4 %s, R %s\n", packageVersion("lme4"), getRversion()))
cat(sprintf("%-17s %-6s %22s %22s %10s %10s %6s %6s %s\n", "case", "method",
            "crit_default", "crit_tight", "dtheta_rel", "dbeta_rel",
            "feval", "f_tgt", "tight_opt"))

for (cs in cases) {
  dat <- read_data(cs$data, if (is.null(cs$dir)) data_dir else cs$dir)
  if (is.null(dat)) {
    cat(sprintf("%s: %s not found, skipped\n", cs$name, cs$data))
    next
  }
  form <- as.formula(cs$formula)
  d0 <- fit_quiet(form, dat, cs$REML, lmerControl())
  t1 <- fit_quiet(form, dat, cs$REML, tight_nlopt)
  t2 <- fit_quiet(form, dat, cs$REML, tight_bobyqa)
  use_bobyqa <- crit(t2$fit) < crit(t1$fit)
  tight <- if (use_bobyqa) t2 else t1
  tight_name <- if (use_bobyqa) "bobyqa" else "nloptwrap"
  fd <- d0$fit; ft <- tight$fit
  cat(sprintf("%-17s %-6s %22.15f %22.15f %10.2e %10.2e %6d %6d %s (nlopt-bobyqa crit diff %.3g)\n",
              cs$name, if (cs$REML) "REML" else "ML", crit(fd), crit(ft),
              maxrel(getME(fd, "theta"), getME(ft, "theta")),
              maxrel(fixef(fd), fixef(ft)),
              as.integer(fd@optinfo$feval), as.integer(ft@optinfo$feval),
              tight_name, crit(t1$fit) - crit(t2$fit)))
  cat(sprintf("    theta = %s\n", paste(sprintf("%.10g", getME(ft, "theta")),
                                       collapse = " ")))
  for (m in unique(c(d0$msgs, tight$msgs)))
    cat(sprintf("    note: %s\n", gsub("\n", " ", m)))

  write_ref(cs, ft, fd@optinfo$feval)

  if (cs$name %in% ranef_cases) {
    re <- as.data.frame(ranef(ft, condVar = TRUE))
    write_csv_plain(data.frame(group = re$grpvar, level = re$grp,
                               term = re$term, mode = re$condval,
                               condsd = re$condsd),
                    paste0(cs$name, "_ranef.csv"))
  }
  if (cs$name == "sleepstudy_reml")
    write_csv_plain(data.frame(fitted = unname(fitted(ft)),
                               resid = unname(residuals(ft))),
                    "sleepstudy_reml_fitted.csv")
  if (cs$name %in% names(devfun_cases)) {
    dfun <- lmer(form, data = dat, REML = cs$REML, devFunOnly = TRUE)
    th_opt <- getME(ft, "theta")
    start <- ifelse(getME(ft, "lower") == 0, 1, 0)   # lme4's start values
    pts <- c(list(start, th_opt), devfun_cases[[cs$name]])
    m <- do.call(rbind, pts)
    vals <- vapply(pts, function(p) dfun(p), numeric(1))
    df <- as.data.frame(m)
    names(df) <- paste0("theta", seq_len(ncol(m)))
    df$value <- vals
    write_csv_plain(df, paste0(cs$name, "_devfun.csv"))
    for (i in seq_along(pts))
      cat(sprintf("    devfun(%s) = %.17g\n",
                  paste(sprintf("%.6g", pts[[i]]), collapse = ", "), vals[i]))
  }
}
