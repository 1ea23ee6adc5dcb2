/* Hostile inputs through the command-line tools (issue 9): every case must end with exit
 * status 2 and one line on stderr naming the file and the problem. Also: a full disk
 * (RLIMIT_FSIZE, with SIGXFSZ ignored so writes fail with EFBIG as on a full disk) gives a clear
 * error and leaves earlier outputs intact, and work that cannot fit in memory is refused with
 * the numbers. The same inputs at the library level are in test_safetensors.c, test_config.c,
 * test_checkpoint.c, test_tokenizer.c, test_tweeteval.c and test_quantize.c; only what those do
 * not drive through a CLI is here. */
#include "testutil.h"

#include "error.h"
#include "feature_cache.h"
#include "fileio.h"
#include "h5util.h"
#include "head.h"
#include "memlimit.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "tweeteval.h"

#include <cjson/cJSON.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FORWARD QHEAD_BIN_DIR "/qhead-forward"
#define MAKE_MODEL QHEAD_BIN_DIR "/qhead-make-model"
#define TOKENIZE QHEAD_BIN_DIR "/qhead-tokenize"
#define TRAIN_HEAD QHEAD_BIN_DIR "/train-head"
#define QUANTIZE QHEAD_BIN_DIR "/quantize"
#define TOKENIZER QHEAD_FIXTURES "/tokenizer/bpe.model"

static char *dir; /* this run's scratch directory: model "good" (hidden 32, 1 layer) and a task */

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char *err;
    int rc = tu_run(cmd, NULL, &err);
    if (rc != 0) fail_msg("%s: exit %d: %s", cmd, rc, err);
    free(err);
}

/* cmd must exit with status 2 and print one stderr line holding both file and problem. */
static void expect_refusal(const char *cmd, const char *file, const char *problem)
{
    char *err;
    int rc = tu_run(cmd, NULL, &err);
    if (rc != 2 || tu_count_lines(err) != 1 || !strstr(err, file) || !strstr(err, problem))
        fail_msg("%s\n  exit %d, stderr: %s  want exit 2 and one line naming '%s' and '%s'", cmd, rc, err, file,
                 problem);
    free(err);
}

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp("hostile");
    sh("%s --out '%s/good' --hidden 32 --intermediate 64 --layers 1 --heads 2 --vocab 1000 --num-labels 3 && "
       "cp '%s' '%s/good/tokenizer.model'",
       MAKE_MODEL, dir, TOKENIZER, dir);
    char *task = tu_path(dir, "task");
    tu_write_sentiment_task(task, 60, 30, 0);
    free(task);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

/* A copy of the good model as dir/name; returns its path. */
static char *copy_model(const char *name)
{
    char *p = tu_path(dir, name);
    sh("rm -rf '%s' && cp -r '%s/good' '%s'", p, dir, p);
    return p;
}

/* A safetensors file: the header (padded with spaces to 8 bytes) and data_len zero bytes. The
 * header length field is the real one unless len_field is non-zero. */
static void write_safetensors(const char *path, const char *header, uint64_t len_field, size_t data_len)
{
    size_t n = strlen(header), padded = (n + 7) / 8 * 8;
    uint64_t len = len_field ? len_field : padded;
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(len >> (8 * i));
    assert_int_equal(fwrite(le, 1, 8, fp), 8);
    assert_int_equal(fwrite(header, 1, n, fp), n);
    for (size_t i = n; i < padded; i++) fputc(' ', fp);
    for (size_t i = 0; i < data_len; i++) fputc(0, fp);
    assert_int_equal(fclose(fp), 0);
}

/* ---- safetensors, through qhead-forward ---------------------------------------------------- */

