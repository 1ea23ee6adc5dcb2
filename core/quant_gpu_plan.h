/* How the CUDA backend lays out quantized weights on the device and sizes the launches of its
 * quantized kernels (core/cuda/cuda_quant.{c,cu}): pure arithmetic, built on every
 * configuration so that CPU tests check it (tests/test_quant_gpu_plan.c).
 *
 * One device allocation per weight, each part starting at a multiple of 256 bytes:
 *   int8: codes [rows_pad, cols_pad], zero padded (cols to a multiple of 16, rows to a multiple
 *         of 4: cuBLASLt's int8 tensor-core kernels need 16-byte aligned rows of A and B and a
 *         4-element aligned output row), then scale (SCB) fp32 [rows];
 *   nf4:  codes [ceil(rows * cols / 2)] exactly as in the file, then either absmax fp32
 *         [n_blocks], or qabsmax int8 [n_blocks] and nested_absmax fp32 [n_nested]. */
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
    size_t total;
} qh_quant_dev_layout;

/* Layout of quantized weight w (host view or device copy: shape, dtype and which of
 * w->quant's arrays exist). Returns 0, or -1 when w is not a 2-D quantized weight of a shape
 * the device can hold (nf4: even cols, blocksize >= 2). */
int qh_quant_dev_layout_of(const qh_tensor *w, qh_quant_dev_layout *l);

/* The fused nf4 kernel for small token counts: 128 weight rows per thread block (8 warps of 16
 * rows, tensor-core mma on fragments looked up from a code-byte table), the input's columns
 * split over `splits` blocks of kr columns (a multiple of 64, at most 16 steps of 64) whose
 * partial sums (fp32 [splits, tokens, rows]) a second kernel adds up. Shared memory per block: the code-byte -> two fp16
 * levels table, one copy per lane (32 KiB, bank-conflict free), the block's absmax values
 * [128][17] fp32, and its x[tokens, kr] slice (rows padded by 4 halves). */
#define QH_NF4_FUSED_MAX_TOKENS 32
#define QH_NF4_FUSED_ROWS 128
#define QH_NF4_FUSED_KSTEP 64
#define QH_NF4_FUSED_MAX_STEPS 16
#define QH_NF4_FUSED_SMEM 49152 /* bytes of x staged per block at most */
#define QH_NF4_FUSED_XPAD 4     /* halves of padding per staged row (bank-conflict free reads) */
#define QH_NF4_FUSED_LUT_BYTES 32768
#define QH_NF4_FUSED_AMAX_LD 17 /* floats per row of the absmax tile (bank-conflict free) */

typedef struct {
    int token_tiles; /* ceil(tokens / 8): mma n-tiles */
    int splits;      /* blocks along the input columns */
    int kr;          /* input columns per split (a multiple of QH_NF4_FUSED_KSTEP; the last may be shorter) */
    int64_t row_groups;
    int bs_shift; /* log2(blocksize / 64) */
    size_t smem;  /* dynamic shared memory per block: table, absmax tile, x slice */
} qh_nf4_fused_plan;

/* Plan y[t, n] = x[t, k] w[n, k]^T for an nf4 weight of the given blocksize on a GPU with n_sm
 * multiprocessors; returns 1, or 0 when the fused kernel does not apply (t outside
 * 1..QH_NF4_FUSED_MAX_TOKENS, k not a multiple of 64, blocksize not 64 times a power of
 * two): the dequantize-and-cuBLAS path then runs. Aims at >= 2 blocks per multiprocessor. */
int qh_nf4_fused_plan_of(int64_t t, int64_t n, int64_t k, int blocksize, int n_sm, qh_nf4_fused_plan *p);

#endif
