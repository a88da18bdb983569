/* redis_conn.h - Redis connections for the bus and the caller (internal).
 *
 * Connect with a time-out (TCP or Unix socket), AUTH and SELECT from a parsed
 * URL; a poll-based reply reader that can wait with a time-out and be woken
 * from another thread (hiredis' own blocking read cannot be interrupted and
 * a read time-out kills the context).
 */
#ifndef DAEBUS_REDIS_CONN_H
#define DAEBUS_REDIS_CONN_H

#include <signal.h>
#include <hiredis/hiredis.h>
#include "daebus/bus.h"

/* Connects, authenticates and selects the db. connect_timeout (s) bounds the
 * connection; command_timeout (s, 0 = none) is set as the socket's blocking
 * time-out for later commands. Returns: a context, or NULL with err filled
 * (DAEBUS_ECONN, DAEBUS_EAUTH, DAEBUS_ENOMEM). */
redisContext *daebus__redis_connect(const daebus_redis_url *url, double connect_timeout,
                                    double command_timeout, daebus_error *err);

/* Waits for one reply: returns 1 with *out set (free with freeReplyObject),
 * 0 when timeout_ms passed or wake_fd became readable (wake_fd -1 = none),
 * DAEBUS_ECONN when the connection failed (the context is then dead). */
int daebus__redis_read(redisContext *c, redisReply **out, int timeout_ms, int wake_fd);

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

/* Blocks SIGPIPE for good on the calling thread (the component's own threads). */
void daebus__sigpipe_block_thread(void);

/* Copies the URL text into buf (len bytes, truncated) with its password
 * replaced by "***" (userinfo and a password= query parameter), so that error
 * messages can quote what was given without leaking the secret. */
void daebus__redis_url_redact(const char *url, char *buf, size_t len);

/* A description of url without its password, for log lines. */
void daebus__redis_url_describe(const daebus_redis_url *url, char *buf, size_t len);

#endif
