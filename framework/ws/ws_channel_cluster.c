/* ws_channel_cluster.c - channels across the replicas of a service.
 *
 * Publishing: one PUBLISH on the service's broadcast channel daebus:<svc>:ws
 * (the cluster's publisher queue: the caller does not wait for Redis), header
 * {"k":"ch","c":<channel>,"o":<instance>}, then '\n' and the data as JSON
 * text. Every replica, the publisher included, delivers it to its local
 * subscribers when it comes back from Redis, on its one subscriber thread:
 * every subscriber of every replica sees the channel's messages in the one
 * order Redis gave them. The frame is built once per replica.
 *
 * The cluster-wide subscriber lists: daebus:<svc>:ws:ch:<channel>, a hash
 * client id -> instance, and daebus:<svc>:ws:chs:<client>, the set of the
 * client's channels (to clean up after a client whose replica died).
 */
#include "ws_channel.h"
#include "ws_channel_presence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_cluster.h"
#include "ws_io.h"

#define KEY_CHAN   "ws:ch:"
#define KEY_CLIENT "ws:chs:"

/* Returns: daebus:<svc>:<kind><name> (malloc'd) or NULL. */
static char *key(const ws_cluster *cl, const char *kind, const char *name)
{
    size_t n = strlen(cl->service) + strlen(kind) + strlen(name) + 10;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "daebus:%s:%s%s", cl->service, kind, name);
    return k;
}

static void cmd_key(ws_dcmd *c, const ws_cluster *cl, const char *kind, const char *name)
{
    char *k = key(cl, kind, name);
    daebus__ws_dcmd_take(c, k, k ? strlen(k) : 0);
}

/* Runs n commands and drops the replies. Returns: 0, DAEBUS_ECONN, DAEBUS_ENOMEM. */
static int run(ws_cluster *cl, ws_dcmd *cmds, int n)
{
    redisReply *r[4] = {0};
    int rc = daebus__ws_dcmd_run(cl, cmds, n, r);
    if (rc == 0)
        daebus__ws_replies_free(r, n);
    return rc;
}

/* Fills cmds[0..2) with the writes of one subscription (add) or its removal. */
static void note_cmds(const ws_cluster *cl, ws_dcmd *cmds, const char *client_id,
                      const char *channel, bool add)
{
    daebus__ws_dcmd_str(&cmds[0], add ? "HSET" : "HDEL");
    cmd_key(&cmds[0], cl, KEY_CHAN, channel);
    daebus__ws_dcmd_str(&cmds[0], client_id);
    if (add)
        daebus__ws_dcmd_str(&cmds[0], cl->self);
    daebus__ws_dcmd_str(&cmds[1], add ? "SADD" : "SREM");
    cmd_key(&cmds[1], cl, KEY_CLIENT, client_id);
    daebus__ws_dcmd_str(&cmds[1], channel);
}

int daebus__ws_channel_cluster_note(daebus_ws *ws, const char *client_id, const char *channel,
                                    bool add)
{
    ws_cluster *cl = atomic_load(&ws->cluster);
    if (!cl)
        return 0;
    ws_dcmd cmds[2] = {{0}, {0}};
    note_cmds(cl, cmds, client_id, channel, add);
    return run(cl, cmds, 2);
}

/* Writes (add) or removes the subscriptions of pairs ([id, channel] arrays)
 * in one pipeline. Returns: 0, DAEBUS_ECONN, DAEBUS_ENOMEM. */
static int note_pairs(ws_cluster *cl, const cJSON *pairs, bool add)
{
    int n = cJSON_GetArraySize(pairs);
    if (n == 0)
        return 0;
    ws_dcmd *cmds = calloc(2 * (size_t)n, sizeof *cmds);
    redisReply **r = calloc(2 * (size_t)n, sizeof *r);
    int rc = cmds && r ? 0 : DAEBUS_ENOMEM;
    const cJSON *p;
    int i = 0;
    cJSON_ArrayForEach(p, pairs)
    {
        if (rc == 0)
            note_cmds(cl, &cmds[2 * i++], cJSON_GetArrayItem(p, 0)->valuestring,
                      cJSON_GetArrayItem(p, 1)->valuestring, add);
    }
    if (rc == 0 && (rc = daebus__ws_dcmd_run(cl, cmds, 2 * n, r)) == 0)
        daebus__ws_replies_free(r, 2 * n);
    free(cmds);
    free(r);
    return rc;
}

