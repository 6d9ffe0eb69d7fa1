## power_reference.R -- simulate-and-refit power reference for mlmx's power
## analysis, in plain lme4 / ordinal (what simr does, without simr).
##
## Run from the repository root:
##
##   OPENBLAS_NUM_THREADS=1 Rscript data/reference/power/power_reference.R
##
## Written against R 4.2.2, lme4 1.1-31, ordinal 2022.11-16 (Debian bookworm:
## r-base-core, r-cran-lme4, r-cran-ordinal).
##
## Output (under data/reference/power/):
##   power_reference.csv  scenario,nsim,power,n_failed,n_singular,seconds
##   README.md            scenario definitions, versions, runtimes, and per
##                        scenario the mean estimate / SE of x and the Monte
##                        Carlo standard error of the power
##
## Each scenario: the design (cluster ids g, covariate x) is drawn ONCE with
## set.seed(1) and then held fixed; set.seed(2) is called just before the
## simulation loop, and each iteration draws new random effects and a new
## response, refits, and applies a two-sided Wald z test of x at alpha 0.05
## (reject when |estimate / SE| > qnorm(0.975)).
##
##   slope    50 clusters x 20, x ~ N(0,1) per observation,
##            y = 0.3 x + b0 + b1 x + e, (b0, b1) ~ N(0, Sigma),
##            SD(b0) = 1, SD(b1) = 0.5, cor 0.3, e ~ N(0, 1);
##            lmer(y ~ x + (x | g)), REML.                       nsim 2000
##   binomial 40 clusters x 15, x ~ N(0,1) per observation,
##            logit P(y = 1) = -0.5 + 0.25 x + b0, SD(b0) = 1;
##            glmer(y ~ x + (1 | g), binomial), Laplace.         nsim 2000
##   ordinal  30 clusters x 10, x ~ N(0,1) per observation, 4 categories,
##            P(Y <= k) = plogis(c_k - (0.3 x + b0)), c = (-1, 0, 1.2),
##            SD(b0) = 0.8; ordinal::clmm(factor(y) ~ x + (1 | g)),
##            Laplace (default).                                 nsim 1000
##
## power = rejections / successful fits. n_failed counts the fits that
## error plus the fits whose summary() gives no finite SE for x (clmm does
## this when the random-effect SD sits at the boundary, ~1e-4, where its
## Hessian is not invertible); both are excluded from the power and told
## apart in the README. Every fit that did not error is counted in
## n_singular when isSingular() (lmer/glmer, default tol 1e-4) is TRUE or
## the clmm random-effect SD is < 1e-4; singular fits with a finite SE are
## kept in the power.
## Warnings are caught, counted (README) and otherwise ignored.
##
## Optional arguments: scenario names to run (default all three); rows of
## other scenarios already in power_reference.csv are kept. The environment
## variable POWER_NSIM overrides every nsim (quick tests only).

suppressPackageStartupMessages({
    library(lme4)
    library(ordinal)
})

out_dir <- file.path("data", "reference", "power")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
csv_path <- file.path(out_dir, "power_reference.csv")
nsim_override <- Sys.getenv("POWER_NSIM", "")

zcrit <- qnorm(0.975)

## Fit with errors caught and warnings counted.
try_fit <- function(expr) {
    warns <- character(0)
    fit <- tryCatch(
        withCallingHandlers(
            suppressMessages(expr),
            warning = function(w) {
                warns <<- c(warns, conditionMessage(w))
                invokeRestart("muffleWarning")
            }),
        error = function(e) structure(conditionMessage(e), class = "fit_error"))
    list(fit = fit, warns = warns)
}

## ---- scenarios ---------------------------------------------------------------
## Each returns list(design = data.frame, simulate = function(d) -> d with y,
## fit = function(d) -> fit, test = function(fit) -> c(est, se), singular = fn).

