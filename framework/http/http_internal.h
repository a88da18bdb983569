/* http_internal.h - what the HTTP component offers the WebSocket component.
 *
 * The WebSocket server shares CivetWeb with the HTTP component (same port).
 * CivetWeb holds one worker thread per open connection, so the WebSocket
 * component reserves threads before the server starts, and registers its
 * upgrade handlers on the running context once the HTTP component started
 * (the app starts components in attach order, and websocket attaches after http).
 */
#ifndef DAEBUS_HTTP_INTERNAL_H
#define DAEBUS_HTTP_INTERNAL_H

#include "daebus/app.h"

struct mg_context;

/* Adds extra worker threads to CivetWeb's num_threads (cumulative). Call
 * before the HTTP component starts. Returns 0 or DAEBUS_ESTATE. */
int daebus__http_reserve_threads(daebus_http *http, int extra);

/* Sets a CivetWeb option for the next start (e.g. "websocket_timeout_ms",
 * "enable_websocket_ping_pong"), replacing the HTTP component's own value of
 * the same name. Ownership: copied. Call before the HTTP component starts.
 * Returns: 0, DAEBUS_EINVAL, DAEBUS_ESTATE (running), DAEBUS_EFULL (more than
 * 8 names), DAEBUS_ENOMEM. */
int daebus__http_set_option(daebus_http *http, const char *name, const char *value);

/* The running CivetWeb context; NULL before start and after stop. */
struct mg_context *daebus__http_context(daebus_http *http);

/* The port the server is bound to (after start), else -1. */
int daebus__http_bound_port(daebus_http *http);

#endif
