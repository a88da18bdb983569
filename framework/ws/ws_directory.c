/* ws_directory.c - the WebSocket client directory in Redis (cluster mode).
 *
 * Keys (docs/replicas.md, "WebSocket across replicas"):
 *   daebus:<svc>:ws:clients        hash  client id -> instance holding it
 *   daebus:<svc>:ws:client:<id>    hash  instance, meta (JSON of the fixed
 *                                        metadata), last_activity,
 *                                        messages_received, messages_sent,
 *                                        u:<key> (JSON of each user data key)
 *   daebus:<svc>:ws:inst:<inst>    set   the client ids of one instance
 *   daebus:<svc>:ws:instances      set   instances with directory entries
 *   daebus:<svc>:ws:reap:<inst>    string the survivor reaping a dead
 *                                        instance (SET NX, 30 s)
 *   daebus:<svc>:ws:alive:<inst>   string set every half heartbeat with a
 *                                        TTL of 2.5 heartbeats
 * A client whose instance's alive key expired is out of every view at once
 * and is reaped by one survivor. The alive key is written before the
 * instance joins ws:instances (resync), so that after a Redis restart no
 * replica reaps a live one that has not refreshed it yet. Each multi-key step is one Lua script, so that two
 * replicas never interleave inside it.
 */
#include "ws_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "daebus/log.h"
#include "ws_channel.h"
#include "ws_client.h"

#define LOGC     "websocket"
#define REAP_TTL "30"
/* Clients per TOUCH script call (a call holds Redis for its length). */
#define TOUCH_BATCH 200

/* ---- scripts ---- */

static const char *const lua[WS_LUA_COUNT] = {
    /* ANNOUNCE  KEYS clients, client:<id>, inst:<self>, instances;
     * ARGV id, self, alive-key prefix, field, value, ...
     * Returns: 1 (entered), or the live instance holding that id. */
    "local o = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if o and o ~= ARGV[2] and redis.call('EXISTS', ARGV[3] .. o) == 1 then return o end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('DEL', KEYS[2])\n"
    "redis.call('HSET', KEYS[2], unpack(ARGV, 4))\n"
    "redis.call('SADD', KEYS[3], ARGV[1])\n"
    "redis.call('SADD', KEYS[4], ARGV[2])\n"
    "return 1",
    /* REMOVE  KEYS clients, client:<id>, inst:<owner>; ARGV id, owner */
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then\n"
    "  redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "  redis.call('DEL', KEYS[2])\n"
    "end\n"
    "redis.call('SREM', KEYS[3], ARGV[1])\n"
    "return 1",
    /* TOUCH  KEYS clients; ARGV self, client-key prefix, then per client:
     * id, last_activity, messages_received, messages_sent (each written only
     * while this replica holds the id). Returns: how many were written. */
    "local n = 0\n"
    "for i = 3, #ARGV, 4 do\n"
    "  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then\n"
    "    redis.call('HSET', ARGV[2] .. ARGV[i], 'last_activity', ARGV[i + 1],\n"
    "               'messages_received', ARGV[i + 2], 'messages_sent', ARGV[i + 3])\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n",
    /* SEND1  KEYS clients; ARGV id, self, channel prefix, message
     * Returns: receivers, -1 no such client, -2 ours (gone meanwhile). */
    "local o = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if not o then return -1 end\n"
    "if o == ARGV[2] then return -2 end\n"
    "return redis.call('PUBLISH', ARGV[3] .. o, ARGV[4])",
    /* VIEW  KEYS clients; ARGV alive-key prefix, self
     * Returns: id, instance, ... of the clients of live instances but self. */
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "local live, out = {}, {}\n"
    "for i = 1, #all, 2 do\n"
    "  local o = all[i + 1]\n"
    "  if live[o] == nil then\n"
    "    live[o] = o ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. o) == 1\n"
    "  end\n"
    "  if live[o] then out[#out + 1] = all[i]; out[#out + 1] = o end\n"
    "end\n"
    "return out",
    /* META  KEYS clients, client:<id>; ARGV id, alive-key prefix
     * Returns: the client's hash, or nil (unknown or its instance dead). */
    "local o = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if not o or redis.call('EXISTS', ARGV[2] .. o) == 0 then return false end\n"
    "return redis.call('HGETALL', KEYS[2])",
    /* SETDATA  KEYS clients, client:<id>; ARGV id, field, value, channel
     * prefix, message, self. Returns: 1, or -1 no such client. */
    "local o = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if not o then return -1 end\n"
    "redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])\n"
    "if o ~= ARGV[6] then redis.call('PUBLISH', ARGV[4] .. o, ARGV[5]) end\n"
    "return 1",
    /* CLAIM  KEYS alive:<dead>, reap:<dead>; ARGV self, ttl
     * Returns: 1 when this replica reaps the dead one. */
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end\n"
    "return 0",
};

