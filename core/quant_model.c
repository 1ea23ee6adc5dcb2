/* Quantized backbone files: writing them (the streaming quantizer) and reading them back. */
#include "quant_model.h"

#include "error.h"
#include "fileio.h"
#include "quant.h"
#include "safetensors_write.h"
#include "sha256.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void qh_quant_default_path(const char *variant, char *buf, size_t size)
{
    snprintf(buf, size, "checkpoints/backbone-%s.safetensors", variant);
}

static int config_sha256(const char *dir, char hex[65])
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = NULL;
    size_t len = 0;
    int rc = qh_read_file(path, 16u << 20, &text, &len);
    if (rc) return rc;
    uint8_t d[32];
    qh_sha256(text, len, d);
    qh_sha256_hex(d, hex);
    free(text);
    return QH_OK;
}

/* ---- reading ---------------------------------------------------------------------------- */

static int meta_long(const qh_safetensors *st, const char *key, long lo, long hi, long *out)
{
    const char *v = qh_st_meta(st, key);
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || end == v || *end || errno || x < lo || x > hi)
        return qh_fail(QH_EINPUT, "%s: metadata '%s' is %s%s%s, expected an integer in [%ld, %ld]", st->path, key,
                       v ? "'" : "", v ? v : "missing", v ? "'" : "", lo, hi);
    *out = x;
    return QH_OK;
}

static int read_format(const qh_safetensors *st, qh_quant_format *f)
{
    const char *fm = qh_st_meta(st, "format");
    if (!fm || (strcmp(fm, "int8") != 0 && strcmp(fm, "nf4") != 0))
        return qh_fail(QH_EINPUT, "%s: not a quantized backbone from quantize (metadata 'format' is %s%s%s)", st->path,
                       fm ? "'" : "", fm ? fm : "missing", fm ? "'" : "");
    long version;
    int rc = meta_long(st, "format_version", 1, 1, &version);
    if (rc) return rc;
    snprintf(f->variant, sizeof f->variant, "%s", fm);
    f->quantized = 1;
    const char *fp = qh_st_meta(st, "source_fingerprint");
    snprintf(f->source_fingerprint, sizeof f->source_fingerprint, "%s", fp ? fp : "");
    if (!strcmp(fm, "int8")) {
        f->dtype = QH_I8;
        const char *t = qh_st_meta(st, "threshold");
        char *end = NULL;
        double thr = t ? strtod(t, &end) : NAN;
        if (!t || end == t || *end || !(thr >= 0 && thr < 1e30))
            return qh_fail(QH_EINPUT, "%s: metadata 'threshold' is %s, expected a number >= 0", st->path, t ? t : "missing");
        f->threshold = (float)thr;
        return QH_OK;
    }
    f->dtype = QH_NF4;
    long bs;
    if ((rc = meta_long(st, "blocksize", 2, 1 << 20, &bs))) return rc;
    if (bs % 2) return qh_fail(QH_EINPUT, "%s: metadata 'blocksize' %ld is odd", st->path, bs);
    f->blocksize = (int)bs;
    const char *dq = qh_st_meta(st, "double_quant");
    if (!dq || (strcmp(dq, "true") != 0 && strcmp(dq, "false") != 0))
        return qh_fail(QH_EINPUT, "%s: metadata 'double_quant' is %s, expected true or false", st->path, dq ? dq : "missing");
    f->double_quant = !strcmp(dq, "true");
    return QH_OK;
}

