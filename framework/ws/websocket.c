/* websocket.c - WebSocket component: CivetWeb upgrade handlers, message dispatch, client registry
 * API.
 *
 * The component registers CivetWeb WebSocket handlers on the HTTP
 * component's running server (same port). For each connection:
 *   connect callback (before the 101 answer): capacity check, client id,
 *       registry entry (PENDING), SOCKET_CONNECT handler, which may reject
 *       (we answer 403 ourselves: CivetWeb sends nothing when refused);
 *   ready callback: OPEN, socket lookup, connect reply queued;
 *   data callback: control frames, reassembly, size and UTF-8 checks, rate
 *       limit, envelope parsing, SOCKET(type) handler, reply queued;
 *   close callback: waits for the writer, GONE, SOCKET_DISCONNECT (metadata
 *       still readable), registry removal.
 * Outbound frames, writers and the heartbeat live in ws_io.c; the pure
 * parsing helpers in ws_parse.c; the id table and rate limiter in
 * ws_registry.c.
 */
#define _GNU_SOURCE
#include "ws_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <uuid/uuid.h>

#include <civetweb.h>

#include "daebus/log.h"
#include "http_internal.h"
#include "http_parse.h"
#include "ws_parse.h"
#include "utf8.h"

#define DEFAULT_JSON_DEPTH 100
#define MAX_JSON_DEPTH     512
#define DEFAULT_MAX_PINGS  10

/* CivetWeb user data of a connection accepted past max_clients only to be
 * closed with 1013: it has no client entry. */
static char full_mark;
#define FULL_MARK ((void *)&full_mark)

struct daebus_ws_conn_info {
    const struct mg_connection *conn;
    const struct mg_request_info *ri;
};

struct daebus_ws_request {
    daebus_ws *ws;
    ws_client *c;
    const char *type;
    const cJSON *data;
    const cJSON *message;
    const cJSON *rid;
    const daebus_ws_conn_info *info; /* connect handler only */
    int failed;
    char *fail_msg;
    int rejected;
    char *reject_reason;
};

static const char *const reserved_keys[] = {
    "client_id", "connected_at",      "last_activity", "path",           "remote_address",
    "secure",    "messages_received", "messages_sent", "uptime_seconds", "idle_seconds",
};

/* ---- small helpers ---- */

static ws_client *find_ref(daebus_ws *ws, const char *id)
{
    if (!ws || !id)
        return NULL;
    pthread_mutex_lock(&ws->reg_lock);
    ws_client *c = ws_registry_find(ws->reg, id);
    if (c)
        ws__client_ref(c);
    pthread_mutex_unlock(&ws->reg_lock);
    return c;
}

static void set_state(ws_client *c, int state)
{
    pthread_mutex_lock(&c->ws->reg_lock);
    pthread_mutex_lock(&c->lock);
    c->state = state;
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_unlock(&c->ws->reg_lock);
}

static int send_text_take(ws_client *c, char *text, size_t len)
{
    ws_frame *f = ws__frame_text_take(text, len);
    if (!f)
        return DAEBUS_ENOMEM;
    int rc = ws__enqueue(c, f, false);
    ws__frame_unref(f);
    return rc;
}

#define BINARY_NOT_JSON "Binary frames must hold UTF-8 JSON: send JSON text frames"

/* A protocol error answering a client message; rid (borrowed, may be NULL) is
 * the message's request_id. */
static void send_error(ws_client *c, const char *message, double retry, const cJSON *rid)
{
    size_t len = 0;
    char *s = ws_error_envelope_rid(message, retry, rid, &len);
    if (s)
        send_text_take(c, s, len);
}

/* As send_error() for a message that was not parsed: its request_id is
 * read from the text when it can be. */
static void send_error_scan(ws_client *c, const char *message, double retry, const char *buf,
                            size_t len)
{
    cJSON *rid = ws_scan_request_id(buf, len);
    send_error(c, message, retry, rid);
    cJSON_Delete(rid);
}

static char *default_id(void)
{
    uuid_t u;
    char buf[37];
    uuid_generate_random(u);
    uuid_unparse_lower(u, buf);
    char *id = malloc(5 + 37);
    if (id)
        snprintf(id, 5 + 37, "user_%s", buf);
    return id;
}

/* A frame of len bytes refused because it is over queue_max_bytes. */
static void log_too_big(daebus_ws *ws, const char *what, const char *to, size_t len)
{
    uint64_t dropped = 0;
    if (ws__log_allow(ws, WS_LOG_TOOBIG, &dropped))
        daebus_log(DAEBUS_LOG_WARNING, "websocket",
                   "%s to %s not sent: its frame (%zu bytes) is larger than the outbound queue "
                   "limit (queue_max_bytes %zu); recipients stay connected (%llu more such lines "
                   "suppressed)",
                   what, to, len, ws->queue_max_bytes, (unsigned long long)dropped);
}

/* ---- options, life cycle ---- */

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

