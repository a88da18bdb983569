/* bus_durable.c - durable actions: the service side of the request stream.
 *
 * One reader thread per bus, with a Redis connection of its own, takes the
 * entries of daebus:<service>:requests as consumer <instance id> of the
 * group "daebus" (created at start, id 0: entries added before any replica
 * ran are read). It asks for no more entries than the worker pool can start
 * now, so an idle replica is never starved while another one queues, and
 * every visibility/2 it claims (XAUTOCLAIM) the entries another replica took
 * and did not complete within the visibility time-out (it crashed). Each
 * entry is checked before it runs: deadline passed (dropped, "expired"),
 * done record present (dropped, "duplicates"), too many deliveries (moved to
 * daebus:<service>:dead with an error reply); else it becomes a request of
 * the ACTION handlers on the pool, like a pub/sub request, with its attempt
 * (the delivery count). Its final reply goes through one script
 * (bus_durable_lua.h): reply, done record, XACK, XDEL - or only XACK/XDEL
 * when another replica completed it first. A crash leaves the entry pending;
 * a stop leaves the queued ones pending for another replica.
 *
 * The blocking read waits at most DURABLE_BLOCK_MS and the stop wakes it
 * through a pipe, so bus_stop never waits for Redis.
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
#include "bus_durable.h"
#include "bus_durable_gc.h"
#include "bus_durable_lua.h"
#include "bus_internal.h"
#include "clock.h"
#include "redis_conn.h"
#include "utf8.h"

#define LOGC                  DAEBUS__BUS_LOGC
#define DURABLE_BLOCK_MS      500
#define DURABLE_MAX_BATCH     64
#define DURABLE_DONE_MARGIN_S 3600

struct daebus__durable {
    daebus_bus *bus;
    char *key, *dead_key, *done_prefix, *consumer;
    double visibility;
    int max_attempts;
    pthread_t thread;
    bool started;
    int wake[2];
    atomic_int stop;
    redisContext *c;       /* the reader's own */
    char sha_complete[48]; /* set once before the first request is taken */
    char sha_dead[48];
    bool down_logged;
    daebus__ratelimit fail_log; /* completions that failed (any thread) */
};

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
        if (rc < 0 || daebus__deadline_passed(until) || (wake && atomic_load(&d->stop)))
            return NULL;
    }
}

/* Runs one command on the reader's connection. Returns: the reply or NULL
 * (the connection is then closed). */
static redisReply *call(daebus__durable *d, int argc, const char **argv, const size_t *lens,
                        double block_s)
{
    if (!d->c)
        return NULL;
    redisReply *r = NULL;
    if (redisAppendCommandArgv(d->c, argc, argv, lens) == REDIS_OK)
        r = wait_reply(d, block_s + d->bus->opts.command_timeout, block_s > 0);
    if (!r) {
        redisFree(d->c);
        d->c = NULL;
    }
    return r;
}

static bool is_error(const redisReply *r, const char *prefix)
{
    return r && r->type == REDIS_REPLY_ERROR &&
           (!prefix || (r->str && strncmp(r->str, prefix, strlen(prefix)) == 0));
}

static bool load_script(daebus__durable *d, const char *lua, char *sha, size_t len)
{
    if (sha[0])
        return true;
    const char *argv[] = {"SCRIPT", "LOAD", lua};
    redisReply *r = call(d, 3, argv, NULL, 0);
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
    redisReply *r = call(d, 6, argv, NULL, 0);
    bool ok = r && (!is_error(r, NULL) || is_error(r, "BUSYGROUP"));
    if (r && !ok)
        DAEBUS_LOG_ERRORF(LOGC, "durable: XGROUP CREATE %s refused: %s", d->key, r->str);
    if (r)
        freeReplyObject(r);
    ok =
        ok && load_script(d, DAEBUS__DURABLE_LUA_COMPLETE, d->sha_complete, sizeof d->sha_complete);
    ok = ok && load_script(d, DAEBUS__DURABLE_LUA_DEAD, d->sha_dead, sizeof d->sha_dead);
    if (!ok) {
        if (d->c)
            redisFree(d->c);
        d->c = NULL;
        return false;
    }
    DAEBUS_LOG_INFOF(LOGC, "durable: %s stream %s as consumer %s of group daebus",
                     d->down_logged ? "reading again the" : "reading the", d->key, d->consumer);
    d->down_logged = false;
    return true;
}

