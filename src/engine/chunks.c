/* Chunked execution of shared learning-curves jobs.
 *
 * A job's chunks are entries {job, chunk} of the stream ml:chunks:<fp>; every replica's pump
 * thread reads them through the consumer group "workers" (XREADGROUP) whenever one of its
 * background worker slots is free and hands each to a worker. An entry read stays pending
 * until its chunk completes; the keeper refreshes the pending entries of this replica's
 * chunks in flight (XCLAIM to itself, which resets their idle time), so an entry idle for
 * longer than --redis-claim-timeout belongs to a replica that stopped, and any pump takes it
 * over (XAUTOCLAIM) and computes the chunk again. Chunks are deterministic, and completing
 * one twice counts once (a set of the chunks done), so a slow replica that was presumed dead
 * costs time, never correctness.
 *
 * The chunk that completes the job queues one more entry, {job, "merge"}: whoever claims it
 * reads every chunk's logits, scores and renders the answer as a single daemon does, and ends
 * the job. Because the merge is a stream entry too, a replica dying while merging is covered
 * by the same reclaim. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/chunk_codec.h"
#include "engine/shared.h"

#define MAX_FLIGHTS 256          /* chunks handed to workers at once (>= background slots) */
#define PUMP_BLOCK_MS 500        /* XREADGROUP BLOCK: bounds how late stop is noticed */
#define CHUNK_MAX_ATTEMPTS 5     /* starts of one chunk before its job fails */
#define MERGE_BATCH 64           /* chunk keys per MGET while merging */
#define MERGE_CHUNK -1
#define PUMP_ERROR_NAP_MS 100    /* after a failed read, before the next */

typedef struct flight {
    int used;
    unsigned gen;              /* bumped when the slot is reused */
    char msg_id[48];
    char job[33];
    int chunk;                 /* MERGE_CHUNK for the merge */
    _Atomic int cancel;        /* set by the keeper from the job's cancel flag */
    double last_beat;
} flight;

struct ml_chunks {
    pthread_t pump;
    int pump_running;
    pthread_mutex_t lock;
    pthread_cond_t slot;
    flight flights[MAX_FLIGHTS];
    int n_flight, capacity;
    int stopping;
};

typedef struct chunk_task { ml_shared *sh; flight *f; } chunk_task;

static double mono_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void ml_chunks_stream_key(const ml_shared *sh, char out[ML_KEY_BUF]) {
    snprintf(out, ML_KEY_BUF, ML_SHARED_PREFIX "chunks:%s", sh->fp);
}

/* Shared by the scripts: drop() acks and deletes the entry ARGV[1] of stream KEYS[3]. */
#define LUA_DROP                                                                             \
    "local function drop() redis.call('XACK', KEYS[3], '" ML_CHUNKS_GROUP "', ARGV[1])\n"     \
    "  redis.call('XDEL', KEYS[3], ARGV[1]) end\n"                                             \
    "local function active(st) return st == 'queued' or st == 'running' end\n"

/* KEYS job, done, stream; ARGV msg chunk max_attempts prefix id now ttl.
 * {0} gone, {1} skip, {3} failed by too many attempts, {4, request, n_chunks, chunk_eps,
 * key} run. */
static const char LUA_START[] =
    LUA_DROP
    "local st = redis.call('HGET', KEYS[1], 'status')\n"
    "if not st then drop() return {0} end\n"
    "if not active(st) or redis.call('HGET', KEYS[1], 'cancel') == '1' then drop() return {1} end\n"
    "local f = redis.call('HMGET', KEYS[1], 'request', 'n_chunks', 'chunk_eps', 'key')\n"
    "if ARGV[2] == 'merge' then\n"
    "  if redis.call('SCARD', KEYS[2]) < tonumber(f[2]) then drop() return {1} end\n"
    "elseif redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then drop() return {1} end\n"
    "local a = redis.call('HINCRBY', KEYS[1], 'attempts:' .. ARGV[2], 1)\n"
    "if a > tonumber(ARGV[3]) then\n"
    "  drop()\n"
    "  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished', ARGV[6], 'err_code',\n"
    "    'chunk_failed', 'err_msg', 'chunk ' .. ARGV[2] .. ' was started ' .. (a - 1) ..\n"
    "    ' times without completing (the replicas computing it stopped or failed; see their logs)')\n"
    "  redis.call('EXPIRE', KEYS[1], ARGV[7])\n"
    "  redis.call('ZREM', ARGV[4] .. 'active', ARGV[5])\n"
    "  return {3}\n"
    "end\n"
    "if st == 'queued' then redis.call('HSET', KEYS[1], 'status', 'running') end\n"
    "return {4, f[1], f[2], f[3], f[4]}\n";

