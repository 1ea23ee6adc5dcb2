/* Model directories: the committed fixtures load, and broken copies of them are refused with
 * QH_EINPUT and a message naming the file (or directory) and the problem. Each test copies a
 * fixture into a fresh temporary directory and breaks the copy; the fixtures are never
 * touched. */
#include "testutil.h"

#include "backend.h"
#include "error.h"
#include "fileio.h"
#include "llama_model.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static qh_backend *g_be;

static int setup(void **state)
{
    (void)state;
    return qh_backend_create("cpu", &g_be) == QH_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    qh_backend_destroy(g_be);
    return 0;
}

/* ---- a fixture copy in a temporary directory ---- */

static char *copy_fixture(const char *name)
{
    char *dir = tu_mkdtemp("ckpt");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cp -r '%s/llama/%s/.' '%s/'", QHEAD_FIXTURES, name, dir);
    assert_int_equal(system(cmd), 0);
    return dir;
}

static void remove_file(const char *dir, const char *name)
{
    char *p = tu_path(dir, name);
    assert_int_equal(unlink(p), 0);
    free(p);
}

static cJSON *read_json(const char *dir, const char *name)
{
    char *p = tu_path(dir, name), *text = NULL;
    assert_int_equal(qh_read_file(p, 64u << 20, &text, NULL), QH_OK);
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    free(text);
    free(p);
    return j;
}

static void write_json(const char *dir, const char *name, const cJSON *j)
{
    char *text = cJSON_Print(j);
    free(tu_write_file(dir, name, text, strlen(text)));
    free(text);
}

/* Set key of dir/config.json to value (JSON text), or remove it when value is NULL. */
static void edit_config(const char *dir, const char *key, const char *value)
{
    cJSON *j = read_json(dir, "config.json");
    cJSON_DeleteItemFromObjectCaseSensitive(j, key);
    if (value) cJSON_AddItemToObject(j, key, cJSON_Parse(value));
    write_json(dir, "config.json", j);
    cJSON_Delete(j);
}

/* Cut dir/name to len bytes. */
static void truncate_file(const char *dir, const char *name, off_t len)
{
    char *p = tu_path(dir, name);
    assert_int_equal(truncate(p, len), 0);
    free(p);
}

/* ---- a small safetensors writer over an in-memory tensor list ---- */

typedef struct {
    char name[160];
    qh_dtype dtype;
    int ndim;
    int64_t shape[QH_ST_MAX_DIMS];
    size_t nbytes;
    uint8_t *data;
} tw_tensor;

typedef struct {
    tw_tensor *t;
    size_t n;
} tw_list;

static tw_tensor *tw_add(tw_list *l, const char *name, qh_dtype dtype, int ndim, const int64_t *shape, const void *data)
{
    l->t = realloc(l->t, (l->n + 1) * sizeof *l->t);
    tw_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i], numel *= (size_t)shape[i];
    t->nbytes = numel * qh_dtype_size(dtype);
    t->data = calloc(1, t->nbytes ? t->nbytes : 1);
    if (data) memcpy(t->data, data, t->nbytes);
    return t;
}

/* Every tensor of one safetensors file, copied. */
static tw_list tw_load(const char *path)
{
    qh_safetensors *st;
    int rc = qh_st_open(path, &st);
    if (rc) fail_msg("%s", qh_last_error());
    tw_list l = {0};
    for (size_t i = 0; i < st->n_tensors; i++) {
        const qh_st_tensor *s = &st->tensors[i];
        tw_add(&l, s->name, s->dtype, s->ndim, s->shape, qh_st_data(st, s));
    }
    qh_st_close(st);
    return l;
}

static tw_tensor *tw_find(tw_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->t[i].name, name) == 0) return &l->t[i];
    return NULL;
}

static void tw_remove(tw_list *l, const char *name)
{
    tw_tensor *t = tw_find(l, name);
    assert_non_null(t);
    free(t->data);
    size_t i = (size_t)(t - l->t);
    memmove(&l->t[i], &l->t[i + 1], (l->n - i - 1) * sizeof *l->t);
    l->n--;
}

static void tw_free(tw_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->t[i].data);
    free(l->t);
    l->t = NULL;
    l->n = 0;
}

/* Header JSON (padded with spaces to a multiple of 8), 8-byte LE length, then the data with
 * every tensor at an 8-aligned offset. */
