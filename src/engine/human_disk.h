/* The human-data cache on disk: human.csv and its record human.json (metadata/human_meta.h) in
 * the cache folder, written so that a crash at any point leaves either the old good pair or a
 * pair whose sha256 disagrees (which the next start sets aside), never a half-written copy
 * that is served. */
#ifndef METALIGN_ENGINE_HUMAN_DISK_H
#define METALIGN_ENGINE_HUMAN_DISK_H

#include <stddef.h>

#include "metalign/err.h"
#include "metalign/human_meta.h"

#define ML_HUMAN_CSV_NAME "human.csv"   /* in cache_dir */
#define ML_HUMAN_META_NAME "human.json"

typedef struct ml_human_disk {
    char *dir;        /* the cache folder, without a trailing '/' */
    char *csv_path;
    char *meta_path;
} ml_human_disk;

/* The paths under dir (no file is touched). */
int ml_human_disk_init(ml_human_disk *d, const char *dir, ml_err *err);
void ml_human_disk_free(ml_human_disk *d);
/* Creates the cache folder and its parents. */
int ml_human_disk_make_dirs(const ml_human_disk *d, ml_err *err);
/* Removes temp files a crash left behind (only ours). */
void ml_human_disk_remove_leftovers(const ml_human_disk *d);

/* A new empty temp file in the cache folder (so the final rename is atomic): *fd, path. */
int ml_human_disk_temp(const ml_human_disk *d, const char *kind, char *path, size_t cap, int *fd,
                       ml_err *err);
/* Reads the whole of fd (size bytes expected) into a new buffer; path labels messages. */
int ml_human_disk_read_fd(int fd, size_t size, char **out, const char *path, ml_err *err);

/* Reads and checks human.json for url: 0 with *m; else the reason in err, with *other_url
 * set when the record is fine but describes another URL. */
int ml_human_disk_read_meta(const ml_human_disk *d, const char *url, ml_human_meta *m,
                            int *other_url, ml_err *err);
/* Replaces human.json alone (after a 304 or an identical download). */
int ml_human_disk_store_meta(const ml_human_disk *d, const char *url, const ml_human_meta *m,
                             ml_err *err);
/* Installs a downloaded CSV (the synced temp file csv_tmp) with its record. A problem that
 * does not make the new copy unusable (the record could not be renamed; the folder could not
 * be synced) is returned in notice, with 0. */
int ml_human_disk_commit(const ml_human_disk *d, const char *url, const char *csv_tmp,
                         const ml_human_meta *m, ml_err *err, char notice[ML_ERR_MAX]);
/* Moves the cached pair out of the way (to <name>.corrupt-<UTC time>), or deletes it when it
 * cannot be moved; notice says truthfully what happened, including when neither worked (a
 * read-only cache: the copy stays on disk and is ignored). */
void ml_human_disk_set_aside(const ml_human_disk *d, const char *reason,
                             char notice[ML_ERR_MAX]);

#endif
