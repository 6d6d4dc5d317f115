/* Building HDF5 files in memory with libhdf5 (the core driver, no backing file), for the
 * reader's tests and its fuzz target: hostile shapes, types and sizes that h5py would not
 * write by accident, made by the same library that reads them. */
#ifndef METALIGN_TESTS_H5BUILD_H
#define METALIGN_TESTS_H5BUILD_H

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

/* A new empty file in memory, or -1. */
__attribute__((unused)) static hid_t h5b_new(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    hid_t f = -1;
    if (H5Pset_fapl_core(fapl, 1 << 16, 0) >= 0)
        f = H5Fcreate("h5build", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    return f;
}

/* Dataset `name` of `rank` dims (rank 0: a scalar), chunked (chunk != NULL) and gzip'd
 * (gzip > 0: the level) or contiguous, filled from data when it is set. Returns 0 or -1. */
__attribute__((unused)) static int h5b_dataset(hid_t loc, const char *name, hid_t type,
                                               int rank, const hsize_t *dims,
                                               const hsize_t *chunk, int gzip,
                                               const void *data) {
    hid_t space = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int rc = space >= 0 && dcpl >= 0 ? 0 : -1;
    if (rc == 0 && chunk) rc = H5Pset_chunk(dcpl, rank, chunk) < 0 ? -1 : 0;
    if (rc == 0 && chunk && gzip > 0) rc = H5Pset_deflate(dcpl, (unsigned)gzip) < 0 ? -1 : 0;
    /* no fill value written for huge datasets that are never filled */
    if (rc == 0) H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    hid_t d = rc == 0 ? H5Dcreate2(loc, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    if (d < 0) rc = -1;
    if (rc == 0 && data && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) rc = -1;
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return rc;
}

/* Writes floats (converted by libhdf5 to the dataset's type) into dataset `name`; 0 or -1. */
__attribute__((unused)) static int h5b_fill(hid_t loc, const char *name, const float *v) {
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return -1;
    int rc = H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0 ? -1 : 0;
    H5Dclose(d);
    return rc;
}

/* A 2-D float32 "representations" or a 1-D float32 dataset, filled with row * 100 + col. */
__attribute__((unused)) static int h5b_floats(hid_t loc, const char *name, int rank,
                                              hsize_t rows, hsize_t cols, int row_id) {
    hsize_t dims[2] = {rank == 2 ? rows : cols, cols};
    size_t n = rank == 2 ? (size_t)(rows * cols) : (size_t)cols;
    float *v = malloc(sizeof(float) * (n ? n : 1));
    if (!v) return -1;
    for (size_t i = 0; i < n; i++)
        v[i] = rank == 2 ? (float)(i / cols * 100 + i % cols) : (float)(row_id * 100 + (int)i);
    int rc = h5b_dataset(loc, name, H5T_NATIVE_FLOAT, rank, dims, NULL, 0, v);
    free(v);
    return rc;
}

/* The file's bytes (malloc'd into *buf) after closing it; 0 or -1. */
__attribute__((unused)) static int h5b_image(hid_t f, void **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) {
        H5Fclose(f);
        return -1;
    }
    ssize_t n = H5Fget_file_image(f, NULL, 0);
    if (n > 0 && (*buf = malloc((size_t)n)) && H5Fget_file_image(f, *buf, (size_t)n) == n)
        *len = (size_t)n;
    H5Fclose(f);
    if (!*len) {
        free(*buf);
        *buf = NULL;
        return -1;
    }
    return 0;
}

#endif
