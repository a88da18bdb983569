/* blueprints/admin/admin.h - WebSocket client management over the bus, as a blueprint.
 *
 *   #include "admin/admin.h"
 *   daebus_app_register_blueprint(app, &daebus_admin_bp);
 *
 * Bus actions (call them with daebus-call or any Daebus caller). With
 * replicas (docs/replicas.md) one replica takes each request and answers for
 * the whole service: the client views and sends cover the clients of every
 * replica.
 *   get_connected_clients  {} -> {"count", "clients": {id: {"connected_at",
 *                          "last_activity", "remote_address",
 *                          "messages_received", "messages_sent",
 *                          "is_authenticated", "username", "instance_id"
 *                          (the replica holding it; with the bus)}}}
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
 *   shutdown               {"message"?, "timeout"?, "scope"?, "instance_id"?}
 *                          -> replies {"shutdown_initiated": true, "scope",
 *                          "instance_id", "timeout"}, then the replicas it
 *                          names send each of their clients server_shutdown
 *                          with the message, wait up to timeout seconds
 *                          (default 2, at most 60) and stop:
 *                          scope "instance" (the default): one replica, the
 *                          one that took the request, or the live instance
 *                          instance_id names (error "Instance <id> is not a
 *                          live instance of this service");
 *                          scope "all": every replica of the service, through
 *                          the control channel below.
 *                          The clients reconnect to the replicas left (a load
 *                          balancer sends them there).
 *
 *   dead_letters           {"start"?, "count"?} -> {"entries": [{"id", "req",
 *                          "reason", "attempts", "at"}], "count", "total",
 *                          "next"}: the dead letters of the service's durable
 *                          actions (docs/messaging/durable.md), a page at a time
 *                          (count: 50, at most 500; next: the start of the next
 *                          page or null); needs only the bus
 *   requeue_dead           {"id"} | {"all": true}, "deadline_seconds"? (60) ->
 *                          {"requeued": n}: back on the request stream with a
 *                          fresh deadline, removed from the dead stream; errors
 *                          "No dead letter <id>", "Give an id or all: true"
 *
 * Errors of the cluster-wide views while Redis is unreachable: {"error":
 * "Client list unavailable (...)"}.
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

/* The blueprint: the eight actions above and a LISTEN on the control channel. */
DAEBUS_BLUEPRINT_DECLARE(daebus_admin_bp);

/* The channel a shutdown of other replicas travels on: {"service",
 * "command": "shutdown", "target": "all" | instance id, "from", "timeout",
 * "message"?, ...}. Every replica with this blueprint listens and acts on
 * the messages naming its own service. */
#define DAEBUS_ADMIN_CONTROL_CHANNEL "daebus:admin:control"

#define DAEBUS_ADMIN_DEFAULT_INACTIVE_SECONDS 1800.0
#define DAEBUS_ADMIN_DEFAULT_KICK_REASON      "Disconnected by administrator"

#ifdef __cplusplus
}
#endif
#endif