/* ---- command building ---- */

static bool grow(ws_dcmd *c)
{
    if (c->argc < c->cap)
        return true;
    int cap = c->cap ? c->cap * 2 : 16;
    const char **a = realloc(c->argv, (size_t)cap * sizeof *a);
    if (a)
        c->argv = a;
    size_t *l = a ? realloc(c->lens, (size_t)cap * sizeof *l) : NULL;
    if (l)
        c->lens = l;
    if (!a || !l) {
        c->oom = 1;
        return false;
    }
    c->cap = cap;
    return true;
}

void daebus__ws_dcmd_arg(ws_dcmd *c, const char *s, size_t len)
{
    if (c->oom || !grow(c))
        return;
    c->argv[c->argc] = s;
    c->lens[c->argc++] = len;
}

void daebus__ws_dcmd_str(ws_dcmd *c, const char *s)
{
    daebus__ws_dcmd_arg(c, s, strlen(s));
}

void daebus__ws_dcmd_take(ws_dcmd *c, char *s, size_t len)
{
    if (!s || c->oom) {
        c->oom = 1;
        free(s);
        return;
    }
    if (c->nown == c->owncap) {
        int cap = c->owncap ? c->owncap * 2 : 8;
        char **o = realloc(c->own, (size_t)cap * sizeof *o);
        if (!o) {
            c->oom = 1;
            free(s);
            return;
        }
        c->own = o;
        c->owncap = cap;
    }
    c->own[c->nown++] = s;
    daebus__ws_dcmd_arg(c, s, len);
}

void daebus__ws_dcmd_cat(ws_dcmd *c, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    daebus__ws_dcmd_take(c, s, la + lb);
}

void daebus__ws_dcmd_num(ws_dcmd *c, double v)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%.17g", v);
    daebus__ws_dcmd_take(c, strdup(buf), (size_t)n);
}

_Static_assert(WS_LUA_COUNT <= 9, "ws_cluster.sha holds 9 scripts");

void daebus__ws_dcmd_eval(ws_cluster *cl, ws_dcmd *c, int script, int nkeys)
{
    char buf[16];
    int n = snprintf(buf, sizeof buf, "%d", nkeys);
    if (atomic_load(&cl->have_sha)) {
        daebus__ws_dcmd_str(c, "EVALSHA");
        daebus__ws_dcmd_arg(c, cl->sha[script], 40);
        c->script = script + 1;
    } else {
        daebus__ws_dcmd_str(c, "EVAL");
        daebus__ws_dcmd_str(c, lua[script]);
    }
    daebus__ws_dcmd_take(c, strdup(buf), (size_t)n);
}

void daebus__ws_dir_load_scripts(ws_cluster *cl)
{
    if (atomic_load(&cl->have_sha))
        return;
    ws_dcmd cmds[WS_LUA_COUNT] = {{0}};
    redisReply *r[WS_LUA_COUNT] = {0};
    for (int i = 0; i < WS_LUA_COUNT; i++) {
        daebus__ws_dcmd_str(&cmds[i], "SCRIPT");
        daebus__ws_dcmd_str(&cmds[i], "LOAD");
        daebus__ws_dcmd_str(&cmds[i], lua[i]);
    }
    if (daebus__ws_dcmd_run(cl, cmds, WS_LUA_COUNT, r) != 0)
        return;
    int ok = 1;
    for (int i = 0; i < WS_LUA_COUNT; i++) {
        ok = ok && r[i]->type == REDIS_REPLY_STRING && r[i]->len == 40;
        if (ok)
            memcpy(cl->sha[i], r[i]->str, 41);
    }
    daebus__ws_replies_free(r, WS_LUA_COUNT);
    if (ok)
        atomic_store(&cl->have_sha, 1);
}

