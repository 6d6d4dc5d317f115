/* The human CSV: libcsv splits fields (quotes, CRLF), this file finds the columns by name and
 * turns their text into numbers. libcsv does not count lines, so the input is fed one
 * physical line at a time and every message can name the line it is about. */
#include <csv.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "metalign/human_csv.h"
#include "util/buf.h"
#include "util/intern.h"

/* The four columns every use needs, then the replay's optional three. */
enum {
    COL_PARTICIPANT,
    COL_TRIAL,
    COL_DIMENSION,
    COL_CORRECT,
    N_REQUIRED,
    COL_CHOICE = N_REQUIRED,
    COL_LABEL,
    COL_IMAGE,
    N_COLS
};
static const char *const col_names[N_COLS] = {"participant", "trial", "dimension", "correct",
                                              "choice", "true_category_binary", "image"};

typedef struct parser {
    const char *name;
    int quiet;            /* messages never quote the input (it came from an upstream) */
    ml_human_data *out;
    size_t cap_rows;
    ml_intern names, images, concepts, files;
    size_t cap_images;    /* of out->image_concept / image_file */

    size_t line;          /* physical line being fed, 1-based */
    size_t record_line;   /* line the current record started on */
    int field;            /* index of the next field in the current record */
    int header_done;
    int n_cols;           /* header fields */
    int col[N_COLS];      /* header position of each column, -1 if absent */
    ml_buf header;        /* the header's names, for messages */

    /* The record being read. */
    int32_t v_participant, v_trial, v_dimension, v_image;
    int v_correct;        /* 0, 1, or -1 for NA */
    int v_choice, v_label; /* 0, 1, -1 for NA (also when the column is absent) */

    /* Where the record boundaries fall, to tell whether a line ends inside a quoted field
     * without reading libcsv's private state: events counts fields and records, last_record
     * says the latest event ended a record. */
    size_t events;
    int last_record;

    char *opt_problem;    /* first bad cell of an optional column (it only stops the replay) */

    int failed;
    ml_fetch_code code;
    ml_err *err;
} parser;

/* Hands the names over as a table and frees the lookup slots. */
static void intern_take(ml_intern *t, ml_strtab *out) {
    out->n = t->n;
    out->off = t->offsets;
    out->arena = t->arena;
    t->offsets = NULL;
    t->arena = NULL;
}