static void test_hostile_safetensors(void **state)
{
    (void)state;
    char *model = copy_model("st");
    char *file = tu_path(model, "model.safetensors");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s --backend cpu --model '%s' --ids 1,2", FORWARD, model);
    const struct {
        const char *header;
        uint64_t len_field;
        size_t data;
        const char *problem;
    } cases[] = {
        /* header length 2^63, and one byte more than the file holds */
        {"{}", 1ull << 63, 0, "header length 9223372036854775808 runs past the end of the 16-byte file"},
        {"{}", 9, 0, "header length 9 runs past the end of the 16-byte file"},
        /* offsets overlapping, or outside the data */
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[4,12]}}",
         0, 16, "tensors 'a' and 'b' overlap"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[8,16]}}", 0, 8,
         "data_offsets [8, 16] outside the 8 data bytes"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[16,8]}}", 0, 16, "outside the 16 data bytes"},
        /* a shape whose element count overflows 64 bits (and size_t) */
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 0, 8,
         "shape product overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,8]}}", 0, 8,
         "byte size overflows"},
        /* dtype and shape that disagree with the byte length */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,8]}}", 0, 8, "8 bytes, but F32 shape needs 16"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[3,3],\"data_offsets\":[0,8]}}", 0, 8, "8 bytes, but F16 shape needs 18"},
        {"{\"a\":{\"dtype\":\"Q3\",\"shape\":[4],\"data_offsets\":[0,8]}}", 0, 8, "unsupported dtype 'Q3'"},
        /* a name with a newline stays one line */
        {"{\"a\\nb\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[0,8]}}", 0, 8, "tensor 'a?b'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_safetensors(file, cases[i].header, cases[i].len_field, cases[i].data);
        expect_refusal(cmd, file, cases[i].problem);
    }
    /* tensor names missing: the real model with model.norm.weight renamed in its header */
    free(copy_model("st"));
    sh("LC_ALL=C sed -i 's/model\\.norm\\.weight/model.norX.weight/' '%s'", file);
    expect_refusal(cmd, model, "tensor 'model.norm.weight' is missing");
    free(copy_model("st"));
    sh("LC_ALL=C sed -i 's/model\\.layers\\.0\\.mlp\\.up_proj\\.weight/model.layers.0.mlp.up_proj.weighX/' '%s'", file);
    expect_refusal(cmd, model, "tensor 'model.layers.0.mlp.up_proj.weight' is missing");
    free(file);
    free(model);
}

/* ---- config.json, through qhead-forward ----------------------------------------------------- */

