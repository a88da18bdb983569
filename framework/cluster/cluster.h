/* cluster.h - the instances of a service in Redis (internal).
 *
 * Each running app with a bus announces itself as one instance: a hash
 * daebus:<service>:instance:<id> (id, host, pid, started_at, last_seen,
 * http_port, heartbeat) with a TTL of one window, and a member of the sorted
 * set daebus:<service>:instances scored by the end of its window (Redis time,
 * ms). The window is 2.5 heartbeats; readers drop members whose window ended
 * and refresh their view twice per heartbeat, so an instance that stops
 * heartbeating (kill -9) leaves every view within 3 heartbeats. A graceful
 * stop deletes its own hash and member at once. docs/replicas.md lists the keys.
 *
 * Thread: create/stop/destroy on the owner's thread (the bus component's
 * start, stop and destroy); the heartbeat runs on a thread of its own;
 * daebus__cluster_instances from any thread.
 */
#ifndef DAEBUS_CLUSTER_H
#define DAEBUS_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "redis_line.h"
#include "redis_pub.h"
#include "redis_sub.h"

typedef struct daebus__cluster daebus__cluster;

typedef struct daebus__cluster_opts {
    daebus__redis_pub *pub;   /* borrowed: open until daebus__cluster_stop returns */
    const char *service;      /* copied */
    const char *instance_id;  /* copied */
    int http_port;            /* the port this instance serves HTTP on; 0 = none */
    double heartbeat;         /* seconds; <= 0 = 1 */
    bool exactly_once;        /* the owner gates a subscriber with daebus__cluster_gate: the
                                heartbeat publishes joins and markers on the cluster channel */
    daebus__redis_line *line; /* borrowed, may be NULL: claims sent apart
                                 (daebus__cluster_claim_start), open while claims are made */
} daebus__cluster_opts;

/* Creates the cluster view and starts the heartbeat thread (the first
 * announce happens on that thread). Returns: NULL when out of memory or
 * when the thread cannot start. */
daebus__cluster *daebus__cluster_start(const daebus__cluster_opts *o);

/* Stops the heartbeat thread and deletes this instance's keys (one attempt;
 * with Redis gone they expire on their own). The view is then empty.
 * Accepts NULL. */
void daebus__cluster_stop(daebus__cluster *c);

/* Stops if still running, and frees. Accepts NULL. */
void daebus__cluster_destroy(daebus__cluster *c);

/* Returns: a copy of the last view (an array of objects: id, host, pid,
 * started_at, last_seen, http_port, heartbeat, self, stale), or NULL when out
 * of memory. stale is true in every entry while Redis cannot be reached (the
 * last view read is kept). Ownership: the caller frees it with cJSON_Delete. */
cJSON *daebus__cluster_instances(daebus__cluster *c);

/* The public face of an instance id, made by the app: "<host>-<pid>-<8 hex
 * digits>", host being the host name with characters outside [A-Za-z0-9._]
 * replaced by '_' and cut to 64 bytes. buf holds at least
 * DAEBUS__INSTANCE_ID_MAX bytes. */
#define DAEBUS__INSTANCE_ID_MAX 96
void daebus__cluster_make_id(char *buf, size_t len);

/* ---- exactly once (cluster_gate.c; docs/replicas.md "Actions exactly once") ----
 *
 * The owner of a subscriber (the bus) subscribes the cluster channel on the
 * same connection as the channels whose messages must be handled by one
 * instance only ("claimed" channels), feeds it the cluster channel's
 * messages and the connection's ups and downs, and asks the gate about each
 * message of a claimed channel, in arrival order. The gate says whether
 * to ignore it (joining, leaving), handle it without a claim (solo: provably
 * alone) or claim it first. A claim names the message by the epoch it
 * arrived in (the last join on the cluster channel before it) and its
 * position on its channel since that join: every instance that handles
 * messages saw the same join at the same place of the same stream, so they
 * all give one message one name. */

/* "daebus:<service>:cluster" into buf (at least DAEBUS__CLUSTER_CHANNEL_MAX). */
#define DAEBUS__CLUSTER_CHANNEL_MAX 600
void daebus__cluster_channel(const char *service, char *buf, size_t len);

typedef enum daebus__gate {
    DAEBUS__GATE_IGNORE = 0, /* not handled here (joining, leaving, announces failing) */
    DAEBUS__GATE_SOLO,       /* alone: handle without a claim */
    DAEBUS__GATE_CLAIM,      /* claim, handle only when won */
    DAEBUS__GATE_PRIMARY     /* the service channel's primary: handle once its progress
                                marker is acknowledged in time (cluster_primary.c) */
} daebus__gate;

