## bootmer_reference.R -- lme4::bootMer reference fixtures for mlmx's
## parametric bootstrap.
##
## Run from the repository root:
##
##   OPENBLAS_NUM_THREADS=1 Rscript data/reference/boot/bootmer_reference.R
##
## Written against R 4.2.2 and lme4 1.1-31 (Debian bookworm: r-base-core,
## r-cran-lme4).
##
## Output (all under data/reference/boot/):
##   sleepstudy_boot.csv  lmer(Reaction ~ Days + (Days | Subject)), REML
##   cbpp_boot.csv        glmer(cbind(incidence, size - incidence) ~ period
##                        + (1 | herd), binomial), Laplace
##   README.md            versions, date, bootMer runtimes, warning counts
##
## Both use bootMer(fit, FUN, nsim = 2000, seed = 20261202, use.u = FALSE,
## type = "parametric"): responses are simulated from the fitted model with
## new random effects, and every replicate is refitted from the original
## fit's estimates (lme4's refit()).
##
## FUN returns, in this order:
##   the fixed effects, named as lme4 names them ((Intercept), Days, period2, ...);
##   for each random-effect term (VarCorr order): the SDs, named
##     sd_<column>|<group>, then the correlations, named
##     cor_<col1>.<col2>|<group> (lower triangle, column-major);
##   sigma (LMM only).
##
## CSV columns: param, estimate (the original fit's value), mean, sd, q025,
## q975 (quantile type 7, R's default) over the replicates whose value is
## finite, n_ok (that count) and nsim.
##
## Singular refits (isSingular(), tol 1e-4) and refits with lme4 convergence
## warnings are counted but kept: the fixture is what bootMer gives a user.

invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages(library(lme4))

out_dir <- file.path("data", "reference", "boot")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

NSIM <- as.integer(Sys.getenv("BOOT_NSIM", "2000"))   # override only for quick tests
SEED <- 20261202L

## The statistics named in the header.
boot_stats <- function(fit) {
    beta <- fixef(fit)
    vc <- VarCorr(fit)
    re <- numeric(0)
    for (grp in names(vc)) {
        m <- vc[[grp]]
        sds <- attr(m, "stddev")
        re <- c(re, setNames(sds, paste0("sd_", names(sds), "|", grp)))
        k <- length(sds)
        if (k > 1) {
            cm <- attr(m, "correlation")
            for (j in 1:(k - 1)) for (i in (j + 1):k)
                re <- c(re, setNames(cm[i, j],
                                     paste0("cor_", names(sds)[j], ".",
                                            names(sds)[i], "|", grp)))
        }
    }
    out <- c(beta, re)
    if (isLMM(fit)) out <- c(out, sigma = sigma(fit))
    out
}

## What bootMer calls: the statistics plus two bookkeeping flags (dropped
## from the fixture): singular fit, lme4 convergence warning present (other
## than the boundary (singular) note, which lme4 also stores there),
## optimizer warning present.
boot_fun <- function(fit) {
    conv <- fit@optinfo$conv$lme4$messages
    conv <- conv[!grepl("singular", conv)]   # the singular note is counted apart
    c(boot_stats(fit),
      .singular = as.numeric(isSingular(fit)),
      .convmsg = as.numeric(length(conv) > 0),
      .optwarn = as.numeric(length(fit@optinfo$warnings) > 0))
}

summarise_boot <- function(b, nsim) {
    t0 <- b$t0
    keep <- !startsWith(names(t0), ".")
    rows <- lapply(which(keep), function(j) {
        v <- b$t[, j]
        v <- v[is.finite(v)]
        q <- quantile(v, c(0.025, 0.975), type = 7, names = FALSE)
        data.frame(param = names(t0)[j], estimate = t0[[j]], mean = mean(v),
                   sd = sd(v), q025 = q[1], q975 = q[2], n_ok = length(v),
                   nsim = nsim, stringsAsFactors = FALSE)
    })
    do.call(rbind, rows)
}

write_fixture <- function(df, path) {
    num <- c("estimate", "mean", "sd", "q025", "q975")
    for (cc in num) df[[cc]] <- sprintf("%.10g", df[[cc]])
    write.csv(df, path, row.names = FALSE, quote = FALSE)
}

run_case <- function(name, fit) {
    cat("==", name, "==\n")
    print(boot_stats(fit))
    tm <- system.time(
        b <- bootMer(fit, boot_fun, nsim = NSIM, seed = SEED, use.u = FALSE,
                     type = "parametric")
    )[["elapsed"]]
    df <- summarise_boot(b, NSIM)
    write_fixture(df, file.path(out_dir, paste0(name, "_boot.csv")))
    msgs <- attr(b, "boot.all.msgs")
    sing <- b$t[, ".singular"]
    conv <- b$t[, ".convmsg"]
    info <- list(
        name = name, seconds = tm, per_sec = NSIM / tm,
        n_fail = attr(b, "bootFail"),
        n_singular = sum(sing == 1, na.rm = TRUE),
        n_convmsg = sum(conv == 1, na.rm = TRUE),
        n_anywarn = sum(conv == 1 | b$t[, ".optwarn"] == 1, na.rm = TRUE),
        warnings = msgs[["factory-warning"]],
        messages = msgs[["factory-message"]],
        errors = msgs[["factory-error"]])
    print(df, digits = 7)
    cat(sprintf("bootMer: %.1f s, %.1f replicates/s, failed %d, singular %d, convergence messages %d\n",
                tm, NSIM / tm, info$n_fail, info$n_singular, info$n_convmsg))
    print(info$warnings); print(info$messages)
    info
}

