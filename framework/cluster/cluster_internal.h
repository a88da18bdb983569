/* cluster_internal.h - the cluster's state, shared by its files (internal).
 *
 *   cluster.c      ids, life cycle, the heartbeat thread: announces, joins,
 *                  view reads with their markers
 *   cluster_gate.c exactly once: the join protocol as the subscriber sees it,
 *                  epochs, solo or claim mode, claims, leaving
 *
 * Thread: see cluster.h; each field says who writes it.
 */
#ifndef DAEBUS_CLUSTER_INTERNAL_H
#define DAEBUS_CLUSTER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include "cluster.h"
#include "ratelimit.h"

#define DAEBUS__CLUSTER_LOGC "cluster"
#define DAEBUS__CLUSTER_RING 8 /* view results kept (marker n at n % RING) */

typedef enum { LINK_UNKNOWN = 0, LINK_UP, LINK_DOWN } daebus__cluster_link;

/* ---- Redis commands (cluster.c) ---- */

#define DAEBUS__CLUSTER_MAX_ARGS 16
#define DAEBUS__CLUSTER_MAX_PIPE 16

/* One command of up to MAX_ARGS arguments given as C strings. */
typedef struct daebus__cluster_cmd {
    const char *argv[DAEBUS__CLUSTER_MAX_ARGS];
    size_t len[DAEBUS__CLUSTER_MAX_ARGS];
    daebus__redis_cmd cmd;
} daebus__cluster_cmd;

/* Sub-thread-only state of the gate: which own markers and joins it saw, in
 * the order of its one Redis connection. */
typedef struct daebus__cluster_mark {
    unsigned long long n;     /* marker number */
    unsigned long long joins; /* joins seen before it */
    long long at_ms;          /* when it arrived (mono ms) */
    bool set;
} daebus__cluster_mark;

/* The join of the subscription being made (daebus__cluster_join_cmds). */
typedef struct daebus__cluster_sub_join {
    unsigned long long gen;
    long long sent_ms;
    char payload[160], fence[600], ttl[24];
    daebus__cluster_cmd set, publish, read, primary;
} daebus__cluster_sub_join;

/* The live set as read in the MULTI/EXEC of the own join: alone there, the
 * instance is solo from its join on (until a marker or a join says more). */
typedef struct daebus__cluster_join_read {
    bool alone;
    unsigned long long joins; /* joins seen, the own one included */
    long long at_ms;          /* when it arrived (mono ms) */
} daebus__cluster_join_read;

/* Who the primary is at this place of the stream (cluster_primary.c). */
typedef struct daebus__cluster_primary_state {
    char id[DAEBUS__INSTANCE_ID_MAX]; /* "" when none is known */
    bool unknown;                     /* subscribed plainly: no event read yet */
    uint64_t hash;                    /* of id; 0 when none */
    long long offered_ms;             /* the last offer or take-over sent (mono ms) */
    long long idle_ms;                /* the last marker sent */
    unsigned long long idle_ticket;   /* the last idle marker's ticket on the claim line */
} daebus__cluster_primary_state;

typedef struct daebus__cluster_gate_state {
    bool handling;                /* own join echo seen since the last link change */
    bool ever;                    /* handled messages before */
    unsigned long long need;      /* the own join generation that ends the wait */
    unsigned long long serial;    /* epochs seen (any join) */
    unsigned long long joins;     /* join messages seen (any instance) */
    long long anchor_ms;          /* send time of the own join or marker last seen */
    daebus__cluster_mark mark[2]; /* [0] latest own marker, [1] the one before */
    daebus__cluster_sub_join sub_join;
    daebus__cluster_join_read join_read;
    daebus__cluster_primary_state prim;
} daebus__cluster_gate_state;

struct daebus__cluster {
    daebus__redis_pub *pub;
    daebus__redis_line *line; /* claims sent apart (cluster_gate.c); may be NULL */
    char *service, *id;
    char host[72];
    char key[512], set_key[512], channel[512], primary_key[512];
    int pid, http_port;
    double heartbeat;
    bool exactly_once; /* the owner gates messages (cluster_gate.c): joins and markers */
    long long window_ms, set_ttl_ms, started_ms;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping;               /* under lock */
    cJSON *view;                 /* under lock: the last view read */
    bool stale;                  /* under lock */
    daebus__cluster_link link;   /* heartbeat thread only */
    unsigned long long marker_n; /* heartbeat thread only: markers published */