/* Redis lost its script cache (a restart, SCRIPT FLUSH): runs the EVALSHA
 * cmd again as EVAL (which caches the script again); *reply is replaced. */
static void eval_again(ws_cluster *cl, ws_dcmd *cmd, redisReply **reply)
{
    cmd->argv[0] = "EVAL";
    cmd->lens[0] = 4;
    cmd->argv[1] = lua[cmd->script - 1];
    cmd->lens[1] = strlen(lua[cmd->script - 1]);
    daebus__redis_cmd rc = {cmd->argc, cmd->argv, cmd->lens};
    redisReply *r = NULL;
    if (daebus__ws_cluster_run(cl, &rc, 1, &r) == 0) {
        freeReplyObject(*reply);
        *reply = r;
    }
}

void daebus__ws_dcmd_free(ws_dcmd *c)
{
    for (int i = 0; i < c->nown; i++)
        free(c->own[i]);
    free(c->own);
    free(c->argv);
    free(c->lens);
    memset(c, 0, sizeof *c);
}

void daebus__ws_replies_free(redisReply **replies, int n)
{
    for (int i = 0; replies && i < n; i++)
        if (replies[i])
            freeReplyObject(replies[i]);
}

int daebus__ws_dcmd_run(ws_cluster *cl, ws_dcmd *cmds, int n, redisReply **replies)
{
    daebus__redis_cmd *rc = calloc((size_t)(n ? n : 1), sizeof *rc);
    int status = rc ? 0 : DAEBUS_ENOMEM;
    for (int i = 0; i < n && status == 0; i++) {
        if (cmds[i].oom)
            status = DAEBUS_ENOMEM;
        rc[i] = (daebus__redis_cmd){cmds[i].argc, cmds[i].argv, cmds[i].lens};
    }
    if (status == 0 && n > 0)
        status = daebus__ws_cluster_run(cl, rc, n, replies);
    for (int i = 0; status == 0 && i < n; i++)
        if (cmds[i].script && replies[i]->type == REDIS_REPLY_ERROR &&
            strncmp(replies[i]->str, "NOSCRIPT", 8) == 0)
            eval_again(cl, &cmds[i], &replies[i]);
    for (int i = 0; i < n; i++)
        daebus__ws_dcmd_free(&cmds[i]);
    free(rc);
    return status;
}

/* Runs the k commands of cmds (freed) and drops their replies.
 * Returns: as daebus__ws_dcmd_run. */
static int run_discard(ws_cluster *cl, ws_dcmd *cmds, int k)
{
    redisReply **r = k ? calloc((size_t)k, sizeof *r) : NULL;
    int rc = !k ? 0 : r ? daebus__ws_dcmd_run(cl, cmds, k, r) : DAEBUS_ENOMEM;
    if (k && rc == 0)
        daebus__ws_replies_free(r, k);
    for (int i = 0; i < k; i++)
        daebus__ws_dcmd_free(&cmds[i]); /* a no-op once run */
    free(r);
    return rc;
}

/* ---- metadata ---- */

static double field_num(const redisReply *v)
{
    return v && v->type == REDIS_REPLY_STRING ? strtod(v->str, NULL) : 0;
}

