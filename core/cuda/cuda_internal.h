/* Shared between the CUDA backend's files: the backend state (cuda_backend.c) and the kernel
 * launchers (cuda_kernels.cu, cuda_attention.cu), which take raw device pointers. */
#ifndef QHEAD_CUDA_INTERNAL_H
#define QHEAD_CUDA_INTERNAL_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Rotary tables: (cos, sin) in fp32 for positions < n_pos, computed on the host in double
 * exactly as the CPU backend does; inv_freq in double for positions beyond the table. */
typedef struct {
    const float2 *cs;       /* [n_pos][head_dim / 2] */
    const double *inv_freq; /* [head_dim / 2] */
    int n_pos;
} qh_cuda_rope_tab;

/* Element types the kernels take: 0 = fp16, 1 = fp32, 2 = bf16. */
enum { QH_CU_F16 = 0, QH_CU_F32 = 1, QH_CU_BF16 = 2 };

/* Each launcher returns cudaGetLastError() after enqueueing on stream s. Kernels that find a
 * bad index set *err (device memory) to 1 and skip the element. */
int qh_cu_embed(cudaStream_t s, const void *table, int table_type, int64_t vocab, int64_t h, const int32_t *ids,
                int64_t t, void *out, int out_type, int *err);
int qh_cu_rmsnorm(cudaStream_t s, const void *x, int x_type, const void *w, int w_type, float eps, void *out,
                  int out_type, int64_t rows, int64_t h);
int qh_cu_silu_mul(cudaStream_t s, const void *gate, const void *up, void *out, int type, int64_t n);
int qh_cu_add(cudaStream_t s, void *x, int x_type, const void *y, int y_type, int64_t n);
int qh_cu_gather_rows(cudaStream_t s, const void *x, int64_t x_rows, int64_t row_bytes, const int32_t *rows,
                      int64_t n, void *out, int *err);
int qh_cu_rope(cudaStream_t s, void *x, int type, int64_t t, int heads, int head_dim, const int32_t *pos,
               qh_cuda_rope_tab tab);
int qh_cu_fill(cudaStream_t s, void *p, int type, int64_t n, uint64_t seed, float mean, float sd);
int qh_cu_convert(cudaStream_t s, const void *src, int src_type, void *dst, int dst_type, int64_t n);

/* Causal attention over packed sequences (q [T, n_heads*hd], k and v [T, n_kv*hd], out like q,
 * all fp16, or all fp32 when f32); rotary embedding applied to q and k on the fly when rope is
 * non-NULL. kind: 0 tensor-core kernel (fp16, hd in {16, 32, 64, 128, 256}), 1 simple kernel. */
int qh_cu_attention(cudaStream_t s, int kind, int f32, const void *q, const void *k, const void *v, void *out,
                    const int32_t *starts, const int32_t *pos, int n_seqs, int n_tokens, int max_len,
                    int n_heads, int n_kv, int hd, const qh_cuda_rope_tab *rope);
int qh_cu_attention_tc_supported(int hd);

#ifdef __cplusplus
}
#endif

#endif
