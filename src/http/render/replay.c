/* GET /v1/human/replay: the replay's result (metalign/replay.h) as JSON through the one
 * writer, and as a tidy CSV table through the one CSV writer (one row per trial with
 * include_trials, else one per participant sequence). Undefined figures (no trials, no
 * baseline, a constant curve) are null in JSON and empty cells in CSV (pandas reads both as
 * NaN); never a number. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "http/render/render.h"
#include "util/csv_writer.h"

#define NOTE_MAX 512

/* ---- JSON ------------------------------------------------------------------------------ */

static void dnull(ml_jw *w, const char *key, double v) {
    ml_jw_key(w, key);
    ml_jw_double_or_null(w, v);
}

static const char *bound_name(int at_bound) {
    return at_bound < 0 ? "lower" : at_bound > 0 ? "upper" : NULL;
}

static void at_bound(ml_jw *w, const ml_replay_fit *f, int per_seq) {
    if (!per_seq) return;
    ml_jw_key(w, "temperature_at_bound");
    const char *b = isnan(f->temperature) ? NULL : bound_name(f->at_bound);
    if (b)
        ml_jw_string(w, b);
    else
        ml_jw_null(w);
}

/* {"temperature", "nll", "nll_t1", "pseudo_r2", "agreement", "accuracy"}, or null when the
 * baseline was not asked for. per_seq: one sequence (its own temperature). */
static void baseline_fit(ml_jw *w, const ml_replay_fit *f, int asked, int per_seq) {
    ml_jw_key(w, "baseline");
    if (!asked) {
        ml_jw_null(w);
        return;
    }
    ml_jw_object(w);
    if (per_seq) dnull(w, "temperature", f->temperature);
    at_bound(w, f, per_seq);
    dnull(w, "nll", f->nll);
    dnull(w, "nll_t1", f->nll_t1);
    dnull(w, "pseudo_r2", f->pseudo_r2);
    dnull(w, "agreement", f->agreement);
    dnull(w, "accuracy", f->accuracy);
    ml_jw_object_end(w);
}

/* The model's figures as members of the enclosing object. */
static void model_fit(ml_jw *w, const ml_replay_fit *f, int per_seq) {
    dnull(w, "model_accuracy", f->accuracy);
    dnull(w, "agreement", f->agreement);
    if (per_seq) dnull(w, "temperature", f->temperature);
    at_bound(w, f, per_seq);
    dnull(w, "nll", f->nll);
    dnull(w, "nll_t1", f->nll_t1);
    dnull(w, "pseudo_r2", f->pseudo_r2);
}

/* A panel's curve is an ml_curve: null where no sequence has the trial. */
static void panel_curve(ml_jw *w, const ml_panel_curve *c, int n_boot) {
    ml_render_curve(w, c, c->n_trials, n_boot, 1);
}

static void curves(ml_jw *w, const ml_replay_group *g, const ml_replay_request *rq) {
    ml_jw_key(w, "curve");
    ml_jw_object(w);
    ml_jw_key(w, "human");
    panel_curve(w, &g->human_curve, rq->n_boot);
    ml_jw_key(w, "model");
    panel_curve(w, &g->model_curve, rq->n_boot);
    ml_jw_key(w, "baseline");
    if (rq->baseline)
        panel_curve(w, &g->baseline_curve, rq->n_boot);
    else
        ml_jw_null(w);
    ml_jw_object_end(w);
}

/* Counts, pooled figures, the ceiling and the curve comparisons of a group (members). */
static void group_figures(ml_jw *w, const ml_replay_group *g, const ml_replay_request *rq) {
    ml_jw_kint(w, "participants", g->participants);
    ml_jw_kint(w, "trials", g->trials);
    ml_jw_kint(w, "unmatched", g->unmatched);
    ml_jw_kint(w, "incomplete", g->incomplete);
    dnull(w, "human_accuracy", g->human_accuracy);
    model_fit(w, &g->model, 0);
    baseline_fit(w, &g->baseline, rq->baseline, 0);
    ml_jw_key(w, "noise_ceiling");
    ml_jw_object(w);
    dnull(w, "r", g->noise_ceiling.r);
    dnull(w, "ci_low", g->noise_ceiling.ci_low);
    dnull(w, "ci_high", g->noise_ceiling.ci_high);
    ml_jw_kint(w, "splits", g->noise_ceiling.splits);
    ml_jw_object_end(w);
    dnull(w, "model_r", g->model_r);
    dnull(w, "rmse", g->rmse);
    dnull(w, "baseline_r", g->baseline_r);
    dnull(w, "baseline_rmse", g->baseline_rmse);
}

