/* bench_cuda_forward: the TweetEval-length workload through the CUDA backend, and (same
 * command) transformers on the same lengths, one table at the end.
 *
 *   bench_cuda_forward [--lengths FILE] [--batch-tokens N[,N...]] [--reps R] [--model DIR]
 *                      [--variants fp16,int8,nf4,nf4-dq] [--int8-threshold X] [--int8-chunk N]
 *                      [--nf4-blocksize N] [--nf4-part-mb MB] [--qdir DIR] [--latency R] [--latency-len L]
 *                      [--profile] [--gemm-sweep] [--gemm-sustain MS] [--hf SCRIPT] [--hf-args "ARGS"]
 *
 * --variants: each in turn on a fresh backend (default fp16). int8 (LLM.int8(), outlier
 * threshold --int8-threshold, default 6 as `quantize`), nf4 (blocksize --nf4-blocksize,
 * default 64; --nf4-part-mb: the fp16 part a weight is dequantized in for large batches, default
 * 48, 96 keeps the 7B's weights whole) and nf4-dq (with double quantization). A variant may carry its own threshold
 * and batch sizes: int8:0 (no outlier decomposition), nf4-dq@8192/12288 (instead of
 * --batch-tokens); "+plain" turns off int8's fused SwiGLU and nf4's weight prefetching
 * (int8:0+plain, nf4-dq+plain@10240) to measure what they bring; "+nocodes" makes int8's products
 * quantize their inputs themselves instead of RMSNorm and SwiGLU writing the codes (int8:0+nocodes);
 * "+cublas" keeps int8's large batches on cuBLASLt's int32 products and the epilogue kernels
 * instead of the one-kernel wgmma products (int8:0+cublas); "+wait" makes int8's small batches wait
 * for their outlier count as large ones do (int8+wait@0); "+unfused" runs the separate kernels
 * for int8's small batches (q/k/v epilogues; with outliers the quantization, outlier sums,
 * epilogue and SwiGLU: int8+unfused@0); "+nograph" launches every op of the batch-1 latency calls
 * instead of replaying a recorded CUDA graph (fp16+nograph@0). The random model's fp16 weights (the same for every variant) are quantized on
 * the GPU with the library's formats
 * (qh_cuda_quantize); with --model DIR, DIR/config.json and --qdir's
 * backbone-<int8|nf4>.safetensors (written by `quantize`; nf4-dq reads backbone-nf4) are loaded.
 * --latency R: batch-1 latency of one --latency-len-token sequence (default 30), median of R
 * calls of qh_llama_forward (ids up, hidden state down) after 3 warm-up calls (with --profile,
 * then one more call with per-op device times).
 *
 * Workload: 12,284 sequences whose lengths follow the histogram in FILE (default
 * bench/tweeteval-lengths.json: TweetEval sentiment test split, LLaMA-2 tokenizer with BOS,
 * 365,416 tokens), random token ids. Model: a LLaMA-2-7B-shape model with random weights
 * (normal(0, 0.02), norms 1) generated on the GPU, or the checkpoint in --model DIR.
 *
 * For each --batch-tokens value: one warm-up pass over n/20 sequences of 49..88 tokens (the
 * kernels and cuBLASLt plans get exercised), then R timed passes over the whole set
 * (qh_llama_forward is synchronous: it returns once the hidden states are on the host, so the
 * wall clock is the device time plus every host gap). Reports the median, the spread, and the
 * backend's peak device memory (weights + activations + workspace), plus the device-wide use
 * (cudaMemGetInfo, includes the CUDA context and the pool's cache).
 *
 * --profile: one more pass with per-op device times (CUDA events between ops); with --latency
 *   also one profiled latency call and the device time per call of layer 0's products at
 *   --latency-len tokens as the forward pass calls them (q/k/v, o plus residual, gate/up plus
 *   SwiGLU, down plus residual); for nf4 once per small-batch kernel plan (default, then forced
 *   splits).
 * --gemm-sweep: the 7B matrix-product shapes at the first batch size, every cuBLASLt
 *   heuristic candidate timed (is the first one, which the backend takes, the fastest?).
 *   --gemm-sustain MS: the same, each candidate timed over MS ms of back-to-back products (the
 *   card at its power limit, as in a whole pass) instead of short bursts.
 * --hf SCRIPT: after freeing the GPU, runs `python3 SCRIPT --lengths FILE ARGS` (see
 *   bench/hf_llama_baseline.py), which prints one JSON line per variant, and adds them to the
 *   table with our ratio to the best. */
#include "backend.h"
#include "error.h"
#include "llama_model.h"
#include "quant.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef QHEAD_HAVE_CUDA
#include "bench_script.h"
#include "cuda/qh_cuda.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <time.h>

static const char *prog = "bench_cuda_forward";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    fclose(fp);
    return buf;
}

