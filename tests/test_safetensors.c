/* The safetensors reader against good files and hostile ones. Every hostile file must be
 * refused with QH_EINPUT (never a crash, never a read outside the map) and a message that
 * names the file and the problem. Files are written by a small writer below, so each case
 * controls the header bytes exactly. */
#include "testutil.h"

#include "error.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *g_dir;

static int setup(void **state)
{
    (void)state;
    g_dir = tu_mkdtemp("st");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(g_dir);
    free(g_dir);
    return 0;
}

/* A file of: 8-byte little-endian `declared` length, the header bytes, then data. */
static char *write_raw(const char *name, uint64_t declared, const char *header, size_t header_len, const void *data,
                       size_t data_len)
{
    size_t n = 8 + header_len + data_len;
    uint8_t *buf = malloc(n ? n : 1);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(declared >> (8 * i));
    if (header_len) memcpy(buf + 8, header, header_len);
    if (data_len) memcpy(buf + 8 + header_len, data, data_len);
    char *path = tu_write_file(g_dir, name, buf, n);
    free(buf);
    return path;
}

/* A well-formed container: header padded with spaces to a multiple of 8 (so the data section
 * starts 8-aligned), its true length, then data_len bytes of data (zeros when data is NULL). */
static char *write_st(const char *name, const char *header, const void *data, size_t data_len)
{
    size_t hl = strlen(header), padded = (hl + 7) / 8 * 8;
    char *h = malloc(padded + 1);
    memcpy(h, header, hl);
    memset(h + hl, ' ', padded - hl);
    void *zeros = NULL;
    if (!data && data_len) data = zeros = calloc(1, data_len);
    char *path = write_raw(name, padded, h, padded, data, data_len);
    free(h);
    free(zeros);
    return path;
}

/* Opening must fail with QH_EINPUT, set *out to NULL, and name the file and each word. */
static void expect_refused_words(const char *path, const char *w1, const char *w2)
{
    qh_clear_error();
    qh_safetensors *st = (qh_safetensors *)(uintptr_t)1;
    int rc = qh_st_open(path, &st);
    const char *msg = qh_last_error();
    printf("# %s\n", msg);
    if (rc == QH_OK) qh_st_close(st);
    if (rc != QH_EINPUT) fail_msg("expected QH_EINPUT, got %d (%s)", rc, rc ? msg : "accepted");
    assert_null(st);
    if (!strstr(msg, path)) fail_msg("message does not name the file: %s", msg);
    if (w1 && !strstr(msg, w1)) fail_msg("message lacks '%s': %s", w1, msg);
    if (w2 && !strstr(msg, w2)) fail_msg("message lacks '%s': %s", w2, msg);
}

static void expect_refused(const char *path, const char *word) { expect_refused_words(path, word, NULL); }

/* Header text -> file -> refusal naming the file and word. */
static void refuse_header(const char *name, const char *header, size_t data_len, const char *word)
{
    char *path = write_st(name, header, NULL, data_len);
    expect_refused(path, word);
    free(path);
}

/* ---- a good file ---- */

