/* quantize end to end on tiny random LLaMA models: the file and report it writes, the
 * forward pass of int8 and nf4 backbones (library and qhead-forward --variant), and every
 * kind of bad input answered with one line on stderr, exit status 2 and no file left.
 *
 * How close must quantized hidden states be to fp16 ones? Two reference models make the bound:
 *  - "dequantized": every quantized matrix replaced by its dequantized values in fp32. nf4 must
 *    reproduce it to fp32 rounding (its kernel runs the same sgemm on the same numbers); int8
 *    differs by the per-token activation codes, whose steps (absmax / 127 of each token) match
 *    the weight codes' (absmax / 127 of each row), so that difference is bounded like the
 *    weight error below;
 *  - "noise": the fp16 model with Gaussian noise added to each of those matrices, of exactly the
 *    relative Frobenius size its quantization error has. Rounding to absmax-scaled codes leaves
 *    an error uncorrelated with the inputs, so it reaches the hidden states as that noise does:
 *    the dequantized model must be within 1.5x the noisy one's distance from fp16 (1.5 covers
 *    the spread of that distance over noise draws and sequences).
 * By the triangle inequality the quantized model is then within 1.5x (nf4) or 3x (int8) that
 * distance. Measured on the tiny model (hidden 128, 4 layers), the ratios are 1.0-1.2 and
 * about 1.6 for int8 at the tiny preset's large init range; a kernel or loader that gets a
 * scale, a nibble or a row wrong lands far outside. */
#include "testutil.h"

#include "backend.h"
#include "dtype.h"
#include "error.h"
#include "fileio.h"
#include "llama_model.h"
#include "model_gen.h"
#include "quant.h"
#include "safetensors.h"
#include "safetensors_write.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QUANTIZE QHEAD_BIN_DIR "/quantize"
#define FORWARD QHEAD_BIN_DIR "/qhead-forward"
#define CHECKER QHEAD_FIXTURES "/check_safetensors.py"

static char *make_model(const char *dir, const char *name, double init_range)
{
    qh_model_spec s;
    assert_int_equal(qh_model_spec_preset("tiny", &s), QH_OK);
    s.num_labels = 3;
    s.init_range = init_range;
    char *path = tu_path(dir, name);
    assert_int_equal(qh_generate_llama(&s, path), QH_OK);
    return path;
}

/* Runs a command line; returns its exit status, stdout and stderr in *out / *err (freed by caller). */
static int run(char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char **out, char **err, const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char *o = NULL, *e = NULL;
    int rc = tu_run(cmd, &o, &e);
    if (out) *out = o;
    else free(o);
    if (err) *err = e;
    else free(e);
    return rc;
}

static cJSON *read_json(const char *path)
{
    char *text = NULL;
    assert_int_equal(qh_read_file(path, 64u << 20, &text, NULL), QH_OK);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

/* No "*.tmp.*" file left behind in dir. */
static void assert_no_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) fail_msg("temporary file %s/%s left behind", dir, e->d_name);
    closedir(d);
}

/* ---- forward passes ---------------------------------------------------------------------- */

enum { N_SEQS = 6 };
static const int32_t LENGTHS[N_SEQS] = {1, 5, 17, 40, 64, 3};

static void make_ids(int32_t *ids, int n)
{
    uint64_t rng = 77;
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(tu_rand_u64(&rng) % 32000);
}

static int total_tokens(void)
{
    int n = 0;
    for (int s = 0; s < N_SEQS; s++) n += LENGTHS[s];
    return n;
}

