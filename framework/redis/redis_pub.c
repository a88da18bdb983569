/* redis_pub.c - the publisher pool (see redis_pub.h). */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/json.h"
#include "daebus/log.h"
#include "clock.h"
#include "redis_pub.h"
#include "redis_sentinel.h"

typedef struct pubconn {
    pthread_mutex_t lock;
    redisContext *ctx;
    double last_fail; /* monotonic time of the last failed connect */
    unsigned epoch;   /* daebus__redis_sentinel_epoch() when ctx was made */
    double last_ok;   /* monotonic time ctx was last known good (connected, checked, used) */
    unsigned faults;  /* daebus__redis_faults() then */
} pubconn;

/* A connection used successfully this recently, with no connection lost in the
 * process since, is used without the liveness poll (one system call less per
 * PUBLISH). Longer idle, or after any lost connection, it is polled first. */
#define PUB_RECHECK_AFTER 1.0

struct daebus__redis_pub {
    daebus__redis_pub_opts o;
    daebus__redis_url url;
    pubconn *conns;
    int n;
    atomic_uint rr;
    atomic_int open;
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
    for (int i = 0; i < p->n; i++)
        pthread_mutex_init(&p->conns[i].lock, NULL);
    atomic_store(&p->open, 1);
    return p;
}

int daebus__redis_pub_connect(daebus__redis_pub *p, daebus_error *err)
{
    pubconn *pc = &p->conns[0];
    pthread_mutex_lock(&pc->lock);
    if (!pc->ctx) {
        pc->ctx = daebus__redis_connect(&p->url, p->o.connect_timeout, p->o.command_timeout, err);
        pc->epoch = daebus__redis_sentinel_epoch();
    }
    int rc = pc->ctx ? 0 : err && err->code ? err->code : DAEBUS_ECONN;
    pthread_mutex_unlock(&pc->lock);
    return rc;
}

/* Marks pc's connection known good now (lock held). */
static void mark_good(pubconn *pc, double now, unsigned faults)
{
    pc->last_ok = now;
    pc->faults = faults;
}

/* Is pc's connection usable without a liveness poll? (lock held) */
static bool recently_good(const pubconn *pc, double now, unsigned faults)
{
    return pc->ctx && !pc->ctx->err && pc->faults == faults &&
           now - pc->last_ok < PUB_RECHECK_AFTER;
}

/* Makes pc's connection usable if it can (lock held). */
static void ensure(daebus__redis_pub *p, pubconn *pc)
{
    unsigned epoch = daebus__redis_sentinel_epoch();
    double now = daebus__now_mono();
    unsigned faults = daebus__redis_faults();
    bool same_master = !p->url.n_sentinels || pc->epoch == epoch;
    if (same_master && recently_good(pc, now, faults))
        return;
    if (same_master && alive(pc->ctx)) {
        mark_good(pc, now, faults);
        return;
    }
    if (pc->ctx)
        redisFree(pc->ctx);
    pc->ctx = NULL;
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

/* Takes the next connection of the pool, locked and made usable if it can be.
 * Returns: the connection (unlock it with pthread_mutex_unlock), or NULL once
 * the pool is closed. */
static pubconn *take(daebus__redis_pub *p)
{
    if (!p || !atomic_load(&p->open))
        return NULL;
    pubconn *pc = &p->conns[atomic_fetch_add(&p->rr, 1) % (unsigned)p->n];
    pthread_mutex_lock(&pc->lock);
    if (!atomic_load(&p->open)) {
        pthread_mutex_unlock(&pc->lock);
        return NULL;
    }
    ensure(p, pc);
    return pc;
}

/* A connection that gave no reply is dead: drop it (lock held). */
static void drop(pubconn *pc)
{
    daebus__redis_fault_note();
    redisFree(pc->ctx);
    pc->ctx = NULL;
}

/* Sends the n commands and reads their n replies (lock held, ctx set).
 * Returns: 0, or DAEBUS_ECONN with the replies read so far freed. */
static int run_pipeline(pubconn *pc, const daebus__redis_cmd *cmds, int n, redisReply **replies)
{
    int i = 0, rc = 0;
    for (; i < n; i++)
        if (redisAppendCommandArgv(pc->ctx, cmds[i].argc, cmds[i].argv, cmds[i].argvlen) !=
            REDIS_OK)
            return DAEBUS_ECONN; /* nothing read yet; the context is dropped */
    /* Sent with MSG_NOSIGNAL: no SIGPIPE guard (four system calls) around it. */
    if (daebus__redis_flush(pc->ctx) != 0)
        return DAEBUS_ECONN;
    for (i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(pc->ctx, &r) != REDIS_OK || !r) {
            rc = DAEBUS_ECONN;
            break;
        }
        replies[i] = r;
    }
    if (rc != 0)
        for (int j = 0; j < i; j++) {
            freeReplyObject(replies[j]);
            replies[j] = NULL;
        }
    return rc;
}

/* Returns: true when a reply says the server is no longer a usable master. */
static bool demoted(redisReply **replies, int n)
{
    for (int i = 0; i < n; i++)
        if (daebus__redis_reply_demoted(replies[i]))
            return true;
    return false;
}

int daebus__redis_pub_pipeline(daebus__redis_pub *p, const daebus__redis_cmd *cmds, int n,
                               redisReply **replies)
{
    for (int i = 0; i < n; i++)
        replies[i] = NULL;
    pubconn *pc = take(p);
    if (!pc)
        return DAEBUS_ECLOSED;
    int rc = DAEBUS_ECONN;
    if (pc->ctx) {
        rc = run_pipeline(pc, cmds, n, replies);
        if (rc != 0 || demoted(replies, n))
            drop(pc); /* a demoted master: the next use asks the sentinels again */
        else
            pc->last_ok = daebus__now_mono();
    }
    pthread_mutex_unlock(&pc->lock);
    return rc;
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
    rc = r->type == REDIS_REPLY_INTEGER ? (int)(r->integer > 0x7fffffff ? 0x7fffffff : r->integer)
                                        : DAEBUS_ECONN;
    freeReplyObject(r);
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

void daebus__redis_pub_close(daebus__redis_pub *p)
{
    if (!p)
        return;
    atomic_store(&p->open, 0);
    for (int i = 0; i < p->n; i++) {
        pthread_mutex_lock(&p->conns[i].lock);
        if (p->conns[i].ctx)
            redisFree(p->conns[i].ctx);
        p->conns[i].ctx = NULL;
        pthread_mutex_unlock(&p->conns[i].lock);
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
    for (int i = 0; i < p->n; i++)
        pthread_mutex_destroy(&p->conns[i].lock);
    free(p->conns);
    free(p);
}
