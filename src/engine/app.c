#include "engine/app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/human_store.h"
#include "engine/shared.h"
#include "metalign/blas.h"
#include "util/cpus.h"
#include "util/priority.h"

static int check_shapes(const ml_model *m, const ml_dataset *d, ml_err *err) {
    int want = ml_model_feature_dim(m);
    if (want != d->backbone_dim) {
        if (m->generation == ML_GEN_SEED)
            return ml_errf(err, "%s expects inputs of %d columns (2 label columns + %d features), "
                                "but %s has %d feature columns; use the backbone the model was "
                                "trained on",
                           m->path, want + 2, want, d->backbone_path, d->backbone_dim);
        return ml_errf(err, "%s expects %d backbone features (x_sz), but %s has %d feature "
                            "columns; use the backbone the model was trained on",
                       m->path, want, d->backbone_path, d->backbone_dim);
    }
    return 0;
}

/* Not being able to lower a priority costs latency under load, not correctness: warn. */
static void lower_priority(int self) {
    ml_err err;
    int rc = self ? ml_priority_lower_self(ML_COMPUTE_NICE, &err)
                  : ml_priority_lower_others(ML_COMPUTE_NICE, &err);
    if (rc != 0) fprintf(stderr, "metalignd: warning: compute threads keep full priority: %s\n", err.msg);
}

int ml_app_init(ml_app *app, const ml_config *cfg, const char *const *route_names, int n_routes,
                ml_err *err) {
    memset(app, 0, sizeof *app);
    app->cfg = cfg;
    app->started_at = time(NULL);
    for (int i = 0; i < ML_N_INPUTS; i++) ml_once_init(&app->acts_once[i]);
    ml_once_init(&app->emb_once);
    pthread_mutex_init(&app->runners.mu, NULL);
    long cores = ml_cpus_usable(); /* affinity and cgroup quota, not the machine's count */
    app->threads = cfg->threads > 0 ? cfg->threads : (cores > 0 ? (int)cores : 1);
    app->metrics = ml_metrics_new(route_names, route_names ? n_routes : 0);
    app->coalesce = ml_coalesce_new();
    if (!app->metrics || !app->coalesce) return ml_errf(err, "out of memory");
    return 0;
}

void ml_app_take_threads(ml_app *app) {
    ml_blas_set_threads(app->threads);
    /* Every thread so far but this one is OpenBLAS's; the HTTP threads, started later from
     * this thread, keep its priority. */
    lower_priority(0);
}

int ml_app_load(ml_app *app, const ml_config *cfg, ml_err *err) {
    return ml_app_init(app, cfg, NULL, 0, err) == 0 ? ml_app_load_data(app, err) : -1;
}

int ml_app_load_data(ml_app *app, ml_err *err) {
    const ml_config *cfg = app->cfg;
    /* 0 = no --heads: the loader applies its default only when the checkpoint has no count */
    if (ml_model_load(&app->model, cfg->checkpoint, cfg->heads, err) != 0)
        return -1;
    ml_data_paths paths = {cfg->backbone, cfg->targets, cfg->item_ids, cfg->things_images};
    if (ml_dataset_load(&app->data, &paths, err) != 0) return -1;
    if (check_shapes(&app->model, &app->data, err) != 0) return -1;
    /* the daemon keeps its one model: with oneDNN, only the prepared weights are read */
    ml_model_release_loaded_weights(&app->model);

    /* the model's own limit (learned positions, the later transformer's sl), else the
     * workspace's */
    int model_limit = ml_model_max_seq_len(&app->model);
    app->max_seq = model_limit > 0 ? model_limit : ML_APP_MAX_SEQ_ROPE;
    app->batch_rows = ML_APP_BATCH_ROWS;
    if (app->max_seq > app->batch_rows) app->max_seq = app->batch_rows;
    return 0;
}

static void *worker_init(void *arg, int id) {
    lower_priority(1); /* and the forward-pass pool this worker creates */
    ml_worker *w = calloc(1, sizeof *w);
    if (w) {
        w->id = id;
        w->app = arg;
    }
    return w;
}

void ml_app_worker_free(ml_worker *w) { free(w); }

static void worker_fini(void *worker) { ml_app_worker_free(worker); }

