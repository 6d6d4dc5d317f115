/* The human CSV: libcsv splits fields (quotes, CRLF), this file finds the four columns by name
 * and turns their text into numbers. libcsv does not count lines, so the input is fed one
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

enum { COL_PARTICIPANT, COL_TRIAL, COL_DIMENSION, COL_CORRECT, N_REQUIRED };
static const char *const required_names[N_REQUIRED] = {"participant", "trial", "dimension",
                                                       "correct"};

/* Participant names -> dense ids (open addressing; the table stays at most half full). */
typedef struct intern {
    size_t cap;        /* slots, a power of two */
    size_t n;
    int32_t *slot_id;  /* -1 = empty */
    uint64_t *slot_hash;
    size_t *offsets;   /* (n) start of each name in arena */
    char *arena;
    size_t arena_len, arena_cap;
} intern;

typedef struct parser {
    const char *name;
    int quiet;          /* messages never quote the input (it came from an upstream) */
    ml_human_data *out;
    size_t cap_rows;
    intern names;

    size_t line;          /* physical line being fed, 1-based */
    size_t record_line;   /* line the current record started on */
    int field;            /* index of the next field in the current record */
    int header_done;
    int n_cols;           /* header fields */
    int col[N_REQUIRED];  /* header position of each required column */
    ml_buf header;        /* the header's names, for messages */

    /* The record being read. */
    int32_t v_participant, v_trial, v_dimension;
    int v_correct;        /* 0, 1, or -1 for NA */

    int failed;
    ml_fetch_code code;
    ml_err *err;
} parser;

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void intern_free(intern *t) {
    free(t->slot_id);
    free(t->slot_hash);
    free(t->offsets);
    free(t->arena);
    memset(t, 0, sizeof *t);
}

static int intern_grow(intern *t) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    int32_t *ids = malloc(cap * sizeof *ids);
    uint64_t *hashes = malloc(cap * sizeof *hashes);
    size_t *offsets = realloc(t->offsets, cap / 2 * sizeof *offsets);
    if (!ids || !hashes || !offsets) {
        free(ids);
        free(hashes);
        if (offsets) t->offsets = offsets;
        return -1;
    }
    t->offsets = offsets;
    for (size_t i = 0; i < cap; i++) ids[i] = -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slot_id[i] < 0) continue;
        size_t j = t->slot_hash[i] & (cap - 1);
        while (ids[j] >= 0) j = (j + 1) & (cap - 1);
        ids[j] = t->slot_id[i];
        hashes[j] = t->slot_hash[i];
    }
    free(t->slot_id);
    free(t->slot_hash);
    t->slot_id = ids;
    t->slot_hash = hashes;
    t->cap = cap;
    return 0;
}

/* The id of name s (n bytes), adding it when new; -1 when out of memory. */
static int32_t intern_id(intern *t, const char *s, size_t n) {
    if ((t->n + 1) * 2 > t->cap && intern_grow(t) != 0) return -1;
    uint64_t h = fnv1a(s, n);
    size_t j = h & (t->cap - 1);
    for (; t->slot_id[j] >= 0; j = (j + 1) & (t->cap - 1)) {
        int32_t id = t->slot_id[j];
        const char *name = t->arena + t->offsets[id];
        if (t->slot_hash[j] == h && strlen(name) == n && memcmp(name, s, n) == 0) return id;
    }
    if (t->n >= INT32_MAX) return -1;
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 4096;
        while (cap < t->arena_len + n + 1) cap *= 2;
        char *a = realloc(t->arena, cap);
        if (!a) return -1;
        t->arena = a;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = '\0';
    t->offsets[t->n] = t->arena_len;
    t->arena_len += n + 1;
    t->slot_id[j] = (int32_t)t->n;
    t->slot_hash[j] = h;
    return (int32_t)t->n++;
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

/* A field for messages: "its excerpt" in quotes, or, quiet, only its size. */
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
    for (int k = 0; k < N_REQUIRED; k++)
        if (p->col[k] < 0 && strlen(required_names[k]) == n &&
            memcmp(required_names[k], s, n) == 0)
            p->col[k] = p->field;
    if (p->header.len < 200 && !p->quiet) {
        char ex[48];
        excerpt(s, n, ex);
        ml_buf_printf(&p->header, "%s\"%s\"", p->field ? ", " : "", ex);
    }
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
        p->v_participant = intern_id(&p->names, s, n);
        if (p->v_participant < 0) fail(p, ML_FETCH_E_INTERNAL, "out of memory");
    } else if (p->field == p->col[COL_TRIAL] || p->field == p->col[COL_DIMENSION]) {
        int k = p->field == p->col[COL_TRIAL] ? COL_TRIAL : COL_DIMENSION;
        int32_t *dst = k == COL_TRIAL ? &p->v_trial : &p->v_dimension;
        if (parse_count(s, n, dst) != 0) {
            describe(p, s, n, ex);
            fail(p, ML_FETCH_E_BAD_CSV,
                 "line %zu: column \"%s\" is %s, not a whole number >= 0 (expected 0, 1, "
                 "2, ...)",
                 p->record_line, required_names[k], ex);
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
    }
}

