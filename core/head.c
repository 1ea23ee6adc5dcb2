#include "head.h"

#include "error.h"
#include "fileio.h"
#include "safetensors.h"

#include "h5util.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HEAD_FORMAT "qhead-head-1"
#define MAX_HIDDEN (1 << 20) /* widest hidden state a head file may hold */

int qh_head_create(int num_labels, int hidden_size, int with_bias, qh_head **out)
{
    *out = NULL;
    if (num_labels < 1 || num_labels > QH_MAX_LABELS || hidden_size < 1)
        return qh_fail(QH_EINPUT, "head: %d labels of width %d is not a valid head (1..%d labels)", num_labels,
                       hidden_size, QH_MAX_LABELS);
    qh_head *h = calloc(1, sizeof *h);
    if (!h) return qh_fail(QH_ESYS, "out of memory");
    h->num_labels = num_labels;
    h->hidden_size = hidden_size;
    h->weight = calloc((size_t)num_labels * (size_t)hidden_size, sizeof(float));
    h->bias = with_bias ? calloc((size_t)num_labels, sizeof(float)) : NULL;
    if (!h->weight || (with_bias && !h->bias)) {
        qh_head_free(h);
        return qh_fail(QH_ESYS, "out of memory");
    }
    for (int i = 0; i < num_labels; i++) snprintf(h->label_names[i], sizeof h->label_names[i], "LABEL_%d", i);
    *out = h;
    return QH_OK;
}

void qh_head_free(qh_head *h)
{
    if (!h) return;
    free(h->weight);
    free(h->bias);
    free(h);
}

int qh_head_from_tensor(const qh_tensor *score, const qh_llama_config *cfg, qh_head **out)
{
    int rc = qh_head_create((int)score->shape[0], (int)score->shape[1], 0, out);
    if (rc) return rc;
    qh_convert_to_f32(score->dtype, score->data, (*out)->weight, (size_t)qh_tensor_numel(score));
    if (cfg && cfg->num_labels == (*out)->num_labels)
        memcpy((*out)->label_names, cfg->label_names, sizeof cfg->label_names);
    return QH_OK;
}

void qh_head_apply(const qh_head *h, const float *hidden, int n, float *logits)
{
    for (int s = 0; s < n; s++) {
        const float *x = hidden + (size_t)s * h->hidden_size;
        for (int l = 0; l < h->num_labels; l++) {
            const float *w = h->weight + (size_t)l * h->hidden_size;
            double acc = h->bias ? h->bias[l] : 0.0;
            for (int i = 0; i < h->hidden_size; i++) acc += (double)w[i] * x[i];
            logits[(size_t)s * h->num_labels + l] = (float)acc;
        }
    }
}

static int load_safetensors_head(const char *path, qh_head **out)
{
    qh_safetensors *st;
    int rc = qh_st_open(path, &st);
    if (rc) return rc;
    const qh_st_tensor *w = qh_st_find(st, "score.weight"), *b = qh_st_find(st, "score.bias");
    if (!w || w->ndim != 2 || !qh_dtype_is_float(w->dtype)) {
        qh_st_close(st);
        return qh_fail(QH_EINPUT, "%s: no 2-D float tensor 'score.weight' in this head file", path);
    }
    /* Checked before the casts to int below: [2^32 + 1, 1] would otherwise become one label. */
    if (w->shape[0] < 1 || w->shape[0] > QH_MAX_LABELS || w->shape[1] < 1 || w->shape[1] > MAX_HIDDEN) {
        rc = qh_fail(QH_EINPUT, "%s: score.weight is [%lld, %lld]; a head has 1..%d labels of width 1..%d", path,
                     (long long)w->shape[0], (long long)w->shape[1], QH_MAX_LABELS, MAX_HIDDEN);
        qh_st_close(st); /* after the message: w points into st */
        return rc;
    }
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0] || !qh_dtype_is_float(b->dtype))) {
        qh_st_close(st);
        return qh_fail(QH_EINPUT, "%s: 'score.bias' does not match score.weight", path);
    }
    rc = qh_head_create((int)w->shape[0], (int)w->shape[1], b != NULL, out);
    if (!rc) {
        qh_convert_to_f32(w->dtype, qh_st_data(st, w), (*out)->weight, (size_t)(w->shape[0] * w->shape[1]));
        if (b) qh_convert_to_f32(b->dtype, qh_st_data(st, b), (*out)->bias, (size_t)b->shape[0]);
    }
    qh_st_close(st);
    return rc;
}

