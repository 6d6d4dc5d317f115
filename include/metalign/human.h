/* The human learning data (MODEL.md section 5): a CSV fetched from a URL on first use, kept in
 * a cache folder that survives restarts, parsed once into compact arrays and aggregated into
 * p(correct) learning curves the way the notebook's pandas/seaborn code does.
 *
 * Layers, bottom up:
 *   ml_human_csv_parse   bytes -> ml_human_data          (src/data/human_csv.c)
 *   ml_human_curves_*    ml_human_data -> curves + JSON  (src/analysis/human_curves.c)
 *   ml_fetch_to_fd       one libcurl download            (src/server/fetch.c)
 *   ml_human_*           the thread-safe store           (src/server/human_cache.c)
 *
 * Every failure carries an ml_human_code (its snake_case name is the API error code) and a
 * message in an ml_err that names the URL or file, the cause and what to do. */
#ifndef METALIGN_HUMAN_H
#define METALIGN_HUMAN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "metalign/buf.h"
#include "metalign/err.h"
#include "metalign/sha256.h"

/* ---------------------------------------------------------------------------------------- */
/* Error codes                                                                              */

typedef enum ml_human_code {
    ML_HUMAN_OK = 0,
    ML_HUMAN_E_BAD_URL,    /* "upstream_bad_url": malformed, or a scheme not http(s)/file */
    ML_HUMAN_E_DNS,        /* "upstream_dns": the host name does not resolve */
    ML_HUMAN_E_REFUSED,    /* "upstream_refused": connection refused or host unreachable */
    ML_HUMAN_E_TIMEOUT,    /* "upstream_timeout": connect or total timeout */
    ML_HUMAN_E_TLS,        /* "upstream_tls": TLS handshake or certificate verification failed */
    ML_HUMAN_E_STATUS,     /* "upstream_status": an HTTP status other than 200 (or 304) */
    ML_HUMAN_E_REDIRECTS,  /* "upstream_redirects": too many redirects */
    ML_HUMAN_E_TOO_LARGE,  /* "upstream_too_large": the body exceeds max_bytes */
    ML_HUMAN_E_TRUNCATED,  /* "upstream_truncated": the connection closed before the body ended */
    ML_HUMAN_E_NOT_CSV,    /* "upstream_not_csv": empty, binary, HTML/JSON, required columns
                            * missing from the header */
    ML_HUMAN_E_BAD_CSV,    /* "upstream_bad_csv": the header is right but a row is malformed */
    ML_HUMAN_E_NETWORK,    /* "upstream_error": any other transfer failure */
    ML_HUMAN_E_CACHE_IO,   /* "cache_io": the cache folder cannot be written */
    ML_HUMAN_E_INTERNAL,   /* "internal": out of memory */
    ML_HUMAN_N_CODES
} ml_human_code;

/* The snake_case name, e.g. "upstream_timeout"; "ok" for ML_HUMAN_OK. */
const char *ml_human_code_name(ml_human_code c);

/* ---------------------------------------------------------------------------------------- */
/* Parsing (src/data/human_csv.c)                                                           */

/* The rows of the CSV that carry an observation, as parallel arrays (n_rows each). Rows whose
 * `correct` is empty or NA ("", NA, NaN, nan, N/A, NULL, null, None, <NA>) are not observations:
 * pandas reads them as NaN and seaborn's mean skips them, so they are counted in n_missing and
 * left out everywhere (including participant counts). */
typedef struct ml_human_data {
    size_t n_rows;
    int32_t *participant;  /* 0..n_participants-1, numbered in order of first appearance */
    int32_t *trial;        /* >= 0 */
    int32_t *dimension;    /* >= 0 */
    uint8_t *correct;      /* 0 or 1 */
    size_t n_participants;
    size_t n_missing;      /* rows skipped for an empty/NA `correct` */
    int32_t max_trial;     /* largest trial present */
} ml_human_data;

