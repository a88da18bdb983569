/* ws_channel_presence.c - presence on channels: join / leave events, the
 * member list, the "presence" client frame (docs/channels/presence.md).
 *
 * Event, to every subscriber of C but the client itself:
 *   {"type":"channel_presence","channel":C,"event":"join","client_id":X,"info":I}
 *   {"type":"channel_presence","channel":C,"event":"leave","client_id":X}
 * I is the client's user data (daebus_ws_set_client_data) when it joined.
 * Cluster mode: one PUBLISH on daebus:<svc>:ws, header
 * {"k":"chp","c":C,"ev":"join"|"leave","id":X,"o":instance}, then '\n' and I
 * (a join): the publisher queue that carries channel messages, so events and
 * messages reach every subscriber in Redis's one order; every replica, the
 * publisher included, delivers when Redis hands it back. The info is kept in
 * daebus:<svc>:ws:pi:<X> next to the core's lists.
 */
#include "ws_channel_presence.h"
#include "daebus/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_channel.h"
#include "ws_client.h"
#include "ws_cluster.h"
#include "ws_io.h"
#include "ws_request.h"

#define KEY_INFO "ws:pi:"

bool daebus__ws_presence_on(const daebus_ws *ws, const char *channel)
{
    return ws->ch_presence && daebus__ws_channel_glob(ws->ch_presence, channel);
}

/* Appends the key daebus:<svc>:ws:pi:<client_id> to c. */
static void info_key(ws_dcmd *c, const ws_cluster *cl, const char *client_id)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "daebus:%.200s:" KEY_INFO, cl->service);
    daebus__ws_dcmd_cat(c, prefix, client_id);
}

/* Returns: a copy of the local client's user data ({} when it has none or
 * is not here), or NULL when out of memory. Ownership: the caller frees it. */
static cJSON *local_info(daebus_ws *ws, const char *client_id)
{
    ws_client *c = daebus__ws_client_find(ws, client_id);
    cJSON *info = NULL;
    if (c) {
        pthread_mutex_lock(&c->lock);
        info = c->user_data ? cJSON_Duplicate(c->user_data, true) : NULL;
        pthread_mutex_unlock(&c->lock);
        daebus__ws_client_unref(c);
    }
    return info ? info : cJSON_CreateObject();
}

/* Returns: the event frame (one reference) or NULL. info (may be NULL) is borrowed. */
static ws_frame *event_frame(const char *channel, const char *event, const char *client_id,
                             const cJSON *info)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "type", "channel_presence") ||
        !cJSON_AddStringToObject(o, "channel", channel) ||
        !cJSON_AddStringToObject(o, "event", event) ||
        !cJSON_AddStringToObject(o, "client_id", client_id) ||
        (info && !cJSON_AddItemToObject(o, "info", cJSON_Duplicate(info, true)))) {
        cJSON_Delete(o);
        return NULL;
    }
    char *s = daebus_json_print(o, NULL);
    cJSON_Delete(o);
    return s ? daebus__ws_frame_text_take(s, strlen(s)) : NULL;
}

/* Sends one event (info: a join's, borrowed; NULL for a leave). */
static void send_event(daebus_ws *ws, const char *channel, const char *event, const char *client_id,
                       const cJSON *info)
{
    ws_cluster *cl = atomic_load(&ws->cluster);
    if (!cl) {
        ws_frame *f = event_frame(channel, event, client_id, info);
        if (f)
            daebus__ws_channel_deliver_except(ws, channel, f, 0, NULL, client_id);
        daebus__ws_frame_unref(f);
        return;
    }
    cJSON *h = cJSON_CreateObject();
    char *text = info ? daebus_json_print(info, NULL) : NULL;
    ws_frame *body = text ? daebus__ws_frame_new(0, text, strlen(text)) : NULL;
    if (h && (!info || body) && cJSON_AddStringToObject(h, "k", "chp") &&
        cJSON_AddStringToObject(h, "c", channel) && cJSON_AddStringToObject(h, "ev", event) &&
        cJSON_AddStringToObject(h, "id", client_id) &&
        daebus__ws_cluster_publish_async(cl, cl->chan_all, h, body) == 0)
        atomic_fetch_add(&ws->st_cluster_pub, 1);
    cJSON_Delete(h);
    free(text);
    daebus__ws_frame_unref(body);
}

/* Writes the info of client_id (SET daebus:<svc>:ws:pi:<id>). Returns: 0,
 * DAEBUS_ECONN, DAEBUS_ENOMEM. */
