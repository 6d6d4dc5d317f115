/* The human-data store over loopback: download on first use, served from memory afterwards,
 * from disk after a restart with the server gone, revalidated with conditional GETs, one
 * download for eight simultaneous first requests, every upstream failure reported with its
 * code (and, when a copy exists, the copy kept, byte for byte, and marked stale), corrupt
 * copies set aside at start-up and fetched again. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"

#include "human_test.h"
#include "engine/human_disk.h"
#include "engine/human_metrics.h"
#include "engine/human_store.h"
#include "metalign/human_curves.h"
#include "testsrv.h"

static testsrv *srv;
static char *body;
static size_t body_len;
static char body_sha[ML_SHA256_HEX_LEN];
static size_t body_rows; /* rows with an answer, from reference.json (pandas) */

/* A fresh cache folder under /tmp. */
static void new_dir(char *dir) {
    strcpy(dir, "/tmp/mlhuman-XXXXXX");
    if (!mkdtemp(dir)) perror("mkdtemp");
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[600];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

/* Files in dir whose names start with prefix. */
static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

static void file_sha(const char *path, char out[ML_SHA256_HEX_LEN]) {
    size_t len;
    char *buf = read_file(path, &len);
    if (buf) ml_sha256_hex(buf, len, out);
    else strcpy(out, "missing");
    free(buf);
}

static long retry_min = -1; /* >= 0: the back-off of the stores opened now */

static ml_human *open_store(const char *dir, const char *path, long max_age) {
    char u[256];
    testsrv_url(srv, path, u, sizeof u);
    ml_human_config c;
    ml_human_config_defaults(&c);
    if (retry_min >= 0) c.retry_min_seconds = retry_min;
    c.url = u;
    c.cache_dir = dir;
    c.max_age_seconds = max_age;
    c.connect_timeout_ms = 2000;
    c.total_timeout_ms = 1500;
    c.max_bytes = 1 << 20;
    ml_err err = {{0}};
    ml_human *h = ml_human_open(&c, &err);
    CHECK_MSG(h != NULL, "%s", err.msg);
    return h;
}

/* A get that must succeed; returns the snapshot (release it). */
static ml_human_snapshot *get_ok(ml_human *h, ml_human_status *st) {
    ml_human_snapshot *s = NULL;
    ml_err err = {{0}};
    int rc = ml_human_get(h, &s, st, &err);
    CHECK_MSG(rc == 0 && s, "get failed: %s", err.msg);
    return s;
}

static void test_first_get_downloads_then_memory(void) {
    char dir[64];
    new_dir(dir);
    testsrv_reset_counts(srv);
    ml_human *h = open_store(dir, "/data.csv", 3600);
    ml_human_status st;
    ml_human_status_get(h, &st);
    CHECK(!st.cached && st.fetched_at == 0);
    CHECK(testsrv_count(srv, "/data.csv") == 0); /* open never touches the network */

    ml_human_snapshot *s = get_ok(h, &st);
    CHECK(st.outcome == ML_HUMAN_DOWNLOADED && !st.from_cache && st.cached && !st.stale);
    CHECK(s && s->data.n_rows == body_rows && strcmp(s->sha256, body_sha) == 0);
    CHECK(st.bytes == body_len && strcmp(st.sha256, body_sha) == 0);
    CHECK(st.fetched_at > 0 && st.validated_at == st.fetched_at);
    ml_human_snapshot_unref(s);

    char sha[ML_SHA256_HEX_LEN];
    file_sha(ml_human_csv_path(h), sha);
    CHECK(strcmp(sha, body_sha) == 0);
    json_error_t je;
    json_t *meta = json_load_file(ml_human_meta_path(h), 0, &je);
    CHECK(meta != NULL);
    CHECK(strcmp(json_string_value(json_object_get(meta, "url")), st.url) == 0);
    CHECK(json_integer_value(json_object_get(meta, "bytes")) == (json_int_t)body_len);
    CHECK(strcmp(json_string_value(json_object_get(meta, "sha256")), body_sha) == 0);
    CHECK(strcmp(json_string_value(json_object_get(meta, "etag")), "\"v1\"") == 0);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(meta, "last_modified")), "GMT");
    CHECK(strlen(json_string_value(json_object_get(meta, "fetched_at"))) == 20);
    json_decref(meta);
    CHECK(count_files(dir, ".human-tmp-") == 0);

    s = get_ok(h, &st);
    CHECK(st.outcome == ML_HUMAN_SERVED && st.from_cache);
    ml_human_snapshot_unref(s);
    CHECK(testsrv_count(srv, "/data.csv") == 1);
    ml_human_stats stats;
    ml_human_stats_get(h, &stats);
    CHECK(stats.attempts == 1 && stats.downloaded == 1 && stats.cache_hits == 1);
    ml_human_free(h);
    remove_dir(dir);
}

