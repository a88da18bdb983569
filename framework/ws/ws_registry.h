/* ws_registry.h - the WebSocket client registry and rate limiter (internal).
 *
 * ws_registry maps client ids to entries and remembers insertion order (the
 * core hash table, hash.h). It does no locking: the WebSocket component guards it with its registry lock.
 * ws_rate is the per-client sliding window of handled messages.
 */
#ifndef DAEBUS_WS_REGISTRY_H
#define DAEBUS_WS_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "hash.h"

/* The registry is the core hash table (hash.h): client id -> client, oldest
 * first. The ws_registry_* names below are kept for the WebSocket code. */
typedef daebus__hash ws_registry;

#define ws_registry_create() daebus__hash_create(64)
#define ws_registry_destroy  daebus__hash_destroy
#define ws_registry_insert   daebus__hash_insert
#define ws_registry_find     daebus__hash_find
#define ws_registry_remove   daebus__hash_remove
#define ws_registry_count    daebus__hash_count
#define ws_registry_values   daebus__hash_values

/* Sliding window of handled-message times for one client. Zero-initialise. */
typedef struct ws_rate {
    double *ring;
    int cap;
    int head;
    int count;
} ws_rate;

/* Returns: true (and records now) if fewer than max messages were recorded
 * within the last window seconds; false (nothing recorded) otherwise. A
 * failed allocation lets the message through. */
bool daebus__ws_rate_allow(ws_rate *r, int max, double window, double now);
void daebus__ws_rate_free(ws_rate *r);
#define ws_rate_allow daebus__ws_rate_allow
#define ws_rate_free  daebus__ws_rate_free

#endif
