/* ws_component.c - the WebSocket component: options, life cycle, configuration, stats.
 *
 * The component plugs into the app through the ops table of component.h.
 * It shares the app's CivetWeb server (civet/civet_server.h, owned and started
 * by the HTTP component; same port), which it finds through the app: attach
 * reserves one CivetWeb worker per client, start registers the upgrade callbacks
 * (ws_conn.c) on the running server and starts the writer and maintenance
 * threads (ws_io.c), stop runs the graceful shutdown (ws_shutdown.c).
 */
#include "ws_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "civet_server.h"
#include "clock.h"
#include "daebus/log.h"
#include "textlist.h"
#include "ws_channel.h"
#include "ws_client.h"
#include "ws_cluster.h"
#include "ws_conn.h"
#include "ws_io.h"

#define DEFAULT_JSON_DEPTH 100
#define MAX_JSON_DEPTH     512
#define DEFAULT_MAX_PINGS  10

/* ---- options ---- */

static int ws_start(void *self);
static void ws_stop(void *self);
static void ws_destroy_op(void *self);
static int ws_attach_op(void *self, daebus_app *app);
static void ws_describe(void *self, char *buf, size_t len);

static const daebus__component_ops ws_ops = {
    .name = "websocket",
    .kind = DAEBUS__COMP_WEBSOCKET,
    .attach = ws_attach_op,
    .start = ws_start,
    .stop = ws_stop,
    .destroy = ws_destroy_op,
    .describe = ws_describe,
};

/* Returns: 0, or DAEBUS_EINVAL with err filled. */
static int check_options(const daebus_ws_options *o, daebus_error *err)
{
    if (o->max_clients < 0 || o->queue_max_messages < 0 || o->writer_threads < 0 ||
        o->rate_limit_max < 0 || o->rate_limit_window < 0 || o->rate_limit_disconnect_after < 0) {
        daebus_error_set(err, DAEBUS_EINVAL, "websocket options: negative limits are not allowed");
        return DAEBUS_EINVAL;
    }
    if (o->cluster < DAEBUS_WS_CLUSTER_AUTO || o->cluster > DAEBUS_WS_CLUSTER_ON) {
        daebus_error_set(err, DAEBUS_EINVAL,
                         "websocket options: cluster must be DAEBUS_WS_CLUSTER_AUTO, _OFF or _ON");
        return DAEBUS_EINVAL;
    }
    if (o->max_json_depth < 0 || o->max_json_depth > MAX_JSON_DEPTH) {
        daebus_error_set(err, DAEBUS_EINVAL,
                         "websocket options: max_json_depth must be 0..%d (parsing recurses on "
                         "CivetWeb's small worker stacks)",
                         MAX_JSON_DEPTH);
        return DAEBUS_EINVAL;
    }
    return 0;
}

/* The numeric options, zero meaning the default. */
static void apply_options(daebus_ws *ws, const daebus_ws_options *o)
{
    ws->max_clients = o->max_clients ? o->max_clients : 1024;
    ws->max_message_size = o->max_message_size ? o->max_message_size : (size_t)1 << 20;
    ws->queue_max_bytes = o->queue_max_bytes ? o->queue_max_bytes : (size_t)1 << 20;
    ws->queue_max_messages = o->queue_max_messages ? o->queue_max_messages : 1000;
    ws->ping_interval = o->ping_interval == 0 ? 25.0 : o->ping_interval;
    ws->idle_timeout = o->idle_timeout == 0 ? 60.0 : o->idle_timeout;
    ws->close_timeout = o->close_timeout > 0 ? o->close_timeout : 2.0;
    ws->shutdown_timeout = o->shutdown_timeout == 0 ? 1.0 : o->shutdown_timeout;
    ws->writer_threads = o->writer_threads ? o->writer_threads : 4;
    ws->send_buffer = o->send_buffer ? o->send_buffer : 256u * 1024u;
    ws->max_json_depth = o->max_json_depth ? o->max_json_depth : DEFAULT_JSON_DEPTH;
    ws->max_pings = o->max_pings_per_second == 0 ? DEFAULT_MAX_PINGS : o->max_pings_per_second;
    ws->id_gen = o->id_generator;
    ws->id_gen_user = o->id_generator_user;
    ws->rl_max = o->rate_limit_max;
    ws->rl_window = o->rate_limit_window > 0 ? o->rate_limit_window : 60.0;
    ws->rl_disconnect_after = o->rate_limit_disconnect_after;
    ws->cluster_mode = o->cluster;
}

static void init_locks(daebus_ws *ws)
{
    pthread_mutex_init(&ws->rl_lock, NULL);
    pthread_mutex_init(&ws->reg_lock, NULL);
    daebus__cond_init(&ws->reg_cond);
    pthread_mutex_init(&ws->wlock, NULL);
    daebus__cond_init(&ws->wcond);
    daebus__cond_init(&ws->mcond);
}

