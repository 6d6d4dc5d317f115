/* Scale-out (--redis): the state replicas share through one Redis. docs/SCALEOUT.md has the
 * design; in short:
 *   shared_jobs.c   job records, progress, cancel flags, results, the shared result cache,
 *                   and the watch a replica keeps on the jobs it accepted
 *   chunks.c        a job cut into chunks of episodes in a Redis stream that every replica's
 *                   background workers claim (consumer group), heartbeat and complete; the
 *                   last chunk queues the merge; a dead replica's chunks are reclaimed
 *   shared_human.c  one download of the human CSV across replicas (a lock with a token) and
 *                   the CSV itself, checked by size and sha256, handed to the others
 *   redis_conn.c    the connections, timeouts and reconnects
 * This file: the store's life cycle, the world fingerprint, the keeper thread (pings,
 * heartbeats, the watch), readiness and the per-replica metrics.
 *
 * Replicas share work only with replicas of the same world: the stream and the result cache
 * are keyed by a fingerprint of the version, the model and the data, so a rolling upgrade or
 * a replica started on other files never mixes its episodes into another's answer. */
#ifndef METALIGN_ENGINE_SHARED_H
#define METALIGN_ENGINE_SHARED_H

#include <pthread.h>
#include <stdint.h>

#include "engine/app.h"
#include "engine/jobs.h"
#include "engine/redis_conn.h"
#include "metalign/fetch.h"
#include "metalign/simulate.h"
#include "util/blob.h"
#include "util/buf.h"

#define ML_SHARED_PREFIX "ml:"
#define ML_SHARED_FP_LEN 17          /* 16 hex digits of the world fingerprint + NUL */
#define ML_SHARED_TICK_MS 250        /* the keeper's period: cancel flags, heartbeats */
#define ML_SHARED_WATCH_MS 1000      /* pings and the watch over accepted jobs */
#define ML_SHARED_ACTIVE_TTL 86400   /* seconds an active job's keys live without progress */
#define ML_SHARED_RESULT_MAX_BYTES ((size_t)64 << 20) /* larger answers skip the shared cache */
#define ML_SHARED_REPLICA_MAX 64

typedef struct ml_chunks ml_chunks;
typedef struct ml_shared_jobs ml_shared_jobs;

/* The learning-curves answer for a merged result, rendered by the http layer with the same
 * code as a single daemon's answer (http/handlers/curves.c). */
typedef ml_blob *(*ml_shared_render_fn)(ml_app *app, const ml_sim_request *rq,
                                        ml_sim_result *res, ml_err *err);

typedef struct ml_shared_counters {
    _Atomic uint64_t chunks_computed, chunk_episodes, chunk_us, chunks_reclaimed,
        chunks_dropped, chunks_failed, merges, merge_us, jobs_submitted, jobs_lost,
        result_hits, result_misses, human_upstream, human_shared_copy, human_not_modified,
        human_waits, human_fallback;
} ml_shared_counters;

typedef struct ml_shared {
    ml_app *app;
    ml_redis *redis;
    char fp[ML_SHARED_FP_LEN];         /* the world fingerprint */
    char replica[ML_SHARED_REPLICA_MAX]; /* this replica's consumer name */
    int claim_timeout_ms;
    int chunk_episodes;                /* 0: automatic */
    int result_ttl, max_results, max_jobs, job_ttl;
    long human_max_age;
    ml_shared_render_fn render;
    ml_shared_counters n;
    ml_chunks *chunks;
    ml_shared_jobs *jobs;

    pthread_t keeper;
    int keeper_running;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping;                      /* under lock */
} ml_shared;

/* With --redis: the store (app->shared), its world fingerprint, one ping. Redis being down is
 * not an error (it is reported and /readyz says 503); a bad URL is. */