/* Hidden states [N_SEQS, hidden] of a variant (variant NULL: fp16). */
static float *forward(const char *dir, const char *variant, const char *qfile, int *hidden_size)
{
    qh_backend *be;
    assert_int_equal(qh_cpu_backend_create(&be), QH_OK);
    qh_llama_model *m;
    if (qh_llama_load_variant(dir, variant, qfile, be, &m)) fail_msg("load %s %s: %s", dir, variant ? variant : "fp16", qh_last_error());
    qh_llama_ctx *ctx;
    assert_int_equal(qh_llama_ctx_create(m, 50, &ctx), QH_OK); /* several micro-batches */
    int n = total_tokens();
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    make_ids(ids, n);
    *hidden_size = m->cfg.hidden_size;
    float *h = malloc(sizeof(float) * (size_t)(N_SEQS * m->cfg.hidden_size));
    assert_int_equal(qh_llama_forward(ctx, ids, LENGTHS, N_SEQS, h), QH_OK);
    free(ids);
    qh_llama_ctx_free(ctx);
    qh_llama_free(m);
    qh_backend_destroy(be);
    return h;
}

/* Relative Frobenius distance of a from b over all sequences. */
static double rel_dist(const float *a, const float *b, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) num += pow((double)a[i] - b[i], 2), den += (double)b[i] * b[i];
    return sqrt(num / den);
}

enum { MODE_DEQUANT, MODE_NOISE };

/* Writes out_dir as an fp32 checkpoint: src_dir's model with each quantized matrix replaced by
 * its dequantized values (MODE_DEQUANT) or by the fp16 values plus Gaussian noise of the same
 * relative Frobenius size as its quantization error (MODE_NOISE). */
static void write_reference_model(const char *src_dir, const char *variant, const char *qfile, int mode,
                                  const char *out_dir)
{
    qh_backend *be;
    assert_int_equal(qh_cpu_backend_create(&be), QH_OK);
    qh_llama_model *m0, *mq;
    assert_int_equal(qh_llama_load(src_dir, be, &m0), QH_OK);
    assert_int_equal(qh_llama_load_variant(src_dir, variant, qfile, be, &mq), QH_OK);
    assert_int_equal(qh_mkdirs(out_dir), QH_OK);
    char *cfg_text = NULL, path[4200];
    size_t cfg_len = 0;
    snprintf(path, sizeof path, "%s/config.json", src_dir);
    assert_int_equal(qh_read_file(path, 1 << 20, &cfg_text, &cfg_len), QH_OK);
    free(tu_write_file(out_dir, "config.json", cfg_text, cfg_len));
    free(cfg_text);

    static const char *names[9] = {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                   "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
                                   "mlp.down_proj"};
    int L = m0->cfg.num_layers, n_t = 2 + 9 * L + 1;
    const qh_tensor **src = calloc((size_t)n_t, sizeof *src), **qt = calloc((size_t)n_t, sizeof *qt);
    char(*tname)[128] = calloc((size_t)n_t, sizeof *tname);
    int k = 0;
    snprintf(tname[k], 128, "model.embed_tokens.weight"), src[k++] = &m0->embed;
    for (int l = 0; l < L; l++) {
        const qh_tensor *a = (const qh_tensor *)&m0->layers[l], *b = (const qh_tensor *)&mq->layers[l];
        for (int i = 0; i < 9; i++) {
            snprintf(tname[k], 128, "model.layers.%d.%s.weight", l, names[i]);
            qt[k] = qh_tensor_is_quantized(&b[i]) ? &b[i] : NULL;
            src[k++] = &a[i];
        }
    }
    snprintf(tname[k], 128, "model.norm.weight"), src[k++] = &m0->final_norm;
    snprintf(tname[k], 128, "score.weight"), src[k++] = &m0->score;
    qh_st_writer *w;
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    assert_int_equal(qh_st_writer_begin(path, &w), QH_OK);
    for (int i = 0; i < n_t; i++) assert_int_equal(qh_st_writer_declare(w, tname[i], QH_F32, src[i]->ndim, src[i]->shape), QH_OK);
    uint64_t rng = 4242;
    for (int i = 0; i < n_t; i++) {
        int64_t n = qh_tensor_numel(src[i]);
        float *f = malloc(sizeof(float) * (size_t)n), *d = malloc(sizeof(float) * (size_t)n);
        qh_convert_to_f32(src[i]->dtype, src[i]->data, f, (size_t)n);
        if (qt[i]) {
            qh_quant_dequantize(qt[i], 0, n, d);
            double num = 0, den = 0;
            for (int64_t j = 0; j < n; j++) num += pow((double)d[j] - f[j], 2), den += (double)f[j] * f[j];
            double sd = sqrt(num / (double)n); /* the error's rms: noise of the same Frobenius size */
            for (int64_t j = 0; j < n; j++) f[j] = mode == MODE_DEQUANT ? d[j] : (float)(f[j] + sd * tu_rand_normal(&rng));
        }
        assert_int_equal(qh_st_writer_write(w, f, sizeof(float) * (size_t)n), QH_OK);
        free(f);
        free(d);
    }
    assert_int_equal(qh_st_writer_commit(w), QH_OK);
    free(src);
    free(qt);
    free(tname);
    qh_llama_free(mq);
    qh_llama_free(m0);
    qh_backend_destroy(be);
}

