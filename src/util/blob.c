#include "util/blob.h"

#include <stdlib.h>
#include <string.h>

const char ML_BLOB_KIND[] = "blob";

static void blob_destroy(ml_ref *r) { free(r); }

ml_blob *ml_blob_new(const char *data, size_t len) {
    ml_blob *b = malloc(sizeof *b + len + 1);
    if (!b) return NULL;
    ml_ref_init(&b->ref, ML_BLOB_KIND, sizeof *b + len + 1, blob_destroy);
    b->len = len;
    memcpy(b->data, data, len);
    b->data[len] = '\0';
    ml_sha256_hex(b->data, len, b->sha256);
    return b;
}

ml_blob *ml_blob_ref(ml_blob *b) {
    ml_ref_inc(b ? &b->ref : NULL);
    return b;
}

void ml_blob_unref(ml_blob *b) { ml_unref(b ? &b->ref : NULL); }

ml_blob *ml_blob_from_ref(ml_ref *r) {
    return r && r->kind == ML_BLOB_KIND ? (ml_blob *)r : NULL;
}
