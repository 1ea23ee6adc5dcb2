#include "llama_config.h"

#include "error.h"
#include "fileio.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Limits far beyond any released LLaMA, low enough that products of them cannot overflow. */
#define MAX_DIM (1 << 17)
#define MAX_LAYERS 1024
#define MAX_VOCAB (1 << 22)

static int get_int(const char *path, const cJSON *root, const char *key, int required, int dflt, int lo, int hi,
                   int *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return qh_fail(QH_EINPUT, "%s: required field '%s' is missing", path, key);
        *out = dflt;
        return QH_OK;
    }
    if (!cJSON_IsNumber(it)) return qh_fail(QH_EINPUT, "%s: '%s' must be an integer", path, key);
    /* Range first: converting a double outside int's range (1e300, inf) is undefined. */
    double d = it->valuedouble;
    if (!(d >= lo && d <= hi)) return qh_fail(QH_EINPUT, "%s: '%s' is %g, outside [%d, %d]", path, key, d, lo, hi);
    if (d != (double)(int)d) return qh_fail(QH_EINPUT, "%s: '%s' must be an integer, not %g", path, key, d);
    *out = (int)d;
    return QH_OK;
}

static int get_double(const char *path, const cJSON *obj, const char *key, double dflt, double lo, double hi,
                      double *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it)) {
        *out = dflt;
        return QH_OK;
    }
    if (!cJSON_IsNumber(it)) return qh_fail(QH_EINPUT, "%s: '%s' must be a number", path, key);
    if (!(it->valuedouble > lo && it->valuedouble < hi))
        return qh_fail(QH_EINPUT, "%s: '%s' is %g, outside (%g, %g)", path, key, it->valuedouble, lo, hi);
    *out = it->valuedouble;
    return QH_OK;
}

static int parse_dtype(const char *path, const cJSON *root, qh_llama_config *cfg)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    if (!it || cJSON_IsNull(it)) it = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
    cfg->dtype = QH_F16;
    if (!it || cJSON_IsNull(it)) return QH_OK;
    if (!cJSON_IsString(it)) return qh_fail(QH_EINPUT, "%s: 'dtype' must be a string", path);
    const char *s = it->valuestring;
    if (strcmp(s, "float16") == 0) cfg->dtype = QH_F16;
    else if (strcmp(s, "bfloat16") == 0) cfg->dtype = QH_BF16;
    else if (strcmp(s, "float32") == 0) cfg->dtype = QH_F32;
    else return qh_fail(QH_EINPUT, "%s: dtype '%s' is not supported (float16, bfloat16, float32)", path, s);
    return QH_OK;
}

/* Only plain RoPE is implemented; scaled variants would silently give wrong numbers. */
static int parse_rope(const char *path, const cJSON *root, qh_llama_config *cfg)
{
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const cJSON *src = root;
    if (params && !cJSON_IsNull(params)) {
        if (!cJSON_IsObject(params)) return qh_fail(QH_EINPUT, "%s: 'rope_parameters' must be an object", path);
        src = params;
    }
    /* Both spellings are checked: a 4.x rope_scaling next to a 5.x rope_parameters still scales. */
    const char *keys[] = {"rope_parameters", "rope_scaling"};
    for (int k = 0; k < 2; k++) {
        const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(root, keys[k]);
        if (!scaling || cJSON_IsNull(scaling)) continue;
        if (!cJSON_IsObject(scaling)) return qh_fail(QH_EINPUT, "%s: '%s' must be an object", path, keys[k]);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(scaling, "rope_type");
        if (!type) type = cJSON_GetObjectItemCaseSensitive(scaling, "type");
        if (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "default") != 0))
            return qh_fail(QH_EINPUT, "%s: %s: rope type '%s' is not supported (only default RoPE)", path, keys[k],
                           cJSON_IsString(type) ? type->valuestring : "?");
    }
    int rc = get_double(path, src, "rope_theta", 10000.0, 0.0, 1e12, &cfg->rope_theta);
    if (!rc && src != root && !cJSON_GetObjectItemCaseSensitive(src, "rope_theta"))
        rc = get_double(path, root, "rope_theta", 10000.0, 0.0, 1e12, &cfg->rope_theta);
    return rc;
}

static int parse_labels(const char *path, const cJSON *root, qh_llama_config *cfg)
{
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "id2label");
    cfg->num_labels = 0;
    if (!map || cJSON_IsNull(map)) return QH_OK;
    if (!cJSON_IsObject(map)) return qh_fail(QH_EINPUT, "%s: 'id2label' must be an object", path);
    int n = cJSON_GetArraySize(map);
    if (n > QH_MAX_LABELS) return qh_fail(QH_EINPUT, "%s: id2label has %d labels, at most %d supported", path, n, QH_MAX_LABELS);
    char seen[QH_MAX_LABELS] = {0};
    const cJSON *it;
    cJSON_ArrayForEach(it, map)
    {
        /* Keys are canonical decimals ("0", "17"): strtol would also take "", " 1", "+1", "01". */
        const char *k = it->string;
        int id = 0, ok = k[0] != '\0' && (k[0] != '0' || k[1] == '\0');
        for (const char *c = k; ok && *c; c++) {
            ok = *c >= '0' && *c <= '9' && id < n;
            id = id * 10 + (*c - '0');
        }
        if (!ok || id >= n)
            return qh_fail(QH_EINPUT, "%s: id2label key '%s' is not a label id below %d", path, k, n);
        if (seen[id]) return qh_fail(QH_EINPUT, "%s: id2label id %d appears twice", path, id);
        seen[id] = 1;
        if (!cJSON_IsString(it))
            return qh_fail(QH_EINPUT, "%s: id2label entry '%s' must be a string label name", path, k);
        snprintf(cfg->label_names[id], sizeof cfg->label_names[id], "%s", it->valuestring);
    }
    cfg->num_labels = n;
    return QH_OK;
}

