/* bus_claim.c - exactly once for the bus: which replica takes a message.
 *
 * The service channel (and each LISTEN .once channel) is "claimed": the
 * subscriber thread asks the cluster's gate (framework/cluster/cluster_gate.c)
 * about each of its messages in arrival order and numbers them per channel
 * since the last join; a worker then claims the message by that number
 * before it runs a handler or sends an error reply, unless the gate said
 * solo. docs/replicas.md ("Actions exactly once") has the reasoning.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/log.h"
#include "bus_internal.h"
#include "clock.h"
#include "hash.h"

#define LOGC DAEBUS__BUS_LOGC

bool daebus__bus_gate(daebus_bus *bus, daebus__bus_pos *p, const char *channel,
                      daebus__bus_claim *cl)
{
    cl->mode = daebus__cluster_gate(atomic_load(&bus->cluster), &cl->t);
    if (cl->mode == DAEBUS__GATE_IGNORE)
        return false;
    if (p->serial != cl->t.serial) { /* a join: every position starts again */
        p->serial = cl->t.serial;
        p->next = 0;
    }
    cl->pos = p->next++;
    cl->scope[0] = '\0';
    if (channel && cl->mode == DAEBUS__GATE_CLAIM)
        snprintf(cl->scope, sizeof cl->scope, "l:%016llx",
                 (unsigned long long)daebus__hash_str(channel));
    if (!channel) {
        /* The service channel has a primary (bus_primary.c), when one is known. */
        bool primary = cl->mode == DAEBUS__GATE_CLAIM && cl->t.is_primary;
        bus->prim.backup = cl->mode == DAEBUS__GATE_CLAIM && cl->t.primary && !primary;
        if (primary) {
            daebus__bus_primary_gated(bus, cl);
            /* A primary whose queue is deep leaves it to the others before
             * any marker can cover it (it claims it late itself). */
            if (!daebus__bus_primary_skip_busy(bus, cl))
                cl->mode = DAEBUS__GATE_PRIMARY;
        }
    }
    return true;
}

bool daebus__bus_take(daebus_bus *bus, daebus__bus_claim *cl)
{
    if (cl->mode != DAEBUS__GATE_CLAIM && cl->mode != DAEBUS__GATE_PRIMARY)
        return true;
    daebus__cluster *c = atomic_load(&bus->cluster);
    if (!c)
        return false;
    if (cl->mode == DAEBUS__GATE_PRIMARY) {
        unsigned long long marker = cl->ticket;
        cl->ticket = 0;
        return daebus__cluster_progress_take(c, &cl->t, marker, cl->pos) == 1;
    }
    unsigned long long ticket = cl->ticket;
    cl->ticket = 0;
    if (ticket)
        return daebus__cluster_claim_finish(c, ticket) == 1;
    int rc = daebus__cluster_claim(c, &cl->t, cl->scope[0] ? cl->scope : NULL, cl->pos);
    daebus__cluster_claim_repair(c); /* the line was down, perhaps */
    return rc == 1;
}

void daebus__bus_abandon(daebus_bus *bus, daebus__bus_claim *cl)
{
    daebus__cluster *c = atomic_load(&bus->cluster);
    if (cl->mode == DAEBUS__GATE_CLAIM && cl->ticket && c)
        daebus__cluster_claim_finish(c, cl->ticket);
    cl->ticket = 0;
}

/* ---- error replies made without a request ---- */

typedef struct error_job {
    daebus_bus *bus;
    daebus__bus_claim claim;
    cJSON *request_id;
    char *channel;
    char text[200];
} error_job;

static void error_job_free(void *arg)
{
    error_job *j = arg;
    daebus__bus_abandon(j->bus, &j->claim);
    cJSON_Delete(j->request_id);
    free(j->channel);
    free(j);
}

static void error_job_run(void *arg)
{
    error_job *j = arg;
    if (daebus__bus_take(j->bus, &j->claim))
        daebus__bus_send_error(j->bus, j->channel, j->request_id, j->text);
    error_job_free(j);
}

