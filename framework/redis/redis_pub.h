/* redis_pub.h - the publisher pool of the Redis transport (internal).
 *
 * A few plain connections, chosen round-robin, each used by one thread at a
 * time. Writes are batched (flat combining): a thread that finds its
 * connection in use queues its commands and sleeps; the next thread to own
 * the connection writes every queued job in one write, reads all their
 * replies in order and hands each job its own (a job's commands stay
 * together and in order). A command lost with the connection fails exactly
 * the jobs whose replies were not read (DAEBUS_ECONN).
 * Before each use a connection is checked (an idle connection that shows as
 * readable or hung up was closed by the server) and replaced lazily; while
 * Redis is down, a connection that failed to connect is not retried for
 * retry_after seconds, so callers fail fast instead of waiting a connect
 * time-out each. Writes are sent with MSG_NOSIGNAL (daebus__redis_flush).
 *
 * Thread: daebus__redis_publish*, daebus__redis_pub_pipeline,
 * daebus__redis_pub_collect, daebus__redis_pub_counts and
 * daebus__redis_pub_close are callable from any thread; create/connect/destroy
 * from the owner's. A thread blocked in a call while the pool is closed
 * returns DAEBUS_ECLOSED (or its result, when its batch was already running).
 */
#ifndef DAEBUS_REDIS_PUB_H
#define DAEBUS_REDIS_PUB_H

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>
#include "redis_conn.h"

typedef struct daebus__redis_pub daebus__redis_pub;

typedef struct daebus__redis_pub_opts {
    const daebus__redis_url *url; /* copied */
    int connections;              /* 1..64; 0 = 1 */
    double connect_timeout;       /* 0 = 2 */
    double command_timeout;       /* bound of one PUBLISH; 0 = 5 */
    double retry_after;           /* fail fast this long after a failed connect; 0 = never */
    const char *log_component;    /* for the debug line of a failed connect; NULL = "redis" */
} daebus__redis_pub_opts;

/* Returns: an open pool (connections are made on first use), or NULL. */
daebus__redis_pub *daebus__redis_pub_create(const daebus__redis_pub_opts *opts);

/* Connects the first connection now. Returns: 0 or a negative code (err filled). */
int daebus__redis_pub_connect(daebus__redis_pub *p, daebus_error *err);

/* PUBLISH data (len bytes) on channel. Returns: the number of receivers
 * (>= 0), DAEBUS_ECONN, or DAEBUS_ECLOSED once closed. */
int daebus__redis_publish(daebus__redis_pub *p, const char *channel, const char *data, size_t len);

/* The same for obj serialised as compact JSON. Returns: as
 * daebus__redis_publish, or DAEBUS_ENOMEM. */
int daebus__redis_publish_json(daebus__redis_pub *p, const char *channel, const cJSON *obj);

/* One command of a pipeline: argc arguments, each argvlen[i] bytes. */
typedef struct daebus__redis_cmd {
    int argc;
    const char **argv;
    const size_t *argvlen;
} daebus__redis_cmd;

/* Sends the n commands on one connection of the pool and reads their replies
 * into replies[0..n-1] (an error reply of Redis is a reply: check its type).
 * Returns: 0 with every reply set (free each with freeReplyObject),
 * DAEBUS_ECONN (no reply kept; the connection is dropped), or DAEBUS_ECLOSED
 * once closed. */
int daebus__redis_pub_pipeline(daebus__redis_pub *p, const daebus__redis_cmd *cmds, int n,
                               redisReply **replies);

/* The completion of daebus__redis_publish_async: result is the number of
 * receivers (>= 0) or DAEBUS_ECONN (connection lost before the reply was
 * read, or an error reply). Thread: whichever thread reads the reply (a later
 * publish or pipeline on the same connection, or daebus__redis_pub_collect);
 * it must be short and must not call into this pool. */
typedef void daebus__redis_pub_sent_fn(void *arg, int result);

/* PUBLISH without waiting for its reply: written (batched with what else is
 * queued on the connection) before this returns; fn is called once with the
 * reply when some thread reads it (see daebus__redis_pub_collect; else the
 * next command on that connection reads it, within about a second at most or
 * after a few hundred such PUBLISHes). Every PUBLISH on one channel this way
 * goes on the same connection of the pool: those one thread makes on a
 * channel reach Redis in order (a blocking call, on any connection, may
 * overtake them).
 * Ownership: channel and data are copied before this returns; arg is
 * borrowed until fn runs.
 * Returns: 0 (fn will be called exactly once, close included), or
 * DAEBUS_ECONN / DAEBUS_ECLOSED / DAEBUS_ENOMEM (fn is never called). */
int daebus__redis_publish_async(daebus__redis_pub *p, const char *channel, const char *data,
                                size_t len, daebus__redis_pub_sent_fn *fn, void *arg);

/* The same, but only appended to the first connection's output, not written:
 * the next command on that connection or daebus__redis_pub_flush writes it
 * (with whatever else was held: one write for a burst). For a thread that
 * publishes several times in a row and then flushes (the caller's
 * subscriber thread, requests made in reply callbacks). Returns: as
 * daebus__redis_publish_async. */
int daebus__redis_publish_later(daebus__redis_pub *p, const char *channel, const char *data,
                                size_t len, daebus__redis_pub_sent_fn *fn, void *arg);
/* Is output held by daebus__redis_publish_later not written yet? */
bool daebus__redis_pub_held(const daebus__redis_pub *p);
/* Writes what daebus__redis_publish_later held. Returns: 0, or DAEBUS_ECONN
 * (the connection is dropped: the held PUBLISHes complete with DAEBUS_ECONN). */
int daebus__redis_pub_flush(daebus__redis_pub *p);

/* Replies of asynchronous PUBLISHes not read yet (all connections). */
int daebus__redis_pub_unread(const daebus__redis_pub *p);

/* Reads the unread replies of asynchronous PUBLISHes on the connections not
 * in use now, calling their functions on this thread: with wait, all of
 * them (each read bounded by the command time-out); else those already
 * received (one non-blocking read per connection). Returns: how many are
 * still unread. */
int daebus__redis_pub_collect(daebus__redis_pub *p, bool wait);

/* Counts since create: writes (one per batch) and the commands they carried. */
void daebus__redis_pub_counts(const daebus__redis_pub *p, unsigned long long *writes,
                              unsigned long long *commands);

/* Closes every connection; later publishes return DAEBUS_ECLOSED. Waits for
 * a batch being written or read to end; unread asynchronous replies complete
 * with DAEBUS_ECONN. */
void daebus__redis_pub_close(daebus__redis_pub *p);
int daebus__redis_pub_is_open(const daebus__redis_pub *p);
/* Closes and frees. Accepts NULL. */
void daebus__redis_pub_destroy(daebus__redis_pub *p);

#endif
