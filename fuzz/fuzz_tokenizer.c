/* libFuzzer target: tokenizer.model (core/spm_model.c, core/tokenizer.c). A model that loads
 * is then used: a few texts are encoded and every id decoded, so a model that passes the
 * checks but breaks an assumption of the encoder (piece lengths, byte pieces, the hash
 * index) shows up here. */
#include "fuzz_util.h"

#include "tokenizer.h"

static const char *const TEXTS[] = {
    "",
    " ",
    "Hello world",
    "  two  spaces and\ttab\n",
    "caf\xC3\xA9 \xE2\x96\x81 \xF0\x9F\x98\x80 @user <s> </s> <unk>",
    "\xFF\xFE invalid \xC3 utf-8 \xED\xA0\x80",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write(0, "tokenizer.model", data, size);
    qh_tokenizer *t = NULL;
    if (fz_refused(qh_tokenizer_load(path, &t), t)) return 0;
    int32_t n = qh_tokenizer_vocab_size(t);
    if (n < 1) abort();
    qh_ids ids;
    qh_text text;
    qh_ids_init(&ids);
    qh_text_init(&text);
    for (size_t i = 0; i < sizeof TEXTS / sizeof *TEXTS; i++) {
        if (qh_tokenizer_encode(t, TEXTS[i], strlen(TEXTS[i]), 1, &ids) != QH_OK) abort();
        for (size_t k = 0; k < ids.len; k++)
            if (ids.data[k] < 0 || ids.data[k] >= n) abort();
        if (qh_tokenizer_decode(t, ids.data, ids.len, &text) != QH_OK) abort();
    }
    /* The first 4096 pieces decoded together, and each one looked up by its text. */
    int32_t all_n = n < 4096 ? n : 4096;
    int32_t *all = malloc(sizeof(int32_t) * (size_t)all_n);
    if (all) {
        for (int32_t i = 0; i < all_n; i++) {
            all[i] = i;
            const char *p = qh_tokenizer_piece(t, i);
            if (!p) abort();
            (void)qh_tokenizer_piece_id(t, p, strlen(p)); /* a piece may hold a NUL: no equality check */
        }
        if (qh_tokenizer_decode(t, all, (size_t)all_n, &text) != QH_OK) abort();
        /* Decoded text fed back in must encode without trouble. */
        if (qh_tokenizer_encode(t, text.data, text.len, 0, &ids) != QH_OK) abort();
        free(all);
    }
    int32_t bad[2] = {-1, n};
    if (qh_tokenizer_decode(t, bad, 1, &text) != QH_EINPUT || qh_tokenizer_decode(t, bad + 1, 1, &text) != QH_EINPUT)
        abort();
    qh_ids_free(&ids);
    qh_text_free(&text);
    qh_tokenizer_free(t);
    return 0;
}
