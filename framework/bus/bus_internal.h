/* bus_internal.h - the bus component's state, shared by its three files (internal).
 *
 *   bus.c          the component: start/stop, the transport callbacks, stats,
 *                  broadcasts, the bus's own caller
 *   bus_dispatch.c the subscriber side: a message becomes a request for a
 *                  handler on the worker pool (or an error reply at once)
 *   bus_request.c  the request object, its reference count and its replies
 *   bus_store.c    daebus_bus_redis*: Redis commands on the publisher pool
 *   bus_durable.c  durable actions: the request stream's reader (bus_durable.h)
 *
 * The bus is a protocol layer on the Redis transport (framework/redis/): it
 * owns one subscriber (redis_sub.h) and one publisher pool (redis_pub.h).
 */
#ifndef DAEBUS_BUS_INTERNAL_H
#define DAEBUS_BUS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include "daebus/bus.h"
#include "daebus/caller.h"
#include "bus_durable.h"
#include "bus_parse.h"
#include "cluster.h"
#include "component.h"
#include "redis_line.h"
#include "redis_pub.h"
#include "redis_sub.h"
#include "worker_pool.h"

#define DAEBUS__BUS_LOGC "bus"

/* A position counter of a claimed channel: messages since the epoch serial
 * (subscriber thread only). */
typedef struct daebus__bus_pos {
    unsigned long long serial, next;
} daebus__bus_pos;

/* How a message is taken (bus_claim.c): without a claim (SOLO: alone, or a
 * LISTEN without .once) or after winning its claim (CLAIM). */
typedef struct daebus__bus_claim {
    daebus__gate mode;
    daebus__cluster_ticket t;
    unsigned long long pos;
    char scope[24];            /* "" (service channel) or "l:<hash of the channel>" */
    bool counted;              /* a late claim's message: its copy was counted on arrival */
    unsigned long long ticket; /* > 0: its claim was sent (daebus__cluster_claim_start) */
} daebus__bus_claim;

/* Claims made later (bus_claim.c), in due order. */
typedef struct daebus__bus_deferred daebus__bus_deferred;
typedef struct daebus__bus_defer_list {
    daebus__bus_deferred *head, **tail;
    size_t n;
} daebus__bus_defer_list;

/* The primary's side and the backups' side (bus_primary.c). */
#define DAEBUS__BUS_HELD 64
typedef struct daebus__bus_held {
    daebus__job_fn *fn, *drop;
    void *arg;
    daebus__bus_claim *claim; /* inside arg */
    bool request;             /* arg is a daebus_bus_request */
} daebus__bus_held;
typedef struct daebus__bus_kept daebus__bus_kept;
typedef struct daebus__bus_primary {
    /* the primary: the batch read since its last marker */
    daebus__bus_held held[DAEBUS__BUS_HELD];
    int nheld;
    unsigned long long skip[DAEBUS__CLUSTER_SKIPS];
    int nskip;
    bool dirty;     /* positions gated as primary since the last marker */
    bool unmarked;  /* a marker could not be sent and its positions did not fit in
                       the skips: no more markers in this epoch (the others take over) */
    uint64_t epoch; /* ... in this epoch */
    unsigned long long upto;
    bool more;  /* the last message read had another right behind it */
    bool early; /* the message being read had its marker sent before its parse */
    unsigned long long early_ticket;
    double marked_at;    /* the last marker sent (mono s) */
    long long pumped_ms; /* the last look at the markers' answers (mono ms) */
    bool pumping;        /* markers were left unanswered then */
    /* a backup: messages kept unread until a marker covers them or W passes */
    daebus__bus_kept *head, **tail;
    size_t n;
    bool backup; /* the last message of the service channel was kept so */
    int pace;    /* the subscriber's pacing set (ms) */
} daebus__bus_primary;

typedef struct daebus__gateway daebus__gateway;

struct daebus_bus {
    daebus__component base;
    daebus_bus_options opts;
    daebus_app *app;
    const char *service; /* owned by the app */
    daebus__redis_url url;
    char where[320];

    const daebus__handler *actions, *listens;
    size_t nactions, nlistens;