void daebus__bus_error_once(daebus_bus *bus, daebus__bus_claim *cl, const char *channel,
                            const cJSON *request_id, const char *text, bool weak)
{
    if (cl->mode == DAEBUS__GATE_SOLO) {
        daebus__bus_send_error(bus, channel, request_id, text);
        return;
    }
    error_job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->bus = bus;
    j->claim = *cl;
    cl->ticket = 0; /* the job finishes it */
    j->request_id = cJSON_Duplicate(request_id, 1);
    j->channel = strdup(channel);
    snprintf(j->text, sizeof j->text, "%s", text);
    if (!j->channel || !j->request_id) {
        error_job_free(j);
        return;
    }
    daebus__bus_submit_claimed(bus, &j->claim, error_job_run, error_job_free, j, false, weak);
}

/* The reply of a solo replica whose queue is full. */
static void answer_overloaded(daebus_bus *bus, daebus_bus_request *r)
{
    if (r->is_action && r->reply_channel && daebus__bus_claim_final(r))
        daebus__bus_send_error(bus, r->reply_channel, r->env.request_id,
                               "Service overloaded, try again later");
}

static void note_full(daebus_bus *bus, const char *what)
{
    atomic_fetch_add(&bus->overloads, 1);
    long missed = daebus__ratelimit_pass(&bus->full_log, daebus__now_mono(), 1.0);
    if (missed > 0)
        DAEBUS_LOG_WARNF(LOGC, "worker queue full: %s (%ld more since the last such line)", what,
                         missed);
    else if (missed == 0)
        DAEBUS_LOG_WARNF(LOGC, "worker queue full: %s", what);
}

void daebus__bus_overloaded(daebus_bus *bus, daebus_bus_request *r)
{
    note_full(bus, "refusing a message");
    answer_overloaded(bus, r);
}

/* ---- claims made later ----
 *
 * A replica claims at once the messages whose position falls on its rank in
 * its view (pos % size == rank: the replicas share the work round robin) and
 * the others DEFER_S later, many in one pipeline from this thread: the
 * preferred replica usually wins alone, and the others' claims, needed only
 * when it died, left or is full, stay off the critical path. What is weak
 * (an unknown action: a replica that knows it should answer; a full queue)
 * waits WEAK_S. A replica whose queue is full does not claim before then;
 * one that wins a claim and finds its queue full answers "overloaded"
 * (every replica is full then). Subscriber thread only. */

#define DEFER_S 0.03  /* the others' claims */
#define WEAK_S  0.1   /* weak claims */
#define SLACK_S 0.015 /* claimed with the first due: up to SLACK_S early */
#define BATCH   128

struct daebus__bus_deferred {
    double due;
    daebus__job_fn *fn, *drop; /* NULL: an unread message (below) */
    void *arg;
    daebus__bus_claim *claim; /* inside arg, or &unread */
    bool request;             /* arg is a daebus_bus_request */
    daebus__bus_deferred *next;
    /* An unread message: its bytes, parsed only when its claim is won. */
    daebus__bus_claim unread;
    int listen; /* -1: the service channel, else its entry in listens */
    size_t len;
    char data[];
};

bool daebus__bus_preferred(const daebus__bus_claim *cl)
{
    if (cl->t.primary && !cl->scope[0])
        return false; /* the service channel's claims come after its primary's choice */
    return cl->t.size <= 1 || cl->pos % cl->t.size == cl->t.rank;
}

/* A deferred entry that will not run. */
static void discard(daebus__bus_deferred *d)
{
    if (d->drop)
        d->drop(d->arg);
    free(d);
}

static bool queue_full(daebus_bus *bus)
{
    return daebus__pool_pending(bus->pool) >= bus->opts.max_queue;
}

