/* Text inputs (include/metalign/arrays.h): SPoSE-style float matrices and one-name-per-line
 * lists. Both are read whole (a few hundred KB) and parsed line by line; every error names
 * the file and the line. */
#include "io/npy.h"
#include "io/textmat.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Largest text input accepted: SPoSE is ~1 MB, unique_id.txt ~20 KB, an image list ~1 MB. */
#define TEXT_MAX_BYTES ((size_t)256 << 20)

int ml_file_read(const char *path, size_t max_bytes, char **data, size_t *len, ml_err *err) {
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ml_err_errno(err, "%s", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return ml_errf(err, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max_bytes) {
                free(buf);
                close(fd);
                return ml_errf(err, "%s: the file is larger than %zu bytes; is it the right "
                                    "file?", path, max_bytes);
            }
            size_t ncap = cap * 2 > max_bytes ? max_bytes : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                close(fd);
                return ml_errf(err, "%s: out of memory", path);
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            ml_err_errno(err, "%s", path);
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

/* Iterates over lines: CR before LF dropped, a UTF-8 byte order mark at the start skipped. */
typedef struct lines {
    const char *p, *end;
    size_t lineno;
} lines;

static void lines_init(lines *it, const char *text, size_t len) {
    it->p = text;
    it->end = text + len;
    it->lineno = 0;
    if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) it->p += 3;
}

static int lines_next(lines *it, const char **line, size_t *n) {
    if (it->p >= it->end) return 0;
    const char *nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
    const char *e = nl ? nl : it->end;
    *line = it->p;
    *n = (size_t)(e - it->p);
    if (*n && (*line)[*n - 1] == '\r') (*n)--;
    it->p = nl ? nl + 1 : it->end;
    it->lineno++;
    return 1;
}

static int is_blank_char(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int is_blank_line(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_blank_char(s[i])) return 0;
    return 1;
}

/* After a blank line only blank lines may follow. */
static int check_rest_blank(const char *name, lines *it, size_t blank_line, ml_err *err) {
    const char *line;
    size_t n;
    while (lines_next(it, &line, &n))
        if (!is_blank_line(line, n))
            return ml_errf(err, "%s: line %zu is blank but line %zu is not; remove the blank "
                                "line (blank lines are allowed only at the end)",
                           name, blank_line, it->lineno);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* float matrices */

static int parse_float(const char *name, size_t lineno, size_t col, const char *tok,
                       size_t n, float *out, ml_err *err) {
    char buf[64];
    if (n >= sizeof buf)
        return ml_errf(err, "%s: line %zu, value %zu: '%.20s...' is not a number", name,
                       lineno, col, tok);
    memcpy(buf, tok, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if (end != buf + n || n == 0)
        return ml_errf(err, "%s: line %zu, value %zu: '%s' is not a number", name, lineno, col,
                       buf);
    float f = (float)d;
    if (!isfinite(d) || !isfinite(f))
        return ml_errf(err, "%s: line %zu, value %zu: '%s' is not a finite float32 number",
                       name, lineno, col, buf);
    *out = f;
    return 0;
}

int ml_textmat_parse(const char *name, const char *text, size_t len, float **out,
                     int64_t *rows, int64_t *cols, ml_err *err) {
    *out = NULL;
    lines it;
    lines_init(&it, text, len);
    float *v = NULL;
    size_t nv = 0, cap = 0, width = 0, nrows = 0, first_line = 0;
    const char *line;
    size_t n;
    while (lines_next(&it, &line, &n)) {
        if (is_blank_line(line, n)) {
            if (check_rest_blank(name, &it, it.lineno, err)) goto fail;
            break;
        }
        size_t count = 0;
        for (size_t i = 0; i < n;) {
            while (i < n && is_blank_char(line[i])) i++;
            if (i == n) break;
            size_t s = i;
            while (i < n && !is_blank_char(line[i])) i++;
            if (nv == cap) {
                size_t ncap = cap ? 2 * cap : 1024;
                float *nb = realloc(v, ncap * sizeof *v);
                if (!nb) {
                    ml_errf(err, "%s: out of memory", name);
                    goto fail;
                }
                v = nb;
                cap = ncap;
            }
            if (parse_float(name, it.lineno, count + 1, line + s, i - s, &v[nv], err))
                goto fail;
            nv++;
            count++;
        }
        if (nrows == 0) {
            width = count;
            first_line = it.lineno;
        } else if (count != width) {
            ml_errf(err, "%s: line %zu has %zu values but line %zu has %zu; every row must "
                         "have the same number of columns",
                    name, it.lineno, count, first_line, width);
            goto fail;
        }
        nrows++;
    }
    if (nrows == 0) {
        ml_errf(err, "%s: no rows: the file is empty", name);
        goto fail;
    }
    *out = v;
    *rows = (int64_t)nrows;
    *cols = (int64_t)width;
    return 0;
fail:
    free(v);
    return -1;
}

int ml_textmat_read(const char *path, float **out, int64_t *rows, int64_t *cols, ml_err *err) {
    char *text;
    size_t len;
    *out = NULL;
    if (ml_file_read(path, TEXT_MAX_BYTES, &text, &len, err)) return -1;
    int rc = ml_textmat_parse(path, text, len, out, rows, cols, err);
    free(text);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* name lists */

void ml_strv_free(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

typedef struct name_ref {
    const char *s;
    size_t line;
} name_ref;

static int cmp_name_ref(const void *a, const void *b) {
    const name_ref *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    if (c) return c;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* Duplicate names are errors naming the first two lines that share one. */
static int check_unique(const char *name, char **names, const size_t *line_of, size_t n,
                        ml_err *err) {
    if (n < 2) return 0;
    name_ref *refs = malloc(n * sizeof *refs);
    if (!refs) return ml_errf(err, "%s: out of memory", name);
    for (size_t i = 0; i < n; i++) refs[i] = (name_ref){names[i], line_of[i]};
    qsort(refs, n, sizeof *refs, cmp_name_ref);
    int rc = 0;
    for (size_t i = 1; i < n && !rc; i++)
        if (!strcmp(refs[i - 1].s, refs[i].s))
            rc = ml_errf(err, "%s: '%s' appears twice, on lines %zu and %zu; every id must be "
                              "unique",
                         name, refs[i].s, refs[i - 1].line, refs[i].line);
    free(refs);
    return rc;
}

int ml_idlist_parse(const char *name, const char *text, size_t len, char ***names, size_t *n,
                    ml_err *err) {
    *names = NULL;
    *n = 0;
    lines it;
    lines_init(&it, text, len);
    char **v = NULL;
    size_t *line_of = NULL;
    size_t nv = 0, cap = 0;
    const char *line;
    size_t ln;
    while (lines_next(&it, &line, &ln)) {
        while (ln && is_blank_char(line[ln - 1])) ln--;
        while (ln && is_blank_char(line[0])) {
            line++;
            ln--;
        }
        if (ln == 0) {
            if (check_rest_blank(name, &it, it.lineno, err)) goto fail;
            break;
        }
        if (memchr(line, '\0', ln)) {
            ml_errf(err, "%s: line %zu contains a NUL byte; is it a text file?", name,
                    it.lineno);
            goto fail;
        }
        if (nv == cap) {
            size_t ncap = cap ? 2 * cap : 256;
            char **nb = realloc(v, ncap * sizeof *v);
            size_t *nl = nb ? realloc(line_of, ncap * sizeof *nl) : NULL;
            if (nb) v = nb;
            if (!nl) {
                ml_errf(err, "%s: out of memory", name);
                goto fail;
            }
            line_of = nl;
            cap = ncap;
        }
        v[nv] = strndup(line, ln);
        if (!v[nv]) {
            ml_errf(err, "%s: out of memory", name);
            goto fail;
        }
        line_of[nv++] = it.lineno;
    }
    if (nv == 0) {
        ml_errf(err, "%s: no ids: the file is empty", name);
        goto fail;
    }
    if (check_unique(name, v, line_of, nv, err)) goto fail;
    free(line_of);
    *names = v;
    *n = nv;
    return 0;
fail:
    ml_strv_free(v, nv);
    free(line_of);
    return -1;
}

int ml_idlist_read(const char *path, char ***names, size_t *n, ml_err *err) {
    char *text;
    size_t len;
    *names = NULL;
    *n = 0;
    if (ml_file_read(path, TEXT_MAX_BYTES, &text, &len, err)) return -1;
    int rc = ml_idlist_parse(path, text, len, names, n, err);
    free(text);
    return rc;
}
