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
    double *col_mean;      /* (D) mean of X's columns (over the n_items aligned rows) */
    double *col_scale;     /* (D) their n - 1 standard deviation + 1e-8 */
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
    void *images;          /* per_image: the sorted image list, row i = image i (opaque) */
} ml_dataset;

/* Loads and aligns everything; every error names the file and the fix. */
int ml_dataset_load(ml_dataset *d, const ml_data_paths *p, ml_err *err);
void ml_dataset_free(ml_dataset *d);

/* Index of an item id, or -1. */
int ml_dataset_find(const ml_dataset *d, const char *id);

/* ---- single images of a per-image backbone (the replay's "exact" mapping) ----------------
 * Only the aligned concept rows are kept in memory; a per-image backbone's other rows are
 * read from the file when asked for. */

/* The backbone row of image <concept>/<file> (as in the image list: folder and file name),
 * or -1 when the backbone is not per image or the list has no such image. */
int64_t ml_dataset_image_row(const ml_dataset *d, const char *concept, const char *file);

/* Reads backbone rows rows[i] (i < n, any order, repeats allowed) from the backbone file and
 * standardises them with the aligned rows' col_mean / col_scale, in double then rounded to
 * float as X_std is: out (n, D). The statistics are the concept rows', not all images', so
 * that a concept's first image gives exactly its X_std row, and an image and the concepts
 * the model was shown during meta-training share one scale. Fails (naming the file) when a
 * row is out of range, a value is not finite, or the file no longer has the shape it had at
 * load time. Reentrant: each call opens the file itself. */
int ml_dataset_read_std_rows(const ml_dataset *d, const int64_t *rows, size_t n, float *out,
                             ml_err *err);

#endif
