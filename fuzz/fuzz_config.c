/* libFuzzer target: config.json (core/llama_config.c). An accepted config must satisfy what
 * the rest of qhead relies on: positive sizes, heads dividing, products without overflow. */
#include "fuzz_util.h"

#include "llama_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = malloc(size + 1);
    if (!json) return 0;
    memcpy(json, data, size);
    json[size] = '\0';
    qh_llama_config cfg;
    int rc = qh_llama_config_parse("config.json", json, &cfg);
    free(json);
    fz_check_error(rc);
    if (rc) return 0;
    if (cfg.hidden_size < 1 || cfg.intermediate_size < 1 || cfg.num_layers < 1 || cfg.num_heads < 1 ||
        cfg.num_kv_heads < 1 || cfg.head_dim < 2 || cfg.head_dim % 2 || cfg.vocab_size < 1 ||
        cfg.num_heads % cfg.num_kv_heads || cfg.max_position_embeddings < 1)
        abort();
    if (!(cfg.rms_norm_eps > 0) || !(cfg.rope_theta > 0)) abort();
    if (cfg.num_labels < 0 || cfg.num_labels > QH_MAX_LABELS) abort();
    for (int i = 0; i < cfg.num_labels; i++)
        if (memchr(cfg.label_names[i], '\0', sizeof cfg.label_names[i]) == NULL) abort();
    if (memchr(cfg.architecture, '\0', sizeof cfg.architecture) == NULL) abort();
    return 0;
}
