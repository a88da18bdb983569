/* redis_sub.h - the subscriber connection of the Redis transport (internal).
 *
 * One subscriber = one Redis connection in subscribe mode, read by a thread
 * of its own. The owner (the bus, the caller, later replicas and channels)
 * gives callbacks with a void *user; the thread delivers every pub/sub
 * message as channel + data + len and reports connection state changes.
 * Channels may be added and removed from any thread; after a lost connection
 * the thread reconnects with the transport's one backoff policy
 * (daebus__backoff) and subscribes again to the whole set.
 *
 * Health: an idle connection is PINGed after health_idle seconds; no traffic
 * within health_timeout after that counts as a lost connection. Bytes of a
 * message still arriving count as traffic.
 *
 * Size guard: with max_message > 0, a message longer than that is never
 * copied (redis_conn.h): it is delivered with msg->cut_len set, its first
 * DAEBUS__REDIS_CUT_KEEP bytes in data and its last ones in tail.
 *
 * The reader role: readers threads (opts.readers, default 1) take turns
 * reading the connection, one at a time ("the subscriber thread" below is
 * whichever holds the role; what it owns passes on with the role, under the
 * subscriber's lock). Two ways around a thread hand-off use it
 * (leader/followers):
 *   - daebus__redis_sub_run_here(): from on_message, the holder keeps the
 *     message's job and runs it on its own thread once the read is over,
 *     after handing the role on: with more already read, to a waiting
 *     reader thread woken at once (its wake-up then off the job's path);
 *     with nothing else to read, lazily: the role is left free and the
 *     "relief" (one waiting reader thread) takes it once the job has run
 *     200 us (its timer, set at most once per ms, looks then): a quick job
 *     takes it back with no wake-up and no system call, a longer one finds
 *     the relief reading within 0.2-1.2 ms. A job that blocks holds one
 *     reader thread, never the reading;
 *   - park and borrow: after a read for which can_park says there is nothing
 *     to watch, the role is left free ("parked"; idle) instead of a thread
 *     sitting in ppoll. A thread that expects the next message to be for it
 *     may take it (daebus__redis_sub_borrow) and read for itself; any wake
 *     (daebus__redis_sub_wake, _watch, a change of the channel set) or
 *     poll_ms without a read brings a reader thread back, and a borrower
 *     gives the role back as soon as one is wanted.
 *
 * Thread: callbacks run on the subscriber thread (the role holder: a reader
 * thread, a borrower in daebus__redis_sub_borrow_read, or, for the first
 * connect of daebus__redis_sub_start(connect_now), the starting thread);
 * every other function is callable from any thread except
 * create/start/stop/destroy.
 */
#ifndef DAEBUS_REDIS_SUB_H
#define DAEBUS_REDIS_SUB_H

#include <stdbool.h>
#include <stddef.h>
#include "redis_conn.h"
#include "redis_pub.h"

typedef struct daebus__redis_sub daebus__redis_sub;

/* One pub/sub message. Ownership: borrowed for the callback only. */
typedef struct daebus__redis_msg {
    const char *channel;
    const char *data; /* NUL-terminated; len bytes (the first ones only when cut) */
    size_t len;
    size_t cut_len;   /* 0, or the real length of a message over max_message */
    const char *tail; /* cut: its last tail_len bytes */
    size_t tail_len;
    bool more; /* more bytes were read with it: another message follows at once */
} daebus__redis_msg;

typedef enum daebus__redis_state {
    DAEBUS__REDIS_UP,     /* connected and subscribed (again when reconnect) */
    DAEBUS__REDIS_DOWN,   /* lost the connection; why says how */
    DAEBUS__REDIS_RETRY,  /* a connection attempt failed; why says how */
    DAEBUS__REDIS_STOPPED /* the thread is ending */
} daebus__redis_state;

/* Connection state. reconnect: UP after an earlier UP; RETRY after an
 * earlier failure or loss (the first failure of a series is 0); next_try:
 * seconds until the next attempt (RETRY). why: NULL or a message. */
