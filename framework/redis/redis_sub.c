/* redis_sub.c - the subscriber connection and its thread (see redis_sub.h).
 *
 * The channel set is the truth: changes made while connected are queued as
 * one SUBSCRIBE or UNSUBSCRIBE each and written by the thread, in order, on
 * its live connection; a fresh connection subscribes to the whole set and
 * drops the queue. Tickets count those changes: Redis confirms each command
 * of one connection in order, so the confirmed ticket is a counter.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include "clock.h"
#include "redis_sub.h"
#include "redis_sentinel.h"
#include "check.h"
#include "utf8.h"

enum { ROLE_NONE, ROLE_THREAD, ROLE_LENT };

/* A job run by its reader with nothing else to read leaves the role free;
 * once it has run RELIEF_US the relief takes the role (a quick job keeps it:
 * no wake-up). The relief's timer is not set per job: each set of a short
 * timer reprograms the CPU's timer, which costs microseconds in a virtual
 * machine (7 us a set and clear measured). It is set when not already
 * running, for the holder's next tick or WATCH_US at most, and checks the
 * running job's age when it fires: a job that blocks is relieved after
 * RELIEF_US to WATCH_US + RELIEF_US. */
#define RELIEF_US 200
#define WATCH_US  1000

typedef struct sub_op {
    int subscribe;
    char *channel;
    struct sub_op *next;
} sub_op;

struct daebus__redis_sub {
    daebus__redis_sub_opts o;
    daebus__redis_url url;
    char where[320];

    pthread_mutex_t lock; /* channels, ops and tickets */
    pthread_cond_t cond;  /* confirmed or stopping changed */
    char **channels;
    size_t nchannels, cap;
    sub_op *ops, **ops_tail; /* changes not yet written to the live connection */
    long issued, confirmed;

    pthread_t *threads;
    int nthreads;
    atomic_int stopping;
    atomic_int connected;
    atomic_int pace_ms;
    int wake[2];

    /* the reader role (lock) */
    pthread_cond_t role_cond; /* the role became free, or want/stopping changed */
    int holder;               /* ROLE_NONE, ROLE_THREAD (a reader thread), ROLE_LENT */
    pthread_t holder_thread;  /* ROLE_THREAD: which */
    bool parked;              /* free, and no reader thread takes it unless want */
    bool want;                /* a reader thread should read (a wake, a borrower gave up) */
    bool finished;            /* the last holder closed everything: readers exit */
    int nwaiting;             /* reader threads waiting for the role */
    double park_until;        /* parked: a reader thread reads again then (health) */
    redisReply *stash;        /* read by a borrower, not its to take: read first */
    atomic_int idle;          /* no reader thread watches the socket (parked or lent) */
    atomic_ulong ran_here, lent_reads; /* jobs run by their reader; messages a borrower read */
    /* The relief (readers > 1): one waiting reader thread polls these
     * instead of the condition variable; relief_timer fires when a job left
     * the role free (armed) too long, relief_ev wakes it otherwise. */
    int relief_timer, relief_ev;
    bool has_relief, armed;
    double job_at;   /* armed: when the job began (mono s) */
    double timer_at; /* relief_timer's deadline (mono s; 0: not set) */

    /* role holder */
    daebus__redis_job_fn *job_fn; /* run_here: run after the role is handed on */
    void *job_arg;
    redisContext *ctx;
    daebus__redis_guard guard;
    daebus__backoff backoff;
    bool ever_up, failing;
    redisReply *exec;     /* an atomic subscription's EXEC reply, until the UP event is out */
    int after_at, nafter; /* where the after[] replies are in it */
    bool no_atomic;       /* Redis refused SUBSCRIBE inside MULTI: plain from now on */
    double last_rx, ping_at;
    double role_at; /* Sentinel URLs: when the sentinels were last asked for the master */
    unsigned epoch; /* daebus__redis_sentinel_epoch() when ctx was made */
    long next_us;
};

/* ---- the channel set (any thread) ---- */

static ssize_t find_channel(const daebus__redis_sub *s, const char *channel)
{
    for (size_t i = 0; i < s->nchannels; i++)
        if (strcmp(s->channels[i], channel) == 0)
            return (ssize_t)i;
    return -1;
}

static void free_ops(sub_op *op)
{
    while (op) {
        sub_op *n = op->next;
        free(op->channel);
        free(op);
        op = n;
    }
}

/* Queues a change for the live connection (lock held). Returns: its ticket. */
static long queue_op(daebus__redis_sub *s, int subscribe, const char *channel)
{
    sub_op *op = calloc(1, sizeof *op);
    if (!op || !(op->channel = strdup(channel))) {
        free(op);
        return DAEBUS_ENOMEM;
    }
    op->subscribe = subscribe;
    *s->ops_tail = op;
    s->ops_tail = &op->next;
    return ++s->issued;
}

