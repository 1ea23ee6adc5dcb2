/* SentencePiece BPE tokenizer (LLaMA-2's tokenizer.model), bit-exact with the SentencePiece
 * library (checked against version 0.1.97): same ids for every input, valid UTF-8 or not.
 *
 * Encoding: the text is normalized as the model's normalizer_spec says (only the "identity"
 * normalization exists here: models with a precompiled charsmap are refused), spaces become
 * U+2581 "▁", a dummy "▁" is prepended; bytes that are not valid UTF-8 become U+FFFD, one per
 * byte, as SentencePiece does; the text is split into characters (user-defined pieces stay
 * whole) and the adjacent pair whose merged piece scores highest is merged until none is in
 * the vocabulary (ties: leftmost). Characters outside the vocabulary become <0xNN> byte pieces
 * with byte_fallback, else <unk> (one <unk> per run of unknown characters).
 *
 * A loaded qh_tokenizer is read-only: threads may share it, each with its own qh_ids. */
#ifndef QHEAD_TOKENIZER_H
#define QHEAD_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct qh_tokenizer qh_tokenizer;

/* A growable array of ids, plus the encoder's working memory: reuse one across calls so that
 * encoding many short texts does not allocate each time. Zero-initialise (or qh_ids_init). */
typedef struct qh_tok_scratch qh_tok_scratch;
typedef struct {
    int32_t *data;
    size_t len, cap;
    qh_tok_scratch *scratch;
} qh_ids;

void qh_ids_init(qh_ids *v);
void qh_ids_free(qh_ids *v);

/* A growable NUL-terminated byte string (decoded text may hold NUL bytes: use len). */
typedef struct {
    char *data;
    size_t len, cap;
} qh_text;

void qh_text_init(qh_text *s);
void qh_text_free(qh_text *s);

/* Longest text encode accepts (indices into the normalized text are 32-bit). */
#define QH_TOKENIZER_MAX_TEXT ((size_t)256 << 20)

/* Read and check a SentencePiece ModelProto file. QH_EINPUT with one line naming the file when
 * it is malformed, not BPE, or needs a normalization it refuses (a precompiled charsmap;
 * LLaMA-2's tokenizer has none). */
int qh_tokenizer_load(const char *path, qh_tokenizer **out);
void qh_tokenizer_free(qh_tokenizer *t);

/* Encode text[0..len) (any bytes) into out (replacing its contents), BOS first when add_bos
 * and the model has one; never EOS. */
int qh_tokenizer_encode(const qh_tokenizer *t, const char *text, size_t len, int add_bos, qh_ids *out);

/* Decode ids into out (replacing its contents), like SentencePiece's DecodeIds: control pieces
 * vanish, <unk> becomes " ⁇ " (the model's unk_surface), runs of byte pieces are reassembled
 * (bytes that are not valid UTF-8 become U+FFFD), "▁" becomes a space, and the first piece's
 * leading "▁" (the dummy prefix) is dropped. An id outside the vocabulary is QH_EINPUT. */
int qh_tokenizer_decode(const qh_tokenizer *t, const int32_t *ids, size_t n, qh_text *out);

int32_t qh_tokenizer_vocab_size(const qh_tokenizer *t);
/* -1 when the model has no such piece (LLaMA-2: bos 1, eos 2, unk 0, pad -1). */
int32_t qh_tokenizer_bos_id(const qh_tokenizer *t);
int32_t qh_tokenizer_eos_id(const qh_tokenizer *t);
int32_t qh_tokenizer_unk_id(const qh_tokenizer *t);
int32_t qh_tokenizer_pad_id(const qh_tokenizer *t);
/* The piece's text (NUL-terminated, "▁" not replaced), or NULL when id is out of range. */
const char *qh_tokenizer_piece(const qh_tokenizer *t, int32_t id);
/* The id of a piece given by its exact text, or -1. */
int32_t qh_tokenizer_piece_id(const qh_tokenizer *t, const char *piece, size_t len);
/* Lowercase hex sha256 of the model file: a fingerprint for caches of token ids. */
const char *qh_tokenizer_sha256(const qh_tokenizer *t);

#endif