int qh_quant_open(const char *dir, const char *variant, const char *file, qh_checkpoint **ck, qh_quant_format *fmt)
{
    *ck = NULL;
    memset(fmt, 0, sizeof *fmt);
    if (!variant) variant = "fp16";
    if (!strcmp(variant, "fp16")) {
        if (file) return qh_fail(QH_EINPUT, "%s: a quantized backbone goes with variant int8 or nf4, not fp16", file);
        snprintf(fmt->variant, sizeof fmt->variant, "fp16");
        return qh_checkpoint_open(dir, ck);
    }
    if (strcmp(variant, "int8") != 0 && strcmp(variant, "nf4") != 0)
        return qh_fail(QH_EINPUT, "variant '%s': expected fp16, int8 or nf4", variant);
    char def[256];
    if (!file) {
        qh_quant_default_path(variant, def, sizeof def);
        file = def;
    }
    if (!qh_path_exists(file))
        return qh_fail(QH_EINPUT, "%s: no such file (make it with: quantize --bits %d --model %s --out %s)", file,
                       strcmp(variant, "int8") ? 4 : 8, dir, file);
    int rc = qh_checkpoint_open_file(dir, file, ck);
    if (!rc) rc = read_format((*ck)->shards[0], fmt);
    if (!rc && strcmp(fmt->variant, variant) != 0)
        rc = qh_fail(QH_EINPUT, "%s: holds %s weights, not %s", file, fmt->variant, variant);
    char hex[65];
    if (!rc) rc = config_sha256(dir, hex);
    const char *want = rc ? NULL : qh_st_meta((*ck)->shards[0], "config_sha256");
    if (!rc && (!want || strcmp(want, hex) != 0))
        rc = qh_fail(QH_EINPUT, "%s: was quantized with a different config.json than %s/config.json; run quantize again",
                     file, dir);
    if (rc) {
        qh_checkpoint_close(*ck);
        *ck = NULL;
    }
    return rc;
}

/* Tensor `name` of st, which must have dtype dt and shape [d0] or [d0, d1] (d1 > 0). */
static int find_exact(const qh_safetensors *st, const char *name, qh_dtype dt, int64_t d0, int64_t d1, void **data)
{
    const qh_st_tensor *t = qh_st_find(st, name);
    if (!t) return qh_fail(QH_EINPUT, "%s: tensor '%s' is missing", st->path, name);
    int ndim = d1 > 0 ? 2 : 1;
    if (t->dtype != dt || t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        int64_t want_shape[2] = {d0, d1};
        qh_tensor got = qh_tensor_desc(t->dtype, t->ndim > QH_MAX_DIMS ? QH_MAX_DIMS : t->ndim, t->shape);
        qh_tensor want = qh_tensor_desc(dt, ndim, want_shape);
        char a[96], b[96];
        return qh_fail(QH_EINPUT, "%s: tensor '%s' is %s %s, expected %s %s", st->path, name, qh_dtype_name(t->dtype),
                       qh_shape_str(&got, a, sizeof a), qh_dtype_name(dt), qh_shape_str(&want, b, sizeof b));
    }
    const void *p = qh_st_data(st, t);
    if ((uintptr_t)p % qh_dtype_size(dt))
        return qh_fail(QH_EINPUT, "%s: tensor '%s' is not aligned to its %zu-byte elements", st->path, name,
                       qh_dtype_size(dt));
    *data = (void *)p;
    return QH_OK;
}

int qh_quant_weight(const qh_checkpoint *ck, const qh_quant_format *fmt, const char *name, int64_t rows, int64_t cols,
                    qh_tensor *out)
{
    const qh_safetensors *st = ck->shards[0];
    size_t len = strlen(name);
    if (len < 8 || strcmp(name + len - 7, ".weight") != 0 || len > 256)
        return qh_fail(QH_ESYS, "quantized weight name '%s' does not end in .weight", name);
    char aux[300];
    void *codes = NULL, *p = NULL;
    *out = qh_tensor_2d(fmt->dtype, rows, cols);
    out->device = QH_DEVICE_CPU;
    int rc;
    if (fmt->dtype == QH_I8) {
        snprintf(aux, sizeof aux, "%.*s.SCB", (int)(len - 7), name);
        if ((rc = find_exact(st, name, QH_I8, rows, cols, &codes)) || (rc = find_exact(st, aux, QH_F32, rows, 0, &p)))
            return rc;
        out->quant.scale = p;
        out->quant.threshold = fmt->threshold;
    } else {
        if (cols % 2) return qh_fail(QH_EINPUT, "%s: tensor '%s' has an odd row length %lld", st->path, name, (long long)cols);
        int64_t nb = (rows * cols + fmt->blocksize - 1) / fmt->blocksize;
        if ((rc = find_exact(st, name, QH_U8, rows, cols / 2, &codes))) return rc;
        snprintf(aux, sizeof aux, "%s.absmax", name);
        if ((rc = find_exact(st, aux, fmt->double_quant ? QH_I8 : QH_F32, nb, 0, &p))) return rc;
        if (fmt->double_quant) {
            out->quant.qabsmax = p;
            snprintf(aux, sizeof aux, "%s.nested_absmax", name);
            int64_t nn = (nb + QH_NF4_NESTED_BLOCK - 1) / QH_NF4_NESTED_BLOCK;
            if ((rc = find_exact(st, aux, QH_F32, nn, 0, &p))) return rc;
            out->quant.nested_absmax = p;
            snprintf(aux, sizeof aux, "%s.nested_offset", name);
            if ((rc = find_exact(st, aux, QH_F32, 1, 0, &p))) return rc;
            out->quant.nested_offset = *(const float *)p;
        } else {
            out->quant.scale = p;
        }
        out->quant.blocksize = fmt->blocksize;
    }
    out->data = codes;
    return QH_OK;
}

