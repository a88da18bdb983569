/* bus_durable_batch.c - one batch of request-stream entries, on the reader.
 *
 * The entries one XREADGROUP or XAUTOCLAIM returned are checked together:
 *   1. read: deadline passed (dropped, "expired"), malformed (dropped),
 *      else the envelope and the done record's key;
 *   2. one pipelined round trip: EXISTS of every done record, and XPENDING
 *      of every claimed entry (its delivery count: the attempt). An entry
 *      fresh from XREADGROUP ... > was delivered once: attempt 1, no
 *      XPENDING;
 *   3. each entry: done (dropped, "duplicates"), too many deliveries
 *      (dead-lettered, one script), an action this service lacks (error
 *      reply, dropped), else handed to the worker pool;
 *   4. what was dropped: one XACK and one XDEL for all, pipelined.
 * So the hot path costs one round trip per batch, not one per entry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/log.h"
#include "bus_durable_lua.h"
#include "bus_durable_reader.h"
#include "utf8.h"

#define LOGC DAEBUS__BUS_LOGC

typedef enum { E_SKIP, E_DROP, E_CHECK } entry_state;

typedef struct entry {
    const char *id;
    const char *req;
    size_t req_len;
    long long deadline;
    int attempt;
    entry_state state;
    daebus__bus_envelope env; /* E_CHECK: parsed */
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

/* Decides what needs no Redis: expired, malformed, out of memory. */
static void read_entry(daebus__durable *d, entry *e)
{
    daebus_bus *bus = d->bus;
    char why[96];
    if (e->deadline > 0 && e->deadline <= daebus__durable_now_ms()) {
        atomic_fetch_add(&bus->durable_expired, 1);
        e->state = E_DROP;
        return;
    }
    if (!e->req || daebus__bus_check_utf8(e->req, e->req_len, why, sizeof why) != 0 ||
        daebus__bus_parse_request(e->req, e->req_len, &e->env, why, sizeof why) != 0) {
        atomic_fetch_add(&bus->malformed, 1);
        DAEBUS_LOG_WARNF(LOGC, "durable: malformed entry %s of %s dropped (%s)", e->id, d->key,
                         e->req ? why : "no req field");
        e->state = E_DROP;
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

/* EXISTS of each done record (+ XPENDING of each claimed entry), pipelined. */
static bool check_batch(daebus__durable *d, batch *b)
{
    enum { MAXC = 2 * DAEBUS__DURABLE_MAX_BATCH };
    daebus__redis_cmd cmds[MAXC];
    const char *argv[MAXC][6];
    redisReply *rep[MAXC];
    int n = 0;
    for (size_t i = 0; i < b->n; i++) {
        entry *e = &b->e[i];
        if (e->state != E_CHECK)
            continue;
        const char *ex[] = {"EXISTS", e->key};
        memcpy(argv[n], ex, sizeof ex);
        cmds[n] = (daebus__redis_cmd){2, argv[n], NULL};
        n++;
        if (b->claimed) {
            const char *xp[] = {"XPENDING", d->key, "daebus", e->id, e->id, "1"};
            memcpy(argv[n], xp, sizeof xp);
            cmds[n] = (daebus__redis_cmd){6, argv[n], NULL};
            n++;
        }
    }
    if (n == 0)
        return true;
    if (!daebus__durable_pipeline(d, n, cmds, rep))
        return false;
    int k = 0;
    for (size_t i = 0; i < b->n; i++) {
        entry *e = &b->e[i];
        if (e->state != E_CHECK)
            continue;
        e->done = rep[k]->type == REDIS_REPLY_INTEGER && rep[k]->integer > 0;
        k++;
        if (b->claimed) {
            e->attempt = delivery_count(rep[k]);
            if (e->attempt < 2)
                e->attempt = 2;
            k++;
        }
    }
    for (int i = 0; i < n; i++)
        freeReplyObject(rep[i]);
    return true;
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

/* Runs, dead-letters or drops one checked entry. */
static void decide(daebus__durable *d, entry *e)
{
    daebus_bus *bus = d->bus;
    char rbuf[512];
    const char *reply = daebus__bus_reply_channel(&e->env, bus->service, rbuf, sizeof rbuf);
    const daebus__handler *h =
        e->env.action ? daebus__bus_find_handler(bus->actions, bus->nactions, e->env.action) : NULL;
    e->state = E_DROP;
    if (e->done) {
        atomic_fetch_add(&bus->durable_duplicates, 1);
    } else if (e->attempt > d->max_attempts) {
        dead_letter(d, e, reply); /* the script acknowledges it */
        e->state = E_SKIP;
    } else if (!h) {
        unknown_action(d, e, reply);
    } else {
        submit(d, e, h, reply);
        e->state = E_SKIP;
        return; /* env taken */
    }
    daebus__bus_envelope_free(&e->env);
}

/* ---- 4. the drops, one round trip ---- */

/* XACK + XDEL of every entry that will not run. */
static bool drop_batch(daebus__durable *d, const batch *b)
{
    const char *ack[3 + DAEBUS__DURABLE_MAX_BATCH] = {"XACK", d->key, "daebus"};
    const char *del[2 + DAEBUS__DURABLE_MAX_BATCH] = {"XDEL", d->key};
    int n = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->e[i].state != E_DROP)
            continue;
        ack[3 + n] = b->e[i].id;
        del[2 + n] = b->e[i].id;
        n++;
    }
    if (n == 0)
        return true;
    daebus__redis_cmd cmds[2] = {{3 + n, ack, NULL}, {2 + n, del, NULL}};
    redisReply *rep[2];
    if (!daebus__durable_pipeline(d, 2, cmds, rep))
        return false;
    freeReplyObject(rep[0]);
    freeReplyObject(rep[1]);
    return true;
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
        if (e->state != E_CHECK)
            continue;
        if (ok)
            decide(d, e);
        else
            daebus__bus_envelope_free(&e->env); /* lost: left pending */
    }
    ok = ok && drop_batch(d, b);
    free_batch(b);
    free(b);
    return ok;
}
