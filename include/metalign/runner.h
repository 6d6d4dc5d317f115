/* Runs sequences of items through the model, many at once: the items' encodings (the
 * features through the first linear layer, raw and standardised: ml_model_encode) are
 * computed once for all items (ml_item_embeddings), and a sequence's first layer is assembled
 * from them plus each trial's feedback, so a forward call costs only the blocks. Sequences
 * are cut into calls of at most max_rows = B * S rows, each GEMM seeing all of a call's rows
 * at once.
 *
 * Two ways to run: ml_runner_run (and _table) with the seed's label feedback, the seed's own
 * fast path; ml_runner_forward with either generation's feedback (labels as 0/1 for the seed,
 * magnitudes for the later generation) through ml_model_forward, which also returns the
 * magnitude head.
 *
 * A runner owns one forward-pass workspace and serves one thread at a time; several runners
 * may share the model, the data and the embeddings (all read-only). */
#ifndef METALIGN_RUNNER_H
#define METALIGN_RUNNER_H

#include "metalign/dataset.h"
#include "metalign/err.h"
#include "metalign/model.h"

/* Every item's encoding (ml_model_encode, either generation): raw (*raw, from d->X) and
 * standardised (*std, from d->X_std), each (n_items, W) and malloc'd. */
int ml_item_embeddings(const ml_model *m, const ml_dataset *d, float **raw, float **std,
                       ml_err *err);

typedef struct ml_runner {
    const ml_model *model;
    const ml_dataset *data;
    const float *emb[2];  /* [0] raw, [1] standardised: (n_items, W), not owned */
    int max_rows;         /* rows per forward call */
    int max_seq;          /* longest sequence (the model's positions, the workspace) */
    ml_workspace *ws;
    float *h0;            /* (max_rows, W) the assembled first layer */
} ml_runner;

/* A runner over m and d with the embeddings emb_raw / emb_std (ml_item_embeddings) and a
 * workspace of max_rows rows for sequences of up to max_seq trials. */
int ml_runner_init(ml_runner *r, const ml_model *m, const ml_dataset *d, const float *emb_raw,
                   const float *emb_std, int max_rows, int max_seq, ml_err *err);
void ml_runner_free(ml_runner *r);
/* Makes the runner's memory resident (ml_workspace_touch and the first-layer buffer). */
void ml_runner_touch(ml_runner *r);

/* B sequences of S items (items (B, S), indices into d) with labels (B, S): trial t > 0 of a
 * sequence sees the one-hot of labels[t-1] (labels may be NULL for S == 1). outs: NULL, or
 * ml_model_num_outputs pointers, each NULL or (B, S, W); logits: NULL or (B, S). Fails when S
 * is longer than the runner allows. The seed's label feedback: a later-generation model takes
 * only labels == NULL here (no feedback, e.g. every item alone) and then needs
 * ml_model_logit_dims == 1; else use ml_runner_forward. */
int ml_runner_run(ml_runner *r, const int *items, const int *labels, int B, int S,
                  int standardize, float **outs, float *logits, ml_err *err);
/* The same over another table of embeddings E (n rows of ml_embed_features' output, e.g.
 * single images' rows rather than the concepts'): items index into E. Seed only. */
int ml_runner_run_table(ml_runner *r, const float *E, const int *items, const int *labels,
                        int B, int S, float **outs, float *logits, ml_err *err);

/* Either generation: B sequences of S items (items (B, S) into d) with each trial's own
 * outcome in feedback (B, S), seen by the next trial: its label 0/1 (seed) or its magnitude
 * y - m (later generation; scaled by 1/mag_std inside); NULL feeds nothing (every trial as
 * trial 0). outs: NULL, or ml_model_num_outputs pointers, each NULL or (B, S, W); logits and
 * magnitudes: NULL or (B, S, K), K = ml_model_logit_dims (magnitudes only for models that
 * have them). Fails when S is longer than the runner allows. */
int ml_runner_forward(ml_runner *r, const int *items, const float *feedback, int B, int S,
                      int standardize, float **outs, float *logits, float *magnitudes,
                      ml_err *err);

#endif
