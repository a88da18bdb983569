/* bus_dispatch.c - the subscriber side of the bus: messages become requests.
 *
 * Runs on the transport's subscriber thread. Each message is parsed
 * (bus_parse.c) and becomes a request object, run by the reader thread that
 * read it when a worker and another reader thread are free (run_here:
 * leader/followers), else submitted to the worker pool; a full
 * queue is answered "Service overloaded" at once, an unknown action "Unknown
 * action", a message over max_message_size (cut by the transport's size
 * guard, never parsed) "Message too large" when its reply channel and
 * request id can be read from the bytes kept. A message that is not
 * well-formed UTF-8 is refused before parsing, like malformed JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/log.h"
#include "bus_internal.h"
#include "clock.h"
#include "utf8.h"

#define LOGC DAEBUS__BUS_LOGC

static void excerpt(const char *data, size_t len, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < cap; i++) {
        unsigned char ch = (unsigned char)data[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
            buf[o++] = (char)ch;
        } else {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        }
    }
    if (o >= cap)
        o = cap - 1;
    buf[o] = '\0';
}

/* The end of a rate-limited log line: how many like it were not logged. */
static const char *more_text(long missed, char *buf, size_t len)
{
    if (missed <= 0)
        return "";
    snprintf(buf, len, "; %ld more since the last such line", missed);
    return buf;
}

/* Counts a message that does not parse and logs it with an excerpt, at most
 * once a second (what: how the line starts). */
static void note_malformed(daebus_bus *bus, const char *what, const char *channel, const char *why,
                           const char *data, size_t len)
{
    atomic_fetch_add(&bus->malformed, 1);
    char ex[100], mbuf[64];
    excerpt(data, len < 60 ? len : 60, ex, sizeof ex);
    long missed = daebus__ratelimit_pass(&bus->bad_log, daebus__now_mono(), 1.0);
    if (missed >= 0)
        DAEBUS_LOG_WARNF(LOGC, "%s '%s' (%s, %zu bytes): %s%s%s", what, channel, why, len, ex,
                         len > 60 ? "..." : "", more_text(missed, mbuf, sizeof mbuf));
}

const daebus__handler *daebus__bus_find_handler(const daebus__handler *h, size_t n, const char *key)
{
    /* Later registrations win: search from the end. */
    for (size_t i = n; i-- > 0;)
        if (h[i].key && strcmp(h[i].key, key) == 0)
            return &h[i];
    return NULL;
}

/* A request run by the reader thread that read it (run_here). */
static void run_inline(void *arg)
{
    daebus_bus_request *r = arg;
    daebus__pool *pool = r->bus->pool;
    if (r->is_action)
        daebus__bus_run_action(r);
    else
        daebus__bus_run_listen(r);
    daebus__pool_unclaim(pool);
}

/* Leader/followers: when a worker is idle, the subscriber's reader thread
 * that read the request runs it itself, in that worker's slot, after
 * handing the reading to another reader thread (redis_sub.h): the request
 * skips the queue and the wake-up of a worker. Returns: false when no
 * worker or no reader thread is free (the request goes to the pool). */
static bool run_here(daebus_bus *bus, daebus_bus_request *r)
{
    if (daebus__pool_claim(bus->pool) != 0)
        return false;
    if (daebus__redis_sub_run_here(bus->sub, run_inline, r))
        return true;
    daebus__pool_unclaim(bus->pool);
    return false;
}

static void submit(daebus_bus *bus, daebus_bus_request *r, daebus__job_fn *fn)
{
    if (r->claim.mode == DAEBUS__GATE_CLAIM || r->claim.mode == DAEBUS__GATE_PRIMARY) {
        daebus__bus_submit_claimed(bus, &r->claim, fn, daebus__bus_drop_request, r, true, false);
        return;
    }
    if (run_here(bus, r))
        return;
    int rc = daebus__pool_submit(bus->pool, fn, daebus__bus_drop_request, r);
    if (rc == 0)
        return;
    if (rc == DAEBUS_EFULL)
        daebus__bus_overloaded(bus, r);
    else
        daebus__bus_auto_error(r, "Service shutting down; action '%s' was not run");
    daebus_bus_request_release(r);
}

