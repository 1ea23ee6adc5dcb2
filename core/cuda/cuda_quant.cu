/* Kernels of the CUDA backend for quantized weights (formats in ../quant.h, device layout in
 * ../quant_gpu_plan.h; the host side is cuda_quant.c).
 *
 * int8 (LLM.int8()): the activations are quantized per token by two passes over x (outlier
 * column flags over the whole batch, then one block per row: absmax of the regular columns,
 * codes), multiplied by cuBLASLt's int8 tensor-core kernels into int32, and scaled by
 * i8_epilogue (row scale x column scale, plus the outlier columns' fp16 product, into fp16
 * activations or added to the fp32 residual). Arithmetic and rounding follow
 * ../cpu/cpu_linear_quant.c step by step (explicit _rn intrinsics: no fused multiply-adds), so
 * the same fp32 input gives the same codes.
 *
 * nf4: large batches dequantize the weight to fp16(level * absmax) (nf4_dequant) for
 * cuBLASLt; up to 64 tokens the product reads the 4-bit codes once (cuda_nf4_small.cu). */
#include "cuda_device_math.cuh"
#include "cuda_internal.h"

#include <cuda_fp16.h>
#include <stdint.h>

namespace {

__constant__ float c_levels[16];
__constant__ double c_mids[15];

unsigned grid_for(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    if (b > 132 * 64) b = 132 * 64;
    return (unsigned)(b > 0 ? b : 1);
}

/* ---- int8 activations ------------------------------------------------------------------------ */

template <int V>
__device__ __forceinline__ void load_h(const __half *p, float *v)
{
    if (V == 8) {
        qh_half8_to_float(*reinterpret_cast<const uint4 *>(p), v);
    } else {
        v[0] = __half2float(*p);
    }
}

template <int V>
__global__ void i8_flags_kernel(const __half *x, int64_t t, int64_t k, float thr, unsigned char *flags)
{
    int64_t c = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * V;
    if (c >= k) return;
    unsigned hit = 0;
    for (int64_t r = blockIdx.y; r < t; r += gridDim.y) {
        float v[V];
        load_h<V>(x + r * k + c, v);
#pragma unroll
        for (int j = 0; j < V; j++)
            if (fabsf(v[j]) >= thr) hit |= 1u << j;
    }
    for (int j = 0; j < V; j++)
        if (hit >> j & 1) flags[c + j] = 1;
}

/* One block of 1024 threads: the flagged columns in order. */
__global__ void i8_compact_kernel(const unsigned char *flags, int64_t k, int32_t *idx, int *m_dev, int *m_host,
                                  unsigned long long *stat)
{
    __shared__ int sums[32];
    __shared__ int base;
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (threadIdx.x == 0) base = 0;
    __syncthreads();
    for (int64_t c0 = 0; c0 < k; c0 += 1024) {
        int64_t c = c0 + threadIdx.x;
        int f = c < k && flags[c];
        unsigned b = __ballot_sync(0xffffffffu, f);
        int pre = __popc(b & ((1u << lane) - 1));
        if (lane == 0) sums[wid] = __popc(b);
        __syncthreads();
        if (wid == 0) sums[lane] = qh_warp_incl_scan(sums[lane]); /* of the 32 warp counts */
        __syncthreads();
        if (f) idx[base + (wid ? sums[wid - 1] : 0) + pre] = (int32_t)c;
        __syncthreads();
        if (threadIdx.x == 0) base += sums[31];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        *m_dev = base;
        if (m_host) *(volatile int *)m_host = base;
        if (stat) atomicAdd(&stat[0], (unsigned long long)base), atomicMax(&stat[1], (unsigned long long)base);
    }
}

/* One block per token: absmax of the regular columns, then the codes (as the CPU:
 * inv = 127 / amax, q = rint(x * inv) clamped to [-127, 127], NaN -> 0). */
template <int V>
__global__ void i8_rowquant_kernel(const __half *x, int64_t k, int64_t kp, const unsigned char *flags, int8_t *xq,
                                   float *sx)
{
    __shared__ float sh[32];
    const int64_t r = blockIdx.x;
    const __half *xr = x + r * k;
    float amax = 0.f;
    for (int64_t c = (int64_t)threadIdx.x * V; c < k; c += (int64_t)blockDim.x * V) {
        float v[V];
        load_h<V>(xr + c, v);
#pragma unroll
        for (int j = 0; j < V; j++) {
            float a = fabsf(v[j]);
            if (flags && flags[c + j]) a = 0.f;
            if (a > amax) amax = a;
        }
    }
    amax = qh_block_max(amax, sh);
    const float inv = qh_i8_row_inv(amax);
    if (threadIdx.x == 0) sx[r] = qh_i8_row_scale(amax);
    int8_t *qr = xq + r * kp;
    for (int64_t c = (int64_t)threadIdx.x * V; c < kp; c += (int64_t)blockDim.x * V) {
        float v[V];
        if (c < k) load_h<V>(xr + c, v);
        unsigned skip = c < k ? 0u : 0xffu; /* padding columns and outlier columns get code 0 */
#pragma unroll
        for (int j = 0; j < V; j++)
            if (c < k && flags && flags[c + j]) skip |= 1u << j;
        if (V == 8) *reinterpret_cast<uint2 *>(qr + c) = qh_i8_codes8(v, skip, inv);
        else qr[c] = (int8_t)(skip & 1u ? 0u : qh_i8_code(v[0], inv));
    }
}

/* m_dev non-NULL: m = min(*m_dev, mp), the count read on the device (no host synchronisation). */
__global__ void i8_gather_x_kernel(const __half *x, int64_t t, int64_t k, const int32_t *idx, int m, const int *m_dev,
                                   int mp, __half *xo)
{
    if (m_dev) m = min(*m_dev, mp);
    int64_t n = t * mp;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / mp;
        int j = (int)(i - r * mp);
        xo[i] = j < m ? x[r * k + idx[j]] : __float2half(0.f);
    }
}

