/* Loading a SentencePiece BPE model, piece lookup, and decoding. Encoding: tokenizer_encode.c. */
#include "tokenizer.h"

#include "error.h"
#include "fileio.h"
#include "sha256.h"
#include "spm_model.h"
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

/* LLaMA-2's tokenizer.model is 500 KB; 256k-piece vocabularies are a few MB. */
#define MAX_MODEL_BYTES ((size_t)64 << 20)

static const char *const model_type_names[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};

void qh_text_init(qh_text *s) { memset(s, 0, sizeof *s); }

void qh_text_free(qh_text *s)
{
    free(s->data);
    memset(s, 0, sizeof *s);
}

void qh_ids_init(qh_ids *v) { memset(v, 0, sizeof *v); }

void qh_ids_free(qh_ids *v)
{
    free(v->data);
    qh_tok_scratch_free(v->scratch);
    memset(v, 0, sizeof *v);
}

void qh_tokenizer_free(qh_tokenizer *t)
{
    if (!t) return;
    qh_spm_free(&t->m);
    free(t->slots);
    free(t->user_lens);
    free(t->score_rank);
    free(t);
}

/* "<0xNN>" with uppercase hex, exactly as SentencePiece writes byte pieces; -1 otherwise. */
static int byte_piece_value(const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    const char *hi = s[3] ? strchr(hex, s[3]) : NULL, *lo = s[4] ? strchr(hex, s[4]) : NULL;
    if (!hi || !lo) return -1;
    return (int)((hi - hex) * 16 + (lo - hex));
}

static int32_t id_of_type(const qh_tokenizer *t, const char *piece, int type)
{
    int32_t id = qh_tok_lookup(t, piece, strlen(piece));
    return id >= 0 && t->m.pieces[id].type == type ? id : -1;
}

static int add_user_length(qh_tokenizer *t, uint32_t len, const char *path)
{
    for (int i = 0; i < t->n_user_lens; i++)
        if (t->user_lens[i] == len) return QH_OK;
    uint32_t *p = realloc(t->user_lens, (size_t)(t->n_user_lens + 1) * sizeof *p);
    if (!p) return qh_fail(QH_ESYS, "%s: out of memory", path);
    t->user_lens = p;
    int i = t->n_user_lens++;
    for (; i > 0 && p[i - 1] < len; i--) p[i] = p[i - 1]; /* keep longest first */
    p[i] = len;
    return QH_OK;
}

typedef struct {
    float score;
    int32_t id;
} scored_id;

static int cmp_score(const void *a, const void *b)
{
    float x = ((const scored_id *)a)->score, y = ((const scored_id *)b)->score;
    return (x > y) - (x < y);
}

static int rank_scores(qh_tokenizer *t, const char *path)
{
    int32_t n = t->m.n_pieces;
    scored_id *order = malloc((size_t)n * sizeof *order);
    t->score_rank = malloc((size_t)n * sizeof *t->score_rank);
    if (!order || !t->score_rank) {
        free(order);
        return qh_fail(QH_ESYS, "%s: out of memory", path);
    }
    for (int32_t i = 0; i < n; i++) order[i] = (scored_id){t->m.pieces[i].score, i};
    qsort(order, (size_t)n, sizeof *order, cmp_score);
    uint32_t rank = 0;
    for (int32_t i = 0; i < n; i++) {
        if (i && order[i].score != order[i - 1].score) rank++;
        t->score_rank[order[i].id] = rank;
    }
    free(order);
    return QH_OK;
}

