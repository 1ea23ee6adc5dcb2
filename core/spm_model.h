/* Reader for SentencePiece's tokenizer.model (a protobuf ModelProto), internal to the tokenizer.
 *
 * The file is parsed by hand from the protobuf wire format, with every length and varint checked
 * against the buffer, so a truncated or hostile file gives one error line instead of a crash.
 * Only the fields that change how text is tokenized are kept; the rest are skipped. */
#ifndef QHEAD_SPM_MODEL_H
#define QHEAD_SPM_MODEL_H

#include <stddef.h>
#include <stdint.h>

/* ModelProto.SentencePiece.Type, numbered as in sentencepiece_model.proto. */
enum {
    QH_SPM_NORMAL = 1,
    QH_SPM_UNKNOWN = 2,
    QH_SPM_CONTROL = 3,
    QH_SPM_USER_DEFINED = 4,
    QH_SPM_UNUSED = 5,
    QH_SPM_BYTE = 6,
};

/* TrainerSpec.ModelType */
enum { QH_SPM_UNIGRAM = 1, QH_SPM_BPE = 2, QH_SPM_WORD = 3, QH_SPM_CHAR = 4 };

/* Longest piece accepted: real pieces are at most a few dozen bytes (max_sentencepiece_length
 * defaults to 16 characters); user-defined symbols may be longer, but not megabytes. */
#define QH_SPM_MAX_PIECE_BYTES 4096
/* Vocabularies in use are 32k to 256k pieces. */
#define QH_SPM_MAX_PIECES (1 << 22)

typedef struct {
    uint32_t offset; /* of the piece's bytes in qh_spm_model.strings (NUL-terminated there) */
    uint32_t len;
    float score;
    uint8_t type;
} qh_spm_piece;

typedef struct {
    int present;
    char *name;
    uint64_t charsmap_len; /* precompiled_charsmap size: non-zero means a real normalization */
    int add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
} qh_spm_normalizer;

typedef struct {
    qh_spm_piece *pieces;
    int32_t n_pieces;
    char *strings;
    size_t strings_len, strings_cap;
    size_t pieces_cap;

    int has_trainer_spec;
    int model_type;
    int byte_fallback;
    int treat_whitespace_as_suffix;
    /* unk/bos/eos/pad are located by piece string, as SentencePieceProcessor::bos_id() does. */
    char *unk_piece, *bos_piece, *eos_piece, *pad_piece;
    char *unk_surface; /* what <unk> decodes to */

    qh_spm_normalizer normalizer, denormalizer;
} qh_spm_model;

/* Parse buf[0..len) (the contents of path, which only names the file in messages).
 * Checks the wire format only; the tokenizer checks what the fields mean. On failure m is freed. */
int qh_spm_parse(const char *path, const uint8_t *buf, size_t len, qh_spm_model *m);
void qh_spm_free(qh_spm_model *m);

static inline const char *qh_spm_piece_str(const qh_spm_model *m, int32_t id)
{
    return m->strings + m->pieces[id].offset;
}

#endif