static int store_info(ws_cluster *cl, const char *client_id, const cJSON *info)
{
    char *text = daebus_json_print(info, NULL);
    if (!text)
        return DAEBUS_ENOMEM;
    ws_dcmd cmd = {0};
    redisReply *r = NULL;
    daebus__ws_dcmd_str(&cmd, "SET");
    info_key(&cmd, cl, client_id);
    daebus__ws_dcmd_str(&cmd, text);
    int rc = daebus__ws_dcmd_run(cl, &cmd, 1, &r);
    if (rc == 0)
        daebus__ws_replies_free(&r, 1);
    free(text);
    return rc;
}

/* Deletes the info of client_id. */
static void drop_info(ws_cluster *cl, const char *client_id)
{
    ws_dcmd cmd = {0};
    redisReply *r = NULL;
    daebus__ws_dcmd_str(&cmd, "DEL");
    info_key(&cmd, cl, client_id);
    if (daebus__ws_dcmd_run(cl, &cmd, 1, &r) == 0)
        daebus__ws_replies_free(&r, 1);
}

/* Returns: true if client_id is a local client. */
static bool is_local(daebus_ws *ws, const char *client_id)
{
    ws_client *c = daebus__ws_client_find(ws, client_id);
    daebus__ws_client_unref(c);
    return c != NULL;
}

void daebus__ws_presence_join(daebus_ws *ws, ws_client *c, const char *channel)
{
    if (!daebus__ws_presence_on(ws, channel))
        return;
    cJSON *info = local_info(ws, c->id);
    ws_cluster *cl = atomic_load(&ws->cluster);
    if (cl && info) /* the info for the member list, before anyone hears of the join */
        store_info(cl, c->id, info);
    if (info)
        send_event(ws, channel, "join", c->id, info);
    cJSON_Delete(info);
    /* The subscription may have ended meanwhile (another thread), its leave
     * sent before this join: the others get a last leave (and, the client
     * gone, its info goes again). */
    if (!daebus__ws_channel_has(ws, c->id, channel)) {
        const char *one[1] = {channel};
        if (is_local(ws, c->id))
            daebus__ws_presence_leave(ws, c->id, channel);
        else
            daebus__ws_presence_gone(ws, c->id, one, 1);
    }
}

int daebus__ws_presence_resync(daebus_ws *ws, const cJSON *pairs)
{
    ws_cluster *cl = atomic_load(&ws->cluster);
    const cJSON *p;
    int rc = 0;
    cJSON_ArrayForEach(p, pairs)
    {
        const char *id = cJSON_GetArrayItem(p, 0)->valuestring;
        if (rc || !cl || !daebus__ws_presence_on(ws, cJSON_GetArrayItem(p, 1)->valuestring))
            continue;
        if (!is_local(ws, id))
            continue; /* gone meanwhile: its cleanup deleted the info */
        cJSON *info = local_info(ws, id);
        rc = info ? store_info(cl, id, info) : DAEBUS_ENOMEM;
        cJSON_Delete(info);
        if (rc == 0 && !is_local(ws, id)) /* gone while it was written */
            drop_info(cl, id);
    }
    return rc;
}

void daebus__ws_presence_leave(daebus_ws *ws, const char *client_id, const char *channel)
{
    if (daebus__ws_presence_on(ws, channel))
        send_event(ws, channel, "leave", client_id, NULL);
}

void daebus__ws_presence_gone(daebus_ws *ws, const char *client_id, const char *const *channels,
                              size_t n)
{
    if (!ws->ch_presence)
        return;
    for (size_t i = 0; i < n; i++)
        daebus__ws_presence_leave(ws, client_id, channels[i]);
    ws_cluster *cl = atomic_load(&ws->cluster);
    if (cl)
        drop_info(cl, client_id);
}

void daebus__ws_presence_recv(daebus_ws *ws, const cJSON *h, const char *body, size_t len)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(h, "c");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(h, "ev");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(h, "id");
    if (!cJSON_IsString(c) || !cJSON_IsString(ev) || !cJSON_IsString(id) ||
        daebus_ws_channel_check_name(c->valuestring, NULL))
        return;
    bool join = strcmp(ev->valuestring, "join") == 0;
    if (!join && strcmp(ev->valuestring, "leave") != 0)
        return;
    cJSON *info = join ? cJSON_ParseWithLength(body, len) : NULL;
    if (join && !cJSON_IsObject(info)) {
        cJSON_Delete(info);
        info = cJSON_CreateObject();
    }
    ws_frame *f = event_frame(c->valuestring, ev->valuestring, id->valuestring, info);
    if (f)
        daebus__ws_channel_deliver_except(ws, c->valuestring, f, 0, NULL, id->valuestring);
    daebus__ws_frame_unref(f);
    cJSON_Delete(info);
}

/* ---- the member list ---- */

