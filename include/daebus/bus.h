/* daebus/bus.h - Redis action bus: actions, replies, listeners, broadcasts.
 *
 * The bus component speaks the Python Daebus pub/sub protocol (docs/protocol.md §1).
 * Attach it to an app; at start it SUBSCRIBEs to the service channel (the
 * service name; always, even with no ACTION registered, so that callers get an
 * "Unknown action" error instead of a time-out) and to every LISTEN channel:
 *
 *   ACTION(get_status, "get_status") {
 *       cJSON *out = cJSON_CreateObject();
 *       cJSON_AddNumberToObject(out, "uptime", 3600);
 *       return daebus_bus_reply_take(req, out);
 *   }
 *   ...
 *   daebus_bus_attach(daebus_bus_create(NULL, NULL), app);
 *
 * Threads: one subscriber thread per bus reads Redis (blocking reads) and
 * parses each message; ACTION and LISTEN handlers run on the bus worker pool
 * (app max_workers threads, default 10) behind a bounded queue - a full queue
 * answers "Service overloaded" at once. When a worker is idle, the subscriber
 * thread that read a request runs it itself in that worker's place, after
 * handing the reading to another subscriber thread (a few take turns), so a
 * handler may block there too: no more than max_workers handlers ever run at
 * once, and a blocking handler never stops the reading (another subscriber
 * thread takes it over within 0.2-1.2 ms). Replies and broadcasts go through a
 * small pool of publisher connections and may be sent from any thread.
 *
 * Replies: every request that has a reply channel (its reply_to, or
 * "<service>.responses" when it only has a request_id) gets exactly one final
 * reply. If an ACTION handler returns without a final reply and without
 * retaining the request, the bus sends one itself:
 *   - handler returned negative: {"error": "Internal error in action '<a>'"}
 *   - handler returned 0 and sent nothing final: {"error": "Action '<a>' sent no reply"}
 * A retained request that is released without a final reply gets
 * {"error": "Action '<a>' sent no reply"} at release.
 * Any number of progress messages (final:false) may precede the final reply.
 * Calls after the final reply return DAEBUS_ESTATE and send nothing.
 *
 * Replicas: several processes of one service on one Redis are replicas;
 * each request of the service channel is handled by exactly one of them, and
 * LISTEN(..., .once = true) makes a queue group (docs/replicas.md). Callers
 * change nothing.
 *
 * Connection loss: the subscriber reconnects with capped exponential backoff
 * and subscribes again (once per channel), logging one line per state change;
 * publishers reconnect lazily on their next use. HTTP/WebSocket are unaffected.
 *
 * Ownership: payload/message/raw JSON given to handlers are owned by the
 * request and valid until the handler returns, or until the last
 * daebus_bus_request_release() if it was retained.
 */
#ifndef DAEBUS_BUS_H
#define DAEBUS_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "daebus/app.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct daebus_caller daebus_caller;

/* ---- Redis URLs ---- */

/* Checks a Redis URL. Forms: redis://[[user]:password@]host[:port][/db] and
 * unix:///path/to/socket[?db=N] (also unix://[:password@]/path). Port defaults
 * to 6379, db to 0. Percent-escapes in user and password are decoded.
 * rediss:// (TLS) is refused with a clear message (not supported).
 * A pure function: no I/O, no allocation.
 * Thread: callable from any thread.
 * Returns: 0, or DAEBUS_EINVAL with err->message saying why (the URL quoted
 * with its password masked, e.g. "redis URL 'x': unsupported scheme (use
 * redis:// or unix://)"). */
DAEBUS_API int daebus_redis_url_check(const char *url, daebus_error *err);

/* ---- the component ---- */

