/* int8 (LLM.int8()) products on the CUDA backend, host side (kernels in cuda_quant.cu). Per
 * product:
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
 *   - the epilogue: (acc * s_t) * (SCB_n / 127), into fp16 activations or added to fp32 y;
 *     linear_swiglu's gate and up products share one epilogue that writes silu(g) * u (and at
 *     threshold 0 its codes for down_proj).
 * On Hopper, batches that give every SM a 128-token tile skip the int32 sums: the product and its
 * epilogue (or gate, up and the SwiGLU) run in one kernel of ours (cuda_i8_gemm.cu), the same
 * numbers; the outlier columns' product is added as above. */
#include "cuda_quant_state.h"
#include "cuda_internal.h"

#include "../error.h"
#include "../quant_gpu_plan.h"

#include <string.h>

/* ---- int8 products -------------------------------------------------------------------------- */

/* Quantize x (or reuse the cached result); sets q->m, q->mp.
 * With an outlier threshold the number m of outlier columns sizes their fp16 product. Large
 * batches read it back (one stream synchronisation per input, amortised over the batch). Batches
 * of at most I8_NOSYNC_MAX_T tokens never wait (at batch 1 the 128 waits of a 7B forward pass cost
 * 0.7-1.4 ms, bench/NOTES.md): m stays on the device (q->m = -1), and the outlier
 * columns go through a gathered fp16 product of capacity q->mp, chosen from the counts this kind
 * of input had before (read from mapped memory without waiting; 0 while they stay small), plus
 * CUDA-core sums for any columns beyond it (which read m themselves). There, on Hopper, one kernel
 * does the whole quantization (qh_cu_i8_quant_small) and one the epilogue with those sums
 * (qh_cu_i8_epilogue_small): at batch 1 the launches cost more than their work. */
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
    int rc = qh_cu_q_ensure(be, &q->xq, (size_t)((t + 3) / 4 * 4 * kp), 0);
    if (!rc) rc = qh_cu_q_ensure(be, &q->sx, sizeof(float) * (size_t)t, 0);
    const int nosync = thr > 0 && t <= I8_NOSYNC_MAX_T && !q->outlier_sync;
    const unsigned char *flags = NULL;
    if (!rc && thr > 0) {
        rc = qh_cu_q_ensure(be, &q->flags, (size_t)k, 0);
        if (!rc) rc = qh_cu_q_ensure(be, &q->idx, sizeof(int32_t) * (size_t)k, 0);
        if (!rc) rc = qh_cu_q_ensure(be, &q->mdev, sizeof(int), 0);
        if (!rc) rc = qh_cu_q_ensure(be, &q->dstat, sizeof(unsigned long long) * 2 * QH_CUDA_OP_COUNT, 1);
        flags = q->flags.p;
    }
    unsigned long long *stat = thr > 0 ? (unsigned long long *)q->dstat.p + 2 * kind : NULL;
    int m = 0, mp = 0, done = 0;
    if (!rc && nosync) {
        /* an earlier small batch's count (perhaps this one's, when the GPU is ahead) */
        const int seen = *(volatile int *)(q->m_host + QH_CUDA_OP_COUNT + kind);
        if (seen > q->hint[kind]) q->hint[kind] = seen;
        const int h = q->hint[kind], kr = (int)((k + 63) / 64 * 64);
        m = -1;
        mp = h <= I8_OUTLIER_SMALL_MAX ? 0 : (h + h / 4 + 63) / 64 * 64; /* a margin for the next inputs */
        if (mp > kr) mp = kr;
        if (mp > 0) rc = qh_cu_q_ensure(be, &q->xo, sizeof(uint16_t) * (size_t)(t * mp), 0);
        if (!rc && !q->small_unfused) { /* everything in one launch, the x gather included */
            const qh_cu_i8_quant_small_out o = {q->idx.p, q->mdev.p, q->m_host_dev + QH_CUDA_OP_COUNT + kind, stat,
                                                q->xq.p, q->sx.p, mp > 0 ? q->xo.p : NULL, mp};
            done = qh_cu_i8_quant_small_applies(qh_cu_be_cc_major(be), x->data, t, k, kp, thr, &o);
            if (done) rc = qh_cu_be_err((cudaError_t)qh_cu_i8_quant_small(s, x->data, t, k, kp, thr, &o), "int8 quantize");
        }
    }
    if (!rc && !done && thr > 0) rc = qh_cu_be_err(cudaMemsetAsync(q->flags.p, 0, (size_t)k, s), "memset");
    if (!rc && !done && thr > 0)
        rc = qh_cu_be_err((cudaError_t)qh_cu_i8_flags(s, x->data, t, k, thr, q->flags.p), "int8 outliers");
    if (!rc && !done && thr > 0)
        rc = qh_cu_be_err((cudaError_t)qh_cu_i8_compact(s, q->flags.p, k, q->idx.p, q->mdev.p,
                                                        q->m_host_dev + (nosync ? QH_CUDA_OP_COUNT : 0) + kind, stat),
                          "int8 outliers");
    if (!rc && !done)
        rc = qh_cu_be_err((cudaError_t)qh_cu_i8_rowquant(s, x->data, t, k, kp, flags, q->xq.p, q->sx.p), "int8 quantize");
    if (!rc && thr > 0 && !nosync) {
        rc = qh_cu_be_err(cudaStreamSynchronize(s), "synchronize");
        m = *(volatile int *)(q->m_host + kind);
        mp = (m + 7) / 8 * 8;
    }
    if (rc) return rc;
    q->m = m, q->mp = mp;
    if (mp > 0 && !done) {
        rc = qh_cu_q_ensure(be, &q->xo, sizeof(uint16_t) * (size_t)(t * mp), 0);
        if (!rc)
            rc = qh_cu_be_err((cudaError_t)qh_cu_i8_gather_x(s, x->data, t, k, q->idx.p, m, m < 0 ? q->mdev.p : NULL, mp,
                                                             q->xo.p),
                              "gather");
        if (rc) return rc;
    }
    q->st.int8_inputs[kind]++;
    q->x_ptr = x->data, q->x_t = t, q->x_k = k, q->x_kp = kp, q->x_thr = thr, q->x_gen = gen;
    q->x_valid = 1;
    if (thr == 0 && (kind == QH_CUDA_OP_GEMM_QKV || kind == QH_CUDA_OP_GEMM_GATE_UP)) /* inputs a norm wrote */
        q->norm_k = k, q->norm_kp = kp;
    if (thr == 0 && kind == QH_CUDA_OP_GEMM_DOWN) /* the SwiGLU's output */
        q->down_k = k, q->down_kp = kp;
    qh_cu_be_mark(be, QH_CUDA_OP_INT8_ACT);
    return QH_OK;
}

