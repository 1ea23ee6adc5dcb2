/* The CUDA backend's state for quantized weights, shared by cuda_quant.c (placing weights,
 * dispatch, knobs), cuda_quant_int8.c and cuda_quant_nf4.c. C only, internal. */
#ifndef QHEAD_CUDA_QUANT_STATE_H
#define QHEAD_CUDA_QUANT_STATE_H

#include "cuda_quant.h"
#include "qh_cuda.h"

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#define INT8_CHUNK_DEFAULT 4096
/* 48 MiB: gate_proj and down_proj of LLaMA-2-7B (90 MB of fp16) in two parts, the attention
 * projections (32 MB) whole */
#define NF4_PART_BYTES_DEFAULT ((size_t)48 << 20)
#define NF4_ORDER_MAX 1024 /* weights whose successor is remembered (a 7B model has 224) */
/* int8 with outlier columns: batches of at most this many tokens never wait for the outlier count
 * (see i8_prepare); inputs whose counts so far stay within I8_OUTLIER_SMALL_MAX take all outlier
 * columns on CUDA cores, others a gathered fp16 product of a capacity learned from those counts. */
#define I8_NOSYNC_MAX_T 64
#define I8_OUTLIER_SMALL_MAX 32

/* A device buffer that grows to the largest size asked of it. */
typedef struct {
    void *p;
    size_t cap;
} qh_cu_dbuf;

struct qh_cu_quant {
    /* the int8 input cache */
    const void *x_ptr;
    int64_t x_t, x_k, x_kp;
    float x_thr;
    unsigned long x_gen;
    int x_valid, m, mp; /* m < 0: the outlier count is on the device only; mp: then the gather capacity */
    /* The ops that produce int8 inputs write their codes too (threshold 0): RMSNorm
     * (qh_cu_quant_norm_codes) for the products fed by a norm, the int8 SwiGLU for down_proj. The
     * width k of those products and their padded width kp, learned from the first of each (0: none
     * seen yet). */
    int64_t norm_k, norm_kp, down_k, down_kp;
    int no_input_codes;
    qh_cu_dbuf xq, sx, flags, idx, mdev, xo, wo, acc, acc2, acc3, yo, yo2, yo3;
    /* mapped pinned: the latest outlier count of each kind of input, [0, QH_CUDA_OP_COUNT) from
     * batches that wait for it, then those of small batches that do not (a large batch, the union
     * of many tokens' outliers, would oversize the small batches' capacity) */
    int *m_host, *m_host_dev;
    int hint[QH_CUDA_OP_COUNT]; /* the largest outlier count of a small batch read back so far, per kind */
    int outlier_sync;            /* 1: every batch waits for its outlier count (tests compare) */
    int small_unfused;           /* 1: those small batches run the separate kernels (tests compare) */
    qh_cu_dbuf dstat;            /* unsigned long long [QH_CUDA_OP_COUNT][2]: outlier columns sum, max */
    /* nf4, dequantize + cuBLASLt: two fp16 weight buffers. While one feeds a product, the weight
     * that followed this one last time (order[], learned as the products come) is dequantized into
     * the other on a second stream, so the next product finds it ready. */
    qh_cu_dbuf deq[2];
    const qh_tensor *deq_w[2]; /* the weight each buffer holds or is receiving; NULL: none */
    int deq_part[2];           /* and which part of it */
    size_t part_bytes;         /* fp16 bytes of a dequantized part at most */
    int deq_last;              /* buffer of the latest product */
    cudaStream_t side;
    cudaEvent_t ready[2], freed[2];
    cudaEvent_t side_idle; /* the side stream's work so far (a replay waits for it) */
    struct {
        const qh_tensor *w, *next;
    } order[NF4_ORDER_MAX];
    int n_order;
    const qh_tensor *prev_w;
    int no_prefetch;
    int capturing; /* ops are being recorded into a graph: no prefetching (see qh_cu_quant_begin_capture) */
    int no_swiglu; /* int8: linear_swiglu runs the plain ops (benchmarks compare) */
    int wgmma_mode; /* int8 products with their epilogue in one kernel: QH_CUDA_I8_WGMMA_* (0: auto) */
    int64_t chunk;
    int no_fused;
    int small_rows, small_splits; /* its plan forced (benchmarks); 0: the default */
    qh_cuda_quant_stats st;
};

/* b holds at least bytes (zeroed when zero; the old contents are lost when it grows). */
int qh_cu_q_ensure(qh_backend *be, qh_cu_dbuf *b, size_t bytes, int zero);
/* The backend's quantization state, made on first use. */
int qh_cu_q_state(qh_backend *be, struct qh_cu_quant **out);

/* y = x w^T (+ y when accumulate) for an int8 / nf4 weight; shapes checked by the caller; kind:
 * the profiling mark (QH_CUDA_OP_GEMM_*). */
int qh_cu_i8_linear(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *x, const qh_tensor *w, qh_tensor *y,
                    int64_t t, int64_t k, int64_t n, int accumulate, int kind);
int qh_cu_nf4_linear(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *x, const qh_tensor *w, qh_tensor *y,
                     int accumulate, int kind);
/* The small-batch kernel for nw nf4 weights sharing input x (shapes checked by the caller):
 * y[i] = x w[i]^T, or paired (nw 2) y[0] = silu(x w[0]^T) * (x w[1]^T). Returns QH_OK, 1 where it
 * does not apply (nothing queued), or an error. */
int qh_cu_nf4_small_run(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *x, const qh_tensor *const *w,
                        qh_tensor *const *y, int nw, int paired, int accumulate);

#endif
