/* LLM.int8(): weight codes and scales against a float64 reference; the CPU linear op with
 * injected outlier feature columns against the float64 product, within the int8 error bound
 * worked out element by element; outlier columns exact to (better than) fp16; integer
 * arithmetic exact where no rounding is involved. */
#include "testutil.h"

#include "backend.h"
#include "dtype.h"
#include "error.h"
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t n, k;
    uint16_t *h; /* fp16 weight */
    float *f;    /* its exact fp32 widening */
    int8_t *q;
    float *scb;
    float *deq; /* q * scb / 127 as the kernel uses it */
    qh_tensor t;
} qweight;

static void make_weight(qweight *w, int64_t n, int64_t k, uint64_t seed)
{
    uint64_t rng = seed;
    w->n = n, w->k = k;
    w->h = malloc(sizeof *w->h * (size_t)(n * k));
    w->f = malloc(sizeof *w->f * (size_t)(n * k));
    w->q = malloc((size_t)(n * k));
    w->scb = malloc(sizeof *w->scb * (size_t)n);
    w->deq = malloc(sizeof *w->deq * (size_t)(n * k));
    for (int64_t r = 0; r < n; r++) {
        double sd = 0.02 * (1 + (double)(r % 5)); /* rows of different scales */
        for (int64_t c = 0; c < k; c++) {
            double v = r == 1 ? 0.0 : r == 2 ? -0.125 : sd * tu_rand_normal(&rng); /* a zero and a constant row */
            w->h[r * k + c] = qh_f32_to_f16((float)v);
            w->f[r * k + c] = qh_f16_to_f32(w->h[r * k + c]);
        }
    }
    assert_int_equal(qh_int8_quantize(QH_F16, w->h, n, k, w->q, w->scb), -1);
    w->t = qh_tensor_2d(QH_I8, n, k);
    w->t.data = w->q;
    w->t.quant.scale = w->scb;
    w->t.quant.threshold = 6.0f;
    qh_int8_dequantize(&w->t, 0, n * k, w->deq);
}

static void free_weight(qweight *w)
{
    free(w->h);
    free(w->f);
    free(w->q);
    free(w->scb);
    free(w->deq);
}

static void test_weight_codes_equal_reference(void **state)
{
    (void)state;
    qweight w;
    make_weight(&w, 37, 301, 5);
    for (int64_t r = 0; r < w.n; r++) {
        double amax = 0;
        for (int64_t c = 0; c < w.k; c++) amax = fmax(amax, fabs((double)w.f[r * w.k + c]));
        assert_true(w.scb[r] == (float)amax);
        for (int64_t c = 0; c < w.k; c++) {
            double want = amax > 0 ? rint((double)w.f[r * w.k + c] * 127.0 / amax) : 0;
            if (w.q[r * w.k + c] != (int8_t)want) fail_msg("[%lld][%lld]: %d, reference %g", (long long)r, (long long)c, w.q[r * w.k + c], want);
            /* round trip: half a step of the row's scale */
            double err = fabs((double)w.deq[r * w.k + c] - w.f[r * w.k + c]);
            assert_true(err <= amax / 254.0 + amax * 1e-6 + 1e-30); /* + fp32 rounding of the scale */
        }
    }
    /* the dequantizer agrees with itself on a sub-range that crosses rows */
    float part[400];
    qh_int8_dequantize(&w.t, 250, 400, part);
    assert_memory_equal(part, w.deq + 250, sizeof part);
    assert_true(qh_tensor_is_quantized(&w.t));
    free_weight(&w);
}

static void test_nonfinite_found(void **state)
{
    (void)state;
    uint16_t h[4 * 50];
    for (int i = 0; i < 200; i++) h[i] = qh_f32_to_f16(0.5f);
    int8_t q[200];
    float scb[4];
    h[130] = 0x7c00; /* +inf at [2][30] */
    assert_int_equal(qh_int8_quantize(QH_F16, h, 4, 50, q, scb), 130);
}

