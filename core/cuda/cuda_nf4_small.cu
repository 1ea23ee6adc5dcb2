/* nf4 products for small token counts (batch-1 latency: one tweet is ~30 tokens, the longest
 * ~90). Up to 64 tokens a product's cost is reading the 4-bit codes (3.6 GB for a 7B model), the
 * table look-ups that dequantize them and the fixed cost of each launch, so the codes are read
 * once, straight into registers, and multiplied on tensor cores (mma.sync m16n8k16) without an
 * fp16 copy of the weight (which costs more than the product at these sizes); one launch serves
 * q, k and v, one gate and up. Plan and shared-memory layout: ../quant_gpu_plan.h; measurements:
 * bench/NOTES.md (sessions 5, 8, 10 and 11).
 *
 * A thread block of 8 warps covers `rows` weight rows (16 or 32 per warp) over the columns of
 * its split. Each thread turns its code bytes into A fragments with one table look-up per byte
 * (two fp16 levels) and one multiply by the row's absmax (fp16, as the dequantized weight of
 * the large-batch path: fp16(level * absmax)). A thread's fragment columns are a permutation of
 * 16 consecutive input columns (its 8 code bytes per 64-column step), and x follows the same
 * permutation, so the sum over the columns is unchanged. x goes through shared memory in chunks
 * of 256 columns (128 beyond 32 tokens), two buffers (cp.async). With sm_90a code and 16 rows a
 * warp (the default), each warpgroup multiplies its 64 rows by warpgroup products (wgmma, A from
 * registers, x read by the tensor cores from a 128-byte-swizzled tile staged already permuted,
 * 4 bytes a copy); otherwise each warp reads its x fragments (permuted) from shared memory for
 * mma.sync. The warpgroup products take the x fragments' shared-memory reads (two thirds of the
 * loop's) off the warps: 8% less time a layer at 30 and 48 tokens (bench/NOTES.md, session 11).
 *
 * The splits of a row tile are one thread-block cluster: after the main loop each block leaves
 * its partial sums in its shared memory, and each block of the cluster adds up a share of the
 * tile's outputs over all the blocks (distributed shared memory) in split order, so the result
 * does not depend on timing, and no second kernel or global scratch is needed. The same
 * epilogue does the residual add (fp32 or fp16 output), or, for gate and up as a pair (one
 * block holds the same rows of both), silu(gate) * up.
 *
 * Launched with programmatic dependent launch: codes, absmax and table are loaded while the
 * kernel before (RMSNorm, attention, the gate/up product) finishes; x is read and y written only
 * after qh_pdl_wait. */
#include "../quant_gpu_plan.h"
#include "cuda_device_math.cuh"
#include "cuda_internal.h"
#include "cuda_wgmma.cuh"

#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <type_traits>

namespace cg = cooperative_groups;

namespace {

constexpr int WARPS = 8, THREADS = 32 * WARPS, KSTEP = QH_NF4_SMALL_KSTEP;
constexpr int AMAX_LD = QH_NF4_SMALL_AMAX_LD, LUT_WORDS = QH_NF4_SMALL_LUT_BYTES / 4;
constexpr int MAXW = QH_NF4_SMALL_MAX_WEIGHTS, MAXS = QH_NF4_SMALL_MAX_SPLITS;
#ifdef __CUDA_ARCH_FEAT_SM90_ALL /* compiling sm_90a code */
constexpr bool HAVE_WGMMA = true;
#else
constexpr bool HAVE_WGMMA = false;
#endif

/* Where a warpgroup product (wgmma) reads x, the 64 columns of a step are staged permuted: the
 * product takes k in its natural order, and a thread's A fragments hold the permuted columns its
 * code bytes give (see the file comment). Logical 2-column unit u of a step (columns 2u, 2u + 1 of
 * the 64, k-substep u / 8) holds x's columns col(u), col(u) + 1 of the step. */
__device__ __forceinline__ int wg_unit_col(int u)
{
    return 16 * (u & 3) + 8 * ((u >> 4) & 1) + 4 * ((u >> 3) & 1) + 2 * ((u >> 2) & 1);
}

struct small_args {
    qh_cu_nf4 w[MAXW];
    int64_t n[MAXW], tile0[MAXW]; /* rows; first row tile of each weight */
    void *y[MAXW];
    const __half *x;
    int64_t k;
    int nw, paired, t, kr, bs_shift, y_type, accumulate;
    float levels[16];
};

/* v[i] for i < 3, as selects rather than an address computed at run time */
template <class T>
__device__ __forceinline__ T pick(const T (&v)[MAXW], int i)
{
    return i == 0 ? v[0] : i == 1 ? v[1] : v[2];
}

/* Two fp16 levels of code byte b of w (the byte's high nibble in the low half: the first column)
 * times the absmax. lane_addr: the shared-window address of this lane's word of byte 0 in the
 * table; byte e's word is 128 bytes further per e, so a look-up costs one PRMT and one LEA.
 * (The load is volatile so that it stays after the barrier that publishes the table.) */
__device__ __forceinline__ unsigned level_pair(uint32_t lane_addr, unsigned w, int b, __half2 scale)
{
    uint32_t l;
    asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(l) : "r"(lane_addr + (__byte_perm(w, 0, 0x4440 | b) << 7)));
    __half2 h = __hmul2(*reinterpret_cast<const __half2 *>(&l), scale);
    return *reinterpret_cast<unsigned *>(&h);
}

