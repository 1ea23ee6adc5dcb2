/* int8 x int8 products with the LLM.int8() scales applied in the epilogue, on Hopper's
 * asynchronous tensor-core instructions (sm_90a): large token batches.
 *
 * Why an own kernel: cuBLASLt's int8 kernels can only write int32 (bench_int8_scaling: with
 * row x column scales or fp16 output it offers no algorithm), so the backend wrote the int32 sums
 * and a second kernel read them back: 8 bytes per output element more than the fp16 path, about
 * 0.7 s of the 12,284-tweet pass (bench/NOTES.md). Here the sums never leave registers.
 *
 * Design (one persistent block per SM, 384 threads, warp-specialized):
 *  - warpgroup 0 (one thread) is the producer: TMA copies the input tile A [128 tokens x 128
 *    codes] and the weight tile B [256 rows x 128 codes] into a ring of STAGES shared-memory
 *    stages (128-byte swizzle, the layout wgmma reads), each stage guarded by a "full" and an
 *    "empty" mbarrier;
 *  - warpgroups 1 and 2 are consumers: each multiplies its 64 token rows by all 256 weight rows
 *    with wgmma m64n256k32 (int32 accumulators in registers: 128 per thread), releases the stage,
 *    and after the last k tile applies (acc * s_token) * (SCB_row / 127) exactly as
 *    qh_i8_dequant (the division done once per row at upload) and writes fp16 or fp32 (stored,
 *    or added to y);
 *  - paired mode (gate and up, SwiGLU): B's 256 rows are 128 of gate and the same 128 of up, so a
 *    thread holds gate and up of the same outputs and writes silu(g) * u as i8_swiglu_kernel does.
 * Tiles are visited in groups of GROUP_M token tiles so that the blocks running at once share
 * their inputs and weights in L2. Rows and codes past the tensors' ends are zero-filled by TMA.
 * The numbers are those of cuBLASLt + i8_epilogue_kernel bit for bit (integer sums are exact). */
#include "cuda_device_math.cuh"
#include "cuda_internal.h"
#include "cuda_wgmma.cuh"

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace {

constexpr int BM = 128, BK = 128, STAGES = 4, GROUP_M = 16, THREADS = 384;
constexpr int A_BYTES = BM * BK, B_BYTES = 256 * BK, STAGE_BYTES = A_BYTES + B_BYTES;
constexpr int SMEM_BYTES = STAGES * STAGE_BYTES + 1024 + 2 * STAGES * 8 + 2 * 2 * 256 * 4;
constexpr int CONSUMER_WARPS = 8;

enum { OUT_F16, OUT_F16_ADD, OUT_F32, OUT_F32_ADD, OUT_SWIGLU };

struct i8_epi {
    const float *sx, *f, *f2; /* token scales, weight row factors SCB / 127 (f2: up's, paired) */
    const float *extra;       /* OUT_F16: fp32 [t, n] added before rounding (the outlier columns' product), or NULL */
    void *y;
    int64_t t, n;
};

__device__ __forceinline__ void mbar_init(uint64_t *b, unsigned count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(qh_smem_u32(b)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t *b, unsigned bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(qh_smem_u32(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *b)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(qh_smem_u32(b)) : "memory");
}
/* Wait until the barrier's phase with this parity has completed. */
__device__ __forceinline__ void mbar_wait(uint64_t *b, unsigned parity)
{
    asm volatile("{\n.reg .pred done;\n"
                 "WAIT:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                 "@!done bra WAIT;\n"
                 "}\n" ::"r"(qh_smem_u32(b)),
                 "r"(parity)
                 : "memory");
}

/* A [rows x 128 codes] box at (column x, row y) of the tensor map into shared memory; completion
 * (its bytes) is signalled on bar. */
__device__ __forceinline__ void tma_load(void *dst, const CUtensorMap *map, uint64_t *bar, int x, int y)
{
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::"r"(
                     qh_smem_u32(dst)),
                 "l"((uint64_t)map), "r"(qh_smem_u32(bar)), "r"(x), "r"(y)
                 : "memory");
}

/* D[64 x 256] (+)= A[64 x 32] B[256 x 32]^T, int8 -> int32: one warpgroup, both operands from shared
 * memory (descriptors). d: this thread's 128 accumulators (layout: see epilogue). */
__device__ __forceinline__ void wgmma_s8_m64n256k32(int32_t (&d)[128], uint64_t da, uint64_t db, int accumulate)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
        "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
        "}, %128, %129, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
          "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
          "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
          "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
          "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]),
          "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
          "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
          "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]),
          "+r"(d[64]), "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]),
          "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]), "+r"(d[78]), "+r"(d[79]),
          "+r"(d[80]), "+r"(d[81]), "+r"(d[82]), "+r"(d[83]), "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]),
          "+r"(d[88]), "+r"(d[89]), "+r"(d[90]), "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95]),
          "+r"(d[96]), "+r"(d[97]), "+r"(d[98]), "+r"(d[99]), "+r"(d[100]), "+r"(d[101]), "+r"(d[102]), "+r"(d[103]),
          "+r"(d[104]), "+r"(d[105]), "+r"(d[106]), "+r"(d[107]), "+r"(d[108]), "+r"(d[109]), "+r"(d[110]), "+r"(d[111]),
          "+r"(d[112]), "+r"(d[113]), "+r"(d[114]), "+r"(d[115]), "+r"(d[116]), "+r"(d[117]), "+r"(d[118]), "+r"(d[119]),
          "+r"(d[120]), "+r"(d[121]), "+r"(d[122]), "+r"(d[123]), "+r"(d[124]), "+r"(d[125]), "+r"(d[126]), "+r"(d[127])
        : "l"(da), "l"(db), "r"(accumulate));
}

