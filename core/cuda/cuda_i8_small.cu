/* int8 (LLM.int8()) with outlier columns for batches of at most 64 tokens whose outlier count
 * stays on the device (cuda_quant_int8.c, i8_prepare). At batch 1 a launch costs more than the
 * work in it: the plain path's extra launches (a memset and four kernels per input, one outlier
 * kernel per product, gate and up apart plus silu_mul) made int8 with outliers slower than fp16
 * (bench/NOTES.md, sessions 6 and 7). Two kernels fold them:
 *
 *  - i8_quant_small: what i8_flags, i8_compact, i8_rowquant and i8_gather_x do, in one launch.
 *    Thread-block clusters of 8 (or 16) blocks; each block takes a slice of the columns (groups
 *    of 8): the slice's outlier flags (bits) over all tokens, its outlier columns in order (one warp),
 *    and, for the cluster's share of the tokens (staged in shared memory), each token's absmax
 *    over the slice's regular columns (the other warps). After a cluster barrier every block
 *    reads the others' counts and maxima (distributed shared memory), then writes its slice's
 *    codes and the gathered x of its outlier columns for the fp16 product; the first cluster
 *    also the indices, the count and the statistics. Several clusters, because the codes'
 *    arithmetic kept a single cluster's 8 SMs busy for ~7 us (Nsight Compute, bench/NOTES.md);
 *    each flags the columns over all tokens itself (x is in L2). The same numbers as those
 *    kernels bit for bit: a maximum does not depend on the order, and the codes are qh_i8_code
 *    of the same values.
 *  - i8_epilogue_small: qh_cu_i8_epilogue with the outlier columns beyond the gathered product's
 *    capacity summed in first (i8_outlier_small's loop: the same order of additions), or, for
 *    gate and up (two weights), both epilogues and their SwiGLU, as the plain ops round them. */
#include "cuda_device_math.cuh"
#include "cuda_internal.h"

#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace cg = cooperative_groups;

namespace {

constexpr int MAX_T = 64;          /* tokens (I8_NOSYNC_MAX_T) */
constexpr int QS_THREADS = 512;    /* quantization: 16 warps per block */
constexpr int QS_LOADS = 8;        /* 16-byte loads each thread has in flight */
constexpr size_t QS_SMEM_MAX = 200 * 1024; /* a block's slice at most (of 227 KB per SM) */
constexpr int ES_COLS = 32, ES_THREADS = 256, ES_ROWS = ES_THREADS / ES_COLS, ES_PER = MAX_T / ES_ROWS;

/* Shared memory of a quantization block with gp column groups and t tokens of its own: their x
 * slice [t][gp] (groups of 8 fp16), the outlier list [8 gp] shorts, then a flag bit per column. */
size_t qs_smem(int t, int gp) { return (size_t)t * gp * 16 + (size_t)gp * 16 + (size_t)(gp * 8 + 31) / 32 * 4; }

/* the flag bits of column group gi (8 columns: a byte of the bit array) */
__device__ __forceinline__ unsigned group_flags(const uint32_t *fw, int gi)
{
    return fw[gi >> 2] >> ((gi & 3) * 8) & 0xffu;
}

__global__ void __launch_bounds__(QS_THREADS) i8_quant_small_kernel(const __half *x, int t, int64_t k, int64_t kp,
                                                                     float thr, int gp, qh_cu_i8_quant_small_out o)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ float rmax[MAX_T], rall[MAX_T], rinv[MAX_T];
    __shared__ int cnt, off_s, m_s;
    cg::cluster_group cluster = cg::this_cluster();
    const int nb = (int)cluster.num_blocks(), b = (int)cluster.block_rank();
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int G = (int)(k / 8), g0 = b * gp, ng = G - g0 < gp ? (G - g0 > 0 ? G - g0 : 0) : gp;
    /* this cluster's tokens [ra, rb): every cluster flags the columns over all tokens, but finds
     * the absmax and writes the codes of its own */
    const int per = (t + (int)gridDim.x - 1) / (int)gridDim.x, ra = (int)blockIdx.x * per;
    const int rb = ra + per < t ? ra + per : t, nr = rb > ra ? rb - ra : 0;
    const bool first = blockIdx.x == 0; /* writes the count, the indices and the statistics */
    uint4 *tile = reinterpret_cast<uint4 *>(smem); /* [per][gp] */
    unsigned short *lidx = reinterpret_cast<unsigned short *>(smem + (size_t)per * gp * 16);
    uint32_t *fw = reinterpret_cast<uint32_t *>(lidx + gp * 8);
    const int nwords = (gp * 8 + 31) / 32;

