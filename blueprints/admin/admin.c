/* admin.c - the admin blueprint: WebSocket client management as bus actions.
 *
 * The Daebus guide's client-management actions (get_connected_clients,
 * find_inactive_clients, kick_client, notify_user, shutdown) and the live
 * instances of the service (get_instances) written once so
 * that any service with a WebSocket component can register them. Everything
 * goes through the WebSocket component's thread-safe functions, whose
 * cluster-wide views and sends cover the clients of every replica; the
 * blueprint keeps no state of its own. A shutdown of other replicas goes
 * through the control channel every replica listens to.
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

/* The error reply for a cluster-wide view that failed (Redis unreachable). */
static int view_failed(daebus_bus_request *req, int rc)
{
    return daebus_bus_reply_error(req, "Client list unavailable (%s)", daebus_strerror(rc));
}

/* ---- get_connected_clients ---- */

/* The info of one client from its cluster-wide metadata. */
static cJSON *client_info(cJSON *meta)
{
    cJSON *info = cJSON_CreateObject();
    static const char *const copy[] = {"connected_at",      "last_activity", "remote_address",
                                       "messages_received", "messages_sent", "path",
                                       "instance_id"};
    for (size_t i = 0; i < sizeof copy / sizeof copy[0]; i++) {
        cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(meta, copy[i]);
        if (v)
            cJSON_AddItemToObject(info, copy[i], v);
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(meta, "username");
    cJSON_AddBoolToObject(info, "is_authenticated", cJSON_IsString(name));
    if (cJSON_IsString(name))
        cJSON_AddStringToObject(info, "username", name->valuestring);
    return info;
}

/* A filter that selects nothing and collects each client's info: the
 * cluster-wide metadata of every client in one pass. */
static bool collect_info(const char *client_id, const cJSON *meta, void *user)
{
    cJSON *copy = cJSON_Duplicate(meta, 1);
    if (copy) {
        cJSON_AddItemToObject(user, client_id, client_info(copy));
        cJSON_Delete(copy);
    }
    return false;
}

DAEBUS_ACTION(admin_get_connected_clients, "get_connected_clients", .bp = &daebus_admin_bp)
{
    daebus_ws *ws = need_ws(req);
    if (!ws)
        return 0;
    cJSON *clients = cJSON_CreateObject(), *none = NULL;
    int rc = daebus_ws_cluster_clients_by_filter(ws, collect_info, clients, &none);
    cJSON_Delete(none);
    if (rc < 0) {
        cJSON_Delete(clients);
        return view_failed(req, rc);
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "count", cJSON_GetArraySize(clients));
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
    cJSON *ids = NULL;
    int rc = daebus_ws_cluster_clients_by_filter(ws, inactive_since, &threshold, &ids);
    if (rc < 0)
        return view_failed(req, rc);
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

    cJSON *targets = NULL;
    if (daebus_ws_is_client_connected(ws, user_id)) {
        targets = cJSON_CreateArray();
        cJSON_AddItemToArray(targets, cJSON_CreateString(user_id));
    } else {
        name_match m = {user_id};
        int rc = daebus_ws_cluster_clients_by_filter(ws, has_username, &m, &targets);
        if (rc < 0)
            return view_failed(req, rc);
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

/* The server_shutdown message for the clients, from the request's fields. */
static cJSON *shutdown_message(const cJSON *payload)
{
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
    return message;
}

static double shutdown_timeout(const cJSON *payload)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(payload, "timeout");
    if (cJSON_IsNumber(t) && isfinite(t->valuedouble) && t->valuedouble >= 0 &&
        t->valuedouble <= 60)
        return t->valuedouble;
    return 2.0;
}

/* Drains this replica's clients and stops its app. */
static void shut_down_here(daebus_app *app, const cJSON *payload, const char *why)
{
    double timeout = shutdown_timeout(payload);
    daebus_log(DAEBUS_LOG_WARNING, "admin", "shutdown requested %s (drain %.1f s)", why, timeout);
    daebus_ws *ws = daebus_app_websocket(app);
    cJSON *message = shutdown_message(payload);
    if (ws)
        daebus_ws_graceful_shutdown(ws, timeout, message);
    cJSON_Delete(message);
    daebus_app_stop(app);
}

/* Every replica of every service with this blueprint listens here; a message
 * names its service and its target: "all" or one instance id. */
DAEBUS_LISTEN(admin_control, DAEBUS_ADMIN_CONTROL_CHANNEL, .bp = &daebus_admin_bp)
{
    daebus_app *app = daebus_bus_request_app(req);
    const char *service = str_field(message, "service");
    const char *command = str_field(message, "command");
    const char *target = str_field(message, "target");
    if (!service || !command || !target || strcmp(service, daebus_app_service(app)) != 0 ||
        strcmp(command, "shutdown") != 0)
        return 0;
    if (strcmp(target, "all") != 0 && strcmp(target, daebus_app_instance_id(app)) != 0)
        return 0;
    shut_down_here(app, message, strcmp(target, "all") == 0 ? "for every replica" : "by id");
    return 0;
}

/* Publishes a shutdown for target on the control channel. Returns: the
 * receivers, or a negative code. */
static int publish_shutdown(daebus_bus_request *req, const cJSON *payload, const char *target)
{
    daebus_app *app = daebus_bus_request_app(req);
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "service", daebus_app_service(app));
    cJSON_AddStringToObject(m, "command", "shutdown");
    cJSON_AddStringToObject(m, "target", target);
    cJSON_AddStringToObject(m, "from", daebus_app_instance_id(app));
    cJSON_AddNumberToObject(m, "timeout", shutdown_timeout(payload));
    static const char *const keep[] = {"message", "expected_downtime", "reconnect"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(payload, keep[i]);
        if (v)
            cJSON_AddItemToObject(m, keep[i], cJSON_Duplicate(v, 1));
    }
    return daebus_bus_broadcast_take(daebus_bus_request_bus(req), DAEBUS_ADMIN_CONTROL_CHANNEL, m);
}

/* Is id in the live instances this replica sees? */
static bool is_live_instance(daebus_app *app, const char *id)
{
    cJSON *list = NULL;
    bool found = false;
    if (daebus_app_instances(app, &list) > 0) {
        const cJSON *e;
        cJSON_ArrayForEach(e, list)
        {
            const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "id"));
            found = found || (v && strcmp(v, id) == 0);
        }
    }
    cJSON_Delete(list);
    return found;
}