/* Lengths from the histogram, shuffled (deterministically) into a dataset-like order. */
static int load_lengths(const char *path, int32_t **lens, int *n, long *total)
{
    char *text = slurp(path);
    if (!text) return qh_fail_errno(QH_EINPUT, "%s", path);
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON *hist = root ? cJSON_GetObjectItemCaseSensitive(root, "histogram") : NULL;
    if (!cJSON_IsObject(hist)) {
        cJSON_Delete(root);
        return qh_fail(QH_EINPUT, "%s: no \"histogram\" object", path);
    }
    int count = 0;
    for (cJSON *e = hist->child; e; e = e->next) count += (int)e->valuedouble;
    *lens = malloc(sizeof(int32_t) * (size_t)(count ? count : 1));
    if (!*lens) return qh_fail(QH_ESYS, "out of memory");
    int at = 0;
    *total = 0;
    for (cJSON *e = hist->child; e; e = e->next) {
        int len = atoi(e->string);
        for (int i = 0; i < (int)e->valuedouble; i++) (*lens)[at++] = len, *total += len;
    }
    cJSON_Delete(root);
    uint64_t st = 12345;
    for (int i = count - 1; i > 0; i--) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        int j = (int)((st >> 33) % (uint64_t)(i + 1));
        int32_t t = (*lens)[i];
        (*lens)[i] = (*lens)[j], (*lens)[j] = t;
    }
    *n = count;
    return QH_OK;
}

static int weight(qh_backend *be, qh_tensor *t, int64_t rows, int64_t cols, uint64_t seed, float mean, float sd)
{
    *t = cols ? qh_tensor_2d(QH_F16, rows, cols) : qh_tensor_1d(QH_F16, rows);
    int rc = be->alloc(be, t);
    return rc ? rc : qh_cuda_fill(be, t, seed, mean, sd);
}

typedef struct {
    char name[96];  /* fp16, int8, nf4, nf4-dq (with :threshold and what is off) */
    qh_dtype dtype; /* F16, I8, NF4 */
    int blocksize, double_quant;
    float threshold;
    char bt_list[64]; /* batch sizes, or empty: --batch-tokens */
    int plain;        /* "+plain": int8 without the fused SwiGLU, nf4 without prefetching */
    int nocodes;      /* "+nocodes": int8 without the codes RMSNorm and SwiGLU write */
    int cublas;       /* "+cublas": int8 products through cuBLASLt's int32 output, never the wgmma kernel */
    int wait;         /* "+wait": int8 batches of any size wait for their outlier count */
    int unfused;      /* "+unfused": int8's small batches with outliers run the separate kernels */
    int nograph;      /* "+nograph": batch-1 latency with every op launched, no recorded graph */
} variant;

/* A linear weight: fp16 random, then quantized on the GPU for the quantized variants. */
static int linear_weight(qh_backend *be, const variant *v, qh_tensor *t, int64_t rows, int64_t cols, uint64_t seed,
                         float sd)
{
    if (v->dtype == QH_F16) return weight(be, t, rows, cols, seed, 0, sd);
    qh_tensor f;
    int rc = weight(be, &f, rows, cols, seed, 0, sd);
    if (!rc) rc = qh_cuda_quantize(be, &f, v->dtype, v->blocksize, v->double_quant, v->threshold, t);
    be->release(be, &f);
    return rc;
}

static int random_model(qh_backend *be, const variant *v, qh_llama_model **out)
{
    qh_llama_model *m = calloc(1, sizeof *m);
    if (!m) return qh_fail(QH_ESYS, "out of memory");
    qh_llama_config *c = &m->cfg;
    c->hidden_size = 4096, c->intermediate_size = 11008, c->num_layers = 32, c->num_heads = 32;
    c->num_kv_heads = 32, c->head_dim = 128, c->vocab_size = 32000, c->max_position_embeddings = 4096;
    c->rms_norm_eps = 1e-5, c->rope_theta = 10000.0, c->dtype = QH_F16;
    snprintf(c->architecture, sizeof c->architecture, "LlamaForSequenceClassification");
    m->be = be;
    m->layers = calloc((size_t)c->num_layers, sizeof *m->layers);
    if (!m->layers) {
        free(m);
        return qh_fail(QH_ESYS, "out of memory");
    }
    int64_t h = c->hidden_size, f = c->intermediate_size, qw = (int64_t)c->num_heads * c->head_dim;
    int64_t kw = (int64_t)c->num_kv_heads * c->head_dim;
    uint64_t seed = 1;
    float sd = 0.02f;
    int rc = weight(be, &m->embed, c->vocab_size, h, seed++, 0, sd);
    if (!rc) rc = weight(be, &m->final_norm, h, 0, seed++, 1, 0);
    for (int l = 0; !rc && l < c->num_layers; l++) {
        qh_llama_layer *L = &m->layers[l];
        rc = weight(be, &L->attn_norm, h, 0, seed++, 1, 0);
        if (!rc) rc = linear_weight(be, v, &L->wq, qw, h, seed++, sd);
        if (!rc) rc = linear_weight(be, v, &L->wk, kw, h, seed++, sd);
        if (!rc) rc = linear_weight(be, v, &L->wv, kw, h, seed++, sd);
        if (!rc) rc = linear_weight(be, v, &L->wo, h, qw, seed++, sd);
        if (!rc) rc = weight(be, &L->mlp_norm, h, 0, seed++, 1, 0);
        if (!rc) rc = linear_weight(be, v, &L->w_gate, f, h, seed++, sd);
        if (!rc) rc = linear_weight(be, v, &L->w_up, f, h, seed++, sd);
        if (!rc) rc = linear_weight(be, v, &L->w_down, h, f, seed++, sd);
    }
    if (!rc) rc = be->sync(be);
    if (rc) {
        qh_llama_free(m);
        return rc;
    }
    *out = m;
    return QH_OK;
}

