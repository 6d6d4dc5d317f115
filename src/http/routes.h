/* The endpoint table and the handlers behind it. Each handler is a small function over the
 * app; "fast" ones run in the HTTP I/O threads (health, cached answers), "slow" ones on a
 * compute worker (forward passes, simulations, downloads). */
#ifndef METALIGN_ROUTES_H
#define METALIGN_ROUTES_H

#include "engine/app.h"
#include "util/buf.h"
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

/* Fills out for method + path (ml_http_hooks.route). */
void ml_route_match(const char *method, const char *path, ml_dispatch *out);

/* handlers_basic.c */
void ml_h_root(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_healthz(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_readyz(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_info(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_items(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_metrics(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_job_get(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_job_delete(ml_app *app, const ml_request *req, ml_response *resp);

/* handlers_model.c */
void ml_h_activations(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);
void ml_h_cka_fast(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_cka(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);
void ml_h_cka_matrix_fast(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_cka_matrix(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);

/* handlers_curves.c */
void ml_h_curves_fast(ml_app *app, const ml_request *req, ml_response *resp);
void ml_h_curves(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);

/* handlers_human.c */
void ml_h_human_curves(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);
void ml_h_human_refresh(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);
void ml_h_compare(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp);

/* The human-data part of /v1/info and /metrics. */
json_t *ml_human_info_json(ml_app *app);
void ml_human_metrics(ml_app *app, ml_buf *out);

/* Shared by handlers: a blob answer (serialised JSON) as the response body. */
void ml_respond_blob(ml_response *resp, int status, const ml_blob *b);

#endif