static void link_lost(daebus__durable *d)
{
    if (d->c) {
        redisFree(d->c);
        d->c = NULL;
    }
    if (!atomic_load(&d->stop) && !d->down_logged)
        DAEBUS_LOG_WARNF(LOGC, "durable: lost the connection reading %s; reconnecting", d->key);
    d->down_logged = true;
}

/* Sleeps up to seconds, or until the stop. */
static void wait_wake(daebus__durable *d, double seconds)
{
    struct pollfd p = {.fd = d->wake[0], .events = POLLIN};
    poll(&p, 1, (int)(seconds * 1000) + 1);
}

/* ---- one entry ---- */

typedef struct entry {
    const char *id;
    const char *req;
    size_t req_len;
    long long deadline;
    int attempt;
} entry;

static long long now_ms(void)
{
    return (long long)(daebus__now_wall() * 1000.0);
}

/* XACK + XDEL of an entry that will not run. */
static void drop_entry(daebus__durable *d, const char *id)
{
    const char *ack[] = {"XACK", d->key, "daebus", id};
    const char *del[] = {"XDEL", d->key, id};
    redisReply *r = call(d, 4, ack, NULL, 0);
    if (r) {
        freeReplyObject(r);
        r = call(d, 3, del, NULL, 0);
    }
    if (r)
        freeReplyObject(r);
}

/* The done record's key: request_id as text (a non-string id as JSON), or
 * the entry id when there is none. Returns: malloc'd, or NULL. */
static char *done_key(const daebus__durable *d, const cJSON *request_id, const char *entry_id)
{
    char *idtext = NULL;
    const char *id = entry_id;
    if (cJSON_IsString(request_id))
        id = request_id->valuestring;
    else if (request_id && (idtext = cJSON_PrintUnformatted(request_id)) != NULL)
        id = idtext;
    size_t n = strlen(d->done_prefix) + strlen(id) + 1;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%s%s", d->done_prefix, id);
    free(idtext);
    return k;
}

static bool done_exists(daebus__durable *d, const char *key)
{
    const char *argv[] = {"EXISTS", key};
    redisReply *r = call(d, 2, argv, NULL, 0);
    bool yes = r && r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    if (r)
        freeReplyObject(r);
    return yes;
}

/* Runs a script by its sha, loading it again when Redis lost it (NOSCRIPT). */
static redisReply *run_script(daebus__durable *d, const char *sha, const char *lua, int argc,
                              const char **argv)
{
    argv[0] = "EVALSHA";
    argv[1] = sha;
    redisReply *r = call(d, argc, argv, NULL, 0);
    if (is_error(r, "NOSCRIPT")) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        argv[1] = lua;
        r = call(d, argc, argv, NULL, 0);
    }
    return r;
}

/* The error reply of the caller (malloc'd JSON text), or NULL. */
static char *error_reply(const cJSON *request_id, const char *text)
{
    cJSON *p = cJSON_CreateObject();
    char *s = NULL;
    if (p && cJSON_AddStringToObject(p, "error", text))
        s = daebus__bus_build_response(true, p, request_id, true);
    cJSON_Delete(p);
    return s;
}