scen_slope <- function() {
    set.seed(1)
    n_g <- 50; n_per <- 20
    d <- data.frame(g = factor(rep(seq_len(n_g), each = n_per)),
                    x = rnorm(n_g * n_per))
    Sigma <- matrix(c(1, 0.3 * 1 * 0.5, 0.3 * 1 * 0.5, 0.25), 2, 2)
    R <- chol(Sigma)                         # upper: t(R) %*% R = Sigma
    gi <- as.integer(d$g)
    list(nsim = 2000L, design = d,
         simulate = function(d) {
             b <- matrix(rnorm(2 * n_g), n_g, 2) %*% R   # rows ~ N(0, Sigma)
             e <- rnorm(nrow(d))
             d$y <- 0.3 * d$x + b[gi, 1] + b[gi, 2] * d$x + e
             d
         },
         fit = function(d) lmer(y ~ x + (x | g), data = d),
         test = function(fit) {
             cf <- summary(fit)$coefficients
             c(est = cf["x", "Estimate"], se = cf["x", "Std. Error"])
         },
         singular = function(fit) isSingular(fit),
         min_sd = function(fit) min(attr(VarCorr(fit)$g, "stddev")))
}

scen_binomial <- function() {
    set.seed(1)
    n_g <- 40; n_per <- 15
    d <- data.frame(g = factor(rep(seq_len(n_g), each = n_per)),
                    x = rnorm(n_g * n_per))
    gi <- as.integer(d$g)
    list(nsim = 2000L, design = d,
         simulate = function(d) {
             b0 <- rnorm(n_g, 0, 1)
             d$y <- rbinom(nrow(d), 1, plogis(-0.5 + 0.25 * d$x + b0[gi]))
             d
         },
         fit = function(d) glmer(y ~ x + (1 | g), family = binomial, data = d),
         test = function(fit) {
             cf <- summary(fit)$coefficients
             c(est = cf["x", "Estimate"], se = cf["x", "Std. Error"])
         },
         singular = function(fit) isSingular(fit),
         min_sd = function(fit) min(attr(VarCorr(fit)$g, "stddev")))
}

scen_ordinal <- function() {
    set.seed(1)
    n_g <- 30; n_per <- 10
    d <- data.frame(g = factor(rep(seq_len(n_g), each = n_per)),
                    x = rnorm(n_g * n_per))
    gi <- as.integer(d$g)
    cuts <- c(-1, 0, 1.2)
    list(nsim = 1000L, design = d,
         simulate = function(d) {
             b0 <- rnorm(n_g, 0, 0.8)
             eta <- 0.3 * d$x + b0[gi]
             cum <- plogis(outer(-eta, cuts, "+"))     # P(Y <= k), k = 1..3
             u <- runif(nrow(d))
             d$y <- 1L + as.integer(rowSums(u > cum))  # 1..4
             d
         },
         fit = function(d) clmm(factor(y) ~ x + (1 | g), data = d),
         test = function(fit) {
             cf <- summary(fit)$coefficients
             c(est = cf["x", "Estimate"], se = cf["x", "Std. Error"])
         },
         singular = function(fit) attr(VarCorr(fit)$g, "stddev")[[1]] < 1e-4,
         min_sd = function(fit) attr(VarCorr(fit)$g, "stddev")[[1]])
}

scenarios <- list(slope = scen_slope, binomial = scen_binomial,
                  ordinal = scen_ordinal)