static void check_hidden_states(const char *dir, const char *model, double init_range, const char *variant,
                                const char *args, double *dist_out)
{
    char *out, *err, qfile[4200], deq_dir[4200], noise_dir[4200];
    snprintf(qfile, sizeof qfile, "%s/%s-%s.safetensors", dir, variant, args[0] ? "b" : "a");
    int rc = run(&out, &err, QUANTIZE " --model %s --file %s --report %s/r.json %s", model, qfile, dir, args);
    if (rc) fail_msg("quantize: %s", err);
    free(out);
    free(err);
    snprintf(deq_dir, sizeof deq_dir, "%s/deq", dir);
    snprintf(noise_dir, sizeof noise_dir, "%s/noise", dir);
    write_reference_model(model, variant, qfile, MODE_DEQUANT, deq_dir);
    write_reference_model(model, variant, qfile, MODE_NOISE, noise_dir);
    int hs;
    float *h16 = forward(model, NULL, NULL, &hs), *hq = forward(model, variant, qfile, &hs);
    float *hd = forward(deq_dir, NULL, NULL, &hs), *hn = forward(noise_dir, NULL, NULL, &hs);
    int n = N_SEQS * hs;
    double d_fp16 = rel_dist(hq, h16, n), d_deq = rel_dist(hq, hd, n), d_noise = rel_dist(hn, h16, n);
    double d_deq_fp16 = rel_dist(hd, h16, n);
    print_message("init %.2f %s %s: |q - fp16| %.5f, |dequantized - fp16| %.5f, |noise - fp16| %.5f, |q - dequantized| %.2e\n",
                  init_range, variant, args, d_fp16, d_deq_fp16, d_noise, d_deq);
    /* the weights: quantization error acts like noise of its size */
    assert_true(d_deq_fp16 <= 1.5 * d_noise);
    /* the kernel: nf4 is the dequantized product; int8 adds per-token activation codes, whose
     * steps (absmax / 127 per token) are the weight codes' (absmax / 127 per row) again */
    double kernel = !strcmp(variant, "nf4") ? 1e-5 : 1.5 * d_noise;
    assert_true(d_deq <= kernel);
    /* together (triangle inequality): nf4 within 1.5x the noise, int8 within 3x */
    assert_true(d_fp16 <= 1.5 * d_noise + kernel);
    if (dist_out) *dist_out = d_fp16;
    free(h16);
    free(hq);
    free(hd);
    free(hn);
    tu_rmtree(deq_dir);
    tu_rmtree(noise_dir);
}

static void test_hidden_states_close(void **state)
{
    (void)state;
    const double ranges[2] = {0.02, 0.1}; /* LLaMA's initializer range, and the tiny preset's */
    for (int r = 0; r < 2; r++) {
        char *dir = tu_mkdtemp("qhidden");
        char *model = make_model(dir, "model", ranges[r]);
        double d8, d4, d4dq;
        check_hidden_states(dir, model, ranges[r], "int8", "--bits 8", &d8);
        check_hidden_states(dir, model, ranges[r], "nf4", "--bits 4", &d4);
        check_hidden_states(dir, model, ranges[r], "nf4", "--bits 4 --double-quant --blocksize 128", &d4dq);
        assert_true(d8 < d4); /* 8 bits are closer than 4 */
        tu_rmtree(dir);
        free(model);
        free(dir);
    }
}

