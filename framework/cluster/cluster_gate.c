/* cluster_gate.c - exactly once across the instances of a service (see cluster.h).
 *
 * Every instance's subscriber reads the service channel (and LISTEN .once
 * channels) and the cluster channel "daebus:<service>:cluster" on ONE
 * connection, so Redis gives each the same messages in the same order. On
 * the cluster channel:
 *
 *   join <id> <gen> <ms>  an instance (re)joining. Normally published inside
 *                         the MULTI/EXEC of its subscription, after the
 *                         claimed channels' SUBSCRIBEs and before the
 *                         cluster channel's (daebus__cluster_join_cmds): it
 *                         sits exactly where the joiner's stream begins, so
 *                         the joiner handles from its first message. Else
 *                         (announces lapsed, a plain subscription) the
 *                         heartbeat publishes it after an announce and the
 *                         joiner ignores claimed messages until it comes
 *                         back. Every instance that sees a join starts a new
 *                         epoch there: positions count from 0 again.
 *   view <id> <n> <ms>    before a view read, on the same connection: the
 *                         place in the stream where read n happened.
 *
 * A message of a claimed channel is named (epoch, channel, position): the
 * same name on every instance that handles it. A claim is
 * SET daebus:<service>:claim:[<scope>:]<epoch>:<position> <id> NX PX <ttl>,
 * pipelined after an EXISTS of the epoch's key (created by the join, kept
 * alive by every heartbeat, lost with a Redis restart): a claim reaching a
 * Redis that lost the epoch is not trusted (the keys of the claims made
 * before are gone too).
 *
 * Solo: from its own marker n on (or its own join, read with it), an
 * instance whose read showed only itself handles without claims until a
 * join arrives (any instance that handles must have joined: before the read,
 * its announce made the read see it; after it, its join is in the stream).
 * Each instance stops handling when its own announces have failed for 2
 * heartbeats (the others drop it after its 2.5-heartbeat window, and may go
 * solo) and joins again. docs/replicas.md has the whole reasoning.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/log.h"
#include "check.h"
#include "clock.h"
#include "cluster_internal.h"
#include "hash.h"

#define LOGC DAEBUS__CLUSTER_LOGC

void daebus__cluster_channel(const char *service, char *buf, size_t len)
{
    snprintf(buf, len, "daebus:%s:cluster", service);
}

unsigned long long daebus__cluster_epoch_of(const char *join_payload)
{
    unsigned long long e = daebus__hash_str(join_payload);
    return e ? e : 1;
}

void daebus__cluster_fence_key(const daebus__cluster *c, unsigned long long epoch, char *buf,
                               size_t len)
{
    snprintf(buf, len, "daebus:%s:epoch:%016llx", c->service, epoch);
}

static long long max_ll(long long a, long long b)
{
    return a > b ? a : b;
}

void daebus__cluster_gate_init(daebus__cluster *c)
{
    long long hb = (long long)(c->heartbeat * 1000 + 0.5);
    /* Claims live long enough for every instance to make its own (a late one
     * is refused: daebus__cluster_claim_many), the epoch's key for many
     * heartbeats. */
    c->claim_ttl_ms = max_ll(5000, 3 * hb);
    c->late_ms = c->claim_ttl_ms * 4 / 5;
    c->fence_ttl_ms = max_ll(30000, 10 * c->window_ms);
    c->solo_fresh_ms = hb * 3 / 2;
    c->announce_limit_ms = 2 * hb;
    /* The first join runs with the subscription (daebus__cluster_join_cmds);
     * without it, daebus__cluster_on_link asks the heartbeat for one. */
    atomic_init(&c->join_wanted, 0);
    atomic_init(&c->taking, 1);
    c->gate.need = 1;
    daebus__cluster_primary_init(c);
}

