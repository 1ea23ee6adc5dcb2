/* The offline demo (core/demo*.c, core/spm_write.c, qhead-make-demo): the tokenizer we write
 * loads in our reader and in SentencePiece itself and encodes the same ids in both, the model
 * loads and runs, the task loads with the right sizes and balance, a linear head on the model's
 * features learns it but not perfectly, the output is the same for the same seed, and bad
 * arguments get one line and exit status 2. */
#include "testutil.h"

#include "clock.h"

#include "backend.h"
#include "demo.h"
#include "error.h"
#include "fileio.h"
#include "llama_model.h"
#include "spm_model.h"
#include "spm_write.h"
#include "tokenizer.h"
#include "tweeteval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLI QHEAD_BIN_DIR "/qhead-make-demo"
static const char *const SPLITS[3] = {"train", "val", "test"};

typedef struct {
    char *dir;
    char model_dir[2048], task_dir[2048], tok_path[2100];
    qh_tokenizer *tok;
    qh_tweeteval_mapping map;
    qh_tweeteval_split split[3];
    qh_demo_opts opts;
} demo_fixture;

/* One default demo for every test that only reads it. */
static int setup(void **state)
{
    demo_fixture *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp("demo");
    qh_demo_opts_default(&f->opts);
    qh_demo_summary sum;
    double t0 = qh_now_s();
    if (qh_make_demo(f->dir, &f->opts, &sum) != QH_OK) fail_msg("qh_make_demo: %s", qh_last_error());
    print_message("demo generated in %.3f s (data %.3f, tokenizer %.3f, weights %.3f), vocab %d\n", qh_now_s() - t0,
                  sum.seconds_data, sum.seconds_tokenizer, sum.seconds_model, (int)sum.vocab_size);
    snprintf(f->model_dir, sizeof f->model_dir, "%s/model", f->dir);
    snprintf(f->task_dir, sizeof f->task_dir, "%s/sentiment", f->dir);
    snprintf(f->tok_path, sizeof f->tok_path, "%s/tokenizer.model", f->model_dir);
    if (qh_tokenizer_load(f->tok_path, &f->tok) != QH_OK) fail_msg("%s", qh_last_error());
    if (qh_tweeteval_load_mapping(f->task_dir, &f->map) != QH_OK) fail_msg("%s", qh_last_error());
    for (int k = 0; k < 3; k++)
        if (qh_tweeteval_load_split(f->task_dir, SPLITS[k], &f->map, &f->split[k]) != QH_OK)
            fail_msg("%s", qh_last_error());
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    demo_fixture *f = *state;
    qh_tokenizer_free(f->tok);
    qh_tweeteval_mapping_free(&f->map);
    for (int k = 0; k < 3; k++) qh_tweeteval_split_free(&f->split[k]);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* ---- tokenizer ----------------------------------------------------------------------------- */

static void test_tokenizer_specials(void **state)
{
    demo_fixture *f = *state;
    /* LLaMA-2's layout: unk 0, bos 1, eos 2, no pad, then <0x00>..<0xFF>. */
    assert_int_equal(qh_tokenizer_unk_id(f->tok), 0);
    assert_int_equal(qh_tokenizer_bos_id(f->tok), 1);
    assert_int_equal(qh_tokenizer_eos_id(f->tok), 2);
    assert_int_equal(qh_tokenizer_pad_id(f->tok), -1);
    assert_string_equal(qh_tokenizer_piece(f->tok, 3), "<0x00>");
    assert_string_equal(qh_tokenizer_piece(f->tok, 258), "<0xFF>");
    int32_t n = qh_tokenizer_vocab_size(f->tok);
    assert_true(n > 1000 && n < 4000);
}

static void test_round_trip_corpus(void **state)
{
    demo_fixture *f = *state;
    qh_ids ids;
    qh_text text;
    qh_ids_init(&ids);
    qh_text_init(&text);
    size_t tokens = 0, tweets = 0;
    for (int k = 0; k < 3; k++) {
        const qh_tweeteval_split *s = &f->split[k];
        for (size_t i = 0; i < s->count; i++) {
            assert_int_equal(qh_tokenizer_encode(f->tok, s->text[i], s->text_len[i], 0, &ids), QH_OK);
            for (size_t j = 0; j < ids.len; j++) assert_int_not_equal(ids.data[j], qh_tokenizer_unk_id(f->tok));
            assert_int_equal(qh_tokenizer_decode(f->tok, ids.data, ids.len, &text), QH_OK);
            assert_int_equal(text.len, s->text_len[i]);
            assert_memory_equal(text.data, s->text[i], text.len);
            tokens += ids.len, tweets++;
        }
    }
    print_message("%zu tweets, %.1f tokens each on average\n", tweets, (double)tokens / (double)tweets);
    qh_ids_free(&ids);
    qh_text_free(&text);
}

static void test_words_are_single_tokens(void **state)
{
    demo_fixture *f = *state;
    qh_demo_inventory inv;
    assert_int_equal(qh_demo_inventory_build(&inv), QH_OK);
    assert_true(inv.n > 100);
    qh_ids ids;
    qh_ids_init(&ids);
    char want[512];
    for (size_t i = 0; i < inv.n; i++) {
        assert_int_equal(qh_tokenizer_encode(f->tok, inv.words[i], strlen(inv.words[i]), 0, &ids), QH_OK);
        if (ids.len != 1) fail_msg("'%s' is %zu tokens, not one", inv.words[i], ids.len);
        snprintf(want, sizeof want, "\xE2\x96\x81%s", inv.words[i]);
        assert_string_equal(qh_tokenizer_piece(f->tok, ids.data[0]), want);
    }
    /* The emoji left out of the vocabulary: "▁" and its four UTF-8 bytes as byte pieces. */
    for (int k = 0; k < 2; k++) {
        const char *e = inv.byte_fallback_words[k];
        assert_int_equal(qh_tokenizer_encode(f->tok, e, strlen(e), 0, &ids), QH_OK);
        assert_int_equal(ids.len, 5);
        assert_string_equal(qh_tokenizer_piece(f->tok, ids.data[0]), "\xE2\x96\x81");
        for (int b = 0; b < 4; b++) assert_int_equal(ids.data[1 + b], 3 + (uint8_t)e[b]);
    }
    qh_ids_free(&ids);
    qh_demo_inventory_free(&inv);
}

/* The Python interpreter that has SentencePiece (Debian's python3-sentencepiece lives under
 * /usr/bin/python3, which a pyenv or venv python3 on PATH hides), or NULL. */
static const char *python_with_sentencepiece(void)
{
    static const char *const candidates[] = {"python3", "/usr/bin/python3"};
    for (size_t i = 0; i < 2; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "%s -c 'import sentencepiece'", candidates[i]);
        if (tu_run(cmd, NULL, NULL) == 0) return candidates[i];
    }
    return NULL;
}