/* ---- the file, the report, the command lines ------------------------------------------ */

static void check_file_and_report(const char *qfile, const char *report, int bits, int blocksize, int dq)
{
    qh_safetensors *st;
    assert_int_equal(qh_st_open(qfile, &st), QH_OK);
    assert_string_equal(qh_st_meta(st, "format"), bits == 8 ? "int8" : "nf4");
    assert_string_equal(qh_st_meta(st, "format_version"), "1");
    assert_int_equal(strlen(qh_st_meta(st, "source_fingerprint")), 64);
    assert_int_equal(strlen(qh_st_meta(st, "config_sha256")), 64);
    assert_non_null(strstr(qh_st_meta(st, "tool"), "quantize"));
    if (bits == 8) {
        assert_string_equal(qh_st_meta(st, "threshold"), "6");
        assert_null(qh_st_find(st, "model.layers.0.self_attn.q_proj.weight.absmax"));
        const qh_st_tensor *t = qh_st_find(st, "model.layers.3.mlp.down_proj.SCB");
        assert_true(t && t->dtype == QH_F32 && t->shape[0] == 128);
        t = qh_st_find(st, "model.layers.3.mlp.down_proj.weight");
        assert_true(t && t->dtype == QH_I8 && t->shape[0] == 128 && t->shape[1] == 344);
        assert_int_equal(st->n_tensors, 1 + 4 * (2 + 7 * 2) + 1 + 1);
    } else {
        char bs[16];
        snprintf(bs, sizeof bs, "%d", blocksize);
        assert_string_equal(qh_st_meta(st, "blocksize"), bs);
        assert_string_equal(qh_st_meta(st, "double_quant"), dq ? "true" : "false");
        const qh_st_tensor *t = qh_st_find(st, "model.layers.0.mlp.up_proj.weight");
        assert_true(t && t->dtype == QH_U8 && t->shape[0] == 344 && t->shape[1] == 64);
        t = qh_st_find(st, "model.layers.0.mlp.up_proj.weight.absmax");
        assert_true(t && t->dtype == (dq ? QH_I8 : QH_F32) && t->shape[0] == 344 * 128 / blocksize);
        assert_int_equal(st->n_tensors, 1 + 4 * (2 + 7 * (dq ? 4 : 2)) + 1 + 1);
    }
    const qh_st_tensor *e = qh_st_find(st, "model.embed_tokens.weight");
    assert_true(e && e->dtype == QH_F16 && e->shape[0] == 32000); /* embeddings stay fp16 */
    assert_non_null(qh_st_find(st, "score.weight"));
    assert_non_null(qh_st_find(st, "model.layers.2.post_attention_layernorm.weight"));
    qh_st_close(st);

    cJSON *r = read_json(report);
    assert_string_equal(cJSON_GetObjectItem(r, "format")->valuestring, bits == 8 ? "int8" : "nf4");
    const cJSON *mats = cJSON_GetObjectItem(r, "matrices"), *ov = cJSON_GetObjectItem(r, "overall"), *m;
    assert_int_equal(cJSON_GetArraySize(mats), 28);
    double lo = bits == 8 ? 0.002 : 0.07, hi = bits == 8 ? 0.012 : 0.12; /* Gaussian weights' expected errors */
    cJSON_ArrayForEach(m, mats)
    {
        double e_m = cJSON_GetObjectItem(m, "rel_frobenius_error")->valuedouble;
        if (!(e_m > lo && e_m < hi)) fail_msg("%s: relative error %g", cJSON_GetObjectItem(m, "name")->valuestring, e_m);
        assert_true(cJSON_GetObjectItem(m, "bytes_after")->valuedouble < cJSON_GetObjectItem(m, "bytes_before")->valuedouble);
        assert_true(cJSON_GetObjectItem(m, "seconds")->valuedouble >= 0);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(m, "shape")), 2);
    }
    double bits_pw = cJSON_GetObjectItem(ov, "bits_per_weight")->valuedouble;
    double want_bits = bits == 8 ? 8 + 32.0 / 128 : 4 + (dq ? 8.0 : 32.0) / blocksize; /* codes + scales */
    assert_true(fabs(bits_pw - want_bits) < (bits == 8 ? 0.3 : 0.05));
    double e_all = cJSON_GetObjectItem(ov, "rel_frobenius_error")->valuedouble;
    assert_true(e_all > lo && e_all <= cJSON_GetObjectItem(ov, "worst_rel_frobenius_error")->valuedouble);
    struct stat sb;
    assert_int_equal(stat(qfile, &sb), 0);
    assert_true(cJSON_GetObjectItem(ov, "bytes_after")->valuedouble == (double)sb.st_size);
    cJSON_Delete(r);

    /* Python users open it with the safetensors library (or, where that is not installed, the
     * header passes the library's own validation rules) */
    char *out = NULL;
    int rc = run(&out, NULL, "python3 %s %s", CHECKER, qfile);
    if (rc == 127) print_message("python3 not found: Python check skipped\n");
    else if (rc != 0) fail_msg("%s: %s", qfile, out);
    else print_message("%s", out);
    free(out);
}

