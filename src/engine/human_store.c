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
 * result, callers with a copy are answered at once. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "engine/human_store.h"
#include "metalign/human_curves.h"

#define TMP_PREFIX ".human-tmp-"

/* What human.json records about the copy. */
typedef struct meta {
    time_t fetched_at, validated_at;
    size_t bytes;
    char sha256[ML_SHA256_HEX_LEN];
    char etag[256];
    char last_modified[128];
} meta;

struct ml_human {
    ml_human_config cfg; /* strings point to the copies below */
    char *url, *cache_dir, *user_agent;
    char *csv_path, *meta_path;

    pthread_mutex_t lock;
    pthread_cond_t fetched;
    int fetching;
    uint64_t fetch_gen;  /* bumped when a fetch ends */

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

const char *ml_fetch_code_name(ml_fetch_code c) {
    static const char *const names[ML_FETCH_N_CODES] = {
        [ML_FETCH_OK] = "ok",
        [ML_FETCH_E_BAD_URL] = "upstream_bad_url",
        [ML_FETCH_E_DNS] = "upstream_dns",
        [ML_FETCH_E_REFUSED] = "upstream_refused",
        [ML_FETCH_E_TIMEOUT] = "upstream_timeout",
        [ML_FETCH_E_TLS] = "upstream_tls",
        [ML_FETCH_E_STATUS] = "upstream_status",
        [ML_FETCH_E_REDIRECTS] = "upstream_redirects",
        [ML_FETCH_E_TOO_LARGE] = "upstream_too_large",
        [ML_FETCH_E_TRUNCATED] = "upstream_truncated",
        [ML_FETCH_E_NOT_CSV] = "upstream_not_csv",
        [ML_FETCH_E_BAD_CSV] = "upstream_bad_csv",
        [ML_FETCH_E_NETWORK] = "upstream_error",
        [ML_FETCH_E_CACHE_IO] = "cache_io",
        [ML_FETCH_E_INTERNAL] = "internal",
    };
    return (unsigned)c < ML_FETCH_N_CODES ? names[c] : "internal";
}

const char *ml_human_outcome_name(ml_human_outcome o) {
    static const char *const names[] = {"served", "downloaded", "not_modified", "unchanged",
                                        "failed"};
    return (unsigned)o < sizeof names / sizeof names[0] ? names[o] : "failed";
}

void ml_human_format_time(time_t t, char out[21]) {
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int parse_time(const char *s, time_t *out) {
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end) return -1;
    *out = timegm(&tm);
    return 0;
}

void ml_human_config_defaults(ml_human_config *c) {
    memset(c, 0, sizeof *c);
    c->max_age_seconds = 86400;
    c->retry_seconds = 60;
    c->connect_timeout_ms = 10000;
    c->total_timeout_ms = 60000;
    c->max_bytes = (size_t)64 << 20;
}

/* ---------------------------------------------------------------------------------------- */
/* Files                                                                                    */

static int fsync_dir(const char *dir, ml_err *err) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ml_err_errno(err, "%s: cannot open the cache folder to sync it", dir);
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return ml_err_errno(err, "%s: cannot sync the cache folder", dir);
    return 0;
}

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* A new empty temp file in the cache folder: *fd and its path. */
static int make_temp(const ml_human *h, const char *kind, char *path, size_t cap, int *fd,
                     ml_err *err) {
    if ((size_t)snprintf(path, cap, "%s/" TMP_PREFIX "%s-XXXXXX", h->cache_dir, kind) >= cap)
        return ml_errf(err, "%s: the cache folder's path is too long", h->cache_dir);
    *fd = mkostemp(path, O_CLOEXEC);
    if (*fd < 0)
        return ml_err_errno(err, "%s: cannot create a temporary file in the cache folder "
                                 "(check that it is writable)", h->cache_dir);
    return 0;
}