DAEBUS_ACTION(admin_shutdown, "shutdown", .bp = &daebus_admin_bp)
{
    daebus_app *app = daebus_bus_request_app(req);
    const char *scope = str_field(payload, "scope");
    const char *target = str_field(payload, "instance_id");
    if (scope && strcmp(scope, "instance") != 0 && strcmp(scope, "all") != 0)
        return daebus_bus_reply_error(req, "scope must be \"instance\" or \"all\"");
    bool all = scope && strcmp(scope, "all") == 0;
    if (all && target)
        return daebus_bus_reply_error(req, "instance_id goes with scope \"instance\" only");
    const char *self = daebus_app_instance_id(app);
    bool here = !all && (!target || strcmp(target, self) == 0);
    if (!all && !here && !is_live_instance(app, target))
        return daebus_bus_reply_error(req, "Instance %s is not a live instance of this service",
                                      target);

    cJSON *out = cJSON_CreateObject();
    cJSON_AddBoolToObject(out, "shutdown_initiated", 1);
    cJSON_AddStringToObject(out, "scope", all ? "all" : "instance");
    cJSON_AddStringToObject(out, "instance_id", all ? self : here ? self : target);
    cJSON_AddNumberToObject(out, "timeout", shutdown_timeout(payload));
    if (!here) {
        /* Every replica (this one included) or the named one hears it. */
        int rc = publish_shutdown(req, payload, all ? "all" : target);
        if (rc < 0) {
            cJSON_Delete(out);
            return daebus_bus_reply_error(req, "Shutdown not sent (%s)", daebus_strerror(rc));
        }
        return daebus_bus_reply_take(req, out);
    }
    /* Answer first: the caller should not wait through the drain. */
    daebus_bus_reply_take(req, out);
    shut_down_here(app, payload, "over the bus");
    return 0;
}
