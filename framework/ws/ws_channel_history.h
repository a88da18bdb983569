/* ws_channel_history.h - the history of a channel in Redis (internal).
 *
 * One Lua script (loaded once with SCRIPT LOAD, run with EVALSHA; a NOSCRIPT
 * answer runs that call again as EVAL) keeps two keys per channel C of
 * service S:
 *   daebus:S:ch:C:hist   a stream: one entry per message, id "0-<offset>"
 *                        (XADD 0-*: the offset is the stream's own id
 *                        sequence, so no separate counter can disagree),
 *                        fields d (the data) and, with an age bound, t
 *                        (Redis time, ms)
 *   daebus:S:ch:C:epoch  the epoch: 16 hex digits, "+" appended while no
 *                        offset was given under it
 * A publish is ONE round trip: XADD (MAXLEN ~ max_count), GET the epoch
 * (made when missing or when the stream was lost), trim by age (XTRIM MINID
 * at the first young entry) when bounded, and PUBLISH an envelope:
 *   {<head>"channel":"C","offset":N,"epoch":"E"}\n<data>
 * where <head> is the caller's JSON members, each followed by a comma (or
 * ""), and <data> the message bytes. docs/channels/history.md gives the
 * epoch rules and the limits.
 *
 * Thread: every function is callable from any thread, except create and
 * destroy (the owner's, once no other thread uses the store).
 */
#ifndef DAEBUS_WS_CHANNEL_HISTORY_H
#define DAEBUS_WS_CHANNEL_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include "daebus/error.h"
#include "redis_pub.h"

#define DAEBUS__CHIST_NAME_MAX      200         /* bytes of a channel name */
#define DAEBUS__CHIST_EPOCH_MAX     40          /* bytes of an epoch */
#define DAEBUS__CHIST_DATA_MAX      (64u << 20) /* bytes of one message */
#define DAEBUS__CHIST_DEFAULT_COUNT 1000        /* max_count when 0 is given */
#define DAEBUS__CHIST_LIMIT_MAX     10000       /* messages of one since() call */
#define DAEBUS__CHIST_BATCH_MAX     256         /* publishes of one batch */
#define DAEBUS__CHIST_HEAD_MAX      512         /* bytes of an envelope head */

typedef struct daebus__chist daebus__chist;

typedef struct daebus__chist_opts {
    daebus__redis_pub *pub; /* borrowed: the caller's pool outlives the store */
    const char *service;    /* the key prefix daebus:<service>:ch: (copied) */
} daebus__chist_opts;

/* The bounds of one channel's history. */
typedef struct daebus__chist_bounds {
    unsigned max_count; /* entries kept, about (MAXLEN ~); 0 = DEFAULT_COUNT */
    double max_age;     /* seconds; entries older are trimmed at the next publish; 0 = no bound */
} daebus__chist_bounds;

/* A channel's position: the last offset given (0: none yet) and its epoch. */
typedef struct daebus__chist_pos {
    unsigned long long offset;
    char epoch[DAEBUS__CHIST_EPOCH_MAX + 1];
} daebus__chist_pos;

/* One publish. */
typedef struct daebus__chist_pub {
    const char *channel;       /* the channel name: 1..NAME_MAX bytes of UTF-8, no control bytes */
    const char *data;          /* the message bytes (not parsed); not NULL */
    size_t len;                /* 0..DATA_MAX */
    const char *redis_channel; /* where the envelope is PUBLISHed; NULL = not published */
    const char *head; /* JSON members put first in the envelope, e.g. "\"k\":\"c\","; NULL = none */
    daebus__chist_bounds bounds;
} daebus__chist_pub;

/* One message read back. data points into the result (see below). */
typedef struct daebus__chist_msg {
    unsigned long long offset;
    const char *data;
    size_t len;
} daebus__chist_msg;

/* The answer of since().
 * Ownership: msgs and every msgs[i].data belong to the result until
 * daebus__chist_result_free (the caller owns the struct itself). */
typedef struct daebus__chist_result {
    bool recovered; /* the epoch is the current one and the history reaches back to since+1 */
    bool more;      /* limit reached: call again with the last offset given */
    daebus__chist_pos now; /* the channel's current position */
    size_t n; /* messages (offsets since+1 .. since+n, in order); 0 when not recovered */
    daebus__chist_msg *msgs;
    void *reply_; /* private: the Redis reply the messages point into */
} daebus__chist_result;