typedef struct {
    char name[160];
    double time_s, peak_gb, device_gb;
    int ok, fp16;
} row;

enum { MAX_ROWS = 48 };

typedef struct {
    row *rows;
    int *n_rows;
} hf_ctx;

/* One line of the transformers baseline (bench/hf_llama_baseline.py) as a row of the table. */
static void hf_line(const cJSON *j, void *p)
{
    hf_ctx *c = p;
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(j, "name"), *tm = cJSON_GetObjectItemCaseSensitive(j, "time_s");
    if (!cJSON_IsString(nm) || !cJSON_IsNumber(tm) || *c->n_rows >= MAX_ROWS) return;
    row *R = &c->rows[(*c->n_rows)++];
    snprintf(R->name, sizeof R->name, "transformers %s", nm->valuestring);
    R->time_s = tm->valuedouble;
    const cJSON *pk = cJSON_GetObjectItemCaseSensitive(j, "peak_alloc_gb");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "peak_reserved_gb");
    R->peak_gb = cJSON_IsNumber(pk) ? pk->valuedouble : 0;
    R->device_gb = cJSON_IsNumber(rs) ? rs->valuedouble : 0;
    R->ok = 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* name[:threshold][+plain][+nocodes][+cublas][+wait][+unfused][+nograph][@bt/bt...] */
static int parse_variant(const char *spec, size_t len, variant *v, float thr, int bs)
{
    memset(v, 0, sizeof *v);
    v->threshold = thr, v->blocksize = bs;
    char buf[128];
    snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf ? len : sizeof buf - 1), spec);
    char *at = strchr(buf, '@');
    if (at) {
        *at = 0;
        snprintf(v->bt_list, sizeof v->bt_list, "%s", at + 1);
        for (char *c = v->bt_list; *c; c++)
            if (*c == '/') *c = ',';
    }
    char *plus = strstr(buf, "+nograph");
    if (plus) memmove(plus, plus + 8, strlen(plus + 8) + 1), v->nograph = 1;
    plus = strstr(buf, "+unfused");
    if (plus) memmove(plus, plus + 8, strlen(plus + 8) + 1), v->unfused = 1;
    plus = strstr(buf, "+wait");
    if (plus) memmove(plus, plus + 5, strlen(plus + 5) + 1), v->wait = 1;
    plus = strstr(buf, "+cublas");
    if (plus) memmove(plus, plus + 7, strlen(plus + 7) + 1), v->cublas = 1;
    plus = strstr(buf, "+nocodes");
    if (plus) memmove(plus, plus + 8, strlen(plus + 8) + 1), v->nocodes = 1;
    plus = strstr(buf, "+plain");
    if (plus) *plus = 0, v->plain = 1;
    char *colon = strchr(buf, ':');
    if (colon) *colon = 0;
    if (!strcmp(buf, "fp16")) v->dtype = QH_F16;
    else if (!strcmp(buf, "int8")) v->dtype = QH_I8;
    else if (!strcmp(buf, "nf4")) v->dtype = QH_NF4;
    else if (!strcmp(buf, "nf4-dq")) v->dtype = QH_NF4, v->double_quant = 1;
    else return qh_fail(QH_EINPUT, "--variants: '%.*s' is not fp16, int8, nf4 or nf4-dq", (int)len, spec);
    if (colon && v->dtype != QH_I8) return qh_fail(QH_EINPUT, "--variants: a threshold (':') goes with int8 only");
    if (colon) v->threshold = (float)atof(colon + 1);
    snprintf(v->name, sizeof v->name, "%.20s", buf);
    if (colon) snprintf(v->name + strlen(v->name), sizeof v->name - strlen(v->name), " (threshold %g)", v->threshold);
    if (v->plain)
        snprintf(v->name + strlen(v->name), sizeof v->name - strlen(v->name), "%s",
                 v->dtype == QH_I8 ? ", unfused SwiGLU" : v->dtype == QH_NF4 ? ", no prefetch" : "");
    if (v->nocodes && v->dtype == QH_I8)
        snprintf(v->name + strlen(v->name), sizeof v->name - strlen(v->name), ", inputs quantized by the products");
    if (v->cublas && v->dtype == QH_I8)
        snprintf(v->name + strlen(v->name), sizeof v->name - strlen(v->name), ", cuBLASLt int32 + epilogue");
    if (v->wait && v->dtype == QH_I8)
        snprintf(v->name + strlen(v->name), sizeof v->name - strlen(v->name), ", waits for outlier counts");
    if (v->unfused && v->dtype == QH_I8)
        snprintf(v->name + strlen(v->name), sizeof v->name - strlen(v->name), ", small batches: separate kernels");
    if (v->nograph) snprintf(v->name + strlen(v->name), sizeof v->name - strlen(v->name), ", no graph");
    return QH_OK;
}