/* Stops the parse with a message; the first failure wins. */
__attribute__((format(printf, 3, 4))) static void fail(parser *p, ml_fetch_code code,
                                                       const char *fmt, ...) {
    if (p->failed) return;
    p->failed = 1;
    p->code = code;
    char msg[ML_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ml_errf(p->err, "%s: %s", p->name, msg);
}

/* The field as a C string for messages: at most 40 bytes, non-printable bytes as '?'. */
static void excerpt(const char *s, size_t n, char out[48]) {
    size_t m = n < 40 ? n : 40;
    for (size_t i = 0; i < m; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    strcpy(out + m, n > 40 ? "..." : "");
}

/* A field for messages: its excerpt in quotes, or, quiet, only its size. */
static void describe(const parser *p, const char *s, size_t n, char out[64]) {
    char ex[48];
    if (p->quiet) {
        snprintf(out, 64, "a value of %zu bytes", n);
        return;
    }
    excerpt(s, n, ex);
    snprintf(out, 64, "\"%s\"", ex);
}

/* Blanks around a number, boolean or column name do not change what it means. */
static void trim(const char **s, size_t *n) {
    while (*n && (**s == ' ' || **s == '\t')) (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) (*n)--;
}

/* A whole number >= 0 that fits int32, written as digits or as a float with a zero fraction
 * ("3.0", which pandas writes for an integer column that had a missing value). */
static int parse_count(const char *s, size_t n, int32_t *out) {
    char buf[64];
    trim(&s, &n);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (*end == '.') {
        for (const char *q = end + 1; *q; q++)
            if (*q != '0') return -1;
        if (end == buf || end[1] == '\0') return -1; /* "." alone or "3." */
    } else if (*end != '\0' || end == buf) {
        return -1;
    }
    if (errno == ERANGE || v < 0 || v > INT32_MAX || buf[0] == '-' || buf[0] == '+') return -1;
    *out = (int32_t)v;
    return 0;
}

static int is_na(const char *s, size_t n) {
    static const char *const na[] = {"NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None",
                                     "<NA>", "#N/A", NULL};
    if (n == 0) return 1;
    for (int i = 0; na[i]; i++)
        if (strlen(na[i]) == n && memcmp(na[i], s, n) == 0) return 1;
    return 0;
}

/* 1 / 0 for a boolean, -1 for NA, -2 for anything else. */
static int parse_bool(const char *s, size_t n) {
    static const char *const yes[] = {"True", "true", "TRUE", "1", "1.0", NULL};
    static const char *const no[] = {"False", "false", "FALSE", "0", "0.0", NULL};
    trim(&s, &n);
    for (int i = 0; yes[i]; i++)
        if (strlen(yes[i]) == n && memcmp(yes[i], s, n) == 0) return 1;
    for (int i = 0; no[i]; i++)
        if (strlen(no[i]) == n && memcmp(no[i], s, n) == 0) return 0;
    return is_na(s, n) ? -1 : -2;
}

static void header_field(parser *p, const char *s, size_t n) {
    if (p->field == 0) p->record_line = p->line;
    trim(&s, &n);
    for (int k = 0; k < N_COLS; k++)
        if (p->col[k] < 0 && strlen(col_names[k]) == n && memcmp(col_names[k], s, n) == 0)
            p->col[k] = p->field;
    if (p->header.len < 200 && !p->quiet) {
        char ex[48];
        excerpt(s, n, ex);
        ml_buf_printf(&p->header, "%s\"%s\"", p->field ? ", " : "", ex);
    }
}

/* A bad cell in an optional column: remembered (the first one) for the replay's message; the
 * parse goes on, since the curves do not read the column. */
static void optional_bad(parser *p, int k, const char *s, size_t n, const char *expected) {
    if (p->opt_problem) return;
    char ex[64], msg[ML_ERR_MAX];
    describe(p, s, n, ex);
    snprintf(msg, sizeof msg, "line %zu: column \"%s\" is %s, not %s", p->record_line,
             col_names[k], ex, expected);
    p->opt_problem = strdup(msg);
    if (!p->opt_problem) fail(p, ML_FETCH_E_INTERNAL, "out of memory");
}

/* The concept (folder) and file of a new distinct image: its last two '/'-separated
 * components, as data/things.h reads image paths. */
static int image_parts(parser *p, int32_t id, const char *s, size_t n) {
    ml_human_data *d = p->out;
    if ((size_t)id >= p->cap_images) {
        size_t cap = p->cap_images ? p->cap_images * 2 : 1024;
        int32_t *c = realloc(d->image_concept, cap * sizeof *c);
        if (c) d->image_concept = c;
        int32_t *f = realloc(d->image_file, cap * sizeof *f);
        if (f) d->image_file = f;
        if (!c || !f) return -1;
        p->cap_images = cap;
    }
    const char *slash = memrchr(s, '/', n);
    const char *file = slash ? slash + 1 : s;
    d->image_file[id] = ml_intern_id(&p->files, file, n - (size_t)(file - s));
    if (d->image_file[id] < 0) return -1;
    d->image_concept[id] = -1;
    if (slash && slash > s) {
        const char *prev = memrchr(s, '/', (size_t)(slash - s));
        const char *c = prev ? prev + 1 : s;
        if (slash > c) {
            d->image_concept[id] = ml_intern_id(&p->concepts, c, (size_t)(slash - c));
            if (d->image_concept[id] < 0) return -1;
        }
    }
    return 0;
}

static void image_field(parser *p, const char *s, size_t n) {
    p->v_image = -1;
    if (is_na(s, n)) return;
    size_t before = p->images.n;
    p->v_image = ml_intern_id(&p->images, s, n);
    if (p->v_image < 0 ||
        ((size_t)p->v_image == before && image_parts(p, p->v_image, s, n) != 0))
        fail(p, ML_FETCH_E_INTERNAL, "out of memory");
}

static void data_field(parser *p, const char *s, size_t n) {
    if (p->field == 0) p->record_line = p->line;
    char ex[64];
    if (p->field == p->col[COL_PARTICIPANT]) {
        if (n == 0) {
            fail(p, ML_FETCH_E_BAD_CSV, "line %zu: column \"participant\" is empty",
                 p->record_line);
            return;
        }
        p->v_participant = ml_intern_id(&p->names, s, n);
        if (p->v_participant < 0) fail(p, ML_FETCH_E_INTERNAL, "out of memory");
    } else if (p->field == p->col[COL_TRIAL] || p->field == p->col[COL_DIMENSION]) {
        int k = p->field == p->col[COL_TRIAL] ? COL_TRIAL : COL_DIMENSION;
        int32_t *dst = k == COL_TRIAL ? &p->v_trial : &p->v_dimension;
        if (parse_count(s, n, dst) != 0) {
            describe(p, s, n, ex);
            fail(p, ML_FETCH_E_BAD_CSV,
                 "line %zu: column \"%s\" is %s, not a whole number >= 0 (expected 0, 1, "
                 "2, ...)",
                 p->record_line, col_names[k], ex);
        }
    } else if (p->field == p->col[COL_CORRECT]) {
        p->v_correct = parse_bool(s, n);
        if (p->v_correct == -2) {
            describe(p, s, n, ex);
            fail(p, ML_FETCH_E_BAD_CSV,
                 "line %zu: column \"correct\" is %s, not a boolean (expected True/False, "
                 "true/false, 1/0, or empty/NA for a missing answer)",
                 p->record_line, ex);
        }
    } else if (p->field == p->col[COL_CHOICE] || p->field == p->col[COL_LABEL]) {
        int k = p->field == p->col[COL_CHOICE] ? COL_CHOICE : COL_LABEL;
        int *dst = k == COL_CHOICE ? &p->v_choice : &p->v_label;
        *dst = parse_bool(s, n);
        if (*dst == -2) {
            optional_bad(p, k, s, n, "0/1 or a boolean (True/False), as in column \"correct\"");
            *dst = -1;
        }
    } else if (p->field == p->col[COL_IMAGE]) {
        image_field(p, s, n);
    }
}

static void on_field(void *s, size_t n, void *data) {
    parser *p = data;
    p->events++;
    p->last_record = 0;
    if (p->failed) return;
    /* libcsv passes NULL for an empty field while its buffer is not allocated yet. */
    if (!s) s = "";
    if (p->header_done)
        data_field(p, s, n);
    else
        header_field(p, s, n);
    p->field++;
}

/* Grows one row array to cap elements of size sz; the pointer is kept on failure. */
static int grow(void **a, size_t cap, size_t sz) {
    void *b = realloc(*a, cap * sz);
    if (!b) return -1;
    *a = b;
    return 0;
}

static int add_row(parser *p) {
    ml_human_data *d = p->out;
    if (d->n_rows == p->cap_rows) {
        size_t cap = p->cap_rows ? p->cap_rows * 2 : 4096;
        int rc = grow((void **)&d->participant, cap, sizeof(int32_t)) |
                 grow((void **)&d->trial, cap, sizeof(int32_t)) |
                 grow((void **)&d->dimension, cap, sizeof(int32_t)) |
                 grow((void **)&d->correct, cap, 1);
        if (p->col[COL_CHOICE] >= 0) rc |= grow((void **)&d->choice, cap, 1);
        if (p->col[COL_LABEL] >= 0) rc |= grow((void **)&d->label, cap, 1);
        if (p->col[COL_IMAGE] >= 0) rc |= grow((void **)&d->image, cap, sizeof(int32_t));
        if (rc) return -1;
        p->cap_rows = cap;
    }
    size_t i = d->n_rows++;
    d->participant[i] = p->v_participant;
    d->trial[i] = p->v_trial;
    d->dimension[i] = p->v_dimension;
    d->correct[i] = (uint8_t)p->v_correct;
    if (d->choice) d->choice[i] = p->v_choice < 0 ? ML_HUMAN_NA : (uint8_t)p->v_choice;
    if (d->label) d->label[i] = p->v_label < 0 ? ML_HUMAN_NA : (uint8_t)p->v_label;
    if (d->image) d->image[i] = p->v_image;
    if (p->v_trial > d->max_trial) d->max_trial = p->v_trial;
    return 0;
}

/* Reset before each record's fields: an absent optional column reads as NA. */
static void record_defaults(parser *p) {
    p->v_choice = p->v_label = -1;
    p->v_image = -1;
}

static void record_end(parser *p) {
    int n_fields = p->field;
    p->field = 0;
    if (!p->header_done) {
        p->header_done = 1;
        p->n_cols = n_fields;
        for (int k = 0; k < N_REQUIRED; k++)
            if (p->col[k] < 0) {
                if (p->quiet)
                    fail(p, ML_FETCH_E_NOT_CSV,
                         "line %zu: the header has no column \"%s\" (it has %d columns); the "
                         "human data needs participant, trial, dimension and correct",
                         p->record_line, col_names[k], n_fields);
                else
                    fail(p, ML_FETCH_E_NOT_CSV,
                         "line %zu: the header has no column \"%s\" (it has %s); the human "
                         "data needs participant, trial, dimension and correct",
                         p->record_line, col_names[k], p->header.data ? p->header.data : "");
                return;
            }
        return;
    }
    if (n_fields != p->n_cols) {
        fail(p, ML_FETCH_E_BAD_CSV, "line %zu: the row has %d fields but the header has %d",
             p->record_line, n_fields, p->n_cols);
        return;
    }
    if (p->v_correct < 0) {
        p->out->n_missing++;
        return;
    }
    if (add_row(p) != 0) fail(p, ML_FETCH_E_INTERNAL, "out of memory");
}

static void on_record(int terminator, void *data) {
    (void)terminator;
    parser *p = data;
    p->events++;
    p->last_record = 1;
    if (p->failed) return;
    record_end(p);
    record_defaults(p);
}

/* Rejects what is plainly not CSV text before libcsv sees it, saying what it looks like. */
static int sniff(parser *p, const char *buf, size_t len) {
    if (len == 0) {
        fail(p, ML_FETCH_E_NOT_CSV, "the body is empty");
        return -1;
    }
    const char *nul = memchr(buf, '\0', len);
    if (nul) {
        fail(p, ML_FETCH_E_NOT_CSV,
             "binary data, not CSV text (a NUL byte at offset %zu of %zu bytes)",
             (size_t)(nul - buf), len);
        return -1;
    }
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) i++;
    const char *kind = NULL;
    if (i < len && buf[i] == '<') kind = "HTML or XML";
    if (i < len && (buf[i] == '{' || buf[i] == '[')) kind = "JSON";
    if (kind && p->quiet) {
        fail(p, ML_FETCH_E_NOT_CSV, "%s, not CSV (%zu bytes)", kind, len);
        return -1;
    }
    if (kind) {
        char ex[48];
        size_t n = len - i;
        const char *eol = memchr(buf + i, '\n', n);
        excerpt(buf + i, eol ? (size_t)(eol - (buf + i)) : n, ex);
        fail(p, ML_FETCH_E_NOT_CSV, "%s, not CSV (%zu bytes starting \"%s\")", kind, len, ex);
        return -1;
    }
    return 0;
}

static int no_space(unsigned char c) {
    (void)c;
    return 0;
}

static void strtab_free(ml_strtab *t) {
    free(t->off);
    free(t->arena);
    memset(t, 0, sizeof *t);
}

void ml_human_data_free(ml_human_data *d) {
    free(d->participant);
    free(d->trial);
    free(d->dimension);
    free(d->correct);
    free(d->choice);
    free(d->label);
    free(d->image);
    free(d->image_concept);
    free(d->image_file);
    free(d->replay_problem);
    strtab_free(&d->participant_names);
    strtab_free(&d->images);
    strtab_free(&d->concepts);
    strtab_free(&d->files);
    memset(d, 0, sizeof *d);
    d->max_trial = -1;
}

/* Only blank-line bytes: libcsv skips such a line without an event. */
static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* Feeds the input to libcsv line by line. quote_line tracks where a quoted field that is
 * still open at the end of a line began, for the message if it never closes: a line that
 * produced events and whose last event was a field (not a record end) ends mid-record, which
 * only a quoted field can do across a newline, and that field began on this line; a line
 * without events is blank, or continues a field opened earlier, or opens one itself. */
static void feed(parser *p, struct csv_parser *cp, const char *buf, size_t len) {
    size_t pos = 0, quote_line = 0;
    int open = 0;
    while (pos < len && !p->failed) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (buf + pos)) + 1 : len - pos;
        size_t events = p->events;
        if (csv_parse(cp, buf + pos, n, on_field, on_record, p) != n && !p->failed)
            fail(p, csv_error(cp) == CSV_EPARSE ? ML_FETCH_E_BAD_CSV : ML_FETCH_E_INTERNAL,
                 "line %zu: %s (a quote inside an unquoted field, or text after a closing "
                 "quote)",
                 p->line, csv_strerror(csv_error(cp)));
        if (p->events != events) {
            open = !p->last_record;
            if (open) quote_line = p->line;
        } else if (!open && !blank(buf + pos, n)) {
            open = 1;
            quote_line = p->line;
        }
        pos += n;
        p->line++;
    }
    if (!p->failed && csv_fini(cp, on_field, on_record, p) != 0 && !p->failed)
        fail(p, ML_FETCH_E_BAD_CSV,
             "line %zu: a quoted field opens here and is never closed (the file ends inside it)",
             quote_line ? quote_line : p->line - 1);
}