static void participant(ml_jw *w, const ml_replay_participant *p, const ml_replay_request *rq) {
    ml_jw_object(w);
    ml_jw_kstring(w, "participant", p->name);
    ml_jw_kint(w, "dimension", p->dimension);
    ml_jw_kint(w, "trials", p->trials);
    ml_jw_kint(w, "unmatched", p->unmatched);
    ml_jw_kint(w, "incomplete", p->incomplete);
    dnull(w, "human_accuracy", p->human_accuracy);
    model_fit(w, &p->model, 1);
    baseline_fit(w, &p->baseline, rq->baseline, 1);
    ml_jw_object_end(w);
}

static void trial_row(ml_jw *w, const ml_replay_result *res, const ml_replay_trial *t) {
    const ml_replay_participant *p = &res->participants[t->seq];
    ml_jw_object(w);
    ml_jw_kstring(w, "participant", p->name);
    ml_jw_kint(w, "trial", t->trial);
    ml_jw_kint(w, "dimension", p->dimension);
    ml_jw_kstring(w, "image", ml_strtab_get(&res->images, (size_t)t->image));
    ml_jw_kint(w, "label", t->label);
    ml_jw_kint(w, "choice", t->choice);
    ml_jw_kbool(w, "correct", t->correct);
    ml_jw_key(w, "logit");
    ml_jw_float(w, t->logit);
    dnull(w, "p_model", t->p_model);
    dnull(w, "p_choice", t->p_choice);
    ml_jw_kbool(w, "model_correct", t->model_correct);
    dnull(w, "baseline_logit", t->baseline_logit);
    dnull(w, "p_baseline", t->p_baseline);
    ml_jw_key(w, "baseline_correct");
    if (res->request.baseline)
        ml_jw_bool(w, t->baseline_correct);
    else
        ml_jw_null(w);
    ml_jw_object_end(w);
}

static void request(ml_jw *w, const ml_replay_request *rq) {
    ml_jw_key(w, "request");
    ml_jw_object(w);
    ml_jw_key(w, "max_trial");
    if (rq->max_trial < 0)
        ml_jw_null(w);
    else
        ml_jw_int(w, rq->max_trial);
    ml_jw_key(w, "temperature");
    if (rq->temperature > 0)
        ml_jw_double(w, rq->temperature);
    else
        ml_jw_string(w, "fit");
    ml_jw_kstring(w, "baseline", rq->baseline ? "logistic" : "none");
    ml_jw_key(w, "seed");
    ml_jw_int(w, (int64_t)rq->seed);
    ml_jw_kint(w, "n_boot", rq->n_boot);
    ml_jw_kint(w, "n_splits", rq->n_splits);
    ml_jw_kbool(w, "include_trials", rq->include_trials);
    ml_jw_object_end(w);
}