/* A restart serves the copy from disk: the server that provided it is gone. */
static void test_restart_serves_from_disk(void) {
    char dir[64], u[256];
    new_dir(dir);
    testsrv *gone = testsrv_start();
    testsrv_set_body(gone, body, body_len);
    testsrv_url(gone, "/data.csv", u, sizeof u);
    ml_human_config c;
    ml_human_config_defaults(&c);
    c.url = u;
    c.cache_dir = dir;
    c.total_timeout_ms = 1500;
    ml_err err;
    ml_human *h = ml_human_open(&c, &err);
    ml_human_status st;
    ml_human_snapshot *s = get_ok(h, &st);
    time_t fetched = st.fetched_at;
    ml_human_snapshot_unref(s);
    ml_human_free(h);
    testsrv_stop(gone); /* its port now refuses connections */

    h = ml_human_open(&c, &err);
    CHECK_MSG(h != NULL, "%s", err.msg);
    ml_human_status_get(h, &st);
    CHECK(st.cached && st.bytes == body_len && st.fetched_at == fetched && !st.notice[0]);
    s = get_ok(h, &st);
    CHECK(st.outcome == ML_HUMAN_SERVED && st.from_cache && !st.stale);
    CHECK(s && s->data.n_rows == body_rows && strcmp(s->sha256, body_sha) == 0);
    ml_human_snapshot_unref(s);
    ml_human_stats stats;
    ml_human_stats_get(h, &stats);
    CHECK(stats.attempts == 0 && stats.disk_loads == 1);
    /* Proof that the network was needed for nothing: a forced refresh fails. */
    CHECK(ml_human_refresh(h, &st, &err) == -1 && st.code == ML_FETCH_E_REFUSED);
    CHECK(st.cached && st.stale);
    ml_human_free(h);
    remove_dir(dir);
}

typedef struct failure_case {
    const char *mode;
    ml_fetch_code code;
    const char *text;
} failure_case;

static const failure_case failures[] = {
    {"404", ML_FETCH_E_STATUS, "HTTP 404"},
    {"500", ML_FETCH_E_STATUS, "HTTP 500"},
    {"stall", ML_FETCH_E_TIMEOUT, "timed out"},
    {"truncate", ML_FETCH_E_TRUNCATED, "closed before the body was complete"},
    {"big", ML_FETCH_E_TOO_LARGE, "limit of 1048576 bytes"},
    {"big_chunked", ML_FETCH_E_TOO_LARGE, "limit of 1048576 bytes"},
    {"html", ML_FETCH_E_NOT_CSV, "HTML"},
    {"binary", ML_FETCH_E_NOT_CSV, "binary"},
    {"empty", ML_FETCH_E_NOT_CSV, "empty"},
    {"badrow", ML_FETCH_E_BAD_CSV, "line 3"},
};
#define N_FAILURES (sizeof failures / sizeof failures[0])

