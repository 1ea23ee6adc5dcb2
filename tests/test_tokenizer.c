/* The SentencePiece BPE tokenizer (core/tokenizer*.c, core/spm_model.c) and qhead-tokenize.
 *
 * Reference ids and decodes in tests/fixtures/tokenizer/ come from the SentencePiece library
 * itself (make_fixtures.py, python3-sentencepiece 0.1.97) for three small models: LLaMA-2-like
 * (byte_fallback, identity, dummy prefix, a user-defined and a control piece), one without
 * byte_fallback (runs of unknown characters -> one <unk>) with remove_extra_whitespaces, and
 * one with UNUSED pieces (re-split after merging) and no dummy prefix. Every corpus line must
 * match exactly. Hostile model files must give QH_EINPUT with one line naming the file. */
#include "testutil.h"

#include "error.h"
#include "fileio.h"
#include "sha256.h"
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOK_DIR QHEAD_FIXTURES "/tokenizer"
#define CLI QHEAD_BIN_DIR "/qhead-tokenize"

static const char *const MODELS[] = {"bpe", "bpe_nofallback", "bpe_unused"};
#define N_MODELS (sizeof MODELS / sizeof MODELS[0])

/* ---- helpers ------------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, n;
    char **line; /* into buf, NUL-terminated in place */
    size_t *line_len;
} lines_t;

static void read_lines(const char *path, lines_t *l)
{
    memset(l, 0, sizeof *l);
    if (qh_read_file(path, (size_t)64 << 20, &l->buf, &l->len) != QH_OK) fail_msg("%s", qh_last_error());
    size_t cap = 16;
    l->line = malloc(cap * sizeof *l->line);
    l->line_len = malloc(cap * sizeof *l->line_len);
    for (char *p = l->buf, *end = l->buf + l->len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        assert_non_null(nl); /* fixture files end every line with \n */
        if (l->n == cap) {
            cap *= 2;
            l->line = realloc(l->line, cap * sizeof *l->line);
            l->line_len = realloc(l->line_len, cap * sizeof *l->line_len);
        }
        *nl = '\0';
        l->line[l->n] = p;
        l->line_len[l->n++] = (size_t)(nl - p);
        p = nl + 1;
    }
}

static void free_lines(lines_t *l)
{
    free(l->buf);
    free(l->line);
    free(l->line_len);
}

/* Space-separated ids (stops at a tab or the end); returns the count. */
static size_t parse_ids(const char *s, int32_t *out, size_t cap)
{
    size_t n = 0;
    while (*s && *s != '\t') {
        if (*s == ' ') {
            s++;
            continue;
        }
        char *end;
        long v = strtol(s, &end, 10);
        assert_true(end > s);
        assert_true(n < cap);
        out[n++] = (int32_t)v;
        s = end;
    }
    return n;
}

static char *model_path(const char *name)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/%s.model", TOK_DIR, name);
    return p;
}

static qh_tokenizer *load_model(const char *name)
{
    char *path = model_path(name);
    qh_tokenizer *t = NULL;
    if (qh_tokenizer_load(path, &t) != QH_OK) fail_msg("%s", qh_last_error());
    free(path);
    return t;
}

static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
    fprintf(stderr, "  %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 64; i++) fprintf(stderr, " %d", (int)ids[i]);
    fprintf(stderr, n > 64 ? " ...\n" : "\n");
}

#define MAX_IDS (1 << 16)

/* ---- exactness against the library --------------------------------------------------------- */