daebus_ws *daebus_ws_create(const daebus_ws_options *opts, daebus_error *err)
{
    daebus_ws_options o = DAEBUS_WS_OPTIONS_INIT;
    if (opts)
        o = *opts;
    if (o.max_clients < 0 || o.queue_max_messages < 0 || o.writer_threads < 0 ||
        o.rate_limit_max < 0 || o.rate_limit_window < 0 || o.rate_limit_disconnect_after < 0) {
        daebus_error_set(err, DAEBUS_EINVAL, "websocket options: negative limits are not allowed");
        return NULL;
    }
    if (o.max_json_depth < 0 || o.max_json_depth > MAX_JSON_DEPTH) {
        daebus_error_set(err, DAEBUS_EINVAL,
                         "websocket options: max_json_depth must be 0..%d (parsing recurses on "
                         "CivetWeb's small worker stacks)",
                         MAX_JSON_DEPTH);
        return NULL;
    }
    daebus_ws *ws = calloc(1, sizeof *ws);
    if (!ws) {
        daebus_error_set(err, DAEBUS_ENOMEM, "websocket: out of memory");
        return NULL;
    }
    ws->paths = strdup(o.paths && o.paths[0] ? o.paths : "/,/ws");
    ws->reg = ws_registry_create();
    bool any_origin = !o.allowed_origins || daebus__http_list_has(o.allowed_origins, "*", 1);
    ws->allowed_origins = any_origin ? NULL : strdup(o.allowed_origins);
    if (!ws->paths || !ws->reg || (!any_origin && !ws->allowed_origins)) {
        free(ws->allowed_origins);
        free(ws->paths);
        ws_registry_destroy(ws->reg);
        free(ws);
        daebus_error_set(err, DAEBUS_ENOMEM, "websocket: out of memory");
        return NULL;
    }
    ws->max_clients = o.max_clients ? o.max_clients : 1024;
    ws->max_message_size = o.max_message_size ? o.max_message_size : (size_t)1 << 20;
    ws->queue_max_bytes = o.queue_max_bytes ? o.queue_max_bytes : (size_t)1 << 20;
    ws->queue_max_messages = o.queue_max_messages ? o.queue_max_messages : 1000;
    ws->ping_interval = o.ping_interval == 0 ? 25.0 : o.ping_interval;
    ws->idle_timeout = o.idle_timeout == 0 ? 60.0 : o.idle_timeout;
    ws->close_timeout = o.close_timeout > 0 ? o.close_timeout : 2.0;
    ws->shutdown_timeout = o.shutdown_timeout == 0 ? 1.0 : o.shutdown_timeout;
    ws->writer_threads = o.writer_threads ? o.writer_threads : 4;
    ws->send_buffer = o.send_buffer ? o.send_buffer : 256u * 1024u;
    ws->max_json_depth = o.max_json_depth ? o.max_json_depth : DEFAULT_JSON_DEPTH;
    ws->max_pings = o.max_pings_per_second == 0 ? DEFAULT_MAX_PINGS : o.max_pings_per_second;
    ws->id_gen = o.id_generator;
    ws->id_gen_user = o.id_generator_user;
    ws->rl_max = o.rate_limit_max;
    ws->rl_window = o.rate_limit_window > 0 ? o.rate_limit_window : 60.0;
    ws->rl_disconnect_after = o.rate_limit_disconnect_after;
    pthread_mutex_init(&ws->rl_lock, NULL);
    pthread_mutex_init(&ws->reg_lock, NULL);
    pthread_cond_init(&ws->reg_cond, NULL);
    pthread_mutex_init(&ws->wlock, NULL);
    pthread_cond_init(&ws->wcond, NULL);
    pthread_cond_init(&ws->mcond, NULL);
    pthread_mutex_init(&ws->fd_lock, NULL);
    ws->comp.ops = &ws_ops;
    ws->comp.self = ws;
    return ws;
}

