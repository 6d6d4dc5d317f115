/* Keys of the result cache and the job table. A key is the canonical text of everything that
 * determines an answer (field names and values in a fixed order, lists in full), hashed with
 * SHA-256, so its size does not depend on the request: a long request can never be cut short
 * into another request's key, and two requests share a key only when every input is equal. */
#ifndef METALIGN_HTTP_RESULT_KEYS_H
#define METALIGN_HTTP_RESULT_KEYS_H

#include <stddef.h>

#include "http/format.h"
#include "metalign/sha256.h"

#define ML_KEY_KIND_MAX 32
#define ML_KEY_LEN (ML_KEY_KIND_MAX + 1 + ML_SHA256_HEX_LEN) /* "<kind>:<hex>" + NUL */

typedef struct ml_key {
    ml_sha256 hash;
    char kind[ML_KEY_KIND_MAX];
} ml_key;

/* kind names the answer ("curves", "cka", "compare", ...) and prefixes the key. */
void ml_key_begin(ml_key *k, const char *kind);
void ml_key_int(ml_key *k, const char *name, long long v);
void ml_key_uint(ml_key *k, const char *name, unsigned long long v);
void ml_key_ints(ml_key *k, const char *name, const int *v, int n);
void ml_key_str(ml_key *k, const char *name, const char *s);
/* The representation (format, table): every key of a rendered answer has it. */
void ml_key_view(ml_key *k, const ml_view *v);
void ml_key_finish(ml_key *k, char out[ML_KEY_LEN]);

#endif
