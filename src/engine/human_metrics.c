/* The human-data store's counters and gauges in Prometheus text format. */
#include "engine/human_metrics.h"

void ml_human_render_metrics(ml_human *h, ml_buf *out) {
    ml_human_stats s;
    ml_human_status st;
    ml_human_stats_get(h, &s);
    ml_human_status_get(h, &st);
    ml_buf_puts(out, "# HELP metalignd_human_fetches_total Requests for the human CSV by "
                     "result.\n# TYPE metalignd_human_fetches_total counter\n");
    ml_buf_printf(out, "metalignd_human_fetches_total{result=\"downloaded\"} %llu\n",
                  (unsigned long long)s.downloaded);
    ml_buf_printf(out, "metalignd_human_fetches_total{result=\"not_modified\"} %llu\n",
                  (unsigned long long)s.not_modified);
    ml_buf_printf(out, "metalignd_human_fetches_total{result=\"unchanged\"} %llu\n",
                  (unsigned long long)s.unchanged);
    for (int c = 1; c < ML_FETCH_N_CODES; c++)
        ml_buf_printf(out, "metalignd_human_fetches_total{result=\"%s\"} %llu\n",
                      ml_fetch_code_name((ml_fetch_code)c), (unsigned long long)s.failures[c]);
    ml_buf_printf(out,
                  "# HELP metalignd_human_cache_hits_total Human-data requests answered from "
                  "memory.\n# TYPE metalignd_human_cache_hits_total counter\n"
                  "metalignd_human_cache_hits_total %llu\n"
                  "# HELP metalignd_human_fetch_waits_total Requests that waited for a running "
                  "download.\n# TYPE metalignd_human_fetch_waits_total counter\n"
                  "metalignd_human_fetch_waits_total %llu\n"
                  "# HELP metalignd_human_disk_loads_total Cached copies loaded at start-up.\n"
                  "# TYPE metalignd_human_disk_loads_total counter\n"
                  "metalignd_human_disk_loads_total %llu\n"
                  "# HELP metalignd_human_set_aside_total Corrupt cached copies set aside.\n"
                  "# TYPE metalignd_human_set_aside_total counter\n"
                  "metalignd_human_set_aside_total %llu\n",
                  (unsigned long long)s.cache_hits, (unsigned long long)s.waits,
                  (unsigned long long)s.disk_loads, (unsigned long long)s.set_aside);
    ml_buf_printf(out,
                  "# HELP metalignd_human_cached 1 when a verified copy is in memory.\n"
                  "# TYPE metalignd_human_cached gauge\nmetalignd_human_cached %d\n"
                  "# HELP metalignd_human_stale 1 when the copy could not be revalidated.\n"
                  "# TYPE metalignd_human_stale gauge\nmetalignd_human_stale %d\n"
                  "# HELP metalignd_human_bytes Size of the cached copy.\n"
                  "# TYPE metalignd_human_bytes gauge\nmetalignd_human_bytes %zu\n",
                  st.cached, st.stale, st.bytes);
    if (st.cached)
        ml_buf_printf(out,
                      "# HELP metalignd_human_fetched_timestamp_seconds When the copy was "
                      "downloaded (Unix time).\n"
                      "# TYPE metalignd_human_fetched_timestamp_seconds gauge\n"
                      "metalignd_human_fetched_timestamp_seconds %lld\n",
                      (long long)st.fetched_at);
}