/* Device time per call of the layer-0 q_proj, gate_proj and down_proj products on t tokens
 * (200 back-to-back calls after 5 warm-up ones; int8 reuses its quantized input). */
/* Buffers for one layer's products at t tokens: x [t, hidden], xf [t, ffn], q, k, v, gate, up
 * and the fp32 residual. */
enum { LB_X, LB_XF, LB_Q, LB_K, LB_V, LB_G, LB_U, LB_RES, LB_COUNT };

/* One of a layer's products, as the forward pass calls it: q/k/v (linear_qkv), o and down
 * (linear_add into the fp32 residual), gate/up (linear_swiglu). */
static int layer_op(qh_backend *be, const qh_llama_layer *L, int op, qh_tensor *b)
{
    switch (op) {
    case 0: return be->linear_qkv(be, &b[LB_X], &L->wq, &L->wk, &L->wv, &b[LB_Q], &b[LB_K], &b[LB_V]);
    case 1: return be->linear_add(be, &b[LB_X], &L->wo, &b[LB_RES]);
    case 2: return be->linear_swiglu(be, &b[LB_X], &L->w_gate, &L->w_up, &b[LB_G], &b[LB_U]);
    default: return be->linear_add(be, &b[LB_XF], &L->w_down, &b[LB_RES]);
    }
}

/* Device time per call of layer 0's products at t tokens (200 back-to-back calls after 5), and
 * GB/s of weights read. With plans (nf4), once per small-batch kernel plan: the default, then
 * rows 128 / 256 with clusters of 2, 3, 4, 6, 8 splits (where one does not fit, the plain ops run,
 * marked "-"). */
static int linear_bench(qh_backend *be, qh_llama_model *m, int t, const char *vname, int plans)
{
    const qh_llama_layer *L = &m->layers[0];
    const int64_t h = m->cfg.hidden_size, f = L->w_gate.shape[0];
    const qh_tensor *ws[4][3] = {{&L->wq, &L->wk, &L->wv}, {&L->wo}, {&L->w_gate, &L->w_up}, {&L->w_down}};
    const char *names[4] = {"q/k/v", "o (+res)", "gate/up+SwiGLU", "down (+res)"};
    const qh_dtype a = be->act_dtype;
    qh_tensor b[LB_COUNT] = {qh_tensor_2d(a, t, h), qh_tensor_2d(a, t, f), qh_tensor_2d(a, t, L->wq.shape[0]),
                             qh_tensor_2d(a, t, L->wk.shape[0]), qh_tensor_2d(a, t, L->wv.shape[0]),
                             qh_tensor_2d(a, t, f), qh_tensor_2d(a, t, f), qh_tensor_2d(QH_F32, t, h)};
    int rc = QH_OK;
    for (int i = 0; !rc && i < LB_COUNT; i++) rc = be->alloc(be, &b[i]);
    if (!rc) rc = qh_cuda_fill(be, &b[LB_X], 7, 0, 1);
    if (!rc) rc = qh_cuda_fill(be, &b[LB_XF], 8, 0, 1);
    if (!rc) rc = qh_cuda_fill(be, &b[LB_RES], 9, 0, 1);
    const int n_plans = plans ? 11 : 1;
    for (int pl = 0; !rc && pl < n_plans; pl++) {
        static const int sp[5] = {2, 3, 4, 6, 8};
        const int rows = pl == 0 ? 0 : pl <= 5 ? 128 : 256, splits = pl == 0 ? 0 : sp[(pl - 1) % 5];
        if (plans) qh_cuda_set_nf4_small_plan(be, rows, splits);
        char line[320];
        int len = pl ? snprintf(line, sizeof line, "#   %s at %d tokens, rows %d splits %d", vname, t, rows, splits)
                     : snprintf(line, sizeof line, "#   %s at %d tokens, default plan", vname, t);
        double total = 0;
        for (int op = 0; !rc && op < 4; op++) {
            qh_cuda_quant_stats st;
            qh_cuda_quant_stats_get(be, &st, 1);
            for (int r = 0; !rc && r < 5; r++) rc = layer_op(be, L, op, b);
            if (!rc) rc = be->sync(be);
            double t0 = now();
            for (int r = 0; !rc && r < 200; r++) rc = layer_op(be, L, op, b);
            if (!rc) rc = be->sync(be);
            double us = (now() - t0) / 200 * 1e6, bytes = 0;
            qh_cuda_quant_stats_get(be, &st, 1);
            for (int i = 0; i < 3 && ws[op][i]; i++) {
                double bits = ws[op][i]->dtype == QH_NF4 ? 4 : ws[op][i]->dtype == QH_I8 ? 8 : 16;
                bytes += (double)ws[op][i]->shape[0] * ws[op][i]->shape[1] * bits / 8;
            }
            total += us;
            len += snprintf(line + len, sizeof line - (size_t)len, " | %s %.1f us (%.0f GB/s)%s", names[op], us,
                            bytes / (us * 1e-6) / 1e9, plans && st.nf4_fused == 0 ? " -" : "");
        }
        if (!rc) printf("%s | layer %.1f us\n", line, total);
    }
    if (plans) qh_cuda_set_nf4_small_plan(be, 0, 0);
    for (int i = 0; i < LB_COUNT; i++) be->release(be, &b[i]);
    return rc;
}

