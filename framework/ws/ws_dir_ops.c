/* ws_dir_ops.c - cross-replica operations and the cluster-wide views.
 *
 * A send to clients of other replicas is one PUBLISH per replica that holds
 * recipients, on that replica's channel, carrying the recipients' ids and the
 * frame serialised once here. A single recipient costs one round trip (a
 * script finds its replica and publishes); several cost two (HMGET, then the
 * PUBLISHes pipelined). The views read the directory (ws_directory.c) for
 * the other replicas and this replica's registry for its own clients.
 */
#include "ws_cluster.h"

#include <stdlib.h>
#include <string.h>

#include "daebus/log.h"
#include "ws_client.h"

/* ---- sending ---- */

static cJSON *header(const char *kind)
{
    cJSON *h = cJSON_CreateObject();
    if (h)
        cJSON_AddStringToObject(h, "k", kind);
    return h;
}

/* One recipient: SEND1. Returns: 1 reached, 0 not found, or a negative code. */
static int send_one(ws_cluster *cl, const char *id, cJSON *h, const ws_frame *f)
{
    char *m;
    size_t len = daebus__ws_cluster_message(cl, h, f, 0, &m);
    if (!len)
        return DAEBUS_ENOMEM;
    ws_dcmd cmd = {0};
    daebus__ws_dcmd_eval(cl, &cmd, WS_LUA_SEND1, 1);
    daebus__ws_dcmd_str(&cmd, cl->key_clients);
    daebus__ws_dcmd_str(&cmd, id);
    daebus__ws_dcmd_str(&cmd, cl->self);
    daebus__ws_dcmd_str(&cmd, cl->chan_prefix);
    daebus__ws_dcmd_take(&cmd, m, len);
    redisReply *r = NULL;
    daebus__ws_cluster_drain(cl); /* after this thread's queued broadcasts */
    int rc = daebus__ws_dcmd_run(cl, &cmd, 1, &r);
    if (rc)
        return rc;
    rc = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    if (rc)
        atomic_fetch_add(&cl->ws->st_cluster_pub, 1);
    freeReplyObject(r);
    return rc;
}

/* The owners of ids[i] (done[i] false) in a HMGET reply. Returns: the reply
 * or NULL (error: *rc set). */
static redisReply *owners_of(ws_cluster *cl, const char *const *ids, size_t n, const bool *done,
                             int *rc)
{
    ws_dcmd cmd = {0};
    daebus__ws_dcmd_str(&cmd, "HMGET");
    daebus__ws_dcmd_str(&cmd, cl->key_clients);
    for (size_t i = 0; i < n; i++)
        daebus__ws_dcmd_str(&cmd, done[i] ? "" : ids[i]);
    redisReply *r = NULL;
    *rc = daebus__ws_dcmd_run(cl, &cmd, 1, &r);
    if (*rc == 0 && (r->type != REDIS_REPLY_ARRAY || r->elements != n)) {
        freeReplyObject(r);
        *rc = DAEBUS_EREPLY;
        return NULL;
    }
    return *rc ? NULL : r;
}

/* Publishes one "send" message per distinct owner in own[0..n) (NULL: skip).
 * Returns: recipients reached, or a negative code. */
