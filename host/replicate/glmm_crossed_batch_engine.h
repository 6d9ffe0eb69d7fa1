/* Inspection of the glmm-crossed batch engine
 * (host/replicate/glmm_crossed_batch.c) for its tests and benchmarks; the
 * engine itself is reached through mlmx_gc_engine_init (replicate/batch.h). */
#ifndef MLMX_GLMM_CROSSED_BATCH_ENGINE_H
#define MLMX_GLMM_CROSSED_BATCH_ENGINE_H
#include "glmm_crossed_batch.h"
#include "replicate/batch.h"

/* The shared structure of an engine filled by mlmx_gc_engine_init (owned
 * by the engine, valid until E->free); NULL for any other engine. */
const mlmx_gc_shared *mlmx_gc_engine_shared(const mlmx_batch_engine *E);

#endif