    daebus__pool *pool;
    daebus__redis_pub *pub;
    daebus__redis_line *line; /* the preferred replica's claims, sent apart (gated only) */
    daebus__redis_sub *sub;
    /* This instance in Redis; stopped with the bus, freed with it. Atomic: HTTP
     * threads may read it (daebus_app_instances) while the bus starts. */
    _Atomic(daebus__cluster *) cluster;
    atomic_int stopping;
    daebus__ratelimit big_log;   /* "message too large" lines (subscriber thread only) */
    daebus__ratelimit bad_log;   /* "malformed message" lines (subscriber thread only) */
    daebus__ratelimit full_log;  /* "worker queue full" lines */
    daebus__ratelimit store_log; /* bus_store.c: failed commands (any thread) */

    /* Exactly once (bus_claim.c): the service channel and LISTEN .once
     * channels are claimed when gated; positions are subscriber-thread only. */
    bool gated;
    char cluster_channel[DAEBUS__CLUSTER_CHANNEL_MAX];
    daebus__bus_pos svc_pos;
    daebus__bus_pos *listen_pos;     /* one per entry of listens */
    daebus__bus_defer_list later[2]; /* not preferred; last resort (subscriber thread) */
    daebus__bus_primary prim;        /* subscriber thread */

    pthread_mutex_t state_lock;
    pthread_cond_t state_cond; /* connected changed; live requests changed */
    atomic_size_t batched;     /* the primary's jobs inside batch jobs not yet run */
    atomic_int subscribed;     /* the subscriber is up */
    atomic_int connected;      /* ... and takes messages (joined, when gated) */
    size_t live;               /* requests not yet freed (under state_lock) */

    pthread_mutex_t caller_lock;
    daebus_caller *caller;
    daebus__gateway *gateway; /* bus_gateway.c; NULL: off */

    atomic_ullong requests_received, requests_handled, errors, unknown_actions, malformed,
        too_large, overloads, replies_sent, listener_messages, broadcasts, reconnects,
        store_commands, store_errors, covered;

    /* Durable actions (bus_durable.c): the stream reader and its counters. */
    daebus__durable *durable;
    atomic_ullong durable_taken, durable_completed, durable_retried, durable_expired,
        durable_dead_lettered, durable_duplicates;
};

struct daebus_bus_request {
    atomic_int refs;
    daebus_bus *bus;
    int is_action;
    daebus__bus_envelope env;
    char *channel;       /* arrival channel */
    char *reply_channel; /* NULL: cannot be answered */
    daebus_action_fn *afn;
    daebus_listen_fn *lfn;
    void *user;
    int handler_rc;
    daebus__bus_claim claim;
    pthread_mutex_t lock;
    int final_sent;
    int attempt;                  /* 1, or the delivery count of a durable request */
    daebus__durable_job *durable; /* NULL: a pub/sub request */
};

/* ---- bus.c ---- */

/* Returns: the bus's instance in the cluster (NULL before start). */
daebus__cluster *daebus__bus_cluster(const daebus_bus *bus);
/* This instance's join came back: it takes messages (subscriber thread). */
void daebus__bus_joined(daebus_bus *bus);

/* ---- bus_request.c ---- */

/* Publishes on the bus's pool. Returns: receivers >= 0, DAEBUS_ECONN,
 * DAEBUS_ECLOSED. */
int daebus__bus_publish(daebus_bus *bus, const char *channel, const char *data, size_t len);
/* Sends {"error": text} as a final reply to channel (no request object). */
int daebus__bus_send_error(daebus_bus *bus, const char *channel, const cJSON *request_id,
                           const char *text);
/* A request taking over env (zeroed). Returns: NULL when out of memory. */
daebus_bus_request *daebus__bus_request_new(daebus_bus *bus, daebus__bus_envelope *env,
                                            const char *channel, const char *reply_channel);
/* Claims the final reply. Returns: 1 if the caller may send it, 0 if one was sent. */
int daebus__bus_claim_final(daebus_bus_request *r);
/* An automatic error reply (fmt_action has one %s: the action), when r is an
 * answerable action with no final reply yet. */
void daebus__bus_auto_error(daebus_bus_request *r, const char *fmt_action);
/* Worker pool jobs: run the handler / drop at shutdown, then release. */
void daebus__bus_run_action(void *arg);
void daebus__bus_run_listen(void *arg);
void daebus__bus_drop_request(void *arg);

/* ---- bus_gateway.c ---- */

/* Frees the gateway (NULL accepted). Call after the bus's caller is gone. */
void daebus__gateway_free(daebus__gateway *gw);

