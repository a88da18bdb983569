/* rooms_store.c - the rooms' shared state in Redis, one Lua script per change.
 *
 * Every replica of the service works on the same keys (P = "daebus:<service>:rooms:"):
 *   P list            ZSET  room names (score 0: ordered by name, paged with ZRANGEBYLEX)
 *   P room:<r>        HASH  created_at, bytes (history bytes of the room)
 *   P members:<r>     SET   client ids in the room
 *   P history:<r>     LIST  messages, oldest first: "<seq>|<text+sender bytes>|<json>"
 *   P client:<id>     SET   rooms the client is in
 *   P users           HASH  client id -> username
 *   P names           HASH  lower-case username -> client id (unique, ASCII case ignored)
 *   P all             ZSET  "<seq> <room>" by seq: every kept message, oldest first
 *   P bytes, seq, memberships, messages_total: counters
 * No key has a TTL: a room's keys go with its last member, a client's with
 * the client (its replica's "client left" path, or the cluster's when the
 * replica died). A script runs atomically, so the bounds (rooms, rooms per
 * client, history) hold with any number of replicas. The scripts name keys
 * from the prefix they get: one Redis server, not Redis Cluster. They are
 * loaded once (SCRIPT LOAD) and run by SHA1 (EVALSHA); after a Redis restart
 * emptied the script cache (NOSCRIPT) they are loaded again.
 */
#include "rooms/rooms_store.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rooms/rooms_check.h"

/* Shared Lua: delete a room with its history; members but one; a username. */
#define LUA_PRELUDE                                                                                \
    "local p = ARGV[1]\n"                                                                          \
    "local function drop_el(room, e)\n"                                                            \
    "  local seq = string.match(e, '^(%d+)|')\n"                                                   \
    "  if seq then redis.call('ZREM', p..'all', seq..' '..room) end\n"                             \
    "  local b = #e + 64\n"                                                                        \
    "  redis.call('HINCRBY', p..'room:'..room, 'bytes', -b)\n"                                     \
    "  redis.call('DECRBY', p..'bytes', b)\n"                                                      \
    "end\n"                                                                                        \
    "local function del_room(room)\n"                                                              \
    "  local hk = p..'history:'..room\n"                                                           \
    "  for _, e in ipairs(redis.call('LRANGE', hk, 0, -1)) do drop_el(room, e) end\n"              \
    "  redis.call('DEL', hk, p..'room:'..room, p..'members:'..room)\n"                             \
    "  redis.call('ZREM', p..'list', room)\n"                                                      \
    "end\n"                                                                                        \
    "local function others(room, skip)\n"                                                          \
    "  local out = {}\n"                                                                           \
    "  for _, id in ipairs(redis.call('SMEMBERS', p..'members:'..room)) do\n"                      \
    "    if id ~= skip then out[#out + 1] = id end\n"                                              \
    "  end\n"                                                                                      \
    "  return out\n"                                                                               \
    "end\n"                                                                                        \
    "local function uname(cid) return redis.call('HGET', p..'users', cid) or 'Anonymous' end\n"

/* ARGV: p, cid, room, now, max_rooms, max_per_client, join_history, join_bytes
 * -> {"ok", already, created, members, {history json}, {others}, username}
 *    | {"per_client"} | {"max_rooms"} */
static const char join_lua[] = LUA_PRELUDE
    "local cid, room = ARGV[2], ARGV[3]\n"
    "local mk = p..'members:'..room\n"
    "local already = redis.call('SISMEMBER', mk, cid) == 1\n"
    "local created = 0\n"
    "if not already then\n"
    "  if redis.call('SCARD', p..'client:'..cid) >= tonumber(ARGV[6]) then return {'per_client'} "
    "end\n"
    "  if not redis.call('ZSCORE', p..'list', room) then\n"
    "    if redis.call('ZCARD', p..'list') >= tonumber(ARGV[5]) then return {'max_rooms'} end\n"
    "    redis.call('ZADD', p..'list', 0, room)\n"
    "    redis.call('HSET', p..'room:'..room, 'created_at', ARGV[4], 'bytes', 0)\n"
    "    created = 1\n"
    "  end\n"
    "  redis.call('SADD', mk, cid)\n"
    "  redis.call('SADD', p..'client:'..cid, room)\n"
    "  redis.call('INCR', p..'memberships')\n"
    "end\n"
    "local members = redis.call('SCARD', mk)\n"
    "local jh, jb = tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "local els = {}\n"
    "if jh > 0 then els = redis.call('LRANGE', p..'history:'..room, -jh, -1) end\n"
    "local first, text = #els + 1, 0\n"
    "for i = #els, 1, -1 do\n"
    "  local t = tonumber(string.match(els[i], '^%d+|(%d+)|')) or 0\n"
    "  if i < #els and text + t > jb then break end\n"
    "  text = text + t\n"
    "  first = i\n"
    "end\n"
    "local hist = {}\n"
    "for i = first, #els do hist[#hist + 1] = string.match(els[i], '^%d+|%d+|(.*)$') end\n"
    "local o = {}\n"
    "if not already then o = others(room, cid) end\n"
    "return {'ok', already and 1 or 0, created, members, hist, o, uname(cid)}\n";

