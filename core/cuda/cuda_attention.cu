/* Causal attention over packed variable-length sequences, fp16 in and out, fp32 softmax.
 *
 * Sequence s owns rows starts[s] .. starts[s+1]-1; nothing is padded in memory. Rotary
 * embedding of q and k is applied once they are loaded (so the model never writes rotated q
 * and k back): in the tensor-core kernel with the SFU's sin/cos for angles up to 300 rad (error
 * ~4e-5, far below the fp16 rounding that follows), else, and in the simple kernel, from a
 * (cos, sin) table computed on the host in double like the CPU backend.
 *
 * Two kernels:
 *  - attn_tc (the default): one block per (sequence, head, up to 64 query rows), a warp per 16
 *    query rows. Q, and the keys/values in tiles of up to 64 rows, go to shared memory (16-byte
 *    asynchronous copies) and are rotated there, each angle once; S = Q K^T and O = P V run on
 *    tensor cores (mma.sync m16n8k16, fp32 accumulation) with S, P and O held in registers in
 *    the mma's fragment layout, so the softmax needs no shared memory and no barrier (online
 *    across key tiles: a running row maximum, the sums and O rescaled when it grows). P is
 *    rounded to fp16 for its product, as any fp16 flash attention does. Needs head_dim 16, 32,
 *    64 or 128 (the O accumulators of 256 would not fit the registers).
 *  - attn_simple: one warp per (query row, head), online softmax over the keys one at a time,
 *    fp32 throughout. The plain reference (tests compare the two), the fallback for other
 *    head sizes, and the kernel of the fp32 mode (qh_cuda_set_precision).
 *
 * Why not cuDNN's fused attention (measured: bench/bench_attention.c, with cuDNN 9.19 as PyTorch
 * calls it, bench/NOTES.md): on a 12,288-token micro-batch of 16-, 30- or 48-token sequences
 * (TweetEval's bulk) attn_tc with the rotation inside takes 175-191 us, cuDNN's attention alone
 * 545, 293 and 189 us, and it cannot rotate, so the model would add a rotary pass (at least 134
 * us: q and k read and written once). At 64 tokens cuDNN's attention alone is faster (146 us
 * against 198) but not with the rotary pass; at 88 (two key tiles here) it would win with a
 * rotary pass at its floor (271 against 322 us), but 0.3% of the tweets are longer than 64. At
 * batch 1 (one 30-token tweet): 9 us against 27. */
#include "cuda_device_math.cuh"
#include "cuda_internal.h"

#include <cuda_fp16.h>
#include <math.h>

