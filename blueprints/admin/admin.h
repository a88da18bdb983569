/* blueprints/admin/admin.h - WebSocket client management over the bus, as a blueprint.
 *
 *   #include "admin/admin.h"
 *   daebus_app_register_blueprint(app, &daebus_admin_bp);
 *
 * Bus actions (call them with daebus-call or any Daebus caller):
 *   get_connected_clients  {} -> {"count", "clients": {id: {"connected_at",
 *                          "last_activity", "remote_address",
 *                          "messages_received", "messages_sent",
 *                          "is_authenticated", "username"}}}
 *   find_inactive_clients  {"threshold_seconds": s | "threshold_minutes": m}
 *                          (default 30 minutes) -> {"count", "clients": [ids],
 *                          "threshold_seconds"}
 *   kick_client            {"client_id", "reason"?} -> sends the client
 *                          {"type": "disconnect_notice", "data": {"reason",
 *                          "timestamp"}}, closes it (code 1000) and replies
 *                          {"success", "client_id"}; error "No client_id
 *                          provided" without an id
 *   notify_user            {"user_id", "message"} -> sends {"type":
 *                          "notification", "data": {"message", "timestamp"}}
 *                          to the client whose id is user_id, or else to
 *                          every client whose client data "username" equals
 *                          user_id; replies {"delivered", "client_id",
 *                          "client_ids"}; error "User <id> not connected"
 *   get_instances          {} -> {"instance_id" (the one answering),
 *                          "count", "stale", "instances": [{"id", "host",
 *                          "pid", "started_at", "last_seen", "http_port",
 *                          "heartbeat", "self", "stale"}]}: the live
 *                          instances of the service (docs/replicas.md);
 *                          needs only the bus
 *   shutdown               {"message"?, "timeout"?} -> replies
 *                          {"shutdown_initiated": true}, then sends every
 *                          client server_shutdown with the message, waits up
 *                          to timeout seconds (default 2) and stops the app
 *
 * "is_authenticated"/"username" come from the client data key "username"
 * (set by the rooms blueprint's register, or by your own handlers with
 * daebus_ws_set_client_data()).
 *
 * Needs the bus and WebSocket components. Anyone who can publish on the
 * service's Redis channel can call these actions: protect Redis accordingly.
 * Thread: the actions run on bus worker threads.
 */
#ifndef DAEBUS_BP_ADMIN_H
#define DAEBUS_BP_ADMIN_H

#include <daebus/daebus.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The blueprint: the five actions above. */
DAEBUS_BLUEPRINT_DECLARE(daebus_admin_bp);

#define DAEBUS_ADMIN_DEFAULT_INACTIVE_SECONDS 1800.0
#define DAEBUS_ADMIN_DEFAULT_KICK_REASON      "Disconnected by administrator"

#ifdef __cplusplus
}
#endif
#endif