/* Moves the entry to the dead-letter stream (one script) and tells the caller. */
static void dead_letter(daebus__durable *d, const entry *e, const daebus__bus_envelope *env,
                        const char *reply)
{
    daebus_bus *bus = d->bus;
    int runs = e->attempt - 1;
    const char *reason = "the handler did not complete (its replica crashed or stopped)";
    char text[300], attempts[16], at[24];
    snprintf(text, sizeof text, "Request dead-lettered after %d attempts: %s", runs, reason);
    snprintf(attempts, sizeof attempts, "%d", runs);
    snprintf(at, sizeof at, "%lld", now_ms());
    char *msg = reply && env->request_id ? error_reply(env->request_id, text) : NULL;
    char *req = strndup(e->req, e->req_len);
    const char *argv[] = {NULL,   NULL,     "2", d->dead_key, d->key,           req ? req : "",
                          reason, attempts, at,  e->id,       msg ? reply : "", msg ? msg : ""};
    redisReply *r = run_script(d, d->sha_dead, DAEBUS__DURABLE_LUA_DEAD, 12, argv);
    if (r && !is_error(r, NULL)) {
        atomic_fetch_add(&bus->durable_dead_lettered, 1);
        if (msg) {
            atomic_fetch_add(&bus->replies_sent, 1);
            atomic_fetch_add(&bus->errors, 1);
        }
        DAEBUS_LOG_WARNF(LOGC, "durable: entry %s of %s dead-lettered after %d attempts", e->id,
                         d->key, runs);
    } else if (r) {
        DAEBUS_LOG_ERRORF(LOGC, "durable: dead letter of %s refused: %s", e->id, r->str);
    }
    if (r)
        freeReplyObject(r);
    free(req);
    free(msg);
}

/* An entry for an action this service does not have: an error reply, dropped. */
static void unknown_action(daebus__durable *d, const entry *e, const daebus__bus_envelope *env,
                           const char *reply)
{
    atomic_fetch_add(&d->bus->unknown_actions, 1);
    if (reply && env->request_id) {
        char text[200];
        snprintf(text, sizeof text, "Unknown action '%.*s'", daebus__utf8_prec(env->action, 150),
                 env->action);
        daebus__bus_send_error(d->bus, reply, env->request_id, text);
    }
    drop_entry(d, e->id);
}

/* Hands a checked entry to the pool. Ownership: env and key are taken. */
static void submit(daebus__durable *d, const entry *e, const daebus__handler *h,
                   daebus__bus_envelope *env, const char *reply, char *key)
{
    daebus_bus *bus = d->bus;
    daebus__durable_job *j = calloc(1, sizeof *j);
    daebus_bus_request *r = j ? daebus__bus_request_new(bus, env, d->key, reply) : NULL;
    if (!r) {
        DAEBUS_LOG_ERRORF(LOGC, "durable: out of memory; entry %s left pending", e->id);
        daebus__bus_envelope_free(env);
        free(j);
        free(key);
        return;
    }
    snprintf(j->entry, sizeof j->entry, "%s", e->id);
    j->done_key = key;
    j->deadline = e->deadline;
    r->durable = j;
    r->attempt = e->attempt;
    r->is_action = 1;
    r->claim.mode = DAEBUS__GATE_SOLO;
    r->afn = h->desc->fn.action;
    r->user = h->desc->opts.user;
    atomic_fetch_add(&bus->requests_received, 1);
    atomic_fetch_add(&bus->durable_taken, 1);
    if (e->attempt > 1)
        atomic_fetch_add(&bus->durable_retried, 1);
    if (daebus__pool_submit(bus->pool, daebus__bus_run_action, daebus__bus_drop_request, r) != 0) {
        daebus__bus_claim_final(r); /* not run here: pending for another replica */
        daebus__durable_leave(r);
        daebus_bus_request_release(r);
    }
}

