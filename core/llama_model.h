/* The LLaMA backbone: weights on a backend, and the forward pass that turns packed batches of
 * token sequences into each sequence's last-token final hidden state (what
 * LlamaForSequenceClassification pools). */
#ifndef QHEAD_LLAMA_MODEL_H
#define QHEAD_LLAMA_MODEL_H

#include "backend.h"
#include "checkpoint.h"
#include "quant_model.h"

typedef struct {
    qh_tensor attn_norm, wq, wk, wv, wo;
    qh_tensor mlp_norm, w_gate, w_up, w_down;
} qh_llama_layer;

typedef struct {
    qh_llama_config cfg;
    qh_checkpoint *ckpt;
    qh_backend *be;
    qh_tensor embed, final_norm;
    qh_llama_layer *layers;
    int has_score;   /* LlamaForSequenceClassification checkpoints carry a head */
    qh_tensor score; /* host view of score.weight [num_labels, hidden] */
    qh_quant_format quant; /* the variant: fp16, or the int8/nf4 file's format (quant_model.h) */
} qh_llama_model;

/* Open dir (see checkpoint.h), check every tensor against config.json and hand the weights to
 * the backend. lm_head.weight is ignored. */
int qh_llama_load(const char *dir, qh_backend *be, qh_llama_model **out);
/* The same for a variant: "fp16" (or NULL) is qh_llama_load; "int8" and "nf4" take config.json
 * from dir and every weight from qfile, a file written by quantize (NULL: its default,
 * checkpoints/backbone-<variant>.safetensors). ckpt->fingerprint then identifies the
 * quantized backbone. */
int qh_llama_load_variant(const char *dir, const char *variant, const char *qfile, qh_backend *be,
                          qh_llama_model **out);
void qh_llama_free(qh_llama_model *m);

typedef struct qh_llama_ctx qh_llama_ctx;

/* --batch-tokens on a GPU, measured on the H100 with the TweetEval lengths (bench/NOTES.md):
 * as fast as 16384, 0.4 GB less memory; 4096 is 6% slower. */
#define QH_BATCH_TOKENS_GPU 12288
/* nf4 on a GPU: as fast as 12288 within the noise, and its activations are a quarter of a 7B's
 * memory there: 4.46 GB in all against 4.60 (bench/NOTES.md). */
#define QH_BATCH_TOKENS_GPU_NF4 10240
/* On the CPU the size hardly matters for speed; 4096 keeps the fp32 workspace small. */
#define QH_BATCH_TOKENS_CPU 4096
/* The default for a model on its backend: what --batch-tokens 0 (or absent) means. */
int qh_default_batch_tokens(const qh_llama_model *m);

/* Workspace for micro-batches of up to batch_tokens tokens (longer sequences grow it). */
int qh_llama_ctx_create(qh_llama_model *m, int batch_tokens, qh_llama_ctx **out);
void qh_llama_ctx_free(qh_llama_ctx *ctx);
/* Whether a micro-batch of one sequence of up to 64 tokens (batch-1 latency) runs from a
 * recording of its ops where the backend can record them (CUDA graphs; default on): the same
 * numbers at a fraction of the launch cost. A length is recorded on its first pass and replayed
 * from its second; counts: recordings made and passes replayed so far. */
void qh_llama_ctx_set_graphs(qh_llama_ctx *ctx, int on);
void qh_llama_ctx_graph_counts(const qh_llama_ctx *ctx, long *recorded, long *replayed);

/* Sequences back to back in ids (lengths[s] tokens each, all >= 1); writes hidden[n_seqs, H]
 * in fp32, in the given order. Token ids are checked against the vocabulary first. Sequences
 * are packed without padding into micro-batches of up to batch_tokens tokens, shortest first. */
int qh_llama_forward(qh_llama_ctx *ctx, const int32_t *ids, const int32_t *lengths, int n_seqs, float *hidden);

/* Multiply-adds of the backbone for n tokens (for reporting FLOP/s). */
double qh_llama_flops_per_token(const qh_llama_config *cfg);

#endif