/* KEYS job, done, stream, chunk; ARGV msg chunk payload episodes ttl id.
 * 0 dropped, 1 stored, 2 stored and the merge queued. */
static const char LUA_COMPLETE[] =
    LUA_DROP
    "drop()\n"
    "if not active(redis.call('HGET', KEYS[1], 'status')) then return 0 end\n"
    "if redis.call('SADD', KEYS[2], ARGV[2]) == 1 then\n"
    "  redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[5])\n"
    "  redis.call('HINCRBY', KEYS[1], 'done', ARGV[4])\n"
    "end\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[5])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[5])\n"
    "if redis.call('SCARD', KEYS[2]) >= tonumber(redis.call('HGET', KEYS[1], 'n_chunks')) and\n"
    "   redis.call('HSETNX', KEYS[1], 'merge_queued', 1) == 1 then\n"
    "  redis.call('XADD', KEYS[3], '*', 'job', ARGV[6], 'chunk', 'merge')\n"
    "  return 2\n"
    "end\n"
    "return 1\n";

/* KEYS job, done, stream, result; ARGV msg result ttl now prefix id. 1 when it ended the
 * job as done. */
static const char LUA_DONE[] =
    LUA_DROP
    "drop()\n"
    "if not active(redis.call('HGET', KEYS[1], 'status')) then return 0 end\n"
    "local f = redis.call('HMGET', KEYS[1], 'n_chunks', 'fp', 'key', 'total')\n"
    "redis.call('SET', KEYS[4], ARGV[2], 'EX', ARGV[3])\n"
    "redis.call('HSET', KEYS[1], 'status', 'done', 'finished', ARGV[4], 'done', f[4])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
    "local jk = ARGV[5] .. 'jobkey:' .. f[2] .. ':' .. f[3]\n"
    "if redis.call('GET', jk) == ARGV[6] then redis.call('DEL', jk) end\n"
    "redis.call('DEL', KEYS[2])\n"
    "for c = 0, tonumber(f[1]) - 1 do redis.call('DEL', KEYS[1] .. ':chunk:' .. c) end\n"
    "redis.call('ZREM', ARGV[5] .. 'active', ARGV[6])\n"
    "return 1\n";


/* ---- flights ---- */

static flight *flight_take(ml_chunks *ck, const char *msg_id, const char *job, int chunk) {
    pthread_mutex_lock(&ck->lock);
    flight *f = NULL;
    for (int i = 0; i < MAX_FLIGHTS && !f; i++)
        if (!ck->flights[i].used) f = &ck->flights[i];
    if (f) {
        f->used = 1;
        f->gen++;
        snprintf(f->msg_id, sizeof f->msg_id, "%s", msg_id);
        snprintf(f->job, sizeof f->job, "%s", job);
        f->chunk = chunk;
        f->cancel = 0;
        f->last_beat = mono_now();
        ck->n_flight++;
    }
    pthread_mutex_unlock(&ck->lock);
    return f;
}

static void flight_release(ml_chunks *ck, flight *f) {
    pthread_mutex_lock(&ck->lock);
    f->used = 0;
    ck->n_flight--;
    pthread_cond_broadcast(&ck->slot);
    pthread_mutex_unlock(&ck->lock);
}

int ml_chunks_in_flight(ml_shared *sh) {
    pthread_mutex_lock(&sh->chunks->lock);
    int n = sh->chunks->n_flight;
    pthread_mutex_unlock(&sh->chunks->lock);
    return n;
}

/* ---- running a chunk ---- */

static int chunk_cancelled(void *ctx) { return ((flight *)ctx)->cancel; }

/* Acks and drops the entry (a chunk that stopped because its job was cancelled). */
static void drop_entry(ml_shared *sh, ml_redis_conn *c, const flight *f) {
    char stream[ML_KEY_BUF];
    ml_chunks_stream_key(sh, stream);
    ml_err err;
    const char *args[] = {"", "", stream, f->msg_id};
    redisReply *rep = ml_redis_eval(c, &err, LUA_DROP "drop() return 1\n", 3, args, NULL, 4);
    if (rep) freeReplyObject(rep);
}

