/* The CUDA backend's ops (backend.h's table): matrix products through cuBLASLt (cuda_gemm.c) or
 * cuda_quant.c for quantized weights, and the kernels of cuda_kernels.cu and cuda_attention.cu
 * behind shape and dtype checks, each followed by its profiling mark. The backend's memory,
 * downloads, graphs and lifetime are in cuda_backend.c. */
#include "cuda_backend_impl.h"

#include "../error.h"

#include <library_types.h>
#include <math.h>
#include <stdlib.h>

/* ---- checks ----------------------------------------------------------------------------------- */

static int check(const char *op, const qh_tensor *t, int64_t rows, int64_t cols, int types)
{
    /* types: bit 0 F16 allowed, bit 1 F32 allowed */
    int ok = (t->dtype == QH_F16 && (types & 1)) || (t->dtype == QH_F32 && (types & 2));
    if (!ok || qh_tensor_rows(t) != rows || qh_tensor_cols(t) != cols) {
        char buf[64];
        return qh_fail(QH_ESYS, "%s: internal error: expected %s[%lld, %lld], got %s %s", op,
                       types == 1 ? "F16 " : types == 2 ? "F32 " : "", (long long)rows, (long long)cols,
                       qh_dtype_name(t->dtype), qh_shape_str(t, buf, sizeof buf));
    }
    return QH_OK;
}

/* ---- matrix products (cuBLASLt) ------------------------------------------------------------- */

/* y[t, 0:n] (+)= x[t, k] w[n, k]^T through cuBLASLt (cuda_gemm.c), then the profiling mark of the
 * product's kind. */
static int lt_gemm(qh_backend *be, const void *x, const void *w, void *y, int64_t t, int64_t n, int64_t k, int64_t ldc,
                   cudaDataType_t in_type, cudaDataType_t y_type, float beta, const char *op)
{
    if (t == 0 || n == 0) return QH_OK;
    int rc = qh_cu_gemm_float(((cu_impl *)be->impl)->gemm, x, w, y, t, n, k, ldc, in_type, y_type, beta, op);
    int64_t width = ldc > n ? ldc : n; /* the whole output's columns */
    int kind = beta != 0 ? (k > width ? QH_CUDA_OP_GEMM_DOWN : QH_CUDA_OP_GEMM_O)
                         : (width > k ? QH_CUDA_OP_GEMM_GATE_UP : QH_CUDA_OP_GEMM_QKV);
    qh_cu_be_mark(be, kind);
    return rc;
}

static int gemm(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y, float beta, const char *op)
{
    int64_t t = qh_tensor_rows(x), k = qh_tensor_cols(x), n = qh_tensor_rows(w);
    /* fp16 weights and input (fp16 or fp32 output), or all fp32 (the fp32 mode) */
    int f32 = w->dtype == QH_F32;
    if (w->ndim != 2 || w->shape[1] != k || (w->dtype != QH_F16 && !f32))
        return qh_fail(QH_ESYS, "%s: internal error: weight is not F16/F32 [N, %lld]", op, (long long)k);
    int rc = check(op, x, t, k, f32 ? 2 : 1);
    if (!rc) rc = check(op, y, t, n, f32 ? 2 : 3);
    if (rc) return rc;
    return lt_gemm(be, x->data, w->data, y->data, t, n, k, n, f32 ? CUDA_R_32F : CUDA_R_16F,
                   y->dtype == QH_F32 ? CUDA_R_32F : CUDA_R_16F, beta, op);
}

static int cu_linear(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y)
{
    if (qh_tensor_is_quantized(w)) return qh_cu_quant_linear(be, x, w, y, 0);
    ((cu_impl *)be->impl)->gen++;
    return gemm(be, x, w, y, 0.0f, "linear");
}

static int cu_linear_add(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y)
{
    if (qh_tensor_is_quantized(w)) return qh_cu_quant_linear(be, x, w, y, 1);
    ((cu_impl *)be->impl)->gen++;
    return gemm(be, x, w, y, 1.0f, "linear_add");
}

