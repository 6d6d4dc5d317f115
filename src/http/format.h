/* Which representation of an analysis a request wants (its "view"): JSON (the default) or a
 * tidy CSV table for pandas, by ?format=json|csv or, without it, by the Accept header; and for
 * the endpoints that offer several tables, which one (?rows=...). A view is part of the cache
 * key of every rendered answer (result_keys.h ml_key_view), so a JSON answer is never served
 * for a CSV request or the other way round. */
#ifndef METALIGN_HTTP_FORMAT_H
#define METALIGN_HTTP_FORMAT_H

#include "http/request.h"
#include "http/response.h"

typedef enum ml_format { ML_FORMAT_JSON, ML_FORMAT_CSV } ml_format;

/* The tables an endpoint may offer. */
typedef enum ml_rows {
    ML_ROWS_CURVE,    /* one row per (side, dimension, trial): p_correct and its interval */
    ML_ROWS_TRIALS,   /* the notebook's long table: one row per single trial */
    ML_ROWS_SUMMARY,  /* one row per (side, dimension): the bar plot's mean and interval */
    ML_N_ROWS
} ml_rows;
#define ML_ROWS_MASK(r) (1u << (r))

typedef struct ml_view {
    ml_format format;
    ml_rows rows;
} ml_view;

/* The query arguments ml_view_parse reads, for an endpoint's list of accepted arguments. */
#define ML_VIEW_ARGS "format", "rows"

/* Reads format (json, csv) and rows (the names of the tables in rows_offered, a mask of
 * ML_ROWS_MASK; 0 when the endpoint has one table, then rows is refused). rows without
 * format means CSV; rows with format=json is refused. 0, or -1 with a 400 answered. */
int ml_view_parse(const ml_request *req, unsigned rows_offered, ml_view *v, ml_response *resp);
/* 1 when an Accept header prefers text/csv to application/json (q-values; a tie, or a
 * header naming neither, keeps JSON). NULL: 0. */
int ml_accept_prefers_csv(const char *accept);
const char *ml_rows_name(ml_rows r);

#endif