static void test_good_file(void **state)
{
    (void)state;
    /* Data layout (offsets in the data section, each aligned to its element size):
     *   e.f64  F64  [2]     0..16
     *   c.f32  F32  [2, 2]  16..32
     *   d.i32  I32  [3]     32..44
     *   a.f16  F16  [2, 3]  44..56
     *   b.bf16 BF16 [4]     56..64
     *   s.i32  I32  []      64..68   (a scalar: no dimensions, one element)
     *   empty  F32  [0]     68..68
     *   zero2  F16  [3, 0]  0..0     (empty tensors own no bytes: sharing an offset is fine)
     * Header keys deliberately not in name order nor offset order. */
    const char *header = "{\"b.bf16\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[56,64]},"
                         "\"__metadata__\":{\"format\":\"pt\",\"note\":\"hello world\"},"
                         "\"empty\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[68,68]},"
                         "\"e.f64\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                         "\"a.f16\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[44,56]},"
                         "\"zero2\":{\"dtype\":\"F16\",\"shape\":[3,0],\"data_offsets\":[0,0]},"
                         "\"s.i32\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[64,68]},"
                         "\"d.i32\":{\"dtype\":\"I32\",\"shape\":[3],\"data_offsets\":[32,44]},"
                         "\"c.f32\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,32]}}";
    uint8_t data[68];
    const double f64[2] = {3.25, -1e300};
    const float f32[4] = {1.5f, -2.0f, 0.0f, 65536.0f};
    const int32_t i32[3] = {-7, 0, 2147483647};
    const uint16_t f16[6] = {0x3c00, 0xc000, 0x3800, 0x0000, 0x7bff, 0x8001}; /* 1, -2, .5, 0, 65504, -tiny */
    const uint16_t bf16[4] = {0x3f80, 0xc040, 0x4780, 0x0000};               /* 1, -3, 65536, 0 */
    const int32_t scalar = 42;
    memcpy(data + 0, f64, 16);
    memcpy(data + 16, f32, 16);
    memcpy(data + 32, i32, 12);
    memcpy(data + 44, f16, 12);
    memcpy(data + 56, bf16, 8);
    memcpy(data + 64, &scalar, 4);
    char *path = write_st("good.safetensors", header, data, sizeof data);

    qh_safetensors *st = NULL;
    int rc = qh_st_open(path, &st);
    if (rc) fail_msg("%s", qh_last_error());
    assert_non_null(st);
    assert_string_equal(st->path, path);
    assert_int_equal(st->n_tensors, 8);
    assert_int_equal(st->data_size, sizeof data);
    assert_int_equal(st->header_size % 8, 0);

    struct {
        const char *name;
        qh_dtype dtype;
        int ndim;
        int64_t shape[2];
        size_t off, bytes;
    } want[] = {
        {"e.f64", QH_F64, 1, {2, 0}, 0, 16},  {"c.f32", QH_F32, 2, {2, 2}, 16, 16},
        {"d.i32", QH_I32, 1, {3, 0}, 32, 12}, {"a.f16", QH_F16, 2, {2, 3}, 44, 12},
        {"b.bf16", QH_BF16, 1, {4, 0}, 56, 8}, {"s.i32", QH_I32, 0, {0, 0}, 64, 4},
        {"empty", QH_F32, 1, {0, 0}, 68, 0},  {"zero2", QH_F16, 2, {3, 0}, 0, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const qh_st_tensor *t = qh_st_find(st, want[i].name);
        if (!t) fail_msg("tensor %s not found", want[i].name);
        assert_string_equal(t->name, want[i].name);
        assert_int_equal(t->dtype, want[i].dtype);
        assert_int_equal(t->ndim, want[i].ndim);
        for (int d = 0; d < want[i].ndim; d++) assert_int_equal(t->shape[d], want[i].shape[d]);
        assert_int_equal(t->begin, want[i].off);
        assert_int_equal(t->end - t->begin, want[i].bytes);
        const uint8_t *p = qh_st_data(st, t);
        assert_ptr_equal(p, st->data + want[i].off);
        if (want[i].bytes) assert_memory_equal(p, data + want[i].off, want[i].bytes);
        qh_tensor v;
        assert_int_equal(qh_st_view(st, t, &v), QH_OK);
        assert_int_equal(v.dtype, want[i].dtype);
        assert_int_equal(v.ndim, want[i].ndim);
        assert_ptr_equal(v.data, p);
        assert_int_equal(v.owned, 0);
        assert_int_equal(qh_tensor_nbytes(&v), want[i].bytes);
    }
    /* Values through the typed accessors. */
    const qh_st_tensor *t = qh_st_find(st, "e.f64");
    assert_true(((const double *)qh_st_data(st, t))[1] == -1e300);
    t = qh_st_find(st, "a.f16");
    assert_true(qh_load_f32(QH_F16, qh_st_data(st, t), 1) == -2.0f);
    assert_true(qh_load_f32(QH_F16, qh_st_data(st, t), 4) == 65504.0f);
    t = qh_st_find(st, "b.bf16");
    assert_true(qh_load_f32(QH_BF16, qh_st_data(st, t), 1) == -3.0f);
    assert_true(qh_load_f32(QH_BF16, qh_st_data(st, t), 2) == 65536.0f);
    t = qh_st_find(st, "c.f32");
    assert_true(qh_load_f32(QH_F32, qh_st_data(st, t), 3) == 65536.0f);
    t = qh_st_find(st, "d.i32");
    assert_int_equal(((const int32_t *)qh_st_data(st, t))[2], 2147483647);
    t = qh_st_find(st, "s.i32");
    assert_int_equal(*(const int32_t *)qh_st_data(st, t), 42);

    assert_null(qh_st_find(st, "missing"));
    assert_null(qh_st_find(st, "__metadata__"));
    assert_null(qh_st_find(st, ""));
    assert_null(qh_st_find(st, "a.f1"));
    assert_int_equal(st->n_meta, 2);
    assert_string_equal(qh_st_meta(st, "format"), "pt");
    assert_string_equal(qh_st_meta(st, "note"), "hello world");
    assert_null(qh_st_meta(st, "nope"));
    qh_st_close(st);
    qh_st_close(NULL);
    free(path);
}

/* Header-only files: no tensors at all, and only metadata. */
static void test_good_minimal(void **state)
{
    (void)state;
    const char *headers[] = {"{}", "{\"__metadata__\":{}}", "{\"__metadata__\":{\"k\":\"\"}}"};
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "min%d.safetensors", i);
        char *path = write_st(name, headers[i], NULL, 0);
        qh_safetensors *st = NULL;
        if (qh_st_open(path, &st)) fail_msg("%s", qh_last_error());
        assert_int_equal(st->n_tensors, 0);
        assert_null(qh_st_find(st, "x"));
        assert_int_equal(st->n_meta, i == 2 ? 1 : 0);
        qh_st_close(st);
        free(path);
    }
    /* The length need not be a multiple of 8 when nothing needs alignment (U8 data). */
    const char *h = "{\"x\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}";
    char *path = write_raw("odd.safetensors", strlen(h), h, strlen(h), "abc", 3);
    qh_safetensors *st = NULL;
    if (qh_st_open(path, &st)) fail_msg("%s", qh_last_error());
    assert_memory_equal(qh_st_data(st, qh_st_find(st, "x")), "abc", 3);
    qh_st_close(st);
    free(path);
}

