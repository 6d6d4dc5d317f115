/* Immutable, reference-counted bytes (a serialised answer) shared between the result cache,
 * jobs and responses without copying or locking. */
#ifndef METALIGN_UTIL_BLOB_H
#define METALIGN_UTIL_BLOB_H

#include <stddef.h>

typedef struct ml_blob {
    int refs; /* atomic */
    size_t len;
    char data[]; /* NUL-terminated */
} ml_blob;

/* Takes a copy of data; the new blob has one reference. */
ml_blob *ml_blob_new(const char *data, size_t len);
ml_blob *ml_blob_ref(ml_blob *b);
void ml_blob_unref(ml_blob *b);

#endif
