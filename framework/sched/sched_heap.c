/* sched_heap.c - indexed binary min-heap of due times for the scheduler.
 *
 * A plain array heap ordered by (due, seq); each entry stores its index so
 * remove and re-key work without a search.
 */
#include <stdlib.h>
#include "daebus/error.h"
#include "sched_heap.h"

void daebus__heap_init(daebus__heap *h)
{
    h->items = NULL;
    h->count = h->cap = 0;
    h->next_seq = 0;
}

void daebus__heap_free(daebus__heap *h)
{
    for (size_t i = 0; i < h->count; i++)
        h->items[i]->index = DAEBUS__HEAP_NONE;
    free(h->items);
    daebus__heap_init(h);
}

void daebus__heap_entry_init(daebus__heap_entry *e, int kind)
{
    e->due = 0;
    e->seq = 0;
    e->index = DAEBUS__HEAP_NONE;
    e->kind = kind;
}

static bool before(const daebus__heap_entry *a, const daebus__heap_entry *b)
{
    if (a->due != b->due)
        return a->due < b->due;
    return a->seq < b->seq;
}

static void place(daebus__heap *h, size_t i, daebus__heap_entry *e)
{
    h->items[i] = e;
    e->index = i;
}

static void sift_up(daebus__heap *h, size_t i)
{
    daebus__heap_entry *e = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(e, h->items[parent]))
            break;
        place(h, i, h->items[parent]);
        i = parent;
    }
    place(h, i, e);
}

static void sift_down(daebus__heap *h, size_t i)
{
    daebus__heap_entry *e = h->items[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const daebus__heap_entry *best = e;
        if (l < h->count && before(h->items[l], best)) {
            m = l;
            best = h->items[l];
        }
        if (r < h->count && before(h->items[r], best))
            m = r;
        if (m == i)
            break;
        place(h, i, h->items[m]);
        i = m;
    }
    place(h, i, e);
}

int daebus__heap_reserve(daebus__heap *h, size_t n)
{
    if (h->count + n <= h->cap)
        return 0;
    size_t cap = h->cap ? h->cap : 16;
    while (cap < h->count + n)
        cap *= 2;
    daebus__heap_entry **items = realloc(h->items, cap * sizeof *items);
    if (!items)
        return DAEBUS_ENOMEM;
    h->items = items;
    h->cap = cap;
    return 0;
}

int daebus__heap_push(daebus__heap *h, daebus__heap_entry *e)
{
    if (daebus__heap_contains(e))
        return daebus__heap_set_due(h, e, e->due);
    if (daebus__heap_reserve(h, 1) != 0)
        return DAEBUS_ENOMEM;
    e->seq = h->next_seq++;
    place(h, h->count++, e);
    sift_up(h, e->index);
    return 0;
}

daebus__heap_entry *daebus__heap_peek(const daebus__heap *h)
{
    return h->count ? h->items[0] : NULL;
}

daebus__heap_entry *daebus__heap_pop(daebus__heap *h)
{
    if (!h->count)
        return NULL;
    daebus__heap_entry *top = h->items[0];
    daebus__heap_remove(h, top);
    return top;
}

void daebus__heap_remove(daebus__heap *h, daebus__heap_entry *e)
{
    if (!daebus__heap_contains(e))
        return;
    size_t i = e->index;
    e->index = DAEBUS__HEAP_NONE;
    daebus__heap_entry *last = h->items[--h->count];
    if (i == h->count)
        return;
    place(h, i, last);
    if (i > 0 && before(last, h->items[(i - 1) / 2]))
        sift_up(h, i);
    else
        sift_down(h, i);
}

int daebus__heap_set_due(daebus__heap *h, daebus__heap_entry *e, double due)
{
    if (!daebus__heap_contains(e)) {
        e->due = due;
        return daebus__heap_push(h, e);
    }
    daebus__heap_remove(h, e);
    e->due = due;
    return daebus__heap_push(h, e); /* room is there: the slot was just freed */
}
