/* POST /v1/learning-curves: answered from the result cache when the same request was seen,
 * run as a job with ?async=true, else simulated on a compute worker while the client waits.
 * A synchronous request is bounded (--max-sync-rows), computed once however many identical
 * ones arrive together (the others wait for it without a worker), and stopped when nobody
 * wants its answer any more. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/shared.h"
#include "http/handlers/curves.h"
#include "http/handlers/handlers.h"
#include "http/http.h"
#include "http/render/csv.h"
#include "http/render/render.h"

#define ML_COALESCE_TRIES 3 /* waits for identical requests before computing regardless */

/* The fields of a simulation, in the body (POST) or the query (GET). */
static const ml_field curve_fields[] = {
    {"dims", ML_FIELD_DIMS},        {"episodes", ML_FIELD_INT},
    {"seq_len", ML_FIELD_INT},      {"seed", ML_FIELD_INT},
    {"standardize", ML_FIELD_BOOL}, {"include_episodes", ML_FIELD_BOOL},
    {"batch_size", ML_FIELD_INT},   {"n_boot", ML_FIELD_INT},
};
#define N_CURVE_FIELDS ((int)(sizeof curve_fields / sizeof curve_fields[0]))

/* Parses and validates the request; 0 or -1 (resp answered). */
static int parse_curves(const ml_app *app, const ml_request *req, ml_sim_request *rq,
                        int *async, ml_view *view, ml_response *resp) {
    static const char *const args[] = {"async", ML_VIEW_ARGS, NULL};
    if (ml_sim_defaults(rq) != 0) {
        ml_respond_error(resp, 500, "internal", "out of memory");
        return -1;
    }
    ml_sim_model_defaults(rq, &app->model); /* the later generation: raw features */
    *async = 0;
    json_t *body = NULL;
    if (ml_request_fields(req, curve_fields, N_CURVE_FIELDS, args, &body, resp) != 0 ||
        ml_arg_bool(req, "async", async, resp) != 0 ||
        ml_view_parse(req, ML_ROWS_MASK(ML_ROWS_CURVE) | ML_ROWS_MASK(ML_ROWS_TRIALS), view,
                      resp) != 0) {
        json_decref(body);
        return -1;
    }
    if (*async && strcmp(req->method, "POST") != 0) {
        json_decref(body);
        ml_respond_error(resp, 400, "invalid_argument",
                         "async=true starts a job: POST /v1/learning-curves?async=true with the "
                         "fields as a JSON body (a GET only reads)");
        return -1;
    }
    if (*async && view->format != ML_FORMAT_JSON) {
        json_decref(body);
        ml_respond_error(resp, 400, "invalid_argument",
                         "a job's answer is JSON (GET /v1/jobs/<id>); once it is done, the same "
                         "request as GET with format=csv reads the table from the cache");
        return -1;
    }
    int K = app->data.target_dims, n = app->data.n_items;
    int max_len = app->max_seq < n ? app->max_seq : n;
    long long episodes = rq->episodes, seq_len = rq->seq_len, seed = 0, batch = rq->batch_size,
              n_boot = rq->n_boot;
    int rc = -1;
    json_t *dims = json_object_get(body, "dims");
    if (dims && !json_is_null(dims)) {
        free(rq->dims);
        rq->dims = NULL;
        if (ml_dims_json(dims, K, 0, &rq->dims, &rq->n_dims, resp) != 0) goto out;
    } else if (K < 3) {
        ml_respond_error(resp, 400, "out_of_range",
                         "the default dims [0,1,2] need 3 target dimensions but the target has "
                         "%d; give dims explicitly (or \"all\")", K);
        goto out;
    }
    if (ml_json_int(body, "episodes", 1, ML_SIM_MAX_EPISODES, &episodes, resp) != 0 ||
        ml_json_int(body, "seed", 0, ML_SEED_MAX, &seed, resp) != 0 ||
        ml_json_int(body, "batch_size", 1, ML_SIM_MAX_BATCH, &batch, resp) != 0 ||
        ml_json_int(body, "n_boot", 0, ML_N_BOOT_MAX, &n_boot, resp) != 0 ||
        ml_json_bool(body, "standardize", &rq->standardize, resp) != 0 ||
        ml_json_bool(body, "include_episodes", &rq->include_episodes, resp) != 0)
        goto out;
    json_t *sl = json_object_get(body, "seq_len");
    if (json_is_integer(sl) && (json_integer_value(sl) < 1 || json_integer_value(sl) > max_len)) {
        ml_respond_error(resp, 400, "out_of_range",
                         "seq_len=%lld is out of range: allowed 1..%d (%s)",
                         (long long)json_integer_value(sl), max_len,
                         max_len == n ? "an episode's items are distinct, and there are that many items"
                                      : "the model's positions stop there");
        goto out;
    }
    if (ml_json_int(body, "seq_len", 1, max_len, &seq_len, resp) != 0) goto out;
    if (episodes * seq_len > ML_SIM_MAX_TRIALS) {
        ml_respond_error(resp, 400, "too_large",
                         "episodes x seq_len = %lld trials is more than one request may simulate "
                         "(%lld); split it into several seeds", episodes * seq_len,
                         ML_SIM_MAX_TRIALS);
        goto out;
    }
    if (view->rows == ML_ROWS_TRIALS && view->format == ML_FORMAT_CSV &&
        episodes * seq_len > ML_SIM_MAX_DETAIL_TRIALS) {
        ml_respond_error(resp, 400, "too_large",
                         "rows=trials with %lld trials would make a huge table; at most %lld "
                         "trials can be listed", episodes * seq_len, ML_SIM_MAX_DETAIL_TRIALS);
        goto out;
    }
    if (rq->include_episodes && episodes * seq_len > ML_SIM_MAX_DETAIL_TRIALS) {
        ml_respond_error(resp, 400, "too_large",
                         "include_episodes with %lld trials would make a huge answer; at most "
                         "%lld trials can be detailed", episodes * seq_len,
                         ML_SIM_MAX_DETAIL_TRIALS);
        goto out;
    }
    ml_err err = {{0}};
    if (ml_sim_check_model(&app->model, rq, &err) != 0) { /* dims the heads lack */
        ml_respond_error(resp, 400, "out_of_range", "%s", err.msg);
        goto out;
    }
    rq->episodes = (int)episodes;
    rq->seq_len = (int)seq_len;
    rq->seed = (uint64_t)seed;
    rq->batch_size = (int)batch;
    rq->n_boot = (int)n_boot;
    rc = 0;
out:
    json_decref(body);
    return rc;
}