typedef struct daebus_bus_options {
    size_t max_message_size;  /* bytes of one incoming message (service, LISTEN
                                 and the bus caller's reply channel); 0 = 1 MiB.
                                 A larger one is refused before it is copied or
                                 parsed, counted (too_large) and logged (at most
                                 one line a second); a request whose reply_to and
                                 request_id can be read from its first or last
                                 2 KiB gets {"error": "Message too large (N bytes;
                                 limit M)"}. */
    size_t max_queue;         /* worker queue bound; 0 = 1024 */
    int publishers;           /* publisher connections; 0 = 2 */
    double connect_timeout;   /* seconds per connection attempt; 0 = 2 */
    double command_timeout;   /* seconds a publish may block; 0 = 5 */
    double reconnect_initial; /* first backoff delay, seconds; 0 = 0.1 */
    double reconnect_max;     /* backoff cap, seconds; 0 = 5 */
    bool no_service_channel;  /* true: do not subscribe to the service channel */
    double health_interval;   /* seconds without traffic before the subscriber PINGs
                                 Redis; no answer within the same time = connection
                                 lost; 0 = 10 */
    double heartbeat;         /* seconds between two announces of this instance in
                                 Redis (docs/replicas.md); an instance that stops
                                 heartbeating leaves the others' lists within 3
                                 heartbeats; 0 = 1 */
    /* Durable actions (docs/messaging/durable.md): the stream
     * daebus:<service>:requests, read with the consumer group "daebus". */
    int durable;               /* 0 = default: on (when the app has actions
                                  and no_service_channel is false);
                                  > 0 on; < 0 off */
    double durable_visibility; /* seconds an entry taken by a replica may stay
                                  unacknowledged before another replica takes it
                                  again (keep it above the longest handler);
                                  0 = 30 */
    int durable_max_attempts;  /* runs that did not complete before an entry is
                                  dead-lettered
                                  (to daebus:<service>:dead); 0 = 5 */
    int durable_wait_replicas; /* > 0: WAIT for this many Redis replicas after
                                  each completion (for at most half of
                                  command_timeout);
                                  0 = off */
    double durable_done_ttl;   /* seconds the done record of a completed
                                  request outlives its deadline (a retry
                                  with its request_id runs no second time
                                  meanwhile): Redis holds about rate x
                                  (time-out + this) of them; 0 = 3600 */
} daebus_bus_options;

#define DAEBUS_BUS_OPTIONS_INIT                                                                    \
    {                                                                                              \
        0, 0, 0, 0.0, 0.0, 0.0, 0.0, false, 0.0, 0.0, 0, 0.0, 0, 0, 0.0                            \
    }

/* Counters for metrics. All monotonic except connected and solo. */
/* The counters (X, F: see DAEBUS_STATS_FIELD in app.h). errors: error
 * replies sent (all causes); too_large: messages over max_message_size
 * (replies to daebus_bus_caller() included); replies_sent: every reply
 * published (progress included); broadcasts: successful
 * daebus_bus_broadcast() calls; store_commands / store_errors: commands of
 * daebus_bus_redis*() and the calls that failed; connected: 1 = subscriber
 * connected and subscribed, and joined (it takes requests: see below).
 * Replicas (docs/replicas.md, "Actions exactly once"): each
 * message of the service channel or of a LISTEN .once channel is taken by one
 * replica; claims_won/lost/failed count this replica's claims,
 * ignored_joining the messages it let pass while joining or leaving, solo
 * is 1 while it is provably alone and takes every message without a claim,
 * primary 1 while it is the service channel's primary (docs/replicas.md,
 * "The primary": primary_taken, covered and takeovers count its work)
 * (overloads also counts messages left to another replica because the
 * worker queue was full). */
