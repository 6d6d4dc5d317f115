#include "io/source.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREAD_CHUNK (1 << 30) /* pread may return less than asked beyond this */

static void source_init(ml_source *s) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
}

int ml_source_open_file(ml_source *s, const char *path, const char *what, ml_err *err) {
    source_init(s);
    s->name = strdup(path);
    if (!s->name) return ml_errf(err, "%s: out of memory", path);
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (s->fd < 0 || fstat(s->fd, &st) != 0) {
        ml_err_errno(err, "%s: cannot open %s", path, what);
        ml_source_free(s);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        ml_errf(err, "%s: %s is not a regular file", path, what);
        ml_source_free(s);
        return -1;
    }
    s->size = st.st_size;
    return 0;
}

int ml_source_open_mem(ml_source *s, const char *name, const void *buf, size_t len,
                       ml_err *err) {
    source_init(s);
    s->name = strdup(name ? name : "<memory>");
    if (!s->name) return ml_errf(err, "out of memory");
    s->mem = buf;
    s->size = (int64_t)len;
    return 0;
}

void ml_source_free(ml_source *s) {
    if (!s) return;
    if (s->fd >= 0) close(s->fd);
    free(s->name);
    source_init(s);
}

int ml_source_read(const ml_source *s, int64_t off, int64_t len, void *dst, ml_err *err) {
    if (off < 0 || len < 0 || off > s->size || len > s->size - off)
        return ml_errf(err, "bytes [%lld, %lld) lie outside the file (%lld bytes); "
                            "the file is truncated or corrupt",
                       (long long)off, (long long)off + (long long)len, (long long)s->size);
    if (s->mem) {
        if (len) memcpy(dst, s->mem + off, (size_t)len);
        return 0;
    }
    unsigned char *p = dst;
    while (len > 0) {
        ssize_t got = pread(s->fd, p, (size_t)(len > PREAD_CHUNK ? PREAD_CHUNK : len), (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return ml_err_errno(err, "read at byte %lld", (long long)off);
        if (got == 0)
            return ml_errf(err, "unexpected end of file at byte %lld (the file shrank while "
                                "being read?)", (long long)off);
        p += got;
        off += got;
        len -= got;
    }
    return 0;
}

int ml_source_is_zip(const ml_source *s) {
    unsigned char b[4];
    if (s->size < 4 || ml_source_read(s, 0, 4, b, NULL) != 0) return 0;
    return b[0] == 'P' && b[1] == 'K' && ((b[2] == 3 && b[3] == 4) || (b[2] == 5 && b[3] == 6));
}

zip_t *ml_source_open_zip(const ml_source *s, ml_err *err) {
    zip_error_t ze;
    zip_error_init(&ze);
    zip_t *z = NULL;
    if (s->mem) {
        zip_source_t *src = zip_source_buffer_create(s->mem, (zip_uint64_t)s->size, 0, &ze);
        if (src) z = zip_open_from_source(src, ZIP_RDONLY, &ze);
        if (!z && src) zip_source_free(src);
    } else {
        /* A new open file description of the same file (not dup, which would share the
         * offset libzip seeks with): handles on different threads stay independent. */
        char self[64];
        snprintf(self, sizeof self, "/proc/self/fd/%d", s->fd);
        int fd = open(self, O_RDONLY | O_CLOEXEC), code = 0;
        if (fd >= 0) z = zip_fdopen(fd, ZIP_RDONLY, &code); /* owns fd on success */
        if (!z && fd >= 0) close(fd);
        if (!z) zip_error_set(&ze, code ? code : ZIP_ER_OPEN, fd < 0 ? errno : 0);
    }
    if (!z) ml_errf(err, "not a readable zip archive (%s)", zip_error_strerror(&ze));
    zip_error_fini(&ze);
    return z;
}
