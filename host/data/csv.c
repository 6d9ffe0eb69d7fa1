/* CSV reader. Tokenising (quotes, doubled quotes, embedded delimiters and
 * newlines) is left to libcsv in strict mode; this file adds what libcsv
 * does not know about: line numbers for messages, the header, column type
 * inference and missing values. See docs/data.md for the rules. */
#define _POSIX_C_SOURCE 200809L /* fstat, newlocale/uselocale */

#include <csv.h>
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/frame.h"

#define READ_BLOCK ((size_t)256 * 1024)
#define SAMPLE_MAX 40            /* longest field text quoted in a message */
#define NO_TEXT SIZE_MAX         /* offset of a missing field */

typedef struct csv_col {
    double *num;      /* values while every field so far was a number */
    size_t *off;      /* offset of each field in text, NO_TEXT = missing */
    char *text;       /* NUL-terminated trimmed fields, back to back */
    size_t text_len, text_cap;
    int numeric;      /* still a candidate for a numeric column */
    /* First NaN/Inf/overflowing number: an error only if the column ends up
     * numeric, because in a factor column "Inf" is just another label. */
    size_t bad_line;  /* 0 = none */
    char bad_text[SAMPLE_MAX + 4];
    /* First field with a comma in a ';' or tab separated file: a decimal
     * comma ("1,5") if the column ends up a factor of such numbers. */
    size_t comma_line; /* 0 = none */
    char comma_text[SAMPLE_MAX + 4];
} csv_col;

typedef struct csv_ctx {
    const char *path;
    mlmx_error *err;
    unsigned char delim; /* ',', ';' or '\t', detected from the header line */
    mlmx_status st;   /* first error; once set, callbacks do nothing */
    size_t line;      /* 1-based physical line of the bytes being fed */
    size_t row_line;  /* line on which the current row began */
    int in_row;
    size_t field;     /* fields seen so far in the current row */
    int have_header;
    char **names;
    size_t nnames, names_cap;
    int ncol;
    csv_col *cols;
    size_t nrow, row_cap;
} csv_ctx;