static void test_hostile_config(void **state)
{
    (void)state;
    char *model = copy_model("cfg");
    char *path = tu_path(model, "config.json"), *good = NULL;
    assert_int_equal(qh_read_file(path, 1 << 20, &good, NULL), QH_OK);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s --backend cpu --model '%s' --ids 1,2", FORWARD, model);
    const struct {
        const char *key;
        double value;
        const char *problem;
    } cases[] = {
        {"hidden_size", 0, "'hidden_size' is 0, outside"},
        {"hidden_size", -32, "'hidden_size' is -32, outside"},
        {"hidden_size", 1e300, "'hidden_size' is 1e+300, outside"},
        {"vocab_size", 0, "'vocab_size' is 0, outside"},
        {"vocab_size", 1e12, "'vocab_size' is 1e+12, outside"},
        {"num_hidden_layers", -1, "'num_hidden_layers' is -1, outside"},
        {"num_hidden_layers", 0, "'num_hidden_layers' is 0, outside"},
        {"intermediate_size", 0, "'intermediate_size' is 0, outside"},
        {"num_attention_heads", 0, "'num_attention_heads' is 0, outside"},
        {"num_attention_heads", 5, "num_attention_heads 5 does not divide hidden_size 32"},
        {"num_key_value_heads", 3, "num_key_value_heads 3 does not divide num_attention_heads 2"},
        {"num_key_value_heads", 0, "'num_key_value_heads' is 0, outside"},
        {"head_dim", 7, "head_dim 7 must be even"},
        {"max_position_embeddings", 0, "'max_position_embeddings' is 0, outside"},
        {"rms_norm_eps", -1, "'rms_norm_eps' is -1, outside"},
        {"hidden_size", 32.5, "'hidden_size' must be an integer, not 32.5"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cJSON *root = cJSON_Parse(good);
        assert_non_null(root);
        cJSON_DeleteItemFromObjectCaseSensitive(root, cases[i].key);
        cJSON_AddNumberToObject(root, cases[i].key, cases[i].value);
        char *text = cJSON_Print(root);
        free(tu_write_file(model, "config.json", text, strlen(text)));
        free(text);
        cJSON_Delete(root);
        expect_refusal(cmd, path, cases[i].problem);
    }
    /* not numbers at all, and not JSON */
    const char *texts[][2] = {
        {"{\"hidden_size\": \"32\"}", "'hidden_size' must be an integer"},
        {"{\"hidden_size\": 32,", "not a JSON object"},
        {"", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        free(tu_write_file(model, "config.json", texts[i][0], strlen(texts[i][0])));
        expect_refusal(cmd, path, texts[i][1]);
    }
    free(good);
    free(path);
    free(model);
}

/* ---- tokenizer.model, through qhead-tokenize --------------------------------------------------- */

static void put_varint(FILE *fp, uint64_t v)
{
    do {
        uint8_t c = (uint8_t)(v & 0x7f);
        v >>= 7;
        fputc(v ? c | 0x80 : c, fp);
    } while (v);
}

static void test_hostile_tokenizer(void **state)
{
    (void)state;
    char *good = NULL;
    size_t len = 0;
    assert_int_equal(qh_read_file(TOKENIZER, 1 << 20, &good, &len), QH_OK);
    char *bad = tu_path(dir, "bad.model"), cmd[8192];
    snprintf(cmd, sizeof cmd, "echo hello | %s --tokenizer '%s'", TOKENIZE, bad);
    /* truncated anywhere: inside a piece, and just before the end */
    const size_t cuts[] = {1, 2000, len / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        free(tu_write_file(dir, "bad.model", good, cuts[i]));
        char *err;
        int rc = tu_run(cmd, NULL, &err);
        if (rc != 2 || tu_count_lines(err) != 1 || !strstr(err, bad))
            fail_msg("cut at %zu: exit %d, stderr %s", cuts[i], rc, err);
        free(err);
    }
    free(tu_write_file(dir, "bad.model", "", 0));
    expect_refusal(cmd, bad, "empty file");
    /* a piece of 1 MB: another ModelProto.pieces entry (field 1) holding a 1 MB string (field 1) */
    size_t mb = (size_t)1 << 20;
    FILE *fp = fopen(bad, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(good, 1, len, fp), len);
    put_varint(fp, 1 << 3 | 2);
    put_varint(fp, 1 + 3 + mb); /* key, 3-byte length, string */
    put_varint(fp, 1 << 3 | 2);
    put_varint(fp, mb);
    for (size_t i = 0; i < mb; i++) fputc('a', fp);
    assert_int_equal(fclose(fp), 0);
    expect_refusal(cmd, bad, "1048576 bytes long, more than the 4096 allowed");
    free(bad);
    free(good);
}

/* ---- TweetEval data, through train-head: a 100 MB line ----------------------------------------- */

/* A copy of the task with line `line` (1-based) of file replaced by 100 MB of byte c. */
static char *task_with_huge_line(const char *name, const char *file, int line, char c)
{
    char *task = tu_path(dir, name);
    sh("rm -rf '%s' && cp -r '%s/task' '%s'", task, dir, task);
    char *path = tu_path(task, file), *old = NULL;
    assert_int_equal(qh_read_file(path, 1 << 24, &old, NULL), QH_OK);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    const char *p = old;
    for (int l = 1; *p; l++) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
        if (l == line) {
            for (size_t i = 0; i < ((size_t)100 << 20); i++) fputc(c, fp);
            fputc('\n', fp);
        } else {
            assert_int_equal(fwrite(p, 1, n, fp), n);
        }
        p += n;
    }
    assert_int_equal(fclose(fp), 0);
    free(old);
    free(path);
    return task;
}

static void test_huge_lines(void **state)
{
    (void)state;
    char cmd[8192];
    /* in a labels file: not a label, named with file and line, the quote cut short */
    char *task = task_with_huge_line("hugelabel", "val_labels.txt", 7, 'x');
    snprintf(cmd, sizeof cmd, "%s --backend cpu --model '%s/good' --data '%s' --out '%s/out-huge' --epochs 1", TRAIN_HEAD,
             dir, task, dir);
    expect_refusal(cmd, "val_labels.txt:7", "is not an integer");
    free(task);
    /* in a text file: the tweet is cut to 64 KB with one warning (tweeteval.h), and the run
     * goes on in bounded memory */
    task = task_with_huge_line("hugetext", "train_text.txt", 3, 'w');
    snprintf(cmd, sizeof cmd, "%s --backend cpu --model '%s/good' --data '%s' --out '%s/out-huge' --epochs 1", TRAIN_HEAD,
             dir, task, dir);
    char *out, *err;
    int rc = tu_run(cmd, &out, &err);
    if (rc != 0 || !strstr(err, "train_text.txt:3: tweet of 104857600 bytes truncated to 65536"))
        fail_msg("exit %d, stderr %s", rc, err);
    free(out);
    free(err);
    free(task);
}

/* ---- full disk ----------------------------------------------------------------------------- */

/* "<sha256>  ./<file>" for every file under path, one a line, sorted by name. */
static char *snapshot(const char *path)
{
    char cmd[8192], *out = NULL;
    snprintf(cmd, sizeof cmd, "(cd '%s' && find . -type f -exec sha256sum {} + | LC_ALL=C sort -k 2)", path);
    assert_int_equal(tu_run(cmd, &out, NULL), 0);
    return out;
}

/* Runs cmd with writes capped at kb KB; SIGXFSZ is ignored (inherited through exec) so a write
 * past the cap fails with EFBIG, as one on a full disk fails with ENOSPC. */
static int run_capped(const char *cmd, int kb, char **err)
{
    char full[8800];
    snprintf(full, sizeof full, "bash -c \"trap '' XFSZ; ulimit -f %d; exec %s\"", kb, cmd);
    return tu_run(full, NULL, err);
}

static void expect_clean_failure(const char *what, int rc, const char *err, const char *outdir)
{
    if (rc != 1 && rc != 2) fail_msg("%s: exit %d (a signal is -1), stderr %s", what, rc, err);
    if (tu_count_lines(err) < 1 || !strstr(err, ": ")) fail_msg("%s: no error message: %s", what, err);
    char cmd[4400], *tmp = NULL;
    snprintf(cmd, sizeof cmd, "find '%s' -name '*.tmp.*'", outdir);
    assert_int_equal(tu_run(cmd, &tmp, NULL), 0);
    if (tmp[0]) fail_msg("%s: temporary files left behind: %s", what, tmp);
    free(tmp);
}

/* Every line of before naming a file that ends in suffix is in after: those files are unchanged. */
static void expect_same_lines(const char *before, const char *after, const char *suffix)
{
    const char *p = before;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p), sl = strlen(suffix);
        char line[4600];
        snprintf(line, sizeof line, "%.*s\n", (int)n, p);
        if (n > sl && strncmp(p + n - sl, suffix, sl) == 0 && !strstr(after, line))
            fail_msg("changed or gone: %s", line);
        p += n + (nl ? 1 : 0);
    }
}

