#include "http/server.h"

#include <stdlib.h>

#include "http/handlers/curves.h"
#include "http/routes.h"

#define ML_NOT_READY_RETRY_SECONDS 1
#define ML_BUSY_RETRY_SECONDS 1
/* The shutdown cancels what is still running this long before the grace ends, so the
 * cancelled work (it stops between two forward passes) is answered within the grace. */
#define ML_SHUTDOWN_CANCEL_SECONDS 2.0

static void hook_route(const char *method, const char *path, ml_dispatch *out) {
    ml_route_match(method, path, out);
}

static int hook_admit(void *app, int route, const ml_request *req, ml_response *resp) {
    (void)req;
    if (ml_route_anytime(route) || ml_app_is_ready(app)) return 0;
    ml_respond_unavailable(resp, ML_NOT_READY_RETRY_SECONDS, "not_ready",
                           "the model and data are still loading; retry shortly (GET /readyz "
                           "answers 200 once they are)");
    return -1;
}

static void hook_fast(void *app, int route, const ml_request *req, ml_response *resp) {
    ml_routes[route].fast(app, req, resp);
}

static void hook_slow(void *app, void *worker, int route, const ml_request *req,
                      ml_response *resp) {
    ml_routes[route].slow(app, worker, req, resp);
}

static int hook_offload(void *app, void (*fn)(void *arg, void *worker), void *arg,
                        ml_response *resp) {
    ml_app *a = app;
    if (ml_app_is_stopping(a)) {
        ml_respond_unavailable(resp, ML_BUSY_RETRY_SECONDS, "shutting_down",
                               "the server is shutting down and takes no new heavy work; "
                               "retry on another replica or after it restarts");
        return -1;
    }
    if (ml_workers_submit(a->workers, ML_TASK_INTERACTIVE, fn, arg) == 0) return 0;
    ml_respond_unavailable(resp, ML_BUSY_RETRY_SECONDS, "busy",
                           "the server is saturated with heavy requests; retry shortly");
    return -1;
}

static void hook_completed(void *app, int route, int status, double seconds) {
    ml_app *a = app;
    ml_metrics_observe(a->metrics, route < 0 ? ml_n_routes : route, status, seconds);
}

int ml_server_start(ml_server *s, ml_app *app, const ml_config *cfg, ml_err *err) {
    s->app = app;
    const char **names = malloc(sizeof *names * (size_t)ml_n_routes);
    if (!names) return ml_errf(err, "out of memory");
    for (int i = 0; i < ml_n_routes; i++) names[i] = ml_routes[i].name;
    int rc = ml_app_init(app, cfg, names, ml_n_routes, err);
    free(names);
    if (rc != 0) return -1;
    ml_app_take_threads(app);
    /* the scale-out's merges render as a single daemon renders (engine/shared.h) */
    app->render_curves = ml_curves_render;

    char host[256];
    int port;
    if (ml_parse_listen(cfg->listen, host, sizeof host, &port, err) != 0) return -1;
    ml_http_options opt = {
        .host = host,
        .port = port,
        .threads = cfg->http_threads,
        .max_body_bytes = cfg->max_body_bytes,
        .max_connections = cfg->max_connections,
        .max_connections_per_ip = cfg->max_connections_per_ip,
        .read_timeout = cfg->read_timeout,
        .idle_timeout = cfg->idle_timeout,
        .max_inflight_bytes = cfg->max_inflight_bytes,
        .cors_origin = cfg->cors_origin,
    };
    ml_http_hooks hooks = {
        .app = app,
        .route = hook_route,
        .admit = hook_admit,
        .fast = hook_fast,
        .slow = hook_slow,
        .offload = hook_offload,
        .completed = hook_completed,
    };
    s->http = ml_http_start(&opt, &hooks, err);
    app->transport = s->http;
    return s->http ? 0 : -1;
}

int ml_server_port(const ml_server *s) { return ml_http_port(s->http); }

int ml_server_stop(ml_server *s, double grace_seconds) {
    ml_app_begin_shutdown(s->app);
    double cancel_margin = grace_seconds / 2 < ML_SHUTDOWN_CANCEL_SECONDS
                               ? grace_seconds / 2
                               : ML_SHUTDOWN_CANCEL_SECONDS;
    ml_http_drain(s->http, grace_seconds - cancel_margin);
    ml_app_cancel_work(s->app);
    int left = ml_http_stop(s->http, cancel_margin);
    if (left == 0) s->http = NULL;
    return left;
}