cJSON *daebus__ws_dir_metadata(const redisReply *hash, const char *id)
{
    const redisReply *meta = NULL, *inst = NULL, *la = NULL, *in = NULL, *out = NULL;
    for (size_t i = 0; hash && i + 1 < hash->elements; i += 2) {
        const char *f = hash->element[i]->str;
        const redisReply *v = hash->element[i + 1];
        if (!f || v->type != REDIS_REPLY_STRING)
            continue;
        if (!strcmp(f, "meta"))
            meta = v;
        else if (!strcmp(f, "instance"))
            inst = v;
        else if (!strcmp(f, "last_activity"))
            la = v;
        else if (!strcmp(f, "messages_received"))
            in = v;
        else if (!strcmp(f, "messages_sent"))
            out = v;
    }
    cJSON *m = meta ? cJSON_ParseWithLength(meta->str, meta->len) : NULL;
    if (!cJSON_IsObject(m)) {
        cJSON_Delete(m);
        m = cJSON_CreateObject();
        if (m)
            cJSON_AddStringToObject(m, "client_id", id);
    }
    if (!m)
        return NULL;
    double now = daebus__now_wall();
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(m, "connected_at");
    double last = la ? field_num(la) : now;
    cJSON_AddNumberToObject(m, "last_activity", last);
    cJSON_AddNumberToObject(m, "messages_received", field_num(in));
    cJSON_AddNumberToObject(m, "messages_sent", field_num(out));
    cJSON_AddNumberToObject(m, "uptime_seconds", cJSON_IsNumber(at) ? now - at->valuedouble : 0);
    cJSON_AddNumberToObject(m, "idle_seconds", now - last);
    for (size_t i = 0; hash && i + 1 < hash->elements; i += 2) {
        const char *f = hash->element[i]->str;
        const redisReply *v = hash->element[i + 1];
        if (!f || strncmp(f, "u:", 2) != 0 || v->type != REDIS_REPLY_STRING)
            continue;
        cJSON *val = cJSON_ParseWithLength(v->str, v->len);
        if (val)
            cJSON_AddItemToObject(m, f + 2, val);
    }
    cJSON_AddStringToObject(m, "instance_id", inst ? inst->str : "");
    return m;
}

/* ---- announce, remove ---- */

/* The ANNOUNCE command of c: everything the directory holds of it. */
static void announce_cmd(ws_cluster *cl, ws_client *c, ws_dcmd *cmd)
{
    daebus__ws_dcmd_eval(cl, cmd, WS_LUA_ANNOUNCE, 4);
    daebus__ws_dcmd_str(cmd, cl->key_clients);
    daebus__ws_dcmd_cat(cmd, cl->key_client, c->id);
    daebus__ws_dcmd_cat(cmd, cl->key_inst, cl->self);
    daebus__ws_dcmd_str(cmd, cl->key_insts);
    daebus__ws_dcmd_str(cmd, c->id);
    daebus__ws_dcmd_str(cmd, cl->self);
    daebus__ws_dcmd_str(cmd, cl->key_alive);
    daebus__ws_dcmd_str(cmd, "instance");
    daebus__ws_dcmd_str(cmd, cl->self);
    pthread_mutex_lock(&c->lock);
    cJSON *fixed = daebus__ws_client_fixed_metadata(c);
    char *meta = fixed ? cJSON_PrintUnformatted(fixed) : NULL;
    cJSON_Delete(fixed);
    daebus__ws_dcmd_str(cmd, "meta");
    daebus__ws_dcmd_take(cmd, meta, meta ? strlen(meta) : 0);
    c->dir_activity = c->last_activity;
    c->dir_in = c->msgs_in;
    c->dir_out = c->msgs_out;
    c->dir_out_mono = daebus__now_mono();
    daebus__ws_dcmd_str(cmd, "last_activity");
    daebus__ws_dcmd_num(cmd, c->last_activity);
    daebus__ws_dcmd_str(cmd, "messages_received");
    daebus__ws_dcmd_num(cmd, (double)c->msgs_in);
    daebus__ws_dcmd_str(cmd, "messages_sent");
    daebus__ws_dcmd_num(cmd, (double)c->msgs_out);
    for (const cJSON *it = c->user_data ? c->user_data->child : NULL; it; it = it->next) {
        daebus__ws_dcmd_cat(cmd, "u:", it->string);
        char *v = cJSON_PrintUnformatted(it);
        daebus__ws_dcmd_take(cmd, v, v ? strlen(v) : 0);
    }
    pthread_mutex_unlock(&c->lock);
}

