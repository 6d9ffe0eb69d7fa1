/* The PLplot layer (plot_draw.h) and the power curve, drawn with PLplot's
 * cairo drivers; the bootstrap and profile plots are in plots_dist.c.
 * Only these two files include plplot.h and get PLplot's include path.
 *
 * PLplot's error model, and how it is tamed here:
 *  - plexit() (fatal) calls the plsexit handler and then prints to stderr
 *    and calls exit() whatever the handler returns, so the handler must not
 *    return: it longjmps back into plot_draw_locked(), which tidies the
 *    stream and reports the message as an error;
 *  - plabort() (recoverable) calls the plsabort handler, then writes into
 *    the stream's plsError buffers when they are set (and prints only when
 *    they are not), so they are set on every stream drawn here;
 *  - the file is opened here (mkstemp next to the target) and handed to
 *    PLplot with plsfile(), so PLplot never opens a file by name: no
 *    prompting loop, no "Can't open" on stderr, and no "%n" family
 *    substitution in user paths;
 *  - the device is checked against plgDevs() before plinit(), which would
 *    otherwise prompt on stdin for another device. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <plplot.h>

#include "output/plot_draw.h"
#include "output/plots.h"
#include "util/strbuf.h"

/* ------------------------------------------------------------ colours */


static const struct {
    int r, g, b;
    double a;
} palette[C_NCOL] = {
    [C_BG] = {255, 255, 255, 1.0},      [C_FG] = {30, 30, 30, 1.0},
    [C_GRID] = {222, 222, 222, 1.0},    [C_CURVE] = {31, 90, 160, 1.0},
    [C_BAND] = {31, 119, 180, 0.22},    [C_ALPHA] = {200, 40, 40, 1.0},
    [C_TARGET] = {60, 140, 60, 1.0},    [C_HIST] = {158, 196, 222, 1.0},
    [C_HIST_EDGE] = {70, 120, 170, 1.0}, [C_EST] = {190, 30, 30, 1.0},
    [C_CI] = {230, 110, 20, 1.0},       [C_MUTED] = {100, 100, 100, 1.0},
};

/* ------------------------------------------------------------ PLplot guard */

static pthread_mutex_t pl_lock = PTHREAD_MUTEX_INITIALIZER;
static jmp_buf pl_jmp;
static volatile int pl_jmp_armed;
static char pl_exit_msg[512];
static char pl_abort_msg[512];
static PLINT pl_errcode;
static char pl_errmsg[2048]; /* plabort strcat()s into it unbounded: keep it large */
/* PLplot scales its default character height with the page ((width +
 * height) / 2); text sizes here are relative to a 900 x 600 page, so text
 * keeps its size on larger and smaller pages. */
static double text_scale = 1.0;

static int pl_exit_handler(const char *msg)
{
    snprintf(pl_exit_msg, sizeof pl_exit_msg, "%s", msg ? msg : "fatal error");
    if (pl_jmp_armed) {
        pl_jmp_armed = 0;
        longjmp(pl_jmp, 1);
    }
    return 1; /* not reached while drawing */
}

static void pl_abort_handler(const char *msg)
{
    if (!pl_abort_msg[0])
        snprintf(pl_abort_msg, sizeof pl_abort_msg, "%s", msg ? msg : "error");
}

/* One-line copy of a PLplot message (they carry newlines and stars). */
static void one_line(char *dst, size_t n, const char *src)
{
    size_t j = 0;
    int space = 0;
    for (; *src && j + 1 < n; src++) {
        unsigned char c = (unsigned char)*src;
        if (c < 0x20 || c == '*') {
            space = j > 0;
            continue;
        }
        if (space && j + 2 < n)
            dst[j++] = ' ';
        space = 0;
        dst[j++] = (char)c;
    }
    dst[j] = '\0';
}

/* Text for PLplot: '#' is its escape character, so it is doubled; control
 * characters are dropped. Truncated at a UTF-8 boundary to fit. */
const char *mlmx_pl_text(char *buf, size_t n, const char *s)
{
    size_t j = 0;
    if (!s)
        s = "";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            continue;
        size_t need = c == '#' ? 2 : 1;
        if (j + need + 1 > n)
            break;
        if (c == '#')
            buf[j++] = '#';
        buf[j++] = (char)c;
    }
    /* do not end inside a multi-byte character */
    if (*s) {
        size_t k = j;
        while (k > 0 && ((unsigned char)buf[k - 1] & 0xC0) == 0x80)
            k--;
        if (k > 0 && ((unsigned char)buf[k - 1] & 0xC0) == 0xC0)
            j = k - 1;
    }
    buf[j] = '\0';
    return buf;
}

