## lme4_time.R -- time lme4's lmer() on a reference case, for comparison
## with mlmx.
##
##   OPENBLAS_NUM_THREADS=1 Rscript bench/lme4_time.R <case> <data dir> <reps>
##
## case: sleepstudy  Reaction ~ Days + (Days|Subject), REML   (sleepstudy.csv)
##       insteval    y ~ service + (1|s) + (1|d) + (1|dept:service), REML
##                   (insteval.csv)
## The CSV is read once (not timed); lmer() runs once as a warm-up and then
## <reps> times with default controls (what a user gets).  Prints one line:
##   lme4 <case> median_s=... min_s=... reps=... criterion=... lme4=... R=... blas=...
## Run single-threaded: the caller must set OPENBLAS_NUM_THREADS=1 (it has to
## be set before R starts); a warning goes to stderr if it is not.
## Needs (Debian): r-base-core, r-cran-lme4.

invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages(library(lme4))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 1 || !(args[1] %in% c("sleepstudy", "insteval") || length(args) >= 6)) {
  message("usage: Rscript bench/lme4_time.R sleepstudy|insteval [data dir] [reps]\n",
          "       Rscript bench/lme4_time.R NAME DATA_DIR REPS CSV FORMULA REML|ML")
  quit(status = 2)
}
case     <- args[1]
data_dir <- if (length(args) >= 2) args[2] else "data"
reps     <- if (length(args) >= 3) as.integer(args[3]) else 10L
if (is.na(reps) || reps < 1) stop("reps must be a positive integer")

if (Sys.getenv("OPENBLAS_NUM_THREADS") != "1")
  message("warning: OPENBLAS_NUM_THREADS is not set to 1; ",
          "timings may use several BLAS threads")

spec <- if (length(args) >= 6) {
  list(file = args[4], formula = as.formula(args[5]), REML = args[6] != "ML")
} else switch(case,
  sleepstudy = list(file = "sleepstudy.csv", REML = TRUE,
                    formula = Reaction ~ Days + (Days|Subject)),
  insteval   = list(file = "insteval.csv", REML = TRUE,
                    formula = y ~ service + (1|s) + (1|d) + (1|dept:service)))

path <- file.path(data_dir, spec$file)
if (!file.exists(path)) stop("cannot find ", path)
dat <- read.csv(path, stringsAsFactors = TRUE)

fit <- lmer(spec$formula, data = dat, REML = spec$REML)   # warm-up
times <- numeric(reps)
for (i in seq_len(reps)) {
  t0 <- Sys.time()
  fit <- lmer(spec$formula, data = dat, REML = spec$REML)
  times[i] <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
}

blas <- tryCatch(unname(extSoftVersion()["BLAS"]), error = function(e) "")
if (is.na(blas) || !nzchar(blas)) {
  blas <- sessionInfo()$BLAS
  if (is.null(blas) || !nzchar(blas)) blas <- "unknown"
}
blas <- gsub("[[:space:]]+", "_", blas)

cat(sprintf("lme4 %s median_s=%.6f min_s=%.6f reps=%d criterion=%.10f lme4=%s R=%s blas=%s\n",
            case, median(times), min(times), reps,
            if (spec$REML) REMLcrit(fit) else deviance(fit),
            as.character(packageVersion("lme4")), as.character(getRversion()),
            blas))
