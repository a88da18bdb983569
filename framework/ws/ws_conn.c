/* ws_conn.c - WebSocket connections: the upgrade decision, the ready and close callbacks.
 *
 * For each upgrade request CivetWeb calls, on the connection's own worker thread:
 *   connect (before the 101 answer): path, state, key and Origin checks,
 *       capacity, client id, registry entry (PENDING), SOCKET_CONNECT
 *       handler, which may reject (each refusal answered with an HTTP status,
 *       civet_ws.c);
 *   ready: OPEN, socket lookup, connect reply scheduled;
 *   data: ws_message.c;
 *   close: waits for the writer, GONE, SOCKET_DISCONNECT (metadata still
 *       readable), registry removal, capacity slot freed.
 * An upgrade past max_clients is completed only to be closed with 1013
 * (civet_ws.c); it has no client entry.
 */
#include "ws_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "civet_ws.h"
#include "daebus/log.h"
#include "textlist.h"
#include "utf8.h"
#include "uuid.h"
#include "ws_channel.h"
#include "ws_client.h"
#include "ws_cluster.h"
#include "ws_io.h"
#include "ws_message.h"
#include "ws_parse.h"
#include "ws_request.h"

/* ---- capacity ---- */

/* Frees a capacity slot (reg_lock held). */
static void release_slot_locked(daebus_ws *ws)
{
    ws->nconn--;
    pthread_cond_broadcast(&ws->reg_cond);
}

static void release_slot(daebus_ws *ws)
{
    pthread_mutex_lock(&ws->reg_lock);
    release_slot_locked(ws);
    pthread_mutex_unlock(&ws->reg_lock);
}

/* Refuses an upgrade with an HTTP answer. Returns: 1 (the connect callback's
 * "refused"). */
static int refuse(daebus_ws *ws, const struct mg_connection *conn, int status, const char *text,
                  const char *message)
{
    atomic_fetch_add(&ws->st_rejected, 1);
    daebus__civet_ws_refuse(conn, status, text, message);
    return 1;
}

/* ---- connect: stages ---- */

/* Path, component state, key and Origin. Returns: 0, or 1 when refused. */
static int check_request(daebus_ws *ws, const struct mg_connection *conn,
                         const struct mg_request_info *ri)
{
    /* Exact match: the handler on "/" gets every path (civet_ws.c). */
    const char *path = ri->local_uri;
    if (!path || !daebus__list_has(ws->paths, path, strlen(path), false)) {
        daebus_log(DAEBUS_LOG_WARNING, "websocket",
                   "refusing an upgrade from %s: '%.*s' is not a WebSocket path (paths: %s)",
                   ri->remote_addr, daebus__utf8_prec(path, 200), path ? path : "", ws->paths);
        return refuse(ws, conn, 404, "Not Found", "Not a WebSocket path");
    }
    if (!atomic_load(&ws->running) || atomic_load(&ws->refusing)) {
        /* Not running and not refusing: HTTP is up, this component not yet. */
        return refuse(ws, conn, 503, "Service Unavailable",
                      atomic_load(&ws->refusing) ? "Server shutting down" : "Server starting");
    }
    const char *key = mg_get_header(conn, "Sec-WebSocket-Key");
    if (!key || strlen(key) > 60)
        return refuse(ws, conn, 400, "Bad Request", "Malformed Sec-WebSocket-Key");
    const char *origin = mg_get_header(conn, "Origin");
    if (origin && ws->allowed_origins &&
        !daebus__list_has(ws->allowed_origins, origin, strlen(origin), true)) {
        daebus_log(DAEBUS_LOG_WARNING, "websocket",
                   "refusing an upgrade from %s: Origin '%.*s' is not in allowed_origins",
                   ri->remote_addr, daebus__utf8_prec(origin, 100), origin);
        return refuse(ws, conn, 403, "Forbidden", "Origin not allowed");
    }
    return 0;
}

enum { SLOT_TAKEN, SLOT_FULL_CLOSE, SLOT_REFUSED };

/* Takes a capacity slot. Past max_clients the upgrade is completed only to
 * be closed with 1013, which a browser can see (an HTTP refusal reaches its
 * script as a bare 1006); a few at a time, so that a flood cannot tie up the
 * HTTP workers; past those, 503. */
