/* redis_sentinel.h - finding the master through Redis Sentinel (internal).
 *
 * daebus__redis_connect() (redis_conn.h) calls daebus__redis_sentinel_connect()
 * for a redis-sentinel:// URL: every connection of the framework asks the
 * sentinels, so a reconnect after a failover finds the new master.
 *
 * Thread: any thread (each call uses its own connections; the last master
 * seen per name, for the log line, is kept under a lock).
 */
#ifndef DAEBUS_REDIS_SENTINEL_H
#define DAEBUS_REDIS_SENTINEL_H

#include <hiredis/hiredis.h>
#include "daebus/bus.h"
#include "redis_url.h"

/* Each sentinel is given at most this long (s) to connect and answer. */
#define DAEBUS__REDIS_SENTINEL_TIMEOUT 0.5

/* A connection to a plain redis:// or unix:// URL (AUTH, SELECT). */
redisContext *daebus__redis_connect_direct(const daebus__redis_url *url, double connect_timeout,
                                           double command_timeout, daebus_error *err);

/* Asks the sentinels of url in order for the master's address, connects to
 * it (AUTH, SELECT) and checks that ROLE says master; a sentinel whose answer
 * is not a master (a demoted one) is passed over for the next. Logs one line
 * when the master's address changed. Returns: a context, or NULL with err
 * filled (DAEBUS_ECONN naming the master and the sentinels asked,
 * DAEBUS_EAUTH, DAEBUS_ENOMEM). */
redisContext *daebus__redis_sentinel_connect(const daebus__redis_url *url, double connect_timeout,
                                             double command_timeout, daebus_error *err);

/* Returns: true when the sentinels name a master other than the address c is
 * connected to (the connection is on a demoted master: drop it); false when
 * it is the master, or neither of the first two sentinels answered. Blocks up
 * to DAEBUS__REDIS_SENTINEL_TIMEOUT per sentinel asked. */
bool daebus__redis_sentinel_moved(const daebus__redis_url *url, const redisContext *c);

/* A counter that grows each time a connect of this process finds that the
 * master of a Sentinel URL changed. A connection made at an older value is
 * on the old master: the pool, the claim line and the subscriber drop it
 * before its next use, so one connection that notices a switch moves all. */
unsigned daebus__redis_sentinel_epoch(void);

/* Returns: true when r is an error reply saying the server cannot take the
 * command as a master now (READONLY: a demoted master; MASTERDOWN, LOADING):
 * the connection must be dropped and made again. */
bool daebus__redis_reply_demoted(const redisReply *r);

#endif