static int device_available(const char *dev)
{
    enum { MAXDEV = 256 };
    const char *menu[MAXDEV], *names[MAXDEV];
    const char **pm = menu, **pn = names;
    int n = MAXDEV;
    plgDevs(&pm, &pn, &n);
    for (int i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], dev) == 0)
            return 1;
    return 0;
}


/* Draws job on a new stream writing to fp. Returns 0, or -1 with msg set.
 * fp is closed in every case. Call with pl_lock held. */
static int plot_draw_locked(const char *dev, FILE *fp, const plot_job *job, char *msg,
                            size_t msgsize)
{
    PLINT old = 0;
    plgstrm(&old);
    char *locale = NULL;
    const char *cur = setlocale(LC_NUMERIC, NULL);
    if (cur)
        locale = mlmx_strdup(cur);
    pl_exit_msg[0] = pl_abort_msg[0] = pl_errmsg[0] = '\0';
    pl_errcode = 0;
    static volatile int failed, stage; /* static: survive longjmp unclobbered */
    failed = 0;
    stage = 0;
    static FILE *volatile outfp;
    outfp = fp;
    plsexit(pl_exit_handler);
    plsabort(pl_abort_handler);
    if (setjmp(pl_jmp) == 0) {
        pl_jmp_armed = 1;
        if (!device_available(dev)) {
            snprintf(msg, msgsize,
                     "PLplot has no '%s' driver (install the Debian package plplot-driver-cairo)",
                     dev);
            failed = 2;
        } else {
            PLINT strm = -1;
            plmkstrm(&strm);
            if (strm < 0) {
                snprintf(msg, msgsize, "PLplot could not create a plot stream");
                failed = 2;
            } else {
                stage = 1;
                plsError(&pl_errcode, pl_errmsg);
                plsdev(dev);
                plsfile(fp);
                outfp = NULL; /* PLplot's from here */
                plspage(0.0, 0.0, (PLINT)job->width, (PLINT)job->height, 0, 0);
                plscmap0n(C_NCOL);
                for (int i = 0; i < C_NCOL; i++)
                    plscol0a(i, palette[i].r, palette[i].g, palette[i].b, palette[i].a);
                plinit();
                text_scale = 750.0 / (0.5 * (job->width + job->height));
                if (!pl_errcode)
                    job->draw(job);
                if (pl_errcode)
                    failed = 1;
            }
        }
    } else {
        failed = 1;
        /* plexit left PLplot mid-call; its driver calls switch LC_NUMERIC
         * to "C" and would have restored it */
        if (locale)
            setlocale(LC_NUMERIC, locale);
    }
    /* tidy the stream (closes the file when the device was initialized) */
    if (stage == 1) {
        if (setjmp(pl_jmp) == 0) {
            pl_jmp_armed = 1;
            PLINT level = 0;
            plglevel(&level);
            if (level == 0) {
                FILE *f = NULL;
                plgfile(&f);
                if (f) {
                    fclose(f);
                    plsfile(NULL);
                }
            }
            plend1();
            if (pl_errcode && !failed)
                failed = 1;
        } else {
            failed = 1;
            if (locale)
                setlocale(LC_NUMERIC, locale);
        }
    }
    pl_jmp_armed = 0;
    if (outfp)
        fclose(outfp);
    plsexit(NULL);
    plsabort(NULL);
    plsstrm(old);
    free(locale);
    if (failed == 1) {
        const char *m = pl_exit_msg[0] ? pl_exit_msg : pl_abort_msg[0] ? pl_abort_msg : pl_errmsg;
        char line[512];
        one_line(line, sizeof line, m[0] ? m : "drawing failed");
        snprintf(msg, msgsize, "PLplot: %s", line);
    }
    return failed ? -1 : 0;
}

static const char *device_for(const char *path)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        return NULL;
    if (strcasecmp(dot, ".svg") == 0)
        return "svgcairo";
    if (strcasecmp(dot, ".png") == 0)
        return "pngcairo";
    if (strcasecmp(dot, ".pdf") == 0)
        return "pdfcairo";
    return NULL;
}

