/* Feature extraction with the frozen backbone: the compute side of the feature cache.
 *
 * The model is loaded only when a part actually needs computing, so a complete cache is
 * reused without touching the weights (on a GPU, loading 7B means copying 13.5 GB). Work is
 * handed to the forward pass in slices so the progress bar moves inside a cache part. */
#ifndef QHEAD_FEATURE_EXTRACT_H
#define QHEAD_FEATURE_EXTRACT_H

#include "feature_cache.h"
#include "llama_model.h"
#include "progress.h"

#include <stdio.h>

typedef struct {
    /* settings */
    const char *model_dir;
    const char *backend; /* "cpu", "cuda" or "auto" */
    int batch_tokens;
    FILE *log; /* where "loading the model" and progress go; NULL: quiet */

    /* state */
    qh_backend *be;
    qh_llama_model *model;
    qh_llama_ctx *ctx;
    double load_seconds;
    double compute_seconds;
    int64_t tokens_computed;
    qh_progress progress;
    int progress_started;  /* the bar starts with the first computation: a reused cache shows none */
    int part_computed;     /* the cache part being built needed the model (not read back) */
    const char *progress_label;
    int64_t progress_total;
    int64_t progress_base; /* tweets finished in earlier cache parts */
} qh_feature_extractor;

/* Load backend + model + workspace now (evaluate wants it loaded and timed up front). */
int qh_feature_extractor_load(qh_feature_extractor *fx);

/* Fill hidden [spec->n, H] through the cache at cache_path (NULL: no cache, always compute),
 * showing progress labelled `label`. */
int qh_extract_features(qh_feature_extractor *fx, const char *cache_path, const qh_feature_spec *spec,
                        const char *label, float *hidden, qh_feature_stats *stats);
void qh_feature_extractor_free(qh_feature_extractor *fx);

#endif