/* Why the replay cannot use the rows, or NULL: missing columns first, then a bad cell. */
static int replay_problem(parser *p) {
    ml_buf b = {0};
    int missing = 0;
    for (int k = N_REQUIRED; k < N_COLS; k++)
        if (p->col[k] < 0) ml_buf_printf(&b, "%s\"%s\"", missing++ ? ", " : "", col_names[k]);
    if (missing) {
        ml_buf_printf(&b, ": the replay needs the column%s choice, true_category_binary and "
                          "image beside participant, trial, dimension and correct",
                      missing > 1 ? "s" : "");
        char *msg = NULL;
        if (!b.oom && asprintf(&msg, "%s has no column%s %s", p->name, missing > 1 ? "s" : "",
                               b.data) < 0)
            msg = NULL;
        ml_buf_free(&b);
        if (!msg) return -1;
        p->out->replay_problem = msg;
        return 0;
    }
    ml_buf_free(&b);
    if (p->opt_problem) {
        char *msg;
        if (asprintf(&msg, "%s: %s; the replay needs it in every row with an answer", p->name,
                     p->opt_problem) < 0)
            return -1;
        p->out->replay_problem = msg;
    }
    return 0;
}

const char *ml_human_participant_name(const ml_human_data *d, int32_t p) {
    if (p < 0 || (size_t)p >= d->participant_names.n) return "";
    return ml_strtab_get(&d->participant_names, (size_t)p);
}

