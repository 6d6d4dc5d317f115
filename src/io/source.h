/* Where a file format's bytes come from: a regular file (read with pread, so readers on
 * several threads never share a file offset) or a caller-owned memory buffer (tests, fuzzing),
 * and the zip archive over either. The checkpoint and array readers share this one copy. */
#ifndef METALIGN_IO_SOURCE_H
#define METALIGN_IO_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <zip.h>

#include "metalign/err.h"

typedef struct ml_source {
    char *name;                /* the path, or the caller's label for a buffer (messages) */
    int fd;                    /* -1 for a buffer */
    const unsigned char *mem;  /* NULL for a file */
    int64_t size;
} ml_source;

/* Opens a regular file; what names it in messages ("the checkpoint"). */
int ml_source_open_file(ml_source *s, const char *path, const char *what, ml_err *err);
/* Wraps a buffer that must outlive the source. name may be NULL ("<memory>"). */
int ml_source_open_mem(ml_source *s, const char *name, const void *buf, size_t len,
                       ml_err *err);
void ml_source_free(ml_source *s);

/* Reads len bytes at byte offset off; a range outside the source is an error that says the
 * file is truncated or corrupt. */
int ml_source_read(const ml_source *s, int64_t off, int64_t len, void *dst, ml_err *err);

/* The source starts with a zip signature (local header, or the end record of an empty one). */
int ml_source_is_zip(const ml_source *s);

/* A new zip handle over the source (the caller zip_discards it). Each handle has its own file
 * description, so handles may be used on different threads at once. */
zip_t *ml_source_open_zip(const ml_source *s, ml_err *err);

#endif
