/* THINGS image paths and their alignment with the concept ids (MODEL.md section 1).
 *
 * A per-image backbone has one row per image, in the order of sorted(Path(things).glob(P)),
 * P being "* / *.jpg" without the spaces: by concept folder, then file name, each compared as
 * bytes (component-wise, not as joined strings: "a/x.jpg" < "a-b/x.jpg" although "a-" < "a/").
 * A concept's features are the row of its first image in that order. */
#ifndef METALIGN_THINGS_H
#define METALIGN_THINGS_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/err.h"

typedef struct ml_image {
    char *concept; /* folder name */
    char *file;    /* file name */
    size_t line;   /* line of a list file (1-based), 0 for a scanned folder */
} ml_image;

typedef struct ml_imagelist {
    ml_image *items; /* sorted by (concept, file) */
    size_t n;
    int from_dir;    /* scanned a folder rather than read a list file */
} ml_imagelist;

/* Lists <dir>/<concept>/<file> as Python 3.11's sorted(Path(dir).glob(P)) does (P above):
 * <concept> is any entry that is a directory (symlinks followed, hidden names included),
 * <file> any entry whose name ends in ".jpg" (case-sensitive, hidden names included). An
 * unreadable folder is an error rather than silently skipped. */
int ml_things_scan_dir(ml_imagelist *l, const char *dir, ml_err *err);

/* A list file: one relative image path per line; the last two '/'-separated components are
 * taken as <concept>/<file>, so "THINGS/images/aardvark/aardvark_01b.jpg" and
 * "aardvark/aardvark_01b.jpg" are the same image. Every non-blank line counts as an image
 * (no extension filter); blank lines only at the end; duplicates are errors. */
int ml_things_parse_list(ml_imagelist *l, const char *name, const char *text, size_t len,
                         ml_err *err);

/* A folder (scanned) or a list file (parsed), by what path is. */
int ml_things_load(ml_imagelist *l, const char *path, ml_err *err);
void ml_imagelist_free(ml_imagelist *l);

/* rows[i] = position in l of the first image of concept ids[i], for i < n_ids. An id without
 * images is an error naming it (ids_name is the id file, for the message). */
int ml_things_align(const ml_imagelist *l, const char *l_name, char *const *ids, size_t n_ids,
                    const char *ids_name, int64_t *rows, ml_err *err);

#endif