int daebus__ws_dir_announce(daebus_ws *ws, ws_client *c)
{
    ws_cluster *cl = ws->cluster;
    if (!cl)
        return 0;
    ws_dcmd cmd = {0};
    announce_cmd(cl, c, &cmd);
    redisReply *r = NULL;
    int rc = daebus__ws_dcmd_run(cl, &cmd, 1, &r);
    if (rc) {
        atomic_store(&cl->resync, 1); /* entered when Redis returns */
        return 0;
    }
    if (r->type == REDIS_REPLY_STRING) {
        daebus_log(DAEBUS_LOG_WARNING, LOGC, "client id '%s' is in use on replica %s", c->id,
                   r->str);
        rc = DAEBUS_EEXIST;
    } else if (r->type == REDIS_REPLY_ERROR) {
        daebus_log(DAEBUS_LOG_ERROR, LOGC, "cluster: announcing client %s: %s", c->id, r->str);
        atomic_store(&cl->resync, 1);
    }
    freeReplyObject(r);
    return rc;
}

static void remove_cmd(ws_cluster *cl, const char *id, const char *owner, ws_dcmd *cmd)
{
    daebus__ws_dcmd_eval(cl, cmd, WS_LUA_REMOVE, 3);
    daebus__ws_dcmd_str(cmd, cl->key_clients);
    daebus__ws_dcmd_cat(cmd, cl->key_client, id);
    daebus__ws_dcmd_cat(cmd, cl->key_inst, owner);
    daebus__ws_dcmd_str(cmd, id);
    daebus__ws_dcmd_str(cmd, owner);
}

void daebus__ws_dir_remove(daebus_ws *ws, ws_client *c)
{
    ws_cluster *cl = ws->cluster;
    if (!cl || !atomic_load(&cl->up))
        return; /* the resync after Redis returns drops it */
    ws_dcmd cmd = {0};
    remove_cmd(cl, c->id, cl->self, &cmd);
    /* After a resync that may have announced c again (c is GONE by now:
     * a resync that starts later leaves it out). */
    pthread_mutex_lock(&cl->dir_lock);
    if (run_discard(cl, &cmd, 1) != 0)
        atomic_store(&cl->resync, 1);
    pthread_mutex_unlock(&cl->dir_lock);
}

/* ---- the cluster thread: flush, resync, reap ---- */

/* Has c's activity changed since the directory got it? Then *cmd (a TOUCH
 * being built, started when empty) gets c's figures. */
static void touch_if_changed(ws_cluster *cl, ws_client *c, double now, ws_dcmd *cmd)
{
    pthread_mutex_lock(&c->lock);
    double la = c->last_activity;
    uint64_t in = c->msgs_in, out = c->msgs_out;
    /* A client that only receives (broadcasts) changes messages_sent at
     * every tick: written at most every 5 heartbeats, or a broadcast to N
     * idle clients would cost N writes per tick (bench_vs_base). */
    bool acted = la != c->dir_activity || in != c->dir_in;
    bool sent = out != c->dir_out && now - c->dir_out_mono >= 5 * cl->heartbeat;
    if (acted || sent) {
        c->dir_activity = la;
        c->dir_in = in;
        c->dir_out = out;
        c->dir_out_mono = now;
    }
    pthread_mutex_unlock(&c->lock);
    if (!acted && !sent)
        return;
    if (!cmd->argc) {
        daebus__ws_dcmd_eval(cl, cmd, WS_LUA_TOUCH, 1);
        daebus__ws_dcmd_str(cmd, cl->key_clients);
        daebus__ws_dcmd_str(cmd, cl->self);
        daebus__ws_dcmd_str(cmd, cl->key_client);
    }
    daebus__ws_dcmd_str(cmd, c->id); /* c is referenced until the command ran */
    daebus__ws_dcmd_num(cmd, la);
    daebus__ws_dcmd_num(cmd, (double)in);
    daebus__ws_dcmd_num(cmd, (double)out);
}

void daebus__ws_dir_flush(ws_cluster *cl)
{
    ws_client **cs;
    size_t n = daebus__ws_snapshot(cl->ws, &cs, WS_SNAP_OPEN);
    /* One script call per TOUCH_BATCH changed clients (not one per client). */
    size_t ncmd = (n + TOUCH_BATCH - 1) / TOUCH_BATCH;
    ws_dcmd *cmds = ncmd ? calloc(ncmd, sizeof *cmds) : NULL;
    double now = daebus__now_mono();
    int k = 0, in_cmd = 0;
    for (size_t i = 0; cmds && i < n; i++) {
        int before = cmds[k].argc;
        touch_if_changed(cl, cs[i], now, &cmds[k]);
        if (cmds[k].argc != before && ++in_cmd == TOUCH_BATCH) {
            k++;
            in_cmd = 0;
        }
    }
    if (cmds && in_cmd)
        k++;
    run_discard(cl, cmds, k);
    daebus__ws_snapshot_release(cs, n);
    free(cmds);
}

