/* The human data's answers: where the copy came from, its state, the humans' curves, and the
 * comparison with the model. */
#include <stdio.h>

#include "http/render/render.h"
#include "util/timefmt.h"

static void time_or_null(ml_jw *w, const char *key, time_t t) {
    ml_jw_key(w, key);
    if (!t) {
        ml_jw_null(w);
        return;
    }
    char s[ML_RFC3339_LEN];
    ml_rfc3339(t, s);
    ml_jw_string(w, s);
}

static void last_error(ml_jw *w, const ml_human_status *st) {
    ml_jw_key(w, "last_error");
    if (!st->last_error[0]) {
        ml_jw_null(w);
        return;
    }
    ml_jw_object(w);
    ml_jw_kstring(w, "code", ml_fetch_code_name(st->code));
    ml_jw_kstring(w, "message", st->last_error);
    time_or_null(w, "at", st->last_error_at);
    ml_jw_object_end(w);
}

void ml_render_human_source(ml_jw *w, const ml_human_status *st) {
    ml_jw_object(w);
    ml_jw_kstring(w, "url", st->url);
    time_or_null(w, "fetched_at", st->fetched_at);
    time_or_null(w, "validated_at", st->validated_at);
    ml_jw_kint(w, "bytes", (int64_t)st->bytes);
    ml_jw_kstring(w, "sha256", st->sha256);
    ml_jw_kbool(w, "from_cache", st->from_cache);
    ml_jw_kbool(w, "stale", st->stale);
    ml_jw_kstring(w, "outcome", ml_human_outcome_name(st->outcome));
    last_error(w, st);
    ml_jw_object_end(w);
}

void ml_render_human_status(ml_jw *w, const ml_human_status *st) {
    ml_jw_object(w);
    ml_jw_kstring(w, "url", st->url);
    ml_jw_kbool(w, "available", st->available);
    ml_jw_key(w, "unavailable");
    if (st->available)
        ml_jw_null(w);
    else
        ml_jw_string(w, st->unavailable);
    ml_jw_kbool(w, "downloading", st->fetching);
    ml_jw_kbool(w, "cached", st->cached);
    time_or_null(w, "fetched_at", st->fetched_at);
    time_or_null(w, "validated_at", st->validated_at);
    ml_jw_key(w, "bytes");
    if (st->cached)
        ml_jw_int(w, (int64_t)st->bytes);
    else
        ml_jw_null(w);
    ml_jw_key(w, "sha256");
    if (st->cached)
        ml_jw_string(w, st->sha256);
    else
        ml_jw_null(w);
    ml_jw_kbool(w, "stale", st->stale);
    last_error(w, st);
    ml_jw_key(w, "notice");
    if (st->notice[0])
        ml_jw_string(w, st->notice);
    else
        ml_jw_null(w);
    if (st->retry_after > 0) ml_jw_kint(w, "retry_after_seconds", st->retry_after);
    if (st->next_refresh_at) time_or_null(w, "next_refresh_at", st->next_refresh_at);
    ml_jw_object_end(w);
}

void ml_render_human_curves(ml_jw *w, const ml_human_curves *c, const ml_human_status *st) {
    ml_jw_object(w);
    ml_jw_key(w, "source");
    ml_render_human_source(w, st);
    ml_jw_kint(w, "participants", (int64_t)c->overall.participants);
    ml_jw_kint(w, "rows", (int64_t)c->overall.rows);
    ml_jw_kint(w, "max_trial", c->max_trial);
    ml_jw_kint(w, "n_boot", c->n_boot);
    ml_jw_kdouble(w, "level", ML_CI_LEVEL);
    ml_jw_key(w, "seed");
    ml_jw_int(w, (int64_t)c->seed);
    ml_jw_key(w, "curve");
    ml_render_curve(w, &c->overall.curve, c->n_trials, c->n_boot, 1);
    ml_jw_key(w, "by_dimension");
    ml_jw_array(w);
    for (int j = 0; j < c->n_dims; j++) {
        const ml_human_curve *dc = &c->by_dim[j];
        ml_jw_object(w);
        ml_jw_kint(w, "dimension", dc->dimension);
        ml_jw_kint(w, "participants", (int64_t)dc->participants);
        ml_jw_kint(w, "rows", (int64_t)dc->rows);
        ml_jw_key(w, "curve");
        ml_render_curve(w, &dc->curve, c->n_trials, c->n_boot, 1);
        ml_jw_object_end(w);
    }
    ml_jw_array_end(w);
    ml_jw_object_end(w);
}

