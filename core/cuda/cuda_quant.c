/* Quantized weights on the CUDA backend, host side: placing int8 and nf4 weights on the device,
 * and y (+)= x w^T with them (kernels in cuda_quant.cu; formats in ../quant.h, the device
 * layout in ../quant_gpu_plan.h).
 *
 * int8 (LLM.int8()), per product:
 *   - the input x [T, K] is quantized once and cached (q, k and v share it; so do gate and up):
 *     outlier flags over the batch, the flagged columns compacted, codes and per-token scales;
 *     the host then reads the number of outlier columns m (one stream synchronisation per
 *     input: the outlier product's shape depends on it);
 *   - int8 x int8 -> int32 on tensor cores (cuBLASLt, CUBLAS_COMPUTE_32I) in chunks of
 *     `chunk` tokens, so the int32 scratch stays chunk x N;
 *   - m > 0: x's outlier columns [T, m] (fp16) times the dequantized weight columns [N, m]
 *     (fp16, w * SCB / 127) through cuBLASLt with fp32 output: into the residual directly for
 *     linear_add, else into an fp32 scratch the epilogue adds;
 *   - the epilogue: (acc * s_t) * (SCB_n / 127), into fp16 activations or added to fp32 y.
 * nf4: up to 32 tokens the fused kernel (codes read once, tensor cores); beyond, the weight is
 * dequantized into one reused fp16 buffer and cuBLASLt multiplies. */
#include "cuda_quant.h"
#include "cuda_internal.h"
#include "qh_cuda.h"

#include "../error.h"
#include "../quant.h"
#include "../quant_gpu_plan.h"

#include <stdlib.h>
#include <string.h>

#define INT8_CHUNK_DEFAULT 4096

typedef struct {
    void *p;
    size_t cap;
} dbuf;

struct qh_cu_quant {
    /* the int8 input cache */
    const void *x_ptr;
    int64_t x_t, x_k, x_kp;
    float x_thr;
    unsigned long x_gen;
    int x_valid, m, mp;
    dbuf xq, sx, flags, idx, mdev, xo, wo, acc, yo;
    int *m_host, *m_host_dev; /* mapped pinned: the outlier count */
    /* nf4 */
    dbuf deq, fscratch, fcount;
    int64_t chunk;
    int no_fused;
    qh_cuda_quant_stats st;
};

static int ensure(qh_backend *be, dbuf *b, size_t bytes, int zero)
{
    if (b->cap >= bytes && b->p) return QH_OK;
    bytes = (bytes + 255) & ~(size_t)255;
    if (bytes < 256) bytes = 256;
    qh_cu_be_free(be, b->p, b->cap);
    b->p = NULL, b->cap = 0;
    int rc = qh_cu_be_alloc(be, bytes, &b->p);
    if (rc) return rc;
    b->cap = bytes;
    if (zero) rc = qh_cu_be_err(cudaMemsetAsync(b->p, 0, bytes, qh_cu_be_stream(be)), "memset");
    return rc;
}

static int state(qh_backend *be, struct qh_cu_quant **out)
{
    struct qh_cu_quant **slot = qh_cu_be_quant(be);
    if (*slot) {
        *out = *slot;
        return QH_OK;
    }
    struct qh_cu_quant *q = calloc(1, sizeof *q);
    if (!q) return qh_fail(QH_ESYS, "out of memory");
    double mids[15];
    for (int i = 0; i < 15; i++) mids[i] = ((double)qh_nf4_levels[i] + (double)qh_nf4_levels[i + 1]) / 2.0;
    int rc = qh_cu_be_err((cudaError_t)qh_cu_quant_init(qh_cu_be_stream(be), qh_nf4_levels, mids), "nf4 tables");
    if (!rc) rc = qh_cu_be_err(cudaHostAlloc((void **)&q->m_host, sizeof(int), cudaHostAllocMapped), "cudaHostAlloc");
    if (!rc) rc = qh_cu_be_err(cudaHostGetDevicePointer((void **)&q->m_host_dev, q->m_host, 0), "cudaHostGetDevicePointer");
    if (rc) {
        if (q->m_host) cudaFreeHost(q->m_host);
        free(q);
        return rc;
    }
    q->chunk = INT8_CHUNK_DEFAULT;
    *slot = *out = q;
    return QH_OK;
}

