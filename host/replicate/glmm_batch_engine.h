/* Inspection of the glmm-1ri batch engine (host/replicate/glmm_batch.c)
 * for its tests and benchmarks; the engine itself is reached through
 * mlmx_gb_engine_init (replicate/batch.h). */
#ifndef MLMX_GLMM_BATCH_ENGINE_H
#define MLMX_GLMM_BATCH_ENGINE_H
#include "glmm_batch.h"
#include "replicate/batch.h"

/* The shared structure of an engine filled by mlmx_gb_engine_init (owned by
 * the engine, valid until E->free); NULL for any other engine. */
const mlmx_gb_shared *mlmx_gb_engine_shared(const mlmx_batch_engine *E);

#endif
