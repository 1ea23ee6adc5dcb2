/* Random-initialised LLaMA checkpoints in the transformers layout (config.json, safetensors
 * shards, index). For benchmarks (7B shape: speed and memory do not depend on the values),
 * for the offline demo, and for tests. Values: normal(0, init_range) for matrices, 1 for
 * norms, like transformers' init; deterministic for a given seed whatever the thread count. */
#ifndef QHEAD_MODEL_GEN_H
#define QHEAD_MODEL_GEN_H

#include <stdint.h>

typedef struct {
    int hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads, vocab_size;
    int num_labels; /* > 0: LlamaForSequenceClassification with score.weight; 0: LlamaForCausalLM */
    double init_range;
    double rope_theta, rms_norm_eps;
    uint64_t seed;
    uint64_t shard_bytes; /* split into shards of at most this many bytes (and an index) */
} qh_model_spec;

/* "tiny" (a few MB) or "7b" (LLaMA-2-7B shape, 13.5 GB). */
int qh_model_spec_preset(const char *name, qh_model_spec *spec);
int qh_generate_llama(const qh_model_spec *spec, const char *dir);

#endif