void qh_cu_quant_free(qh_backend *be)
{
    struct qh_cu_quant **slot = qh_cu_be_quant(be), *q = *slot;
    if (!q) return;
    dbuf *bufs[] = {&q->xq, &q->xo, &q->sx, &q->flags, &q->idx, &q->mdev, &q->wo,
                    &q->acc, &q->yo, &q->deq, &q->fscratch, &q->fcount};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) qh_cu_be_free(be, bufs[i]->p, bufs[i]->cap);
    if (q->m_host) cudaFreeHost(q->m_host);
    free(q);
    *slot = NULL;
}

/* ---- placing weights ----------------------------------------------------------------------- */

size_t qh_cu_quant_bytes(const qh_tensor *w)
{
    qh_quant_dev_layout l;
    return qh_quant_dev_layout_of(w, &l) ? 0 : l.total;
}

/* out: the device tensor for layout l at dev, scales pointing into it. */
static void dev_tensor(const qh_tensor *like, const qh_quant_dev_layout *l, char *dev, qh_tensor *out)
{
    *out = *like;
    out->device = QH_DEVICE_CUDA;
    out->owned = 1;
    out->data = dev;
    out->quant.scale = l->off_scale ? (float *)(dev + l->off_scale) : NULL;
    out->quant.qabsmax = l->off_qabsmax ? (int8_t *)(dev + l->off_qabsmax) : NULL;
    out->quant.nested_absmax = l->off_nested ? (float *)(dev + l->off_nested) : NULL;
}

int qh_cu_quant_weight(qh_backend *be, const qh_tensor *host, qh_tensor *out)
{
    qh_quant_dev_layout l;
    char shape[64];
    if (qh_quant_dev_layout_of(host, &l))
        return qh_fail(QH_EINPUT, "the CUDA backend cannot place a %s weight of shape %s", qh_dtype_name(host->dtype),
                       qh_shape_str(host, shape, sizeof shape));
    void *dev = NULL;
    int rc = qh_cu_be_alloc(be, l.total, &dev);
    if (rc) return rc;
    cudaStream_t s = qh_cu_be_stream(be);
    dev_tensor(host, &l, dev, out);
    int64_t rows = host->shape[0], cols = host->shape[1];
    cudaError_t e = cudaSuccess;
    if (host->dtype == QH_I8) {
        if (l.rows_pad != rows || l.cols_pad != cols) e = cudaMemsetAsync(dev, 0, l.codes_bytes, s);
        if (!e && rows && cols)
            e = cudaMemcpy2DAsync(dev, (size_t)l.cols_pad, host->data, (size_t)cols, (size_t)cols, (size_t)rows,
                                  cudaMemcpyHostToDevice, s);
        if (!e && rows)
            e = cudaMemcpyAsync(out->quant.scale, host->quant.scale, (size_t)rows * sizeof(float), cudaMemcpyHostToDevice, s);
    } else {
        if (l.codes_bytes) e = cudaMemcpyAsync(dev, host->data, l.codes_bytes, cudaMemcpyHostToDevice, s);
        if (!e && l.n_blocks && out->quant.scale)
            e = cudaMemcpyAsync(out->quant.scale, host->quant.scale, (size_t)l.n_blocks * sizeof(float),
                                cudaMemcpyHostToDevice, s);
        if (!e && l.n_blocks && out->quant.qabsmax) {
            e = cudaMemcpyAsync(out->quant.qabsmax, host->quant.qabsmax, (size_t)l.n_blocks, cudaMemcpyHostToDevice, s);
            if (!e)
                e = cudaMemcpyAsync(out->quant.nested_absmax, host->quant.nested_absmax,
                                    (size_t)l.n_nested * sizeof(float), cudaMemcpyHostToDevice, s);
        }
    }
    rc = qh_cu_be_err(e, "quantized weight upload");
    if (rc) {
        qh_cu_be_free(be, dev, l.total);
        out->data = NULL, out->owned = 0;
    }
    return rc;
}

