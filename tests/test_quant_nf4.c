/* NF4 (QLoRA) quantization against a float64 reference written here from the published
 * algorithm (../shared/reference/quantization.md): codes and scales must be equal, not close.
 * Then round-trip error bounds, double quantization, and the CPU linear op on NF4 weights. */
#include "testutil.h"

#include "backend.h"
#include "dtype.h"
#include "error.h"
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The 16 levels as the reference lists them (code 0..15). */
static const double LEVELS[16] = {
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0};

/* Reference: nearest level by distance, in float64; the first (lower) level wins a tie. */
static int ref_code(double x)
{
    int best = 0;
    for (int i = 1; i < 16; i++)
        if (fabs(x - LEVELS[i]) < fabs(x - LEVELS[best])) best = i;
    return best;
}

/* Reference blockwise quantization of fp32 values (the fp16 inputs widened exactly). */
static void ref_quantize(const float *w, int64_t n, int bs, uint8_t *codes, float *absmax)
{
    memset(codes, 0, (size_t)(n + 1) / 2);
    for (int64_t b = 0; b * bs < n; b++) {
        int64_t i0 = b * bs, i1 = i0 + bs < n ? i0 + bs : n;
        double amax = 0;
        for (int64_t i = i0; i < i1; i++) amax = fmax(amax, fabs((double)w[i]));
        absmax[b] = (float)amax;
        for (int64_t i = i0; i < i1; i++) {
            int c = amax > 0 ? ref_code((double)w[i] / amax) : 7; /* a zero block is level 0.0 */
            codes[i / 2] |= (uint8_t)(i % 2 == 0 ? c << 4 : c);  /* first value in the high nibble */
        }
    }
}

/* Reference double quantization: absmax minus its mean, int8-coded per 256 block. */
static void ref_double_quant(const float *a, int64_t nb, int8_t *q, float *nested, float *offset)
{
    double sum = 0;
    for (int64_t i = 0; i < nb; i++) sum += a[i];
    float off = (float)(sum / (double)nb);
    *offset = off;
    for (int64_t j = 0; j * 256 < nb; j++) {
        int64_t i0 = j * 256, i1 = i0 + 256 < nb ? i0 + 256 : nb;
        double m = 0;
        for (int64_t i = i0; i < i1; i++) m = fmax(m, fabs((double)a[i] - off));
        nested[j] = (float)m;
        for (int64_t i = i0; i < i1; i++) {
            double v = nested[j] > 0 ? rint(((double)a[i] - off) * 127.0 / (double)nested[j]) : 0;
            q[i] = (int8_t)fmax(-127, fmin(127, v));
        }
    }
}

enum { KIND_RANDOM, KIND_CONSTANT, KIND_ZERO, KIND_TINY, KIND_MIXED, KIND_COUNT };

/* n fp16 values of one kind, and their exact fp32 widening. */
static void make_data(int kind, int64_t n, int bs, uint64_t seed, uint16_t *h, float *f)
{
    uint64_t rng = seed;
    for (int64_t i = 0; i < n; i++) {
        double v;
        switch (kind) {
        case KIND_RANDOM: v = 0.02 * tu_rand_normal(&rng); break;
        case KIND_CONSTANT: v = (i / bs) % 2 ? -0.375 : 0.0123; break; /* whole blocks of one value */
        case KIND_ZERO: v = (i / bs) % 3 == 1 ? 0.0 : -0.0; break;
        case KIND_TINY: v = 6e-8 * (double)((int64_t)(tu_rand_u64(&rng) % 41) - 20); break; /* fp16 subnormals */
        default: { /* per block one of: random, constant, zero, tiny, an outlier among small values */
            int sub = (int)((i / bs) % 5);
            v = sub == 0 ? tu_rand_normal(&rng) : sub == 1 ? 3.5 : sub == 2 ? 0.0 : sub == 3 ? 1e-6 * tu_rand_normal(&rng)
                : (i % bs == 5 ? 40.0 : 0.01 * tu_rand_normal(&rng));
        }
        }
        h[i] = qh_f32_to_f16((float)v);
        f[i] = qh_f16_to_f32(h[i]);
    }
}

