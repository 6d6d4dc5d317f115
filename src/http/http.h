/* HTTP glue over libmicrohttpd. The I/O threads (MHD's pool) parse requests, answer light
 * routes inline and hand heavy ones to the compute workers with the connection suspended, so
 * a long computation never holds up /healthz or a cached answer. Around that: connection
 * limits (in all and per address), a read deadline a trickle cannot extend (http/conns.h),
 * a bound on the bytes of answers waiting for their clients (http/inflight.h), JSON for
 * libmicrohttpd's own refusals (http/mhd_errors.h), requests that stop when their client
 * goes away or a shutdown begins, and a stop that answers and resumes every suspended
 * request before libmicrohttpd stops. */
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
    /* Before fast and slow (may be NULL): 0 to go on, or -1 with resp answered (e.g. 503 while
     * loading). */
    int (*admit)(void *app, int route, const ml_request *req, ml_response *resp);
    /* Runs on a compute worker (worker is that worker's context). */
    void (*slow)(void *app, void *worker, int route, const ml_request *req, ml_response *resp);
    /* Queues fn(arg, worker) on the compute workers; -1 with resp answered (503 and why)
     * when they cannot take it. */
    int (*offload)(void *app, void (*fn)(void *arg, void *worker), void *arg, ml_response *resp);
    /* Called once per finished request for metrics. */
    void (*completed)(void *app, int route, int status, double seconds);
} ml_http_hooks;

typedef struct ml_http_options {
    const char *host;
    int port;             /* 0: any free port (see ml_http_port) */
    int threads;          /* I/O threads */
    size_t max_body_bytes;
    int max_connections;
    int max_connections_per_ip; /* 0: no limit */
    int read_timeout;     /* seconds to deliver a whole request (http/conns.h) */
    int idle_timeout;     /* seconds a connection may move no byte */
    size_t max_inflight_bytes; /* http/inflight.h */
    const char *cors_origin; /* the one origin CORS allows (copied), or NULL: CORS off */
} ml_http_options;

ml_http *ml_http_start(const ml_http_options *opt, const ml_http_hooks *hooks, ml_err *err);
int ml_http_port(const ml_http *h);

typedef struct ml_http_stats_t {
    int connections, requests, suspended;
    size_t inflight_bytes;
    int inflight_blobs;
} ml_http_stats_t;
void ml_http_stats(ml_http *h, ml_http_stats_t *out);

/* Shutdown, in two steps. drain: serves on, waits up to seconds for the requests in flight to
 * end by themselves; returns how many are left. stop: stops accepting, cancels every request
 * still suspended (each answers 503 and is resumed), waits up to seconds for them, then stops
 * libmicrohttpd and frees h; 0, or the number still suspended, when h is left running
 * (stopping libmicrohttpd then would abort the process: the caller exits instead). */
int ml_http_drain(ml_http *h, double seconds);
int ml_http_stop(ml_http *h, double seconds);

/* ---- for handlers: requests that wait ---- */

/* Why long work should stop: ML_CANCEL_NONE, the client went away, or a shutdown. */
enum { ML_CANCEL_NONE, ML_CANCEL_CLIENT_GONE, ML_CANCEL_SHUTDOWN };
int ml_request_cancelled(const ml_request *req);
/* size bytes that live, zeroed at first use, as long as the request (state kept across
 * ml_request_rerun); NULL without the transport (a fuzz target) or out of memory. */
void *ml_request_scratch(const ml_request *req, size_t size);
/* From a slow handler only: the request stays suspended after the handler returns, until one
 * of the two calls below, from any thread. on_cancel(arg) runs, once, if the client goes
 * away or a shutdown begins meanwhile (on a thread of the transport, with the request still
 * valid); it must end the wait by one of them if it can. After ml_request_defer the handler
 * returns without touching req or resp again. */
void ml_request_defer(const ml_request *req, void (*on_cancel)(void *arg), void *arg);
/* The answer is in resp: send it. */
void ml_request_resume(const ml_request *req);
/* Runs the route's slow handler again (on a worker), e.g. once the computation it waited
 * for has put its answer in the cache. */
void ml_request_rerun(const ml_request *req);

#endif