int qh_cu_quant_norm_codes(qh_backend *be, int64_t t, int64_t h, qh_cu_norm_codes *c)
{
    struct qh_cu_quant *q = *qh_cu_be_quant(be);
    c->xq = NULL, c->sx = NULL, c->kp = 0;
    if (!q || q->no_input_codes || q->norm_kp == 0 || q->norm_k != h || t <= 0) return QH_OK;
    int rc = qh_cu_q_ensure(be, &q->xq, (size_t)((t + 3) / 4 * 4 * q->norm_kp), 0);
    if (!rc) rc = qh_cu_q_ensure(be, &q->sx, sizeof(float) * (size_t)t, 0);
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
    q->st.int8_norm_codes++;
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

/* The outlier columns of w as fp16 [n, mp] (w * SCB / 127) into q->wo: the first m of them, or
 * with m_dev the first min(*m_dev, mp) read on the device. */
static int i8_gather_w_cols(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *w, int64_t n, int64_t kp, int m,
                            const int *m_dev, int mp)
{
    int rc = qh_cu_q_ensure(be, &q->wo, sizeof(uint16_t) * (size_t)(n * mp), 0);
    if (!rc)
        rc = qh_cu_be_err((cudaError_t)qh_cu_i8_gather_w(qh_cu_be_stream(be), w->data, n, kp, w->quant.scale, q->idx.p,
                                                         m, m_dev, mp, q->wo.p),
                          "gather");
    return rc;
}

/* out[tc, n] (dtype dt, fp16 or fp32) = beta out + the outlier columns' fp16 product for tokens
 * t0 .. t0 + tc - 1: q->xo rows times q->wo (both mp wide), through cuBLASLt. */
static int i8_outlier_product(qh_backend *be, const struct qh_cu_quant *q, int64_t t0, int64_t tc, int mp, int64_t n,
                              void *out, qh_dtype dt, float beta)
{
    qh_tensor xo = qh_tensor_2d(QH_F16, tc, mp), wo = qh_tensor_2d(QH_F16, n, mp), yo = qh_tensor_2d(dt, tc, n);
    xo.data = (char *)q->xo.p + (size_t)(t0 * mp) * 2, wo.data = q->wo.p, yo.data = out;
    xo.device = wo.device = yo.device = QH_DEVICE_CUDA;
    return qh_cu_be_gemm_f16(be, &xo, &wo, &yo, beta);
}

/* The one-kernel product (cuda_i8_gemm.cu) for t tokens and n outputs in tiles of tile_n? On
 * Hopper, where it applies, when the batch gives every SM a tile (smaller ones: cuBLASLt, whose
 * kernels split k). */
static int i8_wgmma(qh_backend *be, const struct qh_cu_quant *q, int64_t t, int64_t n, int64_t tile_n)
{
    if (q->wgmma_mode == QH_CUDA_I8_WGMMA_OFF || qh_cu_be_cc_major(be) != 9) return 0;
    return q->wgmma_mode == QH_CUDA_I8_WGMMA_ALWAYS || (t + 127) / 128 * ((n + tile_n - 1) / tile_n) >= qh_cu_be_sm_count(be);
}

/* y (+)= x w^T through the one-kernel product (x quantized in q). The outlier columns' fp16
 * product (cuBLASLt) goes first: straight into y where y is fp32 or added to, else, per chunk of
 * tokens, into an fp32 scratch the kernel adds before rounding (the int32 path's order, the same
 * numbers). Returns 1 (nothing done) where the kernel does not apply. */
static int i8_linear_wgmma(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *w, qh_tensor *y, int64_t t,
                           int64_t n, int64_t kp, const float *f, int accumulate)
{
    const int m = q->m, mp = q->mp, f32y = y->dtype == QH_F32, direct = m == 0 || accumulate || f32y;
    if (m < 0) return 1; /* the outlier count is on the device: small batches, the path below */
    int64_t chunk = direct ? t : (q->chunk + 3) / 4 * 4;
    if (chunk <= 0 || chunk > t) chunk = t;
    if (!i8_wgmma(be, q, t, n, 256) ||
        !qh_cu_i8_gemm_tc_applies(q->xq.p, t, kp, w->data, NULL, n, NULL, !direct, y->data, f32y,
                                  accumulate || (m > 0 && direct)))
        return 1;
    cudaStream_t s = qh_cu_be_stream(be);
    int rc = QH_OK;
    if (m > 0) rc = i8_gather_w_cols(be, q, w, n, kp, m, NULL, mp);
    if (!rc && m > 0 && !direct) rc = qh_cu_q_ensure(be, &q->yo, sizeof(float) * (size_t)(chunk * n), 0);
    const size_t es = f32y ? 4 : 2;
    for (int64_t t0 = 0; !rc && t0 < t; t0 += chunk) {
        const int64_t tc = t - t0 < chunk ? t - t0 : chunk;
        char *yp = (char *)y->data + (size_t)(t0 * n) * es;
        if (m > 0)
            rc = i8_outlier_product(be, q, t0, tc, mp, n, direct ? yp : q->yo.p, direct ? y->dtype : QH_F32,
                                    direct && accumulate ? 1.0f : 0.0f);
        if (!rc)
            rc = qh_cu_be_err((cudaError_t)qh_cu_i8_gemm_tc(s, qh_cu_be_sm_count(be), (const int8_t *)q->xq.p + t0 * kp,
                                                            tc, kp, w->data, NULL, n, (const float *)q->sx.p + t0, f,
                                                            NULL, direct ? NULL : (const float *)q->yo.p, yp, f32y,
                                                            accumulate || (m > 0 && direct)),
                              "int8 product");
    }
    return rc;
}

/* For a small batch whose outlier count stays on the device (q->m < 0, capacity q->mp): w's int32
 * sums into acc, and where the capacity is > 0 the gathered product of the first outlier columns
 * (fp16, through cuBLASLt) added to `into` (fp32 [t, n]) or else written to yo; *extra: where
 * that product went (NULL: none). */
static int i8_small_product(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *w, int64_t t, int64_t n,
                            int64_t np, int64_t kp, qh_cu_dbuf *acc, qh_cu_dbuf *yo, float *into, float **extra)
{
    const int cap = q->mp;
    int rc = qh_cu_q_ensure(be, acc, sizeof(int32_t) * (size_t)((t + 3) / 4 * 4 * np), 0);
    if (!rc) rc = i8_product(be, q, w, q->xq.p, acc->p, n, np, kp, t);
    *extra = NULL;
    if (rc || cap == 0) return rc;
    if (!into) rc = qh_cu_q_ensure(be, yo, sizeof(float) * (size_t)(t * n), 0);
    *extra = into ? into : yo->p;
    if (!rc) rc = i8_gather_w_cols(be, q, w, n, kp, 0, q->mdev.p, cap);
    if (!rc) rc = i8_outlier_product(be, q, 0, t, cap, n, *extra, QH_F32, into ? 1.0f : 0.0f);
    return rc;
}

/* y (+)= x w^T for a small batch whose outlier count stays on the device (q->m < 0, capacity
 * q->mp): the int8 product as usual; the outlier sums into y where y is fp32 and added to, else
 * into an fp32 scratch the epilogue adds (only if there are outliers at all, when no gathered
 * product wrote it: the epilogue reads the count). The CUDA-core sums beyond the capacity and the
 * epilogue are one kernel (qh_cu_i8_epilogue_small), unless small_unfused. */
static int i8_linear_nosync(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *x, const qh_tensor *w,
                            qh_tensor *y, int64_t t, int64_t k, int64_t n, int64_t kp, int64_t np, const float *f,
                            int accumulate)
{
    cudaStream_t s = qh_cu_be_stream(be);
    const int f32y = y->dtype == QH_F32, into_y = f32y && accumulate, cap = q->mp;
    float *extra;
    int rc = i8_small_product(be, q, w, t, n, np, kp, &q->acc, &q->yo, into_y ? y->data : NULL, &extra);
    if (!rc && !q->small_unfused) { /* the outlier sums and the epilogue in one launch */
        qh_cu_i8_small_epi e = {.acc = {q->acc.p}, .scb = {w->quant.scale}, .f = {f}, .w = {w->data},
                                .extra = {into_y ? NULL : extra}, .y = {y->data}, .n = {n}, .ldc = {np}, .kp = kp,
                                .k = k, .sx = q->sx.p, .x = x->data, .idx = q->idx.p, .m_dev = q->mdev.p,
                                .cap = cap, .t = (int)t, .nw = 1, .y_type = f32y ? QH_CU_F32 : QH_CU_F16,
                                .accumulate = accumulate, .into_y = into_y};
        return qh_cu_be_err((cudaError_t)qh_cu_i8_epilogue_small(s, &e), "int8 epilogue");
    }
    /* the separate kernels: the outlier kernel writes the scratch even without a gathered product */
    if (!rc && !into_y) rc = qh_cu_q_ensure(be, &q->yo, sizeof(float) * (size_t)(t * n), 0);
    float *out = into_y ? y->data : q->yo.p;
    if (!rc)
        rc = qh_cu_be_err((cudaError_t)qh_cu_i8_outlier_small(s, x->data, k, q->idx.p, q->mdev.p, cap, w->data, kp, f, out,
                                                              t, n, into_y || cap > 0),
                          "int8 outliers");
    if (!rc)
        rc = qh_cu_be_err((cudaError_t)qh_cu_i8_epilogue(s, q->acc.p, np, q->sx.p, w->quant.scale,
                                                         into_y ? NULL : q->yo.p,
                                                         into_y || cap > 0 ? NULL : (const int *)q->mdev.p, y->data,
                                                         f32y ? QH_CU_F32 : QH_CU_F16, accumulate, t, n),
                          "int8 epilogue");
    return rc;
}

int qh_cu_i8_linear(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *x, const qh_tensor *w, qh_tensor *y,
                    int64_t t, int64_t k, int64_t n, int accumulate, int kind)
{
    qh_quant_dev_layout l;
    qh_quant_dev_layout_of(w, &l);
    const int64_t kp = l.cols_pad, np = l.rows_pad;
    cudaStream_t s = qh_cu_be_stream(be);
    int rc = i8_prepare(be, q, x, t, k, kp, w->quant.threshold, kind);
    if (rc) return rc;
    const int m = q->m, mp = q->mp, f32y = y->dtype == QH_F32;
    const float *f = (const float *)((char *)w->data + l.off_scale127);
    rc = m < 0 ? i8_linear_nosync(be, q, x, w, y, t, k, n, kp, np, f, accumulate)
               : i8_linear_wgmma(be, q, w, y, t, n, kp, f, accumulate);
    if (rc != 1) {
        q->st.int8_wgmma_products += !rc && m >= 0;
        i8_written(q, y->data, (size_t)(t * n) * (f32y ? 4 : 2));
        qh_cu_be_mark(be, kind);
        return rc;
    }
    rc = QH_OK;
    if (m > 0) rc = i8_gather_w_cols(be, q, w, n, kp, m, NULL, mp);
    const int64_t t4 = (t + 3) / 4 * 4;
    int64_t chunk = (q->chunk + 3) / 4 * 4;
    if (chunk <= 0 || chunk > t4) chunk = t4;
    if (!rc) rc = qh_cu_q_ensure(be, &q->acc, sizeof(int32_t) * (size_t)(chunk * np), 0);
    if (!rc && m > 0 && !accumulate && !f32y) rc = qh_cu_q_ensure(be, &q->yo, sizeof(float) * (size_t)(chunk * n), 0);
    size_t es = f32y ? 4 : 2;
    for (int64_t t0 = 0; !rc && t0 < t; t0 += chunk) {
        int64_t tc = t - t0 < chunk ? t - t0 : chunk;
        const int8_t *xq = (const int8_t *)q->xq.p + t0 * kp;
        char *yp = (char *)y->data + (size_t)(t0 * n) * es;
        rc = i8_product(be, q, w, xq, q->acc.p, n, np, kp, tc);
        const float *extra = NULL;
        int epi_acc = accumulate;
        if (!rc && m > 0) {
            if (accumulate || f32y) { /* the outlier product goes straight into y */
                rc = i8_outlier_product(be, q, t0, tc, mp, n, yp, y->dtype, accumulate ? 1.0f : 0.0f);
                epi_acc = 1;
            } else {
                rc = i8_outlier_product(be, q, t0, tc, mp, n, q->yo.p, QH_F32, 0.0f);
                extra = q->yo.p;
            }
        }
        if (!rc)
            rc = qh_cu_be_err((cudaError_t)qh_cu_i8_epilogue(s, q->acc.p, np, (const float *)q->sx.p + t0, w->quant.scale,
                                                             extra, NULL, yp, f32y ? QH_CU_F32 : QH_CU_F16, epi_acc, tc, n),
                              "int8 epilogue");
    }
    i8_written(q, y->data, (size_t)(t * n) * es);
    qh_cu_be_mark(be, kind);
    return rc;
}

int qh_cu_quant_i8_qkv(qh_backend *be, const qh_tensor *x, const qh_tensor *const *w, qh_tensor *const *y)
{
    const int64_t t = qh_tensor_rows(x), k = qh_tensor_cols(x);
    if (t <= 0 || t > I8_NOSYNC_MAX_T || x->dtype != QH_F16 || x->device != QH_DEVICE_CUDA) return 1;
    for (int i = 0; i < 3; i++)
        if (w[i]->dtype != QH_I8 || !qh_tensor_is_quantized(w[i]) || w[i]->ndim != 2 || w[i]->shape[1] != k ||
            w[i]->device != QH_DEVICE_CUDA || w[i]->quant.threshold != w[0]->quant.threshold || y[i]->dtype != QH_F16 ||
            y[i]->device != QH_DEVICE_CUDA || qh_tensor_rows(y[i]) != t || qh_tensor_cols(y[i]) != w[i]->shape[0])
            return 1;
    struct qh_cu_quant *q;
    int rc = qh_cu_q_state(be, &q);
    if (rc) return rc;
    if (q->small_unfused) return 1;
    qh_quant_dev_layout l[3];
    for (int i = 0; i < 3; i++) qh_quant_dev_layout_of(w[i], &l[i]);
    const int64_t kp = l[0].cols_pad;
    if (l[1].cols_pad != kp || l[2].cols_pad != kp) return 1;
    rc = i8_prepare(be, q, x, t, k, kp, w[0]->quant.threshold, QH_CUDA_OP_GEMM_QKV);
    if (rc) return rc;
    /* a counted batch with outlier columns, or (tests) the wgmma kernel forced: the plain path,
     * which finds x quantized */
    if (q->m > 0 || (q->m == 0 && q->wgmma_mode == QH_CUDA_I8_WGMMA_ALWAYS)) return 1;
    qh_cu_dbuf *accs[3] = {&q->acc, &q->acc2, &q->acc3}, *yos[3] = {&q->yo, &q->yo2, &q->yo3};
    qh_cu_i8_small_epi e = {.kp = kp, .k = k, .sx = q->sx.p, .x = x->data, .idx = q->idx.p,
                            .m_dev = q->m < 0 ? q->mdev.p : NULL, .cap = q->mp, .t = (int)t, .nw = 3,
                            .y_type = QH_CU_F16};
    for (int i = 0; !rc && i < 3; i++) {
        const int64_t n = w[i]->shape[0], np = l[i].rows_pad;
        float *extra;
        rc = i8_small_product(be, q, w[i], t, n, np, kp, accs[i], yos[i], NULL, &extra);
        e.acc[i] = accs[i]->p, e.scb[i] = w[i]->quant.scale, e.w[i] = w[i]->data, e.y[i] = y[i]->data;
        e.f[i] = (const float *)((char *)w[i]->data + l[i].off_scale127);
        e.extra[i] = extra, e.n[i] = n, e.ldc[i] = np;
    }
    if (!rc) rc = qh_cu_be_err((cudaError_t)qh_cu_i8_epilogue_small(qh_cu_be_stream(be), &e), "int8 epilogue");
    for (int i = 0; i < 3; i++) i8_written(q, y[i]->data, (size_t)(t * w[i]->shape[0]) * 2);
    qh_cu_be_mark(be, QH_CUDA_OP_GEMM_QKV);
    return rc;
}

/* gate = silu(x wg^T) * (x wu^T) for a small batch whose outlier count stays on the device: both
 * int8 products, for each the gathered outlier product (capacity q->mp) where there is one, then
 * one kernel: both epilogues with the outlier sums beyond the capacity, and the SwiGLU. What
 * linear, linear and silu_mul give, bit for bit. */
static int i8_swiglu_nosync(qh_backend *be, struct qh_cu_quant *q, const qh_tensor *x, const qh_tensor *wg,
                            const qh_tensor *wu, qh_tensor *gate, int64_t t, int64_t k, int64_t n, int64_t kp,
                            int64_t np, const qh_quant_dev_layout *l)
{
    float *extra_g, *extra_u;
    int rc = i8_small_product(be, q, wg, t, n, np, kp, &q->acc, &q->yo, NULL, &extra_g);
    if (!rc) rc = i8_small_product(be, q, wu, t, n, np, kp, &q->acc2, &q->yo2, NULL, &extra_u);
    qh_cu_be_mark(be, QH_CUDA_OP_GEMM_GATE_UP);
    if (!rc) {
        qh_cu_i8_small_epi e = {.acc = {q->acc.p, q->acc2.p},
                                .scb = {wg->quant.scale, wu->quant.scale},
                                .f = {(const float *)((char *)wg->data + l->off_scale127),
                                      (const float *)((char *)wu->data + l->off_scale127)},
                                .w = {wg->data, wu->data},
                                .extra = {extra_g, extra_u},
                                .y = {gate->data},
                                .n = {n, n},
                                .ldc = {np, np},
                                .kp = kp, .k = k, .sx = q->sx.p, .x = x->data, .idx = q->idx.p, .m_dev = q->mdev.p,
                                .cap = q->mp, .t = (int)t, .nw = 2, .paired = 1, .y_type = QH_CU_F16};
        rc = qh_cu_be_err((cudaError_t)qh_cu_i8_epilogue_small(qh_cu_be_stream(be), &e), "int8 SwiGLU");
    }
    qh_cu_be_mark(be, QH_CUDA_OP_SILU_MUL);
    i8_written(q, gate->data, (size_t)(t * n) * 2); /* up is not written: the sums stay in the scratches */
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
    int rc = qh_cu_q_state(be, &q);
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
        rc = qh_cu_q_ensure(be, &q->acc2, sizeof(int32_t) * (size_t)(chunk * np), 0);
        if (rc) return rc;
        acc_u = q->acc2.p;
    } else if (in_up < chunk) {
        chunk = in_up;
    }
    if (chunk < 4 || (uintptr_t)acc_u % 16) return 1;
    rc = i8_prepare(be, q, x, t, k, kp, wg->quant.threshold, QH_CUDA_OP_GEMM_GATE_UP);
    if (rc) return rc;
    if (q->m < 0 && !q->small_unfused) return i8_swiglu_nosync(be, q, x, wg, wu, gate, t, k, n, kp, np, &l);
    if (q->m != 0) return 1; /* outlier columns (or a count on the device): the plain path adds them */
    const float *fu = (const float *)((char *)wu->data + l.off_scale127);
    if (i8_wgmma(be, q, t, n, 128) &&
        qh_cu_i8_gemm_tc_applies(q->xq.p, t, kp, wg->data, wu->data, n, fu, 0, gate->data, 0, 0)) {
        /* both products and the SwiGLU in one kernel; down_proj quantizes gate itself */
        rc = qh_cu_be_err((cudaError_t)qh_cu_i8_gemm_tc(qh_cu_be_stream(be), qh_cu_be_sm_count(be), q->xq.p, t, kp,
                                                        wg->data, wu->data, n, q->sx.p,
                                                        (const float *)((char *)wg->data + l.off_scale127), fu, NULL,
                                                        gate->data, 0, 0),
                          "int8 SwiGLU product");
        q->st.int8_wgmma_products += 2;
        i8_written(q, gate->data, (size_t)(t * n) * 2);
        qh_cu_be_mark(be, QH_CUDA_OP_GEMM_GATE_UP);
        return rc;
    }
    /* Threshold 0, and the down_proj product after this one known (learned from the first):
     * the SwiGLU kernel writes its output's codes for down_proj too, into xq in place. Its rows
     * are kp_d >= kp apart, so with the chunks taken last to first, the codes written for rows
     * [t0, t) end up above every input row still to be read, rows [0, t0) (< t0 kp <= t0 kp_d);
     * a chunk's own input rows were read by its products before its SwiGLU starts. */
    rc = qh_cu_q_ensure(be, &q->acc, sizeof(int32_t) * (size_t)(chunk * np), 0);
    if (rc) return rc;
    const int64_t kp_d = q->down_kp;
    const int codes = !q->no_input_codes && wg->quant.threshold == 0 && kp_d >= kp && q->down_k == n &&
                      q->xq.cap >= (size_t)(t4 * kp_d) &&
                      qh_cu_i8_swiglu_codes_ok(q->acc.p, acc_u, np, wg->quant.scale, wu->quant.scale, gate->data, n,
                                               q->xq.p, kp_d);
    cudaStream_t s = qh_cu_be_stream(be);
    const int64_t n_chunks = (t + chunk - 1) / chunk;
    for (int64_t ci = 0; !rc && ci < n_chunks; ci++) {
        const int64_t t0 = (codes ? n_chunks - 1 - ci : ci) * chunk, tc = t - t0 < chunk ? t - t0 : chunk;
        const int8_t *xq = (const int8_t *)q->xq.p + t0 * kp;
        rc = i8_product(be, q, wg, xq, q->acc.p, n, np, kp, tc);
        if (!rc) rc = i8_product(be, q, wu, xq, acc_u, n, np, kp, tc);
        qh_cu_be_mark(be, QH_CUDA_OP_GEMM_GATE_UP);
        uint16_t *out = (uint16_t *)gate->data + t0 * n;
        if (!rc && codes)
            rc = qh_cu_be_err((cudaError_t)qh_cu_i8_swiglu_codes(s, q->acc.p, acc_u, np, (float *)q->sx.p + t0,
                                                                 wg->quant.scale, wu->quant.scale, out, tc, n,
                                                                 (int8_t *)q->xq.p + t0 * kp_d, kp_d),
                              "int8 SwiGLU");
        else if (!rc)
            rc = qh_cu_be_err((cudaError_t)qh_cu_i8_swiglu(s, q->acc.p, acc_u, np, (const float *)q->sx.p + t0,
                                                           wg->quant.scale, wu->quant.scale, out, tc, n),
                              "int8 SwiGLU");
        qh_cu_be_mark(be, QH_CUDA_OP_SILU_MUL);
    }
    i8_written(q, gate->data, (size_t)(t * n) * 2);
    i8_written(q, up->data, (size_t)(t * n) * 2);
    if (codes) { /* xq and sx now hold the codes of gate (or of nothing, after an error) */
        q->x_valid = 0;
        if (!rc) {
            q->x_ptr = gate->data, q->x_t = t, q->x_k = n, q->x_kp = kp_d, q->x_thr = 0, q->m = q->mp = 0;
            q->x_gen = qh_cu_be_generation(be);
            q->x_valid = 1;
            q->st.int8_swiglu_codes++;
        }
    }
    return rc;
}

