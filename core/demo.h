/* The offline demo (qhead-make-demo): everything train-head, quantize and evaluate read, made
 * up locally in about a second, for users with no internet and no LLaMA weights.
 *
 *   DIR/model/       config.json, model.safetensors (a tiny random LlamaForCausalLM, fp16),
 *                    tokenizer.model (a SentencePiece BPE model written by spm_write.c)
 *   DIR/sentiment/   mapping.txt, {train,val,test}_{text,labels}.txt (TweetEval layout)
 *
 * The tokenizer holds LLaMA-2's special and byte pieces, every character of the demo's words
 * and printable ASCII, and for every demo word the chain of merges that builds "▁word" (its
 * prefixes "▁w", "▁wo", ...), so each word is one token; the model's vocab_size is the
 * tokenizer's piece count. Everything is deterministic for a seed. */
#ifndef QHEAD_DEMO_H
#define QHEAD_DEMO_H

#include "demo_data.h"
#include "model_gen.h"

#include <stddef.h>
#include <stdint.h>

/* The demo tokenizer as a serialized ModelProto (malloc'd) and its number of pieces. */
int qh_demo_build_tokenizer(uint8_t **bytes, size_t *len, int32_t *n_pieces);

/* hidden 128, 4 layers, 4 heads (multi-head, like LLaMA-2-7B), intermediate 344, no score head. */
void qh_demo_model_spec(int32_t vocab_size, uint64_t seed, qh_model_spec *spec);

typedef struct {
    int32_t vocab_size;
    double seconds_data, seconds_tokenizer, seconds_model;
} qh_demo_summary;

/* Write DIR/sentiment, then DIR/model (tokenizer.model first, config.json last: a model
 * directory with config.json is complete). Every file is written atomically. */
int qh_make_demo(const char *dir, const qh_demo_opts *o, qh_demo_summary *summary);

#endif