namespace {

constexpr int NW_MAX = 4;       /* warps per block: 16 query rows each */
constexpr int KT_MAX = 64;      /* keys per tile */

__device__ __forceinline__ float2 rope_cs(const qh_cuda_rope_tab &r, int pos, int i, int half)
{
    if (pos >= 0 && pos < r.n_pos) return r.cs[(int64_t)pos * half + i];
    double a = (double)pos * r.inv_freq[i];
    return make_float2((float)cos(a), (float)sin(a));
}

__device__ __forceinline__ void cp_async_wait_all()
{
    qh_cp_async_commit();
    qh_cp_async_wait<0>();
}

/* Rows [row0, row0 + nvalid) of one head (src points at the head's first column, rows ld
 * elements apart) into dst[r][0..hd) (rows dld apart) with asynchronous 16-byte copies, so a
 * thread has all its loads in flight at once; rows nvalid .. ncap-1 are zeroed. hd % 8 == 0. */
__device__ __forceinline__ void rows_async(__half *dst, int dld, const __half *src, int64_t ld, int64_t row0,
                                           int nvalid, int ncap, int hd)
{
    const int units = hd / 8;
    for (int idx = threadIdx.x; idx < ncap * units; idx += blockDim.x) {
        int r = idx / units, c = (idx - r * units) * 8;
        if (r < nvalid) qh_cp_async16(dst + r * dld + c, src + (row0 + r) * ld + c);
        else *reinterpret_cast<uint4 *>(dst + r * dld + c) = make_uint4(0, 0, 0, 0);
    }
}

/* (cos, sin) of angle pos * inv_freq[i]. Angles up to 300 rad (every position below 300, so
 * every tweet) use the SFU's sin/cos (absolute error <= 2^-20.9 on [-100 pi, 100 pi], plus
 * ~4e-5 from forming the angle in fp32: far below the fp16 rounding of the result); larger ones
 * the exact table / double path. invf: inv_freq in fp32 (shared memory). */
__device__ __forceinline__ float2 rope_cs_fast(const qh_cuda_rope_tab &r, const float *invf, int pos, int i, int half)
{
    float a = (float)pos * invf[i];
    if (pos >= 0 && a <= 300.f) {
        float sn, cn;
        __sincosf(a, &sn, &cn);
        return make_float2(cn, sn);
    }
    return rope_cs(r, pos, i, half);
}

__host__ __device__ constexpr int align128(int bytes) { return (bytes + 127) & ~127; }

struct TcLayout {
    int ldh, q_off, k_off, v_off, pos_off, inv_off, bytes;
};

/* Shared memory of a block of qb query rows with key tiles of kt rows: Q, K and V (fp16, rows
 * ldh halves apart: 16-byte aligned rows whose 8-row groups hit all 32 banks, so ldmatrix runs
 * without conflicts), the positions of the Q rows and the tile's keys, inv_freq in fp32. */
__host__ __device__ inline TcLayout tc_layout(int hd, int qb, int kt)
{
    TcLayout L;
    L.ldh = hd + 8;
    L.q_off = 0;
    L.k_off = L.q_off + align128(qb * L.ldh * 2);
    L.v_off = L.k_off + align128(kt * L.ldh * 2);
    L.pos_off = L.v_off + align128(kt * L.ldh * 2);
    L.inv_off = L.pos_off + align128((qb + kt) * 4);
    L.bytes = L.inv_off + align128(hd / 2 * 4);
    return L;
}

/* Rotary embedding, in shared memory, of the tile's nk key rows (tokens kt0 ..) and, when
 * q_pending, of the block's nq query rows (tokens q0 ..). A query row whose token is also in the
 * tile is rotated by the same work item as the key row, with the same (cos, sin): for a tweet
 * (one tile, q0 = kt0 = 0) every angle is computed once. 8 pairs per work item. hd % 16 == 0. */
__device__ __forceinline__ void rope_tile(__half *Q, int nq, int q0, const int *pq, __half *K, int nk, int kt0,
                                          const int *pk, bool q_pending, int ldx, int hd, const float *invf,
                                          const qh_cuda_rope_tab &tab)
{
    const int half = hd / 2, groups = half / 8;
    /* query rows sharing a token with the tile: [ov_lo, ov_hi) (query-row indices) */
    const int ov_lo = q_pending ? max(0, kt0 - q0) : 0;
    const int ov_hi = q_pending ? max(ov_lo, min(nq, kt0 + nk - q0)) : 0;
    const int extra = q_pending ? nq - (ov_hi - ov_lo) : 0; /* query rows rotated on their own */
    const int total = (nk + extra) * groups;
    for (int idx = threadIdx.x; idx < total; idx += blockDim.x) {
        int r = idx / groups, g = (idx - r * groups) * 8;
        __half *x0, *x1 = nullptr;
        int p;
        if (r < nk) {
            x0 = K + r * ldx, p = pk[r];
            int qr = kt0 + r - q0;
            if (qr >= ov_lo && qr < ov_hi) x1 = Q + qr * ldx;
        } else {
            int e = r - nk, qr = e < ov_lo ? e : e + (ov_hi - ov_lo);
            x0 = Q + qr * ldx, p = pq[qr];
        }
        float2 cs[8];
#pragma unroll
        for (int j = 0; j < 8; j++) cs[j] = rope_cs_fast(tab, invf, p, g + j, half);
        for (int w = 0; w < 2; w++) {
            __half *x = w ? x1 : x0;
            if (!x) break;
            uint4 a = *reinterpret_cast<uint4 *>(x + g), b = *reinterpret_cast<uint4 *>(x + g + half);
            __half2 *ah = reinterpret_cast<__half2 *>(&a), *bh = reinterpret_cast<__half2 *>(&b);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float2 fa = __half22float2(ah[j]), fb = __half22float2(bh[j]);
                float2 c0 = cs[2 * j], c1 = cs[2 * j + 1];
                ah[j] = __floats2half2_rn(fa.x * c0.x - fb.x * c0.y, fa.y * c1.x - fb.y * c1.y);
                bh[j] = __floats2half2_rn(fb.x * c0.x + fa.x * c0.y, fb.y * c1.x + fa.y * c1.y);
            }
            *reinterpret_cast<uint4 *>(x + g) = a;
            *reinterpret_cast<uint4 *>(x + g + half) = b;
        }
    }
}

