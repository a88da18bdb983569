/* admin.c - the admin blueprint: WebSocket client management as bus actions.
 *
 * The Daebus guide's client-management actions (get_connected_clients,
 * find_inactive_clients, kick_client, notify_user, shutdown) and the live
 * instances of the service (get_instances) written once so
 * that any service with a WebSocket component can register them. Everything
 * goes through the WebSocket component's thread-safe registry functions; the
 * blueprint keeps no state of its own.
 */
#include "admin/admin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

DAEBUS_BLUEPRINT(daebus_admin_bp, "admin");

static double now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The app's WebSocket component, or NULL after an error reply was sent. */
static daebus_ws *need_ws(daebus_bus_request *req)
{
    daebus_ws *ws = daebus_app_websocket(daebus_bus_request_app(req));
    if (!ws)
        daebus_bus_reply_error(req, "This service has no WebSocket component");
    return ws;
}

static const char *str_field(const cJSON *payload, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(payload, key);
    return cJSON_IsString(v) && v->valuestring && v->valuestring[0] ? v->valuestring : NULL;
}

/* ---- get_connected_clients ---- */

DAEBUS_ACTION(admin_get_connected_clients, "get_connected_clients", .bp = &daebus_admin_bp)
{
    daebus_ws *ws = need_ws(req);
    if (!ws)
        return 0;
    cJSON *ids = daebus_ws_get_clients(ws);
    if (!ids)
        return DAEBUS_ENOMEM;
    cJSON *clients = cJSON_CreateObject();
    int count = 0;
    const cJSON *id;
    cJSON_ArrayForEach(id, ids)
    {
        cJSON *meta = daebus_ws_get_client_metadata(ws, id->valuestring);
        if (!meta)
            continue; /* left meanwhile */
        cJSON *info = cJSON_CreateObject();
        static const char *const copy[] = {"connected_at",      "last_activity", "remote_address",
                                           "messages_received", "messages_sent", "path"};
        for (size_t i = 0; i < sizeof copy / sizeof copy[0]; i++) {
            cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(meta, copy[i]);
            if (v)
                cJSON_AddItemToObject(info, copy[i], v);
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(meta, "username");
        cJSON_AddBoolToObject(info, "is_authenticated", cJSON_IsString(name));
        if (cJSON_IsString(name))
            cJSON_AddStringToObject(info, "username", name->valuestring);
        cJSON_AddItemToObject(clients, id->valuestring, info);
        cJSON_Delete(meta);
        count++;
    }
    cJSON_Delete(ids);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "count", count);
    cJSON_AddItemToObject(out, "clients", clients);
    return daebus_bus_reply_take(req, out);
}

/* ---- find_inactive_clients ---- */

static bool inactive_since(const char *client_id, const cJSON *meta, void *user)
{
    (void)client_id;
    const double *threshold = user;
    const cJSON *last = cJSON_GetObjectItemCaseSensitive(meta, "last_activity");
    return cJSON_IsNumber(last) && last->valuedouble < *threshold;
}

DAEBUS_ACTION(admin_find_inactive_clients, "find_inactive_clients", .bp = &daebus_admin_bp)
{
    daebus_ws *ws = need_ws(req);
    if (!ws)
        return 0;
    double seconds = DAEBUS_ADMIN_DEFAULT_INACTIVE_SECONDS;
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(payload, "threshold_seconds");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(payload, "threshold_minutes");
    if (cJSON_IsNumber(s))
        seconds = s->valuedouble;
    else if (cJSON_IsNumber(m))
        seconds = m->valuedouble * 60.0;
    else if (s || m)
        return daebus_bus_reply_error(req, "threshold_seconds / threshold_minutes must be numbers");
    if (!isfinite(seconds) || seconds < 0)
        return daebus_bus_reply_error(req, "The threshold must be a number >= 0");
    double threshold = now_wall() - seconds;
    cJSON *ids = daebus_ws_get_clients_by_filter(ws, inactive_since, &threshold);
    if (!ids)
        return DAEBUS_ENOMEM;
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "count", cJSON_GetArraySize(ids));
    cJSON_AddItemToObject(out, "clients", ids);
    cJSON_AddNumberToObject(out, "threshold_seconds", seconds);
    return daebus_bus_reply_take(req, out);
}

/* ---- kick_client ---- */

DAEBUS_ACTION(admin_kick_client, "kick_client", .bp = &daebus_admin_bp)
{
    daebus_ws *ws = need_ws(req);
    if (!ws)
        return 0;
    const char *client_id = str_field(payload, "client_id");
    if (!client_id)
        return daebus_bus_reply_error(req, "No client_id provided");
    const char *reason = str_field(payload, "reason");
    if (!reason)
        reason = DAEBUS_ADMIN_DEFAULT_KICK_REASON;

    cJSON *notice = cJSON_CreateObject();
    cJSON_AddStringToObject(notice, "reason", reason);
    cJSON_AddNumberToObject(notice, "timestamp", now_wall());
    daebus_ws_send_to_client(ws, client_id, notice, "disconnect_notice");
    cJSON_Delete(notice);
    /* The close reason is limited to 123 bytes on the wire; the full reason
     * went out in the notice. */
    int rc = daebus_ws_disconnect_client(ws, client_id, 1000, "Kicked by administrator");
    daebus_log(DAEBUS_LOG_INFO, "admin", "kick_client %s: %s", client_id,
               rc == 0 ? "disconnected" : "no such client");

    cJSON *out = cJSON_CreateObject();
    cJSON_AddBoolToObject(out, "success", rc == 0);
    cJSON_AddStringToObject(out, "client_id", client_id);
    return daebus_bus_reply_take(req, out);
}