int daebus__ws_channel_resync(ws_cluster *cl)
{
    cJSON *pairs = daebus__ws_channel_pairs(cl->ws);
    int rc = pairs ? note_pairs(cl, pairs, true) : DAEBUS_ENOMEM;
    if (rc == 0)
        rc = daebus__ws_presence_resync(cl->ws, pairs);
    /* A subscription that ended meanwhile may have been removed from Redis
     * before it was written again: remove it again. */
    cJSON *gone = rc == 0 ? cJSON_CreateArray() : NULL;
    const cJSON *from = gone ? pairs : NULL, *p;
    cJSON_ArrayForEach(p, from)
    {
        if (!daebus__ws_channel_has(cl->ws, cJSON_GetArrayItem(p, 0)->valuestring,
                                    cJSON_GetArrayItem(p, 1)->valuestring))
            cJSON_AddItemToArray(gone, cJSON_Duplicate(p, true));
    }
    if (gone)
        rc = note_pairs(cl, gone, false);
    cJSON_Delete(gone);
    cJSON_Delete(pairs);
    return rc;
}

/* HDELs client_id from each channel's list and DELs its set, in one pipeline. */
static int read_list(ws_cluster *cl, const char *cmdname, const char *kind, const char *name,
                     cJSON **out);

static void forget(ws_cluster *cl, const char *client_id, const char *const *channels, size_t n)
{
    ws_dcmd *cmds = calloc(n + 1, sizeof *cmds);
    redisReply **r = calloc(n + 1, sizeof *r);
    if (!cmds || !r) {
        free(cmds);
        free(r);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        daebus__ws_dcmd_str(&cmds[i], "HDEL");
        cmd_key(&cmds[i], cl, KEY_CHAN, channels[i]);
        daebus__ws_dcmd_str(&cmds[i], client_id);
    }
    daebus__ws_dcmd_str(&cmds[n], "DEL");
    cmd_key(&cmds[n], cl, KEY_CLIENT, client_id);
    if (daebus__ws_dcmd_run(cl, cmds, (int)n + 1, r) == 0)
        daebus__ws_replies_free(r, (int)n + 1);
    free(r);
    free(cmds);
}

void daebus__ws_channel_cluster_forget(daebus_ws *ws, const char *client_id,
                                       const char *const *channels, size_t n)
{
    ws_cluster *cl = atomic_load(&ws->cluster);
    if (cl)
        forget(cl, client_id, channels, n);
}

void daebus__ws_channel_reaped(daebus_ws *ws, const char *client_id)
{
    ws_cluster *cl = atomic_load(&ws->cluster);
    cJSON *list = NULL;
    if (!cl || read_list(cl, "SMEMBERS", KEY_CLIENT, client_id, &list) != 0)
        return;
    int n = cJSON_GetArraySize(list);
    const char **names = calloc((size_t)n + 1, sizeof *names);
    for (int i = 0; names && i < n; i++)
        names[i] = cJSON_GetArrayItem(list, i)->valuestring;
    if (names) {
        forget(cl, client_id, names, (size_t)n);
        daebus__ws_presence_gone(ws, client_id, names, (size_t)n);
    }
    free(names);
    cJSON_Delete(list);
}

int daebus__ws_channel_cluster_publish(daebus_ws *ws, const ws_chmsg *m)
{
    ws_cluster *cl = atomic_load(&ws->cluster);
    cJSON *h = cJSON_CreateObject();
    ws_frame *body = daebus__ws_frame_new(0, m->data, m->data_len);
    int rc = DAEBUS_ENOMEM;
    if (h && body && cJSON_AddStringToObject(h, "k", "ch") &&
        cJSON_AddStringToObject(h, "c", m->channel) &&
        (!m->except || cJSON_AddStringToObject(h, "x", m->except))) {
        rc = daebus__ws_cluster_publish_async(cl, cl->chan_all, h, body);
        if (rc == 0)
            atomic_fetch_add(&ws->st_cluster_pub, 1);
    }
    cJSON_Delete(h);
    daebus__ws_frame_unref(body);
    return rc;
}

