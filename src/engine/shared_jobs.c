/* Shared job records in Redis. Every change of a job's state is one Lua script, so it is
 * atomic across replicas and costs one round trip; scripts are sent with EVAL (not EVALSHA)
 * so a restarted Redis, which has forgotten its script cache, needs no recovery step.
 *
 *   ml:job:<id>              hash: kind status done total created finished err_code err_msg
 *                            owner fp key request n_chunks chunk_eps cancel attempts:<c>
 *   ml:job:<id>:done         set of the chunk numbers completed
 *   ml:job:<id>:chunk:<c>    a chunk's outcome (chunk_codec.h)
 *   ml:job:<id>:result       the rendered answer
 *   ml:jobkey:<fp>:<key>     the active job of a request key (identical requests share it)
 *   ml:active                sorted set of active job ids (the --redis-max-jobs bound)
 *   ml:result:<fp>:<key>     the shared result cache, indexed by ml:results:<fp>
 * Active jobs' keys live ML_SHARED_ACTIVE_TTL, renewed by every chunk; a finished job's hash
 * and result live --job-ttl; the rest is deleted when the job ends. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "engine/chunk_codec.h"
#include "engine/shared.h"

#define WATCH_MAX 1024 /* accepted jobs watched at once; older ones are dropped from the watch */

typedef struct watched {
    char id[33];
    time_t created;
    int total;
} watched;

struct ml_shared_jobs {
    pthread_mutex_t lock;
    watched list[WATCH_MAX];
    int n;
};

/* Ends a job: its status, its record's time to live, and the keys only an active job needs.
 * KEYS[1] the job hash; ARGV[1] prefix, [2] id, [3] status, [4] now, [5] ttl, [6] code,
 * [7] message. Shared by the scripts below. */
#define LUA_FINISH                                                                           \
    "local function finish(job, P, id, status, now, ttl, code, msg)\n"                         \
    "  local f = redis.call('HMGET', job, 'n_chunks', 'fp', 'key')\n"                          \
    "  redis.call('HSET', job, 'status', status, 'finished', now)\n"                           \
    "  if code and code ~= '' then redis.call('HSET', job, 'err_code', code, 'err_msg', msg) end\n" \
    "  redis.call('EXPIRE', job, ttl)\n"                                                       \
    "  local jk = P .. 'jobkey:' .. (f[2] or '') .. ':' .. (f[3] or '')\n"                     \
    "  if redis.call('GET', jk) == id then redis.call('DEL', jk) end\n"                        \
    "  redis.call('DEL', job .. ':done')\n"                                                    \
    "  for c = 0, (tonumber(f[1]) or 0) - 1 do redis.call('DEL', job .. ':chunk:' .. c) end\n" \
    "  redis.call('ZREM', P .. 'active', id)\n"                                                \
    "end\n"                                                                                    \
    "local function active(st) return st == 'queued' or st == 'running' end\n"

/* KEYS job, jobkey, active, stream; ARGV prefix id kind total n_chunks chunk_eps request owner
 * now max_active active_ttl fp key. {0,id} created, {1,id} existing, {2,n} full. */
static const char LUA_CREATE[] =
    LUA_FINISH
    "local P = ARGV[1]\n"
    "local existing = redis.call('GET', KEYS[2])\n"
    "if existing and active(redis.call('HGET', P .. 'job:' .. existing, 'status')) then\n"
    "  return {1, existing}\n"
    "end\n"
    "for _, jid in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do\n"
    "  if not active(redis.call('HGET', P .. 'job:' .. jid, 'status')) then\n"
    "    redis.call('ZREM', KEYS[3], jid)\n"
    "  end\n"
    "end\n"
    "local n = redis.call('ZCARD', KEYS[3])\n"
    "if n >= tonumber(ARGV[10]) then return {2, tostring(n)} end\n"
    "redis.call('HSET', KEYS[1], 'kind', ARGV[3], 'status', 'queued', 'done', 0, 'total', ARGV[4],\n"
    "  'created', ARGV[9], 'n_chunks', ARGV[5], 'chunk_eps', ARGV[6], 'request', ARGV[7],\n"
    "  'owner', ARGV[8], 'fp', ARGV[12], 'key', ARGV[13], 'cancel', 0)\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[11])\n"
    "redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[11])\n"
    "redis.call('ZADD', KEYS[3], ARGV[9], ARGV[2])\n"
    "for c = 0, tonumber(ARGV[5]) - 1 do\n"
    "  redis.call('XADD', KEYS[4], '*', 'job', ARGV[2], 'chunk', c)\n"
    "end\n"
    "return {0, ARGV[2]}\n";