static int take_slot(daebus_ws *ws, const struct mg_connection *conn,
                     const struct mg_request_info *ri)
{
    pthread_mutex_lock(&ws->reg_lock);
    if (ws->nconn < ws->max_clients) {
        ws->nconn++;
        pthread_mutex_unlock(&ws->reg_lock);
        return SLOT_TAKEN;
    }
    int full_close = ws->nfull < DAEBUS_WS_FULL_CLOSERS;
    if (full_close)
        ws->nfull++;
    pthread_mutex_unlock(&ws->reg_lock);
    atomic_fetch_add(&ws->st_rejected, 1);
    daebus_log(DAEBUS_LOG_WARNING, "websocket",
               "refusing an upgrade from %s: %d clients connected (max_clients)", ri->remote_addr,
               ws->max_clients);
    if (full_close) {
        daebus__civet_ws_accept_full(conn);
        return SLOT_FULL_CLOSE;
    }
    daebus__civet_ws_refuse(conn, 503, "Service Unavailable", "Too many connections");
    return SLOT_REFUSED;
}

static char *default_id(void)
{
    char buf[DAEBUS__UUID_LEN + 1];
    daebus__uuid4(buf);
    char *id = malloc(5 + 37);
    if (id)
        snprintf(id, 5 + 37, "user_%s", buf);
    return id;
}

/* The id of the custom generator, or NULL (none, or it gave nothing). */
static char *custom_id(daebus_ws *ws, const daebus_ws_conn_info *info)
{
    if (!ws->id_gen)
        return NULL;
    char *id = ws->id_gen(info, ws->id_gen_user);
    if (id && !id[0]) {
        free(id);
        id = NULL;
    }
    if (!id)
        daebus_log(DAEBUS_LOG_WARNING, "websocket",
                   "client id generator returned nothing for %s: using the default id",
                   info->ri->remote_addr);
    return id;
}

/* Takes c's registry entry back (not yet announced to anyone). */
static void unregister_client(daebus_ws *ws, ws_client *c)
{
    pthread_mutex_lock(&ws->reg_lock);
    ws_registry_remove(ws->reg, c->id);
    pthread_mutex_unlock(&ws->reg_lock);
    daebus__ws_client_unref(c); /* the registry's reference */
}

/* Gives c its id and its registry entry (and, in cluster mode, its
 * directory entry: the id is then unique in the cluster): a default id that
 * collides is drawn again (twice), a custom one is not.
 * Returns: 0, DAEBUS_EEXIST, DAEBUS_ENOMEM. */
static int register_client(daebus_ws *ws, ws_client *c, const daebus_ws_conn_info *info)
{
    c->id = custom_id(ws, info);
    int custom = c->id != NULL;
    int rc = DAEBUS_ENOMEM;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (!c->id)
            c->id = default_id();
        if (!c->id)
            break;
        pthread_mutex_lock(&ws->reg_lock);
        rc = ws_registry_insert(ws->reg, c->id, c);
        if (rc == 0)
            daebus__ws_client_ref(c); /* the registry's reference */
        pthread_mutex_unlock(&ws->reg_lock);
        if (rc == 0 && (rc = daebus__ws_dir_announce(ws, c)) != 0)
            unregister_client(ws, c); /* in use on another replica */
        if (rc != DAEBUS_EEXIST || custom)
            break;
        free(c->id);
        c->id = NULL;
    }
    return rc;
}

/* The client entry of an upgrade that took a slot. Returns: it, or NULL
 * when refused (the slot is given back). */
static ws_client *new_client(daebus_ws *ws, const struct mg_connection *conn,
                             const daebus_ws_conn_info *info)
{
    const struct mg_request_info *ri = info->ri;
    ws_client *c = daebus__ws_client_new(ws, conn, ri);
    int rc = c ? register_client(ws, c, info) : DAEBUS_ENOMEM;
    if (rc == 0)
        return c;
    if (rc == DAEBUS_EEXIST)
        daebus_log(DAEBUS_LOG_WARNING, "websocket",
                   "refusing an upgrade from %s: client id '%s' is in use", ri->remote_addr, c->id);
    daebus__ws_client_unref(c);
    release_slot(ws);
    if (rc == DAEBUS_EEXIST)
        refuse(ws, conn, 409, "Conflict", "Client id in use");
    else
        refuse(ws, conn, 503, "Service Unavailable", "Out of memory");
    return NULL;
}

