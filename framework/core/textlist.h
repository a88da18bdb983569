/* textlist.h - comma-separated lists in header values and options (core layer).
 *
 * "GET, post ,PUT" holds three items: items are separated by commas, spaces
 * and tabs around them are not part of them, empty items are skipped. Used by
 * the HTTP layer (Connection, Transfer-Encoding, CORS lists) and the
 * WebSocket layer (allowed origins, upgrade paths).
 *
 * Pure functions, no allocation.
 * Thread: callable from any thread.
 */
#ifndef DAEBUS_CORE_TEXTLIST_H
#define DAEBUS_CORE_TEXTLIST_H

#include <stdbool.h>
#include <stddef.h>

/* The next item at *p: *item and *len (never 0) are set and *p moves past
 * it. Returns: false when no item is left. */
bool daebus__list_next(const char **p, const char **item, size_t *len);

/* Returns: true if list (may be NULL) holds item[0..len), compared byte for
 * byte or, with ignore_case, ASCII case-insensitively. An empty item is never
 * held. */
bool daebus__list_has(const char *list, const char *item, size_t len, bool ignore_case);

#endif
