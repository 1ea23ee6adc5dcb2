/* Arithmetic that several kernels must do identically (fused kernels promise the plain ops'
 * numbers bit for bit), written once. Explicit _rn intrinsics: no fused multiply-adds. */
#ifndef QHEAD_CUDA_DEVICE_MATH_CUH
#define QHEAD_CUDA_DEVICE_MATH_CUH

#include "cuda_internal.h"

#include <cuda_fp16.h>
#include <stdint.h>

/* v / 127, rounded as the CPU divides: int8's row factors and nf4's double-quantization factors,
 * divided once at upload (qh_cu_div127). */
__device__ __forceinline__ float qh_div127(float v) { return __fdiv_rn(v, 127.0f); }

/* An nf4 block's absmax, as qh_nf4_absmax: with double quantization q * (nested / 127) +
 * offset, each step rounded (nested / 127 divided at upload). */
__device__ __forceinline__ float qh_nf4_scale(const qh_cu_nf4 &w, int64_t b)
{
    if (!w.qabsmax) return w.absmax[b];
    return __fadd_rn(__fmul_rn((float)w.qabsmax[b], w.nested127[b >> w.nested_shift]), w.offset);
}

/* Programmatic dependent launch (Hopper): a kernel may let the next kernel in the stream start
 * before it ends (qh_pdl_trigger, at its start), and a kernel launched with the
 * programmatic-serialization attribute does everything that does not read its predecessor's
 * output (weights, tables) first, then waits for it (qh_pdl_wait: the predecessor has finished
 * and its writes are visible). Both are no-ops where nothing asks for them. */
__device__ __forceinline__ void qh_pdl_trigger()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void qh_pdl_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

/* Launch kernel k with programmatic stream serialization allowed: it may start while the kernel
 * before it in the stream still runs, so it must call qh_pdl_wait before it reads or writes any
 * activation. cluster_y > 0: thread-block clusters of (1, cluster_y, 1) blocks. */
template <typename... KArgs, typename... Args>
static inline cudaError_t qh_launch_pdl_cluster(void (*k)(KArgs...), dim3 grid, dim3 block, size_t smem,
                                                cudaStream_t s, unsigned cluster_y, Args... args)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = s;
    cudaLaunchAttribute at[2];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.numAttrs = 1;
    if (cluster_y > 0) {
        at[1].id = cudaLaunchAttributeClusterDimension;
        at[1].val.clusterDim.x = 1, at[1].val.clusterDim.y = cluster_y, at[1].val.clusterDim.z = 1;
        cfg.numAttrs = 2;
    }
    cfg.attrs = at;
    return cudaLaunchKernelEx(&cfg, k, args...);
}

template <typename... KArgs, typename... Args>
static inline cudaError_t qh_launch_pdl(void (*k)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                                        Args... args)
{
    return qh_launch_pdl_cluster(k, grid, block, smem, s, 0u, args...);
}

/* Let kernel k take `bytes` of dynamic shared memory (beyond the 48 KB default): asked of the
 * driver only when bytes grows past *opted, what was allowed so far (one device). */
template <typename K>
static inline cudaError_t qh_smem_opt_in(K k, size_t bytes, size_t *opted)
{
    if (bytes <= *opted) return cudaSuccess;
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e == cudaSuccess) *opted = bytes;
    return e;
}

/* A shared-memory address as the 32-bit operand PTX's shared-state instructions take. */
__device__ __forceinline__ uint32_t qh_smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* Asynchronous 16-byte copies global -> shared (sm_80+), grouped by commit, waited for with at
 * most N groups still in flight. */
__device__ __forceinline__ void qh_cp_async16(void *smem_dst, const void *gmem_src)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(qh_smem_u32(smem_dst)), "l"(gmem_src));
}
/* 4 bytes (both addresses 4-byte aligned), through L1: the permuted x staging of the nf4 kernel */
__device__ __forceinline__ void qh_cp_async4(void *smem_dst, const void *gmem_src)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(qh_smem_u32(smem_dst)), "l"(gmem_src));
}
__device__ __forceinline__ void qh_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void qh_cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* Tensor-core product D += A B, m16n8k16, fp16 in, fp32 accumulation (sm_80+). a: the A
 * fragment (4 registers of fp16 pairs), b: the B fragment, c: the four accumulators. */
__device__ __forceinline__ void qh_mma16816(float *c, const unsigned *a, uint2 b)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b.x), "r"(b.y));
}

/* ldmatrix: 8x8 fp16 tiles from shared memory into mma fragments, lane i giving the address of
 * row i % 8 of tile i / 8 (16-byte aligned); _trans transposes each tile (B fragments of a
 * row-major [k][n] operand). */