__global__ void i8_gather_w_kernel(const int8_t *w, int64_t rows, int64_t kp, const float *scb, const int32_t *idx,
                                   int m, const int *m_dev, int mp, __half *wo)
{
    if (m_dev) m = min(*m_dev, mp);
    int64_t n = rows * mp;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / mp;
        int j = (int)(i - r * mp);
        wo[i] = j < m ? qh_i8_outlier_w(w[r * kp + idx[j]], qh_i8_row_factor(scb[r])) : __float2half_rn(0.f);
    }
}

template <int V, bool F16, bool ACC>
__global__ void i8_epilogue_kernel(const int32_t *acc, int64_t ldc, const float *sx, const float *scb,
                                   const float *extra, const int *extra_if, void *y, int64_t t, int64_t n)
{
    if (extra_if && *extra_if == 0) extra = NULL;
    for (int64_t r = blockIdx.y; r < t; r += gridDim.y) {
        const float s = sx[r];
        for (int64_t c = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * V; c < n;
             c += (int64_t)gridDim.x * blockDim.x * V) {
            float v[V];
            if (V == 4) {
                int4 a = *reinterpret_cast<const int4 *>(acc + r * ldc + c);
                float4 sc = *reinterpret_cast<const float4 *>(scb + c);
                v[0] = qh_i8_dequant(a.x, s, sc.x);
                v[1] = qh_i8_dequant(a.y, s, sc.y);
                v[2] = qh_i8_dequant(a.z, s, sc.z);
                v[3] = qh_i8_dequant(a.w, s, sc.w);
                if (extra) {
                    float4 e = *reinterpret_cast<const float4 *>(extra + r * n + c);
                    v[0] = __fadd_rn(v[0], e.x), v[1] = __fadd_rn(v[1], e.y);
                    v[2] = __fadd_rn(v[2], e.z), v[3] = __fadd_rn(v[3], e.w);
                }
            } else {
                v[0] = qh_i8_dequant(acc[r * ldc + c], s, scb[c]);
                if (extra) v[0] = __fadd_rn(v[0], extra[r * n + c]);
            }
            if (F16) {
                __half *yp = static_cast<__half *>(y) + r * n + c;
                if (V == 4) {
                    uint2 u = *reinterpret_cast<uint2 *>(yp);
                    __half2 *h = reinterpret_cast<__half2 *>(&u);
                    if (ACC) {
                        float2 a = __half22float2(h[0]), b = __half22float2(h[1]);
                        v[0] += a.x, v[1] += a.y, v[2] += b.x, v[3] += b.y;
                    }
                    h[0] = __floats2half2_rn(v[0], v[1]);
                    h[1] = __floats2half2_rn(v[2], v[3]);
                    *reinterpret_cast<uint2 *>(yp) = u;
                } else {
                    *yp = __float2half_rn(ACC ? __half2float(*yp) + v[0] : v[0]);
                }
            } else {
                float *yp = static_cast<float *>(y) + r * n + c;
                if (V == 4) {
                    float4 o = make_float4(v[0], v[1], v[2], v[3]);
                    if (ACC) {
                        float4 a = *reinterpret_cast<float4 *>(yp);
                        o.x += a.x, o.y += a.y, o.z += a.z, o.w += a.w;
                    }
                    *reinterpret_cast<float4 *>(yp) = o;
                } else {
                    *yp = ACC ? *yp + v[0] : v[0];
                }
            }
        }
    }
}

