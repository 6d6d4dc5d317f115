/* Request counters and latency histograms in Prometheus text format. Updates are lock-free
 * (relaxed atomics), so recording a request never contends with serving one. */
#ifndef METALIGN_METRICS_H
#define METALIGN_METRICS_H

#include <stdint.h>

#include "util/buf.h"

/* Counters that components bump; rendered as metalignd_<name>_total. */
typedef enum ml_counter {
    ML_CNT_ACTS_CACHE_HIT,    /* all-item activations answered from memory */
    ML_CNT_ACTS_CACHE_MISS,
    ML_CNT_CKA_CACHE_HIT,     /* a /v1/cka answer served from memory */
    ML_CNT_CKA_CACHE_MISS,
    ML_CNT_CURVES_CACHE_HIT,  /* learning curves answered from the result cache */
    ML_CNT_CURVES_CACHE_MISS,
    ML_CNT_JOBS_SUBMITTED,
    ML_CNT_JOBS_DONE,
    ML_CNT_JOBS_FAILED,
    ML_CNT_JOBS_CANCELLED,
    ML_CNT_JOBS_REJECTED,     /* the job table was full */
    ML_CNT_EPISODES,          /* episodes simulated */
    ML_CNT_COUNT
} ml_counter;

typedef struct ml_metrics ml_metrics;

/* route_names are static strings; the array itself is copied. */
ml_metrics *ml_metrics_new(const char *const *route_names, int n_routes);
void ml_metrics_free(ml_metrics *m);

/* One finished request: its route index (n_routes for "unmatched"), status and duration. */
void ml_metrics_observe(ml_metrics *m, int route, int status, double seconds);
void ml_metrics_add(ml_metrics *m, ml_counter c, uint64_t n);
uint64_t ml_metrics_get(const ml_metrics *m, ml_counter c);

/* Appends the request counters, histograms and counters in Prometheus text format. */
void ml_metrics_render(const ml_metrics *m, ml_buf *out);

#endif