/* pos[row0 .. row0 + n) into shared memory (plain loads: they overlap the async copies). */
__device__ __forceinline__ void positions(int *dst, const int32_t *pos, int64_t row0, int n)
{
    for (int r = threadIdx.x; r < n; r += blockDim.x) dst[r] = pos[row0 + r];
}

__device__ __forceinline__ unsigned pack_half2(float lo, float hi)
{
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<unsigned *>(&h);
}

/* Block = (sequence, head, 16 * warps query rows); blockDim.x = 32 * warps; grid (n_seqs *
 * n_heads, query blocks). Each warp owns 16 query rows: S = Q K^T and O = P V on tensor cores
 * (mma.sync m16n8k16, fp32 accumulation) with S, P and O in registers, in the mma's fragment
 * layout (thread: rows lane / 4 and lane / 4 + 8, columns 2 (lane % 4) + {0, 1} of each 8-column
 * group), softmax online across key tiles. */
template <int HD>
__global__ void __launch_bounds__(32 * NW_MAX) attn_tc(const __half *__restrict__ q, const __half *__restrict__ k,
                                                       const __half *__restrict__ v, __half *__restrict__ out,
                                                       const int32_t *__restrict__ starts,
                                                       const int32_t *__restrict__ pos, int n_heads, int n_kv, int kt,
                                                       float scale_log2, bool rope, qh_cuda_rope_tab tab)
{
    qh_pdl_trigger(); /* the o_proj product may load its weights meanwhile */
    qh_pdl_wait();    /* launched early itself: q, k, v are the kernel before's output */
    constexpr int KS = HD / 16;    /* k-steps of S = Q K^T */
    constexpr int DN = HD / 8;     /* 8-column groups of O */
    constexpr int SN = 4;          /* 8-key groups of S held at once: 32 keys */
    extern __shared__ __align__(128) unsigned char smem[];
    const int QB = 16 * (int)(blockDim.x >> 5);
    /* heads of one sequence in consecutive blocks: blocks running together read whole rows */
    const int s = blockIdx.x / n_heads, h = blockIdx.x - s * n_heads;
    const int base = starts[s], len = starts[s + 1] - base;
    const int q0 = blockIdx.y * QB;
    if (q0 >= len) return;
    const int qn = min(QB, len - q0), q_hi = q0 + qn;
    const int kvh = h / (n_heads / n_kv);
    const int64_t qld = (int64_t)n_heads * HD, kld = (int64_t)n_kv * HD;
    const TcLayout L = tc_layout(HD, QB, kt);
    __half *Qs = reinterpret_cast<__half *>(smem + L.q_off);
    __half *Ks = reinterpret_cast<__half *>(smem + L.k_off);
    __half *Vs = reinterpret_cast<__half *>(smem + L.v_off);
    int *PosQ = reinterpret_cast<int *>(smem + L.pos_off), *PosK = PosQ + QB;
    float *InvF = reinterpret_cast<float *>(smem + L.inv_off);

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r0 = warp * 16;                     /* this warp's first row in the block */
    const int wlo = q0 + r0;                      /* ... and its position in the sequence */
    const int wrows = max(0, min(16, len - wlo)); /* valid rows of this warp */
    const int whi = wlo + wrows;                  /* one past its last row */
    const int row_a = wlo + (lane >> 2), row_b = row_a + 8; /* this thread's two rows */
    const int cq = 2 * (lane & 3);                /* ... and its first column in a group of 8 */

    rows_async(Qs, L.ldh, q + (int64_t)h * HD, qld, base + q0, qn, QB, HD); /* lands with the first tile */
    if (rope) {
        positions(PosQ, pos, base + q0, qn);
        for (int i = threadIdx.x; i < HD / 2; i += blockDim.x) InvF[i] = (float)tab.inv_freq[i];
    }

    float o[DN][4];
#pragma unroll
    for (int n = 0; n < DN; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.f, l_b = 0.f; /* running max (log2 units), sum */
    const int ntiles = (q_hi + kt - 1) / kt;

    for (int t = 0; t < ntiles; t++) {
        const int kt0 = t * kt, kn = min(kt, q_hi - kt0);
        __syncthreads(); /* everyone is done with the previous tile */
        rows_async(Ks, L.ldh, k + (int64_t)kvh * HD, kld, base + kt0, kn, kt, HD);
        rows_async(Vs, L.ldh, v + (int64_t)kvh * HD, kld, base + kt0, kn, kt, HD);
        if (rope) positions(PosK, pos, base + kt0, kn);
        cp_async_wait_all();
        __syncthreads();
        if (rope) {
            rope_tile(Qs, qn, q0, PosQ, Ks, kn, kt0, PosK, t == 0, L.ldh, HD, InvF, tab);
            __syncthreads();
        }
        if (wrows == 0 || kt0 >= whi) continue; /* tile entirely in this warp's future */
        const int kvis = min(kn, whi - kt0); /* keys of the tile this warp's rows may see */
        for (int c0 = 0; c0 < kvis; c0 += 8 * SN) {
            const int ng = (min(8 * SN, kvis - c0) + 15) / 16 * 2; /* 8-key groups, even */

            /* S = Q K^T: a k-step's Q fragment once (from shared memory: registers go to
             * occupancy), then the keys two 8-key groups per load */
            float sc[SN][4];
#pragma unroll
            for (int j = 0; j < SN; j++) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
            const __half *qrow = Qs + (r0 + (lane & 15)) * L.ldh + 8 * (lane >> 4);
            const __half *krow = Ks + (c0 + (lane & 7) + 8 * (lane >> 4)) * L.ldh + 8 * ((lane >> 3) & 1);
#pragma unroll
            for (int kk = 0; kk < KS; kk++) {
                unsigned a[4];
                qh_ldmatrix_x4(a, qrow + kk * 16);
#pragma unroll
                for (int j = 0; j < SN; j += 2) {
                    if (j >= ng) break;
                    unsigned b[4];
                    qh_ldmatrix_x4(b, krow + 8 * j * L.ldh + kk * 16);
                    qh_mma16816(sc[j], a, make_uint2(b[0], b[1]));
                    qh_mma16816(sc[j + 1], a, make_uint2(b[2], b[3]));
                }
            }
            /* scale (into log2 units), causal mask, row maxima */
            float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
            for (int j = 0; j < SN; j++) {
                if (j >= ng) break;
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int col = kt0 + c0 + 8 * j + cq + e;
                    sc[j][e] = col <= row_a ? sc[j][e] * scale_log2 : -INFINITY;
                    sc[j][2 + e] = col <= row_b ? sc[j][2 + e] * scale_log2 : -INFINITY;
                    mx_a = fmaxf(mx_a, sc[j][e]);
                    mx_b = fmaxf(mx_b, sc[j][2 + e]);
                }
            }
            mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));
            mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
            const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
            /* a row with no key yet (only rows past the sequence's end) keeps everything at 0 */
            const float us_a = mn_a == -INFINITY ? 0.f : mn_a, us_b = mn_b == -INFINITY ? 0.f : mn_b;
            const float al_a = exp2f(m_a - us_a), al_b = exp2f(m_b - us_b);
            m_a = mn_a, m_b = mn_b;
            l_a *= al_a, l_b *= al_b;
            if (t > 0 || c0 > 0) { /* before the first keys O is 0 */
#pragma unroll
                for (int n = 0; n < DN; n++) o[n][0] *= al_a, o[n][1] *= al_a, o[n][2] *= al_b, o[n][3] *= al_b;
            }

            /* P = exp2(S - max), rounded to fp16 as the A fragments of P V (16 keys a k-step) */
#pragma unroll
            for (int j2 = 0; j2 < SN / 2; j2++) {
                if (2 * j2 >= ng) break;
                unsigned pa[4];
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    const float *s8 = sc[2 * j2 + hh];
                    float p0 = exp2f(s8[0] - us_a), p1 = exp2f(s8[1] - us_a);
                    float p2 = exp2f(s8[2] - us_b), p3 = exp2f(s8[3] - us_b);
                    l_a += p0 + p1, l_b += p2 + p3;
                    pa[2 * hh] = pack_half2(p0, p1);
                    pa[2 * hh + 1] = pack_half2(p2, p3);
                }
                const __half *vr = Vs + (c0 + 16 * j2 + (lane & 15)) * L.ldh + 8 * (lane >> 4);
#pragma unroll
                for (int n = 0; n < DN; n += 2) {
                    unsigned b[4];
                    qh_ldmatrix_x4_trans(b, vr + 8 * n);
                    qh_mma16816(o[n], pa, make_uint2(b[0], b[1]));
                    qh_mma16816(o[n + 1], pa, make_uint2(b[2], b[3]));
                }
            }
        }
    }
    /* Epilogue: divided by the row sums, through this warp's rows of Qs (no other warp reads
     * them, and this one is done with them) so that rows go out as 16-byte stores. */
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
    const float inv_a = l_a > 0.f ? 1.f / l_a : 0.f, inv_b = l_b > 0.f ? 1.f / l_b : 0.f;
    __syncwarp();
    __half *Ow = Qs + r0 * L.ldh;
