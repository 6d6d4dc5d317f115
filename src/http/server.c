#include "http/server.h"

#include <stdlib.h>

#include "http/routes.h"

#define ML_CONNECTION_LIMIT 1024
#define ML_IDLE_TIMEOUT_SECONDS 60

static void hook_route(const char *method, const char *path, ml_dispatch *out) {
    ml_route_match(method, path, out);
}

static void hook_fast(void *app, int route, const ml_request *req, ml_response *resp) {
    ml_routes[route].fast(app, req, resp);
}

static void hook_slow(void *app, void *worker, int route, const ml_request *req,
                      ml_response *resp) {
    ml_routes[route].slow(app, worker, req, resp);
}

static int hook_offload(void *app, void (*fn)(void *arg, void *worker), void *arg) {
    ml_app *a = app;
    return ml_workers_submit(a->workers, ML_TASK_INTERACTIVE, fn, arg);
}

static void hook_completed(void *app, int route, int status, double seconds) {
    ml_app *a = app;
    ml_metrics_observe(a->metrics, route < 0 ? ml_n_routes : route, status, seconds);
}

int ml_server_start(ml_server *s, ml_app *app, ml_err *err) {
    s->app = app;
    const char **names = malloc(sizeof *names * (size_t)ml_n_routes);
    if (!names) return ml_errf(err, "out of memory");
    for (int i = 0; i < ml_n_routes; i++) names[i] = ml_routes[i].name;
    int rc = ml_app_start(app, names, ml_n_routes, err);
    free(names);
    if (rc != 0) return -1;

    char host[256];
    int port;
    if (ml_parse_listen(app->cfg->listen, host, sizeof host, &port, err) != 0) return -1;
    ml_http_options opt = {
        .host = host,
        .port = port,
        .threads = app->cfg->http_threads,
        .max_body_bytes = app->cfg->max_body_bytes,
        .connection_limit = ML_CONNECTION_LIMIT,
        .idle_timeout = ML_IDLE_TIMEOUT_SECONDS,
        .cors_origin = app->cfg->cors_origin,
    };
    ml_http_hooks hooks = {
        .app = app,
        .route = hook_route,
        .fast = hook_fast,
        .slow = hook_slow,
        .offload = hook_offload,
        .completed = hook_completed,
    };
    s->http = ml_http_start(&opt, &hooks, err);
    return s->http ? 0 : -1;
}

int ml_server_port(const ml_server *s) { return ml_http_port(s->http); }

void ml_server_stop(ml_server *s, double grace_seconds) {
    if (s->app && s->app->jobs) ml_jobs_cancel_all(s->app->jobs);
    ml_http_stop(s->http, grace_seconds);
    s->http = NULL;
}
