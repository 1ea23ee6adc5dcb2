/* The README's offline pipeline under ctest: qhead-make-demo, train-head, quantize --bits 8,
 * then evaluate on fp16, int8 and nf4 (nf4 quantized on the way). Reports must parse and hold
 * the numbers stdout shows; bad inputs exit 2. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIN QHEAD_BIN_DIR

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp("evaluate");
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "%s/qhead-make-demo --out '%s/demo' --train 600 --val 100 --test 300 >/dev/null && "
             "%s/train-head --backend cpu --model '%s/demo/model' --data '%s/demo/sentiment' --out '%s/out' --epochs 3 "
             "--lr 3e-3 >/dev/null && "
             "%s/quantize --bits 8 --model '%s/demo/model' --out '%s/out' >/dev/null",
             BIN, dir, BIN, dir, dir, dir, BIN, dir, dir);
    char *err = NULL;
    int rc = tu_run(cmd, NULL, &err);
    if (rc) fprintf(stderr, "setup failed: %s\n", err);
    free(err);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

static int evaluate(const char *extra, char **so, char **se)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/evaluate --backend cpu --model '%s/demo/model' --data '%s/demo/sentiment' --out '%s/out' %s",
             BIN, dir, dir, dir, extra);
    return tu_run(cmd, so, se);
}

static char *slurp(const char *name)
{
    char cmd[4400], *s = NULL;
    snprintf(cmd, sizeof cmd, "cat '%s/out/eval/%s'", dir, name);
    assert_int_equal(tu_run(cmd, &s, NULL), 0);
    return s;
}

static const cJSON *get(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    return b ? cJSON_GetObjectItemCaseSensitive(x, b) : x;
}

/* The stdout row of a variant: its first five columns as numbers (NaN for n/a). */
static void table_row(const char *out, const char *variant, double *v)
{
    char key[16];
    snprintf(key, sizeof key, "\n%-7s ", variant);
    const char *p = strstr(out, key);
    assert_non_null(p);
    p += strlen(key);
    for (int i = 0; i < 5; i++) {
        while (*p == ' ') p++;
        if (!strncmp(p, "n/a", 3)) v[i] = NAN, p += 3;
        else v[i] = strtod(p, (char **)&p);
    }
}

static void test_all_variants_reports_agree(void **state)
{
    (void)state;
    char *so, *se;
    int rc = evaluate("--all-variants --latency 5", &so, &se);
    if (rc) fprintf(stderr, "%s\n", se);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(so, "int8: "));
    assert_null(strstr(so, "int8: quantizing")); /* quantize --bits 8 already made it */
    assert_non_null(strstr(so, "quantizing")); /* nf4 is made on the way */
    char *json = slurp("report.json");
    cJSON *j = cJSON_Parse(json);
    assert_non_null(j);
    const cJSON *vs = get(j, "variants", NULL);
    assert_int_equal(cJSON_GetArraySize(vs), 3);
    assert_int_equal((int)get(j, "carbon_intensity_g_per_kwh", NULL)->valuedouble, 475);
    const char *names[3] = {"fp16", "int8", "nf4"};
    char *csv = slurp("report.csv");
    assert_int_equal(tu_count_lines(csv), 4);
    for (int i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetArrayItem(vs, i);
        assert_string_equal(get(v, "variant", NULL)->valuestring, names[i]);
        double row[5];
        table_row(so, names[i], row);
        double acc = get(v, "quality", "accuracy")->valuedouble;
        assert_true(fabs(row[0] - acc) < 5e-5);
        assert_true(fabs(row[1] - get(v, "quality", "macro_f1")->valuedouble) < 5e-5);
        assert_true(fabs(row[2] - get(v, "quality", "macro_recall")->valuedouble) < 5e-5);
        assert_true(acc > 0.6); /* the head learned the last-word signal */
        assert_int_equal((int)get(v, "tweets", NULL)->valuedouble, 300);
        /* confusion matrix sums to the split, supports to the labels */
        const cJSON *cm = get(v, "quality", "confusion_matrix");
        double total = 0, diag = 0;
        for (int t = 0; t < 3; t++)
            for (int p = 0; p < 3; p++) {
                double c = cJSON_GetArrayItem(cJSON_GetArrayItem(cm, t), p)->valuedouble;
                total += c;
                diag += t == p ? c : 0;
            }
        assert_true(total == 300 && fabs(diag / total - acc) < 1e-12);
        if (i == 0) {
            assert_true(cJSON_IsNull(get(v, "quality", "agreement_with_fp16")));
            assert_true(cJSON_IsNull(get(v, "speed", "quantize_seconds")));
        } else {
            double agree = get(v, "quality", "agreement_with_fp16")->valuedouble;
            assert_true(agree > 0.8 && agree <= 1.0);
            assert_true(fabs(row[3] - agree) < 5e-5);
            assert_true(get(v, "speed", "quantize_seconds")->valuedouble >= 0);
        }
        assert_true(get(v, "speed", "eval_seconds")->valuedouble > 0);
        assert_true(get(v, "speed", "latency_p95_ms")->valuedouble >= get(v, "speed", "latency_p50_ms")->valuedouble);
        /* the CPU backend records no graphs: every timed pass ran op by op */
        assert_int_equal((int)get(v, "speed", "latency_graph_replays")->valuedouble, 0);
        assert_true(get(v, "memory", "weight_bytes")->valuedouble > 0);
        /* energy: a measurement or an honest null, never both missing and numeric */
        const cJSON *e = get(v, "energy", NULL);
        if (cJSON_IsTrue(get(e, "available", NULL))) assert_true(get(e, "joules", NULL)->valuedouble >= 0);
        else assert_true(cJSON_IsNull(get(e, "joules", NULL)) && cJSON_IsNull(get(e, "kg_co2eq", NULL)));
        /* the CSV row starts with the variant and carries the same accuracy */
        char needle[64];
        snprintf(needle, sizeof needle, "\n\"%s\",", names[i]);
        const char *line = strstr(csv, needle);
        assert_non_null(line);
        const char *f = line + 1;
        for (int c = 0; c < 6; c++) f = strchr(f, ',') + 1; /* variant,backend,device,source,tweets,tokens */
        assert_true(fabs(strtod(f, NULL) - acc) < 1e-8);
    }
    /* int8 keeps a tiny model's weights closest to fp16 */
    const cJSON *w0 = get(cJSON_GetArrayItem(vs, 0), "memory", "weight_bytes");
    const cJSON *w2 = get(cJSON_GetArrayItem(vs, 2), "memory", "weight_bytes");
    assert_true(w2->valuedouble < w0->valuedouble);
    char *html = slurp("report.html");
    assert_non_null(strstr(html, "<svg"));
    assert_non_null(strstr(html, "Confusion matrices"));
    assert_non_null(strstr(html, "Training loss"));
    assert_null(strstr(html, "src=\"http")); /* self-contained */
    assert_null(strstr(html, "<script"));
    cJSON_Delete(j);
    free(json), free(csv), free(html), free(so), free(se);

    /* a later single-variant run compares with the saved fp16 predictions, and does not
     * quantize again (the time comes from quantize's report) */
    assert_int_equal(evaluate("--variant nf4", &so, &se), 0);
    assert_null(strstr(so, "quantizing"));
    json = slurp("report.json");
    j = cJSON_Parse(json);
    const cJSON *v = cJSON_GetArrayItem(get(j, "variants", NULL), 0);
    assert_string_equal(get(v, "variant", NULL)->valuestring, "nf4");
    assert_true(cJSON_IsNumber(get(v, "quality", "agreement_with_fp16")));
    assert_string_equal(get(v, "speed", "quantize_seconds_source")->valuestring, "quantized file metadata");
    cJSON_Delete(j);
    free(json), free(so), free(se);
}