/* One call of run(ctx) with per-op device times, printed under title. */
static int profiled(qh_backend *be, qh_llama_model *m, int bt, const int32_t *ids, const int32_t *lens, int n,
                    float *hidden, const char *title)
{
    qh_llama_ctx *ctx;
    int rc = qh_llama_ctx_create(m, bt, &ctx);
    if (rc) return rc;
    qh_cuda_profile(be, 1);
    double a = now();
    rc = qh_llama_forward(ctx, ids, lens, n, hidden);
    double wall = now() - a, ms[QH_CUDA_OP_COUNT], sum = 0;
    const char *names[QH_CUDA_OP_COUNT];
    qh_cuda_profile_read(be, ms, names);
    qh_cuda_profile(be, 0);
    qh_llama_ctx_free(ctx);
    if (rc) return rc;
    for (int i = 0; i < QH_CUDA_OP_COUNT; i++) sum += ms[i];
    printf("# %s (%.3f ms wall with event overhead):\n", title, wall * 1e3);
    for (int i = 0; i < QH_CUDA_OP_COUNT; i++)
        if (ms[i] != 0) printf("#   %-26s %9.3f ms  %5.1f%%\n", names[i], ms[i], 100 * ms[i] / sum);
    printf("#   %-26s %9.3f ms\n", "sum", sum);
    return QH_OK;
}

/* What the quantized products did (outlier columns per int8 input, which kernels ran). */
static void print_quant_stats(qh_backend *be, const char *when)
{
    qh_cuda_quant_stats st;
    qh_cuda_quant_stats_get(be, &st, 1);
    static const struct {
        int kind;
        const char *name;
    } in[] = {{QH_CUDA_OP_GEMM_QKV, "q/k/v input"},
              {QH_CUDA_OP_GEMM_O, "o_proj input"},
              {QH_CUDA_OP_GEMM_GATE_UP, "gate/up input"},
              {QH_CUDA_OP_GEMM_DOWN, "down_proj input"}};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        long n = st.int8_inputs[in[i].kind];
        if (n)
            printf("#   int8 %s (%s): %ld activations quantized, outlier columns mean %.1f, max %d\n", in[i].name, when, n,
                   (double)st.int8_outlier_cols[in[i].kind] / n, st.int8_outlier_max[in[i].kind]);
    }
    if (st.int8_norm_codes || st.int8_swiglu_codes)
        printf("#   int8 inputs whose codes RMSNorm / SwiGLU wrote (%s): %ld / %ld\n", when, st.int8_norm_codes,
               st.int8_swiglu_codes);
    if (st.int8_tc_products || st.int8_plain_products || st.int8_wgmma_products)
        printf("#   int8 products (%s): %ld with their epilogue in one kernel (wgmma), %ld on tensor cores (cuBLASLt), %ld "
               "plain kernel\n",
               when, st.int8_wgmma_products, st.int8_tc_products, st.int8_plain_products);
    if (st.nf4_fused || st.nf4_dequant)
        printf("#   nf4 products (%s): %ld fused (small batches), %ld dequantize + cuBLASLt\n", when, st.nf4_fused,
               st.nf4_dequant);
}

