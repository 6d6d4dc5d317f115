/* HDF5 backbones (MODEL.md section 7), through libhdf5: a float matrix stored either as one
 * dataset `representations` (N, D), or as one dataset per image named "0", "1", ... "N-1",
 * each (D,), taken in numeric order (not string order). float16/32/64 in any byte order,
 * contiguous or chunked, gzip (or any filter libhdf5 here decodes). Opening reads only the
 * metadata; rows are read on demand, and only the rows asked for.
 *
 * Hostile files end in an error that names the file and the dataset: a wrong rank, a
 * non-float type, sizes beyond the limits below, a missing `representations` with no
 * per-image datasets, a name that is not a canonical number, a gap in "0".."N-1", a filter
 * libhdf5 cannot decode. libhdf5's own error printing is switched off; its messages become
 * the reason in ours.
 *
 * libhdf5 (the serial Debian build) is not thread-safe: one ml_h5mat call at a time in the
 * process (the dataset is loaded once, at start-up). This header is "io/hdf5.h"; the
 * library's is <hdf5.h>. */
#ifndef METALIGN_IO_HDF5_H
#define METALIGN_IO_HDF5_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/err.h"
#include "io/dtype.h"

#define ML_H5_DATASET "representations"
/* Largest sizes accepted: far above THINGS (26,107 images, 2,304 features). */
#define ML_H5_MAX_ROWS ((int64_t)1 << 26)
#define ML_H5_MAX_COLS ((int64_t)1 << 20)
/* A chunk is decompressed whole to read one of its rows: bigger ones are refused. */
#define ML_H5_MAX_CHUNK_BYTES ((uint64_t)16 << 20)
/* A row may span at most this many chunks (h5py's own chunking gives tens): tiny chunks
 * across a wide matrix make every row a search through millions of them. */
#define ML_H5_MAX_BAND_CHUNKS ((uint64_t)1 << 16)
/* The chunk cache of `representations` holds one band of chunks (all columns of a chunk's
 * rows), so reading rows in order decompresses each chunk once; at most this much. */
#define ML_H5_MAX_CACHE_BYTES ((size_t)64 << 20)
/* Hash slots of that cache: libhdf5 advises 100 per cached chunk. */
#define ML_H5_MAX_CACHE_SLOTS ((size_t)1 << 20)
/* Rows read per H5Dread from `representations` (a run of consecutive rows), in bytes. */
#define ML_H5_READ_BYTES ((size_t)4 << 20)

typedef struct ml_h5mat {
    char *path;        /* for messages ("<name>" for memory images) */
    int64_t rows, cols;
    int per_image;     /* 1: datasets "0".."N-1"; 0: `representations` */
    ml_dtype dtype;    /* of `representations`, or of "0" */
    int64_t file;      /* hid_t */
    int64_t dset;      /* hid_t of `representations`, or -1 */
} ml_h5mat;

/* 1 when the file starts with the HDF5 signature (no user block). */
int ml_h5_is_hdf5(const char *path);

int ml_h5mat_open(ml_h5mat *m, const char *path, ml_err *err);
/* The same over a file image in memory (tests, fuzzing); libhdf5 keeps its own copy. */
int ml_h5mat_open_mem(ml_h5mat *m, const char *name, const void *buf, size_t len,
                      ml_err *err);
void ml_h5mat_free(ml_h5mat *m);

/* Copies rows[i] into out[i * cols ...] as float32, for i < n_rows; rows NULL means every row
 * in order (n_rows must then be m->rows). Rows may repeat and come in any order; a row
 * index outside [0, rows) is an error. */
int ml_h5mat_read_rows(ml_h5mat *m, const int64_t *rows, size_t n_rows, float *out,
                       ml_err *err);

#endif
