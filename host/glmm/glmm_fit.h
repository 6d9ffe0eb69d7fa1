/* The GLMM fit behind mlmx_fit_glmm (which validates arguments and records
 * errors). */
#ifndef MLMX_GLMM_FIT_H
#define MLMX_GLMM_FIT_H
#include "model/model.h"
#include "util/error.h"

mlmx_status mlmx_glmm_fit_internal(const mlmx_model *md, const mlmx_fit_options *o,
                                   mlmx_fit **out, mlmx_error *err);
#endif