static void test_failures_without_a_copy(void) {
    retry_min = 0; /* each call may ask again (test_failures_back_off checks the wait) */
    for (size_t i = 0; i < N_FAILURES; i++) {
        char dir[64];
        new_dir(dir);
        ml_human *h = open_store(dir, "/data.csv", 3600);
        testsrv_set_mode(srv, failures[i].mode);
        ml_human_snapshot *s = (ml_human_snapshot *)1;
        ml_human_status st;
        ml_err err = {{0}};
        CHECK_MSG(ml_human_get(h, &s, &st, &err) == -1, "mode %s served", failures[i].mode);
        testsrv_set_mode(srv, "ok");
        CHECK(s == NULL && !st.cached);
        CHECK_MSG(st.code == failures[i].code, "mode %s: %s", failures[i].mode,
                  ml_fetch_code_name(st.code));
        CHECK_STR_CONTAINS(err.msg, failures[i].text);
        CHECK_STR_CONTAINS(err.msg, st.url);
        CHECK(strcmp(st.last_error, err.msg) == 0 && st.outcome == ML_HUMAN_FAILED);
        printf("# %-12s -> %s: %s\n", failures[i].mode, ml_fetch_code_name(st.code), err.msg);
        /* Nothing half-written is left, and the next call tries again and succeeds. */
        CHECK(count_files(dir, "") == 2); /* . and .. */
        s = get_ok(h, &st);
        CHECK(st.outcome == ML_HUMAN_DOWNLOADED && st.code == ML_FETCH_OK && !st.last_error[0]);
        ml_human_snapshot_unref(s);
        ml_human_free(h);
        remove_dir(dir);
    }
    retry_min = -1;
}

static void test_failures_keep_the_copy(void) {
    char dir[64];
    new_dir(dir);
    ml_human *h = open_store(dir, "/data.csv", 3600);
    ml_human_status st;
    ml_human_snapshot *s = get_ok(h, &st);
    ml_human_snapshot_unref(s);
    for (size_t i = 0; i < N_FAILURES; i++) {
        testsrv_set_mode(srv, failures[i].mode);
        ml_err err = {{0}};
        CHECK_MSG(ml_human_refresh(h, &st, &err) == -1, "mode %s refreshed", failures[i].mode);
        testsrv_set_mode(srv, "ok");
        CHECK(st.code == failures[i].code && st.cached && st.stale);
        CHECK_STR_CONTAINS(err.msg, failures[i].text);
        CHECK_STR_CONTAINS(st.last_error, failures[i].text);
        CHECK(st.last_error_at > 0);
        s = get_ok(h, &st);
        CHECK(st.stale && st.outcome == ML_HUMAN_SERVED);
        CHECK(s && strcmp(s->sha256, body_sha) == 0 && s->data.n_rows == body_rows);
        ml_human_snapshot_unref(s);
        char sha[ML_SHA256_HEX_LEN];
        file_sha(ml_human_csv_path(h), sha);
        CHECK_MSG(strcmp(sha, body_sha) == 0, "mode %s changed the cached file",
                  failures[i].mode);
        CHECK(count_files(dir, ".human-tmp-") == 0);
    }
    ml_err err;
    CHECK(ml_human_refresh(h, &st, &err) == 0);
    CHECK(st.outcome == ML_HUMAN_NOT_MODIFIED && !st.stale && !st.last_error[0]);
    ml_human_stats stats;
    ml_human_stats_get(h, &stats);
    CHECK(stats.failures[ML_FETCH_E_TOO_LARGE] == 2 && stats.failures[ML_FETCH_E_STATUS] == 2);
    ml_human_free(h);

    h = open_store(dir, "/data.csv", 3600);
    ml_human_status_get(h, &st);
    CHECK(st.cached && !st.notice[0] && strcmp(st.sha256, body_sha) == 0);
    ml_human_free(h);
    remove_dir(dir);
}

/* Rewrites validated_at in the metadata, as if the copy had been checked long ago. */
static void age_copy(const char *meta_path) {
    json_error_t je;
    json_t *m = json_load_file(meta_path, 0, &je);
    json_object_set_new(m, "validated_at", json_string("2000-01-01T00:00:00Z"));
    json_dump_file(m, meta_path, 0);
    json_decref(m);
}

