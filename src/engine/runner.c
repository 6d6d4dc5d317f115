#include "metalign/runner.h"

#include <stdlib.h>
#include <string.h>

int ml_item_embeddings(const ml_model *m, const ml_dataset *d, float **raw, float **std,
                       ml_err *err) {
    size_t n = (size_t)d->n_items, C = (size_t)m->cfg.hidden_size;
    const float *src[2] = {d->X, d->X_std};
    float *E[2] = {NULL, NULL};
    for (int s = 0; s < 2; s++) {
        E[s] = malloc(sizeof(float) * n * C);
        if (!E[s] || ml_embed_features(m, src[s], (int)n, E[s], err) != 0) {
            if (!E[s]) ml_errf(err, "out of memory for item embeddings (%zu x %zu)", n, C);
            free(E[0]);
            free(E[1]);
            return -1;
        }
    }
    *raw = E[0];
    *std = E[1];
    return 0;
}

int ml_runner_init(ml_runner *r, const ml_model *m, const ml_dataset *d, const float *emb_raw,
                   const float *emb_std, int max_rows, int max_seq, ml_err *err) {
    memset(r, 0, sizeof *r);
    r->model = m;
    r->data = d;
    r->emb[0] = emb_raw;
    r->emb[1] = emb_std;
    r->max_rows = max_rows;
    r->max_seq = max_seq < max_rows ? max_seq : max_rows;
    r->ws = ml_workspace_new(m, max_rows, max_seq, err);
    if (!r->ws) return -1;
    r->h0 = malloc(sizeof(float) * (size_t)max_rows * (size_t)m->cfg.hidden_size);
    if (!r->h0) {
        ml_runner_free(r);
        return ml_errf(err, "out of memory for a forward-pass workspace of %d rows", max_rows);
    }
    return 0;
}

void ml_runner_free(ml_runner *r) {
    if (!r) return;
    ml_workspace_free(r->ws);
    free(r->h0);
    memset(r, 0, sizeof *r);
}

int ml_runner_run(ml_runner *r, const int *items, const int *labels, int B, int S,
                  int standardize, float **outs, float *logits, ml_err *err) {
    return ml_runner_run_table(r, r->emb[standardize ? 1 : 0], items, labels, B, S, outs, logits,
                               err);
}

int ml_runner_run_table(ml_runner *r, const float *E, const int *items, const int *labels,
                        int B, int S, float **outs, float *logits, ml_err *err) {
    if (S < 1 || S > r->max_seq)
        return ml_errf(err, "sequences of %d trials are longer than this model allows (%d)", S,
                       r->max_seq);
    const ml_model *m = r->model;
    int n_out = ml_model_num_outputs(m);
    size_t C = (size_t)m->cfg.hidden_size;
    int per_call = r->max_rows / S;
    float *call_outs[ML_MAX_LAYERS + 1];
    for (int b0 = 0; b0 < B; b0 += per_call) {
        int nb = B - b0 < per_call ? B - b0 : per_call;
        size_t row0 = (size_t)b0 * (size_t)S;
        ml_embed_episodes(m, E, items + row0, labels ? labels + row0 : NULL, nb, S, r->h0);
        for (int i = 0; i < n_out; i++) call_outs[i] = outs && outs[i] ? outs[i] + row0 * C : NULL;
        if (ml_forward_from_embedding(m, r->ws, r->h0, nb, S, outs ? call_outs : NULL,
                                      logits ? logits + row0 : NULL, err) != 0)
            return -1;
    }
    return 0;
}