static void ws_destroy_op(void *self)
{
    daebus_ws *ws = self;
    if (!ws)
        return;
    /* Entries left (never started, or stragglers) are freed with the table. */
    size_t n = ws_registry_count(ws->reg);
    if (n) {
        ws_client **cs = malloc(n * sizeof *cs);
        if (cs) {
            n = ws_registry_values(ws->reg, (void **)cs, n);
            for (size_t i = 0; i < n; i++)
                ws__client_unref(cs[i]);
            free(cs);
        }
    }
    ws_registry_destroy(ws->reg);
    free(ws->fd_owned);
    free(ws->allowed_origins);
    free(ws->paths);
    pthread_mutex_destroy(&ws->rl_lock);
    pthread_mutex_destroy(&ws->reg_lock);
    pthread_cond_destroy(&ws->reg_cond);
    pthread_mutex_destroy(&ws->wlock);
    pthread_cond_destroy(&ws->wcond);
    pthread_cond_destroy(&ws->mcond);
    pthread_mutex_destroy(&ws->fd_lock);
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

static int ws_attach_op(void *self, daebus_app *app)
{
    daebus_ws *ws = self;
    daebus_http *http = daebus_app_http(app);
    if (!http)
        return DAEBUS_EORDER;
    int rc = daebus__http_reserve_threads(http, ws->max_clients);
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

/* ---- handler context ---- */

const char *daebus_ws_request_type(const daebus_ws_request *req)
{
    return req ? req->type : NULL;
}
const cJSON *daebus_ws_request_data(const daebus_ws_request *req)
{
    return req ? req->data : NULL;
}
const cJSON *daebus_ws_request_message(const daebus_ws_request *req)
{
    return req ? req->message : NULL;
}
const cJSON *daebus_ws_request_request_id(const daebus_ws_request *req)
{
    return req ? req->rid : NULL;
}
const char *daebus_ws_request_client_id(const daebus_ws_request *req)
{
    return req ? req->c->id : NULL;
}
daebus_ws *daebus_ws_request_ws(const daebus_ws_request *req)
{
    return req ? req->ws : NULL;
}
daebus_app *daebus_ws_request_app(const daebus_ws_request *req)
{
    return req ? req->ws->app : NULL;
}
const char *daebus_ws_request_path(const daebus_ws_request *req)
{
    return req ? req->c->path : NULL;
}
const char *daebus_ws_request_header(const daebus_ws_request *req, const char *name)
{
    return req && req->info && name ? mg_get_header(req->info->conn, name) : NULL;
}
const char *daebus_ws_request_query(const daebus_ws_request *req)
{
    return req && req->info ? req->info->ri->query_string : NULL;
}

cJSON *daebus_ws_request_fail(daebus_ws_request *req, const char *fmt, ...)
{
    if (!req)
        return NULL;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    daebus__utf8_vsnprintf(buf, sizeof buf, fmt ? fmt : "Handler failed", ap);
    va_end(ap);
    free(req->fail_msg);
    req->fail_msg = strdup(buf);
    req->failed = 1;
    return NULL;
}

cJSON *daebus_ws_request_reject(daebus_ws_request *req, const char *reason)
{
    if (!req)
        return NULL;
    free(req->reject_reason);
    req->reject_reason = strdup(reason ? reason : "Connection rejected");
    req->rejected = 1;
    return NULL;
}

int daebus_ws_request_send(daebus_ws_request *req, const cJSON *data, const char *type)
{
    if (!req)
        return DAEBUS_EINVAL;
    size_t len = 0;
    char *s = ws_envelope(type ? type : "message", data, NULL, &len);
    if (!s)
        return DAEBUS_ENOMEM;
    int rc = send_text_take(req->c, s, len);
    if (rc == DAEBUS_ETOOBIG)
        log_too_big(req->ws, "request_send", req->c->id, len);
    return rc;
}

/* ---- connection info for id generators ---- */

const char *daebus_ws_conn_remote_address(const daebus_ws_conn_info *info)
{
    return info ? info->ri->remote_addr : NULL;
}
int daebus_ws_conn_remote_port(const daebus_ws_conn_info *info)
{
    return info ? info->ri->remote_port : -1;
}
const char *daebus_ws_conn_path(const daebus_ws_conn_info *info)
{
    return info ? info->ri->local_uri : NULL;
}
const char *daebus_ws_conn_query(const daebus_ws_conn_info *info)
{
    return info ? info->ri->query_string : NULL;
}
const char *daebus_ws_conn_header(const daebus_ws_conn_info *info, const char *name)
{
    return info && name ? mg_get_header(info->conn, name) : NULL;
}

/* ---- metadata ---- */

static cJSON *metadata_locked(const ws_client *c, double now)
{
    cJSON *m = cJSON_CreateObject();
    if (!m)
        return NULL;
    cJSON_AddStringToObject(m, "client_id", c->id);
    cJSON_AddNumberToObject(m, "connected_at", c->connected_at);
    cJSON_AddNumberToObject(m, "last_activity", c->last_activity);
    cJSON_AddStringToObject(m, "path", c->path ? c->path : "/");
    cJSON *ra = cJSON_AddArrayToObject(m, "remote_address");
    if (ra) {
        cJSON_AddItemToArray(ra, cJSON_CreateString(c->remote_addr));
        cJSON_AddItemToArray(ra, cJSON_CreateNumber(c->remote_port));
    }
    cJSON_AddBoolToObject(m, "secure", c->secure);
    cJSON_AddNumberToObject(m, "messages_received", (double)c->msgs_in);
    cJSON_AddNumberToObject(m, "messages_sent", (double)c->msgs_out);
    cJSON_AddNumberToObject(m, "uptime_seconds", now - c->connected_at);
    cJSON_AddNumberToObject(m, "idle_seconds", now - c->last_activity);
    for (const cJSON *it = c->user_data ? c->user_data->child : NULL; it; it = it->next)
        cJSON_AddItemToObject(m, it->string, cJSON_Duplicate(it, true));
    return m;
}

static cJSON *client_metadata(ws_client *c)
{
    double now = ws__wall();
    pthread_mutex_lock(&c->lock);
    cJSON *m = metadata_locked(c, now);
    pthread_mutex_unlock(&c->lock);
    return m;
}

cJSON *daebus_ws_request_metadata(const daebus_ws_request *req)
{
    return req ? client_metadata(req->c) : NULL;
}

/* ---- handler dispatch ---- */

static const daebus_handler_desc *find_handler(daebus_ws *ws, const char *type)
{
    /* Later registrations win: search from the end. */
    for (size_t i = ws->nsocket_handlers; i-- > 0;)
        if (ws->socket_handlers[i].key && strcmp(ws->socket_handlers[i].key, type) == 0)
            return ws->socket_handlers[i].desc;
    return NULL;
}

static void req_free(daebus_ws_request *req)
{
    free(req->fail_msg);
    free(req->reject_reason);
}

/* One UTF-8 message (a text frame, or a binary frame holding UTF-8). */
static void run_message(daebus_ws *ws, ws_client *c, const char *buf, size_t len, bool binary)
{
    ws_message m;
    /* CivetWeb workers have small stacks (100 KiB in Debian's build) and cJSON
     * recurses: refuse deep nesting before parsing. */
    if (!ws_json_depth_ok(buf, len, ws->max_json_depth)) {
        char msg[64];
        snprintf(msg, sizeof msg, "JSON nested too deeply (max %d levels)", ws->max_json_depth);
        send_error_scan(c, msg, -1, buf, len);
        return;
    }
    ws_parse_result pr = ws_parse_message(buf, len, &m);
    if (pr == WS_PARSE_INVALID_JSON) {
        send_error_scan(c, binary ? BINARY_NOT_JSON : "Invalid JSON", -1, buf, len);
        return;
    }
    if (pr == WS_PARSE_NOT_OBJECT) {
        send_error(c, "Message must be a JSON object", -1, NULL);
        return;
    }
    if (pr == WS_PARSE_NO_TYPE) {
        send_error(c, "No message type provided", -1, m.request_id);
        ws_message_free(&m);
        return;
    }
    const daebus_handler_desc *d = find_handler(ws, m.type);
    if (!d) {
        char msg[300];
        snprintf(msg, sizeof msg, "No handler found for message type '%.*s'",
                 daebus__utf8_prec(m.type, 200), m.type);
        send_error(c, msg, -1, m.request_id);
        ws_message_free(&m);
        return;
    }
    cJSON *empty = NULL;
    const cJSON *data = m.data;
    if (!data)
        data = empty = cJSON_CreateObject();
    daebus_ws_request req = {
        .ws = ws, .c = c, .type = m.type, .data = data, .message = m.root, .rid = m.request_id};
    cJSON *result = d->fn.socket(&req, c->id, d->opts.user);
    if (req.failed) {
        atomic_fetch_add(&ws->st_handler_errors, 1);
        cJSON_Delete(result);
        size_t n = 0;
        char *s = ws_handler_error_envelope(req.fail_msg, m.request_id, &n);
        if (s)
            send_text_take(c, s, n);
    } else if (result) {
        size_t n = 0;
        char *s = ws_response_envelope(result, m.request_id, &n);
        cJSON_Delete(result);
        if (s && send_text_take(c, s, n) == DAEBUS_ETOOBIG) {
            /* Larger than the whole outbound queue: an error instead of a dropped client. */
            log_too_big(ws, "the response to a message", c->id, n);
            send_error(c, "Response too large", -1, m.request_id);
        }
    }
    if (req.rejected)
        ws__begin_close(c, 1008, req.reject_reason, WS_BY_SERVER);
    req_free(&req);
    cJSON_Delete(empty);
    ws_message_free(&m);
}

/* A complete data message from c (its CivetWeb thread). */
static void on_message(daebus_ws *ws, ws_client *c, int opcode, const char *buf, size_t len)
{
    pthread_mutex_lock(&c->lock);
    c->msgs_in++;
    c->last_activity = ws__wall();
    pthread_mutex_unlock(&c->lock);
    atomic_fetch_add(&ws->st_in, 1);
    atomic_fetch_add(&ws->st_bytes_in, len);

    pthread_mutex_lock(&ws->rl_lock);
    int rl_max = ws->rl_max, rl_after = ws->rl_disconnect_after;
    double rl_window = ws->rl_window;
    pthread_mutex_unlock(&ws->rl_lock);
    if (rl_max > 0) {
        if (!ws_rate_allow(&c->rate, rl_max, rl_window, ws__mono())) {
            atomic_fetch_add(&ws->st_rate_limited, 1);
            c->rate_violations++;
            send_error_scan(c, "Rate limit exceeded", rl_window, buf, len);
            if (rl_after > 0 && c->rate_violations >= rl_after)
                ws__begin_close(c, 1008, "Rate limit exceeded", WS_BY_PROTOCOL);
            return;
        }
        c->rate_violations = 0;
    }
    bool binary = opcode == MG_WEBSOCKET_OPCODE_BINARY;
    if (!ws_utf8_valid((const unsigned char *)buf, len)) {
        /* Binary frames holding UTF-8 JSON are read as text (as in Python);
         * other binary data gets an error, a text frame that is not UTF-8 a close. */
        if (binary)
            send_error_scan(c, BINARY_NOT_JSON, -1, buf, len);
        else
            ws__begin_close(c, 1007, "Invalid UTF-8", WS_BY_PROTOCOL);
        return;
    }
    run_message(ws, c, buf, len, binary);
}

/* ---- CivetWeb callbacks ---- */

static void http_refuse(const struct mg_connection *conn, int status, const char *text,
                        const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", message);
    char *body = daebus_json_print(o, NULL);
    cJSON_Delete(o);
    mg_printf((struct mg_connection *)conn,
              "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
              "Connection: close\r\n\r\n%s",
              status, text, body ? strlen(body) : 0, body ? body : "");
    free(body);
}

static void refuse_count(daebus_ws *ws)
{
    atomic_fetch_add(&ws->st_rejected, 1);
}

/* Sets the subprotocol CivetWeb answers the handshake with (NULL: no
 * Sec-WebSocket-Protocol header). CivetWeb 1.15 keeps this field in the
 * worker's connection from one connection to the next and only sets it when a
 * client offers subprotocols: it must be set on every upgrade, every path. */
static void set_subprotocol(const struct mg_connection *conn, const char *proto)
{
    struct mg_request_info *ri = (struct mg_request_info *)mg_get_request_info(conn);
    if (ri)
        ri->acceptedWebSocketSubprotocol = proto;
}

/* Accepts the first subprotocol the client offered, or none. buf (cap
 * bytes) must outlive the handshake. */
static void choose_subprotocol(const struct mg_connection *conn, char *buf, size_t cap)
{
    set_subprotocol(conn, NULL);
    const char *h = mg_get_header(conn, "Sec-WebSocket-Protocol");
    if (!h)
        return;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t n = strcspn(h, ", \t");
    if (n == 0 || n >= cap)
        return;
    memcpy(buf, h, n);
    buf[n] = '\0';
    set_subprotocol(conn, buf);
}

/* The subprotocol of an upgrade accepted only to be closed with 1013 (no
 * client entry): its handshake is sent by this worker thread after
 * on_connect returns, and on_close clears the pointer. */
static _Thread_local char full_subproto[96];

/* Is path (without the query) one of the configured upgrade paths? Exact
 * match: CivetWeb's handler for "/" would otherwise take every path. */
static bool path_served(const daebus_ws *ws, const char *path)
{
    if (!path)
        return false;
    size_t n = strlen(path);
    for (const char *p = ws->paths; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == n && n && memcmp(start, path, n) == 0)
            return true;
    }
    return false;
}

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

static int on_connect(const struct mg_connection *conn, void *cbdata)
{
    daebus_ws *ws = cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    /* Whatever happens next, no subprotocol is left over from the worker's
     * previous connection (it may point into that connection's freed client). */
    set_subprotocol(conn, NULL);
    if (!path_served(ws, ri->local_uri)) {
        refuse_count(ws);
        daebus_log(DAEBUS_LOG_WARNING, "websocket",
                   "refusing an upgrade from %s: '%.*s' is not a WebSocket path (paths: %s)",
                   ri->remote_addr, daebus__utf8_prec(ri->local_uri, 200),
                   ri->local_uri ? ri->local_uri : "", ws->paths);
        http_refuse(conn, 404, "Not Found", "Not a WebSocket path");
        return 1;
    }
    if (!atomic_load(&ws->running) || atomic_load(&ws->refusing)) {
        refuse_count(ws);
        /* Not running and not refusing: HTTP is up, this component not yet. */
        http_refuse(conn, 503, "Service Unavailable",
                    atomic_load(&ws->refusing) ? "Server shutting down" : "Server starting");
        return 1;
    }
    const char *key = mg_get_header(conn, "Sec-WebSocket-Key");
    if (!key || strlen(key) > 60) {
        refuse_count(ws);
        http_refuse(conn, 400, "Bad Request", "Malformed Sec-WebSocket-Key");
        return 1;
    }
    const char *origin = mg_get_header(conn, "Origin");
    if (origin && ws->allowed_origins &&
        !daebus__http_list_has(ws->allowed_origins, origin, strlen(origin))) {
        refuse_count(ws);
        daebus_log(DAEBUS_LOG_WARNING, "websocket",
                   "refusing an upgrade from %s: Origin '%.*s' is not in allowed_origins",
                   ri->remote_addr, daebus__utf8_prec(origin, 100), origin);
        http_refuse(conn, 403, "Forbidden", "Origin not allowed");
        return 1;
    }
    pthread_mutex_lock(&ws->reg_lock);
    if (ws->nconn >= ws->max_clients) {
        /* Full: complete the upgrade only to close with 1013, which a browser
         * can see (an HTTP refusal reaches its script as a bare 1006); a
         * few at a time, so that a flood cannot tie up the HTTP workers. */
        int full_close = ws->nfull < DAEBUS_WS_FULL_CLOSERS;
        if (full_close)
            ws->nfull++;
        pthread_mutex_unlock(&ws->reg_lock);
        refuse_count(ws);
        daebus_log(DAEBUS_LOG_WARNING, "websocket",
                   "refusing an upgrade from %s: %d clients connected (max_clients)",
                   ri->remote_addr, ws->max_clients);
        if (full_close) {
            choose_subprotocol(conn, full_subproto, sizeof full_subproto);
            mg_set_user_connection_data(conn, FULL_MARK);
            return 0;
        }
        http_refuse(conn, 503, "Service Unavailable", "Too many connections");
        return 1;
    }
    ws->nconn++;
    pthread_mutex_unlock(&ws->reg_lock);

    ws_client *c = calloc(1, sizeof *c);
    if (!c) {
        release_slot(ws);
        refuse_count(ws);
        http_refuse(conn, 503, "Service Unavailable", "Out of memory");
        return 1;
    }
    atomic_init(&c->refs, 1); /* the connection's reference */
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->ws = ws;
    c->conn = (struct mg_connection *)conn;
    c->fd = -1;
    c->state = WS_PENDING;
    c->path = strdup(ri->local_uri ? ri->local_uri : "/");
    snprintf(c->remote_addr, sizeof c->remote_addr, "%s", ri->remote_addr);
    c->remote_port = ri->remote_port;
    c->secure = ri->is_ssl != 0;
    c->connected_at = c->last_activity = ws__wall();
    c->created_mono = c->last_seen_mono = c->last_ping_mono = ws__mono();
    c->user_data = cJSON_CreateObject();

    /* Client id: the custom generator, else (or when it gives nothing) the default. */
    daebus_ws_conn_info info = {conn, ri};
    int custom = 0;
    if (ws->id_gen) {
        c->id = ws->id_gen(&info, ws->id_gen_user);
        if (c->id && !c->id[0]) {
            free(c->id);
            c->id = NULL;
        }
        if (!c->id)
            daebus_log(DAEBUS_LOG_WARNING, "websocket",
                       "client id generator returned nothing for %s: using the default id",
                       ri->remote_addr);
        custom = c->id != NULL;
    }
    int rc = DAEBUS_ENOMEM;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (!c->id)
            c->id = default_id();
        if (!c->id || !c->path || !c->user_data)
            break;
        pthread_mutex_lock(&ws->reg_lock);
        rc = ws_registry_insert(ws->reg, c->id, c);
        if (rc == 0)
            ws__client_ref(c); /* the registry's reference */
        pthread_mutex_unlock(&ws->reg_lock);
        if (rc != DAEBUS_EEXIST || custom)
            break;
        free(c->id);
        c->id = NULL;
    }
    if (rc != 0) {
        int collision = rc == DAEBUS_EEXIST;
        if (collision)
            daebus_log(DAEBUS_LOG_WARNING, "websocket",
                       "refusing an upgrade from %s: client id '%s' is in use", ri->remote_addr,
                       c->id);
        ws__client_unref(c);
        release_slot(ws);
        refuse_count(ws);
        if (collision)
            http_refuse(conn, 409, "Conflict", "Client id in use");
        else
            http_refuse(conn, 503, "Service Unavailable", "Out of memory");
        return 1;
    }
    choose_subprotocol(conn, c->subproto, sizeof c->subproto);
    mg_set_user_connection_data(conn, c);

    /* SOCKET_CONNECT: may reject, may store client data, may answer. */
    cJSON *reply = NULL;
    int rejected = 0;
    char *reason = NULL;
    if (ws->on_connect) {
        cJSON *empty = cJSON_CreateObject();
        daebus_ws_request req = {.ws = ws, .c = c, .type = "connect", .data = empty, .info = &info};
        reply = ws->on_connect->fn.socket(&req, c->id, ws->on_connect->opts.user);
        if (req.rejected || cJSON_IsFalse(reply)) {
            rejected = 1;
            reason = req.reject_reason ? strdup(req.reject_reason) : NULL;
            cJSON_Delete(reply);
            reply = NULL;
        } else if (req.failed) {
            atomic_fetch_add(&ws->st_handler_errors, 1);
            cJSON_Delete(reply);
            size_t n = 0;
            char *s = ws_handler_error_envelope(req.fail_msg, NULL, &n);
            if (s)
                send_text_take(c, s, n);
            reply = NULL;
        }
        req_free(&req);
        cJSON_Delete(empty);
    }
    if (rejected) {
        set_subprotocol(conn, NULL); /* it points into c */
        mg_set_user_connection_data(conn, NULL);
        pthread_mutex_lock(&ws->reg_lock);
        ws_registry_remove(ws->reg, c->id);
        pthread_mutex_unlock(&ws->reg_lock);
        daebus_log(DAEBUS_LOG_INFO, "websocket", "connection %s from %s rejected: %s", c->id,
                   ri->remote_addr, reason ? reason : "Connection rejected");
        ws__client_unref(c); /* registry */
        ws__client_unref(c); /* connection */
        release_slot(ws);
        refuse_count(ws);
        http_refuse(conn, 403, "Forbidden", reason ? reason : "Connection rejected");
        free(reason);
        return 1;
    }
    c->accepted = 1;
    if (reply) {
        size_t n = 0;
        char *s = ws_envelope("response", reply, NULL, &n);
        cJSON_Delete(reply);
        if (s)
            send_text_take(c, s, n);
    }
    return 0;
}

