/* int8 (LLM.int8()) and nf4 weights on the CUDA backend (core/cuda/cuda_quant.{c,cu}) against
 * float64 references and the CPU backend. Needs a GPU: exits 77 (ctest's "skipped") without
 * one or when built without CUDA.
 *
 * Kernels, on fresh random data (values rounded to fp16 first, so both sides see the same
 * inputs; odd shapes: rows not a multiple of the 128-row tile or of 4, columns not a multiple
 * of 16 or 64):
 *  - int8 products: the float64 reference follows LLM.int8() as the CPU backend defines it
 *    (cpu_linear_quant.c: outlier columns over the batch, per-token codes in fp32 arithmetic,
 *    exact integer sums, outlier columns times the dequantized weight). The GPU's codes and
 *    integer sums are the same numbers; what differs: fp16 output (one rounding, 2^-11) and
 *    the outlier product's weight columns, rounded to fp16 for the tensor cores. Bounds,
 *    norm-wise per row: fp16 output 2e-3; fp32 output 1e-5 without outliers, 1e-3 with.
 *  - nf4 products (small-batch kernel, and dequantize + cuBLASLt): reference x times the fp32
 *    dequantized weight; the GPU rounds each dequantized weight to fp16 (dequantize path), or
 *    the level, the absmax and their product (small-batch kernel) (2^-11 relative each,
 *    ~5e-4 norm-wise): fp16 output 2e-3, fp32 output 1e-3; the small-batch kernel's q/k/v
 *    launch the same, its SwiGLU pair 3e-3 (silu(g) * u from fp16 g and u).
 *  - the GPU quantizers (qh_cuda_quantize): the same codes and scales as the CPU's, bit for bit.
 * The whole model, fixtures tests/fixtures/llama/{mha,gqa} quantized with the library here:
 * GPU against the CPU backend running the same quantized file with the same micro-batches.
 * The GPU stores activations in fp16; how much that alone moves the result is measured here
 * too: a CPU backend whose rmsnorm, linear, attention and SwiGLU outputs are rounded to fp16
 * ("fp16-activation CPU"). For int8 it is large on these fixtures (init 0.15: large, sharp
 * activations): codes quantized from fp16 and from fp32 inputs differ wherever x * 127 / s_t
 * sits within ~2^-11 of a rounding boundary (one int8 step, int8's own rounding size), and the
 * fixtures amplify it (worst 3.6e-2 / 7.0e-2 per sequence, 2.2e-2 / 3.5e-2 over all rows,
 * mha / gqa). Bounds: GPU vs CPU within 2.5x (per sequence) and 1.5x (all rows) of the
 * fp16-activation CPU's own difference (+2e-3, +1e-3), and the GPU no further from the
 * unquantized float64 reference (transformers) than the CPU: at most 1.25x its error + 5e-3. */
#include "testutil.h"

#include "backend.h"
#include "error.h"
#include "llama_model.h"
#include "quant.h"
#include "quant_gpu_plan.h"
#include "quant_model.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef QHEAD_HAVE_CUDA
#include "cuda/qh_cuda.h"

#include <cuda_runtime_api.h>

typedef tu_backends pair;

static void must(int rc, const char *what)
{
    if (rc != QH_OK) fail_msg("%s failed (%d): %s", what, rc, qh_last_error());
}

#define normals16(rng, n, scale) tu_rand_f16_values(rng, (size_t)(n), scale)
#define to_be tu_to_backend
#define from_be tu_from_backend

