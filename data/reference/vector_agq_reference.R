## vector_agq_reference.R -- ground truth for mlmx's product-rule adaptive
## quadrature of a correlated random intercept and slope (no R package
## fits a vector random effect by adaptive quadrature; GLMMadaptive does,
## but is not in Debian).
##
##   Rscript data/reference/vector_agq_reference.R data
##
## Model: remission ~ IL6 + CRP + LengthofStay + (1 + LengthofStay | HID) on
## data/hdp.csv (35 hospitals), binomial logit, at FIXED parameters:
##   beta  = (-0.5, -0.05, -0.02, -0.2)     ((Intercept), IL6, CRP, LengthofStay)
##   theta = (0.9, -0.08, 0.07)              lme4's relative Cholesky factor T
##                                           (column-major lower triangle)
## The marginal log-likelihood of each hospital,
##   log int phi_2(u) prod_i p(y_i | x_i beta + z_i' T u) du,
## is computed by nested integrate() on the plane, after centring at the
## conditional mode and scaling by the Cholesky factor of the curvature there
## (a change of variables; the integral itself is not a Gauss-Hermite rule),
## to a relative tolerance of 1e-11. Writes
## data/reference/glmm/hdp_vector_bruteforce.ref.
args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args) >= 1) args[1] else "data"
d <- read.csv(file.path(data_dir, "hdp.csv"))
beta <- c(-0.5, -0.05, -0.02, -0.2)
theta <- c(0.9, -0.08, 0.07)
Tm <- matrix(c(theta[1], theta[2], 0, theta[3]), 2, 2)
X <- cbind(1, d$IL6, d$CRP, d$LengthofStay)
Z <- cbind(1, d$LengthofStay)
eta0 <- drop(X %*% beta)
y <- d$remission
g <- d$HID
total <- 0
per <- numeric()
for (h in sort(unique(g))) {
  i <- which(g == h)
  A <- Z[i, , drop = FALSE] %*% Tm          # eta = eta0 + A u
  lf <- function(u) {                       # log integrand, spherical u (without phi_2's 1/(2 pi))
    e <- eta0[i] + drop(A %*% u)
    sum(y[i] * e - log1p(exp(e))) - sum(u^2) / 2
  }
  o <- optim(c(0, 0), function(u) -lf(u), method = "BFGS",
             control = list(reltol = 1e-14, maxit = 1000))
  uh <- o$par
  mu <- plogis(eta0[i] + drop(A %*% uh))
  H <- diag(2) + t(A) %*% (A * (mu * (1 - mu)))
  L <- t(chol(H))                           # H = L L'
  Lt_inv <- solve(t(L))
  c0 <- lf(uh)
  f2 <- function(z1, z2) {                  # integrand in z, scaled by exp(-c0)
    sapply(z1, function(a) exp(lf(uh + drop(Lt_inv %*% c(a, z2))) - c0))
  }
  inner <- function(z2) sapply(z2, function(b)
    integrate(function(a) f2(a, b), -10, 10, rel.tol = 1e-11)$value)
  val <- integrate(inner, -10, 10, rel.tol = 1e-11)$value
  lh <- c0 + log(val) - log(det(L)) - log(2 * pi)   # phi_2's 1 / (2 pi)
  per <- c(per, lh)
  total <- total + lh
}
out <- file.path("data", "reference", "glmm", "hdp_vector_bruteforce.ref")
g17 <- function(x) sprintf("%.17g", x)
writeLines(c(
  "data hdp.csv",
  "formula remission ~ IL6 + CRP + LengthofStay + (1 + LengthofStay|HID)",
  "family binomial",
  "link logit",
  paste("beta", paste(g17(beta), collapse = " ")),
  paste("theta", paste(g17(theta), collapse = " ")),
  "method nested integrate() on the plane after centring and scaling at the mode, rel.tol 1e-11",
  paste("loglik", g17(total)),
  paste("loglik_cluster", sort(unique(g)), g17(per))), out)
cat(sprintf("total log-likelihood %.12f written to %s\n", total, out))