static void run_chunk(ml_shared *sh, ml_worker *w, ml_redis_conn *c, flight *f,
                      const ml_sim_request *rq, int per) {
    ml_app *app = sh->app;
    ml_err err = {{0}};
    int e0 = f->chunk * per, n = rq->episodes - e0 < per ? rq->episodes - e0 : per;
    int later = app->model.generation != ML_GEN_SEED;
    (void)w;
    ml_runner *r = ml_app_runner_acquire(app, &err);
    if (!r || ml_sim_check(r, rq, &err) != 0 || n < 1) {
        if (r) ml_app_runner_release(app, r);
        sh->n.chunks_failed++;
        ml_shared_job_fail(sh, c, f->job, "simulation_failed", n < 1 ? "bad chunk number" : err.msg);
        drop_entry(sh, c, f);
        return;
    }
    double t0 = mono_now();
    ml_sim_hooks hooks = {NULL, chunk_cancelled, f};
    ml_sim_result part; /* episodes e0 .. e0 + n - 1 */
    int rc = -1;
    if (ml_sim_result_alloc(&part, n, rq->seq_len, later) == 0)
        rc = ml_sim_run_range(r, rq, e0, &hooks, &part, &err);
    else
        ml_errf(&err, "out of memory for a chunk of %d episodes", n);
    ml_app_runner_release(app, r);
    ml_buf payload = {0};
    if (rc == 0 && ml_chunk_encode(e0, n, rq->seq_len, part.logits, part.pred_magnitudes,
                                   &payload) != 0)
        rc = ml_errf(&err, "out of memory encoding a chunk");
    ml_sim_result_free(&part);
    if (rc == 1) {
        sh->n.chunks_dropped++;
        drop_entry(sh, c, f);
    } else if (rc != 0) {
        /* Left pending: another replica (or this one, later) takes it over after the claim
         * timeout; a chunk that keeps failing fails its job after CHUNK_MAX_ATTEMPTS. */
        sh->n.chunks_failed++;
        fprintf(stderr, "metalignd: job %s, chunk %d: %s; it will be retried\n", f->job,
                f->chunk, err.msg);
    } else {
        char job[ML_KEY_BUF], done[ML_KEY_BUF], stream[ML_KEY_BUF], key[ML_KEY_BUF + 16],
            s_chunk[16], s_eps[16], s_ttl[16];
        ml_shared_job_key(job, f->job, NULL);
        ml_shared_job_key(done, f->job, ":done");
        ml_chunks_stream_key(sh, stream);
        snprintf(key, sizeof key, "%s:chunk:%d", job, f->chunk);
        snprintf(s_chunk, sizeof s_chunk, "%d", f->chunk);
        snprintf(s_eps, sizeof s_eps, "%d", n);
        snprintf(s_ttl, sizeof s_ttl, "%d", ML_SHARED_ACTIVE_TTL);
        const char *args[] = {job, done, stream, key, f->msg_id, s_chunk, payload.data, s_eps,
                              s_ttl, f->job};
        size_t lens[] = {(size_t)-1, (size_t)-1, (size_t)-1, (size_t)-1, (size_t)-1, (size_t)-1,
                         payload.len, (size_t)-1, (size_t)-1, (size_t)-1};
        redisReply *rep = ml_redis_eval(c, &err, LUA_COMPLETE, 4, args, lens, 10);
        if (rep) {
            sh->n.chunks_computed++;
            sh->n.chunk_episodes += (uint64_t)n;
            sh->n.chunk_us += (uint64_t)((mono_now() - t0) * 1e6);
            freeReplyObject(rep);
        } /* else: the entry stays pending and is reclaimed after the claim timeout */
    }
    ml_buf_free(&payload);
}

/* Reads chunk outcomes c0..c1-1 into res: 0, -1 when one is missing or malformed, -2 when
 * Redis failed. */
