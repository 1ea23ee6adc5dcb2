/* Extras of the CUDA backend beyond the backend seam (core/backend.h): memory statistics,
 * device-side random fill (for benchmarks), attention kernel choice and op profiling.
 * Only declared when libqhead is built with CUDA (QHEAD_HAVE_CUDA). */
#ifndef QHEAD_QH_CUDA_H
#define QHEAD_QH_CUDA_H

#include "../backend.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes held by the backend's live allocations now, and their high-water mark since creation
 * or the last qh_cuda_reset_peak (weights, activations and the cuBLASLt workspace). */
void qh_cuda_memory(const qh_backend *be, size_t *live, size_t *peak);
void qh_cuda_reset_peak(qh_backend *be);
/* Device memory used by this process and others (cudaMemGetInfo: total - free), and total. */
int qh_cuda_device_memory(size_t *used, size_t *total);
/* "NVIDIA H100 80GB HBM3, sm_90, 132 SMs" */
const char *qh_cuda_device_name(const qh_backend *be);

/* Fill a float tensor on the device: normal(mean, sd) from a counter-based generator (seed,
 * element index), or the constant mean when sd == 0. F16, BF16 or F32. */
int qh_cuda_fill(qh_backend *be, qh_tensor *t, uint64_t seed, float mean, float sd);

/* Attention kernel: QH_CUDA_ATTN_TC (tensor cores, WMMA, the default) or QH_CUDA_ATTN_SIMPLE
 * (one warp per query row and head: the plain reference). The environment variable
 * QHEAD_CUDA_ATTENTION=simple|tc sets the initial choice. */
enum { QH_CUDA_ATTN_TC = 0, QH_CUDA_ATTN_SIMPLE = 1 };
void qh_cuda_set_attention(qh_backend *be, int kind);

/* fp32 mode: weights (converted when loaded) and activations in fp32, matrix products in
 * fp32 without tensor cores, the simple attention kernel. For checking the model code on small
 * models; not for speed (fp16 storage keeps errors of ~1e-3 relative, see the tests). Call
 * before loading a model; QHEAD_CUDA_PRECISION=fp32 sets it at creation. */
void qh_cuda_set_precision(qh_backend *be, int fp32);

/* Op profiling: when on, every op records a CUDA event after it, and the device time between
 * consecutive events is added to that op's total (the first op after a host sync also counts
 * the idle gap before it). Costs about a microsecond per op. */
enum {
    QH_CUDA_OP_EMBED, QH_CUDA_OP_RMSNORM, QH_CUDA_OP_GEMM_QKV, QH_CUDA_OP_GEMM_O, QH_CUDA_OP_GEMM_GATE_UP,
    QH_CUDA_OP_GEMM_DOWN, QH_CUDA_OP_GEMM_OTHER, QH_CUDA_OP_ROPE, QH_CUDA_OP_ATTENTION, QH_CUDA_OP_SILU_MUL,
    QH_CUDA_OP_ADD, QH_CUDA_OP_GATHER, QH_CUDA_OP_COPY,
    QH_CUDA_OP_INT8_ACT,    /* int8: outlier columns, per-token quantization (and the host sync for the count) */
    QH_CUDA_OP_NF4_DEQUANT, /* nf4: dequantizing a weight to fp16 for cuBLASLt */
    QH_CUDA_OP_COUNT
};
void qh_cuda_profile(qh_backend *be, int on);
/* Milliseconds per op kind since profiling was switched on (syncs first); names[i] for each. */
int qh_cuda_profile_read(qh_backend *be, double ms[QH_CUDA_OP_COUNT], const char *names[QH_CUDA_OP_COUNT]);

/* Time y[t, n] (+)= x[t, k] w[n, k]^T for each of cuBLASLt's first max_algos heuristic
 * candidates (random fp16 data; fp32 output and beta 1 when f32_acc, else fp16 and beta 0);
 * prints one line per candidate and returns the TFLOP/s of the first (what the backend uses)
 * and of the fastest. sustain_ms > 0: timed over back-to-back products for that long instead
 * (the power-limited rate a whole forward pass sees). */
int qh_cuda_gemm_bench(qh_backend *be, int64_t t, int64_t n, int64_t k, int f32_acc, int max_algos, int sustain_ms,
                       double *tflops_first, double *tflops_best);

/* Tests: count at most `bytes` of device memory as free when the model loader checks that the
 * weights fit (0: what cudaMemGetInfo says). */
void qh_cuda_set_free_limit(qh_backend *be, size_t bytes);

/* ---- quantized weights (int8, nf4: cuda_quant*.c) ---- */

/* What the quantized products did since the backend was created or the last reset. int8
 * counts are by the kind of product whose input was quantized (QH_CUDA_OP_GEMM_*: q/k/v input,
 * o_proj input, gate/up input, down_proj input). */
