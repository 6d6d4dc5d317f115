#include "http/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "http/conns.h"
#include "http/headers.h"
#include "http/inflight.h"
#include "http/mhd_errors.h"
#include "http/send.h"
#include "util/blob.h"
#include "util/buf.h"

#define ML_HTTP_BUSY_RETRY_SECONDS 1     /* Retry-After when the answers in flight are full */
#define ML_HTTP_STOP_FLUSH_SECONDS 1.0   /* at a stop, for answers just resumed to go out */

struct ml_http {
    struct MHD_Daemon *daemon;
    ml_http_hooks hooks;
    ml_http_options opt;
    char *cors_origin;          /* copied from opt */
    int port;
    ml_conns *conns;
    ml_inflight *inflight;
    pthread_mutex_t defer_lock; /* a deferred request's on_cancel */
    _Atomic int in_flight;      /* requests from their request line to their completion */
    _Atomic int suspended;      /* requests waiting for a worker or another computation */
    _Atomic int cancel_all;     /* the shutdown's cancel phase */
    _Atomic int quiesced;
};

/* Everything one request needs across MHD's calls, from its request line to its end. */
typedef struct req_ctx {
    ml_http *http;
    struct MHD_Connection *conn;
    ml_conn *cs;
    struct timespec start;
    int dispatched;        /* the first call of the access handler has run */
    int nul_in_uri;        /* "%00" in the raw path or query */
    ml_dispatch dispatch;
    ml_buf body;
    int too_large;
    int waiting;           /* suspended at least once: the next call queues the answer */
    _Atomic int holds;     /* who still has to let go before it resumes (worker, deferral) */
    _Atomic int gone;      /* its client went away */
    void (*on_cancel)(void *arg); /* a deferred request's, under http->defer_lock */
    void *cancel_arg;
    void *scratch;         /* ml_request_scratch */
    char *path;
    char *param;           /* the path's last segment after a prefix route, without a '/' */
    ml_query_arg *query;
    int n_query;
    ml_request req;
    ml_response resp;
} req_ctx;

static double elapsed_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}

static double unix_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static req_ctx *ctx_of(const ml_request *req) { return req ? (req_ctx *)req->glue : NULL; }

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value) {
    (void)kind;
    req_ctx *ctx = cls;
    if (ctx->n_query >= ML_MAX_QUERY_ARGS) return MHD_NO; /* more than any endpoint takes */
    ml_query_arg *q = realloc(ctx->query, sizeof *q * (size_t)(ctx->n_query + 1));
    if (!q) return MHD_NO;
    ctx->query = q;
    q[ctx->n_query].key = strdup(key ? key : "");
    q[ctx->n_query].value = strdup(value ? value : "");
    if (!q[ctx->n_query].key || !q[ctx->n_query].value) {
        free(q[ctx->n_query].key);
        free(q[ctx->n_query].value);
        return MHD_NO;
    }
    ctx->n_query++;
    return MHD_YES;
}

static void free_ctx(req_ctx *ctx) {
    for (int i = 0; i < ctx->n_query; i++) {
        free(ctx->query[i].key);
        free(ctx->query[i].value);
    }
    free(ctx->query);
    free(ctx->path);
    free(ctx->param);
    free(ctx->scratch);
    ml_buf_free(&ctx->body);
    ml_response_reset(&ctx->resp);
    free(ctx);
}

