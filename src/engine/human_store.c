/* The human-data store: one verified copy of the CSV on disk (human.csv + human.json in the
 * cache folder) and its parsed form in memory, shared by all request threads.
 *
 * Disk: a download goes to a temp file in the cache folder itself (so rename is atomic), is
 * checked (size cap, sha256, parses), fsync'd, and renamed over human.csv after its metadata
 * was written the same way; the folder is fsync'd last. The good copy is never touched by a
 * download that fails. At start-up the copy is trusted only if its size and sha256 match the
 * metadata and it parses; otherwise it is renamed aside, so a damaged file is never served.
 *
 * Memory: the parsed copy is a reference-counted snapshot; a refresh swaps the pointer under
 * the lock while readers keep using the old one. One download at a time: `fetching` plus a
 * condition variable; callers without a copy wait for the running download and share its
 * result (or, no_wait, are told to come back when it ends), callers with a copy are answered
 * at once.
 *
 * Upstream: `failures` consecutive failed attempts put the next automatic one off until
 * `next_attempt_at` (doubling, capped); explicit refreshes are spaced by min_refresh after
 * the end of the last download (`fetch_end`). A cancelled download (shutdown) is not the
 * upstream's fault and does not count. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "engine/human_store.h"
#include "engine/human_disk.h"

typedef ml_human_meta meta;

struct ml_human {
    ml_human_config cfg; /* strings point to the copies below */
    char *url, *user_agent;
    ml_human_disk disk;

    pthread_mutex_t lock;
    pthread_cond_t fetched;
    int fetching;
    uint64_t fetch_gen;  /* bumped when a fetch ends */
    int cancel;          /* atomic: ml_human_cancel */
    int available;       /* 0: the cache folder is unusable (unavailable says why) */
    char unavailable[ML_ERR_MAX];

    /* Under lock. */
    ml_human_snapshot *snap;
    meta cur;            /* of snap */
    int stale;
    ml_human_outcome last_outcome;
    ml_fetch_code code;
    char last_error[ML_ERR_MAX];
    time_t last_error_at;
    char notice[ML_ERR_MAX];
    ml_human_stats stats;
    int failures;        /* consecutive failed attempts */
    time_t next_attempt_at; /* no automatic attempt before (0: none pending) */
    double fetch_end;    /* Unix time the last download ended, 0 before the first */
};

/* The result of one fetch, computed without the lock and applied with it. */
typedef struct fetch_outcome {
    ml_human_outcome outcome;
    ml_fetch_code code;
    ml_err err;
    meta next;                 /* the copy's metadata after a success */
    ml_human_snapshot *snap;   /* new content (DOWNLOADED only) */
    char notice[ML_ERR_MAX];   /* a problem that did not fail the fetch */
} fetch_outcome;

/* ---------------------------------------------------------------------------------------- */
/* Names and formatting                                                                     */

const char *ml_human_outcome_name(ml_human_outcome o) {
    static const char *const names[] = {"served", "downloaded", "not_modified", "unchanged",
                                        "failed"};
    return (unsigned)o < sizeof names / sizeof names[0] ? names[o] : "failed";
}

void ml_human_config_defaults(ml_human_config *c) {
    memset(c, 0, sizeof *c);
    c->max_age_seconds = 86400;
    c->retry_min_seconds = 60;
    c->retry_max_seconds = 3600;
    c->connect_timeout_ms = 10000;
    c->total_timeout_ms = 60000;
    c->max_bytes = (size_t)64 << 20;
}

/* ---------------------------------------------------------------------------------------- */
/* Snapshots and the copy on disk                                                           */

static ml_human_snapshot *snapshot_new(ml_human_data *data, const meta *m) {
    ml_human_snapshot *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->data = *data;
    memset(data, 0, sizeof *data);
    memcpy(s->sha256, m->sha256, sizeof s->sha256);
    s->bytes = m->bytes;
    s->refs = 1;
    return s;
}

void ml_human_snapshot_unref(ml_human_snapshot *s) {
    if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    ml_human_data_free(&s->data);
    free(s);
}


/* Moves the cached pair out of the way and says so in the notice. */
static void set_aside(ml_human *h, const char *reason) {
    ml_human_disk_set_aside(&h->disk, reason, h->notice);
    h->stats.set_aside++;
}