/* ---- writing ---------------------------------------------------------------------------- */

typedef struct {
    char name[160]; /* name in the output file (the source's without a bare LlamaModel's missing prefix) */
    const qh_safetensors *st;
    const qh_st_tensor *src;
    qh_tensor view;
    int quantize;
} job;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Tell the kernel about a range of the source map: WILLNEED to read ahead, DONTNEED to drop
 * pages already used from this process (they stay in the page cache). */
static void advise(const qh_tensor *v, int advice)
{
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t b = (uintptr_t)v->data & ~(uintptr_t)(pg - 1), e = (uintptr_t)v->data + qh_tensor_nbytes(v);
    if (pg > 0 && e > b) (void)madvise((void *)b, e - b, advice);
}

enum { SHAPE_H, SHAPE_F, SHAPE_Q, SHAPE_KV, SHAPE_NONE };

static int add_job(qh_checkpoint *ck, job *jobs, size_t *n, const char *name, int64_t rows, int64_t cols, int quantize)
{
    job *j = &jobs[(*n)++];
    char full[200];
    snprintf(full, sizeof full, "%s%s", strcmp(name, "score.weight") ? ck->prefix : "", name);
    snprintf(j->name, sizeof j->name, "%s%s", strncmp(name, "score.", 6) ? "model." : "", name);
    j->quantize = quantize;
    j->src = qh_checkpoint_find(ck, full, &j->st);
    return qh_checkpoint_weight(ck, full, rows, cols, &j->view);
}

/* Every tensor the forward pass reads, in checkpoint order; the layers' matrices quantized. */
static int list_jobs(qh_checkpoint *ck, job **out, size_t *n)
{
    const qh_llama_config *c = &ck->cfg;
    *n = 0;
    *out = calloc((size_t)c->num_layers * 9 + 3, sizeof **out);
    if (!*out) return qh_fail(QH_ESYS, "out of memory");
    int64_t dims[] = {[SHAPE_H] = c->hidden_size, [SHAPE_F] = c->intermediate_size,
                      [SHAPE_Q] = (int64_t)c->num_heads * c->head_dim, [SHAPE_KV] = (int64_t)c->num_kv_heads * c->head_dim,
                      [SHAPE_NONE] = 0};
    static const struct {
        const char *suffix;
        int rows, cols;
    } layer[] = {{"input_layernorm.weight", SHAPE_H, SHAPE_NONE},  {"self_attn.q_proj.weight", SHAPE_Q, SHAPE_H},
                 {"self_attn.k_proj.weight", SHAPE_KV, SHAPE_H},   {"self_attn.v_proj.weight", SHAPE_KV, SHAPE_H},
                 {"self_attn.o_proj.weight", SHAPE_H, SHAPE_Q},    {"post_attention_layernorm.weight", SHAPE_H, SHAPE_NONE},
                 {"mlp.gate_proj.weight", SHAPE_F, SHAPE_H},       {"mlp.up_proj.weight", SHAPE_F, SHAPE_H},
                 {"mlp.down_proj.weight", SHAPE_H, SHAPE_F}};
    int rc = add_job(ck, *out, n, "embed_tokens.weight", c->vocab_size, c->hidden_size, 0);
    char name[160];
    for (int l = 0; !rc && l < c->num_layers; l++)
        for (size_t i = 0; !rc && i < sizeof layer / sizeof *layer; i++) {
            snprintf(name, sizeof name, "layers.%d.%s", l, layer[i].suffix);
            rc = add_job(ck, *out, n, name, dims[layer[i].rows], dims[layer[i].cols], layer[i].cols != SHAPE_NONE);
        }
    if (!rc) rc = add_job(ck, *out, n, "norm.weight", c->hidden_size, 0, 0);
    const qh_safetensors *st;
    const qh_st_tensor *score = rc ? NULL : qh_checkpoint_find(ck, "score.weight", &st);
    if (score && score->ndim != 2) rc = qh_fail(QH_EINPUT, "%s: score.weight is %d-D, must be 2-D", st->path, score->ndim);
    else if (score) rc = add_job(ck, *out, n, "score.weight", score->shape[0], c->hidden_size, 0);
    return rc;
}

