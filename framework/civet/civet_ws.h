/* civet_ws.h - the WebSocket-side CivetWeb workarounds (civet layer, internal).
 *
 * CivetWeb 1.15 (Debian's build) leaves a few gaps around WebSocket upgrades;
 * every piece of code that works around one lives in civet_ws.c, with the
 * reason next to it, so that the WebSocket layer (framework/ws/) speaks only
 * of clients, queues and envelopes. Nothing here knows the WebSocket
 * component's types: connections, sockets and plain values only.
 *
 * Thread: CivetWeb's worker threads (the connection's own thread), except
 * daebus__civet_ws_install (the app's owning thread, at start).
 */
#ifndef DAEBUS_CIVET_WS_H
#define DAEBUS_CIVET_WS_H

#include <stdbool.h>
#include <stddef.h>

#include <civetweb.h>

/* Registers the four upgrade callbacks for every path: CivetWeb's pattern
 * "/" matches any URI, and without a handler CivetWeb closes an upgrade on an
 * unknown path without any answer. The connect callback decides which paths
 * are served (daebus__civet_ws_refuse with 404 for the others). */
void daebus__civet_ws_install(struct mg_context *ctx, mg_websocket_connect_handler on_connect,
                              mg_websocket_ready_handler on_ready,
                              mg_websocket_data_handler on_data,
                              mg_websocket_close_handler on_close, void *user);

/* Answers an upgrade request with an HTTP error and a JSON body
 * {"error": message}: CivetWeb sends nothing when a connect callback refuses
 * (returns non-zero), which a client sees as a reset. Call before returning
 * non-zero from the connect callback. */
void daebus__civet_ws_refuse(const struct mg_connection *conn, int status, const char *text,
                             const char *message);

/* Sets the subprotocol CivetWeb answers the handshake with (NULL: no
 * Sec-WebSocket-Protocol header). proto must outlive the handshake. */
void daebus__civet_ws_set_subprotocol(const struct mg_connection *conn, const char *proto);

/* Accepts the first subprotocol the client offered, copied into buf (cap
 * bytes, which must outlive the handshake), or none. Always call it (or
 * daebus__civet_ws_set_subprotocol) on an accepted upgrade. */
void daebus__civet_ws_choose_subprotocol(const struct mg_connection *conn, char *buf, size_t cap);

/* ---- 1013 "server full": accept, then close ---- */

/* Marks an upgrade past capacity to be completed only to be closed with 1013
 * (the connect callback then returns 0). It gets no client entry: its user
 * data is a marker, which daebus__civet_ws_is_full recognises. */
void daebus__civet_ws_accept_full(const struct mg_connection *conn);
/* Returns: true if conn was accepted with daebus__civet_ws_accept_full. */
bool daebus__civet_ws_is_full(const struct mg_connection *conn);
/* Ready callback of a full upgrade: sends the close frame payload[0..n)
 * (1013 "Server full") and a FIN on fd (its socket; -1 unknown: the frame
 * only), then waits up to timeout seconds for the peer's answer, which
 * CivetWeb reads after the callback returns. */

void daebus__civet_ws_close_full(struct mg_connection *conn, int fd, const char *payload, size_t n,
                                 double timeout);
/* Close callback of a full upgrade: clears the marker and the subprotocol. */
void daebus__civet_ws_full_done(const struct mg_connection *conn);

/* ---- pings and closing ---- */

/* The length of the pong answering a ping of ping_len bytes. */
size_t daebus__civet_ws_pong_len(size_t ping_len);

/* Answers the close frame the peer sent (payload: our answer, code and
 * reason) in the close callback, when no close frame of ours went out. */
void daebus__civet_ws_echo_close(const struct mg_connection *conn, const char *payload, size_t n);

#endif
