/* caller_internal.h - the bus caller's state, shared by caller.c and
 * caller_durable.c (internal).
 */
#ifndef DAEBUS_CALLER_INTERNAL_H
#define DAEBUS_CALLER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include "daebus/caller.h"
#include "hash.h"
#include "ratelimit.h"
#include "redis_pub.h"
#include "redis_sub.h"
#include "bus_internal.h"

/* Durable requests waiting to be queued again: tried at most this often. */
#define DAEBUS__CALLER_REQUEUE_EVERY 0.25
/* The barrier a caller publishes on its own reply channel (requeue_pass). */
#define DAEBUS__CALLER_BARRIER     "{\"daebus_caller_barrier\":"
#define DAEBUS__CALLER_BARRIER_LEN (sizeof DAEBUS__CALLER_BARRIER - 1)
#define DAEBUS__CALLER_LOST_REPLY                                                                  \
    "request completed by the service while the caller was reconnecting (Redis failover); its "    \
    "reply was lost (not run again)"

typedef struct daebus__caller_pending {
    char id[40];
    double deadline;
    int failed; /* 0, or the completion's status: DAEBUS_ECONN (publish or XADD failed),
                   DAEBUS_ENOLISTENER (nobody subscribed), DAEBUS_EIO (XADD refused) */
    char *why;  /* the completion's message when failed (malloc'd; NULL = default) */
    bool durable;
    bool requeue;  /* durable: queue it again once connected (lost connection, failed XADD) */
    char *text;    /* durable: the request, handed over by the sender after its XADD */
    char *service; /* durable */
    char wall_deadline[24];                 /* durable: ms since epoch, as queued */
    char entry_id[DAEBUS__CALLER_ENTRY_ID]; /* durable: its stream entry ("" = unknown) */
    unsigned long long barrier; /* durable, found completed by a requeue: fails as "reply
                                   lost" when barrier <barrier> comes back, unless its
                                   reply comes first */
    daebus_caller_done_fn *done;
    daebus_caller_progress_fn *progress;
    void *user;
    struct daebus__caller_pending *next; /* in a list taken out of the table */
} daebus__caller_pending;

typedef struct daebus__caller_listener {
    char *channel;
    daebus_caller_message_fn *fn;
    void *user;
    struct daebus__caller_listener *next;
} daebus__caller_listener;

struct daebus_caller {
    char channel[160];
    double default_timeout, connect_timeout;
    daebus__redis_pub *pub;
    daebus__redis_pub *wait_pub; /* durable_wait_replicas: the XADD + WAIT, on a connection
                                    of its own (a WAIT holds it up to 2.5 s while no replica
                                    answers; other requests do not wait behind it) */
    daebus__redis_sub *sub;

    pthread_mutex_t lock;  /* the pending table */
    daebus__hash *pending; /* request_id -> pending */
    atomic_int connected;
    atomic_int stopping;

    pthread_mutex_t listen_lock; /* listeners; held while one runs */
    daebus__caller_listener *listeners;

    daebus__ratelimit big_log; /* "reply too large" lines (subscriber thread only) */
    double next_scan;          /* next expiry scan (subscriber thread only) */
    size_t max_message;
    atomic_ullong too_large;
    bool durable;      /* requests go to the service's stream (XADD), not PUBLISH */
    int wait_replicas; /* durable: WAIT n after each XADD */
    atomic_ullong queued;
    atomic_int requeue_due; /* some pending durable request waits to be queued again */
    double next_requeue;    /* subscriber thread only */
    atomic_ullong requeued, lost_replies;
    unsigned long long barriers; /* barriers published (subscriber thread only) */
};

/* Calls p's completion, then frees p (it left the table). Subscriber thread,
 * or destroy after the join. */
void daebus__caller_complete(daebus_caller *c, daebus__caller_pending *p, int status,
                             const cJSON *payload, const char *msg);
/* Frees p and its strings (not its why). */
void daebus__caller_pending_free(daebus__caller_pending *p);

/* ---- caller_durable.c ---- */

/* Queues again the durable requests marked requeue. Subscriber thread. */
void daebus__caller_requeue_pass(daebus_caller *c);
/* A barrier (DAEBUS__CALLER_BARRIER...) came back on the reply channel. Subscriber thread. */
void daebus__caller_on_barrier(daebus_caller *c, const char *data);
/* After a durable request's XADD: gives text (and entry_id, its stream entry,
 * "" if unknown) to the pending record p if it is
 * still pending (with retry: marks it to be queued again). Returns: true when
 * p took text. Thread: any. */
bool daebus__caller_hand_over(daebus_caller *c, const char *id, daebus__caller_pending *p,
                              char *text, const char *entry_id, bool retry);

#endif