/* Runs the CPU linear op: y = x w^T. */
static void run_linear(const qweight *w, float thr, const float *x, int64_t T, float *y)
{
    qh_backend *be;
    assert_int_equal(qh_cpu_backend_create(&be), QH_OK);
    qh_tensor xt = qh_tensor_2d(QH_F32, T, w->k), yt = qh_tensor_2d(QH_F32, T, w->n), wv;
    assert_int_equal(be->alloc(be, &xt), QH_OK);
    assert_int_equal(be->alloc(be, &yt), QH_OK);
    memcpy(xt.data, x, sizeof(float) * (size_t)(T * w->k));
    qh_tensor wt = w->t;
    wt.quant.threshold = thr;
    assert_int_equal(be->weight(be, &wt, &wv), QH_OK);
    assert_int_equal(be->linear(be, &xt, &wv, &yt), QH_OK);
    memcpy(y, yt.data, sizeof(float) * (size_t)(T * w->n));
    be->release(be, &xt);
    be->release(be, &yt);
    qh_backend_destroy(be);
}

/* Inputs ~ N(0, 1) with outlier feature columns: a few tokens hold |x| of 8 to 60 there. */
static float *make_input(int64_t T, int64_t K, const int64_t *out_cols, int n_out, uint64_t seed)
{
    uint64_t rng = seed;
    float *x = malloc(sizeof(float) * (size_t)(T * K));
    for (int64_t i = 0; i < T * K; i++) x[i] = (float)tu_rand_normal(&rng);
    for (int j = 0; j < n_out; j++)
        for (int64_t t = 0; t < T; t += 3) x[t * K + out_cols[j]] = (float)((t % 2 ? -1 : 1) * (8 + 52 * tu_rand_uniform(&rng)));
    for (int64_t i = 0; i < T * K; i++) /* below 6 elsewhere: only the injected columns are outliers */
        if (fabsf(x[i]) >= 6.0f) {
            int injected = 0;
            for (int j = 0; j < n_out; j++) injected |= i % K == out_cols[j];
            if (!injected) x[i] = 5.5f;
        }
    return x;
}

/* y against float64 products: with the original weight within the weight + activation int8
 * error, with the dequantized weight within the activation error alone. Per element:
 *   |x Δw| <= sum_c |x_c| scb_n / 254            (weight codes: half a step)
 *   |Δx w'| <= amax_t / 254 * sum_{c regular} |w'_c|  (token codes: half a step; outlier columns: none)
 * Returns the relative Frobenius error against the dequantized product. */
static double check_against_fp64(const qweight *w, const float *x, int64_t T, const float *y, float thr)
{
    int64_t N = w->n, K = w->k;
    char *outlier = calloc((size_t)K, 1);
    for (int64_t i = 0; thr > 0 && i < T * K; i++) outlier[i % K] |= fabsf(x[i]) >= thr;
    double num = 0, den = 0;
    for (int64_t t = 0; t < T; t++) {
        double amax = 0;
        for (int64_t c = 0; c < K; c++)
            if (!outlier[c]) amax = fmax(amax, fabs((double)x[t * K + c]));
        for (int64_t n = 0; n < N; n++) {
            double orig = 0, dq = 0, sx = 0, sw = 0, mag = 0;
            for (int64_t c = 0; c < K; c++) {
                double xv = x[t * K + c], wd = w->deq[n * K + c];
                orig += xv * w->f[n * K + c];
                dq += xv * wd;
                sx += fabs(xv);
                mag += fabs(xv * wd);
                if (!outlier[c]) sw += fabs(wd);
            }
            double act = amax / 254.0 * sw, wgt = sx * w->scb[n] / 254.0, slack = 2e-6 * mag + 1e-9;
            double got = y[t * N + n];
            if (fabs(got - dq) > act + slack)
                fail_msg("[%lld][%lld]: %.9g vs dequantized product %.9g, bound %.3g", (long long)t, (long long)n, got, dq, act + slack);
            if (fabs(got - orig) > act + wgt + slack)
                fail_msg("[%lld][%lld]: %.9g vs fp64 product %.9g, bound %.3g", (long long)t, (long long)n, got, orig, act + wgt + slack);
            num += (got - dq) * (got - dq);
            den += dq * dq;
        }
    }
    free(outlier);
    return sqrt(num / den);
}

