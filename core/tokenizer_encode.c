/* Encoding: SentencePiece's identity normalizer followed by its BPE merge loop
 * (normalizer.cc Normalize, bpe_model.cc SampleEncode without dropout, and the unknown-piece
 * handling of sentencepiece_processor.cc), re-implemented step for step so the ids match. */
#include "error.h"
#include "tokenizer.h"
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

#define SPACE_SYMBOL "\xE2\x96\x81" /* U+2581 "▁" */
#define REPLACEMENT_CHAR "\xEF\xBF\xBD" /* U+FFFD */

typedef struct {
    int32_t prev, next; /* neighbours in the list of live symbols, -1 at the ends */
    uint32_t start, len; /* bytes of the normalized text; len 0 once merged into its left neighbour */
    int frozen;          /* a user-defined piece: never merged */
} tok_symbol;

/* A candidate merge. key orders the queue: the merged piece's score rank in the high half,
 * and ~left in the low half so that among equal scores the leftmost pair comes first. */
typedef struct {
    uint64_t key;
    int32_t right;
    uint32_t len; /* of the merged piece: tells a stale pair (either side changed since) */
} tok_pair;

static int32_t pair_left(const tok_pair *p) { return (int32_t)(UINT32_MAX - (uint32_t)p->key); }

/* The last split seen for a merged UNUSED piece (see resegment). */
typedef struct {
    int32_t id;
    uint32_t left_len;
} tok_split;

struct qh_tok_scratch {
    char *norm;
    size_t norm_cap;
    tok_symbol *sym;
    size_t sym_cap;
    tok_pair *heap;
    size_t heap_len, heap_cap;
    tok_split *splits;
    size_t n_splits, splits_cap;
    int failed; /* out of memory somewhere inside the merge loop */
};

void qh_tok_scratch_free(qh_tok_scratch *s)
{
    if (!s) return;
    free(s->norm);
    free(s->sym);
    free(s->heap);
    free(s->splits);
    free(s);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q, *cap = c;
    return 1;
}

/* ---- normalization ------------------------------------------------------------------------- */

/* Length of the longest user-defined piece at s[0..n), or 0 (SentencePiece's PrefixMatcher). */
static size_t user_piece_at(const qh_tokenizer *t, const char *s, size_t n)
{
    if (!t->has_user_pieces || !t->user_first_byte[(uint8_t)s[0]]) return 0;
    for (int i = 0; i < t->n_user_lens; i++) {
        size_t len = t->user_lens[i];
        if (len > n) continue;
        int32_t id = qh_tok_lookup(t, s, len);
        if (id >= 0 && t->m.pieces[id].type == QH_SPM_USER_DEFINED) return len;
    }
    return 0;
}

/* One normalization step (Normalizer::NormalizePrefix with no charsmap): consumes a user-defined
 * piece or one UTF-8 character whole, or a single byte of malformed UTF-8, which becomes U+FFFD. */
static size_t normalize_prefix(const qh_tokenizer *t, const char *s, size_t n, const char **out, size_t *out_len)
{
    size_t len = user_piece_at(t, s, n);
    if (!len) len = qh_utf8_char_len((const uint8_t *)s, n);
    if (!len) {
        *out = REPLACEMENT_CHAR, *out_len = 3;
        return 1;
    }
    *out = s, *out_len = len;
    return len;
}

/* Normalizer::Normalize: out needs 3 * n + 3 bytes (a byte becomes at most 3; plus the dummy
 * prefix). Returns the normalized length. */
