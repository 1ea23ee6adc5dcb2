/* Quantized weights on the CUDA backend, host side: placing int8 and nf4 weights on the device,
 * and y (+)= x w^T with them (kernels in cuda_quant.cu; formats in ../quant.h, the device
 * layout in ../quant_gpu_plan.h).
 *
 * int8 (LLM.int8()), per product:
 *   - the input x [T, K] is quantized once and cached (q, k and v share it; so do gate and up):
 *     outlier flags over the batch, the flagged columns compacted, codes and per-token scales;
 *     at threshold 0 the RMSNorm before q/k/v and gate/up writes them itself
 *     (qh_cu_quant_norm_codes), as it writes its output;
 *     the host then reads the number of outlier columns m (one stream synchronisation per
 *     input: the outlier product's shape depends on it);
 *   - int8 x int8 -> int32 on tensor cores (cuBLASLt, CUBLAS_COMPUTE_32I) in chunks of
 *     `chunk` tokens, so the int32 scratch stays chunk x N;
 *   - m > 0: x's outlier columns [T, m] (fp16) times the dequantized weight columns [N, m]
 *     (fp16, w * SCB / 127) through cuBLASLt with fp32 output: into the residual directly for
 *     linear_add, else into an fp32 scratch the epilogue adds;
 *   - the epilogue: (acc * s_t) * (SCB_n / 127), into fp16 activations or added to fp32 y.
 * nf4: up to 32 tokens the fused kernel (codes read once, tensor cores); beyond, the weight is
 * dequantized into one of two reused fp16 buffers and cuBLASLt multiplies, while the weight
 * expected next is dequantized into the other on a second stream (nf4_prefetch). */
#include "cuda_quant.h"
#include "cuda_internal.h"
#include "qh_cuda.h"

#include "../error.h"
#include "../quant.h"
#include "../quant_gpu_plan.h"

#include <stdlib.h>
#include <string.h>

#define INT8_CHUNK_DEFAULT 4096
/* 48 MiB: gate_proj and down_proj of LLaMA-2-7B (90 MB of fp16) in two parts, the attention
 * projections (32 MB) whole */
#define NF4_PART_BYTES_DEFAULT ((size_t)48 << 20)
#define NF4_ORDER_MAX 1024 /* weights whose successor is remembered (a 7B model has 224) */

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
    /* RMSNorm writes the codes of its output (qh_cu_quant_norm_codes): the width k of the
     * threshold-0 products fed by a norm, and their padded width kp (0: none seen yet) */
    int64_t norm_k, norm_kp;
    int no_norm_codes;
    dbuf xq, sx, flags, idx, mdev, xo, wo, acc, acc2, yo;
    int *m_host, *m_host_dev; /* mapped pinned: the outlier count */
    /* nf4, dequantize + cuBLASLt: two fp16 weight buffers. While one feeds a product, the weight
     * that followed this one last time (order[], learned as the products come) is dequantized into
     * the other on a second stream, so the next product finds it ready. */
    dbuf deq[2], fscratch;
    const qh_tensor *deq_w[2]; /* the weight each buffer holds or is receiving; NULL: none */
    int deq_part[2];           /* and which part of it */
    size_t part_bytes;         /* fp16 bytes of a dequantized part at most */
    int deq_last;              /* buffer of the latest product */
    cudaStream_t side;
    cudaEvent_t ready[2], freed[2];
    struct {
        const qh_tensor *w, *next;
    } order[NF4_ORDER_MAX];
    int n_order;
    const qh_tensor *prev_w;
    int no_prefetch;
    int no_swiglu; /* int8: linear_swiglu runs the plain ops (benchmarks compare) */
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
    q->part_bytes = NF4_PART_BYTES_DEFAULT;
    *slot = *out = q;
    return QH_OK;
}

void qh_cu_quant_free(qh_backend *be)
{
    struct qh_cu_quant **slot = qh_cu_be_quant(be), *q = *slot;
    if (!q) return;
    if (q->side) cudaStreamSynchronize(q->side);
    dbuf *bufs[] = {&q->xq, &q->xo, &q->sx, &q->flags, &q->idx, &q->mdev, &q->wo,
                    &q->acc, &q->acc2, &q->yo, &q->deq[0], &q->deq[1], &q->fscratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) qh_cu_be_free(be, bufs[i]->p, bufs[i]->cap);
    if (q->m_host) cudaFreeHost(q->m_host);
    for (int i = 0; i < 2; i++) {
        if (q->ready[i]) cudaEventDestroy(q->ready[i]);
        if (q->freed[i]) cudaEventDestroy(q->freed[i]);
    }
    if (q->side) cudaStreamDestroy(q->side);
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
    if (thr == 0 && (kind == QH_CUDA_OP_GEMM_QKV || kind == QH_CUDA_OP_GEMM_GATE_UP)) /* inputs a norm wrote */
        q->norm_k = k, q->norm_kp = kp;
    qh_cu_be_mark(be, QH_CUDA_OP_INT8_ACT);
    return QH_OK;
}