static void test_quantize_cli(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("qcli");
    char *model = make_model(dir, "model", 0.1);
    const struct {
        const char *args;
        int bits, blocksize, dq;
    } cases[] = {{"--bits 8", 8, 0, 0},
                 {"--bits 4", 4, 64, 0},
                 {"--bits 4 --double-quant", 4, 64, 1},
                 {"--bits 4 --blocksize 128", 4, 128, 0},
                 {"--bits 4 --blocksize 256 --double-quant", 4, 256, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *out, *err, qfile[4200], report[4200];
        snprintf(qfile, sizeof qfile, "%s/q%zu.safetensors", dir, i);
        snprintf(report, sizeof report, "%s/q%zu.json", dir, i);
        int rc = run(&out, &err, QUANTIZE " %s --model %s --file %s --report %s", cases[i].args, model, qfile, report);
        if (rc) fail_msg("quantize %s: exit %d: %s", cases[i].args, rc, err);
        assert_non_null(strstr(out, "relative Frobenius error"));
        assert_non_null(strstr(out, qfile));
        free(out);
        free(err);
        check_file_and_report(qfile, report, cases[i].bits, cases[i].blocksize, cases[i].dq);
    }
    assert_no_temp_files(dir);
    tu_rmtree(dir);
    free(model);
    free(dir);
}

/* Defaults: run in a directory, quantize writes checkpoints/backbone-nf4.safetensors and
 * checkpoints/quantize-nf4.json, and qhead-forward --variant nf4 finds the file there; the
 * CLI prints what the library computes. */
static void test_defaults_and_forward_cli(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("qdef");
    char *model = make_model(dir, "model", 0.1);
    char *out, *err;
    int rc = run(&out, &err, "cd %s && " QUANTIZE " --bits 4 --model model", dir);
    if (rc) fail_msg("quantize: %s", err);
    free(out);
    free(err);
    char *q = tu_path(dir, "checkpoints/backbone-nf4.safetensors"), *rep = tu_path(dir, "checkpoints/quantize-nf4.json");
    assert_true(qh_path_exists(q) && qh_path_exists(rep));
    rc = run(&out, &err, "cd %s && QHEAD_MODEL=model " QUANTIZE " --bits 8", dir);
    if (rc) fail_msg("quantize: %s", err);
    free(out);
    free(err);
    const char *variants[2] = {"nf4", "int8"};
    for (int v = 0; v < 2; v++) {
        rc = run(&out, &err, "cd %s && " FORWARD " --backend cpu --model model --variant %s --ids 1,450,3186,99", dir, variants[v]);
        if (rc) fail_msg("qhead-forward --variant %s: %s", variants[v], err);
        cJSON *j = cJSON_Parse(out);
        free(out);
        free(err);
        assert_non_null(j);
        /* the library on the same ids */
        qh_backend *be;
        assert_int_equal(qh_cpu_backend_create(&be), QH_OK);
        qh_llama_model *m;
        char qf[4200];
        snprintf(qf, sizeof qf, "%s/checkpoints/backbone-%s.safetensors", dir, variants[v]);
        assert_int_equal(qh_llama_load_variant(model, variants[v], qf, be, &m), QH_OK);
        assert_string_equal(m->quant.variant, variants[v]);
        qh_llama_ctx *ctx;
        assert_int_equal(qh_llama_ctx_create(m, 4, &ctx), QH_OK);
        int32_t ids[4] = {1, 450, 3186, 99}, len = 4;
        float h[128];
        assert_int_equal(qh_llama_forward(ctx, ids, &len, 1, h), QH_OK);
        const cJSON *hid = cJSON_GetObjectItem(j, "hidden");
        assert_int_equal(cJSON_GetArraySize(hid), 128);
        for (int i = 0; i < 128; i++) assert_true(fabs(cJSON_GetArrayItem(hid, i)->valuedouble - h[i]) <= 1e-6 * (1 + fabs(h[i])));
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "logits")), 3); /* score.weight came along */
        cJSON_Delete(j);
        qh_llama_ctx_free(ctx);
        qh_llama_free(m);
        qh_backend_destroy(be);
    }
    tu_rmtree(dir);
    free(q);
    free(rep);
    free(model);
    free(dir);
}

