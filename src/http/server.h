/* The running service: the app behind the HTTP glue. */
#ifndef METALIGN_HTTP_SERVER_H
#define METALIGN_HTTP_SERVER_H

#include "engine/app.h"
#include "http/http.h"

typedef struct ml_server {
    ml_app *app;
    ml_http *http;
} ml_server;

/* Initialises the app (ml_app_init: metrics labelled by the route table) and serves it on
 * cfg->listen at once: light routes answer while the caller loads the model (ml_app_load,
 * ml_app_start), the others answer 503 + Retry-After until the app is ready. */
int ml_server_start(ml_server *s, ml_app *app, const ml_config *cfg, ml_err *err);
int ml_server_port(const ml_server *s);
/* SIGTERM: /readyz turns 503 and jobs are cancelled; requests in flight get the grace, but
 * for its last ML_SHUTDOWN_CANCEL_SECONDS, to finish; then everything still running (a
 * simulation, a download) is cancelled, answered 503 and resumed, and the server stops. 0,
 * or the number of requests that did not stop in time (the server is then left running: the
 * caller exits without stopping it, which libmicrohttpd would refuse with an abort). */
int ml_server_stop(ml_server *s, double grace_seconds);

#endif
