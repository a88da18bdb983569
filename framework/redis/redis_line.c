/* redis_line.c - one connection, commands sent and answered apart (see redis_line.h).
 *
 * Writers format their commands and write them with send() on the socket
 * under the lock; the one reader (the first waiter that needs a reply not yet
 * read) reads with hiredis's reader outside the lock, so a send never waits
 * for a read. Only the reader touches the context's reader state; the socket
 * itself is shared (a write and a read may run at once, as on any socket).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "daebus/log.h"
#include "clock.h"
#include "redis_line.h"
#include "redis_sentinel.h"
#include "utf8.h"

#define RING DAEBUS__REDIS_LINE_RING

typedef struct line_slot {
    unsigned long long ticket;
    int n;
    int have;  /* replies read so far (a pump may read part of a ticket's) */
    bool ok;   /* answered and not yet taken */
    double at; /* when its last reply was read (monotonic s; 0: not answered) */
    redisReply *r[DAEBUS__REDIS_LINE_MAX_REPLIES];
} line_slot;

struct daebus__redis_line {
    daebus__redis_pub_opts o;
    daebus__redis_url url;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    redisContext *ctx; /* NULL: down */
    bool reading;      /* a waiter reads ctx outside the lock */
    bool connecting, closed;
    double last_try;
    unsigned epoch;                    /* daebus__redis_sentinel_epoch() when ctx was made */
    unsigned long long sent, answered; /* tickets; answered <= sent */
    line_slot ring[RING];
};

daebus__redis_line *daebus__redis_line_create(const daebus__redis_pub_opts *opts)
{
    daebus__redis_line *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->o = *opts;
    l->url = *opts->url;
    l->o.url = &l->url;
    if (!l->o.log_component)
        l->o.log_component = "redis";
    pthread_mutex_init(&l->lock, NULL);
    daebus__cond_init(&l->cond);
    return l;
}

static void free_slot(line_slot *s)
{
    for (int i = 0; i < DAEBUS__REDIS_LINE_MAX_REPLIES; i++) {
        if (s->r[i])
            freeReplyObject(s->r[i]);
        s->r[i] = NULL;
    }
    s->ok = false;
    s->have = 0;
    s->at = 0;
}

/* The connection is gone (lock held, no reader): every ticket not answered fails. */
static void drop_ctx(daebus__redis_line *l)
{
    if (l->ctx)
        redisFree(l->ctx);
    l->ctx = NULL;
    for (unsigned long long t = l->answered + 1; t <= l->sent; t++)
        free_slot(&l->ring[t % RING]);
    l->answered = l->sent;
    pthread_cond_broadcast(&l->cond);
}

void daebus__redis_line_repair(daebus__redis_line *l)
{
    if (!l)
        return;
    double now = daebus__now_mono();
    pthread_mutex_lock(&l->lock);
    bool go = !l->closed && !l->ctx && !l->connecting &&
              (l->last_try == 0 || now - l->last_try >= l->o.retry_after);
    if (go) {
        l->connecting = true;
        l->last_try = now;
    }
    pthread_mutex_unlock(&l->lock);
    if (!go)
        return;
    daebus_error e = {0};
    redisContext *c =
        daebus__redis_connect(&l->url, l->o.connect_timeout, l->o.command_timeout, &e);
    unsigned epoch = daebus__redis_sentinel_epoch(); /* this connect may have moved it */
    if (!c)
        DAEBUS_LOG_DEBUGF(l->o.log_component, "claim line: %s", e.message);
    pthread_mutex_lock(&l->lock);
    l->connecting = false;
    if (c && !l->closed && !l->ctx) {
        l->ctx = c;
        l->epoch = epoch;
        c = NULL;
    }
    pthread_mutex_unlock(&l->lock);
    if (c)
        redisFree(c);
}

