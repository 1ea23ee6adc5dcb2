/* config.json parsing: the transformers 4.x and 5.x spellings, defaults, and refusals of
 * everything qhead cannot run. Every refusal is QH_EINPUT with a message naming the file and
 * the offending field. */
#include "testutil.h"

#include "error.h"
#include "llama_config.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PATH "/models/llama-x/config.json"

/* transformers 4.x spelling: torch_dtype, top-level rope_theta, no num_key_value_heads, no head_dim. */
static const char *BASE4 = "{\"architectures\":[\"LlamaForSequenceClassification\"],\"model_type\":\"llama\","
                           "\"hidden_act\":\"silu\",\"hidden_size\":64,\"intermediate_size\":160,"
                           "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":512,"
                           "\"max_position_embeddings\":256,\"rms_norm_eps\":1e-05,\"rope_theta\":250000.0,"
                           "\"torch_dtype\":\"bfloat16\",\"attention_bias\":false,\"mlp_bias\":false,"
                           "\"pad_token_id\":null,\"rope_scaling\":null,\"tie_word_embeddings\":false}";

/* transformers 5.x spelling: dtype, rope_parameters, head_dim, num_key_value_heads. */
static const char *BASE5 = "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_act\":\"silu\","
                           "\"hidden_size\":96,\"intermediate_size\":200,\"num_hidden_layers\":3,"
                           "\"num_attention_heads\":6,\"num_key_value_heads\":2,\"head_dim\":32,\"vocab_size\":700,"
                           "\"rms_norm_eps\":1e-05,\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"default\"},"
                           "\"dtype\":\"float32\",\"attention_bias\":false,\"mlp_bias\":false}";

