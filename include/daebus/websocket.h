/* daebus/websocket.h - WebSocket server on the HTTP port: typed messages, client registry,
 * broadcast, rate limits, graceful shutdown.
 *
 *   daebus_http_attach(daebus_http_create(NULL, NULL), app);      // HTTP first
 *   daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
 *   wo.max_clients = 5000;
 *   daebus_ws_attach(daebus_ws_create(&wo, NULL), app);
 *
 *   SOCKET(handle_chat, "chat_message")
 *   {
 *       const cJSON *data = daebus_ws_request_data(req);
 *       if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(data, "message")))
 *           return daebus_ws_request_fail(req, "message must be a string");
 *       daebus_ws_broadcast_to_all(daebus_ws_request_ws(req), data, "chat_update");
 *       cJSON *ack = cJSON_CreateObject();
 *       cJSON_AddStringToObject(ack, "status", "delivered");
 *       return ack; // taken: sent as {"type":"response","data":{...},"success":true}
 *   }
 *
 * Wire format: docs/protocol.md section 3. A client sends
 * {"type": T, "data": D, "request_id": R} in a text frame (or a binary frame
 * holding UTF-8 JSON); the SOCKET(T) handler gets D (or {}) and what it
 * returns is sent back as
 * {"type":"response","data":...,"request_id":R,"success":true}. Every error
 * frame has "success": false and a top-level "error" string, and echoes R
 * when it answers a message whose request_id could be read.
 *
 * Paths. Upgrades are served on the configured paths only (exact match,
 * query ignored); an upgrade request on another path gets HTTP 404.
 *
 * Threads. The server runs inside the HTTP component's CivetWeb server (same
 * port). CivetWeb holds one worker thread per open WebSocket connection, so
 * attach reserves max_clients threads on top of the HTTP workers. Message,
 * connect, register and disconnect handlers run on the client's own CivetWeb
 * thread: the messages of one client are handled one at a time, in order;
 * different clients run in parallel. Every outgoing frame goes through a
 * bounded per-client queue drained by writer threads, so:
 *   - every send function below may be called from any thread (route and
 *     action handlers, background tasks, other socket handlers);
 *   - frames to one connection never interleave and keep their order;
 *   - a broadcast serialises its frame once and shares it between the queues;
 *     no lock is held while writing to sockets;
 *   - a client that stops reading fills only its own queue; when the queue is
 *     over its limit the client is dropped: its socket is shut down without a
 *     close frame (a client that does not read would not read one either), so
 *     the peer sees an abnormal closure (1006).
 * A maintenance thread pings clients (ping_interval) and drops those silent
 * for idle_timeout. Pongs to a client's pings are queued like other frames;
 * pings and pongs a client sends are limited (max_pings_per_second).
 *
 * Ownership. JSON passed in is borrowed (copied or serialised before return).
 * JSON returned by a handler is taken by the framework. Functions returning
 * cJSON * give the caller a copy to free with cJSON_Delete().
 *
 * Every function is thread-safe unless its block says otherwise.
 * Thread: callable from any thread.
 */
#ifndef DAEBUS_WEBSOCKET_H
#define DAEBUS_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "daebus/app.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- connection information for id generators ---- */

/* What is known about a connection before its upgrade completes. Borrowed:
 * valid only during the call that receives it. */
typedef struct daebus_ws_conn_info daebus_ws_conn_info;

/* Returns: the remote IP address as text ("127.0.0.1", "::1"). */
DAEBUS_API const char *daebus_ws_conn_remote_address(const daebus_ws_conn_info *info);
/* Returns: the remote TCP port. */
DAEBUS_API int daebus_ws_conn_remote_port(const daebus_ws_conn_info *info);
/* Returns: the request path without the query ("/ws"). */
DAEBUS_API const char *daebus_ws_conn_path(const daebus_ws_conn_info *info);
/* Returns: the query string without '?', or NULL. */
DAEBUS_API const char *daebus_ws_conn_query(const daebus_ws_conn_info *info);
/* Returns: the value of request header name (case-insensitive), or NULL. */
DAEBUS_API const char *daebus_ws_conn_header(const daebus_ws_conn_info *info, const char *name);

/* Custom client id generator. Runs on the connecting client's CivetWeb thread.
 * Ownership: returns a malloc'd NUL-terminated string the framework takes and
 * frees. Returning NULL or "" falls back to the default id ("user_<uuid4>").
 * An id already in use rejects the connection (HTTP 409). */
typedef char *daebus_ws_id_fn(const daebus_ws_conn_info *info, void *user);

/* Client filter for daebus_ws_get_clients_by_filter() and
 * daebus_ws_broadcast_to_filter(). metadata is borrowed
 * (a snapshot, as daebus_ws_get_client_metadata() returns). Called without any
 * framework lock held, on the calling thread. Returns: true to select. */
typedef bool daebus_ws_filter_fn(const char *client_id, const cJSON *metadata, void *user);

/* ---- authorisation (channels, the action gateway) ---- */

/* What a client asks for. */
typedef enum daebus_ws_auth_op {
    DAEBUS_WS_AUTH_SUBSCRIBE = 1, /* a "subscribe" frame: name is the channel */
    DAEBUS_WS_AUTH_PUBLISH = 2,   /* a "broadcast" frame: name is the channel */
    DAEBUS_WS_AUTH_CALL = 3       /* the action gateway: name is the service, action the action */
} daebus_ws_auth_op;

