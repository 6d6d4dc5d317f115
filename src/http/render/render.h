/* Answers as JSON, from what the engine returns (structs, never text). Every renderer writes
 * through the one JSON writer (util/json_writer.h); the handlers decide what to render. */
#ifndef METALIGN_HTTP_RENDER_H
#define METALIGN_HTTP_RENDER_H

#include "engine/app.h"
#include "engine/compare.h"
#include "engine/human_store.h"
#include "engine/jobs.h"
#include "metalign/curve.h"
#include "metalign/human_curves.h"
#include "metalign/replay.h"
#include "metalign/simulate.h"
#include "util/json_writer.h"

/* Notes an answer carries about how far a request went past what the model knows (e.g.
 * seq_len beyond the trained positions): rendered as "warnings": [...]. */
#define ML_MAX_WARNINGS 8
typedef struct ml_warnings {
    int n;
    char text[ML_MAX_WARNINGS][256];
} ml_warnings;

void ml_warn(ml_warnings *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Warnings for sequences of seq_len trials on app's model. */
void ml_warn_seq_len(ml_warnings *w, const ml_app *app, int seq_len);
/* "warnings": [...] (always present, [] when none). */
void ml_render_warnings(ml_jw *w, const ml_warnings *warn);

/* {"p_correct": [...], "ci_low": [...] | null, "ci_high": [...] | null[, "n": [...]]} over
 * the first n_trials trials: null where a trial has no observations; the bounds are null
 * when no interval was asked (n_boot = 0). */
void ml_render_curve(ml_jw *w, const ml_curve *c, int n_trials, int n_boot, int with_n);

/* /v1/info's model fields of the generation: generation, model_type, feedback, logit_dims,
 * magnitudes, mag_std (null for the seed and static linear) and, for the later generation,
 * what its MetaLearnerConfig governs (heads_source, use_mlp, no_embed, sl). Keys only: the
 * caller has the object open. */
void ml_render_model_generation(ml_jw *w, const ml_model *m);

/* POST /v1/learning-curves. */
void ml_render_sim(ml_jw *w, const ml_app *app, const ml_sim_request *rq,
                   const ml_sim_result *res, const ml_sim_curves *curves,
                   const ml_warnings *warn);

/* The human data: API.md's "source", /v1/info's "human", and the curves' body. */
void ml_render_human_source(ml_jw *w, const ml_human_status *st);
void ml_render_human_status(ml_jw *w, const ml_human_status *st);
void ml_render_human_curves(ml_jw *w, const ml_human_curves *c, const ml_human_status *st);

/* GET /v1/compare/learning-curves. */
void ml_render_comparison(ml_jw *w, const ml_app *app, const ml_sim_request *rq, int max_trial,
                          const ml_comparison *cmp, const ml_human_curves *h,
                          const ml_human_status *st, const ml_warnings *warn);

/* GET /v1/human/replay (render/replay.c): the JSON answer (its "trials" array, when the
 * request included trials, from the bytes ml_render_replay_trials wrote earlier, or rendered
 * here when trials is NULL), and the tidy CSV table (one row per trial when the request
 * included trials, else one per participant sequence; 0, or -1 out of memory). */
void ml_render_replay(ml_jw *w, const ml_app *app, const ml_replay_result *res,
                      const ml_human_status *st, const ml_blob *trials);
void ml_render_replay_trials(ml_jw *w, const ml_replay_result *res);
int ml_render_replay_csv(ml_buf *out, const ml_replay_result *res);

/* GET /v1/jobs/<id>: the job's state, without its result (which the handler appends). */
void ml_render_job(ml_jw *w, const ml_job_info *j);

#endif
