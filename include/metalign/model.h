/* The seed-generation meta-learner (MODEL.md section 2): weights, variant detection and the
 * eval-mode forward pass, written in the manner of llm.c's train_gpt2.c: the parameters are
 * one float buffer with named pointers into it, and every operation is one plain function. */
#ifndef METALIGN_MODEL_H
#define METALIGN_MODEL_H

#include <stddef.h>

#include "metalign/err.h"

typedef enum ml_posenc {
    ML_POS_ROPE,    /* rotary positions on q and k, nothing added to h */
    ML_POS_LEARNED, /* h += P[0:S] after the embedding (pos_encoder.embedding.weight) */
} ml_posenc;

typedef struct ml_model_config {
    int input_size;        /* In: 2 label columns + backbone features (== C without embedding) */
    int hidden_size;       /* C */
    int num_heads;         /* H (not in the weights: from the checkpoint's config or --heads) */
    int intermediate_size; /* I */
    int num_layers;        /* L */
    int max_seq_len;       /* learned positions: rows of P; RoPE: 0, no limit from the weights */
    int embedding;         /* 1: Linear(In, C) first; 0: inputs are already C wide */
    int bias;              /* every linear has a bias */
    int logit_bias;        /* linear_head has a bias */
    ml_posenc pos;
} ml_model_config;

/* Pointers into ml_model.params_memory; NULL where the variant has no such tensor.
 * Per-layer tensors are stacked over the L layers, as in llm.c. */
typedef struct ml_params {
    float *emb_w;  /* (C, In) */
    float *emb_b;  /* (C) */
    float *pos;    /* (max_seq_len, C) */
    float *ln1_w;  /* (L, C) */
    float *ln1_b;  /* (L, C) */
    float *qkv_w;  /* (L, 3C, C) */
    float *qkv_b;  /* (L, 3C) */
    float *o_w;    /* (L, C, C) */
    float *o_b;    /* (L, C) */
    float *ln2_w;  /* (L, C) */
    float *ln2_b;  /* (L, C) */
    float *fc1_w;  /* (L, I, C) */
    float *fc1_b;  /* (L, I) */
    float *fc2_w;  /* (L, C, I) */
    float *fc2_b;  /* (L, C) */
    float *lnf_w;  /* (C) */
    float *lnf_b;  /* (C) */
    float *head_w; /* (C) */
    float *head_b; /* (1) */
} ml_params;

typedef struct ml_model {
    ml_model_config cfg;
    ml_params params;
    float *params_memory;
    size_t num_params;
    float *rope_cos; /* (rope_len, d/2), angles computed in float32 as torch does */
    float *rope_sin;
    int rope_len;
    float *label_emb; /* (2, C): the label columns Wemb[:, 0] and Wemb[:, 1] (unit vectors
                       * without an embedding layer), for ml_embed_episodes */
    float *vo_w;      /* (L, C, C) Wo @ Wv: a length-1 sequence attends only to itself, so its
                       * attention block is the linear map x -> (x Wv^T + bv) Wo^T + bo,
                       * one GEMM instead of two (the all-items, every-layer CKA workload) */
    float *vo_b;      /* (L, C) Wo bv + bo; NULL without biases */
    int trained_seq_len; /* the sequence length it was trained on; 0 when the file does not
                          * say (learned positions: their count; RoPE: the saved freqs_cis rows
                          * or the config's sequence_length) */
    char *path;
    const char *format; /* "safetensors" | "pytorch" */
    int synthetic;      /* the file's metadata says it is synthetic (the demo bundle) */
} ml_model;

#define ML_MAX_LAYERS 256

/* Loads a checkpoint, detects the variant and every size from the tensor names and shapes,
 * and binds the weights. heads_hint is used when the file carries no head count (the
 * operator's --heads); a count in the file wins. Errors name the file and the tensor. */
int ml_model_load(ml_model *m, const char *path, int heads_hint, ml_err *err);
void ml_model_free(ml_model *m);

/* Layer outputs a forward pass can return: 0 = "embedding", 1 + i = "layer_<i>". */
int ml_model_num_outputs(const ml_model *m);
/* Writes "embedding" or "layer_<i>" into buf; returns buf. */
const char *ml_model_output_name(const ml_model *m, int index, char *buf, size_t len);
/* Index of a layer name, or -1. */
int ml_model_output_index(const ml_model *m, const char *name);
const char *ml_posenc_name(ml_posenc pos); /* "rope" | "learned_positions" */

/* Activation buffers for up to max_rows = B * S rows and sequences of up to max_seq trials
 * (lowered to the model's learned positions, if fewer), allocated once and reused by every
 * forward call that uses this workspace. It also owns the threads that run the non-GEMM work:
 * as many as OpenBLAS uses (ml_blas_threads()) when it is made; each call uses no more than
 * OpenBLAS uses at that moment. One workspace serves one thread at a time; ml_forward itself
 * is reentrant across workspaces. */
typedef struct ml_workspace ml_workspace;
ml_workspace *ml_workspace_new(const ml_model *m, int max_rows, int max_seq, ml_err *err);
void ml_workspace_free(ml_workspace *ws);

/* Eval-mode forward pass of B sequences of S trials.
 *   inp    (B, S, In) inputs [onehot(prev label), x] as MODEL.md section 2 builds them
 *   outs   NULL, or ml_model_num_outputs(m) pointers, each NULL (skip) or (B, S, C):
 *          the embedding output (before positions are added) and each block's output
 *   logits NULL or (B, S)
 * Fails (with a message) only when B * S or S exceed the workspace or the model's positions. */
int ml_forward(const ml_model *m, ml_workspace *ws, const float *inp, int B, int S,
               float **outs, float *logits, ml_err *err);

/* The same pass starting from the embedding output h0 (B, S, C), for callers that assemble it
 * from per-item embeddings computed once (see ml_embed_features). */
int ml_forward_from_embedding(const ml_model *m, ml_workspace *ws, const float *h0, int B,
                              int S, float **outs, float *logits, ml_err *err);

/* Embedding of feature rows without their label columns: out (n, C) = x (n, In-2) @
 * Wemb[:, 2:]^T (+ bias). Without an embedding layer it is the identity: out = [0, 0, x]. */
int ml_embed_features(const ml_model *m, const float *x, int n, float *out, ml_err *err);

/* Builds h0 (B, S, C) for episodes from per-item embeddings E (n_items, C):
 * h0[b, t] = E[items[b, t]] + (t > 0 ? Wemb[:, labels[b, t-1]] : 0)
 * (without an embedding layer, Wemb[:, j] is the unit vector e_j). items must lie in
 * [0, n_items) (the caller checks); a non-zero label counts as 1. */
void ml_embed_episodes(const ml_model *m, const float *E, const int *items, const int *labels,
                       int B, int S, float *h0);

#endif