static int read_chunks(ml_shared *sh, ml_redis_conn *c, const char *id, int c0, int c1,
                       int per, ml_sim_result *res, ml_err *err) {
    const char *argv[MERGE_BATCH + 1];
    size_t lens[MERGE_BATCH + 1];
    char keys[MERGE_BATCH][ML_KEY_BUF + 32];
    argv[0] = "MGET";
    lens[0] = 4;
    for (int k = c0; k < c1; k++) {
        char job[ML_KEY_BUF];
        ml_shared_job_key(job, id, NULL);
        snprintf(keys[k - c0], sizeof keys[0], "%s:chunk:%d", job, k);
        argv[1 + k - c0] = keys[k - c0];
        lens[1 + k - c0] = strlen(keys[k - c0]);
    }
    redisReply *rep = ml_redis_cmd_argv(c, err, 1 + c1 - c0, argv, lens);
    if (!rep) return -2;
    int rc = 0;
    size_t S = (size_t)res->seq_len;
    for (int k = c0; k < c1 && rc == 0; k++) {
        size_t len = 0;
        const char *data = rep->type == REDIS_REPLY_ARRAY && (size_t)(k - c0) < rep->elements
                               ? ml_redis_str(rep->element[k - c0], &len)
                               : NULL;
        int e0 = k * per, n = res->episodes - e0 < per ? res->episodes - e0 : per;
        if (!data)
            rc = ml_errf(err, "chunk %d's outcome is missing from the shared store (evicted? "
                              "Redis needs maxmemory-policy noeviction)", k);
        else
            rc = ml_chunk_decode(data, len, e0, n, res->seq_len, res->logits + (size_t)e0 * S,
                                 res->pred_magnitudes ? res->pred_magnitudes + (size_t)e0 * S
                                                      : NULL,
                                 err);
    }
    freeReplyObject(rep);
    return rc;
}

static void run_merge(ml_shared *sh, ml_redis_conn *c, flight *f, const ml_sim_request *rq,
                      int per, int n_chunks, const char *key) {
    ml_app *app = sh->app;
    ml_err err = {{0}};
    double t0 = mono_now();
    int later = app->model.generation != ML_GEN_SEED;
    ml_sim_result res;
    int rc = ml_sim_result_alloc(&res, rq->episodes, rq->seq_len, later);
    if (rc != 0)
        ml_errf(&err, "out of memory merging %d episodes", rq->episodes);
    else
        rc = ml_sim_sample_range(&app->data, rq, later, 0, &res, &err);
    int redis_failed = 0;
    for (int k = 0; rc == 0 && k < n_chunks; k += MERGE_BATCH) {
        int k1 = k + MERGE_BATCH < n_chunks ? k + MERGE_BATCH : n_chunks;
        rc = read_chunks(sh, c, f->job, k, k1, per, &res, &err);
        redis_failed = rc == -2;
    }
    if (rc == 0) rc = ml_sim_finish(rq, later, &res, &err);
    ml_blob *b = rc == 0 ? sh->render(app, rq, &res, &err) : NULL;
    ml_sim_result_free(&res);
    if (redis_failed) return; /* pending: redone after the claim timeout */
    if (!b) {
        ml_shared_job_fail(sh, c, f->job, "simulation_failed", err.msg);
        drop_entry(sh, c, f);
        return;
    }
    char job[ML_KEY_BUF], done[ML_KEY_BUF], stream[ML_KEY_BUF], result[ML_KEY_BUF], s_ttl[16],
        s_now[24];
    ml_shared_job_key(job, f->job, NULL);
    ml_shared_job_key(done, f->job, ":done");
    ml_shared_job_key(result, f->job, ":result");
    ml_chunks_stream_key(sh, stream);
    snprintf(s_ttl, sizeof s_ttl, "%d", sh->job_ttl);
    snprintf(s_now, sizeof s_now, "%lld", (long long)time(NULL));
    const char *args[] = {job, done, stream, result, f->msg_id, b->data, s_ttl, s_now,
                          ML_SHARED_PREFIX, f->job};
    size_t lens[] = {(size_t)-1, (size_t)-1, (size_t)-1, (size_t)-1, (size_t)-1, b->len,
                     (size_t)-1, (size_t)-1, (size_t)-1, (size_t)-1};
    redisReply *rep = ml_redis_eval(c, &err, LUA_DONE, 4, args, lens, 10);
    if (rep) {
        if (ml_redis_int(rep, 0) == 1) {
            sh->n.merges++;
            ml_metrics_add(app->metrics, ML_CNT_JOBS_DONE, 1);
            sh->n.merge_us += (uint64_t)((mono_now() - t0) * 1e6);
            ml_shared_result_put(sh, c, key, b);
            ml_lru_put_blob(app->results, key, b);
        }
        freeReplyObject(rep);
    }
    ml_blob_unref(b);
}