static void test_matches_python_sentencepiece(void **state)
{
    demo_fixture *f = *state;
    const char *py = python_with_sentencepiece();
    if (!py) {
        print_message("python3 with sentencepiece not found: comparison with SentencePiece skipped\n");
        skip();
    }
    static const char script[] =
        "import sys, sentencepiece as spm\n"
        "sp = spm.SentencePieceProcessor(model_file=sys.argv[1])\n"
        "print(sp.vocab_size(), sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id())\n"
        "for path in sys.argv[2:]:\n"
        "    for line in open(path, 'rb').read().decode('utf-8').split('\\n')[:-1]:\n"
        "        print(' '.join(map(str, sp.encode(line))))\n";
    char *script_path = tu_write_file(f->dir, "encode.py", script, sizeof script - 1);
    /* Beyond the corpus: words split where no merge exists, characters outside the vocabulary
     * (byte fallback), runs of spaces, and text that starts or ends with one. */
    static const char *const extra[] = {
        "Hello, World! The weather is AMAZING today",  "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x99\x84 ok",
        "  two  spaces and a tab\there ", "amazingly awfulness @users #nflx http://t.co/",
        "\xE2\x96\x81" "already escaped\xE2\x96\x81", "",
    };
    char extra_text[1024];
    size_t extra_len = 0;
    for (size_t i = 0; i < sizeof extra / sizeof *extra; i++)
        extra_len += (size_t)snprintf(extra_text + extra_len, sizeof extra_text - extra_len, "%s\n", extra[i]);
    char *extra_path = tu_write_file(f->dir, "extra.txt", extra_text, extra_len);
    char cmd[16384];
    int n = snprintf(cmd, sizeof cmd, "%s %s %s", py, script_path, f->tok_path);
    for (int k = 0; k < 3; k++) n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %s/%s_text.txt", f->task_dir, SPLITS[k]);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " %s", extra_path);
    char *out, *err;
    int rc = tu_run(cmd, &out, &err);
    if (rc != 0) fail_msg("%s failed (%d): %s", cmd, rc, err);
    /* Header: vocab size and special ids as SentencePiece sees them. */
    char head[128];
    snprintf(head, sizeof head, "%d 0 1 2 -1\n", (int)qh_tokenizer_vocab_size(f->tok));
    assert_memory_equal(out, head, strlen(head));
    const char *line = out + strlen(head);
    qh_ids ids;
    qh_ids_init(&ids);
    size_t compared = 0;
    char buf[4096];
    for (int k = 0; k < 4; k++) {
        const qh_tweeteval_split *s = &f->split[k < 3 ? k : 0];
        size_t count = k < 3 ? s->count : sizeof extra / sizeof *extra;
        for (size_t i = 0; i < count; i++) {
            const char *text = k < 3 ? s->text[i] : extra[i];
            size_t text_len = k < 3 ? s->text_len[i] : strlen(extra[i]);
            assert_int_equal(qh_tokenizer_encode(f->tok, text, text_len, 0, &ids), QH_OK);
            size_t len = 0;
            for (size_t j = 0; j < ids.len; j++) len += (size_t)snprintf(buf + len, sizeof buf - len, j ? " %d" : "%d", ids.data[j]);
            const char *nl = strchr(line, '\n');
            assert_non_null(nl);
            if ((size_t)(nl - line) != len || memcmp(line, buf, len))
                fail_msg("'%s': SentencePiece gives [%.*s], we give [%s]", text, (int)(nl - line), line, buf);
            line = nl + 1, compared++;
        }
    }
    assert_int_equal(*line, '\0');
    print_message("%s: SentencePiece's ids equal ours on all %zu lines\n", py, compared);
    qh_ids_free(&ids);
    free(out);
    free(err);
    free(script_path);
    free(extra_path);
}

