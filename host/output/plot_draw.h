/* The drawing layer shared by the plot files (plots.c: the PLplot guard,
 * the atomic file, the power curve; plots_dist.c: bootstrap distributions
 * and likelihood profiles; plot_acf.c: the residuals' autocorrelation). Internal; only these files include plplot.h
 * and get PLplot's include path. */
#ifndef MLMX_OUTPUT_PLOT_DRAW_H
#define MLMX_OUTPUT_PLOT_DRAW_H
#include <stddef.h>

#include <plplot.h>

#include "util/error.h"

/* Colour map 0 indices (palette in plots.c). */
enum {
    C_BG = 0,
    C_FG,       /* axes, text */
    C_GRID,
    C_CURVE,
    C_BAND,
    C_ALPHA,
    C_TARGET,
    C_HIST,
    C_HIST_EDGE,
    C_EST,
    C_CI,
    C_MUTED,    /* secondary text */
    C_NCOL
};

/* One plot: the page and a function that draws on the current stream. */
typedef struct plot_job plot_job;
struct plot_job {
    double width, height; /* page in pixels (PNG) or points (SVG, PDF) */
    void (*draw)(const plot_job *job);
    const void *ctx;
};

/* Draws job into path atomically (docs in plots.h). what: "power curve",
 * for messages. */
mlmx_status mlmx_pl_file(const char *path, const char *what, const char *title,
                         const plot_job *job, mlmx_error *err);
/* s as one line of PLplot text (escapes PLplot's '#', control characters
 * dropped), in buf. */
const char *mlmx_pl_text(char *buf, size_t n, const char *s);
/* World units per millimetre in the current viewport, for round symbols. */
void mlmx_pl_world_per_mm(double *wx, double *wy);
void mlmx_pl_dot(double x, double y, double r_mm, double wx, double wy);
void mlmx_pl_hline(double x0, double x1, double y);
void mlmx_pl_vline(double x, double y0, double y1);
/* Character height s, relative to a 900 x 600 page. */
void mlmx_pl_text_size(double s);
/* The size at which text fits width_mm, at most s. */
double mlmx_pl_fit_size(const char *text, double width_mm, double s);
double mlmx_pl_page_width_mm(void);
/* "%.4g" */
void mlmx_pl_fmt_num(char *buf, size_t n, double v);
#endif
