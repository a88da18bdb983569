/* bus_durable_batch.c - one batch of request-stream entries, on the reader.
 *
 * The entries one XREADGROUP or XAUTOCLAIM returned are handled together:
 *   1. read: deadline passed ("expired"), malformed, an action this service
 *      lacks: to drop; else the envelope and the done record's key;
 *   2. one round trip: one script (bus_durable_lua.h) checks every done
 *      record and drops, with one XACK and one XDEL, what is done and what
 *      step 1 dropped; the XPENDING of every claimed entry (its delivery
 *      count: the attempt) goes in the same write. An entry fresh from
 *      XREADGROUP ... > was delivered once: attempt 1, no XPENDING, and the
 *      next XREADGROUP goes in that write too (sent ahead: the reader loop
 *      reads its reply), so the hot path costs one round trip per batch;
 *   3. each checked entry: done (counted "duplicates"), too many deliveries
 *      (dead-lettered, one script), else handed to the worker pool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/log.h"
#include "bus_durable_lua.h"
#include "bus_durable_reader.h"
#include "utf8.h"

#define LOGC DAEBUS__BUS_LOGC

typedef enum { E_SKIP, E_EXPIRED, E_MALFORMED, E_UNKNOWN, E_CHECK } entry_state;

typedef struct entry {
    const char *id;
    const char *req;
    size_t req_len;
    long long deadline;
    int attempt;
    entry_state state;
    daebus__bus_envelope env; /* E_CHECK, E_UNKNOWN: parsed */
    const daebus__handler *h; /* E_CHECK: the action's */
    char *key;                /* E_CHECK: the done record's key */
    bool done;                /* the done record exists */
} entry;

typedef struct batch {
    entry e[DAEBUS__DURABLE_MAX_BATCH];
    size_t n;
    bool claimed;
} batch;

/* ---- 1. read ---- */

/* Reads the fields of one stream entry ([id, [f, v, ...]]). */
static bool parse_fields(const redisReply *x, entry *e)
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

/* Decides what needs no Redis: expired, malformed, unknown action, out of
 * memory. */
static void read_entry(daebus__durable *d, entry *e)
{
    daebus_bus *bus = d->bus;
    char why[96];
    if (e->deadline > 0 && e->deadline <= daebus__durable_now_ms()) {
        e->state = E_EXPIRED;
        return;
    }
    if (!e->req || daebus__bus_check_utf8(e->req, e->req_len, why, sizeof why) != 0 ||
        daebus__bus_parse_request(e->req, e->req_len, &e->env, why, sizeof why) != 0) {
        DAEBUS_LOG_WARNF(LOGC, "durable: malformed entry %s of %s dropped (%s)", e->id, d->key,
                         e->req ? why : "no req field");
        e->state = E_MALFORMED;
        return;
    }
    e->h =
        e->env.action ? daebus__bus_find_handler(bus->actions, bus->nactions, e->env.action) : NULL;
    if (!e->h) {
        e->state = E_UNKNOWN;
        return;
    }
    e->key = done_key(d, e->env.request_id, e->id);
    if (!e->key) {
        DAEBUS_LOG_ERRORF(LOGC, "durable: out of memory; entry %s left pending", e->id);
        daebus__bus_envelope_free(&e->env);
        e->state = E_SKIP;
        return;
    }
    e->state = E_CHECK;
}

static void read_batch(daebus__durable *d, const redisReply *list, batch *b)
{
    b->n = 0;
    for (size_t i = 0; i < list->elements && b->n < DAEBUS__DURABLE_MAX_BATCH; i++) {
        entry *e = &b->e[b->n];
        if (!parse_fields(list->element[i], e))
            continue;
        read_entry(d, e);
        b->n++;
    }
}

/* ---- 2. the checks, one round trip ---- */

/* The delivery count in an XPENDING <id> <id> 1 reply, or 0. */
static int delivery_count(const redisReply *r)
{
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 4 &&
        r->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
        return (int)r->element[0]->element[3]->integer;
    return 0;
}

static bool dropped_early(const entry *e)
{
    return e->state == E_EXPIRED || e->state == E_MALFORMED || e->state == E_UNKNOWN;
}

/* The check script's argv: EVALSHA, its sha, numkeys, KEYS, ARGV. */
typedef struct check_cmd {
    const char *argv[5 + 3 * DAEBUS__DURABLE_MAX_BATCH];
    char numkeys[16], ndrop[16];
    int argc, nchecks;
} check_cmd;

