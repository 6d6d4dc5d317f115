/* GET /openapi.json: the OpenAPI 3.1 description of every endpoint (src/http/openapi.json,
 * embedded at build time) with the running daemon's limits filled in. The document names
 * limits as placeholder strings ("${ML_SIM_MAX_EPISODES}", "${app.target_dims_max}"); they
 * are replaced by the named constants the handlers check and by this world's sizes (items,
 * dimensions, layers), so the document can never state a limit the code does not enforce. */
#ifndef METALIGN_HTTP_OPENAPI_H
#define METALIGN_HTTP_OPENAPI_H

#include "engine/app.h"
#include "util/buf.h"

/* The document as JSON into out; -1 with err (a placeholder it does not know). */
int ml_openapi_render(const ml_app *app, ml_buf *out, ml_err *err);

#endif