/* One question to the authorisation hook. Borrowed: valid during the call. */
typedef struct daebus_ws_auth_request {
    daebus_ws_auth_op op;
    const char *client_id;
    const cJSON *metadata; /* the client's metadata, its user data included (as
                              daebus_ws_get_client_metadata() gives it); NULL when the
                              client is gone */
    const char *name;      /* the channel (SUBSCRIBE, PUBLISH) or the service (CALL) */
    const char *action;    /* CALL: the action; NULL for channels */
    bool rules_allow;      /* what the pattern rules say (channel_subscribe /
                              channel_publish); for CALL: true (the gateway checked its
                              own allow-list before asking) */
} daebus_ws_auth_request;

/* The authorisation hook: returns true to allow. It decides alone: return
 * q->rules_allow to follow the pattern rules, or override them. To refuse,
 * return false and write a reason (NUL-terminated, at most reason_len bytes)
 * into reason; the client's error frame carries it (none, or not UTF-8: the
 * default text, "Not allowed to subscribe to channel '<name>'" and the like).
 * Runs on the client's own CivetWeb thread (frames) or the gateway's calling
 * thread, with no framework lock held: it may call this API, but must not
 * block for long (that client's messages wait).
 * Ownership: q and everything in it are borrowed for the call. */
typedef bool daebus_ws_authorize_fn(daebus_ws *ws, const daebus_ws_auth_request *q, char *reason,
                                    size_t reason_len, void *user);

/* ---- options ---- */

/* Cluster mode: the clients of every replica of the service (same service
 * name, same Redis) form one set. send_to_client, the broadcasts,
 * disconnect_client, set/get_client_data and is_client_connected then reach a
 * client on whichever replica holds it, and the daebus_ws_cluster_* views
 * below see every replica's clients. The component opens Redis connections
 * of its own (daebus_app_redis_url). AUTO: on when the app has a bus attached
 * (it announces the instance, daebus_app_instances()); OFF: one process even
 * with a bus; ON: as AUTO (a bus is still needed for the live-instance view;
 * without one, start fails with DAEBUS_ESTATE). */
typedef enum daebus_ws_cluster_mode {
    DAEBUS_WS_CLUSTER_AUTO = 0,
    DAEBUS_WS_CLUSTER_OFF,
    DAEBUS_WS_CLUSTER_ON
} daebus_ws_cluster_mode;

typedef struct daebus_ws_options {
    const char *paths;       /* comma-separated upgrade paths, matched exactly; upgrades
                                elsewhere get HTTP 404; NULL = "/,/ws" */
    int max_clients;         /* open connections at most; 0 = 1024. Past it an upgrade is
                                accepted and closed at once with 1013 "Server full" (browsers
                                see the code); past DAEBUS_WS_FULL_CLOSERS such closes in
                                progress at once, upgrades get HTTP 503 */
    size_t max_message_size; /* bytes of one (reassembled) message; larger: close 1009; 0 = 1 MiB */
    size_t queue_max_bytes;  /* per-client outbound queue limit; 0 = 1 MiB. A single frame
                                larger than this is refused to the sender (DAEBUS_ETOOBIG);
                                no client is dropped for it */
    int queue_max_messages;  /* per-client outbound queue limit; 0 = 1000 */
    double ping_interval;    /* seconds between server pings; 0 = 25; < 0 = no pings */
    double idle_timeout;     /* drop a client no frame (data, ping, pong) was read from for
                                this long; 0 = 60; < 0 = never */
    double close_timeout;    /* wait for the peer's close reply before dropping the socket; 0 = 2 */
    double shutdown_timeout; /* graceful shutdown run by the app's stop; 0 = 1; < 0 = none */
    int writer_threads;      /* threads draining the outbound queues; 0 = 4 */
    size_t send_buffer;      /* SO_SNDBUF of each WebSocket socket: bounds the kernel memory a
                                stalled client holds; 0 = 256 KiB; SIZE_MAX = kernel autotuning */
    int rate_limit_max;      /* > 0: enable rate limiting at start (messages per window) */
    double rate_limit_window;        /* seconds; 0 = 60 */
    int rate_limit_disconnect_after; /* > 0: close 1008 after this many consecutive rejections */
    daebus_ws_id_fn *id_generator;   /* NULL = "user_<uuid4>" */
    void *id_generator_user;
    /* Comma-separated Origin values a handshake may carry ("https://app.example.com");
     * "*" or NULL = any. A handshake with another Origin gets HTTP 403
     * {"error":"Origin not allowed"}; one without an Origin header (not a browser) is
     * let through: the check protects browsers' users from other sites' pages. */
    const char *allowed_origins;
    int max_json_depth; /* arrays/objects nested deeper: {"type":"error","error":"JSON nested
                           too deeply (max N levels)"}; 0 = 100; at most 512 (cJSON recurses on
                           CivetWeb's small worker stacks) */
    double max_pings_per_second;    /* control frames (pings and pongs) one client may send: a
                                    token bucket of this rate with bursts of as many; over it
                                    the client is closed with 1008 "Too many pings" (its
                                    socket is shut if it keeps on while closing); 0 = 10;
                                    < 0 = no limit. Pongs are queued like any frame */
    daebus_ws_cluster_mode cluster; /* across replicas (docs/replicas.md, "WebSocket across
                                       replicas"): AUTO (0) = on when a bus is attached */
    /* Channels (docs/channels.md; see "channels" below). */
    bool channels; /* handle the built-in client frames "subscribe", "unsubscribe" and
                      "broadcast" (before any SOCKET handler of those names, which is then
                      never reached); false: the server API works, the frames do not */
    const char *channel_subscribe;     /* comma-separated glob patterns ("news:*,room:?") of the
                                      channels clients may subscribe to; NULL = none */
    const char *channel_publish;       /* likewise for "broadcast" frames; NULL = none */
    const char *channel_history;       /* comma-separated glob patterns of the channels that keep
                                      a history in Redis (cluster mode only; docs/channels.md
                                      "Recovery"); NULL = none */
    unsigned channel_history_count;    /* messages kept per history channel, about; 0 = 1000 */
    double channel_history_age;        /* seconds a history message is kept; 0 = no bound */
    const char *channel_presence;      /* glob patterns of the channels with presence (join /
                                          leave events, the "presence" frame,
                                          daebus_ws_channel_presence); NULL = none */
    daebus_ws_authorize_fn *authorize; /* the authorisation hook; NULL = the patterns decide */
    void *authorize_user;
} daebus_ws_options;