    qh_pdl_trigger();
    for (int i = tid; i < nwords; i += QS_THREADS) fw[i] = 0u;
    if (tid < MAX_T) rall[tid] = 0.f;
    __syncthreads();
    qh_pdl_wait(); /* x is the kernel before's output */

    /* the slice, flagging columns with |x| >= thr; this cluster's tokens into shared memory */
    const int total = t * ng;
    for (int i0 = tid; i0 < total; i0 += QS_LOADS * QS_THREADS) {
        uint4 u[QS_LOADS];
#pragma unroll
        for (int l = 0; l < QS_LOADS; l++) {
            const int i = i0 + l * QS_THREADS, r = i / (ng > 0 ? ng : 1), gi = i - r * ng;
            if (i < total) u[l] = *reinterpret_cast<const uint4 *>(x + (int64_t)r * k + (int64_t)(g0 + gi) * 8);
        }
#pragma unroll
        for (int l = 0; l < QS_LOADS; l++) {
            const int i = i0 + l * QS_THREADS, r = i / (ng > 0 ? ng : 1), gi = i - r * ng;
            if (i >= total) break;
            if (r >= ra && r < rb) tile[(r - ra) * gp + gi] = u[l];
            float v[8];
            qh_half8_to_float(u[l], v);
            unsigned hit = 0;
#pragma unroll
            for (int j = 0; j < 8; j++) hit |= (fabsf(v[j]) >= thr ? 1u : 0u) << j;
            if (hit) atomicOr(&fw[gi >> 2], hit << ((gi & 3) * 8));
        }
    }
    __syncthreads();

    if (warp == 0) { /* the slice's outlier columns, in order: a word of flag bits per lane */
        int base = 0;
        for (int w0 = 0; w0 < nwords; w0 += 32) {
            unsigned bits = w0 + lane < nwords ? fw[w0 + lane] : 0u;
            const int c = __popc(bits), incl = qh_warp_incl_scan(c);
            for (int pos = base + incl - c; bits; bits &= bits - 1)
                lidx[pos++] = (unsigned short)((w0 + lane) * 32 + __ffs(bits) - 1);
            base += __shfl_sync(0xffffffffu, incl, 31);
        }
        if (lane == 0) cnt = base;
    } else { /* each token's absmax over the slice's regular columns (NaN never counts, as in
              * i8_rowquant: only a > amax replaces) */
        for (int lr = warp - 1; lr < nr; lr += QS_THREADS / 32 - 1) {
            float amax = 0.f;
            for (int gi = lane; gi < ng; gi += 32) {
                float v[8];
                qh_half8_to_float(tile[lr * gp + gi], v);
                const unsigned fb = group_flags(fw, gi);
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    const float a = fb >> j & 1u ? 0.f : fabsf(v[j]);
                    if (a > amax) amax = a;
                }
            }
            amax = qh_warp_max(amax); /* amax is never NaN here */
            if (lane == 0) rmax[lr] = amax;
        }
    }
    cluster.sync();

    /* every block: its offset among the outlier columns, the count, each token's absmax (one
     * round of remote reads: maxima of non-negative floats compare as their bits do) */
    if (warp == 0) {
        const int c = lane < nb ? *cluster.map_shared_rank(&cnt, lane) : 0, incl = qh_warp_incl_scan(c);
        if (lane == b) off_s = incl - c;
        if (lane == 31) m_s = incl;
    }
    for (int i = tid; i < nr * nb; i += QS_THREADS) {
        const int lr = i / nb, src = i - lr * nb;
        atomicMax(reinterpret_cast<int *>(&rall[lr]), __float_as_int(*cluster.map_shared_rank(&rmax[lr], src)));
    }
    /* done with the other blocks' shared memory: the barrier's wait is at the end */
    asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
    __syncthreads();
    for (int lr = tid; lr < nr; lr += QS_THREADS) {
        if (b == 0) o.sx[ra + lr] = qh_i8_row_scale(rall[lr]);
        rinv[lr] = qh_i8_row_inv(rall[lr]);
    }
    __syncthreads();
    const int off = off_s, m = m_s, mcap = m < o.mp ? m : o.mp;
    if (first && b == 0 && tid == 0) {
        *o.m_dev = m;
        if (o.m_host) *(volatile int *)o.m_host = m;
        if (o.stat) atomicAdd(&o.stat[0], (unsigned long long)m), atomicMax(&o.stat[1], (unsigned long long)m);
    }
    if (first)
        for (int j = tid; j < cnt; j += QS_THREADS) o.idx[off + j] = (int32_t)(g0 * 8 + lidx[j]);

    /* codes: 0 at outlier columns */
    for (int i = tid; i < nr * ng; i += QS_THREADS) {
        const int lr = i / ng, gi = i - lr * ng;
        const float inv = rinv[lr];
        float v[8];
        qh_half8_to_float(tile[lr * gp + gi], v);
        *reinterpret_cast<uint2 *>(o.xq + (int64_t)(ra + lr) * kp + (int64_t)(g0 + gi) * 8) =
            qh_i8_codes8(v, group_flags(fw, gi), inv);
    }
    if (b == nb - 1) /* padding columns */
        for (int i = tid; i < nr * (int)(kp - k); i += QS_THREADS) {
            const int lr = i / (int)(kp - k);
            o.xq[(int64_t)(ra + lr) * kp + k + (i - lr * (kp - k))] = 0;
        }

    /* the outlier columns' x for the gathered product (the first mp of them; zeros beyond m) */
    if (o.xo) {
        const __half *th = reinterpret_cast<const __half *>(tile);
        __half *xo = static_cast<__half *>(o.xo);
        const int mine = off + cnt < mcap ? cnt : (mcap - off > 0 ? mcap - off : 0);
        for (int i = tid; i < nr * mine; i += QS_THREADS) {
            const int lr = i / mine, j = i - lr * mine;
            xo[(int64_t)(ra + lr) * o.mp + off + j] = th[lr * gp * 8 + lidx[j]];
        }
        const int zeros = o.mp - mcap;
        for (int lr = b; lr < nr; lr += nb)
            for (int j = tid; j < zeros; j += QS_THREADS) xo[(int64_t)(ra + lr) * o.mp + mcap + j] = __float2half(0.f);
    }
    asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory"); /* no block leaves while the others may
                                                                              * still read its shared memory */
