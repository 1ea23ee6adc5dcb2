/* Hopper warpgroup matrix products (wgmma): the shared-memory descriptors, fences and waits the
 * int8 kernel (cuda_i8_gemm.cu) and the nf4 small-batch kernel (cuda_nf4_small.cu) use, and the
 * fp16 product with the A operand in registers and B in shared memory (128-byte swizzle,
 * K-major), fp32 accumulators, that multiplies the nf4 kernel's dequantized weights. The
 * instructions exist in sm_90a code only (__CUDA_ARCH_FEAT_SM90_ALL); elsewhere these are empty.
 *
 * qh_wgmma_f16_rA<NT>(d, a, desc): D[64 x 8NT] += A[64 x 16] B[16 x 8NT]. a: this thread's
 * fragment of A, the m16n8k16 A fragment of its warp's 16 rows (warp w of the warpgroup: rows
 * 16w ..); d: 4NT accumulators, the m16n8 layout per 8 columns (d[4i + e] as mma.sync's c for
 * columns 8i ..). The asm statements differ only in the accumulator count, one per NT. */
#ifndef QHEAD_CUDA_WGMMA_F16_CUH
#define QHEAD_CUDA_WGMMA_F16_CUH

#include <stdint.h>

/* Descriptor of a K-major operand in the 128-byte swizzle: rows of 128 bytes along K (64 fp16,
 * 128 int8), 8-row groups 1024 bytes apart (stride byte offset); the leading byte offset is
 * unused by this layout. Advancing 32 bytes along K (16 fp16, 32 int8: one k-step of an fp16 or
 * int8 product) adds 32 to the start address. */
__device__ __forceinline__ uint64_t qh_wgmma_sw128_desc(uint32_t addr)
{
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) |
           ((uint64_t)1 << 62);
}
/* Byte offset of (row, byte b of the row's 128) in a 128-byte-swizzled tile: 16-byte chunk c of
 * row r is stored as chunk c ^ (r % 8). */
__device__ __forceinline__ uint32_t qh_sw128_offset(int row, int b)
{
    return (uint32_t)(row * 128 + ((((b >> 4) ^ row) & 7) << 4) + (b & 15));
}

__device__ __forceinline__ void qh_wgmma_fence()
{
#ifdef __CUDA_ARCH_FEAT_SM90_ALL
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void qh_wgmma_commit()
{
#ifdef __CUDA_ARCH_FEAT_SM90_ALL
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N> __device__ __forceinline__ void qh_wgmma_wait()
{
#ifdef __CUDA_ARCH_FEAT_SM90_ALL
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
/* Pins an accumulator of an asynchronous product: the compiler does not read it before this
 * point (placed after the product's wait). */
__device__ __forceinline__ void qh_reg_fence(float &r) { asm volatile("" : "+f"(r)::"memory"); }
__device__ __forceinline__ void qh_reg_fence(int32_t &r) { asm volatile("" : "+r"(r)::"memory"); }

template <int NT>
__device__ __forceinline__ void qh_wgmma_f16_rA(float (&d)[NT][4], const unsigned (&a)[4], uint64_t desc);

/* One specialization per NT, the same asm but for the accumulator count: D(i) are the four
 * accumulators of columns 8i .., operands numbered outputs first. */
#define QH_WGMMA_D(i) "+f"(d[i][0]), "+f"(d[i][1]), "+f"(d[i][2]), "+f"(d[i][3])
#ifdef __CUDA_ARCH_FEAT_SM90_ALL
#define QH_WGMMA_F16_RA_ASM(STR, ...)                                                                                  \
    asm volatile(STR:__VA_ARGS__ : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc))
#else
#define QH_WGMMA_F16_RA_ASM(STR, ...) ((void)d, (void)a, (void)desc)
#endif
#define QH_WGMMA_F16_RA(NT, N, DREGS, REST, ...)                                                                       \
    template <>                                                                                                        \
    __device__ __forceinline__ void qh_wgmma_f16_rA<NT>(float(&d)[NT][4], const unsigned(&a)[4], uint64_t desc)        \
    {                                                                                                                  \
        QH_WGMMA_F16_RA_ASM("wgmma.mma_async.sync.aligned.m64n" #N "k16.f32.f16.f16 {" DREGS "}, " REST                \
                            ", 1, 1, 1, 0;\n",                                                                         \
                            __VA_ARGS__);                                                                              \
    }

QH_WGMMA_F16_RA(1, 8, "%0, %1, %2, %3", "{%4, %5, %6, %7}, %8", QH_WGMMA_D(0))
QH_WGMMA_F16_RA(2, 16, "%0, %1, %2, %3, %4, %5, %6, %7", "{%8, %9, %10, %11}, %12", QH_WGMMA_D(0), QH_WGMMA_D(1))
QH_WGMMA_F16_RA(3, 24, "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11", "{%12, %13, %14, %15}, %16", QH_WGMMA_D(0),
                QH_WGMMA_D(1), QH_WGMMA_D(2))
QH_WGMMA_F16_RA(4, 32, "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15",
                "{%16, %17, %18, %19}, %20", QH_WGMMA_D(0), QH_WGMMA_D(1), QH_WGMMA_D(2), QH_WGMMA_D(3))
QH_WGMMA_F16_RA(5, 40, "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19",
                "{%20, %21, %22, %23}, %24", QH_WGMMA_D(0), QH_WGMMA_D(1), QH_WGMMA_D(2), QH_WGMMA_D(3), QH_WGMMA_D(4))
QH_WGMMA_F16_RA(
    6, 48,
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23",
    "{%24, %25, %26, %27}, %28", QH_WGMMA_D(0), QH_WGMMA_D(1), QH_WGMMA_D(2), QH_WGMMA_D(3), QH_WGMMA_D(4),
    QH_WGMMA_D(5))
QH_WGMMA_F16_RA(7, 56,
                "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, "
                "%22, %23, %24, %25, %26, %27",
                "{%28, %29, %30, %31}, %32", QH_WGMMA_D(0), QH_WGMMA_D(1), QH_WGMMA_D(2), QH_WGMMA_D(3), QH_WGMMA_D(4),
                QH_WGMMA_D(5), QH_WGMMA_D(6))
QH_WGMMA_F16_RA(8, 64,
                "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, "
                "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31",
                "{%32, %33, %34, %35}, %36", QH_WGMMA_D(0), QH_WGMMA_D(1), QH_WGMMA_D(2), QH_WGMMA_D(3), QH_WGMMA_D(4),
                QH_WGMMA_D(5), QH_WGMMA_D(6), QH_WGMMA_D(7))
#undef QH_WGMMA_F16_RA
#undef QH_WGMMA_F16_RA_ASM
#undef QH_WGMMA_D

#endif
