/* .npy headers (format versions 1, 2 and 3). */
#ifndef METALIGN_IO_NPY_HEADER_H
#define METALIGN_IO_NPY_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "io/tensorset.h"
#include "metalign/err.h"


typedef struct ml_npy_header {
    ml_dtype dtype;    /* ML_F32, ML_F64 or ML_F16: other dtypes are refused */
    int big_endian;    /* descr '>f4' etc.: converted on reading */
    int ndim;
    int64_t shape[ML_MAX_NDIM];
    size_t data_offset; /* bytes of magic, version and header before the data */
} ml_npy_header;

/* Bytes to read before ml_npy_parse_header can tell the header's full length. */
#define ML_NPY_PREAMBLE 12
/* Longest header accepted (numpy itself refuses more than 10,000 bytes by default). */
#define ML_NPY_MAX_HEADER (1u << 20)

/* Parses a .npy preamble and header dict from buf (len bytes available). Returns 0 when the
 * header is complete and valid, 1 when it needs *need bytes in all (read more and call again),
 * -1 with a message when it is not a .npy file, is malformed, is Fortran-ordered or holds a
 * dtype other than float16/32/64. */
int ml_npy_parse_header(const void *buf, size_t len, ml_npy_header *h, size_t *need,
                        ml_err *err);

#endif