/* ---- the container: length field and file ---- */

static void test_too_short(void **state)
{
    (void)state;
    for (size_t n = 0; n < 8; n++) {
        char name[32];
        snprintf(name, sizeof name, "short%zu.safetensors", n);
        char *path = tu_write_file(g_dir, name, "\x02\0\0\0\0\0\0\0", n);
        expect_refused(path, "truncated");
        free(path);
    }
}

static void test_header_length_past_end(void **state)
{
    (void)state;
    const char *h = "{}      ";
    const uint64_t lengths[] = {9, 1000, 1ull << 32, 1ull << 63, (1ull << 63) + 8, UINT64_MAX, UINT64_MAX - 7};
    for (size_t i = 0; i < sizeof lengths / sizeof *lengths; i++) {
        char name[32];
        snprintf(name, sizeof name, "len%zu.safetensors", i);
        char *path = write_raw(name, lengths[i], h, 8, NULL, 0);
        expect_refused_words(path, "header length", "past the end");
        free(path);
    }
    /* Only the length field itself. */
    char *path = write_raw("lenonly.safetensors", 8, NULL, 0, NULL, 0);
    expect_refused(path, "past the end");
    free(path);
}

static void test_header_length_implausible(void **state)
{
    (void)state;
    char *path = write_raw("len0.safetensors", 0, "{}", 2, NULL, 0);
    expect_refused(path, "header length");
    free(path);
    path = write_raw("len1.safetensors", 1, "{}", 2, NULL, 0);
    expect_refused(path, "header length");
    free(path);
    /* A 101 MB header inside a (sparse) file that is big enough to hold it. */
    uint64_t n = 101ull << 20;
    path = write_raw("huge.safetensors", n, "{}", 2, NULL, 0);
    assert_int_equal(truncate(path, (off_t)(8 + n + 64)), 0);
    expect_refused(path, "header length");
    free(path);
}

