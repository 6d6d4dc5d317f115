/* The human learning data (fetched on first use, cached on disk) and the model-versus-human
 * comparison. Everything here may contact the upstream, so it runs on compute workers; a
 * request that finds another one's download running waits for it without a worker. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compare.h"
#include "engine/human_store.h"
#include "http/handlers/curves.h"
#include "http/handlers/handlers.h"
#include "http/http.h"
#include "http/render/csv.h"
#include "http/render/render.h"
#include "http/result_keys.h"
#include "metalign/human_curves.h"
#include "util/timefmt.h"

#define ML_HUMAN_RETRY_AFTER 30       /* seconds a client waits when nothing says sooner */

/* Computed human curves, shared through the result cache (both the curves endpoint and the
 * comparison use them). */
static const char HUMAN_CURVES_KIND[] = "human_curves";

typedef struct human_curves_obj {
    ml_ref ref;
    ml_human_curves c;
} human_curves_obj;

static void human_curves_destroy(ml_ref *r) {
    human_curves_obj *o = (human_curves_obj *)r;
    ml_human_curves_free(&o->c);
    free(o);
}

static size_t curves_bytes(const ml_human_curves *c) {
    return sizeof(human_curves_obj) +
           (size_t)(c->n_dims + 1) * ((size_t)c->n_trials * 32 + sizeof(ml_human_curve));
}

/* When to ask again after a 503 about the human data. */
static int retry_after(const ml_human_status *st) {
    if (!st->available) return ML_HUMAN_RETRY_AFTER;
    return st->retry_after > 0 ? (int)st->retry_after : 1;
}

ml_human_snapshot *ml_human_copy(ml_app *app, const ml_request *req, ml_human_status *st,
                                 int *waiting, ml_response *resp) {
    *waiting = 0;
    for (;;) {
        ml_human_snapshot *snap = NULL;
        ml_err err = {{0}};
        int rc = ml_human_get(app->human, &snap, st, &err);
        if (rc == 0) return snap;
        if (rc == ML_HUMAN_BUSY) {
            if (ml_wait_for(app->coalesce, ML_HUMAN_FETCH_KEY, req, resp)) {
                *waiting = 1;
                return NULL;
            }
            continue; /* it ended meanwhile: ask again */
        }
        ml_respond_unavailable(resp, retry_after(st), ml_fetch_code_name(st->code),
                               "the human data is unavailable and no copy is cached: %s",
                               err.msg);
        return NULL;
    }
}

/* The curves over trials 0..max_trial, cached by content, trial range, seed and resamples. */
static human_curves_obj *human_curves(ml_app *app, const ml_human_snapshot *snap, int max_trial,
                                      uint64_t seed, int n_boot, ml_err *err) {
    char key[ML_KEY_LEN];
    ml_key k;
    ml_key_begin(&k, HUMAN_CURVES_KIND);
    ml_key_str(&k, "sha256", snap->sha256);
    ml_key_int(&k, "max_trial", max_trial);
    ml_key_uint(&k, "seed", (unsigned long long)seed);
    ml_key_int(&k, "n_boot", n_boot);
    ml_key_finish(&k, key);
    ml_ref *r = ml_lru_get(app->results, key);
    if (r && r->kind == HUMAN_CURVES_KIND) return (human_curves_obj *)r;
    ml_unref(r);
    human_curves_obj *o = calloc(1, sizeof *o);
    if (!o) return ml_errp(err, "out of memory");
    if (ml_human_curves_compute(&snap->data, max_trial, seed, n_boot, &o->c, err) != 0) {
        free(o);
        return NULL;
    }
    ml_ref_init(&o->ref, HUMAN_CURVES_KIND, curves_bytes(&o->c), human_curves_destroy);
    ml_lru_put(app->results, key, &o->ref);
    return o;
}

