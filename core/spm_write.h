/* Writer for SentencePiece's tokenizer.model (a protobuf ModelProto): the inverse of
 * spm_model.c, so qhead can make its own tokenizers (the offline demo) without SentencePiece's
 * trainer or a protobuf library.
 *
 * The file mirrors LLaMA-2's tokenizer.model field for field: pieces (string, score, and the
 * type only when it is not NORMAL, as protobuf omits a default), a trainer_spec saying BPE,
 * vocab_size, byte_fallback and unk/bos/eos/pad ids and pieces, and a normalizer_spec
 * "identity" with an empty charsmap, add_dummy_prefix and remove_extra_whitespaces as set.
 * Fields are written in field-number order, as protobuf serializers do. */
#ifndef QHEAD_SPM_WRITE_H
#define QHEAD_SPM_WRITE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *data;
    size_t len, cap;
} qh_pb_buf;

typedef struct {
    qh_pb_buf pieces; /* the serialized repeated field 1, built as pieces are added */
    int32_t n_pieces;
    /* ids found while adding, by piece text and type as SentencePieceProcessor finds them;
     * -1 when absent (LLaMA-2: unk 0, bos 1, eos 2, pad -1) */
    int32_t unk_id, bos_id, eos_id, pad_id;
    int byte_fallback;            /* default 1 */
    int add_dummy_prefix;         /* default 1 */
    int remove_extra_whitespaces; /* default 0 */
    const char *model_prefix;     /* trainer_spec.model_prefix, informational */
} qh_spm_builder;

/* LLaMA-2's settings, no pieces. */
void qh_spm_builder_init(qh_spm_builder *b);
void qh_spm_builder_free(qh_spm_builder *b);

/* Append a piece (type: QH_SPM_NORMAL ... QH_SPM_BYTE from spm_model.h). Its id is the number of
 * pieces added before it. QH_EINPUT for an empty or overlong piece or a bad type. */
int qh_spm_add_piece(qh_spm_builder *b, const char *s, size_t len, float score, int type);
/* The 256 byte pieces <0x00>..<0xFF> (type BYTE, score 0), in order. */
int qh_spm_add_byte_pieces(qh_spm_builder *b);

/* The whole ModelProto in a malloc'd buffer. */
int qh_spm_serialize(const qh_spm_builder *b, uint8_t **out, size_t *len);
/* Write bytes to path atomically (temporary file, fsync, rename). */
int qh_spm_write_bytes(const char *path, const uint8_t *data, size_t len);

#endif