/* The commands in one buffer (RESP). Returns: its length, or -1. */
static long long format_all(const daebus__redis_cmd *cmds, int n, char **out)
{
    char *part[DAEBUS__REDIS_LINE_MAX_REPLIES];
    long long len[DAEBUS__REDIS_LINE_MAX_REPLIES], total = 0;
    int k = 0;
    for (; k < n; k++) {
        len[k] = redisFormatCommandArgv(&part[k], cmds[k].argc, cmds[k].argv, cmds[k].argvlen);
        if (len[k] < 0)
            break;
        total += len[k];
    }
    char *buf = k == n ? malloc((size_t)total) : NULL;
    for (long long i = 0, o = 0; i < k; o += len[i], i++) {
        if (buf)
            memcpy(buf + o, part[i], (size_t)len[i]);
        redisFreeCommand(part[i]);
    }
    *out = buf;
    return buf ? total : -1;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* With nothing to read, a readable connection was closed by the server (a
 * Redis restart while the line was idle): dropped before a send goes into it
 * (lock held). */
static void check_idle(daebus__redis_line *l)
{
    if (!l->ctx || l->reading || l->answered != l->sent)
        return;
    struct pollfd p = {.fd = l->ctx->fd, .events = POLLIN};
    /* Or the master moved (Sentinel): the line is on the old one. */
    if (poll(&p, 1, 0) != 0 || (l->url.n_sentinels && l->epoch != daebus__redis_sentinel_epoch()))
        drop_ctx(l);
}

unsigned long long daebus__redis_line_send(daebus__redis_line *l, const daebus__redis_cmd *cmds,
                                           int n)
{
    if (!l || n < 1 || n > DAEBUS__REDIS_LINE_MAX_REPLIES)
        return 0;
    char *buf = NULL;
    long long len = format_all(cmds, n, &buf);
    if (len < 0)
        return 0;
    unsigned long long t = 0;
    pthread_mutex_lock(&l->lock);
    check_idle(l);
    if (!l->closed && l->ctx && l->sent - l->answered < RING - 1) {
        if (write_all(l->ctx->fd, buf, (size_t)len) == 0) {
            t = ++l->sent;
            line_slot *s = &l->ring[t % RING];
            free_slot(s); /* an older ticket nobody took */
            s->ticket = t;
            s->n = n;
        } else if (l->reading) {
            /* The last command is incomplete, so not run: t stays 0. The
             * reader sees the end and drops the connection. */
            shutdown(l->ctx->fd, SHUT_RDWR);
        } else {
            drop_ctx(l);
        }
    }
    pthread_mutex_unlock(&l->lock);
    free(buf);
    return t;
}

/* Reads n replies (no lock held; this thread is the reader). */
static int read_replies(redisContext *c, redisReply **got, int n)
{
    for (int i = 0; i < n; i++) {
        void *r = NULL;
        for (;;) {
            if (redisGetReplyFromReader(c, &r) != REDIS_OK)
                return -1;
            if (r)
                break;
            if (redisBufferRead(c) != REDIS_OK)
                return -1;
        }
        got[i] = r;
    }
    return 0;
}

/* The read failed (lock held, no reader): the line is dropped. */
static void read_failed(daebus__redis_line *l, redisContext *c)
{
    if (!l->closed)
        DAEBUS_LOG_WARNF(l->o.log_component, "claim line: %s; %llu claim(s) not answered",
                         c->errstr[0] ? c->errstr : "connection lost", l->sent - l->answered);
    drop_ctx(l);
}

/* Slot s (the oldest ticket not answered) has all its replies (lock held).
 * Returns: false when the line was dropped (a demoted master answered). */
static bool complete(daebus__redis_line *l, line_slot *s)
{
    s->ok = true;
    s->at = daebus__now_mono();
    l->answered++;
    pthread_cond_broadcast(&l->cond);
    for (int i = 0; i < s->n; i++)
        if (daebus__redis_reply_demoted(s->r[i])) {
            /* Written to a demoted master: reconnect through the sentinels. */
            DAEBUS_LOG_WARNF(l->o.log_component, "claim line: %.*s; reconnecting",
                             daebus__utf8_prec(s->r[i]->str, 120), s->r[i]->str);
            drop_ctx(l);
            return false;
        }
    return true;
}

/* Reads the replies of the oldest ticket not answered (lock held on entry
 * and on return; released while reading). */
static void read_next(daebus__redis_line *l)
{
    l->reading = true;
    redisContext *c = l->ctx;
    line_slot *s = &l->ring[(l->answered + 1) % RING];
    int have = s->have, n = s->n;
    redisReply *got[DAEBUS__REDIS_LINE_MAX_REPLIES] = {NULL};
    pthread_mutex_unlock(&l->lock);
    int rc = read_replies(c, got + have, n - have);
    pthread_mutex_lock(&l->lock);
    l->reading = false;
    if (rc == 0) {
        for (int i = have; i < n; i++)
            s->r[i] = got[i];
        s->have = n;
        complete(l, s);
        return;
    }
    for (int i = have; i < n; i++)
        if (got[i])
            freeReplyObject(got[i]);
    read_failed(l, c);
}

bool daebus__redis_line_pump(daebus__redis_line *l)
{
    if (!l)
        return false;
    pthread_mutex_lock(&l->lock);
    if (l->ctx && !l->reading && l->answered < l->sent) {
        redisContext *c = l->ctx;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        /* Readable: one recv that cannot block (the lock is held across it:
         * no reader can start meanwhile). */
        if (poll(&p, 1, 0) > 0 && redisBufferRead(c) != REDIS_OK) {
            read_failed(l, c);
        } else {
            while (l->ctx && l->answered < l->sent) {
                line_slot *s = &l->ring[(l->answered + 1) % RING];
                void *r = NULL;
                if (redisGetReplyFromReader(c, &r) != REDIS_OK) {
                    read_failed(l, c);
                    break;
                }
                if (!r)
                    break;
                s->r[s->have++] = r;
                if (s->have == s->n && !complete(l, s))
                    break;
            }
        }
    }
    bool pending = l->answered < l->sent;
    pthread_mutex_unlock(&l->lock);
    return pending;
}

bool daebus__redis_line_answered_at(daebus__redis_line *l, unsigned long long ticket, double *at)
{
    if (!l || ticket == 0)
        return false;
    pthread_mutex_lock(&l->lock);
    line_slot *s = &l->ring[ticket % RING];
    bool known = s->ticket == ticket && ticket <= l->answered && s->at > 0;
    if (known)
        *at = s->at;
    pthread_mutex_unlock(&l->lock);
    return known;
}

/* Until ticket is answered or failed (lock held). */
static void wait_answer(daebus__redis_line *l, unsigned long long ticket)
{
    while (ticket <= l->sent && l->answered < ticket) {
        if (l->reading)
            pthread_cond_wait(&l->cond, &l->lock);
        else if (l->ctx)
            read_next(l);
        else
            drop_ctx(l);
    }
}

int daebus__redis_line_wait_shared(daebus__redis_line *l, unsigned long long ticket)
{
    if (!l || ticket == 0)
        return DAEBUS_ECONN;
    pthread_mutex_lock(&l->lock);
    wait_answer(l, ticket);
    line_slot *s = &l->ring[ticket % RING];
    int rc = s->ticket == ticket && s->ok ? 0 : DAEBUS_ECONN;
    for (int i = 0; rc == 0 && i < s->n; i++)
        if (!s->r[i] || s->r[i]->type == REDIS_REPLY_ERROR)
            rc = DAEBUS_ECONN;
    pthread_mutex_unlock(&l->lock);
    return rc;
}

int daebus__redis_line_wait(daebus__redis_line *l, unsigned long long ticket, redisReply **replies,
                            int n)
{
    if (!l || ticket == 0)
        return DAEBUS_ECONN;
    pthread_mutex_lock(&l->lock);
    wait_answer(l, ticket);
    line_slot *s = &l->ring[ticket % RING];
    int rc = s->ticket == ticket && s->ok && s->n == n ? 0 : DAEBUS_ECONN;
    if (rc == 0 && replies) {
        memcpy(replies, s->r, (size_t)n * sizeof *replies);
        memset(s->r, 0, sizeof s->r);
        s->ok = false;
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

bool daebus__redis_line_answered(daebus__redis_line *l, unsigned long long ticket)
{
    if (!l)
        return true;
    pthread_mutex_lock(&l->lock);
    bool done = l->answered >= ticket;
    pthread_mutex_unlock(&l->lock);
    return done;
}

unsigned long long daebus__redis_line_last(daebus__redis_line *l)
{
    if (!l)
        return 0;
    pthread_mutex_lock(&l->lock);
    unsigned long long t = l->sent;
    pthread_mutex_unlock(&l->lock);
    return t;
}

void daebus__redis_line_close(daebus__redis_line *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    l->closed = true;
    if (l->reading)
        shutdown(l->ctx->fd, SHUT_RDWR); /* the reader drops it */
    else
        drop_ctx(l);
    pthread_mutex_unlock(&l->lock);
}

void daebus__redis_line_destroy(daebus__redis_line *l)
{
    if (!l)
        return;
    daebus__redis_line_close(l);
    for (int i = 0; i < RING; i++)
        free_slot(&l->ring[i]);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
