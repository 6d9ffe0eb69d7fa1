/* Data sets: CSV and HDF5 readers, the frame, and the public data API.
 * Small inputs are written into a fresh temporary directory per test. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Debian's location; the test gets no HDF5 include path of its own. */
#include <hdf5/serial/hdf5.h>

#include "data/frame.h"
#include "mlmx.h"

/* ---- scaffolding ---------------------------------------------------------- */

static char tmpdir[64];
static char created[64][128];
static int ncreated;

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mlmx_test_data_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
    ncreated = 0;
}

static void teardown(void)
{
    for (int i = 0; i < ncreated; i++)
        unlink(created[i]);
    rmdir(tmpdir);
}

static const char *tmp_path(const char *name)
{
    cr_assert_lt(ncreated, 64);
    snprintf(created[ncreated], sizeof created[0], "%s/%s", tmpdir, name);
    return created[ncreated++];
}

static const char *write_bytes(const char *name, const char *bytes, size_t len)
{
    const char *p = tmp_path(name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(bytes, 1, len, f), len);
    fclose(f);
    return p;
}

static const char *write_text(const char *name, const char *text)
{
    return write_bytes(name, text, strlen(text));
}

/* A non-NULL pointer the readers must overwrite with NULL on failure. */
static mlmx_data *sentinel(void)
{
    static mlmx_data dummy;
    return &dummy;
}

static mlmx_data *read_csv_ok(const char *text)
{
    const char *p = write_text("ok.csv", text);
    mlmx_data *d = NULL;
    mlmx_status st = mlmx_data_read_csv(p, &d);
    cr_assert_eq(st, MLMX_OK, "read failed: %s", mlmx_last_error());
    cr_assert_not_null(d);
    return d;
}

/* Reads a CSV that must fail with `want`; returns the message. */
static const char *read_csv_fail_n(const char *bytes, size_t len, mlmx_status want)
{
    const char *p = write_bytes("bad.csv", bytes, len);
    mlmx_data *d = sentinel(); /* must be reset to NULL on failure */
    mlmx_status st = mlmx_data_read_csv(p, &d);
    cr_assert_eq(st, want, "status %s, want %s; message: %s", mlmx_status_name(st),
                 mlmx_status_name(want), mlmx_last_error());
    cr_assert_null(d);
    const char *msg = mlmx_last_error();
    cr_assert(strstr(msg, "bad.csv"), "message lacks the file name: %s", msg);
    cr_assert_null(strchr(msg, '\n'), "message is not one line: %s", msg);
    return msg;
}

static const char *read_csv_fail(const char *text, mlmx_status want)
{
    return read_csv_fail_n(text, strlen(text), want);
}

#define assert_has(msg, piece) \
    cr_assert(strstr((msg), (piece)), "message lacks \"%s\": %s", (piece), (msg))

/* Repository data (data/ holds every file the tests read). */
static const char *data_file(const char *name)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/data/%s", MLMX_SOURCE_DIR, name);
    return buf;
}

static const mlmx_column *col(const mlmx_data *d, const char *name)
{
    int j = mlmx_frame_find(d, name);
    cr_assert_geq(j, 0, "no column '%s'", name);
    return &d->cols[j];
}

TestSuite(csv, .init = setup, .fini = teardown);
TestSuite(hdf5, .init = setup, .fini = teardown);
TestSuite(data_api, .init = setup, .fini = teardown);

/* ---- CSV: real data --------------------------------------------------------- */

Test(csv, sleepstudy)
{
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_read_csv(data_file("sleepstudy.csv"), &d), MLMX_OK, "%s",
                 mlmx_last_error());
    cr_assert_eq(mlmx_data_nrow(d), 180);
    cr_assert_eq(mlmx_data_ncol(d), 3);
    cr_assert_str_eq(mlmx_data_column_name(d, 0), "Reaction");
    cr_assert_str_eq(mlmx_data_column_name(d, 1), "Days");
    cr_assert_str_eq(mlmx_data_column_name(d, 2), "Subject");
    for (int j = 0; j < 3; j++)
        cr_assert_eq(mlmx_data_column_is_factor(d, j), 0, "column %d", j);
    cr_assert_eq(col(d, "Reaction")->num[0], 249.56);
    cr_assert_eq(col(d, "Days")->num[179], 9.0);
    cr_assert_eq(col(d, "Subject")->num[0], 308.0);
    cr_assert_str_eq(d->source, data_file("sleepstudy.csv"));
    mlmx_data_free(d);
}

Test(csv, penicillin_factor_levels)
{
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_read_csv(data_file("penicillin.csv"), &d), MLMX_OK, "%s",
                 mlmx_last_error());
    cr_assert_eq(mlmx_data_nrow(d), 144);
    int j = mlmx_frame_find(d, "plate");
    cr_assert_eq(mlmx_data_column_is_factor(d, j), 1);
    cr_assert_eq(mlmx_data_column_nlevels(d, j), 24);
    for (int k = 0; k < 24; k++) {
        char want[2] = {(char)('a' + k), 0};
        cr_assert_str_eq(d->cols[j].levels[k], want);
    }
    cr_assert_eq(d->cols[j].codes[0], 0); /* first row is plate a */
    cr_assert_eq(mlmx_data_column_nlevels(d, mlmx_frame_find(d, "sample")), 6);
    cr_assert_eq(mlmx_data_column_is_factor(d, mlmx_frame_find(d, "diameter")), 0);
    mlmx_data_free(d);
}