static void xml_escape(mlmx_strbuf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': mlmx_sb_puts(b, "&lt;"); break;
        case '>': mlmx_sb_puts(b, "&gt;"); break;
        case '&': mlmx_sb_puts(b, "&amp;"); break;
        case '"': mlmx_sb_puts(b, "&quot;"); break;
        default:
            if ((unsigned char)*s >= 0x20 && *s != 0x7f)
                mlmx_sb_putn(b, s, 1);
        }
    }
}

static int read_all(int fd, mlmx_strbuf *b)
{
    if (lseek(fd, 0, SEEK_SET) < 0)
        return errno;
    char chunk[65536];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (r == 0)
            break;
        mlmx_sb_putn(b, chunk, (size_t)r);
    }
    return b->oom ? ENOMEM : 0;
}

static int write_all(int fd, const char *s, size_t len)
{
    if (lseek(fd, 0, SEEK_SET) < 0 || ftruncate(fd, 0) != 0)
        return errno;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, s + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        off += (size_t)w;
    }
    return 0;
}

static int ends_with_trimmed(const char *s, size_t len, const char *tail)
{
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
        len--;
    size_t t = strlen(tail);
    return len >= t && memcmp(s + len - t, tail, t) == 0;
}

/* Checks that the drawn file is complete (cairo drops write errors
 * silently) and gives an SVG its <title>. Returns 0 or sets msg. */
static int finish_file(int fd, const char *dev, const char *title, char *msg, size_t msgsize)
{
    mlmx_strbuf b = {0};
    int e = read_all(fd, &b);
    if (e) {
        snprintf(msg, msgsize, "%s", strerror(e));
        mlmx_sb_free(&b);
        return -1;
    }
    int ok;
    if (strcmp(dev, "svgcairo") == 0)
        ok = b.len > 0 && ends_with_trimmed(b.s, b.len, "</svg>");
    else if (strcmp(dev, "pngcairo") == 0)
        ok = b.len > 20 && memcmp(b.s, "\x89PNG", 4) == 0 &&
             memcmp(b.s + b.len - 8, "IEND", 4) == 0;
    else
        ok = b.len > 8 && memcmp(b.s, "%PDF", 4) == 0 && ends_with_trimmed(b.s, b.len, "%%EOF");
    if (!ok) {
        snprintf(msg, msgsize, "the %s driver wrote an incomplete file (disk full?)", dev);
        mlmx_sb_free(&b);
        return -1;
    }
    if (strcmp(dev, "svgcairo") == 0 && title && title[0]) {
        /* after the root element's start tag */
        const char *svg = strstr(b.s, "<svg");
        const char *gt = svg ? strchr(svg, '>') : NULL;
        if (gt) {
            size_t at = (size_t)(gt - b.s) + 1;
            mlmx_strbuf o = {0};
            mlmx_sb_putn(&o, b.s, at);
            mlmx_sb_puts(&o, "\n<title>");
            xml_escape(&o, title);
            mlmx_sb_puts(&o, "</title>");
            mlmx_sb_putn(&o, b.s + at, b.len - at);
            e = o.oom ? ENOMEM : write_all(fd, o.s, o.len);
            mlmx_sb_free(&o);
            if (e) {
                snprintf(msg, msgsize, "%s", strerror(e));
                mlmx_sb_free(&b);
                return -1;
            }
        }
    }
    mlmx_sb_free(&b);
    return 0;
}

