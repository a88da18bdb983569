/* ws_message.c - inbound WebSocket frames: pings, close, reassembly, checks, SOCKET dispatch.
 *
 * CivetWeb calls daebus__ws_on_data on the client's own worker thread for
 * every frame it reads, so one client's frames are handled one at a time, in
 * order. Control frames are rate limited (max_pings_per_second); data frames
 * are reassembled, checked (size, UTF-8, nesting depth, rate limit) and
 * handed to the SOCKET handler of their type; what the handler returns is
 * queued as the response. Nothing here writes to the socket: replies go
 * through the client's queue (ws_io.c), drained by this thread once the
 * handler is done (daebus__ws_own_end).
 */
#define _GNU_SOURCE
#include "ws_message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <civetweb.h>

#include "civet_ws.h"
#include "clock.h"
#include "daebus/log.h"
#include "utf8.h"
#include "ws_channel.h"
#include "ws_io.h"
#include "ws_parse.h"
#include "json.h"
#include "ws_request.h"

#define BINARY_NOT_JSON "Binary frames must hold UTF-8 JSON: send JSON text frames"

/* ---- handler dispatch ---- */

static const daebus_handler_desc *find_handler(daebus_ws *ws, const char *type)
{
    /* Later registrations win: search from the end. */
    for (size_t i = ws->nsocket_handlers; i-- > 0;)
        if (ws->socket_handlers[i].key && strcmp(ws->socket_handlers[i].key, type) == 0)
            return ws->socket_handlers[i].desc;
    return NULL;
}

/* Parses a UTF-8 message into m. Returns: true if it has a type; otherwise
 * the error was queued (and m freed). */
static bool parse_message(daebus_ws *ws, ws_client *c, const char *buf, size_t len, bool binary,
                          ws_message *m)
{
    /* CivetWeb workers have small stacks (100 KiB in Debian's build) and cJSON
     * recurses: refuse deep nesting before parsing. */
    if (!daebus__json_depth_ok(buf, len, ws->max_json_depth)) {
        char msg[64];
        snprintf(msg, sizeof msg, "JSON nested too deeply (max %d levels)", ws->max_json_depth);
        daebus__ws_send_error_scan(c, msg, -1, buf, len);
        return false;
    }
    ws_parse_result pr = daebus__ws_parse_message(buf, len, m);
    if (pr == WS_PARSE_INVALID_JSON) {
        daebus__ws_send_error_scan(c, binary ? BINARY_NOT_JSON : "Invalid JSON", -1, buf, len);
        return false;
    }
    if (pr == WS_PARSE_NOT_OBJECT) {
        daebus__ws_send_error(c, "Message must be a JSON object", -1, NULL);
        return false;
    }
    if (pr == WS_PARSE_NO_TYPE) {
        daebus__ws_send_error(c, "No message type provided", -1, m->request_id);
        daebus__ws_message_free(m);
        return false;
    }
    return true;
}

/* Queues what a handler's run left: its failure, or its result (taken). */
static void send_result(daebus_ws *ws, ws_client *c, const daebus_ws_request *req, cJSON *result)
{
    if (req->failed) {
        atomic_fetch_add(&ws->st_handler_errors, 1);
        cJSON_Delete(result);
        size_t n = 0;
        char *s = daebus__ws_handler_error_envelope(req->fail_msg, req->rid, &n);
        if (s)
            daebus__ws_send_text_take(c, s, n);
    } else if (result) {
        /* Printed straight into its frame: no envelope tree, no copy. The
         * buffer is this call's own (no buffer shared between calls), so a
         * send nested in this one could not touch it. */
        daebus__json_out b;
        daebus__ws_frame_out_begin(&b);
        daebus__ws_envelope_into(&b, "response", result, req->rid, 1);
        ws_frame *f = daebus__ws_frame_out_end(&b, MG_WEBSOCKET_OPCODE_TEXT);
        cJSON_Delete(result);
        if (f && daebus__ws_enqueue(c, f, false) == DAEBUS_ETOOBIG) {
            /* Larger than the whole outbound queue: an error instead of a dropped client. */
            daebus__ws_log_too_big(ws, "the response to a message", c->id, f->len);
            daebus__ws_send_error(c, "Response too large", -1, req->rid);
        }
        daebus__ws_frame_unref(f);
    }
}

