/* Inside host/resid: the parsed form of one specification. */
#ifndef MLMX_RESID_INTERNAL_H
#define MLMX_RESID_INTERNAL_H
#include "resid/resid.h"

typedef struct mlmx_resid_spec {
    mlmx_corr_kind corr;
    mlmx_var_kind var;
    int p, q;    /* arma orders */
    char *time;  /* the formula's left side (NULL: "1" or absent) */
    char *group; /* after '|' (NULL: absent) */
    int has_form; /* a formula was given */
} mlmx_resid_spec;

/* Parse a correlation (want_corr = 1) or variance specification; `what`
 * names the option in messages ("--correlation"). */
mlmx_status mlmx_resid_parse(const char *what, const char *text, int want_corr,
                             mlmx_resid_spec *sp, mlmx_error *err);
void mlmx_resid_spec_clear(mlmx_resid_spec *sp);

#endif
