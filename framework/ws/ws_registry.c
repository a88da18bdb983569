/* ws_registry.c - the sliding-window rate limiter of WebSocket clients.
 *
 * The client id table itself is the core hash table (core/hash.h), which
 * keeps the oldest-first order get_clients promises. The limiter keeps the times of handled messages in a ring of max entries:
 * a message is allowed if, after dropping the entries older than the window,
 * fewer than max remain; rejected messages are not recorded (docs/protocol.md 3).
 */
#include "ws_registry.h"

#include <stdlib.h>

/* ---- rate limiter ---- */

bool daebus__ws_rate_allow(ws_rate *r, int max, double window, double now)
{
    if (max <= 0)
        return true;
    if (r->cap != max) {
        double *ring = calloc((size_t)max, sizeof *ring);
        if (!ring)
            return true;
        /* Keep the newest entries that still fit. */
        int keep = r->count < max ? r->count : max;
        for (int i = 0; i < keep; i++)
            ring[i] = r->ring[(r->head + r->count - keep + i) % r->cap];
        free(r->ring);
        r->ring = ring;
        r->cap = max;
        r->head = 0;
        r->count = keep;
    }
    while (r->count > 0 && r->ring[r->head] <= now - window) {
        r->head = (r->head + 1) % r->cap;
        r->count--;
    }
    if (r->count >= max)
        return false;
    r->ring[(r->head + r->count) % r->cap] = now;
    r->count++;
    return true;
}

void daebus__ws_rate_free(ws_rate *r)
{
    free(r->ring);
    r->ring = NULL;
    r->cap = r->head = r->count = 0;
}