/* Parses the human CSV: a header line naming at least the columns participant, trial,
 * dimension and correct (any order; other columns ignored; the first of duplicate names wins),
 * then one row per observation. Accepted: a UTF-8 byte-order mark, LF or CRLF line ends,
 * quoted fields (RFC 4180, "" for a quote), blank lines. trial and dimension are whole numbers
 * >= 0 (also written 3.0); correct is True/False/true/false/TRUE/FALSE/1/0/1.0/0.0 or NA;
 * participant any non-empty string. name labels messages (e.g. the URL or file).
 * On failure *code is ML_HUMAN_E_NOT_CSV (empty, binary, HTML/JSON, a header without the
 * required columns), ML_HUMAN_E_BAD_CSV (a malformed row: the message names the line and the
 * column) or ML_HUMAN_E_INTERNAL; out is left empty. */
int ml_human_csv_parse(const char *buf, size_t len, const char *name, ml_human_data *out,
                       ml_human_code *code, ml_err *err);
void ml_human_data_free(ml_human_data *d);

/* ---------------------------------------------------------------------------------------- */
/* Learning curves (src/analysis/human_curves.c)                                            */

#define ML_HUMAN_MAX_TRIAL_LIMIT 100000 /* largest max_trial accepted */
#define ML_HUMAN_MAX_DIMENSIONS 1024    /* most distinct dimensions accepted */
#define ML_HUMAN_DEFAULT_N_BOOT 1000    /* seaborn's default */
#define ML_HUMAN_DEFAULT_LEVEL 95.0

/* One curve over trials 0..max_trial, built from the rows with trial <= max_trial (as the
 * notebook's `human_data[human_data.trial <= 99]`). p_correct[t] is the mean of `correct` over
 * the rows at trial t (every row is an observation, as in pandas' groupby-mean and seaborn's
 * lineplot); ci_low/ci_high the seeded percentile-bootstrap interval of that mean (stats.h).
 * A trial without rows has n[t] == 0 and NaN in the three values: callers must test n[t]
 * (ml_human_curve_json writes null there). */
typedef struct ml_human_curve {
    int dimension;        /* -1 for the overall curve */
    size_t participants;  /* distinct participants with a row at trial <= max_trial */
    size_t rows;          /* rows at trial <= max_trial */
    int64_t *n;           /* (n_trials) rows at each trial */
    double *p_correct;    /* (n_trials) */
    double *ci_low;       /* (n_trials) */
    double *ci_high;      /* (n_trials) */
} ml_human_curve;

typedef struct ml_human_curves {
    int max_trial;
    int n_trials;         /* max_trial + 1 */
    uint64_t seed;
    int n_boot;
    double level;
    ml_human_curve overall;
    int n_dims;
    ml_human_curve *by_dim; /* (n_dims), one per dimension present, ascending */
} ml_human_curves;

/* Bootstrap draws for curve c at trial t come from ml_rng_seed(seed, stream) with
 * stream = t for the overall curve and ((dimension + 1) << 32) | t for a dimension, so a
 * curve's interval does not depend on which other dimensions are present. n_boot >= 1,
 * 0 < level < 100, 0 <= max_trial <= ML_HUMAN_MAX_TRIAL_LIMIT. */
int ml_human_curves_compute(const ml_human_data *d, int max_trial, uint64_t seed, int n_boot,
                            double level, ml_human_curves *out, ml_err *err);
void ml_human_curves_free(ml_human_curves *c);

/* {"p_correct": [...], "ci_low": [...], "ci_high": [...], "n": [...]}, null where n == 0;
 * NULL only when out of memory. */
json_t *ml_human_curve_json(const ml_human_curve *c, int n_trials);
/* API.md's body without "source": {"participants", "rows", "max_trial", "n_boot", "level",
 * "seed", "curve": {...}, "by_dimension": [{"dimension", "participants", "rows", "curve"}]}.
 * NULL only when out of memory. */
json_t *ml_human_curves_json(const ml_human_curves *c);

/* ---------------------------------------------------------------------------------------- */
/* One download (src/server/fetch.c)                                                        */

