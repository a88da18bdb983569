/* daebus/caller.h - bus caller: request/response to other services' actions.
 *
 * The C counterpart of Python's DaebusCaller, usable from any program (it
 * needs no app). One caller owns:
 *   - a reply channel "caller:<uuid4>" and one subscriber connection to it,
 *     read by one thread of its own (callbacks run on that thread; a
 *     blocking request that is the only one pending reads its own reply,
 *     so its progress callback runs on the requesting thread);
 *   - one publisher connection (requests made in callbacks are written
 *     together, without waiting for each PUBLISH's answer);
 *   - any channels it listens to (daebus_caller_listen), on the same
 *     subscriber connection;
 *   - a table of pending requests keyed by request_id, so any number of
 *     requests may be in flight on one caller.
 *
 *   daebus_caller *c = daebus_caller_create("redis://127.0.0.1:6379", NULL, &err);
 *   cJSON *reply = NULL;
 *   int rc = daebus_caller_request(c, "chat_service", "get_status", NULL, 5.0, &reply, &err);
 *   // rc 0: reply is the payload; DAEBUS_EREPLY: err.message is the error text
 *   cJSON_Delete(reply);
 *   daebus_caller_destroy(c);
 *
 * Requests are the five-key message of docs/protocol.md §1 (action, payload,
 * reply_to, request_id (uuid4), service). A reply with "final": false (or
 * missing final = true) is progress; the final one completes the request.
 * Replies for unknown or expired request ids are dropped.
 *
 * Durable requests (docs/messaging/choosing.md): with the option durable (or
 * daebus_caller_request_durable*), a request is added to the service's
 * stream daebus:<service>:requests instead of published; replies, progress,
 * time-outs and the pending table are the same.
 *
 * Connection loss: every pending pub/sub request fails at once with
 * DAEBUS_ECONN (never waiting for its time-out); durable ones stay pending
 * and, once subscribed again, are checked (docs/operations.md "Durable
 * requests through a failover"): still in the stream (nothing done), lost by
 * Redis (queued again, same request_id), or completed meanwhile (its final
 * reply, kept by the service up to 4 KiB, is delivered as usual; a larger
 * one, if it was gone, fails the request with DAEBUS_ECONN "... its reply
 * was lost (not run again)"). New requests fail with DAEBUS_ECONN until the caller's thread has
 * reconnected and subscribed again (it keeps trying with capped backoff).
 *
 * Thread: callable from any thread.
 * (Every function except create/destroy.) Do not call
 * daebus_caller_destroy() or a blocking request from inside a callback.
 */
#ifndef DAEBUS_CALLER_H
#define DAEBUS_CALLER_H

#include <stdbool.h>
#include <cjson/cJSON.h>
#include "daebus/app.h"
#include "daebus/bus.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct daebus_caller daebus_caller;

typedef struct daebus_caller_options {
    double default_timeout;    /* seconds for requests given timeout <= 0; 0 = 5 */
    double connect_timeout;    /* seconds per connection attempt; 0 = 2 */
    double reconnect_max;      /* backoff cap after a lost connection; 0 = 5 */
    const char *reply_channel; /* NULL = "caller:<uuid4>" */
    size_t max_message_size;   /* bytes of one reply; 0 = 1 MiB (as the bus). A larger
                                  reply is refused unread and completes its request
                                  with DAEBUS_ETOOBIG */
    bool durable;              /* every request of this caller is durable (docs/messaging/
                                  choosing.md): XADD daebus:<service>:requests * req <the
                                  request> deadline <ms since epoch: now + timeout> instead of
                                  PUBLISH; the reply comes on the reply channel as for pub/sub.
                                  An XADD lost with the connection (or by a failover) is
                                  sent once more (same request_id) after a reconnect.
                                  false = pub/sub */
    int durable_wait_replicas; /* durable: WAIT n (at most half the time-out, 2.5 s) after
                                  each XADD, on a connection of its own, so the request is
                                  on n Redis replicas before the call returns (the call
                                  blocks meanwhile); 0 = no WAIT */
} daebus_caller_options;

#define DAEBUS_CALLER_OPTIONS_INIT                                                                 \
    {                                                                                              \
        0.0, 0.0, 0.0, NULL, 0, false, 0                                                           \
    }

/* Connects (publisher + subscriber), subscribes to the reply channel and
 * starts the reader thread. redis_url NULL: $DAEBUS_REDIS_URL, else
 * redis://127.0.0.1:6379. Ownership: strings are copied.
 * Returns: the caller, or NULL with err filled (DAEBUS_EINVAL bad URL,
 * DAEBUS_ECONN unreachable, DAEBUS_EAUTH bad password, DAEBUS_ENOMEM).
 * Thread: callable from any thread. */
