/* libFuzzer target: head files (core/head.c qh_head_load): HDF5, or safetensors with
 * score.weight. The file is named head.safetensors, so anything that is not HDF5 goes to the
 * safetensors reader. A head that loads is applied to one hidden state. Note: libhdf5 itself
 * is not instrumented; a crash inside it still stops the fuzzer. */
#include "fuzz_util.h"

#include <hdf5.h>

#include "head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write(0, "head.safetensors", data, size);
    qh_head *h = NULL;
    int refused = fz_refused(qh_head_load(path, &h), h);
    FZ_CHECK_H5_CLOSED();
    if (refused) return 0;
    if (h->num_labels < 1 || h->num_labels > QH_MAX_LABELS || h->hidden_size < 1) abort();
    if (!memchr(h->model_fingerprint, '\0', sizeof h->model_fingerprint)) abort();
    for (int i = 0; i < h->num_labels; i++)
        if (!memchr(h->label_names[i], '\0', sizeof h->label_names[i])) abort();
    float *x = calloc((size_t)h->hidden_size, sizeof(float));
    float logits[QH_MAX_LABELS];
    if (x) qh_head_apply(h, x, 1, logits);
    free(x);
    qh_head_free(h);
    return 0;
}
