/* One download of the human CSV across replicas. The store (human_store.c) calls this in
 * place of ml_fetch_to_fd when --redis is given; it answers as the upstream would, from:
 *
 *   ml:human:<u>:meta   hash: sha256 bytes etag last_modified content_type fetched_at
 *                       validated_at (u: 16 hex digits of the URL's sha256)
 *   ml:human:<u>:csv    the bytes, served only when their size and sha256 match the hash
 *   ml:human:<u>:lock   SET NX PX with a random token: the replica downloading; renewed
 *                       while it downloads, released only by its holder (compare-and-delete)
 *   ml:human:<u>:error  "token<TAB>code<TAB>message" for HUMAN_ERROR_MS after a failure, so
 *                       the replicas that waited for that download share its failure
 *
 * A caller without a copy (or with another one) gets the shared copy while it is younger
 * than --human-max-age; a caller revalidating the shared copy's content gets 304 when
 * another replica revalidated it in the last HUMAN_COALESCE_S seconds; everything else takes
 * the lock and goes upstream, and the others wait for it. A holder that dies stops renewing
 * and the lock expires. When Redis fails, the replica downloads for itself (as without
 * --redis): the human data never becomes unavailable because the shared store is. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "engine/shared.h"
#include "metalign/human_csv.h"
#include "metalign/sha256.h"

#define HUMAN_LOCK_MS 15000  /* the lock's time to live; renewed every third of it */
#define HUMAN_POLL_MS 100    /* how often a waiter looks again */
#define HUMAN_COALESCE_S 10  /* a revalidation this recent answers others' with 304 */
#define HUMAN_ERROR_MS 10000 /* a failure is shared this long with those who waited */

typedef struct human_keys {
    char meta[ML_KEY_BUF], csv[ML_KEY_BUF], lock[ML_KEY_BUF], error[ML_KEY_BUF];
} human_keys;

typedef struct shared_meta {
    char sha256[ML_SHA256_HEX_LEN];
    size_t bytes;
    char etag[256], last_modified[128], content_type[128];
    long long validated_at;
} shared_meta;

