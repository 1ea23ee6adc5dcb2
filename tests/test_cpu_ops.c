/* The CPU backend's ops (core/cpu/) against naive float64 loops written here from the
 * transformers LLaMA definitions (see /work/shared/reference/llama.md). Data are random
 * normals (never zeros), shapes odd (rows 1, 7, 33; widths not multiples of 8 or 16).
 *
 * Tolerances (u = 2^-24 ~ 6e-8, the fp32 unit roundoff; the ops accumulate in fp32):
 *  - linear: a K-term fp32 dot product with random signs has a rounding error of about
 *    u*sqrt(K) relative to |y| (the error random-walks; blocked BLAS sums do better). For
 *    K <= 513 that is ~1.5e-6; we allow 1e-5 per row (norm-wise). Forgetting that the 16-bit
 *    weights were rounded would cost 2^-11/sqrt(3) ~ 3e-4 (f16) or ~2e-3 (bf16), so the bound
 *    still tells a wrong weight apart from rounding noise.
 *  - rmsnorm: the sum of squares is in double; each output is x * scale * w with three fp32
 *    roundings: 3u ~ 2e-7 per element. We allow 1e-6 per element.
 *  - rope: cos and sin are rounded to fp32 (u each), then two products and a sum: ~4u relative
 *    to the pair's norm. We allow 2e-6 per row (norm-wise) and 2e-6 on each pair's norm.
 *  - attention: head_dim-term dot products, expf (~1 ulp), a softmax sum over <= 17 terms and a
 *    17-term weighted sum: ~20u ~ 1.2e-6 relative; scores scaled by s amplify the expf error by
 *    |score| (~s), so we allow 1e-5 for unit-scale scores and 1e-4 for scores of size ~30.
 *  - silu_mul: expf, one add, one divide, one multiply: ~4u per element; we allow 2e-6 plus
 *    1e-30 absolute (silu of a very negative gate underflows below fp32's range).
 *  - embed, gather_rows, add: exact (copies, conversions of representable values, one fp32 add
 *    which equals the double sum rounded once). */
#include "testutil.h"

#include "backend.h"
#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_LINEAR 1e-5
#define TOL_RMSNORM 1e-6
#define TOL_ROPE 2e-6
#define TOL_ATTN 1e-5
#define TOL_ATTN_LARGE 1e-4
#define TOL_SILU 2e-6

/* ---- helpers ------------------------------------------------------------------------------- */

static qh_backend *new_backend(void)
{
    qh_backend *be = NULL;
    int rc = qh_backend_create("cpu", &be);
    if (rc) fail_msg("qh_backend_create(cpu): %s", qh_last_error());
    assert_non_null(be);
    assert_int_equal(be->act_dtype, QH_F32);
    return be;
}

static void ok(int rc, const char *what)
{
    if (rc != QH_OK) fail_msg("%s failed (%d): %s", what, rc, qh_last_error());
}

static float *rand_f32(uint64_t *rng, size_t n, double scale)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        double x = tu_rand_normal(rng) * scale;
        v[i] = (float)(x != 0 ? x : scale); /* never zero */
    }
    return v;
}

static double *dalloc(size_t n)
{
    double *v = calloc(n ? n : 1, sizeof(double));
    assert_non_null(v);
    return v;
}

static qh_tensor upload_f32(qh_backend *be, const float *host, int64_t rows, int64_t cols)
{
    static const float dummy = 0; /* never hand memcpy a NULL source, even for 0 bytes */
    qh_tensor t = qh_tensor_2d(QH_F32, rows, cols);
    ok(be->upload(be, host ? (const void *)host : (const void *)&dummy, &t), "upload");
    return t;
}

static qh_tensor upload_i32(qh_backend *be, const int32_t *host, int64_t n)
{
    qh_tensor t = qh_tensor_1d(QH_I32, n);
    ok(be->upload(be, host, &t), "upload(i32)");
    return t;
}

static qh_tensor alloc_f32(qh_backend *be, int64_t rows, int64_t cols)
{
    qh_tensor t = qh_tensor_2d(QH_F32, rows, cols);
    ok(be->alloc(be, &t), "alloc");
    /* poison, so that an op that leaves an element unwritten is caught */
    for (int64_t i = 0; i < rows * cols; i++) ((float *)t.data)[i] = NAN;
    return t;
}

static float *download(qh_backend *be, const qh_tensor *t)
{
    size_t n = (size_t)qh_tensor_numel(t);
    float *h = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(h);
    ok(be->download_f32(be, t, h), "download_f32");
    return h;
}