/* Undoes an accepted entry the SOCKET_CONNECT handler rejected. Returns: 1. */
static int reject_client(daebus_ws *ws, ws_client *c, const struct mg_connection *conn,
                         char *reason)
{
    daebus__civet_ws_set_subprotocol(conn, NULL); /* it points into c */
    mg_set_user_connection_data(conn, NULL);
    /* Its subscriptions go while its id is still its own (no subscription after). */
    daebus__ws_client_set_state(c, WS_GONE);
    daebus__ws_channel_client_gone(ws, c);
    pthread_mutex_lock(&ws->reg_lock);
    ws_registry_remove(ws->reg, c->id);
    pthread_mutex_unlock(&ws->reg_lock);
    daebus__ws_dir_remove(ws, c);
    daebus_log(DAEBUS_LOG_INFO, "websocket", "connection %s from %s rejected: %s", c->id,
               c->remote_addr, reason ? reason : "Connection rejected");
    daebus__ws_client_unref(c); /* registry */
    daebus__ws_client_unref(c); /* connection */
    release_slot(ws);
    refuse(ws, conn, 403, "Forbidden", reason ? reason : "Connection rejected");
    free(reason);
    return 1;
}

/* SOCKET_CONNECT: may reject, may store client data, may answer.
 * Returns: what the connect callback returns (0 accepted, 1 rejected). */
static int run_connect_handler(daebus_ws *ws, ws_client *c, const struct mg_connection *conn,
                               const daebus_ws_conn_info *info)
{
    cJSON *reply = NULL;
    if (ws->on_connect) {
        cJSON *empty = cJSON_CreateObject();
        daebus_ws_request req = {.ws = ws, .c = c, .type = "connect", .data = empty, .info = info};
        reply = ws->on_connect->fn.socket(&req, c->id, ws->on_connect->opts.user);
        int rejected = req.rejected || cJSON_IsFalse(reply);
        char *reason = rejected && req.reject_reason ? strdup(req.reject_reason) : NULL;
        if (rejected || req.failed) {
            cJSON_Delete(reply);
            reply = NULL;
        }
        if (!rejected && req.failed) {
            atomic_fetch_add(&ws->st_handler_errors, 1);
            size_t n = 0;
            char *s = daebus__ws_handler_error_envelope(req.fail_msg, NULL, &n);
            if (s)
                daebus__ws_send_text_take(c, s, n);
        }
        daebus__ws_request_clear(&req);
        cJSON_Delete(empty);
        if (rejected)
            return reject_client(ws, c, conn, reason);
    }
    c->accepted = 1;
    if (reply) {
        size_t n = 0;
        char *s = daebus__ws_envelope("response", reply, NULL, &n);
        cJSON_Delete(reply);
        if (s)
            daebus__ws_send_text_take(c, s, n);
    }
    return 0;
}

/* ---- the callbacks ---- */

static int on_connect(const struct mg_connection *conn, void *cbdata)
{
    daebus_ws *ws = cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    /* Whatever happens next, no subprotocol is left over from the worker's
     * previous connection (it may point into that connection's freed client). */
    daebus__civet_ws_set_subprotocol(conn, NULL);
    if (check_request(ws, conn, ri))
        return 1;
    int slot = take_slot(ws, conn, ri);
    if (slot != SLOT_TAKEN)
        return slot == SLOT_FULL_CLOSE ? 0 : 1;
    daebus_ws_conn_info info = {conn, ri};
    ws_client *c = new_client(ws, conn, &info);
    if (!c)
        return 1;
    daebus__civet_ws_choose_subprotocol(conn, c->subproto, sizeof c->subproto);
    mg_set_user_connection_data(conn, c);
    return run_connect_handler(ws, c, conn, &info);
}

static void on_ready(struct mg_connection *conn, void *cbdata)
{
    daebus_ws *ws = cbdata;
    ws_client *c = mg_get_user_connection_data(conn);
    if (daebus__civet_ws_is_full(conn)) {
        char payload[125];
        size_t n = daebus__ws_close_payload(1013, "Server full", payload);
        int fd = daebus__ws_peer_fd(ws, conn);
        daebus__civet_ws_close_full(conn, fd, payload, n, ws->close_timeout);
        return;
    }
    if (!c)
        return;
    daebus__ws_find_fd(c);
    daebus__ws_client_set_state(c, WS_OPEN);
    pthread_mutex_lock(&ws->reg_lock);
    uint64_t open = (uint64_t)ws->nconn;
    pthread_mutex_unlock(&ws->reg_lock);
    atomic_fetch_add(&ws->st_connects, 1);
    daebus__ws_stat_max(&ws->st_clients_hw, open);
    daebus_log(DAEBUS_LOG_DEBUG, "websocket", "client %s connected from %s:%d (%s)", c->id,
               c->remote_addr, c->remote_port, c->path);
    daebus__ws_schedule(c);
}