typedef struct daebus__redis_event {
    daebus__redis_state state;
    bool reconnect;
    double next_try;
    const char *why;
    size_t nchannels; /* channels subscribed (UP) */
    /* UP after an atomic subscription (on_subscribe): the replies of the
     * hook's after[] commands (borrowed for the callback); else NULL. */
    const redisReply *const *after;
    int nafter;
} daebus__redis_event;

typedef void daebus__redis_msg_fn(void *user, const daebus__redis_msg *msg);
typedef void daebus__redis_state_fn(void *user, const daebus__redis_event *ev);
/* Called after every read while connected; idle: the read returned no
 * message (time-out or wake-up). Returns: the longest wait of the next read
 * in microseconds, or < 0 for the subscriber's poll_ms. */
typedef int daebus__redis_tick_fn(void *user, bool idle);
/* After a read: is there nothing to watch until the owner says so (it then
 * calls daebus__redis_sub_watch or _wake)? true parks the role (above). */
typedef bool daebus__redis_park_fn(void *user);
/* A job run by a reader thread after it handed the role on (run_here). */
typedef void daebus__redis_job_fn(void *arg);

/* Atomic subscription. Each connection asks on_subscribe for commands; given
 * some, the channel set is subscribed inside one MULTI/EXEC, one SUBSCRIBE
 * per channel, in this order: before[], the set's channels (but last), after[],
 * then last. No command of another client runs among them, so what after[]
 * publishes has exactly the subscribed channels' messages behind it.
 * after[] must not publish to a channel subscribed before it (a message to
 * itself inside EXEC spoils the reply's shape): subscribing that channel as
 * last skips the connection's own publication. The strings are the hook's,
 * read before the next event. A Redis that refuses SUBSCRIBE inside MULTI
 * fails that attempt with a clear why; later connections subscribe plainly. */
#define DAEBUS__REDIS_ATOMIC_MAX 4
typedef struct daebus__redis_atomic {
    daebus__redis_cmd before[DAEBUS__REDIS_ATOMIC_MAX];
    int nbefore;
    daebus__redis_cmd after[DAEBUS__REDIS_ATOMIC_MAX];
    int nafter;
    const char *last; /* NULL or a channel of the set */
} daebus__redis_atomic;
/* Returns: true with a filled, false for a plain SUBSCRIBE. */
typedef bool daebus__redis_atomic_fn(void *user, daebus__redis_atomic *a);

typedef struct daebus__redis_sub_opts {
    const daebus__redis_url *url; /* copied */
    double connect_timeout;       /* connect + SUBSCRIBE confirmation; 0 = 2 */
    double reconnect_initial;     /* backoff after a failure; 0 = 0.1 */
    double reconnect_max;         /* backoff cap; 0 = 5 */
    double health_idle;           /* PING after this much silence; 0 = 10 */
    double health_timeout;        /* no answer this long = lost; 0 = health_idle */
    size_t max_message;           /* size guard; 0 = none */
    int poll_ms;                  /* longest read wait; 0 = 500 */
    daebus__redis_msg_fn *on_message;
    daebus__redis_state_fn *on_state;      /* may be NULL */
    daebus__redis_tick_fn *on_tick;        /* may be NULL */
    daebus__redis_atomic_fn *on_subscribe; /* may be NULL */
    daebus__redis_park_fn *can_park;       /* may be NULL: never parks */
    int readers;                           /* reader threads; 0 = 1 */
    void *user;
} daebus__redis_sub_opts;

/* Returns: a stopped subscriber with no channel, or NULL (out of memory). */
daebus__redis_sub *daebus__redis_sub_create(const daebus__redis_sub_opts *opts);

/* Adds channel to the set (a no-op when present); while running, the thread
 * subscribes on its live connection. Returns: a ticket for
 * daebus__redis_sub_wait (> 0), 0 when present already, DAEBUS_ENOMEM. */
