/* bench_int8_scaling: which int8 matrix products cuBLASLt runs on this GPU with the LLM.int8()
 * scaling inside the product, and how fast, against the int32 output the backend reads back.
 *
 *   bench_int8_scaling [--tokens T] [--reps R]
 *
 * y[t, n] = (sum_k xq[t, k] w[n, k]) * sx[t] * sw[n] on the 7B shapes (n x k = 4096 x 4096,
 * 11008 x 4096, 4096 x 11008), int8 codes random. Modes:
 *   i32       int32 output (what cuda_quant.c does today, then its own epilogue kernel)
 *   outer16   fp16 output, A and B scale mode OUTER_VEC_32F (row x column fp32 scales)
 *   outer32   the same with fp32 output
 *   alpha16   fp16 output, alpha a device vector over the weight rows (only one of the scales)
 *   i8out     int8 output, fp32 scalar scale (the documented IMMA combination)
 *   wgmma16   qhead's own kernel (cuda_i8_gemm.cu, Hopper): fp16 output with both scales, the
 *             product and the LLM.int8() epilogue in one pass
 * For each: whether cuBLASLt offers an algorithm, the median time of R calls (CUDA events),
 * int8 TOPS, and for the scaled modes the worst relative error of 256 sampled outputs against
 * the exact int64 sums times the scales. */
#include <stdio.h>

#ifdef QHEAD_HAVE_CUDA

#include "cuda/cuda_internal.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "bench_int8_scaling: %s: %s\n", #x, cudaGetErrorString(e_));          \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

