/* The human learning data (MODEL.md section 5): the OSF rsd46 CSV parsed into compact arrays
 * (src/data/human_csv.c). */
#ifndef METALIGN_HUMAN_CSV_H
#define METALIGN_HUMAN_CSV_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/err.h"
#include "metalign/fetch.h"

/* The rows of the CSV that carry an observation, as parallel arrays (n_rows each). Rows whose
 * `correct` is empty or NA ("", NA, NaN, nan, N/A, NULL, null, None, <NA>) are not observations:
 * pandas reads them as NaN and seaborn's mean skips them, so they are counted in n_missing and
 * left out everywhere (including participant counts). */
typedef struct ml_human_data {
    size_t n_rows;
    int32_t *participant;  /* 0..n_participants-1, numbered in order of first appearance */
    int32_t *trial;        /* >= 0 */
    int32_t *dimension;    /* >= 0 */
    uint8_t *correct;      /* 0 or 1 */
    size_t n_participants;
    size_t n_missing;      /* rows skipped for an empty/NA `correct` */
    int32_t max_trial;     /* largest trial present */
} ml_human_data;

/* Parses the human CSV: a header line naming at least the columns participant, trial,
 * dimension and correct (any order; other columns ignored; the first of duplicate names wins),
 * then one row per observation. Accepted: a UTF-8 byte-order mark, LF or CRLF line ends,
 * quoted fields (RFC 4180, "" for a quote), blank lines. trial and dimension are whole numbers
 * >= 0 (also written 3.0); correct is True/False/true/false/TRUE/FALSE/1/0/1.0/0.0 or NA;
 * participant any non-empty string. name labels messages (e.g. the URL or file).
 * On failure *code is ML_FETCH_E_NOT_CSV (empty, binary, HTML/JSON, a header without the
 * required columns), ML_FETCH_E_BAD_CSV (a malformed row: the message names the line and the
 * column) or ML_FETCH_E_INTERNAL; out is left empty. */
int ml_human_csv_parse(const char *buf, size_t len, const char *name, ml_human_data *out,
                       ml_fetch_code *code, ml_err *err);
/* The same, with messages that never quote the input (no excerpt of a field, of the header,
 * of an HTML page): for bytes from an upstream whose errors are shown to anonymous clients. */
int ml_human_csv_parse_quiet(const char *buf, size_t len, const char *name, ml_human_data *out,
                             ml_fetch_code *code, ml_err *err);
void ml_human_data_free(ml_human_data *d);

#endif