static void test_encode_matches_sentencepiece(void **state)
{
    (void)state;
    lines_t corpus;
    read_lines(TOK_DIR "/corpus.txt", &corpus);
    int32_t *want = malloc((MAX_IDS + 1) * sizeof *want);
    qh_ids got;
    qh_ids_init(&got);
    for (size_t m = 0; m < N_MODELS; m++) {
        qh_tokenizer *t = load_model(MODELS[m]);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.ids", TOK_DIR, MODELS[m]);
        lines_t ref;
        read_lines(path, &ref);
        assert_int_equal(ref.n, corpus.n);
        int32_t bos = qh_tokenizer_bos_id(t);
        assert_int_equal(bos, 1);
        size_t bad = 0;
        for (size_t i = 0; i < corpus.n; i++) {
            want[0] = bos;
            size_t n = parse_ids(ref.line[i], want + 1, MAX_IDS);
            assert_int_equal(qh_tokenizer_encode(t, corpus.line[i], corpus.line_len[i], 0, &got), QH_OK);
            int ok = ids_equal(got.data, got.len, want + 1, n);
            assert_int_equal(qh_tokenizer_encode(t, corpus.line[i], corpus.line_len[i], 1, &got), QH_OK);
            ok = ok && ids_equal(got.data, got.len, want, n + 1);
            if (!ok && bad++ < 5) {
                fprintf(stderr, "%s: corpus line %zu differs from SentencePiece\n", MODELS[m], i + 1);
                print_ids("expected", want, n + 1);
                print_ids("got", got.data, got.len);
            }
        }
        if (bad) fail_msg("%s: %zu of %zu corpus lines differ", MODELS[m], bad, corpus.n);
        free_lines(&ref);
        qh_tokenizer_free(t);
    }
    qh_ids_free(&got);
    free(want);
    free_lines(&corpus);
}

static void test_decode_matches_sentencepiece(void **state)
{
    (void)state;
    int32_t *ids = malloc((MAX_IDS + 2) * sizeof *ids);
    qh_text text;
    qh_text_init(&text);
    for (size_t m = 0; m < N_MODELS; m++) {
        qh_tokenizer *t = load_model(MODELS[m]);
        char path[4096];
        lines_t ref, decoded, cases;
        snprintf(path, sizeof path, "%s/%s.ids", TOK_DIR, MODELS[m]);
        read_lines(path, &ref);
        snprintf(path, sizeof path, "%s/%s.decoded", TOK_DIR, MODELS[m]);
        read_lines(path, &decoded);
        assert_int_equal(ref.n, decoded.n);
        for (size_t i = 0; i < ref.n; i++) {
            ids[0] = qh_tokenizer_bos_id(t);
            size_t n = parse_ids(ref.line[i], ids + 1, MAX_IDS);
            ids[n + 1] = qh_tokenizer_eos_id(t);
            assert_int_equal(qh_tokenizer_decode(t, ids + 1, n, &text), QH_OK);
            if (text.len != decoded.line_len[i] || memcmp(text.data, decoded.line[i], text.len) != 0)
                fail_msg("%s: decode of line %zu: got \"%s\", expected \"%s\"", MODELS[m], i + 1, text.data,
                         decoded.line[i]);
            /* BOS and EOS are control pieces: they decode to nothing. */
            assert_int_equal(qh_tokenizer_decode(t, ids, n + 2, &text), QH_OK);
            assert_int_equal(text.len, decoded.line_len[i]);
            assert_memory_equal(text.data, decoded.line[i], text.len);
        }
        /* Arbitrary id sequences: <unk>, control pieces, bytes that are not UTF-8, "▁" runs. */
        snprintf(path, sizeof path, "%s/%s.decode_cases", TOK_DIR, MODELS[m]);
        read_lines(path, &cases);
        assert_true(cases.n >= 100);
        for (size_t i = 0; i < cases.n; i++) {
            size_t n = parse_ids(cases.line[i], ids, MAX_IDS);
            const char *hex = strchr(cases.line[i], '\t');
            assert_non_null(hex);
            hex++;
            assert_int_equal(qh_tokenizer_decode(t, ids, n, &text), QH_OK);
            char *got_hex = malloc(2 * text.len + 1);
            for (size_t k = 0; k < text.len; k++) snprintf(got_hex + 2 * k, 3, "%02x", (uint8_t)text.data[k]);
            got_hex[2 * text.len] = '\0';
            if (strcmp(got_hex, hex) != 0)
                fail_msg("%s: decode case %zu (%s): got %s", MODELS[m], i + 1, cases.line[i], got_hex);
            free(got_hex);
        }
        /* Out of range ids are input errors. */
        int32_t bad[2] = {5, qh_tokenizer_vocab_size(t)};
        assert_int_equal(qh_tokenizer_decode(t, bad, 2, &text), QH_EINPUT);
        assert_non_null(strstr(qh_last_error(), "outside the vocabulary"));
        bad[1] = -1;
        assert_int_equal(qh_tokenizer_decode(t, bad, 2, &text), QH_EINPUT);
        free_lines(&ref);
        free_lines(&decoded);
        free_lines(&cases);
        qh_tokenizer_free(t);
    }
    qh_text_free(&text);
    free(ids);
}