/* KEYS job; ARGV prefix id status now ttl code message: 1 when it ended the job. */
static const char LUA_END[] =
    LUA_FINISH
    "if not active(redis.call('HGET', KEYS[1], 'status')) then return 0 end\n"
    "if ARGV[3] == 'cancelled' then redis.call('HSET', KEYS[1], 'cancel', 1) end\n"
    "finish(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])\n"
    "return 1\n";

/* KEYS job; ARGV kind total created now ttl code message: writes a failed record back when
 * the job's hash is gone. */
static const char LUA_TOMBSTONE[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'kind', ARGV[1], 'status', 'failed', 'done', 0,\n"
    "  'total', ARGV[2], 'created', ARGV[3], 'finished', ARGV[4], 'err_code', ARGV[6],\n"
    "  'err_msg', ARGV[7])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[5])\n"
    "return 1\n";

/* KEYS result, index; ARGV bytes ttl now max. */
static const char LUA_RESULT_PUT[] =
    "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\n"
    "redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[2]))\n"
    "local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])\n"
    "if extra > 0 then\n"
    "  for _, k in ipairs(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) do redis.call('DEL', k) end\n"
    "  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1)\n"
    "end\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[2])\n"
    "return 1\n";

void ml_shared_job_key(char out[ML_KEY_BUF], const char *id, const char *suffix) {
    snprintf(out, ML_KEY_BUF, ML_SHARED_PREFIX "job:%s%s", id, suffix ? suffix : "");
}

int ml_shared_jobs_new(ml_shared *sh, ml_err *err) {
    sh->jobs = calloc(1, sizeof *sh->jobs);
    if (!sh->jobs) return ml_errf(err, "out of memory");
    pthread_mutex_init(&sh->jobs->lock, NULL);
    return 0;
}

void ml_shared_jobs_free(ml_shared *sh) {
    if (!sh->jobs) return;
    pthread_mutex_destroy(&sh->jobs->lock);
    free(sh->jobs);
    sh->jobs = NULL;
}

static void new_id(char out[33]) {
    unsigned char raw[16];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (got < sizeof raw) { /* no entropy source: time and address still differ per call */
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        static unsigned long long counter;
        unsigned long long c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        snprintf(out, 33, "%016llx%016llx", (unsigned long long)t.tv_nsec ^ (c << 32),
                 (unsigned long long)t.tv_sec ^ (unsigned long long)(uintptr_t)out);
        return;
    }
    for (size_t i = 0; i < sizeof raw; i++) snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

static void watch_add(ml_shared *sh, const char *id, time_t created, int total) {
    ml_shared_jobs *js = sh->jobs;
    pthread_mutex_lock(&js->lock);
    if (js->n == WATCH_MAX) { /* the oldest leaves the watch; it stays readable */
        memmove(js->list, js->list + 1, sizeof js->list[0] * (WATCH_MAX - 1));
        js->n--;
    }
    watched *w = &js->list[js->n++];
    snprintf(w->id, sizeof w->id, "%s", id);
    w->created = created;
    w->total = total;
    pthread_mutex_unlock(&js->lock);
}


int ml_shared_job_submit(ml_shared *sh, const ml_sim_request *rq, const char *key, char id[33],
                         ml_err *err) {
    ml_buf req = {0};
    if (ml_request_encode(rq, &req) != 0) {
        ml_buf_free(&req);
        ml_errf(err, "out of memory");
        return ML_SHARED_DOWN;
    }
    int per = ml_chunk_episodes(rq->episodes, rq->seq_len, sh->chunk_episodes, ML_APP_BATCH_ROWS);
    int n_chunks = ml_chunk_count(rq->episodes, per);
    new_id(id);
    time_t now = time(NULL);
    char job[ML_KEY_BUF], jobkey[ML_KEY_BUF + 64], stream[ML_KEY_BUF], s_total[16], s_chunks[16],
        s_per[16], s_now[24], s_max[16], s_ttl[16];
    ml_shared_job_key(job, id, NULL);
    snprintf(jobkey, sizeof jobkey, ML_SHARED_PREFIX "jobkey:%s:%s", sh->fp, key);
    ml_chunks_stream_key(sh, stream);
    snprintf(s_total, sizeof s_total, "%d", rq->episodes);
    snprintf(s_chunks, sizeof s_chunks, "%d", n_chunks);
    snprintf(s_per, sizeof s_per, "%d", per);
    snprintf(s_now, sizeof s_now, "%lld", (long long)now);
    snprintf(s_max, sizeof s_max, "%d", sh->max_jobs);
    snprintf(s_ttl, sizeof s_ttl, "%d", ML_SHARED_ACTIVE_TTL);
    const char *args[] = {job, jobkey, ML_SHARED_PREFIX "active", stream, ML_SHARED_PREFIX, id,
                          "learning-curves", s_total, s_chunks, s_per, req.data, sh->replica,
                          s_now, s_max, s_ttl, sh->fp, key};
    ml_redis_conn *c = ml_redis_get(sh->redis, err);
    redisReply *rep = c ? ml_redis_eval(c, err, LUA_CREATE, 4, args, NULL, 17) : NULL;
    ml_redis_put(sh->redis, c);
    ml_buf_free(&req);
    if (!rep) return ML_SHARED_DOWN;
    int rc = ML_SHARED_DOWN;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
        long long code = ml_redis_int(rep->element[0], -1);
        size_t len = 0;
        const char *s = ml_redis_str(rep->element[1], &len);
        if (code == 0 || code == 1) {
            snprintf(id, 33, "%.*s", (int)(len < 32 ? len : 32), s ? s : "");
            rc = code == 0 ? ML_SHARED_OK : ML_SHARED_EXISTING;
        } else if (code == 2) {
            ml_errf(err, "%s shared jobs are already queued or running (the limit, "
                         "--redis-max-jobs); wait for one to finish or cancel one with DELETE "
                         "/v1/jobs/<id>", s ? s : "?");
            rc = ML_SHARED_FULL;
        }
    }
    if (rc == ML_SHARED_DOWN && !err->msg[0]) ml_errf(err, "unexpected answer from Redis");
    freeReplyObject(rep);
    if (rc == ML_SHARED_OK) {
        sh->n.jobs_submitted++;
        watch_add(sh, id, now, rq->episodes);
    }
    return rc;
}

/* KEYS job, result; ARGV total now ttl answer. */
static const char LUA_DONE_AT_ONCE[] =
    "redis.call('HSET', KEYS[1], 'kind', 'learning-curves', 'status', 'done', 'done', ARGV[1],\n"
    "  'total', ARGV[1], 'created', ARGV[2], 'finished', ARGV[2])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
    "redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[3])\n"
    "return 1\n";

int ml_shared_job_done(ml_shared *sh, const ml_sim_request *rq, const char *key,
                       const ml_blob *answer, char id[33], ml_err *err) {
    (void)key;
    new_id(id);
    char job[ML_KEY_BUF], result[ML_KEY_BUF], s_total[16], s_now[24], s_ttl[16];
    ml_shared_job_key(job, id, NULL);
    ml_shared_job_key(result, id, ":result");
    snprintf(s_total, sizeof s_total, "%d", rq->episodes);
    snprintf(s_now, sizeof s_now, "%lld", (long long)time(NULL));
    snprintf(s_ttl, sizeof s_ttl, "%d", sh->job_ttl);
    const char *args[] = {job, result, s_total, s_now, s_ttl, answer->data};
    size_t lens[] = {strlen(job), strlen(result), strlen(s_total), strlen(s_now), strlen(s_ttl),
                     answer->len};
    ml_redis_conn *c = ml_redis_get(sh->redis, err);
    redisReply *rep = c ? ml_redis_eval(c, err, LUA_DONE_AT_ONCE, 2, args, lens, 6) : NULL;
    ml_redis_put(sh->redis, c);
    if (!rep) return ML_SHARED_DOWN;
    freeReplyObject(rep);
    sh->n.jobs_submitted++;
    return ML_SHARED_OK;
}

static ml_job_status status_of(const char *s) {
    static const char *const names[] = {"queued", "running", "done", "failed", "cancelled"};
    for (int i = 0; i < ML_JOB_N_STATUS; i++)
        if (s && strcmp(s, names[i]) == 0) return (ml_job_status)i;
    return ML_JOB_FAILED;
}

/* Fills info from an HGETALL reply. */
static void info_from_hash(const redisReply *h, ml_job_info *out) {
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const char *k = ml_redis_str(h->element[i], NULL);
        size_t len = 0;
        const char *v = ml_redis_str(h->element[i + 1], &len);
        if (!k || !v) continue;
        if (strcmp(k, "kind") == 0)
            snprintf(out->kind, sizeof out->kind, "%.*s", (int)len, v);
        else if (strcmp(k, "status") == 0)
            out->status = status_of(v);
        else if (strcmp(k, "done") == 0)
            out->done = (int)ml_redis_int(h->element[i + 1], 0);
        else if (strcmp(k, "total") == 0)
            out->total = (int)ml_redis_int(h->element[i + 1], 0);
        else if (strcmp(k, "created") == 0)
            out->created = (time_t)ml_redis_int(h->element[i + 1], 0);
        else if (strcmp(k, "finished") == 0)
            out->finished = (time_t)ml_redis_int(h->element[i + 1], 0);
        else if (strcmp(k, "err_code") == 0)
            snprintf(out->error_code, sizeof out->error_code, "%.*s", (int)len, v);
        else if (strcmp(k, "err_msg") == 0)
            snprintf(out->error_msg, sizeof out->error_msg, "%.*s", (int)len, v);
    }
}

