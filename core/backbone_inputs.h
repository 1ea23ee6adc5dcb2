/* What train-head and evaluate both start from: the backbone's checkpoint and its tokenizer,
 * checked against each other. */
#ifndef QHEAD_BACKBONE_INPUTS_H
#define QHEAD_BACKBONE_INPUTS_H

#include "checkpoint.h"
#include "tokenizer.h"

/* Opens model_dir's checkpoint (config.json, shards, fingerprint) and loads the tokenizer at
 * tok_path. A tokenizer with more pieces than the model's vocabulary is refused (QH_EINPUT,
 * naming both files): its ids would index past the embedding table. On error both outputs
 * are NULL. */
int qh_backbone_inputs_open(const char *model_dir, const char *tok_path, qh_checkpoint **ck, qh_tokenizer **tok);

#endif