/* Worst norm-wise relative error of rows of got against want (float64). */
static double worst_row_err(const float *got, const double *want, int64_t rows, int64_t cols)
{
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        double num = 0, den = 0;
        for (int64_t c = 0; c < cols; c++) {
            double d = got[r * cols + c] - want[r * cols + c];
            num += d * d, den += want[r * cols + c] * want[r * cols + c];
        }
        double e = sqrt(num / (den > 0 ? den : 1e-300));
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

static void bound(const char *what, double err, double tol)
{
    printf("#   %-66s rel err %.2e (bound %.0e)\n", what, err, tol);
    if (!(err <= tol)) fail_msg("%s: relative error %.3g above %.3g", what, err, tol);
}

/* y = x w^T (y0 NULL) or y = y0 + x w^T (linear_add) on the GPU, y of dtype dt; y on the host as
 * float. */
static float *gpu_run(pair *b, const qh_tensor *xg, const qh_tensor *wg, qh_dtype dt, const float *y0, int64_t t,
                      int64_t n, const char *what)
{
    qh_tensor y = qh_tensor_2d(dt, t, n);
    if (y0) y = to_be(b->gpu, y0, t, n, dt);
    else must(b->gpu->alloc(b->gpu, &y), "alloc");
    must(y0 ? b->gpu->linear_add(b->gpu, xg, wg, &y) : b->gpu->linear(b->gpu, xg, wg, &y), what);
    float *got = from_be(b->gpu, &y);
    b->gpu->release(b->gpu, &y);
    return got;
}

/* gpu_run's result checked against want. */
static void gpu_product(pair *b, const qh_tensor *xg, const qh_tensor *wg, qh_dtype dt, const float *y0,
                        const double *want, int64_t t, int64_t n, const char *what, double tol)
{
    float *got = gpu_run(b, xg, wg, dt, y0, t, n, what);
    bound(what, worst_row_err(got, want, t, n), tol);
    free(got);
}

/* Values of a and b that differ bit for bit. */
static int64_t count_diff(const float *a, const float *b, int64_t n)
{
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return d;
}

/* Whether the GPU is a Hopper (where the int8 wgmma kernel runs); says why not otherwise. */
static int is_hopper(void)
{
    int major = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
    if (major != 9) printf("#   not a Hopper GPU (compute capability %d.x): the int8 wgmma kernel does not run here\n", major);
    return major == 9;
}

/* The CPU backend's product with the same quantized host weight against want: the reference
 * computes what the CPU defines. */
static void cpu_product(pair *b, const float *x, int64_t t, int64_t k, const qh_tensor *wh, const double *want, int64_t n)
{
    qh_tensor xc = to_be(b->cpu, x, t, k, QH_F32), yc = qh_tensor_2d(QH_F32, t, n);
    must(b->cpu->alloc(b->cpu, &yc), "alloc");
    must(b->cpu->linear(b->cpu, &xc, wh, &yc), "cpu linear");
    float *got = from_be(b->cpu, &yc);
    bound("  (CPU backend, same weights) -> f32", worst_row_err(got, want, t, n), 1e-5);
    free(got);
    b->cpu->release(b->cpu, &xc), b->cpu->release(b->cpu, &yc);
}

/* ---- int8 products ----------------------------------------------------------------------- */

/* y[t, n] by LLM.int8() in float64, step by step as cpu_linear_quant.c. */
static double *int8_reference(const float *x, int64_t t, int64_t k, const int8_t *q, const float *scb, int64_t n,
                              float thr, int *m_out)
{
    unsigned char *flag = calloc((size_t)k, 1);
    int8_t *xq = malloc((size_t)k);
    double *y = malloc(sizeof(double) * (size_t)(t * n));
    assert_true(flag && xq && y);
    if (thr > 0)
        for (int64_t i = 0; i < t * k; i++) flag[i % k] |= fabsf(x[i]) >= thr;
    int m = 0;
    for (int64_t c = 0; c < k; c++) m += flag[c];
    for (int64_t r = 0; r < t; r++) {
        const float *xr = x + r * k;
        float amax = 0;
        for (int64_t c = 0; c < k; c++) {
            float a = flag[c] ? 0.0f : fabsf(xr[c]);
            if (a > amax) amax = a;
        }
        float inv = amax > 0 ? 127.0f / amax : 0.0f, sx = amax / 127.0f;
        for (int64_t c = 0; c < k; c++) {
            float v = flag[c] ? 0.0f : nearbyintf(xr[c] * inv);
            xq[c] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
        for (int64_t j = 0; j < n; j++) {
            const int8_t *qr = q + j * k;
            int64_t acc = 0;
            double out = 0;
            for (int64_t c = 0; c < k; c++) {
                acc += (int64_t)xq[c] * qr[c];
                if (flag[c]) out += (double)xr[c] * qr[c] * (double)(scb[j] / 127.0f);
            }
            y[r * n + j] = (double)acc * sx * (double)(scb[j] / 127.0f) + out;
        }
    }
    free(flag), free(xq);
    *m_out = m;
    return y;
}

typedef struct {
    int64_t t, k, n;
    float thr;
    int planted; /* columns given values above the threshold in some rows */
    int64_t chunk;
} i8_case;

static void check_int8(pair *b, const i8_case *cs, uint64_t seed)
{
    int64_t t = cs->t, k = cs->k, n = cs->n;
    uint64_t rng = seed;
    float *x = normals16(&rng, t * k, 1.0), *w = normals16(&rng, n * k, 0.05), *y0 = normals16(&rng, t * n, 1.0);
    for (int j = 0; j < cs->planted; j++) /* column c, every 5th row from j */
        for (int64_t r = j % 5; r < t; r += 5) x[r * k + (j * 37 + 5) % k] = (r & 1 ? -1.0f : 1.0f) * (cs->thr + 2.0f);
    int8_t *q = malloc((size_t)(n * k));
    float *scb = malloc(sizeof(float) * (size_t)n);
    assert_true(q && scb);
    assert_int_equal(qh_int8_quantize(QH_F32, w, n, k, q, scb), -1);
    qh_tensor wh = qh_tensor_2d(QH_I8, n, k), wg;
    wh.data = q, wh.quant.scale = scb, wh.quant.threshold = cs->thr;
    must(b->gpu->weight(b->gpu, &wh, &wg), "weight");
    int m;
    double *ref = int8_reference(x, t, k, q, scb, n, cs->thr, &m);
    double *ref_add = malloc(sizeof(double) * (size_t)(t * n));
    for (int64_t i = 0; i < t * n; i++) ref_add[i] = (double)y0[i] + ref[i];
    qh_cuda_set_int8_chunk(b->gpu, cs->chunk);
    qh_cuda_quant_stats st;
    qh_cuda_quant_stats_get(b->gpu, &st, 1);
    char what[160];
    snprintf(what, sizeof what, "int8 [%lld, %lld] x [%lld, %lld]^T, threshold %g, %d outlier cols, chunk %lld",
             (long long)t, (long long)k, (long long)n, (long long)k, cs->thr, m, (long long)cs->chunk);

    qh_tensor xg = to_be(b->gpu, x, t, k, QH_F16);
    char line[200];
    snprintf(line, sizeof line, "%s -> f16", what);
    gpu_product(b, &xg, &wg, QH_F16, NULL, ref, t, n, line, 2e-3);
    snprintf(line, sizeof line, "%s, f32 +=", what);
    gpu_product(b, &xg, &wg, QH_F32, y0, ref_add, t, n, line, m ? 1e-3 : 1e-5);
    qh_cuda_quant_stats_get(b->gpu, &st, 1);
    printf("#     products: %ld on int8 tensor cores, %ld plain\n", st.int8_tc_products, st.int8_plain_products);
    assert_true(st.int8_tc_products + st.int8_plain_products >= 2);

    cpu_product(b, x, t, k, &wh, ref, n);

    qh_cuda_set_int8_chunk(b->gpu, 0);
    b->gpu->release(b->gpu, &xg), b->gpu->release(b->gpu, &wg);
    free(x), free(w), free(y0), free(q), free(scb), free(ref), free(ref_add);
}

static void test_int8_products(void **state)
{
    static const i8_case cases[] = {
        {1, 64, 160, 6.0f, 0, 0},       {7, 100, 33, 6.0f, 2, 0},     {33, 160, 517, 6.0f, 3, 0},
        {300, 4096, 1024, 6.0f, 3, 0},  {300, 4096, 1024, 0.0f, 0, 0}, {517, 1024, 300, 6.0f, 1, 128},
        {129, 1000, 129, 0.5f, 0, 64},  {64, 11008, 256, 6.0f, 4, 0},  {5, 16, 3, 6.0f, 1, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_int8(*state, &cases[i], 100 + i);
}

/* A random weight [rows, cols] (normal(0, 0.05), fp16-rounded) quantized to int8 with outlier
 * threshold thr and placed on the GPU as wg; q and scb are its host codes and scales (freed by
 * the caller). */
static void gpu_int8_weight(pair *b, uint64_t *rng, int64_t rows, int64_t cols, float thr, int8_t **q, float **scb,
                            qh_tensor *wg)
{
    float *wf = normals16(rng, rows * cols, 0.05);
    *q = malloc((size_t)(rows * cols)), *scb = malloc(sizeof(float) * (size_t)rows);
    assert_true(*q && *scb);
    qh_int8_quantize(QH_F32, wf, rows, cols, *q, *scb);
    free(wf);
    qh_tensor wh = qh_tensor_2d(QH_I8, rows, cols);
    wh.data = *q, wh.quant.scale = *scb, wh.quant.threshold = thr;
    must(b->gpu->weight(b->gpu, &wh, wg), "weight");
}

/* The cached activations: reused by a second weight, refreshed after x changes. */
static void test_int8_input_cache(void **state)
{
    pair *b = *state;
    uint64_t rng = 7;
    const int64_t t = 40, k = 256, n = 96;
    float *x = normals16(&rng, t * k, 1.0), *d = normals16(&rng, t * k, 3.0);
    x[3 * k + 17] = 9.0f; /* one outlier column */
    qh_tensor wg[2];
    int8_t *q[2];
    float *scb[2];
    for (int i = 0; i < 2; i++) gpu_int8_weight(b, &rng, n, k, 6.0f, &q[i], &scb[i], &wg[i]);
    qh_tensor xg = to_be(b->gpu, x, t, k, QH_F16), dg = to_be(b->gpu, d, t, k, QH_F16);
    qh_tensor yg = qh_tensor_2d(QH_F16, t, n);
    must(b->gpu->alloc(b->gpu, &yg), "alloc");
    qh_cuda_quant_stats st;
    qh_cuda_quant_stats_get(b->gpu, &st, 1);
    for (int round = 0; round < 2; round++) {
        if (round) { /* x += d on the device: the next product must see the new x */
            must(b->gpu->add(b->gpu, &xg, &dg), "add");
            for (int64_t i = 0; i < t * k; i++) x[i] = qh_f16_to_f32(qh_f32_to_f16(x[i] + d[i]));
        }
        for (int i = 0; i < 2; i++) {
            int m;
            double *ref = int8_reference(x, t, k, q[i], scb[i], n, 6.0f, &m);
            must(b->gpu->linear(b->gpu, &xg, &wg[i], &yg), "linear");
            float *got = from_be(b->gpu, &yg);
            char what[96];
            snprintf(what, sizeof what, "int8 cached input: x%s, weight %d (%d outlier cols)", round ? " + d" : "", i, m);
            bound(what, worst_row_err(got, ref, t, n), 2e-3);
            free(got), free(ref);
        }
    }
    qh_cuda_quant_stats_get(b->gpu, &st, 1);
    long inputs = 0;
    for (int i = 0; i < QH_CUDA_OP_COUNT; i++) inputs += st.int8_inputs[i];
    assert_int_equal(inputs, 2); /* quantized once per x, shared by both weights */
    for (int i = 0; i < 2; i++) b->gpu->release(b->gpu, &wg[i]), free(q[i]), free(scb[i]);
    b->gpu->release(b->gpu, &xg), b->gpu->release(b->gpu, &dg), b->gpu->release(b->gpu, &yg);
    free(x), free(d);
}

/* linear_swiglu with int8 weights (both products' int32 sums into one SwiGLU kernel) gives the
 * plain ops' numbers bit for bit: several chunks, odd shapes, and inputs with outlier columns
 * (which take the plain path inside). */
static void test_int8_swiglu(void **state)
{
    pair *b = *state;
    static const struct {
        int64_t t, k, n, chunk;
        float thr;
        int outlier;
    } cases[] = {{300, 4096, 1024, 0, 0.0f, 0}, {5000, 256, 1000, 1024, 6.0f, 0}, {37, 100, 33, 0, 6.0f, 1},
                 {7, 64, 161, 0, 0.0f, 0},      {1, 16, 8, 0, 0.0f, 0},          {413, 1000, 2050, 96, 6.0f, 0},
                 {2100, 64, 2050, 0, 0.0f, 0}, /* up holds half the tokens' int32: two chunks */
                 /* <= 64 tokens with outlier columns (the count stays on the device): a few, and 60,
                  * beyond what the CUDA-core sums take alone (a gathered product first; n > k, so
                  * that the plain ops learn capacities for the same kind of input as linear_swiglu) */
                 {30, 1000, 517, 0, 6.0f, 5},   {50, 128, 300, 0, 6.0f, 60}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int64_t t = cases[ci].t, k = cases[ci].k, n = cases[ci].n;
        uint64_t rng = 500 + ci;
        float *x = normals16(&rng, t * k, 1.0);
        for (int j = 0; j < cases[ci].outlier; j++) x[(j % t) * k + (7 * j + 3) % k] = 9.0f;
        qh_tensor wg[2];
        int8_t *q[2];
        float *scb[2];
        for (int i = 0; i < 2; i++) gpu_int8_weight(b, &rng, n, k, cases[ci].thr, &q[i], &scb[i], &wg[i]);
        qh_cuda_set_int8_chunk(b->gpu, cases[ci].chunk);
        qh_tensor xg = to_be(b->gpu, x, t, k, QH_F16);
        qh_tensor g1 = qh_tensor_2d(QH_F16, t, n), u1 = g1, g2 = g1, u2 = g1;
        must(b->gpu->alloc(b->gpu, &g1), "alloc"), must(b->gpu->alloc(b->gpu, &u1), "alloc");
        must(b->gpu->alloc(b->gpu, &g2), "alloc"), must(b->gpu->alloc(b->gpu, &u2), "alloc");
        /* a first product on a copy of x, waited for: small batches with outliers size their
         * outlier product from the counts seen before, which both runs below then share (each
         * quantizes xg itself) */
        qh_tensor xw = to_be(b->gpu, x, t, k, QH_F16);
        must(b->gpu->linear(b->gpu, &xw, &wg[0], &g1), "linear gate");
        free(from_be(b->gpu, &g1));
        b->gpu->release(b->gpu, &xw);
        must(b->gpu->linear(b->gpu, &xg, &wg[0], &g1), "linear gate");
        must(b->gpu->linear(b->gpu, &xg, &wg[1], &u1), "linear up");
        must(b->gpu->silu_mul(b->gpu, &g1, &u1, &g1), "silu_mul");
        assert_non_null(b->gpu->linear_swiglu);
        must(b->gpu->linear_swiglu(b->gpu, &xg, &wg[0], &wg[1], &g2, &u2), "linear_swiglu");
        float *want = from_be(b->gpu, &g1), *got = from_be(b->gpu, &g2);
        const int64_t diff = count_diff(want, got, t * n);
        double amax = 0;
        for (int64_t i = 0; i < t * n; i++)
            if (fabs(want[i]) > amax) amax = fabs(want[i]);
        printf("#   int8 linear_swiglu [%lld, %lld] -> [%lld, %lld], chunk %lld, threshold %g, %d outlier column(s) "
               "planted: %lld of %lld differ from the plain ops (max |out| %.3g)\n",
               (long long)t, (long long)k, (long long)t, (long long)n, (long long)cases[ci].chunk, cases[ci].thr,
               cases[ci].outlier, (long long)diff, (long long)(t * n), amax);
        assert_int_equal(diff, 0);
        assert_true(amax > 0);
        qh_cuda_set_int8_chunk(b->gpu, 0);
        b->gpu->release(b->gpu, &g1), b->gpu->release(b->gpu, &u1), b->gpu->release(b->gpu, &g2);
        b->gpu->release(b->gpu, &u2), b->gpu->release(b->gpu, &xg);
        for (int i = 0; i < 2; i++) b->gpu->release(b->gpu, &wg[i]), free(q[i]), free(scb[i]);
        free(x), free(want), free(got);
    }
}

/* y = x w^T (y0 NULL) or y0 + x w^T on the GPU, dtype dt, under the int8 wgmma mode given; the
 * result on the host as float. */
static float *int8_run(pair *b, int mode, const qh_tensor *xg, const qh_tensor *wg, qh_dtype dt, const float *y0,
                       int64_t t, int64_t n)
{
    qh_cuda_set_int8_wgmma(b->gpu, mode);
    float *got = gpu_run(b, xg, wg, dt, y0, t, n, "int8 linear");
    qh_cuda_set_int8_wgmma(b->gpu, QH_CUDA_I8_WGMMA_AUTO);
    return got;
}

/* The one-kernel int8 products (Hopper wgmma: the product and its epilogue, or gate, up and the
 * SwiGLU, in one pass) against cuBLASLt's int32 products read back by the epilogue kernels: the
 * same numbers bit for bit (the integer sums are exact and the epilogue is the same arithmetic;
 * the outlier columns' fp16 products are the same cuBLASLt calls up to the 4096-token chunk),
 * and within the float64 bounds. Shapes that are not multiples of
 * the 128 x 256 tile or of 128 codes, odd row counts, more tiles than SMs (each block takes
 * several). Skipped on other GPU generations. */
static void test_int8_wgmma(void **state)
{
    pair *b = *state;
    if (!is_hopper()) return;
    static const struct {
        int64_t t, k, n;
        float thr;
        int planted;
    } cases[] = {{300, 4096, 1024, 0.0f, 0}, {517, 1000, 300, 0.0f, 0}, {129, 11008, 257, 0.0f, 0},
                 {1, 64, 33, 0.0f, 0},       {2000, 512, 3000, 0.0f, 0}, {4100, 128, 600, 0.0f, 0},
                 {700, 256, 520, 6.0f, 3},   {5000, 128, 300, 6.0f, 2}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int64_t t = cases[ci].t, k = cases[ci].k, n = cases[ci].n;
        uint64_t rng = 900 + ci;
        float *x = normals16(&rng, t * k, 1.0), *y0 = normals16(&rng, t * n, 1.0);
        for (int j = 0; j < cases[ci].planted; j++)
            for (int64_t r = j % 5; r < t; r += 5) x[r * k + (j * 37 + 5) % k] = (r & 1 ? -1.0f : 1.0f) * 8.0f;
        int8_t *q;
        float *scb;
        qh_tensor wg;
        gpu_int8_weight(b, &rng, n, k, cases[ci].thr, &q, &scb, &wg);
        int m;
        double *ref = int8_reference(x, t, k, q, scb, n, cases[ci].thr, &m);
        qh_tensor xg = to_be(b->gpu, x, t, k, QH_F16);
        static const struct {
            qh_dtype dt;
            int add;
            double tol, tol_outliers;
        } outs[] = {{QH_F16, 0, 2e-3, 2e-3}, {QH_F16, 1, 2e-3, 2e-3}, {QH_F32, 0, 1e-5, 1e-3}, {QH_F32, 1, 1e-5, 1e-3}};
        for (size_t oi = 0; oi < sizeof outs / sizeof outs[0]; oi++) {
            const float *yin = outs[oi].add ? y0 : NULL;
            qh_cuda_quant_stats st;
            qh_cuda_quant_stats_get(b->gpu, &st, 1);
            float *want = int8_run(b, QH_CUDA_I8_WGMMA_OFF, &xg, &wg, outs[oi].dt, yin, t, n);
            float *got = int8_run(b, QH_CUDA_I8_WGMMA_ALWAYS, &xg, &wg, outs[oi].dt, yin, t, n);
            qh_cuda_quant_stats_get(b->gpu, &st, 1);
            double *r = ref;
            if (outs[oi].add) {
                r = malloc(sizeof(double) * (size_t)(t * n));
                assert_non_null(r);
                for (int64_t i = 0; i < t * n; i++) {
                    float y0r = outs[oi].dt == QH_F16 ? qh_f16_to_f32(qh_f32_to_f16(y0[i])) : y0[i];
                    r[i] = (double)y0r + ref[i];
                }
            }
            char what[160];
            snprintf(what, sizeof what, "int8 wgmma [%lld, %lld] x [%lld, %lld]^T -> %s%s, %d outlier cols", (long long)t,
                     (long long)k, (long long)n, (long long)k, outs[oi].dt == QH_F16 ? "f16" : "f32",
                     outs[oi].add ? " +=" : "", m);
            const int64_t diff = count_diff(want, got, t * n);
            printf("#   %s: %lld of %lld differ from cuBLASLt + epilogue; %ld wgmma products\n", what, (long long)diff,
                   (long long)(t * n), st.int8_wgmma_products);
            assert_int_equal(st.int8_wgmma_products, 1);
            /* fp32 or added y: the wgmma path's outlier product covers all tokens at once, the
             * int32 path's one chunk of 4096 at a time (other cuBLASLt kernels past 4096 tokens) */
            if (m == 0 || t <= 4096 || (outs[oi].dt == QH_F16 && !outs[oi].add)) assert_int_equal(diff, 0);
            bound(what, worst_row_err(got, r, t, n), m ? outs[oi].tol_outliers : outs[oi].tol);
            if (r != ref) free(r);
            free(want), free(got);
        }
        b->gpu->release(b->gpu, &xg), b->gpu->release(b->gpu, &wg);
        free(x), free(y0), free(q), free(scb), free(ref);
    }
    /* gate, up and the SwiGLU in one kernel against the two int32 products and the SwiGLU kernel */
    static const int64_t sw[][3] = {{300, 4096, 1024}, {517, 1000, 300}, {129, 256, 257}, {4100, 128, 600}};
    for (size_t ci = 0; ci < sizeof sw / sizeof sw[0]; ci++) {
        const int64_t t = sw[ci][0], k = sw[ci][1], n = sw[ci][2];
        uint64_t rng = 950 + ci;
        float *x = normals16(&rng, t * k, 1.0);
        qh_tensor wg[2];
        int8_t *q[2];
        float *scb[2];
        for (int i = 0; i < 2; i++) gpu_int8_weight(b, &rng, n, k, 0.0f, &q[i], &scb[i], &wg[i]);
        qh_tensor xg = to_be(b->gpu, x, t, k, QH_F16);
        float *out[2];
        long products[2];
        for (int pass = 0; pass < 2; pass++) {
            qh_cuda_set_int8_wgmma(b->gpu, pass ? QH_CUDA_I8_WGMMA_ALWAYS : QH_CUDA_I8_WGMMA_OFF);
            qh_tensor g = qh_tensor_2d(QH_F16, t, n), u = g;
            must(b->gpu->alloc(b->gpu, &g), "alloc"), must(b->gpu->alloc(b->gpu, &u), "alloc");
            qh_cuda_quant_stats st;
            qh_cuda_quant_stats_get(b->gpu, &st, 1);
            must(b->gpu->linear_swiglu(b->gpu, &xg, &wg[0], &wg[1], &g, &u), "linear_swiglu");
            qh_cuda_quant_stats_get(b->gpu, &st, 1);
            products[pass] = st.int8_wgmma_products;
            out[pass] = from_be(b->gpu, &g);
            b->gpu->release(b->gpu, &g), b->gpu->release(b->gpu, &u);
        }
        qh_cuda_set_int8_wgmma(b->gpu, QH_CUDA_I8_WGMMA_AUTO);
        const int64_t diff = count_diff(out[0], out[1], t * n);
        double amax = 0;
        for (int64_t i = 0; i < t * n; i++) amax = fmax(amax, fabs(out[1][i]));
        printf("#   int8 wgmma SwiGLU [%lld, %lld] -> [%lld, %lld]: %lld of %lld differ from the int32 products + SwiGLU "
               "kernel (max |out| %.3g); wgmma products %ld / %ld\n",
               (long long)t, (long long)k, (long long)t, (long long)n, (long long)diff, (long long)(t * n), amax,
               products[0], products[1]);
        assert_int_equal(products[0], 0);
        assert_int_equal(products[1], 2);
        assert_int_equal(diff, 0);
        assert_true(amax > 0);
        b->gpu->release(b->gpu, &xg);
        for (int i = 0; i < 2; i++) b->gpu->release(b->gpu, &wg[i]), free(q[i]), free(scb[i]), free(out[i]);
        free(x);
    }
}

/* Small batches with outlier columns keep the outlier count on the device (no stream
 * synchronisation): the outlier columns go through a CUDA-core kernel while the counts seen so
 * far are small, through a gathered fp16 product of a learned capacity once they are not, and
 * the columns beyond that capacity through the CUDA-core kernel again. For each shape, inputs in
 * an order that walks through those regimes (the counts forgotten first), every output kind,
 * against float64 and against the path that waits for the count (bit for bit without outlier
 * columns); the outlier columns counted on the device. */
static void test_int8_outlier_nosync(void **state)
{
    pair *b = *state;
    enum { NP = 6, NO = 4 };
    static const int planted[NP] = {0, 3, 150, 40, 300, 3}; /* 150 teaches a capacity of 192; 300 overflows it */
    /* k % 8 != 0: the separate quantization kernels (the fused one takes groups of 8); 14336 at
     * 64 tokens: the fused one's slices need a cluster of 16 blocks */
    static const int64_t shapes[][3] = {{30, 1000, 517}, {1, 256, 96}, {64, 640, 300}, {13, 203, 77}, {64, 14336, 40}};
    static const struct {
        qh_dtype dt;
        int add;
    } outs[NO] = {{QH_F16, 0}, {QH_F32, 1}, {QH_F32, 0}, {QH_F16, 1}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t t = shapes[si][0], k = shapes[si][1], n = shapes[si][2];
        float *x[NP], *y0[NP], *scb[NP], *got[2][NP][NO];
        int8_t *q[NP];
        qh_tensor wg[NP], xg[NP];
        for (int pi = 0; pi < NP; pi++) {
            uint64_t rng = 1300 + 10 * si + pi;
            x[pi] = normals16(&rng, t * k, 1.0), y0[pi] = normals16(&rng, t * n, 1.0);
            for (int j = 0; j < planted[pi]; j++) /* column (7 j + 3) % k, in row j % t */
                x[pi][(j % t) * k + (7 * j + 3) % k] = (j & 1 ? -1.0f : 1.0f) * 7.5f;
            gpu_int8_weight(b, &rng, n, k, 6.0f, &q[pi], &scb[pi], &wg[pi]);
            xg[pi] = to_be(b->gpu, x[pi], t, k, QH_F16);
        }
        long cols[NP], inputs[NP];
        /* fused kernels (fu 0, the default), then the separate ones: each run starts with no
         * counts learned, so both see the same capacities */
        for (int fu = 0; fu < 2; fu++) {
            qh_cuda_set_int8_small_fused(b->gpu, fu == 0);
            qh_cuda_set_int8_outlier_sync(b->gpu, 0); /* also forgets the counts seen so far */
            for (int pi = 0; pi < NP; pi++) {
                qh_cuda_quant_stats st;
                qh_cuda_quant_stats_get(b->gpu, &st, 1);
                for (int oi = 0; oi < NO; oi++)
                    got[fu][pi][oi] = int8_run(b, QH_CUDA_I8_WGMMA_AUTO, &xg[pi], &wg[pi], outs[oi].dt,
                                               outs[oi].add ? y0[pi] : NULL, t, n);
                qh_cuda_quant_stats_get(b->gpu, &st, 1);
                long c = 0, in = 0;
                for (int i = 0; i < QH_CUDA_OP_COUNT; i++) c += st.int8_outlier_cols[i], in += st.int8_inputs[i];
                if (fu == 0) cols[pi] = c, inputs[pi] = in;
                else assert_true(c == cols[pi] && in == inputs[pi]);
            }
        }
        qh_cuda_set_int8_small_fused(b->gpu, 1);
        qh_cuda_set_int8_outlier_sync(b->gpu, 1);
        for (int pi = 0; pi < NP; pi++) {
            int m;
            double *ref = int8_reference(x[pi], t, k, q[pi], scb[pi], n, 6.0f, &m);
            printf("#   int8 [%lld, %lld] x [%lld, %lld]^T, %d outlier cols: counted on the device %ld in %ld input(s)\n",
                   (long long)t, (long long)k, (long long)n, (long long)k, m, cols[pi], inputs[pi]);
            assert_true(inputs[pi] >= 1); /* once per product here: each upload of y0 invalidates the cache */
            assert_int_equal(cols[pi], inputs[pi] * m);
            double *r = malloc(sizeof(double) * (size_t)(t * n)), *rw = malloc(sizeof(double) * (size_t)(t * n));
            assert_true(r && rw);
            for (int oi = 0; oi < NO; oi++) {
                float *waited = int8_run(b, QH_CUDA_I8_WGMMA_AUTO, &xg[pi], &wg[pi], outs[oi].dt,
                                         outs[oi].add ? y0[pi] : NULL, t, n);
                for (int64_t i = 0; i < t * n; i++) {
                    double y = outs[oi].dt == QH_F16 ? qh_f16_to_f32(qh_f32_to_f16(y0[pi][i])) : y0[pi][i];
                    r[i] = (outs[oi].add ? y : 0.0) + ref[i], rw[i] = waited[i];
                }
                char what[160];
                snprintf(what, sizeof what, "  no wait -> %s%s", outs[oi].dt == QH_F16 ? "f16" : "f32",
                         outs[oi].add ? " +=" : "");
                const double tol = outs[oi].dt == QH_F16 ? 2e-3 : (m ? 1e-3 : 1e-5);
                bound(what, worst_row_err(got[0][pi][oi], r, t, n), tol);
                snprintf(what + strlen(what), sizeof what - strlen(what), ", against waiting");
                bound(what, worst_row_err(got[0][pi][oi], rw, t, n), tol);
                if (m == 0) assert_int_equal(count_diff(got[0][pi][oi], waited, t * n), 0);
                /* the fused kernels do the separate ones' arithmetic */
                const int64_t d = count_diff(got[0][pi][oi], got[1][pi][oi], t * n);
                printf("#     fused against separate kernels: %lld of %lld differ\n", (long long)d, (long long)(t * n));
                assert_int_equal(d, 0);
                free(waited), free(got[0][pi][oi]), free(got[1][pi][oi]);
            }
            free(r), free(rw), free(ref);
        }
        qh_cuda_set_int8_outlier_sync(b->gpu, 0);
        for (int pi = 0; pi < NP; pi++) {
            b->gpu->release(b->gpu, &xg[pi]), b->gpu->release(b->gpu, &wg[pi]);
            free(x[pi]), free(y0[pi]), free(q[pi]), free(scb[pi]);
        }
    }
}

/* int8 linear_qkv (at most 64 tokens: three products, one epilogue launch for the three) against
 * three linear calls, bit for bit, and against float64: threshold 0, and threshold 6 with no, a few
 * and many outlier columns (the count on the device; many: a gathered product first, its
 * capacity learned from an earlier product on a copy of x, waited for, so that both paths use
 * the same; n <= k, so that the plain products learn for the same kind of input). */
static void test_int8_qkv(void **state)
{
    pair *b = *state;
    static const struct {
        int64_t t, k, n[3];
        float thr;
        int outliers;
    } cases[] = {{30, 512, {512, 130, 130}, 0.0f, 0}, {1, 256, {256, 64, 64}, 6.0f, 0},
                 {30, 512, {512, 130, 130}, 6.0f, 3}, {64, 256, {200, 96, 40}, 6.0f, 60},
                 {13, 203, {150, 33, 33}, 6.0f, 5}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int64_t t = cases[ci].t, k = cases[ci].k;
        uint64_t rng = 1700 + ci;
        float *x = normals16(&rng, t * k, 1.0);
        for (int j = 0; j < cases[ci].outliers; j++) x[(j % t) * k + (7 * j + 3) % k] = 7.5f;
        qh_tensor wg[3], y[2][3];
        int8_t *q[3];
        float *scb[3];
        for (int i = 0; i < 3; i++) gpu_int8_weight(b, &rng, cases[ci].n[i], k, cases[ci].thr, &q[i], &scb[i], &wg[i]);
        qh_tensor xw = to_be(b->gpu, x, t, k, QH_F16), xg = to_be(b->gpu, x, t, k, QH_F16);
        for (int p = 0; p < 2; p++)
            for (int i = 0; i < 3; i++) {
                y[p][i] = qh_tensor_2d(QH_F16, t, cases[ci].n[i]);
                must(b->gpu->alloc(b->gpu, &y[p][i]), "alloc");
            }
        must(b->gpu->linear(b->gpu, &xw, &wg[0], &y[0][0]), "linear"); /* teaches the capacity */
        free(from_be(b->gpu, &y[0][0]));
        for (int i = 0; i < 3; i++) must(b->gpu->linear(b->gpu, &xg, &wg[i], &y[0][i]), "linear");
        b->gpu->release(b->gpu, &xg);
        xg = to_be(b->gpu, x, t, k, QH_F16); /* quantized again by linear_qkv */
        qh_cuda_quant_stats st;
        qh_cuda_quant_stats_get(b->gpu, &st, 1);
        must(b->gpu->linear_qkv(b->gpu, &xg, &wg[0], &wg[1], &wg[2], &y[1][0], &y[1][1], &y[1][2]), "linear_qkv");
        int m = 0;
        for (int i = 0; i < 3; i++) {
            float *want = from_be(b->gpu, &y[0][i]), *got = from_be(b->gpu, &y[1][i]);
            double *ref = int8_reference(x, t, k, q[i], scb[i], cases[ci].n[i], cases[ci].thr, &m);
            const int64_t d = count_diff(want, got, t * cases[ci].n[i]);
            char what[160];
            snprintf(what, sizeof what, "int8 q/k/v %d of [%lld, %lld], threshold %g, %d outlier cols", i, (long long)t,
                     (long long)k, cases[ci].thr, m);
            bound(what, worst_row_err(got, ref, t, cases[ci].n[i]), 2e-3);
            printf("#     against linear: %lld of %lld differ\n", (long long)d, (long long)(t * cases[ci].n[i]));
            assert_int_equal(d, 0);
            free(want), free(got), free(ref);
        }
        qh_cuda_quant_stats_get(b->gpu, &st, 1);
        assert_int_equal(st.int8_tc_products + st.int8_plain_products, 3);
        b->gpu->release(b->gpu, &xg), b->gpu->release(b->gpu, &xw);
        for (int i = 0; i < 3; i++) {
            b->gpu->release(b->gpu, &wg[i]), b->gpu->release(b->gpu, &y[0][i]), b->gpu->release(b->gpu, &y[1][i]);
            free(q[i]), free(scb[i]);
        }
        free(x);
    }
}

/* The int8 SwiGLU writing its output's codes for down_proj (threshold 0; chunks taken last to
 * first, the codes written over the input's in place): gate and the residual after down_proj
 * are the same bit for bit as when down_proj quantizes gate itself. Many chunks, odd widths. */
static void test_int8_swiglu_codes(void **state)
{
    /* the codes come from the int32 products' SwiGLU kernel (the wgmma path leaves them to down_proj) */
    qh_cuda_set_int8_wgmma(((pair *)*state)->gpu, QH_CUDA_I8_WGMMA_OFF);
    pair *b = *state;
    static const struct {
        int64_t t, k, n, chunk;
    } cases[] = {{5000, 256, 1000, 1024}, {37, 36, 100, 0}, {4099, 64, 2052, 512}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int64_t t = cases[ci].t, k = cases[ci].k, n = cases[ci].n;
        uint64_t rng = 700 + ci;
        float *x = normals16(&rng, t * k, 1.0), *r0 = normals16(&rng, t * k, 1.0);
        qh_tensor wg[3];
        int8_t *q[3];
        float *scb[3];
        for (int i = 0; i < 3; i++) /* gate, up [n, k]; down [k, n] */
            gpu_int8_weight(b, &rng, i < 2 ? n : k, i < 2 ? k : n, 0.0f, &q[i], &scb[i], &wg[i]);
        qh_tensor xg = to_be(b->gpu, x, t, k, QH_F16);
        float *gate[2], *res[2];
        long written[2];
        for (int on = 0; on < 2; on++) {
            qh_cuda_set_int8_input_codes(b->gpu, on);
            qh_cuda_set_int8_chunk(b->gpu, cases[ci].chunk);
            qh_tensor g = qh_tensor_2d(QH_F16, t, n), u = g, r = to_be(b->gpu, r0, t, k, QH_F32);
            must(b->gpu->alloc(b->gpu, &g), "alloc"), must(b->gpu->alloc(b->gpu, &u), "alloc");
            qh_cuda_quant_stats st;
            qh_cuda_quant_stats_get(b->gpu, &st, 1);
            for (int pass = 0; pass < 2; pass++) { /* the first pass teaches the backend down_proj's layout */
                must(b->gpu->linear_swiglu(b->gpu, &xg, &wg[0], &wg[1], &g, &u), "linear_swiglu");
                must(b->gpu->linear_add(b->gpu, &g, &wg[2], &r), "linear_add");
            }
            qh_cuda_quant_stats_get(b->gpu, &st, 1);
            written[on] = st.int8_swiglu_codes;
            gate[on] = from_be(b->gpu, &g), res[on] = from_be(b->gpu, &r);
            b->gpu->release(b->gpu, &g), b->gpu->release(b->gpu, &u), b->gpu->release(b->gpu, &r);
        }
        const int64_t dg = count_diff(gate[0], gate[1], t * n), dr = count_diff(res[0], res[1], t * k);
        printf("#   int8 SwiGLU [%lld, %lld] -> [%lld, %lld] -> down_proj, chunk %lld: codes written %ld times (off: %ld); "
               "%lld gate and %lld residual values differ\n",
               (long long)t, (long long)k, (long long)t, (long long)n, (long long)cases[ci].chunk, written[1],
               written[0], (long long)dg, (long long)dr);
        assert_true(written[1] > 0);
        assert_int_equal(written[0], 0);
        assert_int_equal(dg, 0);
        assert_int_equal(dr, 0);
        qh_cuda_set_int8_chunk(b->gpu, 0);
        qh_cuda_set_int8_input_codes(b->gpu, 1);
        b->gpu->release(b->gpu, &xg);
        for (int i = 0; i < 3; i++) b->gpu->release(b->gpu, &wg[i]), free(q[i]), free(scb[i]);
        for (int on = 0; on < 2; on++) free(gate[on]), free(res[on]);
        free(x), free(r0);
    }
    qh_cuda_set_int8_wgmma(((pair *)*state)->gpu, QH_CUDA_I8_WGMMA_AUTO);
}

/* ---- nf4 products -------------------------------------------------------------------------- */

typedef struct {
    int64_t t, k, n;
    int bs, dq;
} nf4_case;

/* A random nf4 weight [n, k] (blocksize bs, double quantization dq) on the host (wh), on the GPU
 * (wg), and dequantized in fp32 (deq). */
typedef struct {
    qh_tensor wh, wg;
    uint8_t *codes;
    float *absmax, *nested, *deq;
    int8_t *qa;
} nf4_weight;

static void nf4_weight_make(pair *b, uint64_t *rng, int64_t n, int64_t k, int bs, int dq, nf4_weight *o)
{
    int64_t nb = (n * k + bs - 1) / bs;
    float *w = normals16(rng, n * k, 0.05);
    o->codes = malloc((size_t)(n * k / 2 + 1));
    o->absmax = malloc(sizeof(float) * (size_t)nb), o->nested = malloc(sizeof(float) * (size_t)(nb / 256 + 1));
    o->qa = malloc((size_t)nb);
    o->deq = malloc(sizeof(float) * (size_t)(n * k));
    assert_true(o->codes && o->absmax && o->nested && o->qa && o->deq);
    assert_int_equal(qh_nf4_quantize(QH_F32, w, n * k, bs, o->codes, o->absmax), -1);
    free(w);
    o->wh = qh_tensor_2d(QH_NF4, n, k);
    o->wh.data = o->codes, o->wh.quant.blocksize = bs;
    if (dq) {
        qh_nf4_double_quant(o->absmax, nb, o->qa, o->nested, &o->wh.quant.nested_offset);
        o->wh.quant.qabsmax = o->qa, o->wh.quant.nested_absmax = o->nested;
    } else {
        o->wh.quant.scale = o->absmax;
    }
    qh_nf4_dequantize(&o->wh, 0, n * k, o->deq);
    must(b->gpu->weight(b->gpu, &o->wh, &o->wg), "weight");
}

static void nf4_weight_free(pair *b, nf4_weight *o)
{
    b->gpu->release(b->gpu, &o->wg);
    free(o->codes), free(o->absmax), free(o->nested), free(o->qa), free(o->deq);
}

/* x[t, k] deq[n, k]^T in float64 */
static double *ref_product(const float *x, int64_t t, int64_t k, const float *deq, int64_t n)
{
    double *ref = malloc(sizeof(double) * (size_t)(t * n));
    assert_non_null(ref);
    for (int64_t r = 0; r < t; r++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t c = 0; c < k; c++) s += (double)x[r * k + c] * deq[j * k + c];
            ref[r * n + j] = s;
        }
    return ref;
}

static void check_nf4(pair *b, const nf4_case *cs, uint64_t seed)
{
    int64_t t = cs->t, k = cs->k, n = cs->n;
    uint64_t rng = seed;
    float *x = normals16(&rng, t * k, 1.0);
    nf4_weight w;
    nf4_weight_make(b, &rng, n, k, cs->bs, cs->dq, &w);
    float *y0 = normals16(&rng, t * n, 1.0);
    double *ref = ref_product(x, t, k, w.deq, n), *ref_add = malloc(sizeof(double) * (size_t)(t * n));
    assert_non_null(ref_add);
    for (int64_t i = 0; i < t * n; i++) ref_add[i] = ref[i] + y0[i];
    /* the small-batch kernel where it applies, then dequantize + cuBLASLt */
    int sms = 0;
    assert_int_equal(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);
    qh_nf4_small_plan plan;
    const int fusable = qh_nf4_small_plan_of(t, &n, 1, 0, k, cs->bs, sms, 0, 0, &plan);
    qh_tensor xg = to_be(b->gpu, x, t, k, QH_F16);
    for (int fused = 1; fused >= 0; fused--) {
        qh_cuda_set_nf4_fused(b->gpu, fused);
        qh_cuda_quant_stats st;
        qh_cuda_quant_stats_get(b->gpu, &st, 1);
        char what[160], line[200];
        snprintf(what, sizeof what, "nf4 [%lld, %lld] x [%lld, %lld]^T, blocksize %d%s, %s", (long long)t, (long long)k,
                 (long long)n, (long long)k, cs->bs, cs->dq ? " dq" : "",
                 fused && fusable ? "small-batch kernel" : "dequantize + cuBLASLt");
        for (int rep = 0; rep < 2; rep++) {
            snprintf(line, sizeof line, "%s -> f16%s", what, rep ? " (again)" : "");
            gpu_product(b, &xg, &w.wg, QH_F16, NULL, ref, t, n, line, 2e-3);
        }
        snprintf(line, sizeof line, "%s -> f32", what);
        gpu_product(b, &xg, &w.wg, QH_F32, NULL, ref, t, n, line, 1e-3);
        snprintf(line, sizeof line, "%s, f32 +=", what);
        gpu_product(b, &xg, &w.wg, QH_F32, y0, ref_add, t, n, line, 1e-3);
        qh_cuda_quant_stats_get(b->gpu, &st, 1);
        assert_int_equal(st.nf4_fused, fused && fusable ? 4 : 0);
        assert_int_equal(st.nf4_dequant, fused && fusable ? 0 : 4);
    }
    qh_cuda_set_nf4_fused(b->gpu, 1);
    cpu_product(b, x, t, k, &w.wh, ref, n);
    b->gpu->release(b->gpu, &xg);
    nf4_weight_free(b, &w);
    free(x), free(y0), free(ref), free(ref_add);
}

/* The small-batch kernel with several weights in one launch (q/k/v: linear_qkv) and with gate
 * and up as a pair (linear_swiglu), against float64, under every plan it can take (rows per block
 * 128 / 256, clusters of 1 to 8 splits; where a forced plan does not fit, the plain ops run). */
static void test_nf4_small_multi(void **state)
{
    pair *b = *state;
    static const struct {
        int64_t t, k, n[3];
        int bs, dq;
    } cases[] = {{30, 1024, {300, 129, 517}, 64, 1}, {1, 4096, {1024, 256, 256}, 64, 0},
                 {17, 320, {64, 700, 33}, 128, 1},   {33, 128, {40, 8, 8}, 64, 0},
                 {64, 576, {200, 72, 72}, 64, 1},    {47, 2048, {130, 64, 64}, 128, 0}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int64_t t = cases[ci].t, k = cases[ci].k;
        uint64_t rng = 1300 + ci;
        float *x = normals16(&rng, t * k, 1.0);
        nf4_weight w[4]; /* q, k, v; w[3]: up beside w[0] as gate */
        double *ref[4];
        for (int i = 0; i < 4; i++) {
            int64_t n = cases[ci].n[i < 3 ? i : 0];
            nf4_weight_make(b, &rng, n, k, cases[ci].bs, cases[ci].dq, &w[i]);
            ref[i] = ref_product(x, t, k, w[i].deq, n);
        }
        const int64_t ng = cases[ci].n[0];
        double *ref_sw = malloc(sizeof(double) * (size_t)(t * ng));
        assert_non_null(ref_sw);
        for (int64_t i = 0; i < t * ng; i++) ref_sw[i] = ref[0][i] / (1.0 + exp(-ref[0][i])) * ref[3][i];
        qh_tensor xg = to_be(b->gpu, x, t, k, QH_F16);
        int ran = 0;
        for (int plan = 0; plan < 9; plan++) {
            const int rows = plan == 0 ? 0 : plan <= 4 ? 256 : 128, splits = plan == 0 ? 0 : 1 << ((plan - 1) % 4);
            qh_cuda_set_nf4_small_plan(b->gpu, rows, splits);
            qh_nf4_small_plan p;
            const int fits = qh_nf4_small_plan_of(t, cases[ci].n, 3, 0, k, cases[ci].bs, 132, rows, splits, &p);
            int64_t npair[2] = {ng, ng};
            const int fits_pair = qh_nf4_small_plan_of(t, npair, 2, 1, k, cases[ci].bs, 132, rows, splits, &p);
            qh_cuda_quant_stats st;
            qh_cuda_quant_stats_get(b->gpu, &st, 1);
            qh_tensor y[4];
            for (int i = 0; i < 4; i++) {
                y[i] = qh_tensor_2d(QH_F16, t, w[i].wh.shape[0]);
                must(b->gpu->alloc(b->gpu, &y[i]), "alloc");
            }
            must(b->gpu->linear_qkv(b->gpu, &xg, &w[0].wg, &w[1].wg, &w[2].wg, &y[0], &y[1], &y[2]), "linear_qkv");
            char what[160];
            for (int i = 0; i < 3; i++) {
                float *got = from_be(b->gpu, &y[i]);
                snprintf(what, sizeof what, "nf4 q/k/v %d of [%lld, %lld], rows %d, splits %d (%s)", i, (long long)t,
                         (long long)k, rows, splits, fits ? "one launch" : "plain products");
                bound(what, worst_row_err(got, ref[i], t, w[i].wh.shape[0]), 2e-3);
                free(got);
            }
            must(b->gpu->linear_swiglu(b->gpu, &xg, &w[0].wg, &w[3].wg, &y[0], &y[3]), "linear_swiglu");
            float *got = from_be(b->gpu, &y[0]);
            snprintf(what, sizeof what, "nf4 SwiGLU [%lld, %lld] -> %lld, rows %d, splits %d (%s)", (long long)t,
                     (long long)k, (long long)ng, rows, splits, fits_pair ? "paired" : "plain ops");
            bound(what, worst_row_err(got, ref_sw, t, ng), 3e-3);
            free(got);
            qh_cuda_quant_stats_get(b->gpu, &st, 1);
            assert_int_equal(st.nf4_fused, (fits ? 3 : 0) + (fits_pair ? 2 : 0));
            ran += fits + fits_pair;
            for (int i = 0; i < 4; i++) b->gpu->release(b->gpu, &y[i]);
        }
        if (t <= QH_NF4_SMALL_MAX_TOKENS) assert_true(ran > 0);
        qh_cuda_set_nf4_small_plan(b->gpu, 0, 0);
        b->gpu->release(b->gpu, &xg);
        for (int i = 0; i < 4; i++) nf4_weight_free(b, &w[i]), free(ref[i]);
        free(ref_sw), free(x);
    }
}

static void test_nf4_products(void **state)
{
    static const nf4_case cases[] = {
        {1, 64, 160, 64, 0},    {7, 128, 517, 64, 1},   {16, 4096, 1024, 64, 0}, {30, 4096, 300, 128, 1},
        {32, 1024, 4096, 256, 0}, {30, 4096, 4096, 64, 1}, {1, 11008, 4096, 64, 0}, {9, 11008, 129, 64, 1},
        {33, 4096, 64, 64, 0},  {300, 1024, 517, 64, 1}, {5, 96, 33, 64, 0},      {9, 100, 7, 10, 0},
        {3, 8, 5, 2, 1},        {64, 4096, 300, 64, 1}, {47, 11008, 129, 64, 0}, {65, 1024, 64, 64, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_nf4(*state, &cases[i], 200 + i);
}

/* nf4 weights used in a repeating order (as a model's layers use them) through dequantize +
 * cuBLASLt: with the next weight dequantized ahead on the second stream the products are the
 * same, bit for bit, as without; a broken order (a weight skipped, one repeated) too. */
static void test_nf4_prefetch(void **state)
{
    pair *b = *state;
    uint64_t rng = 900;
    enum { NW = 4 };
    static const int64_t shapes[NW][2] = {{96, 256}, {300, 256}, {256, 300}, {96, 256}}; /* [n, k] */
    const int64_t t = 200, bs = 64;
    qh_tensor wh[NW], wg[NW];
    void *mem[NW][2];
    for (int i = 0; i < NW; i++) {
        int64_t n = shapes[i][0], k = shapes[i][1], nb = (n * k + bs - 1) / bs;
        float *w = normals16(&rng, n * k, 0.05);
        mem[i][0] = malloc((size_t)(n * k / 2)), mem[i][1] = malloc(sizeof(float) * (size_t)nb);
        assert_int_equal(qh_nf4_quantize(QH_F32, w, n * k, (int)bs, mem[i][0], mem[i][1]), -1);
        free(w);
        wh[i] = qh_tensor_2d(QH_NF4, n, k);
        wh[i].data = mem[i][0], wh[i].quant.scale = mem[i][1], wh[i].quant.blocksize = (int)bs;
        must(b->gpu->weight(b->gpu, &wh[i], &wg[i]), "weight");
    }
    float *x256 = normals16(&rng, t * 256, 1.0), *x300 = normals16(&rng, t * 300, 1.0);
    qh_tensor xa = to_be(b->gpu, x256, t, 256, QH_F16), xb = to_be(b->gpu, x300, t, 300, QH_F16);
    /* 3 rounds of 0 1 2 3, then 0 2 3 3 1 */
    static const int seq[] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 2, 3, 3, 1};
    const int ns = (int)(sizeof seq / sizeof seq[0]);
    float *out[3][sizeof seq / sizeof seq[0]];
    qh_cuda_quant_stats st;
    /* 0: whole weights, one buffer; 1: prefetching; 2: prefetching in parts of 128 rows (weight 1:
     * 128 + 128 + 44 rows, its product in three column slices) */
    for (int pf = 0; pf < 3; pf++) {
        qh_cuda_set_nf4_prefetch(b->gpu, pf > 0);
        qh_cuda_set_nf4_part_bytes(b->gpu, pf == 2 ? 128 * 256 * 2 : 0);
        qh_cuda_set_nf4_fused(b->gpu, 0);
        for (int j = 0; j < ns; j++) {
            const qh_tensor *w = &wg[seq[j]];
            qh_tensor y = qh_tensor_2d(QH_F16, t, w->shape[0]);
            must(b->gpu->alloc(b->gpu, &y), "alloc");
            must(b->gpu->linear(b->gpu, w->shape[1] == 256 ? &xa : &xb, w, &y), "nf4 linear");
            out[pf][j] = from_be(b->gpu, &y);
            b->gpu->release(b->gpu, &y);
        }
        qh_cuda_quant_stats_get(b->gpu, &st, 1);
        assert_int_equal(st.nf4_dequant, ns);
    }
    for (int j = 0; j < ns; j++) {
        int64_t n = wg[seq[j]].shape[0];
        const int64_t diff = count_diff(out[0][j], out[1][j], t * n);
        if (diff) fail_msg("nf4 product %d (weight %d): %lld values differ with prefetching", j, seq[j], (long long)diff);
        /* in parts cuBLASLt sees other shapes and may sum in another order: fp16 rounding apart */
        double *ref = malloc(sizeof(double) * (size_t)(t * n));
        assert_non_null(ref);
        for (int64_t i = 0; i < t * n; i++) ref[i] = out[0][j][i];
        bound("nf4 product in parts vs whole", worst_row_err(out[2][j], ref, t, n), 1e-3);
        free(ref);
        free(out[0][j]), free(out[1][j]), free(out[2][j]);
    }
    printf("#   nf4 prefetching: %d products in a learned order (and a broken one), whole and in parts, equal to "
           "no prefetching\n", ns);
    qh_cuda_set_nf4_part_bytes(b->gpu, 0);
    qh_cuda_set_nf4_fused(b->gpu, 1);
    b->gpu->release(b->gpu, &xa), b->gpu->release(b->gpu, &xb);
    for (int i = 0; i < NW; i++) b->gpu->release(b->gpu, &wg[i]), free(mem[i][0]), free(mem[i][1]);
    free(x256), free(x300);
}

/* ---- the GPU quantizers ---------------------------------------------------------------------- */

static void *down(const void *dev, size_t bytes)
{
    void *h = malloc(bytes ? bytes : 1);
    assert_non_null(h);
    assert_int_equal(cudaMemcpy(h, dev, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
}

static void test_gpu_quantizers(void **state)
{
    pair *b = *state;
    uint64_t rng = 11;
    static const int64_t i8_shapes[][2] = {{37, 100}, {64, 4096}, {5, 16}, {1, 3}};
    for (size_t i = 0; i < sizeof i8_shapes / sizeof i8_shapes[0]; i++) {
        int64_t rows = i8_shapes[i][0], cols = i8_shapes[i][1];
        float *w = normals16(&rng, rows * cols, 0.05);
        int8_t *q = malloc((size_t)(rows * cols));
        float *scb = malloc(sizeof(float) * (size_t)rows);
        qh_int8_quantize(QH_F32, w, rows, cols, q, scb);
        qh_tensor wg = to_be(b->gpu, w, rows, cols, QH_F16), qg;
        must(qh_cuda_quantize(b->gpu, &wg, QH_I8, 0, 0, 6.0f, &qg), "qh_cuda_quantize int8");
        must(b->gpu->sync(b->gpu), "sync");
        qh_quant_dev_layout l;
        assert_int_equal(qh_quant_dev_layout_of(&qg, &l), 0);
        int8_t *gq = down(qg.data, l.codes_bytes);
        float *gs = down(qg.quant.scale, sizeof(float) * (size_t)rows);
        for (int64_t r = 0; r < l.rows_pad; r++)
            for (int64_t c = 0; c < l.cols_pad; c++) {
                int8_t want = r < rows && c < cols ? q[r * cols + c] : 0;
                if (gq[r * l.cols_pad + c] != want)
                    fail_msg("int8 [%lld, %lld]: code (%lld, %lld) is %d, the CPU's %d", (long long)rows, (long long)cols,
                             (long long)r, (long long)c, gq[r * l.cols_pad + c], want);
            }
        assert_memory_equal(gs, scb, sizeof(float) * (size_t)rows);
        assert_true(qg.quant.threshold == 6.0f);
        printf("#   int8 quantizer [%lld, %lld]: codes and scales as the CPU's\n", (long long)rows, (long long)cols);
        b->gpu->release(b->gpu, &wg), b->gpu->release(b->gpu, &qg);
        free(w), free(q), free(scb), free(gq), free(gs);
    }
    static const int64_t nf4_shapes[][4] = {{13, 64, 64, 0}, {7, 10, 4, 1}, {300, 4096, 64, 1}, {3, 6, 2, 0}, {9, 22, 64, 1}};
    for (size_t i = 0; i < sizeof nf4_shapes / sizeof nf4_shapes[0]; i++) {
        int64_t rows = nf4_shapes[i][0], cols = nf4_shapes[i][1], n = rows * cols;
        int bs = (int)nf4_shapes[i][2], dq = (int)nf4_shapes[i][3];
        int64_t nb = (n + bs - 1) / bs, nn = (nb + 255) / 256;
        float *w = normals16(&rng, n, 0.05);
        for (int64_t j = 0; j < bs && j < n; j++) w[j] = 0.0f; /* a block of zeros: codes 7 */
        uint8_t *codes = malloc((size_t)(n / 2 + 1));
        float *amax = malloc(sizeof(float) * (size_t)nb), *nested = malloc(sizeof(float) * (size_t)nn);
        int8_t *qa = malloc((size_t)nb);
        float off = 0;
        qh_nf4_quantize(QH_F32, w, n, bs, codes, amax);
        if (dq) qh_nf4_double_quant(amax, nb, qa, nested, &off);
        qh_tensor wg = to_be(b->gpu, w, rows, cols, QH_F16), qg;
        must(qh_cuda_quantize(b->gpu, &wg, QH_NF4, bs, dq, 0, &qg), "qh_cuda_quantize nf4");
        must(b->gpu->sync(b->gpu), "sync");
        uint8_t *gc = down(qg.data, (size_t)(n / 2));
        assert_memory_equal(gc, codes, (size_t)(n / 2));
        assert_int_equal(qg.quant.blocksize, bs);
        if (dq) {
            int8_t *gqa = down(qg.quant.qabsmax, (size_t)nb);
            float *gn = down(qg.quant.nested_absmax, sizeof(float) * (size_t)nn);
            assert_memory_equal(gqa, qa, (size_t)nb);
            assert_memory_equal(gn, nested, sizeof(float) * (size_t)nn);
            assert_true(qg.quant.nested_offset == off && !qg.quant.scale);
            free(gqa), free(gn);
        } else {
            float *ga = down(qg.quant.scale, sizeof(float) * (size_t)nb);
            assert_memory_equal(ga, amax, sizeof(float) * (size_t)nb);
            assert_null(qg.quant.qabsmax);
            free(ga);
        }
        printf("#   nf4 quantizer [%lld, %lld], blocksize %d%s: codes and scales as the CPU's\n", (long long)rows,
               (long long)cols, bs, dq ? ", double quantization" : "");
        b->gpu->release(b->gpu, &wg), b->gpu->release(b->gpu, &qg);
        free(w), free(codes), free(amax), free(nested), free(qa), free(gc);
    }
}

/* ---- the whole model ------------------------------------------------------------------------ */

/* The fp16-activation CPU: the CPU backend with outputs the GPU keeps in fp16 rounded to fp16
 * (rmsnorm into a new buffer, linear, attention, SwiGLU). One at a time (static state). */
static qh_backend emu_base;

static void round16(qh_tensor *t)
{
    float *p = t->data;
    for (int64_t i = 0, n = qh_tensor_numel(t); i < n; i++) p[i] = qh_f16_to_f32(qh_f32_to_f16(p[i]));
}

static int emu_rmsnorm(qh_backend *be, const qh_tensor *x, const qh_tensor *w, float eps, qh_tensor *out)
{
    int rc = emu_base.rmsnorm(be, x, w, eps, out);
    if (!rc && out->data != x->data) round16(out); /* in place: the final norm, fp32 on the GPU too */
    return rc;
}

static int emu_linear(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y)
{
    int rc = emu_base.linear(be, x, w, y);
    if (!rc) round16(y);
    return rc;
}

static int emu_attention(qh_backend *be, const qh_tensor *q, const qh_tensor *k, const qh_tensor *v, qh_tensor *out,
                         const qh_batch *batch, int nh, int nkv, int hd)
{
    int rc = emu_base.attention(be, q, k, v, out, batch, nh, nkv, hd);
    if (!rc) round16(out);
    return rc;
}

static int emu_silu_mul(qh_backend *be, const qh_tensor *g, const qh_tensor *u, qh_tensor *out)
{
    int rc = emu_base.silu_mul(be, g, u, out);
    if (!rc) round16(out);
    return rc;
}

static qh_backend *fp16_activation_cpu(void)
{
    qh_backend *be;
    must(qh_backend_create("cpu", &be), "cpu backend");
    emu_base = *be;
    be->rmsnorm = emu_rmsnorm, be->linear = emu_linear, be->attention = emu_attention, be->silu_mul = emu_silu_mul;
    return be;
}

static float *run_model(qh_backend *be, const char *dir, const char *variant, const char *file, int batch,
                        const int32_t *ids, const int32_t *lens, int n, int *hidden_size)
{
    qh_llama_model *m;
    must(qh_llama_load_variant(dir, variant, file, be, &m), "load");
    qh_llama_ctx *ctx;
    must(qh_llama_ctx_create(m, batch, &ctx), "ctx");
    float *h = malloc(sizeof(float) * (size_t)n * m->cfg.hidden_size);
    assert_non_null(h);
    must(qh_llama_forward(ctx, ids, lens, n, h), "forward");
    *hidden_size = m->cfg.hidden_size;
    qh_llama_ctx_free(ctx);
    qh_llama_free(m);
    return h;
}

/* errors of got against want (float rows, or float64 rows): worst row and all rows together */
static void row_errors(const float *got, const float *wantf, const double *wantd, int n, int h, double *worst, double *all)
{
    double nn = 0, dd = 0;
    *worst = 0;
    for (int s = 0; s < n; s++) {
        double num = 0, den = 0;
        for (int i = 0; i < h; i++) {
            size_t j = (size_t)s * h + i;
            double w = wantd ? wantd[j] : wantf[j], d = got[j] - w;
            num += d * d, den += w * w;
        }
        double e = sqrt(num / (den > 0 ? den : 1e-300));
        if (!(e <= *worst)) *worst = e;
        nn += num, dd += den;
    }
    *all = sqrt(nn / (dd > 0 ? dd : 1e-300));
}

/* A fixture model (tests/fixtures/llama/NAME) quantized into a temporary directory, and its
 * reference inputs and float64 hidden states. */
typedef struct {
    char dir[1024];
    char *tmp, *file, *report;
    qh_safetensors *ref;
    const int32_t *ids, *lens;
    const double *hidden;
    int n;
} quant_fixture;

static void quant_fixture_open(const char *name, int bits, int dq, float threshold, quant_fixture *f)
{
    char path[1100];
    snprintf(f->dir, sizeof f->dir, "%s/llama/%s", tu_fixtures(), name);
    snprintf(path, sizeof path, "%s/reference.safetensors", f->dir);
    f->tmp = tu_mkdtemp("cuda-quant");
    f->file = tu_path(f->tmp, "backbone.safetensors"), f->report = tu_path(f->tmp, "report.json");
    qh_quantize_opts o = {.model_dir = f->dir, .out_path = f->file, .report_path = f->report, .bits = bits,
                          .blocksize = 64, .double_quant = dq, .threshold = threshold};
    qh_quantize_summary sum;
    must(qh_quantize_model(&o, &sum), "quantize");
    must(qh_st_open(path, &f->ref), "reference");
    const qh_st_tensor *ids_t = qh_st_find(f->ref, "ids"), *len_t = qh_st_find(f->ref, "lengths"),
                       *hid_t = qh_st_find(f->ref, "hidden");
    assert_true(ids_t && len_t && hid_t);
    f->ids = qh_st_data(f->ref, ids_t), f->lens = qh_st_data(f->ref, len_t), f->hidden = qh_st_data(f->ref, hid_t);
    f->n = (int)len_t->shape[0];
}

static void quant_fixture_close(quant_fixture *f)
{
    qh_st_close(f->ref);
    tu_rmtree(f->tmp);
    free(f->tmp), free(f->file), free(f->report);
}

static void check_quant_model(pair *b, const char *name, int bits, int dq)
{
    quant_fixture f;
    quant_fixture_open(name, bits, dq, QH_INT8_DEFAULT_THRESHOLD, &f);
    const char *variant = bits == 8 ? "int8" : "nf4", *dir = f.dir, *file = f.file;
    const int32_t *ids = f.ids, *lens = f.lens;
    const double *rh = f.hidden;
    int n = f.n, failed = 0;
    static const int batches[] = {1 << 16, 7, 128};
    for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
        int h, batch = batches[bi];
        float *cpu = run_model(b->cpu, dir, variant, file, batch, ids, lens, n, &h);
        qh_backend *emu = fp16_activation_cpu();
        float *cpu16 = run_model(emu, dir, variant, file, batch, ids, lens, n, &h);
        qh_backend_destroy(emu);
        qh_cuda_quant_stats st;
        qh_cuda_quant_stats_get(b->gpu, &st, 1);
        float *gpu = run_model(b->gpu, dir, variant, file, batch, ids, lens, n, &h);
        qh_cuda_quant_stats_get(b->gpu, &st, 1);
        double w_gc, a_gc, w_ec, a_ec, w_cr, a_cr, w_gr, a_gr;
        row_errors(gpu, cpu, NULL, n, h, &w_gc, &a_gc);
        row_errors(cpu16, cpu, NULL, n, h, &w_ec, &a_ec);
        row_errors(cpu, NULL, rh, n, h, &w_cr, &a_cr);
        row_errors(gpu, NULL, rh, n, h, &w_gr, &a_gr);
        int bad = !(w_gc <= 2.5 * w_ec + 2e-3 && a_gc <= 1.5 * a_ec + 1e-3 && a_gr <= 1.25 * a_cr + 5e-3);
        long outl = 0, inputs = 0;
        for (int i = 0; i < QH_CUDA_OP_COUNT; i++) outl += st.int8_outlier_cols[i], inputs += st.int8_inputs[i];
        printf("# %s %s %s%s, batch %d: GPU vs CPU worst %.2e, all %.2e (fp16-activation CPU vs CPU: %.2e, %.2e); "
               "vs unquantized float64: CPU %.2e (worst %.2e), GPU %.2e (worst %.2e); int8 inputs %ld (outlier cols "
               "%.1f mean), products tc %ld plain %ld, nf4 fused %ld dequant %ld\n",
               bad ? "FAIL" : "ok", name, variant, dq ? " dq" : "", batch, w_gc, a_gc, w_ec, a_ec, a_cr, w_cr, a_gr, w_gr,
               inputs, inputs ? (double)outl / inputs : 0.0, st.int8_tc_products, st.int8_plain_products, st.nf4_fused,
               st.nf4_dequant);
        if (bits == 4 && batch == 7 && !strcmp(name, "mha")) assert_true(st.nf4_fused > 0);
        failed |= bad;
        free(cpu), free(cpu16), free(gpu);
    }
    quant_fixture_close(&f);
    if (failed) fail_msg("%s %s: errors above the bounds (lines marked FAIL)", name, variant);
}

/* At threshold 0 RMSNorm writes the int8 codes of its output for the q/k/v and gate/up products
 * (qh_cu_quant_norm_codes), and the int8 SwiGLU those of its output for down_proj: the whole
 * forward pass gives the same hidden states bit for bit as with the products quantizing their
 * inputs themselves. */
static void test_int8_input_codes(void **state)
{
    pair *b = *state;
    static const char *const names[] = {"mha", "gqa"};
    for (int mi = 0; mi < 2; mi++) {
        quant_fixture f;
        quant_fixture_open(names[mi], 8, 0, 0.0f, &f);
        int n = f.n, h;
        static const int batches[] = {1 << 16, 7};
        for (size_t bi = 0; bi < 2; bi++) {
            float *got[2];
            long norm[2], swiglu[2];
            for (int on = 0; on < 2; on++) {
                qh_cuda_set_int8_input_codes(b->gpu, on);
                qh_cuda_quant_stats st;
                qh_cuda_quant_stats_get(b->gpu, &st, 1);
                got[on] = run_model(b->gpu, f.dir, "int8", f.file, batches[bi], f.ids, f.lens, n, &h);
                qh_cuda_quant_stats_get(b->gpu, &st, 1);
                norm[on] = st.int8_norm_codes, swiglu[on] = st.int8_swiglu_codes;
            }
            const int64_t diff = count_diff(got[0], got[1], (int64_t)n * h);
            printf("#   %s int8 threshold 0, batch %d: RMSNorm / SwiGLU wrote the codes of %ld / %ld inputs (when "
                   "off: %ld / %ld); %lld of %lld hidden values differ\n",
                   names[mi], batches[bi], norm[1], swiglu[1], norm[0], swiglu[0], (long long)diff, (long long)n * h);
            assert_int_equal(diff, 0);
            assert_true(norm[1] > 0 && swiglu[1] > 0);
            assert_int_equal(norm[0] + swiglu[0], 0);
            free(got[0]), free(got[1]);
        }
        quant_fixture_close(&f);
    }
}

/* Whole forward passes with every int8 product through the one-kernel wgmma path (forced: the
 * fixtures' batches are small) give the int32 path's hidden states bit for bit, with and without
 * outlier decomposition, in one batch and in batches of 7 tokens. */
static void test_model_int8_wgmma(void **state)
{
    pair *b = *state;
    if (!is_hopper()) return;
    static const char *const names[] = {"mha", "gqa"};
    static const float thresholds[] = {0.0f, 6.0f};
    qh_cuda_set_int8_outlier_sync(b->gpu, 1); /* the kernel needs the outlier count on the host */
    for (int mi = 0; mi < 2; mi++)
        for (int ti = 0; ti < 2; ti++) {
            quant_fixture f;
            quant_fixture_open(names[mi], 8, 0, thresholds[ti], &f);
            int n = f.n, h;
            static const int batches[] = {1 << 16, 7};
            for (size_t bi = 0; bi < 2; bi++) {
                float *got[2];
                long products[2];
                for (int on = 0; on < 2; on++) {
                    qh_cuda_set_int8_wgmma(b->gpu, on ? QH_CUDA_I8_WGMMA_ALWAYS : QH_CUDA_I8_WGMMA_OFF);
                    qh_cuda_quant_stats st;
                    qh_cuda_quant_stats_get(b->gpu, &st, 1);
                    got[on] = run_model(b->gpu, f.dir, "int8", f.file, batches[bi], f.ids, f.lens, n, &h);
                    qh_cuda_quant_stats_get(b->gpu, &st, 1);
                    products[on] = st.int8_wgmma_products;
                }
                qh_cuda_set_int8_wgmma(b->gpu, QH_CUDA_I8_WGMMA_AUTO);
                const int64_t diff = count_diff(got[0], got[1], (int64_t)n * h);
                printf("#   %s int8 threshold %g, batch %d: %ld products in the wgmma kernel (off: %ld); %lld of %lld "
                       "hidden values differ from the int32 path\n",
                       names[mi], thresholds[ti], batches[bi], products[1], products[0], (long long)diff,
                       (long long)n * h);
                assert_int_equal(diff, 0);
                assert_true(products[1] > 0);
                assert_int_equal(products[0], 0);
                free(got[0]), free(got[1]);
            }
            quant_fixture_close(&f);
        }
    qh_cuda_set_int8_outlier_sync(b->gpu, 0);
}

/* Batch-1 passes replayed from recorded CUDA graphs (llama_forward.c) on quantized models give
 * the hidden states of launching every op, bit for bit: nf4 with double quantization (the
 * fixture's down_proj, 160 columns, takes the dequantize + cuBLASLt path, whose weight prefetch
 * on a side stream stays out of the recordings: qh_cu_quant_begin_capture), with and without
 * prefetching in the plain passes around them; int8 with outlier columns (its small batches
 * never wait for the device). Where the ops cannot be recorded (int8 made to read its outlier
 * count on the host) nothing is recorded and every pass runs plainly, with the same numbers. */
static void test_model_graphs(void **state)
{
    (void)state;
    static const struct {
        int bits, dq, sync, prefetch, recordable;
        float threshold;
    } cases[] = {{4, 1, 0, 0, 1, 0.0f}, {4, 1, 0, 1, 1, 0.0f}, {8, 0, 0, 1, 1, 6.0f}, {8, 0, 1, 1, 0, 6.0f}};
    /* (sequences, tokens): plain passes of several sequences between the replays (their
     * prefetches may still run when a replay starts) */
    static const int passes[][2] = {{1, 5}, {1, 5}, {1, 30}, {3, 20}, {1, 30}, {1, 5}, {3, 20}, {1, 30}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        quant_fixture f;
        quant_fixture_open("mha", cases[ci].bits, cases[ci].dq, cases[ci].threshold, &f);
        const char *variant = cases[ci].bits == 8 ? "int8" : "nf4";
        qh_backend *be; /* a fresh one: no side stream from earlier prefetching */
        must(qh_backend_create("cuda", &be), "cuda backend");
        qh_cuda_set_int8_outlier_sync(be, cases[ci].sync);
        qh_cuda_set_nf4_prefetch(be, cases[ci].prefetch);
        qh_llama_model *m;
        must(qh_llama_load_variant(f.dir, variant, f.file, be, &m), "load");
        qh_llama_ctx *on, *off;
        must(qh_llama_ctx_create(m, 64, &on), "ctx");
        must(qh_llama_ctx_create(m, 64, &off), "ctx");
        qh_llama_ctx_set_graphs(off, 0);
        uint64_t rng = 5 + ci;
        long diff = 0, rec, rep;
        const size_t n_pass = sizeof passes / sizeof passes[0];
        for (size_t i = 0; i < n_pass; i++)
            diff += tu_forward_pair_diff(on, off, passes[i][0], passes[i][1], m->cfg.vocab_size, m->cfg.hidden_size, &rng);
        qh_llama_ctx_graph_counts(on, &rec, &rep);
        printf("#   %s%s%s%s: %ld hidden values differ over %zu passes; %ld recorded, %ld replayed\n", variant,
               cases[ci].dq ? " dq" : "", cases[ci].sync ? ", outlier count read on the host" : "",
               cases[ci].bits == 4 ? (cases[ci].prefetch ? ", prefetch" : ", no prefetch") : "", diff, n_pass, rec, rep);
        assert_int_equal(diff, 0);
        if (!cases[ci].recordable) {
            assert_int_equal(rec + rep, 0);
        } else if (cases[ci].bits == 4) {
            assert_int_equal(rec, 2);
            assert_int_equal(rep, 4);
        } else { /* int8's scratch grows with the outlier count: a recording whose scratch moved
                  * is made again on its next pass (counted as recorded, not replayed) */
            assert_int_equal(rec + rep, 6);
            assert_true(rep > 0);
        }
        qh_llama_ctx_free(on), qh_llama_ctx_free(off);
        qh_llama_free(m);
        qh_backend_destroy(be);
        quant_fixture_close(&f);
    }
}

static void test_model_int8(void **state)
{
    check_quant_model(*state, "mha", 8, 0);
    check_quant_model(*state, "gqa", 8, 0);
}

static void test_model_nf4(void **state)
{
    check_quant_model(*state, "mha", 4, 0);
    check_quant_model(*state, "gqa", 4, 1);
}

int main(void)
{
    if (!qh_cuda_available()) {
        printf("# no CUDA device: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpu_quantizers), cmocka_unit_test(test_int8_products),
        cmocka_unit_test(test_int8_input_cache), cmocka_unit_test(test_int8_swiglu),
        cmocka_unit_test(test_int8_swiglu_codes), cmocka_unit_test(test_int8_wgmma),
        cmocka_unit_test(test_int8_outlier_nosync), cmocka_unit_test(test_int8_qkv),
        cmocka_unit_test(test_int8_input_codes),
        cmocka_unit_test(test_nf4_products),     cmocka_unit_test(test_nf4_small_multi),
        cmocka_unit_test(test_nf4_prefetch),
        cmocka_unit_test(test_model_int8),      cmocka_unit_test(test_model_int8_wgmma),
        cmocka_unit_test(test_model_nf4),       cmocka_unit_test(test_model_graphs),
    };
    return cmocka_run_group_tests(tests, tu_cpu_cuda_setup, tu_cpu_cuda_teardown);
}

#else

int main(void)
{
    printf("# built without CUDA: skipped\n");
    return 77;
}

#endif
