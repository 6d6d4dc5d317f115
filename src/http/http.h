/* HTTP glue over libmicrohttpd. The I/O threads (MHD's pool) parse requests, answer light
 * routes inline and hand heavy ones to the compute workers with the connection suspended, so
 * a long computation never holds up /healthz or a cached answer. */
#ifndef METALIGN_HTTP_H
#define METALIGN_HTTP_H

#include <jansson.h>
#include <stddef.h>

#include "metalign/err.h"

typedef struct ml_query_arg {
    char *key;
    char *value; /* "" when the argument has no '=' */
} ml_query_arg;

typedef struct ml_request {
    const char *method;
    const char *path;       /* decoded path without the query */
    const char *path_param; /* the rest after a prefix route ("/v1/jobs/<id>"), else NULL */
    const ml_query_arg *query;
    int n_query;
    const char *body;       /* NUL-terminated; "" when there is none */
    size_t body_len;
} ml_request;

typedef struct ml_response {
    int status;               /* 0: not answered yet */
    char *body;               /* malloc'd; owned by the response */
    size_t body_len;
    const char *content_type; /* static string */
    char allow[64];           /* Allow header for 405 */
    char location[128];       /* Location header (202 answers) */
} ml_response;

/* Serialises doc (the reference is stolen) as compact JSON. Reals are printed with 17
 * significant digits unless precision (1..17) says otherwise. */
void ml_respond_json(ml_response *r, int status, json_t *doc);
void ml_respond_json_prec(ml_response *r, int status, json_t *doc, int precision);
/* {"error": {"code": code, "message": ...}} */
void ml_respond_error(ml_response *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Takes ownership of body (malloc'd). */
void ml_respond_raw(ml_response *r, int status, const char *content_type, char *body, size_t len);
void ml_response_reset(ml_response *r);

/* The value of a query argument, or NULL. */
const char *ml_request_arg(const ml_request *r, const char *key);
/* 0 when every query argument is one of the NULL-terminated names; else a 400 answer naming
 * the unknown argument and the accepted ones, and -1. */
int ml_request_check_args(const ml_request *r, const char *const *allowed, ml_response *resp);

typedef struct ml_http ml_http;

/* What the router gives the glue for one request. */
typedef struct ml_dispatch {
    int route;        /* index for metrics; -1 when no route matched */
    int status;       /* 404 / 405 when no route matched, else 0 */
    char allow[64];
    const char *path_param;
    int has_fast;     /* hooks.fast answers in the I/O thread (or leaves status 0) */
    int has_slow;     /* hooks.slow answers on a compute worker */
} ml_dispatch;

typedef struct ml_http_hooks {
    void *app;
    /* Matches method + path. */
    void (*route)(const char *method, const char *path, ml_dispatch *out);
    /* Runs in the I/O thread; may leave resp->status 0 to ask for the slow handler. */
    void (*fast)(void *app, int route, const ml_request *req, ml_response *resp);
    /* Runs on a compute worker (worker is that worker's context). */
    void (*slow)(void *app, void *worker, int route, const ml_request *req, ml_response *resp);
    /* Queues fn(arg, worker) on the compute workers; returns -1 when they are saturated. */
    int (*offload)(void *app, void (*fn)(void *arg, void *worker), void *arg);
    /* Called once per finished request for metrics. */
    void (*completed)(void *app, int route, int status, double seconds);
} ml_http_hooks;

typedef struct ml_http_options {
    const char *host;
    int port;             /* 0: any free port (see ml_http_port) */
    int threads;          /* I/O threads */
    size_t max_body_bytes;
    int connection_limit;
    int idle_timeout;     /* seconds a keep-alive connection may sit idle */
} ml_http_options;

ml_http *ml_http_start(const ml_http_options *opt, const ml_http_hooks *hooks, ml_err *err);
int ml_http_port(const ml_http *h);
/* Stops accepting, waits up to grace_seconds for requests in flight to be answered, stops. */
void ml_http_stop(ml_http *h, double grace_seconds);
int ml_http_in_flight(const ml_http *h);

#endif
