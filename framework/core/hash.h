/* hash.h - a string-keyed hash table that remembers insertion order (core layer).
 *
 * Chained buckets (FNV-1a), doubled when the load passes 1, plus a doubly
 * linked list so values can be listed oldest first. Keys are copied; values
 * are borrowed and never freed by the table.
 *
 * Thread: any thread, but the table does no locking: its owner guards it.
 */
#ifndef DAEBUS_CORE_HASH_H
#define DAEBUS_CORE_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct daebus__hash daebus__hash;

/* FNV-1a of the NUL-terminated string s. */
uint64_t daebus__hash_str(const char *s);

/* Returns: an empty table with about min_buckets buckets (rounded up to a
 * power of two, at least 8), or NULL on allocation failure. */
daebus__hash *daebus__hash_create(size_t min_buckets);
/* Frees the table and its key copies (not the values). Accepts NULL. */
void daebus__hash_destroy(daebus__hash *h);

/* Adds key -> value (key copied). Returns: 0, DAEBUS_EEXIST (key present;
 * nothing changed), DAEBUS_EINVAL (h or key NULL), DAEBUS_ENOMEM. */
int daebus__hash_insert(daebus__hash *h, const char *key, void *value);
/* Returns: the value of key, or NULL. */
void *daebus__hash_find(const daebus__hash *h, const char *key);
/* Removes key. Returns: its value, or NULL if absent. */
void *daebus__hash_remove(daebus__hash *h, const char *key);
/* Returns: the number of entries (0 for NULL). */
size_t daebus__hash_count(const daebus__hash *h);
/* Copies up to cap values, oldest first, into out. Returns: how many. */
size_t daebus__hash_values(const daebus__hash *h, void **out, size_t cap);

/* Decides whether value leaves the table (daebus__hash_take_if). */
typedef bool daebus__hash_pred_fn(void *value, void *ctx);
/* Called with each value taken out, after its entry left the table. */
typedef void daebus__hash_taken_fn(void *value, void *ctx);

/* One pass over the table, oldest first: removes every entry whose value pred
 * accepts and hands the value to taken (may be NULL). Neither callback may
 * touch the table. Returns: how many entries were removed. */
size_t daebus__hash_take_if(daebus__hash *h, daebus__hash_pred_fn *pred,
                            daebus__hash_taken_fn *taken, void *ctx);

#endif