/* The choices MODEL.md section 8 left open, as the service made them, for this answer. */
static void notes(ml_jw *w, const ml_app *app, const ml_replay_result *res) {
    const ml_replay_request *rq = &res->request;
    char s[NOTE_MAX];
    ml_jw_key(w, "notes");
    ml_jw_array(w);
    ml_jw_string(w, "sequences: one per participant and dimension (in the experiment each "
                    "participant has one), the rows with trial <= max_trial in trial order; "
                    "two rows of one sequence with the same trial are refused");
    if (res->match == ML_REPLAY_EXACT)
        ml_jw_string(w, "image_match exact: every image is its own backbone row (the backbone "
                        "has one row per image and the THINGS image list is known), found by "
                        "the last two components of its path (<concept>/<file>); an image "
                        "missing from the list is unmatched, never replaced by its concept");
    else
        ml_jw_string(w, "image_match concept: every image stands for its concept's backbone "
                        "row (the folder of stimuli/<concept>/<file>.jpg), because the backbone "
                        "has one row per concept; images of one concept look the same to the "
                        "model");
    if (res->match == ML_REPLAY_EXACT)
        ml_jw_string(w, "standardisation: the image rows are read from the backbone file on "
                        "demand and standardised with the per-column mean and std of the "
                        "concept rows, so the model sees images on the scale it saw concepts "
                        "on in meta-training");
    else
        ml_jw_string(w, "standardisation: the concept rows standardised per column (mean and "
                        "std over the items), as the simulation feeds them");
    snprintf(s, sizeof s,
             "skipped rows: %ld unmatched (the image's concept is not among the item ids%s) "
             "and %ld incomplete (an empty choice or true_category_binary) rows are left out; "
             "the model sees each sequence without them, so the next replayed row's feedback "
             "is the label of the replayed row before it. Rows with an empty `correct` are "
             "not observations (as in the human curves)",
             res->overall.unmatched, res->match == ML_REPLAY_EXACT ? ", or the image is not in "
                                                                    "the image list" : "",
             res->overall.incomplete);
    ml_jw_string(w, s);
    ml_jw_string(w, "feedback: the first replayed row is fed [0, 0, x], every later one the "
                    "one-hot of the previous replayed row's true_category_binary (the feedback "
                    "the participant saw) beside its features");
    if (rq->temperature > 0) {
        snprintf(s, sizeof s, "temperature: fixed at T = %g for every sequence, model and "
                              "baseline; nll_t1 is at T = 1", rq->temperature);
        ml_jw_string(w, s);
    } else {
        ml_jw_string(w, "temperature: fitted by maximum likelihood for every participant "
                        "sequence (log T in [-4.6, 4.6], the research code's bounds; "
                        "temperature_at_bound says when it stopped at one), the model's and the "
                        "baseline's each on its own logits; nll is at that T, nll_t1 at T = 1");
    }
    ml_jw_string(w, "pooled summaries (summary, by_dimension) pool trials, not participants: "
                    "nll and nll_t1 are sums, pseudo_r2 = 1 - sum nll / (trials x ln 2), "
                    "agreement and the accuracies are shares of all trials; they carry no "
                    "temperature because every sequence has its own");
    if (rq->baseline)
        ml_jw_string(w, "baseline: sklearn's LogisticRegression(C=1.0) (intercept not "
                        "penalised) refitted before every trial on the participant's earlier "
                        "replayed trials (standardised features, true labels), p = 0.5 until "
                        "both classes were seen; solved to convergence in the span of the seen "
                        "rows");
    snprintf(s, sizeof s,
             "curves: per trial the mean over the sequences that have it; ci_low and ci_high "
             "are 95%% participant-bootstrap intervals (%d resamples, seed %llu), one set of "
             "draws for the humans, the model and the baseline", rq->n_boot,
             (unsigned long long)rq->seed);
    ml_jw_string(w, s);
    snprintf(s, sizeof s,
             "noise_ceiling: %d seeded random splits of the group's participants into halves; "
             "the Pearson r between the halves' p(correct) curves, Spearman-Brown corrected "
             "(2r / (1 + r)); r is the mean, ci_low and ci_high the 2.5 and 97.5 percentiles. "
             "model_r and rmse compare the model's curve on the same sequences with the "
             "humans'", rq->n_splits);
    ml_jw_string(w, s);
    ml_jw_string(w, "dimensions and labels are the CSV's own (true_category_binary), so no "
                    "mapping to the model's target dimensions is needed");
    if (app->model.synthetic)
        ml_jw_string(w, "the model and its items are the SYNTHETIC demo bundle: its items are "
                        "not THINGS concepts and the human data is whatever --human-url serves, "
                        "so this replay only exercises the machinery");
    ml_jw_array_end(w);
}

static void warnings(ml_jw *w, const ml_app *app, const ml_replay_result *res) {
    int longest = 0;
    for (size_t i = 0; i < res->n_participants; i++)
        if (res->participants[i].trials > longest) longest = res->participants[i].trials;
    ml_warnings warn = {0};
    int trained = app->model.trained_seq_len;
    if (trained > 0 && longest > trained)
        ml_warn(&warn, "the longest replayed sequence has %d trials, beyond the %d the model "
                       "was trained on: its trials %d..%d extrapolate the model's positions",
                longest, trained, trained, longest - 1);
    ml_render_warnings(w, &warn);
}

void ml_render_replay_trials(ml_jw *w, const ml_replay_result *res) {
    ml_jw_array(w);
    for (size_t i = 0; i < res->n_trial_rows; i++) trial_row(w, res, &res->trials[i]);
    ml_jw_array_end(w);
}

void ml_render_replay(ml_jw *w, const ml_app *app, const ml_replay_result *res,
                      const ml_human_status *st, const ml_blob *trials) {
    const ml_replay_request *rq = &res->request;
    ml_jw_object(w);
    ml_jw_key(w, "source");
    ml_render_human_source(w, st);
    ml_jw_kbool(w, "synthetic", app->model.synthetic);
    ml_jw_kstring(w, "image_match", ml_replay_match_name(res->match));
    ml_jw_kint(w, "max_trial", res->max_trial);
    request(w, rq);
    ml_jw_kdouble(w, "level", ML_REPLAY_LEVEL);
    ml_jw_key(w, "participants");
    ml_jw_array(w);
    for (size_t i = 0; i < res->n_participants; i++) participant(w, &res->participants[i], rq);
    ml_jw_array_end(w);
    ml_jw_key(w, "summary");
    ml_jw_object(w);
    group_figures(w, &res->overall, rq);
    ml_jw_object_end(w);
    curves(w, &res->overall, rq);
    ml_jw_key(w, "by_dimension");
    ml_jw_array(w);
    for (int j = 0; j < res->n_dims; j++) {
        ml_jw_object(w);
        ml_jw_kint(w, "dimension", res->by_dim[j].dimension);
        group_figures(w, &res->by_dim[j], rq);
        curves(w, &res->by_dim[j], rq);
        ml_jw_object_end(w);
    }
    ml_jw_array_end(w);
    if (rq->include_trials) {
        ml_jw_key(w, "trials");
        if (trials)
            ml_jw_raw(w, trials->data, trials->len);
        else
            ml_render_replay_trials(w, res);
    }
    ml_jw_key(w, "baseline_fits");
    ml_jw_object(w);
    ml_jw_kint(w, "fits", res->baseline_stats.fits);
    ml_jw_kint(w, "newton_steps", res->baseline_stats.newton_steps);
    dnull(w, "max_gradient", rq->baseline ? res->baseline_stats.max_grad : NAN);
    ml_jw_object_end(w);
    ml_jw_key(w, "seconds");
    ml_jw_object(w);
    ml_jw_kdouble(w, "model", res->seconds_model);
    ml_jw_kdouble(w, "baseline", res->seconds_baseline);
    ml_jw_object_end(w);
    notes(w, app, res);
    warnings(w, app, res);
    ml_jw_object_end(w);
}

