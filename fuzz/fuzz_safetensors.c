/* libFuzzer target: the safetensors header and tensor table (core/safetensors.c).
 * A file that opens must describe only bytes inside the map: every tensor's data is read
 * end to end, so an offset outside the file would trip AddressSanitizer (or SIGBUS/SEGV). */
#include "fuzz_util.h"

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write(0, "model.safetensors", data, size);
    qh_safetensors *st = NULL;
    if (fz_refused(qh_st_open(path, &st), st)) return 0;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < st->n_tensors; i++) {
        const qh_st_tensor *t = &st->tensors[i];
        if (qh_st_find(st, t->name) != t) abort(); /* names are unique and sorted */
        if (t->end > st->data_size || t->begin > t->end) abort();
        const uint8_t *p = qh_st_data(st, t);
        for (uint64_t b = 0; b < t->end - t->begin; b++) sink ^= p[b];
        qh_tensor view;
        if (qh_st_view(st, t, &view) == QH_OK && qh_tensor_nbytes(&view) != t->end - t->begin) abort();
    }
    for (size_t i = 0; i < st->n_meta; i++)
        if (!qh_st_meta(st, st->meta_keys[i])) abort();
    (void)sink;
    qh_st_close(st);
    return 0;
}
