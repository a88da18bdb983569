/* bus_durable.c - durable actions: the reader of the request stream.
 *
 * One reader thread per bus, with a Redis connection of its own, takes the
 * entries of daebus:<service>:requests as consumer <instance id> of the
 * group "daebus" (created at start, id 0: entries added before any replica
 * ran are read). It asks for no more entries than the worker pool can start
 * now, so an idle replica is never starved while another one queues. Its
 * periodic jobs (periodic_jobs: one call site each): every visibility/3 it
 * refreshes the entries its workers run (bus_durable_finish.c: no other
 * replica takes them while they run), every visibility/2 it claims
 * (XAUTOCLAIM) the entries another replica took and did not complete within
 * the visibility time-out (it crashed). Each batch of entries is checked in
 * one round trip and handed out (bus_durable_batch.c); a final reply goes
 * through one script (bus_durable_finish.c, bus_durable_lua.h). A crash
 * leaves the entry pending; a stop leaves the queued ones pending for
 * another replica.
 *
 * The blocking read waits at most DURABLE_BLOCK_MS (less when a periodic
 * job is due sooner) and the stop wakes it through a pipe, so bus_stop
 * never waits for Redis.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "daebus/app.h"
#include "daebus/log.h"
#include "bus_durable_gc.h"
#include "bus_durable_lua.h"
#include "bus_durable_reader.h"
#include "clock.h"
#include "redis_conn.h"

#define LOGC             DAEBUS__BUS_LOGC
#define DURABLE_BLOCK_MS 500
/* A read goes ahead with a batch's checks only if it may block this long
 * before a periodic job is due. */
#define DURABLE_AHEAD_MIN_MS 5

/* ---- the reader's connection ---- */

/* Waits for one reply; the stop wakes a blocking read (wake). Returns: the
 * reply, or NULL (connection lost, time-out, or stopping). */
static redisReply *wait_reply(daebus__durable *d, double seconds, bool wake)
{
    daebus__deadline until = daebus__deadline_in(seconds);
    for (;;) {
        redisReply *r = NULL;
        double left = daebus__deadline_left(until);
        int rc = daebus__redis_read(d->c, &r, (long)(left * 1e6), wake ? d->wake[0] : -1);
        if (rc == 1)
            return r;
        if (rc < 0 || daebus__deadline_passed(until) ||
            (wake && (atomic_load(&d->stop) || atomic_load(&d->draining))))
            return NULL;
    }
}

void daebus__durable_close(daebus__durable *d)
{
    if (d->c)
        redisFree(d->c);
    d->c = NULL;
    d->ahead_ms = 0;
}

redisReply *daebus__durable_call(daebus__durable *d, int argc, const char **argv,
                                 const size_t *lens, double block_s)
{
    if (!d->c)
        return NULL;
    redisReply *r = NULL;
    if (redisAppendCommandArgv(d->c, argc, argv, lens) == REDIS_OK)
        r = wait_reply(d, block_s + d->bus->opts.command_timeout, block_s > 0);
    if (!r)
        daebus__durable_close(d);
    return r;
}

bool daebus__durable_pipeline(daebus__durable *d, int n, const daebus__redis_cmd *cmds, int nread,
                              redisReply **out)
{
    int sent = 0, got = 0;
    while (d->c && sent < n &&
           redisAppendCommandArgv(d->c, cmds[sent].argc, cmds[sent].argv, cmds[sent].argvlen) ==
               REDIS_OK)
        sent++;
    while (sent == n && got < nread &&
           (out[got] = wait_reply(d, d->bus->opts.command_timeout, false)) != NULL)
        got++;
    if (sent == n && got == nread)
        return true;
    while (got > 0)
        freeReplyObject(out[--got]);
    daebus__durable_close(d);
    return false;
}

bool daebus__durable_is_error(const redisReply *r, const char *prefix)
{
    return r && r->type == REDIS_REPLY_ERROR &&
           (!prefix || (r->str && strncmp(r->str, prefix, strlen(prefix)) == 0));
}

redisReply *daebus__durable_script(daebus__durable *d, const char *sha, const char *lua, int argc,
                                   const char **argv)
{
    argv[0] = "EVALSHA";
    argv[1] = sha;
    redisReply *r = daebus__durable_call(d, argc, argv, NULL, 0);
    if (daebus__durable_is_error(r, "NOSCRIPT")) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        argv[1] = lua;
        r = daebus__durable_call(d, argc, argv, NULL, 0);
    }
    return r;
}

