/* ws_cluster.h - WebSocket clients across the replicas of a service (internal).
 *
 * ws_cluster.c: the transport. In cluster mode the component has Redis
 * connections of its own (a publisher pool and a subscriber), subscribed to
 * daebus:<svc>:ws (broadcasts to all) and daebus:<svc>:ws:<instance>
 * (messages for this replica's clients), and a cluster thread that, every
 * half heartbeat, writes the clients' activity to the directory, removes the
 * clients of dead replicas (one survivor per dead replica) and, after Redis
 * came back, announces every local client again.
 *
 * ws_cluster_pub.c: the publisher queue: broadcast_to_all's PUBLISH is queued
 * and sent, in order and pipelined, by a publisher thread of the cluster
 * (the calling thread does not wait for Redis).
 *
 * ws_directory.c: the directory in Redis (client id -> instance, each
 * client's metadata and user data), the cluster-wide views and the
 * cross-replica sends. docs/replicas.md lists the keys, channels and message
 * format.
 *
 * Every function is a no-op (or the local answer) when ws->cluster is NULL.
 * Thread: any thread unless a line says otherwise.
 */
#ifndef DAEBUS_WS_CLUSTER_H
#define DAEBUS_WS_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <hiredis/hiredis.h>
#include "redis_pub.h"
#include "redis_sub.h"
#include "ws_internal.h"

/* The subscriber's longest reconnect backoff (seconds). */
#define DAEBUS__WS_RECONNECT_MAX 1.0

/* One queued message of the publisher queue (ws_cluster_pub.c). A plain
 * one is PUBLISHed as is; a history one (channel NULL) is a channel publish
 * with history (ws_channel_hpub.c): the channel name, a NUL, then the data. */
typedef struct ws_pubmsg {
    struct ws_pubmsg *next;
    const char *channel; /* plain: the cluster's Redis channel (outlives it); NULL: history */
    size_t len;          /* bytes of data[] (without the terminating NUL) */
    char data[];         /* plain: header, '\n', frame bytes */
} ws_pubmsg;
struct ws_hpub;

typedef struct ws_cluster {
    daebus_ws *ws;
    daebus__redis_url url;
    daebus__redis_pub *pub;
    daebus__redis_sub *sub;
    struct daebus__chist *hist; /* the channels' history store (ws->ch_history set), on pub */
    char *service, *self;
    char *chan_all;          /* daebus:<svc>:ws */
    char *chan_prefix;       /* daebus:<svc>:ws: (+ instance id = a replica's channel) */
    char *chan_self;         /* daebus:<svc>:ws:<self> */
    char *key_clients;       /* daebus:<svc>:ws:clients */
    char *key_client;        /* daebus:<svc>:ws:client: (+ id) */
    char *key_inst;          /* daebus:<svc>:ws:inst: (+ instance) */
    char *key_insts;         /* daebus:<svc>:ws:instances */
    char *key_reap;          /* daebus:<svc>:ws:reap: (+ instance) */
    char *key_alive;         /* daebus:<svc>:ws:alive: (+ instance; TTL 2.5 heartbeats) */
    double heartbeat;        /* of the cluster view, seconds (cluster thread) */
    double alive_at;         /* monotonic time of the last alive refresh (cluster thread) */
    int announced;           /* a resync succeeded once (cluster thread) */
    _Atomic double up_since; /* monotonic time the subscriber came up */
    atomic_int up;           /* the subscriber is connected and subscribed */
    atomic_int resync;       /* announce every local client again at the next tick */
    atomic_int have_sha;     /* sha[] written (once, by the cluster thread) */
    char sha[9][41];         /* SHA1 of each directory script (WS_LUA_COUNT) */
    /* the cluster thread */
    pthread_mutex_t dir_lock; /* a resync against a client's removal (ws_directory.c) */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;
    pthread_t thread;
    int thread_started;
    daebus__ratelimit log_rl;
    /* the publisher queue (ws_cluster_pub.c), q_lock held */
    pthread_mutex_t q_lock;
    pthread_cond_t q_cond; /* the publisher thread: work or stop */
    pthread_cond_t q_room; /* callers: room, or their messages sent */
    ws_pubmsg *q_head, *q_tail;
    size_t q_count, q_bytes;
    uint64_t q_queued, q_done; /* messages queued, and sent or failed, ever */
    int q_stop;
    int q_init, q_started; /* the owner's thread (start, stop) */
    pthread_t q_thread;
    struct ws_hpub *hpub; /* the history publishes' state (ws_channel_hpub.c), with hist */
} ws_cluster;

/* ---- ws_cluster.c ---- */

/* Starts cluster mode when ws->cluster_mode and the app ask for it: the
 * connections, the subscriptions and the cluster thread (Redis may be down:
 * then the subscriber keeps trying). Returns: 0 (cluster mode or not),
 * DAEBUS_ESTATE (ON without a bus), DAEBUS_EINVAL (bad Redis URL),
 * DAEBUS_ENOMEM. Thread: the app's owning thread (component start). */
