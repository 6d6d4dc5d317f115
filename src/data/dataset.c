/* Dataset assembly (include/metalign/dataset.h): ids, targets and backbone rows aligned as
 * MODEL.md section 1 says, plus the standardised features and medians the sampler needs. */
#include "metalign/dataset.h"

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "io/hdf5.h"
#include "io/npy.h"
#include "io/textmat.h"
#include "data/things.h"

/* id -> index: open addressing over the ids, slots hold index + 1 (0 = empty). */
typedef struct id_index {
    int *slots;
    size_t mask;
} id_index;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static id_index *id_index_build(char *const *ids, int n) {
    id_index *x = malloc(sizeof *x);
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap *= 2;
    if (!x || !(x->slots = calloc(cap, sizeof *x->slots))) {
        free(x);
        return NULL;
    }
    x->mask = cap - 1;
    for (int i = 0; i < n; i++) {
        size_t h = hash_str(ids[i]) & x->mask;
        while (x->slots[h]) h = (h + 1) & x->mask;
        x->slots[h] = i + 1;
    }
    return x;
}

int ml_dataset_find(const ml_dataset *d, const char *id) {
    const id_index *x = d->id_index;
    if (!x || !id) return -1;
    for (size_t h = hash_str(id) & x->mask; x->slots[h]; h = (h + 1) & x->mask)
        if (!strcmp(d->ids[x->slots[h] - 1], id)) return x->slots[h] - 1;
    return -1;
}

void ml_dataset_free(ml_dataset *d) {
    ml_strv_free(d->ids, d->ids ? (size_t)d->n_items : 0);
    free(d->X);
    free(d->X_std);
    free(d->Y);
    free(d->median);
    free(d->backbone_path);
    free(d->targets_path);
    free(d->ids_path);
    free(d->images_path);
    free(d->col_mean);
    free(d->col_scale);
    if (d->images) ml_imagelist_free(d->images);
    free(d->images);
    if (d->id_index) free(((id_index *)d->id_index)->slots);
    free(d->id_index);
    memset(d, 0, sizeof *d);
}

/* .npy / .npz by their magic bytes, anything else is text. */
static int is_numpy_file(const char *path) {
    unsigned char b[6] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    return (n == 6 && !memcmp(b, "\x93NUMPY", 6)) || (n >= 4 && !memcmp(b, "PK\x03\x04", 4));
}

static int load_targets(ml_dataset *d, const char *path, ml_err *err) {
    float *y;
    int64_t rows, cols;
    if (is_numpy_file(path)) {
        if (ml_npmat_read(path, NULL, 0, &y, &rows, &cols, err)) return -1;
    } else if (ml_textmat_read(path, &y, &rows, &cols, err)) {
        return -1;
    }
    d->Y = y;
    if (rows != d->n_items) {
        return ml_errf(err, "%s has %lld rows but %s has %d ids; the targets need one row per "
                            "id, in the same order",
                       path, (long long)rows, d->ids_path, d->n_items);
    }
    if (cols > INT_MAX) return ml_errf(err, "%s: too many columns", path);
    d->target_dims = (int)cols;
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(y[i]))
            return ml_errf(err, "%s: row %lld, column %lld is not a finite number", path,
                           (long long)(i / cols), (long long)(i % cols));
    return 0;
}

/* A backbone matrix: .npy / .npz (numpy) or .h5 / .hdf5 (HDF5, MODEL.md section 7), opened
 * for rows on demand. */
typedef struct backbone {
    int hdf5;
    ml_npmat np;
    ml_h5mat h5;
    int64_t rows, cols;
} backbone;

