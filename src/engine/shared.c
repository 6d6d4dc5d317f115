#include "engine/shared.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "metalign/sha256.h"

/* The fingerprint covers what the bits of an answer depend on: the version, the model, the
 * data and the compute thread count (OpenBLAS and the forward pass split a call's rows by
 * threads, which can move the last bits of a logit, hence of the loss).
 * Values sampled per array for the fingerprint: enough that two trained models or two data
 * sets differ in it, cheap enough (microseconds) for any model size. It guards against the
 * operator's mistake of mixed files or versions, not against an adversary. */
#define FP_SAMPLES 4096

static void hash_floats(ml_sha256 *s, const float *v, size_t n) {
    ml_sha256_update(s, &n, sizeof n);
    if (!v || !n) return;
    size_t step = n > FP_SAMPLES ? n / FP_SAMPLES : 1;
    for (size_t i = 0; i < n; i += step) ml_sha256_update(s, &v[i], sizeof v[i]);
    ml_sha256_update(s, &v[n - 1], sizeof v[n - 1]);
}

static void fingerprint(const ml_app *app, char out[ML_SHARED_FP_LEN]) {
    const ml_model *m = &app->model;
    const ml_dataset *d = &app->data;
    ml_sha256 s;
    ml_sha256_init(&s);
    ml_sha256_update(&s, ML_VERSION, sizeof ML_VERSION);
    int sizes[] = {m->cfg.input_size, m->cfg.hidden_size, m->cfg.num_layers, m->cfg.num_heads,
                   m->cfg.intermediate_size, (int)m->cfg.pos, m->cfg.embedding, m->cfg.bias,
                   m->cfg.logit_bias, m->trained_seq_len, app->max_seq, d->n_items,
                   d->backbone_dim, d->target_dims, app->threads};
    ml_sha256_update(&s, sizes, sizeof sizes);
    hash_floats(&s, m->params_memory, m->num_params);
    hash_floats(&s, d->X, (size_t)d->n_items * (size_t)d->backbone_dim);
    hash_floats(&s, d->Y, (size_t)d->n_items * (size_t)d->target_dims);
    for (int i = 0; i < d->n_items; i++) ml_sha256_update(&s, d->ids[i], strlen(d->ids[i]) + 1);
    unsigned char digest[ML_SHA256_LEN];
    ml_sha256_final(&s, digest);
    char hex[ML_SHA256_HEX_LEN];
    ml_sha256_to_hex(digest, hex);
    snprintf(out, ML_SHARED_FP_LEN, "%.16s", hex);
}

/* The replica's name: --replica-name, else HOST-PID (a pod's host name is its name). */
static void replica_name(const char *given, char out[ML_SHARED_REPLICA_MAX]) {
    if (given && given[0]) {
        snprintf(out, ML_SHARED_REPLICA_MAX, "%s", given);
        return;
    }
    char host[48] = "metalignd";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(out, ML_SHARED_REPLICA_MAX, "%s-%ld", host, (long)getpid());
}

int ml_shared_open(ml_app *app, ml_err *err) {
    const ml_config *cfg = app->cfg;
    ml_shared *sh = calloc(1, sizeof *sh);
    if (!sh) return ml_errf(err, "out of memory");
    sh->app = app;
    ml_redis_config rc = {cfg->redis, cfg->redis_connect_timeout, cfg->redis_timeout};
    sh->redis = ml_redis_new(&rc, err);
    if (!sh->redis) {
        free(sh);
        return -1;
    }
    fingerprint(app, sh->fp);
    replica_name(cfg->replica_name, sh->replica);
    sh->claim_timeout_ms = cfg->redis_claim_timeout * 1000;
    sh->chunk_episodes = cfg->chunk_episodes;
    sh->result_ttl = cfg->redis_result_ttl;
    sh->max_results = cfg->redis_results;
    sh->max_jobs = cfg->redis_max_jobs;
    sh->job_ttl = cfg->job_ttl;
    sh->human_max_age = cfg->human_max_age;
    pthread_mutex_init(&sh->lock, NULL);
    pthread_cond_init(&sh->wake, NULL);
    app->shared = sh;
    if (ml_shared_jobs_new(sh, err) != 0 || ml_chunks_new(sh, err) != 0) return -1;
    ml_err e = {{0}};
    if (ml_redis_ping(sh->redis, &e) != 0)
        fprintf(stderr, "metalignd: warning: %s; shared jobs wait for it and /readyz answers "
                        "503 until it answers\n", e.msg);
    return 0;
}

static void *keeper_main(void *arg) {
    ml_shared *sh = arg;
    struct timespec last_watch = {0, 0};
    pthread_mutex_lock(&sh->lock);
    while (!sh->stopping) {
        pthread_mutex_unlock(&sh->lock);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long since = (now.tv_sec - last_watch.tv_sec) * 1000 +
                     (now.tv_nsec - last_watch.tv_nsec) / 1000000;
        if (since >= ML_SHARED_WATCH_MS) {
            ml_err e;
            ml_redis_ping(sh->redis, &e);
            ml_shared_jobs_watch(sh);
            last_watch = now;
        }
        ml_chunks_tick(sh);
        pthread_mutex_lock(&sh->lock);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += ML_SHARED_TICK_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        if (!sh->stopping) pthread_cond_timedwait(&sh->wake, &sh->lock, &until);
    }
    pthread_mutex_unlock(&sh->lock);
    return NULL;
}

