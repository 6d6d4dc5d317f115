/* The human-data store: the CSV fetched from a URL on first use, kept in a cache folder that
 * survives restarts, parsed once and shared as immutable snapshots. Polite to the upstream:
 * one download at a time (concurrent callers share it), explicit refreshes at most once per
 * min_refresh_seconds, and after a failure the next automatic attempt waits, doubling from
 * retry_min_seconds up to retry_max_seconds. */
#ifndef METALIGN_ENGINE_HUMAN_STORE_H
#define METALIGN_ENGINE_HUMAN_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "engine/coalesce.h"
#include "metalign/fetch.h"
#include "metalign/human_csv.h"
#include "util/buf.h"

#define ML_HUMAN_USER_AGENT "metalignd/" ML_VERSION " (human learning data; libcurl)"
/* The key under which a running download is registered in cfg.coalesce. */
#define ML_HUMAN_FETCH_KEY "human:download"

/* Returns of ml_human_get / ml_human_refresh beside 0 and -1. */
#define ML_HUMAN_BUSY 1         /* no copy and a download is running (no_wait): wait for
                                 * ML_HUMAN_FETCH_KEY in cfg.coalesce, then ask again */
#define ML_HUMAN_RATE_LIMITED 2 /* refresh: too soon after the last one (st->next_refresh_at) */

typedef struct ml_human_config {
    const char *url;          /* copied */
    const char *cache_dir;    /* copied; created if missing */
    const char *user_agent;   /* NULL: ML_HUMAN_USER_AGENT */
    long max_age_seconds;     /* revalidate (conditional GET) a copy older than this;
                               * 0 = on every get, < 0 = never (default 86400) */
    long retry_min_seconds;   /* after a failure, automatic attempts (a get without a copy, a
                               * revalidation) wait this long, doubling with each further
                               * failure (a stale copy is served meanwhile; default 60) */
    long retry_max_seconds;   /* the cap of that wait (default 3600; revalidations also at
                               * most max_age) */
    long min_refresh_seconds; /* ml_human_refresh_since fetches at most once per this long
                               * (counted from the end of the last download); default 0 */
    int no_wait;              /* callers never wait for another caller's download: they get
                               * ML_HUMAN_BUSY (the daemon parks the request instead of a
                               * compute worker); default 0: they wait and share it */
    ml_coalesce *coalesce;    /* when set, a running download is registered there under
                               * ML_HUMAN_FETCH_KEY, so waiters are called back when it ends */
    long connect_timeout_ms;  /* default 10000 */
    long total_timeout_ms;    /* default 60000 */
    size_t max_bytes;         /* default 64 MiB */
    /* The download; NULL: ml_fetch_to_fd. The scale-out puts one in front of it that shares
     * a single download among replicas (engine/shared.h). Same contract. */
    int (*fetch)(void *ctx, const ml_fetch_request *rq, int fd, ml_fetch_result *res,
                 ml_err *err);
    void *fetch_ctx;
} ml_human_config;

void ml_human_config_defaults(ml_human_config *c);

/* An immutable parsed copy. Readers hold a reference while they use it; a refresh swaps in a
 * new one without waiting for them. */
typedef struct ml_human_snapshot {
    ml_human_data data;
    char sha256[ML_SHA256_HEX_LEN];
    size_t bytes;
    int refs;                 /* private: use ml_human_snapshot_unref */
} ml_human_snapshot;

void ml_human_snapshot_unref(ml_human_snapshot *s);

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
    ml_fetch_code code;       /* of the last failed attempt, ML_FETCH_OK when it succeeded */
    char last_error[ML_ERR_MAX]; /* its message, "" when the last attempt succeeded */
    time_t last_error_at;
    char notice[ML_ERR_MAX];  /* e.g. a corrupt cached copy set aside at start-up; "" if none */
    int available;            /* 0 when the cache folder is unusable: nothing is fetched
                               * (the reason is in unavailable) */
    char unavailable[ML_ERR_MAX];
    int fetching;             /* a download is running now */
    int shared;               /* refresh: this call reports a download another call ran */
    long retry_after;         /* seconds until the next automatic attempt is allowed (0: now) */
    time_t next_refresh_at;   /* when a refresh may next contact upstream (0: now) */
} ml_human_status;

/* Counters for /metrics. */
typedef struct ml_human_stats {
    uint64_t attempts;        /* upstream requests */
    uint64_t downloaded, not_modified, unchanged;
    uint64_t failures[ML_FETCH_N_CODES]; /* by code ([ML_FETCH_OK] stays 0) */
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
 * bad configuration (no URL, not http(s), no cache folder named); a cache folder that cannot
 * be created makes a store that is unavailable (status.available 0, every get -1 with the
 * reason) rather than no daemon at all. */
ml_human *ml_human_open(const ml_human_config *cfg, ml_err *err);
/* Call once no other thread uses the store. */
void ml_human_free(ml_human *h);

/* The current copy, downloading it if there is none. Concurrent callers without a copy share
 * one download and its result (no_wait: they get ML_HUMAN_BUSY instead of waiting). A copy
 * older than max_age is revalidated by this caller (a conditional GET; other callers
 * meanwhile get the copy at once); if that fails the copy is still served, with stale = 1
 * and the error in status. After a failure without a copy, calls within the back-off get -1
 * at once with the last error (st->retry_after says for how long). 0 with *snap (release it)
 * and *st; -1 only when there is no copy: st->code and err say why (answer 503). May block
 * for up to the total timeout: call it from a worker, not an I/O thread. st may not be NULL. */
int ml_human_get(ml_human *h, ml_human_snapshot **snap, ml_human_status *st, ml_err *err);
/* The same, waiting for a running download whatever no_wait says (a job, on its own worker). */
int ml_human_get_waiting(ml_human *h, ml_human_snapshot **snap, ml_human_status *st,
                         ml_err *err);

/* Fetches again now (conditional when there is a copy), ignoring the back-off and the rate
 * limit. When a fetch is already running, waits for it and reports its result instead. 0 when
 * upstream answered with good data or 304; -1 with st->code and err otherwise, the copy
 * (st->cached) kept and marked stale. */
int ml_human_refresh(ml_human *h, ml_human_status *st, ml_err *err);
/* The refresh of an anonymous client, who asked at `since` (Unix time, with fractions): a
 * download that ended after since is reported (st->shared) instead of running another;
 * within min_refresh_seconds of the last download, ML_HUMAN_RATE_LIMITED with the copy's
 * state and st->next_refresh_at, without contacting upstream; a download already running
 * gives ML_HUMAN_BUSY (no_wait) or is waited for. Else as ml_human_refresh. */
int ml_human_refresh_since(ml_human *h, double since, ml_human_status *st, ml_err *err);

/* Aborts the running download and every later one (shutdown); they fail with "cancelled". */
void ml_human_cancel(ml_human *h);

/* The state without contacting upstream or waiting for a download (for /v1/info). */
void ml_human_status_get(ml_human *h, ml_human_status *st);
void ml_human_stats_get(ml_human *h, ml_human_stats *out);

/* Paths of the cached CSV and its metadata (valid while the store lives). */
const char *ml_human_csv_path(const ml_human *h);
const char *ml_human_meta_path(const ml_human *h);

#endif