/* dir/name exists and ends with tail (a file cut short would not). */
static void expect_whole_file(const char *dir_, const char *name, const char *tail)
{
    char *path = tu_path(dir_, name), *text = NULL;
    size_t len = 0;
    assert_int_equal(qh_read_file(path, 1 << 24, &text, &len), QH_OK);
    size_t tl = strlen(tail);
    if (len < tl || memcmp(text + len - tl, tail, tl) != 0) fail_msg("%s is cut short", path);
    free(text);
    free(path);
}

static void test_full_disk(void **state)
{
    (void)state;
    char cmd[8192], *err;
    char *out = tu_path(dir, "out-full");
    /* train-head: a first run writes head, log, curve and feature caches */
    snprintf(cmd, sizeof cmd, "%s --backend cpu --model %s/good --data %s/task --out %s --epochs 2", TRAIN_HEAD, dir,
             dir, out);
    sh("%s >/dev/null 2>&1", cmd);
    char *before = snapshot(out);
    if (!strstr(before, "head.h5")) fail_msg("no head.h5 in %s: %s", out, before);
    assert_non_null(strstr(before, "features/"));
    /* then a different run (another seed: every output changes) with writes capped at 1 KB (the
     * curve cannot be written) and at 6 KB (only the head cannot: HDF5's own close fails) */
    char again[8400];
    snprintf(again, sizeof again, "%s --seed 7", cmd);
    char *after;
    int rc;
    for (int kb = 1; kb <= 6; kb += 5) {
        rc = run_capped(again, kb, &err);
        expect_clean_failure("train-head", rc, err, out);
        if (kb == 6 && !strstr(err, "head.h5")) fail_msg("not the head's write failing: %s", err);
        after = snapshot(out);
        /* The head and the caches are the earlier ones. train_log.csv and loss_curve.svg are
         * rewritten (atomically) at every logged row while training runs, so they may already be
         * the new run's: each must then be a whole file. */
        expect_same_lines(before, after, "h5");
        expect_whole_file(out, "train_log.csv", "\n");
        expect_whole_file(out, "loss_curve.svg", "</svg>\n");
        free(err);
        free(after);
    }
    /* and with new data, whose feature caches cannot be written */
    sh("rm -rf '%s/task2' && cp -r '%s/task' '%s/task2' && sed -i '1s/^/new /' '%s/task2/train_text.txt'", dir, dir,
       dir, dir);
    snprintf(again, sizeof again, "%s --backend cpu --model %s/good --data %s/task2 --out %s --epochs 2", TRAIN_HEAD,
             dir, dir, out);
    rc = run_capped(again, 1, &err);
    expect_clean_failure("train-head (new caches)", rc, err, out);
    if (!strstr(err, "features")) fail_msg("the error does not name the cache: %s", err);
    after = snapshot(out);
    expect_same_lines(before, after, "h5");
    free(err);
    free(before);
    free(after);

    /* quantize: an int8 file, then nf4 over it with writes capped */
    snprintf(cmd, sizeof cmd, "%s --bits 8 --model %s/good --file %s/q.safetensors", QUANTIZE, dir, out);
    sh("%s >/dev/null", cmd);
    before = snapshot(out);
    snprintf(cmd, sizeof cmd, "%s --bits 4 --model %s/good --file %s/q.safetensors", QUANTIZE, dir, out);
    rc = run_capped(cmd, 4, &err);
    expect_clean_failure("quantize", rc, err, out);
    after = snapshot(out);
    assert_string_equal(before, after);
    free(err);
    free(before);
    free(after);
    free(out);
}

