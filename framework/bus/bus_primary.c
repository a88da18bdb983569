/* bus_primary.c - the bus's side of the service channel's primary
 * (framework/cluster/cluster_primary.c has the protocol and its reasoning).
 *
 * The primary holds the jobs of a read batch, sends one progress marker for
 * the batch on the claim line (before the batch's last message is parsed,
 * so that its round trip overlaps the parse; under load at most one per
 * MARK_GAP_S) and then hands the jobs to the workers; each worker runs its
 * message once the marker is acknowledged in time
 * (daebus__cluster_progress_take). A deep worker queue (or an action
 * unknown here) makes it skip a message instead: the marker lists it and
 * every replica claims it.
 *
 * A backup keeps each message unread, in arrival order, and drops it when
 * a marker of the message's primary covers it; skipped ones it claims at
 * once; one still uncovered W after it was read, with the connection
 * drained (a marker already published has been read), makes it take over
 * and claim. It reads in batches (paced) meanwhile: it only copies bytes.
 * Subscriber thread only.
 */
#include <stdlib.h>
#include <string.h>
#include "daebus/log.h"
#include "bus_internal.h"
#include "clock.h"

#define LOGC DAEBUS__BUS_LOGC

#define PACE_MS    5      /* a backup's reads */
#define MARK_GAP_S 0.0003 /* the primary's markers under load */
#define PUMP_US    5000   /* markers' answers read while no worker waits for them */

struct daebus__bus_kept {
    daebus__bus_kept *next;
    daebus__bus_claim cl;
    long long due_ms; /* W after it was read */
    size_t len;
    char data[];
};

static long long now_ms(void)
{
    return (long long)(daebus__now_mono() * 1000.0);
}

static daebus__cluster *cluster_of(daebus_bus *bus)
{
    return atomic_load(&bus->cluster);
}

void daebus__bus_primary_gated(daebus_bus *bus, const daebus__bus_claim *cl)
{
    daebus__bus_primary *p = &bus->prim;
    if (p->epoch != cl->t.epoch) {
        /* Positions start again: skips left by a marker not sent name the
         * old epoch's (uncovered there: the others take them over). */
        p->nskip = 0;
        p->unmarked = false;
    }
    p->dirty = true;
    p->epoch = cl->t.epoch;
    p->upto = cl->pos + 1;
}

/* Does the primary leave a message to claims? When its queue (with the
 * batch held) is a round of workers deep, or full. */
static bool busy(daebus_bus *bus)
{
    int workers = daebus_app_max_workers(bus->app);
    size_t limit = (size_t)(workers > 0 ? workers : 1);
    if (bus->opts.max_queue < limit)
        limit = bus->opts.max_queue;
    return daebus__pool_pending(bus->pool) + atomic_load(&bus->batched) + (size_t)bus->prim.nheld >=
           limit;
}

static void release_held(daebus_bus *bus, unsigned long long ticket);

/* No marker can list what this replica leaves to claims: it sends none
 * more in this epoch, so none covers those positions; the others take them
 * over W after they read them, and claim them with this replica. */
static void stop_marking(daebus_bus *bus)
{
    daebus__bus_primary *p = &bus->prim;
    p->unmarked = true;
    p->nskip = 0;
    p->dirty = false;
    DAEBUS_LOG_WARNF(LOGC,
                     "progress markers cannot be sent (the claim line is down): this replica "
                     "claims what it reads, and the others take over in %lld ms",
                     daebus__cluster_window_ms(cluster_of(bus)));
}

/* Lists pos in the skips of the next marker; no room left (the markers
 * that would have taken them were not sent): no more markers. */
static void list_skip(daebus_bus *bus, unsigned long long pos)
{
    daebus__bus_primary *p = &bus->prim;
    if (p->unmarked)
        return;
    if (p->nskip == DAEBUS__CLUSTER_SKIPS)
        stop_marking(bus);
    else
        p->skip[p->nskip++] = pos;
}

/* Adds pos to the skips of the next marker (a full list: a marker for what
 * came before pos goes first). */