static int is_watched(ml_shared *sh, const char *id, watched *copy) {
    ml_shared_jobs *js = sh->jobs;
    pthread_mutex_lock(&js->lock);
    int found = 0;
    for (int i = 0; i < js->n && !found; i++)
        if (strcmp(js->list[i].id, id) == 0) {
            found = 1;
            *copy = js->list[i];
        }
    pthread_mutex_unlock(&js->lock);
    return found;
}

static void unwatch(ml_shared *sh, const char *id) {
    ml_shared_jobs *js = sh->jobs;
    pthread_mutex_lock(&js->lock);
    for (int i = 0; i < js->n; i++)
        if (strcmp(js->list[i].id, id) == 0) {
            js->list[i] = js->list[--js->n];
            break;
        }
    pthread_mutex_unlock(&js->lock);
}

/* Writes a lost job back as failed; 1 when it did. */
static int tombstone(ml_shared *sh, ml_redis_conn *c, const watched *w) {
    char job[ML_KEY_BUF], s_total[16], s_created[24], s_now[24], s_ttl[16], msg[ML_ERR_MAX];
    ml_shared_job_key(job, w->id, NULL);
    snprintf(s_total, sizeof s_total, "%d", w->total);
    snprintf(s_created, sizeof s_created, "%lld", (long long)w->created);
    snprintf(s_now, sizeof s_now, "%lld", (long long)time(NULL));
    snprintf(s_ttl, sizeof s_ttl, "%d", sh->job_ttl);
    snprintf(msg, sizeof msg, "the job's state vanished from the shared store %s (Redis was "
                              "restarted or flushed while the job ran); submit the request "
                              "again", ml_redis_display(sh->redis));
    const char *args[] = {job, "learning-curves", s_total, s_created, s_now, s_ttl,
                          "shared_state_lost", msg};
    ml_err err;
    redisReply *rep = ml_redis_eval(c, &err, LUA_TOMBSTONE, 1, args, NULL, 8);
    int wrote = rep && ml_redis_int(rep, 0) == 1;
    if (rep) freeReplyObject(rep);
    if (wrote) {
        sh->n.jobs_lost++;
        fprintf(stderr, "metalignd: job %s: %s\n", w->id, msg);
    }
    return wrote;
}