template <int NT, int MT>
__global__ void __launch_bounds__(THREADS, 2) nf4_small_kernel(const __grid_constant__ small_args a)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr int R = WARPS * 16 * MT; /* rows per block: 128 or 256 */
    static_assert(R == 128 || R == 256, "rows per block");
    /* 16 rows a warp in sm_90a code: warpgroup products from a swizzled x tile; else mma.sync
     * with x fragments read from shared memory by each warp */
    constexpr bool WG = HAVE_WGMMA && MT == 1;
    /* steps of codes each thread has in flight: mma.sync 8 up to 32 tokens (4 measured slower;
     * beyond 32 tokens the accumulators need the registers), warpgroup products 4 (8 measured
     * slower at 30 tokens, bench/NOTES.md session 11) */
    constexpr int G = WG || NT > 4 ? 4 : 8 / MT;
    static_assert(NT <= 4 || MT == 1, "beyond 32 tokens 16 rows a warp");
    /* steps per x chunk and halves per staged x row (the plan's rule, ../quant_gpu_plan.h) */
    constexpr int CHUNK = QH_NF4_SMALL_CHUNK_OF(NT), XLD = QH_NF4_SMALL_XLD_OF(NT);
    static_assert(G % CHUNK == 0, "chunk starts at fixed steps of a group");
    constexpr int RLD = R + 4;         /* partial sums [token][RLD] (bank-conflict free) */
    extern __shared__ __align__(16) unsigned char smem[];
    uint32_t *lut = reinterpret_cast<uint32_t *>(smem);
    __half *xbuf = reinterpret_cast<__half *>(smem + LUT_WORDS * 4);
    /* the warpgroup products' x: a 1024-byte aligned tile [8NT tokens][128 bytes] per step, CHUNK
     * steps a buffer (the plan's 1024 spare bytes are the alignment) */
    constexpr int WG_TILE = NT * 1024, WG_BUF = CHUNK * WG_TILE;
    const uint32_t wg_x = (qh_smem_u32(smem + LUT_WORDS * 4) + 1023) & ~1023u;
    unsigned char *wg_xp = smem + (wg_x - qh_smem_u32(smem));
    __half2 *amx = reinterpret_cast<__half2 *>(smem + LUT_WORDS * 4 + 1024 + 2 * NT * 8 * XLD * 2);
    float *red = reinterpret_cast<float *>(smem); /* after the main loop, over table and x */
    __shared__ float lv[16];

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
    const uint32_t lut_lane = qh_smem_u32(lut) + 4 * lane;
    const int64_t k = a.k, kb = (int64_t)blockIdx.y * a.kr;
    const int klen = (int)(k - kb < a.kr ? k - kb : a.kr), steps = klen / KSTEP;
    /* the block's weight (a pair: gate in the first half of the rows, up in the second) and
     * first row */
    int bseg = 0;
    if (!a.paired) bseg = (a.nw > 2 && blockIdx.x >= a.tile0[2]) ? 2 : (a.nw > 1 && blockIdx.x >= a.tile0[1]) ? 1 : 0;
    const int64_t r0 = a.paired ? (int64_t)blockIdx.x * (R / 2) : ((int64_t)blockIdx.x - pick(a.tile0, bseg)) * R;
    auto seg_of_row = [&](int lr) { return a.paired ? (lr >= R / 2 ? 1 : 0) : bseg; };
    auto row_of = [&](int lr) { return r0 + (a.paired ? lr % (R / 2) : lr); };

    /* this thread's code rows: m-tile j, rows g (h 0) and g + 8 (h 1) */
    const int wlr = warp * 16 * MT, wseg = seg_of_row(wlr);
    const qh_cu_nf4 W = pick(a.w, wseg);
    const int64_t wn = pick(a.n, wseg);
    const uint8_t *cp[MT][2];
    bool ok[MT][2];