daebus_ws *daebus_ws_create(const daebus_ws_options *opts, daebus_error *err)
{
    daebus_ws_options o = DAEBUS_WS_OPTIONS_INIT;
    if (opts)
        o = *opts;
    if (check_options(&o, err))
        return NULL;
    daebus_ws *ws = calloc(1, sizeof *ws);
    if (!ws) {
        daebus_error_set(err, DAEBUS_ENOMEM, "websocket: out of memory");
        return NULL;
    }
    ws->paths = strdup(o.paths && o.paths[0] ? o.paths : "/,/ws");
    ws->reg = ws_registry_create();
    bool any_origin = !o.allowed_origins || daebus__list_has(o.allowed_origins, "*", 1, true);
    ws->allowed_origins = any_origin ? NULL : strdup(o.allowed_origins);
    if (!ws->paths || !ws->reg || (!any_origin && !ws->allowed_origins)) {
        free(ws->allowed_origins);
        free(ws->paths);
        ws_registry_destroy(ws->reg);
        free(ws);
        daebus_error_set(err, DAEBUS_ENOMEM, "websocket: out of memory");
        return NULL;
    }
    apply_options(ws, &o);
    init_locks(ws);
    ws->comp.ops = &ws_ops;
    ws->comp.self = ws;
    if (daebus__ws_channel_init(ws)) {
        ws_destroy_op(ws);
        daebus_error_set(err, DAEBUS_ENOMEM, "websocket: out of memory");
        return NULL;
    }
    if (daebus__ws_channel_auth_options(ws, &o, err)) {
        ws_destroy_op(ws);
        return NULL;
    }
    return ws;
}

static void ws_destroy_op(void *self)
{
    daebus_ws *ws = self;
    if (!ws)
        return;
    daebus__ws_cluster_free(ws);
    /* Entries left (never started, or stragglers) are freed with the table. */
    ws_client **cs;
    size_t n = daebus__ws_snapshot(ws, &cs, WS_SNAP_ALL);
    for (size_t i = 0; i < n; i++)
        daebus__ws_client_unref(cs[i]); /* the registry's reference */
    daebus__ws_snapshot_release(cs, n);
    ws_registry_destroy(ws->reg);
    free(ws->allowed_origins);
    free(ws->paths);
    free(ws->departed);
    free(ws->ch_subscribe);
    free(ws->ch_history);
    free(ws->ch_publish);
    free(ws->ch_presence);
    daebus__ws_channel_free(ws);
    pthread_mutex_destroy(&ws->rl_lock);
    pthread_mutex_destroy(&ws->reg_lock);
    pthread_cond_destroy(&ws->reg_cond);
    pthread_mutex_destroy(&ws->wlock);
    pthread_cond_destroy(&ws->wcond);
    pthread_cond_destroy(&ws->mcond);
    free(ws);
}

void daebus_ws_destroy(daebus_ws *ws)
{
    if (ws && ws->comp.app) {
        daebus_log(DAEBUS_LOG_ERROR, "websocket",
                   "destroy: the app owns an attached component; destroy the app instead");
        return;
    }
    ws_destroy_op(ws);
}

/* ---- attach and configuration ---- */

static int ws_attach_op(void *self, daebus_app *app)
{
    daebus_ws *ws = self;
    daebus__civet_server *server = daebus__app_civet_server(app);
    if (!server)
        return DAEBUS_EORDER;
    int rc = daebus__civet_server_reserve_threads(server, ws->max_clients);
    if (rc) {
        daebus_log(DAEBUS_LOG_ERROR, "websocket",
                   "attach: could not reserve %d CivetWeb threads (%s); attach before running",
                   ws->max_clients, daebus_strerror(rc));
        return rc;
    }
    ws->app = app;
    return 0;
}

int daebus_ws_attach(daebus_ws *ws, daebus_app *app)
{
    if (!ws) {
        daebus_log(DAEBUS_LOG_ERROR, "websocket",
                   "attach: the component is NULL (did daebus_ws_create fail?)");
        return DAEBUS_EINVAL;
    }
    /* Takes ws on every path: a failed attach destroys it. */
    return daebus__app_attach(app, &ws->comp);
}

int daebus_ws_set_client_id_generator(daebus_ws *ws, daebus_ws_id_fn *fn, void *user)
{
    if (!ws)
        return DAEBUS_EINVAL;
    if (atomic_load(&ws->running)) {
        daebus_log(DAEBUS_LOG_ERROR, "websocket",
                   "set_client_id_generator: set it before daebus_app_run()");
        return DAEBUS_ESTATE;
    }
    ws->id_gen = fn;
    ws->id_gen_user = user;
    return 0;
}