typedef struct {
    qh_st_writer *w;
    uint64_t offset; /* of the next declared tensor in the data section */
} layout;

static int declare(layout *lo, const char *name, qh_dtype dt, int ndim, int64_t d0, int64_t d1)
{
    size_t es = qh_dtype_size(dt);
    if (lo->offset % es)
        return qh_fail(QH_EINPUT, "tensor '%s' would start at data byte %llu, not aligned to its %zu-byte elements "
                       "(unsupported shape)", name, (unsigned long long)lo->offset, es);
    int64_t shape[2] = {d0, d1};
    lo->offset += es * (uint64_t)d0 * (uint64_t)(ndim == 2 ? d1 : 1);
    return qh_st_writer_declare(lo->w, name, dt, ndim, shape);
}

static int declare_job(layout *lo, const qh_quantize_opts *o, const job *j)
{
    const qh_tensor *v = &j->view;
    if (!j->quantize) return declare(lo, j->name, v->dtype, v->ndim, v->shape[0], v->ndim == 2 ? v->shape[1] : 0);
    int64_t rows = v->shape[0], cols = v->shape[1];
    char aux[200];
    size_t base = strlen(j->name) - strlen(".weight");
    if (o->bits == 8) {
        snprintf(aux, sizeof aux, "%.*s.SCB", (int)base, j->name);
        int rc = declare(lo, j->name, QH_I8, 2, rows, cols);
        return rc ? rc : declare(lo, aux, QH_F32, 1, rows, 0);
    }
    if (cols % 2)
        return qh_fail(QH_EINPUT, "%s: tensor '%s' has an odd row length %lld; nf4 needs an even one", j->st->path,
                       j->name, (long long)cols);
    int64_t nb = (rows * cols + o->blocksize - 1) / o->blocksize;
    int rc = declare(lo, j->name, QH_U8, 2, rows, cols / 2);
    snprintf(aux, sizeof aux, "%s.absmax", j->name);
    if (!rc) rc = declare(lo, aux, o->double_quant ? QH_I8 : QH_F32, 1, nb, 0);
    if (!rc && o->double_quant) {
        snprintf(aux, sizeof aux, "%s.nested_absmax", j->name);
        rc = declare(lo, aux, QH_F32, 1, (nb + QH_NF4_NESTED_BLOCK - 1) / QH_NF4_NESTED_BLOCK, 0);
        snprintf(aux, sizeof aux, "%s.nested_offset", j->name);
        if (!rc) rc = declare(lo, aux, QH_F32, 1, 1, 0);
    }
    return rc;
}

static int nonfinite_error(const job *j, int64_t at)
{
    int64_t cols = j->view.ndim == 2 ? j->view.shape[1] : qh_tensor_numel(&j->view);
    return qh_fail(QH_EINPUT, "%s: tensor '%s' has a NaN or infinite value at [%lld, %lld]; refusing to quantize",
                   j->st->path, j->src->name, (long long)(at / cols), (long long)(at % cols));
}

/* Squared Frobenius norms of deq(q) - src and of src, OpenMP over chunks of the flat array. */
static void matrix_error(const qh_tensor *q, const qh_tensor *src, double *num, double *den)
{
    enum { CH = 1024 };
    int64_t n = qh_tensor_numel(src), chunks = (n + CH - 1) / CH;
    size_t es = qh_dtype_size(src->dtype);
    double a = 0, b = 0;
#pragma omp parallel for schedule(static) reduction(+ : a, b)
    for (int64_t ch = 0; ch < chunks; ch++) {
        float dq[CH], ref[CH];
        int64_t i0 = ch * CH, m = n - i0 < CH ? n - i0 : CH;
        qh_quant_dequantize(q, i0, m, dq);
        qh_convert_to_f32(src->dtype, (const char *)src->data + (size_t)i0 * es, ref, (size_t)m);
        for (int64_t i = 0; i < m; i++) {
            double d = (double)dq[i] - (double)ref[i];
            a += d * d;
            b += (double)ref[i] * (double)ref[i];
        }
    }
    *num = a;
    *den = b;
}

