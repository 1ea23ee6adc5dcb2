/* Shared between the CUDA backend's files: the backend (cuda_backend.c, cuda_ops.c) and the
 * kernel launchers (cuda_kernels.cu, cuda_attention.cu), which take raw device pointers. */
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
/* xq non-NULL (fp16 out): also xq[rows, kp] and sx[rows] as qh_cu_i8_rowquant(out, flags NULL)
 * would (in the same kernel where the row fits its registers, else by that launcher). */
int qh_cu_rmsnorm(cudaStream_t s, const void *x, int x_type, const void *w, int w_type, float eps, void *out,
                  int out_type, int64_t rows, int64_t h, int8_t *xq, float *sx, int64_t kp);
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
 * non-NULL. kind: 0 tensor-core kernel (fp16, hd in {16, 32, 64, 128}), 1 simple kernel. n_sm:
 * the GPU's multiprocessors (the tensor-core kernel's block size for grids under one wave). */
int qh_cu_attention(cudaStream_t s, int n_sm, int kind, int f32, const void *q, const void *k, const void *v, void *out,
                    const int32_t *starts, const int32_t *pos, int n_seqs, int n_tokens, int max_len,
                    int n_heads, int n_kv, int hd, const qh_cuda_rope_tab *rope);
int qh_cu_attention_tc_supported(int hd);

/* ---- quantized weights (cuda_quant.cu; formats in ../quant.h, device layout in
 * ../quant_gpu_plan.h). Activations x are fp16 [t, k]. ---- */

/* The NF4 levels (and the midpoints between neighbours, float64) into constant memory. */
int qh_cu_quant_init(cudaStream_t s, const float levels[16], const double mids[15]);

/* int8 activations, LLM.int8(): flags[c] = 1 where any |x[:, c]| >= thr (flags zeroed first);
 * idx[0..m) the flagged columns in order, m into *m_dev and, when m_host is non-NULL (mapped
 * host memory), there too, and when stat is non-NULL stat[0] += m, stat[1] = max(stat[1], m);
 * xq[t, kp] = rint(x * 127 / s_t) over the other columns (0 at flagged and padding columns),
 * sx[t] = s_t / 127 with s_t their absmax (flags NULL: all columns). */
int qh_cu_i8_flags(cudaStream_t s, const void *x, int64_t t, int64_t k, float thr, unsigned char *flags);
int qh_cu_i8_compact(cudaStream_t s, const unsigned char *flags, int64_t k, int32_t *idx, int *m_dev, int *m_host,
                     unsigned long long *stat);
int qh_cu_i8_rowquant(cudaStream_t s, const void *x, int64_t t, int64_t k, int64_t kp, const unsigned char *flags,
                      int8_t *xq, float *sx);
/* xo[t, mp] = x[t, idx[j]] for j < m, 0 for m <= j < mp (fp16). m_dev non-NULL: m = min(*m_dev,
 * mp), read on the device. */
int qh_cu_i8_gather_x(cudaStream_t s, const void *x, int64_t t, int64_t k, const int32_t *idx, int m,
                      const int *m_dev, int mp, void *xo);
/* wo[n, mp] = fp16(w[n, idx[j]] * (scb[n] / 127)) for j < m, 0 beyond (w rows of kp codes); m_dev
 * as for gather_x. */
int qh_cu_i8_gather_w(cudaStream_t s, const int8_t *w, int64_t n, int64_t kp, const float *scb, const int32_t *idx,
                      int m, const int *m_dev, int mp, void *wo);
/* The outlier columns j0 .. *m_dev - 1 (count read on the device) for at most 64 tokens, on CUDA
 * cores: out[t, n] (fp32; = or += when add) sum_j x[t, idx[j]] fp16(w[n, idx[j]] * f[n]), f = SCB
 * / 127. Does nothing where *m_dev <= j0. */
int qh_cu_i8_outlier_small(cudaStream_t s, const void *x, int64_t k, const int32_t *idx, const int *m_dev, int j0,
                           const int8_t *w, int64_t kp, const float *f, float *out, int64_t t, int64_t n, int add);
/* Batches of at most 64 tokens with outlier columns whose count stays on the device
 * (cuda_i8_small.cu): what qh_cu_i8_flags, _compact, _rowquant and _gather_x write, the same
 * numbers, in one launch (a thread-block cluster: Hopper). Where it applies: Hopper (cc_major),
 * t <= 64, k and kp multiples of 8, aligned pointers, column slices that fit shared memory. */
