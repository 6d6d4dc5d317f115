/* The human learning data (fetched on first use, cached on disk) and the model-versus-human
 * comparison. Everything here may wait on the network, so it runs on compute workers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/human_store.h"
#include "metalign/human_curves.h"
#include "http/request.h"
#include "http/routes.h"
#include "engine/simulate.h"
#include "metalign/stats.h"

json_t *ml_human_info_json(ml_app *app) {
    ml_human_status st;
    ml_human_status_get(app->human, &st);
    return ml_human_status_json(&st);
}

void ml_human_metrics(ml_app *app, ml_buf *out) { ml_human_render_metrics(app->human, out); }

/* 503 with the upstream's reason when there is no copy to serve. */
static ml_human_snapshot *get_snapshot(ml_app *app, ml_human_status *st, ml_response *resp) {
    ml_human_snapshot *snap = NULL;
    ml_err err = {{0}};
    if (ml_human_get(app->human, &snap, st, &err) != 0) {
        ml_respond_error(resp, 503, ml_fetch_code_name(st->code),
                         "the human data is unavailable and no copy is cached: %s", err.msg);
        return NULL;
    }
    return snap;
}

/* The curves over trials 0..max_trial as JSON, cached by content, trial range and seed. */
static json_t *human_curves(ml_app *app, const ml_human_snapshot *snap, int max_trial,
                            uint64_t seed, int n_boot, ml_human_curves *keep, ml_err *err) {
    char key[160];
    snprintf(key, sizeof key, "human|%s|%d|%llu|%d", snap->sha256, max_trial,
             (unsigned long long)seed, n_boot);
    ml_blob *b = keep ? NULL : ml_lru_get(app->results, key);
    if (b) {
        json_t *doc = json_loadb(b->data, b->len, 0, NULL);
        ml_blob_unref(b);
        if (doc) return doc;
    }
    ml_human_curves c;
    if (ml_human_curves_compute(&snap->data, max_trial, seed, n_boot, ML_HUMAN_DEFAULT_LEVEL, &c,
                                err) != 0)
        return NULL;
    json_t *doc = ml_human_curves_json(&c);
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    if (text) {
        b = ml_blob_new(text, strlen(text));
        ml_lru_put(app->results, key, b);
        ml_blob_unref(b);
        free(text);
    }
    if (keep)
        *keep = c;
    else
        ml_human_curves_free(&c);
    if (!doc) ml_errf(err, "out of memory");
    return doc;
}

void ml_h_human_curves(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    (void)w;
    static const char *const args[] = {"max_trial", "seed", "n_boot", NULL};
    long long max_trial = 99, seed = 0, n_boot = ML_HUMAN_DEFAULT_N_BOOT;
    if (ml_request_check_args(req, args, resp) != 0 ||
        ml_arg_int(req, "max_trial", 0, ML_HUMAN_MAX_TRIAL_LIMIT, &max_trial, resp) != 0 ||
        ml_arg_int(req, "seed", 0, (1LL << 62), &seed, resp) != 0 ||
        ml_arg_int(req, "n_boot", 1, 100000, &n_boot, resp) != 0)
        return;
    ml_human_status st;
    ml_human_snapshot *snap = get_snapshot(app, &st, resp);
    if (!snap) return;
    ml_err err = {{0}};
    json_t *doc = human_curves(app, snap, (int)max_trial, (uint64_t)seed, (int)n_boot, NULL, &err);
    ml_human_snapshot_release(snap);
    if (!doc) {
        ml_respond_error(resp, 500, "internal", "%s", err.msg);
        return;
    }
    json_object_set_new(doc, "source", ml_human_source_json(&st));
    ml_respond_json(resp, 200, doc);
}

void ml_h_human_refresh(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    (void)w;
    static const char *const args[] = {NULL};
    if (ml_request_check_args(req, args, resp) != 0) return;
    ml_human_status st;
    ml_err err = {{0}};
    int rc = ml_human_refresh(app->human, &st, &err);
    if (rc != 0 && !st.cached) {
        ml_respond_error(resp, 503, ml_fetch_code_name(st.code),
                         "the refresh failed and no copy is cached: %s", err.msg);
        return;
    }
    json_t *doc = json_pack("{s:b,s:s,s:o}", "refreshed", rc == 0, "outcome",
                            ml_human_outcome_name(st.outcome), "source", ml_human_source_json(&st));
    if (rc != 0) /* the good copy is kept and still served; say why it could not be renewed */
        json_object_set_new(doc, "error",
                            json_pack("{s:s,s:s}", "code", ml_fetch_code_name(st.code), "message",
                                      err.msg));
    ml_respond_json(resp, 200, doc);
}

/* ---- GET /v1/compare/learning-curves ---- */

typedef struct curve_view { /* one curve as arrays over trials, NaN where undefined */
    int n;
    double p[4096], lo[4096], hi[4096];
    int64_t count[4096]; /* observations at each trial (model: episodes) */
} curve_view;

