#include "llama_model.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The checkpoint's view of one weight (memory-mapped; quantized linear weights from the
 * quantized file). */
static int weight_view(qh_llama_model *m, const char *name, int64_t rows, int64_t cols, int linear, qh_tensor *view)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", m->ckpt->prefix, name);
    int rc = linear && m->quant.quantized ? qh_quant_weight(m->ckpt, &m->quant, full, rows, cols, view)
                                          : qh_checkpoint_weight(m->ckpt, full, rows, cols, view);
    if (!rc && qh_tensor_is_quantized(view) && !m->be->quant_weights)
        rc = qh_fail(QH_EINPUT, "the %s backend cannot run %s weights yet", m->be->name, m->quant.variant);
    return rc;
}

/* What each_weight does with every weight: with out, place it on the backend; without, add the
 * backend memory it would take to *bytes. */
typedef struct {
    qh_tensor *out;
    uint64_t bytes;
} weight_step;

static int weight_do(qh_llama_model *m, const char *name, int64_t rows, int64_t cols, int linear, weight_step *st)
{
    qh_tensor view;
    int rc = weight_view(m, name, rows, cols, linear, &view);
    if (rc) return rc;
    if (st->out) return m->be->weight(m->be, &view, st->out);
    if (m->be->weight_bytes) st->bytes += m->be->weight_bytes(m->be, &view);
    return QH_OK;
}

/* Every backbone weight in load order; measure = 1 only sums the bytes into *bytes. */
static int each_weight(qh_llama_model *m, int measure, uint64_t *bytes)
{
    const qh_llama_config *c = &m->cfg;
    int64_t h = c->hidden_size, f = c->intermediate_size;
    int64_t qw = (int64_t)c->num_heads * c->head_dim, kw = (int64_t)c->num_kv_heads * c->head_dim;
    weight_step st = {0};
    int rc = QH_OK;
    char n[128];
    /* linear: a matrix product's weight (quantized in a quantized variant); the embedding table
     * is a lookup, never quantized. */
#define W(dst, name, rows, cols, linear)                                     \
    if (!rc) {                                                               \
        st.out = measure ? NULL : (dst);                                     \
        rc = weight_do(m, name, rows, cols, linear, &st);                    \
    }
    W(&m->embed, "embed_tokens.weight", c->vocab_size, h, 0);
    W(&m->final_norm, "norm.weight", h, 0, 0);
#define L(field, suffix, rows, cols)                                         \
    snprintf(n, sizeof n, "layers.%d.%s", l, suffix);                       \
    W(&m->layers[l].field, n, rows, cols, (cols) != 0);
    for (int l = 0; !rc && l < c->num_layers; l++) {
        L(attn_norm, "input_layernorm.weight", h, 0);
        L(wq, "self_attn.q_proj.weight", qw, h);
        L(wk, "self_attn.k_proj.weight", kw, h);
        L(wv, "self_attn.v_proj.weight", kw, h);
        L(wo, "self_attn.o_proj.weight", h, qw);
        L(mlp_norm, "post_attention_layernorm.weight", h, 0);
        L(w_gate, "mlp.gate_proj.weight", f, h);
        L(w_up, "mlp.up_proj.weight", f, h);
        L(w_down, "mlp.down_proj.weight", h, f);
    }
#undef L
#undef W
    if (bytes) *bytes = st.bytes;
    return rc;
}

static void release_weight(qh_backend *be, qh_tensor *t)
{
    if (t->owned) be->release(be, t);
}

void qh_llama_free(qh_llama_model *m)
{
    if (!m) return;
    if (m->layers) {
        for (int l = 0; l < m->cfg.num_layers; l++) {
            qh_tensor *w = (qh_tensor *)&m->layers[l];
            for (size_t i = 0; i < sizeof(qh_llama_layer) / sizeof(qh_tensor); i++) release_weight(m->be, &w[i]);
        }
    }
    release_weight(m->be, &m->embed);
    release_weight(m->be, &m->final_norm);
    free(m->layers);
    qh_checkpoint_close(m->ckpt);
    free(m);
}

