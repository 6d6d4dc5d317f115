#include "engine/redis_conn.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ml_redis_conn {
    struct ml_redis *pool;
    redisContext *ctx; /* NULL: not connected */
    int borrowed;
    int broken;        /* an I/O error or timeout: close instead of reusing */
    int reused;        /* connected before this borrower's first command */
};

struct ml_redis {
    ml_redis_url url;
    int connect_ms, command_ms;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    ml_redis_conn conns[ML_REDIS_MAX_CONNS];
    int ever_connected;
    double retry_at;          /* monotonic seconds before which connects fail at once */
    char down_why[ML_ERR_MAX]; /* the last failure, "" while up */
    int up;
    _Atomic uint64_t commands, errors, reconnects; /* counted outside the lock */
};

static double mono_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static struct timeval ms_tv(int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* ---- URL ---- */

static int parse_int(const char *s, size_t n, long lo, long hi, long *out) {
    if (n == 0 || n > 9) return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int copy_part(char *dst, size_t cap, const char *src, size_t n) {
    if (n >= cap) return -1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

int ml_redis_url_parse(const char *url, ml_redis_url *out, ml_err *err) {
    static const char scheme[] = "redis://";
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (strncmp(url, scheme, sizeof scheme - 1) != 0)
        return ml_errf(err, "--redis \"%.64s\": expected redis://HOST:PORT[/DB]", url);
    const char *p = url + sizeof scheme - 1;
    const char *end = p + strcspn(p, "/");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) { /* [USER]:PASSWORD@ */
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon || copy_part(out->user, sizeof out->user, p, (size_t)(colon - p)) != 0 ||
            copy_part(out->password, sizeof out->password, colon + 1,
                      (size_t)(at - colon - 1)) != 0)
            return ml_errf(err, "--redis: the credentials before '@' must be [USER]:PASSWORD "
                                "(at most %d bytes each)", ML_REDIS_SECRET_MAX - 1);
        p = at + 1;
    }
    const char *host = p, *host_end, *port = NULL;
    if (*p == '[') {
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (!host_end) return ml_errf(err, "--redis: an IPv6 host needs its closing ']'");
        if (host_end + 1 < end) {
            if (host_end[1] != ':') return ml_errf(err, "--redis: expected ':PORT' after ']'");
            port = host_end + 2;
        }
    } else {
        host_end = memchr(p, ':', (size_t)(end - p));
        if (host_end)
            port = host_end + 1;
        else
            host_end = end;
    }
    if (host_end == host || copy_part(out->host, sizeof out->host, host,
                                      (size_t)(host_end - host)) != 0)
        return ml_errf(err, "--redis: the host is empty or longer than %d bytes",
                       ML_REDIS_HOST_MAX - 1);
    long v;
    if (port) {
        if (parse_int(port, (size_t)(end - port), 1, 65535, &v) != 0)
            return ml_errf(err, "--redis: the port must be 1..65535");
        out->port = (int)v;
    }
    if (*end == '/' && end[1]) {
        if (parse_int(end + 1, strlen(end + 1), 0, 1000000, &v) != 0)
            return ml_errf(err, "--redis: the database after '/' must be a number (0..)");
        out->db = (int)v;
    }
    snprintf(out->display, sizeof out->display, "redis://%s%s%s:%d/%d",
             strchr(out->host, ':') ? "[" : "", out->host, strchr(out->host, ':') ? "]" : "",
             out->port, out->db);
    return 0;
}

/* ---- pool ---- */

ml_redis *ml_redis_new(const ml_redis_config *cfg, ml_err *err) {
    ml_redis *r = calloc(1, sizeof *r);
    if (!r) return ml_errp(err, "out of memory");
    if (ml_redis_url_parse(cfg->url, &r->url, err) != 0) {
        free(r);
        return NULL;
    }
    r->connect_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 1000;
    r->command_ms = cfg->command_timeout_ms > 0 ? cfg->command_timeout_ms : 2000;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->freed, NULL);
    for (int i = 0; i < ML_REDIS_MAX_CONNS; i++) r->conns[i].pool = r;
    snprintf(r->down_why, sizeof r->down_why, "%s: not contacted yet", r->url.display);
    return r;
}

