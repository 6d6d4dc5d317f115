#include "metalign/runner.h"

#include <stdlib.h>
#include <string.h>

int ml_item_embeddings(const ml_model *m, const ml_dataset *d, float **raw, float **std,
                       ml_err *err) {
    size_t n = (size_t)d->n_items, W = (size_t)ml_model_width(m);
    const float *src[2] = {d->X, d->X_std};
    float *E[2] = {NULL, NULL};
    for (int s = 0; s < 2; s++) {
        E[s] = malloc(sizeof(float) * n * W);
        if (!E[s] || ml_model_encode(m, src[s], (int)n, E[s], err) != 0) {
            if (!E[s]) ml_errf(err, "out of memory for item embeddings (%zu x %zu)", n, W);
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
    r->h0 = malloc(sizeof(float) * (size_t)max_rows * (size_t)ml_model_width(m));
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

void ml_runner_touch(ml_runner *r) {
    ml_workspace_touch(r->ws);
    memset(r->h0, 0, sizeof(float) * (size_t)r->max_rows * (size_t)ml_model_width(r->model));
}

static int check_len(const ml_runner *r, int S, ml_err *err) {
    if (S < 1 || S > r->max_seq)
        return ml_errf(err, "sequences of %d trials are longer than this model allows (%d)", S,
                       r->max_seq);
    return 0;
}

int ml_runner_run(ml_runner *r, const int *items, const int *labels, int B, int S,
                  int standardize, float **outs, float *logits, ml_err *err) {
    const ml_model *m = r->model;
    if (m->generation != ML_GEN_SEED) {
        if (labels)
            return ml_errf(err, "%s is a later-generation (%s) model: it is fed magnitudes, "
                                "not labels", m->path, ml_arch_name(ml_model_arch(m)));
        if (logits && ml_model_logit_dims(m) != 1)
            return ml_errf(err, "%s has %d logits per trial: use ml_runner_forward", m->path,
                           ml_model_logit_dims(m));
        return ml_runner_forward(r, items, NULL, B, S, standardize, outs, logits, NULL, err);
    }
    return ml_runner_run_table(r, r->emb[standardize ? 1 : 0], items, labels, B, S, outs, logits,
                               err);
}

int ml_runner_run_table(ml_runner *r, const float *E, const int *items, const int *labels,
                        int B, int S, float **outs, float *logits, ml_err *err) {
    if (check_len(r, S, err) != 0) return -1;
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

int ml_runner_forward(ml_runner *r, const int *items, const float *feedback, int B, int S,
                      int standardize, float **outs, float *logits, float *magnitudes,
                      ml_err *err) {
    if (check_len(r, S, err) != 0) return -1;
    const ml_model *m = r->model;
    int n_out = ml_model_num_outputs(m);
    size_t W = (size_t)ml_model_width(m), K = (size_t)ml_model_logit_dims(m);
    int per_call = r->max_rows / S;
    float *call_outs[ML_MAX_LAYERS + 2];
    for (int b0 = 0; b0 < B; b0 += per_call) {
        int nb = B - b0 < per_call ? B - b0 : per_call;
        size_t row0 = (size_t)b0 * (size_t)S;
        for (int i = 0; i < n_out; i++) call_outs[i] = outs && outs[i] ? outs[i] + row0 * W : NULL;
        ml_batch in = {
            .B = nb, .S = S,
            .E = r->emb[standardize ? 1 : 0], .items = items + row0, .n_items = r->data->n_items,
            .feedback = feedback ? feedback + row0 : NULL,
        };
        ml_outputs o = {
            .outs = outs ? call_outs : NULL,
            .logits = logits ? logits + row0 * K : NULL,
            .magnitudes = magnitudes ? magnitudes + row0 * K : NULL,
        };
        if (ml_model_forward(m, r->ws, &in, &o, err) != 0) return -1;
    }
    return 0;
}
