#include "engine/human_disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TMP_PREFIX ".human-tmp-"
#define ASIDE_TRIES 100 /* <name>.corrupt-<time>-<N> suffixes tried before giving up */

int ml_human_disk_init(ml_human_disk *d, const char *dir, ml_err *err) {
    memset(d, 0, sizeof *d);
    d->dir = strdup(dir);
    if (d->dir) {
        size_t n = strlen(d->dir);
        while (n > 1 && d->dir[n - 1] == '/') d->dir[--n] = '\0';
        if (asprintf(&d->csv_path, "%s/" ML_HUMAN_CSV_NAME, d->dir) < 0) d->csv_path = NULL;
        if (asprintf(&d->meta_path, "%s/" ML_HUMAN_META_NAME, d->dir) < 0) d->meta_path = NULL;
    }
    if (!d->dir || !d->csv_path || !d->meta_path) {
        ml_human_disk_free(d);
        return ml_errf(err, "human data: out of memory");
    }
    return 0;
}

void ml_human_disk_free(ml_human_disk *d) {
    free(d->dir);
    free(d->csv_path);
    free(d->meta_path);
    memset(d, 0, sizeof *d);
}

int ml_human_disk_make_dirs(const ml_human_disk *d, ml_err *err) {
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s", d->dir) >= sizeof path)
        return ml_errf(err, "%s: the cache folder's path is too long", d->dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return ml_err_errno(err, "%s: cannot create the cache folder (--cache-dir)", path);
        *p = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(d->dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return ml_errf(err, "%s: the cache folder (--cache-dir) is not a folder", d->dir);
    return 0;
}

void ml_human_disk_remove_leftovers(const ml_human_disk *d) {
    DIR *dir = opendir(d->dir);
    if (!dir) return;
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(dir)))
        if (strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0 &&
            (size_t)snprintf(path, sizeof path, "%s/%s", d->dir, e->d_name) < sizeof path)
            unlink(path);
    closedir(dir);
}

static int fsync_dir(const char *dir, ml_err *err) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ml_err_errno(err, "%s: cannot open the cache folder to sync it", dir);
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return ml_err_errno(err, "%s: cannot sync the cache folder", dir);
    return 0;
}

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int ml_human_disk_temp(const ml_human_disk *d, const char *kind, char *path, size_t cap, int *fd,
                       ml_err *err) {
    if ((size_t)snprintf(path, cap, "%s/" TMP_PREFIX "%s-XXXXXX", d->dir, kind) >= cap)
        return ml_errf(err, "%s: the cache folder's path is too long", d->dir);
    *fd = mkostemp(path, O_CLOEXEC);
    if (*fd < 0)
        return ml_err_errno(err, "%s: cannot create a temporary file in the cache folder "
                                 "(check that it is writable)", d->dir);
    return 0;
}