int main(int argc, char **argv)
{
    const char *lengths_path = "bench/tweeteval-lengths.json", *model_dir = NULL, *hf = NULL, *hf_args = "";
    const char *bt_list = "8192", *variants = "fp16", *qdir = "checkpoints";
    int reps = 2, profile = 0, sweep = 0, sustain_ms = 0, lat_reps = 0, lat_len = 30, nf4_bs = 64;
    double int8_thr = QH_INT8_DEFAULT_THRESHOLD;
    long int8_chunk = 0, nf4_part_mb = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--lengths") && more) lengths_path = argv[++i];
        else if (!strcmp(a, "--batch-tokens") && more) bt_list = argv[++i];
        else if (!strcmp(a, "--reps") && more) reps = atoi(argv[++i]);
        else if (!strcmp(a, "--model") && more) model_dir = argv[++i];
        else if (!strcmp(a, "--variants") && more) variants = argv[++i];
        else if (!strcmp(a, "--int8-threshold") && more) int8_thr = atof(argv[++i]);
        else if (!strcmp(a, "--int8-chunk") && more) int8_chunk = atol(argv[++i]);
        else if (!strcmp(a, "--nf4-blocksize") && more) nf4_bs = atoi(argv[++i]);
        else if (!strcmp(a, "--nf4-part-mb") && more) nf4_part_mb = atol(argv[++i]);
        else if (!strcmp(a, "--qdir") && more) qdir = argv[++i];
        else if (!strcmp(a, "--latency") && more) lat_reps = atoi(argv[++i]);
        else if (!strcmp(a, "--latency-len") && more) lat_len = atoi(argv[++i]);
        else if (!strcmp(a, "--hf") && more) hf = argv[++i];
        else if (!strcmp(a, "--hf-args") && more) hf_args = argv[++i];
        else if (!strcmp(a, "--profile")) profile = 1;
        else if (!strcmp(a, "--gemm-sweep")) sweep = 1;
        else if (!strcmp(a, "--gemm-sustain") && more) sweep = 1, sustain_ms = atoi(argv[++i]);
        else {
            fprintf(stderr, "%s: unknown or incomplete argument '%s' (see the comment at the top of the source)\n", prog, a);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (lat_len < 1) lat_len = 1;
    variant vars[8];
    int n_vars = 0, rc;
    for (const char *p = variants; *p && n_vars < 8;) {
        size_t len = strcspn(p, ",");
        if ((rc = parse_variant(p, len, &vars[n_vars++], (float)int8_thr, nf4_bs))) return qh_report(prog, rc);
        p += len + (p[len] == ',');
    }
    int32_t *lens = NULL;
    int n = 0;
    long total = 0;
    if ((rc = load_lengths(lengths_path, &lens, &n, &total))) return qh_report(prog, rc);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)total);
    uint64_t st = 99;
    for (long i = 0; i < total; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = 3 + (int32_t)((st >> 33) % 31997); /* never 0..2 (unk, bos, eos) */
    }
    int max_len = 0;
    for (int s = 0; s < n; s++) max_len = lens[s] > max_len ? lens[s] : max_len;
    printf("# workload: %d sequences, %ld tokens (mean %.1f, max %d) from %s\n", n, total, (double)total / n, max_len,
           lengths_path);

    row rows[MAX_ROWS];
    int n_rows = 0;
    struct {
        char name[96];
        double ms, min_ms, weights_gb;
    } lat[8];
    int n_lat = 0;
    double flops = 0, fp16_best = 0;
    /* warm-up: n/20 sequences of 49..88 tokens */
    int n_warm = n / 20 > 0 ? n / 20 : 1;
    int32_t *wl = malloc(sizeof(int32_t) * (size_t)n_warm);
    for (int i = 0; i < n_warm; i++) wl[i] = 88 - i % 40 > max_len ? max_len : 88 - i % 40;
    for (int vi = 0; vi < n_vars; vi++) {
        const variant *v = &vars[vi];
        qh_backend *be = NULL;
        qh_llama_model *m = NULL;
        if ((rc = qh_backend_create("cuda", &be))) return qh_report(prog, rc);
        if (vi == 0) printf("# device: %s\n", qh_cuda_device_name(be));
        if (int8_chunk > 0) qh_cuda_set_int8_chunk(be, int8_chunk);
        if (nf4_part_mb > 0) qh_cuda_set_nf4_part_bytes(be, (size_t)nf4_part_mb << 20);
        if (v->plain) qh_cuda_set_int8_swiglu(be, 0), qh_cuda_set_nf4_prefetch(be, 0);
        if (v->nocodes) qh_cuda_set_int8_input_codes(be, 0);
        if (v->cublas) qh_cuda_set_int8_wgmma(be, QH_CUDA_I8_WGMMA_OFF);
        if (v->wait) qh_cuda_set_int8_outlier_sync(be, 1);
        if (v->unfused) qh_cuda_set_int8_small_fused(be, 0);
        double t0 = now();
        if (model_dir) {
            char qfile[4200];
            const char *fv = v->dtype == QH_F16 ? "fp16" : v->dtype == QH_I8 ? "int8" : "nf4";
            snprintf(qfile, sizeof qfile, "%s/backbone-%s.safetensors", qdir, fv);
            rc = qh_llama_load_variant(model_dir, fv, v->dtype == QH_F16 ? NULL : qfile, be, &m);
        } else {
            rc = random_model(be, v, &m);
        }
        if (!rc) rc = be->sync(be);
        if (rc) return qh_report(prog, rc);
        size_t live, peak;
        qh_cuda_memory(be, &live, &peak);
        double weights_gb = live / 1e9;
        printf("# %s: %s, %.2f GB of weights on the GPU, ready in %.1f s\n", v->name,
               model_dir ? model_dir : "random 7B shape", weights_gb, now() - t0);
        if (v->dtype == QH_I8) printf("#   int8 outlier threshold %g\n", m->layers[0].wq.quant.threshold);
        if (v->dtype == QH_NF4)
            printf("#   nf4 blocksize %d%s\n", m->layers[0].wq.quant.blocksize,
                   m->layers[0].wq.quant.qabsmax ? ", double quantization" : "");
        double flop_tok = qh_llama_flops_per_token(&m->cfg);
        flops = flop_tok * (double)total;
        if (vi == 0)
            printf("# matrix-product FLOPs: %.3g per token, %.4g in all -> floor %.2f s at 798 TFLOP/s (int8: %.2f s at "
                   "1596 TOPS)\n",
                   flop_tok, flops, flops / 798e12, flops / 1596e12);

        if (sweep && v->dtype == QH_F16) {
            long bt = atol(v->bt_list[0] ? v->bt_list : bt_list);
            const int64_t shp[][3] = {{4096, 4096, 0}, {11008, 4096, 0}, {4096, 4096, 1}, {4096, 11008, 1},
                                      {12288, 4096, 0}, {22016, 4096, 0}};
            printf("# GEMM sweep at t = %ld (n, k; f32 C+= is the fused residual):\n", bt);
            for (size_t i = 0; i < sizeof shp / sizeof shp[0]; i++) {
                double first, best;
                rc = qh_cuda_gemm_bench(be, bt, shp[i][0], shp[i][1], (int)shp[i][2], 8, sustain_ms, &first, &best);
                if (rc) return qh_report(prog, rc);
                printf("# GEMM t=%ld n=%lld k=%lld %s: heuristic first %.1f TFLOP/s, best %.1f\n", bt,
                       (long long)shp[i][0], (long long)shp[i][1], shp[i][2] ? "f32 C+=" : "f16", first, best);
            }
            fflush(stdout);
        }

        float *hidden = malloc(sizeof(float) * (size_t)n * m->cfg.hidden_size);
        double best_time = 0;
        long best_bt = 0;
        for (const char *p = v->bt_list[0] ? v->bt_list : bt_list; *p && n_rows < 40;) {
            long bt = strtol(p, (char **)&p, 10);
            if (*p == ',') p++;
            if (bt <= 0) break;
            qh_llama_ctx *ctx;
            if ((rc = qh_llama_ctx_create(m, (int)bt, &ctx))) return qh_report(prog, rc);
            qh_cuda_reset_peak(be);
            rc = qh_llama_forward(ctx, ids, wl, n_warm, hidden);
            qh_cuda_quant_stats sink;
            qh_cuda_quant_stats_get(be, &sink, 1);
            double *times = malloc(sizeof(double) * (size_t)reps);
            for (int r = 0; !rc && r < reps; r++) {
                double a = now();
                rc = qh_llama_forward(ctx, ids, lens, n, hidden);
                times[r] = now() - a;
            }
            if (rc) {
                printf("# %s, batch tokens %ld: %s\n", v->name, bt, qh_last_error());
                qh_llama_ctx_free(ctx);
                free(times);
                continue;
            }
            qh_cuda_memory(be, &live, &peak);
            size_t dev_used = 0;
            qh_cuda_device_memory(&dev_used, NULL);
            /* sanity: finite, non-constant hidden states */
            double sum = 0, sq = 0;
            for (size_t i = 0; i < (size_t)m->cfg.hidden_size * 4; i++) sum += hidden[i], sq += (double)hidden[i] * hidden[i];
            printf("# %s, batch tokens %ld: passes", v->name, bt);
            for (int r = 0; r < reps; r++) printf(" %.3f", times[r]);
            double med = median(times, reps);
            printf(" s (median %.3f); peak %.2f GB (backend), %.2f GB device-wide; hidden[0..3] rms %.3f%s\n", med,
                   peak / 1e9, dev_used / 1e9, sqrt(sq / (m->cfg.hidden_size * 4.0)), isfinite(sum) ? "" : " NOT FINITE");
            char when[64];
            snprintf(when, sizeof when, "%d passes", reps);
            print_quant_stats(be, when);
            fflush(stdout);
            row *R = &rows[n_rows++];
            snprintf(R->name, sizeof R->name, "qhead CUDA %s, --batch-tokens %ld", v->name, bt);
            R->time_s = med, R->peak_gb = peak / 1e9, R->device_gb = dev_used / 1e9, R->ok = isfinite(sum);
            R->fp16 = v->dtype == QH_F16;
            if (R->fp16 && (!fp16_best || med < fp16_best)) fp16_best = med;
            if (!best_time || med < best_time) best_time = med, best_bt = bt;
            free(times);
            qh_llama_ctx_free(ctx);
        }
        if (profile && best_bt) {
            char title[160];
            snprintf(title, sizeof title, "%s profile at --batch-tokens %ld, one pass", v->name, best_bt);
            if ((rc = profiled(be, m, (int)best_bt, ids, lens, n, hidden, title))) return qh_report(prog, rc);
            print_quant_stats(be, "profiled pass");
            fflush(stdout);
        }
        if (lat_reps > 0 && n_lat < 8) {
            qh_llama_ctx *ctx;
            if ((rc = qh_llama_ctx_create(m, qh_default_batch_tokens(m), &ctx))) return qh_report(prog, rc);
            qh_llama_ctx_set_graphs(ctx, !v->nograph);
            int32_t len = lat_len;
            double *times = malloc(sizeof(double) * (size_t)lat_reps);
            for (int r = 0; !rc && r < 3; r++) rc = qh_llama_forward(ctx, ids, &len, 1, hidden);
            qh_cuda_quant_stats sink;
            qh_cuda_quant_stats_get(be, &sink, 1);
            long rec0, rep0, rec1, rep1;
            qh_llama_ctx_graph_counts(ctx, &rec0, &rep0);
            for (int r = 0; !rc && r < lat_reps; r++) {
                double a = now();
                rc = qh_llama_forward(ctx, ids, &len, 1, hidden);
                times[r] = now() - a;
            }
            qh_llama_ctx_graph_counts(ctx, &rec1, &rep1);
            qh_llama_ctx_free(ctx);
            if (rc) return qh_report(prog, rc);
            if (profile) { /* one more call with per-op device times */
                char title[160];
                snprintf(title, sizeof title, "%s profile of one latency call", v->name);
                if ((rc = profiled(be, m, qh_default_batch_tokens(m), ids, &len, 1, hidden, title)))
                    return qh_report(prog, rc);
            }
            if (profile && (rc = linear_bench(be, m, lat_len, v->name, v->dtype == QH_NF4))) return qh_report(prog, rc);
            double med = median(times, lat_reps);
            printf("# %s, batch-1 latency of one %d-token sequence: median %.3f ms, min %.3f ms over %d calls\n", v->name,
                   lat_len, med * 1e3, times[0] * 1e3, lat_reps);
            printf("#   %ld of the %d calls replayed a recorded CUDA graph (%ld recorded in the warm-up)\n", rep1 - rep0,
                   lat_reps, rec0);
            print_quant_stats(be, rep1 > rep0 ? "latency calls, replays not counted" : "latency calls");
            snprintf(lat[n_lat].name, sizeof lat[n_lat].name, "%s", v->name);
            lat[n_lat].ms = med * 1e3, lat[n_lat].min_ms = times[0] * 1e3;
            lat[n_lat].weights_gb = weights_gb;
            n_lat++;
            free(times);
            fflush(stdout);
        }
        free(hidden);
        qh_llama_free(m);
        qh_backend_destroy(be);
    }
    free(wl);

    if (hf) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "python3 %s --lengths %s %s", hf, lengths_path, hf_args);
        hf_ctx hc = {rows, &n_rows};
        bench_run_script("transformers", cmd, hf_line, &hc);
    }
    double hf_best = 0;
    for (int i = 0; i < n_rows; i++)
        if (!strncmp(rows[i].name, "transformers", 12) && (!hf_best || rows[i].time_s < hf_best)) hf_best = rows[i].time_s;
    printf("\n| run | time (s) | tweets/s | tokens/s | useful TFLOP/s | peak GPU memory (GB) | vs best qhead fp16 | vs "
           "best transformers |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_rows; i++) {
        row *R = &rows[i];
        char ratio[32] = "", r16[32] = "";
        if (hf_best) snprintf(ratio, sizeof ratio, "%.2fx", hf_best / R->time_s);
        if (fp16_best && strncmp(R->name, "transformers", 12)) snprintf(r16, sizeof r16, "%.2fx", fp16_best / R->time_s);
        printf("| %s%s | %.3f | %.0f | %.0f | %.0f | %.2f (%s %.2f) | %s | %s |\n", R->name, R->ok ? "" : " (NaN!)",
               R->time_s, n / R->time_s, total / R->time_s, flops / R->time_s / 1e12, R->peak_gb,
               strncmp(R->name, "transformers", 12) ? "device" : "reserved", R->device_gb, r16, ratio);
    }
    if (n_lat) {
        double l16 = 0;
        for (int i = 0; i < n_lat; i++)
            if (!strcmp(lat[i].name, "fp16")) l16 = lat[i].ms;
        printf("\n| variant | batch-1 latency, %d tokens (ms, median) | min (ms) | weights (GB) | fp16 / this |\n", lat_len);
        printf("|---|---|---|---|---|\n");
        for (int i = 0; i < n_lat; i++) {
            char r[32] = "";
            if (l16) snprintf(r, sizeof r, "%.2fx", l16 / lat[i].ms);
            printf("| %s | %.3f | %.3f | %.2f | %s |\n", lat[i].name, lat[i].ms, lat[i].min_ms, lat[i].weights_gb, r);
        }
    }
    printf("\nfloors: %.4g FLOP / 798 TFLOP/s = %.2f s (int8 at 1596 TOPS: %.2f s); weights / 3 TB/s per pass over them\n",
           flops, flops / 798e12, flops / 1596e12);
    free(ids);
    free(lens);
    return 0;
}

#else

int main(void)
{
    fprintf(stderr, "bench_cuda_forward: this build of qhead has no CUDA support\n");
    return 2;
}

#endif
