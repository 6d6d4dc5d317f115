/* The trial-level replay (MODEL.md section 8): every participant's own sequence of the human
 * task through the model, every human choice scored under it, beside the baseline learner
 * and the humans' split-half noise ceiling. Plain structs only; rendering (JSON, CSV) belongs
 * to src/http.
 *
 * Sequences. A sequence is one participant's rows of one dimension (in the experiment every
 * participant has one), with trial <= max_trial, in trial order; two rows with the same trial
 * are an error. A row is replayed when its image names a backbone row and its choice and
 * true_category_binary are given:
 *   "exact"    (a per-image backbone with its image list): the row of that very image
 *              (<concept>/<file>, the last two components of the CSV's path);
 *   "concept"  (otherwise): the concept's row.
 * A row whose concept is not among the item ids (or, for "exact", whose image is not in the
 * list: mixing concept rows in would make "exact" untrue) is unmatched: counted and left out,
 * so the model sees the sequence without it and the next replayed row's feedback is the label
 * of the replayed row before it. Rows with an empty choice or label count as incomplete and
 * are left out the same way.
 *
 * Features. Standardised as the simulation feeds them: the concept rows' X_std, and for
 * "exact" the image rows read from the backbone file on demand and standardised with the
 * same per-column mean and std as the concept rows (ml_dataset_read_std_rows), so the model
 * sees images on the scale it saw concepts on during meta-training. Inputs per row: for the
 * first replayed row [0, 0, x], later [onehot(label of the previous replayed row), x].
 *
 * Scores (per sequence, pooled over trials for the summaries): the model's logit z_t, p_t =
 * sigmoid(z_t / T) the probability of category 1; p(choice) = p_t if choice == 1 else
 * 1 - p_t; nll = -sum log p(choice) at T (fitted, metalign/temperature.h, or the requested
 * fixed T), nll_t1 at T = 1, pseudo_r2 = 1 - nll / (n ln 2); agreement = share of trials with
 * (p_t > 0.5) == choice, i.e. z_t > 0 (T > 0 does not change it); accuracy the same against
 * true_category_binary. The baseline (metalign/baseline.h) gets the same figures from its own
 * logits. Summaries pool trials: nll sums, pseudo_r2 = 1 - sum nll / (sum n ln 2), agreement
 * and accuracies are shares of all trials.
 *
 * Curves and ceiling (metalign/panel.h): over sequences, per trial 0..max_trial, the humans'
 * `correct`, the model's and the baseline's correctness (z > 0 equals the label), overall and
 * per dimension; bootstrap stream ML_REPLAY_STREAM_BOOT + (dimension + 1), the overall curve
 * using dimension -1; noise-ceiling stream ML_REPLAY_STREAM_SPLIT + (dimension + 1). */
#ifndef METALIGN_REPLAY_H
#define METALIGN_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/curve.h"
#include "metalign/runner.h"
#include "metalign/baseline.h"
#include "metalign/human_csv.h"
#include "metalign/panel.h"

#define ML_REPLAY_DEFAULT_N_BOOT ML_N_BOOT_DEFAULT
#define ML_REPLAY_DEFAULT_SPLITS 100
#define ML_REPLAY_MAX_N_BOOT ML_N_BOOT_MAX
#define ML_REPLAY_MAX_SPLITS 100000
#define ML_REPLAY_LEVEL ML_CI_LEVEL
#define ML_REPLAY_MAX_DIMENSIONS 1024
#define ML_REPLAY_MAX_THREADS 64     /* baseline fits in parallel, at most `threads` */
#define ML_REPLAY_STREAM_BOOT (3ull << 40)
#define ML_REPLAY_STREAM_SPLIT (4ull << 40)

typedef struct ml_replay_request {
    int max_trial;        /* rows with trial <= max_trial; -1: all */
    double temperature;   /* 0: fitted by maximum likelihood; > 0: this fixed T */
    int baseline;         /* 1: the logistic baseline; 0: none (its figures are NaN) */
    uint64_t seed;        /* bootstrap and splits */
    int n_boot;           /* participant-bootstrap resamples; 0: no intervals */
    int n_splits;         /* noise-ceiling splits */
    int include_trials;   /* fill ml_replay_result.trials */
} ml_replay_request;

/* max_trial -1 (all), fitted temperature, the logistic baseline, seed 0, 1000 resamples,
 * 100 splits, no trial rows. */
void ml_replay_defaults(ml_replay_request *rq);

