/* A tiny HTTP/1.1 server on 127.0.0.1 (port chosen by the kernel) for the human-data tests:
 * raw sockets, one thread per connection, `Connection: close` on every answer. It serves a
 * body the test sets and can misbehave on demand, so every download failure can be produced
 * without the internet.
 *
 * Paths:
 *   /data.csv      the body, with ETag and Last-Modified; honours If-None-Match and
 *                  If-Modified-Since with 304; misbehaves as the mode says (below)
 *   /lm.csv        the body with Last-Modified only      /plain.csv  with no validators
 *   /redirect      302 to http://127.0.0.1:<port>/data.csv   /redirect-loop  302 to itself
 *   /404 /500      those statuses (an HTML error page)
 *   /_control/mode/<mode>   sets the mode (for a daemon test driving a separate process)
 *   /_control/counts        {"<path>": n, ...}
 * Modes for /data.csv, /lm.csv and /plain.csv:
 *   ok        the body                        404 / 500   that status
 *   stall     headers, then nothing until stall_ms have passed, then close
 *   truncate  Content-Length of the body, half of it, close
 *   big       announces and streams max(body, 8 MiB) bytes of CSV rows
 *   big_chunked  streams 8 MiB of CSV rows with no Content-Length (until close)
 *   html      200 text/html page            binary  200 application/octet-stream with NULs
 *   empty     200 with no body               badrow  a CSV whose line 3 has trial "x" */
#ifndef METALIGN_TESTS_HUMAN_TESTSRV_H
#define METALIGN_TESTS_HUMAN_TESTSRV_H

#include <stddef.h>

typedef struct testsrv testsrv;

/* NULL (with a message on stderr) if it cannot listen. */
testsrv *testsrv_start(void);
/* Wakes stalled answers, waits for every connection thread, frees. */
void testsrv_stop(testsrv *s);
int testsrv_port(const testsrv *s);
/* "http://127.0.0.1:<port><path>" */
void testsrv_url(const testsrv *s, const char *path, char *out, size_t cap);

/* Copies the body served at /data.csv; a new body gets a new ETag and Last-Modified. */
void testsrv_set_body(testsrv *s, const void *data, size_t len);
/* Reads a file into the body; -1 if it cannot be read. */
int testsrv_set_body_file(testsrv *s, const char *path);
void testsrv_set_mode(testsrv *s, const char *mode);
/* Milliseconds to wait before answering a request for the body (to make requests overlap). */
void testsrv_set_delay_ms(testsrv *s, int ms);
void testsrv_set_stall_ms(testsrv *s, int ms);

/* Requests received for path (any method), since start or the last reset. */
int testsrv_count(testsrv *s, const char *path);
/* Requests that carried If-None-Match / If-Modified-Since, and 304 answers sent. */
int testsrv_conditional(testsrv *s);
int testsrv_not_modified(testsrv *s);
void testsrv_reset_counts(testsrv *s);
/* The User-Agent of the last request. */
void testsrv_last_user_agent(testsrv *s, char *out, size_t cap);

#endif
