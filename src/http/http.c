#include "http/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http/headers.h"
#include "util/blob.h"
#include "util/buf.h"

struct ml_http {
    struct MHD_Daemon *daemon;
    ml_http_hooks hooks;
    size_t max_body;
    char *cors_origin;
    int port;
    _Atomic int in_flight;
};

/* Everything one request needs across MHD's calls to the access handler. */
typedef struct req_ctx {
    ml_http *http;
    struct MHD_Connection *conn;
    struct timespec start;
    ml_dispatch dispatch;
    ml_buf body;
    int too_large;
    _Atomic int offloaded; /* handed to a worker; the resumed call queues the answer */
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
    ml_buf_free(&ctx->body);
    ml_response_reset(&ctx->resp);
    free(ctx);
}

static void release_blob(void *blob) { ml_blob_unref(blob); }

static enum MHD_Result queue(req_ctx *ctx) {
    ml_response *r = &ctx->resp;
    if (!r->status) ml_respond_error(r, 500, "internal", "the request was not answered");
    ml_headers_finish(&ctx->req, ctx->http->cors_origin, r);
    struct MHD_Response *m;
    if (r->blob) {
        /* The cached bytes themselves: MHD drops our reference once the client has them. */
        m = MHD_create_response_from_buffer_with_free_callback_cls(
            r->blob->len, r->blob->data, release_blob, r->blob);
        if (!m) return MHD_NO;
        r->blob = NULL;
    } else {
        m = MHD_create_response_from_buffer(r->body_len, r->body ? r->body : (char *)"",
                                            r->body ? MHD_RESPMEM_MUST_FREE
                                                    : MHD_RESPMEM_PERSISTENT);
        if (!m) return MHD_NO;
        r->body = NULL; /* MHD frees it now */
        r->body_len = 0;
    }
    if (r->content_type) MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    if (r->allow[0]) MHD_add_response_header(m, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->location[0]) MHD_add_response_header(m, MHD_HTTP_HEADER_LOCATION, r->location);
    if (r->retry_after > 0) {
        char s[16];
        snprintf(s, sizeof s, "%d", r->retry_after);
        MHD_add_response_header(m, MHD_HTTP_HEADER_RETRY_AFTER, s);
    }
    for (int i = 0; i < r->n_headers; i++)
        MHD_add_response_header(m, r->headers[i].name, r->headers[i].value);
    /* Clients may keep an answer but must revalidate it (ETag) before reusing it. */
    MHD_add_response_header(m, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result rc = MHD_queue_response(ctx->conn, (unsigned)r->status, m);
    MHD_destroy_response(m);
    return rc;
}

/* Runs on a compute worker. */
static void run_offloaded(void *arg, void *worker) {
    req_ctx *ctx = arg;
    ctx->http->hooks.slow(ctx->http->hooks.app, worker, ctx->dispatch.route, &ctx->req, &ctx->resp);
    if (!ctx->resp.status) ml_respond_error(&ctx->resp, 500, "internal", "the request was not answered");
    ml_headers_finish(&ctx->req, ctx->http->cors_origin, &ctx->resp); /* hashes here, not in I/O */
    MHD_resume_connection(ctx->conn);
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    ml_http *h = cls;
    req_ctx *ctx = *con_cls;

    if (!ctx) {
        ctx = calloc(1, sizeof *ctx);
        if (!ctx) return MHD_NO;
        ctx->http = h;
        ctx->conn = conn;
        clock_gettime(CLOCK_MONOTONIC, &ctx->start);
        ctx->path = strdup(url);
        if (!ctx->path) {
            free(ctx);
            return MHD_NO;
        }
        *con_cls = ctx;
        atomic_fetch_add(&h->in_flight, 1);
        /* HEAD is GET without a body (MHD drops the body). */
        h->hooks.route(strcmp(method, "HEAD") == 0 ? "GET" : method, ctx->path, &ctx->dispatch);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > h->max_body) {
            /* Answer before reading a body we would throw away. */
            ml_respond_error(&ctx->resp, 413, "body_too_large",
                             "the request body (%s bytes) is larger than the limit of %zu "
                             "bytes; send fewer items or raise --max-body-bytes",
                             cl, h->max_body);
            return queue(ctx);
        }
        return MHD_YES;
    }