long daebus__redis_sub_subscribe(daebus__redis_sub *s, const char *channel)
{
    if (!s || !channel || !*channel)
        return DAEBUS_EINVAL;
    long ticket = 0;
    pthread_mutex_lock(&s->lock);
    if (find_channel(s, channel) < 0) {
        char *d = strdup(channel);
        if (s->nchannels == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 8;
            char **n = d ? realloc(s->channels, cap * sizeof *n) : NULL;
            if (n) {
                s->channels = n;
                s->cap = cap;
            }
        }
        if (!d || s->nchannels == s->cap) {
            free(d);
            ticket = DAEBUS_ENOMEM;
        } else {
            s->channels[s->nchannels++] = d;
            ticket = queue_op(s, 1, channel);
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (ticket > 0)
        daebus__redis_sub_wake(s);
    return ticket;
}

long daebus__redis_sub_unsubscribe(daebus__redis_sub *s, const char *channel)
{
    if (!s || !channel)
        return DAEBUS_EINVAL;
    long ticket = 0;
    pthread_mutex_lock(&s->lock);
    ssize_t i = find_channel(s, channel);
    if (i >= 0) {
        free(s->channels[i]);
        s->channels[i] = s->channels[--s->nchannels];
        ticket = queue_op(s, 0, channel);
    }
    pthread_mutex_unlock(&s->lock);
    if (ticket > 0)
        daebus__redis_sub_wake(s);
    return ticket;
}

size_t daebus__redis_sub_count(daebus__redis_sub *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->nchannels;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int daebus__redis_sub_wait(daebus__redis_sub *s, long ticket, double timeout)
{
    daebus__deadline d = daebus__deadline_in(timeout);
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    while (s->confirmed < ticket && !atomic_load(&s->stopping))
        if (daebus__cond_wait_until(&s->cond, &s->lock, d) == ETIMEDOUT)
            break;
    if (s->confirmed < ticket)
        rc = atomic_load(&s->stopping) ? DAEBUS_ECLOSED : DAEBUS_ETIMEDOUT;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void confirm(daebus__redis_sub *s, long upto)
{
    pthread_mutex_lock(&s->lock);
    if (upto > s->confirmed)
        s->confirmed = upto;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* ---- waking ---- */

void daebus__redis_sub_pace(daebus__redis_sub *s, int ms)
{
    atomic_store(&s->pace_ms, ms);
}

/* Bytes read from the socket and not yet parsed into replies. */
static bool buffered(const daebus__redis_sub *s)
{
    return s->ctx && s->ctx->reader->pos < s->ctx->reader->len;
}

bool daebus__redis_sub_drained(const daebus__redis_sub *s)
{
    if (!s->ctx || buffered(s))
        return false;
    int n = 0;
    return ioctl(s->ctx->fd, FIONREAD, &n) == 0 && n == 0;
}

void daebus__redis_sub_wake(daebus__redis_sub *s)
{
    char b = 1;
    if (!s)
        return;
    /* Set before the byte: a borrower that drains the pipe sees it after. */
    pthread_mutex_lock(&s->lock);
    s->want = true;
    pthread_cond_signal(&s->role_cond);
    pthread_mutex_unlock(&s->lock);
    if (s->wake[1] >= 0) {
        ssize_t n = write(s->wake[1], &b, 1);
        (void)n;
    }
}

static void drain_wake(daebus__redis_sub *s)
{
    char buf[64];
    while (read(s->wake[0], buf, sizeof buf) > 0) {
    }
}

static void sleep_or_wake(daebus__redis_sub *s, double seconds)
{
    struct pollfd p = {.fd = s->wake[0], .events = POLLIN};
    int ms = (int)(seconds * 1000);
    if (poll(&p, 1, ms < 1 ? 1 : ms) > 0)
        drain_wake(s);
}

static void emit(daebus__redis_sub *s, daebus__redis_state st, bool again, double next_try,
                 const char *why, size_t n)
{
    bool atomic = st == DAEBUS__REDIS_UP && s->exec;
    daebus__redis_event ev = {st,
                              again,
                              next_try,
                              why,
                              n,
                              atomic ? (const redisReply *const *)s->exec->element + s->after_at
                                     : NULL,
                              atomic ? s->nafter : 0};
    if (s->o.on_state)
        s->o.on_state(s->o.user, &ev);
}

/* ---- connecting ---- */

static int is_kind(const redisReply *r, const char *kind)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
           r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, kind) == 0;
}

/* Reads one reply within the deadline (set changes wait until connected).
 * Returns: 1 with *r set, or -1 (err filled). */
static int read_until(daebus__redis_sub *s, redisContext *c, daebus__deadline until, redisReply **r,
                      daebus_error *err)
{
    for (;;) {
        *r = NULL;
        int rc = daebus__redis_read(c, r, 50000, s->wake[0]);
        if (rc == 1 && !atomic_load(&s->stopping))
            return 1;
        if (rc < 0 || daebus__deadline_passed(until) || atomic_load(&s->stopping)) {
            daebus_error_set(err, DAEBUS_ECONN, "redis %s: SUBSCRIBE: %s", s->where,
                             c->err ? c->errstr : "no confirmation");
            if (*r) /* a reply read just before the deadline or the stop */
                freeReplyObject(*r);
            *r = NULL;
            return -1;
        }
        drain_wake(s);
    }
}

/* Sends SUBSCRIBE for the n channels of argv[1..n] and waits for every
 * confirmation. Returns: 0, or -1 (err filled). */
static int subscribe_confirmed(daebus__redis_sub *s, redisContext *c, const char **argv, size_t n,
                               daebus_error *err)
{
    if (redisAppendCommandArgv(c, (int)n + 1, argv, NULL) != REDIS_OK) {
        daebus_error_set(err, DAEBUS_ENOMEM, "SUBSCRIBE: out of memory");
        return -1;
    }
    size_t confirmed = 0;
    daebus__deadline until = daebus__deadline_in(s->o.connect_timeout);
    while (confirmed < n) {
        redisReply *r = NULL;
        if (read_until(s, c, until, &r, err) < 0)
            return -1;
        int refused = r->type == REDIS_REPLY_ERROR;
        if (refused)
            daebus_error_set(err, DAEBUS_ECONN, "redis %s: SUBSCRIBE refused: %.*s", s->where,
                             daebus__utf8_prec(r->str, 120), r->str);
        else if (is_kind(r, "subscribe"))
            confirmed++;
        freeReplyObject(r);
        if (refused)
            return -1;
    }
    return 0;
}

/* The k commands of an atomic subscription, MULTI and EXEC around them. */
static int append_atomic(redisContext *c, const char **argv, size_t n,
                         const daebus__redis_atomic *a, int *k)
{
    int bad = redisAppendCommand(c, "MULTI") != REDIS_OK;
    *k = 0;
    for (int i = 0; i < a->nbefore; i++, ++*k)
        bad |= redisAppendCommandArgv(c, a->before[i].argc, a->before[i].argv,
                                      a->before[i].argvlen) != REDIS_OK;
    for (size_t i = 1; i <= n; i++) {
        if (a->last && strcmp(argv[i], a->last) == 0)
            continue;
        bad |= redisAppendCommand(c, "SUBSCRIBE %s", argv[i]) != REDIS_OK;
        ++*k;
    }
    for (int i = 0; i < a->nafter; i++, ++*k)
        bad |= redisAppendCommandArgv(c, a->after[i].argc, a->after[i].argv, a->after[i].argvlen) !=
               REDIS_OK;
    if (a->last) {
        bad |= redisAppendCommand(c, "SUBSCRIBE %s", a->last) != REDIS_OK;
        ++*k;
    }
    bad |= redisAppendCommand(c, "EXEC") != REDIS_OK;
    return bad ? -1 : 0;
}

/* Checks EXEC's reply: k results, every SUBSCRIBE confirmed, no error.
 * Returns: the channels confirmed, or -1 (err filled). */
static long exec_result(daebus__redis_sub *s, const redisReply *r, int k, daebus_error *err)
{
    if (r->type != REDIS_REPLY_ARRAY || (int)r->elements != k) {
        daebus_error_set(err, DAEBUS_ECONN, "redis %s: MULTI/EXEC with SUBSCRIBE failed: %.*s",
                         s->where,
                         r->type == REDIS_REPLY_ERROR ? daebus__utf8_prec(r->str, 120) : 14,
                         r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return -1;
    }
    long confirmed = 0;
    for (int i = 0; i < k; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_ERROR) {
            daebus_error_set(err, DAEBUS_ECONN,
                             "redis %s: a command of the subscription failed: %.*s", s->where,
                             daebus__utf8_prec(e->str, 120), e->str);
            return -1;
        }
        confirmed += is_kind(e, "subscribe");
    }
    return confirmed;
}

/* Subscribes to the n channels of argv[1..n] in one MULTI/EXEC with the
 * hook's commands (redis_sub.h). Returns: 0, or -1 (err filled). */
static int subscribe_atomic(daebus__redis_sub *s, redisContext *c, const char **argv, size_t n,
                            const daebus__redis_atomic *a, daebus_error *err)
{
    int k = 0;
    if (append_atomic(c, argv, n, a, &k) != 0) {
        daebus_error_set(err, DAEBUS_ENOMEM, "SUBSCRIBE: out of memory");
        return -1;
    }
    daebus__deadline until = daebus__deadline_in(s->o.connect_timeout);
    bool refused = false;
    redisReply *r = NULL;
    /* MULTI's +OK, k times +QUEUED (or an error), then EXEC's array. */
    for (int i = 0; i < k + 1; i++) {
        if (read_until(s, c, until, &r, err) < 0)
            return -1;
        if (r->type == REDIS_REPLY_ERROR && !refused) {
            refused = true;
            if (strstr(r->str, "SUBSCRIBE") || strstr(r->str, "subscribe"))
                s->no_atomic = true;
            daebus_error_set(err, DAEBUS_ECONN, "redis %s: refused in MULTI: %.*s%s", s->where,
                             daebus__utf8_prec(r->str, 120), r->str,
                             s->no_atomic ? " (the next connections subscribe plainly)" : "");
        }
        freeReplyObject(r);
    }
    if (read_until(s, c, until, &r, err) < 0)
        return -1;
    long confirmed = refused ? -1 : exec_result(s, r, k, err);
    if (confirmed != (long)n) {
        freeReplyObject(r);
        return -1;
    }
    s->exec = r; /* the after[] replies go out with the UP event */
    s->nafter = a->nafter;
    s->after_at = k - a->nafter - (a->last ? 1 : 0);
    return 0;
}

/* Takes a copy of the channel set as SUBSCRIBE arguments and drops the
 * queued changes (the set has them). *ticket: the last ticket it covers. */
static const char **snapshot(daebus__redis_sub *s, size_t *n, long *ticket)
{
    pthread_mutex_lock(&s->lock);
    const char **argv = calloc(s->nchannels + 1, sizeof *argv);
    size_t k = 0;
    if (argv) {
        argv[0] = "SUBSCRIBE";
        for (; k < s->nchannels; k++)
            if (!(argv[k + 1] = strdup(s->channels[k])))
                break;
    }
    if (argv && k == s->nchannels) {
        free_ops(s->ops);
        s->ops = NULL;
        s->ops_tail = &s->ops;
    }
    *ticket = s->issued;
    int whole = argv && k == s->nchannels;
    pthread_mutex_unlock(&s->lock);
    *n = k;
    if (!whole && argv) {
        for (size_t i = 1; i <= k; i++)
            free((char *)argv[i]);
        free(argv);
        return NULL;
    }
    return argv;
}

static void free_snapshot(const char **argv, size_t n)
{
    for (size_t i = 1; argv && i <= n; i++)
        free((char *)argv[i]);
    free(argv);
}

/* Connects and subscribes to the whole set. Returns: 0 or a negative code
 * (err filled). */
static int sub_connect(daebus__redis_sub *s, daebus_error *err)
{
    redisContext *c = daebus__redis_connect(&s->url, s->o.connect_timeout, 0, err);
    unsigned epoch = daebus__redis_sentinel_epoch(); /* this connect may have moved it */
    if (!c)
        return err && err->code ? err->code : DAEBUS_ECONN;
    /* Before the first message: nothing over the limit is ever copied or parsed. */
    if (s->o.max_message)
        daebus__redis_guard_attach(c, &s->guard, s->o.max_message);
    size_t n = 0;
    long ticket = 0;
    const char **argv = snapshot(s, &n, &ticket);
    int rc = 0;
    daebus__redis_atomic a = {0};
    bool atomic =
        argv && n && s->o.on_subscribe && !s->no_atomic && s->o.on_subscribe(s->o.user, &a);
    if (!argv)
        rc = daebus_error_set(err, DAEBUS_ENOMEM, "SUBSCRIBE: out of memory");
    else if (atomic && subscribe_atomic(s, c, argv, n, &a, err) != 0)
        rc = err && err->code ? err->code : DAEBUS_ECONN;
    else if (!atomic && n && subscribe_confirmed(s, c, argv, n, err) != 0)
        rc = err && err->code ? err->code : DAEBUS_ECONN;
    free_snapshot(argv, n);
    if (rc != 0) {
        redisFree(c);
        return rc;
    }
    s->ctx = c;
    s->epoch = epoch;
    s->last_rx = daebus__now_mono();
    s->ping_at = 0;
    s->role_at = s->last_rx;
    s->next_us = s->o.poll_ms * 1000L;
    atomic_store(&s->connected, 1);
    confirm(s, ticket);
    return 0;
}

/* ---- the thread ---- */

/* Writes the queued set changes on the live connection. */
static void send_ops(daebus__redis_sub *s)
{
    pthread_mutex_lock(&s->lock);
    sub_op *ops = s->ops;
    s->ops = NULL;
    s->ops_tail = &s->ops;
    pthread_mutex_unlock(&s->lock);
    for (sub_op *op = ops; op; op = op->next)
        redisAppendCommand(s->ctx, op->subscribe ? "SUBSCRIBE %s" : "UNSUBSCRIBE %s", op->channel);
    free_ops(ops);
}

static void connect_stage(daebus__redis_sub *s)
{
    daebus_error e = {0};
    if (sub_connect(s, &e) == 0) {
        daebus__backoff_reset(&s->backoff);
        emit(s, DAEBUS__REDIS_UP, s->ever_up, 0, NULL, daebus__redis_sub_count(s));
        if (s->exec)
            freeReplyObject(s->exec);
        s->exec = NULL;
        s->ever_up = true;
        s->failing = false;
        return;
    }
    if (atomic_load(&s->stopping))
        return;
    double delay = daebus__backoff_next(&s->backoff);
    emit(s, DAEBUS__REDIS_RETRY, s->failing, delay, e.message, 0);
    s->failing = true;
    sleep_or_wake(s, delay);
}

static void lost(daebus__redis_sub *s)
{
    atomic_store(&s->connected, 0);
    daebus__redis_fault_note(); /* publishers check their idle connections again */
    emit(s, DAEBUS__REDIS_DOWN, s->ever_up, 0, s->ctx->errstr[0] ? s->ctx->errstr : "closed", 0);
    redisFree(s->ctx);
    s->ctx = NULL;
    s->failing = true;
}

static void dispatch(daebus__redis_sub *s, const redisReply *r)
{
    if (is_kind(r, "message") && r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[2]->type == REDIS_REPLY_STRING) {
        const daebus__redis_guard *g = &s->guard;
        daebus__redis_msg m = {
            r->element[1]->str, r->element[2]->str, r->element[2]->len, 0, NULL, 0, buffered(s)};
        if (s->o.max_message && g->cut_len) {
            m.cut_len = g->cut_len;
            m.tail = g->tail;
            m.tail_len = g->tail_len;
        }
        s->o.on_message(s->o.user, &m);
    } else if (is_kind(r, "subscribe") || is_kind(r, "unsubscribe")) {
        pthread_mutex_lock(&s->lock);
        s->confirmed++;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
    }
}

/* One read on the live connection, with the health check. */
static void read_stage(daebus__redis_sub *s)
{
    send_ops(s);
    int pace = atomic_load(&s->pace_ms);
    if (pace > 0 && !buffered(s))
        sleep_or_wake(s, pace / 1000.0);
    redisReply *r = NULL;
    int rc;
    pthread_mutex_lock(&s->lock);
    r = s->stash; /* a borrower's read, not its own: first in line */
    s->stash = NULL;
    pthread_mutex_unlock(&s->lock);
    rc = r ? 1 : daebus__redis_read(s->ctx, &r, s->next_us, s->wake[0]);
    double now = daebus__now_mono();
    if (rc == 1 || (s->o.max_message && s->guard.got_bytes)) {
        /* A big message still arriving is traffic too (its PONG queues behind it). */
        s->last_rx = now;
        s->ping_at = 0;
    } else if (rc == 0 && s->ping_at > 0 && now - s->ping_at > s->o.health_timeout) {
        rc = DAEBUS_ECONN;
        snprintf(s->ctx->errstr, sizeof s->ctx->errstr, "no answer to PING for %.1fs",
                 s->o.health_timeout);
    } else if (rc == 0 && s->ping_at == 0 && now - s->last_rx > s->o.health_idle) {
        if (redisAppendCommand(s->ctx, "PING") == REDIS_OK)
            s->ping_at = now;
    }
    if (rc == 1 && daebus__redis_reply_demoted(r)) {
        rc = DAEBUS_ECONN;
        snprintf(s->ctx->errstr, sizeof s->ctx->errstr, "%.*s", daebus__utf8_prec(r->str, 100),
                 r->str);
        freeReplyObject(r);
    } else if (rc >= 0 && s->url.n_sentinels &&
               (s->epoch != daebus__redis_sentinel_epoch() ||
                now - s->role_at > s->o.health_idle)) {
        /* PUBLISH works on a replica too: a subscriber left on a demoted
         * master would hear only the publishers left there. Another
         * connection of this process saw the switch, or the sentinels say so. */
        s->role_at = now;
        if (s->epoch != daebus__redis_sentinel_epoch() ||
            daebus__redis_sentinel_moved(&s->url, s->ctx)) {
            if (rc == 1)
                freeReplyObject(r);
            rc = DAEBUS_ECONN;
            snprintf(s->ctx->errstr, sizeof s->ctx->errstr, "the sentinels name another master");
        }
    }
    if (rc < 0) {
        lost(s);
        return;
    }
    if (rc == 0) {
        drain_wake(s);
    } else {
        dispatch(s, r);
        freeReplyObject(r);
    }
    int us = s->o.on_tick ? s->o.on_tick(s->o.user, rc == 0) : -1;
    s->next_us = us < 0 ? s->o.poll_ms * 1000L : us;
}

static void ev_write(int fd)
{
    uint64_t one = 1;
    if (fd >= 0) {
        ssize_t n = write(fd, &one, sizeof one);
        (void)n;
    }
}

/* Wakes one waiting reader thread (lock held): a condition waiter, else the
 * relief. */
static void wake_follower(daebus__redis_sub *s)
{
    if (s->nwaiting > (s->has_relief ? 1 : 0))
        pthread_cond_signal(&s->role_cond);
    else if (s->has_relief)
        ev_write(s->relief_ev);
}

static void set_timer(int fd, long us)
{
    struct itimerspec t = {{0, 0}, {us / 1000000, (us % 1000000) * 1000}};
    timerfd_settime(fd, 0, &t, NULL);
}

/* Sets the relief's timer to fire in us unless it fires before (lock held). */
static void relief_timer_at(daebus__redis_sub *s, double now, long us)
{
    double due = now + us / 1e6;
    if (s->timer_at > 0 && s->timer_at <= due)
        return;
    set_timer(s->relief_timer, us);
    s->timer_at = due;
}

/* Holder: hands the role on (want: a reader thread takes it at once, else
 * it stays parked until woken or park_until). */
static void release_role(daebus__redis_sub *s, bool park)
{
    pthread_mutex_lock(&s->lock);
    s->holder = ROLE_NONE;
    s->parked = park && !s->want && !atomic_load(&s->stopping);
    if (s->parked) {
        atomic_store(&s->idle, 1);
        s->park_until = daebus__now_mono() + s->o.poll_ms / 1000.0;
    } else if (s->nwaiting) {
        wake_follower(s);
    }
    pthread_mutex_unlock(&s->lock);
}

/* Holder: runs the job a read left (run_here) after handing the role on.
 * With nothing else to read, the role is left free without waking anyone
 * and the relief's timer armed: a quick job takes it back (two timer system
 * calls, no context switch), a longer one finds the relief reading. With
 * more to read, or no relief, a follower is woken at once. Returns: true
 * when this thread holds the role again. */
static bool run_job(daebus__redis_sub *s)
{
    daebus__redis_job_fn *fn = s->job_fn;
    void *arg = s->job_arg;
    s->job_fn = NULL;
    atomic_fetch_add(&s->ran_here, 1);
    bool quick = daebus__redis_sub_drained(s);
    pthread_mutex_lock(&s->lock);
    bool armed = quick && s->has_relief && !atomic_load(&s->stopping);
    if (armed) {
        s->holder = ROLE_NONE;
        s->parked = false;
        s->armed = true;
        s->job_at = daebus__now_mono();
        /* the holder's next tick, if it is due before the watch */
        long us = s->next_us < WATCH_US ? s->next_us : WATCH_US;
        relief_timer_at(s, s->job_at, us > RELIEF_US ? us : RELIEF_US);
        pthread_mutex_unlock(&s->lock);
    } else {
        pthread_mutex_unlock(&s->lock);
        release_role(s, false);
    }
    fn(arg);
    if (!armed)
        return false;
    pthread_mutex_lock(&s->lock);
    bool back = s->holder == ROLE_NONE && s->armed && !s->finished;
    if (back) {
        s->holder = ROLE_THREAD;
        s->holder_thread = pthread_self();
        s->armed = false; /* the timer stays: it fires at most once for nothing */
    }
    pthread_mutex_unlock(&s->lock);
    return back;
}

/* Holder: may the role park? The owner says there is nothing to watch
 * (checked after idle is set: an owner that adds work after can_park
 * answered sees idle and wakes, daebus__redis_sub_watch). */
static bool may_park(daebus__redis_sub *s)
{
    if (!s->o.can_park || !s->ctx || buffered(s))
        return false;
    atomic_store(&s->idle, 1);
    if (s->o.can_park(s->o.user))
        return true;
    atomic_store(&s->idle, 0);
    return false;
}

/* Holds the role on a reader thread until it is handed on: after a read
 * that left a job (run_here), when parked, or when stopping (the holder
 * then closes the connection and reports STOPPED). */
static void hold_role(daebus__redis_sub *s)
{
    for (;;) {
        if (atomic_load(&s->stopping)) {
            if (s->ctx) {
                redisFree(s->ctx);
                s->ctx = NULL;
            }
            atomic_store(&s->connected, 0);
            emit(s, DAEBUS__REDIS_STOPPED, false, 0, NULL, 0);
            pthread_mutex_lock(&s->lock);
            s->finished = true;
            s->holder = ROLE_NONE;
            pthread_cond_broadcast(&s->role_cond);
            ev_write(s->relief_ev);
            pthread_mutex_unlock(&s->lock);
            return;
        }
        if (!s->ctx) {
            connect_stage(s);
            continue;
        }
        read_stage(s);
        if (s->job_fn) {
            if (run_job(s))
                continue;
            return;
        }
        if (may_park(s)) {
            release_role(s, true);
            return;
        }
    }
}

/* The relief's wait (lock held, released meanwhile): until a job that left
 * the role free has run RELIEF_US (the role is free now; its tick may be due
 * sooner), its timer fires with the role taken back, or it is woken (a
 * follower wanted, stopping). */
static void relief_wait(daebus__redis_sub *s)
{
    s->has_relief = true;
    for (;;) {
        pthread_mutex_unlock(&s->lock);
        struct pollfd p[2] = {{.fd = s->relief_timer, .events = POLLIN},
                              {.fd = s->relief_ev, .events = POLLIN}};
        poll(p, 2, -1);
        uint64_t n;
        for (int i = 0; i < 2; i++)
            if (p[i].revents & POLLIN) {
                ssize_t r = read(p[i].fd, &n, sizeof n);
                (void)r;
            }
        pthread_mutex_lock(&s->lock);
        if (p[0].revents & POLLIN)
            s->timer_at = 0;
        if ((p[1].revents & POLLIN) || atomic_load(&s->stopping) || !s->armed ||
            s->holder != ROLE_NONE)
            break;
        double now = daebus__now_mono();
        long young = RELIEF_US - (long)((now - s->job_at) * 1e6);
        if (young <= 0)
            break; /* the job has run long enough: take the role */
        relief_timer_at(s, now, young);
    }
    s->has_relief = false;
    s->armed = false; /* taken below, if still free */
}

static void *reader_main(void *arg)
{
    daebus__redis_sub *s = arg;
    daebus__sigpipe_block_thread();
    pthread_mutex_lock(&s->lock);
    while (!s->finished) {
        bool stopping = atomic_load(&s->stopping);
        if (s->holder == ROLE_NONE && (!s->parked || s->want || stopping)) {
            s->holder = ROLE_THREAD;
            s->holder_thread = pthread_self();
            if (s->parked) /* a look (health, a wake), not a long wait: park again soon */
                s->next_us = 0;
            s->parked = false;
            s->want = false;
            atomic_store(&s->idle, 0);
            pthread_mutex_unlock(&s->lock);
            hold_role(s);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        s->nwaiting++;
        if (s->relief_ev >= 0 && !s->has_relief && !s->parked) {
            relief_wait(s);
        } else if (s->holder == ROLE_NONE) { /* parked: read again at park_until (health, expiry) */
            daebus__deadline d = {s->park_until};
            if (daebus__cond_wait_until(&s->role_cond, &s->lock, d) == ETIMEDOUT)
                s->want = true;
        } else {
            pthread_cond_wait(&s->role_cond, &s->lock);
        }
        s->nwaiting--;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

bool daebus__redis_sub_run_here(daebus__redis_sub *s, daebus__redis_job_fn *fn, void *arg)
{
    bool ok = false;
    pthread_mutex_lock(&s->lock);
    if (s->holder == ROLE_THREAD && pthread_equal(s->holder_thread, pthread_self()) && !s->job_fn &&
        s->nwaiting > 0 && !atomic_load(&s->stopping)) {
        s->job_fn = fn;
        s->job_arg = arg;
        ok = true;
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

void daebus__redis_sub_role_counts(daebus__redis_sub *s, unsigned long *ran_here,
                                   unsigned long *lent_reads)
{
    if (ran_here)
        *ran_here = atomic_load(&s->ran_here);
    if (lent_reads)
        *lent_reads = atomic_load(&s->lent_reads);
}

/* ---- borrowing the role ---- */

void daebus__redis_sub_watch(daebus__redis_sub *s)
{
    if (s && atomic_load(&s->idle))
        daebus__redis_sub_wake(s);
}

bool daebus__redis_sub_borrow(daebus__redis_sub *s)
{
    bool ok = false;
    pthread_mutex_lock(&s->lock);
    if (s->holder == ROLE_NONE && s->parked && !s->want && !s->ops && !s->stash && s->ctx &&
        !atomic_load(&s->stopping)) {
        s->holder = ROLE_LENT;
        ok = true;
    }

    pthread_mutex_unlock(&s->lock);
    return ok;
}

int daebus__redis_sub_borrow_read(daebus__redis_sub *s, long timeout_us)
{
    redisReply *r = NULL;
    int rc = daebus__redis_read(s->ctx, &r, timeout_us, s->wake[0]);
    if (rc < 0)
        return rc; /* the reader thread finds the error again and reports it */
    if (rc == 0)
        drain_wake(s); /* before want is checked: a wake after this leaves its byte */
    pthread_mutex_lock(&s->lock);
    bool give_up = s->want || atomic_load(&s->stopping);
    if (rc == 1 && (give_up || daebus__redis_reply_demoted(r))) {
        s->stash = r; /* maybe not the borrower's: the reader thread delivers it */
        r = NULL;
        give_up = true;
    }
    pthread_mutex_unlock(&s->lock);
    if (give_up)
        return DAEBUS_ECLOSED;
    if (rc == 1) {
        s->last_rx = daebus__now_mono();
        s->ping_at = 0;
        atomic_fetch_add(&s->lent_reads, 1);
        dispatch(s, r);
        freeReplyObject(r);
    }
    return rc;
}

void daebus__redis_sub_give_back(daebus__redis_sub *s, bool need_reader)
{
    pthread_mutex_lock(&s->lock);
    DAEBUS__ASSERT(s->holder == ROLE_LENT);
    s->holder = ROLE_NONE;
    if (need_reader || s->stash || s->want || atomic_load(&s->stopping)) {
        s->want = true;
        pthread_cond_signal(&s->role_cond);
    }
    pthread_mutex_unlock(&s->lock);
}

/* ---- life cycle ---- */

daebus__redis_sub *daebus__redis_sub_create(const daebus__redis_sub_opts *opts)
{
    daebus__redis_sub *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->o = *opts;
    s->url = *opts->url;
    s->o.url = &s->url;
    if (s->o.connect_timeout <= 0)
        s->o.connect_timeout = 2.0;
    if (s->o.health_idle <= 0)
        s->o.health_idle = 10.0;
    if (s->o.health_timeout <= 0)
        s->o.health_timeout = s->o.health_idle;
    if (s->o.poll_ms <= 0)
        s->o.poll_ms = 500;
    if (s->o.readers <= 0)
        s->o.readers = 1;
    daebus__backoff_init(&s->backoff, s->o.reconnect_initial > 0 ? s->o.reconnect_initial : 0.1,
                         s->o.reconnect_max > 0 ? s->o.reconnect_max : 5.0);
    daebus__redis_url_describe(&s->url, s->where, sizeof s->where);
    s->ops_tail = &s->ops;
    s->wake[0] = s->wake[1] = -1;
    pthread_mutex_init(&s->lock, NULL);
    daebus__cond_init(&s->cond);
    daebus__cond_init(&s->role_cond);
    s->threads = calloc((size_t)s->o.readers, sizeof *s->threads);
    s->relief_timer = s->relief_ev = -1;
    if (s->o.readers > 1) {
        s->relief_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        s->relief_ev = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    }
    if (!s->threads || pipe(s->wake) != 0 ||
        (s->o.readers > 1 && (s->relief_timer < 0 || s->relief_ev < 0))) {
        daebus__redis_sub_destroy(s);
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(s->wake[i], F_SETFL, fcntl(s->wake[i], F_GETFL) | O_NONBLOCK);
        fcntl(s->wake[i], F_SETFD, FD_CLOEXEC);
    }
    return s;
}

int daebus__redis_sub_start(daebus__redis_sub *s, bool connect_now, daebus_error *err)
{
    atomic_store(&s->stopping, 0);
    s->holder = ROLE_NONE;
    s->parked = s->want = s->finished = s->has_relief = s->armed = false;
    if (s->relief_timer >= 0 && s->timer_at > 0)
        set_timer(s->relief_timer, 0); /* from a run before */
    s->timer_at = 0;
    atomic_store(&s->idle, 0);
    if (connect_now) {
        int rc = sub_connect(s, err);
        if (rc != 0)
            return rc;
        s->ever_up = true;
        if (s->exec) /* no UP event for this one */
            freeReplyObject(s->exec);
        s->exec = NULL;
    }
    for (int i = 0; i < s->o.readers; i++) {
        if (pthread_create(&s->threads[i], NULL, reader_main, s) != 0) {
            daebus__redis_sub_stop(s);
            return daebus_error_set(err, DAEBUS_ENOMEM,
                                    "redis subscriber: cannot start its threads");
        }
        s->nthreads = i + 1;
    }
    return 0;
}

bool daebus__redis_sub_connected(const daebus__redis_sub *s)
{
    return s && atomic_load(&((daebus__redis_sub *)s)->connected);
}

const char *daebus__redis_sub_where(const daebus__redis_sub *s)
{
    return s->where;
}

void daebus__redis_sub_stop(daebus__redis_sub *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, 1);
    daebus__redis_sub_wake(s);
    ev_write(s->relief_ev);
    for (int i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    s->nthreads = 0;
    if (s->stash) {
        freeReplyObject(s->stash);
        s->stash = NULL;
    }
    if (s->ctx) { /* connected by start(connect_now) but never run */
        redisFree(s->ctx);
        s->ctx = NULL;
    }
    atomic_store(&s->connected, 0);
    pthread_mutex_lock(&s->lock);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void daebus__redis_sub_destroy(daebus__redis_sub *s)
{
    if (!s)
        return;
    daebus__redis_sub_stop(s);
    for (size_t i = 0; i < s->nchannels; i++)
        free(s->channels[i]);
    free(s->channels);
    free_ops(s->ops);
    for (int i = 0; i < 2; i++)
        if (s->wake[i] >= 0)
            close(s->wake[i]);
    if (s->relief_timer >= 0)
        close(s->relief_timer);
    if (s->relief_ev >= 0)
        close(s->relief_ev);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    pthread_cond_destroy(&s->role_cond);
    free(s->threads);
    free(s);
}