int ml_shared_job_info(ml_shared *sh, const char *id, ml_job_info *out, ml_err *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", id);
    char job[ML_KEY_BUF], result[ML_KEY_BUF];
    ml_shared_job_key(job, id, NULL);
    ml_shared_job_key(result, id, ":result");
    ml_redis_conn *c = ml_redis_get(sh->redis, err);
    if (!c) return ML_SHARED_DOWN;
    redisReply *h = NULL, *r = NULL;
    int rc = ML_SHARED_DOWN;
    if (ml_redis_append(c, err, "HGETALL %s", job) == 0 &&
        ml_redis_append(c, err, "GET %s", result) == 0 && (h = ml_redis_reply(c, err)) &&
        (r = ml_redis_reply(c, err))) {
        rc = ML_SHARED_OK;
        watched w;
        if (h->type != REDIS_REPLY_ARRAY || h->elements == 0) {
            rc = ML_SHARED_NOT_FOUND;
            if (is_watched(sh, id, &w) && tombstone(sh, c, &w)) {
                unwatch(sh, id);
                ml_redis_put(sh->redis, c);
                freeReplyObject(h);
                freeReplyObject(r);
                return ml_shared_job_info(sh, id, out, err);
            }
        } else {
            info_from_hash(h, out);
            size_t len = 0;
            const char *bytes = ml_redis_str(r, &len);
            if (out->status == ML_JOB_DONE) {
                out->result = bytes ? ml_blob_new(bytes, len) : NULL;
                if (!out->result) {
                    out->status = ML_JOB_FAILED;
                    snprintf(out->error_code, sizeof out->error_code, "result_missing");
                    snprintf(out->error_msg, sizeof out->error_msg,
                             "the job finished but its result is gone from the shared store "
                             "(evicted or expired); submit the request again");
                }
            }
        }
    }
    if (h) freeReplyObject(h);
    if (r) freeReplyObject(r);
    ml_redis_put(sh->redis, c);
    return rc;
}