static void test_levels_match_reference(void **state)
{
    (void)state;
    for (int i = 0; i < 16; i++) assert_true((double)qh_nf4_levels[i] == LEVELS[i]);
    /* every representable fp16 ratio near each midpoint lands where the reference says */
    for (int i = 0; i < 15; i++) {
        double mid = (LEVELS[i] + LEVELS[i + 1]) / 2;
        for (int k = -3; k <= 3; k++) {
            double x = mid + k * 1e-9;
            if (k) assert_int_equal(qh_nf4_code(x), ref_code(x));
        }
        assert_int_equal(qh_nf4_code(mid), i); /* exactly between two levels: the lower */
        assert_int_equal(qh_nf4_code(LEVELS[i]), i);
    }
    assert_int_equal(qh_nf4_code(-1.0), 0);
    assert_int_equal(qh_nf4_code(1.0), 15);
    assert_int_equal(qh_nf4_code(0.0), 7);
}

static void check_codes(int kind, int64_t n, int bs, uint64_t seed, qh_dtype dt)
{
    uint16_t *h = malloc(sizeof *h * (size_t)n);
    float *f = malloc(sizeof *f * (size_t)n);
    make_data(kind, n, bs, seed, h, f);
    int64_t nb = (n + bs - 1) / bs;
    uint8_t *codes = malloc((size_t)(n + 1) / 2), *want = malloc((size_t)(n + 1) / 2);
    float *absmax = malloc(sizeof(float) * (size_t)nb), *want_abs = malloc(sizeof(float) * (size_t)nb);
    assert_int_equal(qh_nf4_quantize(dt, dt == QH_F16 ? (const void *)h : (const void *)f, n, bs, codes, absmax), -1);
    ref_quantize(f, n, bs, want, want_abs);
    for (int64_t b = 0; b < nb; b++)
        if (absmax[b] != want_abs[b]) fail_msg("kind %d bs %d block %lld: absmax %g, reference %g", kind, bs, (long long)b, absmax[b], want_abs[b]);
    for (int64_t i = 0; i < (n + 1) / 2; i++)
        if (codes[i] != want[i])
            fail_msg("kind %d bs %d n %lld byte %lld: codes %02x, reference %02x (values %g %g)", kind, bs, (long long)n,
                     (long long)i, codes[i], want[i], f[2 * i], 2 * i + 1 < n ? f[2 * i + 1] : 0.0f);

    /* round trip: each value within half the gap around its level, times the block scale */
    qh_tensor t = qh_tensor_1d(QH_NF4, n);
    t.data = codes;
    t.quant.scale = absmax;
    t.quant.blocksize = bs;
    float *back = malloc(sizeof(float) * (size_t)n);
    qh_nf4_dequantize(&t, 0, n, back);
    double max_half_gap = 0; /* the widest gap is the bottom one, -1 to -0.696 */
    for (int i = 0; i < 15; i++) max_half_gap = fmax(max_half_gap, (LEVELS[i + 1] - LEVELS[i]) / 2);
    for (int64_t i = 0; i < n; i++) {
        double a = absmax[i / bs];
        if (fabs((double)back[i] - f[i]) > a * max_half_gap * (1 + 1e-6) + 1e-30)
            fail_msg("kind %d element %lld: %g back as %g (absmax %g)", kind, (long long)i, f[i], back[i], a);
        if (a == 0) assert_true(back[i] == 0.0f);
        if (f[i] == (float)a && a > 0) assert_true(back[i] == f[i]); /* the absmax itself is exact */
    }
    /* a dequantized sub-range starting at an odd index matches the whole */
    if (n > 11) {
        float part[8];
        qh_nf4_dequantize(&t, 3, 8, part);
        assert_memory_equal(part, back + 3, sizeof part);
    }
    free(back);
    free(h);
    free(f);
    free(codes);
    free(want);
    free(absmax);
    free(want_abs);
}

static void test_codes_equal_reference(void **state)
{
    (void)state;
    const int sizes[] = {64, 128, 256};
    for (int s = 0; s < 3; s++)
        for (int kind = 0; kind < KIND_COUNT; kind++) {
            int bs = sizes[s];
            check_codes(kind, (int64_t)bs * 40, bs, 11 + (uint64_t)kind, QH_F16);
            check_codes(kind, (int64_t)bs * 7 + 38, bs, 99 + (uint64_t)kind, QH_F16); /* partial last block */
            check_codes(kind, (int64_t)bs * 3 + 11, bs, 5 + (uint64_t)kind, QH_F32);  /* odd length, fp32 input */
        }
}

