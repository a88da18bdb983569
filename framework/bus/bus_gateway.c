/* bus_gateway.c - the action gateway: the TypeScript client's "publish" frame
 * calls an action over the bus; the reply goes back to the WebSocket client.
 *
 * The gateway sits above the WebSocket layer and uses only its public API: a
 * SOCKET handler of "publish" (registered through a blueprint the gateway
 * owns) and daebus_ws_send_frame() for the answers. A call is one
 * daebus_caller_request_async() on the bus's caller: the client's CivetWeb
 * thread returns at once, the completion (and each progress reply) runs on
 * the caller's reader thread and queues the answer for the client if it is
 * still connected to this replica; otherwise the answer is dropped (counted
 * as orphaned). The calls each client has in flight are counted in a table
 * keyed by client id (an entry lives while its count is > 0), so a client
 * that leaves with calls pending costs nothing once they complete.
 *
 * Life: the state hangs off the bus (bus->gateway) and is freed with it. The
 * app stops the bus last, after the WebSocket component: no handler runs
 * when the bus's caller is destroyed, and the completions that destroy runs
 * (DAEBUS_ECLOSED) send nothing.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/gateway.h"
#include "daebus/log.h"
#include "daebus/websocket.h"
#include "bus_gateway_parse.h"
#include "bus_internal.h"
#include "hash.h"
#include "textlist.h"
#include "utf8.h"

#define LOGC                  "gateway"
#define DEFAULT_TIMEOUT       10.0
#define DEFAULT_MAX_IN_FLIGHT 8
#define TEXT_MAX              300

struct daebus__gateway {
    daebus_app *app;
    daebus_bus *bus;
    daebus_blueprint *bp;
    char *allow; /* NULL: nothing callable */
    double timeout;
    int max_in_flight;
    pthread_mutex_t lock;
    daebus__hash *clients; /* client id -> int * (calls in flight, > 0) */
    atomic_ullong calls, refused, failed, timeouts, orphaned, in_flight;
};

/* One call in flight: what its answer needs. */
typedef struct gw_call {
    daebus__gateway *gw;
    cJSON *rid;   /* the client's request id, or NULL */
    char *target; /* "service.action", for messages */
    char client_id[];
} gw_call;

/* ---- answers ---- */

/* Queues frame (taken) for client_id. Returns: as daebus_ws_send_frame. */
static int send_take(daebus__gateway *gw, const char *client_id, cJSON *frame)
{
    daebus_ws *ws = daebus_app_websocket(gw->app);
    int rc = frame ? daebus_ws_send_frame(ws, client_id, frame) : DAEBUS_ENOMEM;
    cJSON_Delete(frame);
    return rc;
}

static int send_failure(daebus__gateway *gw, const char *client_id, const cJSON *rid,
                        const char *text, const cJSON *data)
{
    return send_take(gw, client_id, daebus__gateway_failure(rid, text, data));
}

/* ---- calls in flight per client ---- */

/* Counts one more call for client_id unless it has max already.
 * Returns: 0, DAEBUS_EFULL (at the limit), DAEBUS_ENOMEM. */
static int flight_take(daebus__gateway *gw, const char *client_id)
{
    int rc = 0;
    pthread_mutex_lock(&gw->lock);
    int *n = daebus__hash_find(gw->clients, client_id);
    if (n && *n >= gw->max_in_flight) {
        rc = DAEBUS_EFULL;
    } else if (n) {
        ++*n;
    } else if (!(n = malloc(sizeof *n))) {
        rc = DAEBUS_ENOMEM;
    } else {
        *n = 1;
        if ((rc = daebus__hash_insert(gw->clients, client_id, n)) != 0)
            free(n);
    }
    pthread_mutex_unlock(&gw->lock);
    if (rc == 0)
        atomic_fetch_add(&gw->in_flight, 1);
    return rc;
}

static void flight_give(daebus__gateway *gw, const char *client_id)
{
    pthread_mutex_lock(&gw->lock);
    int *n = daebus__hash_find(gw->clients, client_id);
    if (n && --*n <= 0)
        free(daebus__hash_remove(gw->clients, client_id));
    pthread_mutex_unlock(&gw->lock);
    atomic_fetch_sub(&gw->in_flight, 1);
}

/* ---- caller callbacks (the caller's reader thread) ---- */

static void call_progress(daebus_caller *caller, const cJSON *payload, void *user)
{
    (void)caller;
    gw_call *call = user;
    cJSON *f = daebus__gateway_frame("progress", call->rid);
    if (f)
        cJSON_AddItemToObject(f, "data", cJSON_Duplicate(payload, true));
    send_take(call->gw, call->client_id, f);
}

/* The error text a browser gets for a failed call (never the Redis URL the
 * caller's own messages name). */