/* The largest bundled table (data/insteval.csv); how fast it reads is
 * measured by bench/, not asserted here. */
Test(csv, insteval_large_table)
{
    const char *path = data_file("insteval.csv");
    cr_assert_eq(access(path, R_OK), 0, "%s is missing from the repository", path);
    mlmx_data *d = NULL;
    mlmx_status st = mlmx_data_read_csv(path, &d);
    cr_assert_eq(st, MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_data_nrow(d), 73421);
    cr_assert_eq(mlmx_data_ncol(d), 8);
    cr_assert_eq(mlmx_data_column_is_factor(d, mlmx_frame_find(d, "dept_service")), 1);
    cr_assert_eq(mlmx_data_column_nlevels(d, mlmx_frame_find(d, "dept_service")), 28);
    cr_assert_eq(mlmx_data_column_is_factor(d, mlmx_frame_find(d, "s")), 0);
    mlmx_data_free(d);
}

/* ---- CSV: types and missing values ------------------------------------------ */

Test(csv, type_inference_and_missing)
{
    mlmx_data *d = read_csv_ok("x,g,m,all_na,q\n"
                               " 1 ,b,1,NA,\"2.5\"\n"
                               "NA,a,x,,\" 3 \"\n"
                               ",NA,,NA,-1e3\n"
                               "2e-1,B,2,\"\",0x10\n");
    cr_assert_eq(mlmx_data_nrow(d), 4);
    cr_assert_eq(mlmx_data_ncol(d), 5);

    const mlmx_column *x = col(d, "x");
    cr_assert_eq(x->type, MLMX_COL_NUMERIC);
    cr_assert_eq(x->num[0], 1.0);
    cr_assert(isnan(x->num[1]) && isnan(x->num[2]));
    cr_assert_eq(x->num[3], 0.2);

    /* Byte order: upper case before lower case, as R with LC_COLLATE=C. */
    const mlmx_column *g = col(d, "g");
    cr_assert_eq(g->type, MLMX_COL_FACTOR);
    cr_assert_eq(g->nlevels, 3);
    cr_assert_str_eq(g->levels[0], "B");
    cr_assert_str_eq(g->levels[1], "a");
    cr_assert_str_eq(g->levels[2], "b");
    cr_assert_eq(g->codes[0], 2);
    cr_assert_eq(g->codes[1], 1);
    cr_assert_eq(g->codes[2], -1);
    cr_assert_eq(g->codes[3], 0);

    /* One non-number makes the column a factor; numbers become labels. */
    const mlmx_column *m = col(d, "m");
    cr_assert_eq(m->type, MLMX_COL_FACTOR);
    cr_assert_eq(m->nlevels, 3);
    cr_assert_str_eq(m->levels[0], "1");
    cr_assert_str_eq(m->levels[1], "2");
    cr_assert_str_eq(m->levels[2], "x");
    cr_assert_eq(m->codes[2], -1);

    const mlmx_column *na = col(d, "all_na");
    cr_assert_eq(na->type, MLMX_COL_NUMERIC);
    for (int r = 0; r < 4; r++)
        cr_assert(isnan(na->num[r]));

    const mlmx_column *q = col(d, "q");
    cr_assert_eq(q->type, MLMX_COL_NUMERIC);
    cr_assert_eq(q->num[0], 2.5);
    cr_assert_eq(q->num[1], 3.0);
    cr_assert_eq(q->num[2], -1000.0);
    cr_assert_eq(q->num[3], 16.0);
    mlmx_data_free(d);
}

Test(csv, numbers_round_like_strtod)
{
    mlmx_data *d = read_csv_ok("v\n0.1\n-0\n123456789012345\n1234567890123456789\n"
                               "0.30000000000000004\n1e-400\n+7.\n.5\n");
    const mlmx_column *v = col(d, "v");
    cr_assert_eq(v->type, MLMX_COL_NUMERIC);
    cr_assert_eq(v->num[0], 0.1);
    cr_assert_eq(v->num[1], 0.0);
    cr_assert(signbit(v->num[1]));
    cr_assert_eq(v->num[2], 123456789012345.0);
    cr_assert_eq(v->num[3], 1234567890123456789.0);
    cr_assert_eq(v->num[4], 0.30000000000000004);
    cr_assert_eq(v->num[5], 0.0); /* underflow is a finite zero */
    cr_assert_eq(v->num[6], 7.0);
    cr_assert_eq(v->num[7], 0.5);
    mlmx_data_free(d);
}

Test(csv, factor_levels_trimmed_and_quoted)
{
    mlmx_data *d = read_csv_ok("g,h\n\" a \",\"x,y\"\na,\"say \"\"hi\"\"\"\n\" NA \",\"\"\n");
    const mlmx_column *g = col(d, "g");
    cr_assert_eq(g->type, MLMX_COL_FACTOR);
    cr_assert_eq(g->nlevels, 1);
    cr_assert_str_eq(g->levels[0], "a");
    cr_assert_eq(g->codes[0], 0);
    cr_assert_eq(g->codes[1], 0);
    cr_assert_eq(g->codes[2], -1);
    const mlmx_column *h = col(d, "h");
    cr_assert_eq(h->nlevels, 2);
    cr_assert_str_eq(h->levels[0], "say \"hi\"");
    cr_assert_str_eq(h->levels[1], "x,y");
    cr_assert_eq(h->codes[2], -1);
    mlmx_data_free(d);
}

