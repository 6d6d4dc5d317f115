/* The generic model API (include/metalign/model.h): what a loaded model is, its outputs, and
 * the forward pass of either generation from raw features or per-item encodings. */
#include "metalign/model.h"

#include <stdio.h>
#include <string.h>

#include "metalign/blas.h"
#include "model/forward.h"
#include "model/gemm.h"

const char *ml_generation_name(ml_generation g) {
    return g == ML_GEN_METALEARNER ? "metalearner" : "seed";
}

const char *ml_arch_name(ml_arch a) {
    switch (a) {
    case ML_ARCH_TRANSFORMER: return "transformer";
    case ML_ARCH_LSTM: return "lstm";
    case ML_ARCH_STATIC_LINEAR: return "static_linear";
    }
    return "?";
}

const char *ml_posenc_name(ml_posenc pos) {
    return pos == ML_POS_LEARNED ? "learned_positions" : "rope";
}

const char *ml_model_gemm_backend(const ml_model *m) {
    return ml_gemm_backend_name(m->gemm ? ml_gemm_set_backend(m->gemm) : ML_GEMM_OPENBLAS);
}

const char *ml_model_gemm_library(const ml_model *m, char *buf, size_t len) {
    if (m->gemm) return ml_gemm_describe(ml_gemm_set_backend(m->gemm), buf, len);
    snprintf(buf, len, "OpenBLAS %s kernels", ml_blas_core());
    return buf;
}

size_t ml_model_release_loaded_weights(ml_model *m) {
    if (!m->gemm) return 0;
    m->loaded_released = 1;
    return ml_gemm_set_drop_plain(m->gemm);
}

static int later(const ml_model *m) { return m->generation == ML_GEN_METALEARNER; }

ml_arch ml_model_arch(const ml_model *m) {
    return later(m) ? m->meta.model_type : ML_ARCH_TRANSFORMER;
}

ml_feedback ml_model_feedback(const ml_model *m) {
    if (!later(m)) return ML_FEEDBACK_LABELS;
    return m->meta.model_type == ML_ARCH_STATIC_LINEAR ? ML_FEEDBACK_NONE
                                                       : ML_FEEDBACK_MAGNITUDES;
}

int ml_model_feature_dim(const ml_model *m) { return m->feature_dim; }
int ml_model_width(const ml_model *m) { return m->cfg.hidden_size; }
int ml_model_logit_dims(const ml_model *m) { return later(m) ? m->meta.num_dims : 1; }
int ml_model_has_magnitudes(const ml_model *m) { return later(m); }

int ml_model_max_seq_len(const ml_model *m) {
    if (later(m)) return m->meta.model_type == ML_ARCH_TRANSFORMER ? m->meta.sl : 0;
    return m->cfg.pos == ML_POS_LEARNED ? m->cfg.max_seq_len : 0;
}

int ml_model_num_outputs(const ml_model *m) {
    return (later(m) ? 2 : 1) + m->cfg.num_layers;
}

const char *ml_model_output_name(const ml_model *m, int index, char *buf, size_t len) {
    int L = m->cfg.num_layers;
    if (index == 0)
        snprintf(buf, len, later(m) ? "embed" : "embedding");
    else if (index > 0 && index <= L)
        snprintf(buf, len, "layer_%d", index - 1);
    else if (later(m) && index == L + 1)
        snprintf(buf, len, "ln_f");
    else
        snprintf(buf, len, "?");
    return buf;
}

int ml_model_output_index(const ml_model *m, const char *name) {
    char buf[32];
    for (int i = 0; i < ml_model_num_outputs(m); i++)
        if (strcmp(name, ml_model_output_name(m, i, buf, sizeof buf)) == 0) return i;
    return -1;
}

int ml_model_encode(const ml_model *m, const float *x, int n, float *out, ml_err *err) {
    if (later(m)) return ml_later_encode(m, NULL, x, n, out, err);
    return ml_embed_features(m, x, n, out, err);
}

static int check_batch(const ml_model *m, const ml_batch *in, const ml_outputs *out,
                       ml_err *err) {
    if (!in || !out) return ml_errf(err, "forward: no batch or no outputs given");
    if ((in->x != NULL) == (in->E != NULL))
        return ml_errf(err, "forward: give either features x or encodings E with items");
    if (in->E && !in->items) return ml_errf(err, "forward: encodings E need item indices");
    if (out->magnitudes && !ml_model_has_magnitudes(m))
        return ml_errf(err, "forward: %s is a seed-generation model: it has no magnitude head",
                       m->path);
    if (in->E) {
        long n = (long)in->B * in->S;
        for (long r = 0; r < n; r++)
            if (in->items[r] < 0 || in->items[r] >= in->n_items)
                return ml_errf(err, "forward: item %d (sequence %ld, trial %ld) is not in "
                                    "[0, %d)", in->items[r], r / in->S, r % in->S,
                               in->n_items);
    }
    return 0;
}

/* ws->h (N, W) = the encodings of the batch's trials, feedback not yet added. */
static int embed_batch(const ml_model *m, ml_workspace *ws, const ml_batch *in, ml_err *err) {
    int N = in->B * in->S, W = m->cfg.hidden_size;
    if (in->x) {
        if (later(m)) return ml_later_encode(m, &ws->par, in->x, N, ws->h, err);
        return ml_embed_features(m, in->x, N, ws->h, err);
    }
    for (long r = 0; r < N; r++)
        memcpy(ws->h + r * W, in->E + (size_t)in->items[r] * W, sizeof(float) * (size_t)W);
    return 0;
}

int ml_model_forward(const ml_model *m, ml_workspace *ws, const ml_batch *in,
                     const ml_outputs *out, ml_err *err) {
    if (check_batch(m, in, out, err) || ml_ws_check(m, ws, in->B, in->S, err)) return -1;
    ml_ws_begin(ws);
    if (embed_batch(m, ws, in, err)) return -1;
    if (in->feedback && ml_model_feedback(m) != ML_FEEDBACK_NONE)
        ml_add_feedback(m, ws->h, in->feedback, in->B, in->S);
    if (later(m))
        ml_later_forward(m, ws, in->B, in->S, out);
    else
        ml_seed_forward(m, ws, in->B, in->S, out);
    return 0;
}