/* ---- resource limits ------------------------------------------------------------------------ */

/* --batch-tokens at its largest on a wide model: the workspace cannot fit, refused up front. */
static void test_workspace_too_big(void **state)
{
    (void)state;
    /* hidden 256, intermediate 1024: 11 buffers of about 16 KB a token, 275 GB for 2^24 tokens */
    double need = (8.0 * 256 + 2 * 1024) * 4 * (1 << 24);
    if ((double)qh_phys_mem_bytes() > need) skip();
    sh("%s --out '%s/wide' --hidden 256 --intermediate 1024 --layers 1 --heads 4 --vocab 1000 && "
       "cp '%s' '%s/wide/tokenizer.model'",
       MAKE_MODEL, dir, TOKENIZER, dir);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s --backend cpu --model %s/wide --data %s/task --out %s/out-wide --batch-tokens 16777216",
             TRAIN_HEAD, dir, dir, dir);
    expect_refusal(cmd, "--batch-tokens 16777216", "GB of memory, more than the");
}

/* A checkpoint (a sparse 512 GB file) whose largest matrices need 64 to 256 GB as fp32 on the
 * CPU: refused when the first is widened, before allocating, with the numbers. */
static void test_checkpoint_too_big(void **state)
{
    (void)state;
    const int64_t h = 1 << 17, f = 1 << 19, v = 8;
    if ((double)qh_phys_mem_bytes() >= (double)h * h * 4) skip(); /* q_proj would fit */
    char *model = tu_path(dir, "huge");
    sh("rm -rf '%s' && mkdir -p '%s'", model, model);
    const char *cfg = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 131072,"
                      " \"intermediate_size\": 524288, \"num_hidden_layers\": 1, \"num_attention_heads\": 128,"
                      " \"vocab_size\": 8, \"torch_dtype\": \"float16\"}";
    free(tu_write_file(model, "config.json", cfg, strlen(cfg)));
    const struct {
        const char *name;
        int64_t rows, cols;
    } t[] = {
        {"model.embed_tokens.weight", v, h},
        {"model.norm.weight", h, 0},
        {"model.layers.0.input_layernorm.weight", h, 0},
        {"model.layers.0.post_attention_layernorm.weight", h, 0},
        {"model.layers.0.self_attn.q_proj.weight", h, h},
        {"model.layers.0.self_attn.k_proj.weight", h, h},
        {"model.layers.0.self_attn.v_proj.weight", h, h},
        {"model.layers.0.self_attn.o_proj.weight", h, h},
        {"model.layers.0.mlp.gate_proj.weight", f, h},
        {"model.layers.0.mlp.up_proj.weight", f, h},
        {"model.layers.0.mlp.down_proj.weight", h, f},
    };
    char header[8192];
    size_t n = (size_t)snprintf(header, sizeof header, "{");
    uint64_t at = 0;
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        uint64_t bytes = (uint64_t)t[i].rows * (uint64_t)(t[i].cols ? t[i].cols : 1) * 2;
        char shape[64];
        if (t[i].cols) snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)t[i].rows, (long long)t[i].cols);
        else snprintf(shape, sizeof shape, "[%lld]", (long long)t[i].rows);
        n += (size_t)snprintf(header + n, sizeof header - n, "%s\"%s\": {\"dtype\": \"F16\", \"shape\": %s, "
                              "\"data_offsets\": [%llu, %llu]}", i ? ", " : "", t[i].name, shape,
                              (unsigned long long)at, (unsigned long long)(at + bytes));
        at += bytes;
    }
    snprintf(header + n, sizeof header - n, "}");
    char *file = tu_path(model, "model.safetensors");
    write_safetensors(file, header, 0, 0);
    /* the data: a hole, no disk used */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "truncate -s +%llu '%s'", (unsigned long long)at, file);
    if (tu_run(cmd, NULL, NULL) != 0) skip(); /* a file system without 512 GB sparse files */
    snprintf(cmd, sizeof cmd, "%s --backend cpu --model '%s' --ids 1", FORWARD, model);
    expect_refusal(cmd, "widening a weight matrix of 17179869184 elements to fp32",
                   "needs 68.72 GB of memory, more than the");
    unlink(file);
    free(file);
    free(model);
}