/* ARGV: p, cid, room -> {"ok", members, {others}, username} | {"not_member"} */
static const char leave_lua[] = LUA_PRELUDE
    "local cid, room = ARGV[2], ARGV[3]\n"
    "if redis.call('SREM', p..'members:'..room, cid) == 0 then return {'not_member'} end\n"
    "redis.call('SREM', p..'client:'..cid, room)\n"
    "redis.call('DECR', p..'memberships')\n"
    "local members = redis.call('SCARD', p..'members:'..room)\n"
    "if members == 0 then del_room(room) end\n"
    "return {'ok', members, others(room), uname(cid)}\n";

/* ARGV: p, cid, room, text, ts, max_msgs, max_bytes, max_total
 * -> {"ok", id, sender, {others}} | {"no_room"} | {"not_member"} */
static const char chat_lua[] = LUA_PRELUDE
    "local cid, room, text, ts = ARGV[2], ARGV[3], ARGV[4], ARGV[5]\n"
    "if not redis.call('ZSCORE', p..'list', room) then return {'no_room'} end\n"
    "if redis.call('SISMEMBER', p..'members:'..room, cid) == 0 then return {'not_member'} end\n"
    "local sender = uname(cid)\n"
    "local seq = redis.call('INCR', p..'seq')\n"
    "local id = 'msg_'..ts..'_'..seq..'_'..string.sub(cid, 1, 8)\n"
    "local json = '{\"id\":'..cjson.encode(id)..',\"room\":'..cjson.encode(room)..\n"
    "  ',\"sender\":'..cjson.encode(sender)..',\"text\":'..cjson.encode(text)..\n"
    "  ',\"timestamp\":'..ts..'}'\n"
    "local e = seq..'|'..(#text + #sender)..'|'..json\n"
    "local hk, rk = p..'history:'..room, p..'room:'..room\n"
    "redis.call('RPUSH', hk, e)\n"
    "redis.call('ZADD', p..'all', seq, seq..' '..room)\n"
    "redis.call('HINCRBY', rk, 'bytes', #e + 64)\n"
    "redis.call('INCRBY', p..'bytes', #e + 64)\n"
    "redis.call('INCR', p..'messages_total')\n"
    "local maxm, maxb, maxt = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "while true do\n"
    "  local n = redis.call('LLEN', hk)\n"
    "  local rb = tonumber(redis.call('HGET', rk, 'bytes') or '0')\n"
    "  if n == 0 or (n <= maxm and rb <= maxb) then break end\n"
    "  drop_el(room, redis.call('LPOP', hk))\n"
    "end\n"
    "while tonumber(redis.call('GET', p..'bytes') or '0') > maxt do\n"
    "  local head = redis.call('ZRANGE', p..'all', 0, 0)\n"
    "  if #head == 0 then redis.call('SET', p..'bytes', 0) break end\n"
    "  local s, r = string.match(head[1], '^(%d+) (.*)$')\n"
    "  redis.call('ZREM', p..'all', head[1])\n"
    "  local h = p..'history:'..r\n"
    "  local oldest = redis.call('LINDEX', h, 0)\n"
    "  if oldest and string.match(oldest, '^(%d+)|') == s then\n"
    "    redis.call('LPOP', h)\n"
    "    drop_el(r, oldest)\n"
    "  end\n"
    "end\n"
    "return {'ok', id, sender, others(room, cid)}\n";