typedef enum ml_replay_match { ML_REPLAY_EXACT, ML_REPLAY_CONCEPT } ml_replay_match;
const char *ml_replay_match_name(ml_replay_match m); /* "exact" | "concept" */

/* Why a replay failed: ML_REPLAY_E_DATA and ML_REPLAY_E_MODEL are the client's to fix
 * (the human data or the model cannot be replayed: 422), ML_REPLAY_E_ARG a bad request (400). */
typedef enum ml_replay_code {
    ML_REPLAY_OK,
    ML_REPLAY_E_ARG,
    ML_REPLAY_E_DATA,
    ML_REPLAY_E_MODEL,
    ML_REPLAY_E_INTERNAL,
    ML_REPLAY_CANCELLED,
} ml_replay_code;

/* One learner's figures on a set of trials. temperature is NaN in pooled summaries; every
 * figure is NaN where there are no trials (or for the baseline when it was not asked for). */
typedef struct ml_replay_fit {
    double temperature;
    int at_bound;         /* the fitted T at a bound of log T (temperature.h), per sequence */
    double nll, nll_t1, pseudo_r2;
    double agreement;     /* (z > 0) == choice */
    double accuracy;      /* (z > 0) == true_category_binary */
} ml_replay_fit;

typedef struct ml_replay_participant {
    const char *name;     /* as in the CSV (owned by the result) */
    int32_t participant;  /* id in the human data */
    int32_t dimension;
    int trials;           /* replayed */
    int unmatched;        /* left out: image not found */
    int incomplete;       /* left out: empty choice or true_category_binary */
    double human_accuracy;
    ml_replay_fit model, baseline;
} ml_replay_participant;

/* Overall (dimension -1) or one dimension. */
typedef struct ml_replay_group {
    int32_t dimension;
    int participants;     /* sequences with at least one replayed trial */
    long trials, unmatched, incomplete;
    double human_accuracy;
    ml_replay_fit model, baseline;
    ml_panel_curve human_curve, model_curve, baseline_curve;
    ml_noise_ceiling noise_ceiling; /* of the humans' curve */
    double model_r, rmse;           /* model's curve against the humans' */
    double baseline_r, baseline_rmse;
} ml_replay_group;

typedef struct ml_replay_trial {
    int32_t seq;          /* index into participants */
    int32_t trial;
    int32_t image;        /* index into the result's images */
    uint8_t label, choice, correct;
    uint8_t model_correct, baseline_correct;
    float logit;          /* the model's z */
    double p_model;       /* sigmoid(z / T) */
    double p_choice;      /* p_model if choice == 1 else 1 - p_model */
    double baseline_logit;/* 0 while the baseline has seen one class only (NaN: no baseline) */
    double p_baseline;    /* sigmoid(baseline_logit / T_baseline) */
} ml_replay_trial;

typedef struct ml_replay_result {
    ml_replay_match match;
    int max_trial;        /* effective: min(requested, the largest replayed trial) */
    int n_trials;         /* max_trial + 1: the curves' length */
    ml_replay_request request;
    size_t n_participants;
    ml_replay_participant *participants;
    ml_replay_group overall;
    int n_dims;
    ml_replay_group *by_dim; /* ascending dimension */
    size_t n_trial_rows;
    ml_replay_trial *trials; /* include_trials: every replayed trial, sequence by sequence */
    ml_strtab images;     /* a copy of the human data's image names */
    char *names;          /* arena of the participants' names */
    ml_baseline_stats baseline_stats;
    double seconds_model;    /* forward passes (features, embeddings, GEMMs) */
    double seconds_baseline; /* Gram matrices and fits */
} ml_replay_result;

/* Progress and cancellation hooks (may be NULL): progress(ctx, done, total) in sequences,
 * first through the model, then through the baseline (total counts both); cancelled(ctx) is
 * polled between batches and between sequences of the baseline. */
typedef struct ml_replay_hooks {
    void (*progress)(void *ctx, long done, long total);
    int (*cancelled)(void *ctx);
    void *ctx;
} ml_replay_hooks;

/* Runs the replay of the human data h on the runner's model and data (its workspace for the
 * model passes, up to `threads` threads for the baseline's fits). 0 on success; -1 with *code
 * and err (the message names what to fix); 1 when cancelled. */
int ml_replay_run(ml_runner *r, int threads, const ml_human_data *h, const ml_replay_request *rq,
                  const ml_replay_hooks *hooks, ml_replay_result *res, ml_replay_code *code,
                  ml_err *err);
void ml_replay_result_free(ml_replay_result *res);

#endif