static bool build_check(daebus__durable *d, const batch *b, check_cmd *c)
{
    int ndrop = 0, k = 0;
    c->nchecks = 0;
    for (size_t i = 0; i < b->n; i++) {
        ndrop += dropped_early(&b->e[i]);
        c->nchecks += b->e[i].state == E_CHECK;
    }
    if (ndrop + c->nchecks == 0)
        return false;
    snprintf(c->numkeys, sizeof c->numkeys, "%d", 1 + c->nchecks);
    snprintf(c->ndrop, sizeof c->ndrop, "%d", ndrop);
    c->argv[k++] = "EVALSHA";
    c->argv[k++] = d->sha_check;
    c->argv[k++] = c->numkeys;
    c->argv[k++] = d->key;
    for (size_t i = 0; i < b->n; i++)
        if (b->e[i].state == E_CHECK)
            c->argv[k++] = b->e[i].key;
    c->argv[k++] = c->ndrop;
    for (size_t i = 0; i < b->n; i++)
        if (dropped_early(&b->e[i]))
            c->argv[k++] = b->e[i].id;
    for (size_t i = 0; i < b->n; i++)
        if (b->e[i].state == E_CHECK)
            c->argv[k++] = b->e[i].id;
    c->argc = k;
    return true;
}

/* Reads the script's reply (and the XPENDING replies) into the entries. */
static bool take_checks(batch *b, redisReply **rep)
{
    const redisReply *done = rep[0];
    if (done->type != REDIS_REPLY_ARRAY)
        return false;
    size_t k = 0;
    for (entry *e = b->e; e < b->e + b->n; e++) {
        if (e->state != E_CHECK)
            continue;
        e->done = k < done->elements && done->element[k]->type == REDIS_REPLY_INTEGER &&
                  done->element[k]->integer > 0;
        if (b->claimed) {
            e->attempt = delivery_count(rep[1 + k]);
            if (e->attempt < 2)
                e->attempt = 2;
        }
        k++;
    }
    return true;
}

/* The check script (+ XPENDING of each claimed entry, or the next read sent
 * ahead), one write. Returns: false when the link was lost or the script
 * failed (the entries then stay pending). */
static bool check_batch(daebus__durable *d, batch *b)
{
    enum { MAXC = 2 + DAEBUS__DURABLE_MAX_BATCH };
    check_cmd *c = malloc(sizeof *c);
    if (!c)
        return false;
    if (!build_check(d, b, c)) {
        free(c);
        return true;
    }
    daebus__redis_cmd cmds[MAXC];
    const char *xp[DAEBUS__DURABLE_MAX_BATCH][6];
    redisReply *rep[MAXC];
    int n = 0;
    cmds[n++] = (daebus__redis_cmd){c->argc, c->argv, NULL};
    for (size_t i = 0; b->claimed && i < b->n; i++) {
        if (b->e[i].state != E_CHECK)
            continue;
        const char *argv[] = {"XPENDING", d->key, "daebus", b->e[i].id, b->e[i].id, "1"};
        memcpy(xp[n - 1], argv, sizeof argv);
        cmds[n] = (daebus__redis_cmd){6, xp[n - 1], NULL};
        n++;
    }
    daebus__durable_read next;
    bool ahead = !b->claimed && daebus__durable_read_ahead(d, c->nchecks, &next);
    if (ahead)
        cmds[n] = (daebus__redis_cmd){11, next.argv, NULL};
    bool ok = daebus__durable_pipeline(d, n + ahead, cmds, n, rep);
    free(c);
    if (!ok)
        return false;
    if (ahead)
        d->ahead_ms = next.block_ms;
    ok = take_checks(b, rep);
    if (!ok)
        DAEBUS_LOG_ERRORF(LOGC,
                          "durable: the checks of %s failed (%s); the entries are taken again "
                          "after the visibility time-out",
                          d->key,
                          rep[0]->type == REDIS_REPLY_ERROR ? rep[0]->str : "unexpected reply");
    bool flushed = daebus__durable_is_error(rep[0], "NOSCRIPT");
    for (int i = 0; i < n; i++)
        freeReplyObject(rep[i]);
    if (flushed) { /* SCRIPT FLUSH: a new connection loads the scripts again */
        d->down_logged = true;
        daebus__durable_close(d);
    }
    return ok;
}

