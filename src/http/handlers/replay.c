/* GET /v1/human/replay (MODEL.md section 8): every participant's own sequence through the
 * model, every choice scored, beside the baseline learner and the humans' noise ceiling.
 *
 * The computed result (ml_replay_result, not its text) is kept in the result cache under a
 * key of the human copy's sha256 and every request field, so the JSON, the CSV and a job's
 * answer render from one computation; the "source" of the answer is the copy's state at the
 * time of the request. The fast handler (I/O thread) answers from that cache when the copy
 * in memory needs no revalidation, and starts jobs; the slow one (a compute worker) gets the
 * human data, possibly downloading it, and computes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/human_store.h"
#include "http/format.h"
#include "http/handlers/curves.h"
#include "http/handlers/handlers.h"
#include "http/render/render.h"
#include "http/result_keys.h"
#include "metalign/replay.h"

#define REPLAY_JOBS_RETRY_AFTER 5      /* seconds, when the job table or queue is full */
#define REPLAY_MAX_TEMPERATURE 1e6     /* a fixed T beyond this is a flat 0.5 anyway */

static const char REPLAY_KIND[] = "replay";

typedef struct replay_query {
    ml_replay_request rq;
    int async;
    int csv;
} replay_query;

/* ---- the request ----------------------------------------------------------------------- */

/* "fit" (0) or a positive number up to REPLAY_MAX_TEMPERATURE. */
static int parse_temperature(const ml_request *req, double *out, ml_response *resp) {
    const char *s = ml_request_arg(req, "temperature");
    if (!s || !strcmp(s, "fit")) return 0;
    char *end = NULL;
    double t = strtod(s, &end);
    if (end == s || *end || *s == ' ' || !isfinite(t) || !(t > 0) || t > REPLAY_MAX_TEMPERATURE) {
        ml_respond_error(resp, 400, "invalid_argument",
                         "temperature=\"%s\" must be \"fit\" (maximum likelihood per "
                         "participant) or a positive number up to %g, e.g. 1", s,
                         REPLAY_MAX_TEMPERATURE);
        return -1;
    }
    *out = t;
    return 0;
}

static int parse_replay(const ml_request *req, replay_query *q, ml_response *resp) {
    static const char *const args[] = {"max_trial", "temperature", "baseline", "include_trials",
                                       "seed", "n_boot", "n_splits", "async", ML_VIEW_ARGS,
                                       NULL};
    static const char *const baselines[] = {"none", "logistic", NULL};
    ml_replay_defaults(&q->rq);
    q->async = 0;
    q->csv = 0;
    if (ml_request_check_args(req, args, resp) != 0 || ml_request_no_body(req, resp) != 0)
        return -1;
    long long max_trial = q->rq.max_trial, seed = 0, n_boot = q->rq.n_boot,
              n_splits = q->rq.n_splits;
    if (ml_arg_int(req, "max_trial", 0, ML_HUMAN_MAX_TRIAL_LIMIT, &max_trial, resp) != 0 ||
        ml_arg_int(req, "seed", 0, ML_SEED_MAX, &seed, resp) != 0 ||
        ml_arg_int(req, "n_boot", 0, ML_REPLAY_MAX_N_BOOT, &n_boot, resp) != 0 ||
        ml_arg_int(req, "n_splits", 1, ML_REPLAY_MAX_SPLITS, &n_splits, resp) != 0 ||
        ml_arg_enum(req, "baseline", baselines, &q->rq.baseline, resp) != 0 ||
        ml_arg_bool(req, "include_trials", &q->rq.include_trials, resp) != 0 ||
        ml_arg_bool(req, "async", &q->async, resp) != 0 ||
        parse_temperature(req, &q->rq.temperature, resp) != 0)
        return -1;
    /* one table per request: the trials with include_trials, else the participants */
    ml_view view;
    if (ml_view_parse(req, 0, &view, resp) != 0) return -1;
    q->csv = view.format == ML_FORMAT_CSV;
    if (q->async && q->csv) {
        ml_respond_error(resp, 400, "invalid_argument",
                         "async=true gives a job whose result is JSON; once it is done, ask "
                         "for format=csv without async (it is answered from the cache)");
        return -1;
    }
    q->rq.max_trial = (int)max_trial;
    q->rq.seed = (uint64_t)seed;
    q->rq.n_boot = (int)n_boot;
    q->rq.n_splits = (int)n_splits;
    return 0;
}

/* The replay feeds every trial the previous trial's label, as the participants got it: a
 * checkpoint that takes other feedback cannot replay their sequences faithfully. */
