#include "checkpoint.h"

#include "error.h"
#include "fileio.h"
#include "sha256.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* file: a name inside ck->dir, or with path_as_is any path (a quantized backbone). */
static int add_shard_path(qh_checkpoint *ck, const char *file, int path_as_is)
{
    for (size_t i = 0; i < ck->n_shards; i++) {
        const char *p = strrchr(ck->shards[i]->path, '/');
        if (strcmp(p ? p + 1 : ck->shards[i]->path, file) == 0) return QH_OK;
    }
    char *path = path_as_is ? strdup(file) : join(ck->dir, file);
    qh_safetensors **grown = realloc(ck->shards, (ck->n_shards + 1) * sizeof *grown);
    if (!path || !grown) {
        free(path);
        if (grown) ck->shards = grown;
        return qh_fail(QH_ESYS, "out of memory");
    }
    ck->shards = grown;
    int rc = qh_st_open(path, &ck->shards[ck->n_shards]);
    free(path);
    if (!rc) ck->n_shards++;
    return rc;
}

static int add_shard(qh_checkpoint *ck, const char *file) { return add_shard_path(ck, file, 0); }

/* Sharded checkpoint: open every shard the index names and check the index against them. */
static int open_sharded(qh_checkpoint *ck, const char *index_path)
{
    char *json = NULL;
    int rc = qh_read_file(index_path, 64u << 20, &json, NULL);
    if (rc) return rc;
    cJSON *root = cJSON_Parse(json);
    free(json);
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return qh_fail(QH_EINPUT, "%s: not a safetensors index (no weight_map object)", index_path);
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, map)
    {
        if (!cJSON_IsString(it) || !*it->valuestring || strchr(it->valuestring, '/')) {
            rc = qh_fail(QH_EINPUT, "%s: weight_map entry '%s' does not name a shard file in this directory",
                         index_path, it->string);
            break;
        }
        if ((rc = add_shard(ck, it->valuestring))) break;
        const qh_safetensors *where = NULL;
        if (!qh_checkpoint_find(ck, it->string, &where) || strcmp(strrchr(where->path, '/') + 1, it->valuestring)) {
            rc = qh_fail(QH_EINPUT, "%s: index says tensor '%s' is in %s, but it is not there", index_path,
                         it->string, it->valuestring);
            break;
        }
    }
    if (!rc && ck->n_shards == 0) rc = qh_fail(QH_EINPUT, "%s: weight_map is empty", index_path);
    cJSON_Delete(root);
    return rc;
}

/* Cheap, content-sensitive identity: config bytes, each shard's size and header (every
 * tensor's name, shape and offsets), and samples of every tensor's bytes (its first, middle
 * and last 256 bytes). Hashing 13.5 GB of weights would take a minute; the samples tell apart
 * checkpoints of the same shape (two fine-tunes, two random seeds) for a few hundred KB read. */
static int compute_fingerprint(qh_checkpoint *ck, const char *config_path)
{
    char *cfg = NULL;
    size_t len = 0;
    int rc = qh_read_file(config_path, 16u << 20, &cfg, &len);
    if (rc) return rc;
    qh_sha256_ctx h;
    qh_sha256_init(&h);
    qh_sha256_update(&h, cfg, len);
    free(cfg);
    for (size_t i = 0; i < ck->n_shards; i++) {
        const qh_safetensors *st = ck->shards[i];
        uint64_t size = st->map_size;
        qh_sha256_update(&h, &size, sizeof size);
        qh_sha256_update(&h, (const uint8_t *)st->map + 8, (size_t)st->header_size);
        for (size_t t = 0; t < st->n_tensors; t++) {
            uint64_t b = st->tensors[t].begin, e = st->tensors[t].end, w = e - b < 256 ? e - b : 256;
            uint64_t at[3] = {b, b + (e - b - w) / 2, e - w};
            for (int k = 0; k < 3; k++) qh_sha256_update(&h, st->data + at[k], (size_t)w);
        }
    }
    uint8_t d[32];
    qh_sha256_final(&h, d);
    qh_sha256_hex(d, ck->fingerprint);
    return QH_OK;
}

