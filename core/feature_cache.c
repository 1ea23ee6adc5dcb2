#include "feature_cache.h"

#include "error.h"
#include "fileio.h"
#include "h5util.h"
#include "memlimit.h"
#include "length_order.h"
#include "sha256.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FEATURES_FORMAT "qhead-features-1"
#define MAX_HIDDEN (1 << 20) /* widest hidden state a cache may hold */

void qh_features_identity(const qh_feature_spec *s, char hex[65])
{
    qh_sha256_ctx h;
    qh_sha256_init(&h);
    qh_sha256_update(&h, FEATURES_FORMAT, sizeof FEATURES_FORMAT);
    qh_sha256_update(&h, s->model_fingerprint, strlen(s->model_fingerprint) + 1);
    int64_t dims[2] = {s->n, s->hidden_size};
    qh_sha256_update(&h, dims, sizeof dims);
    qh_sha256_update(&h, s->offsets, sizeof(int64_t) * (size_t)(s->n + 1));
    qh_sha256_update(&h, s->ids, sizeof(int32_t) * (size_t)s->offsets[s->n]);
    qh_sha256_update(&h, s->labels, sizeof(int32_t) * (size_t)s->n);
    uint8_t d[32];
    qh_sha256_final(&h, d);
    qh_sha256_hex(d, hex);
}

/* Open an HDF5 file of ours and check it holds rows [first, first+count) of this identity.
 * Returns the open file, or -1 with why[] filled. */
static hid_t open_matching(const char *path, const char *identity, int64_t first, int64_t count, int hidden,
                           char *why, size_t why_size)
{
    if (H5Fis_hdf5(path) <= 0) {
        snprintf(why, why_size, "%s is not a readable HDF5 file", path);
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        snprintf(why, why_size, "%s cannot be opened", path);
        return -1;
    }
    char got[80], first_s[32], want_first[32];
    hsize_t hd[2] = {0, 0}, ld[1] = {0};
    qh_h5_get_str(f, "identity", got, sizeof got);
    qh_h5_get_str(f, "first", first_s, sizeof first_s);
    snprintf(want_first, sizeof want_first, "%lld", (long long)first);
    if (strcmp(got, identity) != 0) snprintf(why, why_size, "%s was made from another model, tokenizer or data", path);
    else if (strcmp(first_s, want_first) != 0) snprintf(why, why_size, "%s covers other rows", path);
    else if (qh_h5_dims(f, "hidden", hd, 2) != 2 || hd[0] != (hsize_t)count || hd[1] != (hsize_t)hidden ||
             qh_h5_dims(f, "labels", ld, 1) != 1 || ld[0] != (hsize_t)count)
        snprintf(why, why_size, "%s has the wrong shape", path);
    else return f;
    H5Fclose(f);
    return -1;
}

static int read_rows(hid_t f, const char *path, int64_t count, int hidden, float *dst)
{
    (void)count, (void)hidden;
    if (qh_h5_read(f, "hidden", H5T_NATIVE_FLOAT, dst) < 0)
        return qh_fail(QH_EINPUT, "%s: cannot read the hidden states", path);
    return QH_OK;
}

/* Write rows [first, first+count) to path atomically. */
static int write_file(const char *path, const qh_feature_spec *s, const char *identity, int64_t first, int64_t count,
                      const float *hidden)
{
    char tmp[4200];
    int rc = qh_tmp_name(path, tmp, sizeof tmp);
    if (rc) return rc;
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return qh_fail(QH_EINPUT, "%s: cannot create the feature cache", tmp);
    hsize_t hd[2] = {(hsize_t)count, (hsize_t)s->hidden_size}, ld[1] = {(hsize_t)count};
    char first_s[32];
    snprintf(first_s, sizeof first_s, "%lld", (long long)first);
    herr_t e = qh_h5_write(f, "hidden", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, hd, hidden);
    if (e >= 0) e = qh_h5_write(f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, ld, s->labels + first);
    if (e >= 0) e = qh_h5_set_str(f, "format", FEATURES_FORMAT);
    if (e >= 0) e = qh_h5_set_str(f, "identity", identity);
    if (e >= 0) e = qh_h5_set_str(f, "first", first_s);
    if (e >= 0) e = qh_h5_set_str(f, "split", s->split ? s->split : "");
    if (e >= 0) e = qh_h5_set_str(f, "model", s->model ? s->model : "");
    if (e >= 0) e = qh_h5_set_str(f, "model_fingerprint", s->model_fingerprint);
    if (e >= 0) e = qh_h5_set_str(f, "tokenizer", s->tokenizer ? s->tokenizer : "");
    if (H5Fclose(f) < 0) e = -1;
    if (e < 0) {
        unlink(tmp);
        return qh_fail(QH_ESYS, "%s: writing the feature cache failed (disk full?)", path);
    }
    return qh_commit_tmp(tmp, path);
}

/* Compute one part: sequences sorted by length so micro-batches waste nothing, results
 * scattered back to dataset order. */
static int compute_part(const qh_feature_spec *s, int64_t first, int64_t count, qh_feature_compute_fn compute,
                        void *user, float *out)
{
    int64_t *order = qh_order_by_length(s->offsets + first, count);
    int32_t *lengths = malloc(sizeof(int32_t) * (size_t)count);
    int64_t total = s->offsets[first + count] - s->offsets[first];
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(total ? total : 1));
    float *tmp = malloc(sizeof(float) * (size_t)count * (size_t)s->hidden_size);
    int rc = (!order || !lengths || !ids || !tmp) ? qh_fail(QH_ESYS, "out of memory") : QH_OK;
    if (!rc) {
        int64_t at = 0;
        for (int64_t i = 0; i < count; i++) {
            int64_t k = first + order[i];
            lengths[i] = (int32_t)(s->offsets[k + 1] - s->offsets[k]);
            memcpy(ids + at, s->ids + s->offsets[k], sizeof(int32_t) * (size_t)lengths[i]);
            at += lengths[i];
        }
        rc = compute(user, ids, lengths, (int)count, tmp);
    }
    if (!rc)
        for (int64_t i = 0; i < count; i++)
            memcpy(out + (size_t)order[i] * s->hidden_size, tmp + (size_t)i * s->hidden_size,
                   sizeof(float) * (size_t)s->hidden_size);
    free(order);
    free(lengths);
    free(ids);
    free(tmp);
    return rc;
}