static int model_curve_view(json_t *curve, int episodes, int n_trials, curve_view *v) {
    json_t *p = json_object_get(curve, "p_correct"), *lo = json_object_get(curve, "ci_low"),
           *hi = json_object_get(curve, "ci_high");
    if (json_array_size(p) < (size_t)n_trials) return -1;
    v->n = n_trials;
    for (int t = 0; t < n_trials; t++) {
        v->p[t] = json_number_value(json_array_get(p, (size_t)t));
        v->lo[t] = json_number_value(json_array_get(lo, (size_t)t));
        v->hi[t] = json_number_value(json_array_get(hi, (size_t)t));
        v->count[t] = episodes;
    }
    return 0;
}

static void human_curve_view(const ml_human_curve *c, int n_trials, curve_view *v) {
    v->n = n_trials;
    for (int t = 0; t < n_trials; t++) {
        v->p[t] = c->p_correct[t];
        v->lo[t] = c->ci_low[t];
        v->hi[t] = c->ci_high[t];
        v->count[t] = c->n[t];
    }
}

static json_t *num_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *curve_json(const curve_view *v) {
    json_t *p = json_array(), *lo = json_array(), *hi = json_array();
    for (int t = 0; t < v->n; t++) {
        json_array_append_new(p, num_or_null(v->p[t]));
        json_array_append_new(lo, num_or_null(v->lo[t]));
        json_array_append_new(hi, num_or_null(v->hi[t]));
    }
    return json_pack("{s:o,s:o,s:o}", "p_correct", p, "ci_low", lo, "ci_high", hi);
}

/* Means weighted by observations (what the notebook's bar plot shows), and RMSE and Pearson
 * r over the trials where both curves have data. */
static json_t *summary_json(const curve_view *m, const curve_view *h) {
    double *a = malloc(sizeof(double) * (size_t)m->n), *b = malloc(sizeof(double) * (size_t)m->n);
    double mw = 0, mn = 0, hw = 0, hn = 0;
    size_t k = 0;
    for (int t = 0; a && b && t < m->n; t++) {
        if (m->count[t] > 0 && isfinite(m->p[t])) {
            mw += m->p[t] * (double)m->count[t];
            mn += (double)m->count[t];
        }
        if (h->count[t] > 0 && isfinite(h->p[t])) {
            hw += h->p[t] * (double)h->count[t];
            hn += (double)h->count[t];
        }
        if (m->count[t] > 0 && h->count[t] > 0 && isfinite(m->p[t]) && isfinite(h->p[t])) {
            a[k] = m->p[t];
            b[k] = h->p[t];
            k++;
        }
    }
    json_t *s = json_pack("{s:o,s:o,s:o,s:o,s:I}", "model_mean_p_correct",
                          num_or_null(mn > 0 ? mw / mn : NAN), "human_mean_p_correct",
                          num_or_null(hn > 0 ? hw / hn : NAN), "rmse",
                          num_or_null(k ? ml_rmse(a, b, k) : NAN), "pearson_r",
                          num_or_null(k > 1 ? ml_pearson(a, b, k) : NAN), "trials_compared",
                          (json_int_t)k);
    free(a);
    free(b);
    return s;
}

static json_t *side_by_side(const curve_view *m, const curve_view *h) {
    return json_pack("{s:o,s:o,s:o}", "model", curve_json(m), "human", curve_json(h), "summary",
                     summary_json(m, h));
}

typedef struct compare_query {
    ml_sim_request rq;
    long long max_trial;
} compare_query;

static int parse_compare(const ml_app *app, const ml_request *req, compare_query *q,
                         ml_response *resp) {
    static const char *const args[] = {"episodes", "seq_len", "seed", "standardize", "n_boot",
                                       "max_trial", NULL};
    if (ml_request_check_args(req, args, resp) != 0) return -1;
    ml_sim_defaults(&q->rq);
    long long episodes = q->rq.episodes, seq_len = q->rq.seq_len, seed = 0, n_boot = q->rq.n_boot;
    int max_len = app->max_seq < app->data.n_items ? app->max_seq : app->data.n_items;
    if (max_len > 4096) max_len = 4096;
    if (ml_arg_int(req, "episodes", 1, 100000, &episodes, resp) != 0 ||
        ml_arg_int(req, "seq_len", 1, max_len, &seq_len, resp) != 0 ||
        ml_arg_int(req, "seed", 0, (1LL << 62), &seed, resp) != 0 ||
        ml_arg_int(req, "n_boot", 1, 100000, &n_boot, resp) != 0 ||
        ml_arg_bool(req, "standardize", &q->rq.standardize, resp) != 0)
        return -1;
    q->max_trial = seq_len - 1; /* the notebook keeps trial <= 99 for 100 model trials */
    if (ml_arg_int(req, "max_trial", 0, seq_len - 1, &q->max_trial, resp) != 0) return -1;
    if (episodes * seq_len > 20000000LL) {
        ml_respond_error(resp, 400, "too_large",
                         "episodes x seq_len = %lld trials is more than one request may simulate",
                         episodes * seq_len);
        return -1;
    }
    q->rq.episodes = (int)episodes;
    q->rq.seq_len = (int)seq_len;
    q->rq.seed = (uint64_t)seed;
    q->rq.n_boot = (int)n_boot;
    return 0;
}