long long daebus__durable_now_ms(void)
{
    return (long long)(daebus__now_wall() * 1000.0);
}

static bool load_script(daebus__durable *d, const char *lua, char *sha, size_t len)
{
    if (sha[0])
        return true;
    const char *argv[] = {"SCRIPT", "LOAD", lua};
    redisReply *r = daebus__durable_call(d, 3, argv, NULL, 0);
    bool ok = r && r->type == REDIS_REPLY_STRING && r->len < len;
    if (ok)
        memcpy(sha, r->str, r->len + 1);
    if (r)
        freeReplyObject(r);
    return ok;
}

/* Connects, makes the group (BUSYGROUP: it exists) and loads the scripts. */
static bool link_up(daebus__durable *d)
{
    daebus_bus *bus = d->bus;
    daebus_error e = {0};
    d->c = daebus__redis_connect(&bus->url, bus->opts.connect_timeout, 0, &e);
    if (!d->c) {
        if (!d->down_logged)
            DAEBUS_LOG_WARNF(LOGC, "durable: cannot reach Redis for %s (%s); retrying", d->key,
                             e.message);
        d->down_logged = true;
        return false;
    }
    const char *argv[] = {"XGROUP", "CREATE", d->key, "daebus", "0", "MKSTREAM"};
    redisReply *r = daebus__durable_call(d, 6, argv, NULL, 0);
    bool ok = r && (!daebus__durable_is_error(r, NULL) || daebus__durable_is_error(r, "BUSYGROUP"));
    if (r && !ok)
        DAEBUS_LOG_ERRORF(LOGC, "durable: XGROUP CREATE %s refused: %s", d->key, r->str);
    if (r)
        freeReplyObject(r);
    ok =
        ok && load_script(d, DAEBUS__DURABLE_LUA_COMPLETE, d->sha_complete, sizeof d->sha_complete);
    ok = ok && load_script(d, DAEBUS__DURABLE_LUA_DEAD, d->sha_dead, sizeof d->sha_dead);
    d->sha_check[0] = '\0'; /* the hot path's: never NOSCRIPT on a fresh connection */
    ok = ok && load_script(d, DAEBUS__DURABLE_LUA_CHECK, d->sha_check, sizeof d->sha_check);
    if (!ok) {
        daebus__durable_close(d);
        return false;
    }
    DAEBUS_LOG_INFOF(LOGC, "durable: %s stream %s as consumer %s of group daebus",
                     d->down_logged ? "reading again the" : "reading the", d->key, d->consumer);
    d->down_logged = false;
    return true;
}

static void link_lost(daebus__durable *d)
{
    daebus__durable_close(d);
    if (!atomic_load(&d->stop) && !d->down_logged)
        DAEBUS_LOG_WARNF(LOGC, "durable: lost the connection reading %s; reconnecting", d->key);
    d->down_logged = true;
}

/* Sleeps up to seconds, or until the stop. */
static void wait_wake(daebus__durable *d, double seconds)
{
    struct pollfd p = {.fd = d->wake[0], .events = POLLIN};
    poll(&p, 1, seconds > 0 ? (int)(seconds * 1000) + 1 : 0);
}

static void empty_pipe(daebus__durable *d)
{
    char buf[16];
    while (read(d->wake[0], buf, sizeof buf) > 0) {
    }
}

/* ---- the reader ---- */

static int free_slots(daebus_bus *bus)
{
    long n = (long)daebus_app_max_workers(bus->app) - (long)daebus__pool_active(bus->pool) -
             (long)daebus__pool_pending(bus->pool);
    return n <= 0 ? 0 : n > DAEBUS__DURABLE_MAX_BATCH ? DAEBUS__DURABLE_MAX_BATCH : (int)n;
}

/* The group is gone (the stream was deleted): the link is dropped and
 * link_up makes it again. */
static bool group_gone(daebus__durable *d, redisReply *r)
{
    if (!daebus__durable_is_error(r, "NOGROUP"))
        return false;
    freeReplyObject(r);
    DAEBUS_LOG_WARNF(
        LOGC, "durable: the group of %s is gone (Redis restarted empty?); making it again", d->key);
    d->down_logged = true;
    daebus__durable_close(d);
    return true;
}