static void wake_all(daebus__cluster *c)
{
    pthread_mutex_lock(&c->lock);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

void daebus__cluster_request_join(daebus__cluster *c)
{
    unsigned long long w = atomic_load(&c->join_wanted);
    if (w > atomic_load(&c->join_sent))
        return; /* one is pending */
    if (atomic_compare_exchange_strong(&c->join_wanted, &w, w + 1))
        wake_all(c);
}

/* Stops handling until a join asked for now comes back (subscriber thread). */
static void rejoin(daebus__cluster *c)
{
    c->gate.handling = false;
    atomic_store(&c->handling, 0);
    atomic_store(&c->solo, 0);
    c->gate.need = atomic_fetch_add(&c->join_wanted, 1) + 1;
    wake_all(c);
}

/* ---- the subscriber's side ---- */

static bool alone(daebus__cluster *c, long long now);

/* Has an announce of this instance (or its join) reached Redis in the last 2
 * heartbeats? The others drop it 2.5 heartbeats after the last one, and may
 * go solo: past that, it neither takes nor claims anything. */
static bool announced(daebus__cluster *c, long long now)
{
    long long last = max_ll(atomic_load(&c->announce_ok_ms), atomic_load(&c->echo_ok_ms));
    return now - last <= c->announce_limit_ms;
}

/* The solo gauge between messages: refreshed by joins and markers too. */
static void refresh_solo(daebus__cluster *c)
{
    bool solo = c->gate.handling && atomic_load(&c->taking) && alone(c, daebus__cluster_now_ms());
    atomic_store(&c->solo, solo ? 1 : 0);
}

/* A join at this place of the stream: a new epoch for everyone. */
static void new_epoch(daebus__cluster *c, const char *payload)
{
    daebus__cluster_gate_state *g = &c->gate;
    g->joins++;
    g->serial++;
    atomic_store(&c->epoch, daebus__cluster_epoch_of(payload));
    atomic_store(&c->solo, 0);
}

/* This instance's own join, sent at sent_ms, is at this place: it handles
 * from here on. */
static void start_handling(daebus__cluster *c, long long sent_ms)
{
    daebus__cluster_gate_state *g = &c->gate;
    /* Its announce reached Redis before every message after it. */
    if (sent_ms > atomic_load(&c->echo_ok_ms))
        atomic_store(&c->echo_ok_ms, sent_ms);
    g->handling = true;
    g->anchor_ms = max_ll(g->anchor_ms, sent_ms);
    atomic_store(&c->handling, 1);
    bool again = g->ever;
    g->ever = true;
    if (again)
        DAEBUS_LOG_INFOF(LOGC, "instance %s joined its cluster again: handling messages", c->id);
    else
        DAEBUS_LOG_DEBUGF(LOGC, "instance %s joined its cluster", c->id);
    wake_all(c);
}

static bool on_join(daebus__cluster *c, const char *data, const char *id, unsigned long long gen,
                    long long sent_ms)
{
    daebus__cluster_gate_state *g = &c->gate;
    new_epoch(c, data);
    if (strcmp(id, c->id) != 0)
        return false;
    if (sent_ms > atomic_load(&c->echo_ok_ms))
        atomic_store(&c->echo_ok_ms, sent_ms);
    if (gen < g->need || g->handling)
        return false;
    start_handling(c, sent_ms);
    return true;
}

void daebus__cluster_on_link(daebus__cluster *c, bool up, const redisReply *const *after,
                             int nafter)
{
    if (!c || !c->exactly_once)
        return;
    daebus__cluster_gate_state *g = &c->gate;
    if (up && after && nafter == 3 && !daebus__cluster_rank_in(c, after[1])) {
        /* Its announce is not in the live set at its join (Redis restarted
         * and lost it): the others' view reads could miss it and go solo.
         * It handles once a join published after an announce comes back. */
        DAEBUS_LOG_WARNF(LOGC,
                         "instance %s joined before its announce reached this Redis (a "
                         "restart?): it handles messages once its next join comes back",
                         c->id);
        atomic_store(&c->join_read, 0);
        daebus__cluster_primary_joined(c, after[2]);
        g->handling = false;
        new_epoch(c, g->sub_join.payload);
        rejoin(c);
    } else if (up && after && nafter == 3) {
        /* The join ran with the subscription: it opens this stream. */
        g->need = g->sub_join.gen;
        g->handling = false;
        new_epoch(c, g->sub_join.payload);
        /* Not stale entries pruned: one of them means claims (the next
         * marker's read decides again). Stale members never mean solo. */
        bool alone = daebus__cluster_alone_in(c, after[1]);
        g->join_read = (daebus__cluster_join_read){alone, g->joins, daebus__cluster_now_ms()};
        unsigned long long order = daebus__cluster_rank_in(c, after[1]);
        if (order)
            atomic_store(&c->order, order);
        atomic_store(&c->join_read, 1);
        daebus__cluster_primary_joined(c, after[2]);
        start_handling(c, g->sub_join.sent_ms);
        refresh_solo(c);
    } else if (up) {
        atomic_store(&c->join_read, 0);
        daebus__cluster_primary_unknown(c);
        rejoin(c); /* the others may have gone solo meanwhile */
    } else {
        g->handling = false;
        atomic_store(&c->handling, 0);
        atomic_store(&c->solo, 0);
    }
}

/* Has an announce of this instance reached Redis within the last heartbeat?
 * Waits for one up to a heartbeat (at most 2 s): the heartbeat thread
 * announces every half heartbeat and wakes the waiters after each view read. */
static bool announce_fresh(daebus__cluster *c)
{
    long long hb = (long long)(c->heartbeat * 1000 + 0.5);
    daebus__deadline d = daebus__deadline_in(c->heartbeat < 2 ? c->heartbeat : 2);
    pthread_mutex_lock(&c->lock);
    bool fresh;
    while (!(fresh = daebus__cluster_now_ms() - atomic_load(&c->announce_ok_ms) <= hb) &&
           !c->stopping)
        if (daebus__cond_wait_until(&c->cond, &c->lock, d) != 0)
            break;
    pthread_mutex_unlock(&c->lock);
    return fresh || daebus__cluster_now_ms() - atomic_load(&c->announce_ok_ms) <= hb;
}

bool daebus__cluster_join_cmds(daebus__cluster *c, daebus__redis_atomic *a)
{
    if (!c || !c->exactly_once)
        return false;
    if (!announce_fresh(c)) {
        /* A plain subscription: daebus__cluster_on_link asks the heartbeat
         * for a join, and claimed messages wait for it (the old way). */
        DAEBUS_LOG_WARNF(LOGC,
                         "instance %s subscribes before its announce reached Redis: it "
                         "handles messages of claimed channels once its join comes back",
                         c->id);
        return false;
    }
    daebus__cluster_sub_join *j = &c->gate.sub_join;
    j->gen = atomic_load(&c->join_wanted);
    j->sent_ms = daebus__cluster_now_ms();
    snprintf(j->payload, sizeof j->payload, "join %s %llu %lld", c->id, j->gen, j->sent_ms);
    daebus__cluster_fence_key(c, daebus__cluster_epoch_of(j->payload), j->fence, sizeof j->fence);
    snprintf(j->ttl, sizeof j->ttl, "%lld", c->fence_ttl_ms);
    daebus__cluster_cmd_set(&j->set, 5, (const char *[]){"SET", j->fence, c->id, "PX", j->ttl});
    daebus__cluster_cmd_set(&j->publish, 3, (const char *[]){"PUBLISH", c->channel, j->payload});
    daebus__cluster_cmd_set(&j->read, 4, (const char *[]){"ZRANGE", c->set_key, "0", "-1"});
    daebus__cluster_primary_read_cmd(c, &j->primary);
    *a = (daebus__redis_atomic){.nbefore = 1, .nafter = 3, .last = c->channel};
    a->before[0] = j->set.cmd;
    a->after[0] = j->publish.cmd;
    a->after[1] = j->read.cmd;    /* the live set exactly at the join */
    a->after[2] = j->primary.cmd; /* the primary exactly at the join */
    /* A join asked for before is made by this one. */
    unsigned long long sent = atomic_load(&c->join_sent);
    while (sent < j->gen && !atomic_compare_exchange_weak(&c->join_sent, &sent, j->gen)) {
    }
    return true;
}

static void on_marker(daebus__cluster *c, unsigned long long n, long long sent_ms)
{
    daebus__cluster_gate_state *g = &c->gate;
    g->mark[1] = g->mark[0];
    g->mark[0] = (daebus__cluster_mark){n, g->joins, daebus__cluster_now_ms(), true};
    g->anchor_ms = max_ll(g->anchor_ms, sent_ms);
    atomic_store(&c->marker_seen, n);
    refresh_solo(c); /* the read before this marker's */
    if (n <= 2)
        wake_all(c); /* daebus__cluster_wait_ready */
}

daebus__cluster_ev daebus__cluster_on_message(daebus__cluster *c, const char *data, size_t len,
                                              daebus__cluster_progress *p)
{
    if (!c || !c->exactly_once || len >= 1024)
        return DAEBUS__CLUSTER_EV_NONE;
    if (strncmp(data, "pr", 2) == 0)
        return daebus__cluster_primary_message(c, data, p) ? DAEBUS__CLUSTER_EV_PROGRESS
                                                           : DAEBUS__CLUSTER_EV_NONE;
    char kind[8], id[DAEBUS__INSTANCE_ID_MAX];
    unsigned long long n = 0;
    long long ms = 0;
    if (len >= 200 || sscanf(data, "%7s %95s %llu %lld", kind, id, &n, &ms) != 4)
        return DAEBUS__CLUSTER_EV_NONE;
    if (strcmp(kind, "join") == 0)
        return on_join(c, data, id, n, ms) ? DAEBUS__CLUSTER_EV_JOINED : DAEBUS__CLUSTER_EV_NONE;
    if (strcmp(kind, "view") == 0 && strcmp(id, c->id) == 0)
        on_marker(c, n, ms);
    return DAEBUS__CLUSTER_EV_NONE;
}

/* Is this instance alone? The latest own marker since the last join whose
 * read is known decides; without one, the read made with the own join (if
 * that join was the last); a marker too old (the heartbeat stalls) or a
 * join of another instance means claims. */
static bool alone(daebus__cluster *c, long long now)
{
    const daebus__cluster_gate_state *g = &c->gate;
    for (int k = 0; k < 2; k++) {
        const daebus__cluster_mark *m = &g->mark[k];
        if (!m->set || m->joins != g->joins)
            break; /* from before the last join */
        unsigned long long r = atomic_load(&c->results[m->n % DAEBUS__CLUSTER_RING]);
        if (r >> 1 != m->n)
            continue; /* read n not finished yet: the one before decides */
        return (r & 1) && now - m->at_ms <= c->solo_fresh_ms;
    }
    const daebus__cluster_join_read *j = &g->join_read;
    return j->alone && j->joins == g->joins && now - j->at_ms <= c->solo_fresh_ms;
}

daebus__gate daebus__cluster_gate(daebus__cluster *c, daebus__cluster_ticket *t)
{
    if (!c || !c->exactly_once)
        return DAEBUS__GATE_IGNORE;
    daebus__cluster_gate_state *g = &c->gate;
    if (!g->handling || !atomic_load(&c->taking)) {
        atomic_fetch_add(&c->ignored, 1);
        return DAEBUS__GATE_IGNORE;
    }
    long long now = daebus__cluster_now_ms();
    if (!announced(c, now)) {
        DAEBUS_LOG_WARNF(LOGC,
                         "instance %s: no announce has reached Redis for %lld ms: it stops "
                         "handling messages (the others may drop it) and joins again",
                         c->id, c->announce_limit_ms);
        rejoin(c);
        atomic_fetch_add(&c->ignored, 1);
        return DAEBUS__GATE_IGNORE;
    }
    t->epoch = atomic_load(&c->epoch);
    t->serial = g->serial;
    t->anchor_ms = g->anchor_ms;
    unsigned long long order = atomic_load(&c->order);
    t->size = (unsigned)(order >> 32);
    t->rank = (unsigned)(order & 0xffffffffu);
    t->primary = g->prim.hash;
    t->is_primary = atomic_load(&c->is_primary) != 0;
    bool solo = alone(c, now);
    atomic_store(&c->solo, solo ? 1 : 0);
    return solo ? DAEBUS__GATE_SOLO : DAEBUS__GATE_CLAIM;
}

/* ---- claims (any thread) ---- */

static void claim_failed(daebus__cluster *c, const char *why)
{
    atomic_fetch_add(&c->failed, 1);
    long missed = daebus__ratelimit_pass(&c->fail_log, daebus__now_mono(), 1.0);
    if (missed > 0)
        DAEBUS_LOG_WARNF(LOGC,
                         "claim failed (%s): the message is not handled here (at most once); "
                         "%ld more since the last such line",
                         why, missed);
    else if (missed == 0)
        DAEBUS_LOG_WARNF(LOGC, "claim failed (%s): the message is not handled here (at most once)",
                         why);
}

/* One claim's commands: SET NX, after an EXISTS of the epoch's key when the
 * claim before it in the pipeline had another epoch (or none). */
typedef struct claim_cmds {
    char key[700], fence[600];
    const char *argv[8];
    size_t len[8];
} claim_cmds;

/* Appends q's commands to cmds (at *nc; fence: whether an EXISTS goes first)
 * and returns the index of the SET. */
static int build_claim(daebus__cluster *c, const daebus__cluster_claim_req *q, const char *ttl,
                       bool fence, claim_cmds *m, daebus__redis_cmd *cmds, int *nc)
{
    const char *scope = q->scope && q->scope[0] ? q->scope : NULL;
    snprintf(m->key, sizeof m->key, "daebus:%s:claim:%s%s%016llx:%llu", c->service,
             scope ? scope : "", scope ? ":" : "", (unsigned long long)q->t->epoch, q->pos);
    daebus__cluster_fence_key(c, q->t->epoch, m->fence, sizeof m->fence);
    const char *a[8] = {"EXISTS", m->fence, "SET", m->key, c->id, "NX", "PX", ttl};
    for (int i = 0; i < 8; i++) {
        m->argv[i] = a[i];
        m->len[i] = strlen(a[i]);
    }
    if (fence)
        cmds[(*nc)++] = (daebus__redis_cmd){2, m->argv, m->len};
    cmds[*nc] = (daebus__redis_cmd){6, m->argv + 2, m->len + 2};
    return (*nc)++;
}

/* The result of one claim from its epoch's EXISTS and its SET. */
static int claim_result(daebus__cluster *c, const redisReply *exists, const redisReply *set)
{
    if (exists->type != REDIS_REPLY_INTEGER || exists->integer != 1) {
        /* Redis lost the epoch (a restart, an eviction): a new join opens another. */
        claim_failed(c, "the epoch's key is gone from Redis");
        daebus__cluster_request_join(c);
        return DAEBUS_ECONN;
    }
    if (set->type == REDIS_REPLY_ERROR) {
        claim_failed(c, set->str);
        return DAEBUS_ECONN;
    }
    bool won = set->type == REDIS_REPLY_STATUS;
    atomic_fetch_add(won ? &c->won : &c->lost, 1);
    return won ? 1 : 0;
}

#define CLAIM_CHUNK 128

/* Sends the claims q[0..n-1] (n <= CLAIM_CHUNK, each with rc still 1) as
 * one pipeline and sets their rc. The epoch's EXISTS is sent once before the
 * claims of that epoch, not once per claim: the SETs after it run on the
 * same connection, so on the same Redis (a restart in between breaks the
 * connection, and every claim of the pipeline fails). */
static void send_claims(daebus__cluster *c, daebus__cluster_claim_req **q, size_t n)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%lld", c->claim_ttl_ms);
    claim_cmds *m = malloc(n * sizeof *m);
    daebus__redis_cmd cmds[2 * CLAIM_CHUNK];
    redisReply *r[2 * CLAIM_CHUNK] = {NULL};
    int fence_at[CLAIM_CHUNK], set_at[CLAIM_CHUNK], nc = 0;
    int rc = m ? 0 : DAEBUS_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        bool fence = i == 0 || q[i]->t->epoch != q[i - 1]->t->epoch;
        set_at[i] = build_claim(c, q[i], ttl, fence, &m[i], cmds, &nc);
        fence_at[i] = fence ? set_at[i] - 1 : fence_at[i - 1];
    }
    if (rc == 0)
        rc = daebus__redis_pub_pipeline(c->pub, cmds, nc, r);
    for (size_t i = 0; i < n; i++) {
        if (rc != 0)
            claim_failed(c, daebus_strerror(rc));
        q[i]->rc = rc != 0 ? DAEBUS_ECONN : claim_result(c, r[fence_at[i]], r[set_at[i]]);
    }
    for (int i = 0; rc == 0 && i < nc; i++)
        freeReplyObject(r[i]);
    free(m);
}