/* ---- the writer thread: writing (a copy into the page cache, serial) overlaps quantizing
 * the next matrix. One item is in flight at a time; quantized matrices alternate between two
 * buffer sets, so the one being written is never the one being filled. */

typedef struct {
    const void *ptr[4];
    size_t len[4];
    int n;
    qh_tensor drop; /* source range whose pages to drop once written (copied tensors); data NULL: none */
} write_item;

typedef struct {
    qh_st_writer *w;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    write_item item;
    int pending, quit, started;
    int rc;         /* first failure of the thread */
    char msg[1024]; /* its message (qh_fail's is thread-local) */
} pipe_writer;

static void *writer_main(void *arg)
{
    pipe_writer *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->pending && !p->quit) pthread_cond_wait(&p->cv, &p->mu);
        if (!p->pending) break;
        write_item it = p->item;
        int failed = p->rc;
        pthread_mutex_unlock(&p->mu);
        int rc = QH_OK;
        for (int i = 0; !failed && !rc && i < it.n; i++) rc = qh_st_writer_write(p->w, it.ptr[i], it.len[i]);
        if (it.drop.data) advise(&it.drop, MADV_DONTNEED);
        pthread_mutex_lock(&p->mu);
        if (rc && !p->rc) {
            p->rc = rc;
            snprintf(p->msg, sizeof p->msg, "%s", qh_last_error());
        }
        p->pending = 0;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int writer_start(pipe_writer *p, qh_st_writer *w)
{
    memset(p, 0, sizeof *p);
    p->w = w;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->thread, NULL, writer_main, p) != 0) return qh_fail(QH_ESYS, "cannot start the writer thread");
    p->started = 1;
    return QH_OK;
}

/* Wait until nothing is in flight; returns the thread's failure, re-raised on this thread. */
static int writer_wait(pipe_writer *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->pending) pthread_cond_wait(&p->cv, &p->mu);
    int rc = p->rc;
    pthread_mutex_unlock(&p->mu);
    return rc ? qh_fail(rc, "%s", p->msg) : QH_OK;
}

static int writer_submit(pipe_writer *p, const write_item *it)
{
    int rc = writer_wait(p);
    if (rc) return rc;
    pthread_mutex_lock(&p->mu);
    p->item = *it;
    p->pending = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return QH_OK;
}

static void writer_stop(pipe_writer *p)
{
    if (!p->started) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    p->started = 0;
}

typedef struct {
    void *codes;
    float *scale, *nested;
    int8_t *qabs;
    float offset;
} out_buffers;

typedef struct {
    double num, den; /* summed squared errors and norms over all matrices */
    cJSON *matrices;
    out_buffers buf[2]; /* sized for the largest matrix once (fresh pages each time cost faults) */
    int next;           /* the set to fill next */
} totals;

/* Codes and scale counts of a quantized matrix. */
static void quant_sizes(const qh_quantize_opts *o, const qh_tensor *v, size_t *code_bytes, int64_t *nb, int64_t *nn)
{
    int64_t n = qh_tensor_numel(v);
    *code_bytes = (size_t)(o->bits == 8 ? n : (n + 1) / 2);
    *nb = o->bits == 8 ? v->shape[0] : (n + o->blocksize - 1) / o->blocksize;
    *nn = (*nb + QH_NF4_NESTED_BLOCK - 1) / QH_NF4_NESTED_BLOCK;
}

