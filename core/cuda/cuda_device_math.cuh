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

__device__ __forceinline__ float qh_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Max (SUM false: of non-negative values) or sum over the block (blockDim a multiple of 32):
 * each warp's lanes, then the warps' results in warp 0; sh[32] scratch, reusable on return. */
template <bool SUM>
__device__ __forceinline__ float qh_block_reduce(float v, float *sh)
{
    v = SUM ? qh_warp_sum(v) : qh_warp_max(v);
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.f;
        v = SUM ? qh_warp_sum(v) : qh_warp_max(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    float r = sh[0];
    __syncthreads();
    return r;
}

__device__ __forceinline__ float qh_block_max(float v, float *sh) { return qh_block_reduce<false>(v, sh); }
__device__ __forceinline__ float qh_block_sum(float v, float *sh) { return qh_block_reduce<true>(v, sh); }

#endif
