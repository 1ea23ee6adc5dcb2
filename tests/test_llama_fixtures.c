/* The CPU forward pass against transformers (tests/fixtures/make_llama_fixtures.py):
 * float64 last-token hidden states and logits for sequences of lengths 1..100, computed by
 * transformers from the same fp16 weights. Relative error bound 2e-3 (issue 2). */
#include "testutil.h"

#include "backend.h"
#include "error.h"
#include "llama_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REL_TOL 2e-3

typedef struct {
    qh_safetensors *ref;
    const int32_t *ids, *lengths;
    const double *hidden, *logits;
    int n_seqs, n_labels;
} reference;

static void load_reference(const char *model_dir, reference *r)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/reference.safetensors", model_dir);
    assert_int_equal(qh_st_open(path, &r->ref), QH_OK);
    const qh_st_tensor *ids = qh_st_find(r->ref, "ids"), *len = qh_st_find(r->ref, "lengths");
    const qh_st_tensor *hid = qh_st_find(r->ref, "hidden"), *lg = qh_st_find(r->ref, "logits");
    assert_non_null(ids), assert_non_null(len), assert_non_null(hid), assert_non_null(lg);
    assert_int_equal(ids->dtype, QH_I32);
    assert_int_equal(hid->dtype, QH_F64);
    r->ids = qh_st_data(r->ref, ids);
    r->lengths = qh_st_data(r->ref, len);
    r->hidden = qh_st_data(r->ref, hid);
    r->logits = qh_st_data(r->ref, lg);
    r->n_seqs = (int)len->shape[0];
    r->n_labels = (int)lg->shape[1];
}

/* ||got - want|| / ||want|| over one row. */
static double rel_err(const float *got, const double *want, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        double d = got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-300));
}

/* Logits from the checkpoint's own score.weight, in double. */
static void apply_score(const qh_llama_model *m, const float *hidden, double *logits)
{
    int h = m->cfg.hidden_size, labels = (int)m->score.shape[0];
    for (int l = 0; l < labels; l++) {
        double acc = 0;
        for (int i = 0; i < h; i++) acc += (double)qh_load_f32(m->score.dtype, m->score.data, (size_t)l * h + i) * hidden[i];
        logits[l] = acc;
    }
}

static void check_model(const char *name, int batch_tokens)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/llama/%s", QHEAD_FIXTURES, name);
    reference r;
    load_reference(dir, &r);
    qh_backend *be;
    assert_int_equal(qh_backend_create("cpu", &be), QH_OK);
    qh_llama_model *m;
    int rc = qh_llama_load(dir, be, &m);
    if (rc) fail_msg("%s", qh_last_error());
    assert_true(m->has_score);
    assert_int_equal(m->score.shape[0], r.n_labels);
    qh_llama_ctx *ctx;
    assert_int_equal(qh_llama_ctx_create(m, batch_tokens, &ctx), QH_OK);
    int h = m->cfg.hidden_size;
    float *hidden = malloc(sizeof(float) * (size_t)r.n_seqs * h);
    rc = qh_llama_forward(ctx, r.ids, r.lengths, r.n_seqs, hidden);
    if (rc) fail_msg("%s", qh_last_error());
    double worst_h = 0, worst_l = 0;
    double logits[64], lw[64];
    float lg_f[64];
    for (int s = 0; s < r.n_seqs; s++) {
        double eh = rel_err(hidden + (size_t)s * h, r.hidden + (size_t)s * h, h);
        apply_score(m, hidden + (size_t)s * h, logits);
        for (int l = 0; l < r.n_labels; l++) lg_f[l] = (float)logits[l], lw[l] = r.logits[(size_t)s * r.n_labels + l];
        double el = rel_err(lg_f, lw, r.n_labels);
        if (eh > worst_h) worst_h = eh;
        if (el > worst_l) worst_l = el;
        if (eh > REL_TOL || el > REL_TOL)
            fail_msg("%s: sequence of length %d: hidden rel err %.3g, logits rel err %.3g", name, r.lengths[s], eh, el);
    }
    printf("# %s (batch %d tokens): worst relative error hidden %.2e, logits %.2e over %d sequences\n", name,
           batch_tokens, worst_h, worst_l, r.n_seqs);
    free(hidden);
    qh_llama_ctx_free(ctx);
    qh_llama_free(m);
    qh_backend_destroy(be);
    qh_st_close(r.ref);
}

/* All 100 sequences packed into one batch, and into many small micro-batches. */
static void test_mha_one_batch(void **state) { (void)state, check_model("mha", 1 << 16); }
static void test_mha_micro_batches(void **state) { (void)state, check_model("mha", 128); }
static void test_gqa_sharded_one_batch(void **state) { (void)state, check_model("gqa", 1 << 16); }
static void test_gqa_micro_batches(void **state) { (void)state, check_model("gqa", 7); }

/* What --batch-tokens 0 means: per device, and smaller for nf4 on a GPU (its memory target). */
static void test_default_batch_tokens(void **state)
{
    (void)state;
    qh_backend cpu = {.device = QH_DEVICE_CPU}, gpu = {.device = QH_DEVICE_CUDA};
    qh_llama_model m = {.be = &cpu};
    assert_int_equal(qh_default_batch_tokens(&m), QH_BATCH_TOKENS_CPU);
    m.be = &gpu;
    assert_int_equal(qh_default_batch_tokens(&m), QH_BATCH_TOKENS_GPU);
    m.quant.quantized = 1, m.quant.dtype = QH_I8;
    assert_int_equal(qh_default_batch_tokens(&m), QH_BATCH_TOKENS_GPU);
    m.quant.dtype = QH_NF4;
    assert_int_equal(qh_default_batch_tokens(&m), QH_BATCH_TOKENS_GPU_NF4);
    m.be = &cpu;
    assert_int_equal(qh_default_batch_tokens(&m), QH_BATCH_TOKENS_CPU);
}

static void test_config_spellings(void **state)
{
    (void)state;
    qh_llama_config a, b;
    assert_int_equal(qh_llama_config_load(QHEAD_FIXTURES "/llama/mha/config.json", &a), QH_OK);
    assert_int_equal(a.num_kv_heads, a.num_heads); /* 4.x file without num_key_value_heads */
    assert_int_equal(a.dtype, QH_F16);            /* torch_dtype */
    assert_true(a.rope_theta == 10000.0);
    assert_true(a.rms_norm_eps == 1e-6);
    assert_int_equal(qh_llama_config_load(QHEAD_FIXTURES "/llama/gqa/config.json", &b), QH_OK);
    assert_int_equal(b.num_kv_heads, 2);
    assert_true(b.rope_theta == 500000.0); /* rope_parameters.rope_theta */
    assert_int_equal(b.head_dim, 16);
    assert_int_equal(b.num_labels, 4);
    assert_string_equal(b.label_names[3], "LABEL_3");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_spellings),
        cmocka_unit_test(test_default_batch_tokens),
        cmocka_unit_test(test_mha_one_batch),
        cmocka_unit_test(test_mha_micro_batches),
        cmocka_unit_test(test_gqa_sharded_one_batch),
        cmocka_unit_test(test_gqa_micro_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