/* Upgrades past max_clients that may be in their 1013 close at once. */
#define DAEBUS_WS_FULL_CLOSERS 8

#define DAEBUS_WS_OPTIONS_INIT                                                                     \
    {                                                                                              \
        0                                                                                          \
    }

/* Counters for metrics (monotonic unless noted). */
/* The counters (X, F: see DAEBUS_STATS_FIELD in app.h).
 * rejected_upgrades: refused by the connect handler or Origin (403), capacity
 *   (1013 close, or 503), shutdown (503), id collision (409), not a WebSocket
 *   path (404);
 * disconnects: all reasons, the five below included: client (the client
 *   closed or the socket failed), server (disconnect_client(),
 *   disconnect_all, shutdown), idle (heartbeat time-out), slow (outbound
 *   queue over its limit, "slow consumer"), protocol (1007, 1009, rate-limit
 *   and ping-limit disconnects);
 * messages_in: data messages received; messages_out: data frames written;
 * cluster_published: messages this replica published for other replicas
 *   (one per broadcast, one per replica holding recipients); cluster_received:
 *   such messages it received; cluster_errors: cross-replica operations that
 *   returned DAEBUS_ECONN (Redis unreachable); cluster_reaped: clients of dead
 *   replicas this replica removed from the directory (departed ran for each). */
#define DAEBUS_WS_STATS(X, F)                                                                      \
    X(uint64_t, clients, "daebus_ws_clients", "", "gauge", "WebSocket clients connected.")         \
    X(uint64_t, clients_high_water, "daebus_ws_clients_high_water", "", "gauge",                   \
      "Most WebSocket clients at once.")                                                           \
    X(uint64_t, connects, "daebus_ws_connects_total", "", "counter",                               \
      "WebSocket upgrades accepted.")                                                              \
    X(uint64_t, rejected_upgrades, "daebus_ws_rejected_upgrades_total", "", "counter",             \
      "WebSocket upgrades refused.")                                                               \
    F(uint64_t, disconnects)                                                                       \
    X(uint64_t, disconnects_client, "daebus_ws_disconnects_total", "cause=\"client\"", "counter",  \
      "WebSocket disconnects by cause.")                                                           \
    X(uint64_t, disconnects_server, "daebus_ws_disconnects_total", "cause=\"server\"", "counter",  \
      "WebSocket disconnects by cause.")                                                           \
    X(uint64_t, disconnects_idle, "daebus_ws_disconnects_total", "cause=\"idle\"", "counter",      \
      "WebSocket disconnects by cause.")                                                           \
    X(uint64_t, disconnects_slow, "daebus_ws_disconnects_total", "cause=\"slow\"", "counter",      \
      "WebSocket disconnects by cause.")                                                           \
    X(uint64_t, disconnects_protocol, "daebus_ws_disconnects_total", "cause=\"protocol\"",         \
      "counter", "WebSocket disconnects by cause.")                                                \
    X(uint64_t, messages_in, "daebus_ws_messages_received_total", "", "counter",                   \
      "WebSocket messages received.")                                                              \
    X(uint64_t, messages_out, "daebus_ws_messages_sent_total", "", "counter",                      \
      "WebSocket frames sent.")                                                                    \
    X(uint64_t, bytes_in, "daebus_ws_received_bytes_total", "", "counter",                         \
      "WebSocket bytes received.")                                                                 \
    X(uint64_t, bytes_out, "daebus_ws_sent_bytes_total", "", "counter", "WebSocket bytes sent.")   \
    X(uint64_t, handler_errors, "daebus_ws_handler_errors_total", "", "counter",                   \
      "Socket handlers that failed.")                                                              \
    X(uint64_t, rate_limited, "daebus_ws_rate_limited_total", "", "counter",                       \
      "Messages refused by the rate limiter.")                                                     \
    X(uint64_t, queue_depth_high_water, "daebus_ws_queue_depth_high_water", "", "gauge",           \
      "Most frames queued for one client.")                                                        \
    X(uint64_t, cluster_published, "daebus_ws_cluster_published_total", "", "counter",             \
      "WebSocket messages published to other replicas.")                                           \
    X(uint64_t, cluster_received, "daebus_ws_cluster_received_total", "", "counter",               \
      "WebSocket messages received from other replicas.")                                          \
    X(uint64_t, cluster_errors, "daebus_ws_cluster_errors_total", "", "counter",                   \
      "Cross-replica WebSocket operations that failed (Redis unreachable).")                       \
    X(uint64_t, cluster_reaped, "daebus_ws_cluster_reaped_total", "", "counter",                   \
      "Clients of dead replicas removed by this replica.")

