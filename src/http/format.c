#include "http/format.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const rows_names[ML_N_ROWS] = {"curve", "trials", "summary"};

const char *ml_rows_name(ml_rows r) { return r < ML_N_ROWS ? rows_names[r] : "?"; }

/* The q-value of the media range starting at p (up to the next ',' or the end). */
static double q_value(const char *p, const char *end) {
    const char *q = p;
    while ((q = memchr(q, ';', (size_t)(end - q)))) {
        q++;
        while (q < end && *q == ' ') q++;
        if (end - q >= 2 && (q[0] == 'q' || q[0] == 'Q') && q[1] == '=') {
            double v = strtod(q + 2, NULL);
            return v < 0 ? 0 : v > 1 ? 1 : v;
        }
    }
    return 1;
}

/* How much the Accept header wants type ("text/csv"): the q of the most specific range that
 * covers it (exact, then "text/ *", then "* / *"), or -1 when none does. */
static double wants(const char *accept, const char *type) {
    size_t tn = strlen(type), slash = (size_t)(strchr(type, '/') - type);
    double best = -1;
    int best_rank = 0;
    for (const char *p = accept; *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *tend = semi ? semi : end;
        while (tend > p && tend[-1] == ' ') tend--;
        size_t n = (size_t)(tend - p);
        int rank = 0;
        if (n == tn && strncasecmp(p, type, tn) == 0)
            rank = 3;
        else if (n == slash + 2 && strncasecmp(p, type, slash + 1) == 0 && p[slash + 1] == '*')
            rank = 2;
        else if (n == 3 && strncmp(p, "*/*", 3) == 0)
            rank = 1;
        if (rank > best_rank) {
            best_rank = rank;
            best = q_value(p, end);
        }
        p = end;
    }
    return best;
}

int ml_accept_prefers_csv(const char *accept) {
    if (!accept) return 0;
    double csv = wants(accept, "text/csv"), json = wants(accept, "application/json");
    return csv > 0 && csv > json;
}

int ml_view_parse(const ml_request *req, unsigned rows_offered, ml_view *v, ml_response *resp) {
    static const char *const formats[] = {"json", "csv", NULL};
    v->format = ML_FORMAT_JSON;
    v->rows = ML_ROWS_CURVE;
    const char *f = ml_request_arg(req, "format"), *rows = ml_request_arg(req, "rows");
    int fmt = 0;
    if (ml_arg_enum(req, "format", formats, &fmt, resp) != 0) return -1;
    v->format = f ? (ml_format)fmt : ml_accept_prefers_csv(req->accept) ? ML_FORMAT_CSV
                                                                         : ML_FORMAT_JSON;
    if (!rows) return 0;
    const char *offered[ML_N_ROWS + 1];
    int n = 0;
    for (int r = 0; r < ML_N_ROWS; r++)
        if (rows_offered & ML_ROWS_MASK(r)) offered[n++] = rows_names[r];
    offered[n] = NULL;
    if (n == 0) {
        ml_respond_error(resp, 400, "unknown_argument",
                         "rows: this endpoint answers one table; drop rows");
        return -1;
    }
    int idx = 0;
    if (ml_arg_enum(req, "rows", offered, &idx, resp) != 0) return -1;
    for (int r = 0; r < ML_N_ROWS; r++)
        if (!strcmp(rows_names[r], offered[idx])) v->rows = (ml_rows)r;
    if (f && v->format == ML_FORMAT_JSON) {
        ml_respond_error(resp, 400, "invalid_argument",
                         "rows=%s is a CSV table; use format=csv (or drop format)", rows);
        return -1;
    }
    v->format = ML_FORMAT_CSV;
    return 0;
}
