/* cluster_primary.c - the primary of a service channel (see cluster.h).
 *
 * Claiming every request costs each one a Redis round trip and a SET per
 * replica. A primary takes the service channel's messages without claims:
 *
 *   primary <id|-> <gen> <ms>   on the cluster channel, published with a SET
 *                               (or DEL) of daebus:<service>:primary in one
 *                               script: from this place of the stream on, id
 *                               is the primary ("-": none). A joiner reads
 *                               the key inside its join's MULTI/EXEC, so it
 *                               knows the primary from its first message.
 *   progress <id> <epoch> <upto> <ms> [<pos>,...]
 *                               the primary's marker, published on the claim
 *                               line after each read batch and before its
 *                               messages run: in epoch, the messages it was
 *                               primary for at positions < upto are its own,
 *                               except the listed ones (skipped: claimed by
 *                               whoever wins).
 *
 * The primary runs a message only once its marker was acknowledged less
 * than 3W/4 after its anchor (the send time of its own last marker or join
 * before the message in the stream, so before the message was published);
 * later, it claims it. A backup keeps each message unread and drops it when
 * a marker covers it; one uncovered W after the backup read it (checked
 * with the connection drained, so a marker already sent has been read) is
 * taken over: the backup makes itself primary and claims it. The marker of
 * a message the primary runs reached Redis within 3W/4 of the message, so
 * before any backup's deadline (W/4 of margin for delivery): no message
 * runs on both. docs/replicas.md ("The primary") has the cases.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/log.h"
#include "clock.h"
#include "cluster_internal.h"
#include "hash.h"

#define LOGC DAEBUS__CLUSTER_LOGC

/* KEYS[1] the primary key, KEYS[2] the cluster channel; ARGV[1] the new
 * primary ("-": none), ARGV[2] the event, ARGV[3] "cas" with ARGV[4] the
 * value expected (or "force"). */
static const char SCRIPT[] = "local cur = redis.call('GET', KEYS[1]) or '' "
                             "if ARGV[3] == 'cas' and cur ~= ARGV[4] then return 0 end "
                             "if ARGV[1] == '-' then redis.call('DEL', KEYS[1]) "
                             "else redis.call('SET', KEYS[1], ARGV[1]) end "
                             "redis.call('PUBLISH', KEYS[2], ARGV[2]) "
                             "return 1";

static uint64_t id_hash(const char *id)
{
    uint64_t h = daebus__hash_str(id);
    return h && h != DAEBUS__CLUSTER_PRIMARY_UNKNOWN ? h : 1;
}

void daebus__cluster_primary_init(daebus__cluster *c)
{
    long long hb = (long long)(c->heartbeat * 1000 + 0.5);
    c->window_ms_take = hb * 3 / 2 > 1000 ? hb * 3 / 2 : 1000;
    snprintf(c->primary_key, sizeof c->primary_key, "daebus:%s:primary", c->service);
}

long long daebus__cluster_window_ms(const daebus__cluster *c)
{
    return c ? c->window_ms_take : 1000;
}

/* The primary at this place of the stream (subscriber thread). */
static void set_primary(daebus__cluster *c, const char *id)
{
    daebus__cluster_primary_state *p = &c->gate.prim;
    bool none = !id || !id[0] || strcmp(id, "-") == 0;
    bool was_unknown = p->unknown;
    p->unknown = false;
    if (!was_unknown && (none ? !p->id[0] : strcmp(p->id, id) == 0))
        return;
    snprintf(p->id, sizeof p->id, "%s", none ? "" : id);
    p->hash = none ? 0 : id_hash(p->id);
    bool self = !none && strcmp(p->id, c->id) == 0;
    atomic_store(&c->is_primary, self ? 1 : 0);
    if (self)
        DAEBUS_LOG_INFOF(LOGC, "instance %s is the primary of '%s'", c->id, c->service);
    else
        DAEBUS_LOG_DEBUGF(LOGC, "primary of '%s': %s", c->service, none ? "none" : p->id);
}

void daebus__cluster_primary_read_cmd(daebus__cluster *c, daebus__cluster_cmd *cmd)
{
    daebus__cluster_cmd_set(cmd, 2, (const char *[]){"GET", c->primary_key});
}

void daebus__cluster_primary_joined(daebus__cluster *c, const redisReply *key)
{
    /* The key as it was at the join, even if it names an instance that has
     * died: every instance must agree on the primary at each message (one
     * that died is replaced by a take-over after the window). */
    set_primary(c, key && key->type == REDIS_REPLY_STRING ? key->str : NULL);
    c->gate.prim.offered_ms = 0;
}

void daebus__cluster_primary_unknown(daebus__cluster *c)
{
    daebus__cluster_primary_state *p = &c->gate.prim;
    p->unknown = true;
    p->id[0] = '\0';
    p->hash = DAEBUS__CLUSTER_PRIMARY_UNKNOWN;
    atomic_store(&c->is_primary, 0);
}

