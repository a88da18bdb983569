/* ws_registry.h - the WebSocket client registry and rate limiter (internal).
 *
 * ws_registry maps client ids to entries and remembers insertion order. It
 * does no locking: the WebSocket component guards it with its registry lock.
 * ws_rate is the per-client sliding window of handled messages.
 */
#ifndef DAEBUS_WS_REGISTRY_H
#define DAEBUS_WS_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ws_registry ws_registry;

/* Returns: an empty registry, or NULL on allocation failure. */
ws_registry *ws_registry_create(void);
/* Frees the registry (not the values). Accepts NULL. */
void ws_registry_destroy(ws_registry *r);

/* Adds key -> value (key copied). Returns: 0, DAEBUS_EEXIST (key present;
 * nothing changed), DAEBUS_EINVAL, DAEBUS_ENOMEM. */
int ws_registry_insert(ws_registry *r, const char *key, void *value);
/* Returns: the value of key or NULL. */
void *ws_registry_find(const ws_registry *r, const char *key);
/* Removes key. Returns: its value, or NULL if absent. */
void *ws_registry_remove(ws_registry *r, const char *key);
/* Returns: the number of entries. */
size_t ws_registry_count(const ws_registry *r);
/* Copies up to cap values, oldest first, into out. Returns: how many. */
size_t ws_registry_values(const ws_registry *r, void **out, size_t cap);

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
bool ws_rate_allow(ws_rate *r, int max, double window, double now);
void ws_rate_free(ws_rate *r);

#endif
