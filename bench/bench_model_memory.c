/* bench_model_memory: how much memory opening a checkpoint really costs.
 *
 *   bench_model_memory MODEL_DIR [N_TOKENS]
 *
 * Prints VmRSS split into anonymous memory (what the process allocated: the real cost) and
 * file-backed memory (pages of the memory-mapped weights, page cache the kernel can drop),
 * after loading and after one forward pass of N_TOKENS tokens on the CPU backend. */
#include "backend.h"

#include "clock.h"
#include "error.h"
#include "llama_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long status_kb(const char *key)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fp && fgets(line, sizeof line, fp))
        if (!strncmp(line, key, n) && line[n] == ':') v = atol(line + n + 1);
    if (fp) fclose(fp);
    return v;
}

static void report(const char *when, double seconds)
{
    printf("%-22s %8.2f s   RSS %8.1f MB   anonymous %8.1f MB   file-backed %8.1f MB   peak RSS %8.1f MB\n", when,
           seconds, status_kb("VmRSS") / 1024.0, status_kb("RssAnon") / 1024.0, status_kb("RssFile") / 1024.0,
           status_kb("VmHWM") / 1024.0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_model_memory MODEL_DIR [N_TOKENS]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 8;
    if (n < 1) n = 1;
    qh_backend *be;
    qh_llama_model *m;
    qh_llama_ctx *ctx;
    report("start", 0);
    double t0 = qh_now_s();
    int rc = qh_backend_create("cpu", &be);
    if (!rc) rc = qh_llama_load(argv[1], be, &m);
    if (rc) return qh_report("bench_model_memory", rc);
    report("after load", qh_now_s() - t0);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++) ids[i] = (i * 7919 + 1) % m->cfg.vocab_size;
    float *hidden = malloc(sizeof(float) * (size_t)m->cfg.hidden_size);
    t0 = qh_now_s();
    rc = qh_llama_ctx_create(m, n, &ctx);
    if (!rc) rc = qh_llama_forward(ctx, ids, &n, 1, hidden);
    if (rc) return qh_report("bench_model_memory", rc);
    report("after forward", qh_now_s() - t0);
    long long bytes = 0;
    for (size_t i = 0; i < m->ckpt->n_shards; i++) bytes += (long long)m->ckpt->shards[i]->map_size;
    printf("checkpoint: %zu shard(s), %.2f GB on disk; %d tokens; hidden[0] = %g\n", m->ckpt->n_shards, bytes / 1e9, n,
           hidden[0]);
    qh_llama_ctx_free(ctx);
    qh_llama_free(m);
    qh_backend_destroy(be);
    free(ids);
    free(hidden);
    return 0;
}
