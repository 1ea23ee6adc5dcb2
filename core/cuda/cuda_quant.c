/* Quantized weights on the CUDA backend, host side: the shared state, placing int8 and nf4
 * weights on the device, and y (+)= x w^T dispatched to cuda_quant_int8.c or cuda_quant_nf4.c
 * (kernels in cuda_quant.cu; formats in ../quant.h, the device layout in ../quant_gpu_plan.h). */
#include "cuda_quant_state.h"
#include "cuda_internal.h"

#include "../error.h"
#include "../quant.h"
#include "../quant_gpu_plan.h"

#include <stdlib.h>
#include <string.h>

int qh_cu_q_ensure(qh_backend *be, qh_cu_dbuf *b, size_t bytes, int zero)
{
    if (b->cap >= bytes && b->p) return QH_OK;
    bytes = (bytes + 255) & ~(size_t)255;
    if (bytes < 256) bytes = 256;
    /* Small scratch (a few tokens' worth: batch-1 passes) grows to powers of two, so that it
     * settles after a few growths: each one moves memory that recorded graphs read, which then
     * have to be recorded again (cuda_backend.c). Large batches' scratch keeps its exact size. */
    if (bytes <= ((size_t)16 << 20)) {
        size_t p2 = 256;
        while (p2 < bytes) p2 <<= 1;
        bytes = p2;
    }
    qh_cu_be_free(be, b->p, b->cap);
    b->p = NULL, b->cap = 0;
    int rc = qh_cu_be_alloc(be, bytes, &b->p);
    if (rc) return rc;
    b->cap = bytes;
    if (zero) rc = qh_cu_be_err(cudaMemsetAsync(b->p, 0, bytes, qh_cu_be_stream(be)), "memset");
    return rc;
}

int qh_cu_q_state(qh_backend *be, struct qh_cu_quant **out)
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
    if (!rc)
        rc = qh_cu_be_err(cudaHostAlloc((void **)&q->m_host, sizeof(int) * 2 * QH_CUDA_OP_COUNT, cudaHostAllocMapped),
                          "cudaHostAlloc");
    if (!rc) memset(q->m_host, 0, sizeof(int) * 2 * QH_CUDA_OP_COUNT);
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
    qh_cu_dbuf *bufs[] = {&q->xq, &q->xo,  &q->sx, &q->flags, &q->idx,    &q->mdev,   &q->wo,
                          &q->acc, &q->acc2, &q->acc3, &q->yo, &q->yo2, &q->yo3, &q->dstat, &q->deq[0], &q->deq[1]};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) qh_cu_be_free(be, bufs[i]->p, bufs[i]->cap);
    if (q->m_host) cudaFreeHost(q->m_host);
    for (int i = 0; i < 2; i++) {
        if (q->ready[i]) cudaEventDestroy(q->ready[i]);
        if (q->freed[i]) cudaEventDestroy(q->freed[i]);
    }
    if (q->side_idle) cudaEventDestroy(q->side_idle);
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

/* The parts of layout l derived on the device from parts already there: int8's SCB / 127 and
 * nf4's nested absmax / 127 (the factors the kernels multiply by, divided once). One place for
 * both ways a weight arrives: uploaded, or quantized on the GPU. */
static cudaError_t derive_factors(cudaStream_t s, const qh_tensor *out, const qh_quant_dev_layout *l)
{
    char *dev = out->data;
    if (l->off_scale127 && out->shape[0] > 0)
        return (cudaError_t)qh_cu_div127(s, out->quant.scale, (float *)(dev + l->off_scale127), out->shape[0]);
    if (l->off_nested127 && l->n_nested > 0)
        return (cudaError_t)qh_cu_div127(s, out->quant.nested_absmax, (float *)(dev + l->off_nested127), l->n_nested);
    return cudaSuccess;
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
    if (!e) e = derive_factors(s, out, &l);
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
    int rc = qh_cu_q_state(be, &q); /* the NF4 tables the quantizer reads */
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
    if (!rc) rc = qh_cu_be_err(derive_factors(s, out, &l), "quantized weight factors");
    if (rc) {
        qh_cu_be_free(be, dev, l.total);
        out->data = NULL, out->owned = 0;
    }
    return rc;
}