int daebus__ws_cluster_start(daebus_ws *ws);
/* Removes this replica's directory entries, stops the thread, closes the
 * connections (later cross-replica calls fail with DAEBUS_ECONN).
 * Thread: as start (after the graceful shutdown). */
void daebus__ws_cluster_stop(daebus_ws *ws);
/* Frees what start made (accepts a component never in cluster mode).
 * Thread: the component's destroy. */
void daebus__ws_cluster_free(daebus_ws *ws);
/* Builds one published message (header, '\n', frame bytes) at *out + at
 * (the first at bytes are the caller's). Returns: the message's length, or
 * 0 when out of memory. Ownership: free *out. */
size_t daebus__ws_cluster_message(ws_cluster *cl, cJSON *header, const ws_frame *f, size_t at,
                                  char **out);
/* Runs a pipeline on the publisher pool; fails fast while the subscriber is
 * down. Returns: 0 (replies set) or DAEBUS_ECONN (counted, logged at most
 * once a second). */
int daebus__ws_cluster_run(ws_cluster *cl, const daebus__redis_cmd *cmds, int n,
                           redisReply **replies);
/* Counts (and rate-limits the log line of) a cross-replica operation that
 * failed. Returns: DAEBUS_ECONN. */
int daebus__ws_cluster_fail(ws_cluster *cl, const char *what);
/* Runs every departed handler for one client. */
void daebus__ws_departed_run(daebus_ws *ws, const char *id, const cJSON *metadata, bool died);

/* ---- ws_cluster_pub.c ---- */

/* Starts the publisher thread. Returns: 0 or DAEBUS_ENOMEM.
 * Thread: the owner's (cluster start). */
int daebus__ws_cluster_pub_start(ws_cluster *cl);
/* Sends what is queued, then stops the thread (later messages are refused).
 * Thread: the owner's (cluster stop). */
void daebus__ws_cluster_pub_stop(ws_cluster *cl);
/* Stops (if needed) and frees the queue (accepts one never started). */
void daebus__ws_cluster_pub_free(ws_cluster *cl);
/* Queues m (malloc'd, next NULL, len set) at the tail, waiting for room
 * at most 2 s. Returns: 0 (queued: the queue owns m), DAEBUS_EFULL (full
 * for 2 s) or DAEBUS_ECLOSED (stopping); m is freed on an error. Nothing is
 * counted or logged (the caller does). */
int daebus__ws_cluster_enqueue(ws_cluster *cl, ws_pubmsg *m);
/* Queues header (a JSON object: "k" the kind, "o" this instance, ...)
 * followed by '\n' and f's bytes (f may be NULL) for channel (the
 * cluster's: it outlives the message), published in queue order without
 * waiting. Returns: 0 queued, DAEBUS_ECONN (the subscriber is down, the
 * queue stopped or full for 2 s: counted), DAEBUS_ENOMEM. A queued message
 * whose PUBLISH fails later is counted and logged. */
int daebus__ws_cluster_publish_async(ws_cluster *cl, const char *channel, cJSON *header,
                                     const ws_frame *f);
/* Waits until every message queued before the call was sent (or failed):
 * called before a cross-replica send that waits for Redis, so that it
 * follows the broadcasts queued before it. */
void daebus__ws_cluster_drain(ws_cluster *cl);

/* ---- ws_directory.c ---- */

/* Enters c (its id set) in the directory. Returns: 0, DAEBUS_EEXIST (a live
 * replica holds a client with that id), or 0 with a resync planned when
 * Redis cannot be reached (the id is then unique on this replica only).
 * Thread: c's CivetWeb thread (the connect callback). */
int daebus__ws_dir_announce(daebus_ws *ws, ws_client *c);
/* Removes c from the directory (the close callback). */
void daebus__ws_dir_remove(daebus_ws *ws, ws_client *c);
/* Cluster thread: writes what changed of the local clients' activity. */
void daebus__ws_dir_flush(ws_cluster *cl);
/* Cluster thread: announces every local client again and drops entries of
 * this replica that are no longer local. Returns: 0 or DAEBUS_ECONN. */
int daebus__ws_dir_resync(ws_cluster *cl);
/* Cluster thread: refreshes this replica's alive key when half a heartbeat
 * passed since the last refresh (force: now). */
void daebus__ws_dir_alive(ws_cluster *cl, bool force);
/* Cluster thread: removes the clients of dead replicas (those with entries
 * whose alive key expired), one survivor per dead replica. */
void daebus__ws_dir_reap(ws_cluster *cl);
/* Removes this replica's entries (graceful stop). */
void daebus__ws_dir_leave(ws_cluster *cl);
/* Cross-replica part of a send to ids that are not local (ids[i] with
 * done[i] false); reached (may be NULL) gets true for each remote id whose
 * replica was reached. Returns: recipients reached (>= 0) or DAEBUS_ECONN. */
int daebus__ws_dir_send(daebus_ws *ws, const char *const *ids, size_t n, const bool *done,
                        const ws_frame *f, bool *reached);
