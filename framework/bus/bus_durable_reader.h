/* bus_durable_reader.h - the durable reader's state, shared by its files
 * (internal to bus_durable*.c).
 *
 *   bus_durable.c          the reader thread: its connection, the loop and
 *                          its periodic jobs, start/stop
 *   bus_durable_batch.c    a batch of entries: checked in one pipelined
 *                          round trip, then run, dead-lettered or dropped
 *   bus_durable_finish.c   completion (any worker thread) and the list of
 *                          the entries this replica runs, refreshed
 *                          (XCLAIM JUSTID) so that no other replica takes
 *                          them while they run
 */
#ifndef DAEBUS_BUS_DURABLE_READER_H
#define DAEBUS_BUS_DURABLE_READER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <hiredis/hiredis.h>
#include "bus_internal.h"
#include "ratelimit.h"
#include "redis_pub.h"

#define DAEBUS__DURABLE_MAX_BATCH 64
#define DAEBUS__DURABLE_ID_LEN    48 /* a stream entry id, with its NUL */

struct daebus__durable {
    daebus_bus *bus;
    char *key, *dead_key, *done_prefix, *consumer;
    double visibility;
    int max_attempts;
    pthread_t thread;
    bool started;
    int wake[2];
    atomic_int stop;
    atomic_int draining;   /* stopping: reads nothing more, still refreshes */
    redisContext *c;       /* the reader's own */
    char sha_complete[48]; /* set once before the first request is taken */
    char sha_dead[48];
    char sha_check[48]; /* loaded again at each connection (reader thread) */
    bool down_logged;
    double next_claim, next_refresh, next_gc; /* the periodic jobs (reader thread) */
    /* An XREADGROUP sent ahead with the checks of a fresh batch (its BLOCK
     * ms; 0: none): the next read takes its reply; no other command is sent
     * meanwhile. */
    int ahead_ms;
    daebus__ratelimit fail_log; /* completions that failed (any thread) */
    /* The entries taken here and not yet finished (submitted to the pool:
     * queued or running), refreshed every visibility/3. Any thread. */
    pthread_mutex_t run_lock;
    char (*running)[DAEBUS__DURABLE_ID_LEN];
    size_t nrunning, caprunning;
};

/* ---- bus_durable.c: the reader's connection (reader thread only) ---- */

/* Runs one command. Returns: the reply, or NULL (the connection is then closed). */
redisReply *daebus__durable_call(daebus__durable *d, int argc, const char **argv,
                                 const size_t *lens, double block_s);
/* Sends the n commands at once and reads the replies of the first nread
 * into out (the others are read later: the read sent ahead).
 * Returns: true, or false (the connection is closed, out holds no reply). */
bool daebus__durable_pipeline(daebus__durable *d, int n, const daebus__redis_cmd *cmds, int nread,
                              redisReply **out);

/* An XREADGROUP of new entries (its argv points into it). */
typedef struct daebus__durable_read {
    char count[16], block[16];
    const char *argv[11];
    int block_ms;
} daebus__durable_read;
/* The read to send ahead with the checks of a fresh batch whose taking
 * entries go to the pool: up to the workers then free, blocking until the
 * next periodic job. Returns: false when none should go (no worker would be
 * free, or a periodic job is due). */
bool daebus__durable_read_ahead(daebus__durable *d, int taking, daebus__durable_read *out);
/* Closes the connection (the reader makes a new one: link_up). */
void daebus__durable_close(daebus__durable *d);
/* An error reply, starting with prefix (NULL: any). */
bool daebus__durable_is_error(const redisReply *r, const char *prefix);
/* Runs a script by its sha (argv[0] and argv[1] are set here), loading it
 * again when Redis lost it (NOSCRIPT). Returns: the reply or NULL. */
redisReply *daebus__durable_script(daebus__durable *d, const char *sha, const char *lua, int argc,
                                   const char **argv);
/* Wall-clock ms (the deadline's clock). */
long long daebus__durable_now_ms(void);

/* ---- bus_durable_batch.c (reader thread) ---- */

/* Checks and hands out the entries of list (an XREADGROUP or XAUTOCLAIM
 * array of [id, [field, value, ...]]); claimed: taken from another consumer
 * (its delivery count is asked), else fresh (attempt 1). Returns: false when
 * the connection was lost (what is left stays pending). */
bool daebus__durable_batch(daebus__durable *d, const redisReply *list, bool claimed);

/* ---- bus_durable_finish.c: the running list ---- */

/* Adds id (before the entry is submitted). Returns: 0 or DAEBUS_ENOMEM.
 * Thread: any. */
int daebus__durable_running_add(daebus__durable *d, const char *id);
/* Removes one occurrence of id, if any. Thread: any. */
void daebus__durable_running_remove(daebus__durable *d, const char *id);
/* Resets the idle time of every running entry (one XCLAIM ... JUSTID) so
 * that XAUTOCLAIM of other replicas leaves them alone. Returns: false when
 * the connection was lost. Thread: the reader. */
bool daebus__durable_refresh(daebus__durable *d);
/* Frees the list and its lock (durable_free). */
void daebus__durable_running_free(daebus__durable *d);

#endif