static int publish_grouped(ws_cluster *cl, const char *const *ids, const char **own, size_t n,
                           const ws_frame *f, bool *reached)
{
    ws_dcmd *cmds = calloc(n ? n : 1, sizeof *cmds);
    int *counts = calloc(n ? n : 1, sizeof *counts);
    int *group = calloc(n ? n : 1, sizeof *group);
    int k = 0, rc = cmds && counts && group ? 0 : DAEBUS_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        group[i] = -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!own[i])
            continue;
        const char *o = own[i];
        cJSON *h = header("send");
        cJSON *a = h ? cJSON_AddArrayToObject(h, "ids") : NULL;
        for (size_t j = i; a && j < n; j++) {
            if (own[j] && strcmp(own[j], o) == 0) {
                cJSON_AddItemToArray(a, cJSON_CreateString(ids[j]));
                counts[k]++;
                group[j] = k;
                own[j] = NULL;
            }
        }
        char *m = NULL;
        size_t len = a ? daebus__ws_cluster_message(cl, h, f, 0, &m) : 0;
        cJSON_Delete(h);
        daebus__ws_dcmd_str(&cmds[k], "PUBLISH");
        daebus__ws_dcmd_cat(&cmds[k], cl->chan_prefix, o);
        daebus__ws_dcmd_take(&cmds[k++], m, len);
    }
    redisReply **r = k ? calloc((size_t)k, sizeof *r) : NULL;
    if (rc == 0 && k)
        daebus__ws_cluster_drain(cl); /* after this thread's queued broadcasts */
    if (rc == 0 && k)
        rc = r ? daebus__ws_dcmd_run(cl, cmds, k, r) : DAEBUS_ENOMEM;
    int total = 0;
    for (int i = 0; rc == 0 && i < k; i++) {
        if (r[i]->type == REDIS_REPLY_INTEGER && r[i]->integer > 0) {
            total += counts[i];
            atomic_fetch_add(&cl->ws->st_cluster_pub, 1);
        }
    }
    for (size_t j = 0; rc == 0 && reached && j < n; j++) {
        const redisReply *g = group[j] >= 0 ? r[group[j]] : NULL;
        if (g)
            reached[j] = g->type == REDIS_REPLY_INTEGER && g->integer > 0;
    }
    if (rc == 0)
        daebus__ws_replies_free(r, k);
    for (int i = 0; cmds && i < k; i++)
        daebus__ws_dcmd_free(&cmds[i]); /* a no-op once run */
    free(group);
    free(r);
    free(cmds);
    free(counts);
    return rc ? rc : total;
}

int daebus__ws_dir_send(daebus_ws *ws, const char *const *ids, size_t n, const bool *done,
                        const ws_frame *f, bool *reached)
{
    ws_cluster *cl = ws->cluster;
    size_t left = 0, last = 0;
    for (size_t i = 0; i < n; i++)
        if (!done[i]) {
            left++;
            last = i;
        }
    if (!cl || !left)
        return 0;
    if (left == 1) {
        cJSON *h = header("send");
        cJSON *a = h ? cJSON_AddArrayToObject(h, "ids") : NULL;
        if (a)
            cJSON_AddItemToArray(a, cJSON_CreateString(ids[last]));
        int rc = a ? send_one(cl, ids[last], h, f) : DAEBUS_ENOMEM;
        cJSON_Delete(h);
        if (reached)
            reached[last] = rc > 0;
        return rc;
    }
    int rc;
    redisReply *r = owners_of(cl, ids, n, done, &rc);
    if (!r)
        return rc;
    const char **own = calloc(n, sizeof *own);
    if (!own) {
        freeReplyObject(r);
        return DAEBUS_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = r->element[i];
        if (!done[i] && e->type == REDIS_REPLY_STRING && strcmp(e->str, cl->self) != 0)
            own[i] = e->str;
    }
    rc = publish_grouped(cl, ids, own, n, f, reached);
    free(own);
    freeReplyObject(r);
    return rc;
}

int daebus__ws_dir_control(daebus_ws *ws, const char *id, cJSON *h)
{
    ws_cluster *cl = ws->cluster;
    return cl ? send_one(cl, id, h, NULL) : 0;
}

int daebus__ws_dir_disconnect(daebus_ws *ws, const char *id, int code, const char *reason)
{
    ws_cluster *cl = ws->cluster;
    if (!cl)
        return DAEBUS_ENOENT;
    cJSON *h = header("disc");
    cJSON *a = h ? cJSON_AddArrayToObject(h, "ids") : NULL;
    if (a) {
        cJSON_AddItemToArray(a, cJSON_CreateString(id));
        cJSON_AddNumberToObject(h, "code", code);
        cJSON_AddStringToObject(h, "reason", reason);
    }
    int rc = a ? send_one(cl, id, h, NULL) : DAEBUS_ENOMEM;
    cJSON_Delete(h);
    return rc < 0 ? rc : rc ? 0 : DAEBUS_ENOENT;
}

