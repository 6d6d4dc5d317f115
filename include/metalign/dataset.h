/* The items and their two representations (MODEL.md section 1): backbone features X and
 * targets Y, row i of both is concept i, plus what the episode sampler needs (standardised X,
 * torch-style lower medians of Y). Loaded once at start-up and read-only afterwards. */
#ifndef METALIGN_DATASET_H
#define METALIGN_DATASET_H

#include <stdint.h>

#include "metalign/err.h"

typedef struct ml_data_paths {
    const char *backbone;      /* .npz / .npy / .h5: per image (with things_images) or per
                                * concept */
    const char *targets;       /* SPoSE: whitespace text or .npy */
    const char *item_ids;      /* unique_id.txt: one concept name per line, SPoSE row order */
    const char *things_images; /* NULL, the THINGS image folder, or a list file of paths */
} ml_data_paths;

typedef struct ml_dataset {
    int n_items;
    char **ids;            /* (n_items) */
    int backbone_dim;      /* D */
    float *X;              /* (n_items, D) raw aligned backbone features */
    float *X_std;          /* (n_items, D) (X - mean) / (std + 1e-8), std with n - 1 */
    int target_dims;       /* K */
    float *Y;              /* (n_items, K) */
    float *median;         /* (K) torch.median: the lower middle value for even n */
    int64_t backbone_rows; /* rows in the backbone file (per image or per concept) */
    int per_image;         /* rows were selected through the image list */
    char *backbone_path;
    char *targets_path;
    char *ids_path;
    char *images_path;
    void *id_index;        /* id -> index lookup (opaque) */
} ml_dataset;

/* Loads and aligns everything; every error names the file and the fix. */
int ml_dataset_load(ml_dataset *d, const ml_data_paths *p, ml_err *err);
void ml_dataset_free(ml_dataset *d);

/* Index of an item id, or -1. */
int ml_dataset_find(const ml_dataset *d, const char *id);

#endif
