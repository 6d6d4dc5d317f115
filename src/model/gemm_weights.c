/* The model's weight matrices handed to the GEMM back end at load (model/gemm.h): exactly
 * the (pointer, stride, shape) triples the passes give ml_op_matmul, so each call finds its
 * prepared copy. */
#include <stddef.h>

#include "model/gemm.h"
#include "model/weights.h"

static int add(ml_gemm_set *s, const float *w, int ldw, int OC, int IC, ml_err *err) {
    return w && OC > 0 && IC > 0 ? ml_gemm_set_add(s, w, ldw, OC, IC, err) : 0;
}

/* The transformer blocks' matrices (model/forward.c, ml_transformer_blocks). */
static int add_blocks(ml_gemm_set *s, const ml_model *m, ml_err *err) {
    const ml_params *p = &m->params;
    int C = m->cfg.hidden_size, F = m->cfg.intermediate_size, L = m->cfg.num_layers;
    for (int l = 0; l < L; l++) {
        size_t lC = (size_t)l * C, lF = (size_t)l * F;
        if (add(s, p->qkv_w + lC * 3 * C, C, 3 * C, C, err) ||
            add(s, p->o_w + lC * C, C, C, C, err) ||
            (m->vo_w && add(s, m->vo_w + lC * C, C, C, C, err)))
            return -1;
        if (F > 0 && (add(s, p->fc1_w + lF * C, C, F, C, err) ||
                      add(s, p->fc2_w + lC * F, F, C, F, err)))
            return -1;
    }
    return 0;
}

static int add_all(ml_gemm_set *s, const ml_model *m, ml_err *err) {
    const ml_params *p = &m->params;
    int C = m->cfg.hidden_size, In = m->cfg.input_size, D = m->feature_dim;
    if (m->generation == ML_GEN_SEED) {
        /* ml_forward on whole input rows, and ml_embed_features on the feature columns */
        if (m->cfg.embedding &&
            (add(s, p->emb_w, In, C, In, err) || add(s, p->emb_w + 2, In, C, In - 2, err)))
            return -1;
        return add_blocks(s, m, err);
    }
    switch (m->meta.model_type) {
    case ML_ARCH_STATIC_LINEAR: return add(s, p->proj_w, D, C, D, err);
    case ML_ARCH_TRANSFORMER:
    case ML_ARCH_LSTM:
        if (!m->meta.no_embed && add(s, p->emb_w + 1, D + 1, C, D, err)) return -1;
        if (m->meta.model_type == ML_ARCH_TRANSFORMER) return add_blocks(s, m, err);
        for (int l = 0; l < m->cfg.num_layers; l++)
            if (add(s, p->lstm_wih + (size_t)l * 4 * C * C, C, 4 * C, C, err)) return -1;
        return 0;
    }
    return 0;
}

int ml_model_prepare_gemm(ml_model *m, int backend, ml_err *err) {
    if (m->loaded_released)
        return ml_errf(err, "%s: the loaded weights were given back after they were prepared; "
                            "load the model again to prepare it for another back end",
                       m->path ? m->path : "the model");
    ml_gemm_set_free(m->gemm);
    m->gemm = NULL;
    if (backend == ML_GEMM_OPENBLAS) return 0; /* cblas_sgemm takes the weights as loaded */
    ml_gemm_set *s = ml_gemm_set_new((ml_gemm_backend)backend, err);
    if (!s) return -1;
    if (add_all(s, m, err) != 0) {
        ml_gemm_set_free(s);
        return ml_err_prefix(err, "%s", m->path ? m->path : "the model");
    }
    m->gemm = s;
    return 0;
}
