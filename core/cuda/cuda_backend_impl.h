/* The CUDA backend's state, shared by the two files that make the backend: cuda_backend.c
 * (memory, weights, downloads, profiling, graphs, lifetime) and cuda_ops.c (the ops of the seam:
 * matrix products through cuBLASLt, the rotary tables and the kernels' launches). Private to
 * them; the rest of the CUDA code sees the backend through cuda_quant.h's services. */
#ifndef QHEAD_CUDA_BACKEND_IMPL_H
#define QHEAD_CUDA_BACKEND_IMPL_H

#include "cuda_gemm.h"
#include "cuda_internal.h"
#include "cuda_quant.h"
#include "qh_cuda.h"

#include "../backend.h"

#define PROF_EVENTS 4096

typedef struct {
    int device;
    char name[384];
    cudaStream_t stream;
    qh_cu_gemm *gemm; /* the matrix products (cuda_gemm.c) */
    void *workspace;  /* cuBLASLt's, counted in the memory statistics */
    int *err_host, *err_dev; /* mapped pinned flag set by kernels on a bad index */
    float2 *rope_cs;
    double *rope_inv;
    int rope_npos, rope_hd;
    double rope_theta;
    size_t live, peak;
    int attn_kind;
    int sms, cc_major;
    unsigned long gen;         /* see qh_cu_be_generation */
    /* bumped whenever memory of the backend's own that kernels read moves (the rotary table,
     * cuda_quant.c's scratch): a graph recorded before then would read freed memory */
    unsigned long epoch;
    struct qh_cu_quant *quant; /* cuda_quant.c's state */
    size_t free_limit; /* tests: device memory counted as free at most (0: no limit) */
    int precise; /* fp32 mode: weights and activations in fp32, SGEMM (qh_cuda_set_precision) */
    /* asynchronous downloads: pinned staging, one slot per ticket parity */
    struct {
        void *stage;
        size_t cap, bytes, n;
        float *host;
        qh_dtype dtype;
        cudaEvent_t done;
        int busy;
    } dl[2];
    int dl_next;
    /* profiling */
    int prof;
    cudaEvent_t ev[PROF_EVENTS + 1];
    int ev_kind[PROF_EVENTS + 1];
    int n_ev; /* ev[0] is the start mark; ev[1..n_ev] follow ops */
    double prof_ms[QH_CUDA_OP_COUNT];
    long prof_fail[QH_CUDA_OP_COUNT];
    cudaError_t prof_err;
} cu_impl;

/* A CUDA error as one line (QH_ESYS), the launchers' status codes too. */
static inline int cuda_err(cudaError_t e, const char *what) { return qh_cu_be_err(e, what); }
static inline int launch_err(int e, const char *what) { return qh_cu_be_err((cudaError_t)e, what); }
/* the kernels' element type of a tensor dtype; -1 for the ones they do not take */
static inline int cu_type(qh_dtype t)
{
    return t == QH_F32 ? QH_CU_F32 : t == QH_BF16 ? QH_CU_BF16 : t == QH_F16 ? QH_CU_F16 : -1;
}

/* cuda_ops.c: fills the ops of be's table (embed through gather_rows, the fused ones) */
void qh_cu_ops_install(qh_backend *be);

#endif