static int resync_locked(ws_cluster *cl);

/* Drops the entries of this replica that are not local any more (they left
 * while Redis was away), or all of them (keep_local false).
 * Returns: 0 or a negative code. */
static int drop_strays(ws_cluster *cl, bool keep_local)
{
    ws_dcmd cmd = {0};
    daebus__ws_dcmd_str(&cmd, "SMEMBERS");
    daebus__ws_dcmd_cat(&cmd, cl->key_inst, cl->self);
    redisReply *r = NULL;
    int rc = daebus__ws_dcmd_run(cl, &cmd, 1, &r);
    if (rc)
        return rc;
    size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    ws_dcmd *cmds = n ? calloc(n, sizeof *cmds) : NULL;
    int k = 0;
    for (size_t i = 0; cmds && i < n; i++) {
        const char *id = r->element[i]->str;
        ws_client *c = id && keep_local ? daebus__ws_client_find(cl->ws, id) : NULL;
        int state = WS_GONE;
        if (c) {
            pthread_mutex_lock(&c->lock);
            state = c->state;
            pthread_mutex_unlock(&c->lock);
            daebus__ws_client_unref(c);
        }
        if (state != WS_GONE)
            continue;
        if (id)
            remove_cmd(cl, id, cl->self, &cmds[k++]);
    }
    rc = cmds || !n ? run_discard(cl, cmds, k) : DAEBUS_ENOMEM;
    free(cmds);
    freeReplyObject(r);
    return rc;
}

int daebus__ws_dir_resync(ws_cluster *cl)
{
    pthread_mutex_lock(&cl->dir_lock);
    int rc = resync_locked(cl);
    pthread_mutex_unlock(&cl->dir_lock);
    return rc;
}