#endif
}

/* One block: 32 output columns x all tokens of one weight (NW 1: up to three weights with the same
 * input, q/k/v, the blocks of each in turn) or of gate and up together (NW 2: their SwiGLU); each
 * thread one column and 8 tokens (r0, r0 + 8, ...). */
template <int NW>
__global__ void __launch_bounds__(ES_THREADS) i8_epilogue_small_kernel(const __grid_constant__ qh_cu_i8_small_epi a)
{
    __shared__ float xs[MAX_T][33], ws[NW][ES_COLS][33];
    __shared__ int ids[32];
    const int tid = threadIdx.x, col = tid % ES_COLS, r0 = tid / ES_COLS;
    /* the block's weight (NW 1) and first column */
    int64_t bx = blockIdx.x;
    int sel = 0;
    if (NW == 1)
        for (; sel < a.nw - 1; sel++) {
            const int64_t tiles = (a.n[sel] + ES_COLS - 1) / ES_COLS;
            if (bx < tiles) break;
            bx -= tiles;
        }
    const int64_t n = a.n[sel], c0 = bx * ES_COLS, c = c0 + col, ldc = a.ldc[sel];
    const bool live = c < n;
    float scb[NW];
#pragma unroll
    for (int w = 0; w < NW; w++) scb[w] = live ? a.scb[sel + w][c] : 0.f; /* weights: before the wait */
    qh_pdl_trigger();
    qh_pdl_wait();
    const int m = a.m_dev ? *a.m_dev : 0;
    /* the products' sums, loaded while the count is on its way */
    float v[NW][ES_PER];
#pragma unroll
    for (int i = 0; i < ES_PER; i++) {
        const int r = r0 + ES_ROWS * i;
        const bool ok = live && r < a.t;
        const float s = ok ? a.sx[r] : 0.f;
#pragma unroll
        for (int w = 0; w < NW; w++) v[w][i] = ok ? qh_i8_dequant(a.acc[sel + w][(int64_t)r * ldc + c], s, scb[w]) : 0.f;
    }
    const bool outl = m > a.cap;
    float o[NW][ES_PER];
#pragma unroll
    for (int w = 0; w < NW; w++)
#pragma unroll
        for (int i = 0; i < ES_PER; i++) o[w][i] = 0.f;
    for (int jb = a.cap; jb < m; jb += 32) { /* i8_outlier_small's sums, in its order */
        const int nj = min(32, m - jb);
        if (tid < 32) ids[tid] = tid < nj ? a.idx[jb + tid] : 0;
        __syncthreads();
        const __half *x = static_cast<const __half *>(a.x);
        for (int i = tid; i < a.t * 32; i += ES_THREADS) {
            const int r = i >> 5, j = i & 31;
            xs[r][j] = j < nj ? __half2float(x[(int64_t)r * a.k + ids[j]]) : 0.f;
        }
#pragma unroll
        for (int w = 0; w < NW; w++)
            for (int i = tid; i < ES_COLS * 32; i += ES_THREADS) {
                const int cc = i >> 5, j = i & 31;
                const int64_t c2 = c0 + cc;
                ws[w][cc][j] = c2 < n && j < nj
                                   ? __half2float(qh_i8_outlier_w(a.w[sel + w][c2 * a.kp + ids[j]], a.f[sel + w][c2]))
                                   : 0.f;
            }
        __syncthreads();
#pragma unroll 8
        for (int j = 0; j < 32; j++)
#pragma unroll
            for (int w = 0; w < NW; w++) {
                const float wv = ws[w][col][j];
#pragma unroll
                for (int i = 0; i < ES_PER; i++) o[w][i] = __fmaf_rn(xs[r0 + ES_ROWS * i][j], wv, o[w][i]);
            }
        __syncthreads();
    }
    if (!live) return;
    void *y = a.y[sel];
#pragma unroll
    for (int i = 0; i < ES_PER; i++) {
        const int r = r0 + ES_ROWS * i;
        if (r >= a.t) break;
        const int64_t yi = (int64_t)r * n + c;
        if (a.into_y) { /* fp32 y added to: it holds y + the gathered product already */
            float *yp = static_cast<float *>(y) + yi;
            float acc = *yp;
            if (outl) acc = acc + o[0][i];
            *yp = acc + v[0][i];
            continue;
        }
        float h[NW];
#pragma unroll
        for (int w = 0; w < NW; w++) { /* the outlier sums, as i8_outlier_small and the epilogue's extra */
            float ex = a.cap > 0 ? a.extra[sel + w][yi] : 0.f;
            bool use = a.cap > 0;
            if (outl) ex = use ? ex + o[w][i] : o[w][i], use = true;
            h[w] = use ? __fadd_rn(v[w][i], ex) : v[w][i];
        }
        if (NW == 2)
            static_cast<__half *>(y)[yi] = __float2half_rn(qh_silu_mul(qh_round_h(h[0]), qh_round_h(h[NW - 1])));
        else if (a.y_type == QH_CU_F32)
            static_cast<float *>(y)[yi] = a.accumulate ? h[0] + static_cast<const float *>(y)[yi] : h[0];
        else
            static_cast<__half *>(y)[yi] =
                __float2half_rn(a.accumulate ? h[0] + __half2float(static_cast<const __half *>(y)[yi]) : h[0]);
    }
}

} // namespace

