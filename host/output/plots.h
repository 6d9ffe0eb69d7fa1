/* Plots of power curves and bootstrap distributions, drawn with PLplot's
 * cairo drivers. The file type follows the extension of path: .svg
 * (svgcairo), .png (pngcairo) or .pdf (pdfcairo), case-insensitive; any
 * other extension is MLMX_ERR_ARG.
 *
 * Every plot is written atomically: PLplot draws into a temporary file in
 * the directory of path, which is renamed over path only when the plot is
 * complete, so a failure leaves no file (and an old file at path intact).
 * An SVG gets the title as its <title> element (cairo draws text as
 * outlines). Nothing is printed and the process never exits: PLplot's fatal
 * errors (plexit) are caught by an exit handler that jumps back here, its
 * recoverable errors (plabort) are collected through plsError. The calls
 * serialize on a mutex (PLplot keeps global state), draw on a stream of
 * their own and restore the caller's current PLplot stream; they install
 * their own plsexit/plsabort handlers while drawing and clear them after. */
#ifndef MLMX_OUTPUT_PLOTS_H
#define MLMX_OUTPUT_PLOTS_H
#include <stddef.h>
#include "util/error.h"

/* Power curve: x = design values (e.g. number of clusters, finite), the
 * estimated power at each (NaN: no estimate, a gap in the line) with its
 * Clopper-Pearson band [lo, hi] (NaN ends: no band there), drawn as points,
 * a line and a shaded band on a 0..1 power axis; alpha as a dashed
 * horizontal reference line and target (e.g. 0.8) as a dotted one (NaN:
 * none, for either). xlabel and title may be NULL ("" for no title). */
mlmx_status mlmx_plot_power_curve(const char *path, int npts, const double *x,
                                  const double *power, const double *lo, const double *hi,
                                  double alpha, double target, const char *xlabel,
                                  const char *title, mlmx_error *err);

/* Bootstrap distributions: one panel per parameter in a grid, a histogram
 * of the replicate values (NaNs skipped and counted in the panel), a solid
 * vertical line at the estimate and dashed ones at the interval ends lo and
 * hi (NaN: not drawn), the parameter name as panel title. values holds
 * nrep * nparam numbers, row-major: replicate r, parameter j at
 * values[r * nparam + j]. estimate, lo and hi may be NULL. title may be
 * NULL. */
mlmx_status mlmx_plot_boot(const char *path, int nparam, const char *const *names, size_t nrep,
                           const double *values, const double *estimate, const double *lo,
                           const double *hi, const char *title, mlmx_error *err);

/* Likelihood profiles: one panel per parameter, zeta against the
 * parameter through npts[j] points (x[j], zeta[j]) sorted by x, the
 * interval's ends lo[j], hi[j] as dashed vertical lines (NaN: none) and
 * zeta = +-z as dotted horizontal ones. title may be NULL. */
mlmx_status mlmx_plot_profile(const char *path, int nparam, const char *const *names,
                              const int *npts, const double *const *x, const double *const *zeta,
                              const double *lo, const double *hi, double z, const char *title,
                              mlmx_error *err);

/* The residuals' autocorrelation (plot_acf.c): a bar per lag 0..nlag-1 at
 * acf[k], the critical values +-1.96 / sqrt(n_used[k]) dashed (n_used may
 * be NULL), and model[k] (the fitted correlation; NaN entries skipped; may
 * be NULL) as a line with points. title may be NULL. */
mlmx_status mlmx_plot_acf(const char *path, int nlag, const double *acf, const double *n_used,
                          const double *model, const char *title, mlmx_error *err);

#endif
