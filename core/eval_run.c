#include "eval_run.h"

#include "clock.h"

#include "error.h"
#include "feature_extract.h"
#include "length_order.h"
#include "memstat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double qh_percentile(double *v, int n, double p)
{
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double pos = p / 100.0 * (n - 1);
    int lo = (int)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (pos - lo) * (v[hi] - v[lo]);
}

static double tensor_bytes(const qh_tensor *t)
{
    double b = (double)qh_tensor_nbytes(t);
    const qh_quant *q = &t->quant;
    if (t->dtype == QH_I8 && q->scale) b += 4.0 * (double)qh_tensor_rows(t);
    if (t->dtype == QH_NF4 && q->blocksize > 0) {
        double blocks = ceil((double)qh_tensor_numel(t) / q->blocksize);
        b += q->qabsmax ? blocks + 4.0 * ceil(blocks / 256.0) + 4.0 : 4.0 * blocks;
    }
    return b;
}

double qh_llama_weight_bytes(const qh_llama_model *m)
{
    double b = tensor_bytes(&m->embed) + tensor_bytes(&m->final_norm);
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const qh_llama_layer *L = &m->layers[l];
        const qh_tensor *ts[9] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->mlp_norm, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 9; i++) b += tensor_bytes(ts[i]);
    }
    return b;
}

/* The split reordered shortest first (see length_order.h). */
static int sorted_split(const qh_token_split *s, int64_t **order, int32_t **ids, int64_t **offsets, int32_t **labels)
{
    *order = qh_order_by_length(s->offsets, s->n);
    *ids = malloc(sizeof(int32_t) * (size_t)(s->n_tokens ? s->n_tokens : 1));
    *offsets = malloc(sizeof(int64_t) * (size_t)(s->n + 1));
    *labels = malloc(sizeof(int32_t) * (size_t)(s->n ? s->n : 1));
    if (!*order || !*ids || !*offsets || !*labels) return qh_fail(QH_ESYS, "out of memory");
    (*offsets)[0] = 0;
    for (int64_t i = 0; i < s->n; i++) {
        int64_t k = (*order)[i], len = s->offsets[k + 1] - s->offsets[k];
        memcpy(*ids + (*offsets)[i], s->ids + s->offsets[k], sizeof(int32_t) * (size_t)len);
        (*offsets)[i + 1] = (*offsets)[i] + len;
        (*labels)[i] = s->labels ? s->labels[k] : 0;
    }
    return QH_OK;
}

/* Batch-1 latency of n tweets spread over the split, in steady state: each distinct length is run
 * once untimed first, because a backend's first call at a new length pays one-time costs (on a
 * GPU the matrix-product library's algorithm search and kernel loading: fp16 on an H100,
 * 50 tweets, p95 21.3 ms without this warm-up and 6.5 ms with it, bench/NOTES.md). */
static int measure_latency(qh_feature_extractor *fx, const qh_token_split *s, int samples, qh_eval_result *r)
{
    int n = samples < s->n ? samples : (int)s->n;
    int64_t max_len = 0;
    for (int64_t i = 0; i < s->n; i++)
        if (s->offsets[i + 1] - s->offsets[i] > max_len) max_len = s->offsets[i + 1] - s->offsets[i];
    double *ms = malloc(sizeof(double) * (size_t)(n ? n : 1));
    float *h = malloc(sizeof(float) * (size_t)fx->model->cfg.hidden_size);
    unsigned char *warm = calloc((size_t)max_len + 1, 1); /* lengths run once already */
    int rc = (!ms || !h || !warm) ? qh_fail(QH_ESYS, "out of memory") : QH_OK;
    long rec, rep0, rep1;
    qh_llama_ctx_graph_counts(fx->ctx, &rec, &rep0);
    for (int pass = 0; pass < 2 && !rc; pass++)
        for (int i = 0; i < n && !rc; i++) {
            if (pass == 1 && i == 0) qh_llama_ctx_graph_counts(fx->ctx, &rec, &rep0);
            int64_t k = (int64_t)i * s->n / n; /* spread over the split, not just its first tweets */
            int32_t len = (int32_t)(s->offsets[k + 1] - s->offsets[k]);
            if (pass == 0) { /* warm-up: the first tweet of each length */
                if (!warm[len]) rc = qh_llama_forward(fx->ctx, s->ids + s->offsets[k], &len, 1, h);
                warm[len] = 1;
                continue;
            }
            double t0 = qh_now_s();
            rc = qh_llama_forward(fx->ctx, s->ids + s->offsets[k], &len, 1, h);
            ms[i] = (qh_now_s() - t0) * 1e3;
        }
    if (!rc) {
        r->latency_p50_ms = qh_percentile(ms, n, 50);
        r->latency_p95_ms = qh_percentile(ms, n, 95);
        r->latency_samples = n;
        qh_llama_ctx_graph_counts(fx->ctx, &rec, &rep1);
        r->latency_replayed = (int)(rep1 - rep0);
    }
    free(ms);
    free(h);
    free(warm);
    return rc;
}

