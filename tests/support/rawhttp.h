/* Raw loopback sockets for the HTTP tests that need what libcurl hides: a chosen source
 * address (127.0.0.2 is loopback too), bytes sent one at a time, a client that never reads,
 * the exact bytes of an answer (a header written twice). */
#ifndef METALIGN_TESTS_RAWHTTP_H
#define METALIGN_TESTS_RAWHTTP_H

#include <stddef.h>
#include <sys/types.h>

/* A connected TCP socket to 127.0.0.1:port from the address from_ip (NULL: any), with a
 * receive buffer of rcvbuf bytes when > 0 (set before connecting, so the window stays
 * small); -1 on failure. */
int raw_connect(const char *from_ip, int port, int rcvbuf);
/* 0 when all of data was sent. */
int raw_send(int fd, const void *data, size_t len);
int raw_send_str(int fd, const char *s);
/* Reads until the peer closes, cap - 1 bytes or timeout_ms of silence; NUL-terminates;
 * returns the bytes read (-1 if the connection failed before any arrived). */
ssize_t raw_read(int fd, char *buf, size_t cap, int timeout_ms);
/* 1 once the peer has closed the connection (or reset it) within timeout_ms, reading and
 * dropping what arrives; 0 if it is still open. */
int raw_closed(int fd, int timeout_ms);
/* The status code of an answer's first line, or -1. */
int raw_status(const char *answer);
/* The body after the blank line, or NULL. */
const char *raw_body(const char *answer);
/* Status lines ("HTTP/1.x NNN ") anywhere in an answer: more than one is an answer whose
 * headers were written twice, or a second answer after the first one's body. */
int raw_status_lines(const char *answer);
/* Occurrences of needle in hay. */
int raw_count(const char *hay, const char *needle);
/* Monotonic seconds. */
double raw_now(void);

#endif