/* Queues d for a claim in seconds (weak: on the last-resort list). */
static void defer(daebus_bus *bus, daebus__bus_deferred *d, bool weak, double seconds)
{
    daebus__bus_defer_list *l = &bus->later[weak ? 1 : 0];
    size_t cap = bus->opts.max_queue * 4 > 4096 ? bus->opts.max_queue * 4 : 4096;
    if (bus->later[0].n + bus->later[1].n >= cap) {
        note_full(bus, "a claim left to another replica");
        discard(d);
        return;
    }
    d->due = daebus__now_mono() + seconds;
    d->next = NULL;
    if (!l->tail)
        l->tail = &l->head;
    *l->tail = d;
    l->tail = &d->next;
    l->n++;
}

bool daebus__bus_claim_early(daebus_bus *bus, daebus__bus_claim *cl)
{
    daebus__cluster *c = atomic_load(&bus->cluster);
    /* A deep queue takes its claims on the workers: the line keeps the
     * answers of its last RING tickets only. */
    if (cl->ticket || cl->mode != DAEBUS__GATE_CLAIM || !c || !daebus__bus_preferred(cl) ||
        queue_full(bus) || daebus__pool_pending(bus->pool) >= DAEBUS__REDIS_LINE_RING / 2)
        return cl->ticket != 0;
    cl->ticket = daebus__cluster_claim_start(c, &cl->t, cl->scope[0] ? cl->scope : NULL, cl->pos);
    return cl->ticket != 0;
}

void daebus__bus_submit_claimed(daebus_bus *bus, daebus__bus_claim *cl, daebus__job_fn *fn,
                                daebus__job_fn *drop, void *arg, bool request, bool weak)
{
    if (cl->mode == DAEBUS__GATE_PRIMARY &&
        daebus__bus_primary_hold(bus, cl, fn, drop, arg, request, weak))
        return;
    if (!cl->ticket && !weak && daebus__bus_preferred(cl) && queue_full(bus))
        weak = true; /* claimed after the replicas with room */
    if (cl->ticket || (!weak && daebus__bus_preferred(cl))) {
        /* The claim goes now (unless it went before the message was
         * parsed); its answer comes while the worker picks the job up, and
         * the worker waits for it before anything else. */
        daebus__bus_claim_early(bus, cl);
        int rc = daebus__pool_submit(bus->pool, fn, drop, arg);
        if (rc == 0)
            return;
        if (rc != DAEBUS_EFULL || cl->ticket) {
            /* Full since the look (rare) or shutting down: a claim sent is
             * finished by its drop. */
            drop(arg);
            return;
        }
        weak = true;
    }
    daebus__bus_deferred *d = malloc(sizeof *d);
    if (!d) {
        drop(arg);
        return;
    }
    *d = (daebus__bus_deferred){0, fn, drop, arg, cl, request, NULL};
    defer(bus, d, weak, weak ? WEAK_S : DEFER_S);
}

static daebus__bus_deferred *unread_copy(const daebus__bus_claim *cl, int listen, const char *data,
                                         size_t len)
{
    daebus__bus_deferred *d = malloc(sizeof *d + len + 1);
    if (!d)
        return NULL;
    *d = (daebus__bus_deferred){.claim = &d->unread, .unread = *cl, .listen = listen, .len = len};
    d->unread.counted = true;
    memcpy(d->data, data, len);
    d->data[len] = '\0';
    return d;
}

void daebus__bus_defer_unread(daebus_bus *bus, const daebus__bus_claim *cl, int listen,
                              const char *data, size_t len, bool weak)
{
    daebus__bus_deferred *d = unread_copy(cl, listen, data, len);
    if (d)
        defer(bus, d, weak, weak ? WEAK_S : DEFER_S);
}

void daebus__bus_claim_unread_now(daebus_bus *bus, const daebus__bus_claim *cl, const char *data,
                                  size_t len)
{
    daebus__bus_deferred *d = unread_copy(cl, -1, data, len);
    if (d)
        defer(bus, d, false, 0);
}