__global__ void div127_kernel(const float *v, float *f, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        f[i] = qh_div127(v[i]);
}

/* The outlier columns j0 .. m-1 (m = *m_dev, read here: no host synchronisation) of a batch of
 * at most OUTLIER_SMALL_T tokens on CUDA cores: out[r, c] (=, or += when add) sum_j x[r, idx[j]]
 * * fp16(w[c, idx[j]] * f[c]), f = SCB / 127, the values the gathered fp16 product multiplies.
 * Block: 64 output columns x every token, 32 columns of x and w at a time through shared memory;
 * each thread sums 16 tokens of one column. Nothing to do (m <= j0): returns at once. */
constexpr int OUTLIER_SMALL_T = 64;

__global__ void __launch_bounds__(256) i8_outlier_small_kernel(const __half *x, int64_t k, const int32_t *idx,
                                                                const int *m_dev, int j0, const int8_t *w, int64_t kp,
                                                                const float *f, float *out, int64_t t, int64_t n, bool add)
{
    const int m = *m_dev;
    if (m <= j0) return;
    __shared__ float xs[OUTLIER_SMALL_T][33], ws[64][33];
    __shared__ int ids[32];
    const int tid = threadIdx.x, col = tid & 63, r0 = tid >> 6;
    const int64_t c0 = (int64_t)blockIdx.x * 64;
    float acc[16];
#pragma unroll
    for (int i = 0; i < 16; i++) acc[i] = 0.f;
    for (int jb = j0; jb < m; jb += 32) {
        const int nj = min(32, m - jb);
        if (tid < 32) ids[tid] = tid < nj ? idx[jb + tid] : 0;
        __syncthreads();
        for (int i = tid; i < OUTLIER_SMALL_T * 32; i += 256) {
            const int r = i >> 5, j = i & 31;
            xs[r][j] = r < t && j < nj ? __half2float(x[r * k + ids[j]]) : 0.f;
        }
        for (int i = tid; i < 64 * 32; i += 256) {
            const int cc = i >> 5, j = i & 31;
            const int64_t c = c0 + cc;
            ws[cc][j] = c < n && j < nj ? __half2float(qh_i8_outlier_w(w[c * kp + ids[j]], f[c])) : 0.f;
        }
        __syncthreads();
#pragma unroll 8
        for (int j = 0; j < 32; j++) {
            const float wv = ws[col][j];
#pragma unroll
            for (int i = 0; i < 16; i++) acc[i] = __fmaf_rn(xs[r0 + 4 * i][j], wv, acc[i]);
        }
        __syncthreads();
    }
    const int64_t c = c0 + col;
    if (c >= n) return;
#pragma unroll
    for (int i = 0; i < 16; i++) {
        const int64_t r = r0 + 4 * i;
        if (r < t) out[r * n + c] = add ? out[r * n + c] + acc[i] : acc[i];
    }
}