static const char LUA_RELEASE[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";
static const char LUA_RENEW[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "return 0\n";
/* KEYS lock csv meta; ARGV token bytes sha256 size etag last_modified content_type now */
static const char LUA_PUBLISH[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "redis.call('SET', KEYS[2], ARGV[2])\n"
    "redis.call('DEL', KEYS[3])\n"
    "redis.call('HSET', KEYS[3], 'sha256', ARGV[3], 'bytes', ARGV[4], 'etag', ARGV[5],\n"
    "  'last_modified', ARGV[6], 'content_type', ARGV[7], 'fetched_at', ARGV[8],\n"
    "  'validated_at', ARGV[8])\n"
    "return 1\n";

static double mono_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void keys_for(const char *url, human_keys *k) {
    char hex[ML_SHA256_HEX_LEN];
    ml_sha256_hex(url, strlen(url), hex);
    snprintf(k->meta, sizeof k->meta, ML_SHARED_PREFIX "human:%.16s:meta", hex);
    snprintf(k->csv, sizeof k->csv, ML_SHARED_PREFIX "human:%.16s:csv", hex);
    snprintf(k->lock, sizeof k->lock, ML_SHARED_PREFIX "human:%.16s:lock", hex);
    snprintf(k->error, sizeof k->error, ML_SHARED_PREFIX "human:%.16s:error", hex);
}

static void new_token(char out[33]) {
    unsigned char raw[16] = {0};
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        memcpy(raw, &t, sizeof t < sizeof raw ? sizeof t : sizeof raw);
        pid_t pid = getpid();
        memcpy(raw + 12, &pid, 4);
    }
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

/* One command on a pooled connection; NULL (err set) when Redis fails. */
static redisReply *cmd_argv(ml_shared *sh, ml_err *err, int argc, const char **argv,
                            const size_t *lens) {
    ml_redis_conn *c = ml_redis_get(sh->redis, err);
    if (!c) return NULL;
    redisReply *rep = ml_redis_cmd_argv(c, err, argc, argv, lens);
    ml_redis_put(sh->redis, c);
    return rep;
}

static redisReply *script(ml_shared *sh, ml_err *err, const char *lua, int n_keys,
                          const char **args, const size_t *lens, int n_args) {
    ml_redis_conn *c = ml_redis_get(sh->redis, err);
    if (!c) return NULL;
    redisReply *rep = ml_redis_eval(c, err, lua, n_keys, args, lens, n_args);
    ml_redis_put(sh->redis, c);
    return rep;
}

/* 1 with *m when the shared copy's record exists, 0 when not, -1 when Redis failed. */
static int read_meta(ml_shared *sh, const human_keys *k, shared_meta *m, ml_err *err) {
    const char *argv[] = {"HGETALL", k->meta};
    redisReply *h = cmd_argv(sh, err, 2, argv, NULL);
    if (!h) return -1;
    memset(m, 0, sizeof *m);
    int fields = 0;
    for (size_t i = 0; h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2) {
        const char *key = ml_redis_str(h->element[i], NULL);
        size_t len = 0;
        const char *v = ml_redis_str(h->element[i + 1], &len);
        if (!key || !v) continue;
        fields++;
        if (strcmp(key, "sha256") == 0) snprintf(m->sha256, sizeof m->sha256, "%.*s", (int)len, v);
        else if (strcmp(key, "bytes") == 0) m->bytes = (size_t)ml_redis_int(h->element[i + 1], 0);
        else if (strcmp(key, "etag") == 0) snprintf(m->etag, sizeof m->etag, "%.*s", (int)len, v);
        else if (strcmp(key, "last_modified") == 0)
            snprintf(m->last_modified, sizeof m->last_modified, "%.*s", (int)len, v);
        else if (strcmp(key, "content_type") == 0)
            snprintf(m->content_type, sizeof m->content_type, "%.*s", (int)len, v);
        else if (strcmp(key, "validated_at") == 0)
            m->validated_at = ml_redis_int(h->element[i + 1], 0);
    }
    freeReplyObject(h);
    return fields > 0 && m->sha256[0] ? 1 : 0;
}

/* Whether the caller's validators name the shared copy. */
static int same_copy(const ml_fetch_request *rq, const shared_meta *m) {
    if (rq->etag && rq->etag[0]) return strcmp(rq->etag, m->etag) == 0;
    if (rq->last_modified && rq->last_modified[0])
        return strcmp(rq->last_modified, m->last_modified) == 0;
    return 0;
}

static void result_from_meta(const ml_fetch_request *rq, const shared_meta *m,
                             ml_fetch_result *res) {
    memset(res, 0, sizeof *res);
    res->code = ML_FETCH_OK;
    res->http_status = 200;
    snprintf(res->etag, sizeof res->etag, "%s", m->etag);
    snprintf(res->last_modified, sizeof res->last_modified, "%s", m->last_modified);
    snprintf(res->content_type, sizeof res->content_type, "%s", m->content_type);
    snprintf(res->effective_url, sizeof res->effective_url, "%s", rq->url);
}

static int write_all(int fd, const char *p, size_t len) {
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The shared copy written to fd as a 200: 0, 1 when it fails its checks (it is deleted), -1
 * when Redis or the disk failed (err). */
static int serve_copy(ml_shared *sh, const human_keys *k, const ml_fetch_request *rq,
                      const shared_meta *m, int fd, ml_fetch_result *res, ml_err *err) {
    const char *argv[] = {"GET", k->csv};
    redisReply *rep = cmd_argv(sh, err, 2, argv, NULL);
    if (!rep) return -1;
    size_t len = 0;
    const char *bytes = ml_redis_str(rep, &len);
    char sha[ML_SHA256_HEX_LEN] = "";
    if (bytes) ml_sha256_hex(bytes, len, sha);
    if (!bytes || len != m->bytes || len > rq->max_bytes || strcmp(sha, m->sha256) != 0) {
        fprintf(stderr, "metalignd: the shared human CSV in %s fails its check (%zu bytes, "
                        "expected %zu; sha256 %s, expected %s); deleting it and downloading\n",
                ml_redis_display(sh->redis), len, m->bytes, sha, m->sha256);
        freeReplyObject(rep);
        const char *del[] = {"DEL", k->csv, k->meta};
        redisReply *d = cmd_argv(sh, err, 3, del, NULL);
        if (d) freeReplyObject(d);
        return 1;
    }
    result_from_meta(rq, m, res);
    int rc = write_all(fd, bytes, len);
    freeReplyObject(rep);
    if (rc != 0) {
        res->code = ML_FETCH_E_CACHE_IO;
        return ml_err_errno(err, "cannot write the shared human CSV to the cache folder");
    }
    res->bytes = len;
    memcpy(res->sha256, sha, sizeof res->sha256);
    sh->n.human_shared_copy++;
    return 0;
}

/* Renews the lock while the download runs. */
typedef struct renewer {
    ml_shared *sh;
    const human_keys *k;
    const char *token;
    pthread_mutex_t lock;
    pthread_cond_t done_cv;
    int done;
} renewer;

static void *renew_main(void *arg) {
    renewer *rn = arg;
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%d", HUMAN_LOCK_MS);
    pthread_mutex_lock(&rn->lock);
    while (!rn->done) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long ns = until.tv_nsec + (long)(HUMAN_LOCK_MS / 3 % 1000) * 1000000L;
        until.tv_sec += HUMAN_LOCK_MS / 3 / 1000 + ns / 1000000000L;
        until.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&rn->done_cv, &rn->lock, &until);
        if (rn->done) break;
        pthread_mutex_unlock(&rn->lock);
        const char *args[] = {rn->k->lock, rn->token, ttl};
        ml_err err;
        redisReply *rep = script(rn->sh, &err, LUA_RENEW, 1, args, NULL, 3);
        if (rep) freeReplyObject(rep);
        pthread_mutex_lock(&rn->lock);
    }
    pthread_mutex_unlock(&rn->lock);
    return NULL;
}

/* Checks the downloaded bytes as the store will, then shares them (only while we hold the
 * lock); a CSV that does not parse is not shared: the others download and fail for
 * themselves. */
static void publish(ml_shared *sh, const human_keys *k, const char *token, int fd,
                    const ml_fetch_result *res) {
    char *buf = malloc(res->bytes ? res->bytes : 1);
    size_t got = 0;
    while (buf && got < res->bytes) {
        ssize_t n = pread(fd, buf + got, res->bytes - got, (off_t)got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    char sha[ML_SHA256_HEX_LEN] = "";
    if (buf && got == res->bytes) ml_sha256_hex(buf, got, sha);
    ml_human_data data;
    ml_fetch_code code;
    ml_err err = {{0}};
    if (!sha[0] || strcmp(sha, res->sha256) != 0 ||
        ml_human_csv_parse(buf, got, res->effective_url, &data, &code, &err) != 0) {
        free(buf);
        return;
    }
    ml_human_data_free(&data);
    char size[24], now[24];
    snprintf(size, sizeof size, "%zu", got);
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    const char *args[] = {k->lock, k->csv, k->meta, token, buf, sha, size, res->etag,
                          res->last_modified, res->content_type, now};
    size_t lens[] = {(size_t)-1, (size_t)-1, (size_t)-1, (size_t)-1, got, (size_t)-1, (size_t)-1,
                     (size_t)-1, (size_t)-1, (size_t)-1, (size_t)-1};
    redisReply *rep = script(sh, &err, LUA_PUBLISH, 3, args, lens, 11);
    if (rep) freeReplyObject(rep);
    free(buf);
}

/* The download as the lock's holder. */
static int download_locked(ml_shared *sh, const human_keys *k, const ml_fetch_request *rq,
                           const shared_meta *m, int have, const char *token, int fd,
                           ml_fetch_result *res, ml_err *err) {
    int conditional = have && same_copy(rq, m);
    ml_fetch_request up = *rq;
    if (!conditional) { /* a full download, so there are bytes to share */
        up.etag = NULL;
        up.last_modified = NULL;
    }
    renewer rn = {sh, k, token, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    pthread_t t;
    int renewing = pthread_create(&t, NULL, renew_main, &rn) == 0;
    int rc = ml_fetch_to_fd(&up, fd, res, err);
    if (renewing) {
        pthread_mutex_lock(&rn.lock);
        rn.done = 1;
        pthread_cond_signal(&rn.done_cv);
        pthread_mutex_unlock(&rn.lock);
        pthread_join(t, NULL);
    }
    sh->n.human_upstream++;
    ml_err e2;
    if (rc == 0 && !res->not_modified) {
        publish(sh, k, token, fd, res);
    } else if (rc == 0) {
        char now[24];
        snprintf(now, sizeof now, "%lld", (long long)time(NULL));
        const char *argv[] = {"HSET", k->meta, "validated_at", now};
        redisReply *rep = cmd_argv(sh, &e2, 4, argv, NULL);
        if (rep) freeReplyObject(rep);
    } else {
        char value[ML_ERR_MAX + 80], px[16];
        snprintf(value, sizeof value, "%s\t%d\t%s", token, (int)res->code, err->msg);
        snprintf(px, sizeof px, "%d", HUMAN_ERROR_MS);
        const char *argv[] = {"SET", k->error, value, "PX", px};
        redisReply *rep = cmd_argv(sh, &e2, 5, argv, NULL);
        if (rep) freeReplyObject(rep);
    }
    const char *args[] = {k->lock, token};
    redisReply *rep = script(sh, &e2, LUA_RELEASE, 1, args, NULL, 2);
    if (rep) freeReplyObject(rep);
    return rc;
}

/* The failure another replica shared for the download we waited on: 1 with res and err. */
static int shared_failure(ml_shared *sh, const human_keys *k, const char *token,
                          ml_fetch_result *res, ml_err *err) {
    ml_err e2;
    const char *argv[] = {"GET", k->error};
    redisReply *rep = cmd_argv(sh, &e2, 2, argv, NULL);
    size_t len = 0;
    const char *v = ml_redis_str(rep, &len);
    int found = 0;
    if (v && len > 34 && strncmp(v, token, 32) == 0 && v[32] == '\t') {
        int code = atoi(v + 33);
        const char *msg = memchr(v + 33, '\t', len - 33);
        memset(res, 0, sizeof *res);
        res->code = code > 0 && code < ML_FETCH_N_CODES ? (ml_fetch_code)code : ML_FETCH_E_NETWORK;
        ml_errf(err, "%.*s (the download another replica made for all)",
                msg ? (int)(len - (size_t)(msg + 1 - v)) : 0, msg ? msg + 1 : "");
        found = 1;
    }
    if (rep) freeReplyObject(rep);
    return found;
}

static int fallback(ml_shared *sh, const ml_fetch_request *rq, int fd, ml_fetch_result *res,
                    ml_err *err) {
    sh->n.human_fallback++;
    return ml_fetch_to_fd(rq, fd, res, err);
}

int ml_shared_human_fetch(void *ctx, const ml_fetch_request *rq, int fd, ml_fetch_result *res,
                          ml_err *err) {
    ml_shared *sh = ctx;
    human_keys k;
    keys_for(rq->url, &k);
    double deadline = mono_now() + rq->total_timeout_ms / 1000.0 + HUMAN_LOCK_MS / 1000.0;
    char waited_on[33] = "";
    int counted_wait = 0;
    for (;;) {
        shared_meta m;
        int have = read_meta(sh, &k, &m, err);
        if (have < 0) return fallback(sh, rq, fd, res, err);
        long long age = (long long)time(NULL) - m.validated_at;
        if (have && same_copy(rq, &m) && age <= HUMAN_COALESCE_S) {
            result_from_meta(rq, &m, res);
            res->http_status = 304;
            res->not_modified = 1;
            sh->n.human_not_modified++;
            return 0;
        }
        if (have && !same_copy(rq, &m) && (sh->human_max_age < 0 || age < sh->human_max_age)) {
            int rc = serve_copy(sh, &k, rq, &m, fd, res, err);
            if (rc == 0) return 0;
            if (rc < 0) return fallback(sh, rq, fd, res, err);
            have = 0; /* deleted as corrupt: download it again */
        }
        if (waited_on[0] && shared_failure(sh, &k, waited_on, res, err)) return -1;
        char token[33], px[16];
        new_token(token);
        snprintf(px, sizeof px, "%d", HUMAN_LOCK_MS);
        const char *argv[] = {"SET", k.lock, token, "NX", "PX", px};
        redisReply *rep = cmd_argv(sh, err, 6, argv, NULL);
        if (!rep) return fallback(sh, rq, fd, res, err);
        int locked = rep->type == REDIS_REPLY_STATUS;
        freeReplyObject(rep);
        if (locked) {
            /* Another replica may have shared a copy between our look and our lock. */
            shared_meta again;
            if (read_meta(sh, &k, &again, err) == 1 &&
                (!have || again.validated_at > m.validated_at)) {
                const char *args[] = {k.lock, token};
                rep = script(sh, err, LUA_RELEASE, 1, args, NULL, 2);
                if (rep) freeReplyObject(rep);
                continue;
            }
            return download_locked(sh, &k, rq, &m, have, token, fd, res, err);
        }
        if (!counted_wait) {
            sh->n.human_waits++;
            counted_wait = 1;
        }
        const char *get[] = {"GET", k.lock};
        rep = cmd_argv(sh, err, 2, get, NULL);
        size_t len = 0;
        const char *holder = ml_redis_str(rep, &len);
        if (holder && len == 32) snprintf(waited_on, sizeof waited_on, "%s", holder);
        if (rep) freeReplyObject(rep);
        if (mono_now() > deadline) {
            memset(res, 0, sizeof *res);
            res->code = ML_FETCH_E_TIMEOUT;
            return ml_errf(err, "%s: waited %.0f s for another replica's download of the human "
                                "data; try again", rq->url,
                           rq->total_timeout_ms / 1000.0 + HUMAN_LOCK_MS / 1000.0);
        }
        sleep_ms(HUMAN_POLL_MS);
    }
}
