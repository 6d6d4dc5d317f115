#include "metalign/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* err->msg = a + ": " + b, cut to fit (a long path must not hide the problem entirely). */
static void join_message(ml_err *err, const char *a, const char *b) {
    size_t cap = sizeof err->msg - 1, n = 0;
    for (const char *parts[] = {a, ": ", b}, **p = parts; p < parts + 3; p++) {
        size_t len = strlen(*p);
        if (len > cap - n) len = cap - n;
        memcpy(err->msg + n, *p, len);
        n += len;
    }
    err->msg[n] = '\0';
}

int ml_errf(ml_err *err, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void *ml_errp(ml_err *err, const char *fmt, ...) {
    if (!err) return NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return NULL;
}

int ml_err_prefix(ml_err *err, const char *fmt, ...) {
    if (!err) return -1;
    char ctx[ML_ERR_MAX], old[ML_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    join_message(err, ctx, old);
    return -1;
}

int ml_err_errno(ml_err *err, const char *fmt, ...) {
    int saved = errno;
    if (!err) return -1;
    char ctx[ML_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    join_message(err, ctx, strerror(saved));
    return -1;
}