static int parse_identity(const char *path, const cJSON *root, qh_llama_config *cfg)
{
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "llama") != 0))
        return qh_fail(QH_EINPUT, "%s: model_type '%s' is not a LLaMA model", path,
                       cJSON_IsString(mt) ? mt->valuestring : "?");
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(arch) ? cJSON_GetArrayItem(arch, 0) : NULL;
    snprintf(cfg->architecture, sizeof cfg->architecture, "%s", cJSON_IsString(a0) ? a0->valuestring : "LlamaModel");
    const char *ok[] = {"LlamaForCausalLM", "LlamaForSequenceClassification", "LlamaModel"};
    int known = 0;
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) known |= strcmp(cfg->architecture, ok[i]) == 0;
    if (!known)
        return qh_fail(QH_EINPUT, "%s: architecture '%s' is not supported (LlamaForCausalLM, LlamaForSequenceClassification)",
                       path, cfg->architecture);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        return qh_fail(QH_EINPUT, "%s: hidden_act must be 'silu' for LLaMA", path);
    const char *biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, biases[i]);
        if (cJSON_IsTrue(b)) return qh_fail(QH_EINPUT, "%s: '%s' true is not supported (LLaMA has no biases)", path, biases[i]);
    }
    return QH_OK;
}

int qh_llama_config_parse(const char *path, const char *json, qh_llama_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return qh_fail(QH_EINPUT, "%s: not a JSON object", path);
    }
    int rc = parse_identity(path, root, cfg);
    if (!rc) rc = get_int(path, root, "hidden_size", 1, 0, 1, MAX_DIM, &cfg->hidden_size);
    if (!rc) rc = get_int(path, root, "intermediate_size", 1, 0, 1, MAX_DIM * 4, &cfg->intermediate_size);
    if (!rc) rc = get_int(path, root, "num_hidden_layers", 1, 0, 1, MAX_LAYERS, &cfg->num_layers);
    if (!rc) rc = get_int(path, root, "num_attention_heads", 1, 0, 1, MAX_DIM, &cfg->num_heads);
    if (!rc) rc = get_int(path, root, "vocab_size", 1, 0, 1, MAX_VOCAB, &cfg->vocab_size);
    if (!rc) rc = get_int(path, root, "num_key_value_heads", 0, cfg->num_heads, 1, MAX_DIM, &cfg->num_kv_heads);
    if (!rc) rc = get_int(path, root, "max_position_embeddings", 0, 2048, 1, 1 << 24, &cfg->max_position_embeddings);
    const cJSON *head_dim = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
    if (!rc && cfg->hidden_size % cfg->num_heads && (!head_dim || cJSON_IsNull(head_dim)))
        rc = qh_fail(QH_EINPUT, "%s: num_attention_heads %d does not divide hidden_size %d", path, cfg->num_heads,
                     cfg->hidden_size);
    if (!rc) rc = get_int(path, root, "head_dim", 0, cfg->hidden_size / cfg->num_heads, 2, 4096, &cfg->head_dim);
    if (!rc && cfg->head_dim % 2) rc = qh_fail(QH_EINPUT, "%s: head_dim %d must be even for rotary embeddings", path, cfg->head_dim);
    if (!rc && cfg->num_heads % cfg->num_kv_heads)
        rc = qh_fail(QH_EINPUT, "%s: num_key_value_heads %d does not divide num_attention_heads %d", path,
                     cfg->num_kv_heads, cfg->num_heads);
    if (!rc && (long long)cfg->num_heads * cfg->head_dim > MAX_DIM)
        rc = qh_fail(QH_EINPUT, "%s: num_attention_heads x head_dim is absurdly large", path);
    if (!rc) rc = get_double(path, root, "rms_norm_eps", 1e-6, 0.0, 1.0, &cfg->rms_norm_eps);
    if (!rc) rc = parse_rope(path, root, cfg);
    if (!rc) rc = parse_dtype(path, root, cfg);
    if (!rc) rc = parse_labels(path, root, cfg);
    cJSON_Delete(root);
    return rc;
}

int qh_llama_config_load(const char *path, qh_llama_config *cfg)
{
    char *json = NULL;
    int rc = qh_read_file(path, 16u << 20, &json, NULL);
    if (!rc) rc = qh_llama_config_parse(path, json, cfg);
    free(json);
    return rc;
}
