/* bus_durable_gc.c - durable actions: keeping the group and the stream bounded.
 *
 * Both scripts run atomically in Redis, so a consumer is deleted only while
 * it has nothing pending (XGROUP DELCONSUMER drops a consumer's pending
 * entries: a deleted consumer that had just read an entry would lose it), and
 * the trim never removes an entry still pending or not yet delivered. A
 * consumer deleted while its replica lives (idle that long: its workers were
 * all busy) loses nothing: its next read makes it again.
 */
#include <stdio.h>
#include <string.h>
#include "daebus/app.h"
#include "daebus/log.h"
#include "bus_durable_gc.h"
#include "bus_internal.h"
#include "clock.h"
#include "redis_pub.h"

#define LOGC DAEBUS__BUS_LOGC

/* Shared by both scripts: fields(t) makes a table of an XINFO reply's flat
 * [name, value, ...] list; mine(key) is the group "daebus" (its fields), or
 * nil when the key is no stream or has no such group. */
#define GC_LUA_PRELUDE                                                                             \
    "local function fields(t)\n"                                                                   \
    "  local f = {}\n"                                                                             \
    "  for i = 1, #t, 2 do f[t[i]] = t[i + 1] end\n"                                               \
    "  return f\n"                                                                                 \
    "end\n"                                                                                        \
    "local function mine(key)\n"                                                                   \
    "  if redis.call('TYPE', key).ok ~= 'stream' then return nil, 0 end\n"                         \
    "  local groups = redis.call('XINFO', 'GROUPS', key)\n"                                        \
    "  for _, g in ipairs(groups) do\n"                                                            \
    "    local f = fields(g)\n"                                                                    \
    "    if f['name'] == 'daebus' then return f, #groups end\n"                                    \
    "  end\n"                                                                                      \
    "  return nil, #groups\n"                                                                      \
    "end\n"

/* Sweep. KEYS[1] the request stream; ARGV[1] the sweeping consumer (kept),
 * ARGV[2] the idle time (ms) past which a consumer with nothing pending is
 * deleted. Trims the entries older than the oldest pending one and not
 * after the last delivered one (delivered and acknowledged: their XDEL was
 * lost), only when "daebus" is the stream's only group. Returns {deleted, trimmed}. */
static const char LUA_SWEEP[] = GC_LUA_PRELUDE
    "local function older(a, b)\n"
    "  local am, as = string.match(a, '^(%d+)-(%d+)$')\n"
    "  local bm, bs = string.match(b, '^(%d+)-(%d+)$')\n"
    "  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)\n"
    "  return am < bm or (am == bm and as < bs)\n"
    "end\n"
    "local function after(a)\n"
    "  local ms, seq = string.match(a, '^(%d+)-(%d+)$')\n"
    "  if not ms or #seq > 15 then return a end\n"
    "  return ms .. '-' .. string.format('%d', tonumber(seq) + 1)\n"
    "end\n"
    "local group, ngroups = mine(KEYS[1])\n"
    "if not group then return {0, 0} end\n"
    "local deleted = 0\n"
    "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], 'daebus')) do\n"
    "  local f = fields(c)\n"
    "  if f['name'] ~= ARGV[1] and f['pending'] == 0 and f['idle'] >= tonumber(ARGV[2]) then\n"
    "    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], 'daebus', f['name'])\n"
    "    deleted = deleted + 1\n"
    "  end\n"
    "end\n"
    "local trimmed = 0\n"
    "local last = group['last-delivered-id']\n"
    "if ngroups == 1 and last and last ~= '0-0' then\n"
    "  local bound = after(last)\n"
    "  local p = redis.call('XPENDING', KEYS[1], 'daebus')\n"
    "  if p[1] > 0 and older(p[2], bound) then bound = p[2] end\n"
    "  trimmed = redis.call('XTRIM', KEYS[1], 'MINID', bound)\n"
    "end\n"
    "return {deleted, trimmed}\n";

/* Leave. KEYS[1] the request stream; ARGV[1] the consumer. Returns 1
 * (deleted), 0 (it has entries pending: kept) or -1 (no such consumer). */