/* A connection accepted past max_clients: close frame 1013, then FIN; wait
 * (bounded) for the peer's answer, which CivetWeb reads after we return. */
static void close_full(daebus_ws *ws, struct mg_connection *conn)
{
    char payload[125];
    size_t n = ws_close_payload(1013, "Server full", payload);
    mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, payload, n);
    int fd = ws__peer_fd(ws, conn);
    if (fd < 0)
        return;
    shutdown(fd, SHUT_WR);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)(ws->close_timeout * 1000)) <= 0)
        shutdown(fd, SHUT_RDWR);
}

static void on_ready(struct mg_connection *conn, void *cbdata)
{
    daebus_ws *ws = cbdata;
    ws_client *c = mg_get_user_connection_data(conn);
    if (c == FULL_MARK) {
        close_full(ws, conn);
        return;
    }
    if (!c)
        return;
    ws__find_fd(c);
    set_state(c, WS_OPEN);
    pthread_mutex_lock(&ws->reg_lock);
    uint64_t open = (uint64_t)ws->nconn;
    pthread_mutex_unlock(&ws->reg_lock);
    atomic_fetch_add(&ws->st_connects, 1);
    uint64_t hw = atomic_load(&ws->st_clients_hw);
    while (open > hw && !atomic_compare_exchange_weak(&ws->st_clients_hw, &hw, open))
        ;
    daebus_log(DAEBUS_LOG_DEBUG, "websocket", "client %s connected from %s:%d (%s)", c->id,
               c->remote_addr, c->remote_port, c->path);
    ws__schedule(c);
}

