/* bus_durable_lua.h - the Lua scripts of durable actions (internal).
 *
 * Each script runs atomically in Redis, so a completion and a dead letter
 * are all-or-nothing: a replica that dies half-way leaves the entry pending
 * (taken again later), never answered twice.
 */
#ifndef DAEBUS_BUS_DURABLE_LUA_H
#define DAEBUS_BUS_DURABLE_LUA_H

/* Completion. KEYS[1] the done record, KEYS[2] the request stream;
 * ARGV[1] reply channel ("" = none), ARGV[2] the final reply, ARGV[3] the done
 * record's TTL (s), ARGV[4] the entry id, ARGV[5] the largest reply kept in
 * the done record (bytes; a larger one, or none, is kept as "1"): a caller
 * that lost its connection meanwhile gets it from there (caller_durable.c).
 * Returns 1 (completed now) or 0 (the done record existed: the entry is only
 * acknowledged and deleted). */
#define DAEBUS__DURABLE_LUA_COMPLETE                                                               \
    "local done = redis.call('EXISTS', KEYS[1])\n"                                                 \
    "if done == 0 then\n"                                                                          \
    "  local keep = '1'\n"                                                                         \
    "  if ARGV[1] ~= '' then\n"                                                                    \
    "    redis.call('PUBLISH', ARGV[1], ARGV[2])\n"                                                \
    "    if #ARGV[2] <= tonumber(ARGV[5]) then keep = ARGV[2] end\n"                               \
    "  end\n"                                                                                      \
    "  redis.call('SET', KEYS[1], keep, 'EX', ARGV[3])\n"                                          \
    "end\n"                                                                                        \
    "redis.call('XACK', KEYS[2], 'daebus', ARGV[4])\n"                                             \
    "redis.call('XDEL', KEYS[2], ARGV[4])\n"                                                       \
    "return 1 - done\n"

/* Dead letter. KEYS[1] the dead-letter stream, KEYS[2] the request stream;
 * ARGV[1] req, ARGV[2] reason, ARGV[3] attempts, ARGV[4] at (ms), ARGV[5] the
 * entry id, ARGV[6] reply channel ("" = none), ARGV[7] the error reply.
 * Returns 1. */
#define DAEBUS__DURABLE_LUA_DEAD                                                                   \
    "redis.call('XADD', KEYS[1], 'MAXLEN', '~', '10000', '*', 'req', ARGV[1], 'reason', ARGV[2], " \
    "'attempts', ARGV[3], 'at', ARGV[4])\n"                                                        \
    "redis.call('XACK', KEYS[2], 'daebus', ARGV[5])\n"                                             \
    "redis.call('XDEL', KEYS[2], ARGV[5])\n"                                                       \
    "if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[6], ARGV[7]) end\n"                          \
    "return 1\n"

/* The checks of a batch of entries, and the drops. KEYS[1] the request
 * stream, KEYS[2..] the done records of the entries to check; ARGV[1] the
 * number d of entries to drop (expired, malformed, unknown action),
 * ARGV[2..d+1] their ids, ARGV[d+2..] the ids of the entries checked (in the
 * order of their KEYS). An entry whose done record exists is dropped too.
 * All the drops: one XACK and one XDEL. Returns: for each checked entry 1
 * (done: dropped) or 0. */
#define DAEBUS__DURABLE_LUA_CHECK                                                                  \
    "local nd = tonumber(ARGV[1])\n"                                                               \
    "local drop, out = {}, {}\n"                                                                   \
    "for i = 2, nd + 1 do drop[#drop + 1] = ARGV[i] end\n"                                         \
    "for i = 2, #KEYS do\n"                                                                        \
    "  local done = redis.call('EXISTS', KEYS[i])\n"                                               \
    "  out[#out + 1] = done\n"                                                                     \
    "  if done == 1 then drop[#drop + 1] = ARGV[nd + i] end\n"                                     \
    "end\n"                                                                                        \
    "if #drop > 0 then\n"                                                                          \
    "  redis.call('XACK', KEYS[1], 'daebus', unpack(drop))\n"                                      \
    "  redis.call('XDEL', KEYS[1], unpack(drop))\n"                                                \
    "end\n"                                                                                        \
    "return out\n"

#endif
