/* ws_client.c - WebSocket clients: the client object, the registry snapshots and the client API.
 *
 * A client is shared by its CivetWeb connection, the registry, the writers'
 * lists and any thread that looked it up; each holds a reference and the
 * last one frees it. Lookups copy what they need under the locks and call
 * user code (filters) with no framework lock held.
 */
#include "ws_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "clock.h"
#include "daebus/log.h"
#include "ws_cluster.h"
#include "ws_io.h"
#include "ws_message.h"

static const char *const reserved_keys[] = {
    "client_id", "connected_at",      "last_activity", "path",           "remote_address",
    "secure",    "messages_received", "messages_sent", "uptime_seconds", "idle_seconds",
};

/* ---- the client object ---- */

ws_client *daebus__ws_client_new(daebus_ws *ws, const struct mg_connection *conn,
                                 const struct mg_request_info *ri)
{
    ws_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    atomic_init(&c->refs, 1); /* the connection's reference */
    pthread_mutex_init(&c->lock, NULL);
    daebus__cond_init(&c->cond);
    c->ws = ws;
    c->conn = (struct mg_connection *)conn;
    c->fd = -1;
    c->state = WS_PENDING;
    c->path = strdup(ri->local_uri ? ri->local_uri : "/");
    snprintf(c->remote_addr, sizeof c->remote_addr, "%s", ri->remote_addr);
    c->remote_port = ri->remote_port;
    c->secure = ri->is_ssl != 0;
    c->connected_at = c->last_activity = daebus__now_wall();
    c->created_mono = c->last_seen_mono = c->last_ping_mono = daebus__now_mono();
    c->user_data = cJSON_CreateObject();
    if (!c->path || !c->user_data) {
        daebus__ws_client_unref(c);
        return NULL;
    }
    return c;
}

void daebus__ws_client_ref(ws_client *c)
{
    atomic_fetch_add(&c->refs, 1);
}

void daebus__ws_client_unref(ws_client *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    daebus__ws_queue_drop(c);
    ws_rate_free(&c->rate);
    cJSON_Delete(c->user_data);
    daebus__ws_frag_release(c);
    free(c->path);
    free(c->id);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

ws_client *daebus__ws_client_find(daebus_ws *ws, const char *id)
{
    if (!ws || !id)
        return NULL;
    pthread_mutex_lock(&ws->reg_lock);
    ws_client *c = ws_registry_find(ws->reg, id);
    if (c)
        daebus__ws_client_ref(c);
    pthread_mutex_unlock(&ws->reg_lock);
    return c;
}

void daebus__ws_client_set_state(ws_client *c, int state)
{
    pthread_mutex_lock(&c->ws->reg_lock);
    pthread_mutex_lock(&c->lock);
    c->state = state;
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_unlock(&c->ws->reg_lock);
}

/* ---- snapshots ---- */

static bool snap_keeps(const ws_client *c, int which)
{
    if (which == WS_SNAP_ALL)
        return true;
    return c->state == WS_OPEN || (which == WS_SNAP_CONNECTED && c->state == WS_CLOSING);
}

size_t daebus__ws_snapshot(daebus_ws *ws, ws_client ***out, int which)
{
    *out = NULL;
    pthread_mutex_lock(&ws->reg_lock);
    size_t n = ws_registry_count(ws->reg), k = 0;
    ws_client **cs = n ? malloc(n * sizeof *cs) : NULL;
    if (cs) {
        n = ws_registry_values(ws->reg, (void **)cs, n);
        for (size_t i = 0; i < n; i++) {
            if (snap_keeps(cs[i], which)) {
                daebus__ws_client_ref(cs[i]);
                cs[k++] = cs[i];
            }
        }
    }
    pthread_mutex_unlock(&ws->reg_lock);
    *out = cs;
    return k;
}

void daebus__ws_snapshot_release(ws_client **cs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        daebus__ws_client_unref(cs[i]);
    free(cs);
}

/* ---- metadata ---- */

cJSON *daebus__ws_client_fixed_metadata(const ws_client *c)
{
    cJSON *m = cJSON_CreateObject();
    if (!m)
        return NULL;
    cJSON_AddStringToObject(m, "client_id", c->id);
    cJSON_AddNumberToObject(m, "connected_at", c->connected_at);
    cJSON_AddStringToObject(m, "path", c->path ? c->path : "/");
    cJSON *ra = cJSON_AddArrayToObject(m, "remote_address");
    if (ra) {
        cJSON_AddItemToArray(ra, cJSON_CreateString(c->remote_addr));
        cJSON_AddItemToArray(ra, cJSON_CreateNumber(c->remote_port));
    }
    cJSON_AddBoolToObject(m, "secure", c->secure);
    return m;
}

static cJSON *metadata_locked(const ws_client *c, double now)
{
    cJSON *m = daebus__ws_client_fixed_metadata(c);
    if (!m)
        return NULL;
    cJSON_AddNumberToObject(m, "last_activity", c->last_activity);
    cJSON_AddNumberToObject(m, "messages_received", (double)c->msgs_in);
    cJSON_AddNumberToObject(m, "messages_sent", (double)c->msgs_out);
    cJSON_AddNumberToObject(m, "uptime_seconds", now - c->connected_at);
    cJSON_AddNumberToObject(m, "idle_seconds", now - c->last_activity);
    for (const cJSON *it = c->user_data ? c->user_data->child : NULL; it; it = it->next)
        cJSON_AddItemToObject(m, it->string, cJSON_Duplicate(it, true));
    return m;
}

cJSON *daebus__ws_client_metadata(ws_client *c)
{
    double now = daebus__now_wall();
    pthread_mutex_lock(&c->lock);
    cJSON *m = metadata_locked(c, now);
    pthread_mutex_unlock(&c->lock);
    return m;
}

/* ---- client API ---- */

static bool is_reserved(const char *key)
{
    for (size_t i = 0; i < sizeof reserved_keys / sizeof reserved_keys[0]; i++)
        if (strcmp(key, reserved_keys[i]) == 0)
            return true;
    return false;
}

int daebus_ws_set_client_data(daebus_ws *ws, const char *client_id, const char *key,
                              const cJSON *value)
{
    if (!ws || !client_id || !key || !key[0] || !value)
        return DAEBUS_EINVAL;
    if (is_reserved(key)) {
        daebus_log(DAEBUS_LOG_ERROR, "websocket",
                   "set_client_data: '%s' is a built-in metadata key; use another key", key);
        return DAEBUS_EINVAL;
    }
    int rc = daebus__ws_set_data_local(ws, client_id, key, value);
    if (rc == DAEBUS_ENOENT && ws->cluster)
        return daebus__ws_dir_set_data(ws, client_id, key, value, false);
    if (rc == 0 && ws->cluster)
        daebus__ws_dir_set_data(ws, client_id, key, value, true); /* Redis away: resync */
    return rc;
}

int daebus__ws_set_data_local(daebus_ws *ws, const char *client_id, const char *key,
                              const cJSON *value)
{
    ws_client *c = daebus__ws_client_find(ws, client_id);
    if (!c)
        return DAEBUS_ENOENT;
    cJSON *copy = cJSON_Duplicate(value, true);
    int rc = copy ? 0 : DAEBUS_ENOMEM;
    if (copy) {
        pthread_mutex_lock(&c->lock);
        if (cJSON_GetObjectItemCaseSensitive(c->user_data, key))
            cJSON_ReplaceItemInObjectCaseSensitive(c->user_data, key, copy);
        else
            cJSON_AddItemToObject(c->user_data, key, copy);
        pthread_mutex_unlock(&c->lock);
    }
    daebus__ws_client_unref(c);
    return rc;
}

cJSON *daebus_ws_get_client_data(daebus_ws *ws, const char *client_id, const char *key)
{
    if (!key)
        return NULL;
    ws_client *c = daebus__ws_client_find(ws, client_id);
    if (!c)
        return ws && client_id && ws->cluster ? daebus__ws_dir_get_data(ws, client_id, key) : NULL;
    pthread_mutex_lock(&c->lock);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->user_data, key);
    cJSON *copy = v ? cJSON_Duplicate(v, true) : NULL;
    pthread_mutex_unlock(&c->lock);
    daebus__ws_client_unref(c);
    return copy;
}