/* acc[r, col] for col < n: 16 codes per step, four dp4a. */
__global__ void i8_gemm_simple_kernel(const int8_t *w, const int8_t *xq, int32_t *acc, int64_t n, int64_t kp, int64_t t,
                                      int64_t ldc)
{
    int64_t col = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= n) return;
    const int4 *b = reinterpret_cast<const int4 *>(w + col * kp);
    for (int64_t r = blockIdx.y; r < t; r += gridDim.y) {
        const int4 *a = reinterpret_cast<const int4 *>(xq + r * kp);
        int s = 0;
        for (int64_t i = 0; i < kp / 16; i++) {
            int4 u = a[i], v = b[i];
            s = __dp4a(u.x, v.x, s);
            s = __dp4a(u.y, v.y, s);
            s = __dp4a(u.z, v.z, s);
            s = __dp4a(u.w, v.w, s);
        }
        acc[r * ldc + col] = s;
    }
}

/* ---- nf4 ---------------------------------------------------------------------------------------- */

__device__ __forceinline__ unsigned nf4_pair(const float *lv, unsigned byte, float a)
{
    __half2 h = __floats2half2_rn(__fmul_rn(lv[byte >> 4], a), __fmul_rn(lv[byte & 15], a));
    return *reinterpret_cast<unsigned *>(&h);
}

/* VEC: 8 values (4 code bytes, one 16-byte store: consecutive threads write consecutive
 * bytes) per step, blocksize a power of two >= 8, n a multiple of 8. Otherwise one value per
 * step. */
template <bool VEC>
__global__ void nf4_dequant_kernel(qh_cu_nf4 w, int64_t first, int64_t n, __half *out)
{
    __shared__ float lv[16];
    if (threadIdx.x < 16) lv[threadIdx.x] = c_levels[threadIdx.x];
    __syncthreads();
    if (VEC) {
        const uint32_t *cw = reinterpret_cast<const uint32_t *>(w.codes + first / 2);
        uint4 *o4 = reinterpret_cast<uint4 *>(out);
        for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n / 8; i += (int64_t)gridDim.x * blockDim.x) {
            const uint32_t u = __ldcs(cw + i);
            const float a = qh_nf4_scale(w, (first + i * 8) >> w.blocksize_shift);
            uint4 o;
            o.x = nf4_pair(lv, u & 0xff, a);
            o.y = nf4_pair(lv, (u >> 8) & 0xff, a);
            o.z = nf4_pair(lv, (u >> 16) & 0xff, a);
            o.w = nf4_pair(lv, u >> 24, a);
            o4[i] = o;
        }
    } else {
        for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
            const int64_t e = first + i;
            unsigned b = w.codes[e >> 1], c = (e & 1) ? (b & 15) : (b >> 4);
            out[i] = __float2half_rn(__fmul_rn(lv[c], qh_nf4_scale(w, e / w.blocksize)));
        }
    }
}

/* ---- int8 SwiGLU: both products' epilogues and silu(g) * u in one pass ------------------------ */

/* i8_epilogue's value, rounded to fp16 as its output would be */
__device__ __forceinline__ float i8_scaled_h(int32_t a, float s, float sc)
{
    return qh_round_h(qh_i8_dequant(a, s, sc));
}

/* Four SwiGLU outputs from both products' int32 sums, as fp16 (packed). */
__device__ __forceinline__ uint2 i8_swiglu4(int4 a, int4 b, float s, float4 sg, float4 su)
{
    __half2 h[2];
    h[0] = __floats2half2_rn(qh_silu_mul(i8_scaled_h(a.x, s, sg.x), i8_scaled_h(b.x, s, su.x)),
                             qh_silu_mul(i8_scaled_h(a.y, s, sg.y), i8_scaled_h(b.y, s, su.y)));
    h[1] = __floats2half2_rn(qh_silu_mul(i8_scaled_h(a.z, s, sg.z), i8_scaled_h(b.z, s, su.z)),
                             qh_silu_mul(i8_scaled_h(a.w, s, sg.w), i8_scaled_h(b.w, s, su.w)));
    return *reinterpret_cast<uint2 *>(h);
}

