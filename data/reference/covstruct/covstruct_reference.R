## covstruct_reference.R -- glmmTMB reference fits for mlmx's structured
## random-effect covariances: cs(), ar1(), toep() (tests/test_covstruct.c).
##
## Run from the repository root:
##
##   OPENBLAS_NUM_THREADS=1 Rscript data/reference/covstruct/covstruct_reference.R
##
## Needs R 4.2.2 and glmmTMB 1.1.5 (Debian bookworm: r-cran-glmmtmb).
## Writes, in data/reference/covstruct/:
##   sim_cov.csv      a simulated longitudinal data set (seed 20261203): 80
##                    subjects (id) x 4 occasions (time 1..4) x 2 measurements
##                    (so that the residual variance is well identified beside
##                    a structure with one variance per occasion); y Gaussian with
##                    a Toeplitz subject covariance, count Poisson with a
##                    compound-symmetric one
##   reference.csv    case,quantity,value: for each case its log-likelihood
##                    (logLik(), ML or REML), df, the residual SD (Gaussian),
##                    the fixed effects beta:1..p in model-matrix order, their
##                    standard errors se:1..p (from the Hessian over all
##                    parameters, sdreport), the
##                    random-effect SDs sd:1..q (absolute), the structure's
##                    correlation parameters rho:1.. (cs: the common
##                    correlation; ar1: rho; toep: lag 1..q-1), and maxgrad,
##                    glmmTMB's largest |gradient| at its optimum
##   cases.csv        case,data,family,reml,formula (the formula as mlmx reads it)
##
## glmmTMB's parametrisation (its C++ source, checked against VarCorr()):
##   cs:   theta = (log sd_1..q, x), rho = plogis(x) (1 + a) - a, a = 1/(q-1)
##   ar1:  theta = (log sd, x), rho = x / sqrt(1 + x^2), one SD for all columns
##   toep: theta = (log sd_1..q, x_1..q-1), rho_k = x_k / sqrt(1 + x_k^2)
suppressMessages(library(glmmTMB))
out <- "data/reference/covstruct"

set.seed(20261203)
nid <- 80; nt <- 4
toep_r <- c(1, 0.6, 0.35, 0.1); toep_sd <- c(1.0, 1.3, 1.6, 1.9)
R <- toeplitz(toep_r); S <- diag(toep_sd) %*% R %*% diag(toep_sd)
b <- matrix(rnorm(nid * nt), nid) %*% chol(S)
cs_sd <- c(0.5, 0.7, 0.6, 0.8); cs_rho <- 0.4
Rc <- matrix(cs_rho, nt, nt); diag(Rc) <- 1
bc <- matrix(rnorm(nid * nt), nid) %*% chol(diag(cs_sd) %*% Rc %*% diag(cs_sd))
sim <- expand.grid(rep = 1:2, time = 1:nt, id = 1:nid)
sim$x <- round(rnorm(nrow(sim)), 4)
sim$y <- round(10 + 0.8 * sim$time + 0.5 * sim$x + b[cbind(sim$id, sim$time)] +
               rnorm(nrow(sim), sd = 0.7), 4)
sim$count <- rpois(nrow(sim), exp(0.5 + 0.1 * sim$time + 0.3 * sim$x +
                                  bc[cbind(sim$id, sim$time)]))
sim <- sim[, c("y", "count", "x", "time", "id")]
write.csv(sim, file.path(out, "sim_cov.csv"), row.names = FALSE, quote = FALSE)

orth <- read.csv("data/orthodont.csv")
cbpp <- read.csv("data/cbpp.csv")
datas <- list(orthodont = orth, sim_cov = sim, cbpp = cbpp)
paths <- c(orthodont = "data/orthodont.csv", sim_cov = "data/reference/covstruct/sim_cov.csv",
           cbpp = "data/cbpp.csv")

cases <- list(
  list("orth_ar1_ml", "orthodont", "gaussian", FALSE,
       "distance ~ age + Sex + ar1(0 + factor(age) | Subject)"),
  list("orth_ar1_reml", "orthodont", "gaussian", TRUE,
       "distance ~ age + Sex + ar1(0 + factor(age) | Subject)"),
  list("sim_cs_ml", "sim_cov", "gaussian", FALSE,
       "y ~ time + x + cs(0 + factor(time) | id)"),
  list("sim_cs_reml", "sim_cov", "gaussian", TRUE,
       "y ~ time + x + cs(0 + factor(time) | id)"),
  list("sim_toep_reml", "sim_cov", "gaussian", TRUE,
       "y ~ time + x + toep(0 + factor(time) | id)"),
  list("sim_toep_ml", "sim_cov", "gaussian", FALSE,
       "y ~ time + x + toep(0 + factor(time) | id)", "sim_toep_reml"),
  list("sim_ar1_ml", "sim_cov", "gaussian", FALSE,
       "y ~ time + x + ar1(0 + factor(time) | id)"),
  list("sim_pois_cs", "sim_cov", "poisson", FALSE,
       "count ~ time + x + cs(0 + factor(time) | id)"),
  list("cbpp_ar1", "cbpp", "binomial", FALSE,
       "cbind(incidence, size - incidence) ~ factor(period) + ar1(0 + factor(period) | herd)")
)

