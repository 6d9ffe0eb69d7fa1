/* Inspection of the lmm-crossed batch engine (host/replicate/lmm_dense_batch.c)
 * for its tests and benchmark; the engine itself is reached through
 * mlmx_ld_engine_init (replicate/batch.h). */
#ifndef MLMX_LMM_DENSE_ENGINE_H
#define MLMX_LMM_DENSE_ENGINE_H
#include "lmm_dense_batch.h"
#include "replicate/batch.h"

/* The shared structure of an engine filled by mlmx_ld_engine_init (owned
 * by the engine, valid until E->free); NULL for any other engine. */
const mlmx_ld_model *mlmx_ld_engine_model(const mlmx_batch_engine *E);

/* The device mapping the engine's gpu_rows uses: 0 chooses by size (the
 * default), 1 one replicate per thread, 2 one replicate per warp (for the
 * parity tests, which check both). Ignored for other engines. */
void mlmx_ld_engine_set_mapping(mlmx_batch_engine *E, int mapping);

/* Why an engine for a model of M's dimensions (m, m_re, p, nt, q1,
 * maxrows, ntm are read) would be too large: its replicate scratch at
 * MLMX_LD_BLOCK_LANES lanes over MLMX_LD_SCRATCH_MAX bytes (message in buf,
 * which is returned); NULL when it fits. mlmx_ld_engine_init refuses such
 * models with this message. */
const char *mlmx_ld_size_refusal(const mlmx_ld_model *M, char *buf, size_t len);

#endif
