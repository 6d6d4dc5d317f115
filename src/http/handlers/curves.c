/* POST /v1/learning-curves: answered from the result cache when the same request was seen,
 * run as a job with ?async=true, else simulated on a compute worker while the client waits. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/request.h"
#include "http/routes.h"
#include "engine/simulate.h"

#define MAX_EPISODES 100000
#define MAX_TRIAL_ROWS 20000000LL /* episodes x seq_len: about 20 minutes of a seed-size model */
#define MAX_DETAIL_ROWS 2000000LL /* include_episodes answers stay below ~100 MB */

/* Parses and validates the body; 0 or -1 (resp answered). */
static int parse_curves(const ml_app *app, const ml_request *req, ml_sim_request *rq,
                        int *async, ml_response *resp) {
    static const char *const fields[] = {"dims", "episodes", "seq_len", "seed", "standardize",
                                         "include_episodes", "batch_size", "n_boot", NULL};
    static const char *const args[] = {"async", NULL};
    if (ml_request_check_args(req, args, resp) != 0) return -1;
    *async = 0;
    if (ml_arg_bool(req, "async", async, resp) != 0) return -1;
    json_t *body = NULL;
    if (ml_body_object(req, fields, &body, resp) != 0) return -1;
    ml_sim_defaults(rq);
    int K = app->data.target_dims, n = app->data.n_items;
    int max_len = app->max_seq < n ? app->max_seq : n;
    long long episodes = rq->episodes, seq_len = rq->seq_len, seed = 0, batch = rq->batch_size,
              n_boot = rq->n_boot;
    int rc = -1;
    char range[96];
    snprintf(range, sizeof range, "the target has %d dimensions", K);
    json_t *dims = json_object_get(body, "dims");
    if (dims && !json_is_null(dims)) {
        int *v = NULL, nv = 0;
        if (ml_int_list_json(dims, "dims", K, range, ML_SIM_MAX_DIMS, &v, &nv, resp) != 0) goto out;
        memcpy(rq->dims, v, sizeof(int) * (size_t)nv);
        rq->n_dims = nv;
        free(v);
    } else {
        for (int i = 0; i < rq->n_dims; i++)
            if (rq->dims[i] >= K) {
                ml_respond_error(resp, 400, "out_of_range",
                                 "the default dims [0,1,2] need 3 target dimensions but %s; "
                                 "give dims explicitly", range);
                goto out;
            }
    }
    if (ml_json_int(body, "episodes", 1, MAX_EPISODES, &episodes, resp) != 0 ||
        ml_json_int(body, "seed", 0, LLONG_MAX, &seed, resp) != 0 ||
        ml_json_int(body, "batch_size", 1, 100000, &batch, resp) != 0 ||
        ml_json_int(body, "n_boot", 0, 100000, &n_boot, resp) != 0 ||
        ml_json_bool(body, "standardize", &rq->standardize, resp) != 0 ||
        ml_json_bool(body, "include_episodes", &rq->include_episodes, resp) != 0)
        goto out;
    json_t *sl = json_object_get(body, "seq_len");
    if (sl && json_is_integer(sl) && (json_integer_value(sl) < 1 || json_integer_value(sl) > max_len)) {
        ml_respond_error(resp, 400, "out_of_range",
                         "seq_len=%lld is out of range: allowed 1..%d (%s)",
                         (long long)json_integer_value(sl), max_len,
                         max_len == n ? "an episode's items are distinct, and there are that many items"
                                      : "the model's learned positions stop there");
        goto out;
    }
    if (ml_json_int(body, "seq_len", 1, max_len, &seq_len, resp) != 0) goto out;
    if (episodes * seq_len > MAX_TRIAL_ROWS) {
        ml_respond_error(resp, 400, "too_large",
                         "episodes x seq_len = %lld trials is more than one request may simulate "
                         "(%lld); split it into several seeds", episodes * seq_len, MAX_TRIAL_ROWS);
        goto out;
    }
    if (rq->include_episodes && episodes * seq_len > MAX_DETAIL_ROWS) {
        ml_respond_error(resp, 400, "too_large",
                         "include_episodes with %lld trials would make a huge answer; at most "
                         "%lld trials can be detailed", episodes * seq_len, MAX_DETAIL_ROWS);
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

typedef struct curve_job {
    ml_app *app;
    ml_job *job;
    ml_sim_request rq;
} curve_job;

static void job_progress(void *ctx, int done) { ml_job_progress(((curve_job *)ctx)->job, done); }
static int job_cancelled(void *ctx) { return ml_job_cancel_requested(((curve_job *)ctx)->job); }

static void run_job(void *arg, void *worker) {
    curve_job *cj = arg;
    ml_app *app = cj->app;
    if (ml_job_start(cj->job) == 0) {
        ml_sim_hooks hooks = {job_progress, job_cancelled, cj};
        ml_err err = {{0}};
        int rc = 0;
        ml_blob *b = ml_sim_answer(app, worker, &cj->rq, &hooks, &rc, &err);
        if (b) {
            ml_job_finish(cj->job, b);
            ml_blob_unref(b);
            ml_metrics_add(app->metrics, ML_CNT_JOBS_DONE, 1);
        } else if (rc == 1) {
            ml_job_cancelled(cj->job);
            ml_metrics_add(app->metrics, ML_CNT_JOBS_CANCELLED, 1);
        } else {
            ml_job_fail(cj->job, "simulation_failed", err.msg);
            ml_metrics_add(app->metrics, ML_CNT_JOBS_FAILED, 1);
        }
    } else {
        ml_metrics_add(app->metrics, ML_CNT_JOBS_CANCELLED, 1);
    }
    ml_job_release(cj->job);
    free(cj);
}

static void respond_job(ml_response *resp, ml_job *j, int status) {
    const char *id = ml_job_id(j);
    snprintf(resp->location, sizeof resp->location, "/v1/jobs/%s", id);
    ml_respond_json(resp, status,
                    json_pack("{s:s,s:s,s:s}", "job", id, "status_url", resp->location, "status",
                              ml_job_status_name(ml_job_get_status(j))));
}

static void start_job(ml_app *app, const ml_sim_request *rq, const char *key, ml_blob *cached,
                      ml_response *resp) {
    ml_err err = {{0}};
    int existing = 0;
    ml_job *j = ml_jobs_create(app->jobs, "learning-curves", key, rq->episodes, &existing, &err);
    if (!j) {
        ml_metrics_add(app->metrics, ML_CNT_JOBS_REJECTED, 1);
        ml_respond_error(resp, 503, "too_many_jobs", "%s", err.msg);
        return;
    }
    if (!existing) {
        ml_metrics_add(app->metrics, ML_CNT_JOBS_SUBMITTED, 1);
        if (cached) {
            ml_job_start(j);
            ml_job_finish(j, cached);
        } else {
            curve_job *cj = malloc(sizeof *cj);
            if (!cj || ml_workers_submit(app->workers, ML_TASK_BACKGROUND, run_job,
                                         (*cj = (curve_job){app, ml_job_ref(j), *rq}, cj)) != 0) {
                if (cj) ml_job_release(cj->job);
                free(cj);
                ml_job_fail(j, "busy", "the job queue is full");
                ml_job_release(j);
                ml_respond_error(resp, 503, "busy", "the job queue is full; retry shortly");
                return;
            }
        }
    }
    respond_job(resp, j, 202);
    ml_job_release(j);
}

void ml_h_curves_fast(ml_app *app, const ml_request *req, ml_response *resp) {
    ml_sim_request rq;
    int async = 0;
    if (parse_curves(app, req, &rq, &async, resp) != 0) return;
    char key[512];
    ml_sim_key(&rq, key, sizeof key);
    ml_blob *cached = ml_lru_get(app->results, key);
    ml_metrics_add(app->metrics, cached ? ML_CNT_CURVES_CACHE_HIT : ML_CNT_CURVES_CACHE_MISS, 1);
    if (async)
        start_job(app, &rq, key, cached, resp);
    else if (cached)
        ml_respond_blob(resp, 200, cached);
    /* else: status stays 0 and the slow handler simulates on a worker */
    ml_blob_unref(cached);
}

void ml_h_curves(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    ml_sim_request rq;
    int async = 0;
    if (parse_curves(app, req, &rq, &async, resp) != 0) return;
    ml_err err = {{0}};
    int rc = 0;
    ml_blob *b = ml_sim_answer(app, w, &rq, NULL, &rc, &err);
    if (!b) {
        ml_respond_error(resp, 500, "simulation_failed", "%s", err.msg);
        return;
    }
    ml_respond_blob(resp, 200, b);
    ml_blob_unref(b);
}
