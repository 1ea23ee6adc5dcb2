#include "spm_write.h"

#include "error.h"
#include "fileio.h"
#include "spm_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- protobuf wire format ----------------------------------------------------------------- */

enum { WT_VARINT = 0, WT_LEN = 2, WT_FIXED32 = 5 };

static int pb_put(qh_pb_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) return qh_fail(QH_ESYS, "tokenizer model: out of memory");
        b->data = d, b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return QH_OK;
}

static int pb_varint(qh_pb_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return pb_put(b, tmp, n);
}

static int pb_key(qh_pb_buf *b, uint32_t field, int wire_type)
{
    return pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire_type);
}

/* int32 fields are sign-extended to 64 bits on the wire: -1 takes ten bytes, as in LLaMA's pad_id. */
static int pb_int(qh_pb_buf *b, uint32_t field, int64_t v)
{
    int rc = pb_key(b, field, WT_VARINT);
    return rc ? rc : pb_varint(b, (uint64_t)v);
}

static int pb_bytes(qh_pb_buf *b, uint32_t field, const void *p, size_t n)
{
    int rc = pb_key(b, field, WT_LEN);
    if (!rc) rc = pb_varint(b, n);
    return rc ? rc : pb_put(b, p, n);
}

static int pb_str(qh_pb_buf *b, uint32_t field, const char *s) { return pb_bytes(b, field, s, strlen(s)); }

static int pb_float(qh_pb_buf *b, uint32_t field, float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint8_t le[4] = {(uint8_t)bits, (uint8_t)(bits >> 8), (uint8_t)(bits >> 16), (uint8_t)(bits >> 24)};
    int rc = pb_key(b, field, WT_FIXED32);
    return rc ? rc : pb_put(b, le, 4);
}

/* ---- builder ------------------------------------------------------------------------------ */

void qh_spm_builder_init(qh_spm_builder *b)
{
    memset(b, 0, sizeof *b);
    b->unk_id = b->bos_id = b->eos_id = b->pad_id = -1;
    b->byte_fallback = 1;
    b->add_dummy_prefix = 1;
    b->model_prefix = "qhead";
}

void qh_spm_builder_free(qh_spm_builder *b)
{
    free(b->pieces.data);
    memset(&b->pieces, 0, sizeof b->pieces);
    b->n_pieces = 0;
}

static int is_piece(const char *s, size_t len, const char *want) { return len == strlen(want) && !memcmp(s, want, len); }

int qh_spm_add_piece(qh_spm_builder *b, const char *s, size_t len, float score, int type)
{
    if (len == 0 || len > QH_SPM_MAX_PIECE_BYTES)
        return qh_fail(QH_EINPUT, "tokenizer model: piece %d is %zu bytes (1 to %d allowed)", b->n_pieces, len,
                       QH_SPM_MAX_PIECE_BYTES);
    if (type < QH_SPM_NORMAL || type > QH_SPM_BYTE)
        return qh_fail(QH_EINPUT, "tokenizer model: piece %d has unknown type %d", b->n_pieces, type);
    if (b->n_pieces >= QH_SPM_MAX_PIECES) return qh_fail(QH_EINPUT, "tokenizer model: more than %d pieces", QH_SPM_MAX_PIECES);
    /* The SentencePiece message goes into a scratch buffer first: its length prefixes it. */
    qh_pb_buf msg = {0};
    int rc = pb_bytes(&msg, 1, s, len);
    if (!rc) rc = pb_float(&msg, 2, score);
    if (!rc && type != QH_SPM_NORMAL) rc = pb_int(&msg, 3, type);
    if (!rc) rc = pb_bytes(&b->pieces, 1, msg.data, msg.len);
    free(msg.data);
    if (rc) return rc;
    int32_t id = b->n_pieces++;
    if (type == QH_SPM_UNKNOWN && b->unk_id < 0) b->unk_id = id;
    if (type == QH_SPM_CONTROL) {
        if (is_piece(s, len, "<s>")) b->bos_id = id;
        else if (is_piece(s, len, "</s>")) b->eos_id = id;
        else if (is_piece(s, len, "<pad>")) b->pad_id = id;
    }
    return QH_OK;
}

int qh_spm_add_byte_pieces(qh_spm_builder *b)
{
    for (int i = 0; i < 256; i++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", i); /* uppercase hex, as SentencePiece writes them */
        int rc = qh_spm_add_piece(b, s, 6, 0.0f, QH_SPM_BYTE);
        if (rc) return rc;
    }
    return QH_OK;
}