/* The reply channel of env (see daebus__bus_reply_channel); a name too long
 * for buf is logged, the message is then handled without a reply. */
static const char *reply_channel(daebus_bus *bus, const daebus__bus_envelope *env,
                                 const char *channel, char *buf, size_t len)
{
    const char *reply = daebus__bus_reply_channel(env, bus->service, buf, len);
    if (!reply && (env->reply_to || env->request_id))
        DAEBUS_LOG_WARNF(LOGC,
                         "message on '%s': reply channel name longer than %zu bytes; handled "
                         "without a reply",
                         channel, len - 1);
    return reply;
}

/* Parses a request or a listener message: invalid UTF-8 is refused before
 * the JSON parser sees it, like malformed JSON (why gets the reason). */
static int parse_message(const char *data, size_t len, daebus__bus_envelope *env, char *why,
                         size_t whylen)
{
    if (daebus__bus_check_utf8(data, len, why, whylen) != 0) {
        memset(env, 0, sizeof *env);
        return -1;
    }
    return daebus__bus_parse_request(data, len, env, why, whylen);
}

/* A request that did not parse: the caller would wait for its time-out, so
 * it gets an error reply if reply_to and request_id can be read (and are
 * well-formed UTF-8 themselves: the reply echoes the id). */
static void reply_unparsed(daebus_bus *bus, daebus__bus_claim *cl, const char *data, size_t len,
                           const char *why)
{
    char reply[512], rid[256];
    if (daebus__bus_scan_reply(data, len, reply, sizeof reply, rid, sizeof rid) != 0 ||
        !daebus__utf8_valid(reply, strlen(reply)) || !daebus__utf8_valid(rid, strlen(rid)))
        return;
    cJSON *id = cJSON_CreateString(rid);
    char text[160];
    bool prefixed = strncmp(why, "invalid JSON", 12) == 0 || strncmp(why, "invalid UTF-8", 13) == 0;
    snprintf(text, sizeof text, "%s%s", prefixed ? "" : "invalid JSON: ", why);
    if (id)
        daebus__bus_error_once(bus, cl, reply, id, text, false);
    cJSON_Delete(id);
}

static void on_service_message(daebus_bus *bus, daebus__bus_claim *cl, const char *channel,
                               const char *data, size_t len)
{
    daebus__bus_envelope env;
    char why[96];
    char rc_buf[512];
    if (parse_message(data, len, &env, why, sizeof why) != 0) {
        note_malformed(bus, "malformed message on", channel, why, data, len);
        reply_unparsed(bus, cl, data, len, why);
        return;
    }
    const char *reply = reply_channel(bus, &env, channel, rc_buf, sizeof rc_buf);
    if (!env.action) {
        DAEBUS_LOG_DEBUGF(LOGC, "message without action on '%s' ignored", channel);
        daebus__bus_envelope_free(&env);
        return;
    }
    if (!cl->counted)
        atomic_fetch_add(&bus->requests_received, 1);
    const daebus__handler *h = daebus__bus_find_handler(bus->actions, bus->nactions, env.action);
    if (!h) {
        if (!cl->counted)
            atomic_fetch_add(&bus->unknown_actions, 1);
        if (env.reply_to && env.request_id) {
            char text[200];
            snprintf(text, sizeof text, "Unknown action '%.*s'", daebus__utf8_prec(env.action, 150),
                     env.action);
            daebus__bus_error_once(bus, cl, env.reply_to, env.request_id, text, true);
        }
        DAEBUS_LOG_DEBUGF(LOGC, "no handler for action '%.*s'", daebus__utf8_prec(env.action, 100),
                          env.action);
        daebus__bus_envelope_free(&env);
        return;
    }
    daebus_bus_request *r = daebus__bus_request_new(bus, &env, channel, reply);
    if (!r) {
        DAEBUS_LOG_ERRORF(LOGC, "out of memory: dropping a request");
        daebus__bus_envelope_free(&env);
        return;
    }
    r->is_action = 1;
    r->claim = *cl;
    cl->ticket = 0; /* the request finishes it */
    r->afn = h->desc->fn.action;
    r->user = h->desc->opts.user;
    submit(bus, r, daebus__bus_run_action);
}