/* Returns: a store (no round trip yet), or NULL (err filled: DAEBUS_EINVAL,
 * DAEBUS_ENOMEM). */
daebus__chist *daebus__chist_create(const daebus__chist_opts *opts, daebus_error *err);

/* Frees. Accepts NULL. The pool is not closed. */
void daebus__chist_destroy(daebus__chist *h);

/* Publishes one message with history in one round trip (the first call of
 * the store adds a SCRIPT LOAD; after Redis lost its scripts, the call is
 * run once more as EVAL).
 * Returns: 0 with *out (may be NULL) set to the message's offset and epoch;
 * DAEBUS_EINVAL (bad name, NULL data, empty redis_channel, head over
 * HEAD_MAX (its JSON is not checked), bad bounds), DAEBUS_ETOOBIG (data over
 * DATA_MAX), DAEBUS_ECONN (Redis unreachable: nothing published; or the
 * connection broke after the send: Redis may have run it), DAEBUS_EREPLY
 * (Redis refused, e.g. OOM: nothing published), DAEBUS_ECLOSED (pool
 * closed). */
int daebus__chist_publish(daebus__chist *h, const daebus__chist_pub *p, daebus__chist_pos *out);

/* The same for n publishes (1..BATCH_MAX) pipelined on one connection: one
 * round trip for all, executed in order. rcs[i] and out[i] (out may be NULL)
 * are each publish's result. Returns: 0 when every publish succeeded, else
 * the first failure's code. */
int daebus__chist_publish_batch(daebus__chist *h, const daebus__chist_pub *p, int n,
                                daebus__chist_pos *out, int *rcs);

/* n messages (1..BATCH_MAX; data[i] of lens[i] bytes) of ONE channel in ONE
 * EVALSHA: p gives the channel, Redis channel, head and bounds (p->data and
 * p->len are not used). The messages get the offsets first->offset,
 * first->offset + 1, ... (nothing comes between them), all under
 * first->epoch, and are PUBLISHed in that order. All or nothing: on an error
 * no message was added, except DAEBUS_ECONN after the send (Redis may have
 * run the script; the caller cannot know).
 * Returns: as daebus__chist_publish. */
int daebus__chist_publish_many(daebus__chist *h, const daebus__chist_pub *p,
                               const char *const *data, const size_t *lens, int n,
                               daebus__chist_pos *first);

/* Reads the messages after offset since of epoch (limit 1..LIMIT_MAX; 0 =
 * LIMIT_MAX) in one round trip. *res is always initialised (zeroed on
 * failure): recovered false means nothing is returned and the client reloads
 * its state. A channel with no epoch yet gets one (so a client may start
 * from "now").
 * Ownership: res->msgs and the data they point to belong to *res until
 * daebus__chist_result_free(res), which the caller calls once after a 0.
 * Returns: 0, DAEBUS_EINVAL, DAEBUS_ECONN, DAEBUS_EREPLY, DAEBUS_ECLOSED,
 * DAEBUS_ENOMEM. */
int daebus__chist_since(daebus__chist *h, const char *channel, unsigned long long since,
                        const char *epoch, unsigned limit, daebus__chist_result *res);

/* Frees what the result holds (the struct stays). Accepts a zeroed result. */
void daebus__chist_result_free(daebus__chist_result *res);

/* The current position of channel (made with a new epoch when missing), for
 * a client that subscribes without since. Returns: as since. */
int daebus__chist_position(daebus__chist *h, const char *channel, daebus__chist_pos *out);

/* Counters since create. */
typedef struct daebus__chist_stats {
    unsigned long long published;    /* publishes that succeeded */
    unsigned long long failed;       /* publishes and reads that failed */
    unsigned long long script_loads; /* the SCRIPT LOAD, plus one EVAL per NOSCRIPT */
} daebus__chist_stats;
void daebus__chist_get_stats(daebus__chist *h, daebus__chist_stats *out);

/* Checks a channel name. Returns: 0 or DAEBUS_EINVAL. */
int daebus__chist_name_check(const char *channel);

#endif