static int is_ws(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

/* Line breaks inside a field, counted the way the reader counts lines
 * (CR, LF and CRLF each end one line). */
static size_t count_breaks(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '\r' || (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')))
            n++;
    return n;
}

/* Exact fast path for the common plain decimals ("308", "-0.25"): with at
 * most 15 digits the digits form an exact double and dividing by an exact
 * power of ten rounds correctly (Clinger), so the result equals strtod's.
 * Anything else (exponents, hex, inf, long mantissas) goes to strtod. */
static int parse_simple(const char *b, const char *e, double *out)
{
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    const char *q = b;
    int neg = 0;
    if (q < e && (*q == '-' || *q == '+'))
        neg = *q++ == '-';
    uint64_t m = 0;
    int digits = 0, frac = 0, dot = 0;
    for (; q < e; q++) {
        if (*q >= '0' && *q <= '9') {
            if (++digits > 15)
                return 0;
            m = m * 10 + (uint64_t)(*q - '0');
            frac += dot;
        } else if (*q == '.' && !dot) {
            dot = 1;
        } else {
            return 0;
        }
    }
    if (!digits)
        return 0;
    double v = (double)m / p10[frac];
    *out = neg ? -v : v;
    return 1;
}

/* Line on which a field that has just ended began. */
static size_t field_line(const csv_ctx *c, const char *s, size_t len)
{
    size_t k = count_breaks(s, len);
    return k < c->line ? c->line - k : 1;
}

static void sample_text(char *dst, const char *b, size_t len)
{
    if (len > SAMPLE_MAX) {
        memcpy(dst, b, SAMPLE_MAX);
        memcpy(dst + SAMPLE_MAX, "...", 4);
    } else {
        memcpy(dst, b, len);
        dst[len] = '\0';
    }
}

/* How messages name the delimiter of a file that is not comma separated:
 * "" for commas, else a parenthesised note. */
static const char *delim_note(const csv_ctx *c)
{
    if (c->delim == ';')
        return " (fields separated by ';', as found in the header line)";
    if (c->delim == '\t')
        return " (fields separated by tabs, as found in the header line)";
    return "";
}

static void fail_nomem(csv_ctx *c)
{
    c->st = mlmx_err_set(c->err, MLMX_ERR_NOMEM, "%s:%zu: out of memory reading the file",
                         c->path, c->row_line);
}

/* Doubling growth of every column's per-row arrays, so reading n rows costs
 * O(n) amortised and no allocation happens per row. */
static int grow_rows(csv_ctx *c)
{
    size_t cap = c->row_cap ? c->row_cap * 2 : 64;
    if (cap > SIZE_MAX / 2 / sizeof(double))
        return -1;
    for (int j = 0; j < c->ncol; j++) {
        csv_col *col = &c->cols[j];
        size_t *off = realloc(col->off, cap * sizeof *off);
        if (!off)
            return -1;
        col->off = off;
        if (col->numeric) {
            double *num = realloc(col->num, cap * sizeof *num);
            if (!num)
                return -1;
            col->num = num;
        }
    }
    c->row_cap = cap;
    return 0;
}

static int append_text(csv_col *col, const char *b, size_t n)
{
    if (col->text_cap - col->text_len < n + 1) {
        size_t cap = col->text_cap ? col->text_cap : 256;
        while (cap - col->text_len < n + 1) {
            if (cap > SIZE_MAX / 2)
                return -1;
            cap *= 2;
        }
        char *t = realloc(col->text, cap);
        if (!t)
            return -1;
        col->text = t;
        col->text_cap = cap;
    }
    memcpy(col->text + col->text_len, b, n);
    col->text[col->text_len + n] = '\0';
    return 0;
}

static void header_field(csv_ctx *c, const char *s, size_t len)
{
    if (memchr(s, '\0', len)) {
        c->st = mlmx_err_set(c->err, MLMX_ERR_PARSE,
                             "%s:%zu: column %zu name contains a NUL byte; mlmx reads UTF-8 "
                             "text (is this a UTF-16 or binary file?)",
                             c->path, c->row_line, c->nnames + 1);
        return;
    }
    if (c->nnames >= (size_t)INT_MAX) {
        c->st = mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s:%zu: header has more than %d columns",
                             c->path, c->row_line, INT_MAX);
        return;
    }
    if (c->nnames == c->names_cap) {
        size_t cap = c->names_cap ? c->names_cap * 2 : 16;
        char **nm = realloc(c->names, cap * sizeof *nm);
        if (!nm) {
            fail_nomem(c);
            return;
        }
        c->names = nm;
        c->names_cap = cap;
    }
    const char *b = s, *e = s + len;
    while (b < e && is_ws((unsigned char)*b))
        b++;
    while (e > b && is_ws((unsigned char)e[-1]))
        e--;
    char *name = malloc((size_t)(e - b) + 1);
    if (!name) {
        fail_nomem(c);
        return;
    }
    memcpy(name, b, (size_t)(e - b));
    name[e - b] = '\0';
    c->names[c->nnames++] = name;
}

typedef struct name_ref {
    const char *name;
    size_t idx;
} name_ref;

static int cmp_name_ref(const void *a, const void *b)
{
    const name_ref *x = a, *y = b;
    int r = strcmp(x->name, y->name);
    if (r)
        return r;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static void header_end(csv_ctx *c)
{
    for (size_t j = 0; j < c->nnames; j++) {
        if (!c->names[j][0]) {
            c->st = mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s:%zu: column %zu has an empty name",
                                 c->path, c->row_line, j + 1);
            return;
        }
        int bad = mlmx_name_control_char(c->names[j]);
        if (bad >= 0) {
            c->st = mlmx_err_set(c->err, MLMX_ERR_PARSE,
                                 "%s:%zu: column %zu name contains the control character 0x%02X",
                                 c->path, c->row_line, j + 1, bad);
            return;
        }
    }
    /* Sort instead of comparing all pairs: a header can be very wide. */
    name_ref *ref = malloc(c->nnames * sizeof *ref);
    if (!ref) {
        fail_nomem(c);
        return;
    }
    for (size_t j = 0; j < c->nnames; j++) {
        ref[j].name = c->names[j];
        ref[j].idx = j;
    }
    qsort(ref, c->nnames, sizeof *ref, cmp_name_ref);
    /* Report the duplicate whose second occurrence comes first, as someone
     * reading the header left to right would find it. */
    size_t first = 0, second = SIZE_MAX;
    for (size_t k = 1; k < c->nnames; k++) {
        if (strcmp(ref[k].name, ref[k - 1].name) == 0 &&
            (k < 2 || strcmp(ref[k - 2].name, ref[k].name) != 0) && ref[k].idx < second) {
            first = ref[k - 1].idx;
            second = ref[k].idx;
        }
    }
    free(ref);
    if (second != SIZE_MAX) {
        c->st = mlmx_err_set(c->err, MLMX_ERR_PARSE,
                             "%s:%zu: duplicate column name '%s' (columns %zu and %zu)", c->path,
                             c->row_line, c->names[first], first + 1, second + 1);
        return;
    }
    c->cols = calloc(c->nnames, sizeof *c->cols);
    if (!c->cols) {
        fail_nomem(c);
        return;
    }
    c->ncol = (int)c->nnames;
    for (int j = 0; j < c->ncol; j++)
        c->cols[j].numeric = 1;
    c->have_header = 1;
}

static void data_field(csv_ctx *c, size_t j, const char *s, size_t len)
{
    csv_col *col = &c->cols[j];
    size_t r = c->nrow;
    if (memchr(s, '\0', len)) {
        c->st = mlmx_err_set(c->err, MLMX_ERR_PARSE,
                             "%s:%zu: column '%s' (column %zu): field contains a NUL byte; mlmx "
                             "reads UTF-8 text (is this a UTF-16 or binary file?)",
                             c->path, field_line(c, s, len), c->names[j], j + 1);
        return;
    }
    const char *b = s, *e = s + len;
    while (b < e && is_ws((unsigned char)*b))
        b++;
    while (e > b && is_ws((unsigned char)e[-1]))
        e--;
    size_t n = (size_t)(e - b);
    /* missing: empty, NA (R) or a lone . (Stata, SAS) */
    if (n == 0 || (n == 2 && b[0] == 'N' && b[1] == 'A') || (n == 1 && b[0] == '.')) {
        col->off[r] = NO_TEXT;
        if (col->numeric)
            col->num[r] = NAN;
        return;
    }
    if (col->numeric) {
        /* libcsv NUL-terminates the field (CSV_APPEND_NULL) and only
         * whitespace follows e, so strtod cannot run past the field. */
        double v;
        int ok = parse_simple(b, e, &v);
        if (!ok) {
            char *end;
            v = strtod(b, &end);
            ok = end == e;
        }
        if (!ok) {
            col->numeric = 0;
            free(col->num);
            col->num = NULL;
        } else if (!isfinite(v)) {
            if (!col->bad_line) {
                col->bad_line = field_line(c, s, len);
                sample_text(col->bad_text, b, n);
            }
            col->num[r] = NAN;
        } else {
            col->num[r] = v;
        }
    }
    if (c->delim != ',' && !col->numeric && !col->comma_line && memchr(b, ',', n)) {
        col->comma_line = field_line(c, s, len);
        sample_text(col->comma_text, b, n);
    }
    col->off[r] = col->text_len;
    if (append_text(col, b, n) != 0) {
        fail_nomem(c);
        return;
    }
    col->text_len += n + 1;
}

static void on_field(void *s, size_t len, void *data)
{
    csv_ctx *c = data;
    if (c->st)
        return;
    const char *txt = s ? (const char *)s : "";
    if (!s)
        len = 0;
    size_t j = c->field++;
    if (!c->have_header) {
        header_field(c, txt, len);
        return;
    }
    if (j == 0 && c->nrow == c->row_cap && grow_rows(c) != 0) {
        fail_nomem(c);
        return;
    }
    if (j < (size_t)c->ncol) /* extra fields: counted, reported at row end */
        data_field(c, j, txt, len);
}

static void on_row(int term, void *data)
{
    (void)term;
    csv_ctx *c = data;
    size_t nf = c->field;
    c->field = 0;
    c->in_row = 0;
    if (c->st)
        return;
    if (!c->have_header) {
        header_end(c);
        return;
    }
    if (nf != (size_t)c->ncol) {
        c->st = mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s:%zu: row has %zu field%s, header has %d%s",
                             c->path, c->row_line, nf, nf == 1 ? "" : "s", c->ncol,
                             delim_note(c));
        return;
    }
    c->nrow++;
}

