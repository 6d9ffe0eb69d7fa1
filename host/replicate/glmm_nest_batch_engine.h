/* Inspection of the glmm-nest batch engine (host/replicate/glmm_nest_batch.c)
 * for its tests and benchmarks; the engine itself is reached through
 * mlmx_gn_engine_init (replicate/batch.h). */
#ifndef MLMX_GLMM_NEST_BATCH_ENGINE_H
#define MLMX_GLMM_NEST_BATCH_ENGINE_H
#include "glmm_nest_batch.h"
#include "replicate/batch.h"

/* The shared structure of an engine filled by mlmx_gn_engine_init (owned by
 * the engine, valid until E->free); NULL for any other engine. */
const mlmx_gn_shared *mlmx_gn_engine_shared(const mlmx_batch_engine *E);

#endif