void ml_h_compare(ml_app *app, ml_worker *w, const ml_request *req, ml_response *resp) {
    compare_query q;
    if (parse_compare(app, req, &q, resp) != 0) return;
    ml_human_status st;
    ml_human_snapshot *snap = get_snapshot(app, &st, resp);
    if (!snap) return;
    ml_err err = {{0}};
    ml_human_curves hc;
    json_t *hdoc = human_curves(app, snap, (int)q.max_trial, q.rq.seed, q.rq.n_boot, &hc, &err);
    ml_human_snapshot_release(snap);
    if (!hdoc) {
        ml_respond_error(resp, 500, "internal", "%s", err.msg);
        return;
    }
    json_decref(hdoc);

    /* The model plays the dimensions the humans saw (those the targets have). */
    json_t *notes = json_array();
    q.rq.n_dims = 0;
    for (int i = 0; i < hc.n_dims && q.rq.n_dims < ML_SIM_MAX_DIMS; i++) {
        if (hc.by_dim[i].dimension < app->data.target_dims)
            q.rq.dims[q.rq.n_dims++] = hc.by_dim[i].dimension;
        else
            json_array_append_new(notes, json_sprintf("human dimension %d has no counterpart: "
                                                      "the targets have %d dimensions",
                                                      hc.by_dim[i].dimension,
                                                      app->data.target_dims));
    }
    if (q.rq.n_dims == 0) {
        ml_human_curves_free(&hc);
        json_decref(notes);
        ml_respond_error(resp, 422, "no_common_dimensions",
                         "none of the human data's dimensions exists in the model's targets");
        return;
    }
    int rc = 0;
    ml_blob *b = ml_sim_answer(app, w, &q.rq, NULL, &rc, &err);
    json_t *mdoc = b ? json_loadb(b->data, b->len, 0, NULL) : NULL;
    ml_blob_unref(b);
    if (!mdoc) {
        ml_human_curves_free(&hc);
        json_decref(notes);
        ml_respond_error(resp, 500, "simulation_failed", "%s", err.msg[0] ? err.msg : "out of memory");
        return;
    }
    int n_trials = (int)q.max_trial + 1;
    curve_view *mv = malloc(sizeof *mv), *hv = malloc(sizeof *hv);
    json_t *doc = NULL;
    if (mv && hv &&
        model_curve_view(json_object_get(mdoc, "curve"), q.rq.episodes, n_trials, mv) == 0) {
        human_curve_view(&hc.overall, n_trials, hv);
        doc = json_pack("{s:i,s:i,s:I,s:i,s:b,s:f,s:o}", "episodes", q.rq.episodes, "seq_len",
                        q.rq.seq_len, "seed", (json_int_t)q.rq.seed, "max_trial",
                        (int)q.max_trial, "model_synthetic", app->model.synthetic,
                        "model_accuracy", json_number_value(json_object_get(mdoc, "accuracy")),
                        "overall", side_by_side(mv, hv));
        json_object_set_new(json_object_get(doc, "overall"), "human_participants",
                            json_integer((json_int_t)hc.overall.participants));
        json_t *dims = json_array(), *by_model = json_object_get(mdoc, "by_dimension");
        for (size_t i = 0; i < json_array_size(by_model); i++) {
            json_t *md = json_array_get(by_model, i);
            int dim = (int)json_integer_value(json_object_get(md, "dimension"));
            int eps = (int)json_integer_value(json_object_get(md, "episodes"));
            const ml_human_curve *h = NULL;
            for (int k = 0; k < hc.n_dims; k++)
                if (hc.by_dim[k].dimension == dim) h = &hc.by_dim[k];
            if (!h || eps == 0 ||
                model_curve_view(json_object_get(md, "curve"), eps, n_trials, mv) != 0)
                continue;
            human_curve_view(h, n_trials, hv);
            json_t *e = side_by_side(mv, hv);
            json_object_set_new(e, "dimension", json_integer(dim));
            json_object_set_new(e, "model_episodes", json_integer(eps));
            json_object_set_new(e, "human_participants", json_integer((json_int_t)h->participants));
            json_array_append_new(dims, e);
        }
        json_object_set_new(doc, "by_dimension", dims);
        if (app->model.synthetic)
            json_array_append_new(notes, json_string(
                "the model and its items are the SYNTHETIC demo bundle: its dimensions are not "
                "SPoSE dimensions, so this comparison only exercises the machinery"));
        json_object_set_new(doc, "notes", notes);
        notes = NULL;
        json_object_set_new(doc, "source", ml_human_source_json(&st));
    }
    free(mv);
    free(hv);
    json_decref(notes);
    json_decref(mdoc);
    ml_human_curves_free(&hc);
    if (!doc) {
        ml_respond_error(resp, 500, "internal", "could not assemble the comparison");
        return;
    }
    ml_respond_json(resp, 200, doc);
}
