/* quantize: turn the fp16 backbone into an int8 (LLM.int8()) or nf4 (QLoRA NF4) one, once, and
 * report how far the quantized weights are from the originals. All the work is in
 * core/quant_model.c. */
#include "args.h"
#include "error.h"
#include "fileio.h"
#include "quant.h"
#include "quant_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "quantize";

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: quantize --bits 8|4 [--model DIR] [--out DIR] [options]\n"
            "\n"
            "Quantizes the LLaMA checkpoint in DIR once: --bits 8 is LLM.int8() (int8 weights with\n"
            "per-row absmax scales; outlier input features run unquantized at run time), --bits 4\n"
            "is QLoRA's NF4 (4-bit NormalFloat codes in blocks with absmax scales). Embeddings,\n"
            "norms and score.weight stay in the source dtype. The output safetensors file plus\n"
            "DIR/config.json is a complete model: qhead-forward --variant int8|nf4 loads it.\n"
            "Prints a summary; the JSON report has every matrix's relative Frobenius error,\n"
            "bytes before and after, and time.\n"
            "\n"
            "  --bits N          8 (int8) or 4 (nf4); required\n"
            "  --model DIR       model directory (default: $QHEAD_MODEL, else checkpoints/llama-2-7b-hf)\n"
            "  --out DIR         output directory (default checkpoints): writes DIR/backbone-<int8|nf4>.safetensors\n"
            "                    and DIR/quantize-<int8|nf4>.json, where evaluate looks for them\n"
            "  --file FILE       write the backbone to FILE instead (the report goes beside it)\n"
            "  --report FILE     write the JSON report to FILE instead\n"
            "  --blocksize N     nf4 block length: 64 (default), 128 or 256\n"
            "  --double-quant    nf4: quantize the block scales too (8-bit, blocks of 256)\n"
            "  --threshold X     int8: outlier threshold stored for run time (default 6; 0: none)\n"
            "  --help            this text\n");
}

int main(int argc, char **argv)
{
    qh_quantize_opts o = {.bits = 0, .blocksize = 64, .threshold = QH_INT8_DEFAULT_THRESHOLD};
    o.model_dir = getenv("QHEAD_MODEL");
    if (!o.model_dir || !*o.model_dir) o.model_dir = "checkpoints/llama-2-7b-hf";
    int rc = QH_OK, set_blocksize = 0, set_threshold = 0;
    const char *out_dir = "checkpoints";
    long x = 0;
    for (int i = 1; !rc && i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--double-quant")) {
            o.double_quant = 1;
            continue;
        }
        const char **path = !strcmp(a, "--model") ? &o.model_dir : !strcmp(a, "--file") ? &o.out_path
                          : !strcmp(a, "--out") ? &out_dir : !strcmp(a, "--report") ? &o.report_path : NULL;
        if (!path && strcmp(a, "--bits") && strcmp(a, "--blocksize") && strcmp(a, "--threshold"))
            rc = qh_fail(QH_EINPUT, "unknown argument '%s' (see --help)", a);
        else if (i + 1 >= argc) rc = qh_fail(QH_EINPUT, "%s needs a value", a);
        else if (path) *path = argv[++i];
        else if (!strcmp(a, "--bits")) rc = qh_arg_long(a, argv[++i], 1, 64, &x), o.bits = (int)x;
        else if (!strcmp(a, "--blocksize"))
            rc = qh_arg_long(a, argv[++i], 1, 1 << 20, &x), o.blocksize = (int)x, set_blocksize = 1;
        else rc = qh_arg_double(a, argv[++i], 0, 1e30, &o.threshold), set_threshold = 1;
    }
    if (!rc && o.bits == 0) rc = qh_fail(QH_EINPUT, "--bits is required: 8 (int8) or 4 (nf4)");
    if (!rc && o.bits != 8 && o.bits != 4) rc = qh_fail(QH_EINPUT, "--bits %d: expected 8 (int8) or 4 (nf4)", o.bits);
    if (!rc && o.bits == 8 && (set_blocksize || o.double_quant))
        rc = qh_fail(QH_EINPUT, "%s applies to --bits 4 (nf4) only", set_blocksize ? "--blocksize" : "--double-quant");
    if (!rc && o.bits == 4 && set_threshold) rc = qh_fail(QH_EINPUT, "--threshold applies to --bits 8 (int8) only");
    const char *fmt = o.bits == 8 ? "int8" : "nf4";
    char out_buf[4200], report_buf[4200];
    if (!rc && !o.out_path) {
        snprintf(out_buf, sizeof out_buf, "%s/backbone-%s.safetensors", out_dir, fmt);
        o.out_path = out_buf;
        rc = qh_mkdirs(out_dir);
    }
    if (!rc && !o.report_path) {
        const char *slash = strrchr(o.out_path, '/');
        int dir_len = slash ? (int)(slash - o.out_path) + 1 : 0;
        snprintf(report_buf, sizeof report_buf, "%.*squantize-%s.json", dir_len, o.out_path, fmt);
        o.report_path = report_buf;
    }
    qh_quantize_summary s;
    if (!rc) rc = qh_quantize_model(&o, &s);
    if (rc) return qh_report(prog, rc);
    if (o.bits == 8) printf("%s: int8 (LLM.int8(), threshold %g)", prog, o.threshold);
    else printf("%s: nf4 (blocksize %d%s)", prog, o.blocksize, o.double_quant ? ", double quantization" : "");
    printf(" of %s in %.1f s\n", o.model_dir, s.seconds);
    printf("  %d matrices: %.1f MB -> %.1f MB (%.2f bits per weight), relative Frobenius error %.4f "
           "(worst %.4f, %s)\n",
           s.n_matrices, (double)s.matrix_bytes_before / 1e6, (double)s.matrix_bytes_after / 1e6,
           8.0 * (double)s.matrix_bytes_after / (double)(s.matrix_weights ? s.matrix_weights : 1), s.rel_error, s.worst_error,
           s.worst_name);
    printf("  backbone: %.1f MB -> %.1f MB\n", (double)s.source_bytes / 1e6, (double)s.file_bytes / 1e6);
    printf("  wrote %s and %s\n", o.out_path, o.report_path);
    return 0;
}
