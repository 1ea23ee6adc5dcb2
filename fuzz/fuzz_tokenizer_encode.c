/* libFuzzer target: encoding arbitrary text (any bytes) with the valid models of
 * tests/fixtures/tokenizer/ (byte fallback with a user-defined piece; no byte fallback with
 * remove_extra_whitespaces; UNUSED pieces). The first input byte picks the model. Ids must be
 * in the vocabulary and decoding them must succeed. */
#include "fuzz_util.h"

#include "tokenizer.h"

#ifndef QHEAD_FIXTURES
#error "QHEAD_FIXTURES must name tests/fixtures"
#endif

static const char *const MODELS[] = {"bpe", "bpe_nofallback", "bpe_unused"};
#define N_MODELS (sizeof MODELS / sizeof MODELS[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static qh_tokenizer *tok[N_MODELS];
    static qh_ids ids;
    static qh_text text;
    if (!tok[0])
        for (size_t m = 0; m < N_MODELS; m++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/tokenizer/%s.model", QHEAD_FIXTURES, MODELS[m]);
            if (qh_tokenizer_load(path, &tok[m]) != QH_OK) {
                fprintf(stderr, "%s\n", qh_last_error());
                abort();
            }
        }
    if (size == 0) return 0;
    const qh_tokenizer *t = tok[data[0] % N_MODELS];
    int32_t n = qh_tokenizer_vocab_size(t);
    if (qh_tokenizer_encode(t, (const char *)data + 1, size - 1, data[0] & 0x80, &ids) != QH_OK) abort();
    for (size_t k = 0; k < ids.len; k++)
        if (ids.data[k] < 0 || ids.data[k] >= n) abort();
    if (qh_tokenizer_decode(t, ids.data, ids.len, &text) != QH_OK) abort();
    /* The input read as ids (4 bytes each): only in-vocabulary ones decode. */
    size_t nid = (size - 1) / 4;
    int ok = 1;
    int32_t *raw = malloc(sizeof(int32_t) * (nid ? nid : 1));
    if (!raw) return 0;
    memcpy(raw, data + 1, nid * 4);
    for (size_t k = 0; k < nid; k++) ok &= raw[k] >= 0 && raw[k] < n;
    int rc = qh_tokenizer_decode(t, raw, nid, &text);
    if (rc != (ok ? QH_OK : QH_EINPUT)) abort();
    free(raw);
    return 0;
}
