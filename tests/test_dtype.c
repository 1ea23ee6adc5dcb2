/* Element types and the fp16 / bf16 <-> fp32 conversions (core/dtype.c), each checked against
 * a reference written here from the formats' definitions: decoding with ldexp() from the
 * sign / exponent / mantissa fields, encoding by searching the sorted list of representable
 * magnitudes for the nearest one (ties to the even bit pattern). No library code is used to
 * build an expected value. */
#include "testutil.h"

#include "dtype.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- references --------------------------------------------------------------------------- */

/* IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
static double ref_f16_decode(uint16_t h)
{
    int sign = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;
    if (e == 0x1f)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp((double)m, -24); /* subnormal: m * 2^-14 * 2^-10 */
    else
        v = ldexp((double)(1024 + m), e - 25); /* (1 + m/1024) * 2^(e-15) */
    return sign ? -v : v;
}

/* bfloat16: 1 sign, 8 exponent (bias 127), 7 mantissa bits. */
static double ref_bf16_decode(uint16_t b)
{
    int sign = b >> 15, e = (b >> 7) & 0xff, m = b & 0x7f;
    double v;
    if (e == 0xff)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp((double)m, -133); /* m * 2^-126 * 2^-7 */
    else
        v = ldexp((double)(128 + m), e - 134);
    return sign ? -v : v;
}

/* Magnitude of a non-negative bit pattern; the infinity pattern counts as the next power of two
 * (65536 for f16, 2^128 for bf16), which is what round-to-nearest-even overflow compares with. */
static double f16_mag(uint32_t i) { return i == 0x7c00 ? 65536.0 : ref_f16_decode((uint16_t)i); }
static double bf16_mag(uint32_t i) { return i == 0x7f80 ? ldexp(1.0, 128) : ref_bf16_decode((uint16_t)i); }

/* Nearest pattern in [0, inf_bits] to |x| (x finite, not NaN), ties to the even pattern. */
static uint16_t ref_round(double a, double (*mag)(uint32_t), uint32_t inf_bits)
{
    if (a >= mag(inf_bits)) return (uint16_t)inf_bits;
    uint32_t lo = 0, hi = inf_bits; /* mag(lo) <= a < mag(hi) */
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (mag(mid) <= a)
            lo = mid;
        else
            hi = mid;
    }
    double d_lo = a - mag(lo), d_hi = mag(hi) - a; /* exact: doubles hold these differences */
    if (d_lo < d_hi) return (uint16_t)lo;
    if (d_hi < d_lo) return (uint16_t)hi;
    return (uint16_t)((lo & 1) ? hi : lo);
}

static uint16_t ref_f32_to_f16(float f)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (isinf(f)) return sign | 0x7c00;
    return sign | ref_round(fabs((double)f), f16_mag, 0x7c00);
}

static uint16_t ref_f32_to_bf16(float f)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (isinf(f)) return sign | 0x7f80;
    return sign | ref_round(fabs((double)f), bf16_mag, 0x7f80);
}

static int f16_is_nan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }
static int bf16_is_nan(uint16_t b) { return (b & 0x7f80) == 0x7f80 && (b & 0x7f); }

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Same value and same sign of zero (compares bit patterns, so -0 != +0). */
static int same_float(float got, double want)
{
    float w = (float)want; /* exact: want is an f16/bf16 value */
    return f32_bits(got) == f32_bits(w);
}

/* ---- decoding ------------------------------------------------------------------------------ */