/* Write an fp16 bit pattern over element idx of a tensor inside a model's safetensors file. */
static void poke_f16(const char *model, const char *tensor, int64_t idx, uint16_t bits)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", model);
    qh_safetensors *st;
    assert_int_equal(qh_st_open(path, &st), QH_OK);
    const qh_st_tensor *t = qh_st_find(st, tensor);
    assert_true(t && t->dtype == QH_F16);
    off_t at = (off_t)((const uint8_t *)qh_st_data(st, t) - (const uint8_t *)st->map) + (off_t)idx * 2;
    qh_st_close(st);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0 && pwrite(fd, &bits, 2, at) == 2);
    close(fd);
}

/* quantize args must exit 2 with one stderr line containing want, and leave neither the
 * output nor a temporary file in dir. */
static void expect_refusal(const char *dir, const char *args, const char *want)
{
    char *err, out_path[4200];
    snprintf(out_path, sizeof out_path, "%s/out.safetensors", dir);
    int rc = run(NULL, &err, "cd %s && " QUANTIZE " %s", dir, args);
    if (rc != 2 || tu_count_lines(err) != 1 || !strstr(err, want))
        fail_msg("quantize %s: exit %d, stderr '%s' (want one line with '%s')", args, rc, err, want);
    assert_false(qh_path_exists(out_path));
    assert_no_temp_files(dir);
    free(err);
}