void ml_curves_key(const ml_sim_request *rq, const ml_view *view, char out[ML_KEY_LEN]) {
    ml_key k;
    ml_key_begin(&k, "curves");
    ml_key_view(&k, view);
    ml_key_ints(&k, "dims", rq->dims, rq->n_dims);
    ml_key_int(&k, "episodes", rq->episodes);
    ml_key_int(&k, "seq_len", rq->seq_len);
    ml_key_uint(&k, "seed", (unsigned long long)rq->seed);
    ml_key_int(&k, "standardize", rq->standardize);
    ml_key_int(&k, "include_episodes", rq->include_episodes);
    ml_key_int(&k, "batch_size", rq->batch_size);
    ml_key_int(&k, "n_boot", rq->n_boot);
    ml_key_finish(&k, out);
}

/* The answer in view v from what the simulation gave; NULL when it cannot be rendered. */
static ml_blob *render_view(ml_app *app, const ml_sim_request *rq, const ml_sim_result *res,
                            const ml_sim_curves *curves, const ml_view *v, int *bad) {
    ml_buf out = {0};
    int rc;
    if (v->format == ML_FORMAT_CSV) {
        ml_csv c;
        if (v->rows == ML_ROWS_TRIALS) {
            ml_csv_trials_begin(&c, &out);
            ml_csv_trials_model(&c, res);
        } else {
            ml_csv_curves_begin(&c, &out);
            ml_csv_sim_curves(&c, curves, rq->seq_len);
        }
        rc = ml_csv_finish(&c);
    } else {
        ml_warnings warn = {0};
        ml_warn_seq_len(&warn, app, rq->seq_len);
        ml_jw jw;
        ml_jw_init(&jw, &out);
        ml_render_sim(&jw, app, rq, res, curves, &warn);
        rc = ml_jw_finish(&jw);
        *bad = jw.bad && !out.oom;
    }
    ml_blob *b = rc == 0 ? ml_blob_new(out.data, out.len) : NULL;
    ml_buf_free(&out);
    return b;
}

