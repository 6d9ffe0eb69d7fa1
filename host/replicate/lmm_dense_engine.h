/* Inspection of the lmm-crossed batch engine (host/replicate/lmm_dense_batch.c)
 * for its tests and benchmark; the engine itself is reached through
 * mlmx_ld_engine_init (replicate/batch.h). */
#ifndef MLMX_LMM_DENSE_ENGINE_H
#define MLMX_LMM_DENSE_ENGINE_H
#include "lmm_dense_batch.h"
#include "replicate/batch.h"

/* The largest dense block (columns) whose replicates the engine's CPU rows
 * refit about as fast as workspaces (0.6-1.4x, bench/bench_lmm_dense.c,
 * docs/performance.md); over it the workspaces win (0.4x at 103-153
 * columns, 0.15x at 303, 0.03x at 345 with 5 theta: the dual-number dense
 * Cholesky costs O(m^3 nd), the workspaces' factor less), so the engine
 * sets cpu_slower and the runner's CPU runs use workspaces. */
#define MLMX_LD_CPU_MAX_M 64

/* The shared structure of an engine filled by mlmx_ld_engine_init (owned
 * by the engine, valid until E->free); NULL for any other engine. */
const mlmx_ld_model *mlmx_ld_engine_model(const mlmx_batch_engine *E);

/* The device mapping the engine's gpu_rows uses: 0 chooses by size (the
 * default), 1 one replicate per thread, 2 one replicate per warp, 3 one
 * replicate per block of MLMX_LD_BLOCK_LANES threads (for the parity
 * tests, which check each). Ignored for other engines. */
void mlmx_ld_engine_set_mapping(mlmx_batch_engine *E, int mapping);

/* Why an engine for a model of M's dimensions (m, m_re, p, nt, q1,
 * maxrows, ntm are read) would be too large: its replicate scratch at
 * MLMX_LD_BLOCK_LANES lanes over MLMX_LD_SCRATCH_MAX bytes (message in buf,
 * which is returned); NULL when it fits. mlmx_ld_engine_init refuses such
 * models with this message. */
const char *mlmx_ld_size_refusal(const mlmx_ld_model *M, char *buf, size_t len);

#endif