static void test_not_a_file(void **state)
{
    (void)state;
    expect_refused(g_dir, "not a regular file");
    char *path = tu_path(g_dir, "does-not-exist.safetensors");
    expect_refused(path, "cannot open");
    free(path);
    char *sub = tu_path(g_dir, "sub.safetensors");
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", sub);
    assert_int_equal(system(cmd), 0);
    expect_refused(sub, "not a regular file");
    free(sub);
}

/* A named pipe in place of the file (nobody writing to it): refuse, do not block forever in
 * open(). Run in a child so that a hang fails the test instead of stalling the suite. */
static void test_fifo(void **state)
{
    (void)state;
    char *path = tu_path(g_dir, "fifo.safetensors");
    assert_int_equal(mkfifo(path, 0600), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        qh_safetensors *st = NULL;
        int rc = qh_st_open(path, &st);
        _exit(rc == QH_EINPUT && strstr(qh_last_error(), path) ? 0 : 1);
    }
    int status = 0, done = 0;
    for (int i = 0; i < 100 && !done; i++) { /* 5 seconds */
        done = waitpid(pid, &status, WNOHANG) == pid;
        if (!done) nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        free(path);
        fail_msg("qh_st_open on a FIFO still blocked after 5 s");
    }
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(path);
}

/* ---- the JSON header ---- */

static void test_header_not_json(void **state)
{
    (void)state;
    refuse_header("nj1.safetensors", "{not json", 0, "JSON");
    refuse_header("nj2.safetensors", "{\"a\":", 0, "JSON");
    refuse_header("nj3.safetensors", "\x01\x02\x03\x04garbage", 0, "JSON");
    char *path = write_raw("nj4.safetensors", 8, "\0\0\0\0\0\0\0\0", 8, NULL, 0);
    expect_refused(path, "JSON");
    free(path);
    /* 5000 nested arrays: must be refused, not blow the stack. */
    size_t depth = 5000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    path = write_st("deep.safetensors", deep, NULL, 0);
    qh_safetensors *st = NULL;
    assert_int_equal(qh_st_open(path, &st), QH_EINPUT);
    assert_non_null(strstr(qh_last_error(), path));
    free(path);
    free(deep);
}

static void test_header_not_object(void **state)
{
    (void)state;
    refuse_header("arr.safetensors", "[1, 2, 3]", 0, "object");
    refuse_header("str.safetensors", "\"hello\"", 0, "object");
    refuse_header("num.safetensors", "12345678", 0, "object");
    refuse_header("null.safetensors", "null", 0, "object");
    refuse_header("entry.safetensors", "{\"w\": 5}", 0, "not an object");
    refuse_header("entry2.safetensors", "{\"w\": [\"F32\", [1], [0, 4]]}", 4, "not an object");
}

/* The safetensors reference implementation (serde_json) refuses trailing characters after the
 * header object: a header is exactly one JSON value plus space padding. */