Test(csv, inf_in_factor_column_is_a_label)
{
    mlmx_data *d = read_csv_ok("g\nInf\nabc\nNaN\n");
    const mlmx_column *g = col(d, "g");
    cr_assert_eq(g->type, MLMX_COL_FACTOR);
    cr_assert_eq(g->nlevels, 3);
    cr_assert_str_eq(g->levels[0], "Inf");
    cr_assert_str_eq(g->levels[1], "NaN");
    cr_assert_str_eq(g->levels[2], "abc");
    mlmx_data_free(d);
}

/* ---- CSV: layout ------------------------------------------------------------ */

Test(csv, crlf_bom_blank_lines_no_final_newline)
{
    mlmx_data *d = read_csv_ok("\xEF\xBB\xBF"
                               " a , b\r\n1,x\r\n\r\n   \r\n2,\"multi\r\nline\"\r\n3,z");
    cr_assert_eq(mlmx_data_nrow(d), 3);
    cr_assert_str_eq(mlmx_data_column_name(d, 0), "a");
    cr_assert_str_eq(mlmx_data_column_name(d, 1), "b");
    const mlmx_column *b = col(d, "b");
    cr_assert_eq(b->nlevels, 3);
    cr_assert_str_eq(b->levels[0], "multi\r\nline");
    cr_assert_eq(col(d, "a")->num[2], 3.0);
    mlmx_data_free(d);
}

Test(csv, trailing_empty_lines)
{
    mlmx_data *d = read_csv_ok("a\n1\n2\n\n\n");
    cr_assert_eq(mlmx_data_nrow(d), 2);
    mlmx_data_free(d);
}

Test(csv, lone_cr_line_ends)
{
    mlmx_data *d = read_csv_ok("a,b\r1,2\r3,4\r");
    cr_assert_eq(mlmx_data_nrow(d), 2);
    cr_assert_eq(col(d, "b")->num[1], 4.0);
    mlmx_data_free(d);
}

Test(csv, long_fields_and_many_rows)
{
    /* Crosses the reader's block boundary with a long quoted field. */
    size_t n = 600000;
    char *buf = malloc(n + 64);
    cr_assert_not_null(buf);
    size_t k = (size_t)sprintf(buf, "id,txt\n1,\"");
    memset(buf + k, 'q', n);
    k += n;
    k += (size_t)sprintf(buf + k, "\"\n2,short\n");
    const char *p = write_bytes("long.csv", buf, k);
    free(buf);
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_read_csv(p, &d), MLMX_OK, "%s", mlmx_last_error());
    const mlmx_column *t = col(d, "txt");
    cr_assert_eq(t->nlevels, 2);
    cr_assert_eq(strlen(t->levels[0]), n);
    mlmx_data_free(d);
}

/* ---- CSV: errors -------------------------------------------------------------- */

Test(csv, missing_file)
{
    mlmx_data *d = sentinel();
    const char *p = tmp_path("nope.csv");
    cr_assert_eq(mlmx_data_read_csv(p, &d), MLMX_ERR_IO);
    cr_assert_null(d);
    const char *msg = mlmx_last_error();
    assert_has(msg, "cannot open '");
    assert_has(msg, "nope.csv");
    assert_has(msg, strerror(ENOENT));
}

Test(csv, directory_is_io_error)
{
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_read_csv(tmpdir, &d), MLMX_ERR_IO);
    assert_has(mlmx_last_error(), strerror(EISDIR));
}

