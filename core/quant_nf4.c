/* NF4 (QLoRA) blockwise quantization and its double quantization; see quant.h. */
#include "quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define NF4_LEVELS(X)                                                                                          \
    X(-1.0f) X(-0.6961928009986877f) X(-0.5250730514526367f) X(-0.39491748809814453f)                          \
    X(-0.28444138169288635f) X(-0.18477343022823334f) X(-0.09105003625154495f) X(0.0f) X(0.07958029955625534f) \
    X(0.16093020141124725f) X(0.24611230194568634f) X(0.33791524171829224f) X(0.44070982933044434f)           \
    X(0.5626170039176941f) X(0.7229568362236023f) X(1.0f)
#define AS_LIST(v) v,

const float qh_nf4_levels[16] = {NF4_LEVELS(AS_LIST)};

/* Midpoints between neighbouring levels in float64: m[i] separates code i from i + 1. The
 * number of midpoints strictly below x is the nearest level's code, ties to the lower one. */
static void make_mids(double m[15])
{
    for (int i = 0; i < 15; i++) m[i] = ((double)qh_nf4_levels[i] + (double)qh_nf4_levels[i + 1]) / 2.0;
}

/* Codes of m values v / den (den > 0), counted rather than searched so that the compiler
 * vectorizes the loop (AVX2 where the CPU has it: 4 values a step, no branches). */
__attribute__((target_clones("avx2", "default"))) static void codes_of(const double *restrict mids,
                                                                     const float *restrict v, int64_t m, double den,
                                                                     uint8_t *restrict out)
{
    for (int64_t j = 0; j < m; j++) {
        double x = (double)v[j] / den;
        int c = 0;
        for (int i = 0; i < 15; i++) c += x > mids[i];
        out[j] = (uint8_t)c;
    }
}

int qh_nf4_code(double x)
{
    double m[15];
    make_mids(m);
    int c = 0;
    for (int i = 0; i < 15; i++) c += x > m[i];
    return c;
}

enum { CHUNK = 1024 };

float qh_quant_absmax(qh_dtype dt, const void *src, int64_t n, int64_t base, int64_t *bad)
{
    float buf[CHUNK], amax = 0.0f;
    size_t es = qh_dtype_size(dt);
    for (int64_t c = 0; c < n; c += CHUNK) {
        int64_t m = n - c < CHUNK ? n - c : CHUNK;
        qh_convert_to_f32(dt, (const char *)src + (size_t)c * es, buf, (size_t)m);
        for (int64_t j = 0; j < m; j++) {
            float a = fabsf(buf[j]);
            if (!(a <= FLT_MAX) && base + c + j < *bad) *bad = base + c + j; /* NaN or inf */
            if (a > amax) amax = a;
        }
    }
    return amax;
}

int64_t qh_nf4_quantize(qh_dtype dt, const void *src, int64_t n, int blocksize, uint8_t *codes, float *absmax)
{
    double mids[15];
    make_mids(mids);
    const char *s = src;
    size_t es = qh_dtype_size(dt);
    int64_t nb = (n + blocksize - 1) / blocksize, bad = INT64_MAX;
#pragma omp parallel for schedule(static) reduction(min : bad)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * blocksize, len = n - i0 < blocksize ? n - i0 : blocksize;
        float buf[CHUNK];
        uint8_t cb[CHUNK + 1];
        float amax = qh_quant_absmax(dt, s + (size_t)i0 * es, len, i0, &bad);
        absmax[b] = amax;
        for (int64_t c = 0; c < len; c += CHUNK) {
            int64_t m = len - c < CHUNK ? len - c : CHUNK;
            qh_convert_to_f32(dt, s + (size_t)(i0 + c) * es, buf, (size_t)m);
            if (amax > 0) codes_of(mids, buf, m, amax, cb); /* x = w / absmax in float64 */
            else memset(cb, 7, (size_t)m);                  /* a zero block is all zeros */
            cb[m] = 0;                                      /* an odd last code pairs with 0 */
            uint8_t *out = codes + (i0 + c) / 2;            /* blocks and chunks start at even indices */
            for (int64_t j = 0; j < m; j += 2) out[j / 2] = (uint8_t)(cb[j] << 4 | cb[j + 1]);
        }
    }
    return bad == INT64_MAX ? -1 : bad;
}

void qh_nf4_double_quant(const float *absmax, int64_t nb, int8_t *qabsmax, float *nested, float *offset)
{
    double sum = 0;
    for (int64_t i = 0; i < nb; i++) sum += absmax[i];
    float off = nb ? (float)(sum / (double)nb) : 0.0f;
    *offset = off;
    int64_t nn = (nb + QH_NF4_NESTED_BLOCK - 1) / QH_NF4_NESTED_BLOCK;
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < nn; j++) {
        int64_t i0 = j * QH_NF4_NESTED_BLOCK, i1 = i0 + QH_NF4_NESTED_BLOCK < nb ? i0 + QH_NF4_NESTED_BLOCK : nb;
        double m = 0;
        for (int64_t i = i0; i < i1; i++) m = fmax(m, fabs((double)absmax[i] - off));
        float m32 = (float)m;
        nested[j] = m32;
        for (int64_t i = i0; i < i1; i++) {
            double q = m32 > 0 ? rint(((double)absmax[i] - off) * 127.0 / (double)m32) : 0.0;
            qabsmax[i] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
        }
    }
}

float qh_nf4_absmax(const qh_quant *q, int64_t b)
{
    if (!q->qabsmax) return q->scale[b];
    return (float)q->qabsmax[b] * (q->nested_absmax[b / QH_NF4_NESTED_BLOCK] / 127.0f) + q->nested_offset;
}

void qh_nf4_dequantize(const qh_tensor *w, int64_t i0, int64_t n, float *out)
{
    const uint8_t *codes = w->data;
    const float *lv = qh_nf4_levels;
    int64_t bs = w->quant.blocksize, i = i0, end = i0 + n;
    while (i < end) {
        int64_t b = i / bs, bend = (b + 1) * bs < end ? (b + 1) * bs : end;
        float a = qh_nf4_absmax(&w->quant, b);
        if (i & 1) *out++ = lv[codes[i++ >> 1] & 15] * a;
        for (; i + 1 < bend; i += 2) {
            uint8_t c = codes[i >> 1];
            out[0] = lv[c >> 4] * a;
            out[1] = lv[c & 15] * a;
            out += 2;
        }
        if (i < bend) *out++ = lv[codes[i++ >> 1] >> 4] * a;
    }
}

void qh_quant_dequantize(const qh_tensor *w, int64_t i0, int64_t n, float *out)
{
    if (w->dtype == QH_NF4) qh_nf4_dequantize(w, i0, n, out);
    else qh_int8_dequantize(w, i0, n, out);
}
