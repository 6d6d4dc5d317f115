/* .npy and .npz readers (MODEL.md section 6): float matrices, .npz arrays joined side by side.
 * Every reader has a file and a memory entry point (tests, fuzzing); every error names the
 * file, the entry and the problem. */
#ifndef METALIGN_IO_NPY_H
#define METALIGN_IO_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/err.h"
#include "io/source.h"
#include "io/npy_header.h"

/* ---- float matrices from .npy / .npz ------------------------------------------------------ */

/* One array of an .npz archive (or the whole .npy file): its columns of the joined matrix. */
typedef struct ml_nparray {
    char *entry;        /* zip entry name ("patch.npy"), or NULL for a bare .npy */
    ml_npy_header h;
    int64_t zip_index;  /* -1 for a bare .npy */
    int compressed;     /* deflated: read as a stream; stored: read at offsets */
    int64_t col0, cols; /* columns [col0, col0 + cols) of the joined matrix */
} ml_nparray;

/* A 2-D float matrix stored as an .npy file, or as the 2-D arrays of an .npz archive joined
 * side by side in archive (central directory) order, as numpy's np.load(...).files lists
 * them. Opening reads only the headers; rows are read on demand and converted to float32. */
typedef struct ml_npmat {
    const char *path;   /* for messages (src.name: the path, or "<name>" for memory buffers) */
    int64_t rows;
    int64_t cols;       /* sum of the arrays' columns */
    ml_nparray *arrays;
    size_t n_arrays;
    ml_source src;
    void *zip;          /* zip_t * for .npz */
} ml_npmat;

/* Opens by content (zip magic -> .npz, \x93NUMPY -> .npy). Every array must be 2-D, C-order,
 * float16/32/64, with the same number of rows. */
int ml_npmat_open(ml_npmat *m, const char *path, ml_err *err);
/* The same over a caller-owned buffer that must outlive the ml_npmat. */
int ml_npmat_open_mem(ml_npmat *m, const char *name, const void *buf, size_t len, ml_err *err);
void ml_npmat_free(ml_npmat *m);

/* Copies rows[i] of the joined matrix into out[i * cols ...] as float32, for i < n_rows;
 * rows NULL means every row in order (n_rows must then be m->rows). Rows may repeat and come
 * in any order. Only the selected rows are kept: stored data is read at their offsets,
 * deflated data is streamed through a small buffer. */
int ml_npmat_read_rows(ml_npmat *m, const int64_t *rows, size_t n_rows, float *out,
                       ml_err *err);

/* Open + read + close: *out (n_rows or all rows, *n_cols) is malloc'd; *n_total_rows is the
 * file's row count. With rows given, a row index >= the file's rows is an error. */
int ml_npmat_read(const char *path, const int64_t *rows, size_t n_rows, float **out,
                  int64_t *n_total_rows, int64_t *n_cols, ml_err *err);

#endif
