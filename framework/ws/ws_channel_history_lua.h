/* ws_channel_history_lua.h - the one Lua script of the channel history
 * (internal, included by ws_channel_history.c only).
 *
 * KEYS: 1 the epoch, 2 the stream. ARGV[1] the mode ('p' publish, 's' since,
 * 'c' current position), ARGV[2] a fresh random epoch (hex) used when one is
 * needed.
 *   'p': ARGV[3] Redis channel ('' = no PUBLISH), [4] max count, [5] max
 *        age in ms (0 = none), [6] the envelope up to the offset
 *        ('{<head>"channel":"C","offset":'), [7..] the messages (one or
 *        more, added and published in order). Returns {first offset, epoch}:
 *        the messages have offsets first, first + 1, ... (one script: no
 *        other publish comes between them).
 *   's': ARGV[3] since, [4] epoch, [5] limit.
 *        Returns {recovered 0/1, offset, epoch, entries (when recovered)}.
 *   'c': returns {1, offset, epoch}.
 *
 * The offset is the sequence of the stream's own ids ("0-*": Redis >= 7.0
 * gives 0-1, 0-2, ...; the stream keeps its last id when trimmed), so the
 * counter and the history are one key and cannot disagree. The epoch key
 * holds "<hex>" or "<hex>+" ("+": made for a channel with no stream yet, no
 * offset given under it). A publish that gets offset 1 made a new stream:
 * it keeps a "+" epoch (dropping the "+") and replaces any other, so a
 * history lost while its epoch key survived never reuses offsets under the
 * old epoch. A read that finds no stream drops an epoch without "+" for the
 * same reason.
 */
#ifndef DAEBUS_WS_CHANNEL_HISTORY_LUA_H
#define DAEBUS_WS_CHANNEL_HISTORY_LUA_H

static const char chist_lua[] =
    "-- the common publish first, with no function made: no age bound, an epoch\n"
    "-- without '+', not the first offset (anything else goes on below)\n"
    "local added\n"
    "if ARGV[1] == 'p' and ARGV[5] == '0' then\n"
    "  added = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '0-*', 'd', ARGV[7])\n"
    "  local off = string.sub(added, 3)\n"
    "  local ep = redis.call('GET', KEYS[1])\n"
    "  if off ~= '1' and ep and string.byte(ep, -1) ~= 43 then\n"
    "    local tail = ',\"epoch\":\"' .. ep .. '\"}\\n'\n"
    "    if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[6] .. off .. tail .. ARGV[7]) "
    "end\n"
    "    for i = 8, #ARGV do\n"
    "      local o = string.sub(redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '0-*', 'd', "
    "ARGV[i]), 3)\n"
    "      if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[6] .. o .. tail .. ARGV[i]) "
    "end\n"
    "    end\n"
    "    return {off, ep}\n"
    "  end\n"
    "end\n"
    "local function seq(id) return tonumber(string.match(id, '%-(%d+)$')) end\n"
    "local function str(n) return string.format('%.0f', n) end\n"
    "local function sid(n) return '0-' .. str(n) end\n"
    "local function field(e, name)\n"
    "  for i = 1, #e[2], 2 do if e[2][i] == name then return e[2][i + 1] end end\n"
    "end\n"
    "local function epoch(first, nostream)\n"
    "  local v = redis.call('GET', KEYS[1])\n"
    "  local ep, fresh = string.match(v or '', '^(%w+)(%+?)$')\n"
    "  if not ep or (first and fresh == '') then\n"
    "    ep = ARGV[2]\n"
    "    redis.call('SET', KEYS[1], nostream and ep .. '+' or ep)\n"
    "  elseif first and fresh == '+' then\n"
    "    redis.call('SET', KEYS[1], ep)\n"
    "  end\n"
    "  return ep\n"
    "end\n"
    "local function position()\n"
    "  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]\n"
    "  if last then return seq(last[1]), epoch(false) end\n"
    "  if redis.call('EXISTS', KEYS[2]) == 1 then\n"
    "    local info = redis.call('XINFO', 'STREAM', KEYS[2])\n"
    "    for i = 1, #info, 2 do\n"
    "      if info[i] == 'last-generated-id' then return seq(info[i + 1]), epoch(false) end\n"
    "    end\n"
    "  end\n"
    "  local v = redis.call('GET', KEYS[1])\n"
    "  if v and string.sub(v, -1) ~= '+' then redis.call('DEL', KEYS[1]) end\n"
    "  return 0, epoch(false, true)\n"
    "end\n"
    "local function trim_age(now, age, hi)\n"
    "  local cut = now - age\n"
    "  local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]\n"
    "  if tonumber(field(head, 't') or 0) >= cut then return end\n"
    "  local lo = seq(head[1])\n"
    "  while lo < hi do\n"
    "    local mid = math.floor((lo + hi) / 2)\n"
    "    local e = redis.call('XRANGE', KEYS[2], sid(mid), '+', 'COUNT', 1)[1]\n"
    "    if tonumber(field(e, 't') or 0) >= cut then hi = mid else lo = seq(e[1]) + 1 end\n"
    "  end\n"
    "  redis.call('XTRIM', KEYS[2], 'MINID', sid(lo))\n"
    "end\n"
    "local function publish()\n"
    "  local age, now = tonumber(ARGV[5]), 0\n"
    "  local function add(data)\n"
    "    if age == 0 then return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '0-*', 'd', "
    "data) end\n"
    "    return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '0-*', 'd', data, 't', now)\n"
    "  end\n"
    "  if age > 0 then\n"
    "    local t = redis.call('TIME')\n"
    "    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "  end\n"
    "  local first = seq(added or add(ARGV[7]))\n"
    "  local ep = epoch(first == 1)\n"
    "  local last = first\n"
    "  for i = 8, #ARGV do last = seq(add(ARGV[i])) end\n"
    "  if age > 0 then trim_age(now, age, last) end\n"
    "  if ARGV[3] ~= '' then\n"
    "    for i = 7, #ARGV do\n"
    "      redis.call('PUBLISH', ARGV[3], ARGV[6] .. str(first + i - 7) .. ',\"epoch\":\"' .. ep "
    ".. '\"}\\n' .. ARGV[i])\n"
    "    end\n"
    "  end\n"
    "  return {str(first), ep}\n"
    "end\n"
    "local function since()\n"
    "  local off, ep = position()\n"
    "  local n = tonumber(ARGV[3])\n"
    "  if ep ~= ARGV[4] or n > off then return {0, str(off), ep} end\n"
    "  if n == off then return {1, str(off), ep} end\n"
    "  local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]\n"
    "  if not head or seq(head[1]) > n + 1 then return {0, str(off), ep} end\n"
    "  return {1, str(off), ep, redis.call('XRANGE', KEYS[2], sid(n + 1), '+', 'COUNT', ARGV[5])}\n"
    "end\n"
    "if ARGV[1] == 'p' then return publish() end\n"
    "if ARGV[1] == 's' then return since() end\n"
    "local off, ep = position()\n"
    "return {1, str(off), ep}\n";

#endif