/* Draws job into path atomically. what: "power curve", for messages. */
mlmx_status mlmx_pl_file(const char *path, const char *what, const char *title,
                             const plot_job *job, mlmx_error *err)
{
    const char *dev = device_for(path);
    if (!dev)
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "%s '%s': unknown file type; the name must end in .svg, .png or .pdf",
                            what, path);
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp)
        return mlmx_err_set(err, MLMX_ERR_NOMEM, "out of memory");
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return mlmx_err_set(err, MLMX_ERR_IO, "cannot write %s '%s': %s", what, path,
                            strerror(e));
    }
    char msg[700] = "";
    mlmx_status st = MLMX_OK;
    int fd2 = dup(fd);
    FILE *fp = fd2 >= 0 ? fdopen(fd2, "wb") : NULL;
    if (!fp) {
        int e = errno;
        if (fd2 >= 0)
            close(fd2);
        snprintf(msg, sizeof msg, "%s", strerror(e));
        st = MLMX_ERR_IO;
    } else {
        pthread_mutex_lock(&pl_lock);
        int r = plot_draw_locked(dev, fp, job, msg, sizeof msg);
        pthread_mutex_unlock(&pl_lock);
        if (r)
            st = strstr(msg, "driver (install") ? MLMX_ERR_UNSUPPORTED : MLMX_ERR_IO;
        else if (finish_file(fd, dev, title, msg, sizeof msg))
            st = MLMX_ERR_IO;
    }
    if (st == MLMX_OK) {
        (void)fchmod(fd, 0644); /* mkstemp creates 0600 */
        if (close(fd) != 0 || rename(tmp, path) != 0) {
            snprintf(msg, sizeof msg, "%s", strerror(errno));
            st = MLMX_ERR_IO;
            unlink(tmp);
        }
    } else {
        close(fd);
        unlink(tmp);
    }
    free(tmp);
    if (st != MLMX_OK)
        return mlmx_err_set(err, st, "cannot write %s '%s': %s", what, path, msg);
    return MLMX_OK;
}

/* ------------------------------------------------------------ drawing helpers */

/* World units per millimetre in the current viewport, for round symbols. */
void mlmx_pl_world_per_mm(double *wx, double *wy)
{
    PLFLT sx0, sx1, sy0, sy1, vx0, vx1, vy0, vy1, x0, x1, y0, y1;
    plgspa(&sx0, &sx1, &sy0, &sy1);
    plgvpd(&vx0, &vx1, &vy0, &vy1);
    plgvpw(&x0, &x1, &y0, &y1);
    *wx = (x1 - x0) / ((vx1 - vx0) * (sx1 - sx0));
    *wy = (y1 - y0) / ((vy1 - vy0) * (sy1 - sy0));
}

void mlmx_pl_dot(double x, double y, double r_mm, double wx, double wy)
{
    plarc(x, y, r_mm * wx, r_mm * wy, 0.0, 360.0, 0.0, 1);
}

void mlmx_pl_hline(double x0, double x1, double y)
{
    PLFLT xs[2] = {x0, x1}, ys[2] = {y, y};
    plline(2, xs, ys);
}

void mlmx_pl_vline(double x, double y0, double y1)
{
    PLFLT xs[2] = {x, x}, ys[2] = {y0, y1};
    plline(2, xs, ys);
}


void mlmx_pl_text_size(double s)
{
    plschr(0.0, s * text_scale);
}

/* The size (as text_size) at which text of n characters fits width_mm,
 * at most s: a rough width of 0.75 character heights per character (UTF-8
 * continuation bytes not counted). */
double mlmx_pl_fit_size(const char *text, double width_mm, double s)
{
    size_t n = 0;
    for (; *text; text++)
        n += ((unsigned char)*text & 0xC0) != 0x80;
    mlmx_pl_text_size(s);
    PLFLT def, ht;
    plgchr(&def, &ht);
    double need = 0.75 * ht * (double)n;
    return need > width_mm && need > 0 ? s * width_mm / need : s;
}

double mlmx_pl_page_width_mm(void)
{
    PLFLT x0, x1, y0, y1;
    plgspa(&x0, &x1, &y0, &y1);
    return x1 - x0;
}

void mlmx_pl_fmt_num(char *buf, size_t n, double v)
{
    snprintf(buf, n, "%.4g", v);
}

/* ------------------------------------------------------------ power curve */

typedef struct power_ctx {
    int n;
    const double *x, *power, *lo, *hi;
    double alpha, target;
    const char *xlabel, *title;
} power_ctx;

/* The power plot's legend, one row under the x-axis label: the curve, the
 * band (when drawn), the alpha and target lines (when given). */
