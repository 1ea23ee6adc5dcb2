#include "dtype.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
    int is_float;
} dtype_info[QH_DTYPE_COUNT] = {
    [QH_F32] = {"F32", 4, 1}, [QH_F16] = {"F16", 2, 1}, [QH_BF16] = {"BF16", 2, 1},
    [QH_F64] = {"F64", 8, 1}, [QH_I64] = {"I64", 8, 0}, [QH_I32] = {"I32", 4, 0},
    [QH_I16] = {"I16", 2, 0}, [QH_I8] = {"I8", 1, 0},   [QH_U8] = {"U8", 1, 0},
    [QH_BOOL] = {"BOOL", 1, 0},
};

size_t qh_dtype_size(qh_dtype t) { return (unsigned)t < QH_DTYPE_COUNT ? dtype_info[t].size : 0; }

const char *qh_dtype_name(qh_dtype t)
{
    if (t == QH_NF4) return "NF4";
    return (unsigned)t < QH_DTYPE_COUNT ? dtype_info[t].name : "?";
}

int qh_dtype_is_float(qh_dtype t) { return (unsigned)t < QH_DTYPE_COUNT && dtype_info[t].is_float; }

int qh_dtype_from_name(const char *name)
{
    for (int t = 0; t < QH_DTYPE_COUNT; t++)
        if (strcmp(name, dtype_info[t].name) == 0) return t;
    return -1;
}

static float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float qh_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
    if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13)); /* inf / NaN */
    if (exp == 0) {                                                       /* zero / subnormal */
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t qh_f32_to_f16(float f)
{
    uint32_t u = f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7fffffffu;
    if (abs >= 0x7f800000u) /* inf or NaN (keep NaN quiet and non-zero) */
        return sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u | ((abs >> 13) & 0x3ffu) : 0);
    if (abs >= 0x477ff000u) return sign | 0x7c00u; /* rounds past 65504: inf */
    if (abs < 0x38800000u) {                       /* below the smallest normal: subnormal */
        /* value = abs_float; f16 subnormal unit is 2^-24; round half to even via float math */
        float a = bits_to_f32(abs);
        float scaled = a * 16777216.0f; /* exact: multiply by 2^24 */
        float r = nearbyintf(scaled);   /* current rounding mode: nearest even */
        return sign | (uint16_t)r;
    }
    uint32_t exp = (abs >> 23) - 112, man = abs & 0x7fffffu;
    uint32_t half = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++; /* may carry into exp */
    return sign | (uint16_t)half;
}

float qh_bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

uint16_t qh_f32_to_bf16(float f)
{
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
__attribute__((target("f16c,avx"))) static void f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h;
        memcpy(&h, src + i, 16);
        __m256 f = _mm256_cvtph_ps(h);
        _mm256_storeu_ps(dst + i, f);
    }
    for (; i < n; i++) dst[i] = qh_f16_to_f32(src[i]);
}
static int have_f16c(void)
{
    static int cached = -1;
#ifdef __clang__ /* clang 14's __builtin_cpu_supports knows no "f16c": ask cpuid (the fuzz build) */
    unsigned a, b, c, d;
    if (cached < 0) cached = __builtin_cpu_supports("avx") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
#else
    if (cached < 0) cached = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
#endif
    return cached;
}
#else
static int have_f16c(void) { return 0; }
static void f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n) { (void)src, (void)dst, (void)n; }
#endif

void qh_convert_to_f32(qh_dtype t, const void *src, float *dst, size_t n)
{
    switch (t) {
    case QH_F32:
        memcpy(dst, src, n * 4);
        break;
    case QH_F16:
        if (have_f16c()) {
            f16_to_f32_f16c(src, dst, n);
        } else {
            const uint16_t *s = src;
            for (size_t i = 0; i < n; i++) dst[i] = qh_f16_to_f32(s[i]);
        }
        break;
    case QH_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = qh_bf16_to_f32(s[i]);
        break;
    }
    case QH_F64: {
        const double *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        break;
    }
    default:
        memset(dst, 0, n * 4); /* callers check qh_dtype_is_float first */
        break;
    }
}

float qh_load_f32(qh_dtype t, const void *src, size_t i)
{
    switch (t) {
    case QH_F32: return ((const float *)src)[i];
    case QH_F16: return qh_f16_to_f32(((const uint16_t *)src)[i]);
    case QH_BF16: return qh_bf16_to_f32(((const uint16_t *)src)[i]);
    case QH_F64: return (float)((const double *)src)[i];
    default: return 0.0f;
    }
}