template <int V>
__global__ void i8_swiglu_kernel(const int32_t *acc_g, const int32_t *acc_u, int64_t ldc, const float *sx,
                                 const float *scb_g, const float *scb_u, __half *out, int64_t t, int64_t n)
{
    for (int64_t r = blockIdx.y; r < t; r += gridDim.y) {
        const float s = sx[r];
        for (int64_t c = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * V; c < n;
             c += (int64_t)gridDim.x * blockDim.x * V) {
            if (V == 4) {
                int4 a = *reinterpret_cast<const int4 *>(acc_g + r * ldc + c);
                int4 b = *reinterpret_cast<const int4 *>(acc_u + r * ldc + c);
                float4 sg = *reinterpret_cast<const float4 *>(scb_g + c);
                float4 su = *reinterpret_cast<const float4 *>(scb_u + c);
                uint2 h = i8_swiglu4(a, b, s, sg, su);
                *reinterpret_cast<uint2 *>(out + r * n + c) = h;
            } else {
                float g = i8_scaled_h(acc_g[r * ldc + c], s, scb_g[c]), u = i8_scaled_h(acc_u[r * ldc + c], s, scb_u[c]);
                out[r * n + c] = __float2half_rn(qh_silu_mul(g, u));
            }
        }
    }
}

/* i8_swiglu_kernel's output, plus the LLM.int8() codes and scale of each fp16 row (threshold 0)
 * for the down_proj product: one block per row, each thread keeping its NV groups of 4 in
 * registers. sx holds the gate/up input's scales on entry and the output's on return (each block
 * reads its row's before the block-wide max, writes it after); xq's rows are kp apart. */
/* Threads per row: measured on the H100 (7B, 11008 wide: NV 8) at 575 ms per 12,284-tweet pass
 * against 615 (512), 647 (256), 755 (768) and 710 (1024), bench/NOTES.md. */
constexpr int SWIGLU_CODES_THREADS = 384;

template <int NV>
__global__ void i8_swiglu_codes_kernel(const int32_t *acc_g, const int32_t *acc_u, int64_t ldc, float *sx,
                                       const float *scb_g, const float *scb_u, __half *out, int64_t n, int8_t *xq,
                                       int64_t kp)
{
    __shared__ float part[32];
    const int64_t r = blockIdx.x;
    const float s = sx[r]; /* read by every thread before qh_i8_row_codes' barrier, written after */
    uint2 h[NV];
#pragma unroll
    for (int j = 0; j < NV; j++) {
        int64_t c = 4 * ((int64_t)threadIdx.x + (int64_t)j * blockDim.x);
        if (c < n) {
            int4 a = *reinterpret_cast<const int4 *>(acc_g + r * ldc + c);
            int4 b = *reinterpret_cast<const int4 *>(acc_u + r * ldc + c);
            h[j] = i8_swiglu4(a, b, s, *reinterpret_cast<const float4 *>(scb_g + c),
                              *reinterpret_cast<const float4 *>(scb_u + c));
            *reinterpret_cast<uint2 *>(out + r * n + c) = h[j];
        }
    }
    qh_i8_row_codes<NV>(h, n, kp, xq + r * kp, sx + r, part);
}

/* ---- quantizers (bench and test helpers) -------------------------------------------------- */

__global__ void i8_quantize_kernel(const __half *w, int64_t k, int64_t kp, int8_t *q, float *scb)
{
    __shared__ float sh[32];
    const int64_t r = blockIdx.x;
    const __half *wr = w + r * k;
    float amax = 0.f;
    for (int64_t c = threadIdx.x; c < k; c += blockDim.x) {
        float a = fabsf(__half2float(wr[c]));
        if (a > amax) amax = a;
    }
    amax = qh_block_max(amax, sh);
    if (threadIdx.x == 0) scb[r] = amax;
    for (int64_t c = threadIdx.x; c < k; c += blockDim.x) {
        double v = amax > 0.f ? rint(__ddiv_rn(__dmul_rn((double)__half2float(wr[c]), 127.0), (double)amax)) : 0.0;
        q[r * kp + c] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
}

__device__ __forceinline__ int nf4_code(float v, float amax)
{
    double xv = __ddiv_rn((double)v, (double)amax);
    int c = 0;
#pragma unroll
    for (int i = 0; i < 15; i++) c += xv > c_mids[i];
    return c;
}

/* One warp per block of blocksize values. */
__global__ void nf4_quantize_kernel(const __half *w, int64_t n, int bs, uint8_t *codes, float *absmax)
{
    const int64_t b = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    const int64_t nb = (n + bs - 1) / bs;
    if (b >= nb) return;
    const int64_t i0 = b * bs, len = n - i0 < bs ? n - i0 : bs;
    float amax = 0.f;
    for (int64_t j = lane; j < len; j += 32) {
        float a = fabsf(__half2float(w[i0 + j]));
        if (a > amax) amax = a;
    }
    amax = qh_warp_max(amax);
    if (lane == 0) absmax[b] = amax;
    for (int64_t j = 2 * lane; j < len; j += 64) {
        int c0 = amax > 0.f ? nf4_code(__half2float(w[i0 + j]), amax) : 7;
        int c1 = j + 1 >= len ? 0 : amax > 0.f ? nf4_code(__half2float(w[i0 + j + 1]), amax) : 7;
        codes[(i0 + j) / 2] = (uint8_t)(c0 << 4 | c1);
    }
}

} // namespace