static int alloc_buffers(const qh_quantize_opts *o, const job *jobs, size_t n_jobs, totals *t)
{
    size_t max_codes = 1;
    int64_t max_nb = 1, max_nn = 1;
    for (size_t i = 0; i < n_jobs; i++) {
        if (!jobs[i].quantize) continue;
        size_t cb;
        int64_t nb, nn;
        quant_sizes(o, &jobs[i].view, &cb, &nb, &nn);
        if (cb > max_codes) max_codes = cb;
        if (nb > max_nb) max_nb = nb;
        if (nn > max_nn) max_nn = nn;
    }
    for (int k = 0; k < 2; k++) {
        out_buffers *b = &t->buf[k];
        b->codes = malloc(max_codes);
        b->scale = malloc(sizeof(float) * (size_t)max_nb);
        b->nested = malloc(sizeof(float) * (size_t)max_nn);
        b->qabs = malloc((size_t)max_nb);
        if (!b->codes || !b->scale || !b->nested || !b->qabs)
            return qh_fail(QH_ESYS, "out of memory: %zu bytes of quantization buffers", 2 * (max_codes + (size_t)max_nb * 5));
    }
    return QH_OK;
}

static void free_buffers(totals *t)
{
    for (int k = 0; k < 2; k++) {
        free(t->buf[k].codes);
        free(t->buf[k].scale);
        free(t->buf[k].nested);
        free(t->buf[k].qabs);
    }
}

static void record_matrix(totals *tot, qh_quantize_summary *s, const job *j, double num, double den, size_t after,
                          double secs)
{
    const qh_tensor *v = &j->view;
    double err = den > 0 ? sqrt(num / den) : 0.0;
    tot->num += num;
    tot->den += den;
    s->n_matrices++;
    s->matrix_weights += (uint64_t)qh_tensor_numel(v);
    s->matrix_bytes_before += qh_tensor_nbytes(v);
    s->matrix_bytes_after += after;
    if (err >= s->worst_error) {
        s->worst_error = err;
        snprintf(s->worst_name, sizeof s->worst_name, "%s", j->name);
    }
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "name", j->name);
    cJSON *shape = cJSON_AddArrayToObject(m, "shape");
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)v->shape[0]));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)v->shape[1]));
    cJSON_AddNumberToObject(m, "rel_frobenius_error", err);
    cJSON_AddNumberToObject(m, "bytes_before", (double)qh_tensor_nbytes(v));
    cJSON_AddNumberToObject(m, "bytes_after", (double)after);
    cJSON_AddNumberToObject(m, "seconds", secs);
    cJSON_AddItemToArray(tot->matrices, m);
}

/* Quantize one matrix into the next buffer set, measure its error, hand it to the writer. */
static int quantize_job(const qh_quantize_opts *o, pipe_writer *pw, const job *j, totals *tot, qh_quantize_summary *s)
{
    double t0 = now_s();
    const qh_tensor *v = &j->view;
    int64_t rows = v->shape[0], cols = v->shape[1], nb, nn;
    int dq = o->bits == 4 && o->double_quant;
    size_t code_bytes;
    quant_sizes(o, v, &code_bytes, &nb, &nn);
    out_buffers *b = &tot->buf[tot->next];
    tot->next ^= 1;
    int64_t bad = o->bits == 8 ? qh_int8_quantize(v->dtype, v->data, rows, cols, b->codes, b->scale)
                               : qh_nf4_quantize(v->dtype, v->data, rows * cols, o->blocksize, b->codes, b->scale);
    if (bad >= 0) return nonfinite_error(j, bad);
    qh_tensor q = qh_tensor_2d(o->bits == 8 ? QH_I8 : QH_NF4, rows, cols);
    q.data = b->codes;
    q.quant.threshold = (float)o->threshold;
    q.quant.blocksize = o->blocksize;
    b->offset = 0;
    if (dq) {
        qh_nf4_double_quant(b->scale, nb, b->qabs, b->nested, &b->offset);
        q.quant.qabsmax = b->qabs;
        q.quant.nested_absmax = b->nested;
        q.quant.nested_offset = b->offset;
    } else {
        q.quant.scale = b->scale;
    }
    double num, den;
    matrix_error(&q, v, &num, &den);
    write_item it = {.n = dq ? 4 : 2};
    it.ptr[0] = b->codes, it.len[0] = code_bytes;
    if (dq) {
        it.ptr[1] = b->qabs, it.len[1] = (size_t)nb;
        it.ptr[2] = b->nested, it.len[2] = sizeof(float) * (size_t)nn;
        it.ptr[3] = &b->offset, it.len[3] = sizeof b->offset;
    } else {
        it.ptr[1] = b->scale, it.len[1] = sizeof(float) * (size_t)nb;
    }
    size_t after = 0;
    for (int i = 0; i < it.n; i++) after += it.len[i];
    advise(v, MADV_DONTNEED);
    record_matrix(tot, s, j, num, den, after, now_s() - t0);
    return writer_submit(pw, &it);
}