typedef struct {
    int32_t *idx; /* [k]: the outlier columns in order */
    int *m_dev;   /* their count */
    int *m_host;  /* and there too (mapped host memory), or NULL */
    unsigned long long *stat; /* stat[0] += m, stat[1] = max(stat[1], m); or NULL */
    int8_t *xq;   /* [t, kp] codes */
    float *sx;    /* [t] scales */
    void *xo;     /* [t, mp] fp16: the first min(m, mp) outlier columns' x, zeros beyond; or NULL */
    int mp;
} qh_cu_i8_quant_small_out;
int qh_cu_i8_quant_small_applies(int cc_major, const void *x, int64_t t, int64_t k, int64_t kp, float thr,
                                 const qh_cu_i8_quant_small_out *o);
int qh_cu_i8_quant_small(cudaStream_t s, const void *x, int64_t t, int64_t k, int64_t kp, float thr,
                         const qh_cu_i8_quant_small_out *o);
/* The epilogue of int8 products for at most 64 tokens, with the outlier columns cap .. *m_dev - 1
 * (read on the device; m_dev NULL: none) summed in on CUDA cores: what qh_cu_i8_outlier_small
 * followed by qh_cu_i8_epilogue writes, bit for bit, in one launch, for up to three weights with
 * the same input (q, k and v: y[w] = x w^T), or paired (gate and up, nw 2): y[0] = fp16(silu(g) *
 * u) of the two rounded to fp16, as those and silu_mul give. extra[w]: where cap > 0, the
 * gathered product of the first cap outlier columns (fp32 [t, n[w]]); into_y (fp32 y added to,
 * one weight): y holds y + that product already. */
typedef struct {
    const int32_t *acc[3];      /* int32 sums [t, ldc[w]] */
    const float *scb[3], *f[3]; /* SCB and SCB / 127 of each weight */
    const int8_t *w[3];         /* codes [n[w], kp] */
    const float *extra[3];
    void *y[3];
    int64_t n[3], ldc[3], kp, k;
    const float *sx;
    const void *x; /* the fp16 input [t, k] */
    const int32_t *idx;
    const int *m_dev;
    int cap, t, nw, paired, y_type, accumulate, into_y;
} qh_cu_i8_small_epi;
int qh_cu_i8_epilogue_small(cudaStream_t s, const qh_cu_i8_small_epi *e);
/* y[t, n] (+)= (acc[t, n] * sx[t]) * (scb[n] / 127) (+ extra[t, n], fp32 [t, n], when non-NULL and,
 * where extra_if is non-NULL, *extra_if != 0); acc rows of ldc int32; y fp16 or fp32 (y_type). */
int qh_cu_i8_epilogue(cudaStream_t s, const int32_t *acc, int64_t ldc, const float *sx, const float *scb,
                      const float *extra, const int *extra_if, void *y, int y_type, int accumulate, int64_t t,
                      int64_t n);
/* out[t, n] = fp16(silu(g) * u) with g = fp16(acc_g[t, n] * sx[t] * (scb_g[n] / 127)) and u
 * likewise: i8_epilogue on both, then silu_mul, in one pass (acc rows of ldc int32). */
int qh_cu_i8_swiglu(cudaStream_t s, const int32_t *acc_g, const int32_t *acc_u, int64_t ldc, const float *sx,
                    const float *scb_g, const float *scb_u, void *out, int64_t t, int64_t n);
/* The same, plus xq[t, kp] and sx[t]: the int8 codes and scales of out's rows (threshold 0), as
 * qh_cu_i8_rowquant(out) would write them; sx holds the input's scales on entry. Widths the
 * kernel takes: qh_cu_i8_swiglu_codes_ok. */
int qh_cu_i8_swiglu_codes(cudaStream_t s, const int32_t *acc_g, const int32_t *acc_u, int64_t ldc, float *sx,
                          const float *scb_g, const float *scb_u, void *out, int64_t t, int64_t n, int8_t *xq,
                          int64_t kp);
int qh_cu_i8_swiglu_codes_ok(const int32_t *acc_g, const int32_t *acc_u, int64_t ldc, const float *scb_g,
                             const float *scb_u, const void *out, int64_t n, const int8_t *xq, int64_t kp);
/* f[i] = v[i] / 127 (rounded as qh_i8_dequant divides), i < n: the wgmma epilogue's factors
 * (v: int8's SCB) and nf4's double-quantization factors (v: the nested absmax). */
