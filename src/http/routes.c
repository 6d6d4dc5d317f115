#include "http/routes.h"

#include "http/handlers/handlers.h"

#include <stdio.h>
#include <string.h>

const ml_route ml_routes[] = {
    {"GET", "/", "root", ml_h_root, NULL},
    {"GET", "/healthz", "healthz", ml_h_healthz, NULL},
    {"GET", "/readyz", "readyz", ml_h_readyz, NULL},
    {"GET", "/metrics", "metrics", ml_h_metrics, NULL},
    {"GET", "/v1/info", "info", ml_h_info, NULL},
    {"GET", "/v1/items", "items", ml_h_items, NULL},
    {"GET", "/dashboard", "dashboard", ml_h_dashboard, NULL},
    {"GET", "/dashboard/", "dashboard_asset", ml_h_dashboard_asset, NULL},
    {"GET", "/openapi.json", "openapi", ml_h_openapi, NULL},
    {"GET", "/v1/activations", "activations_get", NULL, ml_h_activations},
    {"POST", "/v1/activations", "activations", NULL, ml_h_activations},
    {"GET", "/v1/cka", "cka", ml_h_cka_fast, ml_h_cka},
    {"GET", "/v1/cka/matrix", "cka_matrix", ml_h_cka_matrix_fast, ml_h_cka_matrix},
    {"GET", "/v1/learning-curves", "learning_curves_get", ml_h_curves_fast, ml_h_curves},
    {"POST", "/v1/learning-curves", "learning_curves", ml_h_curves_fast, ml_h_curves},
    {"GET", "/v1/jobs/", "jobs_get", ml_h_job_get, NULL},
    {"DELETE", "/v1/jobs/", "jobs_delete", ml_h_job_delete, NULL},
    {"GET", "/v1/human/learning-curves", "human_learning_curves", NULL, ml_h_human_curves},
    {"POST", "/v1/human/refresh", "human_refresh", NULL, ml_h_human_refresh},
    {"GET", "/v1/human/replay", "human_replay", ml_h_replay_fast, ml_h_replay},
    {"GET", "/v1/compare/learning-curves", "compare_learning_curves", NULL, ml_h_compare},
};
const int ml_n_routes = (int)(sizeof ml_routes / sizeof ml_routes[0]);

/* What a load balancer or an operator asks while the model loads. */
static const char *const anytime_routes[] = {"root", "healthz", "readyz", "metrics", NULL};

int ml_route_anytime(int route) {
    for (const char *const *n = anytime_routes; *n; n++)
        if (strcmp(ml_routes[route].name, *n) == 0) return 1;
    return 0;
}

/* path without its trailing slash ("/v1/info/" is "/v1/info"; "/" stays "/") in len. */
static size_t trimmed_len(const char *path) {
    size_t n = strlen(path);
    return n > 1 && path[n - 1] == '/' ? n - 1 : n;
}

static int path_matches(const ml_route *r, const char *path, size_t len, const char **param,
                        size_t *param_len) {
    size_t n = strlen(r->path);
    if (n > 1 && r->path[n - 1] == '/') { /* a prefix route: one more path segment */
        if (len <= n || strncmp(path, r->path, n) != 0) return 0;
        const char *slash = memchr(path + n, '/', len - n);
        if (slash) return 0;
        *param = path + n;
        *param_len = len - n;
        return 1;
    }
    *param = NULL;
    *param_len = 0;
    return len == n && strncmp(path, r->path, n) == 0;
}

void ml_route_match(const char *method, const char *path, ml_dispatch *out) {
    memset(out, 0, sizeof *out);
    out->route = -1;
    out->status = 404;
    size_t len = trimmed_len(path);
    for (int i = 0; i < ml_n_routes; i++) {
        const char *param = NULL;
        size_t param_len = 0;
        if (!path_matches(&ml_routes[i], path, len, &param, &param_len)) continue;
        if (strcmp(ml_routes[i].method, method) == 0) {
            out->route = i;
            out->status = 0;
            out->path_param = param;
            out->path_param_len = param_len;
            out->allow[0] = '\0';
            out->has_fast = ml_routes[i].fast != NULL;
            out->has_slow = ml_routes[i].slow != NULL;
            return;
        }
        out->status = 405;
        size_t used = strlen(out->allow);
        if (!strstr(out->allow, ml_routes[i].method))
            snprintf(out->allow + used, sizeof out->allow - used, "%s%s", used ? ", " : "",
                     ml_routes[i].method);
    }
}
