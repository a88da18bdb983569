/* redis_pub.c - the publisher pool (see redis_pub.h).
 *
 * Batched writes (issue 18): each connection has one owner at a time (busy),
 * not a mutex held across the round trip. A thread that finds its connection
 * busy queues its job and sleeps on its own condition variable; when the owner
 * is done it hands the connection to the first queued thread, which takes the
 * whole queue as one batch: every command of every job appended, one write,
 * then the replies read in order and handed back job by job (flat combining).
 * Redis answers the commands of one connection in order, so a job's replies
 * are its own and every job's commands stay contiguous (a MULTI ... EXEC of a
 * durable pipeline is not split).
 *
 * A PUBLISH sent with daebus__redis_publish_async is written without waiting
 * for its reply: its entry joins the connection's FIFO of unread replies,
 * which the next owner that reads (a pipeline, a blocking publish, or
 * daebus__redis_pub_collect) reads first, calling the entry's function.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "daebus/json.h"
#include "daebus/log.h"
#include "clock.h"
#include "redis_pub.h"
#include "redis_sentinel.h"

struct pubjob;

/* A written command (or pipeline) whose replies are not read yet, in write
 * order: a pipeline job of the batch being run (its entry is part of the
 * job), or an asynchronous PUBLISH (malloc'd, fn called once its reply is
 * read or lost). */
typedef struct unread {
    struct pubjob *job; /* pipeline; NULL: fn/arg */
    daebus__redis_pub_sent_fn *fn;
    void *arg;
    struct unread *next;
} unread;

/* A job of a batch: a pipeline (cmds, replies; its thread waits for them) or
 * an asynchronous PUBLISH (fn; its thread waits only for the write). Lives on
 * its thread's stack until done. */
typedef struct pubjob {
    const daebus__redis_cmd *cmds;
    int n;
    redisReply **replies;
    daebus__redis_pub_sent_fn *fn;
    void *arg;
    unread *entry; /* the owner's: its unread entry (own for a pipeline, else malloc'd) */
    unread own;
    int rc;
    bool later; /* asynchronous, appended but not written: see daebus__redis_pub_flush */
    bool done;  /* rc is final: the thread may return */
    bool lead;  /* handed the connection: the thread runs the next batch */
    pthread_cond_t cond;
    struct pubjob *next;
} pubjob;

typedef struct pubconn {
    pthread_mutex_t lock; /* guards busy, the queue and the unread count */
    pthread_cond_t idle;  /* busy went false (close waits for it) */
    bool busy;            /* owned by a thread: only that thread touches the fields below */
    pubjob *qhead, *qtail;
    /* the owner's: */
    redisContext *ctx;
    double last_fail; /* monotonic time of the last failed connect */
    unsigned epoch;   /* daebus__redis_sentinel_epoch() when ctx was made */
    double last_ok;   /* monotonic time ctx was last known good (connected, checked, used) */
    unsigned faults;  /* daebus__redis_faults() then */
    unread *uhead, **utail;
    int n_unread;
    atomic_bool held; /* commands appended, not written yet (daebus__redis_publish_later) */
} pubconn;

/* A connection used successfully this recently, with no connection lost in the
 * process since, is used without the liveness poll (one system call less per
 * PUBLISH). Longer idle, or after any lost connection, it is polled first. */
#define PUB_RECHECK_AFTER 1.0
/* Unread asynchronous replies kept per connection at most: beyond, the next
 * owner reads them before it writes (bounds the memory of a caller that
 * never collects). */
#define PUB_UNREAD_MAX 256

struct daebus__redis_pub {
    daebus__redis_pub_opts o;
    daebus__redis_url url;
    pubconn *conns;
    int n;
    atomic_uint rr;
    atomic_int open;
    atomic_int unread;              /* entries unread, all connections */
    atomic_ullong writes, commands; /* flushes and the commands they carried */
};

/* Is an idle connection still usable? A closed peer shows as readable (EOF)
 * or hung up. */
