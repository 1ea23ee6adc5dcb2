#include "model_gen.h"

#include "dtype.h"
#include "error.h"
#include "fileio.h"
#include "safetensors_write.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qh_model_spec_preset(const char *name, qh_model_spec *s)
{
    memset(s, 0, sizeof *s);
    s->init_range = 0.02;
    s->rope_theta = 10000.0;
    s->rms_norm_eps = 1e-5;
    s->seed = 1;
    s->shard_bytes = 5000000000ull;
    if (!strcmp(name, "7b")) {
        s->hidden_size = 4096, s->intermediate_size = 11008, s->num_layers = 32;
        s->num_heads = 32, s->num_kv_heads = 32, s->vocab_size = 32000;
    } else if (!strcmp(name, "tiny")) {
        s->hidden_size = 128, s->intermediate_size = 344, s->num_layers = 4;
        s->num_heads = 4, s->num_kv_heads = 2, s->vocab_size = 32000;
        s->init_range = 0.1;
    } else {
        return qh_fail(QH_EINPUT, "--preset %s: unknown (tiny or 7b)", name);
    }
    return QH_OK;
}

typedef struct {
    char name[128];
    int64_t shape[2];
    int ndim;
    int is_norm;
} gen_tensor;

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Fill rows [r0, r1) of a tensor with normal(0, sd) in fp16; each row has its own stream. */
static void fill_rows(uint16_t *dst, int64_t r0, int64_t r1, int64_t cols, uint64_t tensor_seed, double sd)
{
#pragma omp parallel for schedule(static)
    for (int64_t r = r0; r < r1; r++) {
        uint64_t st = mix(tensor_seed ^ (uint64_t)r * 0x9E3779B97F4A7C15ull);
        uint16_t *row = dst + (r - r0) * cols;
        for (int64_t c = 0; c < cols; c += 2) {
            st += 0x9E3779B97F4A7C15ull;
            double u1 = ((mix(st) >> 11) + 1) * 0x1.0p-53;
            st += 0x9E3779B97F4A7C15ull;
            double u2 = (mix(st) >> 11) * 0x1.0p-53;
            double rad = sqrt(-2.0 * log(u1)) * sd;
            row[c] = qh_f32_to_f16((float)(rad * cos(6.283185307179586 * u2)));
            if (c + 1 < cols) row[c + 1] = qh_f32_to_f16((float)(rad * sin(6.283185307179586 * u2)));
        }
    }
}

static size_t list_tensors(const qh_model_spec *s, gen_tensor *t)
{
    size_t n = 0;
    int64_t h = s->hidden_size, f = s->intermediate_size, hd = h / s->num_heads, kw = hd * s->num_kv_heads;
#define ADD(nm, r, c, norm)                                                              \
    do {                                                                                 \
        if (t) {                                                                         \
            snprintf(t[n].name, sizeof t[n].name, "%s", nm);                             \
            t[n].shape[0] = r, t[n].shape[1] = c, t[n].ndim = c ? 2 : 1, t[n].is_norm = norm; \
        }                                                                                \
        n++;                                                                             \
    } while (0)
    ADD("model.embed_tokens.weight", s->vocab_size, h, 0);
    char nm[128];
    for (int l = 0; l < s->num_layers; l++) {
        const struct {
            const char *suffix;
            int64_t r, c;
            int norm;
        } L[] = {{"input_layernorm.weight", h, 0, 1},     {"self_attn.q_proj.weight", h, h, 0},
                 {"self_attn.k_proj.weight", kw, h, 0},   {"self_attn.v_proj.weight", kw, h, 0},
                 {"self_attn.o_proj.weight", h, h, 0},    {"post_attention_layernorm.weight", h, 0, 1},
                 {"mlp.gate_proj.weight", f, h, 0},       {"mlp.up_proj.weight", f, h, 0},
                 {"mlp.down_proj.weight", h, f, 0}};
        for (size_t i = 0; i < sizeof L / sizeof *L; i++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s", l, L[i].suffix);
            ADD(nm, L[i].r, L[i].c, L[i].norm);
        }
    }
    ADD("model.norm.weight", h, 0, 1);
    if (s->num_labels > 0) ADD("score.weight", s->num_labels, h, 0);
#undef ADD
    return n;
}

static int write_config(const qh_model_spec *s, const char *dir)
{
    cJSON *c = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(c, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(s->num_labels > 0 ? "LlamaForSequenceClassification" : "LlamaForCausalLM"));
    cJSON_AddStringToObject(c, "model_type", "llama");
    cJSON_AddNumberToObject(c, "hidden_size", s->hidden_size);
    cJSON_AddNumberToObject(c, "intermediate_size", s->intermediate_size);
    cJSON_AddNumberToObject(c, "num_hidden_layers", s->num_layers);
    cJSON_AddNumberToObject(c, "num_attention_heads", s->num_heads);
    cJSON_AddNumberToObject(c, "num_key_value_heads", s->num_kv_heads);
    cJSON_AddNumberToObject(c, "vocab_size", s->vocab_size);
    cJSON_AddNumberToObject(c, "max_position_embeddings", 4096);
    cJSON_AddNumberToObject(c, "rms_norm_eps", s->rms_norm_eps);
    cJSON *rp = cJSON_AddObjectToObject(c, "rope_parameters");
    cJSON_AddNumberToObject(rp, "rope_theta", s->rope_theta);
    cJSON_AddStringToObject(rp, "rope_type", "default");
    cJSON_AddStringToObject(c, "hidden_act", "silu");
    cJSON_AddStringToObject(c, "dtype", "float16");
    cJSON_AddNumberToObject(c, "bos_token_id", 1);
    cJSON_AddNumberToObject(c, "eos_token_id", 2);
    cJSON_AddFalseToObject(c, "tie_word_embeddings");
    if (s->num_labels > 0) {
        cJSON *id2 = cJSON_AddObjectToObject(c, "id2label");
        for (int i = 0; i < s->num_labels; i++) {
            char k[16], v[32];
            snprintf(k, sizeof k, "%d", i);
            snprintf(v, sizeof v, "LABEL_%d", i);
            cJSON_AddStringToObject(id2, k, v);
        }
    }
    char *text = cJSON_Print(c);
    cJSON_Delete(c);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    qh_atomic_file af;
    int rc = qh_atomic_begin(&af, path);
    if (!rc) {
        fputs(text, af.fp);
        fputc('\n', af.fp);
        rc = qh_atomic_commit(&af);
    }
    free(text);
    return rc;
}