void ml_h_human_curves(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    (void)w;
    static const char *const args[] = {"max_trial", "seed", "n_boot", ML_VIEW_ARGS, NULL};
    long long max_trial = ML_HUMAN_DEFAULT_MAX_TRIAL, seed = 0, n_boot = ML_N_BOOT_DEFAULT;
    ml_view view;
    if (ml_request_check_args(req, args, resp) != 0 || ml_request_no_body(req, resp) != 0 ||
        ml_arg_int(req, "max_trial", 0, ML_HUMAN_MAX_TRIAL_LIMIT, &max_trial, resp) != 0 ||
        ml_arg_int(req, "seed", 0, ML_SEED_MAX, &seed, resp) != 0 ||
        ml_arg_int(req, "n_boot", 0, ML_N_BOOT_MAX, &n_boot, resp) != 0 ||
        ml_view_parse(req, ML_ROWS_MASK(ML_ROWS_CURVE) | ML_ROWS_MASK(ML_ROWS_TRIALS), &view,
                      resp) != 0)
        return;
    ml_human_status st;
    int waiting;
    ml_human_snapshot *snap = ml_human_copy(app, req, &st, &waiting, resp);
    if (!snap) return;
    ml_buf out = {0};
    if (view.format == ML_FORMAT_CSV && view.rows == ML_ROWS_TRIALS) {
        ml_csv c;
        ml_csv_trials_begin(&c, &out);
        ml_csv_trials_human(&c, &snap->data, (int)max_trial, NULL, 0);
        ml_human_snapshot_unref(snap);
        ml_respond_csv(resp, 200, &c);
        return;
    }
    ml_err err = {{0}};
    human_curves_obj *o = human_curves(app, snap, (int)max_trial, (uint64_t)seed, (int)n_boot,
                                       &err);
    ml_human_snapshot_unref(snap);
    if (!o) {
        ml_respond_error(resp, 500, "internal", "%s", err.msg);
        return;
    }
    if (view.format == ML_FORMAT_CSV) {
        ml_csv c;
        ml_csv_curves_begin(&c, &out);
        ml_csv_human_curves(&c, &o->c);
        ml_unref(&o->ref);
        ml_respond_csv(resp, 200, &c);
        return;
    }
    ml_jw jw;
    ml_jw_init(&jw, &out);
    ml_render_human_curves(&jw, &o->c, &st);
    ml_unref(&o->ref);
    ml_respond_writer(resp, 200, &jw);
}

/* Asked too soon after the last download: the copy's state and when to ask again. */
static void rate_limited(const ml_app *app, const ml_human_status *st, ml_response *resp) {
    char at[ML_RFC3339_LEN] = "";
    if (st->next_refresh_at) ml_rfc3339(st->next_refresh_at, at);
    long wait = st->next_refresh_at > time(NULL) ? (long)(st->next_refresh_at - time(NULL)) : 1;
    if (!st->cached) {
        ml_respond_unavailable(resp, (int)wait, "rate_limited",
                               "the human data was downloaded less than %d s ago "
                               "(--human-min-refresh) and no copy is cached (%s); the next "
                               "download is allowed at %s",
                               app->cfg->human_min_refresh,
                               st->last_error[0] ? st->last_error : "no error recorded", at);
        return;
    }
    ml_buf out = {0};
    ml_jw jw;
    ml_jw_init(&jw, &out);
    ml_jw_object(&jw);
    ml_jw_kbool(&jw, "refreshed", 0);
    ml_jw_kstring(&jw, "outcome", "rate_limited");
    ml_jw_kstring(&jw, "message", "answered from the copy: the last download ended less than "
                                  "--human-min-refresh seconds ago");
    ml_jw_kstring(&jw, "next_refresh_at", at);
    ml_jw_key(&jw, "source");
    ml_render_human_source(&jw, st);
    ml_jw_object_end(&jw);
    ml_respond_writer(resp, 200, &jw);
}

void ml_h_human_refresh(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    (void)w;
    static const char *const args[] = {NULL};
    if (ml_request_check_args(req, args, resp) != 0 || ml_request_no_body(req, resp) != 0) return;
    ml_human_status st;
    ml_err err = {{0}};
    int rc;
    /* A refresh that finds a download running shares it: it waits (without a worker) and
     * then reports it, since that download ended after this request arrived. */
    while ((rc = ml_human_refresh_since(app->human, req->received_at, &st, &err)) == ML_HUMAN_BUSY)
        if (ml_wait_for(app->coalesce, ML_HUMAN_FETCH_KEY, req, resp)) return;
    if (rc == ML_HUMAN_RATE_LIMITED) {
        rate_limited(app, &st, resp);
        return;
    }
    if (rc != 0 && !st.cached) {
        ml_respond_unavailable(resp, retry_after(&st), ml_fetch_code_name(st.code),
                               "the refresh failed and no copy is cached: %s", err.msg);
        return;
    }
    ml_buf out = {0};
    ml_jw jw;
    ml_jw_init(&jw, &out);
    ml_jw_object(&jw);
    ml_jw_kbool(&jw, "refreshed", rc == 0);
    ml_jw_kstring(&jw, "outcome", ml_human_outcome_name(st.outcome));
    ml_jw_kbool(&jw, "shared", st.shared);
    ml_jw_key(&jw, "source");
    ml_render_human_source(&jw, &st);
    if (rc != 0) { /* the good copy is kept and still served; say why it could not be renewed */
        ml_jw_key(&jw, "error");
        ml_jw_object(&jw);
        ml_jw_kstring(&jw, "code", ml_fetch_code_name(st.code));
        ml_jw_kstring(&jw, "message", err.msg);
        ml_jw_object_end(&jw);
    }
    ml_jw_object_end(&jw);
    ml_respond_writer(resp, 200, &jw);
}

