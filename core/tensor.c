#include "tensor.h"

#include <stdio.h>
#include <string.h>

qh_tensor qh_tensor_desc(qh_dtype dtype, int ndim, const int64_t *shape)
{
    qh_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dtype;
    t.ndim = ndim;
    for (int i = 0; i < ndim && i < QH_MAX_DIMS; i++) t.shape[i] = shape[i];
    return t;
}

qh_tensor qh_tensor_2d(qh_dtype dtype, int64_t rows, int64_t cols)
{
    int64_t s[2] = {rows, cols};
    return qh_tensor_desc(dtype, 2, s);
}

qh_tensor qh_tensor_1d(qh_dtype dtype, int64_t n) { return qh_tensor_desc(dtype, 1, &n); }

int64_t qh_tensor_numel(const qh_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t qh_tensor_nbytes(const qh_tensor *t)
{
    if (t->dtype == QH_NF4) return ((size_t)qh_tensor_numel(t) + 1) / 2; /* two codes per byte */
    return (size_t)qh_tensor_numel(t) * qh_dtype_size(t->dtype);
}

int qh_tensor_is_quantized(const qh_tensor *t) { return t->dtype == QH_NF4 || (t->dtype == QH_I8 && t->quant.scale); }

int64_t qh_tensor_rows(const qh_tensor *t) { return t->ndim > 0 ? t->shape[0] : 1; }

int64_t qh_tensor_cols(const qh_tensor *t)
{
    int64_t n = 1;
    for (int i = 1; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

const char *qh_shape_str(const qh_tensor *t, char *buf, size_t size)
{
    size_t used = 0;
    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < t->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}