static int64_t tensor_bytes(const gen_tensor *t) { return t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1) * 2; }

static int write_shard(const qh_model_spec *s, const char *path, const gen_tensor *t, size_t first, size_t end)
{
    qh_st_writer *w;
    int rc = qh_st_writer_begin(path, &w);
    if (rc) return rc;
    for (size_t i = first; !rc && i < end; i++) rc = qh_st_writer_declare(w, t[i].name, QH_F16, t[i].ndim, t[i].shape);
    if (!rc) rc = qh_st_writer_meta(w, "format", "pt");
    const int64_t chunk_bytes = 64 << 20;
    uint16_t *buf = malloc((size_t)chunk_bytes + 65536 * 2);
    if (!buf && !rc) rc = qh_fail(QH_ESYS, "out of memory");
    for (size_t i = first; !rc && i < end; i++) {
        int64_t rows = t[i].shape[0], cols = t[i].ndim == 2 ? t[i].shape[1] : rows;
        if (t[i].is_norm) {
            for (int64_t c = 0; c < rows; c++) buf[c] = qh_f32_to_f16(1.0f);
            rc = qh_st_writer_write(w, buf, (size_t)rows * 2);
            continue;
        }
        int64_t per = chunk_bytes / (cols * 2);
        if (per < 1) per = 1;
        uint64_t tseed = mix(s->seed * 0x100000001B3ull ^ (uint64_t)i * 0xD6E8FEB86659FD93ull);
        for (int64_t r = 0; !rc && r < rows; r += per) {
            int64_t r1 = r + per < rows ? r + per : rows;
            fill_rows(buf, r, r1, cols, tseed, s->init_range);
            rc = qh_st_writer_write(w, buf, (size_t)((r1 - r) * cols * 2));
        }
    }
    free(buf);
    if (rc) {
        qh_st_writer_abort(w);
        return rc;
    }
    return qh_st_writer_commit(w);
}

int qh_generate_llama(const qh_model_spec *s, const char *dir)
{
    if (s->hidden_size < 2 || s->num_heads < 1 || s->hidden_size % s->num_heads || s->num_kv_heads < 1 ||
        s->num_heads % s->num_kv_heads || s->num_layers < 1 || s->vocab_size < 1 || s->intermediate_size < 1 ||
        (s->hidden_size / s->num_heads) % 2)
        return qh_fail(QH_EINPUT, "model shape: inconsistent sizes (hidden %d, heads %d, kv heads %d)", s->hidden_size,
                       s->num_heads, s->num_kv_heads);
    int rc = qh_mkdirs(dir);
    if (rc) return rc;
    size_t n = list_tensors(s, NULL);
    gen_tensor *t = calloc(n, sizeof *t);
    if (!t) return qh_fail(QH_ESYS, "out of memory");
    list_tensors(s, t);
    /* Group tensors into shards of at most shard_bytes (a tensor never spans two). */
    size_t *starts = calloc(n + 1, sizeof *starts), n_shards = 0;
    int64_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || (acc + tensor_bytes(&t[i]) > (int64_t)s->shard_bytes && acc > 0)) starts[n_shards++] = i, acc = 0;
        acc += tensor_bytes(&t[i]);
    }
    starts[n_shards] = n;
    cJSON *index = cJSON_CreateObject(), *map = cJSON_CreateObject();
    char path[4096], file[64];
    for (size_t k = 0; !rc && k < n_shards; k++) {
        if (n_shards == 1) snprintf(file, sizeof file, "model.safetensors");
        else snprintf(file, sizeof file, "model-%05zu-of-%05zu.safetensors", k + 1, n_shards);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        rc = write_shard(s, path, t, starts[k], starts[k + 1]);
        for (size_t i = starts[k]; i < starts[k + 1]; i++) cJSON_AddStringToObject(map, t[i].name, file);
    }
    cJSON_AddItemToObject(index, "weight_map", map);
    if (!rc && n_shards > 1) {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        char *text = cJSON_Print(index);
        qh_atomic_file af;
        rc = qh_atomic_begin(&af, path);
        if (!rc) {
            fputs(text, af.fp);
            rc = qh_atomic_commit(&af);
        }
        free(text);
    }
    cJSON_Delete(index);
    if (!rc) rc = write_config(s, dir); /* last: a directory with config.json is complete */
    free(starts);
    free(t);
    return rc;
}