/* ---- GET /v1/compare/learning-curves ---- */

typedef struct compare_query {
    ml_sim_request rq;
    long long max_trial;
    ml_view view;
} compare_query;

static int parse_compare(const ml_app *app, const ml_request *req, compare_query *q,
                         ml_response *resp) {
    static const char *const args[] = {"episodes", "seq_len", "seed", "standardize", "n_boot",
                                       "max_trial", ML_VIEW_ARGS, NULL};
    if (ml_sim_defaults(&q->rq) != 0) {
        ml_respond_error(resp, 500, "internal", "out of memory");
        return -1;
    }
    ml_sim_model_defaults(&q->rq, &app->model); /* the later generation: raw features */
    if (ml_request_check_args(req, args, resp) != 0 || ml_request_no_body(req, resp) != 0)
        return -1;
    long long episodes = q->rq.episodes, seq_len = q->rq.seq_len, seed = 0, n_boot = q->rq.n_boot;
    int max_len = app->max_seq < app->data.n_items ? app->max_seq : app->data.n_items;
    if (ml_arg_int(req, "episodes", 1, ML_SIM_MAX_EPISODES, &episodes, resp) != 0 ||
        ml_arg_int(req, "seq_len", 1, max_len, &seq_len, resp) != 0 ||
        ml_arg_int(req, "seed", 0, ML_SEED_MAX, &seed, resp) != 0 ||
        ml_arg_int(req, "n_boot", 0, ML_N_BOOT_MAX, &n_boot, resp) != 0 ||
        ml_arg_bool(req, "standardize", &q->rq.standardize, resp) != 0 ||
        ml_view_parse(req, ML_ROWS_MASK(ML_ROWS_CURVE) | ML_ROWS_MASK(ML_ROWS_TRIALS) |
                               ML_ROWS_MASK(ML_ROWS_SUMMARY), &q->view, resp) != 0)
        return -1;
    q->max_trial = seq_len - 1;
    const char *mt = ml_request_arg(req, "max_trial");
    if (mt) {
        long long v = -1;
        if (ml_arg_int(req, "max_trial", 0, ML_HUMAN_MAX_TRIAL_LIMIT, &v, resp) != 0) return -1;
        if (v > seq_len - 1) {
            ml_respond_error(resp, 400, "out_of_range",
                             "max_trial=%lld is out of range: allowed 0..%lld, because the model "
                             "plays seq_len=%lld trials (0..%lld); raise seq_len to compare "
                             "more trials", v, seq_len - 1, seq_len, seq_len - 1);
            return -1;
        }
        q->max_trial = v;
    }
    if (ml_check_sync_rows(app, episodes, seq_len,
                           "lower episodes or seq_len (this endpoint has no async mode)",
                           resp) != 0)
        return -1;
    if (q->view.format == ML_FORMAT_CSV && q->view.rows == ML_ROWS_TRIALS &&
        episodes * seq_len > ML_SIM_MAX_DETAIL_TRIALS) {
        ml_respond_error(resp, 400, "too_large",
                         "rows=trials with %lld model trials would make a huge table; at most "
                         "%lld trials can be listed", episodes * seq_len,
                         ML_SIM_MAX_DETAIL_TRIALS);
        return -1;
    }
    q->rq.episodes = (int)episodes;
    q->rq.seq_len = (int)seq_len;
    q->rq.seed = (uint64_t)seed;
    q->rq.n_boot = (int)n_boot;
    return 0;
}

/* The model's side of a comparison: its curves on the dims the humans saw, cached (the
 * simulation is the expensive part; the comparison itself is arithmetic, and the answer
 * carries the human copy's current state, so it is rendered for every request). */
