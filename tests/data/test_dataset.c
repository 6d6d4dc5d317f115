/* Dataset assembly against numpy/torch (make_io_fixtures.py): a per-image backbone aligned
 * through the THINGS-like tree or a list file gives exactly numpy's rows; X_std and the
 * medians match torch's (X - mean) / (std + 1e-8) and torch.median; a per-concept backbone
 * needs no image list; every inconsistency fails naming the files and the counts. */
#include "io/npy.h"
#include "io/textmat.h"
#include "metalign/dataset.h"
#include "things_tree.h"

static float *load_npy(const char *path, int64_t *rows, int64_t *cols) {
    float *x = NULL;
    ml_err err;
    if (ml_npmat_read(path, NULL, 0, &x, rows, cols, &err)) printf("# %s\n", err.msg);
    return x;
}

/* X exactly (it is copied, not computed), X_std to float rounding, medians exactly. */
static void check_stats(const ml_dataset *d, const char *x_path, const char *xstd_path,
                        const char *med_path) {
    int64_t r, c;
    size_t n = (size_t)d->n_items * (size_t)d->backbone_dim;
    if (x_path) {
        float *x = load_npy(x_path, &r, &c);
        CHECK(x && r == d->n_items && c == d->backbone_dim);
        for (size_t i = 0; x && i < n; i++)
            CHECK_MSG(d->X[i] == x[i], "X[%zu] = %g, numpy %g", i, d->X[i], x[i]);
        free(x);
    }
    float *xs = load_npy(xstd_path, &r, &c);
    CHECK(xs && r == d->n_items && c == d->backbone_dim);
    for (size_t i = 0; xs && i < n; i++) CHECK_NEAR(d->X_std[i], xs[i], 2e-6, 2e-6);
    free(xs);
    float *med = load_npy(med_path, &r, &c);
    CHECK(med && r == 1 && c == d->target_dims);
    for (int k = 0; med && k < d->target_dims; k++)
        CHECK_MSG(d->median[k] == med[k], "median[%d] = %g, torch %g", k, d->median[k], med[k]);
    free(med);
}

static void check_things(const char *backbone, const char *images) {
    ml_data_paths p = {.backbone = backbone,
                       .targets = FIXTURE("data/things_targets.txt"),
                       .item_ids = FIXTURE("data/things_ids.txt"),
                       .things_images = images};
    ml_dataset d;
    ml_err err = {""};
    CHECK_MSG(ml_dataset_load(&d, &p, &err) == 0, "%s", err.msg);
    if (!d.X) return;
    CHECK(d.n_items == 16 && d.backbone_dim == 8 && d.target_dims == 4);
    CHECK(d.per_image == 1 && d.backbone_rows == 35);
    check_stats(&d, FIXTURE("data/things_expect_X.npy"), FIXTURE("data/things_expect_Xstd.npy"),
                FIXTURE("data/things_expect_median.npy"));
    for (int i = 0; i < d.n_items; i++) CHECK(ml_dataset_find(&d, d.ids[i]) == i);
    CHECK(ml_dataset_find(&d, "caf") == -1 && ml_dataset_find(&d, "") == -1);
    CHECK(!strcmp(d.ids[0], "link") && ml_dataset_find(&d, "caf\xc3\xa9") >= 0);
    CHECK(!strcmp(d.backbone_path, backbone) && !strcmp(d.images_path, images));
    ml_dataset_free(&d);
}

static void test_per_image_backbone(void) {
    char *root = things_tree_build();
    CHECK(root != NULL);
    check_things(FIXTURE("data/things_backbone.npz"), root);
    check_things(FIXTURE("data/things_backbone_deflated.npz"), root);
    things_tree_remove(root);
    check_things(FIXTURE("data/things_backbone.npz"), FIXTURE("data/things_list.txt"));
}

static void expect_error(const char *backbone, const char *targets, const char *ids,
                         const char *images, const char *msg1, const char *msg2);

/* HDF5 backbones (tests/reference/make_hdf5_fixtures.py) follow the .npz rules: per image
 * through the image list, in both layouts; float32 and float64 files give numpy's X exactly,
 * float16 ones numpy's float16 rounding of it. */
