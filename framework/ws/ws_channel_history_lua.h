/* ws_channel_history_lua.h - the one Lua script of the channel history
 * (internal, included by ws_channel_history.c only).
 *
 * KEYS: 1 epoch, 2 off, 3 hist. ARGV[1] the mode ('p' publish, 's' since,
 * 'c' current position), ARGV[2] a fresh random epoch used when the channel
 * has none.
 *   'p': ARGV[3] Redis channel ('' = no PUBLISH), [4] channel name, [5] data,
 *        [6] max count, [7] max age in ms (0 = none), [8] envelope head.
 *        Returns {offset, epoch}.
 *   's': ARGV[3] since, [4] epoch, [5] limit.
 *        Returns {recovered 0/1, offset, epoch, entries (when recovered)}.
 *   'c': returns {1, offset, epoch}.
 *
 * ensure(): the epoch and the counter are kept consistent. No epoch: a new
 * one, the old stream (if any) deleted, the counter at 0. An epoch but no
 * counter (lost apart from the rest): the counter is taken from the stream's
 * last entry, and a stream with no entry means a new epoch (offsets of the
 * old epoch could otherwise be given again). An XADD refused because the
 * stream already went past the counter moves the counter past the stream's
 * last id and adds again: an offset is never given twice in one epoch.
 */
#ifndef DAEBUS_WS_CHANNEL_HISTORY_LUA_H
#define DAEBUS_WS_CHANNEL_HISTORY_LUA_H

static const char chist_lua[] =
    "local function num(id) return tonumber(string.match(id, '^(%d+)')) end\n"
    "local function str(n) return string.format('%.0f', n) end\n"
    "local function sid(n) return str(n) .. '-0' end\n"
    "local function field(e, name)\n"
    "  for i = 1, #e[2], 2 do if e[2][i] == name then return e[2][i + 1] end end\n"
    "end\n"
    "local function ensure(cand)\n"
    "  local ep = redis.call('GET', KEYS[1])\n"
    "  local off = redis.call('GET', KEYS[2])\n"
    "  if ep and not off then\n"
    "    local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)\n"
    "    if last[1] then\n"
    "      off = num(last[1][1])\n"
    "      redis.call('SET', KEYS[2], str(off))\n"
    "    else ep = false end\n"
    "  end\n"
    "  if not ep then\n"
    "    ep = cand\n"
    "    redis.call('DEL', KEYS[3])\n"
    "    redis.call('SET', KEYS[1], ep)\n"
    "    redis.call('SET', KEYS[2], 0)\n"
    "    off = 0\n"
    "  end\n"
    "  return ep, tonumber(off)\n"
    "end\n"
    "local function trim_age(now, age)\n"
    "  local cut = now - age\n"
    "  local head = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)\n"
    "  if not head[1] or tonumber(field(head[1], 't')) >= cut then return end\n"
    "  local lo = num(head[1][1])\n"
    "  local hi = num(redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1][1])\n"
    "  while lo < hi do\n"
    "    local mid = math.floor((lo + hi) / 2)\n"
    "    local e = redis.call('XRANGE', KEYS[3], sid(mid), '+', 'COUNT', 1)[1]\n"
    "    if tonumber(field(e, 't')) >= cut then hi = mid else lo = num(e[1]) + 1 end\n"
    "  end\n"
    "  redis.call('XTRIM', KEYS[3], 'MINID', sid(lo))\n"
    "end\n"
    "local function add(off, now)\n"
    "  return redis.pcall('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], sid(off), 'd', ARGV[5], 't', "
    "now)\n"
    "end\n"
    "local function publish()\n"
    "  local ep, off = ensure(ARGV[2])\n"
    "  off = off + 1\n"
    "  local t = redis.call('TIME')\n"
    "  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "  local r = add(off, now)\n"
    "  if type(r) == 'table' and r.err and string.find(r.err, 'equal or smaller', 1, true) then\n"
    "    local info = redis.call('XINFO', 'STREAM', KEYS[3])\n"
    "    for i = 1, #info, 2 do\n"
    "      if info[i] == 'last-generated-id' then off = num(info[i + 1]) + 1 end\n"
    "    end\n"
    "    r = add(off, now)\n"
    "  end\n"
    "  if type(r) == 'table' and r.err then return r end\n"
    "  redis.call('SET', KEYS[2], str(off))\n"
    "  local age = tonumber(ARGV[7])\n"
    "  if age > 0 then trim_age(now, age) end\n"
    "  if ARGV[3] ~= '' then\n"
    "    redis.call('PUBLISH', ARGV[3], '{' .. ARGV[8] .. '\"channel\":' .. cjson.encode(ARGV[4]) "
    "..\n"
    "      ',\"offset\":' .. str(off) .. ',\"epoch\":' .. cjson.encode(ep) .. '}\\n' .. ARGV[5])\n"
    "  end\n"
    "  return {str(off), ep}\n"
    "end\n"
    "local function since()\n"
    "  local ep, off = ensure(ARGV[2])\n"
    "  local n = tonumber(ARGV[3])\n"
    "  if ep ~= ARGV[4] or n > off then return {0, str(off), ep} end\n"
    "  if n == off then return {1, str(off), ep} end\n"
    "  local head = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)\n"
    "  if not head[1] or num(head[1][1]) > n + 1 then return {0, str(off), ep} end\n"
    "  return {1, str(off), ep, redis.call('XRANGE', KEYS[3], sid(n + 1), '+', 'COUNT', ARGV[5])}\n"
    "end\n"
    "if ARGV[1] == 'p' then return publish() end\n"
    "if ARGV[1] == 's' then return since() end\n"
    "local ep, off = ensure(ARGV[2])\n"
    "return {1, str(off), ep}\n";

#endif