int qh_cu_be_gemm_f16(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y, float beta)
{
    return gemm(be, x, w, y, beta, beta != 0 ? "linear_add" : "linear");
}

int qh_cu_be_gemm_f16_cols(qh_backend *be, const qh_tensor *x, const void *w, int64_t rows, void *y, qh_dtype ytype,
                           int64_t ldc, float beta)
{
    if (x->dtype != QH_F16 || (ytype != QH_F16 && ytype != QH_F32) || rows > ldc)
        return qh_fail(QH_ESYS, "linear: internal error: column-slice product of %s input", qh_dtype_name(x->dtype));
    return lt_gemm(be, x->data, w, y, qh_tensor_rows(x), rows, qh_tensor_cols(x), ldc, CUDA_R_16F,
                   ytype == QH_F32 ? CUDA_R_32F : CUDA_R_16F, beta, beta != 0 ? "linear_add" : "linear");
}

int qh_cu_be_gemm_i8(qh_backend *be, const int8_t *w, const int8_t *xq, int32_t *acc, int64_t n, int64_t k, int64_t t)
{
    return qh_cu_gemm_int8(((cu_impl *)be->impl)->gemm, w, xq, acc, n, k, t);
}

/* ---- rotary tables ---------------------------------------------------------------------------- */

static int rope_table(qh_backend *be, int hd, double theta, int n_pos, qh_cuda_rope_tab *tab)
{
    cu_impl *im = be->impl;
    if (n_pos < 4096) n_pos = 4096;
    if (!im->rope_cs || im->rope_hd != hd || im->rope_theta != theta || im->rope_npos < n_pos) {
        int half = hd / 2;
        size_t ncs = (size_t)n_pos * half;
        float2 *cs = malloc(ncs * sizeof *cs);
        double *inv = malloc((size_t)half * sizeof *inv);
        int rc = cs && inv ? QH_OK : qh_fail(QH_ESYS, "out of memory");
        if (!rc) {
            for (int i = 0; i < half; i++) inv[i] = pow(theta, -2.0 * i / hd); /* as the CPU backend */
            for (int p = 0; p < n_pos; p++)
                for (int i = 0; i < half; i++) {
                    double a = (double)p * inv[i];
                    cs[(size_t)p * half + i].x = (float)cos(a);
                    cs[(size_t)p * half + i].y = (float)sin(a);
                }
        }
        qh_cu_be_free(be, im->rope_cs, (size_t)im->rope_npos * (im->rope_hd / 2) * sizeof(float2));
        qh_cu_be_free(be, im->rope_inv, (size_t)(im->rope_hd / 2) * sizeof(double));
        im->rope_cs = NULL, im->rope_inv = NULL;
        if (!rc) rc = qh_cu_be_alloc(be, ncs * sizeof *cs, (void **)&im->rope_cs);
        if (!rc) rc = qh_cu_be_alloc(be, (size_t)half * sizeof *inv, (void **)&im->rope_inv);
        if (!rc) rc = cuda_err(cudaMemcpyAsync(im->rope_cs, cs, ncs * sizeof *cs, cudaMemcpyHostToDevice, im->stream), "rope table");
        if (!rc) rc = cuda_err(cudaMemcpyAsync(im->rope_inv, inv, half * sizeof *inv, cudaMemcpyHostToDevice, im->stream), "rope table");
        free(cs);
        free(inv);
        if (rc) {
            qh_cu_be_free(be, im->rope_cs, ncs * sizeof *cs);
            qh_cu_be_free(be, im->rope_inv, (size_t)half * sizeof *inv);
            im->rope_cs = NULL, im->rope_inv = NULL;
            return rc;
        }
        im->rope_hd = hd, im->rope_theta = theta, im->rope_npos = n_pos; /* (qh_cu_be_free above bumped
                                                                            * the epoch: graphs are stale) */
    }
    tab->cs = im->rope_cs;
    tab->inv_freq = im->rope_inv;
    tab->n_pos = im->rope_npos;
    return QH_OK;
}

