/* Training the classification head on fixed features (the frozen backbone's last-token
 * hidden states): Linear(hidden -> labels), softmax cross-entropy, AdamW with PyTorch's
 * update rule, shuffled mini-batches. Single-threaded and ordered, so the same seed gives
 * the same head bit for bit; the head is so small that 3 epochs over 45,615 x 4096 features
 * take seconds. */
#ifndef QHEAD_HEAD_TRAIN_H
#define QHEAD_HEAD_TRAIN_H

#include "head.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const float *x;        /* [n, dim] */
    const int32_t *labels; /* [n] */
    int64_t n;
    int dim;
} qh_dataset_view;

typedef struct {
    double lr, weight_decay, beta1, beta2, eps;
    int batch_size, epochs;
    uint64_t seed;
    int bias;          /* add a bias (transformers' score layer has none) */
    int class_weights; /* weight classes by n / (K * count) of the train split */
    int patience;      /* stop after this many evaluations without a better val loss; 0: never */
    int log_every;     /* also evaluate every N steps; 0: at epoch ends only */
    double init_std;   /* weights start normal(0, init_std), like transformers' 0.02 */
} qh_train_opts;

void qh_train_opts_default(qh_train_opts *o);

typedef struct {
    int epoch;            /* 1-based; fractional progress shows in step */
    int64_t step;         /* optimizer steps so far */
    double train_loss;    /* mean mini-batch loss since the previous row */
    double val_loss, val_accuracy, val_macro_f1;
    int epoch_end;
} qh_train_row;

typedef struct {
    qh_train_row *rows;
    size_t n, cap;
    size_t best_row; /* row with the lowest val loss: its head is the one returned */
    int stopped_early;
} qh_train_log;

/* Called after each row is appended (print it, rewrite the CSV, ...). Non-zero aborts. */
typedef int (*qh_train_callback)(void *user, const qh_train_log *log, const qh_head *current);

/* Trains a head for num_labels classes; *best receives the head with the lowest val loss. */
int qh_train_head(const qh_dataset_view *train, const qh_dataset_view *val, int num_labels,
                  const qh_train_opts *opts, qh_train_callback cb, void *user, qh_head **best, qh_train_log *log);
void qh_train_log_free(qh_train_log *log);

/* "Balanced" class weights n / (K * count_k) (scikit-learn's formula); 1 for absent classes. */
void qh_class_weights(const int32_t *labels, int64_t n, int num_labels, double *w);

/* Mean (weighted) cross-entropy, accuracy and macro-F1 of a head on a dataset. */
int qh_head_evaluate(const qh_head *h, const qh_dataset_view *d, const double *class_weight, double *loss,
                     double *accuracy, double *macro_f1);
/* Loss and gradients on a batch (exposed for the finite-difference test): gw [labels, dim],
 * gb [labels] (may be NULL without bias). Loss is the class-weighted mean, like PyTorch's
 * CrossEntropyLoss(weight=w): sum_i w_yi * ce_i / sum_i w_yi. */
double qh_head_loss_grad(const qh_head *h, const qh_dataset_view *d, const int64_t *idx, int n,
                         const double *class_weight, float *gw, float *gb);

#endif
