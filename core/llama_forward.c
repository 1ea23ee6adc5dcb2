/* The LLaMA forward pass over packed variable-length batches, written once against the
 * backend seam (transformers' LlamaModel, see ../shared/reference/llama.md):
 *   h = embed(ids); per layer: h += o_proj(attn(rope(q, k), v)) on rmsnorm(h);
 *   h += down(silu(gate(x)) * up(x)) with x = rmsnorm(h); finally rmsnorm(h).
 * Only each sequence's last token is pooled, so the last layer's output projection and MLP
 * run on those rows alone. The residual stream h is fp32; a backend may fuse the residual adds
 * into the matrix products (linear_add) and rope into attention (rope_attention). */
#include "llama_model.h"

#include "error.h"
#include "length_order.h"
#include "memlimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B_X, B_XN, B_Q, B_K, B_V, B_ATT, B_TMP, B_GATE, B_UP, B_XLAST, B_ALAST, B_COUNT };

/* One sequence of up to GRAPH_MAX_TOKENS tokens (batch-1 latency) is run from a recording of its
 * ops where the backend can record them (CUDA graphs): such a pass is ~230 short launches, and
 * replaying them saves the cost of issuing each one (7B on an H100: fp16 6.29 -> 5.83 ms, int8
 * 6.54 -> 5.88 ms; nf4's own kernels launch cheaply, 4.42 -> 4.41 ms; bench/NOTES.md). A
 * recording keeps the addresses it saw, so each length has its own, with its own input tensors;
 * it is made on the length's first pass, right after that pass ran plainly (every buffer has
 * its size by then). Up to 64 tokens the quantized products run their small-batch kernels,
 * which do not wait for the device (larger int8 batches wait for their outlier count); where an
 * op does wait, no recording can hold it, and that length runs plainly from then on. */
#define GRAPH_MAX_TOKENS 64

typedef struct {
    int failed;  /* the ops could not be recorded: this length runs plainly */
    void *graph; /* NULL until recorded */
    qh_tensor in[4]; /* the recording's ids, positions, starts, last_rows */
} graph_slot;

struct qh_llama_ctx {
    qh_llama_model *m;
    int batch_tokens;
    int cap_tokens, cap_seqs;
    qh_tensor buf[B_COUNT];
    qh_tensor arena; /* holds Q, K, V, ATT and, after o_proj, GATE and UP (views) */
    int32_t *h_pos, *h_starts, *h_last; /* host staging for the batch description */
    int h_cap_tokens, h_cap_seqs;
    int no_graphs;
    graph_slot *slots; /* [GRAPH_MAX_TOKENS], by length; allocated on first use */
    long recorded, replayed;
};

static void slot_clear(qh_llama_ctx *ctx, graph_slot *gs)
{
    qh_backend *be = ctx->m->be;
    if (gs->graph) be->graph_free(be, gs->graph);
    for (int i = 0; i < 4; i++)
        if (gs->in[i].data) be->release(be, &gs->in[i]);
    memset(gs, 0, sizeof *gs);
}

static void graphs_clear(qh_llama_ctx *ctx)
{
    for (int i = 0; ctx->slots && i < GRAPH_MAX_TOKENS; i++) slot_clear(ctx, &ctx->slots[i]);
}

/* The slot of sequences of len tokens (1..GRAPH_MAX_TOKENS); NULL only when out of host memory. */
static graph_slot *slot_for(qh_llama_ctx *ctx, int len)
{
    if (!ctx->slots && !(ctx->slots = calloc(GRAPH_MAX_TOKENS, sizeof *ctx->slots))) return NULL;
    return &ctx->slots[len - 1];
}

void qh_llama_ctx_set_graphs(qh_llama_ctx *ctx, int on)
{
    ctx->no_graphs = !on;
    if (!on) graphs_clear(ctx);
}

void qh_llama_ctx_graph_counts(const qh_llama_ctx *ctx, long *recorded, long *replayed)
{
    *recorded = ctx->recorded, *replayed = ctx->replayed;
}

/* Q, K, V and ATT are dead once o_proj has read ATT (or its gathered rows), and GATE and UP are
 * written after it: both sets live in one arena. */
static int in_arena(int i) { return (i >= B_Q && i <= B_ATT) || i == B_GATE || i == B_UP; }

static size_t up256(size_t n) { return (n + 255) & ~(size_t)255; }

