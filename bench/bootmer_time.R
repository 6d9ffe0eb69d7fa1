## bootmer_time.R -- time lme4's bootMer on a bootstrap case, for the
## replicate-rate comparison with mlmx boot (bench/run_boot.sh).
##
##   OPENBLAS_NUM_THREADS=1 Rscript bench/bootmer_time.R <case> <nsim>
##
## case: sleepstudy  lmer(Reaction ~ Days + (Days | Subject)), REML
##       cbpp        glmer(cbind(incidence, size - incidence) ~ factor(period) + (1 | herd),
##                   binomial), Laplace
##       hdp3        glmer(remission ~ Age + LengthofStay + FamilyHx + IL6 + CRP + CancerStage
##                   + Experience + (1|DID) + (1|HID), binomial), Laplace
## FUN returns the fixed effects and the variance components (as mlmx boot
## reports them). Prints one line: bootmer <case> nsim=... seconds=... per_s=...
suppressPackageStartupMessages(library(lme4))
invisible(Sys.setlocale("LC_COLLATE", "C"))
args <- commandArgs(trailingOnly = TRUE)
case <- args[1]
nsim <- as.integer(args[2])
fit <- switch(case,
  sleepstudy = {
    d <- read.csv("data/sleepstudy.csv", stringsAsFactors = TRUE)
    d$Subject <- factor(d$Subject)
    lmer(Reaction ~ Days + (Days | Subject), data = d)
  },
  cbpp = {
    d <- read.csv("data/cbpp.csv", stringsAsFactors = TRUE)
    d$herd <- factor(d$herd)
    glmer(cbind(incidence, size - incidence) ~ factor(period) + (1 | herd), family = binomial,
          data = d)
  },
  hdp3 = {
    d <- read.csv("data/hdp.csv", stringsAsFactors = TRUE)
    d$DID <- factor(d$DID); d$HID <- factor(d$HID)
    glmer(remission ~ Age + LengthofStay + FamilyHx + IL6 + CRP + CancerStage + Experience +
          (1 | DID) + (1 | HID), family = binomial, data = d)
  })
FUN <- function(m) c(fixef(m), as.data.frame(VarCorr(m))$sdcor)
t <- system.time(b <- suppressWarnings(suppressMessages(
  bootMer(fit, FUN, nsim = nsim, seed = 1, use.u = FALSE, type = "parametric"))))[["elapsed"]]
cat(sprintf("bootmer %s nsim=%d seconds=%.3f per_s=%.2f\n", case, nsim, t, nsim / t))