/* ---- bugs the fuzzers found, at the library level ---------------------------------------------- */

/* An HDF5 file at dir/name holding float datasets of the given ranks and dims, written only when
 * write is set (else declared, with no data stored). Returns the path. */
static char *h5_file(const char *name, int n, const char *const *names, const int *ranks, const hsize_t (*dims)[2],
                     int write)
{
    char *path = tu_path(dir, name);
    qh_h5_quiet();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    for (int i = 0; i < n; i++) {
        hsize_t count = dims[i][0] * (ranks[i] == 2 ? dims[i][1] : 1);
        float *zeros = write ? calloc(count, sizeof(float)) : NULL;
        hid_t sp = H5Screate_simple(ranks[i], dims[i], NULL);
        hid_t ds = H5Dcreate2(f, names[i], H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(ds >= 0);
        if (write) assert_true(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros) >= 0);
        H5Dclose(ds);
        H5Sclose(sp);
        free(zeros);
    }
    assert_true(H5Fclose(f) >= 0);
    return path;
}

static void expect_load_refused(int rc, const char *path, const char *problem)
{
    const char *msg = qh_last_error();
    if (rc != QH_EINPUT || !strstr(msg, path) || !strstr(msg, problem))
        fail_msg("rc %d, message '%s' (want QH_EINPUT naming %s and '%s')", rc, msg, path, problem);
}

