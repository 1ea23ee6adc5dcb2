#include "spm_model.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- protobuf wire format ----------------------------------------------------------------- */

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2, WT_FIXED32 = 5 };

typedef struct {
    const uint8_t *base; /* start of the file, for offsets in messages */
    const uint8_t *p, *end;
    const char *path;
} pb_cursor;

typedef struct {
    uint32_t number;
    int wire_type;
    uint64_t value;      /* varint and fixed fields */
    const uint8_t *data; /* length-delimited fields */
    size_t len;
    size_t offset; /* of the field's key in the file */
} pb_field;

static size_t pb_offset(const pb_cursor *c) { return (size_t)(c->p - c->base); }

static int pb_varint(pb_cursor *c, uint64_t *out)
{
    size_t start = pb_offset(c);
    uint64_t v = 0;
    /* A 64-bit value takes at most 10 bytes, the last holding only bit 63. */
    for (int i = 0; i < 10; i++) {
        if (c->p >= c->end) return qh_fail(QH_EINPUT, "%s: offset %zu: truncated varint", c->path, start);
        uint8_t b = *c->p++;
        if (i == 9 && b > 1) return qh_fail(QH_EINPUT, "%s: offset %zu: varint overflows 64 bits", c->path, start);
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return QH_OK;
        }
    }
    return qh_fail(QH_EINPUT, "%s: offset %zu: varint overflows 64 bits", c->path, start);
}

static int pb_need(pb_cursor *c, uint64_t n, size_t at)
{
    if (n > (uint64_t)(c->end - c->p))
        return qh_fail(QH_EINPUT, "%s: offset %zu: field of %llu bytes runs past the end of its message (%zu bytes left)",
                       c->path, at, (unsigned long long)n, (size_t)(c->end - c->p));
    return QH_OK;
}

/* Read one field (key and value); the cursor must not be at the end. */
static int pb_next(pb_cursor *c, pb_field *f)
{
    uint64_t key;
    int rc;
    memset(f, 0, sizeof *f);
    f->offset = pb_offset(c);
    if ((rc = pb_varint(c, &key))) return rc;
    f->wire_type = (int)(key & 7);
    if (key >> 3 == 0 || key >> 3 > 0x1fffffff)
        return qh_fail(QH_EINPUT, "%s: offset %zu: invalid field number %llu", c->path, f->offset,
                       (unsigned long long)(key >> 3));
    f->number = (uint32_t)(key >> 3);
    switch (f->wire_type) {
    case WT_VARINT:
        return pb_varint(c, &f->value);
    case WT_FIXED64:
    case WT_FIXED32: {
        size_t n = f->wire_type == WT_FIXED64 ? 8 : 4;
        if ((rc = pb_need(c, n, f->offset))) return rc;
        for (size_t i = 0; i < n; i++) f->value |= (uint64_t)c->p[i] << (8 * i);
        c->p += n;
        return QH_OK;
    }
    case WT_LEN: {
        uint64_t n;
        if ((rc = pb_varint(c, &n)) || (rc = pb_need(c, n, f->offset))) return rc;
        f->data = c->p;
        f->len = (size_t)n;
        c->p += n;
        return QH_OK;
    }
    default: /* 3 and 4 are the deprecated groups, which SentencePiece never writes */
        return qh_fail(QH_EINPUT, "%s: offset %zu: field %u has unsupported wire type %d", c->path, f->offset,
                       f->number, f->wire_type);
    }
}

static pb_cursor pb_sub(const pb_cursor *parent, const pb_field *f)
{
    pb_cursor c = {parent->base, f->data, f->data + f->len, parent->path};
    return c;
}

static int pb_expect(const pb_cursor *c, const pb_field *f, int wire_type, const char *what)
{
    if (f->wire_type != wire_type)
        return qh_fail(QH_EINPUT, "%s: offset %zu: %s has wire type %d, expected %d", c->path, f->offset, what,
                       f->wire_type, wire_type);
    return QH_OK;
}

/* ---- ModelProto --------------------------------------------------------------------------- */

static int set_string(const pb_cursor *c, const pb_field *f, const char *what, char **dst)
{
    int rc = pb_expect(c, f, WT_LEN, what);
    if (rc) return rc;
    if (f->len > QH_SPM_MAX_PIECE_BYTES)
        return qh_fail(QH_EINPUT, "%s: offset %zu: %s is %zu bytes long, more than the %d allowed", c->path,
                       f->offset, what, f->len, QH_SPM_MAX_PIECE_BYTES);
    char *s = malloc(f->len + 1);
    if (!s) return qh_fail(QH_ESYS, "%s: out of memory", c->path);
    memcpy(s, f->data, f->len);
    s[f->len] = '\0';
    free(*dst);
    *dst = s;
    return QH_OK;
}