/* Publishes "primary <who> ..." with the key's update; mode "cas" (only if
 * the key holds expect) or "force". async: sent on the claim line without
 * waiting (the subscriber thread never waits for Redis: the event itself
 * tells the result). Returns: 1 published (or sent), 0 refused, < 0. */
static int publish_event(daebus__cluster *c, const char *who, const char *mode, const char *expect,
                         bool async)
{
    char event[200];
    snprintf(event, sizeof event, "primary %s %llu %lld", who,
             atomic_fetch_add(&c->primary_gen, 1) + 1, daebus__cluster_now_ms());
    daebus__cluster_cmd b;
    daebus__cluster_cmd_set(&b, 9,
                            (const char *[]){"EVAL", SCRIPT, "2", c->primary_key, c->channel, who,
                                             event, mode, expect});
    if (async && daebus__redis_line_send(c->line, &b.cmd, 1))
        return 1; /* else (no line yet: a lone replica claims nothing) waited for */
    redisReply *r = NULL;
    int rc = daebus__cluster_run(c, &b, 1, &r);
    if (rc != 0)
        return rc;
    int ok = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return ok;
}

void daebus__cluster_primary_tick(daebus__cluster *c)
{
    if (!c || !c->exactly_once)
        return;
    daebus__cluster_primary_state *p = &c->gate.prim;
    long long now = daebus__cluster_now_ms();
    unsigned long long order = atomic_load(&c->order);
    if (p->id[0] || p->unknown || !c->gate.handling || !atomic_load(&c->taking) ||
        atomic_load(&c->stepping_down) || order == 0 || (order & 0xffffffffu) != 0 ||
        now - p->offered_ms < (long long)(c->heartbeat * 1000))
        return;
    p->offered_ms = now;
    /* Only over no primary: the key as this instance knows it (empty, or
     * naming an instance gone at its join). Two offers: the first wins. */
    publish_event(c, c->id, "cas", "", true);
}

void daebus__cluster_take_over(daebus__cluster *c)
{
    daebus__cluster_primary_state *p = &c->gate.prim;
    long long now = daebus__cluster_now_ms();
    if (atomic_load(&c->is_primary) || !atomic_load(&c->taking) || atomic_load(&c->stepping_down) ||
        now - p->offered_ms < c->window_ms_take)
        return;
    p->offered_ms = now;
    DAEBUS_LOG_WARNF(LOGC,
                     "instance %s: messages of '%s' left uncovered by primary %s for %lld ms: "
                     "it takes over as primary and claims them",
                     c->id, c->service, p->id[0] ? p->id : "(none)", c->window_ms_take);
    if (publish_event(c, c->id, "force", "", true) == 1)
        atomic_fetch_add(&c->takeovers, 1);
}