/* ---- notify_user ---- */

typedef struct name_match {
    const char *name;
} name_match;

static bool has_username(const char *client_id, const cJSON *meta, void *user)
{
    (void)client_id;
    const name_match *m = user;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(meta, "username");
    return cJSON_IsString(name) && strcmp(name->valuestring, m->name) == 0;
}

DAEBUS_ACTION(admin_notify_user, "notify_user", .bp = &daebus_admin_bp)
{
    daebus_ws *ws = need_ws(req);
    if (!ws)
        return 0;
    const char *user_id = str_field(payload, "user_id");
    if (!user_id)
        return daebus_bus_reply_error(req, "No user_id provided");
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(payload, "message");

    cJSON *targets;
    if (daebus_ws_is_client_connected(ws, user_id)) {
        targets = cJSON_CreateArray();
        cJSON_AddItemToArray(targets, cJSON_CreateString(user_id));
    } else {
        name_match m = {user_id};
        targets = daebus_ws_get_clients_by_filter(ws, has_username, &m);
    }
    if (!targets)
        return DAEBUS_ENOMEM;
    if (cJSON_GetArraySize(targets) == 0) {
        cJSON_Delete(targets);
        return daebus_bus_reply_error(req, "User %s not connected", user_id);
    }

    cJSON *note = cJSON_CreateObject();
    cJSON_AddItemToObject(note, "message",
                          message ? cJSON_Duplicate(message, 1) : cJSON_CreateString(""));
    cJSON_AddNumberToObject(note, "timestamp", now_wall());
    bool delivered = false;
    cJSON *sent = cJSON_CreateArray();
    const cJSON *id;
    cJSON_ArrayForEach(id, targets)
    {
        if (daebus_ws_send_to_client(ws, id->valuestring, note, "notification") == 0) {
            delivered = true;
            cJSON_AddItemToArray(sent, cJSON_CreateString(id->valuestring));
        }
    }
    cJSON_Delete(note);

    cJSON *out = cJSON_CreateObject();
    cJSON_AddBoolToObject(out, "delivered", delivered);
    cJSON_AddStringToObject(out, "client_id", cJSON_GetArrayItem(targets, 0)->valuestring);
    cJSON_AddItemToObject(out, "client_ids", sent);
    cJSON_Delete(targets);
    return daebus_bus_reply_take(req, out);
}

/* ---- get_instances ---- */

DAEBUS_ACTION(admin_get_instances, "get_instances", .bp = &daebus_admin_bp)
{
    daebus_app *app = daebus_bus_request_app(req);
    cJSON *list = NULL;
    int n = daebus_app_instances(app, &list);
    if (n < 0)
        return daebus_bus_reply_error(req, "Instances unavailable (%s)", daebus_strerror(n));
    const cJSON *first = cJSON_GetArrayItem(list, 0);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "instance_id", daebus_app_instance_id(app));
    cJSON_AddNumberToObject(out, "count", n);
    cJSON_AddBoolToObject(out, "stale",
                          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(first, "stale")));
    cJSON_AddItemToObject(out, "instances", list);
    return daebus_bus_reply_take(req, out);
}

/* ---- shutdown ---- */

DAEBUS_ACTION(admin_shutdown, "shutdown", .bp = &daebus_admin_bp)
{
    daebus_app *app = daebus_bus_request_app(req);
    daebus_ws *ws = daebus_app_websocket(app);
    double timeout = 2.0;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(payload, "timeout");
    if (cJSON_IsNumber(t) && isfinite(t->valuedouble) && t->valuedouble >= 0 &&
        t->valuedouble <= 60)
        timeout = t->valuedouble;

    cJSON *message = cJSON_CreateObject();
    const char *text = str_field(payload, "message");
    cJSON_AddStringToObject(message, "message",
                            text ? text : "Server is shutting down for maintenance");
    const cJSON *downtime = cJSON_GetObjectItemCaseSensitive(payload, "expected_downtime");
    if (cJSON_IsString(downtime))
        cJSON_AddStringToObject(message, "expected_downtime", downtime->valuestring);
    const cJSON *reconnect = cJSON_GetObjectItemCaseSensitive(payload, "reconnect");
    cJSON_AddBoolToObject(message, "reconnect",
                          cJSON_IsBool(reconnect) ? cJSON_IsTrue(reconnect) : 1);

    /* Answer first: the caller should not wait through the drain. */
    cJSON *out = cJSON_CreateObject();
    cJSON_AddBoolToObject(out, "shutdown_initiated", 1);
    cJSON_AddNumberToObject(out, "timeout", timeout);
    daebus_bus_reply_take(req, out);

    daebus_log(DAEBUS_LOG_WARNING, "admin", "shutdown requested over the bus (drain %.1f s)",
               timeout);
    if (ws)
        daebus_ws_graceful_shutdown(ws, timeout, message);
    cJSON_Delete(message);
    daebus_app_stop(app);
    return 0;
}