## ---- data ----------------------------------------------------------------
sleep <- read.csv(file.path("data", "sleepstudy.csv"))
sleep$Subject <- factor(sleep$Subject)          # numeric ids in the CSV
cbpp <- read.csv(file.path("data", "cbpp.csv"))
cbpp$herd <- factor(cbpp$herd)                  # numeric ids in the CSV
cbpp$period <- factor(cbpp$period)              # 1..4 in the CSV

fit_sleep <- lmer(Reaction ~ Days + (Days | Subject), data = sleep)
fit_cbpp <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
                  family = binomial, data = cbpp)

infos <- list(run_case("sleepstudy", fit_sleep), run_case("cbpp", fit_cbpp))

## ---- README ----------------------------------------------------------------
## Message texts differ only in the numbers they quote (max|grad| = ...):
## they are grouped with the numbers replaced by <x>.
tab_lines <- function(tb) {
    if (is.null(tb) || length(tb) == 0) return("  - none")
    txt <- gsub("[0-9]+(\\.[0-9]+)?(e[-+]?[0-9]+)?", "<x>",
                gsub("\n", " ", names(tb)))
    agg <- tapply(as.integer(tb), txt, sum)
    sprintf("  - %d x `%s`", as.integer(agg), names(agg))
}
lines <- c(
    "# bootMer reference fixtures",
    "",
    "Produced by `data/reference/boot/bootmer_reference.R`, run from the repository root",
    "(`OPENBLAS_NUM_THREADS=1 Rscript data/reference/boot/bootmer_reference.R`).",
    "",
    sprintf("- R: %s", R.version.string),
    sprintf("- lme4: %s, Matrix: %s", packageVersion("lme4"), packageVersion("Matrix")),
    sprintf("- date: %s", format(Sys.time(), "%Y-%m-%d %H:%M %Z")),
    sprintf("- platform: %s", R.version$platform),
    "",
    "## Models",
    "",
    "- `sleepstudy_boot.csv`: `lmer(Reaction ~ Days + (Days | Subject), data = read.csv(\"data/sleepstudy.csv\"))`, REML,",
    "  with `Subject` converted to a factor (the CSV holds numeric ids).",
    "- `cbpp_boot.csv`: `glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial,",
    "  data = read.csv(\"data/cbpp.csv\"))`, Laplace, with `herd` and `period` converted to factors",
    "  (the CSV holds them as integers 1..15 and 1..4; `period` must be a factor to give `period2`..`period4`).",
    "",
    sprintf("Both: `bootMer(fit, FUN, nsim = %d, seed = %d, use.u = FALSE, type = \"parametric\")`,", NSIM, SEED),
    "default lmer/glmer control; each replicate is refitted with `refit()` starting from the original fit.",
    "",
    "FUN returns the fixed effects (lme4 names), then per random-effect term the SDs `sd_<column>|<group>`",
    "and correlations `cor_<col1>.<col2>|<group>`, then `sigma` (LMM only).",
    "",
    "CSV columns: `param,estimate,mean,sd,q025,q975,n_ok,nsim`. `estimate` is the original fit's value;",
    "mean, sd (n-1 denominator) and quantiles (type 7, R's default) are over the `n_ok` replicates with a",
    "finite value. Singular refits and refits with convergence warnings are kept (that is what bootMer returns).",
    "",
    "## Runtimes and warnings",
    "",
    "Runtimes are wall-clock seconds of the `bootMer()` call alone, single-threaded BLAS, on a shared",
    "2-core machine (other jobs were running), so treat them as approximate.",
    "")
for (inf in infos) {
    lines <- c(lines,
        sprintf("### %s", inf$name), "",
        sprintf("- bootMer runtime: %.1f s for %d replicates = %.1f replicates/s", inf$seconds, NSIM, inf$per_sec),
        sprintf("- failed refits (errors): %d", inf$n_fail),
        sprintf("- singular refits (`isSingular()`, tol 1e-4): %d", inf$n_singular),
        sprintf("- refits with an lme4 convergence warning (`optinfo$conv$lme4$messages`, singular note excluded): %d", inf$n_convmsg),
        sprintf("- refits with any warning (lme4 convergence warning or optimizer warning in `optinfo$warnings`): %d", inf$n_anywarn),
        "- warnings caught by bootMer (count x text; numbers replaced by <x>):",
        tab_lines(inf$warnings),
        "- messages caught by bootMer (count x text; numbers replaced by <x>):",
        tab_lines(inf$messages),
        "")
}
writeLines(lines, file.path(out_dir, "README.md"))
cat("done\n")