/* Sends header h (a JSON object with "k"; "o" is added) to the replica that
 * holds client id (another one). Returns: 1 (reached), 0 (no such client on
 * another live replica), DAEBUS_ECONN, DAEBUS_ENOMEM. */
int daebus__ws_dir_control(daebus_ws *ws, const char *id, cJSON *h);
/* The same for a disconnect. Returns: 0, DAEBUS_ENOENT, DAEBUS_ECONN. */
int daebus__ws_dir_disconnect(daebus_ws *ws, const char *id, int code, const char *reason);
/* Cluster-wide broadcast through the remote clients fn accepts: their ids,
 * grouped per replica, get f. Returns: recipients or DAEBUS_ECONN. */
int daebus__ws_dir_send_filter(daebus_ws *ws, daebus_ws_filter_fn *fn, void *user,
                               const ws_frame *f);
/* set_client_data for a client of another replica (or the Redis copy of a
 * local one: local true). Returns: 0, DAEBUS_ENOENT, DAEBUS_ECONN. */
int daebus__ws_dir_set_data(daebus_ws *ws, const char *id, const char *key, const cJSON *value,
                            bool local);
/* get_client_data of a client of another replica. Returns: a copy or NULL. */
cJSON *daebus__ws_dir_get_data(daebus_ws *ws, const char *id, const char *key);
/* Is id connected to a live replica? */
bool daebus__ws_dir_has(daebus_ws *ws, const char *id);

/* ---- Redis commands of the directory (ws_directory.c) ---- */

/* One command being built: arguments borrowed or owned (freed with it).
 * An allocation failure marks it (oom) and later arguments are ignored. */
typedef struct ws_dcmd {
    int argc, cap, nown, owncap, oom;
    int script; /* WS_LUA_* + 1 of an EVALSHA (retried as EVAL on NOSCRIPT), else 0 */
    const char **argv;
    size_t *lens;
    char **own;
} ws_dcmd;

/* Appends s[0..len) (borrowed: it outlives the command). */
void daebus__ws_dcmd_arg(ws_dcmd *c, const char *s, size_t len);
/* Appends the NUL-terminated s (borrowed). */
void daebus__ws_dcmd_str(ws_dcmd *c, const char *s);
/* Appends a + b (copied). */
void daebus__ws_dcmd_cat(ws_dcmd *c, const char *a, const char *b);
/* Appends s, taken (malloc'd; NULL marks the command oom). */
void daebus__ws_dcmd_take(ws_dcmd *c, char *s, size_t len);
/* Appends v as text. */
void daebus__ws_dcmd_num(ws_dcmd *c, double v);
void daebus__ws_dcmd_free(ws_dcmd *c);
/* Runs the n commands as one pipeline (daebus__ws_cluster_run) and frees
 * them. Returns: 0 with replies[0..n) set (free with daebus__ws_replies_free),
 * DAEBUS_ENOMEM, DAEBUS_ECONN. */
int daebus__ws_dcmd_run(ws_cluster *cl, ws_dcmd *cmds, int n, redisReply **replies);
void daebus__ws_replies_free(redisReply **replies, int n);
/* An EVALSHA (EVAL until the scripts are loaded) of one of the directory's
 * scripts (WS_LUA_*) with nkeys keys to come: the caller appends keys then
 * arguments. */
void daebus__ws_dcmd_eval(ws_cluster *cl, ws_dcmd *c, int script, int nkeys);
/* Cluster thread: loads the scripts (SCRIPT LOAD) once, so that later
 * commands send their SHA1 instead of their text. */
void daebus__ws_dir_load_scripts(ws_cluster *cl);
enum {
    WS_LUA_ANNOUNCE = 0,
    WS_LUA_REMOVE,
    WS_LUA_TOUCH,
    WS_LUA_SEND1,
    WS_LUA_VIEW,
    WS_LUA_META,
    WS_LUA_SETDATA,
    WS_LUA_CLAIM,
    WS_LUA_COUNT
};
/* Builds the cluster-wide metadata of a client from its directory hash
 * (an array reply of field, value pairs). Returns: NULL when out of memory. */
cJSON *daebus__ws_dir_metadata(const redisReply *hash, const char *id);

/* ---- local parts used by the receiving side (ws_send.c, ws_client.c) ---- */

/* Queues f for the local client id. Returns: as daebus__ws_enqueue, or
 * DAEBUS_ENOENT. */
int daebus__ws_send_local(daebus_ws *ws, const char *id, ws_frame *f);
/* Queues f for every open local client. Returns: how many. */
int daebus__ws_broadcast_local(daebus_ws *ws, ws_frame *f);
/* Stores value under key in the local client's user data.
 * Returns: 0, DAEBUS_ENOENT, DAEBUS_ENOMEM. */
int daebus__ws_set_data_local(daebus_ws *ws, const char *id, const char *key, const cJSON *value);
/* Starts closing the local client id. Returns: 0 or DAEBUS_ENOENT. */
int daebus__ws_disconnect_local(daebus_ws *ws, const char *id, int code, const char *reason);

#endif
