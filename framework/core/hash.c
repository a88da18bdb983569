/* hash.c - the string-keyed hash table of hash.h: chains, growth, insertion order. */
#include "hash.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "daebus/error.h"

typedef struct hentry {
    char *key;
    void *value;
    uint64_t hash;
    struct hentry *chain;
    struct hentry *prev, *next; /* insertion order */
} hentry;

struct daebus__hash {
    hentry **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    hentry *head, *tail;
};

uint64_t daebus__hash_str(const char *s)
{
    uint64_t h = 14695981039346656037ULL; /* the FNV-1a 64-bit offset basis */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

daebus__hash *daebus__hash_create(size_t min_buckets)
{
    daebus__hash *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->nbuckets = 8;
    while (h->nbuckets < min_buckets)
        h->nbuckets *= 2;
    h->buckets = calloc(h->nbuckets, sizeof *h->buckets);
    if (!h->buckets) {
        free(h);
        return NULL;
    }
    return h;
}

void daebus__hash_destroy(daebus__hash *h)
{
    if (!h)
        return;
    hentry *e = h->head;
    while (e) {
        hentry *n = e->next;
        free(e->key);
        free(e);
        e = n;
    }
    free(h->buckets);
    free(h);
}

/* Returns: the link that points at key's entry, or at the NULL ending its chain. */
static hentry **slot(const daebus__hash *h, const char *key, uint64_t hv)
{
    hentry **pp = &h->buckets[hv & (h->nbuckets - 1)];
    while (*pp && !((*pp)->hash == hv && strcmp((*pp)->key, key) == 0))
        pp = &(*pp)->chain;
    return pp;
}

static void grow(daebus__hash *h)
{
    size_t nb = h->nbuckets * 2;
    hentry **b = calloc(nb, sizeof *b);
    if (!b)
        return; /* keep the longer chains */
    for (hentry *e = h->head; e; e = e->next) {
        size_t i = e->hash & (nb - 1);
        e->chain = b[i];
        b[i] = e;
    }
    free(h->buckets);
    h->buckets = b;
    h->nbuckets = nb;
}

int daebus__hash_insert(daebus__hash *h, const char *key, void *value)
{
    if (!h || !key)
        return DAEBUS_EINVAL;
    uint64_t hv = daebus__hash_str(key);
    if (*slot(h, key, hv))
        return DAEBUS_EEXIST;
    hentry *e = calloc(1, sizeof *e);
    if (!e || !(e->key = strdup(key))) {
        free(e);
        return DAEBUS_ENOMEM;
    }
    e->value = value;
    e->hash = hv;
    if (h->count + 1 > h->nbuckets)
        grow(h);
    size_t i = hv & (h->nbuckets - 1);
    e->chain = h->buckets[i];
    h->buckets[i] = e;
    e->prev = h->tail;
    if (h->tail)
        h->tail->next = e;
    else
        h->head = e;
    h->tail = e;
    h->count++;
    return 0;
}

void *daebus__hash_find(const daebus__hash *h, const char *key)
{
    if (!h || !key)
        return NULL;
    hentry *e = *slot(h, key, daebus__hash_str(key));
    return e ? e->value : NULL;
}

/* Unlinks e (which *pp points at, in its chain) and frees it. Returns: its value. */
static void *unlink_entry(daebus__hash *h, hentry **pp, hentry *e)
{
    DAEBUS__ASSERT(*pp == e && h->count > 0);
    *pp = e->chain;
    if (e->prev)
        e->prev->next = e->next;
    else
        h->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        h->tail = e->prev;
    h->count--;
    void *v = e->value;
    free(e->key);
    free(e);
    return v;
}

void *daebus__hash_remove(daebus__hash *h, const char *key)
{
    if (!h || !key)
        return NULL;
    hentry **pp = slot(h, key, daebus__hash_str(key));
    return *pp ? unlink_entry(h, pp, *pp) : NULL;
}

size_t daebus__hash_count(const daebus__hash *h)
{
    return h ? h->count : 0;
}

size_t daebus__hash_values(const daebus__hash *h, void **out, size_t cap)
{
    size_t n = 0;
    for (hentry *e = h ? h->head : NULL; e && n < cap; e = e->next)
        out[n++] = e->value;
    return n;
}

size_t daebus__hash_take_if(daebus__hash *h, daebus__hash_pred_fn *pred,
                            daebus__hash_taken_fn *taken, void *ctx)
{
    size_t n = 0;
    hentry *e = h ? h->head : NULL;
    while (e) {
        hentry *next = e->next;
        if (pred(e->value, ctx)) {
            hentry **pp = &h->buckets[e->hash & (h->nbuckets - 1)];
            while (*pp != e)
                pp = &(*pp)->chain;
            void *v = unlink_entry(h, pp, e);
            if (taken)
                taken(v, ctx);
            n++;
        }
        e = next;
    }
    return n;
}