static const char MODEL_CURVES_KIND[] = "model_curves";

typedef struct model_curves_obj {
    ml_ref ref;
    ml_sim_curves curves;
    double accuracy;
} model_curves_obj;

static void model_curves_destroy(ml_ref *r) {
    model_curves_obj *o = (model_curves_obj *)r;
    ml_sim_curves_free(&o->curves);
    free(o);
}

static model_curves_obj *simulate_model(ml_app *app, ml_worker *w, const ml_sim_request *rq,
                                        const ml_request *req, ml_response *resp) {
    char key[ML_KEY_LEN], curves_key[ML_KEY_LEN];
    static const ml_view json = {ML_FORMAT_JSON, ML_ROWS_CURVE};
    ml_curves_key(rq, &json, curves_key);
    ml_key k;
    ml_key_begin(&k, MODEL_CURVES_KIND);
    ml_key_str(&k, "curves", curves_key);
    ml_key_finish(&k, key);
    ml_ref *r = ml_lru_get(app->results, key);
    if (r && r->kind == MODEL_CURVES_KIND) return (model_curves_obj *)r;
    ml_unref(r);
    ml_err err = {{0}};
    model_curves_obj *o = calloc(1, sizeof *o);
    ml_sim_result res;
    ml_sync_stop stop = {app, req, NULL};
    ml_sim_hooks hooks = ml_sync_hooks(&stop);
    int rc = o ? ml_app_simulate(app, w, rq, &hooks, &res, &err) : -1;
    if (rc != 0) {
        if (rc == 1)
            ml_respond_cancelled(req, resp);
        else
            ml_respond_error(resp, 500, "simulation_failed", "%s", o ? err.msg : "out of memory");
        free(o);
        return NULL;
    }
    o->accuracy = res.accuracy;
    rc = ml_sim_curves_compute(rq, &res, &o->curves, &err);
    ml_sim_result_free(&res);
    if (rc != 0) {
        free(o);
        ml_respond_error(resp, 500, "internal", "%s", err.msg);
        return NULL;
    }
    size_t bytes = sizeof *o + (size_t)(o->curves.n_groups + 1) * (size_t)rq->seq_len * 32;
    ml_ref_init(&o->ref, MODEL_CURVES_KIND, bytes, model_curves_destroy);
    ml_lru_put(app->results, key, &o->ref);
    return o;
}

/* The model plays the dimensions the humans saw (those the targets have). */
static model_curves_obj *model_side(ml_app *app, ml_worker *w, compare_query *q,
                                    const ml_human_curves *h, const ml_request *req,
                                    ml_response *resp) {
    ml_err err = {{0}};
    int *dims = NULL, n_dims = 0, missing = 0;
    if (ml_compare_dims(h, app->data.target_dims, &dims, &n_dims, &missing, &err) != 0) {
        ml_respond_error(resp, 500, "internal", "%s", err.msg);
        return NULL;
    }
    if (n_dims == 0) {
        free(dims);
        ml_respond_error(resp, 422, "no_common_dimensions",
                         "none of the human data's %d dimensions exists in the model's targets "
                         "(%d dimensions)", h->n_dims, app->data.target_dims);
        return NULL;
    }
    int rc = ml_sim_set_dims(&q->rq, dims, n_dims);
    free(dims);
    if (rc != 0) {
        ml_respond_error(resp, 500, "internal", "out of memory");
        return NULL;
    }
    return simulate_model(app, w, &q->rq, req, resp);
}

static void compare(ml_app *app, ml_worker *w, compare_query *q, const ml_human_curves *h,
                    const ml_human_status *st, const ml_request *req, ml_response *resp) {
    model_curves_obj *m = model_side(app, w, q, h, req, resp);
    if (!m) return;
    ml_err err = {{0}};
    ml_comparison cmp;
    if (ml_compare(&m->curves, m->accuracy, h, (int)q->max_trial + 1, &cmp, &err) != 0 ||
        ml_compare_bars(&cmp, q->rq.n_boot, q->rq.seed, &err) != 0) {
        ml_comparison_free(&cmp);
        ml_respond_error(resp, 500, "internal", "%s", err.msg);
    } else if (q->view.format == ML_FORMAT_CSV) {
        ml_buf out = {0};
        ml_csv c;
        if (q->view.rows == ML_ROWS_SUMMARY) {
            ml_csv_comparison_summary(&c, &out, &cmp);
        } else {
            ml_csv_curves_begin(&c, &out);
            ml_csv_comparison(&c, &cmp);
        }
        ml_comparison_free(&cmp);
        ml_respond_csv(resp, 200, &c);
    } else {
        ml_warnings warn = {0};
        ml_warn_seq_len(&warn, app, q->rq.seq_len);
        ml_buf out = {0};
        ml_jw jw;
        ml_jw_init(&jw, &out);
        ml_render_comparison(&jw, app, &q->rq, (int)q->max_trial, &cmp, h, st, &warn);
        ml_comparison_free(&cmp);
        ml_respond_writer(resp, 200, &jw);
    }
    ml_unref(&m->ref);
}

