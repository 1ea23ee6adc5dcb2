/* Arithmetic that several kernels must do identically (fused kernels promise the plain ops'
 * numbers bit for bit), written once. Explicit _rn intrinsics: no fused multiply-adds. */
#ifndef QHEAD_CUDA_DEVICE_MATH_CUH
#define QHEAD_CUDA_DEVICE_MATH_CUH

#include <stdint.h>

/* SwiGLU of one element: silu(g) * u. */
__device__ __forceinline__ float qh_silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

/* LLM.int8()'s dequantization of an int32 product sum: (acc * s_token) * (SCB_row / 127), as
 * ../cpu/cpu_linear_quant.c does it. */
__device__ __forceinline__ float qh_i8_dequant(int32_t acc, float sx, float scb)
{
    return __fmul_rn(__fmul_rn((float)acc, sx), __fdiv_rn(scb, 127.0f));
}

#endif