/* ---- the directory's views ---- */

/* The remote part of the directory: id, instance, ... of the clients of the
 * other live replicas (VIEW). Returns: the array reply or NULL (*rc set). */
static redisReply *remote_view(ws_cluster *cl, int *rc)
{
    ws_dcmd cmd = {0};
    daebus__ws_dcmd_eval(cl, &cmd, WS_LUA_VIEW, 1);
    daebus__ws_dcmd_str(&cmd, cl->key_clients);
    daebus__ws_dcmd_str(&cmd, cl->key_alive);
    daebus__ws_dcmd_str(&cmd, cl->self);
    redisReply *r = NULL;
    *rc = daebus__ws_dcmd_run(cl, &cmd, 1, &r);
    if (*rc == 0 && r->type != REDIS_REPLY_ARRAY) {
        if (r->type == REDIS_REPLY_ERROR)
            daebus_log(DAEBUS_LOG_ERROR, "websocket", "cluster view: %s", r->str);
        freeReplyObject(r);
        *rc = DAEBUS_EREPLY;
    }
    return *rc ? NULL : r;
}

/* The hashes of the remote clients of view v (id, instance, ... pairs).
 * Returns: 0 with replies[0..n/2) set, or a negative code. */
static int remote_hashes(ws_cluster *cl, const redisReply *v, redisReply **replies)
{
    int k = (int)(v->elements / 2);
    if (!k)
        return 0;
    ws_dcmd *cmds = calloc((size_t)k, sizeof *cmds);
    if (!cmds)
        return DAEBUS_ENOMEM;
    for (int i = 0; i < k; i++) {
        daebus__ws_dcmd_str(&cmds[i], "HGETALL");
        daebus__ws_dcmd_cat(&cmds[i], cl->key_client, v->element[2 * i]->str);
    }
    int rc = daebus__ws_dcmd_run(cl, cmds, k, replies);
    free(cmds);
    return rc;
}

/* The metadata of a local client plus its instance id. */
static cJSON *local_metadata(daebus_ws *ws, ws_client *c)
{
    cJSON *m = daebus__ws_client_metadata(c);
    if (m)
        cJSON_AddStringToObject(m, "instance_id", daebus_app_instance_id(ws->app));
    return m;
}

int daebus__ws_dir_send_filter(daebus_ws *ws, daebus_ws_filter_fn *fn, void *user,
                               const ws_frame *f)
{
    ws_cluster *cl = ws->cluster;
    if (!cl)
        return 0;
    int rc;
    redisReply *v = remote_view(cl, &rc);
    if (!v)
        return rc;
    size_t k = v->elements / 2;
    redisReply **h = calloc(k ? k : 1, sizeof *h);
    const char **ids = calloc(k ? k : 1, sizeof *ids);
    const char **own = calloc(k ? k : 1, sizeof *own);
    rc = h && ids && own ? remote_hashes(cl, v, h) : DAEBUS_ENOMEM;
    for (size_t i = 0; rc == 0 && i < k; i++) {
        ids[i] = v->element[2 * i]->str;
        cJSON *m = daebus__ws_dir_metadata(h[i], ids[i]);
        if (m && fn(ids[i], m, user))
            own[i] = v->element[2 * i + 1]->str;
        cJSON_Delete(m);
    }
    if (rc == 0) {
        daebus__ws_replies_free(h, (int)k);
        rc = publish_grouped(cl, ids, own, k, f, NULL);
    }
    free(h);
    free(ids);
    free(own);
    freeReplyObject(v);
    return rc;
}

/* ---- client data ---- */

