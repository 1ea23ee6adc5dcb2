/* Shared between the CPU backend's files. */
#ifndef QHEAD_CPU_INTERNAL_H
#define QHEAD_CPU_INTERNAL_H

#include "../backend.h"

typedef struct {
    float *scratch; /* fp32 copy of the current weight matrix (see cpu_linear.c) */
    size_t scratch_floats;
    void *qscratch; /* int8 activations and outlier columns (cpu_linear_quant.c) */
    size_t qscratch_bytes;
} qh_cpu_impl;

int qh_cpu_ensure_scratch(qh_cpu_impl *impl, size_t floats);
/* linear for int8 (LLM.int8()) and NF4 weights: cpu_linear_quant.c */
int qh_cpu_linear_quant(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y);

int qh_cpu_embed(qh_backend *be, const qh_tensor *table, const qh_tensor *ids, qh_tensor *out);
int qh_cpu_rmsnorm(qh_backend *be, const qh_tensor *x, const qh_tensor *w, float eps, qh_tensor *out);
int qh_cpu_linear(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y);
int qh_cpu_rope(qh_backend *be, qh_tensor *q, qh_tensor *k, const qh_tensor *positions, int head_dim,
                double theta);
int qh_cpu_attention(qh_backend *be, const qh_tensor *q, const qh_tensor *k, const qh_tensor *v,
                     qh_tensor *out, const qh_batch *batch, int n_heads, int n_kv_heads, int head_dim);
int qh_cpu_silu_mul(qh_backend *be, const qh_tensor *gate, const qh_tensor *up, qh_tensor *out);
int qh_cpu_add(qh_backend *be, qh_tensor *x, const qh_tensor *y);
int qh_cpu_gather_rows(qh_backend *be, const qh_tensor *x, const qh_tensor *rows, qh_tensor *out);

/* Shape checks for programming errors inside the model code (not user input). */
int qh_cpu_check_act(const char *op, const qh_tensor *t, int64_t rows, int64_t cols);

#endif