int qh_cu_quant_norm_codes(qh_backend *be, int64_t t, int64_t h, qh_cu_norm_codes *c)
{
    struct qh_cu_quant *q = *qh_cu_be_quant(be);
    c->xq = NULL, c->sx = NULL, c->kp = 0;
    if (!q || q->no_norm_codes || q->norm_kp == 0 || q->norm_k != h || t <= 0) return QH_OK;
    int rc = ensure(be, &q->xq, (size_t)((t + 3) / 4 * 4 * q->norm_kp), 0);
    if (!rc) rc = ensure(be, &q->sx, sizeof(float) * (size_t)t, 0);
    if (rc) return rc;
    q->x_valid = 0; /* the buffers are being overwritten */
    c->xq = q->xq.p, c->sx = q->sx.p, c->kp = q->norm_kp;
    return QH_OK;
}

void qh_cu_quant_norm_written(qh_backend *be, const qh_tensor *out)
{
    struct qh_cu_quant *q = *qh_cu_be_quant(be);
    q->x_ptr = out->data, q->x_t = qh_tensor_rows(out), q->x_k = qh_tensor_cols(out), q->x_kp = q->norm_kp;
    q->x_thr = 0, q->x_gen = qh_cu_be_generation(be), q->m = q->mp = 0;
    q->x_valid = 1;
    q->st.int8_norm_inputs++;
}

/* A product wrote [p, p + bytes): a cached quantized input whose fp16 source lies there is stale
 * (the products bypass the generation counter, which covers every other op). */
static void i8_written(struct qh_cu_quant *q, const void *p, size_t bytes)
{
    const char *xb = q->x_ptr, *yb = p;
    if (yb < xb + (size_t)(q->x_t * q->x_k) * 2 && xb < yb + bytes) q->x_valid = 0;
}

/* acc[tc, np] = xq[tc, kp] w^T in int32: cuBLASLt's tensor cores, or the plain kernel for shapes
 * they refuse. */
static int i8_product(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *w, const int8_t *xq, int32_t *acc,
                      int64_t n, int64_t np, int64_t kp, int64_t tc)
{
    int rc = qh_cu_be_gemm_i8(be, w->data, xq, acc, np, kp, (tc + 3) / 4 * 4); /* rows past tc: ignored */
    if (rc == 1) {
        rc = qh_cu_be_err((cudaError_t)qh_cu_i8_gemm_simple(qh_cu_be_stream(be), w->data, xq, acc, n, kp, tc, np),
                          "int8 product");
        q->st.int8_plain_products++;
    } else if (!rc) {
        q->st.int8_tc_products++;
    }
    return rc;
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
        rc = i8_product(be, q, w, xq, q->acc.p, n, np, kp, tc);
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
    i8_written(q, y->data, (size_t)(t * n) * es);
    qh_cu_be_mark(be, kind);
    return rc;
}