/* What a claim needs to know of its message, filled by the gate. */
typedef struct daebus__cluster_ticket {
    uint64_t epoch; /* the epoch it arrived in */
    unsigned long long
        serial;          /* this instance's count of epochs: positions restart when it changes */
    long long anchor_ms; /* send time (monotonic ms) of the last own join or marker before it */
    unsigned rank, size; /* this instance among the size of the last view, by name (size 0:
                            unknown); a preference, never a condition of safety */
    uint64_t primary;    /* hash of the primary's id at this message (0: none;
                            DAEBUS__CLUSTER_PRIMARY_UNKNOWN: not known here) */
    bool is_primary;     /* ... which is this instance */
} daebus__cluster_ticket;

/* A progress marker of a primary (cluster_primary.c): the messages of the
 * service channel it was primary for, in epoch, at positions < upto, are
 * its own, except the skipped ones (left to claims). */
#define DAEBUS__CLUSTER_SKIPS           32
#define DAEBUS__CLUSTER_PRIMARY_UNKNOWN UINT64_MAX
typedef struct daebus__cluster_progress {
    uint64_t primary; /* hash of the sender's id */
    bool own;         /* sent by this instance */
    uint64_t epoch;
    unsigned long long upto;
    int nskip;
    unsigned long long skip[DAEBUS__CLUSTER_SKIPS];
} daebus__cluster_progress;

typedef enum daebus__cluster_ev {
    DAEBUS__CLUSTER_EV_NONE = 0,
    DAEBUS__CLUSTER_EV_JOINED,  /* this instance's own join came back: it handles from here on */
    DAEBUS__CLUSTER_EV_PROGRESS /* a primary's progress marker (p filled) */
} daebus__cluster_ev;

/* A message of the cluster channel (p: filled for a progress marker).
 * Thread: the subscriber thread. */
daebus__cluster_ev daebus__cluster_on_message(daebus__cluster *c, const char *data, size_t len,
                                              daebus__cluster_progress *p);
/* The subscriber connection is up (subscribed again) or down. after: the
 * replies of daebus__cluster_join_cmds's after[] commands when the
 * subscription ran them (this instance handles from the first message on),
 * else NULL: it waits for a join of its own published by the heartbeat.
 * Thread: the subscriber thread. */
void daebus__cluster_on_link(daebus__cluster *c, bool up, const redisReply *const *after,
                             int nafter);
/* The owner's subscriber hook (redis_sub.h, on_subscribe): the commands run
 * in one MULTI/EXEC with the subscription. The epoch's key, the claimed
 * channels' SUBSCRIBEs, this instance's join, and the cluster channel's
 * SUBSCRIBE last: the join opens an epoch exactly where the connection's
 * stream begins, for this instance and every other, so nothing is ignored
 * while joining. Waits up to a heartbeat (2 s at most) for this instance's
 * announce to be fresh (the others must see it when they see the join).
 * Returns: true with a filled, false for a plain subscription (no exactly once, or
 * no announce yet: then claimed messages wait for a join the heartbeat
 * publishes). Thread: the subscriber thread. */
bool daebus__cluster_join_cmds(daebus__cluster *c, daebus__redis_atomic *a);
/* For a message of a claimed channel, in arrival order. c may be NULL (not
 * started yet: ignore). Thread: the subscriber thread. */
daebus__gate daebus__cluster_gate(daebus__cluster *c, daebus__cluster_ticket *t);

/* Claims the message at position pos of a claimed channel (scope: NULL for
 * the service channel, else a short tag of the channel). Returns: 1 won (handle
 * it), 0 lost (another instance has it), DAEBUS_ESTATE (leaving: not taken),
 * DAEBUS_ETIMEDOUT (too late to claim safely), DAEBUS_ECONN (Redis error or
 * the epoch's key lost). Thread: callable from any thread. */
int daebus__cluster_claim(daebus__cluster *c, const daebus__cluster_ticket *t, const char *scope,
                          unsigned long long pos);

/* Several claims in one pipeline (rc of each: as daebus__cluster_claim).
 * Thread: callable from any thread. */
typedef struct daebus__cluster_claim_req {
    const daebus__cluster_ticket *t;
    const char *scope; /* NULL or "" for the service channel */
    unsigned long long pos;
    int rc; /* out */
} daebus__cluster_claim_req;
void daebus__cluster_claim_many(daebus__cluster *c, daebus__cluster_claim_req *q, size_t n);