static void test_hdf5_backbones(void) {
    static const char *const layouts[] = {"repr", "images"};
    for (int l = 0; l < 2; l++) {
        char path[512];
        snprintf(path, sizeof path, "%s", FIXTUREF("data/h5_%s_f32.h5", layouts[l]));
        check_things(path, FIXTURE("data/things_list.txt"));
        snprintf(path, sizeof path, "%s", FIXTUREF("data/h5_%s_f64.h5", layouts[l]));
        check_things(path, FIXTURE("data/things_list.txt"));
        snprintf(path, sizeof path, "%s", FIXTUREF("data/h5_%s_f16.h5", layouts[l]));
        ml_data_paths p = {.backbone = path,
                           .targets = FIXTURE("data/things_targets.txt"),
                           .item_ids = FIXTURE("data/things_ids.txt"),
                           .things_images = FIXTURE("data/things_list.txt")};
        ml_dataset d;
        ml_err err = {""};
        CHECK_MSG(ml_dataset_load(&d, &p, &err) == 0, "%s", err.msg);
        if (!d.X) continue;
        int64_t r, c;
        float *want = load_npy(FIXTURE("data/h5_f16_expect_X.npy"), &r, &c);
        CHECK(want && r == d.n_items && c == d.backbone_dim && d.per_image == 1);
        for (int64_t i = 0; want && i < r * c; i++)
            CHECK_MSG(d.X[i] == want[i], "%s: X[%lld] = %g, numpy %g", path, (long long)i,
                      d.X[i], want[i]);
        free(want);
        ml_dataset_free(&d);
    }
    /* already aligned: one row per id, no image list */
    ml_data_paths p = {.backbone = FIXTURE("data/h5_aligned.h5"),
                       .targets = FIXTURE("data/aligned_targets.npy"),
                       .item_ids = FIXTURE("data/aligned_ids.txt")};
    ml_dataset d;
    ml_err err = {""};
    CHECK_MSG(ml_dataset_load(&d, &p, &err) == 0, "%s", err.msg);
    if (d.X) {
        CHECK(d.n_items == 7 && d.backbone_dim == 6 && d.per_image == 0);
        check_stats(&d, FIXTURE("data/aligned_backbone.npy"),
                    FIXTURE("data/aligned_expect_Xstd.npy"),
                    FIXTURE("data/aligned_expect_median.npy"));
        ml_dataset_free(&d);
    }
    /* a per-image HDF5 file without the image list, and a foreign one */
    expect_error(FIXTURE("data/h5_images_f32.h5"), FIXTURE("data/things_targets.txt"),
                 FIXTURE("data/things_ids.txt"), NULL, "h5_images_f32.h5 has 35 rows but",
                 "--things-images");
    expect_error(FIXTURE("data/h5_aligned.h5"), FIXTURE("data/aligned_targets.npy"),
                 FIXTURE("data/aligned_ids.txt"), FIXTURE("data/things_list.txt"),
                 "h5_aligned.h5 has 7 rows but", "things_list.txt has 35 images");
}

static void test_per_concept_backbone(void) {
    ml_data_paths p = {.backbone = FIXTURE("data/aligned_backbone.npy"),
                       .targets = FIXTURE("data/aligned_targets.npy"),
                       .item_ids = FIXTURE("data/aligned_ids.txt")};
    ml_dataset d;
    ml_err err = {""};
    CHECK_MSG(ml_dataset_load(&d, &p, &err) == 0, "%s", err.msg);
    if (!d.X) return;
    CHECK(d.n_items == 7 && d.backbone_dim == 6 && d.target_dims == 4);
    CHECK(d.per_image == 0 && d.backbone_rows == 7 && d.images_path == NULL);
    check_stats(&d, FIXTURE("data/aligned_backbone.npy"), FIXTURE("data/aligned_expect_Xstd.npy"),
                FIXTURE("data/aligned_expect_median.npy"));
    CHECK(ml_dataset_find(&d, "n6") == 6);
    ml_dataset_free(&d);
}

static void expect_error(const char *backbone, const char *targets, const char *ids,
                         const char *images, const char *msg1, const char *msg2) {
    ml_data_paths p = {backbone, targets, ids, images};
    ml_dataset d;
    ml_err err = {""};
    CHECK(ml_dataset_load(&d, &p, &err) == -1);
    CHECK(d.X == NULL && d.ids == NULL && d.id_index == NULL);
    CHECK_STR_CONTAINS(err.msg, msg1);
    if (msg2) CHECK_STR_CONTAINS(err.msg, msg2);
}

static void test_errors(void) {
    const char *things_bb = FIXTURE("data/things_backbone.npz");
    const char *things_y = FIXTURE("data/things_targets.txt");
    const char *things_ids = FIXTURE("data/things_ids.txt");
    const char *list = FIXTURE("data/things_list.txt");
    const char *al_bb = FIXTURE("data/aligned_backbone.npy");
    const char *al_y = FIXTURE("data/aligned_targets.npy");
    const char *al_ids = FIXTURE("data/aligned_ids.txt");
    /* A per-image backbone without an image list. */
    expect_error(things_bb, things_y, things_ids, NULL, "has 35 rows but",
                 "has 16 ids; a per-image backbone needs --things-images");
    /* Targets of another item set. */
    expect_error(things_bb, al_y, things_ids, list, "aligned_targets.npy has 7 rows but",
                 "things_ids.txt has 16 ids");
    /* An image list of another backbone. */
    expect_error(al_bb, al_y, al_ids, list, "aligned_backbone.npy has 7 rows but",
                 "things_list.txt has 35 images");
    /* Ids without images. */
    expect_error(things_bb, things_y, al_ids, list, "has 16 rows but", "has 7 ids");
    expect_error(al_bb, FIXTURE("io/spose_small.txt"), al_ids, NULL, "spose_small.txt has 23 rows",
                 NULL);
    expect_error("/nonexistent/x.npz", al_y, al_ids, NULL, "/nonexistent/x.npz", NULL);
    expect_error(al_bb, al_y, "/nonexistent/ids.txt", NULL, "/nonexistent/ids.txt", NULL);
    expect_error(al_bb, "/nonexistent/y.txt", al_ids, NULL, "/nonexistent/y.txt", NULL);
    expect_error(FIXTURE("io/npy_i8.npy"), al_y, al_ids, NULL, "dtype '<i8'", NULL);
    expect_error(NULL, al_y, al_ids, NULL, "backbone file is not set", NULL);

    /* An id with no image: a temporary copy of the ids with one more line. */
    char ids_path[] = "/tmp/ml_ids_XXXXXX";
    int fd = mkstemp(ids_path);
    CHECK(fd >= 0);
    size_t n;
    char **ids;
    ml_err err;
    CHECK(ml_idlist_read(things_ids, &ids, &n, &err) == 0);
    FILE *f = fdopen(fd, "w");
    for (size_t i = 0; f && i + 1 < n; i++) fprintf(f, "%s\n", ids[i]);
    if (f) fprintf(f, "no_such_concept\n");
    if (f) fclose(f);
    ml_strv_free(ids, n);
    expect_error(things_bb, things_y, ids_path, list, "the id 'no_such_concept' (line 16)",
                 "has no image in");
    unlink(ids_path);
}

