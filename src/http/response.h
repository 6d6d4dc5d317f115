/* An answer being built: status, headers and a body that is either bytes the response owns, a
 * reference to a shared blob (a cached answer), which libmicrohttpd sends without a copy and
 * releases once the client has read it, or a shared blob between owned bytes (a job's state
 * around its cached result). Every error is {"error": {"code", "message"}}; every 503
 * carries Retry-After. */
#ifndef METALIGN_HTTP_RESPONSE_H
#define METALIGN_HTTP_RESPONSE_H

#include <jansson.h>
#include <stddef.h>

#include "util/blob.h"
#include "util/buf.h"
#include "util/json_writer.h"

#define ML_CT_JSON "application/json"
#define ML_CT_CSV "text/csv; charset=utf-8"
#define ML_CT_TEXT "text/plain; charset=utf-8"

typedef struct ml_response {
    int status;               /* 0: not answered yet */
    char *body;               /* owned bytes (before the blob when there is one), or NULL */
    size_t body_len;
    ml_blob *blob;            /* a shared body (one reference), or NULL */
    char *suffix;             /* owned bytes after the blob, or NULL */
    size_t suffix_len;
    const char *content_type; /* static string */
    char allow[64];           /* Allow header (405) */
    char location[128];       /* Location header (202) */
    int retry_after;          /* seconds; > 0 adds Retry-After (503) */
} ml_response;

void ml_response_reset(ml_response *r);
/* The body's bytes when they are in one piece (not a wrapped blob), else NULL. */
const char *ml_response_data(const ml_response *r, size_t *len);

/* Takes ownership of body (malloc'd). */
void ml_respond_raw(ml_response *r, int status, const char *content_type, char *body, size_t len);
/* Takes the bytes of out (which is reset); 500 when out ran out of memory. */
void ml_respond_buf(ml_response *r, int status, const char *content_type, ml_buf *out);
/* A new reference to b as the body. */
void ml_respond_blob(ml_response *r, int status, const char *content_type, ml_blob *b);
/* prefix, then b (a new reference), then suffix: the prefix and suffix buffers are taken
 * (their ml_buf reset); 500 when either ran out of memory. */
void ml_respond_wrapped(ml_response *r, int status, const char *content_type, ml_buf *prefix,
                        ml_blob *b, ml_buf *suffix);
/* The body's length, however it is held. */
size_t ml_response_len(const ml_response *r);
/* doc (the reference is stolen) written by the one JSON writer (util/json_writer.h). */
void ml_respond_json(ml_response *r, int status, json_t *doc);
/* What a writer produced into out; a value JSON cannot hold becomes a 500 that says so. */
void ml_respond_writer(ml_response *r, int status, ml_jw *w);
/* {"error": {"code": code, "message": ...}} */
void ml_respond_error(ml_response *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 503 with Retry-After. */
void ml_respond_unavailable(ml_response *r, int retry_after, const char *code, const char *fmt,
                            ...) __attribute__((format(printf, 4, 5)));

#endif
