#include "engine/app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metalign/blas.h"
#include "engine/human_store.h"
#include "metalign/human_curves.h"
#include "util/priority.h"

#define BATCH_ROWS 4096      /* rows per forward call: one workspace's size */
#define MAX_SEQ_ROPE 4096    /* RoPE has no limit of its own; the workspace has */
#define RESULT_CACHE_BYTES (256u << 20)
#define RESULT_CACHE_ENTRIES 256

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

int ml_app_load(ml_app *app, const ml_config *cfg, ml_err *err) {
    memset(app, 0, sizeof *app);
    app->cfg = cfg;
    app->started_at = time(NULL);
    for (int i = 0; i < 2; i++) ml_once_init(&app->acts_once[i]);
    ml_once_init(&app->emb_once);

    /* 0 = no --heads: the loader applies its default only when the checkpoint has no count */
    if (ml_model_load(&app->model, cfg->checkpoint, cfg->heads, err) != 0)
        return -1;
    ml_data_paths paths = {cfg->backbone, cfg->targets, cfg->item_ids, cfg->things_images};
    if (ml_dataset_load(&app->data, &paths, err) != 0) return -1;
    if (check_shapes(&app->model, &app->data, err) != 0) return -1;

    app->max_seq = app->model.cfg.pos == ML_POS_LEARNED ? app->model.cfg.max_seq_len : MAX_SEQ_ROPE;
    app->batch_rows = BATCH_ROWS;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    app->threads = cfg->threads > 0 ? cfg->threads : (cores > 0 ? (int)cores : 1);
    return 0;
}

/* Not being able to lower a priority costs latency under load, not correctness: warn. */
static void lower_priority(int self) {
    ml_err err;
    int rc = self ? ml_priority_lower_self(ML_COMPUTE_NICE, &err)
                  : ml_priority_lower_others(ML_COMPUTE_NICE, &err);
    if (rc != 0) fprintf(stderr, "metalignd: warning: compute threads keep full priority: %s\n", err.msg);
}

int ml_app_start(ml_app *app, ml_err *err) {
    ml_blas_set_threads(app->threads);
    /* Every thread so far but this one is OpenBLAS's; the HTTP threads, started later from
     * this thread, keep its priority. */
    lower_priority(0);
    app->metrics = NULL; /* set by the server (it knows the routes) */
    app->jobs = ml_jobs_new(app->cfg->max_jobs, 256, app->cfg->job_ttl);
    app->results = ml_lru_new(RESULT_CACHE_BYTES, RESULT_CACHE_ENTRIES);
    app->cka = ml_cka_cache_new();
    if (!app->jobs || !app->results || !app->cka) return ml_errf(err, "out of memory");
    ml_human_config hc;
    ml_human_config_defaults(&hc);
    hc.url = app->cfg->human_url;
    hc.cache_dir = app->cfg->cache_dir;
    hc.max_age_seconds = app->cfg->human_max_age;
    hc.total_timeout_ms = (long)app->cfg->human_timeout * 1000;
    if (hc.connect_timeout_ms > hc.total_timeout_ms) hc.connect_timeout_ms = hc.total_timeout_ms;
    hc.max_bytes = app->cfg->human_max_bytes;
    app->human = ml_human_open(&hc, err);
    if (!app->human) return ml_err_prefix(err, "human data (--human-url, --cache-dir)");
    ml_workers_options wo = {
        .n_workers = app->threads,
        .max_background = app->threads > 1 ? app->threads - 1 : 1,
        .queue_cap = 256,
        .init = ml_app_worker_init,
        .fini = ml_app_worker_fini,
        .app = app,
    };
    app->workers = ml_workers_new(&wo, err);
    if (!app->workers) return -1;
    __atomic_store_n(&app->ready, 1, __ATOMIC_RELEASE);
    return 0;
}

static void free_acts(ml_item_acts *a) {
    if (a->outs)
        for (int i = 0; i < a->n_outputs; i++) free(a->outs[i]);
    free(a->outs);
    free(a->logits);
    memset(a, 0, sizeof *a);
}

void ml_app_free(ml_app *app) {
    ml_workers_free(app->workers);
    if (app->human) ml_human_close(app->human);
    ml_metrics_free(app->metrics);
    ml_jobs_free(app->jobs);
    ml_lru_free(app->results);
    ml_cka_cache_free(app->cka);
    for (int i = 0; i < 2; i++) {
        free_acts(&app->acts[i]);
        ml_once_destroy(&app->acts_once[i]);
        free(app->item_emb[i]);
    }
    ml_once_destroy(&app->emb_once);
    ml_dataset_free(&app->data);
    ml_model_free(&app->model);
}

void *ml_app_worker_init(void *app, int id) {
    (void)app;
    lower_priority(1); /* and the forward-pass pool this worker creates */
    ml_worker *w = calloc(1, sizeof *w);
    if (w) w->id = id;
    return w;
}

void ml_app_worker_fini(void *worker) {
    ml_worker *w = worker;
    if (!w) return;
    ml_workspace_free(w->ws);
    free(w->inp);
    free(w->h0);
    free(w);
}

