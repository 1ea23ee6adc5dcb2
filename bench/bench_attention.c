/* bench_attention: qhead's attention kernels on the shapes of a TweetEval micro-batch, and (same
 * command) PyTorch's scaled_dot_product_attention backends, cuDNN's fused attention among them,
 * on the same shapes: the measurement behind the choice of kernel in core/cuda/cuda_attention.cu.
 *
 *   bench_attention [--tokens N] [--lens L,L,...] [--reps R] [--heads H] [--head-dim D]
 *                   [--torch SCRIPT]
 *
 * For each length L (default 16,30,48,64,88: TweetEval's median is 30, p99 57, max 88): N / L
 * sequences of L tokens packed as the model packs them (N default 12288, the GPU's micro-batch),
 * then one sequence (batch 1); H heads (default 32) of D dims (default 128), random q, k, v
 * (fp16, normal(0, 1)). Device time per call with CUDA events (the backend's op profile) over R
 * back-to-back calls (default 50) after 3 warm-up calls, of:
 *  - fused: rope_attention, the rotary embedding applied inside the tensor-core kernel (what the
 *    model runs);
 *  - rope + attention: a rotary pass of its own, then the kernel without rotation: what any
 *    fused attention that cannot rotate (cuDNN's) needs;
 *  - simple: the one-warp-per-row reference kernel, rotary fused.
 * floor: q, k, v read and the output written once, at 3 TB/s; a rotary pass of its own reads
 * and writes q and k, as many bytes again.
 * --torch SCRIPT: runs `python3 SCRIPT --tokens N --lens ... --heads H --head-dim D --reps R`
 * (bench/torch_sdpa_attention.py: causal SDPA per backend on [batch, H, L, D] views of the same
 * token-major layout) and adds its microseconds per call as columns, and cuDNN's plus a rotary
 * pass at its floor: the least the model would pay with cuDNN's attention (our own rotary pass
 * is not tuned: the model never runs it on the GPU). */
#include "backend.h"
#include "error.h"

#include <stdio.h>

#ifdef QHEAD_HAVE_CUDA
#include "bench_script.h"
#include "cuda/qh_cuda.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "bench_attention";

enum { MAX_LENS = 16, N_TORCH = 3 };
static const char *torch_names[N_TORCH] = {"cudnn", "flash", "efficient"};

typedef struct {
    int len, batch;
    double fused_us, rope_us, attn_us, simple_us, floor_us;
    double torch_us[N_TORCH]; /* 0: not run; < 0: the backend refused the shape */
} result;

typedef int (*bench_fn)(qh_backend *be, void *ctx);

/* Device microseconds per call, per op kind, over `reps` back-to-back calls of fn. */
static int time_ops(qh_backend *be, bench_fn fn, void *ctx, int reps, double us[QH_CUDA_OP_COUNT])
{
    int rc = QH_OK;
    for (int i = 0; i < 3 && !rc; i++) rc = fn(be, ctx);
    if (!rc) rc = be->sync(be);
    if (rc) return rc;
    qh_cuda_profile(be, 1);
    for (int i = 0; i < reps && !rc; i++) rc = fn(be, ctx);
    double ms[QH_CUDA_OP_COUNT];
    const char *names[QH_CUDA_OP_COUNT];
    qh_cuda_profile_read(be, ms, names);
    qh_cuda_profile(be, 0);
    for (int i = 0; i < QH_CUDA_OP_COUNT; i++) us[i] = ms[i] * 1e3 / reps;
    return rc;
}

typedef struct {
    qh_tensor q, k, v, out;
    qh_batch b;
    int heads, hd;
} attn_case;

static int run_fused(qh_backend *be, void *p)
{
    attn_case *c = p;
    return be->rope_attention(be, &c->q, &c->k, &c->v, &c->out, &c->b, c->heads, c->heads, c->hd, 10000.0);
}

/* The rotary pass rotates q and k in place again each call (a rotation keeps their size; only
 * the cost matters here). */