static int check_model(const ml_app *app, ml_response *resp) {
    ml_feedback fb = ml_model_feedback(&app->model);
    if (app->model.generation == ML_GEN_SEED && fb == ML_FEEDBACK_LABELS) return 0;
    ml_respond_error(resp, 422, "model_not_replayable",
                     "the checkpoint %s is of the later generation (%s): it takes %s as "
                     "feedback, not the previous trial's label, so the participants' "
                     "sequences (label feedback) cannot be replayed through it; serve a "
                     "checkpoint of the seed's generation for /v1/human/replay",
                     app->model.path, ml_arch_name(app->model.meta.model_type),
                     fb == ML_FEEDBACK_MAGNITUDES ? "magnitudes (the previous magnitude / "
                                                    "mag_std)"
                                                  : "nothing (every trial on its own)");
    return -1;
}

/* ---- the cached result ----------------------------------------------------------------- */

/* The result, and the parts of its answers that do not depend on the human copy's state,
 * rendered once on the worker: the CSV table and the JSON "trials" array (3.6 MB for 90 x
 * 120 trials; rendering it again for every request would hold an I/O thread for tens of
 * milliseconds). */
typedef struct replay_obj {
    ml_ref ref;
    ml_replay_result res;
    ml_blob *csv;
    ml_blob *trials; /* NULL without include_trials */
} replay_obj;

static void replay_destroy(ml_ref *r) {
    replay_obj *o = (replay_obj *)r;
    ml_replay_result_free(&o->res);
    ml_blob_unref(o->csv);
    ml_blob_unref(o->trials);
    free(o);
}

static int render_parts(replay_obj *o, ml_err *err) {
    ml_buf out = {0};
    if (ml_render_replay_csv(&out, &o->res) == 0) o->csv = ml_blob_new(out.data, out.len);
    ml_buf_free(&out);
    if (!o->csv) return ml_errf(err, "out of memory building the CSV table");
    if (!o->res.request.include_trials) return 0;
    ml_jw jw;
    ml_jw_init(&jw, &out);
    ml_render_replay_trials(&jw, &o->res);
    if (ml_jw_finish(&jw) == 0) o->trials = ml_blob_new(out.data, out.len);
    int bad = jw.bad;
    ml_buf_free(&out);
    if (!o->trials)
        return ml_errf(err, bad ? "a trial row holds a value JSON cannot hold"
                                : "out of memory building the trial rows");
    return 0;
}

static size_t replay_bytes(const ml_replay_result *res) {
    size_t groups = (size_t)res->n_dims + 1;
    size_t img = res->images.n ? res->images.off[res->images.n - 1] + 64 : 0;
    return sizeof(replay_obj) + res->n_participants * (sizeof(ml_replay_participant) + 32) +
           groups * (sizeof(ml_replay_group) + 3 * (size_t)res->n_trials * 32) +
           res->n_trial_rows * sizeof(ml_replay_trial) + img + res->images.n * sizeof(size_t);
}

static void replay_key(const char *sha256, const ml_replay_request *rq, char out[ML_KEY_LEN]) {
    uint64_t t_bits;
    memcpy(&t_bits, &rq->temperature, sizeof t_bits);
    ml_key k;
    ml_key_begin(&k, REPLAY_KIND);
    ml_key_str(&k, "sha256", sha256);
    ml_key_int(&k, "max_trial", rq->max_trial);
    ml_key_uint(&k, "temperature_bits", (unsigned long long)t_bits);
    ml_key_int(&k, "baseline", rq->baseline);
    ml_key_uint(&k, "seed", (unsigned long long)rq->seed);
    ml_key_int(&k, "n_boot", rq->n_boot);
    ml_key_int(&k, "n_splits", rq->n_splits);
    ml_key_int(&k, "include_trials", rq->include_trials);
    ml_key_finish(&k, out);
}

static replay_obj *lookup(ml_app *app, const char *key) {
    ml_ref *r = ml_lru_get(app->results, key);
    if (r && r->kind == REPLAY_KIND) return (replay_obj *)r;
    ml_unref(r);
    return NULL;
}

/* A failed replay's HTTP status and error code. */
static int code_status(ml_replay_code code, const char **name) {
    switch (code) {
    case ML_REPLAY_E_ARG: *name = "invalid_argument"; return 400;
    case ML_REPLAY_E_DATA: *name = "human_data_not_replayable"; return 422;
    case ML_REPLAY_E_MODEL: *name = "model_not_replayable"; return 422;
    default: *name = "internal"; return 500;
    }
}

/* The result for key: from the cache, else computed and cached. NULL with *code and err
 * (ML_REPLAY_CANCELLED when the hooks asked to stop). */