#pragma unroll
    for (int n = 0; n < DN; n++) {
        *reinterpret_cast<unsigned *>(Ow + (lane >> 2) * L.ldh + 8 * n + cq) = pack_half2(o[n][0] * inv_a, o[n][1] * inv_a);
        *reinterpret_cast<unsigned *>(Ow + ((lane >> 2) + 8) * L.ldh + 8 * n + cq) =
            pack_half2(o[n][2] * inv_b, o[n][3] * inv_b);
    }
    __syncwarp();
    constexpr int UNITS = HD / 8; /* 16-byte units of a row */
    for (int idx = lane; idx < wrows * UNITS; idx += 32) {
        int r = idx / UNITS, c = (idx - r * UNITS) * 8;
        *reinterpret_cast<uint4 *>(out + (int64_t)(base + wlo + r) * qld + (int64_t)h * HD + c) =
            *reinterpret_cast<const uint4 *>(Ow + r * L.ldh + c);
    }
}

__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ void from_f(__half &d, float x) { d = __float2half_rn(x); }
__device__ __forceinline__ void from_f(float &d, float x) { d = x; }

/* Element d of a head's row, rotated for position p when rope is on. */
template <typename T>
__device__ __forceinline__ float rotated(const T *row, int d, int half, bool rope, int p, const qh_cuda_rope_tab &tab)
{
    float x = to_f(row[d]);
    if (!rope) return x;
    int i = d < half ? d : d - half;
    float2 cs = rope_cs(tab, p, i, half);
    float other = to_f(row[d < half ? d + half : d - half]);
    return d < half ? x * cs.x - other * cs.y : x * cs.x + other * cs.y;
}