/* ---- CSV (util/csv_writer.h) ----------------------------------------------------------- */

static const char *const participant_columns[] = {
    "participant", "dimension", "trials", "unmatched", "incomplete", "human_accuracy",
    "model_accuracy", "agreement", "temperature", "temperature_at_bound", "nll", "nll_t1",
    "pseudo_r2", "baseline_temperature", "baseline_temperature_at_bound", "baseline_nll",
    "baseline_nll_t1", "baseline_pseudo_r2", "baseline_agreement", "baseline_accuracy", NULL};

static const char *const trial_columns[] = {
    "participant", "dimension", "trial", "image", "label", "choice", "correct", "logit",
    "p_model", "p_choice", "model_correct", "baseline_logit", "p_baseline", "baseline_correct",
    NULL};

static void csv_bound(ml_csv *c, const ml_replay_fit *f) {
    const char *bn = isnan(f->temperature) ? NULL : bound_name(f->at_bound);
    if (bn)
        ml_csv_string(c, bn);
    else
        ml_csv_empty(c);
}

/* temperature, its bound, nll, nll_t1, pseudo_r2 */
static void csv_fit(ml_csv *c, const ml_replay_fit *f) {
    ml_csv_double(c, f->temperature);
    csv_bound(c, f);
    ml_csv_double(c, f->nll);
    ml_csv_double(c, f->nll_t1);
    ml_csv_double(c, f->pseudo_r2);
}

static void csv_participants(ml_buf *b, const ml_replay_result *res, ml_csv *c) {
    ml_csv_init(c, b, participant_columns);
    for (size_t i = 0; i < res->n_participants; i++) {
        const ml_replay_participant *p = &res->participants[i];
        ml_csv_string(c, p->name);
        ml_csv_int(c, p->dimension);
        ml_csv_int(c, p->trials);
        ml_csv_int(c, p->unmatched);
        ml_csv_int(c, p->incomplete);
        ml_csv_double(c, p->human_accuracy);
        ml_csv_double(c, p->model.accuracy);
        ml_csv_double(c, p->model.agreement);
        csv_fit(c, &p->model);
        csv_fit(c, &p->baseline);
        ml_csv_double(c, p->baseline.agreement);
        ml_csv_double(c, p->baseline.accuracy);
        ml_csv_row_end(c);
    }
}

static void csv_trials(ml_buf *b, const ml_replay_result *res, ml_csv *c) {
    ml_csv_init(c, b, trial_columns);
    for (size_t i = 0; i < res->n_trial_rows; i++) {
        const ml_replay_trial *t = &res->trials[i];
        const ml_replay_participant *p = &res->participants[t->seq];
        ml_csv_string(c, p->name);
        ml_csv_int(c, p->dimension);
        ml_csv_int(c, t->trial);
        ml_csv_string(c, ml_strtab_get(&res->images, (size_t)t->image));
        ml_csv_int(c, t->label);
        ml_csv_int(c, t->choice);
        ml_csv_int(c, t->correct);
        ml_csv_float(c, t->logit);
        ml_csv_double(c, t->p_model);
        ml_csv_double(c, t->p_choice);
        ml_csv_int(c, t->model_correct);
        ml_csv_double(c, t->baseline_logit);
        ml_csv_double(c, t->p_baseline);
        if (res->request.baseline)
            ml_csv_int(c, t->baseline_correct);
        else
            ml_csv_empty(c);
        ml_csv_row_end(c);
    }
}

int ml_render_replay_csv(ml_buf *out, const ml_replay_result *res) {
    ml_csv c;
    if (res->request.include_trials)
        csv_trials(out, res, &c);
    else
        csv_participants(out, res, &c);
    return ml_csv_finish(&c);
}
