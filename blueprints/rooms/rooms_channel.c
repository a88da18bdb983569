/* rooms_channel.c - the rooms on WebSocket channels.
 *
 * Each room is the channel "room:<name>". A member is subscribed to it by
 * join_room (its frames typed "new_message", the guide's protocol) and leaves
 * it with leave_room or its connection; a chat message is published on it
 * once, to every member but the sender, on every replica. With the channel's
 * history on (daebus_rooms_ws_options) every new_message carries an offset
 * and an epoch, a join_room with "since" replays what the client missed, and
 * a replica whose subscriber was away delivers what it missed before the
 * next message. A registered member may also follow its room with the
 * channel frames (the TypeScript client's subscribeToChannel): the
 * authorisation hook below allows exactly that.
 */
#include "rooms/rooms_channel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rooms/rooms_check.h"
#include "rooms/rooms_store.h"

#define ROOM_PREFIX "room:"

void daebus_rooms_ws_options(daebus_ws_options *wo)
{
    if (!wo)
        return;
    wo->channels = true;
    if (!wo->channel_history)
        wo->channel_history = ROOM_PREFIX "*";
    if (!wo->channel_presence) /* who is in a room, for channel subscribers */
        wo->channel_presence = ROOM_PREFIX "*";
    if (!wo->authorize) {
        wo->authorize = daebus_rooms_authorize;
        wo->authorize_user = NULL;
    }
}

int daebus__rooms_channel_name(const char *room, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, ROOM_PREFIX "%s", room);
    return n > 0 && (size_t)n < cap && daebus_ws_channel_check_name(buf, NULL) == 0 ? 0
                                                                                    : DAEBUS_EINVAL;
}

/* Reads data's "since" ({"offset": N, "epoch": E}) into s. Returns: 0
 * (absent or read), -1 (malformed). */
static int read_since(const cJSON *data, daebus_ws_subscription *s)
{
    const cJSON *since = cJSON_GetObjectItemCaseSensitive(data, "since");
    if (!since || cJSON_IsNull(since))
        return 0;
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(since, "offset");
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(since, "epoch");
    if (!cJSON_IsNumber(off) || off->valuedouble < 0 || off->valuedouble > 9007199254740992.0 ||
        off->valuedouble != (double)(uint64_t)off->valuedouble || !cJSON_IsString(ep) ||
        strlen(ep->valuestring) > 64)
        return -1;
    s->has_since = true;
    s->since_offset = (uint64_t)off->valuedouble;
    s->since_epoch = ep->valuestring;
    return 0;
}

int daebus__rooms_since_ok(const cJSON *data)
{
    daebus_ws_subscription s = DAEBUS_WS_SUBSCRIPTION_INIT;
    return read_since(data, &s);
}

void daebus__rooms_subscribe(daebus_ws *ws, const char *client_id, const char *room,
                             const cJSON *data, cJSON *reply)
{
    char chan[DAEBUS_WS_CHANNEL_MAX + 1];
    daebus_ws_subscription s = DAEBUS_WS_SUBSCRIPTION_INIT;
    s.type = "new_message";
    cJSON *info = NULL;
    int rc = DAEBUS_EINVAL;
    if (daebus__rooms_channel_name(room, chan, sizeof chan) == 0 && read_since(data, &s) == 0)
        rc = daebus_ws_channel_subscribe_ex(ws, client_id, chan, &s, &info);
    if (rc != 0 && rc != DAEBUS_ECONN) /* ECONN: subscribed here, Redis's list lags */
        daebus_log(DAEBUS_LOG_WARNING, "rooms",
                   "client %s joined room %s but its channel subscription failed (%s): it "
                   "will not get the room's messages",
                   client_id, room, daebus_strerror(rc));
    const cJSON *item;
    cJSON_ArrayForEach(item, info)
    {
        cJSON_AddItemToObject(reply, item->string, cJSON_Duplicate(item, true));
    }
    cJSON_Delete(info);
}

bool daebus__rooms_following(daebus_ws *ws, const char *client_id, const char *room)
{
    char chan[DAEBUS_WS_CHANNEL_MAX + 1];
    cJSON *list = NULL;
    bool found = false;
    if (daebus__rooms_channel_name(room, chan, sizeof chan) == 0 &&
        daebus_ws_channel_client_channels(ws, client_id, &list) == 0) {
        const cJSON *c;
        cJSON_ArrayForEach(c, list)
        {
            found = found || (cJSON_IsString(c) && strcmp(c->valuestring, chan) == 0);
        }
    }
    cJSON_Delete(list);
    return found;
}

void daebus__rooms_unsubscribe(daebus_ws *ws, const char *client_id, const char *room)
{
    char chan[DAEBUS_WS_CHANNEL_MAX + 1];
    if (daebus__rooms_channel_name(room, chan, sizeof chan) == 0)
        daebus_ws_channel_unsubscribe(ws, client_id, chan);
}

int daebus__rooms_publish(daebus_ws *ws, const char *room, const cJSON *msg, const char *sender_id)
{
    char chan[DAEBUS_WS_CHANNEL_MAX + 1];
    if (!ws)
        return DAEBUS_ESTATE;
    if (daebus__rooms_channel_name(room, chan, sizeof chan) != 0)
        return DAEBUS_EINVAL;
    return daebus_ws_channel_publish_except(ws, chan, msg, sender_id);
}

/* Is client_id registered, and a member of room? Returns: 0 (both), 1 (not
 * registered), 2 (not a member), or a negative code (Redis). */
static int membership(daebus_app *app, const char *client_id, const char *room)
{
    const char *args[] = {client_id, room};
    cJSON *r = NULL;
    int rc = daebus__rooms_eval(app, DAEBUS__ROOMS_MEMBER, 2, args, &r);
    if (rc == 0) {
        const cJSON *reg = cJSON_GetArrayItem(r, 0), *mem = cJSON_GetArrayItem(r, 1);
        rc = !cJSON_IsNumber(reg) || reg->valueint != 1   ? 1
             : !cJSON_IsNumber(mem) || mem->valueint != 1 ? 2
                                                          : 0;
    }
    cJSON_Delete(r);
    return rc;
}

bool daebus_rooms_authorize(daebus_ws *ws, const daebus_ws_auth_request *q, char *reason,
                            size_t reason_len, void *user)
{
    (void)user;
    size_t pl = strlen(ROOM_PREFIX);
    if (q->op == DAEBUS_WS_AUTH_CALL || strncmp(q->name, ROOM_PREFIX, pl) != 0)
        return q->rules_allow;
    if (q->op == DAEBUS_WS_AUTH_PUBLISH) {
        /* The room's messages come from chat_message: checked, bounded, kept. */
        snprintf(reason, reason_len,
                 "Rooms are written with chat_message, not with broadcast frames");
        return false;
    }
    (void)ws;
    int m = membership(daebus__rooms_app(), q->client_id, q->name + pl);
    if (m == 0)
        return true;
    snprintf(reason, reason_len, "%s",
             m == 1   ? "Register a username first"
             : m == 2 ? "Join the room first (join_room), then subscribe to it"
                      : "Rooms unavailable (Redis unreachable); try again");
    return false;
}
