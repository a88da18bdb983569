/* redis_conn.h - Redis connections for the bus and the caller (internal).
 *
 * Connect with a time-out (TCP or Unix socket), AUTH and SELECT from a parsed
 * URL; a poll-based reply reader that can wait with a time-out and be woken
 * from another thread (hiredis' own blocking read cannot be interrupted and
 * a read time-out kills the context).
 */
#ifndef DAEBUS_REDIS_CONN_H
#define DAEBUS_REDIS_CONN_H

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

/* A description of url without its password, for log lines. */
void daebus__redis_url_describe(const daebus_redis_url *url, char *buf, size_t len);

#endif