static void read_cmd(daebus__durable *d, int n, int block_ms, daebus__durable_read *out)
{
    snprintf(out->count, sizeof out->count, "%d", n);
    snprintf(out->block, sizeof out->block, "%d", block_ms);
    const char *argv[] = {"XREADGROUP", "GROUP",    "daebus",  d->consumer, "COUNT", out->count,
                          "BLOCK",      out->block, "STREAMS", d->key,      ">"};
    memcpy(out->argv, argv, sizeof argv);
    out->block_ms = block_ms;
}

/* XREADGROUP of new entries (up to n), blocking up to block_ms - or the
 * reply of the one sent ahead. Returns: false when the link was lost. */
static bool read_new(daebus__durable *d, int n, int block_ms)
{
    int ms = d->ahead_ms;
    if (!ms) {
        daebus__durable_read rd;
        read_cmd(d, n, block_ms, &rd);
        if (redisAppendCommandArgv(d->c, 11, rd.argv, NULL) != REDIS_OK) {
            daebus__durable_close(d);
            return false;
        }
        ms = block_ms;
    }
    d->ahead_ms = 0;
    redisReply *r = wait_reply(d, ms / 1000.0 + d->bus->opts.command_timeout, true);
    if (!r) {
        daebus__durable_close(d);
        return false;
    }
    if (group_gone(d, r))
        return false;
    bool ok = true;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->elements == 2)
        ok = daebus__durable_batch(d, r->element[0]->element[1], false);
    freeReplyObject(r);
    return ok;
}

/* XAUTOCLAIM of entries idle past the visibility time-out (up to n). */
static bool claim_stale(daebus__durable *d, int n)
{
    char count[16], idle[24];
    snprintf(count, sizeof count, "%d", n);
    snprintf(idle, sizeof idle, "%lld", (long long)(d->visibility * 1000));
    const char *argv[] = {"XAUTOCLAIM", d->key, "daebus", d->consumer, idle, "0-0", "COUNT", count};
    redisReply *r = daebus__durable_call(d, 8, argv, NULL, 0);
    if (!r || group_gone(d, r))
        return false;
    bool ok = true;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2)
        ok = daebus__durable_batch(d, r->element[1], true);
    freeReplyObject(r);
    return ok;
}

/* The periodic jobs of the reader, each due at its own time (one call site
 * each). Returns: false when the link was lost. */
static bool periodic_jobs(daebus__durable *d)
{
    double now = daebus__now_mono();
    if (now >= d->next_refresh) {
        d->next_refresh = now + d->visibility / 3;
        if (!daebus__durable_refresh(d))
            return false;
    }
    daebus__durable_gc_tick(d->bus, d->key, d->consumer, d->visibility, &d->next_gc);
    int n = free_slots(d->bus);
    if (n > 0 && now >= d->next_claim) {
        d->next_claim = now + d->visibility / 2;
        if (!claim_stale(d, n))
            return false;
    }
    return true;
}

/* The blocking read's time (ms): up to the next periodic job, at least 1
 * (BLOCK 0 would wait for ever). */
static int block_ms(const daebus__durable *d)
{
    double next = d->next_refresh < d->next_claim ? d->next_refresh : d->next_claim;
    double ms = (next - daebus__now_mono()) * 1000.0;
    return ms >= DURABLE_BLOCK_MS ? DURABLE_BLOCK_MS : ms < 1 ? 1 : (int)ms;
}

bool daebus__durable_read_ahead(daebus__durable *d, int taking, daebus__durable_read *out)
{
    int n = free_slots(d->bus) - taking, ms = block_ms(d);
    if (n <= 0 || ms < DURABLE_AHEAD_MIN_MS)
        return false;
    read_cmd(d, n, ms, out);
    return true;
}

/* One turn of a draining reader: the refresh when due, then a wait until
 * the next one (or the stop). A read sent ahead is given up: the entries it
 * may bring stay pending for another replica. */
static void drain_turn(daebus__durable *d)
{
    empty_pipe(d); /* the drain's wake-up; a stop sets its flag first, then writes */
    if (atomic_load(&d->stop))
        return;
    if (d->ahead_ms)
        daebus__durable_close(d);
    if (!d->c && !link_up(d)) {
        wait_wake(d, d->visibility / 6);
        return;
    }
    double now = daebus__now_mono();
    if (now >= d->next_refresh) {
        d->next_refresh = now + d->visibility / 3;
        if (!daebus__durable_refresh(d))
            link_lost(d);
    }
    wait_wake(d, d->next_refresh - daebus__now_mono());
}

