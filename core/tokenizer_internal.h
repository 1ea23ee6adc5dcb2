/* Shared between tokenizer.c (loading, lookup, decoding) and tokenizer_encode.c. */
#ifndef QHEAD_TOKENIZER_INTERNAL_H
#define QHEAD_TOKENIZER_INTERNAL_H

#include "spm_model.h"
#include "tokenizer.h"

#include <string.h>

typedef struct {
    uint32_t hash;
    uint32_t id1; /* piece id + 1; 0 for an empty slot */
} qh_tok_slot;

struct qh_tokenizer {
    qh_spm_model m;
    /* Open-addressing hash table over piece strings. A slot holds the string's hash next to the
     * piece id + 1 (0: empty), so a probe rarely has to touch the piece itself. */
    qh_tok_slot *slots;
    uint32_t mask;
    int32_t unk_index; /* the UNKNOWN piece: what text outside the vocabulary maps to */
    int32_t bos_id, eos_id, unk_id, pad_id;
    int32_t byte_ids[256];
    uint32_t max_merge_len; /* longest piece a merge can produce: no lookup beyond it */
    /* Pieces ranked by score (equal scores, equal ranks), so the merge queue compares integers:
     * the same order as comparing the float scores, without the float compares' cost. */
    uint32_t *score_rank;
    /* User-defined pieces are matched whole, longest first, before anything else. */
    int has_user_pieces;
    uint8_t user_first_byte[256];
    uint32_t *user_lens; /* distinct lengths of user-defined pieces, longest first */
    int n_user_lens;
    char sha256[65];
};

static inline uint32_t qh_tok_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a: pieces are short, so a byte loop is fast enough */
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

/* The id of the piece whose text is s[0..len), or -1. */
static inline int32_t qh_tok_lookup(const qh_tokenizer *t, const char *s, size_t len)
{
    uint32_t h = qh_tok_hash(s, len);
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        qh_tok_slot slot = t->slots[i];
        if (!slot.id1) return -1;
        if (slot.hash != h) continue;
        const qh_spm_piece *p = &t->m.pieces[slot.id1 - 1];
        if (p->len == len && memcmp(t->m.strings + p->offset, s, len) == 0) return (int32_t)(slot.id1 - 1);
    }
}

/* SentencePiece's DecodeUTF8 validity rule: the length of the well-formed UTF-8 character at
 * s[0..n) (shortest form, no surrogates, at most U+10FFFF), or 0 when the first byte does not
 * start one. */
static inline size_t qh_utf8_char_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c < 0x80) return 1;
#define QH_TRAIL(x) (((x) & 0xC0) == 0x80)
    if ((c & 0xE0) == 0xC0) {
        if (n < 2 || !QH_TRAIL(s[1])) return 0;
        uint32_t cp = (uint32_t)(c & 0x1F) << 6 | (s[1] & 0x3F);
        return cp >= 0x80 ? 2 : 0;
    }
    if ((c & 0xF0) == 0xE0) {
        if (n < 3 || !QH_TRAIL(s[1]) || !QH_TRAIL(s[2])) return 0;
        uint32_t cp = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        return cp >= 0x800 && (cp < 0xD800 || cp >= 0xE000) ? 3 : 0;
    }
    if ((c & 0xF8) == 0xF0) {
        if (n < 4 || !QH_TRAIL(s[1]) || !QH_TRAIL(s[2]) || !QH_TRAIL(s[3])) return 0;
        uint32_t cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 |
                      (s[3] & 0x3F);
        return cp >= 0x10000 && cp <= 0x10FFFF ? 4 : 0;
    }
#undef QH_TRAIL
    return 0;
}

void qh_tok_scratch_free(qh_tok_scratch *s);

#endif