/* ---- ops -------------------------------------------------------------------------------------- */

static int cu_embed(qh_backend *be, const qh_tensor *table, const qh_tensor *ids, qh_tensor *out)
{
    cu_impl *im = be->impl;
    int64_t t = qh_tensor_numel(ids), h = qh_tensor_cols(table);
    int rc = check("embed", out, t, h, 3);
    if (rc) return rc;
    if ((table->dtype != QH_F16 && table->dtype != QH_F32) || ids->dtype != QH_I32)
        return qh_fail(QH_ESYS, "embed: internal error: dtypes");
    rc = launch_err(qh_cu_embed(im->stream, table->data, cu_type(table->dtype), qh_tensor_rows(table), h, ids->data, t,
                                out->data, cu_type(out->dtype), im->err_dev),
                    "embed");
    qh_cu_be_mark(be, QH_CUDA_OP_EMBED);
    return rc;
}

static int cu_rmsnorm(qh_backend *be, const qh_tensor *x, const qh_tensor *w, float eps, qh_tensor *out)
{
    cu_impl *im = be->impl;
    int64_t t = qh_tensor_rows(x), h = qh_tensor_cols(x);
    int rc = check("rmsnorm(x)", x, t, h, 3);
    if (!rc) rc = check("rmsnorm(out)", out, t, h, 3);
    if (rc) return rc;
    if (qh_tensor_numel(w) != h || cu_type(w->dtype) < 0) return qh_fail(QH_ESYS, "rmsnorm: internal error: weight");
    qh_cu_norm_codes codes = {0};
    if (out->dtype == QH_F16) rc = qh_cu_quant_norm_codes(be, t, h, &codes);
    if (!rc)
        rc = launch_err(qh_cu_rmsnorm(im->stream, x->data, cu_type(x->dtype), w->data, cu_type(w->dtype), eps, out->data,
                                      cu_type(out->dtype), t, h, codes.xq, codes.sx, codes.kp),
                        "rmsnorm");
    qh_cu_be_mark(be, QH_CUDA_OP_RMSNORM);
    if (!rc && codes.xq) qh_cu_quant_norm_written(be, out); /* after the mark: the generation it bumped */
    return rc;
}

static int cu_rope(qh_backend *be, qh_tensor *q, qh_tensor *k, const qh_tensor *positions, int head_dim, double theta)
{
    cu_impl *im = be->impl;
    int64_t t = qh_tensor_rows(q);
    if (head_dim <= 0 || head_dim % 2 || qh_tensor_cols(q) % head_dim || qh_tensor_cols(k) % head_dim ||
        qh_tensor_rows(k) != t || qh_tensor_numel(positions) != t || k->dtype != q->dtype || cu_type(q->dtype) < 0)
        return qh_fail(QH_ESYS, "rope: internal error: shapes or dtypes");
    qh_cuda_rope_tab tab;
    int rc = rope_table(be, head_dim, theta, 0, &tab);
    if (!rc)
        rc = launch_err(qh_cu_rope(im->stream, q->data, cu_type(q->dtype), t, (int)(qh_tensor_cols(q) / head_dim),
                                   head_dim, positions->data, tab),
                        "rope");
    if (!rc)
        rc = launch_err(qh_cu_rope(im->stream, k->data, cu_type(k->dtype), t, (int)(qh_tensor_cols(k) / head_dim),
                                   head_dim, positions->data, tab),
                        "rope");
    qh_cu_be_mark(be, QH_CUDA_OP_ROPE);
    return rc;
}

