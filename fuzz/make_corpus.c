/* Writes the generated seeds of fuzz/corpus/ that need libqhead to make: HDF5 head files
 * (with and without bias, labels and a training record), feature caches for the fixed spec
 * of fuzz_features.c (a complete one, and one of its first two tweets), and a safetensors head. The other
 * seeds are copies of tests/fixtures files or hand-written (see README.md).
 * Usage: make_corpus CORPUS_DIR (its head/ and features/ subdirectories must exist). */
#include "error.h"
#include "feature_cache.h"
#include "fuzz_features_spec.h"
#include "head.h"
#include "safetensors_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int heads(const char *dir)
{
    char path[4096];
    qh_head *h;
    int rc = qh_head_create(3, 4, 1, &h);
    if (rc) return rc;
    for (int i = 0; i < 12; i++) h->weight[i] = (float)i / 4 - 1;
    for (int i = 0; i < 3; i++) h->bias[i] = (float)i;
    snprintf(h->label_names[0], sizeof h->label_names[0], "negative");
    snprintf(h->model_fingerprint, sizeof h->model_fingerprint, "%064d", 7);
    snprintf(path, sizeof path, "%s/head/bias.h5", dir);
    if ((rc = qh_head_save(h, path))) goto out;
    const double log[4] = {1, 0.5, 2, 0.25};
    const char *cols[2] = {"epoch", "loss"};
    qh_head_record rec = {"{\"lr\": 0.001}", log, 2, 2, cols};
    snprintf(path, sizeof path, "%s/head/record.h5", dir);
    if ((rc = qh_head_save_record(h, &rec, path))) goto out;
    free(h->bias);
    h->bias = NULL;
    h->num_labels = 2;
    snprintf(path, sizeof path, "%s/head/nobias.h5", dir);
    if ((rc = qh_head_save(h, path))) goto out;
    /* score.weight F32 [2, 4] and score.bias F32 [2] in safetensors */
    qh_st_writer *w;
    snprintf(path, sizeof path, "%s/head/score.safetensors", dir);
    const int64_t ws[2] = {2, 4}, bs[1] = {2};
    if ((rc = qh_st_writer_begin(path, &w))) goto out;
    if (!(rc = qh_st_writer_declare(w, "score.weight", QH_F32, 2, ws)) &&
        !(rc = qh_st_writer_declare(w, "score.bias", QH_F32, 1, bs)) &&
        !(rc = qh_st_writer_write(w, h->weight, 8 * sizeof(float))) &&
        !(rc = qh_st_writer_write(w, log, 2 * sizeof(float))))
        rc = qh_st_writer_commit(w);
    else qh_st_writer_abort(w);
out:
    qh_head_free(h);
    return rc;
}

static int features(const char *dir)
{
    char path[4096];
    fz_feature_spec fs;
    fz_feature_spec_init(&fs);
    float out[FZ_FEAT_N * FZ_FEAT_H];
    qh_feature_stats st;
    snprintf(path, sizeof path, "%s/features/complete.h5", dir);
    int rc = qh_features_build(path, &fs.spec, fz_fake_compute, NULL, NULL, NULL, out, &st);
    if (rc) return rc;
    /* A cache of the first two tweets only: the right identity for no spec, the wrong shape. */
    fs.spec.n = 2;
    snprintf(path, sizeof path, "%s/features/two_rows.h5", dir);
    return qh_features_build(path, &fs.spec, fz_fake_compute, NULL, NULL, NULL, out, &st);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus CORPUS_DIR\n");
        return 2;
    }
    int rc = heads(argv[1]);
    if (!rc) rc = features(argv[1]);
    if (rc) return qh_report("make_corpus", rc);
    return 0;
}