/* Marks c's connection closed once no writer is in it. Returns: the peer's
 * close code that still needs our answer (0: none), and *reason the WS_BY_*. */
static int close_claim(ws_client *c, int *reason)
{
    pthread_mutex_lock(&c->lock);
    c->conn_closed = 1;
    while (c->writing)
        pthread_cond_wait(&c->cond, &c->lock);
    int echo = c->peer_close_code > 0 && !c->close_sent ? c->peer_close_code : 0;
    *reason = c->close_queued ? c->end_reason : WS_BY_CLIENT;
    pthread_mutex_unlock(&c->lock);
    return echo;
}

static void run_disconnect_handler(daebus_ws *ws, ws_client *c)
{
    if (!c->accepted || !ws->on_disconnect)
        return;
    cJSON *empty = cJSON_CreateObject();
    daebus_ws_request req = {.ws = ws, .c = c, .type = "disconnect", .data = empty};
    cJSON *r = ws->on_disconnect->fn.socket(&req, c->id, ws->on_disconnect->opts.user);
    cJSON_Delete(r);
    daebus__ws_request_clear(&req);
    cJSON_Delete(empty);
}

/* The cluster's "client left" path: out of the directory, then the
 * departed handlers (with the metadata it had). */
static void run_departed(daebus_ws *ws, ws_client *c)
{
    cJSON *m = c->accepted && ws->ndeparted ? daebus__ws_client_metadata(c) : NULL;
    if (m)
        cJSON_AddStringToObject(m, "instance_id", daebus_app_instance_id(ws->app));
    daebus__ws_dir_remove(ws, c);
    if (c->accepted && ws->ndeparted)
        daebus__ws_departed_run(ws, c->id, m, false);
    cJSON_Delete(m);
}

static void on_close(const struct mg_connection *conn, void *cbdata)
{
    daebus_ws *ws = cbdata;
    ws_client *c = mg_get_user_connection_data(conn);
    daebus__civet_ws_set_subprotocol(conn, NULL); /* it may point into c, freed below */
    if (daebus__civet_ws_is_full(conn)) {
        daebus__civet_ws_full_done(conn);
        pthread_mutex_lock(&ws->reg_lock);
        ws->nfull--;
        pthread_mutex_unlock(&ws->reg_lock);
        return;
    }
    if (!c)
        return;
    mg_set_user_connection_data(conn, NULL);
    int reason;
    int code = close_claim(c, &reason);
    if (code) {
        /* Our answer: the peer's code, 1000 when it gave none, 1002 when malformed. */
        char payload[125];
        size_t n = daebus__ws_close_payload(code == 1005 ? 1000 : code, "", payload);
        daebus__civet_ws_echo_close(conn, payload, n);
    }
    daebus__ws_release_fd(c);
    daebus__ws_client_set_state(c, WS_GONE);
    atomic_fetch_add(&ws->st_disc[reason], 1);
    daebus_log(DAEBUS_LOG_DEBUG, "websocket", "client %s disconnected", c->id);
    run_disconnect_handler(ws, c);
    daebus__ws_channel_client_gone(ws, c);
    run_departed(ws, c);
    /* The slot goes with the registry entry, under one lock: once the client
     * count says a client is gone, its slot is free for the next upgrade. */
    pthread_mutex_lock(&ws->reg_lock);
    if (ws_registry_find(ws->reg, c->id) == c)
        ws_registry_remove(ws->reg, c->id);
    release_slot_locked(ws);
    pthread_mutex_unlock(&ws->reg_lock);
    daebus__ws_client_unref(c); /* registry */
    daebus__ws_client_unref(c); /* connection */
}

void daebus__ws_conn_install(daebus_ws *ws, struct mg_context *ctx)
{
    daebus__civet_ws_install(ctx, on_connect, on_ready, daebus__ws_on_data, on_close, ws);
}
