/* Immutable, reference-counted bytes (a rendered answer) shared by the result cache, jobs and
 * the responses being sent: a response holds a reference until the client has read it
 * (http/response.c), so an answer in the cache is never copied per client. */
#ifndef METALIGN_UTIL_BLOB_H
#define METALIGN_UTIL_BLOB_H

#include <stddef.h>

#include "metalign/sha256.h"
#include "util/ref.h"

extern const char ML_BLOB_KIND[];

typedef struct ml_blob {
    ml_ref ref;
    size_t len;
    /* SHA-256 of the bytes, hashed once here so that every conditional request for a shared
     * answer (ETag, If-None-Match) compares it without hashing the bytes again. */
    char sha256[ML_SHA256_HEX_LEN];
    char data[]; /* NUL-terminated */
} ml_blob;

/* Takes a copy of data (and its SHA-256); the new blob has one reference. */
ml_blob *ml_blob_new(const char *data, size_t len);
ml_blob *ml_blob_ref(ml_blob *b);
void ml_blob_unref(ml_blob *b);
/* The blob behind r, or NULL when r is not one. */
ml_blob *ml_blob_from_ref(ml_ref *r);

#endif
