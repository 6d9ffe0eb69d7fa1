## A large 3-level nested design for the LMM benchmark: 2,000 schools x 5
## classes x 10 students (100,000 rows), y = 1 + 0.5 x + school + class +
## noise with SDs 1, 0.7 and 2. Deterministic (set.seed).
##   Rscript bench/make_nested.R OUT.csv
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "nested.csv"
set.seed(20261123)
ns <- 2000; nc <- 5; nk <- 10
school <- rep(seq_len(ns), each = nc * nk)
class <- rep(seq_len(ns * nc), each = nk)
x <- rnorm(ns * nc * nk)
y <- 1 + 0.5 * x + rnorm(ns)[school] + rnorm(ns * nc, sd = 0.7)[class] +
     rnorm(ns * nc * nk, sd = 2)
write.csv(data.frame(y = y, x = x, school = paste0("s", school),
                     class = paste0("c", class)), out, row.names = FALSE, quote = FALSE)
