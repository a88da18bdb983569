/* redis_line.h - one Redis connection whose commands are sent and answered
 * apart (internal).
 *
 * A thread sends a few commands and gets a ticket at once, without waiting
 * for Redis; later any thread waits for that ticket's replies. Redis answers
 * in order, so while one waiter reads the connection, the replies it reads
 * for other tickets are kept for their waiters (a ring of RING tickets: a
 * ticket waited for after RING newer ones were answered has lost its
 * replies). The exactly-once claims use it to overlap a claim's round trip
 * with the hand-off of its message to a worker.
 *
 * Sending never connects: while the line is down (or found closed by the
 * server while idle: checked before each send with nothing pending)
 * daebus__redis_line_send returns 0 at once (the caller then uses another path) and
 * daebus__redis_line_repair (a blocking connect, at most one try per
 * retry_after) brings it back. A read error or time-out breaks the line: the
 * tickets not yet answered fail.
 *
 * Thread: every function is callable from any thread, except create (the
 * owner's) and destroy (the owner's, once no other thread uses the line).
 */
#ifndef DAEBUS_REDIS_LINE_H
#define DAEBUS_REDIS_LINE_H

#include "redis_conn.h"
#include "redis_pub.h"

#define DAEBUS__REDIS_LINE_MAX_REPLIES 4    /* commands of one ticket */
#define DAEBUS__REDIS_LINE_RING        4096 /* tickets whose replies are kept */

typedef struct daebus__redis_line daebus__redis_line;

/* Returns: a line, not yet connected (daebus__redis_line_repair), or NULL
 * when out of memory. opts->connections is not used. */
daebus__redis_line *daebus__redis_line_create(const daebus__redis_pub_opts *opts);

/* Connects the line if it is down and the last try is retry_after old. */
void daebus__redis_line_repair(daebus__redis_line *l);

/* Writes the n commands (1..MAX_REPLIES) to Redis. Returns: their ticket
 * (> 0), or 0 when nothing was sent (line down or closed, or RING tickets
 * not yet answered). */
unsigned long long daebus__redis_line_send(daebus__redis_line *l, const daebus__redis_cmd *cmds,
                                           int n);

/* Waits for the replies of ticket (from send with n commands) and moves them
 * into replies[0..n-1] (free each with freeReplyObject); replies NULL: waits
 * only (the replies stay for their waiter). Returns: 0, or DAEBUS_ECONN (the
 * line broke or the replies were lost: none given). */
int daebus__redis_line_wait(daebus__redis_line *l, unsigned long long ticket, redisReply **replies,
                            int n);

/* Waits for the replies of ticket, leaving them in place: any number of
 * threads may wait for one ticket (they are freed when its slot is reused).
 * Returns: 0 when answered without an error reply, else DAEBUS_ECONN. */
int daebus__redis_line_wait_shared(daebus__redis_line *l, unsigned long long ticket);

/* Has ticket been answered (or failed)? Never reads: a ticket nobody waits
 * for is answered when a later one is waited for. */
bool daebus__redis_line_answered(daebus__redis_line *l, unsigned long long ticket);

/* Reads the replies already arrived, without blocking (none while another
 * thread reads): a ticket nobody waits for yet gets its answer time (see
 * daebus__redis_line_answered_at) when it came, not when it is waited for.
 * Returns: whether tickets remain unanswered. */
bool daebus__redis_line_pump(daebus__redis_line *l);

/* When ticket's last reply was read (monotonic seconds, as daebus__now_mono)
 * into *at. Returns: false when not answered (yet), failed, or its slot was
 * reused. */
bool daebus__redis_line_answered_at(daebus__redis_line *l, unsigned long long ticket, double *at);

/* The last ticket sent (0: none). */
unsigned long long daebus__redis_line_last(daebus__redis_line *l);

/* Closes the connection: sends fail from now on, waits fail once the
 * connection is gone. */
void daebus__redis_line_close(daebus__redis_line *l);

/* Frees. Accepts NULL. */
void daebus__redis_line_destroy(daebus__redis_line *l);

#endif