int qh_llama_load(const char *dir, qh_backend *be, qh_llama_model **out)
{
    return qh_llama_load_variant(dir, "fp16", NULL, be, out);
}

int qh_llama_load_variant(const char *dir, const char *variant, const char *qfile, qh_backend *be,
                          qh_llama_model **out)
{
    *out = NULL;
    qh_llama_model *m = calloc(1, sizeof *m);
    if (!m) return qh_fail(QH_ESYS, "out of memory");
    m->be = be;
    int rc = qh_quant_open(dir, variant, qfile, &m->ckpt, &m->quant);
    if (rc) {
        free(m);
        return rc;
    }
    m->cfg = m->ckpt->cfg;
    m->layers = calloc((size_t)m->cfg.num_layers, sizeof *m->layers);
    if (!m->layers) rc = qh_fail(QH_ESYS, "out of memory");
    /* A device that copies the weights must hold them all: refuse before the first copy, with
     * the numbers, rather than run out of memory halfway through a 13 GB upload. */
    uint64_t bytes = 0;
    if (!rc && be->weight_bytes && be->check_capacity) {
        rc = each_weight(m, 1, &bytes);
        char what[600];
        snprintf(what, sizeof what, "%s: the %s weights", qfile ? qfile : dir, m->quant.quantized ? m->quant.variant : "fp16");
        if (!rc) rc = be->check_capacity(be, bytes, what);
    }
    if (!rc) rc = each_weight(m, 0, NULL);
    const qh_safetensors *st = NULL;
    const qh_st_tensor *score = rc ? NULL : qh_checkpoint_find(m->ckpt, "score.weight", &st);
    if (score) {
        int64_t labels = score->ndim == 2 ? score->shape[0] : 0;
        if (score->ndim != 2)
            rc = qh_fail(QH_EINPUT, "%s: score.weight is %d-D, must be 2-D [num_labels, %d]", st->path,
                         score->ndim, m->cfg.hidden_size);
        if (!rc) rc = qh_checkpoint_weight(m->ckpt, "score.weight", labels, m->cfg.hidden_size, &m->score);
        if (!rc && labels < 1) rc = qh_fail(QH_EINPUT, "%s: score.weight has no rows", st->path);
        if (!rc && labels > QH_MAX_LABELS)
            rc = qh_fail(QH_EINPUT, "%s: score.weight has %lld rows, at most %d labels supported", st->path,
                         (long long)labels, QH_MAX_LABELS);
        /* transformers refuses a head whose row count differs from config.json's id2label. */
        if (!rc && m->cfg.num_labels > 0 && labels != m->cfg.num_labels)
            rc = qh_fail(QH_EINPUT, "%s: score.weight has %lld rows, but config.json's id2label has %d labels",
                         st->path, (long long)labels, m->cfg.num_labels);
        m->has_score = !rc;
    }
    if (rc) {
        qh_llama_free(m);
        return rc;
    }
    *out = m;
    return QH_OK;
}

double qh_llama_flops_per_token(const qh_llama_config *c)
{
    double h = c->hidden_size, f = c->intermediate_size;
    double qw = (double)c->num_heads * c->head_dim, kw = (double)c->num_kv_heads * c->head_dim;
    double per_layer = h * qw * 2 + h * kw * 2 + 3 * h * f;
    return 2.0 * per_layer * c->num_layers;
}

int qh_default_batch_tokens(const qh_llama_model *m)
{
    if (m->be->device != QH_DEVICE_CUDA) return QH_BATCH_TOKENS_CPU;
    return m->quant.quantized && m->quant.dtype == QH_NF4 ? QH_BATCH_TOKENS_GPU_NF4 : QH_BATCH_TOKENS_GPU;
}