/* Independent decoders for the reference (the conversions themselves are tested in test_dtype). */
static double ref_f16(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

static double ref_bf16(uint16_t b)
{
    int e = (b >> 7) & 0xff, m = b & 0x7f;
    double v = e == 0 ? ldexp(m, -133) : ldexp(128 + m, e - 134);
    return (b & 0x8000) ? -v : v;
}

/* A weight of dtype dt holding w rounded to dt; its exact values go to wref. The returned
 * buffer backs the view and must outlive it. */
static void *make_weight(qh_dtype dt, const float *w, size_t n, double *wref)
{
    void *buf = malloc(n * 4 + 4);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++) {
        if (dt == QH_F32) {
            ((float *)buf)[i] = w[i];
            wref[i] = w[i];
        } else if (dt == QH_F16) {
            uint16_t h = qh_f32_to_f16(w[i]);
            ((uint16_t *)buf)[i] = h;
            wref[i] = ref_f16(h);
        } else {
            uint16_t b = qh_f32_to_bf16(w[i]);
            ((uint16_t *)buf)[i] = b;
            wref[i] = ref_bf16(b);
        }
    }
    return buf;
}

static qh_tensor weight_view(qh_backend *be, qh_dtype dt, void *data, int ndim, int64_t d0, int64_t d1)
{
    int64_t shape[2] = {d0, d1};
    qh_tensor host = qh_tensor_desc(dt, ndim, shape);
    host.data = data;
    host.device = QH_DEVICE_CPU;
    qh_tensor w;
    ok(be->weight(be, &host, &w), "weight");
    return w;
}

/* ||got - want|| / ||want|| over n values. */
static double rel_err(const float *got, const double *want, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    if (isnan(num)) return INFINITY;
    return sqrt(num / (den > 0 ? den : 1e-300));
}

/* Worst row-wise relative error of got [rows, cols]; fails past tol. */
static double check_rows(const char *what, const float *got, const double *want, int64_t rows, int64_t cols,
                         double tol)
{
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        double e = rel_err(got + r * cols, want + r * cols, cols);
        if (e > worst) worst = e;
        if (!(e <= tol)) fail_msg("%s: row %lld of %lld: relative error %.3g > %.1g", what, (long long)r,
                                  (long long)rows, e, tol);
    }
    return worst;
}

static const char *dtname(qh_dtype t) { return qh_dtype_name(t); }

/* ---- linear -------------------------------------------------------------------------------- */

static double ref_linear_check(qh_backend *be, qh_dtype dt, int64_t t, int64_t k, int64_t n, uint64_t *rng)
{
    float *x = rand_f32(rng, (size_t)(t * k), 1.0), *w = rand_f32(rng, (size_t)(n * k), 0.5);
    double *wref = dalloc((size_t)(n * k)), *want = dalloc((size_t)(t * n));
    void *wbuf = make_weight(dt, w, (size_t)(n * k), wref);
    for (int64_t r = 0; r < t; r++)
        for (int64_t o = 0; o < n; o++) {
            double acc = 0;
            for (int64_t i = 0; i < k; i++) acc += (double)x[r * k + i] * wref[o * k + i];
            want[r * n + o] = acc;
        }
    qh_tensor xt = upload_f32(be, x, t, k), yt = alloc_f32(be, t, n);
    qh_tensor wt = weight_view(be, dt, wbuf, 2, n, k);
    ok(be->linear(be, &xt, &wt, &yt), "linear");
    float *y = download(be, &yt);
    char what[96];
    snprintf(what, sizeof what, "linear %s T=%lld K=%lld N=%lld", dtname(dt), (long long)t, (long long)k, (long long)n);
    double worst = check_rows(what, y, want, t, n, TOL_LINEAR);
    /* the input is left alone */
    float *x2 = download(be, &xt);
    assert_memory_equal(x2, x, sizeof(float) * (size_t)(t * k));
    be->release(be, &xt), be->release(be, &yt), be->release(be, &wt);
    free(x), free(x2), free(w), free(wref), free(want), free(wbuf), free(y);
    return worst;
}

static void test_linear(void **state)
{
    (void)state;
    qh_backend *be = new_backend();
    uint64_t rng = 0xa11ce001;
    static const int64_t shapes[][3] = {{1, 1, 1},  {1, 13, 5},  {7, 37, 19}, {33, 131, 67},
                                        {3, 301, 9}, {0, 13, 5}, {0, 37, 19}};
    qh_dtype dts[] = {QH_F32, QH_F16, QH_BF16};
    for (size_t d = 0; d < 3; d++) {
        double worst = 0;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            double e = ref_linear_check(be, dts[d], shapes[s][0], shapes[s][1], shapes[s][2], &rng);
            if (e > worst) worst = e;
        }
        printf("# linear %s weights: worst relative error %.2e\n", dtname(dts[d]), worst);
    }
    qh_backend_destroy(be);
}