static void add_skip(daebus_bus *bus, unsigned long long pos)
{
    daebus__bus_primary *p = &bus->prim;
    if (p->nskip == DAEBUS__CLUSTER_SKIPS && !p->unmarked) {
        unsigned long long upto = p->upto;
        p->upto = pos;
        daebus__bus_primary_flush(bus);
        p->upto = upto;
        p->dirty = !p->unmarked;
    }
    list_skip(bus, pos);
}

bool daebus__bus_primary_skip_busy(daebus_bus *bus, const daebus__bus_claim *cl)
{
    if (!busy(bus))
        return false;
    add_skip(bus, cl->pos);
    return true;
}

bool daebus__bus_primary_hold(daebus_bus *bus, daebus__bus_claim *cl, daebus__job_fn *fn,
                              daebus__job_fn *drop, void *arg, bool request, bool weak)
{
    daebus__bus_primary *p = &bus->prim;
    if (weak && !p->early) {
        add_skip(bus, cl->pos);
        cl->mode = DAEBUS__GATE_CLAIM;
        return false;
    }
    if (p->nheld == DAEBUS__BUS_HELD)
        daebus__bus_primary_flush(bus);
    p->held[p->nheld++] = (daebus__bus_held){fn, drop, arg, cl, request};
    if (p->early)
        release_held(bus, p->early_ticket); /* its marker went before the parse */
    return true;
}

/* Sends the marker of what was gated (dirty). Returns: its ticket, 0 when
 * not sent (then claims). A marker that could not be sent keeps its skips
 * and goes again with the next one: a later marker covers its positions,
 * so every one this replica leaves to claims must be listed there. */
static unsigned long long send_marker(daebus_bus *bus)
{
    daebus__bus_primary *p = &bus->prim;
    daebus__cluster *c = cluster_of(bus);
    if (!p->dirty || !c || p->unmarked) {
        p->nskip = 0;
        p->dirty = false;
        return 0;
    }
    unsigned long long ticket =
        daebus__cluster_progress_send(c, p->epoch, p->upto, p->skip, p->nskip);
    if (ticket) {
        p->nskip = 0;
        p->dirty = false;
        p->marked_at = daebus__now_mono();
    }
    return ticket;
}

/* A held job not run: stopping, so neither answered. */
static void drop_held(daebus__bus_held *h)
{
    h->claim->mode = DAEBUS__GATE_CLAIM;
    h->claim->ticket = 0;
    h->drop(h->arg);
}

/* The jobs of a batch after the first, inside one pool job: one worker
 * waits for the marker, then hands the others out. Each job would
 * otherwise wake a worker that at once sleeps again on the marker's answer
 * (two wake-ups per request instead of one). */
typedef struct held_batch {
    daebus_bus *bus;
    unsigned long long ticket;
    int n;
    daebus__bus_held h[];
} held_batch;

static void batch_run(void *arg)
{
    held_batch *b = arg;
    daebus_bus *bus = b->bus;
    daebus__cluster_progress_wait(cluster_of(bus), b->ticket);
    atomic_fetch_sub(&bus->batched, (size_t)b->n);
    int here[DAEBUS__BUS_HELD], nhere = 0;
    for (int i = 1; i < b->n; i++) {
        /* Refused (the queue filled since the primary looked, or the
         * pool's drain for a graceful stop is over): the marker covered
         * it, so this replica runs it, here, after the first. */
        if (daebus__pool_submit_more(bus->pool, b->h[i].fn, b->h[i].drop, b->h[i].arg) != 0)
            here[nhere++] = i;
    }
    b->h[0].fn(b->h[0].arg);
    for (int k = 0; k < nhere; k++)
        b->h[here[k]].fn(b->h[here[k]].arg);
    free(b);
}

static void batch_drop(void *arg)
{
    held_batch *b = arg;
    atomic_fetch_sub(&b->bus->batched, (size_t)b->n);
    for (int i = 0; i < b->n; i++)
        drop_held(&b->h[i]);
    free(b);
}