static void handle_entry(daebus__durable *d, const entry *e)
{
    daebus_bus *bus = d->bus;
    daebus__bus_envelope env;
    char why[96], rbuf[512];
    if (e->deadline > 0 && e->deadline <= now_ms()) {
        atomic_fetch_add(&bus->durable_expired, 1);
        drop_entry(d, e->id);
        return;
    }
    if (!e->req || daebus__bus_check_utf8(e->req, e->req_len, why, sizeof why) != 0 ||
        daebus__bus_parse_request(e->req, e->req_len, &env, why, sizeof why) != 0) {
        atomic_fetch_add(&bus->malformed, 1);
        DAEBUS_LOG_WARNF(LOGC, "durable: malformed entry %s of %s dropped (%s)", e->id, d->key,
                         e->req ? why : "no req field");
        drop_entry(d, e->id);
        return;
    }
    const char *reply = daebus__bus_reply_channel(&env, bus->service, rbuf, sizeof rbuf);
    char *key = done_key(d, env.request_id, e->id);
    const daebus__handler *h =
        env.action ? daebus__bus_find_handler(bus->actions, bus->nactions, env.action) : NULL;
    if (!key) {
        DAEBUS_LOG_ERRORF(LOGC, "durable: out of memory; entry %s left pending", e->id);
    } else if (done_exists(d, key)) {
        atomic_fetch_add(&bus->durable_duplicates, 1);
        drop_entry(d, e->id);
    } else if (e->attempt > d->max_attempts) {
        dead_letter(d, e, &env, reply);
    } else if (!h) {
        unknown_action(d, e, &env, reply);
    } else {
        submit(d, e, h, &env, reply, key);
        return;
    }
    free(key);
    daebus__bus_envelope_free(&env);
}

/* Reads the fields of one stream entry ([id, [f, v, ...]]). */
static bool parse_entry(const redisReply *x, entry *e)
{
    memset(e, 0, sizeof *e);
    e->attempt = 1;
    if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
        x->element[0]->type != REDIS_REPLY_STRING)
        return false;
    e->id = x->element[0]->str;
    const redisReply *f = x->element[1];
    for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, "req") == 0) {
            e->req = v->str;
            e->req_len = v->len;
        } else if (strcmp(k->str, "deadline") == 0) {
            e->deadline = strtoll(v->str, NULL, 10);
        }
    }
    return true;
}

/* The delivery count of a claimed entry (XPENDING), or 0 when unknown. */
static int delivery_count(daebus__durable *d, const char *id)
{
    const char *argv[] = {"XPENDING", d->key, "daebus", id, id, "1"};
    redisReply *r = call(d, 6, argv, NULL, 0);
    int n = 0;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 4 &&
        r->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
        n = (int)r->element[0]->element[3]->integer;
    if (r)
        freeReplyObject(r);
    return n;
}

static void handle_entries(daebus__durable *d, const redisReply *list, bool claimed)
{
    for (size_t i = 0; list && list->type == REDIS_REPLY_ARRAY && i < list->elements; i++) {
        entry e;
        if (!parse_entry(list->element[i], &e))
            continue;
        if (claimed) {
            e.attempt = delivery_count(d, e.id);
            if (e.attempt < 2)
                e.attempt = 2;
        }
        if (!d->c)
            return; /* lost meanwhile: what is left stays pending */
        handle_entry(d, &e);
    }
}

/* ---- the reader ---- */

static int free_slots(daebus_bus *bus)
{
    long n = (long)daebus_app_max_workers(bus->app) - (long)daebus__pool_active(bus->pool) -
             (long)daebus__pool_pending(bus->pool);
    return n <= 0 ? 0 : n > DURABLE_MAX_BATCH ? DURABLE_MAX_BATCH : (int)n;
}

/* XREADGROUP of new entries (up to n), blocking. Returns: false when the link was lost. */
static bool read_new(daebus__durable *d, int n)
{
    char count[16], block[16];
    snprintf(count, sizeof count, "%d", n);
    snprintf(block, sizeof block, "%d", DURABLE_BLOCK_MS);
    const char *argv[] = {"XREADGROUP", "GROUP", "daebus",  d->consumer, "COUNT", count,
                          "BLOCK",      block,   "STREAMS", d->key,      ">"};
    redisReply *r = call(d, 11, argv, NULL, DURABLE_BLOCK_MS / 1000.0);
    if (!r)
        return false;
    if (is_error(r, "NOGROUP")) { /* the stream was deleted: made again */
        freeReplyObject(r);
        DAEBUS_LOG_WARNF(LOGC,
                         "durable: the group of %s is gone (Redis restarted empty?); "
                         "making it again",
                         d->key);
        d->down_logged = true;
        redisFree(d->c);
        d->c = NULL;
        return false;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->elements == 2)
        handle_entries(d, r->element[0]->element[1], false);
    freeReplyObject(r);
    return d->c != NULL;
}

