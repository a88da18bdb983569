/* redis_conn.c - connecting (AUTH, SELECT), the size guard and waiting for replies.
 *
 * URLs are parsed in redis_url.c. Connections are blocking hiredis contexts; the reader polls the
 * socket itself before asking hiredis to read, so that a reader thread can
 * wait with a time-out and be woken through a pipe without killing the
 * context (a hiredis read time-out marks the context as failed).
 */
#define _GNU_SOURCE /* ppoll */
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <hiredis/sds.h>
#include "daebus/log.h"
#include "redis_conn.h"
#include "redis_sentinel.h"
#include "utf8.h"

/* ---- SIGPIPE ---- */

void daebus__sigpipe_block(daebus__sigpipe_guard *g)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigemptyset(&pending);
    g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

void daebus__sigpipe_restore(daebus__sigpipe_guard *g)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigemptyset(&pending);
    if (!g->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

void daebus__sigpipe_block_thread(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* ---- writing ---- */

/* Writes c's output buffer with send(MSG_NOSIGNAL): a closed peer gives EPIPE,
 * never SIGPIPE, so no signal-mask system calls are needed around it. */
int daebus__redis_flush(redisContext *c)
{
    while (sdslen(c->obuf) > 0) {
        ssize_t n = send(c->fd, c->obuf, sdslen(c->obuf), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            c->err = REDIS_ERR_IO;
            snprintf(c->errstr, sizeof c->errstr, "%s", n < 0 ? strerror(errno) : "write failed");
            return DAEBUS_ECONN;
        }
        sdsrange(c->obuf, (int)n, -1);
    }
    return 0;
}

/* ---- lost connections, process-wide ---- */

static atomic_uint faults;

void daebus__redis_fault_note(void)
{
    atomic_fetch_add_explicit(&faults, 1, memory_order_release);
}

unsigned daebus__redis_faults(void)
{
    return atomic_load_explicit(&faults, memory_order_acquire);
}

/* ---- connecting ---- */

struct timeval daebus__redis_tv(double s)
{
    struct timeval tv;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    return tv;
}

static int run_simple(redisContext *c, redisReply **rep, int argc, const char **argv)
{
    *rep = redisCommandArgv(c, argc, argv, NULL);
    return *rep ? 0 : -1;
}

redisContext *daebus__redis_connect(const daebus__redis_url *url, double connect_timeout,
                                    double command_timeout, daebus_error *err)
{
    daebus__sigpipe_guard g;
    daebus__sigpipe_block(&g);
    redisContext *c =
        url->n_sentinels > 0
            ? daebus__redis_sentinel_connect(url, connect_timeout, command_timeout, err)
            : daebus__redis_connect_direct(url, connect_timeout, command_timeout, err);
    daebus__sigpipe_restore(&g);
    return c;
}

redisContext *daebus__redis_connect_direct(const daebus__redis_url *url, double connect_timeout,
                                           double command_timeout, daebus_error *err)
{
    char where[320];
    daebus__redis_url_describe(url, where, sizeof where);
    if (connect_timeout <= 0)
        connect_timeout = 2.0;
    struct timeval tv = daebus__redis_tv(connect_timeout);
    redisContext *c = url->is_unix ? redisConnectUnixWithTimeout(url->path, tv)
                                   : redisConnectWithTimeout(url->host, url->port, tv);
    if (!c) {
        daebus_error_set(err, DAEBUS_ENOMEM, "redis %s: out of memory", where);
        return NULL;
    }
    if (c->err) {
        daebus_error_set(err, DAEBUS_ECONN, "redis %s: %s", where, c->errstr);
        redisFree(c);
        return NULL;
    }
    if (!url->is_unix)
        redisEnableKeepAlive(c);
    /* AUTH and SELECT are bounded by the connect time-out too. */
    redisSetTimeout(c, tv);
    redisReply *r = NULL;
    if (url->password[0]) {
        const char *argv[3] = {"AUTH", url->username, url->password};
        int rc = url->username[0] ? run_simple(c, &r, 3, argv)
                                  : run_simple(c, &r, 2, (const char *[]){"AUTH", url->password});
        if (rc != 0) {
            daebus_error_set(err, DAEBUS_ECONN, "redis %s: AUTH: %s", where, c->errstr);
            redisFree(c);
            return NULL;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            daebus_error_set(err, DAEBUS_EAUTH, "redis %s: AUTH refused: %.*s", where,
                             daebus__utf8_prec(r->str, 120), r->str);
            freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    if (url->db > 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", url->db);
        if (run_simple(c, &r, 2, (const char *[]){"SELECT", db}) != 0) {
            daebus_error_set(err, DAEBUS_ECONN, "redis %s: SELECT: %s", where, c->errstr);
            redisFree(c);
            return NULL;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            int code = strstr(r->str, "NOAUTH") ? DAEBUS_EAUTH : DAEBUS_ECONN;
            daebus_error_set(err, code, "redis %s: SELECT %s refused: %.*s", where, db,
                             daebus__utf8_prec(r->str, 120), r->str);
            freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    if (command_timeout > 0)
        redisSetTimeout(c, daebus__redis_tv(command_timeout));
    else
        redisSetTimeout(c, (struct timeval){0, 0});
    return c;
}

/* ---- memory after a refused message ---- */

/* Memory after a refused message. hiredis holds the whole message once in
 * its reader buffer (grown by realloc while it arrives) and frees that
 * buffer only at a later read that finds it empty: release_buffer() replaces
 * it as soon as the cut reply is returned, with a copy of what follows it
 * (at most one socket read, 16 KiB), so an idle service does not keep it.
 *
 * glibc would still keep most of it. Freeing an mmapped block raises the
 * mmap threshold to that block's size (up to 32 MiB) and the trim threshold
 * to twice that, so after one 20 MB message the next big buffer is grown in
 * the reader thread's arena, and the top of a thread arena is given back
 * neither below the raised trim threshold nor by malloc_trim(). Measured on
 * a service (tests/integration/hardening/test_hard_busmem.c, baseline RSS
 * 2.3 MB): a 20 MB message left nothing, but a 100 MB one after it left
 * 33 MB resident in the arena for good, even with malloc_trim(0) after
 * each refused message. With the threshold fixed at glibc's default
 * (128 KiB, which turns the dynamic adjustment off) every buffer that large
 * is mmapped and unmapped when freed: RSS is 2.6-2.8 MB after bursts of 20
 * and 100 MB messages on every channel, with or without malloc_trim (so
 * there is none). The first guarded connection fixes it, unless the
 * operator chose (MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES). It is
 * process-wide: a program that mallocs and frees blocks over 128 KiB in a
 * loop pays an mmap/munmap for each, as with glibc before 2.4. */
static void fix_mmap_threshold(void)
{
#ifdef __GLIBC__
    const char *t = getenv("GLIBC_TUNABLES");
    if (getenv("MALLOC_MMAP_THRESHOLD_") || (t && strstr(t, "mmap_threshold")))
        return;
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
}

static pthread_once_t tune_once = PTHREAD_ONCE_INIT;

static void release_buffer(redisReader *r)
{
    size_t left = r->len - r->pos;
    if (left <= 1024 * 1024 && sdsalloc(r->buf) > r->maxbuf) {
        sds fresh = sdsnewlen(r->buf + r->pos, left);
        if (fresh) {
            sdsfree(r->buf);
            r->buf = fresh;
            r->pos = 0;
            r->len = left;
        }
    }
}

/* ---- size guard ---- */

/* The reader's createString: a string over the limit is neither copied nor
 * parsed; the reply gets its first bytes only and the guard notes the rest. */
static void *guarded_create_string(const redisReadTask *task, char *str, size_t len)
{
    daebus__redis_guard *g = task->privdata;
    if (len <= g->max_string)
        return g->orig->createString(task, str, len);
    size_t keep = len < DAEBUS__REDIS_CUT_KEEP ? len : DAEBUS__REDIS_CUT_KEEP;
    g->next_cut_len = len;
    g->next_tail_len = keep;
    memcpy(g->next_tail, str + len - keep, keep);
    return g->orig->createString(task, str, keep);
}

static daebus__redis_guard *guard_of(redisContext *c)
{
    redisReader *r = c->reader;
    if (r && r->fn && r->fn->createString == guarded_create_string)
        return r->privdata;
    return NULL;
}

void daebus__redis_guard_attach(redisContext *c, daebus__redis_guard *g, size_t max_string)
{
    redisReader *r = c->reader;
    pthread_once(&tune_once, fix_mmap_threshold);
    if (r->fn != &g->fns) {
        g->orig = r->fn;
        g->fns = *r->fn;
        g->fns.createString = guarded_create_string;
    }
    g->max_string = max_string;
    g->cut_len = g->tail_len = g->next_cut_len = g->next_tail_len = 0;
    r->fn = &g->fns;
    r->privdata = g;
}

/* A reply is about to be returned: publish what the guard saw while it was read. */
static void reply_done(redisContext *c)
{
    daebus__redis_guard *g = guard_of(c);
    if (!g)
        return;
    g->cut_len = g->next_cut_len;
    g->tail_len = g->next_tail_len;
    memcpy(g->tail, g->next_tail, g->tail_len);
    g->next_cut_len = g->next_tail_len = 0;
    if (g->cut_len)
        release_buffer(c->reader);
}

void daebus__backoff_init(daebus__backoff *b, double initial, double max)
{
    b->initial = initial > 0 ? initial : 0.1;
    b->max = max >= b->initial ? max : b->initial;
    b->next = b->initial;
}

double daebus__backoff_next(daebus__backoff *b)
{
    double now = b->next;
    b->next = now * 2 > b->max ? b->max : now * 2;
    return now;
}

void daebus__backoff_reset(daebus__backoff *b)
{
    b->next = b->initial;
}

/* ---- reading ---- */

int daebus__redis_read(redisContext *c, redisReply **out, long timeout_us, int wake_fd)
{
    void *reply = NULL;
    daebus__redis_guard *g = guard_of(c);
    *out = NULL;
    if (g)
        g->got_bytes = 0;
    if (c->err)
        return DAEBUS_ECONN;
    /* A reply may already be buffered. */
    if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
        return DAEBUS_ECONN;
    if (reply) {
        reply_done(c);
        *out = reply;
        return 1;
    }
    /* Flush pending output first (SUBSCRIBE written with redisAppendCommand). */
    if (daebus__redis_flush(c) != 0)
        return DAEBUS_ECONN;
    struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = wake_fd, .events = POLLIN}};
    /* Microseconds: a primary's paced marker is due in a fraction of a ms. */
    struct timespec ts = {timeout_us / 1000000, (timeout_us % 1000000) * 1000};
    int n = ppoll(p, wake_fd >= 0 ? 2 : 1, timeout_us < 0 ? NULL : &ts, NULL);
    if (n < 0)
        return errno == EINTR ? 0 : DAEBUS_ECONN;
    if (n == 0)
        return 0;
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        if (redisBufferRead(c) != REDIS_OK)
            return DAEBUS_ECONN;
        if (g)
            g->got_bytes = 1;
        if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
            return DAEBUS_ECONN;
        if (reply) {
            reply_done(c);
            *out = reply;
            return 1;
        }
    }
    return 0;
}