#pragma unroll
    for (int j = 0; j < MT; j++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int64_t row = row_of(wlr + 16 * j + 8 * h + g);
            ok[j][h] = row < wn;
            cp[j][h] = W.codes + (ok[j][h] ? row : 0) * (k / 2) + kb / 2 + 8 * q;
        }
    uint2 nxt[G][MT][2];
    auto load = [&](int s0) {
#pragma unroll
        for (int u = 0; u < G; u++)
#pragma unroll
            for (int j = 0; j < MT; j++)
#pragma unroll
                for (int h = 0; h < 2; h++)
                    nxt[u][j][h] = s0 + u < steps && ok[j][h]
                                       ? __ldcs(reinterpret_cast<const uint2 *>(cp[j][h] + (s0 + u) * 32))
                                       : make_uint2(0, 0);
    };
    /* x staging: warp w copies token rows w, w + 8, ..., lane l the 16 bytes at 8l of the chunk */
    const __half *xsrc = a.x + (int64_t)warp * k + kb + 8 * lane;
    __half *xdst = xbuf + warp * XLD + 8 * lane;
    /* warpgroup layout: warp w copies token rows w, w + 8, ... of every step, lane l the unit l
     * (4 bytes) of the step's permuted 128 bytes, into its swizzled place (row w % 8 = w of an
     * 8-row group) */
    const uint32_t wg_dst = qh_sw128_offset(warp, 4 * lane);
    const __half *wg_src = a.x + (int64_t)warp * k + kb + wg_unit_col(lane);
    const int64_t wg_k8 = 8 * k;              /* 8 token rows */
    const int wg_rows = (a.t - warp + 7) / 8; /* this warp's token rows: warp + 8i, i < wg_rows */
    auto stage = [&](int c, int buf) { /* x[:t, chunk c of the split] -> buffer buf */
        const int c0 = c * CHUNK * KSTEP, cl = klen - c0 < CHUNK * KSTEP ? klen - c0 : CHUNK * KSTEP;
        if constexpr (WG) {
            const int ns = cl / KSTEP;
            unsigned char *dst = wg_xp + buf * WG_BUF + wg_dst;
            const __half *src = wg_src + c0;
#pragma unroll
            for (int i = 0; i < NT; i++, src += wg_k8) /* token rows warp + 8i: row warp of group i */
                if (i < wg_rows) {
                    if (ns == CHUNK) {
#pragma unroll
                        for (int j = 0; j < CHUNK; j++) qh_cp_async4(dst + j * WG_TILE + i * 1024, src + j * KSTEP);
                    } else {
                        for (int j = 0; j < ns; j++) qh_cp_async4(dst + j * WG_TILE + i * 1024, src + j * KSTEP);
                    }
                }
        } else if (8 * lane < cl) {
#pragma unroll
            for (int u = 0; u < NT; u++)
                if (warp + 8 * u < a.t)
                    qh_cp_async16(xdst + buf * NT * 8 * XLD + 8 * u * XLD, xsrc + (int64_t)8 * u * k + c0);
        }
        qh_cp_async_commit();
    };

    qh_pdl_trigger();
    load(0);
    /* token rows past t stay zero in both buffers */
    if constexpr (WG) {
        const int pad = NT * 8 - a.t; /* rows of 128 bytes: 32 words */
        for (int i = tid; i < 2 * CHUNK * pad * 32; i += THREADS) {
            const int tile = i / (pad * 32), rest = i - tile * (pad * 32), n = a.t + rest / 32;
            reinterpret_cast<uint32_t *>(wg_xp + tile * WG_TILE + (n >> 3) * 1024 + (n & 7) * 128)[rest % 32] = 0u;
        }
    } else {
        for (int i = tid; i < 2 * (NT * 8 - a.t) * (XLD / 2); i += THREADS) {
            const int b = i / ((NT * 8 - a.t) * (XLD / 2)), rest = i - b * ((NT * 8 - a.t) * (XLD / 2));
            uint32_t *row = reinterpret_cast<uint32_t *>(xbuf + b * NT * 8 * XLD + (a.t + rest / (XLD / 2)) * XLD);
            row[rest % (XLD / 2)] = 0u;
        }
    }
    if (tid < 16) lv[tid] = a.levels[tid];
    /* absmax of (row, step), double quantization decoded here once */
    {
        const int64_t kq = k >> 6;
        /* the usual case (blocksize 64, double quantization, a row's and a split's absmax codes
         * 4-byte aligned): four steps per thread and load, their nested factor loaded once (a
         * nested block, 256 absmax, never splits a group of four) */
        const bool quad = a.bs_shift == 0 && a.w[0].qabsmax && (a.nw < 2 || a.w[1].qabsmax) &&
                          (a.nw < 3 || a.w[2].qabsmax) && kq % 4 == 0 && (kb >> 6) % 4 == 0;
        if (quad) {
            /* item i = lr * groups + group, items tid, tid + THREADS, ...: (lr, group) advanced
             * without a division per item */
            const int groups = (steps + 3) >> 2, dl = THREADS / groups, dg = THREADS % groups;
            int lr = tid / groups, grp = tid % groups;
#pragma unroll 4
            for (; lr < R; lr += dl, grp += dg, lr += grp >= groups, grp -= grp >= groups ? groups : 0) {
                const int st = 4 * grp, sg = seg_of_row(lr);
                const int64_t row = row_of(lr);
                const qh_cu_nf4 &ws = pick(a.w, sg);
                float v[4] = {0.f, 0.f, 0.f, 0.f};
                if (row < pick(a.n, sg)) {
                    const int64_t b = row * kq + (kb >> 6) + st;
                    const uint32_t c = *reinterpret_cast<const uint32_t *>(ws.qabsmax + b);
                    const float f = ws.nested127[b >> ws.nested_shift];
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        v[e] = __fadd_rn(__fmul_rn((float)(int8_t)(c >> (8 * e)), f), ws.offset);
                }
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (st + e < steps) amx[lr * AMAX_LD + st + e] = __float2half2_rn(v[e]);
            }
        } else { /* a row per thread (two threads per row at 128 rows), loads unrolled */
            const int lr = tid % R, sg = seg_of_row(lr), part = tid / R, parts = THREADS / R;
            const int64_t row = row_of(lr);
            const bool live = row < pick(a.n, sg);
            const qh_cu_nf4 ws = pick(a.w, sg);
            const int64_t b0 = (live ? row : 0) * kq + (kb >> 6);
#pragma unroll 8
            for (int st = part; st < steps; st += parts)
                amx[lr * AMAX_LD + st] = __float2half2_rn(live ? qh_nf4_scale(ws, (b0 + st) >> a.bs_shift) : 0.f);
        }
    }
    __syncthreads();
    /* table: word e * 32 + l holds code byte e's two levels (a copy per lane: 32 look-ups of
     * random bytes hit 32 banks). Thread e writes byte e's 32 copies, 16 bytes a store, its
     * stores rotated by e so that each quarter warp's stores fall in distinct banks. */
    static_assert(LUT_WORDS == 32 * THREADS, "one code byte per thread");
    {
        __half2 h = __floats2half2_rn(lv[tid >> 4], lv[tid & 15]);
        const uint32_t wv = *reinterpret_cast<uint32_t *>(&h);
        const uint4 w4 = make_uint4(wv, wv, wv, wv);
#pragma unroll
        for (int r = 0; r < 8; r++) reinterpret_cast<uint4 *>(lut + tid * 32)[(r + tid) & 7] = w4;
    }
    /* Everything so far read only weights: with programmatic dependent launch it overlapped the
     * kernel before (RMSNorm, attention, the gate/up product). x and y from here on. */
    qh_pdl_wait();
    stage(0, 0);

    float acc[MT][NT][4];