static void on_listen_message(daebus_bus *bus, const daebus__handler *h, daebus__bus_claim *cl,
                              const char *channel, const char *data, size_t len)
{
    daebus__bus_envelope env;
    char why[96];
    char rc_buf[512];
    if (parse_message(data, len, &env, why, sizeof why) != 0) {
        note_malformed(bus, "ignoring message on", channel, why, data, len);
        return;
    }
    const char *reply = reply_channel(bus, &env, channel, rc_buf, sizeof rc_buf);
    daebus_bus_request *r = daebus__bus_request_new(bus, &env, channel, reply);
    if (!r) {
        daebus__bus_envelope_free(&env);
        return;
    }
    r->claim = *cl;
    cl->ticket = 0; /* the request finishes it */
    r->lfn = h->desc->fn.listen;
    r->user = h->desc->opts.user;
    if (!cl->counted)
        atomic_fetch_add(&bus->listener_messages, 1);
    submit(bus, r, daebus__bus_run_listen);
}

/* A message of a claimed channel this replica is not preferred for: kept
 * unread and claimed later, counted as if read (requests_received counts
 * every replica's copy). A request whose action cannot be read without
 * parsing takes the full path. Returns: false when not kept. */
static bool keep_unread(daebus_bus *bus, const daebus__bus_claim *cl, const daebus__handler *h,
                        const daebus__redis_msg *m)
{
    if (cl->mode == DAEBUS__GATE_CLAIM && !h && cl->t.primary && !cl->t.is_primary) {
        /* A backup: the primary has it unless its markers leave it out. A
         * message over the limit is the primary's alone (its "too large"
         * reply is lost if the primary dies). */
        atomic_fetch_add(&bus->requests_received, 1);
        if (!m->cut_len)
            daebus__bus_primary_keep(bus, cl, m->data, m->len);
        return true;
    }
    if (cl->mode != DAEBUS__GATE_CLAIM || m->cut_len || daebus__bus_preferred(cl))
        return false;
    bool weak = false;
    if (h) {
        atomic_fetch_add(&bus->listener_messages, 1);
    } else {
        char action[256];
        if (daebus__bus_scan_action(m->data, m->len, action, sizeof action) != 0)
            return false;
        atomic_fetch_add(&bus->requests_received, 1);
        /* Unknown here: claimed late, so that a replica that knows it answers. */
        weak = !daebus__bus_find_handler(bus->actions, bus->nactions, action);
        if (weak)
            atomic_fetch_add(&bus->unknown_actions, 1);
    }
    daebus__bus_defer_unread(bus, cl, h ? (int)(h - bus->listens) : -1, m->data, m->len, weak);
    return true;
}

void daebus__bus_take_unread(daebus_bus *bus, daebus__bus_claim *cl, int listen, const char *data,
                             size_t len)
{
    if (listen < 0) {
        on_service_message(bus, cl, bus->service, data, len);
    } else {
        const daebus__handler *h = &bus->listens[listen];
        on_listen_message(bus, h, cl, h->key, data, len);
    }
}

/* A message over max_message_size, of which the transport's size guard
 * kept only the first bytes (msg data) and the last ones (msg tail):
 * counted, logged at most once a second, never parsed; a request on the
 * service channel whose reply_to and request_id can be read from those
 * bytes gets an error reply. */
static void on_too_large(daebus_bus *bus, daebus__bus_claim *cl, const daebus__redis_msg *m)
{
    atomic_fetch_add(&bus->too_large, 1);
    long missed = daebus__ratelimit_pass(&bus->big_log, daebus__now_mono(), 1.0);
    char mbuf[64];
    if (missed >= 0)
        DAEBUS_LOG_WARNF(LOGC,
                         "message of %zu bytes on '%.100s' refused unread: over the limit of %zu "
                         "bytes (max_message_size)%s",
                         m->cut_len, m->channel, bus->opts.max_message_size,
                         more_text(missed, mbuf, sizeof mbuf));
    if (bus->opts.no_service_channel || strcmp(m->channel, bus->service) != 0)
        return;
    char reply[512], rid[256];
    if (daebus__bus_scan_reply_cut(m->data, m->len, m->tail, m->tail_len, reply, sizeof reply, rid,
                                   sizeof rid) != 0)
        return;
    cJSON *id = cJSON_CreateString(rid);
    char text[160];
    snprintf(text, sizeof text, "Message too large (%zu bytes; limit %zu)", m->cut_len,
             bus->opts.max_message_size);
    if (id)
        daebus__bus_error_once(bus, cl, reply, id, text, false);
    cJSON_Delete(id);
}