void ml_redis_free(ml_redis *r) {
    if (!r) return;
    for (int i = 0; i < ML_REDIS_MAX_CONNS; i++)
        if (r->conns[i].ctx) redisFree(r->conns[i].ctx);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->freed);
    free(r);
}

const char *ml_redis_display(const ml_redis *r) { return r->url.display; }

static void mark(ml_redis *r, int up, const char *why) {
    pthread_mutex_lock(&r->lock);
    r->up = up;
    if (up)
        r->down_why[0] = '\0';
    else
        snprintf(r->down_why, sizeof r->down_why, "%s", why);
    pthread_mutex_unlock(&r->lock);
}

static int fail(ml_redis *r, ml_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(ml_redis *r, ml_err *err, const char *fmt, ...) {
    char msg[ML_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->errors++;
    mark(r, 0, msg);
    return ml_errf(err, "%s", msg);
}

/* What went wrong on a connection that gave no reply. */
static const char *io_error(const redisContext *ctx) {
    if (ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
        return "no answer within the timeout (--redis-timeout)";
    return ctx->errstr[0] ? ctx->errstr : "the connection broke";
}

/* AUTH and SELECT on a fresh connection. */
static int handshake(ml_redis *r, redisContext *ctx, ml_err *err) {
    redisReply *rep = NULL;
    if (r->url.password[0]) {
        rep = r->url.user[0] ? redisCommand(ctx, "AUTH %s %s", r->url.user, r->url.password)
                             : redisCommand(ctx, "AUTH %s", r->url.password);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            int rc = fail(r, err, "%s: authentication failed: %s (check the password in --redis)",
                          r->url.display, rep ? rep->str : io_error(ctx));
            if (rep) freeReplyObject(rep);
            return rc;
        }
        freeReplyObject(rep);
    }
    if (r->url.db) {
        rep = redisCommand(ctx, "SELECT %d", r->url.db);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            int rc = fail(r, err, "%s: cannot select database %d: %s", r->url.display,
                          r->url.db, rep ? rep->str : io_error(ctx));
            if (rep) freeReplyObject(rep);
            return rc;
        }
        freeReplyObject(rep);
    }
    return 0;
}

static int connect_conn(ml_redis *r, ml_redis_conn *c, ml_err *err) {
    pthread_mutex_lock(&r->lock);
    double now = mono_now();
    if (now < r->retry_at) {
        char why[ML_ERR_MAX];
        snprintf(why, sizeof why, "%s", r->down_why);
        pthread_mutex_unlock(&r->lock);
        return ml_errf(err, "%s", why);
    }
    pthread_mutex_unlock(&r->lock);
    redisContext *ctx = redisConnectWithTimeout(r->url.host, r->url.port, ms_tv(r->connect_ms));
    int rc = 0;
    if (!ctx || ctx->err) {
        rc = fail(r, err, "%s is unreachable: %s (is Redis running there? --redis, "
                          "--redis-connect-timeout)",
                  r->url.display, ctx ? ctx->errstr : "out of memory");
    } else if (redisSetTimeout(ctx, ms_tv(r->command_ms)) != REDIS_OK) {
        rc = fail(r, err, "%s: cannot set the command timeout", r->url.display);
    } else {
        redisEnableKeepAlive(ctx);
        rc = handshake(r, ctx, err);
    }
    pthread_mutex_lock(&r->lock);
    if (rc != 0) {
        r->retry_at = mono_now() + ML_REDIS_RETRY_MS / 1000.0;
        pthread_mutex_unlock(&r->lock);
        if (ctx) redisFree(ctx);
        return -1;
    }
    if (r->ever_connected) r->reconnects++;
    r->ever_connected = 1;
    r->retry_at = 0;
    r->up = 1;
    r->down_why[0] = '\0';
    pthread_mutex_unlock(&r->lock);
    c->ctx = ctx;
    c->broken = 0;
    c->reused = 0;
    return 0;
}

ml_redis_conn *ml_redis_get(ml_redis *r, ml_err *err) {
    pthread_mutex_lock(&r->lock);
    ml_redis_conn *c = NULL;
    for (;;) {
        ml_redis_conn *empty = NULL;
        for (int i = 0; i < ML_REDIS_MAX_CONNS && !c; i++) {
            if (r->conns[i].borrowed) continue;
            if (r->conns[i].ctx)
                c = &r->conns[i];
            else if (!empty)
                empty = &r->conns[i];
        }
        if (!c) c = empty;
        if (c) break;
        pthread_cond_wait(&r->freed, &r->lock);
    }
    c->borrowed = 1;
    c->reused = c->ctx != NULL;
    pthread_mutex_unlock(&r->lock);
    if (!c->ctx && connect_conn(r, c, err) != 0) {
        ml_redis_put(r, c);
        return NULL;
    }
    return c;
}

void ml_redis_put(ml_redis *r, ml_redis_conn *c) {
    if (!c) return;
    if (c->ctx && (c->broken || c->ctx->err)) {
        redisFree(c->ctx);
        c->ctx = NULL;
    } else if (c->ctx) {
        redisSetTimeout(c->ctx, ms_tv(r->command_ms));
    }
    pthread_mutex_lock(&r->lock);
    c->borrowed = 0;
    pthread_cond_signal(&r->freed);
    pthread_mutex_unlock(&r->lock);
}

/* ---- commands ---- */

/* A reply, or NULL with err; closes the connection on I/O errors and timeouts. */
static redisReply *check_reply(ml_redis_conn *c, redisReply *rep, ml_err *err) {
    ml_redis *r = c->pool;
    r->commands++;
    if (!rep) {
        c->broken = 1;
        fail(r, err, "%s: %s", r->url.display, io_error(c->ctx));
        return NULL;
    }
    c->reused = 0;
    mark(r, 1, NULL);
    if (rep->type == REDIS_REPLY_ERROR) {
        r->errors++;
        ml_errf(err, "%s answered: %s", r->url.display, rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

/* A pooled connection whose server went away while it sat idle (Redis restarted, an idle
 * timeout, a failover) fails its first command with EOF or a reset before the command can
 * have run: such a command is sent once more, on a new connection. A failure on a connection
 * that had answered this borrower, or a timeout, is not retried. */
static int stale(ml_redis_conn *c) {
    int was_reused = c->reused;
    c->reused = 0;
    return was_reused && (c->ctx->err == REDIS_ERR_EOF ||
                          (c->ctx->err == REDIS_ERR_IO && (errno == ECONNRESET || errno == EPIPE)));
}

static int reconnect(ml_redis_conn *c, ml_err *err) {
    redisFree(c->ctx);
    c->ctx = NULL;
    return connect_conn(c->pool, c, err);
}

/* A connection whose reconnect failed has no context until it connects again: the next
 * command on it tries once, and fails with the reason when Redis is still away. */
static int usable(ml_redis_conn *c, ml_err *err) {
    if (c->ctx) return 0;
    c->broken = 1;
    if (connect_conn(c->pool, c, err) != 0) return -1;
    c->broken = 0;
    return 0;
}

redisReply *ml_redis_cmd(ml_redis_conn *c, ml_err *err, const char *fmt, ...) {
    if (usable(c, err) != 0) return NULL;
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    redisReply *rep = redisvCommand(c->ctx, fmt, ap);
    if (!rep && stale(c) && reconnect(c, err) == 0) rep = redisvCommand(c->ctx, fmt, again);
    va_end(again);
    va_end(ap);
    if (!c->ctx) { /* the reconnect failed: err says why */
        c->broken = 1;
        return NULL;
    }
    return check_reply(c, rep, err);
}

redisReply *ml_redis_cmd_argv(ml_redis_conn *c, ml_err *err, int argc, const char **argv,
                              const size_t *lens) {
    if (usable(c, err) != 0) return NULL;
    redisReply *rep = redisCommandArgv(c->ctx, argc, argv, lens);
    if (!rep && stale(c) && reconnect(c, err) == 0) rep = redisCommandArgv(c->ctx, argc, argv, lens);
    if (!c->ctx) {
        c->broken = 1;
        return NULL;
    }
    return check_reply(c, rep, err);
}

redisReply *ml_redis_eval(ml_redis_conn *c, ml_err *err, const char *script, int n_keys,
                          const char **args, const size_t *lens, int n_args) {
    const char *argv[ML_REDIS_EVAL_MAX_ARGS + 3];
    size_t argl[ML_REDIS_EVAL_MAX_ARGS + 3];
    char nk[16];
    if (n_args > ML_REDIS_EVAL_MAX_ARGS) {
        ml_errf(err, "a script with %d arguments (at most %d)", n_args, ML_REDIS_EVAL_MAX_ARGS);
        return NULL;
    }
    snprintf(nk, sizeof nk, "%d", n_keys);
    argv[0] = "EVAL";
    argv[1] = script;
    argv[2] = nk;
    for (int i = 0; i < 3; i++) argl[i] = strlen(argv[i]);
    for (int i = 0; i < n_args; i++) {
        argv[3 + i] = args[i];
        argl[3 + i] = lens && lens[i] != (size_t)-1 ? lens[i] : strlen(args[i]);
    }
    return ml_redis_cmd_argv(c, err, 3 + n_args, argv, argl);
}

int ml_redis_append(ml_redis_conn *c, ml_err *err, const char *fmt, ...) {
    if (usable(c, err) != 0) return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = redisvAppendCommand(c->ctx, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK) {
        c->broken = 1;
        return fail(c->pool, err, "%s: out of memory queueing a command", c->pool->url.display);
    }
    return 0;
}

redisReply *ml_redis_reply(ml_redis_conn *c, ml_err *err) {
    if (!c->ctx) return ml_errp(err, "%s: the connection is closed", c->pool->url.display);
    void *rep = NULL;
    if (redisGetReply(c->ctx, &rep) != REDIS_OK) rep = NULL;
    /* Pipelines are not resent (their callers poll again), and a stale connection says
     * nothing about Redis: it is closed without marking Redis down. */
    if (!rep && stale(c)) {
        c->broken = 1;
        c->pool->commands++;
        return ml_errp(err, "%s: the connection had gone stale; try again",
                       c->pool->url.display);
    }
    return check_reply(c, rep, err);
}

void ml_redis_set_timeout(ml_redis_conn *c, int ms) {
    if (c->ctx) redisSetTimeout(c->ctx, ms_tv(ms));
}

int ml_redis_ping(ml_redis *r, ml_err *err) {
    ml_redis_conn *c = ml_redis_get(r, err);
    if (!c) return -1;
    redisReply *rep = ml_redis_cmd(c, err, "PING");
    ml_redis_put(r, c);
    if (!rep) return -1;
    freeReplyObject(rep);
    return 0;
}

int ml_redis_up(ml_redis *r, char *why, size_t why_len) {
    pthread_mutex_lock(&r->lock);
    int up = r->up;
    if (why) snprintf(why, why_len, "%s", r->down_why);
    pthread_mutex_unlock(&r->lock);
    return up;
}

void ml_redis_stats_get(ml_redis *r, ml_redis_stats *out) {
    out->commands = r->commands;
    out->errors = r->errors;
    out->reconnects = r->reconnects;
    out->up = ml_redis_up(r, NULL, 0);
}

long long ml_redis_int(const redisReply *r, long long def) {
    if (!r) return def;
    if (r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (r->type == REDIS_REPLY_STRING && r->len > 0 && r->len < 24) {
        char buf[24], *end = NULL;
        memcpy(buf, r->str, r->len);
        buf[r->len] = '\0';
        errno = 0;
        long long v = strtoll(buf, &end, 10);
        if (!errno && end && !*end) return v;
    }
    return def;
}

const char *ml_redis_str(const redisReply *r, size_t *len) {
    if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)) return NULL;
    if (len) *len = r->len;
    return r->str;
}
