#define _POSIX_C_SOURCE 200809L
/* Parsing the residual-structure specifications:
 *   name(arg, arg, ...)   name: ar1 corAR1 car1 corCAR1 cs corCompSymm arma corARMA
 *                               ident varIdent power varPower
 *   arg: ~ t | g   ~ 1 | g   ~ t   form = ~ ...   p = N   q = N   N (arma's p, then q)
 * Every error names the position (1-based character) in the text. */
#include "resid/resid_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    int corr; /* mlmx_corr_kind, or -1 */
    int var;  /* mlmx_var_kind, or -1 */
} names[] = {
    {"ar1", MLMX_CORR_AR1, -1},   {"corAR1", MLMX_CORR_AR1, -1},
    {"car1", MLMX_CORR_CAR1, -1}, {"corCAR1", MLMX_CORR_CAR1, -1},
    {"cs", MLMX_CORR_CS, -1},     {"corCompSymm", MLMX_CORR_CS, -1},
    {"arma", MLMX_CORR_ARMA, -1}, {"corARMA", MLMX_CORR_ARMA, -1},
    {"ident", -1, MLMX_VAR_IDENT}, {"varIdent", -1, MLMX_VAR_IDENT},
    {"power", -1, MLMX_VAR_POWER}, {"varPower", -1, MLMX_VAR_POWER},
};

static char *dup_range(const char *a, const char *b)
{
    while (a < b && isspace((unsigned char)*a))
        a++;
    while (b > a && isspace((unsigned char)b[-1]))
        b--;
    size_t len = (size_t)(b - a);
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, a, len);
        s[len] = '\0';
    }
    return s;
}

static int is_ident_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '.'; }

/* "~ t | g": the time (NULL for 1) and the grouping (NULL when absent). */
static mlmx_status parse_form(const char *what, const char *text, const char *a, const char *b,
                              mlmx_resid_spec *sp, mlmx_error *err)
{
    const char *t = a;
    while (t < b && isspace((unsigned char)*t))
        t++;
    if (sp->has_form)
        return mlmx_err_set(err, MLMX_ERR_FORMULA,
                            "%s '%s': a second formula at position %d (give one)", what, text,
                            (int)(t - text) + 1);
    sp->has_form = 1;
    if (t >= b || *t != '~')
        return mlmx_err_set(err, MLMX_ERR_FORMULA,
                            "%s '%s': expected a formula such as '~ time | group' at position %d",
                            what, text, (int)(t - text) + 1);
    t++;
    const char *bar = memchr(t, '|', (size_t)(b - t));
    const char *lhs_end = bar ? bar : b;
    char *lhs = dup_range(t, lhs_end);
    if (!lhs)
        return MLMX_ERR_NOMEM;
    if (lhs[0] == '\0') {
        free(lhs);
        return mlmx_err_set(err, MLMX_ERR_FORMULA,
                            "%s '%s': the formula has nothing after '~' at position %d (write '~ 1 "
                            "| group' or '~ time | group')",
                            what, text, (int)(t - text) + 1);
    }
    for (const char *c = lhs; *c; c++)
        if (!is_ident_char(*c)) {
            int pos = (int)(t - text) + 1 + (int)(c - lhs);
            free(lhs);
            return mlmx_err_set(err, MLMX_ERR_FORMULA,
                                "%s '%s': the time or covariate must be one variable name "
                                "(position %d)",
                                what, text, pos);
        }
    if (strcmp(lhs, "1") == 0) {
        free(lhs);
        lhs = NULL;
    }
    sp->time = lhs;
    if (bar) {
        sp->group = dup_range(bar + 1, b);
        if (!sp->group)
            return MLMX_ERR_NOMEM;
        if (sp->group[0] == '\0')
            return mlmx_err_set(err, MLMX_ERR_FORMULA,
                                "%s '%s': no grouping variable after '|' at position %d", what,
                                text, (int)(bar - text) + 1);
        for (const char *c = sp->group; *c; c++)
            if (!is_ident_char(*c) && *c != '/' && *c != ':' && !isspace((unsigned char)*c))
                return mlmx_err_set(err, MLMX_ERR_FORMULA,
                                    "%s '%s': unexpected '%c' in the grouping (variables joined "
                                    "by '/' or ':')",
                                    what, text, *c);
    }
    return MLMX_OK;
}