/* The preferred replica's claim goes before the message is parsed, so that
 * its round trip overlaps the parse and the hand-off to the worker: for a
 * known action (read without parsing; an unknown one is claimed late) or a
 * LISTEN .once message. A ticket that no job took is finished by the caller
 * (daebus__bus_abandon). */
static void claim_early(daebus_bus *bus, daebus__bus_claim *cl, const daebus__handler *h,
                        const daebus__redis_msg *m)
{
    if (cl->mode != DAEBUS__GATE_CLAIM || m->cut_len)
        return;
    char action[256];
    if (!h && (daebus__bus_scan_action(m->data, m->len, action, sizeof action) != 0 ||
               !daebus__bus_find_handler(bus->actions, bus->nactions, action)))
        return;
    daebus__bus_claim_early(bus, cl);
}

/* Can the action of a raw request be read, and does this replica have it? */
static bool known_action(daebus_bus *bus, const daebus__redis_msg *m)
{
    char action[256];
    return !m->cut_len && daebus__bus_scan_action(m->data, m->len, action, sizeof action) == 0 &&
           daebus__bus_find_handler(bus->actions, bus->nactions, action);
}

/* Every message of a claimed channel goes through the gate first, in
 * arrival order (cut ones included): its position names it in the claims. */
void daebus__bus_on_message(void *user, const daebus__redis_msg *m)
{
    daebus_bus *bus = user;
    daebus__bus_claim cl = {.mode = DAEBUS__GATE_SOLO};
    bus->prim.more = m->more;
    if (bus->gated && strcmp(m->channel, bus->cluster_channel) == 0) {
        if (m->cut_len)
            return;
        /* A join or a change of primary ends the batch: its marker goes first. */
        if (strncmp(m->data, "progress ", 9) != 0)
            daebus__bus_primary_flush(bus);
        daebus__cluster_progress p;
        daebus__cluster_ev ev =
            daebus__cluster_on_message(atomic_load(&bus->cluster), m->data, m->len, &p);
        if (ev == DAEBUS__CLUSTER_EV_JOINED)
            daebus__bus_joined(bus);
        else if (ev == DAEBUS__CLUSTER_EV_PROGRESS)
            daebus__bus_on_progress(bus, &p);
        return;
    }
    if (!bus->opts.no_service_channel && strcmp(m->channel, bus->service) == 0) {
        if (!daebus__bus_gate(bus, &bus->svc_pos, NULL, &cl) || keep_unread(bus, &cl, NULL, m))
            return;
        /* Early only for an action known here (an unknown one is skipped:
         * claimed by whoever knows it, never covered). */
        bool early = cl.mode == DAEBUS__GATE_PRIMARY && !m->more && known_action(bus, m) &&
                     !daebus__bus_primary_paced(bus);
        if (early)
            daebus__bus_primary_early(bus, true); /* its round trip overlaps the parse */
        claim_early(bus, &cl, NULL, m);
        if (m->cut_len)
            on_too_large(bus, &cl, m);
        else
            on_service_message(bus, &cl, m->channel, m->data, m->len);
        daebus__bus_abandon(bus, &cl);
        if (early)
            daebus__bus_primary_early(bus, false);
        return;
    }
    const daebus__handler *h = daebus__bus_find_handler(bus->listens, bus->nlistens, m->channel);
    if (!h)
        return;
    if (h->desc->opts.once &&
        (!daebus__bus_gate(bus, &bus->listen_pos[h - bus->listens], m->channel, &cl) ||
         keep_unread(bus, &cl, h, m)))
        return;
    claim_early(bus, &cl, h, m);
    if (m->cut_len)
        on_too_large(bus, &cl, m);
    else
        on_listen_message(bus, h, &cl, m->channel, m->data, m->len);
    daebus__bus_abandon(bus, &cl);
}