/* The resync (cl->dir_lock held: a client's removal waits for it). */
static int resync_locked(ws_cluster *cl)
{
    ws_client **cs;
    size_t n = daebus__ws_snapshot(cl->ws, &cs, WS_SNAP_CONNECTED);
    ws_dcmd *cmds = calloc(n + 2, sizeof *cmds);
    redisReply **r = calloc(n + 2, sizeof *r);
    int rc = cmds && r ? 0 : DAEBUS_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        announce_cmd(cl, cs[i], &cmds[i]);
    /* This replica is a member even with no client (it reaps, it is reaped);
     * its alive key was written just before (tick). A claim on it left by a
     * survivor that took it for dead goes. */
    if (rc == 0) {
        daebus__ws_dcmd_str(&cmds[n], "SADD");
        daebus__ws_dcmd_str(&cmds[n], cl->key_insts);
        daebus__ws_dcmd_str(&cmds[n], cl->self);
        daebus__ws_dcmd_str(&cmds[n + 1], "DEL");
        daebus__ws_dcmd_cat(&cmds[n + 1], cl->key_reap, cl->self);
        rc = daebus__ws_dcmd_run(cl, cmds, (int)n + 2, r);
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (r[i]->type == REDIS_REPLY_STRING)
            daebus_log(DAEBUS_LOG_WARNING, LOGC,
                       "cluster: client id '%s' of this replica is also in use on replica %s "
                       "(connected while Redis was away); the directory keeps that one",
                       cs[i]->id, r[i]->str);
    if (rc == 0)
        daebus__ws_replies_free(r, (int)n + 2);
    daebus__ws_snapshot_release(cs, n);
    free(cmds);
    free(r);
    if (rc == 0)
        rc = drop_strays(cl, true);
    if (rc == 0)
        rc = daebus__ws_channel_resync(cl); /* the subscriber lists */
    if (rc == 0) {
        cl->announced = 1;
        daebus_log(DAEBUS_LOG_INFO, LOGC, "cluster: %zu local clients announced", n);
    }
    return rc;
}

/* Removes the entries of dead instance d (this replica won the claim) and
 * runs the departed handlers for each of its clients. */
static void reap_one(ws_cluster *cl, const char *d)
{
    ws_dcmd cmd = {0};
    daebus__ws_dcmd_str(&cmd, "SMEMBERS");
    daebus__ws_dcmd_cat(&cmd, cl->key_inst, d);
    redisReply *ids = NULL;
    if (daebus__ws_dcmd_run(cl, &cmd, 1, &ids) != 0)
        return;
    size_t n = ids->type == REDIS_REPLY_ARRAY ? ids->elements : 0;
    ws_dcmd *cmds = calloc(3 * n + 2, sizeof *cmds);
    redisReply **r = calloc(3 * n + 2, sizeof *r);
    if (!cmds || !r) {
        free(cmds);
        free(r);
        freeReplyObject(ids);
        return;
    }
    /* Per client: its owner now, its hash (for departed), its removal. */
    for (size_t i = 0; i < n; i++) {
        const char *id = ids->element[i]->str ? ids->element[i]->str : "";
        daebus__ws_dcmd_str(&cmds[3 * i], "HGET");
        daebus__ws_dcmd_str(&cmds[3 * i], cl->key_clients);
        daebus__ws_dcmd_str(&cmds[3 * i], id);
        daebus__ws_dcmd_str(&cmds[3 * i + 1], "HGETALL");
        daebus__ws_dcmd_cat(&cmds[3 * i + 1], cl->key_client, id);
        remove_cmd(cl, id, d, &cmds[3 * i + 2]);
    }
    daebus__ws_dcmd_str(&cmds[3 * n], "DEL");
    daebus__ws_dcmd_cat(&cmds[3 * n], cl->key_inst, d);
    daebus__ws_dcmd_str(&cmds[3 * n + 1], "SREM");
    daebus__ws_dcmd_str(&cmds[3 * n + 1], cl->key_insts);
    daebus__ws_dcmd_str(&cmds[3 * n + 1], d);
    int rc = daebus__ws_dcmd_run(cl, cmds, 3 * (int)n + 2, r);
    size_t gone = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const redisReply *owner = r[3 * i];
        if (owner->type != REDIS_REPLY_STRING || strcmp(owner->str, d) != 0)
            continue; /* taken over by a live replica meanwhile */
        const char *id = ids->element[i]->str ? ids->element[i]->str : "";
        cJSON *m = daebus__ws_dir_metadata(r[3 * i + 1], id);
        gone++;
        atomic_fetch_add(&cl->ws->st_cluster_reaped, 1);
        daebus__ws_channel_reaped(cl->ws, id);
        daebus__ws_departed_run(cl->ws, id, m, true);
        cJSON_Delete(m);
        daebus__ws_dir_alive(cl, false); /* slow handlers must not make us look dead */
    }
    if (rc == 0) {
        daebus__ws_replies_free(r, 3 * (int)n + 2);
        daebus_log(DAEBUS_LOG_INFO, LOGC, "cluster: replica %s is gone: removed its %zu clients", d,
                   gone);
    }
    free(r);
    free(cmds);
    freeReplyObject(ids);
}

void daebus__ws_dir_alive(ws_cluster *cl, bool force)
{
    double now = daebus__now_mono();
    if (!force && now - cl->alive_at < cl->heartbeat / 2)
        return;
    cl->alive_at = now;
    ws_dcmd cmds[2] = {{0}};
    daebus__ws_dcmd_str(&cmds[0], "SET");
    daebus__ws_dcmd_cat(&cmds[0], cl->key_alive, cl->self);
    daebus__ws_dcmd_str(&cmds[0], "1");
    daebus__ws_dcmd_str(&cmds[0], "PX");
    double ms = cl->heartbeat * 2500;
    daebus__ws_dcmd_num(&cmds[0], (double)(long long)(ms < 100 ? 100 : ms));
    /* Still a member? A replica stalled past its alive key's TTL was reaped
     * by a survivor although it lives: it enters its clients again. */
    daebus__ws_dcmd_str(&cmds[1], "SISMEMBER");
    daebus__ws_dcmd_str(&cmds[1], cl->key_insts);
    daebus__ws_dcmd_str(&cmds[1], cl->self);
    redisReply *r[2] = {NULL, NULL};
    if (daebus__ws_dcmd_run(cl, cmds, 2, r) != 0)
        return;
    if (r[1]->type == REDIS_REPLY_INTEGER && r[1]->integer == 0 && !atomic_load(&cl->resync)) {
        if (cl->announced)
            daebus_log(DAEBUS_LOG_WARNING, LOGC,
                       "cluster: this replica was taken for dead (stalled for more than its "
                       "alive key's TTL, %.1f s): announcing its clients again",
                       2.5 * cl->heartbeat);
        atomic_store(&cl->resync, 1);
    }
    daebus__ws_replies_free(r, 2);
}

