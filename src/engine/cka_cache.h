/* The CKA side of the running world: the target and every representation (the backbone
 * baseline, then each model output over all items) prepared once, on first use, and shared
 * read-only by every request afterwards; the representation-by-representation matrices
 * likewise. It is given what it needs; it knows nothing of its owner. */
#ifndef METALIGN_ENGINE_CKA_CACHE_H
#define METALIGN_ENGINE_CKA_CACHE_H

#include "metalign/cka.h"
#include "metalign/dataset.h"
#include "metalign/err.h"
#include "util/once.h"

typedef struct ml_cka_cache {
    ml_once prepared;
    ml_cka_target *target;
    int n_reps;           /* 1 + model outputs: [0] backbone, [1 + i] model output i */
    ml_cka_rep **reps;
    ml_once matrices;
    double *linear;       /* (n_reps, n_reps) */
    double *debiased;
} ml_cka_cache;

ml_cka_cache *ml_cka_cache_new(void);
void ml_cka_cache_free(ml_cka_cache *c);

/* Prepares the target (d->Y) and the representations: d->X (the baseline) and outs[i]
 * (n_items, hidden) for i < n_outputs. Runs once; later calls return the first outcome. */
int ml_cka_cache_prepare(ml_cka_cache *c, const ml_dataset *d, const float *const *outs,
                         int n_outputs, int hidden, ml_err *err);
int ml_cka_cache_ready(ml_cka_cache *c);
/* Both matrices (after prepare), computed once. */
int ml_cka_cache_matrices(ml_cka_cache *c, ml_err *err);
int ml_cka_cache_matrices_ready(ml_cka_cache *c);

#endif
