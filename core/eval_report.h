/* evaluate's results and the reports made from them: a table on stdout, report.json,
 * report.csv (one row per variant) and report.html (self-contained: inline SVG charts, no
 * network). Every number printed comes from the same qh_eval_result, so the files agree
 * with stdout. NaN means "not measured" and prints as null / empty / "n/a". */
#ifndef QHEAD_EVAL_REPORT_H
#define QHEAD_EVAL_REPORT_H

#include "energy.h"
#include "metrics.h"

#include <stdint.h>
#include <stdio.h>

typedef struct {
    char variant[8]; /* fp16, int8, nf4 */
    char backend[16];
    char device[128];
    int64_t n_tweets, n_tokens;
    /* quality */
    qh_metrics metrics;
    double agreement_with_fp16; /* share of identical predictions; NaN without an fp16 run */
    double mean_abs_dlogit;     /* mean |logit - fp16 logit| over tweets and classes */
    /* speed */
    double quantize_seconds; /* NaN for fp16 */
    int quantized_now;       /* 1: quantized during this run; 0: time read from the file's metadata */
    double load_seconds, eval_seconds, tweets_per_second, tokens_per_second;
    double latency_p50_ms, latency_p95_ms; /* batch 1; NaN without --latency */
    int latency_samples;
    int latency_replayed; /* of those, passes replayed from a recorded CUDA graph */
    /* memory */
    double weight_bytes;
    double peak_memory_bytes;
    char peak_memory_kind[32]; /* "GPU (CUDA runtime)" or "process peak RSS" */
    /* energy */
    qh_energy_result energy;
    double kwh, kg_co2; /* NaN when energy is unavailable */
} qh_eval_result;

typedef struct {
    const char *model, *data, *split, *head;
    const char *const *label_names;
    int num_labels;
    double carbon_intensity; /* g CO2-eq / kWh */
    int carbon_intensity_is_default;
    const char *loss_curve_svg; /* path of train-head's loss curve to include, or NULL */
    const char *created;        /* timestamp text */
} qh_eval_context;

void qh_eval_print_table(FILE *out, const qh_eval_context *ctx, const qh_eval_result *r, int n);
int qh_eval_write_json(const qh_eval_context *ctx, const qh_eval_result *r, int n, const char *path);
int qh_eval_write_csv(const qh_eval_context *ctx, const qh_eval_result *r, int n, const char *path);
int qh_eval_write_html(const qh_eval_context *ctx, const qh_eval_result *r, int n, const char *path);

#endif
