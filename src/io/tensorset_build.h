/* How the format parsers (safetensors.c, torch_ckpt.c) fill an ml_tensorset: private to
 * src/io/. */
#ifndef METALIGN_IO_TENSORSET_BUILD_H
#define METALIGN_IO_TENSORSET_BUILD_H

#include "io/tensorset.h"

/* An empty set (no source yet). */
void ml_tensorset_init(ml_tensorset *ts);

/* Helpers for the parsers: append a storage / tensor / metadata pair (strings are copied).
 * add_tensor strips the prefixes `_orig_mod.` and `module.` from the name and rejects a name
 * that is already present, a storage index out of range and an unknown dtype; add_meta
 * replaces the value of a key that is already present. */
int ml_tensorset_add_storage(ml_tensorset *ts, const ml_storage *s, size_t *index, ml_err *err);
int ml_tensorset_add_tensor(ml_tensorset *ts, const ml_tensor *t, ml_err *err);
int ml_tensorset_add_meta(ml_tensorset *ts, const char *key, const char *value, ml_err *err);

#endif