/* Read a float dataset of the expected rank into a new buffer; dims returned. */
static int read_f32(hid_t file, const char *path, const char *name, int rank, hsize_t *dims, float **out)
{
    *out = NULL;
    if (qh_h5_dims(file, name, dims, rank) != rank) /* dims holds rank entries */
        return qh_fail(QH_EINPUT, "%s: no %d-D dataset '%s' in this head file", path, rank, name);
    hsize_t n = 1;
    for (int i = 0; i < rank; i++) {
        /* dims[0] counts labels (weight rows, bias entries), dims[1] the hidden width */
        if (dims[i] < 1 || dims[i] > (i ? MAX_HIDDEN : QH_MAX_LABELS))
            return qh_fail(QH_EINPUT, "%s: dataset '%s' has an implausible size (%llu in dimension %d)", path, name,
                           (unsigned long long)dims[i], i);
        n *= dims[i];
    }
    if (!qh_h5_fully_stored(file, name))
        return qh_fail(QH_EINPUT, "%s: dataset '%s' holds less data than its shape says (truncated?)", path, name);
    if (!(*out = malloc(sizeof(float) * (size_t)n))) return qh_fail(QH_ESYS, "out of memory");
    if (qh_h5_read(file, name, H5T_NATIVE_FLOAT, *out) < 0) {
        free(*out);
        *out = NULL;
        return qh_fail(QH_EINPUT, "%s: cannot read dataset '%s'", path, name);
    }
    return QH_OK;
}

int qh_head_load(const char *path, qh_head **out)
{
    *out = NULL;
    if (!qh_path_exists(path)) return qh_fail(QH_EINPUT, "%s: no such head file (train one with train-head)", path);
    qh_h5_quiet(); /* errors are reported our way, one line */
    if (H5Fis_hdf5(path) <= 0) {
        size_t n = strlen(path);
        if (n > 12 && strcmp(path + n - 12, ".safetensors") == 0) return load_safetensors_head(path, out);
        return qh_fail(QH_EINPUT, "%s: not an HDF5 head file (nor .safetensors)", path);
    }
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return qh_fail(QH_EINPUT, "%s: cannot open HDF5 file", path);
    hsize_t wd[2] = {0, 0}, bd[1] = {0};
    float *w = NULL, *b = NULL;
    int rc = read_f32(file, path, "weight", 2, wd, &w);
    if (!rc && H5Lexists(file, "bias", H5P_DEFAULT) > 0) {
        rc = read_f32(file, path, "bias", 1, bd, &b);
        if (!rc && bd[0] != wd[0]) rc = qh_fail(QH_EINPUT, "%s: bias has %llu entries, weight has %llu rows", path,
                                                (unsigned long long)bd[0], (unsigned long long)wd[0]);
    }
    if (!rc) rc = qh_head_create((int)wd[0], (int)wd[1], 0, out);
    if (!rc) {
        free((*out)->weight);
        (*out)->weight = w;
        (*out)->bias = b;
        w = b = NULL;
        qh_h5_get_strs(file, "labels", (*out)->num_labels, &(*out)->label_names[0][0], sizeof (*out)->label_names[0]);
        qh_h5_get_str(file, "model_fingerprint", (*out)->model_fingerprint, sizeof (*out)->model_fingerprint);
    }
    free(w);
    free(b);
    H5Fclose(file);
    return rc;
}

int qh_head_save(const qh_head *h, const char *path) { return qh_head_save_record(h, NULL, path); }

int qh_head_save_record(const qh_head *h, const qh_head_record *rec, const char *path)
{
    char tmp[4200];
    int rc = qh_tmp_name(path, tmp, sizeof tmp);
    if (rc) return rc;
    qh_h5_quiet();
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return qh_fail(QH_EINPUT, "%s: cannot create head file", tmp);
    hsize_t wd[2] = {(hsize_t)h->num_labels, (hsize_t)h->hidden_size}, bd[1] = {(hsize_t)h->num_labels};
    const char *labels[QH_MAX_LABELS];
    for (int i = 0; i < h->num_labels; i++) labels[i] = h->label_names[i];
    herr_t e = qh_h5_write(file, "weight", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, wd, h->weight);
    if (e >= 0 && h->bias) e = qh_h5_write(file, "bias", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, bd, h->bias);
    if (e >= 0) e = qh_h5_set_strs(file, "labels", labels, h->num_labels);
    if (e >= 0) e = qh_h5_set_str(file, "format", HEAD_FORMAT);
    if (e >= 0) e = qh_h5_set_str(file, "model_fingerprint", h->model_fingerprint);
    if (e >= 0 && rec && rec->hyperparameters_json) e = qh_h5_set_str(file, "hyperparameters", rec->hyperparameters_json);
    if (e >= 0 && rec && rec->log_rows > 0) {
        hsize_t ld[2] = {(hsize_t)rec->log_rows, (hsize_t)rec->log_cols};
        e = qh_h5_write(file, "train_log", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, ld, rec->log);
        if (e >= 0) {
            hid_t ds = H5Dopen2(file, "train_log", H5P_DEFAULT);
            e = ds < 0 ? -1 : qh_h5_set_strs(ds, "columns", rec->log_columns, rec->log_cols);
            if (ds >= 0) H5Dclose(ds);
        }
    }
    if (H5Fclose(file) < 0) e = -1;
    if (e < 0) {
        unlink(tmp);
        return qh_fail(QH_ESYS, "%s: writing the head failed (disk full?)", path);
    }
    return qh_commit_tmp(tmp, path);
}
