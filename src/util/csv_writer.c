#include "util/csv_writer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "util/json_writer.h"

static void sep(ml_csv *c) {
    if (c->col++ > 0) ml_buf_append(c->out, ",", 1);
    if (c->col > c->n_cols) c->bad = 1;
}

static void quoted(ml_buf *out, const char *s) {
    ml_buf_append(out, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"') ml_buf_append(out, "\"", 1);
        ml_buf_append(out, p, 1);
    }
    ml_buf_append(out, "\"", 1);
}

void ml_csv_init(ml_csv *c, ml_buf *out, const char *const *columns) {
    memset(c, 0, sizeof *c);
    c->out = out;
    for (const char *const *n = columns; *n; n++) c->n_cols++;
    for (const char *const *n = columns; *n; n++) ml_csv_string(c, *n);
    ml_csv_row_end(c);
    c->rows = 0; /* the header is not a row */
}

void ml_csv_string(ml_csv *c, const char *s) {
    sep(c);
    if (strpbrk(s, ",\"\r\n") || (s[0] == ' ' || (*s && s[strlen(s) - 1] == ' ')))
        quoted(c->out, s);
    else
        ml_buf_puts(c->out, s);
}

void ml_csv_int(ml_csv *c, int64_t v) {
    sep(c);
    ml_buf_printf(c->out, "%lld", (long long)v);
}

void ml_csv_double(ml_csv *c, double v) {
    sep(c);
    if (!isfinite(v)) return;
    char buf[32];
    ml_format_double(buf, sizeof buf, v);
    ml_buf_puts(c->out, buf);
}

void ml_csv_float(ml_csv *c, float v) {
    sep(c);
    if (!isfinite(v)) return;
    ml_buf_printf(c->out, "%.9g", (double)v);
}

void ml_csv_empty(ml_csv *c) { sep(c); }

void ml_csv_row_end(ml_csv *c) {
    if (c->col != c->n_cols) c->bad = 1;
    ml_buf_append(c->out, "\n", 1);
    c->col = 0;
    c->rows++;
}

int ml_csv_finish(const ml_csv *c) { return c->bad || c->out->oom || c->col != 0 ? -1 : 0; }
