/* The backend seam: every operation the model needs, behind one table of function pointers.
 *
 * Model code calls these and never looks at which device it runs on; the CPU backend
 * (core/cpu/) implements them with OpenBLAS and OpenMP, the CUDA backend (core/cuda/) with
 * cuBLAS and its own kernels. Activations use the backend's act_dtype (fp32 on the CPU, fp16
 * on CUDA); the residual stream of the model is fp32 on every backend.
 * Weights may be any float dtype (F32, F16, BF16); each backend converts as it needs.
 *
 * All ops return QH_OK or an error code with qh_fail() called. A backend object is not
 * thread-safe: one forward pass at a time. */
#ifndef QHEAD_BACKEND_H
#define QHEAD_BACKEND_H

#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

/* A packed batch of variable-length sequences: token t of sequence s sits at row
 * starts[s] + t. Tensors live on the backend's device (I32); host_starts mirrors starts. */
typedef struct {
    int n_seqs;
    int n_tokens;
    int max_len;
    qh_tensor ids;       /* [n_tokens] token ids */
    qh_tensor positions; /* [n_tokens] position of each token inside its sequence */
    qh_tensor starts;    /* [n_seqs + 1] first row of each sequence, then n_tokens */
    qh_tensor last_rows; /* [n_seqs] row of each sequence's last token */
    const int32_t *host_starts;
} qh_batch;

typedef struct qh_backend qh_backend;
struct qh_backend {
    const char *name;
    qh_device device;
    qh_dtype act_dtype;
    /* 1 when weight() and linear take quantized weights (qh_tensor_is_quantized: int8 and NF4
     * with their scales in t->quant); the model loader refuses them on a backend without. */
    int quant_weights;
    void *impl;

    /* memory */
    int (*alloc)(qh_backend *be, qh_tensor *t); /* t describes shape/dtype; fills data */
    void (*release)(qh_backend *be, qh_tensor *t);
    int (*upload)(qh_backend *be, const void *host, qh_tensor *t);    /* alloc + copy */
    int (*download_f32)(qh_backend *be, const qh_tensor *t, float *host); /* any float dtype */
    /* Make a weight usable on this device: the CPU keeps the memory-mapped view, a GPU copies. */
    int (*weight)(qh_backend *be, const qh_tensor *host_view, qh_tensor *out);
    int (*sync)(qh_backend *be);
    void (*destroy)(qh_backend *be);

    /* ops: x, out are [rows, cols] activations */
    int (*embed)(qh_backend *be, const qh_tensor *table, const qh_tensor *ids, qh_tensor *out);
    int (*rmsnorm)(qh_backend *be, const qh_tensor *x, const qh_tensor *w, float eps, qh_tensor *out);
    /* y[T, N] = x[T, K] * w[N, K]^T  (w as stored by transformers: [out_features, in_features];
     * int8 and NF4 weights as described in quant.h, on backends with quant_weights) */
    int (*linear)(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y);
    /* Rotary embedding in place on q [T, n_heads*head_dim] and k [T, n_kv*head_dim],
     * transformers' rotate-half convention, angle = position * theta^(-2i/head_dim). */
    int (*rope)(qh_backend *be, qh_tensor *q, qh_tensor *k, const qh_tensor *positions,
                int head_dim, double theta);
    /* Causal softmax(q k^T / sqrt(head_dim)) v within each sequence of the batch; query head h
     * reads KV head h / (n_heads / n_kv_heads) (grouped-query attention). */
    int (*attention)(qh_backend *be, const qh_tensor *q, const qh_tensor *k, const qh_tensor *v,
                     qh_tensor *out, const qh_batch *batch, int n_heads, int n_kv_heads, int head_dim);
    int (*silu_mul)(qh_backend *be, const qh_tensor *gate, const qh_tensor *up, qh_tensor *out);
    int (*add)(qh_backend *be, qh_tensor *x, const qh_tensor *y); /* x += y */
    /* out[i] = x[rows[i]] */
    int (*gather_rows)(qh_backend *be, const qh_tensor *x, const qh_tensor *rows, qh_tensor *out);