static void test_revalidation(void) {
    static const char *paths[] = {"/data.csv", "/lm.csv"}; /* ETag and Last-Modified */
    for (int i = 0; i < 2; i++) {
        char dir[64];
        new_dir(dir);
        ml_human *h = open_store(dir, paths[i], 0); /* max_age 0: check on every get */
        ml_human_status st;
        ml_human_snapshot *s = get_ok(h, &st), *s2;
        int cond = testsrv_conditional(srv), n304 = testsrv_not_modified(srv);
        s2 = get_ok(h, &st);
        CHECK(st.outcome == ML_HUMAN_NOT_MODIFIED && st.from_cache && !st.stale);
        CHECK(s2 == s); /* a 304 keeps the snapshot */
        CHECK(testsrv_conditional(srv) == cond + 1 && testsrv_not_modified(srv) == n304 + 1);
        ml_human_snapshot_unref(s);
        ml_human_snapshot_unref(s2);
        /* After a restart, a copy older than max_age is revalidated on first use. */
        age_copy(ml_human_meta_path(h));
        ml_human_free(h);
        h = open_store(dir, paths[i], 3600);
        ml_human_status_get(h, &st);
        CHECK(st.cached && st.validated_at == 946684800);
        s = get_ok(h, &st);
        CHECK(st.outcome == ML_HUMAN_NOT_MODIFIED && st.validated_at > 946684800);
        CHECK(testsrv_not_modified(srv) == n304 + 2);
        ml_human_snapshot_unref(s);
        ml_human_free(h);
        /* ... and the new validation time was stored. */
        h = open_store(dir, paths[i], 3600);
        ml_human_status_get(h, &st);
        CHECK(st.validated_at > 946684800);
        ml_human_free(h);
        remove_dir(dir);
    }
}

/* A failed revalidation serves the copy as stale and waits retry_seconds before asking
 * upstream again; a refresh asks at once. */
static void test_failed_revalidation_backs_off(void) {
    char dir[64];
    new_dir(dir);
    ml_human *h = open_store(dir, "/data.csv", 3600);
    ml_human_status st;
    ml_human_snapshot_unref(get_ok(h, &st));
    age_copy(ml_human_meta_path(h));
    ml_human_free(h);
    h = open_store(dir, "/data.csv", 3600);
    testsrv_set_mode(srv, "500");
    int before = testsrv_count(srv, "/data.csv");
    ml_human_snapshot *s = get_ok(h, &st);
    CHECK(st.stale && st.code == ML_FETCH_E_STATUS && st.outcome == ML_HUMAN_FAILED);
    CHECK(s && strcmp(s->sha256, body_sha) == 0);
    ml_human_snapshot_unref(s);
    s = get_ok(h, &st);
    CHECK(st.stale && st.outcome == ML_HUMAN_SERVED);
    ml_human_snapshot_unref(s);
    CHECK(testsrv_count(srv, "/data.csv") == before + 1);
    ml_err err;
    CHECK(ml_human_refresh(h, &st, &err) == -1);
    CHECK(testsrv_count(srv, "/data.csv") == before + 2);
    testsrv_set_mode(srv, "ok");
    CHECK(ml_human_refresh(h, &st, &err) == 0 && !st.stale);
    ml_human_free(h);
    remove_dir(dir);
}