/* Is another control frame from c within max_pings (token bucket: max_pings
 * a second, bursts of as many)? Worker thread only. */
static bool ping_allowed(daebus_ws *ws, ws_client *c)
{
    if (ws->max_pings <= 0)
        return true;
    double now = ws__mono();
    if (c->ping_refill == 0) {
        c->ping_tokens = ws->max_pings;
    } else {
        c->ping_tokens += (now - c->ping_refill) * ws->max_pings;
        if (c->ping_tokens > ws->max_pings)
            c->ping_tokens = ws->max_pings;
    }
    c->ping_refill = now;
    if (c->ping_tokens < 1)
        return false;
    c->ping_tokens -= 1;
    return true;
}

/* A ping or pong from c. Pongs are queued like any frame (a client that does
 * not read them fills its own queue and is dropped as a slow consumer), never
 * written here: this thread must keep reading. Over max_pings the client is
 * closed with 1008; one that goes on while closing loses its connection at
 * once. Returns: what on_data returns (0 ends the connection). */
static int on_control(daebus_ws *ws, ws_client *c, int op, const char *data, size_t len,
                      int closing)
{
    if (!ping_allowed(ws, c)) {
        uint64_t dropped = 0;
        if (!closing && ws__log_allow(ws, WS_LOG_PINGS, &dropped))
            daebus_log(DAEBUS_LOG_WARNING, "websocket",
                       "client %s: more than %g pings/pongs a second (max_pings_per_second): "
                       "closing it with 1008 (%llu more such lines suppressed)",
                       c->id, ws->max_pings, (unsigned long long)dropped);
        if (!closing) {
            c->ping_excess = 0;
            ws__begin_close(c, 1008, "Too many pings", WS_BY_PROTOCOL);
            return 1;
        }
        /* Still flooding once the close frame is out (or long before it could
         * go out): stop reading it (CivetWeb ends the connection) rather than
         * spend a read on every frame until close_timeout. */
        pthread_mutex_lock(&c->lock);
        int sent = c->close_sent;
        pthread_mutex_unlock(&c->lock);
        if (!sent && ++c->ping_excess <= WS_CLOSING_FLOOD)
            return 1;
        ws__force_close(c, WS_BY_PROTOCOL);
        return 0;
    }
    if (op != MG_WEBSOCKET_OPCODE_PING || closing)
        return 1;
    ws_frame *f = ws__frame_new(MG_WEBSOCKET_OPCODE_PONG, data, len > 125 ? 125 : len);
    if (f)
        ws__enqueue(c, f, false);
    ws__frame_unref(f);
    return 1;
}

