/* The eval-mode forward pass of the seed's transformer (MODEL.md section 2), the workspace
 * both generations use, and the transformer blocks they share, in the manner of llm.c's
 * train_gpt2.c: one plain function per operation (model/ops.h) over all B*S rows at once. */
#include "metalign/blas.h"
#include "metalign/model.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/gemm.h"

/* ------------------------------------------------------------------------------------------
 * Workspace */

static size_t wide_floats(const ml_model *m) {
    size_t C = (size_t)m->cfg.hidden_size, F = (size_t)m->cfg.intermediate_size;
    size_t w = 3 * C > F ? 3 * C : F;
    if (m->generation == ML_GEN_METALEARNER && m->meta.model_type == ML_ARCH_LSTM && 4 * C > w)
        w = 4 * C;
    return w;
}

static int has_attention(const ml_model *m) {
    return m->generation == ML_GEN_SEED || m->meta.model_type == ML_ARCH_TRANSFORMER;
}

ml_workspace *ml_workspace_new(const ml_model *m, int max_rows, int max_seq, ml_err *err) {
    if (max_rows < 1 || max_seq < 1)
        return ml_errp(err, "workspace: max_rows (%d) and max_seq (%d) must be positive",
                       max_rows, max_seq);
    int limit = ml_model_max_seq_len(m);
    if (limit > 0 && max_seq > limit) max_seq = limit;
    if (has_attention(m) && m->cfg.pos == ML_POS_ROPE && max_seq > m->rope_len)
        max_seq = m->rope_len;
    if (max_seq > max_rows) max_seq = max_rows;
    ml_workspace *ws = calloc(1, sizeof *ws);
    if (!ws) return ml_errp(err, "out of memory");
    ws->generation = m->generation;
    ws->max_rows = max_rows;
    ws->max_seq = max_seq;
    ws->C = m->cfg.hidden_size;
    ws->F = m->cfg.intermediate_size;
    ws->H = has_attention(m) ? m->cfg.num_heads : 0;
    int threads = ml_blas_threads();
    if (threads < 1) threads = 1;
    size_t R = (size_t)max_rows, C = (size_t)ws->C;
    ws->h = ml_alloc_floats(R * C);
    ws->act = ml_alloc_floats(R * C);
    ws->wide_floats = wide_floats(m);
    ws->wide = ml_alloc_floats(R * ws->wide_floats);
    int lstm = m->generation == ML_GEN_METALEARNER && m->meta.model_type == ML_ARCH_LSTM;
    if (lstm) ws->cell = ml_alloc_floats(R * C);
    /* oneDNN runs on OpenMP threads; the non-GEMM work then runs on the same team rather
     * than on threads of its own beside them */
    ws->pool = ml_pool_new(threads, m->gemm != NULL, err);
    ws->gemm_set = ml_gemm_set_id(m->gemm);
    if (ws->pool && m->gemm && !(ws->gemm = ml_gemm_ctx_new(m->gemm, err))) {
        ml_workspace_free(ws);
        return NULL;
    }
    int attn_ok = 1;
    if (ws->H) {
        int rope = m->cfg.pos == ML_POS_ROPE;
        attn_ok = ml_attn_init(&ws->attn, ws->C, ws->H, max_seq, rope ? m->rope_cos : NULL,
                               rope ? m->rope_sin : NULL, threads) == 0;
    }
    if (!ws->h || !ws->act || !ws->wide || (lstm && !ws->cell) || !ws->pool || !attn_ok) {
        ml_workspace_free(ws);
        return ml_errf(err, "out of memory for a forward-pass workspace of %d rows", max_rows),
               NULL;
    }
    return ws;
}

void ml_workspace_free(ml_workspace *ws) {
    if (!ws) return;
    ml_pool_free(ws->pool);
    ml_gemm_ctx_free(ws->gemm);
    ml_attn_free(&ws->attn);
    free(ws->h);
    free(ws->act);
    free(ws->wide);
    free(ws->cell);
    free(ws);
}

void ml_workspace_touch(ml_workspace *ws) {
    size_t R = (size_t)ws->max_rows, C = (size_t)ws->C;
    memset(ws->h, 0, sizeof(float) * R * C);
    memset(ws->act, 0, sizeof(float) * R * C);
    memset(ws->wide, 0, sizeof(float) * R * ws->wide_floats);
    if (ws->cell) memset(ws->cell, 0, sizeof(float) * R * C);
    if (ws->H) memset(ws->attn.scratch, 0, sizeof(float) * ws->attn.scratch_floats *
                                               (size_t)ws->attn.threads);
}

void ml_ws_begin(ml_workspace *ws) {
    int t = ml_blas_threads();
    ws->par.pool = ws->pool;
    ws->par.threads = t < 1 ? 1 : t > ml_pool_size(ws->pool) ? ml_pool_size(ws->pool) : t;
    ws->par.gemm = ws->gemm;
}

