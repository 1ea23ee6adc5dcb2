/* The LLaMA forward pass over packed variable-length batches, written once against the
 * backend seam (transformers' LlamaModel, see ../shared/reference/llama.md):
 *   h = embed(ids); per layer: h += o_proj(attn(rope(q, k), v)) on rmsnorm(h);
 *   h += down(silu(gate(x)) * up(x)) with x = rmsnorm(h); finally rmsnorm(h).
 * Only each sequence's last token is pooled, so the last layer's output projection and MLP
 * run on those rows alone. */
#include "llama_model.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

enum { B_X, B_XN, B_Q, B_K, B_V, B_ATT, B_TMP, B_GATE, B_UP, B_XLAST, B_ALAST, B_COUNT };

struct qh_llama_ctx {
    qh_llama_model *m;
    int batch_tokens;
    int cap_tokens, cap_seqs;
    qh_tensor buf[B_COUNT];
    int32_t *h_pos, *h_starts, *h_last; /* host staging for the batch description */
    int h_cap_tokens, h_cap_seqs;
};

static void release_buffers(qh_llama_ctx *ctx)
{
    for (int i = 0; i < B_COUNT; i++)
        if (ctx->buf[i].data) ctx->m->be->release(ctx->m->be, &ctx->buf[i]);
}

static int ensure_capacity(qh_llama_ctx *ctx, int tokens, int seqs)
{
    if (tokens <= ctx->cap_tokens && seqs <= ctx->cap_seqs) return QH_OK;
    if (tokens < ctx->cap_tokens) tokens = ctx->cap_tokens;
    if (seqs < ctx->cap_seqs) seqs = ctx->cap_seqs;
    release_buffers(ctx);
    const qh_llama_config *c = &ctx->m->cfg;
    qh_backend *be = ctx->m->be;
    int64_t h = c->hidden_size, f = c->intermediate_size;
    int64_t qw = (int64_t)c->num_heads * c->head_dim, kw = (int64_t)c->num_kv_heads * c->head_dim;
    int64_t widths[B_COUNT] = {h, h, qw, kw, kw, qw, h, f, f, h, qw};
    for (int i = 0; i < B_COUNT; i++) {
        int64_t rows = (i == B_XLAST || i == B_ALAST) ? seqs : tokens;
        ctx->buf[i] = qh_tensor_2d(be->act_dtype, rows, widths[i]);
        int rc = be->alloc(be, &ctx->buf[i]);
        if (rc) {
            ctx->buf[i].data = NULL;
            release_buffers(ctx);
            ctx->cap_tokens = ctx->cap_seqs = 0;
            return rc;
        }
    }
    ctx->cap_tokens = tokens;
    ctx->cap_seqs = seqs;
    return QH_OK;
}

static int ensure_host(qh_llama_ctx *ctx, int tokens, int seqs)
{
    if (tokens > ctx->h_cap_tokens) {
        int32_t *p = realloc(ctx->h_pos, sizeof(int32_t) * (size_t)tokens);
        if (!p) return qh_fail(QH_ESYS, "out of memory");
        ctx->h_pos = p;
        ctx->h_cap_tokens = tokens;
    }
    if (seqs > ctx->h_cap_seqs) {
        int32_t *s = realloc(ctx->h_starts, sizeof(int32_t) * (size_t)(seqs + 1));
        if (s) ctx->h_starts = s;
        int32_t *l = realloc(ctx->h_last, sizeof(int32_t) * (size_t)seqs);
        if (l) ctx->h_last = l;
        if (!s || !l) return qh_fail(QH_ESYS, "out of memory");
        ctx->h_cap_seqs = seqs;
    }
    return QH_OK;
}

int qh_llama_ctx_create(qh_llama_model *m, int batch_tokens, qh_llama_ctx **out)
{
    *out = NULL;
    if (batch_tokens < 1) return qh_fail(QH_EINPUT, "--batch-tokens must be at least 1");
    qh_llama_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return qh_fail(QH_ESYS, "out of memory");
    ctx->m = m;
    ctx->batch_tokens = batch_tokens;
    *out = ctx;
    return QH_OK;
}

void qh_llama_ctx_free(qh_llama_ctx *ctx)
{
    if (!ctx) return;
    release_buffers(ctx);
    free(ctx->h_pos);
    free(ctx->h_starts);
    free(ctx->h_last);
    free(ctx);
}

#define TRY(call)                 \
    do {                          \
        if ((rc = (call))) goto out; \
    } while (0)

