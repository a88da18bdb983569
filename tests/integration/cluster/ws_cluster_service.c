/* ws_cluster_service.c - a WebSocket service for the cross-replica tests
 * (test_ws_cluster*.c): HTTP + WebSocket + bus, service "wsc_test".
 *
 * A client picks its id with "?id=NAME" on the upgrade URL (custom id
 * generator). POST /op with a JSON body {"op": ...} drives one call of the
 * WebSocket API on this replica and answers what it returned:
 *   send {ids, seq, kind}      send_to_client per id (type "t", data {seq, kind})
 *   all {seq}                  broadcast_to_all
 *   burst {n, id}              broadcast_to_all n times (kind "b", seq 1..n), then
 *                              send_to_client id (kind "bd", seq n + 1); answers
 *                              rc (the last non-negative rc or the first error)
 *                              and seconds (how long the calls took)
 *   clients {ids, seq}         broadcast_to_clients
 *   filter {key, value, seq}   broadcast_to_filter (user data key == value)
 *   disconnect {id, code}      disconnect_client
 *   set {id, key, value}       set_client_data;  get {id, key}: get_client_data
 *   view                       cluster_client_count + cluster_clients + local count
 *   meta {id}                  cluster_client_metadata; local_meta {id}: the local one
 *   by_filter {key, value}     cluster_clients_by_filter
 *   connected {id}             is_client_connected
 *   stats                      the ws stats; departed: the departed calls seen here
 * Heartbeat: WSC_HEARTBEAT seconds (default 0.2); WSC_NO_BUS set: no bus (one
 * process, no cluster mode); --port and --redis as usual. */
#include <pthread.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/daebus.h"

static daebus_app *app;
static daebus_ws *ws;
static pthread_mutex_t dep_lock = PTHREAD_MUTEX_INITIALIZER;
static cJSON *departed_log;

static char *id_from_query(const daebus_ws_conn_info *info, void *user)
{
    (void)user;
    const char *q = daebus_ws_conn_query(info);
    if (!q || strncmp(q, "id=", 3) != 0)
        return NULL;
    return strdup(q + 3);
}

static void on_departed(daebus_ws *w, const char *id, const cJSON *meta, bool died, void *user)
{
    (void)w;
    (void)user;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "id", id);
    cJSON_AddBoolToObject(e, "died", died);
    const cJSON *inst = cJSON_GetObjectItemCaseSensitive(meta, "instance_id");
    cJSON_AddStringToObject(e, "instance_id", cJSON_IsString(inst) ? inst->valuestring : "");
    pthread_mutex_lock(&dep_lock);
    cJSON_AddItemToArray(departed_log, e);
    pthread_mutex_unlock(&dep_lock);
}

typedef struct match {
    const char *key, *value;
} match;

static bool by_data(const char *id, const cJSON *meta, void *user)
{
    (void)id;
    const match *m = user;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, m->key);
    return cJSON_IsString(v) && strcmp(v->valuestring, m->value) == 0;
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

static cJSON *payload(const cJSON *body, const char *kind)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "seq", num(body, "seq"));
    cJSON_AddStringToObject(d, "kind", kind);
    return d;
}

/* The ids of body's "ids" array (borrowed strings) in a malloc'd array. */
static const char **ids_of(const cJSON *body, size_t *n)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(body, "ids");
    *n = (size_t)cJSON_GetArraySize(a);
    const char **ids = calloc(*n ? *n : 1, sizeof *ids);
    for (size_t i = 0; ids && i < *n; i++)
        ids[i] = cJSON_GetArrayItem(a, (int)i)->valuestring;
    return ids;
}

static void op_send(const cJSON *body, cJSON *out)
{
    size_t n;
    const char **ids = ids_of(body, &n);
    cJSON *d = payload(body, str(body, "kind"));
    cJSON *rcs = cJSON_AddArrayToObject(out, "rcs");
    for (size_t i = 0; ids && i < n; i++)
        cJSON_AddItemToArray(rcs, cJSON_CreateNumber(daebus_ws_send_to_client(ws, ids[i], d, "t")));
    cJSON_Delete(d);
    free(ids);
}

static void op_clients(const cJSON *body, cJSON *out)
{
    size_t n;
    const char **ids = ids_of(body, &n);
    bool *res = calloc(n ? n : 1, sizeof *res);
    cJSON *d = payload(body, "c");
    cJSON_AddNumberToObject(out, "rc", daebus_ws_broadcast_to_clients(ws, ids, n, d, "t", res));
    cJSON *r = cJSON_AddArrayToObject(out, "results");
    for (size_t i = 0; res && i < n; i++)
        cJSON_AddItemToArray(r, cJSON_CreateBool(res[i]));
    cJSON_Delete(d);
    free(res);
    free(ids);
}

/* broadcast_to_all n times then a direct send from this one thread: the
 * replicas' clients must see them in this order. */