static void csv_parse_error(csv_ctx *c, int status)
{
    if (status == CSV_EPARSE)
        c->st = mlmx_err_set(c->err, MLMX_ERR_PARSE,
                             "%s:%zu: malformed quoting: a quote inside an unquoted field or "
                             "text after a closing quote (write a literal quote as \"\" inside "
                             "a quoted field)%s",
                             c->path, c->line, delim_note(c));
    else
        c->st = mlmx_err_set(c->err, MLMX_ERR_NOMEM, "%s:%zu: field too large to hold in memory",
                             c->path, c->line);
}

/* Hands buf to libcsv one physical line at a time, so that whatever the
 * callbacks report happened on c->line. A row begins at the first byte
 * libcsv does not skip between rows (anything but space, tab, CR, LF);
 * recording that line here is what lets messages name where a row starts
 * even when quoted fields span several lines. */
static void feed(csv_ctx *c, struct csv_parser *p, const unsigned char *buf, size_t n,
                 int *prev_cr)
{
    size_t i = 0;
    while (i < n && !c->st) {
        size_t j = i;
        int nonblank = 0;
        while (j < n && buf[j] != '\n' && buf[j] != '\r') {
            /* in a tab separated file a tab is a field boundary, as for libcsv */
            if (buf[j] != ' ' && (buf[j] != '\t' || c->delim == '\t'))
                nonblank = 1;
            j++;
        }
        int has_term = j < n;
        size_t end = has_term ? j + 1 : j;
        if (!c->in_row && nonblank) {
            c->in_row = 1;
            c->row_line = c->line;
        }
        if (csv_parse(p, buf + i, end - i, on_field, on_row, c) != end - i && !c->st) {
            csv_parse_error(c, csv_error(p));
            return;
        }
        if (j > i)
            *prev_cr = 0;
        if (has_term) {
            if (buf[j] == '\r')
                c->line++;
            else if (!*prev_cr)
                c->line++;
            *prev_cr = buf[j] == '\r';
        }
        i = end;
    }
}

