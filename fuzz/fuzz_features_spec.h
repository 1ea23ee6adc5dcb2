/* The fixed feature-cache spec of fuzz_features.c, shared with make_corpus.c which writes
 * seeds that match it. */
#ifndef QHEAD_FUZZ_FEATURES_SPEC_H
#define QHEAD_FUZZ_FEATURES_SPEC_H

#include "feature_cache.h"

#include <string.h>

#define FZ_FEAT_N 4
#define FZ_FEAT_H 4

typedef struct {
    int32_t ids[10];
    int64_t offsets[FZ_FEAT_N + 1];
    int32_t labels[FZ_FEAT_N];
    qh_feature_spec spec;
} fz_feature_spec;

static inline void fz_feature_spec_init(fz_feature_spec *f)
{
    static const int32_t ids[10] = {1, 5, 9, 1, 7, 1, 3, 3, 3, 1};
    static const int64_t offsets[FZ_FEAT_N + 1] = {0, 3, 5, 9, 10};
    static const int32_t labels[FZ_FEAT_N] = {0, 2, 1, 0};
    memcpy(f->ids, ids, sizeof ids);
    memcpy(f->offsets, offsets, sizeof offsets);
    memcpy(f->labels, labels, sizeof labels);
    f->spec = (qh_feature_spec){.split = "train", .model = "fuzz", .model_fingerprint = "fuzz-model",
                                .tokenizer = "fuzz.model", .hidden_size = FZ_FEAT_H, .n = FZ_FEAT_N,
                                .ids = f->ids, .offsets = f->offsets, .labels = f->labels, .chunk_size = 0};
}

/* The "backbone" of both: a cheap deterministic function of each sequence's ids. */
static inline int fz_fake_compute(void *user, const int32_t *ids, const int32_t *lengths, int n, float *hidden)
{
    (void)user;
    for (int s = 0; s < n; s++) {
        for (int j = 0; j < FZ_FEAT_H; j++) hidden[s * FZ_FEAT_H + j] = (float)(ids[0] * (j + 1) + lengths[s]);
        ids += lengths[s];
    }
    return 0;
}

#endif
