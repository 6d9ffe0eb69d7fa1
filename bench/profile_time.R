## profile_time.R -- time lme4's confint(fit, method = "profile") (every
## parameter) on a fitted model, for the comparison with mlmx
## (bench/run_profile.sh).
##
##   OPENBLAS_NUM_THREADS=1 Rscript bench/profile_time.R <case> <reps>
##
## case: sleepstudy  lmer(Reaction ~ Days + (Days | Subject)), REML
##       cbpp        glmer(cbind(incidence, size - incidence) ~ factor(period) + (1 | herd),
##                   binomial), Laplace
## The fit is not timed. Prints the median of reps runs:
##   lme4 <case> seconds=... reps=...  and the intervals.
suppressPackageStartupMessages(library(lme4))
invisible(Sys.setlocale("LC_COLLATE", "C"))
args <- commandArgs(trailingOnly = TRUE)
case <- args[1]
reps <- as.integer(args[2])
fit <- switch(case,
  sleepstudy = {
    d <- read.csv("data/sleepstudy.csv", stringsAsFactors = TRUE)
    lmer(Reaction ~ Days + (Days | Subject), data = d)
  },
  cbpp = {
    d <- read.csv("data/cbpp.csv", stringsAsFactors = TRUE)
    glmer(cbind(incidence, size - incidence) ~ factor(period) + (1 | herd), family = binomial,
          data = d)
  },
  stop("unknown case ", case))
secs <- numeric(reps)
for (r in seq_len(reps)) {
  t0 <- proc.time()[["elapsed"]]
  ci <- suppressMessages(suppressWarnings(confint(fit, method = "profile")))
  secs[r] <- proc.time()[["elapsed"]] - t0
}
cat(sprintf("lme4 %s seconds=%.4f reps=%d\n", case, median(secs), reps))
for (i in seq_len(nrow(ci)))
  cat(sprintf("  %-16s %12.7g %12.7g\n", rownames(ci)[i], ci[i, 1], ci[i, 2]))
