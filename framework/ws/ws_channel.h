/* ws_channel.h - channels of the WebSocket layer (internal).
 *
 * ws_channel_auth.c: channel names, pattern rules and the authorisation hook.
 * ws_channel.c: the local subscription table (channel -> clients, client ->
 * channels), publish and local delivery, the server API.
 * ws_channel_cluster.c: cluster mode: publishes through Redis (every replica,
 * the publisher included, delivers when the message comes back, so that every
 * subscriber sees Redis's one order) and the cluster-wide subscriber lists.
 * ws_channel_frames.c: the client frames subscribe / unsubscribe / broadcast.
 *
 * ws->ch_lock guards the table; it is a leaf: nothing else is locked while it
 * is held (deliveries collect referenced clients under it, then queue with it
 * released).
 * Thread: any thread unless a line says otherwise.
 */
#ifndef DAEBUS_WS_CHANNEL_H
#define DAEBUS_WS_CHANNEL_H

#include "ws_internal.h"
#include "ws_parse.h"

#define DAEBUS__WS_STR2(x) #x
#define DAEBUS__WS_STR(x)  DAEBUS__WS_STR2(x)

/* ---- ws_channel_auth.c ---- */

/* Checks name[0..len) as a channel name. Returns: 0, or DAEBUS_EINVAL with
 * the reason in why (may be NULL). */
int daebus__ws_channel_name_error(const char *name, size_t len, char *why, size_t why_len);
/* Returns: true if a glob pattern of the comma-separated list (may be NULL)
 * matches name. */
bool daebus__ws_channel_glob(const char *patterns, const char *name);
/* Copies the channel options into ws (create). Returns: 0, DAEBUS_EINVAL
 * (err set), DAEBUS_ENOMEM. */
int daebus__ws_channel_auth_options(daebus_ws *ws, const daebus_ws_options *o, daebus_error *err);

#endif