/* Well-formed UTF-8 without "▁" comes back unchanged from the LLaMA-like model. */
static int plain_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i + 3 <= n; i++)
        if (memcmp(s + i, "\xE2\x96\x81", 3) == 0) return 0;
    for (size_t i = 0; i < n;) {
        uint8_t c = (uint8_t)s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + len > n || (len == 2 && c < 0xC2)) return 0;
        uint32_t cp = len == 1 ? c : (uint32_t)(c & (0x7F >> len));
        for (size_t k = 1; k < len; k++) {
            if (((uint8_t)s[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | ((uint8_t)s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp < 0xE000))
            return 0;
        i += len;
    }
    return 1;
}

static void test_round_trip(void **state)
{
    (void)state;
    qh_tokenizer *t = load_model("bpe");
    lines_t corpus;
    read_lines(TOK_DIR "/corpus.txt", &corpus);
    qh_ids ids;
    qh_ids_init(&ids);
    qh_text text;
    qh_text_init(&text);
    size_t checked = 0;
    for (size_t i = 0; i < corpus.n; i++) {
        if (!plain_utf8(corpus.line[i], corpus.line_len[i])) continue;
        assert_int_equal(qh_tokenizer_encode(t, corpus.line[i], corpus.line_len[i], 1, &ids), QH_OK);
        assert_int_equal(qh_tokenizer_decode(t, ids.data, ids.len, &text), QH_OK);
        assert_int_equal(text.len, corpus.line_len[i]);
        assert_memory_equal(text.data, corpus.line[i], text.len);
        checked++;
    }
    assert_true(checked > 150);
    /* Invalid UTF-8 goes through U+FFFD: one per bad byte, as SentencePiece does. */
    assert_int_equal(qh_tokenizer_encode(t, "a\x80\xff" "b", 4, 0, &ids), QH_OK);
    assert_int_equal(qh_tokenizer_decode(t, ids.data, ids.len, &text), QH_OK);
    assert_string_equal(text.data, "a\xEF\xBF\xBD\xEF\xBF\xBD" "b");
    qh_text_free(&text);
    qh_ids_free(&ids);
    free_lines(&corpus);
    qh_tokenizer_free(t);
}

static void test_accessors(void **state)
{
    (void)state;
    qh_tokenizer *t = load_model("bpe");
    assert_int_equal(qh_tokenizer_vocab_size(t), 1000);
    assert_int_equal(qh_tokenizer_unk_id(t), 0);
    assert_int_equal(qh_tokenizer_bos_id(t), 1);
    assert_int_equal(qh_tokenizer_eos_id(t), 2);
    assert_int_equal(qh_tokenizer_pad_id(t), -1);
    assert_string_equal(qh_tokenizer_piece(t, 1), "<s>");
    assert_string_equal(qh_tokenizer_piece(t, 3), "<sep>");
    assert_null(qh_tokenizer_piece(t, -1));
    assert_null(qh_tokenizer_piece(t, 1000));
    assert_int_equal(qh_tokenizer_piece_id(t, "@user", 5), 4);
    assert_int_equal(qh_tokenizer_piece_id(t, "<0x41>", 6), qh_tokenizer_piece_id(t, "<0x40>", 6) + 1);
    assert_int_equal(qh_tokenizer_piece_id(t, "no such piece", 13), -1);
    /* The fingerprint is the file's sha256. */
    char *buf, hex[65];
    size_t len;
    uint8_t d[32];
    assert_int_equal(qh_read_file(TOK_DIR "/bpe.model", 1 << 20, &buf, &len), QH_OK);
    qh_sha256(buf, len, d);
    qh_sha256_hex(d, hex);
    assert_string_equal(qh_tokenizer_sha256(t), hex);
    free(buf);
    /* Empty text: nothing, or BOS alone. */
    qh_ids ids;
    qh_ids_init(&ids);
    assert_int_equal(qh_tokenizer_encode(t, "", 0, 0, &ids), QH_OK);
    assert_int_equal(ids.len, 0);
    assert_int_equal(qh_tokenizer_encode(t, "", 0, 1, &ids), QH_OK);
    assert_int_equal(ids.len, 1);
    assert_int_equal(ids.data[0], 1);
    qh_ids_free(&ids);
    qh_tokenizer_free(t);
}

/* ---- hostile model files ------------------------------------------------------------------- */

typedef struct {
    uint8_t *d;
    size_t n, cap;
} pbuf;

static void put(pbuf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->d = realloc(b->d, b->cap);
    }
    memcpy(b->d + b->n, p, n);
    b->n += n;
}