/* Loads the cached copy at start-up, or sets it aside with the reason. */
static void load_cached(ml_human *h) {
    struct stat st, meta_st;
    int have_csv = lstat(h->disk.csv_path, &st) == 0;
    int have_meta = lstat(h->disk.meta_path, &meta_st) == 0;
    if (!have_csv && !have_meta) return;
    ml_err e;
    if (!have_meta) {
        set_aside(h, "it has no metadata file " ML_HUMAN_META_NAME);
        return;
    }
    meta m;
    int other_url;
    if (ml_human_disk_read_meta(&h->disk, h->url, &m, &other_url, &e) != 0) {
        if (other_url)
            snprintf(h->notice, sizeof h->notice, "%s", e.msg);
        else
            set_aside(h, e.msg);
        return;
    }
    if (!have_csv) {
        set_aside(h, "the CSV is missing");
        return;
    }
    if (!S_ISREG(st.st_mode) || (size_t)st.st_size != m.bytes) {
        ml_errf(&e, "it has %lld bytes but its metadata says %zu (truncated or overwritten)",
                (long long)st.st_size, m.bytes);
        set_aside(h, e.msg);
        return;
    }
    int fd = open(h->disk.csv_path, O_RDONLY | O_CLOEXEC);
    char *buf = NULL;
    if (fd < 0 || ml_human_disk_read_fd(fd, m.bytes, &buf, h->disk.csv_path, &e) != 0) {
        if (fd < 0) ml_err_errno(&e, "cannot open it");
        else close(fd);
        set_aside(h, e.msg);
        return;
    }
    close(fd);
    char sha[ML_SHA256_HEX_LEN];
    ml_sha256_hex(buf, m.bytes, sha);
    if (strcmp(sha, m.sha256) != 0) {
        free(buf);
        ml_errf(&e, "its sha256 is %s but its metadata says %s (corrupted)", sha, m.sha256);
        set_aside(h, e.msg);
        return;
    }
    ml_human_data data;
    ml_fetch_code code;
    int rc = ml_human_csv_parse_quiet(buf, m.bytes, h->disk.csv_path, &data, &code, &e);
    free(buf);
    if (rc != 0) {
        set_aside(h, e.msg);
        return;
    }
    h->snap = snapshot_new(&data, &m);
    if (!h->snap) {
        ml_human_data_free(&data);
        snprintf(h->notice, sizeof h->notice, "%s: out of memory loading the cached copy",
                 h->disk.csv_path);
        return;
    }
    h->cur = m;
    h->stats.disk_loads++;
}



/* ---------------------------------------------------------------------------------------- */
/* Fetching                                                                                 */

/* One download against the current copy (cur is NULL without one): runs without the lock.
 * Only one runs at a time, so it owns the cache files while it does. */