#define DAEBUS_BUS_STATS(X, F)                                                                     \
    X(uint64_t, requests_received, "daebus_bus_requests_received_total", "", "counter",            \
      "Service-channel messages with an action.")                                                  \
    X(uint64_t, requests_handled, "daebus_bus_requests_handled_total", "", "counter",              \
      "Action handlers that ran to completion.")                                                   \
    X(uint64_t, errors, "daebus_bus_errors_total", "", "counter", "Error replies sent.")           \
    X(uint64_t, unknown_actions, "daebus_bus_unknown_actions_total", "", "counter",                \
      "Requests for unknown actions.")                                                             \
    X(uint64_t, malformed, "daebus_bus_malformed_total", "", "counter",                            \
      "Unparsable or non-object messages.")                                                        \
    X(uint64_t, too_large, "daebus_bus_too_large_total", "", "counter",                            \
      "Messages over the size limit.")                                                             \
    X(uint64_t, overloads, "daebus_bus_overloads_total", "", "counter",                            \
      "Messages refused because the worker queue was full.")                                       \
    X(uint64_t, replies_sent, "daebus_bus_replies_sent_total", "", "counter",                      \
      "Replies published.")                                                                        \
    X(uint64_t, listener_messages, "daebus_bus_listener_messages_total", "", "counter",            \
      "Messages handed to LISTEN handlers.")                                                       \
    X(uint64_t, broadcasts, "daebus_bus_broadcasts_total", "", "counter", "Broadcasts published.") \
    X(uint64_t, reconnects, "daebus_bus_reconnects_total", "", "counter",                          \
      "Redis subscriber reconnections.")                                                           \
    X(uint64_t, store_commands, "daebus_bus_store_commands_total", "", "counter",                  \
      "Commands run with daebus_bus_redis() and daebus_bus_redis_pipeline().")                     \
    X(uint64_t, store_errors, "daebus_bus_store_errors_total", "", "counter",                      \
      "Those calls that failed: Redis unreachable or an error reply.")                             \
    X(int, connected, "daebus_bus_connected", "", "gauge",                                         \
      "1 while the Redis subscriber is connected.")                                                \
    X(uint64_t, claims_won, "daebus_bus_claims_won_total", "", "counter",                          \
      "Claims won: messages this replica took among several.")                                     \
    X(uint64_t, claims_lost, "daebus_bus_claims_lost_total", "", "counter",                        \
      "Claims lost: messages another replica took.")                                               \
    X(uint64_t, claims_failed, "daebus_bus_claims_failed_total", "", "counter",                    \
      "Claims that failed (Redis error, epoch lost, too late): messages not handled here.")        \
    X(uint64_t, ignored_joining, "daebus_bus_ignored_joining_total", "", "counter",                \
      "Messages ignored while joining the replicas, rejoining or leaving.")                        \
    X(int, solo, "daebus_bus_solo", "", "gauge",                                                   \
      "1 while this replica is alone and handles without claims, 0 while it claims.")              \
    X(int, primary, "daebus_bus_primary", "", "gauge",                                             \
      "1 while this replica is the primary: it takes service requests without claims.")            \
    X(uint64_t, primary_taken, "daebus_bus_primary_taken_total", "", "counter",                    \
      "Requests this replica took as the primary, without a claim.")                               \
    X(uint64_t, covered, "daebus_bus_covered_total", "", "counter",                                \
      "Requests this replica left to the primary (its progress covered them).")                    \
    X(uint64_t, takeovers, "daebus_bus_takeovers_total", "", "counter",                            \
      "Times this replica made itself primary: requests left uncovered past the window.")          \
    X(uint64_t, durable_taken, "daebus_bus_durable_taken_total", "", "counter",                    \
      "Durable requests taken from the stream to run here.")                                       \
    X(uint64_t, durable_completed, "daebus_bus_durable_completed_total", "", "counter",            \
      "Durable requests completed here (final reply, done record, entry deleted).")                \
    X(uint64_t, durable_retried, "daebus_bus_durable_retried_total", "", "counter",                \
      "Durable requests taken here again after a replica did not complete them (attempt > 1).")    \
    X(uint64_t, durable_expired, "daebus_bus_durable_expired_total", "", "counter",                \
      "Durable requests dropped unrun: their deadline had passed.")                                \
    X(uint64_t, durable_dead_lettered, "daebus_bus_durable_dead_lettered_total", "", "counter",    \
      "Durable requests moved to the dead-letter stream after too many attempts.")                 \
    X(uint64_t, durable_duplicates, "daebus_bus_durable_duplicates_total", "", "counter",          \
      "Durable requests not run because their request_id had completed already.")

struct daebus_bus_stats {
    DAEBUS_BUS_STATS(DAEBUS_STATS_FIELD, DAEBUS_STATS_PLAIN_FIELD)
};

/* Creates a bus component. Ownership: opts is copied (may be NULL).
 * Returns: NULL on failure (err filled).
 * Thread: before the app runs. */
DAEBUS_API daebus_bus *daebus_bus_create(const daebus_bus_options *opts, daebus_error *err);

/* Attaches bus to app.
 * Ownership: attach takes bus on every path: on failure (app NULL included) it
 * is destroyed, so the caller never frees it. Passing bus NULL (a failed create)
 * returns DAEBUS_EINVAL, so "attach(create(...), app)" needs no check.
 * Returns: 0, DAEBUS_EINVAL, DAEBUS_EEXIST, DAEBUS_ESTATE.
 * Thread: before the app runs. */
DAEBUS_API int daebus_bus_attach(daebus_bus *bus, daebus_app *app);

/* Frees a bus that was never attached (an attached one belongs to its app:
 * the call is ignored with a warning). Accepts NULL.
 * Thread: the app's owning thread. */
DAEBUS_API void daebus_bus_destroy(daebus_bus *bus);

/* Fills out with the counters (zeroes when bus is NULL).
 * Returns: 0 or DAEBUS_EINVAL. Thread: callable from any thread. */
DAEBUS_API int daebus_bus_get_stats(const daebus_bus *bus, struct daebus_bus_stats *out);

/* Publishes obj (an object, serialised compactly, no envelope) on channel.
 * Thread: callable from any thread.
 * (While the app runs.)
 * Ownership: channel and obj are borrowed.
 * Returns: the number of receivers Redis reports (>= 0), DAEBUS_EINVAL (empty
 * channel, obj not an object), DAEBUS_ESTATE (not running), DAEBUS_ECONN. */