    /* Optional fused ops (NULL where a backend has none; the model code then uses the plain
     * ones). y += x w^T, y in fp32 or act_dtype (the residual add inside the matrix product). */
    int (*linear_add)(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y);
    /* q, k, v = x wq^T, x wk^T, x wv^T, as three linear calls would give them. */
    int (*linear_qkv)(qh_backend *be, const qh_tensor *x, const qh_tensor *wq, const qh_tensor *wk,
                      const qh_tensor *wv, qh_tensor *q, qh_tensor *k, qh_tensor *v);
    /* gate = silu(x w_gate^T) * (x w_up^T), the first half of the MLP, as linear, linear and
     * silu_mul would compute it; up [T, F] is scratch the backend may fill with anything. */
    int (*linear_swiglu)(qh_backend *be, const qh_tensor *x, const qh_tensor *w_gate, const qh_tensor *w_up,
                         qh_tensor *gate, qh_tensor *up);
    /* rope (positions from batch->positions) then attention, as the two ops would; q and k may
     * be left unrotated. */
    int (*rope_attention)(qh_backend *be, const qh_tensor *q, const qh_tensor *k, const qh_tensor *v,
                          qh_tensor *out, const qh_batch *batch, int n_heads, int n_kv_heads, int head_dim,
                          double theta);
    /* download_f32 in two halves, so the device can run on meanwhile: start queues the copy of t
     * (after the work queued so far) and returns a ticket; host holds the values once
     * download_wait(ticket) returns. At most two downloads in flight. */
    int (*download_start)(qh_backend *be, const qh_tensor *t, float *host, int *ticket);
    int (*download_wait)(qh_backend *be, int ticket);

    /* Optional, for a backend that copies weights into memory of its own (NULL where weights
     * stay memory-mapped): the bytes weight() would take for host_view, and the check the model
     * loader makes with their sum before the first copy: QH_OK when they fit in the memory free
     * now, else QH_EINPUT with "<what> need X GB of ..., more than the Y GB free ...". */
    uint64_t (*weight_bytes)(qh_backend *be, const qh_tensor *host_view);
    int (*check_capacity)(qh_backend *be, uint64_t bytes, const char *what);
    /* Optional, all five or none (CUDA graphs): record a stretch of ops once and replay it, for
     * work where issuing each op costs a good part of its run time (one short sequence).
     * capture_begin returns QH_OK (recording), 1 (not now: profiling is on) or an error. Between
     * it and capture_end the ops queue nothing and run nothing (an op's error there means only
     * that it cannot be recorded); capture_end returns QH_OK with *graph set, or QH_OK with
     * *graph NULL where the ops could not be recorded (one waits for the device): run them
     * plainly then. graph_run replays the ops with the addresses they saw, so inputs change only
     * in place (write: copy host bytes into t's existing storage). It returns QH_OK, or 1 where
     * it cannot replay now: the backend has since moved memory the recording reads, or profiling
     * is on (free it; run plainly and record again). */
    int (*capture_begin)(qh_backend *be);
    int (*capture_end)(qh_backend *be, void **graph);
    int (*graph_run)(qh_backend *be, void *graph);
    void (*graph_free)(qh_backend *be, void *graph);
    int (*write)(qh_backend *be, const void *host, qh_tensor *t);
};

/* "cpu", "cuda" or "auto" (CUDA when built with it and a device is present, else CPU). */
int qh_backend_create(const char *name, qh_backend **out);
void qh_backend_destroy(qh_backend *be);
int qh_cuda_available(void);

int qh_cpu_backend_create(qh_backend **out);
#ifdef QHEAD_HAVE_CUDA
int qh_cuda_backend_create(qh_backend **out);
#endif

/* A view of the first `rows` rows of t (no copy, not owned). */
qh_tensor qh_tensor_head_rows(const qh_tensor *t, int64_t rows);

#endif