int qh_cu_quant_swiglu(qh_backend *be, const qh_tensor *x, const qh_tensor *wg, const qh_tensor *wu, qh_tensor *gate,
                       qh_tensor *up)
{
    int64_t t = qh_tensor_rows(x), k = qh_tensor_cols(x), n = wg->ndim == 2 ? wg->shape[0] : -1;
    if (wg->ndim != 2 || wu->ndim != 2 || wu->shape[0] != n || wg->shape[1] != k || wu->shape[1] != k ||
        wg->quant.threshold != wu->quant.threshold || x->dtype != QH_F16 || gate->dtype != QH_F16 ||
        up->dtype != QH_F16 || qh_tensor_rows(gate) != t || qh_tensor_cols(gate) != n || qh_tensor_rows(up) != t ||
        qh_tensor_cols(up) != n || wg->device != QH_DEVICE_CUDA || wu->device != QH_DEVICE_CUDA)
        return 1;
    qh_quant_dev_layout l;
    qh_quant_dev_layout_of(wg, &l);
    const int64_t kp = l.cols_pad, np = l.rows_pad;
    struct qh_cu_quant *q;
    int rc = state(be, &q);
    if (rc) return rc;
    if (q->no_swiglu || t == 0 || n == 0) return 1;
    /* The second product's int32 [chunk, np] goes into up's fp16 [t, n] (chunk <= t n / (2 np)):
     * no memory beyond the plain path's. Small batches, where that would cut the products into
     * chunks of a few tokens, get a scratch of their own instead (at most 16 MiB). */
    const int64_t t4 = (t + 3) / 4 * 4;
    int64_t chunk = (q->chunk + 3) / 4 * 4, in_up = (t * n / 2) / (np > 0 ? np : 1) / 4 * 4;
    if (chunk > t4) chunk = t4;
    int32_t *acc_u = up->data;
    if (in_up < chunk && (size_t)(chunk * np) * sizeof(int32_t) <= ((size_t)16 << 20)) {
        rc = ensure(be, &q->acc2, sizeof(int32_t) * (size_t)(chunk * np), 0);
        if (rc) return rc;
        acc_u = q->acc2.p;
    } else if (in_up < chunk) {
        chunk = in_up;
    }
    if (chunk < 4 || (uintptr_t)acc_u % 16) return 1;
    rc = i8_prepare(be, q, x, t, k, kp, wg->quant.threshold, QH_CUDA_OP_GEMM_GATE_UP);
    if (rc) return rc;
    if (q->m > 0) return 1; /* the outlier columns' fp16 products: the plain path adds them */
    rc = ensure(be, &q->acc, sizeof(int32_t) * (size_t)(chunk * np), 0);
    cudaStream_t s = qh_cu_be_stream(be);
    for (int64_t t0 = 0; !rc && t0 < t; t0 += chunk) {
        int64_t tc = t - t0 < chunk ? t - t0 : chunk;
        const int8_t *xq = (const int8_t *)q->xq.p + t0 * kp;
        rc = i8_product(be, q, wg, xq, q->acc.p, n, np, kp, tc);
        if (!rc) rc = i8_product(be, q, wu, xq, acc_u, n, np, kp, tc);
        qh_cu_be_mark(be, QH_CUDA_OP_GEMM_GATE_UP);
        if (!rc)
            rc = qh_cu_be_err((cudaError_t)qh_cu_i8_swiglu(s, q->acc.p, acc_u, np, (const float *)q->sx.p + t0,
                                                           wg->quant.scale, wu->quant.scale,
                                                           (uint16_t *)gate->data + t0 * n, tc, n),
                              "int8 SwiGLU");
        qh_cu_be_mark(be, QH_CUDA_OP_SILU_MUL);
    }
    i8_written(q, gate->data, (size_t)(t * n) * 2);
    i8_written(q, up->data, (size_t)(t * n) * 2);
    return rc;
}

/* ---- nf4 products --------------------------------------------------------------------------- */

static qh_cu_nf4 nf4_desc(const qh_tensor *w)
{
    qh_cu_nf4 d = {.codes = w->data, .absmax = w->quant.scale, .qabsmax = w->quant.qabsmax,
                   .nested = w->quant.nested_absmax, .offset = w->quant.nested_offset,
                   .blocksize = w->quant.blocksize, .blocksize_shift = -1, .nested_shift = 0};
    for (int b = QH_NF4_NESTED_BLOCK; b > 1; b >>= 1) d.nested_shift++;
    if (!(d.blocksize & (d.blocksize - 1)))
        for (int b = d.blocksize, sh = 0; b >= 1; b >>= 1, sh++) d.blocksize_shift = sh;
    return d;
}

/* Dequantized weights go through the buffers in parts of at most part_bytes of fp16 (whole
 * rows): a product is one cuBLASLt call per part, writing its columns of y. Parts keep the two
 * buffers as small as one whole gate_proj would take. */
static int64_t nf4_part_rows(const struct qh_cu_quant *q, const qh_tensor *w)
{
    int64_t n = w->shape[0], k = w->shape[1] > 0 ? w->shape[1] : 1;
    int64_t rows = (int64_t)(q->part_bytes / (sizeof(uint16_t) * (size_t)k));
    if (rows < 1) rows = 1;
    if (rows >= n) return n > 0 ? n : 1;
    rows = (n + (n + rows - 1) / rows - 1) / ((n + rows - 1) / rows); /* equal parts */
    /* multiples of 128 rows: each part's slice of y starts 256-byte aligned (fp16), as cuBLASLt's
     * kernels assume by default, and on whole code bytes */
    rows = (rows + 127) / 128 * 128;
    return rows < n ? rows : n;
}

