/* The connection to Redis (hiredis, blocking API): a small pool of connections shared by the
 * HTTP threads, the compute workers and the scale-out's own threads. Every connect and every
 * command has a timeout, so an unreachable or silent Redis costs a request at most that long
 * and never hangs it; a broken connection is closed and the next borrower reconnects. After a
 * failed connect, further connects fail at once (with the same reason) for ML_REDIS_RETRY_MS,
 * so a Redis that is down costs one timeout per retry period, not one per request.
 *
 * hiredis contexts are not thread-safe: a connection serves one thread between
 * ml_redis_get and ml_redis_put. */
#ifndef METALIGN_ENGINE_REDIS_CONN_H
#define METALIGN_ENGINE_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "metalign/err.h"

#define ML_REDIS_MAX_CONNS 64       /* connections at once; a borrower beyond waits */
#define ML_REDIS_RETRY_MS 500       /* no new connect this soon after a failed one */
#define ML_REDIS_HOST_MAX 256
#define ML_REDIS_SECRET_MAX 256

/* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]; HOST may be [IPv6]. Port 6379, db 0 by
 * default. */
typedef struct ml_redis_url {
    char host[ML_REDIS_HOST_MAX];
    int port;
    int db;
    char user[ML_REDIS_SECRET_MAX];     /* "" for none */
    char password[ML_REDIS_SECRET_MAX]; /* "" for none; never printed */
    char display[ML_REDIS_HOST_MAX + 32]; /* "redis://HOST:PORT/DB", for messages */
} ml_redis_url;

/* 0, or -1 with err naming the part of url that is wrong. */
int ml_redis_url_parse(const char *url, ml_redis_url *out, ml_err *err);

typedef struct ml_redis_config {
    const char *url;
    int connect_timeout_ms;
    int command_timeout_ms;
} ml_redis_config;

typedef struct ml_redis_stats {
    uint64_t commands;   /* round trips (a pipeline of n commands counts n) */
    uint64_t errors;     /* failed connects, I/O errors and timeouts, error replies */
    uint64_t reconnects; /* successful connects after the first */
    int up;              /* the last connect or command reached Redis */
} ml_redis_stats;

typedef struct ml_redis ml_redis;
typedef struct ml_redis_conn ml_redis_conn;

/* Parses the URL and makes the pool; connects nothing yet (ml_redis_ping does), so a Redis
 * that is down at start-up is a state, not a failure. -1 only for a bad configuration. */
ml_redis *ml_redis_new(const ml_redis_config *cfg, ml_err *err);
/* Call once no connection is borrowed. */
void ml_redis_free(ml_redis *r);
const char *ml_redis_display(const ml_redis *r); /* "redis://HOST:PORT/DB" */

/* A connected connection, or NULL with err (Redis unreachable, with the reason). */
ml_redis_conn *ml_redis_get(ml_redis *r, ml_err *err);
/* Gives it back; one that failed is closed rather than reused. */
void ml_redis_put(ml_redis *r, ml_redis_conn *c);

/* One command (hiredis format: %s a C string, %b a binary string and its length). The reply
 * (free it with freeReplyObject), or NULL with err: no answer in time or the connection
 * broke (the connection is then closed), or Redis answered with an error (its text in err). */
redisReply *ml_redis_cmd(ml_redis_conn *c, ml_err *err, const char *fmt, ...);
redisReply *ml_redis_cmd_argv(ml_redis_conn *c, ml_err *err, int argc, const char **argv,
                              const size_t *lens);
/* EVAL script with n_keys keys, args being the keys then the arguments (lens NULL, or an
 * entry (size_t)-1, for C strings). Scripts are sent whole, not by sha: a restarted Redis
 * has forgotten its script cache, and this needs no recovery step for it. */
#define ML_REDIS_EVAL_MAX_ARGS 32
redisReply *ml_redis_eval(ml_redis_conn *c, ml_err *err, const char *script, int n_keys,
                          const char **args, const size_t *lens, int n_args);
/* Pipelining: queue commands, then read their replies in order (each as ml_redis_cmd). */
int ml_redis_append(ml_redis_conn *c, ml_err *err, const char *fmt, ...);
redisReply *ml_redis_reply(ml_redis_conn *c, ml_err *err);
/* The command timeout of this connection for the next commands (e.g. a blocking read);
 * ml_redis_put restores the configured one. */
void ml_redis_set_timeout(ml_redis_conn *c, int ms);

/* PING on a pooled connection: 0 when Redis answered; else -1 with err. Updates the up
 * state like every command does. */
int ml_redis_ping(ml_redis *r, ml_err *err);
/* Whether Redis was reachable at the last attempt; when not, why (why may be NULL). */
int ml_redis_up(ml_redis *r, char *why, size_t why_len);
void ml_redis_stats_get(ml_redis *r, ml_redis_stats *out);

/* Reply helpers: the integer of an integer reply or of a string holding one (def
 * otherwise); a string reply's bytes (NULL when nil or not a string). */
long long ml_redis_int(const redisReply *r, long long def);
const char *ml_redis_str(const redisReply *r, size_t *len);

#endif
