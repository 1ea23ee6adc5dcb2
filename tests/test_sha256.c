/* SHA-256 (core/sha256.c) against the FIPS 180-2 example vectors, block-boundary lengths
 * (digests computed once with Python's hashlib), and the incremental API fed in every split. */
#include "testutil.h"

#include "sha256.h"

#include <stdlib.h>
#include <string.h>

static void expect_hex(const void *data, size_t len, const char *want)
{
    uint8_t d[32];
    char hex[65];
    qh_sha256(data, len, d);
    qh_sha256_hex(d, hex);
    assert_string_equal(hex, want);
}

static void test_fips_vectors(void **state)
{
    (void)state;
    expect_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    expect_hex(two_blocks, strlen(two_blocks), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *long_msg = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
                           "klmnopqrlmnopqrsmnopqrstnopqrstu";
    expect_hex(long_msg, strlen(long_msg), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");

    /* One million 'a', fed 1000 bytes at a time through the incremental API. */
    char chunk[1000];
    memset(chunk, 'a', sizeof chunk);
    qh_sha256_ctx c;
    qh_sha256_init(&c);
    for (int i = 0; i < 1000; i++) qh_sha256_update(&c, chunk, sizeof chunk);
    uint8_t d[32];
    char hex[65];
    qh_sha256_final(&c, d);
    qh_sha256_hex(d, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

/* Lengths where the padding needs one more block or just fits. */
static void test_block_boundaries(void **state)
{
    (void)state;
    static const struct {
        size_t n;
        const char *hex;
    } cases[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
        {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
        {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
    };
    char a[128];
    memset(a, 'a', sizeof a);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect_hex(a, cases[i].n, cases[i].hex);
}

/* Any split of the input into two updates gives the one-shot digest. */
static void test_incremental_splits(void **state)
{
    (void)state;
    uint8_t data[1024];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)i;
    uint8_t whole[32], part[32];
    qh_sha256(data, sizeof data, whole);
    char hex[65];
    qh_sha256_hex(whole, hex);
    assert_string_equal(hex, "785b0751fc2c53dc14a4ce3d800e69ef9ce1009eb327ccf458afe09c242c26c9");
    for (size_t cut = 0; cut <= sizeof data; cut += 7) {
        qh_sha256_ctx c;
        qh_sha256_init(&c);
        qh_sha256_update(&c, data, cut);
        qh_sha256_update(&c, data + cut, sizeof data - cut);
        qh_sha256_final(&c, part);
        assert_memory_equal(part, whole, 32);
    }
    /* Byte by byte. */
    qh_sha256_ctx c;
    qh_sha256_init(&c);
    for (size_t i = 0; i < sizeof data; i++) qh_sha256_update(&c, data + i, 1);
    qh_sha256_final(&c, part);
    assert_memory_equal(part, whole, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fips_vectors),
        cmocka_unit_test(test_block_boundaries),
        cmocka_unit_test(test_incremental_splits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
