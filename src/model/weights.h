/* Binding a checkpoint's tensors to the model (private to src/model and its tests). */
#ifndef METALIGN_MODEL_WEIGHTS_H
#define METALIGN_MODEL_WEIGHTS_H

#include "io/tensorset.h"
#include "metalign/model.h"

/* Any larger dimension is not a model this service can hold; it also keeps int maths safe. */
#define ML_MAX_DIM (1 << 20)
/* RoPE tables cover at least this many positions; the weights set no limit. */
#define ML_ROPE_MIN_LEN 4096

/* ml_model_load without the file: detects the generation and variant from ts's names, shapes
 * and metadata and copies the weights into one parameter buffer. */
int ml_model_from_tensorset(ml_model *m, const ml_tensorset *ts, int heads_hint, ml_err *err);

/* Prepares the matrices the passes multiply by for a GEMM back end (an ml_gemm_backend,
 * model/gemm.h) into m->gemm, replacing what was there; OpenBLAS needs nothing (m->gemm =
 * NULL). ml_model_from_tensorset does it for the build's back end; benchmarks call it again
 * to compare back ends on one model. */
int ml_model_prepare_gemm(ml_model *m, int backend, ml_err *err);

/* ---- shared by weights.c (the seed) and weights_ml.c (the later generation) ---------------- */

/* Walks every parameter of a variant in params_memory order. With mem == NULL it only checks
 * names and shapes, marks the tensors it uses and counts the floats; with mem set it also
 * reads each tensor into place and sets the ml_params pointers. */
typedef struct ml_binder {
    const ml_tensorset *ts;
    char *used;        /* per tensor of ts */
    float *mem;
    size_t off;
    char context[160]; /* what the other tensors say, for shape messages */
} ml_binder;

/* One tensor (layers == 0: named `suffix`) or one per layer, stacked (named
 * prefix<i>suffix), of shape (d0) or (d0, d1). */
int ml_bind_take(ml_binder *b, float **field, int layers, const char *prefix, const char *suffix,
                 int ndim, int64_t d0, int64_t d1, ml_err *err);

typedef int (*ml_walk_fn)(ml_binder *b, ml_model *m, ml_err *err);

/* Both passes of walk, with a check between them that every tensor of ts is either bound or
 * accepted by ignored(name); what names the architecture in that message. */
int ml_bind_params(ml_model *m, const ml_tensorset *ts, ml_walk_fn walk,
                   int (*ignored)(const char *name), const char *what, ml_err *err);

void ml_shape_str(char *buf, size_t len, int ndim, const int64_t *shape);

/* Size `axis` of tensor `name` (which must have ndim dimensions), in 1..ML_MAX_DIM. */
int ml_tensor_dim(const ml_tensorset *ts, const char *name, int ndim, int axis, int *out,
                  const char *what, ml_err *err);

/* Blocks `prefix<i>.`: the indices must run 0..L-1 without a gap; *layers = 0 when there are
 * none. */
int ml_count_indexed(const ml_tensorset *ts, const char *prefix, char terminator, int *layers,
                     ml_err *err);

/* The head count: the one the checkpoint records under `key` (refusing a contradicting
 * heads_hint, naming both), else heads_hint, else ML_DEFAULT_HEADS; *source says which. */
int ml_resolve_heads(const ml_tensorset *ts, const char *key, int heads_hint, int *heads,
                     const char **source, ml_err *err);

/* The RoPE tables (len positions) and the fused Wo Wv of the length-1 pass, from the bound
 * parameters. */
int ml_rope_tables(ml_model *m, int len, ml_err *err);
int ml_fused_value_output(ml_model *m, ml_err *err);

/* The later generation: 1 when ts's names or its config say it is (*why: an example). */
int ml_is_later_generation(const ml_tensorset *ts, const char **why);
/* Binds a later-generation checkpoint (weights_ml.c). */
int ml_bind_metalearner(ml_model *m, const ml_tensorset *ts, int heads_hint, ml_err *err);

#endif