/* A Gaussian weight loses ~9-10% (blocksize 64) of its Frobenius norm to NF4, a little more
 * with bigger blocks (bitsandbytes' and QLoRA's own figures are in this range). */
static void test_gaussian_error(void **state)
{
    (void)state;
    int64_t n = 1 << 18;
    uint16_t *h = malloc(sizeof *h * (size_t)n);
    float *f = malloc(sizeof *f * (size_t)n), *back = malloc(sizeof *back * (size_t)n);
    make_data(KIND_RANDOM, n, 64, 3, h, f);
    uint8_t *codes = malloc((size_t)n / 2);
    float *absmax = malloc(sizeof(float) * (size_t)n / 64);
    double prev = 0;
    for (int bs = 64; bs <= 256; bs *= 2) {
        assert_int_equal(qh_nf4_quantize(QH_F16, h, n, bs, codes, absmax), -1);
        qh_tensor t = qh_tensor_1d(QH_NF4, n);
        t.data = codes, t.quant.scale = absmax, t.quant.blocksize = bs;
        qh_nf4_dequantize(&t, 0, n, back);
        double num = 0, den = 0;
        for (int64_t i = 0; i < n; i++) num += pow(back[i] - f[i], 2), den += (double)f[i] * f[i];
        double e = sqrt(num / den);
        print_message("nf4 blocksize %d: relative Frobenius error %.4f\n", bs, e);
        assert_true(e > 0.07 && e < 0.12);
        assert_true(e > prev);
        prev = e;
    }
    free(h);
    free(f);
    free(back);
    free(codes);
    free(absmax);
}

static void test_double_quant(void **state)
{
    (void)state;
    const int counts[] = {1, 255, 256, 257, 3000};
    for (int c = 0; c < 5; c++) {
        int64_t nb = counts[c], nn = (nb + 255) / 256;
        uint64_t rng = 17 + (uint64_t)c;
        float *a = malloc(sizeof(float) * (size_t)nb), *nested = malloc(sizeof(float) * (size_t)nn);
        float *want_nested = malloc(sizeof(float) * (size_t)nn);
        int8_t *q = malloc((size_t)nb), *want_q = malloc((size_t)nb);
        for (int64_t i = 0; i < nb; i++) a[i] = (float)(0.05 + 0.02 * fabs(tu_rand_normal(&rng)));
        if (nb > 10) a[7] = 0.0f; /* an all-zero block's absmax */
        float off, want_off;
        qh_nf4_double_quant(a, nb, q, nested, &off);
        ref_double_quant(a, nb, want_q, want_nested, &want_off);
        assert_true(off == want_off);
        assert_memory_equal(q, want_q, (size_t)nb);
        assert_memory_equal(nested, want_nested, sizeof(float) * (size_t)nn);
        qh_quant qs = {.qabsmax = q, .nested_absmax = nested, .nested_offset = off};
        for (int64_t i = 0; i < nb; i++) {
            float back = qh_nf4_absmax(&qs, i);
            double bound = nested[i / 256] / 254.0 * (1 + 1e-5) + 1e-6 * fabs(a[i]);
            if (fabs(back - a[i]) > bound) fail_msg("absmax %lld: %g back as %g", (long long)i, a[i], back);
        }
        free(a);
        free(nested);
        free(want_nested);
        free(q);
        free(want_q);
    }
    /* all absmax equal: nested scale 0, every code 0, decoded exactly */
    float same[300];
    for (int i = 0; i < 300; i++) same[i] = 0.25f;
    int8_t q[300];
    float nested[2], off;
    qh_nf4_double_quant(same, 300, q, nested, &off);
    qh_quant qs = {.qabsmax = q, .nested_absmax = nested, .nested_offset = off};
    assert_true(nested[0] == 0 && nested[1] == 0 && off == 0.25f && qh_nf4_absmax(&qs, 299) == 0.25f);
}