static void test_spm_writer_refuses_bad_pieces(void **state)
{
    (void)state;
    qh_spm_builder b;
    qh_spm_builder_init(&b);
    assert_int_equal(qh_spm_add_piece(&b, "", 0, 0.0f, QH_SPM_NORMAL), QH_EINPUT);
    assert_int_equal(qh_spm_add_piece(&b, "a", 1, 0.0f, 9), QH_EINPUT);
    uint8_t *bytes;
    size_t len;
    assert_int_equal(qh_spm_add_piece(&b, "a", 1, 0.0f, QH_SPM_NORMAL), QH_OK);
    assert_int_equal(qh_spm_serialize(&b, &bytes, &len), QH_EINPUT); /* no <unk> */
    assert_non_null(strstr(qh_last_error(), "UNKNOWN"));
    qh_spm_builder_free(&b);
}

/* ---- model and data ------------------------------------------------------------------------ */

/* Last-token hidden states of every tweet of a split (with BOS, as train-head feeds them). */
static float *features(qh_llama_ctx *ctx, const qh_tokenizer *tok, const qh_tweeteval_split *s, int hidden)
{
    qh_ids ids;
    qh_ids_init(&ids);
    size_t cap = 1024, n = 0;
    int32_t *all = malloc(cap * sizeof *all), *lens = malloc(s->count * sizeof *lens);
    for (size_t i = 0; i < s->count; i++) {
        assert_int_equal(qh_tokenizer_encode(tok, s->text[i], s->text_len[i], 1, &ids), QH_OK);
        while (n + ids.len > cap) all = realloc(all, (cap *= 2) * sizeof *all);
        memcpy(all + n, ids.data, ids.len * sizeof *all);
        n += ids.len;
        lens[i] = (int32_t)ids.len;
    }
    float *h = malloc(s->count * (size_t)hidden * sizeof *h);
    if (qh_llama_forward(ctx, all, lens, (int)s->count, h) != QH_OK) fail_msg("%s", qh_last_error());
    qh_ids_free(&ids);
    free(all);
    free(lens);
    return h;
}

/* Softmax regression by full-batch gradient descent: enough to tell whether the features carry
 * the class, without depending on train-head. Returns the accuracy on (xv, yv). */
static double linear_probe(const float *x, const int32_t *y, size_t n, const float *xv, const int32_t *yv, size_t nv,
                           int dim)
{
    enum { K = QH_DEMO_NUM_CLASSES };
    double *w = calloc((size_t)K * (size_t)dim, sizeof *w), *g = malloc((size_t)K * (size_t)dim * sizeof *g);
    for (int it = 0; it < 300; it++) {
        memset(g, 0, (size_t)K * (size_t)dim * sizeof *g);
        for (size_t i = 0; i < n; i++) {
            double z[K], m = -1e300, sum = 0;
            for (int k = 0; k < K; k++) {
                z[k] = 0;
                for (int d = 0; d < dim; d++) z[k] += w[k * dim + d] * x[i * (size_t)dim + (size_t)d];
                if (z[k] > m) m = z[k];
            }
            for (int k = 0; k < K; k++) sum += (z[k] = exp(z[k] - m));
            for (int k = 0; k < K; k++) {
                double r = z[k] / sum - (y[i] == k);
                for (int d = 0; d < dim; d++) g[k * dim + d] += r * x[i * (size_t)dim + (size_t)d];
            }
        }
        for (int j = 0; j < K * dim; j++) w[j] -= 0.5 * g[j] / (double)n;
    }
    size_t right = 0;
    for (size_t i = 0; i < nv; i++) {
        int best = 0;
        double bz = -1e300;
        for (int k = 0; k < K; k++) {
            double z = 0;
            for (int d = 0; d < dim; d++) z += w[k * dim + d] * xv[i * (size_t)dim + (size_t)d];
            if (z > bz) bz = z, best = k;
        }
        right += yv[i] == best;
    }
    free(w);
    free(g);
    return (double)right / (double)nv;
}

