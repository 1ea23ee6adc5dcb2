/* qhead-forward end to end: reproduces the transformers fixtures through the CLI, applies
 * head files, and answers every bad input with one line on stderr and exit status 2. */
#include "testutil.h"

#include "error.h"
#include "head.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIN QHEAD_BIN_DIR "/qhead-forward"
#define MHA QHEAD_FIXTURES "/llama/mha"
#define GQA QHEAD_FIXTURES "/llama/gqa"

/* Run qhead-forward; returns exit status, JSON output parsed into *json when exit is 0. */
static int run_forward(const char *args, cJSON **json, char **err)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s --backend cpu %s", BIN, args);
    char *out = NULL, *e = NULL;
    int rc = tu_run(cmd, &out, &e);
    if (json) *json = rc == 0 ? cJSON_Parse(out) : NULL;
    if (err) *err = e;
    else free(e);
    free(out);
    return rc;
}

static double rel_err_json(const cJSON *arr, const double *want, int n)
{
    assert_int_equal(cJSON_GetArraySize(arr), n);
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        double d = cJSON_GetArrayItem(arr, i)->valuedouble - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    return sqrt(num / den);
}

static void check_fixture_via_cli(const char *dir, int n_labels, int hidden)
{
    char ref_path[1024];
    snprintf(ref_path, sizeof ref_path, "%s/reference.safetensors", dir);
    qh_safetensors *ref;
    assert_int_equal(qh_st_open(ref_path, &ref), QH_OK);
    const int32_t *ids = qh_st_data(ref, qh_st_find(ref, "ids"));
    const double *hid = qh_st_data(ref, qh_st_find(ref, "hidden"));
    const double *lg = qh_st_data(ref, qh_st_find(ref, "logits"));
    const int lengths[] = {1, 2, 17, 64, 100};
    for (size_t k = 0; k < sizeof lengths / sizeof *lengths; k++) {
        int len = lengths[k];
        size_t start = (size_t)(len - 1) * len / 2; /* sequences of lengths 1..100 back to back */
        char args[4096];
        int used = snprintf(args, sizeof args, "--model %s --ids ", dir);
        for (int i = 0; i < len; i++) used += snprintf(args + used, sizeof args - (size_t)used, i ? ",%d" : "%d", ids[start + (size_t)i]);
        cJSON *json;
        char *err;
        int rc = run_forward(args, &json, &err);
        if (rc != 0) fail_msg("exit %d: %s", rc, err);
        free(err);
        assert_non_null(json);
        double eh = rel_err_json(cJSON_GetObjectItem(json, "hidden"), hid + (size_t)(len - 1) * hidden, hidden);
        double el = rel_err_json(cJSON_GetObjectItem(json, "logits"), lg + (size_t)(len - 1) * n_labels, n_labels);
        assert_true(eh <= 2e-3);
        assert_true(el <= 2e-3);
        cJSON_Delete(json);
    }
    qh_st_close(ref);
}

static void test_reproduces_mha_fixture(void **state) { (void)state, check_fixture_via_cli(MHA, 3, 64); }
static void test_reproduces_gqa_fixture(void **state) { (void)state, check_fixture_via_cli(GQA, 4, 96); }

