/* Element types and conversions between the 16-bit float formats and fp32. */
#ifndef QHEAD_DTYPE_H
#define QHEAD_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    QH_F32,
    QH_F16,
    QH_BF16,
    QH_F64,
    QH_I64,
    QH_I32,
    QH_I16,
    QH_I8,
    QH_U8,
    QH_BOOL,
    QH_DTYPE_COUNT, /* the safetensors dtypes above; qhead's own below (never in a file header) */
    /* 4-bit NormalFloat codes of a quantized weight, two per byte (core/quant.h). Sub-byte:
     * qh_dtype_size gives 0, qh_tensor_nbytes the packed size. */
    QH_NF4 = 64
} qh_dtype;

size_t qh_dtype_size(qh_dtype t);
/* The safetensors spelling ("F16", "BF16", ...). */
const char *qh_dtype_name(qh_dtype t);
/* Parse a safetensors dtype name; returns -1 if unknown. */
int qh_dtype_from_name(const char *name);
int qh_dtype_is_float(qh_dtype t);

float qh_f16_to_f32(uint16_t h);
uint16_t qh_f32_to_f16(float f); /* round to nearest even, overflow to inf, NaN kept */
float qh_bf16_to_f32(uint16_t b);
uint16_t qh_f32_to_bf16(float f); /* round to nearest even, NaN kept */

/* Convert n elements of a float dtype (F32, F16, BF16, F64) to fp32. Uses F16C when the CPU
 * has it: weight conversion sits on the CPU backend's hot path. */
void qh_convert_to_f32(qh_dtype t, const void *src, float *dst, size_t n);
/* Read element i of a float array of dtype t as fp32 (slow path for small tensors). */
float qh_load_f32(qh_dtype t, const void *src, size_t i);

#endif