int daebus__ws_dir_set_data(daebus_ws *ws, const char *id, const char *key, const cJSON *value,
                            bool local)
{
    ws_cluster *cl = ws->cluster;
    if (!cl)
        return local ? 0 : DAEBUS_ENOENT;
    char *v = cJSON_PrintUnformatted(value);
    cJSON *h = header("data");
    char *m = NULL;
    size_t len = 0;
    if (h && !local) {
        cJSON_AddStringToObject(h, "id", id);
        cJSON_AddStringToObject(h, "key", key);
        cJSON_AddItemToObject(h, "value", cJSON_Duplicate(value, true));
        len = daebus__ws_cluster_message(cl, h, NULL, 0, &m);
    }
    cJSON_Delete(h);
    if (!v || (!local && !len)) {
        free(v);
        free(m);
        return DAEBUS_ENOMEM;
    }
    ws_dcmd cmd = {0};
    daebus__ws_dcmd_eval(cl, &cmd, WS_LUA_SETDATA, 2);
    daebus__ws_dcmd_str(&cmd, cl->key_clients);
    daebus__ws_dcmd_cat(&cmd, cl->key_client, id);
    daebus__ws_dcmd_str(&cmd, id);
    daebus__ws_dcmd_cat(&cmd, "u:", key);
    daebus__ws_dcmd_take(&cmd, v, strlen(v));
    daebus__ws_dcmd_str(&cmd, cl->chan_prefix);
    if (m)
        daebus__ws_dcmd_take(&cmd, m, len);
    else
        daebus__ws_dcmd_str(&cmd, "");
    daebus__ws_dcmd_str(&cmd, cl->self);
    redisReply *r = NULL;
    if (!local)
        daebus__ws_cluster_drain(cl); /* after this thread's queued broadcasts */
    int rc = daebus__ws_dcmd_run(cl, &cmd, 1, &r);
    if (rc) {
        if (local)
            atomic_store(&cl->resync, 1);
        return rc;
    }
    rc = r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? 0 : DAEBUS_ENOENT;
    if (rc == 0 && !local)
        atomic_fetch_add(&ws->st_cluster_pub, 1);
    freeReplyObject(r);
    return rc;
}

/* The directory hash of a client of a live replica (META), or NULL. */
static redisReply *remote_hash(ws_cluster *cl, const char *id, int *rc)
{
    ws_dcmd cmd = {0};
    daebus__ws_dcmd_eval(cl, &cmd, WS_LUA_META, 2);
    daebus__ws_dcmd_str(&cmd, cl->key_clients);
    daebus__ws_dcmd_cat(&cmd, cl->key_client, id);
    daebus__ws_dcmd_str(&cmd, id);
    daebus__ws_dcmd_str(&cmd, cl->key_alive);
    redisReply *r = NULL;
    *rc = daebus__ws_dcmd_run(cl, &cmd, 1, &r);
    if (*rc)
        return NULL;
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        freeReplyObject(r);
        *rc = DAEBUS_ENOENT;
        return NULL;
    }
    return r;
}

cJSON *daebus__ws_dir_get_data(daebus_ws *ws, const char *id, const char *key)
{
    int rc;
    redisReply *r = ws->cluster ? remote_hash(ws->cluster, id, &rc) : NULL;
    cJSON *m = r ? daebus__ws_dir_metadata(r, id) : NULL;
    if (r)
        freeReplyObject(r);
    /* Only user data: the fixed keys are refused by set_client_data. */
    cJSON *v = m ? cJSON_DetachItemFromObjectCaseSensitive(m, key) : NULL;
    cJSON_Delete(m);
    return v;
}

bool daebus__ws_dir_has(daebus_ws *ws, const char *id)
{
    int rc;
    redisReply *r = ws->cluster ? remote_hash(ws->cluster, id, &rc) : NULL;
    if (r)
        freeReplyObject(r);
    return r != NULL;
}

/* ---- public views ---- */

