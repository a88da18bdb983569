/* bus_request.c - the bus request object, its reference count and its replies.
 *
 * A request is reference counted: the worker holds one reference while the
 * handler runs, daebus_bus_request_retain() adds more. When the last one goes
 * and an ACTION request with a reply channel has had no final reply, the bus
 * sends an error reply - so every answerable request gets exactly one final
 * reply. Replies are published on the bus's publisher pool from any thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/log.h"
#include "bus_internal.h"
#include "clock.h"
#include "utf8.h"

#define LOGC DAEBUS__BUS_LOGC

int daebus__bus_publish(daebus_bus *bus, const char *channel, const char *data, size_t len)
{
    return daebus__redis_publish(bus->pub, channel, data, len);
}

/* The receiver count of a reply sent without waiting: only a lost one is
 * worth a word (read by a later command on the connection). */
static void reply_sent(void *arg, int result)
{
    daebus_bus *bus = arg;
    if (result < 0)
        daebus_log(atomic_load(&bus->connected) ? DAEBUS_LOG_WARNING : DAEBUS_LOG_DEBUG, LOGC,
                   "a reply was lost with the connection to Redis: %s", daebus_strerror(result));
}

/* Sends one response to channel (used for requests and for replies the
 * subscriber thread makes without a request object). Without wait it is
 * written without waiting for the PUBLISH reply (the worker goes on at once,
 * and the replies of several workers go out in one write): nothing here
 * needs the receiver count, and every reply on one channel takes the same
 * connection, so the replies of a request keep their order. A durable
 * request's progress waits: its final reply is a pipeline (bus_durable_finish.c)
 * that could take another connection. */
static int send_response(daebus_bus *bus, const char *channel, bool error, const cJSON *payload,
                         const cJSON *request_id, bool final, bool wait)
{
    char *s = daebus__bus_build_response(error, payload, request_id, final);
    if (!s)
        return DAEBUS_ENOMEM;
    int rc = wait ? daebus__bus_publish(bus, channel, s, strlen(s))
                  : daebus__redis_publish_async(bus->pub, channel, s, strlen(s), reply_sent, bus);
    free(s);
    if (rc >= 0) {
        atomic_fetch_add(&bus->replies_sent, 1);
        if (error)
            atomic_fetch_add(&bus->errors, 1);
        return 0;
    }
    /* While the connection is down the subscriber has already said so once. */
    daebus_log(atomic_load(&bus->connected) ? DAEBUS_LOG_WARNING : DAEBUS_LOG_DEBUG, LOGC,
               "could not publish a reply on '%.*s': %s", daebus__utf8_prec(channel, 100), channel,
               daebus_strerror(rc));
    return rc;
}

int daebus__bus_send_error(daebus_bus *bus, const char *channel, const cJSON *request_id,
                           const char *text)
{
    cJSON *p = cJSON_CreateObject();
    if (!p || !cJSON_AddStringToObject(p, "error", text)) {
        cJSON_Delete(p);
        return DAEBUS_ENOMEM;
    }
    int rc = send_response(bus, channel, true, p, request_id, true, false);
    cJSON_Delete(p);
    return rc;
}

/* ---- requests ---- */

static void live_add(daebus_bus *bus, int delta)
{
    pthread_mutex_lock(&bus->state_lock);
    bus->live = (size_t)((long)bus->live + delta);
    pthread_cond_broadcast(&bus->state_cond);
    pthread_mutex_unlock(&bus->state_lock);
}

daebus_bus_request *daebus__bus_request_new(daebus_bus *bus, daebus__bus_envelope *env,
                                            const char *channel, const char *reply_channel)
{
    daebus_bus_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->channel = strdup(channel);
    r->reply_channel = reply_channel ? strdup(reply_channel) : NULL;
    if (!r->channel || (reply_channel && !r->reply_channel)) {
        free(r->channel);
        free(r->reply_channel);
        free(r);
        return NULL;
    }
    atomic_init(&r->refs, 1);
    r->bus = bus;
    r->env = *env;
    memset(env, 0, sizeof *env);
    r->attempt = 1;
    pthread_mutex_init(&r->lock, NULL);
    live_add(bus, 1);
    return r;
}

