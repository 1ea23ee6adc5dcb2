/* Quantized weights in the CUDA backend: the host side (cuda_quant*.c; kernels in
 * cuda_quant.cu) and the few services of the backend (cuda_backend.c, cuda_ops.c) it uses.
 * C only. */
#ifndef QHEAD_CUDA_QUANT_H
#define QHEAD_CUDA_QUANT_H

#include "../backend.h"

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

struct qh_cu_quant;

/* ---- services of the backend (cuda_backend.c; the matrix products in cuda_ops.c) ---- */
cudaStream_t qh_cu_be_stream(qh_backend *be);
int qh_cu_be_sm_count(qh_backend *be);
int qh_cu_be_cc_major(qh_backend *be); /* compute capability, major */
/* Device memory counted in the backend's live/peak statistics (stream-ordered). */
int qh_cu_be_alloc(qh_backend *be, size_t bytes, void **p);
void qh_cu_be_free(qh_backend *be, void *p, size_t bytes);
int qh_cu_be_err(cudaError_t e, const char *what);
/* y[t, n] = x[t, k] w[n, k]^T + beta y through cuBLASLt: x and w fp16, y fp16 or fp32. */
int qh_cu_be_gemm_f16(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y, float beta);
/* y[t, 0:rows] (+)= x[t, k] w[rows, k]^T through cuBLASLt, y's rows ldc elements apart (fp16
 * or fp32 as ytype): a slice of columns of a wider output. */
int qh_cu_be_gemm_f16_cols(qh_backend *be, const qh_tensor *x, const void *w, int64_t rows, void *y, qh_dtype ytype,
                           int64_t ldc, float beta);
/* acc[t, n] (int32, rows of n) = xq[t, k] w[n, k]^T on int8 tensor cores (n and k as padded by
 * quant_gpu_plan.h). Returns QH_OK; 1 when cuBLASLt offers no int8 kernel for the shape (nothing
 * was queued: the caller runs the plain kernel); another code on errors. */
int qh_cu_be_gemm_i8(qh_backend *be, const int8_t *w, const int8_t *xq, int32_t *acc, int64_t n, int64_t k, int64_t t);
/* Profiling mark after an op of kind (QH_CUDA_OP_*, qh_cuda.h). */
void qh_cu_be_mark(qh_backend *be, int kind);
/* Bumped by every op that may write device memory other than the quantized products' own
 * outputs: cached int8 activations are valid while it stays the same. */
unsigned long qh_cu_be_generation(qh_backend *be);
struct qh_cu_quant **qh_cu_be_quant(qh_backend *be);

/* ---- cuda_quant.c, cuda_quant_int8.c, cuda_quant_nf4.c ---- */
/* weight() for int8 and nf4 host views: one allocation (layout in ../quant_gpu_plan.h). */
int qh_cu_quant_weight(qh_backend *be, const qh_tensor *host_view, qh_tensor *out);
/* Bytes of that allocation (what release gives back). */
size_t qh_cu_quant_bytes(const qh_tensor *w);
/* y = x w^T (accumulate 0) or y += x w^T (1) for a quantized w; x fp16, y fp16 or fp32. */
int qh_cu_quant_linear(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y, int accumulate);
/* y[i] = x w[i]^T for nw nf4 weights with the same input (q, k, v) in one launch, or paired
 * (gate, up) y[0] = silu(x w[0]^T) * (x w[1]^T): the small-batch kernel. Returns 1 (nothing
 * done) where it does not apply: not all nf4, too many tokens, another GPU generation. */
int qh_cu_quant_nf4_multi(qh_backend *be, const qh_tensor *x, const qh_tensor *const *w, qh_tensor *const *y, int nw,
                          int paired);
/* y[i] = x w[i]^T for three int8 weights with the same input (q, k, v) and at most 64 tokens:
 * the three products, then one kernel for their epilogues (and the outlier columns, where the
 * count stays on the device). Returns 1 (nothing done beyond quantizing x) where it does not
 * apply: more tokens, other dtypes or shapes, outlier columns counted on the host. */
int qh_cu_quant_i8_qkv(qh_backend *be, const qh_tensor *x, const qh_tensor *const *w, qh_tensor *const *y);
/* gate = silu(x wg^T) * (x wu^T) for int8 wg and wu: the two int8 products per chunk of tokens,
 * then one kernel from their int32 sums to gate (fp16), the numbers the plain ops give. up is
 * used as the second product's int32 scratch. Returns 1 (nothing done beyond quantizing x) where
 * it does not apply: x has outlier columns, the shapes or dtypes differ. */
int qh_cu_quant_swiglu(qh_backend *be, const qh_tensor *x, const qh_tensor *wg, const qh_tensor *wu, qh_tensor *gate,
                       qh_tensor *up);
/* RMSNorm's output as the cached int8 input: where the products fed by norms run at threshold 0
 * (learned from the first of them) and h is their width, c gets buffers for the codes [t, kp]
 * and scales [t] of a norm output of t rows (c->xq NULL: not applicable); once the norm kernel
 * has written them, qh_cu_quant_norm_written(out) makes them the cached quantization of out. */
typedef struct {
    int8_t *xq;
    float *sx;
    int64_t kp;
} qh_cu_norm_codes;
int qh_cu_quant_norm_codes(qh_backend *be, int64_t t, int64_t h, qh_cu_norm_codes *c);
void qh_cu_quant_norm_written(qh_backend *be, const qh_tensor *out);
void qh_cu_quant_free(qh_backend *be);
/* A quantized weight is going away: forget the weight order learned for nf4 prefetching. */
void qh_cu_quant_forget(qh_backend *be);
/* Recording ops into a graph (cuda_backend.c): a recording must not lean on device work queued
 * before it (an nf4 weight prefetched by the plain run before) nor leave any behind (the prefetch
 * of the next pass's weight, on the side stream), so between begin and after the nf4 products
 * dequantize every weight themselves on the main stream and prefetch nothing. After a recording,
 * and before a replay, which weight each dequantization buffer holds is forgotten (the recorded
 * bookkeeping describes work that did not run; a replay's work has no bookkeeping), and a replay
 * first waits for prefetches still running on the side stream, which write those buffers. */
void qh_cu_quant_begin_capture(qh_backend *be);
void qh_cu_quant_after_capture(qh_backend *be);
int qh_cu_quant_before_replay(qh_backend *be);

#endif
