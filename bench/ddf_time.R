## ddf_time.R -- time summary(lmerTest::lmer(...)) (the fit with
## lmerTest's Hessian and Jacobian, and the summary's Satterthwaite or
## Kenward-Roger df), for the comparison with mlmx (bench/run_ddf.sh).
##
##   OPENBLAS_NUM_THREADS=1 Rscript bench/ddf_time.R <csv> <formula> <ddf> <reps>
##
## The data are read once, untimed. Prints the median of reps runs:
##   lmerTest seconds=... reps=...  and the coefficient table.
suppressPackageStartupMessages(library(lmerTest))
invisible(Sys.setlocale("LC_COLLATE", "C"))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = TRUE)
form <- as.formula(args[2])
ddf <- args[3]
reps <- as.integer(args[4])
secs <- numeric(reps)
for (r in seq_len(reps)) {
  t0 <- proc.time()[["elapsed"]]
  s <- summary(lmerTest::lmer(form, data = d), ddf = ddf)
  secs[r] <- proc.time()[["elapsed"]] - t0
}
cat(sprintf("lmerTest %s seconds=%.4f reps=%d\n", ddf, median(secs), reps))
print(s$coefficients)