/* The 16-bit path widens the weight into a scratch buffer kept between calls: small, then
 * larger (it must grow), then small again (reuse), then same-size different weights and a
 * different dtype (no stale contents), then larger again. */
static void test_linear_scratch_growth(void **state)
{
    (void)state;
    qh_backend *be = new_backend();
    uint64_t rng = 0xa11ce002;
    static const struct {
        qh_dtype dt;
        int64_t t, k, n;
    } seq[] = {
        {QH_F16, 7, 13, 5},    {QH_F16, 33, 301, 67}, {QH_BF16, 7, 13, 5},   {QH_F16, 33, 301, 67},
        {QH_BF16, 33, 301, 67}, {QH_F32, 1, 37, 19},  {QH_F16, 0, 513, 257}, {QH_BF16, 1, 513, 257},
        {QH_F16, 7, 13, 5},
    };
    double worst = 0;
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        double e = ref_linear_check(be, seq[i].dt, seq[i].t, seq[i].k, seq[i].n, &rng);
        if (e > worst) worst = e;
    }
    printf("# linear scratch sequence: worst relative error %.2e\n", worst);
    qh_backend_destroy(be);
}

/* ---- rmsnorm ------------------------------------------------------------------------------- */

static void test_rmsnorm(void **state)
{
    (void)state;
    qh_backend *be = new_backend();
    uint64_t rng = 0xa11ce003;
    int64_t rows_list[] = {1, 7, 33}, cols_list[] = {5, 37, 131};
    float epss[] = {1e-5f, 1e-6f};
    double worst = 0;
    for (int ei = 0; ei < 2; ei++)
        for (int ri = 0; ri < 3; ri++)
            for (int ci = 0; ci < 3; ci++) {
                int64_t t = rows_list[ri], h = cols_list[ci];
                float *x = rand_f32(&rng, (size_t)(t * h), 1.0);
                /* rows of very different scales; at 1e-3 mean(x^2) ~ 1e-6 and eps matters */
                for (int64_t r = 0; r < t; r++) {
                    double sc = r % 3 == 0 ? 1e-3 : r % 3 == 1 ? 1.0 : 40.0;
                    for (int64_t i = 0; i < h; i++) x[r * h + i] = (float)(x[r * h + i] * sc);
                }
                float *w = rand_f32(&rng, (size_t)h, 1.0);
                double *wref = dalloc((size_t)h), *want = dalloc((size_t)(t * h));
                void *wbuf = make_weight(QH_F16, w, (size_t)h, wref);
                double eps = epss[ei];
                for (int64_t r = 0; r < t; r++) {
                    double ss = 0;
                    for (int64_t i = 0; i < h; i++) ss += (double)x[r * h + i] * x[r * h + i];
                    double inv = 1.0 / sqrt(ss / (double)h + eps);
                    for (int64_t i = 0; i < h; i++) want[r * h + i] = x[r * h + i] * inv * wref[i];
                }
                qh_tensor xt = upload_f32(be, x, t, h), ot = alloc_f32(be, t, h);
                qh_tensor wt = weight_view(be, QH_F16, wbuf, 1, h, 0);
                ok(be->rmsnorm(be, &xt, &wt, epss[ei], &ot), "rmsnorm");
                float *o = download(be, &ot);
                for (int64_t i = 0; i < t * h; i++) {
                    double e = fabs(o[i] - want[i]) / fabs(want[i]);
                    if (!(e <= TOL_RMSNORM))
                        fail_msg("rmsnorm eps=%g [%lld, %lld] element %lld: got %.9g want %.9g (rel %.3g)", eps,
                                 (long long)t, (long long)h, (long long)i, (double)o[i], want[i], e);
                    if (e > worst) worst = e;
                }
                be->release(be, &xt), be->release(be, &ot), be->release(be, &wt);
                free(x), free(w), free(wref), free(want), free(wbuf), free(o);
            }
    printf("# rmsnorm (F16 weight): worst element relative error %.2e\n", worst);
    qh_backend_destroy(be);
}

/* ---- rope ---------------------------------------------------------------------------------- */

/* transformers: x * cos + rotate_half(x) * sin, with cos/sin = cat(freqs, freqs) and
 * rotate_half(x) = cat(-x[d/2:], x[:d/2]); freqs[i] = pos * theta^(-2i/d). */