static replay_obj *replay_result(ml_app *app, ml_worker *w, const ml_human_snapshot *snap,
                                 const ml_replay_request *rq, const ml_replay_hooks *hooks,
                                 const char *key, ml_replay_code *code, ml_err *err) {
    replay_obj *o = lookup(app, key);
    if (o) return o;
    if (!(o = calloc(1, sizeof *o))) {
        *code = ML_REPLAY_E_INTERNAL;
        return ml_errp(err, "out of memory");
    }
    if (ml_app_replay(app, w, &snap->data, rq, hooks, &o->res, code, err) != 0) {
        free(o);
        return NULL;
    }
    ml_ref_init(&o->ref, REPLAY_KIND, 0, replay_destroy);
    if (render_parts(o, err) != 0) {
        *code = ML_REPLAY_E_INTERNAL;
        ml_unref(&o->ref);
        return NULL;
    }
    o->ref.bytes = replay_bytes(&o->res) + o->csv->len + (o->trials ? o->trials->len : 0);
    ml_lru_put(app->results, key, &o->ref);
    return o;
}

/* ---- answers --------------------------------------------------------------------------- */

static void respond(const ml_app *app, const replay_obj *o, const ml_human_status *st, int csv,
                    ml_response *resp) {
    if (csv) {
        ml_respond_blob(resp, 200, ML_CT_CSV, o->csv);
        return;
    }
    ml_buf out = {0};
    ml_jw jw;
    ml_jw_init(&jw, &out);
    ml_render_replay(&jw, app, &o->res, st, o->trials);
    ml_respond_writer(resp, 200, &jw);
}

/* The JSON answer as a blob (a job's result), or NULL with err. */
static ml_blob *render_blob(const ml_app *app, const replay_obj *o, const ml_human_status *st,
                            ml_err *err) {
    ml_buf out = {0};
    ml_jw jw;
    ml_jw_init(&jw, &out);
    ml_render_replay(&jw, app, &o->res, st, o->trials);
    ml_blob *b = ml_jw_finish(&jw) == 0 ? ml_blob_new(out.data, out.len) : NULL;
    if (!b) ml_errf(err, jw.bad ? "the replay produced a value JSON cannot hold"
                                : "out of memory building the answer");
    ml_buf_free(&out);
    return b;
}

/* The copy in memory, when the store would serve it without contacting upstream (so the
 * cache may answer in the I/O thread); 0 otherwise. */
static int current_copy(ml_app *app, ml_human_status *st) {
    ml_human_status_get(app->human, st);
    if (!st->cached) return 0;
    long max_age = app->cfg->human_max_age;
    return max_age < 0 || (long)(time(NULL) - st->validated_at) < max_age;
}


/* ---- jobs ------------------------------------------------------------------------------ */

typedef struct replay_job {
    ml_app *app;
    ml_job *job;
    ml_replay_request rq;
} replay_job;

static void job_progress(void *ctx, long done, long total) {
    ml_job_progress_of(((replay_job *)ctx)->job, (int)done, (int)total);
}

static int job_cancelled(void *ctx) { return ml_job_cancel_requested(((replay_job *)ctx)->job); }

static void job_finish(ml_app *app, ml_job *j, const replay_obj *o, const ml_human_status *st) {
    ml_err err = {{0}};
    ml_blob *b = render_blob(app, o, st, &err);
    if (b) {
        int kept = ml_job_finish(j, b) == 0; /* else it failed: no room in the budget */
        ml_blob_unref(b);
        ml_metrics_add(app->metrics, kept ? ML_CNT_JOBS_DONE : ML_CNT_JOBS_FAILED, 1);
    } else {
        ml_job_fail(j, "internal", err.msg);
        ml_metrics_add(app->metrics, ML_CNT_JOBS_FAILED, 1);
    }
}

static void run_job(void *arg, void *worker) {
    replay_job *rj = arg;
    ml_app *app = rj->app;
    if (ml_job_start(rj->job) != 0) {
        ml_metrics_add(app->metrics, ML_CNT_JOBS_CANCELLED, 1);
        goto out;
    }
    ml_human_status st;
    ml_human_snapshot *snap = NULL;
    ml_err err = {{0}};
    /* a job has its own worker: it may wait for another request's download */
    if (ml_human_get_waiting(app->human, &snap, &st, &err) != 0) {
        ml_job_fail(rj->job, ml_fetch_code_name(st.code), err.msg);
        ml_metrics_add(app->metrics, ML_CNT_JOBS_FAILED, 1);
        goto out;
    }
    char key[ML_KEY_LEN];
    replay_key(snap->sha256, &rj->rq, key);
    ml_replay_hooks hooks = {job_progress, job_cancelled, rj};
    ml_replay_code code = ML_REPLAY_OK;
    replay_obj *o = replay_result(app, worker, snap, &rj->rq, &hooks, key, &code, &err);
    ml_human_snapshot_unref(snap);
    if (o) {
        job_finish(app, rj->job, o, &st);
        ml_unref(&o->ref);
    } else if (code == ML_REPLAY_CANCELLED) {
        ml_job_mark_cancelled(rj->job);
        ml_metrics_add(app->metrics, ML_CNT_JOBS_CANCELLED, 1);
    } else {
        const char *name;
        code_status(code, &name);
        ml_job_fail(rj->job, name, err.msg);
        ml_metrics_add(app->metrics, ML_CNT_JOBS_FAILED, 1);
    }
out:
    ml_job_unref(rj->job);
    free(rj);
}

