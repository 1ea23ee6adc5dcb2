#include "head.h"

#include "error.h"
#include "fileio.h"
#include "safetensors.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HEAD_FORMAT "qhead-head-1"

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
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) return qh_fail(QH_EINPUT, "%s: no dataset '%s' in this head file", path, name);
    hid_t sp = H5Dget_space(ds);
    int got = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    int rc = QH_OK;
    if (got != rank || H5Sget_simple_extent_dims(sp, dims, NULL) != rank)
        rc = qh_fail(QH_EINPUT, "%s: dataset '%s' should have %d dimensions", path, name, rank);
    hsize_t n = 1;
    for (int i = 0; !rc && i < rank; i++) {
        if (dims[i] < 1 || dims[i] > (1u << 20)) rc = qh_fail(QH_EINPUT, "%s: dataset '%s' has an implausible size", path, name);
        n *= dims[i];
    }
    if (!rc && !(*out = malloc(sizeof(float) * (size_t)n))) rc = qh_fail(QH_ESYS, "out of memory");
    if (!rc && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
        rc = qh_fail(QH_EINPUT, "%s: cannot read dataset '%s'", path, name);
    if (rc) {
        free(*out);
        *out = NULL;
    }
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

/* Variable-length string memory type in the charset the attribute was written with
 * (HDF5 refuses to convert between ASCII and UTF-8). */
static hid_t vlen_string_type_for(hid_t attr)
{
    hid_t ft = H5Aget_type(attr);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    if (ft >= 0) {
        H5Tset_cset(t, H5Tget_cset(ft));
        H5Tclose(ft);
    }
    return t;
}

static void read_string_attr(hid_t file, const char *name, char *dst, size_t size)
{
    if (H5Aexists(file, name) <= 0) return;
    hid_t a = H5Aopen(file, name, H5P_DEFAULT);
    hid_t t = vlen_string_type_for(a);
    char *s = NULL;
    hid_t sp = H5Aget_space(a);
    if (H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, t, &s) >= 0 && s) {
        snprintf(dst, size, "%s", s);
        H5free_memory(s);
    }
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
}

static void read_labels(hid_t file, qh_head *h)
{
    if (H5Aexists(file, "labels") <= 0) return;
    hid_t a = H5Aopen(file, "labels", H5P_DEFAULT);
    hid_t sp = H5Aget_space(a);
    hid_t t = vlen_string_type_for(a);
    if (H5Sget_simple_extent_npoints(sp) == h->num_labels) {
        char **names = calloc((size_t)h->num_labels, sizeof(char *));
        if (names && H5Aread(a, t, names) >= 0) {
            for (int i = 0; i < h->num_labels; i++)
                if (names[i]) snprintf(h->label_names[i], sizeof h->label_names[i], "%s", names[i]);
            H5Dvlen_reclaim(t, sp, H5P_DEFAULT, names);
        }
        free(names);
    }
    H5Tclose(t);
    H5Sclose(sp);
    H5Aclose(a);
}

int qh_head_load(const char *path, qh_head **out)
{
    *out = NULL;
    if (!qh_path_exists(path)) return qh_fail(QH_EINPUT, "%s: no such head file (train one with train-head)", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported our way, one line */
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
        read_labels(file, *out);
        read_string_attr(file, "model_fingerprint", (*out)->model_fingerprint, sizeof (*out)->model_fingerprint);
    }
    free(w);
    free(b);
    H5Fclose(file);
    return rc;
}

static herr_t write_f32(hid_t file, const char *name, int rank, const hsize_t *dims, const float *data)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(file, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = ds < 0 ? -1 : H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    return e;
}

static herr_t write_strings(hid_t file, const char *name, const char *const *values, hsize_t n, int scalar)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    hid_t a = H5Acreate2(file, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, t, values);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return e;
}

int qh_head_save(const qh_head *h, const char *path)
{
    char tmp[4200];
    int rc = qh_tmp_name(path, tmp, sizeof tmp);
    if (rc) return rc;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return qh_fail(QH_EINPUT, "%s: cannot create head file", tmp);
    hsize_t wd[2] = {(hsize_t)h->num_labels, (hsize_t)h->hidden_size}, bd[1] = {(hsize_t)h->num_labels};
    const char *labels[QH_MAX_LABELS];
    for (int i = 0; i < h->num_labels; i++) labels[i] = h->label_names[i];
    const char *format = HEAD_FORMAT, *fp = h->model_fingerprint;
    herr_t e = write_f32(file, "weight", 2, wd, h->weight);
    if (e >= 0 && h->bias) e = write_f32(file, "bias", 1, bd, h->bias);
    if (e >= 0) e = write_strings(file, "labels", labels, (hsize_t)h->num_labels, 0);
    if (e >= 0) e = write_strings(file, "format", &format, 1, 1);
    if (e >= 0) e = write_strings(file, "model_fingerprint", &fp, 1, 1);
    if (H5Fclose(file) < 0) e = -1;
    if (e < 0) {
        unlink(tmp);
        return qh_fail(QH_ESYS, "%s: writing the head failed (disk full?)", path);
    }
    return qh_commit_tmp(tmp, path);
}