typedef struct ml_fetch_request {
    const char *url;           /* http://, https:// or file:// */
    const char *user_agent;
    long connect_timeout_ms;
    long total_timeout_ms;
    size_t max_bytes;          /* a longer body fails with ML_HUMAN_E_TOO_LARGE */
    const char *etag;          /* sent as If-None-Match when non-empty */
    const char *last_modified; /* sent as If-Modified-Since when non-empty */
} ml_fetch_request;

typedef struct ml_fetch_result {
    ml_human_code code;        /* ML_HUMAN_OK for 200 (or 304 when not_modified) */
    int not_modified;          /* 304: nothing was written */
    long http_status;          /* final status (0 for file://) */
    size_t bytes;              /* body bytes written */
    char sha256[ML_SHA256_HEX_LEN];
    char etag[256];            /* validators of the final response ("" when absent or too long) */
    char last_modified[128];
    char content_type[128];
    char effective_url[1024];  /* after redirects */
} ml_fetch_result;

/* GETs rq->url following up to 10 redirects (http/https only), HTTPS verification on,
 * writing the body to fd (which the caller has opened, empty, for writing). 0 on 200 or 304;
 * -1 with res->code and err (naming the URL, the cause and curl's own words) otherwise.
 * Thread-safe once curl_global_init has run (ml_human_open does it). */
int ml_fetch_to_fd(const ml_fetch_request *rq, int fd, ml_fetch_result *res, ml_err *err);

/* ---------------------------------------------------------------------------------------- */
/* The store (src/server/human_cache.c)                                                     */

#define ML_HUMAN_USER_AGENT "metalignd/" ML_VERSION " (human learning data; libcurl)"
#define ML_HUMAN_CSV_NAME "human.csv"   /* in cache_dir */
/* {format, url, fetched_at, validated_at, bytes, sha256, etag, last_modified} */
#define ML_HUMAN_META_NAME "human.json"

typedef struct ml_human_config {
    const char *url;          /* copied */
    const char *cache_dir;    /* copied; created if missing */
    const char *user_agent;   /* NULL: ML_HUMAN_USER_AGENT */
    long max_age_seconds;     /* revalidate (conditional GET) a copy older than this;
                               * 0 = on every get, < 0 = never (default 86400) */
    long retry_seconds;       /* after a failed revalidation, serve the stale copy this long
                               * (capped at max_age) before trying again (default 60) */
    long connect_timeout_ms;  /* default 10000 */
    long total_timeout_ms;    /* default 60000 */
    size_t max_bytes;         /* default 64 MiB */
} ml_human_config;

void ml_human_config_defaults(ml_human_config *c);

/* An immutable parsed copy. Readers hold a reference while they use it; a refresh swaps in a
 * new one without waiting for them. */
typedef struct ml_human_snapshot {
    ml_human_data data;
    char sha256[ML_SHA256_HEX_LEN];
    size_t bytes;
    int refs;                 /* private: use ml_human_snapshot_release */
} ml_human_snapshot;

void ml_human_snapshot_release(ml_human_snapshot *s);

/* What the last call did. */
typedef enum ml_human_outcome {
    ML_HUMAN_SERVED,          /* answered from memory, upstream not contacted */
    ML_HUMAN_DOWNLOADED,      /* new content downloaded and installed */
    ML_HUMAN_NOT_MODIFIED,    /* upstream answered 304: the copy is current */
    ML_HUMAN_UNCHANGED,       /* upstream sent the same bytes again */
    ML_HUMAN_FAILED,          /* the attempt failed (see code / last_error) */
} ml_human_outcome;

const char *ml_human_outcome_name(ml_human_outcome o); /* "served", "downloaded", ... */