static void do_fetch(ml_human *h, const meta *cur, fetch_outcome *o) {
    memset(o, 0, sizeof *o);
    o->outcome = ML_HUMAN_FAILED;
    char tmp[PATH_MAX];
    int fd = -1;
    if (ml_human_disk_temp(&h->disk, "csv", tmp, sizeof tmp, &fd, &o->err) != 0) {
        o->code = ML_FETCH_E_CACHE_IO;
        return;
    }
    ml_fetch_request rq = {
        .url = h->url,
        .user_agent = h->user_agent,
        .connect_timeout_ms = h->cfg.connect_timeout_ms,
        .total_timeout_ms = h->cfg.total_timeout_ms,
        .max_bytes = h->cfg.max_bytes,
        .etag = cur ? cur->etag : NULL,
        .last_modified = cur ? cur->last_modified : NULL,
        .cancel = &h->cancel,
    };
    ml_fetch_result res;
    time_t now = time(NULL);
    char *buf = NULL;
    ml_human_data data = {0};
    int fetched = h->cfg.fetch ? h->cfg.fetch(h->cfg.fetch_ctx, &rq, fd, &res, &o->err)
                               : ml_fetch_to_fd(&rq, fd, &res, &o->err);
    if (fetched != 0) {
        o->code = res.code;
        goto fail;
    }
    if (!cur && res.not_modified) { /* a 304 we did not ask for */
        o->code = ML_FETCH_E_STATUS;
        ml_errf(&o->err, "%s: the server answered 304 Not Modified to an unconditional request",
                h->url);
        goto fail;
    }
    o->next = cur ? *cur : (meta){0};
    o->next.validated_at = now;
    /* A 304 may omit validators that still hold; a 200 brings the current ones. */
    if (res.etag[0] || !res.not_modified)
        snprintf(o->next.etag, sizeof o->next.etag, "%s", res.etag);
    if (res.last_modified[0] || !res.not_modified)
        snprintf(o->next.last_modified, sizeof o->next.last_modified, "%s", res.last_modified);
    if (res.not_modified || (cur && strcmp(res.sha256, cur->sha256) == 0)) {
        if (!res.not_modified) o->next.fetched_at = now;
        o->outcome = res.not_modified ? ML_HUMAN_NOT_MODIFIED : ML_HUMAN_UNCHANGED;
        close(fd);
        unlink(tmp);
        ml_err e2;
        if (ml_human_disk_store_meta(&h->disk, h->url, &o->next, &e2) != 0)
            snprintf(o->notice, sizeof o->notice, "%s", e2.msg);
        return;
    }
    if (ml_human_disk_read_fd(fd, res.bytes, &buf, tmp, &o->err) != 0) {
        o->code = ML_FETCH_E_CACHE_IO;
        goto fail;
    }
    ml_fetch_code code;
    /* The message names what was wrong, never the bytes upstream sent (not even its
     * Content-Type): it is shown to anonymous clients. */
    if (ml_human_csv_parse_quiet(buf, res.bytes, h->url, &data, &code, &o->err) != 0) {
        o->code = code;
        goto fail;
    }
    free(buf);
    buf = NULL;
    if (fsync(fd) != 0) {
        ml_err_errno(&o->err, "%s: cannot sync the download to disk", tmp);
        o->code = ML_FETCH_E_CACHE_IO;
        goto fail;
    }
    close(fd);
    fd = -1;
    o->next.fetched_at = now;
    o->next.bytes = res.bytes;
    memcpy(o->next.sha256, res.sha256, sizeof o->next.sha256);
    if (ml_human_disk_commit(&h->disk, h->url, tmp, &o->next, &o->err, o->notice) != 0) {
        o->code = ML_FETCH_E_CACHE_IO;
        goto fail;
    }
    o->snap = snapshot_new(&data, &o->next);
    if (!o->snap) {
        /* The file is installed but cannot be held in memory; the next start loads it. */
        o->code = ML_FETCH_E_INTERNAL;
        ml_errf(&o->err, "%s: out of memory holding the parsed copy", h->url);
        ml_human_data_free(&data);
        return;
    }
    o->outcome = ML_HUMAN_DOWNLOADED;
    return;
fail:
    free(buf);
    ml_human_data_free(&data);
    if (fd >= 0) close(fd);
    unlink(tmp);
    o->outcome = ML_HUMAN_FAILED;
}

static double unix_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The wait after the n-th consecutive failure: retry_min doubled n-1 times, at most
 * retry_max. */
static long backoff_seconds(const ml_human *h, int n) {
    long d = h->cfg.retry_min_seconds, cap = h->cfg.retry_max_seconds;
    if (d <= 0) return 0;
    for (int i = 1; i < n && d < cap; i++) d *= 2;
    return d < cap ? d : cap;
}

/* Applies a fetch's result to the store (lock held). */
static void apply(ml_human *h, fetch_outcome *o) {
    time_t now = time(NULL);
    h->fetch_end = unix_now();
    h->stats.attempts++;
    h->last_outcome = o->outcome;
    if (o->notice[0]) snprintf(h->notice, sizeof h->notice, "%s", o->notice);
    switch (o->outcome) {
    case ML_HUMAN_DOWNLOADED:
        h->stats.downloaded++;
        ml_human_snapshot_unref(h->snap);
        h->snap = o->snap;
        break;
    case ML_HUMAN_NOT_MODIFIED: h->stats.not_modified++; break;
    case ML_HUMAN_UNCHANGED: h->stats.unchanged++; break;
    default:
        h->stats.failures[o->code]++;
        h->code = o->code;
        snprintf(h->last_error, sizeof h->last_error, "%s", o->err.msg);
        h->last_error_at = now;
        h->stale = h->snap != NULL;
        if (o->code != ML_FETCH_E_CANCELLED) {
            h->failures++;
            h->next_attempt_at = now + backoff_seconds(h, h->failures);
        }
        return;
    }
    h->failures = 0;
    h->next_attempt_at = 0;
    h->cur = o->next;
    h->stale = 0;
    h->code = ML_FETCH_OK;
    h->last_error[0] = '\0';
    h->last_error_at = 0;
}