static int open_human(ml_app *app, ml_err *err) {
    ml_human_config hc;
    ml_human_config_defaults(&hc);
    hc.url = app->cfg->human_url;
    hc.cache_dir = app->cfg->cache_dir;
    hc.max_age_seconds = app->cfg->human_max_age;
    hc.total_timeout_ms = (long)app->cfg->human_timeout * 1000;
    if (hc.connect_timeout_ms > hc.total_timeout_ms) hc.connect_timeout_ms = hc.total_timeout_ms;
    hc.max_bytes = app->cfg->human_max_bytes;
    hc.min_refresh_seconds = app->cfg->human_min_refresh;
    hc.retry_min_seconds = app->cfg->human_retry_min;
    hc.retry_max_seconds = app->cfg->human_retry_max;
    /* a request never holds a compute worker waiting for another one's download */
    hc.no_wait = 1;
    hc.coalesce = app->coalesce;
    if (app->shared) { /* one download across replicas */
        hc.fetch = ml_shared_human_fetch;
        hc.fetch_ctx = app->shared;
    }
    app->human = ml_human_open(&hc, err);
    return app->human ? 0 : ml_err_prefix(err, "human data (--human-url, --cache-dir)");
}

int ml_app_start(ml_app *app, ml_err *err) {
    /* What every model request needs, made now rather than by the first one: the items'
     * encodings (~0.05 s at seed size) and the first runner. Its workspace is not written
     * here: on huge pages its first pass faults it in for ~10 ms, within the requests' own
     * spread (docs/PERFORMANCE.md), and the daemon's memory at /readyz stays ~90 MB lower. */
    ml_runner *first = ml_app_runner_acquire(app, err);
    if (!first) return ml_err_prefix(err, "preparing the forward pass");
    ml_app_runner_release(app, first);
    app->results = ml_lru_new(app->cfg->result_cache_bytes, ML_RESULT_CACHE_ENTRIES);
    app->jobs = ml_jobs_new(app->cfg->max_jobs, ML_JOBS_KEPT, app->cfg->job_ttl, app->results);
    app->cka = ml_cka_cache_new();
    if (!app->jobs || !app->results || !app->cka) return ml_errf(err, "out of memory");
    if (app->cfg->redis && ml_shared_open(app, err) != 0) return -1;
    if (open_human(app, err) != 0) return -1;
    /* Async jobs leave one worker for interactive requests; with one compute thread that
     * takes a second worker, which runs only interactive tasks. */
    int n_workers = app->threads > 1 ? app->threads : 2;
    ml_workers_options wo = {
        .n_workers = n_workers,
        .max_background = n_workers - 1,
        .queue_cap = ML_WORKER_QUEUE,
        .init = worker_init,
        .fini = worker_fini,
        .app = app,
    };
    app->workers = ml_workers_new(&wo, err);
    if (!app->workers) return -1;
    /* the replicas' chunks, claimed once there are workers to run them */
    if (app->shared && ml_shared_start(app->shared, app->render_curves, err) != 0) return -1;
    __atomic_store_n(&app->ready, 1, __ATOMIC_RELEASE);
    return 0;
}

int ml_app_is_ready(const ml_app *app) { return __atomic_load_n(&app->ready, __ATOMIC_ACQUIRE); }

void ml_app_begin_shutdown(ml_app *app) {
    __atomic_store_n(&app->stopping, 1, __ATOMIC_RELEASE);
    /* Nobody waits on a job's connection: they stop now and free the workers for the
     * requests whose clients are waiting. */
    if (ml_app_is_ready(app)) ml_jobs_cancel_all(app->jobs);
}

void ml_app_cancel_work(ml_app *app) {
    if (ml_app_is_ready(app)) ml_human_cancel(app->human);
}

int ml_app_is_stopping(const ml_app *app) {
    return __atomic_load_n(&app->stopping, __ATOMIC_ACQUIRE);
}

static void free_acts(ml_item_acts *a) {
    if (a->outs)
        for (int i = 0; i < a->n_outputs; i++) free(a->outs[i]);
    free(a->outs);
    free(a->logits);
    free(a->magnitudes);
    memset(a, 0, sizeof *a);
}