typedef struct daebus_ws_stats {
    DAEBUS_WS_STATS(DAEBUS_STATS_FIELD, DAEBUS_STATS_PLAIN_FIELD)
} daebus_ws_stats;

/* ---- life cycle ---- */

/* Creates a WebSocket component (not yet attached). opts may be NULL.
 * Ownership: option strings are copied.
 * Returns: NULL on bad options or allocation failure (err filled).
 * Thread: before the app runs. */
DAEBUS_API daebus_ws *daebus_ws_create(const daebus_ws_options *opts, daebus_error *err);

/* Attaches ws to app. The HTTP component must be attached first (the server
 * shares its port): otherwise DAEBUS_EORDER. Reserves max_clients CivetWeb
 * threads in the HTTP component (Debian's CivetWeb 1.15 gives each worker a
 * fixed 100 KiB stack: keep large buffers off the stack in socket handlers).
 * Ownership: attach takes ws on every path: on failure (app NULL included) it
 * is destroyed, so the caller never frees it. Passing ws NULL (a failed create)
 * returns DAEBUS_EINVAL, so "attach(create(...), app)" needs no check.
 * Returns: 0, DAEBUS_EORDER, DAEBUS_EEXIST, DAEBUS_ESTATE, DAEBUS_EINVAL.
 * Thread: before the app runs. */
DAEBUS_API int daebus_ws_attach(daebus_ws *ws, daebus_app *app);

/* Frees a component that was never attached. Accepts NULL. */
DAEBUS_API void daebus_ws_destroy(daebus_ws *ws);

/* Sets the client id generator (replaces options.id_generator).
 * Returns: 0 or DAEBUS_EINVAL. Thread: before the app runs. */
DAEBUS_API int daebus_ws_set_client_id_generator(daebus_ws *ws, daebus_ws_id_fn *fn, void *user);

/* Enables rate limiting: a message is handled if fewer than max_messages
 * messages were handled for that client in the last window_seconds;
 * otherwise it gets {"type":"error","error":"Rate limit exceeded",
 * "retry_after":<window>[,"request_id":R],"success":false} and does not count. max_messages <= 0 = 60,
 * window_seconds <= 0 = 60. Returns: 0 or DAEBUS_EINVAL.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_enable_rate_limiting(daebus_ws *ws, int max_messages,
                                              double window_seconds);
/* Disables it. Thread: callable from any thread. */
DAEBUS_API void daebus_ws_disable_rate_limiting(daebus_ws *ws);

/* ---- handler context (valid until the handler returns) ----
 *
 * Every function of this section takes the request a socket handler got and
 * is valid until that handler returns.
 * Thread: only inside its handler.
 */

/* Returns: the message type ("connect" / "disconnect" for those handlers). */
DAEBUS_API const char *daebus_ws_request_type(const daebus_ws_request *req);
/* Returns: the message's data ({} when absent; an empty object in connect and
 * disconnect handlers). Ownership: borrowed until the handler returns. */
DAEBUS_API const cJSON *daebus_ws_request_data(const daebus_ws_request *req);
/* Returns: the whole client message (NULL in connect/disconnect handlers).
 * Ownership: borrowed until the handler returns. */
DAEBUS_API const cJSON *daebus_ws_request_message(const daebus_ws_request *req);
/* Returns: the message's request_id (string or number) or NULL. Borrowed. */
DAEBUS_API const cJSON *daebus_ws_request_request_id(const daebus_ws_request *req);
/* Returns: the client id. Borrowed until the handler returns. */
DAEBUS_API const char *daebus_ws_request_client_id(const daebus_ws_request *req);
DAEBUS_API daebus_ws *daebus_ws_request_ws(const daebus_ws_request *req);
DAEBUS_API daebus_app *daebus_ws_request_app(const daebus_ws_request *req);
/* Returns: a copy of the client's metadata (as daebus_ws_get_client_metadata).
 * Ownership: the caller frees it. */
DAEBUS_API cJSON *daebus_ws_request_metadata(const daebus_ws_request *req);
/* Returns: a request header of the upgrade request (connect handler only;
 * NULL elsewhere or when absent). Borrowed. */
DAEBUS_API const char *daebus_ws_request_header(const daebus_ws_request *req, const char *name);
/* Returns: the upgrade request's query string without '?' (connect handler
 * only), or NULL. Borrowed. */
DAEBUS_API const char *daebus_ws_request_query(const daebus_ws_request *req);
/* Returns: the path the client connected to. Borrowed. */
DAEBUS_API const char *daebus_ws_request_path(const daebus_ws_request *req);

/* Marks the handler as failed: the client gets
 * {"type":"error","data":{"error":"<message>"}[,"request_id":R],
 * "success":false,"error":"<message>"} instead of a response, and the
 * handler's return value is discarded.
 * Returns: NULL, so that a handler can `return daebus_ws_request_fail(...)`. */