/* Single images of a per-image backbone: every sorted path finds its row; rows read on demand
 * are standardised with the concept rows' statistics, so a concept's first image is exactly
 * its X_std row and any other image is (x - mean) / scale of its raw row. */
static void test_image_rows(void) {
    ml_data_paths p = {.backbone = FIXTURE("data/things_backbone.npz"),
                       .targets = FIXTURE("data/things_targets.txt"),
                       .item_ids = FIXTURE("data/things_ids.txt"),
                       .things_images = FIXTURE("data/things_list.txt")};
    ml_dataset d;
    ml_err err = {""};
    CHECK_MSG(ml_dataset_load(&d, &p, &err) == 0, "%s", err.msg);
    if (!d.X) return;
    size_t n_paths;
    char **paths;
    CHECK(ml_idlist_read(FIXTURE("data/things_sorted.txt"), &paths, &n_paths, &err) == 0);
    CHECK(n_paths == 35);
    int64_t rows[35];
    for (size_t i = 0; i < n_paths && i < 35; i++) {
        char *slash = strrchr(paths[i], '/');
        *slash = '\0';
        rows[i] = ml_dataset_image_row(&d, paths[i], slash + 1);
        CHECK_MSG(rows[i] == (int64_t)i, "%s/%s: row %lld", paths[i], slash + 1,
                  (long long)rows[i]);
    }
    ml_strv_free(paths, n_paths);
    CHECK(ml_dataset_image_row(&d, "a", "no.jpg") == -1);
    CHECK(ml_dataset_image_row(&d, "nope", "x.jpg") == -1);
    size_t D = (size_t)d.backbone_dim;
    float *got = malloc(35 * D * sizeof *got);
    int64_t r, c;
    float *raw = load_npy(FIXTURE("data/things_backbone.npz"), &r, &c);
    CHECK(raw && r == 35 && c == (int64_t)D);
    CHECK_MSG(ml_dataset_read_std_rows(&d, rows, 35, got, &err) == 0, "%s", err.msg);
    for (size_t i = 0; raw && i < 35; i++)
        for (size_t j = 0; j < D; j++) {
            float want = (float)((raw[i * D + j] - d.col_mean[j]) / d.col_scale[j]);
            CHECK_MSG(got[i * D + j] == want, "row %zu col %zu: %g, want %g", i, j,
                      got[i * D + j], want);
        }
    /* the concepts' first images, in id order: their X_std rows, bit for bit */
    int64_t first[16];
    FILE *f = fopen(FIXTURE("data/things_rows.txt"), "r");
    for (int i = 0; f && i < 16; i++) CHECK(fscanf(f, "%lld", (long long *)&first[i]) == 1);
    if (f) fclose(f);
    CHECK(ml_dataset_read_std_rows(&d, first, 16, got, &err) == 0);
    CHECK(memcmp(got, d.X_std, 16 * D * sizeof *got) == 0);
    int64_t bad = 35;
    CHECK(ml_dataset_read_std_rows(&d, &bad, 1, got, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "row 35 is out of range");
    free(raw);
    free(got);
    ml_dataset_free(&d);

    /* a per-concept backbone has no single images */
    ml_data_paths q = {.backbone = FIXTURE("data/aligned_backbone.npy"),
                       .targets = FIXTURE("data/aligned_targets.npy"),
                       .item_ids = FIXTURE("data/aligned_ids.txt")};
    CHECK(ml_dataset_load(&d, &q, &err) == 0);
    CHECK(ml_dataset_image_row(&d, "n6", "x.jpg") == -1);
    ml_dataset_free(&d);
}

int main(void) {
    RUN(test_per_image_backbone);
    RUN(test_per_concept_backbone);
    RUN(test_hdf5_backbones);
    RUN(test_errors);
    RUN(test_image_rows);
    return UT_DONE();
}