static void ref_rope(const float *x, double *out, int64_t t, int heads, int d, const int32_t *pos, double theta)
{
    for (int64_t r = 0; r < t; r++)
        for (int hh = 0; hh < heads; hh++) {
            const float *v = x + (r * heads + hh) * d;
            double *o = out + (r * heads + hh) * d;
            for (int j = 0; j < d; j++) {
                int i = j % (d / 2);
                double ang = (double)pos[r] * pow(theta, -2.0 * i / d);
                double rot = j < d / 2 ? -(double)v[j + d / 2] : (double)v[j - d / 2];
                o[j] = v[j] * cos(ang) + rot * sin(ang);
            }
        }
}

static double rope_case(qh_backend *be, int d, int nq, int nk, const int *lens, int nseq, int pos0, double theta,
                        uint64_t *rng, double *worst_norm)
{
    int64_t t = 0;
    for (int s = 0; s < nseq; s++) t += lens[s];
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)t);
    assert_non_null(pos);
    for (int s = 0, row = 0; s < nseq; s++)
        for (int i = 0; i < lens[s]; i++) pos[row++] = pos0 + i; /* each sequence counts from pos0 */
    int64_t qw = (int64_t)nq * d, kw = (int64_t)nk * d;
    float *q = rand_f32(rng, (size_t)(t * qw), 1.0), *k = rand_f32(rng, (size_t)(t * kw), 1.0);
    double *wq = dalloc((size_t)(t * qw)), *wk = dalloc((size_t)(t * kw));
    ref_rope(q, wq, t, nq, d, pos, theta);
    ref_rope(k, wk, t, nk, d, pos, theta);
    qh_tensor qt = upload_f32(be, q, t, qw), kt = upload_f32(be, k, t, kw), pt = upload_i32(be, pos, t);
    ok(be->rope(be, &qt, &kt, &pt, d, theta), "rope");
    float *gq = download(be, &qt), *gk = download(be, &kt);
    char what[96];
    snprintf(what, sizeof what, "rope q d=%d heads=%d theta=%g", d, nq, theta);
    double worst = check_rows(what, gq, wq, t, qw, TOL_ROPE);
    snprintf(what, sizeof what, "rope k d=%d heads=%d theta=%g", d, nk, theta);
    double e = check_rows(what, gk, wk, t, kw, TOL_ROPE);
    if (e > worst) worst = e;
    /* a rotation keeps each pair's norm; position 0 is the identity, bit for bit */
    for (int which = 0; which < 2; which++) {
        const float *in = which ? k : q, *out = which ? gk : gq;
        int heads = which ? nk : nq;
        for (int64_t r = 0; r < t; r++)
            for (int hh = 0; hh < heads; hh++) {
                const float *a = in + (r * heads + hh) * d, *b = out + (r * heads + hh) * d;
                if (pos[r] == 0 && memcmp(a, b, sizeof(float) * (size_t)d) != 0)
                    fail_msg("rope changed a row at position 0 (row %lld)", (long long)r);
                for (int i = 0; i < d / 2; i++) {
                    double n0 = hypot(a[i], a[i + d / 2]), n1 = hypot(b[i], b[i + d / 2]);
                    double en = fabs(n1 - n0) / n0;
                    if (!(en <= TOL_ROPE))
                        fail_msg("rope: pair %d of row %lld changed norm by %.3g", i, (long long)r, en);
                    if (en > *worst_norm) *worst_norm = en;
                }
            }
    }
    be->release(be, &qt), be->release(be, &kt), be->release(be, &pt);
    free(pos), free(q), free(k), free(wq), free(wk), free(gq), free(gk);
    return worst;
}

static void test_rope(void **state)
{
    (void)state;
    qh_backend *be = new_backend();
    uint64_t rng = 0xa11ce004;
    int dims[] = {2, 16, 64};
    double thetas[] = {10000.0, 500000.0};
    int packed[] = {7, 33, 1}; /* positions 0..6, 0..32, 0 */
    int single[] = {5};
    double worst = 0, worst_norm = 0;
    for (int di = 0; di < 3; di++)
        for (int ti = 0; ti < 2; ti++) {
            /* MHA-like (same head count) and GQA-like (k has fewer heads) */
            double e = rope_case(be, dims[di], 3, 3, packed, 3, 0, thetas[ti], &rng, &worst_norm);
            if (e > worst) worst = e;
            e = rope_case(be, dims[di], 6, 1, packed, 3, 0, thetas[ti], &rng, &worst_norm);
            if (e > worst) worst = e;
            /* large positions: big angles */
            e = rope_case(be, dims[di], 2, 1, single, 1, 4090, thetas[ti], &rng, &worst_norm);
            if (e > worst) worst = e;
        }
    printf("# rope: worst relative error %.2e, worst pair-norm change %.2e\n", worst, worst_norm);
    qh_backend_destroy(be);
}