/* Adds {"client_id":id,"info":info} to members; info is taken ({} when NULL). */
static void add_member(cJSON *members, const char *id, cJSON *info)
{
    cJSON *m = cJSON_CreateObject();
    if (!m || !cJSON_AddStringToObject(m, "client_id", id)) {
        cJSON_Delete(m);
        cJSON_Delete(info);
        return;
    }
    cJSON_AddItemToObject(m, "info", cJSON_IsObject(info) ? info : cJSON_CreateObject());
    if (!cJSON_IsObject(info))
        cJSON_Delete(info);
    cJSON_AddItemToArray(members, m);
}

/* Reads the info of every id (one pipeline of GETs) into members. */
static int cluster_members(ws_cluster *cl, const cJSON *ids, cJSON *members)
{
    int n = cJSON_GetArraySize(ids);
    if (n == 0)
        return 0;
    ws_dcmd *cmds = calloc((size_t)n, sizeof *cmds);
    redisReply **r = calloc((size_t)n, sizeof *r);
    int rc = cmds && r ? 0 : DAEBUS_ENOMEM;
    for (int i = 0; rc == 0 && i < n; i++) {
        daebus__ws_dcmd_str(&cmds[i], "GET");
        info_key(&cmds[i], cl, cJSON_GetArrayItem(ids, i)->valuestring);
    }
    if (rc == 0 && (rc = daebus__ws_dcmd_run(cl, cmds, n, r)) == 0) {
        for (int i = 0; i < n; i++) {
            const char *s = r[i] && r[i]->type == REDIS_REPLY_STRING ? r[i]->str : NULL;
            add_member(members, cJSON_GetArrayItem(ids, i)->valuestring, s ? cJSON_Parse(s) : NULL);
        }
        daebus__ws_replies_free(r, n);
    }
    free(cmds);
    free(r);
    return rc;
}

int daebus_ws_channel_presence(daebus_ws *ws, const char *channel, cJSON **members_out)
{
    if (members_out)
        *members_out = NULL;
    if (!ws || !members_out || daebus_ws_channel_check_name(channel, NULL) ||
        !daebus__ws_presence_on(ws, channel))
        return DAEBUS_EINVAL;
    cJSON *ids = NULL;
    int rc = daebus_ws_channel_subscribers(ws, channel, &ids);
    cJSON *members = rc == 0 ? cJSON_CreateArray() : NULL;
    if (rc == 0 && !members)
        rc = DAEBUS_ENOMEM;
    ws_cluster *cl = atomic_load(&ws->cluster);
    if (rc == 0 && cl) {
        rc = cluster_members(cl, ids, members);
    } else if (rc == 0) {
        const cJSON *id;
        cJSON_ArrayForEach(id, ids)
        {
            add_member(members, id->valuestring, local_info(ws, id->valuestring));
        }
    }
    cJSON_Delete(ids);
    if (rc)
        cJSON_Delete(members);
    else
        *members_out = members;
    return rc;
}

/* ---- the client frame ---- */

/* Answers a presence frame for channel (c subscribed to it, presence on). */
static void answer_members(daebus_ws *ws, ws_client *c, const ws_message *m, const char *channel)
{
    cJSON *members = NULL;
    int rc = daebus_ws_channel_presence(ws, channel, &members);
    cJSON *d = rc == 0 ? cJSON_CreateObject() : NULL;
    if (!d) {
        cJSON_Delete(members);
        daebus__ws_send_error(c,
                              rc == DAEBUS_ECONN
                                  ? "Presence is unavailable (Redis unreachable): try again"
                                  : "Out of memory",
                              -1, m->request_id);
        return;
    }
    cJSON_AddStringToObject(d, "channel", channel);
    cJSON_AddItemToObject(d, "members", members);
    size_t n = 0;
    char *s = daebus__ws_response_envelope(d, m->request_id, &n);
    cJSON_Delete(d);
    if (s)
        daebus__ws_send_text_take(c, s, n);
}

bool daebus__ws_presence_frame(daebus_ws *ws, ws_client *c, const ws_message *m)
{
    if (strcmp(m->type, "presence") != 0)
        return false;
    char why[256];
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(m->root, "channel");
    if (!cJSON_IsString(ch)) {
        snprintf(why, sizeof why, "%s",
                 ch && !cJSON_IsNull(ch)
                     ? "\"channel\" must be a string"
                     : "Missing \"channel\": a presence frame needs a channel name");
    } else if (daebus__ws_channel_name_error(ch->valuestring, strlen(ch->valuestring), why,
                                             sizeof why) == 0) {
        if (!daebus__ws_presence_on(ws, ch->valuestring))
            snprintf(why, sizeof why, "Channel '%.200s' has no presence", ch->valuestring);
        else if (!daebus__ws_channel_has(ws, c->id, ch->valuestring))
            snprintf(why, sizeof why, "Not subscribed to channel '%.200s'", ch->valuestring);
        else {
            answer_members(ws, c, m, ch->valuestring);
            return true;
        }
    }
    daebus__ws_send_error(c, why, -1, m->request_id);
    return true;
}
