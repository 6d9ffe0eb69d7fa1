## Simulated designs for the reference battery, written to data/ as CSV.
## Deterministic (set.seed); rerun to regenerate:
##   Rscript data/reference/simulate_designs.R data
## - sim_nested4.csv: a 4-level nested design (students in classes in schools
##   in districts), unbalanced, with a random slope for ses at the school
##   level;
## - sim_crossed.csv: students x teachers, partially crossed (each student
##   sees 3-6 of 40 teachers, cells missing at random), unbalanced, with a
##   student-level random slope.
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "data"
set.seed(1123)

## ---- 4-level nested
rows <- list()
for (dd in 1:8) {
  ud <- rnorm(1, sd = 0.8)
  for (ss in seq_len(sample(3:6, 1))) {
    us <- rnorm(2, sd = c(1.0, 0.4))
    for (cc in seq_len(sample(2:5, 1))) {
      uc <- rnorm(1, sd = 0.6)
      n <- sample(4:15, 1)
      ses <- rnorm(n)
      y <- 10 + 2 * ses + ud + us[1] + us[2] * ses + uc + rnorm(n, sd = 1.5)
      rows[[length(rows) + 1]] <- data.frame(
        y = round(y, 5), ses = round(ses, 5), female = rbinom(n, 1, 0.5),
        district = paste0("D", dd), school = paste0("D", dd, "S", ss),
        class = paste0("D", dd, "S", ss, "C", cc))
    }
  }
}
nested <- do.call(rbind, rows)
write.csv(nested, file.path(out, "sim_nested4.csv"), row.names = FALSE, quote = FALSE)

## ---- partially crossed students x teachers
rows <- list()
ut <- rnorm(40, sd = 0.7)
for (st in 1:150) {
  us <- rnorm(2, sd = c(1.2, 0.3))
  teach <- sample(40, sample(3:6, 1))
  for (t in teach) {
    k <- sample(1:3, 1)
    time <- sample(0:4, k, replace = TRUE)
    y <- 50 + 1.5 * time + us[1] + us[2] * time + ut[t] + rnorm(k, sd = 2)
    rows[[length(rows) + 1]] <- data.frame(
      score = round(y, 5), time = time, grp = ifelse(st %% 2 == 0, "treat", "control"),
      student = paste0("st", st), teacher = paste0("t", t))
  }
}
crossed <- do.call(rbind, rows)
write.csv(crossed, file.path(out, "sim_crossed.csv"), row.names = FALSE, quote = FALSE)
cat(sprintf("sim_nested4: %d rows; sim_crossed: %d rows\n", nrow(nested), nrow(crossed)))