/* A trained head file (HDF5) replaces score.weight; logits = W h + b from the printed hidden. */
static void test_head_file(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("head");
    char *path = tu_path(dir, "head.h5");
    qh_head *h;
    assert_int_equal(qh_head_create(2, 96, 1, &h), QH_OK);
    uint64_t rng = 7;
    for (int i = 0; i < 2 * 96; i++) h->weight[i] = (float)tu_rand_normal(&rng);
    h->bias[0] = 0.5f, h->bias[1] = -2.0f;
    snprintf(h->label_names[0], 64, "negative");
    assert_int_equal(qh_head_save(h, path), QH_OK);
    qh_head *back;
    assert_int_equal(qh_head_load(path, &back), QH_OK);
    assert_int_equal(back->num_labels, 2);
    assert_string_equal(back->label_names[0], "negative");
    assert_memory_equal(back->weight, h->weight, sizeof(float) * 2 * 96);
    assert_true(back->bias && back->bias[1] == -2.0f);
    char args[2048];
    snprintf(args, sizeof args, "--model %s --ids 1,2,3,4,5 --head %s", GQA, path);
    cJSON *json;
    assert_int_equal(run_forward(args, &json, NULL), 0);
    const cJSON *hid = cJSON_GetObjectItem(json, "hidden"), *lg = cJSON_GetObjectItem(json, "logits");
    assert_int_equal(cJSON_GetArraySize(lg), 2);
    for (int l = 0; l < 2; l++) {
        double acc = h->bias[l];
        for (int i = 0; i < 96; i++) acc += h->weight[l * 96 + i] * cJSON_GetArrayItem(hid, i)->valuedouble;
        assert_true(fabs(acc - cJSON_GetArrayItem(lg, l)->valuedouble) <= 1e-4 * (1 + fabs(acc)));
    }
    cJSON_Delete(json);
    /* a head of the wrong width is refused, naming the file */
    char *err;
    snprintf(args, sizeof args, "--model %s --ids 1,2 --head %s", MHA, path);
    assert_int_equal(run_forward(args, NULL, &err), 2);
    assert_non_null(strstr(err, path));
    free(err);
    qh_head_free(h);
    qh_head_free(back);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

static void test_no_head_gives_null_logits(void **state)
{
    (void)state;
    /* a bare LlamaModel copy of the fixture: same weights without score.weight */
    char *dir = tu_mkdtemp("nohead");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cp %s/config.json %s/", MHA, dir);
    assert_int_equal(system(cmd), 0);
    /* rewrite model.safetensors without score.weight using our reader */
    qh_safetensors *st;
    assert_int_equal(qh_st_open(MHA "/model.safetensors", &st), QH_OK);
    cJSON *hdr = cJSON_CreateObject();
    uint64_t off = 0;
    for (size_t i = 0; i < st->n_tensors; i++) {
        const qh_st_tensor *t = &st->tensors[i];
        if (!strcmp(t->name, "score.weight")) continue;
        cJSON *e = cJSON_AddObjectToObject(hdr, t->name);
        cJSON_AddStringToObject(e, "dtype", qh_dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        off += t->end - t->begin;
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
    }
    char *text = cJSON_PrintUnformatted(hdr);
    size_t hl = (strlen(text) + 7) / 8 * 8;
    char *path = tu_path(dir, "model.safetensors");
    FILE *fp = fopen(path, "wb");
    uint64_t le = hl;
    fwrite(&le, 8, 1, fp);
    fwrite(text, 1, strlen(text), fp);
    for (size_t i = strlen(text); i < hl; i++) fputc(' ', fp);
    for (size_t i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, "score.weight"))
            fwrite(qh_st_data(st, &st->tensors[i]), 1, st->tensors[i].end - st->tensors[i].begin, fp);
    fclose(fp);
    free(text);
    cJSON_Delete(hdr);
    qh_st_close(st);
    char args[2048];
    snprintf(args, sizeof args, "--model %s --ids 1,2,3", dir);
    cJSON *json;
    assert_int_equal(run_forward(args, &json, NULL), 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(json, "logits")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(json, "hidden")), 64);
    cJSON_Delete(json);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* Copy the mha fixture into a temp dir and break it with a shell snippet run inside it. */
static void expect_refusal(const char *breakage, const char *extra_args, const char *must_mention)
{
    char *dir = tu_mkdtemp("bad");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cp -r %s/. %s/ && cd %s && %s", MHA, dir, dir, breakage);
    assert_int_equal(system(cmd), 0);
    char args[4096];
    snprintf(args, sizeof args, "--model %s %s", dir, extra_args);
    char *err;
    int rc = run_forward(args, NULL, &err);
    if (rc != 2 || tu_count_lines(err) != 1 || !strstr(err, must_mention))
        fail_msg("breakage '%s': exit %d, stderr: %s", breakage, rc, err);
    free(err);
    tu_rmtree(dir);
    free(dir);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    expect_refusal("true", "--ids 1,9999", "outside the vocabulary");
    expect_refusal("true", "--ids 1,,2", "--ids");
    expect_refusal("true", "--ids -1", "--ids");
    expect_refusal("true", "--ids 1 --bogus", "--bogus");
    expect_refusal("true", "", "--ids");
    expect_refusal("rm config.json", "--ids 1", "config.json");
    expect_refusal("rm model.safetensors", "--ids 1", "no model.safetensors");
    expect_refusal("truncate -s 1000 model.safetensors", "--ids 1", "model.safetensors");
    expect_refusal("truncate -s 4 model.safetensors", "--ids 1", "truncated");
    expect_refusal("printf '\\377\\377\\377\\377\\377\\377\\0\\0' | dd of=model.safetensors conv=notrunc 2>/dev/null",
                   "--ids 1", "past the end");
    expect_refusal("sed -i 's/\"hidden_size\": 64/\"hidden_size\": 128/' config.json", "--ids 1", "config.json says");
    expect_refusal("sed -i '/\"vocab_size\"/d' config.json", "--ids 1", "vocab_size");
    expect_refusal("sed -i 's/\"num_attention_heads\": 4/\"num_attention_heads\": 3/' config.json", "--ids 1",
                   "divide");
    expect_refusal("echo garbage > head.h5", "--ids 1 --head head.h5", "head.h5");
    expect_refusal("true", "--ids 1 --head /no/such/head.h5", "/no/such/head.h5");
    expect_refusal("true", "--ids 1 --backend tpu", "--backend");
    /* a missing model directory */
    char *err;
    assert_int_equal(run_forward("--model /no/such/model --ids 1", NULL, &err), 2);
    assert_non_null(strstr(err, "/no/such/model"));
    free(err);
}

static void test_help(void **state)
{
    (void)state;
    char *out;
    assert_int_equal(tu_run(BIN " --help", &out, NULL), 0);
    assert_non_null(strstr(out, "--model"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reproduces_mha_fixture), cmocka_unit_test(test_reproduces_gqa_fixture),
        cmocka_unit_test(test_head_file),              cmocka_unit_test(test_no_head_gives_null_logits),
        cmocka_unit_test(test_bad_inputs),             cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