static void tw_write(const char *dir, const char *name, const tw_list *l)
{
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    size_t off = 0;
    size_t *offs = malloc((l->n + 1) * sizeof *offs);
    for (size_t i = 0; i < l->n; i++) {
        const tw_tensor *t = &l->t[i];
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        cJSON_AddStringToObject(e, "dtype", qh_dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        offs[i] = off;
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + t->nbytes)));
        off = (off + t->nbytes + 7) / 8 * 8;
    }
    char *json = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t hl = strlen(json), padded = (hl + 7) / 8 * 8;
    size_t total = 8 + padded + off;
    uint8_t *buf = calloc(1, total);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, json, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    for (size_t i = 0; i < l->n; i++) memcpy(buf + 8 + padded + offs[i], l->t[i].data, l->t[i].nbytes);
    free(tu_write_file(dir, name, buf, total));
    free(buf);
    free(json);
    free(offs);
}

/* ---- loading ---- */

/* qh_llama_load(dir) must fail with QH_EINPUT; the message names `where` and each word. */
static void expect_refused(const char *dir, const char *where, const char *w1, const char *w2, const char *w3)
{
    qh_llama_model *m = (qh_llama_model *)(uintptr_t)1;
    qh_clear_error();
    int rc = qh_llama_load(dir, g_be, &m);
    const char *msg = qh_last_error();
    printf("# %s\n", msg);
    if (rc == QH_OK) {
        qh_llama_free(m);
        fail_msg("accepted %s", dir);
    }
    if (rc != QH_EINPUT) fail_msg("expected QH_EINPUT, got %d: %s", rc, msg);
    assert_null(m);
    if (!strstr(msg, where)) fail_msg("message does not name %s: %s", where, msg);
    const char *w[3] = {w1, w2, w3};
    for (int i = 0; i < 3; i++)
        if (w[i] && !strstr(msg, w[i])) fail_msg("message lacks '%s': %s", w[i], msg);
}

static qh_llama_model *load_ok(const char *dir)
{
    qh_llama_model *m = NULL;
    qh_clear_error();
    int rc = qh_llama_load(dir, g_be, &m);
    if (rc) fail_msg("%s: %s", dir, qh_last_error());
    assert_non_null(m);
    return m;
}

static void assert_hex64(const char *fp)
{
    assert_int_equal(strlen(fp), 64);
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)fp[i])) fail_msg("fingerprint '%s' is not hex", fp);
}

/* Last-token hidden states of a few sequences (deterministic token ids). */
static float *run_forward(qh_llama_model *m, int *n_out)
{
    const int32_t lengths[3] = {1, 5, 17};
    int32_t ids[23];
    uint64_t rng = 99;
    for (int i = 0; i < 23; i++) ids[i] = (int32_t)(tu_rand_u64(&rng) % (uint64_t)m->cfg.vocab_size);
    qh_llama_ctx *ctx;
    assert_int_equal(qh_llama_ctx_create(m, 64, &ctx), QH_OK);
    float *h = malloc(sizeof(float) * 3 * (size_t)m->cfg.hidden_size);
    int rc = qh_llama_forward(ctx, ids, lengths, 3, h);
    if (rc) fail_msg("%s", qh_last_error());
    qh_llama_ctx_free(ctx);
    *n_out = 3 * m->cfg.hidden_size;
    return h;
}

static void check_fixture(const char *name, int labels, int hidden, int kv)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/llama/%s", QHEAD_FIXTURES, name);
    qh_llama_model *a = load_ok(dir);
    assert_true(a->has_score);
    assert_int_equal(a->score.shape[0], labels);
    assert_int_equal(a->score.shape[1], hidden);
    assert_int_equal(a->cfg.hidden_size, hidden);
    assert_int_equal(a->cfg.num_kv_heads, kv);
    assert_string_equal(a->ckpt->prefix, "model.");
    assert_hex64(a->ckpt->fingerprint);
    /* twice: the same fingerprint */
    qh_llama_model *b = load_ok(dir);
    assert_string_equal(a->ckpt->fingerprint, b->ckpt->fingerprint);
    qh_llama_free(b);
    /* a copy elsewhere: the fingerprint is about content, not location */
    char *copy = copy_fixture(name);
    b = load_ok(copy);
    assert_string_equal(a->ckpt->fingerprint, b->ckpt->fingerprint);
    qh_llama_free(b);
    /* an edit to config.json that changes nothing qhead reads still changes the fingerprint */
    edit_config(copy, "initializer_range", "0.02");
    b = load_ok(copy);
    assert_hex64(b->ckpt->fingerprint);
    assert_string_not_equal(a->ckpt->fingerprint, b->ckpt->fingerprint);
    qh_llama_free(b);
    tu_rmtree(copy);
    free(copy);
    qh_llama_free(a);
}