/* Token tile and weight tile of tile number i: GROUP_M token tiles at a time, all weight tiles
 * for them, so the ~132 blocks running at once read a few token tiles and weight tiles from L2. */
__device__ __forceinline__ void tile_of(int i, int tiles_m, int tiles_n, int &tm, int &tn)
{
    const int per_group = GROUP_M * tiles_n, g = i / per_group, first = g * GROUP_M;
    const int gm = tiles_m - first < GROUP_M ? tiles_m - first : GROUP_M, r = i - g * per_group;
    tm = first + r % gm, tn = r / gm;
}

/* The accumulator layout of wgmma m64nN for thread (warp wq of the warpgroup, lane): d[4j + e]
 * is row 16 wq + lane / 4 (+ 8 for e >= 2), column 8 j + 2 (lane % 4) (+ 1 for odd e). Each value
 * is qh_i8_dequant_f(acc, s_token, f_row), f = SCB / 127 divided at upload (qh_i8_row_factor).
 * fs: the tile's factors in shared memory (paired: gate's 128, then up's); s0, s1: the scales of
 * the thread's two rows (0 past the end). Loads of y (the adding modes) or of e.extra go in
 * batches of 8 column groups, so that their latencies overlap. */
template <int MODE>
__device__ __forceinline__ void epilogue(const int32_t (&d)[128], const i8_epi &e, const float *fs, float s0, float s1,
                                         int64_t row0, int64_t col0, int lane)
{
    const bool ok[2] = {row0 < e.t, row0 + 8 < e.t};
    const float sr[2] = {s0, s1};
    const int cl = 2 * (lane & 3);
    if constexpr (MODE == OUT_SWIGLU) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            if (!ok[h]) continue;
            __half *y = static_cast<__half *>(e.y) + (row0 + 8 * h) * e.n;
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const int cc = 8 * j + cl;
                const int64_t c = col0 + cc;
                float o[2];
#pragma unroll
                for (int q = 0; q < 2; q++) {
                    const float g = qh_round_h(qh_i8_dequant_f(d[4 * j + 2 * h + q], sr[h], fs[cc + q]));
                    const float u = qh_round_h(qh_i8_dequant_f(d[4 * (j + 16) + 2 * h + q], sr[h], fs[128 + cc + q]));
                    o[q] = qh_silu_mul(g, u);
                }
                if (c + 1 < e.n && e.n % 2 == 0) *reinterpret_cast<__half2 *>(y + c) = __floats2half2_rn(o[0], o[1]);
                else {
                    if (c < e.n) y[c] = __float2half_rn(o[0]);
                    if (c + 1 < e.n) y[c + 1] = __float2half_rn(o[1]);
                }
            }
        }
    } else {
        constexpr bool F16 = MODE == OUT_F16 || MODE == OUT_F16_ADD, ADD = MODE == OUT_F16_ADD || MODE == OUT_F32_ADD;
        const bool vec = e.n % 2 == 0; /* c even, n even: two neighbours, 4- or 8-byte aligned */
#pragma unroll
        for (int h = 0; h < 2; h++) {
            if (!ok[h]) continue;
            const int64_t r = row0 + 8 * h;
#pragma unroll
            for (int jb = 0; jb < 32; jb += 8) {
                float2 a[8];
#pragma unroll
                for (int j = jb; j < jb + 8; j++) { /* the values y holds, all loads in flight at once */
                    const int64_t c = col0 + 8 * j + cl;
                    a[j - jb] = make_float2(0.f, 0.f);
                    if (c >= e.n) continue;
                    if (!ADD) {
                        if (MODE != OUT_F16 || !e.extra) continue;
                        const float *x = e.extra + r * e.n + c;
                        a[j - jb] = vec ? *reinterpret_cast<const float2 *>(x) : make_float2(x[0], c + 1 < e.n ? x[1] : 0.f);
                    } else if (F16) {
                        const __half *y = static_cast<const __half *>(e.y) + r * e.n + c;
                        if (vec) a[j - jb] = __half22float2(*reinterpret_cast<const __half2 *>(y));
                        else a[j - jb] = make_float2(__half2float(y[0]), c + 1 < e.n ? __half2float(y[1]) : 0.f);
                    } else {
                        const float *y = static_cast<const float *>(e.y) + r * e.n + c;
                        if (vec) a[j - jb] = *reinterpret_cast<const float2 *>(y);
                        else a[j - jb] = make_float2(y[0], c + 1 < e.n ? y[1] : 0.f);
                    }
                }
#pragma unroll
                for (int j = jb; j < jb + 8; j++) {
                    const int cc = 8 * j + cl;
                    const int64_t c = col0 + cc;
                    if (c >= e.n) continue;
                    float v0 = qh_i8_dequant_f(d[4 * j + 2 * h], sr[h], fs[cc]), v1 = qh_i8_dequant_f(d[4 * j + 2 * h + 1], sr[h], fs[cc + 1]);
                    if (ADD || (MODE == OUT_F16 && e.extra)) v0 = __fadd_rn(v0, a[j - jb].x), v1 = __fadd_rn(v1, a[j - jb].y);
                    if (F16) {
                        __half *y = static_cast<__half *>(e.y) + r * e.n + c;
                        if (vec) *reinterpret_cast<__half2 *>(y) = __floats2half2_rn(v0, v1);
                        else {
                            y[0] = __float2half_rn(v0);
                            if (c + 1 < e.n) y[1] = __float2half_rn(v1);
                        }
                    } else {
                        float *y = static_cast<float *>(e.y) + r * e.n + c;
                        if (vec) *reinterpret_cast<float2 *>(y) = make_float2(v0, v1);
                        else {
                            y[0] = v0;
                            if (c + 1 < e.n) y[1] = v1;
                        }
                    }
                }
            }
        }
    }
}