cJSON *daebus_ws_get_client_metadata(daebus_ws *ws, const char *client_id)
{
    ws_client *c = daebus__ws_client_find(ws, client_id);
    if (!c)
        return NULL;
    cJSON *m = daebus__ws_client_metadata(c);
    daebus__ws_client_unref(c);
    return m;
}

cJSON *daebus_ws_get_clients(daebus_ws *ws)
{
    if (!ws)
        return NULL;
    ws_client **cs;
    size_t n = daebus__ws_snapshot(ws, &cs, WS_SNAP_CONNECTED);
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(cs[i]->id));
    daebus__ws_snapshot_release(cs, n);
    return a;
}

size_t daebus_ws_get_client_count(daebus_ws *ws)
{
    if (!ws)
        return 0;
    size_t k = 0;
    pthread_mutex_lock(&ws->reg_lock);
    size_t n = ws_registry_count(ws->reg);
    ws_client **cs = n ? malloc(n * sizeof *cs) : NULL;
    if (cs) {
        n = ws_registry_values(ws->reg, (void **)cs, n);
        for (size_t i = 0; i < n; i++)
            k += snap_keeps(cs[i], WS_SNAP_CONNECTED);
    }
    pthread_mutex_unlock(&ws->reg_lock);
    free(cs);
    return k;
}

bool daebus_ws_is_client_connected(daebus_ws *ws, const char *client_id)
{
    if (!ws || !client_id)
        return false;
    pthread_mutex_lock(&ws->reg_lock);
    ws_client *c = ws_registry_find(ws->reg, client_id);
    bool r = c && snap_keeps(c, WS_SNAP_CONNECTED);
    pthread_mutex_unlock(&ws->reg_lock);
    if (!c && ws->cluster)
        return daebus__ws_dir_has(ws, client_id);
    return r;
}

cJSON *daebus_ws_get_clients_by_filter(daebus_ws *ws, daebus_ws_filter_fn *fn, void *user)
{
    if (!ws || !fn)
        return NULL;
    ws_client **cs;
    size_t n = daebus__ws_snapshot(ws, &cs, WS_SNAP_CONNECTED);
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *m = daebus__ws_client_metadata(cs[i]);
        if (m && fn(cs[i]->id, m, user))
            cJSON_AddItemToArray(a, cJSON_CreateString(cs[i]->id));
        cJSON_Delete(m);
    }
    daebus__ws_snapshot_release(cs, n);
    return a;
}