/* One UTF-8 message (a text frame, or a binary frame holding UTF-8). */
static void run_message(daebus_ws *ws, ws_client *c, const char *buf, size_t len, bool binary)
{
    ws_message m;
    if (!parse_message(ws, c, buf, len, binary, &m))
        return;
    if (daebus__ws_channel_frame_run(ws, c, &m)) { /* before SOCKET handlers (channels on) */
        daebus__ws_message_free(&m);
        return;
    }
    const daebus_handler_desc *d = find_handler(ws, m.type);
    if (!d) {
        char msg[300];
        snprintf(msg, sizeof msg, "No handler found for message type '%.*s'",
                 daebus__utf8_prec(m.type, 200), m.type);
        daebus__ws_send_error(c, msg, -1, m.request_id);
        daebus__ws_message_free(&m);
        return;
    }
    cJSON *empty = NULL;
    const cJSON *data = m.data;
    if (!data)
        data = empty = cJSON_CreateObject();
    daebus_ws_request req = {
        .ws = ws, .c = c, .type = m.type, .data = data, .message = m.root, .rid = m.request_id};
    cJSON *result = d->fn.socket(&req, c->id, d->opts.user);
    send_result(ws, c, &req, result);
    if (req.rejected)
        daebus__ws_begin_close(c, 1008, req.reject_reason, WS_BY_SERVER);
    daebus__ws_request_clear(&req);
    cJSON_Delete(empty);
    daebus__ws_message_free(&m);
}

/* Is this message within the client's rate limit? If not, it was answered
 * (and the client maybe closed). */
static bool rate_allowed(daebus_ws *ws, ws_client *c, const char *buf, size_t len)
{
    pthread_mutex_lock(&ws->rl_lock);
    int rl_max = ws->rl_max, rl_after = ws->rl_disconnect_after;
    double rl_window = ws->rl_window;
    pthread_mutex_unlock(&ws->rl_lock);
    if (rl_max <= 0)
        return true;
    if (!ws_rate_allow(&c->rate, rl_max, rl_window, daebus__now_mono())) {
        atomic_fetch_add(&ws->st_rate_limited, 1);
        c->rate_violations++;
        daebus__ws_send_error_scan(c, "Rate limit exceeded", rl_window, buf, len);
        if (rl_after > 0 && c->rate_violations >= rl_after)
            daebus__ws_begin_close(c, 1008, "Rate limit exceeded", WS_BY_PROTOCOL);
        return false;
    }
    c->rate_violations = 0;
    return true;
}

/* A complete data message from c, past the counters. */
static void check_message(daebus_ws *ws, ws_client *c, int opcode, const char *buf, size_t len)
{
    if (!rate_allowed(ws, c, buf, len))
        return;
    bool binary = opcode == MG_WEBSOCKET_OPCODE_BINARY;
    if (!daebus__utf8_valid(buf, len)) {
        /* Binary frames holding UTF-8 JSON are read as text (as in Python);
         * other binary data gets an error, a text frame that is not UTF-8 a close. */
        if (binary)
            daebus__ws_send_error_scan(c, BINARY_NOT_JSON, -1, buf, len);
        else
            daebus__ws_begin_close(c, 1007, "Invalid UTF-8", WS_BY_PROTOCOL);
        return;
    }
    run_message(ws, c, buf, len, binary);
}

/* A complete data message from c. */
static void on_message(daebus_ws *ws, ws_client *c, int opcode, const char *buf, size_t len)
{
    pthread_mutex_lock(&c->lock);
    c->msgs_in++;
    c->last_activity = daebus__now_wall();
    pthread_mutex_unlock(&c->lock);
    atomic_fetch_add(&ws->st_in, 1);
    atomic_fetch_add(&ws->st_bytes_in, len);
    /* What this thread queues for c meanwhile is written by it afterwards. */
    daebus__ws_own_begin(c);
    check_message(ws, c, opcode, buf, len);
    daebus__ws_own_end(c);
}

/* ---- control frames ---- */

/* Is another control frame from c within max_pings (token bucket: max_pings
 * a second, bursts of as many)? */