/* ARGV: p, cid -> {username, {{room, members, {others}}...}} */
static const char gone_lua[] = LUA_PRELUDE
    "local cid = ARGV[2]\n"
    "local name = uname(cid)\n"
    "local notes = {}\n"
    "for _, room in ipairs(redis.call('SMEMBERS', p..'client:'..cid)) do\n"
    "  if redis.call('SREM', p..'members:'..room, cid) == 1 then\n"
    "    redis.call('DECR', p..'memberships')\n"
    "    local members = redis.call('SCARD', p..'members:'..room)\n"
    "    if members == 0 then del_room(room)\n"
    "    else notes[#notes + 1] = {room, members, others(room)} end\n"
    "  end\n"
    "end\n"
    "redis.call('DEL', p..'client:'..cid)\n"
    "if redis.call('HDEL', p..'users', cid) == 1 then\n"
    "  local lk = string.lower(name)\n"
    "  if redis.call('HGET', p..'names', lk) == cid then redis.call('HDEL', p..'names', lk) end\n"
    "end\n"
    "return {name, notes}\n";

/* ARGV: p, cid, name, list_max -> {"ok", total, {names (list_max + 1 at most)}}
 *   | {"taken", holder} */
static const char register_lua[] =
    LUA_PRELUDE "local cid, name = ARGV[2], ARGV[3]\n"
                "local lk = string.lower(name)\n"
                "local holder = redis.call('HGET', p..'names', lk)\n"
                "if holder and holder ~= cid then return {'taken', holder} end\n"
                "local old = redis.call('HGET', p..'users', cid)\n"
                "if old and redis.call('HGET', p..'names', string.lower(old)) == cid then\n"
                "  redis.call('HDEL', p..'names', string.lower(old))\n"
                "end\n"
                "redis.call('HSET', p..'users', cid, name)\n"
                "redis.call('HSET', p..'names', lk, cid)\n"
                "local n = tonumber(ARGV[4])\n"
                "local page = redis.call('ZRANGEBYLEX', p..'list', '-', '+', 'LIMIT', 0, n + 1)\n"
                "return {'ok', redis.call('ZCARD', p..'list'), page}\n";

/* ARGV: p, after ("" = from the start), n, detail (0 names, 1 + members,
 * 2 + message_count, created_at) -> {total, {rows}, next_after | nil} */
static const char page_lua[] =
    LUA_PRELUDE "local after, n, d = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])\n"
                "local from = '-'\n"
                "if after ~= '' then from = '('..after end\n"
                "local names = redis.call('ZRANGEBYLEX', p..'list', from, '+', 'LIMIT', 0, n + 1)\n"
                "local rows = {}\n"
                "for i = 1, math.min(n, #names) do\n"
                "  local name = names[i]\n"
                "  if d == 0 then rows[i] = name else\n"
                "    local row = {name, redis.call('SCARD', p..'members:'..name)}\n"
                "    if d == 2 then\n"
                "      row[3] = redis.call('LLEN', p..'history:'..name)\n"
                "      row[4] = redis.call('HGET', p..'room:'..name, 'created_at') or '0'\n"
                "    end\n"
                "    rows[i] = row\n"
                "  end\n"
                "end\n"
                "local nxt = false\n"
                "if #names > n then nxt = names[n] end\n"
                "return {redis.call('ZCARD', p..'list'), rows, nxt}\n";

/* ARGV: p, cid, to -> {sender | nil, client id the name "to" is registered by | nil} */
static const char direct_lua[] =
    LUA_PRELUDE "local sender = redis.call('HGET', p..'users', ARGV[2])\n"
                "local to = redis.call('HGET', p..'names', string.lower(ARGV[3]))\n"
                "return {sender, to}\n";

/* ARGV: p, cid, room -> {registered 0/1, member of room 0/1} */
static const char member_lua[] =
    LUA_PRELUDE "return {redis.call('HEXISTS', p..'users', ARGV[2]),\n"
                "        redis.call('SISMEMBER', p..'members:'..ARGV[3], ARGV[2])}\n";

static const char *const scripts[DAEBUS__ROOMS_NSCRIPTS] = {
    join_lua, leave_lua, chat_lua, gone_lua, register_lua, page_lua, direct_lua, member_lua,
};

/* "daebus:<service>:rooms:" into buf. */
static void prefix(daebus_app *app, char *buf, size_t cap)
{
    snprintf(buf, cap, "daebus:%s:rooms:", daebus_app_service(app));
}

/* The SHA1 of each script as Redis named it (SCRIPT LOAD), "" until loaded. */
static char shas[DAEBUS__ROOMS_NSCRIPTS][48];
static pthread_mutex_t sha_lock = PTHREAD_MUTEX_INITIALIZER;

/* Copies the script's SHA1 into out, loading the script when unknown or
 * when reload is set (Redis lost its script cache). Returns: 0 or a code. */