/* ---- attention ----------------------------------------------------------------------------- */

/* A packed batch described exactly as core/llama_forward.c does. */
typedef struct {
    qh_batch b;
    int32_t *starts, *pos, *last, *ids;
} test_batch;

static void make_batch(qh_backend *be, const int *lengths, int n_seqs, test_batch *tb)
{
    int n_tokens = 0;
    for (int s = 0; s < n_seqs; s++) n_tokens += lengths[s];
    tb->starts = malloc(sizeof(int32_t) * (size_t)(n_seqs + 1));
    tb->pos = malloc(sizeof(int32_t) * (size_t)n_tokens);
    tb->last = malloc(sizeof(int32_t) * (size_t)n_seqs);
    tb->ids = malloc(sizeof(int32_t) * (size_t)n_tokens);
    assert_true(tb->starts && tb->pos && tb->last && tb->ids);
    qh_batch b = {.n_seqs = n_seqs, .n_tokens = n_tokens, .host_starts = tb->starts};
    int row = 0;
    for (int s = 0; s < n_seqs; s++) {
        tb->starts[s] = row;
        for (int i = 0; i < lengths[s]; i++) tb->pos[row + i] = i, tb->ids[row + i] = 3 + row + i;
        row += lengths[s];
        tb->last[s] = row - 1;
        if (lengths[s] > b.max_len) b.max_len = lengths[s];
    }
    tb->starts[n_seqs] = row;
    b.ids = upload_i32(be, tb->ids, n_tokens);
    b.positions = upload_i32(be, tb->pos, n_tokens);
    b.starts = upload_i32(be, tb->starts, n_seqs + 1);
    b.last_rows = upload_i32(be, tb->last, n_seqs);
    tb->b = b;
}

static void free_batch(qh_backend *be, test_batch *tb)
{
    be->release(be, &tb->b.ids), be->release(be, &tb->b.positions);
    be->release(be, &tb->b.starts), be->release(be, &tb->b.last_rows);
    free(tb->starts), free(tb->pos), free(tb->last), free(tb->ids);
}

static void ref_attention(const float *q, const float *k, const float *v, double *out, const int32_t *starts,
                          int n_seqs, int nh, int nkv, int d)
{
    int64_t qw = (int64_t)nh * d, kw = (int64_t)nkv * d;
    double *p = dalloc(4096);
    for (int s = 0; s < n_seqs; s++)
        for (int h = 0; h < nh; h++) {
            int kvh = h / (nh / nkv);
            for (int64_t i = starts[s]; i < starts[s + 1]; i++) {
                double mx = -INFINITY, sum = 0;
                for (int64_t j = starts[s]; j <= i; j++) {
                    double dot = 0;
                    for (int c = 0; c < d; c++) dot += (double)q[i * qw + h * d + c] * k[j * kw + kvh * d + c];
                    p[j - starts[s]] = dot / sqrt((double)d);
                    if (p[j - starts[s]] > mx) mx = p[j - starts[s]];
                }
                for (int64_t j = starts[s]; j <= i; j++) sum += p[j - starts[s]] = exp(p[j - starts[s]] - mx);
                for (int c = 0; c < d; c++) {
                    double acc = 0;
                    for (int64_t j = starts[s]; j <= i; j++) acc += p[j - starts[s]] * v[j * kw + kvh * d + c];
                    out[i * qw + h * d + c] = acc / sum;
                }
            }
        }
    free(p);
}

/* Runs attention on host q, k, v; returns the downloaded output and checks it against the
 * reference. */
static float *run_attention(qh_backend *be, test_batch *tb, const float *q, const float *k, const float *v, int nh,
                            int nkv, int d, double tol, double *worst)
{
    int64_t t = tb->b.n_tokens, qw = (int64_t)nh * d, kw = (int64_t)nkv * d;
    qh_tensor qt = upload_f32(be, q, t, qw), kt = upload_f32(be, k, t, kw), vt = upload_f32(be, v, t, kw);
    qh_tensor ot = alloc_f32(be, t, qw);
    ok(be->attention(be, &qt, &kt, &vt, &ot, &tb->b, nh, nkv, d), "attention");
    float *o = download(be, &ot);
    double *want = dalloc((size_t)(t * qw));
    ref_attention(q, k, v, want, tb->starts, tb->b.n_seqs, nh, nkv, d);
    char what[96];
    snprintf(what, sizeof what, "attention heads=%d kv=%d d=%d", nh, nkv, d);
    double e = check_rows(what, o, want, t, qw, tol);
    if (e > *worst) *worst = e;
    be->release(be, &qt), be->release(be, &kt), be->release(be, &vt), be->release(be, &ot);
    free(want);
    return o;
}

