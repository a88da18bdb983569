/* caller_durable.c - the caller's side of durable actions: the XADD, and the
 * XADD again after a lost connection (a Redis failover).
 *
 * A durable request is the pub/sub request envelope, unchanged, added to the
 * service's request stream with its deadline (wall clock, ms since epoch),
 * where the service's replicas read it through the consumer group "daebus"
 * (bus_durable.c). The reply comes back on the caller's reply channel as for
 * pub/sub, so the pending table of caller.c does not know the difference.
 *
 * When the caller's connection is lost (a failover: the new master may lack
 * the last XADDs, which replication had not carried yet), caller.c keeps its
 * durable requests pending and, once subscribed again, queues each one again
 * with one script: if the service's done record exists, the request completed
 * meanwhile and its reply went out while nobody listened (reported, never run
 * again); else XADD again, same request_id and deadline (a copy that is still
 * in the stream is dropped by the service as a duplicate after the first one
 * completes).
 */
#include <stdio.h>
#include <string.h>
#include "daebus/log.h"
#include "bus_internal.h"
#include "clock.h"
#include "redis_pub.h"
#include "redis_sentinel.h"
#include "utf8.h"
#include "caller_internal.h"

#define LOGC "caller"

typedef daebus__caller_pending pending;

/* KEYS[1] the done record, KEYS[2] the request stream; ARGV[1] req,
 * ARGV[2] deadline, ARGV[3] the entry id of the last XADD ("" = unknown),
 * ARGV[4] the caller's reply channel. Returns 0 (completed already: the final
 * reply the done record keeps, if any, is published again on the reply
 * channel, ahead of the barrier), 1 (its entry is still in the stream: it
 * survived the failover; entries leave the stream only when completed) or
 * the id of a new entry (the failover lost it: queued again). */
#define REQUEUE_LUA                                                                                \
    "local done = redis.call('GET', KEYS[1])\n"                                                    \
    "if done then\n"                                                                               \
    "  if done ~= '1' then redis.call('PUBLISH', ARGV[4], done) end\n"                             \
    "  return 0\n"                                                                                 \
    "end\n"                                                                                        \
    "if ARGV[3] ~= '' and #redis.call('XRANGE', KEYS[2], ARGV[3], ARGV[3]) > 0 then return 1 "     \
    "end\n"                                                                                        \
    "return redis.call('XADD', KEYS[2], '*', 'req', ARGV[1], 'deadline', ARGV[2])\n"

void daebus__caller_deadline(double timeout, char *out, size_t size)
{
    snprintf(out, size, "%lld", (long long)((daebus__now_wall() + timeout) * 1000.0));
}

/* The WAIT command after the XADDs: at most half the request's time-out (the
 * rest is for the reply) and half the pool's command time-out (5 s), so the
 * read never gives up first: a WAIT read as a lost connection would queue the
 * request twice. nrep and ms are the caller's buffers (16 and 24 bytes). */
static daebus__redis_cmd wait_cmd(const char **argv, size_t *lens, char *nrep, char *ms,
                                  int wait_replicas, double timeout)
{
    snprintf(nrep, 16, "%d", wait_replicas);
    double wait_s = timeout / 2 < 2.5 ? timeout / 2 : 2.5;
    snprintf(ms, 24, "%lld", (long long)(wait_s * 1000.0) + 1);
    argv[0] = "WAIT";
    argv[1] = nrep;
    argv[2] = ms;
    lens[0] = 4;
    lens[1] = strlen(nrep);
    lens[2] = strlen(ms);
    return (daebus__redis_cmd){3, argv, lens};
}

static void log_wait(const redisReply *r, int wait_replicas, const char *what)
{
    if (r && (r->type != REDIS_REPLY_INTEGER || r->integer < wait_replicas))
        DAEBUS_LOG_DEBUGF(LOGC, "WAIT %d: only %lld replica(s) acknowledged %s", wait_replicas,
                          r->type == REDIS_REPLY_INTEGER ? r->integer : -1LL, what);
}

