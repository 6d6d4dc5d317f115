/* HTTP glue over libmicrohttpd. The I/O threads (MHD's pool) parse requests, answer light
 * routes inline and hand heavy ones to the compute workers with the connection suspended, so
 * a long computation never holds up /healthz or a cached answer. */
#ifndef METALIGN_HTTP_HTTP_H
#define METALIGN_HTTP_HTTP_H

#include <stddef.h>

#include "http/request.h"
#include "http/response.h"
#include "metalign/err.h"

typedef struct ml_http ml_http;

/* What the router gives the glue for one request. */
typedef struct ml_dispatch {
    int route;        /* index for metrics; -1 when no route matched */
    int status;       /* 404 / 405 when no route matched, else 0 */
    char allow[64];
    const char *path_param; /* points into the path; path_param_len bytes */
    size_t path_param_len;
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
    const char *cors_origin; /* the one origin CORS allows (copied), or NULL: CORS off */
} ml_http_options;

ml_http *ml_http_start(const ml_http_options *opt, const ml_http_hooks *hooks, ml_err *err);
int ml_http_port(const ml_http *h);
/* Stops accepting, waits up to grace_seconds for requests in flight to be answered, stops. */
void ml_http_stop(ml_http *h, double grace_seconds);

#endif