void ws__frag_release(ws_client *c)
{
    if (c->frag_cap >= WS_FRAG_MMAP)
        munmap(c->frag, c->frag_cap);
    else
        free(c->frag);
    c->frag = NULL;
    c->frag_cap = 0;
    c->frag_len = 0;
}

/* Grows c's reassembly buffer to hold need bytes: malloc'd while small,
 * mmap'd from WS_FRAG_MMAP on (released after the message, see on_data). */
static int frag_reserve(ws_client *c, size_t need)
{
    size_t cap = c->frag_cap ? c->frag_cap : 4096;
    while (cap < need)
        cap *= 2;
    if (cap < WS_FRAG_MMAP) {
        char *p = realloc(c->frag, cap);
        if (!p)
            return DAEBUS_ENOMEM;
        c->frag = p;
    } else {
        char *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return DAEBUS_ENOMEM;
        if (c->frag_len)
            memcpy(p, c->frag, c->frag_len);
        size_t len = c->frag_len;
        ws__frag_release(c);
        c->frag = p;
        c->frag_len = len;
    }
    c->frag_cap = cap;
    return 0;
}

static int append_fragment(daebus_ws *ws, ws_client *c, const char *data, size_t len)
{
    if (c->frag_len + len > ws->max_message_size)
        return DAEBUS_ETOOBIG;
    if (c->frag_len + len > c->frag_cap) {
        int rc = frag_reserve(c, c->frag_len + len);
        if (rc)
            return rc;
    }
    memcpy(c->frag + c->frag_len, data, len);
    c->frag_len += len;
    return 0;
}