/* One XADD [+ WAIT] round trip. Returns: as daebus__caller_queue. */
static int queue_once(daebus__redis_pub *pub, const char *key, const char *text,
                      const char *deadline, double timeout, int wait_replicas, char *entry_id,
                      char *why, size_t why_size)
{
    const char *xadd[] = {"XADD", key, "*", "req", text, "deadline", deadline};
    size_t xlen[] = {4, strlen(key), 1, 3, strlen(text), 8, strlen(deadline)};
    const char *wargv[3];
    size_t wlen[3];
    char nrep[16], ms[24];
    daebus__redis_cmd cmds[2] = {{7, xadd, xlen},
                                 wait_cmd(wargv, wlen, nrep, ms, wait_replicas, timeout)};
    redisReply *r[2] = {NULL, NULL};
    int n = wait_replicas > 0 ? 2 : 1;
    int rc = daebus__redis_pub_pipeline(pub, cmds, n, r);
    if (rc != 0)
        return rc == DAEBUS_ECLOSED ? DAEBUS_ECONN : rc;
    if (daebus__redis_reply_demoted(r[0])) {
        /* READONLY: this server is a replica now (a failover); the pool
         * dropped the connection, the next one asks the sentinels. */
        rc = DAEBUS_ECONN;
    } else if (r[0]->type == REDIS_REPLY_ERROR) {
        daebus__utf8_snprintf(why, why_size, "request could not be queued: %.*s",
                              daebus__utf8_prec(r[0]->str, 300), r[0]->str);
        rc = DAEBUS_EIO;
    } else {
        rc = 1;
        if (r[0]->type == REDIS_REPLY_STRING && r[0]->len < DAEBUS__CALLER_ENTRY_ID)
            memcpy(entry_id, r[0]->str, r[0]->len + 1);
        if (n == 2)
            log_wait(r[1], wait_replicas, key);
    }
    for (int i = 0; i < n; i++)
        freeReplyObject(r[i]);
    return rc;
}

int daebus__caller_queue(daebus__redis_pub *pub, const char *service, const char *text,
                         const char *deadline, double timeout, int wait_replicas, char *entry_id,
                         char *why, size_t why_size)
{
    entry_id[0] = '\0';
    char key[300];
    if (snprintf(key, sizeof key, "daebus:%s:requests", service) >= (int)sizeof key) {
        snprintf(why, why_size, "request could not be queued: service name too long");
        return DAEBUS_EIO;
    }
    int rc = queue_once(pub, key, text, deadline, timeout, wait_replicas, entry_id, why, why_size);
    if (rc == DAEBUS_ECONN) /* once more on a fresh connection: same request_id */
        rc = queue_once(pub, key, text, deadline, timeout, wait_replicas, entry_id, why, why_size);
    return rc;
}

/* Argument vectors of one requeue script call. */
typedef struct requeue_cmd {
    char done[300], key[300];
    const char *argv[9];
    size_t lens[9];
} requeue_cmd;

static bool requeue_cmd_make(requeue_cmd *q, const daebus__caller_requeue_item *it)
{
    if (snprintf(q->done, sizeof q->done, "daebus:%s:done:%s", it->service, it->id) >=
            (int)sizeof q->done ||
        snprintf(q->key, sizeof q->key, "daebus:%s:requests", it->service) >= (int)sizeof q->key)
        return false;
    const char *argv[9] = {"EVAL",   REQUEUE_LUA,  "2",          q->done,     q->key,
                           it->text, it->deadline, it->entry_id, it->reply_to};
    for (int i = 0; i < 9; i++) {
        q->argv[i] = argv[i];
        q->lens[i] = strlen(argv[i]);
    }
    return true;
}