/* One warp per (query row, head): lane holds dims lane + 32 j. T: __half or float. */
template <typename T>
__global__ void attn_simple(const T *__restrict__ q, const T *__restrict__ k, const T *__restrict__ v,
                            T *__restrict__ out, const int32_t *__restrict__ starts,
                            const int32_t *__restrict__ pos, int n_seqs, int n_tokens, int n_heads, int n_kv, int hd,
                            float scale, bool rope, qh_cuda_rope_tab tab)
{
    const int lane = threadIdx.x & 31;
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int h = blockIdx.y;
    if (row >= n_tokens) return;
    int lo = 0, hi = n_seqs - 1; /* the sequence holding row: last s with starts[s] <= row */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (starts[mid] <= row) lo = mid;
        else hi = mid - 1;
    }
    const int64_t base = starts[lo];
    const int kvh = h / (n_heads / n_kv), half = hd / 2;
    const int64_t qld = (int64_t)n_heads * hd, kld = (int64_t)n_kv * hd;
    constexpr int DPL = 8; /* hd <= 256 */
    float qv[DPL], o[DPL];
    const T *qr = q + row * qld + (int64_t)h * hd;
    const int qp = rope ? pos[row] : 0;
#pragma unroll
    for (int j = 0; j < DPL; j++) {
        int d = lane + 32 * j;
        qv[j] = d < hd ? rotated(qr, d, half, rope, qp, tab) : 0.f;
        o[j] = 0.f;
    }
    float m = -INFINITY, l = 0.f;
    for (int64_t jr = base; jr <= row; jr++) {
        const T *kr = k + jr * kld + (int64_t)kvh * hd;
        const T *vr = v + jr * kld + (int64_t)kvh * hd;
        const int kp = rope ? pos[jr] : 0;
        float dot = 0.f;
#pragma unroll
        for (int j = 0; j < DPL; j++) {
            int d = lane + 32 * j;
            if (d < hd) dot += qv[j] * rotated(kr, d, half, rope, kp, tab);
        }
        for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        float sc = dot * scale, m_new = fmaxf(m, sc);
        float alpha = expf(m - m_new), p = expf(sc - m_new);
        l = l * alpha + p;
#pragma unroll
        for (int j = 0; j < DPL; j++) {
            int d = lane + 32 * j;
            if (d < hd) o[j] = o[j] * alpha + p * to_f(vr[d]);
        }
        m = m_new;
    }
    T *dst = out + row * qld + (int64_t)h * hd;