/* The one place where an answer's headers are set (ETag, CORS and the like go here too). */
static void add_headers(req_ctx *ctx, struct MHD_Response *m) {
    ml_response *r = &ctx->resp;
    if (r->content_type) MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    if (r->allow[0]) MHD_add_response_header(m, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->location[0]) MHD_add_response_header(m, MHD_HTTP_HEADER_LOCATION, r->location);
    if (r->status == 503 && r->retry_after <= 0) r->retry_after = 1; /* every 503 says when */
    if (r->retry_after > 0) {
        char s[16];
        snprintf(s, sizeof s, "%d", r->retry_after);
        MHD_add_response_header(m, MHD_HTTP_HEADER_RETRY_AFTER, s);
    }
    for (int i = 0; i < r->n_headers; i++) /* http/headers.c: ETag, Vary, CORS */
        MHD_add_response_header(m, r->headers[i].name, r->headers[i].value);
    /* Clients may keep an answer but must revalidate it (ETag) before reusing it. */
    MHD_add_response_header(m, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
}

static enum MHD_Result queue(req_ctx *ctx) {
    ml_response *r = &ctx->resp;
    if (!r->status) ml_respond_error(r, 500, "internal", "the request was not answered");
    ml_headers_finish(&ctx->req, ctx->http->cors_origin, r); /* ETag, 304, CORS */
    size_t len = ml_response_len(r);
    struct MHD_Response *m = ml_send_response(ctx->http->inflight, r);
    if (!m) {
        ml_respond_unavailable(r, ML_HTTP_BUSY_RETRY_SECONDS, "busy_sending",
                               "answers of %zu MiB are waiting for clients that have not read "
                               "them (the limit, --max-inflight-bytes, is %zu MiB); this answer "
                               "of %zu bytes is ready: retry shortly",
                               ml_inflight_bytes(ctx->http->inflight, NULL) >> 20,
                               ml_inflight_max(ctx->http->inflight) >> 20, len);
        r->finished = 0; /* the 503's own headers (CORS) */
        r->n_headers = 0;
        ml_headers_finish(&ctx->req, ctx->http->cors_origin, r);
        m = ml_send_response(ctx->http->inflight, r);
        if (!m) return MHD_NO;
    }
    add_headers(ctx, m);
    enum MHD_Result rc = ml_mhd_queue(ctx->conn, (unsigned)r->status, m);
    MHD_destroy_response(m);
    return rc;
}

/* ---- suspension: a worker, a deferral ---- */

/* The last holder lets go: the connection is resumed and the next call queues the answer. */
static void let_go(req_ctx *ctx) {
    if (atomic_fetch_sub(&ctx->holds, 1) != 1) return;
    ml_http *h = ctx->http;
    ml_conn_suspended(ctx->cs, 0);
    atomic_fetch_sub(&h->suspended, 1);
    MHD_resume_connection(ctx->conn);
}

static void shutting_down(ml_response *resp) {
    ml_respond_unavailable(resp, 1, "shutting_down",
                           "the server is shutting down; retry on another replica or after "
                           "it restarts");
}

static void abandoned(ml_response *resp) {
    ml_respond_error(resp, 499, "client_gone", "the client went away; the work was stopped");
}

/* Set by ml_request_defer on the worker running the slow handler: after a deferral the
 * handler's thread must not touch the answer (another thread may be writing it). */
static __thread int deferred_here;

/* Runs on a compute worker. */
static void run_offloaded(void *arg, void *worker) {
    req_ctx *ctx = arg;
    ml_http *h = ctx->http;
    int why = ml_request_cancelled(&ctx->req);
    deferred_here = 0;
    if (why == ML_CANCEL_SHUTDOWN)
        shutting_down(&ctx->resp);
    else if (why == ML_CANCEL_CLIENT_GONE)
        abandoned(&ctx->resp);
    else
        h->hooks.slow(h->hooks.app, worker, ctx->dispatch.route, &ctx->req, &ctx->resp);
    if (!deferred_here) {
        if (!ctx->resp.status)
            ml_respond_error(&ctx->resp, 500, "internal", "the request was not answered");
        ml_headers_finish(&ctx->req, h->cors_origin, &ctx->resp); /* hashes here, not in I/O */
    }
    deferred_here = 0;
    let_go(ctx);
}

/* Hands the request to the workers with the connection suspended; 0, or -1 with resp set. */
static int offload(req_ctx *ctx) {
    ml_http *h = ctx->http;
    atomic_store(&ctx->holds, 1);
    ctx->waiting = 1;
    atomic_fetch_add(&h->suspended, 1);
    ml_conn_suspended(ctx->cs, 1);
    MHD_suspend_connection(ctx->conn);
    if (h->hooks.offload(h->hooks.app, run_offloaded, ctx, &ctx->resp) == 0) return 0;
    ml_conn_suspended(ctx->cs, 0);
    atomic_fetch_sub(&h->suspended, 1);
    MHD_resume_connection(ctx->conn);
    ctx->waiting = 0;
    return -1;
}

int ml_request_cancelled(const ml_request *req) {
    const req_ctx *ctx = ctx_of(req);
    if (!ctx) return ML_CANCEL_NONE;
    if (atomic_load(&ctx->http->cancel_all)) return ML_CANCEL_SHUTDOWN;
    return atomic_load(&ctx->gone) ? ML_CANCEL_CLIENT_GONE : ML_CANCEL_NONE;
}

void *ml_request_scratch(const ml_request *req, size_t size) {
    req_ctx *ctx = ctx_of(req);
    if (!ctx) return NULL;
    if (!ctx->scratch) ctx->scratch = calloc(1, size);
    return ctx->scratch;
}

void ml_request_defer(const ml_request *req, void (*on_cancel)(void *arg), void *arg) {
    req_ctx *ctx = ctx_of(req);
    deferred_here = 1;
    pthread_mutex_lock(&ctx->http->defer_lock);
    ctx->on_cancel = on_cancel;
    ctx->cancel_arg = arg;
    atomic_fetch_add(&ctx->holds, 1);
    pthread_mutex_unlock(&ctx->http->defer_lock);
    /* a cancel that came before the deferral */
    if (ml_request_cancelled(req) && on_cancel) {
        pthread_mutex_lock(&ctx->http->defer_lock);
        void (*fn)(void *) = ctx->on_cancel;
        ctx->on_cancel = NULL;
        pthread_mutex_unlock(&ctx->http->defer_lock);
        if (fn) fn(arg);
    }
}

static void undefer(req_ctx *ctx) {
    pthread_mutex_lock(&ctx->http->defer_lock);
    ctx->on_cancel = NULL;
    pthread_mutex_unlock(&ctx->http->defer_lock);
}

void ml_request_resume(const ml_request *req) {
    req_ctx *ctx = ctx_of(req);
    undefer(ctx);
    let_go(ctx);
}

void ml_request_rerun(const ml_request *req) {
    req_ctx *ctx = ctx_of(req);
    ml_http *h = ctx->http;
    undefer(ctx);
    /* the deferral's hold passes to the new task */
    if (h->hooks.offload(h->hooks.app, run_offloaded, ctx, &ctx->resp) != 0) let_go(ctx);
}

/* A suspended request's client went away, or the shutdown cancels it (under the connection
 * table's lock: ctx is valid). A computing request sees it through ml_request_cancelled; a
 * deferred one is told. */
static void cancel_request(void *req, void *arg) {
    (void)arg;
    req_ctx *ctx = req;
    atomic_store(&ctx->gone, 1);
    pthread_mutex_lock(&ctx->http->defer_lock);
    void (*fn)(void *) = ctx->on_cancel;
    void *a = ctx->cancel_arg;
    ctx->on_cancel = NULL;
    pthread_mutex_unlock(&ctx->http->defer_lock);
    if (fn) fn(a);
}

static void cancel_for_shutdown(void *req, void *arg) {
    (void)arg;
    req_ctx *ctx = req;
    pthread_mutex_lock(&ctx->http->defer_lock);
    void (*fn)(void *) = ctx->on_cancel;
    void *a = ctx->cancel_arg;
    ctx->on_cancel = NULL;
    pthread_mutex_unlock(&ctx->http->defer_lock);
    if (fn) fn(a);
}

/* ---- MHD's callbacks ---- */

/* The request line has arrived: the request's context starts here, so its time and its
 * deadline do, and the raw target can be checked before MHD decodes it. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
    ml_http *h = cls;
    req_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->http = h;
    ctx->conn = conn;
    ctx->cs = ml_conn_of(conn);
    clock_gettime(CLOCK_MONOTONIC, &ctx->start);
    ctx->req.received_at = unix_now();
    ctx->req.glue = ctx;
    ctx->dispatch.route = -1; /* "unmatched" in the metrics until routed */
    /* MHD decodes %00 to a NUL that silently cuts the path or the argument */
    ctx->nul_in_uri = uri && strstr(uri, "%00") != NULL;
    atomic_fetch_add(&h->in_flight, 1);
    ml_conn_begin(ctx->cs, ctx);
    return ctx;
}