DAEBUS_API daebus_caller *
daebus_caller_create(const char *redis_url, const daebus_caller_options *opts, daebus_error *err);

/* Fails every pending request with DAEBUS_ECLOSED (their completions run
 * before this returns), stops the thread, closes the connections, frees.
 * Accepts NULL.
 * Thread: callable from any thread.
 * (Not from a callback of this caller.) */
DAEBUS_API void daebus_caller_destroy(daebus_caller *caller);

/* Returns: the reply channel name. Ownership: owned by caller.
 * Thread: callable from any thread. */
DAEBUS_API const char *daebus_caller_reply_channel(const daebus_caller *caller);

/* Returns: true while the reply subscription is live.
 * Thread: callable from any thread. */
DAEBUS_API bool daebus_caller_connected(const daebus_caller *caller);

/* Returns: the durable requests this caller queued (XADDs that Redis accepted).
 * Thread: callable from any thread. */
DAEBUS_API unsigned long long daebus_caller_queued(const daebus_caller *caller);

/* Completion of an asynchronous request, called exactly once (shutdown
 * included) on the caller's reader thread (or, for requests still pending at
 * daebus_caller_destroy(), on the destroying thread).
 *   status 0: payload is the final reply's payload;
 *   DAEBUS_EREPLY: the service answered status "error"; payload is its
 *     payload and message the "error" text ("Unknown error" if none);
 *   DAEBUS_ENOLISTENER: the request reached no subscriber of the service's
 *     channel (PUBLISH counted 0), so nothing could answer; completed at
 *     once, not at the time-out; message is "no service 'x' is listening on
 *     redis://host:port/db" (a password shows as ***);
 *   DAEBUS_EIO (durable): Redis refused the XADD (e.g. OOM, the stream key
 *     holds another type); message "request could not be queued: <error>";
 *   DAEBUS_ETOOBIG: a reply (progress or final) larger than the caller's
 *     max_message_size arrived; it was not read; message "reply too large
 *     (N bytes; limit M)", payload NULL;
 *   DAEBUS_ETIMEDOUT, DAEBUS_ECONN (connection lost), DAEBUS_ECLOSED
 *     (caller destroyed): payload NULL, message says what happened.
 * Ownership: payload and message are borrowed for the duration of the call
 * (cJSON_Duplicate what you keep). */
typedef void daebus_caller_done_fn(daebus_caller *caller, int status, const cJSON *payload,
                                   const char *message, void *user);

/* Progress (every non-final reply), on the caller's thread, before the
 * completion. Ownership: payload borrowed for the call. */
typedef void daebus_caller_progress_fn(daebus_caller *caller, const cJSON *payload, void *user);

/* Sends a request and returns at once. timeout <= 0 means the default.
 * payload NULL sends {}. request_id_out (may be NULL, at least 37 bytes)
 * receives the request id.
 * If the call fails, neither callback is ever called; if it succeeds, done is
 * called exactly once. Ownership: strings and payload are borrowed.
 * Returns: 0, DAEBUS_EINVAL, DAEBUS_ECONN, DAEBUS_ECLOSED, DAEBUS_ENOMEM.
 * Thread: callable from any thread.
 * (Callbacks included, as long as they do not block on this caller.) */
DAEBUS_API int daebus_caller_request_async(daebus_caller *caller, const char *service,
                                           const char *action, const cJSON *payload, double timeout,
                                           daebus_caller_done_fn *done,
                                           daebus_caller_progress_fn *progress, void *user,
                                           char *request_id_out);

/* Blocking request. On 0, *reply_out (if reply_out is not NULL) receives the
 * final payload. On DAEBUS_EREPLY err->message holds the service's error text
 * and *reply_out (if not NULL) its error payload. progress (may be NULL) runs
 * for each non-final reply, on the caller's thread, or on the calling thread
 * when this request is the only one pending (it then reads its own replies:
 * no thread hand-off).
 * Ownership: *reply_out is the caller's to cJSON_Delete.
 * Returns: 0, DAEBUS_EREPLY, DAEBUS_ENOLISTENER (nobody subscribes to the
 * service's channel: returned at once, err->message "no service 'x' is
 * listening on redis://..."), DAEBUS_ETOOBIG (reply over max_message_size),
 * DAEBUS_ETIMEDOUT, DAEBUS_ECONN, DAEBUS_EINVAL,
 * DAEBUS_ECLOSED, DAEBUS_ENOMEM.
 * Thread: callable from any thread.
 * (Never from a callback.) */