/* The script's answer for one item (REQUEUE_LUA). */
static int requeue_result(const redisReply *x, daebus__caller_requeue_item *it)
{
    if (x->type == REDIS_REPLY_INTEGER)
        return x->integer == 0 ? 0 : 2;
    if (x->type == REDIS_REPLY_STRING) {
        if (x->len < DAEBUS__CALLER_ENTRY_ID)
            memcpy(it->entry_id, x->str, x->len + 1);
        return 1;
    }
    return daebus__redis_reply_demoted(x) ? DAEBUS_ECONN : DAEBUS_EIO;
}

/* One pipeline: a script per item; fills each item's result. */
static void requeue_batch(daebus__redis_pub *pub, daebus__caller_requeue_item *items, int n)
{
    requeue_cmd q[DAEBUS__CALLER_REQUEUE_BATCH];
    daebus__redis_cmd cmds[DAEBUS__CALLER_REQUEUE_BATCH];
    int map[DAEBUS__CALLER_REQUEUE_BATCH], m = 0;
    for (int i = 0; i < n; i++) {
        items[i].result = DAEBUS_EIO;
        if (requeue_cmd_make(&q[m], &items[i])) {
            cmds[m] = (daebus__redis_cmd){9, q[m].argv, q[m].lens};
            map[m++] = i;
        }
    }
    redisReply *r[DAEBUS__CALLER_REQUEUE_BATCH];
    if (m == 0)
        return;
    if (daebus__redis_pub_pipeline(pub, cmds, m, r) != 0) {
        for (int j = 0; j < m; j++)
            items[map[j]].result = DAEBUS_ECONN;
        return;
    }
    for (int j = 0; j < m; j++) {
        items[map[j]].result = requeue_result(r[j], &items[map[j]]);
        freeReplyObject(r[j]);
    }
}

void daebus__caller_requeue(daebus__redis_pub *pub, daebus__caller_requeue_item *items, size_t n)
{
    for (size_t i = 0; i < n; i += DAEBUS__CALLER_REQUEUE_BATCH) {
        size_t k = n - i < DAEBUS__CALLER_REQUEUE_BATCH ? n - i : DAEBUS__CALLER_REQUEUE_BATCH;
        requeue_batch(pub, items + i, (int)k);
    }
}

/* ---- queuing again after a lost connection (caller.c's state) ---- */

/* A request the service completed while the caller was away has its reply
 * either on the way (published after the caller subscribed again) or lost
 * (published before). The caller publishes a barrier on its own reply
 * channel after it found the done record: the reply, if it was published
 * after the subscription, comes before the barrier (one connection delivers
 * in order). When the barrier comes back, whatever still waits for it lost
 * its reply. If the barrier cannot be published, the connection is going
 * down: those requests are queued again after the reconnect. */
static void publish_barrier(daebus_caller *c)
{
    char text[64];
    c->barriers++;
    snprintf(text, sizeof text, DAEBUS__CALLER_BARRIER "%llu}", c->barriers);
    daebus__redis_publish(c->pub, c->channel, text, strlen(text));
}

/* The requests behind one barrier, taken out of the table. */
typedef struct behind {
    unsigned long long barrier;
    pending *head;
} behind;

static bool take_behind(void *value, void *ctx)
{
    const pending *p = value;
    return p->barrier && p->barrier <= ((const behind *)ctx)->barrier;
}

static void append_lost(void *value, void *ctx)
{
    pending *p = value;
    behind *b = ctx;
    p->next = b->head;
    b->head = p;
}

/* Barrier n came back: the requests still waiting for it lost their replies. */
void daebus__caller_on_barrier(daebus_caller *c, const char *data)
{
    behind b = {strtoull(data + DAEBUS__CALLER_BARRIER_LEN, NULL, 10), NULL};
    pthread_mutex_lock(&c->lock);
    daebus__hash_take_if(c->pending, take_behind, append_lost, &b);
    pthread_mutex_unlock(&c->lock);
    while (b.head) {
        pending *next = b.head->next;
        atomic_fetch_add(&c->lost_replies, 1);
        daebus__caller_complete(c, b.head, DAEBUS_ECONN, NULL, DAEBUS__CALLER_LOST_REPLY);
        b.head = next;
    }
}