int ml_shared_start(ml_shared *sh, ml_shared_render_fn render, ml_err *err) {
    if (!render) return ml_errf(err, "--redis: no renderer for merged answers (a program that "
                                     "serves no HTTP cannot take shared jobs)");
    sh->render = render;
    if (ml_chunks_start(sh, err) != 0) return -1;
    if (pthread_create(&sh->keeper, NULL, keeper_main, sh) != 0)
        return ml_errf(err, "cannot start the scale-out keeper thread");
    sh->keeper_running = 1;
    return 0;
}

void ml_shared_stop(ml_shared *sh) {
    if (!sh) return;
    pthread_mutex_lock(&sh->lock);
    sh->stopping = 1;
    pthread_cond_broadcast(&sh->wake);
    pthread_mutex_unlock(&sh->lock);
    ml_chunks_stop(sh);
    if (sh->keeper_running) pthread_join(sh->keeper, NULL);
    sh->keeper_running = 0;
}

void ml_shared_free(ml_shared *sh) {
    if (!sh) return;
    ml_shared_stop(sh);
    ml_chunks_free(sh);
    ml_shared_jobs_free(sh);
    ml_redis_free(sh->redis);
    pthread_mutex_destroy(&sh->lock);
    pthread_cond_destroy(&sh->wake);
    free(sh);
}

int ml_shared_up(ml_shared *sh, char *why, size_t why_len) {
    return ml_redis_up(sh->redis, why, why_len);
}

static void counter(ml_buf *out, const char *name, const char *help, uint64_t v) {
    ml_buf_printf(out, "# HELP metalignd_%s %s\n# TYPE metalignd_%s counter\nmetalignd_%s %llu\n",
                  name, help, name, name, (unsigned long long)v);
}

void ml_shared_render_metrics(ml_shared *sh, ml_buf *out) {
    ml_redis_stats rs;
    ml_redis_stats_get(sh->redis, &rs);
    const ml_shared_counters *n = &sh->n;
    ml_buf_printf(out, "# HELP metalignd_redis_up 1 when the shared store answers.\n"
                       "# TYPE metalignd_redis_up gauge\nmetalignd_redis_up %d\n"
                       "# HELP metalignd_replica_info This replica's name and world fingerprint.\n"
                       "# TYPE metalignd_replica_info gauge\n"
                       "metalignd_replica_info{replica=\"%s\",world=\"%s\"} 1\n"
                       "# HELP metalignd_chunks_in_flight Chunks this replica is computing.\n"
                       "# TYPE metalignd_chunks_in_flight gauge\nmetalignd_chunks_in_flight %d\n",
                  rs.up, sh->replica, sh->fp, ml_chunks_in_flight(sh));
    counter(out, "redis_commands_total", "Redis round trips.", rs.commands);
    counter(out, "redis_errors_total", "Redis failures: connects, timeouts, error replies.",
            rs.errors);
    counter(out, "redis_reconnects_total", "Connections re-established.", rs.reconnects);
    counter(out, "chunks_computed_total", "Chunks of shared jobs computed here.",
            n->chunks_computed);
    counter(out, "chunk_episodes_total", "Episodes computed here for shared jobs.",
            n->chunk_episodes);
    counter(out, "chunk_microseconds_total", "Time spent computing chunks.", n->chunk_us);
    counter(out, "chunks_reclaimed_total", "Chunks taken over from a replica that stopped "
            "heartbeating.", n->chunks_reclaimed);
    counter(out, "chunks_dropped_total", "Chunks skipped: their job was cancelled, failed or "
            "gone.", n->chunks_dropped);
    counter(out, "chunks_failed_total", "Chunks that failed here.", n->chunks_failed);
    counter(out, "shared_merges_total", "Shared jobs merged and rendered here.", n->merges);
    counter(out, "shared_merge_microseconds_total", "Time spent merging.", n->merge_us);
    counter(out, "shared_jobs_submitted_total", "Shared jobs accepted here.", n->jobs_submitted);
    counter(out, "shared_jobs_lost_total", "Accepted jobs whose state vanished from Redis.",
            n->jobs_lost);
    counter(out, "shared_result_hits_total", "Answers found in the shared result cache.",
            n->result_hits);
    counter(out, "shared_result_misses_total", "Shared result cache misses.", n->result_misses);
    ml_buf_printf(out, "# HELP metalignd_human_shared_total Human-data fetches through the "
                       "shared store, by what happened.\n"
                       "# TYPE metalignd_human_shared_total counter\n"
                       "metalignd_human_shared_total{result=\"upstream\"} %llu\n"
                       "metalignd_human_shared_total{result=\"shared_copy\"} %llu\n"
                       "metalignd_human_shared_total{result=\"not_modified\"} %llu\n"
                       "metalignd_human_shared_total{result=\"waited\"} %llu\n"
                       "metalignd_human_shared_total{result=\"fallback\"} %llu\n",
                  (unsigned long long)n->human_upstream,
                  (unsigned long long)n->human_shared_copy,
                  (unsigned long long)n->human_not_modified, (unsigned long long)n->human_waits,
                  (unsigned long long)n->human_fallback);
}