static void test_head_files(void **state)
{
    (void)state;
    qh_head *h = (qh_head *)dir;
    /* a bias of rank 2 was read into room for one dimension (stack overflow) */
    const char *wb[] = {"weight", "bias"};
    const int r22[] = {2, 2}, r2[] = {2};
    const hsize_t d_bias2[][2] = {{3, 4}, {3, 4}};
    char *p = h5_file("bias2.h5", 2, wb, r22, d_bias2, 1);
    expect_load_refused(qh_head_load(p, &h), p, "no 1-D dataset 'bias'");
    assert_null(h);
    free(p);
    /* a weight declared but never written read back as zeros (and could claim 256 MB) */
    const hsize_t d_w[][2] = {{3, 4}};
    p = h5_file("unwritten.h5", 1, wb, r2, d_w, 0);
    expect_load_refused(qh_head_load(p, &h), p, "holds less data than its shape says");
    free(p);
    const hsize_t d_wide[][2] = {{65, 4}};
    p = h5_file("labels65.h5", 1, wb, r2, d_wide, 0);
    expect_load_refused(qh_head_load(p, &h), p, "implausible size (65 in dimension 0)");
    free(p);
    /* safetensors score.weight [2^32 + 1, 1] (a sparse 8 GB file) became one label by an int
     * cast, then 2^32 + 1 values were converted into room for one (heap overflow) */
    p = tu_path(dir, "huge.safetensors");
    write_safetensors(p, "{\"score.weight\":{\"dtype\":\"F16\",\"shape\":[4294967297,1],"
                         "\"data_offsets\":[0,8589934594]}}", 0, 0);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "truncate -s +8589934594 '%s'", p);
    if (tu_run(cmd, NULL, NULL) == 0) {
        expect_load_refused(qh_head_load(p, &h), p, "score.weight is [4294967297, 1]; a head has 1..64 labels");
        assert_null(h);
    }
    unlink(p);
    free(p);
}

static void test_feature_cache_files(void **state)
{
    (void)state;
    const char *hl[] = {"hidden", "labels"};
    const int ranks[] = {2, 1};
    int64_t n;
    int hs;
    float *hidden = (float *)dir;
    int32_t *labels = (int32_t *)dir;
    /* 2^30 x 2^20 features declared in a 4 KB file: refused with the numbers, not allocated */
    const hsize_t d_huge[][2] = {{1u << 30, 1u << 20}, {1u << 30, 0}};
    char *p = h5_file("huge.h5", 2, hl, ranks, d_huge, 0);
    expect_load_refused(qh_features_read(p, &n, &hs, &hidden, &labels), p,
                        "reading 1073741824 x 1048576 features needs 4503603.92 GB of memory, more than the");
    assert_null(hidden);
    assert_null(labels);
    free(p);
    const hsize_t d_small[][2] = {{4, 8}, {4, 0}};
    p = h5_file("unwritten.h5", 2, hl, ranks, d_small, 0);
    expect_load_refused(qh_features_read(p, &n, &hs, &hidden, &labels), p, "holds less data than its shapes say");
    free(p);
    const hsize_t d_empty[][2] = {{4, 0}, {4, 0}};
    p = h5_file("zero_width.h5", 2, hl, ranks, d_empty, 1);
    expect_load_refused(qh_features_read(p, &n, &hs, &hidden, &labels), p, "hidden is [4, 0], not a feature matrix");
    free(p);
    /* and a well-formed one still reads */
    const hsize_t d_ok[][2] = {{4, 8}, {4, 0}};
    p = h5_file("ok.h5", 2, hl, ranks, d_ok, 1);
    assert_int_equal(qh_features_read(p, &n, &hs, &hidden, &labels), QH_OK);
    assert_int_equal(n, 4);
    assert_int_equal(hs, 8);
    free(hidden);
    free(labels);
    free(p);
}

