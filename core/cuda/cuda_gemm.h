/* The CUDA backend's matrix products through cuBLASLt: y[T, N] (+)= x[T, K] w[N, K]^T with x and
 * w as stored (row-major, w as transformers keeps it: [out_features, in_features]). One plan per
 * shape and type (layouts and the heuristic's first algorithm), kept in a small LRU table, so a
 * micro-batch's products cost no heuristic query after the first of their size. C only. */
#ifndef QHEAD_CUDA_GEMM_H
#define QHEAD_CUDA_GEMM_H

#include <cuda_runtime_api.h>
#include <library_types.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qh_cu_gemm qh_cu_gemm;

/* Products on stream s with the given workspace (owned by the caller, alive until destroy). */
int qh_cu_gemm_create(cudaStream_t s, void *workspace, size_t workspace_bytes, qh_cu_gemm **out);
void qh_cu_gemm_destroy(qh_cu_gemm *g);

/* y[t, 0:n] = x[t, k] w[n, k]^T + beta y, y's rows ldc elements apart (0: n; a slice of the
 * columns of a wider output when ldc > n); x and w of in_type (fp16, or fp32 in the fp32 mode),
 * y of y_type; fp32 accumulation. op names the caller in errors. */
int qh_cu_gemm_float(qh_cu_gemm *g, const void *x, const void *w, void *y, int64_t t, int64_t n, int64_t k,
                     int64_t ldc, cudaDataType_t in_type, cudaDataType_t y_type, float beta, const char *op);

/* acc[t, n] (int32) = xq[t, k] w[n, k]^T on int8 tensor cores. QH_OK; 1 when cuBLASLt has no int8
 * kernel for the shape (nothing queued); another code on errors. */
int qh_cu_gemm_int8(qh_cu_gemm *g, const int8_t *w, const int8_t *xq, int32_t *acc, int64_t n, int64_t k, int64_t t);

/* Benchmark: each of cuBLASLt's first max_algos (<= 32) candidates for the fp16 product of the
 * given shape on the given device buffers (w [n, k], x [t, k], y [t, n], fp32 C += when f32_acc),
 * short bursts or sustain_ms of back-to-back products; one line per candidate on stdout, the
 * TFLOP/s of the first (what qh_cu_gemm_float takes) and of the fastest. */
int qh_cu_gemm_sweep(qh_cu_gemm *g, const void *w, const void *x, void *y, int64_t t, int64_t n, int64_t k, int f32_acc,
                     int max_algos, int sustain_ms, double *tflops_first, double *tflops_best);

#endif