static void put_varint(pbuf *b, uint64_t v)
{
    do {
        uint8_t c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) c |= 0x80;
        put(b, &c, 1);
    } while (v);
}

static void put_len_field(pbuf *b, unsigned field, const void *p, size_t n)
{
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, n);
    put(b, p, n);
}

static void put_varint_field(pbuf *b, unsigned field, uint64_t v)
{
    put_varint(b, (uint64_t)field << 3);
    put_varint(b, v);
}

static void read_model_bytes(const char *name, pbuf *b)
{
    char *path = model_path(name), *buf;
    size_t len;
    assert_int_equal(qh_read_file(path, 1 << 20, &buf, &len), QH_OK);
    memset(b, 0, sizeof *b);
    put(b, buf, len);
    free(buf);
    free(path);
}

/* Loading data must fail with QH_EINPUT and one line naming the file (and containing needle). */
static void expect_refused(const char *dir, const void *data, size_t len, const char *needle)
{
    char *path = tu_write_file(dir, "bad.model", data, len);
    qh_tokenizer *t = (qh_tokenizer *)path; /* must be reset to NULL */
    qh_clear_error();
    int rc = qh_tokenizer_load(path, &t);
    const char *msg = qh_last_error();
    if (rc != QH_EINPUT) fail_msg("a %zu-byte hostile model gave rc %d (%s), expected QH_EINPUT", len, rc, msg);
    assert_null(t);
    if (!strstr(msg, path)) fail_msg("message does not name the file: %s", msg);
    assert_null(strchr(msg, '\n'));
    if (needle && !strstr(msg, needle)) fail_msg("message \"%s\" does not mention \"%s\"", msg, needle);
    free(path);
}

