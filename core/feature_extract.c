#include "feature_extract.h"

#include "clock.h"

#include "error.h"

#include <stdlib.h>
#include <time.h>

int qh_feature_extractor_load(qh_feature_extractor *fx)
{
    if (fx->ctx) return QH_OK;
    double t0 = qh_now_s();
    int rc = qh_backend_create(fx->backend ? fx->backend : "auto", &fx->be);
    if (!rc && fx->log) fprintf(fx->log, "loading %s on %s\n", fx->model_dir, fx->be->name);
    if (!rc) rc = qh_llama_load(fx->model_dir, fx->be, &fx->model);
    if (!rc) rc = qh_llama_ctx_create(fx->model, fx->batch_tokens > 0 ? fx->batch_tokens : qh_default_batch_tokens(fx->model), &fx->ctx);
    if (rc) {
        qh_feature_extractor_free(fx);
        return rc;
    }
    fx->load_seconds = qh_now_s() - t0;
    if (fx->log) fprintf(fx->log, "model loaded in %.2f s\n", fx->load_seconds);
    return QH_OK;
}

void qh_feature_extractor_free(qh_feature_extractor *fx)
{
    if (fx->ctx) qh_llama_ctx_free(fx->ctx);
    if (fx->model) qh_llama_free(fx->model);
    if (fx->be) qh_backend_destroy(fx->be);
    fx->ctx = NULL;
    fx->model = NULL;
    fx->be = NULL;
}

/* Slices of about this many tokens between progress updates: big enough to keep a GPU's
 * micro-batches full, small enough that a CPU bar moves every few seconds. */
#define SLICE_TOKENS 16384

static int compute(void *user, const int32_t *ids, const int32_t *lengths, int n, float *hidden)
{
    qh_feature_extractor *fx = user;
    int rc = qh_feature_extractor_load(fx);
    if (rc) return rc;
    if (fx->log && !fx->progress_started) {
        qh_progress_begin(&fx->progress, fx->log, fx->progress_label, fx->progress_total, "tweets");
        qh_progress_skip(&fx->progress, fx->progress_base); /* parts a killed run finished */
        fx->progress_started = 1;
    }
    fx->part_computed = 1;
    double t0 = qh_now_s();
    int H = fx->model->cfg.hidden_size;
    for (int s = 0; s < n;) {
        int64_t tokens = 0;
        int e = s;
        while (e < n && (e == s || tokens + lengths[e] <= SLICE_TOKENS)) tokens += lengths[e++];
        if ((rc = qh_llama_forward(fx->ctx, ids, lengths + s, e - s, hidden + (size_t)s * H))) return rc;
        ids += tokens;
        fx->tokens_computed += tokens;
        s = e;
        if (fx->log) qh_progress_update(&fx->progress, fx->progress_base + s);
    }
    fx->compute_seconds += qh_now_s() - t0;
    return QH_OK;
}

static void on_part(void *user, int64_t done, int64_t total)
{
    qh_feature_extractor *fx = user;
    (void)total;
    fx->progress_base = done;
    /* a part read back from the cache came without work: it must not speed up the rate */
    if (fx->log && fx->progress_started && fx->part_computed) qh_progress_update(&fx->progress, done);
    else if (fx->log && fx->progress_started) qh_progress_skip(&fx->progress, done);
    fx->part_computed = 0;
}

int qh_extract_features(qh_feature_extractor *fx, const char *cache_path, const qh_feature_spec *spec,
                        const char *label, float *hidden, qh_feature_stats *stats)
{
    fx->progress_base = 0;
    fx->progress_started = 0;
    fx->part_computed = 0;
    fx->progress_label = label;
    fx->progress_total = spec->n;
    int rc;
    if (cache_path) {
        rc = qh_features_build(cache_path, spec, compute, fx, on_part, fx, hidden, stats);
    } else {
        int32_t *lengths = malloc(sizeof(int32_t) * (size_t)(spec->n ? spec->n : 1));
        if (!lengths) return qh_fail(QH_ESYS, "out of memory");
        for (int64_t i = 0; i < spec->n; i++) lengths[i] = (int32_t)(spec->offsets[i + 1] - spec->offsets[i]);
        rc = compute(fx, spec->ids, lengths, (int)spec->n, hidden);
        free(lengths);
    }
    if (fx->log && fx->progress_started) qh_progress_end(&fx->progress);
    return rc;
}