/* base with key replaced by value (JSON text), or removed when value is NULL; malloc'd. */
static char *with(const char *base, const char *key, const char *value)
{
    cJSON *root = cJSON_Parse(base);
    assert_non_null(root);
    cJSON_DeleteItemFromObjectCaseSensitive(root, key);
    if (value) {
        cJSON *v = cJSON_Parse(value);
        if (!v) fail_msg("bad test JSON: %s", value);
        cJSON_AddItemToObject(root, key, v);
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static void parse_ok(const char *json, qh_llama_config *cfg)
{
    qh_clear_error();
    int rc = qh_llama_config_parse(PATH, json, cfg);
    if (rc) fail_msg("refused: %s\n  config: %s", qh_last_error(), json);
}

static void refuse_words(const char *json, const char *w1, const char *w2)
{
    qh_llama_config cfg;
    qh_clear_error();
    int rc = qh_llama_config_parse(PATH, json, &cfg);
    const char *msg = qh_last_error();
    printf("# %s\n", msg);
    if (rc != QH_EINPUT) fail_msg("expected QH_EINPUT, got %d (%s)\n  config: %s", rc, rc ? msg : "accepted", json);
    if (!strstr(msg, PATH)) fail_msg("message does not name the file: %s", msg);
    if (w1 && !strstr(msg, w1)) fail_msg("message lacks '%s': %s", w1, msg);
    if (w2 && !strstr(msg, w2)) fail_msg("message lacks '%s': %s", w2, msg);
}

static void refuse(const char *json, const char *word) { refuse_words(json, word, NULL); }

/* Refuse base with key set to value (NULL: removed); the message names word. */
static void refuse_with(const char *base, const char *key, const char *value, const char *word)
{
    char *j = with(base, key, value);
    refuse(j, word);
    free(j);
}

static void test_spelling_4x(void **state)
{
    (void)state;
    qh_llama_config c;
    parse_ok(BASE4, &c);
    assert_int_equal(c.hidden_size, 64);
    assert_int_equal(c.intermediate_size, 160);
    assert_int_equal(c.num_layers, 2);
    assert_int_equal(c.num_heads, 4);
    assert_int_equal(c.num_kv_heads, 4); /* absent: equal to num_attention_heads */
    assert_int_equal(c.head_dim, 16);    /* absent: hidden / heads */
    assert_int_equal(c.vocab_size, 512);
    assert_int_equal(c.max_position_embeddings, 256);
    assert_true(c.rms_norm_eps == 1e-5);
    assert_true(c.rope_theta == 250000.0);
    assert_int_equal(c.dtype, QH_BF16);
    assert_string_equal(c.architecture, "LlamaForSequenceClassification");
    assert_int_equal(c.num_labels, 0);
    /* 4.x rope_scaling with the default type is plain RoPE. */
    char *j = with(BASE4, "rope_scaling", "{\"type\":\"default\"}");
    parse_ok(j, &c);
    free(j);
}

static void test_spelling_5x(void **state)
{
    (void)state;
    qh_llama_config c;
    parse_ok(BASE5, &c);
    assert_int_equal(c.hidden_size, 96);
    assert_int_equal(c.num_heads, 6);
    assert_int_equal(c.num_kv_heads, 2);
    assert_int_equal(c.head_dim, 32); /* explicit, not hidden / heads */
    assert_int_equal(c.vocab_size, 700);
    assert_int_equal(c.num_layers, 3);
    assert_int_equal(c.max_position_embeddings, 2048); /* default */
    assert_true(c.rope_theta == 500000.0);
    assert_int_equal(c.dtype, QH_F32);
    assert_string_equal(c.architecture, "LlamaForCausalLM");
    /* 5.x dtype wins over a stale torch_dtype; a null dtype falls back to torch_dtype. */
    char *j = with(BASE5, "torch_dtype", "\"bfloat16\"");
    parse_ok(j, &c);
    assert_int_equal(c.dtype, QH_F32);
    char *k = with(j, "dtype", "null");
    parse_ok(k, &c);
    assert_int_equal(c.dtype, QH_BF16);
    free(j);
    free(k);
    /* rope_parameters without rope_theta: a top-level rope_theta, else the default. */
    j = with(BASE5, "rope_parameters", "{\"rope_type\":\"default\"}");
    parse_ok(j, &c);
    assert_true(c.rope_theta == 10000.0);
    k = with(j, "rope_theta", "1234.5");
    parse_ok(k, &c);
    assert_true(c.rope_theta == 1234.5);
    free(j);
    free(k);
    /* The committed fixtures. */
    assert_int_equal(qh_llama_config_load(QHEAD_FIXTURES "/llama/mha/config.json", &c), QH_OK);
    assert_int_equal(c.num_kv_heads, 4);
    assert_int_equal(c.dtype, QH_F16);
    assert_int_equal(qh_llama_config_load(QHEAD_FIXTURES "/llama/gqa/config.json", &c), QH_OK);
    assert_int_equal(c.head_dim, 16);
    assert_true(c.rope_theta == 500000.0);
}

static void test_defaults(void **state)
{
    (void)state;
    char *a = with(BASE4, "rope_theta", NULL);
    char *b = with(a, "rms_norm_eps", NULL);
    char *c_ = with(b, "torch_dtype", NULL);
    char *d = with(c_, "max_position_embeddings", NULL);
    char *e = with(d, "architectures", NULL);
    char *f = with(e, "model_type", NULL);
    qh_llama_config c;
    parse_ok(f, &c);
    assert_true(c.rope_theta == 10000.0);
    assert_true(c.rms_norm_eps == 1e-6);
    assert_int_equal(c.dtype, QH_F16);
    assert_int_equal(c.max_position_embeddings, 2048);
    assert_string_equal(c.architecture, "LlamaModel");
    /* null means absent too */
    char *g = with(BASE4, "rope_theta", "null");
    char *h = with(g, "rms_norm_eps", "null");
    parse_ok(h, &c);
    assert_true(c.rope_theta == 10000.0);
    assert_true(c.rms_norm_eps == 1e-6);
    free(a), free(b), free(c_), free(d), free(e), free(f), free(g), free(h);
}

static void test_dtypes(void **state)
{
    (void)state;
    const struct {
        const char *value;
        qh_dtype want;
    } ok[] = {{"\"float16\"", QH_F16}, {"\"bfloat16\"", QH_BF16}, {"\"float32\"", QH_F32}};
    qh_llama_config c;
    for (int i = 0; i < 3; i++) {
        char *j = with(BASE4, "torch_dtype", ok[i].value);
        parse_ok(j, &c);
        assert_int_equal(c.dtype, ok[i].want);
        free(j);
        j = with(BASE5, "dtype", ok[i].value);
        parse_ok(j, &c);
        assert_int_equal(c.dtype, ok[i].want);
        free(j);
    }
    refuse_with(BASE4, "torch_dtype", "\"float64\"", "float64");
    refuse_with(BASE5, "dtype", "\"int8\"", "int8");
    refuse_with(BASE5, "dtype", "\"F16\"", "dtype");
    refuse_with(BASE5, "dtype", "16", "dtype");
}

static void test_missing_required(void **state)
{
    (void)state;
    const char *req[] = {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"};
    for (int i = 0; i < 5; i++) {
        refuse_with(BASE4, req[i], NULL, req[i]);
        refuse_with(BASE5, req[i], NULL, req[i]);
        refuse_with(BASE4, req[i], "null", req[i]);
    }
    refuse("{}", "hidden_size");
}

/* Zero, negative, fractional, non-numeric and absurd values of every integer field. */
static void test_bad_values(void **state)
{
    (void)state;
    const char *fields[] = {"hidden_size",         "intermediate_size",       "num_hidden_layers", "num_attention_heads",
                            "vocab_size",          "num_key_value_heads",     "head_dim",          "max_position_embeddings"};
    const char *bad[] = {"0", "-1", "-64", "64.5", "1e-3", "\"64\"", "true", "[64]", "{}", "1e9", "2147483648", "1e300", "-1e300"};
    for (size_t f = 0; f < sizeof fields / sizeof *fields; f++)
        for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) refuse_with(BASE5, fields[f], bad[b], fields[f]);
    /* The absurd sizes the brief names. */
    refuse_with(BASE4, "vocab_size", "0", "vocab_size");
    refuse_with(BASE4, "hidden_size", "1000000000", "hidden_size");
    refuse_with(BASE4, "num_hidden_layers", "1000000", "num_hidden_layers");
    refuse_with(BASE4, "vocab_size", "100000000", "vocab_size");
    refuse_with(BASE4, "intermediate_size", "1000000000", "intermediate_size");
    /* Heads x head_dim beyond any model. */
    char *j = with(BASE5, "num_attention_heads", "4096");
    char *k = with(j, "num_key_value_heads", "4096");
    char *l = with(k, "head_dim", "4096");
    refuse(l, "absurd");
    free(j), free(k), free(l);
    /* Floating fields. */
    refuse_with(BASE4, "rms_norm_eps", "0", "rms_norm_eps");
    refuse_with(BASE4, "rms_norm_eps", "-1e-6", "rms_norm_eps");
    refuse_with(BASE4, "rms_norm_eps", "1", "rms_norm_eps");
    refuse_with(BASE4, "rms_norm_eps", "\"1e-6\"", "rms_norm_eps");
    refuse_with(BASE4, "rope_theta", "0", "rope_theta");
    refuse_with(BASE4, "rope_theta", "-10000", "rope_theta");
    refuse_with(BASE4, "rope_theta", "1e300", "rope_theta");
    refuse_with(BASE4, "rope_theta", "\"10000\"", "rope_theta");
    refuse_with(BASE5, "rope_parameters", "{\"rope_theta\":-1,\"rope_type\":\"default\"}", "rope_theta");
    refuse_with(BASE5, "rope_parameters", "{\"rope_theta\":\"x\",\"rope_type\":\"default\"}", "rope_theta");
    refuse_with(BASE5, "rope_parameters", "5", "rope_parameters");
    /* Values that must pass: integral floats are integers in JSON. */
    qh_llama_config c;
    j = with(BASE4, "hidden_size", "64.0");
    parse_ok(j, &c);
    assert_int_equal(c.hidden_size, 64);
    free(j);
}

static void test_head_geometry(void **state)
{
    (void)state;
    /* heads do not divide hidden (and no head_dim to say otherwise) */
    refuse_with(BASE4, "num_attention_heads", "6", "num_attention_heads");
    char *j = with(BASE4, "num_attention_heads", "6");
    refuse(j, "hidden_size");
    free(j);
    /* kv heads do not divide heads; more kv heads than heads */
    refuse_with(BASE5, "num_key_value_heads", "4", "num_key_value_heads");
    refuse_with(BASE5, "num_key_value_heads", "12", "num_key_value_heads");
    /* odd head_dim: explicit, and implied by hidden / heads (60 / 4 = 15) */
    refuse_with(BASE5, "head_dim", "15", "head_dim");
    j = with(BASE4, "hidden_size", "60");
    refuse(j, "head_dim");
    free(j);
    /* an explicit head_dim lifts the divisibility requirement */
    qh_llama_config c;
    j = with(BASE5, "hidden_size", "100");
    parse_ok(j, &c);
    assert_int_equal(c.head_dim, 32);
    free(j);
    /* GQA extremes: one kv head, and kv == heads */
    j = with(BASE5, "num_key_value_heads", "1");
    parse_ok(j, &c);
    assert_int_equal(c.num_kv_heads, 1);
    free(j);
    j = with(BASE5, "num_key_value_heads", "6");
    parse_ok(j, &c);
    free(j);
}

/* transformers writes "head_dim": null in some configs; null means absent everywhere else in
 * this parser, so the divisibility check must still apply (64 / 6 would silently give 10). */
static void test_head_dim_null(void **state)
{
    (void)state;
    char *j = with(BASE4, "num_attention_heads", "6");
    char *k = with(j, "head_dim", "null");
    refuse(k, "num_attention_heads");
    free(j), free(k);
}

static void test_identity(void **state)
{
    (void)state;
    refuse_with(BASE4, "model_type", "\"gpt2\"", "gpt2");
    refuse_with(BASE4, "model_type", "\"mistral\"", "model_type");
    refuse_with(BASE4, "model_type", "7", "model_type");
    refuse_with(BASE4, "architectures", "[\"MistralForCausalLM\"]", "MistralForCausalLM");
    refuse_with(BASE4, "architectures", "[\"GPT2LMHeadModel\",\"LlamaForCausalLM\"]", "GPT2LMHeadModel");
    refuse_with(BASE4, "hidden_act", "\"gelu\"", "hidden_act");
    refuse_with(BASE4, "hidden_act", "null", "hidden_act");
    refuse_with(BASE4, "attention_bias", "true", "attention_bias");
    refuse_with(BASE5, "mlp_bias", "true", "mlp_bias");
    const char *archs[] = {"LlamaForCausalLM", "LlamaForSequenceClassification", "LlamaModel"};
    for (int i = 0; i < 3; i++) {
        char v[80];
        snprintf(v, sizeof v, "[\"%s\"]", archs[i]);
        char *j = with(BASE4, "architectures", v);
        qh_llama_config c;
        parse_ok(j, &c);
        assert_string_equal(c.architecture, archs[i]);
        free(j);
    }
}

static void test_rope_types(void **state)
{
    (void)state;
    const char *types[] = {"linear", "yarn", "dynamic", "llama3", "longrope"};
    for (int i = 0; i < 5; i++) {
        char v[160];
        snprintf(v, sizeof v, "{\"type\":\"%s\",\"factor\":4.0}", types[i]);
        refuse_with(BASE4, "rope_scaling", v, types[i]);
        snprintf(v, sizeof v, "{\"rope_type\":\"%s\",\"factor\":4.0}", types[i]);
        refuse_with(BASE4, "rope_scaling", v, types[i]);
        snprintf(v, sizeof v, "{\"rope_theta\":10000.0,\"rope_type\":\"%s\",\"factor\":4.0}", types[i]);
        refuse_with(BASE5, "rope_parameters", v, types[i]);
    }
    refuse_with(BASE5, "rope_parameters", "{\"rope_theta\":10000.0,\"rope_type\":3}", "rope");
}

static void test_not_json(void **state)
{
    (void)state;
    refuse("", "JSON");
    refuse("{\"hidden_size\": 64,", "JSON");
    refuse("not json at all", "JSON");
    refuse("[1, 2, 3]", "object");
    refuse("[{\"hidden_size\": 64}]", "object");
    refuse("\"config\"", "object");
    refuse("null", "object");
    refuse("42", "object");
}

static void test_labels(void **state)
{
    (void)state;
    qh_llama_config c;
    char *j = with(BASE4, "id2label", "{\"1\":\"positive\",\"0\":\"negative\",\"2\":\"neutral\"}");
    parse_ok(j, &c);
    assert_int_equal(c.num_labels, 3);
    assert_string_equal(c.label_names[0], "negative");
    assert_string_equal(c.label_names[1], "positive");
    assert_string_equal(c.label_names[2], "neutral");
    free(j);
    j = with(BASE4, "id2label", "{}");
    parse_ok(j, &c);
    assert_int_equal(c.num_labels, 0);
    free(j);
    /* 64 labels is the limit */
    char big[4096];
    size_t used = (size_t)snprintf(big, sizeof big, "{");
    for (int i = 0; i < 65; i++) {
        used += (size_t)snprintf(big + used, sizeof big - used, "%s\"%d\":\"L%d\"", i ? "," : "", i, i);
        if (i == 63) {
            char tmp[sizeof big + 2];
            snprintf(tmp, sizeof tmp, "%s}", big);
            j = with(BASE4, "id2label", tmp);
            parse_ok(j, &c);
            assert_int_equal(c.num_labels, 64);
            assert_string_equal(c.label_names[63], "L63");
            free(j);
        }
    }
    snprintf(big + used, sizeof big - used, "}");
    refuse_with(BASE4, "id2label", big, "id2label");
    /* ids must be 0..n-1 and names strings */
    refuse_with(BASE4, "id2label", "{\"0\":\"a\",\"2\":\"c\"}", "id2label");
    refuse_with(BASE4, "id2label", "{\"x\":\"a\"}", "id2label");
    refuse_with(BASE4, "id2label", "{\"-1\":\"a\"}", "id2label");
    refuse_with(BASE4, "id2label", "{\"0\":5}", "id2label");
    refuse_with(BASE4, "id2label", "{\"1.0\":\"a\",\"0\":\"b\"}", "id2label");
}

/* Every id must appear exactly once: a repeated id (legal JSON) or an empty key, which
 * strtol reads as 0, would leave a label without a name. */
static void test_labels_duplicate_ids(void **state)
{
    (void)state;
    /* cJSON keeps duplicate keys, so write the text by hand. */
    const char *dup = "{\"hidden_size\":64,\"intermediate_size\":160,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
                      "\"vocab_size\":512,\"id2label\":{\"0\":\"a\",\"0\":\"b\"}}";
    refuse(dup, "id2label");
    char *j = with(BASE4, "id2label", "{\"\":\"a\",\"1\":\"b\"}");
    refuse(j, "id2label");
    free(j);
}

static void test_load_file(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("cfg");
    char *missing = tu_path(dir, "config.json");
    qh_llama_config c;
    qh_clear_error();
    assert_int_equal(qh_llama_config_load(missing, &c), QH_EINPUT);
    printf("# %s\n", qh_last_error());
    assert_non_null(strstr(qh_last_error(), missing));
    assert_non_null(strstr(qh_last_error(), "cannot open"));
    /* a directory in its place */
    qh_clear_error();
    assert_int_equal(qh_llama_config_load(dir, &c), QH_EINPUT);
    assert_non_null(strstr(qh_last_error(), dir));
    /* a file that is fine, and one that is not: the message carries the real path */
    char *p = tu_write_file(dir, "config.json", BASE5, strlen(BASE5));
    assert_int_equal(qh_llama_config_load(p, &c), QH_OK);
    assert_int_equal(c.head_dim, 32);
    free(p);
    char *bad = with(BASE5, "vocab_size", NULL);
    p = tu_write_file(dir, "config.json", bad, strlen(bad));
    qh_clear_error();
    assert_int_equal(qh_llama_config_load(p, &c), QH_EINPUT);
    assert_non_null(strstr(qh_last_error(), p));
    assert_non_null(strstr(qh_last_error(), "vocab_size"));
    free(p);
    free(bad);
    /* empty file */
    p = tu_write_file(dir, "config.json", "", 0);
    qh_clear_error();
    assert_int_equal(qh_llama_config_load(p, &c), QH_EINPUT);
    assert_non_null(strstr(qh_last_error(), p));
    free(p);
    free(missing);
    tu_rmtree(dir);
    free(dir);
}

/* A named pipe as config.json: refuse, do not block forever (run in a child so a hang fails). */
static void test_load_fifo(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("cfg");
    char *path = tu_path(dir, "config.json");
    assert_int_equal(mkfifo(path, 0600), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        qh_llama_config c;
        int rc = qh_llama_config_load(path, &c);
        _exit(rc == QH_EINPUT && strstr(qh_last_error(), path) ? 0 : 1);
    }
    int status = 0, done = 0;
    for (int i = 0; i < 100 && !done; i++) { /* 5 seconds */
        done = waitpid(pid, &status, WNOHANG) == pid;
        if (!done) nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    tu_rmtree(dir);
    free(dir);
    free(path);
    if (!done) fail_msg("qh_llama_config_load on a FIFO still blocked after 5 s");
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spelling_4x),
        cmocka_unit_test(test_spelling_5x),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_head_geometry),
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_rope_types),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_head_dim_null),
        cmocka_unit_test(test_labels_duplicate_ids),
        cmocka_unit_test(test_load_fifo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