static void chunk_task_run(void *arg, void *worker) {
    chunk_task *t = arg;
    ml_shared *sh = t->sh;
    flight *f = t->f;
    free(t);
    ml_err err = {{0}};
    ml_redis_conn *c = ml_redis_get(sh->redis, &err);
    redisReply *rep = NULL;
    if (c) {
        char job[ML_KEY_BUF], done[ML_KEY_BUF], stream[ML_KEY_BUF], s_chunk[16], s_max[8],
            s_now[24], s_ttl[16];
        ml_shared_job_key(job, f->job, NULL);
        ml_shared_job_key(done, f->job, ":done");
        ml_chunks_stream_key(sh, stream);
        if (f->chunk == MERGE_CHUNK)
            snprintf(s_chunk, sizeof s_chunk, "merge");
        else
            snprintf(s_chunk, sizeof s_chunk, "%d", f->chunk);
        snprintf(s_max, sizeof s_max, "%d", CHUNK_MAX_ATTEMPTS);
        snprintf(s_now, sizeof s_now, "%lld", (long long)time(NULL));
        snprintf(s_ttl, sizeof s_ttl, "%d", sh->job_ttl);
        const char *args[] = {job, done, stream, f->msg_id, s_chunk, s_max, ML_SHARED_PREFIX,
                              f->job, s_now, s_ttl};
        rep = ml_redis_eval(c, &err, LUA_START, 3, args, NULL, 10);
    }
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 5 &&
        ml_redis_int(rep->element[0], -1) == 4) {
        size_t len = 0;
        const char *text = ml_redis_str(rep->element[1], &len);
        int n_chunks = (int)ml_redis_int(rep->element[2], 0);
        int per = (int)ml_redis_int(rep->element[3], 0);
        size_t key_len = 0;
        const char *key_s = ml_redis_str(rep->element[4], &key_len);
        char key[ML_KEY_BUF];
        snprintf(key, sizeof key, "%.*s", (int)key_len, key_s ? key_s : "");
        ml_sim_request rq;
        if (!text || ml_request_decode(text, len, &rq, &err) != 0 || per < 1 ||
            n_chunks != ml_chunk_count(rq.episodes, per)) {
            if (text) ml_sim_request_free(&rq);
            ml_shared_job_fail(sh, c, f->job, "bad_job_record",
                               err.msg[0] ? err.msg : "the job record is inconsistent");
            drop_entry(sh, c, f);
        } else {
            if (f->chunk == MERGE_CHUNK)
                run_merge(sh, c, f, &rq, per, n_chunks, key);
            else
                run_chunk(sh, worker, c, f, &rq, per);
            ml_sim_request_free(&rq);
        }
    } else if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1) {
        sh->n.chunks_dropped++;
    }
    if (rep) freeReplyObject(rep);
    ml_redis_put(sh->redis, c);
    flight_release(sh->chunks, f);
}

/* ---- the pump ---- */

/* Parses one stream entry [id, [field, value, ...]] and hands it to a worker. */
static void dispatch(ml_shared *sh, const redisReply *entry) {
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) return;
    const char *id = ml_redis_str(entry->element[0], NULL);
    const redisReply *kv = entry->element[1];
    const char *job = NULL, *chunk = NULL;
    for (size_t i = 0; kv->type == REDIS_REPLY_ARRAY && i + 1 < kv->elements; i += 2) {
        const char *k = ml_redis_str(kv->element[i], NULL);
        if (k && strcmp(k, "job") == 0) job = ml_redis_str(kv->element[i + 1], NULL);
        if (k && strcmp(k, "chunk") == 0) chunk = ml_redis_str(kv->element[i + 1], NULL);
    }
    if (!id || !job || !chunk || strlen(job) != 32 || strlen(id) >= 48) return;
    int number = strcmp(chunk, "merge") == 0 ? MERGE_CHUNK : atoi(chunk);
    flight *f = flight_take(sh->chunks, id, job, number);
    chunk_task *t = f ? malloc(sizeof *t) : NULL;
    if (t) *t = (chunk_task){sh, f};
    if (!t || ml_workers_submit(sh->app->workers, ML_TASK_BACKGROUND, chunk_task_run, t) != 0) {
        free(t); /* the entry stays pending: reclaimed after the claim timeout */
        if (f) flight_release(sh->chunks, f);
    }
}