static void test_nonfinite_found(void **state)
{
    (void)state;
    uint16_t h[300];
    for (int i = 0; i < 300; i++) h[i] = qh_f32_to_f16(0.01f * (float)(i % 7));
    uint8_t codes[150];
    float absmax[5];
    assert_int_equal(qh_nf4_quantize(QH_F16, h, 300, 64, codes, absmax), -1);
    h[201] = 0x7e00; /* NaN */
    assert_int_equal(qh_nf4_quantize(QH_F16, h, 300, 64, codes, absmax), 201);
    h[77] = 0xfc00; /* -inf, earlier */
    assert_int_equal(qh_nf4_quantize(QH_F16, h, 300, 64, codes, absmax), 77);
}

/* The CPU linear op on an NF4 weight equals the float64 product with the dequantized weight
 * (both give the same fp32 numbers to sgemm), for blocks that straddle rows, with and
 * without double quantization. */
static void check_linear(int64_t T, int64_t N, int64_t K, int bs, int dq)
{
    qh_backend *be;
    assert_int_equal(qh_cpu_backend_create(&be), QH_OK);
    uint64_t rng = 1000 + (uint64_t)(T * N + K + bs + dq);
    int64_t n = N * K, nb = (n + bs - 1) / bs;
    uint16_t *h = malloc(sizeof *h * (size_t)n);
    float *f = malloc(sizeof *f * (size_t)n), *deq = malloc(sizeof *deq * (size_t)n);
    make_data(KIND_RANDOM, n, bs, rng, h, f);
    uint8_t *codes = malloc((size_t)n / 2);
    float *absmax = malloc(sizeof(float) * (size_t)nb), *nested = malloc(sizeof(float) * (size_t)(nb / 256 + 1));
    int8_t *qabs = malloc((size_t)nb);
    assert_int_equal(qh_nf4_quantize(QH_F16, h, n, bs, codes, absmax), -1);
    qh_tensor w = qh_tensor_2d(QH_NF4, N, K);
    w.data = codes;
    w.quant.blocksize = bs;
    if (dq) {
        qh_nf4_double_quant(absmax, nb, qabs, nested, &w.quant.nested_offset);
        w.quant.qabsmax = qabs, w.quant.nested_absmax = nested;
    } else {
        w.quant.scale = absmax;
    }
    assert_true(qh_tensor_is_quantized(&w));
    assert_int_equal(qh_tensor_nbytes(&w), (size_t)n / 2);
    qh_quant_dequantize(&w, 0, n, deq);
    qh_tensor x = qh_tensor_2d(QH_F32, T, K), y = qh_tensor_2d(QH_F32, T, N);
    assert_int_equal(be->alloc(be, &x), QH_OK);
    assert_int_equal(be->alloc(be, &y), QH_OK);
    float *xf = x.data, *yf = y.data;
    for (int64_t i = 0; i < T * K; i++) xf[i] = (float)tu_rand_normal(&rng);
    qh_tensor wv;
    assert_int_equal(be->weight(be, &w, &wv), QH_OK);
    assert_int_equal(be->linear(be, &x, &wv, &y), QH_OK);
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) acc += (double)xf[t * K + k] * deq[j * K + k], mag += fabs((double)xf[t * K + k] * deq[j * K + k]);
            if (fabs(yf[t * N + j] - acc) > 1e-5 * mag + 1e-12)
                fail_msg("T %lld N %lld K %lld bs %d dq %d: y[%lld][%lld] = %g, want %g", (long long)T, (long long)N,
                         (long long)K, bs, dq, (long long)t, (long long)j, yf[t * N + j], acc);
        }
    be->release(be, &x);
    be->release(be, &y);
    qh_backend_destroy(be);
    free(h);
    free(f);
    free(deq);
    free(codes);
    free(absmax);
    free(nested);
    free(qabs);
}

static void test_cpu_linear(void **state)
{
    (void)state;
    check_linear(1, 64, 128, 64, 0);
    check_linear(5, 40, 96, 64, 0);  /* blocks straddle rows */
    check_linear(9, 100, 344, 128, 1);
    check_linear(17, 300, 256, 256, 1); /* more than 256 blocks: several nested blocks */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels_match_reference), cmocka_unit_test(test_codes_equal_reference),
        cmocka_unit_test(test_gaussian_error),         cmocka_unit_test(test_double_quant),
        cmocka_unit_test(test_nonfinite_found),        cmocka_unit_test(test_cpu_linear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