/* The delimiter: whichever of comma, semicolon and tab occurs most often
 * outside quotes in the header line (the first line that is not blank),
 * ties going to the comma, then the semicolon; a comma when none occurs
 * (a one-column file). */
static unsigned char detect_delim(const unsigned char *buf, size_t n)
{
    size_t i = 0;
    for (;;) { /* blank lines before the header, as the reader skips them */
        size_t j = i;
        while (j < n && (buf[j] == ' ' || buf[j] == '\t'))
            j++;
        if (j < n && (buf[j] == '\n' || buf[j] == '\r')) {
            i = j + 1;
            continue;
        }
        break;
    }
    size_t comma = 0, semi = 0, tab = 0;
    int inq = 0;
    for (; i < n; i++) {
        unsigned char ch = buf[i];
        if (ch == '"')
            inq = !inq;
        else if (inq)
            continue;
        else if (ch == '\n' || ch == '\r')
            break;
        else if (ch == ',')
            comma++;
        else if (ch == ';')
            semi++;
        else if (ch == '\t')
            tab++;
    }
    if (comma >= semi && comma >= tab)
        return ',';
    return semi >= tab ? ';' : '\t';
}

/* Does s read as a number once its one comma is taken as the decimal
 * point ("1,5", "-0,25")? */
static int decimal_comma_number(const char *s)
{
    const char *comma = strchr(s, ',');
    size_t n = strlen(s);
    if (!comma || strchr(comma + 1, ',') || strchr(s, '.') || n > 64)
        return 0;
    char buf[66];
    memcpy(buf, s, n + 1);
    buf[comma - s] = '.';
    double v;
    if (parse_simple(buf, buf + n, &v))
        return 1;
    char *end;
    v = strtod(buf, &end);
    return end == buf + n && isfinite(v);
}