/* Dispatches the entries of an XREADGROUP or XAUTOCLAIM reply; the number dispatched. */
static int dispatch_entries(ml_shared *sh, const redisReply *entries) {
    int n = 0;
    for (size_t i = 0; entries && entries->type == REDIS_REPLY_ARRAY && i < entries->elements;
         i++, n++)
        dispatch(sh, entries->element[i]);
    return n;
}

/* The group, made when missing (pcall: an existing group is not an error to count). */
static const char LUA_GROUP[] =
    "pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], '" ML_CHUNKS_GROUP "', '0', 'MKSTREAM')\n"
    "return 1\n";

static int ensure_group(ml_shared *sh, ml_redis_conn *c) {
    char stream[ML_KEY_BUF];
    ml_chunks_stream_key(sh, stream);
    ml_err err;
    const char *args[] = {stream};
    redisReply *rep = ml_redis_eval(c, &err, LUA_GROUP, 1, args, NULL, 1);
    if (rep) freeReplyObject(rep);
    return rep ? 0 : -1;
}

static void *pump_main(void *arg) {
    ml_shared *sh = arg;
    ml_chunks *ck = sh->chunks;
    char stream[ML_KEY_BUF];
    ml_chunks_stream_key(sh, stream);
    int group_ok = 0;
    double last_reclaim = 0;
    double reclaim_every = sh->claim_timeout_ms / 2000.0;
    char cursor[48] = "0-0";
    for (;;) {
        pthread_mutex_lock(&ck->lock);
        while (!ck->stopping && ck->n_flight >= ck->capacity) pthread_cond_wait(&ck->slot, &ck->lock);
        int stop = ck->stopping;
        pthread_mutex_unlock(&ck->lock);
        if (stop) break;
        ml_err err = {{0}};
        ml_redis_conn *c = ml_redis_get(sh->redis, &err);
        if (c && !group_ok) group_ok = ensure_group(sh, c) == 0;
        if (!c || !group_ok) {
            ml_redis_put(sh->redis, c);
            struct timespec nap = {0, ML_REDIS_RETRY_MS * 1000000L};
            nanosleep(&nap, NULL);
            continue;
        }
        int got = 0;
        if (mono_now() - last_reclaim >= reclaim_every) {
            /* One entry at a time, walking the pending list with the cursor it returns (a
             * call looks at a bounded number of entries); a pass ends at cursor 0-0. */
            redisReply *rep = ml_redis_cmd(c, &err, "XAUTOCLAIM %s " ML_CHUNKS_GROUP " %s %d %s "
                                           "COUNT 1", stream, sh->replica, sh->claim_timeout_ms,
                                           cursor);
            const char *next = NULL;
            if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2) {
                next = ml_redis_str(rep->element[0], NULL);
                got = dispatch_entries(sh, rep->element[1]);
            }
            snprintf(cursor, sizeof cursor, "%s", next && strlen(next) < sizeof cursor ? next : "0-0");
            if (rep) freeReplyObject(rep);
            sh->n.chunks_reclaimed += (uint64_t)got;
            if (!got && strcmp(cursor, "0-0") == 0) last_reclaim = mono_now();
            if (!rep && strstr(err.msg, "NOGROUP")) group_ok = 0;
        }
        int failed = 0;
        if (!got && group_ok) {
            ml_redis_set_timeout(c, PUMP_BLOCK_MS + sh->app->cfg->redis_timeout);
            redisReply *rep = ml_redis_cmd(c, &err, "XREADGROUP GROUP " ML_CHUNKS_GROUP " %s "
                                           "COUNT 1 BLOCK %d STREAMS %s >", sh->replica,
                                           PUMP_BLOCK_MS, stream);
            /* [[stream, [entries]]], or nil when nothing came within the block */
            if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
                rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 2)
                dispatch_entries(sh, rep->element[0]->element[1]);
            if (rep) freeReplyObject(rep);
            if (!rep && strstr(err.msg, "NOGROUP")) group_ok = 0; /* a Redis that restarted */
            failed = !rep;
        }
        ml_redis_put(sh->redis, c);
        if (failed) { /* an error answered at once must not make this loop spin */
            struct timespec nap = {0, PUMP_ERROR_NAP_MS * 1000000L};
            nanosleep(&nap, NULL);
        }
    }
    return NULL;
}