static int parse(const char *buf, size_t len, const char *name, int quiet, ml_human_data *out,
                 ml_fetch_code *code, ml_err *err) {
    memset(out, 0, sizeof *out);
    out->max_trial = -1;
    parser p = {.name = name, .quiet = quiet, .out = out, .line = 1, .err = err,
                .last_record = 1};
    for (int k = 0; k < N_COLS; k++) p.col[k] = -1;
    record_defaults(&p);
    *code = ML_FETCH_OK;

    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) buf += 3, len -= 3;
    if (sniff(&p, buf, len) != 0) {
        *code = p.code;
        return -1;
    }
    struct csv_parser cp;
    if (csv_init(&cp, CSV_STRICT | CSV_STRICT_FINI) != 0) {
        *code = ML_FETCH_E_INTERNAL;
        return ml_errf(err, "%s: out of memory", name);
    }
    /* Fields exactly as written, as pandas reads them (" b" is not "b"); numbers, booleans
     * and header names are trimmed where they are interpreted. */
    csv_set_space_func(&cp, no_space);
    feed(&p, &cp, buf, len);
    csv_free(&cp);
    if (!p.failed && !p.header_done)
        fail(&p, ML_FETCH_E_NOT_CSV, "no header line (the body is only blank lines)");
    if (!p.failed && out->n_rows == 0)
        fail(&p, ML_FETCH_E_BAD_CSV, "the header is right but there are no rows with an answer");
    if (!p.failed && replay_problem(&p) != 0) fail(&p, ML_FETCH_E_INTERNAL, "out of memory");
    out->n_participants = p.names.n;
    intern_take(&p.names, &out->participant_names);
    intern_take(&p.images, &out->images);
    intern_take(&p.concepts, &out->concepts);
    intern_take(&p.files, &out->files);
    ml_intern_free(&p.names);
    ml_intern_free(&p.images);
    ml_intern_free(&p.concepts);
    ml_intern_free(&p.files);
    free(p.opt_problem);
    ml_buf_free(&p.header);
    if (p.failed) {
        *code = p.code;
        ml_human_data_free(out);
        return -1;
    }
    return 0;
}

int ml_human_csv_parse(const char *buf, size_t len, const char *name, ml_human_data *out,
                       ml_fetch_code *code, ml_err *err) {
    return parse(buf, len, name, 0, out, code, err);
}

int ml_human_csv_parse_quiet(const char *buf, size_t len, const char *name, ml_human_data *out,
                             ml_fetch_code *code, ml_err *err) {
    return parse(buf, len, name, 1, out, code, err);
}