ml_blob *ml_curves_cached(ml_app *app, const char *key) {
    ml_blob *b = ml_lru_get_blob(app->results, key);
    if (!b && app->shared && (b = ml_shared_result_get(app->shared, key)))
        ml_lru_put_blob(app->results, key, b);
    return b;
}

ml_blob *ml_curves_render(ml_app *app, const ml_sim_request *rq, ml_sim_result *res,
                          ml_err *err) {
    static const ml_view json = {ML_FORMAT_JSON, ML_ROWS_CURVE};
    ml_sim_curves curves;
    if (ml_sim_curves_compute(rq, res, &curves, err) != 0) return NULL;
    int bad = 0;
    ml_blob *b = render_view(app, rq, res, &curves, &json, &bad);
    ml_sim_curves_free(&curves);
    if (!b)
        ml_errf(err, bad ? "the model produced values that are not finite on these episodes"
                         : "out of memory building the answer");
    return b;
}

ml_blob *ml_curves_answer(ml_app *app, ml_worker *w, const ml_sim_request *rq,
                          const ml_view *view, const ml_sim_hooks *hooks, int *rc, ml_err *err) {
    char key[ML_KEY_LEN];
    ml_curves_key(rq, view, key);
    *rc = 0;
    ml_blob *b = ml_curves_cached(app, key);
    if (b) return b;
    ml_sim_result res;
    *rc = ml_app_simulate(app, w, rq, hooks, &res, err);
    if (*rc != 0) return NULL;
    ml_sim_curves curves;
    if (ml_sim_curves_compute(rq, &res, &curves, err) != 0) {
        ml_sim_result_free(&res);
        *rc = -1;
        return NULL;
    }
    /* One simulation, every small view: the JSON and the curve table are cached together, so
     * a job's result can be read back as CSV without simulating again. The long table of
     * trials is made only when asked (it is large). */
    static const ml_view small[] = {{ML_FORMAT_JSON, ML_ROWS_CURVE}, {ML_FORMAT_CSV, ML_ROWS_CURVE}};
    int bad = 0;
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
        if (small[i].format == view->format && small[i].rows == view->rows) continue;
        char other[ML_KEY_LEN];
        ml_curves_key(rq, &small[i], other);
        ml_blob *o = render_view(app, rq, &res, &curves, &small[i], &bad);
        if (o) ml_lru_put_blob(app->results, other, o);
        ml_blob_unref(o);
    }
    b = render_view(app, rq, &res, &curves, view, &bad);
    ml_sim_curves_free(&curves);
    ml_sim_result_free(&res);
    if (!b) {
        *rc = -1;
        ml_errf(err, bad ? "the model produced values that are not finite on these episodes"
                         : "out of memory building the answer");
        return NULL;
    }
    ml_lru_put_blob(app->results, key, b);
    if (app->shared) ml_shared_result_put(app->shared, NULL, key, b);
    return b;
}

typedef struct curve_job {
    ml_app *app;
    ml_job *job;
    ml_sim_request rq;
} curve_job;

static void job_progress(void *ctx, int done) { ml_job_progress(((curve_job *)ctx)->job, done); }
static int job_cancelled(void *ctx) { return ml_job_cancel_requested(((curve_job *)ctx)->job); }

static void curve_job_free(curve_job *cj) {
    ml_job_unref(cj->job);
    ml_sim_request_free(&cj->rq);
    free(cj);
}

