/* cuBLASLt matrix products (cuda_gemm.h). */
#include "cuda_gemm.h"
#include "cuda_quant.h"

#include "../error.h"

#include <cublasLt.h>
#include <stdio.h>
#include <stdlib.h>

#define N_PLANS 64

typedef struct {
    int64_t n, k, t, ldc;
    cudaDataType_t atype, ctype;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
    unsigned long stamp;
    int used;
} gemm_plan;

struct qh_cu_gemm {
    cudaStream_t stream;
    cublasLtHandle_t lt;
    cublasLtMatmulDesc_t mm;    /* fp32 accumulation, w transposed */
    cublasLtMatmulDesc_t mm_i8; /* int8 x int8 -> int32 (quantized weights), made on first use */
    cublasLtMatmulPreference_t pref;
    void *workspace;
    size_t workspace_bytes;
    gemm_plan plans[N_PLANS];
    unsigned long clock;
};

static int lt_err(cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) return QH_OK;
    return qh_fail(QH_ESYS, "cuBLASLt error %d in %s", (int)s, what);
}

int qh_cu_gemm_create(cudaStream_t s, void *workspace, size_t workspace_bytes, qh_cu_gemm **out)
{
    qh_cu_gemm *g = calloc(1, sizeof *g);
    *out = NULL;
    if (!g) return qh_fail(QH_ESYS, "out of memory");
    g->stream = s, g->workspace = workspace, g->workspace_bytes = workspace_bytes;
    int rc = lt_err(cublasLtCreate(&g->lt), "cublasLtCreate");
    if (!rc) rc = lt_err(cublasLtMatmulDescCreate(&g->mm, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc");
    if (!rc) {
        cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        rc = lt_err(cublasLtMatmulDescSetAttribute(g->mm, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "transa");
        if (!rc) rc = lt_err(cublasLtMatmulDescSetAttribute(g->mm, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "transb");
    }
    if (!rc) rc = lt_err(cublasLtMatmulPreferenceCreate(&g->pref), "preference");
    if (!rc) {
        uint64_t ws = workspace_bytes;
        rc = lt_err(cublasLtMatmulPreferenceSetAttribute(g->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws),
                    "preference");
    }
    if (rc) {
        qh_cu_gemm_destroy(g);
        return rc;
    }
    *out = g;
    return QH_OK;
}

void qh_cu_gemm_destroy(qh_cu_gemm *g)
{
    if (!g) return;
    for (int i = 0; i < N_PLANS; i++)
        if (g->plans[i].used) {
            if (g->plans[i].a) cublasLtMatrixLayoutDestroy(g->plans[i].a);
            if (g->plans[i].b) cublasLtMatrixLayoutDestroy(g->plans[i].b);
            if (g->plans[i].c) cublasLtMatrixLayoutDestroy(g->plans[i].c);
        }
    if (g->mm_i8) cublasLtMatmulDescDestroy(g->mm_i8);
    if (g->pref) cublasLtMatmulPreferenceDestroy(g->pref);
    if (g->mm) cublasLtMatmulDescDestroy(g->mm);
    if (g->lt) cublasLtDestroy(g->lt);
    free(g);
}

/* y[T, N] (+)= x[T, K] w[N, K]^T. Row-major y is column-major y^T = w x^T: A = w (K x N
 * column-major, transposed), B = x (K x T), C = D = y (N x T). */
/* ldc: elements between output rows (0: n) */
static int get_plan(qh_cu_gemm *im, cublasLtMatmulDesc_t mm, int soft, int64_t n, int64_t k, int64_t t, int64_t ldc,
                    cudaDataType_t atype, cudaDataType_t ctype, gemm_plan **out)
{
    if (ldc <= 0) ldc = n;
    gemm_plan *victim = &im->plans[0];
    for (int i = 0; i < N_PLANS; i++) {
        gemm_plan *p = &im->plans[i];
        if (p->used && p->n == n && p->k == k && p->t == t && p->ldc == ldc && p->atype == atype &&
            p->ctype == ctype) {
            p->stamp = ++im->clock;
            *out = p;
            return QH_OK;
        }
        if (!p->used || (victim->used && p->stamp < victim->stamp)) victim = p;
    }
    gemm_plan *p = victim;
    if (p->used) {
        if (p->a) cublasLtMatrixLayoutDestroy(p->a);
        if (p->b) cublasLtMatrixLayoutDestroy(p->b);
        if (p->c) cublasLtMatrixLayoutDestroy(p->c);
        p->used = 0;
    }
    p->a = p->b = p->c = NULL;
    int rc = lt_err(cublasLtMatrixLayoutCreate(&p->a, atype, (uint64_t)k, (uint64_t)n, k), "layout");
    if (!rc) rc = lt_err(cublasLtMatrixLayoutCreate(&p->b, atype, (uint64_t)k, (uint64_t)t, k), "layout");
    if (!rc) rc = lt_err(cublasLtMatrixLayoutCreate(&p->c, ctype, (uint64_t)n, (uint64_t)t, ldc), "layout");
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    if (!rc && soft) { /* int8: no algorithm is not an error (the caller has a plain kernel) */
        cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(im->lt, mm, p->a, p->b, p->c, p->c, im->pref, 1, &res, &found);
        if (st != CUBLAS_STATUS_SUCCESS || found < 1) rc = 1;
    } else if (!rc) {
        rc = lt_err(cublasLtMatmulAlgoGetHeuristic(im->lt, mm, p->a, p->b, p->c, p->c, im->pref, 1, &res, &found),
                    "heuristic");
    }
    if (!rc && found < 1)
        rc = qh_fail(QH_ESYS, "cuBLASLt has no algorithm for [%lld x %lld] x [%lld x %lld]^T", (long long)t,
                     (long long)k, (long long)n, (long long)k);
    if (rc) { /* the slot keeps its layouts (destroyed when it is reused) and matches no shape */
        p->n = -1, p->used = 1, p->stamp = 0;
        return rc;
    }
    p->algo = res.algo;
    p->n = n, p->k = k, p->t = t, p->ldc = ldc, p->atype = atype, p->ctype = ctype;
    p->used = 1;
    p->stamp = ++im->clock;
    *out = p;
    return QH_OK;
}

int qh_cu_gemm_float(qh_cu_gemm *g, const void *x, const void *w, void *y, int64_t t, int64_t n, int64_t k,
                     int64_t ldc, cudaDataType_t in_type, cudaDataType_t y_type, float beta, const char *op)
{
    if (t == 0 || n == 0) return QH_OK;
    gemm_plan *p;
    int rc = get_plan(g, g->mm, 0, n, k, t, ldc, in_type, y_type, &p);
    if (rc) return rc;
    float alpha = 1.0f;
    return lt_err(cublasLtMatmul(g->lt, g->mm, &alpha, w, p->a, x, p->b, &beta, y, p->c, y, p->c, &p->algo,
                                 g->workspace, g->workspace_bytes, g->stream),
                  op);
}

int qh_cu_gemm_int8(qh_cu_gemm *im, const int8_t *w, const int8_t *xq, int32_t *acc, int64_t n, int64_t k, int64_t t)
{
    if (!im->mm_i8) {
        cublasLtMatmulDesc_t mm = NULL;
        cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        if (cublasLtMatmulDescCreate(&mm, CUBLAS_COMPUTE_32I, CUDA_R_32I) != CUBLAS_STATUS_SUCCESS ||
            cublasLtMatmulDescSetAttribute(mm, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta) != CUBLAS_STATUS_SUCCESS ||
            cublasLtMatmulDescSetAttribute(mm, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb) != CUBLAS_STATUS_SUCCESS) {
            if (mm) cublasLtMatmulDescDestroy(mm);
            return 1;
        }
        im->mm_i8 = mm;
    }
    gemm_plan *p;
    int rc = get_plan(im, im->mm_i8, 1, n, k, t, 0, CUDA_R_8I, CUDA_R_32I, &p);
    if (rc) return rc;
    int32_t alpha = 1, beta = 0;
    cublasStatus_t st = cublasLtMatmul(im->lt, im->mm_i8, &alpha, w, p->a, xq, p->b, &beta, acc, p->c, acc, p->c,
                                       &p->algo, im->workspace, im->workspace_bytes, im->stream);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) return 1;
    return lt_err(st, "int8 matrix product");
}

int qh_cu_gemm_sweep(qh_cu_gemm *im, const void *w, const void *x, void *y, int64_t t, int64_t n, int64_t k, int f32_acc,
                     int max_algos, int sustain_ms, double *tflops_first, double *tflops_best)
{
    *tflops_first = *tflops_best = 0;
    cublasLtMatrixLayout_t a = NULL, b = NULL, c = NULL;
    cublasLtMatmulHeuristicResult_t res[32];
    cudaEvent_t e0 = NULL, e1 = NULL;
    int found = 0;
    if (max_algos > 32) max_algos = 32;
    int rc = QH_OK;
    cudaDataType_t ct = f32_acc ? CUDA_R_32F : CUDA_R_16F;
    if (!rc) rc = lt_err(cublasLtMatrixLayoutCreate(&a, CUDA_R_16F, (uint64_t)k, (uint64_t)n, k), "layout");
    if (!rc) rc = lt_err(cublasLtMatrixLayoutCreate(&b, CUDA_R_16F, (uint64_t)k, (uint64_t)t, k), "layout");
    if (!rc) rc = lt_err(cublasLtMatrixLayoutCreate(&c, ct, (uint64_t)n, (uint64_t)t, n), "layout");
    if (!rc) rc = lt_err(cublasLtMatmulAlgoGetHeuristic(im->lt, im->mm, a, b, c, c, im->pref, max_algos, res, &found), "heuristic");
    if (!rc) rc = qh_cu_be_err(cudaEventCreate(&e0), "event");
    if (!rc) rc = qh_cu_be_err(cudaEventCreate(&e1), "event");
    float alpha = 1.0f, beta = f32_acc ? 1.0f : 0.0f;
    double flop = 2.0 * (double)t * (double)n * (double)k;
    for (int i = 0; !rc && i < found; i++) {
        float best_ms = 1e30f;
        int bad = 0;
        for (int rep = 0; rep < 6 && !bad; rep++) { /* the first run warms up */
            cudaEventRecord(e0, im->stream);
            for (int j = 0; j < 5 && !bad; j++)
                bad = cublasLtMatmul(im->lt, im->mm, &alpha, w, a, x, b, &beta, y, c, y, c,
                                     &res[i].algo, im->workspace, im->workspace_bytes, im->stream) != CUBLAS_STATUS_SUCCESS;
            cudaEventRecord(e1, im->stream);
            float ms = 0;
            if (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) bad = 1;
            if (rep > 0 && ms / 5 < best_ms) best_ms = ms / 5;
        }
        if (!bad && sustain_ms > 0) {
            /* Under load the card hits its power limit and clocks down, which short bursts never
             * see: back-to-back products for sustain_ms (half to heat up, half timed). */
            int reps = (int)(sustain_ms / 2.0 / best_ms) + 1;
            for (int half = 0; half < 2 && !bad; half++) {
                cudaEventRecord(e0, im->stream);
                for (int j = 0; j < reps && !bad; j++)
                    bad = cublasLtMatmul(im->lt, im->mm, &alpha, w, a, x, b, &beta, y, c, y, c,
                                         &res[i].algo, im->workspace, im->workspace_bytes, im->stream) != CUBLAS_STATUS_SUCCESS;
                cudaEventRecord(e1, im->stream);
                float ms = 0;
                if (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) bad = 1;
                if (half == 1) best_ms = ms / (float)reps;
            }
        }
        int tile = -1, stages = -1, algo_id = -1;
        size_t got = 0;
        cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_ID, &algo_id, sizeof algo_id, &got);
        cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &got);
        cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &got);
        double tf = bad ? 0 : flop / (best_ms * 1e-3) / 1e12;
        printf("#   gemm t=%lld n=%lld k=%lld %s: algo %2d (id %d tile %d stages %d)%s: %s%7.1f TFLOP/s (%.3f ms)\n",
               (long long)t, (long long)n, (long long)k, f32_acc ? "f32 C+=" : "f16 C= ", i, algo_id, tile, stages,
               sustain_ms > 0 ? ", sustained" : "", bad ? "failed " : "", tf, bad ? 0.0 : best_ms);
        if (i == 0) *tflops_first = tf;
        if (tf > *tflops_best) *tflops_best = tf;
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (!rc) rc = qh_cu_be_err(cudaStreamSynchronize(im->stream), "synchronize");
    return rc;
}