ctl <- glmmTMBControl(optCtrl = list(rel.tol = 1e-12, x.tol = 1e-10, eval.max = 1e5,
                                     iter.max = 1e5))
## glmmTMB's default nlminb sometimes stops far from the optimum (a
## Toeplitz correlation near the edge of positive definiteness): fit with the
## default and with tight tolerances, refit each from where it stopped, and
## keep the highest log-likelihood.
## A case may also start from another case's estimates (toep ML from REML).
bfgs <- glmmTMBControl(optimizer = optim, optArgs = list(method = "BFGS"),
                       optCtrl = list(maxit = 10000, reltol = 1e-14))
best_fit <- function(form, dat, fam, reml, start = NULL) {
  fits <- list()
  for (cc in list(glmmTMBControl(), ctl, bfgs)) {
    m <- try(suppressWarnings(glmmTMB(form, data = dat, family = fam, REML = reml,
                                      control = cc, start = start)), silent = TRUE)
    if (inherits(m, "try-error")) next
    fits[[length(fits) + 1]] <- m
    m2 <- try(suppressWarnings(glmmTMB(form, data = dat, family = fam, REML = reml,
                                       control = ctl, start = m$obj$env$parList(m$fit$par))),
              silent = TRUE)
    if (!inherits(m2, "try-error")) fits[[length(fits) + 1]] <- m2
  }
  ll <- sapply(fits, function(m) { v <- as.numeric(logLik(m)); if (is.finite(v)) v else -Inf })
  fits[[which.max(ll)]]
}
rows <- list(); crow <- list(); fitted_cases <- list()
for (cs in cases) {
  name <- cs[[1]]; dat <- datas[[cs[[2]]]]; fam <- cs[[3]]; reml <- cs[[4]]
  form <- as.formula(cs[[5]])
  start <- NULL
  if (length(cs) > 5) {
    p0 <- fitted_cases[[cs[[6]]]]$obj$env$parList(fitted_cases[[cs[[6]]]]$fit$par)
    start <- list(theta = p0$theta, betad = p0$betad)
  }
  m <- best_fit(form, dat, fam, reml, start)
  fitted_cases[[name]] <- m
  th <- m$obj$env$parList(m$fit$par)$theta
  str <- if (grepl("cs\\(", cs[[5]])) "cs" else if (grepl("ar1\\(", cs[[5]])) "ar1" else "toep"
  vc <- VarCorr(m)$cond[[1]]
  sds <- attr(vc, "stddev"); q <- length(sds)
  rho <- switch(str,
                cs = { a <- 1 / (q - 1); plogis(th[q + 1]) * (1 + a) - a },
                ar1 = th[2] / sqrt(1 + th[2]^2),
                toep = { x <- th[(q + 1):(2 * q - 1)]; x / sqrt(1 + x^2) })
  ll <- logLik(m)
  beta <- fixef(m)$cond
  v <- c(loglik = as.numeric(ll), df = attr(ll, "df"),
         sigma = if (fam == "gaussian") sigma(m) else NA,
         maxgrad = max(abs(m$obj$gr(m$fit$par))))
  se <- sqrt(diag(vcov(m)$cond))
  q_ <- c(names(v), paste0("beta:", seq_along(beta)), paste0("se:", seq_along(se)),
          paste0("sd:", seq_len(q)), paste0("rho:", seq_along(rho)))
  vals <- c(v, beta, se, sds, rho)
  keep <- !is.na(vals)
  rows[[name]] <- data.frame(case = name, quantity = q_[keep],
                             value = sprintf("%.17g", vals[keep]))
  crow[[name]] <- data.frame(case = name, data = paths[[cs[[2]]]], family = fam,
                             reml = as.integer(reml), formula = cs[[5]])
  cat(sprintf("%-14s logLik %.10f  maxgrad %.2e  %s\n", name, as.numeric(ll),
              v[["maxgrad"]], paste(format(rho, digits = 5), collapse = " ")))
}
write.csv(do.call(rbind, rows), file.path(out, "reference.csv"), row.names = FALSE,
          quote = FALSE)
write.table(do.call(rbind, crow), file.path(out, "cases.csv"), sep = ";", row.names = FALSE,
            quote = FALSE)
