/* The endpoint table (like Redis's command table): one row per method and path drives the
 * dispatch, the Allow header, the metrics labels and the list at GET /. "fast" handlers run
 * in the HTTP I/O threads (health, cached answers) and may leave the answer to the "slow"
 * one, which runs on a compute worker (forward passes, simulations, downloads). */
#ifndef METALIGN_HTTP_ROUTES_H
#define METALIGN_HTTP_ROUTES_H

#include "engine/app.h"
#include "http/http.h"

typedef void (*ml_fast_handler)(ml_app *app, const ml_request *req, ml_response *resp);
typedef void (*ml_slow_handler)(ml_app *app, ml_worker *w, const ml_request *req,
                                ml_response *resp);

typedef struct ml_route {
    const char *method;
    const char *path;    /* exact, or a prefix when it ends with '/' (the rest is path_param) */
    const char *name;    /* metrics label */
    ml_fast_handler fast;
    ml_slow_handler slow;
} ml_route;

extern const ml_route ml_routes[];
extern const int ml_n_routes;

/* 1 for a route that answers while the model and data load (health, metrics: they are
 * listed by name in routes.c); every other one answers 503 + Retry-After until then. */
int ml_route_anytime(int route);

/* Fills out for method + path (ml_http_hooks.route). A trailing slash is forgiven on every
 * route ("/v1/info/", "/v1/jobs/<id>/"). */
void ml_route_match(const char *method, const char *path, ml_dispatch *out);

#endif