/* Overwrite element `at` of tensor name in the safetensors file path with bytes[0..n). */
static void poke(const char *path, const char *name, size_t at, const void *bytes, size_t n)
{
    qh_safetensors *st;
    assert_int_equal(qh_st_open(path, &st), QH_OK);
    const qh_st_tensor *t = qh_st_find(st, name);
    assert_non_null(t);
    long off = (long)((const uint8_t *)qh_st_data(st, t) - (const uint8_t *)st->map) + (long)(at * n);
    qh_st_close(st);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, off, SEEK_SET), 0);
    assert_int_equal(fwrite(bytes, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* NaN reaching the int8 kernel (from a NaN norm weight or row scale in a quantized file) was
 * converted to int8: undefined behaviour (clang's UBSan, fuzz_quant). It must run, not crash. */
static void test_int8_nan(void **state)
{
    (void)state;
    char cmd[8192], *out, *err;
    snprintf(cmd, sizeof cmd, "%s --bits 8 --model %s/good --file %s/nan8.safetensors >/dev/null", QUANTIZE, dir, dir);
    sh("%s", cmd);
    char *q = tu_path(dir, "nan8.safetensors");
    const uint16_t nan16 = 0x7e00;
    const float nan32 = NAN;
    poke(q, "model.layers.0.input_layernorm.weight", 0, &nan16, 2);
    poke(q, "model.layers.0.mlp.up_proj.SCB", 3, &nan32, 4);
    snprintf(cmd, sizeof cmd, "%s --backend cpu --model %s/good --variant int8 --quantized %s --ids 1,2,3", FORWARD, dir, q);
    int rc = tu_run(cmd, &out, &err);
    if (rc != 0) fail_msg("exit %d: %s", rc, err);
    free(out);
    free(err);
    free(q);
}

/* Decoding no ids at all (an empty qh_ids: data NULL) did arithmetic on the NULL pointer. */
static void test_decode_nothing(void **state)
{
    (void)state;
    qh_tokenizer *t;
    assert_int_equal(qh_tokenizer_load(TOKENIZER, &t), QH_OK);
    qh_ids ids;
    qh_text text;
    qh_ids_init(&ids);
    qh_text_init(&text);
    assert_int_equal(qh_tokenizer_decode(t, NULL, 0, &text), QH_OK);
    assert_int_equal(text.len, 0);
    assert_string_equal(text.data, "");
    assert_int_equal(qh_tokenizer_encode(t, "", 0, 0, &ids), QH_OK);
    assert_int_equal(ids.len, 0);
    assert_int_equal(qh_tokenizer_decode(t, ids.data, ids.len, &text), QH_OK);
    qh_ids_free(&ids);
    qh_text_free(&text);
    qh_tokenizer_free(t);
}

/* A class name of NUL bytes in mapping.txt was accepted as an empty name. */
static void test_mapping_nul_name(void **state)
{
    (void)state;
    char *task = tu_path(dir, "nultask");
    sh("mkdir -p '%s'", task);
    free(tu_write_file(task, "mapping.txt", "0\tok\n1\t\0\0b\n", 12));
    qh_tweeteval_mapping m;
    expect_load_refused(qh_tweeteval_load_mapping(task, &m), "mapping.txt:2", "class name holds a NUL byte");
    assert_int_equal(m.num_classes, 0);
    free(task);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_safetensors), cmocka_unit_test(test_hostile_config),
        cmocka_unit_test(test_hostile_tokenizer),   cmocka_unit_test(test_huge_lines),
        cmocka_unit_test(test_full_disk),           cmocka_unit_test(test_workspace_too_big),
        cmocka_unit_test(test_checkpoint_too_big), cmocka_unit_test(test_head_files),
        cmocka_unit_test(test_feature_cache_files), cmocka_unit_test(test_int8_nan),
        cmocka_unit_test(test_decode_nothing),      cmocka_unit_test(test_mapping_nul_name),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
