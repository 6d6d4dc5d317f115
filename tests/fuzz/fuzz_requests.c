/* libFuzzer target: request validation of the endpoints that take input, on the demo bundle.
 * The first byte picks the endpoint; the rest is the JSON body (POST) or the query string
 * (GET, split on '&' and '=' as libmicrohttpd would): the GET forms turn query arguments into
 * the body's JSON (request_fields.c), ?format / ?rows and Accept pick the view (format.c), and
 * If-None-Match / Origin go through the header logic (headers.c). Handlers run as the server runs them,
 * minus the network; heavy paths stay small because the demo model is tiny.
 * Built with ML_FUZZ_METALEARNER (fuzz_requests_ml) it serves the later generation instead
 * (tests/fixtures/metalearner: a MetaLearnerConfig transformer on an HDF5 backbone), whose
 * activations take magnitudes. */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/app.h"
#include "http/format.h"
#include "http/handlers/handlers.h"
#include "http/headers.h"
#include "http/routes.h"

#ifndef ML_SOURCE_ROOT
#define ML_SOURCE_ROOT "."
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ml_config cfg;
static ml_app app;
static ml_worker *worker;
static char cache_dir[512]; /* this run's own --cache-dir, removed at exit */

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_cache_dir(void) { nftw(cache_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    ml_err err;
    ml_config_defaults(&cfg);
    if (ml_config_load_file(&cfg, ML_SOURCE_ROOT "/config/demo.json", &err) != 0) abort();
    const char *tmp = getenv("TMPDIR");
    snprintf(cache_dir, sizeof cache_dir, "%s/metalign-fuzz-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(cache_dir)) abort();
    atexit(remove_cache_dir);
    free(cfg.cache_dir);
    cfg.cache_dir = strdup(cache_dir);
    free(cfg.human_url);
    cfg.human_url = strdup("http://127.0.0.1:9/unreachable");
    cfg.threads = 1;
#ifdef ML_FUZZ_METALEARNER
    const char *world[] = {"tf.pt", "backbone.h5", "targets.txt", "ids.txt"};
    char **slot[] = {&cfg.checkpoint, &cfg.backbone, &cfg.targets, &cfg.item_ids};
    for (int i = 0; i < 4; i++) {
        char path[1024];
        snprintf(path, sizeof path, ML_SOURCE_ROOT "/tests/fixtures/metalearner/%s", world[i]);
        free(*slot[i]);
        *slot[i] = strdup(path);
    }
    free(cfg.things_images);
    cfg.things_images = NULL;
#endif
    const char *names[64];
    for (int i = 0; i < ml_n_routes; i++) names[i] = ml_routes[i].name;
    if (ml_app_init(&app, &cfg, names, ml_n_routes, &err) != 0 || ml_app_load_data(&app, &err) != 0 ||
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
    switch (data[0] % 10) {
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
    case 6: /* the GET form of the learning curves: parse + cache lookup */
        req.method = "GET";
        req.body = "";
        req.body_len = 0;
        req.query = args;
        req.n_query = split_query(text, args, 32);
        ml_h_curves_fast(&app, &req, &resp);
        break;
    case 7: /* the GET form of the activations (a forward pass of at most a few items) */
        req.method = "GET";
        req.body = "";
        req.body_len = 0;
        req.query = args;
        req.n_query = split_query(text, args, 32);
        ml_h_activations(&app, worker, &req, &resp);
        break;
    case 8: { /* the headers: text as Accept, If-None-Match and Origin of a cached answer */
        req.method = "GET";
        req.body = "";
        req.body_len = 0;
        req.accept = text;
        req.if_none_match = text;
        req.origin = text;
        (void)ml_accept_prefers_csv(text);
        if (ml_etag_matches(text, "\"abc\"") < 0) abort();
        ml_h_healthz(&app, &req, &resp);
        ml_headers_finish(&req, size > 1 && data[1] & 1 ? text : "http://a.example", &resp);
        if (resp.status != 200 && resp.status != 304) abort();
        break;
    }
    case 9: { /* the replay's query: parse, the model check, a cache lookup (async dropped:
               * its job would fetch the human data) */
        req.method = "GET";
        req.body = "";
        req.body_len = 0;
        req.query = args;
        int n = split_query(text, args, 32), kept = 0;
        for (int i = 0; i < n; i++)
            if (strcmp(args[i].key, "async") != 0) args[kept++] = args[i];
        req.n_query = kept;
        ml_h_replay_fast(&app, &req, &resp);
        break;
    }
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