static void *reader_main(void *arg)
{
    daebus__durable *d = arg;
    daebus_bus *bus = d->bus;
    daebus__sigpipe_block_thread();
    daebus__backoff bo;
    daebus__backoff_init(&bo, bus->opts.reconnect_initial, bus->opts.reconnect_max);
    d->next_claim = d->next_refresh = d->next_gc = 0;
    while (!atomic_load(&d->stop)) {
        if (atomic_load(&d->draining)) {
            drain_turn(d);
            continue;
        }
        if (!d->c && !link_up(d)) {
            wait_wake(d, daebus__backoff_next(&bo));
            continue;
        }
        daebus__backoff_reset(&bo);
        if (d->ahead_ms) { /* its reply first: nothing else was sent */
            if (!read_new(d, 0, 0))
                link_lost(d);
            continue;
        }
        if (!periodic_jobs(d)) {
            link_lost(d);
            continue;
        }
        int n = free_slots(bus);
        if (n == 0) {
            wait_wake(d, 0.005);
            continue;
        }
        if (!read_new(d, n, block_ms(d)))
            link_lost(d);
    }
    daebus__durable_close(d);
    return NULL;
}

/* ---- life cycle ---- */

static char *joined(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

static void durable_free(daebus__durable *d)
{
    if (!d)
        return;
    free(d->key);
    free(d->dead_key);
    free(d->done_prefix);
    free(d->consumer);
    if (d->wake[0] >= 0)
        close(d->wake[0]);
    if (d->wake[1] >= 0)
        close(d->wake[1]);
    daebus__durable_running_free(d);
    free(d);
}

static daebus__durable *durable_new(daebus_bus *bus)
{
    daebus__durable *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->bus = bus;
    d->wake[0] = d->wake[1] = -1;
    pthread_mutex_init(&d->run_lock, NULL);
    const daebus_bus_options *o = &bus->opts;
    d->visibility = o->durable_visibility > 0 ? o->durable_visibility : 30.0;
    d->max_attempts = o->durable_max_attempts > 0 ? o->durable_max_attempts : 5;
    d->key = joined("daebus:", bus->service, ":requests");
    d->dead_key = joined("daebus:", bus->service, ":dead");
    d->done_prefix = joined("daebus:", bus->service, ":done:");
    d->consumer = strdup(daebus_app_instance_id(bus->app));
    if (!d->key || !d->dead_key || !d->done_prefix || !d->consumer || pipe(d->wake) != 0) {
        durable_free(d);
        return NULL;
    }
    fcntl(d->wake[0], F_SETFL, O_NONBLOCK);
    return d;
}

int daebus__durable_start(daebus_bus *bus)
{
    if (bus->opts.durable < 0 || bus->nactions == 0 || bus->opts.no_service_channel)
        return 0;
    /* A bus started again keeps the scripts' shas of its first run. */
    daebus__durable *d = bus->durable;
    if (!d && (d = durable_new(bus)) == NULL)
        return DAEBUS_ENOMEM;
    bus->durable = d;
    atomic_store(&d->stop, 0);
    atomic_store(&d->draining, 0);
    if (pthread_create(&d->thread, NULL, reader_main, d) != 0)
        return DAEBUS_ENOMEM;
    d->started = true;
    return 0;
}

/* Sets the stop or drain flag, then wakes the reader. Returns: the reader,
 * or NULL when none runs. */
static daebus__durable *wake_reader(daebus_bus *bus, bool stop)
{
    daebus__durable *d = bus->durable;
    if (!d || !d->started)
        return NULL;
    atomic_store(stop ? &d->stop : &d->draining, 1);
    ssize_t w = write(d->wake[1], "x", 1);
    (void)w;
    return d;
}

void daebus__durable_drain(daebus_bus *bus)
{
    wake_reader(bus, false);
}

void daebus__durable_stop(daebus_bus *bus)
{
    daebus__durable *d = wake_reader(bus, true);
    if (!d)
        return;
    pthread_join(d->thread, NULL);
    d->started = false;
    empty_pipe(d);
}

void daebus__durable_free(daebus_bus *bus)
{
    daebus__durable_stop(bus);
    durable_free(bus->durable);
    bus->durable = NULL;
}