static void test_load_mha(void **state) { (void)state, check_fixture("mha", 3, 64, 4); }
static void test_load_gqa(void **state) { (void)state, check_fixture("gqa", 4, 96, 2); }

/* A bare LlamaModel: tensor names without "model.", no score head. Same numbers as the fixture. */
static void test_bare_llama_model(void **state)
{
    (void)state;
    char *dir = copy_fixture("mha");
    char *single = tu_path(dir, "model.safetensors");
    tw_list l = tw_load(single);
    tw_remove(&l, "score.weight");
    for (size_t i = 0; i < l.n; i++) {
        assert_int_equal(strncmp(l.t[i].name, "model.", 6), 0);
        memmove(l.t[i].name, l.t[i].name + 6, strlen(l.t[i].name + 6) + 1);
    }
    tw_write(dir, "model.safetensors", &l);
    edit_config(dir, "architectures", "[\"LlamaModel\"]");
    edit_config(dir, "id2label", NULL);
    edit_config(dir, "label2id", NULL);
    qh_llama_model *bare = load_ok(dir);
    assert_string_equal(bare->ckpt->prefix, "");
    assert_false(bare->has_score);
    assert_string_equal(bare->cfg.architecture, "LlamaModel");
    assert_non_null(qh_checkpoint_find(bare->ckpt, "embed_tokens.weight", NULL));
    assert_null(qh_checkpoint_find(bare->ckpt, "model.embed_tokens.weight", NULL));

    qh_llama_model *orig = load_ok(QHEAD_FIXTURES "/llama/mha");
    int n1, n2;
    float *h1 = run_forward(bare, &n1), *h2 = run_forward(orig, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(h1, h2, sizeof(float) * (size_t)n1);
    free(h1);
    free(h2);
    qh_llama_free(orig);
    qh_llama_free(bare);
    tw_free(&l);
    free(single);
    tu_rmtree(dir);
    free(dir);
}

/* A causal-LM checkpoint: lm_head.weight is there and ignored, whatever it holds. */
static void test_lm_head_ignored(void **state)
{
    (void)state;
    char *dir = copy_fixture("mha");
    char *single = tu_path(dir, "model.safetensors");
    tw_list l = tw_load(single);
    tw_remove(&l, "score.weight");
    const int64_t shape[2] = {512, 64};
    tw_tensor *lm = tw_add(&l, "lm_head.weight", QH_F16, 2, shape, NULL);
    uint64_t rng = 7;
    for (size_t i = 0; i < lm->nbytes / 2; i++) ((uint16_t *)lm->data)[i] = qh_f32_to_f16((float)tu_rand_normal(&rng));
    tw_write(dir, "model.safetensors", &l);
    edit_config(dir, "architectures", "[\"LlamaForCausalLM\"]");
    qh_llama_model *m = load_ok(dir);
    assert_false(m->has_score);
    assert_string_equal(m->ckpt->prefix, "model.");
    assert_non_null(qh_checkpoint_find(m->ckpt, "lm_head.weight", NULL));
    qh_llama_free(m);
    /* even one of the wrong shape and an integer dtype */
    tw_remove(&l, "lm_head.weight");
    const int64_t odd[1] = {7};
    tw_add(&l, "lm_head.weight", QH_I32, 1, odd, NULL);
    tw_write(dir, "model.safetensors", &l);
    m = load_ok(dir);
    assert_false(m->has_score);
    qh_llama_free(m);
    tw_free(&l);
    free(single);
    tu_rmtree(dir);
    free(dir);
}

/* ---- broken directories ---- */

static void test_missing_directory(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("ckpt");
    char *missing = tu_path(dir, "no-such-model");
    expect_refused(missing, missing, "no such", NULL, NULL);
    /* a file where the directory should be */
    char *file = tu_write_file(dir, "config.json", "{}", 2);
    expect_refused(file, file, "not a directory", NULL, NULL);
    free(file);
    free(missing);
    tu_rmtree(dir);
    free(dir);
}

static void test_missing_config(void **state)
{
    (void)state;
    char *dir = copy_fixture("mha");
    remove_file(dir, "config.json");
    char *cfg = tu_path(dir, "config.json");
    expect_refused(dir, cfg, "cannot open", NULL, NULL);
    /* a broken one names its field */
    free(tu_write_file(dir, "config.json", "{\"hidden_size\": 64}", 19));
    expect_refused(dir, cfg, "intermediate_size", NULL, NULL);
    free(cfg);
    tu_rmtree(dir);
    free(dir);
}

static void test_no_weights(void **state)
{
    (void)state;
    char *dir = copy_fixture("mha");
    remove_file(dir, "model.safetensors");
    expect_refused(dir, dir, "model.safetensors", NULL, NULL);
    /* reference.safetensors (or any other stray file) is not a model */
    remove_file(dir, "reference.safetensors");
    expect_refused(dir, dir, "model.safetensors", NULL, NULL);
    /* only a PyTorch pickle */
    free(tu_write_file(dir, "pytorch_model.bin", "PK\3\4", 4));
    expect_refused(dir, dir, "pytorch_model.bin", "safetensors", NULL);
    tu_rmtree(dir);
    free(dir);
}

static void test_weights_not_a_file(void **state)
{
    (void)state;
    char *dir = copy_fixture("mha");
    remove_file(dir, "model.safetensors");
    char *p = tu_path(dir, "model.safetensors");
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "mkdir '%s'", p);
    assert_int_equal(system(cmd), 0);
    expect_refused(dir, p, "not a regular file", NULL, NULL);
    free(p);
    tu_rmtree(dir);
    free(dir);
}