/* May a claim be made now? Returns: 0, or the rc of a claim refused (said). */
static int may_claim(daebus__cluster *c, const daebus__cluster_ticket *t, long long now, bool quiet)
{
    if (!atomic_load(&c->taking))
        return DAEBUS_ESTATE;
    if (!announced(c, now)) {
        /* Queued before the gate saw it: the others may be solo by now. */
        if (!quiet)
            claim_failed(c, "this instance's announces have not reached Redis for 2 heartbeats");
        return DAEBUS_ESTATE;
    }
    if (now - t->anchor_ms > c->late_ms) {
        /* The claims of the others may have expired: claiming now could win twice. */
        if (!quiet)
            claim_failed(c, "too late: the message waited longer than the claims live");
        return DAEBUS_ETIMEDOUT;
    }
    return 0;
}

static void end_inflight(daebus__cluster *c)
{
    if (atomic_fetch_sub(&c->inflight, 1) == 1 && !atomic_load(&c->taking))
        wake_all(c);
}

void daebus__cluster_claim_many(daebus__cluster *c, daebus__cluster_claim_req *q, size_t n)
{
    atomic_fetch_add(&c->inflight, 1);
    long long now = daebus__cluster_now_ms();
    daebus__cluster_claim_req *batch[CLAIM_CHUNK];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        q[i].rc = may_claim(c, q[i].t, now, false);
        if (q[i].rc == 0) {
            q[i].rc = 1;
            batch[k++] = &q[i];
        }
        if (k == CLAIM_CHUNK || (i + 1 == n && k)) {
            send_claims(c, batch, k);
            k = 0;
        }
    }
    end_inflight(c);
}