long daebus__redis_sub_subscribe(daebus__redis_sub *s, const char *channel);
/* Removes channel from the set and unsubscribes. Returns: a ticket, 0 when
 * absent. */
long daebus__redis_sub_unsubscribe(daebus__redis_sub *s, const char *channel);
/* Waits until Redis confirmed the (un)subscription of ticket, on the
 * monotonic clock. Returns: 0, DAEBUS_ETIMEDOUT, DAEBUS_ECLOSED (stopped). */
int daebus__redis_sub_wait(daebus__redis_sub *s, long ticket, double timeout);
size_t daebus__redis_sub_count(daebus__redis_sub *s);

/* Starts the thread. connect_now: connect and subscribe on this thread first
 * and fail when that fails (err filled); else the thread connects, retrying.
 * Returns: 0 or a negative code. */
int daebus__redis_sub_start(daebus__redis_sub *s, bool connect_now, daebus_error *err);
/* Wakes the thread (its tick runs soon). */
void daebus__redis_sub_wake(daebus__redis_sub *s);
/* Reads at most every ms milliseconds (0: at once): a reader that only keeps
 * messages for later reads them in batches, at a fraction of the cost. */
void daebus__redis_sub_pace(daebus__redis_sub *s, int ms);
/* Subscriber thread only (on_message, on_tick): has the connection nothing
 * left to read right now (no byte buffered, none waiting in the socket)? */
bool daebus__redis_sub_drained(const daebus__redis_sub *s);
bool daebus__redis_sub_connected(const daebus__redis_sub *s);
/* "redis://host:port/db" without the password, for log lines. */
const char *daebus__redis_sub_where(const daebus__redis_sub *s);
/* Subscriber thread only (on_message): after this read, hand the role to a
 * waiting reader thread and run fn(arg) on this one. Returns: false (fn not
 * taken) when no reader thread waits, a job is taken already, the caller is
 * not a reader thread holding the role, or stopping. A taken job always
 * runs, stop included (stop joins the reader threads, so it waits for it). */
bool daebus__redis_sub_run_here(daebus__redis_sub *s, daebus__redis_job_fn *fn, void *arg);

/* The owner has something to watch again: brings a reader thread back if
 * the role is parked or lent (a no-op, no system call, otherwise). Call it
 * after the change that can_park reads. */
void daebus__redis_sub_watch(daebus__redis_sub *s);
/* Takes the parked role for the calling thread. Returns: true when it now
 * reads (then daebus__redis_sub_borrow_read until done, and
 * daebus__redis_sub_give_back exactly once); false when the role is not
 * parked (a reader thread reads for it). */
bool daebus__redis_sub_borrow(daebus__redis_sub *s);
/* Borrower: one read of at most timeout_us microseconds; a message goes to
 * on_message on this thread. Returns: 1 (a message delivered), 0 (none),
 * DAEBUS_ECONN (the connection failed: a reader thread reports it),
 * DAEBUS_ECLOSED (a reader thread is wanted: give the role back; a message
 * read meanwhile is kept for it). No on_tick, health or Sentinel check: the
 * reader threads do those. */
int daebus__redis_sub_borrow_read(daebus__redis_sub *s, long timeout_us);
/* Borrower: ends the loan. need_reader: a reader thread reads at once (the
 * borrower stops before its message came); else the role stays parked. */
void daebus__redis_sub_give_back(daebus__redis_sub *s, bool need_reader);

/* Counters (tests, profiling): jobs run by the reader thread that read them
 * (run_here), messages read by a borrower. Either pointer may be NULL. */
void daebus__redis_sub_role_counts(daebus__redis_sub *s, unsigned long *ran_here,
                                   unsigned long *lent_reads);

/* Stops and joins the thread and closes the connection (callbacks have all
 * returned). Accepts a subscriber never started. */
void daebus__redis_sub_stop(daebus__redis_sub *s);
void daebus__redis_sub_destroy(daebus__redis_sub *s);

#endif