static size_t normalize(const qh_tokenizer *t, const char *in, size_t n, char *out)
{
    const qh_spm_normalizer *spec = &t->m.normalizer;
    const char *space = spec->escape_whitespaces ? SPACE_SYMBOL : " ";
    const size_t space_len = strlen(space);
    const char *piece;
    size_t i = 0, o = 0, piece_len;
    if (spec->remove_extra_whitespaces) { /* drop leading spaces */
        while (i < n) {
            size_t used = normalize_prefix(t, in + i, n - i, &piece, &piece_len);
            if (piece_len != 1 || piece[0] != ' ') break;
            i += used;
        }
    }
    if (i == n) return 0; /* empty, or only spaces: no dummy prefix either */
    if (spec->add_dummy_prefix) memcpy(out, space, space_len), o = space_len;
    int prev_is_space = spec->remove_extra_whitespaces;
    while (i < n) {
        i += normalize_prefix(t, in + i, n - i, &piece, &piece_len);
        while (prev_is_space && piece_len && piece[0] == ' ') piece++, piece_len--;
        if (piece_len) {
            for (size_t k = 0; k < piece_len; k++) {
                if (piece[k] == ' ' && spec->escape_whitespaces)
                    memcpy(out + o, SPACE_SYMBOL, 3), o += 3;
                else
                    out[o++] = piece[k];
            }
            prev_is_space = piece[piece_len - 1] == ' ';
        }
        if (!spec->remove_extra_whitespaces) prev_is_space = 0;
    }
    if (spec->remove_extra_whitespaces) /* drop trailing spaces */
        while (o >= space_len && memcmp(out + o - space_len, space, space_len) == 0) o -= space_len;
    return o;
}

/* ---- BPE ----------------------------------------------------------------------------------- */

/* Max-heap order: higher score first, then the leftmost pair. */
static int pair_before(const tok_pair *a, const tok_pair *b) { return a->key > b->key; }

static void heap_push(qh_tok_scratch *s, tok_pair p)
{
    if (!grow((void **)&s->heap, &s->heap_cap, s->heap_len + 1, sizeof *s->heap)) {
        s->failed = 1;
        return;
    }
    size_t i = s->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = p;
}