static void summary(ml_jw *w, const ml_curve_comparison *s) {
    ml_jw_object(w);
    ml_jw_key(w, "model_mean_p_correct");
    ml_jw_double_or_null(w, s->mean_a);
    ml_jw_key(w, "human_mean_p_correct");
    ml_jw_double_or_null(w, s->mean_b);
    ml_jw_key(w, "rmse");
    ml_jw_double_or_null(w, s->rmse);
    ml_jw_key(w, "pearson_r");
    ml_jw_double_or_null(w, s->pearson_r);
    ml_jw_kint(w, "trials_compared", s->trials_compared);
    ml_jw_object_end(w);
}

static void bar(ml_jw *w, const char *key, const ml_bar *b) {
    ml_jw_key(w, key);
    ml_jw_object(w);
    ml_jw_key(w, "mean");
    ml_jw_double_or_null(w, b->mean);
    ml_jw_key(w, "ci_low");
    ml_jw_double_or_null(w, b->ci_low);
    ml_jw_key(w, "ci_high");
    ml_jw_double_or_null(w, b->ci_high);
    ml_jw_kint(w, "n", b->n);
    ml_jw_object_end(w);
}

/* {"model": curve, "human": curve, "summary": {...}, "bars": {...}, ...}; the caller closes
 * the object. */
static void side_by_side(ml_jw *w, const ml_compare_group *g, int n_trials, int n_boot) {
    ml_jw_object(w);
    ml_jw_key(w, "model");
    ml_render_curve(w, g->model, n_trials, n_boot, 0);
    ml_jw_key(w, "human");
    ml_render_curve(w, g->human, n_trials, n_boot, 0);
    ml_jw_key(w, "summary");
    summary(w, &g->summary);
    ml_jw_key(w, "bars"); /* the bar plot: mean over single trials, bootstrap interval */
    ml_jw_object(w);
    bar(w, "model", &g->model_bar);
    bar(w, "human", &g->human_bar);
    ml_jw_object_end(w);
}

void ml_render_comparison(ml_jw *w, const ml_app *app, const ml_sim_request *rq, int max_trial,
                          const ml_comparison *cmp, const ml_human_curves *h,
                          const ml_human_status *st, const ml_warnings *warn) {
    ml_jw_object(w);
    ml_jw_kint(w, "episodes", rq->episodes);
    ml_jw_kint(w, "seq_len", rq->seq_len);
    ml_jw_key(w, "seed");
    ml_jw_int(w, (int64_t)rq->seed);
    ml_jw_kint(w, "max_trial", max_trial);
    ml_jw_kint(w, "trials_compared", cmp->n_trials);
    char replay[96]; /* the same trials replayed on every participant's own sequence */
    snprintf(replay, sizeof replay, "/v1/human/replay?max_trial=%d", max_trial);
    ml_jw_kstring(w, "replay_url", replay);
    ml_jw_kbool(w, "model_synthetic", app->model.synthetic);
    ml_jw_kdouble(w, "model_accuracy", cmp->model_accuracy);
    ml_jw_key(w, "overall");
    side_by_side(w, &cmp->overall, cmp->n_trials, rq->n_boot);
    ml_jw_kint(w, "human_participants", (int64_t)cmp->overall.human_participants);
    ml_jw_object_end(w);
    ml_jw_key(w, "by_dimension");
    ml_jw_array(w);
    for (int i = 0; i < cmp->n_groups; i++) {
        const ml_compare_group *g = &cmp->by_dim[i];
        side_by_side(w, g, cmp->n_trials, rq->n_boot);
        ml_jw_kint(w, "dimension", g->dimension);
        ml_jw_kint(w, "model_episodes", g->model_episodes);
        ml_jw_kint(w, "human_participants", (int64_t)g->human_participants);
        ml_jw_object_end(w);
    }
    ml_jw_array_end(w);
    ml_jw_key(w, "notes");
    ml_jw_array(w);
    char note[256];
    for (int j = 0; j < h->n_dims; j++)
        if (h->by_dim[j].dimension >= app->data.target_dims) {
            snprintf(note, sizeof note,
                     "human dimension %d has no counterpart: the targets have %d dimensions",
                     h->by_dim[j].dimension, app->data.target_dims);
            ml_jw_string(w, note);
        }
    if (app->model.synthetic)
        ml_jw_string(w, "the model and its items are the SYNTHETIC demo bundle: its dimensions "
                        "are not SPoSE dimensions, so this comparison only exercises the "
                        "machinery");
    if (cmp->n_trials < max_trial + 1) {
        snprintf(note, sizeof note,
                 "the humans' data ends at trial %d: trials %d..%d of the model are not compared",
                 cmp->n_trials - 1, cmp->n_trials, max_trial);
        ml_jw_string(w, note);
    }
    ml_jw_array_end(w);
    ml_render_warnings(w, warn);
    ml_jw_key(w, "source");
    ml_render_human_source(w, st);
    ml_jw_object_end(w);
}