static void prepare_request(req_ctx *ctx, const char *method) {
    ctx->req.method = method;
    ctx->req.path = ctx->path;
    if (ctx->dispatch.path_param && !ctx->param)
        ctx->param = strndup(ctx->dispatch.path_param, ctx->dispatch.path_param_len);
    ctx->req.path_param = ctx->param;
    ctx->req.query = ctx->query;
    ctx->req.n_query = ctx->n_query;
    if (!ctx->body.data) ml_buf_append(&ctx->body, "", 0);
    ctx->req.body = ctx->body.data ? ctx->body.data : "";
    ctx->req.body_len = ctx->body.len;
    ctx->req.accept = MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    ctx->req.if_none_match = MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND,
                                                         MHD_HTTP_HEADER_IF_NONE_MATCH);
    ctx->req.origin = MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, "Origin");
}

/* The first call: the headers are in. 1 when answered already. */
static int first_call(req_ctx *ctx, const char *url, const char *method) {
    ml_http *h = ctx->http;
    ctx->dispatched = 1;
    ctx->path = strdup(url);
    if (!ctx->path) {
        ml_respond_error(&ctx->resp, 500, "internal", "out of memory");
        return 1;
    }
    /* HEAD is GET without a body (MHD drops the body). */
    h->hooks.route(strcmp(method, "HEAD") == 0 ? "GET" : method, ctx->path, &ctx->dispatch);
    if (ctx->nul_in_uri) {
        ml_respond_error(&ctx->resp, 400, "nul_in_uri",
                         "the path or a query argument contains %%00 (an encoded NUL byte), "
                         "which no endpoint accepts; remove it");
        return 1;
    }
    const char *cl = MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > h->opt.max_body_bytes) {
        /* Answer before reading a body we would throw away. */
        ml_respond_error(&ctx->resp, 413, "body_too_large",
                         "the request body (%s bytes) is larger than the limit of %zu bytes; "
                         "send fewer items or raise --max-body-bytes",
                         cl, h->opt.max_body_bytes);
        return 1;
    }
    if ((cl && strtoull(cl, NULL, 10) > 0) ||
        MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        ml_conn_body(ctx->cs);
    return 0;
}