void daebus__ws_dir_reap(ws_cluster *cl)
{
    /* Right after Redis came back, another replica may not have refreshed
     * its alive key yet (a restart that kept the data but not the expired
     * keys): no reaping until every replica had time to reconnect (its
     * backoff is at most RECONNECT_MAX) and to tick. */
    double grace = 3 * cl->heartbeat;
    if (grace < DAEBUS__WS_RECONNECT_MAX + 2 * cl->heartbeat)
        grace = DAEBUS__WS_RECONNECT_MAX + 2 * cl->heartbeat;
    if (daebus__now_mono() - atomic_load(&cl->up_since) < grace)
        return;
    ws_dcmd cmd = {0};
    daebus__ws_dcmd_str(&cmd, "SMEMBERS");
    daebus__ws_dcmd_str(&cmd, cl->key_insts);
    redisReply *insts = NULL;
    if (daebus__ws_dcmd_run(cl, &cmd, 1, &insts) != 0)
        return;
    size_t n = insts->type == REDIS_REPLY_ARRAY ? insts->elements : 0;
    ws_dcmd *cmds = n ? calloc(n, sizeof *cmds) : NULL;
    redisReply **r = n ? calloc(n, sizeof *r) : NULL;
    int k = 0;
    for (size_t i = 0; cmds && r && i < n; i++) {
        const char *d = insts->element[i]->str;
        if (!d || strcmp(d, cl->self) == 0)
            continue;
        daebus__ws_dcmd_eval(cl, &cmds[k], WS_LUA_CLAIM, 2);
        daebus__ws_dcmd_cat(&cmds[k], cl->key_alive, d);
        daebus__ws_dcmd_cat(&cmds[k], cl->key_reap, d);
        daebus__ws_dcmd_str(&cmds[k], cl->self);
        daebus__ws_dcmd_str(&cmds[k], REAP_TTL);
        k++;
    }
    if (k && daebus__ws_dcmd_run(cl, cmds, k, r) == 0) {
        int j = 0;
        for (size_t i = 0; i < n; i++) {
            const char *d = insts->element[i]->str;
            if (!d || strcmp(d, cl->self) == 0)
                continue;
            if (r[j]->type == REDIS_REPLY_INTEGER && r[j]->integer == 1)
                reap_one(cl, d);
            j++;
        }
        daebus__ws_replies_free(r, k);
    } else {
        for (int i = 0; i < k; i++)
            daebus__ws_dcmd_free(&cmds[i]);
    }
    free(r);
    free(cmds);
    freeReplyObject(insts);
}

void daebus__ws_dir_leave(ws_cluster *cl)
{
    if (!atomic_load(&cl->up) || drop_strays(cl, false) != 0)
        return; /* with Redis away, a survivor reaps them */
    ws_dcmd cmds[3] = {{0}};
    daebus__ws_dcmd_str(&cmds[0], "DEL");
    daebus__ws_dcmd_cat(&cmds[0], cl->key_inst, cl->self);
    daebus__ws_dcmd_str(&cmds[1], "SREM");
    daebus__ws_dcmd_str(&cmds[1], cl->key_insts);
    daebus__ws_dcmd_str(&cmds[1], cl->self);
    daebus__ws_dcmd_str(&cmds[2], "DEL");
    daebus__ws_dcmd_cat(&cmds[2], cl->key_alive, cl->self);
    run_discard(cl, cmds, 3);
}