static void test_truncated(void **state)
{
    (void)state;
    char *src = tu_path(QHEAD_FIXTURES "/llama/mha", "model.safetensors");
    qh_safetensors *st;
    assert_int_equal(qh_st_open(src, &st), QH_OK);
    uint64_t header = st->header_size, size = st->map_size;
    qh_st_close(st);
    free(src);
    const struct {
        off_t len;
        const char *word;
    } cuts[] = {
        {0, "truncated"},
        {4, "truncated"},
        {7, "truncated"},
        {8, "past the end"},
        {(off_t)(8 + header / 2), "past the end"},
        {(off_t)(8 + header - 1), "past the end"},
        {(off_t)(8 + header), "outside"},                       /* header only, no data */
        {(off_t)(8 + header + (size - 8 - header) / 2), "outside"}, /* half the data */
        {(off_t)(size - 1), "outside"},                          /* one byte short */
    };
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        char *dir = copy_fixture("mha");
        truncate_file(dir, "model.safetensors", cuts[i].len);
        char *p = tu_path(dir, "model.safetensors");
        expect_refused(dir, p, cuts[i].word, NULL, NULL);
        free(p);
        tu_rmtree(dir);
        free(dir);
    }
    /* a truncated shard of a sharded checkpoint */
    char *dir = copy_fixture("gqa");
    truncate_file(dir, "model-00007-of-00013.safetensors", 100);
    char *p = tu_path(dir, "model-00007-of-00013.safetensors");
    expect_refused(dir, p, "past the end", NULL, NULL);
    free(p);
    tu_rmtree(dir);
    free(dir);
}

