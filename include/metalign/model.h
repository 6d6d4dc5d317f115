/* The meta-learned models: the seed's generation (MODEL.md section 2) and the later
 * generation, MetaLearnerConfig checkpoints (section 7: transformer, LSTM, static linear).
 * Weights, variant detection and the eval-mode forward passes, written in the manner of
 * llm.c's train_gpt2.c: the parameters are one float buffer with named pointers into it, and
 * every operation is one plain function.
 *
 * Two ways in:
 *   - the generic API (ml_model_forward, ml_model_encode and the ml_model_* accessors) serves
 *     either generation: the caller gives raw backbone features (or per-item encodings and
 *     item indices) and each trial's own outcome, and the model prepares its inputs;
 *   - the seed's original entry points (ml_forward on prepared rows, ml_embed_features,
 *     ml_embed_episodes, ml_forward_from_embedding) stay as they were, for the seed only. */
#ifndef METALIGN_MODEL_H
#define METALIGN_MODEL_H

#include <stddef.h>

#include "metalign/err.h"

typedef enum ml_posenc {
    ML_POS_ROPE,    /* rotary positions on q and k, nothing added to h */
    ML_POS_LEARNED, /* h += P[0:S] after the embedding (pos_encoder.embedding.weight) */
} ml_posenc;

typedef enum ml_generation {
    ML_GEN_SEED,        /* TransformerConfig, label feedback (section 2) */
    ML_GEN_METALEARNER, /* MetaLearnerConfig, magnitude feedback, two heads (section 7) */
} ml_generation;

typedef enum ml_arch {
    ML_ARCH_TRANSFORMER,   /* the seed's model is one too */
    ML_ARCH_LSTM,
    ML_ARCH_STATIC_LINEAR, /* no sequence: every trial on its own */
} ml_arch;

/* What a trial tells the next one (ml_batch.feedback). */
typedef enum ml_feedback {
    ML_FEEDBACK_NONE,       /* static linear: trials are independent */
    ML_FEEDBACK_LABELS,     /* the seed: onehot(previous label) */
    ML_FEEDBACK_MAGNITUDES, /* later generation: previous magnitude / mag_std */
} ml_feedback;

/* Sizes and switches shared by both generations. For the later generation: input_size is
 * D + 1 (sequence models) or D (static linear), intermediate_size 0 without an MLP,
 * embedding = !no_embed, pos = ML_POS_ROPE, max_seq_len the config's sl (transformer) or 0,
 * num_layers the transformer blocks or LSTM layers (0 for static linear). */
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
    float *head_w; /* (K, C) seed: linear_head (K = 1); later: head_binary */
    float *head_b; /* (K) */
    /* the later generation only */
    float *mag_w;      /* (K, C) head_magnitude */
    float *mag_b;      /* (K) */
    float *magproj_w;  /* (C) mag_proj.weight (C, 1), no_embed */
    float *magproj_b;  /* (C) */
    float *lstm_wih;   /* (L, 4C, C) gates i, f, g, o */
    float *lstm_whh;   /* (L, 4C, C) */
    float *lstm_bih;   /* (L, 4C) */
    float *lstm_bhh;   /* (L, 4C) */
    float *proj_w;     /* (C, D) static linear */
    float *proj_b;     /* (C) */
} ml_params;

/* MetaLearnerConfig as it governs the pass: the pickled config's fields where the checkpoint
 * has one (from_config), checked against the tensors; else inferred from the tensors, the
 * mag_std buffer and the dataclass defaults. */
typedef struct ml_metalearner_config {
    ml_arch model_type;
    int x_sz;      /* D, the backbone's feature columns and the model's width */
    int n_heads;   /* transformer only */
    int n_layers;  /* blocks or LSTM layers */
    int int_sz;    /* MLP width when use_mlp */
    int sl;        /* maximum sequence length (the transformer's limit); 0 = unknown */
    int num_dims;  /* head width K */
    int use_mlp, no_embed, bias, logit_bias;
    float mag_std; /* feedback scale: prev = magnitude / mag_std */
    int from_config;
} ml_metalearner_config;

typedef struct ml_model {
    ml_generation generation;
    ml_model_config cfg;
    ml_metalearner_config meta; /* the later generation only */
    int feature_dim;            /* backbone columns the model takes */
    const char *heads_source;   /* where num_heads came from: "checkpoint", "--heads",
                                 * "default"; NULL for models without attention */
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
    float *fb_col;    /* (C) later generation: the magnitude column, Wembed[:, 0] or
                       * mag_proj.weight, so prev * fb_col is its share of the embedding */
    float *lstm_b;    /* (L, 4C) b_ih + b_hh, added once to the input projections */
    struct ml_gemm_set *gemm; /* the weight matrices prepared for the GEMM back end
                               * (src/model/gemm.h); NULL: OpenBLAS on params as loaded */
    int loaded_released;      /* ml_model_release_loaded_weights gave their memory back */
    char *path;
    const char *format; /* "safetensors" | "pytorch" */
    int synthetic;      /* the file's metadata says it is synthetic (the demo bundle) */
} ml_model;

#define ML_MAX_LAYERS 256
/* The head count when neither the checkpoint nor the operator gives one. */
#define ML_DEFAULT_HEADS 12

/* Loads a checkpoint, detects the generation from the state-dict names, the variant and every
 * size from the names and shapes (and the pickled config), and binds the weights.
 * heads_hint is the operator's --heads, 0 when not given: it is used when the checkpoint
 * records no head count (else ML_DEFAULT_HEADS), and refused, naming both values, when it
 * contradicts the count the checkpoint records. A config that contradicts the tensors is
 * refused naming both. Errors name the file and the tensor or field. */
