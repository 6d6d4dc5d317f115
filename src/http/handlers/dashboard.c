/* GET /dashboard (the notebook's figures, drawn in the browser from the JSON endpoints), its
 * files under /dashboard/<name>, and GET /openapi.json. Everything is embedded at build time
 * (http/assets.h) and answered in the I/O threads. */
#include <stdio.h>
#include <string.h>

#include "http/assets.h"
#include "http/handlers/handlers.h"
#include "http/openapi.h"
#include "http/result_keys.h"

#define ML_DASHBOARD_PAGE "dashboard.html"
/* The page may load and call only its own origin: a stray CDN link could not even load. */
#define ML_DASHBOARD_CSP                                                                       \
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "        \
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"

static const char *const no_args[] = {NULL};

static void serve_asset(const char *name, const ml_request *req, ml_response *resp) {
    const char *ct = NULL;
    ml_blob *b = ml_asset_blob(name, &ct);
    if (!b) {
        ml_respond_error(resp, 404, "not_found",
                         "no dashboard file \"%s\"; the page is GET /dashboard", name);
        return;
    }
    ml_respond_blob(resp, 200, ct, b);
    ml_blob_unref(b);
    ml_respond_header(resp, "Content-Security-Policy", "%s", ML_DASHBOARD_CSP);
    ml_respond_header(resp, "X-Content-Type-Options", "nosniff");
    (void)req;
}

void ml_h_dashboard(ml_app *app, const ml_request *req, ml_response *resp) {
    (void)app;
    if (ml_request_check_args(req, no_args, resp) != 0 || ml_request_no_body(req, resp) != 0)
        return;
    size_t n = strlen(req->path);
    if (n > 1 && req->path[n - 1] == '/') { /* the page's relative URLs need /dashboard */
        snprintf(resp->location, sizeof resp->location, "/dashboard");
        ml_respond_error(resp, 301, "moved", "the dashboard is at /dashboard");
        return;
    }
    serve_asset(ML_DASHBOARD_PAGE, req, resp);
}

void ml_h_dashboard_asset(ml_app *app, const ml_request *req, ml_response *resp) {
    (void)app;
    if (ml_request_check_args(req, no_args, resp) != 0 || ml_request_no_body(req, resp) != 0)
        return;
    /* only the page's own files: the document is /openapi.json, the page /dashboard */
    const char *name = req->path_param;
    size_t n = strlen(name);
    int script_or_style = (n > 3 && !strcmp(name + n - 3, ".js")) ||
                          (n > 4 && !strcmp(name + n - 4, ".css"));
    if (!script_or_style) {
        ml_respond_error(resp, 404, "not_found",
                         "no dashboard file \"%s\"; the page is GET /dashboard", name);
        return;
    }
    serve_asset(name, req, resp);
}

void ml_h_openapi(ml_app *app, const ml_request *req, ml_response *resp) {
    if (ml_request_check_args(req, no_args, resp) != 0 || ml_request_no_body(req, resp) != 0)
        return;
    char key[ML_KEY_LEN];
    ml_key k;
    ml_key_begin(&k, "openapi");
    ml_key_finish(&k, key);
    if (ml_answer_from_cache(app, key, resp)) return;
    ml_buf out = {0};
    ml_err err = {{0}};
    if (ml_openapi_render(app, &out, &err) != 0) {
        ml_buf_free(&out);
        ml_respond_error(resp, 500, "internal", "%s", err.msg);
        return;
    }
    ml_blob *b = ml_blob_new(out.data, out.len);
    ml_buf_free(&out);
    if (!b) {
        ml_respond_error(resp, 500, "internal", "out of memory");
        return;
    }
    ml_lru_put_blob(app->results, key, b);
    ml_respond_blob(resp, 200, ML_CT_JSON, b);
    ml_blob_unref(b);
}