int ml_app_worker_ready(ml_app *app, ml_worker *w, ml_err *err) {
    if (w->ws) return 0;
    w->ws = ml_workspace_new(&app->model, app->batch_rows, app->max_seq, err);
    if (!w->ws) return -1;
    w->h0 = malloc(sizeof(float) * (size_t)app->batch_rows * (size_t)app->model.cfg.hidden_size);
    if (!w->h0) {
        ml_workspace_free(w->ws);
        w->ws = NULL;
        return ml_errf(err, "out of memory for a forward-pass workspace of %d rows",
                       app->batch_rows);
    }
    return 0;
}

static int compute_embeddings(void *arg, ml_err *err) {
    ml_app *app = arg;
    size_t n = (size_t)app->data.n_items, C = (size_t)app->model.cfg.hidden_size;
    const float *src[2] = {app->data.X, app->data.X_std};
    for (int s = 0; s < 2; s++) {
        float *E = malloc(sizeof(float) * n * C);
        if (!E) return ml_errf(err, "out of memory for item embeddings (%zu x %zu)", n, C);
        if (ml_embed_features(&app->model, src[s], (int)n, E, err) != 0) {
            free(E);
            return -1;
        }
        free(app->item_emb[s]);
        app->item_emb[s] = E;
    }
    return 0;
}

const float *ml_app_item_embeddings(ml_app *app, int standardize, ml_err *err) {
    if (ml_once_run(&app->emb_once, compute_embeddings, app, err) != 0) return NULL;
    return app->item_emb[standardize ? 1 : 0];
}

int ml_app_run_items(ml_app *app, ml_worker *w, const int *items, const int *labels, int B, int S,
                     int standardize, float **outs, float *logits, ml_err *err) {
    const float *E = ml_app_item_embeddings(app, standardize, err);
    if (!E || ml_app_worker_ready(app, w, err) != 0) return -1;
    if (S > app->max_seq || S > app->batch_rows)
        return ml_errf(err, "sequences of %d trials are longer than this model allows (%d)", S,
                       app->max_seq < app->batch_rows ? app->max_seq : app->batch_rows);
    int n_out = ml_model_num_outputs(&app->model);
    size_t C = (size_t)app->model.cfg.hidden_size;
    int per_batch = app->batch_rows / S;
    float *batch_outs[ML_MAX_LAYERS + 1];
    for (int b0 = 0; b0 < B; b0 += per_batch) {
        int nb = B - b0 < per_batch ? B - b0 : per_batch;
        size_t row0 = (size_t)b0 * (size_t)S;
        ml_embed_episodes(&app->model, E, items + row0, labels ? labels + row0 : NULL, nb, S,
                          w->h0);
        for (int i = 0; i < n_out; i++) batch_outs[i] = outs && outs[i] ? outs[i] + row0 * C : NULL;
        if (ml_forward_from_embedding(&app->model, w->ws, w->h0, nb, S, outs ? batch_outs : NULL,
                                      logits ? logits + row0 : NULL, err) != 0)
            return -1;
    }
    return 0;
}

typedef struct acts_job {
    ml_app *app;
    ml_worker *w;
    int standardize;
} acts_job;

static int compute_item_acts(void *arg, ml_err *err) {
    acts_job *job = arg;
    ml_app *app = job->app;
    ml_item_acts *a = &app->acts[job->standardize];
    int n = app->data.n_items;
    size_t C = (size_t)app->model.cfg.hidden_size;
    a->n_outputs = ml_model_num_outputs(&app->model);
    a->n_items = n;
    a->hidden = (int)C;
    a->outs = calloc((size_t)a->n_outputs, sizeof *a->outs);
    a->logits = malloc(sizeof(float) * (size_t)n);
    int *items = malloc(sizeof(int) * (size_t)n);
    int ok = a->outs && a->logits && items;
    for (int i = 0; ok && i < a->n_outputs; i++)
        ok = (a->outs[i] = malloc(sizeof(float) * (size_t)n * C)) != NULL;
    if (!ok) {
        free(items);
        free_acts(a);
        return ml_errf(err, "out of memory for the activations of %d items", n);
    }
    for (int i = 0; i < n; i++) items[i] = i;
    int rc = ml_app_run_items(app, job->w, items, NULL, n, 1, job->standardize, a->outs, a->logits,
                              err);
    free(items);
    if (rc != 0) free_acts(a);
    return rc;
}

const ml_item_acts *ml_app_item_acts(ml_app *app, ml_worker *w, int standardize, ml_err *err) {
    int s = standardize ? 1 : 0;
    if (ml_once_done(&app->acts_once[s])) {
        if (app->metrics) ml_metrics_add(app->metrics, ML_CNT_ACTS_CACHE_HIT, 1);
        return &app->acts[s];
    }
    acts_job job = {app, w, s};
    if (ml_once_run(&app->acts_once[s], compute_item_acts, &job, err) != 0) return NULL;
    if (app->metrics) ml_metrics_add(app->metrics, ML_CNT_ACTS_CACHE_MISS, 1);
    return &app->acts[s];
}