void ml_app_free(ml_app *app) {
    ml_shared_stop(app->shared); /* no new chunks for the workers to drain */
    ml_workers_free(app->workers);
    for (int i = 0; i < app->runners.n_idle; i++) {
        ml_runner_free(app->runners.idle[i]);
        free(app->runners.idle[i]);
    }
    free(app->runners.idle);
    pthread_mutex_destroy(&app->runners.mu);
    if (app->human) ml_human_free(app->human);
    ml_shared_free(app->shared);
    ml_metrics_free(app->metrics);
    ml_jobs_free(app->jobs);
    ml_lru_free(app->results);
    ml_cka_cache_free(app->cka);
    for (int i = 0; i < ML_N_INPUTS; i++) {
        free_acts(&app->acts[i]);
        ml_once_free(&app->acts_once[i]);
        free(app->item_emb[i]);
    }
    ml_once_free(&app->emb_once);
    ml_coalesce_free(app->coalesce);
    ml_dataset_free(&app->data);
    ml_model_free(&app->model);
}

static int compute_embeddings(void *arg, ml_err *err) {
    ml_app *app = arg;
    return ml_item_embeddings(&app->model, &app->data, &app->item_emb[ML_INPUTS_RAW],
                              &app->item_emb[ML_INPUTS_STANDARDIZED], err);
}

ml_runner *ml_app_runner_acquire(ml_app *app, ml_err *err) {
    if (ml_once_run(&app->emb_once, compute_embeddings, app, err) != 0) return NULL;
    ml_runner_stack *st = &app->runners;
    pthread_mutex_lock(&st->mu);
    ml_runner *r = st->n_idle > 0 ? st->idle[--st->n_idle] : NULL;
    pthread_mutex_unlock(&st->mu);
    if (r) return r;
    r = calloc(1, sizeof *r);
    if (!r) return ml_errp(err, "out of memory");
    if (ml_runner_init(r, &app->model, &app->data, app->item_emb[ML_INPUTS_RAW],
                       app->item_emb[ML_INPUTS_STANDARDIZED], app->batch_rows, app->max_seq,
                       err) != 0) {
        free(r);
        return NULL;
    }
    pthread_mutex_lock(&st->mu);
    st->made++;
    pthread_mutex_unlock(&st->mu);
    return r;
}

void ml_app_runner_release(ml_app *app, ml_runner *r) {
    ml_runner_stack *st = &app->runners;
    pthread_mutex_lock(&st->mu);
    if (st->n_idle == st->cap) {
        int cap = st->cap ? 2 * st->cap : 4;
        ml_runner **idle = realloc(st->idle, sizeof *idle * (size_t)cap);
        if (!idle) { /* keep the stack as it is; this runner goes */
            pthread_mutex_unlock(&st->mu);
            ml_runner_free(r);
            free(r);
            return;
        }
        st->idle = idle;
        st->cap = cap;
    }
    st->idle[st->n_idle++] = r;
    pthread_mutex_unlock(&st->mu);
}

int ml_app_runners_made(ml_app *app) {
    pthread_mutex_lock(&app->runners.mu);
    int n = app->runners.made;
    pthread_mutex_unlock(&app->runners.mu);
    return n;
}

int ml_app_run_items(ml_app *app, ml_worker *w, const int *items, const int *labels, int B, int S,
                     int standardize, float **outs, float *logits, ml_err *err) {
    (void)w;
    ml_runner *r = ml_app_runner_acquire(app, err);
    if (!r) return -1;
    int rc = ml_runner_run(r, items, labels, B, S, standardize, outs, logits, err);
    ml_app_runner_release(app, r);
    return rc;
}

int ml_app_forward_items(ml_app *app, ml_worker *w, const int *items, const float *feedback,
                         int B, int S, int standardize, float **outs, float *logits,
                         float *magnitudes, ml_err *err) {
    (void)w;
    ml_runner *r = ml_app_runner_acquire(app, err);
    if (!r) return -1;
    int rc = ml_runner_forward(r, items, feedback, B, S, standardize, outs, logits, magnitudes,
                               err);
    ml_app_runner_release(app, r);
    return rc;
}

typedef struct acts_job {
    ml_app *app;
    ml_worker *w;
    ml_inputs in;
} acts_job;