static mlmx_status parse_int_arg(const char *what, const char *text, const char *a, int *out,
                                 mlmx_error *err)
{
    char *end;
    long v = strtol(a, &end, 10);
    while (isspace((unsigned char)*end))
        end++;
    if (end == a || (*end != ',' && *end != ')'))
        return mlmx_err_set(err, MLMX_ERR_FORMULA, "%s '%s': expected an integer at position %d",
                            what, text, (int)(a - text) + 1);
    if (v < 0 || v > 1000)
        return mlmx_err_set(err, MLMX_ERR_FORMULA,
                            "%s '%s': order %ld at position %d is out of range", what, text, v,
                            (int)(a - text) + 1);
    *out = (int)v;
    return MLMX_OK;
}

/* One argument a..b (trimmed). npos counts positional integers so far. */
static mlmx_status parse_arg(const char *what, const char *text, const char *a, const char *b,
                             mlmx_resid_spec *sp, int *npos, mlmx_error *err)
{
    while (a < b && isspace((unsigned char)*a))
        a++;
    if (a >= b)
        return mlmx_err_set(err, MLMX_ERR_FORMULA, "%s '%s': empty argument at position %d",
                            what, text, (int)(a - text) + 1);
    if (*a == '~')
        return parse_form(what, text, a, b, sp, err);
    const char *eq = memchr(a, '=', (size_t)(b - a));
    if (eq) {
        char *key = dup_range(a, eq);
        if (!key)
            return MLMX_ERR_NOMEM;
        mlmx_status st;
        if (strcmp(key, "form") == 0)
            st = parse_form(what, text, eq + 1, b, sp, err);
        else if (strcmp(key, "p") == 0 && sp->corr == MLMX_CORR_ARMA)
            st = parse_int_arg(what, text, eq + 1, &sp->p, err);
        else if (strcmp(key, "q") == 0 && sp->corr == MLMX_CORR_ARMA)
            st = parse_int_arg(what, text, eq + 1, &sp->q, err);
        else
            st = mlmx_err_set(err, MLMX_ERR_FORMULA,
                              "%s '%s': unknown argument '%s' at position %d", what, text, key,
                              (int)(a - text) + 1);
        free(key);
        return st;
    }
    if (sp->corr == MLMX_CORR_ARMA && (isdigit((unsigned char)*a) || *a == '-')) {
        if (*npos >= 2)
            return mlmx_err_set(err, MLMX_ERR_FORMULA,
                                "%s '%s': arma takes two orders (p, q); a third at position %d",
                                what, text, (int)(a - text) + 1);
        return parse_int_arg(what, text, a, (*npos)++ == 0 ? &sp->p : &sp->q, err);
    }
    return mlmx_err_set(err, MLMX_ERR_FORMULA,
                        "%s '%s': unexpected argument at position %d (expected a formula such as "
                        "'~ time | group'%s)",
                        what, text, (int)(a - text) + 1,
                        sp->corr == MLMX_CORR_ARMA ? " or the orders p, q" : "");
}