/* One micro-batch: n_seqs sequences, n_tokens tokens, already on the host in ids. */
static int forward_micro(qh_llama_ctx *ctx, const int32_t *ids, const int32_t *lengths, int n_seqs, int n_tokens,
                         float *hidden)
{
    qh_llama_model *m = ctx->m;
    qh_backend *be = m->be;
    const qh_llama_config *c = &m->cfg;
    int rc = ensure_capacity(ctx, n_tokens, n_seqs);
    if (!rc) rc = ensure_host(ctx, n_tokens, n_seqs);
    if (rc) return rc;
    qh_batch b = {.n_seqs = n_seqs, .n_tokens = n_tokens, .host_starts = ctx->h_starts};
    int row = 0;
    for (int s = 0; s < n_seqs; s++) {
        ctx->h_starts[s] = row;
        for (int i = 0; i < lengths[s]; i++) ctx->h_pos[row + i] = i;
        row += lengths[s];
        ctx->h_last[s] = row - 1;
        if (lengths[s] > b.max_len) b.max_len = lengths[s];
    }
    ctx->h_starts[n_seqs] = row;
    b.ids = qh_tensor_1d(QH_I32, n_tokens);
    b.positions = qh_tensor_1d(QH_I32, n_tokens);
    b.starts = qh_tensor_1d(QH_I32, n_seqs + 1);
    b.last_rows = qh_tensor_1d(QH_I32, n_seqs);
    TRY(be->upload(be, ids, &b.ids));
    TRY(be->upload(be, ctx->h_pos, &b.positions));
    TRY(be->upload(be, ctx->h_starts, &b.starts));
    TRY(be->upload(be, ctx->h_last, &b.last_rows));

    qh_tensor v[B_COUNT];
    for (int i = 0; i < B_COUNT; i++) v[i] = qh_tensor_head_rows(&ctx->buf[i], i >= B_XLAST ? n_seqs : n_tokens);
    float eps = (float)c->rms_norm_eps;
    TRY(be->embed(be, &m->embed, &b.ids, &v[B_X]));
    for (int l = 0; l < c->num_layers; l++) {
        const qh_llama_layer *L = &m->layers[l];
        qh_tensor *x = &v[B_X], *att = &v[B_ATT], *xn = &v[B_XN], *tmp = &v[B_TMP];
        qh_tensor *gate = &v[B_GATE], *up = &v[B_UP];
        TRY(be->rmsnorm(be, x, &L->attn_norm, eps, xn));
        TRY(be->linear(be, xn, &L->wq, &v[B_Q]));
        TRY(be->linear(be, xn, &L->wk, &v[B_K]));
        TRY(be->linear(be, xn, &L->wv, &v[B_V]));
        TRY(be->rope(be, &v[B_Q], &v[B_K], &b.positions, c->head_dim, c->rope_theta));
        TRY(be->attention(be, &v[B_Q], &v[B_K], &v[B_V], att, &b, c->num_heads, c->num_kv_heads, c->head_dim));
        qh_tensor xs, ts, xns, gs, us;
        if (l == c->num_layers - 1) { /* only pooled rows from here on */
            TRY(be->gather_rows(be, att, &b.last_rows, &v[B_ALAST]));
            TRY(be->gather_rows(be, x, &b.last_rows, &v[B_XLAST]));
            att = &v[B_ALAST];
            x = &v[B_XLAST];
            xs = *x;
            ts = qh_tensor_head_rows(tmp, n_seqs);
            xns = qh_tensor_head_rows(xn, n_seqs);
            gs = qh_tensor_head_rows(gate, n_seqs);
            us = qh_tensor_head_rows(up, n_seqs);
            x = &xs, tmp = &ts, xn = &xns, gate = &gs, up = &us;
        }
        TRY(be->linear(be, att, &L->wo, tmp));
        TRY(be->add(be, x, tmp));
        TRY(be->rmsnorm(be, x, &L->mlp_norm, eps, xn));
        TRY(be->linear(be, xn, &L->w_gate, gate));
        TRY(be->linear(be, xn, &L->w_up, up));
        TRY(be->silu_mul(be, gate, up, gate));
        TRY(be->linear(be, gate, &L->w_down, tmp));
        TRY(be->add(be, x, tmp));
    }
    qh_tensor final_in = v[B_XLAST], final_out = qh_tensor_head_rows(&ctx->buf[B_XN], n_seqs);
    TRY(be->rmsnorm(be, &final_in, &m->final_norm, eps, &final_out));
    TRY(be->download_f32(be, &final_out, hidden));
out:
    be->release(be, &b.ids);
    be->release(be, &b.positions);
    be->release(be, &b.starts);
    be->release(be, &b.last_rows);
    return rc;
}

int qh_llama_forward(qh_llama_ctx *ctx, const int32_t *ids, const int32_t *lengths, int n_seqs, float *hidden)
{
    const qh_llama_config *c = &ctx->m->cfg;
    size_t total = 0;
    for (int s = 0; s < n_seqs; s++) {
        if (lengths[s] < 1) return qh_fail(QH_EINPUT, "sequence %d is empty", s);
        for (int i = 0; i < lengths[s]; i++) {
            int32_t id = ids[total + (size_t)i];
            if (id < 0 || id >= c->vocab_size)
                return qh_fail(QH_EINPUT, "token id %d (sequence %d, position %d) is outside the vocabulary of %d",
                               id, s, i, c->vocab_size);
        }
        total += (size_t)lengths[s];
    }
    size_t done = 0;
    int s = 0;
    while (s < n_seqs) {
        int n = 0;
        long tokens = 0;
        while (s + n < n_seqs && (n == 0 || tokens + lengths[s + n] <= ctx->batch_tokens)) tokens += lengths[s + n++];
        int rc = forward_micro(ctx, ids + done, lengths + s, n, (int)tokens, hidden + (size_t)s * c->hidden_size);
        if (rc) return rc;
        done += (size_t)tokens;
        s += n;
    }
    return QH_OK;
}