static int run_separate(qh_backend *be, void *p)
{
    attn_case *c = p;
    int rc = be->rope(be, &c->q, &c->k, &c->b.positions, c->hd, 10000.0);
    return rc ? rc : be->attention(be, &c->q, &c->k, &c->v, &c->out, &c->b, c->heads, c->heads, c->hd);
}

static int measure(qh_backend *be, int len, int n_seqs, int heads, int hd, int reps, result *r)
{
    attn_case c;
    memset(&c, 0, sizeof c);
    c.heads = heads, c.hd = hd;
    const int64_t t = (int64_t)len * n_seqs, w = (int64_t)heads * hd;
    int32_t *starts = malloc(sizeof(int32_t) * (size_t)(n_seqs + 1)), *pos = malloc(sizeof(int32_t) * (size_t)t);
    if (!starts || !pos) {
        free(starts), free(pos);
        return qh_fail(QH_ESYS, "out of host memory");
    }
    for (int s = 0; s <= n_seqs; s++) starts[s] = s * len;
    for (int64_t i = 0; i < t; i++) pos[i] = (int32_t)(i % len);
    c.b.n_seqs = n_seqs, c.b.n_tokens = (int)t, c.b.max_len = len, c.b.host_starts = starts;
    c.b.starts = qh_tensor_1d(QH_I32, n_seqs + 1), c.b.positions = qh_tensor_1d(QH_I32, t);
    c.q = qh_tensor_2d(QH_F16, t, w), c.k = c.q, c.v = c.q, c.out = c.q;
    int rc = be->upload(be, starts, &c.b.starts);
    if (!rc) rc = be->upload(be, pos, &c.b.positions);
    qh_tensor *ts[4] = {&c.q, &c.k, &c.v, &c.out};
    for (int i = 0; i < 4 && !rc; i++) rc = be->alloc(be, ts[i]);
    for (int i = 0; i < 3 && !rc; i++) rc = qh_cuda_fill(be, ts[i], 1000 + (uint64_t)i, 0.f, 1.f);
    double us[QH_CUDA_OP_COUNT];
    r->len = len, r->batch = n_seqs;
    /* q, k, v in and the output out; a rotary pass (q and k in and out) moves as many bytes, as
     * kv heads = heads here */
    r->floor_us = 4.0 * (double)t * (double)w * 2 / 3e12 * 1e6;
    if (!rc) rc = time_ops(be, run_fused, &c, reps, us);
    if (!rc) r->fused_us = us[QH_CUDA_OP_ATTENTION];
    if (!rc) rc = time_ops(be, run_separate, &c, reps, us);
    if (!rc) r->rope_us = us[QH_CUDA_OP_ROPE], r->attn_us = us[QH_CUDA_OP_ATTENTION];
    if (!rc) {
        qh_cuda_set_attention(be, QH_CUDA_ATTN_SIMPLE);
        rc = time_ops(be, run_fused, &c, reps, us);
        qh_cuda_set_attention(be, QH_CUDA_ATTN_TC);
        if (!rc) r->simple_us = us[QH_CUDA_OP_ATTENTION];
    }
    for (int i = 0; i < 4; i++) be->release(be, ts[i]);
    be->release(be, &c.b.starts), be->release(be, &c.b.positions);
    free(starts), free(pos);
    return rc;
}

typedef struct {
    result *res;
    int n;
} torch_ctx;

/* One line of the --torch script: its microseconds go to the result of the same (len, batch). */
static void torch_line(const cJSON *j, void *p)
{
    torch_ctx *c = p;
    const cJSON *bn = cJSON_GetObjectItemCaseSensitive(j, "backend"), *ln = cJSON_GetObjectItemCaseSensitive(j, "len");
    const cJSON *bt = cJSON_GetObjectItemCaseSensitive(j, "batch"), *us = cJSON_GetObjectItemCaseSensitive(j, "us");
    if (!cJSON_IsString(bn) || !cJSON_IsNumber(ln) || !cJSON_IsNumber(bt)) return;
    for (int i = 0; i < c->n; i++) {
        if (c->res[i].len != ln->valueint || c->res[i].batch != bt->valueint) continue;
        for (int b = 0; b < N_TORCH; b++)
            if (!strcmp(bn->valuestring, torch_names[b])) c->res[i].torch_us[b] = cJSON_IsNumber(us) ? us->valuedouble : -1;
    }
}

