/* libFuzzer target: feature caches (core/feature_cache.c): the plain reader qh_features_read,
 * and qh_features_build finding the input in place of a cache (its own checks of identity and
 * shape, then a rebuild when they fail). The spec is fixed (4 tweets, H = 4) so seeds made
 * with it match; fuzz/make_corpus.c writes them. libhdf5 itself is not instrumented. */
#include "fuzz_util.h"

#include <hdf5.h>

#include "feature_cache.h"
#include "fuzz_features_spec.h"

#include <dirent.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write(0, "features.h5", data, size);
    int64_t n = -1;
    int hs = -1;
    float *hidden = NULL;
    int32_t *labels = NULL;
    int rc = qh_features_read(path, &n, &hs, &hidden, &labels);
    fz_check_error(rc);
    FZ_CHECK_H5_CLOSED();
    if (!rc) {
        if (n < 0 || hs < 1 || !hidden || !labels) abort();
        volatile float sink = 0;
        for (int64_t i = 0; i < n; i++) sink += hidden[i * hs + hs - 1] + (float)labels[i];
        (void)sink;
    } else if (hidden || labels) {
        abort();
    }
    free(hidden);
    free(labels);

    /* The same bytes as a cache that qh_features_build may reuse, and as one of its parts. */
    fz_feature_spec fs;
    fz_feature_spec_init(&fs);
    float out[FZ_FEAT_N * FZ_FEAT_H];
    qh_feature_stats st;
    int brc = qh_features_build(path, &fs.spec, fz_fake_compute, NULL, NULL, NULL, out, &st);
    fz_check_error(brc);
    if (brc) abort(); /* a bad cache is rebuilt, never an error */
    fs.spec.chunk_size = 2;
    const char *parts = fz_path(1, "features.h5.parts");
    mkdir(parts, 0700);
    fz_write(2, "features.h5.parts/part-00001.h5", data, size);
    unlink(path);
    brc = qh_features_build(path, &fs.spec, fz_fake_compute, NULL, NULL, NULL, out, &st);
    fz_check_error(brc);
    if (brc) abort();
    FZ_CHECK_H5_CLOSED();
    return 0;
}