static void run_job(void *arg, void *worker) {
    curve_job *cj = arg;
    ml_app *app = cj->app;
    if (ml_job_start(cj->job) == 0) {
        ml_sim_hooks hooks = {job_progress, job_cancelled, cj};
        ml_err err = {{0}};
        int rc = 0;
        static const ml_view json = {ML_FORMAT_JSON, ML_ROWS_CURVE};
        ml_blob *b = ml_curves_answer(app, worker, &cj->rq, &json, &hooks, &rc, &err);
        if (b) {
            int kept = ml_job_finish(cj->job, b) == 0;
            ml_blob_unref(b);
            ml_metrics_add(app->metrics, kept ? ML_CNT_JOBS_DONE : ML_CNT_JOBS_FAILED, 1);
        } else if (rc == 1) {
            ml_job_mark_cancelled(cj->job);
            ml_metrics_add(app->metrics, ML_CNT_JOBS_CANCELLED, 1);
        } else {
            ml_job_fail(cj->job, "simulation_failed", err.msg);
            ml_metrics_add(app->metrics, ML_CNT_JOBS_FAILED, 1);
        }
    } else {
        ml_metrics_add(app->metrics, ML_CNT_JOBS_CANCELLED, 1);
    }
    curve_job_free(cj);
}

static void respond_job(ml_response *resp, ml_job *j, int status) {
    const char *id = ml_job_id(j);
    snprintf(resp->location, sizeof resp->location, "/v1/jobs/%s", id);
    ml_respond_json(resp, status,
                    json_pack("{s:s,s:s,s:s}", "job", id, "status_url", resp->location, "status",
                              ml_job_status_name(ml_job_get_status(j))));
}

static int submit(ml_app *app, ml_job *j, const ml_sim_request *rq) {
    curve_job *cj = calloc(1, sizeof *cj);
    if (!cj) return -1;
    cj->app = app;
    cj->job = ml_job_ref(j);
    if (ml_sim_request_copy(&cj->rq, rq) != 0 ||
        ml_workers_submit(app->workers, ML_TASK_BACKGROUND, run_job, cj) != 0) {
        curve_job_free(cj);
        return -1;
    }
    return 0;
}

static void start_job(ml_app *app, const ml_sim_request *rq, const char *key, ml_blob *cached,
                      ml_response *resp) {
    if (app->shared) { /* readable, cancellable and computed on every replica */
        static const ml_view json = {ML_FORMAT_JSON, ML_ROWS_CURVE}; /* what a job answers */
        char json_key[ML_KEY_LEN];
        ml_curves_key(rq, &json, json_key);
        ml_blob *answer = ml_curves_cached(app, json_key);
        ml_start_shared_job(app, rq, json_key, answer, resp);
        ml_blob_unref(answer);
        return;
    }
    ml_err err = {{0}};
    int existing = 0;
    if (ml_app_is_stopping(app)) {
        ml_respond_unavailable(resp, 1, "shutting_down",
                               "the server is shutting down and takes no new jobs; submit it "
                               "to another replica or after it restarts");
        return;
    }
    ml_job *j = ml_jobs_create(app->jobs, "learning-curves", key, rq->episodes, &existing, &err);
    if (!j) {
        ml_metrics_add(app->metrics, ML_CNT_JOBS_REJECTED, 1);
        ml_respond_unavailable(resp, 5, "too_many_jobs", "%s", err.msg);
        return;
    }
    if (!existing) {
        ml_metrics_add(app->metrics, ML_CNT_JOBS_SUBMITTED, 1);
        if (cached) {
            ml_job_start(j);
            ml_job_finish(j, cached); /* a failure (budget) is the job's answer */
        } else if (submit(app, j, rq) != 0) {
            ml_job_fail(j, "busy", "the job queue is full");
            ml_job_unref(j);
            ml_respond_unavailable(resp, 5, "busy", "the job queue is full; retry shortly");
            return;
        }
    }
    respond_job(resp, j, 202);
    ml_job_unref(j);
}

static const char *content_type(const ml_view *v) {
    return v->format == ML_FORMAT_CSV ? ML_CT_CSV : ML_CT_JSON;
}

