/* rooms_channel.h - the rooms on WebSocket channels (internal; the public
 * part, daebus_rooms_ws_options and daebus_rooms_authorize, is in rooms.h).
 * Thread: callable from any thread.
 */
#ifndef DAEBUS_BP_ROOMS_CHANNEL_H
#define DAEBUS_BP_ROOMS_CHANNEL_H

#include <daebus/daebus.h>
#include "rooms/rooms.h"

/* The app the blueprint runs in (rooms.c), or NULL before its start. */
daebus_app *daebus__rooms_app(void);

/* "room:<room>" into buf. Returns: 0, or DAEBUS_EINVAL (not a channel name:
 * too long). */
int daebus__rooms_channel_name(const char *room, char *buf, size_t cap);

/* Returns: 0 when data has no "since" or a well-formed one ({"offset":
 * integer >= 0, "epoch": string}), -1 otherwise. */
int daebus__rooms_since_ok(const cJSON *data);

/* Subscribes the member client_id to its room's channel (frames typed
 * "new_message"), recovering from data's "since" when there is one, and
 * adds to reply what the channel says ("recovered", "offset", "epoch").
 * A failure is logged. Ownership: data borrowed; reply gets new items. */
void daebus__rooms_subscribe(daebus_ws *ws, const char *client_id, const char *room,
                             const cJSON *data, cJSON *reply);

/* Returns: true when client_id follows room's channel already. */
bool daebus__rooms_following(daebus_ws *ws, const char *client_id, const char *room);

/* Ends the subscription of client_id to room's channel. */
void daebus__rooms_unsubscribe(daebus_ws *ws, const char *client_id, const char *room);

/* Publishes msg (a new_message payload) on room's channel to every member but
 * sender_id. Ownership: msg borrowed. Returns: as
 * daebus_ws_channel_publish_except; DAEBUS_ESTATE (no WebSocket component). */
int daebus__rooms_publish(daebus_ws *ws, const char *room, const cJSON *msg, const char *sender_id);

#endif