    if (*upload_data_size) {
        if (!ctx->too_large) {
            if (ctx->body.len + *upload_data_size > h->max_body) {
                ctx->too_large = 1;
                ml_buf_free(&ctx->body);
            } else {
                ml_buf_append(&ctx->body, upload_data, *upload_data_size);
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (ctx->resp.status && !atomic_load(&ctx->offloaded)) return MHD_YES; /* answered early */
    if (atomic_load(&ctx->offloaded)) return queue(ctx);                  /* resumed */

    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, ctx);
    prepare_request(ctx, method);
    if (ctx->too_large || ctx->body.oom) {
        ml_respond_error(&ctx->resp, 413, "body_too_large",
                         "the request body is larger than the limit of %zu bytes; send fewer "
                         "items or raise --max-body-bytes", h->max_body);
    } else if (ctx->dispatch.status == 404) {
        ml_respond_error(&ctx->resp, 404, "not_found",
                         "no endpoint at %s; see the README for the API (GET /v1/info to start)",
                         ctx->path);
    } else if (ctx->dispatch.status == 405 && strcmp(method, "OPTIONS") == 0) {
        ml_headers_preflight(&ctx->req, ctx->dispatch.allow, h->cors_origin, &ctx->resp);
    } else if (ctx->dispatch.status == 405) {
        ml_respond_error(&ctx->resp, 405, "method_not_allowed",
                         "%s is not allowed on %s; use %s", method, ctx->path,
                         ctx->dispatch.allow);
        snprintf(ctx->resp.allow, sizeof ctx->resp.allow, "%s", ctx->dispatch.allow);
    } else {
        if (ctx->dispatch.has_fast)
            h->hooks.fast(h->hooks.app, ctx->dispatch.route, &ctx->req, &ctx->resp);
        if (!ctx->resp.status && ctx->dispatch.has_slow) {
            atomic_store(&ctx->offloaded, 1);
            MHD_suspend_connection(conn);
            if (h->hooks.offload(h->hooks.app, run_offloaded, ctx) == 0) return MHD_YES;
            MHD_resume_connection(conn);
            atomic_store(&ctx->offloaded, 0);
            ml_respond_unavailable(&ctx->resp, 1, "busy",
                                   "the server is saturated with heavy requests; retry shortly");
        }
    }
    return queue(ctx);
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
    free_ctx(ctx);
    *con_cls = NULL;
    atomic_fetch_sub(&h->in_flight, 1);
}

/* libmicrohttpd's own format strings, passed through. */
__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt,
                                                          va_list ap) {
    (void)cls;
    fputs("metalignd: http: ", stderr);
    vfprintf(stderr, fmt, ap);
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
    h->max_body = opt->max_body_bytes;
    if (opt->cors_origin && !(h->cors_origin = strdup(opt->cors_origin))) {
        free(h);
        freeaddrinfo(ai);
        return ml_errp(err, "out of memory");
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)opt->port, NULL, NULL, on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first, so every message goes through it */
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(opt->threads > 0 ? opt->threads : 1),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(opt->connection_limit > 0 ? opt->connection_limit : 1024),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(opt->idle_timeout > 0 ? opt->idle_timeout : 60),
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->daemon) {
        free(h->cors_origin);
        free(h);
        return ml_errp(err, "listen %s:%d: cannot start the HTTP server (address in use, or "
                            "not an address of this machine?)", opt->host, opt->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : opt->port;
    return h;
}

int ml_http_port(const ml_http *h) { return h->port; }

void ml_http_stop(ml_http *h, double grace_seconds) {
    if (!h) return;
    MHD_socket fd = MHD_quiesce_daemon(h->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (atomic_load(&h->in_flight) > 0 && elapsed_since(&t0) < grace_seconds) {
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    MHD_stop_daemon(h->daemon);
    free(h->cors_origin);
    free(h);
}