/* A piece of the body. MHD_YES to go on, MHD_NO when the answer was written here and the
 * connection must close (MHD cannot send an answer before it has read a chunked body). */
static enum MHD_Result body_piece(req_ctx *ctx, const char *data, size_t *size) {
    ml_http *h = ctx->http;
    if (ml_conn_claim_overdue(ctx->cs)) {
        char msg[200];
        snprintf(msg, sizeof msg, "the request took longer than %d s to arrive (--read-timeout); "
                                  "send it at once", h->opt.read_timeout);
        ctx->resp.status = 408;
        ml_http_write_error(ml_conn_fd(ctx->cs), 408, "request_timeout", msg, 0);
        return MHD_NO;
    }
    if (ctx->body.len + *size > h->opt.max_body_bytes) {
        char msg[200];
        snprintf(msg, sizeof msg, "the request body is larger than the limit of %zu bytes; send "
                                  "fewer items or raise --max-body-bytes", h->opt.max_body_bytes);
        ctx->resp.status = 413;
        if (ml_conn_claim_answer(ctx->cs))
            ml_http_write_error(ml_conn_fd(ctx->cs), 413, "body_too_large", msg, 0);
        return MHD_NO;
    }
    ml_buf_append(&ctx->body, data, *size);
    *size = 0;
    return MHD_YES;
}