int ml_human_disk_read_fd(int fd, size_t size, char **out, const char *path, ml_err *err) {
    char *buf = malloc(size ? size : 1);
    if (!buf) return ml_errf(err, "%s: out of memory for %zu bytes", path, size);
    size_t got = 0;
    while (got < size) {
        ssize_t r = pread(fd, buf + got, size - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            free(buf);
            return ml_err_errno(err, "%s: read failed", path);
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    if (got != size) {
        free(buf);
        return ml_errf(err, "%s: has %zu bytes, expected %zu", path, got, size);
    }
    *out = buf;
    return 0;
}

int ml_human_disk_read_meta(const ml_human_disk *d, const char *url, ml_human_meta *m,
                            int *other_url, ml_err *err) {
    *other_url = 0;
    int fd = open(d->meta_path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0) close(fd);
        return ml_err_errno(err, "its metadata %s cannot be read", d->meta_path);
    }
    char *text = NULL;
    int rc = ml_human_disk_read_fd(fd, (size_t)st.st_size, &text, d->meta_path, err);
    close(fd);
    if (rc != 0) return -1;
    char *their_url = NULL;
    rc = ml_human_meta_parse(text, (size_t)st.st_size, d->meta_path, m, &their_url, err);
    free(text);
    if (rc == 0 && strcmp(their_url, url) != 0) {
        *other_url = 1;
        rc = ml_errf(err, "the cached copy %s is of %s, not %s; it is not used (a successful "
                          "download replaces it)", d->csv_path, their_url, url);
    }
    free(their_url);
    return rc;
}

/* Writes the record to a synced temp file; the caller renames it into place. */
static int write_meta_temp(const ml_human_disk *d, const char *url, const ml_human_meta *m,
                           char *tmp, size_t cap, ml_err *err) {
    char *text = NULL;
    size_t len = 0;
    if (ml_human_meta_format(m, url, &text, &len) != 0)
        return ml_errf(err, "%s: out of memory", d->meta_path);
    int fd = -1;
    if (ml_human_disk_temp(d, "json", tmp, cap, &fd, err) != 0) {
        free(text);
        return -1;
    }
    int rc = write_all(fd, text, len) == 0 && fsync(fd) == 0
                 ? 0
                 : ml_err_errno(err, "%s: cannot write the metadata", tmp);
    free(text);
    close(fd);
    if (rc != 0) unlink(tmp);
    return rc;
}

int ml_human_disk_store_meta(const ml_human_disk *d, const char *url, const ml_human_meta *m,
                             ml_err *err) {
    char tmp[PATH_MAX];
    if (write_meta_temp(d, url, m, tmp, sizeof tmp, err) != 0) return -1;
    if (rename(tmp, d->meta_path) != 0) {
        ml_err_errno(err, "%s: cannot rename %s into place", d->meta_path, tmp);
        unlink(tmp);
        return -1;
    }
    return fsync_dir(d->dir, err);
}

/* The order matters: the record's temp first, then the CSV rename, then the record rename,
 * so a crash in between leaves a pair whose sha256 disagrees, which the next start sets
 * aside instead of serving; the folder is synced last so both renames are durable. */
int ml_human_disk_commit(const ml_human_disk *d, const char *url, const char *csv_tmp,
                         const ml_human_meta *m, ml_err *err, char notice[ML_ERR_MAX]) {
    char meta_tmp[PATH_MAX];
    if (write_meta_temp(d, url, m, meta_tmp, sizeof meta_tmp, err) != 0) return -1;
    if (rename(csv_tmp, d->csv_path) != 0) {
        ml_err_errno(err, "%s: cannot rename the download into place", d->csv_path);
        unlink(meta_tmp);
        return -1;
    }
    ml_err e2;
    if (rename(meta_tmp, d->meta_path) != 0) {
        /* The new CSV is in place but described by the old record: the copy in memory is
         * good, the one on disk will be set aside at the next start. */
        ml_err_errno(&e2, "%s: cannot rename %s into place; the cached copy will be downloaded "
                          "again after a restart", d->meta_path, meta_tmp);
        unlink(meta_tmp);
        snprintf(notice, ML_ERR_MAX, "%s", e2.msg);
        return 0;
    }
    if (fsync_dir(d->dir, &e2) != 0) snprintf(notice, ML_ERR_MAX, "%s", e2.msg);
    return 0;
}

/* Renames path to <path>.corrupt-<UTC time>[-N]; the new name goes to out. */
static int rename_aside(const char *path, char *out, size_t cap) {
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    for (int i = 0; i < ASIDE_TRIES; i++) {
        int n = i ? snprintf(out, cap, "%s.corrupt-%s-%d", path, stamp, i)
                  : snprintf(out, cap, "%s.corrupt-%s", path, stamp);
        if (n < 0 || (size_t)n >= cap) return -1;
        struct stat st;
        if (lstat(out, &st) != 0 && errno == ENOENT) return rename(path, out);
    }
    return -1;
}

/* What became of one file: moved aside (to name), deleted, left in place, or absent. */
typedef enum { FILE_ABSENT, FILE_MOVED, FILE_DELETED, FILE_STUCK } file_fate;

static file_fate put_aside(const char *path, char *name, size_t cap) {
    struct stat st;
    if (lstat(path, &st) != 0) return FILE_ABSENT;
    if (rename_aside(path, name, cap) == 0) return FILE_MOVED;
    /* Cannot move it: removing is the only other way to make sure it is never served. */
    return unlink(path) == 0 ? FILE_DELETED : FILE_STUCK;
}

void ml_human_disk_set_aside(const ml_human_disk *d, const char *reason,
                             char notice[ML_ERR_MAX]) {
    char csv_new[PATH_MAX] = "", meta_new[PATH_MAX] = "";
    file_fate csv = put_aside(d->csv_path, csv_new, sizeof csv_new);
    file_fate meta = put_aside(d->meta_path, meta_new, sizeof meta_new);
    ml_err note;
    if (csv == FILE_STUCK || meta == FILE_STUCK)
        ml_errf(&note, "the cached copy %s is damaged (%s) and could be neither set aside nor "
                       "deleted (is the cache folder read-only?); it stays on disk and is never "
                       "served; the data will be downloaded again on first use",
                d->csv_path, reason);
    else if (csv == FILE_DELETED || meta == FILE_DELETED)
        ml_errf(&note, "the cached copy %s was deleted (it could not be renamed aside): %s; it "
                       "will be downloaded again on first use", d->csv_path, reason);
    else
        ml_errf(&note, "the cached copy %s was set aside as %s: %s; it will be downloaded again "
                       "on first use", d->csv_path, csv_new[0] ? csv_new : meta_new, reason);
    memcpy(notice, note.msg, ML_ERR_MAX);
}