#pragma unroll
    for (int j = 0; j < MT; j++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++) acc[j][nt][0] = acc[j][nt][1] = acc[j][nt][2] = acc[j][nt][3] = 0.f;

    const int chunks = (steps + CHUNK - 1) / CHUNK;
    for (int s0 = 0; s0 < steps; s0 += G) {
        uint2 cur[G][MT][2];
#pragma unroll
        for (int u = 0; u < G; u++)
#pragma unroll
            for (int j = 0; j < MT; j++) cur[u][j][0] = nxt[u][j][0], cur[u][j][1] = nxt[u][j][1];
        if (s0 + G < steps) load(s0 + G); /* in flight while this group multiplies */
#pragma unroll
        for (int u = 0; u < G; u++) {
            const int st = s0 + u;
            if (st >= steps) break;
            const int c = st / CHUNK;
            if (st % CHUNK == 0) { /* x chunk c: the buffer of chunk c - 1 gets chunk c + 1 */
                /* this warp's products of chunk c - 1 are done (each step waits for its own; this
                 * keeps the barrier's promise independent of that) */
                if constexpr (WG) qh_wgmma_wait<0>();
                __syncthreads();   /* everyone is done with chunk c - 1 (first time: table, absmax) */
                if (c + 1 < chunks) {
                    stage(c + 1, (c + 1) & 1);
                    qh_cp_async_wait<1>();
                } else {
                    qh_cp_async_wait<0>();
                }
                /* the copies (and the zero rows) visible to the products' reads (the async proxy) */
                if constexpr (WG) asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
                __syncthreads(); /* chunk c visible to all */
            }
            if constexpr (WG) {
                /* the step's four k-substeps (2sp + half) as A fragments from the table as below,
                 * then four warpgroup products on the step's x tile (k-substep s at 32 s bytes),
                 * waited for before the next step's look-ups: ptxas serializes products whose
                 * register operands are written while earlier ones are in flight (C7513), so the
                 * overlap comes from the other warps (two steps a wait measured slower, NOTES) */
                const __half2 s0h = amx[(wlr + g) * AMAX_LD + st], s1h = amx[(wlr + 8 + g) * AMAX_LD + st];
                unsigned A[4][4];
#pragma unroll
                for (int sp = 0; sp < 2; sp++)
#pragma unroll
                    for (int half = 0; half < 2; half++) {
                        const unsigned lw = sp == 0 ? cur[u][0][0].x : cur[u][0][0].y;
                        const unsigned hw = sp == 0 ? cur[u][0][1].x : cur[u][0][1].y;
                        unsigned(&f)[4] = A[2 * sp + half];
                        f[0] = level_pair(lut_lane, lw, 2 * half, s0h);
                        f[1] = level_pair(lut_lane, hw, 2 * half, s1h);
                        f[2] = level_pair(lut_lane, lw, 2 * half + 1, s0h);
                        f[3] = level_pair(lut_lane, hw, 2 * half + 1, s1h);
                    }
                const uint32_t tile = wg_x + (c & 1) * WG_BUF + (st - c * CHUNK) * WG_TILE;
                qh_wgmma_fence();
#pragma unroll
                for (int s4 = 0; s4 < 4; s4++) qh_wgmma_f16_rA<NT>(acc[0], A[s4], qh_wgmma_sw128_desc(tile + 32 * s4));
                qh_wgmma_commit();
                qh_wgmma_wait<0>();
            } else {
                __half2 sc[MT][2];
#pragma unroll
                for (int j = 0; j < MT; j++)
#pragma unroll
                    for (int h = 0; h < 2; h++) sc[j][h] = amx[(wlr + 16 * j + 8 * h + g) * AMAX_LD + st];
                const __half *xs = xbuf + (c & 1) * NT * 8 * XLD + (st - c * CHUNK) * KSTEP + 16 * q;
#pragma unroll
                for (int sp = 0; sp < 2; sp++) {
                    uint4 bq[NT]; /* x fragments of k-steps 2sp and 2sp + 1 */
#pragma unroll
                    for (int nt = 0; nt < NT; nt++)
                        bq[nt] = *reinterpret_cast<const uint4 *>(xs + (nt * 8 + g) * XLD + 8 * sp);
#pragma unroll
                    for (int half = 0; half < 2; half++) {
                        unsigned A[MT][4];
#pragma unroll
                        for (int j = 0; j < MT; j++) {
                            const unsigned lw = sp == 0 ? cur[u][j][0].x : cur[u][j][0].y;
                            const unsigned hw = sp == 0 ? cur[u][j][1].x : cur[u][j][1].y;
                            A[j][0] = level_pair(lut_lane, lw, 2 * half, sc[j][0]);
                            A[j][1] = level_pair(lut_lane, hw, 2 * half, sc[j][1]);
                            A[j][2] = level_pair(lut_lane, lw, 2 * half + 1, sc[j][0]);
                            A[j][3] = level_pair(lut_lane, hw, 2 * half + 1, sc[j][1]);
                        }
#pragma unroll
                        for (int nt = 0; nt < NT; nt++) {
                            const uint2 bv = half ? make_uint2(bq[nt].z, bq[nt].w) : make_uint2(bq[nt].x, bq[nt].y);
#pragma unroll
                            for (int j = 0; j < MT; j++) qh_mma16816(acc[j][nt], A[j], bv);
                        }
                    }
                }
            }
        }
    }
    if constexpr (WG) {
        qh_wgmma_wait<0>();
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) qh_reg_fence(acc[0][nt][e]);
    }
    __syncthreads(); /* the table and x buffers take the partial sums now */

    /* acc[j][nt]: rows (wlr + 16j + g, + 8) x tokens (8nt + 2q, + 1); into red[token][row] */