/* The checks SentencePiece's ModelInterface::InitializePieces makes, and the index built. */
static int index_pieces(qh_tokenizer *t, const char *path)
{
    const qh_spm_model *m = &t->m;
    uint32_t size = 1024; /* at most a quarter full: most lookups are misses, which stop at an empty slot */
    while (size < 4u * (uint32_t)m->n_pieces) size *= 2;
    t->slots = calloc(size, sizeof *t->slots);
    if (!t->slots) return qh_fail(QH_ESYS, "%s: out of memory", path);
    t->mask = size - 1;
    t->unk_index = -1;
    for (int b = 0; b < 256; b++) t->byte_ids[b] = -1;
    for (int32_t id = 0; id < m->n_pieces; id++) {
        const qh_spm_piece *p = &m->pieces[id];
        const char *s = qh_spm_piece_str(m, id);
        if (p->len == 0) return qh_fail(QH_EINPUT, "%s: piece %d is empty", path, id);
        int32_t twin = qh_tok_lookup(t, s, p->len);
        if (twin >= 0)
            return qh_fail(QH_EINPUT, "%s: piece %d \"%.40s\" is already defined as piece %d", path, id, s, twin);
        uint32_t h = qh_tok_hash(s, p->len), i = h & t->mask;
        while (t->slots[i].id1) i = (i + 1) & t->mask;
        t->slots[i] = (qh_tok_slot){h, (uint32_t)id + 1};
        switch (p->type) {
        case QH_SPM_UNKNOWN:
            if (t->unk_index >= 0)
                return qh_fail(QH_EINPUT, "%s: pieces %d and %d are both of type UNKNOWN", path, t->unk_index, id);
            t->unk_index = id;
            break;
        case QH_SPM_BYTE: {
            if (!m->byte_fallback)
                return qh_fail(QH_EINPUT, "%s: byte piece %d \"%.40s\" but trainer_spec.byte_fallback is off", path, id, s);
            int b = byte_piece_value(s, p->len);
            if (b < 0) return qh_fail(QH_EINPUT, "%s: byte piece %d \"%.40s\" is not of the form <0xNN>", path, id, s);
            t->byte_ids[b] = id;
            break;
        }
        case QH_SPM_USER_DEFINED: {
            int rc = add_user_length(t, p->len, path);
            if (rc) return rc;
            t->has_user_pieces = 1;
            t->user_first_byte[(uint8_t)s[0]] = 1;
            break;
        }
        default: break;
        }
        /* The pieces a merge may produce (SentencePiece's pieces_ map). */
        if ((p->type == QH_SPM_NORMAL || p->type == QH_SPM_USER_DEFINED || p->type == QH_SPM_UNUSED) &&
            p->len > t->max_merge_len)
            t->max_merge_len = p->len;
    }
    if (t->unk_index < 0) return qh_fail(QH_EINPUT, "%s: no piece of type UNKNOWN (<unk>)", path);
    if (m->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (t->byte_ids[b] < 0)
                return qh_fail(QH_EINPUT, "%s: byte_fallback is on but byte piece <0x%02X> is missing", path, b);
    return QH_OK;
}

static int check_model(const qh_tokenizer *t, const char *path)
{
    const qh_spm_model *m = &t->m;
    if (!m->has_trainer_spec)
        return qh_fail(QH_EINPUT, "%s: no trainer_spec: truncated, or not a SentencePiece model", path);
    if (!m->normalizer.present)
        return qh_fail(QH_EINPUT, "%s: no normalizer_spec: truncated, or not a SentencePiece model", path);
    if (m->model_type != QH_SPM_BPE)
        return qh_fail(QH_EINPUT, "%s: model_type is %s; only BPE models are supported", path,
                       model_type_names[m->model_type]);
    if (m->n_pieces == 0) return qh_fail(QH_EINPUT, "%s: the model has no pieces", path);
    if (m->treat_whitespace_as_suffix)
        return qh_fail(QH_EINPUT, "%s: treat_whitespace_as_suffix is not supported", path);
    /* Only the charsmap changes text; an empty one is the identity whatever the rule's name. */
    if (m->normalizer.charsmap_len)
        return qh_fail(QH_EINPUT,
                       "%s: normalization '%s' (a %llu-byte precompiled charsmap) is not supported, only 'identity'",
                       path, m->normalizer.name ? m->normalizer.name : "", (unsigned long long)m->normalizer.charsmap_len);
    if (m->denormalizer.charsmap_len)
        return qh_fail(QH_EINPUT, "%s: a denormalizer charsmap (%llu bytes) is not supported", path,
                       (unsigned long long)m->denormalizer.charsmap_len);
    return QH_OK;
}

int qh_tokenizer_load(const char *path, qh_tokenizer **out)
{
    *out = NULL;
    char *buf;
    size_t len;
    int rc = qh_read_file(path, MAX_MODEL_BYTES, &buf, &len);
    if (rc) return rc;
    if (len == 0) {
        free(buf);
        return qh_fail(QH_EINPUT, "%s: empty file, not a SentencePiece model", path);
    }
    qh_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        free(buf);
        return qh_fail(QH_ESYS, "%s: out of memory", path);
    }
    uint8_t digest[32];
    qh_sha256(buf, len, digest);
    qh_sha256_hex(digest, t->sha256);
    rc = qh_spm_parse(path, (const uint8_t *)buf, len, &t->m);
    free(buf);
    if (!rc) rc = check_model(t, path);
    if (!rc) rc = index_pieces(t, path);
    if (!rc) rc = rank_scores(t, path);
    if (rc) {
        qh_tokenizer_free(t);
        return rc;
    }
    /* As SentencePieceProcessor::bos_id() etc.: found by the trainer_spec's piece strings. */
    t->bos_id = id_of_type(t, t->m.bos_piece, QH_SPM_CONTROL);
    t->eos_id = id_of_type(t, t->m.eos_piece, QH_SPM_CONTROL);
    t->pad_id = id_of_type(t, t->m.pad_piece, QH_SPM_CONTROL);
    t->unk_id = id_of_type(t, t->m.unk_piece, QH_SPM_UNKNOWN);
    *out = t;
    return QH_OK;
}