/* XAUTOCLAIM of entries idle past the visibility time-out (up to n). */
static bool claim_stale(daebus__durable *d, int n)
{
    char count[16], idle[24];
    snprintf(count, sizeof count, "%d", n);
    snprintf(idle, sizeof idle, "%lld", (long long)(d->visibility * 1000));
    const char *argv[] = {"XAUTOCLAIM", d->key, "daebus", d->consumer, idle, "0-0", "COUNT", count};
    redisReply *r = call(d, 8, argv, NULL, 0);
    if (!r)
        return false;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2)
        handle_entries(d, r->element[1], true);
    freeReplyObject(r);
    return d->c != NULL;
}

static void *reader_main(void *arg)
{
    daebus__durable *d = arg;
    daebus_bus *bus = d->bus;
    daebus__sigpipe_block_thread();
    daebus__backoff bo;
    daebus__backoff_init(&bo, bus->opts.reconnect_initial, bus->opts.reconnect_max);
    double next_claim = 0, next_gc = 0;
    while (!atomic_load(&d->stop)) {
        if (!d->c && !link_up(d)) {
            wait_wake(d, daebus__backoff_next(&bo));
            continue;
        }
        daebus__backoff_reset(&bo);
        daebus__durable_gc_tick(bus, d->key, d->consumer, d->visibility, &next_gc);
        int n = free_slots(bus);
        if (n == 0) {
            wait_wake(d, 0.005);
            continue;
        }
        bool ok;
        if (daebus__now_mono() >= next_claim) {
            ok = claim_stale(d, n);
            next_claim = daebus__now_mono() + d->visibility / 2;
        } else {
            ok = read_new(d, n);
        }
        if (!ok)
            link_lost(d);
    }
    if (d->c)
        redisFree(d->c);
    d->c = NULL;
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
    free(d);
}

static daebus__durable *durable_new(daebus_bus *bus)
{
    daebus__durable *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->bus = bus;
    d->wake[0] = d->wake[1] = -1;
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
    if (pthread_create(&d->thread, NULL, reader_main, d) != 0)
        return DAEBUS_ENOMEM;
    d->started = true;
    return 0;
}

void daebus__durable_stop(daebus_bus *bus)
{
    daebus__durable *d = bus->durable;
    if (!d || !d->started)
        return;
    atomic_store(&d->stop, 1);
    ssize_t w = write(d->wake[1], "x", 1);
    (void)w;
    pthread_join(d->thread, NULL);
    d->started = false;
    char buf[16];
    while (read(d->wake[0], buf, sizeof buf) > 0) {
    }
}

void daebus__durable_free(daebus_bus *bus)
{
    daebus__durable_stop(bus);
    durable_free(bus->durable);
    bus->durable = NULL;
}

/* ---- completion (any thread holding the request) ---- */

void daebus__durable_leave(daebus_bus_request *r)
{
    if (r && r->durable)
        r->durable->finished = true;
}

void daebus__durable_job_free(daebus__durable_job *j)
{
    if (!j)
        return;
    free(j->done_key);
    free(j);
}

/* Runs the completion script (and WAIT) on the publisher pool. Returns: the
 * script's reply (1 completed, 0 completed before) or a negative code. */
