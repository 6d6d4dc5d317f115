/* The forward passes' shared state (private to src/model/): the workspace both generations
 * use, and the pieces forward.c (the seed), forward_ml.c (the later generation) and model.c
 * (the generic entry points) share. */
#ifndef METALIGN_MODEL_FORWARD_H
#define METALIGN_MODEL_FORWARD_H

#include "metalign/model.h"
#include "model/ops.h"

struct ml_workspace {
    ml_generation generation;
    int max_rows, max_seq;
    int C, F, H;    /* width, MLP width (0: none), attention heads (0: no attention) */
    float *h;       /* (R, C) the residual stream / a layer's input */
    float *act;     /* (R, C) a LayerNorm output, the attention output, a layer's output */
    float *wide;    /* (R, max(3C, F, 4C for the LSTM)) q|k|v, the MLP's hidden layer, gates */
    size_t wide_floats; /* its row length */
    float *cell;    /* (R, C) LSTM cell states; NULL for other models */
    ml_attn attn;   /* attention tiles (transformers) */
    ml_pool *pool;
    unsigned long gemm_set;             /* the prepared weights it was made for (their id) */
    struct ml_gemm_ctx *gemm;           /* their primitives and scratch; NULL: OpenBLAS */
    ml_par par;     /* this call's pool, thread count and GEMM state */
};

/* Sets this call's thread count: min(pool size, OpenBLAS threads now). */
void ml_ws_begin(ml_workspace *ws);

/* The workspace fits the model and B x S fits the workspace; else a message. */
int ml_ws_check(const ml_model *m, const ml_workspace *ws, int B, int S, ml_err *err);

/* The first n_blocks transformer blocks on ws->h (in place), each block's output copied into
 * block_outs[l] when that is set (block_outs may be NULL). Learned positions (seed) are
 * added first. Shared by both generations: without an MLP (F == 0) a block is attention
 * only. */
void ml_transformer_blocks(const ml_model *m, ml_workspace *ws, int B, int S, int n_blocks,
                           float *const *block_outs);

/* The seed's pass from its embedding output in ws->h (B, S, C): the blocks and the logits. */
void ml_seed_forward(const ml_model *m, ml_workspace *ws, int B, int S, const ml_outputs *out);

/* The later generation from its embedding output in ws->h (B, S, C): blocks or LSTM layers,
 * ln_f, the heads, into the outputs asked for (any NULL). */
void ml_later_forward(const ml_model *m, ml_workspace *ws, int B, int S, const ml_outputs *out);

/* out (n, OC) = x (n, IC) @ w^T + bias outside a workspace (the items' encodings): on the
 * model's GEMM back end, with per-call state made and dropped here. */
int ml_matmul_once(const ml_model *m, float *out, const float *x, const float *w, int ldw,
                   const float *bias, int n, int IC, int OC, ml_err *err);

/* The later generation's encode(x) (ml_model_encode); par may be NULL. */
int ml_later_encode(const ml_model *m, const ml_par *par, const float *x, int n, float *out,
                    ml_err *err);

/* Adds the feedback of the previous trial to h (B, S, C) (rows t > 0): the seed's label
 * column Wemb[:, label], the later generation's (magnitude / mag_std) * fb_col. */
void ml_add_feedback(const ml_model *m, float *h, const float *feedback, int B, int S);

#endif