/* Marks items[0..n) after their requeue: queued (requeue again only on a
 * later lost connection), completed meanwhile (its reply may still be on its
 * way: waits for barrier, see requeue_pass), no connection (again later).
 * Returns: how many completed meanwhile. */
static size_t requeue_mark(daebus_caller *c, daebus__caller_requeue_item *items, size_t n,
                           unsigned long long barrier)
{
    size_t lost = 0;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < n; i++) {
        pending *p = items[i].pending;
        if (items[i].result == 1 || items[i].result == 2)
            continue;
        if (items[i].result == DAEBUS_ECONN) {
            p->requeue = true;
            atomic_store(&c->requeue_due, 1);
            continue;
        }
        if (items[i].result == 0) {
            lost++;
            p->barrier = barrier;
            continue;
        }
        p->failed = DAEBUS_EIO;
        free(p->why);
        p->why = strdup("request could not be queued again after a lost connection");
    }
    pthread_mutex_unlock(&c->lock);
    return lost;
}

/* Queues again the durable requests marked requeue (subscriber thread, while
 * subscribed: their replies can come). Only this thread removes entries, so
 * the pointers taken under the lock stay valid without it. */
void daebus__caller_requeue_pass(daebus_caller *c)
{
    atomic_store(&c->requeue_due, 0);
    pthread_mutex_lock(&c->lock);
    size_t total = daebus__hash_count(c->pending), n = 0;
    void **all = total ? malloc(total * sizeof *all) : NULL;
    daebus__caller_requeue_item *items = total ? calloc(total, sizeof *items) : NULL;
    if (total && (!all || !items)) {
        atomic_store(&c->requeue_due, 1);
        total = 0;
    }
    total = total ? daebus__hash_values(c->pending, all, total) : 0;
    for (size_t i = 0; i < total; i++) {
        pending *p = all[i];
        if (!p->requeue || p->failed)
            continue;
        if (!p->text) { /* its sender still holds it: next pass */
            atomic_store(&c->requeue_due, 1);
            continue;
        }
        p->requeue = false;
        items[n++] = (daebus__caller_requeue_item){
            p->service, p->id, p->text, p->wall_deadline, c->channel, p->entry_id, 0, p};
    }
    pthread_mutex_unlock(&c->lock);
    if (n > 0) {
        /* No WAIT here: it would hold this thread, which reads the replies. */
        daebus__caller_requeue(c->pub, items, n);
        size_t lost = requeue_mark(c, items, n, c->barriers + 1), again = 0, kept = 0;
        for (size_t i = 0; i < n; i++) {
            again += items[i].result == 1;
            kept += items[i].result == 2;
        }
        atomic_fetch_add(&c->requeued, again);
        if (kept + lost + again > 0) /* else: no connection yet, tried again later */
            DAEBUS_LOG_INFOF(
                LOGC,
                "after a lost connection, of %zu durable request(s) in flight: %zu still "
                "queued, %zu completed meanwhile, %zu lost by Redis and queued again",
                n, kept, lost, again);
        if (lost)
            publish_barrier(c);
    }
    free(all);
    free(items);
}

/* After a durable request's XADD: gives its text to the pending record (for
 * a requeue after a lost connection) if the record is still pending; with
 * retry (the XADD found no connection) marks it to be queued again.
 * Returns: true when the record took text. */
bool daebus__caller_hand_over(daebus_caller *c, const char *id, pending *p, char *text,
                              const char *entry_id, bool retry)
{
    bool taken = false;
    pthread_mutex_lock(&c->lock);
    if (daebus__hash_find(c->pending, id) == p && !p->failed) {
        snprintf(p->entry_id, sizeof p->entry_id, "%s", entry_id);
        p->text = text;
        taken = true;
        if (retry) {
            p->requeue = true;
            atomic_store(&c->requeue_due, 1);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return taken;
}