static tok_pair heap_pop(qh_tok_scratch *s)
{
    tok_pair top = s->heap[0], last = s->heap[--s->heap_len];
    size_t i = 0, n = s->heap_len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!pair_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* Records how an UNUSED piece was formed; like SentencePiece's rev_merge map, a later pair
 * forming the same piece overwrites an earlier one, even if that pair is never merged. */
static void remember_split(qh_tok_scratch *s, int32_t id, uint32_t left_len)
{
    for (size_t i = 0; i < s->n_splits; i++)
        if (s->splits[i].id == id) {
            s->splits[i].left_len = left_len;
            return;
        }
    if (!grow((void **)&s->splits, &s->splits_cap, s->n_splits + 1, sizeof *s->splits)) {
        s->failed = 1;
        return;
    }
    s->splits[s->n_splits++] = (tok_split){id, left_len};
}

/* MaybeAddNewSymbolPair: queue the pair if the merged text is a NORMAL, USER_DEFINED or UNUSED piece. */
static void consider_pair(const qh_tokenizer *t, qh_tok_scratch *s, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return;
    const tok_symbol *l = &s->sym[left], *r = &s->sym[right];
    if (l->frozen || r->frozen) return;
    uint32_t len = l->len + r->len;
    if (len > t->max_merge_len) return;
    int32_t id = qh_tok_lookup(t, s->norm + l->start, len);
    if (id < 0) return;
    const qh_spm_piece *p = &t->m.pieces[id];
    if (p->type != QH_SPM_NORMAL && p->type != QH_SPM_USER_DEFINED && p->type != QH_SPM_UNUSED) return;
    uint64_t key = (uint64_t)t->score_rank[id] << 32 | (UINT32_MAX - (uint32_t)left);
    heap_push(s, (tok_pair){key, right, len});
    if (p->type == QH_SPM_UNUSED) remember_split(s, id, l->len);
}

typedef struct {
    const qh_tokenizer *t;
    qh_tok_scratch *s;
    qh_ids *out;
    int prev_unknown;
} emit_ctx;

static void push_id(emit_ctx *e, int32_t id)
{
    if (!grow((void **)&e->out->data, &e->out->cap, e->out->len + 1, sizeof *e->out->data)) {
        e->s->failed = 1;
        return;
    }
    e->out->data[e->out->len++] = id;
}

/* One final piece s[0..len). Unknown text becomes byte pieces with byte_fallback; without it,
 * a run of unknown pieces gives a single <unk> (SentencePiece merges them). */
static void emit_piece(emit_ctx *e, const char *text, uint32_t len)
{
    const qh_tokenizer *t = e->t;
    int32_t id = qh_tok_lookup(t, text, len);
    if (id < 0) id = t->unk_index;
    int type = t->m.pieces[id].type;
    if (type == QH_SPM_UNUSED) {
        /* An UNUSED piece is never output: it is split back the way it was last formed. */
        for (size_t i = 0; i < e->s->n_splits; i++) {
            if (e->s->splits[i].id != id) continue;
            uint32_t left = e->s->splits[i].left_len;
            emit_piece(e, text, left);
            emit_piece(e, text + left, len - left);
            return;
        }
    }
    int unknown = type == QH_SPM_UNKNOWN;
    if (unknown && t->m.byte_fallback) {
        for (uint32_t i = 0; i < len; i++) push_id(e, t->byte_ids[(uint8_t)text[i]]);
    } else if (!(unknown && e->prev_unknown)) {
        push_id(e, id);
    }
    e->prev_unknown = unknown;
}

static int scratch_reserve(qh_ids *out, size_t text_len)
{
    if (!out->scratch && !(out->scratch = calloc(1, sizeof *out->scratch)))
        return qh_fail(QH_ESYS, "encode: out of memory");
    qh_tok_scratch *s = out->scratch;
    size_t norm_need = 3 * text_len + 3;
    if (!grow((void **)&s->norm, &s->norm_cap, norm_need, 1) ||
        !grow((void **)&s->sym, &s->sym_cap, norm_need, sizeof *s->sym))
        return qh_fail(QH_ESYS, "encode: out of memory for a text of %zu bytes", text_len);
    s->heap_len = 0;
    s->n_splits = 0;
    s->failed = 0;
    return QH_OK;
}

int qh_tokenizer_encode(const qh_tokenizer *t, const char *text, size_t len, int add_bos, qh_ids *out)
{
    out->len = 0;
    if (len > QH_TOKENIZER_MAX_TEXT)
        return qh_fail(QH_EINPUT, "encode: text of %zu bytes is longer than the %zu allowed", len, QH_TOKENIZER_MAX_TEXT);
    int rc = scratch_reserve(out, len);
    if (rc) return rc;
    qh_tok_scratch *s = out->scratch;
    emit_ctx e = {t, s, out, 0};
    if (add_bos && t->bos_id >= 0) push_id(&e, t->bos_id);

    size_t n = normalize(t, text, len, s->norm);
    /* Split into characters (user-defined pieces whole and frozen). */
    int32_t count = 0;
    for (size_t pos = 0; pos < n;) {
        size_t l = user_piece_at(t, s->norm + pos, n - pos);
        int frozen = l > 0;
        if (!l) {
            /* SentencePiece's OneCharLen: the lead byte alone gives the length (the normalized
             * text is valid UTF-8 outside user-defined pieces, which are not split). */
            static const uint8_t lead_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
            l = lead_len[(uint8_t)s->norm[pos] >> 4];
            if (l > n - pos) l = n - pos;
        }
        s->sym[count] = (tok_symbol){count - 1, pos + l < n ? count + 1 : -1, (uint32_t)pos, (uint32_t)l, frozen};
        count++;
        pos += l;
    }
    for (int32_t i = 1; i < count; i++) consider_pair(t, s, i - 1, i);

    while (s->heap_len && !s->failed) {
        tok_pair top = heap_pop(s);
        int32_t left = pair_left(&top);
        tok_symbol *l = &s->sym[left], *r = &s->sym[top.right];
        if (!l->len || !r->len || l->len + r->len != top.len) continue; /* stale */
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = left;
        r->len = 0;
        consider_pair(t, s, l->prev, left);
        consider_pair(t, s, left, l->next);
    }
    for (int32_t i = count ? 0 : -1; i >= 0 && !s->failed; i = s->sym[i].next)
        emit_piece(&e, s->norm + s->sym[i].start, s->sym[i].len);
    if (s->failed) {
        out->len = 0;
        return qh_fail(QH_ESYS, "encode: out of memory");
    }
    return QH_OK;
}