static void answer(req_ctx *ctx, const char *method) {
    ml_http *h = ctx->http;
    ml_response *resp = &ctx->resp;
    MHD_get_connection_values(ctx->conn, MHD_GET_ARGUMENT_KIND, collect_arg, ctx);
    prepare_request(ctx, method);
    if (ctx->body.oom) {
        ml_respond_error(resp, 500, "internal", "out of memory reading the request body");
    } else if (ctx->dispatch.status == 404) {
        ml_respond_error(resp, 404, "not_found",
                         "no endpoint at %s; see the README for the API (GET /v1/info to start)",
                         ctx->path);
    } else if (ctx->dispatch.status == 405 && strcmp(method, "OPTIONS") == 0) {
        ml_headers_preflight(&ctx->req, ctx->dispatch.allow, h->cors_origin, resp);
    } else if (ctx->dispatch.status == 405) {
        ml_respond_error(resp, 405, "method_not_allowed", "%s is not allowed on %s; use %s",
                         method, ctx->path, ctx->dispatch.allow);
        snprintf(resp->allow, sizeof resp->allow, "%s", ctx->dispatch.allow);
    } else if (!h->hooks.admit || h->hooks.admit(h->hooks.app, ctx->dispatch.route, &ctx->req, resp) == 0) {
        if (ctx->dispatch.has_fast)
            h->hooks.fast(h->hooks.app, ctx->dispatch.route, &ctx->req, resp);
        if (!resp->status && ctx->dispatch.has_slow) offload(ctx);
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    req_ctx *ctx = *con_cls;
    if (!ctx && !(ctx = *con_cls = on_uri(cls, url, conn))) return MHD_NO;
    if (!ctx->dispatched) return first_call(ctx, url, method) ? queue(ctx) : MHD_YES;
    if (*upload_data_size) return body_piece(ctx, upload_data, upload_data_size);
    if (ctx->waiting) return queue(ctx);            /* resumed: the answer is ready */
    if (ctx->resp.status) return MHD_YES;            /* answered at the first call */
    ml_conn_received(ctx->cs);
    answer(ctx, method);
    return ctx->waiting ? MHD_YES : queue(ctx);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    (void)toe;
    ml_http *h = cls;
    req_ctx *ctx = *con_cls;
    if (!ctx) return;
    if (h->hooks.completed)
        h->hooks.completed(h->hooks.app, ctx->dispatch.route, ctx->resp.status ? ctx->resp.status : 500,
                           elapsed_since(&ctx->start));
    ml_conn_end(ctx->cs); /* under the table's lock: no sweep is using ctx after this */
    free_ctx(ctx);
    *con_cls = NULL;
    atomic_fetch_sub(&h->in_flight, 1);
}

static void free_http(ml_http *h) {
    free(h->cors_origin);
    ml_conns_free(h->conns);
    ml_inflight_free(h->inflight);
    pthread_mutex_destroy(&h->defer_lock);
    free(h);
}

ml_http *ml_http_start(const ml_http_options *opt, const ml_http_hooks *hooks, ml_err *err) {
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char port[16];
    snprintf(port, sizeof port, "%d", opt->port);
    int gai = getaddrinfo(opt->host, port, &hints, &ai);
    if (gai != 0)
        return ml_errp(err, "listen %s:%d: cannot resolve host: %s", opt->host, opt->port,
                       gai_strerror(gai));

    ml_http *h = calloc(1, sizeof *h);
    if (!h) {
        freeaddrinfo(ai);
        return ml_errp(err, "out of memory");
    }
    h->hooks = *hooks;
    h->opt = *opt;
    pthread_mutex_init(&h->defer_lock, NULL);
    if (opt->cors_origin && !(h->cors_origin = strdup(opt->cors_origin))) {
        freeaddrinfo(ai);
        free_http(h);
        return ml_errp(err, "out of memory");
    }
    ml_conns_options co = {.read_timeout = opt->read_timeout, .client_gone = cancel_request};
    h->conns = ml_conns_new(&co, err);
    h->inflight = ml_inflight_new(opt->max_inflight_bytes);
    if (!h->conns || !h->inflight) {
        freeaddrinfo(ai);
        if (h->conns) ml_errf(err, "out of memory");
        free_http(h);
        return NULL;
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)opt->port, NULL, NULL, on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, ml_mhd_log, NULL, /* first, so every message goes through it */
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(opt->threads > 0 ? opt->threads : 1),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)opt->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)opt->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opt->idle_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, ML_HTTP_CONNECTION_MEMORY,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
        MHD_OPTION_NOTIFY_CONNECTION, ml_conns_notify, h->conns,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->daemon) {
        free_http(h);
        return ml_errp(err, "listen %s:%d: cannot start the HTTP server (address in use, or "
                            "not an address of this machine?)", opt->host, opt->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : opt->port;
    return h;
}

int ml_http_port(const ml_http *h) { return h->port; }

void ml_http_stats(ml_http *h, ml_http_stats_t *out) {
    out->connections = ml_conns_count(h->conns);
    out->requests = atomic_load(&h->in_flight);
    out->suspended = atomic_load(&h->suspended);
    out->inflight_bytes = ml_inflight_bytes(h->inflight, &out->inflight_blobs);
}

static void nap_ms(int ms) {
    struct timespec nap = {0, (long)ms * 1000 * 1000};
    nanosleep(&nap, NULL);
}

int ml_http_drain(ml_http *h, double seconds) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (atomic_load(&h->in_flight) > 0 && elapsed_since(&t0) < seconds) nap_ms(10);
    return atomic_load(&h->in_flight);
}

int ml_http_stop(ml_http *h, double seconds) {
    if (!h) return 0;
    MHD_socket fd = MHD_quiesce_daemon(h->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    /* Everything still running is told to stop: computations poll ml_request_cancelled,
     * deferred requests are called; each answers 503 and is resumed. */
    atomic_store(&h->cancel_all, 1);
    ml_conns_each_suspended(h->conns, cancel_for_shutdown, NULL);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (atomic_load(&h->suspended) > 0 && elapsed_since(&t0) < seconds) nap_ms(10);
    int left = atomic_load(&h->suspended);
    if (left > 0) return left; /* MHD_stop_daemon would abort: the caller exits instead */
    /* A moment for the answers just resumed to be written before the connections close (a
     * client that does not read gets cut). */
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double flush = seconds - elapsed_since(&t0);
    if (flush > ML_HTTP_STOP_FLUSH_SECONDS) flush = ML_HTTP_STOP_FLUSH_SECONDS;
    while (atomic_load(&h->in_flight) > 0 && elapsed_since(&t1) < flush) nap_ms(10);
    MHD_stop_daemon(h->daemon);
    free_http(h);
    return 0;
}
