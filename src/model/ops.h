/* The operations every forward pass is built from (private to src/model/), in the manner of
 * llm.c: one plain function per operation over all N = B*S rows at once, shapes in the
 * comments. Linears are single GEMMs (row-major, W^T: cblas_sgemm, or oneDNN's matmul with
 * -Dgemm=onednn, model/gemm.h); the rest runs on a thread pool (ml_par), with kernels compiled per instruction set (model/vec.h).
 *
 * Numerics follow torch's CPU kernels where the order matters: LayerNorm as
 * (x * rstd - mean * rstd) * w + b with the biased variance, GELU as
 * x * 0.5 * (1 + erf(x / sqrt(2))) with ATen's vectorised erf, attention scores scaled by
 * 1/sqrt(d) before a max-subtracted softmax that multiplies by 1/sum. */
#ifndef METALIGN_MODEL_OPS_H
#define METALIGN_MODEL_OPS_H

#include <stddef.h>

#include "model/pool.h"

struct ml_gemm_ctx;

/* Where the work of one call runs: a pool and how many of its threads to use, and the GEMM
 * back end's per-thread state (model/gemm.h; NULL: OpenBLAS). Every operation but attention
 * also takes NULL, or a NULL pool: it then runs on the calling thread. */
typedef struct ml_par {
    ml_pool *pool;
    int threads;
    struct ml_gemm_ctx *gemm;
} ml_par;

/* Rows per chunk: a few chunks per thread, so a preempted thread does not hold up the rest. */
long ml_row_grain(const ml_par *p, long n);

/* 64-byte aligned floats (n may be 0); free() releases them. */
float *ml_alloc_floats(size_t n);

/* out (N, OC) = inp (N, IC) @ w (OC, IC)^T (+ bias); accumulate: out += instead of out =.
 * w may be a column slice of a wider matrix (row stride ldw). On the build's back end when
 * p->gemm holds w (the model's prepared matrices), else cblas_sgemm. */
void ml_op_matmul(const ml_par *p, float *out, const float *inp, const float *w, int ldw,
                  const float *bias, int N, int IC, int OC, int accumulate);

/* out (N, C) = LayerNorm(inp (N, C)) * w + b, eps 1e-5, biased variance; out may be inp. */
void ml_op_layernorm(const ml_par *p, float *out, const float *inp, const float *w,
                     const float *b, int N, int C);

/* x (n) = gelu(x), the exact erf form. */
void ml_op_gelu(const ml_par *p, float *x, long n);

/* dst (n) = src (n). */
void ml_op_copy(const ml_par *p, float *dst, const float *src, long n);

/* out (N, K) = x (N, C) @ w (K, C)^T + b (K, or NULL): the output heads, K small. */
void ml_op_heads(const ml_par *p, float *out, const float *x, const float *w, const float *b,
                 int N, int C, int K);

/* One LSTM time step for B sequences, torch's gate order (i, f, g, o):
 *   gates (B rows of stride ldg) = [i | f | g | o] pre-activations (4C each row)
 *   c (B, C)  = sigmoid(f) * c + sigmoid(i) * tanh(g)      (updated in place)
 *   h (B rows of stride ldh) = sigmoid(o) * tanh(c) */
void ml_op_lstm_cell(const ml_par *p, const float *gates, size_t ldg, float *c, float *h,
                     size_t ldh, int B, int C);

/* Causal multi-head attention over sequences of up to max_seq trials: per-thread tiles and,
 * for RoPE, the rotation tables expanded per element of a head. */
typedef struct ml_attn {
    int C, H, d, max_seq;
    int Sp, dp;               /* row length of the key tiles; head size rounded up to VL */
    float *rope_cx, *rope_sx; /* (max_seq, dp) cos, cos and -sin, sin per pair; NULL: no RoPE */
    float *scratch;           /* per thread */
    size_t scratch_floats;
    int threads;
} ml_attn;

/* rope_cos / rope_sin (>= max_seq, d/2) are the model's tables, or NULL for no rotation.
 * Returns -1 when out of memory. */
int ml_attn_init(ml_attn *a, int C, int H, int max_seq, const float *rope_cos,
                 const float *rope_sin, int threads);
void ml_attn_free(ml_attn *a);

/* out (B, S, C) = concat over heads of causal softmax(q k^T / sqrt(d)) v, from
 * qkv (B, S, 3C) = [q | k | v], q and k rotated first with RoPE. 1 < S <= max_seq. */
void ml_op_attention(const ml_par *p, const ml_attn *a, float *out, const float *qkv, int B,
                     int S);

#endif