static void test_config_disagrees(void **state)
{
    (void)state;
    const struct {
        const char *fixture, *key, *value;
        const char *tensor, *got, *want;
    } cases[] = {
        {"mha", "hidden_size", "128", "'model.embed_tokens.weight'", "[512, 64]", "[512, 128]"},
        {"mha", "vocab_size", "500", "'model.embed_tokens.weight'", "[512, 64]", "[500, 64]"},
        {"mha", "intermediate_size", "128", "'model.layers.0.mlp.gate_proj.weight'", "[160, 64]", "[128, 64]"},
        {"mha", "num_key_value_heads", "2", "'model.layers.0.self_attn.k_proj.weight'", "[64, 64]", "[32, 64]"},
        {"gqa", "head_dim", "8", "'model.layers.0.self_attn.q_proj.weight'", "[96, 96]", "[48, 96]"},
        {"gqa", "num_key_value_heads", "3", "'model.layers.0.self_attn.k_proj.weight'", "[32, 96]", "[48, 96]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *dir = copy_fixture(cases[i].fixture);
        edit_config(dir, cases[i].key, cases[i].value);
        expect_refused(dir, dir, cases[i].tensor, cases[i].got, cases[i].want);
        /* the file holding the tensor is named, not just the directory */
        assert_non_null(strstr(qh_last_error(), ".safetensors"));
        tu_rmtree(dir);
        free(dir);
    }
    /* a layer more than the checkpoint has */
    char *dir = copy_fixture("mha");
    edit_config(dir, "num_hidden_layers", "3");
    expect_refused(dir, dir, "'model.layers.2.", "missing", NULL);
    tu_rmtree(dir);
    free(dir);
}

static void test_tensor_missing(void **state)
{
    (void)state;
    const char *gone[] = {"model.layers.1.mlp.up_proj.weight", "model.norm.weight", "model.embed_tokens.weight",
                          "model.layers.0.input_layernorm.weight"};
    for (int i = 0; i < 4; i++) {
        char *dir = copy_fixture("mha");
        char *single = tu_path(dir, "model.safetensors");
        tw_list l = tw_load(single);
        if (i == 0) { /* renamed */
            tw_tensor *t = tw_find(&l, gone[i]);
            snprintf(t->name, sizeof t->name, "model.layers.1.mlp.upp_proj.weight");
        } else {
            tw_remove(&l, gone[i]);
        }
        tw_write(dir, "model.safetensors", &l);
        char quoted[200];
        /* without model.embed_tokens.weight the checkpoint reads as a bare LlamaModel */
        snprintf(quoted, sizeof quoted, "'%s'", i == 2 ? "embed_tokens.weight" : gone[i]);
        expect_refused(dir, dir, quoted, "missing", NULL);
        tw_free(&l);
        free(single);
        tu_rmtree(dir);
        free(dir);
    }
}

static void test_wrong_dtype(void **state)
{
    (void)state;
    const struct {
        const char *name;
        qh_dtype dtype;
    } cases[] = {
        {"model.layers.0.self_attn.q_proj.weight", QH_I32},
        {"model.norm.weight", QH_I32},
        {"model.layers.1.mlp.down_proj.weight", QH_F64},
        {"model.embed_tokens.weight", QH_U8},
        {"score.weight", QH_I32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *dir = copy_fixture("mha");
        char *single = tu_path(dir, "model.safetensors");
        tw_list l = tw_load(single);
        tw_tensor *t = tw_find(&l, cases[i].name);
        assert_non_null(t);
        tw_tensor copy = *t;
        t->data = NULL;
        tw_remove(&l, cases[i].name); /* frees nothing: data moved to copy */
        tw_add(&l, copy.name, cases[i].dtype, copy.ndim, copy.shape, NULL);
        free(copy.data);
        tw_write(dir, "model.safetensors", &l);
        char quoted[200];
        snprintf(quoted, sizeof quoted, "'%s'", cases[i].name);
        expect_refused(dir, single, quoted, qh_dtype_name(cases[i].dtype), "dtype");
        tw_free(&l);
        free(single);
        tu_rmtree(dir);
        free(dir);
    }
}

/* score.weight of the wrong rank or with no rows. */
static void test_bad_score(void **state)
{
    (void)state;
    for (int c = 0; c < 3; c++) {
        char *dir = copy_fixture("mha");
        char *single = tu_path(dir, "model.safetensors");
        tw_list l = tw_load(single);
        tw_remove(&l, "score.weight");
        const int64_t s1[1] = {64}, s2[2] = {0, 64}, s3[2] = {3, 32};
        const int64_t *shapes[3] = {s1, s2, s3};
        tw_add(&l, "score.weight", QH_F16, c == 0 ? 1 : 2, shapes[c], NULL);
        tw_write(dir, "model.safetensors", &l);
        expect_refused(dir, single, "score.weight", NULL, NULL);
        tw_free(&l);
        free(single);
        tu_rmtree(dir);
        free(dir);
    }
}

/* config.json's id2label says how many labels the head has; transformers refuses a
 * score.weight with another row count (size mismatch), and so must qhead. */
static void test_score_disagrees_with_labels(void **state)
{
    (void)state;
    char *dir = copy_fixture("mha"); /* id2label: 3 labels */
    char *single = tu_path(dir, "model.safetensors");
    tw_list l = tw_load(single);
    tw_remove(&l, "score.weight");
    const int64_t shape[2] = {4, 64};
    tw_add(&l, "score.weight", QH_F16, 2, shape, NULL);
    tw_write(dir, "model.safetensors", &l);
    tw_free(&l);
    qh_llama_model *m = NULL;
    qh_clear_error();
    int rc = qh_llama_load(dir, g_be, &m);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", rc ? qh_last_error() : "accepted");
    printf("# %s\n", msg);
    int labels = m ? (int)m->score.shape[0] : 0, cfg_labels = m ? m->cfg.num_labels : 0;
    qh_llama_free(m);
    int names = strstr(msg, single) && strstr(msg, "score.weight");
    free(single);
    tu_rmtree(dir);
    free(dir);
    if (rc == QH_OK) fail_msg("accepted score.weight with %d rows while id2label has %d labels", labels, cfg_labels);
    assert_int_equal(rc, QH_EINPUT);
    assert_true(names);
}

/* ---- sharded checkpoints: the index ---- */

static void set_weight_map(const char *dir, const char *tensor, const char *value_json)
{
    cJSON *j = read_json(dir, "model.safetensors.index.json");
    cJSON *map = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    assert_non_null(map);
    if (value_json) cJSON_ReplaceItemInObjectCaseSensitive(map, tensor, cJSON_Parse(value_json));
    else cJSON_DeleteItemFromObjectCaseSensitive(map, tensor);
    write_json(dir, "model.safetensors.index.json", j);
    cJSON_Delete(j);
}

static void test_index_missing_shard(void **state)
{
    (void)state;
    char *dir = copy_fixture("gqa");
    set_weight_map(dir, "model.layers.1.mlp.up_proj.weight", "\"model-00099-of-00013.safetensors\"");
    char *p = tu_path(dir, "model-00099-of-00013.safetensors");
    expect_refused(dir, p, "cannot open", NULL, NULL);
    free(p);
    tu_rmtree(dir);
    free(dir);
    /* a shard file deleted from the directory */
    dir = copy_fixture("gqa");
    remove_file(dir, "model-00013-of-00013.safetensors");
    p = tu_path(dir, "model-00013-of-00013.safetensors");
    expect_refused(dir, p, "cannot open", NULL, NULL);
    free(p);
    tu_rmtree(dir);
    free(dir);
}

static void test_index_escapes_directory(void **state)
{
    (void)state;
    const char *bad[] = {"\"../x\"", "\"../gqa/model-00001-of-00013.safetensors\"", "\"/etc/passwd\"",
                         "\"sub/model.safetensors\"", "\"\"", "5", "null", "[\"model-00001-of-00013.safetensors\"]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *dir = copy_fixture("gqa");
        set_weight_map(dir, "model.embed_tokens.weight", bad[i]);
        char *idx = tu_path(dir, "model.safetensors.index.json");
        expect_refused(dir, idx, "model.embed_tokens.weight", "shard", NULL);
        free(idx);
        tu_rmtree(dir);
        free(dir);
    }
    /* ".." has no slash but is a directory, and config.json is not a safetensors file */
    const char *odd[] = {"\"..\"", "\"config.json\"", "\"model.safetensors.index.json\""};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        char *dir = copy_fixture("gqa");
        set_weight_map(dir, "model.norm.weight", odd[i]);
        expect_refused(dir, dir, NULL, NULL, NULL);
        tu_rmtree(dir);
        free(dir);
    }
}

static void test_index_wrong_shard(void **state)
{
    (void)state;
    char *dir = copy_fixture("gqa");
    set_weight_map(dir, "model.embed_tokens.weight", "\"model-00002-of-00013.safetensors\"");
    char *idx = tu_path(dir, "model.safetensors.index.json");
    expect_refused(dir, idx, "'model.embed_tokens.weight'", "model-00002-of-00013.safetensors", "not there");
    free(idx);
    tu_rmtree(dir);
    free(dir);
    /* a tensor the index lists that no shard holds */
    dir = copy_fixture("gqa");
    set_weight_map(dir, "model.norm.weight", NULL);
    cJSON *j = read_json(dir, "model.safetensors.index.json");
    cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(j, "weight_map"), "model.extra.weight",
                            "model-00001-of-00013.safetensors");
    write_json(dir, "model.safetensors.index.json", j);
    cJSON_Delete(j);
    idx = tu_path(dir, "model.safetensors.index.json");
    expect_refused(dir, idx, "'model.extra.weight'", "not there", NULL);
    free(idx);
    tu_rmtree(dir);
    free(dir);
}

