/* One download with libcurl (src/io/fetch.c), and the codes that name what went wrong with an
 * upstream source (their snake_case names are API error codes). Every failure carries an
 * ml_fetch_code and a message in an ml_err that names the URL, the cause and what to do. */
#ifndef METALIGN_FETCH_H
#define METALIGN_FETCH_H

#include <stddef.h>

#include "metalign/err.h"
#include "metalign/sha256.h"

typedef enum ml_fetch_code {
    ML_FETCH_OK = 0,
    ML_FETCH_E_BAD_URL,    /* "upstream_bad_url": malformed, or a scheme not http(s) */
    ML_FETCH_E_DNS,        /* "upstream_dns": the host name does not resolve */
    ML_FETCH_E_REFUSED,    /* "upstream_refused": connection refused or host unreachable */
    ML_FETCH_E_TIMEOUT,    /* "upstream_timeout": connect or total timeout */
    ML_FETCH_E_TLS,        /* "upstream_tls": TLS handshake or certificate verification failed */
    ML_FETCH_E_STATUS,     /* "upstream_status": an HTTP status other than 200 (or 304) */
    ML_FETCH_E_REDIRECTS,  /* "upstream_redirects": too many redirects */
    ML_FETCH_E_TOO_LARGE,  /* "upstream_too_large": the body exceeds max_bytes */
    ML_FETCH_E_TRUNCATED,  /* "upstream_truncated": the connection closed before the body ended */
    ML_FETCH_E_NOT_CSV,    /* "upstream_not_csv": empty, binary, HTML/JSON, required columns
                            * missing from the header */
    ML_FETCH_E_BAD_CSV,    /* "upstream_bad_csv": the header is right but a row is malformed */
    ML_FETCH_E_NETWORK,    /* "upstream_error": any other transfer failure */
    ML_FETCH_E_CACHE_IO,   /* "cache_io": the cache folder cannot be written */
    ML_FETCH_E_INTERNAL,   /* "internal": out of memory */
    ML_FETCH_E_CANCELLED,  /* "cancelled": the cancel flag was raised (shutdown) */
    ML_FETCH_N_CODES
} ml_fetch_code;

/* The snake_case name, e.g. "upstream_timeout"; "ok" for ML_FETCH_OK. */
const char *ml_fetch_code_name(ml_fetch_code c);
/* 1 for an http:// or https:// URL (the only schemes fetched), else 0. */
int ml_fetch_url_allowed(const char *url);


typedef struct ml_fetch_request {
    const char *url;           /* http:// or https:// */
    const char *user_agent;
    long connect_timeout_ms;
    long total_timeout_ms;
    size_t max_bytes;          /* a longer body fails with ML_FETCH_E_TOO_LARGE */
    const char *etag;          /* sent as If-None-Match when non-empty */
    const char *last_modified; /* sent as If-Modified-Since when non-empty */
    const int *cancel;         /* non-zero (read atomically) aborts the transfer; may be NULL */
    /* Name resolution without DNS, for tests (the daemon leaves both empty): resolve is a
     * NULL-terminated list of "host:port:address" answers used instead of a lookup
     * (libcurl's CURLOPT_RESOLVE); with resolve_only set, every other host, IP literals
     * included, fails with ML_FETCH_E_DNS before any resolver is asked. */
    const char *const *resolve;
    int resolve_only;
} ml_fetch_request;

typedef struct ml_fetch_result {
    ml_fetch_code code;        /* ML_FETCH_OK for 200 (or 304 when not_modified) */
    int not_modified;          /* 304: nothing was written */
    long http_status;          /* final status (0 for file://) */
    size_t bytes;              /* body bytes written */
    char sha256[ML_SHA256_HEX_LEN];
    char etag[256];            /* validators of the final response ("" when absent or too long) */
    char last_modified[128];
    char content_type[128];
    char effective_url[1024];  /* after redirects */
} ml_fetch_result;

/* GETs rq->url following up to 10 redirects (http/https only), HTTPS verification on,
 * writing the body to fd (which the caller has opened, empty, for writing). 0 on 200 or 304;
 * -1 with res->code and err (naming the URL, the cause and curl's own words) otherwise.
 * Thread-safe once curl_global_init has run (ml_human_open does it). */
int ml_fetch_to_fd(const ml_fetch_request *rq, int fd, ml_fetch_result *res, ml_err *err);

#endif
