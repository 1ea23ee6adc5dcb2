/* Causal attention over packed variable-length sequences on the CPU.
 *
 * No padding: sequence s owns rows starts[s] .. starts[s+1]-1 of q, k and v. Work is split
 * over (sequence, head) pairs, which keeps every thread busy even when one tweet is long. */
#include "cpu_internal.h"

#include "../error.h"

#include <math.h>
#include <stdlib.h>

int qh_cpu_attention(qh_backend *be, const qh_tensor *q, const qh_tensor *k, const qh_tensor *v,
                     qh_tensor *out, const qh_batch *batch, int n_heads, int n_kv_heads, int head_dim)
{
    (void)be;
    int64_t t = batch->n_tokens;
    int64_t qw = (int64_t)n_heads * head_dim, kw = (int64_t)n_kv_heads * head_dim;
    int rc = qh_cpu_check_act("attention(q)", q, t, qw);
    if (!rc) rc = qh_cpu_check_act("attention(k)", k, t, kw);
    if (!rc) rc = qh_cpu_check_act("attention(v)", v, t, kw);
    if (!rc) rc = qh_cpu_check_act("attention(out)", out, t, qw);
    if (rc) return rc;
    if (n_kv_heads <= 0 || n_heads % n_kv_heads) return qh_fail(QH_ESYS, "attention: internal error: heads");
    int group = n_heads / n_kv_heads;
    const float *qd = q->data, *kd = k->data, *vd = v->data;
    float *od = out->data;
    const int32_t *starts = batch->host_starts;
    float scale = 1.0f / sqrtf((float)head_dim);
    int64_t jobs = (int64_t)batch->n_seqs * n_heads;
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        float *p = malloc(sizeof(float) * (size_t)(batch->max_len > 0 ? batch->max_len : 1));
        if (!p) failed = 1;
#pragma omp for schedule(dynamic, 1)
        for (int64_t job = 0; job < jobs; job++) {
            if (!p) continue;
            int s = (int)(job / n_heads), h = (int)(job % n_heads), kvh = h / group;
            int64_t base = starts[s], len = starts[s + 1] - starts[s];
            for (int64_t i = 0; i < len; i++) {
                const float *qi = qd + (base + i) * qw + (int64_t)h * head_dim;
                float mx = -INFINITY;
                for (int64_t j = 0; j <= i; j++) {
                    const float *kj = kd + (base + j) * kw + (int64_t)kvh * head_dim;
                    float dot = 0.0f;
                    for (int d = 0; d < head_dim; d++) dot += qi[d] * kj[d];
                    p[j] = dot * scale;
                    if (p[j] > mx) mx = p[j];
                }
                float sum = 0.0f;
                for (int64_t j = 0; j <= i; j++) {
                    p[j] = expf(p[j] - mx);
                    sum += p[j];
                }
                float inv = 1.0f / sum;
                float *oi = od + (base + i) * qw + (int64_t)h * head_dim;
                for (int d = 0; d < head_dim; d++) oi[d] = 0.0f;
                for (int64_t j = 0; j <= i; j++) {
                    const float *vj = vd + (base + j) * kw + (int64_t)kvh * head_dim;
                    float pj = p[j] * inv;
                    for (int d = 0; d < head_dim; d++) oi[d] += pj * vj[d];
                }
            }
        }
        free(p);
    }
    if (failed) return qh_fail(QH_ESYS, "out of memory in attention");
    return QH_OK;
}