static void on_field(void *s, size_t n, void *data) {
    parser *p = data;
    if (p->failed) return;
    /* libcsv passes NULL for an empty field while its buffer is not allocated yet. */
    if (!s) s = "";
    if (p->header_done)
        data_field(p, s, n);
    else
        header_field(p, s, n);
    p->field++;
}

static int add_row(parser *p) {
    ml_human_data *d = p->out;
    if (d->n_rows == p->cap_rows) {
        size_t cap = p->cap_rows ? p->cap_rows * 2 : 4096;
        int32_t *pa = realloc(d->participant, cap * sizeof *pa);
        if (pa) d->participant = pa;
        int32_t *tr = realloc(d->trial, cap * sizeof *tr);
        if (tr) d->trial = tr;
        int32_t *dm = realloc(d->dimension, cap * sizeof *dm);
        if (dm) d->dimension = dm;
        uint8_t *co = realloc(d->correct, cap * sizeof *co);
        if (co) d->correct = co;
        if (!pa || !tr || !dm || !co) return -1;
        p->cap_rows = cap;
    }
    size_t i = d->n_rows++;
    d->participant[i] = p->v_participant;
    d->trial[i] = p->v_trial;
    d->dimension[i] = p->v_dimension;
    d->correct[i] = (uint8_t)p->v_correct;
    if (p->v_trial > d->max_trial) d->max_trial = p->v_trial;
    return 0;
}

static void on_record(int terminator, void *data) {
    (void)terminator;
    parser *p = data;
    if (p->failed) return;
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
                         p->record_line, required_names[k], n_fields);
                else
                    fail(p, ML_FETCH_E_NOT_CSV,
                         "line %zu: the header has no column \"%s\" (it has %s); the human "
                         "data needs participant, trial, dimension and correct",
                         p->record_line, required_names[k], p->header.data ? p->header.data : "");
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

void ml_human_data_free(ml_human_data *d) {
    free(d->participant);
    free(d->trial);
    free(d->dimension);
    free(d->correct);
    memset(d, 0, sizeof *d);
    d->max_trial = -1;
}

static int parse(const char *buf, size_t len, const char *name, int quiet, ml_human_data *out,
                 ml_fetch_code *code, ml_err *err) {
    memset(out, 0, sizeof *out);
    out->max_trial = -1;
    parser p = {.name = name, .quiet = quiet, .out = out, .line = 1, .err = err};
    for (int k = 0; k < N_REQUIRED; k++) p.col[k] = -1;
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
    size_t pos = 0, quote_line = 0;
    while (pos < len && !p.failed) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (buf + pos)) + 1 : len - pos;
        if (csv_parse(&cp, buf + pos, n, on_field, on_record, &p) != n && !p.failed)
            fail(&p, csv_error(&cp) == CSV_EPARSE ? ML_FETCH_E_BAD_CSV : ML_FETCH_E_INTERNAL,
                 "line %zu: %s (a quote inside an unquoted field, or text after a closing "
                 "quote)",
                 p.line, csv_strerror(csv_error(&cp)));
        /* A quoted field still open at the end of a line (libcsv's state 2 is "field
         * begun"): remember where it opened, for the message if it never closes. */
        if (cp.quoted && cp.pstate == 2) {
            if (!quote_line) quote_line = p.line;
        } else {
            quote_line = 0;
        }
        pos += n;
        p.line++;
    }
    if (!p.failed && csv_fini(&cp, on_field, on_record, &p) != 0 && !p.failed)
        fail(&p, ML_FETCH_E_BAD_CSV,
             "line %zu: a quoted field opens here and is never closed (the file ends inside it)",
             quote_line ? quote_line : p.line - 1);
    csv_free(&cp);
    if (!p.failed && !p.header_done)
        fail(&p, ML_FETCH_E_NOT_CSV, "no header line (the body is only blank lines)");
    if (!p.failed && out->n_rows == 0)
        fail(&p, ML_FETCH_E_BAD_CSV, "the header is right but there are no rows with an answer");
    out->n_participants = p.names.n;
    intern_free(&p.names);
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
