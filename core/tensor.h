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

/* How the codes of a quantized weight (dtype QH_I8 with scale set, or QH_NF4; shape is the
 * logical [out_features, in_features]) map back to numbers; core/quant.h has the details.
 * The arrays live on the tensor's device like data (views into the file on the CPU); a
 * backend's weight() places them along with the codes. All zero for ordinary tensors. */
typedef struct {
    float *scale;         /* I8: row absmax [rows], w = q * scale / 127 (bitsandbytes' SCB);
                           * NF4: block absmax [n_blocks], NULL with double quantization */
    int8_t *qabsmax;      /* NF4 double quantization: absmax codes [n_blocks] */
    float *nested_absmax; /* NF4 double quantization: [ceil(n_blocks / QH_NF4_NESTED_BLOCK)] */
    float nested_offset;  /* NF4 double quantization: mean absmax, added back */
    int blocksize;        /* NF4: values per block of the flattened weight (64, 128, 256) */
    float threshold;      /* I8: input columns holding any |x| >= threshold skip int8 (LLM.int8()) */
} qh_quant;

typedef struct {
    qh_dtype dtype;
    qh_device device;
    int ndim;
    int64_t shape[QH_MAX_DIMS];
    void *data;
    int owned; /* freed by the backend that allocated it */
    qh_quant quant;
} qh_tensor;

/* An int8 (LLM.int8()) or NF4 weight: data holds codes, quant their scales. */
int qh_tensor_is_quantized(const qh_tensor *t);

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
