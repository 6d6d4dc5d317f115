/* Named tensors from a checkpoint file (safetensors or a torch.save zip), read on demand: the
 * container the format parsers fill (io/tensorset_build.h) and io/checkpoint.h opens.
 *
 * Opening a file parses only its index (safetensors header, or the pickle of a torch
 * checkpoint) and records, for every tensor, its dtype, shape, strides and where its storage
 * bytes live. ml_tensorset_read_f32() then copies one tensor, converted to float32 and
 * C-contiguous, into memory the caller owns (the model's single parameter buffer), so a
 * checkpoint never sits in memory twice. */
#ifndef METALIGN_IO_TENSORSET_H
#define METALIGN_IO_TENSORSET_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/err.h"

#include "io/dtype.h"
#include "io/source.h"

#define ML_MAX_NDIM 8

typedef struct ml_tensor {
    char *name;                  /* prefixes `_orig_mod.` and `module.` already stripped */
    ml_dtype dtype;
    int ndim;
    int64_t shape[ML_MAX_NDIM];
    int64_t stride[ML_MAX_NDIM]; /* in elements; a view may be non-contiguous */
    int64_t offset;              /* in elements, into its storage */
    size_t storage;              /* index into ml_tensorset.storages */
} ml_tensor;

/* Where a storage's bytes are: a byte range of the source (safetensors), or a zip entry. */
typedef struct ml_storage {
    char *key;          /* torch storage key ("0", "1", ...) or the safetensors tensor name */
    ml_dtype dtype;
    int64_t nbytes;
    int64_t src_offset; /* >= 0: bytes start here in the source; -1: see zip_index */
    int64_t zip_index;  /* >= 0: entry index in the zip archive */
} ml_storage;

typedef struct ml_kv {
    char *key;
    char *value;
} ml_kv;

typedef struct ml_tensorset {
    char *path;         /* for messages ("<memory>" for buffers) */
    const char *format; /* "safetensors" or "pytorch" */
    ml_tensor *tensors;
    size_t n_tensors, cap_tensors;
    ml_storage *storages;
    size_t n_storages, cap_storages;
    /* Free-form facts from the file: safetensors __metadata__, or the scalar fields of a
     * pickled config object in a torch checkpoint (e.g. "num_attention_heads" -> "12"). */
    ml_kv *meta;
    size_t n_meta, cap_meta;
    ml_source src;      /* the file or buffer the checkpoint is read from */
    void *zip;          /* zip_t * when the source is a zip archive (torch.save) */
} ml_tensorset;

/* Releases everything the set holds (ml_checkpoint_open fills it; io/checkpoint.h). */
void ml_tensorset_free(ml_tensorset *ts);

const ml_tensor *ml_tensorset_find(const ml_tensorset *ts, const char *name);
const char *ml_tensorset_meta(const ml_tensorset *ts, const char *key); /* NULL if absent */
int64_t ml_tensor_numel(const ml_tensor *t); /* -1 if the product overflows (never for a
                                              * tensor of a set: add_tensor refuses it) */

/* Copies tensor t as C-contiguous float32 into dst (ml_tensor_numel(t) floats). Fails with a
 * message naming the file and tensor when the dtype is not a real float type or the bytes
 * the view needs lie outside its storage. */
int ml_tensorset_read_f32(const ml_tensorset *ts, const ml_tensor *t, float *dst, ml_err *err);

/* Reads len bytes at byte offset off of a storage. Used by the format parsers and read_f32. */
int ml_tensorset_read_storage(const ml_tensorset *ts, const ml_storage *s, int64_t off,
                              int64_t len, void *dst, ml_err *err);


#endif