void daebus__ws_channel_recv(daebus_ws *ws, const cJSON *h, const char *body, size_t len)
{
    /* A history publish (ws_channel_recover.c) names them "channel", "offset", "epoch". */
    bool hist = !cJSON_GetObjectItemCaseSensitive(h, "c");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(h, hist ? "channel" : "c");
    if (!cJSON_IsString(c) || daebus_ws_channel_check_name(c->valuestring, NULL))
        return;
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(h, hist ? "offset" : "off");
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(h, hist ? "epoch" : "ep");
    ws_chmsg m = {.channel = c->valuestring,
                  .data = body,
                  .data_len = len,
                  .except = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "x"))};
    if (cJSON_IsNumber(off) && off->valuedouble >= 1 && cJSON_IsString(ep)) { /* history */
        m.has_offset = true;
        m.offset = (uint64_t)off->valuedouble;
        m.epoch = ep->valuestring;
    }
    ws_frame *f = daebus__ws_channel_frame(&m);
    if (f && m.has_offset)
        daebus__ws_channel_deliver_history(ws, &m, f);
    else if (f)
        daebus__ws_channel_deliver_except(ws, m.channel, f, 0, NULL, m.except);
    daebus__ws_frame_unref(f);
}

/* Runs cmdname on daebus:<svc>:<kind><name> (HKEYS, SMEMBERS) and stores the
 * strings of its array reply as a JSON array in *out.
 * Returns: 0, DAEBUS_ENOMEM, DAEBUS_ECONN. */
static int read_list(ws_cluster *cl, const char *cmdname, const char *kind, const char *name,
                     cJSON **out)
{
    ws_dcmd cmd = {0};
    redisReply *r = NULL;
    daebus__ws_dcmd_str(&cmd, cmdname);
    cmd_key(&cmd, cl, kind, name);
    int rc = daebus__ws_dcmd_run(cl, &cmd, 1, &r);
    if (rc)
        return rc;
    *out = cJSON_CreateArray();
    for (size_t i = 0; *out && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        if (r->element[i]->str)
            cJSON_AddItemToArray(*out, cJSON_CreateString(r->element[i]->str));
    freeReplyObject(r);
    return *out ? 0 : DAEBUS_ENOMEM;
}

int daebus__ws_channel_cluster_subscribers(daebus_ws *ws, const char *channel, cJSON **ids_out)
{
    return read_list(atomic_load(&ws->cluster), "HKEYS", KEY_CHAN, channel, ids_out);
}

int daebus__ws_channel_cluster_of(daebus_ws *ws, const char *client_id, cJSON **out)
{
    if (!daebus__ws_dir_has(ws, client_id))
        return DAEBUS_ENOENT;
    return read_list(atomic_load(&ws->cluster), "SMEMBERS", KEY_CLIENT, client_id, out);
}

int daebus__ws_channel_remote(daebus_ws *ws, const char *client_id, const char *channel, bool add,
                              const char *type)
{
    cJSON *h = cJSON_CreateObject();
    int rc = DAEBUS_ENOMEM;
    if (h && cJSON_AddStringToObject(h, "k", "chs") &&
        cJSON_AddStringToObject(h, "id", client_id) && cJSON_AddStringToObject(h, "c", channel) &&
        cJSON_AddBoolToObject(h, "add", add) && (!type || cJSON_AddStringToObject(h, "t", type)))
        rc = daebus__ws_dir_control(ws, client_id, h);
    cJSON_Delete(h);
    return rc < 0 ? rc : rc ? 0 : DAEBUS_ENOENT;
}

void daebus__ws_channel_remote_apply(daebus_ws *ws, const cJSON *h)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(h, "id");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(h, "c");
    if (!cJSON_IsString(id) || !cJSON_IsString(c))
        return;
    /* Local calls: the table, then the cluster-wide lists (a round trip on
     * the publisher pool, not on this subscriber connection). */
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "add"))) {
        daebus_ws_subscription s = {
            .type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "t"))};
        daebus_ws_channel_subscribe_ex(ws, id->valuestring, c->valuestring, &s, NULL);
    } else {
        daebus_ws_channel_unsubscribe(ws, id->valuestring, c->valuestring);
    }
}