/* rows=trials: the notebook's all_data, the model's episodes on the humans' dimensions and
 * the humans' rows, cached by the simulation's key and the human copy's content. */
static void compare_trials(ml_app *app, ml_worker *w, compare_query *q, const ml_human_curves *h,
                           const ml_human_snapshot *snap, const ml_request *req,
                           ml_response *resp) {
    ml_err err = {{0}};
    int *dims = NULL, n_dims = 0, missing = 0;
    if (ml_compare_dims(h, app->data.target_dims, &dims, &n_dims, &missing, &err) != 0 ||
        ml_sim_set_dims(&q->rq, dims, n_dims) != 0) {
        free(dims);
        ml_respond_error(resp, 500, "internal", "out of memory");
        return;
    }
    free(dims);
    if (n_dims == 0) {
        ml_respond_error(resp, 422, "no_common_dimensions",
                         "none of the human data's %d dimensions exists in the model's targets "
                         "(%d dimensions)", h->n_dims, app->data.target_dims);
        return;
    }
    char key[ML_KEY_LEN], curves_key[ML_KEY_LEN];
    ml_curves_key(&q->rq, &q->view, curves_key);
    ml_key k;
    ml_key_begin(&k, "compare_trials");
    ml_key_str(&k, "curves", curves_key);
    ml_key_str(&k, "human", snap->sha256);
    ml_key_int(&k, "max_trial", q->max_trial);
    ml_key_finish(&k, key);
    if (ml_answer_from_cache(app, key, resp)) {
        resp->content_type = ML_CT_CSV;
        return;
    }
    ml_sim_result res;
    ml_sync_stop stop = {app, req, NULL};
    ml_sim_hooks hooks = ml_sync_hooks(&stop);
    int rc = ml_app_simulate(app, w, &q->rq, &hooks, &res, &err);
    if (rc == 1) {
        ml_respond_cancelled(req, resp);
        return;
    }
    if (rc != 0) {
        ml_respond_error(resp, 500, "simulation_failed", "%s", err.msg);
        return;
    }
    ml_buf out = {0};
    ml_csv c;
    ml_csv_trials_begin(&c, &out);
    ml_csv_trials_model(&c, &res);
    ml_csv_trials_human(&c, &snap->data, (int)q->max_trial, NULL, 0);
    ml_sim_result_free(&res);
    ml_blob *b = ml_csv_finish(&c) == 0 ? ml_blob_new(out.data, out.len) : NULL;
    ml_buf_free(&out);
    if (!b) {
        ml_respond_error(resp, 500, "internal", "out of memory building the table");
        return;
    }
    ml_lru_put_blob(app->results, key, b);
    ml_respond_blob(resp, 200, ML_CT_CSV, b);
    ml_blob_unref(b);
}

void ml_h_compare(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    compare_query q;
    if (parse_compare(app, req, &q, resp) != 0) goto done;
    ml_human_status st;
    int waiting;
    ml_human_snapshot *snap = ml_human_copy(app, req, &st, &waiting, resp);
    if (!snap) goto done;
    ml_err err = {{0}};
    human_curves_obj *o = human_curves(app, snap, (int)q.max_trial, q.rq.seed, q.rq.n_boot, &err);
    if (!o) {
        ml_human_snapshot_unref(snap);
        ml_respond_error(resp, 500, "internal", "%s", err.msg);
        goto done;
    }
    if (q.view.format == ML_FORMAT_CSV && q.view.rows == ML_ROWS_TRIALS)
        compare_trials(app, w, &q, &o->c, snap, req, resp);
    else
        compare(app, w, &q, &o->c, &st, req, resp);
    ml_human_snapshot_unref(snap);
    ml_unref(&o->ref);
done:
    ml_sim_request_free(&q.rq);
}