#pragma unroll
    for (int j = 0; j < DPL; j++) {
        int d = lane + 32 * j;
        if (d < hd) from_f(dst[d], o[j] / l);
    }
}

template <int HD>
int launch_tc(cudaStream_t st, int n_sm, const __half *q, const __half *k, const __half *v, __half *out, const int32_t *starts,
              const int32_t *pos, int n_seqs, int max_len, int n_heads, int n_kv, float scale, bool rope,
              qh_cuda_rope_tab tab)
{
    /* Query rows per block and keys per tile: the batch's longest sequence rounded up to 16,
     * at most 64 (length-sorted TweetEval batches: 32 or 48), so short batches use little
     * shared memory and more blocks share an SM. */
    int r16 = (max_len + 15) / 16 * 16;
    int kt = r16 > KT_MAX ? KT_MAX : r16;
    int nw = r16 / 16 > NW_MAX ? NW_MAX : r16 / 16;
    /* A grid that does not fill the GPU once (batch 1: a block per head) runs each block's
     * chain of loads, rotation and products on an SM of its own: blocks of NW_MAX warps share
     * the loads and the rotation among more threads (the warps past the sequence's rows do
     * nothing else). */
    if ((int64_t)n_seqs * n_heads * ((max_len + 16 * nw - 1) / (16 * nw)) < n_sm) nw = NW_MAX;
    TcLayout L = tc_layout(HD, 16 * nw, kt);
    static int configured; /* per template instance: the largest opt-in set so far */
    if (!configured) { /* all of L1 that can be shared memory: occupancy is what this kernel needs */
        cudaError_t e = cudaFuncSetAttribute(attn_tc<HD>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                             (int)cudaSharedmemCarveoutMaxShared);
        if (e != cudaSuccess) return (int)e;
        configured = 1;
    }
    if (L.bytes > 48 * 1024 && L.bytes > configured) {
        cudaError_t e = cudaFuncSetAttribute(attn_tc<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, L.bytes);
        if (e != cudaSuccess) return (int)e;
        configured = L.bytes;
    }
    dim3 grid((unsigned)n_seqs * (unsigned)n_heads, (unsigned)((max_len + 16 * nw - 1) / (16 * nw)));
    cudaError_t e = qh_launch_pdl(attn_tc<HD>, grid, dim3(32 * nw), L.bytes, st, q, k, v, out, starts, pos, n_heads, n_kv,
                                  kt, scale * 1.4426950408889634f /* log2(e): exp2 in the softmax */, rope, tab);
    if (e != cudaSuccess) return (int)e;
    return (int)cudaGetLastError();
}

} // namespace

