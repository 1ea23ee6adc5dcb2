/* LLM.int8() weight quantization: one absmax scale per output row; see quant.h. */
#include "quant.h"

#include <math.h>

enum { CHUNK = 1024 };

int64_t qh_int8_quantize(qh_dtype dt, const void *src, int64_t rows, int64_t cols, int8_t *q, float *absmax)
{
    const char *s = src;
    size_t es = qh_dtype_size(dt);
    int64_t bad = INT64_MAX;
#pragma omp parallel for schedule(static) reduction(min : bad)
    for (int64_t r = 0; r < rows; r++) {
        float buf[CHUNK];
        const char *row = s + (size_t)(r * cols) * es;
        float amax = qh_quant_absmax(dt, row, cols, r * cols, &bad);
        absmax[r] = amax;
        int8_t *out = q + r * cols;
        for (int64_t c = 0; c < cols; c += CHUNK) {
            int64_t m = cols - c < CHUNK ? cols - c : CHUNK;
            qh_convert_to_f32(dt, row + (size_t)c * es, buf, (size_t)m);
            for (int64_t j = 0; j < m; j++) {
                double v = amax > 0 ? rint((double)buf[j] * 127.0 / (double)amax) : 0.0;
                out[c + j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
            }
        }
    }
    return bad == INT64_MAX ? -1 : bad;
}

void qh_int8_dequantize(const qh_tensor *w, int64_t i0, int64_t n, float *out)
{
    int64_t k = qh_tensor_cols(w);
    const int8_t *q = w->data;
    for (int64_t i = i0; i < i0 + n;) {
        int64_t r = i / k, end = (r + 1) * k < i0 + n ? (r + 1) * k : i0 + n;
        float s = w->quant.scale[r] / 127.0f;
        for (; i < end; i++) *out++ = (float)q[i] * s;
    }
}