static void test_hostile_models(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("tok");
    pbuf good, b = {0};
    read_model_bytes("bpe_nofallback", &good);

    expect_refused(dir, "", 0, "empty");
    /* Every truncation of a model (it ends with normalizer_spec, which truncation loses). */
    for (size_t cut = 1; cut < good.n; cut++) expect_refused(dir, good.d, cut, NULL);
    pbuf big;
    read_model_bytes("bpe", &big);
    for (size_t cut = 1; cut < big.n; cut += cut < big.n - 64 ? 13 : 1) expect_refused(dir, big.d, cut, NULL);

    /* A piece of 1 MB (appending a field to a message adds to its repeated pieces). */
    size_t mb = (size_t)1 << 20;
    char *huge = malloc(mb);
    memset(huge, 'a', mb);
    pbuf piece = {0};
    put_len_field(&piece, 1, huge, mb);
    b.n = 0;
    put(&b, good.d, good.n);
    put_len_field(&b, 1, piece.d, piece.n);
    expect_refused(dir, b.d, b.n, "1048576 bytes");
    free(huge);
    free(piece.d);

    /* A length running past the end of the file. */
    b.n = 0;
    put(&b, good.d, good.n);
    put_varint(&b, 1 << 3 | 2);
    put_varint(&b, 0x7fffffff);
    put(&b, "abc", 3);
    expect_refused(dir, b.d, b.n, "past the end");

    /* Varint overflow: 11 continuation bytes. */
    b.n = 0;
    put(&b, good.d, good.n);
    put_varint(&b, 2 << 3); /* field 2 as a varint (the wire type is checked after) */
    for (int i = 0; i < 11; i++) put(&b, "\xff", 1);
    expect_refused(dir, b.d, b.n, "varint");
    /* ... and a 10-byte varint whose last byte carries more than bit 63. */
    b.n = 0;
    put(&b, good.d, good.n);
    put(&b, "\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11);
    expect_refused(dir, b.d, b.n, "varint");

    /* Not a BPE model: trainer_spec.model_type = UNIGRAM appended (protobuf merges it). */
    pbuf spec = {0};
    put_varint_field(&spec, 3, 1);
    b.n = 0;
    put(&b, good.d, good.n);
    put_len_field(&b, 2, spec.d, spec.n);
    expect_refused(dir, b.d, b.n, "UNIGRAM");

    /* A normalization the tokenizer refuses with a clear error (a precompiled charsmap). */
    spec.n = 0;
    put_len_field(&spec, 1, "nmt_nfkc", 8);
    put_len_field(&spec, 2, "\x01\x02\x03\x04", 4);
    b.n = 0;
    put(&b, good.d, good.n);
    put_len_field(&b, 3, spec.d, spec.n);
    expect_refused(dir, b.d, b.n, "nmt_nfkc");

    /* byte_fallback on without the 256 byte pieces. */
    spec.n = 0;
    put_varint_field(&spec, 35, 1);
    b.n = 0;
    put(&b, good.d, good.n);
    put_len_field(&b, 2, spec.d, spec.n);
    expect_refused(dir, b.d, b.n, "<0x00>");

    /* A piece defined twice, an empty piece, an unknown piece type, a wrong wire type. */
    const char *const piece_cases[] = {"\x0a\x02" "er", "\x0a\x00", "\x0a\x01x\x18\x09", "\x0d\x00\x00\x00\x00"};
    const size_t piece_lens[] = {4, 2, 5, 5};
    const char *const needles[] = {"already defined", "empty", "unknown type", "wire type"};
    for (int i = 0; i < 4; i++) {
        b.n = 0;
        put(&b, good.d, good.n);
        put_len_field(&b, 1, piece_cases[i], piece_lens[i]);
        expect_refused(dir, b.d, b.n, needles[i]);
    }
    /* Field number 0 and a group (wire type 3) at the top level. */
    b.n = 0;
    put(&b, good.d, good.n);
    put(&b, "\x00\x01", 2);
    expect_refused(dir, b.d, b.n, "field number");
    b.n = 0;
    put(&b, good.d, good.n);
    put(&b, "\x0b", 1);
    expect_refused(dir, b.d, b.n, "wire type");

    /* Random garbage, and random byte changes to a good model: an error or a working model,
     * never a crash (the sanitizer build checks every access). */
    uint64_t rng = 42;
    qh_ids ids;
    qh_ids_init(&ids);
    qh_text text;
    qh_text_init(&text);
    for (int i = 0; i < 300; i++) {
        b.n = 0;
        if (i < 100) {
            size_t n = 1 + tu_rand_u64(&rng) % 400;
            for (size_t k = 0; k < n; k++) {
                uint8_t c = (uint8_t)tu_rand_u64(&rng);
                put(&b, &c, 1);
            }
        } else {
            put(&b, good.d, good.n);
            for (int k = 0; k < 1 + i % 4; k++) b.d[tu_rand_u64(&rng) % b.n] = (uint8_t)tu_rand_u64(&rng);
        }
        char *path = tu_write_file(dir, "mutant.model", b.d, b.n);
        qh_tokenizer *t = NULL;
        int rc = qh_tokenizer_load(path, &t);
        if (rc == QH_OK) {
            const char *s = "  Hello @user, 日本語 \xff tweets!!  ";
            assert_int_equal(qh_tokenizer_encode(t, s, strlen(s), 1, &ids), QH_OK);
            assert_int_equal(qh_tokenizer_decode(t, ids.data, ids.len, &text), QH_OK);
            qh_tokenizer_free(t);
        } else {
            assert_int_equal(rc, QH_EINPUT);
            assert_non_null(strstr(qh_last_error(), path));
        }
        free(path);
    }
    qh_ids_free(&ids);
    qh_text_free(&text);

    qh_tokenizer *t = NULL;
    assert_int_equal(qh_tokenizer_load(TOK_DIR "/no-such.model", &t), QH_EINPUT);
    assert_non_null(strstr(qh_last_error(), "no-such.model"));

    free(spec.d);
    free(b.d);
    free(good.d);
    free(big.d);
    tu_rmtree(dir);
    free(dir);
}

/* ---- qhead-tokenize ------------------------------------------------------------------------ */

/* Runs the CLI on an input file, output to a file (the captured stdout is a C string; decoded
 * text may hold NUL bytes). Returns the exit status; *out is the output file's contents. */
static int run_cli(const char *dir, const char *args, const char *input, char **out, size_t *out_len, char **err)
{
    char *out_path = tu_path(dir, "cli.out");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "(\"%s\" %s < \"%s\" > \"%s\")", CLI, args, input, out_path);
    int rc = tu_run(cmd, NULL, err);
    *out = NULL;
    *out_len = 0;
    if (qh_read_file(out_path, (size_t)256 << 20, out, out_len) != QH_OK) *out = calloc(1, 1);
    free(out_path);
    return rc;
}