unsigned long long daebus__cluster_claim_start(daebus__cluster *c, const daebus__cluster_ticket *t,
                                               const char *scope, unsigned long long pos)
{
    if (!c || !c->line)
        return 0;
    atomic_fetch_add(&c->inflight, 1);
    unsigned long long ticket = 0;
    if (may_claim(c, t, daebus__cluster_now_ms(), true) == 0) {
        char ttl[24];
        snprintf(ttl, sizeof ttl, "%lld", c->claim_ttl_ms);
        claim_cmds m;
        daebus__redis_cmd cmds[2];
        int nc = 0;
        daebus__cluster_claim_req q = {t, scope, pos, 0};
        build_claim(c, &q, ttl, true, &m, cmds, &nc);
        ticket = daebus__redis_line_send(c->line, cmds, nc);
    }
    end_inflight(c);
    return ticket;
}

int daebus__cluster_claim_finish(daebus__cluster *c, unsigned long long ticket)
{
    redisReply *r[2] = {NULL, NULL};
    if (daebus__redis_line_wait(c->line, ticket, r, 2) != 0) {
        claim_failed(c, "the connection of the claim was lost before its answer");
        return DAEBUS_ECONN;
    }
    int rc = claim_result(c, r[0], r[1]);
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    return rc;
}