static bool ping_allowed(daebus_ws *ws, ws_client *c)
{
    if (ws->max_pings <= 0)
        return true;
    double now = daebus__now_mono();
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

/* A control frame over max_pings. Returns: what on_data returns. */
static int ping_flood(daebus_ws *ws, ws_client *c, int closing)
{
    uint64_t dropped = 0;
    if (!closing && daebus__ws_log_allow(ws, WS_LOG_PINGS, &dropped))
        daebus_log(DAEBUS_LOG_WARNING, "websocket",
                   "client %s: more than %g pings/pongs a second (max_pings_per_second): "
                   "closing it with 1008 (%llu more such lines suppressed)",
                   c->id, ws->max_pings, (unsigned long long)dropped);
    if (!closing) {
        c->ping_excess = 0;
        daebus__ws_begin_close(c, 1008, "Too many pings", WS_BY_PROTOCOL);
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
    daebus__ws_force_close(c, WS_BY_PROTOCOL);
    return 0;
}

/* A ping or pong from c. Pongs are queued like any frame (a client that does
 * not read them fills its own queue and is dropped as a slow consumer), never
 * written here: this thread must keep reading. Over max_pings the client is
 * closed with 1008; one that goes on while closing loses its connection at
 * once. Returns: what on_data returns (0 ends the connection). */
static int on_control(daebus_ws *ws, ws_client *c, int op, const char *data, size_t len,
                      int closing)
{
    if (!ping_allowed(ws, c))
        return ping_flood(ws, c, closing);
    if (op != MG_WEBSOCKET_OPCODE_PING || closing)
        return 1;
    ws_frame *f =
        daebus__ws_frame_new(MG_WEBSOCKET_OPCODE_PONG, data, daebus__civet_ws_pong_len(len));
    if (f)
        daebus__ws_enqueue(c, f, false);
    daebus__ws_frame_unref(f);
    return 1;
}

/* ---- reassembly ---- */

void daebus__ws_frag_release(ws_client *c)
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
 * mmap'd from WS_FRAG_MMAP on (released after the message, see on_fragment). */
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
        daebus__ws_frag_release(c);
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

/* A fragment (first or continuation) of a message; fin ends it. */
static void on_fragment(daebus_ws *ws, ws_client *c, const char *data, size_t len, int fin)
{
    int rc = append_fragment(ws, c, data, len);
    if (rc) {
        c->frag_opcode = 0;
        c->frag_len = 0;
        if (c->frag_cap >= WS_FRAG_MMAP)
            daebus__ws_frag_release(c);
        daebus__ws_begin_close(c, rc == DAEBUS_ETOOBIG ? 1009 : 1011,
                               rc == DAEBUS_ETOOBIG ? "Message too big" : "Out of memory",
                               WS_BY_PROTOCOL);
        return;
    }
    if (!fin)
        return;
    int fop = c->frag_opcode;
    c->frag_opcode = 0;
    on_message(ws, c, fop, c->frag, c->frag_len);
    c->frag_len = 0;
    /* A large message does not keep its peak until the client leaves. */
    if (c->frag_cap >= WS_FRAG_MMAP)
        daebus__ws_frag_release(c);
}

/* A text, binary or continuation frame (the client is not closing). */
static void on_data_frame(daebus_ws *ws, ws_client *c, int op, const char *data, size_t len,
                          int fin)
{
    if (op != MG_WEBSOCKET_OPCODE_CONTINUATION) {
        if (c->frag_opcode) {
            daebus__ws_begin_close(c, 1002, "Expected a continuation frame", WS_BY_PROTOCOL);
            return;
        }
        if (fin) {
            if (len > ws->max_message_size)
                daebus__ws_begin_close(c, 1009, "Message too big", WS_BY_PROTOCOL);
            else
                on_message(ws, c, op, data, len);
            return;
        }
        c->frag_opcode = op;
        c->frag_len = 0;
    } else if (!c->frag_opcode) {
        daebus__ws_begin_close(c, 1002, "Unexpected continuation frame", WS_BY_PROTOCOL);
        return;
    }
    on_fragment(ws, c, data, len, fin);
}

/* ---- the data callback ---- */

int daebus__ws_on_data(struct mg_connection *conn, int bits, char *data, size_t len, void *cbdata)
{
    daebus_ws *ws = cbdata;
    ws_client *c = mg_get_user_connection_data(conn);
    if (!c || daebus__civet_ws_is_full(conn))
        return 0;
    int op = bits & 0x0f, fin = (bits & 0x80) != 0;
    pthread_mutex_lock(&c->lock);
    double now = daebus__now_mono();
    c->last_seen_mono = now;
    int closing = c->close_queued;
    bool refind = c->fd_retry > 0 && !c->conn_closed && now >= c->fd_retry;
    pthread_mutex_unlock(&c->lock);
    if (refind) /* not found at open (ws_io.h) */
        daebus__ws_find_fd(c);
    switch (op) {
    case MG_WEBSOCKET_OPCODE_PING:
    case MG_WEBSOCKET_OPCODE_PONG:
        return on_control(ws, c, op, data, len, closing);
    case MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE: {
        int code = daebus__ws_close_code(data, len);
        pthread_mutex_lock(&c->lock);
        c->peer_close_code = code < 0 ? 1002 : code;
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    case MG_WEBSOCKET_OPCODE_TEXT:
    case MG_WEBSOCKET_OPCODE_BINARY:
    case MG_WEBSOCKET_OPCODE_CONTINUATION:
        if (!closing) /* closing: data is ignored until the peer's close */
            on_data_frame(ws, c, op, data, len, fin);
        return 1;
    default:
        daebus__ws_begin_close(c, 1002, "Unknown opcode", WS_BY_PROTOCOL);
        return 1;
    }
}
