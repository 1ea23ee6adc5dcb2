/* How the CUDA backend lays out quantized weights on the device and sizes the launches of its
 * quantized kernels (core/cuda/cuda_quant.{c,cu}): pure arithmetic, built on every
 * configuration so that CPU tests check it (tests/test_quant_gpu_plan.c).
 *
 * One device allocation per weight, each part starting at a multiple of 256 bytes:
 *   int8: codes [rows_pad, cols_pad], zero padded (cols to a multiple of 16, rows to a multiple
 *         of 4: cuBLASLt's int8 tensor-core kernels need 16-byte aligned rows of A and B and a
 *         4-element aligned output row), then scale (SCB) fp32 [rows], then SCB / 127 fp32
 *         [rows] (the epilogue's factor, divided once at upload instead of once per output);
 *   nf4:  codes [ceil(rows * cols / 2)] exactly as in the file, then either absmax fp32
 *         [n_blocks], or qabsmax int8 [n_blocks], nested_absmax fp32 [n_nested] and
 *         nested_absmax / 127 fp32 [n_nested] (the factor every absmax decode multiplies by,
 *         divided once at upload instead of once per decode: the same bits). */
#ifndef QHEAD_QUANT_GPU_PLAN_H
#define QHEAD_QUANT_GPU_PLAN_H

#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t rows_pad, cols_pad; /* int8 (nf4: rows, cols) */
    int64_t n_blocks, n_nested; /* nf4 */
    size_t codes_bytes;
    size_t off_scale, off_qabsmax, off_nested; /* byte offsets; 0 where a part is absent */
    size_t off_scale127;                       /* int8: SCB / 127 */
    size_t off_nested127;                      /* nf4 with double quantization: nested / 127 */
    size_t total;
} qh_quant_dev_layout;

/* Layout of quantized weight w (host view or device copy: shape, dtype and which of
 * w->quant's arrays exist). Returns 0, or -1 when w is not a 2-D quantized weight of a shape
 * the device can hold (nf4: even cols, blocksize >= 2). */
int qh_quant_dev_layout_of(const qh_tensor *w, qh_quant_dev_layout *l);

/* The nf4 product for small token counts (core/cuda/cuda_nf4_small.cu): y = x w^T for up to
 * QH_NF4_SMALL_MAX_WEIGHTS weights with the same input in one launch (q/k/v), or gate and up as
 * a pair whose block computes silu(gate) * up directly. A thread block of 8 warps covers `rows`
 * weight rows (16 or 32 per warp: tensor-core mma on fragments looked up from a code-byte table,
 * the codes read straight into registers) over kr input columns; the `splits` blocks that share
 * a row tile form one thread-block cluster and add their partial sums through distributed shared
 * memory, in split order (no atomics, no second kernel). The input goes through shared memory in
 * chunks of QH_NF4_SMALL_CHUNK steps of 64 columns (half that beyond 32 tokens), two buffers.
 * Shared memory per block: the code byte -> two fp16 levels table (one copy per lane:
 * bank-conflict free), 1024 spare bytes (sm_90a code stages x for warpgroup products in
 * 1024-byte aligned tiles, a little smaller than the buffers below), the x buffers
 * ([token_tiles * 8][qh_nf4_small_xld(token_tiles)] fp16 each), the absmax of each row and step
 * of the block ([rows][QH_NF4_SMALL_AMAX_LD] half2). Two blocks fit on an H100 multiprocessor
 * (84-85 KB each at 32 or 64 tokens, up to 128 registers a thread). Beyond 32 tokens only 128
 * rows per block, each thread has 4 steps of codes in flight instead of 8 (the accumulators take
 * the registers). */
#define QH_NF4_SMALL_MAX_TOKENS 64
#define QH_NF4_SMALL_MAX_WEIGHTS 3
#define QH_NF4_SMALL_KSTEP 64
#define QH_NF4_SMALL_CHUNK 4      /* steps per staged x chunk up to 32 tokens */
#define QH_NF4_SMALL_MAX_STEPS 32 /* steps per block (the absmax tile's width) */
#define QH_NF4_SMALL_AMAX_LD 33   /* half2 per absmax tile row (bank-conflict free) */
#define QH_NF4_SMALL_MAX_SPLITS 8 /* the portable cluster size */
#define QH_NF4_SMALL_LUT_BYTES 32768 /* 256 code bytes x 32 lanes x (two fp16 levels) */

/* Steps per staged x chunk and halves per staged x row for tt token tiles: beyond 32 tokens half
 * the chunk, so that two blocks still fit on a multiprocessor. A row is the chunk plus 8 halves,
 * so that its stride stays 16 bytes past a multiple of 128 (bank-conflict free fragments).
 * Macros, so that the kernel (cuda_nf4_small.cu) takes them as compile-time constants and the
 * plan and the kernel share one rule. */
#define QH_NF4_SMALL_CHUNK_OF(tt) ((tt) <= 4 ? QH_NF4_SMALL_CHUNK : QH_NF4_SMALL_CHUNK / 2)
#define QH_NF4_SMALL_XLD_OF(tt) (QH_NF4_SMALL_CHUNK_OF(tt) * QH_NF4_SMALL_KSTEP + 8)
static inline int qh_nf4_small_chunk(int token_tiles) { return QH_NF4_SMALL_CHUNK_OF(token_tiles); }
static inline int qh_nf4_small_xld(int token_tiles) { return QH_NF4_SMALL_XLD_OF(token_tiles); }

typedef struct {
    int token_tiles; /* ceil(tokens / 8): mma n-tiles, 1 to 8 */
    int rows;        /* weight rows per block: 128 (default) or 256 (a pair: half gate, half up) */
    int splits;      /* blocks along the input columns, 1 to 8: one cluster */
    int kr;          /* input columns per split, a multiple of 64 (the last split may be shorter) */
    int bs_shift;    /* log2(blocksize / 64) */
    int64_t tiles;   /* row tiles over all weights (a pair: of gate rows) */
    size_t smem;     /* dynamic shared memory per block */
} qh_nf4_small_plan;

/* Plan the product of x[t, k] with nw nf4 weights of n[i] rows (paired: gate and up, nw 2,
 * equal rows) of the given blocksize on a GPU with n_sm multiprocessors. By default 128 rows per
 * block and the most splits that keep the blocks within about 1.5 per multiprocessor (at least
 * as many as keep each block within 32 steps, at most 8). rows / splits > 0 force a choice (benchmarks, tests). Returns 1,
 * or 0 where the kernel does not apply (t outside 1..32, k not a multiple of 64, blocksize not
 * 64 times a power of two, k beyond 8 blocks of 32 steps, a forced choice that does not fit): the
 * dequantize-and-cuBLAS path then runs. */
int qh_nf4_small_plan_of(int64_t t, const int64_t *n, int nw, int paired, int64_t k, int blocksize, int n_sm, int rows,
                         int splits, qh_nf4_small_plan *p);

#endif