/* A shard the index never mentions is never opened: the tensors there are missing. */
static void test_index_omits_tensor(void **state)
{
    (void)state;
    char *dir = copy_fixture("gqa");
    cJSON *j = read_json(dir, "model.safetensors.index.json");
    cJSON *map = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    cJSON *it = map->child, *next;
    char victim_shard[128] = "";
    for (; it; it = next) {
        next = it->next;
        if (!strcmp(it->string, "model.norm.weight")) snprintf(victim_shard, sizeof victim_shard, "%s", it->valuestring);
    }
    assert_true(victim_shard[0]);
    /* drop every entry pointing at the shard holding model.norm.weight */
    for (it = map->child; it; it = next) {
        next = it->next;
        if (!strcmp(it->valuestring, victim_shard)) cJSON_Delete(cJSON_DetachItemViaPointer(map, it));
    }
    write_json(dir, "model.safetensors.index.json", j);
    cJSON_Delete(j);
    expect_refused(dir, dir, "'model.norm.weight'", "missing", NULL);
    tu_rmtree(dir);
    free(dir);
}

static void test_index_not_json(void **state)
{
    (void)state;
    const char *bad[] = {"{\"weight_map\": {", "not json", "[]", "{\"metadata\": {}}", "{\"weight_map\": []}",
                         "{\"weight_map\": \"model-00001-of-00013.safetensors\"}", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *dir = copy_fixture("gqa");
        char *idx = tu_write_file(dir, "model.safetensors.index.json", bad[i], strlen(bad[i]));
        expect_refused(dir, idx, "index", NULL, NULL);
        free(idx);
        tu_rmtree(dir);
        free(dir);
    }
    char *dir = copy_fixture("gqa");
    char *idx = tu_write_file(dir, "model.safetensors.index.json", "{\"weight_map\": {}}", 18);
    expect_refused(dir, idx, "empty", NULL, NULL);
    free(idx);
    tu_rmtree(dir);
    free(dir);
}