    /* exactly once (cluster_gate.c); times are monotonic ms */
    long long claim_ttl_ms, late_ms, fence_ttl_ms, solo_fresh_ms, announce_limit_ms;
    long long window_ms_take;    /* W: uncovered this long, a backup takes over */
    atomic_ullong join_wanted;   /* any thread: the join generation wanted */
    atomic_ullong join_sent;     /* heartbeat: the last join generation published */
    atomic_llong announce_ok_ms; /* heartbeat: before the last announce that succeeded */
    atomic_llong echo_ok_ms;     /* subscriber thread: send time of the own join last echoed */
    atomic_ullong results[DAEBUS__CLUSTER_RING]; /* heartbeat: n << 1 | solo of view read n */
    atomic_ullong order;       /* heartbeat: size << 32 | rank of this instance in the view */
    atomic_ullong epoch;       /* subscriber thread: the current epoch (0: none) */
    atomic_ullong marker_seen; /* subscriber thread: last own marker seen */
    atomic_int handling;       /* subscriber thread: a copy of gate.handling */
    atomic_int join_read;      /* subscriber thread: the own join came with a read of the set */
    atomic_int taking;         /* 1 until daebus__cluster_leave */
    atomic_int inflight;       /* claims being made */
    atomic_int solo;           /* gauge: the last gate said solo */
    atomic_ullong won, lost, failed, ignored;
    atomic_int is_primary;                  /* subscriber thread: the stream names this instance */
    atomic_ullong primary_taken, takeovers; /* counters */
    atomic_ullong primary_gen;              /* any thread: primary events published */
    atomic_int stepping_down;               /* the owner: a graceful stop began */
    daebus__ratelimit fail_log, gate_log;
    daebus__cluster_gate_state gate; /* subscriber thread only */
};

void daebus__cluster_cmd_set(daebus__cluster_cmd *b, int argc, const char *const *args);

/* Runs the n commands as one pipeline; returns 0 or a negative code.
 * Replies freed unless keep is set. An error reply of Redis counts as a
 * failure. */
int daebus__cluster_run(daebus__cluster *c, daebus__cluster_cmd *b, int n, redisReply **keep);

/* Does the ZRANGE reply r of the live set hold this instance alone? */
bool daebus__cluster_alone_in(const daebus__cluster *c, const redisReply *r);
/* This instance's rank among the ids of the ZRANGE reply r, by name (the
 * same order on every instance): size << 32 | rank, 0 when it is absent. */
unsigned long long daebus__cluster_rank_in(const daebus__cluster *c, const redisReply *r);

/* Monotonic milliseconds. */
long long daebus__cluster_now_ms(void);

/* ---- the gate (cluster_gate.c) ---- */

/* Initialises the exactly-once fields (at create). */
void daebus__cluster_gate_init(daebus__cluster *c);

/* "daebus:<service>:epoch:<16 hex digits>" of epoch into buf. */
void daebus__cluster_fence_key(const daebus__cluster *c, unsigned long long epoch, char *buf,
                               size_t len);

/* The epoch a join opens: a hash of its payload, never 0. */
unsigned long long daebus__cluster_epoch_of(const char *join_payload);

/* Asks the heartbeat thread for a join (generation + 1) unless one is
 * pending already. Thread: any. */
void daebus__cluster_request_join(daebus__cluster *c);

/* ---- the primary (cluster_primary.c) ---- */

void daebus__cluster_primary_init(daebus__cluster *c);
/* A "primary <id|-> <gen> <ms>" or "progress ..." message. Returns: true
 * when p was filled (a progress marker). Subscriber thread. */
bool daebus__cluster_primary_message(daebus__cluster *c, const char *data,
                                     daebus__cluster_progress *p);
/* A plain subscription: the primary is unknown until an event names it
 * (meanwhile every message waits for a marker, as a backup's). */
void daebus__cluster_primary_unknown(daebus__cluster *c);
/* The primary as read with the own join (GET of the primary key). */
void daebus__cluster_primary_joined(daebus__cluster *c, const redisReply *key);
/* Steps down (a graceful stop) when this instance is the primary: publishes
 * "primary -" and waits up to timeout s for its subscriber to read it. */
void daebus__cluster_primary_leave(daebus__cluster *c, double timeout);
/* The GET of the primary key for the join's MULTI/EXEC. */
void daebus__cluster_primary_read_cmd(daebus__cluster *c, daebus__cluster_cmd *cmd);

#endif