static int set_bool(const pb_cursor *c, const pb_field *f, const char *what, int *dst)
{
    int rc = pb_expect(c, f, WT_VARINT, what);
    if (!rc) *dst = f->value != 0;
    return rc;
}

static int append_piece(qh_spm_model *m, const pb_cursor *c, const uint8_t *s, size_t len, float score,
                        int type)
{
    if (m->n_pieces >= QH_SPM_MAX_PIECES)
        return qh_fail(QH_EINPUT, "%s: more than %d pieces", c->path, QH_SPM_MAX_PIECES);
    if ((size_t)m->n_pieces == m->pieces_cap) {
        size_t cap = m->pieces_cap ? 2 * m->pieces_cap : 1024;
        qh_spm_piece *p = realloc(m->pieces, cap * sizeof *p);
        if (!p) return qh_fail(QH_ESYS, "%s: out of memory", c->path);
        m->pieces = p, m->pieces_cap = cap;
    }
    if (m->strings_len + len + 1 > m->strings_cap) {
        size_t cap = m->strings_cap ? m->strings_cap : 16384;
        while (cap < m->strings_len + len + 1) cap *= 2;
        if (cap > UINT32_MAX) return qh_fail(QH_EINPUT, "%s: pieces hold more than 4 GB of text", c->path);
        char *p = realloc(m->strings, cap);
        if (!p) return qh_fail(QH_ESYS, "%s: out of memory", c->path);
        m->strings = p, m->strings_cap = cap;
    }
    qh_spm_piece *pc = &m->pieces[m->n_pieces++];
    pc->offset = (uint32_t)m->strings_len;
    pc->len = (uint32_t)len;
    pc->score = score;
    pc->type = (uint8_t)type;
    if (len) memcpy(m->strings + m->strings_len, s, len);
    m->strings[m->strings_len + len] = '\0';
    m->strings_len += len + 1;
    return QH_OK;
}

static int parse_piece(qh_spm_model *m, pb_cursor c)
{
    const uint8_t *s = NULL;
    size_t len = 0;
    float score = 0.0f;
    int type = QH_SPM_NORMAL, rc;
    int index = m->n_pieces;
    while (c.p < c.end) {
        pb_field f;
        if ((rc = pb_next(&c, &f))) return rc;
        if (f.number == 1) {
            if ((rc = pb_expect(&c, &f, WT_LEN, "piece string"))) return rc;
            if (f.len > QH_SPM_MAX_PIECE_BYTES)
                return qh_fail(QH_EINPUT, "%s: offset %zu: piece %d is %zu bytes long, more than the %d allowed",
                               c.path, f.offset, index, f.len, QH_SPM_MAX_PIECE_BYTES);
            s = f.data, len = f.len;
        } else if (f.number == 2) {
            if ((rc = pb_expect(&c, &f, WT_FIXED32, "piece score"))) return rc;
            uint32_t bits = (uint32_t)f.value;
            memcpy(&score, &bits, sizeof score);
            /* NaN would make "highest score first" meaningless. */
            if (score != score) return qh_fail(QH_EINPUT, "%s: offset %zu: piece %d has a NaN score", c.path, f.offset, index);
        } else if (f.number == 3) {
            if ((rc = pb_expect(&c, &f, WT_VARINT, "piece type"))) return rc;
            if (f.value < QH_SPM_NORMAL || f.value > QH_SPM_BYTE)
                return qh_fail(QH_EINPUT, "%s: offset %zu: piece %d has unknown type %llu", c.path, f.offset, index,
                               (unsigned long long)f.value);
            type = (int)f.value;
        }
    }
    return append_piece(m, &c, s, len, score, type);
}

static int parse_trainer_spec(qh_spm_model *m, pb_cursor c)
{
    int rc = QH_OK;
    m->has_trainer_spec = 1;
    while (c.p < c.end && !rc) {
        pb_field f;
        if ((rc = pb_next(&c, &f))) return rc;
        switch (f.number) {
        case 3:
            if ((rc = pb_expect(&c, &f, WT_VARINT, "trainer_spec.model_type"))) return rc;
            if (f.value < QH_SPM_UNIGRAM || f.value > QH_SPM_CHAR)
                return qh_fail(QH_EINPUT, "%s: offset %zu: unknown model_type %llu", c.path, f.offset,
                               (unsigned long long)f.value);
            m->model_type = (int)f.value;
            break;
        case 24: rc = set_bool(&c, &f, "trainer_spec.treat_whitespace_as_suffix", &m->treat_whitespace_as_suffix); break;
        case 35: rc = set_bool(&c, &f, "trainer_spec.byte_fallback", &m->byte_fallback); break;
        case 44: rc = set_string(&c, &f, "trainer_spec.unk_surface", &m->unk_surface); break;
        case 45: rc = set_string(&c, &f, "trainer_spec.unk_piece", &m->unk_piece); break;
        case 46: rc = set_string(&c, &f, "trainer_spec.bos_piece", &m->bos_piece); break;
        case 47: rc = set_string(&c, &f, "trainer_spec.eos_piece", &m->eos_piece); break;
        case 48: rc = set_string(&c, &f, "trainer_spec.pad_piece", &m->pad_piece); break;
        default: break; /* training-only settings */
        }
    }
    return rc;
}