static int ends_with_ci(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

static int backbone_open(backbone *b, const char *path, ml_err *err) {
    memset(b, 0, sizeof *b);
    b->hdf5 = ends_with_ci(path, ".h5") || ends_with_ci(path, ".hdf5") || ml_h5_is_hdf5(path);
    if (b->hdf5) {
        if (ml_h5mat_open(&b->h5, path, err)) return -1;
        b->rows = b->h5.rows;
        b->cols = b->h5.cols;
        return 0;
    }
    if (ml_npmat_open(&b->np, path, err)) return -1;
    b->rows = b->np.rows;
    b->cols = b->np.cols;
    return 0;
}

static int backbone_read_rows(backbone *b, const int64_t *rows, size_t n, float *out,
                              ml_err *err) {
    return b->hdf5 ? ml_h5mat_read_rows(&b->h5, rows, n, out, err)
                   : ml_npmat_read_rows(&b->np, rows, n, out, err);
}

static void backbone_free(backbone *b) {
    if (b->hdf5)
        ml_h5mat_free(&b->h5);
    else
        ml_npmat_free(&b->np);
}

/* The backbone rows of the ids: all rows of a per-concept file, or each concept's first
 * image of a per-image file (through the image list). */
static int load_backbone(ml_dataset *d, const ml_data_paths *p, ml_err *err) {
    backbone m;
    if (backbone_open(&m, p->backbone, err)) return -1;
    d->backbone_rows = m.rows;
    int64_t *rows = NULL;
    int rc = 0;
    if (p->things_images) {
        ml_imagelist l;
        rc = ml_things_load(&l, p->things_images, err);
        if (rc == 0 && (int64_t)l.n != m.rows)
            rc = ml_errf(err,
                         "%s has %lld rows but %s has %zu images (<concept>/<file>.jpg); a "
                         "per-image backbone has one row per image in sorted path order: use "
                         "the image folder (or list) the features were computed from%s",
                         p->backbone, (long long)m.rows, p->things_images, l.n,
                         m.rows == d->n_items ? ", or drop --things-images: the backbone "
                                                "already has one row per id"
                                              : "");
        if (rc == 0 && !(rows = malloc((size_t)d->n_items * sizeof *rows)))
            rc = ml_errf(err, "out of memory");
        if (rc == 0)
            rc = ml_things_align(&l, p->things_images, d->ids, (size_t)d->n_items, d->ids_path,
                                 rows, err);
        if (rc == 0) {
            d->per_image = 1;
            /* kept (sorted, row i = image i) for ml_dataset_image_row */
            if (!(d->images = malloc(sizeof l))) rc = ml_errf(err, "out of memory");
        }
        if (d->images)
            memcpy(d->images, &l, sizeof l);
        else
            ml_imagelist_free(&l);
    } else if (m.rows != d->n_items) {
        rc = ml_errf(err,
                     "%s has %lld rows but %s has %d ids; a per-image backbone needs "
                     "--things-images (the THINGS image folder or a list of its image paths) "
                     "to pick each concept's first image, a per-concept one exactly one row "
                     "per id",
                     p->backbone, (long long)m.rows, d->ids_path, d->n_items);
    }
    if (rc == 0 && m.cols > INT_MAX) rc = ml_errf(err, "%s: too many columns", p->backbone);
    if (rc == 0) {
        d->backbone_dim = (int)m.cols;
        d->X = malloc((size_t)d->n_items * (size_t)m.cols * sizeof *d->X);
        if (!d->X) rc = ml_errf(err, "%s: out of memory", p->backbone);
    }
    if (rc == 0) rc = backbone_read_rows(&m, rows, (size_t)d->n_items, d->X, err);
    free(rows);
    backbone_free(&m);
    if (rc) return -1;
    size_t n = (size_t)d->n_items * (size_t)d->backbone_dim;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(d->X[i]))
            return ml_errf(err, "%s: the features of '%s' (column %zu) are not finite",
                           p->backbone, d->ids[i / (size_t)d->backbone_dim],
                           i % (size_t)d->backbone_dim);
    return 0;
}

/* One row standardised as X_std is: in double, then rounded to float. */
static void standardize_row(const ml_dataset *d, const float *x, float *out) {
    for (int j = 0; j < d->backbone_dim; j++)
        out[j] = (float)((x[j] - d->col_mean[j]) / d->col_scale[j]);
}

/* X_std = (X - mean) / (std + 1e-8) per column, std the n - 1 estimate, in double. */
static int standardize(ml_dataset *d, ml_err *err) {
    size_t n = (size_t)d->n_items, D = (size_t)d->backbone_dim;
    double *mean = calloc(D, sizeof *mean), *var = calloc(D, sizeof *var);
    d->X_std = malloc(n * D * sizeof *d->X_std);
    d->col_mean = mean;
    d->col_scale = var;
    if (!mean || !var || !d->X_std) return ml_errf(err, "out of memory");
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < D; j++) mean[j] += d->X[i * D + j];
    for (size_t j = 0; j < D; j++) mean[j] /= (double)n;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < D; j++) {
            double c = d->X[i * D + j] - mean[j];
            var[j] += c * c;
        }
    for (size_t j = 0; j < D; j++) var[j] = sqrt(var[j] / (double)(n - 1)) + 1e-8;
    for (size_t i = 0; i < n; i++) standardize_row(d, d->X + i * D, d->X_std + i * D);
    return 0;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* torch.median: the lower of the two middle values for an even count. */
