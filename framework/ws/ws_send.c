/* ws_send.c - sending to clients: one client, all, a list, a filter.
 *
 * A message is serialised once into a shared frame and queued for each
 * recipient (ws_io.c); no framework lock is held while filters run or while
 * sockets are written. A frame larger than queue_max_bytes is refused before
 * any recipient sees it. In cluster mode the recipients of other replicas get
 * the same frame through Redis (ws_dir_ops.c); nothing here touches Redis
 * when every recipient is local, except broadcast_to_all's one PUBLISH, which
 * is queued and sent by the cluster's publisher thread (ws_cluster_pub.c):
 * the calling thread does not wait for it.
 */
#include "ws_internal.h"

#include "ws_client.h"
#include "ws_cluster.h"
#include "ws_io.h"
#include "ws_parse.h"
#include "ws_request.h"

#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

/* {"type": type, "data": data}, printed straight into its frame (a buffer
 * of this call's own). */
static ws_frame *make_frame(const cJSON *data, const char *type)
{
    daebus__json_out b;
    daebus__ws_frame_out_begin(&b);
    daebus__ws_envelope_into(&b, type, data, NULL, -1);
    return daebus__ws_frame_out_end(&b, MG_WEBSOCKET_OPCODE_TEXT);
}

/* Is f over the outbound queue limit? Then it is logged and freed: no
 * client could ever take it, and none is dropped for it. */
static bool too_big(daebus_ws *ws, ws_frame *f, const char *what)
{
    if (f->len <= ws->queue_max_bytes)
        return false;
    daebus__ws_log_too_big(ws, what, "its recipients", f->len);
    daebus__ws_frame_unref(f);
    return true;
}

int daebus__ws_send_local(daebus_ws *ws, const char *id, ws_frame *f)
{
    ws_client *c = daebus__ws_client_find(ws, id);
    if (!c)
        return DAEBUS_ENOENT;
    int rc = daebus__ws_enqueue(c, f, false);
    daebus__ws_client_unref(c);
    return rc;
}

int daebus__ws_broadcast_local(daebus_ws *ws, ws_frame *f)
{
    ws_client **cs;
    size_t n = daebus__ws_snapshot(ws, &cs, WS_SNAP_OPEN);
    int count = 0;
    for (size_t i = 0; i < n; i++)
        count += daebus__ws_enqueue(cs[i], f, false) == 0;
    daebus__ws_snapshot_release(cs, n);
    return count;
}

/* send_to_client for a client that is not local. */
static int send_remote(daebus_ws *ws, const char *client_id, const cJSON *data, const char *type)
{
    ws_frame *f = make_frame(data, type ? type : "message");
    if (!f)
        return DAEBUS_ENOMEM;
    if (too_big(ws, f, "send_to_client"))
        return DAEBUS_ETOOBIG;
    bool done = false;
    int rc = daebus__ws_dir_send(ws, &client_id, 1, &done, f, NULL);
    daebus__ws_frame_unref(f);
    return rc < 0 ? rc : rc ? 0 : DAEBUS_ENOENT;
}

/* Queues f (NULL: allocation failed) for the local client c; both
 * references are dropped. what names the call in the too-big log line.
 * Returns: as daebus__ws_enqueue, or DAEBUS_ENOMEM. */
static int enqueue_for(daebus_ws *ws, ws_client *c, ws_frame *f, const char *what)
{
    int rc = f ? daebus__ws_enqueue(c, f, false) : DAEBUS_ENOMEM;
    if (rc == DAEBUS_ETOOBIG)
        daebus__ws_log_too_big(ws, what, c->id, f->len);
    daebus__ws_frame_unref(f);
    daebus__ws_client_unref(c);
    return rc;
}

int daebus_ws_send_to_client(daebus_ws *ws, const char *client_id, const cJSON *data,
                             const char *type)
{
    if (!ws || !client_id)
        return DAEBUS_EINVAL;
    ws_client *c = daebus__ws_client_find(ws, client_id);
    if (!c)
        return ws->cluster ? send_remote(ws, client_id, data, type) : DAEBUS_ENOENT;
    return enqueue_for(ws, c, make_frame(data, type ? type : "message"), "send_to_client");
}

