## power_time.R -- time a simr-style simulate-and-refit power loop in lme4 for
## the slope scenario of data/scenarios/slope_power.json (the same loop as
## data/reference/power/power_reference.R, without its bookkeeping), for the
## speed comparison with mlmx power (bench/run_power.sh).
##
##   OPENBLAS_NUM_THREADS=1 Rscript bench/power_time.R <nsim>
##
## Prints one line: rloop slope nsim=... seconds=... per_s=... power=...
suppressPackageStartupMessages(library(lme4))
nsim <- as.integer(commandArgs(trailingOnly = TRUE)[1])
set.seed(1)
G <- 50; m <- 20
d <- data.frame(g = factor(rep(seq_len(G), each = m)), x = rnorm(G * m))
S <- matrix(c(1, 0.3 * 0.5, 0.3 * 0.5, 0.25), 2)
L <- t(chol(S))
set.seed(2)
rej <- 0
t <- system.time(for (r in seq_len(nsim)) {
    b <- L %*% matrix(rnorm(2 * G), 2)
    d$y <- 0.3 * d$x + b[1, d$g] + b[2, d$g] * d$x + rnorm(G * m)
    f <- suppressWarnings(suppressMessages(lmer(y ~ x + (x | g), data = d)))
    z <- coef(summary(f))["x", "t value"]
    rej <- rej + (abs(z) > qnorm(0.975))
})[["elapsed"]]
cat(sprintf("rloop slope nsim=%d seconds=%.3f per_s=%.2f power=%.3f\n", nsim, t, nsim / t,
            rej / nsim))