run_scenario <- function(name) {
    sc <- scenarios[[name]]()
    nsim <- if (nzchar(nsim_override)) as.integer(nsim_override) else sc$nsim
    d <- sc$design
    est <- se <- rep(NA_real_, nsim)
    failed <- singular <- warned <- n_error_v <- no_se <- logical(nsim)
    min_sd <- rep(NA_real_, nsim)
    warn_tab <- character(0)
    set.seed(2)
    t_start <- proc.time()[["elapsed"]]
    for (i in seq_len(nsim)) {
        if (i %% 100 == 0)
            cat(sprintf("  %s %d/%d  %.0f s\n", name, i, nsim,
                        proc.time()[["elapsed"]] - t_start))
        di <- sc$simulate(d)
        r <- try_fit(sc$fit(di))
        if (length(r$warns)) {
            warned[i] <- TRUE
            warn_tab <- c(warn_tab, unique(r$warns))
        }
        if (inherits(r$fit, "fit_error")) {
            failed[i] <- n_error_v[i] <- TRUE
            warn_tab <- c(warn_tab, paste("ERROR:", r$fit))
            next
        }
        singular[i] <- isTRUE(sc$singular(r$fit))
        min_sd[i] <- sc$min_sd(r$fit)
        tr <- try_fit(sc$test(r$fit))
        if (length(tr$warns)) {
            warned[i] <- TRUE
            warn_tab <- c(warn_tab, paste("summary():", unique(tr$warns)))
        }
        tt <- if (inherits(tr$fit, "fit_error")) c(est = NA, se = NA) else tr$fit
        if (!all(is.finite(tt))) { failed[i] <- no_se[i] <- TRUE; next }
        est[i] <- tt[["est"]]; se[i] <- tt[["se"]]
    }
    secs <- proc.time()[["elapsed"]] - t_start
    ok <- !failed
    rej <- abs(est[ok] / se[ok]) > zcrit
    pw <- mean(rej)
    res <- list(
        row = data.frame(scenario = name, nsim = nsim, power = pw,
                         n_failed = sum(failed), n_singular = sum(singular),
                         seconds = round(secs, 1)),
        n_warned = sum(warned), n_error = sum(n_error_v), n_no_se = sum(no_se),
        n_sing_no_se = sum(no_se & singular),
        n_minsd_1e3 = sum(min_sd < 1e-3, na.rm = TRUE),
        warn_tab = table(gsub("\n", " ", warn_tab)),
        mean_est = mean(est[ok]), sd_est = sd(est[ok]), mean_se = mean(se[ok]),
        mcse = sqrt(pw * (1 - pw) / sum(ok)),
        power_all = sum(rej) / nsim)
    cat(sprintf("%s: nsim %d, power %.4f (MCSE %.4f), failed %d, singular %d, warned %d, %.1f s\n",
                name, nsim, pw, res$mcse, sum(failed), sum(singular),
                sum(warned), secs))
    cat(sprintf("  errors %d, no finite SE %d (of which singular %d), min RE SD < 1e-3: %d\n",
                res$n_error, res$n_no_se, res$n_sing_no_se, res$n_minsd_1e3))
    cat(sprintf("  mean est(x) %.5f, sd est(x) %.5f, mean SE(x) %.5f\n",
                res$mean_est, res$sd_est, res$mean_se))
    print(res$warn_tab)
    res
}

args <- commandArgs(trailingOnly = TRUE)
todo <- if (length(args)) args else names(scenarios)
stopifnot(all(todo %in% names(scenarios)))

results <- list()
for (nm in todo) results[[nm]] <- run_scenario(nm)

## ---- CSV (keep rows of scenarios not rerun) -----------------------------------
new_rows <- do.call(rbind, lapply(results, `[[`, "row"))
if (file.exists(csv_path) && length(todo) < length(scenarios)) {
    old <- read.csv(csv_path, stringsAsFactors = FALSE)
    old <- old[!old$scenario %in% todo, , drop = FALSE]
    new_rows <- rbind(old, new_rows)
}
new_rows <- new_rows[order(match(new_rows$scenario, names(scenarios))), ]
new_rows$power <- sprintf("%.4f", as.numeric(new_rows$power))
write.csv(new_rows, csv_path, row.names = FALSE, quote = FALSE)

