/* libFuzzer harness for the formula parser (mlmx_formula_parse). Besides
 * crashes, leaks and hangs it aborts when a result breaks the parser's
 * contract: a failure must return no formula and a one-position message
 * of the documented shape; a success must hold well-formed term lists,
 * and every variable must deparse to text that parses back to itself. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formula/formula.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_formula: broken invariant: %s\n", what);
        abort();
    }
}

/* "~ <deparse(v)>" must parse to one term of one variable that deparses
 * the same: deparse output is used as coefficient names and must be R. */
static void check_roundtrip(const mlmx_expr *v)
{
    char *s = mlmx_expr_deparse(v);
    check(s != NULL, "deparse returned NULL");
    size_t n = strlen(s);
    char *text = malloc(n + 3);
    check(text != NULL, "malloc");
    memcpy(text, "~ ", 2);
    memcpy(text + 2, s, n + 1);
    mlmx_formula *g = NULL;
    mlmx_error err = {0};
    mlmx_status st = mlmx_formula_parse(text, &g, &err);
    if (st == MLMX_OK) {
        check(g->fixed.nterms == 1 && g->fixed.terms[0].nvars == 1,
              "deparsed variable is not one term");
        char *s2 = mlmx_expr_deparse(g->fixed.terms[0].vars[0]);
        check(s2 && strcmp(s, s2) == 0, "deparse does not round-trip");
        free(s2);
    } else {
        /* only resource limits may refuse a deparsed variable */
        check(st == MLMX_ERR_NOMEM || strstr(err.msg, "too") != NULL,
              "deparsed variable does not parse");
    }
    mlmx_formula_free(g);
    free(text);
    free(s);
}

static void check_termlist(const mlmx_termlist *t)
{
    check(t->intercept == 0 || t->intercept == 1, "intercept flag");
    check(t->nterms >= 0 && (t->nterms == 0 || t->terms), "term array");
    int prev = 0;
    for (int i = 0; i < t->nterms; i++) {
        const mlmx_term *term = &t->terms[i];
        check(term->nvars >= 1 && term->vars, "empty term");
        check(term->nvars >= prev, "terms not ordered by degree");
        prev = term->nvars;
        for (int j = 0; j < term->nvars; j++) {
            const mlmx_expr *v = term->vars[j];
            check(v && (v->kind == MLMX_EX_SYMBOL || v->kind == MLMX_EX_CALL),
                  "term variable is not a symbol or call");
            check(v->paren == 0, "term variable keeps its parentheses");
            if (i < 8 && j < 2)
                check_roundtrip(v);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    mlmx_formula *f = (mlmx_formula *)&text; /* must be overwritten */
    mlmx_error err = {0};
    mlmx_status st = mlmx_formula_parse(text, &f, &err);
    if (st != MLMX_OK) {
        check(f == NULL, "failure left a formula behind");
        check(err.code == st, "error code not recorded");
        check(st == MLMX_ERR_FORMULA || st == MLMX_ERR_NOMEM, "unexpected status");
        check(strncmp(err.msg, "formula: ", 9) == 0, "message prefix");
        if (st == MLMX_ERR_FORMULA && strstr(err.msg, "too long") == NULL) {
            /* "... at position P:\n  <text>\n  <spaces>^" and nothing after */
            const char *at = strstr(err.msg, " at position ");
            check(at != NULL, "message has no position");
            const char *nl1 = strchr(err.msg, '\n');
            check(nl1 && nl1 > at, "message layout (first line)");
            const char *nl2 = strchr(nl1 + 1, '\n');
            check(nl2 && strchr(nl2 + 1, '\n') == NULL, "message has three lines");
            size_t last = strlen(nl2 + 1);
            check(last >= 3 && nl2[last] == '^', "caret line");
            for (size_t k = 3; k < last; k++)
                check(nl2[k] == ' ', "caret line holds only spaces");
        }
        free(text);
        return 0;
    }

    check(f != NULL && f->text && strcmp(f->text, text) == 0, "formula text");
    check_termlist(&f->fixed);
    check(f->nre >= 0 && (f->nre == 0 || f->re), "random-effect array");
    for (int k = 0; k < f->nre; k++) {
        const mlmx_reterm *r = &f->re[k];
        check_termlist(&r->lhs);
        check(r->lhs.intercept || r->lhs.nterms > 0, "random-effect term without columns");
        check(r->ngroup >= 1 && r->group, "grouping factor");
        check(r->label && r->label[0], "group label");
        check(r->pos >= 0 && (size_t)r->pos < size && text[r->pos] == '(', "term position");
    }
    if (f->response) {
        char *s = mlmx_expr_deparse(f->response);
        check(s != NULL, "deparse of response");
        free(s);
    }
    const char **names = NULL;
    int n = 0;
    if (mlmx_formula_variables(f, &names, &n, &err) == MLMX_OK) {
        for (int i = 0; i < n; i++)
            check(names[i] != NULL, "variable name");
        free(names);
    }
    mlmx_formula_free(f);
    free(text);
    return 0;
}