static void request_free(daebus_bus_request *r)
{
    daebus_bus *bus = r->bus;
    daebus__bus_envelope_free(&r->env);
    daebus__durable_job_free(r->durable);
    free(r->channel);
    free(r->reply_channel);
    pthread_mutex_destroy(&r->lock);
    free(r);
    live_add(bus, -1);
}

/* Claims the final reply. Returns: 1 if the caller may send it, 0 if one was sent. */
int daebus__bus_claim_final(daebus_bus_request *r)
{
    pthread_mutex_lock(&r->lock);
    int ok = !r->final_sent;
    r->final_sent = 1;
    pthread_mutex_unlock(&r->lock);
    return ok;
}

void daebus__bus_auto_error(daebus_bus_request *r, const char *fmt_action)
{
    if (!r->is_action || !r->reply_channel || !daebus__bus_claim_final(r))
        return;
    char text[300];
    daebus__utf8_snprintf(text, sizeof text, fmt_action, r->env.action ? r->env.action : "?");
    if (r->durable) {
        cJSON *p = cJSON_CreateObject();
        if (p && cJSON_AddStringToObject(p, "error", text))
            daebus__durable_finish(r, true, p);
        cJSON_Delete(p);
        return;
    }
    daebus__bus_send_error(r->bus, r->reply_channel, r->env.request_id, text);
}

void daebus_bus_request_retain(daebus_bus_request *r)
{
    if (r)
        atomic_fetch_add(&r->refs, 1);
}

void daebus_bus_request_release(daebus_bus_request *r)
{
    if (!r)
        return;
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    daebus__bus_auto_error(r, "Action '%s' sent no reply");
    if (r->durable && !r->durable->finished)
        daebus__durable_finish(r, false, NULL); /* no reply channel: completed silently */
    request_free(r);
}

/* A claimed request another replica took: released without a word. */
static bool not_taken(daebus_bus_request *r)
{
    if (daebus__bus_take(r->bus, &r->claim))
        return false;
    daebus__bus_claim_final(r);
    daebus_bus_request_release(r);
    return true;
}

void daebus__bus_run_action(void *arg)
{
    daebus_bus_request *r = arg;
    if (not_taken(r))
        return;
    int rc = r->afn(r, r->env.payload, r->user);
    r->handler_rc = rc;
    atomic_fetch_add(&r->bus->requests_handled, 1);
    if (rc < 0) {
        DAEBUS_LOG_ERRORF(LOGC, "action '%s' failed: returned %d (%s: %s)", r->env.action, rc,
                          daebus_errname(rc), daebus_strerror(rc));
        daebus__bus_auto_error(r, "Internal error in action '%s'");
    }
    daebus_bus_request_release(r);
}

void daebus__bus_run_listen(void *arg)
{
    daebus_bus_request *r = arg;
    if (not_taken(r))
        return;
    int rc = r->lfn(r, r->env.root, r->user);
    if (rc < 0)
        DAEBUS_LOG_WARNF(LOGC, "listener on '%s' failed: returned %d (%s: %s)", r->channel, rc,
                         daebus_errname(rc), daebus_strerror(rc));
    daebus_bus_request_release(r);
}

void daebus__bus_drop_request(void *arg)
{
    daebus_bus_request *r = arg;
    if (r->durable) { /* not run here: pending for another replica */
        daebus__bus_claim_final(r);
        daebus__durable_leave(r);
        daebus_bus_request_release(r);
        return;
    }
    if (r->claim.mode == DAEBUS__GATE_CLAIM ||
        (r->claim.mode == DAEBUS__GATE_PRIMARY && !daebus__bus_take(r->bus, &r->claim))) {
        daebus__bus_abandon(r->bus, &r->claim);
        daebus__bus_claim_final(r); /* not taken: not this replica's to answer */
    } else
        daebus__bus_auto_error(r, "Service shutting down; action '%s' was not run");
    daebus_bus_request_release(r);
}

/* ---- request API ---- */