static int script_sha(daebus_bus *bus, int script, bool reload, char out[48])
{
    pthread_mutex_lock(&sha_lock);
    memcpy(out, shas[script], 48);
    pthread_mutex_unlock(&sha_lock);
    if (out[0] && !reload)
        return 0;
    const char *argv[] = {"SCRIPT", "LOAD", scripts[script]};
    cJSON *r = NULL;
    int rc = daebus_bus_redis(bus, 3, argv, NULL, &r);
    const char *sha = cJSON_GetStringValue(r);
    if (rc == 0 && (!sha || strlen(sha) >= 48))
        rc = DAEBUS_EREPLY;
    if (rc == 0) {
        snprintf(out, 48, "%s", sha);
        pthread_mutex_lock(&sha_lock);
        memcpy(shas[script], out, 48);
        pthread_mutex_unlock(&sha_lock);
    }
    cJSON_Delete(r);
    return rc;
}

static bool is_noscript(int rc, const cJSON *reply)
{
    const char *e = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "error"));
    return rc == DAEBUS_EREPLY && e && strncmp(e, "NOSCRIPT", 8) == 0;
}

int daebus__rooms_eval(daebus_app *app, int script, int nargs, const char **args, cJSON **reply)
{
    *reply = NULL;
    daebus_bus *bus = app ? daebus_app_bus(app) : NULL;
    if (!bus)
        return DAEBUS_ESTATE;
    if (script < 0 || script >= DAEBUS__ROOMS_NSCRIPTS || nargs < 0 || nargs > 12)
        return DAEBUS_EINVAL;
    char p[300], sha[48];
    prefix(app, p, sizeof p);
    const char *argv[16] = {"EVALSHA", sha, "0", p};
    for (int i = 0; i < nargs; i++)
        argv[4 + i] = args[i];
    /* EVALSHA: the script's text goes to Redis once, not with every request;
     * after a Redis restart (NOSCRIPT) it is loaded again. */
    int rc = script_sha(bus, script, false, sha);
    if (rc == 0)
        rc = daebus_bus_redis(bus, 4 + nargs, argv, NULL, reply);
    if (is_noscript(rc, *reply)) {
        cJSON_Delete(*reply);
        *reply = NULL;
        rc = script_sha(bus, script, true, sha);
        if (rc == 0)
            rc = daebus_bus_redis(bus, 4 + nargs, argv, NULL, reply);
    }
    if (rc == 0 && !cJSON_IsArray(*reply))
        rc = DAEBUS_EREPLY;
    if (rc != 0) {
        cJSON_Delete(*reply);
        *reply = NULL;
    }
    return rc;
}

static size_t num_at(const cJSON *a, int i)
{
    const cJSON *v = cJSON_GetArrayItem(a, i);
    if (cJSON_IsNumber(v))
        return v->valuedouble > 0 ? (size_t)v->valuedouble : 0;
    if (cJSON_IsString(v))
        return (size_t)strtoull(v->valuestring, NULL, 10);
    return 0;
}

int daebus__rooms_store_stats(daebus_app *app, daebus_rooms_stats *out)
{
    daebus_bus *bus = app ? daebus_app_bus(app) : NULL;
    if (!bus)
        return DAEBUS_ESTATE;
    char p[300], k[6][340];
    prefix(app, p, sizeof p);
    static const char *const cmd[6] = {"HLEN", "ZCARD", "GET", "ZCARD", "GET", "GET"};
    static const char *const key[6] = {"users", "list",  "memberships",
                                       "all",   "bytes", "messages_total"};
    const char *argv[6][2];
    daebus_redis_cmd cmds[6];
    for (int i = 0; i < 6; i++) {
        snprintf(k[i], sizeof k[i], "%s%s", p, key[i]);
        argv[i][0] = cmd[i];
        argv[i][1] = k[i];
        cmds[i] = (daebus_redis_cmd){2, argv[i], NULL};
    }
    cJSON *r[6];
    int rc = daebus_bus_redis_pipeline(bus, cmds, 6, r);
    if (rc != 0) {
        for (int i = 0; rc == DAEBUS_EREPLY && i < 6; i++)
            cJSON_Delete(r[i]);
        return rc;
    }
    cJSON *all = cJSON_CreateArray();
    for (int i = 0; i < 6; i++)
        cJSON_AddItemToArray(all, r[i]);
    out->users = num_at(all, 0);
    out->rooms = num_at(all, 1);
    out->members = num_at(all, 2);
    out->messages = num_at(all, 3);
    out->history_bytes = num_at(all, 4);
    out->messages_total = num_at(all, 5);
    cJSON_Delete(all);
    return 0;
}