template <int MODE>
__global__ void __launch_bounds__(THREADS, 1)
    i8_wgmma_kernel(const __grid_constant__ CUtensorMap ta, const __grid_constant__ CUtensorMap tb,
                    const __grid_constant__ CUtensorMap tb2, const i8_epi e, int ktiles, int tiles_m, int tiles_n)
{
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL) /* the host pass parses it too */
    extern __shared__ unsigned char smem_raw[];
    unsigned char *smem = reinterpret_cast<unsigned char *>(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint64_t *full = reinterpret_cast<uint64_t *>(smem + STAGES * STAGE_BYTES), *empty = full + STAGES;
    const int wg = threadIdx.x / 128, lane = threadIdx.x & 31;
    const bool paired = MODE == OUT_SWIGLU;
    const int bn = paired ? 128 : 256; /* output columns per tile */
    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) mbar_init(&full[s], 1), mbar_init(&empty[s], CONSUMER_WARPS);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    }
    __syncthreads();
    const int ntiles = tiles_m * tiles_n;
    if (wg == 0) {
        /* the producer needs few registers; the consumers' 128 accumulators get them */
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
        if (threadIdx.x != 0) return;
        int it = 0;
        for (int i = blockIdx.x; i < ntiles; i += gridDim.x) {
            int tm, tn;
            tile_of(i, tiles_m, tiles_n, tm, tn);
            for (int kt = 0; kt < ktiles; kt++, it++) {
                const int s = it % STAGES, round = it / STAGES;
                if (round > 0) mbar_wait(&empty[s], (round - 1) & 1);
                unsigned char *a = smem + s * STAGE_BYTES, *b = a + A_BYTES;
                mbar_expect_tx(&full[s], STAGE_BYTES);
                tma_load(a, &ta, &full[s], kt * BK, tm * BM);
                if (paired) {
                    tma_load(b, &tb, &full[s], kt * BK, tn * 128);
                    tma_load(b + 128 * BK, &tb2, &full[s], kt * BK, tn * 128);
                } else {
                    tma_load(b, &tb, &full[s], kt * BK, tn * 256);
                    tma_load(b + 128 * BK, &tb, &full[s], kt * BK, tn * 256 + 128);
                }
            }
        }
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int cw = wg - 1; /* token rows 64 cw .. 64 cw + 63 of the tile */
    int32_t d[128];
#pragma unroll
    for (int i = 0; i < 128; i++) d[i] = 0;
    const int ct = threadIdx.x & 127; /* thread of the warpgroup */
    const int64_t rbase = cw * 64 + ((threadIdx.x >> 5) & 3) * 16 + (lane >> 2);
    /* [warpgroup][2][256]: each warpgroup's copy of the factors of every other tile, so that the
     * two warpgroups never wait for each other (one may start its epilogue while the other still
     * multiplies) */
    float *fbuf = reinterpret_cast<float *>(empty + STAGES) + cw * 512;
    int it = 0, ti = 0;
    for (int i = blockIdx.x; i < ntiles; i += gridDim.x, ti++) {
        int tm, tn;
        tile_of(i, tiles_m, tiles_n, tm, tn);
        /* The epilogue's factors and scales, loaded now and used after the main loop (their
         * latency hides behind it): two factors per thread (columns ct and 128 + ct of the tile;
         * paired: gate's and up's column ct), staged in shared memory. */
        const int64_t row0 = (int64_t)tm * BM + rbase;
        const int64_t fc0 = paired ? (int64_t)tn * 128 + ct : (int64_t)tn * 256 + ct, fc1 = paired ? fc0 : fc0 + 128;
        const float fv0 = fc0 < e.n ? e.f[fc0] : 0.f, fv1 = fc1 < e.n ? (paired ? e.f2[fc1] : e.f[fc1]) : 0.f;
        const float s0 = row0 < e.t ? e.sx[row0] : 0.f, s1 = row0 + 8 < e.t ? e.sx[row0 + 8] : 0.f;
        /* one batch of wgmma in flight while the next stage's is issued: a stage is released once
         * the batch after it has been committed and its own batch has completed */
        int prev = -1;
        for (int kt = 0; kt < ktiles; kt++, it++) {
            const int s = it % STAGES;
            mbar_wait(&full[s], (it / STAGES) & 1);
            const uint32_t a = qh_smem_u32(smem + s * STAGE_BYTES) + cw * 64 * BK, b = qh_smem_u32(smem + s * STAGE_BYTES + A_BYTES);
            qh_wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < BK / 32; kk++)
                wgmma_s8_m64n256k32(d, qh_wgmma_sw128_desc(a + 32 * kk), qh_wgmma_sw128_desc(b + 32 * kk), kt > 0 || kk > 0);
            qh_wgmma_commit();
            qh_wgmma_wait<1>();
            if (prev >= 0 && lane == 0) mbar_arrive(&empty[prev]);
            prev = s;
        }
        qh_wgmma_wait<0>();
#pragma unroll
        for (int r = 0; r < 128; r++) qh_reg_fence(d[r]);
        if (prev >= 0 && lane == 0) mbar_arrive(&empty[prev]);
        /* Two buffers: a thread writes this tile's after the barrier of the tile before, which
         * every thread of the warpgroup passed only after the epilogue that read this buffer last. */
        float *fs = fbuf + (ti & 1) * 256;
        fs[ct] = fv0, fs[128 + ct] = fv1;
        if (cw) asm volatile("bar.sync 2, 128;\n" ::: "memory"); /* this warpgroup's 128 threads */
        else asm volatile("bar.sync 1, 128;\n" ::: "memory");
        epilogue<MODE>(d, e, fs, s0, s1, row0, (int64_t)tn * bn, lane);
    }