__device__ __forceinline__ void qh_ldmatrix_x4(unsigned *r, const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(qh_smem_u32(p)));
}
__device__ __forceinline__ void qh_ldmatrix_x4_trans(unsigned *r, const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(qh_smem_u32(p)));
}
__device__ __forceinline__ void qh_ldmatrix_x2(unsigned *r, const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(qh_smem_u32(p)));
}

/* The eight fp16 values of a 16-byte group, as floats. */
__device__ __forceinline__ void qh_half8_to_float(uint4 u, float *v)
{
    const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const float2 f = __half22float2(h[j]);
        v[2 * j] = f.x, v[2 * j + 1] = f.y;
    }
}

/* v rounded to fp16 and back: the value an fp16 activation holds. */
__device__ __forceinline__ float qh_round_h(float v) { return __half2float(__float2half_rn(v)); }

/* SwiGLU of one element: silu(g) * u. */
__device__ __forceinline__ float qh_silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

/* LLM.int8()'s dequantization of an int32 product sum: (acc * s_token) * (SCB_row / 127), as
 * ../cpu/cpu_linear_quant.c does it; the row factor SCB / 127 on its own (divided once per row
 * where a kernel can: the wgmma epilogue reads it from the weight's device layout). */
__device__ __forceinline__ float qh_i8_row_factor(float scb) { return qh_div127(scb); }
__device__ __forceinline__ float qh_i8_dequant_f(int32_t acc, float sx, float f)
{
    return __fmul_rn(__fmul_rn((float)acc, sx), f);
}
__device__ __forceinline__ float qh_i8_dequant(int32_t acc, float sx, float scb)
{
    return qh_i8_dequant_f(acc, sx, qh_i8_row_factor(scb));
}

/* An outlier column's weight as the fp16 outlier product multiplies it: fp16(w * SCB / 127). */
__device__ __forceinline__ __half qh_i8_outlier_w(int8_t w, float f) { return __float2half_rn(__fmul_rn((float)w, f)); }

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

/* Eight codes packed in order (bytes of x then y), 0 where skip has bit j set. */
__device__ __forceinline__ uint2 qh_i8_codes8(const float *v, unsigned skip, float inv)
{
    uint2 packed = make_uint2(0, 0);
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const unsigned byte = skip >> j & 1u ? 0u : qh_i8_code(v[j], inv);
        if (j < 4) packed.x |= byte << (8 * j);
        else packed.y |= byte << (8 * (j - 4));
    }
    return packed;
}

/* Inclusive prefix sum over a warp's lanes (all 32 take part). */
__device__ __forceinline__ int qh_warp_incl_scan(int v)
{
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int u = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += u;
    }
    return v;
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

/* Four values as fp32: already fp32, or four fp16 packed in a uint2. */
__device__ __forceinline__ float4 qh_as_float4(float4 v) { return v; }
__device__ __forceinline__ float4 qh_as_float4(uint2 h)
{
    float2 lo = __half22float2(*reinterpret_cast<const __half2 *>(&h.x));
    float2 hi = __half22float2(*reinterpret_cast<const __half2 *>(&h.y));
    return make_float4(lo.x, lo.y, hi.x, hi.y);
}

/* LLM.int8() codes (threshold 0) of a row the block holds in registers: thread i has the values
 * of columns 4 (i + j blockDim) .. +3 in v[j] (fp16-rounded, as stored), n columns in all. Writes
 * the row's scale to *sx, its codes to qr[0, n) and zeros to qr[n, kp); sh[32] scratch. The same
 * codes i8_rowquant_kernel computes from the stored row. */
template <int NV, typename T>
__device__ __forceinline__ void qh_i8_row_codes(const T (&v)[NV], int64_t n, int64_t kp, int8_t *qr, float *sx,
                                                float *sh)
{
    float amax = 0.f;
#pragma unroll
    for (int j = 0; j < NV; j++)
        if (4 * ((int64_t)threadIdx.x + (int64_t)j * blockDim.x) < n) {
            float4 f = qh_as_float4(v[j]);
            amax = fmaxf(amax, fmaxf(fmaxf(fabsf(f.x), fabsf(f.y)), fmaxf(fabsf(f.z), fabsf(f.w))));
        }
    amax = qh_block_max(amax, sh);
    const float inv = qh_i8_row_inv(amax);
    if (threadIdx.x == 0) *sx = qh_i8_row_scale(amax);
#pragma unroll
    for (int j = 0; j < NV; j++) {
        int64_t c = 4 * ((int64_t)threadIdx.x + (int64_t)j * blockDim.x);
        if (c < n) {
            float4 f = qh_as_float4(v[j]);
            *reinterpret_cast<unsigned *>(qr + c) = qh_i8_code(f.x, inv) | qh_i8_code(f.y, inv) << 8 |
                                                    qh_i8_code(f.z, inv) << 16 | qh_i8_code(f.w, inv) << 24;
        }
    }
    for (int64_t c = n + threadIdx.x; c < kp; c += blockDim.x) qr[c] = 0;
}

#endif
