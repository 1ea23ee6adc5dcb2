/* qhead-forward: run one token sequence through a LLaMA checkpoint and print
 *   {"hidden": [...], "logits": [...]}
 * (the last token's final hidden state, and the head's logits: from --head FILE, else the
 * checkpoint's score.weight, else null). How people check qhead's model path against theirs. */
#include "backend.h"
#include "error.h"
#include "head.h"
#include "llama_model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "qhead-forward";

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: qhead-forward --model DIR --ids ID,ID,... [--head FILE] [--backend cpu|cuda|auto]\n"
            "                     [--variant fp16|int8|nf4] [--quantized FILE]\n"
            "\n"
            "Runs the token ids through the LLaMA checkpoint in DIR (config.json + safetensors, as\n"
            "transformers saves it) and prints one JSON object: \"hidden\", the last token's final\n"
            "hidden state, and \"logits\", from --head (an HDF5 head from train-head, or safetensors with\n"
            "score.weight) or else from the checkpoint's own score.weight (null when it has none).\n"
            "No BOS is added: pass exactly the ids to run (qhead-tokenize makes them).\n"
            "\n"
            "  --model DIR     model directory (default: $QHEAD_MODEL, else checkpoints/llama-2-7b-hf)\n"
            "  --ids LIST      comma-separated token ids, e.g. 1,450,3186\n"
            "  --head FILE     classification head to apply\n"
            "  --backend NAME  cpu, cuda or auto (default auto: the GPU when there is one)\n"
            "  --variant NAME  fp16 (default: the checkpoint's own weights), int8 or nf4 (a backbone\n"
            "                  written by quantize, with config.json from --model)\n"
            "  --quantized FILE  that backbone for int8/nf4 (default\n"
            "                  checkpoints/backbone-<variant>.safetensors)\n"
            "  --help          this text\n");
}

static int parse_ids(const char *s, int32_t **ids, int *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return qh_fail(QH_ESYS, "out of memory");
    *n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ','))
            return qh_fail(QH_EINPUT, "--ids: '%.*s' is not a token id (expected e.g. 1,450,3186)",
                           (int)strcspn(p, ","), p);
        (*ids)[(*n)++] = (int32_t)v;
        if (!*end) break;
        p = end + 1;
    }
    return QH_OK;
}

static cJSON *float_array(const float *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

int main(int argc, char **argv)
{
    const char *model_dir = getenv("QHEAD_MODEL"), *ids_arg = NULL, *head_path = NULL, *backend = "auto";
    const char *variant = "fp16", *quantized = NULL;
    if (!model_dir || !*model_dir) model_dir = "checkpoints/llama-2-7b-hf";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        const char **dst = !strcmp(a, "--model") ? &model_dir : !strcmp(a, "--ids") ? &ids_arg
                         : !strcmp(a, "--head")  ? &head_path : !strcmp(a, "--backend") ? &backend
                         : !strcmp(a, "--variant") ? &variant : !strcmp(a, "--quantized") ? &quantized : NULL;
        if (!dst) {
            fprintf(stderr, "%s: unknown argument '%s' (see --help)\n", prog, a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value\n", prog, a);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!ids_arg) {
        fprintf(stderr, "%s: --ids is required (e.g. --ids 1,450,3186)\n", prog);
        return 2;
    }
    int32_t *ids = NULL;
    int n = 0, rc;
    qh_backend *be = NULL;
    qh_llama_model *m = NULL;
    qh_llama_ctx *ctx = NULL;
    qh_head *head = NULL;
    float *hidden = NULL, *logits = NULL;
    if ((rc = parse_ids(ids_arg, &ids, &n))) goto done;
    if ((rc = qh_backend_create(backend, &be))) goto done;
    if ((rc = qh_llama_load_variant(model_dir, variant, quantized, be, &m))) goto done;
    if (head_path) rc = qh_head_load(head_path, &head);
    else if (m->has_score) rc = qh_head_from_tensor(&m->score, &m->cfg, &head);
    if (rc) goto done;
    if (head && head->hidden_size != m->cfg.hidden_size) {
        rc = qh_fail(QH_EINPUT, "%s: head expects hidden size %d, the model has %d", head_path,
                     head->hidden_size, m->cfg.hidden_size);
        goto done;
    }
    if ((rc = qh_llama_ctx_create(m, n, &ctx))) goto done;
    hidden = malloc(sizeof(float) * (size_t)m->cfg.hidden_size);
    if (!hidden) {
        rc = qh_fail(QH_ESYS, "out of memory");
        goto done;
    }
    int32_t len = n;
    if ((rc = qh_llama_forward(ctx, ids, &len, 1, hidden))) {
        if (rc == QH_EINPUT) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", qh_last_error());
            rc = qh_fail(QH_EINPUT, "--ids: %s", msg);
        }
        goto done;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "hidden", float_array(hidden, m->cfg.hidden_size));
    if (head) {
        logits = malloc(sizeof(float) * (size_t)head->num_labels);
        if (!logits) {
            cJSON_Delete(out);
            rc = qh_fail(QH_ESYS, "out of memory");
            goto done;
        }
        qh_head_apply(head, hidden, 1, logits);
        cJSON_AddItemToObject(out, "logits", float_array(logits, head->num_labels));
    } else {
        cJSON_AddNullToObject(out, "logits");
    }
    char *text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    if (!text || printf("%s\n", text) < 0 || fflush(stdout) != 0) rc = qh_fail(QH_ESYS, "cannot write the output");
    free(text);
done:
    if (rc) rc = qh_report(prog, rc);
    free(ids);
    free(hidden);
    free(logits);
    qh_head_free(head);
    qh_llama_ctx_free(ctx);
    qh_llama_free(m);
    qh_backend_destroy(be);
    return rc;
}
