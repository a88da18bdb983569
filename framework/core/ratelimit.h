/* ratelimit.h - at most one log line per interval (core layer, internal).
 *
 * For events an attacker can repeat at will (oversize messages, refused
 * requests, ping floods): the first event of an interval is logged and says how
 * many were not logged since the last line. One limiter per kind of event;
 * zero-initialised means "nothing logged yet".
 *
 * Thread: callable from any thread.
 */
#ifndef DAEBUS_CORE_RATELIMIT_H
#define DAEBUS_CORE_RATELIMIT_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct daebus__ratelimit {
    atomic_llong last_ms;        /* monotonic ms of the last line; 0: none yet */
    atomic_uint_fast64_t events; /* events since the last line, this one included */
} daebus__ratelimit;

/* Call once per event with the monotonic time now (seconds). Returns: -1 to
 * stay quiet, else the number of events not logged since the last line. */
long daebus__ratelimit_pass(daebus__ratelimit *rl, double now, double interval);

#endif