static int complete_cmd(daebus_bus *bus, const daebus__durable_job *j, const char *channel,
                        const char *msg, bool by_sha)
{
    daebus__durable *d = bus->durable;
    char ttl[24], nrep[16], wait_ms[24];
    long long left = j->deadline > 0 ? (j->deadline - now_ms()) / 1000 : 0;
    snprintf(ttl, sizeof ttl, "%lld",
             (left > 0 ? left : 0) + daebus__durable_done_ttl(bus, DURABLE_DONE_MARGIN_S));
    const char *argv[] = {by_sha ? "EVALSHA" : "EVAL",
                          by_sha ? d->sha_complete : DAEBUS__DURABLE_LUA_COMPLETE,
                          "2",
                          j->done_key,
                          d->key,
                          channel,
                          msg,
                          ttl,
                          j->entry};
    snprintf(nrep, sizeof nrep, "%d", bus->opts.durable_wait_replicas);
    snprintf(
        wait_ms, sizeof wait_ms, "%lld",
        (long long)(bus->opts.command_timeout * 500)); /* half: the read waits command_timeout */
    const char *wargv[] = {"WAIT", nrep, wait_ms};
    size_t lens[9], wlens[3];
    for (int i = 0; i < 9; i++)
        lens[i] = strlen(argv[i]);
    for (int i = 0; i < 3; i++)
        wlens[i] = strlen(wargv[i]);
    daebus__redis_cmd cmds[2] = {{9, argv, lens}, {3, wargv, wlens}};
    redisReply *rep[2] = {NULL, NULL};
    int n = bus->opts.durable_wait_replicas > 0 ? 2 : 1;
    int rc = daebus__redis_pub_pipeline(bus->pub, cmds, n, rep);
    if (rc == 0) {
        if (is_error(rep[0], "NOSCRIPT"))
            rc = 2; /* load it again */
        else if (rep[0]->type == REDIS_REPLY_INTEGER)
            rc = (int)rep[0]->integer;
        else
            rc = DAEBUS_EREPLY;
        if (n == 2 && rep[1]->type == REDIS_REPLY_INTEGER &&
            rep[1]->integer < bus->opts.durable_wait_replicas &&
            daebus__ratelimit_pass(&d->fail_log, daebus__now_mono(), 1.0) >= 0)
            DAEBUS_LOG_WARNF(LOGC, "durable: WAIT: %lld of %d Redis replicas acknowledged",
                             rep[1]->integer, bus->opts.durable_wait_replicas);
    }
    for (int i = 0; i < n; i++)
        if (rep[i])
            freeReplyObject(rep[i]);
    return rc;
}

int daebus__durable_finish(daebus_bus_request *r, bool error, const cJSON *payload)
{
    daebus__durable_job *j = r->durable;
    daebus_bus *bus = r->bus;
    if (!j || j->finished)
        return 0;
    j->finished = true;
    char *msg = payload && r->reply_channel
                    ? daebus__bus_build_response(error, payload, r->env.request_id, true)
                    : NULL;
    if (payload && r->reply_channel && !msg)
        return DAEBUS_ENOMEM;
    const char *channel = msg ? r->reply_channel : "";
    int rc = complete_cmd(bus, j, channel, msg ? msg : "", true);
    if (rc == 2)
        rc = complete_cmd(bus, j, channel, msg ? msg : "", false);
    free(msg);
    if (rc == 1 || rc == 0) {
        atomic_fetch_add(rc == 1 ? &bus->durable_completed : &bus->durable_duplicates, 1);
        if (rc == 1 && *channel) {
            atomic_fetch_add(&bus->replies_sent, 1);
            if (error)
                atomic_fetch_add(&bus->errors, 1);
        }
        return 0;
    }
    long missed = daebus__ratelimit_pass(&bus->durable->fail_log, daebus__now_mono(), 1.0);
    if (missed >= 0)
        DAEBUS_LOG_WARNF(LOGC,
                         "durable: could not complete entry %s (%s); it runs again after the "
                         "visibility time-out (%ld more not logged)",
                         j->entry, daebus_strerror(rc), missed);
    return rc < 0 ? rc : DAEBUS_EREPLY;
}
