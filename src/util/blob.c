#include "util/blob.h"

#include <stdlib.h>
#include <string.h>

ml_blob *ml_blob_new(const char *data, size_t len) {
    ml_blob *b = malloc(sizeof *b + len + 1);
    if (!b) return NULL;
    b->refs = 1;
    b->len = len;
    memcpy(b->data, data, len);
    b->data[len] = '\0';
    return b;
}

ml_blob *ml_blob_ref(ml_blob *b) {
    if (b) __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
    return b;
}

void ml_blob_unref(ml_blob *b) {
    if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) free(b);
}