Test(csv, empty_files)
{
    const char *msg = read_csv_fail("", MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv: file is empty");
    msg = read_csv_fail(" \n\t\r\n\n", MLMX_ERR_PARSE);
    assert_has(msg, "file is empty");
    msg = read_csv_fail("\xEF\xBB\xBF", MLMX_ERR_PARSE);
    assert_has(msg, "file is empty");
}

Test(csv, header_without_rows)
{
    const char *msg = read_csv_fail("a,b\n", MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv: no data rows after the header");
    read_csv_fail("a,b", MLMX_ERR_PARSE);
    read_csv_fail("a,b\r\n\r\n   \n", MLMX_ERR_PARSE);
}

Test(csv, ragged_rows)
{
    const char *msg = read_csv_fail("a,b,c\n1,2,3\n4,5\n", MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv:3: row has 2 fields, header has 3");
    msg = read_csv_fail("a,b\n1,2\n\n3,4,5\n", MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv:4: row has 3 fields, header has 2");
    /* Physical lines: the embedded newline counts. */
    msg = read_csv_fail("a,b\r\n1,\"x\r\ny\"\r\n7\r\n", MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv:4: row has 1 field, header has 2");
    /* A row that begins after a multi-line field is named by its first line. */
    msg = read_csv_fail("a,b\n\"p\nq\",1\n2,\"r\ns\",3\n", MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv:4: row has 3 fields, header has 2");
}

Test(csv, malformed_quotes)
{
    const char *msg = read_csv_fail("a,b\n1,2\n3,x\"y\n", MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv:3: malformed quoting");
    msg = read_csv_fail("a,b\n1,\"x\"y\n", MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv:2: malformed quoting");
    msg = read_csv_fail("a,b\n1,2\n3,\"open\nand on\n", MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv:3: quoted field is never closed");
}

/* The delimiter is read off the header line: comma, semicolon or tab,
 * whichever occurs most often outside quotes (ties to the comma). */
Test(csv, semicolon_and_tab_delimiters)
{
    mlmx_data *d = read_csv_ok("a;b;g\n1;2.5;x\n3;4;y\n");
    cr_assert_eq(mlmx_data_ncol(d), 3);
    cr_assert_eq(col(d, "a")->type, MLMX_COL_NUMERIC);
    cr_assert_eq(col(d, "b")->num[0], 2.5);
    cr_assert_eq(col(d, "g")->type, MLMX_COL_FACTOR);
    mlmx_data_free(d);

    d = read_csv_ok("\xEF\xBB\xBF\n  \na\tb\tlabel\r\n1\t\t\"p q\"\r\n2\t7\tr\r\n");
    cr_assert_eq(mlmx_data_ncol(d), 3);
    cr_assert_eq(mlmx_data_nrow(d), 2);
    cr_assert(isnan(col(d, "b")->num[0]));
    cr_assert_eq(col(d, "b")->num[1], 7.0);
    cr_assert_str_eq(col(d, "label")->levels[0], "p q");
    mlmx_data_free(d);

    /* a comma inside a value of a semicolon file is just text */
    d = read_csv_ok("g;v\nA,B;1\nC;2\n");
    cr_assert_str_eq(col(d, "g")->levels[0], "A,B");
    mlmx_data_free(d);

    /* delimiters inside quoted names do not count; ties go to the comma */
    d = read_csv_ok("\"x;y\",b\n1,2\n");
    cr_assert_not_null(col(d, "x;y"));
    mlmx_data_free(d);
    d = read_csv_ok("a;b,c\n1,2\n");
    cr_assert_not_null(col(d, "a;b"));
    mlmx_data_free(d);

    /* messages about rows name the delimiter that was found */
    const char *msg = read_csv_fail("a;b\n1;2;3\n", MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv:2: row has 3 fields, header has 2 (fields separated by ';', "
                    "as found in the header line)");
    msg = read_csv_fail("a\tb\n1,2\n", MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv:2: row has 1 field, header has 2 (fields separated by tabs");
    msg = read_csv_fail("a;b\n1;x\"y\n", MLMX_ERR_PARSE);
    assert_has(msg, "malformed quoting");
    assert_has(msg, "fields separated by ';'");
}

/* Decimal commas (a semicolon file from a German Excel) would turn a
 * numeric column into a factor of number-like labels: an error instead. */
Test(csv, decimal_commas_are_refused)
{
    const char *msg = read_csv_fail("g;y\na;2\nb;1,5\nc;NA\n", MLMX_ERR_DATA);
    assert_has(msg, "bad.csv:3: column 'y' (column 2): '1,5' has a decimal comma");
    msg = read_csv_fail("y\tx\n-0,25\t1\n", MLMX_ERR_DATA);
    assert_has(msg, "column 'y' (column 1): '-0,25' has a decimal comma");
    /* labels that merely contain a comma stay a factor */
    mlmx_data *d = read_csv_ok("g;y\n1,5;2\nx;3\n");
    cr_assert_eq(col(d, "g")->type, MLMX_COL_FACTOR);
    cr_assert_eq(col(d, "g")->nlevels, 2);
    mlmx_data_free(d);
}

/* A lone '.' is missing, as Stata and SAS write it, like NA and empty. */
Test(csv, stata_dot_is_missing)
{
    mlmx_data *d = read_csv_ok("x,g,z\n1,a,.5\n.,b,-.5\n\" . \",.,1.\n2.5,c,2\n");
    const mlmx_column *x = col(d, "x");
    cr_assert_eq(x->type, MLMX_COL_NUMERIC);
    cr_assert_eq(x->num[0], 1.0);
    cr_assert(isnan(x->num[1]) && isnan(x->num[2]));
    cr_assert_eq(x->num[3], 2.5);
    const mlmx_column *g = col(d, "g");
    cr_assert_eq(g->type, MLMX_COL_FACTOR);
    cr_assert_eq(g->nlevels, 3);
    cr_assert_eq(g->codes[2], -1);
    const mlmx_column *z = col(d, "z");
    cr_assert_eq(z->type, MLMX_COL_NUMERIC);
    cr_assert_eq(z->num[0], 0.5);
    cr_assert_eq(z->num[1], -0.5);
    cr_assert_eq(z->num[2], 1.0);
    mlmx_data_free(d);
}

Test(csv, bad_column_names)
{
    const char *msg = read_csv_fail("a,,c\n1,2,3\n", MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv:1: column 2 has an empty name");
    msg = read_csv_fail("a,\"  \"\n1,2\n", MLMX_ERR_PARSE);
    assert_has(msg, "column 2 has an empty name");
    msg = read_csv_fail("\n\nx,y, x ,y\n1,2,3,4\n", MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv:3: duplicate column name 'x' (columns 1 and 3)");
    msg = read_csv_fail("b,a,c,a,b\n1,2,3,4,5\n", MLMX_ERR_PARSE);
    assert_has(msg, "duplicate column name 'a' (columns 2 and 4)");
    /* Names are echoed in one-line messages: control characters are refused. */
    msg = read_csv_fail("a,\"b\nc\"\n1,2\n", MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv:1: column 2 name contains the control character 0x0A");
}

Test(csv, non_finite_values)
{
    const char *msg = read_csv_fail("x,y\n1,2\n3,Inf\n", MLMX_ERR_DATA);
    assert_has(msg, "bad.csv:3: column 'y' (column 2): non-finite value 'Inf' is not allowed; "
                    "use NA or an empty field for missing values");
    const char *bad[] = {"NaN", "nan", "-Inf", "inf", "INFINITY", " -iNf "};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[64];
        snprintf(text, sizeof text, "v\n1\n\"%s\"\n2\n", bad[i]);
        msg = read_csv_fail(text, MLMX_ERR_DATA);
        assert_has(msg, "bad.csv:3: column 'v' (column 1): non-finite value");
    }
    msg = read_csv_fail("v\n1\n1e999\n", MLMX_ERR_DATA);
    assert_has(msg, "bad.csv:3: column 'v' (column 1): value '1e999' is too large");
    /* The earliest offending line is reported, whichever column. */
    msg = read_csv_fail("a,b\n1,2\n3,NaN\nInf,4\n", MLMX_ERR_DATA);
    assert_has(msg, "bad.csv:3: column 'b'");
    /* Line numbers count newlines inside earlier quoted fields. */
    msg = read_csv_fail("g,v\n\"a\nb\",1\nc,nan\n", MLMX_ERR_DATA);
    assert_has(msg, "bad.csv:4: column 'v'");
}

Test(csv, nul_bytes)
{
    const char *msg = read_csv_fail_n("a,b\n1,x\0y\n", 10, MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv:2: column 'b' (column 2): field contains a NUL byte");
    /* UTF-16 text is full of NUL bytes. */
    msg = read_csv_fail_n("a\0,\0b\0\n\0", 8, MLMX_ERR_PARSE);
    assert_has(msg, "bad.csv:1: column 1 name contains a NUL byte");
}

/* ---- HDF5 ----------------------------------------------------------------- */

static void h5_write_doubles(hid_t loc, const char *name, const double *x, hsize_t n)
{
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(loc, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(ds, 0);
    cr_assert_geq(H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), 0);
    H5Dclose(ds);
    H5Sclose(sp);
}

static void h5_write_ints(hid_t loc, const char *name, const int *x, hsize_t n)
{
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(loc, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(ds, 0);
    cr_assert_geq(H5Dwrite(ds, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), 0);
    H5Dclose(ds);
    H5Sclose(sp);
}

static void h5_write_vlen_strings(hid_t loc, const char *name, const char **x, hsize_t n)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(ds, 0);
    cr_assert_geq(H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Tclose(t);
}

/* Fixed-length strings, padded the way numpy's "S" dtype (NULLPAD) or
 * Fortran (SPACEPAD) would write them. */
static void h5_write_fixed_strings(hid_t loc, const char *name, const char *bytes, size_t width,
                                   hsize_t n, H5T_str_t pad)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, width);
    H5Tset_strpad(t, pad);
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(ds, 0);
    cr_assert_geq(H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes), 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Tclose(t);
}

static hid_t h5_create(const char *path, int track_order)
{
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (track_order)
        H5Pset_link_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    cr_assert_geq(f, 0);
    return f;
}

static const char *h5_table(const char *name, int track_order)
{
    const char *p = tmp_path(name);
    hid_t f = h5_create(p, track_order);
    double y[4] = {1.5, NAN, -3.0, 4.25};
    int count[4] = {1, 2, 3, -4};
    const char *g[4] = {"b", "", "a", "b"};
    h5_write_doubles(f, "y", y, 4);
    h5_write_ints(f, "count", count, 4);
    h5_write_vlen_strings(f, "g", g, 4);
    h5_write_fixed_strings(f, "h", "xx\0\0yyyy\0\0\0\0xx\0\0", 4, 4, H5T_STR_NULLPAD);
    h5_write_fixed_strings(f, "sp", "ab  c   ab      ", 4, 4, H5T_STR_SPACEPAD);
    H5Fclose(f);
    return p;
}

static void check_table(const mlmx_data *d)
{
    cr_assert_eq(mlmx_data_nrow(d), 4);
    cr_assert_eq(mlmx_data_ncol(d), 5);
    const mlmx_column *y = col(d, "y");
    cr_assert_eq(y->type, MLMX_COL_NUMERIC);
    cr_assert_eq(y->num[0], 1.5);
    cr_assert(isnan(y->num[1]));
    cr_assert_eq(y->num[3], 4.25);
    const mlmx_column *count = col(d, "count");
    cr_assert_eq(count->type, MLMX_COL_NUMERIC);
    cr_assert_eq(count->num[3], -4.0);
    const mlmx_column *g = col(d, "g");
    cr_assert_eq(g->type, MLMX_COL_FACTOR);
    cr_assert_eq(g->nlevels, 2);
    cr_assert_str_eq(g->levels[0], "a");
    cr_assert_eq(g->codes[0], 1);
    cr_assert_eq(g->codes[1], -1);
    cr_assert_eq(g->codes[2], 0);
    const mlmx_column *h = col(d, "h");
    cr_assert_eq(h->nlevels, 2);
    cr_assert_str_eq(h->levels[0], "xx");
    cr_assert_str_eq(h->levels[1], "yyyy");
    cr_assert_eq(h->codes[2], -1);
    const mlmx_column *sp = col(d, "sp");
    cr_assert_eq(sp->nlevels, 2);
    cr_assert_str_eq(sp->levels[0], "ab");
    cr_assert_str_eq(sp->levels[1], "c");
    cr_assert_eq(sp->codes[2], 0);
    cr_assert_eq(sp->codes[3], -1);
}

Test(hdf5, creation_order)
{
    mlmx_data *d = NULL;
    const char *p = h5_table("t.h5", 1);
    cr_assert_eq(mlmx_data_read_hdf5(p, NULL, &d), MLMX_OK, "%s", mlmx_last_error());
    check_table(d);
    const char *want[] = {"y", "count", "g", "h", "sp"};
    for (int j = 0; j < 5; j++)
        cr_assert_str_eq(mlmx_data_column_name(d, j), want[j]);
    cr_assert_str_eq(d->source, p);
    mlmx_data_free(d);
}

Test(hdf5, name_order_without_tracking)
{
    mlmx_data *d = NULL;
    const char *p = h5_table("t.h5", 0);
    cr_assert_eq(mlmx_data_read_hdf5(p, "", &d), MLMX_OK, "%s", mlmx_last_error());
    check_table(d);
    const char *want[] = {"count", "g", "h", "sp", "y"};
    for (int j = 0; j < 5; j++)
        cr_assert_str_eq(mlmx_data_column_name(d, j), want[j]);
    mlmx_data_free(d);
}

Test(hdf5, subgroup_and_skipped_members)
{
    const char *p = tmp_path("g.h5");
    hid_t f = h5_create(p, 0);
    hid_t t = H5Gcreate2(f, "tables", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(t, "sleep", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    double x[2] = {1, 2};
    h5_write_doubles(g, "x", x, 2);
    hid_t meta = H5Gcreate2(g, "meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    h5_write_doubles(meta, "ignored", x, 2);
    H5Gclose(meta);
    H5Gclose(g);
    H5Gclose(t);
    H5Fclose(f);

    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_read_hdf5(p, "/tables/sleep", &d), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_data_ncol(d), 1);
    cr_assert_eq(mlmx_data_nrow(d), 2);
    mlmx_data_free(d);
    cr_assert_eq(mlmx_data_read_hdf5(p, "tables/sleep/", &d), MLMX_OK, "%s", mlmx_last_error());
    mlmx_data_free(d);

    /* The root holds only a group: no columns. */
    cr_assert_eq(mlmx_data_read_hdf5(p, "/", &d), MLMX_ERR_PARSE);
    assert_has(mlmx_last_error(), "g.h5: group '/' holds no datasets");
    cr_assert_eq(mlmx_data_read_hdf5(p, "/nope", &d), MLMX_ERR_PARSE);
    assert_has(mlmx_last_error(), "g.h5: no group '/nope'");
    cr_assert_null(d);
    cr_assert_eq(mlmx_data_read_hdf5(p, "/tables/sleep/x", &d), MLMX_ERR_PARSE);
    assert_has(mlmx_last_error(), "no group '/tables/sleep/x'");
}

Test(hdf5, file_errors)
{
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_read_hdf5(tmp_path("missing.h5"), NULL, &d), MLMX_ERR_IO);
    assert_has(mlmx_last_error(), "cannot open '");
    assert_has(mlmx_last_error(), "missing.h5");
    assert_has(mlmx_last_error(), strerror(ENOENT));
    const char *p = write_text("fake.h5", "a,b\n1,2\n");
    cr_assert_eq(mlmx_data_read_hdf5(p, NULL, &d), MLMX_ERR_PARSE);
    assert_has(mlmx_last_error(), "fake.h5: not an HDF5 file");
    cr_assert_eq(mlmx_data_read_hdf5(tmpdir, NULL, &d), MLMX_ERR_IO);
    cr_assert_null(d);
}

Test(hdf5, layout_errors)
{
    mlmx_data *d = NULL;
    double x[6] = {1, 2, 3, 4, 5, 6};

    const char *p = tmp_path("len.h5");
    hid_t f = h5_create(p, 1);
    h5_write_doubles(f, "a", x, 3);
    h5_write_doubles(f, "b", x, 4);
    H5Fclose(f);
    cr_assert_eq(mlmx_data_read_hdf5(p, NULL, &d), MLMX_ERR_PARSE);
    assert_has(mlmx_last_error(), "len.h5: dataset '/b' has 4 rows but '/a' has 3");
    cr_assert_null(d);

    p = tmp_path("rank.h5");
    f = h5_create(p, 1);
    hsize_t dims[2] = {2, 3};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t ds = H5Dcreate2(f, "m", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
    cr_assert_eq(mlmx_data_read_hdf5(p, NULL, &d), MLMX_ERR_PARSE);
    assert_has(mlmx_last_error(), "rank.h5: dataset '/m' is not 1-D (rank 2)");

    p = tmp_path("scalar.h5");
    f = h5_create(p, 1);
    sp = H5Screate(H5S_SCALAR);
    ds = H5Dcreate2(f, "s", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
    cr_assert_eq(mlmx_data_read_hdf5(p, NULL, &d), MLMX_ERR_PARSE);
    assert_has(mlmx_last_error(), "dataset '/s' is not 1-D (rank 0)");

    p = tmp_path("type.h5");
    f = h5_create(p, 1);
    hid_t ct = H5Tcreate(H5T_COMPOUND, 16);
    H5Tinsert(ct, "re", 0, H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "im", 8, H5T_NATIVE_DOUBLE);
    hsize_t n = 3;
    sp = H5Screate_simple(1, &n, NULL);
    ds = H5Dcreate2(f, "z", ct, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, ct, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Tclose(ct);
    H5Fclose(f);
    cr_assert_eq(mlmx_data_read_hdf5(p, NULL, &d), MLMX_ERR_PARSE);
    assert_has(mlmx_last_error(), "type.h5: dataset '/z' has an unsupported type (compound)");

    p = tmp_path("inf.h5");
    f = h5_create(p, 1);
    double y[3] = {1, NAN, -INFINITY};
    h5_write_doubles(f, "ok", x, 3);
    h5_write_doubles(f, "y", y, 3);
    H5Fclose(f);
    cr_assert_eq(mlmx_data_read_hdf5(p, NULL, &d), MLMX_ERR_DATA);
    assert_has(mlmx_last_error(), "inf.h5: dataset '/y' element 2 (0-based) is -Inf");
    cr_assert_null(d);

    p = tmp_path("ctrl.h5");
    f = h5_create(p, 1);
    h5_write_doubles(f, "a\nb", x, 3);
    H5Fclose(f);
    cr_assert_eq(mlmx_data_read_hdf5(p, NULL, &d), MLMX_ERR_PARSE);
    assert_has(mlmx_last_error(), "ctrl.h5: the name of link 0 in group '/' contains the control "
                                  "character 0x0A");

    p = tmp_path("zero.h5");
    f = h5_create(p, 1);
    h5_write_doubles(f, "a", x, 0);
    H5Fclose(f);
    cr_assert_eq(mlmx_data_read_hdf5(p, NULL, &d), MLMX_ERR_PARSE);
    assert_has(mlmx_last_error(), "zero.h5: the datasets in group '/' have no rows");
}

Test(hdf5, host_error_printing_is_restored)
{
    H5E_auto2_t fn = NULL;
    void *data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &fn, &data);
    mlmx_data *d = NULL;
    const char *p = write_text("fake.h5", "not hdf5");
    cr_assert_eq(mlmx_data_read_hdf5(p, NULL, &d), MLMX_ERR_PARSE);
    H5E_auto2_t fn2 = NULL;
    void *data2 = NULL;
    H5Eget_auto2(H5E_DEFAULT, &fn2, &data2);
    cr_assert(fn2 == fn && data2 == data);
}

/* ---- public API --------------------------------------------------------------- */

Test(data_api, null_arguments)
{
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_read_csv(NULL, &d), MLMX_ERR_ARG);
    cr_assert_neq(mlmx_last_error()[0], '\0');
    cr_assert_eq(mlmx_data_read_csv("x.csv", NULL), MLMX_ERR_ARG);
    cr_assert_eq(mlmx_data_read_hdf5(NULL, NULL, &d), MLMX_ERR_ARG);
    cr_assert_eq(mlmx_data_read_hdf5("x.h5", NULL, NULL), MLMX_ERR_ARG);
    cr_assert_eq(mlmx_data_create(3, NULL), MLMX_ERR_ARG);
    double x[1] = {1};
    const char *s[1] = {"a"};
    cr_assert_eq(mlmx_data_add_numeric(NULL, "x", x, NULL), MLMX_ERR_ARG);
    cr_assert_eq(mlmx_data_add_strings(NULL, "x", s), MLMX_ERR_ARG);
    cr_assert_eq(mlmx_data_create(1, &d), MLMX_OK);
    cr_assert_eq(mlmx_data_add_numeric(d, NULL, x, NULL), MLMX_ERR_ARG);
    cr_assert_eq(mlmx_data_add_numeric(d, "", x, NULL), MLMX_ERR_ARG);
    cr_assert_eq(mlmx_data_add_numeric(d, "x", NULL, NULL), MLMX_ERR_ARG);
    cr_assert_eq(mlmx_data_add_strings(d, NULL, s), MLMX_ERR_ARG);
    cr_assert_eq(mlmx_data_add_strings(d, "s", NULL), MLMX_ERR_ARG);
    assert_has(mlmx_last_error(), "'s'");
    cr_assert_eq(mlmx_data_ncol(d), 0);
    mlmx_data_free(d);

    cr_assert_eq(mlmx_data_nrow(NULL), 0);
    cr_assert_eq(mlmx_data_ncol(NULL), 0);
    cr_assert_null(mlmx_data_column_name(NULL, 0));
    cr_assert_eq(mlmx_data_column_is_factor(NULL, 0), -1);
    cr_assert_eq(mlmx_data_column_nlevels(NULL, 0), 0);
    mlmx_data_free(NULL);
}

Test(data_api, build_from_arrays)
{
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_create(4, &d), MLMX_OK);
    cr_assert_str_eq(mlmx_last_error(), "");
    double x[4] = {1, NAN, 3, 4};
    unsigned char miss[4] = {0, 1, 0, 0};
    const char *g[4] = {"z", NULL, "a", "z"};
    cr_assert_eq(mlmx_data_add_numeric(d, "x", x, miss), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_data_add_strings(d, "g", g), MLMX_OK, "%s", mlmx_last_error());
    cr_assert_eq(mlmx_data_nrow(d), 4);
    cr_assert_eq(mlmx_data_ncol(d), 2);
    cr_assert_str_eq(mlmx_data_column_name(d, 1), "g");
    cr_assert_null(mlmx_data_column_name(d, 2));
    cr_assert_null(mlmx_data_column_name(d, -1));
    cr_assert_eq(mlmx_data_column_is_factor(d, 0), 0);
    cr_assert_eq(mlmx_data_column_is_factor(d, 1), 1);
    cr_assert_eq(mlmx_data_column_is_factor(d, 2), -1);
    cr_assert_eq(mlmx_data_column_nlevels(d, 0), 0);
    cr_assert_eq(mlmx_data_column_nlevels(d, 1), 2);
    cr_assert_eq(mlmx_data_column_nlevels(d, 7), 0);
    cr_assert(isnan(d->cols[0].num[1]));
    cr_assert_eq(d->cols[0].num[2], 3.0);
    cr_assert_eq(d->cols[1].codes[0], 1);
    cr_assert_eq(d->cols[1].codes[1], -1);
    cr_assert_str_eq(d->source, "");

    /* Input arrays are copied. */
    x[0] = 99;
    cr_assert_eq(d->cols[0].num[0], 1.0);

    /* Unflagged NaN/Inf, and reused names, are refused without side effects. */
    cr_assert_eq(mlmx_data_add_numeric(d, "y", x, NULL), MLMX_ERR_DATA);
    assert_has(mlmx_last_error(), "column 'y': x[1] is NaN");
    double inf[4] = {1, 2, 3, INFINITY};
    cr_assert_eq(mlmx_data_add_numeric(d, "y", inf, NULL), MLMX_ERR_DATA);
    assert_has(mlmx_last_error(), "x[3] is Inf");
    inf[3] = 0;
    cr_assert_eq(mlmx_data_add_numeric(d, "g", inf, NULL), MLMX_ERR_ARG);
    assert_has(mlmx_last_error(), "'g' is already used");
    cr_assert_eq(mlmx_data_add_strings(d, "x", g), MLMX_ERR_ARG);
    cr_assert_eq(mlmx_data_add_numeric(d, "a\tb", inf, NULL), MLMX_ERR_ARG);
    assert_has(mlmx_last_error(), "control character 0x09");
    cr_assert_eq(mlmx_data_ncol(d), 2);
    cr_assert_eq(mlmx_frame_find(d, "x"), 0);
    cr_assert_eq(mlmx_frame_find(d, "nope"), -1);
    mlmx_data_free(d);
}

Test(data_api, many_columns_and_levels)
{
    enum { N = 5000 };
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_create(N, &d), MLMX_OK);
    static char buf[N][8];
    static const char *s[N];
    for (int i = 0; i < N; i++) {
        snprintf(buf[i], sizeof buf[i], "L%04d", (i * 7919) % N);
        s[i] = buf[i];
    }
    cr_assert_eq(mlmx_data_add_strings(d, "f", s), MLMX_OK);
    cr_assert_eq(mlmx_data_column_nlevels(d, 0), N);
    for (int k = 1; k < N; k++)
        cr_assert_lt(strcmp(d->cols[0].levels[k - 1], d->cols[0].levels[k]), 0);
    for (int i = 0; i < N; i++)
        cr_assert_str_eq(d->cols[0].levels[d->cols[0].codes[i]], s[i]);
    double x[N] = {0};
    for (int j = 0; j < 40; j++) {
        char name[16];
        snprintf(name, sizeof name, "c%d", j);
        cr_assert_eq(mlmx_data_add_numeric(d, name, x, NULL), MLMX_OK);
    }
    cr_assert_eq(mlmx_data_ncol(d), 41);
    cr_assert_eq(mlmx_frame_find(d, "c39"), 40);
    mlmx_data_free(d);
}

Test(data_api, zero_rows)
{
    mlmx_data *d = NULL;
    cr_assert_eq(mlmx_data_create(0, &d), MLMX_OK);
    cr_assert_eq(mlmx_data_add_numeric(d, "x", NULL, NULL), MLMX_OK);
    cr_assert_eq(mlmx_data_add_strings(d, "g", NULL), MLMX_OK);
    cr_assert_eq(mlmx_data_column_nlevels(d, 1), 0);
    mlmx_data_free(d);
}
