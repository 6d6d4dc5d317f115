/* Text readers (MODEL.md section 6): whole files, whitespace-separated float matrices (SPoSE)
 * and one-name-per-line lists (unique_id.txt). Every error names the file, the line and the
 * problem. */
#ifndef METALIGN_IO_TEXTMAT_H
#define METALIGN_IO_TEXTMAT_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/err.h"

/* Reads a whole file (at most max_bytes) into a NUL-terminated malloc'd buffer. */
int ml_file_read(const char *path, size_t max_bytes, char **data, size_t *len, ml_err *err);

/* Whitespace-separated finite floats, one row per line, every row the same width (SPoSE's
 * spose_embedding_66d_sorted.txt). Blank lines are allowed only at the end; CRLF and trailing
 * blanks are fine. Values are parsed as doubles and rounded to float32, as
 * np.loadtxt(...) followed by .astype(np.float32) does. *out is malloc'd (rows x cols). */
int ml_textmat_parse(const char *name, const char *text, size_t len, float **out,
                     int64_t *rows, int64_t *cols, ml_err *err);
int ml_textmat_read(const char *path, float **out, int64_t *rows, int64_t *cols, ml_err *err);

/* One name per line (unique_id.txt): surrounding blanks and CR are trimmed; blank lines are
 * allowed only at the end; a duplicate is an error naming both lines. *names is a malloc'd
 * array of malloc'd strings (free with ml_strv_free). */
int ml_idlist_parse(const char *name, const char *text, size_t len, char ***names, size_t *n,
                    ml_err *err);
int ml_idlist_read(const char *path, char ***names, size_t *n, ml_err *err);
void ml_strv_free(char **v, size_t n);

#endif
