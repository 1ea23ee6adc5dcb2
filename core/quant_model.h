/* Quantized backbones: the safetensors file `quantize` writes, reading it back, and the
 * streaming quantizer itself.
 *
 * The file holds every tensor qhead's forward pass uses, so it plus config.json (and the
 * tokenizer) is a complete model: the seven linear weights of each layer quantized, the
 * embeddings, norms and score.weight (when present) copied in their source dtype, lm_head
 * dropped. Names follow transformers with bitsandbytes' suffixes (base = model.layers.L.
 * self_attn.q_proj, ...):
 *   int8: base.weight I8 [out, in]; base.SCB F32 [out] (row absmax)
 *   nf4:  base.weight U8 [out, in / 2] (two codes per byte, high nibble first);
 *         base.weight.absmax F32 [n_blocks], or with double quantization I8 [n_blocks] plus
 *         base.weight.nested_absmax F32 [ceil(n_blocks / 256)] and base.weight.nested_offset F32 [1]
 * where n_blocks = ceil(out * in / blocksize). __metadata__ (all strings): format ("int8" or
 * "nf4"), format_version ("1"), threshold (int8), blocksize, double_quant ("true"/"false"),
 * double_quant_code (nf4), source_model, source_fingerprint, config_sha256 (of the config.json
 * quantized with), tool. */
#ifndef QHEAD_QUANT_MODEL_H
#define QHEAD_QUANT_MODEL_H

#include "checkpoint.h"
#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char variant[8]; /* "fp16" (the checkpoint's own weights), "int8" or "nf4" */
    int quantized;   /* 0 for fp16 */
    qh_dtype dtype;  /* QH_I8 or QH_NF4 when quantized */
    int blocksize, double_quant;
    float threshold;
    char source_fingerprint[65];
} qh_quant_format;

/* Where quantize writes a variant by default: checkpoints/backbone-<variant>.safetensors. */
void qh_quant_default_path(const char *variant, char *buf, size_t size);

/* Open the backbone of variant ("fp16", "int8", "nf4"; NULL is fp16) for model directory dir:
 * fp16 is qh_checkpoint_open(dir); int8 and nf4 read config.json from dir and every weight
 * from file (NULL: the default path), which must hold that format and have been quantized with
 * this config.json. */
int qh_quant_open(const char *dir, const char *variant, const char *file, qh_checkpoint **ck, qh_quant_format *fmt);

/* View of the quantized linear weight `name` ("model.layers.0.self_attn.q_proj.weight") of
 * logical shape [rows, cols], with its scales, all memory-mapped. */
int qh_quant_weight(const qh_checkpoint *ck, const qh_quant_format *fmt, const char *name, int64_t rows, int64_t cols,
                    qh_tensor *out);

typedef struct {
    const char *model_dir;
    const char *out_path;    /* the quantized safetensors file */
    const char *report_path; /* JSON report */
    int bits;                /* 8: int8 (LLM.int8()), 4: nf4 */
    int blocksize;           /* nf4: 64, 128 or 256 */
    int double_quant;        /* nf4 */
    double threshold;        /* int8: outlier threshold stored for run time (>= 0; 0 turns it off) */
} qh_quantize_opts;

typedef struct {
    int n_matrices;
    double rel_error;   /* ||W - deq(W)||_F / ||W||_F over all quantized matrices together */
    double worst_error; /* the largest per-matrix relative error */
    char worst_name[160];
    uint64_t matrix_weights;                          /* elements of the quantized matrices */
    uint64_t matrix_bytes_before, matrix_bytes_after; /* the quantized matrices, source vs codes + scales */
    uint64_t source_bytes, file_bytes;                /* every tensor written, before; the output file */
    double seconds;
} qh_quantize_summary;

/* Quantize the checkpoint in o->model_dir into o->out_path, streaming matrix by matrix from the
 * memory map (pages of each source matrix are dropped once written), and write the JSON report
 * (per matrix and overall: relative Frobenius error, bytes before and after, seconds). Bad
 * input (arguments, a non-LLaMA checkpoint, NaN/Inf weights, an unwritable path) is QH_EINPUT;
 * nothing is left at either path on failure. */
int qh_quantize_model(const qh_quantize_opts *o, qh_quantize_summary *sum);

#endif