int qh_checkpoint_open(const char *dir, qh_checkpoint **out) { return qh_checkpoint_open_file(dir, NULL, out); }

int qh_checkpoint_open_file(const char *dir, const char *weights, qh_checkpoint **out)
{
    *out = NULL;
    if (!qh_is_dir(dir))
        return qh_fail(QH_EINPUT, "%s: %s", dir, qh_path_exists(dir) ? "not a directory" : "no such model directory");
    qh_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->dir = strdup(dir))) {
        free(ck);
        return qh_fail(QH_ESYS, "out of memory");
    }
    char *config = join(dir, "config.json"), *single = join(dir, "model.safetensors");
    char *index = join(dir, "model.safetensors.index.json"), *bin = join(dir, "pytorch_model.bin");
    int rc = (!config || !single || !index || !bin) ? qh_fail(QH_ESYS, "out of memory") : QH_OK;
    if (!rc) rc = qh_llama_config_load(config, &ck->cfg);
    if (!rc && weights) {
        rc = add_shard_path(ck, weights, 1);
    } else if (!rc) {
        if (qh_path_exists(single)) rc = add_shard(ck, "model.safetensors");
        else if (qh_path_exists(index)) rc = open_sharded(ck, index);
        else if (qh_path_exists(bin))
            rc = qh_fail(QH_EINPUT, "%s: only pytorch_model.bin found; qhead reads safetensors (download the .safetensors files)", dir);
        else rc = qh_fail(QH_EINPUT, "%s: no model.safetensors or model.safetensors.index.json", dir);
    }
    if (!rc) ck->prefix = qh_checkpoint_find(ck, "model.embed_tokens.weight", NULL) ? "model." : "";
    if (!rc) rc = compute_fingerprint(ck, config);
    free(config);
    free(single);
    free(index);
    free(bin);
    if (rc) {
        qh_checkpoint_close(ck);
        return rc;
    }
    *out = ck;
    return QH_OK;
}

void qh_checkpoint_close(qh_checkpoint *ck)
{
    if (!ck) return;
    for (size_t i = 0; i < ck->n_shards; i++) qh_st_close(ck->shards[i]);
    free(ck->shards);
    free(ck->dir);
    free(ck);
}

const qh_st_tensor *qh_checkpoint_find(const qh_checkpoint *ck, const char *name, const qh_safetensors **shard)
{
    for (size_t i = 0; i < ck->n_shards; i++) {
        const qh_st_tensor *t = qh_st_find(ck->shards[i], name);
        if (t) {
            if (shard) *shard = ck->shards[i];
            return t;
        }
    }
    return NULL;
}

int qh_checkpoint_weight(const qh_checkpoint *ck, const char *name, int64_t rows, int64_t cols, qh_tensor *out)
{
    const qh_safetensors *st = NULL;
    const qh_st_tensor *t = qh_checkpoint_find(ck, name, &st);
    if (!t) return qh_fail(QH_EINPUT, "%s: tensor '%s' is missing from the checkpoint", ck->dir, name);
    int want_ndim = cols ? 2 : 1;
    int ok = t->ndim == want_ndim && t->shape[0] == rows && (want_ndim == 1 || t->shape[1] == cols);
    if (!ok) {
        qh_tensor got;
        char a[96];
        got = qh_tensor_desc(t->dtype, t->ndim > QH_MAX_DIMS ? QH_MAX_DIMS : t->ndim, t->shape);
        if (cols)
            return qh_fail(QH_EINPUT, "%s: tensor '%s' has shape %s, config.json says [%lld, %lld]", st->path, name,
                           qh_shape_str(&got, a, sizeof a), (long long)rows, (long long)cols);
        return qh_fail(QH_EINPUT, "%s: tensor '%s' has shape %s, config.json says [%lld]", st->path, name,
                       qh_shape_str(&got, a, sizeof a), (long long)rows);
    }
    if (t->dtype != QH_F16 && t->dtype != QH_BF16 && t->dtype != QH_F32)
        return qh_fail(QH_EINPUT, "%s: tensor '%s' has dtype %s; weights must be F16, BF16 or F32", st->path, name,
                       qh_dtype_name(t->dtype));
    return qh_st_view(st, t, out);
}