DAEBUS_API int daebus_bus_broadcast(daebus_bus *bus, const char *channel, const cJSON *obj);

/* The same, consuming obj on every path. */
DAEBUS_API int daebus_bus_broadcast_take(daebus_bus *bus, const char *channel, cJSON *obj);

/* A caller (caller.h) owned by the bus, for service-to-service calls from
 * handlers. Created on first use with the app's Redis URL; its replies are
 * read on its own thread, so a handler blocking in daebus_caller_request()
 * does not hold up the bus subscriber. (It still occupies a worker: keep
 * max_workers above the number of handlers that may wait at once.)
 * Thread: callable from any thread.
 * (While the app runs.) Ownership: owned by the bus; do not
 * destroy. Returns: the caller, or NULL (not running, or Redis unreachable). */
DAEBUS_API daebus_caller *daebus_bus_caller(daebus_bus *bus);

/* ---- the request context (ACTION and LISTEN handlers) ---- */

/* Accessors. Ownership: borrowed from req (valid while the handler runs or
 * while req is retained).
 * Thread: callable from any thread.
 * (Any thread holding req.)
 * request_id: the string request_id, or NULL when absent or not a string;
 * request_id_json: the raw value (any JSON type) or NULL when absent.
 * reply_to: the reply channel in use (reply_to, or "<service>.responses"), or
 * NULL when the message cannot be answered (fire-and-forget).
 * service: the request's "service" field (NULL if absent).
 * action: the action name (NULL for listener messages).
 * channel: the channel the message arrived on.
 * raw: the whole decoded message. */
DAEBUS_API const char *daebus_bus_request_id(const daebus_bus_request *req);
DAEBUS_API const cJSON *daebus_bus_request_id_json(const daebus_bus_request *req);
DAEBUS_API const char *daebus_bus_request_reply_to(const daebus_bus_request *req);
DAEBUS_API const char *daebus_bus_request_service(const daebus_bus_request *req);
DAEBUS_API const char *daebus_bus_request_action(const daebus_bus_request *req);
DAEBUS_API const char *daebus_bus_request_channel(const daebus_bus_request *req);
DAEBUS_API const cJSON *daebus_bus_request_raw(const daebus_bus_request *req);
DAEBUS_API daebus_app *daebus_bus_request_app(const daebus_bus_request *req);
DAEBUS_API daebus_bus *daebus_bus_request_bus(const daebus_bus_request *req);

/* Returns: true once a final reply was sent (or attempted).
 * Thread: callable from any thread. */
DAEBUS_API bool daebus_bus_request_answered(const daebus_bus_request *req);

/* The attempt of a durable request (docs/messaging/durable.md): 1 the first
 * time it runs, 2 or more when a replica took it before and did not complete
 * it (it crashed or stopped without draining): handlers with side effects use
 * it (and the request_id) to stay idempotent. 1 for a pub/sub request or a
 * LISTEN message; 0 when req is NULL.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_bus_request_attempt(const daebus_bus_request *req);

/* Final success reply: {"status":"success","payload":<payload>,"request_id":..,"final":true}.
 * payload NULL sends {}. A request without a reply channel drops the reply
 * and returns 0.
 * Thread: callable from any thread.
 * (Any thread holding req: the handler, or a retainer.)
 * Ownership: payload borrowed (reply) / consumed on every path (reply_take).
 * Returns: 0, DAEBUS_ESTATE (final reply already sent), DAEBUS_ECONN,
 * DAEBUS_ECLOSED (bus stopped), DAEBUS_ENOMEM. */
DAEBUS_API int daebus_bus_reply(daebus_bus_request *req, const cJSON *payload);
DAEBUS_API int daebus_bus_reply_take(daebus_bus_request *req, cJSON *payload);

/* Final error reply: status "error", payload {"error": "<formatted message>"}.
 * Same thread/return rules as daebus_bus_reply(). */
