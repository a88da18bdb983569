/* ws_shutdown.c - disconnecting clients and the graceful shutdown.
 *
 * A close starts by queueing a close frame behind what is queued already
 * (daebus__ws_begin_close); the maintenance thread shuts down the socket of a
 * peer that does not answer within close_timeout. The graceful shutdown
 * waits on the registry's condition variable, which every ended connection
 * signals, with deadlines on the monotonic clock.
 */
#include "ws_internal.h"

#include <string.h>

#include "clock.h"
#include "daebus/log.h"
#include "ws_client.h"
#include "ws_cluster.h"
#include "ws_io.h"

int daebus_ws_disconnect_client(daebus_ws *ws, const char *client_id, int code, const char *reason)
{
    if (!ws || !client_id)
        return DAEBUS_EINVAL;
    if (code == 0)
        code = 1000;
    if (!reason)
        reason = "Server closed connection";
    if (code < 1000 || code > 4999 || strlen(reason) > 123) {
        daebus_log(DAEBUS_LOG_ERROR, "websocket",
                   "disconnect_client: code must be 1000..4999 and the reason at most 123 bytes");
        return DAEBUS_EINVAL;
    }
    ws_client *c = daebus__ws_client_find(ws, client_id);
    if (!c)
        return ws->cluster ? daebus__ws_dir_disconnect(ws, client_id, code, reason) : DAEBUS_ENOENT;
    int rc = daebus__ws_begin_close(c, code, reason, WS_BY_SERVER);
    daebus__ws_client_unref(c);
    return rc;
}

int daebus__ws_disconnect_local(daebus_ws *ws, const char *id, int code, const char *reason)
{
    ws_client *c = daebus__ws_client_find(ws, id);
    if (!c)
        return DAEBUS_ENOENT;
    int rc =
        daebus__ws_begin_close(c, code, reason ? reason : "Server closed connection", WS_BY_SERVER);
    daebus__ws_client_unref(c);
    return rc;
}

int daebus_ws_disconnect_all_clients(daebus_ws *ws, int code, const char *reason)
{
    if (!ws)
        return DAEBUS_EINVAL;
    if (code == 0)
        code = 1000;
    if (!reason)
        reason = "Server shutting down";
    ws_client **cs;
    size_t n = daebus__ws_snapshot(ws, &cs, WS_SNAP_OPEN);
    int count = 0;
    for (size_t i = 0; i < n; i++)
        if (daebus__ws_begin_close(cs[i], code, reason, WS_BY_SERVER) == 0)
            count++;
    daebus__ws_snapshot_release(cs, n);
    return count;
}

/* Waits until no connection is left or the deadline passes.
 * Returns: the connections left. */
static int wait_empty(daebus_ws *ws, daebus__deadline d)
{
    pthread_mutex_lock(&ws->reg_lock);
    while (ws->nconn > 0 && !daebus__deadline_passed(d)) {
        /* In steps of 50 ms at most, as a safety net for a missed signal. */
        double left = daebus__deadline_left(d);
        daebus__cond_wait_for(&ws->reg_cond, &ws->reg_lock, left < 0.05 ? left : 0.05);
    }
    int left = ws->nconn;
    pthread_mutex_unlock(&ws->reg_lock);
    return left;
}

/* Tells every client the server is going away. Returns: how many were told. */
static int notify_shutdown(daebus_ws *ws, const cJSON *message)
{
    cJSON *def = NULL;
    if (!message) {
        def = cJSON_CreateObject();
        cJSON_AddStringToObject(def, "message", "Server is shutting down");
        cJSON_AddBoolToObject(def, "reconnect", true);
        message = def;
    }
    int n = daebus_ws_broadcast_to_all(ws, message, "server_shutdown");
    cJSON_Delete(def);
    return n > 0 ? n : 0;
}

int daebus_ws_graceful_shutdown(daebus_ws *ws, double timeout, const cJSON *message)
{
    if (!ws)
        return DAEBUS_EINVAL;
    if (!atomic_load(&ws->running)) {
        daebus_log(DAEBUS_LOG_WARNING, "websocket", "graceful_shutdown: not running");
        return DAEBUS_ESTATE;
    }
    atomic_store(&ws->refusing, 1);
    int n = notify_shutdown(ws, message);
    daebus_log(DAEBUS_LOG_INFO, "websocket",
               "graceful shutdown: notified %d clients, waiting up to %.1f s", n, timeout);
    if (timeout > 0)
        wait_empty(ws, daebus__deadline_in(timeout));
    daebus_ws_disconnect_all_clients(ws, 1001, "Server shutting down");
    int left = wait_empty(ws, daebus__deadline_in(ws->close_timeout + 0.5));
    if (left > 0) {
        /* Peers that ignored the close frame: drop their sockets. */
        ws_client **cs;
        size_t k = daebus__ws_snapshot(ws, &cs, WS_SNAP_CONNECTED);
        for (size_t i = 0; i < k; i++)
            daebus__ws_force_close(cs[i], WS_BY_SERVER);
        daebus__ws_snapshot_release(cs, k);
        left = wait_empty(ws, daebus__deadline_in(2.0));
    }
    if (left > 0)
        daebus_log(DAEBUS_LOG_WARNING, "websocket", "graceful shutdown: %d connections still open",
                   left);
    return left > 0 ? DAEBUS_ETIMEDOUT : 0;
}