int daebus_ws_enable_rate_limiting(daebus_ws *ws, int max_messages, double window_seconds)
{
    if (!ws)
        return DAEBUS_EINVAL;
    pthread_mutex_lock(&ws->rl_lock);
    ws->rl_max = max_messages > 0 ? max_messages : 60;
    ws->rl_window = window_seconds > 0 ? window_seconds : 60.0;
    pthread_mutex_unlock(&ws->rl_lock);
    return 0;
}

void daebus_ws_disable_rate_limiting(daebus_ws *ws)
{
    if (!ws)
        return;
    pthread_mutex_lock(&ws->rl_lock);
    ws->rl_max = 0;
    pthread_mutex_unlock(&ws->rl_lock);
}

/* ---- start and stop ---- */

static int ws_start(void *self)
{
    daebus_ws *ws = self;
    const daebus__handler *items = NULL;
    ws->nsocket_handlers = daebus__app_handlers(ws->app, DAEBUS_HANDLER_SOCKET, &items);
    ws->socket_handlers = items;
    size_t n = daebus__app_handlers(ws->app, DAEBUS_HANDLER_SOCKET_CONNECT, &items);
    ws->on_connect = n ? items[n - 1].desc : NULL;
    n = daebus__app_handlers(ws->app, DAEBUS_HANDLER_SOCKET_DISCONNECT, &items);
    ws->on_disconnect = n ? items[n - 1].desc : NULL;

    const daebus__civet_server *server = daebus__app_civet_server(ws->app);
    struct mg_context *ctx = daebus__civet_server_context(server);
    if (!ctx) {
        daebus_log(DAEBUS_LOG_ERROR, "websocket",
                   "start: the HTTP server is not running; attach HTTP before WebSocket");
        return DAEBUS_ESTATE;
    }
    atomic_store(&ws->refusing, 0);
    atomic_store(&ws->running, 1);
    int rc = daebus__ws_io_start(ws);
    if (rc) {
        atomic_store(&ws->running, 0);
        return rc;
    }
    rc = daebus__ws_cluster_start(ws);
    if (rc) {
        atomic_store(&ws->running, 0);
        daebus__ws_io_stop(ws);
        return rc;
    }
    daebus__ws_conn_install(ws, ctx);
    daebus_log(DAEBUS_LOG_INFO, "websocket",
               "serving WebSocket on port %d, paths %s (upgrades elsewhere: 404; max %d clients, "
               "%zu socket handlers)",
               daebus__civet_server_port(server), ws->paths, ws->max_clients, ws->nsocket_handlers);
    return 0;
}

static void ws_stop(void *self)
{
    daebus_ws *ws = self;
    if (ws->shutdown_timeout >= 0 && atomic_load(&ws->running))
        daebus_ws_graceful_shutdown(ws, ws->shutdown_timeout, NULL);
    atomic_store(&ws->refusing, 1);
    atomic_store(&ws->running, 0);
    daebus__ws_cluster_stop(ws);
    daebus__ws_io_stop(ws);
}

static void ws_describe(void *self, char *buf, size_t len)
{
    daebus_ws *ws = self;
    snprintf(buf, len, "websocket %s", ws->paths);
}

/* ---- stats ---- */

int daebus_ws_get_stats(daebus_ws *ws, daebus_ws_stats *out)
{
    if (!ws || !out)
        return DAEBUS_EINVAL;
    memset(out, 0, sizeof *out);
    out->clients = daebus_ws_get_client_count(ws);
    out->clients_high_water = atomic_load(&ws->st_clients_hw);
    out->connects = atomic_load(&ws->st_connects);
    out->rejected_upgrades = atomic_load(&ws->st_rejected);
    out->disconnects_client = atomic_load(&ws->st_disc[WS_BY_CLIENT]);
    out->disconnects_server = atomic_load(&ws->st_disc[WS_BY_SERVER]);
    out->disconnects_idle = atomic_load(&ws->st_disc[WS_BY_IDLE]);
    out->disconnects_slow = atomic_load(&ws->st_disc[WS_BY_SLOW]);
    out->disconnects_protocol = atomic_load(&ws->st_disc[WS_BY_PROTOCOL]);
    out->disconnects = out->disconnects_client + out->disconnects_server + out->disconnects_idle +
                       out->disconnects_slow + out->disconnects_protocol;
    out->messages_in = atomic_load(&ws->st_in);
    out->messages_out = atomic_load(&ws->st_out);
    out->bytes_in = atomic_load(&ws->st_bytes_in);
    out->bytes_out = atomic_load(&ws->st_bytes_out);
    out->handler_errors = atomic_load(&ws->st_handler_errors);
    out->rate_limited = atomic_load(&ws->st_rate_limited);
    out->queue_depth_high_water = atomic_load(&ws->st_qhw);
    out->cluster_published = atomic_load(&ws->st_cluster_pub);
    out->cluster_received = atomic_load(&ws->st_cluster_recv);
    out->cluster_errors = atomic_load(&ws->st_cluster_err);
    out->cluster_reaped = atomic_load(&ws->st_cluster_reaped);
    return 0;
}