static void fill_status(const ml_human *h, ml_human_status *st) {
    memset(st, 0, sizeof *st);
    st->url = h->url;
    st->cached = h->snap != NULL;
    st->stale = h->stale;
    st->from_cache = 1;
    st->outcome = ML_HUMAN_SERVED;
    if (h->snap) {
        st->fetched_at = h->cur.fetched_at;
        st->validated_at = h->cur.validated_at;
        st->bytes = h->cur.bytes;
        memcpy(st->sha256, h->cur.sha256, sizeof st->sha256);
    }
    st->code = h->code;
    memcpy(st->last_error, h->last_error, sizeof st->last_error);
    st->last_error_at = h->last_error_at;
    memcpy(st->notice, h->notice, sizeof st->notice);
    st->available = h->available;
    memcpy(st->unavailable, h->unavailable, sizeof st->unavailable);
    st->fetching = h->fetching;
    time_t now = time(NULL);
    st->retry_after = h->next_attempt_at > now ? (long)(h->next_attempt_at - now) : 0;
    time_t refresh_at = h->fetch_end > 0 && h->cfg.min_refresh_seconds > 0
                            ? (time_t)h->fetch_end + h->cfg.min_refresh_seconds + 1
                            : 0;
    st->next_refresh_at = refresh_at > now ? refresh_at : 0;
}

/* Runs a fetch as the one fetching thread (lock held on entry and exit). The download is
 * registered in cfg.coalesce for as long as `fetching` is set, and ended before it is
 * cleared, so a waiter called back can never find the next download unregistered. */
static void run_fetch(ml_human *h) {
    h->fetching = 1;
    if (h->cfg.coalesce) ml_coalesce_begin(h->cfg.coalesce, ML_HUMAN_FETCH_KEY);
    meta cur = h->cur;
    int have = h->snap != NULL;
    pthread_mutex_unlock(&h->lock);
    fetch_outcome o;
    do_fetch(h, have ? &cur : NULL, &o);
    pthread_mutex_lock(&h->lock);
    apply(h, &o);
    /* The waiters' callbacks only re-queue their requests; none takes this lock. */
    if (h->cfg.coalesce) ml_coalesce_end(h->cfg.coalesce, ML_HUMAN_FETCH_KEY);
    h->fetching = 0;
    h->fetch_gen++;
    pthread_cond_broadcast(&h->fetched);
}

/* Waits for the running fetch to end (lock held). */
static void wait_fetch(ml_human *h) {
    uint64_t gen = h->fetch_gen;
    h->stats.waits++;
    while (h->fetch_gen == gen) pthread_cond_wait(&h->fetched, &h->lock);
}

/* The status after a fetch this call ran or waited for; 0 if it succeeded. */
static int fetch_status(const ml_human *h, ml_human_status *st, ml_err *err) {
    fill_status(h, st);
    st->outcome = h->last_outcome;
    st->from_cache = h->last_outcome != ML_HUMAN_DOWNLOADED;
    if (h->last_outcome != ML_HUMAN_FAILED) return 0;
    ml_errf(err, "%s", h->last_error);
    return -1;
}

static int needs_revalidation(const ml_human *h, time_t now) {
    long max_age = h->cfg.max_age_seconds;
    if (max_age < 0 || now - h->cur.validated_at < max_age) return 0;
    /* backing off after a failed attempt, but never longer than max_age */
    return !(h->stale && now < h->next_attempt_at && now - h->last_error_at < max_age);
}

/* The answer without a usable cache folder (lock held). */
static int unavailable(const ml_human *h, ml_human_status *st, ml_err *err) {
    fill_status(h, st);
    st->code = ML_FETCH_E_CACHE_IO;
    ml_errf(err, "%s", h->unavailable);
    return -1;
}

