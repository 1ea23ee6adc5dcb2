/* Tensors: a typed, shaped block of memory on one device.
 *
 * A tensor either owns its memory (allocated by a backend) or is a view (for instance a
 * weight inside a memory-mapped safetensors file). Row-major; shape[ndim-1] varies fastest. */
#ifndef QHEAD_TENSOR_H
#define QHEAD_TENSOR_H

#include "dtype.h"

#include <stddef.h>
#include <stdint.h>

#define QH_MAX_DIMS 4

typedef enum { QH_DEVICE_CPU, QH_DEVICE_CUDA } qh_device;

typedef struct {
    qh_dtype dtype;
    qh_device device;
    int ndim;
    int64_t shape[QH_MAX_DIMS];
    void *data;
    int owned; /* freed by the backend that allocated it */
} qh_tensor;

/* A description without memory yet (data NULL). */
qh_tensor qh_tensor_desc(qh_dtype dtype, int ndim, const int64_t *shape);
qh_tensor qh_tensor_2d(qh_dtype dtype, int64_t rows, int64_t cols);
qh_tensor qh_tensor_1d(qh_dtype dtype, int64_t n);
int64_t qh_tensor_numel(const qh_tensor *t);
size_t qh_tensor_nbytes(const qh_tensor *t);
/* Rows of a 2-D tensor (shape[0]) and the row length (product of the rest). */
int64_t qh_tensor_rows(const qh_tensor *t);
int64_t qh_tensor_cols(const qh_tensor *t);
/* "[4096, 11008]" into buf. */
const char *qh_shape_str(const qh_tensor *t, char *buf, size_t size);

#endif