mlmx_status mlmx_resid_parse(const char *what, const char *text, int want_corr,
                             mlmx_resid_spec *sp, mlmx_error *err)
{
    memset(sp, 0, sizeof *sp);
    sp->p = -1;
    sp->q = -1;
    /* messages quote the text: refuse what would break their one line */
    for (const char *c = text; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return mlmx_err_set(err, MLMX_ERR_FORMULA,
                                "%s: control character 0x%02x at position %d of the "
                                "specification",
                                what, (unsigned)(unsigned char)*c, (int)(c - text) + 1);
    if (strlen(text) > 400)
        return mlmx_err_set(err, MLMX_ERR_FORMULA,
                            "%s: the specification is %zu characters long; at most 400", what,
                            strlen(text));
    const char *a = text;
    while (isspace((unsigned char)*a))
        a++;
    const char *nend = a;
    while (is_ident_char(*nend))
        nend++;
    size_t nlen = (size_t)(nend - a);
    int found = 0;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strlen(names[k].name) == nlen && strncmp(names[k].name, a, nlen) == 0) {
            if (want_corr && names[k].corr >= 0) {
                sp->corr = names[k].corr;
                found = 1;
            } else if (!want_corr && names[k].var >= 0) {
                sp->var = names[k].var;
                found = 1;
            }
        }
    if (!found)
        return mlmx_err_set(err, MLMX_ERR_FORMULA,
                            "%s '%s': unknown structure '%.*s' at position %d (%s)", what, text,
                            (int)nlen, a, (int)(a - text) + 1,
                            want_corr ? "one of ar1, car1, cs, arma(p, q), or nlme's corAR1, "
                                        "corCAR1, corCompSymm, corARMA"
                                      : "one of ident, power, or nlme's varIdent, varPower");
    const char *c = nend;
    while (isspace((unsigned char)*c))
        c++;
    if (*c != '(')
        return mlmx_err_set(err, MLMX_ERR_FORMULA, "%s '%s': expected '(' at position %d", what,
                            text, (int)(c - text) + 1);
    const char *close = strrchr(c, ')');
    if (!close)
        return mlmx_err_set(err, MLMX_ERR_FORMULA, "%s '%s': missing ')'", what, text);
    for (const char *t = close + 1; *t; t++)
        if (!isspace((unsigned char)*t))
            return mlmx_err_set(err, MLMX_ERR_FORMULA,
                                "%s '%s': unexpected text after ')' at position %d", what, text,
                                (int)(t - text) + 1);
    int npos = 0;
    const char *arg = c + 1;
    const char *inner = arg;
    while (inner < close && isspace((unsigned char)*inner))
        inner++;
    while (inner < close) {
        const char *comma = memchr(arg, ',', (size_t)(close - arg));
        const char *end = comma ? comma : close;
        mlmx_status st = parse_arg(what, text, arg, end, sp, &npos, err);
        if (st)
            return st;
        if (!comma)
            break;
        arg = comma + 1;
    }
    if (sp->corr == MLMX_CORR_ARMA) {
        if (sp->p < 0)
            sp->p = 0;
        if (sp->q < 0)
            sp->q = 0;
        if (sp->p + sp->q == 0)
            return mlmx_err_set(err, MLMX_ERR_FORMULA,
                                "%s '%s': arma needs p >= 1 or q >= 1, as arma(1, 0)", what, text);
        if (sp->p > MLMX_ARMA_MAX || sp->q > MLMX_ARMA_MAX)
            return mlmx_err_set(err, MLMX_ERR_FORMULA,
                                "%s '%s': arma(%d, %d) is too large: p and q are at most %d", what,
                                text, sp->p, sp->q, MLMX_ARMA_MAX);
    }
    if (sp->var == MLMX_VAR_IDENT && (sp->time || !sp->group))
        return mlmx_err_set(err, MLMX_ERR_FORMULA,
                            "%s '%s': ident needs the strata as '~ 1 | factor'", what, text);
    if (sp->var == MLMX_VAR_POWER && (!sp->time || sp->group))
        return mlmx_err_set(err, MLMX_ERR_FORMULA,
                            "%s '%s': power needs one covariate as '~ variable'", what, text);
    if (sp->corr == MLMX_CORR_CAR1 && !sp->time)
        return mlmx_err_set(err, MLMX_ERR_FORMULA,
                            "%s '%s': car1 needs a continuous time, as car1(~ time | group)", what,
                            text);
    return MLMX_OK;
}

void mlmx_resid_spec_clear(mlmx_resid_spec *sp)
{
    free(sp->time);
    free(sp->group);
    memset(sp, 0, sizeof *sp);
}
