/* civet_ws.c - the WebSocket-side CivetWeb workarounds, each with its reason.
 *
 * The WebSocket layer (framework/ws/) calls these instead of reaching into
 * CivetWeb's request structures itself. Every function names the CivetWeb
 * 1.15 behaviour it works around; when CivetWeb fixes one, the fix is here.
 * Finding a connection's socket is not here: see civet.c.
 */
#include "civet_ws.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "daebus/json.h"

/* ---- upgrade paths ---- */

void daebus__civet_ws_install(struct mg_context *ctx, mg_websocket_connect_handler on_connect,
                              mg_websocket_ready_handler on_ready,
                              mg_websocket_data_handler on_data,
                              mg_websocket_close_handler on_close, void *user)
{
    /* Why "/": CivetWeb's handler patterns are prefixes, "/" matches every
     * URI, and an upgrade on a URI no WebSocket handler matches is closed by
     * CivetWeb without an answer. One handler for every path lets the connect
     * callback serve the configured paths (exact match) and answer 404
     * elsewhere. */
    mg_set_websocket_handler(ctx, "/", on_connect, on_ready, on_data, on_close, user);
}

/* ---- refusing an upgrade ---- */

void daebus__civet_ws_refuse(const struct mg_connection *conn, int status, const char *text,
                             const char *message)
{
    /* Why: when a connect callback returns non-zero, CivetWeb 1.15 closes
     * the connection without writing anything; the client would see a reset
     * instead of a status it can show. The callback runs before CivetWeb
     * wrote a byte, so the whole answer is ours. */
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

/* ---- subprotocols ---- */

void daebus__civet_ws_set_subprotocol(const struct mg_connection *conn, const char *proto)
{
    /* Why: CivetWeb 1.15 answers the handshake with the request info's
     * acceptedWebSocketSubprotocol, a field that lives in the worker's
     * connection structure from one connection to the next and that CivetWeb
     * sets only when the client offers subprotocols. Left alone it answers a
     * later client with the previous client's Sec-WebSocket-Protocol (and
     * may point into that client's freed memory): it must be set on every
     * upgrade, on every path, and cleared when the connection ends. */
    struct mg_request_info *ri = (struct mg_request_info *)mg_get_request_info(conn);
    if (ri)
        ri->acceptedWebSocketSubprotocol = proto;
}

void daebus__civet_ws_choose_subprotocol(const struct mg_connection *conn, char *buf, size_t cap)
{
    daebus__civet_ws_set_subprotocol(conn, NULL);
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
    daebus__civet_ws_set_subprotocol(conn, buf);
}

/* ---- 1013 "server full": accept, then close ---- */

/* Why accept-then-close: an HTTP refusal of an upgrade reaches a browser's
 * script as a bare 1006 with no reason; a completed upgrade closed with 1013
 * "Server full" tells it to come back later. CivetWeb has no way to send a
 * close frame in the handshake, so the upgrade is completed and closed in
 * the ready callback. Such a connection has no client entry: its user data
 * is this marker. */
static char full_mark;

/* The subprotocol of a full upgrade: its handshake is written by this worker
 * thread after the connect callback returns, and the close callback clears
 * the pointer (see daebus__civet_ws_set_subprotocol). */
static _Thread_local char full_subproto[96];

void daebus__civet_ws_accept_full(const struct mg_connection *conn)
{
    daebus__civet_ws_choose_subprotocol(conn, full_subproto, sizeof full_subproto);
    mg_set_user_connection_data(conn, &full_mark);
}

bool daebus__civet_ws_is_full(const struct mg_connection *conn)
{
    return mg_get_user_connection_data(conn) == &full_mark;
}

void daebus__civet_ws_close_full(struct mg_connection *conn, int fd, const char *payload, size_t n,
                                 double timeout)
{
    mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, payload, n);
    if (fd < 0)
        return;
    /* Why the FIN and the wait: CivetWeb closes the socket as soon as the
     * ready callback's connection ends; closing with unread data makes the
     * kernel send a reset, which can destroy the close frame before the peer
     * read it. */
    shutdown(fd, SHUT_WR);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)(timeout * 1000)) <= 0)
        shutdown(fd, SHUT_RDWR);
}

void daebus__civet_ws_full_done(const struct mg_connection *conn)
{
    daebus__civet_ws_set_subprotocol(conn, NULL);
    mg_set_user_connection_data(conn, NULL);
}

/* ---- pings and closing ---- */

size_t daebus__civet_ws_pong_len(size_t ping_len)
{
    /* Why: CivetWeb 1.15 hands a client's pings to the data callback and
     * does not answer them itself. The answer echoes the payload, which RFC
     * 6455 caps at 125 bytes for a control frame; the WebSocket layer queues
     * it like any frame (the thread that reads a client never writes to it). */
    return ping_len > 125 ? 125 : ping_len;
}

void daebus__civet_ws_echo_close(const struct mg_connection *conn, const char *payload, size_t n)
{
    /* Why: CivetWeb 1.15 ends the connection when the data callback returns
     * 0 for a peer's close frame, without the close frame RFC 6455 asks the
     * server to answer with. */
    mg_websocket_write((struct mg_connection *)conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, payload,
                       n);
}
