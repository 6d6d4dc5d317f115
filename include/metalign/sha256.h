/* SHA-256 (FIPS 180-4), streaming. Used to check that a cached download is the one its
 * metadata describes; small enough that pulling in a crypto library is not worth it. */
#ifndef METALIGN_SHA256_H
#define METALIGN_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define ML_SHA256_LEN 32
#define ML_SHA256_HEX_LEN 65 /* 64 hex digits + NUL */

typedef struct ml_sha256 {
    uint32_t h[8];
    uint64_t n_bytes;     /* total bytes absorbed */
    unsigned char block[64];
    size_t fill;          /* bytes waiting in block */
} ml_sha256;

void ml_sha256_init(ml_sha256 *s);
void ml_sha256_update(ml_sha256 *s, const void *data, size_t len);
void ml_sha256_final(ml_sha256 *s, unsigned char out[ML_SHA256_LEN]);

/* One-shot digest as 64 lowercase hex digits. */
void ml_sha256_hex(const void *data, size_t len, char out[ML_SHA256_HEX_LEN]);
void ml_sha256_to_hex(const unsigned char digest[ML_SHA256_LEN], char out[ML_SHA256_HEX_LEN]);

#endif