static int on_data(struct mg_connection *conn, int bits, char *data, size_t len, void *cbdata)
{
    daebus_ws *ws = cbdata;
    ws_client *c = mg_get_user_connection_data(conn);
    if (!c || c == FULL_MARK)
        return 0;
    int op = bits & 0x0f, fin = (bits & 0x80) != 0;
    pthread_mutex_lock(&c->lock);
    c->last_seen_mono = ws__mono();
    int closing = c->close_queued;
    pthread_mutex_unlock(&c->lock);
    switch (op) {
    case MG_WEBSOCKET_OPCODE_PING:
    case MG_WEBSOCKET_OPCODE_PONG:
        return on_control(ws, c, op, data, len, closing);
    case MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE: {
        int code = ws_close_code(data, len);
        pthread_mutex_lock(&c->lock);
        c->peer_close_code = code < 0 ? 1002 : code;
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    case MG_WEBSOCKET_OPCODE_TEXT:
    case MG_WEBSOCKET_OPCODE_BINARY:
    case MG_WEBSOCKET_OPCODE_CONTINUATION:
        break;
    default:
        ws__begin_close(c, 1002, "Unknown opcode", WS_BY_PROTOCOL);
        return 1;
    }
    if (closing)
        return 1; /* closing: data is ignored until the peer's close */
    if (op != MG_WEBSOCKET_OPCODE_CONTINUATION) {
        if (c->frag_opcode) {
            ws__begin_close(c, 1002, "Expected a continuation frame", WS_BY_PROTOCOL);
            return 1;
        }
        if (fin) {
            if (len > ws->max_message_size) {
                ws__begin_close(c, 1009, "Message too big", WS_BY_PROTOCOL);
                return 1;
            }
            ws__own_begin(c);
            on_message(ws, c, op, data, len);
            ws__own_end(c);
            return 1;
        }
        c->frag_opcode = op;
        c->frag_len = 0;
    } else if (!c->frag_opcode) {
        ws__begin_close(c, 1002, "Unexpected continuation frame", WS_BY_PROTOCOL);
        return 1;
    }
    int rc = append_fragment(ws, c, data, len);
    if (rc) {
        c->frag_opcode = 0;
        c->frag_len = 0;
        if (c->frag_cap >= WS_FRAG_MMAP)
            ws__frag_release(c);
        ws__begin_close(c, rc == DAEBUS_ETOOBIG ? 1009 : 1011,
                        rc == DAEBUS_ETOOBIG ? "Message too big" : "Out of memory", WS_BY_PROTOCOL);
        return 1;
    }
    if (fin) {
        int fop = c->frag_opcode;
        c->frag_opcode = 0;
        ws__own_begin(c);
        on_message(ws, c, fop, c->frag, c->frag_len);
        ws__own_end(c);
        c->frag_len = 0;
        /* A large message does not keep its peak until the client leaves. */
        if (c->frag_cap >= WS_FRAG_MMAP)
            ws__frag_release(c);
    }
    return 1;
}

static void on_close(const struct mg_connection *conn, void *cbdata)
{
    daebus_ws *ws = cbdata;
    ws_client *c = mg_get_user_connection_data(conn);
    set_subprotocol(conn, NULL); /* it may point into c, freed below */
    if (c == FULL_MARK) {
        mg_set_user_connection_data(conn, NULL);
        pthread_mutex_lock(&ws->reg_lock);
        ws->nfull--;
        pthread_mutex_unlock(&ws->reg_lock);
        return;
    }
    if (!c)
        return;
    mg_set_user_connection_data(conn, NULL);
    pthread_mutex_lock(&c->lock);
    c->conn_closed = 1;
    while (c->writing)
        pthread_cond_wait(&c->cond, &c->lock);
    int echo = c->peer_close_code > 0 && !c->close_sent;
    int code = c->peer_close_code;
    int reason = c->close_queued ? c->end_reason : WS_BY_CLIENT;
    pthread_mutex_unlock(&c->lock);
    if (echo) {
        char payload[125];
        size_t n = ws_close_payload(
            code == 1005 || code == 1002 ? (code == 1002 ? 1002 : 1000) : code, "", payload);
        mg_websocket_write((struct mg_connection *)conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE,
                           payload, n);
    }
    ws__release_fd(c);
    set_state(c, WS_GONE);
    atomic_fetch_add(&ws->st_disc[reason], 1);
    daebus_log(DAEBUS_LOG_DEBUG, "websocket", "client %s disconnected", c->id);
    if (c->accepted && ws->on_disconnect) {
        cJSON *empty = cJSON_CreateObject();
        daebus_ws_request req = {.ws = ws, .c = c, .type = "disconnect", .data = empty};
        cJSON *r = ws->on_disconnect->fn.socket(&req, c->id, ws->on_disconnect->opts.user);
        cJSON_Delete(r);
        req_free(&req);
        cJSON_Delete(empty);
    }
    /* The slot goes with the registry entry, under one lock: once the client
     * count says a client is gone, its slot is free for the next upgrade. */
    pthread_mutex_lock(&ws->reg_lock);
    if (ws_registry_find(ws->reg, c->id) == c)
        ws_registry_remove(ws->reg, c->id);
    release_slot_locked(ws);
    pthread_mutex_unlock(&ws->reg_lock);
    ws__client_unref(c); /* registry */
    ws__client_unref(c); /* connection */
}

/* ---- component ops ---- */

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

    daebus_http *http = daebus_app_http(ws->app);
    struct mg_context *ctx = http ? daebus__http_context(http) : NULL;
    if (!ctx) {
        daebus_log(DAEBUS_LOG_ERROR, "websocket",
                   "start: the HTTP server is not running; attach HTTP before WebSocket");
        return DAEBUS_ESTATE;
    }
    atomic_store(&ws->refusing, 0);
    atomic_store(&ws->running, 1);
    int rc = ws__io_start(ws);
    if (rc) {
        atomic_store(&ws->running, 0);
        return rc;
    }
    /* One handler on "/": CivetWeb hands it every upgrade request (its "/"
     * pattern matches any path), and on_connect serves the configured paths
     * only, answering 404 elsewhere. Without it CivetWeb would close an
     * upgrade on an unknown path without an answer. */
    mg_set_websocket_handler(ctx, "/", on_connect, on_ready, on_data, on_close, ws);
    daebus_log(DAEBUS_LOG_INFO, "websocket",
               "serving WebSocket on port %d, paths %s (upgrades elsewhere: 404; max %d clients, "
               "%zu socket handlers)",
               daebus__http_bound_port(http), ws->paths, ws->max_clients, ws->nsocket_handlers);
    return 0;
}

static void ws_stop(void *self)
{
    daebus_ws *ws = self;
    if (ws->shutdown_timeout >= 0 && atomic_load(&ws->running))
        daebus_ws_graceful_shutdown(ws, ws->shutdown_timeout, NULL);
    atomic_store(&ws->refusing, 1);
    atomic_store(&ws->running, 0);
    ws__io_stop(ws);
}

static void ws_describe(void *self, char *buf, size_t len)
{
    daebus_ws *ws = self;
    snprintf(buf, len, "websocket %s", ws->paths);
}

/* ---- registry API ---- */

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
    ws_client *c = find_ref(ws, client_id);
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
    ws__client_unref(c);
    return rc;
}

cJSON *daebus_ws_get_client_data(daebus_ws *ws, const char *client_id, const char *key)
{
    if (!key)
        return NULL;
    ws_client *c = find_ref(ws, client_id);
    if (!c)
        return NULL;
    pthread_mutex_lock(&c->lock);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->user_data, key);
    cJSON *copy = v ? cJSON_Duplicate(v, true) : NULL;
    pthread_mutex_unlock(&c->lock);
    ws__client_unref(c);
    return copy;
}

cJSON *daebus_ws_get_client_metadata(daebus_ws *ws, const char *client_id)
{
    ws_client *c = find_ref(ws, client_id);
    if (!c)
        return NULL;
    cJSON *m = client_metadata(c);
    ws__client_unref(c);
    return m;
}

/* Connected clients (OPEN or CLOSING), referenced, oldest first. */
static size_t snapshot(daebus_ws *ws, ws_client ***out, bool open_only)
{
    *out = NULL;
    pthread_mutex_lock(&ws->reg_lock);
    size_t n = ws_registry_count(ws->reg), k = 0;
    ws_client **cs = n ? malloc(n * sizeof *cs) : NULL;
    if (cs) {
        n = ws_registry_values(ws->reg, (void **)cs, n);
        for (size_t i = 0; i < n; i++) {
            int st = cs[i]->state;
            if (st == WS_OPEN || (!open_only && st == WS_CLOSING)) {
                ws__client_ref(cs[i]);
                cs[k++] = cs[i];
            }
        }
    }
    pthread_mutex_unlock(&ws->reg_lock);
    *out = cs;
    return k;
}

static void release_snapshot(ws_client **cs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ws__client_unref(cs[i]);
    free(cs);
}

cJSON *daebus_ws_get_clients(daebus_ws *ws)
{
    if (!ws)
        return NULL;
    ws_client **cs;
    size_t n = snapshot(ws, &cs, false);
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(cs[i]->id));
    release_snapshot(cs, n);
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
            if (cs[i]->state == WS_OPEN || cs[i]->state == WS_CLOSING)
                k++;
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
    bool r = c && (c->state == WS_OPEN || c->state == WS_CLOSING);
    pthread_mutex_unlock(&ws->reg_lock);
    return r;
}