static void op_burst(const cJSON *body, cJSON *out)
{
    int n = (int)num(body, "n"), rc = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 1; i <= n && rc >= 0; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "seq", i);
        cJSON_AddStringToObject(d, "kind", "b");
        rc = daebus_ws_broadcast_to_all(ws, d, "t");
        cJSON_Delete(d);
    }
    const char *id = str(body, "id");
    if (rc >= 0 && id) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "seq", n + 1);
        cJSON_AddStringToObject(d, "kind", "bd");
        rc = daebus_ws_send_to_client(ws, id, d, "t");
        cJSON_Delete(d);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cJSON_AddNumberToObject(out, "rc", rc);
    cJSON_AddNumberToObject(out, "seconds",
                            (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
}

static void op_view(cJSON *out)
{
    size_t count = 0;
    cJSON *ids = NULL;
    int rc = daebus_ws_cluster_client_count(ws, &count);
    int rc2 = daebus_ws_cluster_clients(ws, &ids);
    cJSON_AddNumberToObject(out, "rc", rc ? rc : rc2);
    cJSON_AddNumberToObject(out, "count", (double)count);
    cJSON_AddNumberToObject(out, "local_count", (double)daebus_ws_get_client_count(ws));
    cJSON_AddItemToObject(out, "clients", ids ? ids : cJSON_CreateArray());
}

static void op_stats(cJSON *out)
{
    daebus_ws_stats st;
    daebus_ws_get_stats(ws, &st);
    cJSON_AddNumberToObject(out, "cluster_published", (double)st.cluster_published);
    cJSON_AddNumberToObject(out, "cluster_received", (double)st.cluster_received);
    cJSON_AddNumberToObject(out, "cluster_errors", (double)st.cluster_errors);
    cJSON_AddNumberToObject(out, "cluster_reaped", (double)st.cluster_reaped);
    cJSON_AddBoolToObject(out, "cluster", daebus_ws_is_cluster(ws));
    cJSON *inst = NULL; /* the bus starts after the ws component: > 0 = all started */
    cJSON_AddNumberToObject(out, "instances", daebus_app_instances(app, &inst));
    cJSON_Delete(inst);
    pthread_mutex_lock(&dep_lock);
    cJSON_AddItemToObject(out, "departed", cJSON_Duplicate(departed_log, true));
    pthread_mutex_unlock(&dep_lock);
}

static void op_data(const char *op, const cJSON *body, cJSON *out)
{
    const char *id = str(body, "id");
    if (!strcmp(op, "set")) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "value");
        cJSON_AddNumberToObject(out, "rc", daebus_ws_set_client_data(ws, id, str(body, "key"), v));
    } else if (!strcmp(op, "get")) {
        cJSON *v = daebus_ws_get_client_data(ws, id, str(body, "key"));
        cJSON_AddItemToObject(out, "value", v ? v : cJSON_CreateNull());
    } else if (!strcmp(op, "meta")) {
        cJSON *m = NULL;
        cJSON_AddNumberToObject(out, "rc", daebus_ws_cluster_client_metadata(ws, id, &m));
        cJSON_AddItemToObject(out, "meta", m ? m : cJSON_CreateNull());
    } else if (!strcmp(op, "local_meta")) {
        cJSON *m = daebus_ws_get_client_metadata(ws, id);
        cJSON_AddItemToObject(out, "meta", m ? m : cJSON_CreateNull());
    } else if (!strcmp(op, "connected")) {
        cJSON_AddBoolToObject(out, "connected", daebus_ws_is_client_connected(ws, id));
    }
}

ROUTE(op_route, "/op", .methods = DAEBUS_POST)
{
    const cJSON *body = daebus_http_request_payload(req);
    const char *op = str(body, "op");
    cJSON *out = cJSON_CreateObject();
    match m = {str(body, "key"), str(body, "value")};
    if (!strcmp(op, "send")) {
        op_send(body, out);
    } else if (!strcmp(op, "all")) {
        cJSON *d = payload(body, "a");
        cJSON_AddNumberToObject(out, "rc", daebus_ws_broadcast_to_all(ws, d, "t"));
        cJSON_Delete(d);
    } else if (!strcmp(op, "burst")) {
        op_burst(body, out);
    } else if (!strcmp(op, "clients")) {
        op_clients(body, out);
    } else if (!strcmp(op, "filter")) {
        cJSON *d = payload(body, "f");
        cJSON_AddNumberToObject(out, "rc", daebus_ws_broadcast_to_filter(ws, by_data, &m, d, "t"));
        cJSON_Delete(d);
    } else if (!strcmp(op, "disconnect")) {
        cJSON_AddNumberToObject(
            out, "rc",
            daebus_ws_disconnect_client(ws, str(body, "id"), (int)num(body, "code"), NULL));
    } else if (!strcmp(op, "view")) {
        op_view(out);
    } else if (!strcmp(op, "by_filter")) {
        cJSON *ids = NULL;
        cJSON_AddNumberToObject(out, "rc",
                                daebus_ws_cluster_clients_by_filter(ws, by_data, &m, &ids));
        cJSON_AddItemToObject(out, "ids", ids ? ids : cJSON_CreateArray());
    } else if (!strcmp(op, "stats")) {
        op_stats(out);
    } else {
        op_data(op, body, out);
    }
    return daebus_http_send_json_take(res, 200, out);
}

SOCKET_CONNECT(on_connect)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "connected");
    cJSON_AddStringToObject(o, "client_id", client_id);
    return o;
}

int main(int argc, char **argv)
{
    departed_log = cJSON_CreateArray();
    daebus_app_options ao = DAEBUS_APP_OPTIONS_INIT;
    ao.service = "wsc_test";
    app = daebus_app_create(&ao, NULL);
    if (!app)
        return 1;
    daebus_app_configure(app, argc, argv);
    daebus_http_attach(daebus_http_create(NULL, NULL), app);
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.max_clients = 400;
    wo.id_generator = id_from_query;
    wo.ping_interval = -1;
    wo.idle_timeout = -1;
    ws = daebus_ws_create(&wo, NULL);
    daebus_ws_on_client_departed(ws, on_departed, NULL);
    daebus_ws_attach(ws, app);
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    const char *hb = getenv("WSC_HEARTBEAT");
    bo.heartbeat = hb ? atof(hb) : 0.2;
    if (!getenv("WSC_NO_BUS")) /* one process: no bus, no cluster mode */
        daebus_bus_attach(daebus_bus_create(&bo, NULL), app);
    int status = daebus_app_run(app);
    daebus_app_destroy(app);
    cJSON_Delete(departed_log);
    return status;
}