/* Sends the claim of (t, scope, pos) on the line without waiting for Redis:
 * the same checks as daebus__cluster_claim first. Returns: a ticket for
 * daebus__cluster_claim_finish, or 0 when nothing was sent (no line, line
 * down, or a check refused it: claim with daebus__cluster_claim, which says
 * why). Thread: callable from any thread. */
unsigned long long daebus__cluster_claim_start(daebus__cluster *c, const daebus__cluster_ticket *t,
                                               const char *scope, unsigned long long pos);
/* The result of a claim started (ticket > 0): as daebus__cluster_claim.
 * Every ticket is finished once (a won claim that is then not handled is a
 * message lost). Thread: callable from any thread. */
int daebus__cluster_claim_finish(daebus__cluster *c, unsigned long long ticket);
/* Connects the claim line if it is down (bounded; at most every 0.25 s).
 * Thread: callable from any thread. */
void daebus__cluster_claim_repair(daebus__cluster *c);

/* Stops taking messages (the gate ignores, claims return DAEBUS_ESTATE) and
 * waits up to timeout seconds for the claims in flight. Accepts NULL. */
void daebus__cluster_leave(daebus__cluster *c, double timeout);

/* Does this instance handle messages now (its join came back)? Accepts
 * NULL (false). Thread: callable from any thread. */
bool daebus__cluster_handles(daebus__cluster *c);

/* Waits up to timeout seconds until this instance handles messages (its join
 * came back and a first view was read). Returns: true when it does. */
bool daebus__cluster_wait_ready(daebus__cluster *c, double timeout);

/* ---- the primary (cluster_primary.c; docs/replicas.md "The primary") ----
 *
 * One instance of a service may be its primary: it takes the messages of
 * the service channel without a claim each, publishing a progress marker
 * per read batch; the others keep those messages unread and drop what the
 * markers cover. What stays uncovered for the window (daebus__cluster_window_ms)
 * a backup takes over: it makes itself primary and claims it. */

/* The take-over window W in ms: max(1 s, 1.5 heartbeats). */
long long daebus__cluster_window_ms(const daebus__cluster *c);
/* Publishes "progress <id> <epoch> <upto> <ms> [skips]" on the claim line.
 * Returns: its ticket, 0 when not sent (then claim). Thread: the subscriber
 * thread. */
unsigned long long daebus__cluster_progress_send(daebus__cluster *c, uint64_t epoch,
                                                 unsigned long long upto,
                                                 const unsigned long long *skip, int nskip);
/* A marker without a batch, so that the primary's anchor stays fresh while
 * idle: at most every W/4, on the claim line, one unanswered at a time.
 * Thread: the subscriber thread. */
void daebus__cluster_progress_idle(daebus__cluster *c);
/* A worker's decision for a message gated PRIMARY whose marker went with
 * ticket: 1 take it (the marker's answer came within 3W/4 of the anchor,
 * however long the message then waited for a worker), else the result of
 * a claim of it (as daebus__cluster_claim). Thread: callable from any thread. */
int daebus__cluster_progress_take(daebus__cluster *c, const daebus__cluster_ticket *t,
                                  unsigned long long ticket, unsigned long long pos);
/* The primary reads the markers' answers already arrived (without
 * blocking), so that each one's answer time is when it came, even while every
 * worker is busy. Returns: whether this primary has markers not yet
 * answered. Thread: the subscriber thread. */
bool daebus__cluster_progress_pump(daebus__cluster *c);
/* Waits until the marker sent with ticket is answered (or failed); the
 * takes of its messages then decide at once. Thread: any. */
void daebus__cluster_progress_wait(daebus__cluster *c, unsigned long long ticket);
/* The subscriber's tick: with no primary known, the first instance by name
 * offers itself (at most once a heartbeat). Thread: the subscriber thread. */
void daebus__cluster_primary_tick(daebus__cluster *c);
/* Messages were left uncovered past the window: this instance makes itself
 * primary (at most once a window). Thread: the subscriber thread. */
void daebus__cluster_take_over(daebus__cluster *c);

typedef struct daebus__cluster_claim_stats {
    uint64_t won, lost, failed, ignored;
    uint64_t primary_taken, takeovers;
    int solo, primary;
} daebus__cluster_claim_stats;
/* Accepts NULL (all zero). Thread: callable from any thread. */
void daebus__cluster_claim_stats_get(daebus__cluster *c, daebus__cluster_claim_stats *out);

#endif
