/* A TweetEval split turned into token ids: every tweet encoded with the model's tokenizer
 * (BOS first, as LlamaForSequenceClassification sees it), back to back. Used by train-head
 * for the feature caches and by evaluate for the test split. */
#ifndef QHEAD_TOKEN_SPLIT_H
#define QHEAD_TOKEN_SPLIT_H

#include "tokenizer.h"
#include "tweeteval.h"

#include <stdint.h>

typedef struct {
    int64_t n;        /* tweets */
    int32_t *ids;     /* all sequences back to back */
    int64_t *offsets; /* [n + 1] */
    int32_t *labels;  /* [n], copied from the split (NULL if it had none) */
    int64_t n_tokens;
    int max_len;
    int64_t truncated; /* tweets cut to max_tokens */
} qh_token_split;

/* Encode every tweet; a tweet longer than max_tokens (> 0) keeps its first max_tokens tokens,
 * as transformers' tokenizer does with truncation=True. An empty tweet still has BOS. */
int qh_tokenize_split(const qh_tokenizer *t, const qh_tweeteval_split *s, int max_tokens, qh_token_split *out);
void qh_token_split_free(qh_token_split *ts);
/* Lengths of each sequence as int32 (malloc'd). */
int32_t *qh_token_split_lengths(const qh_token_split *ts);

#endif
