#include "util/timefmt.h"

#include <stdio.h>
#include <string.h>

void ml_rfc3339(time_t t, char out[ML_RFC3339_LEN]) {
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, ML_RFC3339_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, ML_RFC3339_LEN, "1970-01-01T00:00:00Z");
}

int ml_rfc3339_parse(const char *s, time_t *t) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    if (!end || *end) return -1;
    *t = timegm(&tm);
    return 0;
}