#endif
}

/* The driver's tensor-map encoder, looked up once (thread-safe static initialisation); NULL
 * where the driver has none, and the kernel is not used. */
PFN_cuTensorMapEncodeTiled_v12000 encode_fn(void)
{
    static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void *p = NULL;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
            q != cudaDriverEntryPointSuccess)
            p = NULL;
        return (PFN_cuTensorMapEncodeTiled_v12000)p;
    }();
    return fn;
}

/* Map of an int8 matrix [rows, cols] (rows cols bytes apart), read in boxes of 128 x 128. */
bool codes_map(CUtensorMap *m, const void *p, int64_t rows, int64_t cols)
{
    PFN_cuTensorMapEncodeTiled_v12000 fn = encode_fn();
    if (!fn) return false;
    cuuint64_t dims[2] = {(cuuint64_t)cols, (cuuint64_t)rows}, strides[1] = {(cuuint64_t)cols};
    cuuint32_t box[2] = {BK, 128}, el[2] = {1, 1};
    return fn(m, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void *>(p), dims, strides, box, el,
              CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
              CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

template <int MODE>
cudaError_t launch(cudaStream_t s, int n_sm, const CUtensorMap &ta, const CUtensorMap &tb, const CUtensorMap &tb2,
                   const i8_epi &e, int64_t kp)
{
    /* per call (about a microsecond): the attribute belongs to the current device */
    cudaError_t err = cudaFuncSetAttribute(i8_wgmma_kernel<MODE>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_BYTES);
    if (err != cudaSuccess) return err;
    const int bn = MODE == OUT_SWIGLU ? 128 : 256;
    const int tiles_m = (int)((e.t + BM - 1) / BM), tiles_n = (int)((e.n + bn - 1) / bn);
    const int ntiles = tiles_m * tiles_n, grid = ntiles < n_sm ? ntiles : n_sm;
    i8_wgmma_kernel<MODE><<<grid, THREADS, SMEM_BYTES, s>>>(ta, tb, tb2, e, (int)((kp + BK - 1) / BK), tiles_m, tiles_n);
    return cudaGetLastError();
}

} /* namespace */

extern "C" int qh_cu_i8_gemm_tc_applies(const int8_t *xq, int64_t t, int64_t kp, const int8_t *w, const int8_t *w2,
                                        int64_t n, const float *f2, int adds_extra, const void *y, int f32y,
                                        int accumulate)
{
#ifndef QHEAD_CUDA_WGMMA
    (void)xq, (void)t, (void)kp, (void)w, (void)w2, (void)n, (void)f2, (void)adds_extra, (void)y, (void)f32y, (void)accumulate;
    return 0; /* built without sm_90a code: the kernel is empty */
#else
    const bool paired = w2 != NULL;
    return t > 0 && n > 0 && kp > 0 && kp % 16 == 0 && !(paired && (f32y || accumulate || !f2)) && !(adds_extra && (paired || f32y || accumulate)) &&
           ((uintptr_t)xq | (uintptr_t)w | (uintptr_t)w2) % 16 == 0 && (uintptr_t)y % 8 == 0 && t <= INT32_MAX / 2 &&
           n <= INT32_MAX / 2 && encode_fn() != NULL;
#endif
}

extern "C" int qh_cu_i8_gemm_tc(cudaStream_t s, int n_sm, const int8_t *xq, int64_t t, int64_t kp, const int8_t *w,
                                const int8_t *w2, int64_t n, const float *sx, const float *f, const float *f2,
                                const float *extra, void *y, int f32y, int accumulate)
{
    if (!qh_cu_i8_gemm_tc_applies(xq, t, kp, w, w2, n, f2, extra != NULL, y, f32y, accumulate) || n_sm <= 0) return 1;
    CUtensorMap ta, tb, tb2;
    if (!codes_map(&ta, xq, t, kp) || !codes_map(&tb, w, n, kp) || !codes_map(&tb2, w2 ? w2 : w, n, kp))
        return (int)cudaErrorInvalidValue;
    i8_epi e = {sx, f, f2, extra, y, t, n};
    cudaError_t err;
    if (w2) err = launch<OUT_SWIGLU>(s, n_sm, ta, tb, tb2, e, kp);
    else if (f32y) err = accumulate ? launch<OUT_F32_ADD>(s, n_sm, ta, tb, tb2, e, kp) : launch<OUT_F32>(s, n_sm, ta, tb, tb2, e, kp);
    else err = accumulate ? launch<OUT_F16_ADD>(s, n_sm, ta, tb, tb2, e, kp) : launch<OUT_F16>(s, n_sm, ta, tb, tb2, e, kp);
    return (int)err;
}