/* Reads the whole of fd (size bytes expected) into a new buffer. */
static int read_fd(int fd, size_t size, char **out, const char *path, ml_err *err) {
    char *buf = malloc(size ? size : 1);
    if (!buf) return ml_errf(err, "%s: out of memory for %zu bytes", path, size);
    size_t got = 0;
    while (got < size) {
        ssize_t r = pread(fd, buf + got, size - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            free(buf);
            return ml_err_errno(err, "%s: read failed", path);
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    if (got != size) {
        free(buf);
        return ml_errf(err, "%s: has %zu bytes, expected %zu", path, got, size);
    }
    *out = buf;
    return 0;
}

static json_t *meta_json(const ml_human *h, const meta *m) {
    char fetched[21], validated[21];
    ml_human_format_time(m->fetched_at, fetched);
    ml_human_format_time(m->validated_at, validated);
    return json_pack("{s:i,s:s,s:s,s:s,s:I,s:s,s:s,s:s}", "format", 1, "url", h->url,
                     "fetched_at", fetched, "validated_at", validated, "bytes",
                     (json_int_t)m->bytes, "sha256", m->sha256, "etag", m->etag,
                     "last_modified", m->last_modified);
}

/* Writes the metadata to a temp file, synced; the caller renames it into place. */
static int write_meta_temp(const ml_human *h, const meta *m, char *tmp, size_t cap, ml_err *err) {
    json_t *doc = meta_json(h, m);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    if (!text) return ml_errf(err, "%s: out of memory", h->meta_path);
    int fd = -1;
    if (make_temp(h, "json", tmp, cap, &fd, err) != 0) {
        free(text);
        return -1;
    }
    int rc = write_all(fd, text, strlen(text)) == 0 && write_all(fd, "\n", 1) == 0 &&
                     fsync(fd) == 0
                 ? 0
                 : ml_err_errno(err, "%s: cannot write the metadata", tmp);
    free(text);
    close(fd);
    if (rc != 0) unlink(tmp);
    return rc;
}

/* Replaces human.json alone (after a 304 or an identical download). */
static int store_meta(const ml_human *h, const meta *m, ml_err *err) {
    char tmp[PATH_MAX];
    if (write_meta_temp(h, m, tmp, sizeof tmp, err) != 0) return -1;
    if (rename(tmp, h->meta_path) != 0) {
        ml_err_errno(err, "%s: cannot rename %s into place", h->meta_path, tmp);
        unlink(tmp);
        return -1;
    }
    return fsync_dir(h->cache_dir, err);
}

/* Installs a downloaded CSV (synced temp file csv_tmp) with its metadata: the metadata temp
 * first, then the CSV rename, then the metadata rename, so a crash in between leaves a pair
 * whose sha256 disagrees, which the next start sets aside instead of serving. */
static int commit(const ml_human *h, const char *csv_tmp, const meta *m, ml_err *err,
                  char *notice) {
    char meta_tmp[PATH_MAX];
    if (write_meta_temp(h, m, meta_tmp, sizeof meta_tmp, err) != 0) return -1;
    if (rename(csv_tmp, h->csv_path) != 0) {
        ml_err_errno(err, "%s: cannot rename the download into place", h->csv_path);
        unlink(meta_tmp);
        return -1;
    }
    ml_err e2;
    if (rename(meta_tmp, h->meta_path) != 0) {
        /* The new CSV is in place but described by the old metadata: the copy in memory is
         * good, the one on disk will be set aside at the next start. */
        ml_err_errno(&e2, "%s: cannot rename %s into place; the cached copy will be downloaded "
                          "again after a restart", h->meta_path, meta_tmp);
        unlink(meta_tmp);
        snprintf(notice, ML_ERR_MAX, "%s", e2.msg);
        return 0;
    }
    if (fsync_dir(h->cache_dir, &e2) != 0) snprintf(notice, ML_ERR_MAX, "%s", e2.msg);
    return 0;
}

/* Renames path to <path>.corrupt-<UTC time>[-N]; the new name goes to out. */
static int rename_aside(const char *path, char *out, size_t cap) {
    char stamp[21];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    for (int i = 0; i < 100; i++) {
        int n = i ? snprintf(out, cap, "%s.corrupt-%s-%d", path, stamp, i)
                  : snprintf(out, cap, "%s.corrupt-%s", path, stamp);
        if (n < 0 || (size_t)n >= cap) return -1;
        struct stat st;
        if (lstat(out, &st) != 0 && errno == ENOENT) return rename(path, out);
    }
    return -1;
}

/* Moves the cached pair out of the way and says so in the notice. */
static void set_aside(ml_human *h, const char *reason) {
    char csv_new[PATH_MAX] = "", meta_new[PATH_MAX] = "";
    struct stat st;
    int csv_ok = 1, meta_ok = 1;
    if (lstat(h->csv_path, &st) == 0)
        csv_ok = rename_aside(h->csv_path, csv_new, sizeof csv_new) == 0;
    if (lstat(h->meta_path, &st) == 0)
        meta_ok = rename_aside(h->meta_path, meta_new, sizeof meta_new) == 0;
    h->stats.set_aside++;
    ml_err note;
    if (!csv_ok || !meta_ok) {
        /* Cannot move it: removing is the only way to make sure it is never served. */
        if (!csv_ok) unlink(h->csv_path);
        if (!meta_ok) unlink(h->meta_path);
        ml_errf(&note, "the cached copy %s was deleted (it could not be renamed aside): %s; it "
                       "will be downloaded again on first use", h->csv_path, reason);
    } else {
        ml_errf(&note, "the cached copy %s was set aside as %s: %s; it will be downloaded again "
                       "on first use", h->csv_path, csv_new[0] ? csv_new : meta_new, reason);
    }
    memcpy(h->notice, note.msg, sizeof h->notice);
}

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

void ml_human_snapshot_release(ml_human_snapshot *s) {
    if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    ml_human_data_free(&s->data);
    free(s);
}

/* Reads and checks human.json; 0 with *m, else the reason in err. *other_url is set when the
 * file is fine but describes another URL. */
static int read_meta(const ml_human *h, meta *m, int *other_url, ml_err *err) {
    *other_url = 0;
    json_error_t je;
    json_t *doc = json_load_file(h->meta_path, 0, &je);
    if (!doc) return ml_errf(err, "its metadata %s is not valid JSON (%s, line %d)",
                             h->meta_path, je.text, je.line);
    const char *url, *fetched, *validated, *sha, *etag, *lm;
    json_int_t bytes;
    int rc = 0;
    memset(m, 0, sizeof *m);
    if (json_unpack(doc, "{s:s,s:s,s:s,s:I,s:s,s:s,s:s}", "url", &url, "fetched_at", &fetched,
                    "validated_at", &validated, "bytes", &bytes, "sha256", &sha, "etag", &etag,
                    "last_modified", &lm) != 0 ||
        bytes < 0 || strlen(sha) != 64 || parse_time(fetched, &m->fetched_at) != 0 ||
        parse_time(validated, &m->validated_at) != 0) {
        rc = ml_errf(err, "its metadata %s lacks a field or has a malformed one", h->meta_path);
    } else if (strcmp(url, h->url) != 0) {
        *other_url = 1;
        rc = ml_errf(err, "the cached copy %s is of %s, not %s; it is not used (a successful "
                          "download replaces it)", h->csv_path, url, h->url);
    } else {
        m->bytes = (size_t)bytes;
        snprintf(m->sha256, sizeof m->sha256, "%s", sha);
        snprintf(m->etag, sizeof m->etag, "%s", etag);
        snprintf(m->last_modified, sizeof m->last_modified, "%s", lm);
    }
    json_decref(doc);
    return rc;
}

/* Loads the cached copy at start-up, or sets it aside with the reason. */
static void load_cached(ml_human *h) {
    struct stat st, meta_st;
    int have_csv = lstat(h->csv_path, &st) == 0;
    int have_meta = lstat(h->meta_path, &meta_st) == 0;
    if (!have_csv && !have_meta) return;
    ml_err e;
    if (!have_meta) {
        set_aside(h, "it has no metadata file " ML_HUMAN_META_NAME);
        return;
    }
    meta m;
    int other_url;
    if (read_meta(h, &m, &other_url, &e) != 0) {
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
    int fd = open(h->csv_path, O_RDONLY | O_CLOEXEC);
    char *buf = NULL;
    if (fd < 0 || read_fd(fd, m.bytes, &buf, h->csv_path, &e) != 0) {
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
    int rc = ml_human_csv_parse(buf, m.bytes, h->csv_path, &data, &code, &e);
    free(buf);
    if (rc != 0) {
        set_aside(h, e.msg);
        return;
    }
    h->snap = snapshot_new(&data, &m);
    if (!h->snap) {
        ml_human_data_free(&data);
        snprintf(h->notice, sizeof h->notice, "%s: out of memory loading the cached copy",
                 h->csv_path);
        return;
    }
    h->cur = m;
    h->stats.disk_loads++;
}

/* Removes temp files a crash left behind (only ours: the TMP_PREFIX names). */
static void remove_leftovers(const ml_human *h) {
    DIR *d = opendir(h->cache_dir);
    if (!d) return;
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d)))
        if (strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0 &&
            (size_t)snprintf(path, sizeof path, "%s/%s", h->cache_dir, e->d_name) < sizeof path)
            unlink(path);
    closedir(d);
}

static int make_dirs(const char *dir, ml_err *err) {
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s", dir) >= sizeof path)
        return ml_errf(err, "%s: the cache folder's path is too long", dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return ml_err_errno(err, "%s: cannot create the cache folder (--cache-dir)", path);
        *p = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return ml_errf(err, "%s: the cache folder (--cache-dir) is not a folder", dir);
    return 0;
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
    if (make_temp(h, "csv", tmp, sizeof tmp, &fd, &o->err) != 0) {
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
    };
    ml_fetch_result res;
    time_t now = time(NULL);
    char *buf = NULL;
    ml_human_data data = {0};
    if (ml_fetch_to_fd(&rq, fd, &res, &o->err) != 0) {
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
        if (store_meta(h, &o->next, &e2) != 0) snprintf(o->notice, sizeof o->notice, "%s", e2.msg);
        return;
    }
    if (read_fd(fd, res.bytes, &buf, tmp, &o->err) != 0) {
        o->code = ML_FETCH_E_CACHE_IO;
        goto fail;
    }
    ml_fetch_code code;
    if (ml_human_csv_parse(buf, res.bytes, h->url, &data, &code, &o->err) != 0) {
        o->code = code;
        if (res.content_type[0]) {
            char msg[ML_ERR_MAX];
            memcpy(msg, o->err.msg, sizeof msg);
            ml_errf(&o->err, "%s; the server said Content-Type: %s", msg, res.content_type);
        }
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
    if (commit(h, tmp, &o->next, &o->err, o->notice) != 0) {
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

/* Applies a fetch's result to the store (lock held). */
static void apply(ml_human *h, fetch_outcome *o) {
    time_t now = time(NULL);
    h->stats.attempts++;
    h->last_outcome = o->outcome;
    if (o->notice[0]) snprintf(h->notice, sizeof h->notice, "%s", o->notice);
    switch (o->outcome) {
    case ML_HUMAN_DOWNLOADED:
        h->stats.downloaded++;
        ml_human_snapshot_release(h->snap);
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
        return;
    }
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
}

/* Runs a fetch as the one fetching thread (lock held on entry and exit). */
static void run_fetch(ml_human *h) {
    h->fetching = 1;
    meta cur = h->cur;
    int have = h->snap != NULL;
    pthread_mutex_unlock(&h->lock);
    fetch_outcome o;
    do_fetch(h, have ? &cur : NULL, &o);
    pthread_mutex_lock(&h->lock);
    apply(h, &o);
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
    long backoff = h->cfg.retry_seconds < max_age ? h->cfg.retry_seconds : max_age;
    return !(h->stale && now - h->last_error_at < backoff);
}

int ml_human_get(ml_human *h, ml_human_snapshot **snap, ml_human_status *st, ml_err *err) {
    *snap = NULL;
    pthread_mutex_lock(&h->lock);
    int rc;
    if (h->snap && (h->fetching || !needs_revalidation(h, time(NULL)))) {
        h->stats.cache_hits++;
        fill_status(h, st);
        rc = 0;
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

int ml_human_refresh(ml_human *h, ml_human_status *st, ml_err *err) {
    pthread_mutex_lock(&h->lock);
    if (h->fetching)
        wait_fetch(h);
    else
        run_fetch(h);
    int rc = fetch_status(h, st, err);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

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

const char *ml_human_csv_path(const ml_human *h) { return h->csv_path; }
const char *ml_human_meta_path(const ml_human *h) { return h->meta_path; }

/* ---------------------------------------------------------------------------------------- */
/* Life cycle                                                                               */

static void human_free(ml_human *h) {
    free(h->url);
    free(h->cache_dir);
    free(h->user_agent);
    free(h->csv_path);
    free(h->meta_path);
    free(h);
}

ml_human *ml_human_open(const ml_human_config *cfg, ml_err *err) {
    if (!cfg->url || !cfg->url[0]) {
        ml_errf(err, "human data: no URL configured (--human-url)");
        return NULL;
    }
    if (!cfg->cache_dir || !cfg->cache_dir[0]) {
        ml_errf(err, "human data: no cache folder configured (--cache-dir)");
        return NULL;
    }
    if (cfg->max_bytes == 0 || cfg->connect_timeout_ms <= 0 || cfg->total_timeout_ms <= 0) {
        ml_errf(err, "human data: max_bytes, connect and total timeouts must be positive");
        return NULL;
    }
    if (make_dirs(cfg->cache_dir, err) != 0) return NULL;
    ml_human *h = calloc(1, sizeof *h);
    if (!h) {
        ml_errf(err, "human data: out of memory");
        return NULL;
    }
    h->cfg = *cfg;
    h->url = strdup(cfg->url);
    h->cache_dir = strdup(cfg->cache_dir);
    h->user_agent = strdup(cfg->user_agent ? cfg->user_agent : ML_HUMAN_USER_AGENT);
    if (h->cache_dir) {
        size_t n = strlen(h->cache_dir);
        while (n > 1 && h->cache_dir[n - 1] == '/') h->cache_dir[--n] = '\0';
        if (asprintf(&h->csv_path, "%s/" ML_HUMAN_CSV_NAME, h->cache_dir) < 0) h->csv_path = NULL;
        if (asprintf(&h->meta_path, "%s/" ML_HUMAN_META_NAME, h->cache_dir) < 0)
            h->meta_path = NULL;
    }
    if (!h->url || !h->cache_dir || !h->user_agent || !h->csv_path || !h->meta_path) {
        ml_errf(err, "human data: out of memory");
        human_free(h);
        return NULL;
    }
    h->cfg.url = h->url;
    h->cfg.cache_dir = h->cache_dir;
    h->cfg.user_agent = h->user_agent;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ml_errf(err, "human data: libcurl failed to initialise");
        human_free(h);
        return NULL;
    }
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->fetched, NULL);
    remove_leftovers(h);
    load_cached(h);
    return h;
}

void ml_human_close(ml_human *h) {
    if (!h) return;
    ml_human_snapshot_release(h->snap);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->fetched);
    curl_global_cleanup();
    human_free(h);
}

/* ---------------------------------------------------------------------------------------- */
/* JSON and metrics                                                                         */

static json_t *time_or_null(time_t t) {
    if (!t) return json_null();
    char s[21];
    ml_human_format_time(t, s);
    return json_string(s);
}

static json_t *last_error_json(const ml_human_status *st) {
    if (!st->last_error[0]) return json_null();
    return json_pack("{s:s,s:s,s:o}", "code", ml_fetch_code_name(st->code), "message",
                     st->last_error, "at", time_or_null(st->last_error_at));
}

json_t *ml_human_source_json(const ml_human_status *st) {
    return json_pack("{s:s,s:o,s:o,s:I,s:s,s:b,s:b,s:s,s:o}", "url", st->url, "fetched_at",
                     time_or_null(st->fetched_at), "validated_at",
                     time_or_null(st->validated_at), "bytes", (json_int_t)st->bytes, "sha256",
                     st->sha256, "from_cache", st->from_cache, "stale", st->stale, "outcome",
                     ml_human_outcome_name(st->outcome), "last_error", last_error_json(st));
}

json_t *ml_human_status_json(const ml_human_status *st) {
    return json_pack("{s:s,s:b,s:o,s:o,s:o,s:o,s:b,s:o,s:o}", "url", st->url, "cached",
                     st->cached, "fetched_at", time_or_null(st->fetched_at), "validated_at",
                     time_or_null(st->validated_at), "bytes",
                     st->cached ? json_integer((json_int_t)st->bytes) : json_null(), "sha256",
                     st->cached ? json_string(st->sha256) : json_null(), "stale", st->stale,
                     "last_error", last_error_json(st), "notice",
                     st->notice[0] ? json_string(st->notice) : json_null());
}

void ml_human_render_metrics(ml_human *h, ml_buf *out) {
    ml_human_stats s;
    ml_human_status st;
    pthread_mutex_lock(&h->lock);
    s = h->stats;
    fill_status(h, &st);
    pthread_mutex_unlock(&h->lock);
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