enum { M_I32, M_OUTER16, M_OUTER32, M_ALPHA16, M_I8OUT, N_MODES };
static const char *mode_name[N_MODES] = {"i32", "outer16", "outer32", "alpha16", "i8out"};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static float half_to_float(uint16_t h)
{
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, f;
    if (e == 0) {
        float v = ldexpf((float)m, -24);
        return s ? -v : v;
    }
    if (e == 31) f = s | 0x7f800000u | (m << 13);
    else f = s | ((e + 112) << 23) | (m << 13);
    float v;
    memcpy(&v, &f, 4);
    return v;
}

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void run_shape(cublasLtHandle_t lt, void *ws, size_t ws_bytes, int64_t t, int64_t n, int64_t k, int reps)
{
    size_t wb = (size_t)(n * k), xb = (size_t)(t * k);
    int8_t *hw = malloc(wb), *hx = malloc(xb);
    float *hsw = malloc(sizeof(float) * (size_t)n), *hsx = malloc(sizeof(float) * (size_t)t);
    for (size_t i = 0; i < wb; i++) hw[i] = (int8_t)((int)(next_u32() % 255) - 127);
    for (size_t i = 0; i < xb; i++) hx[i] = (int8_t)((int)(next_u32() % 255) - 127);
    for (int64_t i = 0; i < n; i++) hsw[i] = (0.5f + (next_u32() % 1000) / 1000.0f) * 1e-4f;
    for (int64_t i = 0; i < t; i++) hsx[i] = (0.5f + (next_u32() % 1000) / 1000.0f) * 1e-3f;
    int8_t *dw, *dx;
    float *dsw, *dsx;
    void *dy;
    CK(cudaMalloc((void **)&dw, wb));
    CK(cudaMalloc((void **)&dx, xb));
    CK(cudaMalloc((void **)&dsw, sizeof(float) * (size_t)n));
    CK(cudaMalloc((void **)&dsx, sizeof(float) * (size_t)t));
    CK(cudaMalloc(&dy, sizeof(int32_t) * (size_t)(t * n)));
    CK(cudaMemcpy(dw, hw, wb, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dx, hx, xb, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dsw, hsw, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dsx, hsx, sizeof(float) * (size_t)t, cudaMemcpyHostToDevice));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double ops = 2.0 * (double)t * n * k;

    for (int mode = 0; mode < N_MODES; mode++) {
        cudaDataType_t dtype = mode == M_I32 ? CUDA_R_32I : mode == M_OUTER32 ? CUDA_R_32F : mode == M_I8OUT ? CUDA_R_8I : CUDA_R_16F;
        cudaDataType_t stype = mode == M_I32 ? CUDA_R_32I : CUDA_R_32F;
        cublasLtMatmulDesc_t mm = NULL;
        cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
        cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        cublasStatus_t st = cublasLtMatmulDescCreate(&mm, CUBLAS_COMPUTE_32I, stype);
        if (!st) st = cublasLtMatmulDescSetAttribute(mm, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
        if (!st) st = cublasLtMatmulDescSetAttribute(mm, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
        if (!st && (mode == M_OUTER16 || mode == M_OUTER32)) {
            int32_t sm = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
            st = cublasLtMatmulDescSetAttribute(mm, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &sm, sizeof sm);
            if (!st) st = cublasLtMatmulDescSetAttribute(mm, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &sm, sizeof sm);
            const void *pa = dsw, *pb = dsx;
            if (!st) st = cublasLtMatmulDescSetAttribute(mm, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &pa, sizeof pa);
            if (!st) st = cublasLtMatmulDescSetAttribute(mm, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &pb, sizeof pb);
        }
        if (!st && mode == M_ALPHA16) {
            int32_t pm = CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO;
            st = cublasLtMatmulDescSetAttribute(mm, CUBLASLT_MATMUL_DESC_POINTER_MODE, &pm, sizeof pm);
        }
        if (!st) st = cublasLtMatrixLayoutCreate(&la, CUDA_R_8I, (uint64_t)k, (uint64_t)n, k);
        if (!st) st = cublasLtMatrixLayoutCreate(&lb, CUDA_R_8I, (uint64_t)k, (uint64_t)t, k);
        if (!st) st = cublasLtMatrixLayoutCreate(&ld, dtype, (uint64_t)n, (uint64_t)t, n);
        cublasLtMatmulPreference_t pref = NULL;
        if (!st) st = cublasLtMatmulPreferenceCreate(&pref);
        if (!st)
            st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                      sizeof ws_bytes);
        cublasLtMatmulHeuristicResult_t heur[4];
        int found = 0;
        if (!st) st = cublasLtMatmulAlgoGetHeuristic(lt, mm, la, lb, ld, ld, pref, 4, heur, &found);
        printf("%5lld x %5lld x %5lld  %-8s ", (long long)t, (long long)n, (long long)k, mode_name[mode]);
        if (st || found == 0) {
            printf("not offered (status %d, %d algorithms)\n", (int)st, found);
        } else {
            int32_t ia = 1, ib = 0;
            float fa = mode == M_I8OUT ? 1e-4f : 1.0f, fb = 0.0f;
            const void *alpha = mode == M_I32 ? (const void *)&ia : mode == M_ALPHA16 ? (const void *)dsw : (const void *)&fa;
            const void *beta = mode == M_I32 ? (const void *)&ib : (const void *)&fb;
            float *ms = malloc(sizeof(float) * (size_t)reps);
            cublasStatus_t rs = CUBLAS_STATUS_SUCCESS;
            for (int r = -3; r < reps && !rs; r++) {
                CK(cudaEventRecord(e0, 0));
                rs = cublasLtMatmul(lt, mm, alpha, dw, la, dx, lb, beta, dy, ld, dy, ld, &heur[0].algo, ws, ws_bytes, 0);
                CK(cudaEventRecord(e1, 0));
                CK(cudaEventSynchronize(e1));
                if (r >= 0) CK(cudaEventElapsedTime(&ms[r], e0, e1));
            }
            if (rs) {
                printf("offered, but the call failed (status %d)\n", (int)rs);
            } else {
                qsort(ms, (size_t)reps, sizeof *ms, cmp_f);
                double med = ms[reps / 2];
                printf("%8.3f ms  %6.0f TOPS", med, ops / (med * 1e-3) / 1e12);
                if (mode == M_OUTER16 || mode == M_OUTER32 || mode == M_ALPHA16) {
                    size_t es = mode == M_OUTER32 ? 4 : 2;
                    double worst = 0;
                    for (int s = 0; s < 256; s++) {
                        int64_t i = (int64_t)(next_u32() % (uint32_t)t), j = (int64_t)(next_u32() % (uint32_t)n);
                        int64_t sum = 0;
                        for (int64_t c = 0; c < k; c++) sum += (int64_t)hx[i * k + c] * hw[j * k + c];
                        double want = (double)sum * hsw[j] * (mode == M_ALPHA16 ? 1.0 : hsx[i]);
                        unsigned char buf[4];
                        CK(cudaMemcpy(buf, (char *)dy + (size_t)(i * n + j) * es, es, cudaMemcpyDeviceToHost));
                        float got;
                        if (es == 4) memcpy(&got, buf, 4);
                        else {
                            uint16_t h;
                            memcpy(&h, buf, 2);
                            got = half_to_float(h);
                        }
                        double scale = fabs(want) > 1e-3 ? fabs(want) : 1e-3;
                        double err = fabs(got - want) / scale;
                        if (err > worst) worst = err;
                    }
                    printf("  worst rel. error %.2e", worst);
                }
                printf("\n");
            }
            free(ms);
        }
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
        if (la) cublasLtMatrixLayoutDestroy(la);
        if (lb) cublasLtMatrixLayoutDestroy(lb);
        if (ld) cublasLtMatrixLayoutDestroy(ld);
        if (mm) cublasLtMatmulDescDestroy(mm);
    }
    /* qhead's kernel: y = (acc * sx) * (sw / 127) in fp16 */
    float *hf = malloc(sizeof(float) * (size_t)n), *df;
    for (int64_t i = 0; i < n; i++) hf[i] = hsw[i] / 127.0f;
    CK(cudaMalloc((void **)&df, sizeof(float) * (size_t)n));
    CK(cudaMemcpy(df, hf, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice));
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("%5lld x %5lld x %5lld  %-8s ", (long long)t, (long long)n, (long long)k, "wgmma16");
    float *ms = malloc(sizeof(float) * (size_t)reps);
    int rc = 0;
    for (int r = -3; r < reps && !rc; r++) {
        CK(cudaEventRecord(e0, 0));
        rc = qh_cu_i8_gemm_tc(0, prop.multiProcessorCount, dx, t, k, dw, NULL, n, dsx, df, NULL, NULL, dy, 0, 0);
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        if (r >= 0) CK(cudaEventElapsedTime(&ms[r], e0, e1));
    }
    if (rc) {
        printf("not run (%d: needs a Hopper GPU and an sm_90a build)\n", rc);
    } else {
        qsort(ms, (size_t)reps, sizeof *ms, cmp_f);
        double med = ms[reps / 2], worst = 0;
        for (int s = 0; s < 256; s++) {
            int64_t i = (int64_t)(next_u32() % (uint32_t)t), j = (int64_t)(next_u32() % (uint32_t)n);
            int64_t sum = 0;
            for (int64_t c = 0; c < k; c++) sum += (int64_t)hx[i * k + c] * hw[j * k + c];
            double want = (double)sum * hsx[i] * hf[j];
            uint16_t h;
            CK(cudaMemcpy(&h, (char *)dy + (size_t)(i * n + j) * 2, 2, cudaMemcpyDeviceToHost));
            double scale = fabs(want) > 1e-3 ? fabs(want) : 1e-3, err = fabs(half_to_float(h) - want) / scale;
            if (err > worst) worst = err;
        }
        printf("%8.3f ms  %6.0f TOPS  worst rel. error %.2e\n", med, ops / (med * 1e-3) / 1e12, worst);
    }
    free(ms), free(hf);
    cudaFree(df);
    cudaFree(dw), cudaFree(dx), cudaFree(dsw), cudaFree(dsx), cudaFree(dy);
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    free(hw), free(hx), free(hsw), free(hsx);
}

int main(int argc, char **argv)
{
    int64_t t = 4096;
    int reps = 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) t = atol(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "bench_int8_scaling: unknown argument %s (usage: [--tokens T] [--reps R])\n", argv[i]);
            return 2;
        }
    }
    if (t < 1 || reps < 1) {
        fprintf(stderr, "bench_int8_scaling: --tokens and --reps must be positive\n");
        return 2;
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        fprintf(stderr, "bench_int8_scaling: no CUDA device\n");
        return 2;
    }
    cublasLtHandle_t lt;
    if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "bench_int8_scaling: cublasLtCreate failed\n");
        return 1;
    }
    size_t ws_bytes = 32u << 20;
    void *ws;
    CK(cudaMalloc(&ws, ws_bytes));
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("# %s, cuBLASLt %zu\n", prop.name, cublasLtGetVersion());
    const int64_t shapes[3][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
    for (int s = 0; s < 3; s++) run_shape(lt, ws, ws_bytes, t, shapes[s][0], shapes[s][1], reps);
    cudaFree(ws);
    cublasLtDestroy(lt);
    return 0;
}

#else

int main(void)
{
    fprintf(stderr, "bench_int8_scaling: built without CUDA\n");
    return 2;
}

#endif