/* Rows [*r0, *r0 + *rows) of w form part `part`. */
static void nf4_part(const struct qh_cu_quant *q, const qh_tensor *w, int part, int64_t *r0, int64_t *rows)
{
    int64_t pr = nf4_part_rows(q, w), n = w->shape[0];
    *r0 = pr * part;
    *rows = n - *r0 < pr ? n - *r0 : pr;
}

static int nf4_parts(const struct qh_cu_quant *q, const qh_tensor *w)
{
    int64_t pr = nf4_part_rows(q, w);
    return (int)((w->shape[0] + pr - 1) / pr);
}

static int nf4_dequant_part(cudaStream_t s, const struct qh_cu_quant *q, const qh_tensor *w, int part, void *out)
{
    int64_t r0, rows;
    nf4_part(q, w, part, &r0, &rows);
    return qh_cu_be_err((cudaError_t)qh_cu_nf4_dequant(s, nf4_desc(w), r0 * w->shape[1], rows * w->shape[1], out),
                        "nf4 dequantize");
}

/* *cur: the buffer holding part `part` of w dequantized, once the main stream gets there: the
 * prefetched one, or the other buffer filled now on the main stream. */
static int nf4_weight_buffer(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *w, int part, int *cur)
{
    cudaStream_t s = qh_cu_be_stream(be);
    size_t bytes = sizeof(uint16_t) * (size_t)(nf4_part_rows(q, w) * w->shape[1]);
    int rc = QH_OK;
    if (!q->no_prefetch && !q->side) {
        rc = qh_cu_be_err(cudaStreamCreateWithFlags(&q->side, cudaStreamNonBlocking), "cudaStreamCreate");
        for (int i = 0; !rc && i < 2; i++) {
            rc = qh_cu_be_err(cudaEventCreateWithFlags(&q->ready[i], cudaEventDisableTiming), "cudaEventCreate");
            if (!rc) rc = qh_cu_be_err(cudaEventCreateWithFlags(&q->freed[i], cudaEventDisableTiming), "cudaEventCreate");
        }
        if (rc) return rc;
    }
    const int nbuf = q->side ? 2 : 1;
    if (q->deq[0].cap < bytes || (nbuf == 2 && q->deq[1].cap < bytes)) {
        /* growing (the first layers only): nothing may be writing the old buffers */
        if (q->side) rc = qh_cu_be_err(cudaStreamSynchronize(q->side), "synchronize");
        for (int i = 0; !rc && i < nbuf; i++) {
            rc = ensure(be, &q->deq[i], bytes, 0);
            q->deq_w[i] = NULL;
        }
        /* the side stream may use the new memory only once the main stream has made it */
        if (!rc && q->side) rc = qh_cu_be_err(cudaStreamSynchronize(s), "synchronize");
        if (rc) return rc;
    }
    for (int i = 0; i < nbuf; i++)
        if (q->deq_w[i] == w && q->deq_part[i] == part) {
            *cur = i;
            return q->side ? qh_cu_be_err(cudaStreamWaitEvent(s, q->ready[i], 0), "cudaStreamWaitEvent") : QH_OK;
        }
    int c = nbuf == 2 ? q->deq_last ^ 1 : 0;
    /* a mispredicted prefetch may still be writing this buffer */
    if (q->side) rc = qh_cu_be_err(cudaStreamWaitEvent(s, q->ready[c], 0), "cudaStreamWaitEvent");
    if (!rc) rc = nf4_dequant_part(s, q, w, part, q->deq[c].p);
    q->deq_w[c] = rc ? NULL : w;
    q->deq_part[c] = part;
    *cur = c;
    return rc;
}

/* After part `part` of w went to the main stream from buffer cur: the next part, or past the
 * last one the weight that followed w last time (learned here), is dequantized into the other
 * buffer on the side stream, once the product that last read that buffer is done. */
