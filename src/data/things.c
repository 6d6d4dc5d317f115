/* THINGS image lists and the concept -> first image alignment (include/metalign/things.h). */
#include "data/things.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/npy.h"
#include "io/textmat.h"

#define LIST_MAX_BYTES ((size_t)256 << 20)

void ml_imagelist_free(ml_imagelist *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].concept);
        free(l->items[i].file);
    }
    free(l->items);
    memset(l, 0, sizeof *l);
}

static int add_image(ml_imagelist *l, size_t *cap, const char *concept, size_t clen,
                     const char *file, size_t flen, size_t line) {
    if (l->n == *cap) {
        size_t ncap = *cap ? 2 * *cap : 1024;
        ml_image *ni = realloc(l->items, ncap * sizeof *ni);
        if (!ni) return -1;
        l->items = ni;
        *cap = ncap;
    }
    ml_image *im = &l->items[l->n];
    im->concept = strndup(concept, clen);
    im->file = strndup(file, flen);
    im->line = line;
    if (!im->concept || !im->file) {
        free(im->concept);
        free(im->file);
        return -1;
    }
    l->n++;
    return 0;
}

/* pathlib compares the parts of two paths as str, i.e. by code point, which for UTF-8 names
 * is the order of their bytes, which is strcmp's order (it compares unsigned chars). */
static int cmp_image(const void *a, const void *b) {
    const ml_image *x = a, *y = b;
    int c = strcmp(x->concept, y->concept);
    return c ? c : strcmp(x->file, y->file);
}

static int sort_and_check(ml_imagelist *l, const char *name, ml_err *err) {
    if (l->n == 0)
        return ml_errf(err, "%s: no images (expected <concept>/<file>.jpg%s)", name,
                       l->from_dir ? " in its subfolders" : " paths, one per line");
    qsort(l->items, l->n, sizeof *l->items, cmp_image);
    for (size_t i = 1; i < l->n; i++)
        if (!cmp_image(&l->items[i - 1], &l->items[i])) {
            size_t a = l->items[i - 1].line, b = l->items[i].line;
            return ml_errf(err, "%s: %s/%s is listed twice (lines %zu and %zu); each image "
                                "must appear once",
                           name, l->items[i].concept, l->items[i].file, a < b ? a : b,
                           a < b ? b : a);
        }
    return 0;
}

static int ends_with_jpg(const char *s) {
    size_t n = strlen(s);
    return n >= 4 && !strcmp(s + n - 4, ".jpg");
}

static int scan_concept(ml_imagelist *l, size_t *cap, const char *dir, const char *concept,
                        ml_err *err) {
    size_t plen = strlen(dir) + strlen(concept) + 2;
    char *path = malloc(plen);
    if (!path) return ml_errf(err, "%s: out of memory", dir);
    snprintf(path, plen, "%s/%s", dir, concept);
    DIR *d = opendir(path);
    if (!d) {
        ml_err_errno(err, "%s: cannot read the concept folder", path);
        free(path);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    errno = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !ends_with_jpg(e->d_name))
            continue;
        if (add_image(l, cap, concept, strlen(concept), e->d_name, strlen(e->d_name), 0))
            rc = ml_errf(err, "%s: out of memory", dir);
    }
    if (rc == 0 && errno) rc = ml_err_errno(err, "%s: reading the folder", path);
    closedir(d);
    free(path);
    return rc;
}

int ml_things_scan_dir(ml_imagelist *l, const char *dir, ml_err *err) {
    memset(l, 0, sizeof *l);
    l->from_dir = 1;
    size_t cap = 0;
    DIR *d = opendir(dir);
    if (!d) return ml_err_errno(err, "%s: cannot read the THINGS image folder", dir);
    int rc = 0;
    struct dirent *e;
    size_t dlen = strlen(dir);
    errno = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        /* stat, not d_type: a symlink to a folder is a folder to pathlib's is_dir(). */
        size_t plen = dlen + strlen(e->d_name) + 2;
        char *path = malloc(plen);
        if (!path) {
            rc = ml_errf(err, "%s: out of memory", dir);
            break;
        }
        snprintf(path, plen, "%s/%s", dir, e->d_name);
        struct stat st;
        int is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
        free(path);
        if (is_dir) rc = scan_concept(l, &cap, dir, e->d_name, err);
        errno = 0;
    }
    if (rc == 0 && errno) rc = ml_err_errno(err, "%s: reading the folder", dir);
    closedir(d);
    if (rc == 0) rc = sort_and_check(l, dir, err);
    if (rc) ml_imagelist_free(l);
    return rc;
}

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

