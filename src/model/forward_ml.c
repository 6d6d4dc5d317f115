/* The later generation's eval-mode passes (MODEL.md section 7): the transformer (the seed's
 * blocks with biases and an optional MLP, model/forward.c), the LSTM and the static linear
 * model, each from its embedding output to ln_f and the two heads. */
#include <cblas.h>
#include <string.h>

#include "metalign/blas.h"
#include "model/forward.h"
#include "model/gemm.h"

/* Blocks (or LSTM layers) whose computation is needed: all when ln_f or a head is asked for,
 * else up to the last one whose output is. */
static int layers_needed(const ml_model *m, const ml_outputs *out) {
    int L = m->cfg.num_layers;
    if (out->logits || out->magnitudes || (out->outs && out->outs[1 + L])) return L;
    int need = 0;
    for (int l = 0; out->outs && l < L; l++)
        if (out->outs[1 + l]) need = l + 1;
    return need;
}

/* n_layers LSTM layers over the sequences in ws->h (B, S, C): per layer, the input
 * projections of all B*S trials as one GEMM, G = x W_ih^T + (b_ih + b_hh) (B, S, 4C) in
 * ws->wide, then the recurrence, G[:, t] += h_{t-1} W_hh^T (one GEMM of B rows per step) and
 * the cell update; zero initial states. Returns the buffer that holds the last layer's output
 * (ws->h or ws->act). */
static float *lstm_layers(const ml_model *m, ml_workspace *ws, int B, int S, int n_layers,
                          float *const *layer_outs) {
    const ml_params *p = &m->params;
    const ml_par *par = &ws->par;
    int C = m->cfg.hidden_size, C4 = 4 * C, N = B * S;
    size_t ldg = (size_t)S * C4, ldh = (size_t)S * C;
    float *in = ws->h, *out = ws->act;
    for (int l = 0; l < n_layers; l++) {
        size_t lw = (size_t)l * C4 * C;
        const float *whh = p->lstm_whh + lw;
        ml_op_matmul(par, ws->wide, in, p->lstm_wih + lw, C, m->lstm_b + (size_t)l * C4, N, C,
                     C4, 0);
        memset(ws->cell, 0, sizeof(float) * (size_t)B * C);
        for (int t = 0; t < S; t++) {
            float *g = ws->wide + (size_t)t * C4;
            if (t > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, C4, C, 1.0f,
                            out + (size_t)(t - 1) * C, (int)ldh, whh, C, 1.0f, g, (int)ldg);
            ml_op_lstm_cell(par, g, ldg, ws->cell, out + (size_t)t * C, ldh, B, C);
        }
        if (layer_outs && layer_outs[l]) ml_op_copy(par, layer_outs[l], out, (long)N * C);
        float *tmp = in;
        in = out;
        out = tmp;
    }
    return in;
}

static void heads(const ml_model *m, const ml_par *par, const float *h, int N,
                  const ml_outputs *out) {
    const ml_params *p = &m->params;
    int C = m->cfg.hidden_size, K = m->meta.num_dims;
    if (out->logits) ml_op_heads(par, out->logits, h, p->head_w, p->head_b, N, C, K);
    if (out->magnitudes) ml_op_heads(par, out->magnitudes, h, p->mag_w, p->mag_b, N, C, K);
}

void ml_later_forward(const ml_model *m, ml_workspace *ws, int B, int S, const ml_outputs *out) {
    const ml_par *par = &ws->par;
    int N = B * S, C = m->cfg.hidden_size, L = m->cfg.num_layers;
    long NC = (long)N * C;
    float **outs = out->outs;
    if (outs && outs[0]) ml_op_copy(par, outs[0], ws->h, NC);
    if (m->meta.model_type == ML_ARCH_STATIC_LINEAR) {
        /* the embedding stage already normalised: ws->h is LayerNorm(proj(x)) = ln_f */
        if (outs && outs[1]) ml_op_copy(par, outs[1], ws->h, NC);
        heads(m, par, ws->h, N, out);
        return;
    }
    int need = layers_needed(m, out);
    float *hf = ws->h;
    if (m->meta.model_type == ML_ARCH_TRANSFORMER)
        ml_transformer_blocks(m, ws, B, S, need, outs ? outs + 1 : NULL);
    else
        hf = lstm_layers(m, ws, B, S, need, outs ? outs + 1 : NULL);
    if (!out->logits && !out->magnitudes && !(outs && outs[1 + L])) return;
    float *ln = hf == ws->h ? ws->act : ws->h;
    ml_op_layernorm(par, ln, hf, m->params.lnf_w, m->params.lnf_b, N, C);
    if (outs && outs[1 + L]) ml_op_copy(par, outs[1 + L], ln, NC);
    heads(m, par, ln, N, out);
}

static int later_encode(const ml_model *m, const ml_par *par, const float *x, int n, float *out,
                        ml_err *err) {
    const ml_params *p = &m->params;
    int C = m->cfg.hidden_size, D = m->feature_dim;
    switch (m->meta.model_type) {
    case ML_ARCH_STATIC_LINEAR:
        ml_op_matmul(par, out, x, p->proj_w, D, p->proj_b, n, D, C, 0);
        ml_op_layernorm(par, out, out, p->lnf_w, p->lnf_b, n, C);
        return 0;
    case ML_ARCH_TRANSFORMER:
    case ML_ARCH_LSTM:
        if (m->meta.no_embed) {
            /* x + mag_proj(0): the width is D itself */
            for (size_t r = 0; r < (size_t)n; r++)
                for (int c = 0; c < C; c++)
                    out[r * C + c] = x[r * C + c] + (p->magproj_b ? p->magproj_b[c] : 0.0f);
            return 0;
        }
        /* [0, x] @ Wembed^T + b: the magnitude column (first) contributes nothing */
        ml_op_matmul(par, out, x, p->emb_w + 1, D + 1, p->emb_b, n, D, C, 0);
        return 0;
    }
    return ml_errf(err, "encode: unknown model type");
}

int ml_later_encode(const ml_model *m, const ml_par *par, const float *x, int n, float *out,
                    ml_err *err) {
    if (n < 0) return ml_errf(err, "encode: negative item count %d", n);
    if (n == 0) return 0;
    if (par) return later_encode(m, par, x, n, out, err);
    /* outside a workspace (the items' encodings): the calling thread, the model's back end */
    ml_par one = {.pool = NULL, .threads = ml_blas_threads(), .gemm = NULL};
    if (m->gemm && !(one.gemm = ml_gemm_ctx_new(m->gemm, err))) return -1;
    int rc = later_encode(m, &one, x, n, out, err);
    ml_gemm_ctx_free(one.gemm);
    return rc;
}