/* New content replaces the snapshot while a reader still holds the old one. */
static void test_refresh_swaps_content(void) {
    char dir[64];
    new_dir(dir);
    ml_human *h = open_store(dir, "/data.csv", 3600);
    ml_human_status st;
    ml_human_snapshot *old = get_ok(h, &st);
    size_t messy_len;
    char *messy = read_file(FIXTURE("human/messy.csv"), &messy_len);
    if (!messy) {
        ml_human_snapshot_unref(old);
        ml_human_free(h);
        remove_dir(dir);
    }
    REQUIRE_MSG(messy != NULL, "cannot read %s", FIXTURE("human/messy.csv"));
    char messy_sha[ML_SHA256_HEX_LEN];
    ml_sha256_hex(messy, messy_len, messy_sha);
    testsrv_set_body(srv, messy, messy_len);
    ml_err err;
    CHECK(ml_human_refresh(h, &st, &err) == 0);
    CHECK(st.outcome == ML_HUMAN_DOWNLOADED && !st.from_cache && strcmp(st.sha256, messy_sha) == 0);
    ml_human_snapshot *now = get_ok(h, &st);
    CHECK(now != old && strcmp(now->sha256, messy_sha) == 0);
    /* Same rows, other bytes: the old snapshot is intact and equal in content. */
    CHECK(old->data.n_rows == now->data.n_rows &&
          memcmp(old->data.correct, now->data.correct, old->data.n_rows) == 0);
    ml_human_snapshot_unref(old);
    ml_human_snapshot_unref(now);
    char sha[ML_SHA256_HEX_LEN];
    file_sha(ml_human_csv_path(h), sha);
    CHECK(strcmp(sha, messy_sha) == 0);
    testsrv_set_body(srv, body, body_len);
    ml_human_free(h);
    free(messy);
    remove_dir(dir);

    /* Without validators the server sends the same bytes again: "unchanged". */
    new_dir(dir);
    h = open_store(dir, "/plain.csv", 3600);
    ml_human_snapshot_unref(get_ok(h, &st));
    CHECK(ml_human_refresh(h, &st, &err) == 0 && st.outcome == ML_HUMAN_UNCHANGED);
    ml_human_free(h);
    remove_dir(dir);
}

typedef struct racer {
    ml_human *h;
    pthread_barrier_t *start;
    int rc;
    ml_human_snapshot *snap;
    ml_human_status st;
} racer;

static void *race(void *arg) {
    racer *r = arg;
    ml_err err;
    pthread_barrier_wait(r->start);
    r->rc = ml_human_get(r->h, &r->snap, &r->st, &err);
    return NULL;
}

static void run_race(ml_human *h, racer *r, int n) {
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n);
    pthread_t t[16];
    for (int i = 0; i < n; i++) {
        r[i] = (racer){.h = h, .start = &start};
        pthread_create(&t[i], NULL, race, &r[i]);
    }
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
}

static void test_concurrent_first_requests_download_once(void) {
    char dir[64];
    new_dir(dir);
    ml_human *h = open_store(dir, "/data.csv", 3600);
    testsrv_reset_counts(srv);
    testsrv_set_delay_ms(srv, 300);
    racer r[8];
    run_race(h, r, 8);
    CHECK(testsrv_count(srv, "/data.csv") == 1);
    int downloaded = 0;
    for (int i = 0; i < 8; i++) {
        CHECK(r[i].rc == 0 && r[i].snap == r[0].snap);
        CHECK(!r[i].st.from_cache); /* all eight got the data the one download brought */
        downloaded += r[i].st.outcome == ML_HUMAN_DOWNLOADED;
        ml_human_snapshot_unref(r[i].snap);
    }
    CHECK(downloaded == 8);
    ml_human_stats stats;
    ml_human_stats_get(h, &stats);
    CHECK(stats.attempts == 1 && stats.waits == 7);
    ml_human_free(h);
    remove_dir(dir);

    /* A failing first download is shared too: one request, eight identical errors. */
    new_dir(dir);
    h = open_store(dir, "/data.csv", 3600);
    testsrv_set_mode(srv, "500");
    run_race(h, r, 8);
    CHECK(testsrv_count(srv, "/data.csv") == 2);
    for (int i = 0; i < 8; i++)
        CHECK(r[i].rc == -1 && r[i].snap == NULL && r[i].st.code == ML_FETCH_E_STATUS);
    testsrv_set_mode(srv, "ok");
    testsrv_set_delay_ms(srv, 0);
    ml_human_free(h);
    remove_dir(dir);
}

/* Damages the cached copy, reopens, and checks it was set aside, never served, and fetched
 * again on first use. */
