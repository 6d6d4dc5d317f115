#include "engine/metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Statuses get their own series; anything else is counted under its class ("2xx"...). */
static const int tracked_status[] = {200, 202, 204, 304, 400, 404, 405, 409, 413, 500, 503};
#define N_STATUS ((int)(sizeof tracked_status / sizeof tracked_status[0]) + 5) /* + 1xx..5xx */

static const double bucket_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define N_BUCKETS ((int)(sizeof bucket_le / sizeof bucket_le[0]))

static const struct {
    const char *name, *help;
} counter_info[ML_CNT_COUNT] = {
    [ML_CNT_ACTS_CACHE_HIT] = {"activations_cache_hits", "All-item activations served from memory."},
    [ML_CNT_ACTS_CACHE_MISS] = {"activations_cache_misses", "All-item activation computations."},
    [ML_CNT_CKA_CACHE_HIT] = {"cka_cache_hits", "CKA answers served from memory."},
    [ML_CNT_CKA_CACHE_MISS] = {"cka_cache_misses", "CKA answers computed."},
    [ML_CNT_CURVES_CACHE_HIT] = {"curves_cache_hits", "Learning-curve requests answered from the result cache."},
    [ML_CNT_CURVES_CACHE_MISS] = {"curves_cache_misses", "Learning-curve requests simulated."},
    [ML_CNT_JOBS_SUBMITTED] = {"jobs_submitted", "Jobs accepted."},
    [ML_CNT_JOBS_DONE] = {"jobs_done", "Jobs finished successfully."},
    [ML_CNT_JOBS_FAILED] = {"jobs_failed", "Jobs that failed."},
    [ML_CNT_JOBS_CANCELLED] = {"jobs_cancelled", "Jobs cancelled."},
    [ML_CNT_JOBS_REJECTED] = {"jobs_rejected", "Jobs refused because the job table was full."},
    [ML_CNT_EPISODES] = {"episodes_simulated", "Episodes run through the model."},
};

typedef struct route_stats {
    _Atomic uint64_t by_status[N_STATUS];
    _Atomic uint64_t buckets[N_BUCKETS + 1]; /* last: +Inf */
    _Atomic uint64_t sum_us;
} route_stats;

struct ml_metrics {
    int n_routes;
    const char **route_names; /* copied array of static strings */
    route_stats *routes; /* n_routes + 1 ("unmatched") */
    _Atomic uint64_t counters[ML_CNT_COUNT];
};

ml_metrics *ml_metrics_new(const char *const *route_names, int n_routes) {
    ml_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->routes = calloc((size_t)n_routes + 1, sizeof *m->routes);
    if (!m->routes) {
        free(m);
        return NULL;
    }
    m->route_names = malloc(sizeof *m->route_names * (size_t)(n_routes > 0 ? n_routes : 1));
    if (!m->route_names) {
        free(m->routes);
        free(m);
        return NULL;
    }
    for (int i = 0; i < n_routes; i++) m->route_names[i] = route_names[i];
    m->n_routes = n_routes;
    return m;
}

void ml_metrics_free(ml_metrics *m) {
    if (!m) return;
    free(m->routes);
    free(m->route_names);
    free(m);
}

static int status_slot(int status) {
    int n = (int)(sizeof tracked_status / sizeof tracked_status[0]);
    for (int i = 0; i < n; i++)
        if (tracked_status[i] == status) return i;
    int cls = status / 100;
    if (cls < 1 || cls > 5) cls = 5;
    return n + cls - 1;
}

void ml_metrics_observe(ml_metrics *m, int route, int status, double seconds) {
    if (route < 0 || route > m->n_routes) route = m->n_routes;
    route_stats *r = &m->routes[route];
    atomic_fetch_add_explicit(&r->by_status[status_slot(status)], 1, memory_order_relaxed);
    int b = 0;
    while (b < N_BUCKETS && seconds > bucket_le[b]) b++;
    atomic_fetch_add_explicit(&r->buckets[b], 1, memory_order_relaxed);
    uint64_t us = seconds > 0 ? (uint64_t)(seconds * 1e6 + 0.5) : 0;
    atomic_fetch_add_explicit(&r->sum_us, us, memory_order_relaxed);
}

void ml_metrics_add(ml_metrics *m, ml_counter c, uint64_t n) {
    atomic_fetch_add_explicit(&m->counters[c], n, memory_order_relaxed);
}

uint64_t ml_metrics_get(const ml_metrics *m, ml_counter c) {
    return atomic_load_explicit(&((ml_metrics *)m)->counters[c], memory_order_relaxed);
}

static const char *route_label(const ml_metrics *m, int r) {
    return r < m->n_routes ? m->route_names[r] : "unmatched";
}

static void status_label(int slot, char *buf, size_t len) {
    int n = (int)(sizeof tracked_status / sizeof tracked_status[0]);
    if (slot < n)
        snprintf(buf, len, "%d", tracked_status[slot]);
    else
        snprintf(buf, len, "%dxx", slot - n + 1);
}

void ml_metrics_render(const ml_metrics *m, ml_buf *out) {
    ml_buf_puts(out, "# HELP metalignd_http_requests_total HTTP requests by route and status.\n"
                     "# TYPE metalignd_http_requests_total counter\n");
    for (int r = 0; r <= m->n_routes; r++) {
        for (int s = 0; s < N_STATUS; s++) {
            uint64_t v = atomic_load_explicit(&m->routes[r].by_status[s], memory_order_relaxed);
            if (!v) continue;
            char st[16];
            status_label(s, st, sizeof st);
            ml_buf_printf(out, "metalignd_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                          route_label(m, r), st, (unsigned long long)v);
        }
    }
    ml_buf_puts(out, "# HELP metalignd_http_request_duration_seconds Time from request to "
                     "response, by route.\n"
                     "# TYPE metalignd_http_request_duration_seconds histogram\n");
    for (int r = 0; r <= m->n_routes; r++) {
        const route_stats *rs = &m->routes[r];
        uint64_t cum = 0;
        for (int b = 0; b <= N_BUCKETS; b++)
            cum += atomic_load_explicit(&((route_stats *)rs)->buckets[b], memory_order_relaxed);
        if (!cum) continue;
        const char *name = route_label(m, r);
        uint64_t running = 0;
        for (int b = 0; b <= N_BUCKETS; b++) {
            running += atomic_load_explicit(&((route_stats *)rs)->buckets[b], memory_order_relaxed);
            if (b < N_BUCKETS)
                ml_buf_printf(out,
                              "metalignd_http_request_duration_seconds_bucket{route=\"%s\","
                              "le=\"%g\"} %llu\n",
                              name, bucket_le[b], (unsigned long long)running);
            else
                ml_buf_printf(out,
                              "metalignd_http_request_duration_seconds_bucket{route=\"%s\","
                              "le=\"+Inf\"} %llu\n",
                              name, (unsigned long long)running);
        }
        uint64_t sum_us = atomic_load_explicit(&((route_stats *)rs)->sum_us, memory_order_relaxed);
        ml_buf_printf(out, "metalignd_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
                      name, (double)sum_us / 1e6);
        ml_buf_printf(out, "metalignd_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                      name, (unsigned long long)running);
    }
    for (int c = 0; c < ML_CNT_COUNT; c++) {
        ml_buf_printf(out, "# HELP metalignd_%s_total %s\n# TYPE metalignd_%s_total counter\n"
                           "metalignd_%s_total %llu\n",
                      counter_info[c].name, counter_info[c].help, counter_info[c].name,
                      counter_info[c].name, (unsigned long long)ml_metrics_get(m, (ml_counter)c));
    }
}