int qh_cuda_quantize(qh_backend *be, const qh_tensor *w, qh_dtype dt, int blocksize, int double_quant,
                     float threshold, qh_tensor *out)
{
    if (w->dtype != QH_F16 || w->device != QH_DEVICE_CUDA || w->ndim != 2 || (dt != QH_I8 && dt != QH_NF4))
        return qh_fail(QH_ESYS, "qh_cuda_quantize: expected a 2-D F16 tensor on the GPU and int8 or nf4");
    int64_t rows = w->shape[0], cols = w->shape[1], n = rows * cols;
    qh_tensor desc = qh_tensor_2d(dt, rows, cols);
    float dummy;
    if (dt == QH_I8) desc.quant.scale = &dummy, desc.quant.threshold = threshold;
    else if (double_quant) desc.quant.qabsmax = (int8_t *)&dummy, desc.quant.blocksize = blocksize;
    else desc.quant.scale = &dummy, desc.quant.blocksize = blocksize;
    qh_quant_dev_layout l;
    if (qh_quant_dev_layout_of(&desc, &l) || (dt == QH_NF4 && blocksize % 2))
        return qh_fail(QH_EINPUT, "qh_cuda_quantize: unsupported shape or blocksize %d", blocksize);
    struct qh_cu_quant *q;
    int rc = state(be, &q); /* the NF4 tables the quantizer reads */
    if (rc) return rc;
    void *dev = NULL;
    rc = qh_cu_be_alloc(be, l.total, &dev);
    if (rc) return rc;
    cudaStream_t s = qh_cu_be_stream(be);
    dev_tensor(&desc, &l, dev, out);
    if (dt == QH_I8) {
        rc = qh_cu_be_err(cudaMemsetAsync(dev, 0, l.codes_bytes, s), "memset");
        if (!rc)
            rc = qh_cu_be_err((cudaError_t)qh_cu_i8_quantize(s, w->data, rows, cols, l.cols_pad, dev, out->quant.scale),
                              "int8 quantize");
    } else if (!double_quant) {
        rc = qh_cu_be_err((cudaError_t)qh_cu_nf4_quantize(s, w->data, n, blocksize, dev, out->quant.scale), "nf4 quantize");
    } else {
        float *amax_dev = NULL, *amax = malloc(sizeof(float) * (size_t)l.n_blocks + 1);
        int8_t *qa = malloc((size_t)l.n_blocks + 1);
        float *nested = malloc(sizeof(float) * (size_t)l.n_nested + 1);
        rc = amax && qa && nested ? QH_OK : qh_fail(QH_ESYS, "out of memory");
        if (!rc) rc = qh_cu_be_alloc(be, sizeof(float) * (size_t)l.n_blocks, (void **)&amax_dev);
        if (!rc) rc = qh_cu_be_err((cudaError_t)qh_cu_nf4_quantize(s, w->data, n, blocksize, dev, amax_dev), "nf4 quantize");
        if (!rc)
            rc = qh_cu_be_err(cudaMemcpyAsync(amax, amax_dev, sizeof(float) * (size_t)l.n_blocks, cudaMemcpyDeviceToHost, s),
                              "download");
        if (!rc) rc = qh_cu_be_err(cudaStreamSynchronize(s), "synchronize");
        if (!rc) {
            qh_nf4_double_quant(amax, l.n_blocks, qa, nested, &out->quant.nested_offset);
            rc = qh_cu_be_err(cudaMemcpyAsync(out->quant.qabsmax, qa, (size_t)l.n_blocks, cudaMemcpyHostToDevice, s), "upload");
        }
        if (!rc)
            rc = qh_cu_be_err(cudaMemcpyAsync(out->quant.nested_absmax, nested, sizeof(float) * (size_t)l.n_nested,
                                              cudaMemcpyHostToDevice, s),
                              "upload");
        if (!rc) rc = qh_cu_be_err(cudaStreamSynchronize(s), "synchronize"); /* the host arrays go now */
        qh_cu_be_free(be, amax_dev, sizeof(float) * (size_t)l.n_blocks);
        free(amax), free(qa), free(nested);
    }
    if (rc) {
        qh_cu_be_free(be, dev, l.total);
        out->data = NULL, out->owned = 0;
    }
    return rc;
}

/* ---- int8 products -------------------------------------------------------------------------- */

