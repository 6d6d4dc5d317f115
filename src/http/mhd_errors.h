/* JSON for the answers libmicrohttpd gives on its own. MHD refuses some requests before the
 * application sees them (a malformed request line or header, an unsupported HTTP version, a
 * request line or headers too large for the connection's memory, a bad Content-Length, a bad
 * chunk) and, in 0.9.75, answers them with HTML; for a malformed or oversized Content-Length
 * it even writes its headers twice (fixed upstream in 0.9.76, "connection: fixed sending error
 * responses"). MHD queues these answers through MHD_queue_response, an exported function it
 * calls through its PLT, so mhd_errors.c defines MHD_queue_response itself: the dynamic
 * linker binds MHD's own calls to it. The application's answers go through ml_mhd_queue and
 * pass unchanged; MHD's own become {"error": {"code", "message"}} with the same status; the
 * Content-Length case is answered here, on the socket, and MHD is told the queueing failed,
 * so it closes the connection without writing anything of its own. */
#ifndef METALIGN_HTTP_MHD_ERRORS_H
#define METALIGN_HTTP_MHD_ERRORS_H

#include <microhttpd.h>
#include <stdarg.h>
#include <stddef.h>

/* The memory MHD gives each connection (MHD_OPTION_CONNECTION_MEMORY_LIMIT): a request's line
 * and headers must fit in it. */
#define ML_HTTP_CONNECTION_MEMORY ((size_t)32 << 10)

#define ML_MHD_LOG_PER_SECOND 10 /* MHD messages printed per second, the rest counted */

/* MHD_OPTION_EXTERNAL_LOGGER: libmicrohttpd's messages on stderr, at most
 * ML_MHD_LOG_PER_SECOND a second (a crowd of connections over the limits must not flood the
 * log), without those about the answers rewritten here. */
void ml_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* MHD_queue_response for the application's own answers. Every answer of the application
 * goes through it: any other call with a status >= 400 is taken for MHD's own. */
enum MHD_Result ml_mhd_queue(struct MHD_Connection *c, unsigned int status,
                             struct MHD_Response *r);
/* 1 once an answer of MHD's own has been rewritten (the interposition is in effect). */
int ml_mhd_errors_seen(void);

/* Writes a complete JSON error answer straight to a socket (with Connection: close) and
 * shuts its sending side: for an answer MHD cannot send (a body over the limit still being
 * uploaded, a request past its deadline). retry_after > 0 adds Retry-After. 0 when it was
 * written whole. */
int ml_http_write_error(int fd, unsigned int status, const char *code, const char *message,
                        int retry_after);

#endif
