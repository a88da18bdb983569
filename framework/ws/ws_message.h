/* ws_message.h - inbound WebSocket frames (ws_message.c): control frames,
 * reassembly, checks, rate limit and the dispatch to SOCKET handlers.
 *
 * Thread: the client's own CivetWeb thread.
 */
#ifndef DAEBUS_WS_MESSAGE_H
#define DAEBUS_WS_MESSAGE_H

#include "ws_internal.h"

/* CivetWeb's data callback for a connection of ws (cbdata).
 * Returns: 1 to go on reading, 0 to end the connection. */
int daebus__ws_on_data(struct mg_connection *conn, int bits, char *data, size_t len, void *cbdata);

/* Frees c's reassembly buffer (malloc'd or mmap'd). Thread: c's thread, or
 * the last reference. */
void daebus__ws_frag_release(ws_client *c);

#endif