static int get(ml_human *h, ml_human_snapshot **snap, ml_human_status *st, ml_err *err,
               int no_wait) {
    *snap = NULL;
    pthread_mutex_lock(&h->lock);
    int rc;
    time_t now = time(NULL);
    if (!h->available) {
        rc = unavailable(h, st, err);
    } else if (h->snap && (h->fetching || !needs_revalidation(h, now))) {
        h->stats.cache_hits++;
        fill_status(h, st);
        rc = 0;
    } else if (!h->snap && h->fetching && no_wait) {
        fill_status(h, st);
        rc = ML_HUMAN_BUSY;
    } else if (!h->snap && !h->fetching && now < h->next_attempt_at) {
        /* backing off: the last error stands until the next attempt is allowed */
        fetch_status(h, st, err);
        rc = -1;
    } else {
        if (h->fetching)
            wait_fetch(h);
        else
            run_fetch(h);
        fetch_status(h, st, err);
        /* A failed revalidation still serves the copy it could not confirm; without a copy
         * the fetch failed and err says why. */
        rc = h->snap ? 0 : -1;
    }
    if (rc == 0) {
        *snap = h->snap;
        __atomic_add_fetch(&h->snap->refs, 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}

int ml_human_get(ml_human *h, ml_human_snapshot **snap, ml_human_status *st, ml_err *err) {
    return get(h, snap, st, err, h->cfg.no_wait);
}

int ml_human_get_waiting(ml_human *h, ml_human_snapshot **snap, ml_human_status *st,
                         ml_err *err) {
    return get(h, snap, st, err, 0);
}

int ml_human_refresh_since(ml_human *h, double since, ml_human_status *st, ml_err *err) {
    pthread_mutex_lock(&h->lock);
    int rc;
    double now = unix_now();
    if (!h->available) {
        rc = unavailable(h, st, err);
    } else if (h->fetching && h->cfg.no_wait) {
        fill_status(h, st);
        rc = ML_HUMAN_BUSY;
    } else if (h->fetching) {
        wait_fetch(h);
        rc = fetch_status(h, st, err);
        st->shared = 1;
    } else if (since > 0 && h->fetch_end >= since) {
        rc = fetch_status(h, st, err); /* the download this request waited for */
        st->shared = 1;
    } else if (since > 0 && h->fetch_end > 0 && h->cfg.min_refresh_seconds > 0 &&
               now < h->fetch_end + (double)h->cfg.min_refresh_seconds) {
        fill_status(h, st);
        rc = ML_HUMAN_RATE_LIMITED;
    } else {
        run_fetch(h);
        rc = fetch_status(h, st, err);
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}

int ml_human_refresh(ml_human *h, ml_human_status *st, ml_err *err) {
    return ml_human_refresh_since(h, 0, st, err);
}

void ml_human_cancel(ml_human *h) { __atomic_store_n(&h->cancel, 1, __ATOMIC_RELAXED); }

void ml_human_status_get(ml_human *h, ml_human_status *st) {
    pthread_mutex_lock(&h->lock);
    fill_status(h, st);
    pthread_mutex_unlock(&h->lock);
}

void ml_human_stats_get(ml_human *h, ml_human_stats *out) {
    pthread_mutex_lock(&h->lock);
    *out = h->stats;
    pthread_mutex_unlock(&h->lock);
}

const char *ml_human_csv_path(const ml_human *h) { return h->disk.csv_path; }
const char *ml_human_meta_path(const ml_human *h) { return h->disk.meta_path; }

/* ---------------------------------------------------------------------------------------- */
/* Life cycle                                                                               */

static void human_free(ml_human *h) {
    free(h->url);
    free(h->user_agent);
    ml_human_disk_free(&h->disk);
    free(h);
}

ml_human *ml_human_open(const ml_human_config *cfg, ml_err *err) {
    if (!cfg->url || !cfg->url[0])
        return ml_errp(err, "human data: no URL configured (--human-url)");
    if (!ml_fetch_url_allowed(cfg->url))
        return ml_errp(err, "human data: --human-url %s is not an http:// or https:// URL "
                            "(no other scheme is fetched)", cfg->url);
    if (!cfg->cache_dir || !cfg->cache_dir[0])
        return ml_errp(err, "human data: no cache folder configured (--cache-dir)");
    if (cfg->max_bytes == 0 || cfg->connect_timeout_ms <= 0 || cfg->total_timeout_ms <= 0)
        return ml_errp(err, "human data: max_bytes, connect and total timeouts must be positive");
    ml_human *h = calloc(1, sizeof *h);
    if (!h) return ml_errp(err, "human data: out of memory");
    h->cfg = *cfg;
    h->url = strdup(cfg->url);
    h->user_agent = strdup(cfg->user_agent ? cfg->user_agent : ML_HUMAN_USER_AGENT);
    if (!h->url || !h->user_agent) {
        human_free(h);
        return ml_errp(err, "human data: out of memory");
    }
    if (ml_human_disk_init(&h->disk, cfg->cache_dir, err) != 0) {
        human_free(h);
        return NULL;
    }
    ml_err dir_err;
    h->available = ml_human_disk_make_dirs(&h->disk, &dir_err) == 0;
    if (!h->available) {
        ml_err why;
        ml_errf(&why, "the human data is unavailable: %s; fix --cache-dir and restart",
                dir_err.msg);
        memcpy(h->unavailable, why.msg, sizeof h->unavailable);
    }
    h->cfg.url = h->url;
    h->cfg.cache_dir = h->disk.dir;
    h->cfg.user_agent = h->user_agent;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        human_free(h);
        return ml_errp(err, "human data: libcurl failed to initialise");
    }
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->fetched, NULL);
    if (h->available) {
        ml_human_disk_remove_leftovers(&h->disk);
        load_cached(h);
    }
    return h;
}

void ml_human_free(ml_human *h) {
    if (!h) return;
    ml_human_snapshot_unref(h->snap);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->fetched);
    curl_global_cleanup();
    human_free(h);
}
