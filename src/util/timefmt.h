/* The one time format of the API and the files it writes: RFC 3339 in UTC, to the second. */
#ifndef METALIGN_UTIL_TIMEFMT_H
#define METALIGN_UTIL_TIMEFMT_H

#include <time.h>

#define ML_RFC3339_LEN 21 /* "2024-05-01T12:00:00Z" and its NUL */

void ml_rfc3339(time_t t, char out[ML_RFC3339_LEN]);
/* Parses what ml_rfc3339 writes; 0 with *t, or -1. */
int ml_rfc3339_parse(const char *s, time_t *t);

#endif
