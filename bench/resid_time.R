## resid_time.R -- time nlme::lme(...) with a residual correlation or
## variance structure, for the comparison with mlmx (bench/run_resid.sh).
##
##   OPENBLAS_NUM_THREADS=1 Rscript bench/resid_time.R <csv> <fixed> <random> \
##       <correlation R expression or -> <weights R expression or -> <REML|ML> <reps>
##
## The data are read once, untimed. Prints the median of reps runs:
##   nlme seconds=... reps=... loglik=... and the correlation parameters.
suppressPackageStartupMessages(library(nlme))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = TRUE)
fixed <- as.formula(args[2])
random <- as.formula(args[3])
corr <- if (args[4] == "-") NULL else eval(parse(text = args[4]))
wts <- if (args[5] == "-") NULL else eval(parse(text = args[5]))
method <- args[6]
reps <- as.integer(args[7])
secs <- numeric(reps)
for (r in seq_len(reps)) {
  t0 <- proc.time()[["elapsed"]]
  fit <- lme(fixed, random = random, correlation = corr, weights = wts, data = d,
             method = method)
  secs[r] <- proc.time()[["elapsed"]] - t0
}
cs <- fit$modelStruct$corStruct
cat(sprintf("nlme seconds=%.4f reps=%d loglik=%.6f %s\n", median(secs), reps,
            as.numeric(logLik(fit)),
            if (is.null(cs)) "" else paste(sprintf("%.6f", coef(cs, unconstrained = FALSE)),
                                           collapse = " ")))