static void failure_text(const gw_call *call, int status, const char *message, char *buf,
                         size_t cap)
{
    switch (status) {
    case DAEBUS_EREPLY:
        daebus__utf8_snprintf(buf, cap, "%s", message && *message ? message : "Unknown error");
        break;
    case DAEBUS_ETIMEDOUT:
        daebus__utf8_snprintf(buf, cap, "Action '%s' timed out after %g s", call->target,
                              call->gw->timeout);
        break;
    case DAEBUS_ENOLISTENER:
        daebus__utf8_snprintf(buf, cap, "No service is answering '%s'", call->target);
        break;
    case DAEBUS_ETOOBIG:
        daebus__utf8_snprintf(buf, cap, "Reply of '%s' too large", call->target);
        break;
    default:
        daebus__utf8_snprintf(buf, cap, "Action '%s' failed: %s", call->target,
                              daebus_strerror(status));
        break;
    }
}

static void call_done(daebus_caller *caller, int status, const cJSON *payload, const char *message,
                      void *user)
{
    (void)caller;
    gw_call *call = user;
    daebus__gateway *gw = call->gw;
    int rc = 0;
    if (status == 0) {
        cJSON *f = daebus__gateway_frame("response", call->rid);
        if (f) {
            cJSON_AddBoolToObject(f, "success", true);
            cJSON_AddItemToObject(f, "data",
                                  payload ? cJSON_Duplicate(payload, true) : cJSON_CreateObject());
        }
        rc = send_take(gw, call->client_id, f);
        if (rc == DAEBUS_ETOOBIG) { /* over the client's queue limit: say so instead */
            char text[TEXT_MAX];
            daebus__utf8_snprintf(text, sizeof text, "Reply of '%s' too large for the WebSocket",
                                  call->target);
            atomic_fetch_add(&gw->failed, 1);
            rc = send_failure(gw, call->client_id, call->rid, text, NULL);
        }
    } else {
        char text[TEXT_MAX + 100];
        failure_text(call, status, message, text, sizeof text);
        atomic_fetch_add(&gw->failed, 1);
        if (status == DAEBUS_ETIMEDOUT)
            atomic_fetch_add(&gw->timeouts, 1);
        /* Destroyed at shutdown: the WebSocket component stopped already. */
        rc = status == DAEBUS_ECLOSED ? DAEBUS_ENOENT
                                      : send_failure(gw, call->client_id, call->rid, text,
                                                     status == DAEBUS_EREPLY ? payload : NULL);
    }
    if (rc == DAEBUS_ENOENT)
        atomic_fetch_add(&gw->orphaned, 1);
    flight_give(gw, call->client_id);
    cJSON_Delete(call->rid);
    free(call->target);
    free(call);
}

/* ---- the "publish" frame ---- */

/* The WebSocket component's authorisation (DAEBUS_WS_AUTH_CALL: its hook
 * decides; none: allowed, the allow-list having let the call through). */
static bool authorised(daebus_ws_request *req, const char *client_id, const daebus__gw_frame *fr,
                       char *reason, size_t cap)
{
    int rc = daebus_ws_authorize(daebus_ws_request_ws(req), client_id, DAEBUS_WS_AUTH_CALL,
                                 fr->service, fr->action, reason, cap);
    if (rc != 0 && !reason[0])
        snprintf(reason, cap, "Not allowed");
    return rc == 0;
}

/* Sends the call. Returns: 0, or a negative code with err filled. */
static int start_call(daebus__gateway *gw, const char *client_id, const daebus__gw_frame *fr,
                      char *err, size_t cap)
{
    daebus_caller *caller = daebus_bus_caller(gw->bus);
    if (!caller) {
        snprintf(err, cap, "Bus unavailable");
        return DAEBUS_ECONN;
    }
    size_t idlen = strlen(client_id) + 1;
    gw_call *call = calloc(1, sizeof *call + idlen);
    size_t tlen = strlen(fr->service) + strlen(fr->action) + 2;
    if (call)
        call->target = malloc(tlen);
    if (!call || !call->target || (fr->rid && !(call->rid = cJSON_Duplicate(fr->rid, true)))) {
        if (call)
            free(call->target);
        free(call);
        snprintf(err, cap, "Out of memory");
        return DAEBUS_ENOMEM;
    }
    call->gw = gw;
    memcpy(call->client_id, client_id, idlen);
    snprintf(call->target, tlen, "%s.%s", fr->service, fr->action);
    int rc = daebus_caller_request_async(caller, fr->service, fr->action, fr->payload, gw->timeout,
                                         call_done, call_progress, call, NULL);
    if (rc != 0) {
        daebus__utf8_snprintf(err, cap, "Action '%s' not sent: %s", call->target,
                              daebus_strerror(rc));
        cJSON_Delete(call->rid);
        free(call->target);
        free(call);
    }
    return rc;
}