static int end_job(ml_shared *sh, ml_redis_conn *c, const char *id, const char *status,
                   const char *code, const char *msg, ml_err *err) {
    char job[ML_KEY_BUF], s_now[24], s_ttl[16];
    ml_shared_job_key(job, id, NULL);
    snprintf(s_now, sizeof s_now, "%lld", (long long)time(NULL));
    snprintf(s_ttl, sizeof s_ttl, "%d", sh->job_ttl);
    const char *args[] = {job, ML_SHARED_PREFIX, id, status, s_now, s_ttl, code, msg};
    redisReply *rep = ml_redis_eval(c, err, LUA_END, 1, args, NULL, 8);
    if (!rep) return -1;
    int ended = (int)ml_redis_int(rep, 0);
    freeReplyObject(rep);
    return ended;
}

int ml_shared_job_cancel(ml_shared *sh, const char *id, ml_err *err) {
    ml_redis_conn *c = ml_redis_get(sh->redis, err);
    if (!c) return ML_SHARED_DOWN;
    redisReply *rep = ml_redis_cmd(c, err, "EXISTS " ML_SHARED_PREFIX "job:%s", id);
    int rc = ML_SHARED_DOWN;
    if (rep) {
        rc = ml_redis_int(rep, 0) ? ML_SHARED_OK : ML_SHARED_NOT_FOUND;
        freeReplyObject(rep);
        int ended = rc == ML_SHARED_OK ? end_job(sh, c, id, "cancelled", "", "", err) : 0;
        if (ended < 0) rc = ML_SHARED_DOWN;
        if (ended == 1) ml_metrics_add(sh->app->metrics, ML_CNT_JOBS_CANCELLED, 1);
    }
    ml_redis_put(sh->redis, c);
    return rc;
}