static int parse_normalizer(qh_spm_normalizer *n, pb_cursor c, const char *which)
{
    int rc = QH_OK;
    char what[64];
    n->present = 1;
    while (c.p < c.end && !rc) {
        pb_field f;
        if ((rc = pb_next(&c, &f))) return rc;
        switch (f.number) {
        case 1:
            snprintf(what, sizeof what, "%s.name", which);
            rc = set_string(&c, &f, what, &n->name);
            break;
        case 2:
            snprintf(what, sizeof what, "%s.precompiled_charsmap", which);
            if (!(rc = pb_expect(&c, &f, WT_LEN, what))) n->charsmap_len = f.len;
            break;
        case 3: rc = set_bool(&c, &f, "normalizer add_dummy_prefix", &n->add_dummy_prefix); break;
        case 4: rc = set_bool(&c, &f, "normalizer remove_extra_whitespaces", &n->remove_extra_whitespaces); break;
        case 5: rc = set_bool(&c, &f, "normalizer escape_whitespaces", &n->escape_whitespaces); break;
        default: break; /* normalization_rule_tsv: training only */
        }
    }
    return rc;
}

static void normalizer_defaults(qh_spm_normalizer *n)
{
    memset(n, 0, sizeof *n);
    n->add_dummy_prefix = n->remove_extra_whitespaces = n->escape_whitespaces = 1;
}

void qh_spm_free(qh_spm_model *m)
{
    free(m->pieces);
    free(m->strings);
    free(m->unk_piece);
    free(m->bos_piece);
    free(m->eos_piece);
    free(m->pad_piece);
    free(m->unk_surface);
    free(m->normalizer.name);
    free(m->denormalizer.name);
    memset(m, 0, sizeof *m);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int qh_spm_parse(const char *path, const uint8_t *buf, size_t len, qh_spm_model *m)
{
    memset(m, 0, sizeof *m);
    m->model_type = QH_SPM_UNIGRAM; /* the proto's default */
    normalizer_defaults(&m->normalizer);
    normalizer_defaults(&m->denormalizer);
    m->unk_piece = dup_str("<unk>");
    m->bos_piece = dup_str("<s>");
    m->eos_piece = dup_str("</s>");
    m->pad_piece = dup_str("<pad>");
    m->unk_surface = dup_str(" \xE2\x81\x87 "); /* " ⁇ ", SentencePiece's kDefaultUnknownSymbol */
    if (!m->unk_piece || !m->bos_piece || !m->eos_piece || !m->pad_piece || !m->unk_surface) {
        qh_spm_free(m);
        return qh_fail(QH_ESYS, "%s: out of memory", path);
    }
    pb_cursor c = {buf, buf, buf + len, path};
    int rc = QH_OK;
    while (c.p < c.end && !rc) {
        pb_field f;
        if ((rc = pb_next(&c, &f))) break;
        /* Repeated occurrences of a message field merge into one, as protobuf parsers do. */
        switch (f.number) {
        case 1:
            if (!(rc = pb_expect(&c, &f, WT_LEN, "piece"))) rc = parse_piece(m, pb_sub(&c, &f));
            break;
        case 2:
            if (!(rc = pb_expect(&c, &f, WT_LEN, "trainer_spec"))) rc = parse_trainer_spec(m, pb_sub(&c, &f));
            break;
        case 3:
            if (!(rc = pb_expect(&c, &f, WT_LEN, "normalizer_spec")))
                rc = parse_normalizer(&m->normalizer, pb_sub(&c, &f), "normalizer_spec");
            break;
        case 5:
            if (!(rc = pb_expect(&c, &f, WT_LEN, "denormalizer_spec")))
                rc = parse_normalizer(&m->denormalizer, pb_sub(&c, &f), "denormalizer_spec");
            break;
        default: break; /* self_test_data and extensions */
        }
    }
    if (rc) qh_spm_free(m);
    return rc;
}