static int medians(ml_dataset *d, ml_err *err) {
    size_t n = (size_t)d->n_items, K = (size_t)d->target_dims;
    float *col = malloc(n * sizeof *col);
    d->median = malloc((K ? K : 1) * sizeof *d->median);
    if (!col || !d->median) {
        free(col);
        return ml_errf(err, "out of memory");
    }
    for (size_t k = 0; k < K; k++) {
        for (size_t i = 0; i < n; i++) col[i] = d->Y[i * K + k];
        qsort(col, n, sizeof *col, cmp_float);
        d->median[k] = col[(n - 1) / 2];
    }
    free(col);
    return 0;
}

static int copy_paths(ml_dataset *d, const ml_data_paths *p, ml_err *err) {
    d->backbone_path = strdup(p->backbone);
    d->targets_path = strdup(p->targets);
    d->ids_path = strdup(p->item_ids);
    d->images_path = p->things_images ? strdup(p->things_images) : NULL;
    if (!d->backbone_path || !d->targets_path || !d->ids_path ||
        (p->things_images && !d->images_path))
        return ml_errf(err, "out of memory");
    return 0;
}

int ml_dataset_load(ml_dataset *d, const ml_data_paths *p, ml_err *err) {
    memset(d, 0, sizeof *d);
    if (!p->backbone || !p->targets || !p->item_ids)
        return ml_errf(err, "the %s file is not set",
                       !p->backbone ? "backbone" : !p->targets ? "targets" : "item ids");
    char **ids;
    size_t n_ids;
    if (copy_paths(d, p, err) || ml_idlist_read(p->item_ids, &ids, &n_ids, err)) goto fail;
    if (n_ids > INT_MAX || n_ids < 2) {
        ml_strv_free(ids, n_ids);
        ml_errf(err, "%s: %zu ids; at least 2 are needed (and fewer than 2^31)", p->item_ids,
                n_ids);
        goto fail;
    }
    d->ids = ids;
    d->n_items = (int)n_ids;
    if (load_targets(d, p->targets, err) || load_backbone(d, p, err) || standardize(d, err) ||
        medians(d, err))
        goto fail;
    if (!(d->id_index = id_index_build(d->ids, d->n_items))) {
        ml_errf(err, "out of memory");
        goto fail;
    }
    return 0;
fail:
    ml_dataset_free(d);
    return -1;
}

static int cmp_image(const void *key, const void *elem) {
    const ml_image *a = key, *b = elem;
    int c = strcmp(a->concept, b->concept);
    return c ? c : strcmp(a->file, b->file);
}

int64_t ml_dataset_image_row(const ml_dataset *d, const char *concept, const char *file) {
    const ml_imagelist *l = d->images;
    if (!l || !concept || !file) return -1;
    /* The list is sorted by (concept, file), each compared as bytes: strcmp's order. */
    ml_image key = {(char *)concept, (char *)file, 0};
    const ml_image *hit = bsearch(&key, l->items, l->n, sizeof *l->items, cmp_image);
    return hit ? (int64_t)(hit - l->items) : -1;
}

int ml_dataset_read_std_rows(const ml_dataset *d, const int64_t *rows, size_t n, float *out,
                             ml_err *err) {
    size_t D = (size_t)d->backbone_dim;
    for (size_t i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= d->backbone_rows)
            return ml_errf(err, "%s: row %lld is out of range (the file has %lld rows)",
                           d->backbone_path, (long long)rows[i], (long long)d->backbone_rows);
    ml_npmat m;
    if (ml_npmat_open(&m, d->backbone_path, err)) return -1;
    int rc = 0;
    if (m.rows != d->backbone_rows || m.cols != (int64_t)D)
        rc = ml_errf(err,
                     "%s is now %lld x %lld but was %lld x %zu when the daemon started; "
                     "restart it after replacing the backbone",
                     d->backbone_path, (long long)m.rows, (long long)m.cols,
                     (long long)d->backbone_rows, D);
    if (rc == 0) rc = ml_npmat_read_rows(&m, rows, n, out, err);
    ml_npmat_free(&m);
    if (rc) return -1;
    for (size_t i = 0; i < n; i++) {
        float *x = out + i * D;
        for (size_t j = 0; j < D; j++)
            if (!isfinite(x[j]))
                return ml_errf(err, "%s: row %lld (column %zu) is not finite", d->backbone_path,
                               (long long)rows[i], j);
        standardize_row(d, x, x);
    }
    return 0;
}
