/* Inspection and settings of the lmm-nest batch engine
 * (host/replicate/lmm_nest_batch.c) for its tests and benchmarks; the
 * engine itself is reached through mlmx_nb_engine_init (replicate/batch.h). */
#ifndef MLMX_LMM_NEST_ENGINE_H
#define MLMX_LMM_NEST_ENGINE_H
#include "lmm_nest_batch.h"
#include "replicate/batch.h"

/* The mapping chosen by size: a warp per replicate when the top term has
 * at least 32 levels (every lane gets a top cluster), else a thread. */
int mlmx_nb_engine_auto_mapping(const mlmx_nb_model *M);

/* Force the device mapping of an lmm-nest engine E: MLMX_NB_MAP_THREAD,
 * MLMX_NB_MAP_WARP, or MLMX_NB_MAP_AUTO (by size); see
 * kernels/lmm_nest_batch.h. The CPU rows do not depend on it. Allocates
 * nothing. */
void mlmx_nb_engine_set_mapping(mlmx_batch_engine *E, int mapping);

/* The shared structure of an lmm-nest engine (owned by it, valid until
 * E->free); NULL for any other engine. */
const mlmx_nb_model *mlmx_nb_engine_model(const mlmx_batch_engine *E);

#endif