cJSON *daebus_ws_get_clients_by_filter(daebus_ws *ws, daebus_ws_filter_fn *fn, void *user)
{
    if (!ws || !fn)
        return NULL;
    ws_client **cs;
    size_t n = snapshot(ws, &cs, false);
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *m = client_metadata(cs[i]);
        if (m && fn(cs[i]->id, m, user))
            cJSON_AddItemToArray(a, cJSON_CreateString(cs[i]->id));
        cJSON_Delete(m);
    }
    release_snapshot(cs, n);
    return a;
}

/* ---- sending ---- */

static ws_frame *make_frame(const cJSON *data, const char *type)
{
    size_t len = 0;
    char *s = ws_envelope(type, data, NULL, &len);
    return s ? ws__frame_text_take(s, len) : NULL;
}

/* Is f over the outbound queue limit? Then it is logged and freed: no
 * client could ever take it, and none is dropped for it. */
static bool too_big(daebus_ws *ws, ws_frame *f, const char *what)
{
    if (f->len <= ws->queue_max_bytes)
        return false;
    log_too_big(ws, what, "its recipients", f->len);
    ws__frame_unref(f);
    return true;
}

int daebus_ws_send_to_client(daebus_ws *ws, const char *client_id, const cJSON *data,
                             const char *type)
{
    if (!ws || !client_id)
        return DAEBUS_EINVAL;
    ws_client *c = find_ref(ws, client_id);
    if (!c)
        return DAEBUS_ENOENT;
    ws_frame *f = make_frame(data, type ? type : "message");
    int rc = f ? ws__enqueue(c, f, false) : DAEBUS_ENOMEM;
    if (rc == DAEBUS_ETOOBIG)
        log_too_big(ws, "send_to_client", client_id, f->len);
    ws__frame_unref(f);
    ws__client_unref(c);
    return rc;
}

int daebus_ws_broadcast_to_all(daebus_ws *ws, const cJSON *data, const char *type)
{
    if (!ws)
        return DAEBUS_EINVAL;
    ws_frame *f = make_frame(data, type ? type : "broadcast");
    if (!f)
        return DAEBUS_ENOMEM;
    if (too_big(ws, f, "broadcast_to_all"))
        return DAEBUS_ETOOBIG;
    ws_client **cs;
    size_t n = snapshot(ws, &cs, true);
    int count = 0;
    for (size_t i = 0; i < n; i++)
        if (ws__enqueue(cs[i], f, false) == 0)
            count++;
    release_snapshot(cs, n);
    ws__frame_unref(f);
    return count;
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
    for (size_t i = 0; i < n; i++) {
        ws_client *c = find_ref(ws, client_ids[i]);
        bool ok = c && ws__enqueue(c, f, false) == 0;
        if (c)
            ws__client_unref(c);
        if (results)
            results[i] = ok;
        count += ok;
    }
    ws__frame_unref(f);
    return count;
}

int daebus_ws_broadcast_to_filter(daebus_ws *ws, daebus_ws_filter_fn *fn, void *user,
                                  const cJSON *data, const char *type)
{
    if (!ws || !fn)
        return DAEBUS_EINVAL;
    ws_frame *f = make_frame(data, type ? type : "broadcast");
    if (!f)
        return DAEBUS_ENOMEM;
    if (too_big(ws, f, "broadcast_to_filter"))
        return DAEBUS_ETOOBIG;
    ws_client **cs;
    size_t n = snapshot(ws, &cs, true);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *m = client_metadata(cs[i]);
        if (m && fn(cs[i]->id, m, user) && ws__enqueue(cs[i], f, false) == 0)
            count++;
        cJSON_Delete(m);
    }
    release_snapshot(cs, n);
    ws__frame_unref(f);
    return count;
}

/* ---- disconnecting ---- */

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
    ws_client *c = find_ref(ws, client_id);
    if (!c)
        return DAEBUS_ENOENT;
    int rc = ws__begin_close(c, code, reason, WS_BY_SERVER);
    ws__client_unref(c);
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
    size_t n = snapshot(ws, &cs, true);
    int count = 0;
    for (size_t i = 0; i < n; i++)
        if (ws__begin_close(cs[i], code, reason, WS_BY_SERVER) == 0)
            count++;
    release_snapshot(cs, n);
    return count;
}

/* Waits until no connection is left or the monotonic deadline passes. */
static int wait_empty(daebus_ws *ws, double deadline)
{
    pthread_mutex_lock(&ws->reg_lock);
    while (ws->nconn > 0) {
        double left = deadline - ws__mono();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double step = left < 0.05 ? left : 0.05;
        long ns = ts.tv_nsec + (long)(step * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&ws->reg_cond, &ws->reg_lock, &ts);
    }
    int left = ws->nconn;
    pthread_mutex_unlock(&ws->reg_lock);
    return left;
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
    cJSON *def = NULL;
    if (!message) {
        def = cJSON_CreateObject();
        cJSON_AddStringToObject(def, "message", "Server is shutting down");
        cJSON_AddBoolToObject(def, "reconnect", true);
        message = def;
    }
    int n = daebus_ws_broadcast_to_all(ws, message, "server_shutdown");
    cJSON_Delete(def);
    daebus_log(DAEBUS_LOG_INFO, "websocket",
               "graceful shutdown: notified %d clients, waiting up to %.1f s", n > 0 ? n : 0,
               timeout);
    if (timeout > 0)
        wait_empty(ws, ws__mono() + timeout);
    daebus_ws_disconnect_all_clients(ws, 1001, "Server shutting down");
    int left = wait_empty(ws, ws__mono() + ws->close_timeout + 0.5);
    if (left > 0) {
        /* Peers that ignored the close frame: drop their sockets. */
        ws_client **cs;
        size_t k = snapshot(ws, &cs, false);
        for (size_t i = 0; i < k; i++)
            ws__force_close(cs[i], WS_BY_SERVER);
        release_snapshot(cs, k);
        left = wait_empty(ws, ws__mono() + 2.0);
    }
    if (left > 0)
        daebus_log(DAEBUS_LOG_WARNING, "websocket", "graceful shutdown: %d connections still open",
                   left);
    return left > 0 ? DAEBUS_ETIMEDOUT : 0;
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
    return 0;
}