int ml_shared_open(ml_app *app, ml_err *err);
/* Starts claiming chunks and the keeper, once the http layer gives its renderer. */
int ml_shared_start(ml_shared *sh, ml_shared_render_fn render, ml_err *err);
/* Stops claiming (chunks already handed to workers finish; unfinished ones are reclaimed
 * by the other replicas after --redis-claim-timeout). Before the workers are freed. */
void ml_shared_stop(ml_shared *sh);
/* After the workers and the human store are freed. */
void ml_shared_free(ml_shared *sh);

/* 1 when Redis answers; else 0 with why. */
int ml_shared_up(ml_shared *sh, char *why, size_t why_len);
/* Appends this replica's scale-out metrics in Prometheus text format. */
void ml_shared_render_metrics(ml_shared *sh, ml_buf *out);

/* ---- shared_jobs.c ---- */

typedef enum ml_shared_rc {
    ML_SHARED_OK = 0,
    ML_SHARED_EXISTING = 1,    /* submit: an identical job is active; its id is returned */
    ML_SHARED_NOT_FOUND = 1,   /* info, cancel: no such job in Redis */
    ML_SHARED_DOWN = -1,       /* Redis unreachable or failing: err says why */
    ML_SHARED_FULL = -2,       /* too many active shared jobs (--redis-max-jobs) */
} ml_shared_rc;

int ml_shared_jobs_new(ml_shared *sh, ml_err *err);
void ml_shared_jobs_free(ml_shared *sh);
/* Creates the job of rq (request key key) and queues its chunks; id receives its id. */
int ml_shared_job_submit(ml_shared *sh, const ml_sim_request *rq, const char *key,
                         char id[33], ml_err *err);
/* A job that is done at once, its answer known (the result cache had it). */
int ml_shared_job_done(ml_shared *sh, const ml_sim_request *rq, const char *key,
                       const ml_blob *answer, char id[33], ml_err *err);
/* The job's state as a local job's (its result referenced when done). */
int ml_shared_job_info(ml_shared *sh, const char *id, ml_job_info *out, ml_err *err);
/* Asks the job to stop, on every replica. */
int ml_shared_job_cancel(ml_shared *sh, const char *id, ml_err *err);
/* Marks a job failed (a chunk or the merge failed); no-op when it is no longer active. */
void ml_shared_job_fail(ml_shared *sh, ml_redis_conn *c, const char *id, const char *code,
                        const char *msg);
/* The keeper's watch: jobs this replica accepted whose keys vanished (a Redis restarted or
 * flushed) are written back as failed, with the reason. */
void ml_shared_jobs_watch(ml_shared *sh);

/* The shared result cache: an answer by request key (a new reference), or NULL. */
ml_blob *ml_shared_result_get(ml_shared *sh, const char *key);
void ml_shared_result_put(ml_shared *sh, ml_redis_conn *c, const char *key, const ml_blob *b);

/* Keys. */
#define ML_KEY_BUF 160
void ml_shared_job_key(char out[ML_KEY_BUF], const char *id, const char *suffix);

/* ---- chunks.c ---- */

int ml_chunks_new(ml_shared *sh, ml_err *err);
int ml_chunks_start(ml_shared *sh, ml_err *err);
void ml_chunks_stop(ml_shared *sh);
void ml_chunks_free(ml_shared *sh);
/* The keeper's part: heartbeats of the chunks in flight, their jobs' cancel flags. */
void ml_chunks_tick(ml_shared *sh);
int ml_chunks_in_flight(ml_shared *sh);
/* The stream of this world's chunks. */
void ml_chunks_stream_key(const ml_shared *sh, char out[ML_KEY_BUF]);
#define ML_CHUNKS_GROUP "workers"

/* ---- shared_human.c ---- */

/* ml_fetch_to_fd with the download shared across replicas (ml_human_config.fetch); ctx is
 * the ml_shared. Falls back to a download of its own when Redis fails. */
int ml_shared_human_fetch(void *ctx, const ml_fetch_request *rq, int fd, ml_fetch_result *res,
                          ml_err *err);

#endif