static void expect_refusal(const char *extra, const char *needle)
{
    char *so, *se;
    int rc = evaluate(extra, &so, &se);
    if (rc != 2 || !strstr(se, needle)) fprintf(stderr, "args '%s': rc %d, stderr: %s\n", extra, rc, se);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(se, needle));
    free(so), free(se);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    char a[4400];
    snprintf(a, sizeof a, "--head '%s/nothing.h5'", dir);
    expect_refusal(a, "run train-head first");
    expect_refusal("--variant int4", "--variant: 'int4' is not fp16, int8 or nf4");
    expect_refusal("--carbon-intensity -3", "--carbon-intensity");
    expect_refusal("--split dev", "--split: 'dev'");
    expect_refusal("--model /nonexistent", "no model at /nonexistent");
    snprintf(a, sizeof a, "--data '%s/nodata'", dir);
    expect_refusal(a, "no TweetEval data");
    /* a head trained on another backbone: same shapes and tokenizer, other weights */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/qhead-make-demo --out '%s/other' --seed 2 --train 10 --val 10 --test 10 >/dev/null", BIN, dir);
    assert_int_equal(tu_run(cmd, NULL, NULL), 0);
    snprintf(cmd, sizeof cmd, "%s/evaluate --backend cpu --model '%s/other/model' --data '%s/demo/sentiment' --out '%s/out'",
             BIN, dir, dir, dir);
    char *so, *se;
    assert_int_equal(tu_run(cmd, &so, &se), 2);
    assert_non_null(strstr(se, "was trained on another backbone"));
    free(so), free(se);
    /* a tokenizer with more pieces than the model's vocabulary (config.json cut to 500) */
    snprintf(cmd, sizeof cmd,
             "cp -r '%s/demo/model' '%s/small-vocab' && sed -i 's/\"vocab_size\":[[:space:]]*[0-9]*/\"vocab_size\": 500/' "
             "'%s/small-vocab/config.json'",
             dir, dir, dir);
    assert_int_equal(tu_run(cmd, NULL, NULL), 0);
    snprintf(cmd, sizeof cmd, "%s/evaluate --backend cpu --model '%s/small-vocab' --data '%s/demo/sentiment' --out '%s/out'",
             BIN, dir, dir, dir);
    assert_int_equal(tu_run(cmd, &so, &se), 2);
    assert_non_null(strstr(se, "not this model's tokenizer"));
    free(so), free(se);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_variants_reports_agree),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