/* The sharded fixture's tensors rewritten into one file load the same model. */
static void test_shards_merged(void **state)
{
    (void)state;
    char *dir = copy_fixture("gqa");
    tw_list all = {0};
    for (int s = 1; s <= 13; s++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-00013.safetensors", s);
        char *p = tu_path(dir, name);
        tw_list l = tw_load(p);
        for (size_t i = 0; i < l.n; i++) tw_add(&all, l.t[i].name, l.t[i].dtype, l.t[i].ndim, l.t[i].shape, l.t[i].data);
        tw_free(&l);
        assert_int_equal(unlink(p), 0);
        free(p);
    }
    remove_file(dir, "model.safetensors.index.json");
    tw_write(dir, "model.safetensors", &all);
    qh_llama_model *merged = load_ok(dir);
    qh_llama_model *orig = load_ok(QHEAD_FIXTURES "/llama/gqa");
    assert_true(merged->has_score);
    assert_string_not_equal(merged->ckpt->fingerprint, orig->ckpt->fingerprint);
    int n1, n2;
    float *h1 = run_forward(merged, &n1), *h2 = run_forward(orig, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(h1, h2, sizeof(float) * (size_t)n1);
    free(h1);
    free(h2);
    qh_llama_free(orig);
    qh_llama_free(merged);
    tw_free(&all);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_mha),
        cmocka_unit_test(test_load_gqa),
        cmocka_unit_test(test_bare_llama_model),
        cmocka_unit_test(test_lm_head_ignored),
        cmocka_unit_test(test_shards_merged),
        cmocka_unit_test(test_missing_directory),
        cmocka_unit_test(test_missing_config),
        cmocka_unit_test(test_no_weights),
        cmocka_unit_test(test_weights_not_a_file),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_config_disagrees),
        cmocka_unit_test(test_tensor_missing),
        cmocka_unit_test(test_wrong_dtype),
        cmocka_unit_test(test_bad_score),
        cmocka_unit_test(test_index_missing_shard),
        cmocka_unit_test(test_index_escapes_directory),
        cmocka_unit_test(test_index_wrong_shard),
        cmocka_unit_test(test_index_omits_tensor),
        cmocka_unit_test(test_index_not_json),
        cmocka_unit_test(test_score_disagrees_with_labels),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