int32_t qh_tokenizer_vocab_size(const qh_tokenizer *t) { return t->m.n_pieces; }
int32_t qh_tokenizer_bos_id(const qh_tokenizer *t) { return t->bos_id; }
int32_t qh_tokenizer_eos_id(const qh_tokenizer *t) { return t->eos_id; }
int32_t qh_tokenizer_unk_id(const qh_tokenizer *t) { return t->unk_id; }
int32_t qh_tokenizer_pad_id(const qh_tokenizer *t) { return t->pad_id; }
const char *qh_tokenizer_sha256(const qh_tokenizer *t) { return t->sha256; }

const char *qh_tokenizer_piece(const qh_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->m.n_pieces ? qh_spm_piece_str(&t->m, id) : NULL;
}

int32_t qh_tokenizer_piece_id(const qh_tokenizer *t, const char *piece, size_t len)
{
    return qh_tok_lookup(t, piece, len);
}

/* ---- decoding ------------------------------------------------------------------------------ */

static int text_append(qh_text *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n + 1) cap *= 2;
        char *d = realloc(s->data, cap);
        if (!d) return qh_fail(QH_ESYS, "decode: out of memory");
        s->data = d, s->cap = cap;
    }
    if (n) memcpy(s->data + s->len, p, n);
    s->len += n;
    s->data[s->len] = '\0';
    return QH_OK;
}

/* A run of byte pieces: well-formed UTF-8 characters are kept, every other byte becomes U+FFFD. */
static int decode_bytes(const qh_tokenizer *t, const int32_t *ids, size_t n, qh_text *out)
{
    uint8_t buf[4];
    size_t i = 0;
    while (i < n) {
        size_t have = 0;
        for (; have < 4 && i + have < n; have++)
            buf[have] = (uint8_t)byte_piece_value(qh_spm_piece_str(&t->m, ids[i + have]), 6);
        size_t len = qh_utf8_char_len(buf, have);
        int rc = len ? text_append(out, (const char *)buf, len) : text_append(out, "\xEF\xBF\xBD", 3);
        if (rc) return rc;
        i += len ? len : 1;
    }
    return QH_OK;
}

/* Appends a piece's text with every "▁" turned into a space. */
static int append_unescaped(qh_text *out, const char *s, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i + 3 <= len; i++) {
        if (memcmp(s + i, "\xE2\x96\x81", 3) != 0) continue;
        int rc = text_append(out, s + start, i - start);
        if (rc || (rc = text_append(out, " ", 1))) return rc;
        start = i + 3;
        i += 2;
    }
    return text_append(out, s + start, len - start);
}

int qh_tokenizer_decode(const qh_tokenizer *t, const int32_t *ids, size_t n, qh_text *out)
{
    const qh_spm_model *m = &t->m;
    out->len = 0;
    int rc = text_append(out, "", 0);
    if (rc || n == 0) return rc; /* nothing to decode (ids may then be NULL, as in an empty qh_ids) */
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->n_pieces)
            return qh_fail(QH_EINPUT, "decode: id %d at position %zu is outside the vocabulary (0..%d)", (int)ids[i], i,
                           m->n_pieces - 1);
    /* SentencePiece drops the leading "▁" of the first piece that produces text, once (all leading
     * whitespace pieces when remove_extra_whitespaces is on), since encoding added it. */
    const int strip_prefix = m->normalizer.add_dummy_prefix || m->normalizer.remove_extra_whitespaces;
    int expect_prefix = 1, prefix_seen = 0;
    size_t byte_run = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && m->pieces[ids[i]].type == QH_SPM_BYTE) continue;
        if ((rc = decode_bytes(t, ids + byte_run, i - byte_run, out))) return rc;
        byte_run = i + 1;
        if (i == n) break;
        if (prefix_seen || out->len) expect_prefix = 0;
        const qh_spm_piece *p = &m->pieces[ids[i]];
        const char *s = qh_spm_piece_str(m, ids[i]);
        size_t len = p->len;
        prefix_seen = 0;
        if (p->type == QH_SPM_CONTROL) continue;
        if (p->type == QH_SPM_UNKNOWN) {
            rc = text_append(out, m->unk_surface, strlen(m->unk_surface));
        } else {
            if (expect_prefix && strip_prefix && len >= 3 && memcmp(s, "\xE2\x96\x81", 3) == 0) {
                s += 3, len -= 3;
                prefix_seen = !m->normalizer.remove_extra_whitespaces;
            }
            rc = append_unescaped(out, s, len);
        }
        if (rc) return rc;
    }
    return QH_OK;
}
