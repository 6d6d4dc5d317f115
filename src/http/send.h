/* The body of an answer as libmicrohttpd sends it: a shared blob handed over without a copy,
 * owned bytes, or a blob between owned bytes (read out in blocks), each counted in flight
 * (http/inflight.h) from the moment it is queued until MHD releases it. */
#ifndef METALIGN_HTTP_SEND_H
#define METALIGN_HTTP_SEND_H

#include <microhttpd.h>

#include "http/inflight.h"
#include "http/response.h"

#define ML_SEND_BLOCK ((size_t)64 << 10) /* copied per call for a wrapped answer */

/* The MHD response for r's body (which moves into it; r keeps its status and headers), or
 * NULL when the bound refuses it (r untouched) or out of memory. */
struct MHD_Response *ml_send_response(ml_inflight *f, ml_response *r);

#endif