static int nf4_prefetch(struct qh_cu_quant *q, const qh_tensor *w, int part, int cur)
{
    q->deq_last = cur;
    const qh_tensor *next = w;
    int next_part = part + 1;
    if (next_part >= nf4_parts(q, w)) {
        next = NULL, next_part = 0;
        int found_prev = 0;
        for (int i = 0; i < q->n_order; i++) {
            if (q->order[i].w == q->prev_w) q->order[i].next = w, found_prev = 1;
            if (q->order[i].w == w) next = q->order[i].next;
        }
        if (q->prev_w && !found_prev && q->n_order < NF4_ORDER_MAX) {
            q->order[q->n_order].w = q->prev_w, q->order[q->n_order].next = w;
            q->n_order++;
        }
        q->prev_w = w;
    }
    if (!q->side || !next || (next == w && next_part == part) || next->dtype != QH_NF4 || next->ndim != 2)
        return QH_OK;
    const int o = cur ^ 1;
    if ((q->deq_w[o] == next && q->deq_part[o] == next_part) ||
        sizeof(uint16_t) * (size_t)(nf4_part_rows(q, next) * next->shape[1]) > q->deq[o].cap)
        return QH_OK;
    int rc = qh_cu_be_err(cudaStreamWaitEvent(q->side, q->freed[o], 0), "cudaStreamWaitEvent");
    if (!rc) rc = nf4_dequant_part(q->side, q, next, next_part, q->deq[o].p);
    if (!rc) rc = qh_cu_be_err(cudaEventRecord(q->ready[o], q->side), "cudaEventRecord");
    q->deq_w[o] = rc ? NULL : next;
    q->deq_part[o] = next_part;
    return rc;
}

void qh_cu_quant_forget(qh_backend *be)
{
    struct qh_cu_quant *q = *qh_cu_be_quant(be);
    if (!q) return;
    if (q->side) cudaStreamSynchronize(q->side);
    q->deq_w[0] = q->deq_w[1] = NULL;
    q->n_order = 0;
    q->prev_w = NULL;
}

void qh_cuda_set_int8_swiglu(qh_backend *be, int on)
{
    struct qh_cu_quant *q;
    if (!state(be, &q)) q->no_swiglu = !on;
}

void qh_cuda_set_int8_norm_codes(qh_backend *be, int on)
{
    struct qh_cu_quant *q;
    if (!state(be, &q)) q->no_norm_codes = !on, q->x_valid = 0;
}

void qh_cuda_set_nf4_part_bytes(qh_backend *be, size_t bytes)
{
    struct qh_cu_quant *q;
    if (state(be, &q)) return;
    qh_cu_quant_forget(be);
    q->part_bytes = bytes ? bytes : NF4_PART_BYTES_DEFAULT;
}

void qh_cuda_set_nf4_prefetch(qh_backend *be, int on)
{
    struct qh_cu_quant *q;
    if (state(be, &q)) return;
    qh_cu_quant_forget(be);
    q->no_prefetch = !on;
}

static int nf4_linear(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *x, const qh_tensor *w, qh_tensor *y,
                      int64_t t, int64_t k, int64_t n, int accumulate, int kind)
{
    cudaStream_t s = qh_cu_be_stream(be);
    qh_cu_nf4 d = nf4_desc(w);
    const int f32y = y->dtype == QH_F32;
    qh_nf4_fused_plan p;
    int rc = QH_OK;
    if (!q->no_fused && qh_nf4_fused_plan_of(t, n, k, w->quant.blocksize, qh_cu_be_sm_count(be), &p) &&
        ((uintptr_t)x->data | (uintptr_t)w->data) % 8 == 0) {
        if (p.splits > 1) rc = ensure(be, &q->fscratch, sizeof(float) * (size_t)p.splits * (size_t)(t * n), 0);
        if (!rc)
            rc = qh_cu_be_err((cudaError_t)qh_cu_nf4_fused(s, d, x->data, t, n, k, p.token_tiles, p.splits, p.kr,
                                                           p.bs_shift, p.smem, y->data, f32y ? QH_CU_F32 : QH_CU_F16,
                                                           accumulate, q->fscratch.p),
                              "nf4 fused product");
        q->st.nf4_fused++;
        qh_cu_be_mark(be, kind);
        return rc;
    }
    const int parts = nf4_parts(q, w);
    for (int part = 0; !rc && part < parts; part++) {
        int cur = -1;
        int64_t r0, rows;
        nf4_part(q, w, part, &r0, &rows);
        rc = nf4_weight_buffer(be, q, w, part, &cur);
        qh_cu_be_mark(be, QH_CUDA_OP_NF4_DEQUANT);
        /* y[:, r0 : r0 + rows] (+)= x wpart^T */
        if (!rc)
            rc = qh_cu_be_gemm_f16_cols(be, x, q->deq[cur].p, rows, (char *)y->data + (size_t)r0 * (f32y ? 4 : 2),
                                        y->dtype, n, accumulate ? 1.0f : 0.0f);
        if (!rc && q->side) rc = qh_cu_be_err(cudaEventRecord(q->freed[cur], s), "cudaEventRecord");
        if (!rc) rc = nf4_prefetch(q, w, part, cur);
    }
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
