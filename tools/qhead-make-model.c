/* qhead-make-model: write a random-initialised LLaMA checkpoint in the transformers layout. */
#include "args.h"
#include "error.h"
#include "model_gen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "qhead-make-model";

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: qhead-make-model --out DIR [--preset tiny|7b] [options]\n"
            "\n"
            "Writes a random-initialised LLaMA checkpoint (config.json + safetensors shards, fp16) as\n"
            "transformers saves one: for benchmarks (7b: LLaMA-2-7B's shape, 13.5 GB), demos and tests.\n"
            "\n"
            "  --preset NAME        tiny (default; 4 layers, hidden 128) or 7b\n"
            "  --hidden N --intermediate N --layers N --heads N --kv-heads N --vocab N\n"
            "                       override the preset's shape\n"
            "  --num-labels N       add a score.weight head (LlamaForSequenceClassification)\n"
            "  --init-range X       standard deviation of the weights (default 0.02; tiny 0.1)\n"
            "  --seed N             random seed (default 1)\n"
            "  --shard-size BYTES   largest shard (default 5000000000)\n");
}

int main(int argc, char **argv)
{
    const char *out = NULL, *preset = "tiny";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout), 0;
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[++i];
    }
    qh_model_spec s;
    int rc = qh_model_spec_preset(preset, &s);
    for (int i = 1; !rc && i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--preset")) {
            i++;
            continue;
        }
        if (i + 1 >= argc) {
            rc = qh_fail(QH_EINPUT, "%s: unknown argument or missing value (see --help)", a);
            break;
        }
        const char *v = argv[++i];
        long x = 0;
        if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--init-range")) {
            char *end;
            s.init_range = strtod(v, &end);
            if (*end || !(s.init_range > 0 && s.init_range < 10)) rc = qh_fail(QH_EINPUT, "--init-range: '%s' is not in (0, 10)", v);
        } else if (!strcmp(a, "--hidden")) rc = qh_arg_long(a, v, 2, 65536, &x), s.hidden_size = (int)x;
        else if (!strcmp(a, "--intermediate")) rc = qh_arg_long(a, v, 1, 262144, &x), s.intermediate_size = (int)x;
        else if (!strcmp(a, "--layers")) rc = qh_arg_long(a, v, 1, 1024, &x), s.num_layers = (int)x;
        else if (!strcmp(a, "--heads")) rc = qh_arg_long(a, v, 1, 1024, &x), s.num_heads = (int)x;
        else if (!strcmp(a, "--kv-heads")) rc = qh_arg_long(a, v, 1, 1024, &x), s.num_kv_heads = (int)x;
        else if (!strcmp(a, "--vocab")) rc = qh_arg_long(a, v, 1, 1 << 22, &x), s.vocab_size = (int)x;
        else if (!strcmp(a, "--num-labels")) rc = qh_arg_long(a, v, 0, 64, &x), s.num_labels = (int)x;
        else if (!strcmp(a, "--seed")) rc = qh_arg_long(a, v, 0, 1L << 62, &x), s.seed = (uint64_t)x;
        else if (!strcmp(a, "--shard-size")) rc = qh_arg_long(a, v, 1, 1L << 50, &x), s.shard_bytes = (uint64_t)x;
        else rc = qh_fail(QH_EINPUT, "%s: unknown argument (see --help)", a);
    }
    if (!rc && !out) rc = qh_fail(QH_EINPUT, "--out DIR is required");
    if (!rc) rc = qh_generate_llama(&s, out);
    if (rc) return qh_report(prog, rc);
    printf("%s: wrote %s (hidden %d, %d layers, vocab %d)\n", prog, out, s.hidden_size, s.num_layers, s.vocab_size);
    return 0;
}
