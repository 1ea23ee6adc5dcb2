/* SHA-256 (FIPS 180-4), for file and model fingerprints. */
#ifndef QHEAD_SHA256_H
#define QHEAD_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t state[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t used;
} qh_sha256_ctx;

void qh_sha256_init(qh_sha256_ctx *c);
void qh_sha256_update(qh_sha256_ctx *c, const void *data, size_t len);
void qh_sha256_final(qh_sha256_ctx *c, uint8_t out[32]);
void qh_sha256(const void *data, size_t len, uint8_t out[32]);
void qh_sha256_hex(const uint8_t digest[32], char hex[65]);

#endif