static void test_bad_input(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("qbad");
    free(make_model(dir, "good", 0.1));
    char *nan_model = make_model(dir, "nan", 0.1), *inf_model = make_model(dir, "inf", 0.1);
    char *gpt = make_model(dir, "gpt", 0.1);
    poke_f16(nan_model, "model.layers.2.mlp.up_proj.weight", 5 * 128 + 7, 0x7e00);
    poke_f16(inf_model, "model.embed_tokens.weight", 3, 0xfc00); /* copied tensors are checked too */
    char *cfg = NULL, *p = tu_path(gpt, "config.json");
    assert_int_equal(qh_read_file(p, 1 << 20, &cfg, NULL), QH_OK);
    char *mt = strstr(cfg, "\"llama\"");
    assert_non_null(mt);
    memcpy(mt, "\"gpt2\" ", 7);
    free(tu_write_file(gpt, "config.json", cfg, strlen(cfg)));
    free(cfg);
    free(p);
    free(tu_write_file(dir, "afile", "x", 1));

    const struct {
        const char *args, *want;
    } cases[] = {
        {"--bits 8 --model missing --file out.safetensors", "missing: no such model directory"},
        {"--bits 3 --model good --file out.safetensors", "--bits 3"},
        {"--bits x --model good --file out.safetensors", "--bits"},
        {"--model good --file out.safetensors", "--bits is required"},
        {"--bits 4 --blocksize 100 --model good --file out.safetensors", "--blocksize 100"},
        {"--bits 4 --blocksize 32 --model good --file out.safetensors", "--blocksize 32"},
        {"--bits 8 --blocksize 64 --model good --file out.safetensors", "--blocksize applies to --bits 4"},
        {"--bits 8 --double-quant --model good --file out.safetensors", "--double-quant applies"},
        {"--bits 4 --threshold 3 --model good --file out.safetensors", "--threshold applies"},
        {"--bits 8 --threshold nan --model good --file out.safetensors", "--threshold"},
        {"--bits 8 --threshold -1 --model good --file out.safetensors", "--threshold"},
        {"--bits 8 --model good --file out.safetensors --frobnicate", "unknown argument '--frobnicate'"},
        {"--bits 8 --model good --file", "--file needs a value"},
        {"--bits 4 --model nan --file out.safetensors", "model.layers.2.mlp.up_proj.weight' has a NaN or infinite value at [5, 7]"},
        {"--bits 8 --model nan --file out.safetensors", "has a NaN or infinite value"},
        {"--bits 8 --model inf --file out.safetensors", "model.embed_tokens.weight' has a NaN or infinite value at [0, 3]"},
        {"--bits 8 --model gpt --file out.safetensors", "not a LLaMA model"},
        {"--bits 8 --model good --file afile/out.safetensors", "afile/out.safetensors"},
        {"--bits 4 --model good --file out.safetensors --report afile/r.json", "afile/r.json"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) expect_refusal(dir, cases[i].args, cases[i].want);
    char *r = tu_path(dir, "quantize-int8.json");
    assert_false(qh_path_exists(r)); /* no report either */
    free(r);
    tu_rmtree(dir);
    free(nan_model);
    free(inf_model);
    free(gpt);
    free(dir);
}

/* qhead-forward refuses a missing, mismatched or foreign quantized file with one line. */
static void test_forward_bad_variant(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("qfwd");
    char *model = make_model(dir, "model", 0.1), *other = make_model(dir, "other", 0.1);
    char *out, *err;
    int rc = run(&out, &err, QUANTIZE " --bits 8 --model %s --file %s/q8.safetensors", model, dir);
    if (rc) fail_msg("quantize: %s", err);
    free(out);
    free(err);
    /* other differs from model in config.json only */
    char *cfg = NULL, *p = tu_path(other, "config.json");
    assert_int_equal(qh_read_file(p, 1 << 20, &cfg, NULL), QH_OK);
    char *eps = strstr(cfg, "\"rms_norm_eps\"");
    assert_non_null(eps);
    eps[1] = 'R'; /* an unknown key: rms_norm_eps falls back to its default */
    free(tu_write_file(other, "config.json", cfg, strlen(cfg)));
    free(cfg);
    free(p);
    const struct {
        const char *model, *variant, *file, *want;
    } cases[] = {
        {model, "int8", "none.safetensors", "none.safetensors: no such file"},
        {model, "nf4", "q8.safetensors", "holds int8 weights, not nf4"},
        {model, "int4", "q8.safetensors", "variant 'int4'"},
        {model, "fp16", "q8.safetensors", "goes with variant int8 or nf4"},
        {other, "int8", "q8.safetensors", "different config.json"},
        {model, "int8", "model/config.json", "config.json"}, /* not a safetensors file */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rc = run(NULL, &err, FORWARD " --backend cpu --ids 1,2 --model %s --variant %s --quantized %s/%s", cases[i].model,
                 cases[i].variant, dir, cases[i].file);
        if (rc != 2 || tu_count_lines(err) != 1 || !strstr(err, cases[i].want))
            fail_msg("qhead-forward case %zu: exit %d, stderr '%s' (want '%s')", i, rc, err, cases[i].want);
        free(err);
    }
    tu_rmtree(dir);
    free(model);
    free(other);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_cli),        cmocka_unit_test(test_defaults_and_forward_cli),
        cmocka_unit_test(test_bad_input),           cmocka_unit_test(test_forward_bad_variant),
        cmocka_unit_test(test_hidden_states_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
