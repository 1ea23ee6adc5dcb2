/* Evaluating one backbone variant with a trained head on a tokenized split: load (timed),
 * one warm-up micro-batch, then the whole split length-sorted (timed, energy measured), the
 * head's logits, metrics, agreement with fp16, optional batch-1 latency, peak memory. */
#ifndef QHEAD_EVAL_RUN_H
#define QHEAD_EVAL_RUN_H

#include "eval_report.h"
#include "head.h"
#include "llama_model.h"
#include "token_split.h"

#include <stdio.h>

typedef struct {
    const char *model_dir;
    const char *variant;   /* fp16, int8, nf4 */
    const char *qfile;     /* the quantized backbone for int8/nf4 */
    const char *backend;   /* cpu, cuda, auto */
    int batch_tokens;
    int latency_samples;   /* > 0: time this many single tweets at batch 1 */
    double carbon_intensity;
    const qh_token_split *split;
    const qh_head *head;
    const float *fp16_logits; /* [n, K] from an fp16 run, or NULL */
    FILE *log;                /* progress and notes; NULL: quiet */
} qh_eval_opts;

/* Fills *r (metrics allocated: qh_metrics_free(&r->metrics)) and *logits ([n, K], malloc'd). */
int qh_eval_variant(const qh_eval_opts *o, qh_eval_result *r, float **logits);

/* Bytes of the weights the forward pass uses (codes and scales for quantized matrices). */
double qh_llama_weight_bytes(const qh_llama_model *m);

/* p-th percentile (0..100) of v[0..n) by linear interpolation; sorts v. NaN for n = 0. */
double qh_percentile(double *v, int n, double p);

#endif
