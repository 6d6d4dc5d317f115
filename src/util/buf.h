/* A growable byte buffer for building answers (metrics text, JSON pieces, base64). */
#ifndef METALIGN_BUF_H
#define METALIGN_BUF_H

#include <stddef.h>

typedef struct ml_buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
    int oom;    /* an allocation failed; further appends are dropped */
} ml_buf;

void ml_buf_append(ml_buf *b, const void *data, size_t len);
void ml_buf_puts(ml_buf *b, const char *s);
void ml_buf_printf(ml_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Standard base64 (RFC 4648, with padding) of n bytes. */
void ml_buf_base64(ml_buf *b, const void *data, size_t n);

/* Hands the bytes to the caller (who frees them) and resets b. */
char *ml_buf_take(ml_buf *b, size_t *len);
void ml_buf_free(ml_buf *b);

#endif
