/* Element-wise and row-wise kernels of the CUDA backend: embedding gather, RMSNorm, SwiGLU,
 * residual add, row gather, rotary embedding, random fill and dtype conversion.
 *
 * All are memory-bound: each reads and writes its tensors once, with 16-byte vector accesses
 * where the widths allow (every LLaMA width is a multiple of 8), and does its arithmetic in fp32
 * whatever the storage type. The CPU backend (core/cpu/cpu_ops.c) is the reference for each. */
#include "cuda_device_math.cuh"
#include "cuda_internal.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

namespace {

__device__ __forceinline__ float ld(const void *p, int type, int64_t i)
{
    if (type == QH_CU_F32) return static_cast<const float *>(p)[i];
    if (type == QH_CU_BF16) return __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[i]);
    return __half2float(static_cast<const __half *>(p)[i]);
}

__device__ __forceinline__ void st(void *p, int type, int64_t i, float v)
{
    if (type == QH_CU_F32) static_cast<float *>(p)[i] = v;
    else if (type == QH_CU_BF16) static_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16_rn(v);
    else static_cast<__half *>(p)[i] = __float2half_rn(v);
}

/* Four consecutive elements (i % 4 == 0, rows 8-byte aligned for fp16, 16-byte for fp32). */
__device__ __forceinline__ float4 ld4(const void *p, int type, int64_t i)
{
    if (type == QH_CU_F32) return *reinterpret_cast<const float4 *>(static_cast<const float *>(p) + i);
    if (type == QH_CU_F16) {
        uint2 u = *reinterpret_cast<const uint2 *>(static_cast<const __half *>(p) + i);
        float2 a = __half22float2(*reinterpret_cast<__half2 *>(&u.x));
        float2 b = __half22float2(*reinterpret_cast<__half2 *>(&u.y));
        return make_float4(a.x, a.y, b.x, b.y);
    }
    return make_float4(ld(p, type, i), ld(p, type, i + 1), ld(p, type, i + 2), ld(p, type, i + 3));
}

__device__ __forceinline__ void st4(void *p, int type, int64_t i, float4 v)
{
    if (type == QH_CU_F32) {
        *reinterpret_cast<float4 *>(static_cast<float *>(p) + i) = v;
    } else if (type == QH_CU_F16) {
        __half2 a = __floats2half2_rn(v.x, v.y), b = __floats2half2_rn(v.z, v.w);
        uint2 u;
        u.x = *reinterpret_cast<unsigned *>(&a);
        u.y = *reinterpret_cast<unsigned *>(&b);
        *reinterpret_cast<uint2 *>(static_cast<__half *>(p) + i) = u;
    } else {
        st(p, type, i, v.x), st(p, type, i + 1, v.y), st(p, type, i + 2, v.z), st(p, type, i + 3, v.w);
    }
}

/* ---- embedding ---------------------------------------------------------------------------- */

__global__ void embed_kernel(const void *table, int tt, int64_t vocab, int64_t h, const int32_t *ids, void *out,
                             int out_type, bool vec, int *err)
{
    int64_t r = blockIdx.x;
    int32_t id = ids[r];
    if (id < 0 || id >= vocab) {
        if (threadIdx.x == 0) *err = 1;
        return;
    }
    const int64_t src = (int64_t)id * h;
    if (vec) {
        for (int64_t i = 4 * (int64_t)threadIdx.x; i < h; i += 4 * (int64_t)blockDim.x)
            st4(out, out_type, r * h + i, ld4(table, tt, src + i));
    } else {
        for (int64_t i = threadIdx.x; i < h; i += blockDim.x) st(out, out_type, r * h + i, ld(table, tt, src + i));
    }
}

/* ---- RMSNorm: one block per row; sum of squares in fp32 (tree-reduced), then a second pass
 * over the row (an L1/L2 hit) writes x * rsqrt(mean + eps) * w. ----------------------------- */

/* rsqrt(mean(x^2) + eps) of row `base`; the same arithmetic (and order) in both kernels below,
 * launched with the same block size, so their fp16 outputs agree bit for bit. */
