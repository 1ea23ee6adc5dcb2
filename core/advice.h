/* The paragraph users see when the model or the data is not where a command looks: what to
 * download and where to put it, and the offline demo as the alternative. */
#ifndef QHEAD_ADVICE_H
#define QHEAD_ADVICE_H

/* QH_OK when dir holds config.json and tokenizer_path exists; otherwise prints the paragraph
 * on stderr and returns QH_EINPUT (the caller exits 2 without a second message). */
int qh_check_model_dir(const char *prog, const char *dir, const char *tokenizer_path);
/* QH_OK when dir holds mapping.txt and the named splits' text and label files. */
int qh_check_task_dir(const char *prog, const char *dir, const char *const *splits, int n_splits);
/* $QHEAD_MODEL, else checkpoints/llama-2-7b-hf. */
const char *qh_default_model_dir(void);

#endif