static void test_model_loads_runs_and_task_is_learnable(void **state)
{
    demo_fixture *f = *state;
    qh_backend *be;
    qh_llama_model *m;
    qh_llama_ctx *ctx;
    assert_int_equal(qh_backend_create("cpu", &be), QH_OK);
    if (qh_llama_load(f->model_dir, be, &m) != QH_OK) fail_msg("%s", qh_last_error());
    assert_int_equal(m->cfg.vocab_size, qh_tokenizer_vocab_size(f->tok));
    assert_int_equal(m->cfg.hidden_size, 128);
    assert_int_equal(m->has_score, 0);
    assert_int_equal(qh_llama_ctx_create(m, 4096, &ctx), QH_OK);
    const int H = m->cfg.hidden_size;
    double t0 = qh_now_s();
    float *xt = features(ctx, f->tok, &f->split[0], H), *xv = features(ctx, f->tok, &f->split[1], H);
    print_message("features of %zu tweets in %.2f s\n", f->split[0].count + f->split[1].count, qh_now_s() - t0);
    for (size_t i = 0; i < f->split[0].count * (size_t)H; i++) assert_true(isfinite(xt[i]));
    assert_true(memcmp(xt, xt + H, (size_t)H * sizeof *xt) != 0);
    /* Learnable, not perfectly: the label noise and the tweets that end in a URL, hashtag or
     * mention cap accuracy near 80%; the majority class alone gets 45%. */
    double acc = linear_probe(xt, f->split[0].labels, f->split[0].count, xv, f->split[1].labels, f->split[1].count, H);
    print_message("linear probe: val accuracy %.3f\n", acc);
    assert_true(acc > 0.65);
    assert_true(acc < 0.90);
    free(xt);
    free(xv);
    qh_llama_ctx_free(ctx);
    qh_llama_free(m);
    qh_backend_destroy(be);
}

static void test_task_sizes_and_balance(void **state)
{
    demo_fixture *f = *state;
    assert_int_equal(f->map.num_classes, 3);
    for (int c = 0; c < 3; c++) assert_string_equal(f->map.names[c], qh_demo_class_names[c]);
    const size_t sizes[3] = {f->opts.n_train, f->opts.n_val, f->opts.n_test};
    for (int k = 0; k < 3; k++) {
        const qh_tweeteval_split *s = &f->split[k];
        assert_int_equal(s->count, sizes[k]);
        size_t counts[3];
        assert_int_equal(qh_tweeteval_class_counts(s, 3, counts), QH_OK);
        for (int c = 0; c < 3; c++) {
            double want = qh_demo_class_share[c] * (double)s->count;
            if (fabs((double)counts[c] - want) > 1.0) fail_msg("%s: class %d has %zu tweets, want %.1f", SPLITS[k], c, counts[c], want);
        }
        for (size_t i = 0; i < s->count; i++) assert_true(s->text_len[i] > 0 && s->text_len[i] < 300);
    }
}

/* ---- the command --------------------------------------------------------------------------- */

static char *slurp(const char *dir, const char *name, size_t *len)
{
    char path[4300], *buf;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (qh_read_file(path, (size_t)64 << 20, &buf, len) != QH_OK) fail_msg("%s", qh_last_error());
    return buf;
}

static int same_file(const char *a, const char *b, const char *name)
{
    size_t la, lb;
    char *x = slurp(a, name, &la), *y = slurp(b, name, &lb);
    int same = la == lb && !memcmp(x, y, la);
    free(x);
    free(y);
    return same;
}

static const char *const FILES[] = {"model/config.json",          "model/model.safetensors",   "model/tokenizer.model",
                                    "sentiment/mapping.txt",      "sentiment/train_text.txt",  "sentiment/train_labels.txt",
                                    "sentiment/val_text.txt",     "sentiment/val_labels.txt",  "sentiment/test_text.txt",
                                    "sentiment/test_labels.txt"};
