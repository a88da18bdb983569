/* ws_channel_frames.c - the client frames of channels (PROTOCOL.md §3 "Channel
 * gateway", §5 "Channels").
 *
 *   {"type":"subscribe","channel":C[,"request_id":R]}
 *   {"type":"unsubscribe","channel":C[,"request_id":R]}
 *   {"type":"broadcast","channel":C,"data":D[,"request_id":R]}
 *
 * With options.channels on, these types are handled here, before any SOCKET
 * handler (a SOCKET handler of the same name is then never reached). Each is
 * answered: {"type":"response","data":{"channel":C,...},"request_id":R,
 * "success":true}, or {"type":"error","error":<text>,"request_id":R,
 * "success":false}. They passed the per-client rate limit already (they are
 * messages). Subscribe and broadcast ask daebus_ws_authorize() first.
 */
#include "ws_channel.h"
#include "ws_channel_presence.h"

#include <stdio.h>
#include <string.h>

#include "utf8.h"
#include "ws_request.h"

static int frame_kind(const char *type)
{
    static const char *const names[] = {"subscribe", "unsubscribe", "broadcast"};
    for (int i = 0; i < 3; i++)
        if (strcmp(type, names[i]) == 0)
            return i;
    return -1;
}

int daebus__ws_channel_frame_parse(const ws_message *m, const char **channel, char *why,
                                   size_t why_len)
{
    *channel = NULL;
    int kind = frame_kind(m->type);
    if (kind < 0)
        return WS_CH_NONE;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(m->root, "channel");
    if (!ch || cJSON_IsNull(ch)) {
        daebus__utf8_snprintf(why, why_len, "Missing \"channel\": a %s frame needs a channel name",
                              m->type);
        return WS_CH_BAD;
    }
    if (!cJSON_IsString(ch)) {
        snprintf(why, why_len, "\"channel\" must be a string");
        return WS_CH_BAD;
    }
    if (daebus__ws_channel_name_error(ch->valuestring, strlen(ch->valuestring), why, why_len))
        return WS_CH_BAD;
    if (kind == WS_CH_BROADCAST && !cJSON_GetObjectItemCaseSensitive(m->root, "data")) {
        snprintf(why, why_len, "Missing \"data\": a broadcast frame needs the data to publish");
        return WS_CH_BAD;
    }
    *channel = ch->valuestring;
    return kind;
}

/* Queues the success answer {"channel":C[,extra...]}. extra is taken. */
static void answer(ws_client *c, const ws_message *m, const char *channel, cJSON *extra)
{
    cJSON *d = extra ? extra : cJSON_CreateObject();
    if (d)
        cJSON_AddStringToObject(d, "channel", channel);
    size_t n = 0;
    char *s = d ? daebus__ws_response_envelope(d, m->request_id, &n) : NULL;
    cJSON_Delete(d);
    if (s)
        daebus__ws_send_text_take(c, s, n);
}

static const char *publish_error(int rc)
{
    switch (rc) {
    case DAEBUS_ETOOBIG:
        return "Message too large for the channel";
    case DAEBUS_ECONN:
        return "Channel delivery is unavailable (Redis unreachable): try again";
    case DAEBUS_ENOMEM:
        return "Out of memory";
    default:
        return "Publish failed";
    }
}

static void on_subscribe(daebus_ws *ws, ws_client *c, const ws_message *m, const char *channel)
{
    char why[128];
    uint64_t since = 0;
    const char *epoch = NULL;
    int has_since = daebus__ws_channel_since_parse(m->root, &since, &epoch, why, sizeof why);
    if (has_since < 0) {
        daebus__ws_send_error(c, why, -1, m->request_id);
        return;
    }
    /* Recovery: the live messages are held from before the subscription. */
    ws_chhold *hold = NULL;
    if (has_since && daebus__ws_channel_history_of(ws, channel) &&
        !(hold = daebus__ws_channel_hold(ws, c, channel))) {
        daebus__ws_send_error(c, "Out of memory", -1, m->request_id);
        return;
    }
    int rc = daebus_ws_channel_subscribe(ws, c->id, channel);
    if (rc && rc != DAEBUS_ECONN) { /* ECONN: held here, missing from the cluster-wide list */
        daebus__ws_channel_release(ws, c, hold, 0, NULL);
        daebus__ws_send_error(c, rc == DAEBUS_ENOMEM ? "Out of memory" : "Subscribe failed", -1,
                              m->request_id);
        return;
    }
    cJSON *extra = cJSON_CreateObject();
    ws_chreplay rp = {0};
    if (extra) /* without a history store, "since" recovers nothing */
        daebus__ws_channel_replay_read(ws, channel, has_since, since, epoch, extra, &rp);
    answer(c, m, channel, extra);
    daebus__ws_channel_replay_send(ws, c, channel, &rp, hold);
}

static void on_broadcast(daebus_ws *ws, ws_client *c, const ws_message *m, const char *channel)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(m->root, "data");
    int rc = daebus_ws_channel_publish(ws, channel, data);
    if (rc)
        daebus__ws_send_error(c, publish_error(rc), -1, m->request_id);
    else
        answer(c, m, channel, NULL);
}

bool daebus__ws_channel_frame_run(daebus_ws *ws, ws_client *c, const ws_message *m)
{
    if (!ws->channels)
        return false;
    if (daebus__ws_presence_frame(ws, c, m))
        return true;
    char why[256];
    const char *channel;
    int kind = daebus__ws_channel_frame_parse(m, &channel, why, sizeof why);
    if (kind == WS_CH_NONE)
        return false;
    if (kind == WS_CH_BAD) {
        daebus__ws_send_error(c, why, -1, m->request_id);
        return true;
    }
    if (kind == WS_CH_UNSUBSCRIBE) {
        /* Leaving is always allowed; leaving a channel one is not in is a no-op. */
        int rc = daebus_ws_channel_unsubscribe(ws, c->id, channel);
        cJSON *extra = cJSON_CreateObject();
        if (extra)
            cJSON_AddBoolToObject(extra, "was_subscribed", rc != DAEBUS_ENOENT);
        answer(c, m, channel, extra);
        return true;
    }
    int op = kind == WS_CH_SUBSCRIBE ? DAEBUS_WS_AUTH_SUBSCRIBE : DAEBUS_WS_AUTH_PUBLISH;
    if (daebus_ws_authorize(ws, c->id, op, channel, NULL, why, sizeof why)) {
        daebus__ws_send_error(c, why, -1, m->request_id);
        return true;
    }
    if (kind == WS_CH_SUBSCRIBE)
        on_subscribe(ws, c, m, channel);
    else
        on_broadcast(ws, c, m, channel);
    return true;
}
