/* blueprints/rooms/rooms.h - chat rooms over WebSocket as a reusable blueprint.
 *
 *   #include "rooms/rooms.h"
 *   daebus_app_register_blueprint(app, &daebus_rooms_bp);
 *
 * The WebSocket protocol of the Daebus guide's complete chat example, message
 * for message (client -> server {"type", "data", "request_id"}; replies are
 * {"type": "response", "data": ...}):
 *   connect       -> {"status": "connected", "client_id": id}
 *   register      {"username"} -> {"status": "registered", "username",
 *                 "available_rooms": [...]}; without a username:
 *                 {"error": "Username is required", "status": "error"}
 *   join_room     {"room"} creates the room if needed; the other members get
 *                 room_update {"user", "action": "joined", "room", "members"};
 *                 reply {"status": "joined", "room", "members", "history"}
 *                 (the last 20 messages)
 *   leave_room    {"room"} -> {"status": "left", "room"}; others get
 *                 room_update "left"
 *   chat_message  {"room", "message"}: membership checked; the room keeps the
 *                 last 100 messages; the other members get new_message
 *                 {"id", "room", "sender", "text", "timestamp"}; reply
 *                 {"status": "sent", "message_id", "timestamp"}
 *   disconnect    the client leaves every room (room_update "left" to the
 *                 others) and its registration is dropped.
 * HTTP: GET /api/rooms -> {"count", "rooms": [{"name", "members",
 * "message_count", "created_at"}]}.
 *
 * Errors are replies of the form {"error": "<text>", "status": "error"} as in
 * the guide. The username is also stored as the WebSocket client data
 * "username", which the admin blueprint reads (is_authenticated, notify_user).
 *
 * The blueprint registers the app's SOCKET_CONNECT and SOCKET_DISCONNECT
 * handlers (an app has one of each): a service that needs its own must call
 * daebus_rooms_client_gone() from it.
 *
 * State is process-wide (one set of rooms per process) and protected by one
 * mutex; messages to other clients are sent after the mutex is released.
 * Thread: every function here is thread-safe.
 */
#ifndef DAEBUS_BP_ROOMS_H
#define DAEBUS_BP_ROOMS_H

#include <stddef.h>
#include <daebus/daebus.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DAEBUS_ROOMS_HISTORY      100  /* messages kept per room */
#define DAEBUS_ROOMS_JOIN_HISTORY 20   /* messages sent back on join */
#define DAEBUS_ROOMS_MAX_TEXT     4096 /* bytes of one message */
#define DAEBUS_ROOMS_MAX_NAME     64   /* bytes of a room or user name */

/* The blueprint: SOCKET register/join_room/leave_room/chat_message, connect,
 * disconnect, and GET /api/rooms. */
DAEBUS_BLUEPRINT_DECLARE(daebus_rooms_bp);

typedef struct daebus_rooms_stats {
    size_t users;                      /* registered clients */
    size_t rooms;                      /* rooms that exist */
    size_t members;                    /* memberships over all rooms */
    size_t messages;                   /* messages kept over all rooms */
    unsigned long long messages_total; /* chat messages accepted since start */
} daebus_rooms_stats;

/* Fills *out. Thread: any. */
void daebus_rooms_get_stats(daebus_rooms_stats *out);

/* Removes client_id from every room (notifying the others with room_update
 * "left" through ws) and forgets its registration. The blueprint's own
 * disconnect handler calls it. Thread: any. */
void daebus_rooms_client_gone(daebus_ws *ws, const char *client_id);

/* Drops every room and user (tests). Thread: any. */
void daebus_rooms_reset(void);

#ifdef __cplusplus
}
#endif
#endif
