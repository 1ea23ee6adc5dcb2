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

/* LLM.int8()'s per-token activation quantization, from the absmax of the row's regular columns:
 * the scale kept for the epilogue, the factor to codes, and one code (NaN -> 0). */
__device__ __forceinline__ float qh_i8_row_scale(float amax) { return __fdiv_rn(amax, 127.0f); }
__device__ __forceinline__ float qh_i8_row_inv(float amax) { return amax > 0.f ? __fdiv_rn(127.0f, amax) : 0.f; }
__device__ __forceinline__ unsigned qh_i8_code(float v, float inv)
{
    float f = rintf(__fmul_rn(v, inv));
    f = f > 127.f ? 127.f : f < -127.f ? -127.f : (f == f ? f : 0.f);
    return (unsigned)(int)f & 0xffu;
}

__device__ __forceinline__ float qh_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Max over the block of non-negative values (blockDim a multiple of 32); sh[32] scratch. */
__device__ __forceinline__ float qh_block_max(float v, float *sh)
{
    v = qh_warp_max(v);
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.f;
        v = qh_warp_max(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    float r = sh[0];
    __syncthreads();
    return r;
}

#endif
