/* A transformers model directory as users download it: config.json plus either
 * model.safetensors or model-0000N-of-0000M.safetensors shards listed in
 * model.safetensors.index.json. All shards are memory-mapped; nothing is read eagerly. */
#ifndef QHEAD_CHECKPOINT_H
#define QHEAD_CHECKPOINT_H

#include "llama_config.h"
#include "safetensors.h"

typedef struct {
    char *dir;
    qh_llama_config cfg;
    qh_safetensors **shards;
    size_t n_shards;
    const char *prefix; /* "model." for *ForCausalLM / *ForSequenceClassification, "" for a bare LlamaModel */
    char fingerprint[65]; /* sha256 of config.json and every shard's size and header */
} qh_checkpoint;

int qh_checkpoint_open(const char *dir, qh_checkpoint **out);
/* The same with every weight from one safetensors file at any path (a quantized backbone written
 * by quantize), config.json still from dir; weights NULL is qh_checkpoint_open. The fingerprint
 * then covers config.json and that file. */
int qh_checkpoint_open_file(const char *dir, const char *weights, qh_checkpoint **out);
void qh_checkpoint_close(qh_checkpoint *ck);
/* Find a tensor by full name in any shard; NULL if absent. */
const qh_st_tensor *qh_checkpoint_find(const qh_checkpoint *ck, const char *name, const qh_safetensors **shard);
/* View of a float tensor that must exist with the given shape (ndim 1 or 2; cols 0 for 1-D);
 * the error names the shard file, the tensor and both shapes. */
int qh_checkpoint_weight(const qh_checkpoint *ck, const char *name, int64_t rows, int64_t cols, qh_tensor *out);

#endif