/* Bytes of the arena; each view starts at a multiple of 256 bytes (what cuBLASLt assumes). */
static size_t arena_bytes(const qh_tensor buf[B_COUNT])
{
    size_t attn = 0, mlp = up256(qh_tensor_nbytes(&buf[B_GATE])) + up256(qh_tensor_nbytes(&buf[B_UP]));
    for (int i = B_Q; i <= B_ATT; i++) attn += up256(qh_tensor_nbytes(&buf[i]));
    return attn > mlp ? attn : mlp;
}

static void release_buffers(qh_llama_ctx *ctx)
{
    for (int i = 0; i < B_COUNT; i++) {
        if (ctx->buf[i].data && !in_arena(i)) ctx->m->be->release(ctx->m->be, &ctx->buf[i]);
        ctx->buf[i].data = NULL;
    }
    if (ctx->arena.data) ctx->m->be->release(ctx->m->be, &ctx->arena);
}

/* The workspace buffers for tokens rows and seqs sequences (shapes only), and their bytes. */
static uint64_t buffer_shapes(const qh_llama_model *m, int64_t tokens, int64_t seqs, qh_tensor buf[B_COUNT])
{
    const qh_llama_config *c = &m->cfg;
    int64_t h = c->hidden_size, f = c->intermediate_size;
    int64_t qw = (int64_t)c->num_heads * c->head_dim, kw = (int64_t)c->num_kv_heads * c->head_dim;
    int64_t widths[B_COUNT] = {h, h, qw, kw, kw, qw, h, f, f, h, qw};
    uint64_t bytes = 0;
    for (int i = 0; i < B_COUNT; i++) {
        int64_t rows = (i == B_XLAST || i == B_ALAST) ? seqs : tokens;
        if (i == B_TMP && m->be->linear_add) rows = 1; /* unused: the residual adds are fused */
        /* the residual stream (and the final hidden states) stay fp32 on every backend */
        qh_dtype dt = (i == B_X || i == B_XLAST) ? QH_F32 : m->be->act_dtype;
        buf[i] = qh_tensor_2d(dt, rows, widths[i]);
        if (!in_arena(i)) bytes += qh_tensor_nbytes(&buf[i]);
    }
    return bytes + arena_bytes(buf);
}

/* Refuse a workspace larger than the machine's memory before allocating any of it. */
static int check_workspace(const qh_llama_model *m, int64_t tokens, int64_t seqs, const char *why)
{
    qh_tensor buf[B_COUNT];
    char what[256];
    snprintf(what, sizeof what, "%s (activations of %lld tokens, hidden %d, intermediate %d)", why, (long long)tokens,
             m->cfg.hidden_size, m->cfg.intermediate_size);
    return qh_check_memory(buffer_shapes(m, tokens, seqs, buf), what);
}