static void test_f16_decode_all(void **state)
{
    (void)state;
    int nans = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        double want = ref_f16_decode(h);
        float got = qh_f16_to_f32(h);
        if (isnan(want)) {
            if (!isnan(got)) fail_msg("f16 %#06x: expected NaN, got %g", i, (double)got);
            nans++;
            continue;
        }
        if (!same_float(got, want)) fail_msg("f16 %#06x: expected %.9g, got %.9g", i, want, (double)got);
    }
    assert_int_equal(nans, 2 * 1023);
    /* a few landmarks written out, in case the reference and the code shared a mistake */
    assert_true(qh_f16_to_f32(0x3c00) == 1.0f);
    assert_true(qh_f16_to_f32(0xc000) == -2.0f);
    assert_true(qh_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(qh_f16_to_f32(0x0400) == 0x1p-14f);
    assert_true(qh_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(qh_f16_to_f32(0x03ff) == 1023 * 0x1p-24f);
    assert_true(qh_f16_to_f32(0x3555) == 0x1.554p-2f);
    assert_true(isinf(qh_f16_to_f32(0xfc00)) && qh_f16_to_f32(0xfc00) < 0);
    assert_true(qh_f16_to_f32(0x8000) == 0.0f && signbit(qh_f16_to_f32(0x8000)));
}

static void test_bf16_decode_all(void **state)
{
    (void)state;
    int nans = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t b = (uint16_t)i;
        double want = ref_bf16_decode(b);
        float got = qh_bf16_to_f32(b);
        if (isnan(want)) {
            if (!isnan(got)) fail_msg("bf16 %#06x: expected NaN, got %g", i, (double)got);
            nans++;
            continue;
        }
        if (!same_float(got, want)) fail_msg("bf16 %#06x: expected %.9g, got %.9g", i, want, (double)got);
    }
    assert_int_equal(nans, 2 * 127);
    assert_true(qh_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(qh_bf16_to_f32(0xc040) == -3.0f);
    assert_true(qh_bf16_to_f32(0x7f7f) == 0x1.fep127f);
    assert_true(qh_bf16_to_f32(0x0001) == 0x1p-133f);
    assert_true(isinf(qh_bf16_to_f32(0x7f80)));
}

/* ---- encoding ------------------------------------------------------------------------------ */

/* Every finite f16 value goes back to its own pattern; f16 -> f32 -> f16 is the identity. */
static void test_f16_round_trip(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        double v = ref_f16_decode(h);
        if (isnan(v)) {
            uint16_t r = qh_f32_to_f16((float)v);
            if (!f16_is_nan(r)) fail_msg("NaN did not stay NaN: %#06x", r);
            continue;
        }
        uint16_t got = qh_f32_to_f16((float)v);
        if (got != h) fail_msg("f16 %#06x (%.9g) encoded as %#06x", i, v, got);
    }
}

static void test_bf16_round_trip(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t b = (uint16_t)i;
        double v = ref_bf16_decode(b);
        if (isnan(v)) {
            uint16_t r = qh_f32_to_bf16((float)v);
            if (!bf16_is_nan(r)) fail_msg("bf16 NaN %#06x encoded as non-NaN %#06x", i, r);
            continue;
        }
        uint16_t got = qh_f32_to_bf16((float)v);
        if (got != b) fail_msg("bf16 %#06x (%.9g) encoded as %#06x", i, v, got);
    }
}

/* Midpoints between neighbours i and i+1 (both signs) round to the even one; one fp32 ulp
 * either side rounds to the nearer one. Covers subnormals (including the midpoint between 0 and
 * the smallest subnormal), the subnormal/normal border and the overflow to inf. */
static void check_midpoints(const char *what, uint16_t (*enc)(float), double (*mag)(uint32_t), uint32_t inf_bits)
{
    int checked = 0;
    for (uint32_t i = 0; i < inf_bits; i++) {
        double lo = mag(i), hi = mag(i + 1);
        float m = (float)((lo + hi) / 2); /* exact: one bit more than the 16-bit format */
        if ((double)m != (lo + hi) / 2) fail_msg("%s: midpoint not exact at %#x", what, i);
        uint16_t even = (uint16_t)((i & 1) ? i + 1 : i);
        float below = nextafterf(m, 0.0f), above = nextafterf(m, INFINITY);
        for (int s = 0; s < 2; s++) {
            uint16_t sign = s ? 0x8000 : 0;
            float sg = s ? -1.0f : 1.0f;
            uint16_t g_mid = enc(sg * m), g_below = enc(sg * below), g_above = enc(sg * above);
            if (g_mid != (sign | even))
                fail_msg("%s: midpoint %.9g of %#x and %#x gave %#06x, expected %#06x", what, (double)(sg * m), i,
                         i + 1, g_mid, sign | even);
            if (g_below != (sign | i))
                fail_msg("%s: %.9g (just below a midpoint) gave %#06x, expected %#06x", what, (double)(sg * below),
                         g_below, sign | i);
            if (g_above != (sign | (i + 1)))
                fail_msg("%s: %.9g (just above a midpoint) gave %#06x, expected %#06x", what, (double)(sg * above),
                         g_above, sign | (i + 1));
            checked++;
        }
    }
    printf("# %s: %d midpoints (and their fp32 neighbours) round to nearest even\n", what, checked);
}

