/* sched_heap.h - an indexed binary min-heap of due times (internal).
 *
 * Entries are embedded in their owners (tasks, timers) and remember their
 * position, so that an entry can be removed or re-keyed in O(log n) when a
 * task is paused or its interval changes. Equal due times come out in the
 * order they were pushed. Not thread-safe: the scheduler holds its lock.
 */
#ifndef DAEBUS_SCHED_HEAP_H
#define DAEBUS_SCHED_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DAEBUS__HEAP_NONE ((size_t)-1)

typedef struct daebus__heap_entry {
    double due;   /* key: CLOCK_MONOTONIC seconds */
    uint64_t seq; /* tie-breaker, set by push */
    size_t index; /* position in the heap, DAEBUS__HEAP_NONE when out of it */
    int kind;     /* owner's tag, free for the owner to use */
} daebus__heap_entry;

typedef struct daebus__heap {
    daebus__heap_entry **items;
    size_t count, cap;
    uint64_t next_seq;
} daebus__heap;

/* Initialises an empty heap / frees its array (not the entries). */
void daebus__heap_init(daebus__heap *h);
void daebus__heap_free(daebus__heap *h);

/* Marks an entry as outside any heap. */
void daebus__heap_entry_init(daebus__heap_entry *e, int kind);

static inline bool daebus__heap_contains(const daebus__heap_entry *e)
{
    return e->index != DAEBUS__HEAP_NONE;
}

/* Makes room for n more entries. Returns: 0 or DAEBUS_ENOMEM. */
int daebus__heap_reserve(daebus__heap *h, size_t n);

/* Inserts e (not in a heap) with its current due time.
 * Returns: 0 or DAEBUS_ENOMEM. */
int daebus__heap_push(daebus__heap *h, daebus__heap_entry *e);

/* Returns: the earliest entry (NULL if empty), without removing it. */
daebus__heap_entry *daebus__heap_peek(const daebus__heap *h);

/* Removes and returns the earliest entry (NULL if empty). */
daebus__heap_entry *daebus__heap_pop(daebus__heap *h);

/* Removes e if it is in the heap. */
void daebus__heap_remove(daebus__heap *h, daebus__heap_entry *e);

/* Sets e's due time and restores the heap order (pushes e if it was out). */
int daebus__heap_set_due(daebus__heap *h, daebus__heap_entry *e, double due);

#endif
