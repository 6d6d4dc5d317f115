/* Runs sequences of items through the model, many at once: the items' embeddings (the
 * features through the first linear layer, raw and standardised) are computed once for all
 * items (ml_item_embeddings), and a sequence's first layer is assembled from them plus its
 * label columns, so a forward call costs only the blocks. Sequences are cut into calls of at
 * most max_rows = B * S rows, each GEMM seeing all of a call's rows at once.
 *
 * A runner owns one forward-pass workspace and serves one thread at a time; several runners
 * may share the model, the data and the embeddings (all read-only). */
#ifndef METALIGN_RUNNER_H
#define METALIGN_RUNNER_H

#include "metalign/dataset.h"
#include "metalign/err.h"
#include "metalign/model.h"

/* Features through the embedding for every item: raw (*raw, from d->X) and standardised
 * (*std, from d->X_std), each (n_items, C) and malloc'd. */
int ml_item_embeddings(const ml_model *m, const ml_dataset *d, float **raw, float **std,
                       ml_err *err);

typedef struct ml_runner {
    const ml_model *model;
    const ml_dataset *data;
    const float *emb[2];  /* [0] raw, [1] standardised: (n_items, C), not owned */
    int max_rows;         /* rows per forward call */
    int max_seq;          /* longest sequence (the model's positions, the workspace) */
    ml_workspace *ws;
    float *h0;            /* (max_rows, C) the assembled first layer */
} ml_runner;

/* A runner over m and d with the embeddings emb_raw / emb_std (ml_item_embeddings) and a
 * workspace of max_rows rows for sequences of up to max_seq trials. */
int ml_runner_init(ml_runner *r, const ml_model *m, const ml_dataset *d, const float *emb_raw,
                   const float *emb_std, int max_rows, int max_seq, ml_err *err);
void ml_runner_free(ml_runner *r);

/* B sequences of S items (items (B, S), indices into d) with labels (B, S): trial t > 0 of a
 * sequence sees the one-hot of labels[t-1] (labels may be NULL for S == 1). outs: NULL, or
 * ml_model_num_outputs pointers, each NULL or (B, S, C); logits: NULL or (B, S). Fails when S
 * is longer than the runner allows. */
int ml_runner_run(ml_runner *r, const int *items, const int *labels, int B, int S,
                  int standardize, float **outs, float *logits, ml_err *err);
/* The same over another table of embeddings E (n rows of ml_embed_features' output, e.g.
 * single images' rows rather than the concepts'): items index into E. */
int ml_runner_run_table(ml_runner *r, const float *E, const int *items, const int *labels,
                        int B, int S, float **outs, float *logits, ml_err *err);

#endif