void daebus__cluster_primary_leave(daebus__cluster *c, double timeout)
{
    if (!c || !c->exactly_once)
        return;
    atomic_store(&c->stepping_down, 1); /* it offers itself no more */
    if (!atomic_load(&c->is_primary) || publish_event(c, "-", "cas", c->id, false) != 1)
        return; /* another took over meanwhile */
    DAEBUS_LOG_INFOF(LOGC, "instance %s steps down as the primary of '%s'", c->id, c->service);
    long long until = daebus__cluster_now_ms() + (long long)(timeout * 1000);
    while (atomic_load(&c->is_primary) && daebus__cluster_now_ms() < until) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ---- markers ---- */

/* The marker's text into buf. */
static void marker_text(daebus__cluster *c, uint64_t epoch, unsigned long long upto,
                        const unsigned long long *skip, int nskip, char *buf, size_t len)
{
    int o = snprintf(buf, len, "progress %s %016llx %llu %lld", c->id, (unsigned long long)epoch,
                     upto, daebus__cluster_now_ms());
    for (int i = 0; i < nskip && o > 0 && (size_t)o + 24 < len; i++)
        o += snprintf(buf + o, len - (size_t)o, "%c%llu", i ? ',' : ' ', skip[i]);
}

unsigned long long daebus__cluster_progress_send(daebus__cluster *c, uint64_t epoch,
                                                 unsigned long long upto,
                                                 const unsigned long long *skip, int nskip)
{
    if (!c || !c->line)
        return 0;
    char text[1024];
    marker_text(c, epoch, upto, skip, nskip, text, sizeof text);
    const char *argv[3] = {"PUBLISH", c->channel, text};
    size_t len[3] = {7, strlen(c->channel), strlen(text)};
    daebus__redis_cmd cmd = {3, argv, len};
    unsigned long long t = daebus__redis_line_send(c->line, &cmd, 1);
    if (t)
        c->gate.prim.idle_ms = daebus__cluster_now_ms();
    return t;
}

void daebus__cluster_progress_idle(daebus__cluster *c)
{
    daebus__cluster_primary_state *p = &c->gate.prim;
    if (!c || !atomic_load(&c->is_primary) || !c->gate.handling || atomic_load(&c->solo))
        return;
    long long now = daebus__cluster_now_ms();
    /* One at a time: its answer is read by the next wait on the line (a
     * worker's); after a long idle time the first request is claimed. */
    if (now - p->idle_ms < c->window_ms_take / 4 ||
        !daebus__redis_line_answered(c->line, p->idle_ticket))
        return;
    unsigned long long t = daebus__cluster_progress_send(c, atomic_load(&c->epoch), 0, NULL, 0);
    if (t)
        p->idle_ticket = t;
}

int daebus__cluster_progress_take(daebus__cluster *c, const daebus__cluster_ticket *t,
                                  unsigned long long ticket, unsigned long long pos)
{
    if (!c)
        return DAEBUS_ESTATE;
    int wrc = ticket ? daebus__redis_line_wait_shared(c->line, ticket) : DAEBUS_ECONN;
    /* What counts is when the marker's answer came (read by a pump or by the
     * first waiter), not when this worker got to the message: one that waited
     * in the queue behind slow handlers is still this replica's, and a
     * stopping replica (which claims nothing) finishes it. */
    long long now = daebus__cluster_now_ms(), acked = now;
    double at = 0;
    if (wrc == 0 && daebus__redis_line_answered_at(c->line, ticket, &at) &&
        (long long)(at * 1000.0) < now)
        acked = (long long)(at * 1000.0);
    long long late = acked - t->anchor_ms;
    if (wrc == 0 && late <= c->window_ms_take * 3 / 4) {
        atomic_fetch_add(&c->primary_taken, 1);
        return 1;
    }
    /* The marker is late or lost: a backup may have taken the message over. */
    int rc = daebus__cluster_claim(c, t, NULL, pos);
    daebus__cluster_claim_repair(c);
    long missed = daebus__ratelimit_pass(&c->fail_log, daebus__now_mono(), 1.0);
    if (missed >= 0)
        DAEBUS_LOG_WARNF(LOGC,
                         "instance %s: a request taken as the primary was claimed instead (%s, "
                         "%lld ms after its anchor): %s",
                         c->id,
                         !ticket ? "no marker sent"
                         : wrc   ? "marker not answered"
                                 : "late",
                         late,
                         rc == 1   ? "won"
                         : rc == 0 ? "lost"
                                   : daebus_strerror(rc));
    return rc;
}

bool daebus__cluster_progress_pump(daebus__cluster *c)
{
    return c && atomic_load(&c->is_primary) && daebus__redis_line_pump(c->line);
}

void daebus__cluster_progress_wait(daebus__cluster *c, unsigned long long ticket)
{
    if (c && ticket)
        daebus__redis_line_wait_shared(c->line, ticket);
}

/* One number after a space; *s moves past it. */
static bool field(const char **s, int base, unsigned long long *v)
{
    char *end = NULL;
    if (**s != ' ' || (*s)[1] == ' ' || (*s)[1] == '-')
        return false;
    errno = 0;
    *v = strtoull(*s + 1, &end, base);
    if (end == *s + 1 || errno)
        return false;
    *s = end;
    return true;
}

/* "progress <id> <epoch> <upto> <ms> [skips]" into p and *ms (by hand: the
 * primary reads one per batch, its own included). */
static bool parse_progress(const char *data, char *id, daebus__cluster_progress *p, long long *ms)
{
    if (strncmp(data, "progress ", 9) != 0)
        return false;
    const char *s = data + 9;
    size_t n = strcspn(s, " ");
    unsigned long long epoch = 0, msu = 0;
    if (n == 0 || n >= DAEBUS__INSTANCE_ID_MAX)
        return false;
    memcpy(id, s, n);
    id[n] = '\0';
    s += n;
    if (!field(&s, 16, &epoch) || !field(&s, 10, &p->upto) || !field(&s, 10, &msu))
        return false;
    *ms = (long long)msu;
    p->epoch = epoch;
    p->nskip = 0;
    while (*s == ' ' || *s == ',') {
        char *end = NULL;
        unsigned long long v = strtoull(s + 1, &end, 10);
        if (end == s + 1 || p->nskip == DAEBUS__CLUSTER_SKIPS)
            break;
        p->skip[p->nskip++] = v;
        s = end;
    }
    return true;
}

bool daebus__cluster_primary_message(daebus__cluster *c, const char *data,
                                     daebus__cluster_progress *p)
{
    daebus__cluster_gate_state *g = &c->gate;
    char id[DAEBUS__INSTANCE_ID_MAX];
    unsigned long long gen = 0;
    long long ms = 0;
    if (strncmp(data, "primary ", 8) == 0) {
        if (sscanf(data, "primary %95s %llu %lld", id, &gen, &ms) != 3)
            return false;
        set_primary(c, id);
        if (strcmp(id, c->id) == 0 && ms > g->anchor_ms)
            g->anchor_ms = ms; /* sent before every message after it */
        return false;
    }
    if (!parse_progress(data, id, p, &ms))
        return false;
    p->primary = id_hash(id);
    p->own = strcmp(id, c->id) == 0;
    if (p->own && ms > g->anchor_ms)
        g->anchor_ms = ms;
    return true;
}
