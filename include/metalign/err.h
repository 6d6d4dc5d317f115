/* Error reporting: every fallible function takes an ml_err * and returns -1 (or NULL) after
 * filling it with a sentence that names the file or field, the problem and, where known, the fix.
 * Callers add context on the way up with ml_err_prefix ("model.pt: " + "data.pkl: ..."). */
#ifndef METALIGN_ERR_H
#define METALIGN_ERR_H

#include <stddef.h>

#define ML_ERR_MAX 1024

typedef struct ml_err {
    char msg[ML_ERR_MAX];
} ml_err;

/* Sets the message (printf-style) and returns -1, so callers can `return ml_errf(err, ...)`.
 * err may be NULL (the message is dropped). */
int ml_errf(ml_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The same for functions that return a pointer: sets the message and returns NULL. */
void *ml_errp(ml_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends context to an existing message: "<context>: <old message>". Returns -1. */
int ml_err_prefix(ml_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets the message from errno: "<context>: <strerror(errno)>". Returns -1. */
int ml_err_errno(ml_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
