/* The learning-curve answers: the simulation's and the curve shape every answer shares. */
#include <stdarg.h>
#include <stdio.h>

#include "http/render/render.h"

void ml_warn(ml_warnings *w, const char *fmt, ...) {
    if (w->n == ML_MAX_WARNINGS) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->text[w->n++], sizeof w->text[0], fmt, ap);
    va_end(ap);
}

void ml_warn_seq_len(ml_warnings *w, const ml_app *app, int seq_len) {
    const ml_model *m = &app->model;
    int trained = m->trained_seq_len;
    if (trained > 0 && seq_len > trained)
        ml_warn(w, "seq_len=%d is beyond the %d trials the model was trained on: trials "
                   "%d..%d extrapolate its positions", seq_len, trained, trained, seq_len - 1);
    /* the later generation's LSTM runs past its config's sl (the transformer stops there) */
    if (trained <= 0 && m->generation != ML_GEN_SEED &&
        ml_model_feedback(m) == ML_FEEDBACK_MAGNITUDES && m->meta.sl > 0 && seq_len > m->meta.sl)
        ml_warn(w, "seq_len=%d is beyond the sl=%d trials of the model's config: trials "
                   "%d..%d are longer than any sequence it was trained on", seq_len, m->meta.sl,
                m->meta.sl, seq_len - 1);
}

void ml_render_warnings(ml_jw *w, const ml_warnings *warn) {
    ml_jw_key(w, "warnings");
    ml_jw_array(w);
    for (int i = 0; warn && i < warn->n; i++) ml_jw_string(w, warn->text[i]);
    ml_jw_array_end(w);
}

static void values(ml_jw *w, const double *v, const int64_t *n, int n_trials) {
    ml_jw_array(w);
    for (int t = 0; t < n_trials; t++) {
        if (n[t] > 0)
            ml_jw_double_or_null(w, v[t]);
        else
            ml_jw_null(w);
    }
    ml_jw_array_end(w);
}

void ml_render_curve(ml_jw *w, const ml_curve *c, int n_trials, int n_boot, int with_n) {
    if (n_trials > c->n_trials) n_trials = c->n_trials;
    ml_jw_object(w);
    ml_jw_key(w, "p_correct");
    values(w, c->p_correct, c->n, n_trials);
    ml_jw_key(w, "ci_low");
    if (n_boot > 0)
        values(w, c->ci_low, c->n, n_trials);
    else
        ml_jw_null(w);
    ml_jw_key(w, "ci_high");
    if (n_boot > 0)
        values(w, c->ci_high, c->n, n_trials);
    else
        ml_jw_null(w);
    if (with_n) {
        ml_jw_key(w, "n");
        ml_jw_array(w);
        for (int t = 0; t < n_trials; t++) ml_jw_int(w, c->n[t]);
        ml_jw_array_end(w);
    }
    ml_jw_object_end(w);
}

/* The later generation's magnitude head: {"mse": [per trial], "r2"}. */
static void render_magnitude(ml_jw *w, const ml_sim_group *g, int n_trials) {
    ml_jw_key(w, "magnitude");
    if (!g->mse || g->episodes == 0) {
        ml_jw_null(w);
        return;
    }
    ml_jw_object(w);
    ml_jw_key(w, "mse");
    values(w, g->mse, g->curve.n, n_trials);
    ml_jw_key(w, "r2");
    ml_jw_double_or_null(w, g->r2);
    ml_jw_object_end(w);
}

static void render_episode(ml_jw *w, const ml_sim_result *res, int e) {
    size_t S = (size_t)res->seq_len, row = (size_t)e * S;
    size_t L = res->length ? (size_t)res->length[e] : S;
    ml_jw_object(w);
    ml_jw_kint(w, "episode", e);
    ml_jw_kint(w, "dimension", res->dim[e]);
    if (res->magnitudes) ml_jw_kint(w, "length", (int64_t)L);
    ml_jw_key(w, "items");
    ml_jw_ints(w, res->items + row, L);
    ml_jw_key(w, "labels");
    ml_jw_ints(w, res->labels + row, L);
    ml_jw_key(w, "probabilities");
    ml_jw_array(w);
    for (size_t t = 0; t < L; t++) ml_jw_float(w, ml_sim_probability(res->logits[row + t]));
    ml_jw_array_end(w);
    ml_jw_key(w, "correct");
    ml_jw_array(w);
    for (size_t t = 0; t < L; t++) ml_jw_int(w, res->correct[row + t]);
    ml_jw_array_end(w);
    if (res->magnitudes) {
        ml_jw_key(w, "magnitudes");
        ml_jw_floats(w, res->magnitudes + row, L);
        ml_jw_key(w, "predicted_magnitudes");
        ml_jw_floats(w, res->pred_magnitudes + row, L);
    }
    ml_jw_object_end(w);
}