static void test_header_trailing_garbage(void **state)
{
    (void)state;
    refuse_header("trail1.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} xyz", 4, "JSON");
    refuse_header("trail2.safetensors", "{}{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "JSON");
}

static void test_missing_fields(void **state)
{
    (void)state;
    refuse_header("nodtype.safetensors", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype");
    refuse_header("noshape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape");
    refuse_header("nooffs.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets");
    refuse_header("dtypenum.safetensors", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype");
    refuse_header("shapeobj.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}", 4, "shape");
    refuse_header("offsnull.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":null}}", 4,
                  "data_offsets");
    /* The tensor is named. */
    char *path = write_st("named.safetensors", "{\"some.weight\":{\"shape\":[1],\"data_offsets\":[0,4]}}", NULL, 4);
    expect_refused(path, "'some.weight'");
    free(path);
}

static void test_unknown_dtype(void **state)
{
    (void)state;
    refuse_header("f8.safetensors", "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, "F8_E4M3");
    refuse_header("q4.safetensors", "{\"w\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,2]}}", 4, "Q4");
    refuse_header("lower.safetensors", "{\"w\":{\"dtype\":\"f16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "dtype");
    refuse_header("emptyd.safetensors", "{\"w\":{\"dtype\":\"\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "dtype");
}

static void test_bad_shape_entries(void **state)
{
    (void)state;
    refuse_header("neg.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape");
    refuse_header("neg2.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-2],\"data_offsets\":[0,16]}}", 16, "shape");
    refuse_header("frac.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 8, "shape");
    refuse_header("frac2.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2, 0.5],\"data_offsets\":[0,4]}}", 8, "shape");
    refuse_header("str.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "shape");
    refuse_header("big.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4, "shape");
    refuse_header("negz.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-0.5],\"data_offsets\":[0,0]}}", 4, "shape");
}

static void test_shape_overflow(void **state)
{
    (void)state;
    /* 2^32 x 2^32 elements: the element count itself overflows 64 bits. */
    refuse_header("ovf1.safetensors",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 8, "overflow");
    /* Product wraps to exactly 0 mod 2^64 with a byte count of 0: must not be taken as empty. */
    refuse_header("ovf2.safetensors",
                  "{\"w\":{\"dtype\":\"F32\",\"shape\":[65536,65536,65536,65536],\"data_offsets\":[0,0]}}", 8,
                  "overflow");
    /* 2^62 F32 elements: the count fits, the byte size (2^64) does not. */
    refuse_header("ovf3.safetensors",
                  "{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,0]}}", 8,
                  "overflow");
    /* Huge but representable: simply more bytes than the offsets give. */
    refuse_header("ovf4.safetensors", "{\"w\":{\"dtype\":\"F64\",\"shape\":[1048576,1048576],\"data_offsets\":[0,8]}}",
                  8, "bytes");
}

static void test_byte_count_mismatch(void **state)
{
    (void)state;
    refuse_header("bc1.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "bytes");
    refuse_header("bc2.safetensors", "{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "bytes");
    refuse_header("bc3.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,4]}}", 8, "bytes");
    refuse_header("bc4.safetensors", "{\"w\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,0]}}", 8, "bytes");
}

static void test_bad_offsets(void **state)
{
    (void)state;
    refuse_header("ob1.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 16, "data_offsets");
    refuse_header("ob2.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "data_offsets");
    refuse_header("ob3.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 8, "data_offsets");
    /* Past the data by one byte, and an empty tensor placed beyond the end. */
    refuse_header("ob4.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[9],\"data_offsets\":[0,9]}}", 8, "data_offsets");
    refuse_header("ob5.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[9,9]}}", 8, "data_offsets");
    /* Offsets near 2^64 (end - begin would wrap) and beyond 2^53. */
    refuse_header("ob6.safetensors",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[18446744073709551612,0]}}", 8, "data_offsets");
    refuse_header("ob7.safetensors",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[9007199254740996,9007199254741000]}}", 8,
                  "data_offsets");
    /* Malformed offsets arrays. */
    refuse_header("ob8.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,8]}}", 8, "data_offsets");
    refuse_header("ob9.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4]}}", 8, "data_offsets");
    refuse_header("ob10.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}}", 8, "data_offsets");
    refuse_header("ob11.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0.5,4.5]}}", 8,
                  "data_offsets");
    refuse_header("ob12.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[\"0\",\"4\"]}}", 8,
                  "data_offsets");
}

static void test_overlap(void **state)
{
    (void)state;
    /* Partial overlap, both header orders. */
    refuse_header("ov1.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  16, "overlap");
    refuse_header("ov2.safetensors",
                  "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                  16, "overlap");
    /* Identical ranges under different names. */
    refuse_header("ov3.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                  16, "overlap");
    /* One contained in the other, with a harmless tensor in front. */
    refuse_header("ov4.safetensors",
                  "{\"z\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[4,20]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                  24, "overlap");
    /* An empty tensor between them in offset order must not reset the check. */
    refuse_header("ov5.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  16, "overlap");
    refuse_header("ov6.safetensors",
                  "{\"e\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[5,5]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]},"
                  "\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}",
                  16, "overlap");
    /* A long tensor spanning a short one that follows another short one. */
    refuse_header("ov7.safetensors",
                  "{\"long\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]},"
                  "\"s1\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                  "\"s2\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[12,14]}}",
                  16, "overlap");

    /* Touching is not overlapping, and empty tensors anywhere inside others are fine. */
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                     "\"e2\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
    char *path = write_st("touch.safetensors", ok, NULL, 16);
    qh_safetensors *st = NULL;
    if (qh_st_open(path, &st)) fail_msg("%s", qh_last_error());
    assert_int_equal(st->n_tensors, 4);
    qh_st_close(st);
    free(path);
}

static void test_duplicate_name(void **state)
{
    (void)state;
    refuse_header("dup1.safetensors",
                  "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, "'w'");
    refuse_header("dup2.safetensors",
                  "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                  "\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}",
                  8, "twice");
}

/* Two __metadata__ objects (legal JSON) must be refused or merged, never written past the
 * arrays sized for one of them. */
static void test_duplicate_metadata(void **state)
{
    (void)state;
    const char *h = "{\"__metadata__\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\",\"d\":\"4\"},"
                    "\"__metadata__\":{\"e\":\"5\"}}";
    char *path = write_st("dupmeta.safetensors", h, NULL, 0);
    qh_safetensors *st = NULL;
    int rc = qh_st_open(path, &st);
    printf("# %s\n", rc ? qh_last_error() : "accepted");
    if (rc == QH_OK) {
        /* Whatever it kept must be consistent. */
        for (size_t i = 0; i < st->n_meta; i++) assert_non_null(qh_st_meta(st, st->meta_keys[i]));
        qh_st_close(st);
    } else {
        assert_int_equal(rc, QH_EINPUT);
        assert_non_null(strstr(qh_last_error(), path));
    }
    free(path);
}

static void test_misaligned(void **state)
{
    (void)state;
    refuse_header("mis1.safetensors", "{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[1,5]}}", 8, "align");
    refuse_header("mis2.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", 8, "align");
    refuse_header("mis3.safetensors", "{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[4,12]}}", 16, "align");
    /* Offsets aligned, but the header length (not a multiple of 8) misaligns the data start. */
    char h[128];
    snprintf(h, sizeof h, "{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}");
    if (strlen(h) % 2 == 0) strcat(h, " "); /* odd length */
    size_t hl = strlen(h);
    assert_true(hl % 2 == 1);
    char *path = write_raw("mis4.safetensors", hl, h, hl, "\0\0\0\0", 4);
    expect_refused(path, "align");
    free(path);
}

static void test_bad_metadata(void **state)
{
    (void)state;
    refuse_header("md1.safetensors", "{\"__metadata__\":{\"format\":1}}", 0, "__metadata__");
    refuse_header("md2.safetensors", "{\"__metadata__\":{\"format\":\"pt\",\"nested\":{\"a\":\"b\"}}}", 0, "string");
    refuse_header("md3.safetensors", "{\"__metadata__\":{\"x\":null}}", 0, "string");
    refuse_header("md4.safetensors", "{\"__metadata__\":[\"format\",\"pt\"]}", 0, "__metadata__");
    refuse_header("md5.safetensors", "{\"__metadata__\":\"pt\"}", 0, "__metadata__");
    /* Metadata after tensors, failing, must not leak the tensors parsed before it. */
    refuse_header("md6.safetensors",
                  "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"__metadata__\":{\"a\":\"b\",\"c\":true}}",
                  4, "string");
}

static void test_too_many_dims(void **state)
{
    (void)state;
    refuse_header("dims9.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                  "dimensions");
    /* Eight is the documented limit for the reader; views are limited to QH_MAX_DIMS. */
    char *path = write_st("dims8.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}",
                          NULL, 8);
    qh_safetensors *st = NULL;
    if (qh_st_open(path, &st)) fail_msg("%s", qh_last_error());
    const qh_st_tensor *t = qh_st_find(st, "w");
    assert_int_equal(t->ndim, 8);
    assert_int_equal(t->shape[7], 2);
    qh_tensor v;
    assert_int_equal(qh_st_view(st, t, &v), QH_EINPUT);
    assert_non_null(strstr(qh_last_error(), path));
    assert_non_null(strstr(qh_last_error(), "dimensions"));
    qh_st_close(st);
    free(path);
}

/* Random byte flips in a good file: every outcome is QH_OK or QH_EINPUT, never a crash. */
static void test_mutations(void **state)
{
    (void)state;
    const char *header = "{\"__metadata__\":{\"format\":\"pt\"},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                         "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[16,24]},"
                         "\"c\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[24,32]}}";
    uint8_t data[32] = {0};
    char *path = write_st("mut.safetensors", header, data, sizeof data);
    FILE *fp = fopen(path, "rb");
    uint8_t orig[512];
    size_t n = fread(orig, 1, sizeof orig, fp);
    fclose(fp);
    uint64_t rng = 12345;
    int accepted = 0;
    for (int iter = 0; iter < 2000; iter++) {
        uint8_t buf[512];
        memcpy(buf, orig, n);
        int flips = 1 + (int)(tu_rand_u64(&rng) % 3);
        for (int f = 0; f < flips; f++) {
            size_t pos = tu_rand_u64(&rng) % (n - 32); /* header and length field */
            buf[pos] = (uint8_t)tu_rand_u64(&rng);
        }
        size_t len = n;
        if (iter % 7 == 0) len = tu_rand_u64(&rng) % n; /* truncations too */
        char *p = tu_write_file(g_dir, "mut2.safetensors", buf, len);
        qh_safetensors *st = NULL;
        int rc = qh_st_open(p, &st);
        if (rc == QH_OK) {
            accepted++;
            for (size_t i = 0; i < st->n_tensors; i++) {
                const qh_st_tensor *t = &st->tensors[i];
                assert_true(t->begin <= t->end && t->end <= st->data_size);
                assert_ptr_equal(qh_st_find(st, t->name), t);
            }
            qh_st_close(st);
        } else {
            if (rc != QH_EINPUT) fail_msg("iteration %d: rc %d: %s", iter, rc, qh_last_error());
            if (!strstr(qh_last_error(), p)) fail_msg("iteration %d: message lacks the path: %s", iter, qh_last_error());
        }
        free(p);
    }
    printf("# %d of 2000 mutated files still valid\n", accepted);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_good_minimal),
        cmocka_unit_test(test_too_short),
        cmocka_unit_test(test_header_length_past_end),
        cmocka_unit_test(test_header_length_implausible),
        cmocka_unit_test(test_not_a_file),
        cmocka_unit_test(test_header_not_json),
        cmocka_unit_test(test_header_not_object),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_bad_shape_entries),
        cmocka_unit_test(test_shape_overflow),
        cmocka_unit_test(test_byte_count_mismatch),
        cmocka_unit_test(test_bad_offsets),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_duplicate_name),
        cmocka_unit_test(test_misaligned),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_too_many_dims),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_header_trailing_garbage),
        cmocka_unit_test(test_duplicate_metadata),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