int ml_check_sync_rows(const ml_app *app, long long episodes, long long seq_len,
                       const char *async_hint, ml_response *resp) {
    long long rows = episodes * seq_len, max = app->cfg->max_sync_rows;
    if (rows <= max) return 0;
    ml_respond_error(resp, 400, "too_large_for_sync",
                     "episodes x seq_len = %lld trials is more than a request answered while "
                     "the client waits may simulate (%lld, --max-sync-rows); %s",
                     rows, max, async_hint);
    return -1;
}

static int sync_cancelled(void *arg) {
    const ml_sync_stop *s = arg;
    int why = ml_request_cancelled(s->req);
    if (why == ML_CANCEL_SHUTDOWN) return 1;
    /* a client gone is no reason to stop while identical requests wait for the answer */
    return why == ML_CANCEL_CLIENT_GONE &&
           (!s->key || ml_coalesce_waiters(s->app->coalesce, s->key) == 0);
}

ml_sim_hooks ml_sync_hooks(ml_sync_stop *s) {
    return (ml_sim_hooks){NULL, sync_cancelled, s};
}

void ml_h_curves_fast(ml_app *app, const ml_request *req, ml_response *resp) {
    ml_sim_request rq;
    ml_view view;
    int async = 0;
    if (parse_curves(app, req, &rq, &async, &view, resp) == 0) {
        char key[ML_KEY_LEN];
        ml_curves_key(&rq, &view, key);
        ml_blob *cached = ml_curves_cached(app, key);
        ml_metrics_add(app->metrics, cached ? ML_CNT_CURVES_CACHE_HIT : ML_CNT_CURVES_CACHE_MISS, 1);
        if (async)
            start_job(app, &rq, key, cached, resp);
        else if (cached)
            ml_respond_blob(resp, 200, content_type(&view), cached);
        else
            ml_check_sync_rows(app, rq.episodes, rq.seq_len,
                               "add ?async=true to run it as a job (GET /v1/jobs/<id> then "
                               "gives its progress and its answer)", resp);
        /* else: status stays 0 and the slow handler simulates on a worker */
        ml_blob_unref(cached);
    }
    ml_sim_request_free(&rq);
}

/* Simulates rq once for every identical request waiting: 1 when the request now waits for
 * another one's computation, else 0 with resp answered. */
static int simulate_once(ml_app *app, ml_worker *w, const ml_sim_request *rq,
                         const ml_view *view, const ml_request *req, ml_response *resp) {
    char key[ML_KEY_LEN];
    ml_curves_key(rq, view, key);
    for (int tries = 0;; tries++) {
        ml_blob *cached = ml_lru_get_blob(app->results, key);
        if (cached) {
            ml_respond_blob(resp, 200, content_type(view), cached);
            ml_blob_unref(cached);
            return 0;
        }
        if (ml_coalesce_begin(app->coalesce, key) == 0) break;
        if (tries == ML_COALESCE_TRIES) {
            key[0] = '\0'; /* compute without sharing */
            break;
        }
        if (ml_wait_for(app->coalesce, key, req, resp)) return 1;
    }
    ml_sync_stop stop = {app, req, key[0] ? key : NULL};
    ml_sim_hooks hooks = ml_sync_hooks(&stop);
    ml_err err = {{0}};
    int rc = 0;
    ml_blob *b = ml_curves_answer(app, w, rq, view, &hooks, &rc, &err);
    if (key[0]) ml_coalesce_end(app->coalesce, key); /* the waiters find it in the cache */
    if (b)
        ml_respond_blob(resp, 200, content_type(view), b);
    else if (rc == 1)
        ml_respond_cancelled(req, resp);
    else
        ml_respond_error(resp, 500, "simulation_failed", "%s", err.msg);
    ml_blob_unref(b);
    return 0;
}

void ml_h_curves(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    ml_sim_request rq;
    ml_view view;
    int async = 0;
    if (parse_curves(app, req, &rq, &async, &view, resp) == 0 &&
        ml_check_sync_rows(app, rq.episodes, rq.seq_len, "add ?async=true", resp) == 0)
        simulate_once(app, w, &rq, &view, req, resp);
    ml_sim_request_free(&rq);
}