/* What the later generation's answer adds about the task it played. */
static void render_task(ml_jw *w, const ml_app *app, const ml_sim_result *res) {
    const ml_model *m = &app->model;
    ml_jw_kstring(w, "task", "function_dataset");
    ml_jw_kstring(w, "feedback",
                  ml_model_feedback(m) == ML_FEEDBACK_MAGNITUDES ? "magnitudes" : "none");
    ml_jw_key(w, "head_column");
    if (ml_model_logit_dims(m) > 1)
        ml_jw_string(w, "dimension");
    else
        ml_jw_int(w, 0);
    ml_jw_key(w, "trials");
    ml_jw_int(w, res->trials);
    if (ml_model_feedback(m) == ML_FEEDBACK_NONE)
        ml_jw_kstring(w, "note",
                      "this static_linear model sees no sequence and no feedback: every trial is "
                      "predicted from its item alone, so its curve is flat up to sampling noise "
                      "(the no-learning baseline beside the sequence models)");
}

void ml_render_sim(ml_jw *w, const ml_app *app, const ml_sim_request *rq,
                   const ml_sim_result *res, const ml_sim_curves *curves,
                   const ml_warnings *warn) {
    int later = res->magnitudes != NULL;
    ml_jw_object(w);
    ml_jw_kint(w, "episodes", rq->episodes);
    ml_jw_kint(w, "seq_len", rq->seq_len);
    ml_jw_key(w, "seed");
    ml_jw_int(w, (int64_t)rq->seed);
    ml_jw_key(w, "dims");
    ml_jw_ints(w, rq->dims, (size_t)rq->n_dims);
    ml_jw_kbool(w, "standardize", rq->standardize);
    ml_jw_kint(w, "batch_size", rq->batch_size);
    ml_jw_kint(w, "n_boot", rq->n_boot);
    ml_jw_kdouble(w, "ci_level", ML_CI_LEVEL);
    ml_jw_kbool(w, "synthetic", app->model.synthetic);
    if (later) render_task(w, app, res);
    ml_jw_kdouble(w, "accuracy", res->accuracy);
    ml_jw_kdouble(w, "loss", res->loss);
    ml_jw_key(w, "curve");
    ml_render_curve(w, &curves->overall.curve, rq->seq_len, rq->n_boot, later);
    if (later) render_magnitude(w, &curves->overall, rq->seq_len);
    ml_jw_key(w, "by_dimension");
    ml_jw_array(w);
    for (int g = 0; g < curves->n_groups; g++) {
        const ml_sim_group *grp = &curves->by_dim[g];
        ml_jw_object(w);
        ml_jw_kint(w, "dimension", grp->dimension);
        ml_jw_kint(w, "episodes", grp->episodes);
        ml_jw_key(w, "accuracy");
        ml_jw_double_or_null(w, grp->accuracy);
        ml_jw_key(w, "curve");
        if (grp->episodes == 0) /* fewer episodes than dims: nothing to report */
            ml_jw_null(w);
        else
            ml_render_curve(w, &grp->curve, rq->seq_len, rq->n_boot, later);
        if (later) render_magnitude(w, grp, rq->seq_len);
        ml_jw_object_end(w);
    }
    ml_jw_array_end(w);
    ml_render_warnings(w, warn);
    if (rq->include_episodes) {
        ml_jw_key(w, "episodes_detail");
        ml_jw_array(w);
        for (int e = 0; e < res->episodes; e++) render_episode(w, res, e);
        ml_jw_array_end(w);
    }
    ml_jw_object_end(w);
}