DAEBUS_API cJSON *daebus_ws_request_fail(daebus_ws_request *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* In a SOCKET_CONNECT handler: refuses the connection before the upgrade
 * completes (HTTP 403 with {"error": reason}); no other handler runs for the
 * client, not even SOCKET_DISCONNECT. Returning a JSON false from the connect
 * handler does the same (the Python guide's "return False to reject").
 * Elsewhere: closes the connection with 1008 and reason after the handler.
 * reason NULL = "Connection rejected". Returns: NULL. */
DAEBUS_API cJSON *daebus_ws_request_reject(daebus_ws_request *req, const char *reason);

/* Queues data for the request's client, as daebus_ws_send_to_client().
 * Frames queued by a handler go out before its returned response. A response
 * a handler returns that is larger than queue_max_bytes is replaced by the
 * error {"type":"error","error":"Response too large",...}. */
DAEBUS_API int daebus_ws_request_send(daebus_ws_request *req, const cJSON *data, const char *type);

/* ---- client registry ---- */

/* Stores a copy of value under key in the client's user data; it appears in
 * the client's metadata. Keys of the built-in metadata (connected_at,
 * last_activity, path, remote_address, secure, messages_received,
 * messages_sent, uptime_seconds, idle_seconds, client_id) are refused.
 * Works in the connect handler already. Ownership: key and value are copied.
 * Returns: 0, DAEBUS_ENOENT (unknown client), DAEBUS_EINVAL, DAEBUS_ENOMEM. */
DAEBUS_API int daebus_ws_set_client_data(daebus_ws *ws, const char *client_id, const char *key,
                                         const cJSON *value);
/* Returns: a copy of the value stored under key, or NULL (unknown client or
 * key). Ownership: the caller frees it. */
DAEBUS_API cJSON *daebus_ws_get_client_data(daebus_ws *ws, const char *client_id, const char *key);
/* Returns: a copy of the client's metadata: {"client_id", "connected_at",
 * "last_activity" (epoch seconds, fractional), "path", "remote_address"
 * ([host, port]), "secure", "messages_received", "messages_sent",
 * "uptime_seconds", "idle_seconds", ...user data}; NULL for an unknown client.
 * Readable inside the client's SOCKET_DISCONNECT handler.
 * Ownership: the caller frees it. */
DAEBUS_API cJSON *daebus_ws_get_client_metadata(daebus_ws *ws, const char *client_id);
/* Returns: a JSON array of the connected client ids, oldest first; NULL only
 * on allocation failure. Ownership: the caller frees it. */
DAEBUS_API cJSON *daebus_ws_get_clients(daebus_ws *ws);
/* Returns: the number of connected clients. */
DAEBUS_API size_t daebus_ws_get_client_count(daebus_ws *ws);
/* Returns: true if client_id is connected (upgrade done, not yet gone). */
DAEBUS_API bool daebus_ws_is_client_connected(daebus_ws *ws, const char *client_id);
/* Returns: a JSON array of the ids whose (id, metadata) fn accepts; NULL only
 * on allocation failure or NULL fn. Ownership: the caller frees it. */
DAEBUS_API cJSON *daebus_ws_get_clients_by_filter(daebus_ws *ws, daebus_ws_filter_fn *fn,
                                                  void *user);

/* ---- sending ---- */

/* Queues {"type": type, "data": data} for one client. type NULL = "message".
 * Ownership: data is borrowed (serialised before return).
 * Returns: 0 when queued; DAEBUS_ENOENT (unknown or closing client),
 * DAEBUS_EFULL (its queue was full: the client is being disconnected as a slow
 * consumer), DAEBUS_ETOOBIG (the frame alone is larger than queue_max_bytes:
 * not sent, logged, the client stays connected), DAEBUS_EINVAL, DAEBUS_ENOMEM. */
DAEBUS_API int daebus_ws_send_to_client(daebus_ws *ws, const char *client_id, const cJSON *data,
                                        const char *type);
/* Queues frame, a JSON object with a string "type", as it is (every key at
 * the top level) for a client connected to THIS replica: the answer to a
 * message it sent here, e.g. {"type":"response","request_id":R,
 * "success":true,"data":D} (the TypeScript client's correlated answers).
 * Never looked up on other replicas, even in cluster mode.
 * Ownership: frame is borrowed (serialised before return).
 * Returns: 0 when queued; DAEBUS_ENOENT (not a client of this replica, or
 * closing), DAEBUS_EINVAL (frame not an object with a string "type"),
 * DAEBUS_EFULL, DAEBUS_ETOOBIG, DAEBUS_ENOMEM (as daebus_ws_send_to_client).
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_send_frame(daebus_ws *ws, const char *client_id, const cJSON *frame);
/* Queues {"type": type, "data": data} for every connected client (the sender
 * included), serialised once. type NULL = "broadcast".
 * Returns: the number of clients it was queued for (>= 0), or DAEBUS_EINVAL /
 * DAEBUS_ENOMEM / DAEBUS_ETOOBIG (the frame is larger than queue_max_bytes:
 * sent to nobody, logged, every client stays connected). */
DAEBUS_API int daebus_ws_broadcast_to_all(daebus_ws *ws, const cJSON *data, const char *type);
/* Queues {"type": type, "data": data} for each of the n ids, serialised once.
 * type NULL = "message". results (may be NULL) gets one bool per id: queued.
 * Returns: the number of clients it was queued for, or DAEBUS_EINVAL /
 * DAEBUS_ENOMEM / DAEBUS_ETOOBIG (as daebus_ws_broadcast_to_all). */
DAEBUS_API int daebus_ws_broadcast_to_clients(daebus_ws *ws, const char *const *client_ids,
                                              size_t n, const cJSON *data, const char *type,
                                              bool *results);

/* Queues {"type": type, "data": data} for every connected client whose
 * (id, metadata) fn accepts, serialised once: daebus_ws_get_clients_by_filter()
 * and daebus_ws_broadcast_to_clients() in one call. type NULL = "broadcast".
 * fn runs on the calling thread, once per connected client, with no framework
 * lock held (it may call this API).
 * Ownership: data is borrowed (serialised before return); metadata passed to fn
 * is borrowed for the call.
 * Returns: the number of clients it was queued for (>= 0), or DAEBUS_EINVAL
 * (ws or fn NULL) / DAEBUS_ENOMEM / DAEBUS_ETOOBIG (as daebus_ws_broadcast_to_all).
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_broadcast_to_filter(daebus_ws *ws, daebus_ws_filter_fn *fn, void *user,
                                             const cJSON *data, const char *type);

/* ---- disconnecting ---- */

/* Closes one client: frames already queued go out first, then a close frame
 * with code (0 = 1000) and reason (NULL = "Server closed connection"). A peer
 * that does not answer within close_timeout is dropped. Its SOCKET_DISCONNECT
 * handler runs once the connection is gone.
 * Returns: 0, DAEBUS_ENOENT (unknown or already closing), DAEBUS_EINVAL (code
 * outside 1000..4999 or reason over 123 bytes). */
DAEBUS_API int daebus_ws_disconnect_client(daebus_ws *ws, const char *client_id, int code,
                                           const char *reason);
/* Closes every client (code 0 = 1000, reason NULL = "Server shutting down").
 * Returns: the number of clients a close was started for. */
DAEBUS_API int daebus_ws_disconnect_all_clients(daebus_ws *ws, int code, const char *reason);

/* Graceful shutdown: refuses new upgrades (503) from now on, sends
 * {"type":"server_shutdown","data":message} to every client (message NULL =
 * {"message":"Server is shutting down","reconnect":true}), waits until every
 * client left or timeout seconds passed, closes the rest with 1001 "Server
 * shutting down", and returns once every connection is gone and its
 * SOCKET_DISCONNECT handler ran (at most close_timeout later). The app's stop
 * (SIGTERM) runs it with options.shutdown_timeout. Not reversible.
 * Ownership: message is borrowed.
 * Returns: 0, DAEBUS_ETIMEDOUT (some connection outlived the wait),
 * DAEBUS_ESTATE (not running). Not from a socket handler: it waits for every
 * connection, the handler's own included, to end.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_graceful_shutdown(daebus_ws *ws, double timeout, const cJSON *message);

/* ---- across replicas (cluster mode; docs/replicas.md) ----
 *
 * What the calls above mean in cluster mode:
 *   - send_to_client, broadcast_to_clients, disconnect_client: a client of
 *     another replica is reached through Redis (one PUBLISH per replica that
 *     holds recipients; the frame is serialised once here and queued as is
 *     there). A remote recipient counts as queued once its replica was
 *     reached; whether that replica's queue took it is not reported back.
 *   - broadcast_to_all: the local clients, plus one PUBLISH for the other
 *     replicas, queued (sent by the component's publisher thread in call
 *     order; the call does not wait for Redis). Returns the number of local
 *     clients it was queued for; DAEBUS_ECONN when Redis is known to be
 *     away at the call. A queued PUBLISH that fails later is counted in
 *     cluster_errors and logged. The calls above that reach other replicas
 *     first wait for the broadcasts queued before them (order kept).
 *   - broadcast_to_filter: fn runs here over the whole cluster's metadata.
 *   - set_client_data / get_client_data / is_client_connected: any client of
 *     the cluster.
 *   - With Redis unreachable, the local part is done and the call returns
 *     DAEBUS_ECONN (counted in cluster_errors); set_client_data on a local
 *     client still succeeds (written to Redis when it returns).
 * The local views (get_clients, get_client_count, get_client_metadata,
 * get_clients_by_filter) and disconnect_all_clients / graceful_shutdown stay
 * local: they are the way to reach this instance only (the admin blueprint's
 * shutdown of one replica). Outside cluster mode every function below
 * returns the local view.
 */

/* Stores the number of clients connected to every live replica in *out.
 * Returns: 0, DAEBUS_EINVAL, DAEBUS_ECONN (Redis unreachable; *out is then
 * the local count).
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_cluster_client_count(daebus_ws *ws, size_t *out);

/* Stores a JSON array of the client ids of every live replica in *ids_out
 * (no order promised).
 * Ownership: the caller frees *ids_out with cJSON_Delete (NULL on error).
 * Returns: 0, DAEBUS_EINVAL, DAEBUS_ENOMEM, DAEBUS_ECONN.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_cluster_clients(daebus_ws *ws, cJSON **ids_out);

/* Stores a client's metadata, wherever it is connected, in *out: the object
 * daebus_ws_get_client_metadata() gives (user data included) plus
 * "instance_id". "last_activity" of a client of another replica is refreshed
 * at least once per heartbeat; its "messages_received" / "messages_sent"
 * likewise.
 * Ownership: the caller frees *out with cJSON_Delete (NULL on error).
 * Returns: 0, DAEBUS_ENOENT (no such client), DAEBUS_EINVAL, DAEBUS_ENOMEM,
 * DAEBUS_ECONN.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_cluster_client_metadata(daebus_ws *ws, const char *client_id, cJSON **out);

/* Stores a JSON array of the ids of every client of the cluster whose
 * (id, metadata) fn accepts in *ids_out; metadata as
 * daebus_ws_cluster_client_metadata() gives it. fn runs on the calling thread
 * with no framework lock held.
 * Ownership: metadata is borrowed for the call; the caller frees *ids_out.
 * Returns: 0, DAEBUS_EINVAL, DAEBUS_ENOMEM, DAEBUS_ECONN.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_cluster_clients_by_filter(daebus_ws *ws, daebus_ws_filter_fn *fn,
                                                   void *user, cJSON **ids_out);

/* The cluster's "client left" path. metadata: the client's last metadata
 * (with "instance_id"); replica_died: the replica that held the client died
 * and this one removed it. Ownership: client_id and metadata are borrowed for
 * the call. */
typedef void daebus_ws_departed_fn(daebus_ws *ws, const char *client_id, const cJSON *metadata,
                                   bool replica_died, void *user);

/* Registers fn (several may be; each is called, in registration order).
 * Called once per client in the whole cluster: on the replica that held the
 * client, on its CivetWeb thread, after its SOCKET_DISCONNECT handler
 * (replica_died false); or, when that replica died, on exactly one surviving
 * replica, on its cluster thread, within 3 heartbeats (replica_died true).
 * Also called outside cluster mode (after SOCKET_DISCONNECT).
 * Returns: 0, DAEBUS_EINVAL, DAEBUS_ENOMEM, DAEBUS_ESTATE (running).
 * Thread: before the app runs. */
DAEBUS_API int daebus_ws_on_client_departed(daebus_ws *ws, daebus_ws_departed_fn *fn, void *user);

/* Returns: true when the component runs in cluster mode.
 * Thread: callable from any thread. */
DAEBUS_API bool daebus_ws_is_cluster(const daebus_ws *ws);

/* ---- channels (docs/channels.md) ----
 *
 * A channel is a name clients subscribe to; a message published on it goes
 * to every subscriber as {"type":"channel_message","channel":C,"data":D}.
 * Names: 1..DAEBUS_WS_CHANNEL_MAX bytes of UTF-8 without control characters.
 * In cluster mode subscribers of every replica get every message once, in
 * the one order Redis gave the publishes of that channel.
 */

#define DAEBUS_WS_CHANNEL_MAX 200

/* Asks the authorisation of op on name for a client of this replica: the
 * pattern rules (SUBSCRIBE, PUBLISH), then the hook (options.authorize),
 * which has the last word. Closed by default: no rule and no hook refuse
 * SUBSCRIBE and PUBLISH; CALL (the action gateway, which checks its own
 * allow-list first) is allowed unless a hook refuses it. action: the action of
 * a CALL, NULL otherwise. reason (may be NULL) gets the refusal's text.
 * Returns: 0 (allowed), DAEBUS_EAUTH (refused), DAEBUS_EINVAL (bad
 * argument or channel name: reason says why).
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_authorize(daebus_ws *ws, const char *client_id, int op, const char *name,
                                   const char *action, char *reason, size_t reason_len);

/* Checks a channel name. Returns: 0, or DAEBUS_EINVAL with the reason in err
 * (may be NULL): empty, longer than DAEBUS_WS_CHANNEL_MAX bytes, not UTF-8,
 * a control character.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_channel_check_name(const char *channel, daebus_error *err);

/* Subscribes a client to channel (also from its SOCKET_CONNECT handler).
 * Subscribing again keeps the one subscription (its frames' type becomes
 * "channel_message" again: daebus_ws_channel_subscribe_ex). The subscription
 * ends with the connection.
 * No authorisation is asked: the server decides. In cluster mode a client of
 * another replica is subscribed by its replica (one message through Redis,
 * applied before any channel message published after this call returns).
 * Returns: 0 (for a remote client: its replica was reached), DAEBUS_ENOENT
 * (no such client, or it is leaving), DAEBUS_EINVAL (bad name), DAEBUS_ENOMEM,
 * DAEBUS_ECONN (Redis unreachable; a local client's subscription holds, but
 * is missing from the cluster-wide list until Redis returns).
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_channel_subscribe(daebus_ws *ws, const char *client_id,
                                           const char *channel);

/* What a server-side subscription asks for (daebus_ws_channel_subscribe_ex). */
typedef struct daebus_ws_subscription {
    /* The "type" of the frames it delivers, instead of "channel_message"
     * (the frame keeps "channel", "data" and, with history, "offset" and
     * "epoch"): a channel can feed an existing protocol, e.g. the rooms
     * blueprint's "new_message". 1..DAEBUS_WS_SUB_TYPE_MAX bytes of
     * [A-Za-z0-9_.:-]; NULL = "channel_message". */
    const char *type;
    /* Recovery (a local client, a channel with history): the messages after
     * since_offset of since_epoch are queued first, in order, then the live
     * ones, without a gap or a duplicate (docs/channels/history.md). */
    bool has_since;
    uint64_t since_offset;
    const char *since_epoch;
} daebus_ws_subscription;

#define DAEBUS_WS_SUB_TYPE_MAX 64
#define DAEBUS_WS_SUBSCRIPTION_INIT                                                                \
    {                                                                                              \
        0                                                                                          \
    }

/* daebus_ws_channel_subscribe with options (s NULL = none). Subscribing a
 * client that is subscribed already keeps one subscription and sets its type
 * to s->type (daebus_ws_channel_subscribe and a client's "subscribe" frame
 * set it back to "channel_message"). With
 * has_since the history after since is queued for the client before the call
 * returns (so before the reply of the handler that called it), then the live
 * messages follow. info_out (may be NULL) gets {"recovered": bool (with
 * has_since), "offset": N, "epoch": E (the channel's position, when it keeps
 * a history and Redis answered)}, the fields a "subscribe" frame's answer has.
 * Ownership: s is borrowed; *info_out is the caller's (cJSON_Delete), NULL on
 * error.
 * Returns: as daebus_ws_channel_subscribe; DAEBUS_EINVAL also for a bad type
 * and for has_since with a client of another replica or without since_epoch.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_channel_subscribe_ex(daebus_ws *ws, const char *client_id,
                                              const char *channel, const daebus_ws_subscription *s,
                                              cJSON **info_out);

/* Ends a subscription (a client of another replica: by its replica).
 * Returns: 0, DAEBUS_ENOENT (a local client that was not subscribed, or no
 * such client), DAEBUS_EINVAL, DAEBUS_ECONN (ended here; the cluster-wide list
 * kept it).
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_channel_unsubscribe(daebus_ws *ws, const char *client_id,
                                             const char *channel);

/* Publishes data on channel: every subscriber gets
 * {"type":"channel_message","channel":C,"data":data}, once, in publish order
 * (serialised once per replica). One process: queued for the local
 * subscribers before return, in call order. Cluster mode: one PUBLISH queued
 * for Redis (the call does not wait); every replica, this one included,
 * delivers when Redis hands it back, so that all subscribers see one order;
 * a message published while Redis is away is refused (DAEBUS_ECONN), not
 * delivered anywhere. A channel with history (channel_history) is queued
 * the same way (0 = queued: its offset comes when Redis runs it; a failure
 * there is counted in cluster_errors, docs/channels/history.md).
 * Ownership: data is borrowed (serialised before return).
 * Returns: 0, DAEBUS_EINVAL (bad name, data NULL), DAEBUS_ETOOBIG (larger than
 * queue_max_bytes), DAEBUS_ENOMEM, DAEBUS_ECONN, DAEBUS_EFULL (a history
 * channel's publish found the cluster's publisher queue full for 2 s).
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_channel_publish(daebus_ws *ws, const char *channel, const cJSON *data);

/* daebus_ws_channel_publish to every subscriber but except_client_id (may be
 * NULL; e.g. the sender of a chat message, who has its answer already),
 * on whichever replica it is. A client that recovers with "since" gets the
 * message from the history all the same.
 * Ownership: data is borrowed. Returns: as daebus_ws_channel_publish.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_channel_publish_except(daebus_ws *ws, const char *channel,
                                                const cJSON *data, const char *except_client_id);

/* Stores a JSON array of the ids of channel's subscribers in *ids_out: those
 * of every replica in cluster mode (read from Redis; a dead replica's clients
 * leave it when it is reaped), the local ones otherwise.
 * Ownership: the caller frees *ids_out with cJSON_Delete (NULL on error).
 * Returns: 0, DAEBUS_EINVAL, DAEBUS_ENOMEM, DAEBUS_ECONN.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_channel_subscribers(daebus_ws *ws, const char *channel, cJSON **ids_out);

/* Stores a JSON array of the channels client_id is subscribed to in *out (a
 * client of another replica in cluster mode: read from Redis).
 * Ownership: the caller frees *out with cJSON_Delete (NULL on error).
 * Returns: 0, DAEBUS_ENOENT (no such client), DAEBUS_EINVAL, DAEBUS_ENOMEM,
 * DAEBUS_ECONN.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_channel_client_channels(daebus_ws *ws, const char *client_id, cJSON **out);

/* Stores the members of a channel with presence (options.channel_presence)
 * in *members_out: a JSON array of {"client_id": id, "info": {...}}, info
 * being the client's user data (daebus_ws_set_client_data) when it
 * subscribed ({} when none); those of every replica in cluster mode (read
 * from Redis), the local ones otherwise (info: the user data now).
 * Ownership: the caller frees *members_out with cJSON_Delete (NULL on error).
 * Returns: 0, DAEBUS_EINVAL (bad name, or the channel has no presence),
 * DAEBUS_ENOMEM, DAEBUS_ECONN.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_ws_channel_presence(daebus_ws *ws, const char *channel, cJSON **members_out);

/* ---- metrics ---- */

/* Fills out with the counters. Returns: 0 or DAEBUS_EINVAL. */
DAEBUS_API int daebus_ws_get_stats(daebus_ws *ws, daebus_ws_stats *out);

#ifdef __cplusplus
}
#endif
#endif