/* trainer_spec: what LLaMA-2's holds, less the paths of Meta's training machine. Only model_type,
 * byte_fallback and the piece strings change how text is tokenized; the rest is for people
 * (and tools) reading the file. */
static int trainer_spec(const qh_spm_builder *b, qh_pb_buf *t)
{
    int rc = pb_str(t, 1, "qhead-make-demo");
    if (!rc) rc = pb_str(t, 2, b->model_prefix);
    if (!rc) rc = pb_int(t, 3, QH_SPM_BPE);
    if (!rc) rc = pb_int(t, 4, b->n_pieces);
    if (!rc) rc = pb_int(t, 6, 0);        /* self_test_sample_size */
    if (!rc) rc = pb_str(t, 7, "text");   /* input_format */
    if (!rc) rc = pb_float(t, 10, 1.0f);  /* character_coverage: every character was kept */
    if (!rc) rc = pb_int(t, 16, 1);       /* num_threads */
    if (!rc) rc = pb_int(t, 20, 1 << 12); /* max_sentencepiece_length: whole words are pieces */
    if (!rc) rc = pb_int(t, 21, 1);       /* split_by_unicode_script */
    if (!rc) rc = pb_int(t, 22, 1);       /* split_by_whitespace */
    if (!rc) rc = pb_int(t, 23, 1);       /* split_by_number */
    if (!rc) rc = pb_int(t, 24, 0);       /* treat_whitespace_as_suffix */
    if (!rc) rc = pb_int(t, 25, 1);       /* split_digits */
    if (!rc) rc = pb_int(t, 26, 1);       /* allow_whitespace_only_pieces */
    if (!rc) rc = pb_int(t, 35, b->byte_fallback);
    if (!rc) rc = pb_int(t, 40, b->unk_id);
    if (!rc) rc = pb_int(t, 41, b->bos_id);
    if (!rc) rc = pb_int(t, 42, b->eos_id);
    if (!rc) rc = pb_int(t, 43, b->pad_id);
    if (!rc) rc = pb_str(t, 44, " \xE2\x81\x87 "); /* unk_surface " ⁇ " */
    if (!rc) rc = pb_str(t, 45, "<unk>");
    if (!rc) rc = pb_str(t, 46, "<s>");
    if (!rc) rc = pb_str(t, 47, "</s>");
    if (!rc) rc = pb_str(t, 48, "<pad>");
    return rc;
}

static int normalizer_spec(const qh_spm_builder *b, qh_pb_buf *n)
{
    int rc = pb_str(n, 1, "identity");
    if (!rc) rc = pb_bytes(n, 2, "", 0); /* precompiled_charsmap: empty, no normalization */
    if (!rc) rc = pb_int(n, 3, b->add_dummy_prefix);
    if (!rc) rc = pb_int(n, 4, b->remove_extra_whitespaces);
    if (!rc) rc = pb_int(n, 5, 1); /* escape_whitespaces: spaces become "▁" */
    if (!rc) rc = pb_bytes(n, 6, "", 0); /* normalization_rule_tsv */
    return rc;
}

int qh_spm_serialize(const qh_spm_builder *b, uint8_t **out, size_t *len)
{
    *out = NULL, *len = 0;
    if (b->unk_id < 0) return qh_fail(QH_EINPUT, "tokenizer model: no piece of type UNKNOWN");
    qh_pb_buf m = {0}, t = {0}, n = {0};
    int rc = pb_put(&m, b->pieces.data, b->pieces.len);
    if (!rc) rc = trainer_spec(b, &t);
    if (!rc) rc = pb_bytes(&m, 2, t.data, t.len);
    if (!rc) rc = normalizer_spec(b, &n);
    if (!rc) rc = pb_bytes(&m, 3, n.data, n.len);
    free(t.data);
    free(n.data);
    if (rc) {
        free(m.data);
        return rc;
    }
    *out = m.data, *len = m.len;
    return QH_OK;
}

int qh_spm_write_bytes(const char *path, const uint8_t *data, size_t len)
{
    qh_atomic_file af;
    int rc = qh_atomic_begin(&af, path);
    if (rc) return rc;
    if (fwrite(data, 1, len, af.fp) != len) {
        rc = qh_fail_errno(QH_ESYS, "%s: write failed", path);
        qh_atomic_abort(&af);
        return rc;
    }
    return qh_atomic_commit(&af);
}