## ---- README details for the scenarios just run ---------------------------------
## The README is written in full only when all scenarios were run together.
if (length(todo) == length(scenarios)) {
    ## texts that differ only in the numbers they quote are grouped
    tab_lines <- function(tb) {
        if (length(tb) == 0) return("  - none")
        txt <- gsub("[0-9]+(\\.[0-9]+)?(e[-+]?[0-9]+)?", "<x>", names(tb))
        agg <- tapply(as.integer(tb), txt, sum)
        sprintf("  - %d x `%s`", as.integer(agg), names(agg))
    }
    lines <- c(
        "# Power-analysis reference fixtures",
        "",
        "Produced by `data/reference/power/power_reference.R`, run from the repository root",
        "(`OPENBLAS_NUM_THREADS=1 Rscript data/reference/power/power_reference.R`).",
        "",
        sprintf("- R: %s", R.version.string),
        sprintf("- lme4: %s, ordinal: %s, Matrix: %s", packageVersion("lme4"),
                packageVersion("ordinal"), packageVersion("Matrix")),
        sprintf("- date: %s", format(Sys.time(), "%Y-%m-%d %H:%M %Z")),
        sprintf("- platform: %s", R.version$platform),
        "",
        "## Procedure",
        "",
        "A simulate-and-refit loop in plain lme4 / ordinal (what simr does). For each scenario the design",
        "(cluster ids `g`, a factor, and covariate `x`) is drawn once after `set.seed(1)`, as",
        "`g = rep(1:n_clusters, each = n_per)` and `x = rnorm(n_clusters * n_per)`, and then held fixed.",
        "`set.seed(2)` is called just before the loop; each iteration draws new random effects and a new",
        "response, refits, and applies a two-sided Wald z test of `x` at alpha 0.05 (reject when",
        "`|estimate / SE| > qnorm(0.975)`, SE from `summary()`).",
        "",
        "- `power` = rejections / successful fits. `n_failed` = fits that error + fits whose `summary()`",
        "  gives no finite SE for x (clmm does this when the random-effect SD ends at the boundary, about",
        "  1e-4, where its Hessian cannot be inverted; `summary.clmm` warns \"Variance-covariance matrix of",
        "  the parameters is not defined\"). Both are excluded from the power; the split is given below.",
        "- `n_singular`: fits that did not error (with or without a finite SE) with `isSingular()` TRUE",
        "  (lmer/glmer, default tol 1e-4) or a clmm random-effect SD < 1e-4. Singular fits with a finite SE",
        "  are kept in the power. Because the clmm boundary SD is not always below 1e-4, the count of fits",
        "  whose smallest random-effect SD is < 1e-3 is given as well.",
        "- `seconds`: wall-clock time of the whole loop (simulation + fit + test), single-threaded BLAS, on",
        "  a shared 2-core machine with other jobs running: approximate.",
        "- Default control settings everywhere; warnings were caught, counted below, and otherwise ignored.",
        "",
        "## Scenarios",
        "",
        "- `slope`: 50 clusters x 20 observations, x ~ N(0,1) per observation;",
        "  y = 0 + 0.3 x + b0 + b1 x + e, (b0, b1) ~ N(0, Sigma), SD(b0) = 1, SD(b1) = 0.5, cor(b0, b1) = 0.3,",
        "  e ~ N(0, 1). Fit `lmer(y ~ x + (x | g))`, REML. nsim = 2000.",
        "  Per iteration: `b = matrix(rnorm(100), 50, 2) %*% chol(Sigma)`, then `e = rnorm(1000)`.",
        "- `binomial`: 40 clusters x 15, x ~ N(0,1) per observation; logit P(y = 1) = -0.5 + 0.25 x + b0,",
        "  b0 ~ N(0, 1). Fit `glmer(y ~ x + (1 | g), family = binomial)`, Laplace. nsim = 2000.",
        "  Per iteration: `b0 = rnorm(40)`, then `y = rbinom(600, 1, p)`.",
        "- `ordinal`: 30 clusters x 10, x ~ N(0,1) per observation, 4 categories, cumulative logit",
        "  P(Y <= k) = plogis(c_k - (0.3 x + b0)), c = (-1, 0, 1.2), b0 ~ N(0, 0.8^2).",
        "  Fit `ordinal::clmm(factor(y) ~ x + (1 | g))`, Laplace (default). nsim = 1000.",
        "  Per iteration: `b0 = rnorm(30, 0, 0.8)`, then `u = runif(300)`, y = 1 + #{k : u > P(Y <= k)}.",
        "",
        "## Results",
        "",
        "The Monte Carlo standard error of each power is sqrt(p (1 - p) / n_ok); a test within Monte Carlo",
        "error should allow for both this and the engine's own simulation error.",
        "")
    for (nm in names(results)) {
        r <- results[[nm]]
        lines <- c(lines,
            sprintf("### %s", nm), "",
            sprintf("- nsim %d, power %.4f (MCSE %.4f), failed %d, singular %d, fits with warnings %d",
                    r$row$nsim, r$row$power, r$mcse, r$row$n_failed,
                    r$row$n_singular, r$n_warned),
            sprintf("- n_failed = %d fits that errored + %d fits without a finite SE for x (%d of these singular)",
                    r$n_error, r$n_no_se, r$n_sing_no_se),
            sprintf("- power counting failed fits as non-rejections (rejections / nsim): %.4f", r$power_all),
            sprintf("- fits whose smallest random-effect SD is < 1e-3: %d", r$n_minsd_1e3),
            sprintf("- runtime %.1f s (%.1f fits/s)", r$row$seconds, r$row$nsim / r$row$seconds),
            sprintf("- over successful fits: mean estimate of x %.5f, SD of the estimates %.5f, mean SE %.5f",
                    r$mean_est, r$sd_est, r$mean_se),
            "- warnings (count x text, each counted once per fit):",
            tab_lines(r$warn_tab),
            "")
    }
    writeLines(lines, file.path(out_dir, "README.md"))
}
cat("done\n")