typedef struct {
    long int8_inputs[QH_CUDA_OP_COUNT];       /* activations quantized (once per input, shared by q/k/v) */
    long int8_outlier_cols[QH_CUDA_OP_COUNT]; /* outlier columns, summed over those */
    int int8_outlier_max[QH_CUDA_OP_COUNT];
    long int8_tc_products, int8_plain_products; /* cuBLASLt int8 tensor cores / the plain dp4a kernel */
    long int8_wgmma_products;                   /* int8 products with their epilogue in one kernel (Hopper) */
    long nf4_fused, nf4_dequant;                /* products by the small-batch kernel / dequantize + cuBLASLt */
    long int8_norm_codes, int8_swiglu_codes;    /* int8 inputs whose codes RMSNorm / the SwiGLU wrote */
} qh_cuda_quant_stats;
void qh_cuda_quant_stats_get(qh_backend *be, qh_cuda_quant_stats *s, int reset);
/* int8: tokens per int8 matrix product (its int32 result is a scratch of tokens x rows); 0 is
 * the default (4096). */
void qh_cuda_set_int8_chunk(qh_backend *be, int64_t tokens);
/* int8: the Hopper kernel that does an int8 product and its scaling epilogue (or the SwiGLU of
 * gate and up) in one pass, instead of cuBLASLt's int32 output read back by a second kernel.
 * AUTO (the default): for batches that give every SM a tile of 128 tokens; ALWAYS: wherever it
 * applies (tests: small shapes); OFF: never (benchmarks compare). */
enum { QH_CUDA_I8_WGMMA_AUTO, QH_CUDA_I8_WGMMA_ALWAYS, QH_CUDA_I8_WGMMA_OFF };
/* int8 with outlier columns: 1 makes every batch wait for its outlier count (the stream
 * synchronisation that sizes the fp16 product); 0, the default, lets batches of at most 64 tokens
 * keep it on the device (tests and benchmarks compare the two). Either way the outlier counts seen
 * so far, from which those batches size their outlier product, are forgotten. */
void qh_cuda_set_int8_outlier_sync(qh_backend *be, int on);
void qh_cuda_set_int8_wgmma(qh_backend *be, int mode);
/* int8, batches of at most 64 tokens: 1 (the default) runs q, k and v's epilogues in one launch
 * and, with outlier columns, quantizes each input in one kernel and adds the outlier columns
 * beyond the gathered product in the epilogue's kernel (gate and up: with the SwiGLU); 0 runs
 * the separate kernels (memset, flags, compaction, codes, gather; the outlier kernel and the
 * epilogue per product; gate and up apart, then silu_mul). The same numbers either way; tests
 * and benchmarks compare the two. */
void qh_cuda_set_int8_small_fused(qh_backend *be, int on);
/* int8: 0 makes linear_swiglu run the plain ops (gate and up to fp16, then silu_mul) instead of
 * the one kernel from both products' int32 sums (benchmarks compare the two). */
void qh_cuda_set_int8_swiglu(qh_backend *be, int on);
/* int8: 0 stops RMSNorm and the int8 SwiGLU from writing the int8 codes of their outputs
 * (threshold 0) for the products after them; those then quantize their inputs themselves (tests
 * and benchmarks compare the two). */
void qh_cuda_set_int8_input_codes(qh_backend *be, int on);
/* nf4: 0 dequantizes each weight when its product comes, on the main stream (no prefetching of
 * the next weight on the second stream; tests and benchmarks compare the two). */
void qh_cuda_set_nf4_prefetch(qh_backend *be, int on);
/* nf4: dequantize + cuBLASLt in parts of at most `bytes` of fp16 weight (whole rows; 0: the
 * default, 48 MiB). Tests make it small to get many parts. */
void qh_cuda_set_nf4_part_bytes(qh_backend *be, size_t bytes);
/* nf4: 0 sends every product through dequantize + cuBLASLt (tests compare the two paths). */
void qh_cuda_set_nf4_fused(qh_backend *be, int on);
/* nf4: force the small-batch kernel's plan (rows per block 128 or 256, splits 1..8; 0: the
 * default choice, ../quant_gpu_plan.h). Benchmarks compare plans. */
void qh_cuda_set_nf4_small_plan(qh_backend *be, int rows, int splits);

/* Quantize an fp16 weight already on this device into the backend's layout, as `quantize`
 * would (int8: threshold stored for run time; nf4: blocksize, double quantization done on
 * the host): benchmarks build quantized 7B models on the GPU with it. */
int qh_cuda_quantize(qh_backend *be, const qh_tensor *w, qh_dtype dt, int blocksize, int double_quant,
                     float threshold, qh_tensor *out);

#ifdef __cplusplus
}
#endif

#endif
