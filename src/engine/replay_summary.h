/* The replay's second half (src/engine/replay_summary.c): from the replayed rows and the two
 * learners' logits to the figures of ml_replay_result. Shared with src/engine/replay.c only. */
#ifndef METALIGN_REPLAY_SUMMARY_H
#define METALIGN_REPLAY_SUMMARY_H

#include "metalign/replay.h"

typedef struct replay_seq {
    int32_t participant, dimension;
    size_t first, n;        /* its replayed rows: [first, first + n) of the plan's rows */
    int unmatched, incomplete;
} replay_seq;

/* The replayed rows, sequence by sequence, each in trial order. */
typedef struct replay_plan {
    ml_replay_match match;
    int max_trial;          /* effective */
    size_t n_seq;
    replay_seq *seq;
    size_t n_rows;
    int32_t *trial, *image, *table; /* table: row of the feature table (X_std, E) */
    uint8_t *label, *choice, *correct;
    int S_max;              /* longest sequence */
    float *logit;           /* (n_rows) the model's */
    double *zb;             /* (n_rows) the baseline's, NaN without it */
} replay_plan;

/* Fills res (participants, summaries, curves, ceiling, trial rows) from a plan whose logits
 * are computed. */
int replay_summarise(const replay_plan *plan, const ml_human_data *h,
                     const ml_replay_request *rq, ml_replay_result *res, ml_err *err);

#endif
