/* redis_conn.h - Redis connections of the transport layer (internal).
 *
 * Connect with a time-out (TCP or Unix socket), AUTH and SELECT from a parsed
 * URL; a poll-based reply reader that can wait with a time-out and be woken
 * from another thread (hiredis' own blocking read cannot be interrupted and
 * a read time-out kills the context).
 */
#ifndef DAEBUS_REDIS_CONN_H
#define DAEBUS_REDIS_CONN_H

#include "ratelimit.h"
#include <signal.h>
#include <hiredis/hiredis.h>
#include "daebus/bus.h"
#include "redis_url.h"

/* Connects, authenticates and selects the db. connect_timeout (s) bounds the
 * connection; command_timeout (s, 0 = none) is set as the socket's blocking
 * time-out for later commands. Returns: a context, or NULL with err filled
 * (DAEBUS_ECONN, DAEBUS_EAUTH, DAEBUS_ENOMEM). */
redisContext *daebus__redis_connect(const daebus__redis_url *url, double connect_timeout,
                                    double command_timeout, daebus_error *err);

/* s seconds as a struct timeval (hiredis time-outs). */
struct timeval daebus__redis_tv(double s);

/* Waits for one reply: returns 1 with *out set (free with freeReplyObject),
 * 0 when timeout_us (microseconds) passed or wake_fd became readable (wake_fd -1 = none),
 * DAEBUS_ECONN when the connection failed (the context is then dead).
 * With a size guard attached (below), the guard describes the reply returned. */
int daebus__redis_read(redisContext *c, redisReply **out, long timeout_us, int wake_fd);

/* ---- size guard of a subscriber connection ----
 *
 * hiredis reads a bulk string whole into its reader buffer and then copies it
 * into the reply object. A guard replaces the reader's createString so that a
 * string longer than max_string is never copied: the reply gets only its first
 * DAEBUS__REDIS_CUT_KEEP bytes, and the guard keeps its original length and
 * its last DAEBUS__REDIS_CUT_KEEP bytes (enough to find reply_to and
 * request_id, which callers put after the payload). After such a reply the
 * reader's buffer (which did hold the whole message once) is released at
 * once; the first attach fixes glibc's mmap threshold so that such buffers
 * go back to the system when freed (see redis_conn.c). */
#define DAEBUS__REDIS_CUT_KEEP 2048

typedef struct daebus__redis_guard {
    size_t max_string; /* strings longer than this are cut */
    /* The reply last returned by daebus__redis_read: */
    size_t cut_len;                    /* original length of a cut string; 0: none cut */
    char tail[DAEBUS__REDIS_CUT_KEEP]; /* the last bytes of that string */
    size_t tail_len;
    /* The last daebus__redis_read read bytes from the socket (a message still
     * arriving: the connection is alive although no reply is complete). */
    int got_bytes;
    /* private: the reply being read */
    redisReplyObjectFunctions fns;
    const redisReplyObjectFunctions *orig;
    size_t next_cut_len;
    char next_tail[DAEBUS__REDIS_CUT_KEEP];
    size_t next_tail_len;
} daebus__redis_guard;

/* Attaches g (max_string > 0) to c's reader. Ownership: g is borrowed and must
 * outlive c; one guard serves one connection at a time (the reading thread's). */
void daebus__redis_guard_attach(redisContext *c, daebus__redis_guard *g, size_t max_string);

/* The transport's one reconnect policy: capped exponential backoff. */
typedef struct daebus__backoff {
    double initial, max, next;
} daebus__backoff;

void daebus__backoff_init(daebus__backoff *b, double initial, double max);
/* Returns: the delay to wait now; the next one doubles, up to max. */
double daebus__backoff_next(daebus__backoff *b);
/* After a success: the next delay is the initial one again. */
void daebus__backoff_reset(daebus__backoff *b);

/* hiredis writes with write(2): a write to a connection the server closed
 * raises SIGPIPE, which would kill a process that did not ignore it. These
 * block SIGPIPE on the calling thread around a write and discard one raised
 * meanwhile, without touching the process-wide disposition. */
typedef struct daebus__sigpipe_guard {
    sigset_t old;
    int was_pending;
} daebus__sigpipe_guard;
void daebus__sigpipe_block(daebus__sigpipe_guard *g);
void daebus__sigpipe_restore(daebus__sigpipe_guard *g);

/* Sends c's pending output (commands added with redisAppendCommand*) with
 * MSG_NOSIGNAL, so a write to a closed connection fails with EPIPE instead of
 * raising SIGPIPE: no guard needed around it. redisGetReply() then only reads.
 * Returns: 0, or DAEBUS_ECONN with c->err set. */
int daebus__redis_flush(redisContext *c);

/* A count of connections found lost (closed, reset, failed) in this process,
 * to any Redis: a thread that notices one calls daebus__redis_fault_note(), and
 * an idle connection made before the count moved is checked before use (the
 * publisher skips that check on a connection used within the last second
 * while the count stands still). */
void daebus__redis_fault_note(void);
unsigned daebus__redis_faults(void);

/* Blocks SIGPIPE for good on the calling thread (the component's own threads). */
void daebus__sigpipe_block_thread(void);

#endif