DAEBUS_API int daebus_caller_request(daebus_caller *caller, const char *service, const char *action,
                                     const cJSON *payload, double timeout, cJSON **reply_out,
                                     daebus_error *err);
DAEBUS_API int daebus_caller_request_progress(daebus_caller *caller, const char *service,
                                              const char *action, const cJSON *payload,
                                              double timeout, daebus_caller_progress_fn *progress,
                                              void *user, cJSON **reply_out, daebus_error *err);

/* The same as daebus_caller_request_async() / daebus_caller_request(), but
 * durable whatever the caller's durable option (docs/messaging/choosing.md):
 * XADD daebus:<service>:requests * req <request> deadline <ms since epoch:
 * now + timeout>; the reply comes on the reply channel. Never
 * DAEBUS_ENOLISTENER (the request waits for a replica until its deadline);
 * DAEBUS_EIO when Redis refuses the XADD. durable_wait_replicas applies.
 * Ownership: as daebus_caller_request_async() / daebus_caller_request().
 * Returns: as daebus_caller_request_async() / daebus_caller_request().
 * Thread: callable from any thread.
 * (The blocking one never from a callback.) */
DAEBUS_API int daebus_caller_request_durable_async(daebus_caller *caller, const char *service,
                                                   const char *action, const cJSON *payload,
                                                   double timeout, daebus_caller_done_fn *done,
                                                   daebus_caller_progress_fn *progress, void *user,
                                                   char *request_id_out);
DAEBUS_API int daebus_caller_request_durable(daebus_caller *caller, const char *service,
                                             const char *action, const cJSON *payload,
                                             double timeout, cJSON **reply_out, daebus_error *err);

/* Publishes payload (any JSON value, serialised compactly) on channel.
 * Ownership: borrowed. Returns: receivers (>= 0), DAEBUS_EINVAL, DAEBUS_ECONN.
 * Thread: callable from any thread.
 * (Publishes are serialised on the caller's publisher connection.) */
DAEBUS_API int daebus_caller_send_message(daebus_caller *caller, const char *channel,
                                          const cJSON *payload);

/* Publishes len bytes of data as they are (no JSON, no envelope) on channel.
 * Ownership: borrowed. Returns: receivers (>= 0), DAEBUS_EINVAL, DAEBUS_ECONN.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_caller_publish(daebus_caller *caller, const char *channel, const char *data,
                                     size_t len);

/* A message on a channel given to daebus_caller_listen(): data is the raw
 * message (len bytes, NUL-terminated), not parsed. A message over the
 * caller's max_message_size is dropped (and logged) instead.
 * Ownership: channel and data are borrowed for the call.
 * Thread: only inside its handler.
 * (It runs on the caller's reader thread and must not call daebus_caller_listen,
 * daebus_caller_unlisten or daebus_caller_destroy on its own caller.) */
typedef void daebus_caller_message_fn(daebus_caller *caller, const char *channel, const char *data,
                                      size_t len, void *user);

/* Subscribes the caller's connection to channel (not its reply channel) and
 * calls fn for each message on it; after a lost connection the subscription
 * is made again with the reply channel's. Waits for Redis to confirm.
 * Ownership: channel is copied; user is borrowed until unlisten or destroy.
 * Returns: 0 once subscribed, DAEBUS_ETIMEDOUT (no confirmation within the
 * connect time-out: the listener stays and is subscribed once Redis is back),
 * DAEBUS_EEXIST (listening on channel already), DAEBUS_EINVAL, DAEBUS_ENOMEM,
 * DAEBUS_ECLOSED. Thread: callable from any thread. */
DAEBUS_API int daebus_caller_listen(daebus_caller *caller, const char *channel,
                                    daebus_caller_message_fn *fn, void *user);

/* Stops listening on channel: once it returns, fn is not called again for it.
 * Returns: 0, DAEBUS_EINVAL (not listening), DAEBUS_ETIMEDOUT (no
 * confirmation; the listener is gone anyway). Thread: callable from any thread. */
DAEBUS_API int daebus_caller_unlisten(daebus_caller *caller, const char *channel);

/* Fire-and-forget to a service channel, Python's shape: a copy of payload (an
 * object) with "action" merged in at the top level when action is not NULL;
 * no reply_to, no request_id. Ownership: payload borrowed.
 * Returns: as daebus_caller_send_message().
 * Thread: callable from any thread. */
DAEBUS_API int daebus_caller_send_to_service(daebus_caller *caller, const char *service,
                                             const cJSON *payload, const char *action);

#ifdef __cplusplus
}
#endif
#endif