DAEBUS_API int daebus_bus_reply_error(daebus_bus_request *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Progress/partial result: status "success", final false. If pct >= 0 it is
 * clamped to 0..100 and stored as payload.progress_percentage (on a copy of an
 * object payload; a non-object payload is wrapped as
 * {"data": payload, "progress_percentage": pct}); pct < 0 adds nothing.
 * payload NULL means {}. Any number may be sent before the final reply.
 * Thread: callable from any thread.
 * (Any thread holding req.)
 * Ownership: payload borrowed (progress) / consumed on every path
 * (progress_take: daebus_bus_progress_take(req, cJSON_CreateObject(), 50)
 * does not leak). Returns: as daebus_bus_reply(). */
DAEBUS_API int daebus_bus_progress(daebus_bus_request *req, const cJSON *payload, double pct);
DAEBUS_API int daebus_bus_progress_take(daebus_bus_request *req, cJSON *payload, double pct);

/* Keeps req (and its JSON) alive after the handler returns, so that another
 * thread can reply later. Each retain needs one release. When the last
 * reference goes and an ACTION request with a reply channel got no final
 * reply, the bus sends the "sent no reply" error. Release every retained
 * request before the app is destroyed (the bus waits up to the app's shutdown
 * time-out for them when it stops).
 * Thread: callable from any thread. */
DAEBUS_API void daebus_bus_request_retain(daebus_bus_request *req);
DAEBUS_API void daebus_bus_request_release(daebus_bus_request *req);

/* ---- Redis commands for shared state (framework/bus/bus_store.c) ----
 *
 * Replicas of a service share state in the Redis the bus talks to (the rooms
 * blueprint keeps its rooms there). These calls run any Redis command on the
 * bus's publisher pool (the connections replies and broadcasts use), so
 * blueprints and user code need no connection of their own. Keep keys under
 * "daebus:<service>:" (docs/replicas.md lists the framework's own) and keep
 * commands short: a call holds one pool connection until Redis answered.
 *
 * Replies are converted to cJSON: a bulk or status string -> string (a bulk
 * string is text: it ends at its first NUL byte; store binary data encoded),
 * an integer -> number (exact up to 2^53), an array -> array (nested),
 * nil -> null. A Redis error reply (WRONGTYPE, a Lua error, ...) is the only
 * object: {"error": "<Redis's text>"}.
 */

/* One command of daebus_bus_redis_pipeline(): argc arguments; lens NULL = each
 * argv[i] is a NUL-terminated string, else lens[i] bytes (binary-safe). */
typedef struct daebus_redis_cmd {
    int argc;
    const char **argv;
    const size_t *lens;
} daebus_redis_cmd;

/* Runs one Redis command (argv[0] is its name: "HSET", "EVAL", ...) and waits
 * for its reply (at most the bus's command_timeout).
 * lens NULL = every argv[i] is NUL-terminated, else lens[i] bytes each.
 * Thread: callable from any thread.
 * (While the app runs; blocks the calling thread for one round trip.)
 * Ownership: argv and lens are borrowed; *reply (reply may be NULL: the reply
 * is dropped) is the caller's to free with cJSON_Delete(), set on 0 and on
 * DAEBUS_EREPLY ({"error": text}), NULL otherwise.
 * Returns: 0; DAEBUS_EREPLY (Redis answered with an error: logged, at most one
 * line a second, and counted in store_errors, except NOSCRIPT, the normal
 * answer of EVALSHA after Redis lost its script cache); DAEBUS_ECONN (Redis
 * unreachable or the connection broke: the command may or may not have run;
 * counted in store_errors); DAEBUS_ESTATE (the bus is not running);
 * DAEBUS_EINVAL (bus NULL, argc < 1, argv NULL or holding NULL);
 * DAEBUS_ENOMEM. */
DAEBUS_API int daebus_bus_redis(daebus_bus *bus, int argc, const char **argv, const size_t *lens,
                                cJSON **reply);

/* Sends the n commands (1..DAEBUS_BUS_PIPELINE_MAX) in one write on one
 * connection and reads their n replies: one round trip. Not atomic (another
 * client's commands may run between them: use MULTI/EXEC inside the pipeline,
 * or one EVAL, for that).
 * Thread: callable from any thread.
 * (While the app runs; blocks for one round trip.)
 * Ownership: cmds are borrowed; replies (may be NULL) has n slots that get
 * the n converted replies, each the caller's to free (a command Redis refused
 * gets {"error": text}); on any other return every slot is NULL.
 * Returns: 0 (every command answered, none with an error); DAEBUS_EREPLY
 * (every command answered, at least one with an error: see its slot; logged
 * and counted as above); DAEBUS_ECONN (no reply kept: some commands may have
 * run); DAEBUS_ESTATE; DAEBUS_EINVAL (n outside 1..DAEBUS_BUS_PIPELINE_MAX, a
 * bad command); DAEBUS_ENOMEM. */
DAEBUS_API int daebus_bus_redis_pipeline(daebus_bus *bus, const daebus_redis_cmd *cmds, size_t n,
                                         cJSON **replies);

#define DAEBUS_BUS_PIPELINE_MAX 1024

#ifdef __cplusplus
}
#endif
#endif
