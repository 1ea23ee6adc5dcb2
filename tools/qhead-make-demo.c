/* qhead-make-demo: a tiny random LLaMA, its tokenizer and a synthetic sentiment task, so the
 * whole pipeline runs offline in a couple of minutes (see core/demo.h). */
#include "args.h"
#include "demo.h"
#include "error.h"

#include <stdio.h>
#include <string.h>

static const char *prog = "qhead-make-demo";

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: qhead-make-demo [--out DIR] [--seed N] [--train N] [--val N] [--test N]\n"
            "\n"
            "Writes an offline demo, made up locally (no download, no LLaMA weights):\n"
            "  DIR/model/      a tiny random LLaMA in the transformers layout (config.json,\n"
            "                  model.safetensors) with its own SentencePiece tokenizer.model\n"
            "  DIR/sentiment/  a synthetic 3-class sentiment task in the TweetEval layout\n"
            "                  (mapping.txt, {train,val,test}_{text,labels}.txt)\n"
            "Then, for instance: train-head --model DIR/model --data DIR/sentiment\n"
            "\n"
            "  --out DIR    output directory (default data/demo)\n"
            "  --seed N     random seed for the tweets and the weights (default 1)\n"
            "  --train N    number of training tweets (default 3000)\n"
            "  --val N      number of validation tweets (default 300)\n"
            "  --test N     number of test tweets (default 1200)\n");
}

int main(int argc, char **argv)
{
    const char *out = "data/demo";
    qh_demo_opts o;
    qh_demo_opts_default(&o);
    int rc = QH_OK;
    for (int i = 1; !rc && i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout), 0;
        size_t *count = !strcmp(a, "--train") ? &o.n_train : !strcmp(a, "--val") ? &o.n_val
                        : !strcmp(a, "--test") ? &o.n_test : NULL;
        if (!count && strcmp(a, "--out") && strcmp(a, "--seed")) {
            rc = qh_fail(QH_EINPUT, "%s: unknown argument (see --help)", a);
            break;
        }
        if (i + 1 >= argc) {
            rc = qh_fail(QH_EINPUT, "%s: missing value", a);
            break;
        }
        const char *v = argv[++i];
        long x = 0;
        if (!strcmp(a, "--out")) {
            if (!*v) rc = qh_fail(QH_EINPUT, "--out: empty path");
            out = v;
        } else if (!strcmp(a, "--seed")) {
            if (!(rc = qh_arg_long(a, v, 0, (1L << 62), &x))) o.seed = (uint64_t)x;
        } else if (!(rc = qh_arg_long(a, v, 1, 10000000, &x))) {
            *count = (size_t)x; /* at least 1: the TweetEval loader refuses empty files */
        }
    }
    qh_demo_summary sum;
    if (!rc) rc = qh_make_demo(out, &o, &sum);
    if (rc) return qh_report(prog, rc);
    printf("%s: wrote %s/sentiment (%zu / %zu / %zu tweets, %.2f s) and %s/model "
           "(vocab %d, hidden 128, 4 layers; tokenizer %.2f s, weights %.2f s)\n",
           prog, out, o.n_train, o.n_val, o.n_test, sum.seconds_data, out, (int)sum.vocab_size,
           sum.seconds_tokenizer, sum.seconds_model);
    return 0;
}
