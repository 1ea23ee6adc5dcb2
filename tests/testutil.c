#include "testutil.h"

#include "dtype.h"
#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

char *tu_mkdtemp(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/qhead-%s-XXXXXX", base, tag);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        abort();
    }
    return path;
}

void tu_rmtree(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", path);
}

char *tu_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

char *tu_write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char *p = tu_path(dir, name);
    FILE *fp = fopen(p, "wb");
    if (!fp || (len && fwrite(data, 1, len, fp) != len) || fclose(fp) != 0) {
        perror(p);
        abort();
    }
    return p;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return strdup("");
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, fp);
    buf[got] = '\0';
    fclose(fp);
    return buf;
}

int tu_run(const char *cmdline, char **out, char **err)
{
    char *dir = tu_mkdtemp("run");
    char *o = tu_path(dir, "stdout"), *e = tu_path(dir, "stderr");
    size_t n = strlen(cmdline) + strlen(o) + strlen(e) + 64;
    char *full = malloc(n);
    snprintf(full, n, "%s >'%s' 2>'%s' </dev/null", cmdline, o, e);
    int status = system(full);
    if (out) *out = slurp(o);
    if (err) *err = slurp(e);
    tu_rmtree(dir);
    free(full);
    free(o);
    free(e);
    free(dir);
    if (status == -1) return -1;
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        /* the shell reports a child killed by a signal as 128+N */
        return code > 128 ? -1 : code;
    }
    return -1;
}

int tu_count_lines(const char *s)
{
    int n = 0;
    const char *p = s;
    for (; *p; p++)
        if (*p == '\n') n++;
    if (p > s && p[-1] != '\n') n++;
    return n;
}

uint64_t tu_rand_u64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double tu_rand_uniform(uint64_t *state) { return (double)(tu_rand_u64(state) >> 11) * 0x1.0p-53; }

double tu_rand_normal(uint64_t *state)
{
    double u1 = tu_rand_uniform(state), u2 = tu_rand_uniform(state);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static const char *const task_words[3][4] = {{"awful", "terrible", "bad", "hate"},
                                             {"okay", "fine", "today", "normal"},
                                             {"great", "love", "good", "happy"}};
static const char *const task_filler[] = {"the", "a", "phone", "movie", "@user", "is", "was", "so", "really"};

void tu_write_sentiment_task(const char *dir, int n_train, int n_val, int n_test)
{
    char p[4200];
    snprintf(p, sizeof p, "mkdir -p '%s'", dir);
    if (tu_run(p, NULL, NULL) != 0) fail_msg("cannot create %s", dir);
    const char *mapping = "0\tnegative\n1\tneutral\n2\tpositive\n";
    free(tu_write_file(dir, "mapping.txt", mapping, strlen(mapping)));
    const char *splits[3] = {"train", "val", "test"};
    int sizes[3] = {n_train, n_val, n_test};
    uint64_t rng = 7;
    for (int s = 0; s < 3; s++) {
        if (!sizes[s]) continue;
        size_t tl = 0, ll = 0;
        char *text = malloc((size_t)sizes[s] * 96 + 1), *labels = malloc((size_t)sizes[s] * 3 + 1);
        for (int i = 0; i < sizes[s]; i++) {
            int y = (int)(tu_rand_u64(&rng) % 3);
            int nw = 2 + (int)(tu_rand_u64(&rng) % 6);
            for (int w = 0; w < nw; w++) tl += (size_t)sprintf(text + tl, "%s ", task_filler[tu_rand_u64(&rng) % 9]);
            tl += (size_t)sprintf(text + tl, "%s\n", task_words[y][tu_rand_u64(&rng) % 4]);
            if (tu_rand_uniform(&rng) < 0.1) y = (int)(tu_rand_u64(&rng) % 3);
            ll += (size_t)sprintf(labels + ll, "%d\n", y);
        }
        snprintf(p, sizeof p, "%s_text.txt", splits[s]);
        free(tu_write_file(dir, p, text, tl));
        snprintf(p, sizeof p, "%s_labels.txt", splits[s]);
        free(tu_write_file(dir, p, labels, ll));
        free(text);
        free(labels);
    }
}

/* ---- backend helpers ---- */

int tu_cpu_cuda_setup(void **state)
{
    tu_backends *b = calloc(1, sizeof *b);
    if (!b) return -1;
    if (qh_backend_create("cpu", &b->cpu) || qh_backend_create("cuda", &b->gpu)) {
        fprintf(stderr, "%s\n", qh_last_error());
        return -1;
    }
    *state = b;
    return 0;
}

int tu_cpu_cuda_teardown(void **state)
{
    tu_backends *b = *state;
    qh_backend_destroy(b->cpu);
    qh_backend_destroy(b->gpu);
    free(b);
    return 0;
}

float *tu_rand_f16_values(uint64_t *rng, size_t n, double scale)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        double x = tu_rand_normal(rng) * scale;
        v[i] = qh_f16_to_f32(qh_f32_to_f16((float)(x != 0 ? x : scale)));
    }
    return v;
}

