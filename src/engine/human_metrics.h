/* The human-data store (engine/human_store.h) as Prometheus metrics. */
#ifndef METALIGN_ENGINE_HUMAN_METRICS_H
#define METALIGN_ENGINE_HUMAN_METRICS_H

#include "engine/human_store.h"
#include "util/buf.h"

/* Appends metalignd_human_fetches_total{result=...}, cache hits, waits, disk loads, set-aside
 * copies, and gauges for the cached copy (cached, stale, bytes, age). */
void ml_human_render_metrics(ml_human *h, ml_buf *out);

#endif