void daebus__cluster_claim_repair(daebus__cluster *c)
{
    if (c)
        daebus__redis_line_repair(c->line);
}

int daebus__cluster_claim(daebus__cluster *c, const daebus__cluster_ticket *t, const char *scope,
                          unsigned long long pos)
{
    daebus__cluster_claim_req q = {t, scope, pos, 0};
    daebus__cluster_claim_many(c, &q, 1);
    return q.rc;
}

/* ---- the owner's side ---- */

void daebus__cluster_leave(daebus__cluster *c, double timeout)
{
    if (!c)
        return;
    /* The stream names no primary before this one stops taking: what comes
     * after is claimed by the others at once, not after a window. */
    daebus__cluster_primary_leave(c, timeout / 2);
    atomic_store(&c->taking, 0);
    atomic_store(&c->solo, 0);
    daebus__deadline d = daebus__deadline_in(timeout);
    pthread_mutex_lock(&c->lock);
    while (atomic_load(&c->inflight) > 0)
        if (daebus__cond_wait_until(&c->cond, &c->lock, d) != 0)
            break;
    pthread_mutex_unlock(&c->lock);
    /* The claims sent apart are answered before this instance leaves the
     * lists (their results wait for the workers that finish them). */
    daebus__redis_line_wait(c->line, daebus__redis_line_last(c->line), NULL, 0);
}