__device__ __forceinline__ float rms_scale(const void *x, int xt, int64_t base, int64_t h, bool vec, float eps,
                                           float *part)
{
    float ss = 0.f;
    if (vec) {
        for (int64_t i = 4 * (int64_t)threadIdx.x; i < h; i += 4 * (int64_t)blockDim.x) {
            float4 v = ld4(x, xt, base + i);
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
    } else {
        for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
            float v = ld(x, xt, base + i);
            ss += v * v;
        }
    }
    return rsqrtf(qh_block_sum(ss, part) / (float)h + eps);
}

__device__ __forceinline__ float4 rms_apply4(float4 v, float4 g, float scale)
{
    return make_float4(v.x * scale * g.x, v.y * scale * g.y, v.z * scale * g.z, v.w * scale * g.w);
}

__global__ void rmsnorm_kernel(const void *x, int xt, const void *w, int wt, float eps, void *out, int ot,
                               int64_t h, bool vec)
{
    qh_pdl_trigger(); /* the product after the norm may load its weights meanwhile */
    qh_pdl_wait();    /* launched early itself: x is the kernel before's output */
    __shared__ float part[32];
    int64_t base = (int64_t)blockIdx.x * h;
    float scale = rms_scale(x, xt, base, h, vec, eps, part);
    if (vec) {
        for (int64_t i = 4 * (int64_t)threadIdx.x; i < h; i += 4 * (int64_t)blockDim.x)
            st4(out, ot, base + i, rms_apply4(ld4(x, xt, base + i), ld4(w, wt, i), scale));
    } else {
        for (int64_t i = threadIdx.x; i < h; i += blockDim.x)
            st(out, ot, base + i, ld(x, xt, base + i) * scale * ld(w, wt, i));
    }
}

/* RMSNorm into fp16 plus the LLM.int8() codes and scale of the fp16 row (threshold 0: what
 * i8_rowquant_kernel would compute from out, so the int8 products can skip that pass). Each
 * thread keeps its NV groups of 4 values in registers (rows up to 4 NV blockDim wide). */
template <int NV>
__global__ void rmsnorm_i8_kernel(const void *x, int xt, const void *w, int wt, float eps, void *out, int64_t h,
                                  int8_t *xq, float *sx, int64_t kp)
{
    qh_pdl_trigger();
    qh_pdl_wait();
    __shared__ float part[32];
    int64_t base = (int64_t)blockIdx.x * h;
    float scale = rms_scale(x, xt, base, h, true, eps, part);
    float4 r[NV];
#pragma unroll
    for (int j = 0; j < NV; j++) {
        int64_t i = 4 * ((int64_t)threadIdx.x + (int64_t)j * blockDim.x);
        if (i < h) {
            float4 v = rms_apply4(ld4(x, xt, base + i), ld4(w, wt, i), scale);
            st4(out, QH_CU_F16, base + i, v);
            __half2 a = __floats2half2_rn(v.x, v.y), b = __floats2half2_rn(v.z, v.w); /* the values stored */
            float2 fa = __half22float2(a), fb = __half22float2(b);
            r[j] = make_float4(fa.x, fa.y, fb.x, fb.y);
        }
    }
    /* part is free again: qh_block_sum synchronised */
    qh_i8_row_codes<NV>(r, h, kp, xq + (int64_t)blockIdx.x * kp, sx + blockIdx.x, part);
}

/* ---- SwiGLU: out = silu(gate) * up, fp16, 8 elements per thread ------------------------------ */


__global__ void silu_mul_h8_kernel(const uint4 *gate, const uint4 *up, uint4 *out, int64_t n8)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
        uint4 g = gate[i], u = up[i], o;
        const __half2 *gh = reinterpret_cast<const __half2 *>(&g), *uh = reinterpret_cast<const __half2 *>(&u);
        __half2 *oh = reinterpret_cast<__half2 *>(&o);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float2 a = __half22float2(gh[j]), b = __half22float2(uh[j]);
            oh[j] = __floats2half2_rn(qh_silu_mul(a.x, b.x), qh_silu_mul(a.y, b.y));
        }
        out[i] = o;
    }
}

__global__ void silu_mul_kernel(const void *gate, const void *up, void *out, int type, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        st(out, type, i, qh_silu_mul(ld(gate, type, i), ld(up, type, i)));
}

/* ---- residual add: x += y ------------------------------------------------------------------ */

__global__ void add4_kernel(void *x, int xt, const void *y, int yt, int64_t n4)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
        float4 a = ld4(x, xt, 4 * i), b = ld4(y, yt, 4 * i);
        st4(x, xt, 4 * i, make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w));
    }
}

