/* channels_service.c - a WebSocket service with channels for test_channels.c:
 * HTTP + WebSocket (channels on) + bus (unless CHAN_NO_BUS), service "chan_test".
 *
 * Clients pick their id with "?id=NAME" and may add "&role=vip" (stored as
 * user data "role"). Rules: subscribe "news:*,open:*,order:*", broadcast
 * "open:*,order:*"; the hook refuses "open:secret" ("secret is closed") and
 * allows "vip:*" (both operations) to clients whose role is "vip". A SOCKET
 * handler named "subscribe" exists to show that it is not reached.
 * POST /op {"op": ...} drives the channel API on this replica:
 *   publish {channel, data}             daebus_ws_channel_publish -> rc
 *   publish_many {channel, n, tag}      n publishes of {"seq": i, "p": tag}, i = 1..n -> rc
 *   subscribe / unsubscribe {id, channel} -> rc
 *   subscribers {channel}               -> rc, ids
 *   channels {id}                       -> rc, channels
 *   rate {max}                          enable (max > 0) or disable rate limiting
 *   presence {channel}                  daebus_ws_channel_presence -> rc, members
 * Presence (docs/channels/presence.md) is on for "room:*"; "&name=N" stores
 * the user data "name" (the presence info).
 * Every answer also says "cluster": daebus_ws_is_cluster() (cluster mode started).
 * Heartbeat: CHAN_HEARTBEAT seconds (default 1). History: channels matching
 * CHAN_HISTORY (e.g. "hist:*") keep CHAN_HIST_COUNT messages (0 = default);
 * clients may subscribe to "hist:*". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/daebus.h"

static daebus_app *app;
static daebus_ws *ws;

static char *id_from_query(const daebus_ws_conn_info *info, void *user)
{
    (void)user;
    const char *q = daebus_ws_conn_query(info);
    if (!q || strncmp(q, "id=", 3) != 0)
        return NULL;
    size_t n = strcspn(q + 3, "&");
    return strndup(q + 3, n);
}

static bool authorize(daebus_ws *w, const daebus_ws_auth_request *q, char *reason,
                      size_t reason_len, void *user)
{
    (void)w;
    (void)user;
    if (strcmp(q->name, "open:secret") == 0) {
        snprintf(reason, reason_len, "secret is closed");
        return false;
    }
    if (strncmp(q->name, "vip:", 4) == 0) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(q->metadata, "role");
        if (cJSON_IsString(role) && strcmp(role->valuestring, "vip") == 0)
            return true;
        snprintf(reason, reason_len, "vip channels are for vip clients");
        return false;
    }
    return q->rules_allow;
}

static const char *str(const cJSON *body, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double num(const cJSON *body, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static int publish_many(const cJSON *body)
{
    int n = (int)num(body, "n"), rc = 0;
    for (int i = 1; i <= n && rc == 0; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "seq", i);
        cJSON_AddStringToObject(d, "p", str(body, "tag"));
        rc = daebus_ws_channel_publish(ws, str(body, "channel"), d);
        cJSON_Delete(d);
    }
    return rc;
}

ROUTE(op_route, "/op", .methods = DAEBUS_POST)
{
    const cJSON *body = daebus_http_request_payload(req);
    const char *op = str(body, "op");
    const char *ch = str(body, "channel"), *id = str(body, "id");
    cJSON *out = cJSON_CreateObject(), *list = NULL;
    int rc = DAEBUS_EINVAL;
    if (!strcmp(op, "publish")) {
        rc = daebus_ws_channel_publish(ws, ch, cJSON_GetObjectItemCaseSensitive(body, "data"));
    } else if (!strcmp(op, "publish_many")) {
        rc = publish_many(body);
    } else if (!strcmp(op, "subscribe")) {
        rc = daebus_ws_channel_subscribe(ws, id, ch);
    } else if (!strcmp(op, "unsubscribe")) {
        rc = daebus_ws_channel_unsubscribe(ws, id, ch);
    } else if (!strcmp(op, "subscribers")) {
        rc = daebus_ws_channel_subscribers(ws, ch, &list);
    } else if (!strcmp(op, "channels")) {
        rc = daebus_ws_channel_client_channels(ws, id, &list);
    } else if (!strcmp(op, "presence")) {
        rc = daebus_ws_channel_presence(ws, ch, &list);
    } else if (!strcmp(op, "rate")) {
        rc = 0;
        if (num(body, "max") > 0)
            rc = daebus_ws_enable_rate_limiting(ws, (int)num(body, "max"), 60);
        else
            daebus_ws_disable_rate_limiting(ws);
    }
    cJSON_AddNumberToObject(out, "rc", rc);
    cJSON_AddBoolToObject(out, "cluster", daebus_ws_is_cluster(ws));
    if (list)
        cJSON_AddItemToObject(out, "list", list);
    return daebus_http_send_json_take(res, 200, out);
}

SOCKET_CONNECT(on_connect)
{
    const char *q = daebus_ws_request_query(req);
    if (q && strstr(q, "role=vip")) {
        cJSON *v = cJSON_CreateString("vip");
        daebus_ws_set_client_data(daebus_ws_request_ws(req), client_id, "role", v);
        cJSON_Delete(v);
    }
    const char *name = q ? strstr(q, "name=") : NULL;
    if (name) {
        char *n = strndup(name + 5, strcspn(name + 5, "&"));
        cJSON *v = cJSON_CreateString(n);
        daebus_ws_set_client_data(daebus_ws_request_ws(req), client_id, "name", v);
        cJSON_Delete(v);
        free(n);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "client_id", client_id);
    return o;
}

/* Never reached: the built-in "subscribe" frame comes first. */
SOCKET(shadowed_subscribe, "subscribe")
{
    (void)req;
    (void)client_id;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "shadow", true);
    return o;
}

int main(int argc, char **argv)
{
    daebus_app_options ao = DAEBUS_APP_OPTIONS_INIT;
    ao.service = "chan_test";
    app = daebus_app_create(&ao, NULL);
    if (!app)
        return 1;
    daebus_app_configure(app, argc, argv);
    daebus_http_attach(daebus_http_create(NULL, NULL), app);
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.max_clients = 64;
    wo.id_generator = id_from_query;
    wo.ping_interval = -1;
    wo.idle_timeout = -1;
    wo.channels = true;
    wo.channel_subscribe = "news:*,open:*,order:*,hist:*,room:*,quiet:*";
    wo.channel_presence = "room:*";
    /* history (test_channels_recovery.c): CHAN_HISTORY patterns, CHAN_HIST_COUNT */
    wo.channel_history = getenv("CHAN_HISTORY");
    wo.channel_history_count =
        getenv("CHAN_HIST_COUNT") ? (unsigned)atoi(getenv("CHAN_HIST_COUNT")) : 0;
    wo.channel_publish = "open:*,order:*";
    wo.authorize = authorize;
    ws = daebus_ws_create(&wo, NULL);
    daebus_ws_attach(ws, app);
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    const char *hb = getenv("CHAN_HEARTBEAT");
    bo.heartbeat = hb ? atof(hb) : 1.0;
    if (!getenv("CHAN_NO_BUS"))
        daebus_bus_attach(daebus_bus_create(&bo, NULL), app);
    int status = daebus_app_run(app);
    daebus_app_destroy(app);
    return status;
}