static int alive(redisContext *ctx)
{
    if (!ctx || ctx->err)
        return 0;
    struct pollfd p = {.fd = ctx->fd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

daebus__redis_pub *daebus__redis_pub_create(const daebus__redis_pub_opts *opts)
{
    daebus__redis_pub *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->o = *opts;
    p->url = *opts->url;
    p->o.url = &p->url;
    if (!p->o.log_component)
        p->o.log_component = "redis";
    if (p->o.connect_timeout <= 0)
        p->o.connect_timeout = 2.0;
    if (p->o.command_timeout <= 0)
        p->o.command_timeout = 5.0;
    p->n = opts->connections < 1 ? 1 : opts->connections > 64 ? 64 : opts->connections;
    p->conns = calloc((size_t)p->n, sizeof *p->conns);
    if (!p->conns) {
        free(p);
        return NULL;
    }
    for (int i = 0; i < p->n; i++) {
        pthread_mutex_init(&p->conns[i].lock, NULL);
        pthread_cond_init(&p->conns[i].idle, NULL);
        p->conns[i].utail = &p->conns[i].uhead;
    }
    atomic_store(&p->open, 1);
    return p;
}

/* ---- ownership of a connection ---- */

/* Makes the calling thread pc's owner (lock held on entry and return):
 * at once when pc is free, else after queueing j and waiting. Returns: the
 * batch to run (j first when free; the whole queue, j in it, when handed
 * over), or NULL when j was done meanwhile by another owner. */
static pubjob *own(pubconn *pc, pubjob *j)
{
    j->next = NULL;
    if (!pc->busy) {
        pc->busy = true;
        return j;
    }
    pthread_cond_init(&j->cond, NULL);
    if (pc->qtail)
        pc->qtail->next = j;
    else
        pc->qhead = j;
    pc->qtail = j;
    while (!j->done && !j->lead)
        pthread_cond_wait(&j->cond, &pc->lock);
    pthread_cond_destroy(&j->cond);
    if (j->done)
        return NULL;
    pubjob *batch = pc->qhead; /* j is first: a hand-over goes to the head */
    pc->qhead = pc->qtail = NULL;
    return batch;
}

/* Ends the owner's turn (lock held): the first queued thread takes over, or
 * pc is free. */
static void release(pubconn *pc)
{
    if (pc->qhead) {
        pc->qhead->lead = true;
        pthread_cond_signal(&pc->qhead->cond);
        return;
    }
    pc->busy = false;
    pthread_cond_broadcast(&pc->idle);
}

/* Marks the jobs of batch after skip done and wakes them (lock held). */
static void finish(pubjob *batch, const pubjob *skip)
{
    for (pubjob *j = batch; j;) {
        pubjob *next = j->next; /* j may return (and vanish) once done */
        if (j != skip && !j->done) {
            j->done = true;
            pthread_cond_signal(&j->cond);
        }
        j = next;
    }
}

/* ---- the owner's work (lock not held) ---- */

/* Marks pc's connection known good now. */
static void mark_good(pubconn *pc, double now, unsigned faults)
{
    pc->last_ok = now;
    pc->faults = faults;
}

/* Is pc's connection usable without a liveness poll? */
static bool recently_good(const pubconn *pc, double now, unsigned faults)
{
    return pc->ctx && !pc->ctx->err && pc->faults == faults &&
           now - pc->last_ok < PUB_RECHECK_AFTER;
}

static void unread_push(daebus__redis_pub *p, pubconn *pc, unread *u)
{
    u->next = NULL;
    *pc->utail = u;
    pc->utail = &u->next;
    pc->n_unread++;
    if (!u->job)
        atomic_fetch_add(&p->unread, 1);
}

static unread *unread_pop(daebus__redis_pub *p, pubconn *pc)
{
    unread *u = pc->uhead;
    pc->uhead = u->next;
    if (!pc->uhead)
        pc->utail = &pc->uhead;
    pc->n_unread--;
    if (!u->job)
        atomic_fetch_sub(&p->unread, 1);
    return u;
}

/* The receivers a PUBLISH reply counts, or DAEBUS_ECONN. */
static int receivers(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_INTEGER)
        return DAEBUS_ECONN;
    return r->integer > 0x7fffffff ? 0x7fffffff : r->integer < 0 ? 0 : (int)r->integer;
}

/* Completes the first unread entry with the replies in r[0..n-1] (NULL:
 * lost). Returns: true when a reply says the server was demoted. */
static bool complete_one(daebus__redis_pub *p, pubconn *pc, redisReply **r, bool lost)
{
    unread *u = unread_pop(p, pc);
    bool dem = false;
    if (u->job) {
        pubjob *j = u->job;
        j->rc = lost ? DAEBUS_ECONN : 0;
        for (int i = 0; i < j->n; i++) {
            if (lost) {
                if (r && r[i])
                    freeReplyObject(r[i]);
                j->replies[i] = NULL;
            } else {
                j->replies[i] = r[i];
                dem = dem || daebus__redis_reply_demoted(r[i]);
            }
        }
        return dem;
    }
    redisReply *one = r ? r[0] : NULL;
    dem = !lost && daebus__redis_reply_demoted(one);
    u->fn(u->arg, lost || dem ? DAEBUS_ECONN : receivers(one));
    if (one)
        freeReplyObject(one);
    free(u); /* an asynchronous entry: malloc'd by run_batch */
    return dem;
}

/* Frees pc's connection: every unread reply is lost with it. */
static void discard(daebus__redis_pub *p, pubconn *pc)
{
    atomic_store(&pc->held, false);
    if (pc->ctx)
        redisFree(pc->ctx);
    pc->ctx = NULL;
    while (pc->uhead)
        complete_one(p, pc, NULL, true);
}

/* A connection that gave no reply is dead: drop it (noted process-wide). */
static void drop(daebus__redis_pub *p, pubconn *pc)
{
    daebus__redis_fault_note();
    discard(p, pc);
}

/* Reads the replies of the unread entries, in order: all of them (blocking,
 * each read bounded by the command time-out), or with !wait only those
 * already received (one non-blocking read). The connection is dropped when
 * it failed or a reply says the server was demoted (a demoted master: the
 * next use asks the sentinels again). */
static void read_unread(daebus__redis_pub *p, pubconn *pc, bool wait)
{
    bool dem = false;
    if (wait && atomic_load(&pc->held)) { /* their replies come only once they are sent */
        atomic_store(&pc->held, false);
        if (daebus__redis_flush(pc->ctx) != 0) {
            drop(p, pc);
            return;
        }
    }
    if (!wait && pc->uhead) {
        char buf[16384];
        ssize_t n = recv(pc->ctx->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ||
            (n > 0 && redisReaderFeed(pc->ctx->reader, buf, (size_t)n) != REDIS_OK)) {
            drop(p, pc);
            return;
        }
    }
    while (pc->uhead) {
        pubjob *j = pc->uhead->job;
        int want = j ? j->n : 1, got = 0;
        redisReply *one[1] = {NULL}, **r = j ? j->replies : one;
        for (; got < want; got++) {
            void *v = NULL;
            int ok = wait ? redisGetReply(pc->ctx, &v) : redisGetReplyFromReader(pc->ctx, &v);
            if (ok != REDIS_OK || (!v && wait)) {
                r[got] = NULL;
                complete_one(p, pc, r, true);
                drop(p, pc);
                return;
            }
            if (!v)
                return; /* !wait: the rest has not arrived (only asynchronous entries wait) */
            r[got] = v;
        }
        dem = complete_one(p, pc, r, false) || dem;
    }
    if (dem)
        drop(p, pc);
    else
        pc->last_ok = daebus__now_mono();
}

/* Makes pc's connection usable if it can. */
static void ensure(daebus__redis_pub *p, pubconn *pc)
{
    unsigned epoch = daebus__redis_sentinel_epoch();
    double now = daebus__now_mono();
    unsigned faults = daebus__redis_faults();
    bool same_master = !p->url.n_sentinels || pc->epoch == epoch;
    /* Unread replies make the socket readable: read them before a poll, and
     * before writing more than PUB_UNREAD_MAX. */
    if (pc->uhead &&
        (!same_master || !recently_good(pc, now, faults) || pc->n_unread >= PUB_UNREAD_MAX))
        read_unread(p, pc, true);
    if (same_master && recently_good(pc, now, faults))
        return;
    if (same_master && alive(pc->ctx)) {
        mark_good(pc, now, faults);
        return;
    }
    if (pc->ctx)
        drop(p, pc); /* no unread entry is left by now */
    /* While Redis is down, fail fast instead of waiting a connect time-out per call. */
    if (p->o.retry_after > 0 && pc->last_fail > 0 && now - pc->last_fail < p->o.retry_after)
        return;
    daebus_error e = {0};
    pc->ctx = daebus__redis_connect(&p->url, p->o.connect_timeout, p->o.command_timeout, &e);
    pc->epoch = daebus__redis_sentinel_epoch(); /* this connect may have moved it */
    if (!pc->ctx) {
        pc->last_fail = now;
        DAEBUS_LOG_DEBUGF(p->o.log_component, "publisher: %s", e.message);
    } else
        mark_good(pc, daebus__now_mono(), faults);
}

static int append_job(redisContext *ctx, const pubjob *j)
{
    for (int i = 0; i < j->n; i++)
        if (redisAppendCommandArgv(ctx, j->cmds[i].argc, j->cmds[i].argv, j->cmds[i].argvlen) !=
            REDIS_OK)
            return -1;
    return 0;
}

/* Runs a batch as its owner: one write of every job's commands, then (when
 * a pipeline is among them) every reply read. Sets each job's rc; wakes the
 * asynchronous ones other than self as soon as they are written, and unlinks
 * them from *batch (they return at once). */
static void run_batch(daebus__redis_pub *p, pubconn *pc, pubjob **batch, const pubjob *self)
{
    int npipe = 0, ncmds = 0, rc = 0;
    for (pubjob *j = *batch; j; j = j->next) {
        j->rc = DAEBUS_ECONN;
        j->entry = NULL;
        ncmds += j->n;
        npipe += !j->fn;
    }
    if (!atomic_load(&p->open)) {
        for (pubjob *j = *batch; j; j = j->next)
            j->rc = DAEBUS_ECLOSED;
        return;
    }
    /* Every entry exists before anything is written: nothing fails after. */
    for (pubjob *j = *batch; j && rc == 0; j = j->next)
        if (!(j->entry = j->fn ? calloc(1, sizeof(unread)) : &j->own))
            rc = DAEBUS_ENOMEM;
    if (rc == 0)
        ensure(p, pc);
    bool hold = true; /* a batch of daebus__redis_publish_later only: appended, not written */
    for (pubjob *j = *batch; j; j = j->next)
        hold = hold && j->later;
    if (rc == 0 && pc->ctx) {
        for (pubjob *j = *batch; j && rc == 0; j = j->next)
            rc = append_job(pc->ctx, j);
        if (rc == 0 && hold)
            atomic_store(&pc->held, true);
        else if (rc != 0 || (atomic_store(&pc->held, false), daebus__redis_flush(pc->ctx) != 0)) {
            drop(p, pc);
            rc = DAEBUS_ECONN;
        }
    } else if (rc == 0) {
        rc = DAEBUS_ECONN; /* no connection (or failing fast) */
    }
    if (rc != 0) {
        for (pubjob *j = *batch; j; j = j->next) {
            if (j->fn)
                free(j->entry);
            j->rc = rc;
        }
        return;
    }
    if (!hold)
        atomic_fetch_add(&p->writes, 1);
    atomic_fetch_add(&p->commands, (unsigned long long)ncmds);
    for (pubjob *j = *batch; j; j = j->next) {
        unread *u = j->entry;
        *u = j->fn ? (unread){.fn = j->fn, .arg = j->arg} : (unread){.job = j};
        j->rc = 0;
        unread_push(p, pc, u);
    }
    if (!npipe) {
        return;
    }
    /* Written: the asynchronous jobs may go before the replies are read. */
    pthread_mutex_lock(&pc->lock);
    for (pubjob **pp = batch; *pp;) {
        pubjob *j = *pp;
        if (j->fn && j != self) {
            *pp = j->next;
            j->done = true;
            pthread_cond_signal(&j->cond);
        } else {
            pp = &j->next;
        }
    }
    pthread_mutex_unlock(&pc->lock);
    read_unread(p, pc, true);
}

/* Runs j on connection idx of the pool (-1: the next one, round-robin), as
 * its owner or combined into another thread's batch. Returns: j's rc. */
static int submit(daebus__redis_pub *p, pubjob *j, int idx)
{
    if (!p || !atomic_load(&p->open))
        return DAEBUS_ECLOSED;
    pubconn *pc =
        &p->conns[idx >= 0 ? (unsigned)idx : atomic_fetch_add(&p->rr, 1) % (unsigned)p->n];
    j->done = j->lead = false;
    pthread_mutex_lock(&pc->lock);
    pubjob *batch = own(pc, j);
    if (!batch) {
        pthread_mutex_unlock(&pc->lock);
        return j->rc;
    }
    pthread_mutex_unlock(&pc->lock);
    run_batch(p, pc, &batch, j);
    pthread_mutex_lock(&pc->lock);
    finish(batch, j);
    release(pc);
    pthread_mutex_unlock(&pc->lock);
    return j->rc;
}

int daebus__redis_pub_connect(daebus__redis_pub *p, daebus_error *err)
{
    if (!p || !atomic_load(&p->open))
        return daebus_error_set(err, DAEBUS_ECLOSED, "publisher closed");
    pubconn *pc = &p->conns[0];
    pubjob self = {0};
    pthread_mutex_lock(&pc->lock);
    pubjob *batch = own(pc, &self); /* an empty job */
    pthread_mutex_unlock(&pc->lock);
    if (!batch) { /* run in another owner's batch, which connected or failed to */
        if (self.rc != 0)
            daebus_error_set(err, self.rc, "publisher: cannot connect to Redis");
        return self.rc;
    }
    if (!pc->ctx) {
        pc->ctx = daebus__redis_connect(&p->url, p->o.connect_timeout, p->o.command_timeout, err);
        pc->epoch = daebus__redis_sentinel_epoch();
        if (pc->ctx)
            mark_good(pc, daebus__now_mono(), daebus__redis_faults());
    }
    int rc = pc->ctx ? 0 : err && err->code ? err->code : DAEBUS_ECONN;
    pubjob *rest = batch->next; /* queued behind while this waited its turn */
    if (rest)
        run_batch(p, pc, &rest, NULL);
    pthread_mutex_lock(&pc->lock);
    finish(rest, NULL);
    release(pc);
    pthread_mutex_unlock(&pc->lock);
    return rc;
}

int daebus__redis_pub_pipeline(daebus__redis_pub *p, const daebus__redis_cmd *cmds, int n,
                               redisReply **replies)
{
    for (int i = 0; i < n; i++)
        replies[i] = NULL;
    pubjob j = {.cmds = cmds, .n = n, .replies = replies};
    return submit(p, &j, -1);
}

int daebus__redis_publish(daebus__redis_pub *p, const char *channel, const char *data, size_t len)
{
    const char *argv[3] = {"PUBLISH", channel, data};
    size_t argvlen[3] = {7, strlen(channel), len};
    daebus__redis_cmd cmd = {3, argv, argvlen};
    redisReply *r = NULL;
    int rc = daebus__redis_pub_pipeline(p, &cmd, 1, &r);
    if (rc != 0)
        return rc;
    rc = receivers(r);
    freeReplyObject(r);
    return rc;
}

/* One PUBLISH nobody waits for: held on the first connection (later), or
 * written now on the channel's own connection. */
static int publish_unwaited(daebus__redis_pub *p, const char *channel, const char *data, size_t len,
                            daebus__redis_pub_sent_fn *fn, void *arg, bool later)
{
    if (!p)
        return DAEBUS_ECLOSED;
    const char *argv[3] = {"PUBLISH", channel, data};
    size_t argvlen[3] = {7, strlen(channel), len};
    daebus__redis_cmd cmd = {3, argv, argvlen};
    pubjob j = {.cmds = &cmd, .n = 1, .fn = fn, .arg = arg, .later = later};
    if (later)
        return submit(p, &j, 0); /* held on the first connection, flushed together */
    /* One channel, one connection: what one thread publishes on a channel
     * this way reaches Redis in order although nobody waits for it. */
    unsigned h = 2166136261u;
    for (const char *c = channel; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    return submit(p, &j, (int)(h % (unsigned)p->n));
}

int daebus__redis_publish_async(daebus__redis_pub *p, const char *channel, const char *data,
                                size_t len, daebus__redis_pub_sent_fn *fn, void *arg)
{
    return publish_unwaited(p, channel, data, len, fn, arg, false);
}

int daebus__redis_publish_later(daebus__redis_pub *p, const char *channel, const char *data,
                                size_t len, daebus__redis_pub_sent_fn *fn, void *arg)
{
    return publish_unwaited(p, channel, data, len, fn, arg, true);
}

bool daebus__redis_pub_held(const daebus__redis_pub *p)
{
    return p && atomic_load(&p->conns[0].held);
}

int daebus__redis_pub_flush(daebus__redis_pub *p)
{
    if (!p || !atomic_load(&p->conns[0].held))
        return 0;
    pubconn *pc = &p->conns[0];
    pubjob self = {0};
    pthread_mutex_lock(&pc->lock);
    pubjob *batch = own(pc, &self); /* an empty job */
    pthread_mutex_unlock(&pc->lock);
    if (!batch) /* run in another owner's batch: its write took what was held */
        return self.rc;
    int rc = 0;
    pubjob *rest = batch->next; /* queued behind while this waited its turn */
    if (rest)
        run_batch(p, pc, &rest, NULL);
    if (atomic_load(&pc->held) && pc->ctx) {
        atomic_store(&pc->held, false);
        if (daebus__redis_flush(pc->ctx) != 0) {
            drop(p, pc);
            rc = DAEBUS_ECONN;
        } else {
            atomic_fetch_add(&p->writes, 1);
        }
    }
    pthread_mutex_lock(&pc->lock);
    finish(rest, NULL);
    release(pc);
    pthread_mutex_unlock(&pc->lock);
    return rc;
}

int daebus__redis_publish_json(daebus__redis_pub *p, const char *channel, const cJSON *obj)
{
    char *text = daebus_json_print(obj, NULL);
    if (!text)
        return DAEBUS_ENOMEM;
    int rc = daebus__redis_publish(p, channel, text, strlen(text));
    free(text);
    return rc;
}

int daebus__redis_pub_unread(const daebus__redis_pub *p)
{
    return p ? atomic_load(&((daebus__redis_pub *)p)->unread) : 0;
}

int daebus__redis_pub_collect(daebus__redis_pub *p, bool wait)
{
    if (!p)
        return 0;
    for (int i = 0; i < p->n && atomic_load(&p->unread) > 0; i++) {
        pubconn *pc = &p->conns[i];
        pthread_mutex_lock(&pc->lock);
        if (pc->busy) { /* its owner, or the one after it, writes and may read */
            pthread_mutex_unlock(&pc->lock);
            continue;
        }
        pc->busy = true;
        pthread_mutex_unlock(&pc->lock);
        if (pc->uhead)
            read_unread(p, pc, wait);
        pthread_mutex_lock(&pc->lock);
        release(pc);
        pthread_mutex_unlock(&pc->lock);
    }
    return atomic_load(&p->unread);
}

void daebus__redis_pub_counts(const daebus__redis_pub *p, unsigned long long *writes,
                              unsigned long long *commands)
{
    daebus__redis_pub *q = (daebus__redis_pub *)p;
    *writes = q ? atomic_load(&q->writes) : 0;
    *commands = q ? atomic_load(&q->commands) : 0;
}

void daebus__redis_pub_close(daebus__redis_pub *p)
{
    if (!p)
        return;
    atomic_store(&p->open, 0);
    for (int i = 0; i < p->n; i++) {
        pubconn *pc = &p->conns[i];
        pthread_mutex_lock(&pc->lock);
        /* The owner finishes its batch (bounded by the command time-out); the
         * threads queued behind it then fail with DAEBUS_ECLOSED in turn. */
        while (pc->busy)
            pthread_cond_wait(&pc->idle, &pc->lock);
        pc->busy = true;
        pthread_mutex_unlock(&pc->lock);
        discard(p, pc); /* unread replies: lost (DAEBUS_ECONN) */
        pthread_mutex_lock(&pc->lock);
        release(pc);
        pthread_mutex_unlock(&pc->lock);
    }
}

int daebus__redis_pub_is_open(const daebus__redis_pub *p)
{
    return p && atomic_load(&((daebus__redis_pub *)p)->open);
}

void daebus__redis_pub_destroy(daebus__redis_pub *p)
{
    if (!p)
        return;
    daebus__redis_pub_close(p);
    for (int i = 0; i < p->n; i++) {
        pthread_mutex_destroy(&p->conns[i].lock);
        pthread_cond_destroy(&p->conns[i].idle);
    }
    free(p->conns);
    free(p);
}