/* In a ';' or tab separated file a column written with decimal commas
 * would silently become a factor of number-like labels: refuse it, naming
 * the first such value. */
static void check_decimal_commas(csv_ctx *c)
{
    for (int j = 0; j < c->ncol && !c->st; j++) {
        const csv_col *col = &c->cols[j];
        if (col->numeric || !col->comma_line)
            continue;
        int all = 1;
        for (size_t r = 0; r < c->nrow && all; r++) {
            if (col->off[r] == NO_TEXT)
                continue;
            const char *t = col->text + col->off[r];
            double v;
            char *end;
            all = decimal_comma_number(t) || parse_simple(t, t + strlen(t), &v) ||
                  (v = strtod(t, &end), *end == '\0' && end != t && isfinite(v));
        }
        if (all)
            c->st = mlmx_err_set(c->err, MLMX_ERR_DATA,
                                 "%s:%zu: column '%s' (column %d): '%s' has a decimal comma; "
                                 "mlmx reads numbers with a decimal point ('.') only, so "
                                 "write the numbers with points%s",
                                 c->path, col->comma_line, c->names[j], j + 1, col->comma_text,
                                 delim_note(c));
    }
}

/* Reports the earliest NaN/Inf in a column that is otherwise numeric. */
static void check_nonfinite(csv_ctx *c)
{
    int bad = -1;
    for (int j = 0; j < c->ncol; j++)
        if (c->cols[j].numeric && c->cols[j].bad_line &&
            (bad < 0 || c->cols[j].bad_line < c->cols[bad].bad_line))
            bad = j;
    if (bad < 0)
        return;
    const csv_col *col = &c->cols[bad];
    const char *t = col->bad_text;
    if (*t == '+' || *t == '-')
        t++;
    if ((*t >= '0' && *t <= '9') || *t == '.')
        c->st = mlmx_err_set(c->err, MLMX_ERR_DATA,
                             "%s:%zu: column '%s' (column %d): value '%s' is too large for a "
                             "double",
                             c->path, col->bad_line, c->names[bad], bad + 1, col->bad_text);
    else
        c->st = mlmx_err_set(c->err, MLMX_ERR_DATA,
                             "%s:%zu: column '%s' (column %d): non-finite value '%s' is not "
                             "allowed; use NA or an empty field for missing values",
                             c->path, col->bad_line, c->names[bad], bad + 1, col->bad_text);
}

static mlmx_status build_frame(csv_ctx *c, mlmx_data **out)
{
    mlmx_data *d = NULL;
    mlmx_status st = mlmx_frame_new(c->nrow, c->path, &d, c->err);
    const char **ptr = NULL;
    for (int j = 0; j < c->ncol && st == MLMX_OK; j++) {
        csv_col *col = &c->cols[j];
        if (col->numeric) {
            double *num = col->num;
            col->num = NULL;
            double *shrunk = realloc(num, c->nrow * sizeof *num);
            st = mlmx_frame_add_numeric_owned(d, c->names[j], shrunk ? shrunk : num, c->err);
        } else {
            if (!ptr && !(ptr = malloc(c->nrow * sizeof *ptr))) {
                st = mlmx_err_set(c->err, MLMX_ERR_NOMEM, "%s: out of memory", c->path);
                break;
            }
            for (size_t r = 0; r < c->nrow; r++)
                ptr[r] = col->off[r] == NO_TEXT ? NULL : col->text + col->off[r];
            st = mlmx_frame_add_factor_strings(d, c->names[j], ptr, c->err);
        }
        /* The column's text is no longer needed: release it early so peak
         * memory stays near one copy of the data. */
        free(col->text);
        col->text = NULL;
        free(col->off);
        col->off = NULL;
    }
    free(ptr);
    if (st != MLMX_OK) {
        mlmx_frame_free(d);
        return st;
    }
    *out = d;
    return MLMX_OK;
}