/* The cache state, copied under the store's lock (so it stays valid after the call). */
typedef struct ml_human_status {
    const char *url;          /* the store's; valid while the store lives */
    int cached;               /* a verified copy is in memory */
    int from_cache;           /* this call's data was not downloaded by it (or by the fetch it
                               * waited for) */
    int stale;                /* the copy is served although the last attempt to revalidate
                               * or refresh it failed */
    ml_human_outcome outcome; /* of this call (for a waiter: of the fetch it waited for) */
    time_t fetched_at;        /* last 200 for the copy; 0 without a copy */
    time_t validated_at;      /* last 200 or 304 */
    size_t bytes;
    char sha256[ML_SHA256_HEX_LEN];
    ml_human_code code;       /* of the last failed attempt, ML_HUMAN_OK when it succeeded */
    char last_error[ML_ERR_MAX]; /* its message, "" when the last attempt succeeded */
    time_t last_error_at;
    char notice[ML_ERR_MAX];  /* e.g. a corrupt cached copy set aside at start-up; "" if none */
} ml_human_status;

/* Counters for /metrics. */
typedef struct ml_human_stats {
    uint64_t attempts;        /* upstream requests */
    uint64_t downloaded, not_modified, unchanged;
    uint64_t failures[ML_HUMAN_N_CODES]; /* by code ([ML_HUMAN_OK] stays 0) */
    uint64_t cache_hits;      /* gets answered from memory without contacting upstream */
    uint64_t waits;           /* calls that waited for another thread's download */
    uint64_t disk_loads;      /* verified copies loaded from cache_dir */
    uint64_t set_aside;       /* corrupt copies renamed to <name>.corrupt-<UTC time> */
} ml_human_stats;

typedef struct ml_human ml_human;

/* Creates the store and loads the cached copy when it is intact: its metadata names the same
 * URL and its size and sha256 match and it parses. A corrupt or truncated copy is renamed
 * aside (<name>.corrupt-<YYYYmmddTHHMMSSZ>) and reported in status.notice, never served; a
 * copy of another URL is left alone and not served. Never touches the network. Fails only for
 * bad configuration or an unusable cache_dir. */
ml_human *ml_human_open(const ml_human_config *cfg, ml_err *err);
/* Call once no other thread uses the store. */
void ml_human_close(ml_human *h);

/* The current copy, downloading it if there is none. Concurrent callers without a copy share
 * one download and its result. A copy older than max_age is revalidated by this caller (a
 * conditional GET; other callers meanwhile get the copy at once); if that fails the copy is
 * still served, with stale = 1 and the error in status. 0 with *snap (release it) and *st;
 * -1 only when there is no copy: st->code and err say why (answer 503). May block for up to
 * the total timeout: call it from a worker, not an I/O thread. st may not be NULL. */
int ml_human_get(ml_human *h, ml_human_snapshot **snap, ml_human_status *st, ml_err *err);

/* Fetches again now (conditional when there is a copy). When a fetch is already running,
 * waits for it and reports its result instead. 0 when upstream answered with good data or
 * 304; -1 with st->code and err otherwise, the copy (st->cached) kept and marked stale. */
int ml_human_refresh(ml_human *h, ml_human_status *st, ml_err *err);

/* The state without contacting upstream or waiting for a download (for /v1/info). */
void ml_human_status_get(ml_human *h, ml_human_status *st);
void ml_human_stats_get(ml_human *h, ml_human_stats *out);

/* Paths of the cached CSV and its metadata (valid while the store lives). */
const char *ml_human_csv_path(const ml_human *h);
const char *ml_human_meta_path(const ml_human *h);

/* "2024-05-01T12:00:00Z" (needs 21 bytes). */
void ml_human_format_time(time_t t, char out[21]);

/* API.md's "source": {"url", "fetched_at", "validated_at", "bytes", "sha256", "from_cache",
 * "stale", "outcome", "last_error": null | {"code", "message", "at"}}. */
json_t *ml_human_source_json(const ml_human_status *st);
/* /v1/info's "human": {"url", "cached", "fetched_at", "validated_at", "bytes", "sha256",
 * "stale", "last_error", "notice"} (null where there is no value). */
json_t *ml_human_status_json(const ml_human_status *st);
/* Appends Prometheus text: metalignd_human_fetches_total{result=...}, cache hits, waits, disk
 * loads, set-aside copies, and gauges for the cached copy (cached, stale, bytes, age). */
void ml_human_render_metrics(ml_human *h, ml_buf *out);

#endif