extern "C" {

/* The launch for t tokens and k columns: clusters of nb blocks (8, a portable cluster, where each
 * thread then loads its share of the slice in one round, else 16), each block a slice of gp
 * column groups, and *rg clusters, each finding the absmax and writing the codes of its share
 * of the tokens (about 8: the codes' arithmetic is what takes a block longest). 0 where the
 * slices do not fit shared memory. */
static int qs_plan(int64_t t, int64_t k, int *gp, int *rg)
{
    const int64_t G = k / 8;
    *rg = (int)((t + 7) / 8);
    const int per = (int)((t + *rg - 1) / *rg);
    for (int nb = 8; nb <= 16; nb += 8) {
        *gp = (int)((G + nb - 1) / nb);
        if ((nb == 16 || t * *gp <= QS_LOADS * QS_THREADS) && qs_smem(per, *gp) <= QS_SMEM_MAX) return nb;
    }
    return 0;
}

/* Whether clusters of 16 blocks of smem bytes can run on this GPU (16 is beyond the portable size:
 * a GPU with fewer SMs per GPC cannot); asked once, at the largest slice (one device). */
static bool qs_cluster16_ok(void)
{
    static int ok = -1;
    if (ok < 0) {
        const size_t smem = QS_SMEM_MAX;
        cudaLaunchConfig_t cfg = {};
        cudaLaunchAttribute at;
        at.id = cudaLaunchAttributeClusterDimension;
        at.val.clusterDim.x = 1, at.val.clusterDim.y = 16, at.val.clusterDim.z = 1;
        cfg.gridDim = dim3(1, 16), cfg.blockDim = dim3(QS_THREADS), cfg.dynamicSmemBytes = smem;
        cfg.attrs = &at, cfg.numAttrs = 1;
        int clusters = 0;
        ok = cudaFuncSetAttribute(i8_quant_small_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) ==
                     cudaSuccess &&
                 cudaFuncSetAttribute(i8_quant_small_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) ==
                     cudaSuccess &&
                 cudaOccupancyMaxActiveClusters(&clusters, i8_quant_small_kernel, &cfg) == cudaSuccess && clusters > 0;
        cudaGetLastError(); /* a refusal above is an answer, not an error to report later */
    }
    return ok == 1;
}

int qh_cu_i8_quant_small_applies(int cc_major, const void *x, int64_t t, int64_t k, int64_t kp, float thr,
                                 const qh_cu_i8_quant_small_out *o)
{
    int gp, rg, nb = 0;
    return cc_major >= 9 && t > 0 && t <= MAX_T && k > 0 && k % 8 == 0 && kp % 8 == 0 && kp >= k && kp - k <= 1024 &&
           (uintptr_t)x % 16 == 0 && (uintptr_t)o->xq % 8 == 0 && thr > 0.f && (!o->xo || o->mp > 0) &&
           (nb = qs_plan(t, k, &gp, &rg)) > 0 && (nb == 8 || qs_cluster16_ok());
}

int qh_cu_i8_quant_small(cudaStream_t s, const void *x, int64_t t, int64_t k, int64_t kp, float thr,
                         const qh_cu_i8_quant_small_out *o)
{
    int gp, rg;
    const int nb = qh_cu_i8_quant_small_applies(9, x, t, k, kp, thr, o) ? qs_plan(t, k, &gp, &rg) : 0;
    if (!nb) return (int)cudaErrorInvalidValue;
    const size_t smem = qs_smem((int)((t + rg - 1) / rg), gp);
    static size_t opted = 48 * 1024;
    const cudaError_t e = qh_smem_opt_in(i8_quant_small_kernel, smem, &opted);
    if (e != cudaSuccess) return (int)e;
    return (int)qh_launch_pdl_cluster(i8_quant_small_kernel, dim3((unsigned)rg, (unsigned)nb), dim3(QS_THREADS), smem, s,
                                      (unsigned)nb, static_cast<const __half *>(x), (int)t, k, kp, thr, gp, *o);
}

int qh_cu_i8_epilogue_small(cudaStream_t s, const qh_cu_i8_small_epi *e)
{
    if (e->t <= 0) return (int)cudaGetLastError();
    if (e->t > MAX_T || e->nw < 1 || e->nw > 3 || (e->paired && (e->nw != 2 || e->n[1] != e->n[0])) ||
        (e->paired && (e->y_type != QH_CU_F16 || e->accumulate)) ||
        (e->into_y && (e->nw != 1 || e->y_type != QH_CU_F32)) || (e->m_dev == NULL && e->cap > 0))
        return (int)cudaErrorInvalidValue;
    int64_t tiles = 0;
    for (int w = 0; w < (e->paired ? 1 : e->nw); w++) {
        if (e->n[w] <= 0 || (e->cap > 0 && !e->into_y && !e->extra[w])) return (int)cudaErrorInvalidValue;
        tiles += (e->n[w] + ES_COLS - 1) / ES_COLS;
    }
    if (e->paired && e->cap > 0 && !e->extra[1]) return (int)cudaErrorInvalidValue;
    const dim3 grid((unsigned)tiles);
    if (e->paired) return (int)qh_launch_pdl(i8_epilogue_small_kernel<2>, grid, dim3(ES_THREADS), 0, s, *e);
    return (int)qh_launch_pdl(i8_epilogue_small_kernel<1>, grid, dim3(ES_THREADS), 0, s, *e);
}

} /* extern "C" */