const char *daebus_bus_request_id(const daebus_bus_request *r)
{
    return r && cJSON_IsString(r->env.request_id) ? r->env.request_id->valuestring : NULL;
}
const cJSON *daebus_bus_request_id_json(const daebus_bus_request *r)
{
    return r ? r->env.request_id : NULL;
}
const char *daebus_bus_request_reply_to(const daebus_bus_request *r)
{
    return r ? r->reply_channel : NULL;
}
const char *daebus_bus_request_service(const daebus_bus_request *r)
{
    return r ? r->env.service : NULL;
}
const char *daebus_bus_request_action(const daebus_bus_request *r)
{
    return r && r->is_action ? r->env.action : NULL;
}
const char *daebus_bus_request_channel(const daebus_bus_request *r)
{
    return r ? r->channel : NULL;
}
const cJSON *daebus_bus_request_raw(const daebus_bus_request *r)
{
    return r ? r->env.root : NULL;
}
daebus_app *daebus_bus_request_app(const daebus_bus_request *r)
{
    return r ? r->bus->app : NULL;
}
daebus_bus *daebus_bus_request_bus(const daebus_bus_request *r)
{
    return r ? r->bus : NULL;
}
int daebus_bus_request_attempt(const daebus_bus_request *r)
{
    return r ? r->attempt : 0;
}
bool daebus_bus_request_answered(const daebus_bus_request *r)
{
    if (!r)
        return false;
    pthread_mutex_lock((pthread_mutex_t *)&r->lock);
    bool a = r->final_sent;
    pthread_mutex_unlock((pthread_mutex_t *)&r->lock);
    return a;
}

static int reply_common(daebus_bus_request *r, bool error, const cJSON *payload, bool final)
{
    if (!r) {
        DAEBUS_LOG_WARNF(LOGC, "reply: request is NULL");
        return DAEBUS_EINVAL;
    }
    if (final) {
        if (!daebus__bus_claim_final(r)) {
            DAEBUS_LOG_WARNF(LOGC,
                             "reply to '%s' after its final reply: ignored (send progress "
                             "with daebus_bus_progress() before the final reply)",
                             r->env.action ? r->env.action : r->channel);
            return DAEBUS_ESTATE;
        }
    } else if (daebus_bus_request_answered(r)) {
        DAEBUS_LOG_WARNF(LOGC, "progress after the final reply: ignored");
        return DAEBUS_ESTATE;
    }
    if (final && r->durable)
        return daebus__durable_finish(r, error, payload);
    if (!r->reply_channel)
        return 0; /* fire-and-forget: nothing to answer */
    return send_response(r->bus, r->reply_channel, error, payload, r->env.request_id, final,
                         r->durable != NULL);
}

int daebus_bus_reply(daebus_bus_request *r, const cJSON *payload)
{
    return reply_common(r, false, payload, true);
}

int daebus_bus_reply_take(daebus_bus_request *r, cJSON *payload)
{
    int rc = reply_common(r, false, payload, true);
    cJSON_Delete(payload);
    return rc;
}

int daebus_bus_reply_error(daebus_bus_request *r, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    daebus__utf8_vsnprintf(text, sizeof text, fmt ? fmt : "error", ap);
    va_end(ap);
    cJSON *p = cJSON_CreateObject();
    if (!p || !cJSON_AddStringToObject(p, "error", text)) {
        cJSON_Delete(p);
        return DAEBUS_ENOMEM;
    }
    int rc = reply_common(r, true, p, true);
    cJSON_Delete(p);
    return rc;
}

int daebus_bus_progress(daebus_bus_request *r, const cJSON *payload, double pct)
{
    cJSON *p = daebus__bus_progress_payload(payload, pct);
    if (!p)
        return DAEBUS_ENOMEM;
    int rc = reply_common(r, false, p, false);
    cJSON_Delete(p);
    return rc;
}

int daebus_bus_progress_take(daebus_bus_request *r, cJSON *payload, double pct)
{
    int rc = daebus_bus_progress(r, payload, pct);
    cJSON_Delete(payload);
    return rc;
}