int daebus_ws_send_frame(daebus_ws *ws, const char *client_id, const cJSON *frame)
{
    if (!ws || !client_id || !cJSON_IsObject(frame) ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(frame, "type")))
        return DAEBUS_EINVAL;
    ws_client *c = daebus__ws_client_find(ws, client_id);
    if (!c)
        return DAEBUS_ENOENT;
    /* The framework's printer: an escaped NUL read as C0 80 goes back as
     * \u0000 (cJSON's would send the two bytes: not UTF-8). */
    size_t n = 0;
    char *s = daebus_json_print(frame, &n);
    return enqueue_for(ws, c, s ? daebus__ws_frame_text_take(s, n) : NULL, "send_frame");
}

/* Queues {"type": type, "data": data} for every open client fn accepts
 * (fn NULL: every one). Returns: as daebus_ws_broadcast_to_filter. */
static int broadcast(daebus_ws *ws, daebus_ws_filter_fn *fn, void *user, const cJSON *data,
                     const char *type, const char *what)
{
    ws_frame *f = make_frame(data, type ? type : "broadcast");
    if (!f)
        return DAEBUS_ENOMEM;
    if (too_big(ws, f, what))
        return DAEBUS_ETOOBIG;
    ws_client **cs;
    size_t n = daebus__ws_snapshot(ws, &cs, WS_SNAP_OPEN);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *m = fn ? daebus__ws_client_metadata(cs[i]) : NULL;
        if (m && ws->cluster) /* as the other replicas' clients have it */
            cJSON_AddStringToObject(m, "instance_id", daebus_app_instance_id(ws->app));
        bool wanted = !fn || (m && fn(cs[i]->id, m, user));
        cJSON_Delete(m);
        if (wanted && daebus__ws_enqueue(cs[i], f, false) == 0)
            count++;
    }
    daebus__ws_snapshot_release(cs, n);
    /* The other replicas: everyone (one PUBLISH), or those fn accepts. */
    int rc = 0;
    if (ws->cluster && !fn) {
        cJSON *h = cJSON_CreateObject();
        cJSON_AddStringToObject(h, "k", "all");
        rc = h ? daebus__ws_cluster_publish_async(ws->cluster, ws->cluster->chan_all, h, f)
               : DAEBUS_ENOMEM;
        cJSON_Delete(h);
    } else if (ws->cluster) {
        rc = daebus__ws_dir_send_filter(ws, fn, user, f);
        count += rc > 0 ? rc : 0;
    }
    daebus__ws_frame_unref(f);
    return rc < 0 ? rc : count;
}

int daebus_ws_broadcast_to_all(daebus_ws *ws, const cJSON *data, const char *type)
{
    if (!ws)
        return DAEBUS_EINVAL;
    return broadcast(ws, NULL, NULL, data, type, "broadcast_to_all");
}

int daebus_ws_broadcast_to_filter(daebus_ws *ws, daebus_ws_filter_fn *fn, void *user,
                                  const cJSON *data, const char *type)
{
    if (!ws || !fn)
        return DAEBUS_EINVAL;
    return broadcast(ws, fn, user, data, type, "broadcast_to_filter");
}

int daebus_ws_broadcast_to_clients(daebus_ws *ws, const char *const *client_ids, size_t n,
                                   const cJSON *data, const char *type, bool *results)
{
    if (!ws || (n && !client_ids))
        return DAEBUS_EINVAL;
    ws_frame *f = make_frame(data, type ? type : "message");
    if (!f)
        return DAEBUS_ENOMEM;
    if (too_big(ws, f, "broadcast_to_clients")) {
        for (size_t i = 0; results && i < n; i++)
            results[i] = false;
        return DAEBUS_ETOOBIG;
    }
    int count = 0;
    bool *local = ws->cluster && n ? calloc(n, sizeof *local) : NULL;
    for (size_t i = 0; i < n; i++) {
        ws_client *c = daebus__ws_client_find(ws, client_ids[i]);
        bool ok = c && daebus__ws_enqueue(c, f, false) == 0;
        if (c)
            daebus__ws_client_unref(c);
        if (local)
            local[i] = c != NULL;
        if (results)
            results[i] = ok;
        count += ok;
    }
    int rc = ws->cluster && n && !local ? DAEBUS_ENOMEM : 0;
    if (local) {
        rc = daebus__ws_dir_send(ws, client_ids, n, local, f, results);
        count += rc > 0 ? rc : 0;
        free(local);
    }
    daebus__ws_frame_unref(f);
    return rc < 0 ? rc : count;
}
