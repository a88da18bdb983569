/* blueprints/rooms/rooms.h - chat rooms over WebSocket as a reusable blueprint.
 *
 *   #include "rooms/rooms.h"
 *   daebus_rooms_options ro = DAEBUS_ROOMS_OPTIONS_INIT;   // optional
 *   ro.max_rooms = 200;
 *   daebus_rooms_configure(&ro);
 *   daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
 *   daebus_rooms_ws_options(&wo);  // the rooms' channels: history, frames, hook
 *   ... daebus_ws_create(&wo, NULL), attach it, attach the bus ...
 *   daebus_rooms_register(app);   // after attaching the WebSocket component
 *
 * daebus_rooms_register() registers the blueprint and puts the departures on
 * the WebSocket component's "client left" path, which also covers the clients
 * of a replica that died (docs/replicas.md). daebus_app_register_blueprint()
 * alone works as before for one process (departures from the disconnect
 * handler) but leaves a dead replica's clients in their rooms.
 *
 * The WebSocket protocol of the Daebus guide's complete chat example, message
 * for message (client -> server {"type", "data", "request_id"}; replies are
 * {"type": "response", "data": ...}):
 *   connect       -> {"status": "connected", "client_id": id}
 *   register      {"username"} -> {"status": "registered", "username",
 *                 "available_rooms": [names], "room_count": N}; the list holds
 *                 at most list_max names (sorted); when there are more,
 *                 "next_after" names the last one (pass it to list_rooms).
 *                 Refused: {"error": "Username is required" | "Username is
 *                 too long (max N bytes)" | "Username must not contain control
 *                 characters" | "Username is already taken", "status": "error"}
 *   list_rooms    {"after"?: name, "limit"?: n} -> {"status": "ok", "rooms":
 *                 [{"name", "members"}], "room_count": N, "next_after": name |
 *                 null}: the rooms sorted by name after "after", at most
 *                 min(limit, list_max) of them
 *   join_room     {"room", "since"?: {"offset", "epoch"}} creates the room if
 *                 needed; the other members get room_update {"user",
 *                 "action": "joined", "room", "members"}; reply {"status":
 *                 "joined", "room", "members", "history"} (the last
 *                 join_history messages, at most DAEBUS_ROOMS_JOIN_BYTES of
 *                 text), with the room channel's "offset" and "epoch" when it
 *                 keeps a history, and "recovered": true|false with "since":
 *                 the messages after since come as new_message frames before
 *                 the reply, then the live ones (see "Channels" below).
 *                 Refused past max_rooms
 *                 ("Too many rooms (max N)") or max_rooms_per_client ("Too
 *                 many rooms for this client (max N): leave one first"), and
 *                 for names as in register ("Room name ...")
 *   leave_room    {"room"} -> {"status": "left", "room"}; others get
 *                 room_update "left"
 *   chat_message  {"room", "message"}: membership checked; the other members
 *                 get new_message {"id", "room", "sender", "text",
 *                 "timestamp"} (the frame also has "channel": "room:<name>",
 *                 and "offset", "epoch" with history); reply {"status":
 *                 "sent", "message_id", "timestamp"} (+ "warning" when the
 *                 members could not be reached: Redis unreachable after the
 *                 message was stored); "Message is too long (max N bytes)"
 *   direct_message {"to", "message"}: "to" is a registered username (ASCII
 *                 case ignored) or a client id, connected to any replica; it
 *                 gets direct_message {"id", "from", "from_client_id", "to",
 *                 "text", "timestamp"}; reply {"status": "sent",
 *                 "message_id", "timestamp"}; refused: "Register a username
 *                 first", "User <to> not connected", "Recipient and message
 *                 are required", "Message is too long (max N bytes)"
 *   disconnect    the client leaves every room (room_update "left" to the
 *                 others) and its registration is dropped.
 * HTTP: GET /api/rooms[?after=name&limit=n] -> {"count", "total", "rooms":
 * [{"name", "members", "message_count", "created_at"}], "next_after"}: a page
 * of at most list_max rooms sorted by name.
 *
 * Bounds. A room exists while it has members: when the last one leaves (or
 * disconnects) the room is deleted with its history. Rooms in total, rooms
 * per client (memberships), name and message lengths, and history (messages
 * and bytes per room, bytes over all rooms: the oldest message anywhere goes
 * first) are bounded by daebus_rooms_options; no reply grows with the number
 * of rooms. Names (user and room) are whole UTF-8 characters without control
 * characters (C0, DEL, C1, an escaped NUL - which arrives as 0xC0 0x80 -,
 * line/paragraph separators, zero-width and bidi controls): anything else is
 * refused, never cut. Leading and trailing spaces, tabs and newlines are
 * trimmed. Usernames are unique among connected clients (compared ignoring
 * ASCII case), and a username may not be another connected client's id, so
 * the admin blueprint's notify_user reaches only the user it names.
 *
 * Channels. Each room is the WebSocket channel "room:<name>"
 * (docs/channels.md): join_room subscribes the member (its frames typed
 * "new_message"), leave_room and the connection's end unsubscribe it, and a
 * chat message is one publish on it to every member but the sender, on
 * every replica, in one order. With daebus_rooms_ws_options() the channels
 * keep a history in Redis (cluster mode): every new_message has an offset and
 * an epoch, a client that reconnects joins with "since" and gets what it
 * missed once, in order (the chat page does), and a replica whose Redis
 * subscriber was away delivers the messages it missed before the next one.
 * A registered member may also follow its room with the channel frames
 * ({"type": "subscribe", "channel": "room:<name>"}: the TypeScript client's
 * subscribeToChannel); its deliveries are then "channel_message" frames
 * (join_room again makes them new_message). daebus_rooms_authorize decides:
 * subscribing to room:<name> needs a registered member of that room;
 * broadcast frames on room:* are refused (messages go through chat_message).
 *
 * Errors are replies of the form {"error": "<text>", "status": "error"} as in
 * the guide. The username is also stored as the WebSocket client data
 * "username", which the admin blueprint reads (is_authenticated, notify_user).
 *
 * The blueprint registers the app's SOCKET_CONNECT and SOCKET_DISCONNECT
 * handlers (an app has one of each): a service that needs its own must call
 * daebus_rooms_client_gone() from its disconnect handler (and
 * daebus_rooms_origin_allowed() from its connect handler when it relies on
 * same_origin).
 *
 * Replicas. The state (rooms, members, history, usernames) lives in Redis
 * under "daebus:<service>:rooms:" (docs/replicas.md lists the keys), changed
 * by one Lua script per request through the bus (daebus_bus_redis), so every
 * replica of the service sees the same rooms and the bounds hold across
 * them; messages reach members on any replica through the WebSocket
 * component. The blueprint therefore needs the bus component: without one,
 * or while Redis is unreachable, every rooms request is answered {"error":
 * "Rooms unavailable ...", "status": "error"} (GET /api/rooms: 503) and
 * nothing else changes.
 * Thread: every function here is thread-safe.
 */
