/* The CKA side of the app: the target and every representation (the backbone baseline, then
 * the embedding and each block over all items) prepared once, on first use, and shared
 * read-only by every request afterwards; the representation-by-representation matrices
 * likewise. */
#ifndef METALIGN_CKA_CACHE_H
#define METALIGN_CKA_CACHE_H

#include "metalign/cka.h"
#include "metalign/err.h"
#include "util/once.h"

struct ml_app;
struct ml_worker;

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

/* Prepares target and representations (computing the all-item activations if needed). */
int ml_cka_cache_prepare(struct ml_app *app, struct ml_worker *w, ml_err *err);
/* Both matrices (after prepare). */
int ml_cka_cache_matrices(struct ml_app *app, ml_err *err);
/* Name of representation i: "backbone", "embedding", "layer_0", ... */
const char *ml_cka_rep_name(const struct ml_app *app, int i, char *buf, size_t len);

#endif