/* Hands one held job to the workers (or, full, to a late claim). */
static void submit_held(daebus_bus *bus, daebus__bus_held *h)
{
    int rc = daebus__pool_submit(bus->pool, h->fn, h->drop, h->arg);
    if (rc == DAEBUS_EFULL) {
        /* Filled since the look (claims won meanwhile): claimed late,
         * like any message of a full replica. The marker covered it, so
         * no other replica claims it: this one wins, runs it or answers
         * "overloaded". */
        h->claim->mode = DAEBUS__GATE_CLAIM;
        h->claim->ticket = 0;
        daebus__bus_submit_claimed(bus, h->claim, h->fn, h->drop, h->arg, h->request, true);
    } else if (rc != 0) {
        drop_held(h);
    }
}

/* Hands the held jobs to the workers: their marker went with ticket (0:
 * not sent, so each is claimed, and listed as skipped in the next marker:
 * the others claim it too, whoever wins runs it; a stopping replica claims
 * nothing, and a message covered but not listed would be lost). */
static void release_held(daebus_bus *bus, unsigned long long ticket)
{
    daebus__bus_primary *p = &bus->prim;
    for (int i = 0; i < p->nheld; i++) {
        daebus__bus_claim *cl = p->held[i].claim;
        cl->ticket = ticket;
        if (!ticket) {
            cl->mode = DAEBUS__GATE_CLAIM;
            list_skip(bus, cl->pos);
        }
    }
    held_batch *b = NULL;
    if (ticket && p->nheld > 1 &&
        (b = malloc(sizeof *b + (size_t)p->nheld * sizeof b->h[0])) != NULL) {
        b->bus = bus;
        b->ticket = ticket;
        b->n = p->nheld;
        memcpy(b->h, p->held, (size_t)p->nheld * sizeof b->h[0]);
        atomic_fetch_add(&bus->batched, (size_t)b->n);
        int rc = daebus__pool_submit(bus->pool, batch_run, batch_drop, b);
        if (rc != 0) {
            atomic_fetch_sub(&bus->batched, (size_t)b->n);
            free(b);
            b = NULL; /* one by one, as below */
        }
    }
    for (int i = 0; !b && i < p->nheld; i++)
        submit_held(bus, &p->held[i]);
    p->nheld = 0;
}

bool daebus__bus_primary_paced(daebus_bus *bus)
{
    /* Under load (workers busy) at most one marker per MARK_GAP_S: the
     * requests wait for CPU anyway, and each marker costs every replica. */
    bool busy = daebus__pool_active(bus->pool) > 0 || daebus__pool_pending(bus->pool) > 0;
    return busy && daebus__now_mono() - bus->prim.marked_at < MARK_GAP_S;
}

void daebus__bus_primary_flush(daebus_bus *bus)
{
    daebus__bus_primary *p = &bus->prim;
    if (p->dirty || p->nheld)
        release_held(bus, send_marker(bus));
}

void daebus__bus_primary_early(daebus_bus *bus, bool on)
{
    daebus__bus_primary *p = &bus->prim;
    p->early = on;
    if (on) {
        p->early_ticket = send_marker(bus);
        release_held(bus, p->early_ticket);
    }
}

void daebus__bus_primary_keep(daebus_bus *bus, const daebus__bus_claim *cl, const char *data,
                              size_t len)
{
    daebus__bus_primary *p = &bus->prim;
    size_t cap = bus->opts.max_queue * 4 > 4096 ? bus->opts.max_queue * 4 : 4096;
    if (p->n >= cap) {
        /* Claiming before the window could run a message twice: left to the
         * primary (lost if it is gone). */
        atomic_fetch_add(&bus->overloads, 1);
        long missed = daebus__ratelimit_pass(&bus->full_log, daebus__now_mono(), 1.0);
        if (missed >= 0)
            DAEBUS_LOG_WARNF(LOGC,
                             "%zu requests wait for the primary's progress: a request is left to "
                             "the primary alone",
                             p->n);
        return;
    }
    daebus__bus_kept *k = malloc(sizeof *k + len + 1);
    if (!k)
        return;
    k->next = NULL;
    k->cl = *cl;
    k->cl.counted = true;
    k->due_ms = now_ms() + daebus__cluster_window_ms(cluster_of(bus));
    k->len = len;
    memcpy(k->data, data, len);
    k->data[len] = '\0';
    if (!p->tail)
        p->tail = &p->head;
    *p->tail = k;
    p->tail = &k->next;
    p->n++;
}

