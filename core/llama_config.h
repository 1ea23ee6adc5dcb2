/* config.json of a LLaMA checkpoint, in the spellings of transformers 4.x and 5.x. */
#ifndef QHEAD_LLAMA_CONFIG_H
#define QHEAD_LLAMA_CONFIG_H

#include "dtype.h"

#define QH_MAX_LABELS 64

typedef struct {
    int hidden_size;
    int intermediate_size;
    int num_layers;
    int num_heads;
    int num_kv_heads; /* absent in older configs: equal to num_heads */
    int head_dim;     /* optional: hidden_size / num_heads */
    int vocab_size;
    int max_position_embeddings;
    double rms_norm_eps;
    double rope_theta; /* rope_theta (4.x) or rope_parameters.rope_theta (5.x); default 10000 */
    qh_dtype dtype;    /* torch_dtype (4.x) or dtype (5.x); F16 when absent */
    char architecture[64];
    int num_labels; /* from id2label when present, else 0 */
    char label_names[QH_MAX_LABELS][64];
} qh_llama_config;

/* Parse and validate path (a config.json). Every refusal names the file and the field. */
int qh_llama_config_load(const char *path, qh_llama_config *cfg);
int qh_llama_config_parse(const char *path, const char *json, qh_llama_config *cfg);

#endif