static int rows_equal(const float *a, const float *b, int64_t row, int64_t w)
{
    return memcmp(a + row * w, b + row * w, sizeof(float) * (size_t)w) == 0;
}

/* Replace row `row` of q, k and v with fresh values, rerun, and check that only the rows of the
 * same sequence at or after it changed. */
static void check_isolation(qh_backend *be, test_batch *tb, float *q, float *k, float *v, const float *base, int nh,
                            int nkv, int d, int seq, int tok, uint64_t *rng, double *worst)
{
    int64_t t = tb->b.n_tokens, qw = (int64_t)nh * d, kw = (int64_t)nkv * d;
    int64_t row = tb->starts[seq] + tok;
    float *q2 = malloc(sizeof(float) * (size_t)(t * qw)), *k2 = malloc(sizeof(float) * (size_t)(t * kw));
    float *v2 = malloc(sizeof(float) * (size_t)(t * kw));
    assert_true(q2 && k2 && v2);
    memcpy(q2, q, sizeof(float) * (size_t)(t * qw));
    memcpy(k2, k, sizeof(float) * (size_t)(t * kw));
    memcpy(v2, v, sizeof(float) * (size_t)(t * kw));
    for (int64_t c = 0; c < qw; c++) q2[row * qw + c] = (float)tu_rand_normal(rng);
    for (int64_t c = 0; c < kw; c++) {
        k2[row * kw + c] = (float)tu_rand_normal(rng);
        v2[row * kw + c] = (float)(3 + tu_rand_normal(rng)); /* shifted: the change always shows */
    }
    float *o2 = run_attention(be, tb, q2, k2, v2, nh, nkv, d, TOL_ATTN, worst);
    for (int64_t r = 0; r < t; r++) {
        int same_seq = r >= tb->starts[seq] && r < tb->starts[seq + 1];
        int eq = rows_equal(base, o2, r, qw);
        if (!same_seq && !eq)
            fail_msg("attention heads=%d kv=%d d=%d: changing row %lld (sequence %d) changed row %lld of another "
                     "sequence", nh, nkv, d, (long long)row, seq, (long long)r);
        if (same_seq && r < row && !eq)
            fail_msg("attention heads=%d kv=%d d=%d: changing row %lld changed the earlier row %lld (not causal)", nh,
                     nkv, d, (long long)row, (long long)r);
        if (same_seq && r >= row && eq)
            fail_msg("attention: changing row %lld left row %lld of its sequence unchanged", (long long)row,
                     (long long)r);
    }
    free(q2), free(k2), free(v2), free(o2);
}

static void test_attention(void **state)
{
    (void)state;
    qh_backend *be = new_backend();
    uint64_t rng = 0xa11ce005;
    int lengths[] = {1, 5, 17, 3};
    test_batch tb;
    make_batch(be, lengths, 4, &tb);
    assert_int_equal(tb.b.n_tokens, 26);
    assert_int_equal(tb.b.max_len, 17);
    static const int heads[][2] = {{4, 4}, {6, 2}, {4, 1}, {3, 3}};
    int dims[] = {8, 16};
    double worst = 0, worst_large = 0;
    for (int hi = 0; hi < 4; hi++)
        for (int di = 0; di < 2; di++) {
            int nh = heads[hi][0], nkv = heads[hi][1], d = dims[di];
            int64_t t = tb.b.n_tokens, qw = (int64_t)nh * d, kw = (int64_t)nkv * d;
            float *q = rand_f32(&rng, (size_t)(t * qw), 1.0), *k = rand_f32(&rng, (size_t)(t * kw), 1.0);
            float *v = rand_f32(&rng, (size_t)(t * kw), 1.0);
            float *base = run_attention(be, &tb, q, k, v, nh, nkv, d, TOL_ATTN, &worst);
            /* the first token of every sequence attends only to itself: out = v */
            for (int s = 0; s < 4; s++)
                for (int h = 0; h < nh; h++)
                    for (int c = 0; c < d; c++) {
                        int64_t r = tb.starts[s];
                        double want = v[r * kw + (h / (nh / nkv)) * d + c];
                        if (fabs(base[r * qw + h * d + c] - want) > 1e-6 * fabs(want) + 1e-7)
                            fail_msg("attention: first token of sequence %d head %d is not its own v", s, h);
                    }
            /* sequence isolation (a middle token of the longest sequence, the first token of the
             * last one, the length-1 sequence) and causality (the last token of a sequence) */
            check_isolation(be, &tb, q, k, v, base, nh, nkv, d, 2, 8, &rng, &worst);
            check_isolation(be, &tb, q, k, v, base, nh, nkv, d, 2, 16, &rng, &worst);
            check_isolation(be, &tb, q, k, v, base, nh, nkv, d, 3, 0, &rng, &worst);
            check_isolation(be, &tb, q, k, v, base, nh, nkv, d, 0, 0, &rng, &worst);
            check_isolation(be, &tb, q, k, v, base, nh, nkv, d, 1, 2, &rng, &worst);
            /* large scores (std ~30): softmax must subtract the max */
            for (int64_t i = 0; i < t * qw; i++) q[i] *= 30.0f;
            float *big = run_attention(be, &tb, q, k, v, nh, nkv, d, TOL_ATTN_LARGE, &worst_large);
            free(q), free(k), free(v), free(base), free(big);
        }
    printf("# attention: worst relative error %.2e (unit scores), %.2e (scores ~30)\n", worst, worst_large);
    free_batch(be, &tb);
    qh_backend_destroy(be);
}