int qh_eval_variant(const qh_eval_opts *o, qh_eval_result *r, float **logits_out)
{
    const qh_token_split *s = o->split;
    int K = o->head->num_labels, H = o->head->hidden_size;
    *logits_out = NULL;
    double quantize_s = r->quantize_seconds;
    int quantized_now = r->quantized_now;
    memset(r, 0, sizeof *r);
    snprintf(r->variant, sizeof r->variant, "%s", o->variant);
    r->quantize_seconds = quantize_s;
    r->quantized_now = quantized_now;
    r->agreement_with_fp16 = r->mean_abs_dlogit = r->latency_p50_ms = r->latency_p95_ms = NAN;
    r->n_tweets = s->n;
    r->n_tokens = s->n_tokens;

    qh_feature_extractor fx = {.model_dir = o->model_dir, .backend = o->backend, .batch_tokens = o->batch_tokens, .log = o->log};
    int64_t *order = NULL;
    int32_t *ids = NULL, *labels = NULL, *pred = NULL;
    int64_t *offsets = NULL;
    float *hidden = NULL, *logits = NULL;
    int rc = sorted_split(s, &order, &ids, &offsets, &labels);
    if (rc) goto out;
    qh_mem_peak_reset(NULL);
    double t0 = qh_now_s();
    if ((rc = qh_backend_create(o->backend ? o->backend : "auto", &fx.be))) goto out;
    if (o->log) fprintf(o->log, "%s: loading on %s\n", o->variant, fx.be->name);
    if ((rc = qh_llama_load_variant(o->model_dir, o->variant, o->qfile, fx.be, &fx.model))) goto out;
    if ((rc = qh_llama_ctx_create(fx.model, o->batch_tokens > 0 ? o->batch_tokens : qh_default_batch_tokens(fx.model), &fx.ctx))) goto out;
    r->load_seconds = qh_now_s() - t0;
    if (fx.model->cfg.hidden_size != H) {
        rc = qh_fail(QH_EINPUT, "the head expects hidden size %d but %s has %d", H, o->model_dir, fx.model->cfg.hidden_size);
        goto out;
    }
    snprintf(r->backend, sizeof r->backend, "%s", fx.be->name);
    snprintf(r->device, sizeof r->device, "%s", fx.be->name);
    r->weight_bytes = qh_llama_weight_bytes(fx.model);

    hidden = malloc(sizeof(float) * (size_t)H * (size_t)(s->n ? s->n : 1));
    logits = malloc(sizeof(float) * (size_t)K * (size_t)(s->n ? s->n : 1));
    pred = malloc(sizeof(int32_t) * (size_t)(s->n ? s->n : 1));
    if (!hidden || !logits || !pred) {
        rc = qh_fail(QH_ESYS, "out of memory for %lld hidden states", (long long)s->n);
        goto out;
    }
    /* warm-up: library initialisation and first-touch costs stay out of the timing */
    int warm = s->n < 64 ? (int)s->n : 64;
    int32_t *wl = malloc(sizeof(int32_t) * (size_t)(warm ? warm : 1));
    if (!wl) {
        rc = qh_fail(QH_ESYS, "out of memory");
        goto out;
    }
    for (int i = 0; i < warm; i++) wl[i] = (int32_t)(offsets[s->n - warm + i + 1] - offsets[s->n - warm + i]);
    if (warm) rc = qh_llama_forward(fx.ctx, ids + offsets[s->n - warm], wl, warm, hidden);
    free(wl);
    if (rc) goto out;

    qh_feature_spec spec = {.split = "eval", .hidden_size = H, .n = s->n, .ids = ids, .offsets = offsets, .labels = labels};
    qh_energy_meter *meter = qh_energy_start(fx.be->device == QH_DEVICE_CUDA ? QH_ENERGY_GPU : QH_ENERGY_CPU, 0, 100);
    t0 = qh_now_s();
    char label[32];
    snprintf(label, sizeof label, "evaluate %s", o->variant);
    rc = qh_extract_features(&fx, NULL, &spec, label, hidden, NULL);
    r->eval_seconds = qh_now_s() - t0;
    qh_energy_stop(meter, &r->energy);
    if (rc) goto out;
    r->tweets_per_second = (double)s->n / r->eval_seconds;
    r->tokens_per_second = (double)s->n_tokens / r->eval_seconds;
    r->kwh = r->energy.available ? qh_joules_to_kwh(r->energy.joules) : NAN;
    r->kg_co2 = r->energy.available ? qh_emissions_kg(r->energy.joules, o->carbon_intensity) : NAN;

    /* logits back in dataset order */
    float *row = malloc(sizeof(float) * (size_t)K);
    if (!row) {
        rc = qh_fail(QH_ESYS, "out of memory");
        goto out;
    }
    for (int64_t i = 0; i < s->n; i++) {
        qh_head_apply(o->head, hidden + (size_t)i * H, 1, row);
        memcpy(logits + (size_t)order[i] * K, row, sizeof(float) * (size_t)K);
    }
    free(row);
    for (int64_t i = 0; i < s->n; i++) pred[i] = qh_argmax(logits + (size_t)i * K, K);
    if (s->labels && (rc = qh_metrics_compute(s->labels, pred, (size_t)s->n, K, &r->metrics))) goto out;
    if (o->fp16_logits) {
        int64_t same = 0;
        double dsum = 0;
        for (int64_t i = 0; i < s->n; i++) {
            same += qh_argmax(o->fp16_logits + (size_t)i * K, K) == pred[i];
            for (int k = 0; k < K; k++) dsum += fabs((double)logits[(size_t)i * K + k] - o->fp16_logits[(size_t)i * K + k]);
        }
        r->agreement_with_fp16 = s->n ? (double)same / (double)s->n : NAN;
        r->mean_abs_dlogit = s->n ? dsum / ((double)s->n * K) : NAN;
    }
    if (o->latency_samples > 0 && (rc = measure_latency(&fx, s, o->latency_samples, r))) goto out;
    r->peak_memory_bytes = qh_mem_peak(fx.be, r->peak_memory_kind, sizeof r->peak_memory_kind);
    *logits_out = logits;
    logits = NULL;
out:
    qh_feature_extractor_free(&fx);
    free(order);
    free(ids);
    free(offsets);
    free(labels);
    free(hidden);
    free(logits);
    free(pred);
    return rc;
}