static void check_outliers(int64_t T, int64_t N, int64_t K, uint64_t seed)
{
    qweight w;
    make_weight(&w, N, K, seed);
    int64_t cols[3] = {0, K / 2, K - 1};
    float *x = make_input(T, K, cols, 3, seed + 1);
    float *y = malloc(sizeof(float) * (size_t)(T * N));
    run_linear(&w, 6.0f, x, T, y);
    double e_mixed = check_against_fp64(&w, x, T, y, 6.0f);
    /* without the decomposition the outliers stretch every token's int8 scale */
    run_linear(&w, 0.0f, x, T, y);
    double e_plain = check_against_fp64(&w, x, T, y, 0.0f);
    print_message("T %lld N %lld K %lld: relative error %.5f with outlier columns split off, %.5f without\n",
                  (long long)T, (long long)N, (long long)K, e_mixed, e_plain);
    if (T >= 3) assert_true(e_mixed * 3 < e_plain);
    free(x);
    free(y);
    free_weight(&w);
}

static void test_matmul_with_outliers(void **state)
{
    (void)state;
    check_outliers(37, 53, 301, 1); /* tails everywhere: N % 4, N % 16, K % 32 */
    check_outliers(7, 64, 4096, 2);
    check_outliers(1, 5, 32, 3);
    check_outliers(16, 130, 1000, 4);
}

/* Only outlier columns carry input: the result is their fp32 product with the dequantized
 * weight, far inside fp16's 2^-11. */
static void test_outlier_columns_exact(void **state)
{
    (void)state;
    int64_t T = 9, N = 21, K = 200;
    qweight w;
    make_weight(&w, N, K, 8);
    int64_t cols[4] = {3, 50, 51, 199};
    float *x = calloc((size_t)(T * K), sizeof(float)), *y = malloc(sizeof(float) * (size_t)(T * N));
    uint64_t rng = 4;
    for (int64_t t = 0; t < T; t++)
        for (int j = 0; j < 4; j++) x[t * K + cols[j]] = (float)(20 * tu_rand_normal(&rng) + (t == 0 ? 30 : 0));
    run_linear(&w, 6.0f, x, T, y);
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            double want = 0, mag = 0;
            for (int j = 0; j < 4; j++) {
                want += (double)x[t * K + cols[j]] * w.deq[n * K + cols[j]];
                mag += fabs((double)x[t * K + cols[j]] * w.deq[n * K + cols[j]]);
            }
            assert_true(fabs(y[t * N + n] - want) <= 1e-6 * mag + 1e-12);
            assert_true(fabs(y[t * N + n] - want) <= 0x1p-11 * fabs(want) + 1e-6 * mag + 1e-12);
        }
    free(x);
    free(y);
    free_weight(&w);
}

/* Tokens whose absmax is exactly 127 and integer entries quantize to themselves, so the
 * product is integer arithmetic end to end: exact up to the final fp32 scaling, including
 * long rows (no int32 overflow at 127 * 127 * 4113). */
static void test_integer_exact(void **state)
{
    (void)state;
    int64_t T = 3, N = 9, K = 4113;
    qweight w;
    make_weight(&w, N, K, 12);
    float *x = malloc(sizeof(float) * (size_t)(T * K)), *y = malloc(sizeof(float) * (size_t)(T * N));
    uint64_t rng = 6;
    for (int64_t i = 0; i < T * K; i++) x[i] = (float)((int)(tu_rand_u64(&rng) % 255) - 127);
    for (int64_t t = 0; t < T; t++) x[t * K] = 127; /* absmax 127: scale 1 */
    for (int64_t i = 0; i < K; i++) x[2 * K + i] = 127; /* and a worst case for the accumulator */
    for (int64_t i = 0; i < K; i++) w.q[5 * K + i] = 127;
    run_linear(&w, 0.0f, x, T, y);
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            int64_t acc = 0;
            for (int64_t c = 0; c < K; c++) acc += (int64_t)x[t * K + c] * w.q[n * K + c];
            double want = (double)acc * (w.scb[n] / 127.0f);
            assert_true(fabs(y[t * N + n] - want) <= 4e-7 * fabs(want) + 1e-30);
        }
    free(x);
    free(y);
    free_weight(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weight_codes_equal_reference), cmocka_unit_test(test_nonfinite_found),
        cmocka_unit_test(test_matmul_with_outliers),         cmocka_unit_test(test_outlier_columns_exact),
        cmocka_unit_test(test_integer_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