/* A tensor kept as it is, checked and written 16 MiB at a time straight from the map, each
 * piece's pages dropped once written (the 7B embedding alone is 262 MB). */
static int copy_job(pipe_writer *pw, const job *j)
{
    int64_t n = qh_tensor_numel(&j->view), step = (16 << 20) / (int64_t)qh_dtype_size(j->view.dtype);
    int rc = QH_OK;
    for (int64_t i0 = 0; !rc && i0 < n; i0 += step) {
        write_item it = {.n = 1};
        it.drop = qh_tensor_1d(j->view.dtype, n - i0 < step ? n - i0 : step);
        it.drop.data = (char *)j->view.data + (size_t)i0 * qh_dtype_size(j->view.dtype);
        it.ptr[0] = it.drop.data, it.len[0] = qh_tensor_nbytes(&it.drop);
        int64_t bad = INT64_MAX;
        (void)qh_quant_absmax(it.drop.dtype, it.drop.data, it.drop.shape[0], i0, &bad);
        rc = bad != INT64_MAX ? nonfinite_error(j, bad) : writer_submit(pw, &it);
    }
    return rc;
}

static int check_opts(const qh_quantize_opts *o)
{
    if (o->bits != 8 && o->bits != 4) return qh_fail(QH_EINPUT, "--bits %d: expected 8 (int8) or 4 (nf4)", o->bits);
    if (o->bits == 4 && o->blocksize != 64 && o->blocksize != 128 && o->blocksize != 256)
        return qh_fail(QH_EINPUT, "--blocksize %d: expected 64, 128 or 256", o->blocksize);
    if (o->bits == 8 && !(o->threshold >= 0 && o->threshold < 1e30))
        return qh_fail(QH_EINPUT, "--threshold: expected a finite number >= 0");
    return QH_OK;
}

static void set_meta(qh_st_writer *w, const qh_quantize_opts *o, const qh_checkpoint *ck, const char *cfg_hex)
{
    char buf[64];
    qh_st_writer_meta(w, "format", o->bits == 8 ? "int8" : "nf4");
    qh_st_writer_meta(w, "format_version", "1");
    if (o->bits == 8) {
        snprintf(buf, sizeof buf, "%.9g", o->threshold);
        qh_st_writer_meta(w, "threshold", buf);
    } else {
        snprintf(buf, sizeof buf, "%d", o->blocksize);
        qh_st_writer_meta(w, "blocksize", buf);
        qh_st_writer_meta(w, "double_quant", o->double_quant ? "true" : "false");
        if (o->double_quant)
            qh_st_writer_meta(w, "double_quant_code", "linear int8, blocks of 256, mean subtracted");
    }
    qh_st_writer_meta(w, "source_model", o->model_dir);
    qh_st_writer_meta(w, "source_fingerprint", ck->fingerprint);
    qh_st_writer_meta(w, "config_sha256", cfg_hex);
    qh_st_writer_meta(w, "tool", "qhead quantize " QHEAD_VERSION);
}