/* Quantize x (or reuse the cached result); sets q->m, q->mp. */
static int i8_prepare(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *x, int64_t t, int64_t k, int64_t kp,
                      float thr, int kind)
{
    unsigned long gen = qh_cu_be_generation(be);
    if (q->x_valid && q->x_ptr == x->data && q->x_t == t && q->x_k == k && q->x_kp == kp && q->x_thr == thr &&
        q->x_gen == gen)
        return QH_OK;
    q->x_valid = 0;
    cudaStream_t s = qh_cu_be_stream(be);
    /* rows up to a multiple of 4: the int8 products run on whole groups of 4 tokens */
    int rc = ensure(be, &q->xq, (size_t)((t + 3) / 4 * 4 * kp), 0);
    if (!rc) rc = ensure(be, &q->sx, sizeof(float) * (size_t)t, 0);
    const unsigned char *flags = NULL;
    if (!rc && thr > 0) {
        rc = ensure(be, &q->flags, (size_t)k, 0);
        if (!rc) rc = ensure(be, &q->idx, sizeof(int32_t) * (size_t)k, 0);
        if (!rc) rc = ensure(be, &q->mdev, sizeof(int), 0);
        if (!rc) rc = qh_cu_be_err(cudaMemsetAsync(q->flags.p, 0, (size_t)k, s), "memset");
        if (!rc) rc = qh_cu_be_err((cudaError_t)qh_cu_i8_flags(s, x->data, t, k, thr, q->flags.p), "int8 outliers");
        if (!rc) rc = qh_cu_be_err((cudaError_t)qh_cu_i8_compact(s, q->flags.p, k, q->idx.p, q->mdev.p, q->m_host_dev),
                                   "int8 outliers");
        flags = q->flags.p;
    }
    if (!rc) rc = qh_cu_be_err((cudaError_t)qh_cu_i8_rowquant(s, x->data, t, k, kp, flags, q->xq.p, q->sx.p), "int8 quantize");
    int m = 0;
    if (!rc && thr > 0) {
        rc = qh_cu_be_err(cudaStreamSynchronize(s), "synchronize");
        m = *(volatile int *)q->m_host;
    }
    if (rc) return rc;
    q->m = m;
    q->mp = (m + 7) / 8 * 8;
    if (m > 0) {
        rc = ensure(be, &q->xo, sizeof(uint16_t) * (size_t)(t * q->mp), 0);
        if (!rc) rc = qh_cu_be_err((cudaError_t)qh_cu_i8_gather_x(s, x->data, t, k, q->idx.p, m, q->mp, q->xo.p), "gather");
        if (rc) return rc;
    }
    q->st.int8_inputs[kind]++;
    q->st.int8_outlier_cols[kind] += m;
    if (m > q->st.int8_outlier_max[kind]) q->st.int8_outlier_max[kind] = m;
    q->x_ptr = x->data, q->x_t = t, q->x_k = k, q->x_kp = kp, q->x_thr = thr, q->x_gen = gen;
    q->x_valid = 1;
    qh_cu_be_mark(be, QH_CUDA_OP_INT8_ACT);
    return QH_OK;
}

