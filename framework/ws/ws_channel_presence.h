/* ws_channel_presence.h - presence on channels (internal; docs/channels/presence.md).
 *
 * A channel matching options.channel_presence (glob patterns) has presence:
 * its subscribers learn who joins and leaves, and may ask who is there.
 * The member list is the core's subscriber list (daebus:<svc>:ws:ch:<C>)
 * plus, per client, its info (its user data, a JSON object) in
 * daebus:<svc>:ws:pi:<client>. Events go through the same ordered path as
 * channel messages (cluster: one PUBLISH {"k":"chp",...} on daebus:<svc>:ws,
 * delivered by every replica when it comes back), to every subscriber but
 * the client itself.
 * Thread: any thread unless a line says otherwise.
 */
#ifndef DAEBUS_WS_CHANNEL_PRESENCE_H
#define DAEBUS_WS_CHANNEL_PRESENCE_H

#include "ws_internal.h"
#include "ws_parse.h"

/* Returns: true if channel has presence (options.channel_presence). */
bool daebus__ws_presence_on(const daebus_ws *ws, const char *channel);
/* c subscribed to channel (newly): stores its info, sends the join event. */
void daebus__ws_presence_join(daebus_ws *ws, ws_client *c, const char *channel);
/* client_id's subscription to channel ended: sends the leave event. */
void daebus__ws_presence_leave(daebus_ws *ws, const char *client_id, const char *channel);
/* client_id left all of channels[0..n) (disconnect, or its replica was
 * reaped): a leave event for each with presence; its info is removed. */
void daebus__ws_presence_gone(daebus_ws *ws, const char *client_id, const char *const *channels,
                              size_t n);
/* Writes the info of every local client in pairs ([client id, channel]
 * arrays) subscribed to a channel with presence again (Redis came back).
 * Returns: 0, DAEBUS_ECONN, DAEBUS_ENOMEM. Thread: the cluster thread. */
int daebus__ws_presence_resync(daebus_ws *ws, const cJSON *pairs);
/* A presence event back from Redis (header h: "c", "ev", "id"; the join's
 * info in body[0..len)). Thread: the subscriber thread. */
void daebus__ws_presence_recv(daebus_ws *ws, const cJSON *h, const char *body, size_t len);
/* Handles m when it is a {"type":"presence","channel":C} frame. Returns:
 * true when handled (answered). Thread: c's CivetWeb thread. */
bool daebus__ws_presence_frame(daebus_ws *ws, ws_client *c, const ws_message *m);

#endif