/* ---- the keeper's part ---- */

void ml_chunks_tick(ml_shared *sh) {
    ml_chunks *ck = sh->chunks;
    struct { int slot; unsigned gen; char msg_id[48], job[33]; int beat; } cp[MAX_FLIGHTS];
    int n = 0;
    double now = mono_now(), beat_every = sh->claim_timeout_ms / 4000.0;
    pthread_mutex_lock(&ck->lock);
    for (int i = 0; i < MAX_FLIGHTS; i++) {
        flight *f = &ck->flights[i];
        if (!f->used) continue;
        cp[n].slot = i;
        cp[n].gen = f->gen;
        memcpy(cp[n].msg_id, f->msg_id, sizeof cp[n].msg_id);
        memcpy(cp[n].job, f->job, sizeof cp[n].job);
        cp[n].beat = now - f->last_beat >= beat_every;
        if (cp[n].beat) f->last_beat = now;
        n++;
    }
    pthread_mutex_unlock(&ck->lock);
    if (!n) return;
    ml_err err;
    ml_redis_conn *c = ml_redis_get(sh->redis, &err);
    if (!c) return;
    char stream[ML_KEY_BUF];
    ml_chunks_stream_key(sh, stream);
    int queued = 0;
    for (int i = 0; i < n; i++)
        queued += ml_redis_append(c, &err, "HMGET " ML_SHARED_PREFIX "job:%s cancel status",
                                  cp[i].job) == 0;
    for (int i = 0; i < n; i++)
        if (cp[i].beat)
            queued += ml_redis_append(c, &err, "XCLAIM %s " ML_CHUNKS_GROUP " %s 0 %s JUSTID",
                                      stream, sh->replica, cp[i].msg_id) == 0;
    for (int i = 0; i < queued; i++) {
        redisReply *rep = ml_redis_reply(c, &err);
        if (!rep) break;
        if (i < n && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
            const char *cancel = ml_redis_str(rep->element[0], NULL);
            const char *status = ml_redis_str(rep->element[1], NULL);
            int stop = !status || (cancel && strcmp(cancel, "1") == 0) ||
                       (strcmp(status, "queued") != 0 && strcmp(status, "running") != 0);
            pthread_mutex_lock(&ck->lock);
            flight *f = &ck->flights[cp[i].slot];
            if (stop && f->used && f->gen == cp[i].gen) f->cancel = 1;
            pthread_mutex_unlock(&ck->lock);
        }
        freeReplyObject(rep);
    }
    ml_redis_put(sh->redis, c);
}

/* ---- life cycle ---- */

int ml_chunks_new(ml_shared *sh, ml_err *err) {
    ml_chunks *ck = calloc(1, sizeof *ck);
    if (!ck) return ml_errf(err, "out of memory");
    pthread_mutex_init(&ck->lock, NULL);
    pthread_cond_init(&ck->slot, NULL);
    /* as many chunks at once as the workers run background tasks (app.c: all but one) */
    int threads = sh->app->threads;
    ck->capacity = threads > 1 ? threads - 1 : 1;
    sh->chunks = ck;
    return 0;
}

int ml_chunks_start(ml_shared *sh, ml_err *err) {
    ml_chunks *ck = sh->chunks;
    if (pthread_create(&ck->pump, NULL, pump_main, sh) != 0)
        return ml_errf(err, "cannot start the scale-out chunk thread");
    ck->pump_running = 1;
    return 0;
}

void ml_chunks_stop(ml_shared *sh) {
    ml_chunks *ck = sh->chunks;
    if (!ck) return;
    pthread_mutex_lock(&ck->lock);
    ck->stopping = 1;
    pthread_cond_broadcast(&ck->slot);
    pthread_mutex_unlock(&ck->lock);
    if (ck->pump_running) pthread_join(ck->pump, NULL);
    ck->pump_running = 0;
}

void ml_chunks_free(ml_shared *sh) {
    ml_chunks *ck = sh->chunks;
    if (!ck) return;
    pthread_mutex_destroy(&ck->lock);
    pthread_cond_destroy(&ck->slot);
    free(ck);
    sh->chunks = NULL;
}