#pragma unroll
    for (int j = 0; j < MT; j++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                red[(nt * 8 + 2 * q + (e & 1)) * RLD + wlr + 16 * j + g + (e >= 2 ? 8 : 0)] = acc[j][nt][e];
    cg::cluster_group cluster = cg::this_cluster();
    const int splits = (int)cluster.num_blocks(), rank = (int)cluster.block_rank();
    const int rout = a.paired ? R / 2 : R, rshift = a.paired ? (MT == 1 ? 6 : 7) : (MT == 1 ? 7 : 8);
    const int total = a.t * rout, share = (total + splits - 1) / splits;
    const int e1 = (rank + 1) * share < total ? (rank + 1) * share : total;
    const int64_t yn = pick(a.n, bseg);
    void *yp = pick(a.y, bseg);
    cluster.sync();
    /* Each output of this block's share: every split's partial sum loaded first (all in flight
     * together), then added in split order. S, the cluster's size, is a compile-time constant
     * (a uniform switch below), so exactly S partial sums are loaded. */
    auto reduce = [&](auto s_const) {
        constexpr int S = decltype(s_const)::value;
        const float *src[S];
#pragma unroll
        for (int s = 0; s < S; s++) src[s] = cluster.map_shared_rank(red, s);
        for (int e = rank * share + tid; e < e1; e += THREADS) {
            const int tok = e >> rshift, r = e - tok * rout; /* rout = 1 << rshift */
            const int64_t row = r0 + r;
            float pv[S], pu[S];
#pragma unroll
            for (int s = 0; s < S; s++) pv[s] = src[s][tok * RLD + r];
            if (a.paired) {
#pragma unroll
                for (int s = 0; s < S; s++) pu[s] = src[s][tok * RLD + r + R / 2];
            }
            float v = 0.f, u = 0.f;
#pragma unroll
            for (int s = 0; s < S; s++) v += pv[s];
            if (row >= yn) continue;
            const int64_t i = (int64_t)tok * yn + row;
            if (a.paired) { /* the plain path: gate and up rounded to fp16, then silu_mul */
#pragma unroll
                for (int s = 0; s < S; s++) u += pu[s];
                const float gh = qh_round_h(v), uh = qh_round_h(u);
                static_cast<__half *>(yp)[i] = __float2half_rn(qh_silu_mul(gh, uh));
            } else if (a.y_type == QH_CU_F32) {
                float *yf = static_cast<float *>(yp);
                yf[i] = a.accumulate ? yf[i] + v : v;
            } else {
                __half *yh = static_cast<__half *>(yp);
                yh[i] = __float2half_rn(a.accumulate ? __half2float(yh[i]) + v : v);
            }
        }
    };
    static_assert(MAXS == 8, "one case per cluster size");
    switch (splits) {
    case 1: reduce(std::integral_constant<int, 1>{}); break;
    case 2: reduce(std::integral_constant<int, 2>{}); break;
    case 3: reduce(std::integral_constant<int, 3>{}); break;
    case 4: reduce(std::integral_constant<int, 4>{}); break;
    case 5: reduce(std::integral_constant<int, 5>{}); break;
    case 6: reduce(std::integral_constant<int, 6>{}); break;
    case 7: reduce(std::integral_constant<int, 7>{}); break;
    default: reduce(std::integral_constant<int, 8>{}); break;
    }
    /* No block leaves while the others may still read its shared memory. Nothing is published
     * here (every remote read above has returned: its value was added), so the arrival is
     * relaxed: the default release would first wait for this block's stores of y to reach the
     * GPU's memory (a MEMBAR.ALL.GPU, 1% of the kernel's warp samples in Nsight Compute). */
    asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
    asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory");
#endif
}

