/* The running service: the app behind the HTTP glue. */
#ifndef METALIGN_HTTP_SERVER_H
#define METALIGN_HTTP_SERVER_H

#include "engine/app.h"
#include "http/http.h"

typedef struct ml_server {
    ml_app *app;
    ml_http *http;
} ml_server;

/* Starts the app (metrics labelled by the route table, caches, workers) and serves it on
 * cfg->listen. */
int ml_server_start(ml_server *s, ml_app *app, ml_err *err);
int ml_server_port(const ml_server *s);
/* Cancels jobs, lets requests in flight finish (up to grace_seconds), stops. */
void ml_server_stop(ml_server *s, double grace_seconds);

#endif