static int submit(ml_app *app, ml_job *j, const ml_replay_request *rq) {
    replay_job *rj = calloc(1, sizeof *rj);
    if (!rj) return -1;
    rj->app = app;
    rj->job = ml_job_ref(j);
    rj->rq = *rq;
    if (ml_workers_submit(app->workers, ML_TASK_BACKGROUND, run_job, rj) != 0) {
        ml_job_unref(rj->job);
        free(rj);
        return -1;
    }
    return 0;
}

/* A job for the request (shared with an identical active one); finished at once when the
 * result is cached. The job's key is the result's, with the copy's sha256 when one is in
 * memory ("" before the first download). */
static void start_job(ml_app *app, const ml_replay_request *rq, const ml_human_status *st,
                      const replay_obj *cached, ml_response *resp) {
    char key[ML_KEY_LEN];
    replay_key(st->cached ? st->sha256 : "", rq, key);
    ml_err err = {{0}};
    int existing = 0;
    ml_job *j = ml_jobs_create(app->jobs, "replay", key, 0, &existing, &err);
    if (!j) {
        ml_metrics_add(app->metrics, ML_CNT_JOBS_REJECTED, 1);
        ml_respond_unavailable(resp, REPLAY_JOBS_RETRY_AFTER, "too_many_jobs", "%s", err.msg);
        return;
    }
    if (!existing) {
        ml_metrics_add(app->metrics, ML_CNT_JOBS_SUBMITTED, 1);
        if (cached) {
            long total = (long)cached->res.n_participants * (rq->baseline ? 2 : 1);
            ml_job_start(j);
            ml_job_progress_of(j, (int)total, (int)total);
            job_finish(app, j, cached, st);
        } else if (submit(app, j, rq) != 0) {
            ml_job_fail(j, "busy", "the job queue is full");
            ml_job_unref(j);
            ml_respond_unavailable(resp, REPLAY_JOBS_RETRY_AFTER, "busy",
                                   "the job queue is full; retry shortly");
            return;
        }
    }
    const char *id = ml_job_id(j);
    snprintf(resp->location, sizeof resp->location, "/v1/jobs/%s", id);
    ml_respond_json(resp, 202,
                    json_pack("{s:s,s:s,s:s}", "job", id, "status_url", resp->location, "status",
                              ml_job_status_name(ml_job_get_status(j))));
    ml_job_unref(j);
}

/* ---- the handlers ---------------------------------------------------------------------- */

void ml_h_replay_fast(ml_app *app, const ml_request *req, ml_response *resp) {
    replay_query q;
    if (parse_replay(req, &q, resp) != 0 || check_model(app, resp) != 0) return;
    ml_human_status st;
    replay_obj *o = NULL;
    if (current_copy(app, &st)) {
        char key[ML_KEY_LEN];
        replay_key(st.sha256, &q.rq, key);
        o = lookup(app, key);
    }
    if (q.async)
        start_job(app, &q.rq, &st, o, resp);
    else if (o)
        respond(app, o, &st, q.csv, resp);
    /* else: status stays 0 and the slow handler computes on a worker */
    if (o) ml_unref(&o->ref);
}

void ml_h_replay(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    replay_query q;
    if (parse_replay(req, &q, resp) != 0 || check_model(app, resp) != 0) return;
    ml_human_status st;
    int waiting;
    ml_human_snapshot *snap = ml_human_copy(app, req, &st, &waiting, resp);
    if (!snap) return;
    char key[ML_KEY_LEN];
    replay_key(snap->sha256, &q.rq, key);
    ml_replay_code code = ML_REPLAY_OK;
    ml_err err = {{0}};
    /* stopped when its client goes away or a shutdown begins */
    ml_sync_stop stop = {app, req, NULL};
    ml_sim_hooks sim = ml_sync_hooks(&stop);
    ml_replay_hooks hooks = {NULL, sim.cancelled, sim.ctx};
    replay_obj *o = replay_result(app, w, snap, &q.rq, &hooks, key, &code, &err);
    ml_human_snapshot_unref(snap);
    if (!o && code == ML_REPLAY_CANCELLED) {
        ml_respond_cancelled(req, resp);
        return;
    }
    if (!o) {
        const char *name;
        int status = code_status(code, &name);
        ml_respond_error(resp, status, name, "%s", err.msg);
        return;
    }
    respond(app, o, &st, q.csv, resp);
    ml_unref(&o->ref);
}
