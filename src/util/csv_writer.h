/* The one way metalignd writes CSV (the tidy tables of ?format=csv): a streaming writer into
 * an ml_buf, the twin of util/json_writer.h. A header line names the columns; every row must
 * have exactly that many fields (a short or long row makes the writer "bad", so a table can
 * never come out ragged); strings are quoted when they hold a comma, a quote or a line break
 * (RFC 4180, "" for a quote); numbers are written as the JSON writer writes them (a double
 * with the fewest digits that read back to it), so pandas reads the same values the JSON
 * answer carries; a value that is undefined (NaN) is an empty field, which pandas reads as
 * NaN. Lines end in "\n". */
#ifndef METALIGN_UTIL_CSV_WRITER_H
#define METALIGN_UTIL_CSV_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct ml_csv {
    ml_buf *out;
    int n_cols;
    int col;  /* fields written in the current row */
    int bad;  /* a ragged row, or out of memory */
    size_t rows;
} ml_csv;

/* Starts a table: writes the header line of the NULL-terminated column names. */
void ml_csv_init(ml_csv *c, ml_buf *out, const char *const *columns);
void ml_csv_string(ml_csv *c, const char *s);
void ml_csv_int(ml_csv *c, int64_t v);
void ml_csv_double(ml_csv *c, double v); /* non-finite: an empty field */
void ml_csv_float(ml_csv *c, float v);   /* 9 significant digits; non-finite: empty */
void ml_csv_empty(ml_csv *c);
/* Ends the row; it must hold n_cols fields. */
void ml_csv_row_end(ml_csv *c);
/* 0 when every row was whole and nothing ran out of memory, else -1. */
int ml_csv_finish(const ml_csv *c);

#endif
