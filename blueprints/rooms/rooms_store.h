/* rooms_store.h - the rooms' shared state in Redis (internal; keys: rooms_store.c).
 *
 * One Lua script per change, run with EVAL through the bus's public Redis
 * API (daebus_bus_redis), so every replica of the service sees one set of
 * rooms. Thread: callable from any thread.
 */
#ifndef DAEBUS_BP_ROOMS_STORE_H
#define DAEBUS_BP_ROOMS_STORE_H

#include <daebus/daebus.h>
#include "rooms/rooms.h"

enum {
    DAEBUS__ROOMS_JOIN,
    DAEBUS__ROOMS_LEAVE,
    DAEBUS__ROOMS_CHAT,
    DAEBUS__ROOMS_GONE,
    DAEBUS__ROOMS_REGISTER,
    DAEBUS__ROOMS_PAGE,
    DAEBUS__ROOMS_DIRECT,
    DAEBUS__ROOMS_MEMBER,
    DAEBUS__ROOMS_NSCRIPTS
};

/* Runs script with the prefix "daebus:<service>:rooms:" and the nargs (<= 12)
 * arguments after it (rooms_store.c documents each script's arguments and
 * reply). Ownership: *reply (an array on 0, NULL otherwise) is the caller's.
 * Returns: 0, DAEBUS_ESTATE (the app has no running bus), DAEBUS_ECONN
 * (Redis unreachable), DAEBUS_EREPLY, DAEBUS_EINVAL, DAEBUS_ENOMEM. */
int daebus__rooms_eval(daebus_app *app, int script, int nargs, const char **args, cJSON **reply);

/* Fills the shared counters of out (users, rooms, members, messages,
 * history_bytes, messages_total) in one round trip. Returns: as above. */
int daebus__rooms_store_stats(daebus_app *app, daebus_rooms_stats *out);

#endif