/* ---- elementwise and row ops --------------------------------------------------------------- */

static void test_silu_mul(void **state)
{
    (void)state;
    qh_backend *be = new_backend();
    uint64_t rng = 0xa11ce006;
    int64_t rows_list[] = {1, 7, 33}, cols_list[] = {1, 13, 37, 131};
    double worst = 0;
    for (int ri = 0; ri < 3; ri++)
        for (int ci = 0; ci < 4; ci++) {
            int64_t t = rows_list[ri], f = cols_list[ci], n = t * f;
            float *g = rand_f32(&rng, (size_t)n, 3.0), *u = rand_f32(&rng, (size_t)n, 1.0);
            static const float extremes[] = {-100.0f, -30.0f, 30.0f, 100.0f, -88.0f, 1e-20f};
            for (int64_t i = 0; i < n && i < 6; i++) g[(i * 7) % n] = extremes[i];
            double *want = dalloc((size_t)n);
            for (int64_t i = 0; i < n; i++) want[i] = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
            qh_tensor gt = upload_f32(be, g, t, f), ut = upload_f32(be, u, t, f), ot = alloc_f32(be, t, f);
            ok(be->silu_mul(be, &gt, &ut, &ot), "silu_mul");
            float *o = download(be, &ot);
            for (int64_t i = 0; i < n; i++) {
                double err = fabs(o[i] - want[i]);
                if (!(err <= TOL_SILU * fabs(want[i]) + 1e-30))
                    fail_msg("silu_mul [%lld, %lld] element %lld: gate %g up %g: got %.9g want %.9g", (long long)t,
                             (long long)f, (long long)i, (double)g[i], (double)u[i], (double)o[i], want[i]);
                if (fabs(want[i]) > 1e-30 && err / fabs(want[i]) > worst) worst = err / fabs(want[i]);
            }
            be->release(be, &gt), be->release(be, &ut), be->release(be, &ot);
            free(g), free(u), free(want), free(o);
        }
    printf("# silu_mul: worst element relative error %.2e\n", worst);
    qh_backend_destroy(be);
}

static void test_add(void **state)
{
    (void)state;
    qh_backend *be = new_backend();
    uint64_t rng = 0xa11ce007;
    int64_t rows_list[] = {1, 7, 33}, cols_list[] = {1, 13, 131};
    for (int ri = 0; ri < 3; ri++)
        for (int ci = 0; ci < 3; ci++) {
            int64_t t = rows_list[ri], h = cols_list[ci], n = t * h;
            float *x = rand_f32(&rng, (size_t)n, 1.0), *y = rand_f32(&rng, (size_t)n, 100.0);
            qh_tensor xt = upload_f32(be, x, t, h), yt = upload_f32(be, y, t, h);
            ok(be->add(be, &xt, &yt), "add");
            float *o = download(be, &xt), *y2 = download(be, &yt);
            for (int64_t i = 0; i < n; i++) {
                float want = (float)((double)x[i] + (double)y[i]); /* the exact sum, rounded once */
                if (memcmp(&o[i], &want, sizeof want) != 0)
                    fail_msg("add element %lld: %.9g + %.9g gave %.9g", (long long)i, (double)x[i], (double)y[i],
                             (double)o[i]);
            }
            assert_memory_equal(y2, y, sizeof(float) * (size_t)n); /* y is left alone */
            be->release(be, &xt), be->release(be, &yt);
            free(x), free(y), free(o), free(y2);
        }
    qh_backend_destroy(be);
}