static void damage_and_check(void (*damage)(ml_human *h), const char *why) {
    char dir[64];
    new_dir(dir);
    ml_human *h = open_store(dir, "/data.csv", 3600);
    ml_human_status st;
    ml_human_snapshot_unref(get_ok(h, &st));
    damage(h);
    ml_human_free(h);

    testsrv_reset_counts(srv);
    h = open_store(dir, "/data.csv", 3600);
    ml_human_status_get(h, &st);
    CHECK_MSG(!st.cached, "%s: the damaged copy was loaded", why);
    CHECK_STR_CONTAINS(st.notice, "set aside");
    CHECK_STR_CONTAINS(st.notice, why);
    printf("# %s\n", st.notice);
    CHECK(access(ml_human_csv_path(h), F_OK) != 0 && access(ml_human_meta_path(h), F_OK) != 0);
    CHECK(count_files(dir, ML_HUMAN_CSV_NAME ".corrupt-") +
              count_files(dir, ML_HUMAN_META_NAME ".corrupt-") >= 1);
    ml_human_stats stats;
    ml_human_stats_get(h, &stats);
    CHECK(stats.set_aside == 1 && stats.disk_loads == 0);
    ml_human_snapshot *s = get_ok(h, &st);
    CHECK(st.outcome == ML_HUMAN_DOWNLOADED && s && strcmp(s->sha256, body_sha) == 0);
    CHECK(testsrv_count(srv, "/data.csv") == 1);
    ml_human_snapshot_unref(s);
    ml_human_free(h);
    remove_dir(dir);
}

static void flip_byte(ml_human *h) {
    int fd = open(ml_human_csv_path(h), O_RDWR);
    char c;
    pread(fd, &c, 1, 1000);
    c ^= 0x20;
    pwrite(fd, &c, 1, 1000);
    close(fd);
}

static void truncate_csv(ml_human *h) { truncate(ml_human_csv_path(h), (off_t)body_len / 2); }

static void garble_meta(ml_human *h) {
    FILE *f = fopen(ml_human_meta_path(h), "w");
    fputs("{\"url\": ", f);
    fclose(f);
}

static void remove_meta(ml_human *h) { unlink(ml_human_meta_path(h)); }

static void test_corrupt_copies_are_set_aside(void) {
    damage_and_check(flip_byte, "sha256");
    damage_and_check(truncate_csv, "bytes");
    damage_and_check(garble_meta, "metadata");
    damage_and_check(remove_meta, "no metadata");
}

/* A copy of another URL is not served, not moved, and replaced by the next download. */
static void test_copy_of_another_url(void) {
    char dir[64];
    new_dir(dir);
    ml_human *h = open_store(dir, "/data.csv", 3600);
    ml_human_status st;
    ml_human_snapshot_unref(get_ok(h, &st));
    ml_human_free(h);
    h = open_store(dir, "/plain.csv", 3600);
    ml_human_status_get(h, &st);
    CHECK(!st.cached);
    CHECK_STR_CONTAINS(st.notice, "not used");
    CHECK(access(ml_human_csv_path(h), F_OK) == 0);
    ml_human_snapshot *s = get_ok(h, &st);
    CHECK(st.outcome == ML_HUMAN_DOWNLOADED);
    ml_human_snapshot_unref(s);
    ml_human_free(h);
    h = open_store(dir, "/plain.csv", 3600);
    ml_human_status_get(h, &st);
    CHECK(st.cached);
    ml_human_free(h);
    remove_dir(dir);
}

