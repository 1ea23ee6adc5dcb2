#include "advice.h"

#include "error.h"
#include "fileio.h"

#include <stdio.h>
#include <stdlib.h>

const char *qh_default_model_dir(void)
{
    const char *env = getenv("QHEAD_MODEL");
    return env && *env ? env : "checkpoints/llama-2-7b-hf";
}

static int file_in(const char *dir, const char *name)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return qh_path_exists(p);
}

int qh_check_model_dir(const char *prog, const char *dir, const char *tokenizer_path)
{
    const char *missing = !qh_is_dir(dir)                 ? "the directory does not exist"
                          : !file_in(dir, "config.json")  ? "it has no config.json"
                          : !qh_path_exists(tokenizer_path) ? "its tokenizer.model is missing"
                                                            : NULL;
    if (!missing) return QH_OK;
    fprintf(stderr,
            "%s: no model at %s (%s). Download LLaMA-2-7B in the transformers layout after accepting "
            "Meta's license, e.g. `huggingface-cli download meta-llama/Llama-2-7b-hf --local-dir "
            "checkpoints/llama-2-7b-hf` (config.json, *.safetensors, model.safetensors.index.json, "
            "tokenizer.model), then pass --model DIR or set QHEAD_MODEL. To try qhead offline, run "
            "`build/bin/qhead-make-demo` and pass --model data/demo/model --data data/demo/sentiment.\n",
            prog, dir, missing);
    return qh_fail(QH_EINPUT, "no model at %s", dir);
}

int qh_check_task_dir(const char *prog, const char *dir, const char *const *splits, int n_splits)
{
    char missing[160] = "";
    if (!qh_is_dir(dir)) snprintf(missing, sizeof missing, "the directory does not exist");
    else if (!file_in(dir, "mapping.txt")) snprintf(missing, sizeof missing, "it has no mapping.txt");
    for (int i = 0; i < n_splits && !missing[0]; i++) {
        char t[64], l[64];
        snprintf(t, sizeof t, "%s_text.txt", splits[i]);
        snprintf(l, sizeof l, "%s_labels.txt", splits[i]);
        if (!file_in(dir, t) || !file_in(dir, l)) snprintf(missing, sizeof missing, "it has no %s or %s", t, l);
    }
    if (!missing[0]) return QH_OK;
    fprintf(stderr,
            "%s: no TweetEval data at %s (%s). Fetch it with `data/fetch-tweeteval.sh sentiment` "
            "(downloads cardiffnlp/tweeteval into data/tweeteval/sentiment; see data/README.md for the "
            "layout), or pass --data DIR. Offline, `build/bin/qhead-make-demo` writes a small synthetic "
            "task to data/demo/sentiment.\n",
            prog, dir, missing);
    return qh_fail(QH_EINPUT, "no data at %s", dir);
}
