/* Weight quantization as bitsandbytes defines it (../shared/reference/quantization.md): the
 * two formats, the quantizers `quantize` runs once, and the dequantizers that the CPU kernels
 * and the tests share. A quantized weight is a qh_tensor of dtype QH_I8 or QH_NF4 with its
 * scales in t->quant (tensor.h); the file that stores them is described in quant_model.h.
 *
 * int8, LLM.int8(): per output row r, absmax[r] = max |w[r][:]| (fp32, bitsandbytes' SCB) and
 *   q = rint(w * 127 / absmax[r]) in [-127, 127] (round half to even); w ~ q * absmax[r] / 127.
 *   At run time the input is quantized per token the same way, except its outlier columns
 *   (any |x| >= threshold), which multiply the dequantized weight columns in floating point.
 *
 * NF4, QLoRA: the weight flattened row-major and cut into blocks of `blocksize` values; the
 *   block's absmax (fp32) scales it into [-1, 1] and each value takes the code of the nearest
 *   of the 16 NF4 levels (qh_nf4_levels; exactly between two levels: the lower). Two codes per
 *   byte, the first value in the high nibble. w ~ qh_nf4_levels[code] * absmax. The division
 *   and the choice of level are done in float64 so that the codes are the published
 *   algorithm's whatever the rounding of a float32 shortcut would say. A block of zeros has
 *   absmax 0 and codes 7 (the level 0.0).
 *
 * NF4 double quantization (QLoRA's, with a linear code): the tensor's absmax values minus
 *   their mean (offset, fp32) are quantized in blocks of QH_NF4_NESTED_BLOCK with a symmetric
 *   linear int8 code, nested[j] = max |a - offset| over block j (fp32), q = rint((a - offset) *
 *   127 / nested[j]); a ~ q * (nested[j] / 127) + offset (qh_nf4_absmax). bitsandbytes uses its
 *   nonlinear "dynamic" 8-bit code here; the saving is the same (~0.37 bit per weight). The
 *   weight codes are computed with the exact absmax, as bitsandbytes does. */
#ifndef QHEAD_QUANT_H
#define QHEAD_QUANT_H

#include "tensor.h"

#include <stdint.h>

#define QH_NF4_NESTED_BLOCK 256
#define QH_INT8_DEFAULT_THRESHOLD 6.0

extern const float qh_nf4_levels[16];

/* Code of a normalised value x = w / absmax in [-1, 1]: the nearest level, ties to the lower. */
int qh_nf4_code(double x);

/* Quantize n values of src (dtype F32, F16 or BF16) into codes ((n + 1) / 2 bytes; an odd last
 * code shares its byte with a zero nibble) and absmax (ceil(n / blocksize) floats); blocksize
 * must be even. OpenMP threads over blocks. Returns -1, or the index of a NaN or infinite value (outputs are then
 * undefined). */
int64_t qh_nf4_quantize(qh_dtype dt, const void *src, int64_t n, int blocksize, uint8_t *codes, float *absmax);

/* Double quantization of absmax[nb]: qabsmax[nb], nested[ceil(nb / QH_NF4_NESTED_BLOCK)] and
 * the offset (see above). */
void qh_nf4_double_quant(const float *absmax, int64_t nb, int8_t *qabsmax, float *nested, float *offset);

/* Scale of block b of an NF4 weight, decoding double quantization when q->qabsmax is set. */
float qh_nf4_absmax(const qh_quant *q, int64_t b);

/* Flattened elements [i0, i0 + n) of an NF4 weight (host memory), dequantized into out. */
void qh_nf4_dequantize(const qh_tensor *w, int64_t i0, int64_t n, float *out);

/* Quantize a [rows, cols] matrix (F32, F16 or BF16) row by row into q[rows * cols] and
 * absmax[rows]. OpenMP threads over rows. Returns -1, or the flat index of a NaN or infinite
 * value. */
int64_t qh_int8_quantize(qh_dtype dt, const void *src, int64_t rows, int64_t cols, int8_t *q, float *absmax);

/* Flattened elements [i0, i0 + n) of an int8 weight (host memory), dequantized into out:
 * q * (absmax[row] / 127) in fp32. */
void qh_int8_dequantize(const qh_tensor *w, int64_t i0, int64_t n, float *out);

/* max |v| over n values of src (F32, F16, BF16); a NaN or inf sets *bad to base + its index
 * when that is lower than *bad. Shared by the quantizers. */
float qh_quant_absmax(qh_dtype dt, const void *src, int64_t n, int64_t base, int64_t *bad);

/* Flattened elements [i0, i0 + n) of either kind of quantized weight. */
void qh_quant_dequantize(const qh_tensor *w, int64_t i0, int64_t n, float *out);

#endif
