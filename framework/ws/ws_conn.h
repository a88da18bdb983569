/* ws_conn.h - WebSocket connections (ws_conn.c): CivetWeb's connect, ready
 * and close callbacks and the capacity they guard.
 */
#ifndef DAEBUS_WS_CONN_H
#define DAEBUS_WS_CONN_H

#include "ws_internal.h"

struct mg_context;

/* Registers the upgrade callbacks of ws on the running server ctx.
 * Thread: the app's owning thread (component start). */
void daebus__ws_conn_install(daebus_ws *ws, struct mg_context *ctx);

#endif
