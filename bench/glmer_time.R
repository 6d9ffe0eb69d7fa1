## glmer_time.R -- time R's GLMM fitters on a reference case, for comparison
## with mlmx.
##
##   OPENBLAS_NUM_THREADS=1 Rscript bench/glmer_time.R <case> <data dir> <reps>
##
## case (same models as data/reference/glmm_reference.R, default controls):
##   cbpp_laplace      glmer cbind(incidence, size - incidence) ~ factor(period) + (1|herd),
##                     binomial, nAGQ = 1                            (cbpp.csv)
##   cbpp_agq25        the same with nAGQ = 25
##   verbagg_laplace   glmer r2 ~ Anger + Gender + btype + situ + (1|id) + (1|item),
##                     binomial                                      (verbagg.csv)
##   grouseticks_pois  glmer TICKS ~ factor(YEAR) + HEIGHT + (1|BROOD) + (1|INDEX)
##                     + (1|LOCATION), poisson                       (grouseticks.csv)
##   hdp2_agq10        glmer remission ~ IL6 + CRP + CancerStage + LengthofStay
##                     + Experience + (1|DID), binomial, nAGQ = 10   (hdp.csv)
##   hdp3_laplace      glmer remission ~ Age + LengthofStay + FamilyHx + IL6 + CRP
##                     + CancerStage + Experience + (1|DID) + (1|HID), binomial
##   wine_laplace      ordinal::clmm rating ~ temp + contact + (1|judge), logit,
##                     Laplace (rating converted to an ordered factor) (wine.csv)
##   salamanders_nb2   glmmTMB count ~ spp * mined + (1|site), nbinom2 (salamanders.csv)
##
## The CSV is read once (not timed, read.csv(stringsAsFactors = TRUE) under
## LC_COLLATE=C, as mlmx reads it).  When reps > 1 the model is fitted once as
## a warm-up (not counted); then it is fitted <reps> times and only the fitting
## call is timed.  Prints exactly one line:
##   lme4 <case> median_s=... min_s=... reps=... loglik=...
## (the first word is "lme4" for every case, including the clmm and glmmTMB
## ones).  loglik is the FULL log-likelihood, on the scale of the Laplace fits:
## for cbpp_agq25 lme4 prints a value relative to the saturated binomial model,
## and the saturated log-likelihood is added back (see data/reference/README.md,
## "GLMM fixtures").  Warnings from the fits go to stderr.
## Run single-threaded: the caller must set OPENBLAS_NUM_THREADS=1 (it has to
## be set before R starts); a warning goes to stderr if it is not.
## Needs (Debian): r-base-core, r-cran-lme4, r-cran-ordinal, r-cran-glmmtmb.

invisible(Sys.setlocale("LC_COLLATE", "C"))

specs <- list(
  cbpp_laplace = list(file = "cbpp.csv", pkg = "lme4", nAGQ = 1, family = "binomial",
    formula = cbind(incidence, size - incidence) ~ factor(period) + (1|herd)),
  cbpp_agq25 = list(file = "cbpp.csv", pkg = "lme4", nAGQ = 25, family = "binomial",
    formula = cbind(incidence, size - incidence) ~ factor(period) + (1|herd)),
  verbagg_laplace = list(file = "verbagg.csv", pkg = "lme4", nAGQ = 1, family = "binomial",
    formula = r2 ~ Anger + Gender + btype + situ + (1|id) + (1|item)),
  grouseticks_pois = list(file = "grouseticks.csv", pkg = "lme4", nAGQ = 1, family = "poisson",
    formula = TICKS ~ factor(YEAR) + HEIGHT + (1|BROOD) + (1|INDEX) + (1|LOCATION)),
  hdp2_agq10 = list(file = "hdp.csv", pkg = "lme4", nAGQ = 10, family = "binomial",
    formula = remission ~ IL6 + CRP + CancerStage + LengthofStay + Experience + (1|DID)),
  hdp3_laplace = list(file = "hdp.csv", pkg = "lme4", nAGQ = 1, family = "binomial",
    formula = remission ~ Age + LengthofStay + FamilyHx + IL6 + CRP + CancerStage +
      Experience + (1|DID) + (1|HID)),
  wine_laplace = list(file = "wine.csv", pkg = "ordinal", nAGQ = 1,
    formula = rating ~ temp + contact + (1|judge)),
  salamanders_nb2 = list(file = "salamanders.csv", pkg = "glmmTMB",
    formula = count ~ spp * mined + (1|site))
)

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 1 || !(args[1] %in% names(specs))) {
  message("usage: Rscript bench/glmer_time.R CASE [data dir] [reps]\n",
          "  CASE: ", paste(names(specs), collapse = ", "))
  quit(status = 2)
}
case     <- args[1]
data_dir <- if (length(args) >= 2) args[2] else "data"
reps     <- if (length(args) >= 3) as.integer(args[3]) else 5L
if (is.na(reps) || reps < 1) stop("reps must be a positive integer")
if (Sys.getenv("OPENBLAS_NUM_THREADS") != "1")
  message("warning: OPENBLAS_NUM_THREADS is not set to 1; ",
          "timings may use several BLAS threads")

spec <- specs[[case]]
suppressPackageStartupMessages(library(spec$pkg, character.only = TRUE))

path <- file.path(data_dir, spec$file)
if (!file.exists(path)) stop("cannot find ", path)
dat <- read.csv(path, stringsAsFactors = TRUE)
if (case == "wine_laplace")
  dat$rating <- factor(dat$rating, levels = sort(unique(dat$rating)), ordered = TRUE)

fit_once <- switch(spec$pkg,
  lme4 = function() glmer(spec$formula, data = dat, family = spec$family, nAGQ = spec$nAGQ),
  ordinal = function() clmm(spec$formula, data = dat, link = "logit", nAGQ = spec$nAGQ),
  glmmTMB = function() glmmTMB(spec$formula, data = dat, family = nbinom2))

## Full-scale log-likelihood.  lme4's nAGQ > 1 value is relative to the
## saturated model; aic() - sum(devResid()) = -2 * saturated loglik.
full_loglik <- function(fit) {
  ll <- as.numeric(logLik(fit))
  if (spec$pkg == "lme4" && spec$nAGQ > 1)
    ll <- ll - 0.5 * (fit@resp$aic() - sum(fit@resp$devResid()))
  ll
}

if (reps > 1) fit <- fit_once()                      # warm-up, not counted
times <- numeric(reps)
for (i in seq_len(reps)) {
  t0 <- proc.time()[["elapsed"]]
  fit <- fit_once()
  times[i] <- proc.time()[["elapsed"]] - t0
}

cat(sprintf("lme4 %s median_s=%.6f min_s=%.6f reps=%d loglik=%.10f\n",
            case, median(times), min(times), reps, full_loglik(fit)))
