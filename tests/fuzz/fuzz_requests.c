/* libFuzzer target: request validation of the endpoints that take input, on the demo bundle.
 * The first byte picks the endpoint; the rest is the JSON body (POST) or the query string
 * (GET, split on '&' and '=' as libmicrohttpd would). Handlers run as the server runs them,
 * minus the network; heavy paths stay small because the demo model is tiny. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/app.h"
#include "http/handlers/handlers.h"
#include "http/routes.h"

#ifndef ML_SOURCE_ROOT
#define ML_SOURCE_ROOT "."
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ml_config cfg;
static ml_app app;
static ml_worker *worker;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    ml_err err;
    ml_config_defaults(&cfg);
    if (ml_config_load_file(&cfg, ML_SOURCE_ROOT "/config/demo.json", &err) != 0) abort();
    free(cfg.cache_dir);
    cfg.cache_dir = strdup("/tmp/metalign-fuzz-cache");
    free(cfg.human_url);
    cfg.human_url = strdup("http://127.0.0.1:9/unreachable");
    cfg.threads = 1;
    const char *names[64];
    for (int i = 0; i < ml_n_routes; i++) names[i] = ml_routes[i].name;
    if (ml_app_init(&app, &cfg, names, ml_n_routes, &err) != 0 || ml_app_load(&app, &err) != 0 ||
        ml_app_start(&app, &err) != 0)
        abort();
    worker = calloc(1, sizeof *worker);
    worker->app = &app;
    if (!ml_app_cka(&app, worker, &err)) abort();
    return 0;
}

/* "a=1&b&c=x" into query args (modified in place). */
static int split_query(char *q, ml_query_arg *args, int max) {
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(q, "&", &save); tok && n < max;
         tok = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(tok, '=');
        if (eq) *eq = '\0';
        args[n].key = tok;
        args[n].value = eq ? eq + 1 : "";
        n++;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) return 0;
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    ml_query_arg args[32];
    ml_request req = {.body = text, .body_len = size - 1};
    ml_response resp = {0};
    switch (data[0] % 6) {
    case 0:
        req.method = "POST";
        ml_h_activations(&app, worker, &req, &resp);
        break;
    case 1: /* parse + cache lookup only: a miss leaves the simulation to the slow path */
        req.method = "POST";
        ml_h_curves_fast(&app, &req, &resp);
        break;
    case 2:
        req.method = "GET";
        req.body = "";
        req.body_len = 0;
        req.query = args;
        req.n_query = split_query(text, args, 32);
        ml_h_cka_fast(&app, &req, &resp); /* prepared at start: computes unless ci=true */
        break;
    case 3:
        req.method = "GET";
        req.body = "";
        req.body_len = 0;
        req.query = args;
        req.n_query = split_query(text, args, 32);
        ml_h_items(&app, &req, &resp);
        break;
    case 4:
        req.method = "GET";
        req.path_param = text;
        ml_h_job_get(&app, &req, &resp);
        break;
    default: {
        ml_dispatch dsp;
        ml_route_match(size > 1 && data[1] & 1 ? "POST" : "GET", text, &dsp);
        break;
    }
    }
    if (resp.status && (resp.status < 200 || resp.status > 599)) abort();
    size_t len = 0;
    const char *body = ml_response_data(&resp, &len);
    if (resp.status && len && resp.content_type && strstr(resp.content_type, "json")) {
        json_t *doc = json_loadb(body, len, 0, NULL);
        if (!doc) abort(); /* every answer is valid JSON */
        json_decref(doc);
    }
    ml_response_reset(&resp);
    free(text);
    return 0;
}