static void power_legend(const power_ctx *c, int have_band)
{
    PLINT opt[4], tcol[4], bcol[4], bpat[4], lcol[4], lsty[4], scol[4], snum[4];
    PLFLT bsc[4], blw[4], lw[4], ssc[4];
    const char *text[4], *sym[4];
    char alpha_txt[64], target_txt[64], num[32];
    int nl = 0;
    for (int k = 0; k < 4; k++) {
        tcol[k] = C_FG;
        bcol[k] = C_BAND;
        bpat[k] = 0;
        bsc[k] = 0.9;
        blw[k] = 1.0;
        lcol[k] = C_CURVE;
        lsty[k] = 1;
        lw[k] = 2.0;
        scol[k] = C_CURVE;
        ssc[k] = 0.75;
        snum[k] = 1;
        sym[k] = "\xe2\x97\x8f"; /* U+25CF black circle */
    }
    opt[nl] = PL_LEGEND_LINE | PL_LEGEND_SYMBOL;
    text[nl++] = "estimated power";
    if (have_band) {
        opt[nl] = PL_LEGEND_COLOR_BOX;
        text[nl++] = "Clopper-Pearson interval";
    }
    if (isfinite(c->alpha)) {
        mlmx_pl_fmt_num(num, sizeof num, c->alpha);
        snprintf(alpha_txt, sizeof alpha_txt, "\xce\xb1 = %s", num);
        opt[nl] = PL_LEGEND_LINE;
        lcol[nl] = C_ALPHA;
        lsty[nl] = 2;
        lw[nl] = 1.5;
        text[nl++] = alpha_txt;
    }
    if (isfinite(c->target)) {
        mlmx_pl_fmt_num(num, sizeof num, c->target);
        snprintf(target_txt, sizeof target_txt, "target %s", num);
        opt[nl] = PL_LEGEND_LINE;
        lcol[nl] = C_TARGET;
        lsty[nl] = 3;
        lw[nl] = 1.5;
        text[nl++] = target_txt;
    }
    PLFLT lwidth, lheight;
    mlmx_pl_text_size(1.0);
    int ncols = nl > 2 ? 2 : nl, nrows = (nl + ncols - 1) / ncols;
    pllegend(&lwidth, &lheight, PL_LEGEND_ROW_MAJOR, PL_POSITION_BOTTOM | PL_POSITION_OUTSIDE,
             0.0, 0.165, 0.06, C_BG, C_FG, 1, nrows, ncols, nl, opt, 1.0, 1.0, 2.0, 0.0, tcol, text,
             bcol, bpat, bsc, blw, lcol, lsty, lw, scol, ssc, snum, sym);
}