void ml_shared_job_fail(ml_shared *sh, ml_redis_conn *c, const char *id, const char *code,
                        const char *msg) {
    ml_err err;
    if (end_job(sh, c, id, "failed", code, msg, &err) == 1) {
        ml_metrics_add(sh->app->metrics, ML_CNT_JOBS_FAILED, 1);
        fprintf(stderr, "metalignd: job %s failed: %s\n", id, msg);
    }
}

void ml_shared_jobs_watch(ml_shared *sh) {
    ml_shared_jobs *js = sh->jobs;
    watched list[WATCH_MAX];
    pthread_mutex_lock(&js->lock);
    int n = js->n;
    memcpy(list, js->list, sizeof list[0] * (size_t)n);
    pthread_mutex_unlock(&js->lock);
    if (n == 0) return;
    ml_err err;
    ml_redis_conn *c = ml_redis_get(sh->redis, &err);
    if (!c) return;
    for (int i = 0; i < n; i++) {
        char job[ML_KEY_BUF];
        ml_shared_job_key(job, list[i].id, NULL);
        if (ml_redis_append(c, &err, "HGET %s status", job) != 0) break;
    }
    for (int i = 0; i < n; i++) {
        redisReply *rep = ml_redis_reply(c, &err);
        if (!rep) break;
        const char *st = ml_redis_str(rep, NULL);
        if (!st) {
            if (tombstone(sh, c, &list[i])) unwatch(sh, list[i].id);
        } else if (strcmp(st, "queued") != 0 && strcmp(st, "running") != 0) {
            unwatch(sh, list[i].id);
        }
        freeReplyObject(rep);
    }
    ml_redis_put(sh->redis, c);
}

ml_blob *ml_shared_result_get(ml_shared *sh, const char *key) {
    ml_err err;
    ml_redis_conn *c = ml_redis_get(sh->redis, &err);
    if (!c) return NULL;
    redisReply *rep = ml_redis_cmd(c, &err, "GET " ML_SHARED_PREFIX "result:%s:%s", sh->fp, key);
    ml_redis_put(sh->redis, c);
    size_t len = 0;
    const char *s = ml_redis_str(rep, &len);
    ml_blob *b = s ? ml_blob_new(s, len) : NULL;
    if (rep) freeReplyObject(rep);
    if (b)
        sh->n.result_hits++;
    else
        sh->n.result_misses++;
    return b;
}

void ml_shared_result_put(ml_shared *sh, ml_redis_conn *c, const char *key, const ml_blob *b) {
    if (b->len > ML_SHARED_RESULT_MAX_BYTES) return;
    ml_err err;
    ml_redis_conn *own = c ? NULL : ml_redis_get(sh->redis, &err);
    if (!c && !own) return;
    char rkey[ML_KEY_BUF + 64], index[ML_KEY_BUF], s_ttl[16], s_now[24], s_max[16];
    snprintf(rkey, sizeof rkey, ML_SHARED_PREFIX "result:%s:%s", sh->fp, key);
    snprintf(index, sizeof index, ML_SHARED_PREFIX "results:%s", sh->fp);
    snprintf(s_ttl, sizeof s_ttl, "%d", sh->result_ttl);
    snprintf(s_now, sizeof s_now, "%lld", (long long)time(NULL));
    snprintf(s_max, sizeof s_max, "%d", sh->max_results);
    const char *args[] = {rkey, index, b->data, s_ttl, s_now, s_max};
    size_t lens[] = {strlen(rkey), strlen(index), b->len, strlen(s_ttl), strlen(s_now),
                     strlen(s_max)};
    redisReply *rep = ml_redis_eval(c ? c : own, &err, LUA_RESULT_PUT, 2, args, lens, 6);
    if (rep) freeReplyObject(rep);
    if (own) ml_redis_put(sh->redis, own);
}