template <int NT, int MT>
cudaError_t launch(cudaStream_t s, const small_args &a, const qh_cu_nf4_small_job *j)
{
    static size_t opted; /* per kernel instance */
    const cudaError_t e = qh_smem_opt_in(nf4_small_kernel<NT, MT>, j->smem, &opted);
    if (e != cudaSuccess) return e;
    return qh_launch_pdl_cluster(nf4_small_kernel<NT, MT>, dim3((unsigned)j->tiles, (unsigned)j->splits), dim3(THREADS),
                                 j->smem, s, (unsigned)j->splits, a);
}

} // namespace

extern "C" int qh_cu_nf4_small(cudaStream_t s, const qh_cu_nf4_small_job *j)
{
    if (j->t <= 0) return (int)cudaGetLastError();
    if (j->nw < 1 || j->nw > MAXW || j->splits < 1 || j->splits > MAXS || j->t > 8 * j->token_tiles ||
        j->token_tiles < 1 || j->token_tiles > 8 || (j->rows != 128 && j->rows != 256) || j->tiles < 1 ||
        j->tiles > 0x7fffffff)
        return (int)cudaErrorInvalidValue;
    small_args a = {};
    int64_t tiles = 0;
    const int per_tile = j->paired ? j->rows / 2 : j->rows;
    for (int i = 0; i < j->nw; i++) {
        a.w[i] = j->w[i], a.n[i] = j->n[i], a.y[i] = j->y[i];
        a.tile0[i] = tiles;
        if (!j->paired || i == 0) tiles += (j->n[i] + per_tile - 1) / per_tile; /* a pair: gate's tiles */
    }
    if (tiles != j->tiles) return (int)cudaErrorInvalidValue;
    a.x = static_cast<const __half *>(j->x);
    a.k = j->k;
    a.nw = j->nw, a.paired = j->paired, a.t = (int)j->t, a.kr = j->kr, a.bs_shift = j->bs_shift;
    a.y_type = j->y_type, a.accumulate = j->accumulate;
    for (int i = 0; i < 16; i++) a.levels[i] = j->levels[i];
    const bool two = j->rows == 256;
    cudaError_t e;
    switch (j->token_tiles * 2 + (two ? 1 : 0)) {
    case 2: e = launch<1, 1>(s, a, j); break;
    case 3: e = launch<1, 2>(s, a, j); break;
    case 4: e = launch<2, 1>(s, a, j); break;
    case 5: e = launch<2, 2>(s, a, j); break;
    case 6: e = launch<3, 1>(s, a, j); break;
    case 7: e = launch<3, 2>(s, a, j); break;
    case 8: e = launch<4, 1>(s, a, j); break;
    case 9: e = launch<4, 2>(s, a, j); break;
    case 10: e = launch<5, 1>(s, a, j); break;
    case 12: e = launch<6, 1>(s, a, j); break;
    case 14: e = launch<7, 1>(s, a, j); break;
    case 16: e = launch<8, 1>(s, a, j); break;
    default: return (int)cudaErrorInvalidValue; /* more than 32 tokens with 256 rows */
    }
    return (int)e;
}