extern "C" {

int qh_cu_attention_tc_supported(int hd) { return hd == 16 || hd == 32 || hd == 64 || hd == 128; }

int qh_cu_attention(cudaStream_t s, int n_sm, int kind, int f32, const void *q, const void *k, const void *v, void *out,
                    const int32_t *starts, const int32_t *pos, int n_seqs, int n_tokens, int max_len, int n_heads,
                    int n_kv, int hd, const qh_cuda_rope_tab *rope)
{
    if (n_seqs <= 0 || n_tokens <= 0) return (int)cudaGetLastError();
    float scale = 1.0f / sqrtf((float)hd);
    qh_cuda_rope_tab tab = rope ? *rope : qh_cuda_rope_tab{};
    bool on = rope != nullptr;
    const __half *qh = static_cast<const __half *>(q), *kh = static_cast<const __half *>(k),
                 *vh = static_cast<const __half *>(v);
    __half *oh = static_cast<__half *>(out);
    const int warps = 4;
    dim3 sgrid((unsigned)((n_tokens + warps - 1) / warps), (unsigned)n_heads);
    if (f32) {
        attn_simple<float><<<sgrid, 32 * warps, 0, s>>>(static_cast<const float *>(q), static_cast<const float *>(k),
                                                        static_cast<const float *>(v), static_cast<float *>(out), starts,
                                                        pos, n_seqs, n_tokens, n_heads, n_kv, hd, scale, on, tab);
        return (int)cudaGetLastError();
    }
    if (kind == 0 && qh_cu_attention_tc_supported(hd)) {
        switch (hd) {
        case 16: return launch_tc<16>(s, n_sm, qh, kh, vh, oh, starts, pos, n_seqs, max_len, n_heads, n_kv, scale, on, tab);
        case 32: return launch_tc<32>(s, n_sm, qh, kh, vh, oh, starts, pos, n_seqs, max_len, n_heads, n_kv, scale, on, tab);
        case 64: return launch_tc<64>(s, n_sm, qh, kh, vh, oh, starts, pos, n_seqs, max_len, n_heads, n_kv, scale, on, tab);
        case 128: return launch_tc<128>(s, n_sm, qh, kh, vh, oh, starts, pos, n_seqs, max_len, n_heads, n_kv, scale, on, tab);
        }
    }
    attn_simple<__half><<<sgrid, 32 * warps, 0, s>>>(qh, kh, vh, oh, starts, pos, n_seqs, n_tokens, n_heads, n_kv, hd,
                                                     scale, on, tab);
    return (int)cudaGetLastError();
}

} // extern "C"