static int attention_common(qh_backend *be, const qh_tensor *q, const qh_tensor *k, const qh_tensor *v,
                            qh_tensor *out, const qh_batch *batch, int n_heads, int n_kv_heads, int head_dim,
                            const qh_tensor *positions, double theta)
{
    cu_impl *im = be->impl;
    int64_t t = batch->n_tokens;
    int64_t qw = (int64_t)n_heads * head_dim, kw = (int64_t)n_kv_heads * head_dim;
    int ty = q->dtype == QH_F32 ? 2 : 1; /* all fp16, or all fp32 */
    int rc = check("attention(q)", q, t, qw, ty);
    if (!rc) rc = check("attention(k)", k, t, kw, ty);
    if (!rc) rc = check("attention(v)", v, t, kw, ty);
    if (!rc) rc = check("attention(out)", out, t, qw, ty);
    if (rc) return rc;
    if (n_kv_heads <= 0 || n_heads % n_kv_heads || head_dim <= 0 || head_dim % 2 || head_dim > 256)
        return qh_fail(QH_ESYS, "attention: internal error: heads (%d, %d, head_dim %d)", n_heads, n_kv_heads, head_dim);
    qh_cuda_rope_tab tab;
    if (positions) {
        if (qh_tensor_numel(positions) != t) return qh_fail(QH_ESYS, "attention: internal error: positions");
        rc = rope_table(be, head_dim, theta, batch->max_len, &tab);
        if (rc) return rc;
    }
    int kind = im->attn_kind;
    if (head_dim % 16 || !qh_cu_attention_tc_supported(head_dim)) kind = QH_CUDA_ATTN_SIMPLE;
    rc = launch_err(qh_cu_attention(im->stream, im->sms, kind, ty == 2, q->data, k->data, v->data, out->data, batch->starts.data,
                                    positions ? positions->data : NULL, batch->n_seqs, batch->n_tokens, batch->max_len,
                                    n_heads, n_kv_heads, head_dim, positions ? &tab : NULL),
                    "attention");
    qh_cu_be_mark(be, QH_CUDA_OP_ATTENTION);
    return rc;
}

static int cu_attention(qh_backend *be, const qh_tensor *q, const qh_tensor *k, const qh_tensor *v, qh_tensor *out,
                        const qh_batch *batch, int n_heads, int n_kv_heads, int head_dim)
{
    return attention_common(be, q, k, v, out, batch, n_heads, n_kv_heads, head_dim, NULL, 0);
}

static int cu_rope_attention(qh_backend *be, const qh_tensor *q, const qh_tensor *k, const qh_tensor *v,
                             qh_tensor *out, const qh_batch *batch, int n_heads, int n_kv_heads, int head_dim,
                             double theta)
{
    return attention_common(be, q, k, v, out, batch, n_heads, n_kv_heads, head_dim, &batch->positions, theta);
}

static int cu_silu_mul(qh_backend *be, const qh_tensor *gate, const qh_tensor *up, qh_tensor *out)
{
    cu_impl *im = be->impl;
    int64_t t = qh_tensor_rows(gate), f = qh_tensor_cols(gate);
    int rc = check("silu_mul(gate)", gate, t, f, 3);
    if (!rc) rc = check("silu_mul(up)", up, t, f, 3);
    if (!rc) rc = check("silu_mul(out)", out, t, f, 3);
    if (!rc && (up->dtype != gate->dtype || out->dtype != gate->dtype))
        rc = qh_fail(QH_ESYS, "silu_mul: internal error: mixed dtypes");
    if (rc) return rc;
    rc = launch_err(qh_cu_silu_mul(im->stream, gate->data, up->data, out->data, cu_type(gate->dtype), t * f), "silu_mul");
    qh_cu_be_mark(be, QH_CUDA_OP_SILU_MUL);
    return rc;
}

/* nf4 weights and few tokens: the three products in one launch of the small-batch kernel; int8
 * and few tokens: their three epilogues in one launch; otherwise three plain products. */
