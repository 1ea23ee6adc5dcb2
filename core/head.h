/* The classification head: Linear(hidden_size -> num_labels), like transformers' `score`.
 *
 * It runs on the host in fp32 on the pooled hidden states (a few thousand multiply-adds per
 * tweet), so the same code serves every backend and training.
 *
 * Head files (written by train-head, read by qhead-forward and evaluate) are HDF5:
 *   /weight  float32 [num_labels, hidden_size]
 *   /bias    float32 [num_labels]             (only when trained with --bias)
 *   attributes on /: format = "qhead-head-1", labels (strings), model_fingerprint (string)
 * and, from train-head, attribute hyperparameters (JSON text) and /train_log (see below).
 * A safetensors file holding score.weight (and optionally score.bias) is accepted too. */
#ifndef QHEAD_HEAD_H
#define QHEAD_HEAD_H

#include "llama_config.h"
#include "tensor.h"

typedef struct {
    int num_labels;
    int hidden_size;
    float *weight; /* [num_labels, hidden_size] */
    float *bias;   /* [num_labels] or NULL */
    char label_names[QH_MAX_LABELS][64];
    char model_fingerprint[65];
} qh_head;

int qh_head_create(int num_labels, int hidden_size, int with_bias, qh_head **out);
void qh_head_free(qh_head *h);
/* From a checkpoint's score.weight view (any float dtype). */
int qh_head_from_tensor(const qh_tensor *score, const qh_llama_config *cfg, qh_head **out);
/* Load an HDF5 head file or a safetensors file with score.weight. */
int qh_head_load(const char *path, qh_head **out);
/* Write atomically (temporary name, fsync, rename). */
int qh_head_save(const qh_head *h, const char *path);

/* What train-head keeps beside the weights: attribute hyperparameters (a JSON object) and
 * dataset /train_log float64 [rows, cols] whose attribute "columns" names the columns. */
typedef struct {
    const char *hyperparameters_json;
    const double *log;
    int log_rows, log_cols;
    const char *const *log_columns;
} qh_head_record;
int qh_head_save_record(const qh_head *h, const qh_head_record *rec, const char *path);
/* logits[n, num_labels] = hidden[n, hidden_size] W^T + b */
void qh_head_apply(const qh_head *h, const float *hidden, int n, float *logits);

#endif