int ml_ws_check(const ml_model *m, const ml_workspace *ws, int B, int S, ml_err *err) {
    if (ws->generation != m->generation || ws->C != m->cfg.hidden_size ||
        ws->F != m->cfg.intermediate_size || (ws->H && ws->H != m->cfg.num_heads) ||
        ws->gemm_set != ml_gemm_set_id(m->gemm))
        return ml_errf(err, "forward: the workspace was made for another model (or before its "
                            "weights were prepared for another GEMM back end)");
    if (B < 1 || S < 1)
        return ml_errf(err, "forward: %d sequences of %d trials; both must be positive", B, S);
    int limit = ml_model_max_seq_len(m);
    if (S > ws->max_seq)
        return ml_errf(err, "forward: sequences of %d trials are longer than the %d this %s "
                            "allows", S, ws->max_seq,
                       limit > 0 && S > limit
                           ? (m->generation == ML_GEN_SEED ? "model's learned positions"
                                                           : "model's config (sl)")
                           : "workspace");
    if ((long)B * S > ws->max_rows)
        return ml_errf(err, "forward: %d x %d rows exceed the workspace's %d", B, S,
                       ws->max_rows);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * The transformer blocks */

typedef struct pos_ctx {
    float *h;
    const float *pos;
    int S, C;
} pos_ctx;

/* h (N, C) += pos[t] for the row's position t */
static void positions_rows(void *vctx, long begin, long end, int tid) {
    const pos_ctx *c = vctx;
    for (long r = begin; r < end; r++) {
        float *h = c->h + r * c->C;
        const float *p = c->pos + (r % c->S) * c->C;
        for (int i = 0; i < c->C; i++) h[i] += p[i];
    }
    (void)tid;
}

void ml_transformer_blocks(const ml_model *m, ml_workspace *ws, int B, int S, int n_blocks,
                           float *const *block_outs) {
    const ml_model_config *cfg = &m->cfg;
    const ml_params *p = &m->params;
    const ml_par *par = &ws->par;
    int N = B * S, C = cfg->hidden_size, F = cfg->intermediate_size, C3 = 3 * C;
    size_t NC = (size_t)N * C;
    if (cfg->pos == ML_POS_LEARNED) {
        pos_ctx pc = {ws->h, p->pos, S, C};
        ml_pool_for(par->pool, par->threads, N, ml_row_grain(par, N), positions_rows, &pc);
    }
    for (int l = 0; l < n_blocks; l++) {
        size_t lC = (size_t)l * C, lF = (size_t)l * F;
        /* h = h + attention(LayerNorm(h)) @ Wo^T (+ bo): the GEMM adds onto h */
        ml_op_layernorm(par, ws->act, ws->h, p->ln1_w + lC, p->ln1_b + lC, N, C);
        if (S == 1) {
            /* A length-1 sequence attends to itself only: the attention output is v exactly,
             * and v's projection then Wo's is one linear map, vo_w = Wo Wv (ml_model), so
             * h += LayerNorm(h) @ vo_w^T + vo_b is the whole attention block. */
            ml_op_matmul(par, ws->h, ws->act, m->vo_w + lC * C, C,
                         m->vo_b ? m->vo_b + lC : NULL, N, C, C, 1);
        } else {
            ml_op_matmul(par, ws->wide, ws->act, p->qkv_w + lC * C3, C,
                         p->qkv_b ? p->qkv_b + lC * 3 : NULL, N, C, C3, 0);
            ml_op_attention(par, &ws->attn, ws->act, ws->wide, B, S);
            ml_op_matmul(par, ws->h, ws->act, p->o_w + lC * C, C, p->o_b ? p->o_b + lC : NULL,
                         N, C, C, 1);
        }
        /* h = h + gelu(LayerNorm(h) @ W1^T (+ b1)) @ W2^T (+ b2) */
        if (F > 0) {
            ml_op_layernorm(par, ws->act, ws->h, p->ln2_w + lC, p->ln2_b + lC, N, C);
            ml_op_matmul(par, ws->wide, ws->act, p->fc1_w + lF * C, C,
                         p->fc1_b ? p->fc1_b + lF : NULL, N, C, F, 0);
            ml_op_gelu(par, ws->wide, (long)N * F);
            ml_op_matmul(par, ws->h, ws->wide, p->fc2_w + lC * F, F,
                         p->fc2_b ? p->fc2_b + lC : NULL, N, F, C, 1);
        }
        if (block_outs && block_outs[l]) ml_op_copy(par, block_outs[l], ws->h, (long)NC);
    }
}

/* ------------------------------------------------------------------------------------------
 * The seed's pass */

/* Blocks whose computation is needed: the last one whose output is asked for, or all of them
 * when the logits are. */
static int blocks_needed(const ml_model *m, float **outs, const float *logits) {
    int L = m->cfg.num_layers;
    if (logits) return L;
    int need = 0;
    for (int l = 0; outs && l < L; l++)
        if (outs[1 + l]) need = l + 1;
    return need;
}

/* Runs the blocks on ws->h (the embedding output, positions not yet added). */
static void seed_blocks(const ml_model *m, ml_workspace *ws, int B, int S, float **outs,
                        float *logits) {
    const ml_params *p = &m->params;
    int N = B * S, C = m->cfg.hidden_size;
    if (outs && outs[0]) ml_op_copy(&ws->par, outs[0], ws->h, (long)N * C);
    ml_transformer_blocks(m, ws, B, S, blocks_needed(m, outs, logits), outs ? outs + 1 : NULL);
    if (logits) {
        ml_op_layernorm(&ws->par, ws->act, ws->h, p->lnf_w, p->lnf_b, N, C);
        ml_op_heads(&ws->par, logits, ws->act, p->head_w, p->head_b, N, C, 1);
    }
}

static int seed_only(const ml_model *m, const char *fn, ml_err *err) {
    if (m->generation == ML_GEN_SEED) return 0;
    return ml_errf(err, "%s: %s takes the seed's label columns, but this is a later-generation "
                        "(%s) model: use ml_model_forward", m->path, fn,
                   ml_arch_name(m->meta.model_type));
}

int ml_forward(const ml_model *m, ml_workspace *ws, const float *inp, int B, int S,
               float **outs, float *logits, ml_err *err) {
    if (seed_only(m, "ml_forward", err) || ml_ws_check(m, ws, B, S, err)) return -1;
    ml_ws_begin(ws);
    int N = B * S, C = m->cfg.hidden_size;
    if (m->cfg.embedding)
        ml_op_matmul(&ws->par, ws->h, inp, m->params.emb_w, m->cfg.input_size, m->params.emb_b,
                     N, m->cfg.input_size, C, 0);
    else
        ml_op_copy(&ws->par, ws->h, inp, (long)N * C);
    seed_blocks(m, ws, B, S, outs, logits);
    return 0;
}

int ml_forward_from_embedding(const ml_model *m, ml_workspace *ws, const float *h0, int B,
                              int S, float **outs, float *logits, ml_err *err) {
    if (seed_only(m, "ml_forward_from_embedding", err) || ml_ws_check(m, ws, B, S, err))
        return -1;
    ml_ws_begin(ws);
    ml_op_copy(&ws->par, ws->h, h0, (long)B * S * m->cfg.hidden_size);
    seed_blocks(m, ws, B, S, outs, logits);
    return 0;
}

void ml_seed_forward(const ml_model *m, ml_workspace *ws, int B, int S, const ml_outputs *out) {
    seed_blocks(m, ws, B, S, out->outs, out->logits);
}

int ml_embed_features(const ml_model *m, const float *x, int n, float *out, ml_err *err) {
    if (seed_only(m, "ml_embed_features", err)) return -1;
    int C = m->cfg.hidden_size, In = m->cfg.input_size;
    if (n < 0) return ml_errf(err, "embed: negative item count %d", n);
    if (n == 0) return 0;
    if (!m->cfg.embedding) {
        for (long r = 0; r < n; r++) {
            out[r * C] = out[r * C + 1] = 0.0f;
            memcpy(out + r * C + 2, x + r * (C - 2), sizeof(float) * (size_t)(C - 2));
        }
        return 0;
    }
    return ml_matmul_once(m, out, x, m->params.emb_w + 2, In, m->params.emb_b, n, In - 2, C,
                          err);
}

int ml_matmul_once(const ml_model *m, float *out, const float *x, const float *w, int ldw,
                   const float *bias, int n, int IC, int OC, ml_err *err) {
    ml_par one = {.pool = NULL, .threads = ml_blas_threads(), .gemm = NULL};
    if (m->gemm && !(one.gemm = ml_gemm_ctx_new(m->gemm, err))) return -1;
    ml_op_matmul(&one, out, x, w, ldw, bias, n, IC, OC, 0);
    ml_gemm_ctx_free(one.gemm);
    return 0;
}

void ml_embed_episodes(const ml_model *m, const float *E, const int *items, const int *labels,
                       int B, int S, float *h0) {
    if (m->generation != ML_GEN_SEED) return;
    int C = m->cfg.hidden_size;
    for (long b = 0; b < B; b++) {
        for (long t = 0; t < S; t++) {
            float *o = h0 + (b * S + t) * C;
            const float *e = E + (size_t)items[b * S + t] * C;
            if (t == 0) {
                memcpy(o, e, sizeof(float) * (size_t)C);
                continue;
            }
            const float *lab = m->label_emb + (labels[b * S + t - 1] ? C : 0);
            for (int c = 0; c < C; c++) o[c] = e[c] + lab[c];
        }
    }
}

void ml_add_feedback(const ml_model *m, float *h, const float *feedback, int B, int S) {
    int C = m->cfg.hidden_size;
    for (long b = 0; b < B; b++) {
        for (long t = 1; t < S; t++) {
            float *o = h + (b * S + t) * C;
            float fb = feedback[b * S + t - 1];
            if (m->generation == ML_GEN_SEED) {
                const float *lab = m->label_emb + (fb != 0.0f ? C : 0);
                for (int c = 0; c < C; c++) o[c] += lab[c];
            } else {
                float prev = fb / m->meta.mag_std;
                for (int c = 0; c < C; c++) o[c] += prev * m->fb_col[c];
            }
        }
    }
}