int ml_things_parse_list(ml_imagelist *l, const char *name, const char *text, size_t len,
                         ml_err *err) {
    memset(l, 0, sizeof *l);
    size_t cap = 0, lineno = 0, blank_line = 0;
    const char *p = text, *end = text + len;
    if (len >= 3 && !memcmp(p, "\xef\xbb\xbf", 3)) p += 3;
    int rc = 0;
    while (p < end && rc == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *s = p, *e = nl ? nl : end;
        p = nl ? nl + 1 : end;
        lineno++;
        while (s < e && is_blank(*s)) s++;
        while (e > s && is_blank(e[-1])) e--;
        if (s == e) {
            if (!blank_line) blank_line = lineno;
            continue;
        }
        if (blank_line) {
            rc = ml_errf(err, "%s: line %zu is blank but line %zu is not; remove the blank "
                              "line (blank lines are allowed only at the end)",
                         name, blank_line, lineno);
            break;
        }
        if (memchr(s, '\0', (size_t)(e - s))) {
            rc = ml_errf(err, "%s: line %zu contains a NUL byte; is it a text file?", name,
                         lineno);
            break;
        }
        /* The last two components; a trailing '/' would leave an empty file name. */
        const char *slash = NULL;
        for (const char *q = e; q > s; q--)
            if (q[-1] == '/') {
                slash = q - 1;
                break;
            }
        const char *cstart = s;
        if (slash)
            for (const char *q = slash; q > s; q--)
                if (q[-1] == '/') {
                    cstart = q;
                    break;
                }
        if (!slash || slash == cstart || slash + 1 == e) {
            rc = ml_errf(err, "%s: line %zu: '%.*s' is not a <concept>/<file> path", name,
                         lineno, (int)(e - s > 200 ? 200 : e - s), s);
            break;
        }
        if (add_image(l, &cap, cstart, (size_t)(slash - cstart), slash + 1,
                      (size_t)(e - slash - 1), lineno))
            rc = ml_errf(err, "%s: out of memory", name);
    }
    if (rc == 0) rc = sort_and_check(l, name, err);
    if (rc) ml_imagelist_free(l);
    return rc;
}

int ml_things_load(ml_imagelist *l, const char *path, ml_err *err) {
    struct stat st;
    memset(l, 0, sizeof *l);
    if (stat(path, &st)) return ml_err_errno(err, "%s", path);
    if (S_ISDIR(st.st_mode)) return ml_things_scan_dir(l, path, err);
    char *text;
    size_t len;
    if (ml_file_read(path, LIST_MAX_BYTES, &text, &len, err)) return -1;
    int rc = ml_things_parse_list(l, path, text, len, err);
    free(text);
    return rc;
}

/* The first image of each concept: l is sorted, so a concept's images are one run. */
typedef struct concept_run {
    const char *concept;
    size_t first;
} concept_run;

static int cmp_run_key(const void *key, const void *elem) {
    return strcmp(key, ((const concept_run *)elem)->concept);
}

int ml_things_align(const ml_imagelist *l, const char *l_name, char *const *ids, size_t n_ids,
                    const char *ids_name, int64_t *rows, ml_err *err) {
    concept_run *runs = malloc((l->n ? l->n : 1) * sizeof *runs);
    if (!runs) return ml_errf(err, "%s: out of memory", l_name);
    size_t n_runs = 0;
    for (size_t i = 0; i < l->n; i++)
        if (i == 0 || strcmp(l->items[i].concept, l->items[i - 1].concept))
            runs[n_runs++] = (concept_run){l->items[i].concept, i};
    size_t missing = 0, first_missing = 0;
    for (size_t i = 0; i < n_ids; i++) {
        const concept_run *r = bsearch(ids[i], runs, n_runs, sizeof *runs, cmp_run_key);
        if (!r && missing++ == 0) first_missing = i;
        rows[i] = r ? (int64_t)r->first : -1;
    }
    free(runs);
    if (missing == 1)
        return ml_errf(err,
                       "%s: the id '%s' (line %zu) has no image in %s; every id needs a "
                       "folder <id>/ with at least one .jpg",
                       ids_name, ids[first_missing], first_missing + 1, l_name);
    if (missing)
        return ml_errf(err,
                       "%s: %zu ids have no image in %s, the first '%s' (line %zu); every id "
                       "needs a folder <id>/ with at least one .jpg",
                       ids_name, missing, l_name, ids[first_missing], first_missing + 1);
    return 0;
}
