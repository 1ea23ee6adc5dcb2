/* y = x w^T on the CPU for quantized weights (formats in ../quant.h).
 *
 * NF4: the weight is dequantized into the fp32 scratch that cpu_linear.c widens fp16 into
 * (OpenMP over rows, a 16-entry level table times each block's absmax), then one sgemm runs
 * over the whole token batch.
 *
 * int8, LLM.int8(): the input columns holding any |x| >= threshold (the outlier features) are
 * split off. The other columns are quantized per token, s_t = max|x_t| / 127, xq = rint(x / s_t),
 * and multiplied with the int8 weight in integer arithmetic: int32 accumulators, y = acc * s_t *
 * s_n with s_n = SCB[n] / 127. The outlier columns multiply the dequantized weight columns
 * in fp32 (sgemm, at least fp16's precision) and are added. A threshold <= 0 turns the
 * decomposition off. The integer product uses AVX2 (pmaddubsw on |x| and sign-adjusted weights:
 * |x|*|w| <= 127*127, so the int16 pair sums cannot saturate) where the CPU has it, plain C
 * elsewhere. */
#include "cpu_internal.h"

#include "../error.h"
#include "../quant.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int ensure_qscratch(qh_cpu_impl *impl, size_t bytes)
{
    if (impl->qscratch_bytes >= bytes) return QH_OK;
    void *p = realloc(impl->qscratch, bytes); /* keeps what the first phase wrote */
    if (!p) return qh_fail(QH_ESYS, "out of memory: %zu bytes of int8 scratch", bytes);
    impl->qscratch = p;
    impl->qscratch_bytes = bytes;
    return QH_OK;
}

static int linear_nf4(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y, int64_t t, int64_t k,
                      int64_t n)
{
    qh_cpu_impl *impl = be->impl;
    int rc = qh_cpu_ensure_scratch(impl, (size_t)(n * k));
    if (rc) return rc;
    float *wf = impl->scratch;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) qh_nf4_dequantize(w, r * k, k, wf + r * k);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)t, (blasint)n, (blasint)k, 1.0f, x->data,
                (blasint)k, wf, (blasint)k, 0.0f, y->data, (blasint)n);
    return QH_OK;
}

/* y[t][n] for t < T, n in [n0, n1): integer dot products of xq rows and weight rows, scaled. */
typedef void (*int8_tile_fn)(const int8_t *xq, const float *sx, int64_t T, const int8_t *W, const float *scb,
                             int64_t n0, int64_t n1, int64_t K, float *y, int64_t N);

static int32_t dot_i8(const int8_t *a, const int8_t *b, int64_t k)
{
    int32_t s = 0;
    for (int64_t i = 0; i < k; i++) s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}

static void tile_plain(const int8_t *xq, const float *sx, int64_t T, const int8_t *W, const float *scb, int64_t n0,
                       int64_t n1, int64_t K, float *y, int64_t N)
{
    for (int64_t n = n0; n < n1; n++) {
        float sw = scb[n] / 127.0f;
        for (int64_t t = 0; t < T; t++) y[t * N + n] = (float)dot_i8(xq + t * K, W + n * K, K) * sx[t] * sw;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

__attribute__((target("avx2"))) static inline int32_t hsum_i32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* 32 products of |x| (u8) and sign(x) * w (s8), pairwise summed to int16, then to int32. */
__attribute__((target("avx2"))) static inline __m256i mac32(__m256i acc, __m256i ax, __m256i x, const int8_t *w)
{
    __m256i wv = _mm256_loadu_si256((const __m256i *)w);
    __m256i p16 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv, x));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

__attribute__((target("avx2"))) static void tile_avx2(const int8_t *xq, const float *sx, int64_t T, const int8_t *W,
                                                      const float *scb, int64_t n0, int64_t n1, int64_t K, float *y,
                                                      int64_t N)
{
    int64_t kv = K / 32 * 32, n = n0;
    for (; n + 4 <= n1; n += 4) { /* four weight rows share each load of x */
        const int8_t *w0 = W + n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
        for (int64_t t = 0; t < T; t++) {
            const int8_t *xr = xq + t * K;
            __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t c = 0; c < kv; c += 32) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xr + c)), ax = _mm256_abs_epi8(xv);
                a0 = mac32(a0, ax, xv, w0 + c);
                a1 = mac32(a1, ax, xv, w1 + c);
                a2 = mac32(a2, ax, xv, w2 + c);
                a3 = mac32(a3, ax, xv, w3 + c);
            }
            int32_t d[4] = {hsum_i32(a0), hsum_i32(a1), hsum_i32(a2), hsum_i32(a3)};
            const int8_t *wr[4] = {w0, w1, w2, w3};
            for (int r = 0; r < 4; r++) {
                d[r] += dot_i8(xr + kv, wr[r] + kv, K - kv);
                y[t * N + n + r] = (float)d[r] * sx[t] * (scb[n + r] / 127.0f);
            }
        }
    }
    if (n < n1) tile_plain(xq, sx, T, W, scb, n, n1, K, y, N);
}

