/* y = x w^T on the CPU with OpenBLAS.
 *
 * OpenBLAS has no fp16 product, so a 16-bit weight matrix is widened to fp32 into a scratch
 * buffer that is reused from call to call (the largest LLaMA-2-7B matrix needs 180 MB), then
 * one sgemm runs over the whole token batch. The conversion costs one pass over the weight,
 * which the sgemm amortises over every token in the batch; the memory map is never copied
 * whole. */
#include "cpu_internal.h"

#include "../error.h"
#include "../memlimit.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

int qh_cpu_ensure_scratch(qh_cpu_impl *impl, size_t floats)
{
    if (impl->scratch_floats >= floats) return QH_OK;
    /* A checkpoint's shapes decide this size: refuse one that cannot fit before allocating. */
    char what[128];
    snprintf(what, sizeof what, "widening a weight matrix of %zu elements to fp32", floats);
    int rc = qh_check_memory((uint64_t)floats * sizeof(float), what);
    if (rc) return rc;
    free(impl->scratch);
    impl->scratch = malloc(floats * sizeof(float));
    impl->scratch_floats = impl->scratch ? floats : 0;
    if (!impl->scratch) return qh_fail(QH_ESYS, "out of memory: %zu bytes of weight scratch", floats * 4);
    return QH_OK;
}

static void widen_rows(const qh_tensor *w, float *dst, int64_t n, int64_t k)
{
    const char *src = w->data;
    size_t es = qh_dtype_size(w->dtype);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) qh_convert_to_f32(w->dtype, src + (size_t)(r * k) * es, dst + r * k, (size_t)k);
}

int qh_cpu_linear(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y)
{
    int64_t t = qh_tensor_rows(x), k = qh_tensor_cols(x);
    int64_t n = qh_tensor_rows(w);
    if (qh_tensor_is_quantized(w)) return qh_cpu_linear_quant(be, x, w, y);
    if (w->ndim != 2 || w->shape[1] != k || !qh_dtype_is_float(w->dtype))
        return qh_fail(QH_ESYS, "linear: internal error: weight does not match input width %lld", (long long)k);
    int rc = qh_cpu_check_act("linear(x)", x, t, k);
    if (!rc) rc = qh_cpu_check_act("linear(y)", y, t, n);
    if (rc) return rc;
    if (t == 0) return QH_OK;
    const float *wf = w->data;
    if (w->dtype != QH_F32) {
        qh_cpu_impl *impl = be->impl;
        rc = qh_cpu_ensure_scratch(impl, (size_t)(n * k));
        if (rc) return rc;
        widen_rows(w, impl->scratch, n, k);
        wf = impl->scratch;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)t, (blasint)n, (blasint)k, 1.0f, x->data,
                (blasint)k, wf, (blasint)k, 0.0f, y->data, (blasint)n);
    return QH_OK;
}