int ml_model_load(ml_model *m, const char *path, int heads_hint, ml_err *err);
void ml_model_free(ml_model *m);

/* Layer outputs a forward pass can return. Seed: 0 = "embedding", 1 + i = "layer_<i>".
 * Later generation: 0 = "embed", 1 + i = "layer_<i>", then "ln_f" (the final LayerNorm);
 * static linear: "embed" and "ln_f", both its one representation LayerNorm(proj(x)). */
int ml_model_num_outputs(const ml_model *m);
/* Writes the name of output `index` into buf; returns buf. */
const char *ml_model_output_name(const ml_model *m, int index, char *buf, size_t len);
/* Index of a layer name, or -1. */
int ml_model_output_index(const ml_model *m, const char *name);
const char *ml_posenc_name(ml_posenc pos); /* "rope" | "learned_positions" */

/* The GEMM back end the model's passes run on, the build's choice (meson -Dgemm):
 * "openblas" | "onednn"; and the library behind it, e.g. "OpenBLAS SkylakeX kernels" or
 * "oneDNN 2.6.3 (brg:avx512_core)", into buf. */
const char *ml_model_gemm_backend(const ml_model *m);
const char *ml_model_gemm_library(const ml_model *m, char *buf, size_t len);
/* With the oneDNN back end the passes read only the prepared copies of the weight matrices:
 * this gives the memory of the loaded copies back to the system (about the model's size), for
 * a service that keeps one model for its lifetime. Those parameters (params.qkv_w, ...) must
 * not be read afterwards, and the model cannot be prepared for another back end. Returns the
 * bytes given back (0 with OpenBLAS). */
size_t ml_model_release_loaded_weights(ml_model *m);

/* Activation buffers for up to max_rows = B * S rows and sequences of up to max_seq trials
 * (lowered to ml_model_max_seq_len, if that is fewer), for either generation, allocated once
 * and reused by every forward call that uses this workspace. It also owns the threads that
 * run the non-GEMM work: as many as OpenBLAS uses (ml_blas_threads()) when it is made; each
 * call uses no more than OpenBLAS uses at that moment. One workspace serves one thread at a
 * time; the forward passes are reentrant across workspaces. */
typedef struct ml_workspace ml_workspace;
ml_workspace *ml_workspace_new(const ml_model *m, int max_rows, int max_seq, ml_err *err);
void ml_workspace_free(ml_workspace *ws);
/* Writes every buffer of the workspace once, so its pages are resident before the first
 * pass needs them (a service makes its workspace ready at start-up, not during a request). */
void ml_workspace_touch(ml_workspace *ws);

/* ---- The generic API (either generation) -------------------------------------------------- */

const char *ml_generation_name(ml_generation g); /* "seed" | "metalearner" */
const char *ml_arch_name(ml_arch a);             /* "transformer" | "lstm" | "static_linear" */
ml_arch ml_model_arch(const ml_model *m);
ml_feedback ml_model_feedback(const ml_model *m);
int ml_model_feature_dim(const ml_model *m); /* D the backbone must have */
int ml_model_width(const ml_model *m);       /* W: columns of every layer output and of encode */
int ml_model_logit_dims(const ml_model *m);  /* K: logits (and magnitudes) per trial */
int ml_model_has_magnitudes(const ml_model *m);
int ml_model_max_seq_len(const ml_model *m); /* 0: no limit of the model's own */

/* The representation of n items with no feedback, out (n, W): the output "embed" (seed:
 * "embedding") of a length-1 sequence. Seed: x @ Wemb[:, 2:]^T (+ b) (ml_embed_features);
 * later generation: encode(x) of the research code, x @ Wembed[:, 1:]^T + b, x + mag_proj.b
 * with no_embed, LayerNorm(proj(x)) for static linear. x is (n, D) raw features. These are
 * also the per-item encodings E an ml_batch may give instead of features. */
int ml_model_encode(const ml_model *m, const float *x, int n, float *out, ml_err *err);

/* B sequences of S trials. The trials' items come either as raw features x (B, S, D), or as
 * encodings E (n_items, W) from ml_model_encode with item indices (B, S) (computed once,
 * shared by every episode). feedback (B, S) is each trial's own outcome, seen by the next
 * trial: its label 0/1 (seed; non-zero counts as 1) or its magnitude y - m (later
 * generation, scaled by 1/mag_std inside); NULL feeds nothing (every trial as trial 0). */
typedef struct ml_batch {
    int B, S;
    const float *x;
    const float *E;
    const int *items;
    int n_items;
    const float *feedback;
} ml_batch;

/* Any pointer may be NULL (not wanted). outs: ml_model_num_outputs pointers, each NULL or
 * (B, S, W); logits and magnitudes (B, S, K). */
typedef struct ml_outputs {
    float **outs;
    float *logits;
    float *magnitudes; /* the later generation only (ml_model_has_magnitudes) */
} ml_outputs;

/* The eval-mode forward pass of either generation. Fails with a message when the batch does
 * not fit the workspace or the model (S beyond max_seq_len, an item out of range, magnitudes
 * asked of the seed), never on the numbers. */
int ml_model_forward(const ml_model *m, ml_workspace *ws, const ml_batch *in,
                     const ml_outputs *out, ml_err *err);

/* ---- The seed's entry points -------------------------------------------------------------- */

/* These take the seed's label columns; given a later-generation model they fail (or, for
 * ml_embed_episodes, write nothing) and say to use ml_model_forward. */

/* Eval-mode forward pass of B sequences of S trials of the seed's model.
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
