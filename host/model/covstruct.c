#define _POSIX_C_SOURCE 200809L
/* The bookkeeping of structured random-effect covariances: which term has
 * which structure, where its parameters sit in psi, their bounds and names.
 * The math (psi -> theta, the Jacobian) is kernels/covstruct.h's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "covstruct.h"
#include "model/model.h"
#include "util/strbuf.h"

const char *mlmx_cov_kind_name(int kind)
{
    switch (kind) {
    case MLMX_COV_CS:
        return "cs";
    case MLMX_COV_AR1:
        return "ar1";
    case MLMX_COV_TOEP:
        return "toep";
    default:
        return "us";
    }
}

static int kind_of(const char *name)
{
    if (!name)
        return MLMX_COV_US;
    if (strcmp(name, "cs") == 0)
        return MLMX_COV_CS;
    if (strcmp(name, "ar1") == 0)
        return MLMX_COV_AR1;
    return MLMX_COV_TOEP; /* the parser admits nothing else */
}

int mlmx_model_ncov(const mlmx_model *m) { return m->nstructured ? m->npsi : m->ntheta; }

/* psi's names for a structured term: "<vc>.sd" (ar1) or "<vc>.sd.<column>",
 * then "<vc>.rho" (cs, ar1) or "<vc>.pacf<lag>" (toep's partial
 * autocorrelations). */
static char *psi_name(const mlmx_reterm_info *r, int j)
{
    const int ns = mlmx_cov_nsd(r->cov, r->q);
    if (j < ns)
        return r->cov == MLMX_COV_AR1 ? mlmx_asprintf("%s.sd", r->vcname)
                                      : mlmx_asprintf("%s.sd.%s", r->vcname, r->colnames[j]);
    if (r->cov == MLMX_COV_TOEP)
        return mlmx_asprintf("%s.pacf%d", r->vcname, j - ns + 1);
    return mlmx_asprintf("%s.rho", r->vcname);
}

mlmx_status mlmx_model_psi_layout(mlmx_model *m, const mlmx_formula *f, mlmx_error *err)
{
    m->npsi = 0;
    m->nstructured = 0;
    for (int k = 0; k < m->K; k++) {
        mlmx_reterm_info *r = &m->re[k];
        const mlmx_reterm *rt = &f->re[r->formula_index];
        r->cov = kind_of(rt->cov);
        if (r->cov != MLMX_COV_US && r->q < 2)
            return mlmx_err_set(err, MLMX_ERR_MODEL,
                                "%s(... | %s): the term has 1 column, and a %s covariance "
                                "structures the correlations between 2 or more columns (write "
                                "0 + factor(time) on the left of '|', or drop %s())",
                                rt->cov, r->group, rt->cov, rt->cov);
        r->psi_offset = m->npsi;
        r->npsi = mlmx_cov_npsi(r->cov, r->q);
        m->npsi += r->npsi;
        m->nstructured += r->cov != MLMX_COV_US;
    }
    if (m->npsi == 0)
        return MLMX_OK;
    m->psi_lower = malloc(3 * (size_t)m->npsi * sizeof *m->psi_lower);
    m->psi_names = calloc((size_t)m->npsi, sizeof *m->psi_names);
    if (!m->psi_lower || !m->psi_names)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    m->psi_upper = m->psi_lower + m->npsi;
    m->psi_start = m->psi_upper + m->npsi;
    for (int k = 0; k < m->K; k++) {
        const mlmx_reterm_info *r = &m->re[k];
        const int o = r->psi_offset;
        if (r->cov == MLMX_COV_US) {
            for (int j = 0; j < r->npsi; j++) {
                const int t = r->theta_offset + j;
                m->psi_lower[o + j] = m->theta_lower[t];
                m->psi_upper[o + j] = HUGE_VAL;
                m->psi_start[o + j] = m->theta_lower[t] == 0.0 ? 1.0 : 0.0;
                m->psi_names[o + j] = mlmx_strdup(m->theta_names[t]);
            }
        } else {
            mlmx_cov_box(r->cov, r->q, m->psi_lower + o, m->psi_upper + o, m->psi_start + o);
            for (int j = 0; j < r->npsi; j++)
                m->psi_names[o + j] = psi_name(r, j);
        }
        for (int j = 0; j < r->npsi; j++)
            if (!m->psi_names[o + j])
                return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    }
    return MLMX_OK;
}

int mlmx_model_psi_to_theta(const mlmx_model *m, const double *psi, double *theta)
{
    double L[16 * 16];
    for (int k = 0; k < m->K; k++) {
        const mlmx_reterm_info *r = &m->re[k];
        const double *p = psi + r->psi_offset;
        double *t = theta + r->theta_offset;
        if (r->cov == MLMX_COV_US)
            memcpy(t, p, (size_t)r->npsi * sizeof *t);
        else if (mlmx_cov_theta(r->cov, r->q, p, t, L) != 0)
            return -1;
    }
    return 0;
}

int mlmx_model_grad_psi(const mlmx_model *m, const double *psi, const double *gtheta,
                        double *gpsi)
{
    for (int k = 0; k < m->K; k++) {
        const mlmx_reterm_info *r = &m->re[k];
        const double *g = gtheta + r->theta_offset;
        double *gp = gpsi + r->psi_offset;
        if (r->cov == MLMX_COV_US) {
            memcpy(gp, g, (size_t)r->npsi * sizeof *gp);
            continue;
        }
        const int nt = r->q * (r->q + 1) / 2;
        const size_t nw = (size_t)(3 + r->npsi) * (size_t)(r->q * r->q);
        double *J = malloc(((size_t)nt * (size_t)r->npsi + nw) * sizeof *J);
        if (!J)
            return -1;
        int ok = mlmx_cov_jacobian(r->cov, r->q, psi + r->psi_offset, J,
                                   J + (size_t)nt * (size_t)r->npsi) == 0;
        for (int j = 0; ok && j < r->npsi; j++) {
            double s = 0.0;
            for (int t = 0; t < nt; t++)
                s += g[t] * J[t + (size_t)j * nt];
            gp[j] = s;
        }
        free(J);
        if (!ok)
            return -1;
    }
    return 0;
}