/* Checks the frame and sends the call; returns the refusal text or NULL. */
static const char *try_publish(daebus__gateway *gw, daebus_ws_request *req, const char *client_id,
                               daebus__gw_frame *fr, char *err, size_t cap)
{
    if (!daebus__gateway_parse(daebus_ws_request_message(req), fr, err, cap))
        return err;
    if (!daebus__gateway_allowed(gw->allow, fr->service, fr->action)) {
        daebus__gateway_not_allowed(err, cap, fr->service, fr->action);
        return err;
    }
    if (!authorised(req, client_id, fr, err, cap))
        return err;
    int rc = flight_take(gw, client_id);
    if (rc != 0) {
        if (rc == DAEBUS_EFULL)
            snprintf(err, cap, "Too many calls in flight (max %d)", gw->max_in_flight);
        else
            snprintf(err, cap, "Out of memory");
        return err;
    }
    if (start_call(gw, client_id, fr, err, cap) != 0) {
        flight_give(gw, client_id);
        return err;
    }
    atomic_fetch_add(&gw->calls, 1);
    return NULL;
}

static cJSON *on_publish(daebus_ws_request *req, const char *client_id, void *user)
{
    daebus__gateway *gw = user;
    daebus__gw_frame fr = {0};
    char err[TEXT_MAX];
    const char *refusal = try_publish(gw, req, client_id, &fr, err, sizeof err);
    if (refusal) {
        atomic_fetch_add(&gw->refused, 1);
        send_failure(gw, client_id, fr.rid, refusal, NULL);
    }
    return NULL; /* every answer is a frame of its own */
}

/* ---- set-up ---- */

static bool take_all(void *value, void *ctx)
{
    (void)value;
    (void)ctx;
    return true;
}

static void free_count(void *value, void *ctx)
{
    (void)ctx;
    free(value);
}

void daebus__gateway_free(daebus__gateway *gw)
{
    if (!gw)
        return;
    daebus__hash_take_if(gw->clients, take_all, free_count, NULL);
    daebus__hash_destroy(gw->clients);
    daebus_blueprint_destroy(gw->bp);
    pthread_mutex_destroy(&gw->lock);
    free(gw->allow);
    free(gw);
}

static int check_options(daebus_app *app, const daebus_gateway_options *o)
{
    if (!app || !o || o->timeout < 0 || o->max_in_flight < 0)
        return DAEBUS_EINVAL;
    daebus_bus *bus = daebus_app_bus(app);
    if (!bus || !daebus_app_websocket(app) || daebus_app_is_running(app))
        return DAEBUS_ESTATE;
    return bus->gateway ? DAEBUS_EEXIST : 0;
}

static daebus__gateway *gateway_new(daebus_app *app, const daebus_gateway_options *o)
{
    daebus__gateway *gw = calloc(1, sizeof *gw);
    if (!gw)
        return NULL;
    pthread_mutex_init(&gw->lock, NULL);
    gw->app = app;
    gw->bus = daebus_app_bus(app);
    gw->timeout = o->timeout > 0 ? o->timeout : DEFAULT_TIMEOUT;
    gw->max_in_flight = o->max_in_flight > 0 ? o->max_in_flight : DEFAULT_MAX_IN_FLIGHT;
    const char *p = o->allow, *item;
    size_t len;
    bool any = p && daebus__list_next(&p, &item, &len);
    gw->clients = daebus__hash_create(64);
    gw->bp = daebus_blueprint_create("gateway", NULL);
    if (!gw->clients || !gw->bp || (any && !(gw->allow = strdup(o->allow)))) {
        daebus__gateway_free(gw);
        return NULL;
    }
    return gw;
}

int daebus_gateway_enable(daebus_app *app, const daebus_gateway_options *opts)
{
    daebus_gateway_options def = DAEBUS_GATEWAY_OPTIONS_INIT;
    const daebus_gateway_options *o = opts ? opts : &def;
    int rc = check_options(app, o);
    if (rc != 0) {
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "enable: %s (attach the WebSocket and bus components "
                   "first, before the app runs; timeout and max_in_flight >= 0)",
                   daebus_strerror(rc));
        return rc;
    }
    daebus__gateway *gw = gateway_new(app, o);
    if (!gw)
        return DAEBUS_ENOMEM;
    daebus_handler_options ho = {.user = gw};
    rc = daebus_blueprint_add_socket(gw->bp, "publish", on_publish, &ho);
    if (rc == 0)
        rc = daebus_app_register_blueprint(app, gw->bp);
    if (rc != 0) {
        daebus__gateway_free(gw);
        return rc;
    }
    gw->bus->gateway = gw;
    daebus_log(DAEBUS_LOG_INFO, LOGC, "on: %s callable; %g s per call, %d in flight per client",
               gw->allow ? gw->allow : "nothing", gw->timeout, gw->max_in_flight);
    return 0;
}

int daebus_gateway_get_stats(const daebus_app *app, daebus_gateway_stats *out)
{
    if (!app || !out)
        return DAEBUS_EINVAL;
    daebus_bus *bus = daebus_app_bus(app);
    daebus__gateway *gw = bus ? bus->gateway : NULL;
    if (!gw)
        return DAEBUS_ESTATE;
    *out = (daebus_gateway_stats){
        .calls = atomic_load(&gw->calls),
        .refused = atomic_load(&gw->refused),
        .failed = atomic_load(&gw->failed),
        .timeouts = atomic_load(&gw->timeouts),
        .orphaned = atomic_load(&gw->orphaned),
        .in_flight = atomic_load(&gw->in_flight),
    };
    return 0;
}