static void draw_power(const plot_job *job)
{
    const power_ctx *c = job->ctx;
    char buf[1024];
    double xmin = HUGE_VAL, xmax = -HUGE_VAL;
    for (int i = 0; i < c->n; i++) {
        xmin = fmin(xmin, c->x[i]);
        xmax = fmax(xmax, c->x[i]);
    }
    double pad = xmax > xmin ? 0.04 * (xmax - xmin) : fmax(1.0, 0.1 * fabs(xmin));
    if (!isfinite(pad) || !isfinite(xmin - pad) || !isfinite(xmax + pad))
        pad = 0.0; /* a range near DBL_MAX */
    double wx0 = xmin - pad, wx1 = xmax + pad, wy0 = -0.02, wy1 = 1.02;

    pladv(0);
    mlmx_pl_text_size(1.15);
    plvpor(0.09, 0.97, 0.27, 0.90);
    plwind(wx0, wx1, wy0, wy1);

    /* grid */
    plcol0(C_GRID);
    plwidth(1.0);
    plbox("g", 0.0, 0, "g", 0.1, 0);

    /* Clopper-Pearson band over runs of points with both ends */
    int have_band = 0;
    if (c->lo && c->hi) {
        PLFLT *bx = malloc(2 * (size_t)c->n * sizeof *bx), *by = malloc(2 * (size_t)c->n * sizeof *by);
        if (bx && by) {
            int i = 0;
            while (i < c->n) {
                if (!(isfinite(c->lo[i]) && isfinite(c->hi[i]))) {
                    i++;
                    continue;
                }
                int j = i;
                while (j < c->n && isfinite(c->lo[j]) && isfinite(c->hi[j]))
                    j++;
                have_band = 1;
                if (j - i >= 2) {
                    int m = 0;
                    for (int k = i; k < j; k++, m++) {
                        bx[m] = c->x[k];
                        by[m] = c->hi[k];
                    }
                    for (int k = j - 1; k >= i; k--, m++) {
                        bx[m] = c->x[k];
                        by[m] = c->lo[k];
                    }
                    plcol0(C_BAND);
                    plfill(m, bx, by);
                } else {
                    plcol0(C_CURVE);
                    plwidth(1.5);
                    mlmx_pl_vline(c->x[i], c->lo[i], c->hi[i]);
                }
                i = j;
            }
        }
        free(bx);
        free(by);
    }

    /* reference lines */
    if (isfinite(c->alpha)) {
        plcol0(C_ALPHA);
        plwidth(1.5);
        pllsty(2);
        mlmx_pl_hline(wx0, wx1, c->alpha);
        pllsty(1);
    }
    if (isfinite(c->target)) {
        plcol0(C_TARGET);
        plwidth(1.5);
        pllsty(3);
        mlmx_pl_hline(wx0, wx1, c->target);
        pllsty(1);
    }

    /* curve: line over runs of estimated points, then the points */
    plcol0(C_CURVE);
    plwidth(2.2);
    for (int i = 0; i < c->n;) {
        if (!isfinite(c->power[i])) {
            i++;
            continue;
        }
        int j = i;
        while (j < c->n && isfinite(c->power[j]))
            j++;
        if (j - i >= 2)
            plline(j - i, c->x + i, c->power + i);
        i = j;
    }
    double wpx, wpy;
    mlmx_pl_world_per_mm(&wpx, &wpy);
    for (int i = 0; i < c->n; i++)
        if (isfinite(c->power[i]))
            mlmx_pl_dot(c->x[i], c->power[i], 1.6, wpx, wpy);

    /* axes */
    plcol0(C_FG);
    plwidth(1.0);
    plbox("bcnst", 0.0, 0, "bcnstv", 0.2, 2);
    plmtex("b", 3.0, 0.5, 0.5, mlmx_pl_text(buf, sizeof buf, c->xlabel));
    plmtex("l", 4.2, 0.5, 0.5, "power");
    if (c->title && c->title[0]) {
        mlmx_pl_text(buf, sizeof buf, c->title);
        mlmx_pl_text_size(mlmx_pl_fit_size(buf, 0.94 * mlmx_pl_page_width_mm(), 1.45));
        plmtex("t", 1.6, 0.5, 0.5, buf);
        mlmx_pl_text_size(1.15);
    }

    power_legend(c, have_band);
}

mlmx_status mlmx_plot_power_curve(const char *path, int npts, const double *x,
                                  const double *power, const double *lo, const double *hi,
                                  double alpha, double target, const char *xlabel,
                                  const char *title, mlmx_error *err)
{
    if (!path || !x || !power)
        return mlmx_err_set(err, MLMX_ERR_ARG, "mlmx_plot_power_curve: NULL argument");
    if (npts < 1)
        return mlmx_err_set(err, MLMX_ERR_ARG, "power curve '%s': no points (npts = %d)", path,
                            npts);
    for (int i = 0; i < npts; i++) {
        if (!isfinite(x[i]))
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "power curve '%s': design value %d is not finite", path, i + 1);
        if (!isnan(power[i]) && !(power[i] >= 0.0 && power[i] <= 1.0))
            return mlmx_err_set(err, MLMX_ERR_ARG,
                                "power curve '%s': power at point %d is %g, outside [0, 1]",
                                path, i + 1, power[i]);
        for (int s = 0; s < 2; s++) {
            const double *v = s ? hi : lo;
            if (v && !isnan(v[i]) && !(v[i] >= 0.0 && v[i] <= 1.0))
                return mlmx_err_set(err, MLMX_ERR_ARG,
                                    "power curve '%s': interval %s end at point %d is %g, "
                                    "outside [0, 1]",
                                    path, s ? "upper" : "lower", i + 1, v[i]);
        }
    }
    if (!isnan(alpha) && !(alpha > 0.0 && alpha < 1.0))
        return mlmx_err_set(err, MLMX_ERR_ARG, "power curve '%s': alpha must be in (0, 1) (got %g)",
                            path, alpha);
    if (!isnan(target) && !(target > 0.0 && target <= 1.0))
        return mlmx_err_set(err, MLMX_ERR_ARG,
                            "power curve '%s': target power must be in (0, 1] (got %g)", path,
                            target);
    power_ctx c = {npts, x, power, lo, hi, alpha, target, xlabel ? xlabel : "design", title};
    plot_job job = {900.0, 600.0, draw_power, &c};
    return mlmx_pl_file(path, "power curve", title, &job, err);
}

