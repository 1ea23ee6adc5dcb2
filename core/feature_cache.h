/* The feature cache: each tweet's last-token hidden state from the frozen backbone, computed
 * once and kept in HDF5 (datasets hidden [N, H] float32 and labels [N] int32; attributes
 * format, split, model, model_fingerprint, tokenizer, identity).
 *
 * Crash safety: work is cut into parts of chunk_size tweets. Each finished part is written to
 * PATH.parts/part-NNNNN.h5 under a temporary name and renamed, so a run killed at any moment
 * (SIGKILL included) loses at most the part in flight, and the next run reuses the finished
 * ones. When all parts exist, the final file is written the same way and the parts removed.
 * A final file or part whose identity (a sha256 of the model fingerprint and every token id
 * and label) differs, or that cannot be read, is rebuilt. A complete matching cache is
 * returned without calling compute at all. */
#ifndef QHEAD_FEATURE_CACHE_H
#define QHEAD_FEATURE_CACHE_H

#include <stdint.h>

typedef struct {
    const char *split;             /* "train", "val", ... (stored as an attribute) */
    const char *model;             /* model directory, for people reading the file */
    const char *model_fingerprint; /* qh_checkpoint fingerprint */
    const char *tokenizer;         /* tokenizer path and sha256, for people reading the file */
    int hidden_size;
    int64_t n;
    const int32_t *ids;     /* all sequences back to back */
    const int64_t *offsets; /* [n + 1]: sequence i is ids[offsets[i] .. offsets[i+1]) */
    const int32_t *labels;  /* [n] */
    int chunk_size;         /* tweets per part (0: 2048) */
} qh_feature_spec;

/* Compute hidden[n, H] for n sequences (ids back to back, lengths given). */
typedef int (*qh_feature_compute_fn)(void *user, const int32_t *ids, const int32_t *lengths, int n, float *hidden);
/* Progress: tweets done so far out of total (reused parts count as done). */
typedef void (*qh_feature_progress_fn)(void *user, int64_t done, int64_t total);

typedef struct {
    int reused_file;     /* the complete cache was reused */
    int parts_reused;    /* parts found from an interrupted run */
    int parts_computed;
    char note[1024];     /* why a cache was rebuilt, when it was */
} qh_feature_stats;

/* Fills hidden (caller-allocated [n, H]). */
int qh_features_build(const char *path, const qh_feature_spec *spec, qh_feature_compute_fn compute, void *user,
                      qh_feature_progress_fn progress, void *progress_user, float *hidden, qh_feature_stats *stats);

/* The identity hash of a spec (hex). */
void qh_features_identity(const qh_feature_spec *spec, char hex[65]);

/* Read a complete cache file (any identity): n, H, and malloc'd hidden/labels. */
int qh_features_read(const char *path, int64_t *n, int *hidden_size, float **hidden, int32_t **labels);

#endif