static const char LUA_LEAVE[] =
    GC_LUA_PRELUDE "if not mine(KEYS[1]) then return -1 end\n"
                   "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], 'daebus')) do\n"
                   "  local f = fields(c)\n"
                   "  if f['name'] == ARGV[1] then\n"
                   "    if f['pending'] > 0 then return 0 end\n"
                   "    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], 'daebus', ARGV[1])\n"
                   "    return 1\n"
                   "  end\n"
                   "end\n"
                   "return -1\n";

/* EVAL of lua on the publisher pool. Returns: the reply (free it) or NULL
 * with *rc set. */
static redisReply *eval(daebus_bus *bus, const char *lua, const char *key, const char *a1,
                        const char *a2, int *rc)
{
    const char *argv[] = {"EVAL", lua, "1", key, a1, a2};
    daebus__redis_cmd cmd = {a2 ? 6 : 5, argv, NULL};
    redisReply *r = NULL;
    *rc = daebus__redis_pub_pipeline(bus->pub, &cmd, 1, &r);
    if (*rc != 0)
        return NULL;
    if (r->type == REDIS_REPLY_ERROR) {
        DAEBUS_LOG_DEBUGF(LOGC, "durable: script on %s refused: %s", key, r->str);
        freeReplyObject(r);
        *rc = DAEBUS_EREPLY;
        return NULL;
    }
    return r;
}

int daebus__durable_gc_sweep(daebus_bus *bus, const char *key, const char *consumer,
                             long long min_idle_ms, long long *deleted, long long *trimmed)
{
    char idle[24];
    snprintf(idle, sizeof idle, "%lld", min_idle_ms);
    int rc;
    redisReply *r = eval(bus, LUA_SWEEP, key, consumer, idle, &rc);
    if (!r)
        return rc;
    rc = DAEBUS_EREPLY;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[1]->type == REDIS_REPLY_INTEGER) {
        *deleted = r->element[0]->integer;
        *trimmed = r->element[1]->integer;
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

void daebus__durable_gc_tick(daebus_bus *bus, const char *key, const char *consumer,
                             double visibility, double *next)
{
    double now = daebus__now_mono();
    if (now < *next)
        return;
    double every = visibility * DAEBUS__DURABLE_GC_EVERY;
    *next = now + (every < 1.0 ? 1.0 : every);
    long long deleted = 0, trimmed = 0;
    long long idle = (long long)(visibility * DAEBUS__DURABLE_GC_IDLE * 1000.0);
    int rc = daebus__durable_gc_sweep(bus, key, consumer, idle, &deleted, &trimmed);
    if (rc != 0)
        DAEBUS_LOG_DEBUGF(LOGC, "durable: sweep of %s failed (%s)", key, daebus_strerror(rc));
    if (deleted > 0)
        DAEBUS_LOG_INFOF(LOGC,
                         "durable: deleted %lld consumer(s) of group daebus on %s (nothing "
                         "pending, idle over %lld ms: replicas gone)",
                         deleted, key, idle);
    if (trimmed > 0)
        DAEBUS_LOG_INFOF(LOGC,
                         "durable: trimmed %lld acknowledged entr%s of %s left undeleted "
                         "(a replica lost Redis between XACK and XDEL)",
                         trimmed, trimmed == 1 ? "y" : "ies", key);
}

void daebus__durable_gc_leave(daebus_bus *bus)
{
    if (!bus->durable || !bus->pub)
        return;
    char key[300];
    if (snprintf(key, sizeof key, "daebus:%s:requests", bus->service) >= (int)sizeof key)
        return;
    const char *consumer = daebus_app_instance_id(bus->app);
    int rc;
    redisReply *r = eval(bus, LUA_LEAVE, key, consumer, NULL, &rc);
    if (!r) {
        DAEBUS_LOG_DEBUGF(LOGC, "durable: could not leave group daebus of %s (%s)", key,
                          daebus_strerror(rc));
        return;
    }
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
        DAEBUS_LOG_INFOF(LOGC,
                         "durable: consumer %s keeps entries pending on %s: another replica "
                         "takes them after the visibility time-out",
                         consumer, key);
    freeReplyObject(r);
}

long long daebus__durable_done_ttl(const daebus_bus *bus, long long fallback)
{
    double m = bus->opts.durable_done_ttl;
    return m > 0 ? (long long)(m + 0.999) : fallback;
}