/* ---- caller.c ---- */

/* Replies to a bus caller that were refused as too large (bus.c adds those of
 * the bus's own caller to its too_large counter). Thread: any. */
unsigned long long daebus__caller_too_large(const daebus_caller *c);

/* ---- caller_durable.c ---- */

/* Queues one durable request (docs/protocol.md "Durable actions"): XADD
 * daebus:<service>:requests * req <text> deadline <deadline> (ms since epoch,
 * from daebus__caller_deadline), then WAIT wait_replicas (at most timeout / 2,
 * 2.5 s) when > 0. An XADD lost with the connection, or refused with READONLY
 * (a demoted master), is sent once more on a fresh connection (same text, so
 * same request_id: the service's done record stops a second run).
 * entry_id (DAEBUS__CALLER_ENTRY_ID bytes) receives the entry's id ("" if unknown).
 * Returns: 1 queued; DAEBUS_ECONN (no connection, twice); DAEBUS_EIO (Redis
 * refused the XADD; why gets "request could not be queued: <error>").
 * Thread: any. */
int daebus__caller_queue(daebus__redis_pub *pub, const char *service, const char *text,
                         const char *deadline, double timeout, int wait_replicas, char *entry_id,
                         char *why, size_t why_size);

/* Prints now + timeout as ms since the epoch (a durable request's deadline). */
void daebus__caller_deadline(double timeout, char *out, size_t size);

#define DAEBUS__CALLER_REQUEUE_BATCH 64
#define DAEBUS__CALLER_ENTRY_ID      48

/* A durable request to queue again after a lost connection. */
typedef struct daebus__caller_requeue_item {
    const char *service, *id, *text, *deadline;
    const char *reply_to; /* the caller's reply channel */
    char *entry_id;       /* in: its entry ("" = unknown); out: the new one when queued again */
    int result;           /* out: 0 completed already (done record: its reply went out, maybe
                       while the caller was away); 1 queued again (the failover lost
                       it); 2 still in the stream; DAEBUS_ECONN (try later); DAEBUS_EIO */
    void *pending;
} daebus__caller_requeue_item;

/* For each item, one script: done record exists -> 0 (and the reply it
 * keeps, if any, published again on reply_to); its entry still in the
 * stream -> 2; else XADD again, same request_id and deadline -> 1; pipelined
 * by DAEBUS__CALLER_REQUEUE_BATCH. Thread: any. */
void daebus__caller_requeue(daebus__redis_pub *pub, daebus__caller_requeue_item *items, size_t n);

/* ---- bus_claim.c ---- */

/* Asks the cluster's gate about a message of a claimed channel (subscriber
 * thread, arrival order); channel is NULL for the service channel. Returns:
 * false to ignore it, else true with cl filled. */
bool daebus__bus_gate(daebus_bus *bus, daebus__bus_pos *p, const char *channel,
                      daebus__bus_claim *cl);
/* Takes the message of cl: true without a claim (SOLO) or when its claim
 * (sent already, or made now) was won. Thread: a worker. */
bool daebus__bus_take(daebus_bus *bus, daebus__bus_claim *cl);
/* A message that will not run: the answer of its claim, if sent, is read
 * (and the message is not handled). Thread: any. */
void daebus__bus_abandon(daebus_bus *bus, daebus__bus_claim *cl);
/* An error reply made without a request object (malformed, unknown action,
 * too large): sent at once when solo, else by a worker after winning the
 * claim (weak: claimed late, so that a replica able to do better wins).
 * Ownership: request_id is copied. Thread: the subscriber thread. */
void daebus__bus_error_once(daebus_bus *bus, daebus__bus_claim *cl, const char *channel,
                            const cJSON *request_id, const char *text, bool weak);
/* A full worker queue of a solo replica: answered "overloaded". */
void daebus__bus_overloaded(daebus_bus *bus, daebus_bus_request *r);
/* Runs fn(arg) on the pool for a claimed message (cl: its claim, inside
 * arg): at once when this replica is the preferred one (fn claims), else
 * after a claim made later on this thread. drop(arg) when it never runs.
 * request: arg is a daebus_bus_request. Thread: the subscriber thread. */
void daebus__bus_submit_claimed(daebus_bus *bus, daebus__bus_claim *cl, daebus__job_fn *fn,
                                daebus__job_fn *drop, void *arg, bool request, bool weak);