__global__ void add_kernel(void *x, int xt, const void *y, int yt, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        st(x, xt, i, ld(x, xt, i) + ld(y, yt, i));
}

/* ---- gather rows ----------------------------------------------------------------------------- */

__global__ void gather_kernel(const char *x, int64_t x_rows, int64_t row_bytes, const int32_t *rows, char *out,
                              bool vec, int *err)
{
    int64_t i = blockIdx.x;
    int32_t r = rows[i];
    if (r < 0 || r >= x_rows) {
        if (threadIdx.x == 0) *err = 1;
        return;
    }
    const char *src = x + (int64_t)r * row_bytes;
    char *dst = out + i * row_bytes;
    if (vec) {
        for (int64_t j = threadIdx.x; j < row_bytes / 16; j += blockDim.x)
            reinterpret_cast<uint4 *>(dst)[j] = reinterpret_cast<const uint4 *>(src)[j];
    } else {
        for (int64_t j = threadIdx.x; j < row_bytes; j += blockDim.x) dst[j] = src[j];
    }
}

/* ---- rotary embedding in place (the stand-alone op; attention applies it on the fly) ---------- */

__device__ __forceinline__ float2 rope_cs(const qh_cuda_rope_tab &r, int pos, int i, int half)
{
    if (pos >= 0 && pos < r.n_pos) return r.cs[(int64_t)pos * half + i];
    double a = (double)pos * r.inv_freq[i];
    return make_float2((float)cos(a), (float)sin(a));
}

__global__ void rope_kernel(void *x, int type, int64_t t, int heads, int hd, const int32_t *pos, qh_cuda_rope_tab tab)
{
    int half = hd / 2;
    int64_t pairs = t * heads * half;
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < pairs; j += (int64_t)gridDim.x * blockDim.x) {
        int i = (int)(j % half);
        int64_t rh = j / half, r = rh / heads;
        int64_t v = rh * hd;
        float2 cs = rope_cs(tab, pos[r], i, half);
        float x1 = ld(x, type, v + i), x2 = ld(x, type, v + i + half);
        st(x, type, v + i, x1 * cs.x - x2 * cs.y);
        st(x, type, v + i + half, x2 * cs.x + x1 * cs.y);
    }
}

/* ---- random fill: splitmix64 of (seed, index) -> Box-Muller --------------------------------- */

__device__ __forceinline__ uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__global__ void fill_kernel(void *p, int type, int64_t n, uint64_t seed, float mean, float sd)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = mean;
        if (sd != 0.f) {
            uint64_t a = mix64(seed ^ mix64((uint64_t)i * 2 + 1)), b = mix64(a + 0x9E3779B97F4A7C15ull);
            float u1 = ((a >> 40) + 1) * (1.0f / 16777216.0f), u2 = (b >> 40) * (1.0f / 16777216.0f);
            v = mean + sd * sqrtf(-2.f * logf(u1)) * cospif(2.f * u2);
        }
        st(p, type, i, v);
    }
}

__global__ void convert_kernel(const void *src, int st_, void *dst, int dt, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        st(dst, dt, i, ld(src, st_, i));
}

unsigned grid_for(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    if (b > 132 * 64) b = 132 * 64; /* grid-stride loops: a few waves on the largest GPUs */
    return (unsigned)(b > 0 ? b : 1);
}

} // namespace