static void remove_parts(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4600];
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

int qh_features_build(const char *path, const qh_feature_spec *s, qh_feature_compute_fn compute, void *user,
                      qh_feature_progress_fn progress, void *progress_user, float *hidden, qh_feature_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    qh_h5_quiet();
    char identity[65], why[600];
    qh_features_identity(s, identity);
    int64_t chunk = s->chunk_size > 0 ? s->chunk_size : 2048;
    if (qh_path_exists(path)) {
        hid_t f = open_matching(path, identity, 0, s->n, s->hidden_size, why, sizeof why);
        if (f >= 0) {
            int rc = read_rows(f, path, s->n, s->hidden_size, hidden);
            H5Fclose(f);
            if (!rc) {
                stats->reused_file = 1;
                if (progress) progress(progress_user, s->n, s->n);
                return QH_OK;
            }
            snprintf(why, sizeof why, "%s could not be read", path);
        }
        snprintf(stats->note, sizeof stats->note, "%s; rebuilding it", why);
    }
    char parts[4200], part[4400];
    snprintf(parts, sizeof parts, "%s.parts", path);
    int rc = qh_mkdirs(parts);
    if (rc) return rc;
    int64_t done = 0;
    for (int64_t first = 0; first < s->n; first += chunk) {
        int64_t count = s->n - first < chunk ? s->n - first : chunk;
        float *dst = hidden + (size_t)first * s->hidden_size;
        snprintf(part, sizeof part, "%s/part-%05lld.h5", parts, (long long)(first / chunk));
        int have = 0;
        if (qh_path_exists(part)) {
            hid_t f = open_matching(part, identity, first, count, s->hidden_size, why, sizeof why);
            if (f >= 0) {
                have = read_rows(f, part, count, s->hidden_size, dst) == QH_OK;
                H5Fclose(f);
            }
        }
        if (have) {
            stats->parts_reused++;
        } else {
            if ((rc = compute_part(s, first, count, compute, user, dst))) return rc;
            if ((rc = write_file(part, s, identity, first, count, dst))) return rc;
            stats->parts_computed++;
        }
        done += count;
        if (progress) progress(progress_user, done, s->n);
    }
    if ((rc = write_file(path, s, identity, 0, s->n, hidden))) return rc;
    remove_parts(parts);
    return QH_OK;
}

int qh_features_read(const char *path, int64_t *n, int *hidden_size, float **hidden, int32_t **labels)
{
    *hidden = NULL;
    *labels = NULL;
    qh_h5_quiet();
    if (H5Fis_hdf5(path) <= 0) return qh_fail(QH_EINPUT, "%s: not an HDF5 feature cache", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return qh_fail(QH_EINPUT, "%s: cannot open", path);
    hsize_t hd[2], ld[1];
    int rc = QH_OK;
    if (qh_h5_dims(f, "hidden", hd, 2) != 2 || qh_h5_dims(f, "labels", ld, 1) != 1 || hd[0] != ld[0])
        rc = qh_fail(QH_EINPUT, "%s: needs datasets hidden [N, H] and labels [N]", path);
    /* Sizes from the file are checked before they size an allocation: H within int (and any
     * real model), N x (H + 1) x 4 bytes without overflow and within memory, and every byte
     * actually in the file (a small file can declare a huge dataset of fill values). */
    if (!rc && (hd[1] < 1 || hd[1] > MAX_HIDDEN || hd[0] > (UINT64_MAX / 4 - 1) / (hd[1] + 1)))
        rc = qh_fail(QH_EINPUT, "%s: hidden is [%llu, %llu], not a feature matrix qhead can read", path,
                     (unsigned long long)hd[0], (unsigned long long)hd[1]);
    if (!rc) {
        char what[4300];
        snprintf(what, sizeof what, "%s: reading %llu x %llu features", path, (unsigned long long)hd[0],
                 (unsigned long long)hd[1]);
        rc = qh_check_memory(((uint64_t)hd[0] * hd[1] + hd[0] + 2) * 4, what);
    }
    if (!rc && (!qh_h5_fully_stored(f, "hidden") || !qh_h5_fully_stored(f, "labels")))
        rc = qh_fail(QH_EINPUT, "%s: holds less data than its shapes say (truncated?)", path);
    if (!rc) {
        *hidden = malloc(sizeof(float) * (size_t)(hd[0] * hd[1] + 1));
        *labels = malloc(sizeof(int32_t) * (size_t)(hd[0] + 1));
        if (!*hidden || !*labels) rc = qh_fail(QH_ESYS, "out of memory reading %s", path);
    }
    if (!rc && (qh_h5_read(f, "hidden", H5T_NATIVE_FLOAT, *hidden) < 0 || qh_h5_read(f, "labels", H5T_NATIVE_INT32, *labels) < 0))
        rc = qh_fail(QH_EINPUT, "%s: cannot read its datasets", path);
    H5Fclose(f);
    if (rc) {
        free(*hidden);
        free(*labels);
        *hidden = NULL;
        *labels = NULL;
        return rc;
    }
    *n = (int64_t)hd[0];
    *hidden_size = (int)hd[1];
    return QH_OK;
}