#ifndef DAEBUS_BP_ROOMS_H
#define DAEBUS_BP_ROOMS_H

#include <stdbool.h>
#include <stddef.h>
#include <daebus/daebus.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults of daebus_rooms_options (a zero field takes these). */
#define DAEBUS_ROOMS_MAX_ROOMS            1000
#define DAEBUS_ROOMS_MAX_ROOMS_PER_CLIENT 20
#define DAEBUS_ROOMS_MAX_NAME             64                    /* bytes of a room or user name */
#define DAEBUS_ROOMS_MAX_TEXT             4096                  /* bytes of one message */
#define DAEBUS_ROOMS_HISTORY              100                   /* messages kept per room */
#define DAEBUS_ROOMS_HISTORY_BYTES        (256u * 1024u)        /* kept per room */
#define DAEBUS_ROOMS_HISTORY_TOTAL_BYTES  (32u * 1024u * 1024u) /* kept over all rooms */
#define DAEBUS_ROOMS_JOIN_HISTORY         20                    /* messages sent back on join */
#define DAEBUS_ROOMS_LIST_MAX             100 /* rooms in one register/list_rooms/api reply */
/* Upper bounds of the options (larger values are refused by configure). */
#define DAEBUS_ROOMS_MAX_NAME_LIMIT 195 /* "room:<name>" is a channel name (<= 200 bytes) */
#define DAEBUS_ROOMS_MAX_TEXT_LIMIT (64u * 1024u)
#define DAEBUS_ROOMS_LIST_LIMIT     1000
/* Text bytes of history a join reply carries at most (newest messages first). */
#define DAEBUS_ROOMS_JOIN_BYTES (128u * 1024u)

/* Bounds of the rooms blueprint; zero = the default above. */
typedef struct daebus_rooms_options {
    size_t max_rooms;            /* rooms at once */
    size_t max_rooms_per_client; /* rooms one client is a member of at once */
    size_t max_name_bytes;       /* user and room names (<= DAEBUS_ROOMS_MAX_NAME_LIMIT) */
    size_t max_message_bytes;    /* one chat message (<= DAEBUS_ROOMS_MAX_TEXT_LIMIT) */
    size_t history_messages;     /* messages kept per room */
    size_t history_bytes;        /* bytes kept per room (text, sender, id, overhead) */
    size_t history_total_bytes;  /* bytes kept over all rooms */
    size_t join_history;         /* messages a join reply carries */
    size_t list_max;             /* rooms in one reply (<= DAEBUS_ROOMS_LIST_LIMIT) */
    bool same_origin;            /* refuse upgrades whose Origin is not the Host's (see
                                    daebus_rooms_origin_allowed); off by default */
} daebus_rooms_options;

