## make_panel.R -- the simulated panel of bench/run_resid.sh: S subjects
## measured at times 1..T (each subject's times in order), a subject-level
## and a time-varying covariate, a random intercept (SD 1) and AR(1)
## residuals (Phi 0.6, SD 1):
##   y = 1 + 0.3 time + 0.5 x + 0.4 z + b_s + e_st,  e_st = 0.6 e_s,t-1 + a_st
##
##   Rscript bench/make_panel.R <subjects> <times> <out.csv> [seed]
args <- commandArgs(trailingOnly = TRUE)
S <- as.integer(args[1]); T <- as.integer(args[2])
set.seed(if (length(args) > 3) as.integer(args[4]) else 20261203)
phi <- 0.6
id <- rep(seq_len(S), each = T)
time <- rep(seq_len(T), S)
x <- rep(rnorm(S), each = T)
z <- rnorm(S * T)
b <- rep(rnorm(S), each = T)
e <- numeric(S * T)
for (s in seq_len(S)) {
  i <- (s - 1) * T + seq_len(T)
  e[i] <- as.numeric(arima.sim(list(ar = phi), n = T, sd = sqrt(1 - phi^2)))
}
y <- 1 + 0.3 * time + 0.5 * x + 0.4 * z + b + e
write.csv(data.frame(y = round(y, 6), time, x = round(x, 6), z = round(z, 6),
                     id = sprintf("s%05d", id)), args[3], row.names = FALSE)