/* A deferred message whose claim was just made. */
static void after_claim(daebus_bus *bus, daebus__bus_deferred *d, int rc)
{
    if (rc != 1) {
        if (d->drop)
            d->drop(d->arg); /* another replica has it (or no one may: at most once) */
    } else if (!d->fn) {
        d->unread.mode = DAEBUS__GATE_SOLO; /* won: handled as a solo replica does */
        daebus__bus_take_unread(bus, &d->unread, d->listen, d->data, d->len);
    } else {
        d->claim->mode = DAEBUS__GATE_SOLO; /* won: the worker claims no more */
        int src = daebus__pool_submit(bus->pool, d->fn, d->drop, d->arg);
        if (src == DAEBUS_EFULL && d->request) {
            daebus_bus_request *r = d->arg;
            note_full(bus, "a request this replica claimed answered \"overloaded\"");
            answer_overloaded(bus, r);
            daebus__bus_claim_final(r);
            daebus_bus_request_release(r);
        } else if (src != 0) {
            d->drop(d->arg);
        }
    }
    free(d);
}

/* Takes the due entries of list k (a full queue sends the others back, weak)
 * and claims them in one pipeline. Once the first is due, the entries due
 * within the next SLACK_S go with it: under a steady flow the tick runs after
 * every message, and claiming only what is due then would send one claim per
 * pipeline. Returns: the entries taken. */
static size_t run_due(daebus_bus *bus, int k, double now)
{
    daebus__bus_defer_list *l = &bus->later[k];
    daebus__bus_deferred *due[BATCH];
    daebus__cluster_claim_req q[BATCH];
    size_t n = 0;
    if (!l->head || l->head->due > now)
        return 0;
    /* No more claims at once than the queue has room for: each one won is
     * a job (a full replica's wins are answered "overloaded"). */
    size_t pending = daebus__pool_pending(bus->pool);
    size_t room = bus->opts.max_queue > pending ? bus->opts.max_queue - pending : 0;
    while (l->head && l->head->due <= now + SLACK_S && n < BATCH) {
        daebus__bus_deferred *d = l->head;
        l->head = d->next;
        if (!l->head)
            l->tail = &l->head;
        l->n--;
        if (k == 0 && n >= room) {
            defer(bus, d, true, WEAK_S - DEFER_S);
            continue;
        }
        q[n] = (daebus__cluster_claim_req){&d->claim->t, d->claim->scope, d->claim->pos, 0};
        due[n++] = d;
    }
    daebus__cluster *c = atomic_load(&bus->cluster);
    if (n)
        daebus__bus_primary_flush(bus); /* what the primary holds goes first: it is covered */
    if (n && c)
        daebus__cluster_claim_many(c, q, n);
    for (size_t i = 0; i < n; i++)
        after_claim(bus, due[i], c ? q[i].rc : DAEBUS_ESTATE);
    return n;
}

int daebus__bus_on_tick(void *user, bool idle)
{
    daebus_bus *bus = user;
    int pus = daebus__bus_primary_tick(bus, idle);
    double now = daebus__now_mono(), next = pus >= 0 ? now + pus / 1e6 : 0;
    for (int k = 0; k < 2; k++) {
        daebus__bus_defer_list *l = &bus->later[k];
        while (run_due(bus, k, now) == BATCH) {
        }
        if (l->head && (next == 0 || l->head->due < next))
            next = l->head->due;
    }
    if (next == 0)
        return -1;
    double us = (next - now) * 1e6 + 1;
    return us < 1 ? 1 : us > 2e9 ? 2000000000 : (int)us;
}

void daebus__bus_defer_drop_all(daebus_bus *bus)
{
    daebus__bus_primary_drop_all(bus);
    for (int k = 0; k < 2; k++) {
        daebus__bus_defer_list *l = &bus->later[k];
        while (l->head) {
            daebus__bus_deferred *d = l->head;
            l->head = d->next;
            discard(d);
        }
        l->tail = &l->head;
        l->n = 0;
    }
}