#define DAEBUS_ROOMS_OPTIONS_INIT                                                                  \
    {                                                                                              \
        0                                                                                          \
    }

/* The blueprint: SOCKET register/list_rooms/join_room/leave_room/chat_message,
 * connect, disconnect, and GET /api/rooms. */
DAEBUS_BLUEPRINT_DECLARE(daebus_rooms_bp);

/* Registers daebus_rooms_bp into app and daebus_rooms_client_gone() as a
 * "client left" hook of app's WebSocket component (attach it first).
 * Returns: 0, DAEBUS_EORDER (no WebSocket component), or the code of
 * daebus_ws_on_client_departed() / daebus_app_register_blueprint().
 * Thread: before the app runs. */
int daebus_rooms_register(daebus_app *app);

/* Sets what the rooms need in WebSocket options (before daebus_ws_create):
 * channels on, a history for "room:*" (unless channel_history is set:
 * then add "room:*" to it yourself), and daebus_rooms_authorize as the hook
 * (unless authorize is set: then call it from yours for "room:*" channels).
 * Without it the rooms work, but new_message frames carry no offset and
 * "since" recovers nothing. Thread: before the app runs. */
void daebus_rooms_ws_options(daebus_ws_options *wo);

/* The authorisation hook of the rooms (daebus_ws_authorize_fn): a
 * "subscribe" to "room:<name>" is allowed to a registered member of that
 * room (one Redis round trip), "broadcast" on "room:*" is refused; anything
 * else follows the pattern rules (q->rules_allow). Thread: callable from any
 * thread. */
bool daebus_rooms_authorize(daebus_ws *ws, const daebus_ws_auth_request *q, char *reason,
                            size_t reason_len, void *user);

/* Sets the bounds (opts NULL = every default). Rooms and messages that exist
 * already are trimmed to the new history bounds at their next message.
 * Ownership: opts is copied.
 * Returns: 0, or DAEBUS_EINVAL (a field above its upper bound; logged, nothing
 * changed). Thread: any; normally before daebus_app_run(). */
int daebus_rooms_configure(const daebus_rooms_options *opts);

/* The page GET /api/rooms answers: {"count", "total", "rooms": [{"name",
 * "members", "message_count", "created_at"}], "next_after"}, at most limit
 * rooms (0 or over list_max: list_max) sorted by name after `after` (NULL or
 * "": from the start). The chat example's list_rooms action answers it too.
 * Ownership: *out is the caller's (cJSON_Delete) on every return but EINVAL.
 * Returns: 0; DAEBUS_ECONN with *out the failure {"error": "Rooms unavailable
 * ..."} (Redis unreachable, no bus); DAEBUS_EINVAL. Thread: any (app running). */
int daebus_rooms_list(daebus_app *app, const char *after, size_t limit, cJSON **out);

/* Fills *out with the bounds in force (defaults resolved). Thread: any. */
void daebus_rooms_get_options(daebus_rooms_options *out);

/* The same_origin check: true when req (a connect handler's request) has no
 * Origin header (not a browser), or its Origin is http(s)://host[:port] with
 * host and port (default 80/443 by the Origin's scheme) equal to those of the
 * Host header; false otherwise ("null", another host or port, a path, no
 * Host). The blueprint's connect handler refuses with HTTP 403 {"error":
 * "Origin not allowed"} when same_origin is set and this is false.
 * Thread: the connect handler's. */
bool daebus_rooms_origin_allowed(daebus_ws_request *req);

/* Figures of the whole service (every replica), read from Redis; zero
 * while Redis is unreachable, except refused (this process's). */
typedef struct daebus_rooms_stats {
    size_t users;                      /* registered clients */
    size_t rooms;                      /* rooms that exist */
    size_t members;                    /* memberships over all rooms */
    size_t messages;                   /* messages kept over all rooms */
    size_t history_bytes;              /* bytes those messages count for */
    unsigned long long messages_total; /* chat messages accepted since start */
    unsigned long long refused;        /* requests refused by a bound or a bad name */
} daebus_rooms_stats;

/* Fills *out. Thread: any. */
void daebus_rooms_get_stats(daebus_rooms_stats *out);

/* Removes client_id from every room (notifying the others with room_update
 * "left" through ws; rooms left empty are deleted) and forgets its
 * registration. The blueprint's own disconnect handler calls it. Thread: any. */
void daebus_rooms_client_gone(daebus_ws *ws, const char *client_id);

/* Forgets the app the rooms ran in (end of main); the options stay. The
 * shared state in Redis stays too: other replicas use it (a replica's own
 * clients left it when the app stopped). Thread: any. */
void daebus_rooms_reset(void);

#ifdef __cplusplus
}
#endif
#endif