static int ensure_capacity(qh_llama_ctx *ctx, int tokens, int seqs)
{
    if (tokens <= ctx->cap_tokens && seqs <= ctx->cap_seqs) return QH_OK;
    if (tokens < ctx->cap_tokens) tokens = ctx->cap_tokens;
    /* room for every recorded length (and a batch of as many sequences) at once, so that growing
     * for a longer one does not drop the recordings of the shorter ones */
    int least = ctx->batch_tokens < GRAPH_MAX_TOKENS ? ctx->batch_tokens : GRAPH_MAX_TOKENS;
    if (ctx->m->be->capture_begin && !ctx->no_graphs) {
        if (tokens < least) tokens = least;
        if (seqs < least) seqs = least;
    }
    if (seqs < ctx->cap_seqs) seqs = ctx->cap_seqs;
    int rc = check_workspace(ctx->m, tokens, seqs, "a micro-batch");
    if (rc) return rc;
    graphs_clear(ctx); /* the recordings use the buffers about to move */
    release_buffers(ctx);
    qh_backend *be = ctx->m->be;
    buffer_shapes(ctx->m, tokens, seqs, ctx->buf);
    ctx->arena = qh_tensor_1d(QH_U8, (int64_t)arena_bytes(ctx->buf));
    rc = be->alloc(be, &ctx->arena);
    if (rc) ctx->arena.data = NULL;
    size_t attn_at = 0, mlp_at = 0;
    for (int i = 0; !rc && i < B_COUNT; i++) {
        if (in_arena(i)) {
            size_t *at = i <= B_ATT ? &attn_at : &mlp_at;
            ctx->buf[i].data = (char *)ctx->arena.data + *at;
            ctx->buf[i].device = ctx->arena.device;
            ctx->buf[i].owned = 0;
            *at += up256(qh_tensor_nbytes(&ctx->buf[i]));
            continue;
        }
        rc = be->alloc(be, &ctx->buf[i]);
        if (rc) ctx->buf[i].data = NULL;
    }
    if (rc) {
        release_buffers(ctx);
        ctx->cap_tokens = ctx->cap_seqs = 0;
        return rc;
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
    char why[64];
    snprintf(why, sizeof why, "--batch-tokens %d", batch_tokens);
    int rc = check_workspace(m, batch_tokens, batch_tokens, why);
    if (rc) return rc;
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
    graphs_clear(ctx);
    free(ctx->slots);
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

/* The device work of one micro-batch, from the embedding to the final norm: the pooled hidden
 * states end in buf[B_XLAST] (fp32). */
static int run_layers(qh_llama_ctx *ctx, const qh_batch *bp)
{
    qh_llama_model *m = ctx->m;
    qh_backend *be = m->be;
    const qh_llama_config *c = &m->cfg;
    const qh_batch b = *bp;
    int rc = QH_OK;
    qh_tensor v[B_COUNT];
    for (int i = 0; i < B_COUNT; i++) v[i] = qh_tensor_head_rows(&ctx->buf[i], i >= B_XLAST ? b.n_seqs : b.n_tokens);
    float eps = (float)c->rms_norm_eps;
    TRY(be->embed(be, &m->embed, &b.ids, &v[B_X]));
    for (int l = 0; l < c->num_layers; l++) {
        const qh_llama_layer *L = &m->layers[l];
        qh_tensor *x = &v[B_X], *att = &v[B_ATT], *xn = &v[B_XN], *tmp = &v[B_TMP];
        qh_tensor *gate = &v[B_GATE], *up = &v[B_UP];
        TRY(be->rmsnorm(be, x, &L->attn_norm, eps, xn));
        if (be->linear_qkv) {
            TRY(be->linear_qkv(be, xn, &L->wq, &L->wk, &L->wv, &v[B_Q], &v[B_K], &v[B_V]));
        } else {
            TRY(be->linear(be, xn, &L->wq, &v[B_Q]));
            TRY(be->linear(be, xn, &L->wk, &v[B_K]));
            TRY(be->linear(be, xn, &L->wv, &v[B_V]));
        }
        if (be->rope_attention) {
            TRY(be->rope_attention(be, &v[B_Q], &v[B_K], &v[B_V], att, &b, c->num_heads, c->num_kv_heads,
                                   c->head_dim, c->rope_theta));
        } else {
            TRY(be->rope(be, &v[B_Q], &v[B_K], &b.positions, c->head_dim, c->rope_theta));
            TRY(be->attention(be, &v[B_Q], &v[B_K], &v[B_V], att, &b, c->num_heads, c->num_kv_heads, c->head_dim));
        }
        qh_tensor xs, ts, xns, gs, us;
        if (l == c->num_layers - 1) { /* only pooled rows from here on */
            TRY(be->gather_rows(be, att, &b.last_rows, &v[B_ALAST]));
            TRY(be->gather_rows(be, x, &b.last_rows, &v[B_XLAST]));
            att = &v[B_ALAST];
            x = &v[B_XLAST];
            xs = *x;
            ts = qh_tensor_head_rows(tmp, b.n_seqs);
            xns = qh_tensor_head_rows(xn, b.n_seqs);
            gs = qh_tensor_head_rows(gate, b.n_seqs);
            us = qh_tensor_head_rows(up, b.n_seqs);
            x = &xs, tmp = &ts, xn = &xns, gate = &gs, up = &us;
        }
        if (be->linear_add) {
            TRY(be->linear_add(be, att, &L->wo, x));
        } else {
            TRY(be->linear(be, att, &L->wo, tmp));
            TRY(be->add(be, x, tmp));
        }
        TRY(be->rmsnorm(be, x, &L->mlp_norm, eps, xn));
        if (be->linear_swiglu) {
            TRY(be->linear_swiglu(be, xn, &L->w_gate, &L->w_up, gate, up));
        } else {
            TRY(be->linear(be, xn, &L->w_gate, gate));
            TRY(be->linear(be, xn, &L->w_up, up));
            TRY(be->silu_mul(be, gate, up, gate));
        }
        if (be->linear_add) {
            TRY(be->linear_add(be, gate, &L->w_down, x));
        } else {
            TRY(be->linear(be, gate, &L->w_down, tmp));
            TRY(be->add(be, x, tmp));
        }
    }
    qh_tensor final_x = v[B_XLAST]; /* normalised in place: the hidden states stay fp32 */
    TRY(be->rmsnorm(be, &final_x, &m->final_norm, eps, &final_x));
out:
    return rc;
}

/* Plays the recording of run_layers for gs's length, or runs plainly and then records (inputs in
 * gs's tensors, at the addresses the recording keeps; b's inputs are set to them). */
static int run_recorded(qh_llama_ctx *ctx, graph_slot *gs, const int32_t *ids, qh_batch *b)
{
    qh_backend *be = ctx->m->be;
    int rc;
    if (gs->graph) {
        rc = be->write(be, ids, &gs->in[0]);
        if (!rc) rc = be->graph_run(be, gs->graph);
        if (rc != 1) {
            ctx->replayed += !rc;
            return rc;
        }
        slot_clear(ctx, gs); /* the backend moved memory the recording reads: record again */
    }
    const void *host[4] = {ids, ctx->h_pos, ctx->h_starts, ctx->h_last};
    qh_tensor *bt[4] = {&b->ids, &b->positions, &b->starts, &b->last_rows};
    rc = QH_OK;
    for (int i = 0; !rc && i < 4; i++) {
        if (!gs->in[i].data) {
            gs->in[i] = *bt[i];
            rc = be->upload(be, host[i], &gs->in[i]);
            if (rc) gs->in[i].data = NULL;
        } else if (i == 0) {
            rc = be->write(be, host[i], &gs->in[i]); /* the others depend on the length alone */
        }
    }
    for (int i = 0; !rc && i < 4; i++) *bt[i] = gs->in[i];
    if (!rc) rc = run_layers(ctx, b);
    if (rc) return rc;
    int r = be->capture_begin(be);
    if (r == 1) return QH_OK; /* not now (profiling): plain runs until it can */
    if (r) return r;
    int ops = run_layers(ctx, b); /* recorded, not run */
    void *g = NULL;
    rc = be->capture_end(be, &g);
    if (ops && g) {
        be->graph_free(be, g);
        g = NULL;
    }
    if (ops) qh_clear_error(); /* the plain run above succeeded: an op refused to be recorded */
    if (!rc && !g) { /* this length runs plainly from now on */
        slot_clear(ctx, gs);
        gs->failed = 1;
    }
    gs->graph = g;
    ctx->recorded += g != NULL;
    return rc;
}

/* One micro-batch: n_seqs sequences, n_tokens tokens, already on the host in ids. */
static int forward_micro(qh_llama_ctx *ctx, const int32_t *ids, const int32_t *lengths, int n_seqs, int n_tokens,
                         float *hidden, int *ticket)
{
    qh_llama_model *m = ctx->m;
    qh_backend *be = m->be;
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
    graph_slot *gs = NULL;
    if (n_seqs == 1 && n_tokens <= GRAPH_MAX_TOKENS && !ctx->no_graphs && be->capture_begin) {
        gs = slot_for(ctx, n_tokens);
        if (!gs) return qh_fail(QH_ESYS, "out of memory");
        if (gs->failed) gs = NULL;
    }
    if (gs) {
        TRY(run_recorded(ctx, gs, ids, &b));
    } else {
        TRY(be->upload(be, ids, &b.ids));
        TRY(be->upload(be, ctx->h_pos, &b.positions));
        TRY(be->upload(be, ctx->h_starts, &b.starts));
        TRY(be->upload(be, ctx->h_last, &b.last_rows));
        TRY(run_layers(ctx, &b));
    }
    qh_tensor final_x = qh_tensor_head_rows(&ctx->buf[B_XLAST], n_seqs);
    if (ticket) TRY(be->download_start(be, &final_x, hidden, ticket)); /* lands while the next batch runs */
    else TRY(be->download_f32(be, &final_x, hidden));
out:
    if (!gs) { /* a slot's inputs stay with its recording */
        be->release(be, &b.ids);
        be->release(be, &b.positions);
        be->release(be, &b.starts);
        be->release(be, &b.last_rows);
    }
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
    if (n_seqs < 1) return QH_OK;
    /* Micro-batches are filled in order of length (shortest first), so each holds sequences of
     * similar length; hidden keeps the caller's order. */
    size_t h = (size_t)c->hidden_size;
    int64_t *bounds = malloc(sizeof *bounds * ((size_t)n_seqs + 1)), *order = NULL;
    size_t *offset = malloc(sizeof *offset * (size_t)n_seqs);
    int32_t *mb_len = malloc(sizeof *mb_len * (size_t)n_seqs), *mb_ids = NULL;
    /* Two host buffers for hidden states: with download_start, micro-batch i's states land in
     * one while micro-batch i+1 runs on the device (and the host copies i's rows out). */
    float *mb_hidden[2] = {NULL, NULL};
    size_t cap_ids = 0, cap_seqs[2] = {0, 0};
    int rc = bounds && offset && mb_len ? QH_OK : qh_fail(QH_ESYS, "out of memory");
    size_t off = 0;
    for (int s = 0; !rc && s < n_seqs; off += (size_t)lengths[s], s++) bounds[s] = (int64_t)off, offset[s] = off;
    if (!rc) {
        bounds[n_seqs] = (int64_t)off;
        order = qh_order_by_length(bounds, n_seqs);
        if (!order) rc = qh_fail(QH_ESYS, "out of memory");
    }
    int overlap = ctx->m->be->download_start && ctx->m->be->download_wait;
    int s = 0, cur = 0, pend_s = 0, pend_n = 0, pend_ticket = 0, pend_buf = 0;
    while (!rc && s < n_seqs) {
        int n = 0;
        long tokens = 0;
        while (s + n < n_seqs && (n == 0 || tokens + lengths[order[s + n]] <= ctx->batch_tokens))
            tokens += lengths[order[s + n++]];
        if ((size_t)tokens > cap_ids) {
            int32_t *p = realloc(mb_ids, sizeof *p * (size_t)tokens);
            if (!p) {
                rc = qh_fail(QH_ESYS, "out of memory");
                break;
            }
            mb_ids = p, cap_ids = (size_t)tokens;
        }
        if ((size_t)n > cap_seqs[cur]) {
            float *p = realloc(mb_hidden[cur], sizeof *p * (size_t)n * h);
            if (!p) {
                rc = qh_fail(QH_ESYS, "out of memory");
                break;
            }
            mb_hidden[cur] = p, cap_seqs[cur] = (size_t)n;
        }
        size_t row = 0;
        for (int j = 0; j < n; j++) {
            const int64_t o = order[s + j];
            memcpy(mb_ids + row, ids + offset[o], sizeof *mb_ids * (size_t)lengths[o]);
            mb_len[j] = lengths[o];
            row += (size_t)lengths[o];
        }
        int ticket = 0;
        rc = forward_micro(ctx, mb_ids, mb_len, n, (int)tokens, mb_hidden[cur], overlap ? &ticket : NULL);
        /* the previous micro-batch (overlapped) or this one: rows back in the caller's order */
        if (!rc && overlap && pend_n) rc = ctx->m->be->download_wait(ctx->m->be, pend_ticket);
        if (!rc && (overlap ? pend_n : n)) {
            int bs = overlap ? pend_s : s, bn = overlap ? pend_n : n, bb = overlap ? pend_buf : cur;
            for (int j = 0; j < bn; j++)
                memcpy(hidden + (size_t)order[bs + j] * h, mb_hidden[bb] + (size_t)j * h, sizeof *hidden * h);
        }
        pend_s = s, pend_n = n, pend_ticket = ticket, pend_buf = cur;
        if (overlap) cur ^= 1;
        s += n;
    }
    if (!rc && overlap && pend_n) {
        rc = ctx->m->be->download_wait(ctx->m->be, pend_ticket);
        for (int j = 0; !rc && j < pend_n; j++)
            memcpy(hidden + (size_t)order[pend_s + j] * h, mb_hidden[pend_buf] + (size_t)j * h, sizeof *hidden * h);
    }
    if (rc && overlap) ctx->m->be->sync(ctx->m->be); /* no copy may land in freed buffers */
    free(order);
    free(bounds);
    free(offset);
    free(mb_len);
    free(mb_ids);
    free(mb_hidden[0]);
    free(mb_hidden[1]);
    return rc;
}