static int8_tile_fn pick_tile(void)
{
    static int8_tile_fn fn;
    if (!fn) fn = __builtin_cpu_supports("avx2") ? tile_avx2 : tile_plain;
    return fn;
}
#else
static int8_tile_fn pick_tile(void) { return tile_plain; }
#endif

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static int linear_int8(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y, int64_t T, int64_t K,
                       int64_t N)
{
    qh_cpu_impl *impl = be->impl;
    const float *xf = x->data, *scb = w->quant.scale;
    const int8_t *W = w->data;
    float *yf = y->data, thr = w->quant.threshold;
    /* scratch: outlier flags [K] | outlier columns [K] | token scales [T] | xq [T, K] | then
     * the outlier inputs [T, m] and dequantized weight columns [N, m] */
    size_t o_idx = align64((size_t)K), o_sx = o_idx + align64((size_t)K * 4), o_xq = o_sx + align64((size_t)T * 4);
    size_t o_xo = o_xq + align64((size_t)(T * K));
    int rc = ensure_qscratch(impl, o_xo);
    if (rc) return rc;
    uint8_t *flag = impl->qscratch;
    memset(flag, 0, (size_t)K);
    if (thr > 0) {
#pragma omp parallel for schedule(static)
        for (int64_t c0 = 0; c0 < K; c0 += 256) {
            int64_t c1 = c0 + 256 < K ? c0 + 256 : K;
            for (int64_t t = 0; t < T; t++)
                for (int64_t c = c0; c < c1; c++) flag[c] |= fabsf(xf[t * K + c]) >= thr;
        }
    }
    int64_t m = 0;
    for (int64_t c = 0; c < K; c++) m += flag[c];
    size_t o_wo = o_xo + align64((size_t)(T * m) * 4);
    if ((rc = ensure_qscratch(impl, o_wo + (size_t)(N * m) * 4 + 64))) return rc;
    char *base = impl->qscratch;
    flag = (uint8_t *)base;
    int32_t *idx = (int32_t *)(base + o_idx);
    float *sx = (float *)(base + o_sx), *xo = (float *)(base + o_xo), *wo = (float *)(base + o_wo);
    int8_t *xq = (int8_t *)(base + o_xq);
    for (int64_t c = 0, j = 0; c < K; c++)
        if (flag[c]) idx[j++] = (int32_t)c;

#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; t++) { /* per-token absmax quantization of the regular columns */
        const float *xr = xf + t * K;
        float amax = 0.0f;
        for (int64_t c = 0; c < K; c++) {
            float a = flag[c] ? 0.0f : fabsf(xr[c]);
            if (a > amax) amax = a;
        }
        sx[t] = amax / 127.0f;
        float inv = amax > 0 ? 127.0f / amax : 0.0f;
        for (int64_t c = 0; c < K; c++) {
            float v = flag[c] ? 0.0f : nearbyintf(xr[c] * inv);
            xq[t * K + c] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v == v ? v : 0); /* NaN: 0, not UB */
        }
    }

    int8_tile_fn tile = pick_tile();
    int64_t chunks = (N + 15) / 16;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < chunks; b++) tile(xq, sx, T, W, scb, b * 16, (b + 1) * 16 < N ? (b + 1) * 16 : N, K, yf, N);

    if (m > 0) { /* outlier columns: x[:, O] (fp32) times the dequantized w[:, O] */
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < T + N; r++) {
            if (r < T) {
                for (int64_t j = 0; j < m; j++) xo[r * m + j] = xf[r * K + idx[j]];
            } else {
                int64_t nn = r - T;
                float sw = scb[nn] / 127.0f;
                for (int64_t j = 0; j < m; j++) wo[nn * m + j] = (float)W[nn * K + idx[j]] * sw;
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)T, (blasint)N, (blasint)m, 1.0f, xo,
                    (blasint)m, wo, (blasint)m, 1.0f, yf, (blasint)N);
    }
    return QH_OK;
}

int qh_cpu_linear_quant(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y)
{
    int64_t t = qh_tensor_rows(x), k = qh_tensor_cols(x), n = qh_tensor_rows(w);
    if (w->ndim != 2 || w->shape[1] != k || (w->dtype == QH_NF4 && w->quant.blocksize < 2))
        return qh_fail(QH_ESYS, "linear: internal error: quantized weight does not match input width %lld",
                       (long long)k);
    int rc = qh_cpu_check_act("linear(x)", x, t, k);
    if (!rc) rc = qh_cpu_check_act("linear(y)", y, t, n);
    if (rc || t == 0) return rc;
    return w->dtype == QH_NF4 ? linear_nf4(be, x, w, y, t, k, n) : linear_int8(be, x, w, y, t, k, n);
}