static int cu_linear_qkv(qh_backend *be, const qh_tensor *x, const qh_tensor *wq, const qh_tensor *wk,
                         const qh_tensor *wv, qh_tensor *q, qh_tensor *k, qh_tensor *v)
{
    const qh_tensor *w[3] = {wq, wk, wv};
    qh_tensor *y[3] = {q, k, v};
    int rc = wq->dtype == QH_I8 ? qh_cu_quant_i8_qkv(be, x, w, y) : qh_cu_quant_nf4_multi(be, x, w, y, 3, 0);
    if (rc != 1) return rc;
    rc = cu_linear(be, x, wq, q);
    if (!rc) rc = cu_linear(be, x, wk, k);
    if (!rc) rc = cu_linear(be, x, wv, v);
    return rc;
}

/* int8 weights: both products' int32 sums go straight into the SwiGLU kernel (cuda_quant_int8.c),
 * which saves writing and reading back the fp16 gate and up; nf4 weights and few tokens: the
 * small-batch kernel with the SwiGLU in its epilogue; otherwise the three plain ops. */
static int cu_linear_swiglu(qh_backend *be, const qh_tensor *x, const qh_tensor *w_gate, const qh_tensor *w_up,
                            qh_tensor *gate, qh_tensor *up)
{
    if (w_gate->dtype == QH_I8 && w_up->dtype == QH_I8 && qh_tensor_is_quantized(w_gate) && qh_tensor_is_quantized(w_up)) {
        int rc = qh_cu_quant_swiglu(be, x, w_gate, w_up, gate, up);
        if (rc != 1) return rc;
    }
    if (w_gate->dtype == QH_NF4 && w_up->dtype == QH_NF4) {
        const qh_tensor *w[2] = {w_gate, w_up};
        qh_tensor *y[2] = {gate, up};
        int rc = qh_cu_quant_nf4_multi(be, x, w, y, 2, 1);
        if (rc != 1) return rc;
    }
    int rc = cu_linear(be, x, w_gate, gate);
    if (!rc) rc = cu_linear(be, x, w_up, up);
    if (!rc) rc = cu_silu_mul(be, gate, up, gate);
    return rc;
}

static int cu_add(qh_backend *be, qh_tensor *x, const qh_tensor *y)
{
    cu_impl *im = be->impl;
    int64_t t = qh_tensor_rows(x), h = qh_tensor_cols(x);
    int rc = check("add(x)", x, t, h, 3);
    if (!rc) rc = check("add(y)", y, t, h, 3);
    if (rc) return rc;
    rc = launch_err(qh_cu_add(im->stream, x->data, cu_type(x->dtype), y->data, cu_type(y->dtype), t * h), "add");
    qh_cu_be_mark(be, QH_CUDA_OP_ADD);
    return rc;
}

static int cu_gather_rows(qh_backend *be, const qh_tensor *x, const qh_tensor *rows, qh_tensor *out)
{
    cu_impl *im = be->impl;
    int64_t n = qh_tensor_numel(rows), c = qh_tensor_cols(x);
    if (out->dtype != x->dtype || qh_tensor_rows(out) != n || qh_tensor_cols(out) != c || rows->dtype != QH_I32)
        return qh_fail(QH_ESYS, "gather_rows: internal error: shapes");
    int rc = launch_err(qh_cu_gather_rows(im->stream, x->data, qh_tensor_rows(x), c * (int64_t)qh_dtype_size(x->dtype),
                                          rows->data, n, out->data, im->err_dev),
                        "gather_rows");
    qh_cu_be_mark(be, QH_CUDA_OP_GATHER);
    return rc;
}

void qh_cu_ops_install(qh_backend *be)
{
    be->embed = cu_embed;
    be->rmsnorm = cu_rmsnorm;
    be->linear = cu_linear;
    be->linear_add = cu_linear_add;
    be->rope = cu_rope;
    be->attention = cu_attention;
    be->rope_attention = cu_rope_attention;
    be->silu_mul = cu_silu_mul;
    be->linear_swiglu = cu_linear_swiglu;
    be->linear_qkv = cu_linear_qkv;
    be->add = cu_add;
    be->gather_rows = cu_gather_rows;
}