int daebus_ws_cluster_client_count(daebus_ws *ws, size_t *out)
{
    if (!ws || !out)
        return DAEBUS_EINVAL;
    *out = daebus_ws_get_client_count(ws);
    if (!ws->cluster)
        return 0;
    int rc;
    redisReply *v = remote_view(ws->cluster, &rc);
    if (!v)
        return rc;
    *out += v->elements / 2;
    freeReplyObject(v);
    return 0;
}

int daebus_ws_cluster_clients(daebus_ws *ws, cJSON **ids_out)
{
    if (!ws || !ids_out)
        return DAEBUS_EINVAL;
    *ids_out = NULL;
    cJSON *a = daebus_ws_get_clients(ws);
    if (!a)
        return DAEBUS_ENOMEM;
    if (ws->cluster) {
        int rc;
        redisReply *v = remote_view(ws->cluster, &rc);
        if (!v) {
            cJSON_Delete(a);
            return rc;
        }
        for (size_t i = 0; i + 1 < v->elements; i += 2)
            cJSON_AddItemToArray(a, cJSON_CreateString(v->element[i]->str));
        freeReplyObject(v);
    }
    *ids_out = a;
    return 0;
}

int daebus_ws_cluster_client_metadata(daebus_ws *ws, const char *client_id, cJSON **out)
{
    if (!ws || !client_id || !out)
        return DAEBUS_EINVAL;
    *out = NULL;
    ws_client *c = daebus__ws_client_find(ws, client_id);
    if (c) {
        *out = local_metadata(ws, c);
        daebus__ws_client_unref(c);
        return *out ? 0 : DAEBUS_ENOMEM;
    }
    if (!ws->cluster)
        return DAEBUS_ENOENT;
    int rc;
    redisReply *r = remote_hash(ws->cluster, client_id, &rc);
    if (!r)
        return rc;
    *out = daebus__ws_dir_metadata(r, client_id);
    freeReplyObject(r);
    return *out ? 0 : DAEBUS_ENOMEM;
}

int daebus_ws_cluster_clients_by_filter(daebus_ws *ws, daebus_ws_filter_fn *fn, void *user,
                                        cJSON **ids_out)
{
    if (!ws || !fn || !ids_out)
        return DAEBUS_EINVAL;
    *ids_out = NULL;
    cJSON *a = cJSON_CreateArray();
    if (!a)
        return DAEBUS_ENOMEM;
    ws_client **cs;
    size_t n = daebus__ws_snapshot(ws, &cs, WS_SNAP_CONNECTED);
    for (size_t i = 0; i < n; i++) {
        cJSON *m = local_metadata(ws, cs[i]);
        if (m && fn(cs[i]->id, m, user))
            cJSON_AddItemToArray(a, cJSON_CreateString(cs[i]->id));
        cJSON_Delete(m);
    }
    daebus__ws_snapshot_release(cs, n);
    if (!ws->cluster) {
        *ids_out = a;
        return 0;
    }
    int rc;
    redisReply *v = remote_view(ws->cluster, &rc);
    size_t k = v ? v->elements / 2 : 0;
    redisReply **h = v ? calloc(k ? k : 1, sizeof *h) : NULL;
    if (v)
        rc = h ? remote_hashes(ws->cluster, v, h) : DAEBUS_ENOMEM;
    for (size_t i = 0; rc == 0 && i < k; i++) {
        const char *id = v->element[2 * i]->str;
        cJSON *m = daebus__ws_dir_metadata(h[i], id);
        if (m && fn(id, m, user))
            cJSON_AddItemToArray(a, cJSON_CreateString(id));
        cJSON_Delete(m);
    }
    if (rc == 0)
        daebus__ws_replies_free(h, (int)k);
    free(h);
    if (v)
        freeReplyObject(v);
    if (rc) {
        cJSON_Delete(a);
        return rc;
    }
    *ids_out = a;
    return 0;
}