int main(int argc, char **argv)
{
    const char *lens_arg = "16,30,48,64,88", *torch_script = NULL;
    int tokens = 12288, reps = 50, heads = 32, hd = 128;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--tokens") && more) tokens = atoi(argv[++i]);
        else if (!strcmp(a, "--lens") && more) lens_arg = argv[++i];
        else if (!strcmp(a, "--reps") && more) reps = atoi(argv[++i]);
        else if (!strcmp(a, "--heads") && more) heads = atoi(argv[++i]);
        else if (!strcmp(a, "--head-dim") && more) hd = atoi(argv[++i]);
        else if (!strcmp(a, "--torch") && more) torch_script = argv[++i];
        else {
            fprintf(stderr, "%s: unknown or incomplete argument '%s' (see the comment at the top of the source)\n", prog, a);
            return 2;
        }
    }
    int lens[MAX_LENS], n_lens = 0;
    for (const char *p = lens_arg; *p && n_lens < MAX_LENS;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 4096 || (*end && *end != ',')) {
            fprintf(stderr, "%s: --lens: '%s' is not a list of lengths 1..4096\n", prog, lens_arg);
            return 2;
        }
        lens[n_lens++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (tokens < 1 || reps < 1 || heads < 1 || hd < 2 || hd > 256 || hd % 2) {
        fprintf(stderr, "%s: --tokens, --reps and --heads must be positive, --head-dim even and at most 256\n", prog);
        return 2;
    }
    qh_backend *be;
    int rc = qh_backend_create("cuda", &be);
    if (rc) return qh_report(prog, rc);
    printf("# device: %s; %d heads of %d dims, %d tokens a micro-batch, %d calls each\n", qh_cuda_device_name(be),
           heads, hd, tokens, reps);
    result res[2 * MAX_LENS];
    int n_res = 0;
    for (int i = 0; i < n_lens && !rc; i++) {
        int batches[2] = {tokens / lens[i] > 0 ? tokens / lens[i] : 1, 1};
        for (int j = 0; j < 2 && !rc; j++) {
            memset(&res[n_res], 0, sizeof res[n_res]);
            rc = measure(be, lens[i], batches[j], heads, hd, reps, &res[n_res]);
            if (!rc) n_res++;
        }
    }
    qh_backend_destroy(be);
    if (rc) return qh_report(prog, rc);
    if (torch_script) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "python3 %s --tokens %d --lens %s --heads %d --head-dim %d --reps %d", torch_script,
                 tokens, lens_arg, heads, hd, reps);
        torch_ctx tc = {res, n_res};
        bench_run_script("torch", cmd, torch_line, &tc);
    }
    printf("\n| len | seqs | fused (us) | rope + attention (us) | simple (us) | floor (us) | torch cuDNN | cuDNN + "
           "rope at its floor | torch flash | torch efficient |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_res; i++) {
        const result *r = &res[i];
        char tcol[N_TORCH][32], plus[32] = "";
        for (int b = 0; b < N_TORCH; b++) {
            if (r->torch_us[b] > 0) snprintf(tcol[b], sizeof tcol[b], "%.1f", r->torch_us[b]);
            else snprintf(tcol[b], sizeof tcol[b], "%s", r->torch_us[b] < 0 ? "refused" : "");
        }
        if (r->torch_us[0] > 0) snprintf(plus, sizeof plus, "%.1f", r->torch_us[0] + r->floor_us);
        printf("| %d | %d | %.1f | %.1f + %.1f | %.1f | %.1f | %s | %s | %s | %s |\n", r->len, r->batch, r->fused_us,
               r->rope_us, r->attn_us, r->simple_us, r->floor_us, tcol[0], plus, tcol[1], tcol[2]);
    }
    return 0;
}

#else

int main(void)
{
    fprintf(stderr, "bench_attention: this build of qhead has no CUDA support\n");
    return 2;
}

#endif