extern "C" {

int qh_cu_quant_init(cudaStream_t s, const float levels[16], const double mids[15])
{
    cudaMemcpyToSymbolAsync(c_levels, levels, sizeof(float) * 16, 0, cudaMemcpyHostToDevice, s);
    cudaMemcpyToSymbolAsync(c_mids, mids, sizeof(double) * 15, 0, cudaMemcpyHostToDevice, s);
    return (int)cudaGetLastError();
}

int qh_cu_i8_flags(cudaStream_t s, const void *x, int64_t t, int64_t k, float thr, unsigned char *flags)
{
    if (t <= 0 || k <= 0) return (int)cudaGetLastError();
    const bool vec = k % 8 == 0 && (uintptr_t)x % 16 == 0;
    const int threads = 128, v = vec ? 8 : 1;
    unsigned gx = (unsigned)((k / v + threads - 1) / threads);
    int64_t gy = 2048 / (int64_t)gx;
    if (gy < 1) gy = 1;
    if (gy > t) gy = t;
    if (gy > 65535) gy = 65535;
    dim3 grid(gx, (unsigned)gy);
    const __half *xh = static_cast<const __half *>(x);
    if (vec) i8_flags_kernel<8><<<grid, threads, 0, s>>>(xh, t, k, thr, flags);
    else i8_flags_kernel<1><<<grid, threads, 0, s>>>(xh, t, k, thr, flags);
    return (int)cudaGetLastError();
}

int qh_cu_i8_compact(cudaStream_t s, const unsigned char *flags, int64_t k, int32_t *idx, int *m_dev, int *m_host,
                     unsigned long long *stat)
{
    i8_compact_kernel<<<1, 1024, 0, s>>>(flags, k, idx, m_dev, m_host, stat);
    return (int)cudaGetLastError();
}

int qh_cu_i8_rowquant(cudaStream_t s, const void *x, int64_t t, int64_t k, int64_t kp, const unsigned char *flags,
                      int8_t *xq, float *sx)
{
    if (t <= 0) return (int)cudaGetLastError();
    const bool vec = k % 8 == 0 && kp % 8 == 0 && (uintptr_t)x % 16 == 0 && (uintptr_t)xq % 8 == 0;
    const int threads = k >= 4096 ? 256 : 128;
    const __half *xh = static_cast<const __half *>(x);
    if (vec) i8_rowquant_kernel<8><<<(unsigned)t, threads, 0, s>>>(xh, k, kp, flags, xq, sx);
    else i8_rowquant_kernel<1><<<(unsigned)t, threads, 0, s>>>(xh, k, kp, flags, xq, sx);
    return (int)cudaGetLastError();
}

int qh_cu_i8_gather_x(cudaStream_t s, const void *x, int64_t t, int64_t k, const int32_t *idx, int m,
                      const int *m_dev, int mp, void *xo)
{
    if (t > 0 && mp > 0)
        i8_gather_x_kernel<<<grid_for(t * mp, 256), 256, 0, s>>>(static_cast<const __half *>(x), t, k, idx, m, m_dev,
                                                                mp, static_cast<__half *>(xo));
    return (int)cudaGetLastError();
}

int qh_cu_i8_gather_w(cudaStream_t s, const int8_t *w, int64_t n, int64_t kp, const float *scb, const int32_t *idx,
                      int m, const int *m_dev, int mp, void *wo)
{
    if (n > 0 && mp > 0)
        i8_gather_w_kernel<<<grid_for(n * mp, 256), 256, 0, s>>>(w, n, kp, scb, idx, m, m_dev, mp,
                                                                static_cast<__half *>(wo));
    return (int)cudaGetLastError();
}

int qh_cu_i8_epilogue(cudaStream_t s, const int32_t *acc, int64_t ldc, const float *sx, const float *scb,
                      const float *extra, const int *extra_if, void *y, int y_type, int accumulate, int64_t t,
                      int64_t n)
{
    if (t <= 0 || n <= 0) return (int)cudaGetLastError();
    const bool vec = n % 4 == 0 && ldc % 4 == 0 && ((uintptr_t)acc | (uintptr_t)scb | (uintptr_t)extra) % 16 == 0 &&
                     (uintptr_t)y % (y_type == QH_CU_F32 ? 16 : 8) == 0;
    const int v = vec ? 4 : 1, threads = 256;
    int64_t gx = (n / v + threads - 1) / threads;
    if (gx > 64) gx = 64;
    int64_t gy = t < 65535 ? t : 65535;
    dim3 grid((unsigned)gx, (unsigned)gy);
    const bool f16 = y_type == QH_CU_F16;
#define EPI(V, F, A) i8_epilogue_kernel<V, F, A><<<grid, threads, 0, s>>>(acc, ldc, sx, scb, extra, extra_if, y, t, n)
    if (vec && f16 && accumulate) EPI(4, true, true);
    else if (vec && f16) EPI(4, true, false);
    else if (vec && accumulate) EPI(4, false, true);
    else if (vec) EPI(4, false, false);
    else if (f16 && accumulate) EPI(1, true, true);
    else if (f16) EPI(1, true, false);
    else if (accumulate) EPI(1, false, true);
    else EPI(1, false, false);
#undef EPI
    return (int)cudaGetLastError();
}

int qh_cu_div127(cudaStream_t s, const float *v, float *f, int64_t n)
{
    if (n > 0) div127_kernel<<<(unsigned)((n + 255) / 256 < 1024 ? (n + 255) / 256 : 1024), 256, 0, s>>>(v, f, n);
    return (int)cudaGetLastError();
}

int qh_cu_i8_outlier_small(cudaStream_t s, const void *x, int64_t k, const int32_t *idx, const int *m_dev, int j0,
                           const int8_t *w, int64_t kp, const float *f, float *out, int64_t t, int64_t n, int add)
{
    if (t > OUTLIER_SMALL_T) return (int)cudaErrorInvalidValue;
    if (t > 0 && n > 0)
        i8_outlier_small_kernel<<<(unsigned)((n + 63) / 64), 256, 0, s>>>(static_cast<const __half *>(x), k, idx, m_dev,
                                                                         j0, w, kp, f, out, t, n, add != 0);
    return (int)cudaGetLastError();
}

int qh_cu_i8_swiglu(cudaStream_t s, const int32_t *acc_g, const int32_t *acc_u, int64_t ldc, const float *sx,
                    const float *scb_g, const float *scb_u, void *out, int64_t t, int64_t n)
{
    if (t <= 0 || n <= 0) return (int)cudaGetLastError();
    const bool vec = n % 4 == 0 && ldc % 4 == 0 &&
                     ((uintptr_t)acc_g | (uintptr_t)acc_u | (uintptr_t)scb_g | (uintptr_t)scb_u) % 16 == 0 &&
                     (uintptr_t)out % 8 == 0;
    const int v = vec ? 4 : 1, threads = 256;
    int64_t gx = (n / v + threads - 1) / threads;
    if (gx > 64) gx = 64;
    dim3 grid((unsigned)gx, (unsigned)(t < 65535 ? t : 65535));
    __half *o = static_cast<__half *>(out);
    if (vec) i8_swiglu_kernel<4><<<grid, threads, 0, s>>>(acc_g, acc_u, ldc, sx, scb_g, scb_u, o, t, n);
    else i8_swiglu_kernel<1><<<grid, threads, 0, s>>>(acc_g, acc_u, ldc, sx, scb_g, scb_u, o, t, n);
    return (int)cudaGetLastError();
}

int qh_cu_i8_swiglu_codes(cudaStream_t s, const int32_t *acc_g, const int32_t *acc_u, int64_t ldc, float *sx,
                          const float *scb_g, const float *scb_u, void *out, int64_t t, int64_t n, int8_t *xq,
                          int64_t kp)
{
    const int threads = SWIGLU_CODES_THREADS;
    const int64_t groups = (n / 4 + threads - 1) / threads;
    if (!qh_cu_i8_swiglu_codes_ok(acc_g, acc_u, ldc, scb_g, scb_u, out, n, xq, kp)) return (int)cudaErrorInvalidValue;
    if (t <= 0) return (int)cudaGetLastError();
    __half *o = static_cast<__half *>(out);
    unsigned g = (unsigned)t;
    if (groups <= 2) i8_swiglu_codes_kernel<2><<<g, threads, 0, s>>>(acc_g, acc_u, ldc, sx, scb_g, scb_u, o, n, xq, kp);
    else if (groups <= 4) i8_swiglu_codes_kernel<4><<<g, threads, 0, s>>>(acc_g, acc_u, ldc, sx, scb_g, scb_u, o, n, xq, kp);
    else i8_swiglu_codes_kernel<8><<<g, threads, 0, s>>>(acc_g, acc_u, ldc, sx, scb_g, scb_u, o, n, xq, kp);
    return (int)cudaGetLastError();
}

int qh_cu_i8_swiglu_codes_ok(const int32_t *acc_g, const int32_t *acc_u, int64_t ldc, const float *scb_g,
                             const float *scb_u, const void *out, int64_t n, const int8_t *xq, int64_t kp)
{
    return n > 0 && n % 4 == 0 && ldc % 4 == 0 && kp % 4 == 0 && kp >= n &&
           (n / 4 + SWIGLU_CODES_THREADS - 1) / SWIGLU_CODES_THREADS <= 8 &&
           ((uintptr_t)acc_g | (uintptr_t)acc_u | (uintptr_t)scb_g | (uintptr_t)scb_u) % 16 == 0 &&
           (uintptr_t)out % 8 == 0 && (uintptr_t)xq % 4 == 0;
}

int qh_cu_i8_gemm_simple(cudaStream_t s, const int8_t *w, const int8_t *xq, int32_t *acc, int64_t n, int64_t kp,
                         int64_t t, int64_t ldc)
{
    if (t <= 0 || n <= 0) return (int)cudaGetLastError();
    dim3 grid((unsigned)((n + 127) / 128), (unsigned)(t < 65535 ? t : 65535));
    i8_gemm_simple_kernel<<<grid, 128, 0, s>>>(w, xq, acc, n, kp, t, ldc);
    return (int)cudaGetLastError();
}

int qh_cu_nf4_dequant(cudaStream_t s, qh_cu_nf4 w, int64_t first, int64_t n, void *out)
{
    if (n <= 0) return (int)cudaGetLastError();
    const bool vec = n % 8 == 0 && first % 8 == 0 && w.blocksize_shift >= 3 && (uintptr_t)w.codes % 4 == 0 &&
                     (uintptr_t)out % 16 == 0;
    __half *o = static_cast<__half *>(out);
    if (vec) nf4_dequant_kernel<true><<<grid_for(n / 8, 256), 256, 0, s>>>(w, first, n, o);
    else nf4_dequant_kernel<false><<<grid_for(n, 256), 256, 0, s>>>(w, first, n, o);
    return (int)cudaGetLastError();
}

int qh_cu_i8_quantize(cudaStream_t s, const void *w, int64_t rows, int64_t k, int64_t kp, int8_t *q, float *scb)
{
    if (rows > 0) i8_quantize_kernel<<<(unsigned)rows, 256, 0, s>>>(static_cast<const __half *>(w), k, kp, q, scb);
    return (int)cudaGetLastError();
}

int qh_cu_nf4_quantize(cudaStream_t s, const void *w, int64_t n, int blocksize, uint8_t *codes, float *absmax)
{
    int64_t nb = (n + blocksize - 1) / blocksize;
    if (nb > 0)
        nf4_quantize_kernel<<<(unsigned)((nb + 7) / 8), 256, 0, s>>>(static_cast<const __half *>(w), n, blocksize,
                                                                     codes, absmax);
    return (int)cudaGetLastError();
}

} // extern "C"