static int compute_item_acts(void *arg, ml_err *err) {
    acts_job *job = arg;
    ml_app *app = job->app;
    const ml_model *m = &app->model;
    ml_item_acts *a = &app->acts[job->in];
    int n = app->data.n_items;
    size_t W = (size_t)ml_model_width(m), K = (size_t)ml_model_logit_dims(m);
    a->n_outputs = ml_model_num_outputs(m);
    a->n_items = n;
    a->hidden = (int)W;
    a->logit_dims = (int)K;
    a->outs = calloc((size_t)a->n_outputs, sizeof *a->outs);
    a->logits = malloc(sizeof(float) * (size_t)n * K);
    if (ml_model_has_magnitudes(m)) a->magnitudes = malloc(sizeof(float) * (size_t)n * K);
    int *items = malloc(sizeof(int) * (size_t)n);
    int ok = a->outs && a->logits && items && (a->magnitudes || !ml_model_has_magnitudes(m));
    for (int i = 0; ok && i < a->n_outputs; i++)
        ok = (a->outs[i] = malloc(sizeof(float) * (size_t)n * W)) != NULL;
    if (!ok) {
        free(items);
        free_acts(a);
        return ml_errf(err, "out of memory for the activations of %d items", n);
    }
    for (int i = 0; i < n; i++) items[i] = i;
    int standardize = job->in == ML_INPUTS_STANDARDIZED;
    /* the seed keeps its own path (ml_runner_run); the later generation needs the generic one
     * for its magnitude head */
    int rc = m->generation == ML_GEN_SEED
                 ? ml_app_run_items(app, job->w, items, NULL, n, 1, standardize, a->outs,
                                    a->logits, err)
                 : ml_app_forward_items(app, job->w, items, NULL, n, 1, standardize, a->outs,
                                        a->logits, a->magnitudes, err);
    free(items);
    if (rc != 0) free_acts(a);
    return rc;
}

int ml_app_acts_ready(ml_app *app, ml_inputs in) { return ml_once_done(&app->acts_once[in]); }

const ml_item_acts *ml_app_item_acts(ml_app *app, ml_worker *w, ml_inputs in, ml_err *err) {
    if (ml_once_done(&app->acts_once[in])) {
        ml_metrics_add(app->metrics, ML_CNT_ACTS_CACHE_HIT, 1);
        return &app->acts[in];
    }
    acts_job job = {app, w, in};
    if (ml_once_run(&app->acts_once[in], compute_item_acts, &job, err) != 0) return NULL;
    ml_metrics_add(app->metrics, ML_CNT_ACTS_CACHE_MISS, 1);
    return &app->acts[in];
}

int ml_app_cka_ready(ml_app *app) { return ml_cka_cache_ready(app->cka); }

ml_cka_cache *ml_app_cka(ml_app *app, ml_worker *w, ml_err *err) {
    if (ml_cka_cache_ready(app->cka)) return app->cka;
    /* The notebook's setting: raw features, every item its own length-1 sequence. */
    const ml_item_acts *acts = ml_app_item_acts(app, w, ML_INPUTS_RAW, err);
    if (!acts || ml_cka_cache_prepare(app->cka, &app->data, (const float *const *)acts->outs,
                                      acts->n_outputs, acts->hidden, err) != 0)
        return NULL;
    return app->cka;
}

int ml_app_cka_matrices_ready(ml_app *app) { return ml_cka_cache_matrices_ready(app->cka); }

ml_cka_cache *ml_app_cka_matrices(ml_app *app, ml_worker *w, ml_err *err) {
    ml_cka_cache *c = ml_app_cka(app, w, err);
    return c && ml_cka_cache_matrices(c, err) == 0 ? c : NULL;
}

int ml_app_simulate(ml_app *app, ml_worker *w, const ml_sim_request *rq,
                    const ml_sim_hooks *hooks, ml_sim_result *res, ml_err *err) {
    (void)w;
    ml_runner *r = ml_app_runner_acquire(app, err);
    if (!r) return -1;
    int rc = ml_simulate(r, rq, hooks, res, err);
    ml_app_runner_release(app, r);
    if (rc == 0) ml_metrics_add(app->metrics, ML_CNT_EPISODES, (uint64_t)rq->episodes);
    return rc;
}

int ml_app_replay(ml_app *app, ml_worker *w, const ml_human_data *h, const ml_replay_request *rq,
                  const ml_replay_hooks *hooks, ml_replay_result *res, ml_replay_code *code,
                  ml_err *err) {
    (void)w;
    ml_runner *r = ml_app_runner_acquire(app, err);
    if (!r) {
        memset(res, 0, sizeof *res);
        *code = ML_REPLAY_E_INTERNAL;
        return -1;
    }
    int rc = ml_replay_run(r, app->threads, h, rq, hooks, res, code, err);
    ml_app_runner_release(app, r);
    return rc;
}

const char *ml_app_rep_name(const ml_app *app, int i, char *buf, size_t len) {
    if (i == 0) {
        snprintf(buf, len, "backbone");
        return buf;
    }
    return ml_model_output_name(&app->model, i - 1, buf, len);
}