/* ---- 3. each entry ---- */

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
static void dead_letter(daebus__durable *d, const entry *e, const char *reply)
{
    daebus_bus *bus = d->bus;
    int runs = e->attempt - 1;
    const char *reason = "the handler did not complete (its replica crashed or stopped)";
    char text[300], attempts[16], at[24];
    snprintf(text, sizeof text, "Request dead-lettered after %d attempts: %s", runs, reason);
    snprintf(attempts, sizeof attempts, "%d", runs);
    snprintf(at, sizeof at, "%lld", daebus__durable_now_ms());
    char *msg = reply && e->env.request_id ? error_reply(e->env.request_id, text) : NULL;
    char *req = strndup(e->req, e->req_len);
    const char *argv[] = {NULL,   NULL,     "2", d->dead_key, d->key,           req ? req : "",
                          reason, attempts, at,  e->id,       msg ? reply : "", msg ? msg : ""};
    redisReply *r = daebus__durable_script(d, d->sha_dead, DAEBUS__DURABLE_LUA_DEAD, 12, argv);
    if (r && !daebus__durable_is_error(r, NULL)) {
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

/* An entry for an action this service does not have: an error reply. */
static void unknown_action(daebus__durable *d, const entry *e, const char *reply)
{
    atomic_fetch_add(&d->bus->unknown_actions, 1);
    if (reply && e->env.request_id) {
        char text[200];
        snprintf(text, sizeof text, "Unknown action '%.*s'", daebus__utf8_prec(e->env.action, 150),
                 e->env.action);
        daebus__bus_send_error(d->bus, reply, e->env.request_id, text);
    }
}

/* Hands a checked entry to the pool, listed as running (refreshed until it
 * finishes). Ownership: e->env and e->key are taken. */
static void submit(daebus__durable *d, entry *e, const daebus__handler *h, const char *reply)
{
    daebus_bus *bus = d->bus;
    daebus__durable_job *j = NULL;
    daebus_bus_request *r = NULL;
    if (daebus__durable_running_add(d, e->id) == 0) {
        j = calloc(1, sizeof *j);
        r = j ? daebus__bus_request_new(bus, &e->env, d->key, reply) : NULL;
        if (!r)
            daebus__durable_running_remove(d, e->id);
    }
    if (!r) {
        DAEBUS_LOG_ERRORF(LOGC, "durable: out of memory; entry %s left pending", e->id);
        daebus__bus_envelope_free(&e->env);
        free(j);
        return; /* e->key: free_batch */
    }
    snprintf(j->entry, sizeof j->entry, "%s", e->id);
    j->done_key = e->key;
    e->key = NULL;
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

/* Counts (and answers) an entry the checks dropped; runs or dead-letters
 * a checked one. */
static void decide(daebus__durable *d, entry *e)
{
    daebus_bus *bus = d->bus;
    char rbuf[512];
    const char *reply = e->state == E_CHECK || e->state == E_UNKNOWN
                            ? daebus__bus_reply_channel(&e->env, bus->service, rbuf, sizeof rbuf)
                            : NULL;
    if (e->state == E_EXPIRED) {
        atomic_fetch_add(&bus->durable_expired, 1);
        return;
    }
    if (e->state == E_MALFORMED) {
        atomic_fetch_add(&bus->malformed, 1);
        return;
    }
    if (e->state == E_UNKNOWN)
        unknown_action(d, e, reply);
    else if (e->done)
        atomic_fetch_add(&bus->durable_duplicates, 1);
    else if (e->attempt > d->max_attempts)
        dead_letter(d, e, reply); /* the script acknowledges it */
    else {
        submit(d, e, e->h, reply);
        return; /* env taken */
    }
    daebus__bus_envelope_free(&e->env);
}

static void free_batch(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->e[i].key);
}

bool daebus__durable_batch(daebus__durable *d, const redisReply *list, bool claimed)
{
    if (!list || list->type != REDIS_REPLY_ARRAY || list->elements == 0)
        return true;
    batch *b = malloc(sizeof *b);
    if (!b) {
        DAEBUS_LOG_ERRORF(LOGC, "durable: out of memory; %zu entries left pending", list->elements);
        return true;
    }
    b->claimed = claimed;
    read_batch(d, list, b);
    bool ok = check_batch(d, b);
    for (size_t i = 0; i < b->n; i++) {
        entry *e = &b->e[i];
        if (ok && e->state != E_SKIP)
            decide(d, e);
        else if (e->state == E_CHECK || e->state == E_UNKNOWN)
            daebus__bus_envelope_free(&e->env); /* left pending */
    }
    free_batch(b);
    free(b);
    return d->c != NULL;
}