extern "C" {

int qh_cu_embed(cudaStream_t s, const void *table, int table_type, int64_t vocab, int64_t h, const int32_t *ids,
                int64_t t, void *out, int out_type, int *err)
{
    bool vec = h % 4 == 0 && ((uintptr_t)table | (uintptr_t)out) % 16 == 0;
    if (t > 0) embed_kernel<<<(unsigned)t, 256, 0, s>>>(table, table_type, vocab, h, ids, out, out_type, vec, err);
    return (int)cudaGetLastError();
}

int qh_cu_rmsnorm(cudaStream_t s, const void *x, int x_type, const void *w, int w_type, float eps, void *out,
                  int out_type, int64_t rows, int64_t h, int8_t *xq, float *sx, int64_t kp)
{
    int threads = h >= 4096 ? 512 : h >= 1024 ? 256 : 128;
    bool vec = h % 4 == 0 && ((uintptr_t)x | (uintptr_t)w | (uintptr_t)out) % 16 == 0;
    if (xq && (out_type != QH_CU_F16 || kp < h)) return (int)cudaErrorInvalidValue;
    if (rows <= 0) return (int)cudaGetLastError();
    const int64_t groups = (h / 4 + threads - 1) / threads; /* groups of 4 per thread */
    if (xq && vec && kp % 4 == 0 && (uintptr_t)xq % 4 == 0 && groups <= 8) {
        unsigned g = (unsigned)rows;
        auto k = groups <= 1   ? rmsnorm_i8_kernel<1>
                 : groups <= 2 ? rmsnorm_i8_kernel<2>
                 : groups <= 4 ? rmsnorm_i8_kernel<4>
                               : rmsnorm_i8_kernel<8>;
        return (int)qh_launch_pdl(k, dim3(g), dim3(threads), 0, s, x, x_type, w, w_type, eps, out, h, xq, sx, kp);
    }
    cudaError_t e = qh_launch_pdl(rmsnorm_kernel, dim3((unsigned)rows), dim3(threads), 0, s, x, x_type, w, w_type, eps,
                                  out, out_type, h, vec);
    if (e != cudaSuccess) return (int)e;
    if (xq) return qh_cu_i8_rowquant(s, out, rows, h, kp, NULL, xq, sx); /* widths the fused kernel does not take */
    return (int)cudaGetLastError();
}

int qh_cu_silu_mul(cudaStream_t s, const void *gate, const void *up, void *out, int type, int64_t n)
{
    bool aligned = ((uintptr_t)gate | (uintptr_t)up | (uintptr_t)out) % 16 == 0;
    if (n <= 0) return (int)cudaGetLastError();
    if (type == QH_CU_F16 && n % 8 == 0 && aligned)
        silu_mul_h8_kernel<<<grid_for(n / 8, 256), 256, 0, s>>>(static_cast<const uint4 *>(gate),
                                                              static_cast<const uint4 *>(up), static_cast<uint4 *>(out), n / 8);
    else
        silu_mul_kernel<<<grid_for(n, 256), 256, 0, s>>>(gate, up, out, type, n);
    return (int)cudaGetLastError();
}

int qh_cu_add(cudaStream_t s, void *x, int x_type, const void *y, int y_type, int64_t n)
{
    bool aligned = ((uintptr_t)x | (uintptr_t)y) % 16 == 0;
    if (n <= 0) return (int)cudaGetLastError();
    if (n % 4 == 0 && aligned)
        add4_kernel<<<grid_for(n / 4, 256), 256, 0, s>>>(x, x_type, y, y_type, n / 4);
    else
        add_kernel<<<grid_for(n, 256), 256, 0, s>>>(x, x_type, y, y_type, n);
    return (int)cudaGetLastError();
}

int qh_cu_gather_rows(cudaStream_t s, const void *x, int64_t x_rows, int64_t row_bytes, const int32_t *rows,
                      int64_t n, void *out, int *err)
{
    bool vec = ((uintptr_t)x | (uintptr_t)out | (uintptr_t)row_bytes) % 16 == 0;
    if (n > 0)
        gather_kernel<<<(unsigned)n, 128, 0, s>>>(static_cast<const char *>(x), x_rows, row_bytes, rows,
                                                  static_cast<char *>(out), vec, err);
    return (int)cudaGetLastError();
}

int qh_cu_rope(cudaStream_t s, void *x, int type, int64_t t, int heads, int head_dim, const int32_t *pos,
               qh_cuda_rope_tab tab)
{
    int64_t pairs = t * heads * (head_dim / 2);
    if (pairs > 0) rope_kernel<<<grid_for(pairs, 256), 256, 0, s>>>(x, type, t, heads, head_dim, pos, tab);
    return (int)cudaGetLastError();
}

int qh_cu_fill(cudaStream_t s, void *p, int type, int64_t n, uint64_t seed, float mean, float sd)
{
    if (n > 0) fill_kernel<<<grid_for(n, 256), 256, 0, s>>>(p, type, n, seed, mean, sd);
    return (int)cudaGetLastError();
}

int qh_cu_convert(cudaStream_t s, const void *src, int src_type, void *dst, int dst_type, int64_t n)
{
    if (n > 0) convert_kernel<<<grid_for(n, 256), 256, 0, s>>>(src, src_type, dst, dst_type, n);
    return (int)cudaGetLastError();
}

} // extern "C"