static void test_f16_midpoints(void **state)
{
    (void)state;
    check_midpoints("f16", qh_f32_to_f16, f16_mag, 0x7c00);
}

static void test_bf16_midpoints(void **state)
{
    (void)state;
    check_midpoints("bf16", qh_f32_to_bf16, bf16_mag, 0x7f80);
}

static void test_f16_special_values(void **state)
{
    (void)state;
    /* overflow: 65504 is the largest finite value, 65520 is half an ulp above and ties to
     * the even pattern, which is inf */
    assert_int_equal(qh_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(qh_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(qh_f32_to_f16(nextafterf(65520.0f, 0.0f)), 0x7bff);
    assert_int_equal(qh_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(qh_f32_to_f16(-65520.0f), 0xfc00);
    assert_int_equal(qh_f32_to_f16(65536.0f), 0x7c00);
    assert_int_equal(qh_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(qh_f32_to_f16(FLT_MAX), 0x7c00);
    assert_int_equal(qh_f32_to_f16(-FLT_MAX), 0xfc00);
    assert_int_equal(qh_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(qh_f32_to_f16(-INFINITY), 0xfc00);
    /* zeros and underflow */
    assert_int_equal(qh_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(qh_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(qh_f32_to_f16(0x1p-25f), 0x0000);  /* tie between 0 and 2^-24: even is 0 */
    assert_int_equal(qh_f32_to_f16(-0x1p-25f), 0x8000); /* keeps the sign */
    assert_int_equal(qh_f32_to_f16(0x1.000002p-25f), 0x0001);
    assert_int_equal(qh_f32_to_f16(0x1.8p-24f), 0x0002); /* 1.5 units: tie, even is 2 */
    assert_int_equal(qh_f32_to_f16(0x1.4p-23f), 0x0002); /* 2.5 units: tie, even is 2 */
    assert_int_equal(qh_f32_to_f16(1e-30f), 0x0000);
    assert_int_equal(qh_f32_to_f16(bits_f32(0x00000001)), 0x0000); /* fp32 subnormal */
    assert_int_equal(qh_f32_to_f16(bits_f32(0x80000001)), 0x8000);
    assert_int_equal(qh_f32_to_f16(0x1.ff8p-15f), 0x03ff); /* the largest subnormal, 1023 units */
    assert_int_equal(qh_f32_to_f16(0x1.ffcp-15f), 0x0400); /* 1023.5 units: tie, up to the smallest normal */
    /* ordinary values */
    assert_int_equal(qh_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(qh_f32_to_f16(-2.5f), 0xc100);
    assert_int_equal(qh_f32_to_f16(0.1f), 0x2e66);
    assert_int_equal(qh_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);           /* tie, even is 1.0 */
    assert_int_equal(qh_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);       /* tie, even is up */
    assert_int_equal(qh_f32_to_f16(2047.5f), 0x6800);                   /* tie, 2048 is even */
    /* NaNs of every kind stay NaN (a NaN whose payload sits only in the low 13 bits included) */
    uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fbfffffu, 0x7f801fffu, 0xffffffffu};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = qh_f32_to_f16(bits_f32(nans[i]));
        if (!f16_is_nan(h)) fail_msg("NaN %#010x encoded as %#06x", nans[i], h);
        assert_true(isnan(qh_f16_to_f32(h)));
    }
    assert_true(f16_is_nan(qh_f32_to_f16(NAN)));
}

static void test_bf16_special_values(void **state)
{
    (void)state;
    assert_int_equal(qh_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(qh_f32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(qh_f32_to_bf16(0.0f), 0x0000);
    assert_int_equal(qh_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(qh_f32_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(qh_f32_to_bf16(FLT_MAX), 0x7f80);              /* above the last midpoint */
    assert_int_equal(qh_f32_to_bf16(-FLT_MAX), 0xff80);
    assert_int_equal(qh_f32_to_bf16(bits_f32(0x7f7f7fffu)), 0x7f7f); /* just below it */
    assert_int_equal(qh_f32_to_bf16(bits_f32(0x7f7f8000u)), 0x7f80); /* the tie: even is inf */
    assert_int_equal(qh_f32_to_bf16(bits_f32(0x3f808000u)), 0x3f80); /* tie, even is down */
    assert_int_equal(qh_f32_to_bf16(bits_f32(0x3f818000u)), 0x3f82); /* tie, even is up */
    assert_int_equal(qh_f32_to_bf16(bits_f32(0x3f808001u)), 0x3f81);
    assert_int_equal(qh_f32_to_bf16(bits_f32(0x00000001u)), 0x0000); /* fp32 subnormals */
    assert_int_equal(qh_f32_to_bf16(bits_f32(0x00008000u)), 0x0000); /* tie with 0 */
    assert_int_equal(qh_f32_to_bf16(bits_f32(0x00018000u)), 0x0002);
    assert_int_equal(qh_f32_to_bf16(bits_f32(0x007fffffu)), 0x0080); /* up to the smallest normal */
    uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fbfffffu, 0x7f80ffffu, 0xffffffffu};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t b = qh_f32_to_bf16(bits_f32(nans[i]));
        if (!bf16_is_nan(b)) fail_msg("NaN %#010x encoded as %#06x", nans[i], b);
    }
}

/* Random fp32 bit patterns over the whole range (every exponent, both signs) against the
 * reference encoders; plus random values in the f16 subnormal and near-overflow ranges. */
static void test_encode_random(void **state)
{
    (void)state;
    uint64_t rng = 0x5eed0001;
    const int n = 1 << 20;
    for (int k = 0; k < n; k++) {
        uint32_t u = (uint32_t)tu_rand_u64(&rng);
        switch (k % 4) {
        case 0: break;                                                /* anything */
        case 1: u = (u & 0x807fffffu) | ((uint32_t)(103 + (u >> 23) % 41) << 23); break; /* f16 range */
        case 2: u = (u & 0x80ffffffu) | 0x33000000u; break;           /* 2^-25 .. 2^-24 area */
        default: u = (u & 0x8001ffffu) | 0x477e0000u; break;          /* 65024 .. 65536 */
        }
        float f = bits_f32(u);
        if (isnan(f)) {
            assert_true(f16_is_nan(qh_f32_to_f16(f)));
            assert_true(bf16_is_nan(qh_f32_to_bf16(f)));
            continue;
        }
        uint16_t h = qh_f32_to_f16(f), wh = ref_f32_to_f16(f);
        if (h != wh) fail_msg("f16 encode of %a (%#010x): got %#06x, expected %#06x", (double)f, u, h, wh);
        uint16_t b = qh_f32_to_bf16(f), wb = ref_f32_to_bf16(f);
        if (b != wb) fail_msg("bf16 encode of %a (%#010x): got %#06x, expected %#06x", (double)f, u, b, wb);
    }
}

/* ---- bulk conversion ---------------------------------------------------------------------- */

#define GUARD 0x1.234p5f

static float *guarded(size_t n)
{
    float *d = malloc(sizeof(float) * (n + 4));
    assert_non_null(d);
    for (size_t i = 0; i < n + 4; i++) d[i] = GUARD;
    return d;
}

static void check_guard(const float *d, size_t n)
{
    for (size_t i = n; i < n + 4; i++)
        if (d[i] != GUARD) fail_msg("qh_convert_to_f32 wrote past element %zu of %zu", i, n);
}

/* F16 lengths around the 8-wide vector step (so the vector loop and its scalar tail both run),
 * at an aligned and a misaligned source address, over random patterns of all kinds; then every
 * pattern at once. */
static void test_convert_f16(void **state)
{
    (void)state;
    uint64_t rng = 0x5eed0002;
    size_t lens[] = {0, 1, 7, 8, 9, 15, 16, 17, 31, 1000, 1003};
    uint16_t *src = malloc(sizeof(uint16_t) * 70000);
    assert_non_null(src);
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        for (size_t off = 0; off < 3; off++) {
            size_t n = lens[li];
            for (size_t i = 0; i < n + off; i++) src[i] = (uint16_t)tu_rand_u64(&rng);
            float *dst = guarded(n);
            qh_convert_to_f32(QH_F16, src + off, dst, n);
            for (size_t i = 0; i < n; i++) {
                double want = ref_f16_decode(src[off + i]);
                if (isnan(want) ? !isnan(dst[i]) : !same_float(dst[i], want))
                    fail_msg("n=%zu off=%zu: element %zu (%#06x) gave %.9g, expected %.9g", n, off, i, src[off + i],
                             (double)dst[i], want);
            }
            check_guard(dst, n);
            free(dst);
        }
    }
    for (uint32_t i = 0; i < 65536; i++) src[i] = (uint16_t)i;
    float *dst = guarded(65536);
    qh_convert_to_f32(QH_F16, src, dst, 65536);
    for (uint32_t i = 0; i < 65536; i++) {
        double want = ref_f16_decode((uint16_t)i);
        if (isnan(want) ? !isnan(dst[i]) : !same_float(dst[i], want))
            fail_msg("all patterns: %#06x gave %.9g, expected %.9g", i, (double)dst[i], want);
        if (qh_load_f32(QH_F16, src, i) != dst[i] && !isnan(want)) fail_msg("qh_load_f32(F16) at %u", i);
    }
    check_guard(dst, 65536);
    free(dst);
    free(src);
}

static void test_convert_bf16_f32(void **state)
{
    (void)state;
    uint64_t rng = 0x5eed0003;
    size_t lens[] = {0, 1, 7, 8, 9, 1000};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        uint16_t *b = malloc(sizeof(uint16_t) * (n + 1));
        uint32_t *f = malloc(sizeof(uint32_t) * (n + 1));
        assert_non_null(b), assert_non_null(f);
        for (size_t i = 0; i < n; i++) {
            b[i] = (uint16_t)tu_rand_u64(&rng);
            f[i] = (uint32_t)tu_rand_u64(&rng); /* any bits, NaN payloads included: a copy */
        }
        float *d = guarded(n);
        qh_convert_to_f32(QH_BF16, b, d, n);
        for (size_t i = 0; i < n; i++) {
            double want = ref_bf16_decode(b[i]);
            if (isnan(want) ? !isnan(d[i]) : !same_float(d[i], want))
                fail_msg("BF16 n=%zu element %zu (%#06x) gave %.9g", n, i, b[i], (double)d[i]);
            if (!isnan(want) && qh_load_f32(QH_BF16, b, i) != d[i]) fail_msg("qh_load_f32(BF16) at %zu", i);
        }
        check_guard(d, n);
        free(d);
        d = guarded(n);
        qh_convert_to_f32(QH_F32, f, d, n);
        for (size_t i = 0; i < n; i++) {
            if (f32_bits(d[i]) != f[i]) fail_msg("F32 n=%zu element %zu: bits changed", n, i);
            if (f32_bits(qh_load_f32(QH_F32, f, i)) != f[i] && !isnan(d[i])) fail_msg("qh_load_f32(F32) at %zu", i);
        }
        check_guard(d, n);
        free(d);
        free(b);
        free(f);
    }
}

/* F64 -> F32 must give the nearest float (ties to even); checked through the neighbours of the
 * result rather than by a second cast. */
static int is_nearest_float(double x, float got)
{
    if (isnan(x)) return isnan(got);
    if (isinf(x)) return isinf(got) && (got > 0) == (x > 0);
    if (fabs(x) >= 0x1.ffffffp127) return isinf(got) && (got > 0) == (x > 0); /* FLT_MAX + half ulp */
    if (isinf(got)) return 0;
    if (x == 0) return got == 0 && !signbit(got) == !signbit(x);
    double e = fabs((double)got - x);
    double dn = fabs((double)nextafterf(got, -INFINITY) - x), up = fabs((double)nextafterf(got, INFINITY) - x);
    if (e > dn || e > up) return 0;
    if ((e == dn || e == up) && e != 0 && (f32_bits(got) & 1)) return 0; /* tie went to odd */
    return got == 0 ? !signbit(got) == !signbit(x) : 1;
}

static void test_convert_f64(void **state)
{
    (void)state;
    uint64_t rng = 0x5eed0004;
    size_t lens[] = {0, 1, 7, 8, 9, 1000};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        double *s = malloc(sizeof(double) * (n + 1));
        assert_non_null(s);
        for (size_t i = 0; i < n; i++) {
            double v = tu_rand_normal(&rng) * ldexp(1.0, (int)(tu_rand_u64(&rng) % 300) - 150);
            if (i % 5 == 1) /* near a tie: a float plus about half an ulp */
                v = (double)bits_f32((uint32_t)tu_rand_u64(&rng) & 0xff7fffffu) * (1 + 0x1p-24);
            s[i] = v;
        }
        if (n >= 7) {
            s[0] = 1e300, s[1] = -1e300, s[2] = 1e-300, s[3] = -0.0, s[4] = NAN;
            s[5] = 1.0 + 0x1p-24, s[6] = 1.0 + 0x1p-23 + 0x1p-24;
        }
        float *d = guarded(n);
        qh_convert_to_f32(QH_F64, s, d, n);
        for (size_t i = 0; i < n; i++) {
            if (!is_nearest_float(s[i], d[i])) fail_msg("F64 %a converted to %a", s[i], (double)d[i]);
            if (!isnan(s[i]) && qh_load_f32(QH_F64, s, i) != d[i]) fail_msg("qh_load_f32(F64) at %zu", i);
        }
        if (n >= 7) assert_true(d[5] == 1.0f && d[6] == 1.0f + 0x1p-22f); /* ties to even */
        check_guard(d, n);
        free(d);
        free(s);
    }
}

/* ---- names and sizes ---------------------------------------------------------------------- */

static void test_dtype_names(void **state)
{
    (void)state;
    static const struct {
        qh_dtype t;
        const char *name;
        size_t size;
        int is_float;
    } want[] = {
        {QH_F32, "F32", 4, 1},  {QH_F16, "F16", 2, 1}, {QH_BF16, "BF16", 2, 1}, {QH_F64, "F64", 8, 1},
        {QH_I64, "I64", 8, 0},  {QH_I32, "I32", 4, 0}, {QH_I16, "I16", 2, 0},   {QH_I8, "I8", 1, 0},
        {QH_U8, "U8", 1, 0},    {QH_BOOL, "BOOL", 1, 0},
    };
    assert_int_equal(sizeof want / sizeof want[0], QH_DTYPE_COUNT);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_string_equal(qh_dtype_name(want[i].t), want[i].name);
        assert_int_equal(qh_dtype_size(want[i].t), want[i].size);
        assert_int_equal(qh_dtype_from_name(want[i].name), want[i].t);
        assert_int_equal(!!qh_dtype_is_float(want[i].t), want[i].is_float);
    }
    const char *unknown[] = {"", "F8_E4M3", "F8_E5M2", "U16", "U32", "U64", "C64", "FLOAT", "F3", "F320", "BF"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        if (qh_dtype_from_name(unknown[i]) != -1) fail_msg("\"%s\" parsed as a dtype", unknown[i]);
    /* out-of-range values do not index past the table */
    assert_int_equal(qh_dtype_size(QH_DTYPE_COUNT), 0);
    assert_non_null(qh_dtype_name(QH_DTYPE_COUNT));
    assert_false(qh_dtype_is_float(QH_DTYPE_COUNT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_decode_all),     cmocka_unit_test(test_bf16_decode_all),
        cmocka_unit_test(test_f16_round_trip),     cmocka_unit_test(test_bf16_round_trip),
        cmocka_unit_test(test_f16_midpoints),      cmocka_unit_test(test_bf16_midpoints),
        cmocka_unit_test(test_f16_special_values), cmocka_unit_test(test_bf16_special_values),
        cmocka_unit_test(test_encode_random),      cmocka_unit_test(test_convert_f16),
        cmocka_unit_test(test_convert_bf16_f32),   cmocka_unit_test(test_convert_f64),
        cmocka_unit_test(test_dtype_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
