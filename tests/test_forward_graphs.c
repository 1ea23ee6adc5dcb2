/* The forward pass's recorded graphs (core/llama_forward.c) on a machine without a GPU: the CPU
 * backend wrapped with a recorder that behaves as CUDA stream capture does. Between
 * capture_begin and capture_end each op is stored (its tensors by value: the addresses, not
 * the contents) instead of run; graph_run runs the stored ops again, reading whatever those
 * addresses hold then. So a replay gives the right hidden states only if the forward pass keeps
 * its recordings' addresses and rewrites their inputs in place, which is what this checks,
 * bit for bit against a context that never records, together with the bookkeeping around it:
 * recordings per length, made again when the backend says they are stale, a length left to
 * plain runs when recording fails, nothing recorded while the backend declines (profiling),
 * longer sequences and batches of several sequences never recorded. The real CUDA graphs are
 * tested on the GPU (test_cuda_backend's test_graph_replay). */
#include "testutil.h"

#include "backend.h"
#include "error.h"
#include "llama_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OP_EMBED, OP_RMSNORM, OP_LINEAR, OP_ROPE, OP_ATTENTION, OP_SILU_MUL, OP_ADD, OP_GATHER };

typedef struct {
    int kind;
    qh_tensor t[4];
    qh_batch batch;
    float eps;
    double theta;
    int n[3];
} rec_op;

typedef struct {
    rec_op *ops;
    int n, cap;
} recording;

static qh_backend base;      /* the CPU backend's own table */
static recording *capturing; /* non-NULL between capture_begin and capture_end */
/* what the recorder does next: capture_begin declines (profiling); capture_end fails (an op
 * waited for the device); graph_run reports the recording stale once */
static int decline, fail_next, stale_next;
static long runs; /* ops run for real, so that a replay can be told from a plain pass */

static int record(int kind, const qh_tensor *a, const qh_tensor *b, const qh_tensor *c, const qh_tensor *d,
                  const qh_batch *batch, float eps, double theta, int n0, int n1, int n2)
{
    if (capturing->n == capturing->cap) {
        int cap = capturing->cap ? 2 * capturing->cap : 256;
        rec_op *p = realloc(capturing->ops, sizeof *p * (size_t)cap);
        if (!p) return qh_fail(QH_ESYS, "out of memory");
        capturing->ops = p, capturing->cap = cap;
    }
    rec_op *o = &capturing->ops[capturing->n++];
    memset(o, 0, sizeof *o);
    o->kind = kind, o->eps = eps, o->theta = theta, o->n[0] = n0, o->n[1] = n1, o->n[2] = n2;
    const qh_tensor *in[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++)
        if (in[i]) o->t[i] = *in[i];
    if (batch) o->batch = *batch;
    return QH_OK;
}

static int r_embed(qh_backend *be, const qh_tensor *table, const qh_tensor *ids, qh_tensor *out)
{
    if (capturing) return record(OP_EMBED, table, ids, out, NULL, NULL, 0, 0, 0, 0, 0);
    runs++;
    return base.embed(be, table, ids, out);
}

static int r_rmsnorm(qh_backend *be, const qh_tensor *x, const qh_tensor *w, float eps, qh_tensor *out)
{
    if (capturing) return record(OP_RMSNORM, x, w, out, NULL, NULL, eps, 0, 0, 0, 0);
    runs++;
    return base.rmsnorm(be, x, w, eps, out);
}

static int r_linear(qh_backend *be, const qh_tensor *x, const qh_tensor *w, qh_tensor *y)
{
    if (capturing) return record(OP_LINEAR, x, w, y, NULL, NULL, 0, 0, 0, 0, 0);
    runs++;
    return base.linear(be, x, w, y);
}

static int r_rope(qh_backend *be, qh_tensor *q, qh_tensor *k, const qh_tensor *pos, int head_dim, double theta)
{
    if (capturing) return record(OP_ROPE, q, k, pos, NULL, NULL, 0, theta, head_dim, 0, 0);
    runs++;
    return base.rope(be, q, k, pos, head_dim, theta);
}

static int r_attention(qh_backend *be, const qh_tensor *q, const qh_tensor *k, const qh_tensor *v, qh_tensor *out,
                       const qh_batch *batch, int n_heads, int n_kv, int head_dim)
{
    if (capturing) return record(OP_ATTENTION, q, k, v, out, batch, 0, 0, n_heads, n_kv, head_dim);
    runs++;
    return base.attention(be, q, k, v, out, batch, n_heads, n_kv, head_dim);
}

static int r_silu_mul(qh_backend *be, const qh_tensor *g, const qh_tensor *u, qh_tensor *out)
{
    if (capturing) return record(OP_SILU_MUL, g, u, out, NULL, NULL, 0, 0, 0, 0, 0);
    runs++;
    return base.silu_mul(be, g, u, out);
}

static int r_add(qh_backend *be, qh_tensor *x, const qh_tensor *y)
{
    if (capturing) return record(OP_ADD, x, y, NULL, NULL, NULL, 0, 0, 0, 0, 0);
    runs++;
    return base.add(be, x, y);
}

static int r_gather(qh_backend *be, const qh_tensor *x, const qh_tensor *rows, qh_tensor *out)
{
    if (capturing) return record(OP_GATHER, x, rows, out, NULL, NULL, 0, 0, 0, 0, 0);
    runs++;
    return base.gather_rows(be, x, rows, out);
}

static int r_capture_begin(qh_backend *be)
{
    (void)be;
    if (decline) return 1;
    assert_null(capturing);
    capturing = calloc(1, sizeof *capturing);
    return capturing ? QH_OK : qh_fail(QH_ESYS, "out of memory");
}

