/* nf4 products on the CUDA backend, host side (kernels in cuda_quant.cu and
 * cuda_nf4_small.cu): up to 64 tokens the small-batch kernel (codes read once, tensor cores;
 * q/k/v in one launch, gate/up with the SwiGLU); beyond, the weight is dequantized into one of two
 * reused fp16 buffers (in parts of at most part_bytes) and cuBLASLt multiplies, while the weight
 * expected next is dequantized into the other on a second stream (nf4_prefetch). */
#include "cuda_quant_state.h"
#include "cuda_internal.h"

#include "../error.h"
#include "../quant.h"
#include "../quant_gpu_plan.h"

#include <string.h>

/* ---- nf4 products --------------------------------------------------------------------------- */

static qh_cu_nf4 nf4_desc(const qh_tensor *w)
{
    qh_quant_dev_layout l;
    qh_quant_dev_layout_of(w, &l); /* a device weight: its layout was checked when it was placed */
    qh_cu_nf4 d = {.codes = w->data, .absmax = w->quant.scale, .qabsmax = w->quant.qabsmax,
                   .nested127 = l.off_nested127 ? (const float *)((const char *)w->data + l.off_nested127) : NULL,
                   .offset = w->quant.nested_offset,
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
    const int64_t cap = (int64_t)(q->part_bytes / (sizeof(uint16_t) * (size_t)k));
    int64_t rows = cap < 1 ? 1 : cap;
    if (rows >= n) return n > 0 ? n : 1;
    rows = (n + (n + rows - 1) / rows - 1) / ((n + rows - 1) / rows); /* equal parts */
    /* Multiples of 256 rows where the cap allows, else of 128: each part's slice of y starts
     * 256-byte aligned (fp16), as cuBLASLt's kernels assume by default, and on whole code bytes;
     * and parts of whole 256-row tiles leave cuBLASLt fewer ragged tiles (LLaMA-2-7B's gate/up in
     * 5632 + 5376 rows instead of 2 x 5504: 3044-3057 -> 3018-3032 ms per pass, bench/NOTES.md). */
    int64_t r256 = (rows + 255) / 256 * 256;
    rows = r256 <= cap ? r256 : (rows + 127) / 128 * 128;
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
    if (!q->no_prefetch && !q->side && !q->capturing) {
        rc = qh_cu_be_err(cudaStreamCreateWithFlags(&q->side, cudaStreamNonBlocking), "cudaStreamCreate");
        for (int i = 0; !rc && i < 2; i++) {
            rc = qh_cu_be_err(cudaEventCreateWithFlags(&q->ready[i], cudaEventDisableTiming), "cudaEventCreate");
            if (!rc) rc = qh_cu_be_err(cudaEventCreateWithFlags(&q->freed[i], cudaEventDisableTiming), "cudaEventCreate");
        }
        if (!rc) rc = qh_cu_be_err(cudaEventCreateWithFlags(&q->side_idle, cudaEventDisableTiming), "cudaEventCreate");
        if (rc) return rc;
    }
    cudaStream_t side = q->capturing ? NULL : q->side; /* a recording keeps to the main stream */
    const int nbuf = side ? 2 : 1;
    if (q->deq[0].cap < bytes || (nbuf == 2 && q->deq[1].cap < bytes)) {
        /* growing (the first layers only): nothing may be writing the old buffers */
        if (side) rc = qh_cu_be_err(cudaStreamSynchronize(side), "synchronize");
        for (int i = 0; !rc && i < nbuf; i++) {
            rc = qh_cu_q_ensure(be, &q->deq[i], bytes, 0);
            q->deq_w[i] = NULL;
        }
        /* the side stream may use the new memory only once the main stream has made it */
        if (!rc && side) rc = qh_cu_be_err(cudaStreamSynchronize(s), "synchronize");
        if (rc) return rc;
    }
    for (int i = 0; i < nbuf; i++)
        if (q->deq_w[i] == w && q->deq_part[i] == part) {
            *cur = i;
            return side ? qh_cu_be_err(cudaStreamWaitEvent(s, q->ready[i], 0), "cudaStreamWaitEvent") : QH_OK;
        }
    int c = nbuf == 2 ? q->deq_last ^ 1 : 0;
    /* a mispredicted prefetch may still be writing this buffer */
    if (side) rc = qh_cu_be_err(cudaStreamWaitEvent(s, q->ready[c], 0), "cudaStreamWaitEvent");
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
    if (!q->side || q->capturing || !next || (next == w && next_part == part) || next->dtype != QH_NF4 ||
        next->ndim != 2)
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

void qh_cu_quant_begin_capture(qh_backend *be)
{
    struct qh_cu_quant *q = *qh_cu_be_quant(be);
    if (q) q->deq_w[0] = q->deq_w[1] = NULL, q->capturing = 1;
}

void qh_cu_quant_after_capture(qh_backend *be)
{
    struct qh_cu_quant *q = *qh_cu_be_quant(be);
    if (q) q->deq_w[0] = q->deq_w[1] = NULL, q->capturing = 0;
}

int qh_cu_quant_before_replay(qh_backend *be)
{
    struct qh_cu_quant *q = *qh_cu_be_quant(be);
    if (!q) return QH_OK;
    q->deq_w[0] = q->deq_w[1] = NULL;
    if (!q->side) return QH_OK;
    /* the main stream, not the host, waits for the prefetches queued so far */
    int rc = qh_cu_be_err(cudaEventRecord(q->side_idle, q->side), "cudaEventRecord");
    if (!rc) rc = qh_cu_be_err(cudaStreamWaitEvent(qh_cu_be_stream(be), q->side_idle, 0), "cudaStreamWaitEvent");
    return rc;
}

int qh_cu_nf4_small_run(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *x, const qh_tensor *const *w,
                        qh_tensor *const *y, int nw, int paired, int accumulate)
{
    /* the kernel needs thread-block clusters: compute capability 9 and later */
    if (q->no_fused || qh_cu_be_cc_major(be) < 9 || nw < 1 || nw > QH_NF4_SMALL_MAX_WEIGHTS || (uintptr_t)x->data % 16)
        return 1;
    int64_t t = qh_tensor_rows(x), k = qh_tensor_cols(x), n[QH_NF4_SMALL_MAX_WEIGHTS];
    qh_cu_nf4_small_job j = {.nw = nw, .paired = paired, .x = x->data, .t = t, .k = k, .accumulate = accumulate,
                             .y_type = y[0]->dtype == QH_F32 ? QH_CU_F32 : QH_CU_F16};
    for (int i = 0; i < nw; i++) {
        if (w[i]->dtype != QH_NF4 || w[i]->quant.blocksize != w[0]->quant.blocksize || (uintptr_t)w[i]->data % 8 ||
            y[i]->dtype != y[0]->dtype || (paired && y[i]->dtype != QH_F16))
            return 1;
        n[i] = w[i]->shape[0];
        j.w[i] = nf4_desc(w[i]);
        j.n[i] = n[i];
        j.y[i] = y[i]->data;
    }
    qh_nf4_small_plan p;
    if (!qh_nf4_small_plan_of(t, n, nw, paired, k, w[0]->quant.blocksize, qh_cu_be_sm_count(be), q->small_rows,
                              q->small_splits, &p))
        return 1;
    j.token_tiles = p.token_tiles, j.rows = p.rows, j.splits = p.splits, j.kr = p.kr, j.bs_shift = p.bs_shift;
    j.tiles = p.tiles, j.smem = p.smem;
    memcpy(j.levels, qh_nf4_levels, sizeof j.levels);
    q->st.nf4_fused += nw;
    return qh_cu_be_err((cudaError_t)qh_cu_nf4_small(qh_cu_be_stream(be), &j), "nf4 small-batch product");
}

int qh_cu_nf4_linear(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *x, const qh_tensor *w, qh_tensor *y,
                     int accumulate, int kind)
{
    int rc = qh_cu_nf4_small_run(be, q, x, &w, &y, 1, 0, accumulate);
    if (rc != 1) {
        qh_cu_be_mark(be, kind);
        return rc;
    }
    rc = QH_OK;
    cudaStream_t s = qh_cu_be_stream(be);
    const int f32y = y->dtype == QH_F32;
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
                                        y->dtype, w->shape[0], accumulate ? 1.0f : 0.0f);
        if (!rc && q->side && !q->capturing) rc = qh_cu_be_err(cudaEventRecord(q->freed[cur], s), "cudaEventRecord");
        if (!rc) rc = nf4_prefetch(q, w, part, cur);
    }
    q->st.nf4_dequant++;
    return rc;
}

/* ---- knobs ------------------------------------------------------------------------------- */

void qh_cuda_set_nf4_part_bytes(qh_backend *be, size_t bytes)
{
    struct qh_cu_quant *q;
    if (qh_cu_q_state(be, &q)) return;
    qh_cu_quant_forget(be);
    q->part_bytes = bytes ? bytes : NF4_PART_BYTES_DEFAULT;
}

void qh_cuda_set_nf4_prefetch(qh_backend *be, int on)
{
    struct qh_cu_quant *q;
    if (qh_cu_q_state(be, &q)) return;
    qh_cu_quant_forget(be);
    q->no_prefetch = !on;
}

void qh_cuda_set_nf4_fused(qh_backend *be, int on)
{
    struct qh_cu_quant *q;
    if (!qh_cu_q_state(be, &q)) q->no_fused = !on;
}

void qh_cuda_set_nf4_small_plan(qh_backend *be, int rows, int splits)
{
    struct qh_cu_quant *q;
    if (!qh_cu_q_state(be, &q)) q->small_rows = rows, q->small_splits = splits;
}