qh_tensor tu_to_backend(qh_backend *be, const float *host, int64_t rows, int64_t cols, qh_dtype dt)
{
    static const float dummy[1] = {0};
    size_t n = (size_t)(rows * cols);
    qh_tensor t = qh_tensor_2d(dt, rows, cols);
    int rc;
    if (dt == QH_F32) {
        rc = be->upload(be, n ? (const void *)host : (const void *)dummy, &t);
    } else {
        uint16_t *h = malloc(2 * (n ? n : 1));
        assert_non_null(h);
        for (size_t i = 0; i < n; i++) h[i] = qh_f32_to_f16(host[i]);
        rc = be->upload(be, h, &t);
        free(h);
    }
    if (rc) fail_msg("upload failed (%d): %s", rc, qh_last_error());
    return t;
}

float *tu_from_backend(qh_backend *be, const qh_tensor *t)
{
    int64_t n = qh_tensor_numel(t);
    float *v = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    assert_non_null(v);
    int rc = be->download_f32(be, t, v);
    if (rc) fail_msg("download failed (%d): %s", rc, qh_last_error());
    return v;
}

const char *tu_fixtures(void)
{
    const char *e = getenv("QHEAD_FIXTURES");
#ifdef QHEAD_FIXTURES
    return e && *e ? e : QHEAD_FIXTURES;
#else
    return e && *e ? e : "tests/fixtures";
#endif
}

long tu_forward_pair_diff(qh_llama_ctx *a, qh_llama_ctx *b, int n_seqs, int len, int vocab, int h, uint64_t *rng)
{
    size_t n = (size_t)n_seqs * (size_t)len, nh = (size_t)n_seqs * (size_t)h;
    int32_t *ids = malloc(sizeof *ids * n), *lens = malloc(sizeof *lens * (size_t)n_seqs);
    float *ha = malloc(sizeof *ha * nh), *hb = malloc(sizeof *hb * nh);
    assert_true(ids && lens && ha && hb);
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(tu_rand_u64(rng) % (uint64_t)vocab);
    for (int s = 0; s < n_seqs; s++) lens[s] = len;
    if (qh_llama_forward(a, ids, lens, n_seqs, ha) || qh_llama_forward(b, ids, lens, n_seqs, hb))
        fail_msg("forward: %s", qh_last_error());
    long d = 0;
    for (size_t i = 0; i < nh; i++) d += memcmp(&ha[i], &hb[i], sizeof(float)) != 0;
    free(ids), free(lens), free(ha), free(hb);
    return d;
}

void tu_graph_step(qh_llama_ctx *on, qh_llama_ctx *off, const qh_llama_model *m, int n_seqs, int len, uint64_t *rng,
                   long want_recorded, long want_replayed)
{
    long d = tu_forward_pair_diff(on, off, n_seqs, len, m->cfg.vocab_size, m->cfg.hidden_size, rng), rec, rep;
    qh_llama_ctx_graph_counts(on, &rec, &rep);
    printf("#   %d x %d tokens: %ld hidden values differ; %ld recorded, %ld replayed so far\n", n_seqs, len, d, rec, rep);
    assert_int_equal(d, 0);
    assert_int_equal(rec, want_recorded);
    assert_int_equal(rep, want_replayed);
}