static int r_capture_end(qh_backend *be, void **graph)
{
    (void)be;
    recording *r = capturing;
    capturing = NULL;
    if (fail_next) {
        fail_next = 0;
        free(r->ops), free(r);
        r = NULL;
    }
    *graph = r;
    return QH_OK;
}

static int r_graph_run(qh_backend *be, void *graph)
{
    if (stale_next) {
        stale_next = 0;
        return 1;
    }
    recording *r = graph;
    int rc = QH_OK;
    for (int i = 0; !rc && i < r->n; i++) {
        rec_op *o = &r->ops[i];
        qh_tensor *t = o->t;
        switch (o->kind) {
        case OP_EMBED: rc = r_embed(be, &t[0], &t[1], &t[2]); break;
        case OP_RMSNORM: rc = r_rmsnorm(be, &t[0], &t[1], o->eps, &t[2]); break;
        case OP_LINEAR: rc = r_linear(be, &t[0], &t[1], &t[2]); break;
        case OP_ROPE: rc = r_rope(be, &t[0], &t[1], &t[2], o->n[0], o->theta); break;
        case OP_ATTENTION: rc = r_attention(be, &t[0], &t[1], &t[2], &t[3], &o->batch, o->n[0], o->n[1], o->n[2]); break;
        case OP_SILU_MUL: rc = r_silu_mul(be, &t[0], &t[1], &t[2]); break;
        case OP_ADD: rc = r_add(be, &t[0], &t[1]); break;
        default: rc = r_gather(be, &t[0], &t[1], &t[2]); break;
        }
    }
    return rc;
}

static void r_graph_free(qh_backend *be, void *graph)
{
    (void)be;
    recording *r = graph;
    if (r) free(r->ops), free(r);
}

static int r_write(qh_backend *be, const void *host, qh_tensor *t)
{
    (void)be;
    memcpy(t->data, host, qh_tensor_nbytes(t));
    return QH_OK;
}

static qh_backend *recording_cpu(void)
{
    qh_backend *be;
    assert_int_equal(qh_backend_create("cpu", &be), QH_OK);
    base = *be;
    be->embed = r_embed, be->rmsnorm = r_rmsnorm, be->linear = r_linear, be->rope = r_rope;
    be->attention = r_attention, be->silu_mul = r_silu_mul, be->add = r_add, be->gather_rows = r_gather;
    be->capture_begin = r_capture_begin, be->capture_end = r_capture_end, be->graph_run = r_graph_run;
    be->graph_free = r_graph_free, be->write = r_write;
    return be;
}

/* tu_graph_step, and no recording left open */
static void step(qh_llama_ctx *on, qh_llama_ctx *off, const qh_llama_model *m, int n, int len, uint64_t *rng,
                 long want_recorded, long want_replayed)
{
    tu_graph_step(on, off, m, n, len, rng, want_recorded, want_replayed);
    assert_null(capturing);
}

static void test_recorded_passes(void **state)
{
    (void)state;
    qh_backend *be = recording_cpu();
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/llama/gqa", tu_fixtures());
    qh_llama_model *m;
    if (qh_llama_load(dir, be, &m)) fail_msg("%s", qh_last_error());
    qh_llama_ctx *on, *off;
    assert_int_equal(qh_llama_ctx_create(m, 48, &on), QH_OK);
    assert_int_equal(qh_llama_ctx_create(m, 48, &off), QH_OK);
    qh_llama_ctx_set_graphs(off, 0);
    uint64_t rng = 3;
    step(on, off, m, 1, 5, &rng, 1, 0); /* plain, then recorded */
    long before = runs;
    step(on, off, m, 1, 5, &rng, 1, 1); /* replayed with new ids */
    long per_pass = runs - before; /* ops run: the replay's and the plain context's */
    step(on, off, m, 1, 9, &rng, 2, 1);
    step(on, off, m, 1, 5, &rng, 2, 2);
    step(on, off, m, 1, 9, &rng, 2, 3);
    stale_next = 1;
    step(on, off, m, 1, 9, &rng, 3, 3); /* stale: plain, recorded again */
    step(on, off, m, 1, 9, &rng, 3, 4);
    fail_next = 1;
    step(on, off, m, 1, 7, &rng, 3, 4); /* the recording fails: 7 tokens run plainly from now on */
    before = runs;
    step(on, off, m, 1, 7, &rng, 3, 4);
    assert_int_equal(runs - before, per_pass); /* one pass of ops each side: no second attempt */
    decline = 1;
    step(on, off, m, 1, 11, &rng, 3, 4); /* declined: plain, not marked */
    step(on, off, m, 1, 11, &rng, 3, 4);
    decline = 0;
    step(on, off, m, 1, 11, &rng, 4, 4); /* recorded once the backend accepts */
    step(on, off, m, 1, 11, &rng, 4, 5);
    step(on, off, m, 1, 60, &rng, 5, 5); /* beyond --batch-tokens: the workspace grows, all dropped */
    step(on, off, m, 1, 5, &rng, 6, 5);
    step(on, off, m, 1, 5, &rng, 6, 6);
    step(on, off, m, 1, 65, &rng, 6, 6); /* too long to record */
    step(on, off, m, 1, 65, &rng, 6, 6);
    step(on, off, m, 3, 5, &rng, 6, 6); /* several sequences */
    qh_llama_ctx_set_graphs(on, 0);      /* switched off: recordings dropped, plain passes */
    step(on, off, m, 1, 5, &rng, 6, 6);
    qh_llama_ctx_free(on), qh_llama_ctx_free(off);
    qh_llama_free(m);
    qh_backend_destroy(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_recorded_passes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