static void test_open_checks_and_cleans_the_folder(void) {
    char dir[64], path[128];
    new_dir(dir);
    snprintf(path, sizeof path, "%s/.human-tmp-csv-leftover", dir);
    FILE *f = fopen(path, "w");
    fputs("half a download", f);
    fclose(f);
    ml_human *h = open_store(dir, "/data.csv", 3600);
    CHECK(access(path, F_OK) != 0);
    ml_human_free(h);

    snprintf(path, sizeof path, "%s/a-file", dir);
    f = fopen(path, "w");
    fclose(f);
    ml_human_config c;
    ml_human_config_defaults(&c);
    c.url = "http://127.0.0.1:1/x.csv";
    c.cache_dir = path;
    ml_err err = {{0}};
    /* A cache folder that cannot be made: a store that says why, never a daemon that does
     * not start. */
    h = ml_human_open(&c, &err);
    CHECK_MSG(h != NULL, "%s", err.msg);
    if (h) {
        ml_human_status st;
        ml_human_status_get(h, &st);
        CHECK(!st.available && !st.cached);
        CHECK_STR_CONTAINS(st.unavailable, path);
        CHECK_STR_CONTAINS(st.unavailable, "--cache-dir");
        ml_human_snapshot *snap = (ml_human_snapshot *)1;
        CHECK(ml_human_get(h, &snap, &st, &err) == -1 && snap == NULL);
        CHECK(st.code == ML_FETCH_E_CACHE_IO);
        CHECK_STR_CONTAINS(err.msg, "unavailable");
        CHECK(ml_human_refresh(h, &st, &err) == -1);
        ml_human_free(h);
    }
    c.cache_dir = dir;
    c.url = "";
    CHECK(ml_human_open(&c, &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "--human-url");
    c.url = "file:///etc/passwd"; /* only http and https are fetched */
    CHECK(ml_human_open(&c, &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "http");
    remove_dir(dir);
}

/* After a failure without a copy, gets within the back-off answer at once with the last
 * error and do not contact the upstream; the wait doubles with each further failure, up to
 * its cap; a success resets it. */
static void test_failures_back_off(void) {
    char dir[64];
    new_dir(dir);
    char u[256];
    testsrv_url(srv, "/data.csv", u, sizeof u);
    ml_human_config c;
    ml_human_config_defaults(&c);
    c.url = u;
    c.cache_dir = dir;
    c.connect_timeout_ms = 2000;
    c.total_timeout_ms = 1500;
    c.retry_min_seconds = 1;
    c.retry_max_seconds = 2;
    ml_err err = {{0}};
    ml_human *h = ml_human_open(&c, &err);
    REQUIRE(h != NULL);
    testsrv_set_mode(srv, "500");
    int before = testsrv_count(srv, "/data.csv");
    ml_human_snapshot *s = NULL;
    ml_human_status st;
    CHECK(ml_human_get(h, &s, &st, &err) == -1 && st.code == ML_FETCH_E_STATUS);
    CHECK(ml_human_get(h, &s, &st, &err) == -1 && st.code == ML_FETCH_E_STATUS);
    CHECK(st.retry_after >= 0 && st.retry_after <= 1);
    CHECK_STR_CONTAINS(err.msg, "HTTP 500");
    CHECK(testsrv_count(srv, "/data.csv") == before + 1); /* the second did not ask */
    usleep(1100000);
    CHECK(ml_human_get(h, &s, &st, &err) == -1); /* allowed again: asks, fails again */
    CHECK(testsrv_count(srv, "/data.csv") == before + 2);
    CHECK(st.retry_after >= 1 && st.retry_after <= 2); /* doubled, capped at 2 */
    testsrv_set_mode(srv, "ok");
    usleep(2100000);
    s = get_ok(h, &st);
    CHECK(st.outcome == ML_HUMAN_DOWNLOADED && st.retry_after == 0);
    ml_human_snapshot_unref(s);
    ml_human_free(h);
    remove_dir(dir);
}

/* An anonymous refresh within min_refresh of the last download is answered from the copy,
 * with the time the next one is allowed; one that arrived before a download ended reports
 * that download instead of running another. */
static void test_refresh_rate_limit(void) {
    char dir[64];
    new_dir(dir);
    char u[256];
    testsrv_url(srv, "/data.csv", u, sizeof u);
    ml_human_config c;
    ml_human_config_defaults(&c);
    c.url = u;
    c.cache_dir = dir;
    c.connect_timeout_ms = 2000;
    c.total_timeout_ms = 1500;
    c.min_refresh_seconds = 60;
    ml_err err = {{0}};
    ml_human *h = ml_human_open(&c, &err);
    REQUIRE(h != NULL);
    ml_human_status st;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    double asked = (double)t.tv_sec + t.tv_nsec * 1e-9;
    ml_human_snapshot_unref(get_ok(h, &st));
    int before = testsrv_count(srv, "/data.csv");
    /* asked before the download above ended: that download is its answer */
    CHECK(ml_human_refresh_since(h, asked, &st, &err) == 0 && st.shared);
    clock_gettime(CLOCK_REALTIME, &t);
    double now = (double)t.tv_sec + t.tv_nsec * 1e-9;
    CHECK(ml_human_refresh_since(h, now, &st, &err) == ML_HUMAN_RATE_LIMITED);
    CHECK(st.cached && st.next_refresh_at > time(NULL) + 50);
    CHECK(testsrv_count(srv, "/data.csv") == before);
    /* the operator's own refresh is not limited */
    CHECK(ml_human_refresh(h, &st, &err) == 0);
    CHECK(testsrv_count(srv, "/data.csv") == before + 1);
    ml_human_free(h);
    remove_dir(dir);
}

static void test_status_and_metrics(void) {
    char dir[64];
    new_dir(dir);
    ml_human *h = open_store(dir, "/data.csv", 3600);
    ml_human_status st;
    ml_human_status_get(h, &st);
    CHECK(!st.cached && st.fetched_at == 0 && st.bytes == 0 && !st.last_error[0]);

    ml_human_snapshot_unref(get_ok(h, &st));
    CHECK(st.url && strstr(st.url, "/data.csv"));
    CHECK(st.cached && st.fetched_at > 0 && st.validated_at >= st.fetched_at);
    CHECK(st.bytes == body_len);
    CHECK(strcmp(st.sha256, body_sha) == 0);
    CHECK(!st.from_cache && !st.stale && !st.last_error[0]);
    CHECK(st.outcome == ML_HUMAN_DOWNLOADED);

    testsrv_set_mode(srv, "404");
    ml_err err;
    ml_human_refresh(h, &st, &err);
    testsrv_set_mode(srv, "ok");
    CHECK(st.cached && st.stale);
    CHECK(st.code == ML_FETCH_E_STATUS);
    CHECK(strcmp(ml_fetch_code_name(st.code), "upstream_status") == 0);
    CHECK_STR_CONTAINS(st.last_error, "HTTP 404");
    CHECK(st.last_error_at > 0);

    ml_buf out = {0};
    ml_human_render_metrics(h, &out);
    CHECK_STR_CONTAINS(out.data, "metalignd_human_fetches_total{result=\"downloaded\"} 1\n");
    CHECK_STR_CONTAINS(out.data, "metalignd_human_fetches_total{result=\"upstream_status\"} 1\n");
    CHECK_STR_CONTAINS(out.data, "metalignd_human_stale 1\n");
    CHECK_STR_CONTAINS(out.data, "metalignd_human_cached 1\n");
    ml_buf_free(&out);
    ml_human_free(h);
    remove_dir(dir);
}

int main(void) {
    unset_proxies();
    srv = testsrv_start();
    body = read_file(FIXTURE("human/synthetic.csv"), &body_len);
    json_t *ref = load_reference();
    if (!srv || !body || !ref) {
        printf("Bail out! cannot start the test server or read the fixtures\n");
        return 1;
    }
    body_rows = (size_t)json_integer_value(
        json_object_get(json_object_get(json_object_get(ref, "files"), "synthetic.csv"), "rows"));
    json_decref(ref);
    ml_sha256_hex(body, body_len, body_sha);
    testsrv_set_body(srv, body, body_len);
    RUN(test_first_get_downloads_then_memory);
    RUN(test_restart_serves_from_disk);
    RUN(test_failures_without_a_copy);
    RUN(test_failures_keep_the_copy);
    RUN(test_revalidation);
    RUN(test_failed_revalidation_backs_off);
    RUN(test_refresh_swaps_content);
    RUN(test_concurrent_first_requests_download_once);
    RUN(test_corrupt_copies_are_set_aside);
    RUN(test_copy_of_another_url);
    RUN(test_open_checks_and_cleans_the_folder);
    RUN(test_status_and_metrics);
    RUN(test_failures_back_off);
    RUN(test_refresh_rate_limit);
    testsrv_stop(srv);
    free(body);
    return UT_DONE();
}