int qh_cu_div127(cudaStream_t s, const float *v, float *f, int64_t n);
/* The int8 product and its epilogue in one kernel (Hopper wgmma, cuda_i8_gemm.cu): y[t, n] (+)=
 * (xq[t, kp] w[n, kp]^T * sx[t]) * f[n] (+ extra[t, n], fp32, fp16 y stored only), f = SCB / 127
 * (qh_cu_i8_scale127), y fp16 or fp32 (f32y): exactly what the int32 product followed by
 * qh_cu_i8_epilogue writes. Paired (w2 non-NULL, fp16 y stored): what qh_cu_i8_swiglu writes from
 * w's and w2's products. n_sm: blocks to run (one per SM). Returns 1 (nothing queued) where
 * qh_cu_i8_gemm_tc_applies says no: not built for sm_90a, kp % 16, misaligned pointers, no driver
 * entry point for tensor maps. Callers check the GPU generation. */
int qh_cu_i8_gemm_tc_applies(const int8_t *xq, int64_t t, int64_t kp, const int8_t *w, const int8_t *w2, int64_t n,
                             const float *f2, int adds_extra, const void *y, int f32y, int accumulate);
int qh_cu_i8_gemm_tc(cudaStream_t s, int n_sm, const int8_t *xq, int64_t t, int64_t kp, const int8_t *w,
                     const int8_t *w2, int64_t n, const float *sx, const float *f, const float *f2, const float *extra,
                     void *y, int f32y, int accumulate);
/* acc[t, ldc] = xq[t, kp] w[n, kp]^T in int32 with dp4a (kp a multiple of 16): the plain kernel
 * for shapes cuBLASLt's int8 kernels refuse. */
int qh_cu_i8_gemm_simple(cudaStream_t s, const int8_t *w, const int8_t *xq, int32_t *acc, int64_t n, int64_t kp,
                         int64_t t, int64_t ldc);

typedef struct {
    const uint8_t *codes; /* two per byte, high nibble first, the weight flattened row-major */
    const float *absmax;  /* [n_blocks], or NULL with double quantization: */
    const int8_t *qabsmax;
    const float *nested127; /* nested absmax / 127 (qh_cu_div127) */
    float offset;
    int blocksize;
    int blocksize_shift; /* log2(blocksize) when a power of two, else -1 */
    int nested_shift;    /* log2(QH_NF4_NESTED_BLOCK) */
} qh_cu_nf4;

/* out[i] = fp16(level[code first + i] * absmax(block of first + i)) for i in [0, n) of the
 * flattened weight (first even). */
int qh_cu_nf4_dequant(cudaStream_t s, qh_cu_nf4 w, int64_t first, int64_t n, void *out);
/* The small-batch product (cuda_nf4_small.cu, plan in ../quant_gpu_plan.h): for each weight i
 * y[i][t, n[i]] (+)= x[t, k] w[i][n[i], k]^T, y fp16 or fp32 (y_type); paired: y[0] =
 * silu(x w[0]^T) * (x w[1]^T) in fp16, as the plain products (fp16) and silu_mul give it. x
 * 8-byte aligned, codes 8-byte aligned rows (k a multiple of 64). Needs compute capability 9
 * (clusters). */
typedef struct {
    qh_cu_nf4 w[3];
    int64_t n[3];
    void *y[3];
    int nw, paired;
    const void *x;
    int64_t t, k;
    int token_tiles, rows, splits, kr, bs_shift; /* the plan */
    int64_t tiles;
    size_t smem;
    int y_type, accumulate;
    float levels[16]; /* the NF4 levels */
} qh_cu_nf4_small_job;
int qh_cu_nf4_small(cudaStream_t s, const qh_cu_nf4_small_job *job);

/* Quantizers on the device (bench/test helpers; same codes as ../quant_int8.c and
 * ../quant_nf4.c): w fp16. int8 writes q[rows_pad, kp] (caller zeroes) and scb[rows]; nf4
 * writes codes and absmax[ceil(n / blocksize)]. */
int qh_cu_i8_quantize(cudaStream_t s, const void *w, int64_t rows, int64_t k, int64_t kp, int8_t *q, float *scb);
int qh_cu_nf4_quantize(cudaStream_t s, const void *w, int64_t n, int blocksize, uint8_t *codes, float *absmax);

#ifdef __cplusplus
}
#endif

#endif