static bool skipped(const daebus__cluster_progress *pr, unsigned long long pos)
{
    for (int i = 0; i < pr->nskip; i++)
        if (pr->skip[i] == pos)
            return true;
    return false;
}

void daebus__bus_on_progress(daebus_bus *bus, const daebus__cluster_progress *pr)
{
    daebus__bus_primary *p = &bus->prim;
    daebus__bus_kept **at = &p->head;
    if (pr->own)
        return; /* what this instance kept, it kept before it was primary */
    while (*at) {
        daebus__bus_kept *k = *at;
        bool unknown = k->cl.t.primary == DAEBUS__CLUSTER_PRIMARY_UNKNOWN;
        if ((!unknown && k->cl.t.primary != pr->primary) || k->cl.t.epoch != pr->epoch) {
            at = &k->next; /* another primary's, or another epoch's */
            continue;
        }
        if (k->cl.pos >= pr->upto) {
            if (unknown) {
                at = &k->next; /* another sender's marker may cover it */
                continue;
            }
            break; /* the ones of this primary after it are later still */
        }
        *at = k->next;
        p->n--;
        if (skipped(pr, k->cl.pos))
            daebus__bus_claim_unread_now(bus, &k->cl, k->data, k->len);
        else
            atomic_fetch_add(&bus->covered, 1);
        free(k);
    }
    if (!*at)
        p->tail = at; /* the last one may have gone */
}

/* Messages uncovered past the window: take over and claim them (those due
 * by now; the later ones keep their chance to be covered). */
static void take_over(daebus_bus *bus, long long now)
{
    daebus__bus_primary *p = &bus->prim;
    daebus__cluster_take_over(cluster_of(bus));
    while (p->head && p->head->due_ms <= now) {
        daebus__bus_kept *k = p->head;
        p->head = k->next;
        p->n--;
        daebus__bus_claim_unread_now(bus, &k->cl, k->data, k->len);
        free(k);
    }
    if (!p->head)
        p->tail = &p->head;
}

int daebus__bus_primary_tick(daebus_bus *bus, bool idle)
{
    daebus__bus_primary *p = &bus->prim;
    daebus__cluster *c = cluster_of(bus);
    if (!c)
        return -1;
    bool waiting = false;
    if (p->nheld || p->dirty) {
        waiting = daebus__bus_primary_paced(bus);
        if ((!p->more || idle) && !waiting)
            daebus__bus_primary_flush(bus);
    }
    int pace = p->backup ? PACE_MS : 0;
    if (pace != p->pace) {
        p->pace = pace;
        daebus__redis_sub_pace(bus->sub, pace);
    }
    daebus__cluster_primary_tick(c);
    long long w = daebus__cluster_window_ms(c);
    if (idle)
        daebus__cluster_progress_idle(c);
    long long now = now_ms();
    if (p->head && p->head->due_ms <= now && daebus__redis_sub_drained(bus->sub))
        take_over(bus, now);
    long long next = w / 4 * 1000;
    if (p->head && (p->head->due_ms - now) * 1000 < next)
        next = (p->head->due_ms - now) * 1000;
    /* Markers not yet answered: looked at again soon (a marker's answer
     * time decides whether its messages are this replica's). */
    if (idle || now - p->pumped_ms >= PUMP_US / 1000) {
        p->pumped_ms = now; /* not after every message of a steady flow */
        p->pumping = daebus__cluster_progress_pump(c);
    }
    if (p->pumping && next > PUMP_US)
        next = PUMP_US;
    if (waiting) {
        /* the held batch goes when the gap ends, not at the next ms */
        long long gap = (long long)((p->marked_at + MARK_GAP_S - daebus__now_mono()) * 1e6) + 1;
        if (gap < next)
            next = gap;
    }
    return next < 1 ? 1 : (int)next;
}

void daebus__bus_primary_drop_all(daebus_bus *bus)
{
    daebus__bus_primary *p = &bus->prim;
    daebus__bus_primary_flush(bus);
    while (p->head) {
        daebus__bus_kept *k = p->head;
        p->head = k->next;
        free(k);
    }
    p->tail = &p->head;
    p->n = 0;
}
