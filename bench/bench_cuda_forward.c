/* bench_cuda_forward: the TweetEval-length workload through the CUDA backend, and (same
 * command) transformers on the same lengths, one table at the end.
 *
 *   bench_cuda_forward [--lengths FILE] [--batch-tokens N[,N...]] [--reps R] [--model DIR]
 *                      [--profile] [--gemm-sweep] [--hf SCRIPT] [--hf-args "ARGS"]
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
 * --profile: one more pass with per-op device times (CUDA events between ops).
 * --gemm-sweep: the 7B matrix-product shapes at the first batch size, every cuBLASLt
 *   heuristic candidate timed (is the first one, which the backend takes, the fastest?).
 * --hf SCRIPT: after freeing the GPU, runs `python3 SCRIPT --lengths FILE ARGS` (see
 *   bench/hf_llama_baseline.py), which prints one JSON line per variant, and adds them to the
 *   table with our ratio to the best. */
#include "backend.h"
#include "error.h"
#include "llama_model.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef QHEAD_HAVE_CUDA
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

static int random_model(qh_backend *be, qh_llama_model **out)
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
        if (!rc) rc = weight(be, &L->wq, qw, h, seed++, 0, sd);
        if (!rc) rc = weight(be, &L->wk, kw, h, seed++, 0, sd);
        if (!rc) rc = weight(be, &L->wv, kw, h, seed++, 0, sd);
        if (!rc) rc = weight(be, &L->wo, h, qw, seed++, 0, sd);
        if (!rc) rc = weight(be, &L->mlp_norm, h, 0, seed++, 1, 0);
        if (!rc) rc = weight(be, &L->w_gate, f, h, seed++, 0, sd);
        if (!rc) rc = weight(be, &L->w_up, f, h, seed++, 0, sd);
        if (!rc) rc = weight(be, &L->w_down, h, f, seed++, 0, sd);
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
    char name[96];
    double time_s, peak_gb, device_gb;
    int ok;
} row;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *lengths_path = "bench/tweeteval-lengths.json", *model_dir = NULL, *hf = NULL, *hf_args = "";
    const char *bt_list = "8192";
    int reps = 2, profile = 0, sweep = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--lengths") && more) lengths_path = argv[++i];
        else if (!strcmp(a, "--batch-tokens") && more) bt_list = argv[++i];
        else if (!strcmp(a, "--reps") && more) reps = atoi(argv[++i]);
        else if (!strcmp(a, "--model") && more) model_dir = argv[++i];
        else if (!strcmp(a, "--hf") && more) hf = argv[++i];
        else if (!strcmp(a, "--hf-args") && more) hf_args = argv[++i];
        else if (!strcmp(a, "--profile")) profile = 1;
        else if (!strcmp(a, "--gemm-sweep")) sweep = 1;
        else {
            fprintf(stderr, "%s: unknown or incomplete argument '%s' (see the comment at the top of the source)\n", prog, a);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    int32_t *lens = NULL;
    int n = 0, rc;
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

    qh_backend *be = NULL;
    qh_llama_model *m = NULL;
    if ((rc = qh_backend_create("cuda", &be))) return qh_report(prog, rc);
    printf("# device: %s\n", qh_cuda_device_name(be));
    double t0 = now();
    rc = model_dir ? qh_llama_load(model_dir, be, &m) : random_model(be, &m);
    if (!rc) rc = be->sync(be);
    if (rc) return qh_report(prog, rc);
    size_t live, peak;
    qh_cuda_memory(be, &live, &peak);
    double weights_gb = live / 1e9;
    printf("# model: %s, %.2f GB of weights on the GPU, ready in %.1f s\n", model_dir ? model_dir : "random 7B shape",
           weights_gb, now() - t0);
    double flop_tok = qh_llama_flops_per_token(&m->cfg);
    double flops = flop_tok * (double)total;
    printf("# matrix-product FLOPs: %.3g per token, %.4g in all -> floor %.2f s at 798 TFLOP/s\n", flop_tok, flops,
           flops / 798e12);

    if (sweep) {
        long bt = atol(bt_list);
        const int64_t shp[][3] = {{4096, 4096, 0}, {11008, 4096, 0}, {4096, 4096, 1}, {4096, 11008, 1},
                                  {12288, 4096, 0}, {22016, 4096, 0}};
        printf("# GEMM sweep at t = %ld (n, k; f32 C+= is the fused residual):\n", bt);
        for (size_t i = 0; i < sizeof shp / sizeof shp[0]; i++) {
            double first, best;
            rc = qh_cuda_gemm_bench(be, bt, shp[i][0], shp[i][1], (int)shp[i][2], 8, &first, &best);
            if (rc) return qh_report(prog, rc);
            printf("# GEMM t=%ld n=%lld k=%lld %s: heuristic first %.1f TFLOP/s, best %.1f\n", bt, (long long)shp[i][0],
                   (long long)shp[i][1], shp[i][2] ? "f32 C+=" : "f16", first, best);
        }
        fflush(stdout);
    }

    float *hidden = malloc(sizeof(float) * (size_t)n * m->cfg.hidden_size);
    row rows[16];
    int n_rows = 0;
    /* warm-up: n/20 sequences of 49..88 tokens */
    int n_warm = n / 20 > 0 ? n / 20 : 1;
    int32_t *wl = malloc(sizeof(int32_t) * (size_t)n_warm);
    for (int i = 0; i < n_warm; i++) wl[i] = 88 - i % 40 > max_len ? max_len : 88 - i % 40;
    double best_time = 0;
    long best_bt = 0;
    for (const char *p = bt_list; *p && n_rows < 12;) {
        long bt = strtol(p, (char **)&p, 10);
        if (*p == ',') p++;
        if (bt <= 0) break;
        qh_llama_ctx *ctx;
        if ((rc = qh_llama_ctx_create(m, (int)bt, &ctx))) return qh_report(prog, rc);
        qh_cuda_reset_peak(be);
        rc = qh_llama_forward(ctx, ids, wl, n_warm, hidden);
        double *times = malloc(sizeof(double) * (size_t)reps);
        for (int r = 0; !rc && r < reps; r++) {
            double a = now();
            rc = qh_llama_forward(ctx, ids, lens, n, hidden);
            times[r] = now() - a;
        }
        if (rc) {
            printf("# batch tokens %ld: %s\n", bt, qh_last_error());
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
        qsort(times, (size_t)reps, sizeof *times, cmp_double);
        double med = reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
        printf("# batch tokens %ld: passes", bt);
        for (int r = 0; r < reps; r++) printf(" %.3f", times[r]);
        printf(" s (median %.3f); peak %.2f GB (backend), %.2f GB device-wide; hidden[0..3] rms %.3f%s\n", med,
               peak / 1e9, dev_used / 1e9, sqrt(sq / (m->cfg.hidden_size * 4.0)), isfinite(sum) ? "" : " NOT FINITE");
        fflush(stdout);
        row *R = &rows[n_rows++];
        snprintf(R->name, sizeof R->name, "qhead CUDA, --batch-tokens %ld", bt);
        R->time_s = med, R->peak_gb = peak / 1e9, R->device_gb = dev_used / 1e9, R->ok = isfinite(sum);
        if (!best_time || med < best_time) best_time = med, best_bt = bt;
        free(times);
        qh_llama_ctx_free(ctx);
    }
    if (profile && best_bt) {
        qh_llama_ctx *ctx;
        if ((rc = qh_llama_ctx_create(m, (int)best_bt, &ctx))) return qh_report(prog, rc);
        qh_cuda_profile(be, 1);
        double a = now();
        rc = qh_llama_forward(ctx, ids, lens, n, hidden);
        double wall = now() - a;
        double ms[QH_CUDA_OP_COUNT], sum = 0;
        const char *names[QH_CUDA_OP_COUNT];
        qh_cuda_profile_read(be, ms, names);
        qh_cuda_profile(be, 0);
        qh_llama_ctx_free(ctx);
        if (rc) return qh_report(prog, rc);
        for (int i = 0; i < QH_CUDA_OP_COUNT; i++) sum += ms[i];
        printf("# profile at --batch-tokens %ld (one pass, %.3f s wall with event overhead):\n", best_bt, wall);
        for (int i = 0; i < QH_CUDA_OP_COUNT; i++)
            if (ms[i] != 0) printf("#   %-24s %9.1f ms  %5.1f%%\n", names[i], ms[i], 100 * ms[i] / sum);
        printf("#   %-24s %9.1f ms (wall %.1f ms)\n", "sum", sum, wall * 1e3);
        fflush(stdout);
    }
    free(hidden);
    free(wl);
    qh_llama_free(m);
    qh_backend_destroy(be);

    if (hf) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "python3 %s --lengths %s %s", hf, lengths_path, hf_args);
        printf("# transformers: %s\n", cmd);
        fflush(stdout);
        FILE *pp = popen(cmd, "r");
        char line[8192];
        while (pp && fgets(line, sizeof line, pp)) {
            fputs(line, stdout);
            cJSON *j = line[0] == '{' ? cJSON_Parse(line) : NULL;
            cJSON *nm = j ? cJSON_GetObjectItemCaseSensitive(j, "name") : NULL;
            cJSON *tm = j ? cJSON_GetObjectItemCaseSensitive(j, "time_s") : NULL;
            if (cJSON_IsString(nm) && cJSON_IsNumber(tm) && n_rows < 16) {
                row *R = &rows[n_rows++];
                snprintf(R->name, sizeof R->name, "transformers %s", nm->valuestring);
                R->time_s = tm->valuedouble;
                cJSON *pk = cJSON_GetObjectItemCaseSensitive(j, "peak_alloc_gb");
                cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "peak_reserved_gb");
                R->peak_gb = cJSON_IsNumber(pk) ? pk->valuedouble : 0;
                R->device_gb = cJSON_IsNumber(rs) ? rs->valuedouble : 0;
                R->ok = 1;
            }
            cJSON_Delete(j);
        }
        int st_ = pp ? pclose(pp) : -1;
        if (st_) printf("# transformers baseline exited with status %d\n", st_);
    }
    double hf_best = 0;
    for (int i = 0; i < n_rows; i++)
        if (!strncmp(rows[i].name, "transformers", 12) && (!hf_best || rows[i].time_s < hf_best)) hf_best = rows[i].time_s;
    printf("\n| run | time (s) | tweets/s | tokens/s | useful TFLOP/s | peak GPU memory (GB) | vs best transformers |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_rows; i++) {
        row *R = &rows[i];
        char ratio[32] = "";
        if (hf_best) snprintf(ratio, sizeof ratio, "%.2fx", hf_best / R->time_s);
        printf("| %s%s | %.3f | %.0f | %.0f | %.0f | %.2f (%s %.2f) | %s |\n", R->name, R->ok ? "" : " (NaN!)",
               R->time_s, n / R->time_s, total / R->time_s, flops / R->time_s / 1e12, R->peak_gb,
               strncmp(R->name, "transformers", 12) ? "device" : "reserved", R->device_gb, ratio);
    }
    printf("\nfloors: %.4g FLOP / 798 TFLOP/s = %.2f s; weights %.1f GB / 3 TB/s = %.1f ms per pass over them\n", flops,
           flops / 798e12, weights_gb, weights_gb / 3e3 * 1e3);
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
