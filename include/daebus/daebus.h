/* daebus/daebus.h - the umbrella header of daebus-c.
 *
 * daebus-c is a C11 framework for microservice binaries that speak the wire
 * protocol of the Python framework Daebus: an app (app.h) owns components -
 * HTTP (http.h), WebSocket on the same port (websocket.h), the Redis action
 * bus (bus.h, caller.h) and the background scheduler (scheduler.h) - and
 * handlers are registered with the macros of blueprint.h.
 *
 * JSON on the wire is printed and parsed by json.h: numbers keep every bit
 * of their double, and an escaped NUL in a string reaches handlers as the two
 * bytes C0 80 (see json.h and docs/protocol.md §4).
 *
 * Thread model: nothing is thread-safe except where a declaration says so in
 * its thread line (one of four phrases: "callable from any thread", "before
 * the app runs", "only inside its handler", "the app's owning thread").
 * Every handler kind documents the thread it runs on.
 *
 * Ownership: inputs given to handlers are borrowed until the handler returns;
 * JSON a handler returns is taken by the framework on every path; functions
 * whose names end in _take consume their argument even when they fail; other
 * functions borrow and copy what they keep. Each declaration that moves
 * memory says so in an "Ownership:" line.
 */
#ifndef DAEBUS_DAEBUS_H
#define DAEBUS_DAEBUS_H

#include "daebus/error.h"
#include "daebus/log.h"
#include "daebus/config.h"
#include "daebus/blueprint.h"
#include "daebus/app.h"
#include "daebus/http.h"
#include "daebus/websocket.h"
#include "daebus/bus.h"
#include "daebus/caller.h"
#include "daebus/gateway.h"
#include "daebus/scheduler.h"
#include "daebus/json.h"

#endif
