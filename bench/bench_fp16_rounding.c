/* bench_fp16_rounding: how much storing activations in fp16 costs on a model, measured on the
 * CPU (no GPU needed). Runs the LLaMA forward pass of core/llama_forward.c step by step with the
 * CPU backend's fp32 ops, rounding chosen intermediates to fp16 the way the CUDA backend stores
 * them, and compares each sequence's final hidden state with a reference.
 *
 *   bench_fp16_rounding FIXTURE_DIR [MASK...]
 *
 * FIXTURE_DIR holds a model and reference.safetensors (tests/fixtures/llama/{mha,gqa}).
 * MASK (default: each rounding alone, then the CUDA backend's set, then transformers' fp16 set)
 * is a sum of: 1 normalised GEMM inputs, 2 q/k/v, 4 q/k after rope, 8 attention probabilities,
 * 16 attention output, 32 gate/up, 64 SwiGLU output, 128 residual stream (transformers fp16).
 * The CUDA backend's fp16 mode rounds 127 (its tensor-core attention rounds rotated q, k and the
 * probabilities; its residual stream is fp32). */
#include "backend.h"
#include "error.h"
#include "llama_model.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { R_XN = 1, R_QKV = 2, R_ROPE = 4, R_P = 8, R_ATT = 16, R_GU = 32, R_SILU = 64, R_RES = 128 };

static int mask;

static float r16(float x) { return qh_f16_to_f32(qh_f32_to_f16(x)); }

static void rnd(qh_tensor *t, int flag)
{
    if (!(mask & flag)) return;
    float *d = t->data;
    for (int64_t i = 0; i < qh_tensor_numel(t); i++) d[i] = r16(d[i]);
}

/* Causal attention of one sequence, probabilities rounded like the tensor-core kernel (the row
 * sum from unrounded values). */
static void attention(const float *q, const float *k, const float *v, float *o, int len, int nh, int nkv, int hd)
{
    int g = nh / nkv;
    float sc = 1.0f / sqrtf((float)hd), *p = malloc(sizeof(float) * (size_t)len);
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < len; i++) {
            const float *qi = q + ((size_t)i * nh + h) * hd;
            float mx = -INFINITY, l = 0;
            for (int j = 0; j <= i; j++) {
                const float *kj = k + ((size_t)j * nkv + h / g) * hd;
                float d = 0;
                for (int c = 0; c < hd; c++) d += qi[c] * kj[c];
                p[j] = d * sc;
                if (p[j] > mx) mx = p[j];
            }
            for (int j = 0; j <= i; j++) {
                p[j] = expf(p[j] - mx);
                l += p[j];
                if (mask & R_P) p[j] = r16(p[j]);
            }
            float *oi = o + ((size_t)i * nh + h) * hd;
            for (int c = 0; c < hd; c++) {
                float a = 0;
                for (int j = 0; j <= i; j++) a += p[j] * v[((size_t)j * nkv + h / g) * hd + c];
                oi[c] = a / l;
            }
        }
    free(p);
}