static void test_embed(void **state)
{
    (void)state;
    qh_backend *be = new_backend();
    uint64_t rng = 0xa11ce008;
    const int64_t vocab = 11, h = 37, t = 33;
    qh_dtype dts[] = {QH_F16, QH_BF16, QH_F32};
    for (int di = 0; di < 3; di++) {
        float *tab = rand_f32(&rng, (size_t)(vocab * h), 1.0);
        double *ref = dalloc((size_t)(vocab * h));
        void *buf = make_weight(dts[di], tab, (size_t)(vocab * h), ref);
        qh_tensor tt = weight_view(be, dts[di], buf, 2, vocab, h);
        int32_t ids[33];
        for (int i = 0; i < t; i++) ids[i] = (int32_t)(tu_rand_u64(&rng) % (uint64_t)vocab);
        ids[0] = 0, ids[1] = (int32_t)vocab - 1, ids[2] = (int32_t)vocab - 1; /* ends, repeats */
        for (int64_t n = 1; n <= t; n += 32) { /* 1 and 33 tokens */
            qh_tensor it = upload_i32(be, ids, n), ot = alloc_f32(be, n, h);
            ok(be->embed(be, &tt, &it, &ot), "embed");
            float *o = download(be, &ot);
            for (int64_t r = 0; r < n; r++)
                for (int64_t c = 0; c < h; c++)
                    if ((double)o[r * h + c] != ref[ids[r] * h + c])
                        fail_msg("embed %s: token %lld (id %d) column %lld: got %.9g want %.9g", dtname(dts[di]),
                                 (long long)r, ids[r], (long long)c, (double)o[r * h + c], ref[ids[r] * h + c]);
            be->release(be, &it), be->release(be, &ot);
            free(o);
        }
        /* ids outside the vocabulary are input errors, not crashes */
        int32_t bad[][3] = {{0, (int32_t)vocab, 1}, {-1, 0, 0}, {2, 3, 1 << 30}};
        for (int b = 0; b < 3; b++) {
            qh_tensor it = upload_i32(be, bad[b], 3), ot = alloc_f32(be, 3, h);
            qh_clear_error();
            assert_int_equal(be->embed(be, &tt, &it, &ot), QH_EINPUT);
            assert_true(strlen(qh_last_error()) > 0);
            be->release(be, &it), be->release(be, &ot);
        }
        be->release(be, &tt);
        free(tab), free(ref), free(buf);
    }
    qh_backend_destroy(be);
}

static void test_gather_rows(void **state)
{
    (void)state;
    qh_backend *be = new_backend();
    uint64_t rng = 0xa11ce009;
    const int64_t t = 33, h = 19;
    float *x = rand_f32(&rng, (size_t)(t * h), 1.0);
    qh_tensor xt = upload_f32(be, x, t, h);
    int32_t rows[] = {32, 0, 5, 5, 17, 31, 1};
    for (int64_t n = 1; n <= 7; n += 6) {
        qh_tensor rt = upload_i32(be, rows, n), ot = alloc_f32(be, n, h);
        ok(be->gather_rows(be, &xt, &rt, &ot), "gather_rows");
        float *o = download(be, &ot);
        for (int64_t i = 0; i < n; i++)
            if (memcmp(o + i * h, x + (int64_t)rows[i] * h, sizeof(float) * (size_t)h) != 0)
                fail_msg("gather_rows: output row %lld is not input row %d", (long long)i, rows[i]);
        be->release(be, &rt), be->release(be, &ot);
        free(o);
    }
    int32_t bad[] = {3, 33};
    qh_tensor rt = upload_i32(be, bad, 2), ot = alloc_f32(be, 2, h);
    assert_int_not_equal(be->gather_rows(be, &xt, &rt, &ot), QH_OK);
    be->release(be, &rt), be->release(be, &ot), be->release(be, &xt);
    free(x);
    qh_backend_destroy(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),  cmocka_unit_test(test_linear_scratch_growth),
        cmocka_unit_test(test_rmsnorm), cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention), cmocka_unit_test(test_silu_mul),
        cmocka_unit_test(test_add),     cmocka_unit_test(test_embed),
        cmocka_unit_test(test_gather_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