/* The CLI's expected output for lines encoded by the library. */
static char *expected_cli_output(const qh_tokenizer *t, const char *const *lines, const size_t *lens, size_t n,
                                 int add_bos)
{
    qh_ids ids;
    qh_ids_init(&ids);
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(qh_tokenizer_encode(t, lines[i], lens[i], add_bos, &ids), QH_OK);
        for (size_t k = 0; k <= ids.len; k++) {
            if (len + 16 > cap) s = realloc(s, cap *= 2);
            if (k == ids.len)
                s[len++] = '\n';
            else
                len += (size_t)snprintf(s + len, 16, k ? " %d" : "%d", (int)ids.data[k]);
        }
    }
    s[len] = '\0';
    qh_ids_free(&ids);
    return s;
}

static void test_cli(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("tokcli");
    char *out, *err, cmd[8192];
    size_t out_len;
    const char *model = TOK_DIR "/bpe.model";
    char args[4200];

    /* --help; argument errors: exit 2 with one line naming the problem. */
    assert_int_equal(tu_run(CLI " --help", &out, &err), 0);
    assert_non_null(strstr(out, "usage"));
    free(out), free(err);
    assert_int_equal(tu_run(CLI, &out, &err), 2);
    assert_non_null(strstr(err, "--tokenizer"));
    assert_int_equal(tu_count_lines(err), 1);
    free(out), free(err);
    assert_int_equal(tu_run(CLI " --tokenizer " TOK_DIR "/missing.model", &out, &err), 2);
    assert_non_null(strstr(err, "missing.model"));
    assert_int_equal(tu_count_lines(err), 1);
    free(out), free(err);
    assert_int_equal(tu_run(CLI " --tokenizer", &out, &err), 2);
    free(out), free(err);
    snprintf(cmd, sizeof cmd, CLI " --tokenizer %s --frobnicate", model);
    assert_int_equal(tu_run(cmd, &out, &err), 2);
    assert_non_null(strstr(err, "--frobnicate"));
    free(out), free(err);
    char *bad = tu_write_file(dir, "bad.model", "\x0a\x05" "ab", 4);
    snprintf(cmd, sizeof cmd, CLI " --tokenizer %s", bad);
    assert_int_equal(tu_run(cmd, &out, &err), 2);
    assert_non_null(strstr(err, bad));
    assert_int_equal(tu_count_lines(err), 1);
    free(out), free(err), free(bad);

    qh_tokenizer *t = load_model("bpe");
    /* The corpus with and without BOS, compared with the reference ids. */
    char *ref;
    size_t ref_len;
    assert_int_equal(qh_read_file(TOK_DIR "/bpe.ids", 1 << 24, &ref, &ref_len), QH_OK);
    snprintf(args, sizeof args, "--tokenizer %s --no-bos", model);
    assert_int_equal(run_cli(dir, args, TOK_DIR "/corpus.txt", &out, &out_len, &err), 0);
    assert_int_equal(out_len, ref_len);
    assert_memory_equal(out, ref, ref_len);
    free(out), free(err), free(ref);
    lines_t corpus;
    read_lines(TOK_DIR "/corpus.txt", &corpus);
    char *want = expected_cli_output(t, (const char *const *)corpus.line, corpus.line_len, corpus.n, 1);
    snprintf(args, sizeof args, "--tokenizer %s", model);
    assert_int_equal(run_cli(dir, args, TOK_DIR "/corpus.txt", &out, &out_len, &err), 0);
    assert_string_equal(out, want);
    free(out), free(err), free(want);

    /* CRLF line ends, an empty line, a last line without a newline. */
    const char *crlf = "hello world\r\n\r\n  two  spaces \r\nno newline";
    char *in = tu_write_file(dir, "crlf.txt", crlf, strlen(crlf));
    const char *lines[] = {"hello world", "", "  two  spaces ", "no newline"};
    const size_t lens[] = {11, 0, 14, 10};
    want = expected_cli_output(t, lines, lens, 4, 1);
    assert_int_equal(run_cli(dir, args, in, &out, &out_len, &err), 0);
    assert_string_equal(out, want);
    assert_non_null(strstr(out, "\n1\n")); /* the empty line: BOS alone */
    free(out), free(err), free(want);
    snprintf(args, sizeof args, "--tokenizer %s --no-bos", model);
    want = expected_cli_output(t, lines, lens, 4, 0);
    assert_int_equal(run_cli(dir, args, in, &out, &out_len, &err), 0);
    assert_string_equal(out, want);
    assert_non_null(strstr(out, "\n\n")); /* the empty line stays empty */
    free(out), free(err), free(want), free(in);

    /* A line of 1 MB. */
    size_t big_len = (size_t)1 << 20;
    char *big = malloc(big_len + 1);
    const char *unit = "tweet @user #tag 😂 日本 x\xff  ";
    for (size_t i = 0; i < big_len; i++) big[i] = unit[i % strlen(unit)];
    big[big_len] = '\n';
    in = tu_write_file(dir, "big.txt", big, big_len + 1);
    const char *big_lines[] = {big};
    want = expected_cli_output(t, big_lines, &big_len, 1, 0);
    assert_int_equal(run_cli(dir, args, in, &out, &out_len, &err), 0);
    assert_true(out_len > 100000);
    assert_string_equal(out, want);
    free(out), free(err), free(want), free(in), free(big);

    /* --decode: the reference ids give the reference text. */
    char *decoded;
    size_t decoded_len;
    assert_int_equal(qh_read_file(TOK_DIR "/bpe.decoded", 1 << 24, &decoded, &decoded_len), QH_OK);
    snprintf(args, sizeof args, "--tokenizer %s --decode", model);
    assert_int_equal(run_cli(dir, args, TOK_DIR "/bpe.ids", &out, &out_len, &err), 0);
    assert_int_equal(out_len, decoded_len);
    assert_memory_equal(out, decoded, decoded_len);
    free(out), free(err), free(decoded);
    in = tu_write_file(dir, "ids.txt", "1 5 6\r\n7 x 9\n", 13);
    assert_int_equal(run_cli(dir, args, in, &out, &out_len, &err), 2);
    assert_non_null(strstr(err, "line 2"));
    free(out), free(err), free(in);
    in = tu_write_file(dir, "ids.txt", "1 5 100000\n", 11);
    assert_int_equal(run_cli(dir, args, in, &out, &out_len, &err), 2);
    assert_non_null(strstr(err, "100000"));
    free(out), free(err), free(in);

    free_lines(&corpus);
    qh_tokenizer_free(t);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_matches_sentencepiece),
        cmocka_unit_test(test_decode_matches_sentencepiece),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_hostile_models),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