/* The operands of a quantized product: QH_OK, or the error (internal, or fp32 activations). */
static int quant_operands(const char *op, const qh_tensor *x, const qh_tensor *w, const qh_tensor *y)
{
    int64_t t = qh_tensor_rows(x), k = qh_tensor_cols(x), n = w->ndim == 2 ? w->shape[0] : -1;
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
    return QH_OK;
}

int qh_cu_quant_linear(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y, int accumulate)
{
    int64_t t = qh_tensor_rows(x), k = qh_tensor_cols(x), n = w->ndim == 2 ? w->shape[0] : -1;
    int rc = quant_operands(accumulate ? "linear_add" : "linear", x, w, y);
    struct qh_cu_quant *q;
    if (!rc) rc = qh_cu_q_state(be, &q);
    if (rc || t == 0 || n == 0) return rc;
    int kind = accumulate ? (k > n ? QH_CUDA_OP_GEMM_DOWN : QH_CUDA_OP_GEMM_O)
                          : (n > k ? QH_CUDA_OP_GEMM_GATE_UP : QH_CUDA_OP_GEMM_QKV);
    if (w->dtype == QH_NF4) return qh_cu_nf4_linear(be, q, x, w, y, accumulate, kind);
    return qh_cu_i8_linear(be, q, x, w, y, t, k, n, accumulate, kind);
}

int qh_cu_quant_nf4_multi(qh_backend *be, const qh_tensor *x, const qh_tensor *const *w, qh_tensor *const *y, int nw,
                          int paired)
{
    for (int i = 0; i < nw; i++)
        if (w[i]->dtype != QH_NF4 || !qh_tensor_is_quantized(w[i])) return 1;
    int rc = QH_OK;
    for (int i = 0; !rc && i < nw; i++) rc = quant_operands(paired ? "linear_swiglu" : "linear", x, w[i], y[i]);
    if (rc) return rc;
    if (paired && (nw != 2 || w[0]->shape[0] != w[1]->shape[0])) return 1;
    struct qh_cu_quant *q;
    if ((rc = qh_cu_q_state(be, &q)) || qh_tensor_rows(x) == 0) return rc;
    rc = qh_cu_nf4_small_run(be, q, x, w, y, nw, paired, 0);
    if (rc != 1) qh_cu_be_mark(be, paired ? QH_CUDA_OP_GEMM_GATE_UP : QH_CUDA_OP_GEMM_QKV);
    return rc;
}

/* ---- statistics and knobs ----------------------------------------------------------------- */

void qh_cuda_quant_stats_get(qh_backend *be, qh_cuda_quant_stats *s, int reset)
{
    struct qh_cu_quant *q;
    if (qh_cu_q_state(be, &q)) {
        memset(s, 0, sizeof *s);
        return;
    }
    *s = q->st;
    /* the outlier columns are counted on the device (batches that do not wait for their count) */
    unsigned long long d[QH_CUDA_OP_COUNT][2];
    cudaStream_t st = qh_cu_be_stream(be);
    if (q->dstat.p && cudaMemcpyAsync(d, q->dstat.p, sizeof d, cudaMemcpyDeviceToHost, st) == cudaSuccess &&
        cudaStreamSynchronize(st) == cudaSuccess)
        for (int k = 0; k < QH_CUDA_OP_COUNT; k++)
            s->int8_outlier_cols[k] = (long)d[k][0], s->int8_outlier_max[k] = (int)d[k][1];
    if (reset) {
        memset(&q->st, 0, sizeof q->st);
        if (q->dstat.p) cudaMemsetAsync(q->dstat.p, 0, sizeof d, st);
    }
}