static int run(const char *dir, qh_backend *be, qh_llama_model *m, qh_safetensors *ref)
{
    const int32_t *ids = qh_st_data(ref, qh_st_find(ref, "ids")), *lens = qh_st_data(ref, qh_st_find(ref, "lengths"));
    const double *rh = qh_st_data(ref, qh_st_find(ref, "hidden"));
    int n = (int)qh_st_find(ref, "lengths")->shape[0];
    const qh_llama_config *c = &m->cfg;
    int h = c->hidden_size, f = c->intermediate_size, hd = c->head_dim;
    int qw = c->num_heads * hd, kw = c->num_kv_heads * hd;
    float eps = (float)c->rms_norm_eps;
    double worst = 0, sum = 0, fn = 0, fd = 0;
    int worst_len = 0;
    size_t off = 0;
    for (int s = 0; s < n; off += (size_t)lens[s], s++) {
        int t = lens[s];
        qh_tensor x = qh_tensor_2d(QH_F32, t, h), xn = x, tmp = x, q = qh_tensor_2d(QH_F32, t, qw);
        qh_tensor k = qh_tensor_2d(QH_F32, t, kw), v = k, att = q, gt = qh_tensor_2d(QH_F32, t, f), up = gt;
        qh_tensor idt = qh_tensor_1d(QH_I32, t), pos = idt;
        qh_tensor *all[] = {&x, &xn, &tmp, &q, &k, &v, &att, &gt, &up, &pos};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            if (be->alloc(be, all[i])) return 1;
        if (be->upload(be, ids + off, &idt)) return 1;
        for (int i = 0; i < t; i++) ((int32_t *)pos.data)[i] = i;
        be->embed(be, &m->embed, &idt, &x);
        rnd(&x, R_RES);
        for (int l = 0; l < c->num_layers; l++) {
            const qh_llama_layer *L = &m->layers[l];
            be->rmsnorm(be, &x, &L->attn_norm, eps, &xn), rnd(&xn, R_XN);
            be->linear(be, &xn, &L->wq, &q), be->linear(be, &xn, &L->wk, &k), be->linear(be, &xn, &L->wv, &v);
            rnd(&q, R_QKV), rnd(&k, R_QKV), rnd(&v, R_QKV);
            be->rope(be, &q, &k, &pos, hd, c->rope_theta), rnd(&q, R_ROPE), rnd(&k, R_ROPE);
            attention(q.data, k.data, v.data, att.data, t, c->num_heads, c->num_kv_heads, hd), rnd(&att, R_ATT);
            be->linear(be, &att, &L->wo, &tmp), rnd(&tmp, R_RES), be->add(be, &x, &tmp), rnd(&x, R_RES);
            be->rmsnorm(be, &x, &L->mlp_norm, eps, &xn), rnd(&xn, R_XN);
            be->linear(be, &xn, &L->w_gate, &gt), be->linear(be, &xn, &L->w_up, &up), rnd(&gt, R_GU), rnd(&up, R_GU);
            be->silu_mul(be, &gt, &up, &gt), rnd(&gt, R_SILU);
            be->linear(be, &gt, &L->w_down, &tmp), rnd(&tmp, R_RES), be->add(be, &x, &tmp), rnd(&x, R_RES);
        }
        be->rmsnorm(be, &x, &m->final_norm, eps, &xn);
        const float *got = (const float *)xn.data + (size_t)(t - 1) * h;
        const double *want = rh + (size_t)s * h;
        double num = 0, den = 0;
        for (int i = 0; i < h; i++) num += (got[i] - want[i]) * (got[i] - want[i]), den += want[i] * want[i];
        double e = sqrt(num / den);
        sum += e, fn += num, fd += den;
        if (e > worst) worst = e, worst_len = t;
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) be->release(be, all[i]);
        be->release(be, &idt);
    }
    printf("%-28s mask %3d: hidden rel err worst %.2e (length %3d), mean %.2e, all rows %.2e\n", dir, mask, worst,
           worst_len, sum / n, sqrt(fn / fd));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_fp16_rounding FIXTURE_DIR [MASK...]\n");
        return 2;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/reference.safetensors", argv[1]);
    qh_safetensors *ref;
    qh_backend *be;
    qh_llama_model *m;
    if (qh_st_open(path, &ref) || qh_backend_create("cpu", &be) || qh_llama_load(argv[1], be, &m))
        return qh_report("bench_fp16_rounding", QH_EINPUT);
    static const int defaults[] = {0, 1, 2, 4, 8, 16, 32, 64, 127, 255};
    int nm = argc > 2 ? argc - 2 : (int)(sizeof defaults / sizeof defaults[0]);
    for (int i = 0; i < nm; i++) {
        mask = argc > 2 ? atoi(argv[2 + i]) : defaults[i];
        if (run(argv[1], be, m, ref)) return qh_report("bench_fp16_rounding", QH_ESYS);
    }
    qh_llama_free(m);
    qh_backend_destroy(be);
    qh_st_close(ref);
    return 0;
}