#define N_FILES (sizeof FILES / sizeof *FILES)

static void make_demo_cli(const char *dir, const char *args)
{
    char cmd[8192], *out, *err;
    snprintf(cmd, sizeof cmd, "%s --out %s %s", CLI, dir, args);
    double t0 = qh_now_s();
    int rc = tu_run(cmd, &out, &err);
    if (rc != 0) fail_msg("%s: exit %d: %s", cmd, rc, err);
    print_message("%.3f s: %s", qh_now_s() - t0, out);
    free(out);
    free(err);
}

static void test_same_seed_same_files(void **state)
{
    (void)state;
    char *a = tu_mkdtemp("demo-a"), *b = tu_mkdtemp("demo-b"), *c = tu_mkdtemp("demo-c"), *d = tu_mkdtemp("demo-d");
    make_demo_cli(a, "--seed 7 --train 500 --val 50 --test 80");
    make_demo_cli(b, "--seed 7 --train 500 --val 50 --test 80");
    make_demo_cli(c, "--seed 8 --train 500 --val 50 --test 80");
    make_demo_cli(d, "--seed 7 --train 900 --val 50 --test 80");
    for (size_t i = 0; i < N_FILES; i++)
        if (!same_file(a, b, FILES[i])) fail_msg("%s differs between two runs with the same seed", FILES[i]);
    /* Another seed: other tweets and other weights, but the same tokenizer and shape. */
    assert_false(same_file(a, c, "sentiment/train_text.txt"));
    assert_false(same_file(a, c, "model/model.safetensors"));
    assert_true(same_file(a, c, "model/tokenizer.model"));
    assert_true(same_file(a, c, "model/config.json"));
    /* Each split has its own random stream: a bigger train split leaves val and test alone. */
    assert_true(same_file(a, d, "sentiment/val_text.txt"));
    assert_true(same_file(a, d, "sentiment/test_labels.txt"));
    assert_false(same_file(a, d, "sentiment/train_labels.txt"));
    /* Regenerating over an existing demo replaces it and leaves no temporary files. */
    make_demo_cli(a, "--seed 7 --train 500 --val 50 --test 80");
    char cmd[4300], *out;
    snprintf(cmd, sizeof cmd, "find %s -name '*.tmp.*'", a);
    assert_int_equal(tu_run(cmd, &out, NULL), 0);
    assert_string_equal(out, "");
    free(out);
    char *dirs[] = {a, b, c, d};
    for (int i = 0; i < 4; i++) {
        tu_rmtree(dirs[i]);
        free(dirs[i]);
    }
}

static void test_bad_arguments(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("demo-bad");
    static const struct {
        const char *args, *names;
    } cases[] = {
        {"--train 0", "--train"},      {"--val abc", "--val"},         {"--test -5", "--test"},
        {"--seed -1", "--seed"},       {"--seed", "--seed"},           {"--bogus 3", "--bogus"},
        {"--out", "--out"},            {"--out ''", "--out"},          {"--train 20000000", "--train"},
        {"--out /dev/null/demo", "/dev/null"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char cmd[8192], *out, *err;
        /* Cases without --out get one in front, so a bug never writes into the build tree. */
        if (strstr(cases[i].args, "--out")) snprintf(cmd, sizeof cmd, "%s %s", CLI, cases[i].args);
        else snprintf(cmd, sizeof cmd, "%s --out %s/x %s", CLI, dir, cases[i].args);
        int rc = tu_run(cmd, &out, &err);
        if (rc != 2) fail_msg("%s: exit %d, want 2 (stderr: %s)", cmd, rc, err);
        assert_int_equal(tu_count_lines(err), 1);
        if (!strstr(err, cases[i].names)) fail_msg("%s: stderr '%s' does not name %s", cmd, err, cases[i].names);
        assert_non_null(strstr(err, "qhead-make-demo: "));
        assert_string_equal(out, "");
        free(out);
        free(err);
    }
    char *out, *err;
    assert_int_equal(tu_run(CLI " --help", &out, &err), 0);
    assert_non_null(strstr(out, "--train N"));
    free(out);
    free(err);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_specials),
        cmocka_unit_test(test_round_trip_corpus),
        cmocka_unit_test(test_words_are_single_tokens),
        cmocka_unit_test(test_matches_python_sentencepiece),
        cmocka_unit_test(test_spm_writer_refuses_bad_pieces),
        cmocka_unit_test(test_model_loads_runs_and_task_is_learnable),
        cmocka_unit_test(test_task_sizes_and_balance),
        cmocka_unit_test(test_same_seed_same_files),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