/* Is this replica the preferred one for cl (it claims at once)? */
bool daebus__bus_preferred(const daebus__bus_claim *cl);
/* Sends the claim of cl now (cl->ticket) when this replica is the preferred
 * one and its queue has room; a job that takes cl then finishes it (its
 * worker waits for the answer), else daebus__bus_abandon. Returns: whether
 * cl has a ticket. Thread: the subscriber thread. */
bool daebus__bus_claim_early(daebus_bus *bus, daebus__bus_claim *cl);
/* Keeps a copy of a message this replica is not preferred for, unread (not
 * parsed), and claims it later (weak: WEAK_S, else DEFER_S); only a won
 * claim reads it (daebus__bus_take_unread). listen: -1 for the service
 * channel, else the entry of listens. Thread: the subscriber thread. */
void daebus__bus_defer_unread(daebus_bus *bus, const daebus__bus_claim *cl, int listen,
                              const char *data, size_t len, bool weak);
/* The subscriber's tick: runs the deferred claims that are due. Returns: ms
 * to the next one, or -1. */
int daebus__bus_on_tick(void *user, bool idle);
/* Drops every deferred claim (after the subscriber stopped). */
void daebus__bus_defer_drop_all(daebus_bus *bus);

/* Claims a message of the service channel kept unread at once (a primary
 * skipped it, or it stayed uncovered past the window). Thread: the
 * subscriber thread. */
void daebus__bus_claim_unread_now(daebus_bus *bus, const daebus__bus_claim *cl, const char *data,
                                  size_t len);

/* ---- bus_primary.c ---- */

/* A message of the service channel gated PRIMARY: noted for the next marker. */
void daebus__bus_primary_gated(daebus_bus *bus, const daebus__bus_claim *cl);
/* The job of a message gated PRIMARY: held until its batch's marker is sent
 * (false: skipped instead, weak (an unknown action); cl is CLAIM now and the
 * caller claims it the usual way; a deep queue is skipped at the gate:
 * daebus__bus_primary_skip_busy). */
bool daebus__bus_primary_hold(daebus_bus *bus, daebus__bus_claim *cl, daebus__job_fn *fn,
                              daebus__job_fn *drop, void *arg, bool request, bool weak);
/* A message gated as primary while the worker queue is a round deep: listed
 * as skipped in the next marker (true; it is claimed as when no primary is
 * known), else false. */
bool daebus__bus_primary_skip_busy(daebus_bus *bus, const daebus__bus_claim *cl);
/* Under load, is the next marker held back (one per short gap)? */
bool daebus__bus_primary_paced(daebus_bus *bus);
/* Sends the marker of the batch read and hands its jobs to the workers. */
void daebus__bus_primary_flush(daebus_bus *bus);
/* The last message of a batch, gated PRIMARY: on, before it is parsed, sends
 * the batch's marker (its job goes to a worker at once); off after it. */
void daebus__bus_primary_early(daebus_bus *bus, bool on);
/* A backup keeps a message of the service channel unread until a marker of
 * its primary covers it or the window passes (then it is claimed). */
void daebus__bus_primary_keep(daebus_bus *bus, const daebus__bus_claim *cl, const char *data,
                              size_t len);
/* A progress marker read: drops what it covers, claims what it skipped. */
void daebus__bus_on_progress(daebus_bus *bus, const daebus__cluster_progress *p);
/* The subscriber's tick for the primary protocol. Returns: microseconds to
 * the next thing due, or -1. */
int daebus__bus_primary_tick(daebus_bus *bus, bool idle);
/* Drops what the backup kept (after the subscriber stopped); a held batch
 * is flushed first (it was taken). */
void daebus__bus_primary_drop_all(daebus_bus *bus);

/* ---- bus_dispatch.c ---- */

/* A message kept unread whose claim this replica won (cl: solo now): read
 * and handled as a solo replica does. Thread: the subscriber thread. */
void daebus__bus_take_unread(daebus_bus *bus, daebus__bus_claim *cl, int listen, const char *data,
                             size_t len);
/* The handler registered last for key, or NULL. */
const daebus__handler *daebus__bus_find_handler(const daebus__handler *h, size_t n,
                                                const char *key);
/* The subscriber's message callback (user: the bus). */
void daebus__bus_on_message(void *user, const daebus__redis_msg *msg);

#endif
