/* Elementwise and row-wise ops of the CPU backend, OpenMP over rows. */
#include "cpu_internal.h"

#include "../error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int qh_cpu_embed(qh_backend *be, const qh_tensor *table, const qh_tensor *ids, qh_tensor *out)
{
    (void)be;
    int64_t t = qh_tensor_numel(ids), h = qh_tensor_cols(table), vocab = qh_tensor_rows(table);
    int rc = qh_cpu_check_act("embed", out, t, h);
    if (rc) return rc;
    const int32_t *id = ids->data;
    for (int64_t i = 0; i < t; i++) /* ids are validated on the host; this guards the memory */
        if (id[i] < 0 || id[i] >= vocab) return qh_fail(QH_EINPUT, "token id %d is outside the vocabulary", id[i]);
    size_t es = qh_dtype_size(table->dtype);
    float *o = out->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < t; i++)
        qh_convert_to_f32(table->dtype, (const char *)table->data + (size_t)id[i] * (size_t)h * es, o + i * h,
                          (size_t)h);
    return QH_OK;
}

int qh_cpu_rmsnorm(qh_backend *be, const qh_tensor *x, const qh_tensor *w, float eps, qh_tensor *out)
{
    (void)be;
    int64_t t = qh_tensor_rows(x), h = qh_tensor_cols(x);
    int rc = qh_cpu_check_act("rmsnorm(x)", x, t, h);
    if (!rc) rc = qh_cpu_check_act("rmsnorm(out)", out, t, h);
    if (rc) return rc;
    if (qh_tensor_numel(w) != h) return qh_fail(QH_ESYS, "rmsnorm: internal error: weight size");
    float *wf = malloc((size_t)h * sizeof *wf);
    if (!wf) return qh_fail(QH_ESYS, "out of memory");
    qh_convert_to_f32(w->dtype, w->data, wf, (size_t)h);
    const float *xd = x->data;
    float *od = out->data;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < t; r++) {
        const float *xr = xd + r * h;
        float *orow = od + r * h;
        double ss = 0.0; /* double sum: LLaMA-2's 4096-wide rows lose bits in fp32 */
        for (int64_t i = 0; i < h; i++) ss += (double)xr[i] * xr[i];
        float scale = (float)(1.0 / sqrt(ss / (double)h + (double)eps));
        for (int64_t i = 0; i < h; i++) orow[i] = xr[i] * scale * wf[i];
    }
    free(wf);
    return QH_OK;
}

/* Rotate each head's pairs (i, i + d/2) by angle pos * theta^(-2i/d). */
static void rope_rows(float *x, int64_t t, int heads, int d, const int32_t *pos, const double *inv_freq)
{
    int half = d / 2;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < t; r++) {
        for (int i = 0; i < half; i++) {
            double a = (double)pos[r] * inv_freq[i];
            float c = (float)cos(a), s = (float)sin(a);
            for (int hh = 0; hh < heads; hh++) {
                float *v = x + (r * heads + hh) * d;
                float x1 = v[i], x2 = v[i + half];
                v[i] = x1 * c - x2 * s;
                v[i + half] = x2 * c + x1 * s;
            }
        }
    }
}

int qh_cpu_rope(qh_backend *be, qh_tensor *q, qh_tensor *k, const qh_tensor *positions, int head_dim,
                double theta)
{
    (void)be;
    int64_t t = qh_tensor_rows(q);
    if (head_dim <= 0 || head_dim % 2 || qh_tensor_cols(q) % head_dim || qh_tensor_cols(k) % head_dim ||
        qh_tensor_rows(k) != t || qh_tensor_numel(positions) != t)
        return qh_fail(QH_ESYS, "rope: internal error: shapes");
    double *inv_freq = malloc(sizeof(double) * (size_t)(head_dim / 2));
    if (!inv_freq) return qh_fail(QH_ESYS, "out of memory");
    for (int i = 0; i < head_dim / 2; i++) inv_freq[i] = pow(theta, -2.0 * i / head_dim);
    rope_rows(q->data, t, (int)(qh_tensor_cols(q) / head_dim), head_dim, positions->data, inv_freq);
    rope_rows(k->data, t, (int)(qh_tensor_cols(k) / head_dim), head_dim, positions->data, inv_freq);
    free(inv_freq);
    return QH_OK;
}

int qh_cpu_silu_mul(qh_backend *be, const qh_tensor *gate, const qh_tensor *up, qh_tensor *out)
{
    (void)be;
    int64_t t = qh_tensor_rows(gate), f = qh_tensor_cols(gate);
    int rc = qh_cpu_check_act("silu_mul(gate)", gate, t, f);
    if (!rc) rc = qh_cpu_check_act("silu_mul(up)", up, t, f);
    if (!rc) rc = qh_cpu_check_act("silu_mul(out)", out, t, f);
    if (rc) return rc;
    const float *g = gate->data, *u = up->data;
    float *o = out->data;
    int64_t n = t * f;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    return QH_OK;
}

int qh_cpu_add(qh_backend *be, qh_tensor *x, const qh_tensor *y)
{
    (void)be;
    int64_t t = qh_tensor_rows(x), h = qh_tensor_cols(x);
    int rc = qh_cpu_check_act("add(x)", x, t, h);
    if (!rc) rc = qh_cpu_check_act("add(y)", y, t, h);
    if (rc) return rc;
    float *xd = x->data;
    const float *yd = y->data;
    int64_t n = t * h;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) xd[i] += yd[i];
    return QH_OK;
}

int qh_cpu_gather_rows(qh_backend *be, const qh_tensor *x, const qh_tensor *rows, qh_tensor *out)
{
    (void)be;
    int64_t n = qh_tensor_numel(rows), h = qh_tensor_cols(x), t = qh_tensor_rows(x);
    int rc = qh_cpu_check_act("gather_rows", out, n, h);
    if (rc) return rc;
    const int32_t *r = rows->data;
    for (int64_t i = 0; i < n; i++) {
        if (r[i] < 0 || r[i] >= t) return qh_fail(QH_ESYS, "gather_rows: internal error: row %d of %lld", r[i], (long long)t);
        memcpy((float *)out->data + i * h, (const float *)x->data + (int64_t)r[i] * h, (size_t)h * sizeof(float));
    }
    return QH_OK;
}
