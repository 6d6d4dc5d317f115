/* The human learning data (MODEL.md section 5): the OSF rsd46 CSV parsed into compact arrays
 * (src/data/human_csv.c). */
#ifndef METALIGN_HUMAN_CSV_H
#define METALIGN_HUMAN_CSV_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/err.h"
#include "metalign/fetch.h"

/* An empty or NA cell of an optional boolean column (choice, true_category_binary). */
#define ML_HUMAN_NA 255

/* Distinct strings, numbered in order of first appearance: string i is arena + off[i]
 * (NUL-terminated). */
typedef struct ml_strtab {
    size_t n;
    size_t *off;  /* (n) */
    char *arena;
} ml_strtab;

static inline const char *ml_strtab_get(const ml_strtab *t, size_t i) {
    return t->arena + t->off[i];
}

/* The rows of the CSV that carry an observation, as parallel arrays (n_rows each). Rows whose
 * `correct` is empty or NA ("", NA, NaN, nan, N/A, NULL, null, None, <NA>) are not observations:
 * pandas reads them as NaN and seaborn's mean skips them, so they are counted in n_missing and
 * left out everywhere (including participant counts).
 *
 * The replay (MODEL.md section 8) also needs `choice`, `true_category_binary` and `image`.
 * They are optional: a CSV without them still gives the human curves. When a column is
 * absent its array is NULL; replay_problem then says which are missing (or which cell made a
 * column unusable), and is NULL when all three are there and well-formed. A bad cell in an
 * optional column never fails the parse: the curves do not need it. */
typedef struct ml_human_data {
    size_t n_rows;
    int32_t *participant;  /* 0..n_participants-1, numbered in order of first appearance */
    int32_t *trial;        /* >= 0 */
    int32_t *dimension;    /* >= 0 */
    uint8_t *correct;      /* 0 or 1 */
    size_t n_participants;
    size_t n_missing;      /* rows skipped for an empty/NA `correct` */
    int32_t max_trial;     /* largest trial present */

    ml_strtab participant_names; /* (n_participants) as written in the CSV */
    uint8_t *choice;       /* `choice`: 0, 1 or ML_HUMAN_NA; NULL without the column */
    uint8_t *label;        /* `true_category_binary`: the same coding as choice */
    int32_t *image;        /* `image`: index into images, -1 for an empty/NA cell */
    ml_strtab images;      /* distinct image cells as written ("stimuli/<concept>/<file>.jpg") */
    /* Per distinct image: its last two '/'-separated components, as the THINGS image list
     * reads paths (data/things.h): the folder names the concept, the last the file. */
    int32_t *image_concept; /* (images.n) index into concepts; -1 when there is no folder */
    int32_t *image_file;    /* (images.n) index into files */
    ml_strtab concepts;
    ml_strtab files;
    char *replay_problem;  /* NULL, or why the replay cannot use these rows (a sentence) */
} ml_human_data;

/* Parses the human CSV: a header line naming at least the columns participant, trial,
 * dimension and correct (any order; other columns ignored; the first of duplicate names wins),
 * then one row per observation. Accepted: a UTF-8 byte-order mark, LF or CRLF line ends,
 * quoted fields (RFC 4180, "" for a quote), blank lines. trial and dimension are whole numbers
 * >= 0 (also written 3.0); correct is True/False/true/false/TRUE/FALSE/1/0/1.0/0.0 or NA;
 * participant any non-empty string. choice and true_category_binary, when present, are
 * spelled like correct; image is any string (empty/NA allowed). name labels messages (e.g.
 * the URL or file).
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
/* The participant id as the CSV writes it, for participant number p (< n_participants). */
const char *ml_human_participant_name(const ml_human_data *d, int32_t p);

#endif