static int i8_linear(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *x, const qh_tensor *w, qh_tensor *y,
                     int64_t t, int64_t k, int64_t n, int accumulate, int kind)
{
    qh_quant_dev_layout l;
    qh_quant_dev_layout_of(w, &l);
    const int64_t kp = l.cols_pad, np = l.rows_pad;
    cudaStream_t s = qh_cu_be_stream(be);
    int rc = i8_prepare(be, q, x, t, k, kp, w->quant.threshold, kind);
    if (rc) return rc;
    const int m = q->m, mp = q->mp, f32y = y->dtype == QH_F32;
    if (m > 0) {
        rc = ensure(be, &q->wo, sizeof(uint16_t) * (size_t)(n * mp), 0);
        if (!rc)
            rc = qh_cu_be_err((cudaError_t)qh_cu_i8_gather_w(s, w->data, n, kp, w->quant.scale, q->idx.p, m, mp, q->wo.p),
                              "gather");
    }
    const int64_t t4 = (t + 3) / 4 * 4;
    int64_t chunk = (q->chunk + 3) / 4 * 4;
    if (chunk <= 0 || chunk > t4) chunk = t4;
    if (!rc) rc = ensure(be, &q->acc, sizeof(int32_t) * (size_t)(chunk * np), 0);
    if (!rc && m > 0 && !accumulate && !f32y) rc = ensure(be, &q->yo, sizeof(float) * (size_t)(chunk * n), 0);
    size_t es = f32y ? 4 : 2;
    for (int64_t t0 = 0; !rc && t0 < t; t0 += chunk) {
        int64_t tc = t - t0 < chunk ? t - t0 : chunk;
        const int8_t *xq = (const int8_t *)q->xq.p + t0 * kp;
        char *yp = (char *)y->data + (size_t)(t0 * n) * es;
        rc = qh_cu_be_gemm_i8(be, w->data, xq, q->acc.p, np, kp, (tc + 3) / 4 * 4); /* rows past t: ignored */
        if (rc == 1) {
            rc = qh_cu_be_err((cudaError_t)qh_cu_i8_gemm_simple(s, w->data, xq, q->acc.p, n, kp, tc, np), "int8 product");
            q->st.int8_plain_products++;
        } else if (!rc) {
            q->st.int8_tc_products++;
        }
        const float *extra = NULL;
        int epi_acc = accumulate;
        if (!rc && m > 0) {
            qh_tensor xo = qh_tensor_2d(QH_F16, tc, mp), wo = qh_tensor_2d(QH_F16, n, mp);
            xo.data = (char *)q->xo.p + (size_t)(t0 * mp) * 2, wo.data = q->wo.p;
            xo.device = wo.device = QH_DEVICE_CUDA;
            if (accumulate || f32y) { /* the outlier product goes straight into y */
                qh_tensor yv = qh_tensor_2d(y->dtype, tc, n);
                yv.data = yp, yv.device = QH_DEVICE_CUDA;
                rc = qh_cu_be_gemm_f16(be, &xo, &wo, &yv, accumulate ? 1.0f : 0.0f);
                epi_acc = 1;
            } else {
                qh_tensor yo = qh_tensor_2d(QH_F32, tc, n);
                yo.data = q->yo.p, yo.device = QH_DEVICE_CUDA;
                rc = qh_cu_be_gemm_f16(be, &xo, &wo, &yo, 0.0f);
                extra = q->yo.p;
            }
        }
        if (!rc)
            rc = qh_cu_be_err((cudaError_t)qh_cu_i8_epilogue(s, q->acc.p, np, (const float *)q->sx.p + t0, w->quant.scale,
                                                             extra, yp, f32y ? QH_CU_F32 : QH_CU_F16, epi_acc, tc, n),
                              "int8 epilogue");
    }
    /* an output written over the cached input invalidates it */
    const char *xb = q->x_ptr, *yb = y->data;
    if (yb < xb + (size_t)(q->x_t * q->x_k) * 2 && xb < yb + (size_t)(t * n) * es) q->x_valid = 0;
    qh_cu_be_mark(be, kind);
    return rc;
}

/* ---- nf4 products --------------------------------------------------------------------------- */

