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
#include "util/csv_writer.h"
#include "util/json_writer.h"
#include "metalign/sha256.h"

#define ML_CT_JSON "application/json"
#define ML_CT_CSV "text/csv; charset=utf-8"
#define ML_CT_TEXT "text/plain; charset=utf-8"
#define ML_CT_HTML "text/html; charset=utf-8"

#define ML_RESP_MAX_HEADERS 8    /* headers an answer adds beyond its own fields */
#define ML_HEADER_VALUE_MAX 256  /* longest such value (an origin, a list of methods) */
#define ML_ETAG_LEN (ML_SHA256_HEX_LEN + 2) /* "<64 hex digits>" with its quotes, + NUL */

/* A header the transport adds as it is (http/headers.c sets ETag, Vary and CORS ones). */
typedef struct ml_header {
    const char *name;         /* static string */
    char value[ML_HEADER_VALUE_MAX];
} ml_header;

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
    char etag[ML_ETAG_LEN];   /* strong validator of the body; "" until http/headers.c sets it */
    int finished;             /* http/headers.c has run on this answer */
    int n_headers;
    ml_header headers[ML_RESP_MAX_HEADERS];
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
/* Adds a header (dropped when ML_RESP_MAX_HEADERS are already set). */
void ml_respond_header(ml_response *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The table a CSV writer produced (text/csv); a ragged table becomes a 500. */
void ml_respond_csv(ml_response *r, int status, ml_csv *c);
/* The error document {"error": {"code", "message"}} as malloc'd text (*len bytes), or NULL
 * when out of memory: the one place its shape is written. */
char *ml_error_json(const char *code, const char *message, size_t *len);
/* {"error": {"code": code, "message": ...}} */
void ml_respond_error(ml_response *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 503 with Retry-After. */
void ml_respond_unavailable(ml_response *r, int retry_after, const char *code, const char *fmt,
                            ...) __attribute__((format(printf, 4, 5)));

#endif
