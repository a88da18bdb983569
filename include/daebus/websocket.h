/* daebus/websocket.h - WebSocket server on the HTTP port: typed messages, client registry,
 * broadcast.
 *
 * (Filled in by the websocket component's issue.)
 */
#ifndef DAEBUS_WEBSOCKET_H
#define DAEBUS_WEBSOCKET_H

#include "daebus/app.h"

#endif
