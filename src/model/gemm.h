/* The model's GEMMs behind ml_op_matmul (private to src/model/): out (N, OC) = inp (N, IC) @
 * W (OC, IC)^T (+ bias) (+ out), on the back end chosen when the project is built
 * (meson -Dgemm=openblas|onednn):
 *
 *   openblas  cblas_sgemm on the weights as loaded (always available; ml_op_matmul calls it
 *             directly, nothing here is used)
 *   onednn    oneDNN matmul primitives: every weight matrix the passes multiply by is
 *             reordered once, at load, into the blocked layout oneDNN's kernels prefer (a
 *             set, owned by the model); each workspace then keeps the primitives of the
 *             shapes it has run (made on first use, reused after) and their scratch memory.
 *
 * Everything else that multiplies matrices (CKA, Gram matrices, the bootstrap, the LSTM's
 * per-step recurrence, the Wo Wv fusion at load) stays on OpenBLAS. */
#ifndef METALIGN_MODEL_GEMM_H
#define METALIGN_MODEL_GEMM_H

#include <stddef.h>

#include "metalign/err.h"

typedef enum ml_gemm_backend { ML_GEMM_OPENBLAS, ML_GEMM_ONEDNN } ml_gemm_backend;

/* The back end the build chose for the model's GEMMs. */
ml_gemm_backend ml_gemm_build_backend(void);
/* "openblas" | "onednn" */
const char *ml_gemm_backend_name(ml_gemm_backend b);
/* Whether this build can run b (OpenBLAS always; oneDNN when built with -Dgemm=onednn). */
int ml_gemm_available(ml_gemm_backend b);
/* The library's version and the instruction set its kernels use, e.g. "oneDNN 2.6.3,
 * avx512_core", into buf; "" for OpenBLAS. */
const char *ml_gemm_describe(ml_gemm_backend b, char *buf, size_t len);

/* A model's weight matrices, prepared for a back end; read-only once made, shared by every
 * thread. */
typedef struct ml_gemm_set ml_gemm_set;

ml_gemm_set *ml_gemm_set_new(ml_gemm_backend b, ml_err *err);
/* Prepares w (OC rows of IC floats, row stride ldw >= IC: a column slice of a wider matrix
 * is its own entry) for out = inp @ w^T. Adding the same matrix again is a no-op. */
int ml_gemm_set_add(ml_gemm_set *s, const float *w, int ldw, int OC, int IC, ml_err *err);
void ml_gemm_set_free(ml_gemm_set *s);
ml_gemm_backend ml_gemm_set_backend(const ml_gemm_set *s);
size_t ml_gemm_set_bytes(const ml_gemm_set *s); /* the prepared copies */
int ml_gemm_set_count(const ml_gemm_set *s);
/* A number no other set of this process has had (0 for NULL): what a workspace checks it
 * was made for, since a freed set's address may come back. */
unsigned long ml_gemm_set_id(const ml_gemm_set *s);

/* Gives the memory of the loaded copies of the set's contiguous matrices (row stride == row
 * length) back to the system, whole pages only (the prepared copies are what the passes
 * read); returns the bytes given back. After this, a prepared matrix reaches OpenBLAS only
 * through ml_gemm_unpack. */
size_t ml_gemm_set_drop_plain(ml_gemm_set *s);
/* Whether w's loaded copy was given back (w one of the set's matrices, or inside one). */
int ml_gemm_set_dropped(const ml_gemm_set *s, const float *w, int ldw, int OC, int IC);
/* out (OC, IC), row stride IC = the prepared copy of w, back in the loaded layout. */
int ml_gemm_unpack(const ml_gemm_set *s, const float *w, int ldw, int OC, int IC, float *out,
                   ml_err *err);

/* One thread's primitives (by shape) and scratch memory over a set: a workspace owns one. */
typedef struct ml_gemm_ctx ml_gemm_ctx;

ml_gemm_ctx *ml_gemm_ctx_new(const ml_gemm_set *s, ml_err *err);
void ml_gemm_ctx_free(ml_gemm_ctx *c);
const ml_gemm_set *ml_gemm_ctx_set(const ml_gemm_ctx *c);
/* Calls that fell back to OpenBLAS (a matrix not in the set, or a oneDNN failure). */
long ml_gemm_ctx_fallbacks(const ml_gemm_ctx *c);

/* out (N, OC) = inp (N, IC) @ w^T (+ bias (OC)) (+ out when accumulate), on `threads`
 * threads, when w (with this ldw, OC, IC) is one of the set's matrices. Returns 0 when done,
 * -1 when the caller must compute it another way (out untouched), -2 when the library
 * failed while computing (out undefined: a bug, not bad input). */
int ml_gemm_run(ml_gemm_ctx *c, int threads, float *out, const float *inp, const float *w,
                int ldw, const float *bias, int N, int IC, int OC, int accumulate);

#endif