static cJSON *report_json(const qh_quantize_opts *o, const qh_checkpoint *ck, const qh_quantize_summary *s,
                          cJSON *matrices)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "format", o->bits == 8 ? "int8" : "nf4");
    if (o->bits == 8) cJSON_AddNumberToObject(r, "threshold", o->threshold);
    if (o->bits == 4) cJSON_AddNumberToObject(r, "blocksize", o->blocksize);
    if (o->bits == 4) cJSON_AddBoolToObject(r, "double_quant", o->double_quant);
    cJSON_AddStringToObject(r, "source_model", o->model_dir);
    cJSON_AddStringToObject(r, "source_fingerprint", ck->fingerprint);
    cJSON_AddStringToObject(r, "output", o->out_path);
    cJSON_AddStringToObject(r, "tool", "qhead quantize " QHEAD_VERSION);
    cJSON *ov = cJSON_AddObjectToObject(r, "overall");
    cJSON_AddNumberToObject(ov, "matrices", s->n_matrices);
    cJSON_AddNumberToObject(ov, "rel_frobenius_error", s->rel_error);
    cJSON_AddNumberToObject(ov, "worst_rel_frobenius_error", s->worst_error);
    cJSON_AddStringToObject(ov, "worst_matrix", s->worst_name);
    cJSON_AddNumberToObject(ov, "matrix_bytes_before", (double)s->matrix_bytes_before);
    cJSON_AddNumberToObject(ov, "matrix_bytes_after", (double)s->matrix_bytes_after);
    double bits = s->matrix_weights ? 8.0 * (double)s->matrix_bytes_after / (double)s->matrix_weights : 0.0;
    cJSON_AddNumberToObject(ov, "bits_per_weight", bits);
    cJSON_AddNumberToObject(ov, "bytes_before", (double)s->source_bytes);
    cJSON_AddNumberToObject(ov, "bytes_after", (double)s->file_bytes);
    cJSON_AddNumberToObject(ov, "seconds", s->seconds);
    cJSON_AddItemToObject(r, "matrices", matrices);
    return r;
}

int qh_quantize_model(const qh_quantize_opts *o, qh_quantize_summary *s)
{
    memset(s, 0, sizeof *s);
    double t0 = now_s();
    int rc = check_opts(o);
    if (rc) return rc;
    qh_checkpoint *ck = NULL;
    job *jobs = NULL;
    size_t n_jobs = 0;
    qh_st_writer *w = NULL;
    qh_atomic_file report = {0};
    totals tot;
    memset(&tot, 0, sizeof tot);
    tot.matrices = cJSON_CreateArray();
    pipe_writer pw = {.started = 0};
    char cfg_hex[65];
    if ((rc = qh_checkpoint_open(o->model_dir, &ck))) goto done;
    if ((rc = list_jobs(ck, &jobs, &n_jobs))) goto done;
    if ((rc = config_sha256(o->model_dir, cfg_hex))) goto done;
    if ((rc = alloc_buffers(o, jobs, n_jobs, &tot))) goto done;
    /* both outputs opened (as temporary files) before the work, so a bad path fails at once */
    if ((rc = qh_st_writer_begin(o->out_path, &w))) goto done;
    if ((rc = qh_atomic_begin(&report, o->report_path))) goto done;
    layout lo = {w, 0};
    for (size_t i = 0; !rc && i < n_jobs; i++) rc = declare_job(&lo, o, &jobs[i]);
    if (rc) goto done;
    set_meta(w, o, ck, cfg_hex);
    if ((rc = writer_start(&pw, w))) goto done;
    for (size_t i = 0; i < n_jobs; i++) {
        const job *j = &jobs[i];
        if (i + 1 < n_jobs) advise(&jobs[i + 1].view, MADV_WILLNEED); /* read ahead while this one runs */
        rc = j->quantize ? quantize_job(o, &pw, j, &tot, s) : copy_job(&pw, j);
        if (rc) goto done;
        s->source_bytes += qh_tensor_nbytes(&j->view);
    }
    rc = writer_wait(&pw);
    writer_stop(&pw);
    if (rc) goto done;
    rc = qh_st_writer_commit(w);
    w = NULL;
    if (rc) goto done;
    struct stat sb;
    s->file_bytes = stat(o->out_path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    s->rel_error = tot.den > 0 ? sqrt(tot.num / tot.den) : 0.0;
    s->seconds = now_s() - t0;
    cJSON *r = report_json(o, ck, s, tot.matrices);
    tot.matrices = NULL;
    char *text = cJSON_Print(r);
    cJSON_Delete(r);
    if (!text || fputs(text, report.fp) < 0 || fputc('\n', report.fp) == EOF) {
        rc = qh_fail_errno(QH_ESYS, "%s: write failed", report.tmp_path);
        free(text);
        goto done;
    }
    free(text);
    rc = qh_atomic_commit(&report);
    report.fp = NULL;
done:
    writer_stop(&pw); /* before the writer it uses goes */
    if (rc) {
        qh_st_writer_abort(w);
        if (report.fp) qh_atomic_abort(&report);
    }
    cJSON_Delete(tot.matrices);
    free_buffers(&tot);
    free(jobs);
    qh_checkpoint_close(ck);
    return rc;
}