static void ctx_free(csv_ctx *c)
{
    for (size_t j = 0; j < c->nnames; j++)
        free(c->names[j]);
    free(c->names);
    if (c->cols) {
        for (int j = 0; j < c->ncol; j++) {
            free(c->cols[j].num);
            free(c->cols[j].off);
            free(c->cols[j].text);
        }
        free(c->cols);
    }
}

static mlmx_status read_stream(csv_ctx *c, FILE *f, mlmx_data **out)
{
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0)
        return mlmx_err_set(c->err, MLMX_ERR_NOMEM, "%s: cannot initialise the CSV parser",
                            c->path);
    /* libcsv grows its field buffer linearly by this much; the default
     * (128 bytes) makes long fields needlessly slow. */
    csv_set_blk_size(&p, 4096);
    unsigned char *buf = malloc(READ_BLOCK);
    if (!buf) {
        csv_free(&p);
        return mlmx_err_set(c->err, MLMX_ERR_NOMEM, "%s: out of memory", c->path);
    }
    int prev_cr = 0, first = 1;
    while (!c->st) {
        size_t n = fread(buf, 1, READ_BLOCK, f);
        if (n == 0) {
            if (ferror(f))
                c->st = mlmx_err_set(c->err, MLMX_ERR_IO, "cannot read '%s': %s", c->path,
                                     strerror(errno));
            break;
        }
        size_t skip = 0;
        if (first && n >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF)
            skip = 3; /* UTF-8 byte order mark written by Excel and others */
        if (first) {
            c->delim = detect_delim(buf + skip, n - skip);
            csv_set_delim(&p, c->delim);
        }
        first = 0;
        feed(c, &p, buf + skip, n - skip, &prev_cr);
    }
    free(buf);
    if (!c->st && csv_fini(&p, on_field, on_row, c) != 0 && !c->st)
        c->st = mlmx_err_set(c->err, MLMX_ERR_PARSE,
                             "%s:%zu: quoted field is never closed (the row starting on this "
                             "line runs to the end of the file)",
                             c->path, c->row_line);
    csv_free(&p);
    if (c->st)
        return c->st;
    if (!c->have_header)
        return mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s: file is empty", c->path);
    if (c->nrow == 0)
        return mlmx_err_set(c->err, MLMX_ERR_PARSE, "%s: no data rows after the header",
                            c->path);
    check_nonfinite(c);
    if (!c->st)
        check_decimal_commas(c);
    if (c->st)
        return c->st;
    return build_frame(c, out);
}

mlmx_status mlmx_csv_read(const char *path, mlmx_data **out, mlmx_error *err)
{
    if (!path || !out)
        return mlmx_err_set(err, MLMX_ERR_ARG, "internal: NULL argument to the CSV reader");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return mlmx_err_set(err, MLMX_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return mlmx_err_set(err, MLMX_ERR_IO, "cannot open '%s': %s", path, strerror(EISDIR));
    }

    /* strtod follows LC_NUMERIC; a host program running under, say, de_DE
     * would otherwise read "249.56" as text. Switch this thread only. */
    locale_t cloc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    locale_t old = cloc ? uselocale(cloc) : (locale_t)0;

    csv_ctx c;
    memset(&c, 0, sizeof c);
    c.path = path;
    c.err = err;
    c.delim = ',';
    c.line = 1;
    c.row_line = 1;
    mlmx_status st = read_stream(&c, f, out);
    ctx_free(&c);
    fclose(f);

    if (cloc) {
        uselocale(old);
        freelocale(cloc);
    }
    return st;
}