static int nf4_linear(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *x, const qh_tensor *w, qh_tensor *y,
                      int64_t t, int64_t k, int64_t n, int accumulate, int kind)
{
    cudaStream_t s = qh_cu_be_stream(be);
    qh_cu_nf4 d = {.codes = w->data, .absmax = w->quant.scale, .qabsmax = w->quant.qabsmax,
                   .nested = w->quant.nested_absmax, .offset = w->quant.nested_offset,
                   .blocksize = w->quant.blocksize, .blocksize_shift = -1, .nested_shift = 0};
    for (int b = QH_NF4_NESTED_BLOCK; b > 1; b >>= 1) d.nested_shift++;
    if (!(d.blocksize & (d.blocksize - 1)))
        for (int b = d.blocksize, sh = 0; b >= 1; b >>= 1, sh++) d.blocksize_shift = sh;
    const int f32y = y->dtype == QH_F32;
    qh_nf4_fused_plan p;
    int rc = QH_OK;
    if (!q->no_fused && qh_nf4_fused_plan_of(t, n, k, w->quant.blocksize, qh_cu_be_sm_count(be), &p) &&
        ((uintptr_t)x->data | (uintptr_t)w->data) % 8 == 0) {
        int acc = accumulate;
        if (p.splits > 1 && f32y && !accumulate) {
            rc = qh_cu_be_err(cudaMemsetAsync(y->data, 0, sizeof(float) * (size_t)(t * n), s), "memset");
            acc = 1;
        } else if (p.splits > 1 && !f32y) {
            rc = ensure(be, &q->fscratch, sizeof(float) * (size_t)(QH_NF4_FUSED_MAX_TOKENS * n), 1);
            if (!rc) rc = ensure(be, &q->fcount, sizeof(int) * (size_t)p.row_groups, 1);
        }
        if (!rc)
            rc = qh_cu_be_err((cudaError_t)qh_cu_nf4_fused(s, d, x->data, t, n, k, p.token_tiles, p.splits, p.kr,
                                                           p.bs_shift, p.smem, y->data, f32y ? QH_CU_F32 : QH_CU_F16,
                                                           acc, q->fscratch.p, q->fcount.p),
                              "nf4 fused product");
        q->st.nf4_fused++;
        qh_cu_be_mark(be, kind);
        return rc;
    }
    rc = ensure(be, &q->deq, sizeof(uint16_t) * (size_t)(n * k), 0);
    if (!rc) rc = qh_cu_be_err((cudaError_t)qh_cu_nf4_dequant(s, d, n * k, q->deq.p), "nf4 dequantize");
    qh_cu_be_mark(be, QH_CUDA_OP_NF4_DEQUANT);
    qh_tensor wv = qh_tensor_2d(QH_F16, n, k);
    wv.data = q->deq.p, wv.device = QH_DEVICE_CUDA;
    if (!rc) rc = qh_cu_be_gemm_f16(be, x, &wv, y, accumulate ? 1.0f : 0.0f);
    q->st.nf4_dequant++;
    return rc;
}

int qh_cu_quant_linear(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y, int accumulate)
{
    int64_t t = qh_tensor_rows(x), k = qh_tensor_cols(x), n = w->ndim == 2 ? w->shape[0] : -1;
    const char *op = accumulate ? "linear_add" : "linear";
    char a[64], b[64];
    if (w->ndim != 2 || w->shape[1] != k || w->device != QH_DEVICE_CUDA)
        return qh_fail(QH_ESYS, "%s: internal error: quantized weight %s does not match input %s", op,
                       qh_shape_str(w, a, sizeof a), qh_shape_str(x, b, sizeof b));
    if (x->dtype != QH_F16)
        return qh_fail(QH_EINPUT, "%s: int8 and nf4 weights run with fp16 activations on the GPU, not %s (fp32 mode)", op,
                       qh_dtype_name(x->dtype));
    if ((y->dtype != QH_F16 && y->dtype != QH_F32) || qh_tensor_rows(y) != t || qh_tensor_cols(y) != n)
        return qh_fail(QH_ESYS, "%s: internal error: output %s %s, expected [%lld, %lld]", op, qh_dtype_name(y->dtype),
                       qh_shape_str(y, a, sizeof a), (long long)t, (long long)n);
    struct qh_cu_quant *q;
    int rc = state(be, &q);
    if (rc || t == 0 || n == 0) return rc;
    int kind = accumulate ? (k > n ? QH_CUDA_OP_GEMM_DOWN : QH_CUDA_OP_GEMM_O)
                          : (n > k ? QH_CUDA_OP_GEMM_GATE_UP : QH_CUDA_OP_GEMM_QKV);
    if (w->dtype == QH_NF4) return nf4_linear(be, q, x, w, y, t, k, n, accumulate, kind);
    return i8_linear(be, q, x, w, y, t, k, n, accumulate, kind);
}

/* ---- knobs and statistics ------------------------------------------------------------------- */

void qh_cuda_quant_stats_get(qh_backend *be, qh_cuda_quant_stats *s, int reset)
{
    struct qh_cu_quant *q;
    if (state(be, &q)) {
        memset(s, 0, sizeof *s);
        return;
    }
    *s = q->st;
    if (reset) memset(&q->st, 0, sizeof q->st);
}

void qh_cuda_set_int8_chunk(qh_backend *be, int64_t tokens)
{
    struct qh_cu_quant *q;
    if (!state(be, &q)) q->chunk = tokens > 0 ? tokens : INT8_CHUNK_DEFAULT;
}

void qh_cuda_set_nf4_fused(qh_backend *be, int on)
{
    struct qh_cu_quant *q;
    if (!state(be, &q)) q->no_fused = !on;
}
