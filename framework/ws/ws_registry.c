/* ws_registry.c - client id table (hash + insertion order) and the sliding-window rate limiter.
 *
 * The table is a chained hash (FNV-1a) that doubles when the load passes 1,
 * plus a doubly linked list for the oldest-first order get_clients promises.
 * The limiter keeps the times of handled messages in a ring of max entries:
 * a message is allowed if, after dropping the entries older than the window,
 * fewer than max remain; rejected messages are not recorded (docs/protocol.md 3).
 */
#include "ws_registry.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daebus/error.h"

/* ---- registry ---- */

typedef struct entry {
    char *key;
    void *value;
    uint64_t hash;
    struct entry *chain;
    struct entry *prev, *next; /* insertion order */
} entry;

struct ws_registry {
    entry **buckets;
    size_t nbuckets;
    size_t count;
    entry *head, *tail;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

ws_registry *ws_registry_create(void)
{
    ws_registry *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->nbuckets = 64;
    r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
    if (!r->buckets) {
        free(r);
        return NULL;
    }
    return r;
}

void ws_registry_destroy(ws_registry *r)
{
    if (!r)
        return;
    entry *e = r->head;
    while (e) {
        entry *n = e->next;
        free(e->key);
        free(e);
        e = n;
    }
    free(r->buckets);
    free(r);
}

static entry *lookup(const ws_registry *r, const char *key, uint64_t h)
{
    for (entry *e = r->buckets[h & (r->nbuckets - 1)]; e; e = e->chain)
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static void grow(ws_registry *r)
{
    size_t nb = r->nbuckets * 2;
    entry **b = calloc(nb, sizeof *b);
    if (!b)
        return; /* keep the longer chains */
    for (entry *e = r->head; e; e = e->next) {
        size_t i = e->hash & (nb - 1);
        e->chain = b[i];
        b[i] = e;
    }
    free(r->buckets);
    r->buckets = b;
    r->nbuckets = nb;
}

int ws_registry_insert(ws_registry *r, const char *key, void *value)
{
    if (!r || !key)
        return DAEBUS_EINVAL;
    uint64_t h = fnv1a(key);
    if (lookup(r, key, h))
        return DAEBUS_EEXIST;
    entry *e = calloc(1, sizeof *e);
    if (!e || !(e->key = strdup(key))) {
        free(e);
        return DAEBUS_ENOMEM;
    }
    e->value = value;
    e->hash = h;
    if (r->count + 1 > r->nbuckets)
        grow(r);
    size_t i = h & (r->nbuckets - 1);
    e->chain = r->buckets[i];
    r->buckets[i] = e;
    e->prev = r->tail;
    if (r->tail)
        r->tail->next = e;
    else
        r->head = e;
    r->tail = e;
    r->count++;
    return 0;
}

void *ws_registry_find(const ws_registry *r, const char *key)
{
    if (!r || !key)
        return NULL;
    entry *e = lookup(r, key, fnv1a(key));
    return e ? e->value : NULL;
}

void *ws_registry_remove(ws_registry *r, const char *key)
{
    if (!r || !key)
        return NULL;
    uint64_t h = fnv1a(key);
    entry **pp = &r->buckets[h & (r->nbuckets - 1)];
    while (*pp && !((*pp)->hash == h && strcmp((*pp)->key, key) == 0))
        pp = &(*pp)->chain;
    entry *e = *pp;
    if (!e)
        return NULL;
    *pp = e->chain;
    if (e->prev)
        e->prev->next = e->next;
    else
        r->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        r->tail = e->prev;
    r->count--;
    void *v = e->value;
    free(e->key);
    free(e);
    return v;
}

size_t ws_registry_count(const ws_registry *r)
{
    return r ? r->count : 0;
}

size_t ws_registry_values(const ws_registry *r, void **out, size_t cap)
{
    size_t n = 0;
    for (entry *e = r ? r->head : NULL; e && n < cap; e = e->next)
        out[n++] = e->value;
    return n;
}

/* ---- rate limiter ---- */

bool ws_rate_allow(ws_rate *r, int max, double window, double now)
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

void ws_rate_free(ws_rate *r)
{
    free(r->ring);
    r->ring = NULL;
    r->cap = r->head = r->count = 0;
}