/* ---- knobs ------------------------------------------------------------------------------- */

void qh_cuda_set_int8_chunk(qh_backend *be, int64_t tokens)
{
    struct qh_cu_quant *q;
    if (!qh_cu_q_state(be, &q)) q->chunk = tokens > 0 ? tokens : INT8_CHUNK_DEFAULT;
}

void qh_cuda_set_int8_outlier_sync(qh_backend *be, int on)
{
    struct qh_cu_quant *q;
    if (!qh_cu_q_state(be, &q)) {
        q->outlier_sync = on != 0, q->x_valid = 0;
        memset(q->hint, 0, sizeof q->hint);
        memset(q->m_host, 0, sizeof(int) * 2 * QH_CUDA_OP_COUNT);
    }
}

void qh_cuda_set_int8_small_fused(qh_backend *be, int on)
{
    struct qh_cu_quant *q;
    if (!qh_cu_q_state(be, &q)) q->small_unfused = !on, q->x_valid = 0;
}

void qh_cuda_set_int8_wgmma(qh_backend *be, int mode)
{
    struct qh_cu_quant *q;
    if (!qh_cu_q_state(be, &q)) q->wgmma_mode = mode;
}

void qh_cuda_set_int8_swiglu(qh_backend *be, int on)
{
    struct qh_cu_quant *q;
    if (!qh_cu_q_state(be, &q)) q->no_swiglu = !on;
}

void qh_cuda_set_int8_input_codes(qh_backend *be, int on)
{
    struct qh_cu_quant *q;
    if (!qh_cu_q_state(be, &q)) q->no_input_codes = !on, q->x_valid = 0;
}