static bool ready(daebus__cluster *c)
{
    if (!atomic_load(&c->handling))
        return false;
    if (atomic_load(&c->join_read))
        return true; /* it knows whether it is alone from the join on */
    unsigned long long n = atomic_load(&c->marker_seen);
    return n && atomic_load(&c->results[n % DAEBUS__CLUSTER_RING]) >> 1 == n;
}

bool daebus__cluster_handles(daebus__cluster *c)
{
    return c && atomic_load(&c->handling);
}

bool daebus__cluster_wait_ready(daebus__cluster *c, double timeout)
{
    if (!c || !c->exactly_once)
        return false;
    daebus__deadline d = daebus__deadline_in(timeout);
    pthread_mutex_lock(&c->lock);
    while (!ready(c) && !c->stopping)
        if (daebus__cond_wait_until(&c->cond, &c->lock, d) != 0)
            break;
    bool ok = ready(c);
    pthread_mutex_unlock(&c->lock);
    return ok;
}

void daebus__cluster_claim_stats_get(daebus__cluster *c, daebus__cluster_claim_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    out->won = atomic_load(&c->won);
    out->lost = atomic_load(&c->lost);
    out->failed = atomic_load(&c->failed);
    out->ignored = atomic_load(&c->ignored);
    out->solo = atomic_load(&c->solo);
    out->primary = atomic_load(&c->is_primary);
    out->primary_taken = atomic_load(&c->primary_taken);
    out->takeovers = atomic_load(&c->takeovers);
}
