/* ws_client.h - WebSocket clients (ws_client.c): the client object, its
 * references and state, registry snapshots and metadata.
 *
 * Thread: any thread; the locks are those of ws_internal.h.
 */
#ifndef DAEBUS_WS_CLIENT_H
#define DAEBUS_WS_CLIENT_H

#include "ws_internal.h"

struct mg_request_info;

/* A new client (state PENDING, one reference: the connection's) for an
 * upgrade request; its id is set by the caller. Returns: NULL when out of
 * memory. Thread: the connection's CivetWeb thread. */
ws_client *daebus__ws_client_new(daebus_ws *ws, const struct mg_connection *conn,
                                 const struct mg_request_info *ri);
void daebus__ws_client_ref(ws_client *c);
/* Drops a reference; the last one frees c (accepts NULL). */
void daebus__ws_client_unref(ws_client *c);
/* Returns: the client with that id, referenced, or NULL. */
ws_client *daebus__ws_client_find(daebus_ws *ws, const char *id);
/* Sets c->state (under the registry lock and c->lock). */
void daebus__ws_client_set_state(ws_client *c, int state);

/* Which registry entries a snapshot holds. */
enum { WS_SNAP_ALL = 0, WS_SNAP_CONNECTED /* OPEN or CLOSING */, WS_SNAP_OPEN };
/* The registry's clients of that kind, referenced, oldest first, in *out
 * (malloc'd). Returns: how many. Ownership: free with daebus__ws_snapshot_release. */
size_t daebus__ws_snapshot(daebus_ws *ws, ws_client ***out, int which);
void daebus__ws_snapshot_release(ws_client **cs, size_t n);

/* Returns: the part of c's metadata that does not change while it is
 * connected (client_id, connected_at, path, remote_address, secure), or
 * NULL. c->lock held, or c not shared yet. Ownership: the caller frees it. */
cJSON *daebus__ws_client_fixed_metadata(const ws_client *c);
/* Returns: c's metadata (built-in keys and client data), or NULL when out of
 * memory. Ownership: the caller frees it. */
cJSON *daebus__ws_client_metadata(ws_client *c);

#endif