mlmx_status mlmx_model_require_unstructured(const mlmx_model *m, const char *feature,
                                            mlmx_error *err)
{
    for (int k = 0; k < m->K; k++)
        if (m->re[k].cov != MLMX_COV_US)
            return mlmx_err_set(err, MLMX_ERR_UNSUPPORTED,
                                "%s: not available yet with a structured random-effect "
                                "covariance; the term for '%s' is %s(...)",
                                feature, m->re[k].group, mlmx_cov_kind_name(m->re[k].cov));
    return MLMX_OK;
}

int mlmx_model_term_rho(const mlmx_model *m, int k, const double *psi, double *rho)
{
    const mlmx_reterm_info *r = &m->re[k];
    if (r->cov == MLMX_COV_US)
        return 0;
    const double *c = psi + r->psi_offset + mlmx_cov_nsd(r->cov, r->q);
    if (r->cov != MLMX_COV_TOEP) {
        rho[0] = c[0];
        return 1;
    }
    double a[16 * 16], da[16 * 16];
    mlmx_cov_toep_rho(r->q - 1, c, rho, NULL, a, da);
    return r->q - 1;
}

/* psi of one structured term from its covariance V = T T^T (q x q): the
 * SDs, and the correlations the structure keeps (cs: the mean of the
 * off-diagonal ones; ar1: the mean lag-1 one and the mean SD; toep: the
 * mean at each lag, turned into partial autocorrelations by the
 * Durbin-Levinson recursion). */
static void psi_of_cov(int kind, int q, const double *V, double *p)
{
    double sd[16], lag[16] = {0}, cnt[16] = {0};
    for (int i = 0; i < q; i++)
        sd[i] = sqrt(V[i + i * q]);
    for (int j = 0; j < q; j++)
        for (int i = j + 1; i < q; i++) {
            const double c = sd[i] > 0 && sd[j] > 0 ? V[i + j * q] / (sd[i] * sd[j]) : 0.0;
            const int l = kind == MLMX_COV_CS ? 1 : i - j;
            lag[l] += c;
            cnt[l] += 1.0;
        }
    for (int l = 1; l < q; l++)
        lag[l] = cnt[l] > 0 ? lag[l] / cnt[l] : 0.0;
    if (kind == MLMX_COV_AR1) {
        double s = 0.0;
        for (int i = 0; i < q; i++)
            s += sd[i] / q;
        p[0] = s;
        p[1] = lag[1];
        return;
    }
    memcpy(p, sd, (size_t)q * sizeof *p);
    if (kind == MLMX_COV_CS) {
        p[q] = lag[1];
        return;
    }
    /* toep: partial autocorrelations of the lag correlations */
    double a[16] = {0}, prev[16];
    for (int k = 1; k < q; k++) {
        double num = lag[k], den = 1.0;
        for (int j = 1; j < k; j++) {
            num -= a[j] * lag[k - j];
            den -= a[j] * lag[j];
        }
        const double phi = den > 0 ? num / den : 0.0;
        memcpy(prev, a, sizeof prev);
        a[k] = phi;
        for (int j = 1; j < k; j++)
            a[j] = prev[j] - phi * prev[k - j];
        p[q + k - 1] = fmax(-1.0, fmin(1.0, phi));
    }
}

mlmx_status mlmx_model_theta_to_psi(const mlmx_model *m, const double *theta, double *psi,
                                    mlmx_error *err)
{
    double T[16 * 16], V[16 * 16], T2[16 * 16], L[16 * 16], th2[136];
    for (int k = 0; k < m->K; k++) {
        const mlmx_reterm_info *r = &m->re[k];
        const int q = r->q;
        const double *t = theta + r->theta_offset;
        double *p = psi + r->psi_offset;
        if (r->cov == MLMX_COV_US) {
            memcpy(p, t, (size_t)r->npsi * sizeof *p);
            continue;
        }
        mlmx_cm_theta_to_t(q, t, T);
        for (int j = 0; j < q; j++)
            for (int i = 0; i < q; i++) {
                double s = 0.0;
                for (int c = 0; c <= (i < j ? i : j); c++)
                    s += T[i + c * q] * T[j + c * q];
                V[i + j * q] = s;
            }
        psi_of_cov(r->cov, q, V, p);
        /* the structure must reproduce V */
        int bad = mlmx_cov_theta(r->cov, q, p, th2, L) != 0;
        double vmax = 0.0, dmax = 0.0;
        if (!bad) {
            mlmx_cm_theta_to_t(q, th2, T2);
            for (int j = 0; j < q; j++)
                for (int i = 0; i < q; i++) {
                    double s = 0.0;
                    for (int c = 0; c <= (i < j ? i : j); c++)
                        s += T2[i + c * q] * T2[j + c * q];
                    vmax = fmax(vmax, fabs(V[i + j * q]));
                    dmax = fmax(dmax, fabs(s - V[i + j * q]));
                }
            bad = dmax > 1e-8 * fmax(vmax, 1e-300);
        }
        if (bad)
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "the SDs and correlations given for the term of '%s' are not an "
                                "%s(...) covariance (it differs from the nearest one by %.3g "
                                "relative)",
                                r->group, mlmx_cov_kind_name(r->cov), dmax / fmax(vmax, 1e-300));
    }
    return MLMX_OK;
}
